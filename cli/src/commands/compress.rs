//! `shoal quantize`, `shoal predict`, `shoal compare`: commands on trained and compressed models
//! that need the training engine run in the worker binary (`shoal-worker quantize` and so on), so
//! the CLI links no training code. Arguments, output and the exit code (2 for bad input) pass
//! through unchanged; `shoal quantize --help` and the others show their options.

use std::process::ExitCode;

use super::local::worker_binary;
use crate::error::CliError;

/// Runs `shoal-worker <command> <args>` and exits as it did.
pub fn passthrough(command: &str, args: &[String]) -> Result<ExitCode, CliError> {
    let bin = worker_binary()?;
    let status = std::process::Command::new(&bin)
        .arg(command)
        .args(args)
        .status()
        .map_err(|e| CliError::usage(format!("cannot start {}: {e}", bin.display())))?;
    Ok(ExitCode::from(status.code().map_or(1, |c| c.clamp(0, 255) as u8)))
}
