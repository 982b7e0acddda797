//! Scoring models and score snapshots. A model (a versioned file in `policies/scoring/`) names
//! factors, each read from a source (a rating, a metric signal, the votes, the evidence), turned
//! into a number by a normaliser, weighted (weights may be negative), and combined by a formula.
//! A [`ScoreSnapshot`] records every input with where it came from, so a ranking can be explained
//! from the record alone. Aging-out rules live beside the models.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::common::{EntityId, PrincipalId, Time, check_number};
use crate::error::{DomainError, Rule};
use crate::limits;
use crate::opportunity::{Evidence, OpportunityStatus, RatingRecord, VoteRecord};
use crate::signal::Statistic;

/// How factors combine into one score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Formula {
    /// Reach × impact × confidence ÷ effort.
    Rice,
    /// Impact × confidence × ease.
    Ice,
    /// (business value + time criticality + risk reduction) ÷ job size.
    Wsjf,
    /// The sum of every factor's weighted value, divided by the effort factor if there is one.
    WeightedSum,
}

impl Formula {
    /// The roles the formula needs, each played by one factor.
    pub fn roles(self) -> &'static [Role] {
        match self {
            Formula::Rice => &[Role::Reach, Role::Impact, Role::Confidence, Role::Effort],
            Formula::Ice => &[Role::Impact, Role::Confidence, Role::Ease],
            Formula::Wsjf => &[
                Role::BusinessValue,
                Role::TimeCriticality,
                Role::RiskReduction,
                Role::JobSize,
            ],
            Formula::WeightedSum => &[],
        }
    }
}

/// The part a factor plays in a formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// RICE reach.
    Reach,
    /// RICE and ICE impact.
    Impact,
    /// RICE and ICE confidence.
    Confidence,
    /// RICE effort (divides); in a weighted sum, the effort factor.
    Effort,
    /// ICE ease.
    Ease,
    /// WSJF business value.
    BusinessValue,
    /// WSJF time criticality.
    TimeCriticality,
    /// WSJF risk reduction or opportunity enablement.
    RiskReduction,
    /// WSJF job size (divides).
    JobSize,
}

/// Where a factor reads its raw value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FactorSource {
    /// The latest rating of that name (customer impact, strategic value, effort).
    Rating {
        /// The rating's name.
        name: String,
    },
    /// A yes/no rating: 1 when the latest rating of that name is non-zero.
    Checkbox {
        /// The rating's name.
        name: String,
    },
    /// A rating from 0 to 100, read as 0 to 1.
    Percentage {
        /// The rating's name.
        name: String,
    },
    /// A statistic of the newest evidence signal for a metric.
    Metric {
        /// The metric's name.
        metric: String,
        /// Which statistic.
        statistic: Statistic,
    },
    /// The sum of vote weights.
    Votes,
    /// The number of distinct voters.
    Voters,
    /// The number of feedback items attached as evidence.
    Feedback,
}

/// Turns a raw value into the number the formula uses.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Normaliser {
    /// The raw value.
    None,
    /// (raw − min) ÷ (max − min), clamped to 0..1.
    Linear {
        /// Maps to 0.
        min: f64,
        /// Maps to 1.
        max: f64,
    },
    /// 1 − linear: for metrics where less is better.
    InverseLinear {
        /// Maps to 1.
        min: f64,
        /// Maps to 0.
        max: f64,
    },
    /// ln(1 + raw), raw clamped at 0: for counts with a long tail.
    Log,
}

impl Normaliser {
    /// Applies the normaliser.
    pub fn apply(self, raw: f64) -> f64 {
        match self {
            Normaliser::None => raw,
            Normaliser::Linear { min, max } => ((raw - min) / (max - min)).clamp(0.0, 1.0),
            Normaliser::InverseLinear { min, max } => {
                1.0 - ((raw - min) / (max - min)).clamp(0.0, 1.0)
            }
            Normaliser::Log => raw.max(0.0).ln_1p(),
        }
    }
}

/// One factor of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// The factor's name, unique in its model.
    pub name: String,
    /// Where its raw value comes from.
    pub source: FactorSource,
    /// How the raw value is normalised.
    #[serde(default = "no_normaliser")]
    pub normaliser: Normaliser,
    /// Its weight; negative weights count against.
    #[serde(default = "unit_weight")]
    pub weight: f64,
    /// The raw value when the source has none (no rating yet, no signal).
    #[serde(default)]
    pub default: f64,
    /// Its role in a RICE, ICE or WSJF formula (and `effort` in a weighted sum).
    #[serde(default)]
    pub role: Option<Role>,
}

fn no_normaliser() -> Normaliser {
    Normaliser::None
}

fn unit_weight() -> f64 {
    1.0
}

/// A versioned scoring model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoringModel {
    /// The model's name.
    pub name: String,
    /// Its version; a changed file must carry a higher one.
    pub version: u32,
    /// How factors combine.
    pub formula: Formula,
    /// The factors.
    #[serde(rename = "factor")]
    pub factors: Vec<Factor>,
    /// The hex blake3 digest of the file it was loaded from, filled in by the loader (the domain
    /// does not hash), so a snapshot names the exact model text.
    #[serde(default)]
    pub digest: String,
}

/// Smallest divisor a formula uses, so an effort of zero does not divide by zero.
pub const DIVISOR_MIN: f64 = 1e-3;

impl ScoringModel {
    /// Checks the model: names, limits, finite numbers, and one factor per role of its formula.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.name.is_empty() || self.name.len() > limits::TITLE_BYTES_MAX {
            return Err(DomainError::field(
                Rule::InvalidField,
                "name",
                "must be 1 to 256 bytes",
            ));
        }
        if self.version == 0 {
            return Err(DomainError::field(
                Rule::InvalidField,
                "version",
                "must be at least 1",
            ));
        }
        if self.factors.is_empty() || self.factors.len() > limits::SCORING_FACTORS_MAX {
            return Err(DomainError::field(
                Rule::Limit,
                "factor",
                format!(
                    "1 to {} factors, got {}",
                    limits::SCORING_FACTORS_MAX,
                    self.factors.len()
                ),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut roles = BTreeMap::new();
        for factor in &self.factors {
            if !names.insert(factor.name.as_str()) {
                return Err(DomainError::field(
                    Rule::InvalidField,
                    "factor",
                    format!("factor {:?} is named twice", factor.name),
                ));
            }
            check_number("weight", factor.weight)?;
            check_number("default", factor.default)?;
            match factor.normaliser {
                Normaliser::Linear { min, max } | Normaliser::InverseLinear { min, max } => {
                    check_number("normaliser", min)?;
                    check_number("normaliser", max)?;
                    if max <= min {
                        return Err(DomainError::field(
                            Rule::InvalidField,
                            "normaliser",
                            format!("factor {:?}: max must exceed min", factor.name),
                        ));
                    }
                }
                Normaliser::None | Normaliser::Log => {}
            }
            if let Some(role) = factor.role
                && roles.insert(role, &factor.name).is_some()
            {
                return Err(DomainError::field(
                    Rule::InvalidField,
                    "role",
                    format!("role {role:?} is played by two factors"),
                ));
            }
        }
        for role in self.formula.roles() {
            if !roles.contains_key(role) {
                return Err(DomainError::field(
                    Rule::InvalidField,
                    "role",
                    format!(
                        "formula {:?} needs a factor with role {role:?}",
                        self.formula
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Scores an opportunity's inputs. Pure: the same inputs give the same snapshot.
    pub fn score(&self, inputs: &ScoreInputs<'_>, now: Time) -> ScoreSnapshot {
        let mut recorded = Vec::with_capacity(self.factors.len());
        for factor in &self.factors {
            let (raw, source) = read_source(&factor.source, inputs)
                .unwrap_or((factor.default, InputSource::Missing));
            let normalised = factor.normaliser.apply(raw);
            recorded.push(ScoreInput {
                factor: factor.name.clone(),
                source,
                raw,
                normalised,
                weight: factor.weight,
                contribution: normalised * factor.weight,
            });
        }
        let by_role = |role: Role| -> f64 {
            self.factors
                .iter()
                .zip(&recorded)
                .find(|(factor, _)| factor.role == Some(role))
                .map(|(_, input)| input.contribution)
                .unwrap_or(0.0)
        };
        let value = match self.formula {
            Formula::Rice => {
                by_role(Role::Reach) * by_role(Role::Impact) * by_role(Role::Confidence)
                    / by_role(Role::Effort).max(DIVISOR_MIN)
            }
            Formula::Ice => by_role(Role::Impact) * by_role(Role::Confidence) * by_role(Role::Ease),
            Formula::Wsjf => {
                (by_role(Role::BusinessValue)
                    + by_role(Role::TimeCriticality)
                    + by_role(Role::RiskReduction))
                    / by_role(Role::JobSize).max(DIVISOR_MIN)
            }
            Formula::WeightedSum => {
                let sum: f64 = self
                    .factors
                    .iter()
                    .zip(&recorded)
                    .filter(|(factor, _)| factor.role != Some(Role::Effort))
                    .map(|(_, input)| input.contribution)
                    .sum();
                match self.factors.iter().any(|f| f.role == Some(Role::Effort)) {
                    true => sum / by_role(Role::Effort).max(DIVISOR_MIN),
                    false => sum,
                }
            }
        };
        ScoreSnapshot {
            model: self.name.clone(),
            model_version: self.version,
            model_digest: self.digest.clone(),
            inputs: recorded,
            value: if value.is_finite() { value } else { 0.0 },
            computed_at: now,
        }
    }
}

fn read_source(source: &FactorSource, inputs: &ScoreInputs<'_>) -> Option<(f64, InputSource)> {
    let rating = |name: &str| {
        inputs.ratings.get(name).map(|r| {
            (
                r.value,
                InputSource::Rating {
                    by: r.by.clone(),
                    at: r.at,
                },
            )
        })
    };
    match source {
        FactorSource::Rating { name } => rating(name),
        FactorSource::Checkbox { name } => {
            rating(name).map(|(v, s)| (if v != 0.0 { 1.0 } else { 0.0 }, s))
        }
        FactorSource::Percentage { name } => rating(name).map(|(v, s)| (v / 100.0, s)),
        FactorSource::Metric { metric, statistic } => inputs
            .evidence
            .iter()
            .filter_map(|evidence| {
                let observation = evidence.observation.as_ref()?;
                (observation.metric == *metric)
                    .then(|| observation.measurement.get(*statistic))
                    .flatten()
                    .map(|value| {
                        (
                            observation.observed_at,
                            evidence.reference.id.clone(),
                            value,
                        )
                    })
            })
            .max_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
            .map(|(observed_at, signal, value)| {
                (
                    value,
                    InputSource::Signal {
                        signal,
                        observed_at,
                    },
                )
            }),
        FactorSource::Votes => Some((
            inputs.votes.values().map(|v| f64::from(v.weight)).sum(),
            InputSource::Votes {
                voters: inputs.votes.len() as u64,
            },
        )),
        FactorSource::Voters => Some((
            inputs.votes.len() as f64,
            InputSource::Votes {
                voters: inputs.votes.len() as u64,
            },
        )),
        FactorSource::Feedback => {
            let count = inputs
                .evidence
                .iter()
                .filter(|e| e.reference.kind == crate::EntityKind::Feedback)
                .count() as u64;
            Some((count as f64, InputSource::Feedback { items: count }))
        }
    }
}

/// What an opportunity offers a model.
#[derive(Clone, Copy, Debug)]
pub struct ScoreInputs<'a> {
    /// The latest rating per name.
    pub ratings: &'a BTreeMap<String, RatingRecord>,
    /// The latest vote per principal.
    pub votes: &'a BTreeMap<PrincipalId, VoteRecord>,
    /// The evidence (feedback and signals).
    pub evidence: &'a [Evidence],
}

/// Where one input of a snapshot came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InputSource {
    /// A rating, by whom and when.
    Rating {
        /// The rater.
        by: PrincipalId,
        /// When rated.
        at: Time,
    },
    /// A metric signal.
    Signal {
        /// The signal.
        signal: EntityId,
        /// When it was observed.
        observed_at: Time,
    },
    /// The votes.
    Votes {
        /// How many principals voted.
        voters: u64,
    },
    /// The feedback attached as evidence (the lineage graph lists them).
    Feedback {
        /// How many items.
        items: u64,
    },
    /// No value: the factor's default was used.
    Missing,
}

/// One input of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreInput {
    /// The factor.
    pub factor: String,
    /// Where its raw value came from.
    pub source: InputSource,
    /// The raw value.
    pub raw: f64,
    /// After the normaliser.
    pub normalised: f64,
    /// The factor's weight.
    pub weight: f64,
    /// normalised × weight: what the formula used.
    pub contribution: f64,
}

/// An opportunity's score under one model version, with every input: immutable once recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreSnapshot {
    /// The model's name.
    pub model: String,
    /// The model's version.
    pub model_version: u32,
    /// The model file's digest.
    pub model_digest: String,
    /// Every input.
    pub inputs: Vec<ScoreInput>,
    /// The score.
    pub value: f64,
    /// When computed.
    pub computed_at: Time,
}

impl ScoreSnapshot {
    /// Whether `other` says the same thing (all but the time of computation).
    pub fn same_score(&self, other: &ScoreSnapshot) -> bool {
        self.model == other.model
            && self.model_version == other.model_version
            && self.model_digest == other.model_digest
            && self.inputs == other.inputs
            && self.value.to_bits() == other.value.to_bits()
    }
}

/// An aging-out rule: an opportunity in one of `statuses` with no new evidence for
/// `no_evidence_days` days and a score under `score_below` (no score counts as 0) ages out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgingRule {
    /// The rule's name.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// Days without new evidence.
    pub no_evidence_days: u32,
    /// The score threshold.
    pub score_below: f64,
    /// The statuses it applies to (default: new, under_review, snoozed).
    #[serde(default = "default_aging_statuses")]
    pub statuses: Vec<OpportunityStatus>,
}

fn default_aging_statuses() -> Vec<OpportunityStatus> {
    vec![
        OpportunityStatus::New,
        OpportunityStatus::UnderReview,
        OpportunityStatus::Snoozed,
    ]
}

impl AgingRule {
    /// Checks the rule.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.name.is_empty() || self.name.len() > limits::TITLE_BYTES_MAX {
            return Err(DomainError::field(
                Rule::InvalidField,
                "name",
                "must be 1 to 256 bytes",
            ));
        }
        check_number("score_below", self.score_below)?;
        if self.no_evidence_days == 0 {
            return Err(DomainError::field(
                Rule::InvalidField,
                "no_evidence_days",
                "must be at least 1",
            ));
        }
        if self.statuses.iter().any(|s| s.is_closed()) {
            return Err(DomainError::field(
                Rule::InvalidField,
                "statuses",
                "an aging rule applies only to open statuses",
            ));
        }
        Ok(())
    }
}
