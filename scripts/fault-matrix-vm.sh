#!/usr/bin/env bash
# The fault matrix over verbs, on real Soft-RoCE: scripts/fault-matrix.sh run
# inside the Soft-RoCE VM (scripts/softroce-vm.sh), both ends on rxe0, with
# the faults only a real RDMA device has: the device deleted under both ends
# (`rdma link delete rxe0`) and its link taken down (`ip link set eth0
# down`), besides killing either end, cancelling from the CLI and a hung
# destination.  Same checks and table as on the host.
#
#   scripts/fault-matrix-vm.sh [--build DIR] [--backends "verbs ofi/verbs"]
#                              [--pair] [ARGS for fault-matrix.sh]
#   (default ARGS: -r 1 -g 16M -t 3000; -H is rxe0's address; backends: verbs,
#   and ofi/verbs where the ofi backend is compiled in)
#
# --pair: two VMs (softroce-vm.sh pair), the source in VM a (10.0.0.1), the
# destination in VM b (10.0.0.2), each on its own rxe0, so that one side's
# link can go down while the other's stays up.  VM a runs fault-matrix.sh
# -P (the source side), VM b its agent (-A), which starts each `rdmamig
# serve` and injects the destination-side faults; they meet in a folder of
# the run both VMs see ($RMIG_VM_RUN/fm).  Faults: kill-dst kill-src
# link-down-src link-down-dst (-f to choose among those and cancel,
# stop-dst).
#
# bash and python3 come from the host (scripts/vm-tools.sh); the VM runs
# the matrix under a deadline of its own (guard): a hang prints
# SOFTROCE-HANG with the stacks of what hung.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ARGS=()
BACKENDS=""
PAIR=0
while (($#)); do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --pair) PAIR=1; shift ;;
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
LOG=$B/softroce/fault-matrix-vm.log
mkdir -p "$B/softroce"
DEADLINE=${SOFTROCE_FAULT_TIMEOUT:-900}
ENV="env PATH=$VMT/bin:\$PATH PYTHON=$VMT/bin/python3 PYTHONHOME=$VMT/py BUILD=$B"
rc=0
if ((PAIR)); then
  LOG=$B/softroce/fault-matrix-pair.log
  FAULTS="kill-dst kill-src link-down-src link-down-dst"
  bash scripts/softroce-vm.sh --build "$BUILD" --mem 1024 --timeout $((DEADLINE + 60)) pair \
    "guard fault-matrix $DEADLINE $ENV RMIG_FAULT_KEEP=\$RMIG_VM_RUN/unexpected \
     $VMT/bin/bash $VMT/fault-matrix.sh -b '$BACKENDS' -H \$RMIG_VM_IP -P \$RMIG_VM_RUN/fm -f '$FAULTS' $(printf "%q " "${ARGS[@]}")" \
    "guard fault-agent $DEADLINE $ENV $VMT/bin/bash $VMT/fault-matrix.sh -A \$RMIG_VM_RUN/fm -H \$RMIG_VM_IP" \
    >"$LOG" 2>&1 || rc=$?
else
  FAULTS="kill-dst kill-src rdma-link-delete link-down cancel stop-dst"
  bash scripts/softroce-vm.sh --build "$BUILD" --mem 1024 --timeout $((DEADLINE + 60)) run \
    "guard fault-matrix $DEADLINE $ENV RMIG_FAULT_KEEP=\$RMIG_VM_RUN/unexpected \
     $VMT/bin/bash $VMT/fault-matrix.sh -b '$BACKENDS' -H \$RMIG_VM_IP -f '$FAULTS' $(printf "%q " "${ARGS[@]}")" \
    >"$LOG" 2>&1 || rc=$?
fi
# The matrix's own lines (the whole console is in $LOG).
grep -aE '^\[a\] (fault-matrix|cells|\||- |  - |  UNEXPECTED|    |What)|^\[b\] fault-matrix|SOFTROCE-(HANG|RESULT)' "$LOG" | sed 's/^\[a\] //' || true
if ((rc)); then
  run=$(sed -n 's/.*(logs: \(.*\))$/\1/p' "$LOG" | tail -1)
  [ -n "$run" ] && [ -d "$run/unexpected" ] && echo "fault-matrix-vm: the outputs of each unexpected run: $run/unexpected" >&2
  echo "fault-matrix-vm: FAILED (status $rc); the end of the VM's console ($LOG):" >&2
  tail -20 "$LOG" >&2
fi
exit $rc
