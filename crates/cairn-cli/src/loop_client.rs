//! The client of the feedback-loop services (`FeedbackService`, `DecisionService`,
//! `PrioritizationService`, `InitiativeService`, `LineageService`) on one connection, and the
//! mutating calls as one data type, [`Mutation`], so the subcommands and `cairn demo` send commands
//! the same way and print the same receipt.
//!
//! Errors read like the ledger client's: `Triage on http://...: FAILED_PRECONDITION: ...`, with
//! the rule (`cairn-rule`) when the domain refused a command.

use anyhow::anyhow;
use cairn_grpc::auth::AuthChannel;
use cairn_grpc::proto;
use cairn_grpc::proto::decision_service_client::DecisionServiceClient;
use cairn_grpc::proto::feedback_service_client::FeedbackServiceClient;
use cairn_grpc::proto::initiative_service_client::InitiativeServiceClient;
use cairn_grpc::proto::lineage_service_client::LineageServiceClient;
use cairn_grpc::proto::prioritization_service_client::PrioritizationServiceClient;
use tonic::Status;

use crate::client::{ServerArgs, connect_channel, describe_status};
use crate::loop_flags::WriteFlags;
use crate::loop_output::print_receipt;

/// Largest message either side of a feedback-loop call (the server's limit is the one met).
const LOOP_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The five feedback-loop clients, sharing one HTTP/2 connection, naming the server in every
/// error. Cloning is cheap: the clones share the connection.
#[derive(Clone)]
pub struct LoopClient {
    feedback: FeedbackServiceClient<AuthChannel>,
    decision: DecisionServiceClient<AuthChannel>,
    prioritization: PrioritizationServiceClient<AuthChannel>,
    initiative: InitiativeServiceClient<AuthChannel>,
    lineage: LineageServiceClient<AuthChannel>,
    server: String,
}

/// Sets both message limits on a generated client.
macro_rules! sized {
    ($client:ident, $channel:expr) => {
        $client::new($channel)
            .max_decoding_message_size(LOOP_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(LOOP_MESSAGE_BYTES_MAX)
    };
}

impl LoopClient {
    /// Connects to `server` (`http://host:port`).
    pub async fn connect(server: &ServerArgs) -> anyhow::Result<LoopClient> {
        let (channel, server) = connect_channel(server).await?;
        Ok(LoopClient {
            feedback: sized!(FeedbackServiceClient, channel.clone()),
            decision: sized!(DecisionServiceClient, channel.clone()),
            prioritization: sized!(PrioritizationServiceClient, channel.clone()),
            initiative: sized!(InitiativeServiceClient, channel.clone()),
            lineage: sized!(LineageServiceClient, channel),
            server,
        })
    }

    /// The error for a failed call: `Triage on http://...: FAILED_PRECONDITION: ... (cairn-rule:
    /// transition_not_allowed)`.
    pub fn call_failed(&self, call: &str, status: &Status) -> anyhow::Error {
        anyhow!(
            "{call} on {} failed: {}",
            self.server,
            describe_status(status)
        )
    }

    /// Sends one command and answers its receipt.
    pub async fn send(&mut self, mutation: Mutation) -> anyhow::Result<proto::CommandReceipt> {
        let call = mutation.call();
        let answer = mutation.send_raw(self).await;
        answer.map_err(|status| self.call_failed(call, &status))
    }

    /// `PrioritizationService.AgeOut`: one page of the sweep.
    pub async fn age_out(
        &mut self,
        request: proto::AgeOutRequest,
    ) -> anyhow::Result<proto::AgeOutResponse> {
        let answer = self.prioritization.age_out(request).await;
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| self.call_failed("AgeOut", &status))
    }
}

/// Declares [`Mutation`]: one variant per mutating call (its request message), the call's name
/// for errors, access to the request's `CommandMeta`, and the dispatch to the right client.
macro_rules! mutations {
    ($($variant:ident($request:ident) => $service:ident.$method:ident;)*) => {
        /// A mutating call of the feedback loop: every one answers a `CommandReceipt`.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Mutation {
            $(
                #[doc = concat!("`", stringify!($variant), "`.")]
                $variant(proto::$request),
            )*
        }

        impl Mutation {
            /// The gRPC method's name, as errors and progress name it.
            pub fn call(&self) -> &'static str {
                match self {
                    $(Mutation::$variant(_) => stringify!($variant),)*
                }
            }

            /// The request's command metadata (every mutating request opens with it).
            pub fn meta_mut(&mut self) -> &mut proto::CommandMeta {
                match self {
                    $(Mutation::$variant(request) => request.meta.get_or_insert_with(Default::default),)*
                }
            }

            async fn send_raw(
                self,
                client: &mut LoopClient,
            ) -> Result<proto::CommandReceipt, Status> {
                match self {
                    $(Mutation::$variant(request) => client
                        .$service
                        .$method(request)
                        .await
                        .map(tonic::Response::into_inner),)*
                }
            }
        }
    };
}

mutations! {
    SubmitFeedback(SubmitFeedbackRequest) => feedback.submit_feedback;
    LinkFeedback(LinkFeedbackRequest) => feedback.link_feedback;
    DiscardFeedback(DiscardFeedbackRequest) => feedback.discard_feedback;
    RecordSignal(RecordSignalRequest) => feedback.record_signal;
    CreateOpportunity(CreateOpportunityRequest) => prioritization.create_opportunity;
    StartReview(StartReviewRequest) => prioritization.start_review;
    Triage(TriageRequest) => prioritization.triage;
    Wake(WakeOpportunityRequest) => prioritization.wake;
    StartWork(StartWorkRequest) => prioritization.start_work;
    Ship(ShipOpportunityRequest) => prioritization.ship;
    ValidateOutcome(ValidateOutcomeRequest) => prioritization.validate_outcome;
    Vote(VoteRequest) => prioritization.vote;
    Rate(RateRequest) => prioritization.rate;
    Rescore(RescoreRequest) => prioritization.rescore;
    ProposeDecision(ProposeDecisionRequest) => decision.propose_decision;
    ReviseDecision(ReviseDecisionRequest) => decision.revise_decision;
    AcceptDecision(AcceptDecisionRequest) => decision.accept_decision;
    RejectDecision(RejectDecisionRequest) => decision.reject_decision;
    DeprecateDecision(DeprecateDecisionRequest) => decision.deprecate_decision;
    CreateInitiative(CreateInitiativeRequest) => initiative.create_initiative;
    Schedule(ScheduleInitiativeRequest) => initiative.schedule;
    Start(StartInitiativeRequest) => initiative.start;
    FlagRisk(FlagInitiativeRiskRequest) => initiative.flag_risk;
    ClearRisk(ClearInitiativeRiskRequest) => initiative.clear_risk;
    Complete(CompleteInitiativeRequest) => initiative.complete;
    Cancel(CancelInitiativeRequest) => initiative.cancel;
    Implement(ImplementOpportunityRequest) => initiative.implement;
    AddMilestone(AddMilestoneRequest) => initiative.add_milestone;
    MeetMilestone(MeetMilestoneRequest) => initiative.meet_milestone;
    MissMilestone(MissMilestoneRequest) => initiative.miss_milestone;
}

/// Declares one `LoopClient` method per read call: the request in, the response or an error that
/// names the call and the server out.
macro_rules! reads {
    ($($method:ident($request:ident) -> $response:ident via $service:ident, $call:literal;)*) => {
        impl LoopClient {
            $(
                #[doc = concat!("`", $call, "`.")]
                pub async fn $method(
                    &mut self,
                    request: proto::$request,
                ) -> anyhow::Result<proto::$response> {
                    let answer = self.$service.$method(request).await;
                    answer
                        .map(tonic::Response::into_inner)
                        .map_err(|status| self.call_failed($call, &status))
                }
            )*
        }
    };
}

reads! {
    get_feedback(GetFeedbackRequest) -> GetFeedbackResponse via feedback, "GetFeedback";
    list_feedback(ListFeedbackRequest) -> ListFeedbackResponse via feedback, "ListFeedback";
    get_signal(GetSignalRequest) -> GetSignalResponse via feedback, "GetSignal";
    get_opportunity(GetOpportunityRequest) -> GetOpportunityResponse via prioritization, "GetOpportunity";
    get_ranking(GetRankingRequest) -> GetRankingResponse via prioritization, "GetRanking";
    explain_rank(ExplainRankRequest) -> ExplainRankResponse via prioritization, "ExplainRank";
    score_history(ScoreHistoryRequest) -> ScoreHistoryResponse via prioritization, "ScoreHistory";
    list_aged_out(ListAgedOutRequest) -> ListAgedOutResponse via prioritization, "ListAgedOut";
    get_decision(GetDecisionRequest) -> GetDecisionResponse via decision, "GetDecision";
    list_decisions(ListDecisionsRequest) -> ListDecisionsResponse via decision, "ListDecisions";
    list_superseded(ListSupersededRequest) -> ListSupersededResponse via decision, "ListSuperseded";
    get_initiative(GetInitiativeRequest) -> GetInitiativeResponse via initiative, "GetInitiative";
    list_initiatives(ListInitiativesRequest) -> ListInitiativesResponse via initiative, "ListInitiatives";
    graph(GraphRequest) -> GraphResponse via lineage, "Graph";
    why(WhyRequest) -> WhyResponse via lineage, "Why";
    what_happened(WhatHappenedRequest) -> WhatHappenedResponse via lineage, "WhatHappened";
}

/// Sends one command with the flags' metadata and prints its receipt: what every mutating
/// subcommand does once it has built its request.
pub async fn send_and_print(write: &WriteFlags, mut mutation: Mutation) -> anyhow::Result<()> {
    *mutation.meta_mut() = write.meta();
    let mut client = LoopClient::connect(&write.server).await?;
    let receipt = client.send(mutation).await?;
    print_receipt(write.format, &receipt);
    Ok(())
}
