//! What cairn publishes to JetStream: one message per record, its subject derived from the
//! ledger stream, its body the caller's part of the record.
//!
//! The position and the stream version are not in the body: JetStream assigns the first (the
//! stream sequence is the ledger position) and the second follows from the records of the subject
//! before it. The recorded time is the appending node's clock, raised to the previous record's
//! when it is earlier, so it never goes back. Every node derives all three the same way while it
//! applies the stream in order, so every node builds the same envelopes, leaves and roots, and the
//! appending node can apply its own records from the acknowledgement alone (it needs nothing the
//! server adds but the position).

use cairn_ledger::{
    DataClass, ENVELOPE_FORMAT_V1, Envelope, EventId, Hash, KeyId, LineageParent, Position, Record,
    StreamId, StreamVersion, Timestamp, payload_commitment,
};
use cairn_store::{NewEvent, StoreError};
use serde::{Deserialize, Serialize};

/// The body format's version, its first field. Version 2 carries the recorded time (version 1
/// took it from the JetStream timestamp, which an acknowledgement does not carry).
pub const BODY_FORMAT_V2: u16 = 2;

/// The body of one published record.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Body {
    format: u16,
    /// The appending node's clock when it published; see [`place`] for how it is clamped.
    recorded_at: Timestamp,
    stream: StreamId,
    event_id: EventId,
    event_type: String,
    event_schema_version: u16,
    actor: String,
    causation_id: Option<EventId>,
    correlation_id: Option<EventId>,
    lineage: Vec<LineageParent>,
    data_class: DataClass,
    key_id: Option<KeyId>,
    policy_bundle_hash: Hash,
    payload_commitment: Hash,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
    /// This record's index in its append, and the append's length: a node shows the records of
    /// an append only once it has them all.
    batch_index: u16,
    batch_len: u16,
}

/// The subject of a ledger stream's records: `PREFIX.s.` and 32 hex digits of a blake3 hash of
/// the stream id. Hashing keeps any tenant or aggregate id a valid subject token; a node checks
/// on every record that the body's stream hashes to its subject.
pub fn subject(prefix: &str, stream: &StreamId) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("cairn jetstream subject v1");
    for part in [
        stream.tenant.as_str(),
        stream.aggregate_type.as_str(),
        stream.aggregate_id.as_str(),
    ] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    format!("{prefix}.s.{}", hex::encode(&digest.as_bytes()[..16]))
}

/// The subject filter that covers every ledger stream's subject.
pub fn subjects_filter(prefix: &str) -> String {
    format!("{prefix}.s.*")
}

/// Encodes the body of an append of one event to `stream`, recorded now.
pub fn encode(stream: &StreamId, event: &NewEvent) -> Vec<u8> {
    body_at(stream, event, cairn_store::now(), 0, 1).encode()
}

/// The bodies of an append of `events` to `stream` (at most
/// `cairn_store::limits::APPEND_EVENTS_MAX`), recorded at `recorded_at`.
pub(crate) fn bodies(stream: &StreamId, events: &[NewEvent], recorded_at: Timestamp) -> Vec<Body> {
    let len = u16::try_from(events.len()).expect("an append holds at most 1,000 events");
    events
        .iter()
        .enumerate()
        .map(|(index, event)| body_at(stream, event, recorded_at, index as u16, len))
        .collect()
}

impl Body {
    /// The bytes published.
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a body always encodes")
    }
}

fn body_at(
    stream: &StreamId,
    event: &NewEvent,
    recorded_at: Timestamp,
    batch_index: u16,
    batch_len: u16,
) -> Body {
    Body {
        format: BODY_FORMAT_V2,
        recorded_at,
        stream: stream.clone(),
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        event_schema_version: event.event_schema_version,
        actor: event.actor.clone(),
        causation_id: event.causation_id,
        correlation_id: event.correlation_id,
        lineage: event.lineage.clone(),
        data_class: event.data_class,
        key_id: event.key_id,
        policy_bundle_hash: event.policy_bundle_hash,
        payload_commitment: payload_commitment(&event.payload),
        payload: event.payload.clone(),
        batch_index,
        batch_len,
    }
}

/// A decoded record and its place in its append.
pub struct Decoded {
    /// The record.
    pub record: Record,
    /// Its index in its append.
    pub batch_index: u16,
    /// The append's length.
    pub batch_len: u16,
}

/// Decodes the message at `position` into its record: [`parse`], then [`place`].
pub fn decode(
    prefix: &str,
    message_subject: &str,
    bytes: &[u8],
    position: Position,
    previous_recorded_at: Timestamp,
    next_version: impl FnOnce(&StreamId) -> StreamVersion,
) -> Result<Decoded, StoreError> {
    let body = parse(prefix, message_subject, bytes, position)?;
    place(body, position, previous_recorded_at, next_version)
}

/// Decodes the body of the message at `position`, checking its format, its subject, the sealed
/// payload's key and its place in its append ([`place`] checks the payload commitment).
pub(crate) fn parse(
    prefix: &str,
    message_subject: &str,
    bytes: &[u8],
    position: Position,
) -> Result<Body, StoreError> {
    let body: Body = postcard::from_bytes(bytes).map_err(|error| corrupt(position, error))?;
    if body.format != BODY_FORMAT_V2 {
        return Err(StoreError::Corrupt {
            position: Some(position),
            detail: format!("body format {} is not one this build reads", body.format),
        });
    }
    if subject(prefix, &body.stream) != message_subject {
        return Err(StoreError::Corrupt {
            position: Some(position),
            detail: format!(
                "the record of stream {} was published on subject {message_subject}, not its own",
                body.stream
            ),
        });
    }
    if body.batch_len == 0 || body.batch_index >= body.batch_len {
        return Err(StoreError::Corrupt {
            position: Some(position),
            detail: format!(
                "record {} of an append of {} does not exist",
                body.batch_index, body.batch_len
            ),
        });
    }
    let sealed = cairn_ledger::SealedPayload::decode(&body.payload)
        .map_err(|error| corrupt(position, error))?;
    cairn_ledger::check_sealed_key(body.key_id, &sealed)
        .map_err(|error| corrupt(position, error))?;
    Ok(body)
}

/// The record a body makes at `position`: `next_version` gives the stream version of the next
/// record of a stream; the recorded time is the body's, raised to `previous_recorded_at` (the
/// record before's) when it is earlier, so a node whose clock is behind another's never makes
/// time go back.
pub(crate) fn place(
    body: Body,
    position: Position,
    previous_recorded_at: Timestamp,
    next_version: impl FnOnce(&StreamId) -> StreamVersion,
) -> Result<Decoded, StoreError> {
    let stream_version = next_version(&body.stream);
    let envelope = Envelope {
        format_version: ENVELOPE_FORMAT_V1,
        position,
        stream: body.stream,
        stream_version,
        event_id: body.event_id,
        event_type: body.event_type,
        event_schema_version: body.event_schema_version,
        recorded_at: body.recorded_at.max(previous_recorded_at),
        actor: body.actor,
        causation_id: body.causation_id,
        correlation_id: body.correlation_id,
        lineage: body.lineage,
        data_class: body.data_class,
        key_id: body.key_id,
        payload_commitment: Hash::ZERO,
        payload_len: 0,
        policy_bundle_hash: body.policy_bundle_hash,
    };
    let (batch_index, batch_len) = (body.batch_index, body.batch_len);
    let record = Record::new(envelope, body.payload).map_err(|error| corrupt(position, error))?;
    // The record hashes the payload; the body says what it hashed to when it was published.
    if record.envelope.payload_commitment != body.payload_commitment {
        return Err(StoreError::Corrupt {
            position: Some(position),
            detail: "the payload does not match the commitment it was published with".into(),
        });
    }
    Ok(Decoded {
        record,
        batch_index,
        batch_len,
    })
}

fn corrupt(position: Position, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        position: Some(position),
        detail: format!("the published record does not decode: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_decodes_to_the_record_the_placement_says() {
        let stream = cairn_store::testsuite::stream("s-1");
        let event = cairn_store::testsuite::event("e-1");
        let bytes = encode(&stream, &event);
        let record = decode(
            "cairn",
            &subject("cairn", &stream),
            &bytes,
            Position(7),
            Timestamp(5),
            |named| {
                assert_eq!(named, &stream);
                StreamVersion(2)
            },
        )
        .unwrap()
        .record;
        assert_eq!(record.envelope.stream_version, StreamVersion(2));
        // The body's time (now), never before the previous record's.
        assert!(record.envelope.recorded_at > Timestamp(5));
        let later = Timestamp(i64::MAX / 2);
        let clamped = decode(
            "cairn",
            &subject("cairn", &stream),
            &bytes,
            Position(7),
            later,
            |_| StreamVersion(2),
        )
        .unwrap()
        .record;
        assert_eq!(clamped.envelope.recorded_at, later);
        assert_eq!(record.envelope.position, Position(7));
        assert_eq!(record.envelope.event_id, event.event_id);
        assert_eq!(record.payload, event.payload);
        let other = subject("cairn", &cairn_store::testsuite::stream("s-2"));
        let misplaced = decode("cairn", &other, &bytes, Position(7), Timestamp(5), |_| {
            StreamVersion(2)
        });
        assert!(matches!(misplaced, Err(StoreError::Corrupt { .. })));
        let mut tampered: Body = postcard::from_bytes(&bytes).unwrap();
        tampered.payload_commitment = Hash([7; 32]);
        let tampered = decode(
            "cairn",
            &subject("cairn", &stream),
            &tampered.encode(),
            Position(7),
            Timestamp(5),
            |_| StreamVersion(2),
        );
        assert!(
            matches!(&tampered, Err(StoreError::Corrupt { detail, .. }) if detail.contains("commitment")),
            "{:?}",
            tampered.err()
        );
    }
}
