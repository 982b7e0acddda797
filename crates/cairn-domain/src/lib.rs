//! The cairn domain: entities, commands, events, state machines, scoring and lineage edges of the
//! platform feedback loop, as `decide(state, command, ctx) -> events` and `apply(state, event)`.
//!
//! This crate must never do I/O, read the clock or draw randomness (time, ids and keys come in
//! through the context), and never name a storage, transport or policy crate.
//!
//! It is empty until the feedback-loop issue: the ledger below it stores events as opaque,
//! versioned payloads, so nothing here is needed to record, prove or verify them.
