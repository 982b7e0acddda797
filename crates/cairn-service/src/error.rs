use cairn_store::StoreError;

/// An error from a use case.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Invalid input, with the field.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field, as named in the API.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The request cannot be served in the ledger's present state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A policy file is invalid.
    #[error("policy file {file}: {reason}")]
    InvalidPolicy {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The domain refused the command: the rule it breaks.
    #[error("{0}")]
    Refused(cairn_domain::DomainError),
    /// The entity does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A read could not reach the asked position before its deadline.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Something inside the server failed (a read model is damaged, a worker died).
    #[error("{0}")]
    Internal(String),
    /// Local files of the server (identity) could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl From<cairn_ledger::LedgerError> for ServiceError {
    fn from(error: cairn_ledger::LedgerError) -> ServiceError {
        ServiceError::Store(StoreError::from(error))
    }
}

impl From<cairn_projections::ProjectionError> for ServiceError {
    fn from(error: cairn_projections::ProjectionError) -> ServiceError {
        use cairn_projections::ProjectionError as P;
        match error {
            P::InvalidArgument { field, reason } => ServiceError::InvalidArgument { field, reason },
            P::DeadlineExceeded { .. } => ServiceError::DeadlineExceeded(error.to_string()),
            P::NotYetApplied { .. } => {
                ServiceError::Store(StoreError::OutOfRange(error.to_string()))
            }
            P::Store(store) => ServiceError::Store(store),
            P::Sled(_) | P::Corrupt(_) | P::Decode { .. } | P::Gap { .. } => {
                ServiceError::Internal(error.to_string())
            }
        }
    }
}
