#!/usr/bin/env bash
# Benchmark (not a test): rdmamig's verbs backend against perftest's
# ib_write_bw on the same rxe0, same message sizes, in the same Soft-RoCE VM
# run, interleaved, REPS times; prints a markdown table of medians.
#
#   scripts/bench-softroce.sh [REPS] [SIZES]      (default 3, "4096 ... 4194304")
#
# Columns (MB/s = 10^6 bytes/s; perftest reports 2^20, converted here):
#   ib_write_bw      perftest, tx depth 128, busy-polls the CQ (perftest 4.5
#                    has no event mode for WRITE)
#   rdmamig verbs    rdmamig bench transport --backend verbs (brief spin,
#                    then the completion channel), 16 batches in flight
# Each measurement moves about 64 MiB (perftest -n 64MiB/size, at least 16;
# rdmamig --bytes 64M).  Software emulation: only ratios from one run mean
# anything.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
REPS=${1:-3}
SIZES=${2:-"4096 16384 65536 262144 1048576 4194304"}
[ -x "$BUILD/tools/rdmamig" ] || { echo "bench-softroce: build first (scripts/setup.sh)" >&2; exit 1; }

guest='
bw() { # bw SIZE ITERS EXTRA...: one ib_write_bw pair on rxe0, MB/s (2^20)
  s=$1; n=$2; shift 2
  ib_write_bw -d rxe0 -s $s -n $n -F "$@" >/tmp/srv.log 2>&1 &
  sleep 1
  ib_write_bw -d rxe0 -s $s -n $n -F "$@" $RMIG_VM_IP 2>/dev/null | awk -v s=$s "\$1 == s { print \$4 }"
  wait
}
for r in $(seq '"$REPS"'); do
  for s in '"$SIZES"'; do
    n=$((67108864 / s)); [ $n -ge 16 ] || n=16
    echo "SOFTROCE-BENCH rep=$r size=$s tool=ib_write_bw mib=$(bw $s $n)"
    m=$(tools/rdmamig bench transport --backend verbs --addr $RMIG_VM_IP --sizes $s --bytes 64M --seconds 10 --json |
        sed -n "s/.*\"MBps\":\([0-9.]*\).*/\1/p")
    echo "SOFTROCE-BENCH rep=$r size=$s tool=rdmamig mb=$m"
  done
done
'
out=$(mktemp)
trap 'rm -f "$out"' EXIT
bash scripts/softroce-vm.sh -q --timeout 1500 run "$guest" | tee "$out" >&2
python3 - "$out" "$REPS" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"SOFTROCE-BENCH rep=\d+ size=(\d+) tool=(\S+) (mib|mb)=([0-9.]*)", line)
    if not m or not m.group(4):
        continue
    v = float(m.group(4)) * (1.048576 if m.group(3) == "mib" else 1.0)
    rows.setdefault(int(m.group(1)), {}).setdefault(m.group(2), []).append(v)
def fmt(s):
    return f"{s >> 20} MiB" if s >= 1 << 20 else f"{s >> 10} KiB"
print("| size | ib_write_bw MB/s | rdmamig verbs MB/s | rdmamig / ib_write_bw | runs (ib_write_bw ; rdmamig) |")
print("|---:|---:|---:|---:|---|")
for s in sorted(rows):
    r = rows[s]
    med = {k: statistics.median(v) for k, v in r.items()}
    a, g = med.get("ib_write_bw"), med.get("rdmamig")
    ratio = lambda x, y: f"{x / y:.2f}" if x and y else "n/a"
    cell = lambda x: f"{x:.1f}" if x else "failed"
    runs = lambda k: " ".join(f"{x:.0f}" for x in r.get(k, []))
    print(f"| {fmt(s)} | {cell(a)} | {cell(g)} | {ratio(g, a)} | {runs('ib_write_bw')} ; {runs('rdmamig')} |")
print(f"\nmedians of {sys.argv[2]} interleaved runs per cell, one VM, rxe0 on eth0 (MTU 4500)")
EOF
