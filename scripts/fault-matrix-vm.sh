#!/usr/bin/env bash
# The fault matrix over verbs, on real Soft-RoCE: scripts/fault-matrix.sh run
# inside the Soft-RoCE VM (scripts/softroce-vm.sh), both ends on rxe0, with
# the faults only a real RDMA device has: the device deleted under both ends
# (`rdma link delete rxe0`) and its link taken down (`ip link set eth0
# down`), besides killing either end, cancelling from the CLI and a hung
# destination.  Same checks and table as on the host.
#
#   scripts/fault-matrix-vm.sh [--build DIR] [--backends "verbs ofi/verbs"]
#                              [ARGS for fault-matrix.sh]
#   (default ARGS: -r 1 -g 16M -t 3000; -H is rxe0's address; backends: verbs,
#   and ofi/verbs where the ofi backend is compiled in)
#
# bash and python3 come from the host (scripts/vm-tools.sh); the VM runs
# the matrix under a deadline of its own (guard): a hang prints
# SOFTROCE-HANG with the stacks of what hung.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ARGS=()
BACKENDS=""
while (($#)); do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
((${#ARGS[@]})) || ARGS=(-r 1 -g 16M -t 3000)
B=$(realpath "$BUILD")
[ -x "$B/tools/rdmamig" ] || { echo "fault-matrix-vm: build first (bash scripts/setup.sh)" >&2; exit 1; }
. scripts/vm-tools.sh
[ -n "$BACKENDS" ] || { vm_rdma_specs "$B" fault-matrix-vm; BACKENDS=$RDMA_SPECS; }
stage_vm_tools "$B"
# The VM sees the build folder only.
cp scripts/fault-matrix.sh "$VMT/"
FAULTS="kill-dst kill-src rdma-link-delete link-down cancel stop-dst"
LOG=$B/softroce/fault-matrix-vm.log
mkdir -p "$B/softroce"
DEADLINE=${SOFTROCE_FAULT_TIMEOUT:-900}
rc=0
bash scripts/softroce-vm.sh --build "$BUILD" --mem 1024 --timeout $((DEADLINE + 60)) run \
  "guard fault-matrix $DEADLINE env PATH=$VMT/bin:\$PATH PYTHON=$VMT/bin/python3 PYTHONHOME=$VMT/py BUILD=$B RMIG_FAULT_KEEP=\$RMIG_VM_RUN/unexpected \
   $VMT/bin/bash $VMT/fault-matrix.sh -b '$BACKENDS' -H \$RMIG_VM_IP -f '$FAULTS' ${ARGS[*]}" \
  >"$LOG" 2>&1 || rc=$?
# The matrix's own lines (the whole console is in $LOG).
grep -aE '^\[a\] (fault-matrix|cells|\||- |  - |  UNEXPECTED|    |What)|SOFTROCE-(HANG|RESULT)' "$LOG" | sed 's/^\[a\] //' || true
if ((rc)); then
  run=$(sed -n 's/.*(logs: \(.*\))$/\1/p' "$LOG" | tail -1)
  [ -n "$run" ] && [ -d "$run/unexpected" ] && echo "fault-matrix-vm: the outputs of each unexpected run: $run/unexpected" >&2
  echo "fault-matrix-vm: FAILED (status $rc); the end of the VM's console ($LOG):" >&2
  tail -20 "$LOG" >&2
fi
exit $rc
