#!/usr/bin/env bash
# The fault matrix: for each backend x phase x fault, run `rdmamig serve` and
# `rdmamig migrate` (a small idle guest) on loopback, inject the fault at
# exactly that phase and check the outcome.  Prints a table (fault x phase x
# backend -> runs as expected / runs) and exits 1 on any unexpected outcome.
#
#   scripts/fault-matrix.sh [-r R] [-b "SPEC ..."] [-p PHASES] [-f FAULTS]
#                           [-t TIMEOUT_MS] [-g GUEST] [-H HOST] [-o TABLE.md]
#                           [-P DIR]
#   scripts/fault-matrix.sh -A DIR -H HOST      (the destination's agent)
#
# -H: the address both ends use (default 127.0.0.1; in the Soft-RoCE VM
# rxe0's, since RoCE has no loopback route: scripts/fault-matrix-vm.sh runs
# this script there over verbs with the device faults below).
#
# Two hosts (-P DIR, -A DIR; scripts/fault-matrix-vm.sh --pair runs them in
# two Soft-RoCE VMs): with -P this script runs the source only, and asks an
# agent on the other host (-A, same DIR, a folder both see) to start each
# destination and to inject the faults on its side.  One folder per run,
# DIR/N: the source side writes req ("BACKEND TIMEOUT_MS HARD_S"); the agent
# starts `rdmamig serve` on its -H and writes addr; the source side starts
# the migration, and once it is paused writes fault (the fault's name); the
# agent injects a destination-side fault and writes applied, and when its
# destination has exited writes its outputs and done ("STATUS MS": MS from
# the moment the agent saw the fault to the destination's exit: the hosts'
# clocks differ).  DIR/end stops the agent.  Faults on one side only:
#   link-down-src  `ip link set eth0 down` on the source's host only
#   link-down-dst  the same on the destination's host only
# (each side undoes its own as link-down does), and kill-dst, kill-src,
# cancel, stop-dst as above, the destination's done by the agent.
#
# Phases: setup (the destination said yes), round (pre-copy round 0 ended),
# stop-and-copy (vCPUs paused, before the final round), commit (final round
# and device state sent, before finish).  The source stops itself there
# through the test hook RMIG_TEST_PAUSE_AT (host/testhook.c), the script
# injects the fault, then resumes it with SIGCONT.
#
# Faults:
#   kill-dst   kill -9 the destination
#   kill-src   kill -9 the source
#   drop-link  reset every TCP connection of the source (ss -K: the kernel
#              aborts the socket here and sends a RST to the peer).  tcp: the
#              migration's connection; ofi/tcp: the bootstrap (liveness)
#              connection and libfabric's data connections; ofi/shm: there is
#              no network link -- pages move through shared memory -- so the
#              link that can drop is the bootstrap connection the backend
#              uses as its liveness channel: both ends must notice and stop.
#   cancel     SIGINT to `rdmamig migrate` (cancel from the command line),
#              aimed at its main thread (tgkill) so that the handler has run
#              when the source resumes: a process-wide SIGINT may be taken by
#              another thread just after the main thread passed the phase's
#              check, and then lands at the next check -- or, at commit,
#              after the last one, and the migration completes, as it should
#   stop-dst   SIGSTOP the destination (a hung peer): the source must give up
#              by its deadline; the script kills the destination afterwards
#   rdma-link-delete
#              (RDMA device only) `rdma link delete rxe0` under both ends: the
#              device goes away (DEVICE_REMOVAL); the script adds it again
#   link-down  (RDMA device only) `ip link set eth0 down` under rxe0: the
#              port goes down; the script brings it up again
#
# Expected every time (all phases are before commit): no process hangs
# (each runs under timeout(1); each survivor ends within 2 x timeout + 3 s
# of the fault); the source (if alive) fails, says its guest keeps running
# and that its memory is intact (JSON source_intact), holds no registered
# region; the destination (if alive) exits 1, committed nothing, holds no
# registered region; each survivor's error names what happened; no libfabric
# shm region of a killed process is left in /dev/shm once the survivor exits.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ARGS="$*"
R=1
BACKENDS=""  # default: every backend that runs here (rdmamig backends --available)
PHASES="setup round stop-and-copy commit"
FAULTS="kill-dst kill-src drop-link cancel stop-dst"
TMO=3000
GUEST=32M
OUT=""
HOST=127.0.0.1
PAIR=""    # -P: the folder shared with the destination's agent
AGENT=""   # -A: be that agent
PYTHON=${PYTHON:-python3}
while getopts "r:b:p:f:t:g:o:H:P:A:h" opt; do
  case $opt in
    r) R=$OPTARG ;;
    b) BACKENDS=$OPTARG ;;
    p) PHASES=$OPTARG ;;
    f) FAULTS=$OPTARG ;;
    t) TMO=$OPTARG ;;
    g) GUEST=$OPTARG ;;
    o) OUT=$OPTARG ;;
    H) HOST=$OPTARG ;;
    P) PAIR=$OPTARG ;;
    A) AGENT=$OPTARG ;;
    *) sed -n '2,70p' "$0"; exit 2 ;;
  esac
done
[ -z "$AGENT" ] || FAULTS=""
RDMAMIG=$BUILD/tools/rdmamig
[ -x "$RDMAMIG" ] || { echo "fault-matrix: build first ($RDMAMIG missing)" >&2; exit 2; }
[ -n "$BACKENDS" ] || BACKENDS=$("$RDMAMIG" backends --available | tr '\n' ' ')
case " $FAULTS " in *" drop-link "*)
  command -v ss >/dev/null || { echo "fault-matrix: drop-link needs ss (iproute2)" >&2; exit 2; } ;;
esac
# The device faults act on rxe0 over eth0 (scripts/softroce-vm.sh sets it up).
RXE=${RMIG_FAULT_RDMA_DEV:-rxe0} NETDEV=${RMIG_FAULT_NETDEV:-eth0}
if [ -n "$PAIR" ]; then
  for f in $FAULTS; do case $f in kill-dst|kill-src|cancel|stop-dst|link-down-src|link-down-dst) ;;
    *) echo "fault-matrix: -P runs kill-dst kill-src cancel stop-dst link-down-src link-down-dst, not $f" >&2; exit 2 ;;
  esac; done
else
  for f in $FAULTS; do case $f in link-down-src|link-down-dst)
    echo "fault-matrix: $f needs two hosts (-P; scripts/fault-matrix-vm.sh --pair)" >&2; exit 2 ;;
  esac; done
fi
case " $FAULTS " in *" rdma-link-delete "*|*" link-down"*)
  [ -e "/sys/class/infiniband/$RXE" ] ||
    { echo "fault-matrix: rdma-link-delete and link-down need the RDMA device $RXE (run them in the Soft-RoCE VM: scripts/fault-matrix-vm.sh)" >&2; exit 2; } ;;
esac
HARD=$((TMO * 6 / 1000 + 20))          # timeout(1) on each process, seconds
LIMIT=$((TMO * 2 + 3000))              # ms from the fault to each survivor's exit
W=$(mktemp -d /tmp/fault-matrix.XXXXXX)
trap 'rm -rf "$W"; [ -z "$PAIR" ] || : >"$PAIR/end"' EXIT
# Both ends authenticate with a pre-shared key (docs/security.md).
KEY=$W/key; head -c 32 /dev/urandom >"$KEY"; chmod 600 "$KEY"
[ -z "$PAIR" ] || { mkdir -p "$PAIR" && cp "$KEY" "$PAIR/key"; } || exit 2

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
# The rdmamig process under a timeout(1) pid (from /proc: the Soft-RoCE VM
# has no pgrep).  coreutils' timeout forks the command; busybox's (the VM's)
# execs it in its own pid and watches from a child.
child_of() {
  local s p c st pp rest
  for _ in $(seq 100); do
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = rdmamig ] && { echo "$1"; return; }
    for s in /proc/[0-9]*/stat; do
      read -r p c st pp rest <"$s" 2>/dev/null || continue
      [ "$pp" = "$1" ] && { echo "$p"; return; }
    done
    sleep 0.02
  done
}
# Fields of the last JSON line of the source's (S_*) and destination's (D_*)
# output, as shell assignments: one python start per run, not one per field.
jfields() {
  "$PYTHON" - "$1" "$2" <<'PY'
import json, shlex, sys
for pre, path in (("S", sys.argv[1]), ("D", sys.argv[2])):
    try:
        d = json.loads(open(path).read().strip().splitlines()[-1])
    except Exception:
        d = {}
    for k in ("committed", "guest_running_here", "source_intact", "mrs_live", "error"):
        v = d.get(k, "<no json>")
        v = str(v).lower() if isinstance(v, bool) or v is None else str(v)
        print(f"{pre}_{k}={shlex.quote(v)}")
PY
}

# SIGINT to the main thread of pid (tgkill: no shell command sends one).
sigint_main() {
  local nr
  case $(uname -m) in x86_64) nr=234 ;; aarch64) nr=131 ;; *) kill -INT "$1"; return ;; esac
  "$PYTHON" -c 'import ctypes,sys
p=int(sys.argv[1]); sys.exit(ctypes.CDLL(None).syscall(int(sys.argv[2]), p, p, 2) != 0)' "$1" "$nr"
}

# Reset every established TCP connection of pid (both directions).
drop_links() {
  local pid=$1 n=0 l p
  while read -r l p; do
    ss -K -tnH state established "( src $l and dst $p ) or ( src $p and dst $l )" >/dev/null 2>&1 && n=$((n + 1))
  done < <(ss -tnpH state established | awk -v pid="pid=$pid," 'index($0, pid) { print $3, $4 }')
  echo "$n"
}

# iproute2's ip (busybox's applet comes first on the VM's PATH).
ipr() { if [ -x /usr/sbin/ip ]; then /usr/sbin/ip "$@"; else ip "$@"; fi; }
# The port active and the RoCE GID of $HOST back in its table: after a link
# down and up the GIDs return a moment after the port does, and rdma_cm
# cannot resolve the address until they have.
host_gid() { local IFS=.; set -- $HOST; printf '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' "$1" "$2" "$3" "$4"; }
dev_active() {
  grep -q ACTIVE "/sys/class/infiniband/$RXE/ports/1/state" 2>/dev/null &&
    grep -qx "$(host_gid)" /sys/class/infiniband/"$RXE"/ports/1/gids/* 2>/dev/null
}
# `rdma link delete` unregisters the device client by client: rdma_cm first
# (each connection gets DEVICE_REMOVAL), then uverbs, which waits for every
# process to close the device.  Once it waits there the removal has reached
# both ends: resume the source then, not before (it could finish first).
wait_removal_begun() {
  local i
  for i in $(seq 200); do
    kill -0 "$1" 2>/dev/null || return 0
    grep -q ib_uverbs_remove_one "/proc/$1/stack" 2>/dev/null && return 0
    sleep 0.025
  done
  echo "rdma link delete did not reach the device's users within 5 s" >"$2"
}
# After a device fault: a fresh rxe0 with its port active for the next run.
# rdma-link-delete: the `rdma link delete` started in the background (pid
# $2) returns once every user of the device has let go.  link-down: the
# link comes back up, and the device is made anew, because rxe in Linux 6.1
# takes no new connection once a link that went down under a live
# connection is back (every later rdma_cm connect times out; seen 6 of 6
# tries over 30 s; docs/faults.md).
restore_device() {
  local fault=$1 pid=$2 i
  if [ "$fault" = rdma-link-delete ]; then
    for i in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && { echo "rdma link delete still waiting 10 s after both ends exited"; return 1; }
  else
    ipr link set "$NETDEV" up || { echo "ip link set $NETDEV up failed"; return 1; }
    rdma link delete "$RXE" || { echo "rdma link delete $RXE failed after the link came back"; return 1; }
  fi
  [ -e "/sys/class/infiniband/$RXE" ] && { echo "$RXE still there after rdma link delete"; return 1; }
  rdma link add "$RXE" type rxe netdev "$NETDEV" || { echo "rdma link add $RXE failed"; return 1; }
  for i in $(seq 300); do dev_active && break; sleep 0.05; done
  dev_active || { echo "$RXE port not active 15 s after the fault was undone"; return 1; }
  peer_reachable
}
# Two hosts: the other host answers again (ARP) once the link is back.
peer_reachable() {
  local i
  [ -n "${RMIG_PEER_IP:-}" ] || return 0
  for i in $(seq 20); do ping -c 1 -W 1 "$RMIG_PEER_IP" >/dev/null 2>&1 && return 0; done
  echo "the peer $RMIG_PEER_IP does not answer ping 20 s after the fault was undone: $(ipr neigh show 2>&1 | tr '\n' ' ')"; return 1
}

# Expected error of a survivor, as an extended regex, per fault (and backend).
expect_re() {
  case $1 in
    # libfabric does not pass DEVICE_REMOVAL on: an ofi/verbs end that has
    # nothing in flight when the device goes learns it from its deadline.
    rdma-link-delete) case $2 in
        ofi/*) echo 'device|removed|closed|reset|lost|flushed|within' ;;
        *) echo 'device|removed|closed|reset|lost|flushed' ;;
      esac ;;
    kill-dst|kill-src) echo 'closed|reset|exited|died|gone|lost|peer' ;;
    drop-link) echo 'reset|abort|closed|lost|peer' ;;
    cancel) echo 'cancel' ;;
    stop-dst) echo 'time|within|respond|stopped|progress' ;;
    link-down*) echo 'retry|time|within|lost|reset|closed|link|port|flushed' ;;
  esac
}

# RMIG_FAULT_KEEP=DIR keeps the outputs of each unexpected run there.
keep_run() {
  [ -n "${RMIG_FAULT_KEEP:-}" ] || return 0
  mkdir -p "$RMIG_FAULT_KEEP" && cp -r "$1" "$RMIG_FAULT_KEEP/${2//\//-}-$(now_ms)"
}

# Files shared with the agent (-P, -A): written whole, then renamed into
# place, so the other side never reads half of one.
put() { printf '%s\n' "$2" >"$1.tmp" && mv -f "$1.tmp" "$1"; }
wait_file() {
  local i
  for i in $(seq $(($2 * 20))); do [ -f "$1" ] && return 0; sleep 0.05; done
  return 1
}
next_run() { local n; n=$(($(cat "$W/runs" 2>/dev/null || echo 0) + 1)); echo "$n" >"$W/runs"; echo "$n"; }

# The agent (-A): one destination for the run in folder $1 (see the header).
agent_run() {
  local rd=$1 d=$W/run be dtmo hard addr="" i dt dp fault="" t0 t1 rc r
  read -r be dtmo hard <"$rd/req"
  rm -rf "$d"; mkdir -p "$d"
  cp "$AGENT/key" "$W/key" && chmod 600 "$W/key"
  timeout -k 2 "$hard" "$RDMAMIG" serve --listen "$HOST:0" --backend "$be" --timeout-ms "$dtmo" --key-file "$W/key" \
    --json >"$d/d.json" 2>"$d/d.err" & dt=$!
  for i in $(seq 500); do
    addr=$(sed -n 's/.*listening on //p' "$d/d.err" 2>/dev/null | head -1); [ -n "$addr" ] && break
    kill -0 "$dt" 2>/dev/null || break; sleep 0.02
  done
  dp=$(child_of "$dt")
  [ -n "$addr" ] || { kill -9 "$dt" 2>/dev/null; cp "$d/d.err" "$rd/"; }
  put "$rd/addr" "$addr"
  # The source side names the fault once its source is paused (or its
  # source's end reaches this destination first: kill-src).
  for i in $(seq $((hard * 20))); do
    [ -f "$rd/fault" ] && { read -r fault <"$rd/fault"; break; }
    kill -0 "$dt" 2>/dev/null || break; sleep 0.05
  done
  t0=$(now_ms)
  case $fault in
    kill-dst|abort) kill -9 "$dp" ;;
    stop-dst) kill -STOP "$dp" ;;
    link-down-dst) ipr link set "$NETDEV" down ;;
  esac
  put "$rd/applied" "$fault"
  if [ "$fault" = stop-dst ]; then # hung until the source side is done
    wait_file "$rd/release" $((hard + 30))
    kill -9 "$dp" 2>/dev/null; kill -CONT "$dp" 2>/dev/null; rm -f /dev/shm/"$dp":*
  fi
  wait "$dt" 2>/dev/null; rc=$?; t1=$(now_ms)
  if [ "$fault" = link-down-dst ]; then
    r=$(restore_device link-down "") || echo "destination's host: $r" >"$rd/note"
  fi
  cp "$d/d.json" "$d/d.err" "$rd/" 2>/dev/null
  put "$rd/done" "$rc $((t1 - t0))"
}

agent_main() {
  local n=1
  mkdir -p "$AGENT" && put "$AGENT/ready" "$HOST"
  echo "fault-matrix: agent for the destination on $HOST, runs in $AGENT"
  while [ ! -f "$AGENT/end" ] || [ -f "$AGENT/$n/req" ]; do
    if [ -f "$AGENT/$n/req" ]; then agent_run "$AGENT/$n"; n=$((n + 1)); else sleep 0.05; fi
  done
  echo "fault-matrix: agent done, $((n - 1)) runs"
}

# One run; prints "ok" or "FAIL: why" on the first line, then the errors.
run_one() {
  local be=$1 ph=$2 fault=$3 d=$W/run
  rm -rf "$d"; mkdir -p "$d"
  # The cancel run checks that the source's CANCEL reaches a destination
  # still waiting for it.  Between the source's pause and its SIGINT the
  # harness spends seconds in an emulated VM (polling /proc, starting
  # python for tgkill), and a destination with the source's deadline could
  # give up first ("the peer sent nothing"): it gets three times as long.
  local dtmo=$TMO; [ "$fault" = cancel ] && dtmo=$((TMO * 3))
  local dt="" dp="" addr="" i rd=""
  if [ -n "$PAIR" ]; then # the agent on the other host starts it
    rd=$PAIR/$(next_run)
    mkdir -p "$rd.tmp" && echo "$be $dtmo $HARD" >"$rd.tmp/req" && mv "$rd.tmp" "$rd"
    wait_file "$rd/addr" 60 && addr=$(cat "$rd/addr")
    [ -n "$addr" ] || { put "$rd/fault" abort; echo "FAIL: the agent's serve did not listen: $(head -c 300 "$rd/d.err" 2>/dev/null)"; return; }
  else
    timeout -k 2 "$HARD" "$RDMAMIG" serve --listen "$HOST:0" --backend "$be" --timeout-ms "$dtmo" --key-file "$KEY" \
      --json >"$d/d.json" 2>"$d/d.err" & dt=$!
    for i in $(seq 200); do
      addr=$(sed -n 's/.*listening on //p' "$d/d.err" 2>/dev/null | head -1); [ -n "$addr" ] && break; sleep 0.02
    done
    dp=$(child_of "$dt")
    [ -n "$addr" ] || { kill -9 "$dt" 2>/dev/null; wait "$dt" 2>/dev/null; echo "FAIL: serve did not listen: $(head -c 300 "$d/d.err")"; return; }
  fi
  RMIG_TEST_PAUSE_AT=$ph timeout -k 2 "$HARD" "$RDMAMIG" migrate --to "$addr" --backend "$be" --key-file "$KEY" \
    --guest-size "$GUEST" --timeout-ms "$TMO" --json >"$d/s.json" 2>"$d/s.err" & local st=$!
  local sp="" paused=""
  for i in $(seq 500); do
    sp=$(sed -n 's/.*test hook: pid \([0-9]*\) paused at.*/\1/p' "$d/s.err" 2>/dev/null | head -1)
    if [ -n "$sp" ] && [ "$(awk '{print $3}' "/proc/$sp/stat" 2>/dev/null)" = T ]; then paused=1; break; fi
    kill -0 "$st" 2>/dev/null || break
    sleep 0.02
  done
  if [ -z "$paused" ]; then
    kill -9 "$st" $dt 2>/dev/null; wait "$st" $dt 2>/dev/null
    [ -z "$PAIR" ] || { put "$rd/fault" abort; wait_file "$rd/done" 60; }
    keep_run "$d" "$fault-$ph-$be"
    echo "FAIL: the source never paused at $ph: $(grep -v '^round' "$d/s.err" | head -c 300)"; return
  fi
  local killed="" t0; t0=$(now_ms)
  [ -z "$PAIR" ] || put "$rd/fault" "$fault"
  case $fault in
    kill-dst|stop-dst|link-down-dst)
      if [ -n "$PAIR" ]; then # the agent injects it, then says so
        wait_file "$rd/applied" 30 || echo "the agent did not inject $fault within 30 s" >"$d/note"
        t0=$(now_ms)
      elif [ "$fault" = kill-dst ]; then kill -9 "$dp"; killed=$dp
      else kill -STOP "$dp"; fi
      kill -CONT "$sp" ;;
    kill-src) kill -9 "$sp"; killed=$sp ;;
    drop-link) local n; n=$(drop_links "$sp"); [ "$n" -gt 0 ] || echo "no connection to drop" >"$d/note"; kill -CONT "$sp" ;;
    cancel) sigint_main "$sp"; kill -CONT "$sp" ;;
    rdma-link-delete) rdma link delete "$RXE" >"$d/link.out" 2>&1 & local lp=$!
      wait_removal_begun "$lp" "$d/note"; kill -CONT "$sp" ;;
    link-down|link-down-src) ipr link set "$NETDEV" down; kill -CONT "$sp" ;;
  esac
  local src_rc dst_rc src_ms dst_ms
  wait "$st"; src_rc=$?; src_ms=$(( $(now_ms) - t0 ))
  if [ -n "$PAIR" ]; then # the agent's destination: its status, time and outputs
    [ "$fault" = stop-dst ] && put "$rd/release" 1
    dst_rc=137 dst_ms=0
    if wait_file "$rd/done" $((HARD + 30)); then
      read -r dst_rc dst_ms <"$rd/done"
      cp "$rd/d.json" "$rd/d.err" "$d/" 2>/dev/null
      [ -f "$rd/note" ] && cat "$rd/note" >>"$d/note"
    else
      echo "the agent reported no end of the destination within $((HARD + 30)) s" >>"$d/note"
    fi
  else
    if [ "$fault" = stop-dst ]; then # the hung destination: the script ends it
      kill -9 "$dp" 2>/dev/null; kill -CONT "$dp" 2>/dev/null; rm -f /dev/shm/"$dp":*
    fi
    wait "$dt"; dst_rc=$?; dst_ms=$(( $(now_ms) - t0 ))
  fi
  local why=() re; re=$(expect_re "$fault" "$be")
  [ -f "$d/note" ] && why+=("$(cat "$d/note")")
  case $fault in rdma-link-delete|link-down|link-down-src)
    local r; r=$(restore_device "$fault" "${lp:-}") || why+=("$r") ;;
  esac
  local S_committed S_guest_running_here S_source_intact S_mrs_live S_error
  local D_committed D_guest_running_here D_source_intact D_mrs_live D_error
  eval "$(jfields "$d/s.json" "$d/d.json")"
  local serr=$S_error derr=$D_error
  if [ "$fault" != kill-src ]; then
    [ "$src_rc" = 124 ] || [ "$src_rc" = 137 ] && why+=("source hung (timeout)")
    [ "$src_rc" = 1 ] || why+=("source exit $src_rc")
    [ "$src_ms" -le "$LIMIT" ] || why+=("source took ${src_ms} ms")
    [ "$S_committed" = false ] || why+=("source committed")
    [ "$S_guest_running_here" = true ] || why+=("source guest not running")
    [ "$S_source_intact" = true ] || why+=("source memory not intact")
    [ "$S_mrs_live" = 0 ] || why+=("source holds registered regions")
    grep -qiE "$re" <<<"$serr" || why+=("source error does not name it")
  else
    serr="(killed)"
  fi
  if [ "$fault" != kill-dst ] && [ "$fault" != stop-dst ]; then
    [ "$dst_rc" = 124 ] || [ "$dst_rc" = 137 ] && why+=("destination hung (timeout)")
    [ "$dst_rc" = 1 ] || why+=("destination exit $dst_rc")
    [ "$dst_ms" -le "$LIMIT" ] || why+=("destination took ${dst_ms} ms")
    [ "$D_committed" = false ] || why+=("destination committed")
    [ "$D_mrs_live" = 0 ] || why+=("destination holds registered regions")
    grep -qiE "$re" <<<"$derr" || why+=("destination error does not name it")
  else
    derr="(killed)"; [ "$fault" = stop-dst ] && derr="(stopped, then killed)"
  fi
  if [ -n "$killed" ] && compgen -G "/dev/shm/$killed:*" >/dev/null; then
    why+=("shm region of the killed pid $killed left in /dev/shm")
    rm -f /dev/shm/"$killed":*
  fi
  local ms=$src_ms; [ "$fault" = kill-src ] && ms=$dst_ms
  case $fault in drop-link|cancel|link-down-*) [ "$dst_ms" -gt "$ms" ] && ms=$dst_ms ;; esac
  if ((${#why[@]})); then
    keep_run "$d" "$fault-$ph-$be"
    local IFS=';'; echo "FAIL: ${why[*]}"
  else
    echo "ok $ms"
  fi
  echo "src: $serr"
  echo "dst: $derr"
}

[ -z "$AGENT" ] || { agent_main; exit 0; }
if [ -n "$PAIR" ]; then
  wait_file "$PAIR/ready" 300 || { echo "fault-matrix: no agent in $PAIR within 300 s (run fault-matrix.sh -A $PAIR on the destination's host)" >&2; exit 2; }
  echo "fault-matrix: the destinations run on $(cat "$PAIR/ready") (agent in $PAIR)"
fi
echo "fault-matrix: backends [$BACKENDS], R=$R, guest $GUEST idle, --timeout-ms $TMO (limit ${LIMIT} ms from fault to exit)"
declare -A OK N MAXMS SAID
bad=0
t_start=$(date +%s)
for be in $BACKENDS; do
  for fault in $FAULTS; do
    for ph in $PHASES; do
      k="$fault|$ph|$be"; OK[$k]=0; N[$k]=0; MAXMS[$k]=0
      for ((i = 0; i < R; i++)); do
        out=$(run_one "$be" "$ph" "$fault")
        first=$(head -1 <<<"$out")
        N[$k]=$((N[$k] + 1))
        if [[ $first == ok* ]]; then
          OK[$k]=$((OK[$k] + 1)); ms=${first#ok }
          ((ms > MAXMS[$k])) && MAXMS[$k]=$ms
        else
          bad=$((bad + 1))
          echo "  UNEXPECTED $fault at $ph over $be (run $((i + 1))): ${first#FAIL: }" >&2
          sed -n '2,3p' <<<"$out" | sed 's/^/    /' >&2
        fi
        [ -n "${SAID[$fault|$be]:-}" ] || SAID[$fault|$be]=$(sed -n '2,3p' <<<"$out")
      done
    done
  done
done
elapsed=$(( $(date +%s) - t_start ))

table() {
  echo "| fault | phase | $(for be in $BACKENDS; do printf '%s | ' "$be"; done)"
  echo "| --- | --- | $(for be in $BACKENDS; do printf -- '--- | '; done)"
  for fault in $FAULTS; do
    for ph in $PHASES; do
      printf '| %s | %s | ' "$fault" "$ph"
      for be in $BACKENDS; do
        k="$fault|$ph|$be"
        printf '%s/%s ok, max %s ms | ' "${OK[$k]}" "${N[$k]}" "${MAXMS[$k]}"
      done
      echo
    done
  done
  echo
  echo "What the surviving ends said (first run of each fault x backend):"
  echo
  for fault in $FAULTS; do
    for be in $BACKENDS; do
      echo "- $fault, $be:"
      sed 's/^/  - /' <<<"${SAID[$fault|$be]}"
    done
  done
}
echo
echo "cells: N/R runs as expected; max ms: slowest time from the fault to the last survivor's exit"
table
total=0; for k in "${!N[@]}"; do total=$((total + N[$k])); done
echo
echo "fault-matrix: $((total - bad))/$total runs as expected, $bad unexpected, ${elapsed} s"
if [ -n "$OUT" ]; then
  { echo "Command: \`scripts/fault-matrix.sh $ARGS\` (guest $GUEST idle, --timeout-ms $TMO), $((total - bad))/$total runs as expected, ${elapsed} s."
    echo; table; } >"$OUT"
fi
[ "$bad" = 0 ]
