//! `shoal bench`: benchmarks that mirror the PyTorch peers in `shared/peers`. They run in worker
//! processes (the CLI itself links no training code) and print JSON lines on stdout.

use std::process::{ExitCode, Stdio};

use clap::Subcommand;

use super::local::worker_binary;
use crate::error::CliError;

#[derive(Subcommand, Debug)]
pub enum Which {
    /// Train the peers' reference MLP (784-512-512-10, batch 128, SGD lr 0.05) on one worker with
    /// one thread, as `ddp_mlp.py` does at 1 rank x 1 thread.
    Train {
        #[arg(long, default_value_t = 400)]
        steps: u64,
        #[arg(long, default_value_t = 50)]
        warmup: u64,
        /// Matmul threads of the worker.
        #[arg(long, default_value_t = 1)]
        threads: u32,
    },
}

pub async fn run(which: Which) -> Result<ExitCode, CliError> {
    match which {
        Which::Train {
            steps,
            warmup,
            threads,
        } => {
            if steps <= warmup {
                return Err(CliError::usage("--steps must be larger than --warmup"));
            }
            if threads == 0 {
                return Err(CliError::usage("--threads must be > 0"));
            }
            let status = tokio::process::Command::new(worker_binary()?)
                .args([
                    "bench",
                    "train",
                    "--steps",
                    &steps.to_string(),
                    "--warmup",
                    &warmup.to_string(),
                ])
                .env("RAYON_NUM_THREADS", threads.to_string())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .status()
                .await
                .map_err(|e| {
                    CliError::unavailable(format!("cannot run the worker benchmark: {e}"))
                })?;
            Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
