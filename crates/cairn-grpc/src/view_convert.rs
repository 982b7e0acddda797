//! From the read models (`cairn_projections` views) to the messages the feedback-loop reads answer
//! with. A view keeps what lists and rankings need; the rest of a message (a decision's full
//! content, an opportunity's evidence and ratings, a stream version, when a milestone closed) is
//! folded from the entity's own records up to the answer's position, with the domain's `apply`,
//! so both halves reflect the same position. Domain values convert with `domain_convert`.
//!
//! Times the domain events do not carry (when a decision was rejected, an initiative created, an
//! opportunity shipped, a milestone closed) are the recording times of the records, as the read
//! models do for an aging.

use cairn_domain::decision::{Decision, DecisionEvent};
use cairn_domain::feedback::{FeedbackContent, Personal};
use cairn_domain::initiative::{Initiative, InitiativeEvent, MilestoneStatus};
use cairn_domain::opportunity::{Opportunity, OpportunityEvent, OpportunityStatus};
use cairn_domain::scoring::ScoreSnapshot;
use cairn_domain::{EntityId, EntityRef, Event, Time};
use cairn_projections::{
    AgedOutView, DecisionView, FeedbackView, InitiativeView, OpportunityView, SignalView,
};
use cairn_service::feedback_loop::DomainAggregate;
use cairn_service::history::HistoryEntry;

use crate::domain_convert::{
    decision_content_to_proto, decision_status_name_to_proto, decision_status_to_proto,
    entity_ref_to_proto, evidence_to_proto, feedback_source_to_proto, feedback_status_to_proto,
    initiative_draft_to_proto, initiative_status_to_proto, milestone_status_to_proto,
    observation_to_proto, opportunity_draft_to_proto, opportunity_status_to_proto, rating_to_proto,
    score_snapshot_to_proto, visibility_to_proto,
};
use crate::proto;

/// The state of an aggregate folded from its records.
pub(crate) fn fold<A: DomainAggregate>(entries: &[HistoryEntry]) -> A {
    let mut state = A::default();
    for entry in entries {
        if let Some(event) = A::own_event(entry.event.clone()) {
            state.apply(&event);
        }
    }
    state
}

fn ids(ids: &[EntityId]) -> Vec<String> {
    ids.iter().map(|id| id.as_str().to_owned()).collect()
}

fn id_or_empty(id: Option<&EntityId>) -> String {
    id.map(|id| id.as_str().to_owned()).unwrap_or_default()
}

/// A feedback item as a reader sees it: text and submitter only when `content` is open.
pub(crate) fn feedback_to_proto(
    view: &FeedbackView,
    content: &Personal<FeedbackContent>,
) -> proto::Feedback {
    let (personal_state, text, submitter) = match content {
        Personal::Present(content) => (
            proto::PersonalState::Open,
            content.text.clone(),
            content
                .submitter
                .as_ref()
                .map(|submitter| submitter.as_str().to_owned())
                .unwrap_or_default(),
        ),
        Personal::Withheld => (proto::PersonalState::Withheld, String::new(), String::new()),
        Personal::Erased => (proto::PersonalState::Erased, String::new(), String::new()),
    };
    proto::Feedback {
        id: view.id.as_str().to_owned(),
        status: feedback_status_to_proto(view.status) as i32,
        team: view.team.as_str().to_owned(),
        source: feedback_source_to_proto(view.source) as i32,
        tags: view.tags.clone(),
        outcome_tags: view.outcome_tags.clone(),
        visibility: visibility_to_proto(view.visibility) as i32,
        received_at_micros: view.received_at.0,
        personal_state: personal_state as i32,
        text,
        submitter,
        opportunity_ids: ids(&view.opportunities),
        discard_reason: view.discard_reason.clone().unwrap_or_default(),
        version: view.stream_version.0,
    }
}

/// A signal, with the opportunities it is evidence for.
pub(crate) fn signal_to_proto(view: &SignalView, opportunities: &[EntityId]) -> proto::Signal {
    proto::Signal {
        id: view.id.as_str().to_owned(),
        observation: Some(observation_to_proto(&view.observation)),
        recorded_at_micros: view.recorded_at.0,
        opportunity_ids: ids(opportunities),
        // A signal is immutable: its one record.
        version: 1,
    }
}

/// A decision: the view's status and who decided, the content folded from its records.
pub(crate) fn decision_to_proto(view: &DecisionView, entries: &[HistoryEntry]) -> proto::Decision {
    let state: Decision = fold(entries);
    let status = state
        .status
        .as_ref()
        .map_or(decision_status_name_to_proto(&view.status), |status| {
            decision_status_to_proto(status).0
        });
    let mut rejected_at = None;
    let mut status_changed_at = view.proposed_at;
    for entry in entries {
        let Event::Decision(event) = &entry.event else {
            continue;
        };
        let recorded = Time(entry.recorded_at.0);
        match event {
            DecisionEvent::Proposed { proposed_at, .. } => status_changed_at = *proposed_at,
            DecisionEvent::Revised(_) => {}
            DecisionEvent::Accepted { at, .. } => status_changed_at = *at,
            DecisionEvent::Rejected { .. } => {
                rejected_at = Some(recorded);
                status_changed_at = recorded;
            }
            DecisionEvent::Deprecated { .. } | DecisionEvent::Superseded { .. } => {
                status_changed_at = recorded
            }
        }
    }
    proto::Decision {
        id: view.id.as_str().to_owned(),
        status: status as i32,
        content: state.content.as_ref().map(decision_content_to_proto),
        proposed_at_micros: view.proposed_at.0,
        proposed_by: entries
            .first()
            .map(|entry| entry.actor.clone())
            .unwrap_or_default(),
        decided_by: view
            .decided_by
            .as_ref()
            .map(|by| by.as_str().to_owned())
            .unwrap_or_default(),
        decided_at_micros: view.decided_at.or(rejected_at).map_or(0, |at| at.0),
        reason: view.status_reason.clone().unwrap_or_default(),
        superseded_by: id_or_empty(view.superseded_by.as_ref()),
        status_changed_at_micros: status_changed_at.0,
        version: view.stream_version.0,
    }
}

/// An initiative: the view's status, flags and milestones, the draft folded from its records.
pub(crate) fn initiative_to_proto(
    view: &InitiativeView,
    entries: &[HistoryEntry],
) -> proto::Initiative {
    use cairn_domain::initiative::InitiativeStatus as S;
    let state: Initiative = fold(entries);
    let recorded_at = |position| {
        entries
            .iter()
            .find(|entry| entry.position == position)
            .map_or(0, |entry| entry.recorded_at.0)
    };
    let status_changed_at = entries
        .iter()
        .rfind(|entry| {
            matches!(
                entry.event,
                Event::Initiative(
                    InitiativeEvent::Created { .. }
                        | InitiativeEvent::Scheduled
                        | InitiativeEvent::Started
                        | InitiativeEvent::Completed
                        | InitiativeEvent::Cancelled { .. }
                )
            )
        })
        .map_or(0, |entry| entry.recorded_at.0);
    let reason = view.status_reason.clone().unwrap_or_default();
    proto::Initiative {
        id: view.id.as_str().to_owned(),
        status: initiative_status_to_proto(view.status) as i32,
        at_risk: view.at_risk,
        risk_reason: if view.at_risk {
            reason.clone()
        } else {
            String::new()
        },
        draft: state.draft.as_ref().map(|draft| proto::InitiativeDraft {
            implements: ids(&view.implements),
            ..initiative_draft_to_proto(draft)
        }),
        milestones: view
            .milestones
            .iter()
            .map(|milestone| proto::Milestone {
                name: milestone.name.clone(),
                due_micros: milestone.due.0,
                exit_criteria: milestone.exit_criteria.clone(),
                status: milestone_status_to_proto(milestone.status) as i32,
                signal_id: id_or_empty(milestone.signal.as_ref()),
                closed_at_micros: milestone.closed_position.map_or(0, recorded_at),
            })
            .collect(),
        cancel_reason: if view.status == S::Cancelled {
            reason
        } else {
            String::new()
        },
        created_at_micros: entries.first().map_or(0, |entry| entry.recorded_at.0),
        status_changed_at_micros: status_changed_at,
        version: view.stream_version.0,
    }
}

/// How an initiative implementing an opportunity stands (`WhatHappened`).
pub(crate) fn initiative_outcome_to_proto(view: &InitiativeView) -> proto::InitiativeOutcome {
    use cairn_domain::initiative::InitiativeStatus as S;
    proto::InitiativeOutcome {
        initiative_id: view.id.as_str().to_owned(),
        title: view.title.clone(),
        status: initiative_status_to_proto(view.status) as i32,
        at_risk: view.at_risk,
        target_date_micros: view.target_date.0,
        milestones_met: view
            .milestones
            .iter()
            .filter(|milestone| milestone.status == MilestoneStatus::Met)
            .count() as u32,
        milestones: view.milestones.len() as u32,
        cancel_reason: match view.status {
            S::Cancelled => view.status_reason.clone().unwrap_or_default(),
            _ => String::new(),
        },
    }
}

/// When an opportunity shipped (the recording time of its last `opportunity.shipped`).
pub(crate) fn shipped_at(entries: &[HistoryEntry]) -> i64 {
    entries
        .iter()
        .rfind(|entry| matches!(entry.event, Event::Opportunity(OpportunityEvent::Shipped)))
        .map_or(0, |entry| entry.recorded_at.0)
}

/// An aged-out opportunity and the rule that aged it.
pub(crate) fn aged_out_entry_to_proto(
    view: &AgedOutView,
    status_before: Option<OpportunityStatus>,
    status_now: Option<OpportunityStatus>,
    recorded: Option<proto::Provenance>,
) -> proto::AgedOutEntry {
    let status = |status: Option<OpportunityStatus>| {
        status.map_or(
            proto::OpportunityStatus::Unspecified,
            opportunity_status_to_proto,
        ) as i32
    };
    proto::AgedOutEntry {
        opportunity_id: view.opportunity.as_str().to_owned(),
        title: view.title.clone(),
        team: view.team.as_str().to_owned(),
        rule: view.rule.clone(),
        rule_version: view.rule_version,
        reason: view.reason.clone(),
        aged_out_at_micros: view.at.0,
        status_before: status(status_before),
        status: status(status_now),
        recorded,
    }
}

/// An opportunity: the view's status, counts and decisions, the evidence, ratings and latest
/// score folded from its records.
pub(crate) fn opportunity_to_proto(
    view: &OpportunityView,
    rank: Option<u64>,
    entries: &[HistoryEntry],
    aged_out: Option<proto::AgedOutEntry>,
) -> proto::Opportunity {
    let state: Opportunity = fold(entries);
    proto::Opportunity {
        id: view.id.as_str().to_owned(),
        status: opportunity_status_to_proto(view.status) as i32,
        draft: state.draft.as_ref().map(opportunity_draft_to_proto),
        created_at_micros: view.created_at.0,
        last_evidence_at_micros: view.last_evidence_at.0,
        canonical_id: id_or_empty(view.canonical.as_ref()),
        snoozed_until_micros: view.snoozed_until.map_or(0, |until| until.0),
        decision_id: id_or_empty(view.decision.as_ref()),
        decline_reason: view.decline_reason.clone().unwrap_or_default(),
        outcome_signal_id: id_or_empty(view.outcome_signal.as_ref()),
        aged_out,
        evidence: state.evidence.iter().map(evidence_to_proto).collect(),
        voters: view.voters,
        vote_weight_total: view.vote_weight,
        ratings: state
            .ratings
            .iter()
            .map(|(name, rating)| rating_to_proto(name, rating))
            .collect(),
        score: state.score.as_ref().map(score_snapshot_to_proto),
        rank: rank.map_or(0, |rank| rank as u32),
        version: view.stream_version.0,
    }
}

/// One line of a ranking: `snapshot` is the score the line's score comes from.
pub(crate) fn ranked_to_proto(
    rank: u64,
    view: &OpportunityView,
    snapshot: Option<&ScoreSnapshot>,
) -> proto::RankedOpportunity {
    proto::RankedOpportunity {
        rank: rank as u32,
        id: view.id.as_str().to_owned(),
        title: view.title.clone(),
        team: view.team.as_str().to_owned(),
        owner: view.owner.as_str().to_owned(),
        status: opportunity_status_to_proto(view.status) as i32,
        score: view.score.unwrap_or(0.0),
        model: snapshot
            .map(|snapshot| snapshot.model.clone())
            .unwrap_or_default(),
        model_version: snapshot.map_or(0, |snapshot| snapshot.model_version),
        scored_at_micros: snapshot.map_or(0, |snapshot| snapshot.computed_at.0),
    }
}

/// The view of any entity, for a lineage summary.
#[derive(Clone, Debug)]
pub(crate) enum EntityView {
    Feedback(FeedbackView),
    Signal(SignalView),
    Opportunity(OpportunityView),
    Decision(DecisionView),
    Initiative(InitiativeView),
}

/// An entity in a lineage answer: title, team and status from its view (none when the entity
/// has no view: an edge may name an entity that was never recorded, such as a decision a triage
/// named before proposing it). Feedback has no title: its text is personal data.
pub(crate) fn entity_summary_to_proto(
    entity: &EntityRef,
    view: Option<&EntityView>,
) -> proto::EntitySummary {
    use proto::entity_summary::Status;
    let (title, team, status) = match view {
        None => (String::new(), String::new(), None),
        Some(EntityView::Feedback(view)) => (
            String::new(),
            view.team.as_str().to_owned(),
            Some(Status::FeedbackStatus(
                feedback_status_to_proto(view.status) as i32,
            )),
        ),
        Some(EntityView::Signal(view)) => (
            view.observation.metric.clone(),
            view.observation
                .team
                .as_ref()
                .map(|team| team.as_str().to_owned())
                .unwrap_or_default(),
            None,
        ),
        Some(EntityView::Opportunity(view)) => (
            view.title.clone(),
            view.team.as_str().to_owned(),
            Some(Status::OpportunityStatus(
                opportunity_status_to_proto(view.status) as i32,
            )),
        ),
        Some(EntityView::Decision(view)) => (
            view.title.clone(),
            view.team.as_str().to_owned(),
            Some(Status::DecisionStatus(
                decision_status_name_to_proto(&view.status) as i32,
            )),
        ),
        Some(EntityView::Initiative(view)) => (
            view.title.clone(),
            view.team.as_str().to_owned(),
            Some(Status::InitiativeStatus(
                initiative_status_to_proto(view.status) as i32,
            )),
        ),
    };
    proto::EntitySummary {
        entity: Some(entity_ref_to_proto(entity)),
        title,
        team,
        status,
    }
}

/// A time in words: `2025-03-01T12:00:00Z` (UTC, to the second), for reasons a reader reads.
pub(crate) fn utc_text(time: Time) -> String {
    let seconds = time.0.div_euclid(1_000_000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil: the proleptic Gregorian date of a day number.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(utc_text(Time(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            utc_text(Time(1_709_294_400_000_000)),
            "2024-03-01T12:00:00Z"
        );
        assert_eq!(
            utc_text(Time(951_782_400_000_000 + 59_000_000)),
            "2000-02-29T00:00:59Z"
        );
        assert_eq!(utc_text(Time(-1_000_000)), "1969-12-31T23:59:59Z");
    }
}
