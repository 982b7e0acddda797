//! An opportunity: `new -> under_review -> planned -> in_progress -> shipped -> validated /
//! not_validated`; from new or under_review also declined, duplicate or snoozed; aged out by a
//! rule and reopened by new evidence; votes and ratings frozen once closed; a score snapshot
//! whenever the score changes.
//!
//! [`every_status_and_command`] walks the whole table; the tests after it look at each row's
//! events and refusals closely.

mod common;

use cairn_domain::opportunity::{
    Evidence, Opportunity, OpportunityCommand, OpportunityEvent, OpportunityStatus, RatingRecord,
    Triage, Validation, VoteRecord,
};
use cairn_domain::scoring::{
    AgingRule, Factor, FactorSource, Formula, InputSource, Normaliser, ScoreInput, ScoreSnapshot,
    ScoringModel,
};
use cairn_domain::{EntityKind, Rule, Time, limits};
use common::{
    ctx, ctx_as, ctx_scored, day, entity, feedback_evidence, given, given_nothing, id, observation,
    opportunity_draft, principal, signal_evidence, vote,
};

use OpportunityStatus as S;

fn created() -> OpportunityEvent {
    OpportunityEvent::Created {
        id: id("o-1"),
        draft: opportunity_draft(),
        created_at: day(0),
    }
}

fn attached(evidence: Evidence) -> OpportunityEvent {
    OpportunityEvent::EvidenceAttached(evidence)
}

fn voted(principal_id: &str, weight: u32, at: Time) -> OpportunityEvent {
    OpportunityEvent::Voted(vote(principal_id, weight, at))
}

fn declined() -> OpportunityEvent {
    OpportunityEvent::Declined {
        reason: "out of scope".to_owned(),
        decision: id("d-1"),
    }
}

fn aged_out() -> OpportunityEvent {
    OpportunityEvent::AgedOut {
        rule: "stale".to_owned(),
        rule_version: 1,
        reason: "no new evidence".to_owned(),
    }
}

fn marked_duplicate() -> OpportunityEvent {
    OpportunityEvent::MarkedDuplicate {
        canonical: id("o-2"),
        evidence: vec![],
        votes: vec![],
    }
}

/// The default aging rule: 90 days without evidence and a score below 10.
fn stale_rule() -> AgingRule {
    AgingRule {
        name: "stale".to_owned(),
        version: 1,
        no_evidence_days: 90,
        score_below: 10.0,
        statuses: vec![S::New, S::UnderReview, S::Snoozed],
    }
}

/// Events leading to each status. Snoozed until day 30; aged out from under review.
fn history(status: OpportunityStatus) -> Vec<OpportunityEvent> {
    use OpportunityEvent as E;
    let path: Vec<OpportunityEvent> = match status {
        S::New => vec![],
        S::UnderReview => vec![E::ReviewStarted],
        S::Planned => vec![E::ReviewStarted, E::Accepted { decision: None }],
        S::InProgress => vec![
            E::ReviewStarted,
            E::Accepted { decision: None },
            E::WorkStarted,
        ],
        S::Shipped => vec![
            E::ReviewStarted,
            E::Accepted { decision: None },
            E::WorkStarted,
            E::Shipped,
        ],
        S::Validated | S::NotValidated => vec![
            E::ReviewStarted,
            E::Accepted { decision: None },
            E::WorkStarted,
            E::Shipped,
            E::OutcomeJudged {
                outcome: if status == S::Validated {
                    Validation::Validated
                } else {
                    Validation::NotValidated
                },
                signal: None,
            },
        ],
        S::Declined => vec![E::ReviewStarted, declined()],
        S::Duplicate => vec![marked_duplicate()],
        S::Snoozed => vec![E::Snoozed { until: day(30) }],
        S::AgedOut => vec![E::ReviewStarted, aged_out()],
    };
    let mut events = vec![created()];
    events.extend(path);
    events
}

/// A model: votes + 2 × feedback items + 10 × customer impact (0 to 5, linear).
fn simple_model(version: u32, impact_weight: f64) -> ScoringModel {
    ScoringModel {
        name: "simple".to_owned(),
        version,
        formula: Formula::WeightedSum,
        factors: vec![
            Factor {
                name: "votes".to_owned(),
                source: FactorSource::Votes,
                normaliser: Normaliser::None,
                weight: 1.0,
                default: 0.0,
                role: None,
            },
            Factor {
                name: "feedback".to_owned(),
                source: FactorSource::Feedback,
                normaliser: Normaliser::None,
                weight: 2.0,
                default: 0.0,
                role: None,
            },
            Factor {
                name: "impact".to_owned(),
                source: FactorSource::Rating {
                    name: "customer_impact".to_owned(),
                },
                normaliser: Normaliser::Linear { min: 0.0, max: 5.0 },
                weight: impact_weight,
                default: 0.0,
                role: None,
            },
        ],
        digest: "d1".to_owned(),
    }
}

/// What [`simple_model`] (version 1, impact weight 10) should record, written out by hand.
struct Expected {
    vote_weights: f64,
    voters: u64,
    feedback_items: u64,
    /// The customer impact rating: value, rater, time.
    impact: Option<(f64, &'static str, Time)>,
}

impl Expected {
    fn snapshot(&self, computed_at: Time) -> ScoreSnapshot {
        let (impact_raw, impact_source) = match self.impact {
            Some((value, by, at)) => (
                value,
                InputSource::Rating {
                    by: principal(by),
                    at,
                },
            ),
            None => (0.0, InputSource::Missing),
        };
        let impact_normalised = impact_raw / 5.0;
        let feedback = self.feedback_items as f64;
        ScoreSnapshot {
            model: "simple".to_owned(),
            model_version: 1,
            model_digest: "d1".to_owned(),
            inputs: vec![
                ScoreInput {
                    factor: "votes".to_owned(),
                    source: InputSource::Votes {
                        voters: self.voters,
                    },
                    raw: self.vote_weights,
                    normalised: self.vote_weights,
                    weight: 1.0,
                    contribution: self.vote_weights,
                },
                ScoreInput {
                    factor: "feedback".to_owned(),
                    source: InputSource::Feedback {
                        items: self.feedback_items,
                    },
                    raw: feedback,
                    normalised: feedback,
                    weight: 2.0,
                    contribution: 2.0 * feedback,
                },
                ScoreInput {
                    factor: "impact".to_owned(),
                    source: impact_source,
                    raw: impact_raw,
                    normalised: impact_normalised,
                    weight: 10.0,
                    contribution: 10.0 * impact_normalised,
                },
            ],
            value: self.vote_weights + 2.0 * feedback + 10.0 * impact_normalised,
            computed_at,
        }
    }
}

fn nothing_scored() -> Expected {
    Expected {
        vote_weights: 0.0,
        voters: 0,
        feedback_items: 0,
        impact: None,
    }
}

fn scored(expected: Expected, at: Time) -> OpportunityEvent {
    OpportunityEvent::Scored(expected.snapshot(at))
}

fn cast(principal_id: &str, weight: u32) -> OpportunityCommand {
    OpportunityCommand::Vote {
        principal: principal(principal_id),
        weight,
        segment: None,
    }
}

fn rate(name: &str, value: f64) -> OpportunityCommand {
    OpportunityCommand::Rate {
        name: name.to_owned(),
        value,
        rationale: "seen in every team".to_owned(),
    }
}

fn triage(triage: Triage) -> OpportunityCommand {
    OpportunityCommand::Triage(triage)
}

fn decline(reason: &str) -> OpportunityCommand {
    triage(Triage::Decline {
        reason: reason.to_owned(),
        decision: id("d-1"),
    })
}

fn absorb(evidence: Vec<Evidence>, votes: Vec<VoteRecord>) -> OpportunityCommand {
    OpportunityCommand::AbsorbDuplicate {
        duplicate: id("o-3"),
        evidence,
        votes,
    }
}

// The table.

/// A command of the table, one per kind of command.
#[derive(Clone, Copy, Debug)]
enum Cmd {
    StartReview,
    Accept,
    Duplicate,
    Decline,
    Snooze,
    Wake,
    StartWork,
    Ship,
    Validate,
    AttachEvidence,
    Vote,
    Rate,
    Rescore,
    AgeOut,
    Absorb,
}

const COMMANDS: [Cmd; 15] = [
    Cmd::StartReview,
    Cmd::Accept,
    Cmd::Duplicate,
    Cmd::Decline,
    Cmd::Snooze,
    Cmd::Wake,
    Cmd::StartWork,
    Cmd::Ship,
    Cmd::Validate,
    Cmd::AttachEvidence,
    Cmd::Vote,
    Cmd::Rate,
    Cmd::Rescore,
    Cmd::AgeOut,
    Cmd::Absorb,
];

/// The table's time: past the snooze of [`history`] and past the stale rule's 90 days.
const TABLE_DAY: i64 = 200;

fn table_command(command: Cmd) -> OpportunityCommand {
    match command {
        Cmd::StartReview => OpportunityCommand::StartReview,
        Cmd::Accept => triage(Triage::Accept {
            decision: Some(id("d-1")),
        }),
        Cmd::Duplicate => triage(Triage::Duplicate {
            canonical: id("o-2"),
        }),
        Cmd::Decline => decline("out of scope"),
        Cmd::Snooze => triage(Triage::Snooze {
            until: day(TABLE_DAY + 30),
        }),
        Cmd::Wake => OpportunityCommand::Wake,
        Cmd::StartWork => OpportunityCommand::StartWork,
        Cmd::Ship => OpportunityCommand::Ship,
        Cmd::Validate => OpportunityCommand::Validate {
            outcome: Validation::Validated,
            signal: Some(id("s-1")),
        },
        Cmd::AttachEvidence => {
            OpportunityCommand::AttachEvidence(feedback_evidence("f-9", day(TABLE_DAY)))
        }
        Cmd::Vote => cast("bob", 2),
        Cmd::Rate => rate("customer_impact", 3.0),
        Cmd::Rescore => OpportunityCommand::Rescore,
        Cmd::AgeOut => OpportunityCommand::AgeOut(stale_rule()),
        Cmd::Absorb => absorb(
            vec![feedback_evidence("f-8", day(TABLE_DAY - 1))],
            vec![vote("erin", 1, day(TABLE_DAY - 1))],
        ),
    }
}

/// What DOMAIN.md says each (status, command) does: the status after, or the rule broken and
/// the field named.
fn table_expectation(
    status: OpportunityStatus,
    command: Cmd,
) -> Result<OpportunityStatus, (Rule, Option<&'static str>)> {
    let refused = Err((Rule::TransitionNotAllowed, None));
    let triageable = matches!(status, S::New | S::UnderReview);
    let open = matches!(
        status,
        S::New | S::UnderReview | S::Planned | S::InProgress | S::Snoozed
    );
    let only_from = |from: OpportunityStatus, to: OpportunityStatus| {
        if status == from { Ok(to) } else { refused }
    };
    match command {
        Cmd::StartReview => only_from(S::New, S::UnderReview),
        Cmd::Accept if triageable => Ok(S::Planned),
        Cmd::Duplicate if triageable => Ok(S::Duplicate),
        Cmd::Decline if triageable => Ok(S::Declined),
        Cmd::Snooze if triageable => Ok(S::Snoozed),
        Cmd::Accept | Cmd::Duplicate | Cmd::Decline | Cmd::Snooze => refused,
        Cmd::Wake => only_from(S::Snoozed, S::UnderReview),
        Cmd::StartWork => only_from(S::Planned, S::InProgress),
        Cmd::Ship => only_from(S::InProgress, S::Shipped),
        Cmd::Validate => only_from(S::Shipped, S::Validated),
        // Evidence is taken in any state but duplicate, and reopens an aged-out one to where it
        // was (under review, in the history).
        Cmd::AttachEvidence | Cmd::Rescore | Cmd::Vote | Cmd::Rate if status == S::Duplicate => {
            Err((Rule::DuplicateTakesNothing, None))
        }
        Cmd::AttachEvidence if status == S::AgedOut => Ok(S::UnderReview),
        Cmd::AttachEvidence | Cmd::Rescore => Ok(status),
        Cmd::Vote | Cmd::Rate if open => Ok(status),
        Cmd::Vote | Cmd::Rate => Err((Rule::VotesFrozen, None)),
        Cmd::AgeOut if matches!(status, S::New | S::UnderReview | S::Snoozed) => Ok(S::AgedOut),
        Cmd::AgeOut => refused,
        Cmd::Absorb if status == S::Duplicate => Err((Rule::InvalidCanonical, Some("canonical"))),
        // The absorbed evidence is new evidence: it reopens an aged-out canonical opportunity.
        Cmd::Absorb if status == S::AgedOut => Ok(S::UnderReview),
        Cmd::Absorb => Ok(status),
    }
}

#[test]
fn every_status_and_command() {
    let model = simple_model(1, 10.0);
    let ctx = ctx_scored(day(TABLE_DAY), &model);
    for status in OpportunityStatus::ALL {
        let events = history(status);
        assert_eq!(
            given(events.clone()).state().status,
            Some(status),
            "the history of {status}"
        );
        for command in COMMANDS {
            let then = given(events.clone()).when(table_command(command), &ctx);
            match table_expectation(status, command) {
                Ok(after) => {
                    let (produced, state) = then.then_accepted();
                    assert_eq!(
                        state.status,
                        Some(after),
                        "{command:?} in {status}: {produced:#?}"
                    );
                }
                Err((rule, None)) => {
                    then.then_refused(rule);
                }
                Err((rule, Some(field))) => {
                    then.then_refused_on(rule, field);
                }
            }
        }
    }
}

// Create.

#[test]
fn create_records_a_new_opportunity() {
    let state = given_nothing::<Opportunity>()
        .when(
            OpportunityCommand::Create {
                id: id("o-1"),
                draft: opportunity_draft(),
            },
            &ctx(day(0)),
        )
        .then([created()]);
    assert_eq!(state.status, Some(S::New));
    assert_eq!(state.id, Some(id("o-1")));
    assert_eq!(state.last_evidence_at, day(0));
    assert_eq!(state.score, None);
}

#[test]
fn create_under_a_model_scores_at_once() {
    let model = simple_model(1, 10.0);
    let state = given_nothing::<Opportunity>()
        .when(
            OpportunityCommand::Create {
                id: id("o-1"),
                draft: opportunity_draft(),
            },
            &ctx_scored(day(0), &model),
        )
        .then([created(), scored(nothing_scored(), day(0))]);
    assert_eq!(state.score.map(|s| s.value), Some(0.0));
}

#[test]
fn create_twice_is_refused_in_every_status() {
    for status in OpportunityStatus::ALL {
        given(history(status))
            .when(
                OpportunityCommand::Create {
                    id: id("o-1"),
                    draft: opportunity_draft(),
                },
                &ctx(day(1)),
            )
            .then_refused(Rule::AlreadyExists);
    }
}

#[test]
fn every_command_on_a_missing_opportunity_is_refused() {
    let model = simple_model(1, 10.0);
    for command in COMMANDS {
        given_nothing::<Opportunity>()
            .when(table_command(command), &ctx_scored(day(1), &model))
            .then_refused(Rule::NotFound);
    }
}

#[test]
fn create_checks_the_draft() {
    let refused = |change: &dyn Fn(&mut cairn_domain::opportunity::OpportunityDraft),
                   rule: Rule,
                   field: &str| {
        let mut draft = opportunity_draft();
        change(&mut draft);
        given_nothing::<Opportunity>()
            .when(
                OpportunityCommand::Create {
                    id: id("o-1"),
                    draft,
                },
                &ctx(day(0)),
            )
            .then_refused_on(rule, field);
    };
    refused(&|d| d.title = " ".to_owned(), Rule::InvalidField, "title");
    refused(
        &|d| d.title = "t".repeat(limits::TITLE_BYTES_MAX + 1),
        Rule::Limit,
        "title",
    );
    refused(
        &|d| d.problem = "p".repeat(limits::TEXT_BYTES_MAX + 1),
        Rule::Limit,
        "problem",
    );
    refused(
        &|d| d.outcome_tags = vec!["Support Cost".to_owned()],
        Rule::InvalidField,
        "outcome_tags",
    );
    // The problem statement may be empty.
    let mut draft = opportunity_draft();
    draft.problem = String::new();
    given_nothing::<Opportunity>()
        .when(
            OpportunityCommand::Create {
                id: id("o-1"),
                draft,
            },
            &ctx(day(0)),
        )
        .then_accepted();
}

// The main path.

#[test]
fn the_main_path_to_validated_and_not_validated() {
    let state = given(history(S::New))
        .when(OpportunityCommand::StartReview, &ctx(day(1)))
        .then([OpportunityEvent::ReviewStarted]);
    assert_eq!(state.status, Some(S::UnderReview));
    let state = given(history(S::UnderReview))
        .when(
            triage(Triage::Accept {
                decision: Some(id("d-1")),
            }),
            &ctx(day(2)),
        )
        .then([OpportunityEvent::Accepted {
            decision: Some(id("d-1")),
        }]);
    assert_eq!(state.status, Some(S::Planned));
    let state = given(history(S::Planned))
        .when(OpportunityCommand::StartWork, &ctx(day(3)))
        .then([OpportunityEvent::WorkStarted]);
    assert_eq!(state.status, Some(S::InProgress));
    let state = given(history(S::InProgress))
        .when(OpportunityCommand::Ship, &ctx(day(4)))
        .then([OpportunityEvent::Shipped]);
    assert_eq!(state.status, Some(S::Shipped));
    let state = given(history(S::Shipped))
        .when(
            OpportunityCommand::Validate {
                outcome: Validation::Validated,
                signal: Some(id("s-1")),
            },
            &ctx(day(5)),
        )
        .then([OpportunityEvent::OutcomeJudged {
            outcome: Validation::Validated,
            signal: Some(id("s-1")),
        }]);
    assert_eq!(state.status, Some(S::Validated));
    let state = given(history(S::Shipped))
        .when(
            OpportunityCommand::Validate {
                outcome: Validation::NotValidated,
                signal: None,
            },
            &ctx(day(5)),
        )
        .then([OpportunityEvent::OutcomeJudged {
            outcome: Validation::NotValidated,
            signal: None,
        }]);
    assert_eq!(state.status, Some(S::NotValidated));
}

#[test]
fn accept_straight_from_new_without_a_decision() {
    let state = given(history(S::New))
        .when(triage(Triage::Accept { decision: None }), &ctx(day(1)))
        .then([OpportunityEvent::Accepted { decision: None }]);
    assert_eq!(state.status, Some(S::Planned));
}

// Triage: duplicate, decline, snooze, wake.

#[test]
fn a_duplicate_hands_its_evidence_and_votes_to_the_canonical_opportunity() {
    let evidence = feedback_evidence("f-1", day(1));
    let mut events = history(S::UnderReview);
    events.push(attached(evidence.clone()));
    events.push(voted("carol", 1, day(2)));
    events.push(voted("bob", 2, day(2)));
    // carol changes her mind: only her latest vote moves.
    events.push(voted("carol", 5, day(3)));
    let state = given(events)
        .when(
            triage(Triage::Duplicate {
                canonical: id("o-2"),
            }),
            &ctx(day(4)),
        )
        .then([OpportunityEvent::MarkedDuplicate {
            canonical: id("o-2"),
            evidence: vec![evidence],
            // One per principal, in principal order.
            votes: vec![vote("bob", 2, day(2)), vote("carol", 5, day(3))],
        }]);
    assert_eq!(state.status, Some(S::Duplicate));
    assert_eq!(state.canonical, Some(id("o-2")));
}

#[test]
fn an_opportunity_is_not_a_duplicate_of_itself() {
    given(history(S::New))
        .when(
            triage(Triage::Duplicate {
                canonical: id("o-1"),
            }),
            &ctx(day(1)),
        )
        .then_refused_on(Rule::InvalidCanonical, "canonical");
}

#[test]
fn a_duplicate_takes_nothing() {
    let model = simple_model(1, 10.0);
    for command in [
        OpportunityCommand::AttachEvidence(feedback_evidence("f-1", day(5))),
        cast("bob", 1),
        rate("customer_impact", 3.0),
        OpportunityCommand::Rescore,
    ] {
        given(history(S::Duplicate))
            .when(command, &ctx_scored(day(5), &model))
            .then_refused(Rule::DuplicateTakesNothing);
    }
}

#[test]
fn decline_needs_a_reason_and_names_the_decision() {
    for status in [S::New, S::UnderReview] {
        let state = given(history(status))
            .when(decline("out of scope"), &ctx(day(2)))
            .then([declined()]);
        assert_eq!(state.status, Some(S::Declined));
        given(history(status))
            .when(decline(""), &ctx(day(2)))
            .then_refused_on(Rule::ReasonRequired, "reason");
        given(history(status))
            .when(
                decline(&"r".repeat(limits::REASON_BYTES_MAX + 1)),
                &ctx(day(2)),
            )
            .then_refused_on(Rule::Limit, "reason");
    }
}

#[test]
fn a_snooze_ends_in_the_future() {
    let state = given(history(S::UnderReview))
        .when(triage(Triage::Snooze { until: day(30) }), &ctx(day(2)))
        .then([OpportunityEvent::Snoozed { until: day(30) }]);
    assert_eq!(state.status, Some(S::Snoozed));
    assert_eq!(state.snoozed_until, Some(day(30)));
    given(history(S::New))
        .when(triage(Triage::Snooze { until: day(2) }), &ctx(day(2)))
        .then_refused_on(Rule::SnoozeDate, "until");
    given(history(S::New))
        .when(triage(Triage::Snooze { until: day(1) }), &ctx(day(2)))
        .then_refused_on(Rule::SnoozeDate, "until");
}

#[test]
fn a_snoozed_opportunity_wakes_only_once_its_date_is_reached() {
    // history(Snoozed) sleeps until day 30.
    given(history(S::Snoozed))
        .when(OpportunityCommand::Wake, &ctx(Time(day(30).0 - 1)))
        .then_refused(Rule::SnoozeDate);
    let state = given(history(S::Snoozed))
        .when(OpportunityCommand::Wake, &ctx(day(30)))
        .then([OpportunityEvent::Woke]);
    assert_eq!(state.status, Some(S::UnderReview));
    assert_eq!(state.snoozed_until, None);
}

#[test]
fn a_snoozed_opportunity_is_not_triaged_before_it_wakes() {
    given(history(S::Snoozed))
        .when(triage(Triage::Accept { decision: None }), &ctx(day(40)))
        .then_refused(Rule::TransitionNotAllowed);
}

// Evidence.

#[test]
fn evidence_is_attached_once() {
    let evidence = feedback_evidence("f-1", day(3));
    let state = given(history(S::UnderReview))
        .when(
            OpportunityCommand::AttachEvidence(evidence.clone()),
            &ctx(day(3)),
        )
        .then([attached(evidence.clone())]);
    assert_eq!(state.evidence, vec![evidence.clone()]);
    assert_eq!(state.last_evidence_at, day(3));
    assert!(state.has_evidence(&entity(EntityKind::Feedback, "f-1")));

    let mut events = history(S::UnderReview);
    events.push(attached(evidence.clone()));
    given(events)
        .when(OpportunityCommand::AttachEvidence(evidence), &ctx(day(4)))
        .then_refused(Rule::AlreadyLinked);
}

#[test]
fn a_signal_is_evidence_with_its_observation() {
    let evidence = signal_evidence(
        "s-1",
        observation("build_latency_ms", 2400.0, day(1)),
        day(2),
    );
    given(history(S::New))
        .when(
            OpportunityCommand::AttachEvidence(evidence.clone()),
            &ctx(day(2)),
        )
        .then([attached(evidence)]);
}

#[test]
fn evidence_is_a_feedback_item_or_a_signal() {
    for kind in [
        EntityKind::Opportunity,
        EntityKind::Decision,
        EntityKind::Initiative,
    ] {
        given(history(S::New))
            .when(
                OpportunityCommand::AttachEvidence(Evidence {
                    reference: entity(kind, "x-1"),
                    observation: None,
                    attached_at: day(2),
                }),
                &ctx(day(2)),
            )
            .then_refused_on(Rule::InvalidField, "evidence");
    }
}

#[test]
fn feedback_evidence_carries_no_observation_and_signal_evidence_does() {
    // A feedback item with an observation would be read as a metric signal by the scoring.
    let mut feedback = feedback_evidence("f-1", day(2));
    feedback.observation = Some(observation("build_latency_ms", 1.0, day(1)));
    given(history(S::New))
        .when(OpportunityCommand::AttachEvidence(feedback), &ctx(day(2)))
        .then_refused_on(Rule::InvalidField, "observation");
    let mut signal = signal_evidence("s-1", observation("build_latency_ms", 1.0, day(1)), day(2));
    signal.observation = None;
    given(history(S::New))
        .when(OpportunityCommand::AttachEvidence(signal), &ctx(day(2)))
        .then_refused_on(Rule::InvalidField, "observation");
}

#[test]
fn evidence_is_limited() {
    let mut events = history(S::New);
    for i in 0..limits::EVIDENCE_MAX {
        events.push(attached(feedback_evidence(&format!("f-{i}"), day(1))));
    }
    given(events)
        .when(
            OpportunityCommand::AttachEvidence(feedback_evidence("f-one-more", day(2))),
            &ctx(day(2)),
        )
        .then_refused_on(Rule::Limit, "evidence");
}

// Votes and ratings.

#[test]
fn a_vote_is_recorded_and_the_latest_per_principal_wins() {
    let state = given(history(S::New))
        .when(
            OpportunityCommand::Vote {
                principal: principal("bob"),
                weight: 3,
                segment: Some("mobile".to_owned()),
            },
            &ctx_as("alice", day(2)),
        )
        .then([OpportunityEvent::Voted(VoteRecord {
            principal: principal("bob"),
            weight: 3,
            segment: Some("mobile".to_owned()),
            at: day(2),
        })]);
    assert_eq!(state.votes.len(), 1);

    let mut events = history(S::New);
    events.push(voted("bob", 3, day(2)));
    let state = given(events)
        .when(cast("bob", 1), &ctx(day(3)))
        .then([voted("bob", 1, day(3))]);
    assert_eq!(state.votes.len(), 1);
    assert_eq!(state.votes[&principal("bob")], vote("bob", 1, day(3)));
}

#[test]
fn a_vote_weighs_one_to_the_maximum() {
    for weight in [0, limits::VOTE_WEIGHT_MAX + 1] {
        given(history(S::New))
            .when(cast("bob", weight), &ctx(day(2)))
            .then_refused_on(Rule::Limit, "weight");
    }
    for weight in [1, limits::VOTE_WEIGHT_MAX] {
        given(history(S::New))
            .when(cast("bob", weight), &ctx(day(2)))
            .then([voted("bob", weight, day(2))]);
    }
    given(history(S::New))
        .when(
            OpportunityCommand::Vote {
                principal: principal("bob"),
                weight: 1,
                segment: Some("Mobile Apps".to_owned()),
            },
            &ctx(day(2)),
        )
        .then_refused_on(Rule::InvalidField, "segment");
}

#[test]
fn voters_are_limited_but_a_voter_may_always_change_their_vote() {
    let mut events = history(S::New);
    for i in 0..limits::VOTERS_MAX {
        events.push(voted(&format!("p-{i}"), 1, day(1)));
    }
    let full = given(events);
    let state = full.state().clone();
    assert_eq!(state.votes.len(), limits::VOTERS_MAX);
    full.when(cast("one-more", 1), &ctx(day(2)))
        .then_refused_on(Rule::Limit, "principal");
    let mut events = history(S::New);
    for i in 0..limits::VOTERS_MAX {
        events.push(voted(&format!("p-{i}"), 1, day(1)));
    }
    given(events)
        .when(cast("p-7", 4), &ctx(day(2)))
        .then([voted("p-7", 4, day(2))]);
}

fn rated(name: &str, value: f64, by: &str, at: Time) -> OpportunityEvent {
    OpportunityEvent::Rated {
        name: name.to_owned(),
        rating: RatingRecord {
            value,
            by: principal(by),
            at,
            rationale: "seen in every team".to_owned(),
        },
    }
}

#[test]
fn a_rating_is_the_actors_and_the_latest_per_name_wins() {
    given(history(S::New))
        .when(rate("customer_impact", 4.0), &ctx_as("dave", day(2)))
        .then([rated("customer_impact", 4.0, "dave", day(2))]);
    let mut events = history(S::New);
    events.push(rated("customer_impact", 4.0, "dave", day(2)));
    let state = given(events)
        .when(rate("customer_impact", 2.0), &ctx_as("erin", day(3)))
        .then([rated("customer_impact", 2.0, "erin", day(3))]);
    assert_eq!(state.ratings.len(), 1);
    let rating = &state.ratings["customer_impact"];
    assert_eq!(
        (rating.value, rating.by.clone(), rating.at),
        (2.0, principal("erin"), day(3))
    );
}

#[test]
fn a_rating_is_checked() {
    given(history(S::New))
        .when(rate("Customer Impact", 1.0), &ctx(day(2)))
        .then_refused_on(Rule::InvalidField, "name");
    for bad in [f64::NAN, f64::INFINITY, limits::NUMBER_ABS_MAX * 10.0] {
        given(history(S::New))
            .when(rate("customer_impact", bad), &ctx(day(2)))
            .then_refused_on(Rule::Limit, "value");
    }
    given(history(S::New))
        .when(
            OpportunityCommand::Rate {
                name: "effort".to_owned(),
                value: 1.0,
                rationale: "r".repeat(limits::REASON_BYTES_MAX + 1),
            },
            &ctx(day(2)),
        )
        .then_refused_on(Rule::Limit, "rationale");
}

#[test]
fn votes_and_ratings_are_frozen_in_closed_states_and_open_while_snoozed() {
    for status in [
        S::Shipped,
        S::Validated,
        S::NotValidated,
        S::Declined,
        S::AgedOut,
    ] {
        given(history(status))
            .when(cast("bob", 1), &ctx(day(50)))
            .then_refused(Rule::VotesFrozen);
        given(history(status))
            .when(rate("customer_impact", 1.0), &ctx(day(50)))
            .then_refused(Rule::VotesFrozen);
    }
    given(history(S::Snoozed))
        .when(cast("bob", 1), &ctx(day(50)))
        .then([voted("bob", 1, day(50))]);
}

// Aging out and reopening.

#[test]
fn the_aging_rule_holds_after_the_idle_days_with_a_low_score() {
    // Created on day 0; 90 days later exactly, the rule holds.
    let state = given(history(S::UnderReview))
        .when(OpportunityCommand::AgeOut(stale_rule()), &ctx(day(90)))
        .then([OpportunityEvent::AgedOut {
            rule: "stale".to_owned(),
            rule_version: 1,
            reason: "no new evidence for 90 days (rule: 90) and score 0 below 10".to_owned(),
        }]);
    assert_eq!(state.status, Some(S::AgedOut));
    assert_eq!(state.status_before_aging, Some(S::UnderReview));
}

#[test]
fn the_aging_rule_does_not_hold_a_day_early() {
    given(history(S::UnderReview))
        .when(
            OpportunityCommand::AgeOut(stale_rule()),
            &ctx(Time(day(90).0 - 1)),
        )
        .then_refused(Rule::AgingRuleNotMet);
}

#[test]
fn recent_evidence_keeps_an_opportunity_from_aging_out() {
    let mut events = history(S::UnderReview);
    events.push(attached(feedback_evidence("f-1", day(50))));
    given(events.clone())
        .when(OpportunityCommand::AgeOut(stale_rule()), &ctx(day(100)))
        .then_refused(Rule::AgingRuleNotMet);
    // 90 days after that evidence, it ages out.
    given(events)
        .when(OpportunityCommand::AgeOut(stale_rule()), &ctx(day(140)))
        .then([OpportunityEvent::AgedOut {
            rule: "stale".to_owned(),
            rule_version: 1,
            reason: "no new evidence for 90 days (rule: 90) and score 0 below 10".to_owned(),
        }]);
}

#[test]
fn a_high_score_keeps_an_opportunity_from_aging_out() {
    let with_score = |value: f64| {
        let mut events = history(S::New);
        let mut snapshot = nothing_scored().snapshot(day(1));
        snapshot.value = value;
        events.push(OpportunityEvent::Scored(snapshot));
        events
    };
    // At the threshold is not below it.
    for value in [10.0, 25.0] {
        given(with_score(value))
            .when(OpportunityCommand::AgeOut(stale_rule()), &ctx(day(200)))
            .then_refused(Rule::AgingRuleNotMet);
    }
    given(with_score(9.5))
        .when(OpportunityCommand::AgeOut(stale_rule()), &ctx(day(200)))
        .then([OpportunityEvent::AgedOut {
            rule: "stale".to_owned(),
            rule_version: 1,
            reason: "no new evidence for 200 days (rule: 90) and score 9.5 below 10".to_owned(),
        }]);
}

#[test]
fn a_rule_applies_only_to_its_statuses() {
    for status in [S::Planned, S::InProgress] {
        given(history(status))
            .when(OpportunityCommand::AgeOut(stale_rule()), &ctx(day(200)))
            .then_refused(Rule::TransitionNotAllowed);
    }
    // A rule naming planned ages a planned opportunity out, and evidence returns it there.
    let planned_rule = AgingRule {
        statuses: vec![S::Planned],
        ..stale_rule()
    };
    let state = given(history(S::Planned))
        .when(
            OpportunityCommand::AgeOut(planned_rule.clone()),
            &ctx(day(200)),
        )
        .then_accepted()
        .1;
    assert_eq!(state.status_before_aging, Some(S::Planned));
    given(history(S::New))
        .when(OpportunityCommand::AgeOut(planned_rule), &ctx(day(200)))
        .then_refused(Rule::TransitionNotAllowed);
}

#[test]
fn an_invalid_aging_rule_ages_nothing_out() {
    // A rule naming a closed status would age a shipped or an aged-out opportunity out.
    for status in [S::Shipped, S::AgedOut] {
        let rule = AgingRule {
            statuses: vec![status],
            ..stale_rule()
        };
        given(history(status))
            .when(OpportunityCommand::AgeOut(rule), &ctx(day(200)))
            .then_refused_on(Rule::InvalidField, "statuses");
    }
    let rule = AgingRule {
        no_evidence_days: 0,
        ..stale_rule()
    };
    given(history(S::New))
        .when(OpportunityCommand::AgeOut(rule), &ctx(day(200)))
        .then_refused_on(Rule::InvalidField, "no_evidence_days");
}

#[test]
fn new_evidence_reopens_an_aged_out_opportunity_to_its_prior_status() {
    let evidence = feedback_evidence("f-1", day(200));
    let state = given(history(S::AgedOut))
        .when(
            OpportunityCommand::AttachEvidence(evidence.clone()),
            &ctx(day(200)),
        )
        .then([
            attached(evidence),
            OpportunityEvent::Reopened {
                status: S::UnderReview,
                by: entity(EntityKind::Feedback, "f-1"),
            },
        ]);
    assert_eq!(state.status, Some(S::UnderReview));
    assert_eq!(state.status_before_aging, None);
    assert_eq!(state.last_evidence_at, day(200));

    // A snoozed opportunity that aged out returns to its snooze.
    let mut events = history(S::Snoozed);
    events.push(aged_out());
    let (_, state) = given(events)
        .when(
            OpportunityCommand::AttachEvidence(feedback_evidence("f-1", day(200))),
            &ctx(day(200)),
        )
        .then_accepted();
    assert_eq!(state.status, Some(S::Snoozed));
}

#[test]
fn a_reopened_opportunity_does_not_age_out_again_at_once() {
    let mut events = history(S::AgedOut);
    events.push(attached(feedback_evidence("f-1", day(200))));
    events.push(OpportunityEvent::Reopened {
        status: S::UnderReview,
        by: entity(EntityKind::Feedback, "f-1"),
    });
    given(events)
        .when(OpportunityCommand::AgeOut(stale_rule()), &ctx(day(201)))
        .then_refused(Rule::AgingRuleNotMet);
}

// Absorbing a duplicate.

#[test]
fn absorbing_merges_votes_latest_wins() {
    let mut events = history(S::UnderReview);
    events.push(voted("bob", 1, day(5)));
    events.push(voted("carol", 2, day(5)));
    let incoming = vec![
        // Older than bob's vote here: bob's stays.
        vote("bob", 9, day(3)),
        // Newer than carol's vote here: it replaces it.
        vote("carol", 4, day(6)),
        // A new voter.
        vote("dave", 3, day(4)),
    ];
    let state = given(events)
        .when(absorb(vec![], incoming.clone()), &ctx(day(7)))
        .then([OpportunityEvent::DuplicateAbsorbed {
            duplicate: id("o-3"),
            evidence: vec![],
            votes: incoming,
        }]);
    assert_eq!(state.votes.len(), 3);
    assert_eq!(state.votes[&principal("bob")], vote("bob", 1, day(5)));
    assert_eq!(state.votes[&principal("carol")], vote("carol", 4, day(6)));
    assert_eq!(state.votes[&principal("dave")], vote("dave", 3, day(4)));
}

#[test]
fn absorbing_takes_only_evidence_not_already_here() {
    let f1 = feedback_evidence("f-1", day(1));
    let f2 = feedback_evidence("f-2", day(2));
    let mut events = history(S::UnderReview);
    events.push(attached(f1.clone()));
    let state = given(events)
        .when(
            // f-2 twice: a duplicate list is taken once.
            absorb(vec![f1.clone(), f2.clone(), f2.clone()], vec![]),
            &ctx(day(7)),
        )
        .then([OpportunityEvent::DuplicateAbsorbed {
            duplicate: id("o-3"),
            evidence: vec![f2.clone()],
            votes: vec![],
        }]);
    assert_eq!(state.evidence, vec![f1, f2]);
    assert_eq!(state.last_evidence_at, day(2));
}

#[test]
fn a_closed_canonical_opportunity_takes_the_evidence_but_not_the_votes() {
    for status in [S::Shipped, S::Validated, S::NotValidated, S::Declined] {
        let evidence = feedback_evidence("f-2", day(2));
        let state = given(history(status))
            .when(
                absorb(vec![evidence.clone()], vec![vote("erin", 1, day(2))]),
                &ctx(day(7)),
            )
            .then([OpportunityEvent::DuplicateAbsorbed {
                duplicate: id("o-3"),
                evidence: vec![evidence],
                votes: vec![],
            }]);
        assert!(state.votes.is_empty());
        assert_eq!(state.status, Some(status));
    }
}

#[test]
fn absorbed_evidence_reopens_an_aged_out_canonical_opportunity() {
    let evidence = feedback_evidence("f-2", day(150));
    let votes = vec![vote("erin", 1, day(150))];
    let state = given(history(S::AgedOut))
        .when(
            absorb(vec![evidence.clone()], votes.clone()),
            &ctx(day(200)),
        )
        .then([
            OpportunityEvent::DuplicateAbsorbed {
                duplicate: id("o-3"),
                evidence: vec![evidence],
                votes,
            },
            OpportunityEvent::Reopened {
                status: S::UnderReview,
                by: entity(EntityKind::Feedback, "f-2"),
            },
        ]);
    assert_eq!(state.status, Some(S::UnderReview));
    assert_eq!(state.votes.len(), 1);
    // Evidence it already had does not reopen it, and its votes stay frozen.
    let mut events = history(S::AgedOut);
    events.insert(1, attached(feedback_evidence("f-1", day(0))));
    let state = given(events)
        .when(
            absorb(
                vec![feedback_evidence("f-1", day(0))],
                vec![vote("erin", 1, day(150))],
            ),
            &ctx(day(200)),
        )
        .then([OpportunityEvent::DuplicateAbsorbed {
            duplicate: id("o-3"),
            evidence: vec![],
            votes: vec![],
        }]);
    assert_eq!(state.status, Some(S::AgedOut));
}

#[test]
fn a_duplicate_does_not_absorb() {
    given(history(S::Duplicate))
        .when(absorb(vec![], vec![]), &ctx(day(7)))
        .then_refused_on(Rule::InvalidCanonical, "canonical");
}

// Scoring.

fn scored_history(status: OpportunityStatus) -> Vec<OpportunityEvent> {
    let mut events = history(status);
    events.push(scored(nothing_scored(), day(0)));
    events
}

#[test]
fn a_vote_under_a_model_rescores_once() {
    let model = simple_model(1, 10.0);
    given(scored_history(S::New))
        .when(cast("bob", 3), &ctx_scored(day(2), &model))
        .then([
            voted("bob", 3, day(2)),
            scored(
                Expected {
                    vote_weights: 3.0,
                    voters: 1,
                    ..nothing_scored()
                },
                day(2),
            ),
        ]);
}

#[test]
fn the_same_vote_again_does_not_rescore() {
    let model = simple_model(1, 10.0);
    let mut events = scored_history(S::New);
    events.push(voted("bob", 3, day(2)));
    events.push(scored(
        Expected {
            vote_weights: 3.0,
            voters: 1,
            ..nothing_scored()
        },
        day(2),
    ));
    given(events)
        .when(cast("bob", 3), &ctx_scored(day(3), &model))
        .then([voted("bob", 3, day(3))]);
}

#[test]
fn a_rating_and_feedback_rescore() {
    let model = simple_model(1, 10.0);
    given(scored_history(S::New))
        .when(rate("customer_impact", 4.0), &ctx_scored(day(2), &model))
        .then([
            rated("customer_impact", 4.0, "alice", day(2)),
            scored(
                Expected {
                    impact: Some((4.0, "alice", day(2))),
                    ..nothing_scored()
                },
                day(2),
            ),
        ]);
    given(scored_history(S::New))
        .when(
            OpportunityCommand::AttachEvidence(feedback_evidence("f-1", day(2))),
            &ctx_scored(day(2), &model),
        )
        .then([
            attached(feedback_evidence("f-1", day(2))),
            scored(
                Expected {
                    feedback_items: 1,
                    ..nothing_scored()
                },
                day(2),
            ),
        ]);
}

#[test]
fn a_rating_of_no_factor_and_a_signal_no_factor_reads_do_not_rescore() {
    let model = simple_model(1, 10.0);
    given(scored_history(S::New))
        .when(rate("effort", 2.0), &ctx_scored(day(2), &model))
        .then([rated("effort", 2.0, "alice", day(2))]);
    let evidence = signal_evidence("s-1", observation("build_latency_ms", 1.0, day(1)), day(2));
    given(scored_history(S::New))
        .when(
            OpportunityCommand::AttachEvidence(evidence.clone()),
            &ctx_scored(day(2), &model),
        )
        .then([attached(evidence)]);
}

#[test]
fn status_changes_do_not_rescore_when_the_inputs_are_unchanged() {
    let model = simple_model(1, 10.0);
    given(scored_history(S::New))
        .when(OpportunityCommand::StartReview, &ctx_scored(day(2), &model))
        .then([OpportunityEvent::ReviewStarted]);
    // The first command under a model scores an opportunity that has no score yet.
    given(history(S::New))
        .when(OpportunityCommand::StartReview, &ctx_scored(day(2), &model))
        .then([
            OpportunityEvent::ReviewStarted,
            scored(nothing_scored(), day(2)),
        ]);
}

#[test]
fn a_duplicate_is_not_scored() {
    let model = simple_model(1, 10.0);
    let mut events = history(S::New);
    events.push(voted("bob", 3, day(1)));
    given(events)
        .when(
            triage(Triage::Duplicate {
                canonical: id("o-2"),
            }),
            &ctx_scored(day(2), &model),
        )
        .then([OpportunityEvent::MarkedDuplicate {
            canonical: id("o-2"),
            evidence: vec![],
            votes: vec![vote("bob", 3, day(1))],
        }]);
}

#[test]
fn rescore_records_a_snapshot_only_when_the_model_changes_the_score() {
    let model = simple_model(1, 10.0);
    // Unchanged, even later: nothing.
    given(scored_history(S::New))
        .when(OpportunityCommand::Rescore, &ctx_scored(day(9), &model))
        .then([]);
    // A new version of the model: exactly one snapshot, naming it.
    let mut model_v2 = simple_model(2, 20.0);
    model_v2.digest = "d2".to_owned();
    let mut events = scored_history(S::New);
    events.push(OpportunityEvent::Rated {
        name: "customer_impact".to_owned(),
        rating: RatingRecord {
            value: 5.0,
            by: principal("dave"),
            at: day(1),
            rationale: String::new(),
        },
    });
    let (produced, _) = given(events)
        .when(OpportunityCommand::Rescore, &ctx_scored(day(9), &model_v2))
        .then_accepted();
    assert_eq!(produced.len(), 1, "{produced:#?}");
    let OpportunityEvent::Scored(snapshot) = &produced[0] else {
        panic!("not a snapshot: {produced:#?}");
    };
    assert_eq!(
        (snapshot.model_version, snapshot.model_digest.as_str()),
        (2, "d2")
    );
    // 5 of 5 is 1, times the new weight 20.
    assert_eq!(snapshot.value, 20.0);
    assert_eq!(snapshot.computed_at, day(9));
}

#[test]
fn rescore_needs_a_model() {
    given(scored_history(S::New))
        .when(OpportunityCommand::Rescore, &ctx(day(9)))
        .then_refused(Rule::NoScoringModel);
}

#[test]
fn without_a_model_nothing_is_scored() {
    given(history(S::New))
        .when(cast("bob", 3), &ctx(day(2)))
        .then([voted("bob", 3, day(2))]);
}

#[test]
fn status_names_parse_back_and_closed_states_are_not_ranked() {
    for status in OpportunityStatus::ALL {
        assert_eq!(OpportunityStatus::parse(status.as_str()), Some(status));
    }
    let closed: Vec<_> = OpportunityStatus::ALL
        .into_iter()
        .filter(|s| s.is_closed())
        .collect();
    assert_eq!(
        closed,
        vec![
            S::Shipped,
            S::Validated,
            S::NotValidated,
            S::Declined,
            S::Duplicate,
            S::AgedOut
        ]
    );
    let ranked: Vec<_> = OpportunityStatus::ALL
        .into_iter()
        .filter(|s| s.is_ranked())
        .collect();
    assert_eq!(
        ranked,
        vec![S::New, S::UnderReview, S::Planned, S::InProgress]
    );
}

#[test]
fn a_command_of_several_events_rescores_once_after_all_of_them() {
    let model = simple_model(1, 10.0);
    let mut events = history(S::AgedOut);
    events.push(scored(nothing_scored(), day(0)));
    let evidence = feedback_evidence("f-1", day(200));
    given(events.clone())
        .when(
            OpportunityCommand::AttachEvidence(evidence.clone()),
            &ctx_scored(day(200), &model),
        )
        .then([
            attached(evidence),
            OpportunityEvent::Reopened {
                status: S::UnderReview,
                by: entity(EntityKind::Feedback, "f-1"),
            },
            scored(
                Expected {
                    feedback_items: 1,
                    ..nothing_scored()
                },
                day(200),
            ),
        ]);
    // Absorbing evidence and votes at once: one snapshot with both.
    let absorbed_evidence = vec![
        feedback_evidence("f-2", day(150)),
        feedback_evidence("f-3", day(150)),
    ];
    let absorbed_votes = vec![vote("bob", 2, day(150)), vote("carol", 3, day(150))];
    given(events)
        .when(
            absorb(absorbed_evidence.clone(), absorbed_votes.clone()),
            &ctx_scored(day(200), &model),
        )
        .then([
            OpportunityEvent::DuplicateAbsorbed {
                duplicate: id("o-3"),
                evidence: absorbed_evidence,
                votes: absorbed_votes,
            },
            OpportunityEvent::Reopened {
                status: S::UnderReview,
                by: entity(EntityKind::Feedback, "f-2"),
            },
            scored(
                Expected {
                    vote_weights: 5.0,
                    voters: 2,
                    feedback_items: 2,
                    impact: None,
                },
                day(200),
            ),
        ]);
}
