#!/usr/bin/env bash
# The main job on one machine: install, build, then live-migrate a 1 GiB
# guest between two processes on the best backend here and verify it.
# Arguments go to 'rdmamig demo' (e.g. --dirty-rate 50M --pattern hotset).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec build/tools/rdmamig demo "$@"
