use std::collections::BTreeMap;
use std::fmt::Debug;

use cairn_domain::opportunity::VoteRecord;
use cairn_domain::scoring::ScoreInputs;
use cairn_ledger::{DataClass, ENVELOPE_FORMAT_V1, Envelope, EventId, Hash, StreamId, Timestamp};
use cairn_service::ScoringPolicy;
use tonic::Code;

use super::*;

const TIME: i64 = 1_750_000_000_000_000;

fn meta() -> Option<proto::CommandMeta> {
    Some(proto::CommandMeta {
        tenant: "acme".into(),
        idempotency_key: "key-1".into(),
        expected_version: 0,
        actor: "user:ana".into(),
        occurred_at_micros: 0,
        correlation_id: Vec::new(),
    })
}

fn id(text: &str) -> EntityId {
    EntityId::new(text).unwrap()
}

fn who(text: &str) -> PrincipalId {
    PrincipalId::new(text).unwrap()
}

fn team_named(text: &str) -> Team {
    Team::new(text).unwrap()
}

fn metadata<'a>(status: &'a Status, key: &str) -> Option<&'a str> {
    status
        .metadata()
        .get(key)
        .and_then(|value| value.to_str().ok())
}

/// The call is refused with `code`, naming `field`.
#[track_caller]
fn check_refused<T: Debug>(result: Result<T, Status>, code: Code, field: &str) {
    let status = result.expect_err(&format!("{field}: accepted"));
    assert_eq!(status.code(), code, "{field}: {status:?}");
    assert_eq!(
        metadata(&status, FIELD_METADATA),
        Some(field),
        "{field}: {status:?}"
    );
}

fn decision_content() -> proto::DecisionContent {
    proto::DecisionContent {
        kind: proto::DecisionKind::Architecture as i32,
        title: "Adopt a build cache".into(),
        team: "platform".into(),
        context: "builds take over 20 minutes at p95".into(),
        drivers: vec!["developer time".into()],
        options: vec!["remote cache".into(), "bigger runners".into()],
        outcome: "remote cache".into(),
        consequences: vec!["a cache service to run".into()],
        deciders: vec!["user:cto".into(), "user:lead".into()],
        consulted: vec!["user:sre".into()],
        informed: vec!["group:eng".into()],
        subjects: vec![proto::EntityRef {
            kind: proto::EntityKind::Opportunity as i32,
            id: "opp-1".into(),
        }],
        supersedes: "dec-0".into(),
        visibility: proto::Visibility::Team as i32,
    }
}

fn opportunity_draft() -> proto::OpportunityDraft {
    proto::OpportunityDraft {
        title: "Speed up CI builds".into(),
        problem: "builds take over 20 minutes at p95".into(),
        owner: "user:owner-1".into(),
        team: "platform".into(),
        size: proto::Size::M as i32,
        outcome_tags: vec!["developer-time".into()],
        visibility: proto::Visibility::Open as i32,
    }
}

fn initiative_draft() -> proto::InitiativeDraft {
    proto::InitiativeDraft {
        title: "Remote build cache".into(),
        goal: "p95 build under 8 minutes".into(),
        owners: vec!["user:owner-1".into()],
        team: "platform".into(),
        target: "build_latency_ms p95 < 480000".into(),
        scope: "all services on the monorepo".into(),
        start_micros: TIME,
        target_date_micros: TIME + 90 * cairn_domain::DAY_MICROS,
        implements: vec!["opp-1".into(), "opp-2".into()],
        outcome_tags: vec!["developer-time".into()],
        visibility: proto::Visibility::Restricted as i32,
    }
}

fn observation() -> proto::Observation {
    proto::Observation {
        metric: "build_latency_ms".into(),
        unit: "ms".into(),
        direction: proto::MetricDirection::LowerIsBetter as i32,
        service: "ci".into(),
        team: "platform".into(),
        window_seconds: 86_400,
        value: Some(1_200_000.0),
        percentiles: Some(proto::Percentiles {
            p50: 600_000.0,
            p95: 1_200_000.0,
            p99: 1_500_000.0,
        }),
        source: "prometheus".into(),
        observed_at_micros: TIME,
    }
}

#[test]
fn command_meta_maps_empty_fields_to_none() {
    let converted = command_meta_from_proto(meta()).unwrap();
    assert_eq!(converted.tenant.as_str(), "acme");
    assert_eq!(converted.actor, who("user:ana"));
    assert_eq!(converted.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(converted.expected_version, None);
    assert_eq!(converted.occurred_at, None);
    assert_eq!(converted.correlation_id, None);

    let converted = command_meta_from_proto(Some(proto::CommandMeta {
        idempotency_key: String::new(),
        expected_version: 7,
        occurred_at_micros: TIME,
        correlation_id: vec![3; 16],
        ..meta().unwrap()
    }))
    .unwrap();
    assert_eq!(converted.idempotency_key, None);
    assert_eq!(converted.expected_version, Some(StreamVersion(7)));
    assert_eq!(converted.occurred_at, Some(Time(TIME)));
    assert_eq!(converted.correlation_id, Some(EventId([3; 16])));
}

#[test]
fn feedback_and_signal_requests_convert_to_their_commands() {
    let submitted = submit_feedback(proto::SubmitFeedbackRequest {
        meta: meta(),
        id: "fb-1".into(),
        text: "builds are slow".into(),
        submitter: "user:bo".into(),
        team: "platform".into(),
        source: proto::FeedbackSource::Survey as i32,
        tags: vec!["ci".into()],
        outcome_tags: vec!["developer-time".into()],
        visibility: proto::Visibility::Unspecified as i32,
    })
    .unwrap();
    assert_eq!(submitted.id, id("fb-1"));
    assert_eq!(submitted.meta.tenant.as_str(), "acme");
    assert_eq!(
        submitted.command,
        FeedbackCommand::Submit {
            id: id("fb-1"),
            content: FeedbackContent {
                text: "builds are slow".into(),
                submitter: Some(who("user:bo")),
            },
            team: team_named("platform"),
            source: FeedbackSource::Survey,
            tags: vec!["ci".into()],
            outcome_tags: vec!["developer-time".into()],
            visibility: Visibility::Open,
        }
    );

    let anonymous = submit_feedback(proto::SubmitFeedbackRequest {
        meta: meta(),
        id: "fb-2".into(),
        text: "please fix".into(),
        team: "platform".into(),
        source: proto::FeedbackSource::Api as i32,
        ..Default::default()
    })
    .unwrap();
    let FeedbackCommand::Submit { content, .. } = anonymous.command else {
        panic!("not a submit: {:?}", anonymous.command);
    };
    assert_eq!(content.submitter, None);

    let linked = link_feedback(proto::LinkFeedbackRequest {
        meta: meta(),
        id: "opp-1".into(),
        evidence: Some(proto::EntityRef {
            kind: proto::EntityKind::Signal as i32,
            id: "sig-1".into(),
        }),
    })
    .unwrap();
    assert_eq!(linked.id, id("opp-1"));
    assert_eq!(
        linked.command,
        EntityRef::new(EntityKind::Signal, id("sig-1"))
    );

    let discarded = discard_feedback(proto::DiscardFeedbackRequest {
        meta: meta(),
        id: "fb-1".into(),
        reason: "spam".into(),
    })
    .unwrap();
    assert_eq!(
        discarded.command,
        FeedbackCommand::Discard {
            reason: "spam".into()
        }
    );

    let recorded = record_signal(proto::RecordSignalRequest {
        meta: meta(),
        id: "sig-1".into(),
        observation: Some(observation()),
    })
    .unwrap();
    let SignalCommand::Record {
        id: named,
        observation: observed,
    } = recorded.command
    else {
        panic!("a client's signal is a plain record: sampling is the server's")
    };
    assert_eq!(named, id("sig-1"));
    assert_eq!(observed.direction, Direction::LowerIsBetter);
    assert_eq!(observed.team, Some(team_named("platform")));
    assert_eq!(observed.service.as_deref(), Some("ci"));
    assert_eq!(observed.observed_at, Time(TIME));
}

#[test]
fn decision_requests_convert_to_their_commands() {
    let proposed = propose_decision(proto::ProposeDecisionRequest {
        meta: meta(),
        id: "dec-1".into(),
        content: Some(decision_content()),
    })
    .unwrap();
    let DecisionCommand::Propose { id: named, content } = proposed.command else {
        panic!("not a proposal: {:?}", proposed.command);
    };
    assert_eq!(named, id("dec-1"));
    assert_eq!(content.kind, DecisionKind::Architecture);
    assert_eq!(content.deciders, vec![who("user:cto"), who("user:lead")]);
    assert_eq!(
        content.subjects,
        vec![EntityRef::new(EntityKind::Opportunity, id("opp-1"))]
    );
    assert_eq!(content.supersedes, Some(id("dec-0")));
    assert_eq!(content.visibility, Visibility::Team);

    let revised = revise_decision(proto::ReviseDecisionRequest {
        meta: meta(),
        id: "dec-1".into(),
        content: Some(decision_content()),
    })
    .unwrap();
    assert_eq!(revised.command, DecisionCommand::Revise(content));

    let cases: Vec<(
        Result<EntityCommand<DecisionCommand>, Status>,
        DecisionCommand,
    )> = vec![
        (
            accept_decision(proto::AcceptDecisionRequest {
                meta: meta(),
                id: "dec-1".into(),
            }),
            DecisionCommand::Accept,
        ),
        (
            reject_decision(proto::RejectDecisionRequest {
                meta: meta(),
                id: "dec-1".into(),
                reason: "too costly".into(),
            }),
            DecisionCommand::Reject {
                reason: "too costly".into(),
            },
        ),
        (
            deprecate_decision(proto::DeprecateDecisionRequest {
                meta: meta(),
                id: "dec-1".into(),
                reason: "cache retired".into(),
            }),
            DecisionCommand::Deprecate {
                reason: "cache retired".into(),
            },
        ),
    ];
    for (converted, expected) in cases {
        let converted = converted.unwrap();
        assert_eq!(converted.id, id("dec-1"));
        assert_eq!(converted.command, expected);
    }
}

#[test]
fn opportunity_requests_convert_to_their_commands() {
    let created = create_opportunity(proto::CreateOpportunityRequest {
        meta: meta(),
        id: "opp-1".into(),
        draft: Some(opportunity_draft()),
    })
    .unwrap();
    assert_eq!(
        created.command,
        OpportunityCommand::Create {
            id: id("opp-1"),
            draft: OpportunityDraft {
                title: "Speed up CI builds".into(),
                problem: "builds take over 20 minutes at p95".into(),
                owner: who("user:owner-1"),
                team: team_named("platform"),
                size: Some(Size::M),
                outcome_tags: vec!["developer-time".into()],
                visibility: Visibility::Open,
            },
        }
    );

    let triaged = |outcome| {
        triage(proto::TriageRequest {
            meta: meta(),
            id: "opp-1".into(),
            outcome: Some(outcome),
        })
        .unwrap()
        .command
    };
    use proto::triage_request::Outcome;
    assert_eq!(
        triaged(Outcome::Accept(proto::TriageAccept {
            decision_id: String::new()
        })),
        OpportunityCommand::Triage(Triage::Accept { decision: None })
    );
    assert_eq!(
        triaged(Outcome::Accept(proto::TriageAccept {
            decision_id: "dec-1".into()
        })),
        OpportunityCommand::Triage(Triage::Accept {
            decision: Some(id("dec-1"))
        })
    );
    assert_eq!(
        triaged(Outcome::Duplicate(proto::TriageDuplicate {
            canonical_id: "opp-0".into()
        })),
        OpportunityCommand::Triage(Triage::Duplicate {
            canonical: id("opp-0")
        })
    );
    assert_eq!(
        triaged(Outcome::Decline(proto::TriageDecline {
            reason: "out of scope".into(),
            decision_id: "dec-2".into(),
        })),
        OpportunityCommand::Triage(Triage::Decline {
            reason: "out of scope".into(),
            decision: id("dec-2"),
        })
    );
    assert_eq!(
        triaged(Outcome::Snooze(proto::TriageSnooze { until_micros: TIME })),
        OpportunityCommand::Triage(Triage::Snooze { until: Time(TIME) })
    );

    let simple = [
        (
            start_review(proto::StartReviewRequest {
                meta: meta(),
                id: "opp-1".into(),
            }),
            OpportunityCommand::StartReview,
        ),
        (
            wake_opportunity(proto::WakeOpportunityRequest {
                meta: meta(),
                id: "opp-1".into(),
            }),
            OpportunityCommand::Wake,
        ),
        (
            start_work(proto::StartWorkRequest {
                meta: meta(),
                id: "opp-1".into(),
            }),
            OpportunityCommand::StartWork,
        ),
        (
            ship_opportunity(proto::ShipOpportunityRequest {
                meta: meta(),
                id: "opp-1".into(),
            }),
            OpportunityCommand::Ship,
        ),
        (
            rescore(proto::RescoreRequest {
                meta: meta(),
                id: "opp-1".into(),
            }),
            OpportunityCommand::Rescore,
        ),
        (
            validate_outcome(proto::ValidateOutcomeRequest {
                meta: meta(),
                id: "opp-1".into(),
                outcome: proto::Validation::NotValidated as i32,
                signal_id: "sig-9".into(),
            }),
            OpportunityCommand::Validate {
                outcome: Validation::NotValidated,
                signal: Some(id("sig-9")),
            },
        ),
        (
            rate(proto::RateRequest {
                meta: meta(),
                id: "opp-1".into(),
                name: "customer_impact".into(),
                value: 4.0,
                rationale: "three teams blocked".into(),
            }),
            OpportunityCommand::Rate {
                name: "customer_impact".into(),
                value: 4.0,
                rationale: "three teams blocked".into(),
            },
        ),
        (
            vote(proto::VoteRequest {
                meta: meta(),
                id: "opp-1".into(),
                voter: "user:bo".into(),
                weight: 3,
                segment: "mobile".into(),
            }),
            OpportunityCommand::Vote {
                principal: who("user:bo"),
                weight: 3,
                segment: Some("mobile".into()),
            },
        ),
    ];
    for (converted, expected) in simple {
        let converted = converted.unwrap();
        assert_eq!(converted.id, id("opp-1"));
        assert_eq!(converted.command, expected);
    }
}

#[test]
fn a_vote_without_voter_is_the_actors_and_weight_zero_counts_as_one() {
    let voted = vote(proto::VoteRequest {
        meta: meta(),
        id: "opp-1".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        voted.command,
        OpportunityCommand::Vote {
            principal: who("user:ana"),
            weight: 1,
            segment: None,
        }
    );
}

#[test]
fn an_age_out_sweep_takes_a_team_and_a_page_and_no_version() {
    let sweep = age_out(proto::AgeOutRequest {
        meta: meta(),
        team: "platform".into(),
        page: Some(proto::PageRequest {
            page_size: 50,
            page_token: "next".into(),
        }),
    })
    .unwrap();
    assert_eq!(sweep.team, Some(team_named("platform")));
    assert_eq!(
        sweep.page,
        PageAt {
            size: 50,
            token: Some("next".into())
        }
    );
    let whole_tenant = age_out(proto::AgeOutRequest {
        meta: meta(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(whole_tenant.team, None);
    assert_eq!(whole_tenant.page.size, PAGE_SIZE_DEFAULT);
}

#[test]
fn initiative_requests_convert_to_their_commands() {
    let created = create_initiative(proto::CreateInitiativeRequest {
        meta: meta(),
        id: "ini-1".into(),
        draft: Some(initiative_draft()),
    })
    .unwrap();
    let InitiativeCommand::Create { id: named, draft } = created.command else {
        panic!("not a creation: {:?}", created.command);
    };
    assert_eq!(named, id("ini-1"));
    assert_eq!(draft.owners, vec![who("user:owner-1")]);
    assert_eq!(draft.implements, vec![id("opp-1"), id("opp-2")]);
    assert_eq!(draft.start, Time(TIME));
    assert_eq!(draft.visibility, Visibility::Restricted);

    let cases = [
        (
            schedule_initiative(proto::ScheduleInitiativeRequest {
                meta: meta(),
                id: "ini-1".into(),
            }),
            InitiativeCommand::Schedule,
        ),
        (
            start_initiative(proto::StartInitiativeRequest {
                meta: meta(),
                id: "ini-1".into(),
            }),
            InitiativeCommand::Start,
        ),
        (
            flag_initiative_risk(proto::FlagInitiativeRiskRequest {
                meta: meta(),
                id: "ini-1".into(),
                reason: "vendor late".into(),
            }),
            InitiativeCommand::FlagRisk {
                reason: "vendor late".into(),
            },
        ),
        (
            clear_initiative_risk(proto::ClearInitiativeRiskRequest {
                meta: meta(),
                id: "ini-1".into(),
            }),
            InitiativeCommand::ClearRisk,
        ),
        (
            complete_initiative(proto::CompleteInitiativeRequest {
                meta: meta(),
                id: "ini-1".into(),
            }),
            InitiativeCommand::Complete,
        ),
        (
            cancel_initiative(proto::CancelInitiativeRequest {
                meta: meta(),
                id: "ini-1".into(),
                reason: "superseded by the platform move".into(),
            }),
            InitiativeCommand::Cancel {
                reason: "superseded by the platform move".into(),
            },
        ),
        (
            implement_opportunity(proto::ImplementOpportunityRequest {
                meta: meta(),
                id: "ini-1".into(),
                opportunity_id: "opp-3".into(),
            }),
            InitiativeCommand::Implement {
                opportunity: id("opp-3"),
            },
        ),
        (
            add_milestone(proto::AddMilestoneRequest {
                meta: meta(),
                id: "ini-1".into(),
                name: "cache live".into(),
                due_micros: TIME,
                exit_criteria: "hit rate above 80%".into(),
            }),
            InitiativeCommand::AddMilestone {
                name: "cache live".into(),
                due: Time(TIME),
                exit_criteria: "hit rate above 80%".into(),
            },
        ),
        (
            meet_milestone(proto::MeetMilestoneRequest {
                meta: meta(),
                id: "ini-1".into(),
                name: "cache live".into(),
                signal_id: "sig-2".into(),
            }),
            InitiativeCommand::MeetMilestone {
                name: "cache live".into(),
                signal: Some(id("sig-2")),
            },
        ),
        (
            miss_milestone(proto::MissMilestoneRequest {
                meta: meta(),
                id: "ini-1".into(),
                name: "cache live".into(),
            }),
            InitiativeCommand::MissMilestone {
                name: "cache live".into(),
            },
        ),
    ];
    for (converted, expected) in cases {
        let converted = converted.unwrap();
        assert_eq!(converted.id, id("ini-1"));
        assert_eq!(converted.command, expected);
    }
}

#[test]
fn contents_round_trip() {
    let content = decision_content_from_proto("content", Some(decision_content())).unwrap();
    assert_eq!(decision_content_to_proto(&content), decision_content());

    let draft = opportunity_draft_from_proto("draft", Some(opportunity_draft())).unwrap();
    assert_eq!(opportunity_draft_to_proto(&draft), opportunity_draft());

    let draft = initiative_draft_from_proto("draft", Some(initiative_draft())).unwrap();
    assert_eq!(initiative_draft_to_proto(&draft), initiative_draft());

    let value_only = proto::Observation {
        percentiles: None,
        service: String::new(),
        team: String::new(),
        ..observation()
    };
    let percentiles_only = proto::Observation {
        value: None,
        ..observation()
    };
    for sent in [observation(), value_only, percentiles_only] {
        let observed = observation_from_proto("observation", Some(sent.clone())).unwrap();
        assert_eq!(observation_to_proto(&observed), sent);
    }
}

#[test]
fn references_edges_and_enums_round_trip() {
    for kind in EntityKind::ALL {
        let reference = EntityRef::new(kind, id("x-1"));
        let sent = entity_ref_to_proto(&reference);
        assert_eq!(entity_ref_from_proto("ref", Some(sent)).unwrap(), reference);
    }
    for relation in Relation::ALL {
        let edge = Edge {
            from: EntityRef::new(EntityKind::Feedback, id("fb-1")),
            relation,
            to: EntityRef::new(EntityKind::Opportunity, id("opp-1")),
        };
        let sent = edge_to_proto(&edge);
        assert_eq!(edge_from_proto("edge", Some(sent)).unwrap(), edge);
    }
    let relations: Vec<i32> = Relation::ALL
        .iter()
        .map(|relation| relation_to_proto(*relation) as i32)
        .collect();
    assert_eq!(
        relations_from_proto("relations", &relations).unwrap(),
        Relation::ALL
    );
    for source in FeedbackSource::ALL {
        let sent = feedback_source_to_proto(source) as i32;
        assert_eq!(feedback_source_from_proto("source", sent).unwrap(), source);
    }
    for direction in [Direction::LowerIsBetter, Direction::HigherIsBetter] {
        let sent = direction_to_proto(direction) as i32;
        assert_eq!(direction_from_proto("direction", sent).unwrap(), direction);
    }
    for size in [
        None,
        Some(Size::Xs),
        Some(Size::S),
        Some(Size::M),
        Some(Size::L),
        Some(Size::Xl),
    ] {
        assert_eq!(
            size_from_proto("size", size_to_proto(size) as i32).unwrap(),
            size
        );
    }
    for validation in [Validation::Validated, Validation::NotValidated] {
        let sent = validation_to_proto(validation) as i32;
        assert_eq!(validation_from_proto("outcome", sent).unwrap(), validation);
    }
    for kind in DecisionKind::ALL {
        let sent = decision_kind_to_proto(kind) as i32;
        assert_eq!(decision_kind_from_proto("kind", sent).unwrap(), kind);
    }
    for status in OpportunityStatus::ALL {
        let sent = opportunity_status_to_proto(status);
        assert_eq!(
            sent.as_str_name(),
            format!("OPPORTUNITY_STATUS_{}", status.as_str().to_uppercase())
        );
        assert_eq!(
            opportunity_status_from_proto("status", sent as i32).unwrap(),
            status
        );
    }
    for visibility in [Visibility::Open, Visibility::Team, Visibility::Restricted] {
        let sent = visibility_to_proto(visibility) as i32;
        assert_eq!(
            visibility_from_proto("visibility", sent).unwrap(),
            visibility
        );
    }
    assert_eq!(
        visibility_from_proto("visibility", proto::Visibility::Unspecified as i32).unwrap(),
        Visibility::Open
    );
}

#[test]
fn statuses_carry_the_domain_names() {
    for status in [
        FeedbackStatus::Received,
        FeedbackStatus::Processed,
        FeedbackStatus::Discarded,
    ] {
        assert_eq!(
            feedback_status_to_proto(status).as_str_name(),
            format!("FEEDBACK_STATUS_{}", status.as_str().to_uppercase())
        );
    }
    for status in [
        DecisionStatus::Proposed,
        DecisionStatus::Accepted,
        DecisionStatus::Rejected,
        DecisionStatus::Deprecated,
    ] {
        let (sent, superseded_by) = decision_status_to_proto(&status);
        assert_eq!(
            sent.as_str_name(),
            format!("DECISION_STATUS_{}", status.as_str().to_uppercase())
        );
        assert_eq!(superseded_by, "");
    }
    assert_eq!(
        decision_status_to_proto(&DecisionStatus::Superseded { by: id("dec-9") }),
        (proto::DecisionStatus::Superseded, "dec-9".to_owned())
    );
    for status in [
        InitiativeStatus::Draft,
        InitiativeStatus::Scheduled,
        InitiativeStatus::InProgress,
        InitiativeStatus::Completed,
        InitiativeStatus::Cancelled,
    ] {
        assert_eq!(
            initiative_status_to_proto(status).as_str_name(),
            format!("INITIATIVE_STATUS_{}", status.as_str().to_uppercase())
        );
    }
    for status in [
        MilestoneStatus::Open,
        MilestoneStatus::Met,
        MilestoneStatus::Missed,
    ] {
        assert_eq!(
            milestone_status_to_proto(status).as_str_name(),
            format!("MILESTONE_STATUS_{}", status.as_str().to_uppercase())
        );
    }
}

/// Scores from every built-in model, with every kind of input source, survive the round trip.
#[test]
fn score_snapshots_round_trip() {
    let policy = ScoringPolicy::built_in();
    let mut ratings = BTreeMap::new();
    for name in ["customer_impact", "strategic_value", "effort", "confidence"] {
        ratings.insert(
            name.to_owned(),
            RatingRecord {
                value: 3.0,
                by: who("user:lead"),
                at: Time(TIME),
                rationale: "seen in the retro".into(),
            },
        );
    }
    let mut votes = BTreeMap::new();
    votes.insert(
        who("user:bo"),
        VoteRecord {
            principal: who("user:bo"),
            weight: 2,
            segment: None,
            at: Time(TIME),
        },
    );
    let signal = observation_from_proto("observation", Some(observation())).unwrap();
    let evidence = vec![
        Evidence {
            reference: EntityRef::new(EntityKind::Feedback, id("fb-1")),
            observation: None,
            attached_at: Time(TIME),
        },
        Evidence {
            reference: EntityRef::new(EntityKind::Signal, id("sig-1")),
            observation: Some(signal),
            attached_at: Time(TIME),
        },
    ];
    let inputs = ScoreInputs {
        ratings: &ratings,
        votes: &votes,
        evidence: &evidence,
    };
    let mut seen = Vec::new();
    for model in policy.models.values() {
        let model_sent = scoring_model_to_proto(model);
        assert_eq!(model_sent.factors.len(), model.factors.len());
        assert_ne!(
            model_sent.formula,
            proto::ScoringFormula::Unspecified as i32
        );
        assert!(model_sent.factors.iter().all(|factor| {
            factor.source.as_ref().is_some_and(|s| s.source.is_some())
                && factor
                    .normaliser
                    .as_ref()
                    .is_some_and(|n| n.normaliser.is_some())
        }));
        let snapshot = model.score(&inputs, Time(TIME));
        let sent = score_snapshot_to_proto(&snapshot);
        assert_eq!(sent.model_digest, model.digest);
        assert_eq!(
            score_snapshot_from_proto("score", Some(sent)).unwrap(),
            snapshot
        );
        seen.extend(snapshot.inputs.iter().map(|input| match input.source {
            InputSource::Rating { .. } => "rating",
            InputSource::Signal { .. } => "signal",
            InputSource::Votes { .. } => "votes",
            InputSource::Feedback { .. } => "feedback",
            InputSource::Missing => "missing",
        }));
    }
    for source in ["rating", "signal", "votes"] {
        assert!(seen.contains(&source), "no built-in model reads {source}");
    }
    // The sources no built-in model reads with these inputs.
    let by_hand = ScoreSnapshot {
        model: "hand".into(),
        model_version: 1,
        model_digest: "d".into(),
        inputs: vec![
            ScoreInput {
                factor: "feedback".into(),
                source: InputSource::Feedback { items: 4 },
                raw: 4.0,
                normalised: 4.0,
                weight: 0.5,
                contribution: 2.0,
            },
            ScoreInput {
                factor: "covered".into(),
                source: InputSource::Missing,
                raw: 0.0,
                normalised: 0.0,
                weight: -1.5,
                contribution: 0.0,
            },
        ],
        value: 2.0,
        computed_at: Time(TIME),
    };
    let sent = score_snapshot_to_proto(&by_hand);
    assert_eq!(
        score_snapshot_from_proto("score", Some(sent)).unwrap(),
        by_hand
    );
    for rule in &policy.aging_rules {
        let sent = aging_rule_to_proto(rule);
        assert_eq!(sent.statuses.len(), rule.statuses.len());
        assert!(sent.statuses.iter().all(|s| *s != 0));
    }
}

#[test]
fn receipts_and_aged_out_results_carry_the_recording() {
    let receipt = CommandReceipt {
        entity: EntityRef::new(EntityKind::Opportunity, id("opp-1")),
        first_position: Position(10),
        last_position: Position(11),
        stream_version: StreamVersion(4),
        events: vec![Event::Opportunity(OpportunityEvent::AgedOut {
            rule: "stale".into(),
            rule_version: 2,
            reason: "no new evidence for 120 days".into(),
        })],
        deduplicated: true,
        sampled_out: false,
    };
    let sent = receipt_to_proto(&receipt);
    assert_eq!(
        sent,
        proto::CommandReceipt {
            entity: Some(proto::EntityRef {
                kind: proto::EntityKind::Opportunity as i32,
                id: "opp-1".into(),
            }),
            first_position: 10,
            last_position: 11,
            stream_version: 4,
            event_types: vec!["opportunity.aged_out".into()],
            deduplicated: true,
            sampled_out: false,
        }
    );
    let rule = AgingRule {
        name: "stale".into(),
        version: 2,
        no_evidence_days: 90,
        score_below: 1.0,
        statuses: vec![OpportunityStatus::New],
    };
    let result = aged_out_result_to_proto(&receipt, &rule);
    assert_eq!(result.opportunity_id, "opp-1");
    assert_eq!(result.rule, "stale");
    assert_eq!(result.rule_version, 2);
    assert_eq!(result.reason, "no new evidence for 120 days");
    assert_eq!(result.receipt, Some(sent));
}

#[test]
fn provenance_names_the_record() {
    let tenant = TenantId::new("acme").unwrap();
    let envelope = Envelope {
        format_version: ENVELOPE_FORMAT_V1,
        position: Position(42),
        stream: StreamId::new(tenant.clone(), "opportunity", "opp-1").unwrap(),
        stream_version: StreamVersion(3),
        event_id: EventId([7; 16]),
        event_type: "opportunity.scored".into(),
        event_schema_version: 1,
        recorded_at: Timestamp(TIME),
        actor: "user:lead".into(),
        causation_id: None,
        correlation_id: Some(EventId([2; 16])),
        lineage: vec![LineageParent {
            relation: "derived_from".into(),
            target: StreamId::new(tenant, "signal", "sig-1").unwrap(),
        }],
        data_class: DataClass::Public,
        key_id: None,
        payload_commitment: Hash::ZERO,
        payload_len: 0,
        policy_bundle_hash: Hash([6; 32]),
    };
    let record = Record::new(envelope, vec![1, 2, 3]).unwrap();
    let provenance = provenance_to_proto(&record);
    assert_eq!(
        provenance,
        proto::Provenance {
            position: 42,
            entity: Some(proto::EntityRef {
                kind: proto::EntityKind::Opportunity as i32,
                id: "opp-1".into(),
            }),
            stream_version: 3,
            event_id: vec![7; 16],
            event_type: "opportunity.scored".into(),
            actor: "user:lead".into(),
            recorded_at_micros: TIME,
            policy_bundle_hash: vec![6; 32],
            correlation_id: vec![2; 16],
        }
    );
    let parents = lineage_parents_to_proto(&record.envelope.lineage);
    assert_eq!(parents.len(), 1);
    assert_eq!(parents[0].relation, "derived_from");
    assert_eq!(parents[0].target.as_ref().unwrap().aggregate_id, "sig-1");
    // The same record as the history reads it names the same provenance.
    let envelope = &record.envelope;
    let entry = HistoryEntry {
        position: envelope.position,
        stream_version: envelope.stream_version,
        event_id: envelope.event_id,
        event_type: envelope.event_type.clone(),
        actor: envelope.actor.clone(),
        recorded_at: envelope.recorded_at,
        policy_bundle_hash: envelope.policy_bundle_hash,
        correlation_id: envelope.correlation_id,
        lineage: envelope.lineage.clone(),
        event: Event::Opportunity(OpportunityEvent::ReviewStarted),
    };
    let opportunity = EntityRef::new(EntityKind::Opportunity, id("opp-1"));
    assert_eq!(
        history_provenance_to_proto(&opportunity, &entry),
        provenance
    );
}

#[test]
fn reads_pages_and_walks_are_bounded() {
    assert_eq!(read_options_from_proto(None).unwrap(), ReadAt::default());
    let read = read_options_from_proto(Some(proto::ReadOptions {
        as_of_position: Some(9),
        at_least_position: Some(9),
        include_personal: true,
    }))
    .unwrap();
    assert_eq!(
        read,
        ReadAt {
            as_of_position: Some(Position(9)),
            at_least_position: Some(Position(9)),
            include_personal: true,
        }
    );
    assert_eq!(
        page_from_proto(None).unwrap(),
        PageAt {
            size: PAGE_SIZE_DEFAULT,
            token: None
        }
    );
    assert_eq!(
        page_from_proto(Some(proto::PageRequest {
            page_size: PAGE_SIZE_MAX as u32,
            page_token: String::new(),
        }))
        .unwrap()
        .size,
        PAGE_SIZE_MAX
    );
    assert_eq!(
        bounded("depth", 0, LINEAGE_DEPTH_DEFAULT, LINEAGE_DEPTH_MAX).unwrap(),
        LINEAGE_DEPTH_DEFAULT
    );
    assert_eq!(
        bounded("max_nodes", 1000, GRAPH_NODES_DEFAULT, GRAPH_NODES_MAX).unwrap(),
        1000
    );
    check_refused(
        bounded("depth", 17, LINEAGE_DEPTH_DEFAULT, LINEAGE_DEPTH_MAX),
        Code::ResourceExhausted,
        "depth",
    );
    check_refused(
        page_from_proto(Some(proto::PageRequest {
            page_size: 501,
            page_token: String::new(),
        })),
        Code::ResourceExhausted,
        "page.page_size",
    );
    check_refused(
        page_from_proto(Some(proto::PageRequest {
            page_size: 0,
            page_token: "t".repeat(PAGE_TOKEN_BYTES_MAX + 1),
        })),
        Code::InvalidArgument,
        "page.page_token",
    );
    check_refused(
        read_options_from_proto(Some(proto::ReadOptions {
            as_of_position: Some(5),
            at_least_position: Some(6),
            include_personal: false,
        })),
        Code::InvalidArgument,
        "read.at_least_position",
    );
    assert_eq!(
        filter_from_proto::<proto::OpportunityStatus>("status", 0).unwrap(),
        None
    );
    assert_eq!(
        filter_from_proto("status", proto::OpportunityStatus::Planned as i32).unwrap(),
        Some(proto::OpportunityStatus::Planned)
    );
    check_refused(
        filter_from_proto::<proto::OpportunityStatus>("status", 99),
        Code::InvalidArgument,
        "status",
    );
    check_refused(
        tenant_from_proto("tenant", "Acme".into()),
        Code::InvalidArgument,
        "tenant",
    );
}

/// Every malformed field is refused with INVALID_ARGUMENT naming it; the ones a domain check
/// refused also name the rule.
#[test]
fn every_bad_field_is_named() {
    fn with_meta(change: impl FnOnce(&mut proto::CommandMeta)) -> Option<proto::CommandMeta> {
        let mut meta = meta().unwrap();
        change(&mut meta);
        Some(meta)
    }
    fn feedback(change: impl FnOnce(&mut proto::SubmitFeedbackRequest)) -> Result<(), Status> {
        let mut request = proto::SubmitFeedbackRequest {
            meta: meta(),
            id: "fb-1".into(),
            text: "slow".into(),
            submitter: String::new(),
            team: "platform".into(),
            source: proto::FeedbackSource::Chat as i32,
            ..Default::default()
        };
        change(&mut request);
        submit_feedback(request).map(drop)
    }
    fn decision(change: impl FnOnce(&mut proto::DecisionContent)) -> Result<(), Status> {
        let mut content = decision_content();
        change(&mut content);
        propose_decision(proto::ProposeDecisionRequest {
            meta: meta(),
            id: "dec-1".into(),
            content: Some(content),
        })
        .map(drop)
    }
    fn signal(change: impl FnOnce(&mut proto::Observation)) -> Result<(), Status> {
        let mut observation = observation();
        change(&mut observation);
        record_signal(proto::RecordSignalRequest {
            meta: meta(),
            id: "sig-1".into(),
            observation: Some(observation),
        })
        .map(drop)
    }
    fn opportunity(change: impl FnOnce(&mut proto::OpportunityDraft)) -> Result<(), Status> {
        let mut draft = opportunity_draft();
        change(&mut draft);
        create_opportunity(proto::CreateOpportunityRequest {
            meta: meta(),
            id: "opp-1".into(),
            draft: Some(draft),
        })
        .map(drop)
    }
    fn initiative(change: impl FnOnce(&mut proto::InitiativeDraft)) -> Result<(), Status> {
        let mut draft = initiative_draft();
        change(&mut draft);
        create_initiative(proto::CreateInitiativeRequest {
            meta: meta(),
            id: "ini-1".into(),
            draft: Some(draft),
        })
        .map(drop)
    }
    fn triage_with(outcome: Option<proto::triage_request::Outcome>) -> Result<(), Status> {
        triage(proto::TriageRequest {
            meta: meta(),
            id: "opp-1".into(),
            outcome,
        })
        .map(drop)
    }
    use proto::triage_request::Outcome;

    // (the result, the field it must name, the domain rule it must carry if any)
    let cases: Vec<(Result<(), Status>, &str, Option<&str>)> = vec![
        (feedback(|r| r.meta = None), "meta", None),
        (
            feedback(|r| r.meta = with_meta(|m| m.tenant = "ACME".into())),
            "meta.tenant",
            None,
        ),
        (
            feedback(|r| r.meta = with_meta(|m| m.tenant = String::new())),
            "meta.tenant",
            None,
        ),
        (
            feedback(|r| r.meta = with_meta(|m| m.actor = String::new())),
            "meta.actor",
            Some("limit"),
        ),
        (
            feedback(|r| r.meta = with_meta(|m| m.actor = "ana@example.com".into())),
            "meta.actor",
            Some("invalid_field"),
        ),
        (
            feedback(|r| r.meta = with_meta(|m| m.idempotency_key = "k".repeat(129))),
            "meta.idempotency_key",
            None,
        ),
        (
            feedback(|r| r.meta = with_meta(|m| m.idempotency_key = "two words".into())),
            "meta.idempotency_key",
            None,
        ),
        (
            feedback(|r| r.meta = with_meta(|m| m.correlation_id = vec![1; 3])),
            "meta.correlation_id",
            None,
        ),
        (feedback(|r| r.id = String::new()), "id", Some("limit")),
        (
            feedback(|r| r.id = "fb/1".into()),
            "id",
            Some("invalid_field"),
        ),
        (feedback(|r| r.id = "f".repeat(129)), "id", Some("limit")),
        (
            feedback(|r| r.submitter = "a b".into()),
            "submitter",
            Some("invalid_field"),
        ),
        (feedback(|r| r.team = String::new()), "team", Some("limit")),
        (feedback(|r| r.source = 0), "source", None),
        (feedback(|r| r.source = 99), "source", None),
        (feedback(|r| r.visibility = 42), "visibility", None),
        (
            link_feedback(proto::LinkFeedbackRequest {
                meta: meta(),
                id: "opp-1".into(),
                evidence: None,
            })
            .map(drop),
            "evidence",
            None,
        ),
        (
            link_feedback(proto::LinkFeedbackRequest {
                meta: meta(),
                id: "opp-1".into(),
                evidence: Some(proto::EntityRef {
                    kind: 0,
                    id: "fb-1".into(),
                }),
            })
            .map(drop),
            "evidence.kind",
            None,
        ),
        (
            link_feedback(proto::LinkFeedbackRequest {
                meta: meta(),
                id: "opp-1".into(),
                evidence: Some(proto::EntityRef {
                    kind: proto::EntityKind::Decision as i32,
                    id: "dec-1".into(),
                }),
            })
            .map(drop),
            "evidence.kind",
            None,
        ),
        (
            link_feedback(proto::LinkFeedbackRequest {
                meta: meta(),
                id: "opp-1".into(),
                evidence: Some(proto::EntityRef {
                    kind: proto::EntityKind::Feedback as i32,
                    id: String::new(),
                }),
            })
            .map(drop),
            "evidence.id",
            Some("limit"),
        ),
        (
            record_signal(proto::RecordSignalRequest {
                meta: meta(),
                id: "sig-1".into(),
                observation: None,
            })
            .map(drop),
            "observation",
            None,
        ),
        (signal(|o| o.direction = 0), "observation.direction", None),
        (
            signal(|o| o.team = "a team".into()),
            "observation.team",
            Some("invalid_field"),
        ),
        (
            signal(|o| o.observed_at_micros = 0),
            "observation.observed_at_micros",
            None,
        ),
        (
            propose_decision(proto::ProposeDecisionRequest {
                meta: meta(),
                id: "dec-1".into(),
                content: None,
            })
            .map(drop),
            "content",
            None,
        ),
        (decision(|c| c.kind = 0), "content.kind", None),
        (
            decision(|c| c.team = String::new()),
            "content.team",
            Some("limit"),
        ),
        (
            decision(|c| c.deciders[1] = "lead@example.com".into()),
            "content.deciders[1]",
            Some("invalid_field"),
        ),
        (
            decision(|c| c.consulted = vec![String::new()]),
            "content.consulted[0]",
            Some("limit"),
        ),
        (
            decision(|c| c.informed = vec!["a b".into()]),
            "content.informed[0]",
            Some("invalid_field"),
        ),
        (
            decision(|c| c.subjects[0].kind = 0),
            "content.subjects[0].kind",
            None,
        ),
        (
            decision(|c| c.supersedes = "dec 0".into()),
            "content.supersedes",
            Some("invalid_field"),
        ),
        (decision(|c| c.visibility = 9), "content.visibility", None),
        (
            create_opportunity(proto::CreateOpportunityRequest {
                meta: meta(),
                id: "opp-1".into(),
                draft: None,
            })
            .map(drop),
            "draft",
            None,
        ),
        (
            opportunity(|d| d.owner = String::new()),
            "draft.owner",
            Some("limit"),
        ),
        (
            opportunity(|d| d.team = "?".into()),
            "draft.team",
            Some("invalid_field"),
        ),
        (opportunity(|d| d.size = 42), "draft.size", None),
        (triage_with(None), "outcome", None),
        (
            triage_with(Some(Outcome::Accept(proto::TriageAccept {
                decision_id: "dec 1".into(),
            }))),
            "accept.decision_id",
            Some("invalid_field"),
        ),
        (
            triage_with(Some(Outcome::Duplicate(proto::TriageDuplicate {
                canonical_id: String::new(),
            }))),
            "duplicate.canonical_id",
            Some("limit"),
        ),
        (
            triage_with(Some(Outcome::Decline(proto::TriageDecline {
                reason: "no".into(),
                decision_id: String::new(),
            }))),
            "decline.decision_id",
            Some("limit"),
        ),
        (
            triage_with(Some(Outcome::Snooze(proto::TriageSnooze {
                until_micros: 0,
            }))),
            "snooze.until_micros",
            None,
        ),
        (
            validate_outcome(proto::ValidateOutcomeRequest {
                meta: meta(),
                id: "opp-1".into(),
                outcome: 0,
                signal_id: String::new(),
            })
            .map(drop),
            "outcome",
            None,
        ),
        (
            validate_outcome(proto::ValidateOutcomeRequest {
                meta: meta(),
                id: "opp-1".into(),
                outcome: proto::Validation::Validated as i32,
                signal_id: "sig 1".into(),
            })
            .map(drop),
            "signal_id",
            Some("invalid_field"),
        ),
        (
            vote(proto::VoteRequest {
                meta: meta(),
                id: "opp-1".into(),
                voter: "bo@example.com".into(),
                ..Default::default()
            })
            .map(drop),
            "voter",
            Some("invalid_field"),
        ),
        (
            age_out(proto::AgeOutRequest {
                meta: with_meta(|m| m.expected_version = 3),
                ..Default::default()
            })
            .map(drop),
            "meta.expected_version",
            None,
        ),
        (
            age_out(proto::AgeOutRequest {
                meta: meta(),
                team: "a team".into(),
                page: None,
            })
            .map(drop),
            "team",
            Some("invalid_field"),
        ),
        (
            create_initiative(proto::CreateInitiativeRequest {
                meta: meta(),
                id: "ini-1".into(),
                draft: None,
            })
            .map(drop),
            "draft",
            None,
        ),
        (
            initiative(|d| d.owners.push("x y".into())),
            "draft.owners[1]",
            Some("invalid_field"),
        ),
        (
            initiative(|d| d.team = String::new()),
            "draft.team",
            Some("limit"),
        ),
        (
            initiative(|d| d.start_micros = 0),
            "draft.start_micros",
            None,
        ),
        (
            initiative(|d| d.target_date_micros = 0),
            "draft.target_date_micros",
            None,
        ),
        (
            initiative(|d| d.implements[1] = "opp 2".into()),
            "draft.implements[1]",
            Some("invalid_field"),
        ),
        (
            implement_opportunity(proto::ImplementOpportunityRequest {
                meta: meta(),
                id: "ini-1".into(),
                opportunity_id: String::new(),
            })
            .map(drop),
            "opportunity_id",
            Some("limit"),
        ),
        (
            add_milestone(proto::AddMilestoneRequest {
                meta: meta(),
                id: "ini-1".into(),
                name: "m".into(),
                due_micros: 0,
                exit_criteria: String::new(),
            })
            .map(drop),
            "due_micros",
            None,
        ),
        (
            meet_milestone(proto::MeetMilestoneRequest {
                meta: meta(),
                id: "ini-1".into(),
                name: "m".into(),
                signal_id: "sig/2".into(),
            })
            .map(drop),
            "signal_id",
            Some("invalid_field"),
        ),
        (
            score_snapshot_from_proto(
                "score",
                Some(proto::ScoreSnapshot {
                    inputs: vec![proto::ScoreInput::default()],
                    ..Default::default()
                }),
            )
            .map(drop),
            "score.inputs[0].source",
            None,
        ),
        (
            edge_from_proto(
                "edge",
                Some(proto::Edge {
                    from: Some(proto::EntityRef {
                        kind: proto::EntityKind::Feedback as i32,
                        id: "fb-1".into(),
                    }),
                    relation: 0,
                    to: None,
                }),
            )
            .map(drop),
            "edge.relation",
            None,
        ),
        (
            relations_from_proto("relations", &[1, 99]).map(drop),
            "relations[1]",
            None,
        ),
    ];
    for (result, field, rule) in cases {
        let status = result.expect_err(&format!("{field}: accepted"));
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(
            metadata(&status, FIELD_METADATA),
            Some(field),
            "{field}: {status:?}"
        );
        assert!(status.message().contains(field), "{field}: {status:?}");
        assert_eq!(
            metadata(&status, RULE_METADATA),
            rule,
            "{field}: {status:?}"
        );
    }
}

/// The status filters of the list calls: unspecified matches everything, every other value names
/// one status, an unknown value is refused naming the field.
#[test]
fn status_filters_name_one_status_or_none() {
    assert_eq!(feedback_status_from_proto("status", 0).unwrap(), None);
    for status in [
        FeedbackStatus::Received,
        FeedbackStatus::Processed,
        FeedbackStatus::Discarded,
    ] {
        let value = feedback_status_to_proto(status) as i32;
        assert_eq!(
            feedback_status_from_proto("status", value).unwrap(),
            Some(status)
        );
    }
    assert_eq!(initiative_status_from_proto("status", 0).unwrap(), None);
    for status in [
        InitiativeStatus::Draft,
        InitiativeStatus::Scheduled,
        InitiativeStatus::InProgress,
        InitiativeStatus::Completed,
        InitiativeStatus::Cancelled,
    ] {
        let value = initiative_status_to_proto(status) as i32;
        assert_eq!(
            initiative_status_from_proto("status", value).unwrap(),
            Some(status)
        );
    }
    assert_eq!(decision_status_name_from_proto("status", 0).unwrap(), None);
    for status in [
        DecisionStatus::Proposed,
        DecisionStatus::Accepted,
        DecisionStatus::Rejected,
        DecisionStatus::Deprecated,
        DecisionStatus::Superseded { by: id("d-2") },
    ] {
        let (value, _) = decision_status_to_proto(&status);
        let name = decision_status_name_from_proto("status", value as i32)
            .unwrap()
            .unwrap();
        assert_eq!(name, status.as_str());
        assert_eq!(decision_status_name_to_proto(name), value);
    }
    assert_eq!(
        decision_status_name_to_proto("unheard of"),
        proto::DecisionStatus::Unspecified
    );
    check_refused(
        feedback_status_from_proto("status", 42),
        Code::InvalidArgument,
        "status",
    );
    check_refused(
        initiative_status_from_proto("status", 42),
        Code::InvalidArgument,
        "status",
    );
    check_refused(
        decision_status_name_from_proto("status", 42),
        Code::InvalidArgument,
        "status",
    );
}
