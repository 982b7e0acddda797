//! The feedback-loop enums as a person types and reads them: the proto name without its prefix,
//! in lower case (`OPPORTUNITY_STATUS_UNDER_REVIEW` is `under_review`; `-` may stand for `_` when
//! typing), so the CLI, the docs and the domain spell them alike.

use anyhow::bail;
use cairn_grpc::proto;

/// A generated proto enum, named the short way.
pub trait ProtoEnum: Sized + Copy + TryFrom<i32> + Into<i32> {
    /// The prefix every value's proto name starts with (`OPPORTUNITY_STATUS_`).
    const PREFIX: &'static str;

    /// The full proto name (`OPPORTUNITY_STATUS_NEW`).
    fn proto_name(self) -> &'static str;

    /// The value of a full proto name.
    fn from_proto_name(name: &str) -> Option<Self>;

    /// The short name: `new`, `under_review`.
    fn short_name(self) -> String {
        let name = self.proto_name();
        name.strip_prefix(Self::PREFIX)
            .unwrap_or(name)
            .to_ascii_lowercase()
    }
}

macro_rules! proto_enums {
    ($($ty:ident => $prefix:literal,)*) => {
        $(
            impl ProtoEnum for proto::$ty {
                const PREFIX: &'static str = $prefix;

                fn proto_name(self) -> &'static str {
                    self.as_str_name()
                }

                fn from_proto_name(name: &str) -> Option<Self> {
                    proto::$ty::from_str_name(name)
                }
            }
        )*
    };
}

proto_enums! {
    EntityKind => "ENTITY_KIND_",
    Visibility => "VISIBILITY_",
    Relation => "RELATION_",
    FeedbackSource => "FEEDBACK_SOURCE_",
    FeedbackStatus => "FEEDBACK_STATUS_",
    MetricDirection => "METRIC_DIRECTION_",
    DecisionKind => "DECISION_KIND_",
    DecisionStatus => "DECISION_STATUS_",
    OpportunityStatus => "OPPORTUNITY_STATUS_",
    Size => "SIZE_",
    Validation => "VALIDATION_",
    InitiativeStatus => "INITIATIVE_STATUS_",
    MilestoneStatus => "MILESTONE_STATUS_",
    LineageDirection => "LINEAGE_DIRECTION_",
    ScoringFormula => "SCORING_FORMULA_",
    FactorRole => "FACTOR_ROLE_",
    MetricStatistic => "METRIC_STATISTIC_",
    PersonalState => "PERSONAL_STATE_",
}

/// The short name of a raw enum field (`unknown(N)` for a value this client does not know, from
/// a newer server).
pub fn name_of<E: ProtoEnum>(value: i32) -> String {
    match E::try_from(value) {
        Ok(known) => known.short_name(),
        Err(_) => format!("unknown({value})"),
    }
}

/// Every value but UNSPECIFIED, short names, for error messages.
pub fn short_names<E: ProtoEnum>() -> Vec<String> {
    (1..64)
        .filter_map(|value| E::try_from(value).ok())
        .map(ProtoEnum::short_name)
        .collect()
}

/// Parses a short name (`under_review`, `under-review`, case-insensitive) into a value other
/// than UNSPECIFIED; the error lists the names there are.
pub fn parse_enum<E: ProtoEnum>(flag: &str, text: &str) -> anyhow::Result<E> {
    let full = format!(
        "{}{}",
        E::PREFIX,
        text.trim().replace('-', "_").to_ascii_uppercase()
    );
    match E::from_proto_name(&full) {
        Some(value) if value.into() != 0 => Ok(value),
        _ => bail!(
            "{flag} {text:?} must be one of: {}",
            short_names::<E>().join(", ")
        ),
    }
}

/// Parses an optional filter: `None` is unset (0 in the request).
pub fn parse_filter<E: ProtoEnum>(flag: &str, text: Option<&str>) -> anyhow::Result<i32> {
    match text {
        None => Ok(0),
        Some(text) => Ok(parse_enum::<E>(flag, text)?.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_lower_case() {
        assert_eq!(
            name_of::<proto::OpportunityStatus>(proto::OpportunityStatus::UnderReview as i32),
            "under_review"
        );
        assert_eq!(name_of::<proto::Relation>(1), "evidence_for");
        assert_eq!(name_of::<proto::Relation>(99), "unknown(99)");
        assert_eq!(
            short_names::<proto::Size>(),
            ["xs", "s", "m", "l", "xl"].map(String::from)
        );
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_enum::<proto::FeedbackSource>("--source", "health-check").unwrap(),
            proto::FeedbackSource::HealthCheck
        );
        assert_eq!(
            parse_enum::<proto::LineageDirection>("--direction", "UPSTREAM").unwrap(),
            proto::LineageDirection::Upstream
        );
        let error = parse_enum::<proto::Size>("--size", "huge")
            .unwrap_err()
            .to_string();
        assert_eq!(error, r#"--size "huge" must be one of: xs, s, m, l, xl"#);
        let error = parse_enum::<proto::Size>("--size", "unspecified")
            .unwrap_err()
            .to_string();
        assert!(error.contains("must be one of"), "{error}");
        assert_eq!(parse_filter::<proto::Size>("--size", None).unwrap(), 0);
    }
}
