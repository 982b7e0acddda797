//! The feedback-loop commands over the in-memory store: idempotent retries, the two-step
//! commands (evidence, duplicates, supersession), automatic scoring and aging.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use cairn_domain::decision::{DecisionCommand, DecisionContent, DecisionKind, DecisionStatus};
use cairn_domain::feedback::{FeedbackCommand, FeedbackContent, FeedbackSource, FeedbackStatus};
use cairn_domain::opportunity::{
    Opportunity, OpportunityCommand, OpportunityDraft, OpportunityEvent, OpportunityStatus, Triage,
};
use cairn_domain::signal::{Direction, Measurement, Observation, SignalCommand};
use cairn_domain::{
    EntityId, EntityKind, EntityRef, Event, PrincipalId, Rule, Team, Time, Visibility,
};
use cairn_ledger::{Position, StreamVersion, TenantId};
use cairn_service::feedback_loop::derive_event_id;
use cairn_service::{
    CommandMeta, FeedbackLoop, Ledger, ScoringPolicy, ServerIdentity, ServiceError,
};
use cairn_store::{EventStore, MemoryStore};

const DAY: i64 = cairn_domain::DAY_MICROS;

struct World {
    service: FeedbackLoop<MemoryStore>,
    store: Arc<MemoryStore>,
    clock: Arc<AtomicI64>,
}

fn world() -> World {
    let store = MemoryStore::new();
    let ledger = Arc::new(Ledger::new(
        store.clone(),
        Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32])),
    ));
    let clock = Arc::new(AtomicI64::new(1_700_000_000_000_000));
    let reader = clock.clone();
    let service = FeedbackLoop::new(ledger, Arc::new(ScoringPolicy::built_in()))
        .with_clock(Arc::new(move || Time(reader.load(Ordering::SeqCst))));
    World {
        service,
        store,
        clock,
    }
}

fn id(text: &str) -> EntityId {
    EntityId::new(text).unwrap()
}

fn meta(actor: &str) -> CommandMeta {
    CommandMeta::new(
        TenantId::new("acme").unwrap(),
        PrincipalId::new(actor).unwrap(),
    )
}

fn submit(feedback: &str, text: &str) -> FeedbackCommand {
    FeedbackCommand::Submit {
        id: id(feedback),
        content: FeedbackContent {
            text: text.into(),
            submitter: Some(PrincipalId::new("user:ada").unwrap()),
        },
        team: Team::new("platform").unwrap(),
        source: FeedbackSource::Survey,
        tags: vec!["ci".into()],
        outcome_tags: vec!["developer-time".into()],
        visibility: Visibility::Open,
    }
}

fn create(opportunity: &str, title: &str) -> OpportunityCommand {
    OpportunityCommand::Create {
        id: id(opportunity),
        draft: OpportunityDraft {
            title: title.into(),
            problem: "builds are slow".into(),
            owner: PrincipalId::new("user:lin").unwrap(),
            team: Team::new("platform").unwrap(),
            size: None,
            outcome_tags: vec![],
            visibility: Visibility::Open,
        },
    }
}

#[tokio::test]
async fn a_retried_command_records_once_and_answers_with_the_first_receipt() {
    let w = world();
    let keyed = meta("user:ada").with_key("submit-1");
    let first = w
        .service
        .feedback(&keyed, &id("f1"), submit("f1", "the build is slow"))
        .await
        .unwrap();
    assert!(!first.deduplicated);
    assert_eq!(first.event_types(), vec!["feedback.received"]);
    // Time moves on, so deciding again would produce a different event: the retry must be
    // recognised by its key, not by content.
    w.clock.fetch_add(5_000_000, Ordering::SeqCst);
    let retry = w
        .service
        .feedback(&keyed, &id("f1"), submit("f1", "the build is slow"))
        .await
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.first_position, first.first_position);
    assert_eq!(retry.event_types(), first.event_types());
    assert_eq!(retry.last_position, first.last_position);
    assert_eq!(w.store.head().await.unwrap().position.0, 1);

    // Without a key, a second submit is refused by the domain: it exists.
    let error = w
        .service
        .feedback(&meta("user:ada"), &id("f1"), submit("f1", "again"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ServiceError::Refused(e) if e.rule == Rule::AlreadyExists),
        "{error}"
    );
}

#[tokio::test]
async fn a_pinned_version_that_moved_is_a_conflict() {
    let w = world();
    w.service
        .opportunity(&meta("user:lin"), &id("o1"), create("o1", "faster builds"))
        .await
        .unwrap();
    let mut pinned = meta("user:lin");
    pinned.expected_version = Some(StreamVersion(7));
    let error = w
        .service
        .opportunity(&pinned, &id("o1"), OpportunityCommand::StartReview)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ServiceError::Store(cairn_store::StoreError::WrongExpectedVersion { .. })
        ),
        "{error}"
    );
}

#[tokio::test]
async fn evidence_links_feedback_copies_signals_and_rescores() {
    let w = world();
    let m = meta("user:lin");
    w.service
        .feedback(&m, &id("f1"), submit("f1", "flaky tests"))
        .await
        .unwrap();
    let created = w
        .service
        .opportunity(&m, &id("o1"), create("o1", "fix flaky tests"))
        .await
        .unwrap();
    assert_eq!(
        created.event_types(),
        vec!["opportunity.created", "opportunity.scored"],
        "a scoring model is in force, so creation records the first score"
    );
    w.service
        .signal(
            &m,
            &id("s1"),
            SignalCommand::Record {
                id: id("s1"),
                observation: Observation {
                    metric: "defect_rate".into(),
                    unit: "ratio".into(),
                    direction: Direction::LowerIsBetter,
                    service: Some("ci".into()),
                    team: None,
                    window_seconds: 86_400,
                    measurement: Measurement {
                        value: Some(0.05),
                        percentiles: None,
                    },
                    source: "prometheus".into(),
                    observed_at: Time(1),
                },
            },
        )
        .await
        .unwrap();
    let feedback = EntityRef::new(EntityKind::Feedback, id("f1"));
    w.service
        .attach_evidence(
            &m.clone().with_key("attach-f1"),
            &id("o1"),
            feedback.clone(),
        )
        .await
        .unwrap();
    let signal = EntityRef::new(EntityKind::Signal, id("s1"));
    w.service
        .attach_evidence(&m, &id("o1"), signal.clone())
        .await
        .unwrap();

    let feedback_state = w
        .service
        .state::<cairn_domain::feedback::Feedback>(&m.tenant, &id("f1"))
        .await
        .unwrap();
    assert_eq!(feedback_state.status, Some(FeedbackStatus::Processed));
    let opportunity = w
        .service
        .state::<Opportunity>(&m.tenant, &id("o1"))
        .await
        .unwrap();
    assert_eq!(opportunity.evidence.len(), 2);
    assert_eq!(
        opportunity.evidence[1]
            .observation
            .as_ref()
            .unwrap()
            .measurement
            .value,
        Some(0.05)
    );

    // The envelope names the lineage parent: the feedback item's stream.
    let records = w
        .store
        .read_all(cairn_ledger::Position(1), 100)
        .await
        .unwrap();
    let attached = records
        .iter()
        .find(|r| r.envelope.event_type == "opportunity.evidence_attached")
        .unwrap();
    assert_eq!(attached.envelope.lineage.len(), 1);
    assert_eq!(attached.envelope.lineage[0].relation, "evidence_for");
    assert_eq!(
        attached.envelope.lineage[0].target.aggregate_type,
        "feedback"
    );

    // Attaching again is refused, naming the rule; nothing is recorded.
    let head = w.store.head().await.unwrap().position;
    let error = w
        .service
        .attach_evidence(&m, &id("o1"), feedback)
        .await
        .unwrap_err();
    assert!(matches!(&error, ServiceError::Refused(e) if e.rule == Rule::AlreadyLinked));
    assert_eq!(w.store.head().await.unwrap().position, head);
}

#[tokio::test]
async fn a_duplicate_moves_its_evidence_and_votes_and_a_retry_finishes_the_move() {
    let w = world();
    let m = meta("user:lin");
    for (opp, title) in [("o1", "canonical"), ("o2", "dupe")] {
        w.service
            .opportunity(&m, &id(opp), create(opp, title))
            .await
            .unwrap();
    }
    w.service
        .feedback(&m, &id("f1"), submit("f1", "x"))
        .await
        .unwrap();
    w.service
        .attach_evidence(
            &m,
            &id("o2"),
            EntityRef::new(EntityKind::Feedback, id("f1")),
        )
        .await
        .unwrap();
    for voter in ["user:a", "user:b"] {
        w.service
            .opportunity(
                &m,
                &id("o2"),
                OpportunityCommand::Vote {
                    principal: PrincipalId::new(voter).unwrap(),
                    weight: 2,
                    segment: None,
                },
            )
            .await
            .unwrap();
    }
    let keyed = m.clone().with_key("dup-o2");
    let receipt = w
        .service
        .opportunity(
            &keyed,
            &id("o2"),
            OpportunityCommand::Triage(Triage::Duplicate {
                canonical: id("o1"),
            }),
        )
        .await
        .unwrap();
    assert_eq!(receipt.event_types()[0], "opportunity.marked_duplicate");
    let canonical = w
        .service
        .state::<Opportunity>(&m.tenant, &id("o1"))
        .await
        .unwrap();
    assert_eq!(canonical.evidence.len(), 1);
    assert_eq!(canonical.votes.len(), 2);

    // The retry records nothing new.
    let head = w.store.head().await.unwrap().position;
    let retry = w
        .service
        .opportunity(
            &keyed,
            &id("o2"),
            OpportunityCommand::Triage(Triage::Duplicate {
                canonical: id("o1"),
            }),
        )
        .await
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(w.store.head().await.unwrap().position, head);

    // Votes on the duplicate are refused, naming the rule.
    let error = w
        .service
        .opportunity(
            &m,
            &id("o2"),
            OpportunityCommand::Vote {
                principal: PrincipalId::new("user:c").unwrap(),
                weight: 1,
                segment: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(&error, ServiceError::Refused(e) if e.rule == Rule::DuplicateTakesNothing));

    // A duplicate of a duplicate is refused.
    w.service
        .opportunity(&m, &id("o3"), create("o3", "third"))
        .await
        .unwrap();
    let error = w
        .service
        .opportunity(
            &m,
            &id("o3"),
            OpportunityCommand::Triage(Triage::Duplicate {
                canonical: id("o2"),
            }),
        )
        .await
        .unwrap_err();
    assert!(matches!(&error, ServiceError::Refused(e) if e.rule == Rule::InvalidCanonical));
}

#[tokio::test]
async fn an_interrupted_duplicate_move_is_finished_by_the_retry() {
    let w = world();
    let m = meta("user:lin");
    for opp in ["o1", "o2"] {
        w.service
            .opportunity(&m, &id(opp), create(opp, opp))
            .await
            .unwrap();
    }
    w.service
        .opportunity(
            &m,
            &id("o2"),
            OpportunityCommand::Vote {
                principal: PrincipalId::new("user:a").unwrap(),
                weight: 3,
                segment: None,
            },
        )
        .await
        .unwrap();
    // Step one only, as if the server stopped before step two.
    let keyed = m.clone().with_key("dup");
    w.service
        .execute::<Opportunity>(
            &keyed,
            &id("o2"),
            OpportunityCommand::Triage(Triage::Duplicate {
                canonical: id("o1"),
            }),
        )
        .await
        .unwrap();
    assert!(
        w.service
            .state::<Opportunity>(&m.tenant, &id("o1"))
            .await
            .unwrap()
            .votes
            .is_empty()
    );
    w.service
        .opportunity(
            &keyed,
            &id("o2"),
            OpportunityCommand::Triage(Triage::Duplicate {
                canonical: id("o1"),
            }),
        )
        .await
        .unwrap();
    let canonical = w
        .service
        .state::<Opportunity>(&m.tenant, &id("o1"))
        .await
        .unwrap();
    assert_eq!(canonical.votes.len(), 1);
    let absorbed = w
        .store
        .read_all(cairn_ledger::Position(1), 100)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.envelope.event_type == "opportunity.duplicate_absorbed")
        .count();
    assert_eq!(absorbed, 1);
}

fn decision(decision: &str, title: &str, supersedes: Option<&str>) -> DecisionCommand {
    DecisionCommand::Propose {
        id: id(decision),
        content: DecisionContent {
            kind: DecisionKind::Architecture,
            title: title.into(),
            team: Team::new("platform").unwrap(),
            context: "context".into(),
            drivers: vec!["cost".into()],
            options: vec!["a".into(), "b".into()],
            outcome: "a".into(),
            consequences: vec![],
            deciders: vec![PrincipalId::new("user:cto").unwrap()],
            consulted: vec![],
            informed: vec![],
            subjects: vec![],
            supersedes: supersedes.map(id),
            visibility: Visibility::Open,
        },
    }
}

#[tokio::test]
async fn accepting_a_superseding_decision_supersedes_the_old_one() {
    let w = world();
    let cto = meta("user:cto");
    w.service
        .decision(&cto, &id("d1"), decision("d1", "use x", None))
        .await
        .unwrap();
    w.service
        .decision(&cto, &id("d1"), DecisionCommand::Accept)
        .await
        .unwrap();
    w.service
        .decision(&cto, &id("d2"), decision("d2", "use y", Some("d1")))
        .await
        .unwrap();
    // Only a decider may accept.
    let error = w
        .service
        .decision(&meta("user:intern"), &id("d2"), DecisionCommand::Accept)
        .await
        .unwrap_err();
    assert!(matches!(&error, ServiceError::Refused(e) if e.rule == Rule::NotADecider));
    w.service
        .decision(
            &cto.clone().with_key("accept-d2"),
            &id("d2"),
            DecisionCommand::Accept,
        )
        .await
        .unwrap();
    let old = w
        .service
        .state::<cairn_domain::decision::Decision>(&cto.tenant, &id("d1"))
        .await
        .unwrap();
    assert_eq!(
        old.status,
        Some(DecisionStatus::Superseded { by: id("d2") })
    );
    // Content is immutable once accepted.
    let error = w
        .service
        .decision(
            &cto,
            &id("d2"),
            match decision("d2", "changed", Some("d1")) {
                DecisionCommand::Propose { content, .. } => DecisionCommand::Revise(content),
                _ => unreachable!(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(&error, ServiceError::Refused(e) if e.rule == Rule::ContentImmutable));
}

#[tokio::test]
async fn the_aging_sweep_ages_out_idle_low_scores_and_new_evidence_reopens() {
    let w = world();
    let m = meta("user:lin");
    w.service
        .opportunity(&m, &id("o1"), create("o1", "idle"))
        .await
        .unwrap();
    w.service
        .opportunity(&m, &id("o2"), create("o2", "busy"))
        .await
        .unwrap();
    w.clock.fetch_add(100 * DAY, Ordering::SeqCst);
    w.service
        .feedback(&m, &id("f1"), submit("f1", "still hurts"))
        .await
        .unwrap();
    w.service
        .attach_evidence(
            &m,
            &id("o2"),
            EntityRef::new(EntityKind::Feedback, id("f1")),
        )
        .await
        .unwrap();
    let aged = w
        .service
        .sweep_aging(&m.clone().with_key("sweep-1"), &[id("o1"), id("o2")])
        .await
        .unwrap();
    assert_eq!(aged.len(), 1);
    assert_eq!(aged[0].0.entity.id, id("o1"));
    assert_eq!(aged[0].1.name, "stale-low-score");
    let Event::Opportunity(OpportunityEvent::AgedOut { rule, reason, .. }) = &aged[0].0.events[0]
    else {
        panic!("expected aged_out, got {:?}", aged[0].0.events);
    };
    assert_eq!(rule, "stale-low-score");
    assert!(reason.contains("100 days"), "{reason}");

    w.service
        .feedback(&m, &id("f2"), submit("f2", "came back"))
        .await
        .unwrap();
    w.service
        .attach_evidence(
            &m,
            &id("o1"),
            EntityRef::new(EntityKind::Feedback, id("f2")),
        )
        .await
        .unwrap();
    let reopened = w
        .service
        .state::<Opportunity>(&m.tenant, &id("o1"))
        .await
        .unwrap();
    assert_eq!(reopened.status, Some(OpportunityStatus::New));
}

#[test]
fn derived_event_ids_differ_by_stream_key_and_index() {
    let tenant = TenantId::new("acme").unwrap();
    let a = cairn_ledger::StreamId::new(tenant.clone(), "opportunity", "o1").unwrap();
    let b = cairn_ledger::StreamId::new(tenant, "opportunity", "o2").unwrap();
    let ids = [
        derive_event_id(&a, "k", 0),
        derive_event_id(&a, "k", 1),
        derive_event_id(&a, "j", 0),
        derive_event_id(&b, "k", 0),
    ];
    for (i, x) in ids.iter().enumerate() {
        for y in &ids[i + 1..] {
            assert_ne!(x, y);
        }
    }
    assert_eq!(derive_event_id(&a, "k", 0), ids[0]);
}

#[tokio::test]
async fn the_demo_data_set_runs_without_a_refusal_and_a_rerun_records_nothing() {
    use cairn_service::dataset::{self, Action, Scale};
    let w = world();
    let now = Time(w.clock.load(Ordering::SeqCst));
    let steps = dataset::generate(7, Scale::DEMO, now);
    assert!(steps.len() > 1000, "{} steps", steps.len());
    let opportunities = |tenant: &TenantId| -> Vec<EntityId> {
        steps
            .iter()
            .filter(|s| &s.tenant == tenant)
            .filter_map(|s| match &s.action {
                Action::Opportunity(id, OpportunityCommand::Create { .. }) => Some(id.clone()),
                _ => None,
            })
            .collect()
    };
    let mut aged = 0;
    for step in &steps {
        let receipts = w
            .service
            .run_step(step, &opportunities(&step.tenant))
            .await
            .unwrap_or_else(|e| panic!("step {} ({:?}) refused: {e}", step.key, step.action));
        if matches!(step.action, Action::SweepAging) {
            aged += receipts.len();
        }
    }
    assert!(aged > 0, "some idle opportunities age out");
    let head = w.store.head().await.unwrap().position;
    assert!(head.0 > 3000, "{head}");
    // Every step again, as retries: nothing new is recorded.
    for step in steps
        .iter()
        .filter(|s| !matches!(s.action, Action::SweepAging))
    {
        let receipts = w.service.run_step(step, &[]).await.unwrap();
        assert!(
            receipts
                .iter()
                .all(|r| r.deduplicated || r.events.is_empty()),
            "{}",
            step.key
        );
    }
    assert_eq!(w.store.head().await.unwrap().position, head);
}

#[tokio::test]
async fn history_names_every_event_and_feedback_content_opens_only_when_asked() {
    use cairn_domain::feedback::Personal;
    use cairn_service::history;
    let w = world();
    let m = meta("user:ada");
    let received = w
        .service
        .feedback(&m, &id("f1"), submit("f1", "the build is slow"))
        .await
        .unwrap();
    w.service
        .feedback(
            &m,
            &id("f1"),
            FeedbackCommand::Discard {
                reason: "dup".into(),
            },
        )
        .await
        .unwrap();
    let entity = EntityRef::new(EntityKind::Feedback, id("f1"));
    let all = history::history(
        &*w.store,
        &m.tenant,
        &entity,
        cairn_ledger::Position(u64::MAX),
    )
    .await
    .unwrap();
    assert_eq!(
        all.iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        vec!["feedback.received", "feedback.discarded"]
    );
    assert!(all.iter().all(|e| e.actor == "user:ada"));
    let before = history::history(&*w.store, &m.tenant, &entity, received.last_position)
        .await
        .unwrap();
    assert_eq!(
        before.len(),
        1,
        "as of the first position only the first event"
    );

    let ledger = w.service.ledger();
    let open = history::feedback_content(ledger, received.first_position, true)
        .await
        .unwrap();
    let Personal::Present(content) = open else {
        panic!("expected the content, got {open:?}")
    };
    assert_eq!(content.text, "the build is slow");
    assert_eq!(
        history::feedback_content(ledger, received.first_position, false)
            .await
            .unwrap(),
        Personal::Withheld
    );
    let record = &w.store.read_all(received.first_position, 1).await.unwrap()[0];
    use cairn_store::KeyStore;
    w.store
        .destroy_key(record.envelope.key_id.expect("sealed"))
        .await
        .unwrap();
    assert_eq!(
        history::feedback_content(ledger, received.first_position, true)
            .await
            .unwrap(),
        Personal::Erased
    );
}

#[tokio::test]
async fn a_long_idempotency_key_still_finishes_every_step() {
    let w = world();
    let m = meta("user:lin");
    for opp in ["o1", "o2"] {
        w.service
            .opportunity(&m, &id(opp), create(opp, opp))
            .await
            .unwrap();
    }
    let long = m
        .clone()
        .with_key("k".repeat(cairn_service::feedback_loop::IDEMPOTENCY_KEY_BYTES_MAX));
    w.service
        .opportunity(
            &long,
            &id("o2"),
            OpportunityCommand::Triage(Triage::Duplicate {
                canonical: id("o1"),
            }),
        )
        .await
        .unwrap();
    let canonical = w
        .service
        .state::<Opportunity>(&m.tenant, &id("o1"))
        .await
        .unwrap();
    assert_eq!(canonical.status, Some(OpportunityStatus::New));
    let absorbed = w
        .store
        .read_all(cairn_ledger::Position(1), 100)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.envelope.event_type == "opportunity.duplicate_absorbed")
        .count();
    assert_eq!(absorbed, 1);
    let too_long = m
        .clone()
        .with_key("k".repeat(cairn_service::feedback_loop::IDEMPOTENCY_KEY_BYTES_MAX + 1));
    let error = w
        .service
        .opportunity(&too_long, &id("o1"), OpportunityCommand::StartReview)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ServiceError::InvalidArgument {
                field: "idempotency_key",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_triage_must_name_an_accepted_decision() {
    let w = world();
    let m = meta("user:cto");
    w.service
        .opportunity(&m, &id("o1"), create("o1", "x"))
        .await
        .unwrap();
    let decline = |decision: &str| {
        OpportunityCommand::Triage(Triage::Decline {
            reason: "not now".into(),
            decision: id(decision),
        })
    };
    let error = w
        .service
        .opportunity(&m, &id("o1"), decline("d1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ServiceError::Refused(e) if e.rule == Rule::DecisionNotInForce),
        "{error}"
    );
    w.service
        .decision(&m, &id("d1"), decision("d1", "decline o1", None))
        .await
        .unwrap();
    let error = w
        .service
        .opportunity(&m, &id("o1"), decline("d1"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("proposed"), "{error}");
    w.service
        .decision(&m, &id("d1"), DecisionCommand::Accept)
        .await
        .unwrap();
    w.service
        .opportunity(&m, &id("o1"), decline("d1"))
        .await
        .unwrap();
    let state = w
        .service
        .state::<Opportunity>(&m.tenant, &id("o1"))
        .await
        .unwrap();
    assert_eq!(state.status, Some(OpportunityStatus::Declined));
}

#[tokio::test]
async fn a_sampled_metric_records_one_in_its_rate_with_the_rate_in_the_event() {
    let w = world();
    let m = meta("service:prometheus");
    let observation = |value: f64| Observation {
        metric: "http_request_latency_ms".into(),
        unit: "ms".into(),
        direction: Direction::LowerIsBetter,
        service: Some("api".into()),
        team: None,
        window_seconds: 60,
        measurement: Measurement {
            value: Some(value),
            percentiles: None,
        },
        source: "prometheus".into(),
        observed_at: Time(1),
    };
    let rate = ScoringPolicy::built_in()
        .sample_rate("http_request_latency_ms")
        .expect("the shipped policy samples it");
    let (mut kept, mut dropped) = (0u32, 0u32);
    for n in 0..2000 {
        let signal = id(&format!("req-{n}"));
        let command = SignalCommand::Record {
            id: signal.clone(),
            observation: observation(f64::from(n)),
        };
        // With an idempotency key, so that a retry of a kept one is answered as a retry.
        let keyed = m.clone().with_key(format!("observe-{n}"));
        let receipt = w
            .service
            .signal(&keyed, &signal, command.clone())
            .await
            .unwrap();
        // A retry is decided the same way.
        let again = w.service.signal(&keyed, &signal, command).await.unwrap();
        assert_eq!(receipt.sampled_out, again.sampled_out);
        if receipt.sampled_out {
            dropped += 1;
            assert!(receipt.events.is_empty() && receipt.first_position == Position::ZERO);
        } else {
            kept += 1;
            assert!(again.deduplicated);
            assert_eq!(receipt.event_types(), ["signal.sampled"]);
            let Event::Signal(event) = &receipt.events[0] else {
                panic!("{:?}", receipt.events)
            };
            assert_eq!(event.sample_rate(), rate);
        }
    }
    // About one in `rate`: a hash, so not exactly, but never all or none.
    assert!(kept > 0 && dropped > 0);
    assert!(
        (1..=80).contains(&kept),
        "{kept} of 2000 kept at a rate of {rate}"
    );
    assert_eq!(
        w.store.head().await.unwrap().position.0,
        u64::from(kept),
        "only the kept observations are recorded"
    );
    // Unsampled metrics are recorded as before; a caller cannot ask for sampling itself.
    let plain = w
        .service
        .signal(
            &m,
            &id("defects"),
            SignalCommand::Record {
                id: id("defects"),
                observation: Observation {
                    metric: "defect_rate".into(),
                    ..observation(0.1)
                },
            },
        )
        .await
        .unwrap();
    assert_eq!(plain.event_types(), ["signal.observed"]);
    let refused = w
        .service
        .signal(
            &m,
            &id("x"),
            SignalCommand::RecordSampled {
                id: id("x"),
                observation: observation(1.0),
                sample_rate: 10,
            },
        )
        .await;
    assert!(matches!(
        refused,
        Err(cairn_service::ServiceError::InvalidArgument { .. })
    ));
}
