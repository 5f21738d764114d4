//! Watching a running attempt: waits for its outcome while printing progress,
//! calling the observer, publishing counters, and handling the duration limit,
//! Ctrl-C, SIGTERM, savepoint requests and signals.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir_actors::runtime::{CoordinatorHandle, JobHandle};
use weir_actors::JobFailure;

use crate::job::error::JobError;
use crate::job::options::EngineOptions;
use crate::job::progress::StageRoles;
use crate::job::progress::{LiveStats, ProgressPrinter};
use crate::status::{AttemptFeed, JobState};

use super::savepoint::{savepoint_dir, PendingSavepoint, SavepointCommand};
use super::signals::{SavepointSignals, Terminate};
use super::status::Publisher;
use super::{RunControl, StageStats};

/// How a watched attempt ended (failures are errors).
pub(super) enum Watched {
    /// Every actor finished.
    Finished,
    /// A stop-with-savepoint took this savepoint and cancelled the job.
    StoppedWithSavepoint(PathBuf),
}

/// Waits for the job's outcome while printing progress, calling the observer,
/// handling the duration limit, Ctrl-C, savepoint requests and signals.
#[allow(clippy::too_many_arguments)]
pub(super) async fn watch(
    name: &str,
    job: &JobHandle,
    coordinator: &CoordinatorHandle,
    mut outcome: tokio::sync::oneshot::Receiver<weir_actors::JobOutcome>,
    control: &mut RunControl,
    opts: &EngineOptions,
    (started, attempt_started): (Instant, Instant),
    (stats, roles): (&[StageStats], &StageRoles),
    mut feed: Option<&mut AttemptFeed>,
    publisher: &mut Publisher<'_>,
) -> Result<Watched, JobError> {
    let progress = opts.progress;
    let tick = match (progress, control.observer.is_some()) {
        (Some(p), true) => p.min(control.observe_every.unwrap_or(Duration::from_secs(1))),
        (Some(p), false) => p,
        (None, true) => control.observe_every.unwrap_or(Duration::from_secs(1)),
        (None, false) => Duration::from_millis(100),
    }
    .min(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut printer = ProgressPrinter::new();
    let mut last_print = Duration::ZERO;
    let mut last_observed = Duration::ZERO;
    let observe_every = control.observe_every.unwrap_or(Duration::from_secs(1));
    let mut interrupts = 0u32;
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    let mut terminate = Terminate::new(control.handle_sigterm);
    let mut signals = SavepointSignals::new(control.handle_signals);
    let mut pending: Option<PendingSavepoint> = None;
    let mut stopped_with: Option<PathBuf> = None;
    let mut signalled: Option<bool> = None;
    let mut cancelled = false;
    loop {
        // A savepoint request from the embedding program or a signal.
        let mut request: Option<SavepointCommand> = None;
        if pending.is_none() {
            request = match signalled.take() {
                Some(stop) => Some(SavepointCommand { stop, reply: None }),
                None => control
                    .savepoints
                    .as_ref()
                    .and_then(|rx| rx.try_recv().ok()),
            };
        }
        if let Some(cmd) = request.take() {
            match savepoint_dir(opts) {
                Ok(dir) => {
                    let rx = coordinator.request_savepoint(dir);
                    pending = Some(PendingSavepoint {
                        rx,
                        stop: cmd.stop,
                        reply: cmd.reply,
                    });
                }
                Err(reason) => {
                    tracing::error!(job = name, %reason, "cannot take a savepoint");
                    if let Some(reply) = cmd.reply {
                        let _ = reply.send(Err(reason));
                    }
                }
            }
        }
        tokio::select! {
            result = &mut outcome => {
                if let Some(p) = pending.take() {
                    if let Some(reply) = p.reply {
                        let _ = reply.send(Err("the job ended before the savepoint completed".into()));
                    }
                }
                return match result {
                    Ok(Ok(())) => Ok(Watched::Finished),
                    Ok(Err(JobFailure::Cancelled { .. })) if stopped_with.is_some() => {
                        Ok(Watched::StoppedWithSavepoint(stopped_with.take().unwrap_or_default()))
                    }
                    Ok(Err(failure)) => Err(JobError::Failed(failure)),
                    Err(_) => Err(JobError::Runtime(format!("job '{name}': its supervisor vanished"))),
                };
            }
            done = async { match pending.as_mut() { Some(p) => (&mut p.rx).await, None => std::future::pending().await } } => {
                let Some(p) = pending.take() else { continue };
                let result = done.unwrap_or_else(|_| Err("the checkpoint coordinator stopped".into()));
                match &result {
                    Ok(path) => {
                        if let Some(feed) = feed.as_deref_mut() {
                            feed.board().savepoint_taken(path);
                        }
                        crate::console::notice(&format!("savepoint taken: {}", path.display()));
                        if p.stop {
                            tracing::info!(job = name, path = %path.display(), "stopping with a savepoint");
                            stopped_with = Some(path.clone());
                            job.cancel();
                        }
                    }
                    Err(reason) => {
                        crate::console::notice(&format!("savepoint failed: {reason}"));
                        tracing::error!(job = name, %reason, "savepoint failed");
                    }
                }
                if let Some(reply) = p.reply {
                    let _ = reply.send(result);
                }
            }
            stop = signals.next() => {
                signalled = Some(stop);
            }
            _ = ticker.tick() => {
                let elapsed = started.elapsed();
                if let Some(cancel) = control.cancel.as_ref() {
                    if cancel.is_stopped() && !cancelled {
                        tracing::info!(job = name, "cancelled from outside");
                        cancelled = true;
                        job.cancel();
                    }
                }
                if let (Some(limit), Some(stop)) = (control.duration, control.stop.as_ref()) {
                    if elapsed >= limit && !stop.is_stopped() {
                        tracing::info!(job = name, "duration reached; ending the input");
                        stop.stop();
                    }
                }
                let live = LiveStats::read(attempt_started.elapsed(), stats, roles);
                if let Some(feed) = feed.as_deref_mut() {
                    feed.publish(&live, Some(JobState::Running));
                }
                publisher.maybe_publish(&live);
                if let Some(observer) = control.observer.as_mut() {
                    if elapsed - last_observed >= observe_every {
                        observer(&live);
                        last_observed = elapsed;
                    }
                }
                if let Some(p) = progress {
                    if elapsed - last_print >= p {
                        printer.print(name, &live);
                        last_print = elapsed;
                    }
                }
            }
            interrupted = async {
                tokio::select! {
                    _ = &mut ctrl_c, if control.handle_ctrl_c => true,
                    () = terminate.next() => false,
                }
            } => {
                interrupts += 1;
                if interrupted {
                    ctrl_c = Box::pin(tokio::signal::ctrl_c());
                }
                match (interrupts, control.stop.as_ref()) {
                    (1, Some(stop)) => {
                        crate::console::notice("interrupted: ending the input and draining (Ctrl-C again to cancel)");
                        stop.stop();
                    }
                    _ => {
                        crate::console::notice("cancelling the job");
                        job.cancel();
                    }
                }
            }
        }
    }
}
