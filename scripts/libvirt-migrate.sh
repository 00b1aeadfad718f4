#!/usr/bin/env bash
# docs/libvirt.md's recipe end to end, with libvirt itself: `virsh migrate
# --live --p2p --parallel --migrateuri unix:///...` moves the test guest
# (guest/, dirtying memory under KVM, idle under TCG) from one libvirtd to
# another through rdmamig proxy-out/proxy-in.  The two "hosts" are two
# libvirtd on this machine, each in its own mount and UTS namespace (its own
# /etc/libvirt with its own host_uuid, /run/libvirt, /var/lib/libvirt,
# hostname): libvirt refuses a destination with its own host UUID, and the
# unix: migration socket has the same path on both hosts, which is proxy-out's
# socket in the source's namespace and the destination QEMU's in the other.
#   1. migrate A -> B with N parallel connections: the guest runs on B, its
#      heartbeat advances, its own page check finds 0 wrong pages;
#   2. migrate B -> A slowly (--bandwidth 4) through a second proxy pair and
#      kill proxy-in mid-migration: virsh reports the failure and the guest
#      runs on at B with 0 wrong pages;
#   3. the same migration again, proxy-in restarted: it completes.
#
#   scripts/libvirt-migrate.sh [--build DIR] [--backend SPEC] [--parallel N]
#
# Needs root, libvirt-daemon-system and libvirt-clients (Debian: apt-get
# install libvirt-daemon-system libvirt-clients) and unshare; exits 77 (a
# skip) where they are missing.  Not in CI: libvirt is not among the
# project's dependencies (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BACKEND=tcp
PAR=2
while (($#)); do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --backend) BACKEND=$2; shift 2 ;;
    --parallel) PAR=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--backend SPEC] [--parallel N]" >&2; exit 2 ;;
  esac
done
TAG=libvirt-migrate
skip() { echo "$TAG: SKIP: $*" >&2; exit 77; }
fail() { echo "$TAG: FAILED: $*" >&2; exit 1; }
log() { echo "$TAG: $*"; }
((EUID == 0)) || skip "needs root (two libvirtd in namespaces of their own)"
for c in libvirtd virsh unshare; do
  command -v $c >/dev/null || skip "$c is missing (apt-get install libvirt-daemon-system libvirt-clients)"
done
RDMAMIG=$(readlink -f "$BUILD/tools/rdmamig")
GUEST_BIN=$(readlink -f "$BUILD/guest/rdmamig-guest.bin")
[ -x "$RDMAMIG" ] && [ -e "$GUEST_BIN" ] || fail "build first (bash scripts/setup.sh)"
QEMU_BIN=$(command -v qemu-system-x86_64) || skip "qemu-system-x86_64 is not installed"
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then DOMTYPE=kvm RATE=5000; else DOMTYPE=qemu RATE=0; fi

W=$(mktemp -d /tmp/rdmamig-libvirt.XXXXXX)
PIDS=()
cleanup() {
  for u in "${URI[@]:-}"; do [ -n "$u" ] && virsh -q -c "$u" destroy web1 >/dev/null 2>&1 || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
declare -A URI
for X in A B; do
  d=$W/$X
  mkdir -p "$d/run" "$d/lib/qemu/rdmamig" "$d/log" "$d/cache"
  cp -a /etc/libvirt "$d/etc"
  cat >>"$d/etc/libvirtd.conf" <<EOF
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
auth_unix_ro = "none"
auth_unix_rw = "none"
EOF
  # Root QEMU, no confinement, no virtlogd: a test bench, not a host set-up.
  cat >>"$d/etc/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
stdio_handler = "file"
EOF
  unshare -m -u --propagation private sh -c "
    hostname rdmamig-$X
    for m in etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt log:/var/log/libvirt cache:/var/cache/libvirt; do
      mount --bind $d/\${m%%:*} \${m#*:} || exit 1
    done
    exec libvirtd -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid" >"$d/libvirtd.log" 2>&1 &
  PIDS+=($!)
  URI[$X]="qemu:///system?socket=$d/run/libvirt-sock"
done
for X in A B; do
  for _ in $(seq 100); do virsh -q -c "${URI[$X]}" version >/dev/null 2>&1 && break; sleep 0.2; done
  virsh -q -c "${URI[$X]}" version >/dev/null 2>&1 ||
    fail "libvirtd $X did not start: $(tail -3 "$W/$X/libvirtd.log")"
done
log "two libvirtd ($(libvirtd --version | awk '{print $NF}')) up: hosts rdmamig-A and rdmamig-B, host UUIDs differ; QEMU $("$QEMU_BIN" --version | head -1 | awk '{print $4}'), domain type $DOMTYPE, guest dirtying $RATE pages/s"

head -c 32 /dev/urandom >"$W/key"
chmod 600 "$W/key"
SOCK=/var/lib/libvirt/qemu/rdmamig/web1.sock # the same path on both hosts
# proxy FROM TO PORT: proxy-in (host TO's namespace sees its socket at $SOCK)
# and proxy-out (host FROM's); sets PIN and POUT.
proxy() {
  local from=$1 to=$2 port=$3
  rm -f "$W/$from/lib/qemu/rdmamig/web1.sock"
  "$RDMAMIG" proxy-in --listen 127.0.0.1:$port --backend "$BACKEND" --key-file "$W/key" -v \
    --to-unix "$W/$to/lib/qemu/rdmamig/web1.sock=web1" >>"$W/proxy-in-$to.log" 2>&1 &
  PIN=$!
  "$RDMAMIG" proxy-out --to 127.0.0.1:$port --backend "$BACKEND" --key-file "$W/key" -v \
    --listen-unix "$W/$from/lib/qemu/rdmamig/web1.sock=web1" >>"$W/proxy-out-$from.log" 2>&1 &
  POUT=$!
  PIDS+=($PIN $POUT)
  for _ in $(seq 300); do [ -S "$W/$from/lib/qemu/rdmamig/web1.sock" ] && return 0; sleep 0.1; done
  fail "proxy-out did not start: $(cat "$W/proxy-out-$from.log")"
}
domxml() { # serial socket path
  cat <<EOF
<domain type='$DOMTYPE'>
  <name>web1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><loader type='rom'>$GUEST_BIN</loader></os>
  <sysinfo type='fwcfg'><entry name='opt/rdmamig/cmdline'>mem=64 rate=$RATE hb=100</entry></sysinfo>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='allow'>qemu64</model><feature policy='disable' name='cx16'/>
  </cpu>
  <devices>
    <emulator>$QEMU_BIN</emulator>
    <controller type='usb' model='none'/>
    <serial type='unix'><source mode='bind' path='$1'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}
# The guest judged by itself on host X's serial socket: heartbeat, page check.
judge() {
  python3 - "$W/ser-$1.sock" <<'EOF'
import re, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(0.2)
def read(t, until=None):
    buf, end = b"", time.time() + t
    while time.time() < end and not (until and re.search(until, buf.decode(errors="replace"))):
        try:
            buf += s.recv(65536)
        except socket.timeout:
            pass
    return buf.decode(errors="replace")
hb = [int(x) for x in re.findall(r"HB n=(\d+)", read(1.5))]
s.sendall(b"v")
m = re.search(r"CHECK n=\d+ bad=(\d+) pages=(\d+)\s", read(30, r"CHECK n=\d+ bad=\d+ pages=\d+\s"))
if len(hb) < 2 or hb[-1] <= hb[0] or not m:
    print(f"heartbeat {hb[:1]}..{hb[-1:]}, page check {'missing' if not m else m.group(0)}")
    sys.exit(1)
print(f"heartbeat {hb[0]}->{hb[-1]}, {m.group(1)} wrong pages of {m.group(2)}")
sys.exit(1 if int(m.group(1)) else 0)
EOF
}
running_on() { virsh -q -c "${URI[$1]}" domstate web1 2>/dev/null | grep -q running; }
# migrate FROM TO [virsh options]: virsh's exit status
migrate() {
  local from=$1 to=$2
  shift 2
  virsh -c "${URI[$from]}" dumpxml --migratable web1 | sed "s|$W/ser-$from.sock|$W/ser-$to.sock|" >"$W/to-$to.xml"
  virsh -q -c "${URI[$from]}" migrate --live --p2p --parallel --parallel-connections "$PAR" "$@" \
    --migrateuri "unix://$SOCK" --xml "$W/to-$to.xml" web1 "qemu+unix:///system?socket=$W/$to/run/libvirt-sock"
}

domxml "$W/ser-A.sock" >"$W/web1.xml"
virsh -q -c "${URI[A]}" create "$W/web1.xml" >/dev/null || fail "virsh create on A failed"
for _ in $(seq 100); do [ -S "$W/ser-A.sock" ] && break; sleep 0.1; done
out=$(judge A) || fail "the guest on A before migrating: $out"
log "guest started on A by virsh create: $out"

# 1. A -> B
proxy A B 4445
t0=$(date +%s%N)
migrate A B || fail "virsh migrate A -> B failed; proxies: $(tail -2 "$W"/proxy-*.log | tr '\n' ' ')"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
running_on B && ! running_on A || fail "after virsh migrate the guest is not running on B alone"
out=$(judge B) || fail "the guest on B after migrating: $out"
carried=$(grep -c ' bytes in ' "$W/proxy-out-A.log" || true)
log "virsh migrate --live --p2p --parallel --parallel-connections $PAR --migrateuri unix://$SOCK A -> B over $BACKEND: completed in $ms ms, $carried connections carried (return path included); on B: $out"
kill $PIN $POUT 2>/dev/null || true
wait $PIN $POUT 2>/dev/null || true

# 2. B -> A slowly, proxy-in killed mid-migration
proxy B A 4446
migrate B A --bandwidth 4 >"$W/killed.log" 2>&1 &
mig=$!
sleep 4
kill -KILL $PIN
st=0
wait $mig || st=$?
((st != 0)) || fail "virsh migrate B -> A succeeded although proxy-in was killed"
running_on B && ! running_on A || fail "after the failed migration the guest is not running on B alone"
out=$(judge B) || fail "the guest on B after the failed migration: $out"
log "proxy-in killed mid-migration (B -> A, --bandwidth 4): virsh says \"$(grep -m1 -i error "$W/killed.log" | cut -c1-160)\"; the guest runs on at B: $out"
kill $POUT 2>/dev/null || true
wait $POUT 2>/dev/null || true

# 3. again, proxy-in restarted
proxy B A 4447
migrate B A || fail "virsh migrate B -> A failed after the restart"
running_on A && ! running_on B || fail "after virsh migrate the guest is not running on A alone"
out=$(judge A) || fail "the guest on A after migrating back: $out"
log "virsh migrate B -> A with a new proxy pair: completed; on A: $out"
log "all passed"
