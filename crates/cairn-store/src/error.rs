use cairn_ledger::{EventId, LedgerError, Position, StreamId, StreamVersion};

use crate::event::ExpectedVersion;

/// The small closed set of things that can go wrong in a store; the gRPC layer maps each to one
/// status code in one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The caller's input is wrong; nothing was stored.
    InvalidArgument,
    /// The stream is not at the expected version.
    WrongExpectedVersion,
    /// An id already exists (with different content, or a key id).
    AlreadyExists,
    /// A position, size or key outside what exists.
    OutOfRange,
    /// A limit was exceeded.
    LimitExceeded,
    /// A subscriber fell too far behind and was cut off.
    SubscriberTooSlow,
    /// The stored data contradicts itself (corruption, a broken invariant); the store stops.
    Corrupt,
    /// The store cannot serve now (shutting down, poisoned after an I/O failure).
    Unavailable,
}

/// An error from an [`crate::EventStore`] or [`crate::KeyStore`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Invalid input, with the field.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field, as named in the API.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A named limit was exceeded.
    #[error("{what} is {actual}, over the limit of {limit}")]
    LimitExceeded {
        /// What was counted, with its unit.
        what: &'static str,
        /// The limit.
        limit: u64,
        /// What was asked for.
        actual: u64,
    },
    /// Optimistic concurrency failed.
    #[error("stream {stream} is at version {current}, expected {expected}")]
    WrongExpectedVersion {
        /// The stream.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version now.
        current: StreamVersion,
    },
    /// The event id is recorded already, with different content or in a different batch.
    #[error("event {event_id} is already recorded at position {position}: {reason}")]
    EventIdConflict {
        /// The event id.
        event_id: EventId,
        /// Where it is recorded.
        position: Position,
        /// What differs.
        reason: String,
    },
    /// A key id that exists or existed.
    #[error("key {0} already exists or existed")]
    KeyExists(cairn_ledger::KeyId),
    /// A position or tree size beyond the head, or otherwise out of range.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// The subscriber fell behind by more than the live buffer.
    #[error(
        "subscriber fell more than {lag_max} records behind the head; resume from position {resume_from}"
    )]
    SubscriberTooSlow {
        /// The first position the subscriber has not received.
        resume_from: Position,
        /// The limit it exceeded.
        lag_max: usize,
    },
    /// Stored data that contradicts itself.
    #[error("corrupt ledger{}: {detail}", position.map(|p| format!(" at position {p}")).unwrap_or_default())]
    Corrupt {
        /// The first position affected, when known.
        position: Option<Position>,
        /// What is wrong.
        detail: String,
    },
    /// The store cannot serve.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// The kind, for mapping to status codes.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::InvalidArgument { .. } => StoreErrorKind::InvalidArgument,
            StoreError::LimitExceeded { .. } => StoreErrorKind::LimitExceeded,
            StoreError::WrongExpectedVersion { .. } => StoreErrorKind::WrongExpectedVersion,
            StoreError::EventIdConflict { .. } | StoreError::KeyExists(_) => {
                StoreErrorKind::AlreadyExists
            }
            StoreError::OutOfRange(_) => StoreErrorKind::OutOfRange,
            StoreError::SubscriberTooSlow { .. } => StoreErrorKind::SubscriberTooSlow,
            StoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
            StoreError::Unavailable(_) | StoreError::Io { .. } => StoreErrorKind::Unavailable,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<LedgerError> for StoreError {
    fn from(error: LedgerError) -> StoreError {
        match error {
            LedgerError::LimitExceeded {
                field,
                limit,
                actual,
            } => StoreError::LimitExceeded {
                what: field,
                limit,
                actual,
            },
            LedgerError::InvalidField { field, reason } => {
                StoreError::InvalidArgument { field, reason }
            }
            LedgerError::OutOfRange { reason } => StoreError::OutOfRange(reason),
            other => StoreError::Corrupt {
                position: None,
                detail: other.to_string(),
            },
        }
    }
}
