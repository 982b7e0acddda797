//! A metric observation: immutable once recorded.

use serde::{Deserialize, Serialize};

use crate::common::{Aggregate, Ctx, EntityId, EntityKind, Team, Time, check_number, check_text};
use crate::error::{DomainError, Rule};
use crate::limits;

/// Which way is better for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Lower is better (latency, defect rate, MTTR).
    LowerIsBetter,
    /// Higher is better (availability, conversion).
    HigherIsBetter,
}

impl Direction {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::LowerIsBetter => "lower_is_better",
            Direction::HigherIsBetter => "higher_is_better",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<Direction> {
        [Direction::LowerIsBetter, Direction::HigherIsBetter]
            .into_iter()
            .find(|d| d.as_str() == text)
    }
}

/// Percentiles of an observation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// The measured value: a single value, percentiles, or both.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// A single value (a rate, a count, a mean).
    pub value: Option<f64>,
    /// Percentiles.
    pub percentiles: Option<Percentiles>,
}

/// Which statistic of a measurement a scoring factor reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// The single value.
    Value,
    /// The median.
    P50,
    /// The 95th percentile.
    P95,
    /// The 99th percentile.
    P99,
}

impl Statistic {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Value => "value",
            Statistic::P50 => "p50",
            Statistic::P95 => "p95",
            Statistic::P99 => "p99",
        }
    }
}

impl Measurement {
    /// The statistic, if measured.
    pub fn get(&self, statistic: Statistic) -> Option<f64> {
        match statistic {
            Statistic::Value => self.value,
            Statistic::P50 => self.percentiles.map(|p| p.p50),
            Statistic::P95 => self.percentiles.map(|p| p.p95),
            Statistic::P99 => self.percentiles.map(|p| p.p99),
        }
    }
}

/// What a signal observed: everything but its id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The metric's name (`defect_rate`, `mttr_minutes`, `build_latency_ms`, `affected_users`).
    pub metric: String,
    /// The unit (`ms`, `percent`, `count`).
    pub unit: String,
    /// Which way is better.
    pub direction: Direction,
    /// The service observed, if one.
    pub service: Option<String>,
    /// The team observed, if one.
    pub team: Option<Team>,
    /// The observation window, in seconds.
    pub window_seconds: u64,
    /// The measurement.
    pub measurement: Measurement,
    /// Where it came from (`prometheus`, `ci`, `survey`).
    pub source: String,
    /// When it was observed.
    pub observed_at: Time,
}

impl Observation {
    fn check(&self) -> Result<(), DomainError> {
        check_text("metric", &self.metric, limits::METRIC_NAME_BYTES_MAX, true)?;
        check_text("unit", &self.unit, limits::METRIC_NAME_BYTES_MAX, false)?;
        check_text("source", &self.source, limits::METRIC_NAME_BYTES_MAX, false)?;
        if let Some(service) = &self.service {
            check_text("service", service, limits::METRIC_NAME_BYTES_MAX, true)?;
        }
        match (self.measurement.value, self.measurement.percentiles) {
            (None, None) => Err(DomainError::field(
                Rule::InvalidField,
                "value",
                "a signal needs a value or percentiles",
            )),
            (value, percentiles) => {
                if let Some(value) = value {
                    check_number("value", value)?;
                }
                if let Some(p) = percentiles {
                    for value in [p.p50, p.p95, p.p99] {
                        check_number("percentiles", value)?;
                    }
                    if !(p.p50 <= p.p95 && p.p95 <= p.p99) {
                        return Err(DomainError::field(
                            Rule::InvalidField,
                            "percentiles",
                            "must satisfy p50 <= p95 <= p99",
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

/// Commands on a signal.
#[derive(Clone, Debug, PartialEq)]
pub enum SignalCommand {
    /// Records an observation.
    Record {
        /// The signal's id.
        id: EntityId,
        /// What was observed.
        observation: Observation,
    },
    /// Records an observation of a high-volume metric that sampling kept: one in `sample_rate`
    /// observations of the metric is recorded, and the event says so.
    RecordSampled {
        /// The signal's id.
        id: EntityId,
        /// What was observed.
        observation: Observation,
        /// One in how many observations of its metric are recorded (2 or more).
        sample_rate: u32,
    },
}

/// Events of a signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SignalEvent {
    /// An observation was recorded.
    Observed {
        /// The signal's id.
        id: EntityId,
        /// What was observed.
        observation: Observation,
        /// When it was recorded.
        recorded_at: Time,
    },
    /// An observation kept by sampling was recorded: it stands for `sample_rate` observations of
    /// its metric.
    Sampled {
        /// The signal's id.
        id: EntityId,
        /// What was observed.
        observation: Observation,
        /// When it was recorded.
        recorded_at: Time,
        /// One in how many observations of its metric are recorded.
        sample_rate: u32,
    },
}

impl SignalEvent {
    /// The signal's id.
    pub fn id(&self) -> &EntityId {
        match self {
            SignalEvent::Observed { id, .. } | SignalEvent::Sampled { id, .. } => id,
        }
    }

    /// What was observed.
    pub fn observation(&self) -> &Observation {
        match self {
            SignalEvent::Observed { observation, .. }
            | SignalEvent::Sampled { observation, .. } => observation,
        }
    }

    /// When it was recorded.
    pub fn recorded_at(&self) -> Time {
        match self {
            SignalEvent::Observed { recorded_at, .. }
            | SignalEvent::Sampled { recorded_at, .. } => *recorded_at,
        }
    }

    /// One in how many observations of its metric this one stands for (1: not sampled).
    pub fn sample_rate(&self) -> u32 {
        match self {
            SignalEvent::Observed { .. } => 1,
            SignalEvent::Sampled { sample_rate, .. } => *sample_rate,
        }
    }
}

/// A signal, folded from its events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signal {
    /// `None` until recorded.
    pub observation: Option<Observation>,
}

impl Aggregate for Signal {
    type Command = SignalCommand;
    type Event = SignalEvent;
    const KIND: EntityKind = EntityKind::Signal;

    fn decide(
        &self,
        command: SignalCommand,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<SignalEvent>, DomainError> {
        let (id, observation, sample_rate) = match command {
            SignalCommand::Record { id, observation } => (id, observation, None),
            SignalCommand::RecordSampled {
                id,
                observation,
                sample_rate,
            } => {
                if !(2..=limits::SAMPLE_RATE_MAX).contains(&sample_rate) {
                    return Err(DomainError::field(
                        Rule::Limit,
                        "sample_rate",
                        format!(
                            "must be 2 to {} (1 is no sampling), got {sample_rate}",
                            limits::SAMPLE_RATE_MAX
                        ),
                    ));
                }
                (id, observation, Some(sample_rate))
            }
        };
        if self.observation.is_some() {
            return Err(DomainError::new(
                Rule::AlreadyExists,
                format!("signal {id} is recorded and immutable"),
            ));
        }
        observation.check()?;
        Ok(vec![match sample_rate {
            None => SignalEvent::Observed {
                id,
                observation,
                recorded_at: ctx.now,
            },
            Some(sample_rate) => SignalEvent::Sampled {
                id,
                observation,
                recorded_at: ctx.now,
                sample_rate,
            },
        }])
    }

    fn apply(&mut self, event: &SignalEvent) {
        self.observation = Some(event.observation().clone());
    }
}
