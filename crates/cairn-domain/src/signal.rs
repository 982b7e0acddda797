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
        let SignalCommand::Record { id, observation } = command;
        if self.observation.is_some() {
            return Err(DomainError::new(
                Rule::AlreadyExists,
                format!("signal {id} is recorded and immutable"),
            ));
        }
        observation.check()?;
        Ok(vec![SignalEvent::Observed {
            id,
            observation,
            recorded_at: ctx.now,
        }])
    }

    fn apply(&mut self, event: &SignalEvent) {
        let SignalEvent::Observed { observation, .. } = event;
        self.observation = Some(observation.clone());
    }
}
