//! The one table that maps service and store errors to gRPC status codes.

use cairn_service::ServiceError;
use cairn_store::{StoreError, StoreErrorKind};
use tonic::{Code, Status};

/// Metadata key carrying the position a cut-off subscriber resumes from.
pub const RESUME_FROM_METADATA: &str = "cairn-resume-from";
/// Metadata key naming the request field an INVALID_ARGUMENT is about.
pub const FIELD_METADATA: &str = "cairn-field";
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
        ServiceError::Io { .. } => Status::internal(error.to_string()),
    }
}

/// INVALID_ARGUMENT naming the field.
pub(crate) fn invalid_argument(field: &str, message: impl Into<String>) -> Status {
    let mut status = Status::invalid_argument(message.into());
    if let Ok(value) = field.parse() {
        status.metadata_mut().insert(FIELD_METADATA, value);
    }
    status
}
