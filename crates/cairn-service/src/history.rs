//! Answers read from the ledger itself rather than a projection: an entity's history (the chain
//! of events behind an answer), a record's decoded event, and a feedback item's personal content
//! opened for a reader.

use cairn_domain::codec::StoredPersonal;
use cairn_domain::feedback::{FeedbackContent, FeedbackEvent, Personal};
use cairn_domain::opportunity::OpportunityEvent;
use cairn_domain::scoring::ScoreSnapshot;
use cairn_domain::{EntityRef, Event};
use cairn_ledger::{EventId, Hash, LineageParent, Position, StreamVersion, TenantId, Timestamp};
use cairn_store::{EventStore, KeyStore, limits as store_limits};

use crate::error::ServiceError;
use crate::feedback_loop::{decode, stream_of};
use crate::ledger::{Ledger, PersonalView};

/// Most events of one entity's history returned at once.
pub const HISTORY_EVENTS_MAX: usize = 10_000;

/// One event of an entity's history, with the envelope fields an auditor asks about.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEntry {
    /// Where it stands in the ledger.
    pub position: Position,
    /// Its version in the entity's stream.
    pub stream_version: StreamVersion,
    /// Its id.
    pub event_id: EventId,
    /// Its type.
    pub event_type: String,
    /// Who caused it.
    pub actor: String,
    /// When the ledger recorded it.
    pub recorded_at: Timestamp,
    /// The policy bundle in force.
    pub policy_bundle_hash: Hash,
    /// The request it belongs to.
    pub correlation_id: Option<EventId>,
    /// Its lineage parents, as the envelope names them.
    pub lineage: Vec<LineageParent>,
    /// The decoded event (personal parts withheld).
    pub event: Event,
}

/// The events of `entity` up to `as_of` (inclusive), oldest first, at most
/// [`HISTORY_EVENTS_MAX`].
pub async fn history<S: EventStore>(
    store: &S,
    tenant: &TenantId,
    entity: &EntityRef,
    as_of: Position,
) -> Result<Vec<HistoryEntry>, ServiceError> {
    let stream = stream_of(tenant, entity.kind, &entity.id)?;
    let mut entries = Vec::new();
    let mut next = StreamVersion(1);
    'pages: loop {
        let records = store
            .read_stream(&stream, next, store_limits::READ_RECORDS_MAX)
            .await?;
        for record in &records {
            if record.position() > as_of || entries.len() >= HISTORY_EVENTS_MAX {
                break 'pages;
            }
            let envelope = &record.envelope;
            entries.push(HistoryEntry {
                position: record.position(),
                stream_version: envelope.stream_version,
                event_id: envelope.event_id,
                event_type: envelope.event_type.clone(),
                actor: envelope.actor.clone(),
                recorded_at: envelope.recorded_at,
                policy_bundle_hash: envelope.policy_bundle_hash,
                correlation_id: envelope.correlation_id,
                lineage: envelope.lineage.clone(),
                event: decode(record)?,
            });
        }
        match records.last() {
            Some(last) if records.len() == store_limits::READ_RECORDS_MAX => {
                next = last.envelope.stream_version.next();
            }
            _ => break,
        }
    }
    Ok(entries)
}

/// The record at `position` with its event decoded.
pub async fn entry_at<S: EventStore>(
    store: &S,
    position: Position,
) -> Result<HistoryEntry, ServiceError> {
    let record = store
        .read_all(position, 1)
        .await?
        .into_iter()
        .next()
        .filter(|record| record.position() == position)
        .ok_or_else(|| ServiceError::NotFound(format!("no record at position {position}")))?;
    let envelope = &record.envelope;
    Ok(HistoryEntry {
        position,
        stream_version: envelope.stream_version,
        event_id: envelope.event_id,
        event_type: envelope.event_type.clone(),
        actor: envelope.actor.clone(),
        recorded_at: envelope.recorded_at,
        policy_bundle_hash: envelope.policy_bundle_hash,
        correlation_id: envelope.correlation_id,
        lineage: envelope.lineage.clone(),
        event: decode(&record)?,
    })
}

/// The score snapshot recorded at `position` (an `opportunity.scored` record).
pub async fn snapshot_at<S: EventStore>(
    store: &S,
    position: Position,
) -> Result<(HistoryEntry, ScoreSnapshot), ServiceError> {
    let entry = entry_at(store, position).await?;
    match &entry.event {
        Event::Opportunity(OpportunityEvent::Scored(snapshot)) => {
            let snapshot = snapshot.clone();
            Ok((entry, snapshot))
        }
        other => Err(ServiceError::FailedPrecondition(format!(
            "position {position} holds {}, not a score",
            other.event_type()
        ))),
    }
}

/// A feedback item's text and submitter, from its `feedback.received` record at `position`:
/// opened when the reader may see personal data and the key still exists.
pub async fn feedback_content<S: EventStore + KeyStore>(
    ledger: &Ledger<S>,
    position: Position,
    include_personal: bool,
) -> Result<Personal<FeedbackContent>, ServiceError> {
    let record = ledger
        .store()
        .read_all(position, 1)
        .await?
        .into_iter()
        .next()
        .filter(|record| record.position() == position)
        .ok_or_else(|| ServiceError::NotFound(format!("no record at position {position}")))?;
    let envelope = record.envelope.clone();
    let opened = ledger.open(record, include_personal).await?;
    let personal = match &opened.personal {
        PersonalView::Open(bytes) => StoredPersonal::Open(bytes),
        PersonalView::None => StoredPersonal::None,
        PersonalView::Withheld => StoredPersonal::Withheld,
        PersonalView::Erased => StoredPersonal::Erased,
    };
    let event = Event::decode(
        &envelope.stream.aggregate_type,
        &envelope.event_type,
        envelope.event_schema_version,
        &opened.clear,
        personal,
    )
    .map_err(|error| ServiceError::FailedPrecondition(error.to_string()))?;
    match event {
        Event::Feedback(FeedbackEvent::Received { content, .. }) => Ok(content),
        other => Err(ServiceError::FailedPrecondition(format!(
            "position {position} holds {}, not a received feedback item",
            other.event_type()
        ))),
    }
}
