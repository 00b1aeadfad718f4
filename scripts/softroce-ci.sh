#!/usr/bin/env bash
# The Soft-RoCE stage of the test command (scripts/test.sh runs it after
# ctest; a failure here fails CI):
#   1. one VM, rxe0: the whole conformance suite over verbs, then over
#      ofi/verbs (libfabric's verbs provider on the same rxe0);
#      then peer authentication over both (tests/security/test_auth);
#      then the migration tests over verbs (tests/migration: idle and
#      dirtying guests verified byte-identical, downtime within the limit,
#      chunked registration);
#   2. two VMs joined on loopback, each with its own rxe0: the cross-host
#      part of the suite, VM a serving (conformance --serve), VM b
#      connecting (conformance --peer), over verbs and ofi/verbs.
# Each suite run leaves one line in the log:
#   SOFTROCE-CONFORMANCE backend=verbs vm=a tests=11 passed=11 failed=0 status=0
#   SOFTROCE-MIGRATION backend=verbs vm=a tests=3 passed=3 failed=0 status=0
#   SOFTROCE-AUTH backend=verbs vm=a tests=7 passed=7 failed=0 status=0
# Every command in a VM runs under its own deadline (guard, from
# scripts/softroce-guard.sh; SOFTROCE_TEST_TIMEOUT, default 240 s): a hang
# prints "SOFTROCE-HANG test=NAME" with the stacks of its processes and
# fails that command, instead of the whole VM reaching its timeout.
# RMIG_CONF_CYCLES (default here 200; the suite's own 1000 runs on the host)
# sets the connect/close cycles: under emulation a verbs connect/close takes
# ~50 ms and an ofi/verbs one ~180 ms, and 200 cycles past the warm-up still
# show a leak.  SOFTROCE_TIMEOUT (default 480) bounds each VM in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CONF=tests/conformance/conformance
TIMEOUT=${SOFTROCE_TIMEOUT:-480}
CYCLES=${RMIG_CONF_CYCLES:-200}
TEST_T=${SOFTROCE_TEST_TIMEOUT:-240}

fail() { echo "softroce-ci: FAILED: $*" >&2; exit 1; }
[ -x "$BUILD/$CONF" ] || fail "$BUILD/$CONF is not built (run scripts/setup.sh)"
[ -x "$BUILD/tests/security/test_auth" ] || fail "$BUILD/tests/security/test_auth is not built"
[ -x "$BUILD/tools/rdmamig" ] || fail "$BUILD/tools/rdmamig is not built"

# ofi/verbs runs only where the ofi backend is compiled in; said, not hidden.
. scripts/vm-tools.sh
vm_rdma_specs "$(realpath "$BUILD")" softroce-ci
SPECS=$RDMA_SPECS

# In the guest (busybox sh): run the suite, keep its output, print the line.
GUEST_FN='
conf() {
  spec=$1; shift
  log=/tmp/conf-$(echo "$spec" | tr / -).log
  { RMIG_CONF_HOST=$RMIG_VM_IP RMIG_CONF_CYCLES='"$CYCLES"' '"$CONF"' "$spec" "$@"; echo $? >/tmp/rc; } 2>&1 | tee "$log"
  rc=$(cat /tmp/rc)
  set -- $(grep -E "^ *tests +[0-9]" "$log") x x x x x x
  echo "SOFTROCE-CONFORMANCE backend=$spec vm=$RMIG_VM tests=$2 passed=$4 failed=$5 status=$rc"
  return $rc
}
# The suite under its own deadline: a hang names itself (SOFTROCE-HANG).
gconf() { guard "conformance $*" '"$TEST_T"' conf "$@"; }
# cunit TAG COMMAND...: a CUnit program over verbs, its SOFTROCE-TAG line.
cunit() {
  tag=$1; shift
  log=/tmp/$tag.log
  { "$@"; echo $? >/tmp/rc; } 2>&1 | tee "$log"
  rc=$(cat /tmp/rc)
  set -- $(grep -E "^ *tests +[0-9]" "$log") x x x x x x
  echo "SOFTROCE-$tag backend=verbs vm=$RMIG_VM tests=$2 passed=$4 failed=$5 status=$rc"
  return $rc
}
mig() {
  cunit MIGRATION env RMIG_TEST_BACKENDS=verbs RMIG_CONF_HOST=$RMIG_VM_IP \
    RMIG_TEST_ONLY="every backend|chunked" RMIG_TEST_TIMEOUT_MS=30000 tests/migration/test_migration
}
auth() {
  spec=$1
  log=/tmp/auth-$(echo "$spec" | tr / -).log
  { RMIG_CONF_HOST=$RMIG_VM_IP tests/security/test_auth "$spec"; echo $? >/tmp/rc; } 2>&1 | tee "$log"
  rc=$(cat /tmp/rc)
  set -- $(grep -E "^ *tests +[0-9]" "$log") x x x x x x
  echo "SOFTROCE-AUTH backend=$spec vm=$RMIG_VM tests=$2 passed=$4 failed=$5 status=$rc"
  return $rc
}
'

T0=$(date +%s)
bash scripts/softroce-vm.sh build || fail "the Soft-RoCE VM could not be prepared"
T1=$(date +%s)

one=$GUEST_FN'st=0'
for s in $SPECS; do one+="; gconf $s || st=1"; done
# Peer authentication over verbs and ofi/verbs (tests/security/test_auth).
for s in $SPECS; do one+="; guard \"authentication $s\" $TEST_T auth $s || st=1"; done
one+='; guard "migration tests over verbs" '"$TEST_T"' mig || st=1; exit $st'
rc1=0
bash scripts/softroce-vm.sh -q --timeout "$TIMEOUT" run "$one" >"$BUILD/softroce/ci-one.log" 2>&1 || rc1=$?
T2=$(date +%s)

# Two VMs: a serves every spec on its own port, b runs the cross-host tests
# once a's peer says it listens (the run folder is shared by both guests).
serve='st=0; p=7471; for s in '"$SPECS"'; do
  guard "conformance $s --serve" '"$TEST_T"' env RMIG_CONF_HOST=$RMIG_VM_IP '"$CONF"' $s --serve $RMIG_VM_IP:$p >$RMIG_VM_RUN/serve-$p.out 2>&1 &
  p=$((p + 1)); done
for pid in $(jobs -p); do wait $pid || st=1; done
cat $RMIG_VM_RUN/serve-*.out; echo "SOFTROCE-SERVE vm=$RMIG_VM status=$st"; exit $st'
# The link first (ARP through the QEMU socket link): under load the first
# address resolution of rdma_cm otherwise ran into its 10 s deadline.
client=$GUEST_FN'ping -c 1 -W 10 $RMIG_PEER_IP >/dev/null || echo "softroce-ci: $RMIG_PEER_IP does not answer ping"
st=0; p=7471; for s in '"$SPECS"'; do
  i=0; until grep -q "listening on" $RMIG_VM_RUN/serve-$p.out 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "peer for $s never listened"; exit 1; }; sleep 0.1; done
  gconf $s --peer $RMIG_PEER_IP:$p || st=1; p=$((p + 1)); done; exit $st'
rc2=0
bash scripts/softroce-vm.sh -q --timeout "$TIMEOUT" pair "$serve" "$client" >"$BUILD/softroce/ci-pair.log" 2>&1 || rc2=$?
T3=$(date +%s)

show() { # the result lines (softroce-vm -q prints the whole console on failure)
  local log=$1 rc=$2
  if ((rc)); then sed 's/^/  | /' "$log"; else grep -aE 'SOFTROCE-|softroce-vm:' "$log"; fi
}
echo "softroce-ci: one VM (verbs, ofi/verbs on rxe0; authentication; migration tests over verbs):"
show "$BUILD/softroce/ci-one.log" "$rc1"
echo "softroce-ci: two VMs (cross-host, 10.0.0.1 serves, 10.0.0.2 connects):"
show "$BUILD/softroce/ci-pair.log" "$rc2"
echo "softroce-ci: VM stage took $((T3 - T0)) s (prepare $((T1 - T0)) s, one VM $((T2 - T1)) s, two VMs $((T3 - T2)) s)"
((rc1 == 0)) || fail "the conformance suite, the migration or the authentication tests failed in the Soft-RoCE VM (status $rc1; log $BUILD/softroce/ci-one.log)"
((rc2 == 0)) || fail "the cross-host conformance run between two VMs failed (status $rc2; log $BUILD/softroce/ci-pair.log)"
echo "softroce-ci: passed"
