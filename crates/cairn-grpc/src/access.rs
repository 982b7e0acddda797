//! Authorization of each call, before anything else of the request is looked at (except the
//! tenant's form): the RPC's object and action come from the one table, `cairn_policy::RPCS`,
//! through `Governance::authorize`; the tenant is the one the request names.
//!
//! - A command (`CommandMeta meta = 1`) is checked in `meta.tenant`; its `meta.actor` must be
//!   empty (it becomes the caller) or the caller, unless the caller may (actor, act_for) there.
//! - A read (`string tenant = 1`) is checked in that tenant; `include_personal` is honoured only
//!   for a caller who may (personal, read) there, and otherwise the answer is redacted (it is not
//!   an error: the caller asked for more than it may see).
//! - A call about no one tenant (reading the whole ledger, proofs, reloading the policy) is
//!   checked in `*`.

use std::sync::Arc;

use cairn_policy::{Action, Object};
use cairn_service::governance::{Denied, Governance};
use cairn_service::tokens::Caller;
use cairn_store::{EventStore, KeyStore};
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::domain_convert::tenant_from_proto;
use crate::error::RULE_METADATA;
use crate::proto;

/// The gRPC path of the call, put in the request's extensions by the auth layer.
#[derive(Clone, Debug)]
pub(crate) struct CallPath(pub(crate) Arc<str>);

/// The `cairn-rule` of a denied call.
pub const ACCESS_DENIED_RULE: &str = "access_denied";

/// The caller and path of an authenticated request.
fn identity<T>(request: &Request<T>) -> Result<(Caller, Arc<str>), Status> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| {
            // Only reachable if a service is served without the auth layer.
            Status::unauthenticated("this call needs credentials")
        })?;
    let path = request
        .extensions()
        .get::<CallPath>()
        .map(|path| Arc::clone(&path.0))
        .unwrap_or_else(|| Arc::from(""));
    Ok((caller, path))
}

/// PERMISSION_DENIED for a denied call: the request and the policy's reason, never a credential.
pub(crate) fn denied_status(denied: &Denied) -> Status {
    let request = &denied.request;
    let mut status = Status::permission_denied(format!(
        "{} may not {} {} in tenant {}: {}",
        request.principal,
        request.action.as_str(),
        request.object.as_str(),
        request.tenant,
        denied.verdict.reason
    ));
    status.metadata_mut().insert(
        RULE_METADATA,
        MetadataValue::from_static(ACCESS_DENIED_RULE),
    );
    status
}

/// A request whose first field is `CommandMeta meta`.
pub(crate) trait CommandRequest {
    fn meta_mut(&mut self) -> &mut Option<proto::CommandMeta>;
}

/// A request whose first field is `string tenant` (and whose `ReadOptions read`, if any, may ask
/// for personal data).
pub(crate) trait TenantRequest {
    fn tenant(&self) -> &str;
    /// Where the request asks for personal data, if it can.
    fn include_personal_mut(&mut self) -> Option<&mut bool> {
        None
    }
}

macro_rules! command_requests {
    ($($name:ident),* $(,)?) => {$(
        impl CommandRequest for proto::$name {
            fn meta_mut(&mut self) -> &mut Option<proto::CommandMeta> {
                &mut self.meta
            }
        }
    )*};
}

command_requests!(
    SubmitFeedbackRequest,
    LinkFeedbackRequest,
    DiscardFeedbackRequest,
    RecordSignalRequest,
    ProposeDecisionRequest,
    ReviseDecisionRequest,
    AcceptDecisionRequest,
    RejectDecisionRequest,
    DeprecateDecisionRequest,
    CreateInitiativeRequest,
    ScheduleInitiativeRequest,
    StartInitiativeRequest,
    FlagInitiativeRiskRequest,
    ClearInitiativeRiskRequest,
    CompleteInitiativeRequest,
    CancelInitiativeRequest,
    ImplementOpportunityRequest,
    AddMilestoneRequest,
    MeetMilestoneRequest,
    MissMilestoneRequest,
    CreateOpportunityRequest,
    StartReviewRequest,
    TriageRequest,
    WakeOpportunityRequest,
    StartWorkRequest,
    ShipOpportunityRequest,
    ValidateOutcomeRequest,
    VoteRequest,
    RateRequest,
    RescoreRequest,
    AgeOutRequest,
);

macro_rules! read_requests {
    ($($name:ident),* $(,)?) => {$(
        impl TenantRequest for proto::$name {
            fn tenant(&self) -> &str {
                &self.tenant
            }
            fn include_personal_mut(&mut self) -> Option<&mut bool> {
                Some(&mut self.read.get_or_insert_with(Default::default).include_personal)
            }
        }
    )*};
}

read_requests!(
    GetDecisionRequest,
    ListDecisionsRequest,
    ListSupersededRequest,
    GetFeedbackRequest,
    ListFeedbackRequest,
    GetSignalRequest,
    GetInitiativeRequest,
    ListInitiativesRequest,
    UpstreamRequest,
    DownstreamRequest,
    GraphRequest,
    WhyRequest,
    WhatHappenedRequest,
    GetOpportunityRequest,
    GetRankingRequest,
    ExplainRankRequest,
    ScoreHistoryRequest,
    ListAgedOutRequest,
    GetScoringModelRequest,
);

macro_rules! tenant_requests {
    ($($name:ident),* $(,)?) => {$(
        impl TenantRequest for proto::$name {
            fn tenant(&self) -> &str {
                &self.tenant
            }
        }
    )*};
}

tenant_requests!(
    ListDeniedRequest,
    PreviewRetentionRequest,
    RunRetentionRequest,
    PlaceLegalHoldRequest,
    ReleaseLegalHoldRequest,
    RequestErasureRequest,
    ListErasuresRequest,
    ExportEventsRequest,
);

/// Checks calls against the policy in force.
pub(crate) struct Access<S> {
    governance: Arc<Governance<S>>,
}

impl<S: EventStore + KeyStore> Access<S> {
    pub(crate) fn new(governance: Arc<Governance<S>>) -> Access<S> {
        Access { governance }
    }

    pub(crate) fn governance(&self) -> &Arc<Governance<S>> {
        &self.governance
    }

    /// Checks the form of the tenant a request names (INVALID_ARGUMENT naming `field`), then
    /// authorizes the call in it.
    pub(crate) async fn authorize_in<T>(
        &self,
        request: &Request<T>,
        field: &'static str,
        tenant: &str,
    ) -> Result<Caller, Status> {
        tenant_from_proto(field, tenant.to_owned())?;
        self.authorize(request, tenant).await
    }

    /// Authorizes a call in `tenant` (`*`: about no one tenant; otherwise a valid tenant id) and
    /// returns the caller.
    pub(crate) async fn authorize<T>(
        &self,
        request: &Request<T>,
        tenant: &str,
    ) -> Result<Caller, Status> {
        let (caller, path) = identity(request)?;
        self.governance
            .authorize(&caller, &path, tenant)
            .await
            .map_err(|denied| denied_status(&denied))?;
        Ok(caller)
    }

    /// Authorizes a command in `meta.tenant` and settles its actor: empty becomes the caller; a
    /// different one needs (actor, act_for).
    pub(crate) async fn authorize_command<T: CommandRequest>(
        &self,
        request: &mut Request<T>,
    ) -> Result<Caller, Status> {
        let tenant = request
            .get_mut()
            .meta_mut()
            .as_ref()
            .map(|meta| meta.tenant.clone())
            .unwrap_or_default();
        let caller = self.authorize_in(request, "meta.tenant", &tenant).await?;
        let meta = request
            .get_mut()
            .meta_mut()
            .get_or_insert_with(Default::default);
        if meta.actor.is_empty() {
            meta.actor = caller.principal.clone();
        } else if meta.actor != caller.principal {
            self.authorize_other_actor(request, &caller, &tenant)
                .await?;
        }
        Ok(caller)
    }

    /// Authorizes recording on behalf of another principal: (actor, act_for) in `tenant`.
    pub(crate) async fn authorize_other_actor<T>(
        &self,
        request: &Request<T>,
        caller: &Caller,
        tenant: &str,
    ) -> Result<(), Status> {
        let (_, path) = identity(request)?;
        self.governance
            .authorize_access(caller, &path, tenant, Object::Actor, Action::ActFor)
            .await
            .map_err(|denied| denied_status(&denied))
    }

    /// Authorizes a call in the request's tenant; a request for personal data by a caller who
    /// may not read it is turned into one without (the answer is redacted).
    pub(crate) async fn authorize_read<T: TenantRequest>(
        &self,
        request: &mut Request<T>,
    ) -> Result<Caller, Status> {
        let tenant = request.get_ref().tenant().to_owned();
        let caller = self.authorize_in(request, "tenant", &tenant).await?;
        self.redact_unless_allowed(&caller, &tenant, request.get_mut().include_personal_mut());
        Ok(caller)
    }

    /// Clears `include_personal` unless the caller may read personal data in `tenant`.
    pub(crate) fn redact_unless_allowed(
        &self,
        caller: &Caller,
        tenant: &str,
        include_personal: Option<&mut bool>,
    ) {
        if let Some(include) = include_personal
            && *include
            && !self.may_read_personal(caller, tenant)
        {
            *include = false;
        }
    }

    /// Whether the caller may read personal data in `tenant`.
    pub(crate) fn may_read_personal(&self, caller: &Caller, tenant: &str) -> bool {
        caller.tenants.covers(tenant)
            && self
                .governance
                .check(&cairn_policy::AccessRequest {
                    principal: caller.principal.clone(),
                    tenant: tenant.to_owned(),
                    object: Object::Personal,
                    action: Action::Read,
                })
                .allowed
    }
}
