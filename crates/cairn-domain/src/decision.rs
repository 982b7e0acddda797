//! A decision record: `proposed -> accepted / rejected`; `accepted -> deprecated /
//! superseded(by)`. Its content can be revised only while proposed: once accepted, only the
//! status changes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::common::{
    Aggregate, Ctx, EntityId, EntityKind, EntityRef, PrincipalId, Team, Time, Visibility,
    check_list, check_text,
};
use crate::error::{DomainError, Rule};
use crate::limits;

/// What kind of decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DecisionKind {
    /// A triage call.
    Triage,
    /// A prioritisation change.
    Prioritisation,
    /// An architecture decision.
    Architecture,
    /// An experiment's outcome.
    Experiment,
    /// A waiver of a rule.
    Waiver,
}

impl DecisionKind {
    /// Every kind.
    pub const ALL: [DecisionKind; 5] = [
        DecisionKind::Triage,
        DecisionKind::Prioritisation,
        DecisionKind::Architecture,
        DecisionKind::Experiment,
        DecisionKind::Waiver,
    ];

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Triage => "triage",
            DecisionKind::Prioritisation => "prioritisation",
            DecisionKind::Architecture => "architecture",
            DecisionKind::Experiment => "experiment",
            DecisionKind::Waiver => "waiver",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<DecisionKind> {
        DecisionKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A decision's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecisionStatus {
    /// Open for discussion; content may be revised.
    Proposed,
    /// In force; content is immutable.
    Accepted,
    /// Not taken.
    Rejected,
    /// No longer in force, not replaced.
    Deprecated,
    /// Replaced by another decision.
    Superseded {
        /// The decision that replaced it.
        by: EntityId,
    },
}

impl DecisionStatus {
    /// The name (without the superseding decision).
    pub fn as_str(&self) -> &'static str {
        match self {
            DecisionStatus::Proposed => "proposed",
            DecisionStatus::Accepted => "accepted",
            DecisionStatus::Rejected => "rejected",
            DecisionStatus::Deprecated => "deprecated",
            DecisionStatus::Superseded { .. } => "superseded",
        }
    }
}

impl fmt::Display for DecisionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The content of a decision record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionContent {
    /// What kind.
    pub kind: DecisionKind,
    /// The title.
    pub title: String,
    /// The team that owns it.
    pub team: Team,
    /// The situation.
    pub context: String,
    /// The forces behind it.
    pub drivers: Vec<String>,
    /// The options considered.
    pub options: Vec<String>,
    /// The option chosen, and why.
    pub outcome: String,
    /// What follows from it.
    pub consequences: Vec<String>,
    /// Who decides (only they may accept or reject).
    pub deciders: Vec<PrincipalId>,
    /// Who was consulted.
    pub consulted: Vec<PrincipalId>,
    /// Who is informed.
    pub informed: Vec<PrincipalId>,
    /// What it decides on (opportunities, experiments): `decided_by` edges from each.
    pub subjects: Vec<EntityRef>,
    /// The decision it replaces once accepted (`supersedes`).
    pub supersedes: Option<EntityId>,
    /// Who may see it.
    pub visibility: Visibility,
}

impl DecisionContent {
    fn check(&self, own: &EntityId) -> Result<(), DomainError> {
        check_text("title", &self.title, limits::TITLE_BYTES_MAX, true)?;
        check_text("context", &self.context, limits::TEXT_BYTES_MAX, false)?;
        check_text("outcome", &self.outcome, limits::TEXT_BYTES_MAX, false)?;
        for (field, list) in [
            ("drivers", &self.drivers),
            ("options", &self.options),
            ("consequences", &self.consequences),
        ] {
            check_list(
                field,
                list,
                limits::LIST_ITEMS_MAX,
                limits::LIST_ITEM_BYTES_MAX,
            )?;
        }
        for (field, list) in [
            ("deciders", &self.deciders),
            ("consulted", &self.consulted),
            ("informed", &self.informed),
        ] {
            if list.len() > limits::LIST_ITEMS_MAX {
                return Err(DomainError::field(
                    Rule::Limit,
                    field,
                    format!(
                        "at most {} entries, got {}",
                        limits::LIST_ITEMS_MAX,
                        list.len()
                    ),
                ));
            }
        }
        if self.deciders.is_empty() {
            return Err(DomainError::field(
                Rule::InvalidField,
                "deciders",
                "a decision needs at least one decider",
            ));
        }
        if self.subjects.len() > limits::LIST_ITEMS_MAX {
            return Err(DomainError::field(
                Rule::Limit,
                "subjects",
                format!("at most {} entries", limits::LIST_ITEMS_MAX),
            ));
        }
        if self.supersedes.as_ref() == Some(own) {
            return Err(DomainError::field(
                Rule::InvalidSupersession,
                "supersedes",
                "a decision cannot supersede itself",
            ));
        }
        Ok(())
    }
}

/// Commands on a decision.
#[derive(Clone, Debug, PartialEq)]
pub enum DecisionCommand {
    /// Proposes it.
    Propose {
        /// Its id.
        id: EntityId,
        /// Its content.
        content: DecisionContent,
    },
    /// Revises the content while proposed.
    Revise(DecisionContent),
    /// Accepts it (a decider only).
    Accept,
    /// Rejects it (a decider only).
    Reject {
        /// Why.
        reason: String,
    },
    /// Takes an accepted decision out of force.
    Deprecate {
        /// Why.
        reason: String,
    },
    /// Records that an accepted decision was replaced (the service sends it when the replacing
    /// decision is accepted).
    MarkSuperseded {
        /// The replacing decision.
        by: EntityId,
    },
}

/// Events of a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DecisionEvent {
    /// Proposed.
    Proposed {
        /// Its id.
        id: EntityId,
        /// Its content.
        content: DecisionContent,
        /// When.
        proposed_at: Time,
    },
    /// Revised while proposed.
    Revised(DecisionContent),
    /// Accepted.
    Accepted {
        /// The decider who accepted it.
        by: PrincipalId,
        /// When.
        at: Time,
    },
    /// Rejected.
    Rejected {
        /// The decider.
        by: PrincipalId,
        /// Why.
        reason: String,
    },
    /// Deprecated.
    Deprecated {
        /// Why.
        reason: String,
    },
    /// Superseded.
    Superseded {
        /// The replacing decision.
        by: EntityId,
    },
}

/// A decision, folded from its events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Its id, once proposed.
    pub id: Option<EntityId>,
    /// `None` until proposed.
    pub status: Option<DecisionStatus>,
    /// The content.
    pub content: Option<DecisionContent>,
}

impl Decision {
    fn require_decider(&self, actor: &PrincipalId, what: &str) -> Result<(), DomainError> {
        let deciders = self
            .content
            .as_ref()
            .map(|c| &c.deciders[..])
            .unwrap_or(&[]);
        if !deciders.contains(actor) {
            return Err(DomainError::new(
                Rule::NotADecider,
                format!("{actor} is not a decider of this decision and cannot {what} it"),
            ));
        }
        Ok(())
    }
}

impl Aggregate for Decision {
    type Command = DecisionCommand;
    type Event = DecisionEvent;
    const KIND: EntityKind = EntityKind::Decision;

    fn decide(
        &self,
        command: DecisionCommand,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<DecisionEvent>, DomainError> {
        let status = match (&self.status, command) {
            (None, DecisionCommand::Propose { id, content }) => {
                content.check(&id)?;
                return Ok(vec![DecisionEvent::Proposed {
                    id,
                    content,
                    proposed_at: ctx.now,
                }]);
            }
            (Some(_), DecisionCommand::Propose { id, .. }) => {
                return Err(DomainError::new(
                    Rule::AlreadyExists,
                    format!("decision {id} exists"),
                ));
            }
            (None, _) => return Err(DomainError::new(Rule::NotFound, "no such decision")),
            (Some(status), command) => (status, command),
        };
        match status {
            (DecisionStatus::Proposed, DecisionCommand::Revise(content)) => {
                content.check(self.id.as_ref().expect("proposed has an id"))?;
                Ok(vec![DecisionEvent::Revised(content)])
            }
            (other, DecisionCommand::Revise(_)) => Err(DomainError::new(
                Rule::ContentImmutable,
                format!("a decision's content cannot change once {other}"),
            )),
            (DecisionStatus::Proposed, DecisionCommand::Accept) => {
                self.require_decider(&ctx.actor, "accept")?;
                Ok(vec![DecisionEvent::Accepted {
                    by: ctx.actor.clone(),
                    at: ctx.now,
                }])
            }
            (DecisionStatus::Proposed, DecisionCommand::Reject { reason }) => {
                self.require_decider(&ctx.actor, "reject")?;
                check_text("reason", &reason, limits::REASON_BYTES_MAX, true)?;
                Ok(vec![DecisionEvent::Rejected {
                    by: ctx.actor.clone(),
                    reason,
                }])
            }
            (DecisionStatus::Accepted, DecisionCommand::Deprecate { reason }) => {
                check_text("reason", &reason, limits::REASON_BYTES_MAX, true)?;
                Ok(vec![DecisionEvent::Deprecated { reason }])
            }
            (DecisionStatus::Accepted, DecisionCommand::MarkSuperseded { by }) => {
                if self.id.as_ref() == Some(&by) {
                    return Err(DomainError::field(
                        Rule::InvalidSupersession,
                        "by",
                        "a decision cannot supersede itself",
                    ));
                }
                Ok(vec![DecisionEvent::Superseded { by }])
            }
            (status, command) => Err(DomainError::transition(
                match command {
                    DecisionCommand::Accept => "accept",
                    DecisionCommand::Reject { .. } => "reject",
                    DecisionCommand::Deprecate { .. } => "deprecate",
                    DecisionCommand::MarkSuperseded { .. } => "supersede",
                    DecisionCommand::Propose { .. } | DecisionCommand::Revise(_) => "revise",
                },
                status,
            )),
        }
    }

    fn apply(&mut self, event: &DecisionEvent) {
        match event {
            DecisionEvent::Proposed { id, content, .. } => {
                self.id = Some(id.clone());
                self.status = Some(DecisionStatus::Proposed);
                self.content = Some(content.clone());
            }
            DecisionEvent::Revised(content) => self.content = Some(content.clone()),
            DecisionEvent::Accepted { .. } => self.status = Some(DecisionStatus::Accepted),
            DecisionEvent::Rejected { .. } => self.status = Some(DecisionStatus::Rejected),
            DecisionEvent::Deprecated { .. } => self.status = Some(DecisionStatus::Deprecated),
            DecisionEvent::Superseded { by } => {
                self.status = Some(DecisionStatus::Superseded { by: by.clone() })
            }
        }
    }
}
