#!/bin/sh
# Benchmark (not a test): parallel channels.  Idle guest, whole-block
# registration, channels 1, 2, 4 (each a migration between two processes
# on this machine, medians of RUNS), over ofi/shm and tcp by default; prints
# the markdown table of docs/benchmarks.md (time and throughput, ratios
# against 1 channel, the cpu each channel worker found itself bound to).
#
#   scripts/bench-channels.sh [BACKEND...]      on the host
#   scripts/bench-channels.sh --vm              verbs, in the Soft-RoCE VM
#
# Environment: SIZE (default 1G; the VM: SIZE_VM, default 256M), RUNS
# (default 3), CHANNELS (default 1,2,4), VCPUS (cpus reserved for vCPUs,
# e.g. 0: workers then all go to the other cpu), BUILD (default build).
# POSIX sh: the VM runs busybox.  The VM shares only the build folder, so
# --vm runs the rdmamig command itself there (scripts/softroce-vm.sh).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
CHANNELS=${CHANNELS:-1,2,4}
[ -x "$BUILD/tools/rdmamig" ] || { echo "bench-channels: build first (scripts/setup.sh)" >&2; exit 1; }
if [ "${1:-}" = "--vm" ]; then
	exec bash scripts/softroce-vm.sh --build "$BUILD" --mem 2048 run \
		"tools/rdmamig bench migrate --backend verbs --channels $CHANNELS --guest-size ${SIZE_VM:-256M} --runs $RUNS --listen \$RMIG_VM_IP:0 ${VCPUS:+--vcpus $VCPUS}"
fi
[ $# -gt 0 ] || set -- ofi/shm tcp
args=""
for b in "$@"; do args="$args --backend $b"; done
# shellcheck disable=SC2086
exec nice "$BUILD/tools/rdmamig" bench migrate $args --channels "$CHANNELS" \
	--guest-size "${SIZE:-1G}" --runs "$RUNS" ${VCPUS:+--vcpus "$VCPUS"}
