//! Model compression as job kinds that plug into the step loop: knowledge distillation (an
//! [`Objective`](crate::engine::Objective) that runs a teacher beside the student).

mod distill;

pub use distill::{Distill, soft_target_loss};
