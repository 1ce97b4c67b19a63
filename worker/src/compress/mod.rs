//! The commands on trained and compressed models that need the training engine, run here so that
//! the `shoal` CLI links none of it (`shoal quantize`, `shoal predict` and `shoal compare` start
//! these): bad input exits with code 2 and a message naming the option.

mod compare;
mod predict;
mod quantize;

use std::process::ExitCode;

use shoal_train::TrainError;

pub use compare::{CompareArgs, compare};
pub(crate) use compare::{accuracy, measure};
pub use predict::{PredictArgs, predict};
pub use quantize::{QuantizeArgs, quantize};

fn usage(message: String) -> ExitCode {
    eprintln!("shoal-worker: {message}");
    ExitCode::from(2)
}

/// Exit code 2 for what the user gave (a bad checkpoint, file or option), 1 for anything else.
fn failed(e: TrainError) -> ExitCode {
    match e {
        TrainError::Quantize { .. } | TrainError::Checkpoint { .. } | TrainError::Dataset { .. } => {
            usage(e.to_string())
        }
        e => {
            eprintln!("shoal-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
