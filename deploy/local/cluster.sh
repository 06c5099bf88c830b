#!/usr/bin/env bash
# A three-node Fulcrum cluster on one machine, each node a separate "host" (network
# namespace) on one bridge, plus a client namespace with two backends, so that the
# walkthrough can be run and failed over by hand. Needs root.
#
#   deploy/local/cluster.sh up        build, create the lab, start nodes 1-3 and backends
#   deploy/local/cluster.sh status    cluster status (roles, health, VIPs per node)
#   deploy/local/cluster.sh kill N    kill -9 node N          (stop N: SIGSTOP, cont N: SIGCONT)
#   deploy/local/cluster.sh cut N     take node N's link down (heal N: up again)
#   deploy/local/cluster.sh start N   start node N again
#   deploy/local/cluster.sh client CMD...  run a command in the client namespace
#   deploy/local/cluster.sh down      stop everything and remove the lab
#
# Addresses: bridge 10.201.0.0/24; node N = 10.201.0.1N, client = 10.201.0.100 (backends on
# :8081 and :8082 answer "one" and "two"); VIPs from subnet "public", 10.201.0.50-99.
# Admin API of node N: http://10.201.0.1N:9876 (reachable from the root namespace too, via
# the bridge address 10.201.0.1).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${FULCRUM_LAB_DIR:-/tmp/fulcrum-lab}"
bridge=fclab0
net=10.201.0

[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)"; exit 1; }

bin() {
  if [ -n "${FULCRUM_BIN:-}" ]; then echo "$FULCRUM_BIN"; return; fi
  (cd "$root" && ./scripts/deps.sh && cargo build --release -p fulcrum-node --bin fulcrum >&2)
  echo "${CARGO_TARGET_DIR:-$root/target}/release/fulcrum"
}

ns() { echo "fclab-$1"; }

lab_up() {
  mkdir -p "$dir"
  ip link show "$bridge" >/dev/null 2>&1 || {
    ip link add "$bridge" type bridge
    ip addr add "$net.1/24" dev "$bridge"
    ip link set "$bridge" up
  }
  for host in n1 n2 n3 client; do
    local name; name="$(ns "$host")"
    ip netns list | grep -qw "$name" && continue
    ip netns add "$name"
    ip link add "v-$host" type veth peer name eth0 netns "$name"
    ip link set "v-$host" master "$bridge" up
    local addr
    case "$host" in n*) addr="$net.1${host#n}" ;; client) addr="$net.100" ;; esac
    ip -n "$name" addr add "$addr/24" dev eth0
    ip -n "$name" link set eth0 up
    ip -n "$name" link set lo up
    ip -n "$name" route add default via "$net.1"
  done
}

configure() {
  local fulcrum="$1"
  [ -f "$dir/admin-token" ] || { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/admin-token"; chmod 600 "$dir/admin-token"; }
  local hash; hash="$("$fulcrum" token hash "$(cat "$dir/admin-token")")"
  for n in 1 2 3; do
    cat > "$dir/node$n.toml" <<TOML
node_id = $n
data_dir = "$dir/data$n"
admin_listen = "$net.1$n:9876"
peer_listen = "$net.1$n:9877"
metrics_listen = "$net.1$n:9878"

[cluster]
1 = "$net.11:9877"
2 = "$net.12:9877"
3 = "$net.13:9877"

[[tokens]]
sha256 = "$hash"
project_id = "admin"
role = "admin"

[[vip_subnets]]
name = "public"
cidr = "$net.0/24"
first = "$net.50"
last = "$net.99"
interface = "eth0"
TOML
  done
}

start_node() {
  local n="$1" fulcrum="$2"
  if [ -f "$dir/node$n.pid" ] && kill -0 "$(cat "$dir/node$n.pid")" 2>/dev/null; then return; fi
  ip netns exec "$(ns "n$n")" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  ip netns exec "$(ns "n$n")" "$fulcrum" serve --config "$dir/node$n.toml" >> "$dir/node$n.log" 2>&1 &
  echo $! > "$dir/node$n.pid"
  echo "node $n: pid $!, admin http://$net.1$n:9876, log $dir/node$n.log"
}

start_backends() {
  for b in one:8081 two:8082; do
    local name="${b%%:*}" port="${b##*:}"
    [ -f "$dir/backend-$name.pid" ] && kill -0 "$(cat "$dir/backend-$name.pid")" 2>/dev/null && continue
    mkdir -p "$dir/www-$name" && echo "$name" > "$dir/www-$name/index.html"
    ip netns exec "$(ns client)" python3 -m http.server "$port" --bind "$net.100" -d "$dir/www-$name" >/dev/null 2>&1 &
    echo $! > "$dir/backend-$name.pid"
  done
}

signal() {
  local n="$1" sig="$2"
  [ -f "$dir/node$n.pid" ] && kill "-$sig" "$(cat "$dir/node$n.pid")" 2>/dev/null || true
}

case "${1:-}" in
  up)
    fulcrum="$(bin)"; lab_up; configure "$fulcrum"
    for n in 1 2 3; do start_node "$n" "$fulcrum"; done
    start_backends
    echo
    echo "export FULCRUM_ENDPOINT=http://$net.11:9876 FULCRUM_TOKEN=$(cat "$dir/admin-token")"
    echo "fulcrum loadbalancer create --vip-subnet-id public --name lb_test_1 --wait"
    echo "members: --address $net.100 --protocol-port 8081 / 8082"
    echo "from the client: $0 client curl http://<vip>/"
    ;;
  start) start_node "${2:?node}" "$(bin)" ;;
  kill) signal "${2:?node}" KILL; rm -f "$dir/node$2.pid" ;;
  stop) signal "${2:?node}" STOP ;;
  cont) signal "${2:?node}" CONT ;;
  cut) ip link set "v-n${2:?node}" down ;;
  heal) ip link set "v-n${2:?node}" up ;;
  client) shift; ip netns exec "$(ns client)" "$@" ;;
  status)
    FULCRUM_ENDPOINT="${FULCRUM_ENDPOINT:-http://$net.11:9876}" FULCRUM_TOKEN="$(cat "$dir/admin-token")" "$(bin)" cluster status
    ;;
  down)
    for f in "$dir"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
    for host in n1 n2 n3 client; do
      ip netns del "$(ns "$host")" 2>/dev/null || true
      ip link del "v-$host" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
    rm -rf "$dir"
    ;;
  *) sed -n '2,19p' "$0"; exit 2 ;;
esac
