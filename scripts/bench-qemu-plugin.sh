#!/usr/bin/env bash
# Benchmark (not a test): the patched QEMU 10 (integrations/qemu/,
# scripts/build-qemu.sh) migrating the test guest in the Soft-RoCE VM, the
# same binary and the same guest by four channels:
#   rdmamig:  (QEMU loads librdmamig.so; verbs backend, one-sided writes),
#   rdma:     (QEMU's own RDMA migration, same rxe0),
#   tcp:      (QEMU's own, over eth0 under rxe0),
#   exec:rdmamig (the stock path: rdmamig send/recv over verbs),
# RUNS times each (medians: total time, the pause from the source's STOP
# to the destination's RESUME event, MB sent), with ib_write_bw on the same
# rxe0 before and after, in one VM boot.  Then two VMs joined on loopback
# (softroce-vm.sh pair, each its own rxe0): rdmamig: against tcp:, the guest
# migrating back and forth (scripts/qemu_migrate_pair.py).  Prints markdown
# tables with the ratios.
#
#   scripts/bench-qemu-plugin.sh [--runs N] [--guest-mib M] [--ram-mib R]
#                                [--one-only | --pair-only | --report]
#
# --report prints the tables of the last run again (from DIR/qemu10-vm/bench).
#
# Defaults: 5 runs, an idle guest (QEMU is TCG in the VM) with 64 MiB of
# pattern in 128 MiB.  The binary: $RMIG_QEMU, else build-qemu.sh --cached.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=5
GMIB=64
RMIB=128
ONE=1
PAIR=1
while (($#)); do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --guest-mib) GMIB=$2; shift 2 ;;
    --ram-mib) RMIB=$2; shift 2 ;;
    --one-only) PAIR=0; shift ;;
    --pair-only) ONE=0; shift ;;
    --report) ONE=0; PAIR=0; shift ;;
    *) echo "usage: $0 [--runs N] [--guest-mib M] [--ram-mib R] [--one-only|--pair-only]" >&2; exit 2 ;;
  esac
done
fail() { echo "bench-qemu-plugin: $*" >&2; exit 1; }
B=$(realpath "$BUILD")
[ -x "$B/tools/rdmamig" ] && [ -e "$B/guest/rdmamig-guest.bin" ] && [ -e "$B/librdmamig.so.0" ] ||
  fail "build first (bash scripts/setup.sh)"
OUT=$B/qemu10-vm/bench
if ((ONE || PAIR)); then
QBIN=${RMIG_QEMU:-}
[ -n "$QBIN" ] || QBIN=$(bash scripts/build-qemu.sh --cached 2>/dev/null) ||
  fail "the patched QEMU is not built (bash scripts/build-qemu.sh, or set RMIG_QEMU)"
grep -q qio-channel-rdmamig "$QBIN" || fail "$QBIN has no rdmamig: transport"
. scripts/vm-tools.sh
stage_vm_tools "$B"
VMD=$B/qemu10-vm
stage_vm_qemu "$QBIN" "$VMD" || fail "cannot stage $QBIN for the VM"
cp scripts/qemu_migrate.py scripts/qemu_migrate_pair.py "$VMD/"
LIB=$(readlink -f "$B/librdmamig.so.0")
mkdir -p "$OUT"
((ONE == 0)) || rm -f "$OUT"/one.* "$OUT"/ib.txt
((PAIR == 0)) || rm -f "$OUT"/pair.log "$OUT"/results-*.json
PY="env $VM_QEMU_ENV PYTHONHOME=$VMT/py $VMT/bin/python3 -S"
COMMON="--rdmamig $B/tools/rdmamig --guest $B/guest/rdmamig-guest.bin --library $LIB \
  --firmware $VMD/firmware --guest-mib $GMIB --ram-mib $RMIB --rate 0 --stream-timeout-ms 60000 \
  --migrate-timeout 300 --boot-timeout 300 --start-timeout 60"

if ((ONE)); then
  one='
bw() { # ib_write_bw on rxe0, 1 MiB x the guest size, MiB/s
  ib_write_bw -d rxe0 -s 1048576 -n '"$GMIB"' -F >/tmp/srv.log 2>&1 &
  sleep 1
  m=$(ib_write_bw -d rxe0 -s 1048576 -n '"$GMIB"' -F $RMIG_VM_IP 2>/dev/null | awk "\$1 == 1048576 { print \$4 }")
  wait
  echo "SOFTROCE-BENCH tool=ib_write_bw when=$1 mib_s=${m:-0}" | tee -a '"$OUT"'/ib.txt
}
bw before
guard bench 2400 '"$PY $VMD/qemu_migrate.py $COMMON"' --accel tcg --host $RMIG_VM_IP --workdir /tmp/qm \
  --methods plugin:verbs,qemu-rdma,qemu-tcp,rdmamig:verbs --runs '"$RUNS"' --check last \
  --json '"$OUT"'/one.json --table; st=$?
bw after
exit $st'
  echo "bench-qemu-plugin: one VM, $RUNS runs x 4 channels, $GMIB MiB guest ($("$QBIN" --version | head -1))" >&2
  bash scripts/softroce-vm.sh -q --mem 2048 --timeout 2700 run "$one" >"$OUT/one.log" 2>&1 ||
    { tail -40 "$OUT/one.log" >&2; fail "the one-VM run failed (log $OUT/one.log)"; }
  grep -a 'qemu-migrate:' "$OUT/one.log" >&2 || true
fi
if ((PAIR)); then
  pair() { echo "guard pair 2400 $PY $VMD/qemu_migrate_pair.py $COMMON --me $1 --host \$RMIG_VM_IP \
    --peer \$RMIG_PEER_IP --dir \$RMIG_VM_RUN --workdir /tmp/qm --methods plugin:verbs,qemu-tcp \
    --runs $RUNS; st=\$?; cp \$RMIG_VM_RUN/results-$1.json $OUT/ 2>/dev/null; exit \$st"; }
  echo "bench-qemu-plugin: two VMs, $RUNS runs x 2 channels" >&2
  bash scripts/softroce-vm.sh -q --mem 1024 --timeout 2700 pair "$(pair a)" "$(pair b)" >"$OUT/pair.log" 2>&1 ||
    { tail -40 "$OUT/pair.log" >&2; fail "the two-VM run failed (log $OUT/pair.log)"; }
  grep -a 'qemu-migrate:' "$OUT/pair.log" >&2 || true
fi
fi

python3 - "$OUT" "$RUNS" "$GMIB" "$RMIB" <<'EOF'
import json, os, re, statistics, sys
out, runs, gmib, rmib = sys.argv[1:]
med = lambda xs: statistics.median(xs) if xs else None
fmt = lambda x, p=0: "-" if x is None else f"{x:.{p}f}"
LABEL = {"plugin:verbs": "rdmamig: (verbs, QEMU loads librdmamig)", "qemu-rdma": "QEMU rdma:",
         "qemu-tcp": "QEMU tcp:", "rdmamig:verbs": "exec:rdmamig (send/recv over verbs)"}

def table(rows, refs):
    ms = [m for m in LABEL if any(r["method"] == m for r in rows)]
    meds = {m: {k: med([r[k] for r in rows if r["method"] == m and r.get(k) is not None])
                for k in ("total_ms", "pause_ms", "mbytes")} for m in ms}
    head = "| channel | total ms | pause STOP->RESUME ms | MB sent | " + \
           " | ".join(f"total / {LABEL[r]} | pause / {LABEL[r]}" for r in refs) + " |"
    print(head)
    print("|---" * (4 + 2 * len(refs)) + "|")
    for m in ms:
        d = meds[m]
        cells = []
        for ref in refs:
            rd = meds.get(ref, {})
            for k in ("total_ms", "pause_ms"):
                cells.append(fmt(d[k] / rd[k], 2) if d[k] and rd.get(k) else "-")
        print(f"| {LABEL[m]} | {fmt(d['total_ms'])} | {fmt(d['pause_ms'], 1)} | {fmt(d['mbytes'], 1)} | "
              + " | ".join(cells) + " |")
    return meds

p = os.path.join(out, "one.json")
if os.path.exists(p):
    rows = json.load(open(p))
    ib = {}
    for line in open(os.path.join(out, "ib.txt")):
        m = re.search(r"when=(\w+) mib_s=([0-9.]+)", line)
        if m:
            ib[m.group(1)] = float(m.group(2))
    print(f"\nOne VM (rxe0 loopback), medians of {runs}; guest {gmib} MiB of pattern in {rmib} MiB, idle; "
          f"ib_write_bw (1 MiB writes) {ib.get('before', 0):.1f} MiB/s before, {ib.get('after', 0):.1f} after\n")
    meds = table(rows, ["qemu-rdma", "qemu-tcp"])
    if ib.get("before") and "plugin:verbs" in meds and meds["plugin:verbs"]["total_ms"]:
        ideal = int(gmib) / statistics.mean([v for v in ib.values() if v > 0]) * 1000
        print(f"\nguest size / ib_write_bw = {ideal:.0f} ms; rdmamig: total / that = "
              f"{meds['plugin:verbs']['total_ms'] / ideal:.2f}")
rows = []
for me in ("a", "b"):
    p = os.path.join(out, f"results-{me}.json")
    if os.path.exists(p):
        rows += json.load(open(p))
if rows:
    err = max(r["pause_err_ms"] for r in rows)
    print(f"\nTwo VMs (socket link on 127.0.0.1, each its own rxe0), medians of {runs} "
          f"(both directions); pause across two clocks, +- {err:.1f} ms\n")
    table(rows, ["qemu-tcp"])
EOF
