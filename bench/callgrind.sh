#!/usr/bin/env bash
# User-space instructions per proxied request of the Fulcrum data plane, counted
# by valgrind's callgrind (deterministic; unaffected by other load on the machine,
# unlike wall or CPU time).
#
#   bench/callgrind.sh                          # build the release example, measure
#   FULCRUM=/tmp/standalone-old bench/callgrind.sh   # measure another binary
#   SCENARIOS="l7_13 l7_close" REQUESTS_S=5 bench/callgrind.sh
#
# Per scenario: nginx (1 worker) as the member, the standalone example under
# callgrind (--workers 1) with the same listeners as bench/run.sh, a short wrk
# warm-up, then counters are zeroed (callgrind_control -z), wrk runs for
# DURATION seconds, counters are dumped (callgrind_control -d): total Ir of the
# dump / requests wrk completed = instructions per request (all threads, user
# space only; the kernel's work is not counted). For `l4_bulk` it is Ir per MiB
# moved (a 256 MiB download through the TCP listener with curl).
# Only processes started here are stopped, by PID.
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-10}
BASE_PORT=${BASE_PORT:-18280}
SCENARIOS=${SCENARIOS:-"l7_13 l7_close l4_13 l4_bulk"}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
L7_PORT=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
L4_PORT=$((BASE_PORT + 10))
PATH=$PATH:/usr/sbin

log() { printf '[callgrind %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
for t in valgrind callgrind_control wrk nginx curl python3; do
    command -v "$t" >/dev/null || die "$t missing"
done
if [[ -z ${FULCRUM:-} ]]; then
    (cd "$REPO" && cargo build --release -q -p fulcrum-dataplane --example standalone)
    FULCRUM=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/standalone
fi

WORK=$(mktemp -d /tmp/fulcrum-callgrind.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
wait_port() {
    local i
    for i in $(seq 600); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

mkdir -p "$WORK/nginx/html" "$WORK/nginx/tmp"
printf 'hello, world\n' >"$WORK/nginx/html/small"
head -c $((256 << 20)) /dev/zero >"$WORK/nginx/html/bulk"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    sendfile on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    server { listen 127.0.0.1:$NGINX_PORT; root $WORK/nginx/html; }
}
EOF
nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
wait_port "$NGINX_PORT" "$!" || die "nginx did not start"

python3 - "$WORK/fulcrum.json" "$L7_PORT" "$L4_PORT" "$NGINX_PORT" <<'EOF'
import json, sys
path, l7, l4, ng = sys.argv[1], *map(int, sys.argv[2:])
t = {"client_data": {"secs": 50, "nanos": 0}, "member_connect": {"secs": 5, "nanos": 0},
     "member_data": {"secs": 50, "nanos": 0}, "tcp_inspect": {"secs": 0, "nanos": 0}}
def pool(pid, proto):
    return {"id": pid, "protocol": proto, "lb_algorithm": "ROUND_ROBIN", "session_persistence": None,
            "admin_state_up": True, "health_monitor": None,
            "members": [{"id": "m1", "address": "127.0.0.1", "port": ng, "weight": 1, "backup": False,
                         "admin_state_up": True, "monitor_address": None, "monitor_port": None}]}
def listener(lid, port, proto, p, policies=()):
    return {"id": lid, "vip": "127.0.0.1", "port": port, "protocol": proto, "admin_state_up": True,
            "connection_limit": None, "allowed_cidrs": [], "timeouts": t,
            "insert_headers": {"x_forwarded_for": False, "x_forwarded_port": False, "x_forwarded_proto": False},
            "default_pool": p, "l7policies": list(policies)}
rule = {"id": "r", "rule_type": "HOST_NAME", "compare_type": "EQUAL_TO", "key": None,
        "value": "app.example", "invert": False, "admin_state_up": True}
pol = {"id": "p", "position": 1, "admin_state_up": True, "rules": [rule],
       "action": dict(action="REDIRECT_TO_POOL", **pool("pool_app", "HTTP"))}
json.dump({"listeners": [listener("l7", l7, "HTTP", pool("pool_default", "HTTP"), [pol]),
                         listener("l4", l4, "TCP", pool("tcp", "TCP"))]}, open(path, "w"))
EOF

ir_total() {  # sum of the "summary:" / "totals:" lines of the newest dump
    local f
    f=$(ls -t "$WORK"/callgrind.out.* | head -1)
    awk '/^(summary|totals):/ {print $2; exit}' "$f"
}

measure() {  # measure SCENARIO
    local sc=$1 pid reqs ir
    rm -f "$WORK"/callgrind.out.*
    RUST_LOG=off valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" \
        "$FULCRUM" --workers 1 "$WORK/fulcrum.json" >"$WORK/fulcrum.log" 2>"$WORK/valgrind.log" &
    pid=$!
    PIDS+=("$pid")
    wait_port "$L7_PORT" "$pid" && wait_port "$L4_PORT" "$pid" || die "standalone did not start: $(tail "$WORK/valgrind.log")"
    case $sc in
    l7_13) url=http://127.0.0.1:$L7_PORT/small; extra=(-H "Host: app.example") ;;
    l7_close) url=http://127.0.0.1:$L7_PORT/small; extra=(-H "Host: app.example" -H "Connection: close") ;;
    l4_13) url=http://127.0.0.1:$L4_PORT/small; extra=() ;;
    esac
    if [[ $sc == l4_bulk ]]; then
        curl -s -o /dev/null "http://127.0.0.1:$L4_PORT/small"
        callgrind_control -z "$pid" >/dev/null
        curl -s -o /dev/null -w '%{size_download}\n' "http://127.0.0.1:$L4_PORT/bulk" >"$WORK/curl.txt"
        callgrind_control -d "$pid" >/dev/null
        ir=$(ir_total)
        python3 -c "import sys; ir, b = int(sys.argv[1]), int(sys.argv[2]); print(f'l4_bulk\t{ir / (b / 2**20):.0f}\tIr/MiB\t({b} bytes, {ir} Ir)')" "$ir" "$(cat "$WORK/curl.txt")"
    else
        wrk -t1 -c"$CONNS" -d2s "${extra[@]}" "$url" >/dev/null
        callgrind_control -z "$pid" >/dev/null
        wrk -t1 -c"$CONNS" -d"${DURATION}s" "${extra[@]}" "$url" >"$WORK/wrk-$sc.txt"
        callgrind_control -d "$pid" >/dev/null
        ir=$(ir_total)
        reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk-$sc.txt")
        grep -q "Non-2xx" "$WORK/wrk-$sc.txt" && log "warning: $sc had non-2xx responses"
        python3 -c "import sys; ir, r = int(sys.argv[1]), int(sys.argv[2]); print(f'{sys.argv[3]}\t{ir / r:.0f}\tIr/req\t({r} requests, {ir} Ir)')" "$ir" "$reqs" "$sc"
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

log "binary $FULCRUM, work dir $WORK"
for sc in $SCENARIOS; do measure "$sc"; done
