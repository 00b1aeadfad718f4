#!/usr/bin/env bash
# Install what rdmamig needs (Debian 12) and build it into ./build.
# Safe to run again: installs only what is missing, rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config libibverbs-dev librdmacm-dev ibverbs-providers
      rdma-core libfabric-dev libfabric-bin libhwloc-dev hwloc libcunit1-dev libssl-dev
      perftest ibverbs-utils rdmacm-utils qemu-system-x86 iproute2 cpio xz-utils
      busybox-static clang valgrind python3 procps gnuplot-nox)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} \
  -DRMIG_WERROR=${RMIG_WERROR:-OFF} >/dev/null
# The progress lines are filtered out; the build's own status decides.
build_rc=0
cmake --build "$BUILD" -j"$(nproc)" > "$BUILD/build.log" 2>&1 || build_rc=$?
grep -vE '^\[ *[0-9]+%\]|^-- ' "$BUILD/build.log" || true
if [ "$build_rc" != 0 ] || [ ! -x "$BUILD/tools/rdmamig" ]; then
  echo "setup: the build failed (cmake --build $BUILD exited $build_rc; the compiler's words are above)" >&2
  exit 1
fi
echo "setup: built $BUILD/tools/rdmamig ($("$BUILD/tools/rdmamig" --version))"
