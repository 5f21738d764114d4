#!/usr/bin/env bash
# Compares two builds of weir on one benchmark workload, interleaved in one sitting
# (so load from other processes hits both alike): ./weir-base and ./weir-new in the
# current directory, each run RUNS times in turn; prints records/s and the check
# for each run, then the medians and their ratio (new / base).
#
# usage: scripts/interleaved-bench.sh WORKLOAD N RUNS [checkpointed]
#   (run from the binaries' dir). With `checkpointed`, every run takes a
#   checkpoint every second into a fresh state directory, as WORKLOADS.md defines
#   the checkpointed variant.
set -euo pipefail
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<< "$2"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A rates
for r in $(seq 1 "$3"); do
  for b in base new; do
    extra=()
    if [[ "${4:-}" == checkpointed ]]; then
      dir=$(mktemp -d /tmp/weir-bench-XXXXXX)
      extra=(--checkpoint-interval-ms 1000 --state-dir "$dir")
    fi
    line=$(./weir-$b bench "$1" --n "$2" --no-progress "${extra[@]}" 2>/dev/null | tail -1)
    [[ -n "${dir:-}" ]] && rm -rf "$dir" && dir=
    rate=$(field records_per_sec "$line")
    rates[$b]+="$rate "
    echo "$1 run $r $b $rate $(grep -o '"check":"[a-z]*"' <<< "$line")"
  done
done
base=$(tr ' ' '\n' <<< "${rates[base]}" | grep . | median)
new=$(tr ' ' '\n' <<< "${rates[new]}" | grep . | median)
echo "$1 median base $base new $new ratio $(awk -v a="$new" -v b="$base" 'BEGIN {printf "%.3f", a / b}')"
