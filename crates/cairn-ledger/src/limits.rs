//! The limits of the record format. Every variable-length field of an envelope has one, checked
//! before a record is built, so no record in a ledger can exceed them.

/// Longest tenant id, in bytes.
pub const TENANT_ID_BYTES_MAX: usize = 64;
/// Longest aggregate type name, in bytes.
pub const AGGREGATE_TYPE_BYTES_MAX: usize = 64;
/// Longest aggregate id, in bytes.
pub const AGGREGATE_ID_BYTES_MAX: usize = 128;
/// Longest event type name, in bytes.
pub const EVENT_TYPE_BYTES_MAX: usize = 128;
/// Longest actor (principal) id, in bytes.
pub const ACTOR_BYTES_MAX: usize = 256;
/// Longest lineage relation name, in bytes.
pub const RELATION_BYTES_MAX: usize = 64;
/// Most lineage parents one event may name.
pub const LINEAGE_PARENTS_MAX: usize = 32;
/// Largest sealed payload of one event, in bytes.
pub const PAYLOAD_BYTES_MAX: usize = 256 * 1024;
/// Largest encoded envelope, in bytes (bounded by the field limits above; checked on decode).
pub const ENVELOPE_BYTES_MAX: usize = 16 * 1024;
