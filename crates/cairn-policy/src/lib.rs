//! cairn's access policy: who may do what, in which tenant, and why. The policy bundle (every
//! file of `policies/`, hashed), the casbin access model and policy compiled into an immutable
//! [`Authorizer`] with runtime grants, THE table of what every RPC is checked for ([`RPCS`]),
//! the bundle's own policy tests ([`run_tests`]) and dry runs of a proposed bundle
//! ([`dry_run`]).
//!
//! This is the only crate that names casbin. It must never allow by default: the model is fixed
//! to casbin's `some(where (p.eft == allow))` effect with no deny rows, so an empty policy denies
//! everything, and any request with an invalid principal or tenant is denied before casbin is
//! asked. It never writes a policy file: runtime grants are ledger events, handed to
//! [`Authorizer::compile`]. It does no I/O but [`Bundle::load_dir`], and starts no runtime.
//!
//! Verdicts are decided by casbin and explained by cairn (the row and the chain of grants that
//! allowed, or the roles held when denied), following the same rows; the tests check that both
//! agree on every request they make.

mod access;
mod authorizer;
mod bundle;
mod error;
pub mod limits;
mod names;
mod retention;
mod rpc;
mod testing;

pub use access::{MODEL_PATH, POLICY_PATH};
pub use authorizer::{AccessRequest, Authorizer, Grant, Verdict};
pub use bundle::{BUNDLE_HASH_CONTEXT, Bundle};
pub use error::PolicyError;
pub use names::{
    ANY_TENANT, Action, Object, ROLE_PREFIX, validate_principal, validate_role, validate_tenant,
};
pub use retention::{
    RETAINED_CLASSES, RETENTION_DAYS_MAX, RETENTION_MODEL_PATH, RETENTION_POLICY_PATH,
    RetentionPolicy, RetentionRule,
};
pub use rpc::{RPCS, RpcAccess, Scope, rpc_access};
pub use testing::{Flip, TESTS_DIR, TestCase, TestReport, dry_run, run_tests};
