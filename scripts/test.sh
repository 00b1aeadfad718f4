#!/usr/bin/env bash
# The whole test suite: install, build, run every CUnit test under ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD=${BUILD:-build}
echo "== unit, conformance and integration tests (ctest)"
ctest --test-dir "$BUILD" --output-on-failure --timeout 600 -j2
