use std::fmt;

/// The rule a refused command broke. Stable names (`as_str`) so clients can branch on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The entity already exists; creation commands run once.
    AlreadyExists,
    /// The entity does not exist yet.
    NotFound,
    /// The command is not allowed in the entity's current state.
    TransitionNotAllowed,
    /// A discard, decline, cancel or deprecation needs a reason.
    ReasonRequired,
    /// Votes and ratings are frozen once an opportunity is closed.
    VotesFrozen,
    /// A duplicate takes no evidence, votes or ratings: they belong to the canonical opportunity.
    DuplicateTakesNothing,
    /// An opportunity cannot be a duplicate of itself, nor of a duplicate.
    InvalidCanonical,
    /// The evidence is already attached (or the feedback already linked to that opportunity).
    AlreadyLinked,
    /// A decision's content cannot change once it is no longer proposed.
    ContentImmutable,
    /// Only a listed decider may accept or reject a decision.
    NotADecider,
    /// A decision cannot supersede itself.
    InvalidSupersession,
    /// A snooze must end in the future; a snoozed opportunity wakes only once its date is past.
    SnoozeDate,
    /// The aging-out rule does not hold for this opportunity (recent evidence or a high score).
    AgingRuleNotMet,
    /// No milestone of that name.
    UnknownMilestone,
    /// A milestone can be missed only after its due date.
    MilestoneNotDue,
    /// A limit of [`crate::limits`] was exceeded or a value is out of range.
    Limit,
    /// A field is malformed (empty, bad characters, not finite).
    InvalidField,
    /// No scoring model is in force, so no score can be computed.
    NoScoringModel,
    /// A triage names a decision that does not exist or is not accepted.
    DecisionNotInForce,
}

impl Rule {
    /// The rule's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AlreadyExists => "already_exists",
            Rule::NotFound => "not_found",
            Rule::TransitionNotAllowed => "transition_not_allowed",
            Rule::ReasonRequired => "reason_required",
            Rule::VotesFrozen => "votes_frozen",
            Rule::DuplicateTakesNothing => "duplicate_takes_nothing",
            Rule::InvalidCanonical => "invalid_canonical",
            Rule::AlreadyLinked => "already_linked",
            Rule::ContentImmutable => "content_immutable",
            Rule::NotADecider => "not_a_decider",
            Rule::InvalidSupersession => "invalid_supersession",
            Rule::SnoozeDate => "snooze_date",
            Rule::AgingRuleNotMet => "aging_rule_not_met",
            Rule::UnknownMilestone => "unknown_milestone",
            Rule::MilestoneNotDue => "milestone_not_due",
            Rule::Limit => "limit",
            Rule::InvalidField => "invalid_field",
            Rule::NoScoringModel => "no_scoring_model",
            Rule::DecisionNotInForce => "decision_not_in_force",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why `decide` refused a command: the rule, the field when one is at fault, and a message for
/// people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainError {
    /// The rule broken.
    pub rule: Rule,
    /// The command field at fault, if one is.
    pub field: Option<&'static str>,
    /// What happened, lowercase, without a trailing period.
    pub message: String,
}

impl DomainError {
    /// A refusal under `rule`.
    pub fn new(rule: Rule, message: impl Into<String>) -> DomainError {
        DomainError {
            rule,
            field: None,
            message: message.into(),
        }
    }

    /// A refusal naming the field at fault.
    pub fn field(rule: Rule, field: &'static str, message: impl Into<String>) -> DomainError {
        DomainError {
            rule,
            field: Some(field),
            message: message.into(),
        }
    }

    /// A transition that the current state does not allow.
    pub fn transition(command: &str, state: impl fmt::Display) -> DomainError {
        DomainError::new(
            Rule::TransitionNotAllowed,
            format!("{command} is not allowed in state {state}"),
        )
    }
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{} ({}): {}", self.rule, field, self.message),
            None => write!(f, "{}: {}", self.rule, self.message),
        }
    }
}

impl std::error::Error for DomainError {}
