//! Why a bundle, a grant or a name was refused.

/// Why a bundle, a grant or a name was refused. Every variant names where: the file and line, the
/// grant, or the field and the limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A name (tenant, principal, role, object, action) is not in its alphabet.
    #[error("{field} {value:?} is invalid: {reason}")]
    InvalidField {
        /// Which field: `tenant`, `principal`, `role`, `object`, `action`.
        field: &'static str,
        /// The text refused.
        value: String,
        /// What it must be.
        reason: String,
    },
    /// A value over its limit.
    #[error("{what} over the limit: {actual} > {limit}")]
    Limit {
        /// What was counted, with its unit.
        what: String,
        /// The limit.
        limit: u64,
        /// What was found.
        actual: u64,
    },
    /// A line of a bundle file that does not parse or names something invalid.
    #[error("{file}:{line}: {reason}")]
    InvalidLine {
        /// The bundle-relative path.
        file: String,
        /// 1-based.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A bundle file that is missing, misplaced or refused as a whole.
    #[error("{file}: {reason}")]
    InvalidFile {
        /// The bundle-relative path (or the path given).
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading a bundle directory failed.
    #[error("reading {path}: {message}")]
    Io {
        /// The path being read.
        path: String,
        /// The I/O error, as text (so the error stays `Clone` and `Eq`).
        message: String,
    },
    /// A runtime grant that names an invalid principal, role or tenant.
    #[error("grant {index} ({principal}, {role}, {tenant}): {reason}")]
    InvalidGrant {
        /// Its index in the grants given.
        index: usize,
        /// The grant's principal.
        principal: String,
        /// The grant's role.
        role: String,
        /// The grant's tenant.
        tenant: String,
        /// What is wrong with it.
        reason: String,
    },
    /// casbin refused what it was given after cairn's own checks passed.
    #[error("casbin refused the access policy: {0}")]
    Casbin(String),
}
