#!/usr/bin/env bash
# Measures what metrics cost on the hot path: runs a workload with two `weir`
# binaries, interleaved in one sitting (base, new, base, new, ...), and prints every
# run (records/s and the process's CPU seconds, user + system, which a loaded machine
# disturbs less than wall time), the medians and their ratios. The order alternates
# (base first in odd runs, new first in even ones) so that a load that drifts during
# the sitting does not favour one side. The new binary serves metrics on a port the
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
cpu_file=$(mktemp)
trap 'rm -f "$cpu_file"' EXIT
# Runs binary $1 with the extra flags that follow: prints "records/s cpu-seconds".
run() {
  local bin=$1 out
  shift
  out=$(/usr/bin/time -f "%U %S" -o "$cpu_file" "$bin" bench "$WORKLOAD" --n "$N" --no-progress "$@" 2>/dev/null | tail -1)
  echo "$(field records_per_sec "$out") $(awk '{print $1 + $2}' "$cpu_file")"
}
base=() new=() base_cpu=() new_cpu=()
for i in $(seq "$RUNS"); do
  if (( i % 2 )); then
    read -r b bc < <(run "$BASE")
    read -r n nc < <(run "$NEW" --metrics-addr 127.0.0.1:0)
  else
    read -r n nc < <(run "$NEW" --metrics-addr 127.0.0.1:0)
    read -r b bc < <(run "$BASE")
  fi
  base+=("$b") new+=("$n") base_cpu+=("$bc") new_cpu+=("$nc")
  echo "run $i: base $b records/s ($bc s CPU), with metrics $n records/s ($nc s CPU)"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
mb=$(printf '%s\n' "${base[@]}" | median)
mn=$(printf '%s\n' "${new[@]}" | median)
cb=$(printf '%s\n' "${base_cpu[@]}" | median)
cn=$(printf '%s\n' "${new_cpu[@]}" | median)
echo "median records/s: base $mb, with metrics $mn; ratio with/base = $(ratio "$mn" "$mb")"
echo "median CPU s: base $cb, with metrics $cn; ratio with/base = $(ratio "$cn" "$cb")"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
