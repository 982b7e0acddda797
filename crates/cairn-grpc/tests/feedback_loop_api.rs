//! The feedback-loop services end to end: `serve` in process on a loopback port over an in-memory
//! ledger, its read models following the ledger in a task, driven through the generated clients.
//! Every read after a write asks for `at_least_position` = the write's last position, so nothing
//! sleeps.

use std::sync::Arc;
use std::time::Duration;

use cairn_grpc::auth::{AuthChannel, BearerToken};
use cairn_grpc::proto;
use cairn_grpc::proto::decision_service_client::DecisionServiceClient;
use cairn_grpc::proto::feedback_service_client::FeedbackServiceClient;
use cairn_grpc::proto::initiative_service_client::InitiativeServiceClient;
use cairn_grpc::proto::lineage_service_client::LineageServiceClient;
use cairn_grpc::proto::prioritization_service_client::PrioritizationServiceClient;
use cairn_grpc::{
    CURRENT_VERSION_METADATA, FIELD_METADATA, RULE_METADATA, ServerLimits, Services, serve,
};
use cairn_projections::Projections;
use cairn_service::{Ledger, ServerIdentity};
use cairn_store::MemoryStore;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const TENANT: &str = "acme";
/// The administrator's token the server accepts.
const TOKEN: &str = "cairn_test_admin";
const DAY_MICROS: i64 = 86_400_000_000;

/// Whether the read models follow the ledger from the start.
enum Follow {
    Now,
    Later,
}

/// A server in process; dropping it stops the server and the follower.
struct Server {
    channel: AuthChannel,
    store: Arc<MemoryStore>,
    projections: Arc<Projections>,
    stop_following: watch::Sender<bool>,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(follow: Follow) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let store = MemoryStore::new();
        let identity = Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32]));
        let ledger = Arc::new(Ledger::new(Arc::clone(&store), identity));
        let projections = Arc::new(Projections::temporary().unwrap());
        let services = Services::built_in(ledger, Arc::clone(&projections), TOKEN)
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, services, ServerLimits::default(), async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let channel = InterceptedService::new(channel, BearerToken::new(TOKEN).unwrap());
        let server = Server {
            channel,
            store,
            projections,
            stop_following: watch::channel(false).0,
            _stop: stop,
        };
        if let Follow::Now = follow {
            server.follow();
        }
        server
    }

    /// Starts the projection follower.
    fn follow(&self) {
        tokio::spawn(
            Arc::clone(&self.projections)
                .follow(Arc::clone(&self.store), self.stop_following.subscribe()),
        );
    }

    fn feedback(&self) -> FeedbackServiceClient<AuthChannel> {
        FeedbackServiceClient::new(self.channel.clone())
    }

    fn decisions(&self) -> DecisionServiceClient<AuthChannel> {
        DecisionServiceClient::new(self.channel.clone())
    }

    fn prioritization(&self) -> PrioritizationServiceClient<AuthChannel> {
        PrioritizationServiceClient::new(self.channel.clone())
    }

    fn initiatives(&self) -> InitiativeServiceClient<AuthChannel> {
        InitiativeServiceClient::new(self.channel.clone())
    }

    fn lineage(&self) -> LineageServiceClient<AuthChannel> {
        LineageServiceClient::new(self.channel.clone())
    }
}

fn now_micros() -> i64 {
    cairn_store::now().0
}

/// The metadata of a command by `actor` with idempotency key `key`.
fn meta(actor: &str, key: &str) -> Option<proto::CommandMeta> {
    Some(proto::CommandMeta {
        tenant: TENANT.into(),
        idempotency_key: key.into(),
        actor: actor.into(),
        ..Default::default()
    })
}

/// Read options that see at least `receipt`'s write.
fn after(receipt: &proto::CommandReceipt) -> Option<proto::ReadOptions> {
    Some(proto::ReadOptions {
        at_least_position: Some(receipt.last_position),
        ..Default::default()
    })
}

fn personal(read: Option<proto::ReadOptions>) -> Option<proto::ReadOptions> {
    read.map(|read| proto::ReadOptions {
        include_personal: true,
        ..read
    })
}

fn entity(kind: proto::EntityKind, id: &str) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        kind: kind as i32,
        id: id.into(),
    })
}

fn page(size: u32, token: &str) -> Option<proto::PageRequest> {
    Some(proto::PageRequest {
        page_size: size,
        page_token: token.into(),
    })
}

fn metadata(status: &Status, key: &str) -> Option<String> {
    status
        .metadata()
        .get(key)
        .map(|value| value.to_str().unwrap().to_owned())
}

/// `result` failed with `code` and carries each (key, value) of `expected` in its metadata.
fn check_refused<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    expected: &[(&str, &str)],
) -> Status {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    for (key, value) in expected {
        assert_eq!(
            metadata(&status, key).as_deref(),
            Some(*value),
            "{key} of {status:?}"
        );
    }
    status
}

fn node_ids(nodes: &[proto::LineageNode]) -> Vec<(String, u32)> {
    nodes
        .iter()
        .map(|node| {
            let entity = node.summary.as_ref().unwrap().entity.as_ref().unwrap();
            (entity.id.clone(), node.depth)
        })
        .collect()
}

fn opportunity_draft(title: &str) -> Option<proto::OpportunityDraft> {
    Some(proto::OpportunityDraft {
        title: title.into(),
        problem: format!("{title}: the problem"),
        owner: "user:olga".into(),
        team: "platform".into(),
        ..Default::default()
    })
}

fn decision_content(
    title: &str,
    supersedes: &str,
    subjects: &[&str],
) -> Option<proto::DecisionContent> {
    Some(proto::DecisionContent {
        kind: proto::DecisionKind::Triage as i32,
        title: title.into(),
        team: "platform".into(),
        context: "triage of the quarter".into(),
        drivers: vec!["focus".into()],
        options: vec!["build".into(), "decline".into()],
        outcome: "decline".into(),
        deciders: vec!["user:dana".into()],
        subjects: subjects
            .iter()
            .map(|id| proto::EntityRef {
                kind: proto::EntityKind::Opportunity as i32,
                id: (*id).into(),
            })
            .collect(),
        supersedes: supersedes.into(),
        ..Default::default()
    })
}

/// Records the scenario every read below checks: two feedback items and a signal as evidence, a
/// duplicate folded into its canonical opportunity, votes and ratings, a declined opportunity
/// under a decision that a second one supersedes, and an initiative with a milestone met by the
/// signal. Returns the last receipt.
async fn record_the_loop(server: &Server) -> proto::CommandReceipt {
    let mut feedback = server.feedback();
    let mut prioritization = server.prioritization();
    let mut decisions = server.decisions();
    let mut initiatives = server.initiatives();
    let now = now_micros();

    for (id, text, submitter) in [
        ("f-1", "the build takes forty minutes", "user:ann"),
        ("f-2", "CI is slow again", ""),
    ] {
        let receipt = feedback
            .submit_feedback(proto::SubmitFeedbackRequest {
                meta: meta("bot:survey", &format!("submit-{id}")),
                id: id.into(),
                text: text.into(),
                submitter: submitter.into(),
                team: "platform".into(),
                source: proto::FeedbackSource::Survey as i32,
                tags: vec!["ci".into()],
                outcome_tags: vec!["developer-time".into()],
                visibility: proto::Visibility::Open as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            receipt.entity,
            entity(proto::EntityKind::Feedback, id),
            "{receipt:?}"
        );
        assert_eq!(receipt.event_types, ["feedback.received"]);
        assert_eq!(receipt.stream_version, 1);
        assert!(!receipt.deduplicated);
    }
    feedback
        .record_signal(proto::RecordSignalRequest {
            meta: meta("bot:prometheus", "signal-1"),
            id: "sig-1".into(),
            observation: Some(proto::Observation {
                metric: "build_latency_ms".into(),
                unit: "ms".into(),
                direction: proto::MetricDirection::LowerIsBetter as i32,
                team: "platform".into(),
                window_seconds: 3600,
                value: Some(2_400_000.0),
                source: "prometheus".into(),
                observed_at_micros: now - 3_600_000_000,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    for id in ["o-1", "o-2", "o-3", "o-4"] {
        prioritization
            .create_opportunity(proto::CreateOpportunityRequest {
                meta: meta("user:olga", &format!("create-{id}")),
                id: id.into(),
                draft: opportunity_draft(&format!("faster CI ({id})")),
            })
            .await
            .unwrap();
    }
    for (index, (opportunity, evidence)) in [
        ("o-1", entity(proto::EntityKind::Feedback, "f-1")),
        ("o-1", entity(proto::EntityKind::Signal, "sig-1")),
        ("o-2", entity(proto::EntityKind::Feedback, "f-2")),
    ]
    .into_iter()
    .enumerate()
    {
        let receipt = feedback
            .link_feedback(proto::LinkFeedbackRequest {
                meta: meta("user:tara", &format!("link-{index}")),
                id: opportunity.into(),
                evidence,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            receipt.entity,
            entity(proto::EntityKind::Opportunity, opportunity)
        );
        assert_eq!(receipt.event_types[0], "opportunity.evidence_attached");
    }
    for (opportunity, voter) in [("o-1", "user:bob"), ("o-2", "user:carl")] {
        prioritization
            .vote(proto::VoteRequest {
                meta: meta("bot:portal", &format!("vote-{opportunity}-{voter}")),
                id: opportunity.into(),
                voter: voter.into(),
                weight: 3,
                segment: "payments".into(),
            })
            .await
            .unwrap();
    }
    for (name, value) in [
        ("customer_impact", 4.0),
        ("effort", 2.0),
        ("confidence", 80.0),
    ] {
        prioritization
            .rate(proto::RateRequest {
                meta: meta("user:olga", &format!("rate-{name}")),
                id: "o-1".into(),
                name: name.into(),
                value,
                rationale: "from the survey".into(),
            })
            .await
            .unwrap();
    }
    let duplicate = prioritization
        .triage(proto::TriageRequest {
            meta: meta("user:tara", "triage-o-2"),
            id: "o-2".into(),
            outcome: Some(proto::triage_request::Outcome::Duplicate(
                proto::TriageDuplicate {
                    canonical_id: "o-1".into(),
                },
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        duplicate.entity,
        entity(proto::EntityKind::Opportunity, "o-2")
    );
    assert_eq!(duplicate.event_types, ["opportunity.marked_duplicate"]);

    decisions
        .propose_decision(proto::ProposeDecisionRequest {
            meta: meta("user:tara", "propose-d-1"),
            id: "d-1".into(),
            content: decision_content("decline the monorepo split", "", &["o-3"]),
        })
        .await
        .unwrap();
    decisions
        .accept_decision(proto::AcceptDecisionRequest {
            meta: meta("user:dana", "accept-d-1"),
            id: "d-1".into(),
        })
        .await
        .unwrap();
    prioritization
        .triage(proto::TriageRequest {
            meta: meta("user:tara", "triage-o-3"),
            id: "o-3".into(),
            outcome: Some(proto::triage_request::Outcome::Decline(
                proto::TriageDecline {
                    reason: "out of scope this year".into(),
                    decision_id: "d-1".into(),
                },
            )),
        })
        .await
        .unwrap();
    decisions
        .propose_decision(proto::ProposeDecisionRequest {
            meta: meta("user:tara", "propose-d-2"),
            id: "d-2".into(),
            content: decision_content("decline it, and say why", "d-1", &[]),
        })
        .await
        .unwrap();
    let accepted = decisions
        .accept_decision(proto::AcceptDecisionRequest {
            meta: meta("user:dana", "accept-d-2"),
            id: "d-2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // The receipt is the accepted decision's; marking d-1 superseded was a second step.
    assert_eq!(accepted.entity, entity(proto::EntityKind::Decision, "d-2"));
    assert_eq!(accepted.event_types, ["decision.accepted"]);

    initiatives
        .create_initiative(proto::CreateInitiativeRequest {
            meta: meta("user:olga", "create-i-1"),
            id: "i-1".into(),
            draft: Some(proto::InitiativeDraft {
                title: "CI under ten minutes".into(),
                goal: "builds finish in ten minutes".into(),
                owners: vec!["user:olga".into()],
                team: "platform".into(),
                target: "p95 build latency under 600000 ms".into(),
                scope: "the main pipelines".into(),
                start_micros: now,
                target_date_micros: now + 30 * DAY_MICROS,
                implements: vec!["o-1".into()],
                outcome_tags: vec!["developer-time".into()],
                visibility: proto::Visibility::Team as i32,
            }),
        })
        .await
        .unwrap();
    initiatives
        .add_milestone(proto::AddMilestoneRequest {
            meta: meta("user:olga", "milestone-beta"),
            id: "i-1".into(),
            name: "beta".into(),
            due_micros: now + 10 * DAY_MICROS,
            exit_criteria: "half the pipelines moved".into(),
        })
        .await
        .unwrap();
    initiatives
        .schedule(proto::ScheduleInitiativeRequest {
            meta: meta("user:olga", "schedule-i-1"),
            id: "i-1".into(),
        })
        .await
        .unwrap();
    initiatives
        .start(proto::StartInitiativeRequest {
            meta: meta("user:olga", "start-i-1"),
            id: "i-1".into(),
        })
        .await
        .unwrap();
    initiatives
        .meet_milestone(proto::MeetMilestoneRequest {
            meta: meta("user:olga", "meet-beta"),
            id: "i-1".into(),
            name: "beta".into(),
            signal_id: "sig-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_reads_back_through_every_service() {
    let server = Server::start(Follow::Now).await;
    let last = record_the_loop(&server).await;
    let read = after(&last);

    // Feedback: personal data only when asked for.
    let mut feedback = server.feedback();
    let answer = feedback
        .get_feedback(proto::GetFeedbackRequest {
            tenant: TENANT.into(),
            read: personal(read),
            id: "f-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let item = answer.feedback.unwrap();
    assert_eq!(item.status, proto::FeedbackStatus::Processed as i32);
    assert_eq!(item.personal_state, proto::PersonalState::Open as i32);
    assert_eq!(item.text, "the build takes forty minutes");
    assert_eq!(item.submitter, "user:ann");
    assert_eq!(item.opportunity_ids, ["o-1"]);
    assert_eq!(item.tags, ["ci"]);
    assert_eq!(item.version, 2, "received, then linked");
    let stamp = answer.stamp.unwrap();
    assert!(stamp.position >= last.last_position, "{stamp:?}");
    let withheld = feedback
        .get_feedback(proto::GetFeedbackRequest {
            tenant: TENANT.into(),
            read,
            id: "f-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .feedback
        .unwrap();
    assert_eq!(
        withheld.personal_state,
        proto::PersonalState::Withheld as i32
    );
    assert_eq!(
        (withheld.text.as_str(), withheld.submitter.as_str()),
        ("", "")
    );
    let listed = feedback
        .list_feedback(proto::ListFeedbackRequest {
            tenant: TENANT.into(),
            read,
            team: "platform".into(),
            tag: "ci".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed.items.iter().map(|item| item.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"f-1") && ids.contains(&"f-2"), "{ids:?}");
    let for_o2 = feedback
        .list_feedback(proto::ListFeedbackRequest {
            tenant: TENANT.into(),
            read,
            opportunity_id: "o-2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(for_o2.items.len(), 1);
    assert_eq!(for_o2.items[0].id, "f-2");
    let signal = feedback
        .get_signal(proto::GetSignalRequest {
            tenant: TENANT.into(),
            read,
            id: "sig-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .signal
        .unwrap();
    assert_eq!(signal.opportunity_ids, ["o-1"]);
    assert_eq!(signal.observation.unwrap().metric, "build_latency_ms");

    // Opportunities: the duplicate's evidence and vote moved to the canonical one.
    let mut prioritization = server.prioritization();
    let o1 = prioritization
        .get_opportunity(proto::GetOpportunityRequest {
            tenant: TENANT.into(),
            read,
            id: "o-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .opportunity
        .unwrap();
    assert_eq!(o1.status, proto::OpportunityStatus::New as i32);
    let evidence: Vec<_> = o1
        .evidence
        .iter()
        .map(|piece| piece.reference.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(evidence, ["f-1", "sig-1", "f-2"]);
    assert!(
        o1.evidence[1].observation.is_some(),
        "a signal's observation is copied"
    );
    assert_eq!((o1.voters, o1.vote_weight_total), (2, 6));
    let mut ratings: Vec<_> = o1
        .ratings
        .iter()
        .map(|r| (r.name.as_str(), r.value))
        .collect();
    ratings.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        ratings,
        [
            ("confidence", 80.0),
            ("customer_impact", 4.0),
            ("effort", 2.0)
        ]
    );
    let score = o1.score.as_ref().unwrap();
    assert_eq!(score.model, "platform-rice");
    assert!(score.value > 0.0, "{score:?}");
    assert_eq!(o1.rank, 1);
    assert_eq!(o1.draft.as_ref().unwrap().owner, "user:olga");
    assert!(o1.version > 5, "{}", o1.version);
    let o2 = prioritization
        .get_opportunity(proto::GetOpportunityRequest {
            tenant: TENANT.into(),
            read,
            id: "o-2".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .opportunity
        .unwrap();
    assert_eq!(o2.status, proto::OpportunityStatus::Duplicate as i32);
    assert_eq!((o2.canonical_id.as_str(), o2.rank), ("o-1", 0));
    let o3 = prioritization
        .get_opportunity(proto::GetOpportunityRequest {
            tenant: TENANT.into(),
            read,
            id: "o-3".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .opportunity
        .unwrap();
    assert_eq!(o3.status, proto::OpportunityStatus::Declined as i32);
    assert_eq!(o3.decision_id, "d-1");
    assert_eq!(o3.decline_reason, "out of scope this year");

    // The ranking: o-1 above o-4 (unscored inputs: 0); the duplicate and the declined one are out.
    let ranking = prioritization
        .get_ranking(proto::GetRankingRequest {
            tenant: TENANT.into(),
            read,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let lines: Vec<_> = ranking
        .entries
        .iter()
        .map(|line| (line.rank, line.id.as_str()))
        .collect();
    assert_eq!(lines, [(1, "o-1"), (2, "o-4")]);
    assert_eq!(ranking.ranked_count, 2);
    assert_eq!(ranking.entries[0].model, "platform-rice");
    assert_eq!(ranking.entries[0].owner, "user:olga");
    let top = prioritization
        .get_ranking(proto::GetRankingRequest {
            tenant: TENANT.into(),
            read,
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((top.entries.len(), top.ranked_count), (1, 2));

    // Why o-1 ranks first: the snapshot's inputs, the record that holds it, the evidence.
    let explained = prioritization
        .explain_rank(proto::ExplainRankRequest {
            tenant: TENANT.into(),
            read,
            id: "o-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explained.entry.as_ref().unwrap().rank, 1);
    assert_eq!(explained.ranked_count, 2);
    assert!(explained.above.is_none());
    assert_eq!(explained.below.as_ref().unwrap().id, "o-4");
    let snapshot = explained.score.as_ref().unwrap();
    assert_eq!(snapshot.model, "platform-rice");
    let impact = snapshot
        .inputs
        .iter()
        .find(|input| input.factor == "impact")
        .unwrap();
    assert_eq!(impact.raw, 4.0);
    match impact.source.as_ref().unwrap().source.as_ref().unwrap() {
        proto::input_source::Source::Rating(rating) => assert_eq!(rating.by, "user:olga"),
        other => panic!("impact comes from a rating, not {other:?}"),
    }
    let reach = snapshot
        .inputs
        .iter()
        .find(|input| input.factor == "reach")
        .unwrap();
    assert_eq!(reach.raw, 2.0, "two voters");
    let scored = explained.scored.as_ref().unwrap();
    assert_eq!(scored.event_type, "opportunity.scored");
    assert_eq!(scored.entity, entity(proto::EntityKind::Opportunity, "o-1"));
    assert_eq!(explained.evidence_count, 3);
    let newest_first: Vec<_> = explained
        .evidence
        .iter()
        .map(|detail| {
            detail
                .evidence
                .as_ref()
                .unwrap()
                .reference
                .as_ref()
                .unwrap()
                .id
                .as_str()
        })
        .collect();
    assert_eq!(newest_first, ["f-2", "sig-1", "f-1"]);
    let f1 = explained.evidence[2].feedback.as_ref().unwrap();
    assert_eq!(f1.id, "f-1");
    assert_eq!(f1.personal_state, proto::PersonalState::Withheld as i32);
    assert_eq!(
        explained.evidence[2].attached.as_ref().unwrap().event_type,
        "opportunity.evidence_attached"
    );

    // Score history, newest first, a page at a time: the token pins the position.
    let first = prioritization
        .score_history(proto::ScoreHistoryRequest {
            tenant: TENANT.into(),
            read,
            page: page(1, ""),
            id: "o-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.entries.len(), 1);
    assert!(!first.page.as_ref().unwrap().next_page_token.is_empty());
    let all = prioritization
        .score_history(proto::ScoreHistoryRequest {
            tenant: TENANT.into(),
            read,
            id: "o-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(all.entries.len() >= 3, "{}", all.entries.len());
    assert_eq!(all.entries[0], first.entries[0]);
    let second = prioritization
        .score_history(proto::ScoreHistoryRequest {
            tenant: TENANT.into(),
            read: None,
            page: page(1, &first.page.unwrap().next_page_token),
            id: "o-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.entries[0], all.entries[1]);
    assert_eq!(
        second.stamp.unwrap().position,
        first.stamp.unwrap().position
    );
    let positions: Vec<_> = all
        .entries
        .iter()
        .map(|entry| entry.recorded.as_ref().unwrap().position)
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] > pair[1]),
        "{positions:?}"
    );

    let model = prioritization
        .get_scoring_model(proto::GetScoringModelRequest {
            tenant: TENANT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(model.active);
    assert_eq!(model.model.as_ref().unwrap().name, "platform-rice");
    assert_eq!(model.model.unwrap().digest, snapshot.model_digest);
    assert_eq!(model.aging_rules.len(), 2);
    assert!(model.model_names.contains(&"platform-wsjf".to_owned()));

    // Decisions: d-2 superseded d-1 when it was accepted.
    let mut decisions = server.decisions();
    let d1 = decisions
        .get_decision(proto::GetDecisionRequest {
            tenant: TENANT.into(),
            read,
            id: "d-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap();
    assert_eq!(d1.status, proto::DecisionStatus::Superseded as i32);
    assert_eq!(d1.superseded_by, "d-2");
    assert_eq!(
        (d1.proposed_by.as_str(), d1.decided_by.as_str()),
        ("user:tara", "user:dana")
    );
    let content = d1.content.unwrap();
    assert_eq!(content.title, "decline the monorepo split");
    assert_eq!(content.options, ["build", "decline"]);
    assert_eq!(d1.version, 3, "proposed, accepted, superseded");
    let listed = decisions
        .list_decisions(proto::ListDecisionsRequest {
            tenant: TENANT.into(),
            read,
            decider: "user:dana".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.decisions.len(), 2);
    let accepted_only = decisions
        .list_decisions(proto::ListDecisionsRequest {
            tenant: TENANT.into(),
            read,
            status: proto::DecisionStatus::Accepted as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = accepted_only
        .decisions
        .iter()
        .map(|d| d.id.as_str())
        .collect();
    assert_eq!(ids, ["d-2"]);
    let superseded = decisions
        .list_superseded(proto::ListSupersededRequest {
            tenant: TENANT.into(),
            read,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(superseded.supersessions.len(), 1);
    let supersession = &superseded.supersessions[0];
    assert_eq!(supersession.decision.as_ref().unwrap().id, "d-1");
    assert_eq!(supersession.by.as_ref().unwrap().id, "d-2");
    assert!(supersession.superseded_at_micros > 0);

    // The initiative and its milestone.
    let mut initiatives = server.initiatives();
    let i1 = initiatives
        .get_initiative(proto::GetInitiativeRequest {
            tenant: TENANT.into(),
            read,
            id: "i-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .initiative
        .unwrap();
    assert_eq!(i1.status, proto::InitiativeStatus::InProgress as i32);
    let draft = i1.draft.as_ref().unwrap();
    assert_eq!(draft.implements, ["o-1"]);
    assert_eq!(draft.scope, "the main pipelines");
    assert_eq!(i1.milestones.len(), 1);
    let beta = &i1.milestones[0];
    assert_eq!(beta.status, proto::MilestoneStatus::Met as i32);
    assert_eq!(beta.signal_id, "sig-1");
    assert!(beta.closed_at_micros > 0);
    assert_eq!(i1.version, last.stream_version);
    let listed = initiatives
        .list_initiatives(proto::ListInitiativesRequest {
            tenant: TENANT.into(),
            read,
            opportunity_id: "o-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.initiatives.len(), 1);

    // Lineage: what became of the feedback, and what the initiative came from.
    let mut lineage = server.lineage();
    let story = lineage
        .what_happened(proto::WhatHappenedRequest {
            tenant: TENANT.into(),
            read: personal(read),
            feedback_id: "f-2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(story.feedback.as_ref().unwrap().text, "CI is slow again");
    let outcomes: Vec<_> = story
        .opportunities
        .iter()
        .map(|outcome| (outcome.opportunity_id.as_str(), outcome.status))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("o-2", proto::OpportunityStatus::Duplicate as i32),
            ("o-1", proto::OpportunityStatus::New as i32)
        ]
    );
    assert_eq!(story.opportunities[0].canonical_id, "o-1");
    assert!(story.opportunities[1].linked_at_micros > 0);
    let implementing = &story.opportunities[1].initiatives;
    assert_eq!(implementing.len(), 1);
    assert_eq!(
        (implementing[0].milestones_met, implementing[0].milestones),
        (1, 1)
    );
    let declined = lineage
        .downstream(proto::DownstreamRequest {
            tenant: TENANT.into(),
            read,
            entity: entity(proto::EntityKind::Opportunity, "o-3"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        node_ids(&declined.nodes),
        [("d-1".to_owned(), 1), ("d-2".to_owned(), 2)]
    );

    let upstream = lineage
        .upstream(proto::UpstreamRequest {
            tenant: TENANT.into(),
            read,
            entity: entity(proto::EntityKind::Initiative, "i-1"),
            depth: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let reached = node_ids(&upstream.nodes);
    assert_eq!(reached[0], ("o-1".to_owned(), 1));
    let mut second_hop: Vec<_> = reached[1..].iter().map(|(id, _)| id.as_str()).collect();
    second_hop.sort();
    assert_eq!(second_hop, ["f-1", "f-2", "o-2", "sig-1"]);
    let o1_node = &upstream.nodes[0];
    assert_eq!(
        o1_node.via.as_ref().unwrap().relation,
        proto::Relation::Implements as i32
    );
    let summary = o1_node.summary.as_ref().unwrap();
    assert_eq!(summary.title, "faster CI (o-1)");
    assert_eq!(
        summary.status,
        Some(proto::entity_summary::Status::OpportunityStatus(
            proto::OpportunityStatus::New as i32
        ))
    );
    let only_evidence = lineage
        .upstream(proto::UpstreamRequest {
            tenant: TENANT.into(),
            read,
            entity: entity(proto::EntityKind::Opportunity, "o-1"),
            relations: vec![proto::Relation::EvidenceFor as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<_> = node_ids(&only_evidence.nodes)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["f-1", "f-2", "sig-1"], "no duplicate_of hop to o-2");

    let graph = lineage
        .graph(proto::GraphRequest {
            tenant: TENANT.into(),
            read,
            root: entity(proto::EntityKind::Feedback, "f-1"),
            direction: proto::LineageDirection::Downstream as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        node_ids(&graph.nodes),
        [
            ("f-1".to_owned(), 0),
            ("o-1".to_owned(), 1),
            ("i-1".to_owned(), 2),
            ("sig-1".to_owned(), 3)
        ]
    );
    // Every edge between two of the nodes, also the one the walk did not take (sig-1 is
    // evidence for o-1, upstream of it).
    let mut edges: Vec<_> = graph
        .edges
        .iter()
        .map(|edge| {
            (
                edge.from.as_ref().unwrap().id.as_str(),
                edge.relation,
                edge.to.as_ref().unwrap().id.as_str(),
            )
        })
        .collect();
    edges.sort();
    let mut expected = vec![
        ("f-1", proto::Relation::EvidenceFor as i32, "o-1"),
        ("i-1", proto::Relation::Implements as i32, "o-1"),
        ("sig-1", proto::Relation::EvidenceFor as i32, "o-1"),
        ("sig-1", proto::Relation::Verifies as i32, "i-1"),
    ];
    expected.sort();
    assert_eq!(edges, expected);
    assert!(!graph.truncated);
    let capped = lineage
        .graph(proto::GraphRequest {
            tenant: TENANT.into(),
            read,
            root: entity(proto::EntityKind::Feedback, "f-1"),
            direction: proto::LineageDirection::Downstream as i32,
            max_nodes: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capped.nodes.len(), 2);
    assert!(capped.truncated);

    let why = lineage
        .why(proto::WhyRequest {
            tenant: TENANT.into(),
            read,
            entity: entity(proto::EntityKind::Opportunity, "o-3"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let steps: Vec<_> = why
        .steps
        .iter()
        .map(|step| {
            let record = step.record.as_ref().unwrap();
            (record.event_type.as_str(), step.depth)
        })
        .collect();
    assert_eq!(steps[0], ("opportunity.created", 0));
    assert!(steps.contains(&("opportunity.declined", 0)), "{steps:?}");
    let positions: Vec<_> = why
        .steps
        .iter()
        .map(|step| step.record.as_ref().unwrap().position)
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "ledger order"
    );
    let declined_step = why
        .steps
        .iter()
        .find(|step| step.record.as_ref().unwrap().event_type == "opportunity.declined")
        .unwrap();
    assert_eq!(declined_step.lineage_parents[0].relation, "decided_by");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_codes_and_metadata() {
    let server = Server::start(Follow::Now).await;
    let mut prioritization = server.prioritization();
    let mut feedback = server.feedback();
    let created = prioritization
        .create_opportunity(proto::CreateOpportunityRequest {
            meta: meta("user:olga", "create-o-9"),
            id: "o-9".into(),
            draft: opportunity_draft("flaky tests"),
        })
        .await
        .unwrap()
        .into_inner();

    // A retry with the same idempotency key records nothing and answers the first receipt.
    let retried = prioritization
        .create_opportunity(proto::CreateOpportunityRequest {
            meta: meta("user:olga", "create-o-9"),
            id: "o-9".into(),
            draft: opportunity_draft("flaky tests"),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retried.deduplicated);
    assert_eq!(
        (retried.first_position, retried.last_position),
        (created.first_position, created.last_position)
    );
    // The same creation under another key exists already.
    check_refused(
        prioritization
            .create_opportunity(proto::CreateOpportunityRequest {
                meta: meta("user:olga", "create-o-9-again"),
                id: "o-9".into(),
                draft: opportunity_draft("flaky tests"),
            })
            .await,
        Code::AlreadyExists,
        &[(RULE_METADATA, "already_exists")],
    );

    // A transition the state does not allow.
    check_refused(
        prioritization
            .ship(proto::ShipOpportunityRequest {
                meta: meta("user:olga", "ship-o-9"),
                id: "o-9".into(),
            })
            .await,
        Code::FailedPrecondition,
        &[(RULE_METADATA, "transition_not_allowed")],
    );
    // A snooze that ends in the past.
    check_refused(
        prioritization
            .triage(proto::TriageRequest {
                meta: meta("user:olga", "snooze-o-9"),
                id: "o-9".into(),
                outcome: Some(proto::triage_request::Outcome::Snooze(
                    proto::TriageSnooze {
                        until_micros: now_micros() - DAY_MICROS,
                    },
                )),
            })
            .await,
        Code::FailedPrecondition,
        &[(RULE_METADATA, "snooze_date")],
    );
    // A version pinned before the latest write.
    let version = created.stream_version.to_string();
    prioritization
        .vote(proto::VoteRequest {
            meta: meta("user:bob", "vote-o-9"),
            id: "o-9".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let stale = prioritization
        .vote(proto::VoteRequest {
            meta: Some(proto::CommandMeta {
                expected_version: created.stream_version,
                ..meta("user:carl", "vote-o-9-carl").unwrap()
            }),
            id: "o-9".into(),
            ..Default::default()
        })
        .await;
    let status = check_refused(stale, Code::FailedPrecondition, &[]);
    let current: u64 = metadata(&status, CURRENT_VERSION_METADATA)
        .unwrap()
        .parse()
        .unwrap();
    assert!(current > created.stream_version, "{current} vs {version}");

    // Malformed input names its field.
    check_refused(
        feedback
            .submit_feedback(proto::SubmitFeedbackRequest {
                meta: meta("bot:survey", ""),
                id: "not an id".into(),
                text: "hello".into(),
                team: "platform".into(),
                source: proto::FeedbackSource::Chat as i32,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &[(FIELD_METADATA, "id")],
    );
    check_refused(
        feedback
            .submit_feedback(proto::SubmitFeedbackRequest {
                meta: meta("bot:survey", ""),
                id: "f-9".into(),
                text: "hello".into(),
                team: "platform".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &[(FIELD_METADATA, "source")],
    );
    check_refused(
        feedback
            .discard_feedback(proto::DiscardFeedbackRequest {
                meta: meta("user:tara", ""),
                id: "f-404".into(),
                reason: "spam".into(),
            })
            .await,
        Code::NotFound,
        &[(RULE_METADATA, "not_found")],
    );

    // Reads: a missing entity, a position beyond the head, pages and walks over their caps.
    let read = after(&created);
    check_refused(
        prioritization
            .get_opportunity(proto::GetOpportunityRequest {
                tenant: TENANT.into(),
                read,
                id: "o-404".into(),
            })
            .await,
        Code::NotFound,
        &[],
    );
    check_refused(
        server
            .decisions()
            .get_decision(proto::GetDecisionRequest {
                tenant: TENANT.into(),
                read,
                id: "bad id".into(),
            })
            .await,
        Code::InvalidArgument,
        &[(FIELD_METADATA, "id")],
    );
    check_refused(
        prioritization
            .get_opportunity(proto::GetOpportunityRequest {
                tenant: TENANT.into(),
                read: Some(proto::ReadOptions {
                    as_of_position: Some(created.last_position + 1000),
                    ..Default::default()
                }),
                id: "o-9".into(),
            })
            .await,
        Code::OutOfRange,
        &[],
    );
    check_refused(
        feedback
            .list_feedback(proto::ListFeedbackRequest {
                tenant: TENANT.into(),
                page: page(501, ""),
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        &[(FIELD_METADATA, "page.page_size")],
    );
    check_refused(
        server
            .lineage()
            .graph(proto::GraphRequest {
                tenant: TENANT.into(),
                root: entity(proto::EntityKind::Opportunity, "o-9"),
                depth: 17,
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        &[(FIELD_METADATA, "depth")],
    );
    check_refused(
        server
            .lineage()
            .why(proto::WhyRequest {
                tenant: TENANT.into(),
                read,
                entity: entity(proto::EntityKind::Decision, "d-404"),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &[],
    );
    // As of an earlier position, the opportunity did not exist yet.
    check_refused(
        prioritization
            .get_opportunity(proto::GetOpportunityRequest {
                tenant: TENANT.into(),
                read: Some(proto::ReadOptions {
                    as_of_position: Some(created.first_position - 1),
                    ..Default::default()
                }),
                id: "o-9".into(),
            })
            .await,
        Code::NotFound,
        &[],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_waits_for_at_least_its_position_until_its_deadline() {
    let server = Server::start(Follow::Later).await;
    let mut feedback = server.feedback();
    let receipt = feedback
        .submit_feedback(proto::SubmitFeedbackRequest {
            meta: meta("bot:survey", "submit-f-1"),
            id: "f-1".into(),
            text: "hello".into(),
            team: "platform".into(),
            source: proto::FeedbackSource::Chat as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let get = || {
        let mut request = Request::new(proto::GetFeedbackRequest {
            tenant: TENANT.into(),
            read: after(&receipt),
            id: "f-1".into(),
        });
        request.set_timeout(Duration::from_millis(300));
        request
    };
    // The read models do not follow yet: the position is recorded but never applied in time.
    let started = std::time::Instant::now();
    check_refused(
        feedback.get_feedback(get()).await,
        Code::DeadlineExceeded,
        &[],
    );
    assert!(started.elapsed() >= Duration::from_millis(200), "it waited");
    server.follow();
    let item = feedback
        .get_feedback(get())
        .await
        .unwrap()
        .into_inner()
        .feedback
        .unwrap();
    assert_eq!((item.id.as_str(), item.version), ("f-1", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aging_out_sweeps_what_a_rule_holds_for() {
    let server = Server::start(Follow::Now).await;
    let mut prioritization = server.prioritization();
    let long_ago = now_micros() - 200 * DAY_MICROS;
    let mut created = None;
    for (id, occurred_at) in [("o-old", long_ago), ("o-new", 0)] {
        let receipt = prioritization
            .create_opportunity(proto::CreateOpportunityRequest {
                meta: Some(proto::CommandMeta {
                    occurred_at_micros: occurred_at,
                    ..meta("bot:importer", &format!("create-{id}")).unwrap()
                }),
                id: id.into(),
                draft: opportunity_draft(id),
            })
            .await
            .unwrap()
            .into_inner();
        created = Some(receipt);
    }
    // A sweep takes its candidates from the read models as they are: let them see both.
    prioritization
        .get_opportunity(proto::GetOpportunityRequest {
            tenant: TENANT.into(),
            read: after(created.as_ref().unwrap()),
            id: "o-new".into(),
        })
        .await
        .unwrap();
    let sweep = |key: &str, page: Option<proto::PageRequest>| {
        let request = proto::AgeOutRequest {
            meta: meta("bot:sweeper", key),
            team: "platform".into(),
            page,
        };
        let mut client = server.prioritization();
        async move { client.age_out(request).await.unwrap().into_inner() }
    };
    // A page of one candidate at a time: the token pins the candidates of the first page.
    let first = sweep("sweep-1", page(1, "")).await;
    assert_eq!(first.examined, 1);
    let token = first.page.as_ref().unwrap().next_page_token.clone();
    assert!(!token.is_empty());
    let second = sweep("sweep-1", page(1, &token)).await;
    assert_eq!(second.examined, 1);
    assert_eq!(second.page.as_ref().unwrap().next_page_token, "");
    let aged: Vec<_> = first.aged_out.iter().chain(&second.aged_out).collect();
    assert_eq!(aged.len(), 1, "{aged:?}");
    assert_eq!(aged[0].opportunity_id, "o-old");
    assert_eq!(
        (aged[0].rule.as_str(), aged[0].rule_version),
        ("stale-low-score", 1)
    );
    assert!(!aged[0].reason.is_empty());
    let receipt = aged[0].receipt.clone().unwrap();
    assert_eq!(receipt.event_types, ["opportunity.aged_out"]);

    let read = after(&receipt);
    let old = prioritization
        .get_opportunity(proto::GetOpportunityRequest {
            tenant: TENANT.into(),
            read,
            id: "o-old".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .opportunity
        .unwrap();
    assert_eq!(old.status, proto::OpportunityStatus::AgedOut as i32);
    let entry = old.aged_out.unwrap();
    assert_eq!(entry.rule, "stale-low-score");
    assert_eq!(entry.status_before, proto::OpportunityStatus::New as i32);
    assert_eq!(entry.recorded.unwrap().actor, "bot:sweeper");
    let listed = prioritization
        .list_aged_out(proto::ListAgedOutRequest {
            tenant: TENANT.into(),
            read,
            rule: "stale-low-score".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let listed = &listed.entries[0];
    assert_eq!(listed.opportunity_id, "o-old");
    assert_eq!(
        (listed.status_before, listed.status),
        (
            proto::OpportunityStatus::New as i32,
            proto::OpportunityStatus::AgedOut as i32
        )
    );
    let none = prioritization
        .list_aged_out(proto::ListAgedOutRequest {
            tenant: TENANT.into(),
            read,
            rule: "long-snooze".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.entries.is_empty());

    // Swept again: o-old is no longer a candidate, o-new is too recent.
    let again = sweep("sweep-2", None).await;
    assert_eq!(again.examined, 1);
    assert!(again.aged_out.is_empty());
}
