//! The `weir` binary: the command line of [`weir::app`] with the built-in jobs only.

use std::process::ExitCode;

fn main() -> ExitCode {
    weir::app::main_with(weir::app::JobRegistry::new())
}

/// jemalloc: records are allocated on one worker thread and freed on another, the
/// pattern where the system allocator is weakest (see docs/dependencies.md).
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
