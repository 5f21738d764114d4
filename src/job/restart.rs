//! What to do after a failure: whether and when to restart a job
//! ([`RestartTracker`]), and when a record that keeps failing it should be set
//! aside as a dead letter ([`PoisonTracker`]).
//!
//! Both are pure bookkeeping: they do no I/O and never read a clock. The
//! caller passes the time of each failure as an [`Instant`] and the length of
//! the run that failed, so every rule can be tested to the exact count.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::config::{PoisonConfig, RestartConfig, RestartStrategyName};

/// How a failed job is restarted, modelled on Flink's strategies of the same
/// names.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    /// Never restart: the first failure fails the job.
    None,
    /// Restart after `delay`, at most `attempts` times over the job's life.
    FixedDelay {
        /// Restarts allowed in total.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restart without limit. The first restart waits `initial`; each further
    /// failure multiplies the wait by `multiplier`, up to `max`. A run that
    /// lasted at least `reset_after` before failing starts over at `initial`.
    ExponentialBackoff {
        /// Wait before the first restart (and after a reset).
        initial: Duration,
        /// Longest wait.
        max: Duration,
        /// Factor applied to the wait after each failure; at least 1.
        multiplier: f64,
        /// A failed run at least this long resets the wait to `initial`.
        reset_after: Duration,
    },
    /// Restart after `delay` unless more than `max_failures` failures
    /// (counting the current one) fall within the last `interval`.
    FailureRate {
        /// Failures tolerated within `interval`.
        max_failures: u32,
        /// The sliding window failures are counted in.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

impl RestartStrategy {
    /// The strategy a (validated) `[restart]` section describes; keys the
    /// chosen strategy does not read are ignored.
    pub fn from_config(config: &RestartConfig) -> Self {
        let ms = Duration::from_millis;
        match config.strategy {
            RestartStrategyName::None => RestartStrategy::None,
            RestartStrategyName::FixedDelay => RestartStrategy::FixedDelay {
                attempts: config.attempts,
                delay: ms(config.delay_ms),
            },
            RestartStrategyName::ExponentialBackoff => RestartStrategy::ExponentialBackoff {
                initial: ms(config.initial_delay_ms),
                max: ms(config.max_delay_ms),
                multiplier: config.multiplier,
                reset_after: ms(config.reset_after_ms),
            },
            RestartStrategyName::FailureRate => RestartStrategy::FailureRate {
                max_failures: config.max_failures,
                interval: ms(config.failure_interval_ms),
                delay: ms(config.delay_ms),
            },
        }
    }

    /// The strategy's name as written in `restart.strategy`.
    pub fn name(&self) -> &'static str {
        self.config_name().as_str()
    }

    /// The config-file name of this strategy.
    fn config_name(&self) -> RestartStrategyName {
        match self {
            RestartStrategy::None => RestartStrategyName::None,
            RestartStrategy::FixedDelay { .. } => RestartStrategyName::FixedDelay,
            RestartStrategy::ExponentialBackoff { .. } => RestartStrategyName::ExponentialBackoff,
            RestartStrategy::FailureRate { .. } => RestartStrategyName::FailureRate,
        }
    }
}

/// The answer to one failure.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartDecision {
    /// Restart the job after waiting `delay`.
    Restart {
        /// How long to wait before restarting.
        delay: Duration,
        /// Which restart this is over the tracker's life, counting from 1.
        attempt: u32,
    },
    /// Do not restart; the job has failed for good.
    GiveUp {
        /// Which limit was reached, in words for the operator.
        reason: String,
    },
}

/// Applies a [`RestartStrategy`] to the failures of one job.
///
/// Create one per job run (not per attempt) and report every failure to
/// [`RestartTracker::on_failure`]. Once it has given up it keeps giving up,
/// with the same reason.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    strategy: RestartStrategy,
    /// Restarts granted so far.
    restarts: u32,
    /// exponential-backoff: the wait granted at the last failure.
    last_backoff: Option<Duration>,
    /// failure-rate: times of the failures still inside the window, oldest
    /// first.
    recent_failures: VecDeque<Instant>,
    /// Set once the tracker has given up.
    gave_up: Option<String>,
}

impl RestartTracker {
    /// A tracker that has seen no failures yet.
    pub fn new(strategy: RestartStrategy) -> Self {
        RestartTracker {
            strategy,
            restarts: 0,
            last_backoff: None,
            recent_failures: VecDeque::new(),
            gave_up: None,
        }
    }

    /// The strategy being applied.
    pub fn strategy(&self) -> &RestartStrategy {
        &self.strategy
    }

    /// Restarts granted so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Records a failure that happened at `now`, after the failed run had been
    /// going for `ran_for`, and decides whether to restart.
    ///
    /// `ran_for` only matters to the exponential-backoff strategy, which
    /// resets its wait after a long enough run; `now` only matters to the
    /// failure-rate strategy, which counts failures in a sliding window.
    pub fn on_failure(&mut self, now: Instant, ran_for: Duration) -> RestartDecision {
        if let Some(reason) = &self.gave_up {
            return RestartDecision::GiveUp {
                reason: reason.clone(),
            };
        }
        let verdict = match &self.strategy {
            RestartStrategy::None => {
                Err("the restart strategy is \"none\", so a failure is never retried".to_owned())
            }
            RestartStrategy::FixedDelay { attempts, delay } => {
                if self.restarts < *attempts {
                    Ok(*delay)
                } else {
                    Err(format!(
                        "the fixed-delay restart strategy allows {} (restart.attempts); all used",
                        count(*attempts, "restart", "restarts")
                    ))
                }
            }
            RestartStrategy::ExponentialBackoff {
                initial,
                max,
                multiplier,
                reset_after,
            } => {
                let delay = match self.last_backoff {
                    Some(previous) if ran_for < *reset_after => {
                        scale(previous, *multiplier).min(*max)
                    }
                    _ => (*initial).min(*max),
                };
                self.last_backoff = Some(delay);
                Ok(delay)
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => {
                self.recent_failures.push_back(now);
                while let Some(&oldest) = self.recent_failures.front() {
                    if now.saturating_duration_since(oldest) > *interval {
                        self.recent_failures.pop_front();
                    } else {
                        break;
                    }
                }
                let within = self.recent_failures.len();
                if within <= usize::try_from(*max_failures).unwrap_or(usize::MAX) {
                    Ok(*delay)
                } else {
                    Err(format!(
                        "the failure-rate restart strategy allows at most {} within {} \
                         (restart.max_failures, restart.failure_interval_ms); {within} failures \
                         fell within the last {}",
                        count(*max_failures, "failure", "failures"),
                        describe(*interval),
                        describe(*interval)
                    ))
                }
            }
        };
        match verdict {
            Ok(delay) => {
                self.restarts = self.restarts.saturating_add(1);
                RestartDecision::Restart {
                    delay,
                    attempt: self.restarts,
                }
            }
            Err(reason) => {
                self.gave_up = Some(reason.clone());
                RestartDecision::GiveUp { reason }
            }
        }
    }
}

/// `duration * factor`, rounded to the nanosecond; saturates rather than
/// overflowing (the caller caps the result anyway).
fn scale(duration: Duration, factor: f64) -> Duration {
    let nanos = (duration.as_nanos() as f64 * factor).round();
    if nanos.is_finite() && nanos >= 0.0 && nanos < u64::MAX as f64 {
        Duration::from_nanos(nanos as u64)
    } else {
        Duration::MAX
    }
}

/// "1 restart", "3 restarts".
fn count(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A duration the way an operator would write it: "60 s", "250 ms".
fn describe(duration: Duration) -> String {
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{duration:?}")
    } else if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

/// When a record that keeps failing the job is set aside (`[poison]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoisonPolicy {
    /// Whether records are ever set aside.
    pub enabled: bool,
    /// Consecutive replays a record may fail, after the failure that first
    /// hit it, before it is poisoned: with `replays = 3` the fourth failure
    /// in a row poisons it.
    pub replays: u32,
}

impl PoisonPolicy {
    /// The policy a (validated) `[poison]` section describes.
    pub fn from_config(config: &PoisonConfig) -> Self {
        PoisonPolicy {
            enabled: config.enabled,
            replays: config.replays,
        }
    }
}

impl Default for PoisonPolicy {
    fn default() -> Self {
        PoisonPolicy::from_config(&PoisonConfig::default())
    }
}

/// Spots poison records: records that fail the job on every replay.
///
/// Each failure is reported with the fingerprint of the record being
/// processed when it happened, or `None` when no single record was to blame.
/// A run of failures with the same fingerprint counts towards poisoning; a
/// failure with another fingerprint, or with none, ends the run.
#[derive(Debug, Clone)]
pub struct PoisonTracker {
    policy: PoisonPolicy,
    /// The fingerprint of the current run of failures and its length.
    run: Option<(u64, u32)>,
    /// Poisoned fingerprints in the order they were poisoned.
    poisoned: Vec<u64>,
    /// The same fingerprints, for lookups.
    poisoned_set: HashSet<u64>,
}

impl PoisonTracker {
    /// A tracker that has seen no failures yet.
    pub fn new(policy: PoisonPolicy) -> Self {
        PoisonTracker {
            policy,
            run: None,
            poisoned: Vec::new(),
            poisoned_set: HashSet::new(),
        }
    }

    /// The policy being applied.
    pub fn policy(&self) -> PoisonPolicy {
        self.policy
    }

    /// Records a failure blamed on the record with `fingerprint` (or on no
    /// record) and says whether that record is poisoned: true once it has
    /// failed its first processing and then `replays` consecutive replays, and
    /// for every later failure blamed on it. A disabled policy always answers
    /// false.
    pub fn on_failure(&mut self, fingerprint: Option<u64>) -> bool {
        if !self.policy.enabled {
            return false;
        }
        let Some(fingerprint) = fingerprint else {
            self.run = None;
            return false;
        };
        if self.poisoned_set.contains(&fingerprint) {
            self.run = None;
            return true;
        }
        let failures = match self.run {
            Some((current, failures)) if current == fingerprint => failures.saturating_add(1),
            _ => 1,
        };
        // The first failure is the record's original processing; every later
        // one in the run is a failed replay, so `failures - 1` replays failed.
        if failures > self.policy.replays {
            self.run = None;
            self.poisoned.push(fingerprint);
            self.poisoned_set.insert(fingerprint);
            true
        } else {
            self.run = Some((fingerprint, failures));
            false
        }
    }

    /// Whether the record with `fingerprint` has been poisoned.
    pub fn is_poisoned(&self, fingerprint: u64) -> bool {
        self.poisoned_set.contains(&fingerprint)
    }

    /// Every poisoned fingerprint, in the order they were poisoned.
    pub fn poisoned(&self) -> Vec<u64> {
        self.poisoned.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    /// The delay of a restart, panicking on a give-up.
    fn delay_of(decision: RestartDecision) -> Duration {
        match decision {
            RestartDecision::Restart { delay, .. } => delay,
            RestartDecision::GiveUp { reason } => panic!("gave up: {reason}"),
        }
    }

    /// The reason of a give-up, panicking on a restart.
    fn reason_of(decision: RestartDecision) -> String {
        match decision {
            RestartDecision::GiveUp { reason } => reason,
            other => panic!("expected a give-up, got {other:?}"),
        }
    }

    fn exponential(initial_ms: u64, max_ms: u64, multiplier: f64) -> RestartStrategy {
        RestartStrategy::ExponentialBackoff {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
            multiplier,
            reset_after: 60 * SEC,
        }
    }

    #[test]
    fn none_gives_up_at_the_first_failure() {
        let mut tracker = RestartTracker::new(RestartStrategy::None);
        let reason = reason_of(tracker.on_failure(Instant::now(), SEC));
        assert!(reason.contains("\"none\""), "{reason}");
        assert_eq!(tracker.restarts(), 0);
    }

    #[test]
    fn fixed_delay_restarts_exactly_attempts_times() {
        for attempts in [1u32, 2, 3, 10] {
            let mut tracker = RestartTracker::new(RestartStrategy::FixedDelay {
                attempts,
                delay: 250 * MS,
            });
            let now = Instant::now();
            for n in 1..=attempts {
                let decision = tracker.on_failure(now + n * SEC, Duration::ZERO);
                assert_eq!(
                    decision,
                    RestartDecision::Restart {
                        delay: 250 * MS,
                        attempt: n
                    }
                );
            }
            assert_eq!(tracker.restarts(), attempts);
            // However long the job then ran, the next failure is one too many.
            let reason = reason_of(tracker.on_failure(now + 3600 * SEC, 3600 * SEC));
            assert_eq!(tracker.restarts(), attempts);
            let want = if attempts == 1 {
                "allows 1 restart (restart.attempts); all used".to_owned()
            } else {
                format!("allows {attempts} restarts (restart.attempts); all used")
            };
            assert!(reason.contains("fixed-delay"), "{reason}");
            assert!(reason.contains(&want), "{reason}");
        }
    }

    #[test]
    fn giving_up_is_final() {
        let mut tracker = RestartTracker::new(RestartStrategy::FixedDelay {
            attempts: 1,
            delay: Duration::ZERO,
        });
        let now = Instant::now();
        delay_of(tracker.on_failure(now, Duration::ZERO));
        let first = reason_of(tracker.on_failure(now, Duration::ZERO));
        let second = reason_of(tracker.on_failure(now + 10 * SEC, Duration::ZERO));
        assert_eq!(first, second);
        assert_eq!(tracker.restarts(), 1);
    }

    #[test]
    fn exponential_backoff_multiplies_up_to_the_cap_and_never_gives_up() {
        let mut tracker = RestartTracker::new(exponential(100, 1000, 2.0));
        let now = Instant::now();
        let delays: Vec<u128> = (0..8)
            .map(|i| delay_of(tracker.on_failure(now + i * SEC, SEC)).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        assert_eq!(tracker.restarts(), 8);
        for _ in 0..1000 {
            delay_of(tracker.on_failure(now, Duration::ZERO));
        }
        assert_eq!(tracker.restarts(), 1008);
    }

    #[test]
    fn exponential_backoff_with_a_fractional_multiplier() {
        let mut tracker = RestartTracker::new(exponential(100, 1000, 1.5));
        let now = Instant::now();
        let delays: Vec<u128> = (0..7)
            .map(|_| delay_of(tracker.on_failure(now, Duration::ZERO)).as_millis())
            .collect();
        assert_eq!(delays, [100, 150, 225, 337, 506, 759, 1000]);
    }

    #[test]
    fn exponential_backoff_with_multiplier_one_is_a_constant_delay() {
        let mut tracker = RestartTracker::new(exponential(300, 1000, 1.0));
        for _ in 0..5 {
            assert_eq!(
                delay_of(tracker.on_failure(Instant::now(), Duration::ZERO)),
                300 * MS
            );
        }
    }

    #[test]
    fn exponential_backoff_resets_after_a_long_enough_run() {
        let mut tracker = RestartTracker::new(exponential(100, 10_000, 2.0));
        let now = Instant::now();
        let short = 60 * SEC - Duration::from_nanos(1);
        assert_eq!(delay_of(tracker.on_failure(now, short)), 100 * MS);
        assert_eq!(delay_of(tracker.on_failure(now, short)), 200 * MS);
        assert_eq!(delay_of(tracker.on_failure(now, short)), 400 * MS);
        // Exactly reset_after of running counts as a healthy run.
        assert_eq!(delay_of(tracker.on_failure(now, 60 * SEC)), 100 * MS);
        assert_eq!(delay_of(tracker.on_failure(now, short)), 200 * MS);
        assert_eq!(tracker.restarts(), 5);
    }

    #[test]
    fn exponential_backoff_never_exceeds_max_even_when_initial_does() {
        // Validation rejects this, but the tracker still honours the cap.
        let mut tracker = RestartTracker::new(exponential(5000, 1000, 2.0));
        assert_eq!(
            delay_of(tracker.on_failure(Instant::now(), Duration::ZERO)),
            SEC
        );
        // A huge multiplier saturates instead of overflowing.
        let mut tracker = RestartTracker::new(exponential(1000, 86_400_000, 1000.0));
        for _ in 0..20 {
            delay_of(tracker.on_failure(Instant::now(), Duration::ZERO));
        }
        assert_eq!(
            delay_of(tracker.on_failure(Instant::now(), Duration::ZERO)),
            86_400 * SEC
        );
    }

    fn failure_rate(max_failures: u32, interval: Duration) -> RestartTracker {
        RestartTracker::new(RestartStrategy::FailureRate {
            max_failures,
            interval,
            delay: 10 * MS,
        })
    }

    #[test]
    fn failure_rate_gives_up_on_one_failure_more_than_allowed_within_the_interval() {
        for max_failures in [1u32, 3, 5] {
            let mut tracker = failure_rate(max_failures, 60 * SEC);
            let start = Instant::now();
            for i in 0..max_failures {
                assert_eq!(
                    tracker.on_failure(start + i * SEC, Duration::ZERO),
                    RestartDecision::Restart {
                        delay: 10 * MS,
                        attempt: i + 1
                    }
                );
            }
            let reason = reason_of(tracker.on_failure(start + 59 * SEC, Duration::ZERO));
            assert_eq!(tracker.restarts(), max_failures);
            assert!(reason.contains("failure-rate"), "{reason}");
            assert!(reason.contains("within 60 s"), "{reason}");
            assert!(
                reason.contains(&format!("{} failures fell", max_failures + 1)),
                "{reason}"
            );
        }
    }

    #[test]
    fn failure_rate_forgets_failures_older_than_the_interval() {
        let mut tracker = failure_rate(2, 10 * SEC);
        let start = Instant::now();
        delay_of(tracker.on_failure(start, Duration::ZERO));
        delay_of(tracker.on_failure(start + 5 * SEC, Duration::ZERO));
        // Just over ten seconds after the first: it has left the window.
        delay_of(tracker.on_failure(start + 10 * SEC + Duration::from_nanos(1), Duration::ZERO));
        // Failures at 5 s, 10 s+1 ns and now 15 s: three within ten seconds.
        let reason = reason_of(tracker.on_failure(start + 15 * SEC, Duration::ZERO));
        assert!(
            reason.contains("at most 2 failures within 10 s"),
            "{reason}"
        );
        assert_eq!(tracker.restarts(), 3);
    }

    #[test]
    fn failure_rate_window_includes_its_edge() {
        let mut tracker = failure_rate(1, 10 * SEC);
        let start = Instant::now();
        delay_of(tracker.on_failure(start, Duration::ZERO));
        // Exactly one interval later still counts as within it.
        let reason = reason_of(tracker.on_failure(start + 10 * SEC, Duration::ZERO));
        assert!(reason.contains("at most 1 failure within"), "{reason}");
    }

    #[test]
    fn failure_rate_with_spaced_failures_restarts_forever() {
        let mut tracker = failure_rate(1, 10 * SEC);
        let start = Instant::now();
        for i in 0..100u32 {
            delay_of(tracker.on_failure(start + i * 11 * SEC, Duration::ZERO));
        }
        assert_eq!(tracker.restarts(), 100);
    }

    #[test]
    fn strategies_come_from_the_config() {
        let mut config = RestartConfig::default();
        assert_eq!(
            RestartStrategy::from_config(&config),
            RestartStrategy::FixedDelay {
                attempts: 10,
                delay: SEC
            }
        );
        config.strategy = RestartStrategyName::ExponentialBackoff;
        assert_eq!(
            RestartStrategy::from_config(&config),
            RestartStrategy::ExponentialBackoff {
                initial: 100 * MS,
                max: 30 * SEC,
                multiplier: 2.0,
                reset_after: 60 * SEC
            }
        );
        config.strategy = RestartStrategyName::FailureRate;
        assert_eq!(
            RestartStrategy::from_config(&config),
            RestartStrategy::FailureRate {
                max_failures: 3,
                interval: 60 * SEC,
                delay: SEC
            }
        );
        config.strategy = RestartStrategyName::None;
        assert_eq!(RestartStrategy::from_config(&config), RestartStrategy::None);
        for name in RestartStrategyName::ALL {
            config.strategy = name;
            assert_eq!(RestartStrategy::from_config(&config).name(), name.as_str());
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(describe(60 * SEC), "60 s");
        assert_eq!(describe(250 * MS), "250 ms");
        assert_eq!(describe(1500 * MS), "1500 ms");
        assert_eq!(describe(Duration::ZERO), "0 ms");
        assert_eq!(describe(Duration::from_micros(1500)), "1.5ms");
    }

    fn poison(replays: u32) -> PoisonTracker {
        PoisonTracker::new(PoisonPolicy {
            enabled: true,
            replays,
        })
    }

    #[test]
    fn a_record_is_poisoned_after_failing_replays_consecutive_replays() {
        for replays in [1u32, 2, 3, 7] {
            let mut tracker = poison(replays);
            // The original failure plus replays - 1 failed replays: not yet.
            for _ in 0..replays {
                assert!(!tracker.on_failure(Some(42)));
                assert!(!tracker.is_poisoned(42));
            }
            // The replays-th failed replay poisons it.
            assert!(tracker.on_failure(Some(42)));
            assert!(tracker.is_poisoned(42));
            assert_eq!(tracker.poisoned(), vec![42]);
            // It stays poisoned.
            assert!(tracker.on_failure(Some(42)));
            assert_eq!(tracker.poisoned(), vec![42]);
        }
    }

    #[test]
    fn another_fingerprint_or_none_breaks_the_run() {
        let mut tracker = poison(2);
        assert!(!tracker.on_failure(Some(1)));
        assert!(!tracker.on_failure(Some(1)));
        assert!(!tracker.on_failure(Some(2)));
        // 1's run started over.
        assert!(!tracker.on_failure(Some(1)));
        assert!(!tracker.on_failure(Some(1)));
        assert!(!tracker.on_failure(None));
        assert!(!tracker.on_failure(Some(1)));
        assert!(!tracker.on_failure(Some(1)));
        assert!(tracker.on_failure(Some(1)));
        assert!(!tracker.is_poisoned(2));
        assert_eq!(tracker.poisoned(), vec![1]);
    }

    #[test]
    fn several_records_are_poisoned_in_order() {
        let mut tracker = poison(1);
        assert!(!tracker.on_failure(Some(9)));
        assert!(tracker.on_failure(Some(9)));
        assert!(!tracker.on_failure(Some(3)));
        assert!(tracker.on_failure(Some(3)));
        // A failure on an already poisoned record does not disturb a new run.
        assert!(!tracker.on_failure(Some(5)));
        assert!(tracker.on_failure(Some(9)));
        assert!(!tracker.on_failure(Some(5)));
        assert!(tracker.on_failure(Some(5)));
        assert_eq!(tracker.poisoned(), vec![9, 3, 5]);
        assert!(tracker.is_poisoned(3) && tracker.is_poisoned(5) && tracker.is_poisoned(9));
    }

    #[test]
    fn a_disabled_policy_never_poisons() {
        let mut tracker = PoisonTracker::new(PoisonPolicy {
            enabled: false,
            replays: 1,
        });
        for _ in 0..100 {
            assert!(!tracker.on_failure(Some(7)));
        }
        assert!(!tracker.is_poisoned(7));
        assert!(tracker.poisoned().is_empty());
    }

    #[test]
    fn the_default_policy_is_on_with_three_replays() {
        assert_eq!(
            PoisonPolicy::default(),
            PoisonPolicy {
                enabled: true,
                replays: 3
            }
        );
        let mut tracker = PoisonTracker::new(PoisonPolicy::default());
        assert_eq!(
            (0..4)
                .map(|_| tracker.on_failure(Some(1)))
                .collect::<Vec<_>>(),
            [false, false, false, true]
        );
    }
}
