#!/usr/bin/env bash
# Measures what metrics cost on the hot path: runs a workload with two `weir`
# binaries, interleaved in one sitting (base, new, base, new, ...), and prints every
# run, the medians and their ratio. The new binary serves metrics on a port the
# system picks (--metrics-addr 127.0.0.1:0); the base binary is a build of the
# commit before metrics (it has no such flag).
#
# usage: scripts/metrics-overhead.sh BASE_BIN NEW_BIN [WORKLOAD] [N] [RUNS]
#        (defaults: w1 20000000 5). Build the base with e.g.
#        git worktree add /tmp/base <rev> && (cd /tmp/base && cargo build --release)
set -euo pipefail
BASE="$1"
NEW="$2"
WORKLOAD="${3:-w1}"
N="${4:-20000000}"
RUNS="${5:-5}"
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<< "$2"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "workload $WORKLOAD, N=$N, runs=$RUNS"
base=() new=()
for i in $(seq "$RUNS"); do
  b=$("$BASE" bench "$WORKLOAD" --n "$N" --no-progress 2>/dev/null | tail -1)
  n=$("$NEW" bench "$WORKLOAD" --n "$N" --no-progress --metrics-addr 127.0.0.1:0 2>/dev/null | tail -1)
  base+=("$(field records_per_sec "$b")")
  new+=("$(field records_per_sec "$n")")
  echo "run $i: base ${base[-1]} records/s, with metrics ${new[-1]} records/s"
done
mb=$(printf '%s\n' "${base[@]}" | median)
mn=$(printf '%s\n' "${new[@]}" | median)
echo "median: base $mb, with metrics $mn records/s; ratio with/base = $(awk -v a="$mn" -v b="$mb" 'BEGIN {printf "%.3f", a / b}')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
