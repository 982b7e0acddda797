//! Exports for analysis: a tenant's events in ledger order, each with its envelope's facts and its
//! payload as JSON, every principal (the actor too) as a keyed pseudonym and every personal field
//! left out (`cairn_domain::export`). Events of non-domain streams (raw ledger appends) export
//! their envelope only: their payload's fields are not classified.

use cairn_domain::codec::StoredPersonal;
use cairn_domain::governance::GovernanceEvent;
use cairn_domain::pseudonym::pseudonym;
use cairn_domain::{EntityKind, Event};
use cairn_ledger::{Position, SealedPayload, TenantId};
use cairn_store::{EventStore, KeyStore};

use crate::error::ServiceError;
use crate::ledger::Ledger;

/// Most rows one export call returns.
pub const EXPORT_ROWS_MAX: usize = 1000;
/// Most ledger records one export call reads looking for the tenant's (other tenants' records are
/// skipped); the answer says where to go on.
pub const EXPORT_SCAN_RECORDS_MAX: usize = 50_000;
const SCAN_PAGE_RECORDS: usize = 1024;

/// One exported event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRow {
    /// Its ledger position.
    pub position: Position,
    /// When the ledger recorded it, microseconds.
    pub recorded_at_micros: i64,
    /// Its stream's aggregate type and id.
    pub aggregate_type: String,
    /// Its stream's aggregate id.
    pub aggregate_id: String,
    /// Its type.
    pub event_type: String,
    /// The actor's pseudonym.
    pub actor: String,
    /// The envelope's data class.
    pub data_class: String,
    /// The payload as JSON, pseudonymised; `None` for events of non-domain streams.
    pub json: Option<String>,
}

/// A page of an export.
#[derive(Clone, Debug, Default)]
pub struct ExportPage {
    /// The rows.
    pub rows: Vec<ExportRow>,
    /// Where the next call goes on from; `None` at the ledger's head.
    pub next: Option<Position>,
}

/// Exports `tenant`'s events from `from`, at most `limit` rows.
pub async fn export<S: EventStore + KeyStore>(
    ledger: &Ledger<S>,
    tenant: &TenantId,
    from: Position,
    limit: usize,
) -> Result<ExportPage, ServiceError> {
    if limit == 0 || limit > EXPORT_ROWS_MAX {
        return Err(ServiceError::InvalidArgument {
            field: "limit",
            reason: format!("must be 1 to {EXPORT_ROWS_MAX}, got {limit}"),
        });
    }
    let key = ledger.identity().pseudonym_key();
    let store = ledger.store();
    let mut page = ExportPage::default();
    let mut next = Position(from.0.max(1));
    let mut scanned = 0;
    loop {
        let records = store.read_all(next, SCAN_PAGE_RECORDS).await?;
        let Some(last) = records.last() else {
            return Ok(page);
        };
        let last_position = last.position();
        for record in &records {
            let envelope = &record.envelope;
            next = Position(record.position().0 + 1);
            scanned += 1;
            if envelope.stream.tenant != *tenant {
                if scanned >= EXPORT_SCAN_RECORDS_MAX {
                    page.next = Some(next);
                    return Ok(page);
                }
                continue;
            }
            let payload = SealedPayload::decode(&record.payload)?;
            let aggregate_type = envelope.stream.aggregate_type.as_str();
            let json = if let Some(_kind) = EntityKind::parse(aggregate_type) {
                let event = Event::decode(
                    aggregate_type,
                    &envelope.event_type,
                    envelope.event_schema_version,
                    &payload.clear,
                    StoredPersonal::Withheld,
                )
                .map_err(|error| ServiceError::Internal(error.to_string()))?;
                Some(cairn_domain::export::event_json(
                    &event,
                    &key,
                    tenant.as_str(),
                ))
            } else if cairn_domain::governance::AGGREGATE_TYPES.contains(&aggregate_type) {
                let event = GovernanceEvent::decode(
                    &envelope.event_type,
                    envelope.event_schema_version,
                    &payload.clear,
                )
                .map_err(|error| ServiceError::Internal(error.to_string()))?;
                Some(cairn_domain::export::governance_json(
                    &event,
                    &key,
                    tenant.as_str(),
                ))
            } else {
                None
            }
            .transpose()
            .map_err(|error| ServiceError::Internal(error.to_string()))?;
            page.rows.push(ExportRow {
                position: record.position(),
                recorded_at_micros: envelope.recorded_at.0,
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id: envelope.stream.aggregate_id.clone(),
                event_type: envelope.event_type.clone(),
                actor: pseudonym(&key, tenant.as_str(), &envelope.actor),
                data_class: envelope.data_class.as_str().to_owned(),
                json,
            });
            if page.rows.len() >= limit || scanned >= EXPORT_SCAN_RECORDS_MAX {
                page.next = Some(next);
                return Ok(page);
            }
        }
        next = Position(last_position.0 + 1);
    }
}
