#!/usr/bin/env bash
# The KMS v2 plugin under load: rootseald --dev in a scratch folder (SoftHSM2,
# audit log on, as shipped), then rootseal_bench_kms_plugin on its socket.
#   bench/kms_plugin.sh <build dir> [callers=64] [seconds=5] [rate ...]
# Each rate is one run of every phase: 0 closed loop (default), R > 0 paced at
# R calls/s in all (see bench/kms_plugin_bench.cpp).
set -euo pipefail
build=${1:?build dir}
callers=${2:-64}
seconds=${3:-5}
shift $(( $# < 3 ? $# : 3 ))
rates=("${@:-0}")
[[ ${#rates[@]} -gt 0 ]] || rates=(0)
dir=$(mktemp -d /tmp/rootseal-kms-bench.XXXXXX)
"$build/daemon/rootseald" --dev --dev-state-dir "$dir/st" --dev-listen-address 127.0.0.1:0 \
  >"$dir/out" 2>"$dir/err" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 600); do [[ -S "$dir/st/kms.sock" ]] && break; sleep 0.1; done
[[ -S "$dir/st/kms.sock" ]] || { cat "$dir/err"; exit 1; }
for rate in "${rates[@]}"; do
  "$build/bench/rootseal_bench_kms_plugin" "$dir/st/kms.sock" "$callers" "$seconds" "$rate"
done
