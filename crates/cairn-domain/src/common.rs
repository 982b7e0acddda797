//! The pieces every aggregate shares: ids, time, visibility, lineage edges, the command context,
//! the [`Aggregate`] contract and input validation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Rule};
use crate::limits;
use crate::scoring::ScoringModel;

/// A point in time, microseconds since the Unix epoch (UTC). It comes in through [`Ctx`]; the
/// domain never reads a clock.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub i64);

/// One day, in microseconds.
pub const DAY_MICROS: i64 = 86_400_000_000;

impl Time {
    /// `days` days later (earlier if negative), saturating.
    pub fn plus_days(self, days: i64) -> Time {
        Time(self.0.saturating_add(days.saturating_mul(DAY_MICROS)))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}µs", self.0)
    }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an id.
            pub fn new(text: impl Into<String>) -> Result<$name, DomainError> {
                let text = text.into();
                check_id_text($field, &text, $max)?;
                Ok($name(text))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_id!(
    /// The id of an entity within its tenant and kind: 1 to [`limits::ENTITY_ID_BYTES_MAX`] bytes
    /// of `[A-Za-z0-9._:-]`. It is the aggregate id of the entity's ledger stream.
    EntityId,
    "id",
    limits::ENTITY_ID_BYTES_MAX
);
text_id!(
    /// A principal (user, service or group): a stable id, never an email; 1 to
    /// [`limits::PRINCIPAL_ID_BYTES_MAX`] bytes of `[A-Za-z0-9._:-]`.
    PrincipalId,
    "principal",
    limits::PRINCIPAL_ID_BYTES_MAX
);
text_id!(
    /// A team inside a tenant: 1 to [`limits::TEAM_BYTES_MAX`] bytes of `[A-Za-z0-9._:-]`.
    Team,
    "team",
    limits::TEAM_BYTES_MAX
);

/// Checks an id's length and alphabet.
pub(crate) fn check_id_text(
    field: &'static str,
    text: &str,
    max: usize,
) -> Result<(), DomainError> {
    if text.is_empty() || text.len() > max {
        return Err(DomainError::field(
            Rule::Limit,
            field,
            format!("must be 1 to {max} bytes, got {}", text.len()),
        ));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(DomainError::field(
            Rule::InvalidField,
            field,
            format!("{text:?} must be [A-Za-z0-9._:-]"),
        ));
    }
    Ok(())
}

/// The kinds of entity, each its own ledger aggregate type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityKind {
    /// A feedback item.
    Feedback,
    /// A metric observation.
    Signal,
    /// An opportunity (a problem worth solving), with its votes and scores.
    Opportunity,
    /// A decision record.
    Decision,
    /// An initiative, with its milestones.
    Initiative,
}

impl EntityKind {
    /// Every kind.
    pub const ALL: [EntityKind; 5] = [
        EntityKind::Feedback,
        EntityKind::Signal,
        EntityKind::Opportunity,
        EntityKind::Decision,
        EntityKind::Initiative,
    ];

    /// The ledger aggregate type of this kind's streams.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Feedback => "feedback",
            EntityKind::Signal => "signal",
            EntityKind::Opportunity => "opportunity",
            EntityKind::Decision => "decision",
            EntityKind::Initiative => "initiative",
        }
    }

    /// The kind of an aggregate type name.
    pub fn parse(text: &str) -> Option<EntityKind> {
        EntityKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to one entity of a tenant: its kind and id (`opportunity/o-17`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    /// The kind.
    pub kind: EntityKind,
    /// The id.
    pub id: EntityId,
}

impl EntityRef {
    /// A reference.
    pub fn new(kind: EntityKind, id: EntityId) -> EntityRef {
        EntityRef { kind, id }
    }

    /// Parses `kind/id`.
    pub fn parse(text: &str) -> Result<EntityRef, DomainError> {
        let (kind, id) = text.split_once('/').ok_or_else(|| {
            DomainError::field(
                Rule::InvalidField,
                "ref",
                format!("{text:?} must be kind/id, for example opportunity/o-1"),
            )
        })?;
        let kind = EntityKind::parse(kind).ok_or_else(|| {
            DomainError::field(Rule::InvalidField, "ref", format!("unknown kind {kind:?}"))
        })?;
        Ok(EntityRef::new(kind, EntityId::new(id)?))
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.id)
    }
}

/// The lineage relations of DOMAIN.md that this domain records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Relation {
    /// Feedback or a signal is evidence for an opportunity.
    EvidenceFor,
    /// An opportunity is a duplicate of its canonical opportunity.
    DuplicateOf,
    /// An opportunity (or another decided thing) was decided by a decision.
    DecidedBy,
    /// An initiative implements an opportunity.
    Implements,
    /// A decision supersedes an earlier one.
    Supersedes,
    /// A signal verifies an outcome (a shipped opportunity's validation, a milestone met).
    Verifies,
    /// A score or rating was derived from a signal.
    DerivedFrom,
}

impl Relation {
    /// Every relation.
    pub const ALL: [Relation; 7] = [
        Relation::EvidenceFor,
        Relation::DuplicateOf,
        Relation::DecidedBy,
        Relation::Implements,
        Relation::Supersedes,
        Relation::Verifies,
        Relation::DerivedFrom,
    ];

    /// The relation's name, as in DOMAIN.md and the envelope's lineage parents.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::EvidenceFor => "evidence_for",
            Relation::DuplicateOf => "duplicate_of",
            Relation::DecidedBy => "decided_by",
            Relation::Implements => "implements",
            Relation::Supersedes => "supersedes",
            Relation::Verifies => "verifies",
            Relation::DerivedFrom => "derived_from",
        }
    }

    /// The relation of a name.
    pub fn parse(text: &str) -> Option<Relation> {
        Relation::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lineage edge `from -relation-> to`, recorded by the event that names it. Edges are never
/// deleted: a later edge may supersede an earlier one (a duplicate's evidence moving to its
/// canonical opportunity adds edges; the old ones stay in the record).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Edge {
    /// Where the edge starts (the thing that came later, or that depends).
    pub from: EntityRef,
    /// The relation.
    pub relation: Relation,
    /// Where it points.
    pub to: EntityRef,
}

/// Who may see an aggregate. A child inherits the most restrictive visibility of its parents.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Visibility {
    /// Everyone in the tenant.
    #[default]
    Open,
    /// The owning team (and roles above it).
    Team,
    /// Named people only.
    Restricted,
}

impl Visibility {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Open => "open",
            Visibility::Team => "team",
            Visibility::Restricted => "restricted",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<Visibility> {
        [Visibility::Open, Visibility::Team, Visibility::Restricted]
            .into_iter()
            .find(|v| v.as_str() == text)
    }

    /// The more restrictive of two.
    pub fn most_restrictive(self, other: Visibility) -> Visibility {
        self.max(other)
    }
}

/// What a command is decided with, besides the state: the time, the principal, and the policy in
/// force. Everything the domain would otherwise have to fetch comes in here.
#[derive(Clone, Debug)]
pub struct Ctx<'a> {
    /// The time of the decision.
    pub now: Time,
    /// The principal on whose behalf the command runs.
    pub actor: PrincipalId,
    /// The scoring model in force, if any: opportunities rescore themselves with it whenever an
    /// input changes.
    pub scoring: Option<&'a ScoringModel>,
}

/// One aggregate: its state is folded from its events; commands are decided against it.
pub trait Aggregate: Default + Clone {
    /// The aggregate's commands.
    type Command;
    /// The aggregate's events.
    type Event: Clone;
    /// The kind of entity, and so the ledger aggregate type.
    const KIND: EntityKind;

    /// Decides a command: the events it produces, or the rule it breaks. Never changes `self`.
    fn decide(
        &self,
        command: Self::Command,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<Self::Event>, DomainError>;

    /// Folds one event into the state. Never fails: an event is a fact.
    fn apply(&mut self, event: &Self::Event);

    /// Folds a sequence of events into a fresh state.
    fn fold<'e>(events: impl IntoIterator<Item = &'e Self::Event>) -> Self
    where
        Self::Event: 'e,
    {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }
}

/// Checks free text: non-empty when `required`, at most `max` bytes.
pub(crate) fn check_text(
    field: &'static str,
    text: &str,
    max: usize,
    required: bool,
) -> Result<(), DomainError> {
    if required && text.trim().is_empty() {
        let rule = if field == "reason" {
            Rule::ReasonRequired
        } else {
            Rule::InvalidField
        };
        return Err(DomainError::field(rule, field, "must not be empty"));
    }
    if text.len() > max {
        return Err(DomainError::field(
            Rule::Limit,
            field,
            format!("must be at most {max} bytes, got {}", text.len()),
        ));
    }
    Ok(())
}

/// Checks a list of short strings: at most `max_items`, each non-empty and at most `item_max`
/// bytes.
pub(crate) fn check_list(
    field: &'static str,
    items: &[String],
    max_items: usize,
    item_max: usize,
) -> Result<(), DomainError> {
    if items.len() > max_items {
        return Err(DomainError::field(
            Rule::Limit,
            field,
            format!("at most {max_items} entries, got {}", items.len()),
        ));
    }
    for item in items {
        check_text(field, item, item_max, true)?;
    }
    Ok(())
}

/// Checks tags: at most [`limits::TAGS_MAX`], each 1 to [`limits::TAG_BYTES_MAX`] bytes of
/// `[a-z0-9_-]`.
pub(crate) fn check_tags(field: &'static str, tags: &[String]) -> Result<(), DomainError> {
    check_list(field, tags, limits::TAGS_MAX, limits::TAG_BYTES_MAX)?;
    for tag in tags {
        if !tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
        {
            return Err(DomainError::field(
                Rule::InvalidField,
                field,
                format!("{tag:?} must be [a-z0-9_-]"),
            ));
        }
    }
    Ok(())
}

/// Checks a number is finite and within [`limits::NUMBER_ABS_MAX`].
pub(crate) fn check_number(field: &'static str, value: f64) -> Result<(), DomainError> {
    if !value.is_finite() || value.abs() > limits::NUMBER_ABS_MAX {
        return Err(DomainError::field(
            Rule::Limit,
            field,
            format!(
                "must be finite and at most {} in magnitude, got {value}",
                limits::NUMBER_ABS_MAX
            ),
        ));
    }
    Ok(())
}
