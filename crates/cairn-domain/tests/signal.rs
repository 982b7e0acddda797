//! A signal: one metric observation, recorded once and immutable after.

mod common;

use cairn_domain::Rule;
use cairn_domain::limits;
use cairn_domain::signal::{
    Direction, Measurement, Observation, Percentiles, Signal, SignalCommand, SignalEvent, Statistic,
};
use common::{ctx, day, given, given_nothing, id, observation, observation_percentiles};

fn record(observation: Observation) -> SignalCommand {
    SignalCommand::Record {
        id: id("s-1"),
        observation,
    }
}

fn observed(observation: Observation, recorded_at: cairn_domain::Time) -> SignalEvent {
    SignalEvent::Observed {
        id: id("s-1"),
        observation,
        recorded_at,
    }
}

fn percentiles(p50: f64, p95: f64, p99: f64) -> Percentiles {
    Percentiles { p50, p95, p99 }
}

#[test]
fn record_observes_once_at_the_time_of_recording() {
    // Observed on day 2, recorded on day 3: both times are kept.
    let observation = observation("build_latency_ms", 2400.0, day(2));
    let state = given_nothing::<Signal>()
        .when(record(observation.clone()), &ctx(day(3)))
        .then([observed(observation.clone(), day(3))]);
    assert_eq!(state.observation, Some(observation));
}

#[test]
fn a_recorded_signal_is_immutable() {
    let first = observation("build_latency_ms", 2400.0, day(2));
    given([observed(first.clone(), day(3))])
        .when(record(first), &ctx(day(4)))
        .then_refused(Rule::AlreadyExists);
    given([observed(
        observation("build_latency_ms", 2400.0, day(2)),
        day(3),
    )])
    .when(
        record(observation("build_latency_ms", 1.0, day(4))),
        &ctx(day(4)),
    )
    .then_refused(Rule::AlreadyExists);
}

#[test]
fn percentiles_alone_or_with_a_value_are_recorded() {
    let only_percentiles =
        observation_percentiles("build_latency_ms", percentiles(1.0, 2.0, 2.0), day(1));
    given_nothing::<Signal>()
        .when(record(only_percentiles.clone()), &ctx(day(1)))
        .then([observed(only_percentiles, day(1))]);
    let both = Observation {
        measurement: Measurement {
            value: Some(-3.5),
            percentiles: Some(percentiles(1.0, 1.0, 1.0)),
        },
        ..observation("error_budget", 0.0, day(1))
    };
    given_nothing::<Signal>()
        .when(record(both.clone()), &ctx(day(1)))
        .then([observed(both, day(1))]);
}

#[test]
fn an_observation_needs_a_value_or_percentiles() {
    let empty = Observation {
        measurement: Measurement {
            value: None,
            percentiles: None,
        },
        ..observation("build_latency_ms", 0.0, day(1))
    };
    given_nothing::<Signal>()
        .when(record(empty), &ctx(day(1)))
        .then_refused_on(Rule::InvalidField, "value");
}

#[test]
fn values_must_be_finite_and_bounded() {
    for bad in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        limits::NUMBER_ABS_MAX * 2.0,
    ] {
        given_nothing::<Signal>()
            .when(
                record(observation("build_latency_ms", bad, day(1))),
                &ctx(day(1)),
            )
            .then_refused_on(Rule::Limit, "value");
        given_nothing::<Signal>()
            .when(
                record(observation_percentiles(
                    "build_latency_ms",
                    percentiles(1.0, 2.0, bad),
                    day(1),
                )),
                &ctx(day(1)),
            )
            .then_refused_on(Rule::Limit, "percentiles");
    }
    given_nothing::<Signal>()
        .when(
            record(observation(
                "build_latency_ms",
                -limits::NUMBER_ABS_MAX,
                day(1),
            )),
            &ctx(day(1)),
        )
        .then_accepted();
}

#[test]
fn percentiles_must_be_ordered() {
    for (p50, p95, p99) in [(2.0, 1.0, 3.0), (1.0, 3.0, 2.0), (3.0, 2.0, 1.0)] {
        given_nothing::<Signal>()
            .when(
                record(observation_percentiles(
                    "build_latency_ms",
                    percentiles(p50, p95, p99),
                    day(1),
                )),
                &ctx(day(1)),
            )
            .then_refused_on(Rule::InvalidField, "percentiles");
    }
}

#[test]
fn names_are_checked() {
    let base = observation("build_latency_ms", 1.0, day(1));
    let cases = [
        (
            Observation {
                metric: " ".to_owned(),
                ..base.clone()
            },
            Rule::InvalidField,
            "metric",
        ),
        (
            Observation {
                metric: "m".repeat(limits::METRIC_NAME_BYTES_MAX + 1),
                ..base.clone()
            },
            Rule::Limit,
            "metric",
        ),
        (
            Observation {
                unit: "u".repeat(limits::METRIC_NAME_BYTES_MAX + 1),
                ..base.clone()
            },
            Rule::Limit,
            "unit",
        ),
        (
            Observation {
                source: "s".repeat(limits::METRIC_NAME_BYTES_MAX + 1),
                ..base.clone()
            },
            Rule::Limit,
            "source",
        ),
        (
            Observation {
                service: Some(String::new()),
                ..base.clone()
            },
            Rule::InvalidField,
            "service",
        ),
    ];
    for (observation, rule, field) in cases {
        given_nothing::<Signal>()
            .when(record(observation), &ctx(day(1)))
            .then_refused_on(rule, field);
    }
    // An empty unit and source are allowed, and so is no service.
    given_nothing::<Signal>()
        .when(
            record(Observation {
                unit: String::new(),
                source: String::new(),
                service: None,
                ..base
            }),
            &ctx(day(1)),
        )
        .then_accepted();
}

#[test]
fn measurement_reads_each_statistic() {
    let measurement = Measurement {
        value: Some(7.0),
        percentiles: Some(percentiles(1.0, 2.0, 3.0)),
    };
    assert_eq!(measurement.get(Statistic::Value), Some(7.0));
    assert_eq!(measurement.get(Statistic::P50), Some(1.0));
    assert_eq!(measurement.get(Statistic::P95), Some(2.0));
    assert_eq!(measurement.get(Statistic::P99), Some(3.0));
    let value_only = Measurement {
        value: Some(7.0),
        percentiles: None,
    };
    assert_eq!(value_only.get(Statistic::P95), None);
}

#[test]
fn direction_names_parse_back() {
    for direction in [Direction::LowerIsBetter, Direction::HigherIsBetter] {
        assert_eq!(Direction::parse(direction.as_str()), Some(direction));
    }
    assert_eq!(Direction::parse("sideways"), None);
}

#[test]
fn a_sampled_observation_records_its_rate() {
    let observation = observation("http_request_ms", 80.0, day(2));
    let state = given_nothing::<Signal>()
        .when(
            SignalCommand::RecordSampled {
                id: id("s-1"),
                observation: observation.clone(),
                sample_rate: 100,
            },
            &ctx(day(3)),
        )
        .then([SignalEvent::Sampled {
            id: id("s-1"),
            observation: observation.clone(),
            recorded_at: day(3),
            sample_rate: 100,
        }]);
    assert_eq!(state.observation, Some(observation.clone()));
    // A rate of 1 is no sampling, and rates beyond the limit are refused.
    for rate in [0, 1, limits::SAMPLE_RATE_MAX + 1] {
        given_nothing::<Signal>()
            .when(
                SignalCommand::RecordSampled {
                    id: id("s-1"),
                    observation: observation.clone(),
                    sample_rate: rate,
                },
                &ctx(day(3)),
            )
            .then_refused_on(Rule::Limit, "sample_rate");
    }
}
