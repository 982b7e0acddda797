//! Short steps for hand-written scenarios: each runs one domain command and panics if the domain
//! refuses it (a scenario that is refused is a broken test).

use cairn_domain::decision::{Decision, DecisionCommand, DecisionContent, DecisionKind};
use cairn_domain::feedback::{Feedback, FeedbackCommand, FeedbackContent, FeedbackSource};
use cairn_domain::initiative::{Initiative, InitiativeCommand, InitiativeDraft};
use cairn_domain::opportunity::{
    Evidence, Opportunity, OpportunityCommand, OpportunityDraft, Triage, Validation,
};
use cairn_domain::scoring::AgingRule;
use cairn_domain::signal::{Direction, Measurement, Observation, Signal, SignalCommand};
use cairn_domain::{EntityId, EntityKind, EntityRef, PrincipalId, Team, Time, Visibility};
use cairn_ledger::Position;

use super::Driver;

pub const LEAD: &str = "u-lead";

pub fn id(text: &str) -> EntityId {
    EntityId::new(text).expect("id")
}

pub fn entity(kind: EntityKind, text: &str) -> EntityRef {
    EntityRef::new(kind, id(text))
}

fn last(positions: Vec<Position>) -> Position {
    *positions.last().expect("the command recorded events")
}

pub async fn feedback(d: &mut Driver, tenant: &str, feedback: &str, team: &str) -> Position {
    let command = FeedbackCommand::Submit {
        id: id(feedback),
        content: FeedbackContent {
            text: "the build is slow".into(),
            submitter: Some(PrincipalId::new("u-ann").unwrap()),
        },
        team: Team::new(team).unwrap(),
        source: FeedbackSource::Survey,
        tags: vec![],
        outcome_tags: vec!["developer-time".into()],
        visibility: Visibility::Open,
    };
    last(
        d.run::<Feedback>(tenant, feedback, "u-ann", command)
            .await
            .unwrap(),
    )
}

pub fn observation(value: f64, at: Time) -> Observation {
    Observation {
        metric: "latency_ms".into(),
        unit: "ms".into(),
        direction: Direction::LowerIsBetter,
        service: None,
        team: None,
        window_seconds: 60,
        measurement: Measurement {
            value: Some(value),
            percentiles: None,
        },
        source: "prometheus".into(),
        observed_at: at,
    }
}

pub async fn signal(d: &mut Driver, tenant: &str, signal: &str, value: f64) -> Position {
    let command = SignalCommand::Record {
        id: id(signal),
        observation: observation(value, d.now),
    };
    last(
        d.run::<Signal>(tenant, signal, "svc:prometheus", command)
            .await
            .unwrap(),
    )
}

pub async fn opportunity(d: &mut Driver, tenant: &str, opportunity: &str, team: &str) -> Position {
    let command = OpportunityCommand::Create {
        id: id(opportunity),
        draft: OpportunityDraft {
            title: format!("title of {opportunity}"),
            problem: "problem".into(),
            owner: PrincipalId::new(LEAD).unwrap(),
            team: Team::new(team).unwrap(),
            size: None,
            outcome_tags: vec![],
            visibility: Visibility::Open,
        },
    };
    last(
        d.run::<Opportunity>(tenant, opportunity, LEAD, command)
            .await
            .unwrap(),
    )
}

/// Runs an opportunity command; the last position it recorded.
pub async fn on_opportunity(
    d: &mut Driver,
    tenant: &str,
    opportunity: &str,
    command: OpportunityCommand,
) -> Position {
    last(
        d.run::<Opportunity>(tenant, opportunity, LEAD, command)
            .await
            .unwrap(),
    )
}

pub async fn vote(
    d: &mut Driver,
    tenant: &str,
    opportunity: &str,
    principal: &str,
    weight: u32,
) -> Position {
    let command = OpportunityCommand::Vote {
        principal: PrincipalId::new(principal).unwrap(),
        weight,
        segment: None,
    };
    last(
        d.run::<Opportunity>(tenant, opportunity, principal, command)
            .await
            .unwrap(),
    )
}

/// Attaches a feedback item (and links it) or a signal as evidence.
pub async fn evidence(d: &mut Driver, tenant: &str, opportunity: &str, of: EntityRef) -> Position {
    let observation = match of.kind {
        EntityKind::Signal => {
            let (state, _) = d.state::<Signal>(tenant, of.id.as_str()).await;
            state.observation
        }
        _ => None,
    };
    let now = d.now;
    let attached = on_opportunity(
        d,
        tenant,
        opportunity,
        OpportunityCommand::AttachEvidence(Evidence {
            reference: of.clone(),
            observation,
            attached_at: now,
        }),
    )
    .await;
    if of.kind != EntityKind::Feedback {
        return attached;
    }
    last(
        d.run::<Feedback>(
            tenant,
            of.id.as_str(),
            LEAD,
            FeedbackCommand::Link {
                opportunity: id(opportunity),
            },
        )
        .await
        .unwrap(),
    )
}

/// Proposes and accepts a decision on `subjects`, superseding `supersedes` if given.
pub async fn decision(
    d: &mut Driver,
    tenant: &str,
    decision: &str,
    subjects: Vec<EntityRef>,
    supersedes: Option<&str>,
) -> Position {
    let content = DecisionContent {
        kind: DecisionKind::Triage,
        title: format!("decision {decision}"),
        team: Team::new("platform").unwrap(),
        context: String::new(),
        drivers: vec![],
        options: vec![],
        outcome: "do it".into(),
        consequences: vec![],
        deciders: vec![PrincipalId::new(LEAD).unwrap()],
        consulted: vec![],
        informed: vec![],
        subjects,
        supersedes: supersedes.map(id),
        visibility: Visibility::Open,
    };
    d.run::<Decision>(
        tenant,
        decision,
        LEAD,
        DecisionCommand::Propose {
            id: id(decision),
            content,
        },
    )
    .await
    .unwrap();
    last(
        d.run::<Decision>(tenant, decision, LEAD, DecisionCommand::Accept)
            .await
            .unwrap(),
    )
}

pub async fn supersede(d: &mut Driver, tenant: &str, old: &str, by: &str) -> Position {
    last(
        d.run::<Decision>(
            tenant,
            old,
            LEAD,
            DecisionCommand::MarkSuperseded { by: id(by) },
        )
        .await
        .unwrap(),
    )
}

pub async fn initiative(
    d: &mut Driver,
    tenant: &str,
    initiative: &str,
    implements: &[&str],
) -> Position {
    let now = d.now;
    let command = InitiativeCommand::Create {
        id: id(initiative),
        draft: InitiativeDraft {
            title: "initiative".into(),
            goal: "goal".into(),
            owners: vec![PrincipalId::new(LEAD).unwrap()],
            team: Team::new("platform").unwrap(),
            target: "target".into(),
            scope: "scope".into(),
            start: now,
            target_date: Time(now.0 + 10 * cairn_domain::DAY_MICROS),
            implements: implements.iter().map(|o| id(o)).collect(),
            outcome_tags: vec![],
            visibility: Visibility::Open,
        },
    };
    last(
        d.run::<Initiative>(tenant, initiative, LEAD, command)
            .await
            .unwrap(),
    )
}

/// Accepts an opportunity under a decision that decides it, then starts, ships and validates
/// it with a signal.
pub async fn ship_and_validate(
    d: &mut Driver,
    tenant: &str,
    opportunity: &str,
    verifying_signal: &str,
) -> Position {
    for command in [
        OpportunityCommand::StartWork,
        OpportunityCommand::Ship,
        OpportunityCommand::Validate {
            outcome: Validation::Validated,
            signal: Some(id(verifying_signal)),
        },
    ] {
        on_opportunity(d, tenant, opportunity, command).await;
    }
    d.head().await
}

pub fn triage(triage: Triage) -> OpportunityCommand {
    OpportunityCommand::Triage(triage)
}

/// An aging rule that holds for any opportunity idle a day with a score under 100.
pub fn eager_aging_rule() -> AgingRule {
    AgingRule {
        name: "idle-a-day".into(),
        version: 2,
        no_evidence_days: 1,
        score_below: 100.0,
        statuses: vec![
            cairn_domain::opportunity::OpportunityStatus::New,
            cairn_domain::opportunity::OpportunityStatus::UnderReview,
            cairn_domain::opportunity::OpportunityStatus::Snoozed,
        ],
    }
}
