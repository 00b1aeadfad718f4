#!/usr/bin/env bash
# The benchmarks' JSON as SVG plots (gnuplot) for docs/benchmarks.md.
#
#   scripts/plot-benchmarks.sh [DATA_DIR] [OUT_DIR]     (default docs/data docs/img)
#
# Reads, where present (each a file of the commands' --json output):
#   transport.json   rdmamig bench transport --json
#                    -> transport.svg: MB/s against write size, per backend
#   vs-transport.json  rdmamig bench migrate --vs-transport --json, each line
#                    with a "label" (before / after, as scripts/bench-engine-ab.sh
#                    writes it)
#                    -> split.svg: the time split of each migration, stacked
#                       (reservation, setup, rounds, stop-and-copy), after
#                    -> efficiency.svg: round-0 rate / 1 MiB write rate,
#                       before and after
#   channels.json    rdmamig bench migrate --channels 1,2,4 --json
#                    -> channels.svg: round-0 MiB/s against channels
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-docs/data}
OUT=${2:-docs/img}
command -v gnuplot >/dev/null || { echo "plot-benchmarks: no gnuplot (apt-get install gnuplot-nox)" >&2; exit 1; }
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
TERM_SVG="set terminal svg size 720,420 dynamic font 'sans,12' background '#ffffff'"

# JSON lines -> gnuplot data files (medians where a key repeats).
python3 - "$DATA" "$TMP" <<'EOF'
import json, os, statistics, sys
data, tmp = sys.argv[1], sys.argv[2]

def lines(name):
    p = os.path.join(data, name)
    if not os.path.exists(p):
        return []
    out = []
    for l in open(p):
        l = l.strip()
        if l.startswith("{"):
            out.append(json.loads(l))
    return out

# transport: one column per backend, rows by size
rows = [r for d in lines("transport.json") for r in d.get("results", []) if r.get("ok")]
if rows:
    bes = sorted({r["backend"] for r in rows})
    sizes = sorted({r["size"] for r in rows})
    with open(f"{tmp}/transport.dat", "w") as f:
        f.write("size " + " ".join(f'"{b}"' for b in bes) + "\n")
        for s in sizes:
            vals = []
            for b in bes:
                v = [r["MBps"] for r in rows if r["backend"] == b and r["size"] == s]
                vals.append("%.1f" % statistics.median(v) if v else "NaN")
            f.write(f"{s / 1024:.0f} " + " ".join(vals) + "\n")

vs = [r for r in lines("vs-transport.json") if r.get("bench") == "vs-transport"
      and r["runs"] > r["failed"]]
def med(rs, k):
    return statistics.median(r[k] for r in rs)
if vs:
    keys = []
    for r in vs:
        k = (r["backend"], r["guest"])
        if k not in keys:
            keys.append(k)
    with open(f"{tmp}/split.dat", "w") as f:
        f.write("run reservation setup rounds stop-and-copy\n")
        for b, g in keys:
            rs = [r for r in vs if (r["backend"], r["guest"]) == (b, g)
                  and r.get("label", "after") == "after"]
            if rs:
                f.write(f'"{b} {g}" {med(rs, "reservation_ms"):.1f} {med(rs, "setup_ms"):.1f} '
                        f'{med(rs, "rounds_ms"):.1f} {med(rs, "stop_copy_ms"):.1f}\n')
    with open(f"{tmp}/efficiency.dat", "w") as f:
        f.write("run before after\n")
        for b, g in keys:
            vals = []
            for lab in ("before", "after"):
                rs = [r for r in vs if (r["backend"], r["guest"]) == (b, g)
                      and r.get("label", "after") == lab]
                vals.append("%.3f" % med(rs, "efficiency") if rs else "NaN")
            f.write(f'"{b} {g}" ' + " ".join(vals) + "\n")

ch = [r for r in lines("channels.json") if "channels" in r and r.get("verified")]
if ch:
    bes = sorted({r["backend"] for r in ch})
    counts = sorted({r["channels"] for r in ch})
    with open(f"{tmp}/channels.dat", "w") as f:
        f.write("channels " + " ".join(f'"{b}"' for b in bes) + "\n")
        for c in counts:
            vals = []
            for b in bes:
                v = [r["round0_mib_s"] for r in ch if r["backend"] == b and r["channels"] == c]
                vals.append("%.1f" % statistics.median(v) if v else "NaN")
            f.write(f"{c} " + " ".join(vals) + "\n")
EOF

made=()
if [ -s "$TMP/transport.dat" ]; then
  n=$(head -1 "$TMP/transport.dat" | wc -w)
  gnuplot <<EOF
$TERM_SVG
set output '$OUT/transport.svg'
set title 'One-sided write throughput on loopback (rdmamig bench transport)'
set logscale x 2
set xlabel 'write size (KiB)'
set ylabel 'MB/s (10^6 bytes)'
set key left top
set grid
plot for [i=2:$n] '$TMP/transport.dat' using 1:i with linespoints lw 2 title columnheader(i)
EOF
  made+=("$OUT/transport.svg")
fi
if [ -s "$TMP/split.dat" ]; then
  gnuplot <<EOF
$TERM_SVG
set output '$OUT/split.svg'
set title 'Where a migration spends its time (rdmamig bench migrate --vs-transport)'
set style data histograms
set style histogram rowstacked
set style fill solid 0.8 border -1
set boxwidth 0.6
set ylabel 'ms (median)'
set xtics rotate by -30
set key left top
set grid y
plot '$TMP/split.dat' using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3), \
     '' using 4 title columnheader(4), '' using 5 title columnheader(5)
EOF
  made+=("$OUT/split.svg")
fi
if [ -s "$TMP/efficiency.dat" ]; then
  gnuplot <<EOF
$TERM_SVG
set output '$OUT/efficiency.svg'
set title 'Round-0 rate / 1 MiB write rate of the same backend, same run'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel 'efficiency'
set yrange [0:*]
set xtics rotate by -30
set key left top
set grid y
set arrow from graph 0, first 0.8 to graph 1, first 0.8 nohead dt 2 lw 2
set label 'target 0.8' at graph 0.02, first 0.84
plot '$TMP/efficiency.dat' using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3)
EOF
  made+=("$OUT/efficiency.svg")
fi
if [ -s "$TMP/channels.dat" ]; then
  n=$(head -1 "$TMP/channels.dat" | wc -w)
  gnuplot <<EOF
$TERM_SVG
set output '$OUT/channels.svg'
set title 'Round-0 rate against channels (idle guest, rdmamig bench migrate --channels)'
set xlabel 'channels'
set ylabel 'MiB/s, round 0 (median)'
set xtics (1, 2, 4, 8)
set key left top
set grid
plot for [i=2:$n] '$TMP/channels.dat' using 1:i with linespoints lw 2 title columnheader(i)
EOF
  made+=("$OUT/channels.svg")
fi
[ ${#made[@]} -gt 0 ] || { echo "plot-benchmarks: no data in $DATA" >&2; exit 1; }
printf '%s\n' "${made[@]}"
