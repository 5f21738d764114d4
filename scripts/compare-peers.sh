#!/usr/bin/env bash
# Runs W1 on weir and on the peer engines of ../shared/bench/peers, interleaved in one
# sitting (weir, Timely, Flink, weir, Timely, Flink, ...), and prints each run and the
# medians. The peers are copied to $PEER_DIR (default /tmp/weir-peers): shared/ may be
# read-only, and a copy inside this repository would join its Cargo workspace.
#
# usage: scripts/compare-peers.sh [N] [RUNS]        (defaults: 20000000 3)
# env:   PEERS="timely flink" (default: both), WORKLOAD=w1
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20000000}"
RUNS="${2:-3}"
PEERS="${PEERS:-timely flink}"
WORKLOAD="${WORKLOAD:-w1}"
SHARED="${SHARED:-../shared}"
PEER_DIR="${PEER_DIR:-/tmp/weir-peers}"

cargo build --release --quiet
mkdir -p "$PEER_DIR"
for p in $PEERS; do
  rsync -a --exclude target --exclude .venv --exclude build "$SHARED/bench/peers/$p/" "$PEER_DIR/$p/" 2>/dev/null \
    || cp -r "$SHARED/bench/peers/$p" "$PEER_DIR/"
done
if [[ " $PEERS " == *" timely "* ]]; then
  (cd "$PEER_DIR/timely" && cargo build --release --quiet)
fi

out="$PEER_DIR/compare-$(date +%Y%m%d-%H%M%S).tsv"
printf 'engine\trun\trecords_per_s\tpeak_rss_mb\tcheck\n' > "$out"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; load before: $(cut -d' ' -f1-3 /proc/loadavg); N=$N; runs=$RUNS"
for r in $(seq 1 "$RUNS"); do
  line=$(./target/release/weir bench "$WORKLOAD" --n "$N" --no-progress 2>/dev/null | tail -1)
  rps=$(sed -n 's/.*"records_per_sec":\([0-9.]*\).*/\1/p' <<< "$line")
  rss=$(sed -n 's/.*"peak_rss_bytes":\([0-9]*\).*/\1/p' <<< "$line")
  chk=$(sed -n 's/.*"check":"\([a-z]*\)".*/\1/p' <<< "$line")
  printf 'weir\t%s\t%.0f\t%.0f\t%s\n' "$r" "$rps" "$((rss / 1048576))" "$chk" | tee -a "$out"
  for p in $PEERS; do
    case "$p" in
      timely)
        res=$(cd "$PEER_DIR/timely" && RUNS=1 N="$N" WORKLOADS="$WORKLOAD" ./run.sh 2>&1 | grep -E "^${WORKLOAD^^} run")
        rps=$(sed -n 's/.*records_per_s=\([0-9]*\).*/\1/p' <<< "$res")
        rss=$(sed -n 's/.*peak_rss_mb=\([0-9.]*\).*/\1/p' <<< "$res")
        chk=$(sed -n 's/.*check=\([A-Z]*\).*/\1/p' <<< "$res")
        printf 'timely\t%s\t%s\t%s\t%s\n' "$r" "$rps" "$rss" "$chk" | tee -a "$out" ;;
      flink)
        res=$(cd "$PEER_DIR/flink" && WORKLOADS="$WORKLOAD" MODES=plain ./run.sh "$N" 1 2>&1 | grep -E "^workload=")
        rps=$(sed -n 's/.*records\/s=\([0-9]*\).*/\1/p' <<< "$res")
        rss=$(sed -n 's/.*peak_rss_mb=\([0-9]*\).*/\1/p' <<< "$res")
        chk=$(sed -n 's/.*check=\([A-Z]*\).*/\1/p' <<< "$res")
        printf 'flink\t%s\t%s\t%s\t%s\n' "$r" "$rps" "$rss" "$chk" | tee -a "$out" ;;
    esac
  done
done
echo "--- medians (records/s, peak RSS MB) ---"
python3 - "$out" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
engines = {}
for r in rows:
    engines.setdefault(r["engine"], []).append(r)
base = statistics.median(float(r["records_per_s"]) for r in engines["weir"])
for e, rs in engines.items():
    rps = statistics.median(float(r["records_per_s"] or 0) for r in rs)
    rss = statistics.median(float(r["peak_rss_mb"] or 0) for r in rs)
    print(f"{e}: records/s={rps:,.0f} peak_rss_mb={rss:.0f} checks={[r['check'] for r in rs]} weir/{e}={base / rps if rps else float('nan'):.2f}")
PY
echo "per-run table: $out"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
