//! The kernel's face to the engine: what `weir` needs to run a job's actors without
//! naming actix.
//!
//! The engine starts a [`Runtime`] for a run, and in it, for each attempt, a job
//! supervisor ([`JobHandle`]), a checkpoint coordinator ([`CoordinatorHandle`]) and
//! each stage's partition actors ([`spawn_stage`], which returns the stage's
//! [`StageHandle`], its mailboxes and its actors' [`Endpoint`]s). Every handle is
//! opaque: actix's addresses, recipients and messages stay inside the kernel, so it
//! can change how actors are scheduled without touching the engine.

mod coordinator;
mod endpoint;
mod stage;
mod supervision;
mod system;

pub use coordinator::CoordinatorHandle;
pub use endpoint::Endpoint;
pub use stage::{spawn_stage, SpawnedStage, StageSpawn};
pub use supervision::{JobHandle, StageHandle};
pub use system::Runtime;
