#!/usr/bin/env bash
# Benchmark (not a test): `rdmamig bench migrate` over verbs next to
# perftest's ib_write_bw on the same rxe0, in one Soft-RoCE VM boot,
# REPS times: ib_write_bw, then the migrations, which get that rep's
# bandwidth (--ref-bw), so the ratio total time / (guest size /
# ib_write_bw) pairs two measurements taken back to back.  Prints a
# markdown table of medians.
#
#   scripts/bench-softroce-migrate.sh [REPS] [GUEST_SIZE]   (default 3, 256M)
#
# ib_write_bw: 1 MiB messages, as many as the guest has bytes, tx depth 128
# (perftest's default), busy-polling; its "BW average" (MB/s of 2^20).
# rdmamig: whole-block registration, an idle guest and a guest dirtying at
# 5 MiB/s, 1 run each per rep.  The VM gets 2 GiB (both ends of the
# migration hold the guest).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
REPS=${1:-3}
SIZE=${2:-256M}
[ -x "$BUILD/tools/rdmamig" ] || { echo "bench-softroce-migrate: build first (scripts/setup.sh)" >&2; exit 1; }
bytes=$(numfmt --from=iec "$SIZE")
n=$((bytes / 1048576))

guest='
bw() { # ib_write_bw on rxe0, 1 MiB x N: bytes/s
  ib_write_bw -d rxe0 -s 1048576 -n '"$n"' -F >/tmp/srv.log 2>&1 &
  sleep 1
  m=$(ib_write_bw -d rxe0 -s 1048576 -n '"$n"' -F $RMIG_VM_IP 2>/dev/null | awk "\$1 == 1048576 { print \$4 }")
  wait
  echo "SOFTROCE-BENCH rep=$1 tool=ib_write_bw mib_s=$m"
  REF=$(awk -v m="$m" "BEGIN { printf \"%.0f\", m * 1048576 }")
}
mig() {
  tools/rdmamig bench migrate --backend verbs --listen $RMIG_VM_IP:0 --guest-size '"$SIZE"' \
    --dirty-rate 5M --registration whole --runs 1 --ref-bw $REF --json |
    sed "s/^/SOFTROCE-BENCH rep=$1 tool=rdmamig ref=$REF /"
}
for r in $(seq '"$REPS"'); do bw $r; mig $r; done
'
out=$(mktemp)
trap 'rm -f "$out"' EXIT
bash scripts/softroce-vm.sh -q --mem 2048 --timeout 1500 run "$guest" | tee "$out" >&2
python3 - "$out" "$REPS" "$SIZE" <<'EOF'
import json, re, statistics, sys
ib, rows, skipped = [], {}, []
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"SOFTROCE-BENCH rep=(\d+) tool=ib_write_bw mib_s=([0-9.]+)", line)
    if m:
        if float(m.group(2)) > 0:
            ib.append(float(m.group(2)))
        else:  # a failed perftest run: no reference for this rep
            skipped.append(m.group(1))
        continue
    m = re.search(r"SOFTROCE-BENCH rep=(\d+) tool=rdmamig ref=(\d+) (\{.*\})", line)
    if not m:
        continue
    j, ref = json.loads(m.group(3)), float(m.group(2))
    if j.get("failed") or not j.get("total_ms") or ref <= 0:
        continue
    ideal_ms = j["guest_bytes"] / ref * 1e3
    sent_ms = ideal_ms * j["sent_per_guest_byte"]
    rows.setdefault(j["guest"], []).append((j, j["total_ms"] / ideal_ms, ideal_ms,
                                            j["total_ms"] / sent_ms))
med = statistics.median
print(f"ib_write_bw on rxe0 (1 MiB writes): {' '.join(f'{x:.1f}' for x in ib)} MiB/s, median {med(ib):.1f} MiB/s\n" if ib else "ib_write_bw failed\n")
print("| guest | total ms | size / ib_write_bw ms | total / (size / ib_write_bw) | per-rep ratios | total / (bytes sent / ib_write_bw) | reservation ms | downtime ms | rounds | sent / guest | MiB/s round 0 | verified |")
print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for g in ("idle", "dirtying"):
    rs = rows.get(g, [])
    if not rs:
        print(f"| {g} | failed | | | | | | | | | | |")
        continue
    f = lambda k: med([r[0][k] for r in rs])
    print(f"| {g} | {f('total_ms'):.0f} | {med([r[2] for r in rs]):.0f} | {med([r[1] for r in rs]):.2f} | "
          f"{' '.join(f'{r[1]:.2f}' for r in rs)} | {med([r[3] for r in rs]):.2f} | "
          f"{f('reserve_ms'):.0f} | {f('downtime_ms'):.1f} | {f('rounds'):.0f} | "
          f"{f('sent_per_guest_byte'):.3f} | {f('round0_mib_s'):.1f} | "
          f"{'yes' if all(r[0]['verified'] for r in rs) else 'NO'} |")
if skipped:
    print(f"\nib_write_bw failed (reported 0) in rep(s) {', '.join(skipped)}: those reps are left out")
print(f"\nmedians of {sys.argv[2]} reps, guest {sys.argv[3]}, one VM (TCG, 2 vCPUs, 2 GiB), rxe0 on eth0 MTU 4500")
EOF
