#!/usr/bin/env bash
# A longer, seeded soak of the broker-level kill test (tests/kafka_wordcount.rs):
# runs the exactly-once and at-least-once kill tests against Tansu ROUNDS times,
# each with its own seed and KILLS SIGKILLs, and stops at the first failure,
# printing the seed that replays it (WEIR_KILL_SEED=<seed> cargo test ...).
#
#   scripts/kafka-kill-soak.sh [ROUNDS=10] [KILLS=30] [FIRST_SEED=1]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"
kills="${2:-30}"
first="${3:-1}"
bash scripts/test-deps.sh tansu >/dev/null
cargo build --tests --examples --quiet
for ((round = 0; round < rounds; round++)); do
    seed=$((first + round))
    for test in exactly_once_survives_sigkills_at_seeded_moments_with_every_count_once \
        at_least_once_loses_no_count_across_sigkills_at_seeded_moments; do
        echo "soak: round $((round + 1))/$rounds, seed $seed, $kills kills: $test"
        if ! WEIR_KILL_SEED="$seed" WEIR_KILL_COUNT="$kills" \
            cargo test --quiet --test kafka_wordcount "$test" -- --exact; then
            echo "soak: FAILED with seed $seed; replay: WEIR_KILL_SEED=$seed WEIR_KILL_COUNT=$kills cargo test --test kafka_wordcount $test -- --exact" >&2
            exit 1
        fi
    done
done
echo "soak: $rounds rounds of $kills kills passed"
