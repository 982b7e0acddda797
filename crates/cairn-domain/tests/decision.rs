//! A decision record: `proposed -> accepted / rejected`; `accepted -> deprecated /
//! superseded(by)`. Content is revised only while proposed; only a decider accepts or rejects.

mod common;

use cairn_domain::decision::{
    Decision, DecisionCommand, DecisionContent, DecisionEvent, DecisionKind, DecisionStatus,
};
use cairn_domain::{EntityKind, Rule, limits};
use common::{ctx, ctx_as, day, decision_content, entity, given, given_nothing, id, principal};

fn proposed() -> DecisionEvent {
    DecisionEvent::Proposed {
        id: id("d-1"),
        content: decision_content(&["dave", "erin"]),
        proposed_at: day(1),
    }
}

fn accepted() -> DecisionEvent {
    DecisionEvent::Accepted {
        by: principal("dave"),
        at: day(2),
    }
}

fn rejected() -> DecisionEvent {
    DecisionEvent::Rejected {
        by: principal("dave"),
        reason: "too costly".to_owned(),
    }
}

fn deprecated() -> DecisionEvent {
    DecisionEvent::Deprecated {
        reason: "retired".to_owned(),
    }
}

fn superseded() -> DecisionEvent {
    DecisionEvent::Superseded { by: id("d-2") }
}

/// The events that lead to each status, with the status they lead to.
fn histories() -> Vec<(Vec<DecisionEvent>, DecisionStatus)> {
    vec![
        (vec![proposed()], DecisionStatus::Proposed),
        (vec![proposed(), accepted()], DecisionStatus::Accepted),
        (vec![proposed(), rejected()], DecisionStatus::Rejected),
        (
            vec![proposed(), accepted(), deprecated()],
            DecisionStatus::Deprecated,
        ),
        (
            vec![proposed(), accepted(), superseded()],
            DecisionStatus::Superseded { by: id("d-2") },
        ),
    ]
}

fn propose(content: DecisionContent) -> DecisionCommand {
    DecisionCommand::Propose {
        id: id("d-1"),
        content,
    }
}

fn reject(reason: &str) -> DecisionCommand {
    DecisionCommand::Reject {
        reason: reason.to_owned(),
    }
}

fn deprecate(reason: &str) -> DecisionCommand {
    DecisionCommand::Deprecate {
        reason: reason.to_owned(),
    }
}

fn mark_superseded(by: &str) -> DecisionCommand {
    DecisionCommand::MarkSuperseded { by: id(by) }
}

#[test]
fn the_histories_fold_to_their_statuses() {
    for (events, status) in histories() {
        let state = given(events).state().clone();
        assert_eq!(state.status, Some(status));
        assert_eq!(state.id, Some(id("d-1")));
    }
}

#[test]
fn propose_records_the_content() {
    let state = given_nothing::<Decision>()
        .when(propose(decision_content(&["dave", "erin"])), &ctx(day(1)))
        .then([proposed()]);
    assert_eq!(state.status, Some(DecisionStatus::Proposed));
    assert_eq!(state.content, Some(decision_content(&["dave", "erin"])));
}

#[test]
fn propose_twice_is_refused_in_every_status() {
    for (events, _) in histories() {
        given(events)
            .when(propose(decision_content(&["dave"])), &ctx(day(5)))
            .then_refused(Rule::AlreadyExists);
    }
}

#[test]
fn commands_on_a_missing_decision_are_refused() {
    for command in [
        DecisionCommand::Revise(decision_content(&["dave"])),
        DecisionCommand::Accept,
        reject("no"),
        deprecate("old"),
        mark_superseded("d-2"),
    ] {
        given_nothing::<Decision>()
            .when(command, &ctx_as("dave", day(1)))
            .then_refused(Rule::NotFound);
    }
}

#[test]
fn propose_checks_the_content() {
    let no_deciders = decision_content(&[]);
    given_nothing::<Decision>()
        .when(propose(no_deciders), &ctx(day(1)))
        .then_refused_on(Rule::InvalidField, "deciders");

    let mut no_title = decision_content(&["dave"]);
    no_title.title = " ".to_owned();
    given_nothing::<Decision>()
        .when(propose(no_title), &ctx(day(1)))
        .then_refused_on(Rule::InvalidField, "title");

    let mut long_title = decision_content(&["dave"]);
    long_title.title = "t".repeat(limits::TITLE_BYTES_MAX + 1);
    given_nothing::<Decision>()
        .when(propose(long_title), &ctx(day(1)))
        .then_refused_on(Rule::Limit, "title");

    let mut long_context = decision_content(&["dave"]);
    long_context.context = "c".repeat(limits::TEXT_BYTES_MAX + 1);
    given_nothing::<Decision>()
        .when(propose(long_context), &ctx(day(1)))
        .then_refused_on(Rule::Limit, "context");

    let mut too_many_drivers = decision_content(&["dave"]);
    too_many_drivers.drivers = (0..=limits::LIST_ITEMS_MAX)
        .map(|i| format!("driver {i}"))
        .collect();
    given_nothing::<Decision>()
        .when(propose(too_many_drivers), &ctx(day(1)))
        .then_refused_on(Rule::Limit, "drivers");

    let mut empty_option = decision_content(&["dave"]);
    empty_option.options.push(String::new());
    given_nothing::<Decision>()
        .when(propose(empty_option), &ctx(day(1)))
        .then_refused_on(Rule::InvalidField, "options");

    let mut long_consequence = decision_content(&["dave"]);
    long_consequence
        .consequences
        .push("c".repeat(limits::LIST_ITEM_BYTES_MAX + 1));
    given_nothing::<Decision>()
        .when(propose(long_consequence), &ctx(day(1)))
        .then_refused_on(Rule::Limit, "consequences");

    let many = |prefix: &str| {
        (0..=limits::LIST_ITEMS_MAX)
            .map(|i| principal(&format!("{prefix}-{i}")))
            .collect::<Vec<_>>()
    };
    let mut too_many_deciders = decision_content(&["dave"]);
    too_many_deciders.deciders = many("decider");
    given_nothing::<Decision>()
        .when(propose(too_many_deciders), &ctx(day(1)))
        .then_refused_on(Rule::Limit, "deciders");
    let mut too_many_consulted = decision_content(&["dave"]);
    too_many_consulted.consulted = many("consulted");
    given_nothing::<Decision>()
        .when(propose(too_many_consulted), &ctx(day(1)))
        .then_refused_on(Rule::Limit, "consulted");
    let mut too_many_informed = decision_content(&["dave"]);
    too_many_informed.informed = many("informed");
    given_nothing::<Decision>()
        .when(propose(too_many_informed), &ctx(day(1)))
        .then_refused_on(Rule::Limit, "informed");

    let mut too_many_subjects = decision_content(&["dave"]);
    too_many_subjects.subjects = (0..=limits::LIST_ITEMS_MAX)
        .map(|i| entity(EntityKind::Opportunity, &format!("o-{i}")))
        .collect();
    given_nothing::<Decision>()
        .when(propose(too_many_subjects), &ctx(day(1)))
        .then_refused_on(Rule::Limit, "subjects");
}

#[test]
fn a_decision_cannot_supersede_itself() {
    let mut own = decision_content(&["dave"]);
    own.supersedes = Some(id("d-1"));
    given_nothing::<Decision>()
        .when(propose(own.clone()), &ctx(day(1)))
        .then_refused_on(Rule::InvalidSupersession, "supersedes");
    given([proposed()])
        .when(DecisionCommand::Revise(own), &ctx(day(2)))
        .then_refused_on(Rule::InvalidSupersession, "supersedes");
    given([proposed(), accepted()])
        .when(mark_superseded("d-1"), &ctx(day(3)))
        .then_refused_on(Rule::InvalidSupersession, "by");

    let mut other = decision_content(&["dave"]);
    other.supersedes = Some(id("d-0"));
    given_nothing::<Decision>()
        .when(propose(other), &ctx(day(1)))
        .then_accepted();
}

#[test]
fn revise_replaces_the_content_while_proposed() {
    let mut revised = decision_content(&["frank"]);
    revised.kind = DecisionKind::Waiver;
    revised.outcome = "bigger runners".to_owned();
    let state = given([proposed()])
        .when(DecisionCommand::Revise(revised.clone()), &ctx(day(2)))
        .then([DecisionEvent::Revised(revised.clone())]);
    assert_eq!(state.content, Some(revised));
    assert_eq!(state.status, Some(DecisionStatus::Proposed));

    let mut invalid = decision_content(&["dave"]);
    invalid.title = String::new();
    given([proposed()])
        .when(DecisionCommand::Revise(invalid), &ctx(day(2)))
        .then_refused_on(Rule::InvalidField, "title");
}

#[test]
fn content_is_immutable_once_no_longer_proposed() {
    for (events, status) in histories() {
        if status == DecisionStatus::Proposed {
            continue;
        }
        given(events)
            .when(
                DecisionCommand::Revise(decision_content(&["dave"])),
                &ctx(day(5)),
            )
            .then_refused(Rule::ContentImmutable);
    }
}

#[test]
fn a_decider_accepts() {
    let state = given([proposed()])
        .when(DecisionCommand::Accept, &ctx_as("dave", day(2)))
        .then([accepted()]);
    assert_eq!(state.status, Some(DecisionStatus::Accepted));
    // Any decider, not only the first.
    given([proposed()])
        .when(DecisionCommand::Accept, &ctx_as("erin", day(2)))
        .then([DecisionEvent::Accepted {
            by: principal("erin"),
            at: day(2),
        }]);
}

#[test]
fn only_a_decider_accepts_or_rejects() {
    // frank was consulted, not a decider; nor is the author by being the actor.
    for actor in ["frank", "alice"] {
        given([proposed()])
            .when(DecisionCommand::Accept, &ctx_as(actor, day(2)))
            .then_refused(Rule::NotADecider);
        given([proposed()])
            .when(reject("no"), &ctx_as(actor, day(2)))
            .then_refused(Rule::NotADecider);
    }
}

#[test]
fn the_deciders_are_those_of_the_latest_revision() {
    let events = [
        proposed(),
        DecisionEvent::Revised(decision_content(&["frank"])),
    ];
    given(events.clone())
        .when(DecisionCommand::Accept, &ctx_as("dave", day(3)))
        .then_refused(Rule::NotADecider);
    given(events)
        .when(DecisionCommand::Accept, &ctx_as("frank", day(3)))
        .then([DecisionEvent::Accepted {
            by: principal("frank"),
            at: day(3),
        }]);
}

#[test]
fn a_decider_rejects_with_a_reason() {
    let state = given([proposed()])
        .when(reject("too costly"), &ctx_as("dave", day(2)))
        .then([rejected()]);
    assert_eq!(state.status, Some(DecisionStatus::Rejected));
    given([proposed()])
        .when(reject(" "), &ctx_as("dave", day(2)))
        .then_refused_on(Rule::ReasonRequired, "reason");
}

#[test]
fn accept_and_reject_only_while_proposed() {
    for (events, status) in histories() {
        if status == DecisionStatus::Proposed {
            continue;
        }
        given(events.clone())
            .when(DecisionCommand::Accept, &ctx_as("dave", day(5)))
            .then_refused(Rule::TransitionNotAllowed);
        given(events)
            .when(reject("no"), &ctx_as("dave", day(5)))
            .then_refused(Rule::TransitionNotAllowed);
    }
}

#[test]
fn an_accepted_decision_is_deprecated_with_a_reason() {
    let state = given([proposed(), accepted()])
        .when(deprecate("retired"), &ctx(day(3)))
        .then([deprecated()]);
    assert_eq!(state.status, Some(DecisionStatus::Deprecated));
    given([proposed(), accepted()])
        .when(deprecate(""), &ctx(day(3)))
        .then_refused_on(Rule::ReasonRequired, "reason");
}

#[test]
fn an_accepted_decision_is_superseded_by_another() {
    let state = given([proposed(), accepted()])
        .when(mark_superseded("d-2"), &ctx(day(3)))
        .then([superseded()]);
    assert_eq!(
        state.status,
        Some(DecisionStatus::Superseded { by: id("d-2") })
    );
    // Content stays as accepted.
    assert_eq!(state.content, Some(decision_content(&["dave", "erin"])));
}

#[test]
fn deprecate_and_supersede_only_from_accepted() {
    for (events, status) in histories() {
        if status == DecisionStatus::Accepted {
            continue;
        }
        given(events.clone())
            .when(deprecate("old"), &ctx(day(5)))
            .then_refused(Rule::TransitionNotAllowed);
        given(events)
            .when(mark_superseded("d-3"), &ctx(day(5)))
            .then_refused(Rule::TransitionNotAllowed);
    }
}

#[test]
fn every_kind_has_a_name_that_parses_back() {
    for kind in DecisionKind::ALL {
        assert_eq!(DecisionKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(DecisionKind::parse("whim"), None);
    assert_eq!(
        DecisionStatus::Superseded { by: id("d-2") }.to_string(),
        "superseded"
    );
}
