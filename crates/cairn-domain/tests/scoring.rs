//! Scoring models: each formula, each normaliser, each factor source, missing inputs, and the
//! checks a model must pass. Every expected number is worked out by hand in the test.

mod common;

use std::collections::BTreeMap;

use cairn_domain::opportunity::{Evidence, RatingRecord, VoteRecord};
use cairn_domain::scoring::{
    AgingRule, DIVISOR_MIN, Factor, FactorSource, Formula, InputSource, Normaliser, Role,
    ScoreInput, ScoreInputs, ScoreSnapshot, ScoringModel,
};
use cairn_domain::signal::{Measurement, Observation, Percentiles, Statistic};
use cairn_domain::{PrincipalId, Rule, Time, limits};
use common::{
    day, feedback_evidence, id, observation, observation_percentiles, principal, signal_evidence,
    vote,
};

/// What an opportunity offers a model, owned, so a test can build it in one expression.
#[derive(Default)]
struct Offered {
    ratings: BTreeMap<String, RatingRecord>,
    votes: BTreeMap<PrincipalId, VoteRecord>,
    evidence: Vec<Evidence>,
}

impl Offered {
    fn rating(mut self, name: &str, value: f64) -> Offered {
        self.ratings.insert(
            name.to_owned(),
            RatingRecord {
                value,
                by: principal("rater"),
                at: day(1),
                rationale: String::new(),
            },
        );
        self
    }

    fn vote(mut self, principal_id: &str, weight: u32) -> Offered {
        let record = vote(principal_id, weight, day(1));
        self.votes.insert(record.principal.clone(), record);
        self
    }

    fn evidence(mut self, evidence: Evidence) -> Offered {
        self.evidence.push(evidence);
        self
    }

    fn score(&self, model: &ScoringModel) -> ScoreSnapshot {
        model.validate().expect("a valid model");
        model.score(
            &ScoreInputs {
                ratings: &self.ratings,
                votes: &self.votes,
                evidence: &self.evidence,
            },
            day(9),
        )
    }
}

/// The source of a rating from [`Offered::rating`].
fn rated() -> InputSource {
    InputSource::Rating {
        by: principal("rater"),
        at: day(1),
    }
}

fn factor(name: &str, source: FactorSource) -> Factor {
    Factor {
        name: name.to_owned(),
        source,
        normaliser: Normaliser::None,
        weight: 1.0,
        default: 0.0,
        role: None,
    }
}

fn rating_factor(name: &str) -> Factor {
    factor(
        name,
        FactorSource::Rating {
            name: name.to_owned(),
        },
    )
}

fn with_role(mut factor: Factor, role: Role) -> Factor {
    factor.role = Some(role);
    factor
}

fn model(formula: Formula, factors: Vec<Factor>) -> ScoringModel {
    ScoringModel {
        name: "test".to_owned(),
        version: 1,
        formula,
        factors,
        digest: "abc".to_owned(),
    }
}

#[track_caller]
fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{actual} is not {expected}"
    );
}

/// One expected input: factor, source, raw, normalised, weight, contribution.
type Input = (&'static str, InputSource, f64, f64, f64, f64);

#[track_caller]
fn assert_snapshot(snapshot: &ScoreSnapshot, inputs: &[Input], value: f64) {
    assert_eq!(snapshot.model, "test");
    assert_eq!(snapshot.model_version, 1);
    assert_eq!(snapshot.model_digest, "abc");
    assert_eq!(snapshot.computed_at, day(9));
    assert_eq!(snapshot.inputs.len(), inputs.len(), "{snapshot:#?}");
    for (actual, (factor, source, raw, normalised, weight, contribution)) in
        snapshot.inputs.iter().zip(inputs)
    {
        assert_eq!(actual.factor, *factor);
        assert_eq!(actual.source, *source, "the source of {factor}");
        assert_close(actual.raw, *raw);
        assert_close(actual.normalised, *normalised);
        assert_eq!(actual.weight, *weight);
        assert_close(actual.contribution, *contribution);
    }
    assert_close(snapshot.value, value);
}

// Formulas.

fn rice() -> ScoringModel {
    model(
        Formula::Rice,
        vec![
            with_role(rating_factor("reach"), Role::Reach),
            with_role(rating_factor("impact"), Role::Impact),
            with_role(
                factor(
                    "confidence",
                    FactorSource::Percentage {
                        name: "confidence".to_owned(),
                    },
                ),
                Role::Confidence,
            ),
            with_role(rating_factor("effort"), Role::Effort),
        ],
    )
}

#[test]
fn rice_is_reach_times_impact_times_confidence_over_effort() {
    let snapshot = Offered::default()
        .rating("reach", 1000.0)
        .rating("impact", 2.0)
        .rating("confidence", 80.0)
        .rating("effort", 4.0)
        .score(&rice());
    // 1000 × 2 × 0.8 ÷ 4 = 400.
    assert_snapshot(
        &snapshot,
        &[
            ("reach", rated(), 1000.0, 1000.0, 1.0, 1000.0),
            ("impact", rated(), 2.0, 2.0, 1.0, 2.0),
            ("confidence", rated(), 0.8, 0.8, 1.0, 0.8),
            ("effort", rated(), 4.0, 4.0, 1.0, 4.0),
        ],
        400.0,
    );
}

#[test]
fn rice_with_no_effort_divides_by_the_smallest_divisor() {
    let snapshot = Offered::default()
        .rating("reach", 10.0)
        .rating("impact", 1.0)
        .rating("confidence", 100.0)
        .rating("effort", 0.0)
        .score(&rice());
    // 10 × 1 × 1 ÷ 0.001.
    assert_eq!(DIVISOR_MIN, 1e-3);
    assert_close(snapshot.value, 10_000.0);
}

#[test]
fn ice_is_impact_times_confidence_times_ease_of_the_weighted_values() {
    let mut impact = with_role(rating_factor("impact"), Role::Impact);
    impact.weight = 2.0;
    let ice = model(
        Formula::Ice,
        vec![
            impact,
            with_role(rating_factor("confidence"), Role::Confidence),
            with_role(rating_factor("ease"), Role::Ease),
        ],
    );
    let snapshot = Offered::default()
        .rating("impact", 8.0)
        .rating("confidence", 0.5)
        .rating("ease", 4.0)
        .score(&ice);
    // (8 × 2) × 0.5 × 4 = 32.
    assert_snapshot(
        &snapshot,
        &[
            ("impact", rated(), 8.0, 8.0, 2.0, 16.0),
            ("confidence", rated(), 0.5, 0.5, 1.0, 0.5),
            ("ease", rated(), 4.0, 4.0, 1.0, 4.0),
        ],
        32.0,
    );
}

#[test]
fn wsjf_is_the_cost_of_delay_over_job_size() {
    let wsjf = model(
        Formula::Wsjf,
        vec![
            with_role(rating_factor("business_value"), Role::BusinessValue),
            with_role(rating_factor("time_criticality"), Role::TimeCriticality),
            with_role(rating_factor("risk_reduction"), Role::RiskReduction),
            with_role(rating_factor("job_size"), Role::JobSize),
        ],
    );
    let snapshot = Offered::default()
        .rating("business_value", 8.0)
        .rating("time_criticality", 5.0)
        .rating("risk_reduction", 3.0)
        .rating("job_size", 4.0)
        .score(&wsjf);
    // (8 + 5 + 3) ÷ 4 = 4.
    assert_close(snapshot.value, 4.0);
    let snapshot = Offered::default()
        .rating("business_value", 8.0)
        .score(&wsjf);
    // Job size missing: its default 0 divides as the smallest divisor, 8 ÷ 0.001.
    assert_close(snapshot.value, 8000.0);
}

#[test]
fn a_weighted_sum_with_negative_weights_and_an_effort_factor() {
    let mut impact = rating_factor("customer_impact");
    impact.normaliser = Normaliser::Linear { min: 0.0, max: 5.0 };
    impact.weight = 2.0;
    let mut votes = factor("votes", FactorSource::Votes);
    votes.normaliser = Normaliser::Log;
    let mut latency = factor(
        "latency",
        FactorSource::Metric {
            metric: "build_latency_ms".to_owned(),
            statistic: Statistic::P95,
        },
    );
    latency.normaliser = Normaliser::InverseLinear {
        min: 100.0,
        max: 500.0,
    };
    latency.weight = -1.0;
    let mut defects = factor(
        "defects",
        FactorSource::Checkbox {
            name: "has_defects".to_owned(),
        },
    );
    defects.weight = -0.25;
    let effort = with_role(rating_factor("effort"), Role::Effort);
    let weighted = model(
        Formula::WeightedSum,
        vec![impact, votes, latency, defects, effort],
    );
    let p = |p95: f64| Percentiles {
        p50: 10.0,
        p95,
        p99: 1000.0,
    };
    let snapshot = Offered::default()
        .rating("customer_impact", 4.0)
        .rating("has_defects", 3.0)
        .rating("effort", 2.0)
        .vote("bob", 3)
        .vote("carol", 4)
        // The newer observation (day 3) wins although it was attached first.
        .evidence(signal_evidence(
            "s-2",
            observation_percentiles("build_latency_ms", p(300.0), day(3)),
            day(4),
        ))
        .evidence(signal_evidence(
            "s-1",
            observation_percentiles("build_latency_ms", p(400.0), day(1)),
            day(5),
        ))
        .score(&weighted);
    // impact: 4 of 0..5 is 0.8, × 2 = 1.6
    // votes: 3 + 4 = 7, ln(1 + 7) = ln 8 = 2.0794415416798357
    // latency: 300 in 100..500 is 0.5, inverse 0.5, × −1 = −0.5
    // defects: 3 is checked, 1, × −0.25 = −0.25
    // effort: 2; the sum (1.6 + 2.0794415416798357 − 0.5 − 0.25) = 2.9294415416798357, ÷ 2.
    let ln_8 = 2.079_441_541_679_835_7;
    assert_snapshot(
        &snapshot,
        &[
            ("customer_impact", rated(), 4.0, 0.8, 2.0, 1.6),
            (
                "votes",
                InputSource::Votes { voters: 2 },
                7.0,
                ln_8,
                1.0,
                ln_8,
            ),
            (
                "latency",
                InputSource::Signal {
                    signal: id("s-2"),
                    observed_at: day(3),
                },
                300.0,
                0.5,
                -1.0,
                -0.5,
            ),
            ("defects", rated(), 1.0, 1.0, -0.25, -0.25),
            ("effort", rated(), 2.0, 2.0, 1.0, 2.0),
        ],
        1.464_720_770_839_918,
    );
}

#[test]
fn a_weighted_sum_without_an_effort_factor_is_the_plain_sum() {
    let mut negative = rating_factor("risk");
    negative.weight = -3.0;
    let weighted = model(Formula::WeightedSum, vec![rating_factor("value"), negative]);
    let snapshot = Offered::default()
        .rating("value", 5.0)
        .rating("risk", 2.0)
        .score(&weighted);
    // 5 − 3 × 2 = −1: a negative score is a score.
    assert_close(snapshot.value, -1.0);
}

#[test]
fn a_score_that_is_not_finite_is_zero() {
    let snapshot = Offered::default()
        .rating("reach", f64::MAX)
        .rating("impact", f64::MAX)
        .rating("confidence", 100.0)
        .rating("effort", 1.0)
        .score(&rice());
    assert_eq!(snapshot.value, 0.0);
}

#[test]
fn scoring_is_deterministic() {
    let offered = Offered::default()
        .rating("reach", 10.0)
        .rating("effort", 3.0)
        .vote("bob", 2);
    assert_eq!(offered.score(&rice()), offered.score(&rice()));
}

// Normalisers.

#[test]
fn every_normaliser() {
    let linear = Normaliser::Linear {
        min: 0.0,
        max: 10.0,
    };
    let centred = Normaliser::Linear {
        min: -10.0,
        max: 10.0,
    };
    let inverse = Normaliser::InverseLinear {
        min: 0.0,
        max: 10.0,
    };
    let cases = [
        (Normaliser::None, 7.0, 7.0),
        (Normaliser::None, -3.0, -3.0),
        (linear, 5.0, 0.5),
        (linear, 0.0, 0.0),
        (linear, 10.0, 1.0),
        (linear, -1.0, 0.0),
        (linear, 11.0, 1.0),
        (centred, 0.0, 0.5),
        (centred, 5.0, 0.75),
        (inverse, 2.0, 0.8),
        (inverse, 0.0, 1.0),
        (inverse, 10.0, 0.0),
        (inverse, -5.0, 1.0),
        (inverse, 20.0, 0.0),
        (Normaliser::Log, 0.0, 0.0),
        (Normaliser::Log, -5.0, 0.0),
        (Normaliser::Log, std::f64::consts::E - 1.0, 1.0),
        (Normaliser::Log, 9.0, std::f64::consts::LN_10),
    ];
    for (normaliser, raw, expected) in cases {
        let actual = normaliser.apply(raw);
        assert!(
            (actual - expected).abs() < 1e-12,
            "{normaliser:?} of {raw} is {actual}, not {expected}"
        );
    }
}

// Sources.

#[test]
fn checkbox_and_percentage_ratings() {
    let weighted = model(
        Formula::WeightedSum,
        vec![
            factor(
                "checked",
                FactorSource::Checkbox {
                    name: "checked".to_owned(),
                },
            ),
            factor(
                "percent",
                FactorSource::Percentage {
                    name: "percent".to_owned(),
                },
            ),
        ],
    );
    for (checked, expected) in [(0.0, 0.0), (3.0, 1.0), (-1.0, 1.0), (0.001, 1.0)] {
        let snapshot = Offered::default()
            .rating("checked", checked)
            .rating("percent", 45.0)
            .score(&weighted);
        assert_snapshot(
            &snapshot,
            &[
                ("checked", rated(), expected, expected, 1.0, expected),
                ("percent", rated(), 0.45, 0.45, 1.0, 0.45),
            ],
            expected + 0.45,
        );
    }
}

fn metric_model(statistic: Statistic) -> ScoringModel {
    let mut latency = factor(
        "latency",
        FactorSource::Metric {
            metric: "build_latency_ms".to_owned(),
            statistic,
        },
    );
    latency.default = -1.0;
    model(Formula::WeightedSum, vec![latency])
}

#[test]
fn a_metric_reads_the_newest_signal_by_observation_time() {
    // Attached in the order s-new, s-old; observed the other way round.
    let snapshot = Offered::default()
        .evidence(signal_evidence(
            "s-new",
            observation("build_latency_ms", 250.0, day(6)),
            day(7),
        ))
        .evidence(signal_evidence(
            "s-old",
            observation("build_latency_ms", 900.0, day(2)),
            day(8),
        ))
        // Other metrics and feedback are not read.
        .evidence(signal_evidence(
            "s-other",
            observation("defect_rate", 5.0, day(8)),
            day(8),
        ))
        .evidence(feedback_evidence("f-1", day(8)))
        .score(&metric_model(Statistic::Value));
    assert_snapshot(
        &snapshot,
        &[(
            "latency",
            InputSource::Signal {
                signal: id("s-new"),
                observed_at: day(6),
            },
            250.0,
            250.0,
            1.0,
            250.0,
        )],
        250.0,
    );
}

#[test]
fn a_metric_skips_signals_without_its_statistic() {
    let percentiles = Percentiles {
        p50: 100.0,
        p95: 700.0,
        p99: 900.0,
    };
    let snapshot = Offered::default()
        // Newer, but a plain value: it has no p95.
        .evidence(signal_evidence(
            "s-value",
            observation("build_latency_ms", 250.0, day(6)),
            day(7),
        ))
        .evidence(signal_evidence(
            "s-percentiles",
            observation_percentiles("build_latency_ms", percentiles, day(2)),
            day(7),
        ))
        .score(&metric_model(Statistic::P95));
    assert_eq!(
        snapshot.inputs[0].source,
        InputSource::Signal {
            signal: id("s-percentiles"),
            observed_at: day(2),
        }
    );
    assert_close(snapshot.value, 700.0);
    // p50 and p99 read their own statistic.
    let offered = Offered::default().evidence(signal_evidence(
        "s-percentiles",
        observation_percentiles("build_latency_ms", percentiles, day(2)),
        day(7),
    ));
    assert_close(offered.score(&metric_model(Statistic::P50)).value, 100.0);
    assert_close(offered.score(&metric_model(Statistic::P99)).value, 900.0);
}

#[test]
fn observations_at_the_same_time_are_ordered_by_signal_id() {
    let snapshot = Offered::default()
        .evidence(signal_evidence(
            "s-b",
            observation("build_latency_ms", 2.0, day(3)),
            day(4),
        ))
        .evidence(signal_evidence(
            "s-a",
            observation("build_latency_ms", 1.0, day(3)),
            day(5),
        ))
        .score(&metric_model(Statistic::Value));
    assert_close(snapshot.value, 2.0);
}

#[test]
fn votes_voters_and_feedback_count_what_is_there() {
    let weighted = model(
        Formula::WeightedSum,
        vec![
            factor("votes", FactorSource::Votes),
            factor("voters", FactorSource::Voters),
            factor("feedback", FactorSource::Feedback),
        ],
    );
    let snapshot = Offered::default()
        .vote("bob", 3)
        .vote("carol", 4)
        .vote("dave", 1)
        .evidence(feedback_evidence("f-1", day(1)))
        .evidence(feedback_evidence("f-2", day(1)))
        .evidence(signal_evidence(
            "s-1",
            observation("build_latency_ms", 1.0, day(1)),
            day(1),
        ))
        .score(&weighted);
    // 3 + 4 + 1 = 8 weight from 3 voters; 2 feedback items (the signal is not feedback).
    assert_snapshot(
        &snapshot,
        &[
            (
                "votes",
                InputSource::Votes { voters: 3 },
                8.0,
                8.0,
                1.0,
                8.0,
            ),
            (
                "voters",
                InputSource::Votes { voters: 3 },
                3.0,
                3.0,
                1.0,
                3.0,
            ),
            (
                "feedback",
                InputSource::Feedback { items: 2 },
                2.0,
                2.0,
                1.0,
                2.0,
            ),
        ],
        13.0,
    );
    // None at all is zero, not missing: the count is known.
    let snapshot = Offered::default().score(&weighted);
    assert_snapshot(
        &snapshot,
        &[
            (
                "votes",
                InputSource::Votes { voters: 0 },
                0.0,
                0.0,
                1.0,
                0.0,
            ),
            (
                "voters",
                InputSource::Votes { voters: 0 },
                0.0,
                0.0,
                1.0,
                0.0,
            ),
            (
                "feedback",
                InputSource::Feedback { items: 0 },
                0.0,
                0.0,
                1.0,
                0.0,
            ),
        ],
        0.0,
    );
}

#[test]
fn missing_inputs_take_the_default_and_say_so() {
    let mut impact = rating_factor("customer_impact");
    impact.default = 3.0;
    impact.normaliser = Normaliser::Linear { min: 0.0, max: 5.0 };
    let mut checked = factor(
        "checked",
        FactorSource::Checkbox {
            name: "checked".to_owned(),
        },
    );
    checked.default = 1.0;
    // The default is the raw value in the source's own terms: for a percentage, 0 to 1.
    let mut percent = factor(
        "percent",
        FactorSource::Percentage {
            name: "percent".to_owned(),
        },
    );
    percent.default = 0.25;
    let mut latency = factor(
        "latency",
        FactorSource::Metric {
            metric: "build_latency_ms".to_owned(),
            statistic: Statistic::P99,
        },
    );
    latency.default = 400.0;
    latency.weight = -0.01;
    let weighted = model(
        Formula::WeightedSum,
        vec![impact, checked, percent, latency],
    );
    // A rating of another name and a signal of another metric are not these inputs.
    let snapshot = Offered::default()
        .rating("effort", 9.0)
        .evidence(signal_evidence(
            "s-1",
            observation("defect_rate", 1.0, day(1)),
            day(1),
        ))
        .score(&weighted);
    // 3 of 0..5 is 0.6; 1; 0.25; 400 × −0.01 = −4: 0.6 + 1 + 0.25 − 4 = −2.15.
    assert_snapshot(
        &snapshot,
        &[
            ("customer_impact", InputSource::Missing, 3.0, 0.6, 1.0, 0.6),
            ("checked", InputSource::Missing, 1.0, 1.0, 1.0, 1.0),
            ("percent", InputSource::Missing, 0.25, 0.25, 1.0, 0.25),
            ("latency", InputSource::Missing, 400.0, 400.0, -0.01, -4.0),
        ],
        -2.15,
    );
}

// Snapshots.

#[test]
fn the_same_score_ignores_only_the_time_of_computation() {
    let offered = Offered::default()
        .rating("reach", 10.0)
        .rating("effort", 2.0);
    let snapshot = offered.score(&rice());
    let later = ScoreSnapshot {
        computed_at: Time(snapshot.computed_at.0 + 1),
        ..snapshot.clone()
    };
    assert!(snapshot.same_score(&later));
    let changes: [fn(&mut ScoreSnapshot); 5] = [
        |s| s.value += 1.0,
        |s| s.model_version += 1,
        |s| s.model_digest.push('x'),
        |s| s.model.push('x'),
        |s| s.inputs[0].source = InputSource::Missing,
    ];
    for change in changes {
        let mut other = snapshot.clone();
        change(&mut other);
        assert!(!snapshot.same_score(&other), "{other:#?}");
    }
}

// Model checks.

#[track_caller]
fn refused(model: &ScoringModel, rule: Rule, field: &str) {
    let error = model.validate().expect_err("an invalid model");
    assert_eq!((error.rule, error.field), (rule, Some(field)), "{error}");
    common::check_message(&error.message);
}

#[test]
fn valid_models_pass() {
    rice().validate().expect("rice");
    model(Formula::WeightedSum, vec![rating_factor("a")])
        .validate()
        .expect("a weighted sum needs no role");
}

#[test]
fn a_formula_needs_a_factor_for_each_of_its_roles() {
    let mut no_effort = rice();
    no_effort.factors.pop();
    refused(&no_effort, Rule::InvalidField, "role");
    let mut role_lost = rice();
    role_lost.factors[0].role = None;
    refused(&role_lost, Rule::InvalidField, "role");
    refused(
        &model(
            Formula::Ice,
            vec![with_role(rating_factor("i"), Role::Impact)],
        ),
        Rule::InvalidField,
        "role",
    );
    refused(
        &model(
            Formula::Wsjf,
            vec![
                with_role(rating_factor("bv"), Role::BusinessValue),
                with_role(rating_factor("tc"), Role::TimeCriticality),
                with_role(rating_factor("rr"), Role::RiskReduction),
            ],
        ),
        Rule::InvalidField,
        "role",
    );
    assert_eq!(
        Formula::Rice.roles(),
        &[Role::Reach, Role::Impact, Role::Confidence, Role::Effort]
    );
    assert_eq!(
        Formula::Ice.roles(),
        &[Role::Impact, Role::Confidence, Role::Ease]
    );
    assert_eq!(
        Formula::Wsjf.roles(),
        &[
            Role::BusinessValue,
            Role::TimeCriticality,
            Role::RiskReduction,
            Role::JobSize
        ]
    );
    assert!(Formula::WeightedSum.roles().is_empty());
}

#[test]
fn a_role_is_played_once() {
    let mut twice = rice();
    twice
        .factors
        .push(with_role(rating_factor("reach_again"), Role::Reach));
    refused(&twice, Rule::InvalidField, "role");
}

#[test]
fn factor_names_are_unique() {
    refused(
        &model(
            Formula::WeightedSum,
            vec![rating_factor("a"), rating_factor("a")],
        ),
        Rule::InvalidField,
        "factor",
    );
}

#[test]
fn a_linear_normaliser_needs_max_above_min() {
    for (min, max) in [(5.0, 5.0), (5.0, 1.0)] {
        for normaliser in [
            Normaliser::Linear { min, max },
            Normaliser::InverseLinear { min, max },
        ] {
            let mut f = rating_factor("a");
            f.normaliser = normaliser;
            refused(
                &model(Formula::WeightedSum, vec![f]),
                Rule::InvalidField,
                "normaliser",
            );
        }
    }
    let mut f = rating_factor("a");
    f.normaliser = Normaliser::Linear {
        min: f64::NAN,
        max: 1.0,
    };
    refused(
        &model(Formula::WeightedSum, vec![f]),
        Rule::Limit,
        "normaliser",
    );
}

#[test]
fn a_model_has_a_version_a_name_and_some_factors() {
    let mut zero = rice();
    zero.version = 0;
    refused(&zero, Rule::InvalidField, "version");
    let mut unnamed = rice();
    unnamed.name = String::new();
    refused(&unnamed, Rule::InvalidField, "name");
    let mut long = rice();
    long.name = "n".repeat(limits::TITLE_BYTES_MAX + 1);
    refused(&long, Rule::InvalidField, "name");
    refused(&model(Formula::WeightedSum, vec![]), Rule::Limit, "factor");
    let many = (0..=limits::SCORING_FACTORS_MAX)
        .map(|i| rating_factor(&format!("f{i}")))
        .collect();
    refused(&model(Formula::WeightedSum, many), Rule::Limit, "factor");
}

#[test]
fn weights_and_defaults_are_finite() {
    let mut f = rating_factor("a");
    f.weight = f64::NAN;
    refused(&model(Formula::WeightedSum, vec![f]), Rule::Limit, "weight");
    let mut f = rating_factor("a");
    f.default = f64::INFINITY;
    refused(
        &model(Formula::WeightedSum, vec![f]),
        Rule::Limit,
        "default",
    );
}

#[test]
fn aging_rules_are_checked() {
    let rule = AgingRule {
        name: "stale".to_owned(),
        version: 1,
        no_evidence_days: 90,
        score_below: 10.0,
        statuses: vec![],
    };
    rule.validate().expect("valid");
    let check = |rule: AgingRule, rule_broken: Rule, field: &str| {
        let error = rule.validate().expect_err("invalid");
        assert_eq!((error.rule, error.field), (rule_broken, Some(field)));
    };
    check(
        AgingRule {
            name: String::new(),
            ..rule.clone()
        },
        Rule::InvalidField,
        "name",
    );
    check(
        AgingRule {
            no_evidence_days: 0,
            ..rule.clone()
        },
        Rule::InvalidField,
        "no_evidence_days",
    );
    check(
        AgingRule {
            score_below: f64::NAN,
            ..rule.clone()
        },
        Rule::Limit,
        "score_below",
    );
    for closed in cairn_domain::opportunity::OpportunityStatus::ALL
        .into_iter()
        .filter(|s| s.is_closed())
    {
        check(
            AgingRule {
                statuses: vec![closed],
                ..rule.clone()
            },
            Rule::InvalidField,
            "statuses",
        );
    }
}

/// The measurement type is shared with signals; a score reads only what is measured.
#[test]
fn an_empty_measurement_gives_no_metric() {
    let empty = Observation {
        measurement: Measurement {
            value: None,
            percentiles: None,
        },
        ..observation("build_latency_ms", 0.0, day(1))
    };
    let snapshot = Offered::default()
        .evidence(signal_evidence("s-1", empty, day(1)))
        .score(&metric_model(Statistic::Value));
    assert_eq!(snapshot.inputs[0].source, InputSource::Missing);
    assert_eq!(snapshot.value, -1.0);
}

#[test]
fn a_score_input_records_contribution_as_normalised_times_weight() {
    let mut f = rating_factor("a");
    f.weight = -2.5;
    f.normaliser = Normaliser::Linear { min: 0.0, max: 4.0 };
    let snapshot = Offered::default()
        .rating("a", 1.0)
        .score(&model(Formula::WeightedSum, vec![f]));
    assert_eq!(
        snapshot.inputs,
        vec![ScoreInput {
            factor: "a".to_owned(),
            source: rated(),
            raw: 1.0,
            normalised: 0.25,
            weight: -2.5,
            contribution: -0.625,
        }]
    );
    assert_eq!(snapshot.value, -0.625);
}
