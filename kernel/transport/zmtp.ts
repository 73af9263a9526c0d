// zeromq's wire protocol (ZMTP 3) on Node's own sockets, for the three socket types a kernel binds: ROUTER
// (shell, control, stdin), PUB (iopub) and REP (heartbeat). Clients keep using libzmq (pyzmq, zeromq.js); only
// the kernel's end is ours. That saves the kernel a native addon, six I/O threads and their memory, and makes
// backpressure visible per subscriber instead of behind libzmq's message-count marks. Deno's kernel does the
// same with a Rust implementation of ZMTP.
//
// Only the bind side exists: a kernel never connects, so there is no reconnect logic.

import { createServer, Socket, type Server } from "node:net";
import { unlinkSync } from "node:fs";
import {
  DEFAULT_MAX_FRAME_BYTES,
  describeStreamError,
  encodeError,
  encodeGreeting,
  encodeMessage,
  encodeReady,
  isCompatiblePeer,
  pingReply,
  ZmtpDecoder,
  type Command,
  type DecodeEvent,
  type SocketType,
  type StreamError,
} from "../../protocol/zmtp.js";
import { errorMessage, type Log } from "../log.js";

export type Endpoint = { transport: "tcp"; host: string; port: number } | { transport: "ipc"; path: string };

export function describeEndpoint(endpoint: Endpoint): string {
  return endpoint.transport === "tcp" ? `tcp://${endpoint.host.includes(":") ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}` : `ipc://${endpoint.path}`;
}

type PeerState =
  | { type: "greeting" }
  | { type: "handshake" }
  | { type: "ready"; peerType: string; identity: Uint8Array }
  | { type: "closed" };

type PeerEvent =
  | { type: "greeting" }
  | { type: "ready"; peerType: string; identity: Uint8Array }
  | { type: "closed" };

/** The one transition function for a connection's life; anything else is a protocol error the caller reports. */
function nextPeerState(state: PeerState, event: PeerEvent): PeerState | null {
  switch (event.type) {
    case "greeting":
      return state.type === "greeting" ? { type: "handshake" } : null;
    case "ready":
      return state.type === "handshake" ? { type: "ready", peerType: event.peerType, identity: event.identity } : null;
    case "closed":
      return { type: "closed" };
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

interface PeerHandlers {
  onReady(peer: ZmtpPeer): void;
  /** A complete multipart message (never a command). */
  onMessage(peer: ZmtpPeer, frames: Uint8Array[]): void;
  onCommand(peer: ZmtpPeer, command: Command): void;
  onClose(peer: ZmtpPeer): void;
}

/** One accepted connection: handshake, then whole messages in and out. */
export class ZmtpPeer {
  private state: PeerState = { type: "greeting" };
  private readonly decoder: ZmtpDecoder;
  private parts: Uint8Array[] = [];

  private partsBytes = 0;
  private readonly maxMessageBytes: number;
  private handshakeTimer: NodeJS.Timeout | null;

  constructor(
    readonly socket: Socket,
    private readonly options: {
      socketType: SocketType;
      name: string;
      log: Log;
      handlers: PeerHandlers;
      maxFrameBytes?: number;
      handshakeTimeoutMs?: number;
      /** Where reads that are not in place land; consumed (copied out) before the next read of any socket. */
      scratch: Uint8Array;
    },
  ) {
    this.decoder = new ZmtpDecoder({ maxFrameBytes: options.maxFrameBytes });
    // The frame limit also bounds a whole message: a peer cannot grow the kernel with endless small frames.
    this.maxMessageBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    // A connection that never finishes its handshake would hold a socket forever (libzmq's ZMQ_HANDSHAKE_IVL).
    this.handshakeTimer = setTimeout(() => this.hangUp(`no handshake within ${options.handshakeTimeoutMs ?? 30_000} ms`), options.handshakeTimeoutMs ?? 30_000);
    this.handshakeTimer.unref();
    // libzmq sets TCP_NODELAY; without it a reply can wait for the client's delayed ACK (40 ms).
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.receive(chunk, { transient: false }));
    socket.on("error", (err) => this.hangUp(`socket error: ${errorMessage(err)}`, { quiet: true }));
    socket.on("close", () => this.advance({ type: "closed" }));
    // Both greetings go out at once: libzmq's own staged greeting waits for ours, never the other way round.
    socket.write(encodeGreeting());
    socket.write(encodeReady({ "Socket-Type": options.socketType }));
  }

  get ready(): boolean {
    return this.state.type === "ready";
  }

  get identity(): Uint8Array | null {
    return this.state.type === "ready" ? this.state.identity : null;
  }

  /** Bytes written to this peer that the OS has not taken yet. */
  get unsent(): number {
    return this.socket.writableLength;
  }

  get closed(): boolean {
    return this.state.type === "closed";
  }

  /** Writes one multipart message (already encoded by encodeMessage; shared between subscribers). */
  writeEncoded(chunks: readonly Uint8Array[]): void {
    if (this.state.type !== "ready") return;
    this.socket.cork();
    for (const c of chunks) this.socket.write(c);
    this.socket.uncork();
  }

  writeCommand(frame: Uint8Array): void {
    if (this.state.type === "closed") return;
    this.socket.write(frame);
  }

  /** Resolves once everything written so far has reached the OS, or the connection is gone. */
  whenFlushed(): Promise<void> {
    if (this.state.type === "closed" || this.socket.writableLength === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        resolve();
      };
      this.socket.on("drain", done);
      this.socket.on("close", done);
    });
  }

  /** Ends the connection after what is written has been sent. */
  end(): void {
    if (this.state.type !== "closed") this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  hangUp(reason: string, options: { quiet?: boolean; tellPeer?: boolean } = {}): void {
    if (this.state.type === "closed") return;
    if (!options.quiet) this.options.log.warn(`${this.options.name}: closed a connection from ${this.remote()}: ${reason}`);
    // ERROR is a handshake command; after the handshake a peer is just dropped.
    if (options.tellPeer && this.state.type !== "ready") this.socket.end(encodeError(reason));
    else this.socket.destroy();
    this.advance({ type: "closed" });
  }

  private remote(): string {
    return this.socket.remoteAddress !== undefined ? `${this.socket.remoteAddress}:${this.socket.remotePort}` : "a local socket";
  }

  private advance(event: PeerEvent): void {
    const before = this.state;
    const next = nextPeerState(before, event);
    if (next === null) {
      this.hangUp(`unexpected ${event.type} while in ${before.type}`, { tellPeer: true });
      return;
    }
    this.state = next;
    if (next.type === "ready" || next.type === "closed") {
      if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    if (next.type === "ready") this.options.handlers.onReady(this);
    if (next.type === "closed" && before.type !== "closed") {
      this.parts = [];
      this.partsBytes = 0;
      this.options.handlers.onClose(this);
    }
  }

  /** For reads into memory this peer chose (see directReads): the rest of a large frame, or a scratch buffer. */
  readTarget(): Uint8Array {
    this.inPlace = this.decoder.inPlaceTarget(IN_PLACE_FROM_BYTES);
    return this.inPlace ?? this.options.scratch;
  }

  onRead(n: number, into: Uint8Array): void {
    if (this.state.type === "closed") return;
    if (into === this.inPlace) {
      this.bytesReadInPlace += n;
      this.handle(this.decoder.pushedInPlace(n));
    } else {
      this.receive(into.subarray(0, n), { transient: true });
    }
  }

  /** Bytes read straight into frame bodies, not copied (what directReads is for; tests check it happens). */
  bytesReadInPlace = 0;

  /** The frame view last handed out by readTarget(), to tell an in-place read from a scratch one. */
  private inPlace: Uint8Array | null = null;

  private receive(chunk: Uint8Array, options: { transient: boolean }): void {
    if (this.state.type === "closed") return;
    this.handle(this.decoder.push(chunk, options));
  }

  private handle({ events, error }: { events: DecodeEvent[]; error: StreamError | null }): void {
    for (const event of events) {
      // A handler may have hung up on this peer (a bad READY); the rest of the chunk is not read.
      if (this.closed) return;
      switch (event.type) {
        case "greeting":
          this.advance({ type: "greeting" });
          break;
        case "command":
          this.command(event.command);
          break;
        case "frame":
          if (this.state.type !== "ready") {
            this.hangUp("a message before the handshake finished", { tellPeer: true });
            return;
          }
          this.parts.push(event.body);
          this.partsBytes += event.body.byteLength;
          if (this.partsBytes > this.maxMessageBytes) {
            this.hangUp(`a message over the ${this.maxMessageBytes}-byte limit`);
            return;
          }
          if (!event.more) {
            const frames = this.parts;
            this.parts = [];
            this.partsBytes = 0;
            this.options.handlers.onMessage(this, frames);
          }
          break;
        default: {
          const unreachable: never = event;
          throw new Error(`unknown ZMTP event ${String(unreachable)}`);
        }
      }
    }
    if (error !== null) this.hangUp(describeStreamError(error), { tellPeer: error.type !== "greeting" });
  }

  private command(command: Command): void {
    switch (command.type) {
      case "READY": {
        const peerType = new TextDecoder().decode(command.properties.get("socket-type") ?? new Uint8Array(0));
        if (!isCompatiblePeer(this.options.socketType, peerType)) {
          this.hangUp(`a ${peerType || "nameless"} socket cannot talk to ${this.options.socketType}`, { tellPeer: true });
          return;
        }
        this.advance({ type: "ready", peerType, identity: command.properties.get("identity") ?? new Uint8Array(0) });
        return;
      }
      case "ERROR":
        this.hangUp(`the peer reported an error: ${command.reason}`);
        return;
      case "PING":
        this.writeCommand(pingReply(command));
        return;
      case "PONG":
      case "SUBSCRIBE":
      case "CANCEL":
      case "unknown":
        this.options.handlers.onCommand(this, command);
        return;
      default: {
        const unreachable: never = command;
        throw new Error(`unknown ZMTP command ${String(unreachable)}`);
      }
    }
  }
}

/** A listening socket of one ZMTP type; the subclasses add the type's routing. */
abstract class ZmtpSocket {
  protected readonly peers = new Set<ZmtpPeer>();
  private server: Server | null = null;
  private closing: Promise<void> | null = null;

  constructor(
    protected readonly options: ZmtpSocketOptions & { socketType: SocketType },
  ) {
    this.scratch = options.scratch ?? new Uint8Array(SCRATCH_BYTES);
  }

  private readonly scratch: Uint8Array;

  bind(endpoint: Endpoint): Promise<void> {
    // Paused, so that no byte is read before the connection has its direct reader (directReads).
    const server = createServer({ pauseOnConnect: true }, (socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      const failed = (err: Error) => reject(new Error(`${this.options.name}: cannot bind ${describeEndpoint(endpoint)}: ${err.message}`));
      server.once("error", failed);
      const listening = () => {
        server.off("error", failed);
        server.on("error", (err) => this.options.log.error(`${this.options.name}: ${errorMessage(err)}`));
        resolve();
      };
      if (endpoint.transport === "tcp") {
        server.listen({ host: endpoint.host === "*" ? undefined : endpoint.host, port: endpoint.port }, listening);
      } else {
        // libzmq replaces a leftover socket file from an earlier kernel on the same path.
        removeStaleSocket(endpoint.path, this.options.log);
        server.listen({ path: endpoint.path }, listening);
      }
    });
  }

  private accept(paused: Socket): void {
    let peer: ZmtpPeer | undefined;
    const socket = directReads(paused, {
      // Called once while the socket is built, before the peer exists.
      buffer: () => peer?.readTarget() ?? this.scratch,
      callback: (n, into) => peer?.onRead(n, into),
    });
    peer = new ZmtpPeer(socket, {
      socketType: this.options.socketType,
      name: this.options.name,
      log: this.options.log,
      maxFrameBytes: this.options.maxFrameBytes,
      handshakeTimeoutMs: this.options.handshakeTimeoutMs,
      scratch: this.scratch,
      handlers: {
        onReady: (p) => this.peerReady(p),
        onMessage: (p, frames) => this.peerMessage(p, frames),
        onCommand: (p, command) => this.peerCommand(p, command),
        onClose: (p) => {
          this.peers.delete(p);
          this.peerClosed(p);
        },
      },
    });
    this.peers.add(peer);
  }

  /** Bytes the current connections read straight into frame bodies. */
  bytesReadInPlace(): number {
    let n = 0;
    for (const p of this.peers) n += p.bytesReadInPlace;
    return n;
  }

  protected abstract peerReady(peer: ZmtpPeer): void;
  protected abstract peerMessage(peer: ZmtpPeer, frames: Uint8Array[]): void;
  protected peerCommand(_peer: ZmtpPeer, _command: Command): void {
    // Commands a socket type has no use for (PONG, unknown 3.1+ ones) are ignored, as libzmq does.
  }
  protected abstract peerClosed(peer: ZmtpPeer): void;

  /** Stops listening, lets each peer's written data go out (at most `graceMs`), then drops every connection. */
  close(options: { graceMs: number }): Promise<void> {
    this.closing ??= (async () => {
      this.server?.close();
      const peers = [...this.peers];
      for (const p of peers) p.end();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(peers.map((p) => (p.closed ? Promise.resolve() : new Promise<void>((resolve) => p.socket.once("close", () => resolve()))))),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, options.graceMs);
        }),
      ]);
      clearTimeout(timer);
      for (const p of peers) p.destroy();
    })();
    return this.closing;
  }
}

export interface ZmtpSocketOptions {
  name: string;
  log: Log;
  maxFrameBytes?: number;
  handshakeTimeoutMs?: number;
  /**
   * The read buffer for everything not read in place. One can serve every socket of a process: each read is
   * handed to its callback, which copies the frames out, before libuv reads anything else.
   */
  scratch?: Uint8Array;
}

export const SCRATCH_BYTES = 64 * 1024;

/** A frame body with at least this much still to come is read straight into place. */
const IN_PLACE_FROM_BYTES = 64 * 1024;

type DirectReader = { buffer: () => Uint8Array; callback: (bytesRead: number, into: Uint8Array) => void };

/**
 * The accepted socket, re-made to read into memory we choose (Node's `onread`, which net.Server does not offer for
 * the sockets it accepts). A large frame is then read by the kernel straight into its body, a few MiB per read,
 * instead of arriving as 64 KiB chunks that are each copied: 100 MB from a page took the kernel ~80 ms less CPU,
 * which a 2-core machine busy with browser, server, kernel and program gives to the transfer. This takes the
 * connection's handle from the paused socket (an internal of Node's net module, stable since Node 0.x); where it
 * is missing, the socket is used as it is.
 */
function directReads(paused: Socket, reader: DirectReader): Socket {
  const internal = paused as unknown as { _handle?: { readStart?: unknown } | null };
  const handle = internal._handle;
  if (handle === null || handle === undefined || typeof handle.readStart !== "function") {
    paused.resume();
    return paused;
  }
  internal._handle = null;
  return new Socket({ handle, readable: true, writable: true, onread: reader } as unknown as ConstructorParameters<typeof Socket>[0]);
}

function removeStaleSocket(path: string, log: Log): void {
  try {
    unlinkSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") log.warn(`could not remove ${path} before binding: ${errorMessage(err)}`);
  }
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/**
 * ROUTER: every inbound message gets the sender's routing id as its first frame, and an outbound message goes to
 * the peer its first frame names. A peer's id is the Identity it announced (jupyter_client gives shell and stdin
 * the same one, which is how input_request finds its way) or else five bytes we make up, as libzmq does.
 */
export class RouterSocket extends ZmtpSocket {
  private readonly byId = new Map<string, ZmtpPeer>();
  private readonly idOf = new Map<ZmtpPeer, Uint8Array>();
  private nextGenerated = (Math.random() * 0xffffffff) >>> 0;
  private readonly dropAboveBytes: number;

  constructor(
    options: ZmtpSocketOptions & { dropAboveBytes?: number },
    private readonly onMessage: (frames: Uint8Array[]) => void,
  ) {
    super({ ...options, socketType: "ROUTER" });
    this.dropAboveBytes = options.dropAboveBytes ?? 64 * 1024 * 1024;
  }

  /** Sends to the peer named by frames[0]; a message for a peer that is gone is dropped, as libzmq does. */
  send(frames: readonly Uint8Array[]): void {
    const [id, ...rest] = frames;
    if (id === undefined || rest.length === 0) return;
    const peer = this.byId.get(hex(id));
    if (peer === undefined) return;
    // A client that stopped reading must not grow the kernel without bound (libzmq's high-water mark drops too).
    if (peer.unsent > this.dropAboveBytes) {
      this.options.log.warn(`${this.options.name}: a client has ${peer.unsent} unread bytes; message dropped`);
      return;
    }
    peer.writeEncoded(encodeMessage(rest));
  }

  protected peerReady(peer: ZmtpPeer): void {
    let id = peer.identity!;
    // Ids starting with a zero byte are reserved for generated ones (libzmq refuses them from peers).
    if (id.byteLength === 0 || id[0] === 0) {
      id = new Uint8Array(5);
      new DataView(id.buffer).setUint32(1, this.nextGenerated);
      this.nextGenerated = (this.nextGenerated + 1) >>> 0;
    }
    // A client that reconnects with its id takes the route over (ZMQ_ROUTER_HANDOVER): the stale connection it
    // replaces may not have noticed yet that it is dead.
    const key = hex(id);
    const previous = this.byId.get(key);
    if (previous !== undefined) this.idOf.delete(previous);
    this.byId.set(key, peer);
    this.idOf.set(peer, id);
  }

  protected peerMessage(peer: ZmtpPeer, frames: Uint8Array[]): void {
    const id = this.idOf.get(peer);
    if (id === undefined) return;
    this.onMessage([id, ...frames]);
  }

  protected peerClosed(peer: ZmtpPeer): void {
    const id = this.idOf.get(peer);
    this.idOf.delete(peer);
    if (id !== undefined && this.byId.get(hex(id)) === peer) this.byId.delete(hex(id));
  }
}

/** Subscription prefixes of one subscriber, counted as libzmq counts them (subscribe twice, cancel twice). */
class Subscriptions {
  private readonly counts = new Map<string, { topic: Uint8Array; count: number }>();

  add(topic: Uint8Array): void {
    const key = hex(topic);
    const entry = this.counts.get(key);
    if (entry) entry.count++;
    else this.counts.set(key, { topic: topic.slice(), count: 1 });
  }

  remove(topic: Uint8Array): void {
    const key = hex(topic);
    const entry = this.counts.get(key);
    if (entry === undefined) return;
    if (--entry.count === 0) this.counts.delete(key);
  }

  matches(first: Uint8Array): boolean {
    for (const { topic } of this.counts.values()) {
      if (topic.byteLength > first.byteLength) continue;
      let same = true;
      for (let i = 0; i < topic.byteLength && same; i++) same = topic[i] === first[i];
      if (same) return true;
    }
    return false;
  }
}

/**
 * PUB: a message goes to every subscriber whose subscriptions prefix its first frame. Nothing is dropped: a
 * subscriber that falls behind by `highWaterBytes` makes send() wait until it has caught up (what libzmq's XPUB
 * with ZMQ_XPUB_NODROP did), so the kernel's send queue grows and the execution layer slows the program down.
 * A subscriber that connected but has not subscribed yet gets nothing, as in zeromq.
 */
export class PubSocket extends ZmtpSocket {
  private readonly subscriptions = new Map<ZmtpPeer, Subscriptions>();
  private readonly highWaterBytes: number;

  constructor(options: ZmtpSocketOptions & { highWaterBytes: number }) {
    super({ ...options, socketType: "PUB", maxFrameBytes: 64 * 1024 });
    this.highWaterBytes = options.highWaterBytes;
  }

  /**
   * Writes to every matching subscriber. Returns undefined when all of them can take more, else a promise that
   * resolves when none that got this message is over the high-water mark any longer.
   */
  send(frames: readonly Uint8Array[]): Promise<void> | undefined {
    const first = frames[0];
    if (first === undefined) return undefined;
    let encoded: Uint8Array[] | null = null;
    let behind: Promise<void>[] | null = null;
    for (const [peer, subs] of this.subscriptions) {
      if (!subs.matches(first)) continue;
      encoded ??= encodeMessage(frames);
      peer.writeEncoded(encoded);
      if (peer.unsent > this.highWaterBytes) (behind ??= []).push(peer.whenFlushed());
    }
    return behind === null ? undefined : Promise.all(behind).then(() => undefined);
  }

  protected peerReady(peer: ZmtpPeer): void {
    this.subscriptions.set(peer, new Subscriptions());
  }

  /** ZMTP 3.0 subscribers send (un)subscriptions as one-frame messages: 1 or 0, then the topic. */
  protected peerMessage(peer: ZmtpPeer, frames: Uint8Array[]): void {
    const subs = this.subscriptions.get(peer);
    const frame = frames[0];
    if (subs === undefined || frames.length !== 1 || frame === undefined || frame.byteLength === 0) return;
    if (frame[0] === 1) subs.add(frame.subarray(1));
    else if (frame[0] === 0) subs.remove(frame.subarray(1));
  }

  protected override peerCommand(peer: ZmtpPeer, command: Command): void {
    const subs = this.subscriptions.get(peer);
    if (subs === undefined) return;
    if (command.type === "SUBSCRIBE") subs.add(command.topic);
    else if (command.type === "CANCEL") subs.remove(command.topic);
  }

  protected peerClosed(peer: ZmtpPeer): void {
    this.subscriptions.delete(peer);
  }
}

/** REP as Jupyter's heartbeat uses it: every request comes straight back to its sender, envelope and all. */
export class EchoSocket extends ZmtpSocket {
  constructor(options: ZmtpSocketOptions) {
    super({ ...options, socketType: "REP", maxFrameBytes: 64 * 1024 });
  }

  protected peerReady(_peer: ZmtpPeer): void {}

  protected peerMessage(peer: ZmtpPeer, frames: Uint8Array[]): void {
    peer.writeEncoded(encodeMessage(frames));
  }

  protected peerClosed(_peer: ZmtpPeer): void {}
}
