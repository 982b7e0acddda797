//! The one table that maps service and store errors to gRPC status codes.

use cairn_service::ServiceError;
use cairn_store::{StoreError, StoreErrorKind};
use tonic::{Code, Status};

/// Metadata key carrying the position a cut-off subscriber resumes from.
pub const RESUME_FROM_METADATA: &str = "cairn-resume-from";
/// Metadata key naming the request field an INVALID_ARGUMENT is about.
pub const FIELD_METADATA: &str = "cairn-field";
/// Metadata key naming the domain rule a refused command broke (`votes_frozen`, ...).
pub const RULE_METADATA: &str = "cairn-rule";
/// Metadata key carrying a stream's current version on FAILED_PRECONDITION.
pub const CURRENT_VERSION_METADATA: &str = "cairn-current-version";

/// Maps a store error to a status.
pub fn status_from_store(error: &StoreError) -> Status {
    let code = match error.kind() {
        StoreErrorKind::InvalidArgument => Code::InvalidArgument,
        StoreErrorKind::WrongExpectedVersion => Code::FailedPrecondition,
        StoreErrorKind::AlreadyExists => Code::AlreadyExists,
        StoreErrorKind::OutOfRange => Code::OutOfRange,
        StoreErrorKind::LimitExceeded | StoreErrorKind::SubscriberTooSlow => {
            Code::ResourceExhausted
        }
        StoreErrorKind::Corrupt => Code::DataLoss,
        StoreErrorKind::Unavailable => Code::Unavailable,
    };
    let mut status = Status::new(code, error.to_string());
    let metadata = status.metadata_mut();
    match error {
        StoreError::InvalidArgument { field, .. } => {
            metadata.insert(FIELD_METADATA, field.parse().expect("ascii field name"));
        }
        StoreError::WrongExpectedVersion { current, .. } => {
            metadata.insert(CURRENT_VERSION_METADATA, current.0.into());
        }
        StoreError::SubscriberTooSlow { resume_from, .. } => {
            metadata.insert(RESUME_FROM_METADATA, resume_from.0.into());
        }
        _ => {}
    }
    status
}

/// Maps a service error to a status.
pub fn status_from_service(error: &ServiceError) -> Status {
    match error {
        ServiceError::Store(store) => status_from_store(store),
        ServiceError::InvalidArgument { field, .. } => invalid_argument(field, error.to_string()),
        ServiceError::FailedPrecondition(message) => Status::failed_precondition(message.clone()),
        ServiceError::Io { .. }
        | ServiceError::InvalidPolicy { .. }
        | ServiceError::Internal(_) => Status::internal(error.to_string()),
        ServiceError::NotFound(message) => Status::not_found(message.clone()),
        ServiceError::DeadlineExceeded(message) => Status::deadline_exceeded(message.clone()),
        ServiceError::Refused(refusal) => status_from_refusal(refusal),
    }
}

/// Maps a domain refusal: bad input is INVALID_ARGUMENT naming the field, a missing or existing
/// entity NOT_FOUND or ALREADY_EXISTS, and a transition the state does not allow
/// FAILED_PRECONDITION; each carries the rule's name in `cairn-rule`.
fn status_from_refusal(refusal: &cairn_domain::DomainError) -> Status {
    use cairn_domain::Rule;
    let code = match refusal.rule {
        Rule::Limit | Rule::InvalidField | Rule::ReasonRequired => Code::InvalidArgument,
        Rule::NotFound => Code::NotFound,
        Rule::AlreadyExists => Code::AlreadyExists,
        _ => Code::FailedPrecondition,
    };
    let mut status = Status::new(code, refusal.to_string());
    let metadata = status.metadata_mut();
    metadata.insert(
        RULE_METADATA,
        refusal.rule.as_str().parse().expect("ascii rule name"),
    );
    if let Some(field) = refusal.field
        && let Ok(value) = field.parse()
    {
        metadata.insert(FIELD_METADATA, value);
    }
    status
}

/// INVALID_ARGUMENT naming the field.
pub(crate) fn invalid_argument(field: &str, message: impl Into<String>) -> Status {
    let mut status = Status::invalid_argument(message.into());
    if let Ok(value) = field.parse() {
        status.metadata_mut().insert(FIELD_METADATA, value);
    }
    status
}
