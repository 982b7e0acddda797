use std::fmt;

use cairn_ledger::{
    DataClass, EventId, Hash, KeyId, LineageParent, Position, SignedCheckpoint, StreamVersion,
};

/// An event as a caller hands it to a store: everything but what the store assigns (position,
/// stream version, recorded time, payload commitment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Idempotency key: one event per id, for ever.
    pub event_id: EventId,
    /// The event's type name.
    pub event_type: String,
    /// The payload's schema version for that type.
    pub event_schema_version: u16,
    /// The principal who caused it.
    pub actor: String,
    /// The event that caused it.
    pub causation_id: Option<EventId>,
    /// The request or workflow it belongs to.
    pub correlation_id: Option<EventId>,
    /// Lineage edges to what it came from.
    pub lineage: Vec<LineageParent>,
    /// The most sensitive class of data in the payload.
    pub data_class: DataClass,
    /// The data key the payload's personal part is sealed under.
    pub key_id: Option<KeyId>,
    /// Hash of the policy bundle in force.
    pub policy_bundle_hash: Hash,
    /// The payload: a `cairn_ledger::SealedPayload` encoding, its personal part already sealed
    /// under `key_id` (a store refuses anything else).
    pub payload: Vec<u8>,
}

/// The optimistic-concurrency condition of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must have no events.
    NoStream,
    /// The stream must be at exactly this version.
    Exact(StreamVersion),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(version) => write!(f, "{version}"),
        }
    }
}

/// Where an append's events landed. The events of one append are contiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// Position of the first event.
    pub first_position: Position,
    /// Position of the last event.
    pub last_position: Position,
    /// The stream's version after the last event.
    pub last_version: StreamVersion,
    /// True when every event was recorded before (a retry): nothing new was stored.
    pub deduplicated: bool,
}

/// The head of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The newest position ([`Position::ZERO`] when empty); also the tree size.
    pub position: Position,
    /// The Merkle root of the tree of that size.
    pub root: Hash,
    /// The newest signed checkpoint, which may lag behind the head.
    pub checkpoint: Option<SignedCheckpoint>,
}
