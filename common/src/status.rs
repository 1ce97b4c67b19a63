//! Mapping between Shoal errors and gRPC statuses, both ways: field errors become
//! `INVALID_ARGUMENT` with a `google.rpc.BadRequest` listing every field, and any status becomes a
//! sentence a person can read.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::spec::FieldError;

/// `INVALID_ARGUMENT` naming every bad field of a job spec, in the message and as structured
/// details.
pub fn invalid_fields(errors: &[FieldError]) -> Status {
    invalid("invalid job spec", errors)
}

/// `INVALID_ARGUMENT` for one missing or malformed request field (not a spec's: a job id, say).
pub fn invalid_field(path: &str, reason: impl std::fmt::Display) -> Status {
    invalid("invalid request", &[FieldError::new(path, reason.to_string())])
}

fn invalid(heading: &str, errors: &[FieldError]) -> Status {
    let message = match errors {
        [one] => format!("{heading}: {one}"),
        many => {
            let lines: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("{heading} ({} fields): {}", many.len(), lines.join("; "))
        }
    };
    let violations: Vec<FieldViolation> =
        errors.iter().map(|e| FieldViolation::new(e.path.clone(), e.reason.clone())).collect();
    Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request(violations))
}

/// The field violations a status carries, if any.
pub fn field_violations(status: &Status) -> Vec<FieldError> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| FieldError::new(v.field, v.description)).collect())
        .unwrap_or_default()
}

/// A status as a sentence for people: what went wrong, without gRPC jargon.
pub fn describe(status: &Status) -> String {
    let violations = field_violations(status);
    if !violations.is_empty() {
        let mut out = String::from("the coordinator rejected the job spec:");
        for v in violations {
            out.push_str("\n  ");
            out.push_str(&v.to_string());
        }
        return out;
    }
    let msg = status.message();
    match status.code() {
        Code::Unavailable => format!("cannot reach the coordinator ({msg})"),
        Code::DeadlineExceeded => format!("the coordinator did not answer in time ({msg})"),
        Code::Unauthenticated => format!("not allowed: {msg}"),
        Code::PermissionDenied => format!("permission denied: {msg}"),
        Code::Unimplemented => format!("the coordinator does not support this request ({msg})"),
        _ if msg.is_empty() => format!("request failed ({})", status.code().description()),
        _ => msg.to_owned(),
    }
}

/// Whether retrying the same request later can help.
pub fn is_retryable(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_survive_the_round_trip() {
        let errors = vec![
            FieldError::new("model.layers[2].width", "must be > 0"),
            FieldError::new("training.batch_size", "must be > 0"),
        ];
        let status = invalid_fields(&errors);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("model.layers[2].width: must be > 0"));
        assert_eq!(field_violations(&status), errors);
        assert!(describe(&status).contains("\n  training.batch_size: must be > 0"));
    }

    #[test]
    fn unavailable_reads_as_a_sentence() {
        let text = describe(&Status::unavailable("tcp connect error"));
        assert_eq!(text, "cannot reach the coordinator (tcp connect error)");
    }
}
