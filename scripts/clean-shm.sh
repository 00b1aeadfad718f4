#!/usr/bin/env bash
# Remove libfabric shm regions (/dev/shm/PID:N:N) whose process is gone.
# The shm provider names a region after its process; one killed with
# SIGKILL (as the failure tests do on purpose) leaves it behind: 16 MiB of
# RAM each, and a later process that gets the same PID then fails fi_enable
# with "Device or resource busy".  Regions of live processes are left alone.
set -euo pipefail
n=0
for f in /dev/shm/*; do
  b=${f##*/}
  [[ $b =~ ^([0-9]+):[0-9]+:[0-9]+$ ]] || continue
  pid=${BASH_REMATCH[1]}
  [ -d "/proc/$pid" ] && continue
  rm -f -- "$f" && n=$((n + 1))
done
echo "clean-shm: removed $n stale libfabric shm region(s)"
