#!/usr/bin/env bash
# Two builds' `rdmamig bench migrate --vs-transport` interleaved in one run
# (before, after, before, after, ...: a busy neighbour slows both alike), as
# JSON lines labelled "before" and "after" on stdout, for
# scripts/plot-benchmarks.sh (docs/data/vs-transport.json).
#
#   scripts/bench-engine-ab.sh --before BUILD_DIR [--after BUILD_DIR] [--runs N]
#                              [--backends SPEC,...] [-- MORE_BENCH_ARGS]
# (default backends: every one that runs here, `rdmamig backends --available`)
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE='' AFTER=build RUNS=5 BACKENDS=''
while (($#)); do
  case "$1" in
    --before) BEFORE=$2; shift 2 ;;
    --after) AFTER=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 --before BUILD_DIR [--after BUILD_DIR] [--runs N] [--backends LIST] [-- ARGS]" >&2; exit 2 ;;
  esac
done
[ -n "$BEFORE" ] || { echo "bench-engine-ab: --before BUILD_DIR (a build of the older commit)" >&2; exit 2; }
[ -n "$BACKENDS" ] || BACKENDS=$("$AFTER/tools/rdmamig" backends --available | paste -sd, -)
for i in $(seq "$RUNS"); do
  for lab in before after; do
    dir=$BEFORE; [ "$lab" = after ] && dir=$AFTER
    for b in ${BACKENDS//,/ }; do
      "$dir/tools/rdmamig" bench migrate --vs-transport --backend "$b" --runs 1 --json "$@" |
        sed "s/^{/{\"label\":\"$lab\",/"
    done
  done
done
