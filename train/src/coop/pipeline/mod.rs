//! Pipeline parallelism: the model's units are cut into K contiguous stages, one per worker, and
//! each mini-batch is split into M micro-batches that flow through the stages. Activations go to
//! the next stage and their gradients come back over a [`StageLink`]. This module gathers the
//! pieces: the schedule, the partition, the wire format and the stage itself.

mod partition;
mod schedule;
mod stage;
mod wire;

pub use crate::engine::StageStats;
pub use crate::link::{Dir, MsgKind, PipePeers, StageLink, StageMsg};
pub use partition::{balance, profile_units, unit_params};
pub use schedule::{Op, bubble_theory, schedule_ops};
pub use stage::Pipeline;
