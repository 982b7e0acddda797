//! A realistic, deterministic data set for `cairn demo`, the benchmark and the end-to-end tests:
//! several tenants and teams, feedback from surveys, chat, tickets and incidents, metric signals,
//! opportunities with evidence, votes and ratings, duplicates, declined, snoozed and aged-out
//! ideas, decisions (some superseded), and initiatives with milestones met, missed and at risk.
//!
//! [`generate`] returns the commands in the order they happened, each with its time (spread over
//! the year before `now`, never going back, so ledger order is time order), actor and idempotency
//! key; the same seed gives the same steps.

use cairn_domain::decision::{DecisionCommand, DecisionContent, DecisionKind};
use cairn_domain::feedback::{FeedbackCommand, FeedbackContent, FeedbackSource};
use cairn_domain::initiative::{InitiativeCommand, InitiativeDraft};
use cairn_domain::opportunity::{OpportunityCommand, OpportunityDraft, Size, Triage, Validation};
use cairn_domain::signal::{Direction, Measurement, Observation, Percentiles, SignalCommand};
use cairn_domain::{
    DAY_MICROS, EntityId, EntityKind, EntityRef, PrincipalId, Team, Time, Visibility,
};
use cairn_ledger::TenantId;

/// How big a data set.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Tenants (at most 8 names are built in; more repeat with a number).
    pub tenants: usize,
    /// Opportunities per tenant.
    pub opportunities: usize,
    /// Feedback items per opportunity, on average.
    pub feedback_per_opportunity: usize,
    /// Voters per opportunity, on average.
    pub voters_per_opportunity: usize,
}

impl Scale {
    /// The demo: 3 tenants, 40 opportunities each, hundreds of feedback items.
    pub const DEMO: Scale = Scale {
        tenants: 3,
        opportunities: 40,
        feedback_per_opportunity: 4,
        voters_per_opportunity: 6,
    };
}

/// One command of the data set.
#[derive(Clone, Debug)]
pub struct Step {
    /// The tenant.
    pub tenant: TenantId,
    /// Who runs it.
    pub actor: PrincipalId,
    /// Its idempotency key (unique in the data set).
    pub key: String,
    /// When it happened.
    pub at: Time,
    /// What it does.
    pub action: Action,
}

/// What a step does.
#[derive(Clone, Debug)]
pub enum Action {
    /// A feedback command.
    Feedback(EntityId, FeedbackCommand),
    /// A signal.
    Signal(EntityId, SignalCommand),
    /// An opportunity command.
    Opportunity(EntityId, OpportunityCommand),
    /// Attach evidence to an opportunity.
    Evidence {
        /// The opportunity.
        opportunity: EntityId,
        /// The feedback item or signal.
        evidence: EntityRef,
    },
    /// A decision command.
    Decision(EntityId, DecisionCommand),
    /// An initiative command.
    Initiative(EntityId, InitiativeCommand),
    /// Run the aging rules over the tenant's open opportunities.
    SweepAging,
}

const TENANTS: [&str; 8] = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell",
];
const TEAMS: [&str; 5] = ["platform", "payments", "mobile", "data", "security"];
const PROBLEMS: [(&str, &str, &str); 12] = [
    (
        "Speed up CI builds",
        "builds take over 20 minutes at p95",
        "developer-time",
    ),
    (
        "Fix flaky integration tests",
        "one run in five fails for no reason",
        "developer-time",
    ),
    (
        "Self-service preview environments",
        "a preview takes two days and a ticket",
        "developer-time",
    ),
    (
        "Faster incident paging",
        "pages arrive minutes after the alert fires",
        "reliability",
    ),
    (
        "Reduce checkout latency",
        "checkout p99 is above two seconds",
        "conversion",
    ),
    (
        "Cut on-call toil",
        "half of all pages are known false alarms",
        "reliability",
    ),
    (
        "Better deploy rollback",
        "rolling back needs a manual database step",
        "reliability",
    ),
    (
        "Unified service catalog",
        "nobody knows who owns what",
        "support-cost",
    ),
    (
        "Secrets rotation",
        "secrets are rotated by hand once a year",
        "reliability",
    ),
    (
        "Cheaper log storage",
        "log storage doubled in six months",
        "support-cost",
    ),
    (
        "Mobile build signing",
        "signing breaks every certificate renewal",
        "developer-time",
    ),
    (
        "Schema change safety",
        "migrations lock tables in production",
        "conversion",
    ),
];
const SAYINGS: [&str; 8] = [
    "this slows me down every day",
    "we lost an afternoon to this last week",
    "customers noticed, support got tickets",
    "I gave up and worked around it",
    "it is the top complaint in our retro",
    "this blocked our release",
    "it happens about once a sprint",
    "please fix, it is painful",
];

/// A small deterministic generator (SplitMix64): the data set must not depend on the platform's
/// random source.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn id(text: impl Into<String>) -> EntityId {
    EntityId::new(text).expect("data set ids are valid")
}

fn principal(text: impl Into<String>) -> PrincipalId {
    PrincipalId::new(text).expect("data set principals are valid")
}

fn team(name: &str) -> Team {
    Team::new(name).expect("data set teams are valid")
}

struct Builder {
    steps: Vec<Step>,
    tenant: TenantId,
    /// The time of the last step: steps never go back in time, so ledger order is time order.
    last: Time,
    now: Time,
}

impl Builder {
    fn push(&mut self, actor: &str, at: Time, action: Action) {
        let at = at.max(self.last).min(self.now);
        self.last = at;
        let key = format!("demo-{}-{}", self.tenant, self.steps.len());
        self.steps.push(Step {
            tenant: self.tenant.clone(),
            actor: principal(actor),
            key,
            at,
            action,
        });
    }
}

/// The data set: steps in time order within each tenant, tenants one after another.
pub fn generate(seed: u64, scale: Scale, now: Time) -> Vec<Step> {
    let mut rng = Prng(seed);
    let mut steps = Vec::new();
    for tenant_index in 0..scale.tenants {
        let name = match tenant_index < TENANTS.len() {
            true => TENANTS[tenant_index].to_owned(),
            false => format!("{}{}", TENANTS[tenant_index % TENANTS.len()], tenant_index),
        };
        let mut builder = Builder {
            steps: Vec::new(),
            tenant: TenantId::new(name).expect("valid tenant"),
            last: Time(now.0 - 365 * DAY_MICROS),
            now,
        };
        generate_tenant(&mut builder, &mut rng, scale, now);
        steps.extend(builder.steps);
    }
    steps
}

fn generate_tenant(b: &mut Builder, rng: &mut Prng, scale: Scale, now: Time) {
    let year_ago = now.0 - 365 * DAY_MICROS;
    let day = |d: i64| Time(year_ago + d * DAY_MICROS);
    let lead = "user:triage-lead";
    let cto = "user:cto";
    let mut previous_architecture_decision: Option<EntityId> = None;

    for o in 0..scale.opportunities {
        let (title, problem, outcome) = PROBLEMS[o % PROBLEMS.len()];
        let team_name = TEAMS[o % TEAMS.len()];
        let opp = id(format!("opp-{o}"));
        let owner = format!("user:owner-{}", o % 7);
        // Older opportunities first; the first few are idle and age out.
        let fate = o % 10;
        let aging = fate == 9;
        // Opportunities arrive through the year, one after another.
        let born = (o * 300 / scale.opportunities.max(1)) as i64;
        let title = if o < PROBLEMS.len() {
            title.to_owned()
        } else {
            format!("{title} ({team_name} {o})")
        };
        b.push(
            &owner,
            day(born),
            Action::Opportunity(
                opp.clone(),
                OpportunityCommand::Create {
                    id: opp.clone(),
                    draft: OpportunityDraft {
                        title,
                        problem: problem.to_owned(),
                        owner: principal(owner.clone()),
                        team: team(team_name),
                        size: Some([Size::S, Size::M, Size::L][o % 3]),
                        outcome_tags: vec![outcome.to_owned()],
                        visibility: Visibility::Open,
                    },
                },
            ),
        );
        if aging {
            continue;
        }
        // Evidence: feedback and a signal.
        let feedback_count = 1 + rng.below(scale.feedback_per_opportunity * 2);
        let mut t = born;
        for f in 0..feedback_count {
            t += 1 + rng.below(3) as i64;
            let fb = id(format!("fb-{o}-{f}"));
            let anonymous = rng.chance(20);
            let source = FeedbackSource::ALL[rng.below(FeedbackSource::ALL.len())];
            b.push(
                "service:importer",
                day(t),
                Action::Feedback(
                    fb.clone(),
                    FeedbackCommand::Submit {
                        id: fb.clone(),
                        content: FeedbackContent {
                            text: format!("{problem}: {}", SAYINGS[rng.below(SAYINGS.len())]),
                            submitter: (!anonymous)
                                .then(|| principal(format!("user:dev-{}", rng.below(60)))),
                        },
                        team: team(team_name),
                        source,
                        tags: vec![team_name.to_owned()],
                        outcome_tags: vec![outcome.to_owned()],
                        visibility: Visibility::Open,
                    },
                ),
            );
            if rng.chance(8) {
                b.push(
                    lead,
                    day(t),
                    Action::Feedback(
                        fb,
                        FeedbackCommand::Discard {
                            reason: "not actionable: no detail to reproduce".into(),
                        },
                    ),
                );
            } else if !rng.chance(5) {
                b.push(
                    lead,
                    day(t),
                    Action::Evidence {
                        opportunity: opp.clone(),
                        evidence: EntityRef::new(EntityKind::Feedback, fb),
                    },
                );
            }
        }
        let signal = id(format!("sig-{o}"));
        let (metric, unit, measurement) = match o % 4 {
            0 => (
                "build_latency_ms",
                "ms",
                Measurement {
                    value: None,
                    percentiles: Some(Percentiles {
                        p50: 300_000.0,
                        p95: 900_000.0 + rng.below(300_000) as f64,
                        p99: 1_400_000.0,
                    }),
                },
            ),
            1 => (
                "defect_rate",
                "ratio",
                Measurement {
                    value: Some(rng.below(100) as f64 / 1000.0),
                    percentiles: None,
                },
            ),
            2 => (
                "mttr_minutes",
                "minutes",
                Measurement {
                    value: Some(30.0 + rng.below(200) as f64),
                    percentiles: None,
                },
            ),
            _ => (
                "affected_users",
                "count",
                Measurement {
                    value: Some(10.0 + rng.below(5000) as f64),
                    percentiles: None,
                },
            ),
        };
        t += 1;
        b.push(
            "service:prometheus",
            day(t),
            Action::Signal(
                signal.clone(),
                SignalCommand::Record {
                    id: signal.clone(),
                    observation: Observation {
                        metric: metric.to_owned(),
                        unit: unit.to_owned(),
                        direction: Direction::LowerIsBetter,
                        service: Some(format!("{team_name}-api")),
                        team: Some(team(team_name)),
                        window_seconds: 7 * 86_400,
                        measurement,
                        source: "prometheus".into(),
                        observed_at: day(t),
                    },
                },
            ),
        );
        b.push(
            lead,
            day(t),
            Action::Evidence {
                opportunity: opp.clone(),
                evidence: EntityRef::new(EntityKind::Signal, signal.clone()),
            },
        );
        // Votes and ratings.
        for v in 0..(1 + rng.below(scale.voters_per_opportunity * 2)) {
            t += rng.below(2) as i64;
            b.push(
                "service:portal",
                day(t),
                Action::Opportunity(
                    opp.clone(),
                    OpportunityCommand::Vote {
                        principal: principal(format!("user:dev-{}", (o * 7 + v * 13) % 60)),
                        weight: 1 + rng.below(3) as u32,
                        segment: Some(TEAMS[v % TEAMS.len()].to_owned()),
                    },
                ),
            );
        }
        for (rating, value) in [
            ("customer_impact", 1 + rng.below(5)),
            ("confidence", 40 + rng.below(60)),
            ("effort", 1 + rng.below(5)),
            ("strategic_value", 1 + rng.below(5)),
        ] {
            b.push(
                lead,
                day(t),
                Action::Opportunity(
                    opp.clone(),
                    OpportunityCommand::Rate {
                        name: rating.to_owned(),
                        value: value as f64,
                        rationale: "triage estimate".into(),
                    },
                ),
            );
        }
        t += 1;
        b.push(
            lead,
            day(t),
            Action::Opportunity(opp.clone(), OpportunityCommand::StartReview),
        );
        t += 1 + rng.below(5) as i64;
        match fate {
            // Duplicates of the previous opportunity of the same problem.
            7 if o >= 10 => {
                // opp-7 was accepted: the later ones on that problem are its duplicates.
                let canonical = id("opp-7");
                b.push(
                    lead,
                    day(t),
                    Action::Opportunity(
                        opp.clone(),
                        OpportunityCommand::Triage(Triage::Duplicate { canonical }),
                    ),
                );
            }
            // Declined by a triage decision.
            5 | 6 => {
                let decision = id(format!("dec-triage-{o}"));
                propose(
                    b,
                    day(t),
                    &decision,
                    DecisionKind::Triage,
                    &opp,
                    "Decline",
                    None,
                    team_name,
                );
                b.push(
                    cto,
                    day(t),
                    Action::Decision(decision.clone(), DecisionCommand::Accept),
                );
                b.push(
                    lead,
                    day(t),
                    Action::Opportunity(
                        opp.clone(),
                        OpportunityCommand::Triage(Triage::Decline {
                            reason: "cost exceeds the expected benefit this year".into(),
                            decision,
                        }),
                    ),
                );
            }
            8 => b.push(
                lead,
                day(t),
                Action::Opportunity(
                    opp.clone(),
                    OpportunityCommand::Triage(Triage::Snooze {
                        until: Time(now.0 + 30 * DAY_MICROS),
                    }),
                ),
            ),
            // Accepted, planned, and for most an initiative.
            0..=4 | 7 => {
                let decision = id(format!("dec-triage-{o}"));
                propose(
                    b,
                    day(t),
                    &decision,
                    DecisionKind::Prioritisation,
                    &opp,
                    "Plan",
                    None,
                    team_name,
                );
                b.push(
                    cto,
                    day(t),
                    Action::Decision(decision.clone(), DecisionCommand::Accept),
                );
                b.push(
                    lead,
                    day(t),
                    Action::Opportunity(
                        opp.clone(),
                        OpportunityCommand::Triage(Triage::Accept {
                            decision: Some(decision),
                        }),
                    ),
                );
                if fate <= 3 {
                    initiative(b, rng, day, &mut t, o, &opp, team_name, fate, now);
                }
                // Architecture decisions, each superseding the one before now and then.
                if fate == 0 {
                    let decision = id(format!("dec-arch-{o}"));
                    let supersedes = previous_architecture_decision.take();
                    propose(
                        b,
                        day(t),
                        &decision,
                        DecisionKind::Architecture,
                        &opp,
                        "Adopt",
                        supersedes,
                        team_name,
                    );
                    b.push(
                        cto,
                        day(t),
                        Action::Decision(decision.clone(), DecisionCommand::Accept),
                    );
                    previous_architecture_decision = Some(decision);
                }
            }
            _ => {}
        }
    }
    b.push("service:scheduler", now, Action::SweepAging);
}

#[allow(clippy::too_many_arguments)]
fn propose(
    b: &mut Builder,
    at: Time,
    decision: &EntityId,
    kind: DecisionKind,
    opportunity: &EntityId,
    verb: &str,
    supersedes: Option<EntityId>,
    team_name: &str,
) {
    b.push(
        "user:triage-lead",
        at,
        Action::Decision(
            decision.clone(),
            DecisionCommand::Propose {
                id: decision.clone(),
                content: DecisionContent {
                    kind,
                    title: format!("{verb} {opportunity}"),
                    team: team(team_name),
                    context: format!("triage of {opportunity}"),
                    drivers: vec!["developer time".into(), "cost".into()],
                    options: vec!["do it now".into(), "later".into(), "never".into()],
                    outcome: verb.to_owned(),
                    consequences: vec!["roadmap changes".into()],
                    deciders: vec![principal("user:cto")],
                    consulted: vec![principal("user:triage-lead")],
                    informed: vec![],
                    subjects: vec![EntityRef::new(EntityKind::Opportunity, opportunity.clone())],
                    supersedes,
                    visibility: Visibility::Open,
                },
            },
        ),
    );
}

#[allow(clippy::too_many_arguments)]
fn initiative(
    b: &mut Builder,
    rng: &mut Prng,
    day: impl Fn(i64) -> Time,
    t: &mut i64,
    o: usize,
    opp: &EntityId,
    team_name: &str,
    fate: usize,
    now: Time,
) {
    let ini = id(format!("ini-{o}"));
    let owner = format!("user:owner-{}", o % 7);
    let start = *t + 2;
    b.push(
        &owner,
        day(*t),
        Action::Initiative(
            ini.clone(),
            InitiativeCommand::Create {
                id: ini.clone(),
                draft: InitiativeDraft {
                    title: format!("Deliver {opp}"),
                    goal: "solve the problem behind the opportunity".into(),
                    owners: vec![principal(owner.clone())],
                    team: team(team_name),
                    target: "p95 halved".into(),
                    scope: "the services named in the evidence".into(),
                    start: day(start),
                    target_date: day(start + 60),
                    implements: vec![opp.clone()],
                    outcome_tags: vec![],
                    visibility: Visibility::Open,
                },
            },
        ),
    );
    for (name, due) in [("design", start + 14), ("rollout", start + 45)] {
        b.push(
            &owner,
            day(*t),
            Action::Initiative(
                ini.clone(),
                InitiativeCommand::AddMilestone {
                    name: name.to_owned(),
                    due: day(due),
                    exit_criteria: format!("{name} reviewed"),
                },
            ),
        );
    }
    b.push(
        &owner,
        day(*t),
        Action::Initiative(ini.clone(), InitiativeCommand::Schedule),
    );
    *t = start;
    b.push(
        &owner,
        day(*t),
        Action::Initiative(ini.clone(), InitiativeCommand::Start),
    );
    b.push(
        "user:triage-lead",
        day(*t),
        Action::Opportunity(opp.clone(), OpportunityCommand::StartWork),
    );
    *t += 10 + rng.below(6) as i64;
    b.push(
        &owner,
        day(*t),
        Action::Initiative(
            ini.clone(),
            InitiativeCommand::MeetMilestone {
                name: "design".into(),
                signal: None,
            },
        ),
    );
    match fate {
        // Shipped and validated by its signal.
        0 | 1 => {
            *t += 30;
            b.push(
                &owner,
                day(*t),
                Action::Initiative(
                    ini.clone(),
                    InitiativeCommand::MeetMilestone {
                        name: "rollout".into(),
                        signal: None,
                    },
                ),
            );
            b.push(
                &owner,
                day(*t),
                Action::Initiative(ini.clone(), InitiativeCommand::Complete),
            );
            b.push(
                "user:triage-lead",
                day(*t),
                Action::Opportunity(opp.clone(), OpportunityCommand::Ship),
            );
            *t += 14;
            let outcome = if fate == 0 {
                Validation::Validated
            } else {
                Validation::NotValidated
            };
            b.push(
                "user:triage-lead",
                day(*t),
                Action::Opportunity(
                    opp.clone(),
                    OpportunityCommand::Validate {
                        outcome,
                        signal: Some(id(format!("sig-{o}"))),
                    },
                ),
            );
        }
        // At risk, rollout missed.
        2 => {
            *t = (*t).max(start + 46);
            b.push(
                &owner,
                day(*t),
                Action::Initiative(
                    ini.clone(),
                    InitiativeCommand::FlagRisk {
                        reason: "the rollout slipped behind a dependency".into(),
                    },
                ),
            );
            if day(start + 46) < now {
                b.push(
                    &owner,
                    day(*t),
                    Action::Initiative(
                        ini.clone(),
                        InitiativeCommand::MissMilestone {
                            name: "rollout".into(),
                        },
                    ),
                );
            }
        }
        // Cancelled.
        _ => {
            *t += 5;
            b.push(
                &owner,
                day(*t),
                Action::Initiative(
                    ini.clone(),
                    InitiativeCommand::Cancel {
                        reason: "superseded by a vendor product".into(),
                    },
                ),
            );
        }
    }
}
