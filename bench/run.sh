#!/usr/bin/env bash
# Fulcrum data plane vs HAProxy, same backends, same machine, same run.
#
#   bench/run.sh                       # everything, 3 repetitions, 10 s per load run
#   REPS=5 DURATION=15 bench/run.sh
#   SCENARIOS="l7_13 iperf1" bench/run.sh
#
# The proxy under test runs pinned to PROXY_CPU (default 0), single-threaded
# (HAProxy nbthread 1, Fulcrum --workers 1); wrk, iperf3, nginx and the idle
# connection client run on LOAD_CPU (default 1). The mc_* scenarios instead run
# the proxy with MC_WORKERS threads (default: one per core; HAProxy nbthread,
# Fulcrum --workers) and wrk with MC_WRK_THREADS (default 1), all on every core,
# as a multi-core node runs (nginx and Octavia's HAProxy do not run there). Within each repetition the
# proxies run back to back (order alternates between repetitions), each started
# fresh: HAProxy, Fulcrum, nginx (reference proxy, L7) and HAProxy as Octavia
# configures it (some L7 scenarios). The table prints medians over the
# repetitions and the ratio Fulcrum/HAProxy. Raw values: $OUT/results.tsv (kept,
# path printed at the end).
#
# Only 127.0.0.1 is used. Only processes started here are stopped, by PID.
set -euo pipefail

REPS=${REPS:-3}
DURATION=${DURATION:-10}          # seconds per wrk / iperf3 run
WARMUP=${WARMUP:-1}               # seconds of wrk warm-up before each measured run
CONNS=${CONNS:-50}                # wrk connections for the throughput runs
IDLE_CONNS=${IDLE_CONNS:-10000}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASE_PORT=${BASE_PORT:-18080}
SCENARIOS=${SCENARIOS:-"l7_13 l7_64k l4_13 l7_close lat1 iperf1 iperf8 rss_l7 rss_l4 mc_l7_13 mc_l7_close"}
MC_WORKERS=${MC_WORKERS:-$(nproc)}
MC_WRK_THREADS=${MC_WRK_THREADS:-1}
ALL_CPUS=0-$(($(nproc) - 1))
# nginx: reference proxy, L7 scenarios only. haproxy_octavia: HAProxy as
# Octavia's amphora template configures it, on OCTAVIA_SCENARIOS only.
PROXIES=${PROXIES:-"haproxy fulcrum nginx haproxy_octavia"}
OCTAVIA_SCENARIOS=${OCTAVIA_SCENARIOS:-"l7_13 l7_close"}
HOST_RULE=app.example

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

L7_PORT=$BASE_PORT                # HTTP listener, one HOST_NAME rule
L4_PORT=$((BASE_PORT + 10))       # TCP listener -> nginx
IPERF_PROXY_PORT=$((BASE_PORT + 11))  # TCP listener -> iperf3 -s
NGINX_PORT=$((BASE_PORT + 1))
IPERF_PORT=$((BASE_PORT + 21))

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools -----------------------------------------------------------------
need=()
for t in haproxy:haproxy wrk:wrk iperf3:iperf3 nginx:nginx taskset:util-linux python3:python3; do
    command -v "${t%%:*}" >/dev/null 2>&1 || [[ -x /usr/sbin/${t%%:*} ]] || need+=("${t#*:}")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    [[ $(id -u) == 0 ]] || die "need root to apt-get install ${need[*]}"
    # Debian starts haproxy/nginx services on install unless policy-rc.d forbids it.
    made_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
fi
PATH=$PATH:/usr/sbin
nproc_all=$(nproc --all)
((nproc_all >= 2)) || log "warning: only $nproc_all CPU; proxy and load share it"

log "building the release example"
(cd "$REPO" && cargo build --release -q -p fulcrum-dataplane --example standalone)
TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
FULCRUM=$TARGET_DIR/release/examples/standalone
[[ -x $FULCRUM ]] || die "no $FULCRUM"

# Raise the fd limit as far as allowed (containers may cap the hard limit, e.g. at
# 20000). An idle L4 connection costs the proxy two fds, so the L4 idle test
# opens at most (limit - 200) / 2 connections.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
IDLE_CONNS_L4=${IDLE_CONNS_L4:-$(( IDLE_CONNS < (NOFILE - 200) / 2 ? IDLE_CONNS : (NOFILE - 200) / 2 ))}
((IDLE_CONNS + 200 <= NOFILE)) || log "warning: ulimit -n $NOFILE is low for $IDLE_CONNS idle connections"

# --- work dir, cleanup ---------------------------------------------------------
WORK=$(mktemp -d /tmp/fulcrum-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers (user nobody) read the bodies from here
OUT=${OUT:-$WORK}
RESULTS=$OUT/results.tsv
: >"$RESULTS"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {  # stop_pid PID: TERM, wait, drop from PIDS
    local pid=$1 i
    kill "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

wait_port() {  # wait_port PORT PID
    local i
    for i in $(seq 100); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# --- backends ----------------------------------------------------------------
mkdir -p "$WORK/nginx/html" "$WORK/nginx/tmp"
printf 'hello, world\n' >"$WORK/nginx/html/small"                 # 13 bytes
head -c 65536 /dev/zero | tr '\0' 'x' >"$WORK/nginx/html/big"     # 64 KiB
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections $((NOFILE - 100)); }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        root $WORK/nginx/html;
        location = / { return 200 "hello, world\n"; }
    }
}
EOF
taskset -c "$LOAD_CPU" nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$NGINX_PORT" "$NGINX_PID" || die "nginx did not start: $(cat "$WORK/nginx/error.log")"

taskset -c "$LOAD_CPU" iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >"$WORK/iperf3-server.log" 2>&1 &
IPERF_PID=$!
PIDS+=("$IPERF_PID")
wait_port "$IPERF_PORT" "$IPERF_PID" || die "iperf3 -s did not start"

# --- proxy configs (equivalent) ------------------------------------------------
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $((IDLE_CONNS + 100))
    # HAProxy reserves two fds per connection; L7 idle connections use one, and
    # the L4 idle test stays within the limit, so do not refuse to start.
    no strict-limits
    # no logging: Fulcrum logs nothing per request either

defaults
    timeout connect 5s
    timeout client 50s
    timeout server 50s

# L7: one frontend, one HOST_NAME rule (Octavia's rendering), keep-alive both sides.
frontend l7
    mode http
    bind 127.0.0.1:$L7_PORT
    acl host_app req.hdr(host),lower,word(1,:) -m str $HOST_RULE
    use_backend pool_app if host_app
    default_backend pool_default

# Fulcrum pools member connections and reuses them across client connections.
backend pool_app
    mode http
    balance roundrobin
    http-reuse always
    server m1 127.0.0.1:$NGINX_PORT

backend pool_default
    mode http
    balance roundrobin
    http-reuse always
    server m1 127.0.0.1:$NGINX_PORT

# L4: mode tcp; splice(2) where HAProxy sees fit.
frontend l4
    mode tcp
    bind 127.0.0.1:$L4_PORT
    option splice-auto
    default_backend tcp_nginx

backend tcp_nginx
    mode tcp
    option splice-auto
    server m1 127.0.0.1:$NGINX_PORT

frontend l4_iperf
    mode tcp
    bind 127.0.0.1:$IPERF_PROXY_PORT
    option splice-auto
    default_backend tcp_iperf

backend tcp_iperf
    mode tcp
    option splice-auto
    server m1 127.0.0.1:$IPERF_PORT
EOF

# nginx as a reference L7 proxy (the issue's "nginx manages ..." figures): one
# process (no master), the same HOST_NAME split onto one upstream, member
# connections kept alive and reused across client connections (as both others).
mkdir -p "$WORK/nginx-proxy/tmp"
cat >"$WORK/nginx-proxy/nginx.conf" <<EOF
master_process off;
worker_processes 1;
pid $WORK/nginx-proxy/nginx.pid;
error_log $WORK/nginx-proxy/error.log warn;
events { worker_connections $((NOFILE - 100)); }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-proxy/tmp;
    proxy_temp_path $WORK/nginx-proxy/tmp;
    fastcgi_temp_path $WORK/nginx-proxy/tmp;
    uwsgi_temp_path $WORK/nginx-proxy/tmp;
    scgi_temp_path $WORK/nginx-proxy/tmp;
    keepalive_requests 100000000;
    keepalive_timeout 50s;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_connect_timeout 5s;
    proxy_read_timeout 50s;
    proxy_send_timeout 50s;
    upstream pool { server 127.0.0.1:$NGINX_PORT; keepalive 256; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:$L7_PORT backlog=4096;
        server_name $HOST_RULE;
        location / { proxy_pass http://pool; }
    }
    server {
        listen 127.0.0.1:$L7_PORT default_server;
        location / { proxy_pass http://pool; }
    }
}
EOF

python3 - "$WORK/fulcrum.json" <<EOF
import json, sys
timeouts = {"client_data": {"secs": 50, "nanos": 0}, "member_connect": {"secs": 5, "nanos": 0},
            "member_data": {"secs": 50, "nanos": 0}, "tcp_inspect": {"secs": 0, "nanos": 0}}
def member(port):
    return {"id": f"m-{port}", "address": "127.0.0.1", "port": port, "weight": 1, "backup": False,
            "admin_state_up": True, "monitor_address": None, "monitor_port": None}
def pool(pid, proto, port):
    return {"id": pid, "protocol": proto, "lb_algorithm": "ROUND_ROBIN", "session_persistence": None,
            "admin_state_up": True, "members": [member(port)], "health_monitor": None}
def listener(lid, port, proto, default_pool, policies=()):
    return {"id": lid, "vip": "127.0.0.1", "port": port, "protocol": proto, "admin_state_up": True,
            "connection_limit": None, "allowed_cidrs": [], "timeouts": timeouts,
            "insert_headers": {"x_forwarded_for": False, "x_forwarded_port": False, "x_forwarded_proto": False},
            "default_pool": default_pool, "l7policies": list(policies)}
rule = {"id": "r-host", "rule_type": "HOST_NAME", "compare_type": "EQUAL_TO", "key": None,
        "value": "$HOST_RULE", "invert": False, "admin_state_up": True}
policy = {"id": "p-host", "position": 1, "admin_state_up": True, "rules": [rule],
          "action": dict(action="REDIRECT_TO_POOL", **pool("pool_app", "HTTP", $NGINX_PORT))}
cfg = {"listeners": [
    listener("l7", $L7_PORT, "HTTP", pool("pool_default", "HTTP", $NGINX_PORT), [policy]),
    listener("l4", $L4_PORT, "TCP", pool("tcp_nginx", "TCP", $NGINX_PORT)),
    listener("l4_iperf", $IPERF_PROXY_PORT, "TCP", pool("tcp_iperf", "TCP", $IPERF_PORT)),
]}
json.dump(cfg, open(sys.argv[1], "w"), indent=1)
EOF

# HAProxy as Octavia's amphora template (combined_listeners/templates/base.j2)
# configures it: its defaults (retries, redispatch, splice, keep-alive) and no
# `http-reuse` line, so HAProxy's default `safe` applies: the first request of
# every client connection goes over a member connection of its own, never an
# idle one of another client's (logging stays off, as for the others).
sed -e '/^    http-reuse always$/d' -e '/^# Fulcrum pools member connections/d' \
    -e 's/^    timeout server 50s$/    timeout server 50s\n    retries 3\n    option redispatch\n    option splice-request\n    option splice-response\n    option http-keep-alive/' \
    "$WORK/haproxy.cfg" >"$WORK/haproxy_octavia.cfg"
grep -q 'http-reuse' "$WORK/haproxy_octavia.cfg" && die "haproxy_octavia.cfg still sets http-reuse"
grep -q 'option http-keep-alive' "$WORK/haproxy_octavia.cfg" || die "haproxy_octavia.cfg lacks Octavia's defaults"

# HAProxy with MC_WORKERS threads, for the mc_* scenarios.
sed "s/^    nbthread 1$/    nbthread $MC_WORKERS/" "$WORK/haproxy.cfg" >"$WORK/haproxy_mc.cfg"
grep -q "nbthread $MC_WORKERS" "$WORK/haproxy_mc.cfg" || die "haproxy_mc.cfg lacks nbthread $MC_WORKERS"

PROXY_PID=
# Where the proxy, and wrk, run in the current scenario (see run_scenario).
PROXY_SET=$PROXY_CPU LOAD_SET=$LOAD_CPU THREADS=1 WRK_THREADS=1
start_proxy() {  # start_proxy haproxy|haproxy_octavia|fulcrum|nginx
    local ports=("$L7_PORT" "$L4_PORT" "$IPERF_PROXY_PORT") cfg=$1
    ((THREADS > 1)) && cfg=$1_mc
    case $1 in
    haproxy | haproxy_octavia)
        taskset -c "$PROXY_SET" haproxy -db -f "$WORK/$cfg.cfg" >"$WORK/$1.log" 2>&1 &
        PROXY_PID=$!
        ;;
    fulcrum)
        RUST_LOG=off taskset -c "$PROXY_SET" "$FULCRUM" --workers "$THREADS" "$WORK/fulcrum.json" >"$WORK/fulcrum.log" 2>&1 &
        PROXY_PID=$!
        ;;
    nginx)
        taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx-proxy" -c "$WORK/nginx-proxy/nginx.conf" \
            -e "$WORK/nginx-proxy/error.log" -g 'daemon off;' >"$WORK/nginx.log" 2>&1 &
        PROXY_PID=$!
        ports=("$L7_PORT")
        ;;
    esac
    PIDS+=("$PROXY_PID")
    local p
    for p in "${ports[@]}"; do
        wait_port "$p" "$PROXY_PID" || die "$1 did not start: $(cat "$WORK/$1.log")"
    done
}
stop_proxy() { stop_pid "$PROXY_PID"; PROXY_PID=; }

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, all threads
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_stat() {  # cpu_stat CPU: "busy_ticks total_ticks" from /proc/stat
    awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}
tcp_out_segs() { awk '$1 == "Tcp:" && $2 ~ /^[0-9]/ {print $12}' /proc/net/snmp; }  # OutSegs, this netns
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }  # scenario metric proxy rep value

# wrk_run SCENARIO PROXY REP CONNS URL [extra wrk args...]
wrk_run() {
    local sc=$1 px=$2 rep=$3 conns=$4 url=$5
    shift 5
    if ((WARMUP > 0)); then
        taskset -c "$LOAD_SET" wrk -t"$WRK_THREADS" -c"$conns" -d"${WARMUP}s" -H "Host: $HOST_RULE" "$@" "$url" >/dev/null 2>&1 || true
    fi
    local t0 t1 l0 l1 s0 s1 txt=$WORK/wrk-$sc-$px-$rep.txt
    t0=$(cpu_ticks "$PROXY_PID")
    l0=$(cpu_stat "$LOAD_CPU")
    s0=$(tcp_out_segs)
    taskset -c "$LOAD_SET" wrk -t"$WRK_THREADS" -c"$conns" -d"${DURATION}s" --latency -H "Host: $HOST_RULE" "$@" "$url" >"$txt"
    s1=$(tcp_out_segs)
    t1=$(cpu_ticks "$PROXY_PID")
    l1=$(cpu_stat "$LOAD_CPU")
    python3 - "$sc" "$px" "$rep" "$((t1 - t0))" "$CLK_TCK" "$DURATION" "$txt" "$l0" "$l1" "$((s1 - s0))" <<'EOF' >>"$RESULTS"
import re, sys
sc, px, rep, ticks, hz, dur, path = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
(lb0, lt0), (lb1, lt1) = (map(int, a.split()) for a in sys.argv[8:10])
segs = int(sys.argv[10])
load_pct = (lb1 - lb0) / max(lt1 - lt0, 1) * 100
out = open(path).read()
def us(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p50 = us(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
bad = sum(int(x) for x in m.groups()) if m else 0
bad += int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
cpu = ticks / hz
per_req = cpu / reqs * 1e6 if reqs else 0.0
for k, v in [("rps", rps), ("p50_us", p50), ("p99_us", p99), ("cpu_us_per_req", per_req),
             ("proxy_cpu_pct", cpu / dur * 100), ("load_cpu_pct", load_pct), ("errors", bad),
             ("segs_per_req", segs / reqs if reqs else 0.0)]:
    print(f"{sc}\t{k}\t{px}\t{rep}\t{v:.3f}")
print(f"[{px} {sc} #{rep}] {rps:.0f} req/s, p50 {p50:.0f} us, p99 {p99:.0f} us, "
      f"{per_req:.1f} us CPU/req, proxy CPU {cpu / dur * 100:.0f} %, load CPU {load_pct:.0f} %, errors {bad}", file=sys.stderr)
EOF
}

# iperf_run SCENARIO PROXY REP STREAMS
iperf_run() {
    local sc=$1 px=$2 rep=$3 streams=$4 t0 t1 l0 l1
    t0=$(cpu_ticks "$PROXY_PID")
    l0=$(cpu_stat "$LOAD_CPU")
    taskset -c "$LOAD_CPU" iperf3 -c 127.0.0.1 -p "$IPERF_PROXY_PORT" -t "$DURATION" -P "$streams" -J \
        >"$WORK/iperf-$sc-$px-$rep.json" 2>&1 || { log "iperf3 failed: $(tail -5 "$WORK/iperf-$sc-$px-$rep.json")"; return 0; }
    t1=$(cpu_ticks "$PROXY_PID")
    l1=$(cpu_stat "$LOAD_CPU")
    python3 - "$sc" "$px" "$rep" "$((t1 - t0))" "$CLK_TCK" "$WORK/iperf-$sc-$px-$rep.json" "$l0" "$l1" <<'EOF' >>"$RESULTS"
import json, sys
sc, px, rep, ticks, hz, path = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
(lb0, lt0), (lb1, lt1) = (map(int, a.split()) for a in sys.argv[7:9])
load_pct = (lb1 - lb0) / max(lt1 - lt0, 1) * 100
end = json.load(open(path))["end"]
bps = end["sum_received"]["bits_per_second"]
nbytes = end["sum_received"]["bytes"]
secs = end["sum_received"]["seconds"]
cpu = ticks / hz
print(f"{sc}\tgbit_s\t{px}\t{rep}\t{bps / 1e9:.3f}")
print(f"{sc}\tcpu_s_per_gib\t{px}\t{rep}\t{cpu / (nbytes / 2**30):.4f}")
print(f"{sc}\tproxy_cpu_pct\t{px}\t{rep}\t{cpu / secs * 100:.1f}")
print(f"{sc}\tload_cpu_pct\t{px}\t{rep}\t{load_pct:.1f}")
print(f"[{px} {sc} #{rep}] {bps / 1e9:.2f} Gbit/s, {cpu / (nbytes / 2**30):.3f} CPU s/GiB, proxy CPU {cpu / secs * 100:.0f} %, load CPU {load_pct:.0f} %", file=sys.stderr)
EOF
}

# rss_run SCENARIO PROXY REP PORT COUNT
rss_run() {
    local sc=$1 px=$2 rep=$3 port=$4 count=$5 base pid line i
    sleep 0.5
    base=$(rss_kib "$PROXY_PID")
    taskset -c "$LOAD_CPU" python3 "$HERE/idle_conns.py" 127.0.0.1 "$port" --count "$count" --hold 300 \
        >"$WORK/idle-$sc-$px-$rep.txt" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    line=
    for i in $(seq 600); do
        line=$(head -1 "$WORK/idle-$sc-$px-$rep.txt" 2>/dev/null || true)
        [[ -n $line ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $line != open* ]]; then
        log "[$px $sc #$rep] idle client failed: $line"
        stop_pid "$pid"
        return 0
    fi
    sleep 3   # let the proxy accept (and, for L4, connect) everything and settle
    local rss
    rss=$(rss_kib "$PROXY_PID")
    stop_pid "$pid"
    record "$sc" rss_mib "$px" "$rep" "$(awk -v r="$rss" 'BEGIN {printf "%.1f", r / 1024}')"
    record "$sc" rss_base_mib "$px" "$rep" "$(awk -v r="$base" 'BEGIN {printf "%.1f", r / 1024}')"
    record "$sc" kib_per_conn "$px" "$rep" "$(awk -v r="$rss" -v b="$base" -v n="$count" 'BEGIN {printf "%.2f", (r - b) / n}')"
    record "$sc" conns "$px" "$rep" "$count"
    log "[$px $sc #$rep] RSS $((base / 1024)) MiB idle -> $((rss / 1024)) MiB with $count connections"
}

scenario_cpus() {  # scenario_cpus SCENARIO: sets PROXY_SET, LOAD_SET, THREADS, WRK_THREADS
    if [[ $1 == mc_* ]]; then
        PROXY_SET=$ALL_CPUS LOAD_SET=$ALL_CPUS THREADS=$MC_WORKERS WRK_THREADS=$MC_WRK_THREADS
    else
        PROXY_SET=$PROXY_CPU LOAD_SET=$LOAD_CPU THREADS=1 WRK_THREADS=1
    fi
}

run_scenario() {  # run_scenario SCENARIO PROXY REP
    local sc=$1 px=$2 rep=$3
    case $sc in
    l7_13) wrk_run "$sc" "$px" "$rep" "$CONNS" "http://127.0.0.1:$L7_PORT/small" ;;
    l7_64k) wrk_run "$sc" "$px" "$rep" "$CONNS" "http://127.0.0.1:$L7_PORT/big" ;;
    l4_13) wrk_run "$sc" "$px" "$rep" "$CONNS" "http://127.0.0.1:$L4_PORT/small" ;;
    l7_close) wrk_run "$sc" "$px" "$rep" "$CONNS" "http://127.0.0.1:$L7_PORT/small" -H "Connection: close" ;;
    mc_l7_13) wrk_run "$sc" "$px" "$rep" "$CONNS" "http://127.0.0.1:$L7_PORT/small" ;;
    mc_l7_close) wrk_run "$sc" "$px" "$rep" "$CONNS" "http://127.0.0.1:$L7_PORT/small" -H "Connection: close" ;;
    lat1) wrk_run "$sc" "$px" "$rep" 1 "http://127.0.0.1:$L7_PORT/small" ;;
    iperf1) iperf_run "$sc" "$px" "$rep" 1 ;;
    iperf8) iperf_run "$sc" "$px" "$rep" 8 ;;
    rss_l7) rss_run "$sc" "$px" "$rep" "$L7_PORT" "$IDLE_CONNS" ;;
    rss_l4) rss_run "$sc" "$px" "$rep" "$L4_PORT" "$IDLE_CONNS_L4" ;;
    *) die "unknown scenario $sc" ;;
    esac
}

log "work dir $WORK; proxies on CPU $PROXY_CPU, load and backends on CPU $LOAD_CPU; $REPS reps x ${DURATION}s"
log "haproxy $(haproxy -v 2>&1 | head -1 | awk '{print $3}'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(iperf3 -v | head -1 | awk '{print $1, $2}'), nginx $(nginx -v 2>&1 | sed 's/.*\///'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
started=$SECONDS
for sc in $SCENARIOS; do
    for rep in $(seq "$REPS"); do
        order=$PROXIES
        ((rep % 2 == 0)) && order=$(printf '%s\n' $PROXIES | tac | tr '\n' ' ')
        for px in $order; do
            [[ $px == nginx && $sc != l7_* && $sc != lat1 && $sc != rss_l7 ]] && continue
            [[ $px == haproxy_octavia && " $OCTAVIA_SCENARIOS " != *" $sc "* ]] && continue
            scenario_cpus "$sc"
            start_proxy "$px"
            run_scenario "$sc" "$px" "$rep"
            stop_proxy
        done
    done
done
log "done in $((SECONDS - started)) s; load average $(cut -d' ' -f1-3 /proc/loadavg)"

python3 "$HERE/table.py" "$RESULTS" ${TABLE_ARGS:---reps}
log "raw results: $RESULTS (per-run wrk/iperf3 output beside it)"
