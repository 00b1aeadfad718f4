#!/usr/bin/env bash
# Fuzz every decoder with libFuzzer (clang, ASan+UBSan).
#   scripts/fuzz.sh [RUNS [TARGET...]]   RUNS executions per target (default
#                                        10000000), every target by default
# One process per target, one target after the other (no -jobs/-workers):
# "executions" is libFuzzer's own count of inputs run (-runs=RUNS,
# stat::number_of_executed_units), seeds included.  Per target it prints
# executions, seconds, executions/s, coverage (cov: edges, ft: features)
# and corpus size at the end.  CI runs a short pass (scripts/test.sh:
# RUNS=200000).  New inputs that widen coverage stay in build-fuzz/corpus/;
# a crash is kept as build-fuzz/crash-* and makes this script fail (add it
# to tests/fuzz/corpus/TARGET/ once the decoder is fixed).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10000000}
shift || true
B=build-fuzz
command -v clang >/dev/null || { echo "fuzz: clang is missing (apt-get install clang)" >&2; exit 1; }
ALL=$(sed -n 's/^set(RMIG_FUZZ_TARGETS \(.*\))/\1/p' tests/fuzz/CMakeLists.txt)
TARGETS=${*:-$ALL}
CC=clang cmake -S . -B $B -DRMIG_FUZZ=ON -DRMIG_WERROR=${RMIG_WERROR:-OFF} -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build $B -j"$(nproc)" --target $TARGETS >/dev/null
status=0
for t in $TARGETS; do
  mkdir -p $B/corpus/$t
  cp -n tests/fuzz/corpus/$t/* $B/corpus/$t/ 2>/dev/null || true
  start=$(date +%s%N)
  if (cd $B && ./tests/fuzz/$t -runs="$RUNS" -print_final_stats=1 -artifact_prefix="$t-" \
        corpus/$t > $t.log 2>&1); then
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' $B/$t.log)
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' $B/$t.log | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$done_line")
    printf 'fuzz %-17s %s executions in %d.%01d s (%d exec/s), cov %s ft %s corpus %s, 0 crashes\n' \
      "$t" "$execs" $((ms / 1000)) $((ms % 1000 / 100)) $(( ms ? execs * 1000 / ms : 0 )) \
      "${cov:-?}" "${ft:-?}" "${corp:-?}"
  else
    echo "fuzz $t: CRASH (see $B/$t.log and $B/$t-crash-*)" >&2
    tail -30 $B/$t.log >&2
    status=1
  fi
done
exit $status
