#!/usr/bin/env bash
# The long fuzzing campaign (`make fuzz-long`): every target of the fuzz build
# for SECONDS each, one after the other, at low priority, each with a
# persistent corpus outside the source tree (CORPUS_ROOT/<target>, seeded
# from tests/fuzz/corpus) that grows from run to run. A crash, leak or
# sanitizer report stops that target, keeps the input as
# CORPUS_ROOT/<target>.crash-* and makes the campaign fail at the end.
# Prints executions per target. Add a crash input to tests/fuzz/corpus/<dir>
# once fixed: it is then replayed by every `make test`. Each run appends
# "time target executions corpus exit" to CORPUS_ROOT/history.tsv.
# NICE (environment, default 10) is the niceness of the runs. TIMEOUT
# (default 30) is libFuzzer's -timeout in seconds: the template engine's step
# budget (1,000,000) admits renders of about 2.5 s each under ASan+UBSan on an
# idle core, the template target renders twice, and at nice 15 on a shared
# machine such an input took 12 s (a false "timeout" finding at 10 s). Allocation
# stacks are cut to 8 frames (ASan's default 30 made the YAML and HTTP
# targets half as fast); reproduce a finding with the default for the rest.
# RUNS (environment, default 0 = no limit) also stops a target after that
# many executions, whichever of the two budgets ends first: RUNS=10000000 with
# a generous SECONDS is the "ten million executions per target" campaign.
#
#   tests/fuzz/run-long.sh <fuzz build dir> <seconds> <corpus root> [target regex]
set -uo pipefail

build=${1:?fuzz build dir}
seconds=${2:?seconds per target}
root=${3:?corpus root}
filter=${4:-.}
runs=${RUNS:-0}
[[ $runs =~ ^[0-9]+$ ]] || { echo "run-long: RUNS must be a number" >&2; exit 2; }
runs_flag=()
((runs > 0)) && runs_flag=(-runs="$runs")
list="$build/tests/fuzz/fuzz-targets.txt"
[[ -f $list ]] || { echo "run-long: $list missing (configure the fuzz build first)" >&2; exit 2; }
mkdir -p "$root"
# The sanitizers symbolize through llvm-symbolizer; given its real path (the
# PATH lookup of Debian's versioned symlink fails: "invalid path to external
# symbolizer"), findings and NEW_FUNC lines show function, file and line.
if [[ -z ${ASAN_SYMBOLIZER_PATH:-} ]]; then
  for s in llvm-symbolizer-19 llvm-symbolizer; do
    if command -v "$s" >/dev/null; then
      export ASAN_SYMBOLIZER_PATH
      ASAN_SYMBOLIZER_PATH=$(readlink -f "$(command -v "$s")")
      break
    fi
  done
fi
failed=()
summary=()
while IFS='=' read -r name seeds; do
  [[ -n $name && $name =~ $filter ]] || continue
  bin="$build/tests/fuzz/$name"
  [[ -x $bin ]] || { echo "run-long: $bin missing (make build-fuzz)" >&2; exit 2; }
  mkdir -p "$root/$name"
  log="$root/$name.log"
  echo "== $name: ${seconds}s${runs_flag:+ or $runs executions}, corpus $root/$name (seeds $seeds)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:malloc_context_size=8 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    nice -n "${NICE:-10}" "$bin" -max_total_time="$seconds" "${runs_flag[@]}" -timeout="${TIMEOUT:-30}" -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$root/$name.crash-" "$root/$name" "$seeds" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  corpus=$(find "$root/$name" -type f | wc -l)
  summary+=("$name: ${execs:-?} executions, corpus $corpus, exit $rc")
  # The campaign history: one line per run, kept across campaigns.
  printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$name" "${execs:-?}" "$corpus" "$rc" >>"$root/history.tsv"
  if ((rc != 0)); then
    failed+=("$name")
    tail -40 "$log"
  fi
done <"$list"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "run-long: findings in ${failed[*]} (inputs: $root/<target>.crash-*, logs: $root/<target>.log)" >&2
  exit 1
fi
