"""A dependency-free Python client for tsnb's named pipes (protocol/PIPES.md).

Run from a tsnb notebook with ``!/usr/bin/python3 script.py``: the kernel gives every ``!command`` the
environment variables TSNB_PIPE (program -> kernel), TSNB_PIPE_BACK (kernel -> program) and
TSNB_PIPE_TOKEN. Values go to the browser (``tsnb_comm.subscribe(address, cb)`` on the page) and values
the browser sends to a subscribed address come back here.

    from tsnb_pipe import Pipe
    with Pipe() as pipe:
        pipe.send("plot", {"title": "sine", "y": memoryview(array("f", ys))})
        pipe.subscribe("clicks")
        address, value = pipe.receive(timeout=30)
        name = pipe.input("Your name? ")  # the notebook shows an input box; getpass() hides the typing

Values are JSON values (None, 0, "", False included) in which binary data may appear anywhere:
bytes and bytearray travel as Uint8Array; a memoryview or array.array as the typed array of its format
("f" -> Float32Array, "d" -> Float64Array, "i" -> Int32Array, ...). Binary data received comes back as
bytes (Uint8Array, ArrayBuffer, DataView) or as a memoryview cast to the typed array's format.
"""

import json
import os
import select
import struct
import sys
import time

FRAMING_VERSION = 1
BUFFER_KEY = "$tsnb_buffer"
MAX_HEADER_BYTES = 64 * 1024 * 1024

# typed array kind -> memoryview format (little-endian, as on every platform tsnb runs on)
_KIND_FORMAT = {
    "Int8Array": "b",
    "Uint8Array": "B",
    "Uint8ClampedArray": "B",
    "Int16Array": "h",
    "Uint16Array": "H",
    "Int32Array": "i",
    "Uint32Array": "I",
    "Float32Array": "f",
    "Float64Array": "d",
    "BigInt64Array": "q",
    "BigUint64Array": "Q",
}
_FORMAT_KIND = {
    "b": "Int8Array",
    "B": "Uint8Array",
    "h": "Int16Array",
    "H": "Uint16Array",
    "i": "Int32Array",
    "I": "Uint32Array",
    "l": "BigInt64Array" if struct.calcsize("l") == 8 else "Int32Array",
    "L": "BigUint64Array" if struct.calcsize("L") == 8 else "Uint32Array",
    "q": "BigInt64Array",
    "Q": "BigUint64Array",
    "f": "Float32Array",
    "d": "Float64Array",
}


class PipeError(Exception):
    """The pipe is unusable: not run by tsnb, closed, or the kernel refused something (with its reason)."""


class PipeTimeout(PipeError):
    """Nothing arrived before the deadline."""


class InputNotAvailable(PipeError):
    """``input()`` got no line: the front-end takes no input (nbclient, nbconvert), or it was interrupted."""


def _encode(value, buffers):
    if isinstance(value, (bytes, bytearray)):
        buffers.append(bytes(value))
        return {BUFFER_KEY: len(buffers) - 1, "kind": "Uint8Array"}
    if isinstance(value, memoryview) or type(value).__name__ == "array":
        view = memoryview(value)
        fmt = view.format.lstrip("<=@")
        kind = _FORMAT_KIND.get(fmt)
        if kind is None:
            raise TypeError("a memoryview of format %r cannot travel (use b, B, h, H, i, I, l, L, q, Q, f or d)" % view.format)
        buffers.append(view.tobytes())
        return {BUFFER_KEY: len(buffers) - 1, "kind": kind}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError("object keys must be strings, got %r" % (k,))
            out[k] = _encode(v, buffers)
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(v, buffers) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError("a value of type %s cannot be sent (JSON values, bytes, memoryview, array.array)" % type(value).__name__)


def _decode(value, buffers):
    if isinstance(value, dict):
        if BUFFER_KEY in value and "kind" in value and len(value) == 2:
            index, kind = value[BUFFER_KEY], value["kind"]
            if not isinstance(index, int) or not 0 <= index < len(buffers):
                raise PipeError("a value refers to binary part %r, which does not exist" % (index,))
            data = buffers[index]
            if kind in ("Uint8Array", "ArrayBuffer", "DataView"):
                return data
            fmt = _KIND_FORMAT.get(kind)
            if fmt is None:
                raise PipeError("unknown binary kind %r" % (kind,))
            return memoryview(data).cast(fmt)
        return {k: _decode(v, buffers) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, buffers) for v in value]
    return value


class Pipe:
    """The two FIFOs of this program. Not thread-safe: use it from one thread."""

    def __init__(self, environ=None, timeout=10.0):
        env = os.environ if environ is None else environ
        missing = [n for n in ("TSNB_PIPE", "TSNB_PIPE_BACK", "TSNB_PIPE_TOKEN") if not env.get(n)]
        if missing:
            raise PipeError("%s not set: run this program from a tsnb notebook cell with !command" % ", ".join(missing))
        # The kernel side holds both FIFOs open, so neither open blocks.
        self._out = os.open(env["TSNB_PIPE"], os.O_WRONLY)
        self._in = os.open(env["TSNB_PIPE_BACK"], os.O_RDONLY)
        self._buffer = bytearray()
        self._inbox = []  # (address, value) delivered but not yet received
        self._sync_acks = set()
        self._next_sync = 0
        self._input_replies = {}
        self._next_input = 0
        self._closed = False
        self.frontends = 0
        self.read_failures = []
        self._hello = None
        self._write({"op": "hello", "token": env["TSNB_PIPE_TOKEN"]})
        self._wait_until(lambda: self._hello is not None, timeout, "the kernel did not answer hello")
        self.frontends = self._hello.get("frontends", 0)

    # ---- sending ----------------------------------------------------------------------------------

    def send(self, address, value):
        """Sends a value to every browser listening on ``address``."""
        self.send_many([(address, value)])

    def send_many(self, pairs):
        """Sends several (address, value) pairs in one frame, in order."""
        items, buffers = [], []
        for address, value in pairs:
            own = []
            item = {"address": address, "value": _encode(value, own)}
            if own:
                item["nbuf"] = len(own)
                buffers.extend(own)
            items.append(item)
        self._write({"op": "comm_send", "items": items}, buffers)

    def subscribe(self, address):
        """Values a browser sends to ``address`` are delivered to ``receive()`` from now on."""
        self._write({"op": "comm_subscribe", "address": address})

    def unsubscribe(self, address):
        self._write({"op": "comm_unsubscribe", "address": address})

    def read(self, address, timeout=10.0):
        """Asks the browsers listening on ``address`` for their current value and returns it."""
        header = {"op": "comm_read", "address": address}
        if timeout is not None:
            header["timeout_ms"] = int(timeout * 1000)
        self._write(header)
        # The kernel side answers comm_read_failed at its deadline; the extra second covers the trip back.
        return self.receive(timeout=None if timeout is None else timeout + 1, address=address)[1]

    def sync(self, timeout=None):
        """Returns once everything sent so far reached the kernel and its queues to the browsers have room."""
        self._next_sync += 1
        sync_id = "py-%d" % self._next_sync
        self._write({"op": "comm_sync", "id": sync_id})
        self._wait_until(lambda: sync_id in self._sync_acks, timeout, "comm_sync was not acknowledged")
        self._sync_acks.discard(sync_id)

    def input(self, prompt="", password=False, timeout=None):
        """Asks the notebook user for a line, like the built-in ``input()``: the prompt and an input box appear
        under the running cell. Raises InputNotAvailable when the front-end takes no input (nbclient, nbconvert)
        or the cell is interrupted, PipeTimeout after ``timeout`` s (the default waits for the user)."""
        self._next_input += 1
        input_id = "py-input-%d" % self._next_input
        self._write({"op": "input_request", "id": input_id, "prompt": str(prompt), "password": bool(password)})
        self._wait_until(lambda: input_id in self._input_replies, timeout, "no answer to input()")
        reply = self._input_replies.pop(input_id)
        if reply.get("status") == "ok" and isinstance(reply.get("value"), str):
            return reply["value"]
        raise InputNotAvailable("%s: %s" % (reply.get("ename", "InputError"), reply.get("evalue", "no input")))

    def getpass(self, prompt="Password: ", timeout=None):
        """Like ``input()``, with the typing hidden (``getpass.getpass()`` for a notebook)."""
        return self.input(prompt, password=True, timeout=timeout)

    def display(self, data, metadata=None, display_id=None):
        """Shows rich output in the running cell: ``data`` maps MIME types to content."""
        header = {"op": "display", "data": data, "metadata": metadata or {}}
        if display_id is not None:
            header["display_id"] = display_id
        self._write(header)

    def update_display(self, display_id, data, metadata=None):
        self._write({"op": "update_display", "display_id": display_id, "data": data, "metadata": metadata or {}})

    def clear_output(self, wait=False):
        self._write({"op": "clear_output", "wait": bool(wait)})

    # ---- receiving --------------------------------------------------------------------------------

    def receive(self, timeout=None, address=None):
        """The next (address, value) from the browser (of ``address`` if given); PipeTimeout after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for i, (a, v) in enumerate(self._inbox):
                if address is None or a == address:
                    del self._inbox[i]
                    return a, v
            if address is not None and any(f[0] == address for f in self.read_failures):
                reason = [f[1] for f in self.read_failures if f[0] == address][0]
                self.read_failures = [f for f in self.read_failures if f[0] != address]
                raise PipeTimeout("read of %r failed: %s" % (address, reason))
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0:
                raise PipeTimeout("no value%s arrived within %s s" % ("" if address is None else " for %r" % address, timeout))
            self._fill(left)

    # ---- framing ----------------------------------------------------------------------------------

    def _write(self, header, buffers=()):
        if self._closed:
            raise PipeError("the pipe is closed")
        header = dict(header, v=FRAMING_VERSION)
        if buffers:
            header["buffers"] = [len(b) for b in buffers]
        data = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
        parts = [struct.pack(">I", len(data)), data] + [bytes(b) for b in buffers]
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    n = os.write(self._out, view)
                    view = view[n:]
        except BrokenPipeError:
            raise PipeError("the kernel closed the pipe%s" % self._reason()) from None

    def _reason(self):
        # The kernel says why before closing: read what is left.
        try:
            self._fill(0.2)
        except PipeError as err:
            return ": %s" % err
        return ""

    def _fill(self, timeout):
        ready, _, _ = select.select([self._in], [], [], timeout)
        if not ready:
            return False
        chunk = os.read(self._in, 1 << 20)
        if not chunk:
            raise PipeError("the kernel closed the pipe")
        self._buffer += chunk
        while True:
            frame = self._take()
            if frame is None:
                return True
            self._dispatch(*frame)

    def _take(self):
        if len(self._buffer) < 4:
            return None
        (length,) = struct.unpack(">I", self._buffer[:4])
        if length > MAX_HEADER_BYTES:
            raise PipeError("frame header of %d bytes from the kernel" % length)
        if len(self._buffer) < 4 + length:
            return None
        header = json.loads(bytes(self._buffer[4 : 4 + length]).decode("utf-8"))
        sizes = header.pop("buffers", [])
        total = 4 + length + sum(sizes)
        if len(self._buffer) < total:
            return None
        buffers, offset = [], 4 + length
        for size in sizes:
            buffers.append(bytes(self._buffer[offset : offset + size]))
            offset += size
        del self._buffer[:total]
        return header, buffers

    def _dispatch(self, header, buffers):
        op = header.get("op")
        if op == "error":
            self._closed = True
            raise PipeError("the kernel closed the pipe: %s" % header.get("message"))
        if op == "comm_deliver":
            next_buffer = 0
            for item in header.get("items", []):
                n = item.get("nbuf", 0)
                own = buffers[next_buffer : next_buffer + n]
                next_buffer += n
                self._inbox.append((item["address"], _decode(item["value"], own)))
        elif op == "comm_sync_ack":
            self._sync_acks.add(header.get("id"))
        elif op == "input_reply":
            self._input_replies[header.get("id")] = header
        elif op == "comm_read_failed":
            self.read_failures.append((header.get("address"), header.get("message")))
        elif op == "hello_ack":
            self._hello = header
        # Other ops (e.g. comm_frontends) are informational; unknown ones are ignored for forward compatibility.

    def _wait_until(self, done, timeout, what):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise PipeTimeout("%s within %s s" % (what, timeout))
            self._fill(left)

    def close(self):
        if self._closed:
            return
        self._closed = True
        os.close(self._out)
        os.close(self._in)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


if __name__ == "__main__":
    sys.stderr.write("tsnb_pipe is a library: from tsnb_pipe import Pipe\n")
    sys.exit(2)
