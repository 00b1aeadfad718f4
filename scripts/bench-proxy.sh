#!/usr/bin/env bash
# Benchmark (not a test): QEMU's own unix: migration carried by rdmamig
# proxy-out/proxy-in over verbs, across the two-VM pair (softroce-vm.sh pair:
# two Soft-RoCE VMs joined on loopback, each its own rxe0), against QEMU's
# tcp: with the same number of multifd channels and against QEMU's rdma:.
# The same QEMU 10 binary (scripts/build-qemu.sh; its tcp:, unix:, rdma: and
# multifd code is upstream's) and the same guest migrate back and forth
# (scripts/qemu_migrate_pair.py), RUNS times each; medians of the total time
# (QEMU's total-time), the pause (the source's STOP event to the
# destination's RESUME event, across the two VMs' clocks: the offset is
# measured before the migrations) and MB sent.  Prints a markdown table with
# the ratios against the issue's targets (faster than tcp: at equal
# channels; a pause no longer than tcp:'s).
#
#   scripts/bench-proxy.sh [--runs N] [--channels C] [--guest-mib M] [--ram-mib R] [--report]
#
# Defaults: 5 runs, 2 multifd channels (and 0: the main connection only),
# an idle guest (QEMU is TCG in the VM) with 64 MiB of pattern in 128 MiB.
# --report prints the table of the last run again (DIR/qemu10-vm/bench-proxy).
# The binary: $RMIG_QEMU, else build-qemu.sh --cached.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=5
CH=2
GMIB=64
RMIB=128
RUN=1
while (($#)); do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --channels) CH=$2; shift 2 ;;
    --guest-mib) GMIB=$2; shift 2 ;;
    --ram-mib) RMIB=$2; shift 2 ;;
    --report) RUN=0; shift ;;
    *) echo "usage: $0 [--runs N] [--channels C] [--guest-mib M] [--ram-mib R] [--report]" >&2; exit 2 ;;
  esac
done
fail() { echo "bench-proxy: $*" >&2; exit 1; }
B=$(realpath "$BUILD")
[ -x "$B/tools/rdmamig" ] && [ -e "$B/guest/rdmamig-guest.bin" ] || fail "build first (bash scripts/setup.sh)"
OUT=$B/qemu10-vm/bench-proxy
METHODS="proxy:verbs:0,qemu-tcp,proxy:verbs:$CH,qemu-tcp:$CH,qemu-rdma"
if ((RUN)); then
  QBIN=${RMIG_QEMU:-}
  [ -n "$QBIN" ] || QBIN=$(bash scripts/build-qemu.sh --cached 2>/dev/null) ||
    fail "QEMU 10 is not built (bash scripts/build-qemu.sh, or set RMIG_QEMU)"
  . scripts/vm-tools.sh
  stage_vm_tools "$B"
  VMD=$B/qemu10-vm
  stage_vm_qemu "$QBIN" "$VMD" || fail "cannot stage $QBIN for the VM"
  cp scripts/qemu_migrate.py scripts/qemu_migrate_pair.py "$VMD/"
  mkdir -p "$OUT"
  rm -f "$OUT"/pair.log "$OUT"/results-*.json
  PY="env $VM_QEMU_ENV PYTHONHOME=$VMT/py $VMT/bin/python3 -S"
  # Every wait on the peer 60 s: the VMs are emulated on a loaded host.
  pair() { echo "guard pair 2400 $PY $VMD/qemu_migrate_pair.py --rdmamig $B/tools/rdmamig \
    --guest $B/guest/rdmamig-guest.bin --firmware $VMD/firmware --guest-mib $GMIB --ram-mib $RMIB \
    --rate 0 --stream-timeout-ms 60000 --migrate-timeout 300 --boot-timeout 300 --start-timeout 60 \
    --me $1 --host \$RMIG_VM_IP --peer \$RMIG_PEER_IP --dir \$RMIG_VM_RUN --workdir /tmp/qm \
    --methods $METHODS --runs $RUNS; st=\$?; cp \$RMIG_VM_RUN/results-$1.json $OUT/ 2>/dev/null; \
    for f in /tmp/qm/proxy-*.stderr; do [ -e \$f ] && { echo \"--- \$f\"; tail -3 \$f; }; done; exit \$st"; }
  echo "bench-proxy: two VMs, $RUNS runs x ($METHODS), $GMIB MiB guest ($("$QBIN" --version | head -1))" >&2
  bash scripts/softroce-vm.sh -q --mem 1024 --timeout 2700 pair "$(pair a)" "$(pair b)" >"$OUT/pair.log" 2>&1 ||
    { tail -40 "$OUT/pair.log" >&2; fail "the two-VM run failed (log $OUT/pair.log)"; }
  grep -a 'qemu-migrate:' "$OUT/pair.log" >&2 || true
fi
python3 - "$OUT" "$RUNS" "$GMIB" "$RMIB" "$CH" <<'EOF'
import json, os, statistics, sys
out, runs, gmib, rmib, ch = sys.argv[1:]
rows = []
for me in ("a", "b"):
    p = os.path.join(out, f"results-{me}.json")
    if os.path.exists(p):
        rows += json.load(open(p))
if not rows:
    sys.exit(f"bench-proxy: no results in {out}")
med = lambda xs: statistics.median(xs) if xs else None
fmt = lambda x, p=0: "-" if x is None else f"{x:.{p}f}"
def label(m):
    if m.startswith("proxy:"):
        _, b, n = m.split(":")
        return f"unix: via rdmamig proxy over {b}, {n} multifd channels"
    if m.startswith("qemu-tcp"):
        n = m.partition(":")[2] or "0"
        return f"QEMU tcp:, {n} multifd channels"
    return "QEMU rdma:"
meds, counts = {}, {}
for m in dict.fromkeys(r["method"] for r in rows):
    rs = [r for r in rows if r["method"] == m]
    counts[m] = len(rs)
    meds[m] = {k: med([r[k] for r in rs if r.get(k) is not None])
               for k in ("total_ms", "wall_ms", "pause_ms", "mbytes")}
err = max(r["pause_err_ms"] for r in rows)
print(f"\nTwo VMs (socket link on 127.0.0.1, each its own rxe0), medians of {runs} per method "
      f"(both directions); guest {gmib} MiB of pattern in {rmib} MiB, idle; pause across two "
      f"clocks, +- {err:.1f} ms\n")
print("| channel | runs | total ms | pause STOP->RESUME ms | MB sent | total / tcp: same channels "
      "| pause / tcp: same channels | total / rdma: | pause / rdma: |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
def ratio(m, ref, k):
    a, b = meds.get(m, {}).get(k), meds.get(ref, {}).get(k)
    return fmt(a / b, 2) if a and b else "-"
for m, d in meds.items():
    tcp = None
    if m.startswith("proxy:"):
        n = m.split(":")[2]
        tcp = "qemu-tcp" if n == "0" else f"qemu-tcp:{n}"
    print(f"| {label(m)} | {counts[m]} | {fmt(d['total_ms'])} | {fmt(d['pause_ms'], 1)} | "
          f"{fmt(d['mbytes'], 1)} | {ratio(m, tcp, 'total_ms') if tcp else ''} | "
          f"{ratio(m, tcp, 'pause_ms') if tcp else ''} | "
          f"{ratio(m, 'qemu-rdma', 'total_ms') if tcp else ''} | "
          f"{ratio(m, 'qemu-rdma', 'pause_ms') if tcp else ''} |")
EOF
