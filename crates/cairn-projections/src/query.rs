//! The questions the read models answer, each as of a position (the applied one by default) and
//! each stamped with the position it reflects.
//!
//! As of: every view records the last position that changed it, and every view a record replaced
//! is kept in the entity's history, keyed by the position of the record that made it. The view as
//! of `P` is the current view when it did not change after `P`, and otherwise the newest history
//! entry at or before `P` (one range lookup and one chunk decode). Histories,
//! edges and aged-out entries carry their positions and are filtered by them. Answers are
//! therefore exact for their stamp even while the follower writes new batches. The ranking of
//! "now" reads a score-ordered index that is not versioned; it is read under a write sequence
//! check and falls back to the versioned scan if a batch lands meanwhile.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cairn_domain::decision::DecisionKind;
use cairn_domain::feedback::{FeedbackSource, FeedbackStatus};
use cairn_domain::initiative::InitiativeStatus;
use cairn_domain::opportunity::OpportunityStatus;
use cairn_domain::{Edge, EntityId, EntityKind, EntityRef, PrincipalId, Relation, Team, Time};
use cairn_ledger::Position;

use crate::Projections;
use crate::apply::{
    Extra, History, HistoryChunk, StoredEdge, StoredView, Versioned, decode, decode_extra,
    decode_view,
};
use crate::error::ProjectionError;
use crate::keys::{self, EdgeEnd};
use crate::views::{
    AgedOutView, AtPosition, DecisionView, EdgeView, FeedbackView, InitiativeView, OpportunityView,
    Page, RankEntry, Ranked, SignalView,
};

/// Largest page of a list, and largest `limit` of a ranking.
pub const PAGE_SIZE_MAX: usize = 500;
/// Deepest lineage walk, in edges from the root.
pub const LINEAGE_DEPTH_MAX: usize = 16;
/// Most entities in one lineage graph.
pub const GRAPH_NODES_MAX: usize = 10_000;
/// Longest page token, in bytes.
pub const PAGE_TOKEN_BYTES_MAX: usize = 64;

/// A page to read: its size and the token of the previous page's answer.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    /// Items per page, 1 to [`PAGE_SIZE_MAX`].
    pub size: usize,
    /// `None` for the first page; then the previous answer's `next_page_token`. A token pins the
    /// position of the first page, so later pages neither skip nor repeat items while new
    /// records arrive; it overrides `as_of`.
    pub token: Option<String>,
}

/// Which way a lineage walk goes (see [`RELATION_DIRECTIONS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Towards what the root came from.
    Upstream,
    /// Towards what came of it.
    Downstream,
    /// Both.
    Both,
}

/// Which end of an edge is upstream (what the other end came from).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// The `from` end: the edge points downstream.
    From,
    /// The `to` end: the edge points upstream.
    To,
}

/// The upstream end of every relation, in one table:
///
/// | relation | edge | upstream |
/// |---|---|---|
/// | `evidence_for` | feedback or signal -> opportunity | the evidence (`from`) |
/// | `duplicate_of` | duplicate -> canonical opportunity | the duplicate (`from`): its evidence and votes flowed into the canonical one |
/// | `decided_by` | opportunity -> decision | the opportunity (`from`) |
/// | `implements` | initiative -> opportunity | the opportunity (`to`) |
/// | `supersedes` | newer decision -> older decision | the older decision (`to`) |
/// | `verifies` | signal -> opportunity or initiative | the opportunity or initiative (`to`): the signal is the measured outcome of the work |
/// | `derived_from` | opportunity -> signal | the signal (`to`): the score was computed from it |
///
/// So downstream of a feedback item is its opportunities, their decisions (and the decisions
/// that superseded those), the initiatives implementing them and the signals that verified them;
/// upstream of a decision is the opportunities it decided, their duplicates, feedback and
/// signals, and the decisions it superseded.
pub const RELATION_DIRECTIONS: [(Relation, Upstream); 7] = [
    (Relation::EvidenceFor, Upstream::From),
    (Relation::DuplicateOf, Upstream::From),
    (Relation::DecidedBy, Upstream::From),
    (Relation::Implements, Upstream::To),
    (Relation::Supersedes, Upstream::To),
    (Relation::Verifies, Upstream::To),
    (Relation::DerivedFrom, Upstream::To),
];

/// The (upstream, downstream) ends of an edge, by [`RELATION_DIRECTIONS`].
pub fn direction_of(edge: &Edge) -> (&EntityRef, &EntityRef) {
    let upstream = RELATION_DIRECTIONS
        .iter()
        .find(|(relation, _)| *relation == edge.relation)
        .map_or(Upstream::From, |(_, upstream)| *upstream);
    match upstream {
        Upstream::From => (&edge.from, &edge.to),
        Upstream::To => (&edge.to, &edge.from),
    }
}

/// A lineage graph around a root.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// The entities reached, each with its distance from the root in edges, in the order the
    /// breadth-first walk reached them (the root first, at 0).
    pub nodes: Vec<(EntityRef, usize)>,
    /// The edges walked, each between two of the nodes, ordered by position then edge.
    pub edges: Vec<EdgeView>,
    /// True when the node limit cut the walk short.
    pub truncated: bool,
}

/// Filters of the feedback list (all optional, combined with and).
#[derive(Clone, Debug, Default)]
pub struct FeedbackFilter {
    /// The team.
    pub team: Option<Team>,
    /// The state.
    pub status: Option<FeedbackStatus>,
    /// The source.
    pub source: Option<FeedbackSource>,
    /// An outcome tag it carries.
    pub outcome_tag: Option<String>,
    /// Received at or after.
    pub received_from: Option<Time>,
    /// Received before.
    pub received_to: Option<Time>,
}

/// Filters of the decision list (all optional, combined with and).
#[derive(Clone, Debug, Default)]
pub struct DecisionFilter {
    /// Status name (proposed, accepted, rejected, deprecated, superseded).
    pub status: Option<String>,
    /// The kind.
    pub kind: Option<DecisionKind>,
    /// The team.
    pub team: Option<Team>,
    /// A decider.
    pub decider: Option<PrincipalId>,
    /// Proposed at or after.
    pub from: Option<Time>,
    /// Proposed before.
    pub to: Option<Time>,
    /// A subject it decides on.
    pub subject: Option<EntityRef>,
}

/// Filters of the initiative list (all optional, combined with and).
#[derive(Clone, Debug, Default)]
pub struct InitiativeFilter {
    /// The state.
    pub status: Option<InitiativeStatus>,
    /// The team.
    pub team: Option<Team>,
    /// Flagged at risk (or not).
    pub at_risk: Option<bool>,
    /// An owner.
    pub owner: Option<PrincipalId>,
    /// An opportunity it implements.
    pub opportunity: Option<EntityId>,
}

fn invalid(field: &'static str, reason: String) -> ProjectionError {
    ProjectionError::InvalidArgument { field, reason }
}

fn check_size(field: &'static str, size: usize) -> Result<(), ProjectionError> {
    if size == 0 || size > PAGE_SIZE_MAX {
        return Err(invalid(
            field,
            format!("must be 1 to {PAGE_SIZE_MAX} (PAGE_SIZE_MAX), got {size}"),
        ));
    }
    Ok(())
}

/// Orders edges by the position that first recorded them, then by the edge.
fn sort_edges(edges: &mut [EdgeView]) {
    edges.sort_by(|a, b| (a.position, &a.edge).cmp(&(b.position, &b.edge)));
}

fn at<T>(value: T, position: Position) -> AtPosition<T> {
    AtPosition { value, position }
}

impl Projections {
    /// The position an answer as of `as_of` reflects: the applied position by default; a position
    /// beyond it is refused with [`ProjectionError::NotYetApplied`].
    pub fn resolve(&self, as_of: Option<Position>) -> Result<Position, ProjectionError> {
        let applied = self.applied();
        match as_of {
            None => Ok(applied),
            Some(wanted) if wanted > applied => {
                Err(ProjectionError::NotYetApplied { wanted, applied })
            }
            Some(wanted) => Ok(wanted),
        }
    }

    /// The current view of an entity and its stored value (for the [`Extra`]).
    fn current<T: StoredView>(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(T, sled::IVec)>, ProjectionError> {
        self.tree
            .get(keys::current(T::KIND, tenant, id))?
            .map(|bytes| Ok((decode_view::<T>(&bytes)?, bytes)))
            .transpose()
    }

    /// The [`Extra`] of an entity (empty when it does not exist).
    fn extra(&self, kind: EntityKind, tenant: &str, id: &str) -> Result<Extra, ProjectionError> {
        match self.tree.get(keys::current(kind, tenant, id))? {
            Some(bytes) => decode_extra(&bytes),
            None => Ok(Extra::default()),
        }
    }

    /// The view as of `at`, given the current one; `None` if it did not exist yet.
    fn view_at<T: Versioned>(
        &self,
        tenant: &str,
        id: &str,
        current: Option<(T, sled::IVec)>,
        at: Position,
    ) -> Result<Option<T>, ProjectionError> {
        match current {
            None => Ok(None),
            Some((view, _)) if view.last_position() <= at => Ok(Some(view)),
            Some((view, bytes)) => {
                let tail =
                    std::mem::take(&mut decode_extra(&bytes)?.tails[History::Versions as usize]);
                let version = match tail.first() {
                    Some((first, _)) if *first <= at.0 => tail
                        .into_iter()
                        .take_while(|(position, _)| *position <= at.0)
                        .last()
                        .map(|(_, version)| version),
                    _ => self
                        .history_last(keys::version_prefix(T::KIND, tenant, id), at)?
                        .map(|(_, version)| version),
                };
                match version {
                    Some(version) => Ok(Some(T::at_version(view, &version)?)),
                    None => Ok(None),
                }
            }
        }
    }

    fn entity<T: Versioned>(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Option<T>>, ProjectionError> {
        let position = self.resolve(as_of)?;
        let current = self.current::<T>(tenant, id)?;
        Ok(at(self.view_at(tenant, id, current, position)?, position))
    }

    /// Walks the entities of a kind created after `after` and up to `at`, in ledger order, as of
    /// `at`, until `visit` says stop. `visit` gets the creation position and the view.
    fn walk<T: Versioned>(
        &self,
        tenant: &str,
        after: Position,
        at: Position,
        mut visit: impl FnMut(Position, T) -> bool,
    ) -> Result<(), ProjectionError> {
        if after >= at {
            return Ok(());
        }
        let prefix = keys::created_prefix(T::KIND, tenant);
        let from = after.next();
        // The chunk holding `from` may start before it.
        let start = match self
            .tree
            .range(prefix.clone()..=keys::with_position(prefix.clone(), from))
            .next_back()
        {
            Some(entry) => entry?.0.to_vec(),
            None => prefix.clone(),
        };
        let end = keys::with_position(prefix, at);
        for chunk in self.tree.range(start..=end) {
            let chunk: Vec<(u64, String)> = decode(&chunk?.1)?;
            for (created, id) in chunk {
                let created = Position(created);
                if created < from {
                    continue;
                }
                if created > at {
                    return Ok(());
                }
                let current = self.current::<T>(tenant, &id)?;
                let view = self.view_at(tenant, &id, current, at)?.ok_or_else(|| {
                    ProjectionError::Corrupt(format!(
                        "{}/{id} created at {created} has no view as of {at}",
                        T::KIND
                    ))
                })?;
                if !visit(created, view) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Every entity of a kind in a tenant as of `at`, in ledger order of creation.
    fn all<T: Versioned>(&self, tenant: &str, at: Position) -> Result<Vec<T>, ProjectionError> {
        let mut views = Vec::new();
        self.walk(tenant, Position::ZERO, at, |_, view| {
            views.push(view);
            true
        })?;
        Ok(views)
    }

    /// One page of the entities of a kind that pass `keep`, oldest first.
    fn list<T: Versioned>(
        &self,
        tenant: &str,
        as_of: Option<Position>,
        page: &PageRequest,
        keep: impl Fn(&T) -> bool,
    ) -> Result<AtPosition<Page<T>>, ProjectionError> {
        check_size("page_size", page.size)?;
        let (position, after) = match &page.token {
            None => (self.resolve(as_of)?, Position::ZERO),
            Some(token) => self.parse_token(token)?,
        };
        let mut items: Vec<(Position, T)> = Vec::with_capacity(page.size + 1);
        self.walk(tenant, after, position, |created, view: T| {
            if keep(&view) {
                items.push((created, view));
            }
            items.len() <= page.size
        })?;
        let next_page_token = if items.len() > page.size {
            items.truncate(page.size);
            items
                .last()
                .map(|(created, _)| format!("{}.{}", position.0, created.0))
        } else {
            None
        };
        Ok(at(
            Page {
                items: items.into_iter().map(|(_, view)| view).collect(),
                next_page_token,
            },
            position,
        ))
    }

    /// A token: `position.after`, the position of the first page and the creation position of
    /// the last item returned.
    fn parse_token(&self, token: &str) -> Result<(Position, Position), ProjectionError> {
        let refuse = || invalid("page_token", "not a token this server issued".into());
        if token.len() > PAGE_TOKEN_BYTES_MAX {
            return Err(refuse());
        }
        let (position, after) = token.split_once('.').ok_or_else(refuse)?;
        let position = Position(position.parse().map_err(|_| refuse())?);
        let after = Position(after.parse().map_err(|_| refuse())?);
        if position > self.applied() || after > position {
            return Err(refuse());
        }
        Ok((position, after))
    }

    /// A feedback item (its text and submitter stay in the ledger, at `received_position`).
    pub fn feedback(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Option<FeedbackView>>, ProjectionError> {
        self.entity(tenant, id, as_of)
    }

    /// A signal.
    pub fn signal(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Option<SignalView>>, ProjectionError> {
        self.entity(tenant, id, as_of)
    }

    /// An opportunity.
    pub fn opportunity(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Option<OpportunityView>>, ProjectionError> {
        self.entity(tenant, id, as_of)
    }

    /// A decision.
    pub fn decision(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Option<DecisionView>>, ProjectionError> {
        self.entity(tenant, id, as_of)
    }

    /// An initiative.
    pub fn initiative(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Option<InitiativeView>>, ProjectionError> {
        self.entity(tenant, id, as_of)
    }

    /// Feedback items, in the order received.
    pub fn list_feedback(
        &self,
        tenant: &str,
        filter: &FeedbackFilter,
        as_of: Option<Position>,
        page: &PageRequest,
    ) -> Result<AtPosition<Page<FeedbackView>>, ProjectionError> {
        self.list(tenant, as_of, page, |v: &FeedbackView| {
            filter.team.as_ref().is_none_or(|t| &v.team == t)
                && filter.status.is_none_or(|s| v.status == s)
                && filter.source.is_none_or(|s| v.source == s)
                && filter
                    .outcome_tag
                    .as_ref()
                    .is_none_or(|t| v.outcome_tags.contains(t))
                && filter.received_from.is_none_or(|t| v.received_at >= t)
                && filter.received_to.is_none_or(|t| v.received_at < t)
        })
    }

    /// Opportunities in any of `statuses` (all when empty) and of `team`, in the order created.
    pub fn list_opportunities(
        &self,
        tenant: &str,
        statuses: &[OpportunityStatus],
        team: Option<&Team>,
        as_of: Option<Position>,
        page: &PageRequest,
    ) -> Result<AtPosition<Page<OpportunityView>>, ProjectionError> {
        self.list(tenant, as_of, page, |v: &OpportunityView| {
            (statuses.is_empty() || statuses.contains(&v.status))
                && team.is_none_or(|t| &v.team == t)
        })
    }

    /// Decisions, in the order proposed.
    pub fn list_decisions(
        &self,
        tenant: &str,
        filter: &DecisionFilter,
        as_of: Option<Position>,
        page: &PageRequest,
    ) -> Result<AtPosition<Page<DecisionView>>, ProjectionError> {
        self.list(tenant, as_of, page, |v: &DecisionView| {
            filter.status.as_ref().is_none_or(|s| &v.status == s)
                && filter.kind.is_none_or(|k| v.kind == k)
                && filter.team.as_ref().is_none_or(|t| &v.team == t)
                && filter
                    .decider
                    .as_ref()
                    .is_none_or(|d| v.deciders.contains(d))
                && filter.from.is_none_or(|t| v.proposed_at >= t)
                && filter.to.is_none_or(|t| v.proposed_at < t)
                && filter
                    .subject
                    .as_ref()
                    .is_none_or(|s| v.subjects.contains(s))
        })
    }

    /// Initiatives, in the order created.
    pub fn list_initiatives(
        &self,
        tenant: &str,
        filter: &InitiativeFilter,
        as_of: Option<Position>,
        page: &PageRequest,
    ) -> Result<AtPosition<Page<InitiativeView>>, ProjectionError> {
        self.list(tenant, as_of, page, |v: &InitiativeView| {
            filter.status.is_none_or(|s| v.status == s)
                && filter.team.as_ref().is_none_or(|t| &v.team == t)
                && filter.at_risk.is_none_or(|r| v.at_risk == r)
                && filter.owner.as_ref().is_none_or(|o| v.owners.contains(o))
                && filter
                    .opportunity
                    .as_ref()
                    .is_none_or(|o| v.implements.contains(o))
        })
    }

    /// The ranking of a tenant's (or one team's) ranked opportunities: in a ranked status
    /// ([`OpportunityStatus::is_ranked`]: open and not snoozed) and scored, by score descending
    /// then id ascending; ranks are 1-based within the team when `team` is given. `offset` and
    /// `limit` (1 to [`PAGE_SIZE_MAX`]) select a slice. Now, it reads a score-ordered index, so
    /// the cost is `offset + limit` entries whatever the tenant's size; as of a past position it
    /// scans the tenant's opportunities.
    pub fn ranking(
        &self,
        tenant: &str,
        team: Option<&Team>,
        as_of: Option<Position>,
        offset: usize,
        limit: usize,
    ) -> Result<AtPosition<Vec<Ranked>>, ProjectionError> {
        check_size("limit", limit)?;
        let position = self.resolve(as_of)?;
        if position == self.applied()
            && let Some((ranked, now)) =
                self.read_now(|_| self.ranking_now(tenant, team, offset, limit))?
            && now == position
        {
            return Ok(at(ranked, position));
        }
        let ranked = self
            .ranked_at(tenant, team, position)?
            .into_iter()
            .enumerate()
            .skip(offset)
            .take(limit)
            .map(|(index, (score, view))| Ranked {
                rank: index as u64 + 1,
                score,
                score_position: view.score_position.unwrap_or(Position::ZERO),
                id: view.id,
                title: view.title,
                team: view.team,
                status: view.status,
            })
            .collect();
        Ok(at(ranked, position))
    }

    fn ranking_now(
        &self,
        tenant: &str,
        team: Option<&Team>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Ranked>, ProjectionError> {
        let prefix = keys::ranking_prefix(tenant, team.map(Team::as_str));
        let mut ranked = Vec::with_capacity(limit);
        for (index, entry) in self
            .tree
            .scan_prefix(&prefix)
            .enumerate()
            .skip(offset)
            .take(limit)
        {
            let (key, value) = entry?;
            let (score, id) = keys::ranking_parts(&key, prefix.len())
                .ok_or_else(|| ProjectionError::Corrupt("a ranking key does not parse".into()))?;
            let entry: RankEntry = decode(&value)?;
            ranked.push(Ranked {
                rank: index as u64 + 1,
                id: EntityId::new(id)
                    .map_err(|e| ProjectionError::Corrupt(format!("a ranked id: {e}")))?,
                title: entry.title,
                team: entry.team,
                status: entry.status,
                score,
                score_position: entry.score_position,
            });
        }
        Ok(ranked)
    }

    /// The ranked opportunities as of `at`, in ranking order, with their scores.
    fn ranked_at(
        &self,
        tenant: &str,
        team: Option<&Team>,
        at: Position,
    ) -> Result<Vec<(f64, OpportunityView)>, ProjectionError> {
        let mut ranked: Vec<(f64, OpportunityView)> = Vec::new();
        self.walk(tenant, Position::ZERO, at, |_, view: OpportunityView| {
            if let Some(score) = view.score
                && view.status.is_ranked()
                && team.is_none_or(|t| &view.team == t)
            {
                ranked.push((score, view));
            }
            true
        })?;
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        Ok(ranked)
    }

    /// The rank (1-based) of one opportunity in its tenant's ranking as of a position; `None`
    /// when it is not ranked. Now, it counts the index entries above it (the cost is its rank).
    pub fn rank_of(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Option<u64>>, ProjectionError> {
        let position = self.resolve(as_of)?;
        let Some(view) = self.opportunity(tenant, id, Some(position))?.value else {
            return Ok(at(None, position));
        };
        let (Some(score), true) = (view.score, view.status.is_ranked()) else {
            return Ok(at(None, position));
        };
        if position == self.applied()
            && let Some((rank, now)) = self.read_now(|_| {
                let start = keys::ranking_prefix(tenant, None);
                let own = keys::ranking(tenant, None, score, id);
                let mut above = 0u64;
                for entry in self.tree.range(start..own) {
                    entry?;
                    above += 1;
                }
                Ok(above + 1)
            })?
            && now == position
        {
            return Ok(at(Some(rank), position));
        }
        let rank = self
            .ranked_at(tenant, None, position)?
            .iter()
            .position(|(_, other)| other.id.as_str() == id)
            .map(|index| index as u64 + 1);
        Ok(at(rank, position))
    }

    /// The scores of an opportunity, oldest first: the positions of its `opportunity.scored`
    /// records (the snapshots, with every input, are in the ledger) and their values.
    pub fn score_history(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<(Position, f64)>>, ProjectionError> {
        let position = self.resolve(as_of)?;
        let mut scores = Vec::new();
        let tail = std::mem::take(
            &mut self.extra(EntityKind::Opportunity, tenant, id)?.tails[History::Scores as usize],
        );
        for (at_position, bytes) in self.history(keys::score_prefix(tenant, id), tail, position)? {
            let bits: [u8; 8] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| ProjectionError::Corrupt("a score is not 8 bytes".into()))?;
            scores.push((at_position, f64::from_bits(u64::from_be_bytes(bits))));
        }
        Ok(at(scores, position))
    }

    /// The statuses an opportunity went through, oldest first: the position of each record that
    /// changed it (creation included) and the status it entered. Who made the change, when and
    /// under which policy bundle is in that record's envelope.
    pub fn status_history(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<(Position, OpportunityStatus)>>, ProjectionError> {
        let position = self.resolve(as_of)?;
        let mut statuses = Vec::new();
        let tail = std::mem::take(
            &mut self.extra(EntityKind::Opportunity, tenant, id)?.tails[History::Statuses as usize],
        );
        for (at_position, bytes) in self.history(keys::status_prefix(tenant, id), tail, position)? {
            statuses.push((at_position, decode(&bytes)?));
        }
        Ok(at(statuses, position))
    }

    /// The entries up to `at` of the history with chunks under `prefix` and newest entries
    /// `tail` (from the entity's [`Extra`]), oldest first.
    fn history(
        &self,
        prefix: Vec<u8>,
        tail: HistoryChunk,
        at: Position,
    ) -> Result<Vec<(Position, Vec<u8>)>, ProjectionError> {
        let end = keys::with_position(prefix.clone(), at);
        let mut entries = Vec::new();
        for chunk in self.tree.range(prefix..=end) {
            let chunk: HistoryChunk = decode(&chunk?.1)?;
            entries.extend(
                chunk
                    .into_iter()
                    .take_while(|(position, _)| *position <= at.0),
            );
        }
        entries.extend(
            tail.into_iter()
                .take_while(|(position, _)| *position <= at.0),
        );
        Ok(entries
            .into_iter()
            .map(|(position, entry)| (Position(position), entry))
            .collect())
    }

    /// The newest entry of the history under `prefix` at or before `at`.
    fn history_last(
        &self,
        prefix: Vec<u8>,
        at: Position,
    ) -> Result<Option<(Position, Vec<u8>)>, ProjectionError> {
        let end = keys::with_position(prefix.clone(), at);
        let Some(chunk) = self.tree.range(prefix..=end).next_back() else {
            return Ok(None);
        };
        let chunk: HistoryChunk = decode(&chunk?.1)?;
        Ok(chunk
            .into_iter()
            .take_while(|(position, _)| *position <= at.0)
            .last()
            .map(|(position, entry)| (Position(position), entry)))
    }

    /// Opportunities that aged out with a ledger recording time in `[from, to)` (the sweep's
    /// time: the `opportunity.aged_out` event carries none of its own), in ledger order, each
    /// with its rule and reason, including those since reopened (one entry per aging).
    pub fn aged_out(
        &self,
        tenant: &str,
        from: Time,
        to: Time,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<AgedOutView>>, ProjectionError> {
        let position = self.resolve(as_of)?;
        let prefix = keys::aged_prefix(tenant);
        let mut start = prefix.clone();
        start.extend_from_slice(&keys::time_ascending(from.0));
        let mut end = prefix;
        end.extend_from_slice(&keys::time_ascending(to.0));
        let mut aged = Vec::new();
        for entry in self.tree.range(start..end) {
            let view: AgedOutView = decode(&entry?.1)?;
            if view.position <= position {
                aged.push(view);
            }
        }
        Ok(at(aged, position))
    }

    /// Decisions superseded as of a position, with what superseded them (`superseded_by`), in
    /// the order they were superseded.
    pub fn superseded(
        &self,
        tenant: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<DecisionView>>, ProjectionError> {
        let position = self.resolve(as_of)?;
        let mut views: Vec<DecisionView> = self
            .all::<DecisionView>(tenant, position)?
            .into_iter()
            .filter(|v| v.superseded_by.is_some())
            .collect();
        views.sort_by_key(|v| v.last_position);
        Ok(at(views, position))
    }

    /// The edges at an entity recorded up to a position, both those that start there and those
    /// that end there, ordered by position then edge.
    pub fn edges(
        &self,
        tenant: &str,
        entity: &EntityRef,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<EdgeView>>, ProjectionError> {
        let position = self.resolve(as_of)?;
        let mut edges: Vec<EdgeView> = self
            .edges_around(tenant, entity, position)?
            .into_iter()
            .map(|(_, edge)| edge)
            .collect();
        sort_edges(&mut edges);
        Ok(at(edges, position))
    }

    /// The edges that start at an entity (`entity -relation-> other`), ordered by position.
    pub fn edges_from(
        &self,
        tenant: &str,
        entity: &EntityRef,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<EdgeView>>, ProjectionError> {
        let position = self.resolve(as_of)?;
        let mut edges = self.edges_at(EdgeEnd::From, tenant, entity, position)?;
        sort_edges(&mut edges);
        Ok(at(edges, position))
    }

    /// The edges that end at an entity (`other -relation-> entity`), ordered by position.
    pub fn edges_to(
        &self,
        tenant: &str,
        entity: &EntityRef,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<EdgeView>>, ProjectionError> {
        let position = self.resolve(as_of)?;
        let mut edges = self.edges_at(EdgeEnd::To, tenant, entity, position)?;
        sort_edges(&mut edges);
        Ok(at(edges, position))
    }

    /// The evidence of an opportunity (feedback items and signals, its own and absorbed from
    /// duplicates): its `evidence_for` edges, in the order first recorded.
    pub fn evidence(
        &self,
        tenant: &str,
        id: &EntityId,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<EdgeView>>, ProjectionError> {
        let opportunity = EntityRef::new(EntityKind::Opportunity, id.clone());
        let answer = self.edges_to(tenant, &opportunity, as_of)?;
        Ok(at(
            answer
                .value
                .into_iter()
                .filter(|e| e.edge.relation == Relation::EvidenceFor)
                .collect(),
            answer.position,
        ))
    }

    fn edges_at(
        &self,
        end: EdgeEnd,
        tenant: &str,
        entity: &EntityRef,
        at: Position,
    ) -> Result<Vec<EdgeView>, ProjectionError> {
        let mut edges = self.edges_around(tenant, entity, at)?;
        edges.retain(|(e, _)| *e == end);
        Ok(edges.into_iter().map(|(_, edge)| edge).collect())
    }

    /// The edges at an entity recorded up to `at`, each with the end the entity is at: those
    /// beside its view and those in its edge chunks.
    fn edges_around(
        &self,
        tenant: &str,
        entity: &EntityRef,
        at: Position,
    ) -> Result<Vec<(EdgeEnd, EdgeView)>, ProjectionError> {
        let mut stored = self.extra(entity.kind, tenant, entity.id.as_str())?.edges;
        for chunk in self
            .tree
            .scan_prefix(keys::edges_prefix(tenant, &entity.to_string()))
        {
            stored.extend(decode::<Vec<StoredEdge>>(&chunk?.1)?);
        }
        let mut edges = Vec::new();
        for (is_to, relation, far, position) in stored {
            let position = Position(position);
            if position > at {
                continue;
            }
            let corrupt = || ProjectionError::Corrupt("a stored edge does not parse".into());
            let relation = Relation::parse(&relation).ok_or_else(corrupt)?;
            let far = EntityRef::parse(&far).map_err(|_| corrupt())?;
            let (end, edge) = if is_to {
                (
                    EdgeEnd::To,
                    Edge {
                        from: far,
                        relation,
                        to: entity.clone(),
                    },
                )
            } else {
                (
                    EdgeEnd::From,
                    Edge {
                        from: entity.clone(),
                        relation,
                        to: far,
                    },
                )
            };
            edges.push((end, EdgeView { edge, position }));
        }
        Ok(edges)
    }

    /// A breadth-first walk from `root`, each entity once, to `depth` edges (1 to
    /// [`LINEAGE_DEPTH_MAX`]) and at most `max_nodes` entities (1 to [`GRAPH_NODES_MAX`]),
    /// following edges the way `direction` says ([`RELATION_DIRECTIONS`]). With
    /// [`Direction::Both`] it walks every edge, so it also reaches siblings (other feedback for
    /// the same opportunity).
    pub fn graph(
        &self,
        tenant: &str,
        root: &EntityRef,
        direction: Direction,
        depth: usize,
        max_nodes: usize,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Graph>, ProjectionError> {
        if depth == 0 || depth > LINEAGE_DEPTH_MAX {
            return Err(invalid(
                "depth",
                format!("must be 1 to {LINEAGE_DEPTH_MAX} (LINEAGE_DEPTH_MAX), got {depth}"),
            ));
        }
        if max_nodes == 0 || max_nodes > GRAPH_NODES_MAX {
            return Err(invalid(
                "max_nodes",
                format!("must be 1 to {GRAPH_NODES_MAX} (GRAPH_NODES_MAX), got {max_nodes}"),
            ));
        }
        let position = self.resolve(as_of)?;
        let mut seen: BTreeMap<EntityRef, usize> = BTreeMap::from([(root.clone(), 0)]);
        let mut nodes = vec![(root.clone(), 0)];
        let mut edges = BTreeSet::new();
        let mut queue = VecDeque::from([(root.clone(), 0usize)]);
        let mut truncated = false;
        while let Some((node, distance)) = queue.pop_front() {
            if distance == depth {
                continue;
            }
            let mut around: Vec<EdgeView> = self
                .edges_around(tenant, &node, position)?
                .into_iter()
                .map(|(_, edge)| edge)
                .collect();
            sort_edges(&mut around);
            for view in around {
                let (upstream, downstream) = direction_of(&view.edge);
                let next = match direction {
                    Direction::Upstream if downstream == &node => upstream,
                    Direction::Downstream if upstream == &node => downstream,
                    Direction::Both if upstream == &node => downstream,
                    Direction::Both => upstream,
                    _ => continue,
                };
                if !seen.contains_key(next) {
                    if seen.len() >= max_nodes {
                        truncated = true;
                        continue;
                    }
                    seen.insert(next.clone(), distance + 1);
                    nodes.push((next.clone(), distance + 1));
                    queue.push_back((next.clone(), distance + 1));
                }
                edges.insert(view);
            }
        }
        let mut edges: Vec<EdgeView> = edges.into_iter().collect();
        sort_edges(&mut edges);
        Ok(at(
            Graph {
                nodes,
                edges,
                truncated,
            },
            position,
        ))
    }
}
