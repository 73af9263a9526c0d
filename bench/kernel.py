"""Kernel benchmark: the same jupyter_client code measures every kernel.

Usage: /usr/bin/python3 bench/kernel.py [--rounds 300] [--lines 10000] KERNEL_NAME...

Prints one JSON object per kernel on stdout (one line each); progress goes to stderr. bench/run.mjs drives
it and prints the comparison. Kernelspecs are found the usual way (JUPYTER_PATH included).

Figures, per kernel:
- start_ms: from KernelManager.start_kernel() to the first kernel_info_reply.
- ready_ms: until IOPub is proven connected too (a status message arrived), as clients wait before running.
- first_cell_ms: the first execute (a trivial expression) from request to reply + idle.
- rtt_median_ms / rtt_p99_ms: trivial execute round trips (request to reply + idle), ROUNDS runs.
- burst_ms: a cell printing LINES lines, request to idle; burst_lines_at_idle: lines received by idle;
  burst_lines_total: lines received by idle plus within 5 s after it (late lines mean output after idle).
- rss_mb: resident memory of the kernel process and all its descendants (summed from /proc), after the
  round trips; rss_after_burst_mb: the same after the burst; rss_after_typed_mb: after a cell with a type
  annotation (tsnb's esbuild service process then runs).
- pss_mb: the same with each shared page split among the processes that map it.
- unique_mb: the tree's resident pages counted once each (the union of their physical frames, from
  /proc/PID/pagemap): RSS counts a page two processes share (tsnb's kernel and program both run the node binary)
  twice, PSS counts it partly. Reading frame numbers needs CAP_SYS_ADMIN (root); otherwise null.
"""

import argparse
import json
import os
import statistics
import struct
import sys
import time
from queue import Empty

import zmq
from jupyter_client.manager import KernelManager

TRIVIAL = {"python": "1+1", "typescript": "1+1", "javascript": "1+1"}
BURST = {
    "python": "for i in range({n}):\n    print('line', i)",
    "typescript": 'for (let i = 0; i < {n}; i++) console.log("line", i);',
    "javascript": 'for (let i = 0; i < {n}; i++) console.log("line", i);',
}
# A cell with a type annotation, run last: for tsnb it starts esbuild's service process (plain-JavaScript cells
# never do), which a TypeScript user's session has, so the memory figure after it is the realistic one.
TYPED = {"python": "typed: int = 1", "typescript": "const typed: number = 1;", "javascript": "const typed = 1;"}
DEADLINE_S = 120.0


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def process_tree_rss(root_pid):
    """[(pid, command, VmRSS kB)] for root_pid and every process below it, read from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # the process exited while we looked
        # Field 4 is the parent pid; the command name (field 2) may contain spaces, so split after ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    rows = []
    stack = [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{pid}/status") as f:
                rss = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        except OSError:
            continue
        rows.append((pid, cmd, rss))
    return rows


def tree_rss_mb(root_pid):
    return sum(r[2] for r in process_tree_rss(root_pid)) / 1024


def tree_pss_mb(root_pid):
    """Proportional set size of the tree: pages shared between processes (the node binary mapped by both the
    kernel and its program) are split among them instead of counted once per process, as RSS does."""
    total_kb = 0
    for pid, _cmd, _rss in process_tree_rss(root_pid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total_kb += next((int(l.split()[1]) for l in f if l.startswith("Pss:")), 0)
        except OSError:
            continue  # the process exited while we looked
    return total_kb / 1024


def tree_unique_mb(root_pid):
    """MB of distinct physical pages resident in the tree's processes, or None when frame numbers are hidden."""
    frames = set()
    for pid, _cmd, _rss in process_tree_rss(root_pid):
        try:
            with open(f"/proc/{pid}/smaps") as smaps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
                lo = hi = None
                for line in smaps:
                    fields = line.split()
                    if fields and "-" in fields[0] and not fields[0].endswith(":"):
                        lo, hi = (int(x, 16) for x in fields[0].split("-"))
                    elif fields and fields[0] == "Rss:" and int(fields[1]) > 0 and lo is not None:
                        # Only mappings with resident pages: V8 and WebAssembly reserve gigabytes they never touch.
                        pagemap.seek(lo // 4096 * 8)
                        data = pagemap.read((hi - lo) // 4096 * 8)
                        for (entry,) in struct.iter_unpack("<Q", data):
                            if entry >> 63:  # present in RAM (swapped pages have bit 62 instead)
                                pfn = entry & ((1 << 55) - 1)
                                if pfn == 0:
                                    return None  # frame numbers hidden from this user
                                frames.add(pfn)
        except OSError:
            continue  # the process exited while we looked
    return len(frames) * 4096 / (1024 * 1024)


class Deadline(Exception):
    pass


def run_request(kc, send, deadline_s=DEADLINE_S, on_iopub=None):
    """Sends a shell request with `send()` and waits for its reply AND its idle status, whichever comes first,
    polling both sockets at once so the wait itself adds no latency. Returns (reply, elapsed_s, idle_s)."""
    poller = zmq.Poller()
    shell, iopub = kc.shell_channel.socket, kc.iopub_channel.socket
    poller.register(shell, zmq.POLLIN)
    poller.register(iopub, zmq.POLLIN)
    t0 = time.perf_counter()
    msg_id = send()
    end = t0 + deadline_s
    reply = None
    idle_at = None
    while reply is None or idle_at is None:
        remaining = end - time.perf_counter()
        if remaining <= 0:
            raise Deadline(f"no reply/idle for {msg_id} within {deadline_s} s")
        ready = dict(poller.poll(timeout=remaining * 1000))
        if shell in ready:
            msg = kc.get_shell_msg(timeout=0)
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = msg
        if iopub in ready:
            msg = kc.get_iopub_msg(timeout=0)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if on_iopub is not None:
                on_iopub(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle_at = time.perf_counter()
    return reply, time.perf_counter() - t0, idle_at - t0


def bench_kernel(name, rounds, lines):
    km = KernelManager(kernel_name=name)
    language = km.kernel_spec.language.lower()
    result = {"kernel": name, "language": language, "display_name": km.kernel_spec.display_name}
    t0 = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        pid = km.provisioner.process.pid
        # start: first kernel_info_reply
        kc.kernel_info()
        kc.get_shell_msg(timeout=DEADLINE_S)
        result["start_ms"] = (time.perf_counter() - t0) * 1000
        # ready: IOPub connected (PUB/SUB joins late: retry kernel_info until a status reaches us)
        end = time.perf_counter() + DEADLINE_S
        while True:
            try:
                kc.get_iopub_msg(timeout=0.02)
                break
            except Empty:
                if time.perf_counter() > end:
                    raise Deadline("IOPub never delivered a status message")
                kc.kernel_info()
        result["ready_ms"] = (time.perf_counter() - t0) * 1000
        # Drain what the readiness probes left behind.
        for get in (kc.get_shell_msg, kc.get_iopub_msg):
            while True:
                try:
                    get(timeout=0.3)
                except Empty:
                    break

        code = TRIVIAL[language]
        reply, elapsed, _ = run_request(kc, lambda: kc.execute(code))
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"first cell failed: {reply['content']}")
        result["first_cell_ms"] = elapsed * 1000

        samples = []
        for i in range(rounds):
            reply, elapsed, _ = run_request(kc, lambda: kc.execute(code))
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"round {i} failed: {reply['content']}")
            samples.append(elapsed * 1000)
        samples.sort()
        result["rtt_median_ms"] = statistics.median(samples)
        result["rtt_p99_ms"] = samples[min(len(samples) - 1, int(round(0.99 * len(samples))) - 1)]
        result["rtt_rounds"] = rounds
        result["rss_mb"] = tree_rss_mb(pid)
        result["pss_mb"] = tree_pss_mb(pid)
        result["unique_mb"] = tree_unique_mb(pid)
        result["rss_by_process"] = [
            {"pid": p, "command": cmd[:120], "rss_mb": round(kb / 1024, 1)} for p, cmd, kb in process_tree_rss(pid)
        ]

        received = {"lines": 0}

        def count_lines(msg):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                received["lines"] += msg["content"]["text"].count("\n")

        reply, _, to_idle = run_request(kc, lambda: kc.execute(BURST[language].format(n=lines)), on_iopub=count_lines)
        result["burst_ms"] = to_idle * 1000
        result["burst_status"] = reply["content"]["status"]
        result["burst_lines_at_idle"] = received["lines"]
        # Stragglers: output published after idle (a protocol violation some kernels commit).
        end = time.perf_counter() + 5.0
        while received["lines"] < lines and time.perf_counter() < end:
            try:
                count_lines(kc.get_iopub_msg(timeout=max(0.01, end - time.perf_counter())))
            except Empty:
                break
        result["burst_lines_total"] = received["lines"]
        result["burst_lines_expected"] = lines
        result["rss_after_burst_mb"] = tree_rss_mb(pid)
        reply, _, _ = run_request(kc, lambda: kc.execute(TYPED[language]))
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"typed cell failed: {reply['content']}")
        result["rss_after_typed_mb"] = tree_rss_mb(pid)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--lines", type=int, default=10000)
    parser.add_argument("kernels", nargs="+")
    args = parser.parse_args()
    status = 0
    for name in args.kernels:
        log(f"bench: {name} ...")
        try:
            res = bench_kernel(name, args.rounds, args.lines)
        except Exception as err:  # one broken kernel must not hide the others' figures
            res = {"kernel": name, "error": f"{type(err).__name__}: {err}"}
            status = 1
        print(json.dumps(res), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
