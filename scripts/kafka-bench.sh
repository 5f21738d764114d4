#!/usr/bin/env bash
# Kafka -> keyed count throughput against a local Tansu broker, next to that
# broker's raw produce and consume rates on the same machine (docs/benchmarks.md).
#
#   scripts/kafka-bench.sh [RUNS] [-- extra `weir bench` flags]
#
# Each run starts a fresh broker (in-memory storage) on a free 127.0.0.1 port and
# runs `weir bench kafka-w1`, which (1) fills a new topic with W1's lines using a
# plain rdkafka producer (timed: raw produce), (2) reads it back with a plain
# consumer (timed: raw consume), and (3) runs the weir job Kafka source -> words ->
# key by word -> running count -> Kafka sink into an output topic (timed), then
# reads the output back read_committed and checks it like W1 (not timed). The
# broker is stopped after each run. Prints every JSON line, then the medians.
#
# Environment: N (words, default 5000000), PARTITIONS (default 2), WORKERS
# (default 2). Examples:
#   scripts/kafka-bench.sh 3 -- --kafka-delivery at-least-once
#   scripts/kafka-bench.sh 3 -- --kafka-delivery exactly-once --checkpoint-interval-ms 1000
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

runs="${1:-3}"
shift || true
[ "${1:-}" = "--" ] && shift
extra=("$@")
n="${N:-5000000}"
partitions="${PARTITIONS:-2}"
workers="${WORKERS:-2}"

cargo build --release --quiet --bin weir
weir="$root/target/release/weir"
tansu="$(bash scripts/test-deps.sh tansu)"

work="$(mktemp -d)"
broker_pid=""
stop_broker() {
    if [ -n "$broker_pid" ]; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
        broker_pid=""
    fi
}
trap 'stop_broker; rm -rf "$work"' EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_broker() {
    local port="$1"
    "$tansu" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.05
    done
    cat "$work/tansu.log" >&2
    echo "kafka-bench: the broker did not start on port $port" >&2
    exit 1
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "# tansu: $("$tansu" --version 2>/dev/null); N=$n words, $partitions partitions, $workers workers ${extra[*]:-}"
results="$work/results.jsonl"
for run in $(seq 1 "$runs"); do
    port="$(free_port)"
    start_broker "$port"
    "$weir" bench kafka-w1 --n "$n" --workers "$workers" \
        --kafka-brokers "127.0.0.1:$port" --kafka-partitions "$partitions" \
        "${extra[@]}" | tee -a "$results"
    stop_broker
    echo "# run $run of $runs done"
done

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["workload"], []).append(r)
print("\nworkload            median words/s   median s   runs  checks")
for w in ["kafka-raw-produce", "kafka-raw-consume", "kafka-w1"]:
    rs = by.get(w, [])
    if not rs:
        continue
    rate = statistics.median(r["records_per_sec"] for r in rs)
    secs = statistics.median(r["seconds"] for r in rs)
    checks = ",".join(sorted({r["check"] for r in rs}))
    print(f"{w:<20}{rate:>15,.0f}{secs:>11.2f}{len(rs):>7}  {checks}")
EOF
