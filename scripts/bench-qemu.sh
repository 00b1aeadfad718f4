#!/usr/bin/env bash
# Benchmark: the same running test guest migrated by stock QEMU over its own
# tcp: and over exec:rdmamig on each backend that runs here, interleaved in
# one run, several times each; prints a markdown table of medians (total
# time, the pause the guest saw from source STOP to destination RESUME,
# QEMU's own downtime figure, MB sent).
#
#   scripts/bench-qemu.sh [--build DIR] [--runs N] [--guest-mib M] [--ram-mib R]
#                         [--rate PAGES_PER_S] [--backends tcp,ofi/shm,...]
#                         [--downtime-ms MS]   (QEMU's downtime-limit, default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=5 GUEST_MIB=256 RAM_MIB=512 RATE=25600 BACKENDS=auto DOWNTIME_MS=300
while (($#)); do
  case "$1" in
    --build) BUILD=$2 ;;
    --runs) RUNS=$2 ;;
    --guest-mib) GUEST_MIB=$2 ;;
    --ram-mib) RAM_MIB=$2 ;;
    --rate) RATE=$2 ;;
    --backends) BACKENDS=$2 ;;
    --downtime-ms) DOWNTIME_MS=$2 ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--guest-mib M] [--ram-mib R] [--rate P] [--backends LIST] [--downtime-ms MS]" >&2; exit 2 ;;
  esac
  shift 2
done
RDMAMIG=$(readlink -f "$BUILD/tools/rdmamig")
GUEST=$(readlink -f "$BUILD/guest/rdmamig-guest.bin")
[ -x "$RDMAMIG" ] && [ -e "$GUEST" ] || { echo "bench-qemu: build first (bash scripts/setup.sh)" >&2; exit 1; }
METHODS=qemu-tcp
for b in ${BACKENDS//,/ }; do METHODS+=",rdmamig:$b"; done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rdmamig-bench-qemu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "bench-qemu: $(qemu-system-x86_64 --version | head -1), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 scripts/qemu_migrate.py --rdmamig "$RDMAMIG" --guest "$GUEST" --workdir "$WORK" \
  --methods "$METHODS" --runs "$RUNS" --guest-mib "$GUEST_MIB" --ram-mib "$RAM_MIB" \
  --rate "$RATE" --downtime-ms "$DOWNTIME_MS" --check last --table --boot-timeout 300
