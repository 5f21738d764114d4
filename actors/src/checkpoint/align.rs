//! Barrier alignment at an actor with several inputs.

use std::time::{Duration, Instant};

/// Tracks which inputs delivered the barrier of the epoch being aligned.
///
/// An input that delivered the barrier is *blocked*: the actor holds back what it
/// sends next until the alignment completes, so that the snapshot contains exactly
/// the records before the barrier on every input. An input that ended counts as
/// aligned (it will send nothing more).
#[derive(Debug, Clone)]
pub struct Aligner {
    epoch: Option<u64>,
    arrived: Vec<bool>,
    started: Option<Instant>,
}

/// What a barrier or an ended input did to the alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aligned {
    /// Still waiting for other inputs.
    Waiting,
    /// Every input delivered barrier `epoch` (or ended); alignment took `took`.
    Complete {
        /// The aligned epoch.
        epoch: u64,
        /// Time from the first barrier to the last.
        took: Duration,
    },
}

impl Aligner {
    /// An aligner for `inputs` inputs, aligning nothing.
    pub fn new(inputs: usize) -> Self {
        Aligner {
            epoch: None,
            arrived: vec![false; inputs],
            started: None,
        }
    }

    /// The epoch being aligned, if any.
    pub fn aligning(&self) -> Option<u64> {
        self.epoch
    }

    /// Whether input `i` delivered the barrier being aligned (its further messages
    /// must be held back).
    #[inline]
    pub fn is_blocked(&self, i: usize) -> bool {
        self.epoch.is_some() && self.arrived.get(i).copied().unwrap_or(false)
    }

    /// Input `i` delivered barrier `epoch`; `ended` says which inputs have ended.
    pub fn barrier(&mut self, i: usize, epoch: u64, ended: &[bool]) -> Result<Aligned, String> {
        if i >= self.arrived.len() {
            return Err(format!(
                "barrier {epoch} from unknown input {i} (this actor has {})",
                self.arrived.len()
            ));
        }
        match self.epoch {
            None => {
                self.epoch = Some(epoch);
                self.started = Some(Instant::now());
            }
            Some(current) if current == epoch => {}
            Some(current) => {
                return Err(format!(
                    "input {i} delivered barrier {epoch} while barrier {current} is being aligned"
                ))
            }
        }
        if self.arrived[i] {
            return Err(format!("input {i} delivered barrier {epoch} twice"));
        }
        self.arrived[i] = true;
        Ok(self.check(ended))
    }

    /// An input ended: if an alignment is in progress it may now be complete.
    pub fn input_ended(&mut self, ended: &[bool]) -> Aligned {
        if self.epoch.is_none() {
            return Aligned::Waiting;
        }
        self.check(ended)
    }

    fn check(&mut self, ended: &[bool]) -> Aligned {
        let Some(epoch) = self.epoch else {
            return Aligned::Waiting;
        };
        let all = self
            .arrived
            .iter()
            .zip(ended.iter().chain(std::iter::repeat(&false)))
            .all(|(arrived, ended)| *arrived || *ended);
        if !all {
            return Aligned::Waiting;
        }
        let took = self.started.map_or(Duration::ZERO, |s| s.elapsed());
        self.epoch = None;
        self.started = None;
        self.arrived.iter_mut().for_each(|a| *a = false);
        Aligned::Complete { epoch, took }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(a: Aligned) -> Option<u64> {
        match a {
            Aligned::Complete { epoch, .. } => Some(epoch),
            Aligned::Waiting => None,
        }
    }

    #[test]
    fn blocks_inputs_that_delivered_until_all_have() {
        let mut a = Aligner::new(3);
        let ended = [false; 3];
        assert_eq!(complete(a.barrier(1, 5, &ended).unwrap()), None);
        assert!(a.is_blocked(1));
        assert!(!a.is_blocked(0));
        assert_eq!(complete(a.barrier(0, 5, &ended).unwrap()), None);
        assert_eq!(complete(a.barrier(2, 5, &ended).unwrap()), Some(5));
        assert!(!a.is_blocked(1), "alignment over: nothing blocked");
        assert_eq!(a.aligning(), None);
    }

    #[test]
    fn ended_inputs_count_as_aligned() {
        let mut a = Aligner::new(2);
        let mut ended = [false, false];
        assert_eq!(complete(a.barrier(0, 1, &ended).unwrap()), None);
        ended[1] = true;
        assert_eq!(complete(a.input_ended(&ended)), Some(1));
        // With input 1 ended, a single barrier completes the next epoch.
        assert_eq!(complete(a.barrier(0, 2, &ended).unwrap()), Some(2));
    }

    #[test]
    fn reports_protocol_violations() {
        let mut a = Aligner::new(2);
        let ended = [false, false];
        a.barrier(0, 1, &ended).unwrap();
        assert!(a.barrier(0, 1, &ended).unwrap_err().contains("twice"));
        assert!(a
            .barrier(1, 2, &ended)
            .unwrap_err()
            .contains("being aligned"));
        assert!(a
            .barrier(7, 1, &ended)
            .unwrap_err()
            .contains("unknown input"));
    }
}
