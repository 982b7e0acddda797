//! An opportunity: a problem worth solving, with its evidence, votes, ratings and scores.
//!
//! `new -> under_review -> planned -> in_progress -> shipped -> validated / not_validated`; from
//! new or under_review also `declined` (reason and decision), `duplicate` (its evidence and votes
//! move to the canonical opportunity), `snoozed(until)`; `aged_out` by a rule, reopened by new
//! evidence. Votes and ratings are frozen in closed states. Whenever an input changes and a
//! scoring model is in force, the opportunity rescores itself: every change of its score is a
//! [`OpportunityEvent::Scored`] event.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::common::{
    Aggregate, Ctx, EntityId, EntityKind, EntityRef, PrincipalId, Team, Time, Visibility,
    check_number, check_tags, check_text,
};
use crate::error::{DomainError, Rule};
use crate::limits;
use crate::scoring::{AgingRule, ScoreInputs, ScoreSnapshot};
use crate::signal::Observation;

/// An opportunity's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpportunityStatus {
    /// Recorded, not yet looked at.
    New,
    /// Being triaged.
    UnderReview,
    /// Accepted: planned.
    Planned,
    /// Being worked on.
    InProgress,
    /// Shipped; the outcome is not yet validated.
    Shipped,
    /// Shipped and the outcome was validated.
    Validated,
    /// Shipped and the outcome was not validated.
    NotValidated,
    /// Declined by a decision, with a reason.
    Declined,
    /// A duplicate of a canonical opportunity.
    Duplicate,
    /// Set aside until a date.
    Snoozed,
    /// Aged out by a rule; new evidence reopens it.
    AgedOut,
}

impl OpportunityStatus {
    /// Every status.
    pub const ALL: [OpportunityStatus; 11] = [
        OpportunityStatus::New,
        OpportunityStatus::UnderReview,
        OpportunityStatus::Planned,
        OpportunityStatus::InProgress,
        OpportunityStatus::Shipped,
        OpportunityStatus::Validated,
        OpportunityStatus::NotValidated,
        OpportunityStatus::Declined,
        OpportunityStatus::Duplicate,
        OpportunityStatus::Snoozed,
        OpportunityStatus::AgedOut,
    ];

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            OpportunityStatus::New => "new",
            OpportunityStatus::UnderReview => "under_review",
            OpportunityStatus::Planned => "planned",
            OpportunityStatus::InProgress => "in_progress",
            OpportunityStatus::Shipped => "shipped",
            OpportunityStatus::Validated => "validated",
            OpportunityStatus::NotValidated => "not_validated",
            OpportunityStatus::Declined => "declined",
            OpportunityStatus::Duplicate => "duplicate",
            OpportunityStatus::Snoozed => "snoozed",
            OpportunityStatus::AgedOut => "aged_out",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<OpportunityStatus> {
        OpportunityStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Closed: votes and ratings are frozen and it is not ranked.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            OpportunityStatus::Shipped
                | OpportunityStatus::Validated
                | OpportunityStatus::NotValidated
                | OpportunityStatus::Declined
                | OpportunityStatus::Duplicate
                | OpportunityStatus::AgedOut
        )
    }

    /// Ranked: open and not set aside.
    pub fn is_ranked(self) -> bool {
        !self.is_closed() && self != OpportunityStatus::Snoozed
    }

    /// Triage (accept, duplicate, decline, snooze) is allowed only from these.
    fn is_triageable(self) -> bool {
        matches!(
            self,
            OpportunityStatus::New | OpportunityStatus::UnderReview
        )
    }
}

impl fmt::Display for OpportunityStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rough size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Size {
    /// Hours.
    Xs,
    /// Days.
    S,
    /// A week or two.
    M,
    /// A month or more.
    L,
    /// A quarter or more.
    Xl,
}

impl Size {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Size::Xs => "xs",
            Size::S => "s",
            Size::M => "m",
            Size::L => "l",
            Size::Xl => "xl",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<Size> {
        [Size::Xs, Size::S, Size::M, Size::L, Size::Xl]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One piece of evidence: a feedback item or a signal (with what it observed, copied when it was
/// attached: signals are immutable, so the copy cannot go stale).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The feedback item or signal.
    pub reference: EntityRef,
    /// For a signal, its observation.
    pub observation: Option<Observation>,
    /// When it was attached.
    pub attached_at: Time,
}

/// A principal's vote: one per principal, the latest wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VoteRecord {
    /// Who voted.
    pub principal: PrincipalId,
    /// 1 to [`limits::VOTE_WEIGHT_MAX`].
    pub weight: u32,
    /// The voter's segment (`mobile`, `payments`), for analysis.
    pub segment: Option<String>,
    /// When.
    pub at: Time,
}

/// A qualitative rating (customer impact, strategic value, effort): the latest per name wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatingRecord {
    /// The value.
    pub value: f64,
    /// Who rated.
    pub by: PrincipalId,
    /// When.
    pub at: Time,
    /// Why.
    pub rationale: String,
}

/// How a shipped opportunity's outcome turned out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Validation {
    /// The expected outcome was measured.
    Validated,
    /// It was not.
    NotValidated,
}

/// What triage decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Triage {
    /// Accepted: planned, optionally under a decision.
    Accept {
        /// The decision, if one was recorded.
        decision: Option<EntityId>,
    },
    /// A duplicate of `canonical`; its evidence and votes move there.
    Duplicate {
        /// The canonical opportunity.
        canonical: EntityId,
    },
    /// Declined.
    Decline {
        /// Why.
        reason: String,
        /// The decision that declined it.
        decision: EntityId,
    },
    /// Set aside until a date.
    Snooze {
        /// When it wakes.
        until: Time,
    },
}

/// What an opportunity is created with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpportunityDraft {
    /// The title.
    pub title: String,
    /// The problem statement.
    pub problem: String,
    /// The owner.
    pub owner: PrincipalId,
    /// The owning team.
    pub team: Team,
    /// The rough size.
    pub size: Option<Size>,
    /// Business outcome tags.
    pub outcome_tags: Vec<String>,
    /// Who may see it.
    pub visibility: Visibility,
}

/// Commands on an opportunity.
#[derive(Clone, Debug, PartialEq)]
pub enum OpportunityCommand {
    /// Creates it.
    Create {
        /// Its id.
        id: EntityId,
        /// Its content.
        draft: OpportunityDraft,
    },
    /// Starts triage.
    StartReview,
    /// Triage: accept, duplicate, decline or snooze.
    Triage(Triage),
    /// Ends a snooze whose date has passed.
    Wake,
    /// Planned -> in progress.
    StartWork,
    /// In progress -> shipped.
    Ship,
    /// Shipped -> validated or not validated, optionally with the signal that shows it.
    Validate {
        /// The outcome.
        outcome: Validation,
        /// The signal that verifies it.
        signal: Option<EntityId>,
    },
    /// Attaches a feedback item (without an observation) or a signal (with its observation) as
    /// evidence; reopens an aged-out opportunity.
    AttachEvidence(Evidence),
    /// Records a principal's vote (the actor's, or one cast on someone's behalf by a tool).
    Vote {
        /// The voter.
        principal: PrincipalId,
        /// 1 to [`limits::VOTE_WEIGHT_MAX`].
        weight: u32,
        /// The voter's segment.
        segment: Option<String>,
    },
    /// Records a qualitative rating by the actor.
    Rate {
        /// The rating's name (`customer_impact`, `strategic_value`, `effort`).
        name: String,
        /// The value.
        value: f64,
        /// Why.
        rationale: String,
    },
    /// Rescores under the model in force (after a model change); no event if nothing changed.
    Rescore,
    /// Ages it out under a rule, if the rule holds.
    AgeOut(AgingRule),
    /// On the canonical opportunity: takes over a duplicate's evidence (what it lacks) and
    /// votes (the latest per principal wins; none while closed). New evidence reopens an
    /// aged-out canonical opportunity, as attaching it would.
    AbsorbDuplicate {
        /// The duplicate.
        duplicate: EntityId,
        /// Its evidence.
        evidence: Vec<Evidence>,
        /// Its votes.
        votes: Vec<VoteRecord>,
    },
}

/// Events of an opportunity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpportunityEvent {
    /// Created.
    Created {
        /// Its id.
        id: EntityId,
        /// Its content.
        draft: OpportunityDraft,
        /// When.
        created_at: Time,
    },
    /// Triage started.
    ReviewStarted,
    /// Accepted by triage: planned.
    Accepted {
        /// The decision, if one.
        decision: Option<EntityId>,
    },
    /// Marked a duplicate; its evidence and votes move to the canonical one.
    MarkedDuplicate {
        /// The canonical opportunity.
        canonical: EntityId,
        /// The evidence that moves.
        evidence: Vec<Evidence>,
        /// The votes that move.
        votes: Vec<VoteRecord>,
    },
    /// Declined.
    Declined {
        /// Why.
        reason: String,
        /// The decision.
        decision: EntityId,
    },
    /// Snoozed.
    Snoozed {
        /// Until when.
        until: Time,
    },
    /// A snooze ended.
    Woke,
    /// Work started.
    WorkStarted,
    /// Shipped.
    Shipped,
    /// The shipped outcome was judged.
    OutcomeJudged {
        /// The outcome.
        outcome: Validation,
        /// The signal that verifies it.
        signal: Option<EntityId>,
    },
    /// Evidence attached.
    EvidenceAttached(Evidence),
    /// Reopened by new evidence after aging out.
    Reopened {
        /// The status it returns to.
        status: OpportunityStatus,
        /// The evidence that reopened it.
        by: EntityRef,
    },
    /// A vote was cast (replacing the principal's earlier vote).
    Voted(VoteRecord),
    /// A rating was recorded.
    Rated {
        /// The rating's name.
        name: String,
        /// The rating.
        rating: RatingRecord,
    },
    /// The score changed.
    Scored(ScoreSnapshot),
    /// Aged out by a rule.
    AgedOut {
        /// The rule's name.
        rule: String,
        /// The rule's version.
        rule_version: u32,
        /// Why the rule held.
        reason: String,
    },
    /// A duplicate's evidence and votes were taken over.
    DuplicateAbsorbed {
        /// The duplicate.
        duplicate: EntityId,
        /// Its evidence.
        evidence: Vec<Evidence>,
        /// Its votes.
        votes: Vec<VoteRecord>,
    },
}

/// An opportunity, folded from its events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Opportunity {
    /// Its id, once created.
    pub id: Option<EntityId>,
    /// `None` until created.
    pub status: Option<OpportunityStatus>,
    /// Its content.
    pub draft: Option<OpportunityDraft>,
    /// The canonical opportunity, when a duplicate.
    pub canonical: Option<EntityId>,
    /// Evidence, in the order attached.
    pub evidence: Vec<Evidence>,
    /// The latest vote per principal.
    pub votes: BTreeMap<PrincipalId, VoteRecord>,
    /// The latest rating per name.
    pub ratings: BTreeMap<String, RatingRecord>,
    /// The latest score.
    pub score: Option<ScoreSnapshot>,
    /// When it was created or last received evidence.
    pub last_evidence_at: Time,
    /// When a snooze ends.
    pub snoozed_until: Option<Time>,
    /// The status it had when it aged out (new evidence returns it there).
    pub status_before_aging: Option<OpportunityStatus>,
}

impl Opportunity {
    fn status(&self) -> Result<OpportunityStatus, DomainError> {
        self.status
            .ok_or_else(|| DomainError::new(Rule::NotFound, "no such opportunity"))
    }

    /// Whether the evidence is attached already.
    pub fn has_evidence(&self, reference: &EntityRef) -> bool {
        self.evidence.iter().any(|e| &e.reference == reference)
    }

    fn inputs_open(&self, status: OpportunityStatus, what: &str) -> Result<(), DomainError> {
        if status == OpportunityStatus::Duplicate {
            return Err(DomainError::new(
                Rule::DuplicateTakesNothing,
                format!(
                    "a duplicate takes no {what}: use its canonical opportunity {}",
                    self.canonical.as_ref().map(|c| c.as_str()).unwrap_or("?")
                ),
            ));
        }
        if status.is_closed() {
            return Err(DomainError::new(
                Rule::VotesFrozen,
                format!("{what} are frozen in state {status}"),
            ));
        }
        Ok(())
    }

    /// Appends a `Scored` event when the model in force gives a different score after `events`.
    fn rescored(&self, mut events: Vec<OpportunityEvent>, ctx: &Ctx<'_>) -> Vec<OpportunityEvent> {
        let Some(model) = ctx.scoring else {
            return events;
        };
        let mut after = self.clone();
        for event in &events {
            after.apply(event);
        }
        if after.status == Some(OpportunityStatus::Duplicate) {
            return events;
        }
        let snapshot = model.score(
            &ScoreInputs {
                ratings: &after.ratings,
                votes: &after.votes,
                evidence: &after.evidence,
            },
            ctx.now,
        );
        if after
            .score
            .as_ref()
            .is_none_or(|old| !old.same_score(&snapshot))
        {
            events.push(OpportunityEvent::Scored(snapshot));
        }
        events
    }
}

impl Aggregate for Opportunity {
    type Command = OpportunityCommand;
    type Event = OpportunityEvent;
    const KIND: EntityKind = EntityKind::Opportunity;

    fn decide(
        &self,
        command: OpportunityCommand,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<OpportunityEvent>, DomainError> {
        use OpportunityStatus as S;
        if let OpportunityCommand::Create { id, draft } = command {
            if self.status.is_some() {
                return Err(DomainError::new(
                    Rule::AlreadyExists,
                    format!("opportunity {id} exists"),
                ));
            }
            check_text("title", &draft.title, limits::TITLE_BYTES_MAX, true)?;
            check_text("problem", &draft.problem, limits::TEXT_BYTES_MAX, false)?;
            check_tags("outcome_tags", &draft.outcome_tags)?;
            let events = vec![OpportunityEvent::Created {
                id,
                draft,
                created_at: ctx.now,
            }];
            return Ok(self.rescored(events, ctx));
        }
        let status = self.status()?;
        let events = match command {
            OpportunityCommand::Create { .. } => unreachable!("handled above"),
            OpportunityCommand::StartReview => match status {
                S::New => vec![OpportunityEvent::ReviewStarted],
                _ => return Err(DomainError::transition("start_review", status)),
            },
            OpportunityCommand::Triage(triage) => {
                if !status.is_triageable() {
                    return Err(DomainError::transition("triage", status));
                }
                match triage {
                    Triage::Accept { decision } => vec![OpportunityEvent::Accepted { decision }],
                    Triage::Duplicate { canonical } => {
                        if self.id.as_ref() == Some(&canonical) {
                            return Err(DomainError::field(
                                Rule::InvalidCanonical,
                                "canonical",
                                "an opportunity cannot be a duplicate of itself",
                            ));
                        }
                        vec![OpportunityEvent::MarkedDuplicate {
                            canonical,
                            evidence: self.evidence.clone(),
                            votes: self.votes.values().cloned().collect(),
                        }]
                    }
                    Triage::Decline { reason, decision } => {
                        check_text("reason", &reason, limits::REASON_BYTES_MAX, true)?;
                        vec![OpportunityEvent::Declined { reason, decision }]
                    }
                    Triage::Snooze { until } => {
                        if until <= ctx.now {
                            return Err(DomainError::field(
                                Rule::SnoozeDate,
                                "until",
                                "a snooze must end in the future",
                            ));
                        }
                        vec![OpportunityEvent::Snoozed { until }]
                    }
                }
            }
            OpportunityCommand::Wake => match (status, self.snoozed_until) {
                (S::Snoozed, Some(until)) if until <= ctx.now => vec![OpportunityEvent::Woke],
                (S::Snoozed, _) => {
                    return Err(DomainError::new(
                        Rule::SnoozeDate,
                        "the snooze has not ended yet",
                    ));
                }
                _ => return Err(DomainError::transition("wake", status)),
            },
            OpportunityCommand::StartWork => match status {
                S::Planned => vec![OpportunityEvent::WorkStarted],
                _ => return Err(DomainError::transition("start_work", status)),
            },
            OpportunityCommand::Ship => match status {
                S::InProgress => vec![OpportunityEvent::Shipped],
                _ => return Err(DomainError::transition("ship", status)),
            },
            OpportunityCommand::Validate { outcome, signal } => match status {
                S::Shipped => vec![OpportunityEvent::OutcomeJudged { outcome, signal }],
                _ => return Err(DomainError::transition("validate", status)),
            },
            OpportunityCommand::AttachEvidence(evidence) => {
                if status == S::Duplicate {
                    self.inputs_open(status, "evidence")?;
                }
                if !matches!(
                    evidence.reference.kind,
                    EntityKind::Feedback | EntityKind::Signal
                ) {
                    return Err(DomainError::field(
                        Rule::InvalidField,
                        "evidence",
                        "evidence is a feedback item or a signal",
                    ));
                }
                // The scoring reads metrics from the observation of any evidence: a feedback
                // item carrying one would pass for a signal.
                match (evidence.reference.kind, &evidence.observation) {
                    (EntityKind::Feedback, Some(_)) => {
                        return Err(DomainError::field(
                            Rule::InvalidField,
                            "observation",
                            "feedback evidence carries no observation",
                        ));
                    }
                    (EntityKind::Signal, None) => {
                        return Err(DomainError::field(
                            Rule::InvalidField,
                            "observation",
                            "signal evidence carries the signal's observation",
                        ));
                    }
                    _ => {}
                }
                if self.has_evidence(&evidence.reference) {
                    return Err(DomainError::new(
                        Rule::AlreadyLinked,
                        format!("{} is already evidence", evidence.reference),
                    ));
                }
                if self.evidence.len() >= limits::EVIDENCE_MAX {
                    return Err(DomainError::field(
                        Rule::Limit,
                        "evidence",
                        format!("at most {} pieces of evidence", limits::EVIDENCE_MAX),
                    ));
                }
                let by = evidence.reference.clone();
                let mut events = vec![OpportunityEvent::EvidenceAttached(evidence)];
                if status == S::AgedOut {
                    events.push(OpportunityEvent::Reopened {
                        status: self.status_before_aging.unwrap_or(S::New),
                        by,
                    });
                }
                events
            }
            OpportunityCommand::Vote {
                principal,
                weight,
                segment,
            } => {
                self.inputs_open(status, "votes")?;
                if weight == 0 || weight > limits::VOTE_WEIGHT_MAX {
                    return Err(DomainError::field(
                        Rule::Limit,
                        "weight",
                        format!("must be 1 to {}, got {weight}", limits::VOTE_WEIGHT_MAX),
                    ));
                }
                if let Some(segment) = &segment {
                    check_tags("segment", std::slice::from_ref(segment))?;
                }
                if !self.votes.contains_key(&principal) && self.votes.len() >= limits::VOTERS_MAX {
                    return Err(DomainError::field(
                        Rule::Limit,
                        "principal",
                        format!("at most {} voters", limits::VOTERS_MAX),
                    ));
                }
                vec![OpportunityEvent::Voted(VoteRecord {
                    principal,
                    weight,
                    segment,
                    at: ctx.now,
                })]
            }
            OpportunityCommand::Rate {
                name,
                value,
                rationale,
            } => {
                self.inputs_open(status, "ratings")?;
                check_tags("name", std::slice::from_ref(&name))?;
                check_number("value", value)?;
                check_text("rationale", &rationale, limits::REASON_BYTES_MAX, false)?;
                vec![OpportunityEvent::Rated {
                    name,
                    rating: RatingRecord {
                        value,
                        by: ctx.actor.clone(),
                        at: ctx.now,
                        rationale,
                    },
                }]
            }
            OpportunityCommand::Rescore => {
                if ctx.scoring.is_none() {
                    return Err(DomainError::new(
                        Rule::NoScoringModel,
                        "no scoring model is in force",
                    ));
                }
                if status == S::Duplicate {
                    self.inputs_open(status, "score")?;
                }
                vec![]
            }
            OpportunityCommand::AgeOut(rule) => {
                // An unchecked rule naming a closed status would age out a shipped opportunity,
                // or an aged-out one again (and lose the status it would reopen to).
                rule.validate()?;
                if !rule.statuses.contains(&status) {
                    return Err(DomainError::transition("age_out", status));
                }
                let idle_since = self.last_evidence_at;
                let due = idle_since.plus_days(i64::from(rule.no_evidence_days));
                let score = self.score.as_ref().map_or(0.0, |s| s.value);
                if ctx.now < due || score >= rule.score_below {
                    return Err(DomainError::new(
                        Rule::AgingRuleNotMet,
                        format!(
                            "rule {} needs {} days without evidence (due at {due}) and a score \
                             below {}; score is {score}",
                            rule.name, rule.no_evidence_days, rule.score_below
                        ),
                    ));
                }
                let idle_days = (ctx.now.0 - idle_since.0) / crate::DAY_MICROS;
                return Ok(vec![OpportunityEvent::AgedOut {
                    reason: format!(
                        "no new evidence for {idle_days} days (rule: {}) and score {score} below {}",
                        rule.no_evidence_days, rule.score_below
                    ),
                    rule: rule.name,
                    rule_version: rule.version,
                }]);
            }
            OpportunityCommand::AbsorbDuplicate {
                duplicate,
                evidence,
                votes,
            } => {
                if status == S::Duplicate {
                    return Err(DomainError::field(
                        Rule::InvalidCanonical,
                        "canonical",
                        "the canonical opportunity is itself a duplicate",
                    ));
                }
                let mut evidence_new: Vec<Evidence> = Vec::new();
                for piece in evidence {
                    let known = self.has_evidence(&piece.reference)
                        || evidence_new.iter().any(|e| e.reference == piece.reference);
                    if !known {
                        evidence_new.push(piece);
                    }
                }
                // New evidence reopens an aged-out canonical opportunity, as attaching it would;
                // it is then open, so the votes move with the evidence.
                let reopened = match evidence_new.first() {
                    Some(first) if status == S::AgedOut => Some(OpportunityEvent::Reopened {
                        status: self.status_before_aging.unwrap_or(S::New),
                        by: first.reference.clone(),
                    }),
                    _ => None,
                };
                // Votes are frozen in a closed canonical opportunity: only evidence moves.
                let votes = if status.is_closed() && reopened.is_none() {
                    Vec::new()
                } else {
                    votes
                };
                let mut events = vec![OpportunityEvent::DuplicateAbsorbed {
                    duplicate,
                    evidence: evidence_new,
                    votes,
                }];
                events.extend(reopened);
                events
            }
        };
        Ok(self.rescored(events, ctx))
    }

    fn apply(&mut self, event: &OpportunityEvent) {
        use OpportunityStatus as S;
        match event {
            OpportunityEvent::Created {
                id,
                draft,
                created_at,
            } => {
                self.status = Some(S::New);
                self.draft = Some(draft.clone());
                self.last_evidence_at = *created_at;
                self.id = Some(id.clone());
            }
            OpportunityEvent::ReviewStarted => self.status = Some(S::UnderReview),
            OpportunityEvent::Accepted { .. } => self.status = Some(S::Planned),
            OpportunityEvent::MarkedDuplicate { canonical, .. } => {
                self.status = Some(S::Duplicate);
                self.canonical = Some(canonical.clone());
            }
            OpportunityEvent::Declined { .. } => self.status = Some(S::Declined),
            OpportunityEvent::Snoozed { until } => {
                self.status = Some(S::Snoozed);
                self.snoozed_until = Some(*until);
            }
            OpportunityEvent::Woke => {
                self.status = Some(S::UnderReview);
                self.snoozed_until = None;
            }
            OpportunityEvent::WorkStarted => self.status = Some(S::InProgress),
            OpportunityEvent::Shipped => self.status = Some(S::Shipped),
            OpportunityEvent::OutcomeJudged { outcome, .. } => {
                self.status = Some(match outcome {
                    Validation::Validated => S::Validated,
                    Validation::NotValidated => S::NotValidated,
                })
            }
            OpportunityEvent::EvidenceAttached(evidence) => {
                self.last_evidence_at = self.last_evidence_at.max(evidence.attached_at);
                self.evidence.push(evidence.clone());
            }
            OpportunityEvent::Reopened { status, .. } => {
                self.status = Some(*status);
                self.status_before_aging = None;
            }
            OpportunityEvent::Voted(vote) => {
                self.votes.insert(vote.principal.clone(), vote.clone());
            }
            OpportunityEvent::Rated { name, rating } => {
                self.ratings.insert(name.clone(), rating.clone());
            }
            OpportunityEvent::Scored(snapshot) => self.score = Some(snapshot.clone()),
            OpportunityEvent::AgedOut { .. } => {
                self.status_before_aging = self.status;
                self.status = Some(S::AgedOut);
            }
            OpportunityEvent::DuplicateAbsorbed {
                evidence, votes, ..
            } => {
                for piece in evidence {
                    if !self.has_evidence(&piece.reference) {
                        self.last_evidence_at = self.last_evidence_at.max(piece.attached_at);
                        self.evidence.push(piece.clone());
                    }
                }
                for vote in votes {
                    // One vote per principal, the latest wins, across both opportunities.
                    let newer = self
                        .votes
                        .get(&vote.principal)
                        .is_none_or(|current| vote.at > current.at);
                    if newer {
                        self.votes.insert(vote.principal.clone(), vote.clone());
                    }
                }
            }
        }
    }
}
