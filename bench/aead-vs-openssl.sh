#!/usr/bin/env bash
# Compares Aead::seal (AES-256-GCM, random nonce, new output buffer per call)
# with `openssl speed -evp aes-256-gcm` on this machine, in the same run, at
# 32 B, 1 KiB and 16 KiB. Fails (exit 1) if rootseal is below MIN_RATIO of
# openssl at 1 KiB or 16 KiB.
#
#   bash bench/aead-vs-openssl.sh [BUILD_DIR]      (default: build/release)
#   SECONDS_PER_RUN=3 REPEAT=3 MIN_RATIO=0.8 bash bench/aead-vs-openssl.sh build-crypto
#
# Both sides are measured in CPU time (openssl speed counts user time by
# default; Google Benchmark rates use CPU time). For each size the two run
# back to back, REPEAT times, and the medians are compared, so that load from
# other processes on a shared machine hits both alike. The in-process column
# runs the openssl speed loop inside the benchmark binary, for reference.
set -euo pipefail

build_dir=${1:-build/release}
bench="$build_dir/bench/rootseal_bench_aead"
seconds=${SECONDS_PER_RUN:-3}
repeat=${REPEAT:-3}
min_ratio=${MIN_RATIO:-0.8}
sizes=(32 1024 16384)

if [[ ! -x "$bench" ]]; then
  echo "aead-vs-openssl: $bench not found; build the target rootseal_bench_aead first" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "aead-vs-openssl: openssl not found" >&2; exit 2; }

# Bytes per second of `openssl speed` for one size (its -mr "+F" line).
openssl_bps() {
  openssl speed -mr -evp aes-256-gcm -seconds "$seconds" -bytes "$1" 2>/dev/null |
    awk -F: '$1 == "+F" { print $4 }'
}

# Bytes per second of one of our benchmarks for one size.
bench_bps() {
  local name=$1 size=$2
  "$bench" --benchmark_filter="^${name}/${size}\$" --benchmark_min_time="$seconds" --benchmark_format=csv 2>/dev/null |
    awk -F, -v want="\"${name}/${size}\"" '$1 == want { print $6 }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mbps() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1e6 }'; }

echo "AES-256-GCM seal throughput, $(nproc) CPU(s), $(openssl version | cut -d' ' -f1-2)," \
     "median of ${repeat} x ${seconds}s per size"
printf '%8s  %16s  %16s  %18s  %7s\n' "size" "openssl speed" "rootseal seal" "in-process loop" "ratio"
printf '%8s  %16s  %16s  %18s  %7s\n' "(bytes)" "(MB/s)" "(MB/s)" "(MB/s)" ""
status=0
for size in "${sizes[@]}"; do
  refs=() ourss=() loops=()
  for ((i = 0; i < repeat; i++)); do
    refs+=("$(openssl_bps "$size")")
    ourss+=("$(bench_bps BM_Seal_AES256GCM "$size")")
    loops+=("$(bench_bps BM_OpensslSpeedLoop_AES256GCM "$size")")
  done
  for v in "${refs[@]}" "${ourss[@]}" "${loops[@]}"; do
    if [[ -z "$v" ]]; then
      echo "aead-vs-openssl: a run gave no figure for $size bytes" >&2
      exit 2
    fi
  done
  ref=$(median "${refs[@]}")
  ours=$(median "${ourss[@]}")
  loop=$(median "${loops[@]}")
  ratio=$(awk -v a="$ours" -v b="$ref" 'BEGIN { printf "%.2f", a / b }')
  verdict=""
  if [[ $size -ge 1024 ]] && awk -v r="$ratio" -v m="$min_ratio" 'BEGIN { exit !(r < m) }'; then
    verdict="  < $min_ratio FAIL"
    status=1
  fi
  printf '%8s  %16s  %16s  %18s  %7s%s\n' "$size" "$(mbps "$ref")" "$(mbps "$ours")" "$(mbps "$loop")" "$ratio" "$verdict"
done
if [[ $status -ne 0 ]]; then
  echo "aead-vs-openssl: rootseal seal is below ${min_ratio} of openssl speed at 1 KiB or 16 KiB" >&2
fi
exit $status
