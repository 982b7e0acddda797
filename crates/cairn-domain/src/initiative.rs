//! An initiative with its milestones: `draft -> scheduled -> in_progress (at_risk) -> completed /
//! cancelled`; a milestone is `open -> met / missed`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::common::{
    Aggregate, Ctx, EntityId, EntityKind, PrincipalId, Team, Time, Visibility, check_tags,
    check_text,
};
use crate::error::{DomainError, Rule};
use crate::limits;

/// An initiative's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitiativeStatus {
    /// Being drafted.
    Draft,
    /// Scheduled to start.
    Scheduled,
    /// Under way.
    InProgress,
    /// Done.
    Completed,
    /// Stopped.
    Cancelled,
}

impl InitiativeStatus {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            InitiativeStatus::Draft => "draft",
            InitiativeStatus::Scheduled => "scheduled",
            InitiativeStatus::InProgress => "in_progress",
            InitiativeStatus::Completed => "completed",
            InitiativeStatus::Cancelled => "cancelled",
        }
    }

    fn is_closed(self) -> bool {
        matches!(
            self,
            InitiativeStatus::Completed | InitiativeStatus::Cancelled
        )
    }
}

impl fmt::Display for InitiativeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A milestone's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MilestoneStatus {
    /// Not yet reached.
    Open,
    /// Met.
    Met,
    /// Missed.
    Missed,
}

impl MilestoneStatus {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            MilestoneStatus::Open => "open",
            MilestoneStatus::Met => "met",
            MilestoneStatus::Missed => "missed",
        }
    }
}

/// A milestone of an initiative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Milestone {
    /// Its name, unique within the initiative.
    pub name: String,
    /// When it is due.
    pub due: Time,
    /// What must hold for it to be met.
    pub exit_criteria: String,
    /// Its state.
    pub status: MilestoneStatus,
}

/// What an initiative aims at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitiativeDraft {
    /// The title.
    pub title: String,
    /// The goal.
    pub goal: String,
    /// Its owners.
    pub owners: Vec<PrincipalId>,
    /// The owning team.
    pub team: Team,
    /// The target: a metric target or scorecard level, in words.
    pub target: String,
    /// The scope.
    pub scope: String,
    /// When it starts.
    pub start: Time,
    /// When it should be done.
    pub target_date: Time,
    /// The opportunities it implements (`implements` edges).
    pub implements: Vec<EntityId>,
    /// Business outcome tags.
    pub outcome_tags: Vec<String>,
    /// Who may see it.
    pub visibility: Visibility,
}

/// Commands on an initiative.
#[derive(Clone, Debug, PartialEq)]
pub enum InitiativeCommand {
    /// Creates it as a draft.
    Create {
        /// Its id.
        id: EntityId,
        /// Its content.
        draft: InitiativeDraft,
    },
    /// Draft -> scheduled.
    Schedule,
    /// Scheduled -> in progress.
    Start,
    /// Flags an in-progress initiative at risk.
    FlagRisk {
        /// Why.
        reason: String,
    },
    /// Clears the at-risk flag.
    ClearRisk,
    /// In progress -> completed.
    Complete,
    /// Draft, scheduled or in progress -> cancelled.
    Cancel {
        /// Why.
        reason: String,
    },
    /// Links one more opportunity it implements.
    Implement {
        /// The opportunity.
        opportunity: EntityId,
    },
    /// Adds a milestone.
    AddMilestone {
        /// Its name.
        name: String,
        /// When it is due.
        due: Time,
        /// What must hold.
        exit_criteria: String,
    },
    /// Marks a milestone met, optionally with the signal that shows it.
    MeetMilestone {
        /// Its name.
        name: String,
        /// The signal that verifies it.
        signal: Option<EntityId>,
    },
    /// Marks a milestone missed (only after its due date).
    MissMilestone {
        /// Its name.
        name: String,
    },
}

/// Events of an initiative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InitiativeEvent {
    /// Created as a draft.
    Created {
        /// Its id.
        id: EntityId,
        /// Its content.
        draft: InitiativeDraft,
    },
    /// Scheduled.
    Scheduled,
    /// Started.
    Started,
    /// Flagged at risk.
    RiskFlagged {
        /// Why.
        reason: String,
    },
    /// The at-risk flag was cleared.
    RiskCleared,
    /// Completed.
    Completed,
    /// Cancelled.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// Now also implements an opportunity.
    Implements {
        /// The opportunity.
        opportunity: EntityId,
    },
    /// A milestone was added.
    MilestoneAdded {
        /// Its name.
        name: String,
        /// When due.
        due: Time,
        /// What must hold.
        exit_criteria: String,
    },
    /// A milestone was met.
    MilestoneMet {
        /// Its name.
        name: String,
        /// The signal that verifies it.
        signal: Option<EntityId>,
    },
    /// A milestone was missed.
    MilestoneMissed {
        /// Its name.
        name: String,
    },
}

/// An initiative, folded from its events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Initiative {
    /// `None` until created.
    pub status: Option<InitiativeStatus>,
    /// Whether it is flagged at risk (only meaningful in progress).
    pub at_risk: bool,
    /// Its content.
    pub draft: Option<InitiativeDraft>,
    /// Its milestones, in the order added.
    pub milestones: Vec<Milestone>,
}

impl Initiative {
    fn milestone(&self, name: &str) -> Result<&Milestone, DomainError> {
        self.milestones
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| {
                DomainError::field(
                    Rule::UnknownMilestone,
                    "name",
                    format!("no milestone {name:?}"),
                )
            })
    }
}

impl Aggregate for Initiative {
    type Command = InitiativeCommand;
    type Event = InitiativeEvent;
    const KIND: EntityKind = EntityKind::Initiative;

    fn decide(
        &self,
        command: InitiativeCommand,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<InitiativeEvent>, DomainError> {
        use InitiativeStatus as S;
        let status = match (self.status, command) {
            (None, InitiativeCommand::Create { id, draft }) => {
                check_text("title", &draft.title, limits::TITLE_BYTES_MAX, true)?;
                check_text("goal", &draft.goal, limits::TEXT_BYTES_MAX, false)?;
                check_text("target", &draft.target, limits::TEXT_BYTES_MAX, false)?;
                check_text("scope", &draft.scope, limits::TEXT_BYTES_MAX, false)?;
                check_tags("outcome_tags", &draft.outcome_tags)?;
                if draft.owners.is_empty() || draft.owners.len() > limits::LIST_ITEMS_MAX {
                    return Err(DomainError::field(
                        Rule::Limit,
                        "owners",
                        format!("1 to {} owners", limits::LIST_ITEMS_MAX),
                    ));
                }
                if draft.implements.len() > limits::LIST_ITEMS_MAX {
                    return Err(DomainError::field(
                        Rule::Limit,
                        "implements",
                        format!("at most {} opportunities", limits::LIST_ITEMS_MAX),
                    ));
                }
                if draft.target_date < draft.start {
                    return Err(DomainError::field(
                        Rule::InvalidField,
                        "target_date",
                        "must not be before the start",
                    ));
                }
                return Ok(vec![InitiativeEvent::Created { id, draft }]);
            }
            (Some(_), InitiativeCommand::Create { id, .. }) => {
                return Err(DomainError::new(
                    Rule::AlreadyExists,
                    format!("initiative {id} exists"),
                ));
            }
            (None, _) => return Err(DomainError::new(Rule::NotFound, "no such initiative")),
            (Some(status), command) => (status, command),
        };
        let event = match status {
            (S::Draft, InitiativeCommand::Schedule) => InitiativeEvent::Scheduled,
            (S::Scheduled, InitiativeCommand::Start) => InitiativeEvent::Started,
            (S::InProgress, InitiativeCommand::FlagRisk { reason }) => {
                check_text("reason", &reason, limits::REASON_BYTES_MAX, true)?;
                InitiativeEvent::RiskFlagged { reason }
            }
            (S::InProgress, InitiativeCommand::ClearRisk) if self.at_risk => {
                InitiativeEvent::RiskCleared
            }
            (S::InProgress, InitiativeCommand::Complete) => InitiativeEvent::Completed,
            (S::Draft | S::Scheduled | S::InProgress, InitiativeCommand::Cancel { reason }) => {
                check_text("reason", &reason, limits::REASON_BYTES_MAX, true)?;
                InitiativeEvent::Cancelled { reason }
            }
            (status, InitiativeCommand::Implement { opportunity }) if !status.is_closed() => {
                let draft = self.draft.as_ref().expect("created");
                if draft.implements.contains(&opportunity) {
                    return Err(DomainError::new(
                        Rule::AlreadyLinked,
                        format!("already implements {opportunity}"),
                    ));
                }
                if draft.implements.len() >= limits::LIST_ITEMS_MAX {
                    return Err(DomainError::field(
                        Rule::Limit,
                        "implements",
                        format!("at most {} opportunities", limits::LIST_ITEMS_MAX),
                    ));
                }
                InitiativeEvent::Implements { opportunity }
            }
            (
                status,
                InitiativeCommand::AddMilestone {
                    name,
                    due,
                    exit_criteria,
                },
            ) if !status.is_closed() => {
                check_text("name", &name, limits::TITLE_BYTES_MAX, true)?;
                check_text(
                    "exit_criteria",
                    &exit_criteria,
                    limits::TEXT_BYTES_MAX,
                    false,
                )?;
                if self.milestones.iter().any(|m| m.name == name) {
                    return Err(DomainError::field(
                        Rule::AlreadyExists,
                        "name",
                        format!("milestone {name:?} exists"),
                    ));
                }
                if self.milestones.len() >= limits::MILESTONES_MAX {
                    return Err(DomainError::field(
                        Rule::Limit,
                        "name",
                        format!("at most {} milestones", limits::MILESTONES_MAX),
                    ));
                }
                InitiativeEvent::MilestoneAdded {
                    name,
                    due,
                    exit_criteria,
                }
            }
            (S::Scheduled | S::InProgress, InitiativeCommand::MeetMilestone { name, signal }) => {
                let milestone = self.milestone(&name)?;
                if milestone.status != MilestoneStatus::Open {
                    return Err(DomainError::transition(
                        "meet_milestone",
                        milestone.status.as_str(),
                    ));
                }
                InitiativeEvent::MilestoneMet { name, signal }
            }
            (S::Scheduled | S::InProgress, InitiativeCommand::MissMilestone { name }) => {
                let milestone = self.milestone(&name)?;
                if milestone.status != MilestoneStatus::Open {
                    return Err(DomainError::transition(
                        "miss_milestone",
                        milestone.status.as_str(),
                    ));
                }
                if ctx.now <= milestone.due {
                    return Err(DomainError::field(
                        Rule::MilestoneNotDue,
                        "name",
                        format!("milestone {name:?} is not due until {}", milestone.due),
                    ));
                }
                InitiativeEvent::MilestoneMissed { name }
            }
            (status, command) => {
                let name = match command {
                    InitiativeCommand::Create { .. } => "create",
                    InitiativeCommand::Schedule => "schedule",
                    InitiativeCommand::Start => "start",
                    InitiativeCommand::FlagRisk { .. } => "flag_risk",
                    InitiativeCommand::ClearRisk => "clear_risk",
                    InitiativeCommand::Complete => "complete",
                    InitiativeCommand::Cancel { .. } => "cancel",
                    InitiativeCommand::Implement { .. } => "implement",
                    InitiativeCommand::AddMilestone { .. } => "add_milestone",
                    InitiativeCommand::MeetMilestone { .. } => "meet_milestone",
                    InitiativeCommand::MissMilestone { .. } => "miss_milestone",
                };
                let state = if self.at_risk && status == S::InProgress {
                    "in_progress (at risk)".to_owned()
                } else {
                    status.to_string()
                };
                return Err(DomainError::transition(name, state));
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &InitiativeEvent) {
        use InitiativeStatus as S;
        match event {
            InitiativeEvent::Created { draft, .. } => {
                self.status = Some(S::Draft);
                self.draft = Some(draft.clone());
            }
            InitiativeEvent::Scheduled => self.status = Some(S::Scheduled),
            InitiativeEvent::Started => self.status = Some(S::InProgress),
            InitiativeEvent::RiskFlagged { .. } => self.at_risk = true,
            InitiativeEvent::RiskCleared => self.at_risk = false,
            InitiativeEvent::Completed => {
                self.status = Some(S::Completed);
                self.at_risk = false;
            }
            InitiativeEvent::Cancelled { .. } => {
                self.status = Some(S::Cancelled);
                self.at_risk = false;
            }
            InitiativeEvent::Implements { opportunity } => {
                if let Some(draft) = &mut self.draft {
                    draft.implements.push(opportunity.clone());
                }
            }
            InitiativeEvent::MilestoneAdded {
                name,
                due,
                exit_criteria,
            } => self.milestones.push(Milestone {
                name: name.clone(),
                due: *due,
                exit_criteria: exit_criteria.clone(),
                status: MilestoneStatus::Open,
            }),
            InitiativeEvent::MilestoneMet { name, .. } => {
                if let Some(m) = self.milestones.iter_mut().find(|m| &m.name == name) {
                    m.status = MilestoneStatus::Met;
                }
            }
            InitiativeEvent::MilestoneMissed { name } => {
                if let Some(m) = self.milestones.iter_mut().find(|m| &m.name == name) {
                    m.status = MilestoneStatus::Missed;
                }
            }
        }
    }
}
