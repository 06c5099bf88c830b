#!/usr/bin/env python3
"""Opens COUNT TCP connections to HOST:PORT, sends nothing, and holds them.

Prints "open N" once all connections are established (or "failed N: reason"
and exits 1), then holds them until SIGTERM/SIGINT or --hold seconds pass.
Used by bench/run.sh to measure a proxy's RSS with 10,000 idle connections.
"""
import argparse
import resource
import signal
import socket
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--hold", type=float, default=120.0)
    args = ap.parse_args()

    want = args.count + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, min(hard, 1 << 20)), max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    conns = []
    try:
        for _ in range(args.count):
            s = socket.create_connection((args.host, args.port), timeout=10)
            s.setblocking(False)
            conns.append(s)
    except OSError as e:
        print(f"failed {len(conns)}: {e}", flush=True)
        return 1
    print(f"open {len(conns)}", flush=True)
    deadline = time.monotonic() + args.hold
    while not stop and time.monotonic() < deadline:
        time.sleep(0.1)
    closed_by_peer = 0
    for s in conns:
        try:
            if s.recv(1) == b"":
                closed_by_peer += 1
        except BlockingIOError:
            pass
        except OSError:
            closed_by_peer += 1
        s.close()
    if closed_by_peer:
        print(f"closed_by_peer {closed_by_peer}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
