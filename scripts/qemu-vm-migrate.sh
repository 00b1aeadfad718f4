#!/usr/bin/env bash
# QEMU migrating the test guest over RDMA, inside the Soft-RoCE VM
# (scripts/softroce-vm.sh), in one run:
#   stock QEMU (Debian's 7.2): exec:rdmamig over the verbs backend, QEMU's
#     own rdma: on the same rxe0, and QEMU's tcp: for reference;
#   --patched: the patched QEMU 10 (integrations/qemu/, scripts/build-qemu.sh)
#     by its own rdmamig: transport over verbs (QEMU loads librdmamig.so and
#     writes guest RAM one-sidedly), beside the same binary's rdma: and tcp:,
#     and its own unix: migration through rdmamig proxy-out/proxy-in over
#     verbs with 0 and 2 multifd channels (QEMU driven as libvirt drives it:
#     -incoming defer, return-path, pause-before-switchover).
# QEMU is TCG there (no KVM in the VM), so the guest stays idle (--rate 0):
# QEMU 7.2's TCG loses pages a guest dirties during migration, and a TCG
# QEMU inside a TCG VM is too slow to judge a dirtying guest.
#
#   scripts/qemu-vm-migrate.sh [--build DIR] [--patched] [--runs N] [--methods LIST]
#                              [--no-failures] [--no-kill] [ARGS for qemu_migrate.py]
#
# By default it also cancels a migration and kills the receiving end over
# verbs (rdmamig recv for stock QEMU, the destination QEMU for --patched);
# the source guest must keep running with intact pages.  --no-failures
# leaves both out, --no-kill only the killed receiver.  The harness runs
# under a deadline of its own (guard, scripts/softroce-guard.sh): a hang
# prints SOFTROCE-HANG and the stacks of what hung.
#
# --patched takes the binary from $RMIG_QEMU, else scripts/build-qemu.sh
# --cached; where there is none, or it has no rdmamig: transport, the stage
# says why and FAILS (CI builds it earlier in scripts/test.sh).
#
# It stages QEMU (scripts/vm-tools.sh stage_vm_qemu: binary, TCG module,
# firmware) and qemu_migrate.py in DIR/qemu-vm (DIR/qemu10-vm for
# --patched) and python3 in DIR/vm-tools, which the VM sees by 9p;
# softroce-vm.sh adds the libraries they need to the VM's initramfs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=1
PATCHED=0
METHODS=""
FAILURES="--cancel V --kill V" # migrate_cancel and a killed receiver over verbs
EXTRA=()
while (($#)); do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --patched) PATCHED=1; shift ;;
    --runs) RUNS=$2; shift 2 ;;
    --methods) METHODS=$2; shift 2 ;;
    --no-failures) FAILURES=""; shift ;;
    --no-kill) FAILURES=${FAILURES/--kill V/}; shift ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done
B=$(realpath "$BUILD")
[ -x "$B/tools/rdmamig" ] && [ -e "$B/guest/rdmamig-guest.bin" ] ||
  { echo "qemu-vm-migrate: build first (bash scripts/setup.sh)" >&2; exit 1; }
. scripts/vm-tools.sh
stage_vm_tools "$B"   # python3 for the harness: $VMT
if ((PATCHED)); then
  TAG="qemu-vm-migrate (patched QEMU)"
  fail() { echo "$TAG: FAILED: $*" >&2; exit 1; }
  QBIN=${RMIG_QEMU:-}
  [ -n "$QBIN" ] || QBIN=$(bash scripts/build-qemu.sh --cached 2>/dev/null) ||
    fail "the patched QEMU is not built on this machine (bash scripts/build-qemu.sh builds it; it says why where it cannot; or set RMIG_QEMU)"
  [ -x "$QBIN" ] || fail "$QBIN is not an executable QEMU"
  grep -q qio-channel-rdmamig "$QBIN" ||
    fail "$QBIN has no rdmamig: transport (not built from integrations/qemu/)"
  LIB=$(readlink -f "$B/librdmamig.so.0")
  [ -e "$LIB" ] || fail "$B/librdmamig.so.0 is missing: build first"
  VMD=$B/qemu10-vm
  # proxy:verbs:N: QEMU's own unix: migration (multifd with N channels, 0:
  # off) through rdmamig proxy-out/proxy-in over verbs, QEMU driven as
  # libvirt drives it (return path on); unix: and multifd are upstream code.
  : "${METHODS:=plugin:verbs,qemu-rdma,qemu-tcp,proxy:verbs:0,proxy:verbs:2}"
  FAILURES=${FAILURES//V/plugin:verbs}
  PLUGIN_ARGS="--firmware $VMD/firmware"
  [[ "$METHODS $FAILURES" != *plugin:* ]] || PLUGIN_ARGS+=" --library $LIB"
  GUEST_MIB=64
  # RMIG_TIMEOUT_MS, every wait on the peer: with the host at load ~12 a
  # 20 s wait ran out once ("the peer sent nothing within 20000 ms").
  STREAM_MS=60000
else
  TAG=qemu-vm-migrate
  fail() { echo "$TAG: FAILED: $*" >&2; exit 1; }
  QBIN=/usr/bin/qemu-system-x86_64
  VMD=$B/qemu-vm
  : "${METHODS:=qemu-tcp,qemu-rdma,rdmamig:verbs}"
  FAILURES=${FAILURES//V/verbs}
  PLUGIN_ARGS=""
  GUEST_MIB=32
  STREAM_MS=20000
fi
stage_vm_qemu "$QBIN" "$VMD" || fail "cannot stage $QBIN for the VM"
cp scripts/qemu_migrate.py "$VMD/"
echo "$TAG: $("$QBIN" --version | head -1), methods $METHODS, $RUNS run(s) each, in the Soft-RoCE VM"
LOG=$VMD/last-run.log
rc=0
bash scripts/softroce-vm.sh --build "$BUILD" --mem 2048 --timeout 900 run \
  "guard qemu_migrate.py 840 env $VM_QEMU_ENV PYTHONHOME=$VMT/py \
   $VMT/bin/python3 -S $VMD/qemu_migrate.py --accel tcg --host \$RMIG_VM_IP \
   --rdmamig $B/tools/rdmamig --guest $B/guest/rdmamig-guest.bin --workdir /tmp/qm $PLUGIN_ARGS \
   --methods $METHODS --runs $RUNS --rate 0 --guest-mib $GUEST_MIB --ram-mib 128 $FAILURES \
   --boot-timeout 300 --start-timeout 60 --interrupt-timeout 120 --migrate-timeout 300 --stream-timeout-ms $STREAM_MS \
   --qmp-timeout 60 --proxy-timeout-ms $STREAM_MS --libvirt-caps verbs --table ${EXTRA[*]} ||
   { st=\$?; for f in /tmp/qm/*.stderr /tmp/qm/*.console; do echo \"--- \$f\"; tail -4 \$f; done; exit \$st; }" \
  >"$LOG" 2>&1 || rc=$?
# The harness's lines and the table; the whole console is in $LOG.
grep -aE 'qemu-migrate|^\[a\] (\||[0-9]+ runs)|SOFTROCE-RESULT|softroce-vm:' "$LOG" | grep -av '^\[a\] SOFTROCE' || true
if ((rc)); then
  echo "$TAG: FAILED (status $rc); the end of the VM's console:" >&2
  tail -40 "$LOG" >&2
fi
exit $rc
