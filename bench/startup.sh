#!/usr/bin/env bash
# rootseald --dev start-to-healthy time with many key versions in the store.
#   bench/startup.sh [build-dir] [keys] [versions-per-key]
# Default: 100 keys x 100 versions = 10,000 key versions (target: under 1 s).
set -euo pipefail
BUILD=${1:-build/release}
KEYS=${2:-100}
VERSIONS=${3:-100}
RUNS=${RUNS:-5}
DIR=$(mktemp -d /tmp/rootseal-startup-XXXXXX)
trap 'rm -rf "$DIR"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# First start creates the token, PIN file and root key.
P=$(port)
"$BUILD/daemon/rootseald" --dev --dev-state-dir "$DIR/state" --dev-listen-address "127.0.0.1:$P" >/dev/null 2>&1 &
PID=$!
until curl -sf "http://127.0.0.1:$P/v1/sys/health" >/dev/null; do
  kill -0 $PID 2>/dev/null || { echo "rootseald died"; exit 1; }
  sleep 0.05
done
kill -TERM $PID; wait $PID || true

echo "populating $KEYS keys x $VERSIONS versions ..."
"$BUILD/bench/rootseal_populate_store" "$DIR/state" "$KEYS" "$VERSIONS"

best=""
for i in $(seq 1 "$RUNS"); do
  P=$(port)
  start=$(date +%s%N)
  "$BUILD/daemon/rootseald" --dev --dev-state-dir "$DIR/state" --dev-listen-address "127.0.0.1:$P" >/dev/null 2>"$DIR/err.log" &
  PID=$!
  until curl -sf "http://127.0.0.1:$P/v1/sys/health" >/dev/null 2>&1; do
    kill -0 $PID 2>/dev/null || { cat "$DIR/err.log"; exit 1; }
    sleep 0.005
  done
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000000 ))
  unseal=$(grep -o 'unseal_ms=[0-9]*' "$DIR/err.log" | head -1)
  versions=$(grep -o 'versions=[0-9]*' "$DIR/err.log" | head -1)
  echo "run $i: start-to-healthy ${ms} ms ($versions, $unseal)"
  kill -TERM $PID; wait $PID || true
  if [[ -z "$best" || $ms -lt $best ]]; then best=$ms; fi
done
echo "best start-to-healthy: ${best} ms with $((KEYS * VERSIONS)) key versions (target < 1000 ms)"
