//! Every query over a generated history of several tenants, answered by a projection that
//! followed the ledger as it was written and by one rebuilt from it afterwards, checked against
//! the domain's own fold of the records up to each position, now and as of earlier positions.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_domain::decision::DecisionKind;
use cairn_domain::feedback::FeedbackStatus;
use cairn_domain::opportunity::OpportunityStatus;
use cairn_domain::{EntityId, EntityKind, EntityRef, Relation, Team, Time};
use cairn_ledger::Position;
use cairn_projections::{
    AtPosition, DecisionFilter, Direction, EdgeView, FeedbackFilter, InitiativeFilter, Page,
    PageRequest, ProjectionError, Projections, direction_of,
};
use common::{Driver, Oracle, dataset};
use tokio::sync::watch;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// Reads every page of a list, checking each page's stamp.
fn all_pages<T>(
    at: Position,
    size: usize,
    mut list: impl FnMut(&PageRequest) -> Result<AtPosition<Page<T>>, ProjectionError>,
) -> Vec<T> {
    let mut page = PageRequest { size, token: None };
    let mut items = Vec::new();
    loop {
        let answer = list(&page).expect("list");
        assert_eq!(
            answer.position, at,
            "every page reflects the first page's position"
        );
        assert!(answer.value.items.len() <= size);
        items.extend(answer.value.items);
        match answer.value.next_page_token {
            Some(token) => page.token = Some(token),
            None => return items,
        }
    }
}

fn team(name: &str) -> Team {
    Team::new(name).expect("team")
}

fn entity(kind: EntityKind, id: &str) -> EntityRef {
    EntityRef::new(kind, EntityId::new(id).expect("id"))
}

/// The oracle's edges at an entity, ordered as the projections order them.
fn oracle_edges(oracle: &Oracle, tenant: &str, near: &EntityRef, from_end: bool) -> Vec<EdgeView> {
    let mut edges: Vec<EdgeView> = oracle
        .edges
        .iter()
        .filter(|((t, edge), _)| {
            t == tenant
                && if from_end {
                    &edge.from == near
                } else {
                    &edge.to == near
                }
        })
        .map(|((_, edge), position)| EdgeView {
            edge: edge.clone(),
            position: *position,
        })
        .collect();
    edges.sort_by(|a, b| (a.position, &a.edge).cmp(&(b.position, &b.edge)));
    edges
}

/// Checks every answer of `p` as of `as_of` (the applied position when `None`) against
/// `oracle`, the fold of the ledger up to that position; `everything` is the fold of the whole
/// ledger, for entities that did not exist yet.
fn check_answers(p: &Projections, oracle: &Oracle, everything: &Oracle, as_of: Option<Position>) {
    let at = oracle.at;
    for tenant in TENANTS {
        // Entity lookups, including those created later (absent as of `at`).
        for ((t, kind, id), _) in everything
            .entities
            .iter()
            .filter(|((t, ..), _)| t == tenant)
        {
            assert_eq!(t, tenant);
            let context = format!("{tenant} {kind}/{id} as of {at}");
            match kind {
                EntityKind::Feedback => {
                    let answer = p.feedback(tenant, id, as_of).unwrap();
                    assert_eq!(answer.position, at);
                    assert_eq!(answer.value, oracle.feedback(tenant, id), "{context}");
                }
                EntityKind::Signal => {
                    let answer = p.signal(tenant, id, as_of).unwrap();
                    assert_eq!(answer.position, at);
                    assert_eq!(answer.value, oracle.signal(tenant, id), "{context}");
                }
                EntityKind::Opportunity => {
                    let answer = p.opportunity(tenant, id, as_of).unwrap();
                    assert_eq!(answer.position, at);
                    assert_eq!(answer.value, oracle.opportunity(tenant, id), "{context}");
                    let own = entity(EntityKind::Opportunity, id);
                    let evidence: Vec<EdgeView> = oracle_edges(oracle, tenant, &own, false)
                        .into_iter()
                        .filter(|e| e.edge.relation == Relation::EvidenceFor)
                        .collect();
                    assert_eq!(
                        p.evidence(tenant, &own.id, as_of).unwrap().value,
                        evidence,
                        "{context}: evidence"
                    );
                    let key = (tenant.to_owned(), id.clone());
                    assert_eq!(
                        p.score_history(tenant, id, as_of).unwrap().value,
                        oracle.scores.get(&key).cloned().unwrap_or_default(),
                        "{context}: scores"
                    );
                    assert_eq!(
                        p.status_history(tenant, id, as_of).unwrap().value,
                        oracle.statuses.get(&key).cloned().unwrap_or_default(),
                        "{context}: statuses"
                    );
                }
                EntityKind::Decision => {
                    let answer = p.decision(tenant, id, as_of).unwrap();
                    assert_eq!(answer.position, at);
                    assert_eq!(answer.value, oracle.decision(tenant, id), "{context}");
                }
                EntityKind::Initiative => {
                    let answer = p.initiative(tenant, id, as_of).unwrap();
                    assert_eq!(answer.position, at);
                    assert_eq!(answer.value, oracle.initiative(tenant, id), "{context}");
                }
            }
            let own = entity(*kind, id);
            let from = oracle_edges(oracle, tenant, &own, true);
            let to = oracle_edges(oracle, tenant, &own, false);
            assert_eq!(
                p.edges_from(tenant, &own, as_of).unwrap().value,
                from,
                "{context}"
            );
            assert_eq!(
                p.edges_to(tenant, &own, as_of).unwrap().value,
                to,
                "{context}"
            );
            let mut both = [from, to].concat();
            both.sort_by(|a, b| (a.position, &a.edge).cmp(&(b.position, &b.edge)));
            assert_eq!(
                p.edges(tenant, &own, as_of).unwrap().value,
                both,
                "{context}"
            );
        }

        // Lists, paged, with and without filters.
        let feedback = |filter: &FeedbackFilter, size| {
            all_pages(at, size, |page| {
                p.list_feedback(tenant, filter, as_of, page)
            })
        };
        let expected: Vec<_> = oracle
            .of_kind(tenant, EntityKind::Feedback)
            .iter()
            .map(|e| oracle.feedback(tenant, &e.id).unwrap())
            .collect();
        assert_eq!(feedback(&FeedbackFilter::default(), 37), expected);
        let filter = FeedbackFilter {
            team: Some(team("platform")),
            status: Some(FeedbackStatus::Processed),
            ..FeedbackFilter::default()
        };
        let filtered: Vec<_> = expected
            .iter()
            .filter(|v| v.team == team("platform") && v.status == FeedbackStatus::Processed)
            .cloned()
            .collect();
        assert_eq!(feedback(&filter, 5), filtered);

        let opportunities: Vec<_> = oracle
            .of_kind(tenant, EntityKind::Opportunity)
            .iter()
            .map(|e| oracle.opportunity(tenant, &e.id).unwrap())
            .collect();
        let listed = all_pages(at, 500, |page| {
            p.list_opportunities(tenant, &[], None, as_of, page)
        });
        assert_eq!(listed, opportunities);
        let open = [OpportunityStatus::New, OpportunityStatus::UnderReview];
        let listed = all_pages(at, 3, |page| {
            p.list_opportunities(tenant, &open, Some(&team("payments")), as_of, page)
        });
        let expected_open: Vec<_> = opportunities
            .iter()
            .filter(|v| open.contains(&v.status) && v.team == team("payments"))
            .cloned()
            .collect();
        assert_eq!(listed, expected_open);

        let decisions: Vec<_> = oracle
            .of_kind(tenant, EntityKind::Decision)
            .iter()
            .map(|e| oracle.decision(tenant, &e.id).unwrap())
            .collect();
        let listed = all_pages(at, 11, |page| {
            p.list_decisions(tenant, &DecisionFilter::default(), as_of, page)
        });
        assert_eq!(listed, decisions);
        let filter = DecisionFilter {
            status: Some("superseded".into()),
            kind: Some(DecisionKind::Triage),
            ..DecisionFilter::default()
        };
        let listed = all_pages(at, 2, |page| p.list_decisions(tenant, &filter, as_of, page));
        let expected_superseded: Vec<_> = decisions
            .iter()
            .filter(|d| d.status == "superseded" && d.kind == DecisionKind::Triage)
            .cloned()
            .collect();
        assert_eq!(listed, expected_superseded);

        let initiatives: Vec<_> = oracle
            .of_kind(tenant, EntityKind::Initiative)
            .iter()
            .map(|e| oracle.initiative(tenant, &e.id).unwrap())
            .collect();
        let listed = all_pages(at, 4, |page| {
            p.list_initiatives(tenant, &InitiativeFilter::default(), as_of, page)
        });
        assert_eq!(listed, initiatives);
        let filter = InitiativeFilter {
            at_risk: Some(true),
            ..InitiativeFilter::default()
        };
        let listed = all_pages(at, 4, |page| {
            p.list_initiatives(tenant, &filter, as_of, page)
        });
        let at_risk: Vec<_> = initiatives.iter().filter(|i| i.at_risk).cloned().collect();
        assert_eq!(listed, at_risk);

        // Rankings: the whole tenant, slices, each team; ranks of single opportunities.
        let ranking = oracle.ranking(tenant, None);
        assert!(ranking.len() <= 500, "the data set fits one ranking page");
        let answer = p.ranking(tenant, None, as_of, 0, 500).unwrap();
        assert_eq!(answer.position, at);
        assert_eq!(answer.value, ranking, "{tenant} ranking as of {at}");
        let slice: Vec<_> = ranking.iter().skip(3).take(5).cloned().collect();
        assert_eq!(p.ranking(tenant, None, as_of, 3, 5).unwrap().value, slice);
        for name in dataset::TEAMS {
            assert_eq!(
                p.ranking(tenant, Some(&team(name)), as_of, 0, 500)
                    .unwrap()
                    .value,
                oracle.ranking(tenant, Some(name)),
                "{tenant} {name} ranking as of {at}"
            );
        }
        for opportunity in &opportunities {
            let expected = ranking
                .iter()
                .find(|r| r.id == opportunity.id)
                .map(|r| r.rank);
            assert_eq!(
                p.rank_of(tenant, opportunity.id.as_str(), as_of)
                    .unwrap()
                    .value,
                expected,
                "rank of {}",
                opportunity.id
            );
        }

        // Aged out, by time; superseded decisions.
        let aged = oracle.aged.get(tenant).cloned().unwrap_or_default();
        assert_eq!(
            p.aged_out(tenant, Time(i64::MIN), Time(i64::MAX), as_of)
                .unwrap()
                .value,
            aged
        );
        if let Some(middle) = aged.get(aged.len() / 2) {
            let from = middle.at;
            let to = Time(from.0 + 30 * cairn_domain::DAY_MICROS);
            let window: Vec<_> = aged
                .iter()
                .filter(|a| a.at >= from && a.at < to)
                .cloned()
                .collect();
            assert_eq!(p.aged_out(tenant, from, to, as_of).unwrap().value, window);
        }
        let mut superseded: Vec<_> = decisions
            .iter()
            .filter(|d| d.superseded_by.is_some())
            .cloned()
            .collect();
        superseded.sort_by_key(|d| d.last_position);
        assert_eq!(p.superseded(tenant, as_of).unwrap().value, superseded);

        // Lineage graphs: well formed and made of recorded edges.
        for opportunity in opportunities.iter().take(10) {
            let root = EntityRef::new(EntityKind::Opportunity, opportunity.id.clone());
            for direction in [Direction::Upstream, Direction::Downstream, Direction::Both] {
                let graph = p
                    .graph(tenant, &root, direction, 4, 10_000, as_of)
                    .unwrap()
                    .value;
                assert_eq!(graph.nodes[0], (root.clone(), 0));
                assert!(!graph.truncated);
                let nodes: BTreeSet<_> = graph.nodes.iter().map(|(n, _)| n.clone()).collect();
                assert_eq!(nodes.len(), graph.nodes.len(), "each node once");
                for view in &graph.edges {
                    assert_eq!(
                        oracle.edges.get(&(tenant.to_owned(), view.edge.clone())),
                        Some(&view.position),
                        "a graph edge is a recorded edge"
                    );
                    assert!(nodes.contains(&view.edge.from) && nodes.contains(&view.edge.to));
                    let (up, down) = direction_of(&view.edge);
                    let distance =
                        |n: &EntityRef| graph.nodes.iter().find(|(x, _)| x == n).unwrap().1;
                    // Walked from `near` (within the depth) towards `far`, which the
                    // breadth-first walk reached at most one step further.
                    let (near, far) = match direction {
                        Direction::Upstream => (down, up),
                        Direction::Downstream => (up, down),
                        Direction::Both if distance(up) <= distance(down) => (up, down),
                        Direction::Both => (down, up),
                    };
                    assert!(distance(near) < 4 && distance(far) <= distance(near) + 1);
                }
            }
        }
    }
}

/// Graphs of both projections agree (the oracle has no graph of its own).
fn check_graphs_agree(a: &Projections, b: &Projections, oracle: &Oracle, as_of: Option<Position>) {
    for ((tenant, kind, id), _) in oracle.entities.iter().step_by(7) {
        let root = entity(*kind, id);
        for direction in [Direction::Upstream, Direction::Downstream, Direction::Both] {
            let left = a.graph(tenant, &root, direction, 6, 500, as_of).unwrap();
            let right = b.graph(tenant, &root, direction, 6, 500, as_of).unwrap();
            assert_eq!(left, right, "{tenant} {root} {direction:?} as of {as_of:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_folded_ledger_and_a_rebuild_answers_as_the_follower() {
    let mut driver = Driver::new();
    let followed = Arc::new(Projections::temporary().unwrap());
    let (stop, shutdown) = watch::channel(false);
    let follower = tokio::spawn(Arc::clone(&followed).follow(Arc::clone(&driver.store), shutdown));

    dataset::generate(&mut driver, 7, &TENANTS, 4_000).await;
    let head = driver.head().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    assert_eq!(followed.wait_for(head, deadline).await.unwrap(), head);

    let records = driver.records().await;
    let everything = Oracle::fold(&records, head);
    // The data set holds what the checks are about.
    let count = |kind| {
        everything
            .entities
            .keys()
            .filter(|(_, k, _)| *k == kind)
            .count()
    };
    assert!(records.len() > 3_000, "{} records", records.len());
    assert!(count(EntityKind::Feedback) > 200 && count(EntityKind::Initiative) > 20);
    let statuses: BTreeSet<OpportunityStatus> = everything
        .statuses
        .values()
        .flat_map(|history| history.iter().map(|(_, status)| *status))
        .collect();
    for wanted in [
        OpportunityStatus::Duplicate,
        OpportunityStatus::Declined,
        OpportunityStatus::Snoozed,
        OpportunityStatus::AgedOut,
        OpportunityStatus::Planned,
        OpportunityStatus::Shipped,
    ] {
        assert!(
            statuses.contains(&wanted),
            "no opportunity was ever {wanted}"
        );
    }
    assert!(everything.aged.values().map(Vec::len).sum::<usize>() > 5);
    assert!(
        everything
            .entities
            .values()
            .filter_map(|e| match &e.state {
                common::State::Decision(d) => d.status.clone(),
                _ => None,
            })
            .any(|s| s.as_str() == "superseded")
    );
    assert!(
        records
            .iter()
            .any(|r| r.envelope.stream.aggregate_type == "deploy"),
        "raw ledger events are mixed in"
    );

    let dir = tempfile::tempdir().unwrap();
    let rebuilt = Projections::rebuild(&*driver.store, dir.path())
        .await
        .unwrap();
    assert_eq!(rebuilt.applied(), head);
    // In small batches, each decided while sled writes the one before it: the same answers.
    let small_dir = tempfile::tempdir().unwrap();
    let in_small_batches = Projections::rebuild_in_batches_of(&*driver.store, small_dir.path(), 61)
        .await
        .unwrap();
    assert_eq!(in_small_batches.applied(), head);

    let checks = {
        let followed = Arc::clone(&followed);
        tokio::task::spawn_blocking(move || {
            check_answers(&followed, &everything, &everything, None);
            check_answers(&rebuilt, &everything, &everything, None);
            check_answers(&in_small_batches, &everything, &everything, None);
            check_graphs_agree(&followed, &rebuilt, &everything, None);
            check_graphs_agree(&followed, &in_small_batches, &everything, None);
            for tenth in 1..=10 {
                let at = Position(head.0 * tenth / 10 - tenth % 2);
                let oracle = Oracle::fold(&records, at);
                check_answers(&followed, &oracle, &everything, Some(at));
                check_answers(&rebuilt, &oracle, &everything, Some(at));
                check_answers(&in_small_batches, &oracle, &everything, Some(at));
                check_graphs_agree(&followed, &rebuilt, &oracle, Some(at));
                check_graphs_agree(&followed, &in_small_batches, &oracle, Some(at));
            }
        })
    };
    checks.await.unwrap();

    stop.send(true).unwrap();
    follower.await.unwrap().unwrap();
}
