//! Limits every backend enforces, named with the unit last.

/// Most events in one append. 1,000 because JetStream's atomic batch publish takes at most 1,000
/// messages, and an append must be stored whole on every backend.
pub const APPEND_EVENTS_MAX: usize = 1000;
/// Most bytes (payloads plus the variable-length envelope fields) in one append.
pub const APPEND_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most records one read call returns; larger limits are clamped to it.
pub const READ_RECORDS_MAX: usize = 4096;
/// How far a live subscriber may fall behind the head before it is cut off with
/// `SubscriberTooSlow` (the capacity of the live broadcast).
pub const LIVE_BUFFER_RECORDS: usize = 4096;
/// Largest per-subscription delivery buffer, in records.
pub const SUBSCRIPTION_BUFFER_RECORDS_MAX: usize = 4096;
