//! The questions the read models answer, each as of a position (the applied one by default).
//!
//! Every view records the last position that changed it, and every change is also kept as a
//! version keyed by its position, so a view as of `P` is the current view when it did not change
//! after `P`, and otherwise the newest version at or before `P`. Answers are therefore exact for
//! their stamp even while the follower applies new batches.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cairn_domain::decision::DecisionKind;
use cairn_domain::feedback::{FeedbackSource, FeedbackStatus};
use cairn_domain::initiative::InitiativeStatus;
use cairn_domain::opportunity::OpportunityStatus;
use cairn_domain::{Edge, EntityId, EntityKind, EntityRef, PrincipalId, Relation, Team, Time};
use cairn_ledger::Position;
use serde::de::DeserializeOwned;

use crate::Projections;
use crate::apply::decode;
use crate::error::ProjectionError;
use crate::keys;
use crate::views::{
    AgedOutView, AtPosition, DecisionView, EdgeView, FeedbackView, InitiativeView, OpportunityView,
    Page, Ranked, SignalView,
};

/// Largest page.
pub const PAGE_SIZE_MAX: usize = 500;
/// Deepest lineage walk.
pub const LINEAGE_DEPTH_MAX: usize = 16;
/// Most nodes of one lineage graph.
pub const GRAPH_NODES_MAX: usize = 10_000;
/// Longest page token, in bytes.
pub const PAGE_TOKEN_BYTES_MAX: usize = 64;

/// A page to read: its size and the token of the previous page's answer.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    /// Items per page, 1 to [`PAGE_SIZE_MAX`].
    pub size: usize,
    /// `None` for the first page.
    pub token: Option<String>,
}

/// Which way a lineage walk goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Towards what the root came from.
    Upstream,
    /// Towards what came of it.
    Downstream,
    /// Both.
    Both,
}

/// Which end of an edge is upstream: for `evidence_for`, `duplicate_of` and `decided_by` the
/// `from` end (feedback, then opportunity, then decision); for `implements`, `supersedes`,
/// `verifies` and `derived_from` the `to` end (the opportunity before its initiative, the older
/// decision before the newer, the outcome before the signal that verifies it, the signal before
/// the score derived from it). Returns (upstream, downstream).
pub fn direction_of(edge: &Edge) -> (&EntityRef, &EntityRef) {
    match edge.relation {
        Relation::EvidenceFor | Relation::DuplicateOf | Relation::DecidedBy => {
            (&edge.from, &edge.to)
        }
        Relation::Implements
        | Relation::Supersedes
        | Relation::Verifies
        | Relation::DerivedFrom => (&edge.to, &edge.from),
    }
}

/// A lineage graph around a root.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// The entities reached, each with its distance from the root, nearest first (the root at 0).
    pub nodes: Vec<(EntityRef, usize)>,
    /// The edges between them.
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

/// Filters of the decision list.
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

/// Filters of the initiative list.
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

/// A view that knows the last position that changed it.
trait Versioned: DeserializeOwned {
    const KIND: EntityKind;
    fn last_position(&self) -> Position;
}

macro_rules! versioned {
    ($view:ty, $kind:expr, $field:ident) => {
        impl Versioned for $view {
            const KIND: EntityKind = $kind;
            fn last_position(&self) -> Position {
                self.$field
            }
        }
    };
}
versioned!(FeedbackView, EntityKind::Feedback, last_position);
versioned!(SignalView, EntityKind::Signal, position);
versioned!(OpportunityView, EntityKind::Opportunity, last_position);
versioned!(DecisionView, EntityKind::Decision, last_position);
versioned!(InitiativeView, EntityKind::Initiative, last_position);

impl Projections {
    /// The position an answer as of `as_of` reflects: the applied position by default; a position
    /// beyond it is refused.
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

    fn view_at<T: Versioned>(
        &self,
        tenant: &str,
        id: &str,
        current: Option<T>,
        at: Position,
    ) -> Result<Option<T>, ProjectionError> {
        match current {
            None => Ok(None),
            Some(view) if view.last_position() <= at => Ok(Some(view)),
            Some(_) => {
                let prefix = keys::version_prefix(T::KIND, tenant, id);
                let end = keys::with_position(prefix.clone(), at);
                match self.tree.range(prefix..=end).next_back() {
                    Some(entry) => Ok(Some(decode(&entry?.1)?)),
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
        let at = self.resolve(as_of)?;
        let current = self
            .tree
            .get(keys::current(T::KIND, tenant, id))?
            .map(|bytes| decode::<T>(&bytes))
            .transpose()?;
        Ok(AtPosition {
            value: self.view_at(tenant, id, current, at)?,
            position: at,
        })
    }

    /// Every entity of a kind in a tenant, as of `at`.
    fn all<T: Versioned>(&self, tenant: &str, at: Position) -> Result<Vec<T>, ProjectionError> {
        let prefix = keys::current_prefix(T::KIND, tenant);
        let mut views = Vec::new();
        for entry in self.tree.scan_prefix(&prefix) {
            let (key, bytes) = entry?;
            let id = std::str::from_utf8(&key[prefix.len()..key.len() - 1])
                .map_err(|_| ProjectionError::Corrupt("a view key is not text".into()))?;
            if let Some(view) = self.view_at(tenant, id, Some(decode::<T>(&bytes)?), at)? {
                views.push(view);
            }
        }
        Ok(views)
    }

    fn page<T>(
        &self,
        as_of: Option<Position>,
        page: &PageRequest,
        list: impl FnOnce(Position) -> Result<Vec<T>, ProjectionError>,
    ) -> Result<AtPosition<Page<T>>, ProjectionError> {
        if page.size == 0 || page.size > PAGE_SIZE_MAX {
            return Err(ProjectionError::InvalidArgument {
                field: "page_size",
                reason: format!("must be 1 to {PAGE_SIZE_MAX}, got {}", page.size),
            });
        }
        // A token pins the position of the first page, so pages do not shift under new records.
        let (offset, pinned) = match &page.token {
            None => (0, None),
            Some(token) => parse_token(token)?,
        };
        let at = self.resolve(pinned.or(as_of))?;
        let items = list(at)?;
        let end = (offset + page.size).min(items.len());
        let next_page_token = (end < items.len()).then(|| format!("{end}.{}", at.0));
        let items = items.into_iter().skip(offset).take(page.size).collect();
        Ok(AtPosition {
            value: Page {
                items,
                next_page_token,
            },
            position: at,
        })
    }

    /// A feedback item.
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

    /// Feedback items, oldest received first.
    pub fn list_feedback(
        &self,
        tenant: &str,
        filter: &FeedbackFilter,
        as_of: Option<Position>,
        page: &PageRequest,
    ) -> Result<AtPosition<Page<FeedbackView>>, ProjectionError> {
        self.page(as_of, page, |at| {
            let mut views: Vec<FeedbackView> = self
                .all::<FeedbackView>(tenant, at)?
                .into_iter()
                .filter(|v| filter.team.as_ref().is_none_or(|t| &v.team == t))
                .filter(|v| filter.status.is_none_or(|s| v.status == s))
                .filter(|v| filter.source.is_none_or(|s| v.source == s))
                .filter(|v| {
                    filter
                        .outcome_tag
                        .as_ref()
                        .is_none_or(|t| v.outcome_tags.contains(t))
                })
                .filter(|v| filter.received_from.is_none_or(|t| v.received_at >= t))
                .filter(|v| filter.received_to.is_none_or(|t| v.received_at < t))
                .collect();
            views.sort_by_key(|v| v.received_position);
            Ok(views)
        })
    }

    /// Opportunities (filtered by status and team), oldest first.
    pub fn list_opportunities(
        &self,
        tenant: &str,
        statuses: &[OpportunityStatus],
        team: Option<&Team>,
        as_of: Option<Position>,
        page: &PageRequest,
    ) -> Result<AtPosition<Page<OpportunityView>>, ProjectionError> {
        self.page(as_of, page, |at| {
            let mut views: Vec<OpportunityView> = self
                .all::<OpportunityView>(tenant, at)?
                .into_iter()
                .filter(|v| statuses.is_empty() || statuses.contains(&v.status))
                .filter(|v| team.is_none_or(|t| &v.team == t))
                .collect();
            views.sort_by_key(|v| (v.created_at, v.id.clone()));
            Ok(views)
        })
    }

    /// Decisions, oldest proposed first.
    pub fn list_decisions(
        &self,
        tenant: &str,
        filter: &DecisionFilter,
        as_of: Option<Position>,
        page: &PageRequest,
    ) -> Result<AtPosition<Page<DecisionView>>, ProjectionError> {
        self.page(as_of, page, |at| {
            let mut views: Vec<DecisionView> = self
                .all::<DecisionView>(tenant, at)?
                .into_iter()
                .filter(|v| filter.status.as_ref().is_none_or(|s| &v.status == s))
                .filter(|v| filter.kind.is_none_or(|k| v.kind == k))
                .filter(|v| filter.team.as_ref().is_none_or(|t| &v.team == t))
                .filter(|v| {
                    filter
                        .decider
                        .as_ref()
                        .is_none_or(|d| v.deciders.contains(d))
                })
                .filter(|v| filter.from.is_none_or(|t| v.proposed_at >= t))
                .filter(|v| filter.to.is_none_or(|t| v.proposed_at < t))
                .filter(|v| {
                    filter
                        .subject
                        .as_ref()
                        .is_none_or(|s| v.subjects.contains(s))
                })
                .collect();
            views.sort_by_key(|v| v.proposed_position);
            Ok(views)
        })
    }

    /// Initiatives, oldest first.
    pub fn list_initiatives(
        &self,
        tenant: &str,
        filter: &InitiativeFilter,
        as_of: Option<Position>,
        page: &PageRequest,
    ) -> Result<AtPosition<Page<InitiativeView>>, ProjectionError> {
        self.page(as_of, page, |at| {
            let mut views: Vec<InitiativeView> = self
                .all::<InitiativeView>(tenant, at)?
                .into_iter()
                .filter(|v| filter.status.is_none_or(|s| v.status == s))
                .filter(|v| filter.team.as_ref().is_none_or(|t| &v.team == t))
                .filter(|v| filter.at_risk.is_none_or(|r| v.at_risk == r))
                .filter(|v| filter.owner.as_ref().is_none_or(|o| v.owners.contains(o)))
                .filter(|v| {
                    filter
                        .opportunity
                        .as_ref()
                        .is_none_or(|o| v.implements.contains(o))
                })
                .collect();
            views.sort_by_key(|v| (v.start, v.id.clone()));
            Ok(views)
        })
    }

    /// The ranking of a tenant's ranked opportunities (open and not snoozed), by score descending
    /// then id; `offset` and `limit` select a slice. Now, it reads the sorted index (the cost is
    /// the slice, not the tenant's size); as of a past position it scans the tenant.
    pub fn ranking(
        &self,
        tenant: &str,
        team: Option<&Team>,
        as_of: Option<Position>,
        offset: usize,
        limit: usize,
    ) -> Result<AtPosition<Vec<Ranked>>, ProjectionError> {
        if limit == 0 || limit > PAGE_SIZE_MAX {
            return Err(ProjectionError::InvalidArgument {
                field: "limit",
                reason: format!("must be 1 to {PAGE_SIZE_MAX}, got {limit}"),
            });
        }
        let at = self.resolve(as_of)?;
        if at == self.applied() {
            // Optimistic: read the index, then check no batch landed meanwhile.
            if let Some(ranked) = self.ranking_now(tenant, team, at, offset, limit)?
                && self.applied() == at
            {
                return Ok(AtPosition {
                    value: ranked,
                    position: at,
                });
            }
        }
        let mut ranked: Vec<(f64, OpportunityView)> = Vec::new();
        for view in self.all::<OpportunityView>(tenant, at)? {
            if !view.status.is_ranked() || team.is_some_and(|t| &view.team != t) {
                continue;
            }
            if let Some(score) = view.score {
                ranked.push((score, view));
            }
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let value = ranked
            .into_iter()
            .enumerate()
            .skip(offset)
            .take(limit)
            .map(|(index, (score, view))| Ranked {
                rank: index as u64 + 1,
                id: view.id,
                title: view.title,
                team: view.team,
                status: view.status,
                score,
                score_position: view.score_position.unwrap_or(Position::ZERO),
            })
            .collect();
        Ok(AtPosition {
            value,
            position: at,
        })
    }

    fn ranking_now(
        &self,
        tenant: &str,
        team: Option<&Team>,
        at: Position,
        offset: usize,
        limit: usize,
    ) -> Result<Option<Vec<Ranked>>, ProjectionError> {
        let mut ranked = Vec::with_capacity(limit);
        let mut index = 0u64;
        for entry in self.tree.scan_prefix(keys::ranking_prefix(tenant)) {
            let (key, _) = entry?;
            let id = keys::ranking_id(&key, tenant);
            let Some(bytes) = self
                .tree
                .get(keys::current(EntityKind::Opportunity, tenant, &id))?
            else {
                return Ok(None);
            };
            let view: OpportunityView = decode(&bytes)?;
            if view.last_position > at {
                return Ok(None);
            }
            if team.is_some_and(|t| &view.team != t) {
                continue;
            }
            index += 1;
            if (index as usize) <= offset {
                continue;
            }
            ranked.push(Ranked {
                rank: index,
                score: view.score.unwrap_or(0.0),
                score_position: view.score_position.unwrap_or(Position::ZERO),
                id: view.id,
                title: view.title,
                team: view.team,
                status: view.status,
            });
            if ranked.len() == limit {
                break;
            }
        }
        Ok(Some(ranked))
    }

    /// The rank of one opportunity (1-based) among the ranked ones, as of a position; `None` when
    /// it is not ranked.
    pub fn rank_of(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Option<u64>>, ProjectionError> {
        let at = self.resolve(as_of)?;
        let Some(view) = self.opportunity(tenant, id, Some(at))?.value else {
            return Ok(AtPosition {
                value: None,
                position: at,
            });
        };
        let (Some(score), true) = (view.score, view.status.is_ranked()) else {
            return Ok(AtPosition {
                value: None,
                position: at,
            });
        };
        let mut rank = 1u64;
        for other in self.all::<OpportunityView>(tenant, at)? {
            if other.id == view.id || !other.status.is_ranked() {
                continue;
            }
            if let Some(s) = other.score
                && (s > score || (s == score && other.id < view.id))
            {
                rank += 1;
            }
        }
        Ok(AtPosition {
            value: Some(rank),
            position: at,
        })
    }

    /// The scores of an opportunity, oldest first: the positions of its `opportunity.scored`
    /// records (the snapshots themselves are in the ledger) and their values.
    pub fn score_history(
        &self,
        tenant: &str,
        id: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<(Position, f64)>>, ProjectionError> {
        let at = self.resolve(as_of)?;
        let prefix = keys::score_prefix(tenant, id);
        let end = keys::with_position(prefix.clone(), at);
        let mut scores = Vec::new();
        for entry in self.tree.range(prefix..=end) {
            let (key, value) = entry?;
            let bits: [u8; 8] = value
                .as_ref()
                .try_into()
                .map_err(|_| ProjectionError::Corrupt("a score is not 8 bytes".into()))?;
            scores.push((
                keys::position_suffix(&key),
                f64::from_bits(u64::from_be_bytes(bits)),
            ));
        }
        Ok(AtPosition {
            value: scores,
            position: at,
        })
    }

    /// Opportunities that aged out with a recorded time in `[from, to)`, oldest first.
    pub fn aged_out(
        &self,
        tenant: &str,
        from: Time,
        to: Time,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<AgedOutView>>, ProjectionError> {
        let at = self.resolve(as_of)?;
        let prefix = keys::aged_prefix(tenant);
        let mut start = prefix.clone();
        start.extend_from_slice(&keys::time_ascending(from.0));
        let mut end = prefix;
        end.extend_from_slice(&keys::time_ascending(to.0));
        let mut aged = Vec::new();
        for entry in self.tree.range(start..end) {
            let view: AgedOutView = decode(&entry?.1)?;
            if view.position <= at {
                aged.push(view);
            }
        }
        Ok(AtPosition {
            value: aged,
            position: at,
        })
    }

    /// Decisions superseded (as of a position), with what superseded them.
    pub fn superseded(
        &self,
        tenant: &str,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<DecisionView>>, ProjectionError> {
        let at = self.resolve(as_of)?;
        let mut views: Vec<DecisionView> = self
            .all::<DecisionView>(tenant, at)?
            .into_iter()
            .filter(|v| v.superseded_by.is_some())
            .collect();
        views.sort_by_key(|v| v.last_position);
        Ok(AtPosition {
            value: views,
            position: at,
        })
    }

    /// The edges at an entity recorded up to `at`: those that start there (`from`) and those that
    /// end there.
    pub fn edges(
        &self,
        tenant: &str,
        entity: &EntityRef,
        as_of: Option<Position>,
    ) -> Result<AtPosition<Vec<EdgeView>>, ProjectionError> {
        let at = self.resolve(as_of)?;
        Ok(AtPosition {
            value: self.edges_at(tenant, entity, at)?,
            position: at,
        })
    }

    fn edges_at(
        &self,
        tenant: &str,
        entity: &EntityRef,
        at: Position,
    ) -> Result<Vec<EdgeView>, ProjectionError> {
        let mut edges = Vec::new();
        for reverse in [false, true] {
            let prefix = keys::edge_prefix(reverse, tenant, entity);
            for entry in self.tree.scan_prefix(&prefix) {
                let (key, value) = entry?;
                let position = keys::position_suffix(&value);
                if position > at {
                    continue;
                }
                let (relation, far) = keys::edge_parts(&key, prefix.len())
                    .ok_or_else(|| ProjectionError::Corrupt("an edge key does not parse".into()))?;
                let edge = match reverse {
                    false => Edge {
                        from: entity.clone(),
                        relation,
                        to: far,
                    },
                    true => Edge {
                        from: far,
                        relation,
                        to: entity.clone(),
                    },
                };
                edges.push(EdgeView { edge, position });
            }
        }
        edges.sort_by(|a, b| (a.position, &a.edge).cmp(&(b.position, &b.edge)));
        Ok(edges)
    }

    /// A breadth-first walk from `root`, each entity once, to `depth` steps and at most
    /// `max_nodes` entities, following edges the way `direction` says (see [`direction_of`]).
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
            return Err(ProjectionError::InvalidArgument {
                field: "depth",
                reason: format!("must be 1 to {LINEAGE_DEPTH_MAX}, got {depth}"),
            });
        }
        if max_nodes == 0 || max_nodes > GRAPH_NODES_MAX {
            return Err(ProjectionError::InvalidArgument {
                field: "max_nodes",
                reason: format!("must be 1 to {GRAPH_NODES_MAX}, got {max_nodes}"),
            });
        }
        let at = self.resolve(as_of)?;
        let mut seen: BTreeMap<EntityRef, usize> = BTreeMap::from([(root.clone(), 0)]);
        let mut order = vec![(root.clone(), 0)];
        let mut edges = BTreeSet::new();
        let mut queue = VecDeque::from([(root.clone(), 0usize)]);
        let mut truncated = false;
        while let Some((node, distance)) = queue.pop_front() {
            if distance == depth {
                continue;
            }
            for view in self.edges_at(tenant, &node, at)? {
                let (upstream, downstream) = direction_of(&view.edge);
                let next = match direction {
                    Direction::Upstream if downstream == &node => upstream,
                    Direction::Downstream if upstream == &node => downstream,
                    Direction::Both => {
                        if upstream == &node {
                            downstream
                        } else {
                            upstream
                        }
                    }
                    _ => continue,
                };
                if !seen.contains_key(next) {
                    if seen.len() >= max_nodes {
                        truncated = true;
                        continue;
                    }
                    seen.insert(next.clone(), distance + 1);
                    order.push((next.clone(), distance + 1));
                    queue.push_back((next.clone(), distance + 1));
                }
                edges.insert(view);
            }
        }
        Ok(AtPosition {
            value: Graph {
                nodes: order,
                edges: edges.into_iter().collect(),
                truncated,
            },
            position: at,
        })
    }
}

fn parse_token(token: &str) -> Result<(usize, Option<Position>), ProjectionError> {
    let invalid = || ProjectionError::InvalidArgument {
        field: "page_token",
        reason: "not a token this server issued".into(),
    };
    if token.len() > PAGE_TOKEN_BYTES_MAX {
        return Err(invalid());
    }
    let (offset, position) = token.split_once('.').ok_or_else(invalid)?;
    let offset = offset.parse().map_err(|_| invalid())?;
    let position = position.parse().map_err(|_| invalid())?;
    Ok((offset, Some(Position(position))))
}
