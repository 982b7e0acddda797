//! The shared vocabulary: ids and their limits, references, names that parse back, visibility,
//! time arithmetic and the refusal's rule names.

mod common;

use std::collections::BTreeSet;

use cairn_domain::{
    DAY_MICROS, DomainError, EntityId, EntityKind, EntityRef, PrincipalId, Relation, Rule, Team,
    Time, Visibility, limits,
};

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, DomainError>, rule: Rule, field: &str) {
    let error = result.expect_err("refused");
    assert_eq!((error.rule, error.field), (rule, Some(field)), "{error}");
    common::check_message(&error.message);
}

#[test]
fn ids_are_bounded_and_of_a_small_alphabet() {
    assert_eq!(
        EntityId::new("Opp_1.a:b-c").map(|id| id.as_str().to_owned()),
        Ok("Opp_1.a:b-c".to_owned())
    );
    refused(EntityId::new(""), Rule::Limit, "id");
    refused(
        EntityId::new("x".repeat(limits::ENTITY_ID_BYTES_MAX + 1)),
        Rule::Limit,
        "id",
    );
    EntityId::new("x".repeat(limits::ENTITY_ID_BYTES_MAX)).expect("at the limit");
    for bad in ["o 1", "o/1", "é", "o\n1"] {
        refused(EntityId::new(bad), Rule::InvalidField, "id");
    }
    refused(
        PrincipalId::new("p".repeat(limits::PRINCIPAL_ID_BYTES_MAX + 1)),
        Rule::Limit,
        "principal",
    );
    PrincipalId::new("p".repeat(limits::PRINCIPAL_ID_BYTES_MAX)).expect("at the limit");
    refused(
        PrincipalId::new("bob@example.com"),
        Rule::InvalidField,
        "principal",
    );
    refused(
        Team::new("t".repeat(limits::TEAM_BYTES_MAX + 1)),
        Rule::Limit,
        "team",
    );
    refused(Team::new("the team"), Rule::InvalidField, "team");
}

#[test]
fn references_parse_and_display_as_kind_slash_id() {
    for kind in EntityKind::ALL {
        let text = format!("{kind}/x-1");
        let reference = EntityRef::parse(&text).expect("parses");
        assert_eq!(reference, EntityRef::new(kind, common::id("x-1")));
        assert_eq!(reference.to_string(), text);
    }
    refused(EntityRef::parse("o-1"), Rule::InvalidField, "ref");
    refused(EntityRef::parse("widget/o-1"), Rule::InvalidField, "ref");
    refused(EntityRef::parse("opportunity/"), Rule::Limit, "id");
    refused(
        EntityRef::parse("opportunity/o/1"),
        Rule::InvalidField,
        "id",
    );
}

#[test]
fn names_parse_back() {
    for kind in EntityKind::ALL {
        assert_eq!(EntityKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(EntityKind::parse("incident"), None);
    for relation in Relation::ALL {
        assert_eq!(Relation::parse(relation.as_str()), Some(relation));
    }
    // The names DOMAIN.md uses.
    let names: Vec<&str> = Relation::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "evidence_for",
            "duplicate_of",
            "decided_by",
            "implements",
            "supersedes",
            "verifies",
            "derived_from"
        ]
    );
    for visibility in [Visibility::Open, Visibility::Team, Visibility::Restricted] {
        assert_eq!(Visibility::parse(visibility.as_str()), Some(visibility));
    }
    assert_eq!(Visibility::parse("public"), None);
}

#[test]
fn a_child_takes_the_most_restrictive_visibility() {
    use Visibility::{Open, Restricted, Team};
    let cases = [
        (Open, Open, Open),
        (Open, Team, Team),
        (Team, Open, Team),
        (Team, Restricted, Restricted),
        (Restricted, Open, Restricted),
    ];
    for (a, b, expected) in cases {
        assert_eq!(a.most_restrictive(b), expected, "{a:?} and {b:?}");
    }
    assert_eq!(Visibility::default(), Open);
}

#[test]
fn days_are_added_in_microseconds_and_saturate() {
    assert_eq!(DAY_MICROS, 86_400 * 1_000_000);
    assert_eq!(Time(5).plus_days(2), Time(5 + 2 * 86_400_000_000));
    assert_eq!(Time(5).plus_days(-1), Time(5 - 86_400_000_000));
    assert_eq!(Time(i64::MAX - 1).plus_days(1), Time(i64::MAX));
    assert_eq!(Time(0).plus_days(i64::MAX), Time(i64::MAX));
    assert_eq!(Time(i64::MIN + 1).plus_days(-1), Time(i64::MIN));
}

#[test]
fn rule_names_are_distinct_and_snake_case() {
    let rules = [
        Rule::AlreadyExists,
        Rule::NotFound,
        Rule::TransitionNotAllowed,
        Rule::ReasonRequired,
        Rule::VotesFrozen,
        Rule::DuplicateTakesNothing,
        Rule::InvalidCanonical,
        Rule::AlreadyLinked,
        Rule::ContentImmutable,
        Rule::NotADecider,
        Rule::InvalidSupersession,
        Rule::SnoozeDate,
        Rule::AgingRuleNotMet,
        Rule::UnknownMilestone,
        Rule::MilestoneNotDue,
        Rule::Limit,
        Rule::InvalidField,
        Rule::NoScoringModel,
        Rule::DecisionNotInForce,
    ];
    let names: BTreeSet<&str> = rules.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), rules.len());
    for name in names {
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
    }
    assert_eq!(
        DomainError::field(Rule::Limit, "weight", "too heavy").to_string(),
        "limit (weight): too heavy"
    );
    assert_eq!(
        DomainError::transition("ship", "new").to_string(),
        "transition_not_allowed: ship is not allowed in state new"
    );
}
