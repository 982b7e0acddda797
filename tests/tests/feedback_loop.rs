//! The feedback loop end to end, against the real `cairn serve`.
//!
//! A small organisation's scenario is recorded over gRPC: several teams; feedback with and without
//! a submitter; metric signals; opportunities with evidence, votes and ratings; a duplicate whose
//! evidence and votes move to its canonical opportunity; a decline under a decision; a snooze; an
//! opportunity created long ago and aged out by a rule; a decision superseded by a later one;
//! initiatives implementing opportunities, with milestones met and missed, one at risk; an
//! opportunity shipped and validated. The test keeps its own book of everything it recorded (what
//! each command should have changed, at which ledger positions, by whom, with which scores), and
//! a copy of that book taken mid-scenario. The server runs with a copy of the repository's
//! `policies/scoring/` in which the weighted-sum model is active, so that scores read the metric
//! signals attached as evidence; the test evaluates that model itself, from its file written out
//! by hand, and the aging rules come from the repository's `policy.toml`.
//!
//! Every question of DOMAIN.md ("Lineage the projections must answer") is then asked through the
//! API, now and as of the position remembered mid-scenario, and each answer is compared with what
//! the book says, never with a second answer of the server. For provenance (who recorded a fact,
//! when, under which policy bundle) the reference is the raw record that LedgerService.ReadAll
//! serves. Then the refusals and retries, and a restart on the same data directory, after which
//! every answer must be the same at the same positions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use cairn_e2e::{CliOutput, LoopClients, Server, read_all, rule_of, run_cairn_with_token};
use cairn_grpc::proto;
use proto::{
    DecisionStatus as DS, EntityKind as Kind, FeedbackStatus as FS, InitiativeStatus as IS,
    MilestoneStatus as MS, OpportunityStatus as OS, Relation as Rel,
};
use tonic::Code;

/// The tenant of the scenario.
const TENANT: &str = "acme";
/// A day, in microseconds.
const DAY_MICROS: i64 = 86_400 * 1_000_000;
/// The event type of a score change (prioritization.proto).
const SCORED: &str = "opportunity.scored";

fn now_micros() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_micros()).expect("microseconds since 1970 fit in an i64")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// Times, entities, edges
// ---------------------------------------------------------------------------------------------

/// An instant the test knows to lie between two readings of its clock (the start and the end of
/// the call that caused it), or exactly (a command backdated with `occurred_at_micros`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bounds {
    from: i64,
    to: i64,
}

impl Bounds {
    fn exactly(at: i64) -> Bounds {
        Bounds { from: at, to: at }
    }

    fn holds(self, at: i64) -> bool {
        self.from <= at && at <= self.to
    }

    /// From the start of `self` to the end of `later`.
    fn through(self, later: Bounds) -> Bounds {
        Bounds {
            from: self.from,
            to: later.to,
        }
    }
}

/// An entity of the tenant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Ent {
    kind: Kind,
    id: String,
}

impl Ent {
    fn new(kind: Kind, id: &str) -> Ent {
        Ent {
            kind,
            id: id.to_owned(),
        }
    }

    fn feedback(id: &str) -> Ent {
        Ent::new(Kind::Feedback, id)
    }

    fn signal(id: &str) -> Ent {
        Ent::new(Kind::Signal, id)
    }

    fn opportunity(id: &str) -> Ent {
        Ent::new(Kind::Opportunity, id)
    }

    fn decision(id: &str) -> Ent {
        Ent::new(Kind::Decision, id)
    }

    fn initiative(id: &str) -> Ent {
        Ent::new(Kind::Initiative, id)
    }

    fn of(reference: &proto::EntityRef) -> Ent {
        Ent {
            kind: reference.kind(),
            id: reference.id.clone(),
        }
    }

    fn to_proto(&self) -> proto::EntityRef {
        proto::EntityRef {
            kind: self.kind as i32,
            id: self.id.clone(),
        }
    }

    /// The aggregate type of its ledger stream.
    fn aggregate_type(&self) -> &'static str {
        match self.kind {
            Kind::Feedback => "feedback",
            Kind::Signal => "signal",
            Kind::Opportunity => "opportunity",
            Kind::Decision => "decision",
            Kind::Initiative => "initiative",
            Kind::Unspecified => "unspecified",
        }
    }
}

impl fmt::Display for Ent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.aggregate_type(), self.id)
    }
}

/// A lineage edge `from -relation-> to`, as recorded.
type EdgeKey = (Ent, Rel, Ent);

/// The (upstream, downstream) ends of an edge: the direction table of lineage.proto.
fn ends(edge: &EdgeKey) -> (&Ent, &Ent) {
    let (from, relation, to) = edge;
    match relation {
        Rel::EvidenceFor | Rel::DuplicateOf | Rel::DecidedBy | Rel::Unspecified => (from, to),
        Rel::Implements | Rel::Supersedes | Rel::Verifies | Rel::DerivedFrom => (to, from),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    Upstream,
    Downstream,
    Both,
}

// ---------------------------------------------------------------------------------------------
// The scoring model, as the policy file writes it, and an independent evaluation of it
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Formula {
    Rice,
    Ice,
    Wsjf,
    WeightedSum,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Reach,
    Impact,
    Confidence,
    Effort,
    Ease,
    BusinessValue,
    TimeCriticality,
    RiskReduction,
    JobSize,
}

#[derive(Clone, Debug)]
enum Source {
    Rating(&'static str),
    Checkbox(&'static str),
    Percentage(&'static str),
    Metric(&'static str, proto::MetricStatistic),
    Votes,
    Voters,
}

#[derive(Clone, Copy, Debug)]
enum Normaliser {
    Raw,
    Linear(f64, f64),
    Log,
}

impl Normaliser {
    fn apply(self, raw: f64) -> f64 {
        match self {
            Normaliser::Raw => raw,
            Normaliser::Linear(min, max) => ((raw - min) / (max - min)).clamp(0.0, 1.0),
            Normaliser::Log => raw.max(0.0).ln_1p(),
        }
    }
}

#[derive(Clone, Debug)]
struct Factor {
    name: &'static str,
    source: Source,
    normaliser: Normaliser,
    weight: f64,
    default: f64,
    role: Option<Role>,
}

/// A scoring model: what the test expects the server to score with.
#[derive(Clone, Debug)]
struct ModelSpec {
    name: &'static str,
    version: u32,
    formula: Formula,
    factors: Vec<Factor>,
}

/// The smallest divisor a formula uses (the domain's rule, so an effort of 0 does not divide by 0).
const DIVISOR_MIN: f64 = 1e-3;

fn factor(
    name: &'static str,
    source: Source,
    normaliser: Normaliser,
    weight: f64,
    default: f64,
    role: Option<Role>,
) -> Factor {
    Factor {
        name,
        source,
        normaliser,
        weight,
        default,
        role,
    }
}

/// The models of the repository's `policies/scoring/`, written out by hand from their files.
fn repository_models() -> Vec<ModelSpec> {
    use Normaliser::{Linear, Log, Raw};
    use proto::MetricStatistic::{P99, Value};
    vec![
        ModelSpec {
            name: "platform-rice",
            version: 1,
            formula: Formula::Rice,
            factors: vec![
                factor("reach", Source::Voters, Log, 10.0, 0.0, Some(Role::Reach)),
                factor(
                    "impact",
                    Source::Rating("customer_impact"),
                    Linear(0.0, 5.0),
                    3.0,
                    1.0,
                    Some(Role::Impact),
                ),
                factor(
                    "confidence",
                    Source::Percentage("confidence"),
                    Raw,
                    1.0,
                    0.5,
                    Some(Role::Confidence),
                ),
                factor(
                    "effort",
                    Source::Rating("effort"),
                    Raw,
                    1.0,
                    3.0,
                    Some(Role::Effort),
                ),
            ],
        },
        ModelSpec {
            name: "platform-ice",
            version: 1,
            formula: Formula::Ice,
            factors: vec![
                factor(
                    "impact",
                    Source::Rating("customer_impact"),
                    Linear(0.0, 10.0),
                    1.0,
                    0.5,
                    Some(Role::Impact),
                ),
                factor(
                    "confidence",
                    Source::Percentage("confidence"),
                    Raw,
                    1.0,
                    0.5,
                    Some(Role::Confidence),
                ),
                factor(
                    "ease",
                    Source::Rating("ease"),
                    Linear(0.0, 10.0),
                    1.0,
                    0.5,
                    Some(Role::Ease),
                ),
            ],
        },
        ModelSpec {
            name: "platform-wsjf",
            version: 1,
            formula: Formula::Wsjf,
            factors: vec![
                factor(
                    "business_value",
                    Source::Rating("strategic_value"),
                    Raw,
                    1.0,
                    1.0,
                    Some(Role::BusinessValue),
                ),
                factor(
                    "time_criticality",
                    Source::Rating("time_criticality"),
                    Raw,
                    1.0,
                    1.0,
                    Some(Role::TimeCriticality),
                ),
                factor(
                    "risk_reduction",
                    Source::Metric("defect_rate", Value),
                    Linear(0.0, 0.1),
                    5.0,
                    0.0,
                    Some(Role::RiskReduction),
                ),
                factor(
                    "job_size",
                    Source::Rating("effort"),
                    Raw,
                    1.0,
                    3.0,
                    Some(Role::JobSize),
                ),
            ],
        },
        ModelSpec {
            name: "platform-weighted",
            version: 1,
            formula: Formula::WeightedSum,
            factors: vec![
                factor(
                    "defect_rate",
                    Source::Metric("defect_rate", Value),
                    Linear(0.0, 0.1),
                    3.0,
                    0.0,
                    None,
                ),
                factor(
                    "mttr",
                    Source::Metric("mttr_minutes", Value),
                    Linear(0.0, 240.0),
                    2.0,
                    0.0,
                    None,
                ),
                factor(
                    "latency_p99",
                    Source::Metric("build_latency_ms", P99),
                    Linear(0.0, 600_000.0),
                    2.0,
                    0.0,
                    None,
                ),
                factor(
                    "affected_users",
                    Source::Metric("affected_users", Value),
                    Log,
                    1.0,
                    0.0,
                    None,
                ),
                factor("votes", Source::Votes, Log, 1.0, 0.0, None),
                factor(
                    "customer_impact",
                    Source::Rating("customer_impact"),
                    Linear(0.0, 5.0),
                    2.0,
                    0.0,
                    None,
                ),
                factor(
                    "strategic_value",
                    Source::Rating("strategic_value"),
                    Linear(0.0, 5.0),
                    1.5,
                    0.0,
                    None,
                ),
                factor(
                    "already_covered",
                    Source::Checkbox("already_covered"),
                    Raw,
                    -2.0,
                    0.0,
                    None,
                ),
                factor(
                    "effort",
                    Source::Rating("effort"),
                    Raw,
                    1.0,
                    3.0,
                    Some(Role::Effort),
                ),
            ],
        },
    ]
}

/// The model the scenario is scored with: the repository's weighted sum, whose metric factors
/// read the signals attached as evidence.
const SCENARIO_MODEL: &str = "platform-weighted";

/// Where an expected input came from.
#[derive(Clone, Debug, PartialEq)]
enum Src {
    Rating { by: String, order: u64, at: Bounds },
    Signal { id: String, observed_at: i64 },
    Votes { voters: u64 },
    Missing,
}

#[derive(Clone, Debug)]
struct ExpectedInput {
    factor: String,
    source: Src,
    raw: f64,
    normalised: f64,
    weight: f64,
    contribution: f64,
}

#[derive(Clone, Debug)]
struct ExpectedScore {
    inputs: Vec<ExpectedInput>,
    value: f64,
    computed: Bounds,
}

impl ExpectedScore {
    /// What makes two scores the same score (all but the time of computation).
    fn key(&self) -> Vec<(String, Src, u64)> {
        self.inputs
            .iter()
            .map(|input| {
                (
                    input.factor.clone(),
                    input.source.clone(),
                    input.raw.to_bits(),
                )
            })
            .collect()
    }
}

fn statistic(observation: &proto::Observation, statistic: proto::MetricStatistic) -> Option<f64> {
    let percentiles = observation.percentiles.as_ref();
    match statistic {
        proto::MetricStatistic::Value => observation.value,
        proto::MetricStatistic::P50 => percentiles.map(|p| p.p50),
        proto::MetricStatistic::P95 => percentiles.map(|p| p.p95),
        proto::MetricStatistic::P99 => percentiles.map(|p| p.p99),
        proto::MetricStatistic::Unspecified => None,
    }
}

impl ModelSpec {
    fn read(&self, source: &Source, o: &OpportunityBook) -> Option<(f64, Src)> {
        let rating = |name: &str| {
            o.ratings.get(name).map(|r| {
                (
                    r.value,
                    Src::Rating {
                        by: r.by.clone(),
                        order: r.order,
                        at: r.at,
                    },
                )
            })
        };
        match source {
            Source::Rating(name) => rating(name),
            Source::Checkbox(name) => {
                rating(name).map(|(v, s)| (if v != 0.0 { 1.0 } else { 0.0 }, s))
            }
            Source::Percentage(name) => rating(name).map(|(v, s)| (v / 100.0, s)),
            Source::Metric(metric, which) => o
                .evidence
                .iter()
                .filter_map(|e| {
                    let observation = e.observation.as_ref()?;
                    if observation.metric != *metric {
                        return None;
                    }
                    let value = statistic(observation, *which)?;
                    Some((
                        observation.observed_at_micros,
                        e.reference.id.clone(),
                        value,
                    ))
                })
                .max_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
                .map(|(observed_at, id, value)| (value, Src::Signal { id, observed_at })),
            Source::Votes => Some((
                o.votes.values().map(|v| f64::from(v.weight)).sum(),
                Src::Votes {
                    voters: o.votes.len() as u64,
                },
            )),
            Source::Voters => Some((
                o.votes.len() as f64,
                Src::Votes {
                    voters: o.votes.len() as u64,
                },
            )),
        }
    }

    /// The score of an opportunity's inputs, computed the way the model's formula says.
    fn score(&self, o: &OpportunityBook, computed: Bounds) -> ExpectedScore {
        let inputs: Vec<ExpectedInput> = self
            .factors
            .iter()
            .map(|factor| {
                let (raw, source) = self
                    .read(&factor.source, o)
                    .unwrap_or((factor.default, Src::Missing));
                let normalised = factor.normaliser.apply(raw);
                ExpectedInput {
                    factor: factor.name.to_owned(),
                    source,
                    raw,
                    normalised,
                    weight: factor.weight,
                    contribution: normalised * factor.weight,
                }
            })
            .collect();
        let role = |role: Role| -> f64 {
            self.factors
                .iter()
                .zip(&inputs)
                .find(|(factor, _)| factor.role == Some(role))
                .map_or(0.0, |(_, input)| input.contribution)
        };
        let value = match self.formula {
            Formula::Rice => {
                role(Role::Reach) * role(Role::Impact) * role(Role::Confidence)
                    / role(Role::Effort).max(DIVISOR_MIN)
            }
            Formula::Ice => role(Role::Impact) * role(Role::Confidence) * role(Role::Ease),
            Formula::Wsjf => {
                (role(Role::BusinessValue)
                    + role(Role::TimeCriticality)
                    + role(Role::RiskReduction))
                    / role(Role::JobSize).max(DIVISOR_MIN)
            }
            Formula::WeightedSum => {
                let sum: f64 = self
                    .factors
                    .iter()
                    .zip(&inputs)
                    .filter(|(factor, _)| factor.role != Some(Role::Effort))
                    .map(|(_, input)| input.contribution)
                    .sum();
                if self.factors.iter().any(|f| f.role == Some(Role::Effort)) {
                    sum / role(Role::Effort).max(DIVISOR_MIN)
                } else {
                    sum
                }
            }
        };
        ExpectedScore {
            inputs,
            value: if value.is_finite() { value } else { 0.0 },
            computed,
        }
    }

    /// The model as GetScoringModel should describe it (all but the digest).
    fn to_proto(&self) -> proto::ScoringModel {
        use proto::factor_source::Source as PSource;
        use proto::normaliser::Normaliser as PNormaliser;
        let formula = match self.formula {
            Formula::Rice => proto::ScoringFormula::Rice,
            Formula::Ice => proto::ScoringFormula::Ice,
            Formula::Wsjf => proto::ScoringFormula::Wsjf,
            Formula::WeightedSum => proto::ScoringFormula::WeightedSum,
        };
        let factors = self
            .factors
            .iter()
            .map(|factor| proto::ScoringFactor {
                name: factor.name.to_owned(),
                source: Some(proto::FactorSource {
                    source: Some(match &factor.source {
                        Source::Rating(name) => PSource::Rating((*name).to_owned()),
                        Source::Checkbox(name) => PSource::Checkbox((*name).to_owned()),
                        Source::Percentage(name) => PSource::Percentage((*name).to_owned()),
                        Source::Metric(metric, statistic) => {
                            PSource::Metric(proto::factor_source::Metric {
                                metric: (*metric).to_owned(),
                                statistic: *statistic as i32,
                            })
                        }
                        Source::Votes => PSource::Votes(true),
                        Source::Voters => PSource::Voters(true),
                    }),
                }),
                normaliser: Some(proto::Normaliser {
                    normaliser: Some(match factor.normaliser {
                        Normaliser::Raw => PNormaliser::None(true),
                        Normaliser::Linear(min, max) => {
                            PNormaliser::Linear(proto::normaliser::Range { min, max })
                        }
                        Normaliser::Log => PNormaliser::Log(true),
                    }),
                }),
                weight: factor.weight,
                default_value: factor.default,
                role: match factor.role {
                    None => proto::FactorRole::Unspecified,
                    Some(Role::Reach) => proto::FactorRole::Reach,
                    Some(Role::Impact) => proto::FactorRole::Impact,
                    Some(Role::Confidence) => proto::FactorRole::Confidence,
                    Some(Role::Effort) => proto::FactorRole::Effort,
                    Some(Role::Ease) => proto::FactorRole::Ease,
                    Some(Role::BusinessValue) => proto::FactorRole::BusinessValue,
                    Some(Role::TimeCriticality) => proto::FactorRole::TimeCriticality,
                    Some(Role::RiskReduction) => proto::FactorRole::RiskReduction,
                    Some(Role::JobSize) => proto::FactorRole::JobSize,
                } as i32,
            })
            .collect();
        proto::ScoringModel {
            name: self.name.to_owned(),
            version: self.version,
            formula: formula as i32,
            factors,
            digest: String::new(),
        }
    }
}

/// An aging rule, as `policies/scoring/policy.toml` writes it.
#[derive(Clone, Debug, PartialEq)]
struct AgingRuleSpec {
    name: String,
    version: u32,
    no_evidence_days: u32,
    score_below: f64,
    statuses: Vec<OS>,
}

/// The active model's name and the aging rules of the repository's `policy.toml`, read by the
/// test itself (the server has its own copy built in): `key = value` lines, `[[aging_rule]]`
/// tables.
fn repository_policy() -> Result<(String, Vec<AgingRuleSpec>)> {
    let path = workspace_root().join("policies/scoring/policy.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let mut active = None;
    let mut rules: Vec<AgingRuleSpec> = Vec::new();
    // Sampling rules are not about scores or aging: skipped, up to the next table.
    let mut in_sampling = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line == "[[sampling]]" {
            in_sampling = true;
            continue;
        }
        if line.starts_with("[[") {
            in_sampling = false;
        }
        if in_sampling {
            continue;
        }
        if line == "[[aging_rule]]" {
            rules.push(AgingRuleSpec {
                name: String::new(),
                version: 0,
                no_evidence_days: 0,
                score_below: 0.0,
                statuses: Vec::new(),
            });
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("policy.toml line {line:?}"))?;
        let (key, value) = (key.trim(), value.trim());
        let unquoted = value.trim_matches('"').to_owned();
        match (rules.last_mut(), key) {
            (None, "active_model") => active = Some(unquoted),
            (Some(rule), "name") => rule.name = unquoted,
            (Some(rule), "version") => rule.version = value.parse()?,
            (Some(rule), "no_evidence_days") => rule.no_evidence_days = value.parse()?,
            (Some(rule), "score_below") => rule.score_below = value.parse()?,
            (Some(rule), "statuses") => {
                rule.statuses = value
                    .trim_matches(['[', ']'])
                    .split(',')
                    .map(|s| s.trim().trim_matches('"'))
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        OS::from_str_name(&format!("OPPORTUNITY_STATUS_{}", s.to_uppercase()))
                            .with_context(|| format!("status {s:?} in policy.toml"))
                    })
                    .collect::<Result<_>>()?;
            }
            _ => bail!("unexpected policy.toml line {line:?}"),
        }
    }
    Ok((active.context("policy.toml names no active model")?, rules))
}

/// A copy of the repository's `policies/` bundle in which `active` is the active scoring model,
/// for `cairn serve --policies`.
fn policies_with_active(active: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("cairn-e2e-policies-")
        .tempdir()?;
    let source = workspace_root().join("policies");
    for folder in ["access", "tests", "scoring"] {
        let from = source.join(folder);
        let to = dir.path().join(folder);
        std::fs::create_dir_all(&to)?;
        for entry in std::fs::read_dir(&from).with_context(|| format!("{}", from.display()))? {
            let path = entry?.path();
            let name = path.file_name().context("a file name")?.to_owned();
            let mut text = std::fs::read_to_string(&path)?;
            if folder == "scoring" && name == "policy.toml" {
                text = text
                    .lines()
                    .map(|line| match line.starts_with("active_model") {
                        true => format!("active_model = \"{active}\""),
                        false => line.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            std::fs::write(to.join(name), text)?;
        }
    }
    Ok(dir)
}

/// GetScoringModel of every model of the repository, and of the active one: each as its file
/// says; returns the active model's digest.
async fn check_models(
    c: &LoopClients,
    active: &ModelSpec,
    rules: &[AgingRuleSpec],
) -> Result<String> {
    let mut digest = None;
    for (name, spec) in std::iter::once(("", active)).chain(
        repository_models()
            .iter()
            .map(|spec| (spec.name, spec))
            .collect::<Vec<_>>(),
    ) {
        let what = format!("GetScoringModel {name:?}");
        let answer = c
            .prioritization
            .clone()
            .get_scoring_model(proto::GetScoringModelRequest {
                tenant: TENANT.to_owned(),
                read: None,
                name: name.to_owned(),
            })
            .await
            .map_err(|s| refused(&what, s))?
            .into_inner();
        let mut got = answer.model.clone().context("no model")?;
        let got_digest = std::mem::take(&mut got.digest);
        ensure!(
            got == spec.to_proto() && answer.active == (spec.name == active.name),
            "{what}: {got:?} (active {}), expected {:?}",
            answer.active,
            spec.to_proto()
        );
        ensure!(
            got_digest.len() == 64 && got_digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{what}: the digest {got_digest:?} is not 64 hex digits"
        );
        let mut names = answer.model_names.clone();
        names.sort();
        let mut wanted: Vec<&str> = repository_models().iter().map(|m| m.name).collect();
        wanted.sort();
        ensure!(
            names == wanted,
            "{what}: models {names:?}, expected {wanted:?}"
        );
        let got_rules: Vec<AgingRuleSpec> = answer
            .aging_rules
            .iter()
            .map(|rule| AgingRuleSpec {
                name: rule.name.clone(),
                version: rule.version,
                no_evidence_days: rule.no_evidence_days,
                score_below: rule.score_below,
                statuses: rule.statuses().collect(),
            })
            .collect();
        ensure!(
            got_rules == rules,
            "{what}: aging rules {got_rules:?}, policy.toml says {rules:?}"
        );
        if name.is_empty() {
            digest = Some(got_digest);
        }
    }
    digest.context("no active model")
}

// ---------------------------------------------------------------------------------------------
// The book: what the test recorded, and what each read should therefore answer
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct FeedbackBook {
    team: String,
    source: proto::FeedbackSource,
    text: String,
    submitter: String,
    tags: Vec<String>,
    outcome_tags: Vec<String>,
    received: Bounds,
    /// The position of its `feedback.received` record (lists are in ledger order).
    position: u64,
    status: FS,
    /// The opportunities it is evidence for, in the order it became so (moved from a duplicate
    /// included), and when.
    links: Vec<(String, Bounds)>,
    discard_reason: String,
}

#[derive(Clone, Debug)]
struct EvidenceBook {
    reference: Ent,
    observation: Option<proto::Observation>,
    attached: Bounds,
    /// The record on the opportunity's stream that attached it.
    attached_position: u64,
}

#[derive(Clone, Debug)]
struct VoteBook {
    weight: u32,
    /// Votes are ordered by when they were cast: the latest per principal wins.
    order: u64,
}

#[derive(Clone, Debug)]
struct RatingBook {
    value: f64,
    by: String,
    at: Bounds,
    order: u64,
}

#[derive(Clone, Debug)]
struct ScoreBook {
    expected: ExpectedScore,
    /// The `opportunity.scored` record.
    position: u64,
    actor: String,
    recorded: Bounds,
}

#[derive(Clone, Debug)]
struct AgedBook {
    rule: String,
    rule_version: u32,
    reason: String,
    at: Bounds,
    position: u64,
    actor: String,
    status_before: OS,
}

#[derive(Clone, Debug)]
struct OpportunityBook {
    title: String,
    team: String,
    owner: String,
    status: OS,
    created: Bounds,
    last_evidence: Bounds,
    evidence: Vec<EvidenceBook>,
    votes: BTreeMap<String, VoteBook>,
    ratings: BTreeMap<String, RatingBook>,
    scores: Vec<ScoreBook>,
    canonical: String,
    decision: String,
    decline_reason: String,
    snoozed_until: i64,
    outcome_signal: String,
    shipped: Option<Bounds>,
    aged: Option<AgedBook>,
}

impl OpportunityBook {
    fn score_value(&self) -> f64 {
        self.scores.last().map_or(0.0, |s| s.expected.value)
    }
}

#[derive(Clone, Debug)]
struct DecisionBook {
    kind: proto::DecisionKind,
    title: String,
    team: String,
    deciders: Vec<String>,
    subjects: Vec<Ent>,
    supersedes: String,
    status: DS,
    proposed_by: String,
    decided_by: String,
    superseded_by: String,
    /// When it was superseded, and in which order among supersessions.
    superseded: Option<(Bounds, u64)>,
}

#[derive(Clone, Debug)]
struct MilestoneBook {
    name: String,
    due: i64,
    status: MS,
    signal: String,
}

#[derive(Clone, Debug)]
struct InitiativeBook {
    title: String,
    team: String,
    owners: Vec<String>,
    implements: Vec<String>,
    start: i64,
    target_date: i64,
    status: IS,
    at_risk: bool,
    risk_reason: String,
    milestones: Vec<MilestoneBook>,
}

#[derive(Clone, Debug)]
struct RecordBook {
    entity: Ent,
    actor: String,
}

/// Everything the test recorded, as of its `head`.
#[derive(Clone, Debug, Default)]
struct World {
    head: u64,
    feedback: BTreeMap<String, FeedbackBook>,
    signals: BTreeMap<String, proto::Observation>,
    opportunities: BTreeMap<String, OpportunityBook>,
    decisions: BTreeMap<String, DecisionBook>,
    initiatives: BTreeMap<String, InitiativeBook>,
    /// Every lineage edge, with the position of the first record that named it.
    edges: BTreeMap<EdgeKey, u64>,
    /// Every record: whose stream it is on and who recorded it.
    records: BTreeMap<u64, RecordBook>,
    order: u64,
}

fn ranked_status(status: OS) -> bool {
    matches!(
        status,
        OS::New | OS::UnderReview | OS::Planned | OS::InProgress
    )
}

impl World {
    fn next_order(&mut self) -> u64 {
        self.order += 1;
        self.order
    }

    fn edge(&mut self, from: Ent, relation: Rel, to: Ent, position: u64) {
        self.edges.entry((from, relation, to)).or_insert(position);
    }

    fn opportunity(&self, id: &str) -> &OpportunityBook {
        &self.opportunities[id]
    }

    fn opportunity_mut(&mut self, id: &str) -> Result<&mut OpportunityBook> {
        self.opportunities
            .get_mut(id)
            .with_context(|| format!("the book has no opportunity {id}"))
    }

    /// The ranked opportunities (of one team, or all), highest score first, ties by id.
    fn ranking(&self, team: Option<&str>) -> Vec<(String, f64)> {
        let mut ranked: Vec<(String, f64)> = self
            .opportunities
            .iter()
            .filter(|(_, o)| ranked_status(o.status) && team.is_none_or(|t| o.team == t))
            .map(|(id, o)| (id.clone(), o.score_value()))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked
    }

    fn rank_of(&self, id: &str) -> u32 {
        self.ranking(None)
            .iter()
            .position(|(ranked, _)| ranked == id)
            .map_or(0, |index| index as u32 + 1)
    }

    /// A breadth-first walk from `root`, each entity once at its first depth, to `depth`.
    fn walk(&self, root: &Ent, walk: Walk, depth: u32) -> BTreeMap<Ent, u32> {
        let mut seen: BTreeMap<Ent, u32> = BTreeMap::new();
        seen.insert(root.clone(), 0);
        let mut frontier = vec![root.clone()];
        for hop in 1..=depth {
            let mut next = Vec::new();
            for node in &frontier {
                for edge in self.edges.keys() {
                    let (up, down) = ends(edge);
                    let reached = match walk {
                        Walk::Upstream if down == node => up,
                        Walk::Downstream if up == node => down,
                        Walk::Both if up == node => down,
                        Walk::Both if down == node => up,
                        _ => continue,
                    };
                    if !seen.contains_key(reached) {
                        seen.insert(reached.clone(), hop);
                        next.push(reached.clone());
                    }
                }
            }
            frontier = next;
        }
        seen
    }

    fn exists(&self, entity: &Ent) -> bool {
        match entity.kind {
            Kind::Feedback => self.feedback.contains_key(&entity.id),
            Kind::Signal => self.signals.contains_key(&entity.id),
            Kind::Opportunity => self.opportunities.contains_key(&entity.id),
            Kind::Decision => self.decisions.contains_key(&entity.id),
            Kind::Initiative => self.initiatives.contains_key(&entity.id),
            Kind::Unspecified => false,
        }
    }

    /// The summary a lineage answer should give of an entity.
    fn summary(&self, entity: &Ent) -> Result<proto::EntitySummary> {
        use proto::entity_summary::Status;
        let (title, team, status) = match entity.kind {
            Kind::Feedback => {
                let f = &self.feedback[&entity.id];
                (
                    String::new(),
                    f.team.clone(),
                    Some(Status::FeedbackStatus(f.status as i32)),
                )
            }
            Kind::Signal => {
                let o = &self.signals[&entity.id];
                (o.metric.clone(), o.team.clone(), None)
            }
            Kind::Opportunity => {
                let o = &self.opportunities[&entity.id];
                (
                    o.title.clone(),
                    o.team.clone(),
                    Some(Status::OpportunityStatus(o.status as i32)),
                )
            }
            Kind::Decision => {
                let d = &self.decisions[&entity.id];
                (
                    d.title.clone(),
                    d.team.clone(),
                    Some(Status::DecisionStatus(d.status as i32)),
                )
            }
            Kind::Initiative => {
                let i = &self.initiatives[&entity.id];
                (
                    i.title.clone(),
                    i.team.clone(),
                    Some(Status::InitiativeStatus(i.status as i32)),
                )
            }
            Kind::Unspecified => bail!("no such kind"),
        };
        Ok(proto::EntitySummary {
            entity: Some(entity.to_proto()),
            title,
            team,
            status,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Recording: each command over gRPC, and what it should have done, in the book
// ---------------------------------------------------------------------------------------------

/// A refused call as an error that says what was refused, with the rule.
fn refused(what: &str, status: tonic::Status) -> anyhow::Error {
    anyhow!(
        "{what}: {:?} {} (cairn-rule {:?})",
        status.code(),
        status.message(),
        rule_of(&status)
    )
}

/// Runs a call and reads the clock around it.
async fn timed<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<(T, Bounds), tonic::Status> {
    let from = now_micros();
    let answer = call.await?.into_inner();
    Ok((
        answer,
        Bounds {
            from,
            to: now_micros(),
        },
    ))
}

/// Where a command's records land, besides the named entity's stream.
enum Layout {
    /// Only on the named entity's stream.
    Alone,
    /// A step on another entity's stream first (LinkFeedback links the feedback item first).
    StepBefore(Ent),
    /// A step on another entity's stream after (a duplicate's evidence moving to its canonical
    /// opportunity, the superseded decision marked).
    StepAfter(Ent),
}

/// What the scenario remembers for the checks after it.
struct Marks {
    /// The head mid-scenario: before the duplicate moved and before the supersession of
    /// d-flaky-1.
    mid: u64,
    /// The last command, to retry.
    last_vote: (proto::VoteRequest, proto::CommandReceipt),
    /// The duplicate triage (a two-step command), to retry.
    duplicate: (proto::TriageRequest, proto::CommandReceipt),
    /// The aging sweep's call.
    sweep: Bounds,
}

struct Recorder {
    c: LoopClients,
    w: World,
    spec: ModelSpec,
    rules: Vec<AgingRuleSpec>,
    keys: u64,
}

fn observation(
    metric: &str,
    unit: &str,
    direction: proto::MetricDirection,
    team: &str,
    value: Option<f64>,
    percentiles: Option<(f64, f64, f64)>,
    observed_at: i64,
) -> proto::Observation {
    proto::Observation {
        metric: metric.to_owned(),
        unit: unit.to_owned(),
        direction: direction as i32,
        service: format!("{team}-svc"),
        team: team.to_owned(),
        window_seconds: 7 * 86_400,
        value,
        percentiles: percentiles.map(|(p50, p95, p99)| proto::Percentiles { p50, p95, p99 }),
        source: "prometheus".to_owned(),
        observed_at_micros: observed_at,
    }
}

impl Recorder {
    fn meta(&mut self, actor: &str, occurred_at: i64) -> proto::CommandMeta {
        self.keys += 1;
        proto::CommandMeta {
            tenant: TENANT.to_owned(),
            idempotency_key: format!("e2e-{}", self.keys),
            expected_version: 0,
            actor: actor.to_owned(),
            occurred_at_micros: occurred_at,
            correlation_id: Vec::new(),
        }
    }

    async fn head(&self) -> Result<u64> {
        Ok(self
            .c
            .ledger
            .clone()
            .get_log_info(proto::GetLogInfoRequest {})
            .await?
            .into_inner()
            .head_position)
    }

    /// Books the records a command made: those of its receipt on the named entity's stream, and
    /// those of its step, between the previous head and the new one (the test is the only
    /// writer, so the ledger's head says where a step's records are).
    async fn settle(
        &mut self,
        what: &str,
        receipt: &proto::CommandReceipt,
        actor: &str,
        layout: Layout,
    ) -> Result<()> {
        ensure!(
            !receipt.deduplicated,
            "{what}: a first call answered deduplicated"
        );
        let own = Ent::of(
            receipt
                .entity
                .as_ref()
                .context("a receipt without entity")?,
        );
        let (first, last) = (receipt.first_position, receipt.last_position);
        ensure!(
            first >= 1 && first <= last,
            "{what}: receipt positions {first}..{last}"
        );
        ensure!(
            receipt.event_types.len() as u64 == last - first + 1,
            "{what}: {} event types for positions {first}..={last}",
            receipt.event_types.len()
        );
        let before = self.w.head;
        let head = self.head().await?;
        let step = match layout {
            Layout::Alone => {
                ensure!(
                    first == before + 1 && last == head,
                    "{what}: recorded {first}..={last}, the head moved from {before} to {head}"
                );
                None
            }
            Layout::StepBefore(entity) => {
                ensure!(
                    first > before + 1 && last == head,
                    "{what}: recorded {first}..={last} after a step, the head moved from {before} \
                     to {head}"
                );
                Some((entity, before + 1..first))
            }
            Layout::StepAfter(entity) => {
                ensure!(
                    first == before + 1 && head > last,
                    "{what}: recorded {first}..={last} before a step, the head moved from {before} \
                     to {head}"
                );
                Some((entity, last + 1..head + 1))
            }
        };
        for position in first..=last {
            self.w.records.insert(
                position,
                RecordBook {
                    entity: own.clone(),
                    actor: actor.to_owned(),
                },
            );
        }
        if let Some((entity, positions)) = step {
            for position in positions {
                self.w.records.insert(
                    position,
                    RecordBook {
                        entity: entity.clone(),
                        actor: actor.to_owned(),
                    },
                );
            }
        }
        self.w.head = head;
        Ok(())
    }

    /// Rescoring after a command on an opportunity: the book's score changes exactly when the
    /// model's inputs changed, and then the command must have recorded `opportunity.scored` as
    /// its last event (when the test has its receipt: a step has none).
    fn rescore(
        &mut self,
        id: &str,
        receipt: Option<&proto::CommandReceipt>,
        position: u64,
        actor: &str,
        recorded: Bounds,
        computed: Bounds,
    ) -> Result<bool> {
        let spec = &self.spec;
        let o = self.w.opportunity_mut(id)?;
        let changed = if o.status == OS::Duplicate {
            false
        } else {
            let expected = spec.score(o, computed);
            let changed = o
                .scores
                .last()
                .is_none_or(|s| s.expected.key() != expected.key());
            if changed {
                // A score computed from a signal records that it was derived from it.
                let signals: Vec<String> = expected
                    .inputs
                    .iter()
                    .filter_map(|input| match &input.source {
                        Src::Signal { id, .. } => Some(id.clone()),
                        _ => None,
                    })
                    .collect();
                o.scores.push(ScoreBook {
                    expected,
                    position,
                    actor: actor.to_owned(),
                    recorded,
                });
                for signal in signals {
                    self.w.edge(
                        Ent::opportunity(id),
                        Rel::DerivedFrom,
                        Ent::signal(&signal),
                        position,
                    );
                }
            }
            changed
        };
        if let Some(receipt) = receipt {
            let says = receipt.event_types.last().is_some_and(|t| t == SCORED);
            ensure!(
                says == changed,
                "{id}: the model says the score {} but the command recorded {:?}",
                if changed { "changed" } else { "did not change" },
                receipt.event_types
            );
        }
        Ok(changed)
    }

    #[allow(clippy::too_many_arguments)]
    async fn submit(
        &mut self,
        id: &str,
        actor: &str,
        submitter: &str,
        team: &str,
        source: proto::FeedbackSource,
        text: &str,
        outcome: &str,
        occurred_at: i64,
    ) -> Result<()> {
        let tags = vec![team.to_owned(), "e2e".to_owned()];
        let outcome_tags = vec![outcome.to_owned()];
        let request = proto::SubmitFeedbackRequest {
            meta: Some(self.meta(actor, occurred_at)),
            id: id.to_owned(),
            text: text.to_owned(),
            submitter: submitter.to_owned(),
            team: team.to_owned(),
            source: source as i32,
            tags: tags.clone(),
            outcome_tags: outcome_tags.clone(),
            visibility: proto::Visibility::Open as i32,
        };
        let what = format!("SubmitFeedback {id}");
        let (receipt, during) = timed(self.c.feedback.clone().submit_feedback(request))
            .await
            .map_err(|s| refused(&what, s))?;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        self.w.feedback.insert(
            id.to_owned(),
            FeedbackBook {
                team: team.to_owned(),
                source,
                text: text.to_owned(),
                submitter: submitter.to_owned(),
                tags,
                outcome_tags,
                received: if occurred_at != 0 {
                    Bounds::exactly(occurred_at)
                } else {
                    during
                },
                position: receipt.first_position,
                status: FS::Received,
                links: Vec::new(),
                discard_reason: String::new(),
            },
        );
        Ok(())
    }

    async fn discard(&mut self, id: &str, actor: &str, reason: &str) -> Result<()> {
        let request = proto::DiscardFeedbackRequest {
            meta: Some(self.meta(actor, 0)),
            id: id.to_owned(),
            reason: reason.to_owned(),
        };
        let what = format!("DiscardFeedback {id}");
        let (receipt, _) = timed(self.c.feedback.clone().discard_feedback(request))
            .await
            .map_err(|s| refused(&what, s))?;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        let f = self.w.feedback.get_mut(id).context("no such feedback")?;
        f.status = FS::Discarded;
        f.discard_reason = reason.to_owned();
        Ok(())
    }

    async fn signal(
        &mut self,
        id: &str,
        actor: &str,
        observation: proto::Observation,
    ) -> Result<()> {
        let request = proto::RecordSignalRequest {
            meta: Some(self.meta(actor, 0)),
            id: id.to_owned(),
            observation: Some(observation.clone()),
        };
        let what = format!("RecordSignal {id}");
        let (receipt, _) = timed(self.c.feedback.clone().record_signal(request))
            .await
            .map_err(|s| refused(&what, s))?;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        self.w.signals.insert(id.to_owned(), observation);
        Ok(())
    }

    async fn create(
        &mut self,
        id: &str,
        actor: &str,
        title: &str,
        team: &str,
        owner: &str,
        occurred_at: i64,
    ) -> Result<()> {
        let request = proto::CreateOpportunityRequest {
            meta: Some(self.meta(actor, occurred_at)),
            id: id.to_owned(),
            draft: Some(proto::OpportunityDraft {
                title: title.to_owned(),
                problem: format!("{title}: the problem, as the team sees it"),
                owner: owner.to_owned(),
                team: team.to_owned(),
                size: proto::Size::M as i32,
                outcome_tags: vec!["developer-time".to_owned()],
                visibility: proto::Visibility::Open as i32,
            }),
        };
        let what = format!("CreateOpportunity {id}");
        let (receipt, during) = timed(self.c.prioritization.clone().create_opportunity(request))
            .await
            .map_err(|s| refused(&what, s))?;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        let created = if occurred_at != 0 {
            Bounds::exactly(occurred_at)
        } else {
            during
        };
        self.w.opportunities.insert(
            id.to_owned(),
            OpportunityBook {
                title: title.to_owned(),
                team: team.to_owned(),
                owner: owner.to_owned(),
                status: OS::New,
                created,
                last_evidence: created,
                evidence: Vec::new(),
                votes: BTreeMap::new(),
                ratings: BTreeMap::new(),
                scores: Vec::new(),
                canonical: String::new(),
                decision: String::new(),
                decline_reason: String::new(),
                snoozed_until: 0,
                outcome_signal: String::new(),
                shipped: None,
                aged: None,
            },
        );
        self.rescore(
            id,
            Some(&receipt),
            receipt.last_position,
            actor,
            during,
            created,
        )?;
        Ok(())
    }

    async fn link(&mut self, id: &str, evidence: Ent, actor: &str, occurred_at: i64) -> Result<()> {
        let request = proto::LinkFeedbackRequest {
            meta: Some(self.meta(actor, occurred_at)),
            id: id.to_owned(),
            evidence: Some(evidence.to_proto()),
        };
        let what = format!("LinkFeedback {evidence} to {id}");
        let (receipt, during) = timed(self.c.feedback.clone().link_feedback(request))
            .await
            .map_err(|s| refused(&what, s))?;
        let layout = match evidence.kind {
            Kind::Feedback => Layout::StepBefore(evidence.clone()),
            _ => Layout::Alone,
        };
        let before = self.w.head;
        self.settle(&what, &receipt, actor, layout).await?;
        let attached = if occurred_at != 0 {
            Bounds::exactly(occurred_at)
        } else {
            during
        };
        let observation = match evidence.kind {
            Kind::Signal => Some(self.w.signals[&evidence.id].clone()),
            _ => None,
        };
        if evidence.kind == Kind::Feedback {
            let f = self
                .w
                .feedback
                .get_mut(&evidence.id)
                .context("no such feedback")?;
            f.status = FS::Processed;
            f.links.push((id.to_owned(), attached));
        }
        self.w.edge(
            evidence.clone(),
            Rel::EvidenceFor,
            Ent::opportunity(id),
            before + 1,
        );
        let o = self.w.opportunity_mut(id)?;
        ensure!(o.status != OS::AgedOut, "the scenario never reopens");
        o.evidence.push(EvidenceBook {
            reference: evidence,
            observation,
            attached,
            attached_position: receipt.first_position,
        });
        o.last_evidence = attached;
        self.rescore(
            id,
            Some(&receipt),
            receipt.last_position,
            actor,
            during,
            attached,
        )?;
        Ok(())
    }

    async fn vote(
        &mut self,
        id: &str,
        actor: &str,
        voter: &str,
        weight: u32,
    ) -> Result<(proto::VoteRequest, proto::CommandReceipt)> {
        let request = proto::VoteRequest {
            meta: Some(self.meta(actor, 0)),
            id: id.to_owned(),
            voter: voter.to_owned(),
            weight,
            segment: "engineering".to_owned(),
        };
        let what = format!("Vote {voter} on {id}");
        let (receipt, during) = timed(self.c.prioritization.clone().vote(request.clone()))
            .await
            .map_err(|s| refused(&what, s))?;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        let order = self.w.next_order();
        self.w
            .opportunity_mut(id)?
            .votes
            .insert(voter.to_owned(), VoteBook { weight, order });
        self.rescore(
            id,
            Some(&receipt),
            receipt.last_position,
            actor,
            during,
            during,
        )?;
        Ok((request, receipt))
    }

    async fn rate(&mut self, id: &str, actor: &str, name: &str, value: f64) -> Result<()> {
        let request = proto::RateRequest {
            meta: Some(self.meta(actor, 0)),
            id: id.to_owned(),
            name: name.to_owned(),
            value,
            rationale: format!("{actor} rates {name} {value}"),
        };
        let what = format!("Rate {name} of {id}");
        let (receipt, during) = timed(self.c.prioritization.clone().rate(request))
            .await
            .map_err(|s| refused(&what, s))?;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        let order = self.w.next_order();
        self.w.opportunity_mut(id)?.ratings.insert(
            name.to_owned(),
            RatingBook {
                value,
                by: actor.to_owned(),
                at: during,
                order,
            },
        );
        self.rescore(
            id,
            Some(&receipt),
            receipt.last_position,
            actor,
            during,
            during,
        )?;
        Ok(())
    }

    async fn start_review(&mut self, id: &str, actor: &str) -> Result<()> {
        let request = proto::StartReviewRequest {
            meta: Some(self.meta(actor, 0)),
            id: id.to_owned(),
        };
        let what = format!("StartReview {id}");
        let (receipt, during) = timed(self.c.prioritization.clone().start_review(request))
            .await
            .map_err(|s| refused(&what, s))?;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        self.w.opportunity_mut(id)?.status = OS::UnderReview;
        self.rescore(id, Some(&receipt), 0, actor, during, during)?;
        Ok(())
    }

    async fn triage(
        &mut self,
        id: &str,
        actor: &str,
        outcome: proto::triage_request::Outcome,
    ) -> Result<(proto::TriageRequest, proto::CommandReceipt)> {
        use proto::triage_request::Outcome;
        let request = proto::TriageRequest {
            meta: Some(self.meta(actor, 0)),
            id: id.to_owned(),
            outcome: Some(outcome.clone()),
        };
        let what = format!("Triage {id}: {outcome:?}");
        let (receipt, during) = timed(self.c.prioritization.clone().triage(request.clone()))
            .await
            .map_err(|s| refused(&what, s))?;
        let layout = match &outcome {
            Outcome::Duplicate(d) => Layout::StepAfter(Ent::opportunity(&d.canonical_id)),
            _ => Layout::Alone,
        };
        let first = self.w.head + 1;
        self.settle(&what, &receipt, actor, layout).await?;
        let own = Ent::opportunity(id);
        match outcome {
            Outcome::Accept(accept) => {
                let o = self.w.opportunity_mut(id)?;
                o.status = OS::Planned;
                o.decision = accept.decision_id.clone();
                if !accept.decision_id.is_empty() {
                    self.w.edge(
                        own,
                        Rel::DecidedBy,
                        Ent::decision(&accept.decision_id),
                        first,
                    );
                }
            }
            Outcome::Decline(decline) => {
                let o = self.w.opportunity_mut(id)?;
                o.status = OS::Declined;
                o.decision = decline.decision_id.clone();
                o.decline_reason = decline.reason.clone();
                self.w.edge(
                    own,
                    Rel::DecidedBy,
                    Ent::decision(&decline.decision_id),
                    first,
                );
            }
            Outcome::Snooze(snooze) => {
                let o = self.w.opportunity_mut(id)?;
                o.status = OS::Snoozed;
                o.snoozed_until = snooze.until_micros;
            }
            Outcome::Duplicate(duplicate) => {
                let canonical = duplicate.canonical_id.clone();
                let absorbed_at = receipt.last_position + 1;
                let o = self.w.opportunity_mut(id)?;
                o.status = OS::Duplicate;
                o.canonical = canonical.clone();
                let moved_evidence = o.evidence.clone();
                let moved_votes = o.votes.clone();
                self.w
                    .edge(own, Rel::DuplicateOf, Ent::opportunity(&canonical), first);
                // The canonical one takes the evidence it lacks, and the votes (the latest per
                // principal wins, across both).
                for piece in moved_evidence {
                    if self
                        .w
                        .opportunity(&canonical)
                        .evidence
                        .iter()
                        .any(|e| e.reference == piece.reference)
                    {
                        continue;
                    }
                    if piece.reference.kind == Kind::Feedback {
                        let f = self
                            .w
                            .feedback
                            .get_mut(&piece.reference.id)
                            .context("no such feedback")?;
                        f.links
                            .push((canonical.clone(), piece.attached.through(during)));
                    }
                    self.w.edge(
                        piece.reference.clone(),
                        Rel::EvidenceFor,
                        Ent::opportunity(&canonical),
                        absorbed_at,
                    );
                    let c = self.w.opportunity_mut(&canonical)?;
                    c.last_evidence = Bounds {
                        from: c.last_evidence.from.max(piece.attached.from),
                        to: c.last_evidence.to.max(piece.attached.to),
                    };
                    c.evidence.push(EvidenceBook {
                        attached_position: absorbed_at,
                        ..piece
                    });
                }
                let c = self.w.opportunity_mut(&canonical)?;
                for (voter, vote) in moved_votes {
                    if c.votes
                        .get(&voter)
                        .is_none_or(|mine| vote.order > mine.order)
                    {
                        c.votes.insert(voter, vote);
                    }
                }
                let head = self.w.head;
                self.rescore(&canonical, None, head, actor, during, during)?;
            }
        }
        self.rescore(id, Some(&receipt), 0, actor, during, during)?;
        Ok((request, receipt))
    }

    async fn lifecycle(&mut self, id: &str, actor: &str, to: OS, signal: &str) -> Result<()> {
        let meta = Some(self.meta(actor, 0));
        let mut client = self.c.prioritization.clone();
        let what = format!("{id} to {to:?}");
        let call = match to {
            OS::InProgress => {
                timed(client.start_work(proto::StartWorkRequest {
                    meta,
                    id: id.to_owned(),
                }))
                .await
            }
            OS::Shipped => {
                timed(client.ship(proto::ShipOpportunityRequest {
                    meta,
                    id: id.to_owned(),
                }))
                .await
            }
            OS::Validated => {
                timed(client.validate_outcome(proto::ValidateOutcomeRequest {
                    meta,
                    id: id.to_owned(),
                    outcome: proto::Validation::Validated as i32,
                    signal_id: signal.to_owned(),
                }))
                .await
            }
            other => bail!("no lifecycle command to {other:?}"),
        };
        let (receipt, during) = call.map_err(|s| refused(&what, s))?;
        let first = self.w.head + 1;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        let o = self.w.opportunity_mut(id)?;
        o.status = to;
        match to {
            OS::Shipped => o.shipped = Some(during),
            OS::Validated => {
                o.outcome_signal = signal.to_owned();
                self.w.edge(
                    Ent::signal(signal),
                    Rel::Verifies,
                    Ent::opportunity(id),
                    first,
                );
            }
            _ => {}
        }
        self.rescore(id, Some(&receipt), 0, actor, during, during)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn propose(
        &mut self,
        id: &str,
        actor: &str,
        kind: proto::DecisionKind,
        title: &str,
        team: &str,
        deciders: &[&str],
        subjects: &[&str],
        supersedes: &str,
    ) -> Result<()> {
        let deciders: Vec<String> = deciders.iter().map(|d| (*d).to_owned()).collect();
        let subjects: Vec<Ent> = subjects.iter().map(|s| Ent::opportunity(s)).collect();
        let request = proto::ProposeDecisionRequest {
            meta: Some(self.meta(actor, 0)),
            id: id.to_owned(),
            content: Some(proto::DecisionContent {
                kind: kind as i32,
                title: title.to_owned(),
                team: team.to_owned(),
                context: format!("{title}: the context"),
                drivers: vec!["developer time".to_owned()],
                options: vec!["do it".to_owned(), "do nothing".to_owned()],
                outcome: format!("{title}: chosen"),
                consequences: vec!["a quarter of work".to_owned()],
                deciders: deciders.clone(),
                consulted: vec!["u-frank".to_owned()],
                informed: vec!["u-grace".to_owned()],
                subjects: subjects.iter().map(Ent::to_proto).collect(),
                supersedes: supersedes.to_owned(),
                visibility: proto::Visibility::Open as i32,
            }),
        };
        let what = format!("ProposeDecision {id}");
        let (receipt, _) = timed(self.c.decision.clone().propose_decision(request))
            .await
            .map_err(|s| refused(&what, s))?;
        let first = self.w.head + 1;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        for subject in &subjects {
            self.w
                .edge(subject.clone(), Rel::DecidedBy, Ent::decision(id), first);
        }
        if !supersedes.is_empty() {
            self.w.edge(
                Ent::decision(id),
                Rel::Supersedes,
                Ent::decision(supersedes),
                first,
            );
        }
        self.w.decisions.insert(
            id.to_owned(),
            DecisionBook {
                kind,
                title: title.to_owned(),
                team: team.to_owned(),
                deciders,
                subjects,
                supersedes: supersedes.to_owned(),
                status: DS::Proposed,
                proposed_by: actor.to_owned(),
                decided_by: String::new(),
                superseded_by: String::new(),
                superseded: None,
            },
        );
        Ok(())
    }

    async fn accept(&mut self, id: &str, actor: &str) -> Result<()> {
        let request = proto::AcceptDecisionRequest {
            meta: Some(self.meta(actor, 0)),
            id: id.to_owned(),
        };
        let what = format!("AcceptDecision {id}");
        let (receipt, during) = timed(self.c.decision.clone().accept_decision(request))
            .await
            .map_err(|s| refused(&what, s))?;
        let supersedes = self.w.decisions[id].supersedes.clone();
        let layout = if supersedes.is_empty() {
            Layout::Alone
        } else {
            Layout::StepAfter(Ent::decision(&supersedes))
        };
        self.settle(&what, &receipt, actor, layout).await?;
        let order = self.w.next_order();
        let d = self.w.decisions.get_mut(id).context("no such decision")?;
        d.status = DS::Accepted;
        d.decided_by = actor.to_owned();
        if !supersedes.is_empty() {
            let old = self
                .w
                .decisions
                .get_mut(&supersedes)
                .context("no such decision")?;
            old.status = DS::Superseded;
            old.superseded_by = id.to_owned();
            old.superseded = Some((during, order));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_initiative(
        &mut self,
        id: &str,
        actor: &str,
        title: &str,
        team: &str,
        implements: &[&str],
        start: i64,
        target_date: i64,
    ) -> Result<()> {
        let implements: Vec<String> = implements.iter().map(|o| (*o).to_owned()).collect();
        let owners = vec![actor.to_owned()];
        let request = proto::CreateInitiativeRequest {
            meta: Some(self.meta(actor, 0)),
            id: id.to_owned(),
            draft: Some(proto::InitiativeDraft {
                title: title.to_owned(),
                goal: format!("{title}: the goal"),
                owners: owners.clone(),
                team: team.to_owned(),
                target: "p95 halved".to_owned(),
                scope: "the services of the team".to_owned(),
                start_micros: start,
                target_date_micros: target_date,
                implements: implements.clone(),
                outcome_tags: vec!["developer-time".to_owned()],
                visibility: proto::Visibility::Open as i32,
            }),
        };
        let what = format!("CreateInitiative {id}");
        let (receipt, _) = timed(self.c.initiative.clone().create_initiative(request))
            .await
            .map_err(|s| refused(&what, s))?;
        let first = self.w.head + 1;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        for opportunity in &implements {
            self.w.edge(
                Ent::initiative(id),
                Rel::Implements,
                Ent::opportunity(opportunity),
                first,
            );
        }
        self.w.initiatives.insert(
            id.to_owned(),
            InitiativeBook {
                title: title.to_owned(),
                team: team.to_owned(),
                owners,
                implements,
                start,
                target_date,
                status: IS::Draft,
                at_risk: false,
                risk_reason: String::new(),
                milestones: Vec::new(),
            },
        );
        Ok(())
    }

    /// One initiative command; the book follows.
    async fn initiative(
        &mut self,
        id: &str,
        actor: &str,
        command: InitiativeCommand,
    ) -> Result<()> {
        let meta = Some(self.meta(actor, 0));
        let mut client = self.c.initiative.clone();
        let what = format!("{command:?} on {id}");
        let id_owned = id.to_owned();
        let call = match &command {
            InitiativeCommand::Schedule => {
                timed(client.schedule(proto::ScheduleInitiativeRequest { meta, id: id_owned }))
                    .await
            }
            InitiativeCommand::Start => {
                timed(client.start(proto::StartInitiativeRequest { meta, id: id_owned })).await
            }
            InitiativeCommand::Complete => {
                timed(client.complete(proto::CompleteInitiativeRequest { meta, id: id_owned }))
                    .await
            }
            InitiativeCommand::FlagRisk(reason) => {
                timed(client.flag_risk(proto::FlagInitiativeRiskRequest {
                    meta,
                    id: id_owned,
                    reason: reason.clone(),
                }))
                .await
            }
            InitiativeCommand::Implement(opportunity) => {
                timed(client.implement(proto::ImplementOpportunityRequest {
                    meta,
                    id: id_owned,
                    opportunity_id: opportunity.clone(),
                }))
                .await
            }
            InitiativeCommand::AddMilestone(name, due) => {
                timed(client.add_milestone(proto::AddMilestoneRequest {
                    meta,
                    id: id_owned,
                    name: name.clone(),
                    due_micros: *due,
                    exit_criteria: format!("{name} is done"),
                }))
                .await
            }
            InitiativeCommand::Meet(name, signal) => {
                timed(client.meet_milestone(proto::MeetMilestoneRequest {
                    meta,
                    id: id_owned,
                    name: name.clone(),
                    signal_id: signal.clone(),
                }))
                .await
            }
            InitiativeCommand::Miss(name) => {
                timed(client.miss_milestone(proto::MissMilestoneRequest {
                    meta,
                    id: id_owned,
                    name: name.clone(),
                }))
                .await
            }
        };
        let (receipt, _) = call.map_err(|s| refused(&what, s))?;
        let first = self.w.head + 1;
        self.settle(&what, &receipt, actor, Layout::Alone).await?;
        let i = self
            .w
            .initiatives
            .get_mut(id)
            .context("no such initiative")?;
        match command {
            InitiativeCommand::Schedule => i.status = IS::Scheduled,
            InitiativeCommand::Start => i.status = IS::InProgress,
            InitiativeCommand::Complete => {
                i.status = IS::Completed;
                i.at_risk = false;
            }
            InitiativeCommand::FlagRisk(reason) => {
                i.at_risk = true;
                i.risk_reason = reason;
            }
            InitiativeCommand::Implement(opportunity) => {
                i.implements.push(opportunity.clone());
                self.w.edge(
                    Ent::initiative(id),
                    Rel::Implements,
                    Ent::opportunity(&opportunity),
                    first,
                );
            }
            InitiativeCommand::AddMilestone(name, due) => i.milestones.push(MilestoneBook {
                name,
                due,
                status: MS::Open,
                signal: String::new(),
            }),
            InitiativeCommand::Meet(name, signal) => {
                let m = i
                    .milestones
                    .iter_mut()
                    .find(|m| m.name == name)
                    .context("no such milestone")?;
                m.status = MS::Met;
                m.signal = signal.clone();
                if !signal.is_empty() {
                    self.w.edge(
                        Ent::signal(&signal),
                        Rel::Verifies,
                        Ent::initiative(id),
                        first,
                    );
                }
            }
            InitiativeCommand::Miss(name) => {
                let m = i
                    .milestones
                    .iter_mut()
                    .find(|m| m.name == name)
                    .context("no such milestone")?;
                m.status = MS::Missed;
            }
        }
        Ok(())
    }

    /// Runs the aging sweep; what ages out is what the book says the repository's rules hold
    /// for.
    async fn age_out(&mut self, actor: &str) -> Result<Bounds> {
        let request = proto::AgeOutRequest {
            meta: Some(self.meta(actor, 0)),
            team: String::new(),
            page: Some(proto::PageRequest {
                page_size: 0,
                page_token: String::new(),
            }),
        };
        // AgeOut takes its candidates from the read models as they stand, without waiting for
        // the head: read the head first, so the sweep examines what the book says is open.
        self.c
            .prioritization
            .clone()
            .get_ranking(proto::GetRankingRequest {
                tenant: TENANT.to_owned(),
                read: Some(proto::ReadOptions {
                    as_of_position: None,
                    at_least_position: Some(self.w.head),
                    include_personal: false,
                }),
                team: String::new(),
                limit: 1,
            })
            .await
            .map_err(|s| refused("GetRanking before the sweep", s))?;
        let sweep_start = now_micros();
        let candidates: Vec<String> = self
            .w
            .opportunities
            .iter()
            .filter(|(_, o)| self.rules.iter().any(|r| r.statuses.contains(&o.status)))
            .map(|(id, _)| id.clone())
            .collect();
        let mut expected: BTreeMap<String, &AgingRuleSpec> = BTreeMap::new();
        for id in &candidates {
            let o = self.w.opportunity(id);
            let rule = self.rules.iter().find(|rule| {
                rule.statuses.contains(&o.status)
                    && o.last_evidence.to + i64::from(rule.no_evidence_days) * DAY_MICROS
                        <= sweep_start
                    && o.score_value() < rule.score_below
            });
            if let Some(rule) = rule {
                expected.insert(id.clone(), rule);
            }
        }
        let (answer, during) = timed(self.c.prioritization.clone().age_out(request))
            .await
            .map_err(|s| refused("AgeOut", s))?;
        ensure!(
            answer.examined as usize == candidates.len(),
            "AgeOut examined {} candidates; the open opportunities some rule applies to are {:?}",
            answer.examined,
            candidates
        );
        ensure!(
            answer
                .page
                .as_ref()
                .is_none_or(|p| p.next_page_token.is_empty()),
            "AgeOut left candidates for another page"
        );
        let got: BTreeSet<&str> = answer
            .aged_out
            .iter()
            .map(|a| a.opportunity_id.as_str())
            .collect();
        let wanted: BTreeSet<&str> = expected.keys().map(String::as_str).collect();
        ensure!(
            got == wanted,
            "AgeOut aged out {got:?}, expected {wanted:?}"
        );
        let mut receipts: Vec<&proto::AgedOutResult> = answer.aged_out.iter().collect();
        receipts.sort_by_key(|a| a.receipt.as_ref().map_or(0, |r| r.first_position));
        let mut next = self.w.head + 1;
        for aged in receipts {
            let rule = expected[&aged.opportunity_id];
            let receipt = aged
                .receipt
                .as_ref()
                .context("an aged-out result without receipt")?;
            ensure!(
                aged.rule == rule.name && aged.rule_version == rule.version,
                "{} aged out by {} v{}, expected {} v{}",
                aged.opportunity_id,
                aged.rule,
                aged.rule_version,
                rule.name,
                rule.version
            );
            ensure!(
                receipt.first_position == next && receipt.last_position == next,
                "the aging of {} recorded {}..={}, expected the one record {next}",
                aged.opportunity_id,
                receipt.first_position,
                receipt.last_position
            );
            ensure!(
                receipt.event_types.iter().all(|t| t != SCORED),
                "aging out rescored: {:?}",
                receipt.event_types
            );
            self.w.records.insert(
                next,
                RecordBook {
                    entity: Ent::opportunity(&aged.opportunity_id),
                    actor: actor.to_owned(),
                },
            );
            let o = self.w.opportunity_mut(&aged.opportunity_id)?;
            let idle_days = (sweep_start - o.last_evidence.to) / DAY_MICROS;
            let words = format!("no new evidence for {idle_days} days");
            ensure!(
                aged.reason.contains(&words),
                "the aging reason {:?} does not say {words:?}",
                aged.reason
            );
            o.aged = Some(AgedBook {
                rule: rule.name.clone(),
                rule_version: rule.version,
                reason: aged.reason.clone(),
                at: during,
                position: next,
                actor: actor.to_owned(),
                status_before: o.status,
            });
            o.status = OS::AgedOut;
            next += 1;
        }
        let head = self.head().await?;
        ensure!(
            head + 1 == next,
            "the sweep moved the head to {head}, its receipts end at {}",
            next - 1
        );
        self.w.head = head;
        Ok(during)
    }
}

#[derive(Clone, Debug)]
enum InitiativeCommand {
    Schedule,
    Start,
    Complete,
    FlagRisk(String),
    Implement(String),
    AddMilestone(String, i64),
    Meet(String, String),
    Miss(String),
}

// ---------------------------------------------------------------------------------------------
// Reading: every question, compared with the book
// ---------------------------------------------------------------------------------------------

/// How a read is asked: the latest answer, at least at a position (read your own writes), or
/// exactly as of a position.
#[derive(Clone, Copy, Debug)]
enum At {
    Latest(u64),
    AsOf(u64),
}

/// A read response with a stamp.
trait Answer: fmt::Debug + Clone {
    fn stamp_slot(&mut self) -> &mut Option<proto::Stamp>;
}

macro_rules! answers {
    ($($response:ty),* $(,)?) => {
        $(impl Answer for $response {
            fn stamp_slot(&mut self) -> &mut Option<proto::Stamp> {
                &mut self.stamp
            }
        })*
    };
}

answers!(
    proto::GetFeedbackResponse,
    proto::ListFeedbackResponse,
    proto::GetOpportunityResponse,
    proto::GetRankingResponse,
    proto::ExplainRankResponse,
    proto::ScoreHistoryResponse,
    proto::ListAgedOutResponse,
    proto::GetDecisionResponse,
    proto::ListSupersededResponse,
    proto::GetInitiativeResponse,
    proto::UpstreamResponse,
    proto::DownstreamResponse,
    proto::GraphResponse,
    proto::WhyResponse,
    proto::WhatHappenedResponse,
);

/// Every error of several checks, or Ok.
fn all(results: impl IntoIterator<Item = Result<()>>) -> Result<()> {
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|result| result.err().map(|error| format!("{error:#}")))
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(anyhow!(errors.join("\n"))),
    }
}

fn close(got: f64, expected: f64) -> bool {
    (got - expected).abs() <= 1e-9 * expected.abs().max(1.0)
}

/// The lineage walks asked of every book: (root, direction, depth).
fn walk_cases() -> Vec<(Ent, Walk, u32)> {
    let mut cases = Vec::new();
    for depth in [1, 3] {
        cases.push((Ent::feedback("f-dup-1"), Walk::Downstream, depth));
        cases.push((Ent::feedback("f-ci-1"), Walk::Downstream, depth));
        cases.push((Ent::feedback("f-legacy-1"), Walk::Downstream, depth));
        cases.push((Ent::decision("d-flaky-2"), Walk::Upstream, depth));
        cases.push((Ent::decision("d-checkout-2"), Walk::Upstream, depth));
        cases.push((Ent::decision("d-flaky-1"), Walk::Upstream, depth));
        cases.push((Ent::signal("s-ci-cache"), Walk::Upstream, depth));
        cases.push((Ent::opportunity("o-flaky"), Walk::Both, depth));
        cases.push((Ent::initiative("i-checkout"), Walk::Upstream, depth));
    }
    cases
}

struct Reader<'a> {
    c: LoopClients,
    w: &'a World,
    at: At,
    spec: &'a ModelSpec,
    /// Every raw record, from LedgerService.ReadAll: the reference for provenance.
    records: &'a [proto::Record],
    /// The digest of the model in force (GetScoringModel).
    digest: &'a str,
    /// Every answer, stamp checkpoints left out, to compare across a restart.
    answers: Vec<String>,
    /// Every answer that differs from the book: the questions go on after one, so a run reports
    /// all of them.
    failures: Vec<String>,
}

impl<'a> Reader<'a> {
    fn read(&self, include_personal: bool) -> Option<proto::ReadOptions> {
        Some(match self.at {
            At::Latest(position) => proto::ReadOptions {
                as_of_position: None,
                at_least_position: Some(position),
                include_personal,
            },
            At::AsOf(position) => proto::ReadOptions {
                as_of_position: Some(position),
                at_least_position: None,
                include_personal,
            },
        })
    }

    fn note(&mut self, result: Result<()>) {
        if let Err(error) = result {
            self.failures.push(format!("{error:#}"));
        }
    }

    fn what(&self, what: &str) -> String {
        match self.at {
            At::Latest(position) => format!("{what} (at least {position})"),
            At::AsOf(position) => format!("{what} (as of {position})"),
        }
    }

    /// Checks the stamp and keeps the answer.
    fn keep<T: Answer>(&mut self, what: &str, answer: &T) -> Result<()> {
        let mut answer = answer.clone();
        let stamp = answer
            .stamp_slot()
            .as_mut()
            .with_context(|| format!("{what}: an answer without stamp"))?;
        match self.at {
            At::Latest(position) => ensure!(
                stamp.position >= position,
                "{what}: stamped {}, below the last receipt's {position}",
                stamp.position
            ),
            At::AsOf(position) => ensure!(
                stamp.position == position,
                "{what}: stamped {}, asked as of {position}",
                stamp.position
            ),
        }
        stamp.checkpoint = None;
        self.answers.push(format!("{what}: {answer:?}"));
        Ok(())
    }

    fn raw(&self, position: u64) -> Result<&'a proto::Record> {
        let index = usize::try_from(position)?
            .checked_sub(1)
            .context("position 0")?;
        self.records
            .get(index)
            .with_context(|| format!("no record at position {position}"))
    }

    /// A provenance against the raw record at its position and the book.
    fn provenance(&self, what: &str, got: &proto::Provenance) -> Result<()> {
        let raw = self.raw(got.position)?;
        let entity = Ent::of(got.entity.as_ref().context("a provenance without entity")?);
        let stream = raw.stream.as_ref().context("a record without stream")?;
        ensure!(
            entity.aggregate_type() == stream.aggregate_type
                && entity.id == stream.aggregate_id
                && stream.tenant == TENANT,
            "{what}: provenance of position {} names {entity}, the record is on {stream:?}",
            got.position
        );
        ensure!(
            got.stream_version == raw.stream_version
                && got.event_id == raw.event_id
                && got.event_type == raw.event_type
                && got.actor == raw.actor
                && got.recorded_at_micros == raw.recorded_at_micros
                && got.policy_bundle_hash == raw.policy_bundle_hash
                && got.correlation_id == raw.correlation_id,
            "{what}: provenance {got:?} differs from the record at position {}: version {} id {} \
             type {} actor {} recorded at {} policy bundle {}",
            got.position,
            raw.stream_version,
            hex::encode(&raw.event_id),
            raw.event_type,
            raw.actor,
            raw.recorded_at_micros,
            hex::encode(&raw.policy_bundle_hash)
        );
        ensure!(
            got.policy_bundle_hash.len() == 32,
            "{what}: a policy bundle hash of {} bytes",
            got.policy_bundle_hash.len()
        );
        let book = self
            .w
            .records
            .get(&got.position)
            .with_context(|| format!("{what}: the book has no record at {}", got.position))?;
        ensure!(
            book.entity == entity && book.actor == got.actor,
            "{what}: position {} is {} by {} in the book, {entity} by {} in the answer",
            got.position,
            book.entity,
            book.actor,
            got.actor
        );
        Ok(())
    }

    fn snapshot(
        &self,
        what: &str,
        got: &proto::ScoreSnapshot,
        expected: &ExpectedScore,
    ) -> Result<()> {
        use proto::input_source::Source as S;
        ensure!(
            got.model == self.spec.name
                && got.model_version == self.spec.version
                && got.model_digest == self.digest,
            "{what}: scored by {} v{} ({}), expected {} v{} ({})",
            got.model,
            got.model_version,
            got.model_digest,
            self.spec.name,
            self.spec.version,
            self.digest
        );
        ensure!(
            close(got.value, expected.value),
            "{what}: score {} expected {}",
            got.value,
            expected.value
        );
        ensure!(
            expected.computed.holds(got.computed_at_micros),
            "{what}: computed at {}, expected within {:?}",
            got.computed_at_micros,
            expected.computed
        );
        ensure!(
            got.inputs.len() == expected.inputs.len(),
            "{what}: {} inputs, expected {}",
            got.inputs.len(),
            expected.inputs.len()
        );
        for (input, e) in got.inputs.iter().zip(&expected.inputs) {
            let source = input.source.as_ref().and_then(|s| s.source.as_ref());
            let same_source = match (&e.source, source) {
                (Src::Rating { by, at, .. }, Some(S::Rating(r))) => {
                    r.by == *by && at.holds(r.at_micros)
                }
                (Src::Signal { id, observed_at }, Some(S::Signal(s))) => {
                    s.signal_id == *id && s.observed_at_micros == *observed_at
                }
                (Src::Votes { voters }, Some(S::Votes(v))) => v.voters == *voters,
                (Src::Missing, Some(S::Missing(true))) => true,
                _ => false,
            };
            ensure!(
                input.factor == e.factor && same_source,
                "{what}: input {:?} from {source:?}, expected {} from {:?}",
                input.factor,
                e.factor,
                e.source
            );
            ensure!(
                close(input.raw, e.raw)
                    && close(input.normalised, e.normalised)
                    && close(input.weight, e.weight)
                    && close(input.contribution, e.contribution),
                "{what}: input {} is raw {} normalised {} weight {} contribution {}, expected \
                 {} {} {} {}",
                e.factor,
                input.raw,
                input.normalised,
                input.weight,
                input.contribution,
                e.raw,
                e.normalised,
                e.weight,
                e.contribution
            );
        }
        Ok(())
    }

    fn feedback_item(
        &self,
        what: &str,
        id: &str,
        got: &proto::Feedback,
        include_personal: bool,
    ) -> Result<()> {
        let f = &self.w.feedback[id];
        ensure!(
            got.id == id
                && got.status() == f.status
                && got.team == f.team
                && got.source() == f.source
                && got.tags == f.tags
                && got.outcome_tags == f.outcome_tags
                && got.visibility() == proto::Visibility::Open
                && got.discard_reason == f.discard_reason,
            "{what}: {got:?}, expected {f:?}"
        );
        ensure!(
            f.received.holds(got.received_at_micros),
            "{what}: received at {}, expected within {:?}",
            got.received_at_micros,
            f.received
        );
        let linked: Vec<&str> = f.links.iter().map(|(o, _)| o.as_str()).collect();
        ensure!(
            got.opportunity_ids == linked,
            "{what}: evidence for {:?}, expected {linked:?}",
            got.opportunity_ids
        );
        if include_personal {
            ensure!(
                got.personal_state() == proto::PersonalState::Open
                    && got.text == f.text
                    && got.submitter == f.submitter,
                "{what}: personal data {:?} {:?} {:?}, expected open {:?} {:?}",
                got.personal_state(),
                got.text,
                got.submitter,
                f.text,
                f.submitter
            );
        } else {
            ensure!(
                got.personal_state() == proto::PersonalState::Withheld
                    && got.text.is_empty()
                    && got.submitter.is_empty(),
                "{what}: personal data not asked for, got {:?} {:?} {:?}",
                got.personal_state(),
                got.text,
                got.submitter
            );
        }
        Ok(())
    }

    /// One piece of ExplainRank's evidence: what it observed, when and by which record it was
    /// attached to opportunity `id`, and the feedback item as this reader may see it.
    fn evidence_detail(
        &self,
        what: &str,
        id: &str,
        detail: &proto::EvidenceDetail,
        book: &EvidenceBook,
    ) -> Result<()> {
        let evidence = detail.evidence.as_ref().context("no evidence")?;
        ensure!(
            book.attached.holds(evidence.attached_at_micros)
                && evidence.observation == book.observation,
            "{what}: evidence {evidence:?}, expected {book:?}"
        );
        let attached = detail.attached.as_ref().context("no attaching record")?;
        self.provenance(what, attached)?;
        ensure!(
            attached.position == book.attached_position,
            "{what}: {} attached by the record at {}, expected {} (on {id})",
            book.reference,
            attached.position,
            book.attached_position
        );
        match book.reference.kind {
            Kind::Feedback => {
                let item = detail.feedback.as_ref().context("no feedback item")?;
                self.feedback_item(what, &book.reference.id, item, false)
            }
            _ => {
                ensure!(detail.feedback.is_none(), "{what}: a signal with feedback");
                Ok(())
            }
        }
    }

    /// GetFeedback of every item.
    async fn feedback(&mut self) -> Result<()> {
        let w = self.w;
        for id in w.feedback.keys() {
            let result: Result<()> = async {
                let what = self.what(&format!("GetFeedback {id}"));
                let answer = self
                    .c
                    .feedback
                    .get_feedback(proto::GetFeedbackRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        id: id.clone(),
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                let got = answer.feedback.as_ref().context("no feedback")?;
                self.feedback_item(&what, id, got, false)?;
                Ok(())
            }
            .await;
            self.note(result);
        }
        Ok(())
    }

    /// GetOpportunity of every opportunity: state, evidence, votes, ratings, score, rank.
    async fn opportunities(&mut self) -> Result<()> {
        let w = self.w;
        for (id, o) in &w.opportunities {
            let result: Result<()> = async {
                let what = self.what(&format!("GetOpportunity {id}"));
                let answer = self
                    .c
                    .prioritization
                    .get_opportunity(proto::GetOpportunityRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        id: id.clone(),
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                let got = answer.opportunity.as_ref().context("no opportunity")?;
                let draft = got.draft.as_ref().context("no draft")?;
                ensure!(
                    got.id == *id
                        && got.status() == o.status
                        && draft.title == o.title
                        && draft.team == o.team
                        && draft.owner == o.owner
                        && got.canonical_id == o.canonical
                        && got.decision_id == o.decision
                        && got.decline_reason == o.decline_reason
                        && got.outcome_signal_id == o.outcome_signal,
                    "{what}: {got:?}, expected {o:?}"
                );
                ensure!(
                    o.created.holds(got.created_at_micros),
                    "{what}: created at {}, expected within {:?}",
                    got.created_at_micros,
                    o.created
                );
                if o.status == OS::Snoozed {
                    ensure!(
                        got.snoozed_until_micros == o.snoozed_until,
                        "{what}: snoozed until {}, expected {}",
                        got.snoozed_until_micros,
                        o.snoozed_until
                    );
                }
                match &o.aged {
                    Some(aged) => {
                        let entry = got.aged_out.as_ref().context("aged out without the rule")?;
                        ensure!(
                            entry.rule == aged.rule && entry.rule_version == aged.rule_version,
                            "{what}: aged out by {entry:?}, expected {aged:?}"
                        );
                    }
                    None => ensure!(got.aged_out.is_none(), "{what}: an aging it never had"),
                }
                let references: Vec<Ent> = got
                    .evidence
                    .iter()
                    .map(|e| e.reference.as_ref().map(Ent::of))
                    .collect::<Option<_>>()
                    .context("evidence without reference")?;
                let expected: Vec<Ent> = o.evidence.iter().map(|e| e.reference.clone()).collect();
                ensure!(
                    references == expected,
                    "{what}: evidence {references:?}, expected {expected:?}"
                );
                for (e, book) in got.evidence.iter().zip(&o.evidence) {
                    ensure!(
                        book.attached.holds(e.attached_at_micros)
                            && e.observation == book.observation,
                        "{what}: evidence {e:?}, expected {book:?}"
                    );
                }
                let weight: u64 = o.votes.values().map(|v| u64::from(v.weight)).sum();
                ensure!(
                    got.voters == o.votes.len() as u64 && got.vote_weight_total == weight,
                    "{what}: {} voters weighing {}, expected {} weighing {weight}",
                    got.voters,
                    got.vote_weight_total,
                    o.votes.len()
                );
                let mut ratings = got.ratings.clone();
                ratings.sort_by(|a, b| a.name.cmp(&b.name));
                ensure!(
                    ratings.len() == o.ratings.len()
                        && ratings.iter().zip(&o.ratings).all(|(r, (name, book))| {
                            r.name == *name
                                && r.value == book.value
                                && r.by == book.by
                                && book.at.holds(r.at_micros)
                        }),
                    "{what}: ratings {ratings:?}, expected {:?}",
                    o.ratings
                );
                match (o.scores.last(), got.score.as_ref()) {
                    (Some(book), Some(score)) => self.snapshot(&what, score, &book.expected)?,
                    (None, None) => {}
                    (book, score) => bail!("{what}: score {score:?}, expected {book:?}"),
                }
                ensure!(
                    got.rank == w.rank_of(id),
                    "{what}: rank {}, expected {}",
                    got.rank,
                    w.rank_of(id)
                );
                Ok(())
            }
            .await;
            self.note(result);
        }
        Ok(())
    }

    /// Why is X ranked where it is, part one: the ranking, of the tenant and of teams, in the
    /// order of the scores the book computed.
    async fn ranking(&mut self) -> Result<()> {
        let w = self.w;
        for team in [None, Some("platform"), Some("payments")] {
            let result: Result<()> = async {
                let what = self.what(&format!("GetRanking team {team:?}"));
                let answer = self
                    .c
                    .prioritization
                    .get_ranking(proto::GetRankingRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        team: team.unwrap_or_default().to_owned(),
                        limit: 0,
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                let expected = w.ranking(team);
                let got: Vec<(&str, f64)> = answer
                    .entries
                    .iter()
                    .map(|e| (e.id.as_str(), e.score))
                    .collect();
                ensure!(
                    answer.ranked_count as usize == expected.len()
                        && got.len() == expected.len()
                        && got
                            .iter()
                            .zip(&expected)
                            .all(|(g, e)| g.0 == e.0 && close(g.1, e.1)),
                    "{what}: ranked {got:?} of {}, expected {expected:?}",
                    answer.ranked_count
                );
                ensure!(
                    answer
                        .entries
                        .windows(2)
                        .all(|pair| pair[0].score >= pair[1].score),
                    "{what}: the order is not the order of the scores: {got:?}"
                );
                for (index, entry) in answer.entries.iter().enumerate() {
                    let o = w.opportunity(&entry.id);
                    let scored = o
                        .scores
                        .last()
                        .context("a ranked opportunity never scored")?;
                    ensure!(
                        entry.rank as usize == index + 1
                            && entry.title == o.title
                            && entry.team == o.team
                            && entry.owner == o.owner
                            && entry.status() == o.status
                            && entry.model == self.spec.name
                            && entry.model_version == self.spec.version
                            && scored.expected.computed.holds(entry.scored_at_micros),
                        "{what}: line {entry:?}, expected {o:?}"
                    );
                }
                Ok(())
            }
            .await;
            self.note(result);
        }
        Ok(())
    }

    /// Why is X ranked where it is, part two: ExplainRank of every opportunity, ranked or not.
    async fn explain(&mut self) -> Result<()> {
        let w = self.w;
        let ranking = w.ranking(None);
        for (id, o) in &w.opportunities {
            let result: Result<()> = async {
                let what = self.what(&format!("ExplainRank {id}"));
                let answer = self
                    .c
                    .prioritization
                    .explain_rank(proto::ExplainRankRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        id: id.clone(),
                        team: String::new(),
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                let rank = w.rank_of(id) as usize;
                let entry = answer.entry.as_ref().context("no entry")?;
                ensure!(
                    entry.id == *id
                        && entry.rank as usize == rank
                        && entry.status() == o.status
                        && close(entry.score, o.score_value())
                        && answer.ranked_count as usize == ranking.len(),
                    "{what}: {entry:?} of {}, expected rank {rank} of {} with score {}",
                    answer.ranked_count,
                    ranking.len(),
                    o.score_value()
                );
                let above = (rank > 1).then(|| ranking[rank - 2].0.as_str());
                let below = (rank >= 1 && rank < ranking.len()).then(|| ranking[rank].0.as_str());
                ensure!(
                    answer.above.as_ref().map(|a| a.id.as_str()) == above
                        && answer.below.as_ref().map(|b| b.id.as_str()) == below,
                    "{what}: between {:?} and {:?}, expected between {above:?} and {below:?}",
                    answer.above.as_ref().map(|a| &a.id),
                    answer.below.as_ref().map(|b| &b.id)
                );
                let book = o.scores.last().context("never scored")?;
                self.snapshot(
                    &what,
                    answer.score.as_ref().context("no score")?,
                    &book.expected,
                )?;
                let scored = answer.scored.as_ref().context("no scored record")?;
                self.provenance(&what, scored)?;
                ensure!(
                    scored.position == book.position
                        && scored.actor == book.actor
                        && scored.event_type == SCORED
                        && book.recorded.holds(scored.recorded_at_micros),
                    "{what}: scored by {scored:?}, expected position {} by {} within {:?}",
                    book.position,
                    book.actor,
                    book.recorded
                );
                // The feedback and signals behind it, newest first, those moved from a duplicate
                // included.
                let expected: Vec<&EvidenceBook> = o.evidence.iter().rev().collect();
                let got: Vec<Ent> = answer
                    .evidence
                    .iter()
                    .map(|d| {
                        d.evidence
                            .as_ref()
                            .and_then(|e| e.reference.as_ref())
                            .map(Ent::of)
                    })
                    .collect::<Option<_>>()
                    .context("evidence without reference")?;
                let wanted: Vec<Ent> = expected.iter().map(|e| e.reference.clone()).collect();
                ensure!(
                    got == wanted && answer.evidence_count as usize == wanted.len(),
                    "{what}: evidence {got:?} of {}, expected {wanted:?}",
                    answer.evidence_count
                );
                // Every piece is checked, so one wrong piece does not hide another.
                let pieces: Vec<Result<()>> = answer
                    .evidence
                    .iter()
                    .zip(expected)
                    .map(|(detail, book)| self.evidence_detail(&what, id, detail, book))
                    .collect();
                all(pieces)?;
                Ok(())
            }
            .await;
            self.note(result);
        }
        Ok(())
    }

    /// Who changed this priority, when, under which policy bundle: every score of every
    /// opportunity, newest first, with the record that holds it.
    async fn score_history(&mut self) -> Result<()> {
        let w = self.w;
        for (id, o) in &w.opportunities {
            let result: Result<()> = async {
                let what = self.what(&format!("ScoreHistory {id}"));
                let answer = self
                    .c
                    .prioritization
                    .score_history(proto::ScoreHistoryRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        page: None,
                        id: id.clone(),
                        computed: None,
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                ensure!(
                    answer
                        .page
                        .as_ref()
                        .is_none_or(|p| p.next_page_token.is_empty()),
                    "{what}: more than a page"
                );
                let got: Vec<(u64, &str)> = answer
                    .entries
                    .iter()
                    .map(|e| {
                        e.recorded
                            .as_ref()
                            .map_or((0, ""), |r| (r.position, r.actor.as_str()))
                    })
                    .collect();
                let expected: Vec<(u64, &str)> = o
                    .scores
                    .iter()
                    .rev()
                    .map(|s| (s.position, s.actor.as_str()))
                    .collect();
                ensure!(
                    got == expected,
                    "{what}: scores recorded at (position, actor) {got:?}, expected {expected:?}"
                );
                for (entry, book) in answer.entries.iter().zip(o.scores.iter().rev()) {
                    self.snapshot(
                        &what,
                        entry.score.as_ref().context("no score")?,
                        &book.expected,
                    )?;
                    let recorded = entry.recorded.as_ref().context("no record")?;
                    self.provenance(&what, recorded)?;
                    ensure!(
                        recorded.event_type == SCORED
                            && Ent::of(recorded.entity.as_ref().context("no entity")?)
                                == Ent::opportunity(id)
                            && book.recorded.holds(recorded.recorded_at_micros),
                        "{what}: {recorded:?}, expected a score of {id} recorded within {:?}",
                        book.recorded
                    );
                }
                // The computed range: the first score alone, by when it was computed.
                if let Some(first) = o.scores.first() {
                    let computed = first.expected.computed;
                    let what =
                        self.what(&format!("ScoreHistory {id} computed within {computed:?}"));
                    let answer = self
                        .c
                        .prioritization
                        .score_history(proto::ScoreHistoryRequest {
                            tenant: TENANT.to_owned(),
                            read: self.read(false),
                            page: None,
                            id: id.clone(),
                            computed: Some(proto::TimeRange {
                                from_micros: computed.from,
                                to_micros: computed.to + 1,
                            }),
                        })
                        .await
                        .map_err(|s| refused(&what, s))?
                        .into_inner();
                    self.keep(&what, &answer)?;
                    let expected: Vec<u64> = o
                        .scores
                        .iter()
                        .rev()
                        .filter(|s| s.expected.computed.from <= computed.to)
                        .map(|s| s.position)
                        .collect();
                    let got: Vec<u64> = answer
                        .entries
                        .iter()
                        .filter_map(|e| e.recorded.as_ref().map(|r| r.position))
                        .collect();
                    ensure!(got == expected, "{what}: {got:?}, expected {expected:?}");
                }
                Ok(())
            }
            .await;
            self.note(result);
        }
        Ok(())
    }

    /// What happened to my feedback: every item, with its personal data.
    async fn what_happened(&mut self) -> Result<()> {
        let w = self.w;
        for (id, f) in &w.feedback {
            let result: Result<()> = async {
                let what = self.what(&format!("WhatHappened {id}"));
                let answer = self
                    .c
                    .lineage
                    .what_happened(proto::WhatHappenedRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(true),
                        feedback_id: id.clone(),
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                // The item, the list of where it led, and each place it led: all checked before
                // one of them fails the question.
                let item = self.feedback_item(
                    &what,
                    id,
                    answer.feedback.as_ref().context("no item")?,
                    true,
                );
                let got: Vec<&str> = answer
                    .opportunities
                    .iter()
                    .map(|o| o.opportunity_id.as_str())
                    .collect();
                let expected: Vec<&str> = f.links.iter().map(|(o, _)| o.as_str()).collect();
                let led_to = match got == expected {
                    true => Ok(()),
                    false => Err(anyhow!("{what}: led to {got:?}, expected {expected:?}")),
                };
                for outcome in &answer.opportunities {
                    let oid = &outcome.opportunity_id;
                    let Some((_, linked)) = f.links.iter().find(|(o, _)| o == oid) else {
                        continue;
                    };
                    let o = w.opportunity(oid);
                    let what = format!("{what}, opportunity {oid}");
                    ensure!(
                        outcome.title == o.title
                            && outcome.team == o.team
                            && outcome.status() == o.status
                            && outcome.canonical_id == o.canonical
                            && outcome.outcome_signal_id == o.outcome_signal,
                        "{what}: {outcome:?}, expected {o:?}"
                    );
                    ensure!(
                        linked.holds(outcome.linked_at_micros),
                        "{what}: linked at {}, expected within {linked:?}",
                        outcome.linked_at_micros
                    );
                    let decision = outcome
                        .decision
                        .as_ref()
                        .map(|d| (d.id.as_str(), d.status()));
                    let expected_decision = (!o.decision.is_empty())
                        .then(|| (o.decision.as_str(), w.decisions[&o.decision].status));
                    ensure!(
                        decision == expected_decision,
                        "{what}: decided by {decision:?}, expected {expected_decision:?}"
                    );
                    let reason_ok = match o.status {
                        OS::Declined => outcome.reason == o.decline_reason,
                        OS::AgedOut => outcome
                            .reason
                            .contains(o.aged.as_ref().map_or("?", |a| a.reason.as_str())),
                        OS::Snoozed => !outcome.reason.is_empty(),
                        _ => outcome.reason.is_empty(),
                    };
                    ensure!(
                        reason_ok,
                        "{what}: reason {:?} for status {:?}",
                        outcome.reason,
                        o.status
                    );
                    match o.shipped {
                        Some(shipped) => ensure!(
                            shipped.holds(outcome.shipped_at_micros),
                            "{what}: shipped at {}, expected within {shipped:?}",
                            outcome.shipped_at_micros
                        ),
                        None => ensure!(outcome.shipped_at_micros == 0, "{what}: shipped?"),
                    }
                    let mut initiatives: Vec<&proto::InitiativeOutcome> =
                        outcome.initiatives.iter().collect();
                    initiatives.sort_by(|a, b| a.initiative_id.cmp(&b.initiative_id));
                    let expected: Vec<(&String, &InitiativeBook)> = w
                        .initiatives
                        .iter()
                        .filter(|(_, i)| i.implements.contains(oid))
                        .collect();
                    ensure!(
                        initiatives.len() == expected.len()
                            && initiatives.iter().zip(&expected).all(|(got, (iid, i))| {
                                got.initiative_id == **iid
                                    && got.title == i.title
                                    && got.status() == i.status
                                    && got.at_risk == i.at_risk
                                    && got.target_date_micros == i.target_date
                                    && got.milestones as usize == i.milestones.len()
                                    && got.milestones_met as usize
                                        == i.milestones
                                            .iter()
                                            .filter(|m| m.status == MS::Met)
                                            .count()
                                    && got.cancel_reason.is_empty()
                            }),
                        "{what}: initiatives {initiatives:?}, expected {expected:?}"
                    );
                }
                all([item, led_to])
            }
            .await;
            self.note(result);
        }
        Ok(())
    }

    /// ListFeedback, in ledger order, by each filter: the tenant, a team, a status, a source, and
    /// the items that are evidence for each opportunity (the other side of "evidence for").
    async fn list_feedback(&mut self) -> Result<()> {
        let w = self.w;
        let mut cases: Vec<(String, proto::ListFeedbackRequest)> = vec![
            ("of the tenant".into(), Default::default()),
            (
                "processed".into(),
                proto::ListFeedbackRequest {
                    status: FS::Processed as i32,
                    ..Default::default()
                },
            ),
            (
                "discarded".into(),
                proto::ListFeedbackRequest {
                    status: FS::Discarded as i32,
                    ..Default::default()
                },
            ),
            (
                "from surveys".into(),
                proto::ListFeedbackRequest {
                    source: proto::FeedbackSource::Survey as i32,
                    ..Default::default()
                },
            ),
        ];
        for team in ["platform", "payments", "mobile"] {
            cases.push((
                format!("of {team}"),
                proto::ListFeedbackRequest {
                    team: team.to_owned(),
                    ..Default::default()
                },
            ));
        }
        for id in w.opportunities.keys() {
            cases.push((
                format!("evidence for {id}"),
                proto::ListFeedbackRequest {
                    opportunity_id: id.clone(),
                    ..Default::default()
                },
            ));
        }
        for (label, request) in cases {
            let result: Result<()> = async {
                let what = self.what(&format!("ListFeedback {label}"));
                let mut expected: Vec<(&String, &FeedbackBook)> = w
                    .feedback
                    .iter()
                    .filter(|(_, f)| {
                        (request.team.is_empty() || f.team == request.team)
                            && (request.status == 0 || f.status as i32 == request.status)
                            && (request.source == 0 || f.source as i32 == request.source)
                            && (request.opportunity_id.is_empty()
                                || f.links.iter().any(|(o, _)| *o == request.opportunity_id))
                    })
                    .collect();
                expected.sort_by_key(|(_, f)| f.position);
                let expected: Vec<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
                let answer = self
                    .c
                    .feedback
                    .list_feedback(proto::ListFeedbackRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        page: Some(proto::PageRequest {
                            page_size: 500,
                            page_token: String::new(),
                        }),
                        ..request
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                let got: Vec<&str> = answer.items.iter().map(|f| f.id.as_str()).collect();
                ensure!(
                    got == expected,
                    "{what}: {got:?}, expected in ledger order {expected:?}"
                );
                Ok(())
            }
            .await;
            self.note(result);
        }
        Ok(())
    }

    /// Which decisions were superseded, and by what; and every decision as it stands.
    async fn decisions(&mut self) -> Result<()> {
        let w = self.w;
        for (id, d) in &w.decisions {
            let result: Result<()> = async {
                let what = self.what(&format!("GetDecision {id}"));
                let answer = self
                    .c
                    .decision
                    .get_decision(proto::GetDecisionRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        id: id.clone(),
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                let got = answer.decision.as_ref().context("no decision")?;
                let content = got.content.as_ref().context("no content")?;
                let subjects: Vec<Ent> = content.subjects.iter().map(Ent::of).collect();
                ensure!(
                    got.id == *id
                        && got.status() == d.status
                        && got.proposed_by == d.proposed_by
                        && got.decided_by == d.decided_by
                        && got.superseded_by == d.superseded_by
                        && content.kind() == d.kind
                        && content.title == d.title
                        && content.team == d.team
                        && content.deciders == d.deciders
                        && content.supersedes == d.supersedes
                        && subjects == d.subjects,
                    "{what}: {got:?}, expected {d:?}"
                );
                Ok(())
            }
            .await;
            self.note(result);
        }
        let mut superseded: Vec<(&String, &DecisionBook)> = w
            .decisions
            .iter()
            .filter(|(_, d)| d.superseded.is_some())
            .collect();
        superseded.sort_by_key(|(_, d)| std::cmp::Reverse(d.superseded.map(|(_, order)| order)));
        let newest_from = superseded
            .first()
            .and_then(|(_, d)| d.superseded)
            .map(|(at, _)| at.from);
        let cases: Vec<(String, String, Option<proto::TimeRange>)> = vec![
            ("every team, ever".into(), String::new(), None),
            ("payments".into(), "payments".into(), None),
            ("mobile".into(), "mobile".into(), None),
            (
                "since the newest".into(),
                String::new(),
                newest_from.map(|from| proto::TimeRange {
                    from_micros: from,
                    to_micros: 0,
                }),
            ),
        ];
        for (label, team, range) in cases {
            let result: Result<()> = async {
                let what = self.what(&format!("ListSuperseded {label}"));
                let answer = self
                    .c
                    .decision
                    .list_superseded(proto::ListSupersededRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        page: None,
                        superseded: range,
                        team: team.clone(),
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                let expected: Vec<(&str, &str)> = superseded
                    .iter()
                    .filter(|(_, d)| team.is_empty() || d.team == team)
                    .filter(|(_, d)| {
                        range.is_none_or(|r| {
                            d.superseded.is_some_and(|(at, _)| at.from >= r.from_micros)
                        })
                    })
                    .map(|(old, d)| (old.as_str(), d.superseded_by.as_str()))
                    .collect();
                let got: Vec<(&str, &str)> = answer
                    .supersessions
                    .iter()
                    .map(|s| {
                        (
                            s.decision.as_ref().map_or("", |d| d.id.as_str()),
                            s.by.as_ref().map_or("", |d| d.id.as_str()),
                        )
                    })
                    .collect();
                ensure!(
                    got == expected,
                    "{what}: (superseded, by) {got:?}, expected {expected:?}"
                );
                for s in &answer.supersessions {
                    let old = s.decision.as_ref().context("no decision")?;
                    let by = s.by.as_ref().context("no superseding decision")?;
                    let book = &w.decisions[&old.id];
                    let (at, _) = book.superseded.context("not superseded")?;
                    ensure!(
                        old.status() == DS::Superseded
                            && old.superseded_by == by.id
                            && by.status() == w.decisions[&by.id].status
                            && by.content.as_ref().is_some_and(|c| c.supersedes == old.id)
                            && at.holds(s.superseded_at_micros),
                        "{what}: {s:?}, expected superseded within {at:?}"
                    );
                }
                Ok(())
            }
            .await;
            self.note(result);
        }
        Ok(())
    }

    /// Every initiative, with its milestones.
    async fn initiatives(&mut self) -> Result<()> {
        let w = self.w;
        for (id, i) in &w.initiatives {
            let result: Result<()> = async {
                let what = self.what(&format!("GetInitiative {id}"));
                let answer = self
                    .c
                    .initiative
                    .get_initiative(proto::GetInitiativeRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        id: id.clone(),
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                let got = answer.initiative.as_ref().context("no initiative")?;
                let draft = got.draft.as_ref().context("no draft")?;
                let milestones: Vec<(&str, i64, MS, &str)> = got
                    .milestones
                    .iter()
                    .map(|m| {
                        (
                            m.name.as_str(),
                            m.due_micros,
                            m.status(),
                            m.signal_id.as_str(),
                        )
                    })
                    .collect();
                let expected: Vec<(&str, i64, MS, &str)> = i
                    .milestones
                    .iter()
                    .map(|m| (m.name.as_str(), m.due, m.status, m.signal.as_str()))
                    .collect();
                ensure!(
                    got.id == *id
                        && got.status() == i.status
                        && got.at_risk == i.at_risk
                        && (!i.at_risk || got.risk_reason == i.risk_reason)
                        && draft.title == i.title
                        && draft.team == i.team
                        && draft.owners == i.owners
                        && draft.implements == i.implements
                        && draft.start_micros == i.start
                        && draft.target_date_micros == i.target_date
                        && milestones == expected,
                    "{what}: {got:?}, expected {i:?}"
                );
                ensure!(
                    got.milestones
                        .iter()
                        .all(|m| (m.status() == MS::Open) == (m.closed_at_micros == 0)),
                    "{what}: a closed milestone without a closing time, or the reverse"
                );
                Ok(())
            }
            .await;
            self.note(result);
        }
        Ok(())
    }

    fn nodes(
        &self,
        what: &str,
        root: &Ent,
        walk: Walk,
        nodes: &[proto::LineageNode],
        expected: &BTreeMap<Ent, u32>,
    ) -> Result<()> {
        let got: BTreeMap<Ent, u32> = nodes
            .iter()
            .map(|n| {
                let entity = n.summary.as_ref().and_then(|s| s.entity.as_ref());
                (
                    entity
                        .map(Ent::of)
                        .unwrap_or_else(|| Ent::new(Kind::Unspecified, "")),
                    n.depth,
                )
            })
            .collect();
        ensure!(
            got.len() == nodes.len(),
            "{what}: an entity reached twice: {nodes:?}"
        );
        ensure!(
            got == *expected,
            "{what}: reached {got:?}, expected {expected:?}"
        );
        ensure!(
            nodes.windows(2).all(|pair| pair[0].depth <= pair[1].depth),
            "{what}: not nearest first"
        );
        for node in nodes {
            let summary = node.summary.as_ref().context("no summary")?;
            let entity = Ent::of(summary.entity.as_ref().context("no entity")?);
            let mut book = self.w.summary(&entity)?;
            if entity.kind == Kind::Signal {
                book.team = summary.team.clone();
            }
            ensure!(
                *summary == book,
                "{what}: summary {summary:?}, expected {book:?}"
            );
            if node.depth == 0 {
                ensure!(entity == *root, "{what}: {entity} at depth 0");
                continue;
            }
            let via = node.via.as_ref().context("a node reached by no edge")?;
            let edge: EdgeKey = (
                Ent::of(via.from.as_ref().context("no from")?),
                via.relation(),
                Ent::of(via.to.as_ref().context("no to")?),
            );
            ensure!(
                self.w.edges.contains_key(&edge),
                "{what}: {entity} reached by {edge:?}, which the book does not have"
            );
            let (up, down) = ends(&edge);
            let previous = match walk {
                Walk::Upstream if *up == entity => down,
                Walk::Downstream if *down == entity => up,
                Walk::Both if *up == entity => down,
                Walk::Both if *down == entity => up,
                _ => bail!("{what}: {entity} reached {walk:?} by {edge:?}"),
            };
            let previous_depth = if previous == root {
                Some(0)
            } else {
                expected.get(previous).copied()
            };
            ensure!(
                previous_depth == Some(node.depth - 1),
                "{what}: {entity} at depth {} reached from {previous} at depth {previous_depth:?}",
                node.depth
            );
        }
        Ok(())
    }

    /// Everything downstream of a feedback item, upstream of a decision, both ways around an
    /// opportunity, to depths 1 and 3; and one graph cut at a node count.
    async fn lineage(&mut self) -> Result<()> {
        let w = self.w;
        for (root, walk, depth) in walk_cases() {
            let result: Result<()> = async {
                if !w.exists(&root) {
                    return Ok(());
                }
                let mut expected = w.walk(&root, walk, depth);
                let label = format!("{walk:?} of {root} to depth {depth}");
                // The walks themselves.
                if walk != Walk::Both {
                    expected.remove(&root);
                    let what = self.what(&label);
                    let (nodes, page) = match walk {
                        Walk::Upstream => {
                            let answer = self
                                .c
                                .lineage
                                .upstream(proto::UpstreamRequest {
                                    tenant: TENANT.to_owned(),
                                    read: self.read(false),
                                    page: None,
                                    entity: Some(root.to_proto()),
                                    depth,
                                    relations: Vec::new(),
                                })
                                .await
                                .map_err(|s| refused(&what, s))?
                                .into_inner();
                            self.keep(&what, &answer)?;
                            (answer.nodes, answer.page)
                        }
                        _ => {
                            let answer = self
                                .c
                                .lineage
                                .downstream(proto::DownstreamRequest {
                                    tenant: TENANT.to_owned(),
                                    read: self.read(false),
                                    page: None,
                                    entity: Some(root.to_proto()),
                                    depth,
                                    relations: Vec::new(),
                                })
                                .await
                                .map_err(|s| refused(&what, s))?
                                .into_inner();
                            self.keep(&what, &answer)?;
                            (answer.nodes, answer.page)
                        }
                    };
                    ensure!(
                        page.is_none_or(|p| p.next_page_token.is_empty()),
                        "{what}: more than a page"
                    );
                    self.nodes(&what, &root, walk, &nodes, &expected)?;
                    expected.insert(root.clone(), 0);
                }
                // The same walk as a graph, with its edges.
                let what = self.what(&format!("Graph {label}"));
                let direction = match walk {
                    Walk::Upstream => proto::LineageDirection::Upstream,
                    Walk::Downstream => proto::LineageDirection::Downstream,
                    Walk::Both => proto::LineageDirection::Both,
                };
                let answer = self
                    .c
                    .lineage
                    .graph(proto::GraphRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        root: Some(root.to_proto()),
                        direction: direction as i32,
                        depth,
                        max_nodes: 0,
                        relations: Vec::new(),
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                ensure!(!answer.truncated, "{what}: truncated");
                let first = answer.nodes.first().and_then(|n| n.summary.as_ref());
                ensure!(
                    first.and_then(|s| s.entity.as_ref()).map(Ent::of).as_ref() == Some(&root),
                    "{what}: the root is not first"
                );
                self.nodes(&what, &root, walk, &answer.nodes, &expected)?;
                let edges: BTreeSet<EdgeKey> = answer
                    .edges
                    .iter()
                    .map(|e| {
                        Some((
                            Ent::of(e.from.as_ref()?),
                            e.relation(),
                            Ent::of(e.to.as_ref()?),
                        ))
                    })
                    .collect::<Option<_>>()
                    .context("an edge without ends")?;
                let wanted: BTreeSet<EdgeKey> = w
                    .edges
                    .keys()
                    .filter(|(from, _, to)| {
                        expected.contains_key(from) && expected.contains_key(to)
                    })
                    .cloned()
                    .collect();
                ensure!(
                    edges.len() == answer.edges.len() && edges == wanted,
                    "{what}: edges {edges:?}, expected {wanted:?}"
                );
                Ok(())
            }
            .await;
            self.note(result);
        }
        // A graph cut short by its node count.
        let result: Result<()> = async {
            let root = Ent::opportunity("o-flaky");
            let full = w.walk(&root, Walk::Both, 3);
            let what = self.what("Graph of o-flaky both ways to depth 3, at most 3 nodes");
            let answer = self
                .c
                .lineage
                .graph(proto::GraphRequest {
                    tenant: TENANT.to_owned(),
                    read: self.read(false),
                    root: Some(root.to_proto()),
                    direction: proto::LineageDirection::Both as i32,
                    depth: 3,
                    max_nodes: 3,
                    relations: Vec::new(),
                })
                .await
                .map_err(|s| refused(&what, s))?
                .into_inner();
            self.keep(&what, &answer)?;
            let got: Vec<(Ent, u32)> = answer
                .nodes
                .iter()
                .filter_map(|n| {
                    let entity = n.summary.as_ref()?.entity.as_ref()?;
                    Some((Ent::of(entity), n.depth))
                })
                .collect();
            ensure!(
                got.len() == 3.min(full.len())
                    && answer.truncated == (full.len() > 3)
                    && got.first().map(|(e, _)| e) == Some(&root)
                    && got.iter().all(|(e, d)| full.get(e) == Some(d)),
                "{what}: {got:?} truncated {}, from {full:?}",
                answer.truncated
            );
            Ok(())
        }
        .await;
        self.note(result);
        Ok(())
    }

    /// The chain of records behind an opportunity, one hop upstream: who recorded each, when,
    /// under which policy bundle; its scores among them are who changed its priority.
    async fn why(&mut self) -> Result<()> {
        let w = self.w;
        for id in ["o-flaky", "o-checkout", "o-legacy"] {
            let result: Result<()> = async {
                let root = Ent::opportunity(id);
                let what = self.what(&format!("Why {root} to depth 1"));
                let answer = self
                    .c
                    .lineage
                    .why(proto::WhyRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        page: Some(proto::PageRequest {
                            page_size: 500,
                            page_token: String::new(),
                        }),
                        entity: Some(root.to_proto()),
                        depth: 1,
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                ensure!(
                    answer
                        .page
                        .as_ref()
                        .is_none_or(|p| p.next_page_token.is_empty()),
                    "{what}: more than a page"
                );
                let upstream = w.walk(&root, Walk::Upstream, 1);
                let expected: Vec<(u64, u32)> = w
                    .records
                    .iter()
                    .filter_map(|(position, r)| upstream.get(&r.entity).map(|d| (*position, *d)))
                    .collect();
                let got: Vec<(u64, u32)> = answer
                    .steps
                    .iter()
                    .map(|s| (s.record.as_ref().map_or(0, |r| r.position), s.depth))
                    .collect();
                ensure!(
                    got == expected,
                    "{what}: (position, depth) {got:?}, expected {expected:?}"
                );
                for step in &answer.steps {
                    let record = step.record.as_ref().context("no record")?;
                    self.provenance(&what, record)?;
                    let raw = self.raw(record.position)?;
                    ensure!(
                        step.lineage_parents == raw.lineage,
                        "{what}: lineage parents {:?} of position {}, the record has {:?}",
                        step.lineage_parents,
                        record.position,
                        raw.lineage
                    );
                }
                let scored: Vec<(u64, &str)> = answer
                    .steps
                    .iter()
                    .filter_map(|s| s.record.as_ref())
                    .filter(|r| {
                        r.event_type == SCORED
                            && r.entity.as_ref().map(Ent::of) == Some(root.clone())
                    })
                    .map(|r| (r.position, r.actor.as_str()))
                    .collect();
                let expected: Vec<(u64, &str)> = w
                    .opportunity(id)
                    .scores
                    .iter()
                    .map(|s| (s.position, s.actor.as_str()))
                    .collect();
                ensure!(
                    scored == expected,
                    "{what}: score records {scored:?}, expected {expected:?}"
                );
                Ok(())
            }
            .await;
            self.note(result);
        }
        Ok(())
    }

    /// Which items were aged out (in time ranges), and by which rule.
    async fn aged_out(&mut self, ranges: &[(&str, proto::TimeRange)]) -> Result<()> {
        let w = self.w;
        let mut cases: Vec<(String, Option<proto::TimeRange>, &str, &str)> = vec![
            ("ever".into(), None, "", ""),
            ("by stale-low-score".into(), None, "stale-low-score", ""),
            ("by long-snooze".into(), None, "long-snooze", ""),
            ("of payments".into(), None, "", "payments"),
            ("of mobile".into(), None, "", "mobile"),
        ];
        for (label, range) in ranges {
            cases.push(((*label).to_owned(), Some(*range), "", ""));
        }
        for (label, range, rule, team) in cases {
            let result: Result<()> = async {
                let what = self.what(&format!("ListAgedOut {label}"));
                let answer = self
                    .c
                    .prioritization
                    .list_aged_out(proto::ListAgedOutRequest {
                        tenant: TENANT.to_owned(),
                        read: self.read(false),
                        page: None,
                        aged_out: range,
                        rule: rule.to_owned(),
                        team: team.to_owned(),
                    })
                    .await
                    .map_err(|s| refused(&what, s))?
                    .into_inner();
                self.keep(&what, &answer)?;
                let mut expected: Vec<(&String, &OpportunityBook, &AgedBook)> = w
                    .opportunities
                    .iter()
                    .filter_map(|(id, o)| o.aged.as_ref().map(|a| (id, o, a)))
                    .filter(|(_, o, a)| {
                        (rule.is_empty() || a.rule == rule)
                            && (team.is_empty() || o.team == team)
                            && range.is_none_or(|r| {
                                (r.from_micros == 0 || r.from_micros <= a.at.from)
                                    && (r.to_micros == 0 || a.at.to < r.to_micros)
                            })
                    })
                    .collect();
                expected.sort_by_key(|(_, _, a)| std::cmp::Reverse(a.position));
                let got: Vec<&str> = answer
                    .entries
                    .iter()
                    .map(|e| e.opportunity_id.as_str())
                    .collect();
                let wanted: Vec<&str> = expected.iter().map(|(id, _, _)| id.as_str()).collect();
                ensure!(got == wanted, "{what}: {got:?}, expected {wanted:?}");
                for (entry, (_, o, aged)) in answer.entries.iter().zip(&expected) {
                    ensure!(
                        entry.title == o.title
                            && entry.team == o.team
                            && entry.rule == aged.rule
                            && entry.rule_version == aged.rule_version
                            && entry.reason == aged.reason
                            && aged.at.holds(entry.aged_out_at_micros)
                            && entry.status_before() == aged.status_before
                            && entry.status() == o.status,
                        "{what}: {entry:?}, expected {aged:?} now {:?}",
                        o.status
                    );
                    let recorded = entry.recorded.as_ref().context("no record")?;
                    self.provenance(&what, recorded)?;
                    ensure!(
                        recorded.position == aged.position
                            && recorded.actor == aged.actor
                            && recorded.event_type == "opportunity.aged_out",
                        "{what}: recorded by {recorded:?}, expected position {} by {}",
                        aged.position,
                        aged.actor
                    );
                }
                Ok(())
            }
            .await;
            self.note(result);
        }
        Ok(())
    }
}

/// What a run of the questions gave: every answer (to compare across a restart), and those that
/// differ from the book.
struct Answers {
    answers: Vec<String>,
    failures: Vec<String>,
}

/// Asks every question of the book `w`, as `at` says.
async fn ask_everything(
    c: &LoopClients,
    w: &World,
    at: At,
    spec: &ModelSpec,
    records: &[proto::Record],
    digest: &str,
    aged_ranges: &[(&str, proto::TimeRange)],
) -> Result<Answers> {
    let mut reader = Reader {
        c: c.clone(),
        w,
        at,
        spec,
        records,
        digest,
        answers: Vec::new(),
        failures: Vec::new(),
    };
    reader.feedback().await?;
    reader.opportunities().await?;
    reader.ranking().await?;
    reader.explain().await?;
    reader.score_history().await?;
    reader.what_happened().await?;
    reader.list_feedback().await?;
    reader.decisions().await?;
    reader.initiatives().await?;
    reader.lineage().await?;
    reader.why().await?;
    reader.aged_out(aged_ranges).await?;
    Ok(Answers {
        answers: reader.answers,
        failures: reader.failures,
    })
}

// ---------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------

/// Records the scenario; returns the book as it stood mid-scenario, and what to retry.
async fn scenario(r: &mut Recorder, t0: i64) -> Result<(World, Marks)> {
    use proto::FeedbackSource as Channel;
    use proto::MetricDirection::{HigherIsBetter, LowerIsBetter};
    use proto::triage_request::Outcome;
    use proto::{TriageAccept, TriageDecline, TriageDuplicate, TriageSnooze};
    let feedback = Ent::feedback;
    let signal = Ent::signal;

    // Metric signals.
    let build = observation(
        "build_latency_ms",
        "ms",
        LowerIsBetter,
        "platform",
        None,
        Some((240_000.0, 1_260_000.0, 1_500_000.0)),
        t0 - 2 * DAY_MICROS,
    );
    r.signal("s-build", "svc-prometheus", build).await?;
    let mttr = observation(
        "mttr_minutes",
        "min",
        LowerIsBetter,
        "platform",
        Some(95.0),
        None,
        t0 - 3 * DAY_MICROS,
    );
    r.signal("s-mttr", "svc-prometheus", mttr).await?;
    let defects = observation(
        "defect_rate",
        "ratio",
        LowerIsBetter,
        "payments",
        Some(0.04),
        None,
        t0 - DAY_MICROS,
    );
    r.signal("s-defects", "svc-prometheus", defects).await?;
    // A newer observation of the same metric: the one a metric factor reads.
    let build_newer = observation(
        "build_latency_ms",
        "ms",
        LowerIsBetter,
        "platform",
        None,
        Some((230_000.0, 1_100_000.0, 1_320_000.0)),
        t0 - DAY_MICROS,
    );
    r.signal("s-build-2", "svc-prometheus", build_newer).await?;
    let users = observation(
        "affected_users",
        "count",
        LowerIsBetter,
        "mobile",
        Some(1200.0),
        None,
        t0 - DAY_MICROS,
    );
    r.signal("s-users", "svc-prometheus", users).await?;

    // Feedback from people and from tools, some anonymous; one item from long ago.
    let items: [(&str, &str, &str, &str, Channel, &str, &str); 11] = [
        (
            "f-ci-1",
            "svc-survey",
            "u-alice",
            "platform",
            Channel::Survey,
            "CI takes 25 minutes on a good day",
            "developer-time",
        ),
        (
            "f-ci-2",
            "svc-chatbot",
            "",
            "platform",
            Channel::Chat,
            "why is the build queue always full?",
            "developer-time",
        ),
        (
            "f-flaky-1",
            "u-bob",
            "u-bob",
            "platform",
            Channel::Ticket,
            "integration tests fail one run in five",
            "developer-time",
        ),
        (
            "f-flaky-2",
            "svc-api",
            "",
            "platform",
            Channel::Api,
            "the retry rate of the e2e suite is 18%",
            "developer-time",
        ),
        (
            "f-dup-1",
            "u-erin",
            "u-erin",
            "platform",
            Channel::Chat,
            "flaky tests again: the payments suite timed out twice",
            "developer-time",
        ),
        (
            "f-checkout-1",
            "u-carol",
            "u-carol",
            "payments",
            Channel::Ticket,
            "checkout p99 is above two seconds",
            "conversion",
        ),
        (
            "f-checkout-2",
            "svc-pager",
            "",
            "payments",
            Channel::Incident,
            "INC-2291: checkout timeouts during the sale",
            "conversion",
        ),
        (
            "f-dark-1",
            "svc-survey",
            "",
            "mobile",
            Channel::Survey,
            "please add a dark mode to the console",
            "conversion",
        ),
        (
            "f-preview-1",
            "u-dave",
            "u-dave",
            "platform",
            Channel::Survey,
            "a preview environment takes two days and a ticket",
            "developer-time",
        ),
        (
            "f-paging-1",
            "u-erin",
            "u-erin",
            "mobile",
            Channel::Incident,
            "pages arrive minutes after the alert fires",
            "reliability",
        ),
        (
            "f-search-1",
            "svc-survey",
            "",
            "platform",
            Channel::Survey,
            "code search misses half the repositories",
            "developer-time",
        ),
    ];
    for (id, actor, submitter, team, channel, text, outcome) in items {
        r.submit(id, actor, submitter, team, channel, text, outcome, 0)
            .await?;
    }
    let legacy_text = "the legacy cron host needs a reboot every week";
    r.submit(
        "f-legacy-1",
        "u-frank",
        "u-frank",
        "payments",
        Channel::Ticket,
        legacy_text,
        "reliability",
        t0 - 119 * DAY_MICROS,
    )
    .await?;
    r.submit(
        "f-spam",
        "svc-chatbot",
        "",
        "mobile",
        Channel::Chat,
        "buy cheap watches",
        "conversion",
        0,
    )
    .await?;
    r.discard("f-spam", "u-erin", "spam, not feedback").await?;

    // Opportunities, one of them created four months ago.
    let opportunities = [
        ("o-ci", "u-alice", "Speed up CI builds", "platform"),
        (
            "o-flaky",
            "u-bob",
            "Fix flaky integration tests",
            "platform",
        ),
        (
            "o-flaky-dup",
            "u-erin",
            "Flaky tests in the payments suite",
            "platform",
        ),
        (
            "o-checkout",
            "u-carol",
            "Reduce checkout latency",
            "payments",
        ),
        (
            "o-darkmode",
            "u-frank",
            "Dark mode for the console",
            "mobile",
        ),
        (
            "o-preview",
            "u-dave",
            "Self-service preview environments",
            "platform",
        ),
        ("o-paging", "u-erin", "Faster incident paging", "mobile"),
        ("o-search", "u-dave", "Better code search", "platform"),
    ];
    for (id, owner, title, team) in opportunities {
        r.create(id, owner, title, team, owner, 0).await?;
    }
    r.create(
        "o-legacy",
        "u-frank",
        "Retire the legacy cron host",
        "payments",
        "u-frank",
        t0 - 120 * DAY_MICROS,
    )
    .await?;

    // Evidence. Everything o-flaky has is attached before f-dup-1 becomes evidence for its
    // duplicate, so "newest first" is the same by attachment time and by position.
    r.link(
        "o-legacy",
        feedback("f-legacy-1"),
        "u-frank",
        t0 - 118 * DAY_MICROS,
    )
    .await?;
    let links = [
        ("o-ci", feedback("f-ci-1"), "u-alice"),
        ("o-ci", feedback("f-ci-2"), "u-alice"),
        ("o-ci", signal("s-build"), "u-alice"),
        ("o-ci", signal("s-build-2"), "u-alice"),
        ("o-flaky", feedback("f-flaky-1"), "u-bob"),
        ("o-flaky", feedback("f-flaky-2"), "u-bob"),
        ("o-flaky", signal("s-mttr"), "u-bob"),
        ("o-checkout", feedback("f-checkout-1"), "u-carol"),
        ("o-checkout", signal("s-defects"), "u-carol"),
        ("o-checkout", feedback("f-checkout-2"), "svc-pager"),
        ("o-darkmode", feedback("f-dark-1"), "u-frank"),
        ("o-preview", feedback("f-preview-1"), "u-dave"),
        ("o-paging", feedback("f-paging-1"), "u-erin"),
        ("o-paging", signal("s-users"), "u-erin"),
        ("o-search", feedback("f-search-1"), "u-dave"),
        ("o-flaky-dup", feedback("f-dup-1"), "u-erin"),
    ];
    for (id, evidence, actor) in links {
        r.link(id, evidence, actor, 0).await?;
    }

    // Votes (one cast by a tool on someone's behalf, one changed) and ratings (one revised).
    let votes = [
        ("o-ci", "u-alice", "u-alice", 2),
        ("o-ci", "u-bob", "u-bob", 1),
        ("o-ci", "svc-survey", "u-carol", 3),
        ("o-flaky", "u-alice", "u-alice", 1),
        ("o-flaky", "u-bob", "u-bob", 1),
        ("o-flaky-dup", "u-bob", "u-bob", 5),
        ("o-flaky-dup", "u-dave", "u-dave", 2),
        ("o-checkout", "u-carol", "u-carol", 4),
        ("o-checkout", "u-erin", "u-erin", 1),
        ("o-checkout", "u-frank", "u-frank", 2),
        ("o-checkout", "u-erin", "u-erin", 3),
        ("o-darkmode", "u-frank", "u-frank", 1),
        ("o-paging", "u-alice", "u-alice", 1),
        ("o-search", "u-erin", "u-erin", 1),
        ("o-search", "u-dave", "u-dave", 1),
        ("o-preview", "u-dave", "u-dave", 1),
    ];
    for (id, actor, voter, weight) in votes {
        r.vote(id, actor, voter, weight).await?;
    }
    let ratings = [
        ("o-ci", "u-dave", "customer_impact", 4.0),
        ("o-ci", "u-dave", "confidence", 80.0),
        ("o-ci", "u-erin", "effort", 2.0),
        ("o-flaky", "u-carol", "customer_impact", 3.0),
        ("o-flaky", "u-carol", "effort", 3.0),
        ("o-flaky", "u-dave", "strategic_value", 4.0),
        ("o-paging", "u-erin", "already_covered", 1.0),
        ("o-checkout", "u-dave", "customer_impact", 5.0),
        ("o-checkout", "u-dave", "confidence", 60.0),
        ("o-checkout", "u-erin", "effort", 5.0),
        ("o-checkout", "u-carol", "customer_impact", 4.5),
        ("o-search", "u-carol", "customer_impact", 2.0),
    ];
    for (id, actor, name, value) in ratings {
        r.rate(id, actor, name, value).await?;
    }

    // Reviews; decisions, one already superseded; a decline under its decision; a snooze.
    r.start_review("o-flaky", "u-dave").await?;
    r.start_review("o-checkout", "u-dave").await?;
    use proto::DecisionKind as DK;
    r.propose(
        "d-checkout-1",
        "u-carol",
        DK::Architecture,
        "Cache prices at the edge",
        "payments",
        &["u-dave"],
        &["o-checkout"],
        "",
    )
    .await?;
    r.accept("d-checkout-1", "u-dave").await?;
    r.propose(
        "d-checkout-2",
        "u-carol",
        DK::Architecture,
        "Precompute prices when checkout starts",
        "payments",
        &["u-dave"],
        &["o-checkout"],
        "d-checkout-1",
    )
    .await?;
    r.accept("d-checkout-2", "u-dave").await?;
    r.propose(
        "d-flaky-1",
        "u-bob",
        DK::Prioritisation,
        "Quarantine flaky tests",
        "platform",
        &["u-dave"],
        &["o-flaky"],
        "",
    )
    .await?;
    r.accept("d-flaky-1", "u-dave").await?;
    r.propose(
        "d-dark",
        "u-carol",
        DK::Triage,
        "Not now: dark mode",
        "mobile",
        &["u-erin"],
        &["o-darkmode"],
        "",
    )
    .await?;
    r.accept("d-dark", "u-erin").await?;
    r.triage(
        "o-darkmode",
        "u-erin",
        Outcome::Decline(TriageDecline {
            reason: "the console follows the OS theme from Q3".to_owned(),
            decision_id: "d-dark".to_owned(),
        }),
    )
    .await?;
    r.triage(
        "o-preview",
        "u-dave",
        Outcome::Snooze(TriageSnooze {
            until_micros: t0 + 30 * DAY_MICROS,
        }),
    )
    .await?;

    // Mid-scenario: before the duplicate moves and before d-flaky-1 is superseded.
    let mid = r.w.head;
    let mid_world = r.w.clone();

    // The duplicate: its evidence and votes move to o-flaky.
    let duplicate = r
        .triage(
            "o-flaky-dup",
            "u-bob",
            Outcome::Duplicate(TriageDuplicate {
                canonical_id: "o-flaky".to_owned(),
            }),
        )
        .await?;
    // A later decision supersedes d-flaky-1 and plans o-flaky.
    r.propose(
        "d-flaky-2",
        "u-bob",
        DK::Prioritisation,
        "Fix flaky tests at the root",
        "platform",
        &["u-dave"],
        &["o-flaky"],
        "d-flaky-1",
    )
    .await?;
    r.accept("d-flaky-2", "u-dave").await?;
    r.triage(
        "o-flaky",
        "u-dave",
        Outcome::Accept(TriageAccept {
            decision_id: "d-flaky-2".to_owned(),
        }),
    )
    .await?;
    let green = observation(
        "e2e_retry_rate",
        "percent",
        LowerIsBetter,
        "platform",
        Some(2.0),
        None,
        t0,
    );
    r.signal("s-flaky-green", "svc-ci", green).await?;
    r.create_initiative(
        "i-flaky",
        "u-bob",
        "Deflake the integration suites",
        "platform",
        &["o-flaky"],
        t0 - 5 * DAY_MICROS,
        t0 + 40 * DAY_MICROS,
    )
    .await?;
    use InitiativeCommand as I;
    r.initiative(
        "i-flaky",
        "u-bob",
        I::AddMilestone("quarantine-empty".into(), t0 + 10 * DAY_MICROS),
    )
    .await?;
    r.initiative("i-flaky", "u-bob", I::Schedule).await?;
    r.initiative(
        "i-flaky",
        "u-bob",
        I::Meet("quarantine-empty".into(), "s-flaky-green".into()),
    )
    .await?;

    // o-ci: planned under a decision, built by an initiative, shipped and validated.
    r.propose(
        "d-ci",
        "u-alice",
        DK::Prioritisation,
        "Cache the CI dependencies",
        "platform",
        &["u-alice"],
        &["o-ci"],
        "",
    )
    .await?;
    r.accept("d-ci", "u-alice").await?;
    r.triage(
        "o-ci",
        "u-alice",
        Outcome::Accept(TriageAccept {
            decision_id: "d-ci".to_owned(),
        }),
    )
    .await?;
    let cache = observation(
        "cache_hit_rate",
        "percent",
        HigherIsBetter,
        "platform",
        Some(87.0),
        None,
        t0,
    );
    r.signal("s-ci-cache", "svc-ci", cache).await?;
    r.create_initiative(
        "i-ci",
        "u-alice",
        "CI build cache",
        "platform",
        &["o-ci"],
        t0 - 20 * DAY_MICROS,
        t0 + 10 * DAY_MICROS,
    )
    .await?;
    r.initiative(
        "i-ci",
        "u-alice",
        I::AddMilestone("pipeline-cache".into(), t0 + 2 * DAY_MICROS),
    )
    .await?;
    r.initiative(
        "i-ci",
        "u-alice",
        I::AddMilestone("remote-exec".into(), t0 + 8 * DAY_MICROS),
    )
    .await?;
    r.initiative("i-ci", "u-alice", I::Schedule).await?;
    r.initiative("i-ci", "u-alice", I::Start).await?;
    r.initiative(
        "i-ci",
        "u-alice",
        I::Meet("pipeline-cache".into(), "s-ci-cache".into()),
    )
    .await?;
    r.initiative(
        "i-ci",
        "u-alice",
        I::Meet("remote-exec".into(), String::new()),
    )
    .await?;
    r.lifecycle("o-ci", "u-alice", OS::InProgress, "").await?;
    r.lifecycle("o-ci", "u-alice", OS::Shipped, "").await?;
    r.initiative("i-ci", "u-alice", I::Complete).await?;
    let after = observation(
        "build_latency_ms",
        "ms",
        LowerIsBetter,
        "platform",
        None,
        Some((120_000.0, 540_000.0, 700_000.0)),
        t0,
    );
    r.signal("s-ci-after", "svc-prometheus", after).await?;
    r.lifecycle("o-ci", "u-alice", OS::Validated, "s-ci-after")
        .await?;

    // o-checkout: an initiative that takes it on later, a milestone missed, one met, at risk.
    r.create_initiative(
        "i-checkout",
        "u-carol",
        "Checkout under one second",
        "payments",
        &[],
        t0 - 10 * DAY_MICROS,
        t0 + 60 * DAY_MICROS,
    )
    .await?;
    r.initiative("i-checkout", "u-carol", I::Implement("o-checkout".into()))
        .await?;
    r.initiative(
        "i-checkout",
        "u-carol",
        I::AddMilestone("edge-cache".into(), t0 - 2 * DAY_MICROS),
    )
    .await?;
    r.initiative(
        "i-checkout",
        "u-carol",
        I::AddMilestone("db-index".into(), t0 + 20 * DAY_MICROS),
    )
    .await?;
    r.initiative("i-checkout", "u-carol", I::Schedule).await?;
    r.initiative("i-checkout", "u-carol", I::Start).await?;
    r.initiative(
        "i-checkout",
        "u-carol",
        I::Meet("db-index".into(), String::new()),
    )
    .await?;
    r.initiative("i-checkout", "u-carol", I::Miss("edge-cache".into()))
        .await?;
    r.initiative(
        "i-checkout",
        "u-carol",
        I::FlagRisk("the edge cache slipped past its date".into()),
    )
    .await?;

    // o-search: accepted without a decision, in progress.
    r.triage(
        "o-search",
        "u-dave",
        Outcome::Accept(TriageAccept {
            decision_id: String::new(),
        }),
    )
    .await?;
    r.lifecycle("o-search", "u-dave", OS::InProgress, "")
        .await?;

    // The aging sweep: o-legacy has had no evidence for 118 days and scores 0.
    let sweep = r.age_out("svc-sweeper").await?;
    ensure!(
        r.w.opportunity("o-legacy").status == OS::AgedOut,
        "the book says o-legacy should have aged out"
    );

    // The last command, a plain vote.
    let last_vote = r.vote("o-paging", "u-frank", "u-frank", 2).await?;
    Ok((
        mid_world,
        Marks {
            mid,
            last_vote,
            duplicate,
            sweep,
        },
    ))
}

/// A refused command records nothing: its code and rule, and the head stays.
async fn check_refused<T: fmt::Debug>(
    r: &Recorder,
    what: &str,
    result: Result<tonic::Response<T>, tonic::Status>,
    rule: &str,
) -> Result<()> {
    let status = match result {
        Ok(answer) => bail!("{what}: accepted, answered {answer:?}"),
        Err(status) => status,
    };
    ensure!(
        status.code() == Code::FailedPrecondition && rule_of(&status) == Some(rule),
        "{what}: {:?} {:?} with cairn-rule {:?}, expected FAILED_PRECONDITION with {rule}",
        status.code(),
        status.message(),
        rule_of(&status)
    );
    let head = r.head().await?;
    ensure!(
        head == r.w.head,
        "{what}: the head moved from {} to {head}",
        r.w.head
    );
    Ok(())
}

/// Retrying a command with its idempotency key answers its receipt, deduplicated, and records
/// nothing.
async fn check_retried(
    r: &Recorder,
    what: &str,
    again: proto::CommandReceipt,
    original: &proto::CommandReceipt,
) -> Result<()> {
    ensure!(
        again.deduplicated,
        "{what}: a retry answered {again:?}, not deduplicated"
    );
    let expected = proto::CommandReceipt {
        deduplicated: true,
        ..original.clone()
    };
    ensure!(
        again == expected,
        "{what}: a retry answered {again:?}, expected {expected:?}"
    );
    let head = r.head().await?;
    ensure!(
        head == r.w.head,
        "{what}: the retry moved the head from {} to {head}",
        r.w.head
    );
    Ok(())
}

async fn refusals_and_retries(r: &mut Recorder, marks: &Marks) -> Result<()> {
    // Votes and ratings are frozen on a declined opportunity.
    let vote = proto::VoteRequest {
        meta: Some(r.meta("u-grace", 0)),
        id: "o-darkmode".to_owned(),
        voter: String::new(),
        weight: 1,
        segment: String::new(),
    };
    let result = r.c.prioritization.clone().vote(vote).await;
    check_refused(
        r,
        "a vote on the declined o-darkmode",
        result,
        "votes_frozen",
    )
    .await?;
    let rate = proto::RateRequest {
        meta: Some(r.meta("u-grace", 0)),
        id: "o-darkmode".to_owned(),
        name: "customer_impact".to_owned(),
        value: 5.0,
        rationale: String::new(),
    };
    let result = r.c.prioritization.clone().rate(rate).await;
    check_refused(
        r,
        "a rating of the declined o-darkmode",
        result,
        "votes_frozen",
    )
    .await?;
    // A duplicate takes nothing: its votes belong to the canonical opportunity.
    let vote = proto::VoteRequest {
        meta: Some(r.meta("u-grace", 0)),
        id: "o-flaky-dup".to_owned(),
        voter: String::new(),
        weight: 1,
        segment: String::new(),
    };
    let result = r.c.prioritization.clone().vote(vote).await;
    check_refused(
        r,
        "a vote on the duplicate o-flaky-dup",
        result,
        "duplicate_takes_nothing",
    )
    .await?;

    // Retries with the same idempotency key: a plain command, and a two-step one.
    let (request, original) = &marks.last_vote;
    let again =
        r.c.prioritization
            .clone()
            .vote(request.clone())
            .await
            .map_err(|s| refused("the last vote again", s))?
            .into_inner();
    check_retried(r, "the last vote", again, original).await?;
    let (request, original) = &marks.duplicate;
    let again =
        r.c.prioritization
            .clone()
            .triage(request.clone())
            .await
            .map_err(|s| refused("the duplicate triage again", s))?
            .into_inner();
    check_retried(r, "the duplicate triage", again, original).await?;
    Ok(())
}

/// The first answer that differs between two runs of the questions.
fn first_difference(before: &[String], after: &[String]) -> Option<String> {
    if before.len() != after.len() {
        return Some(format!(
            "{} answers before, {} after",
            before.len(),
            after.len()
        ));
    }
    before
        .iter()
        .zip(after)
        .find(|(b, a)| b != a)
        .map(|(b, a)| format!("before:\n{b}\nafter:\n{a}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_question_is_answered_now_as_of_earlier_and_after_a_restart() -> Result<()> {
    let (_, rules) = repository_policy()?;
    let spec = repository_models()
        .into_iter()
        .find(|m| m.name == SCENARIO_MODEL)
        .context("the scenario's model")?;
    let policies = policies_with_active(SCENARIO_MODEL)?;
    let policies_arg = policies.path().to_str().context("a UTF-8 temporary path")?;
    let mut server = Server::start_temp(&["--policies", policies_arg])?;
    let c = server.loop_clients().await?;
    // The models and the aging rules in force are the repository's.
    let digest = check_models(&c, &spec, &rules).await?;

    let mut r = Recorder {
        c: c.clone(),
        w: World::default(),
        spec: spec.clone(),
        rules,
        keys: 0,
    };
    // The ledger opens with the server's policy activation.
    r.w.head = r.head().await?;
    let t0 = now_micros();
    let (mid_world, marks) = scenario(&mut r, t0).await?;
    refusals_and_retries(&mut r, &marks).await?;
    let end_world = r.w.clone();
    let end = end_world.head;
    ensure!(
        marks.last_vote.1.last_position == end,
        "the last receipt ends at {}, the head is {end}",
        marks.last_vote.1.last_position
    );

    // The raw records: the reference for provenance.
    let records = read_all(&mut c.ledger.clone()).await?;
    ensure!(
        records.len() as u64 == end,
        "ReadAll gave {} records, the head is {end}",
        records.len()
    );
    let aged_ranges = [
        (
            "last quarter",
            proto::TimeRange {
                from_micros: t0 - 91 * DAY_MICROS,
                to_micros: marks.sweep.to + 1,
            },
        ),
        (
            "before the sweep",
            proto::TimeRange {
                from_micros: t0 - 365 * DAY_MICROS,
                to_micros: marks.sweep.from,
            },
        ),
        (
            "since the sweep",
            proto::TimeRange {
                from_micros: marks.sweep.from,
                to_micros: 0,
            },
        ),
    ];
    let ask = |c: LoopClients, w: World, at: At| {
        let spec = spec.clone();
        let records = records.clone();
        let digest = digest.clone();
        async move { ask_everything(&c, &w, at, &spec, &records, &digest, &aged_ranges).await }
    };
    let mid_answers = ask(c.clone(), mid_world.clone(), At::AsOf(marks.mid)).await?;
    let end_answers = ask(c.clone(), end_world.clone(), At::Latest(end)).await?;
    let end_as_of = ask(c.clone(), end_world.clone(), At::AsOf(end)).await?;
    let mut failures: Vec<String> = [&mid_answers, &end_answers, &end_as_of]
        .iter()
        .flat_map(|a| a.failures.iter().cloned())
        .collect();
    // Fewer things exist mid-scenario, so fewer questions have answers then; none may be empty.
    if mid_answers.answers.is_empty() || end_answers.answers.is_empty() {
        failures.push(format!(
            "{} answers mid-scenario, {} at the end",
            mid_answers.answers.len(),
            end_answers.answers.len()
        ));
    }
    // Asking as of the head is asking for the latest.
    let unlabelled = |answers: &Answers, label: &str| -> Vec<String> {
        answers
            .answers
            .iter()
            .map(|a| a.replace(label, ""))
            .collect()
    };
    if let Some(difference) = first_difference(
        &unlabelled(&end_answers, &format!(" (at least {end})")),
        &unlabelled(&end_as_of, &format!(" (as of {end})")),
    ) {
        failures.push(format!(
            "the latest answer and the answer as of the head differ: {difference}"
        ));
    }
    // Beyond the head is out of range.
    let beyond = c
        .prioritization
        .clone()
        .get_ranking(proto::GetRankingRequest {
            tenant: TENANT.to_owned(),
            read: Some(proto::ReadOptions {
                as_of_position: Some(end + 1),
                at_least_position: None,
                include_personal: false,
            }),
            team: String::new(),
            limit: 0,
        })
        .await;
    match beyond {
        Ok(answer) => failures.push(format!("a ranking as of {} answered {answer:?}", end + 1)),
        Err(status) if status.code() != Code::OutOfRange => failures.push(format!(
            "a ranking beyond the head: {:?} {}",
            status.code(),
            status.message()
        )),
        Err(_) => {}
    }

    // A restart on the same data directory answers the same at the same positions.
    let status = server.terminate()?;
    ensure!(
        status.success(),
        "cairn serve exited with {status} on SIGTERM"
    );
    server.restart()?;
    let c = server.loop_clients().await?;
    let head = c
        .ledger
        .clone()
        .get_log_info(proto::GetLogInfoRequest {})
        .await?
        .into_inner()
        .head_position;
    ensure!(
        head == end,
        "after a restart the head is {head}, it was {end}"
    );
    let mid_again = ask(c.clone(), mid_world, At::AsOf(marks.mid)).await?;
    let end_again = ask(c.clone(), end_world, At::Latest(end)).await?;
    if let Some(difference) = first_difference(&mid_answers.answers, &mid_again.answers) {
        failures.push(format!(
            "as of {} the answers changed across a restart: {difference}",
            marks.mid
        ));
    }
    if let Some(difference) = first_difference(&end_answers.answers, &end_again.answers) {
        failures.push(format!(
            "the latest answers changed across a restart: {difference}"
        ));
    }
    ensure!(
        failures.is_empty(),
        "{} answers differ from what the test recorded:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// Runs `cairn demo` against `server` as its administrator, off the async workers (it takes
/// seconds).
async fn demo(server: &Server) -> Result<CliOutput> {
    let url = server.url();
    let token = server.token()?;
    tokio::task::spawn_blocking(move || {
        run_cairn_with_token(["demo", "--server", url.as_str()], Some(&token))
    })
    .await?
}

/// The position `cairn demo` says its answers reflect ("... as of ledger position N").
fn demo_position(output: &CliOutput) -> Result<u64> {
    let marker = "as of ledger position ";
    let at = output
        .stdout
        .find(marker)
        .with_context(|| format!("cairn demo names no position:\n{output}"))?;
    let digits: String = output.stdout[at + marker.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .with_context(|| format!("cairn demo's position {digits:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_demo_loads_its_data_set_once_and_a_second_run_records_nothing() -> Result<()> {
    let server = Server::start_temp(&[])?;
    let c = server.loop_clients().await?;
    // Without --policies the server scores with its built-in copy of the repository's policies.
    let (active, rules) = repository_policy()?;
    let spec = repository_models()
        .into_iter()
        .find(|m| m.name == active)
        .with_context(|| format!("policy.toml makes {active} active, a model the test lacks"))?;
    check_models(&c, &spec, &rules).await?;
    let head = || async {
        Ok::<u64, anyhow::Error>(
            c.ledger
                .clone()
                .get_log_info(proto::GetLogInfoRequest {})
                .await?
                .into_inner()
                .head_position,
        )
    };

    let first = demo(&server).await?;
    ensure!(
        first.status.success(),
        "the first cairn demo failed:\n{first}"
    );
    let loaded = head().await?;
    ensure!(
        loaded > 0,
        "the first cairn demo recorded nothing:\n{first}"
    );
    ensure!(
        demo_position(&first)? == loaded,
        "the first cairn demo answered as of {}, the head is {loaded}",
        demo_position(&first)?
    );

    let second = demo(&server).await?;
    ensure!(
        second.status.success(),
        "the second cairn demo failed:\n{second}"
    );
    let again = head().await?;
    ensure!(
        again == loaded,
        "the second cairn demo recorded {} records (head {loaded} -> {again}):\n{second}",
        again - loaded
    );
    ensure!(
        demo_position(&second)? == loaded,
        "the second cairn demo answered as of {}, the head is {loaded}",
        demo_position(&second)?
    );
    // It says so too (the head above is what shows it).
    ensure!(
        second.stdout.contains("nothing new was recorded")
            && !first.stdout.contains("nothing new was recorded"),
        "cairn demo does not tell a first load from a repeated one:\n{first}\n{second}"
    );
    Ok(())
}
