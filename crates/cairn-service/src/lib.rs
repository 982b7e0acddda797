//! The use cases of cairn, generic over the store: appending with personal data sealed under the
//! data subject's key, opening records for a reader, the server's identity (log id and checkpoint
//! signing key), and the checkpointer that signs the tree.
//!
//! This crate never names tonic, prost, casbin, sled or async-nats: it sits between the gRPC edge
//! and the store traits.

mod checkpointer;
pub mod dataset;
mod denials;
mod error;
pub mod export;
pub mod feedback_loop;
pub mod governance;
pub mod history;
mod identity;
mod ledger;
pub mod reads;
pub mod scoring_policy;
pub mod stewardship;
pub mod tokens;

pub use checkpointer::{Checkpointer, CheckpointerHandle};
pub use error::ServiceError;
pub use feedback_loop::{CommandMeta, CommandReceipt, FeedbackLoop};
pub use identity::ServerIdentity;
pub use ledger::{
    AppendCommand, EventDraft, KEY_GENERATIONS_MAX, Ledger, OpenedRecord, PersonalData,
    PersonalView,
};
pub use reads::{ReadOptions, Reads, Stamp, Stamped};
pub use scoring_policy::ScoringPolicy;
