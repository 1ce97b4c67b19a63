//! Model compression as job kinds that plug into the step loop through
//! [`Objective`](crate::engine::Objective): knowledge distillation (a teacher run beside the
//! student) and pruning (masks on the parameters, then an artifact that really shrinks); and
//! post-training int8 quantization of a checkpoint, with the int8 arithmetic that runs it.

mod artifact;
mod calibrate;
mod distill;
mod igemm;
pub mod int8;
mod prune;
mod quantize;

pub use artifact::{Artifact, Format, argmax, softmax_rows};
pub use calibrate::Calibration;
pub use distill::{Distill, soft_target_loss};
pub use prune::Pruner;
pub use quantize::{JOB_ARTIFACT_DIR, QModel, QuantizeOptions, QuantizeReport, REPORT_FILE, quantize, quantize_job};
