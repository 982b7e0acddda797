//! The data class of every field of every event type, and which fields name a principal.
//!
//! Two axes, kept apart on purpose:
//!
//! - [`DataClass`] says how a field is stored and who may read it. Its names are the ledger's
//!   (`public`, `internal`, `personal`, `sensitive`; this crate does not depend on the ledger
//!   crate, so the enum is repeated here, in the same order). A `personal` or `sensitive` field
//!   is exactly a field that [`crate::Event::encode`] puts in the personal part, which the
//!   service seals under the data subject's key and redacts for readers without the right to
//!   personal data. Every other field is in the clear part: `public` for entity events (anyone in
//!   the tenant who may read the entity; the service records their envelopes as `public`),
//!   `internal` for governance events (stewards and auditors; recorded as `internal`).
//! - [`FieldClass::identifies`] says the field holds a principal id (a submitter, owner, voter,
//!   rater, decider, grantee ...). Such a field is personal data in the legal sense even when it
//!   is stored in the clear, as the accountable record of who did what: an export for analysis
//!   must replace it with a keyed pseudonym ([`crate::pseudonym`]), and an aggregate must not
//!   print it. A separate class (`principal`) would have had to say whether a sealed submitter
//!   is `personal` or `principal`; a flag lets it be both.
//!
//! Field paths name where a field sits in the serde data model of the event, relative to the
//! event's variant (the type name already says which variant):
//!
//! - a struct variant's fields, and the fields of the struct a newtype variant carries, are top
//!   level: `reason`, `principal` (in `opportunity.voted`), `kind` (in `decision.revised`);
//! - nested struct fields are dotted: `draft.owner`, `observation.measurement.percentiles.p95`;
//! - options, sequences, tuples, arrays and newtype structs ([`crate::PrincipalId`],
//!   [`crate::Time`]) add nothing: `votes.principal` is the principal of every vote;
//! - a nested enum's variant is a value at its own path (`inputs.source`) and its fields are
//!   beneath it (`inputs.source.by`), whatever the variant;
//! - a map's keys are at `PATH.<key>`, its values at `PATH` (no event holds a map today);
//! - the personal part of `feedback.received` is at `content` (its field in
//!   [`crate::feedback::FeedbackEvent::Received`]): `content.text`, `content.submitter`.
//!
//! `tests/privacy.rs` walks one sample of every variant with a recording serde serializer and
//! holds the table to the events both ways: every field path the walk meets has a class, every
//! class names a field the walk met, the sealed classes are exactly the personal part, and the
//! principal flag is on exactly the fields that hold a [`crate::PrincipalId`] (plus the
//! governance events' principals, held as text). A new field or event type fails it until it is
//! classed here.
//!
//! Free text in the clear part (reasons, rationales, decision context) is `public` because that
//! is how it is stored; the rule that personal data goes only into a feedback item's text is
//! the writers', and the free-text fields are where a steward looks first.

/// How a field is stored and who may read it; the ledger's data classes, least sensitive first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataClass {
    /// Anyone in the tenant (who may read the entity) may read it.
    Public,
    /// Internal to the organisation; no personal data.
    Internal,
    /// Personal data: sealed under the data subject's key, redacted for readers without the
    /// right to it.
    Personal,
    /// Sensitive personal data: sealed, and kept for the shortest retention.
    Sensitive,
}

impl DataClass {
    /// Every class, least sensitive first.
    pub const ALL: [DataClass; 4] = [
        DataClass::Public,
        DataClass::Internal,
        DataClass::Personal,
        DataClass::Sensitive,
    ];

    /// The name, as in the ledger, the API and policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Public => "public",
            DataClass::Internal => "internal",
            DataClass::Personal => "personal",
            DataClass::Sensitive => "sensitive",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<DataClass> {
        DataClass::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// Whether a field of this class is sealed (in the personal part of its event).
    pub fn requires_sealing(self) -> bool {
        matches!(self, DataClass::Personal | DataClass::Sensitive)
    }
}

/// The class of one field of an event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldClass {
    /// The field's path (see the module docs): `content.text`, `votes.principal`.
    pub path: &'static str,
    /// How it is stored.
    pub class: DataClass,
    /// Whether it holds a principal id, which an export must pseudonymize.
    pub identifies: bool,
}

const fn public(path: &'static str) -> FieldClass {
    FieldClass {
        path,
        class: DataClass::Public,
        identifies: false,
    }
}

const fn public_principal(path: &'static str) -> FieldClass {
    FieldClass {
        path,
        class: DataClass::Public,
        identifies: true,
    }
}

const fn internal(path: &'static str) -> FieldClass {
    FieldClass {
        path,
        class: DataClass::Internal,
        identifies: false,
    }
}

const fn internal_principal(path: &'static str) -> FieldClass {
    FieldClass {
        path,
        class: DataClass::Internal,
        identifies: true,
    }
}

const fn personal(path: &'static str) -> FieldClass {
    FieldClass {
        path,
        class: DataClass::Personal,
        identifies: false,
    }
}

const fn personal_principal(path: &'static str) -> FieldClass {
    FieldClass {
        path,
        class: DataClass::Personal,
        identifies: true,
    }
}

/// An event type with no fields (a bare state change).
const NO_FIELDS: &[FieldClass] = &[];

/// Every event type and the classes of its fields.
const TABLE: &[(&str, &[FieldClass])] = &[
    // Feedback: the text and submitter are the personal part; the rest is clear.
    (
        "feedback.received",
        &[
            public("id"),
            public("team"),
            public("source"),
            public("tags"),
            public("outcome_tags"),
            public("visibility"),
            public("received_at"),
            personal("content.text"),
            personal_principal("content.submitter"),
        ],
    ),
    ("feedback.linked", &[public("opportunity")]),
    ("feedback.discarded", &[public("reason")]),
    // Signals: metric observations, about services and teams, not people.
    (
        "signal.observed",
        &[
            public("id"),
            public("observation.metric"),
            public("observation.unit"),
            public("observation.direction"),
            public("observation.service"),
            public("observation.team"),
            public("observation.window_seconds"),
            public("observation.measurement.value"),
            public("observation.measurement.percentiles.p50"),
            public("observation.measurement.percentiles.p95"),
            public("observation.measurement.percentiles.p99"),
            public("observation.source"),
            public("observation.observed_at"),
            public("recorded_at"),
        ],
    ),
    (
        "signal.sampled",
        &[
            public("id"),
            public("observation.metric"),
            public("observation.unit"),
            public("observation.direction"),
            public("observation.service"),
            public("observation.team"),
            public("observation.window_seconds"),
            public("observation.measurement.value"),
            public("observation.measurement.percentiles.p50"),
            public("observation.measurement.percentiles.p95"),
            public("observation.measurement.percentiles.p99"),
            public("observation.source"),
            public("observation.observed_at"),
            public("recorded_at"),
            public("sample_rate"),
        ],
    ),
    // Opportunities.
    (
        "opportunity.created",
        &[
            public("id"),
            public("draft.title"),
            public("draft.problem"),
            public_principal("draft.owner"),
            public("draft.team"),
            public("draft.size"),
            public("draft.outcome_tags"),
            public("draft.visibility"),
            public("created_at"),
        ],
    ),
    ("opportunity.review_started", NO_FIELDS),
    ("opportunity.accepted", &[public("decision")]),
    (
        "opportunity.marked_duplicate",
        &[
            public("canonical"),
            public("evidence.reference.kind"),
            public("evidence.reference.id"),
            public("evidence.observation.metric"),
            public("evidence.observation.unit"),
            public("evidence.observation.direction"),
            public("evidence.observation.service"),
            public("evidence.observation.team"),
            public("evidence.observation.window_seconds"),
            public("evidence.observation.measurement.value"),
            public("evidence.observation.measurement.percentiles.p50"),
            public("evidence.observation.measurement.percentiles.p95"),
            public("evidence.observation.measurement.percentiles.p99"),
            public("evidence.observation.source"),
            public("evidence.observation.observed_at"),
            public("evidence.attached_at"),
            public_principal("votes.principal"),
            public("votes.weight"),
            public("votes.segment"),
            public("votes.at"),
        ],
    ),
    (
        "opportunity.declined",
        &[public("reason"), public("decision")],
    ),
    ("opportunity.snoozed", &[public("until")]),
    ("opportunity.woke", NO_FIELDS),
    ("opportunity.work_started", NO_FIELDS),
    ("opportunity.shipped", NO_FIELDS),
    (
        "opportunity.outcome_judged",
        &[public("outcome"), public("signal")],
    ),
    (
        "opportunity.evidence_attached",
        &[
            public("reference.kind"),
            public("reference.id"),
            public("observation.metric"),
            public("observation.unit"),
            public("observation.direction"),
            public("observation.service"),
            public("observation.team"),
            public("observation.window_seconds"),
            public("observation.measurement.value"),
            public("observation.measurement.percentiles.p50"),
            public("observation.measurement.percentiles.p95"),
            public("observation.measurement.percentiles.p99"),
            public("observation.source"),
            public("observation.observed_at"),
            public("attached_at"),
        ],
    ),
    (
        "opportunity.reopened",
        &[public("status"), public("by.kind"), public("by.id")],
    ),
    (
        "opportunity.voted",
        &[
            public_principal("principal"),
            public("weight"),
            public("segment"),
            public("at"),
        ],
    ),
    (
        "opportunity.rated",
        &[
            public("name"),
            public("rating.value"),
            public_principal("rating.by"),
            public("rating.at"),
            public("rating.rationale"),
        ],
    ),
    (
        "opportunity.scored",
        &[
            public("model"),
            public("model_version"),
            public("model_digest"),
            public("inputs.factor"),
            public("inputs.source"),
            public_principal("inputs.source.by"),
            public("inputs.source.at"),
            public("inputs.source.signal"),
            public("inputs.source.observed_at"),
            public("inputs.source.voters"),
            public("inputs.source.items"),
            public("inputs.raw"),
            public("inputs.normalised"),
            public("inputs.weight"),
            public("inputs.contribution"),
            public("value"),
            public("computed_at"),
        ],
    ),
    (
        "opportunity.aged_out",
        &[public("rule"), public("rule_version"), public("reason")],
    ),
    (
        "opportunity.duplicate_absorbed",
        &[
            public("duplicate"),
            public("evidence.reference.kind"),
            public("evidence.reference.id"),
            public("evidence.observation.metric"),
            public("evidence.observation.unit"),
            public("evidence.observation.direction"),
            public("evidence.observation.service"),
            public("evidence.observation.team"),
            public("evidence.observation.window_seconds"),
            public("evidence.observation.measurement.value"),
            public("evidence.observation.measurement.percentiles.p50"),
            public("evidence.observation.measurement.percentiles.p95"),
            public("evidence.observation.measurement.percentiles.p99"),
            public("evidence.observation.source"),
            public("evidence.observation.observed_at"),
            public("evidence.attached_at"),
            public_principal("votes.principal"),
            public("votes.weight"),
            public("votes.segment"),
            public("votes.at"),
        ],
    ),
    // Decisions: who decided is the accountable record, in the clear.
    (
        "decision.proposed",
        &[
            public("id"),
            public("content.kind"),
            public("content.title"),
            public("content.team"),
            public("content.context"),
            public("content.drivers"),
            public("content.options"),
            public("content.outcome"),
            public("content.consequences"),
            public_principal("content.deciders"),
            public_principal("content.consulted"),
            public_principal("content.informed"),
            public("content.subjects.kind"),
            public("content.subjects.id"),
            public("content.supersedes"),
            public("content.visibility"),
            public("proposed_at"),
        ],
    ),
    (
        "decision.revised",
        &[
            public("kind"),
            public("title"),
            public("team"),
            public("context"),
            public("drivers"),
            public("options"),
            public("outcome"),
            public("consequences"),
            public_principal("deciders"),
            public_principal("consulted"),
            public_principal("informed"),
            public("subjects.kind"),
            public("subjects.id"),
            public("supersedes"),
            public("visibility"),
        ],
    ),
    ("decision.accepted", &[public_principal("by"), public("at")]),
    (
        "decision.rejected",
        &[public_principal("by"), public("reason")],
    ),
    ("decision.deprecated", &[public("reason")]),
    // `by` is the superseding decision here, not a principal.
    ("decision.superseded", &[public("by")]),
    // Initiatives.
    (
        "initiative.created",
        &[
            public("id"),
            public("draft.title"),
            public("draft.goal"),
            public_principal("draft.owners"),
            public("draft.team"),
            public("draft.target"),
            public("draft.scope"),
            public("draft.start"),
            public("draft.target_date"),
            public("draft.implements"),
            public("draft.outcome_tags"),
            public("draft.visibility"),
        ],
    ),
    ("initiative.scheduled", NO_FIELDS),
    ("initiative.started", NO_FIELDS),
    ("initiative.risk_flagged", &[public("reason")]),
    ("initiative.risk_cleared", NO_FIELDS),
    ("initiative.completed", NO_FIELDS),
    ("initiative.cancelled", &[public("reason")]),
    ("initiative.implements", &[public("opportunity")]),
    (
        "initiative.milestone_added",
        &[public("name"), public("due"), public("exit_criteria")],
    ),
    (
        "initiative.milestone_met",
        &[public("name"), public("signal")],
    ),
    ("initiative.milestone_missed", &[public("name")]),
    // Governance: internal (stewards and auditors); principals and data subjects are held as
    // text.
    (
        "policy.activated",
        &[
            internal("bundle_hash"),
            internal("previous"),
            internal("git_commit"),
            internal("source"),
            internal("trigger"),
            internal("tests_passed"),
        ],
    ),
    (
        "policy.refused",
        &[
            internal("bundle_hash"),
            internal("active"),
            internal("source"),
            internal("trigger"),
            internal("reason"),
        ],
    ),
    (
        "access.granted",
        &[
            internal_principal("principal"),
            internal("role"),
            internal("tenant"),
            internal("reason"),
        ],
    ),
    (
        "access.revoked",
        &[
            internal_principal("principal"),
            internal("role"),
            internal("tenant"),
            internal("reason"),
        ],
    ),
    (
        "access.denied",
        &[
            internal_principal("principal"),
            internal("method"),
            internal("object"),
            internal("action"),
            internal("tenant"),
            internal("bundle_hash"),
        ],
    ),
    (
        "access.denied.repeated",
        &[
            internal_principal("principal"),
            internal("method"),
            internal("object"),
            internal("action"),
            internal("tenant"),
            internal("bundle_hash"),
            internal("count"),
            internal("first_at_micros"),
            internal("last_at_micros"),
        ],
    ),
    (
        "legal_hold.placed",
        &[
            internal("hold_id"),
            personal_principal("subject"),
            internal("reason"),
        ],
    ),
    (
        "legal_hold.released",
        &[internal("hold_id"), internal("reason")],
    ),
    (
        "data.erased",
        &[
            internal("key_id"),
            personal_principal("subject"),
            internal("cause"),
            internal("cause.rule"),
            internal("cause.class"),
            internal("cause.days"),
            internal("cause.last_sealed_micros"),
            internal("cause.request_id"),
            internal("cause.reason"),
            internal("records"),
        ],
    ),
];

/// Every event type with a table: the entity events' and the governance events' type names.
pub fn event_types() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(event_type, _)| *event_type)
}

/// The classes of every field of an event type (see the module docs for the paths), or `None`
/// for a type this build does not know.
pub fn field_classes(event_type: &str) -> Option<&'static [FieldClass]> {
    TABLE
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, fields)| *fields)
}

/// The class of one field of an event type.
pub fn field_class(event_type: &str, path: &str) -> Option<FieldClass> {
    field_classes(event_type)?
        .iter()
        .find(|field| field.path == path)
        .copied()
}

/// The paths of an event type's fields that hold a principal id: what an export pseudonymizes.
pub fn identifying_paths(event_type: &str) -> Option<Vec<&'static str>> {
    Some(
        field_classes(event_type)?
            .iter()
            .filter(|field| field.identifies)
            .map(|field| field.path)
            .collect(),
    )
}

/// The class of an event type's payload, that of its most sensitive field (`public` for a type
/// with no fields): the data class its envelope should carry. It is `personal` for
/// `feedback.received`, `public` for the other entity events and `internal` for governance
/// events, as the service records them today.
pub fn payload_class(event_type: &str) -> Option<DataClass> {
    Some(
        field_classes(event_type)?
            .iter()
            .map(|field| field.class)
            .max()
            .unwrap_or(DataClass::Public),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_order() {
        for class in DataClass::ALL {
            assert_eq!(DataClass::parse(class.as_str()), Some(class));
        }
        assert_eq!(DataClass::parse("secret"), None);
        assert!(DataClass::Public < DataClass::Internal);
        assert!(DataClass::Internal < DataClass::Personal);
        assert!(DataClass::Personal < DataClass::Sensitive);
        assert!(!DataClass::Internal.requires_sealing());
        assert!(DataClass::Sensitive.requires_sealing());
    }

    #[test]
    fn the_table_has_one_row_per_type_and_one_entry_per_path() {
        let mut types: Vec<&str> = event_types().collect();
        let count = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), count, "an event type has two rows");
        for (event_type, fields) in TABLE {
            let mut paths: Vec<&str> = fields.iter().map(|f| f.path).collect();
            paths.sort_unstable();
            paths.dedup();
            assert_eq!(paths.len(), fields.len(), "{event_type} names a path twice");
        }
    }

    #[test]
    fn lookups() {
        let submitter = field_class("feedback.received", "content.submitter").unwrap();
        assert_eq!(submitter.class, DataClass::Personal);
        assert!(submitter.identifies);
        assert_eq!(
            field_class("opportunity.voted", "principal").map(|f| (f.class, f.identifies)),
            Some((DataClass::Public, true))
        );
        assert_eq!(field_class("opportunity.voted", "nope"), None);
        assert_eq!(field_classes("opportunity.nope"), None);
        assert_eq!(
            identifying_paths("decision.proposed").unwrap(),
            ["content.deciders", "content.consulted", "content.informed"]
        );
        assert_eq!(
            payload_class("feedback.received"),
            Some(DataClass::Personal)
        );
        assert_eq!(payload_class("opportunity.woke"), Some(DataClass::Public));
        assert_eq!(payload_class("access.denied"), Some(DataClass::Internal));
        assert_eq!(
            identifying_paths("access.denied.repeated").unwrap(),
            ["principal"]
        );
    }
}
