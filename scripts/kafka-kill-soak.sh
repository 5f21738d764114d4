#!/usr/bin/env bash
# A longer, seeded soak of the broker-level kill test (tests/kafka_wordcount.rs):
# runs the exactly-once and at-least-once kill tests against Tansu ROUNDS times
# (with WEIR_KAFKA_BOOTSTRAP set, the exact exactly-once check against that Apache
# Kafka too),
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
    for test in exactly_once_resumes_after_every_sigkill_at_seeded_moments_and_loses_no_count \
        at_least_once_loses_no_count_across_sigkills_at_seeded_moments \
        ${WEIR_KAFKA_BOOTSTRAP:+exactly_once_after_sigkills_every_count_once_needs_a_real_kafka_named_by_weir_kafka_bootstrap}; do
        echo "soak: round $((round + 1))/$rounds, seed $seed, $kills kills: $test"
        if ! WEIR_KILL_SEED="$seed" WEIR_KILL_COUNT="$kills" \
            cargo test --quiet --test kafka_wordcount "$test" -- --exact --include-ignored; then
            echo "soak: FAILED with seed $seed; replay: WEIR_KILL_SEED=$seed WEIR_KILL_COUNT=$kills cargo test --test kafka_wordcount $test -- --exact" >&2
            exit 1
        fi
    done
done
echo "soak: $rounds rounds of $kills kills passed"
