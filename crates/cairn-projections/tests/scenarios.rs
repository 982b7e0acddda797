//! Hand-written scenarios with values worked out by hand: the ranking (ties, teams, statuses that
//! leave and rejoin it, as of earlier positions), lineage directions and limits, paging, and the
//! life of a projection directory (reopen, replays, gaps, records it refuses, waits, layout
//! changes).

mod common;

use std::sync::Arc;
use std::time::Duration;

use cairn_domain::opportunity::{OpportunityCommand, OpportunityStatus, Triage};
use cairn_domain::{DAY_MICROS, EntityKind, EntityRef, Relation, Team, Time};
use cairn_ledger::Position;
use cairn_projections::{
    Direction, FeedbackFilter, GRAPH_NODES_MAX, LINEAGE_DEPTH_MAX, PAGE_SIZE_MAX, PageRequest,
    ProjectionError, Projections, RELATION_DIRECTIONS, Upstream,
};
use common::steps::{self, entity, id};
use common::{Driver, Oracle};
use tokio::time::Instant;

const T: &str = "acme";

async fn follow_all(driver: &Driver, p: &Projections) {
    p.catch_up(&*driver.store).await.unwrap();
    assert_eq!(p.applied(), driver.head().await);
}

/// The ids of a ranking, checking ranks count from 1.
fn ranking(p: &Projections, team: Option<&str>, as_of: Option<Position>) -> Vec<String> {
    let team = team.map(|t| Team::new(t).unwrap());
    let ranked = p
        .ranking(T, team.as_ref(), as_of, 0, PAGE_SIZE_MAX)
        .unwrap()
        .value;
    for (index, r) in ranked.iter().enumerate() {
        assert_eq!(r.rank, index as u64 + 1);
    }
    ranked.into_iter().map(|r| r.id.to_string()).collect()
}

#[tokio::test]
async fn the_ranking_orders_by_score_then_id_and_follows_statuses_teams_and_time() {
    let mut d = Driver::new();
    for (opportunity, team) in [
        ("o-a", "platform"),
        ("o-b", "platform"),
        ("o-c", "payments"),
        ("o-d", "payments"),
        ("o-e", "platform"),
        ("o-f", "mobile"),
    ] {
        steps::opportunity(&mut d, T, opportunity, team).await;
    }
    // Scores (votes: ln(1 + total weight)): d 2.40, b = c 1.39, e 0.69, a = f 0.
    steps::vote(&mut d, T, "o-b", "u-1", 3).await;
    steps::vote(&mut d, T, "o-c", "u-1", 3).await;
    steps::vote(&mut d, T, "o-d", "u-2", 10).await;
    steps::vote(&mut d, T, "o-e", "u-3", 1).await;
    let p = Projections::temporary().unwrap();
    follow_all(&d, &p).await;
    let before = p.applied();
    let everything = ["o-d", "o-b", "o-c", "o-e", "o-a", "o-f"];
    assert_eq!(ranking(&p, None, None), everything, "ties by id");
    assert_eq!(ranking(&p, Some("platform"), None), ["o-b", "o-e", "o-a"]);
    assert_eq!(ranking(&p, Some("payments"), None), ["o-d", "o-c"]);
    assert_eq!(ranking(&p, Some("nobody"), None), Vec::<String>::new());
    let slice = p.ranking(T, None, None, 1, 2).unwrap().value;
    assert_eq!(
        slice
            .iter()
            .map(|r| (r.rank, r.id.as_str()))
            .collect::<Vec<_>>(),
        [(2, "o-b"), (3, "o-c")]
    );
    let top = &p.ranking(T, None, None, 0, 1).unwrap().value[0];
    let view = p.opportunity(T, "o-d", None).unwrap().value.unwrap();
    assert!((top.score - 11f64.ln()).abs() < 1e-12, "{}", top.score);
    assert_eq!(Some(top.score), view.score);
    assert_eq!(Some(top.score_position), view.score_position);
    assert_eq!(
        (top.title.as_str(), top.team.as_str()),
        ("title of o-d", "payments")
    );
    assert_eq!(p.rank_of(T, "o-c", None).unwrap().value, Some(3));
    assert_eq!(p.ranking(T, None, None, 6, 10).unwrap().value, vec![]);

    // Declined, duplicate and snoozed leave the ranking; the canonical takes the votes.
    steps::decision(
        &mut d,
        T,
        "d-1",
        vec![entity(EntityKind::Opportunity, "o-b")],
        None,
    )
    .await;
    let decline = Triage::Decline {
        reason: "not now".into(),
        decision: id("d-1"),
    };
    steps::on_opportunity(&mut d, T, "o-b", steps::triage(decline)).await;
    let duplicate = Triage::Duplicate {
        canonical: id("o-d"),
    };
    steps::on_opportunity(&mut d, T, "o-c", steps::triage(duplicate)).await;
    let (state, _) = d
        .state::<cairn_domain::opportunity::Opportunity>(T, "o-c")
        .await;
    let absorb = OpportunityCommand::AbsorbDuplicate {
        duplicate: id("o-c"),
        evidence: state.evidence.clone(),
        votes: state.votes.values().cloned().collect(),
    };
    steps::on_opportunity(&mut d, T, "o-d", absorb).await;
    let until = Time(d.now.0 + 3 * DAY_MICROS);
    steps::on_opportunity(&mut d, T, "o-e", steps::triage(Triage::Snooze { until })).await;
    follow_all(&d, &p).await;
    let triaged = p.applied();
    assert_eq!(ranking(&p, None, None), ["o-d", "o-a", "o-f"]);
    let view = p.opportunity(T, "o-d", None).unwrap().value.unwrap();
    assert_eq!((view.voters, view.vote_weight), (2, 13));
    assert!((view.score.unwrap() - 14f64.ln()).abs() < 1e-12);
    assert_eq!(p.rank_of(T, "o-b", None).unwrap().value, None);
    assert_eq!(
        ranking(&p, None, Some(before)),
        everything,
        "as of before triage"
    );
    assert_eq!(
        ranking(&p, Some("platform"), Some(before)),
        ["o-b", "o-e", "o-a"]
    );
    assert_eq!(p.rank_of(T, "o-c", Some(before)).unwrap().value, Some(3));

    // Aged out leaves; new evidence reopens it and it comes back; a snooze ends.
    d.advance_hours(24 * 4);
    let rule = OpportunityCommand::AgeOut(steps::eager_aging_rule());
    let aged_at = steps::on_opportunity(&mut d, T, "o-a", rule).await;
    follow_all(&d, &p).await;
    let aged = p.applied();
    assert_eq!(ranking(&p, None, None), ["o-d", "o-f"]);
    let entries = p
        .aged_out(T, Time(i64::MIN), Time(i64::MAX), None)
        .unwrap()
        .value;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (
            entries[0].opportunity.as_str(),
            entries[0].rule.as_str(),
            entries[0].rule_version,
            entries[0].position
        ),
        ("o-a", "idle-a-day", 2, aged_at)
    );
    let window = p.aged_out(T, entries[0].at, Time(entries[0].at.0 + 1), None);
    assert_eq!(window.unwrap().value, entries);
    let after = p.aged_out(T, Time(entries[0].at.0 + 1), Time(i64::MAX), None);
    assert_eq!(after.unwrap().value, vec![]);
    assert_eq!(
        p.aged_out(T, Time(i64::MIN), Time(i64::MAX), Some(triaged))
            .unwrap()
            .value,
        vec![],
        "not aged out yet as of then"
    );
    steps::feedback(&mut d, T, "f-1", "platform").await;
    steps::evidence(&mut d, T, "o-a", entity(EntityKind::Feedback, "f-1")).await;
    steps::on_opportunity(&mut d, T, "o-e", OpportunityCommand::Wake).await;
    follow_all(&d, &p).await;
    assert_eq!(ranking(&p, None, None), ["o-d", "o-e", "o-a", "o-f"]);
    let view = p.opportunity(T, "o-a", None).unwrap().value.unwrap();
    assert_eq!(
        (view.status, view.aged_out.clone()),
        (OpportunityStatus::New, None)
    );
    assert_eq!(view.score, Some(0.5), "one feedback item at weight 0.5");
    assert_eq!(
        p.aged_out(T, Time(i64::MIN), Time(i64::MAX), None)
            .unwrap()
            .value,
        entries,
        "the aging is history"
    );
    let statuses: Vec<OpportunityStatus> = p
        .status_history(T, "o-a", None)
        .unwrap()
        .value
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        statuses,
        [
            OpportunityStatus::New,
            OpportunityStatus::AgedOut,
            OpportunityStatus::New
        ]
    );
    assert_eq!(ranking(&p, None, Some(aged)), ["o-d", "o-f"]);
    assert_eq!(ranking(&p, None, Some(triaged)), ["o-d", "o-a", "o-f"]);

    // Every answer agrees with the domain's fold, as of each position.
    let records = d.records().await;
    for at in 1..=p.applied().0 {
        let oracle = Oracle::fold(&records, Position(at));
        let expected: Vec<String> = oracle
            .ranking(T, None)
            .into_iter()
            .map(|r| r.id.to_string())
            .collect();
        assert_eq!(
            ranking(&p, None, Some(Position(at))),
            expected,
            "as of {at}"
        );
    }
}

#[tokio::test]
async fn an_absorbed_vote_replaces_the_canonical_one_only_when_newer() {
    let mut d = Driver::new();
    steps::opportunity(&mut d, T, "o-x", "platform").await;
    steps::opportunity(&mut d, T, "o-y", "platform").await;
    steps::opportunity(&mut d, T, "o-z", "platform").await;
    // Same principal, same time: the canonical opportunity keeps its own vote.
    steps::vote(&mut d, T, "o-x", "u-9", 2).await;
    steps::vote(&mut d, T, "o-y", "u-9", 5).await;
    // An older vote on the canonical one is replaced by the duplicate's newer one.
    steps::vote(&mut d, T, "o-z", "u-8", 1).await;
    d.advance_hours(1);
    steps::vote(&mut d, T, "o-x", "u-8", 4).await;
    let duplicate = Triage::Duplicate {
        canonical: id("o-y"),
    };
    steps::on_opportunity(&mut d, T, "o-x", steps::triage(duplicate)).await;
    let (state, _) = d
        .state::<cairn_domain::opportunity::Opportunity>(T, "o-x")
        .await;
    let absorb = OpportunityCommand::AbsorbDuplicate {
        duplicate: id("o-x"),
        evidence: vec![],
        votes: state.votes.values().cloned().collect(),
    };
    steps::on_opportunity(&mut d, T, "o-y", absorb).await;
    let p = Projections::temporary().unwrap();
    follow_all(&d, &p).await;
    let view = p.opportunity(T, "o-y", None).unwrap().value.unwrap();
    assert_eq!((view.voters, view.vote_weight), (2, 5 + 4));
    let oracle = Oracle::fold(&d.records().await, p.applied());
    assert_eq!(Some(view), oracle.opportunity(T, "o-y"));
}

#[test]
fn every_relation_has_one_direction() {
    for relation in Relation::ALL {
        assert_eq!(
            RELATION_DIRECTIONS
                .iter()
                .filter(|(r, _)| *r == relation)
                .count(),
            1,
            "{relation}"
        );
    }
    let upstream_of = |relation| {
        RELATION_DIRECTIONS
            .iter()
            .find(|(r, _)| *r == relation)
            .unwrap()
            .1
    };
    // feedback -evidence_for-> opportunity -decided_by-> decision: the arrows point downstream;
    // initiative -implements-> opportunity and newer -supersedes-> older point upstream.
    assert_eq!(upstream_of(Relation::EvidenceFor), Upstream::From);
    assert_eq!(upstream_of(Relation::DecidedBy), Upstream::From);
    assert_eq!(upstream_of(Relation::DuplicateOf), Upstream::From);
    assert_eq!(upstream_of(Relation::Implements), Upstream::To);
    assert_eq!(upstream_of(Relation::Supersedes), Upstream::To);
    assert_eq!(upstream_of(Relation::DerivedFrom), Upstream::To);
    assert_eq!(upstream_of(Relation::Verifies), Upstream::To);
}

fn nodes(graph: &cairn_projections::Graph) -> Vec<(String, usize)> {
    let mut nodes: Vec<(String, usize)> = graph
        .nodes
        .iter()
        .map(|(n, distance)| (n.to_string(), *distance))
        .collect();
    nodes.sort();
    nodes
}

fn expect(nodes: &[(&str, usize)]) -> Vec<(String, usize)> {
    let mut nodes: Vec<(String, usize)> = nodes.iter().map(|(n, d)| (n.to_string(), *d)).collect();
    nodes.sort();
    nodes
}

#[tokio::test]
async fn lineage_goes_downstream_from_feedback_and_upstream_from_decisions() {
    let mut d = Driver::new();
    for f in ["f-1", "f-2", "f-3"] {
        steps::feedback(&mut d, T, f, "platform").await;
    }
    steps::signal(&mut d, T, "s-1", 500.0).await;
    steps::signal(&mut d, T, "s-2", 100.0).await;
    steps::opportunity(&mut d, T, "o-1", "platform").await;
    steps::opportunity(&mut d, T, "o-2", "platform").await;
    steps::evidence(&mut d, T, "o-1", entity(EntityKind::Feedback, "f-1")).await;
    steps::evidence(&mut d, T, "o-1", entity(EntityKind::Feedback, "f-2")).await;
    // The score reads the latency metric from the signal: `o-1 -derived_from-> s-1`.
    steps::evidence(&mut d, T, "o-1", entity(EntityKind::Signal, "s-1")).await;
    steps::evidence(&mut d, T, "o-2", entity(EntityKind::Feedback, "f-3")).await;
    let duplicate = Triage::Duplicate {
        canonical: id("o-1"),
    };
    steps::on_opportunity(&mut d, T, "o-2", steps::triage(duplicate)).await;
    let decided = steps::decision(
        &mut d,
        T,
        "d-1",
        vec![entity(EntityKind::Opportunity, "o-1")],
        None,
    )
    .await;
    let accept = Triage::Accept {
        decision: Some(id("d-1")),
    };
    steps::on_opportunity(&mut d, T, "o-1", steps::triage(accept)).await;
    let p = Projections::temporary().unwrap();
    follow_all(&d, &p).await;
    let before_initiative = p.applied();
    steps::initiative(&mut d, T, "i-1", &["o-1"]).await;
    steps::ship_and_validate(&mut d, T, "o-1", "s-2").await;
    let replaced = vec![entity(EntityKind::Opportunity, "o-1")];
    steps::decision(&mut d, T, "d-2", replaced, Some("d-1")).await;
    steps::supersede(&mut d, T, "d-1", "d-2").await;
    follow_all(&d, &p).await;

    let f1 = entity(EntityKind::Feedback, "f-1");
    let graph = |root: &EntityRef, direction, depth, max_nodes, as_of| {
        p.graph(T, root, direction, depth, max_nodes, as_of)
            .unwrap()
            .value
    };
    let downstream = graph(&f1, Direction::Downstream, LINEAGE_DEPTH_MAX, 100, None);
    assert_eq!(
        nodes(&downstream),
        expect(&[
            ("feedback/f-1", 0),
            ("opportunity/o-1", 1),
            ("decision/d-1", 2),
            ("decision/d-2", 2),
            ("initiative/i-1", 2),
            ("signal/s-2", 2),
        ])
    );
    assert!(!downstream.truncated);
    assert_eq!(
        nodes(&graph(&f1, Direction::Downstream, 1, 100, None)),
        expect(&[("feedback/f-1", 0), ("opportunity/o-1", 1)])
    );
    assert_eq!(
        nodes(&graph(
            &f1,
            Direction::Downstream,
            16,
            100,
            Some(before_initiative)
        )),
        expect(&[
            ("feedback/f-1", 0),
            ("opportunity/o-1", 1),
            ("decision/d-1", 2),
        ]),
        "as of before the initiative, the verifying signal and the second decision"
    );

    let d2 = entity(EntityKind::Decision, "d-2");
    let upstream = graph(&d2, Direction::Upstream, LINEAGE_DEPTH_MAX, 100, None);
    assert_eq!(
        nodes(&upstream),
        expect(&[
            ("decision/d-2", 0),
            ("decision/d-1", 1),
            ("opportunity/o-1", 1),
            ("feedback/f-1", 2),
            ("feedback/f-2", 2),
            // Through the duplicate (never absorbed here).
            ("feedback/f-3", 3),
            ("opportunity/o-2", 2),
            ("signal/s-1", 2),
        ])
    );
    let relations: std::collections::BTreeSet<Relation> =
        upstream.edges.iter().map(|e| e.edge.relation).collect();
    assert_eq!(
        relations,
        [
            Relation::EvidenceFor,
            Relation::DuplicateOf,
            Relation::DecidedBy,
            Relation::Supersedes,
            Relation::DerivedFrom
        ]
        .into_iter()
        .collect()
    );

    // Both ways from the signal that verified the outcome reaches everything.
    let both = graph(
        &entity(EntityKind::Signal, "s-2"),
        Direction::Both,
        16,
        100,
        None,
    );
    assert_eq!(both.nodes.len(), 10, "every entity of the scenario");

    // The node limit cuts the walk and keeps only edges between the nodes it kept.
    let cut = graph(&f1, Direction::Downstream, 16, 3, None);
    assert!(cut.truncated);
    assert_eq!(cut.nodes.len(), 3);
    for view in &cut.edges {
        assert!(cut.nodes.iter().any(|(n, _)| n == &view.edge.from));
        assert!(cut.nodes.iter().any(|(n, _)| n == &view.edge.to));
    }

    // An edge keeps the position that first recorded it (the proposal names its subject).
    let o1 = entity(EntityKind::Opportunity, "o-1");
    let decided_by: Vec<_> = p
        .edges_from(T, &o1, None)
        .unwrap()
        .value
        .into_iter()
        .filter(|e| e.edge.relation == Relation::DecidedBy)
        .map(|e| (e.edge.to.to_string(), e.position))
        .collect();
    assert_eq!(decided_by[0].0, "decision/d-1");
    assert!(
        decided_by[0].1 < decided,
        "recorded by the proposal, before the acceptance"
    );
    let evidence: Vec<String> = p
        .evidence(T, &id("o-1"), None)
        .unwrap()
        .value
        .into_iter()
        .map(|e| e.edge.from.to_string())
        .collect();
    assert_eq!(evidence, ["feedback/f-1", "feedback/f-2", "signal/s-1"]);
    let feedback = p.feedback(T, "f-1", None).unwrap().value.unwrap();
    assert_eq!(feedback.opportunities, [id("o-1")]);

    // Limits.
    for (depth, max_nodes, field) in [
        (0, 10, "depth"),
        (LINEAGE_DEPTH_MAX + 1, 10, "depth"),
        (3, 0, "max_nodes"),
        (3, GRAPH_NODES_MAX + 1, "max_nodes"),
    ] {
        match p.graph(T, &f1, Direction::Both, depth, max_nodes, None) {
            Err(ProjectionError::InvalidArgument { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{depth} {max_nodes}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn pages_are_limited_and_a_token_pins_the_first_page_position() {
    let mut d = Driver::new();
    for n in 1..=5 {
        steps::feedback(&mut d, T, &format!("f-{n}"), "platform").await;
    }
    let p = Projections::temporary().unwrap();
    follow_all(&d, &p).await;
    let filter = FeedbackFilter::default();
    for size in [0, PAGE_SIZE_MAX + 1] {
        let page = PageRequest { size, token: None };
        match p.list_feedback(T, &filter, None, &page) {
            Err(
                error @ ProjectionError::InvalidArgument {
                    field: "page_size", ..
                },
            ) => {
                assert!(error.to_string().contains("PAGE_SIZE_MAX"), "{error}")
            }
            other => panic!("{size}: {other:?}"),
        }
    }
    for limit in [0, PAGE_SIZE_MAX + 1] {
        assert!(matches!(
            p.ranking(T, None, None, 0, limit),
            Err(ProjectionError::InvalidArgument { field: "limit", .. })
        ));
    }
    for token in ["zzz", "1.2.3", "999999.1", "3.4", &"9".repeat(80)] {
        let page = PageRequest {
            size: 2,
            token: Some(token.to_owned()),
        };
        assert!(
            matches!(
                p.list_feedback(T, &filter, None, &page),
                Err(ProjectionError::InvalidArgument {
                    field: "page_token",
                    ..
                })
            ),
            "{token}"
        );
    }

    let first = p
        .list_feedback(
            T,
            &filter,
            None,
            &PageRequest {
                size: 2,
                token: None,
            },
        )
        .unwrap();
    let pinned = first.position;
    let ids = |page: &cairn_projections::Page<cairn_projections::FeedbackView>| {
        page.items
            .iter()
            .map(|v| v.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first.value), ["f-1", "f-2"]);
    for n in 6..=8 {
        steps::feedback(&mut d, T, &format!("f-{n}"), "platform").await;
    }
    follow_all(&d, &p).await;
    let second = p
        .list_feedback(
            T,
            &filter,
            None,
            &PageRequest {
                size: 2,
                token: first.value.next_page_token.clone(),
            },
        )
        .unwrap();
    assert_eq!(
        (ids(&second.value), second.position),
        (vec!["f-3".into(), "f-4".into()], pinned)
    );
    let third = p
        .list_feedback(
            T,
            &filter,
            None,
            &PageRequest {
                size: 2,
                token: second.value.next_page_token.clone(),
            },
        )
        .unwrap();
    assert_eq!(ids(&third.value), ["f-5"]);
    assert_eq!(
        third.value.next_page_token, None,
        "the pinned list ends at f-5"
    );
    let now = p
        .list_feedback(
            T,
            &filter,
            None,
            &PageRequest {
                size: 10,
                token: None,
            },
        )
        .unwrap();
    assert_eq!(now.value.items.len(), 8);
    let as_of = p
        .list_feedback(
            T,
            &filter,
            Some(pinned),
            &PageRequest {
                size: 10,
                token: None,
            },
        )
        .unwrap();
    assert_eq!(as_of.value.items.len(), 5);
}

#[tokio::test]
async fn a_reopened_directory_keeps_its_views_and_replays_are_harmless() {
    let mut d = Driver::new();
    common::dataset::generate(&mut d, 11, &["acme", "globex"], 400).await;
    let records = d.records().await;
    let dir = tempfile::tempdir().unwrap();
    let snapshot = |p: &Projections| {
        (
            p.applied(),
            p.ranking("acme", None, None, 0, PAGE_SIZE_MAX).unwrap(),
            p.list_opportunities(
                "globex",
                &[],
                None,
                None,
                &PageRequest {
                    size: 500,
                    token: None,
                },
            )
            .unwrap(),
            p.list_feedback(
                "acme",
                &FeedbackFilter::default(),
                None,
                &PageRequest {
                    size: 500,
                    token: None,
                },
            )
            .unwrap(),
        )
    };
    let rebuilt = Projections::rebuild(&*d.store, dir.path()).await.unwrap();
    let before = snapshot(&rebuilt);
    assert_eq!(before.0, d.head().await);
    drop(rebuilt);
    let reopened = Projections::open(dir.path()).unwrap();
    assert_eq!(snapshot(&reopened), before, "reopened after drop");

    // The same records again, whole or overlapping, change nothing.
    reopened.apply(&records).unwrap();
    reopened.apply(&records[records.len() / 2..]).unwrap();
    assert_eq!(snapshot(&reopened), before);
    drop(reopened);

    // Applied one record at a time, the views are the same as applied in large batches.
    let single = Projections::temporary().unwrap();
    for record in &records {
        single.apply(std::slice::from_ref(record)).unwrap();
    }
    assert_eq!(snapshot(&single), before);
}

#[tokio::test]
async fn a_gap_is_refused_and_raw_events_only_advance_the_position() {
    let mut d = Driver::new();
    steps::opportunity(&mut d, T, "o-1", "platform").await;
    d.raw(T, "deploy", "web").await;
    steps::vote(&mut d, T, "o-1", "u-1", 2).await;
    d.raw(T, "deploy", "web").await;
    let records = d.records().await;
    assert_eq!(records.len(), 6, "created, scored, raw, voted, scored, raw");
    let p = Projections::temporary().unwrap();
    p.apply(&records[..2]).unwrap();
    match p.apply(&records[3..]) {
        Err(ProjectionError::Gap { applied, got }) => {
            assert_eq!((applied, got), (Position(2), Position(4)))
        }
        other => panic!("{other:?}"),
    }
    let with_inner_gap = [records[2].clone(), records[4].clone()];
    assert!(matches!(
        p.apply(&with_inner_gap),
        Err(ProjectionError::Gap {
            applied: Position(3),
            got: Position(5)
        })
    ));
    assert_eq!(
        p.applied(),
        Position(2),
        "nothing of a refused slice is applied"
    );
    p.apply(&records[2..3]).unwrap();
    assert_eq!(
        p.applied(),
        Position(3),
        "a raw event advances the position"
    );
    p.apply(&records).unwrap();
    assert_eq!(p.applied(), Position(6));
    let view = p.opportunity(T, "o-1", None).unwrap().value.unwrap();
    assert_eq!((view.voters, view.last_position), (1, Position(5)));
    match p.opportunity(T, "o-1", Some(Position(7))) {
        Err(ProjectionError::NotYetApplied { wanted, applied }) => {
            assert_eq!((wanted, applied), (Position(7), Position(6)))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p.opportunity(T, "o-1", Some(Position(1)))
            .unwrap()
            .value
            .unwrap()
            .score,
        None,
        "not yet scored as of its creation"
    );
    assert_eq!(
        p.opportunity(T, "o-1", Some(Position(0))).unwrap().value,
        None
    );
}

#[tokio::test]
async fn a_record_the_domain_never_wrote_stops_the_projection_at_its_position() {
    let mut d = Driver::new();
    steps::opportunity(&mut d, T, "o-1", "platform").await;
    let garbage = d
        .raw_domain(
            T,
            EntityKind::Opportunity,
            "o-1",
            "opportunity.voted",
            vec![0xff; 3],
        )
        .await;
    let p = Projections::temporary().unwrap();
    let records = d.records().await;
    match p.apply(&records) {
        Err(ProjectionError::Decode { position, .. }) => assert_eq!(position, garbage),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.applied(), Position::ZERO, "the batch is all or nothing");
    p.apply(&records[..garbage.0 as usize - 1]).unwrap();

    // A creation that is not its stream's first record.
    let mut d2 = Driver::new();
    steps::opportunity(&mut d2, T, "o-1", "platform").await;
    let (state, _) = d2
        .state::<cairn_domain::opportunity::Opportunity>(T, "o-1")
        .await;
    let created =
        cairn_domain::Event::Opportunity(cairn_domain::opportunity::OpportunityEvent::Created {
            id: id("o-1"),
            draft: state.draft.unwrap(),
            created_at: Time(0),
        })
        .encode();
    let again = d2
        .raw_domain(
            T,
            EntityKind::Opportunity,
            "o-1",
            created.event_type,
            created.clear,
        )
        .await;
    match Projections::temporary().unwrap().apply(&d2.records().await) {
        Err(ProjectionError::Corrupt(message)) => {
            assert!(message.contains(&again.to_string()), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // A well-formed event for an opportunity that was never created.
    let mut d = Driver::new();
    let vote = cairn_domain::Event::Opportunity(cairn_domain::opportunity::OpportunityEvent::Woke);
    let encoded = vote.encode();
    let orphan = d
        .raw_domain(
            T,
            EntityKind::Opportunity,
            "o-9",
            encoded.event_type,
            encoded.clear,
        )
        .await;
    let p = Projections::temporary().unwrap();
    match p.apply(&d.records().await) {
        Err(ProjectionError::Corrupt(message)) => {
            assert!(message.contains(&orphan.to_string()), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_returns_once_applied_or_says_how_far_it_got() {
    let mut d = Driver::new();
    for n in 1..=6 {
        steps::feedback(&mut d, T, &format!("f-{n}"), "platform").await;
    }
    let records = d.records().await;
    let p = Arc::new(Projections::temporary().unwrap());
    p.apply(&records[..3]).unwrap();
    let past = Instant::now() - Duration::from_secs(1);
    assert_eq!(p.wait_for(Position(2), past).await.unwrap(), Position(3));
    match p.wait_for(Position(5), Instant::now()).await {
        Err(ProjectionError::DeadlineExceeded { wanted, reached }) => {
            assert_eq!((wanted, reached), (Position(5), Position(3)))
        }
        other => panic!("{other:?}"),
    }
    let waiter = {
        let p = Arc::clone(&p);
        tokio::spawn(async move {
            p.wait_for(Position(5), Instant::now() + Duration::from_secs(60))
                .await
        })
    };
    let applier = Arc::clone(&p);
    tokio::task::spawn_blocking(move || applier.apply(&records[3..]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), Position(6));
    let mut watch = p.watch();
    assert_eq!(*watch.borrow_and_update(), Position(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_applies_new_records_and_stops_on_shutdown() {
    let mut d = Driver::new();
    steps::feedback(&mut d, T, "f-1", "platform").await;
    let p = Arc::new(Projections::temporary().unwrap());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(Arc::clone(&p).follow(Arc::clone(&d.store), shutdown));
    let deadline = || Instant::now() + Duration::from_secs(60);
    p.wait_for(d.head().await, deadline()).await.unwrap();
    steps::feedback(&mut d, T, "f-2", "platform").await;
    p.wait_for(d.head().await, deadline()).await.unwrap();
    assert!(p.feedback(T, "f-2", None).unwrap().value.is_some());
    drop(stop);
    follower.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_directory_of_another_layout_is_cleared_to_be_rebuilt() {
    let mut d = Driver::new();
    steps::feedback(&mut d, T, "f-1", "platform").await;
    let dir = tempfile::tempdir().unwrap();
    let p = Projections::rebuild(&*d.store, dir.path()).await.unwrap();
    assert_eq!(p.applied(), Position(1));
    drop(p);
    {
        // sled may hold the lock a moment after the drop (see `Projections::open`).
        let db = (0..500)
            .find_map(|_| {
                sled::open(dir.path())
                    .map_err(|_| std::thread::sleep(Duration::from_millis(10)))
                    .ok()
            })
            .expect("the directory opens");
        let tree = db.open_tree("views").unwrap();
        tree.insert(b"m\0format", &1u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let p = Projections::open(dir.path()).unwrap();
    assert_eq!(p.applied(), Position::ZERO);
    assert_eq!(p.feedback(T, "f-1", None).unwrap().value, None);
    p.catch_up(&*d.store).await.unwrap();
    assert!(p.feedback(T, "f-1", None).unwrap().value.is_some());
}

/// On one thread, appends never yield, so a burst outruns the live feed's buffer
/// (`LIVE_BUFFER_RECORDS`) before the follower reads a record of it: the follower is cut off,
/// resubscribes from its applied position and still applies every record.
#[tokio::test]
async fn a_follower_cut_off_by_a_burst_resubscribes_and_catches_up() {
    let mut d = Driver::new();
    steps::opportunity(&mut d, T, "o-1", "platform").await;
    let p = Arc::new(Projections::temporary().unwrap());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(Arc::clone(&p).follow(Arc::clone(&d.store), shutdown));
    let deadline = || Instant::now() + Duration::from_secs(120);
    p.wait_for(d.head().await, deadline()).await.unwrap();
    // Give the follower time to finish its catch-up and subscribe, so the burst overruns a live
    // subscription (the cut-off path). The assertions hold whichever path it takes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let burst = 2 * cairn_store::limits::LIVE_BUFFER_RECORDS + 100;
    for n in 0..burst {
        if n % 1000 == 0 {
            steps::vote(&mut d, T, "o-1", &format!("u-{n}"), 1).await;
        } else {
            d.raw(T, "deploy", "web").await;
        }
    }
    let head = d.head().await;
    assert_eq!(p.wait_for(head, deadline()).await.unwrap(), head);
    let view = p.opportunity(T, "o-1", None).unwrap().value.unwrap();
    assert_eq!(view.voters, burst.div_ceil(1000) as u64);
    stop.send(true).unwrap();
    follower.await.unwrap().unwrap();
}

/// A hot opportunity: hundreds of votes, each rescoring it, in one batch, so its history is
/// stored in several chunks; every answer as of every position is still exact.
#[tokio::test]
async fn a_hot_opportunity_is_exact_as_of_every_position() {
    let mut d = Driver::new();
    steps::opportunity(&mut d, T, "o-hot", "platform").await;
    for n in 0..700 {
        if n == 350 {
            steps::on_opportunity(&mut d, T, "o-hot", OpportunityCommand::StartReview).await;
        }
        steps::vote(&mut d, T, "o-hot", &format!("u-{}", n % 500), 1 + n % 3).await;
    }
    let records = d.records().await;
    assert!(records.len() > 1_300);
    let p = Projections::temporary().unwrap();
    p.apply(&records).unwrap();
    let mut oracle = Oracle::default();
    for record in &records {
        oracle.apply(record);
        let at = Some(record.position());
        assert_eq!(
            p.opportunity(T, "o-hot", at).unwrap().value,
            oracle.opportunity(T, "o-hot"),
            "as of {}",
            record.position()
        );
    }
    let key = (T.to_owned(), "o-hot".to_owned());
    for at in [1, 2, 3, 500, 701, 702, 1_000, records.len() as u64] {
        let folded = Oracle::fold(&records, Position(at));
        assert_eq!(
            p.score_history(T, "o-hot", Some(Position(at)))
                .unwrap()
                .value,
            folded.scores.get(&key).cloned().unwrap_or_default()
        );
        assert_eq!(
            p.status_history(T, "o-hot", Some(Position(at)))
                .unwrap()
                .value,
            folded.statuses.get(&key).cloned().unwrap_or_default()
        );
    }
    let view = p.opportunity(T, "o-hot", None).unwrap().value.unwrap();
    assert_eq!(view.voters, 500);
}

/// A feedback item that is evidence for many opportunities: its edges spill from its view to a
/// chunk, and each is recorded twice (the evidence, then the link). Rebuilt in batches of one to
/// three records, each decided before the one before it is written (over its pending writes), every
/// graph as of every position is the same as applied in one batch.
#[tokio::test]
async fn edges_spilled_to_chunks_are_the_same_in_batches_of_any_size() {
    let mut d = Driver::new();
    steps::feedback(&mut d, T, "f-1", "platform").await;
    for n in 0..30 {
        let opportunity = format!("o-{n}");
        steps::opportunity(&mut d, T, &opportunity, "platform").await;
        steps::evidence(&mut d, T, &opportunity, entity(EntityKind::Feedback, "f-1")).await;
    }
    let records = d.records().await;
    let whole = Projections::temporary().unwrap();
    whole.apply(&records).unwrap();
    let roots = [
        entity(EntityKind::Feedback, "f-1"),
        entity(EntityKind::Opportunity, "o-0"),
        entity(EntityKind::Opportunity, "o-29"),
    ];
    let graph = |p: &Projections, root, direction, at| p.graph(T, root, direction, 3, 500, at);
    let downstream = graph(&whole, &roots[0], Direction::Downstream, None).unwrap();
    assert_eq!(downstream.value.nodes.len(), 31, "{downstream:?}");
    for size in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let batched = Projections::rebuild_in_batches_of(&*d.store, dir.path(), size)
            .await
            .unwrap();
        assert_eq!(batched.applied(), whole.applied());
        let positions = (1..=whole.applied().0).map(|p| Some(Position(p)));
        for at in positions.chain([None]) {
            for root in &roots {
                for direction in [Direction::Upstream, Direction::Downstream, Direction::Both] {
                    assert_eq!(
                        graph(&batched, root, direction, at).unwrap(),
                        graph(&whole, root, direction, at).unwrap(),
                        "batches of {size}, {root} {direction:?} as of {at:?}"
                    );
                }
            }
        }
    }
}
