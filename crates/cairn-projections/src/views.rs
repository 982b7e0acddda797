//! The read models: one view per entity, as stored in sled (postcard) and returned by queries.
//! No view holds personal data: a feedback item's text and submitter stay sealed in the ledger,
//! and the view records the position of the record that holds them.

use cairn_domain::decision::DecisionKind;
use cairn_domain::feedback::{FeedbackSource, FeedbackStatus};
use cairn_domain::initiative::{InitiativeStatus, MilestoneStatus};
use cairn_domain::opportunity::{OpportunityStatus, Size};
use cairn_domain::signal::Observation;
use cairn_domain::{Edge, EntityId, EntityRef, PrincipalId, Team, Time, Visibility};
use cairn_ledger::{Position, StreamVersion};
use serde::{Deserialize, Serialize};

/// A feedback item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedbackView {
    /// Its id.
    pub id: EntityId,
    /// The team it is about.
    pub team: Team,
    /// Where it came from.
    pub source: FeedbackSource,
    /// Free tags.
    pub tags: Vec<String>,
    /// Business outcome tags.
    pub outcome_tags: Vec<String>,
    /// Who may see it.
    pub visibility: Visibility,
    /// Its state.
    pub status: FeedbackStatus,
    /// When it was received.
    pub received_at: Time,
    /// The record holding its (sealed) text and submitter.
    pub received_position: Position,
    /// The opportunities it is evidence for.
    pub opportunities: Vec<EntityId>,
    /// Why it was discarded.
    pub discard_reason: Option<String>,
    /// Its stream's version after the last record that changed it (the expected version of a
    /// conditional command).
    pub stream_version: StreamVersion,
    /// The last record that changed it.
    pub last_position: Position,
}

/// A signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalView {
    /// Its id.
    pub id: EntityId,
    /// What it observed.
    pub observation: Observation,
    /// When it was recorded.
    pub recorded_at: Time,
    /// Its record.
    pub position: Position,
}

/// Why and by which rule an opportunity aged out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgedOutView {
    /// The opportunity.
    pub opportunity: EntityId,
    /// Its title.
    pub title: String,
    /// Its team.
    pub team: Team,
    /// The rule.
    pub rule: String,
    /// The rule's version.
    pub rule_version: u32,
    /// Why the rule held.
    pub reason: String,
    /// The `opportunity.aged_out` record.
    pub position: Position,
    /// When (the domain time of the sweep).
    pub at: Time,
}

/// An opportunity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpportunityView {
    /// Its id.
    pub id: EntityId,
    /// The title.
    pub title: String,
    /// The problem statement.
    pub problem: String,
    /// The owner.
    pub owner: PrincipalId,
    /// The owning team.
    pub team: Team,
    /// The rough size.
    pub size: Option<Size>,
    /// Business outcome tags.
    pub outcome_tags: Vec<String>,
    /// Who may see it.
    pub visibility: Visibility,
    /// Its state.
    pub status: OpportunityStatus,
    /// The canonical opportunity, when a duplicate.
    pub canonical: Option<EntityId>,
    /// Why it was declined.
    pub decline_reason: Option<String>,
    /// The decision that accepted or declined it.
    pub decision: Option<EntityId>,
    /// When a snooze ends.
    pub snoozed_until: Option<Time>,
    /// Why it aged out, while aged out.
    pub aged_out: Option<AgedOutView>,
    /// The signal that verified its outcome, once judged with one.
    pub outcome_signal: Option<EntityId>,
    /// Pieces of evidence (feedback and signals) attached, its own and absorbed from duplicates;
    /// [`crate::Projections::evidence`] lists them.
    pub evidence: u64,
    /// When it was created or last received evidence (what aging rules measure).
    pub last_evidence_at: Time,
    /// Distinct voters.
    pub voters: u64,
    /// Sum of the latest vote weights.
    pub vote_weight: u64,
    /// The latest score.
    pub score: Option<f64>,
    /// The `opportunity.scored` record of that score.
    pub score_position: Option<Position>,
    /// When created.
    pub created_at: Time,
    /// The `opportunity.created` record.
    pub created_position: Position,
    /// Its stream's version after the last record that changed it.
    pub stream_version: StreamVersion,
    /// The last record that changed it.
    pub last_position: Position,
}

/// A decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionView {
    /// Its id.
    pub id: EntityId,
    /// What kind.
    pub kind: DecisionKind,
    /// The title.
    pub title: String,
    /// The owning team.
    pub team: Team,
    /// The situation.
    pub context: String,
    /// The option chosen.
    pub outcome: String,
    /// Status name: proposed, accepted, rejected, deprecated, superseded.
    pub status: String,
    /// The decision that superseded it.
    pub superseded_by: Option<EntityId>,
    /// Why it was rejected or deprecated.
    pub status_reason: Option<String>,
    /// Who decides.
    pub deciders: Vec<PrincipalId>,
    /// What it decides on.
    pub subjects: Vec<EntityRef>,
    /// The decision it replaces.
    pub supersedes: Option<EntityId>,
    /// Who may see it.
    pub visibility: Visibility,
    /// When proposed.
    pub proposed_at: Time,
    /// When accepted.
    pub decided_at: Option<Time>,
    /// Who accepted or rejected it.
    pub decided_by: Option<PrincipalId>,
    /// The `decision.proposed` record.
    pub proposed_position: Position,
    /// Its stream's version after the last record that changed it.
    pub stream_version: StreamVersion,
    /// The last record that changed it.
    pub last_position: Position,
}

/// A milestone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MilestoneView {
    /// Its name.
    pub name: String,
    /// When due.
    pub due: Time,
    /// What must hold.
    pub exit_criteria: String,
    /// Its state.
    pub status: MilestoneStatus,
    /// The signal that verified it, if met with one.
    pub signal: Option<EntityId>,
    /// The record that met or missed it.
    pub closed_position: Option<Position>,
}

/// An initiative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitiativeView {
    /// Its id.
    pub id: EntityId,
    /// The title.
    pub title: String,
    /// The goal.
    pub goal: String,
    /// Its owners.
    pub owners: Vec<PrincipalId>,
    /// The owning team.
    pub team: Team,
    /// The target.
    pub target: String,
    /// Business outcome tags.
    pub outcome_tags: Vec<String>,
    /// Who may see it.
    pub visibility: Visibility,
    /// Its state.
    pub status: InitiativeStatus,
    /// Flagged at risk.
    pub at_risk: bool,
    /// Why at risk, cancelled.
    pub status_reason: Option<String>,
    /// When it starts.
    pub start: Time,
    /// When it should be done.
    pub target_date: Time,
    /// The opportunities it implements.
    pub implements: Vec<EntityId>,
    /// Its milestones.
    pub milestones: Vec<MilestoneView>,
    /// The `initiative.created` record.
    pub created_position: Position,
    /// Its stream's version after the last record that changed it.
    pub stream_version: StreamVersion,
    /// The last record that changed it.
    pub last_position: Position,
}

/// One place in a ranking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    /// 1-based rank.
    pub rank: u64,
    /// The opportunity.
    pub id: EntityId,
    /// Its title.
    pub title: String,
    /// Its team.
    pub team: Team,
    /// Its state.
    pub status: OpportunityStatus,
    /// Its score.
    pub score: f64,
    /// The `opportunity.scored` record of that score.
    pub score_position: Position,
}

/// An edge and the record that first recorded it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EdgeView {
    /// The edge.
    pub edge: Edge,
    /// The first record that named it.
    pub position: Position,
}

/// An answer and the ledger position it reflects.
#[derive(Clone, Debug, PartialEq)]
pub struct AtPosition<T> {
    /// The answer.
    pub value: T,
    /// Every record up to this position, and none after, is reflected.
    pub position: Position,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The token for the next page; `None` on the last.
    pub next_page_token: Option<String>,
}

/// What changes in an opportunity after its creation: one of these is stored per record of the
/// opportunity, so an answer as of any position is exact, while the title, problem and the rest
/// of the draft (which never change) are stored once. A vote costs a few dozen bytes of history,
/// not a copy of a 16 KiB problem statement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct OpportunityState {
    pub(crate) status: OpportunityStatus,
    pub(crate) canonical: Option<EntityId>,
    pub(crate) decline_reason: Option<String>,
    pub(crate) decision: Option<EntityId>,
    pub(crate) snoozed_until: Option<Time>,
    pub(crate) aged_out: Option<AgedOutView>,
    pub(crate) outcome_signal: Option<EntityId>,
    pub(crate) evidence: u64,
    pub(crate) last_evidence_at: Time,
    pub(crate) voters: u64,
    pub(crate) vote_weight: u64,
    pub(crate) score: Option<f64>,
    pub(crate) score_position: Option<Position>,
    pub(crate) stream_version: StreamVersion,
    pub(crate) last_position: Position,
}

impl OpportunityView {
    pub(crate) fn state(&self) -> OpportunityState {
        OpportunityState {
            status: self.status,
            canonical: self.canonical.clone(),
            decline_reason: self.decline_reason.clone(),
            decision: self.decision.clone(),
            snoozed_until: self.snoozed_until,
            aged_out: self.aged_out.clone(),
            outcome_signal: self.outcome_signal.clone(),
            evidence: self.evidence,
            last_evidence_at: self.last_evidence_at,
            voters: self.voters,
            vote_weight: self.vote_weight,
            score: self.score,
            score_position: self.score_position,
            stream_version: self.stream_version,
            last_position: self.last_position,
        }
    }

    pub(crate) fn with_state(self, state: OpportunityState) -> OpportunityView {
        OpportunityView {
            status: state.status,
            canonical: state.canonical,
            decline_reason: state.decline_reason,
            decision: state.decision,
            snoozed_until: state.snoozed_until,
            aged_out: state.aged_out,
            outcome_signal: state.outcome_signal,
            evidence: state.evidence,
            last_evidence_at: state.last_evidence_at,
            voters: state.voters,
            vote_weight: state.vote_weight,
            score: state.score,
            score_position: state.score_position,
            stream_version: state.stream_version,
            last_position: state.last_position,
            ..self
        }
    }
}

/// An entry of the ranking index: what a ranking answer shows besides the score and id (which
/// are in the key), so the top of a ranking is read without touching the views.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RankEntry {
    pub(crate) title: String,
    pub(crate) team: Team,
    pub(crate) status: OpportunityStatus,
    pub(crate) score_position: Position,
}
