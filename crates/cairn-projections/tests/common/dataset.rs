//! A generated, deterministic history of the feedback loop over several tenants: feedback,
//! signals, opportunities with evidence, votes and ratings, reviews, acceptances, declines,
//! duplicates absorbed, snoozes, aging, work shipped and validated, decisions proposed, revised,
//! accepted, rejected, deprecated and superseded, initiatives with milestones, and raw ledger
//! events of other aggregate types. Commands the domain refuses are simply skipped.

use cairn_domain::decision::{Decision, DecisionCommand, DecisionContent, DecisionKind};
use cairn_domain::feedback::{Feedback, FeedbackCommand, FeedbackContent, FeedbackSource};
use cairn_domain::initiative::{Initiative, InitiativeCommand, InitiativeDraft};
use cairn_domain::opportunity::{
    Evidence, Opportunity, OpportunityCommand, OpportunityDraft, OpportunityStatus, Size, Triage,
    Validation,
};
use cairn_domain::scoring::AgingRule;
use cairn_domain::signal::{Direction, Measurement, Observation, Signal, SignalCommand};
use cairn_domain::{EntityId, EntityKind, EntityRef, PrincipalId, Team, Time, Visibility};

use super::{Driver, Rng};

pub const TEAMS: [&str; 3] = ["platform", "payments", "mobile"];
const LEAD: &str = "u-lead";

#[derive(Default)]
struct Ids {
    feedback: Vec<String>,
    signals: Vec<String>,
    opportunities: Vec<String>,
    decisions: Vec<String>,
    initiatives: Vec<String>,
    next: usize,
}

impl Ids {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{}", self.next)
    }
}

fn id(text: &str) -> EntityId {
    EntityId::new(text).expect("id")
}

fn principal(text: &str) -> PrincipalId {
    PrincipalId::new(text).expect("principal")
}

fn team(text: &str) -> Team {
    Team::new(text).expect("team")
}

/// The aging rules the sweeps run.
pub fn aging_rules() -> [AgingRule; 2] {
    [
        AgingRule {
            name: "stale-30".into(),
            version: 1,
            no_evidence_days: 30,
            score_below: 2.0,
            statuses: vec![
                OpportunityStatus::New,
                OpportunityStatus::UnderReview,
                OpportunityStatus::Snoozed,
            ],
        },
        AgingRule {
            name: "untouched-60".into(),
            version: 3,
            no_evidence_days: 60,
            score_below: 4.0,
            statuses: vec![OpportunityStatus::New],
        },
    ]
}

fn decision_content(
    rng: &mut Rng,
    kind: DecisionKind,
    team_name: &str,
    subjects: Vec<EntityRef>,
    supersedes: Option<EntityId>,
) -> DecisionContent {
    DecisionContent {
        kind,
        title: format!("decision {}", rng.below(1000)),
        team: team(team_name),
        context: "context".into(),
        drivers: vec!["cost".into()],
        options: vec!["a".into(), "b".into()],
        outcome: "a".into(),
        consequences: vec![],
        deciders: vec![principal(LEAD)],
        consulted: vec![],
        informed: vec![],
        subjects,
        supersedes,
        visibility: if rng.chance(20) {
            Visibility::Team
        } else {
            Visibility::Open
        },
    }
}

/// Proposes and accepts a decision; its id when accepted.
async fn decide(
    driver: &mut Driver,
    ids: &mut Ids,
    rng: &mut Rng,
    tenant: &str,
    kind: DecisionKind,
    subjects: Vec<EntityRef>,
    supersedes: Option<EntityId>,
) -> Option<String> {
    let decision = ids.fresh("d");
    let team_name = *rng.pick(&TEAMS).unwrap();
    let content = decision_content(rng, kind, team_name, subjects, supersedes);
    driver
        .run::<Decision>(
            tenant,
            &decision,
            LEAD,
            DecisionCommand::Propose {
                id: id(&decision),
                content,
            },
        )
        .await
        .ok()?;
    ids.decisions.push(decision.clone());
    driver
        .run::<Decision>(tenant, &decision, LEAD, DecisionCommand::Accept)
        .await
        .ok()?;
    Some(decision)
}

/// Runs `steps` random steps over `tenants`.
pub async fn generate(driver: &mut Driver, seed: u64, tenants: &[&str], steps: usize) {
    let mut rng = Rng::new(seed);
    let mut all_ids: Vec<Ids> = tenants.iter().map(|_| Ids::default()).collect();
    for step in 0..steps {
        driver.advance_hours(if step % 150 == 149 { 24 * 12 } else { 3 });
        let which = rng.below(tenants.len());
        let tenant = tenants[which];
        let ids = &mut all_ids[which];
        let roll = rng.below(100);
        let actor = format!("u-{}", rng.below(40));
        let now = driver.now;
        match roll {
            0..=13 => {
                let feedback = ids.fresh("f");
                let command = FeedbackCommand::Submit {
                    id: id(&feedback),
                    content: FeedbackContent {
                        text: "it is slow".into(),
                        submitter: rng.chance(70).then(|| principal(&actor)),
                    },
                    team: team(rng.pick(&TEAMS).unwrap()),
                    source: *rng.pick(&FeedbackSource::ALL).unwrap(),
                    tags: vec!["ci".into()],
                    outcome_tags: vec![
                        ["developer-time", "reliability", "conversion"][rng.below(3)].into(),
                    ],
                    visibility: Visibility::Open,
                };
                if driver
                    .run::<Feedback>(tenant, &feedback, &actor, command)
                    .await
                    .is_ok()
                {
                    ids.feedback.push(feedback);
                }
            }
            14..=19 => {
                let signal = ids.fresh("s");
                let observation = Observation {
                    metric: "latency_ms".into(),
                    unit: "ms".into(),
                    direction: Direction::LowerIsBetter,
                    service: Some("checkout".into()),
                    team: Some(team(rng.pick(&TEAMS).unwrap())),
                    window_seconds: 3600,
                    measurement: Measurement {
                        value: Some(rng.below(1000) as f64),
                        percentiles: None,
                    },
                    source: "prometheus".into(),
                    observed_at: now,
                };
                if driver
                    .run::<Signal>(
                        tenant,
                        &signal,
                        "svc:prometheus",
                        SignalCommand::Record {
                            id: id(&signal),
                            observation,
                        },
                    )
                    .await
                    .is_ok()
                {
                    ids.signals.push(signal);
                }
            }
            20..=27 => {
                let opportunity = ids.fresh("o");
                let draft = OpportunityDraft {
                    title: format!("problem {}", rng.below(100)),
                    problem: "x".repeat(200),
                    owner: principal(&actor),
                    team: team(rng.pick(&TEAMS).unwrap()),
                    size: rng.chance(50).then_some(Size::M),
                    outcome_tags: vec!["reliability".into()],
                    visibility: Visibility::Open,
                };
                if driver
                    .run::<Opportunity>(
                        tenant,
                        &opportunity,
                        &actor,
                        OpportunityCommand::Create {
                            id: id(&opportunity),
                            draft,
                        },
                    )
                    .await
                    .is_ok()
                {
                    ids.opportunities.push(opportunity);
                }
            }
            28..=42 => {
                // Evidence: attach to the opportunity, then link the feedback item.
                let Some(opportunity) = rng.pick(&ids.opportunities).cloned() else {
                    continue;
                };
                let use_signal = rng.chance(25);
                let evidence = if use_signal {
                    let Some(signal) = rng.pick(&ids.signals).cloned() else {
                        continue;
                    };
                    let (state, _) = driver.state::<Signal>(tenant, &signal).await;
                    Evidence {
                        reference: EntityRef::new(EntityKind::Signal, id(&signal)),
                        observation: state.observation,
                        attached_at: now,
                    }
                } else {
                    let Some(feedback) = rng.pick(&ids.feedback).cloned() else {
                        continue;
                    };
                    Evidence {
                        reference: EntityRef::new(EntityKind::Feedback, id(&feedback)),
                        observation: None,
                        attached_at: now,
                    }
                };
                let reference = evidence.reference.clone();
                let attached = driver
                    .run::<Opportunity>(
                        tenant,
                        &opportunity,
                        &actor,
                        OpportunityCommand::AttachEvidence(evidence),
                    )
                    .await;
                if attached.is_ok() && reference.kind == EntityKind::Feedback {
                    let _ = driver
                        .run::<Feedback>(
                            tenant,
                            reference.id.as_str(),
                            &actor,
                            FeedbackCommand::Link {
                                opportunity: id(&opportunity),
                            },
                        )
                        .await;
                }
            }
            43..=62 => {
                let Some(opportunity) = rng.pick(&ids.opportunities).cloned() else {
                    continue;
                };
                let _ = driver
                    .run::<Opportunity>(
                        tenant,
                        &opportunity,
                        &actor,
                        OpportunityCommand::Vote {
                            principal: principal(&actor),
                            weight: 1 + rng.below(5) as u32,
                            segment: None,
                        },
                    )
                    .await;
            }
            63..=66 => {
                let Some(opportunity) = rng.pick(&ids.opportunities).cloned() else {
                    continue;
                };
                let _ = driver
                    .run::<Opportunity>(
                        tenant,
                        &opportunity,
                        &actor,
                        OpportunityCommand::Rate {
                            name: "impact".into(),
                            value: rng.below(10) as f64,
                            rationale: String::new(),
                        },
                    )
                    .await;
            }
            67..=70 => {
                let Some(opportunity) = rng.pick(&ids.opportunities).cloned() else {
                    continue;
                };
                // Move it along its lifecycle, as far as its status allows.
                let (state, _) = driver.state::<Opportunity>(tenant, &opportunity).await;
                let command = match state.status {
                    Some(OpportunityStatus::New) => OpportunityCommand::StartReview,
                    Some(OpportunityStatus::UnderReview) if rng.chance(50) => {
                        OpportunityCommand::Triage(Triage::Snooze {
                            until: Time(now.0 + 3 * cairn_domain::DAY_MICROS),
                        })
                    }
                    Some(OpportunityStatus::Snoozed) => OpportunityCommand::Wake,
                    Some(OpportunityStatus::Planned) => OpportunityCommand::StartWork,
                    Some(OpportunityStatus::InProgress) => OpportunityCommand::Ship,
                    Some(OpportunityStatus::Shipped) => OpportunityCommand::Validate {
                        outcome: if rng.chance(70) {
                            Validation::Validated
                        } else {
                            Validation::NotValidated
                        },
                        signal: rng.pick(&ids.signals).map(|s| id(s)),
                    },
                    _ => continue,
                };
                let _ = driver
                    .run::<Opportunity>(tenant, &opportunity, LEAD, command)
                    .await;
            }
            71..=74 => {
                // Triage by a decision: accept or decline.
                let Some(opportunity) = rng.pick(&ids.opportunities).cloned() else {
                    continue;
                };
                let (state, _) = driver.state::<Opportunity>(tenant, &opportunity).await;
                if !matches!(
                    state.status,
                    Some(OpportunityStatus::New | OpportunityStatus::UnderReview)
                ) {
                    continue;
                }
                let subject = EntityRef::new(EntityKind::Opportunity, id(&opportunity));
                let Some(decision) = decide(
                    driver,
                    ids,
                    &mut rng,
                    tenant,
                    DecisionKind::Triage,
                    vec![subject],
                    None,
                )
                .await
                else {
                    continue;
                };
                let triage = if rng.chance(50) {
                    Triage::Accept {
                        decision: Some(id(&decision)),
                    }
                } else {
                    Triage::Decline {
                        reason: "not now".into(),
                        decision: id(&decision),
                    }
                };
                let _ = driver
                    .run::<Opportunity>(
                        tenant,
                        &opportunity,
                        LEAD,
                        OpportunityCommand::Triage(triage),
                    )
                    .await;
            }
            75..=77 => {
                // A duplicate: marked, then absorbed by its canonical opportunity.
                let (Some(duplicate), Some(canonical)) = (
                    rng.pick(&ids.opportunities).cloned(),
                    rng.pick(&ids.opportunities).cloned(),
                ) else {
                    continue;
                };
                let marked = driver
                    .run::<Opportunity>(
                        tenant,
                        &duplicate,
                        LEAD,
                        OpportunityCommand::Triage(Triage::Duplicate {
                            canonical: id(&canonical),
                        }),
                    )
                    .await;
                if marked.is_ok() {
                    let (state, _) = driver.state::<Opportunity>(tenant, &duplicate).await;
                    let _ = driver
                        .run::<Opportunity>(
                            tenant,
                            &canonical,
                            LEAD,
                            OpportunityCommand::AbsorbDuplicate {
                                duplicate: id(&duplicate),
                                evidence: state.evidence.clone(),
                                votes: state.votes.values().cloned().collect(),
                            },
                        )
                        .await;
                }
            }
            78..=81 => {
                // An aging sweep over a few opportunities.
                for _ in 0..4 {
                    let Some(opportunity) = rng.pick(&ids.opportunities).cloned() else {
                        break;
                    };
                    let rule = aging_rules()[rng.below(2)].clone();
                    let _ = driver
                        .run::<Opportunity>(
                            tenant,
                            &opportunity,
                            "svc:sweeper",
                            OpportunityCommand::AgeOut(rule),
                        )
                        .await;
                }
            }
            82..=86 => {
                // Decisions: supersede, deprecate, reject, revise.
                match rng.below(4) {
                    0 => {
                        let Some(old) = rng.pick(&ids.decisions).cloned() else {
                            continue;
                        };
                        let (state, _) = driver.state::<Decision>(tenant, &old).await;
                        if !matches!(
                            state.status,
                            Some(cairn_domain::decision::DecisionStatus::Accepted)
                        ) {
                            continue;
                        }
                        let subjects = state.content.map(|c| c.subjects).unwrap_or_default();
                        let Some(new) = decide(
                            driver,
                            ids,
                            &mut rng,
                            tenant,
                            DecisionKind::Prioritisation,
                            subjects,
                            Some(id(&old)),
                        )
                        .await
                        else {
                            continue;
                        };
                        let _ = driver
                            .run::<Decision>(
                                tenant,
                                &old,
                                LEAD,
                                DecisionCommand::MarkSuperseded { by: id(&new) },
                            )
                            .await;
                    }
                    1 => {
                        let Some(old) = rng.pick(&ids.decisions).cloned() else {
                            continue;
                        };
                        let _ = driver
                            .run::<Decision>(
                                tenant,
                                &old,
                                LEAD,
                                DecisionCommand::Deprecate {
                                    reason: "obsolete".into(),
                                },
                            )
                            .await;
                    }
                    _ => {
                        let decision = ids.fresh("d");
                        let team_name = *rng.pick(&TEAMS).unwrap();
                        let subjects = rng
                            .pick(&ids.opportunities)
                            .map(|o| vec![EntityRef::new(EntityKind::Opportunity, id(o))])
                            .unwrap_or_default();
                        let content = decision_content(
                            &mut rng,
                            DecisionKind::Architecture,
                            team_name,
                            subjects,
                            None,
                        );
                        let mut revised = content.clone();
                        revised.title = "revised".into();
                        revised.visibility = Visibility::Restricted;
                        if driver
                            .run::<Decision>(
                                tenant,
                                &decision,
                                LEAD,
                                DecisionCommand::Propose {
                                    id: id(&decision),
                                    content,
                                },
                            )
                            .await
                            .is_err()
                        {
                            continue;
                        }
                        ids.decisions.push(decision.clone());
                        let command = if rng.chance(50) {
                            DecisionCommand::Revise(revised)
                        } else {
                            DecisionCommand::Reject {
                                reason: "too costly".into(),
                            }
                        };
                        let _ = driver
                            .run::<Decision>(tenant, &decision, LEAD, command)
                            .await;
                    }
                }
            }
            87..=89 => {
                let initiative = ids.fresh("i");
                let implements: Vec<EntityId> = (0..1 + rng.below(2))
                    .filter_map(|_| rng.pick(&ids.opportunities).map(|o| id(o)))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let draft = InitiativeDraft {
                    title: "faster builds".into(),
                    goal: "p95 under 10 minutes".into(),
                    owners: vec![principal(&actor)],
                    team: team(rng.pick(&TEAMS).unwrap()),
                    target: "10m".into(),
                    scope: "ci".into(),
                    start: now,
                    target_date: Time(now.0 + 30 * cairn_domain::DAY_MICROS),
                    implements,
                    outcome_tags: vec!["developer-time".into()],
                    visibility: Visibility::Open,
                };
                if driver
                    .run::<Initiative>(
                        tenant,
                        &initiative,
                        &actor,
                        InitiativeCommand::Create {
                            id: id(&initiative),
                            draft,
                        },
                    )
                    .await
                    .is_ok()
                {
                    ids.initiatives.push(initiative);
                }
            }
            90..=96 => {
                let Some(initiative) = rng.pick(&ids.initiatives).cloned() else {
                    continue;
                };
                let milestone = format!("m{}", rng.below(3));
                let command = match rng.below(10) {
                    0 => InitiativeCommand::Schedule,
                    1 => InitiativeCommand::Start,
                    2 => InitiativeCommand::FlagRisk {
                        reason: "slipping".into(),
                    },
                    3 => InitiativeCommand::ClearRisk,
                    4 => InitiativeCommand::Complete,
                    5 => InitiativeCommand::Cancel {
                        reason: "deprioritised".into(),
                    },
                    6 => match rng.pick(&ids.opportunities) {
                        Some(o) => InitiativeCommand::Implement { opportunity: id(o) },
                        None => continue,
                    },
                    7 => InitiativeCommand::AddMilestone {
                        name: milestone,
                        due: Time(now.0 + 5 * cairn_domain::DAY_MICROS),
                        exit_criteria: "green".into(),
                    },
                    8 => InitiativeCommand::MeetMilestone {
                        name: milestone,
                        signal: rng.pick(&ids.signals).map(|s| id(s)),
                    },
                    _ => InitiativeCommand::MissMilestone { name: milestone },
                };
                let _ = driver
                    .run::<Initiative>(tenant, &initiative, LEAD, command)
                    .await;
            }
            97..=98 => {
                let Some(feedback) = rng.pick(&ids.feedback).cloned() else {
                    continue;
                };
                let _ = driver
                    .run::<Feedback>(
                        tenant,
                        &feedback,
                        LEAD,
                        FeedbackCommand::Discard {
                            reason: "spam".into(),
                        },
                    )
                    .await;
            }
            _ => {
                driver.raw(tenant, "deploy", "web").await;
            }
        }
    }
}
