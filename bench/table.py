#!/usr/bin/env python3
"""Prints the Fulcrum/HAProxy table from bench/run.sh's results.tsv.

Each line of results.tsv: scenario, metric, proxy, repetition, value.
The table shows the median over repetitions per proxy and the ratio
Fulcrum/HAProxy; when nginx ran as the reference proxy (L7 scenarios), its
median and nginx/HAProxy follow; when HAProxy also ran as Octavia configures
it (`haproxy_octavia`), its median and Fulcrum/that follow. `--reps` adds
every repetition's value (the spread).
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
    ("l7_close", "conns_per_core_s", "L7 new conns/s one proxy core sustains (derived)", True, 1.5),
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
    ("mc_l7_13", "rps", "all cores: L7 keep-alive 13 B, req/s", True, 1.0),
    ("mc_l7_13", "cpu_us_per_req", "all cores: L7 keep-alive 13 B, proxy CPU us/req", False, 1.0),
    ("mc_l7_close", "rps", "all cores: L7 new connections/s", True, 1.0),
    ("mc_l7_close", "cpu_us_per_req", "all cores: L7 Connection: close, proxy CPU us/conn", False, 1.0),
]
INFO = [  # how busy the proxy's core was: below ~95 % the load side was the bottleneck
    (sc, "proxy_cpu_pct") for sc in ("l7_13", "l7_64k", "l4_13", "l7_close", "lat1", "iperf1", "iperf8")
]


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

    # Derived: the new connections/s a fully busy proxy core would sustain, from
    # CPU per connection (the measured rate is bounded by the load core).
    for (sc, metric, proxy), vals in list(data.items()):
        if sc == "l7_close" and metric == "cpu_us_per_req":
            data[(sc, "conns_per_core_s", proxy)] = [(r, 1e6 / v) for r, v in vals if v > 0]

    def median(sc, metric, proxy):
        vals = [v for _, v in data.get((sc, metric, proxy), [])]
        return statistics.median(vals) if vals else None

    has_nginx = any(p == "nginx" for (_, _, p) in data)
    has_octavia = any(p == "haproxy_octavia" for (_, _, p) in data)

    def ratio(a, b):
        return a / b if b and a is not None else None

    rows = []
    for sc, metric, label, higher, goal in ROWS:
        h, f, n = (median(sc, metric, p) for p in ("haproxy", "fulcrum", "nginx"))
        if h is None and f is None:
            continue
        r = ratio(f, h)
        if goal is None or r is None:
            verdict = ""
        elif higher:
            verdict = f">= {goal:g}  " + ("ok" if r >= goal else "MISS")
        else:
            verdict = f"<= {goal:g}  " + ("ok" if r <= goal else "MISS")
        o = median(sc, metric, "haproxy_octavia")
        fo = ratio(f, o)
        reps = ""
        if show_reps:
            for tag, p in (("H", "haproxy"), ("F", "fulcrum"), ("N", "nginx"), ("Ho", "haproxy_octavia")):
                if data.get((sc, metric, p)):
                    reps += f"  {tag} " + "/".join(fmt(v) for _, v in sorted(data[(sc, metric, p)]))
        if "{conns}" in label:
            label = label.format(conns=f"{median(sc, 'conns', 'haproxy') or median(sc, 'conns', 'fulcrum') or 0:,.0f}")
        nr = ratio(n, h)
        rows.append((label, fmt(h), fmt(f), fmt(r) if r is not None else "-", verdict,
                     fmt(n) if n is not None else "", fmt(nr) if nr is not None else "",
                     fmt(o) if o is not None else "", fmt(fo) if fo is not None else "", reps))
    for sc, metric in INFO:
        for m, what in ((metric, "proxy core busy %"), ("load_cpu_pct", "load core busy %"),
                        ("segs_per_req", "TCP segments per request")):
            h, f, n = (median(sc, m, p) for p in ("haproxy", "fulcrum", "nginx"))
            if h is None and f is None:
                continue
            o = median(sc, m, "haproxy_octavia")
            rows.append((f"{sc}: {what}", fmt(h), fmt(f), "", "(info)", fmt(n) if n is not None else "", "",
                         fmt(o) if o is not None else "", "", ""))
    errs = {(sc, p): sum(v for _, v in vals) for (sc, m, p), vals in data.items() if m == "errors"}

    w = max(len(r[0]) for r in rows) if rows else 10
    print()
    head = f"| {'metric':<{w}} | {'HAProxy':>9} | {'Fulcrum':>9} | {'F/H':>5} | {'goal':<13} |"
    rule = f"|{'-' * (w + 2)}|{'-' * 11}|{'-' * 11}|{'-' * 7}|{'-' * 15}|"
    if has_nginx:
        head += f" {'nginx':>9} | {'N/H':>5} |"
        rule += f"{'-' * 11}|{'-' * 7}|"
    if has_octavia:
        head += f" {'H Octavia':>9} | {'F/Ho':>5} |"
        rule += f"{'-' * 11}|{'-' * 7}|"
    print(head)
    print(rule)
    for label, h, f, r, verdict, n, nr, o, fo, reps in rows:
        line = f"| {label:<{w}} | {h:>9} | {f:>9} | {r:>5} | {verdict:<13} |"
        if has_nginx:
            line += f" {n:>9} | {nr:>5} |"
        if has_octavia:
            line += f" {o:>9} | {fo:>5} |"
        print(line + reps)
    # Each repetition runs the proxies back to back, so the ratio within a
    # repetition is less affected by the machine getting busier or quieter
    # during the run than the ratio of the medians.
    paired = []
    for sc, metric, label, _, _ in ROWS:
        if metric not in ("cpu_us_per_req", "cpu_s_per_gib"):
            continue
        h = dict(data.get((sc, metric, "haproxy"), []))
        f = dict(data.get((sc, metric, "fulcrum"), []))
        rs = [f[r] / h[r] for r in sorted(h) if r in f and h[r] > 0]
        if len(rs) >= 2:
            lower = sum(1 for x in rs if x < 1)
            paired.append(f"{label}: {statistics.median(rs):.2f}"
                          f" (Fulcrum lower in {lower} of {len(rs)} repetitions)")
    if paired:
        print("\npaired F/H, the median of the ratios within each repetition:")
        for line in paired:
            print(f"  {line}")
    bad = {k: v for k, v in errs.items() if v}
    if bad:
        print("\nerrors (socket errors + non-2xx) summed over repetitions: "
              + ", ".join(f"{sc}/{p}: {v:.0f}" for (sc, p), v in sorted(bad.items())))
    n = max((len(v) for v in data.values()), default=0)
    print(f"\nmedians of {n} repetition(s); F/H < 1 is better for CPU, latency and RSS, > 1 for req/s and Gbit/s"
          + ("; nginx (reference proxy, L7 only) and N/H = nginx/HAProxy" if has_nginx else "")
          + ("; H Octavia = HAProxy as Octavia's amphora configures it (http-reuse safe),"
             " F/Ho = Fulcrum/that" if has_octavia else "") + ".")


if __name__ == "__main__":
    main()
