#!/usr/bin/env bash
# Build a minimal QEMU 10.0 qemu-system-x86_64 with the rdmamig patch series
# (integrations/qemu/*.patch) applied, into a cache outside the clone, and
# print the binary's path as the last line.
#
#   scripts/build-qemu.sh            build, or reuse the cached build
#   scripts/build-qemu.sh --cached   print the cached binary's path, or exit 2 if
#                                    there is none (tests use it: they never build)
#   scripts/build-qemu.sh --key      print the cache key only
#
# Source: Debian's qemu source package (QEMU_DEB_VERSION, from trixie or
# bookworm-backports) fetched with `apt-get source` through this script's OWN
# apt configuration (its own sources list, lists and cache under the cache
# directory); the system's apt configuration is never touched.  Build tools
# missing here are installed (meson >= 1.5 from bookworm-backports, by the
# same own configuration).  The cache key hashes the source version, the
# patches, the devices file, the configure flags and this script, so CI on
# one machine builds once.
#
# Environment: RMIG_QEMU_CACHE (default /var/cache/rdmamig/qemu),
# RMIG_QEMU_DEB_VERSION (default below), RMIG_QEMU_JOBS (default 2).
# Exit: 0 built or cached; 1 the build is impossible here (the reason is
# printed); 2 --cached and nothing cached.
set -euo pipefail
# The body is one block: bash reads it whole before running it, so editing
# this file during a (long) build does not change the running build.
{
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF="$ROOT/scripts/build-qemu.sh"
CACHE=${RMIG_QEMU_CACHE:-/var/cache/rdmamig/qemu}
VERSION=${RMIG_QEMU_DEB_VERSION:-1:10.0.13+ds-0+deb13u1}
JOBS=${RMIG_QEMU_JOBS:-2}
MIRROR=${RMIG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() { echo "build-qemu: cannot build QEMU here: $*" >&2; exit 1; }
say() { echo "build-qemu: $*" >&2; }

# The minimal machine: pc (i440fx) with an ISA serial port and fw_cfg (both
# come with the board), TCG and KVM, RDMA migration kept for comparisons.
DEVICES='CONFIG_I440FX=y
CONFIG_SERIAL_ISA=y'
FLAGS=(--target-list=x86_64-softmmu --without-default-features --without-default-devices
       --with-devices-x86_64=rdmamig --enable-tcg --enable-kvm --enable-rdma
       --disable-docs --disable-download --disable-install-blobs --disable-werror
       --python=/usr/bin/python3)

# A snapshot of the series: the key and the build see the same patches even
# if someone edits them meanwhile.
PATCHES=$(mktemp -d "${TMPDIR:-/tmp}/build-qemu.XXXXXX")
trap 'rm -rf "$PATCHES"' EXIT
cp "$ROOT"/integrations/qemu/*.patch "$PATCHES"/ 2>/dev/null || true
patches() { ls "$PATCHES"/*.patch 2>/dev/null | sort || true; }

cache_key() {
  {
    echo "$VERSION"
    echo "$DEVICES"
    echo "${FLAGS[*]}"
    cat "$SELF" "$ROOT"/include/rdmamig/{plugin,export}.h
    for p in $(patches); do echo "== $(basename "$p")"; cat "$p"; done
  } | sha256sum | cut -c1-16
}

KEY=$(cache_key)
OUT="$CACHE/$KEY"
BIN="$OUT/qemu-system-x86_64"
case "${1:-}" in
  --key) echo "$KEY"; exit 0 ;;
  --cached) if [ -e "$OUT/ok" ] && [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi; exit 2 ;;
  "") ;;
  *) echo "usage: $0 [--cached|--key]" >&2; exit 1 ;;
esac
if [ -e "$OUT/ok" ] && [ -x "$BIN" ]; then
  say "cached build $KEY (QEMU source $VERSION, $(patches | wc -l) patches)"
  echo "$BIN"
  exit 0
fi

[ "$(uname -m)" = x86_64 ] || die "this script builds for an x86_64 host (this is $(uname -m))"
command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
  die "apt-get/dpkg are missing: the source comes from Debian's archive (a Debian 12 or 13 host)"
[ -r "$KEYRING" ] || die "$KEYRING is missing (apt-get install debian-archive-keyring)"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null && sudo -n true 2>/dev/null || SUDO=none
  [ "$SUDO" = none ] || SUDO=sudo
fi
mkdir -p "$CACHE" 2>/dev/null || $SUDO mkdir -p "$CACHE" 2>/dev/null ||
  die "cannot create the cache directory $CACHE (set RMIG_QEMU_CACHE to a writable place)"
[ -w "$CACHE" ] || { [ "$SUDO" = sudo ] && sudo chown "$(id -u):$(id -g)" "$CACHE"; } ||
  die "$CACHE is not writable (set RMIG_QEMU_CACHE to a writable place)"

# Own apt configuration: source entries for the QEMU 10.0 source and the
# backports binaries (meson), with lists and cache of its own.
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
cat >"$APT/sources.list" <<EOF
deb-src [signed-by=$KEYRING] $MIRROR trixie main
deb-src [signed-by=$KEYRING] $MIRROR bookworm-backports main
deb [signed-by=$KEYRING] $MIRROR bookworm main
deb [signed-by=$KEYRING] $MIRROR bookworm-backports main
EOF
APTO=(-o "Dir::Etc::sourcelist=$APT/sources.list" -o Dir::Etc::sourceparts=-
      -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
      -o DPkg::Lock::Timeout=900 -o APT::Sandbox::User=root)
apt_update() {
  [ -n "$(find "$APT/lists" -maxdepth 1 -name '*Sources*' -mmin -1440 2>/dev/null)" ] && return 0
  say "apt-get update (own configuration in $APT)"
  apt-get "${APTO[@]}" update -q >"$APT/update.log" 2>&1 ||
    die "apt-get update with the archive $MIRROR failed (no network?): $(tail -2 "$APT/update.log" | tr '\n' ' ')"
}

# Build tools.  meson: QEMU 10.0 needs >= 1.5 (bookworm has 1.0.1; backports 1.7).
meson_ok() { command -v meson >/dev/null && dpkg --compare-versions "$(meson --version)" ge 1.5; }
need=()
for p in build-essential ninja-build pkg-config python3-venv flex bison libglib2.0-dev \
         libpixman-1-dev zlib1g-dev libibverbs-dev librdmacm-dev dpkg-dev patch xz-utils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
meson_ok || need+=(meson)
if ((${#need[@]})); then
  [ "$SUDO" != none ] || die "missing build tools ${need[*]} and no root to install them"
  apt_update
  say "installing ${need[*]} (meson from bookworm-backports)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${APTO[@]}" install -y -q --no-install-recommends \
    -t bookworm-backports "${need[@]}" >"$APT/install.log" 2>&1 ||
    die "installing ${need[*]} failed: $(tail -3 "$APT/install.log" | tr '\n' ' ')"
  meson_ok || die "meson $(meson --version 2>/dev/null) is older than 1.5 after installing"
fi

# Source: downloaded once per version.
SRC="$CACHE/src/${VERSION//:/_}"
if ! ls "$SRC"/*.dsc >/dev/null 2>&1; then
  apt_update
  mkdir -p "$SRC.part"
  say "fetching the qemu $VERSION source package"
  (cd "$SRC.part" && apt-get "${APTO[@]}" source --download-only -q "qemu=$VERSION") \
    >"$APT/source.log" 2>&1 ||
    die "apt-get source qemu=$VERSION failed (the archive may have dropped it: pick one that \`apt-get source\` lists for trixie or bookworm-backports and set RMIG_QEMU_DEB_VERSION; the patches must then still apply): $(tail -2 "$APT/source.log" | tr '\n' ' ')"
  rm -rf "$SRC" && mv "$SRC.part" "$SRC"
fi

# One build at a time per cache (CI runs and a developer may meet here).
exec 9>"$CACHE/lock"
flock 9
if [ -e "$OUT/ok" ] && [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
start=$(date +%s)
# One build tree per source version, at a fixed path (meson's tree holds
# absolute paths): a new series is copied over the tree's source where it
# differs, so ninja rebuilds only what the patches touch.  Each key keeps
# its own copy of the binary.
WORK="$CACHE/work/${VERSION//:/_}"
NEW="$CACHE/work/new.$$"
rm -rf "$NEW"
mkdir -p "$NEW"
trap 'rm -rf "$NEW" "$PATCHES"' EXIT
say "extracting the source"
dpkg-source --no-check -x "$SRC"/*.dsc "$NEW/src" >"$CACHE/extract.log" 2>&1 ||
  die "dpkg-source -x failed: $(tail -2 "$CACHE/extract.log" | tr '\n' ' ')"
for p in $(patches); do
  say "applying $(basename "$p")"
  patch -d "$NEW/src" -p1 --fuzz=0 --no-backup-if-mismatch -s <"$p" ||
    die "$(basename "$p") does not apply to qemu $VERSION with --fuzz=0"
done
printf '%s\n' "$DEVICES" >"$NEW/src/configs/devices/x86_64-softmmu/rdmamig.mak"
# The plugin ABI header the series compiles against ("rdmamig/plugin.h",
# found through QEMU's own include/).
# QEMU's include/ is an -iquote directory: the header's own
# <rdmamig/export.h> becomes "rdmamig/export.h" there (no -I flag, which
# would make every object of the tree rebuild).
mkdir -p "$NEW/src/include/rdmamig"
cp "$ROOT/include/rdmamig/export.h" "$NEW/src/include/rdmamig/"
sed 's|#include <rdmamig/export.h>|#include "rdmamig/export.h"|' \
  "$ROOT/include/rdmamig/plugin.h" >"$NEW/src/include/rdmamig/plugin.h"
mkdir -p "$WORK/src"
python3 - "$NEW/src" "$WORK/src" <<'PY'
import filecmp, os, shutil, sys
new, old = sys.argv[1:]
seen = set()
for d, dirs, files in os.walk(new):
    rel = os.path.relpath(d, new)
    os.makedirs(os.path.join(old, rel), exist_ok=True)
    for f in files:
        a, b = os.path.join(d, f), os.path.normpath(os.path.join(old, rel, f))
        seen.add(b)
        if os.path.islink(a):
            if not os.path.islink(b) or os.readlink(a) != os.readlink(b):
                if os.path.lexists(b): os.remove(b)
                os.symlink(os.readlink(a), b)
        elif os.path.islink(b) or not os.path.exists(b) or not filecmp.cmp(a, b, shallow=False):
            if os.path.lexists(b): os.remove(b)
            shutil.copy2(a, b)
            os.utime(b)  # newer than every object: ninja rebuilds what uses it
for d, dirs, files in os.walk(old):
    for f in files:
        b = os.path.normpath(os.path.join(d, f))
        if b not in seen: os.remove(b)
PY
rm -rf "$NEW"
trap 'rm -rf "$PATCHES"' EXIT
if [ ! -f "$WORK/build/build.ninja" ] || [ "$(cat "$WORK/flags" 2>/dev/null)" != "${FLAGS[*]}" ]; then
  rm -rf "$WORK/build"
  mkdir -p "$WORK/build"
  say "configure ${FLAGS[*]}"
  (cd "$WORK/build" && ../src/configure "${FLAGS[@]}") >"$WORK/configure.log" 2>&1 ||
    die "configure failed: $(tail -5 "$WORK/configure.log" | tr '\n' ' ')"
  echo "${FLAGS[*]}" >"$WORK/flags"
fi
say "ninja -j$JOBS qemu-system-x86_64 (a cold build takes a while on 2 cores)"
ninja -C "$WORK/build" -j"$JOBS" qemu-system-x86_64 >"$WORK/ninja.log" 2>&1 ||
  die "the build failed: $(grep -m3 -E 'error|Error' "$WORK/ninja.log" | tr '\n' ' ')"
rm -rf "$OUT"
mkdir -p "$OUT"
cp "$WORK/build/qemu-system-x86_64" "$BIN"
touch "$OUT/ok"
say "built in $(( $(date +%s) - start )) s: $($BIN --version | head -1)"
# Keep the binaries of the three newest keys.
ls -dt "$CACHE"/*/ok 2>/dev/null | tail -n +4 | while read -r ok; do rm -rf "$(dirname "$ok")"; done
echo "$BIN"
exit 0
}
