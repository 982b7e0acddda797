//! The cairn domain: entities, commands, events, state machines, scoring and lineage edges of the
//! platform feedback loop, as `decide(state, command, ctx) -> events` and `apply(state, event)`.
//!
//! This crate must never do I/O, read the clock or draw randomness (time, ids and the scoring
//! model in force come in through [`Ctx`]), and never name a storage, transport or policy crate.
//! It knows nothing of positions, envelopes or sealing: [`codec`] turns an event into a clear part
//! and an optional personal part, and the service seals the latter.
//!
//! Aggregates (one ledger stream each): [`feedback::Feedback`], [`signal::Signal`],
//! [`opportunity::Opportunity`] (with its votes, ratings and score snapshots),
//! [`decision::Decision`], [`initiative::Initiative`] (with its milestones). Every event names the
//! lineage edges it records ([`Event::edges`]).

pub mod codec;
mod common;
pub mod decision;
mod error;
pub mod export;
pub mod feedback;
pub mod governance;
pub mod initiative;
pub mod limits;
pub mod opportunity;
pub mod privacy;
pub mod pseudonym;
pub mod scoring;
pub mod signal;

pub use codec::{EncodedEvent, Event};
pub use common::{
    Aggregate, Ctx, DAY_MICROS, Edge, EntityId, EntityKind, EntityRef, PrincipalId, Relation, Team,
    Time, Visibility,
};
pub use error::{DomainError, Rule};
