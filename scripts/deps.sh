#!/usr/bin/env bash
# Installs the Debian packages Fulcrum builds and tests with, when they are missing.
# RocksDB is linked from Debian's librocksdb-dev (building it from source takes 15-30 min
# on two cores); bindgen needs libclang-dev; the network tests need iproute2, and the VIP
# tests (node/tests/vip) need iputils-arping.
set -euo pipefail
packages=(librocksdb-dev libclang-dev pkg-config iproute2 iputils-arping curl)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
