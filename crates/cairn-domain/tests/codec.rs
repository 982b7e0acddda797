//! The codec: every event round-trips, the feedback's personal part is encoded apart under its
//! data subject, malformed input is refused, and each event names its lineage edges in the
//! direction DOMAIN.md draws them.

mod common;

use std::collections::BTreeSet;

use cairn_domain::codec::{CodecError, SCHEMA_VERSION, StoredPersonal};
use cairn_domain::decision::DecisionEvent;
use cairn_domain::feedback::{FeedbackContent, FeedbackEvent, Personal};
use cairn_domain::initiative::InitiativeEvent;
use cairn_domain::opportunity::{OpportunityEvent, Validation};
use cairn_domain::{Edge, EntityKind, EntityRef, Event, Relation, Visibility};
use common::{
    SURVEY, day, decision_content, entity, feedback_content, feedback_evidence, id,
    initiative_draft, observation, samples, signal_evidence, strings, team,
};

/// Decodes an encoded event with its personal part opened.
fn round_trip(event: &Event) -> Result<Event, CodecError> {
    let encoded = event.encode();
    let personal = match &encoded.personal {
        Some(part) => StoredPersonal::Open(&part.bytes),
        None => StoredPersonal::None,
    };
    Event::decode(
        event.kind().as_str(),
        encoded.event_type,
        encoded.schema_version,
        &encoded.clear,
        personal,
    )
}

#[test]
fn every_variant_has_a_sample() {
    samples::every_variant_has_a_sample();
}

#[test]
fn every_event_round_trips() {
    for event in samples::all() {
        let encoded = event.encode();
        assert_eq!(encoded.event_type, event.event_type());
        assert_eq!(encoded.schema_version, SCHEMA_VERSION);
        assert_eq!(
            round_trip(&event).as_ref(),
            Ok(&event),
            "{}",
            event.event_type()
        );
    }
}

#[test]
fn event_types_are_distinct_and_named_after_their_kind() {
    let mut seen = BTreeSet::new();
    for event in samples::all() {
        let event_type = event.event_type();
        let (kind, name) = event_type.split_once('.').expect("kind.name");
        assert_eq!(kind, event.kind().as_str(), "{event_type}");
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{event_type}"
        );
        assert!(seen.insert(event_type), "{event_type} twice");
    }
    assert_eq!(seen.len(), samples::VARIANTS);
}

fn received(content: Personal<FeedbackContent>) -> Event {
    Event::Feedback(FeedbackEvent::Received {
        id: id("f-1"),
        team: team("platform"),
        source: SURVEY,
        tags: strings(&["ci"]),
        outcome_tags: vec![],
        visibility: Visibility::Open,
        received_at: day(1),
        content,
    })
}

#[test]
fn the_feedback_text_and_submitter_are_apart_under_the_submitter() {
    let content = feedback_content(Some("bob"));
    let encoded = received(Personal::Present(content.clone())).encode();
    let personal = encoded.personal.expect("a personal part");
    assert_eq!(personal.subject, "bob");
    // The clear part holds neither the text nor the submitter.
    let contains =
        |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(&encoded.clear, content.text.as_bytes()));
    assert!(!contains(&encoded.clear, b"bob"));
    assert!(contains(&personal.bytes, content.text.as_bytes()));
    assert!(contains(&personal.bytes, b"bob"));
}

#[test]
fn anonymous_feedback_is_its_own_data_subject() {
    let encoded = received(Personal::Present(feedback_content(None))).encode();
    let personal = encoded.personal.expect("a personal part");
    assert_eq!(personal.subject, "feedback:f-1");
}

#[test]
fn withheld_and_erased_personal_parts_decode_as_such() {
    let encoded = received(Personal::Present(feedback_content(Some("bob")))).encode();
    let decode = |personal| {
        Event::decode(
            "feedback",
            "feedback.received",
            SCHEMA_VERSION,
            &encoded.clear,
            personal,
        )
    };
    assert_eq!(
        decode(StoredPersonal::Withheld),
        Ok(received(Personal::Withheld))
    );
    assert_eq!(
        decode(StoredPersonal::Erased),
        Ok(received(Personal::Erased))
    );
    // A stored event without a personal part shows none.
    assert_eq!(
        decode(StoredPersonal::None),
        Ok(received(Personal::Withheld))
    );
    let opened = decode(StoredPersonal::Open(
        &encoded.personal.as_ref().expect("a personal part").bytes,
    ))
    .expect("decodes");
    let Event::Feedback(FeedbackEvent::Received { content, .. }) = &opened else {
        panic!("{opened:?}");
    };
    assert_eq!(content.present(), Some(&feedback_content(Some("bob"))));
}

#[test]
fn an_event_read_without_its_personal_part_encodes_none() {
    for content in [Personal::Withheld, Personal::Erased] {
        let encoded = received(content).encode();
        assert_eq!(encoded.personal, None);
    }
}

#[test]
fn only_a_received_feedback_item_has_a_personal_part() {
    for event in samples::all() {
        let encoded = event.encode();
        assert_eq!(
            encoded.personal.is_some(),
            event.event_type() == "feedback.received",
            "{}",
            event.event_type()
        );
    }
}

fn voted_encoded() -> cairn_domain::EncodedEvent {
    Event::Opportunity(OpportunityEvent::Voted(common::vote("bob", 2, day(1)))).encode()
}

fn malformed(result: Result<Event, CodecError>, event_type: &str) -> String {
    match result {
        Err(CodecError::Malformed {
            event_type: named,
            reason,
        }) => {
            assert_eq!(named, event_type);
            reason
        }
        other => panic!("expected a malformed {event_type}, got {other:?}"),
    }
}

#[test]
fn the_wrong_event_type_is_refused() {
    let encoded = voted_encoded();
    let reason = malformed(
        Event::decode(
            "opportunity",
            "opportunity.rated",
            SCHEMA_VERSION,
            &encoded.clear,
            StoredPersonal::None,
        ),
        "opportunity.rated",
    );
    assert!(reason.contains("opportunity.voted"), "{reason}");
    malformed(
        Event::decode(
            "opportunity",
            "opportunity.teleported",
            SCHEMA_VERSION,
            &encoded.clear,
            StoredPersonal::None,
        ),
        "opportunity.teleported",
    );
}

#[test]
fn an_event_under_another_kind_is_refused() {
    let encoded = voted_encoded();
    for kind in ["feedback", "signal", "decision", "initiative"] {
        let result = Event::decode(
            kind,
            "opportunity.voted",
            SCHEMA_VERSION,
            &encoded.clear,
            StoredPersonal::None,
        );
        assert!(
            matches!(result, Err(CodecError::Malformed { .. })),
            "{kind}: {result:?}"
        );
    }
}

#[test]
fn an_unknown_aggregate_or_schema_version_is_refused() {
    let encoded = voted_encoded();
    assert_eq!(
        Event::decode(
            "widget",
            "opportunity.voted",
            SCHEMA_VERSION,
            &encoded.clear,
            StoredPersonal::None,
        ),
        Err(CodecError::UnknownAggregate("widget".to_owned()))
    );
    for version in [0, SCHEMA_VERSION + 1] {
        assert_eq!(
            Event::decode(
                "opportunity",
                "opportunity.voted",
                version,
                &encoded.clear,
                StoredPersonal::None,
            ),
            Err(CodecError::UnknownType {
                event_type: "opportunity.voted".to_owned(),
                schema_version: version,
            })
        );
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut clear = voted_encoded().clear;
    clear.push(0);
    let reason = malformed(
        Event::decode(
            "opportunity",
            "opportunity.voted",
            SCHEMA_VERSION,
            &clear,
            StoredPersonal::None,
        ),
        "opportunity.voted",
    );
    assert_eq!(reason, "1 trailing bytes");

    let encoded = received(Personal::Present(feedback_content(Some("bob")))).encode();
    let mut personal = encoded.personal.expect("a personal part").bytes;
    personal.extend_from_slice(&[1, 2]);
    let reason = malformed(
        Event::decode(
            "feedback",
            "feedback.received",
            SCHEMA_VERSION,
            &encoded.clear,
            StoredPersonal::Open(&personal),
        ),
        "feedback.received",
    );
    assert_eq!(reason, "2 trailing bytes");
}

#[test]
fn truncated_and_empty_input_is_refused() {
    for event in samples::all() {
        let encoded = event.encode();
        let event_type = event.event_type();
        let short = &encoded.clear[..encoded.clear.len() - 1];
        let result = Event::decode(
            event.kind().as_str(),
            event_type,
            SCHEMA_VERSION,
            short,
            StoredPersonal::None,
        );
        // A truncated payload fails to decode, or decodes as another event (a variant with no
        // fields is its tag alone), never as this one.
        assert!(
            matches!(result, Err(CodecError::Malformed { .. })),
            "{event_type}: {result:?}"
        );
    }
    let encoded = received(Personal::Present(feedback_content(Some("bob")))).encode();
    let personal = encoded.personal.expect("a personal part").bytes;
    malformed(
        Event::decode(
            "feedback",
            "feedback.received",
            SCHEMA_VERSION,
            &encoded.clear,
            StoredPersonal::Open(&personal[..personal.len() - 1]),
        ),
        "feedback.received",
    );
}

// Lineage edges.

fn edge(from: EntityRef, relation: Relation, to: EntityRef) -> Edge {
    Edge { from, relation, to }
}

fn feedback_ref(text: &str) -> EntityRef {
    entity(EntityKind::Feedback, text)
}

fn signal_ref(text: &str) -> EntityRef {
    entity(EntityKind::Signal, text)
}

fn opportunity_ref(text: &str) -> EntityRef {
    entity(EntityKind::Opportunity, text)
}

fn decision_ref(text: &str) -> EntityRef {
    entity(EntityKind::Decision, text)
}

fn initiative_ref(text: &str) -> EntityRef {
    entity(EntityKind::Initiative, text)
}

#[track_caller]
fn assert_edges(event: Event, own: EntityRef, mut expected: Vec<Edge>) {
    expected.sort();
    assert_eq!(event.edges(&own), expected, "{}", event.event_type());
}

#[test]
fn feedback_is_evidence_for_an_opportunity() {
    assert_edges(
        Event::Feedback(FeedbackEvent::Linked {
            opportunity: id("o-1"),
        }),
        feedback_ref("f-1"),
        vec![edge(
            feedback_ref("f-1"),
            Relation::EvidenceFor,
            opportunity_ref("o-1"),
        )],
    );
    // The same edge, recorded on the opportunity's side.
    assert_edges(
        Event::Opportunity(OpportunityEvent::EvidenceAttached(feedback_evidence(
            "f-1",
            day(1),
        ))),
        opportunity_ref("o-1"),
        vec![edge(
            feedback_ref("f-1"),
            Relation::EvidenceFor,
            opportunity_ref("o-1"),
        )],
    );
    assert_edges(
        Event::Opportunity(OpportunityEvent::EvidenceAttached(signal_evidence(
            "s-1",
            observation("build_latency_ms", 1.0, day(1)),
            day(1),
        ))),
        opportunity_ref("o-1"),
        vec![edge(
            signal_ref("s-1"),
            Relation::EvidenceFor,
            opportunity_ref("o-1"),
        )],
    );
}

#[test]
fn absorbed_evidence_is_evidence_for_the_canonical_opportunity() {
    assert_edges(
        Event::Opportunity(OpportunityEvent::DuplicateAbsorbed {
            duplicate: id("o-3"),
            evidence: vec![
                signal_evidence("s-1", observation("build_latency_ms", 1.0, day(1)), day(1)),
                feedback_evidence("f-3", day(1)),
            ],
            votes: vec![common::vote("bob", 1, day(1))],
        }),
        opportunity_ref("o-2"),
        vec![
            edge(
                signal_ref("s-1"),
                Relation::EvidenceFor,
                opportunity_ref("o-2"),
            ),
            edge(
                feedback_ref("f-3"),
                Relation::EvidenceFor,
                opportunity_ref("o-2"),
            ),
        ],
    );
}

#[test]
fn a_duplicate_points_at_its_canonical_opportunity() {
    assert_edges(
        Event::Opportunity(OpportunityEvent::MarkedDuplicate {
            canonical: id("o-2"),
            evidence: vec![feedback_evidence("f-1", day(1))],
            votes: vec![],
        }),
        opportunity_ref("o-1"),
        // The evidence moves by the canonical's DuplicateAbsorbed, not here.
        vec![edge(
            opportunity_ref("o-1"),
            Relation::DuplicateOf,
            opportunity_ref("o-2"),
        )],
    );
}

#[test]
fn an_opportunity_is_decided_by_a_decision() {
    let decided = vec![edge(
        opportunity_ref("o-1"),
        Relation::DecidedBy,
        decision_ref("d-1"),
    )];
    assert_edges(
        Event::Opportunity(OpportunityEvent::Accepted {
            decision: Some(id("d-1")),
        }),
        opportunity_ref("o-1"),
        decided.clone(),
    );
    assert_edges(
        Event::Opportunity(OpportunityEvent::Accepted { decision: None }),
        opportunity_ref("o-1"),
        vec![],
    );
    assert_edges(
        Event::Opportunity(OpportunityEvent::Declined {
            reason: "no".to_owned(),
            decision: id("d-1"),
        }),
        opportunity_ref("o-1"),
        decided.clone(),
    );
    // And from the decision's side, for each subject.
    assert_edges(
        Event::Decision(DecisionEvent::Proposed {
            id: id("d-1"),
            content: decision_content(&["dave"]),
            proposed_at: day(1),
        }),
        decision_ref("d-1"),
        decided,
    );
}

#[test]
fn a_signal_verifies_a_shipped_opportunity_and_a_met_milestone() {
    assert_edges(
        Event::Opportunity(OpportunityEvent::OutcomeJudged {
            outcome: Validation::Validated,
            signal: Some(id("s-7")),
        }),
        opportunity_ref("o-1"),
        vec![edge(
            signal_ref("s-7"),
            Relation::Verifies,
            opportunity_ref("o-1"),
        )],
    );
    assert_edges(
        Event::Opportunity(OpportunityEvent::OutcomeJudged {
            outcome: Validation::NotValidated,
            signal: None,
        }),
        opportunity_ref("o-1"),
        vec![],
    );
    assert_edges(
        Event::Initiative(InitiativeEvent::MilestoneMet {
            name: "staging".to_owned(),
            signal: Some(id("s-8")),
        }),
        initiative_ref("i-1"),
        vec![edge(
            signal_ref("s-8"),
            Relation::Verifies,
            initiative_ref("i-1"),
        )],
    );
    assert_edges(
        Event::Initiative(InitiativeEvent::MilestoneMet {
            name: "staging".to_owned(),
            signal: None,
        }),
        initiative_ref("i-1"),
        vec![],
    );
}

#[test]
fn a_score_is_derived_from_the_signals_it_read() {
    // The sample snapshot reads one signal, s-7, among ratings, votes and feedback.
    assert_edges(
        Event::Opportunity(OpportunityEvent::Scored(samples::snapshot())),
        opportunity_ref("o-1"),
        vec![edge(
            opportunity_ref("o-1"),
            Relation::DerivedFrom,
            signal_ref("s-7"),
        )],
    );
}

#[test]
fn a_decision_supersedes_the_old_one() {
    let mut content = decision_content(&["dave"]);
    content.subjects.clear();
    content.supersedes = Some(id("d-0"));
    let supersedes = vec![edge(
        decision_ref("d-1"),
        Relation::Supersedes,
        decision_ref("d-0"),
    )];
    assert_edges(
        Event::Decision(DecisionEvent::Proposed {
            id: id("d-1"),
            content: content.clone(),
            proposed_at: day(1),
        }),
        decision_ref("d-1"),
        supersedes.clone(),
    );
    assert_edges(
        Event::Decision(DecisionEvent::Revised(content)),
        decision_ref("d-1"),
        supersedes,
    );
    // The old decision records the same direction: new -supersedes-> old.
    assert_edges(
        Event::Decision(DecisionEvent::Superseded { by: id("d-2") }),
        decision_ref("d-1"),
        vec![edge(
            decision_ref("d-2"),
            Relation::Supersedes,
            decision_ref("d-1"),
        )],
    );
}

#[test]
fn an_initiative_implements_opportunities() {
    let mut draft = initiative_draft();
    draft.implements = vec![id("o-1"), id("o-2"), id("o-1")];
    assert_edges(
        Event::Initiative(InitiativeEvent::Created {
            id: id("i-1"),
            draft,
        }),
        initiative_ref("i-1"),
        // Listed twice, recorded once.
        vec![
            edge(
                initiative_ref("i-1"),
                Relation::Implements,
                opportunity_ref("o-1"),
            ),
            edge(
                initiative_ref("i-1"),
                Relation::Implements,
                opportunity_ref("o-2"),
            ),
        ],
    );
    assert_edges(
        Event::Initiative(InitiativeEvent::Implements {
            opportunity: id("o-3"),
        }),
        initiative_ref("i-1"),
        vec![edge(
            initiative_ref("i-1"),
            Relation::Implements,
            opportunity_ref("o-3"),
        )],
    );
}

#[test]
fn the_other_events_record_no_edges() {
    let with_edges = [
        "feedback.linked",
        "opportunity.marked_duplicate",
        "opportunity.accepted",
        "opportunity.declined",
        "opportunity.outcome_judged",
        "opportunity.evidence_attached",
        "opportunity.scored",
        "opportunity.duplicate_absorbed",
        "decision.proposed",
        "decision.revised",
        "decision.superseded",
        "initiative.created",
        "initiative.implements",
        "initiative.milestone_met",
    ];
    for event in samples::all() {
        let own = EntityRef::new(event.kind(), id("own"));
        let edges = event.edges(&own);
        assert_eq!(
            !edges.is_empty(),
            with_edges.contains(&event.event_type()),
            "{}: {edges:?}",
            event.event_type()
        );
        // Every edge touches the entity that records it.
        for edge in &edges {
            assert!(edge.from == own || edge.to == own, "{edge:?}");
        }
    }
}
