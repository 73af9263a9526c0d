// The kernel's ZMTP sockets against real libzmq peers (zeromq.js): routing by identity, PUB topic filtering,
// the heartbeat echo, IPC endpoints, backpressure from a subscriber that stops reading, flushing on close, and
// connections that are not zeromq at all. Every kernel test then runs the same code against zeromq.js and
// jupyter_client (pyzmq).

import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import type { Header, OutgoingMessage } from "../protocol/jupyter.js";
import { decodeFrames, encodeFrames } from "../protocol/wire.js";
import { encodeFrameHeader, encodeGreeting, encodeMessage, encodeReady, ZmtpDecoder, type DecodeEvent } from "../protocol/zmtp.js";
import type { ConnectionInfo } from "../kernel/transport/connection.js";
import { memoryLog } from "../kernel/log.js";
import { HmacSigner } from "../kernel/transport/signer.js";
import type { Incoming } from "../kernel/transport/transport.js";
import { ZmtpTransport } from "../kernel/transport/zmtp-transport.js";
import { RouterSocket } from "../kernel/transport/zmtp.js";
import { freePorts } from "./helpers/kernel-client.js";

const DEADLINE_MS = 5000;
const KEY = "test-key";
const signer = new HmacSigner(KEY);
const text = new TextEncoder();

function header(msgType: string): Header {
  return { msg_id: randomUUID(), session: "s", username: "u", date: new Date().toISOString(), msg_type: msgType, version: "5.3" };
}

function outgoing(channel: OutgoingMessage["channel"], msgType: string, options: { identities?: Uint8Array[]; content?: Record<string, unknown>; buffers?: Uint8Array[] } = {}): OutgoingMessage {
  return {
    channel,
    identities: options.identities ?? [],
    header: header(msgType),
    parent_header: {},
    metadata: {},
    content: (options.content ?? {}) as OutgoingMessage["content"],
    buffers: options.buffers ?? [],
  };
}

/** A request as a client puts it on the wire (DEALER: no identity frames; the ROUTER adds the sender's). */
function requestFrames(msgType: string): Uint8Array[] {
  return encodeFrames({ identities: [], header: header(msgType), parent_header: {}, metadata: {}, content: {}, buffers: [] }, signer);
}

function within<T>(promise: Promise<T>, what: string, ms = DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    }),
  ]);
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function bind(options: { transport?: "tcp" | "ipc"; ip?: string } = {}) {
  const [shell, iopub, stdin, control, hb] = (await freePorts(5)) as [number, number, number, number, number];
  const connection: ConnectionInfo = {
    transport: options.transport ?? "tcp",
    ip: options.ip ?? "127.0.0.1",
    shell_port: shell,
    iopub_port: iopub,
    stdin_port: stdin,
    control_port: control,
    hb_port: hb,
    key: KEY,
    signature_scheme: "hmac-sha256",
  };
  const log = memoryLog();
  const transport = await ZmtpTransport.bind({ connection, log });
  cleanups.push(() => transport.close({ graceMs: 100 }));
  const received: Incoming[] = [];
  const waiters: Array<() => void> = [];
  transport.onMessage((incoming) => {
    received.push(incoming);
    for (const w of waiters.splice(0)) w();
  });
  const nextIncoming = async (count = received.length + 1): Promise<Incoming> => {
    while (received.length < count) await within(new Promise<void>((resolve) => waiters.push(resolve)), "inbound message");
    return received[count - 1]!;
  };
  const endpoint = (port: number) => (connection.transport === "ipc" ? `ipc://${connection.ip}-${port}` : `tcp://127.0.0.1:${port}`);
  return { transport, connection, log, received, nextIncoming, endpoint };
}

/** A lone ROUTER socket on a free port (for what the whole transport does not let a test configure). */
async function bindRouter(options: Partial<ConstructorParameters<typeof RouterSocket>[0]>, onMessage: (frames: Uint8Array[]) => void = () => undefined) {
  const log = memoryLog();
  const router = new RouterSocket({ name: "shell", log, ...options }, onMessage);
  const [port] = (await freePorts(1)) as [number];
  await router.bind({ transport: "tcp", host: "127.0.0.1", port });
  cleanups.push(() => router.close({ graceMs: 0 }));
  return { router, port, log };
}

function track<S extends { close(): void }>(socket: S): S {
  cleanups.push(() => socket.close());
  return socket;
}

/** A raw TCP client speaking ZMTP by hand, for what libzmq would never send (or never stop reading). */
async function rawClient(port: number): Promise<{
  socket: Socket;
  events: DecodeEvent[];
  closed: Promise<void>;
  nextEvent(match: (e: DecodeEvent) => boolean): Promise<DecodeEvent>;
  /** Sends our greeting and a READY naming `socketType`, without waiting for the kernel's. */
  handshake(socketType: string): void;
}> {
  const socket = connect({ port, host: "127.0.0.1" });
  cleanups.push(() => socket.destroy());
  await within(new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject)), "connection");
  const decoder = new ZmtpDecoder();
  const events: DecodeEvent[] = [];
  const listeners = new Set<() => void>();
  socket.on("data", (chunk: Buffer) => {
    events.push(...decoder.push(chunk).events);
    for (const l of listeners) l();
  });
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("error", () => undefined);
  const nextEvent = (match: (e: DecodeEvent) => boolean) =>
    within(
      new Promise<DecodeEvent>((resolve) => {
        const check = () => {
          const found = events.find(match);
          if (found) {
            listeners.delete(check);
            resolve(found);
          }
        };
        listeners.add(check);
        check();
      }),
      "event from the kernel socket",
    );
  const handshake = (socketType: string) => {
    socket.write(encodeGreeting());
    socket.write(encodeReady({ "Socket-Type": socketType }));
  };
  return { socket, events, closed, nextEvent, handshake };
}

describe("ZMTP transport with libzmq clients", () => {
  it("routes each reply to the DEALER that asked, by its identity or a generated one", async () => {
    const { transport, nextIncoming, endpoint, connection } = await bind();
    const dealers = [
      track(new zmq.Dealer({ routingId: "alice", receiveTimeout: DEADLINE_MS })),
      track(new zmq.Dealer({ receiveTimeout: DEADLINE_MS })),
      track(new zmq.Dealer({ receiveTimeout: DEADLINE_MS })),
    ];
    const requests = [];
    for (const dealer of dealers) {
      dealer.connect(endpoint(connection.shell_port));
      await dealer.send(requestFrames("kernel_info_request"));
      requests.push(await nextIncoming());
    }
    expect(requests.every((r) => r.channel === "shell")).toBe(true);
    const ids = requests.map((r) => Buffer.from(r.message.identities[0]!).toString("hex"));
    expect(ids[0]).toBe(Buffer.from("alice").toString("hex"));
    // Generated ids are five bytes starting with 0, as libzmq's, and distinct.
    expect(ids.slice(1).map((id) => id.length === 10 && id.startsWith("00"))).toEqual([true, true]);
    expect(new Set(ids).size).toBe(3);

    for (const [i, r] of [...requests.entries()].reverse()) transport.send(outgoing("shell", `reply_${i}`, { identities: r.message.identities }));
    for (const [i, dealer] of dealers.entries()) {
      const reply = decodeFrames(await dealer.receive(), signer);
      expect(reply.ok && reply.message.header.msg_type).toBe(`reply_${i}`);
    }
  });

  it("gives the route to a client that reconnects with its identity while its old connection lingers", async () => {
    const { transport, nextIncoming, endpoint, connection } = await bind();
    const stale = track(new zmq.Dealer({ routingId: "same", receiveTimeout: 300 }));
    stale.connect(endpoint(connection.shell_port));
    await stale.send(requestFrames("kernel_info_request"));
    await nextIncoming(1);
    const fresh = track(new zmq.Dealer({ routingId: "same", receiveTimeout: DEADLINE_MS }));
    fresh.connect(endpoint(connection.shell_port));
    await fresh.send(requestFrames("kernel_info_request"));
    const request = await nextIncoming(2);
    transport.send(outgoing("shell", "kernel_info_reply", { identities: request.message.identities }));
    const reply = decodeFrames(await fresh.receive(), signer);
    expect(reply.ok && reply.message.header.msg_type).toBe("kernel_info_reply");
  });

  it("sends stdin requests to the client whose shell and stdin share an identity, as jupyter_client's do", async () => {
    const { transport, nextIncoming, endpoint, connection } = await bind();
    const shell = track(new zmq.Dealer({ routingId: "session-1", receiveTimeout: DEADLINE_MS }));
    const stdin = track(new zmq.Dealer({ routingId: "session-1", receiveTimeout: DEADLINE_MS }));
    const otherStdin = track(new zmq.Dealer({ routingId: "session-2", receiveTimeout: 300 }));
    shell.connect(endpoint(connection.shell_port));
    stdin.connect(endpoint(connection.stdin_port));
    otherStdin.connect(endpoint(connection.stdin_port));
    // A stdin socket is routable once it has said anything; jupyter_client's has by then, and so must this one.
    await stdin.send(requestFrames("input_reply"));
    await otherStdin.send(requestFrames("input_reply"));
    await nextIncoming(2);
    await shell.send(requestFrames("execute_request"));
    const request = await nextIncoming(3);
    transport.send(outgoing("stdin", "input_request", { identities: request.message.identities, content: { prompt: "?" } }));
    const got = decodeFrames(await stdin.receive(), signer);
    expect(got.ok && got.message.header.msg_type).toBe("input_request");
    await expect(otherStdin.receive()).rejects.toMatchObject({ code: "EAGAIN" });
  });

  it("publishes to SUB sockets by topic prefix, and stops after an unsubscribe", async () => {
    const { transport, endpoint, connection } = await bind();
    const publish = (msgType: string, state = "") => transport.send(outgoing("iopub", msgType, { content: { state } }));
    const everything = track(new zmq.Subscriber({ receiveTimeout: DEADLINE_MS }));
    const filtered = track(new zmq.Subscriber({ receiveTimeout: DEADLINE_MS }));
    everything.connect(endpoint(connection.iopub_port));
    filtered.connect(endpoint(connection.iopub_port));
    everything.subscribe();
    filtered.subscribe("kernel.status");
    /** Topics a subscriber receives up to the message whose content.state is `marker`. */
    const topicsUntil = async (sub: zmq.Subscriber, marker: string) => {
      const topics: string[] = [];
      for (;;) {
        const frames = await sub.receive();
        topics.push(new TextDecoder().decode(frames[0]));
        const content = decodeFrames(frames.slice(1), signer);
        if (content.ok && content.message.content.state === marker) return topics;
      }
    };
    /** Subscriptions travel on their own; publish probes until `sub` hears one (jupyter_client does the same). */
    const probeUntilHeard = async (sub: zmq.Subscriber, msgType: string) => {
      const heard = topicsUntil(sub, "probe");
      let done = false;
      void heard.then(() => (done = true));
      while (!done) {
        publish(msgType, "probe");
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await within(Promise.all([probeUntilHeard(everything, "status"), probeUntilHeard(filtered, "status")]), "subscriptions");

    publish("stream");
    publish("status", "marker-1");
    expect(await topicsUntil(everything, "marker-1")).toContain("kernel.stream");
    expect(new Set(await topicsUntil(filtered, "marker-1"))).toEqual(new Set(["kernel.status"]));

    filtered.unsubscribe("kernel.status");
    filtered.subscribe("kernel.stream");
    await within(probeUntilHeard(filtered, "stream"), "new subscription");
    publish("status");
    publish("stream", "marker-2");
    expect(new Set(await topicsUntil(filtered, "marker-2"))).toEqual(new Set(["kernel.stream"]));
  });

  it("echoes heartbeats to a REQ socket", async () => {
    const { endpoint, connection } = await bind();
    const hb = track(new zmq.Request({ receiveTimeout: DEADLINE_MS }));
    hb.connect(endpoint(connection.hb_port));
    for (const word of ["ping", "again"]) {
      await hb.send(word);
      const [echo] = await hb.receive();
      expect(new TextDecoder().decode(echo)).toBe(word);
    }
  });

  it("binds Unix sockets for an ipc connection file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsnb-ipc-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const { transport, nextIncoming, endpoint, connection } = await bind({ transport: "ipc", ip: join(dir, "kernel") });
    const dealer = track(new zmq.Dealer({ routingId: "ipc-client", receiveTimeout: DEADLINE_MS }));
    dealer.connect(endpoint(connection.shell_port));
    await dealer.send(requestFrames("kernel_info_request"));
    const request = await nextIncoming();
    transport.send(outgoing("shell", "kernel_info_reply", { identities: request.message.identities }));
    const reply = decodeFrames(await dealer.receive(), signer);
    expect(reply.ok && reply.message.header.msg_type).toBe("kernel_info_reply");
  });

  it("receives a 40 MiB frame intact, read in place, between small messages", async () => {
    const received: Uint8Array[][] = [];
    const waiters: Array<() => void> = [];
    const { router, port, log } = await bindRouter({}, (frames) => {
      received.push(frames);
      for (const w of waiters.splice(0)) w();
    });
    const dealer = track(new zmq.Dealer({ routingId: "big" }));
    dealer.connect(`tcp://127.0.0.1:${port}`);
    const big = Buffer.alloc(40 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    await dealer.send("before");
    await dealer.send(["comm_msg", big]);
    await dealer.send("after");
    await within(
      (async () => {
        while (received.length < 3) await new Promise<void>((resolve) => waiters.push(resolve));
      })(),
      "three messages",
    );
    expect(received.map((m) => new TextDecoder().decode(m[1]))).toEqual(["before", "comm_msg", "after"]);
    expect(Buffer.from(received[1]![2]!).equals(big)).toBe(true);
    // Most of it went straight into the frame (the first read of it lands in the scratch buffer).
    expect(router.bytesReadInPlace()).toBeGreaterThan(39 * 1024 * 1024);
    expect(log.lines).toEqual([]);
  });

  it("receives a 40 MiB frame through the whole transport (signed, parsed)", async () => {
    const { nextIncoming, endpoint, connection } = await bind();
    const dealer = track(new zmq.Dealer({ routingId: "big", receiveTimeout: DEADLINE_MS }));
    dealer.connect(endpoint(connection.shell_port));
    const big = Buffer.alloc(40 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    await dealer.send(requestFrames("before"));
    await dealer.send([...requestFrames("comm_msg"), big]);
    await dealer.send(requestFrames("after"));
    const before = await nextIncoming(1);
    const withBuffer = await nextIncoming(2);
    const after = await nextIncoming(3);
    expect([before, withBuffer, after].map((m) => m.message.header.msg_type)).toEqual(["before", "comm_msg", "after"]);
    expect(Buffer.from(withBuffer.message.buffers[0]!).equals(big)).toBe(true);
  });

  it("delivers a reply queued just before close(), then releases the ports", async () => {
    const { transport, nextIncoming, endpoint, connection } = await bind();
    const dealer = track(new zmq.Dealer({ routingId: "last-words", receiveTimeout: DEADLINE_MS }));
    dealer.connect(endpoint(connection.shell_port));
    await dealer.send(requestFrames("shutdown_request"));
    const request = await nextIncoming();
    const big = new Uint8Array(8 * 1024 * 1024).fill(1);
    transport.send(outgoing("shell", "shutdown_reply", { identities: request.message.identities, buffers: [big] }));
    await transport.close({ graceMs: DEADLINE_MS });
    const reply = decodeFrames(await dealer.receive(), signer);
    expect(reply.ok && reply.message.buffers[0]?.byteLength).toBe(big.byteLength);
    const again = await ZmtpTransport.bind({ connection, log: memoryLog() });
    await again.close({ graceMs: 0 });
  });
});

describe("ZMTP transport with peers that misbehave", () => {
  it("hangs up on a connection that is not zeromq, and keeps serving real clients", async () => {
    const { transport, log, nextIncoming, endpoint, connection } = await bind();
    const http = await rawClient(connection.shell_port);
    http.socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await within(http.closed, "hang-up");
    expect(log.lines.some((l) => l.includes("shell: closed a connection") && l.includes("not a ZMTP 3 greeting"))).toBe(true);

    const dealer = track(new zmq.Dealer({ routingId: "after", receiveTimeout: DEADLINE_MS }));
    dealer.connect(endpoint(connection.shell_port));
    await dealer.send(requestFrames("kernel_info_request"));
    const request = await nextIncoming();
    transport.send(outgoing("shell", "kernel_info_reply", { identities: request.message.identities }));
    expect(decodeFrames(await dealer.receive(), signer).ok).toBe(true);
  });

  it("tells a socket of the wrong type why it is refused (a PUSH on shell)", async () => {
    const { log, received, connection } = await bind();
    const push = await rawClient(connection.shell_port);
    push.handshake("PUSH");
    push.socket.write(Buffer.concat(encodeMessage(requestFrames("kernel_info_request"))));
    const error = await push.nextEvent((e) => e.type === "command" && e.command.type === "ERROR");
    expect(error.type === "command" && error.command.type === "ERROR" && error.command.reason).toBe("a PUSH socket cannot talk to ROUTER");
    await within(push.closed, "hang-up");
    expect(received).toEqual([]);
    expect(log.lines.some((l) => l.includes("a PUSH socket cannot talk to ROUTER"))).toBe(true);
  });

  it("refuses a frame over 256 MiB from its header, without buffering it", async () => {
    const { log, connection } = await bind();
    const peer = await rawClient(connection.shell_port);
    peer.handshake("DEALER");
    const before = process.memoryUsage().arrayBuffers;
    peer.socket.write(Uint8Array.of(0x02, 0, 0, 0, 0x10, 0, 0, 0, 0)); // 64 GiB announced
    await within(peer.closed, "hang-up");
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
    expect(log.lines.some((l) => l.includes("over the 268435456-byte limit"))).toBe(true);
  });

  it("filters by topic on the kernel's side, so an uninterested subscriber is not sent the bytes", async () => {
    const { transport, connection } = await bind();
    const sub = await rawClient(connection.iopub_port);
    sub.handshake("SUB");
    sub.socket.write(Buffer.concat(encodeMessage([Uint8Array.of(1, ...text.encode("kernel.status"))])));
    const topics = () => sub.events.filter((e) => e.type === "frame" && e.body.byteLength > 7 && new TextDecoder().decode(e.body).startsWith("kernel."));
    await within(
      (async () => {
        while (topics().length === 0) {
          transport.send(outgoing("iopub", "status"));
          await new Promise((r) => setTimeout(r, 10));
        }
      })(),
      "subscription",
    );
    transport.send(outgoing("iopub", "stream", { buffers: [new Uint8Array(100_000)] }));
    transport.send(outgoing("iopub", "status", { content: { state: "last" } }));
    await sub.nextEvent((e) => e.type === "frame" && new TextDecoder().decode(e.body).includes('"state":"last"'));
    expect(new Set(topics().map((e) => (e.type === "frame" ? new TextDecoder().decode(e.body) : "")))).toEqual(new Set(["kernel.status"]));
  });

  it("drops a connection that never finishes its handshake", async () => {
    const { port, log } = await bindRouter({ handshakeTimeoutMs: 200 });
    const silent = await rawClient(port);
    await within(silent.closed, "hang-up");
    expect(log.lines).toEqual([expect.stringMatching(/^warn: shell: closed a connection from 127\.0\.0\.1:\d+: no handshake within 200 ms$/)]);
  });

  it("bounds a whole message, not only each frame: endless small frames end the connection", async () => {
    const messages: Uint8Array[][] = [];
    const { port, log } = await bindRouter({ maxFrameBytes: 1024 }, (frames) => messages.push(frames));
    const peer = await rawClient(port);
    peer.handshake("DEALER");
    peer.socket.write(Buffer.concat(encodeMessage([new Uint8Array(600), new Uint8Array(300)]))); // 900 bytes: fine
    const part = () => [encodeFrameHeader(600, { more: true }), new Uint8Array(600)];
    peer.socket.write(Buffer.concat([...part(), ...part()])); // 1200 bytes and still "more"
    await within(peer.closed, "hang-up");
    expect(messages.map((m) => m.map((f) => f.byteLength))).toEqual([[5, 600, 300]]);
    expect(log.lines.some((l) => l.includes("a message over the 1024-byte limit"))).toBe(true);
  });

  it("holds IOPub back while a subscriber stops reading, then delivers everything in order", async () => {
    const { transport, connection } = await bind();
    const slow = await rawClient(connection.iopub_port);
    slow.handshake("SUB");
    slow.socket.write(Buffer.concat(encodeMessage([Uint8Array.of(1)]))); // subscribe to everything
    // The subscription is in place once a published message arrives.
    await within(
      (async () => {
        while (!slow.events.some((e) => e.type === "frame")) {
          transport.send(outgoing("iopub", "status"));
          await new Promise((r) => setTimeout(r, 10));
        }
      })(),
      "subscription",
    );
    slow.socket.pause();
    const chunk = new Uint8Array(1024 * 1024);
    const count = 64;
    for (let i = 0; i < count; i++) transport.send(outgoing("iopub", "comm_msg", { content: { i }, buffers: [chunk] }));
    // The OS buffers take a few MiB, our high-water mark 4 MiB; the rest must wait in the kernel's queue.
    // Everything the kernel writes without waiting is written by the next turn of the event loop; what is left
    // in the queue is what producers see, and slow down for.
    await new Promise((r) => setImmediate(r));
    expect(transport.pending("iopub").bytes).toBeGreaterThan(32 * 1024 * 1024);
    slow.socket.resume();
    await within(transport.drained("iopub"), "drain", 20_000);
    const order: number[] = [];
    await within(
      (async () => {
        for (;;) {
          order.length = 0;
          // Frames arrive as events: topic, delimiter, signature, header, parent, metadata, content, buffer.
          const bodies = slow.events.filter((e): e is Extract<DecodeEvent, { type: "frame" }> => e.type === "frame");
          for (let i = 0; i + 7 < bodies.length; i++) {
            if (new TextDecoder().decode(bodies[i]!.body) !== "kernel.comm_msg") continue;
            order.push((JSON.parse(new TextDecoder().decode(bodies[i + 6]!.body)) as { i: number }).i);
          }
          if (order.length === count) return;
          await new Promise((r) => setTimeout(r, 20));
        }
      })(),
      "every message",
      20_000,
    );
    expect(order).toEqual(Array.from({ length: count }, (_, i) => i));
  });
});
