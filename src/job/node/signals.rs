//! The process signals a run may handle: SIGTERM (like Ctrl-C), SIGUSR1 (take a
//! savepoint) and SIGUSR2 (stop with a savepoint).

/// SIGTERM, when asked for ([`RunControl::handle_sigterm`]).
pub(super) struct Terminate {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Terminate {
    pub(super) fn new(enabled: bool) -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signal = enabled
                .then(|| signal(SignalKind::terminate()).ok())
                .flatten();
            Terminate { signal }
        }
        #[cfg(not(unix))]
        {
            let _ = enabled;
            Terminate {}
        }
    }

    /// The next SIGTERM (never, when not asked for).
    pub(super) async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

/// SIGUSR1 (take a savepoint) and SIGUSR2 (stop with a savepoint), when asked for.
pub(super) struct SavepointSignals {
    #[cfg(unix)]
    usr: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl SavepointSignals {
    pub(super) fn new(enabled: bool) -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let usr = enabled
                .then(|| {
                    Some((
                        signal(SignalKind::user_defined1()).ok()?,
                        signal(SignalKind::user_defined2()).ok()?,
                    ))
                })
                .flatten();
            SavepointSignals { usr }
        }
        #[cfg(not(unix))]
        {
            let _ = enabled;
            SavepointSignals {}
        }
    }

    /// The next signal: `false` for a savepoint, `true` for stop-with-savepoint.
    pub(super) async fn next(&mut self) -> bool {
        #[cfg(unix)]
        if let Some((one, two)) = self.usr.as_mut() {
            return tokio::select! {
                _ = one.recv() => false,
                _ = two.recv() => true,
            };
        }
        std::future::pending().await
    }
}
