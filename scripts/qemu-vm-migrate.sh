#!/usr/bin/env bash
# Stock QEMU migrating the test guest over RDMA, inside the Soft-RoCE VM
# (scripts/softroce-vm.sh): exec:rdmamig over the verbs backend and QEMU's
# own rdma: on the same rxe0, and QEMU's tcp: for reference, in one run.
# QEMU is TCG there (no KVM in the VM), so the guest stays idle (--rate 0):
# QEMU 7.2's TCG loses pages a guest dirties during migration.
#
#   scripts/qemu-vm-migrate.sh [--build DIR] [--runs N] [--methods LIST] [--no-failures] [--no-kill]
#                              [ARGS for qemu_migrate.py]
#
# By default it also cancels a migration and kills a receiver over verbs
# (the source guest must keep running); --no-failures leaves both out,
# --no-kill only the killed receiver.  (The killed receiver used to leave
# the source 'active' now and then: rdmamig send spun in the verbs backend
# once the connection was dead; fixed, and CI runs it again.)  The harness
# runs under a deadline of its own (guard, scripts/softroce-guard.sh): a
# hang prints SOFTROCE-HANG and the stacks of what hung.
#
# It stages QEMU (binary, TCG accelerator module) and qemu_migrate.py in
# DIR/qemu-vm and python3 in DIR/vm-tools (scripts/vm-tools.sh), which the VM sees by
# 9p; softroce-vm.sh adds the libraries they need to the VM's initramfs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=1
METHODS=qemu-tcp,qemu-rdma,rdmamig:verbs
FAILURES="--cancel verbs --kill verbs" # migrate_cancel and a killed receiver over verbs
EXTRA=()
while (($#)); do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --methods) METHODS=$2; shift 2 ;;
    --no-failures) FAILURES=""; shift ;;
    --no-kill) FAILURES=${FAILURES/--kill verbs/}; shift ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
B=$(realpath "$BUILD")
[ -x "$B/tools/rdmamig" ] && [ -e "$B/guest/rdmamig-guest.bin" ] ||
  { echo "qemu-vm-migrate: build first (bash scripts/setup.sh)" >&2; exit 1; }
VMD=$B/qemu-vm
MULTIARCH=x86_64-linux-gnu
. scripts/vm-tools.sh
stage_vm_tools "$B"   # python3 for the harness: $VMT
mkdir -p "$VMD/bin" "$VMD/qemu-modules"
cp -u /usr/bin/qemu-system-x86_64 "$VMD/bin/"
cp -u /usr/lib/$MULTIARCH/qemu/accel-tcg-x86_64.so "$VMD/qemu-modules/"
cp scripts/qemu_migrate.py "$VMD/"
echo "qemu-vm-migrate: methods $METHODS, $RUNS run(s) each, in the Soft-RoCE VM"
LOG=$VMD/last-run.log
rc=0
bash scripts/softroce-vm.sh --build "$BUILD" --mem 2048 --timeout 900 run \
  "guard qemu_migrate.py 840 env QEMU=$VMD/bin/qemu-system-x86_64 QEMU_MODULE_DIR=$VMD/qemu-modules PYTHONHOME=$VMT/py \
   $VMT/bin/python3 -S $VMD/qemu_migrate.py --accel tcg --host \$RMIG_VM_IP \
   --rdmamig $B/tools/rdmamig --guest $B/guest/rdmamig-guest.bin --workdir /tmp/qm \
   --methods $METHODS --runs $RUNS --rate 0 --guest-mib 32 --ram-mib 128 $FAILURES \
   --boot-timeout 300 --migrate-timeout 300 --stream-timeout-ms 20000 --table ${EXTRA[*]}" \
  >"$LOG" 2>&1 || rc=$?
# The harness's lines and the table; the whole console is in $LOG.
grep -aE 'qemu-migrate|^\[a\] (\||[0-9]+ runs)|SOFTROCE-RESULT|softroce-vm:' "$LOG" | grep -av '^\[a\] SOFTROCE' || true
if ((rc)); then
  echo "qemu-vm-migrate: FAILED (status $rc); the end of the VM's console:" >&2
  tail -20 "$LOG" >&2
fi
exit $rc
