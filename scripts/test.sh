#!/usr/bin/env bash
# The whole test suite: install, build, run the unit and conformance suites
# under ASan+UBSan, the threaded suites under TSan, a short fuzzing pass
# over every decoder, then every CUnit test under ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
# CI builds with warnings as errors (setup.sh, fuzz.sh and the ASan build below).
export RMIG_WERROR=ON
bash scripts/setup.sh
# libfabric shm regions of processes killed by earlier runs (see the script).
bash scripts/clean-shm.sh
BUILD=${BUILD:-build}

echo "== unit and conformance suites under ASan+UBSan (ctest -L sanitize)"
cmake -S . -B "$BUILD-asan" -DRMIG_SANITIZE=ON -DRMIG_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
asan_rc=0
cmake --build "$BUILD-asan" -j"$(nproc)" > "$BUILD-asan/build.log" 2>&1 || asan_rc=$?
grep -vE '^\[ *[0-9]+%\]' "$BUILD-asan/build.log" || true
[ "$asan_rc" = 0 ] || { echo "== FAILED: the ASan build (cmake --build $BUILD-asan exited $asan_rc; the compiler's words are above)" >&2; exit 1; }
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  ctest --test-dir "$BUILD-asan" --output-on-failure --timeout 900 -j2 -L sanitize

echo "== threaded suites under ThreadSanitizer (ctest -L tsan: engine, channels, stream, conformance)"
cmake -S . -B "$BUILD-tsan" -DRMIG_SANITIZE=thread -DRMIG_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
tsan_rc=0
cmake --build "$BUILD-tsan" -j"$(nproc)" > "$BUILD-tsan/build.log" 2>&1 || tsan_rc=$?
grep -vE '^\[ *[0-9]+%\]' "$BUILD-tsan/build.log" || true
[ "$tsan_rc" = 0 ] || { echo "== FAILED: the TSan build (cmake --build $BUILD-tsan exited $tsan_rc; the compiler's words are above)" >&2; exit 1; }
# A race report makes the process exit 66: the test (or the parent that
# checks its child's exit) fails.  tests/tsan.supp says why each entry is there.
TSAN_OPTIONS=${TSAN_OPTIONS:-suppressions=$PWD/tests/tsan.supp:second_deadlock_stack=1} \
  ctest --test-dir "$BUILD-tsan" --output-on-failure --timeout 900 -j2 -L tsan

echo "== decoders under libFuzzer, short run (scripts/fuzz.sh RUNS for a long one)"
bash scripts/fuzz.sh "${FUZZ_RUNS:-200000}"

# Before ctest: the qemu_plugin_* tests use this build (a cache hit costs
# seconds, a cold build some minutes); where it cannot be built the stage
# says why and CI fails (the tests then show SKIP).
echo "== the patched QEMU 10 that loads librdmamig (integrations/qemu/, scripts/build-qemu.sh)"
qemu_rc=0
bash scripts/build-qemu.sh || { qemu_rc=1; echo "== FAILED: the patched QEMU was not built (the reason is above)"; }

echo "== unit, conformance and integration tests (ctest)"
ctest --test-dir "$BUILD" --output-on-failure --timeout 600 -j2
echo "== fault matrix: kill either end, drop the link, cancel, hang the destination at each phase, every host backend (scripts/fault-matrix.sh)"
BUILD=$BUILD bash scripts/fault-matrix.sh -r "${FAULT_RUNS:-1}" -g 16M
echo "== stock QEMU (exec:) and the patched QEMU (rdmamig:) end to end on the host (the qemu_migrate and qemu_plugin_* tests above, their lines)"
grep -h '^qemu-migrate:' "$BUILD/Testing/Temporary/LastTest.log" || true
echo "== the demo under valgrind (the valgrind_demo test above, its summary)"
grep -hE '^valgrind-demo|^  ERROR SUMMARY' "$BUILD/Testing/Temporary/LastTest.log" || true

# Every VM stage runs even if an earlier one fails (each says what failed); CI fails if any does.
vm_rc=0
echo "== Soft-RoCE VM stage: conformance over verbs (and ofi/verbs) on rxe0, cross-host between two VMs"
BUILD=$BUILD bash scripts/softroce-ci.sh || vm_rc=$?

echo "== fault matrix over verbs and ofi/verbs in the Soft-RoCE VM: kill either end, rdma link delete, ip link set eth0 down, cancel, hang the destination, at each phase (scripts/fault-matrix-vm.sh)"
BUILD=$BUILD bash scripts/fault-matrix-vm.sh || vm_rc=$?

echo "== Stock QEMU in the Soft-RoCE VM: exec:rdmamig over verbs, QEMU's own rdma: and tcp:, cancel and a killed receiver over verbs (scripts/qemu-vm-migrate.sh)"
BUILD=$BUILD bash scripts/qemu-vm-migrate.sh || vm_rc=$?

echo "== The patched QEMU 10 in the Soft-RoCE VM: rdmamig: over verbs (QEMU loads librdmamig.so), the same binary's rdma: and tcp:, its unix: through rdmamig proxy-out/proxy-in over verbs (0 and 2 multifd channels), cancel and a killed destination over verbs (scripts/qemu-vm-migrate.sh --patched; fails where the patched QEMU is not built)"
BUILD=$BUILD bash scripts/qemu-vm-migrate.sh --patched || vm_rc=$?
exit $((vm_rc || qemu_rc))
