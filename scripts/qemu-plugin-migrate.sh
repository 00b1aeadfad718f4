#!/usr/bin/env bash
# End to end with the patched QEMU (integrations/qemu/, scripts/build-qemu.sh):
# QEMU itself loads librdmamig.so and migrates the running, memory-dirtying
# test guest (guest/, under TCG: QEMU 10 tracks TCG's dirty pages) by its own
# `rdmamig:` transport, RAM written into the destination's RAMBlocks.
# Judged by the guest: heartbeat advancing on the destination, 0 wrong pages.
#
#   scripts/qemu-plugin-migrate.sh [--build DIR] [--backends tcp,ofi/tcp,...]
#                                  [--faults] [ARGS for qemu_migrate.py]
#
# Default: a migration over every host backend that runs here (tcp, ofi/tcp,
# ofi/shm).  --faults instead: migrate_cancel mid-round (the source runs on),
# the destination QEMU killed (the source runs on), the source QEMU killed
# (the destination never starts the guest), over each backend.
# The binary: $RMIG_QEMU, else scripts/build-qemu.sh's cached build; neither
# there: exit 77 (ctest shows SKIP), never a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BACKENDS=auto
FAULTS=0
EXTRA=()
while (($#)); do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --faults) FAULTS=1; shift ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
QEMU_BIN=${RMIG_QEMU:-}
if [ -z "$QEMU_BIN" ] && ! QEMU_BIN=$(bash scripts/build-qemu.sh --cached); then
  echo "qemu-plugin-migrate: SKIP: the patched QEMU is not built here (bash scripts/build-qemu.sh builds it, or set RMIG_QEMU)"
  exit 77
fi
grep -q qio-channel-rdmamig "$QEMU_BIN" ||
  { echo "qemu-plugin-migrate: $QEMU_BIN has no rdmamig: transport (not built from integrations/qemu/)" >&2; exit 1; }
RDMAMIG=$(readlink -f "$BUILD/tools/rdmamig")
GUEST=$(readlink -f "$BUILD/guest/rdmamig-guest.bin")
LIB=$(readlink -f "$BUILD/librdmamig.so.0")
for f in "$RDMAMIG" "$GUEST" "$LIB"; do
  [ -e "$f" ] || { echo "qemu-plugin-migrate: $f is missing: build first" >&2; exit 1; }
done
list() { local out="" b; for b in ${BACKENDS//,/ }; do out+="${out:+,}plugin:$b"; done; echo "$out"; }
if ((FAULTS)); then
  # One migration first (the guest must be fine), then the faults.
  # A killed source ends the guest: once, over the first backend.
  KS=${BACKENDS%%,*}; [ "$KS" != auto ] || KS=tcp
  ARGS=(--methods "plugin:tcp" --cancel "$(list)" --kill "$(list)" --kill-source "plugin:$KS")
else
  ARGS=(--methods "$(list)")
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rdmamig-qemu-plugin.XXXXXX")
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
echo "qemu-migrate: $("$QEMU_BIN" --version | head -1) ($QEMU_BIN), plugin $LIB; work dir $WORK"
set +e
QEMU=$QEMU_BIN python3 scripts/qemu_migrate.py --rdmamig "$RDMAMIG" --guest "$GUEST" \
  --library "$LIB" --workdir "$WORK" --accel tcg --rate 5000 "${ARGS[@]}" "${EXTRA[@]}"
rc=$?
if ((rc)); then
  for f in "$WORK"/*.stderr; do echo "--- $f"; tail -5 "$f"; done
fi
exit $rc
