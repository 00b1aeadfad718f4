#!/usr/bin/env bash
# The demo (both ends on this machine, destination forked) under valgrind's
# memcheck, over each software backend, for a small dirtying guest:
#   scripts/valgrind-demo.sh [RDMAMIG [PLUGIN]]
# (defaults: build/tools/rdmamig and build/librdmamig.so.0).  Fails if any
# process (source or forked destination) reports an error or a definite
# leak, if the migration is not verified, or if the dirty tracker is not
# the mprotect fallback (valgrind has no userfaultfd: auto must fall back).
# Suppressions: scripts/valgrind.supp (third-party libraries only, each
# with its reason).  BACKENDS overrides the list (default: every backend that
# runs here, `rdmamig backends --available`).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/tools/rdmamig}
PLUGIN=${2:-build/librdmamig.so.0}
command -v valgrind >/dev/null || { echo "valgrind-demo: valgrind is missing (apt-get install valgrind)" >&2; exit 77; }
[ -x "$BIN" ] || { echo "valgrind-demo: no $BIN (build first: scripts/setup.sh)" >&2; exit 1; }
BACKENDS=${BACKENDS:-$("$BIN" backends --available | tr '\n' ' ')}
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT

status=0
for b in $BACKENDS; do
  log=$LOG/${b//\//_}.log
  start=$(date +%s%N)
  # One log file per process (%p): the forked destination writes its own.
  timeout 240 valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite --suppressions=scripts/valgrind.supp \
    --log-file="$LOG/vg.${b//\//_}.%p" \
    "$BIN" demo --backend "$b" --guest-size 64M --dirty-rate 8M --vcpu-threads 2 \
    --timeout-ms 30000 --plugin "$PLUGIN" >"$log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  summaries=$(grep -h "ERROR SUMMARY" "$LOG"/vg."${b//\//_}".* | sed 's/^==[0-9]*== //')
  nproc_logs=$(ls "$LOG"/vg."${b//\//_}".* | wc -l)
  tracker=$(sed -n 's/.*dirty tracking: \([a-z-]*\)).*/\1/p' "$log")
  verified=$(sed -n 's/^ *verified *//p' "$log")
  ok=1
  [ $rc -eq 0 ] || ok=0
  [ "$nproc_logs" -ge 2 ] || ok=0     # source and destination both checked
  echo "$summaries" | grep -qv "ERROR SUMMARY: 0 errors" && ok=0
  [ "$tracker" = mprotect ] || ok=0
  [ "$verified" = yes ] || ok=0
  printf 'valgrind-demo %-8s exit %d, %d processes, tracker %s, verified %s, %d ms\n' \
    "$b" $rc "$nproc_logs" "${tracker:--}" "${verified:--}" "$ms"
  echo "$summaries" | sed 's/^/  /'
  grep -h "dirty tracking uses" "$log" | sort -u | sed 's/^/  /'
  if [ $ok -ne 1 ]; then
    status=1
    echo "valgrind-demo $b: FAILED; demo output and valgrind logs follow" >&2
    cat "$log" >&2
    for f in "$LOG"/vg."${b//\//_}".*; do grep -v '^==[0-9]*== *$' "$f" | tail -60 >&2; done
  fi
done
exit $status
