#!/usr/bin/env bash
# Control-plane benchmark: a three-node loopback cluster of release `fulcrum serve`
# processes, 64 concurrent clients creating load balancers through all three nodes
# (two thirds of the writes are forwarded to the leader). Prints acknowledged creates/s
# and p50/p99 latency for each of $RUNS runs.
#   bench/control.sh            (CLIENTS=64 SECONDS_PER_RUN=10 RUNS=3)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
./scripts/deps.sh
cargo build --release -p fulcrum-node --bin fulcrum --example write_bench >&2
target="${CARGO_TARGET_DIR:-$root/target}/release"
export FULCRUM_BIN="$target/fulcrum"
export FULCRUM_CLUSTER_DIR="$(mktemp -d /tmp/fulcrum-bench.XXXXXX)"
trap 'deploy/loopback/cluster.sh clean >/dev/null 2>&1 || true' EXIT
deploy/loopback/cluster.sh up >/dev/null
token="$(cat "$FULCRUM_CLUSTER_DIR/admin-token")"
# Wait until the cluster answers.
for _ in $(seq 100); do
  FULCRUM_ENDPOINT=http://127.0.0.1:9816 FULCRUM_TOKEN="$token" "$FULCRUM_BIN" cluster status >/dev/null 2>&1 && break
  sleep 0.1
done
echo "machine: $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
for run in $(seq "${RUNS:-3}"); do
  "$target/examples/write_bench" \
    --endpoints http://127.0.0.1:9816,http://127.0.0.1:9826,http://127.0.0.1:9836 \
    --token "$token" --clients "${CLIENTS:-64}" --seconds "${SECONDS_PER_RUN:-10}" \
    --first-vip $((run * 1000000))
done
