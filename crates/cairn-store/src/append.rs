//! The append rules, written once for every backend: validation, idempotency on event ids, the
//! expected-version check, and building the records of a batch.

use std::collections::HashSet;

use cairn_ledger::{
    ENVELOPE_FORMAT_V1, Envelope, EventId, Hash, LedgerError, Position, Record, SealedPayload,
    StreamId, StreamVersion, Timestamp, check_sealed_key, limits as ledger_limits,
    payload_commitment, validate_event_fields,
};

use crate::error::StoreError;
use crate::event::{AppendResult, ExpectedVersion, NewEvent};
use crate::limits;

/// What a backend must be able to look up to plan an append. A backend that plans several appends
/// before writing them (group commit) answers from its committed state plus what it has planned.
pub trait StateView {
    /// The stream's current version.
    fn stream_version(&self, stream: &StreamId) -> Result<StreamVersion, StoreError>;
    /// The envelope of the event recorded under this id, if any.
    fn envelope_by_event_id(&self, event_id: &EventId) -> Result<Option<Envelope>, StoreError>;
}

/// The outcome of planning an append.
#[derive(Debug, PartialEq, Eq)]
pub enum AppendPlan {
    /// Every event was recorded before with the same content: answer with the original positions.
    Duplicate(AppendResult),
    /// Write the batch; its first event gets this stream version.
    Write {
        /// Version of the first event of the batch.
        first_version: StreamVersion,
    },
}

/// Checks a batch against every limit before anything else looks at it.
pub fn validate_append(stream: &StreamId, events: &[NewEvent]) -> Result<(), StoreError> {
    stream.validate()?;
    if events.is_empty() {
        return Err(StoreError::InvalidArgument {
            field: "events",
            reason: "an append needs at least one event".into(),
        });
    }
    if events.len() > limits::APPEND_EVENTS_MAX {
        return Err(StoreError::LimitExceeded {
            what: "events per append",
            limit: limits::APPEND_EVENTS_MAX as u64,
            actual: events.len() as u64,
        });
    }
    let mut batch_bytes = 0usize;
    let mut seen = HashSet::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let at = |error: LedgerError| match StoreError::from(error) {
            StoreError::InvalidArgument { field, reason } => StoreError::InvalidArgument {
                field,
                reason: format!("event {index}: {reason}"),
            },
            other => other,
        };
        validate_event_fields(&event.event_type, &event.actor, &event.lineage).map_err(at)?;
        if event.payload.len() > ledger_limits::PAYLOAD_BYTES_MAX {
            return Err(StoreError::LimitExceeded {
                what: "payload bytes",
                limit: ledger_limits::PAYLOAD_BYTES_MAX as u64,
                actual: event.payload.len() as u64,
            });
        }
        let sealed =
            SealedPayload::decode(&event.payload).map_err(|error| StoreError::InvalidArgument {
                field: "payload",
                reason: format!("event {index}: not a sealed payload encoding: {error}"),
            })?;
        check_sealed_key(event.key_id, &sealed).map_err(at)?;
        if event.data_class.requires_sealing() != event.key_id.is_some() {
            return Err(StoreError::InvalidArgument {
                field: "key_id",
                reason: format!(
                    "event {index}: data class {} {} a data key",
                    event.data_class.as_str(),
                    if event.data_class.requires_sealing() {
                        "requires"
                    } else {
                        "must not name"
                    }
                ),
            });
        }
        if !seen.insert(event.event_id) {
            return Err(StoreError::InvalidArgument {
                field: "event_id",
                reason: format!(
                    "event {index}: id {} appears twice in one append",
                    event.event_id
                ),
            });
        }
        batch_bytes += event.payload.len()
            + event.event_type.len()
            + event.actor.len()
            + event
                .lineage
                .iter()
                .map(|parent| {
                    parent.relation.len()
                        + parent.target.aggregate_type.len()
                        + parent.target.aggregate_id.len()
                        + parent.target.tenant.as_str().len()
                })
                .sum::<usize>();
    }
    if batch_bytes > limits::APPEND_BATCH_BYTES_MAX {
        return Err(StoreError::LimitExceeded {
            what: "append batch bytes",
            limit: limits::APPEND_BATCH_BYTES_MAX as u64,
            actual: batch_bytes as u64,
        });
    }
    Ok(())
}

/// Decides what an append does: a retry of recorded events, a conflict, or a write.
///
/// Idempotency is checked before the expected version, so a retry of an append that succeeded
/// gets its original answer even though the stream has moved on since.
pub fn plan_append(
    view: &impl StateView,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendPlan, StoreError> {
    let mut recorded = Vec::new();
    for event in events {
        if let Some(envelope) = view.envelope_by_event_id(&event.event_id)? {
            recorded.push((event, envelope));
        }
    }
    if let Some((_, first)) = recorded.first() {
        if recorded.len() != events.len() {
            return Err(StoreError::EventIdConflict {
                event_id: first.event_id,
                position: first.position,
                reason: format!(
                    "{} of the {} events of this append are recorded already: re-send the \
                     original append unchanged",
                    recorded.len(),
                    events.len()
                ),
            });
        }
        for (offset, (event, envelope)) in recorded.iter().enumerate() {
            if let Some(field) = differing_field(event, stream, envelope) {
                return Err(StoreError::EventIdConflict {
                    event_id: envelope.event_id,
                    position: envelope.position,
                    reason: format!("it was recorded with a different {field}"),
                });
            }
            if envelope.position.0 != first.position.0 + offset as u64 {
                return Err(StoreError::EventIdConflict {
                    event_id: envelope.event_id,
                    position: envelope.position,
                    reason: "the ids were recorded by different appends or in another order".into(),
                });
            }
        }
        let last = &recorded[recorded.len() - 1].1;
        return Ok(AppendPlan::Duplicate(AppendResult {
            first_position: first.position,
            last_position: last.position,
            last_version: last.stream_version,
            deduplicated: true,
        }));
    }
    let current = view.stream_version(stream)?;
    let matches = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current == StreamVersion::NONE,
        ExpectedVersion::Exact(version) => current == version,
    };
    if !matches {
        return Err(StoreError::WrongExpectedVersion {
            stream: stream.clone(),
            expected,
            current,
        });
    }
    Ok(AppendPlan::Write {
        first_version: current.next(),
    })
}

/// Builds the records of a planned batch: contiguous positions from `first_position`, versions
/// from `first_version`, all stamped `recorded_at`.
pub fn build_records(
    stream: &StreamId,
    first_position: Position,
    first_version: StreamVersion,
    recorded_at: Timestamp,
    events: &[NewEvent],
) -> Result<Vec<Record>, StoreError> {
    events
        .iter()
        .enumerate()
        .map(|(offset, event)| {
            let envelope = Envelope {
                format_version: ENVELOPE_FORMAT_V1,
                position: Position(first_position.0 + offset as u64),
                stream: stream.clone(),
                stream_version: StreamVersion(first_version.0 + offset as u64),
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                event_schema_version: event.event_schema_version,
                recorded_at,
                actor: event.actor.clone(),
                causation_id: event.causation_id,
                correlation_id: event.correlation_id,
                lineage: event.lineage.clone(),
                data_class: event.data_class,
                key_id: event.key_id,
                // Record::new sets both from the payload.
                payload_commitment: Hash::ZERO,
                payload_len: 0,
                policy_bundle_hash: event.policy_bundle_hash,
            };
            Ok(Record::new(envelope, event.payload.clone())?)
        })
        .collect()
}

/// The first caller-supplied field in which `event` differs from what was recorded, if any.
///
/// The policy bundle hash is not compared: like the recording time, it is the server's context
/// when the event was first recorded (the bundle in force then), not part of what the caller asked
/// to record, so a retry after a policy reload still answers with the original positions.
fn differing_field(
    event: &NewEvent,
    stream: &StreamId,
    envelope: &Envelope,
) -> Option<&'static str> {
    if &envelope.stream != stream {
        Some("stream")
    } else if envelope.event_type != event.event_type {
        Some("event_type")
    } else if envelope.event_schema_version != event.event_schema_version {
        Some("event_schema_version")
    } else if envelope.actor != event.actor {
        Some("actor")
    } else if envelope.causation_id != event.causation_id {
        Some("causation_id")
    } else if envelope.correlation_id != event.correlation_id {
        Some("correlation_id")
    } else if envelope.lineage != event.lineage {
        Some("lineage")
    } else if envelope.data_class != event.data_class {
        Some("data_class")
    } else if envelope.key_id != event.key_id {
        Some("key_id")
    } else if envelope.payload_commitment != payload_commitment(&event.payload) {
        Some("payload")
    } else {
        None
    }
}
