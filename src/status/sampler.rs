//! Turns the engine's cumulative counters into what an operator reads: rates over a
//! sampling window (throughput, backpressure and busy ratios) and the checkpoint
//! history.

use std::time::Duration;

use weir_actors::checkpoint::{CheckpointFigures, EpochOutcome};
use weir_actors::{StatsSnapshot, NO_WATERMARK};

use crate::job::progress::LiveStats;

use super::model::{CheckpointRecord, CheckpointStatus, PartitionStatus, StageKind, StageStatus};

/// A stage whose busiest actor waits more than this share of its time on full
/// mailboxes downstream is reported `low` (Flink's threshold).
pub const BACKPRESSURE_LOW: f64 = 0.10;
/// Above this share a stage is reported `high`.
pub const BACKPRESSURE_HIGH: f64 = 0.50;
/// Rates are computed over windows at least this long.
const WINDOW: Duration = Duration::from_secs(1);

/// Rates of one actor over the last window.
#[derive(Debug, Clone, Copy, Default)]
struct ActorRates {
    records_in_per_second: f64,
    records_out_per_second: f64,
    backpressure: f64,
    busy: f64,
}

/// Computes rates from successive [`LiveStats`] of one attempt (a new attempt
/// starts its counters from zero, and needs a new sampler).
#[derive(Debug, Default)]
pub struct Sampler {
    /// The counters at the start of the current window, and when that was.
    base: Option<(Duration, Vec<Vec<StatsSnapshot>>)>,
    /// Per stage, per actor: the rates of the last complete window.
    rates: Vec<Vec<ActorRates>>,
}

impl Sampler {
    /// A sampler with no window yet.
    pub fn new() -> Self {
        Sampler::default()
    }

    /// The stages' status from `live`. Until the first window of [`WINDOW`] is
    /// complete, rates are averages since the attempt started.
    pub fn stages(&mut self, live: &LiveStats, kinds: &[StageKind]) -> Vec<StageStatus> {
        let current: Vec<Vec<StatsSnapshot>> = live
            .stages
            .iter()
            .map(|(_, actors)| actors.clone())
            .collect();
        let (since, base) = match &self.base {
            Some((at, base)) if live.elapsed.saturating_sub(*at) >= WINDOW => (*at, Some(base)),
            Some(_) if !self.rates.is_empty() => (live.elapsed, None),
            _ => (Duration::ZERO, None),
        };
        let window = live.elapsed.saturating_sub(since);
        if !window.is_zero() {
            self.rates = current
                .iter()
                .enumerate()
                .map(|(s, actors)| {
                    actors
                        .iter()
                        .enumerate()
                        .map(|(a, now)| {
                            let then = base.and_then(|b| b.get(s)?.get(a)).copied();
                            rates(now, then.as_ref(), window)
                        })
                        .collect()
                })
                .collect();
            self.base = Some((live.elapsed, current.clone()));
        } else if self.base.is_none() {
            self.base = Some((live.elapsed, current.clone()));
        }
        live.stages
            .iter()
            .enumerate()
            .map(|(s, (name, actors))| {
                let rates = self.rates.get(s).map(Vec::as_slice).unwrap_or(&[]);
                stage_status(s as u32, name, kinds.get(s).copied(), actors, rates)
            })
            .collect()
    }
}

/// An actor's rates between `then` (zero counters when `None`) and `now`.
fn rates(now: &StatsSnapshot, then: Option<&StatsSnapshot>, window: Duration) -> ActorRates {
    let zero = StatsSnapshot::default();
    let then = then.unwrap_or(&zero);
    let secs = window.as_secs_f64().max(1e-9);
    let ratio = |d: Duration| (d.as_secs_f64() / secs).clamp(0.0, 1.0);
    ActorRates {
        records_in_per_second: now.records_in.saturating_sub(then.records_in) as f64 / secs,
        records_out_per_second: now.records_out.saturating_sub(then.records_out) as f64 / secs,
        backpressure: ratio(now.send_wait.saturating_sub(then.send_wait)),
        busy: ratio(now.busy.saturating_sub(then.busy)),
    }
}

/// `ok`, `low` or `high` for a backpressure ratio.
pub(crate) fn backpressure_level(ratio: f64) -> &'static str {
    if ratio > BACKPRESSURE_HIGH {
        "high"
    } else if ratio > BACKPRESSURE_LOW {
        "low"
    } else {
        "ok"
    }
}

fn stage_status(
    index: u32,
    name: &str,
    kind: Option<StageKind>,
    actors: &[StatsSnapshot],
    rates: &[ActorRates],
) -> StageStatus {
    let rate = |a: usize| rates.get(a).copied().unwrap_or_default();
    let partitions: Vec<PartitionStatus> = actors
        .iter()
        .enumerate()
        .map(|(a, s)| PartitionStatus {
            index: a as u32,
            records_in: s.records_in,
            records_out: s.records_out,
            mailbox_depth: s.mailbox_depth,
            mailbox_capacity: s.mailbox_capacity,
            backpressure: rate(a).backpressure,
            busy: rate(a).busy,
            watermark_ms: (s.watermark != NO_WATERMARK).then_some(s.watermark),
        })
        .collect();
    let backpressure = partitions
        .iter()
        .map(|p| p.backpressure)
        .fold(0.0, f64::max);
    // Like Flink's: a stage's watermark is the lowest of its actors', and it has
    // none while any actor has sent none.
    let watermark_ms = partitions
        .iter()
        .map(|p| p.watermark_ms)
        .collect::<Option<Vec<i64>>>()
        .and_then(|w| w.into_iter().min());
    StageStatus {
        index,
        name: name.to_string(),
        kind: kind.unwrap_or(StageKind::Keyed),
        parallelism: actors.len() as u32,
        records_in: actors.iter().map(|s| s.records_in).sum(),
        records_out: actors.iter().map(|s| s.records_out).sum(),
        records_in_per_second: (0..actors.len())
            .map(|a| rate(a).records_in_per_second)
            .sum(),
        records_out_per_second: (0..actors.len())
            .map(|a| rate(a).records_out_per_second)
            .sum(),
        backpressure,
        backpressure_level: backpressure_level(backpressure),
        busy: partitions.iter().map(|p| p.busy).fold(0.0, f64::max),
        watermark_ms,
        partitions,
    }
}

/// The checkpoint counters and history of a job's run, from its figures.
pub(crate) fn checkpoint_status(
    stats: &CheckpointFigures,
    interval: Option<Duration>,
) -> CheckpointStatus {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    CheckpointStatus {
        enabled: interval.is_some(),
        interval_ms: interval.map(|i| i.as_millis() as u64),
        completed: stats.completed,
        failed: stats.failed,
        last_epoch: Some(stats.last_epoch).filter(|e| *e > 0),
        last_duration_ms: ms(stats.last_duration),
        last_bytes: stats.last_bytes,
        history: stats
            .history
            .iter()
            .map(|r| CheckpointRecord {
                epoch: r.epoch,
                outcome: match r.outcome {
                    EpochOutcome::Completed => "completed",
                    EpochOutcome::Abandoned => "abandoned",
                    EpochOutcome::Failed => "failed",
                },
                duration_ms: ms(r.duration),
                bytes: r.bytes,
                alignment_ms: ms(r.alignment),
                finished_at_ms: r.finished_at_ms,
                savepoint: r.savepoint,
                is_final: r.is_final,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(records_in: u64, send_wait_ms: u64, watermark: Option<i64>) -> StatsSnapshot {
        StatsSnapshot {
            records_in,
            records_out: records_in * 2,
            send_wait: Duration::from_millis(send_wait_ms),
            busy: Duration::from_millis(send_wait_ms / 2),
            watermark: watermark.unwrap_or(NO_WATERMARK),
            ..StatsSnapshot::default()
        }
    }

    fn live(elapsed_ms: u64, actors: Vec<StatsSnapshot>) -> LiveStats {
        LiveStats {
            elapsed: Duration::from_millis(elapsed_ms),
            stages: vec![("s".to_string(), actors)],
            roles: crate::job::progress::StageRoles {
                sources: vec![0],
                sinks: vec![0],
            },
        }
    }

    #[test]
    fn rates_are_taken_over_the_last_window() {
        let mut sampler = Sampler::new();
        // First sample: averages since the start (2 s).
        let s = sampler.stages(&live(2_000, vec![snap(1_000, 0, None)]), &[]);
        assert_eq!(s[0].records_in_per_second, 500.0);
        assert_eq!(s[0].records_out_per_second, 1_000.0);
        // Half a second later: the window is not complete, the rates stay.
        let s = sampler.stages(&live(2_500, vec![snap(9_000, 0, None)]), &[]);
        assert_eq!(s[0].records_in_per_second, 500.0);
        assert_eq!(s[0].records_in, 9_000);
        // One second after the first sample: 2,000 more records, 800 ms blocked.
        let s = sampler.stages(&live(3_000, vec![snap(3_000, 800, None)]), &[]);
        assert_eq!(s[0].records_in_per_second, 2_000.0);
        assert!((s[0].backpressure - 0.8).abs() < 1e-9);
        assert_eq!(s[0].backpressure_level, "high");
        assert!((s[0].busy - 0.4).abs() < 1e-9);
    }

    #[test]
    fn a_stage_watermark_is_its_lowest_and_none_while_an_actor_has_none() {
        let mut sampler = Sampler::new();
        let s = sampler.stages(
            &live(1_000, vec![snap(1, 0, Some(50)), snap(1, 0, Some(20))]),
            &[StageKind::Source],
        );
        assert_eq!(s[0].watermark_ms, Some(20));
        assert_eq!(s[0].kind, StageKind::Source);
        assert_eq!(s[0].parallelism, 2);
        assert_eq!(s[0].partitions[1].watermark_ms, Some(20));
        let s = sampler.stages(
            &live(1_000, vec![snap(1, 0, Some(50)), snap(1, 0, None)]),
            &[],
        );
        assert_eq!(s[0].watermark_ms, None);
    }

    #[test]
    fn backpressure_levels_follow_flinks_thresholds() {
        assert_eq!(backpressure_level(0.0), "ok");
        assert_eq!(backpressure_level(0.10), "ok");
        assert_eq!(backpressure_level(0.11), "low");
        assert_eq!(backpressure_level(0.5), "low");
        assert_eq!(backpressure_level(0.51), "high");
    }
}
