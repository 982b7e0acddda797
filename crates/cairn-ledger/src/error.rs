use crate::ids::Position;

/// Every way a record, proof or checkpoint can fail to be what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Bytes that do not decode as the named structure.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// Which structure was being decoded.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A format version this build does not know.
    #[error("unsupported {what} format version {found}")]
    UnsupportedVersion {
        /// Which structure carried the version.
        what: &'static str,
        /// The version found.
        found: u16,
    },
    /// Bytes that decode but are not the canonical encoding of what they decode to.
    #[error("{what} is not canonically encoded")]
    NonCanonical {
        /// Which structure.
        what: &'static str,
    },
    /// A field outside its named limit.
    #[error("{field} is {actual}, over the limit of {limit}")]
    LimitExceeded {
        /// The field, as named in the API.
        field: &'static str,
        /// The limit.
        limit: u64,
        /// What was given.
        actual: u64,
    },
    /// A field whose content is not allowed.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field, as named in the API.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The payload does not match the commitment in its envelope.
    #[error("payload of the record at position {position} does not match its commitment")]
    CommitmentMismatch {
        /// Position of the record.
        position: Position,
    },
    /// A Merkle proof that does not prove what it claims.
    #[error("invalid proof: {reason}")]
    InvalidProof {
        /// Which check failed.
        reason: String,
    },
    /// A tree size or leaf index outside the tree.
    #[error("out of range: {reason}")]
    OutOfRange {
        /// What was out of range.
        reason: String,
    },
    /// A checkpoint signature that does not verify under the given key.
    #[error("checkpoint signature does not verify")]
    BadSignature,
    /// An AEAD failure: wrong key, tampered ciphertext or associated data.
    #[error("sealed payload cannot be opened: {reason}")]
    Unseal {
        /// Why.
        reason: &'static str,
    },
}
