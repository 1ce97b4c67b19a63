//! CLI errors carry their exit code.

use std::process::ExitCode;

use tonic::{Code, Status};

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// Bad input or usage: exit 2.
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self { code: 2, message: message.to_string() }
    }

    /// The coordinator is unreachable or broken: exit 3.
    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        Self { code: 3, message: message.to_string() }
    }

    pub fn report(self) -> ExitCode {
        if !self.message.is_empty() {
            eprintln!("shoal: {}", self.message);
        }
        ExitCode::from(self.code)
    }
}

impl From<Status> for CliError {
    fn from(status: Status) -> Self {
        let message = shoal_common::status::describe(&status);
        match status.code() {
            Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated => Self::usage(message),
            _ => Self::unavailable(message),
        }
    }
}
