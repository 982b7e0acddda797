//! Conversions between proto messages and ledger types; every refusal names its field.

use cairn_ledger::{
    Checkpoint, DataClass, EventId, Hash, LedgerError, LineageParent, LogId, PublicKey, Record,
    SignedCheckpoint, StreamId, TenantId, Timestamp,
};
use cairn_service::{EventDraft, OpenedRecord, PersonalData, PersonalView};
use cairn_store::ExpectedVersion;
use tonic::Status;

use crate::error::invalid_argument;
use crate::proto;

fn ledger_status(field: &str, error: LedgerError) -> Status {
    match error {
        LedgerError::LimitExceeded {
            field: inner,
            limit,
            actual,
        } => Status::resource_exhausted(format!(
            "{field}: {inner} is {actual}, over the limit of {limit}"
        )),
        other => invalid_argument(field, format!("invalid {field}: {other}")),
    }
}

pub(crate) fn stream_from_proto(
    field: &str,
    stream: Option<proto::StreamRef>,
) -> Result<StreamId, Status> {
    let stream = stream.ok_or_else(|| invalid_argument(field, format!("{field} is required")))?;
    let tenant = TenantId::new(stream.tenant).map_err(|error| ledger_status(field, error))?;
    StreamId::new(tenant, stream.aggregate_type, stream.aggregate_id)
        .map_err(|error| ledger_status(field, error))
}

pub(crate) fn stream_to_proto(stream: &StreamId) -> proto::StreamRef {
    proto::StreamRef {
        tenant: stream.tenant.as_str().to_owned(),
        aggregate_type: stream.aggregate_type.clone(),
        aggregate_id: stream.aggregate_id.clone(),
    }
}

pub(crate) fn optional_id(field: &str, bytes: &[u8]) -> Result<Option<EventId>, Status> {
    if bytes.is_empty() {
        return Ok(None);
    }
    EventId::from_slice(bytes, "event id")
        .map(Some)
        .map_err(|error| ledger_status(field, error))
}

pub(crate) fn expected_from_proto(expected: Option<proto::ExpectedVersion>) -> ExpectedVersion {
    use proto::expected_version::Condition;
    match expected.and_then(|expected| expected.condition) {
        None | Some(Condition::Any(_)) => ExpectedVersion::Any,
        Some(Condition::NoStream(_)) => ExpectedVersion::NoStream,
        Some(Condition::Exact(version)) => {
            ExpectedVersion::Exact(cairn_ledger::StreamVersion(version))
        }
    }
}

pub(crate) fn draft_from_proto(
    index: usize,
    event: proto::EventInput,
) -> Result<EventDraft, Status> {
    let field = |name: &str| format!("events[{index}].{name}");
    let event_schema_version = u16::try_from(event.event_schema_version).map_err(|_| {
        invalid_argument(
            &field("event_schema_version"),
            format!("{} must fit in 16 bits", field("event_schema_version")),
        )
    })?;
    let lineage = event
        .lineage
        .into_iter()
        .enumerate()
        .map(|(parent_index, parent)| {
            Ok(LineageParent {
                relation: parent.relation,
                target: stream_from_proto(
                    &field(&format!("lineage[{parent_index}].target")),
                    parent.target,
                )?,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    let data_class = if event.data_class.is_empty() {
        None
    } else {
        Some(
            DataClass::parse(&event.data_class)
                .map_err(|error| ledger_status(&field("data_class"), error))?,
        )
    };
    let personal = if event.personal.is_empty() && event.data_subject.is_empty() {
        None
    } else {
        Some(PersonalData {
            subject: event.data_subject,
            bytes: event.personal,
        })
    };
    let expected_policy_bundle_hash = if event.policy_bundle_hash.is_empty() {
        None
    } else {
        Some(
            Hash::from_slice(&event.policy_bundle_hash, "policy_bundle_hash")
                .map_err(|error| ledger_status(&field("policy_bundle_hash"), error))?,
        )
    };
    Ok(EventDraft {
        event_id: optional_id(&field("event_id"), &event.event_id)?,
        event_type: event.event_type,
        event_schema_version,
        causation_id: optional_id(&field("causation_id"), &event.causation_id)?,
        correlation_id: optional_id(&field("correlation_id"), &event.correlation_id)?,
        lineage,
        data_class,
        clear: event.payload,
        personal,
        expected_policy_bundle_hash,
    })
}

/// The proto form of a record opened for a reader.
pub(crate) fn record_to_proto(opened: OpenedRecord) -> proto::Record {
    let envelope = &opened.record.envelope;
    let (personal_state, personal) = match opened.personal {
        PersonalView::None => (proto::PersonalState::None, Vec::new()),
        PersonalView::Open(bytes) => (proto::PersonalState::Open, bytes),
        PersonalView::Withheld => (proto::PersonalState::Withheld, Vec::new()),
        PersonalView::Erased => (proto::PersonalState::Erased, Vec::new()),
    };
    proto::Record {
        position: envelope.position.0,
        stream: Some(stream_to_proto(&envelope.stream)),
        stream_version: envelope.stream_version.0,
        event_id: envelope.event_id.0.to_vec(),
        event_type: envelope.event_type.clone(),
        event_schema_version: u32::from(envelope.event_schema_version),
        recorded_at_micros: envelope.recorded_at.0,
        actor: envelope.actor.clone(),
        causation_id: envelope
            .causation_id
            .map(|id| id.0.to_vec())
            .unwrap_or_default(),
        correlation_id: envelope
            .correlation_id
            .map(|id| id.0.to_vec())
            .unwrap_or_default(),
        lineage: envelope
            .lineage
            .iter()
            .map(|parent| proto::LineageParent {
                relation: parent.relation.clone(),
                target: Some(stream_to_proto(&parent.target)),
            })
            .collect(),
        data_class: envelope.data_class.as_str().to_owned(),
        key_id: envelope.key_id.map(|id| id.0.to_vec()).unwrap_or_default(),
        payload_commitment: envelope.payload_commitment.0.to_vec(),
        policy_bundle_hash: envelope.policy_bundle_hash.0.to_vec(),
        payload: opened.clear,
        personal_state: personal_state as i32,
        personal,
        envelope: opened.record.envelope_bytes.clone(),
        sealed_payload: opened.record.payload.clone(),
    }
}

/// Rebuilds and checks a record from the exact bytes a server sent: the envelope must decode
/// canonically and the sealed payload must match its commitment. Clients verify with this rather
/// than trusting the decoded fields.
pub fn record_from_proto(record: &proto::Record) -> Result<Record, LedgerError> {
    Record::from_parts(record.envelope.clone(), record.sealed_payload.clone())
}

/// The proto form of a signed checkpoint.
pub fn checkpoint_to_proto(signed: &SignedCheckpoint) -> proto::Checkpoint {
    proto::Checkpoint {
        log_id: signed.checkpoint.log_id.0.to_vec(),
        tree_size: signed.checkpoint.tree_size,
        root: signed.checkpoint.root.0.to_vec(),
        timestamp_micros: signed.checkpoint.timestamp.0,
        public_key: signed.public_key.0.to_vec(),
        signature: signed.signature.to_vec(),
        encoded: signed.encode(),
    }
}

/// A signed checkpoint from its proto form (the fields, which must agree with `encoded` if set).
pub fn checkpoint_from_proto(
    checkpoint: &proto::Checkpoint,
) -> Result<SignedCheckpoint, LedgerError> {
    let invalid = |reason: &str| LedgerError::InvalidField {
        field: "checkpoint",
        reason: reason.into(),
    };
    let signed = SignedCheckpoint {
        checkpoint: Checkpoint {
            log_id: LogId(
                checkpoint
                    .log_id
                    .as_slice()
                    .try_into()
                    .map_err(|_| invalid("log_id must be 32 bytes"))?,
            ),
            tree_size: checkpoint.tree_size,
            root: Hash::from_slice(&checkpoint.root, "root")?,
            timestamp: Timestamp(checkpoint.timestamp_micros),
        },
        public_key: PublicKey(
            checkpoint
                .public_key
                .as_slice()
                .try_into()
                .map_err(|_| invalid("public_key must be 32 bytes"))?,
        ),
        signature: checkpoint
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| invalid("signature must be 64 bytes"))?,
    };
    if !checkpoint.encoded.is_empty() && checkpoint.encoded != signed.encode() {
        return Err(invalid("encoded form disagrees with the fields"));
    }
    Ok(signed)
}
