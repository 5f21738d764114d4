//! How a run is controlled from outside: the stop flag and duration limit, Ctrl-C
//! and SIGTERM, the observer of live counters, and savepoint requests.

use std::time::Duration;

use crate::connector::StopFlag;
use crate::job::progress::LiveStats;

use super::savepoint::SavepointCommand;

/// Watches a running job's live counters.
pub type Observer = Box<dyn FnMut(&LiveStats) + Send>;

/// How a run is controlled from outside: when to ask the sources to stop, and who
/// watches it.
#[derive(Default)]
pub struct RunControl {
    /// Raised to end unbounded sources (the job then drains and finishes).
    pub stop: Option<StopFlag>,
    /// Raised to cancel the job: its actors stop without draining, and the run
    /// ends with a cancellation. Its snapshots stay, so a new run resumes from the
    /// newest complete epoch.
    pub cancel: Option<StopFlag>,
    /// Raise `stop` after this long.
    pub duration: Option<Duration>,
    /// Raise `stop` on the first Ctrl-C; cancel the job on the second. Without a
    /// `stop` flag, the first Ctrl-C cancels the job: its snapshots stay, and the
    /// next start with the same state directory resumes from the newest complete
    /// epoch (what an unbounded exactly-once job wants on an interrupt).
    pub handle_ctrl_c: bool,
    /// Treat SIGTERM (what service managers send to stop a process) like Ctrl-C.
    /// Off by default: once asked for, the process no longer dies of SIGTERM.
    pub handle_sigterm: bool,
    /// Called with live counters every `observe_every` (default 1 s).
    pub observer: Option<Observer>,
    /// How often the observer is called.
    pub observe_every: Option<Duration>,
    /// Savepoint requests from the embedding program (tests, a control endpoint).
    pub savepoints: Option<std::sync::mpsc::Receiver<SavepointCommand>>,
    /// Take a savepoint on SIGUSR1 and stop with a savepoint on SIGUSR2.
    pub handle_signals: bool,
}
