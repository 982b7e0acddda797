//! What every test of this crate shares: the given/when/then harness for aggregates (in the
//! manner of cqrs-es `TestFramework`), short constructors for ids, times and contexts, and
//! fixtures for the content of commands.
//!
//! Each test binary uses part of it, so unused items are allowed here.

#![allow(dead_code)]

pub mod samples;

use std::fmt::Debug;

use cairn_domain::decision::{Decision, DecisionContent, DecisionEvent, DecisionKind};
use cairn_domain::feedback::{Feedback, FeedbackContent, FeedbackEvent, FeedbackSource};
use cairn_domain::initiative::{Initiative, InitiativeDraft, InitiativeEvent};
use cairn_domain::opportunity::{
    Evidence, Opportunity, OpportunityDraft, OpportunityEvent, Size, VoteRecord,
};
use cairn_domain::scoring::ScoringModel;
use cairn_domain::signal::{Direction, Measurement, Observation, Percentiles, Signal, SignalEvent};
use cairn_domain::{
    Aggregate, Ctx, DAY_MICROS, DomainError, EntityId, EntityKind, EntityRef, PrincipalId, Rule,
    Team, Time, Visibility,
};

/// The aggregate an event type belongs to, so `given(events)` needs no type annotation.
pub trait EventOf: Sized {
    /// The aggregate.
    type Aggregate: Aggregate<Event = Self>;
}

impl EventOf for FeedbackEvent {
    type Aggregate = Feedback;
}

impl EventOf for SignalEvent {
    type Aggregate = Signal;
}

impl EventOf for OpportunityEvent {
    type Aggregate = Opportunity;
}

impl EventOf for DecisionEvent {
    type Aggregate = Decision;
}

impl EventOf for InitiativeEvent {
    type Aggregate = Initiative;
}

/// The state folded from `events`: the "given" of a test.
pub fn given<E: EventOf>(events: impl IntoIterator<Item = E>) -> Given<E::Aggregate> {
    let events: Vec<E> = events.into_iter().collect();
    Given {
        state: E::Aggregate::fold(&events),
    }
}

/// An aggregate that does not exist yet.
pub fn given_nothing<A: Aggregate>() -> Given<A> {
    Given {
        state: A::default(),
    }
}

/// A state to decide a command against.
pub struct Given<A: Aggregate> {
    state: A,
}

impl<A> Given<A>
where
    A: Aggregate + Debug + PartialEq,
    A::Event: Debug + PartialEq,
{
    /// The folded state, to check what `apply` did with the given events.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Decides `command` at `ctx`.
    pub fn when(self, command: A::Command, ctx: &Ctx<'_>) -> Then<A> {
        let before = self.state.clone();
        let result = self.state.decide(command, ctx);
        // decide takes &self, but a Cell or a clone-on-write in the state could still break
        // the promise that deciding changes nothing.
        assert_eq!(self.state, before, "decide changed the state");
        Then {
            state: self.state,
            result,
        }
    }
}

/// The outcome of a decision, to be checked.
pub struct Then<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, DomainError>,
}

impl<A> Then<A>
where
    A: Aggregate + Debug + PartialEq,
    A::Event: Debug + PartialEq,
{
    /// Asserts the command produced exactly `expected`, and returns the state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => assert_eq!(events, expected, "the events differ"),
            Err(error) => panic!("expected {expected:#?}, the command was refused: {error}"),
        }
        let mut state = self.state;
        for event in &expected {
            state.apply(event);
        }
        state
    }

    /// Asserts the command was accepted, and returns its events (for a check the caller makes
    /// itself) and the state after them.
    #[track_caller]
    pub fn then_accepted(self) -> (Vec<A::Event>, A) {
        let events = match self.result {
            Ok(events) => events,
            Err(error) => panic!("expected events, the command was refused: {error}"),
        };
        let mut state = self.state;
        for event in &events {
            state.apply(event);
        }
        (events, state)
    }

    /// Asserts the command was refused under `rule`, with no field named.
    #[track_caller]
    pub fn then_refused(self, rule: Rule) -> DomainError {
        let error = self.refusal(rule);
        assert_eq!(error.field, None, "a refusal naming no field: {error}");
        error
    }

    /// Asserts the command was refused under `rule`, naming `field`.
    #[track_caller]
    pub fn then_refused_on(self, rule: Rule, field: &str) -> DomainError {
        let error = self.refusal(rule);
        assert_eq!(error.field, Some(field), "the field at fault: {error}");
        error
    }

    #[track_caller]
    fn refusal(self, rule: Rule) -> DomainError {
        match self.result {
            Ok(events) => panic!("expected a refusal under {rule}, got {events:#?}"),
            Err(error) => {
                assert_eq!(error.rule, rule, "the rule broken: {error}");
                check_message(&error.message);
                error
            }
        }
    }
}

/// A refusal's message: something to read, lowercase, no trailing period (STYLE.md).
#[track_caller]
pub fn check_message(message: &str) {
    assert!(!message.is_empty(), "an empty message");
    assert!(!message.ends_with('.'), "a trailing period: {message:?}");
    let first = message.chars().next().expect("not empty");
    assert!(!first.is_uppercase(), "not lowercase: {message:?}");
}

/// Day `n` after the epoch.
pub fn day(n: i64) -> Time {
    Time(n * DAY_MICROS)
}

/// An entity id.
pub fn id(text: &str) -> EntityId {
    EntityId::new(text).expect("a valid id")
}

/// A principal.
pub fn principal(text: &str) -> PrincipalId {
    PrincipalId::new(text).expect("a valid principal")
}

/// A team.
pub fn team(text: &str) -> Team {
    Team::new(text).expect("a valid team")
}

/// A reference.
pub fn entity(kind: EntityKind, text: &str) -> EntityRef {
    EntityRef::new(kind, id(text))
}

/// `alice` acting at `now`, with no scoring model in force.
pub fn ctx(now: Time) -> Ctx<'static> {
    Ctx {
        now,
        actor: principal("alice"),
        scoring: None,
    }
}

/// `actor` acting at `now`, with no scoring model in force.
pub fn ctx_as(actor: &str, now: Time) -> Ctx<'static> {
    Ctx {
        now,
        actor: principal(actor),
        scoring: None,
    }
}

/// `alice` acting at `now` under `model`.
pub fn ctx_scored(now: Time, model: &ScoringModel) -> Ctx<'_> {
    Ctx {
        now,
        actor: principal("alice"),
        scoring: Some(model),
    }
}

/// Strings from string slices.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Feedback from bob, or anonymous feedback when `submitter` is `None`.
pub fn feedback_content(submitter: Option<&str>) -> FeedbackContent {
    FeedbackContent {
        text: "the build takes forty minutes".to_owned(),
        submitter: submitter.map(principal),
    }
}

/// A plain feedback source, for fixtures.
pub const SURVEY: FeedbackSource = FeedbackSource::Survey;

/// An observation of `metric`: `value`, observed at `observed_at`.
pub fn observation(metric: &str, value: f64, observed_at: Time) -> Observation {
    Observation {
        metric: metric.to_owned(),
        unit: "ms".to_owned(),
        direction: Direction::LowerIsBetter,
        service: Some("build".to_owned()),
        team: Some(team("platform")),
        window_seconds: 3600,
        measurement: Measurement {
            value: Some(value),
            percentiles: None,
        },
        source: "prometheus".to_owned(),
        observed_at,
    }
}

/// An observation of `metric` with percentiles only.
pub fn observation_percentiles(
    metric: &str,
    percentiles: Percentiles,
    observed_at: Time,
) -> Observation {
    Observation {
        measurement: Measurement {
            value: None,
            percentiles: Some(percentiles),
        },
        ..observation(metric, 0.0, observed_at)
    }
}

/// A feedback item as evidence.
pub fn feedback_evidence(feedback: &str, attached_at: Time) -> Evidence {
    Evidence {
        reference: entity(EntityKind::Feedback, feedback),
        observation: None,
        attached_at,
    }
}

/// A signal as evidence, with its observation.
pub fn signal_evidence(signal: &str, observation: Observation, attached_at: Time) -> Evidence {
    Evidence {
        reference: entity(EntityKind::Signal, signal),
        observation: Some(observation),
        attached_at,
    }
}

/// A vote record.
pub fn vote(principal_id: &str, weight: u32, at: Time) -> VoteRecord {
    VoteRecord {
        principal: principal(principal_id),
        weight,
        segment: None,
        at,
    }
}

/// An opportunity's content.
pub fn opportunity_draft() -> OpportunityDraft {
    OpportunityDraft {
        title: "Slow CI builds".to_owned(),
        problem: "builds take forty minutes on the main branch".to_owned(),
        owner: principal("carol"),
        team: team("platform"),
        size: Some(Size::M),
        outcome_tags: strings(&["developer-time"]),
        visibility: Visibility::Team,
    }
}

/// A decision's content: decided by `deciders`.
pub fn decision_content(deciders: &[&str]) -> DecisionContent {
    DecisionContent {
        kind: DecisionKind::Architecture,
        title: "Cache build artefacts".to_owned(),
        team: team("platform"),
        context: "builds are slow".to_owned(),
        drivers: strings(&["developer time"]),
        options: strings(&["remote cache", "bigger runners"]),
        outcome: "remote cache".to_owned(),
        consequences: strings(&["a cache to run"]),
        deciders: deciders.iter().map(|d| principal(d)).collect(),
        consulted: vec![principal("erin")],
        informed: vec![],
        subjects: vec![entity(EntityKind::Opportunity, "o-1")],
        supersedes: None,
        visibility: Visibility::Open,
    }
}

/// An initiative's content, from day 10 to day 100.
pub fn initiative_draft() -> InitiativeDraft {
    InitiativeDraft {
        title: "Remote build cache".to_owned(),
        goal: "halve build time".to_owned(),
        owners: vec![principal("carol")],
        team: team("platform"),
        target: "p95 build time under 20 minutes".to_owned(),
        scope: "main branch CI".to_owned(),
        start: day(10),
        target_date: day(100),
        implements: vec![id("o-1")],
        outcome_tags: strings(&["developer-time"]),
        visibility: Visibility::Open,
    }
}
