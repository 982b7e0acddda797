//! The projections against an independent model: the demo data set is recorded through the
//! service, and every answer (now and as of earlier positions) is compared with what folding the
//! ledger's records with the domain's own `apply` gives. A rebuild from the ledger must answer
//! exactly as the projection that followed the ledger batch by batch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cairn_domain::decision::{Decision, DecisionStatus};
use cairn_domain::opportunity::{Opportunity, OpportunityStatus};
use cairn_domain::{Aggregate, Edge, EntityId, EntityKind, EntityRef, Event, Relation, Time};
use cairn_ledger::{Position, TenantId};
use cairn_projections::{DecisionFilter, Direction, PageRequest, Projections};
use cairn_service::dataset::{self, Action, Scale};
use cairn_service::feedback_loop::decode;
use cairn_service::{FeedbackLoop, Ledger, ScoringPolicy, ServerIdentity};
use cairn_store::{EventStore, MemoryStore};

const NOW: i64 = 1_760_000_000_000_000;

struct Recorded {
    store: Arc<MemoryStore>,
    followed: Projections,
    tenants: Vec<TenantId>,
}

async fn record() -> Recorded {
    let store = MemoryStore::new();
    let ledger = Arc::new(Ledger::new(
        store.clone(),
        Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32])),
    ));
    let service = FeedbackLoop::new(ledger, Arc::new(ScoringPolicy::built_in()))
        .with_clock(Arc::new(|| Time(NOW)));
    let steps = dataset::generate(11, Scale::DEMO, Time(NOW));
    let followed = Projections::temporary().unwrap();
    let mut tenants = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        if !tenants.contains(&step.tenant) {
            tenants.push(step.tenant.clone());
        }
        let candidates: Vec<EntityId> = match step.action {
            Action::SweepAging => {
                followed.catch_up(&*store).await.unwrap();
                followed
                    .list_opportunities(
                        step.tenant.as_str(),
                        &[
                            OpportunityStatus::New,
                            OpportunityStatus::UnderReview,
                            OpportunityStatus::Snoozed,
                        ],
                        None,
                        None,
                        &PageRequest {
                            size: 500,
                            token: None,
                        },
                    )
                    .unwrap()
                    .value
                    .items
                    .into_iter()
                    .map(|v| v.id)
                    .collect()
            }
            _ => Vec::new(),
        };
        service.run_step(step, &candidates).await.unwrap();
        // Follow in uneven batches, as a live follower would.
        if index % 37 == 0 {
            followed.catch_up(&*store).await.unwrap();
        }
    }
    followed.catch_up(&*store).await.unwrap();
    Recorded {
        store,
        followed,
        tenants,
    }
}

/// The independent model: every aggregate folded from the records up to a position, and every
/// edge with the first position that recorded it.
struct Model {
    opportunities: BTreeMap<(String, EntityId), Opportunity>,
    decisions: BTreeMap<(String, EntityId), Decision>,
    edges: BTreeMap<(String, Edge), Position>,
}

async fn model(store: &MemoryStore, at: Position) -> Model {
    let mut records = Vec::new();
    while (records.len() as u64) < at.0 {
        let page = store
            .read_all(Position(records.len() as u64 + 1), 4096)
            .await
            .unwrap();
        assert!(!page.is_empty());
        records.extend(page);
    }
    let mut model = Model {
        opportunities: BTreeMap::new(),
        decisions: BTreeMap::new(),
        edges: BTreeMap::new(),
    };
    for record in records.iter().filter(|r| r.position() <= at) {
        let stream = &record.envelope.stream;
        let id = EntityId::new(stream.aggregate_id.clone()).unwrap();
        let tenant = stream.tenant.as_str().to_owned();
        let event = decode(record).unwrap();
        let own = EntityRef::new(event.kind(), id.clone());
        for edge in event.edges(&own) {
            model
                .edges
                .entry((tenant.clone(), edge))
                .or_insert(record.position());
        }
        match event {
            Event::Opportunity(e) => model
                .opportunities
                .entry((tenant, id))
                .or_default()
                .apply(&e),
            Event::Decision(e) => model.decisions.entry((tenant, id)).or_default().apply(&e),
            _ => {}
        }
    }
    model
}

fn expected_ranking(model: &Model, tenant: &str) -> Vec<(EntityId, f64)> {
    let mut ranked: Vec<(EntityId, f64)> = model
        .opportunities
        .iter()
        .filter(|((t, _), o)| t == tenant && o.status.is_some_and(|s| s.is_ranked()))
        .filter_map(|((_, id), o)| o.score.as_ref().map(|s| (id.clone(), s.value)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked
}

fn check_against_model(projections: &Projections, model: &Model, tenant: &str, at: Position) {
    // Why is X ranked where it is: the ranking, its order and scores.
    let ranking = projections.ranking(tenant, None, Some(at), 0, 500).unwrap();
    assert_eq!(ranking.position, at);
    let got: Vec<(EntityId, f64)> = ranking
        .value
        .iter()
        .map(|r| (r.id.clone(), r.score))
        .collect();
    assert_eq!(
        got,
        expected_ranking(model, tenant),
        "ranking of {tenant} at {at}"
    );
    for (index, ranked) in ranking.value.iter().enumerate().take(5) {
        assert_eq!(ranked.rank, index as u64 + 1);
        let rank = projections
            .rank_of(tenant, ranked.id.as_str(), Some(at))
            .unwrap()
            .value;
        assert_eq!(rank, Some(ranked.rank));
    }
    // Every opportunity's status and score.
    for ((t, id), opportunity) in &model.opportunities {
        if t != tenant {
            continue;
        }
        let view = projections
            .opportunity(tenant, id.as_str(), Some(at))
            .unwrap()
            .value
            .unwrap();
        assert_eq!(Some(view.status), opportunity.status, "{id} at {at}");
        assert_eq!(
            view.score,
            opportunity.score.as_ref().map(|s| s.value),
            "{id} at {at}"
        );
        assert_eq!(
            view.voters,
            opportunity.votes.len() as u64,
            "{id} voters at {at}"
        );
        assert_eq!(
            view.evidence,
            opportunity.evidence.len() as u64,
            "{id} evidence at {at}"
        );
    }
    // Which decisions were superseded, and by what.
    let expected: BTreeSet<(EntityId, EntityId)> = model
        .decisions
        .iter()
        .filter(|((t, _), _)| t == tenant)
        .filter_map(|((_, id), d)| match &d.status {
            Some(DecisionStatus::Superseded { by }) => Some((id.clone(), by.clone())),
            _ => None,
        })
        .collect();
    let got: BTreeSet<(EntityId, EntityId)> = projections
        .superseded(tenant, Some(at))
        .unwrap()
        .value
        .into_iter()
        .map(|d| (d.id, d.superseded_by.unwrap()))
        .collect();
    assert_eq!(got, expected, "superseded in {tenant} at {at}");
    // Every edge, from both ends.
    for ((t, edge), position) in &model.edges {
        if t != tenant {
            continue;
        }
        for end in [&edge.from, &edge.to] {
            let edges = projections.edges(tenant, end, Some(at)).unwrap().value;
            assert!(
                edges
                    .iter()
                    .any(|e| &e.edge == edge && e.position == *position),
                "edge {edge:?} at {position} seen from {end}"
            );
            for seen in &edges {
                assert!(
                    model
                        .edges
                        .contains_key(&(tenant.to_owned(), seen.edge.clone())),
                    "{seen:?} is not in the ledger up to {at}"
                );
            }
        }
    }
}

#[tokio::test]
async fn every_answer_matches_the_folded_ledger_now_and_as_of_earlier_positions() {
    let recorded = record().await;
    let head = recorded.store.head().await.unwrap().position;
    assert_eq!(recorded.followed.applied(), head);
    for at in [Position(head.0 / 3), Position(head.0 * 2 / 3), head] {
        let model = model(&recorded.store, at).await;
        for tenant in &recorded.tenants {
            check_against_model(&recorded.followed, &model, tenant.as_str(), at);
        }
    }
}

#[tokio::test]
async fn a_rebuild_answers_exactly_as_the_follower() {
    let recorded = record().await;
    let dir = tempfile::tempdir().unwrap();
    let rebuilt = Projections::rebuild(&*recorded.store, dir.path())
        .await
        .unwrap();
    let head = recorded.store.head().await.unwrap().position;
    assert_eq!(rebuilt.applied(), head);
    let page = PageRequest {
        size: 500,
        token: None,
    };
    for at in [Position(head.0 / 2), head] {
        for tenant in &recorded.tenants {
            let t = tenant.as_str();
            let both = [&recorded.followed, &rebuilt];
            let answers: Vec<_> = both
                .iter()
                .map(|p| {
                    let opportunities = p.list_opportunities(t, &[], None, Some(at), &page).unwrap().value;
                    let decisions = p.list_decisions(t, &DecisionFilter::default(), Some(at), &page).unwrap().value;
                    let initiatives = p.list_initiatives(t, &Default::default(), Some(at), &page).unwrap().value;
                    let feedback = p.list_feedback(t, &Default::default(), Some(at), &page).unwrap().value;
                    let ranking = p.ranking(t, None, Some(at), 0, 500).unwrap().value;
                    let aged = p.aged_out(t, Time(i64::MIN), Time(i64::MAX), Some(at)).unwrap().value;
                    let graphs: Vec<_> = opportunities
                        .items
                        .iter()
                        .map(|o| {
                            p.graph(t, &EntityRef::new(EntityKind::Opportunity, o.id.clone()), Direction::Both, 5, 1000, Some(at))
                                .unwrap()
                                .value
                        })
                        .collect();
                    format!("{opportunities:?}{decisions:?}{initiatives:?}{feedback:?}{ranking:?}{aged:?}{graphs:?}")
                })
                .collect();
            assert_eq!(answers[0], answers[1], "{t} at {at}");
        }
    }
    // Reopening keeps views and position.
    drop(rebuilt);
    let reopened = Projections::open(dir.path()).unwrap();
    assert_eq!(reopened.applied(), head);
}

#[tokio::test]
async fn lineage_walks_follow_the_direction_table() {
    let recorded = record().await;
    let p = &recorded.followed;
    let tenant = recorded.tenants[0].as_str();
    // A feedback item linked to an accepted opportunity with an initiative: downstream reaches the
    // opportunity, its decision and its initiative; upstream of the decision reaches the item.
    let opportunity = EntityRef::new(EntityKind::Opportunity, EntityId::new("opp-0").unwrap());
    let edges = p.edges(tenant, &opportunity, None).unwrap().value;
    let feedback = edges
        .iter()
        .find(|e| {
            e.edge.relation == Relation::EvidenceFor && e.edge.from.kind == EntityKind::Feedback
        })
        .map(|e| e.edge.from.clone())
        .expect("opp-0 has feedback evidence");
    let down = p
        .graph(tenant, &feedback, Direction::Downstream, 5, 1000, None)
        .unwrap()
        .value;
    let reached: BTreeSet<EntityRef> = down.nodes.iter().map(|(n, _)| n.clone()).collect();
    assert!(reached.contains(&opportunity));
    assert!(
        reached.iter().any(|n| n.kind == EntityKind::Decision),
        "{reached:?}"
    );
    assert!(
        reached.iter().any(|n| n.kind == EntityKind::Initiative),
        "{reached:?}"
    );
    let decision = reached
        .iter()
        .find(|n| n.kind == EntityKind::Decision)
        .unwrap();
    let up = p
        .graph(tenant, decision, Direction::Upstream, 5, 1000, None)
        .unwrap()
        .value;
    assert!(up.nodes.iter().any(|(n, _)| n == &feedback));
    assert!(
        up.nodes
            .iter()
            .all(|(n, _)| n.kind != EntityKind::Initiative),
        "an initiative is downstream"
    );
    // Depth bounds the walk.
    let shallow = p
        .graph(tenant, &feedback, Direction::Downstream, 1, 1000, None)
        .unwrap()
        .value;
    assert!(shallow.nodes.iter().all(|(_, d)| *d <= 1));
    assert!(
        p.graph(tenant, &feedback, Direction::Downstream, 17, 10, None)
            .is_err()
    );
}
