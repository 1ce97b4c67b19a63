//! `shoal quantize`: compression commands that need the training engine run in the worker binary
//! (`shoal-worker quantize`), so the CLI links no training code. Arguments, output and the exit
//! code (2 for bad input) pass through unchanged; `shoal quantize --help` shows the options.

use std::process::ExitCode;

use super::local::worker_binary;
use crate::error::CliError;

pub fn quantize(args: &[String]) -> Result<ExitCode, CliError> {
    let bin = worker_binary()?;
    let status = std::process::Command::new(&bin)
        .arg("quantize")
        .args(args)
        .status()
        .map_err(|e| CliError::usage(format!("cannot start {}: {e}", bin.display())))?;
    Ok(ExitCode::from(status.code().map_or(1, |c| c.clamp(0, 255) as u8)))
}
