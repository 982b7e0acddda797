//! `cairn.v1.LineageService`: where things came from and what came of them.
//!
//! Walks come from the read model's graph (`Projections::graph`), taken to the request's depth
//! with the read model's own node cap; the walk the caller asked for (only some relations, at
//! most `max_nodes`) is then taken over that graph's edges, breadth-first in the same order, which
//! also names the edge each entity was first reached by. Every path the restricted walk can take
//! is a path of the full walk, so it loses nothing unless the read model's cap cut the full walk
//! short (then the answer says `truncated`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use cairn_domain::opportunity::{Opportunity, OpportunityStatus};
use cairn_domain::{Edge, EntityKind, EntityRef, Relation};
use cairn_ledger::Position;
use cairn_projections::{AtPosition, Direction, EdgeView, Graph, ProjectionError, Projections};
use cairn_service::ServiceError;
use cairn_store::{EventStore, KeyStore};
use tonic::{Request, Response, Status};

use crate::api_support::{Backend, Pager, read_options, service_status, stamp};
use crate::domain_convert::{
    GRAPH_NODES_DEFAULT, GRAPH_NODES_MAX, LINEAGE_DEPTH_DEFAULT, LINEAGE_DEPTH_MAX, bounded,
    edge_to_proto, entity_id_from_proto, entity_ref_from_proto, history_provenance_to_proto,
    lineage_parents_to_proto, opportunity_status_to_proto, relations_from_proto, tenant_from_proto,
};
use crate::proto;
use crate::proto::lineage_service_server::LineageService;
use crate::view_convert::{
    EntityView, entity_summary_to_proto, fold, initiative_outcome_to_proto, shipped_at, utc_text,
};

/// The lineage service.
pub struct LineageApi<S> {
    backend: Arc<Backend<S>>,
}

/// A walk as the caller asked for it: each entity with its depth and the edge it was first
/// reached by (none for the root), the edges between them (when asked for), and whether a node
/// cap cut it short.
struct Walk {
    nodes: Vec<(EntityRef, usize, Option<Edge>)>,
    edges: Vec<Edge>,
    truncated: bool,
}

/// Walks `graph` from `root` as `Projections::graph` does (breadth-first, each node's edges in
/// the order they were recorded), following only `relations` (all when empty).
fn walk(
    graph: &Graph,
    root: &EntityRef,
    direction: Direction,
    relations: &[Relation],
    depth: usize,
    max_nodes: usize,
) -> Walk {
    let followed =
        |view: &&EdgeView| relations.is_empty() || relations.contains(&view.edge.relation);
    let mut adjacency: BTreeMap<&EntityRef, Vec<&EdgeView>> = BTreeMap::new();
    for view in graph.edges.iter().filter(followed) {
        adjacency.entry(&view.edge.from).or_default().push(view);
        adjacency.entry(&view.edge.to).or_default().push(view);
    }
    for edges in adjacency.values_mut() {
        edges.sort_by(|a, b| (a.position, &a.edge).cmp(&(b.position, &b.edge)));
    }
    let mut seen: BTreeSet<&EntityRef> = BTreeSet::from([root]);
    let mut nodes = vec![(root.clone(), 0, None)];
    let mut queue = VecDeque::from([(root, 0usize)]);
    let mut truncated = graph.truncated;
    while let Some((node, distance)) = queue.pop_front() {
        if distance == depth {
            continue;
        }
        for view in adjacency.get(node).into_iter().flatten() {
            let (upstream, downstream) = cairn_projections::direction_of(&view.edge);
            let next = match direction {
                Direction::Upstream if downstream == node => upstream,
                Direction::Downstream if upstream == node => downstream,
                Direction::Both if upstream == node => downstream,
                Direction::Both => upstream,
                _ => continue,
            };
            if seen.contains(next) {
                continue;
            }
            if seen.len() >= max_nodes {
                truncated = true;
                continue;
            }
            seen.insert(next);
            nodes.push((next.clone(), distance + 1, Some(view.edge.clone())));
            queue.push_back((next, distance + 1));
        }
    }
    Walk {
        nodes,
        edges: Vec::new(),
        truncated,
    }
}

/// Every edge between two of `walk`'s nodes (of the followed relations), in the order recorded,
/// including those the walk did not take (a signal that verified an initiative's milestone and is
/// also evidence for the opportunity the initiative implements).
fn edges_between(
    p: &Projections,
    tenant: &str,
    walk: &Walk,
    relations: &[Relation],
    at: Position,
) -> Result<Vec<Edge>, ProjectionError> {
    let nodes: BTreeSet<&EntityRef> = walk.nodes.iter().map(|(node, _, _)| node).collect();
    let mut edges = Vec::new();
    for node in &nodes {
        // Each edge once: from the end it starts at.
        for view in p.edges_from(tenant, node, Some(at))?.value {
            if nodes.contains(&view.edge.to)
                && (relations.is_empty() || relations.contains(&view.edge.relation))
            {
                edges.push(view);
            }
        }
    }
    edges.sort_by(|a, b| (a.position, &a.edge).cmp(&(b.position, &b.edge)));
    Ok(edges.into_iter().map(|view| view.edge).collect())
}

/// The view of an entity as of `at`, whatever its kind.
fn entity_view(
    p: &Projections,
    tenant: &str,
    entity: &EntityRef,
    at: Position,
) -> Result<Option<EntityView>, ProjectionError> {
    let id = entity.id.as_str();
    Ok(match entity.kind {
        EntityKind::Feedback => p
            .feedback(tenant, id, Some(at))?
            .value
            .map(EntityView::Feedback),
        EntityKind::Signal => p
            .signal(tenant, id, Some(at))?
            .value
            .map(EntityView::Signal),
        EntityKind::Opportunity => p
            .opportunity(tenant, id, Some(at))?
            .value
            .map(EntityView::Opportunity),
        EntityKind::Decision => p
            .decision(tenant, id, Some(at))?
            .value
            .map(EntityView::Decision),
        EntityKind::Initiative => p
            .initiative(tenant, id, Some(at))?
            .value
            .map(EntityView::Initiative),
    })
}

/// The fields `UpstreamRequest` and `DownstreamRequest` share.
struct OneWayRequest {
    tenant: String,
    read: Option<proto::ReadOptions>,
    page: Option<proto::PageRequest>,
    entity: Option<proto::EntityRef>,
    depth: u32,
    relations: Vec<i32>,
}

/// Whether a walk answers the edges between its nodes (`Graph`) or only the nodes.
enum WalkEdges {
    Between,
    None,
}

/// What a walk request asks.
struct WalkRequest {
    root: EntityRef,
    direction: Direction,
    relations: Vec<Relation>,
    depth: usize,
    max_nodes: usize,
    edges: WalkEdges,
}

impl<S: EventStore + KeyStore> LineageApi<S> {
    pub(crate) fn new(backend: Arc<Backend<S>>) -> LineageApi<S> {
        LineageApi { backend }
    }

    /// Walks as asked and summarises every entity reached, as of one position; NOT_FOUND when
    /// the root does not exist.
    async fn walk(
        &self,
        tenant: &str,
        options: &cairn_service::ReadOptions,
        request: WalkRequest,
    ) -> Result<cairn_service::Stamped<(Vec<proto::LineageNode>, Walk)>, Status> {
        let tenant = tenant.to_owned();
        let root = request.root.clone();
        let answer = self
            .backend
            .query(options, move |p, as_of| {
                let at = p.resolve(as_of)?;
                let Some(root_view) = entity_view(p, &tenant, &request.root, at)? else {
                    return Ok(AtPosition {
                        value: None,
                        position: at,
                    });
                };
                let graph = p.graph(
                    &tenant,
                    &request.root,
                    request.direction,
                    request.depth,
                    cairn_projections::GRAPH_NODES_MAX,
                    Some(at),
                )?;
                let mut walked = walk(
                    &graph.value,
                    &request.root,
                    request.direction,
                    &request.relations,
                    request.depth,
                    request.max_nodes,
                );
                if let WalkEdges::Between = request.edges {
                    walked.edges = edges_between(p, &tenant, &walked, &request.relations, at)?;
                }
                let mut nodes = Vec::with_capacity(walked.nodes.len());
                for (entity, depth, via) in &walked.nodes {
                    let view = match depth {
                        0 => Some(root_view.clone()),
                        _ => entity_view(p, &tenant, entity, at)?,
                    };
                    nodes.push(proto::LineageNode {
                        summary: Some(entity_summary_to_proto(entity, view.as_ref())),
                        depth: *depth as u32,
                        via: via.as_ref().map(edge_to_proto),
                    });
                }
                Ok(AtPosition {
                    value: Some((nodes, walked)),
                    position: at,
                })
            })
            .await?;
        let value = answer.value.ok_or_else(|| {
            service_status(ServiceError::NotFound(format!(
                "no {} {}",
                root.kind.as_str(),
                root.id
            )))
        })?;
        Ok(cairn_service::Stamped {
            value,
            stamp: answer.stamp,
        })
    }

    /// Upstream or downstream of an entity: the entities reached (not the root), nearest first,
    /// then by kind and id, a page at a time.
    async fn one_way(
        &self,
        request: OneWayRequest,
        direction: Direction,
        wait_until: tokio::time::Instant,
    ) -> Result<
        (
            Vec<proto::LineageNode>,
            Option<proto::PageInfo>,
            Option<proto::Stamp>,
        ),
        Status,
    > {
        let OneWayRequest {
            tenant,
            read,
            page,
            entity,
            depth,
            relations,
        } = request;
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", tenant)?;
                let mut options = read_options(read, wait_until)?;
                let pager = Pager::new(page)?;
                pager.pin(&mut options);
                let request = WalkRequest {
                    root: entity_ref_from_proto("entity", entity)?,
                    direction,
                    relations: relations_from_proto("relations", &relations)?,
                    depth: bounded("depth", depth, LINEAGE_DEPTH_DEFAULT, LINEAGE_DEPTH_MAX)?,
                    max_nodes: cairn_projections::GRAPH_NODES_MAX,
                    edges: WalkEdges::None,
                };
                let answer = self.walk(tenant.as_str(), &options, request).await?;
                let (nodes, walked) = answer.value;
                // The walk's nodes and their summaries are in the same order.
                let mut reached: Vec<(usize, EntityRef, proto::LineageNode)> = walked
                    .nodes
                    .into_iter()
                    .zip(nodes)
                    .filter(|((_, depth, _), _)| *depth > 0)
                    .map(|((entity, depth, _), node)| (depth, entity, node))
                    .collect();
                reached.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                let nodes = reached.into_iter().map(|(_, _, node)| node).collect();
                let (nodes, page) = pager.page(nodes, answer.stamp.position);
                Ok((nodes, page, stamp(&answer.stamp)))
            })
            .await
    }
}

/// The `reason` of an opportunity's outcome, in words.
fn outcome_reason(view: &cairn_projections::OpportunityView) -> String {
    match view.status {
        OpportunityStatus::Declined => view.decline_reason.clone().unwrap_or_default(),
        OpportunityStatus::AgedOut => view
            .aged_out
            .as_ref()
            .map(|aged| {
                format!(
                    "{} (rule {} v{})",
                    aged.reason, aged.rule, aged.rule_version
                )
            })
            .unwrap_or_default(),
        OpportunityStatus::Snoozed => view
            .snoozed_until
            .map(|until| format!("snoozed until {}", utc_text(until)))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl<S: EventStore + KeyStore> LineageService for LineageApi<S> {
    async fn upstream(
        &self,
        mut request: Request<proto::UpstreamRequest>,
    ) -> Result<Response<proto::UpstreamResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (r, wait_until) = self.backend.read_request(request);
        let request = OneWayRequest {
            tenant: r.tenant,
            read: r.read,
            page: r.page,
            entity: r.entity,
            depth: r.depth,
            relations: r.relations,
        };
        let (nodes, page, stamp) = self
            .one_way(request, Direction::Upstream, wait_until)
            .await?;
        Ok(Response::new(proto::UpstreamResponse {
            nodes,
            page,
            stamp,
        }))
    }

    async fn downstream(
        &self,
        mut request: Request<proto::DownstreamRequest>,
    ) -> Result<Response<proto::DownstreamResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (r, wait_until) = self.backend.read_request(request);
        let request = OneWayRequest {
            tenant: r.tenant,
            read: r.read,
            page: r.page,
            entity: r.entity,
            depth: r.depth,
            relations: r.relations,
        };
        let (nodes, page, stamp) = self
            .one_way(request, Direction::Downstream, wait_until)
            .await?;
        Ok(Response::new(proto::DownstreamResponse {
            nodes,
            page,
            stamp,
        }))
    }

    async fn graph(
        &self,
        mut request: Request<proto::GraphRequest>,
    ) -> Result<Response<proto::GraphResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let direction = match request.direction() {
                    proto::LineageDirection::Upstream => Direction::Upstream,
                    proto::LineageDirection::Downstream => Direction::Downstream,
                    proto::LineageDirection::Unspecified | proto::LineageDirection::Both => {
                        Direction::Both
                    }
                };
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let walk_request = WalkRequest {
                    root: entity_ref_from_proto("root", request.root)?,
                    direction,
                    relations: relations_from_proto("relations", &request.relations)?,
                    depth: bounded(
                        "depth",
                        request.depth,
                        LINEAGE_DEPTH_DEFAULT,
                        LINEAGE_DEPTH_MAX,
                    )?,
                    max_nodes: bounded(
                        "max_nodes",
                        request.max_nodes,
                        GRAPH_NODES_DEFAULT,
                        GRAPH_NODES_MAX,
                    )?,
                    edges: WalkEdges::Between,
                };
                let answer = self.walk(tenant.as_str(), &options, walk_request).await?;
                let (nodes, walked) = answer.value;
                Ok(Response::new(proto::GraphResponse {
                    nodes,
                    edges: walked.edges.iter().map(edge_to_proto).collect(),
                    truncated: walked.truncated,
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn why(
        &self,
        mut request: Request<proto::WhyRequest>,
    ) -> Result<Response<proto::WhyResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let mut options = read_options(request.read, wait_until)?;
                let pager = Pager::new(request.page)?;
                pager.pin(&mut options);
                let entity = entity_ref_from_proto("entity", request.entity)?;
                let depth = bounded(
                    "depth",
                    request.depth,
                    LINEAGE_DEPTH_DEFAULT,
                    LINEAGE_DEPTH_MAX,
                )?;
                let answer = self
                    .backend
                    .reads()
                    .why(&tenant, &entity, depth, GRAPH_NODES_MAX, &options)
                    .await
                    .map_err(service_status)?;
                let (graph, chain) = answer.value;
                if !chain.iter().any(|(node, _)| node == &entity) {
                    return Err(service_status(ServiceError::NotFound(format!(
                        "no {} {}",
                        entity.kind.as_str(),
                        entity.id
                    ))));
                }
                let depths: BTreeMap<EntityRef, usize> = graph.nodes.into_iter().collect();
                let steps = chain
                    .iter()
                    .map(|(node, entry)| proto::WhyStep {
                        record: Some(history_provenance_to_proto(node, entry)),
                        lineage_parents: lineage_parents_to_proto(&entry.lineage),
                        depth: depths.get(node).copied().unwrap_or(0) as u32,
                    })
                    .collect();
                let (steps, page) = pager.page(steps, answer.stamp.position);
                Ok(Response::new(proto::WhyResponse {
                    steps,
                    page,
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }

    async fn what_happened(
        &self,
        mut request: Request<proto::WhatHappenedRequest>,
    ) -> Result<Response<proto::WhatHappenedResponse>, Status> {
        self.backend.access().authorize_read(&mut request).await?;
        let (request, wait_until) = self.backend.read_request(request);
        self.backend
            .within_deadline(async move {
                let tenant = tenant_from_proto("tenant", request.tenant)?;
                let options = read_options(request.read, wait_until)?;
                let id = entity_id_from_proto("feedback_id", request.feedback_id)?;
                // Personal data opens as asked: there is no authentication yet (issue 4).
                let answer = self
                    .backend
                    .reads()
                    .what_happened(&tenant, &id, &options)
                    .await
                    .map_err(service_status)?;
                let at = answer.stamp.position;
                let story = answer.value;
                let evidence = EntityRef::new(EntityKind::Feedback, id);
                let feedback =
                    crate::view_convert::feedback_to_proto(&story.feedback, &story.content);
                let mut opportunities = Vec::new();
                let mut listed = BTreeSet::new();
                for outcome in &story.outcomes {
                    // Each opportunity the item is evidence for, then its canonical one (which
                    // holds the evidence now), each once.
                    for view in std::iter::once(&outcome.opportunity).chain(&outcome.canonical) {
                        if !listed.insert(view.id.clone()) {
                            continue;
                        }
                        let entity = EntityRef::new(EntityKind::Opportunity, view.id.clone());
                        let entries = self.backend.history_at(&tenant, &entity, at).await?;
                        let state: Opportunity = fold(&entries);
                        let decision = match outcome
                            .decisions
                            .iter()
                            .find(|decision| Some(&decision.id) == view.decision.as_ref())
                        {
                            Some(decision) => {
                                Some(self.backend.decision_message(&tenant, decision, at).await?)
                            }
                            None => None,
                        };
                        opportunities.push(proto::OpportunityOutcome {
                            opportunity_id: view.id.as_str().to_owned(),
                            title: view.title.clone(),
                            team: view.team.as_str().to_owned(),
                            status: opportunity_status_to_proto(view.status) as i32,
                            linked_at_micros: state
                                .evidence
                                .iter()
                                .find(|piece| piece.reference == evidence)
                                .map_or(0, |piece| piece.attached_at.0),
                            canonical_id: view
                                .canonical
                                .as_ref()
                                .map(|id| id.as_str().to_owned())
                                .unwrap_or_default(),
                            decision,
                            reason: outcome_reason(view),
                            initiatives: outcome
                                .initiatives
                                .iter()
                                .filter(|initiative| initiative.implements.contains(&view.id))
                                .map(initiative_outcome_to_proto)
                                .collect(),
                            shipped_at_micros: shipped_at(&entries),
                            outcome_signal_id: view
                                .outcome_signal
                                .as_ref()
                                .map(|id| id.as_str().to_owned())
                                .unwrap_or_default(),
                        });
                    }
                }
                Ok(Response::new(proto::WhatHappenedResponse {
                    feedback: Some(feedback),
                    opportunities,
                    stamp: stamp(&answer.stamp),
                }))
            })
            .await
    }
}
