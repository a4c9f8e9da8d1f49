#!/usr/bin/env bash
# The keyring key on a fresh SoftHSM2 token: unseal, root rotation,
# keyring-key rotation and migration with many key versions.
#   bench/keyring_key.sh [build-dir] [keys] [versions-per-key]
# Default: 100 keys x 100 versions = 10,000 key versions
# (targets: unseal < 200 ms with one HSM operation, root rotation < 1 s).
set -euo pipefail
BUILD=${1:-build/release}
KEYS=${2:-100}
VERSIONS=${3:-100}
RUNS=${RUNS:-5}
DIR=$(mktemp -d /tmp/rootseal-kkbench-XXXXXX)
trap 'rm -rf "$DIR"' EXIT
mkdir -p "$DIR/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$DIR" >"$DIR/softhsm2.conf"
export SOFTHSM2_CONF="$DIR/softhsm2.conf"
softhsm2-util --init-token --free --label bench --so-pin 0000 --pin 1234 >/dev/null
"$BUILD/bench/rootseal_bench_keyring_key" "$DIR" "$KEYS" "$VERSIONS" "$RUNS"
