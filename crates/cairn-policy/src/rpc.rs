//! THE table: which (object, action) every RPC of every `cairn.v1` service is checked for, and
//! in which tenant.

use crate::names::{Action, Object};

/// Where an RPC is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The request names a tenant (`tenant`, `meta.tenant` or `stream.tenant`); checked in that
    /// tenant.
    Tenant,
    /// Not about one tenant (the whole ledger, the policy bundle); checked with tenant `*`, so
    /// only a role held in every tenant allows it.
    Global,
}

/// One RPC and what it is checked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RpcAccess {
    /// The full gRPC path, e.g. `/cairn.v1.FeedbackService/SubmitFeedback`.
    pub method: &'static str,
    /// What the RPC acts on.
    pub object: Object,
    /// What it does to it.
    pub action: Action,
    /// Which tenant it is checked in.
    pub scope: Scope,
}

impl RpcAccess {
    /// The service's full name, e.g. `cairn.v1.FeedbackService`.
    pub fn service(&self) -> &'static str {
        let path = self.method.trim_start_matches('/');
        path.split_once('/').map_or(path, |(service, _)| service)
    }

    /// The method's name, e.g. `SubmitFeedback`.
    pub fn name(&self) -> &'static str {
        self.method
            .rsplit_once('/')
            .map_or(self.method, |(_, name)| name)
    }
}

const fn rpc(method: &'static str, object: Object, action: Action, scope: Scope) -> RpcAccess {
    RpcAccess {
        method,
        object,
        action,
        scope,
    }
}

use Action::{Admin, Decide, Erase, Grant, Read, Test, Triage, Write};
use Object::{
    Access, Audit, Decision, Feedback, Initiative, Ledger, Lineage, Opportunity, Policy, Signal,
    Stewardship,
};
use Scope::{Global, Tenant};

/// One row per RPC of every `cairn.v1` service. A request that also asks for personal data
/// (`include_personal`) is checked a second time for `(personal, read)` in the same tenant.
pub const RPCS: &[RpcAccess] = &[
    // LedgerService: the raw ledger. Append and ReadStream name a stream, whose tenant they are
    // checked in; the rest span every tenant.
    rpc("/cairn.v1.LedgerService/Append", Ledger, Write, Tenant),
    rpc("/cairn.v1.LedgerService/ReadStream", Ledger, Read, Tenant),
    rpc("/cairn.v1.LedgerService/ReadAll", Ledger, Read, Global),
    rpc("/cairn.v1.LedgerService/Subscribe", Ledger, Read, Global),
    rpc("/cairn.v1.LedgerService/GetLogInfo", Ledger, Read, Global),
    rpc(
        "/cairn.v1.LedgerService/GetCheckpoint",
        Ledger,
        Read,
        Global,
    ),
    rpc(
        "/cairn.v1.LedgerService/GetInclusionProof",
        Ledger,
        Read,
        Global,
    ),
    rpc(
        "/cairn.v1.LedgerService/GetConsistencyProof",
        Ledger,
        Read,
        Global,
    ),
    // FeedbackService.
    rpc(
        "/cairn.v1.FeedbackService/SubmitFeedback",
        Feedback,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.FeedbackService/LinkFeedback",
        Feedback,
        Triage,
        Tenant,
    ),
    rpc(
        "/cairn.v1.FeedbackService/DiscardFeedback",
        Feedback,
        Triage,
        Tenant,
    ),
    rpc(
        "/cairn.v1.FeedbackService/GetFeedback",
        Feedback,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.FeedbackService/ListFeedback",
        Feedback,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.FeedbackService/RecordSignal",
        Signal,
        Write,
        Tenant,
    ),
    rpc("/cairn.v1.FeedbackService/GetSignal", Signal, Read, Tenant),
    // DecisionService: proposing and revising is writing; accepting, rejecting and deprecating
    // is deciding.
    rpc(
        "/cairn.v1.DecisionService/ProposeDecision",
        Decision,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.DecisionService/ReviseDecision",
        Decision,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.DecisionService/AcceptDecision",
        Decision,
        Decide,
        Tenant,
    ),
    rpc(
        "/cairn.v1.DecisionService/RejectDecision",
        Decision,
        Decide,
        Tenant,
    ),
    rpc(
        "/cairn.v1.DecisionService/DeprecateDecision",
        Decision,
        Decide,
        Tenant,
    ),
    rpc(
        "/cairn.v1.DecisionService/GetDecision",
        Decision,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.DecisionService/ListDecisions",
        Decision,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.DecisionService/ListSuperseded",
        Decision,
        Read,
        Tenant,
    ),
    // PrioritizationService: creating, voting and rating is writing; reviewing, triaging,
    // waking, rescoring and aging out is triage; starting work, shipping and validating the
    // outcome commits the team, so it is deciding. The scoring model explains every ranking a
    // viewer sees, so reading it is reading opportunities.
    rpc(
        "/cairn.v1.PrioritizationService/CreateOpportunity",
        Opportunity,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/StartReview",
        Opportunity,
        Triage,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/Triage",
        Opportunity,
        Triage,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/Wake",
        Opportunity,
        Triage,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/StartWork",
        Opportunity,
        Decide,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/Ship",
        Opportunity,
        Decide,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/ValidateOutcome",
        Opportunity,
        Decide,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/Vote",
        Opportunity,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/Rate",
        Opportunity,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/Rescore",
        Opportunity,
        Triage,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/AgeOut",
        Opportunity,
        Triage,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/GetOpportunity",
        Opportunity,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/GetRanking",
        Opportunity,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/ExplainRank",
        Opportunity,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/ScoreHistory",
        Opportunity,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/ListAgedOut",
        Opportunity,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.PrioritizationService/GetScoringModel",
        Opportunity,
        Read,
        Tenant,
    ),
    // InitiativeService: running an initiative is writing it (an owner's right); completing or
    // cancelling it is deciding.
    rpc(
        "/cairn.v1.InitiativeService/CreateInitiative",
        Initiative,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/Schedule",
        Initiative,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/Start",
        Initiative,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/FlagRisk",
        Initiative,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/ClearRisk",
        Initiative,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/Complete",
        Initiative,
        Decide,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/Cancel",
        Initiative,
        Decide,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/Implement",
        Initiative,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/AddMilestone",
        Initiative,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/MeetMilestone",
        Initiative,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/MissMilestone",
        Initiative,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/GetInitiative",
        Initiative,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.InitiativeService/ListInitiatives",
        Initiative,
        Read,
        Tenant,
    ),
    // LineageService: every walk is reading lineage (entities the caller may not see are left
    // out by the server).
    rpc("/cairn.v1.LineageService/Upstream", Lineage, Read, Tenant),
    rpc("/cairn.v1.LineageService/Downstream", Lineage, Read, Tenant),
    rpc("/cairn.v1.LineageService/Graph", Lineage, Read, Tenant),
    rpc("/cairn.v1.LineageService/Why", Lineage, Read, Tenant),
    rpc(
        "/cairn.v1.LineageService/WhatHappened",
        Lineage,
        Read,
        Tenant,
    ),
    // PolicyService.
    rpc("/cairn.v1.PolicyService/Check", Policy, Read, Tenant),
    rpc(
        "/cairn.v1.PolicyService/GetActiveBundle",
        Policy,
        Read,
        Global,
    ),
    rpc("/cairn.v1.PolicyService/DryRun", Policy, Test, Global),
    rpc("/cairn.v1.PolicyService/Reload", Policy, Admin, Global),
    rpc("/cairn.v1.PolicyService/Grant", Access, Grant, Tenant),
    rpc("/cairn.v1.PolicyService/Revoke", Access, Grant, Tenant),
    rpc("/cairn.v1.PolicyService/ListDenied", Audit, Read, Tenant),
    // StewardshipService.
    rpc(
        "/cairn.v1.StewardshipService/PreviewRetention",
        Stewardship,
        Read,
        Tenant,
    ),
    rpc(
        "/cairn.v1.StewardshipService/RunRetention",
        Stewardship,
        Erase,
        Tenant,
    ),
    rpc(
        "/cairn.v1.StewardshipService/PlaceLegalHold",
        Stewardship,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.StewardshipService/ReleaseLegalHold",
        Stewardship,
        Write,
        Tenant,
    ),
    rpc(
        "/cairn.v1.StewardshipService/RequestErasure",
        Stewardship,
        Erase,
        Tenant,
    ),
    rpc(
        "/cairn.v1.StewardshipService/ListErasures",
        Stewardship,
        Read,
        Tenant,
    ),
    // Pseudonymised, without personal fields: what an auditor may read of the ledger anyway.
    rpc(
        "/cairn.v1.StewardshipService/ExportEvents",
        Ledger,
        Read,
        Tenant,
    ),
];

/// The row of an RPC by its full gRPC path; `None` for a method cairn does not serve (the server
/// denies it, or leaves it to health and reflection, which need no policy).
pub fn rpc_access(method: &str) -> Option<&'static RpcAccess> {
    RPCS.iter().find(|row| row.method == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_names() {
        let row = rpc_access("/cairn.v1.PolicyService/Reload").unwrap();
        assert_eq!((row.object, row.action, row.scope), (Policy, Admin, Global));
        assert_eq!(row.service(), "cairn.v1.PolicyService");
        assert_eq!(row.name(), "Reload");
        assert_eq!(rpc_access("/cairn.v1.PolicyService/reload"), None);
        assert_eq!(rpc_access("/grpc.health.v1.Health/Check"), None);
    }
}
