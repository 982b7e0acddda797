//! A feedback item: `received -> processed` (linked to at least one opportunity) or `discarded`
//! (reason required). Its text and submitter are personal data.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::common::{
    Aggregate, Ctx, EntityId, EntityKind, PrincipalId, Team, Time, Visibility, check_tags,
    check_text,
};
use crate::error::{DomainError, Rule};
use crate::limits;

/// Where feedback came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FeedbackSource {
    /// A survey.
    Survey,
    /// A chat channel.
    Chat,
    /// A ticket.
    Ticket,
    /// An incident.
    Incident,
    /// A health check.
    HealthCheck,
    /// Submitted through the API by a tool.
    Api,
}

impl FeedbackSource {
    /// Every source.
    pub const ALL: [FeedbackSource; 6] = [
        FeedbackSource::Survey,
        FeedbackSource::Chat,
        FeedbackSource::Ticket,
        FeedbackSource::Incident,
        FeedbackSource::HealthCheck,
        FeedbackSource::Api,
    ];

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackSource::Survey => "survey",
            FeedbackSource::Chat => "chat",
            FeedbackSource::Ticket => "ticket",
            FeedbackSource::Incident => "incident",
            FeedbackSource::HealthCheck => "health_check",
            FeedbackSource::Api => "api",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<FeedbackSource> {
        FeedbackSource::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// The personal part of a feedback item: sealed under the submitter's key, so erasing the
/// submitter erases it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedbackContent {
    /// What was said.
    pub text: String,
    /// Who said it; `None` for anonymous feedback.
    pub submitter: Option<PrincipalId>,
}

/// The personal part of an event as a reader sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Personal<T> {
    /// Readable.
    Present(T),
    /// Present in the ledger, not shown to this reader.
    Withheld,
    /// Its key was destroyed: gone for good.
    Erased,
}

impl<T> Personal<T> {
    /// The content, if readable.
    pub fn present(&self) -> Option<&T> {
        match self {
            Personal::Present(value) => Some(value),
            Personal::Withheld | Personal::Erased => None,
        }
    }
}

/// A feedback item's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedbackStatus {
    /// Recorded, not yet linked or discarded.
    Received,
    /// Linked to at least one opportunity.
    Processed,
    /// Discarded, with a reason.
    Discarded,
}

impl FeedbackStatus {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackStatus::Received => "received",
            FeedbackStatus::Processed => "processed",
            FeedbackStatus::Discarded => "discarded",
        }
    }
}

impl fmt::Display for FeedbackStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Commands on a feedback item.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedbackCommand {
    /// Records a new item.
    Submit {
        /// The item's id.
        id: EntityId,
        /// What was said, and by whom.
        content: FeedbackContent,
        /// The team it is about.
        team: Team,
        /// Where it came from.
        source: FeedbackSource,
        /// Free tags.
        tags: Vec<String>,
        /// Business outcome tags (`conversion`, `support-cost`, ...).
        outcome_tags: Vec<String>,
        /// Who may see it.
        visibility: Visibility,
    },
    /// Links it to an opportunity as evidence.
    Link {
        /// The opportunity.
        opportunity: EntityId,
    },
    /// Discards it.
    Discard {
        /// Why.
        reason: String,
    },
}

/// Events of a feedback item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FeedbackEvent {
    /// An item was received.
    Received {
        /// The item's id.
        id: EntityId,
        /// The team it is about.
        team: Team,
        /// Where it came from.
        source: FeedbackSource,
        /// Free tags.
        tags: Vec<String>,
        /// Business outcome tags.
        outcome_tags: Vec<String>,
        /// Who may see it.
        visibility: Visibility,
        /// When it was received.
        received_at: Time,
        /// Text and submitter: sealed in the ledger, encoded apart from the rest.
        #[serde(skip, default = "withheld")]
        content: Personal<FeedbackContent>,
    },
    /// It was linked to an opportunity (`evidence_for`).
    Linked {
        /// The opportunity.
        opportunity: EntityId,
    },
    /// It was discarded.
    Discarded {
        /// Why.
        reason: String,
    },
}

fn withheld<T>() -> Personal<T> {
    Personal::Withheld
}

/// A feedback item, folded from its events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Feedback {
    /// `None` until received.
    pub status: Option<FeedbackStatus>,
    /// The team.
    pub team: Option<Team>,
    /// The opportunities it is evidence for.
    pub opportunities: BTreeSet<EntityId>,
}

impl Aggregate for Feedback {
    type Command = FeedbackCommand;
    type Event = FeedbackEvent;
    const KIND: EntityKind = EntityKind::Feedback;

    fn decide(
        &self,
        command: FeedbackCommand,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<FeedbackEvent>, DomainError> {
        match (self.status, command) {
            (
                None,
                FeedbackCommand::Submit {
                    id,
                    content,
                    team,
                    source,
                    tags,
                    outcome_tags,
                    visibility,
                },
            ) => {
                check_text("text", &content.text, limits::TEXT_BYTES_MAX, true)?;
                check_tags("tags", &tags)?;
                check_tags("outcome_tags", &outcome_tags)?;
                Ok(vec![FeedbackEvent::Received {
                    id,
                    team,
                    source,
                    tags,
                    outcome_tags,
                    visibility,
                    received_at: ctx.now,
                    content: Personal::Present(content),
                }])
            }
            (Some(_), FeedbackCommand::Submit { id, .. }) => Err(DomainError::new(
                Rule::AlreadyExists,
                format!("feedback {id} was already received"),
            )),
            (None, _) => Err(DomainError::new(Rule::NotFound, "no such feedback item")),
            (Some(FeedbackStatus::Discarded), FeedbackCommand::Link { .. }) => {
                Err(DomainError::transition("link", FeedbackStatus::Discarded))
            }
            (Some(_), FeedbackCommand::Link { opportunity }) => {
                if self.opportunities.contains(&opportunity) {
                    return Err(DomainError::new(
                        Rule::AlreadyLinked,
                        format!("already evidence for opportunity {opportunity}"),
                    ));
                }
                Ok(vec![FeedbackEvent::Linked { opportunity }])
            }
            (Some(FeedbackStatus::Received), FeedbackCommand::Discard { reason }) => {
                check_text("reason", &reason, limits::REASON_BYTES_MAX, true)?;
                Ok(vec![FeedbackEvent::Discarded { reason }])
            }
            (Some(status), FeedbackCommand::Discard { .. }) => {
                Err(DomainError::transition("discard", status))
            }
        }
    }

    fn apply(&mut self, event: &FeedbackEvent) {
        match event {
            FeedbackEvent::Received { team, .. } => {
                self.status = Some(FeedbackStatus::Received);
                self.team = Some(team.clone());
            }
            FeedbackEvent::Linked { opportunity } => {
                self.status = Some(FeedbackStatus::Processed);
                self.opportunities.insert(opportunity.clone());
            }
            FeedbackEvent::Discarded { .. } => self.status = Some(FeedbackStatus::Discarded),
        }
    }
}
