#!/usr/bin/env bash
# Compares two builds of weir on one benchmark workload, interleaved in one sitting
# (so load from other processes hits both alike): ./weir-base and ./weir-new in the
# current directory, each run RUNS times in turn; prints records/s and the check.
#
# usage: scripts/interleaved-bench.sh WORKLOAD N RUNS   (run from the binaries' dir)
set -euo pipefail
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<< "$2"; }
for r in $(seq 1 "$3"); do
  for b in base new; do
    line=$(./weir-$b bench "$1" --n "$2" --no-progress 2>/dev/null | tail -1)
    echo "$1 run $r $b $(field records_per_sec "$line") $(grep -o '"check":"[a-z]*"' <<< "$line")"
  done
done
