#!/usr/bin/env python3
"""Prints the Fulcrum/HAProxy table from bench/run.sh's results.tsv.

Each line of results.tsv: scenario, metric, proxy, repetition, value.
The table shows the median over repetitions per proxy and the ratio
Fulcrum/HAProxy; `--reps` adds every repetition's value (the spread).
"""
import statistics
import sys
from collections import defaultdict

# (scenario, metric, label, higher_is_better, goal on the ratio or None)
ROWS = [
    ("l7_13", "rps", "L7 keep-alive 13 B, req/s", True, 1.0),
    ("l7_13", "cpu_us_per_req", "L7 keep-alive 13 B, proxy CPU us/req", False, 0.8),
    ("l7_13", "p50_us", "L7 keep-alive 13 B, p50 us (50 conns)", False, None),
    ("l7_13", "p99_us", "L7 keep-alive 13 B, p99 us (50 conns)", False, 1.0),
    ("l7_64k", "rps", "L7 keep-alive 64 KiB, req/s", True, 1.0),
    ("l7_64k", "cpu_us_per_req", "L7 keep-alive 64 KiB, proxy CPU us/req", False, 1.0),
    ("l7_64k", "p99_us", "L7 keep-alive 64 KiB, p99 us (50 conns)", False, 1.0),
    ("l4_13", "rps", "L4 keep-alive 13 B, req/s", True, 1.0),
    ("l4_13", "cpu_us_per_req", "L4 keep-alive 13 B, proxy CPU us/req", False, 1.0),
    ("l4_13", "p99_us", "L4 keep-alive 13 B, p99 us (50 conns)", False, 1.0),
    ("l7_close", "rps", "L7 new connections/s (Connection: close)", True, 1.5),
    ("l7_close", "cpu_us_per_req", "L7 Connection: close, proxy CPU us/conn", False, 1.0),
    ("l7_close", "p99_us", "L7 Connection: close, p99 us (50 conns)", False, 1.0),
    ("lat1", "p50_us", "L7 1 connection, p50 us", False, None),
    ("lat1", "p99_us", "L7 1 connection, p99 us", False, 1.0),
    ("lat1", "cpu_us_per_req", "L7 1 connection, proxy CPU us/req", False, 1.0),
    ("iperf1", "gbit_s", "TCP iperf3 1 stream, Gbit/s", True, 1.0),
    ("iperf1", "cpu_s_per_gib", "TCP iperf3 1 stream, proxy CPU s/GiB", False, None),
    ("iperf8", "gbit_s", "TCP iperf3 8 streams, Gbit/s", True, 1.0),
    ("iperf8", "cpu_s_per_gib", "TCP iperf3 8 streams, proxy CPU s/GiB", False, None),
    ("rss_l7", "rss_base_mib", "RSS MiB, no connections", False, None),
    ("rss_l7", "rss_mib", "RSS MiB, {conns} idle conns, L7 listener", False, None),
    ("rss_l7", "kib_per_conn", "L7 idle conn, KiB RSS each", False, None),
    ("rss_l4", "rss_mib", "RSS MiB, {conns} idle conns, L4 listener", False, None),
    ("rss_l4", "kib_per_conn", "L4 idle conn, KiB RSS each", False, None),
]
INFO = [  # how busy the proxy's core was: below ~95 % the load side was the bottleneck
    (sc, "proxy_cpu_pct") for sc in ("l7_13", "l7_64k", "l4_13", "l7_close", "lat1", "iperf1", "iperf8")
]
PROXIES = ("haproxy", "fulcrum")


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_reps = "--reps" in sys.argv
    data = defaultdict(list)
    for line in open(args[0]):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            continue
        sc, metric, proxy, rep, value = parts
        data[(sc, metric, proxy)].append((int(rep), float(value)))

    def median(sc, metric, proxy):
        vals = [v for _, v in data.get((sc, metric, proxy), [])]
        return statistics.median(vals) if vals else None

    rows = []
    for sc, metric, label, higher, goal in ROWS:
        h, f = median(sc, metric, "haproxy"), median(sc, metric, "fulcrum")
        if h is None and f is None:
            continue
        ratio = f / h if h and f is not None else None
        if goal is None or ratio is None:
            verdict = ""
        elif higher:
            verdict = f">= {goal:g}  " + ("ok" if ratio >= goal else "MISS")
        else:
            verdict = f"<= {goal:g}  " + ("ok" if ratio <= goal else "MISS")
        reps = ""
        if show_reps:
            reps = "  H " + "/".join(fmt(v) for _, v in sorted(data.get((sc, metric, "haproxy"), [])))
            reps += "  F " + "/".join(fmt(v) for _, v in sorted(data.get((sc, metric, "fulcrum"), [])))
        if "{conns}" in label:
            label = label.format(conns=f"{median(sc, 'conns', 'haproxy') or median(sc, 'conns', 'fulcrum') or 0:,.0f}")
        rows.append((label, fmt(h), fmt(f), fmt(ratio) if ratio is not None else "-", verdict, reps))
    for sc, metric in INFO:
        h, f = median(sc, metric, "haproxy"), median(sc, metric, "fulcrum")
        if h is None and f is None:
            continue
        rows.append((f"{sc}: proxy core busy %", fmt(h), fmt(f), "", "(info)", ""))
        h, f = median(sc, "load_cpu_pct", "haproxy"), median(sc, "load_cpu_pct", "fulcrum")
        if h is not None or f is not None:
            rows.append((f"{sc}: load core busy %", fmt(h), fmt(f), "", "(info)", ""))
        h, f = median(sc, "segs_per_req", "haproxy"), median(sc, "segs_per_req", "fulcrum")
        if h is not None or f is not None:
            rows.append((f"{sc}: TCP segments per request", fmt(h), fmt(f), "", "(info)", ""))
    errs = {(sc, p): sum(v for _, v in vals) for (sc, m, p), vals in data.items() if m == "errors"}

    w = max(len(r[0]) for r in rows) if rows else 10
    header = ("metric", "HAProxy", "Fulcrum", "F/H", "goal")
    print()
    print(f"| {header[0]:<{w}} | {header[1]:>9} | {header[2]:>9} | {header[3]:>5} | {header[4]:<13} |")
    print(f"|{'-' * (w + 2)}|{'-' * 11}|{'-' * 11}|{'-' * 7}|{'-' * 15}|")
    for label, h, f, r, verdict, reps in rows:
        print(f"| {label:<{w}} | {h:>9} | {f:>9} | {r:>5} | {verdict:<13} |{reps}")
    bad = {k: v for k, v in errs.items() if v}
    if bad:
        print("\nerrors (socket errors + non-2xx) summed over repetitions: "
              + ", ".join(f"{sc}/{p}: {v:.0f}" for (sc, p), v in sorted(bad.items())))
    n = max((len(v) for v in data.values()), default=0)
    print(f"\nmedians of {n} repetition(s); F/H < 1 is better for CPU, latency and RSS, > 1 for req/s and Gbit/s.")


if __name__ == "__main__":
    main()
