//! `cairn.v1.DecisionService`: decision records and their supersession.

use std::sync::Arc;

use cairn_domain::Time;
use cairn_domain::decision::DecisionCommand;
use cairn_projections::{AtPosition, DecisionFilter};
use cairn_service::ServiceError;
use cairn_store::{EventStore, KeyStore};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status};

use crate::api_support::{
    Backend, LEDGER_READS_CONCURRENT_MAX, Pager, page_info, projection_page, read_options,
    service_status, stamp, time_range, within,
};
use crate::domain_convert::{
    EntityCommand, accept_decision, decision_kind_from_proto, decision_status_name_from_proto,
    deprecate_decision, entity_id_from_proto, entity_ref_from_proto, optional_principal_from_proto,
    optional_team_from_proto, propose_decision, reject_decision, revise_decision,
    tenant_from_proto,
};
use crate::proto;
use crate::proto::decision_service_server::DecisionService;

/// The decision service.
pub struct DecisionApi<S> {
    backend: Arc<Backend<S>>,
}

impl<S: EventStore + KeyStore> DecisionApi<S> {
    pub(crate) fn new(backend: Arc<Backend<S>>) -> DecisionApi<S> {
        DecisionApi { backend }
    }

    async fn run(
        &self,
        command: Result<EntityCommand<DecisionCommand>, Status>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        let command = command?;
        let feedback_loop = self.backend.feedback_loop();
        self.backend
            .command(feedback_loop.decision(&command.meta, &command.id, command.command))
            .await
    }
}

#[tonic::async_trait]
impl<S: EventStore + KeyStore> DecisionService for DecisionApi<S> {
    async fn propose_decision(
        &self,
        mut request: Request<proto::ProposeDecisionRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(propose_decision(request.into_inner())).await
    }

    async fn revise_decision(
        &self,
        mut request: Request<proto::ReviseDecisionRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(revise_decision(request.into_inner())).await
    }

    async fn accept_decision(
        &self,
        mut request: Request<proto::AcceptDecisionRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(accept_decision(request.into_inner())).await
    }

    async fn reject_decision(
        &self,
        mut request: Request<proto::RejectDecisionRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(reject_decision(request.into_inner())).await
    }

    async fn deprecate_decision(
        &self,
        mut request: Request<proto::DeprecateDecisionRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(deprecate_decision(request.into_inner())).await
    }

    async fn get_decision(
        &self,
        mut request: Request<proto::GetDecisionRequest>,
    ) -> Result<Response<proto::GetDecisionResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let id = entity_id_from_proto("id", request.id)?;
                let (tenant_text, id_text) = (tenant.as_str().to_owned(), id.as_str().to_owned());
                let answer = self
                    .backend
                    .query(&options, move |p, as_of| {
                        p.decision(&tenant_text, &id_text, as_of)
                    })
                    .await?;
                let view = answer.value.ok_or_else(|| {
                    service_status(ServiceError::NotFound(format!("no decision {id}")))
                })?;
                let decision = self
                    .backend
                    .decision_message(&tenant, &view, answer.stamp.position)
                    .await?;
                Ok(Response::new(proto::GetDecisionResponse {
                    decision: Some(decision),
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn list_decisions(
        &self,
        mut request: Request<proto::ListDecisionsRequest>,
    ) -> Result<Response<proto::ListDecisionsResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let page = projection_page(request.page)?;
                let filter = DecisionFilter {
                    status: decision_status_name_from_proto("status", request.status)?
                        .map(str::to_owned),
                    kind: match request.kind {
                        0 => None,
                        kind => Some(decision_kind_from_proto("kind", kind)?),
                    },
                    team: optional_team_from_proto("team", request.team)?,
                    decider: optional_principal_from_proto("decider", request.decider)?,
                    // The read model filters on when a decision was proposed; the API on when
                    // its status last changed, which is read from its records below.
                    from: None,
                    to: None,
                    subject: match request.subject {
                        None => None,
                        subject => Some(entity_ref_from_proto("subject", subject)?),
                    },
                };
                let status_changed = time_range(request.status_changed);
                let tenant_text = tenant.as_str().to_owned();
                let answer = self
                    .backend
                    .query(&options, move |p, as_of| {
                        p.list_decisions(&tenant_text, &filter, as_of, &page)
                    })
                    .await?;
                let at = answer.stamp.position;
                let (backend, tenant) = (&self.backend, &tenant);
                let decisions: Vec<proto::Decision> = futures::stream::iter(answer.value.items)
                    .map(|view| async move { backend.decision_message(tenant, &view, at).await })
                    .buffered(LEDGER_READS_CONCURRENT_MAX)
                    .try_collect()
                    .await?;
                // Filtered after the read model paged: a page may hold fewer than page_size
                // decisions (and still have a next page).
                let decisions = decisions
                    .into_iter()
                    .filter(|decision| {
                        within(Time(decision.status_changed_at_micros), status_changed)
                    })
                    .collect();
                Ok(Response::new(proto::ListDecisionsResponse {
                    decisions,
                    page: page_info(answer.value.next_page_token),
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn list_superseded(
        &self,
        mut request: Request<proto::ListSupersededRequest>,
    ) -> Result<Response<proto::ListSupersededResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let mut options = read_options(request.read, wait_until)?;
                let pager = Pager::new(request.page)?;
                pager.pin(&mut options);
                let superseded = time_range(request.superseded);
                let team = optional_team_from_proto("team", request.team)?;
                let tenant_text = tenant.as_str().to_owned();
                let answer = self
                    .backend
                    .query(&options, move |p, as_of| {
                        let at = p.resolve(as_of)?;
                        let mut pairs = Vec::new();
                        // The read model lists them in the order they were superseded.
                        for view in p
                            .superseded(&tenant_text, Some(at))?
                            .value
                            .into_iter()
                            .rev()
                        {
                            if team.as_ref().is_some_and(|team| &view.team != team) {
                                continue;
                            }
                            let Some(by_id) = &view.superseded_by else {
                                continue;
                            };
                            let Some(by) =
                                p.decision(&tenant_text, by_id.as_str(), Some(at))?.value
                            else {
                                continue;
                            };
                            let superseded_at = by.decided_at.unwrap_or(Time(0));
                            if within(superseded_at, superseded) {
                                pairs.push((view, by, superseded_at));
                            }
                        }
                        Ok(AtPosition {
                            value: pairs,
                            position: at,
                        })
                    })
                    .await?;
                let at = answer.stamp.position;
                let (pairs, page) = pager.page(answer.value, at);
                let (backend, tenant) = (&self.backend, &tenant);
                let supersessions = futures::stream::iter(pairs)
                    .map(|(view, by, superseded_at)| async move {
                        Ok::<_, Status>(proto::Supersession {
                            decision: Some(backend.decision_message(tenant, &view, at).await?),
                            by: Some(backend.decision_message(tenant, &by, at).await?),
                            superseded_at_micros: superseded_at.0,
                        })
                    })
                    .buffered(LEDGER_READS_CONCURRENT_MAX)
                    .try_collect()
                    .await?;
                Ok(Response::new(proto::ListSupersededResponse {
                    supersessions,
                    page,
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }
}
