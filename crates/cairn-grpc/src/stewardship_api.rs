//! `cairn.v1.StewardshipService`: retention preview and run, legal holds, erasure on request and
//! the erasure log. Thin: the rules are in `cairn_service::stewardship`.

use std::sync::Arc;

use cairn_domain::governance::{ErasureCause, GovernanceEvent};
use cairn_ledger::Position;
use cairn_service::export::EXPORT_ROWS_MAX;
use cairn_service::stewardship::{ErasureEntry, Expired, RetentionReport};
use cairn_store::{EventStore, KeyStore};
use tonic::{Request, Response, Status};

use crate::api_support::{Backend, StreamPage, service_status};
use crate::domain_convert::tenant_from_proto;
use crate::proto;
use crate::proto::stewardship_service_server::StewardshipService;

/// The stewardship service.
pub struct StewardshipApi<S> {
    backend: Arc<Backend<S>>,
}

impl<S: EventStore + KeyStore> StewardshipApi<S> {
    pub(crate) fn new(backend: Arc<Backend<S>>) -> StewardshipApi<S> {
        StewardshipApi { backend }
    }
}

fn expired_to_proto(expired: &Expired) -> proto::ExpiredKey {
    proto::ExpiredKey {
        key_id: expired.key.key_id.0.to_vec(),
        rule: expired.rule.clone(),
        data_class: expired.class.clone(),
        days: expired.days,
        last_sealed_micros: expired.key.last_sealed_micros,
        records: expired.key.records,
        held_by: expired.held_by.clone().unwrap_or_default(),
    }
}

fn report_to_proto(report: &RetentionReport) -> proto::RetentionReport {
    proto::RetentionReport {
        erase: report.erase.iter().map(expired_to_proto).collect(),
        held: report.held.iter().map(expired_to_proto).collect(),
        already_erased: report.already_erased as u64,
        rules: report.rules.clone(),
        scanned_through: report.scanned_through.0,
        recorded: report.recorded.iter().map(|p| p.0).collect(),
    }
}

fn entry_to_proto(entry: ErasureEntry) -> proto::ErasureLogEntry {
    let mut message = proto::ErasureLogEntry {
        position: entry.position.0,
        recorded_at_micros: entry.recorded_at_micros,
        actor: entry.actor,
        ..Default::default()
    };
    if let GovernanceEvent::DataErased {
        key_id,
        subject,
        cause,
        records,
    } = entry.event
    {
        message.key_id = key_id.to_vec();
        message.subject = subject.unwrap_or_default();
        message.records = records;
        match cause {
            ErasureCause::Retention { rule, .. } => {
                message.cause = Some(proto::erasure_log_entry::Cause::Rule(rule));
            }
            ErasureCause::Request { request_id, reason } => {
                message.cause = Some(proto::erasure_log_entry::Cause::RequestId(request_id));
                message.reason = reason;
            }
        }
    }
    message
}

/// The events an export returns when the request does not say.
const EXPORT_ROWS_DEFAULT: usize = 100;

fn now_micros() -> i64 {
    cairn_store::now().0
}

#[tonic::async_trait]
impl<S: EventStore + KeyStore> StewardshipService for StewardshipApi<S> {
    async fn preview_retention(
        &self,
        mut request: Request<proto::PreviewRetentionRequest>,
    ) -> Result<Response<proto::RetentionReport>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let tenant = tenant_from_proto("tenant", request.into_inner().tenant)?;
        let report = self
            .backend
            .stewardship()
            .preview(&tenant, now_micros())
            .await
            .map_err(service_status)?;
        Ok(Response::new(report_to_proto(&report)))
    }

    async fn run_retention(
        &self,
        mut request: Request<proto::RunRetentionRequest>,
    ) -> Result<Response<proto::RetentionReport>, Status> {
        let caller = self.backend.access().authorize_read(&mut request).await?;
        let tenant = tenant_from_proto("tenant", request.into_inner().tenant)?;
        let report = self
            .backend
            .stewardship()
            .run(&tenant, &caller.principal, now_micros())
            .await
            .map_err(service_status)?;
        Ok(Response::new(report_to_proto(&report)))
    }

    async fn place_legal_hold(
        &self,
        mut request: Request<proto::PlaceLegalHoldRequest>,
    ) -> Result<Response<proto::StewardshipReceipt>, Status> {
        let caller = self.backend.access().authorize_read(&mut request).await?;
        let request = request.into_inner();
        let tenant = tenant_from_proto("tenant", request.tenant)?;
        let subject = (!request.subject.is_empty()).then_some(request.subject.as_str());
        let position = self
            .backend
            .stewardship()
            .place_hold(
                &tenant,
                &request.hold_id,
                subject,
                &request.reason,
                &caller.principal,
            )
            .await
            .map_err(service_status)?;
        Ok(Response::new(proto::StewardshipReceipt {
            position: position.0,
        }))
    }

    async fn release_legal_hold(
        &self,
        mut request: Request<proto::ReleaseLegalHoldRequest>,
    ) -> Result<Response<proto::StewardshipReceipt>, Status> {
        let caller = self.backend.access().authorize_read(&mut request).await?;
        let request = request.into_inner();
        let tenant = tenant_from_proto("tenant", request.tenant)?;
        let position = self
            .backend
            .stewardship()
            .release_hold(
                &tenant,
                &request.hold_id,
                &request.reason,
                &caller.principal,
            )
            .await
            .map_err(service_status)?;
        Ok(Response::new(proto::StewardshipReceipt {
            position: position.0,
        }))
    }

    async fn request_erasure(
        &self,
        mut request: Request<proto::RequestErasureRequest>,
    ) -> Result<Response<proto::ErasureReceipt>, Status> {
        let caller = self.backend.access().authorize_read(&mut request).await?;
        let request = request.into_inner();
        let tenant = tenant_from_proto("tenant", request.tenant)?;
        let erasure = self
            .backend
            .stewardship()
            .erase_subject(
                &tenant,
                &request.subject,
                &request.request_id,
                &request.reason,
                &caller.principal,
            )
            .await
            .map_err(service_status)?;
        Ok(Response::new(proto::ErasureReceipt {
            key_ids: erasure.keys.iter().map(|key| key.0.to_vec()).collect(),
            records: erasure.records,
            recorded: erasure.recorded.iter().map(|p| p.0).collect(),
        }))
    }

    async fn list_erasures(
        &self,
        mut request: Request<proto::ListErasuresRequest>,
    ) -> Result<Response<proto::ListErasuresResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let request = request.into_inner();
        let tenant = tenant_from_proto("tenant", request.tenant)?;
        let page = StreamPage::new(request.page)?;
        let stamp = self.backend.head_stamp().await?;
        let entries = self
            .backend
            .stewardship()
            .erasures(&tenant, page.from, page.read_limit())
            .await
            .map_err(service_status)?;
        let (entries, page) = page.finish(entries);
        Ok(Response::new(proto::ListErasuresResponse {
            entries: entries.into_iter().map(entry_to_proto).collect(),
            page,
            stamp,
        }))
    }

    async fn export_events(
        &self,
        mut request: Request<proto::ExportEventsRequest>,
    ) -> Result<Response<proto::ExportEventsResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let request = request.into_inner();
        let tenant = tenant_from_proto("tenant", request.tenant)?;
        let limit = match request.limit as usize {
            0 => EXPORT_ROWS_DEFAULT,
            n if n > EXPORT_ROWS_MAX => {
                return Err(Status::resource_exhausted(format!(
                    "limit is {n}, over the limit of {EXPORT_ROWS_MAX}"
                )));
            }
            n => n,
        };
        let page = cairn_service::export::export(
            self.backend.ledger(),
            &tenant,
            Position(request.from_position),
            limit,
        )
        .await
        .map_err(service_status)?;
        Ok(Response::new(proto::ExportEventsResponse {
            events: page
                .rows
                .into_iter()
                .map(|row| proto::ExportedEvent {
                    position: row.position.0,
                    recorded_at_micros: row.recorded_at_micros,
                    aggregate_type: row.aggregate_type,
                    aggregate_id: row.aggregate_id,
                    event_type: row.event_type,
                    actor: row.actor,
                    data_class: row.data_class,
                    json: row.json.unwrap_or_default(),
                })
                .collect(),
            next_position: page.next.map_or(0, |next| next.0),
        }))
    }
}
