//! The loop core: one step loop for every way ranks cooperate, with its plan, progress windows,
//! evaluation, checkpoints and reports. How ranks cooperate comes in through [`Cooperation`], the
//! loss of a micro-batch through [`Objective`]; implementations live in `coop`.

mod cooperation;
mod eval;
mod objective;
mod plan;
mod progress;
mod report;
mod run;
mod whole;

pub use cooperation::{Cooperation, Placement, Step, StepOut};
pub use eval::{EVAL_BATCH, EvalSums, eval_point, eval_sums, evaluate, shard_sums};
pub use objective::{Labels, Objective, checked_loss};
pub use plan::Plan;
pub use progress::Window;
pub use report::{EvalPoint, Host, Outcome, Report, RunOptions, StageStats, Stop, Summary, TrainPoint};
pub use run::run;
pub use whole::whole_model;
