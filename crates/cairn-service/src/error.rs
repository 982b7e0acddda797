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
