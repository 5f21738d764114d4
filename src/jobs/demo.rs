//! The demo: an endless stream of sensor readings through keyed state, a running
//! summary per sensor.

use serde::{Deserialize, Serialize};

use crate::connector::generator::SensorReadings;
use crate::connector::sinks::CountingSink;
use crate::connector::StopFlag;
use crate::job::Job;
use crate::operator::AggregateFn;

/// Running statistics of one sensor (kept as keyed state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SensorStats {
    /// Readings seen.
    pub count: u64,
    /// Sum of readings (tenths of a degree).
    pub sum: i64,
    /// Lowest reading.
    pub min: i64,
    /// Highest reading.
    pub max: i64,
}

/// What the demo emits per reading: the sensor's summary so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SensorSummary {
    /// Readings seen.
    pub count: u64,
    /// Mean reading in degrees.
    pub mean: f64,
    /// Lowest reading in degrees.
    pub min: f64,
    /// Highest reading in degrees.
    pub max: f64,
}

/// The per-sensor aggregation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summarise;

impl AggregateFn<(String, i64)> for Summarise {
    type Acc = SensorStats;
    type Output = SensorSummary;

    fn create(&self) -> SensorStats {
        SensorStats {
            count: 0,
            sum: 0,
            min: i64::MAX,
            max: i64::MIN,
        }
    }

    fn add(&self, acc: &mut SensorStats, (_, reading): (String, i64)) {
        acc.count += 1;
        acc.sum += reading;
        acc.min = acc.min.min(reading);
        acc.max = acc.max.max(reading);
    }

    fn merge(&self, acc: &mut SensorStats, other: SensorStats) {
        acc.count += other.count;
        acc.sum += other.sum;
        acc.min = acc.min.min(other.min);
        acc.max = acc.max.max(other.max);
    }

    fn result(&self, acc: &SensorStats) -> SensorSummary {
        SensorSummary {
            count: acc.count,
            mean: acc.sum as f64 / acc.count.max(1) as f64 / 10.0,
            min: acc.min as f64 / 10.0,
            max: acc.max as f64 / 10.0,
        }
    }
}

/// The demo job: readings until `stop` is raised (or `limit` readings) -> key by
/// sensor -> running summary -> a sink holding each sensor's latest summary.
pub fn demo(stop: StopFlag, limit: Option<u64>) -> (Job, CountingSink<String, SensorSummary>) {
    let sink = CountingSink::new();
    let job = Job::new("demo")
        .source(SensorReadings::new(stop, limit))
        .key_by(|reading: &(String, i64)| reading.0.clone())
        .aggregate(Summarise)
        .sink(sink.clone());
    (job, sink)
}
