//! One sample of every domain event variant, for the codec round trips and the golden files.
//!
//! [`variant_index`] matches every variant without a wildcard: a new event variant does not
//! compile here until it is given an index, and [`every_variant_has_a_sample`] (run by the codec
//! and golden tests) fails until [`all`] holds a sample of it.

use cairn_domain::decision::DecisionEvent;
use cairn_domain::feedback::{FeedbackEvent, Personal};
use cairn_domain::governance::{ErasureCause, GovernanceEvent};
use cairn_domain::initiative::InitiativeEvent;
use cairn_domain::opportunity::{OpportunityEvent, OpportunityStatus, RatingRecord, Validation};
use cairn_domain::scoring::{InputSource, ScoreInput, ScoreSnapshot};
use cairn_domain::signal::{Percentiles, SignalEvent};
use cairn_domain::{EntityKind, Event, Visibility};

use super::{
    SURVEY, day, decision_content, entity, feedback_content, feedback_evidence, id,
    initiative_draft, observation, opportunity_draft, principal, signal_evidence, strings, team,
    vote,
};

/// How many event variants there are (the indices of [`variant_index`] are `0..VARIANTS`).
pub const VARIANTS: usize = 39;

/// The index of an event's variant, from a match with no wildcard.
pub fn variant_index(event: &Event) -> usize {
    match event {
        Event::Feedback(event) => match event {
            FeedbackEvent::Received { .. } => 0,
            FeedbackEvent::Linked { .. } => 1,
            FeedbackEvent::Discarded { .. } => 2,
        },
        Event::Signal(SignalEvent::Observed { .. }) => 3,
        Event::Signal(SignalEvent::Sampled { .. }) => 38,
        Event::Opportunity(event) => match event {
            OpportunityEvent::Created { .. } => 4,
            OpportunityEvent::ReviewStarted => 5,
            OpportunityEvent::Accepted { .. } => 6,
            OpportunityEvent::MarkedDuplicate { .. } => 7,
            OpportunityEvent::Declined { .. } => 8,
            OpportunityEvent::Snoozed { .. } => 9,
            OpportunityEvent::Woke => 10,
            OpportunityEvent::WorkStarted => 11,
            OpportunityEvent::Shipped => 12,
            OpportunityEvent::OutcomeJudged { .. } => 13,
            OpportunityEvent::EvidenceAttached(_) => 14,
            OpportunityEvent::Reopened { .. } => 15,
            OpportunityEvent::Voted(_) => 16,
            OpportunityEvent::Rated { .. } => 17,
            OpportunityEvent::Scored(_) => 18,
            OpportunityEvent::AgedOut { .. } => 19,
            OpportunityEvent::DuplicateAbsorbed { .. } => 20,
        },
        Event::Decision(event) => match event {
            DecisionEvent::Proposed { .. } => 21,
            DecisionEvent::Revised(_) => 22,
            DecisionEvent::Accepted { .. } => 23,
            DecisionEvent::Rejected { .. } => 24,
            DecisionEvent::Deprecated { .. } => 25,
            DecisionEvent::Superseded { .. } => 26,
        },
        Event::Initiative(event) => match event {
            InitiativeEvent::Created { .. } => 27,
            InitiativeEvent::Scheduled => 28,
            InitiativeEvent::Started => 29,
            InitiativeEvent::RiskFlagged { .. } => 30,
            InitiativeEvent::RiskCleared => 31,
            InitiativeEvent::Completed => 32,
            InitiativeEvent::Cancelled { .. } => 33,
            InitiativeEvent::Implements { .. } => 34,
            InitiativeEvent::MilestoneAdded { .. } => 35,
            InitiativeEvent::MilestoneMet { .. } => 36,
            InitiativeEvent::MilestoneMissed { .. } => 37,
        },
    }
}

/// Asserts [`all`] holds exactly one sample of every variant.
#[track_caller]
pub fn every_variant_has_a_sample() {
    let mut seen = [0usize; VARIANTS];
    for event in all() {
        seen[variant_index(&event)] += 1;
    }
    for (index, count) in seen.iter().enumerate() {
        assert_eq!(*count, 1, "variant {index} has {count} samples, not one");
    }
}

/// A score snapshot whose inputs come from every kind of source.
pub fn snapshot() -> ScoreSnapshot {
    let input =
        |factor: &str, source: InputSource, raw: f64, normalised: f64, weight: f64| ScoreInput {
            factor: factor.to_owned(),
            source,
            raw,
            normalised,
            weight,
            contribution: normalised * weight,
        };
    ScoreSnapshot {
        model: "platform".to_owned(),
        model_version: 3,
        model_digest: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262".to_owned(),
        inputs: vec![
            input(
                "customer_impact",
                InputSource::Rating {
                    by: principal("alice"),
                    at: day(3),
                },
                4.0,
                0.8,
                2.0,
            ),
            input(
                "build_latency",
                InputSource::Signal {
                    signal: id("s-7"),
                    observed_at: day(2),
                },
                300.0,
                0.5,
                -1.0,
            ),
            input("votes", InputSource::Votes { voters: 3 }, 7.0, 7.0, 0.5),
            input(
                "feedback",
                InputSource::Feedback { items: 2 },
                2.0,
                2.0,
                1.0,
            ),
            input("effort", InputSource::Missing, 1.0, 1.0, 1.0),
        ],
        value: 5.6,
        computed_at: day(4),
    }
}

/// One sample of every event variant, each with its optional fields filled where it has any,
/// so the golden files hold every field.
pub fn all() -> Vec<Event> {
    let mut revised = decision_content(&["dave"]);
    revised.supersedes = Some(id("d-0"));
    vec![
        Event::Feedback(FeedbackEvent::Received {
            id: id("f-1"),
            team: team("platform"),
            source: SURVEY,
            tags: strings(&["ci", "build"]),
            outcome_tags: strings(&["developer-time"]),
            visibility: Visibility::Team,
            received_at: day(1),
            content: Personal::Present(feedback_content(Some("bob"))),
        }),
        Event::Feedback(FeedbackEvent::Linked {
            opportunity: id("o-1"),
        }),
        Event::Feedback(FeedbackEvent::Discarded {
            reason: "spam".to_owned(),
        }),
        Event::Signal(SignalEvent::Observed {
            id: id("s-7"),
            observation: cairn_domain::signal::Observation {
                measurement: cairn_domain::signal::Measurement {
                    value: Some(2400.5),
                    percentiles: Some(Percentiles {
                        p50: 1200.0,
                        p95: 2400.0,
                        p99: 3600.0,
                    }),
                },
                ..observation("build_latency_ms", 0.0, day(2))
            },
            recorded_at: day(2),
        }),
        Event::Signal(SignalEvent::Sampled {
            id: id("s-8"),
            observation: cairn_domain::signal::Observation {
                measurement: cairn_domain::signal::Measurement {
                    value: Some(120.0),
                    percentiles: Some(Percentiles {
                        p50: 80.0,
                        p95: 120.0,
                        p99: 300.0,
                    }),
                },
                ..observation("http_request_ms", 0.0, day(2))
            },
            recorded_at: day(2),
            sample_rate: 100,
        }),
        Event::Opportunity(OpportunityEvent::Created {
            id: id("o-1"),
            draft: opportunity_draft(),
            created_at: day(1),
        }),
        Event::Opportunity(OpportunityEvent::ReviewStarted),
        Event::Opportunity(OpportunityEvent::Accepted {
            decision: Some(id("d-1")),
        }),
        Event::Opportunity(OpportunityEvent::MarkedDuplicate {
            canonical: id("o-2"),
            evidence: vec![feedback_evidence("f-1", day(2))],
            votes: vec![vote("bob", 3, day(2))],
        }),
        Event::Opportunity(OpportunityEvent::Declined {
            reason: "out of scope".to_owned(),
            decision: id("d-1"),
        }),
        Event::Opportunity(OpportunityEvent::Snoozed { until: day(30) }),
        Event::Opportunity(OpportunityEvent::Woke),
        Event::Opportunity(OpportunityEvent::WorkStarted),
        Event::Opportunity(OpportunityEvent::Shipped),
        Event::Opportunity(OpportunityEvent::OutcomeJudged {
            outcome: Validation::Validated,
            signal: Some(id("s-7")),
        }),
        Event::Opportunity(OpportunityEvent::EvidenceAttached(signal_evidence(
            "s-7",
            observation("build_latency_ms", 2400.0, day(2)),
            day(3),
        ))),
        Event::Opportunity(OpportunityEvent::Reopened {
            status: OpportunityStatus::UnderReview,
            by: entity(EntityKind::Feedback, "f-2"),
        }),
        Event::Opportunity(OpportunityEvent::Voted(
            cairn_domain::opportunity::VoteRecord {
                segment: Some("mobile".to_owned()),
                ..vote("bob", 5, day(3))
            },
        )),
        Event::Opportunity(OpportunityEvent::Rated {
            name: "customer_impact".to_owned(),
            rating: RatingRecord {
                value: 4.0,
                by: principal("alice"),
                at: day(3),
                rationale: "every team builds on main".to_owned(),
            },
        }),
        Event::Opportunity(OpportunityEvent::Scored(snapshot())),
        Event::Opportunity(OpportunityEvent::AgedOut {
            rule: "stale".to_owned(),
            rule_version: 2,
            reason: "no new evidence for 120 days (rule: 90) and score 0 below 10".to_owned(),
        }),
        Event::Opportunity(OpportunityEvent::DuplicateAbsorbed {
            duplicate: id("o-3"),
            evidence: vec![feedback_evidence("f-3", day(4))],
            votes: vec![vote("erin", 1, day(4))],
        }),
        Event::Decision(DecisionEvent::Proposed {
            id: id("d-1"),
            content: decision_content(&["dave"]),
            proposed_at: day(5),
        }),
        Event::Decision(DecisionEvent::Revised(revised)),
        Event::Decision(DecisionEvent::Accepted {
            by: principal("dave"),
            at: day(6),
        }),
        Event::Decision(DecisionEvent::Rejected {
            by: principal("dave"),
            reason: "too costly".to_owned(),
        }),
        Event::Decision(DecisionEvent::Deprecated {
            reason: "the cache was retired".to_owned(),
        }),
        Event::Decision(DecisionEvent::Superseded { by: id("d-2") }),
        Event::Initiative(InitiativeEvent::Created {
            id: id("i-1"),
            draft: initiative_draft(),
        }),
        Event::Initiative(InitiativeEvent::Scheduled),
        Event::Initiative(InitiativeEvent::Started),
        Event::Initiative(InitiativeEvent::RiskFlagged {
            reason: "vendor late".to_owned(),
        }),
        Event::Initiative(InitiativeEvent::RiskCleared),
        Event::Initiative(InitiativeEvent::Completed),
        Event::Initiative(InitiativeEvent::Cancelled {
            reason: "replaced".to_owned(),
        }),
        Event::Initiative(InitiativeEvent::Implements {
            opportunity: id("o-2"),
        }),
        Event::Initiative(InitiativeEvent::MilestoneAdded {
            name: "cache in staging".to_owned(),
            due: day(40),
            exit_criteria: "hit rate above 80%".to_owned(),
        }),
        Event::Initiative(InitiativeEvent::MilestoneMet {
            name: "cache in staging".to_owned(),
            signal: Some(id("s-8")),
        }),
        Event::Initiative(InitiativeEvent::MilestoneMissed {
            name: "cache in production".to_owned(),
        }),
    ]
}

/// One sample of every governance event variant, in declaration order (the match in
/// [`governance_variant_index`] has no wildcard, so a new variant does not compile until it has
/// an index and then fails [`every_governance_variant_has_a_sample`] until it has a sample).
pub fn governance() -> Vec<GovernanceEvent> {
    vec![
        GovernanceEvent::PolicyActivated {
            bundle_hash: [7; 32],
            previous: Some([6; 32]),
            git_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            source: "policies".into(),
            trigger: "start".into(),
            tests_passed: 42,
        },
        GovernanceEvent::PolicyRefused {
            bundle_hash: Some([8; 32]),
            active: [7; 32],
            source: "policies".into(),
            trigger: "rpc".into(),
            reason: "tests/access.csv:3: expected allow, got deny".into(),
        },
        GovernanceEvent::AccessGranted {
            principal: "erin".into(),
            role: "role:triager".into(),
            tenant: "acme".into(),
            reason: "on call this week".into(),
        },
        GovernanceEvent::AccessRevoked {
            principal: "erin".into(),
            role: "role:triager".into(),
            tenant: "acme".into(),
            reason: "rotation ended".into(),
        },
        GovernanceEvent::AccessDenied {
            principal: "mallory".into(),
            method: "/cairn.v1.DecisionService/AcceptDecision".into(),
            object: "decision".into(),
            action: "decide".into(),
            tenant: "acme".into(),
            bundle_hash: [7; 32],
        },
        GovernanceEvent::LegalHoldPlaced {
            hold_id: "case-2026-17".into(),
            subject: Some("user:alice".into()),
            reason: "litigation hold, case 2026-17".into(),
        },
        GovernanceEvent::LegalHoldReleased {
            hold_id: "case-2026-17".into(),
            reason: "case closed".into(),
        },
        GovernanceEvent::DataErased {
            key_id: [4; 16],
            subject: Some("user:alice".into()),
            cause: ErasureCause::Request {
                request_id: "dsr-88".into(),
                reason: "the data subject asked".into(),
            },
            records: 3,
        },
        GovernanceEvent::AccessDeniedRepeated {
            principal: "mallory".into(),
            method: "/cairn.v1.DecisionService/AcceptDecision".into(),
            object: "decision".into(),
            action: "decide".into(),
            tenant: "acme".into(),
            bundle_hash: [7; 32],
            count: 41,
            first_at_micros: 1_767_225_600_250_000,
            last_at_micros: 1_767_225_659_750_000,
        },
    ]
}

/// The index of a governance event's variant, from a match with no wildcard.
pub fn governance_variant_index(event: &GovernanceEvent) -> usize {
    match event {
        GovernanceEvent::PolicyActivated { .. } => 0,
        GovernanceEvent::PolicyRefused { .. } => 1,
        GovernanceEvent::AccessGranted { .. } => 2,
        GovernanceEvent::AccessRevoked { .. } => 3,
        GovernanceEvent::AccessDenied { .. } => 4,
        GovernanceEvent::LegalHoldPlaced { .. } => 5,
        GovernanceEvent::LegalHoldReleased { .. } => 6,
        GovernanceEvent::DataErased { .. } => 7,
        GovernanceEvent::AccessDeniedRepeated { .. } => 8,
    }
}

/// Fails unless [`governance`] holds exactly one sample of every variant.
pub fn every_governance_variant_has_a_sample() {
    let samples = governance();
    let indices: Vec<usize> = samples.iter().map(governance_variant_index).collect();
    let expected: Vec<usize> = (0..samples.len()).collect();
    assert_eq!(indices, expected, "one sample per variant, in order");
    assert_eq!(samples.len(), 9, "a governance variant has no sample");
}
