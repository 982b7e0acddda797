use cairn_ledger::Position;

/// An error of the projections.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// sled failed.
    #[error("projection store: {0}")]
    Sled(#[from] sled::Error),
    /// Stored views contradict themselves.
    #[error("projection store is corrupt: {0}")]
    Corrupt(String),
    /// A record could not be decoded.
    #[error("record at position {position} does not decode: {reason}")]
    Decode {
        /// Where.
        position: Position,
        /// Why.
        reason: String,
    },
    /// Records were handed over with a gap; nothing of the slice was applied.
    #[error("records must follow position {applied}; got {got}")]
    Gap {
        /// The position reached before the gap (the applied position, or the record before the
        /// gap within the slice).
        applied: Position,
        /// The first position handed over.
        got: Position,
    },
    /// The projection did not reach the asked position before the deadline.
    #[error("the projection reached position {reached}, not {wanted}, before the deadline")]
    DeadlineExceeded {
        /// What was asked for.
        wanted: Position,
        /// Where the projection is.
        reached: Position,
    },
    /// An as-of position beyond what is applied.
    #[error("position {wanted} is not applied yet (applied through {applied})")]
    NotYetApplied {
        /// What was asked for.
        wanted: Position,
        /// Where the projection is.
        applied: Position,
    },
    /// A bad query argument.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Reading the ledger failed.
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
}
