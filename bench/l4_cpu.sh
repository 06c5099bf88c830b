#!/usr/bin/env bash
# A/B of the L4 proxy's CPU per GiB: two standalone binaries, iperf3 through a
# TCP listener, alternating A and B for REPS repetitions; CPU = utime + stime
# of the proxy (all threads, /proc/<pid>/stat) over the run, divided by the
# bytes iperf3 received. Kernel time counts (that is where splice(2) saves).
#
#   bench/l4_cpu.sh /tmp/standalone-old target/release/examples/standalone
#   REPS=5 DURATION=10 STREAMS=8 bench/l4_cpu.sh A B
#
# The proxy runs on PROXY_CPU (0) with --workers 1, iperf3 client and server on
# LOAD_CPU (1), as in bench/run.sh. Only processes started here are stopped, by PID.
set -euo pipefail
A=${1:?binary A}
B=${2:?binary B}
REPS=${REPS:-3}
DURATION=${DURATION:-10}
STREAMS=${STREAMS:-1}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_PORT=${BASE_PORT:-18380}
PROXY_PORT=$BASE_PORT
IPERF_PORT=$((BASE_PORT + 1))

WORK=$(mktemp -d /tmp/fulcrum-l4cpu.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
wait_port() {
    local i
    for i in $(seq 100); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

taskset -c "$LOAD_CPU" iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >"$WORK/iperf3-server.log" 2>&1 &
PIDS+=($!)
wait_port "$IPERF_PORT" "$!"
cat >"$WORK/l4.json" <<EOF
{"listeners": [{"id": "l4", "vip": "127.0.0.1", "port": $PROXY_PORT, "protocol": "TCP",
  "admin_state_up": true, "connection_limit": null, "allowed_cidrs": [],
  "timeouts": {"client_data": {"secs": 50, "nanos": 0}, "member_connect": {"secs": 5, "nanos": 0},
               "member_data": {"secs": 50, "nanos": 0}, "tcp_inspect": {"secs": 0, "nanos": 0}},
  "insert_headers": {"x_forwarded_for": false, "x_forwarded_port": false, "x_forwarded_proto": false},
  "default_pool": {"id": "p", "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "session_persistence": null,
    "admin_state_up": true, "health_monitor": null,
    "members": [{"id": "m", "address": "127.0.0.1", "port": $IPERF_PORT, "weight": 1, "backup": false,
                 "admin_state_up": true, "monitor_address": null, "monitor_port": null}]},
  "l7policies": []}]}
EOF
HZ=$(getconf CLK_TCK)
run() {  # run LABEL BINARY REP
    local pid t0 t1
    RUST_LOG=off taskset -c "$PROXY_CPU" "$2" --workers 1 "$WORK/l4.json" >"$WORK/proxy.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$PROXY_PORT" "$pid"
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    taskset -c "$LOAD_CPU" iperf3 -c 127.0.0.1 -p "$PROXY_PORT" -t "$DURATION" -P "$STREAMS" -J >"$WORK/iperf-$1-$3.json"
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$1" "$3" "$((t1 - t0))" "$HZ" "$WORK/iperf-$1-$3.json" <<'PY'
import json, sys
label, rep, ticks, hz, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = json.load(open(path))["end"]["sum_received"]
gib = s["bytes"] / 2**30
print(f"{label}\t{rep}\t{s['bits_per_second'] / 1e9:.2f} Gbit/s\t{ticks / hz / gib:.3f} CPU s/GiB\t({ticks / hz:.2f} s CPU, {gib:.1f} GiB)")
PY
}
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg); $STREAMS stream(s), ${DURATION}s, A=$A B=$B"
for rep in $(seq "$REPS"); do
    if ((rep % 2)); then run A "$A" "$rep"; run B "$B" "$rep"; else run B "$B" "$rep"; run A "$A" "$rep"; fi
done
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
