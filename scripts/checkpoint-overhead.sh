#!/usr/bin/env bash
# Measures what checkpointing costs: runs a workload plain and checkpointed (1 s
# interval, snapshots on local disk), interleaved in one sitting, and prints every
# run, the medians and their ratio, and the slowest checkpoint of the checkpointed
# runs. STATE_DIRS says which runs get a fresh --state-dir (sled and snapshots on
# disk there): "checkpointed" (the default, as the checkpointed mode of
# shared/bench/WORKLOADS.md asks: disk-backed keyed state), "both", or "none" (sled
# in a temporary store; the checkpointed run then writes its snapshots under $TMPDIR).
#
# usage: scripts/checkpoint-overhead.sh [WORKLOAD] [N] [RUNS]   (defaults: w1 20000000 5)
# env:   INTERVAL_MS=1000, STATE_DIRS=checkpointed|both|none,
#        EXTRA="..." (more `weir bench` flags for both kinds of run, e.g.
#        EXTRA="--watermark-alignment-ms 1000")
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD="${1:-w1}"
N="${2:-20000000}"
RUNS="${3:-5}"
INTERVAL_MS="${INTERVAL_MS:-1000}"
STATE_DIRS="${STATE_DIRS:-checkpointed}"
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"

cargo build --release --quiet
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<< "$2"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "workload $WORKLOAD, N=$N, runs=$RUNS, interval ${INTERVAL_MS} ms, state dirs: $STATE_DIRS, extra: ${EXTRA:-none}"
# Runs the benchmark: $1 is "plain" or "checkpointed", the rest extra arguments; a
# fresh state dir is given as STATE_DIRS says.
run() {
  local kind=$1 state=() dir=""
  shift
  if [[ "$STATE_DIRS" == both || "$STATE_DIRS" == "$kind" ]]; then
    dir=$(mktemp -d); state=(--state-dir "$dir")
  fi
  ./target/release/weir bench "$WORKLOAD" --n "$N" --no-progress "${state[@]}" "${EXTRA_ARGS[@]}" "$@" 2>/dev/null | tail -1
  [[ -z "$dir" ]] || rm -rf "$dir"
}
plain=() checkpointed=() longest=()
for r in $(seq 1 "$RUNS"); do
  line=$(run plain)
  [[ "$line" == *'"check":"passed"'* ]] || { echo "plain run $r failed: $line" >&2; exit 1; }
  plain+=("$(field records_per_sec "$line")")
  line=$(run checkpointed --checkpoint-interval-ms "$INTERVAL_MS")
  [[ "$line" == *'"check":"passed"'* ]] || { echo "checkpointed run $r failed: $line" >&2; exit 1; }
  checkpointed+=("$(field records_per_sec "$line")")
  longest+=("$(field checkpoint_longest_ms "$line")")
  printf 'run %s: plain %.2f M/s, checkpointed %.2f M/s (%s checkpoints, slowest %.1f ms, largest %s bytes)\n' \
    "$r" "$(bc -l <<< "${plain[-1]} / 1000000")" "$(bc -l <<< "${checkpointed[-1]} / 1000000")" \
    "$(field checkpoints_completed "$line")" "${longest[-1]}" "$(field checkpoint_largest_bytes "$line")"
done
p=$(printf '%s\n' "${plain[@]}" | median)
c=$(printf '%s\n' "${checkpointed[@]}" | median)
l=$(printf '%s\n' "${longest[@]}" | median)
printf 'median: plain %.2f M/s, checkpointed %.2f M/s, ratio %.3f; slowest checkpoint (median over runs) %.1f ms\n' \
  "$(bc -l <<< "$p / 1000000")" "$(bc -l <<< "$c / 1000000")" "$(bc -l <<< "$c / $p")" "$l"
