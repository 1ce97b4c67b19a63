//! Model compression as job kinds that plug into the step loop through
//! [`Objective`](crate::engine::Objective): knowledge distillation (a teacher run beside the
//! student) and pruning (masks on the parameters, then an artifact that really shrinks).

mod distill;
mod prune;

pub use distill::{Distill, soft_target_loss};
pub use prune::Pruner;
