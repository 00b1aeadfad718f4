#!/usr/bin/env bash
# Benchmark (not a test): rdmamig's verbs backend against perftest's
# ib_write_bw on the same rxe0, same message sizes, in the same Soft-RoCE VM
# run, interleaved, REPS times; prints a markdown table of medians.
#
#   scripts/bench-softroce.sh [REPS] [SIZES]   (default 7, "4096 65536 262144 1048576 4194304")
#
# Columns (MB/s = 10^6 bytes/s; perftest reports 2^20, converted here):
#   ib_write_bw      perftest, tx depth 128, busy-polls the CQ (perftest 4.5
#                    has no event mode for WRITE)
#   rdmamig verbs    rdmamig bench transport --backend verbs (brief spin,
#                    then the completion channel), 16 batches in flight
# Each measurement moves about 32 MiB (perftest -n 32MiB/size, at least 16;
# rdmamig --bytes 32M).  Software emulation on a shared host is noisy (runs
# of one cell differ 2x), so each rep measures both tools back to back, in
# alternating order, and the ratio column is the median of the per-rep
# ratios, not a ratio of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
REPS=${1:-7}
SIZES=${2:-"4096 65536 262144 1048576 4194304"}
[ -x "$BUILD/tools/rdmamig" ] || { echo "bench-softroce: build first (scripts/setup.sh)" >&2; exit 1; }

guest='
bw() { # bw SIZE ITERS EXTRA...: one ib_write_bw pair on rxe0, MB/s (2^20)
  s=$1; n=$2; shift 2
  ib_write_bw -d rxe0 -s $s -n $n -F "$@" >/tmp/srv.log 2>&1 &
  sleep 1
  ib_write_bw -d rxe0 -s $s -n $n -F "$@" $RMIG_VM_IP 2>/dev/null | awk -v s=$s "\$1 == s { print \$4 }"
  wait
}
ib() { echo "SOFTROCE-BENCH rep=$1 size=$2 tool=ib_write_bw mib=$(bw $2 $3)"; }
rd() { # rdmamig, same size, same bytes
  m=$(tools/rdmamig bench transport --backend verbs --addr $RMIG_VM_IP --sizes $2 --bytes 32M --seconds 10 --json |
      sed -n "s/.*\"MBps\":\([0-9.]*\).*/\1/p")
  echo "SOFTROCE-BENCH rep=$1 size=$2 tool=rdmamig mb=$m"
}
for r in $(seq '"$REPS"'); do
  for s in '"$SIZES"'; do
    n=$((33554432 / s)); [ $n -ge 16 ] || n=16
    if [ $((r % 2)) = 1 ]; then ib $r $s $n; rd $r $s; else rd $r $s; ib $r $s $n; fi
  done
done
'
out=$(mktemp)
trap 'rm -f "$out"' EXIT
bash scripts/softroce-vm.sh -q --timeout 1500 run "$guest" | tee "$out" >&2
python3 - "$out" "$REPS" <<'EOF'
import re, statistics, sys
rows, reps = {}, {}
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"SOFTROCE-BENCH rep=(\d+) size=(\d+) tool=(\S+) (mib|mb)=([0-9.]*)", line)
    if not m or not m.group(5) or float(m.group(5)) <= 0:
        continue  # a failed measurement
    v = float(m.group(5)) * (1.048576 if m.group(4) == "mib" else 1.0)
    size, tool = int(m.group(2)), m.group(3)
    rows.setdefault(size, {}).setdefault(tool, []).append(v)
    reps.setdefault((size, int(m.group(1))), {})[tool] = v
def fmt(s):
    return f"{s >> 20} MiB" if s >= 1 << 20 else f"{s >> 10} KiB"
print("| size | ib_write_bw MB/s | rdmamig verbs MB/s | rdmamig / ib_write_bw (median of per-rep ratios) | per-rep ratios |")
print("|---:|---:|---:|---:|---|")
for s in sorted(rows):
    r = rows[s]
    med = {k: statistics.median(v) for k, v in r.items()}
    a, g = med.get("ib_write_bw"), med.get("rdmamig")
    ratios = sorted(v["rdmamig"] / v["ib_write_bw"] for (sz, _), v in reps.items()
                    if sz == s and "rdmamig" in v and "ib_write_bw" in v)
    cell = lambda x: f"{x:.1f}" if x else "failed"
    rmed = f"{statistics.median(ratios):.2f}" if ratios else "n/a"
    print(f"| {fmt(s)} | {cell(a)} | {cell(g)} | {rmed} | {' '.join(f'{x:.2f}' for x in ratios)} |")
print(f"\nMB/s: medians of {sys.argv[2]} runs per cell; one VM, rxe0 on eth0 (MTU 4500), both tools in the same boot")
EOF
