//! A feedback item: `received -> processed` (linked to at least one opportunity) or `discarded`
//! (reason required); nothing is linked to a discarded item.

mod common;

use cairn_domain::Rule;
use cairn_domain::feedback::{
    Feedback, FeedbackCommand, FeedbackContent, FeedbackEvent, FeedbackSource, FeedbackStatus,
    Personal,
};
use cairn_domain::limits;
use common::{ctx, day, feedback_content, given, given_nothing, id, strings, team};

fn submit(content: FeedbackContent) -> FeedbackCommand {
    submit_tagged(content, strings(&["ci"]), strings(&["developer-time"]))
}

fn submit_tagged(
    content: FeedbackContent,
    tags: Vec<String>,
    outcome_tags: Vec<String>,
) -> FeedbackCommand {
    FeedbackCommand::Submit {
        id: id("f-1"),
        content,
        team: team("platform"),
        source: FeedbackSource::Chat,
        tags,
        outcome_tags,
        visibility: cairn_domain::Visibility::Open,
    }
}

fn received(content: FeedbackContent) -> FeedbackEvent {
    FeedbackEvent::Received {
        id: id("f-1"),
        team: team("platform"),
        source: FeedbackSource::Chat,
        tags: strings(&["ci"]),
        outcome_tags: strings(&["developer-time"]),
        visibility: cairn_domain::Visibility::Open,
        received_at: day(1),
        content: Personal::Present(content),
    }
}

fn linked(opportunity: &str) -> FeedbackEvent {
    FeedbackEvent::Linked {
        opportunity: id(opportunity),
    }
}

fn discarded() -> FeedbackEvent {
    FeedbackEvent::Discarded {
        reason: "spam".to_owned(),
    }
}

fn link(opportunity: &str) -> FeedbackCommand {
    FeedbackCommand::Link {
        opportunity: id(opportunity),
    }
}

fn discard(reason: &str) -> FeedbackCommand {
    FeedbackCommand::Discard {
        reason: reason.to_owned(),
    }
}

#[test]
fn submit_records_the_item_received_now_with_its_personal_part() {
    let state = given_nothing::<Feedback>()
        .when(submit(feedback_content(Some("bob"))), &ctx(day(1)))
        .then([received(feedback_content(Some("bob")))]);
    assert_eq!(state.status, Some(FeedbackStatus::Received));
    assert_eq!(state.team, Some(team("platform")));
    assert!(state.opportunities.is_empty());
}

#[test]
fn anonymous_feedback_is_received() {
    given_nothing::<Feedback>()
        .when(submit(feedback_content(None)), &ctx(day(1)))
        .then([received(feedback_content(None))]);
}

#[test]
fn submit_twice_is_refused() {
    given([received(feedback_content(None))])
        .when(submit(feedback_content(None)), &ctx(day(2)))
        .then_refused(Rule::AlreadyExists);
}

#[test]
fn commands_on_a_missing_item_are_refused() {
    given_nothing::<Feedback>()
        .when(link("o-1"), &ctx(day(1)))
        .then_refused(Rule::NotFound);
    given_nothing::<Feedback>()
        .when(discard("spam"), &ctx(day(1)))
        .then_refused(Rule::NotFound);
}

#[test]
fn submit_checks_its_text_and_tags() {
    let content = |text: &str| FeedbackContent {
        text: text.to_owned(),
        submitter: None,
    };
    given_nothing::<Feedback>()
        .when(submit(content("  ")), &ctx(day(1)))
        .then_refused_on(Rule::InvalidField, "text");
    given_nothing::<Feedback>()
        .when(
            submit(content(&"x".repeat(limits::TEXT_BYTES_MAX + 1))),
            &ctx(day(1)),
        )
        .then_refused_on(Rule::Limit, "text");
    // Exactly at the limit is fine.
    given_nothing::<Feedback>()
        .when(
            submit(content(&"x".repeat(limits::TEXT_BYTES_MAX))),
            &ctx(day(1)),
        )
        .then_accepted();

    let with_tags = |tags: Vec<String>, outcome_tags: Vec<String>| {
        submit_tagged(content("slow"), tags, outcome_tags)
    };
    given_nothing::<Feedback>()
        .when(with_tags(strings(&["CI"]), vec![]), &ctx(day(1)))
        .then_refused_on(Rule::InvalidField, "tags");
    given_nothing::<Feedback>()
        .when(with_tags(strings(&[""]), vec![]), &ctx(day(1)))
        .then_refused_on(Rule::InvalidField, "tags");
    given_nothing::<Feedback>()
        .when(with_tags(vec![], strings(&["support cost"])), &ctx(day(1)))
        .then_refused_on(Rule::InvalidField, "outcome_tags");
    let too_many: Vec<String> = (0..=limits::TAGS_MAX).map(|i| format!("t{i}")).collect();
    given_nothing::<Feedback>()
        .when(with_tags(too_many.clone(), vec![]), &ctx(day(1)))
        .then_refused_on(Rule::Limit, "tags");
    given_nothing::<Feedback>()
        .when(with_tags(vec![], too_many), &ctx(day(1)))
        .then_refused_on(Rule::Limit, "outcome_tags");
    given_nothing::<Feedback>()
        .when(
            with_tags(vec!["a".repeat(limits::TAG_BYTES_MAX + 1)], vec![]),
            &ctx(day(1)),
        )
        .then_refused_on(Rule::Limit, "tags");
}

#[test]
fn linking_a_received_item_processes_it() {
    let state = given([received(feedback_content(None))])
        .when(link("o-1"), &ctx(day(2)))
        .then([linked("o-1")]);
    assert_eq!(state.status, Some(FeedbackStatus::Processed));
    assert!(state.opportunities.contains(&id("o-1")));
}

#[test]
fn a_processed_item_may_be_linked_to_more_opportunities() {
    let state = given([received(feedback_content(None)), linked("o-1")])
        .when(link("o-2"), &ctx(day(3)))
        .then([linked("o-2")]);
    assert_eq!(state.status, Some(FeedbackStatus::Processed));
    assert_eq!(state.opportunities.len(), 2);
}

#[test]
fn linking_twice_to_the_same_opportunity_is_refused() {
    given([received(feedback_content(None)), linked("o-1")])
        .when(link("o-1"), &ctx(day(3)))
        .then_refused(Rule::AlreadyLinked);
}

#[test]
fn discarding_a_received_item_needs_a_reason() {
    let state = given([received(feedback_content(None))])
        .when(discard("spam"), &ctx(day(2)))
        .then([discarded()]);
    assert_eq!(state.status, Some(FeedbackStatus::Discarded));

    given([received(feedback_content(None))])
        .when(discard(""), &ctx(day(2)))
        .then_refused_on(Rule::ReasonRequired, "reason");
    given([received(feedback_content(None))])
        .when(discard(" \n\t"), &ctx(day(2)))
        .then_refused_on(Rule::ReasonRequired, "reason");
    given([received(feedback_content(None))])
        .when(
            discard(&"r".repeat(limits::REASON_BYTES_MAX + 1)),
            &ctx(day(2)),
        )
        .then_refused_on(Rule::Limit, "reason");
}

#[test]
fn a_processed_item_cannot_be_discarded() {
    given([received(feedback_content(None)), linked("o-1")])
        .when(discard("spam"), &ctx(day(3)))
        .then_refused(Rule::TransitionNotAllowed);
}

#[test]
fn a_discarded_item_cannot_be_discarded_again() {
    given([received(feedback_content(None)), discarded()])
        .when(discard("spam"), &ctx(day(3)))
        .then_refused(Rule::TransitionNotAllowed);
}

#[test]
fn linking_after_a_discard_is_refused() {
    given([received(feedback_content(None)), discarded()])
        .when(link("o-1"), &ctx(day(3)))
        .then_refused(Rule::TransitionNotAllowed);
}

#[test]
fn submitting_over_a_discarded_or_processed_item_is_refused() {
    given([received(feedback_content(None)), discarded()])
        .when(submit(feedback_content(None)), &ctx(day(3)))
        .then_refused(Rule::AlreadyExists);
    given([received(feedback_content(None)), linked("o-1")])
        .when(submit(feedback_content(None)), &ctx(day(3)))
        .then_refused(Rule::AlreadyExists);
}

#[test]
fn every_source_has_a_name_that_parses_back() {
    for source in FeedbackSource::ALL {
        assert_eq!(FeedbackSource::parse(source.as_str()), Some(source));
    }
    assert_eq!(FeedbackSource::HealthCheck.as_str(), "health_check");
    assert_eq!(FeedbackSource::parse("email"), None);
}
