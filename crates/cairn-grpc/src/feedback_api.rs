//! `cairn.v1.FeedbackService`: feedback items and metric signals.
//!
//! There is no authentication yet (issue 4): `include_personal` is honoured as asked, so any
//! caller can read a feedback item's text and submitter. Once callers are authenticated, it must
//! open personal data only for a caller whose role may see it, and withhold it otherwise.

use std::sync::Arc;

use cairn_domain::{EntityKind, EntityRef, Relation};
use cairn_projections::{AtPosition, FeedbackFilter};
use cairn_service::ServiceError;
use cairn_store::{EventStore, KeyStore};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status};

use crate::api_support::{
    Backend, LEDGER_READS_CONCURRENT_MAX, page_info, projection_page, read_options, service_status,
    stamp, time_range,
};
use crate::domain_convert::{
    discard_feedback, entity_id_from_proto, feedback_source_from_proto, feedback_status_from_proto,
    link_feedback, optional_entity_id_from_proto, optional_team_from_proto, record_signal,
    submit_feedback, tenant_from_proto,
};
use crate::proto;
use crate::proto::feedback_service_server::FeedbackService;
use crate::view_convert::{feedback_to_proto, signal_to_proto};

/// The feedback service.
pub struct FeedbackApi<S> {
    backend: Arc<Backend<S>>,
}

impl<S: EventStore + KeyStore> FeedbackApi<S> {
    pub(crate) fn new(backend: Arc<Backend<S>>) -> FeedbackApi<S> {
        FeedbackApi { backend }
    }
}

#[tonic::async_trait]
impl<S: EventStore + KeyStore> FeedbackService for FeedbackApi<S> {
    async fn submit_feedback(
        &self,
        mut request: Request<proto::SubmitFeedbackRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        let command = submit_feedback(request.into_inner())?;
        let feedback_loop = self.backend.feedback_loop();
        self.backend
            .command(feedback_loop.feedback(&command.meta, &command.id, command.command))
            .await
    }

    async fn link_feedback(
        &self,
        mut request: Request<proto::LinkFeedbackRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        let command = link_feedback(request.into_inner())?;
        let feedback_loop = self.backend.feedback_loop();
        self.backend
            .command(feedback_loop.attach_evidence(&command.meta, &command.id, command.command))
            .await
    }

    async fn discard_feedback(
        &self,
        mut request: Request<proto::DiscardFeedbackRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        let command = discard_feedback(request.into_inner())?;
        let feedback_loop = self.backend.feedback_loop();
        self.backend
            .command(feedback_loop.feedback(&command.meta, &command.id, command.command))
            .await
    }

    async fn get_feedback(
        &self,
        mut request: Request<proto::GetFeedbackRequest>,
    ) -> Result<Response<proto::GetFeedbackResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let id = entity_id_from_proto("id", request.id)?;
                // Personal data opens as asked: see the module's note on authentication.
                let answer = self
                    .backend
                    .reads()
                    .feedback(&tenant, &id, &options)
                    .await
                    .map_err(service_status)?;
                let (view, content) = &answer.value;
                Ok(Response::new(proto::GetFeedbackResponse {
                    feedback: Some(feedback_to_proto(view, content)),
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn list_feedback(
        &self,
        mut request: Request<proto::ListFeedbackRequest>,
    ) -> Result<Response<proto::ListFeedbackResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let page = projection_page(request.page)?;
                let (received_from, received_to) = time_range(request.received);
                let filter = FeedbackFilter {
                    team: optional_team_from_proto("team", request.team)?,
                    status: feedback_status_from_proto("status", request.status)?,
                    source: match request.source {
                        0 => None,
                        source => Some(feedback_source_from_proto("source", source)?),
                    },
                    outcome_tag: (!request.outcome_tag.is_empty()).then_some(request.outcome_tag),
                    received_from,
                    received_to,
                };
                let tag = request.tag;
                let opportunity =
                    optional_entity_id_from_proto("opportunity_id", request.opportunity_id)?;
                let tenant_text = tenant.as_str().to_owned();
                let answer = self
                    .backend
                    .query(&options, move |p, as_of| {
                        p.list_feedback(&tenant_text, &filter, as_of, &page)
                    })
                    .await?;
                // The read model does not filter by tag or opportunity: this page keeps the items
                // that match, so a page may hold fewer than page_size items (and still have a
                // next page).
                let views: Vec<_> = answer
                    .value
                    .items
                    .into_iter()
                    .filter(|view| tag.is_empty() || view.tags.contains(&tag))
                    .filter(|view| {
                        opportunity
                            .as_ref()
                            .is_none_or(|id| view.opportunities.contains(id))
                    })
                    .collect();
                let include_personal = options.include_personal;
                let backend = &self.backend;
                let items = futures::stream::iter(views)
                    .map(|view| async move {
                        // Personal data opens as asked: see the module's note on authentication.
                        backend.feedback_message(&view, include_personal).await
                    })
                    .buffered(LEDGER_READS_CONCURRENT_MAX)
                    .try_collect()
                    .await?;
                Ok(Response::new(proto::ListFeedbackResponse {
                    items,
                    page: page_info(answer.value.next_page_token),
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn record_signal(
        &self,
        mut request: Request<proto::RecordSignalRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        let command = record_signal(request.into_inner())?;
        let feedback_loop = self.backend.feedback_loop();
        self.backend
            .command(feedback_loop.signal(&command.meta, &command.id, command.command))
            .await
    }

    async fn get_signal(
        &self,
        mut request: Request<proto::GetSignalRequest>,
    ) -> Result<Response<proto::GetSignalResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let id = entity_id_from_proto("id", request.id)?;
                let (tenant_text, signal) = (
                    tenant.as_str().to_owned(),
                    EntityRef::new(EntityKind::Signal, id.clone()),
                );
                let answer = self
                    .backend
                    .query(&options, move |p, as_of| {
                        let at = p.resolve(as_of)?;
                        let view = p.signal(&tenant_text, signal.id.as_str(), Some(at))?.value;
                        let opportunities = p
                            .edges(&tenant_text, &signal, Some(at))?
                            .value
                            .into_iter()
                            .filter(|edge| {
                                edge.edge.relation == Relation::EvidenceFor
                                    && edge.edge.from == signal
                            })
                            .map(|edge| edge.edge.to.id)
                            .collect::<Vec<_>>();
                        Ok(AtPosition {
                            value: view.map(|view| (view, opportunities)),
                            position: at,
                        })
                    })
                    .await?;
                let (view, opportunities) = answer.value.ok_or_else(|| {
                    service_status(ServiceError::NotFound(format!("no signal {id}")))
                })?;
                Ok(Response::new(proto::GetSignalResponse {
                    signal: Some(signal_to_proto(&view, &opportunities)),
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }
}
