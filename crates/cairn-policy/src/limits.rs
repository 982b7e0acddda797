//! The limits of a policy bundle and of an authorizer: everything that grows has one.

/// Longest tenant id, in bytes (as `cairn_ledger::limits::TENANT_ID_BYTES_MAX`).
pub const TENANT_BYTES_MAX: usize = 64;
/// Longest principal id, in bytes.
pub const PRINCIPAL_BYTES_MAX: usize = 128;
/// Longest role name after `role:`, in bytes.
pub const ROLE_NAME_BYTES_MAX: usize = 64;
/// Most files in a bundle.
pub const BUNDLE_FILES_MAX: usize = 1024;
/// Longest relative path of a bundle file, in bytes.
pub const PATH_BYTES_MAX: usize = 512;
/// Largest bundle file, in bytes.
pub const FILE_BYTES_MAX: usize = 1024 * 1024;
/// Largest bundle (all files together), in bytes.
pub const BUNDLE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most `p` and `g` rows in `access/policy.csv`.
pub const POLICY_ROWS_MAX: usize = 10_000;
/// Longest chain of role inheritance (`g, role:a, role:b, *` rows followed from one role).
/// casbin follows at most 10 links from a principal; one is the principal's own grant.
pub const ROLE_INHERITANCE_DEPTH_MAX: usize = 6;
/// Most runtime grants an authorizer is compiled with.
pub const GRANTS_MAX: usize = 100_000;
/// Most verdicts an authorizer remembers; past it the memo starts again empty.
pub const MEMO_VERDICTS_MAX: usize = 100_000;
/// Most rows in all of a bundle's policy test files.
pub const TEST_CASES_MAX: usize = 100_000;
