#!/usr/bin/env bash
# Fuzz every decoder with libFuzzer (clang, ASan+UBSan).
#   scripts/fuzz.sh [RUNS]      RUNS executions per target (default 10000000)
# CI runs a short pass (scripts/test.sh: RUNS=200000).  New inputs that
# widen coverage stay in build-fuzz/corpus/; crashes are kept as crash-* files
# in build-fuzz/ and make this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10000000}
B=build-fuzz
command -v clang >/dev/null || { echo "fuzz: clang is missing (apt-get install clang)" >&2; exit 1; }
CC=clang cmake -S . -B $B -DRMIG_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build $B -j"$(nproc)" --target $(sed -n 's/^set(RMIG_FUZZ_TARGETS \(.*\))/\1/p' tests/fuzz/CMakeLists.txt) >/dev/null
status=0
for t in $(sed -n 's/^set(RMIG_FUZZ_TARGETS \(.*\))/\1/p' tests/fuzz/CMakeLists.txt); do
  mkdir -p $B/corpus/$t
  cp -n tests/fuzz/corpus/$t/* $B/corpus/$t/ 2>/dev/null || true
  start=$(date +%s)
  if (cd $B && ./tests/fuzz/$t -runs="$RUNS" -print_final_stats=1 corpus/$t > $t.log 2>&1); then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' $B/$t.log)
    echo "fuzz $t: $execs executions in $(( $(date +%s) - start )) s, no crash"
  else
    echo "fuzz $t: CRASH (see $B/$t.log and $B/crash-*)" >&2
    tail -30 $B/$t.log >&2
    status=1
  fi
done
exit $status
