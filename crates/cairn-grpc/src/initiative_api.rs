//! `cairn.v1.InitiativeService`: initiatives and their milestones.

use std::sync::Arc;

use cairn_projections::InitiativeFilter;
use cairn_service::ServiceError;
use cairn_service::feedback_loop::FeedbackLoop;
use cairn_store::{EventStore, KeyStore};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status};

use crate::api_support::{
    Backend, LEDGER_READS_CONCURRENT_MAX, page_info, projection_page, read_options, service_status,
    stamp,
};
use crate::domain_convert::{
    EntityCommand, add_milestone, cancel_initiative, clear_initiative_risk, complete_initiative,
    create_initiative, entity_id_from_proto, flag_initiative_risk, implement_opportunity,
    initiative_status_from_proto, meet_milestone, miss_milestone, optional_entity_id_from_proto,
    optional_principal_from_proto, optional_team_from_proto, schedule_initiative, start_initiative,
    tenant_from_proto,
};
use crate::proto;
use crate::proto::initiative_service_server::InitiativeService;

/// The initiative service.
pub struct InitiativeApi<S> {
    backend: Arc<Backend<S>>,
}

impl<S: EventStore + KeyStore> InitiativeApi<S> {
    pub(crate) fn new(backend: Arc<Backend<S>>) -> InitiativeApi<S> {
        InitiativeApi { backend }
    }

    async fn run(
        &self,
        command: Result<EntityCommand<cairn_domain::initiative::InitiativeCommand>, Status>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        let command = command?;
        let feedback_loop: &FeedbackLoop<S> = self.backend.feedback_loop();
        self.backend
            .command(feedback_loop.initiative(&command.meta, &command.id, command.command))
            .await
    }
}

#[tonic::async_trait]
impl<S: EventStore + KeyStore> InitiativeService for InitiativeApi<S> {
    async fn create_initiative(
        &self,
        mut request: Request<proto::CreateInitiativeRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(create_initiative(request.into_inner())).await
    }

    async fn schedule(
        &self,
        mut request: Request<proto::ScheduleInitiativeRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(schedule_initiative(request.into_inner())).await
    }

    async fn start(
        &self,
        mut request: Request<proto::StartInitiativeRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(start_initiative(request.into_inner())).await
    }

    async fn flag_risk(
        &self,
        mut request: Request<proto::FlagInitiativeRiskRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(flag_initiative_risk(request.into_inner())).await
    }

    async fn clear_risk(
        &self,
        mut request: Request<proto::ClearInitiativeRiskRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(clear_initiative_risk(request.into_inner())).await
    }

    async fn complete(
        &self,
        mut request: Request<proto::CompleteInitiativeRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(complete_initiative(request.into_inner())).await
    }

    async fn cancel(
        &self,
        mut request: Request<proto::CancelInitiativeRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(cancel_initiative(request.into_inner())).await
    }

    async fn implement(
        &self,
        mut request: Request<proto::ImplementOpportunityRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(implement_opportunity(request.into_inner())).await
    }

    async fn add_milestone(
        &self,
        mut request: Request<proto::AddMilestoneRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(add_milestone(request.into_inner())).await
    }

    async fn meet_milestone(
        &self,
        mut request: Request<proto::MeetMilestoneRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(meet_milestone(request.into_inner())).await
    }

    async fn miss_milestone(
        &self,
        mut request: Request<proto::MissMilestoneRequest>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.backend
            .access()
            .authorize_command(&mut request)
            .await?;
        self.run(miss_milestone(request.into_inner())).await
    }

    async fn get_initiative(
        &self,
        mut request: Request<proto::GetInitiativeRequest>,
    ) -> Result<Response<proto::GetInitiativeResponse>, Status> {
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
                        p.initiative(&tenant_text, &id_text, as_of)
                    })
                    .await?;
                let view = answer.value.ok_or_else(|| {
                    service_status(ServiceError::NotFound(format!("no initiative {id}")))
                })?;
                let initiative = self
                    .backend
                    .initiative_message(&tenant, &view, answer.stamp.position)
                    .await?;
                Ok(Response::new(proto::GetInitiativeResponse {
                    initiative: Some(initiative),
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn list_initiatives(
        &self,
        mut request: Request<proto::ListInitiativesRequest>,
    ) -> Result<Response<proto::ListInitiativesResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let page = projection_page(request.page)?;
                let filter = InitiativeFilter {
                    status: initiative_status_from_proto("status", request.status)?,
                    team: optional_team_from_proto("team", request.team)?,
                    at_risk: request.at_risk,
                    owner: optional_principal_from_proto("owner", request.owner)?,
                    opportunity: optional_entity_id_from_proto(
                        "opportunity_id",
                        request.opportunity_id,
                    )?,
                };
                let tenant_text = tenant.as_str().to_owned();
                let answer = self
                    .backend
                    .query(&options, move |p, as_of| {
                        p.list_initiatives(&tenant_text, &filter, as_of, &page)
                    })
                    .await?;
                let at = answer.stamp.position;
                let (backend, tenant) = (&self.backend, &tenant);
                let initiatives = futures::stream::iter(answer.value.items)
                    .map(|view| async move { backend.initiative_message(tenant, &view, at).await })
                    .buffered(LEDGER_READS_CONCURRENT_MAX)
                    .try_collect()
                    .await?;
                Ok(Response::new(proto::ListInitiativesResponse {
                    initiatives,
                    page: page_info(answer.value.next_page_token),
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }
}
