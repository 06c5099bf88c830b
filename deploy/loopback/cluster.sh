#!/usr/bin/env bash
# Three Fulcrum nodes on this machine's loopback interface, for trying replication and
# failover of the control plane by hand (VIP failover between hosts needs network
# namespaces: see deploy/README.md).
#
#   deploy/loopback/cluster.sh up       build, write configs, start nodes 1-3
#   deploy/loopback/cluster.sh status   show the cluster as node 1 sees it
#   deploy/loopback/cluster.sh kill N   kill -9 node N
#   deploy/loopback/cluster.sh start N  start node N again
#   deploy/loopback/cluster.sh down     stop every node (SIGTERM), keep the data
#   deploy/loopback/cluster.sh clean    stop and delete the data
#
# Node N: admin API 127.0.0.1:98N6, Raft peers 127.0.0.1:98N7 (N = 1, 2, 3).
# State lives in $FULCRUM_CLUSTER_DIR (default ./.fulcrum-cluster).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${FULCRUM_CLUSTER_DIR:-$PWD/.fulcrum-cluster}"
bin="${FULCRUM_BIN:-}"

build() {
  if [ -z "$bin" ]; then
    (cd "$root" && ./scripts/deps.sh && cargo build --release -p fulcrum-node --bin fulcrum >&2)
    local target="${CARGO_TARGET_DIR:-$root/target}"
    bin="$target/release/fulcrum"
  fi
}

configure() {
  mkdir -p "$dir"
  if [ ! -f "$dir/admin-token" ]; then
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/admin-token"
    chmod 600 "$dir/admin-token"
  fi
  local hash
  hash="$("$bin" token hash "$(cat "$dir/admin-token")")"
  for n in 1 2 3; do
    cat > "$dir/node$n.toml" <<TOML
node_id = $n
data_dir = "$dir/data$n"
admin_listen = "127.0.0.1:98${n}6"
peer_listen = "127.0.0.1:98${n}7"

[cluster]
1 = "127.0.0.1:9817"
2 = "127.0.0.1:9827"
3 = "127.0.0.1:9837"

[[tokens]]
sha256 = "$hash"
project_id = "admin"
role = "admin"

[[vip_subnets]]
name = "private-subnet"
cidr = "127.0.30.0/24"
first = "127.0.30.10"
last = "127.0.30.250"
TOML
  done
}

start() {
  local n="$1"
  if [ -f "$dir/node$n.pid" ] && kill -0 "$(cat "$dir/node$n.pid")" 2>/dev/null; then
    echo "node $n already running (pid $(cat "$dir/node$n.pid"))"
    return
  fi
  nohup "$bin" serve --config "$dir/node$n.toml" >> "$dir/node$n.log" 2>&1 &
  echo $! > "$dir/node$n.pid"
  echo "node $n started (pid $!), admin 127.0.0.1:98${n}6, log $dir/node$n.log"
}

stop() {
  local n="$1" sig="${2:-TERM}"
  if [ -f "$dir/node$n.pid" ]; then
    kill "-$sig" "$(cat "$dir/node$n.pid")" 2>/dev/null || true
    rm -f "$dir/node$n.pid"
    echo "node $n stopped ($sig)"
  fi
}

case "${1:-}" in
  up)
    build; configure
    for n in 1 2 3; do start "$n"; done
    echo
    echo "export FULCRUM_ENDPOINT=http://127.0.0.1:9816 FULCRUM_TOKEN=$(cat "$dir/admin-token")"
    echo "then: fulcrum cluster status; fulcrum loadbalancer list"
    ;;
  start) build; configure; start "${2:?node number}" ;;
  kill) stop "${2:?node number}" KILL ;;
  down) for n in 1 2 3; do stop "$n"; done ;;
  clean) for n in 1 2 3; do stop "$n"; done; rm -rf "$dir" ;;
  status)
    build
    FULCRUM_ENDPOINT=http://127.0.0.1:9816 FULCRUM_TOKEN="$(cat "$dir/admin-token")" "$bin" cluster status
    ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
