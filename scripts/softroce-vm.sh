#!/usr/bin/env bash
# Run commands on real Soft-RoCE (rdma_rxe) inside a small QEMU VM.
#
#   scripts/softroce-vm.sh [options] run  'COMMAND'
#   scripts/softroce-vm.sh [options] pair 'COMMAND ON 10.0.0.1' 'COMMAND ON 10.0.0.2'
#   scripts/softroce-vm.sh [options] build        (only prepare the cache)
#
# The host kernel has no RDMA stack, so the VM boots Debian's own 6.1 kernel
# (apt-get download, unpacked with dpkg-deb -x, nothing installed) under
# software emulation, loads rdma_rxe, creates rxe0 on eth0 and runs COMMAND
# with /bin/sh (busybox) in the build folder, which is shared by 9p at the
# same absolute path so the project's binaries and their RPATHs work as they
# are.  Userspace (rdma-core with the rxe provider, libfabric, perftest,
# iproute2) comes from the host's installed packages with every library ldd
# lists.  The guest prints one machine-readable line on the serial console:
#
#   SOFTROCE-RESULT vm=a ip=10.0.0.1 status=0 seconds=12
#
# and powers off; this script exits with the guest command's status (the
# first non-zero one in pair mode).  It fails loudly (exit 90-99) when the
# VM cannot be prepared or started, or prints no result line: never a skip.
#
# pair: two VMs joined by a QEMU link on 127.0.0.1 (SOFTROCE_LINK=socket, the
# default, a TCP stream; or dgram, UDP), each with its own
# rxe0 (10.0.0.1 and 10.0.0.2): two hosts.  In the guest $RMIG_VM_IP and
# $RMIG_PEER_IP hold the addresses, $RMIG_VM_RUN a folder of this run that
# both guests and the host see (the serial logs are written there).
#
# Options: --build DIR (default: build), --timeout S (per VM, default 600),
#          --mem MB (default 1024), -q (echo only the SOFTROCE- lines of
#          the serial console, unless the guest command fails).
# Each run's commands and serial logs are kept in DIR/softroce/runs/run.*
# (the last 20 runs).
# Everything downloaded or built is cached in DIR/softroce/: a second run
# boots in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
TIMEOUT=600
MEM=1024
QUIET=0
while (($#)); do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --mem) MEM=$2; shift 2 ;;
    -q) QUIET=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^set -euo/d'; exit 0 ;;
    *) break ;;
  esac
done
MODE=${1:-}
case "$MODE" in
  run) (($# == 2)) || { echo "usage: $0 run 'COMMAND'" >&2; exit 2; } ;;
  pair) (($# == 3)) || { echo "usage: $0 pair 'COMMAND A' 'COMMAND B'" >&2; exit 2; } ;;
  build) ;;
  *) echo "usage: $0 [--build DIR] [--timeout S] run 'COMMAND' | pair 'CMD A' 'CMD B' | build" >&2; exit 2 ;;
esac

die() { echo "softroce-vm: $*" >&2; exit "${DIE_RC:-90}"; }
mkdir -p "$BUILD"
BUILD=$(realpath "$BUILD")
CACHE=$BUILD/softroce
LOGDIR=$CACHE/runs # inside the share: the guests read their commands there
mkdir -p "$CACHE" "$LOGDIR"
MULTIARCH=x86_64-linux-gnu
# Bump when the initramfs layout or the init script changes.
LAYOUT=5

for tool in qemu-system-x86_64 apt-get apt-cache dpkg-deb cpio gzip xz timeout ldd; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup.sh (it installs qemu-system-x86, cpio, xz-utils)"
done

# --- ingredients ------------------------------------------------------------

kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

fetch_debs() {
  local pkg=$1
  mkdir -p "$CACHE/debs"
  if ! ls "$CACHE/debs/${pkg}"_*.deb >/dev/null 2>&1 ||
     ! ls "$CACHE/debs/busybox-static"_*.deb "$CACHE/debs/kmod"_*.deb >/dev/null 2>&1; then
    echo "softroce-vm: downloading $pkg busybox-static kmod (apt-get download)" >&2
    (cd "$CACHE/debs" && apt-get download -q "$pkg" busybox-static kmod 2>&1 |
       grep -v '^W: Download is performed unsandboxed' >&2) ||
      die "apt-get download of $pkg busybox-static kmod failed (is the Debian archive reachable? try apt-get update)"
  fi
}

# Uncompressed vmlinux (ELF with a PVH note: QEMU boots it directly and the
# guest skips ~3 s of decompression).
extract_vmlinux() {
  local vmlinuz=$1 out=$2 off
  off=$(grep -abo $'\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1) ||
    die "no xz payload in $vmlinuz"
  [ -n "$off" ] || die "no xz payload in $vmlinuz"
  tail -c +$((off + 1)) "$vmlinuz" | xz -dcq --single-stream >"$out.tmp" 2>/dev/null || true
  [ "$(head -c 4 "$out.tmp" | od -An -c | tr -d ' ')" = '177ELF' ] ||
    die "could not extract vmlinux from $vmlinuz"
  mv "$out.tmp" "$out"
}

# Modules in load order, deduplicated, from modprobe --show-depends run
# against the unpacked kernel (the host has no kmod installed).
module_list() {
  local root=$1 kver=$2
  mkdir -p "$CACHE/kbin"
  ln -sf "$root/bin/kmod" "$CACHE/kbin/depmod"
  ln -sf "$root/bin/kmod" "$CACHE/kbin/modprobe"
  [ -f "$root/lib/modules/$kver/modules.dep" ] ||
    "$CACHE/kbin/depmod" -b "$root" "$kver" || die "depmod failed for $kver"
  # crc32: rxe needs the crc32 hash registered before a device is created.
  for m in virtio_pci virtio_net crc32_pclmul crc32_generic rdma_rxe rdma_ucm ib_umad \
           9pnet_virtio 9p; do
    "$CACHE/kbin/modprobe" -d "$root" -S "$kver" --show-depends "$m" ||
      die "module $m not found in $kver"
  done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }'
}

# Copy files and every library ldd lists into the tree at $1.
add_with_libs() {
  local dst=$1; shift
  local f lib
  for f in "$@"; do
    [ -e "$f" ] || die "$f is missing: run scripts/setup.sh"
    mkdir -p "$dst$(dirname "$f")"
    cp -L "$f" "$dst$f"
    ldd "$f" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/lib64/ { print $1 }'
  done | sort -u | while read -r lib; do
    add_lib "$dst" "$lib"
  done
}

add_lib() {
  local dst=$1 lib=$2
  case "$lib" in
    */ld-linux-x86-64.so.2) mkdir -p "$dst/usr/lib64"; cp -L "$lib" "$dst/usr/lib64/" ;;
    *) cp -L "$lib" "$dst/usr/lib/$MULTIARCH/$(basename "$lib")" ;;
  esac
}

write_init() {
  cat >"$1/init" <<'EOF'
#!/bin/busybox sh
# Soft-RoCE guest init: modules, rxe0, 9p share, the command, a result line.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/sbin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /tmp /run
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p"; }
VM=$(arg rmig_vm); IP=$(arg rmig_ip); PEER=$(arg rmig_peer)
SHARE=$(arg rmig_share); CMDFILE=$(arg rmig_cmd); RUN=$(arg rmig_run)
T0=$(cut -d. -f1 /proc/uptime)
result() {
  echo "SOFTROCE-RESULT vm=$VM ip=$IP status=$1 seconds=$(($(cut -d. -f1 /proc/uptime) - T0)) $2"
  sync
  poweroff -f
  sleep 5
}
while read -r m; do
  insmod "/lib/modules/$m" || result 97 "reason=insmod-$m-failed"
done </etc/modules.load
/usr/sbin/ip link set lo up
/usr/sbin/ip link set eth0 mtu 4500 up || result 97 reason=no-eth0
/usr/sbin/ip addr add "$IP/24" dev eth0
/usr/bin/rdma link add rxe0 type rxe netdev eth0 || result 97 reason=rdma-link-add-failed
i=0
until grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 200 ] || result 97 reason=rxe0-not-active
  sleep 0.1
done
mkdir -p "$SHARE"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host "$SHARE" ||
  result 97 reason=9p-mount-failed
ulimit -l unlimited
echo "softroce-guest: rxe0 active on eth0 $IP at $(cut -d' ' -f1 /proc/uptime) s"
export RMIG_VM_IP=$IP RMIG_PEER_IP=$PEER RMIG_VM_RUN=$RUN RMIG_VM=$VM HOME=/tmp
cd "$SHARE"
sh "$CMDFILE" </dev/null
result $?
EOF
  chmod +x "$1/init"
}

build_cache() {
  local pkg kver stamp root tree
  pkg=$(kernel_pkg)
  [ -n "$pkg" ] || die "apt-cache depends linux-image-amd64 names no kernel (run apt-get update)"
  kver=${pkg#linux-image-}
  stamp="$pkg layout=$LAYOUT"
  if [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$stamp" ] &&
     [ -s "$CACHE/vmlinux" ] && [ -s "$CACHE/initrd.gz" ]; then
    return 0
  fi
  echo "softroce-vm: preparing $pkg VM in $CACHE (once)" >&2
  fetch_debs "$pkg"
  root=$CACHE/unpacked
  rm -rf "$root" "$CACHE/tree"
  mkdir -p "$root"
  for d in "$CACHE/debs/${pkg}"_*.deb "$CACHE/debs"/busybox-static_*.deb "$CACHE/debs"/kmod_*.deb; do
    dpkg-deb -x "$d" "$root" || die "cannot unpack $d"
  done
  extract_vmlinux "$root/boot/vmlinuz-$kver" "$CACHE/vmlinux"

  tree=$CACHE/tree
  mkdir -p "$tree"/{bin,dev,proc,sys,tmp,etc,usr/bin,usr/sbin,usr/lib/$MULTIARCH,usr/lib64,lib/modules}
  ln -s usr/lib64 "$tree/lib64"
  ln -s ../usr/lib/$MULTIARCH "$tree/lib/$MULTIARCH"
  cp "$root/bin/busybox" "$tree/bin/busybox"
  module_list "$root" "$kver" >"$CACHE/modules.txt"
  : >"$tree/etc/modules.load"
  while read -r ko; do
    cp "$ko" "$tree/lib/modules/"
    basename "$ko" >>"$tree/etc/modules.load"
  done <"$CACHE/modules.txt"

  # rdma-core with the rxe provider (found through its .driver file),
  # libfabric with its built-in providers, perftest, iproute2.
  mkdir -p "$tree/etc/libibverbs.d" "$tree/usr/lib/$MULTIARCH/libibverbs"
  cp /etc/libibverbs.d/rxe.driver "$tree/etc/libibverbs.d/"
  add_with_libs "$tree" /usr/lib/$MULTIARCH/libibverbs/librxe-rdmav34.so \
    /usr/lib/$MULTIARCH/libfabric.so.1 /usr/lib/$MULTIARCH/librdmacm.so.1 \
    /usr/bin/rdma /sbin/ip /usr/bin/ibv_devinfo /usr/bin/ibv_devices /usr/bin/rping \
    /usr/bin/ucmatose /usr/bin/ib_write_bw /usr/bin/ib_read_bw /usr/bin/ib_write_lat \
    /usr/bin/ib_send_bw /usr/bin/fi_info /usr/bin/fi_pingpong
  mv "$tree/sbin/ip" "$tree/usr/sbin/ip" && rmdir "$tree/sbin"
  # glibc dlopens libgcc_s at thread exit/cancel; ldd does not list it.
  add_lib "$tree" /usr/lib/$MULTIARCH/libgcc_s.so.1
  mkdir -p "$tree/usr/lib/$MULTIARCH/libibverbs"
  [ -f "$tree/usr/lib/$MULTIARCH/libibverbs/librxe-rdmav34.so" ] || die "rxe provider not copied"
  write_init "$tree"
  echo "root:x:0:0:root:/tmp:/bin/sh" >"$tree/etc/passwd"
  echo "root:x:0:" >"$tree/etc/group"
  printf '127.0.0.1 localhost\n10.0.0.1 vm-a\n10.0.0.2 vm-b\n' >"$tree/etc/hosts"
  (cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1) >"$CACHE/initrd.gz.tmp"
  mv "$CACHE/initrd.gz.tmp" "$CACHE/initrd.gz"
  rm -rf "$root"
  echo "$stamp" >"$CACHE/stamp"
  echo "softroce-vm: initramfs $(du -h "$CACHE/initrd.gz" | cut -f1), kernel $kver" >&2
}

# Libraries the build's own programs need beyond the base image: a small
# cpio appended to the initrd (rebuilt only when the set changes).
extra_initrd() {
  local out=$CACHE/initrd-run.gz libs have missing=()
  libs=$(find "$BUILD" -path "$CACHE" -prune -o -type f \( -perm -u+x -o -name '*.so*' \) -print 2>/dev/null |
    while read -r f; do
      [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] && ldd "$f" 2>/dev/null
    done | awk '/=> \// { print $3 }' | grep -v "^$BUILD/" | sort -u)
  for l in $libs; do
    [ -e "$CACHE/tree/usr/lib/$MULTIARCH/$(basename "$l")" ] || missing+=("$l")
  done
  have=$({ printf '%s\n' "${missing[@]}"; stat -c %Y "$CACHE/initrd.gz"; } | md5sum | cut -d' ' -f1)
  if [ -f "$out" ] && [ "$(cat "$CACHE/initrd-run.key" 2>/dev/null)" = "$have" ]; then
    echo "$out"; return
  fi
  local t=$CACHE/tree-run
  rm -rf "$t"; mkdir -p "$t/usr/lib/$MULTIARCH" "$t/usr/lib64"
  for l in "${missing[@]}"; do add_lib "$t" "$l"; done
  { cat "$CACHE/initrd.gz"; (cd "$t" && find . | cpio -o -H newc --quiet | gzip -1); } >"$out"
  echo "$have" >"$CACHE/initrd-run.key"
  echo "$out"
}

# --- running ----------------------------------------------------------------

# A TCP/UDP port on 127.0.0.1 nothing uses now (and not $1).
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 20000))
    [ "$p" != "${1:-}" ] || continue
    ss -Hantu "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
  done
  die "no free port on 127.0.0.1 for the VM link"
}

# start_vm NAME IP PEER NETDEV CMDFILE LOG: QEMU in the background; sets PID.
start_vm() {
  local name=$1 ip=$2 peer=$3 netdev=$4 cmdfile=$5 log=$6 mac
  mac=52:54:00:52:4d:$(printf %02x "${ip##*.}")
  timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 \
    -m "$MEM" -nographic -no-reboot -nodefaults -serial stdio -monitor none \
    -kernel "$CACHE/vmlinux" -initrd "$INITRD" \
    -append "console=ttyS0 quiet panic=-1 rmig_vm=$name rmig_ip=$ip rmig_peer=$peer rmig_share=$BUILD rmig_cmd=$cmdfile rmig_run=$(dirname "$cmdfile")" \
    -netdev "$netdev" -device virtio-net-pci,netdev=n0,mac=$mac,romfile= \
    -virtfs local,path="$BUILD",mount_tag=host,security_model=none,id=host0 \
    </dev/null >"$log" 2>&1 &
  PID=$!
}

# Wait for a VM; print its console (unless -q); return the guest status.
finish_vm() {
  local pid=$1 log=$2 name=$3 qrc=0 line status
  wait "$pid" || qrc=$?
  line=$(grep -a '^SOFTROCE-RESULT ' "$log" | tail -1 | tr -d '\r')
  # -q: only the machine-readable lines, unless the guest failed.
  if ((QUIET)) && [ -n "$line" ] && [[ "$line" == *" status=0 "* ]]; then
    grep -a '^SOFTROCE-' "$log" | tr -d '\r' | sed "s/^/[$name] /"
  else
    sed "s/^/[$name] /" "$log"
  fi
  if [ -z "$line" ]; then
    if ((qrc == 124)); then
      echo "softroce-vm: VM $name did not finish within ${TIMEOUT}s (serial log: $log)" >&2
      return 95
    fi
    echo "softroce-vm: VM $name did not start or died (qemu exit $qrc, no result line): $(grep -av '^\s*$' "$log" | tail -3 | tr '\n' ' ') (serial log: $log)" >&2
    return 96
  fi
  echo "$line"
  status=$(sed -n 's/.* status=\([0-9]*\).*/\1/p' <<<"$line")
  return "${status:-96}"
}

# gdb and its libraries in the cache (read over 9p, never in the initramfs:
# ~70 MB), for the stacks softroce-guard.sh dumps when a command hangs.
stage_gdb() {
  local g=$CACHE/gdb
  command -v gdb >/dev/null || return 0
  if [ ! -x "$g/gdb" ] || [ ! -d "$g/data" ] || [ "$(command -v gdb)" -nt "$g/gdb" ]; then
    rm -rf "$g"; mkdir -p "$g/lib"
    cp -L "$(command -v gdb)" "$g/gdb.bin"
    ldd "$g/gdb.bin" | awk '/=> \// { print $3 }' | xargs -r cp -L -t "$g/lib/"
    # gdb embeds Python and will not start without its standard library.
    mkdir -p "$g/py/lib"
    py=$(ldd "$g/gdb.bin" | grep -o 'libpython3\.[0-9]*' | head -1)
    [ -z "$py" ] || cp -a "/usr/lib/${py#lib}" "$g/py/lib/"
    rm -rf "$g"/py/lib/python3*/{test,idlelib,tkinter,turtledemo,ensurepip,lib2to3,site-packages,dist-packages}
    cp -a /usr/share/gdb "$g/data"
    printf '#!/bin/sh\nPYTHONHOME=%s/py LD_LIBRARY_PATH=%s/lib exec %s/gdb.bin -data-directory %s/data "$@"\n' \
      "$g" "$g" "$g" "$g" >"$g/gdb"
    chmod +x "$g/gdb"
  fi
  echo "$g/gdb"
}

# Every command file starts with the guard functions (scripts/softroce-guard.sh).
write_cmd() {
  { echo "RMIG_GDB=$GDB; . $RUN/guard.sh"; printf '%s\n' "$2"; } >"$1"
}

build_cache
[ "$MODE" = build ] && { echo "softroce-vm: cache ready in $CACHE"; exit 0; }
INITRD=$(extra_initrd)
GDB=$(stage_gdb)
{ ls -dt "$LOGDIR"/run.* 2>/dev/null || true; } | tail -n +20 | xargs -r rm -rf
RUN=$(mktemp -d "$LOGDIR/run.XXXXXX")
chmod 755 "$RUN"
cp scripts/softroce-guard.sh "$RUN/guard.sh"
T0=$(date +%s)
if [ "$MODE" = run ]; then
  write_cmd "$RUN/cmd-a.sh" "$2"
  start_vm a 10.0.0.1 "" "hubport,id=n0,hubid=0" "$RUN/cmd-a.sh" "$RUN/serial-a.log"
  rc=0; finish_vm "$PID" "$RUN/serial-a.log" a || rc=$?
else
  write_cmd "$RUN/cmd-a.sh" "$2"
  write_cmd "$RUN/cmd-b.sh" "$3"
  # The link: a QEMU socket netdev (a TCP stream on 127.0.0.1: lossless,
  # so rxe never has to retransmit) or dgram (UDP: lower latency, but
  # datagrams a busy QEMU does not read in time are lost and rxe's
  # go-back-N retransmission makes bulk transfers crawl).
  pa=$(free_port); pb=$(free_port "$pa")
  case "${SOFTROCE_LINK:-socket}" in
    dgram)
      dg="dgram,id=n0,local.type=inet,local.host=127.0.0.1,remote.type=inet,remote.host=127.0.0.1"
      neta="$dg,local.port=$pa,remote.port=$pb"; netb="$dg,local.port=$pb,remote.port=$pa" ;;
    socket)
      neta="socket,id=n0,listen=127.0.0.1:$pa"; netb="socket,id=n0,connect=127.0.0.1:$pa" ;;
    *) die "SOFTROCE_LINK is socket or dgram, not ${SOFTROCE_LINK}" ;;
  esac
  start_vm a 10.0.0.1 10.0.0.2 "$neta" "$RUN/cmd-a.sh" "$RUN/serial-a.log"
  pida=$PID
  if [ "${SOFTROCE_LINK:-socket}" = socket ]; then
    # b connects to a's listening socket: wait until a's QEMU listens there
    # (and never start b if a died: it would connect to nothing, or worse).
    for _ in $(seq 100); do
      kill -0 "$pida" 2>/dev/null || break
      ss -Htlnp "sport = :$pa" 2>/dev/null | grep -q qemu-system && break
      sleep 0.1
    done
    if ! kill -0 "$pida" 2>/dev/null; then
      finish_vm "$pida" "$RUN/serial-a.log" a || true
      DIE_RC=96 die "VM a did not start (serial log: $RUN/serial-a.log)"
    fi
  fi
  start_vm b 10.0.0.2 10.0.0.1 "$netb" "$RUN/cmd-b.sh" "$RUN/serial-b.log"
  pidb=$PID
  ra=0; finish_vm "$pida" "$RUN/serial-a.log" a || ra=$?
  rb=0; finish_vm "$pidb" "$RUN/serial-b.log" b || rb=$?
  rc=$ra; ((rc)) || rc=$rb
fi
echo "softroce-vm: $MODE finished in $(($(date +%s) - T0)) s with status $rc (logs: $RUN)" >&2
exit "$rc"
