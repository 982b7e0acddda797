//! An initiative: `draft -> scheduled -> in_progress (at_risk) -> completed / cancelled`, with
//! milestones `open -> met / missed` (missed only after the due date).

mod common;

use cairn_domain::initiative::{
    Initiative, InitiativeCommand, InitiativeEvent, InitiativeStatus, MilestoneStatus,
};
use cairn_domain::{Rule, Time, limits};
use common::{ctx, day, given, given_nothing, id, initiative_draft, principal};

fn created() -> InitiativeEvent {
    InitiativeEvent::Created {
        id: id("i-1"),
        draft: initiative_draft(),
    }
}

fn cancelled() -> InitiativeEvent {
    InitiativeEvent::Cancelled {
        reason: "replaced".to_owned(),
    }
}

fn risk_flagged() -> InitiativeEvent {
    InitiativeEvent::RiskFlagged {
        reason: "vendor late".to_owned(),
    }
}

fn milestone_added(name: &str, due: Time) -> InitiativeEvent {
    InitiativeEvent::MilestoneAdded {
        name: name.to_owned(),
        due,
        exit_criteria: "hit rate above 80%".to_owned(),
    }
}

fn add_milestone(name: &str, due: Time) -> InitiativeCommand {
    InitiativeCommand::AddMilestone {
        name: name.to_owned(),
        due,
        exit_criteria: "hit rate above 80%".to_owned(),
    }
}

fn meet(name: &str) -> InitiativeCommand {
    InitiativeCommand::MeetMilestone {
        name: name.to_owned(),
        signal: None,
    }
}

fn miss(name: &str) -> InitiativeCommand {
    InitiativeCommand::MissMilestone {
        name: name.to_owned(),
    }
}

fn cancel(reason: &str) -> InitiativeCommand {
    InitiativeCommand::Cancel {
        reason: reason.to_owned(),
    }
}

fn flag(reason: &str) -> InitiativeCommand {
    InitiativeCommand::FlagRisk {
        reason: reason.to_owned(),
    }
}

fn implement(opportunity: &str) -> InitiativeCommand {
    InitiativeCommand::Implement {
        opportunity: id(opportunity),
    }
}

const DRAFT: InitiativeStatus = InitiativeStatus::Draft;
const SCHEDULED: InitiativeStatus = InitiativeStatus::Scheduled;
const IN_PROGRESS: InitiativeStatus = InitiativeStatus::InProgress;
const COMPLETED: InitiativeStatus = InitiativeStatus::Completed;
const CANCELLED: InitiativeStatus = InitiativeStatus::Cancelled;

/// The events that lead to each status (cancelled from in progress).
fn history(status: InitiativeStatus) -> Vec<InitiativeEvent> {
    let mut events = vec![created()];
    let steps: &[InitiativeEvent] = match status {
        DRAFT => &[],
        SCHEDULED => &[InitiativeEvent::Scheduled],
        IN_PROGRESS => &[InitiativeEvent::Scheduled, InitiativeEvent::Started],
        COMPLETED => &[
            InitiativeEvent::Scheduled,
            InitiativeEvent::Started,
            InitiativeEvent::Completed,
        ],
        CANCELLED => &[
            InitiativeEvent::Scheduled,
            InitiativeEvent::Started,
            InitiativeEvent::Cancelled {
                reason: "replaced".to_owned(),
            },
        ],
    };
    events.extend_from_slice(steps);
    events
}

const ALL: [InitiativeStatus; 5] = [DRAFT, SCHEDULED, IN_PROGRESS, COMPLETED, CANCELLED];

#[test]
fn the_histories_fold_to_their_statuses() {
    for status in ALL {
        assert_eq!(given(history(status)).state().status, Some(status));
    }
}

#[test]
fn create_records_a_draft() {
    let state = given_nothing::<Initiative>()
        .when(
            InitiativeCommand::Create {
                id: id("i-1"),
                draft: initiative_draft(),
            },
            &ctx(day(1)),
        )
        .then([created()]);
    assert_eq!(state.status, Some(DRAFT));
    assert!(!state.at_risk);
    assert!(state.milestones.is_empty());
}

#[test]
fn create_twice_is_refused_and_nothing_runs_before_create() {
    for status in ALL {
        given(history(status))
            .when(
                InitiativeCommand::Create {
                    id: id("i-1"),
                    draft: initiative_draft(),
                },
                &ctx(day(1)),
            )
            .then_refused(Rule::AlreadyExists);
    }
    for command in [
        InitiativeCommand::Schedule,
        InitiativeCommand::Start,
        InitiativeCommand::Complete,
        cancel("x"),
        flag("x"),
        InitiativeCommand::ClearRisk,
        implement("o-2"),
        add_milestone("m", day(5)),
        meet("m"),
        miss("m"),
    ] {
        given_nothing::<Initiative>()
            .when(command, &ctx(day(1)))
            .then_refused(Rule::NotFound);
    }
}

#[test]
fn create_checks_the_draft() {
    let refused = |change: &dyn Fn(&mut cairn_domain::initiative::InitiativeDraft),
                   rule: Rule,
                   field: &str| {
        let mut draft = initiative_draft();
        change(&mut draft);
        given_nothing::<Initiative>()
            .when(
                InitiativeCommand::Create {
                    id: id("i-1"),
                    draft,
                },
                &ctx(day(1)),
            )
            .then_refused_on(rule, field);
    };
    refused(&|d| d.title = String::new(), Rule::InvalidField, "title");
    refused(
        &|d| d.title = "t".repeat(limits::TITLE_BYTES_MAX + 1),
        Rule::Limit,
        "title",
    );
    refused(
        &|d| d.goal = "g".repeat(limits::TEXT_BYTES_MAX + 1),
        Rule::Limit,
        "goal",
    );
    refused(
        &|d| d.target = "g".repeat(limits::TEXT_BYTES_MAX + 1),
        Rule::Limit,
        "target",
    );
    refused(
        &|d| d.scope = "g".repeat(limits::TEXT_BYTES_MAX + 1),
        Rule::Limit,
        "scope",
    );
    refused(
        &|d| d.outcome_tags = vec!["Conversion".to_owned()],
        Rule::InvalidField,
        "outcome_tags",
    );
    refused(&|d| d.owners.clear(), Rule::Limit, "owners");
    refused(
        &|d| {
            d.owners = (0..=limits::LIST_ITEMS_MAX)
                .map(|i| principal(&format!("owner-{i}")))
                .collect()
        },
        Rule::Limit,
        "owners",
    );
    refused(
        &|d| {
            d.implements = (0..=limits::LIST_ITEMS_MAX)
                .map(|i| id(&format!("o-{i}")))
                .collect()
        },
        Rule::Limit,
        "implements",
    );
    refused(
        &|d| d.target_date = Time(d.start.0 - 1),
        Rule::InvalidField,
        "target_date",
    );
    // Starting and ending the same day is fine.
    let mut same_day = initiative_draft();
    same_day.target_date = same_day.start;
    given_nothing::<Initiative>()
        .when(
            InitiativeCommand::Create {
                id: id("i-1"),
                draft: same_day,
            },
            &ctx(day(1)),
        )
        .then_accepted();
}

#[test]
fn the_main_path_draft_scheduled_in_progress_completed() {
    let state = given(history(DRAFT))
        .when(InitiativeCommand::Schedule, &ctx(day(2)))
        .then([InitiativeEvent::Scheduled]);
    assert_eq!(state.status, Some(SCHEDULED));
    let state = given(history(SCHEDULED))
        .when(InitiativeCommand::Start, &ctx(day(10)))
        .then([InitiativeEvent::Started]);
    assert_eq!(state.status, Some(IN_PROGRESS));
    let state = given(history(IN_PROGRESS))
        .when(InitiativeCommand::Complete, &ctx(day(90)))
        .then([InitiativeEvent::Completed]);
    assert_eq!(state.status, Some(COMPLETED));
}

#[test]
fn schedule_start_and_complete_only_from_their_status() {
    for status in ALL {
        let cases = [
            (InitiativeCommand::Schedule, DRAFT),
            (InitiativeCommand::Start, SCHEDULED),
            (InitiativeCommand::Complete, IN_PROGRESS),
        ];
        for (command, from) in cases {
            if status == from {
                continue;
            }
            given(history(status))
                .when(command, &ctx(day(50)))
                .then_refused(Rule::TransitionNotAllowed);
        }
    }
}

#[test]
fn cancel_from_any_open_status_with_a_reason() {
    for status in [DRAFT, SCHEDULED, IN_PROGRESS] {
        let state = given(history(status))
            .when(cancel("replaced"), &ctx(day(50)))
            .then([cancelled()]);
        assert_eq!(state.status, Some(CANCELLED));
        given(history(status))
            .when(cancel(" "), &ctx(day(50)))
            .then_refused_on(Rule::ReasonRequired, "reason");
    }
    for status in [COMPLETED, CANCELLED] {
        given(history(status))
            .when(cancel("replaced"), &ctx(day(50)))
            .then_refused(Rule::TransitionNotAllowed);
    }
}

#[test]
fn an_initiative_in_progress_is_flagged_at_risk_and_cleared() {
    let state = given(history(IN_PROGRESS))
        .when(flag("vendor late"), &ctx(day(20)))
        .then([risk_flagged()]);
    assert!(state.at_risk);
    assert_eq!(state.status, Some(IN_PROGRESS));

    let mut at_risk = history(IN_PROGRESS);
    at_risk.push(risk_flagged());
    let state = given(at_risk.clone())
        .when(InitiativeCommand::ClearRisk, &ctx(day(21)))
        .then([InitiativeEvent::RiskCleared]);
    assert!(!state.at_risk);

    given(history(IN_PROGRESS))
        .when(flag(""), &ctx(day(20)))
        .then_refused_on(Rule::ReasonRequired, "reason");

    // Completing or cancelling ends the flag.
    let state = given(at_risk.clone())
        .when(InitiativeCommand::Complete, &ctx(day(22)))
        .then([InitiativeEvent::Completed]);
    assert!(!state.at_risk);
    let state = given(at_risk)
        .when(cancel("replaced"), &ctx(day(22)))
        .then([cancelled()]);
    assert!(!state.at_risk);
}

#[test]
fn clearing_a_flag_that_is_not_set_is_refused() {
    given(history(IN_PROGRESS))
        .when(InitiativeCommand::ClearRisk, &ctx(day(20)))
        .then_refused(Rule::TransitionNotAllowed);
}

#[test]
fn the_risk_flag_is_only_for_an_initiative_in_progress() {
    for status in [DRAFT, SCHEDULED, COMPLETED, CANCELLED] {
        given(history(status))
            .when(flag("vendor late"), &ctx(day(20)))
            .then_refused(Rule::TransitionNotAllowed);
        given(history(status))
            .when(InitiativeCommand::ClearRisk, &ctx(day(20)))
            .then_refused(Rule::TransitionNotAllowed);
    }
}

#[test]
fn implement_links_more_opportunities_while_open() {
    for status in [DRAFT, SCHEDULED, IN_PROGRESS] {
        let state = given(history(status))
            .when(implement("o-2"), &ctx(day(5)))
            .then([InitiativeEvent::Implements {
                opportunity: id("o-2"),
            }]);
        assert_eq!(
            state.draft.expect("created").implements,
            vec![id("o-1"), id("o-2")]
        );
        given(history(status))
            .when(implement("o-1"), &ctx(day(5)))
            .then_refused(Rule::AlreadyLinked);
    }
    for status in [COMPLETED, CANCELLED] {
        given(history(status))
            .when(implement("o-2"), &ctx(day(5)))
            .then_refused(Rule::TransitionNotAllowed);
    }
}

#[test]
fn implement_is_limited() {
    let mut events = history(DRAFT);
    // The draft implements o-1; fill up to the limit.
    for i in 2..=limits::LIST_ITEMS_MAX {
        events.push(InitiativeEvent::Implements {
            opportunity: id(&format!("o-{i}")),
        });
    }
    given(events)
        .when(implement("o-999"), &ctx(day(5)))
        .then_refused_on(Rule::Limit, "implements");
}

#[test]
fn milestones_are_added_while_open() {
    for status in [DRAFT, SCHEDULED, IN_PROGRESS] {
        let state = given(history(status))
            .when(add_milestone("staging", day(40)), &ctx(day(5)))
            .then([milestone_added("staging", day(40))]);
        assert_eq!(state.milestones.len(), 1);
        assert_eq!(state.milestones[0].status, MilestoneStatus::Open);
        assert_eq!(state.milestones[0].due, day(40));
    }
    for status in [COMPLETED, CANCELLED] {
        given(history(status))
            .when(add_milestone("staging", day(40)), &ctx(day(5)))
            .then_refused(Rule::TransitionNotAllowed);
    }
}

#[test]
fn milestone_names_are_unique_and_checked() {
    let mut events = history(SCHEDULED);
    events.push(milestone_added("staging", day(40)));
    given(events)
        .when(add_milestone("staging", day(60)), &ctx(day(5)))
        .then_refused_on(Rule::AlreadyExists, "name");
    given(history(SCHEDULED))
        .when(add_milestone(" ", day(60)), &ctx(day(5)))
        .then_refused_on(Rule::InvalidField, "name");
    given(history(SCHEDULED))
        .when(
            add_milestone(&"n".repeat(limits::TITLE_BYTES_MAX + 1), day(60)),
            &ctx(day(5)),
        )
        .then_refused_on(Rule::Limit, "name");
    given(history(SCHEDULED))
        .when(
            InitiativeCommand::AddMilestone {
                name: "staging".to_owned(),
                due: day(60),
                exit_criteria: "e".repeat(limits::TEXT_BYTES_MAX + 1),
            },
            &ctx(day(5)),
        )
        .then_refused_on(Rule::Limit, "exit_criteria");
}

#[test]
fn milestones_are_limited() {
    let mut events = history(SCHEDULED);
    for i in 0..limits::MILESTONES_MAX {
        events.push(milestone_added(&format!("m{i}"), day(40)));
    }
    given(events)
        .when(add_milestone("one more", day(40)), &ctx(day(5)))
        .then_refused_on(Rule::Limit, "name");
}

#[test]
fn a_milestone_is_met_while_scheduled_or_in_progress() {
    for status in [SCHEDULED, IN_PROGRESS] {
        let mut events = history(status);
        events.push(milestone_added("staging", day(40)));
        // Met before or after its due date alike, with or without a signal.
        let state = given(events.clone())
            .when(meet("staging"), &ctx(day(30)))
            .then([InitiativeEvent::MilestoneMet {
                name: "staging".to_owned(),
                signal: None,
            }]);
        assert_eq!(state.milestones[0].status, MilestoneStatus::Met);
        given(events)
            .when(
                InitiativeCommand::MeetMilestone {
                    name: "staging".to_owned(),
                    signal: Some(id("s-8")),
                },
                &ctx(day(50)),
            )
            .then([InitiativeEvent::MilestoneMet {
                name: "staging".to_owned(),
                signal: Some(id("s-8")),
            }]);
    }
}

#[test]
fn a_milestone_is_missed_only_after_its_due_date() {
    let mut events = history(IN_PROGRESS);
    events.push(milestone_added("staging", day(40)));
    given(events.clone())
        .when(miss("staging"), &ctx(day(39)))
        .then_refused_on(Rule::MilestoneNotDue, "name");
    // Due means due at that instant: missing it needs a later one.
    given(events.clone())
        .when(miss("staging"), &ctx(day(40)))
        .then_refused_on(Rule::MilestoneNotDue, "name");
    let state = given(events)
        .when(miss("staging"), &ctx(Time(day(40).0 + 1)))
        .then([InitiativeEvent::MilestoneMissed {
            name: "staging".to_owned(),
        }]);
    assert_eq!(state.milestones[0].status, MilestoneStatus::Missed);
}

#[test]
fn a_closed_milestone_is_neither_met_nor_missed_again() {
    let mut events = history(IN_PROGRESS);
    events.push(milestone_added("staging", day(40)));
    events.push(milestone_added("production", day(60)));
    events.push(InitiativeEvent::MilestoneMet {
        name: "staging".to_owned(),
        signal: None,
    });
    events.push(InitiativeEvent::MilestoneMissed {
        name: "production".to_owned(),
    });
    for name in ["staging", "production"] {
        given(events.clone())
            .when(meet(name), &ctx(day(70)))
            .then_refused(Rule::TransitionNotAllowed);
        given(events.clone())
            .when(miss(name), &ctx(day(70)))
            .then_refused(Rule::TransitionNotAllowed);
    }
}

#[test]
fn an_unknown_milestone_is_refused() {
    let mut events = history(IN_PROGRESS);
    events.push(milestone_added("staging", day(40)));
    given(events.clone())
        .when(meet("production"), &ctx(day(70)))
        .then_refused_on(Rule::UnknownMilestone, "name");
    given(events)
        .when(miss("production"), &ctx(day(70)))
        .then_refused_on(Rule::UnknownMilestone, "name");
}

#[test]
fn milestones_are_not_met_or_missed_in_a_draft_or_closed_initiative() {
    for status in [DRAFT, COMPLETED, CANCELLED] {
        let mut events = vec![created(), milestone_added("staging", day(40))];
        events.extend(history(status).into_iter().skip(1));
        given(events.clone())
            .when(meet("staging"), &ctx(day(70)))
            .then_refused(Rule::TransitionNotAllowed);
        given(events)
            .when(miss("staging"), &ctx(day(70)))
            .then_refused(Rule::TransitionNotAllowed);
    }
}
