#!/usr/bin/env bash
# Benchmark: `rdmamig demo` migrating an idle guest against stock QEMU's own
# tcp: migrating an idle guest of the same size, on this machine, in one
# run (the two interleaved, several times each); prints the medians, every
# run's figure and the ratio.
#
#   scripts/bench-demo-vs-qemu.sh [--build DIR] [--runs N] [--size-mib M]
#                                 [--backends tcp,ofi/shm]
#
# Both guests hold the same data: the demo's guest is M MiB with three
# pages in four filled (the fourth zero); QEMU's test guest (guest/) runs in
# M MiB of RAM and fills a 3/4 M MiB pattern region, the rest left zero, and
# dirties nothing (--rate 0).  QEMU's figure is its total-time (migrate
# command to completion: its destination was started beforehand and maps
# RAM lazily); the demo's is connect to commit, the destination's
# allocation included.  KVM where /dev/kvm works, else TCG.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=3 SIZE_MIB=1024 BACKENDS=tcp
while (($#)); do
  case "$1" in
    --build) BUILD=$2 ;;
    --runs) RUNS=$2 ;;
    --size-mib) SIZE_MIB=$2 ;;
    --backends) BACKENDS=$2 ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--size-mib M] [--backends LIST]" >&2; exit 2 ;;
  esac
  shift 2
done
RDMAMIG=$(readlink -f "$BUILD/tools/rdmamig")
GUEST=$(readlink -f "$BUILD/guest/rdmamig-guest.bin")
[ -x "$RDMAMIG" ] && [ -e "$GUEST" ] || { echo "bench-demo-vs-qemu: build first (bash scripts/setup.sh)" >&2; exit 1; }
ACCEL=kvm
if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  ACCEL=tcg
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rdmamig-demo-vs-qemu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "bench-demo-vs-qemu: $(qemu-system-x86_64 --version | head -1), $ACCEL, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "idle guest $SIZE_MIB MiB (3/4 of it data), $RUNS runs each, interleaved"
for i in $(seq "$RUNS"); do
  python3 scripts/qemu_migrate.py --rdmamig "$RDMAMIG" --guest "$GUEST" --workdir "$WORK" \
    --methods qemu-tcp --runs 1 --guest-mib $((SIZE_MIB * 3 / 4)) --ram-mib "$SIZE_MIB" \
    --rate 0 --accel "$ACCEL" --check last --boot-timeout 300 --json "$WORK/qemu-$i.json" \
    >"$WORK/qemu-$i.log" 2>&1 || { echo "QEMU tcp: run $i failed:"; tail -5 "$WORK/qemu-$i.log"; }
  for b in ${BACKENDS//,/ }; do
    "$RDMAMIG" demo --backend "$b" --guest-size "${SIZE_MIB}M" --json \
      >"$WORK/demo-${b//\//_}-$i.json" 2>"$WORK/demo-${b//\//_}-$i.err" ||
      { echo "demo over $b: run $i failed:"; tail -3 "$WORK/demo-${b//\//_}-$i.err"; }
  done
done
python3 - "$WORK" "$RUNS" "$BACKENDS" <<'EOF'
import glob, json, statistics, sys
work, runs, backends = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")

def qemu_ms(i):
    try:
        d = json.load(open(f"{work}/qemu-{i}.json"))
    except (OSError, ValueError):
        return None
    rs = d if isinstance(d, list) else d.get("results", [d])
    for r in rs:
        if r.get("method") == "qemu-tcp" and r.get("total_ms"):
            return float(r["total_ms"])
    return None

def demo(b, i):
    try:
        for line in open(f"{work}/demo-{b.replace('/', '_')}-{i}.json"):
            d = json.loads(line)
            if d.get("role") == "source" and d.get("committed") and d.get("verified"):
                return d
    except (OSError, ValueError):
        pass
    return None

q = [x for x in (qemu_ms(i) for i in range(1, runs + 1)) if x]
print("\n| method | total ms (median) | runs, ms | reservation ms | round 0 ms | vs QEMU tcp: |")
print("| --- | ---: | --- | ---: | ---: | ---: |")
qm = statistics.median(q) if q else 0
print(f"| QEMU tcp: | {qm:.0f} | {' '.join('%.0f' % x for x in q)} | | | 1.00 |")
for b in backends:
    ds = [d for d in (demo(b, i) for i in range(1, runs + 1)) if d]
    if not ds:
        print(f"| rdmamig demo over {b} | failed | | | | |")
        continue
    t = statistics.median(d["total_ms"] for d in ds)
    res = statistics.median(d["reserve_ms"] for d in ds)
    r0 = statistics.median(d["round_log"][0]["ms"] for d in ds)
    print(f"| rdmamig demo over {b} | {t:.0f} | {' '.join('%.0f' % d['total_ms'] for d in ds)} "
          f"| {res:.0f} | {r0:.0f} | {t / qm if qm else 0:.2f} |")
EOF
