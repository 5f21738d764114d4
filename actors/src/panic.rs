//! Turning a panic inside a task into a failure report.
//!
//! A panic that unwinds out of an actix handler would kill the worker thread and every
//! actor on it. The partition actor runs every task call inside [`guarded`], which
//! catches the unwind and returns the panic message and source location, so the
//! supervisor can fail the job with a clear error while the process lives on.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::task::TaskError;

thread_local! {
    static IN_GUARD: Cell<bool> = const { Cell::new(false) };
    static LAST_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs (once per process) a panic hook that records where a guarded panic
/// happened and keeps it off stderr; panics elsewhere go to the previous hook.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_GUARD.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                LAST_LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// How a guarded call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The task panicked with this message, at this source location.
    Panic {
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The task returned an error.
    Error(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Panic {
                message,
                location: Some(at),
            } => write!(f, "panicked at {at}: {message}"),
            Failure::Panic {
                message,
                location: None,
            } => write!(f, "panicked: {message}"),
            Failure::Error(e) => write!(f, "failed: {e}"),
        }
    }
}

/// Runs `f`, turning a panic or an error into a [`Failure`].
pub fn guarded<R>(f: impl FnOnce() -> Result<R, TaskError>) -> Result<R, Failure> {
    install_hook();
    IN_GUARD.with(|g| g.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    IN_GUARD.with(|g| g.set(false));
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Failure::Error(error.to_string())),
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "panic with a non-string payload".to_string()
            };
            let location = LAST_LOCATION.with(|slot| slot.borrow_mut().take());
            Err(Failure::Panic { message, location })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_failure_with_message_and_location() {
        let failure = guarded::<()>(|| panic!("boom {}", 7)).unwrap_err();
        match failure {
            Failure::Panic { message, location } => {
                assert_eq!(message, "boom 7");
                assert!(location.unwrap().contains("panic.rs"));
            }
            other => panic!("expected a panic failure, got {other:?}"),
        }
    }

    #[test]
    fn an_error_is_reported_and_success_passes_through() {
        assert_eq!(guarded(|| Ok(5)).unwrap(), 5);
        let failure = guarded::<()>(|| Err(TaskError::msg("bad input"))).unwrap_err();
        assert_eq!(failure, Failure::Error("bad input".into()));
    }
}
