#!/usr/bin/env bash
# The main job on one machine: install, build, then run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec build/tools/rdmamig bench transport "$@"
