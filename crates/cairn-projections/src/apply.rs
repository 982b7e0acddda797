//! Folding records into the views. One batch of records is applied through an in-memory overlay
//! of the keys it touched and written as one atomic sled batch together with the applied
//! position, so a crash never leaves views and position out of step, and a hot view is written
//! once per batch rather than once per record.

use std::collections::BTreeMap;

use cairn_domain::codec::StoredPersonal;
use cairn_domain::decision::DecisionEvent;
use cairn_domain::feedback::{FeedbackEvent, FeedbackStatus};
use cairn_domain::initiative::{InitiativeEvent, InitiativeStatus, MilestoneStatus};
use cairn_domain::opportunity::{OpportunityEvent, OpportunityStatus, Validation};
use cairn_domain::signal::SignalEvent;
use cairn_domain::{EntityId, EntityKind, EntityRef, Event, Time};
use cairn_ledger::{Position, Record, SealedPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ProjectionError;
use crate::keys;
use crate::views::{
    AgedOutView, DecisionView, FeedbackView, InitiativeView, MilestoneView, OpportunityView,
    SignalView,
};

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("views always encode")
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProjectionError> {
    postcard::from_bytes(bytes).map_err(|e| ProjectionError::Corrupt(format!("a view: {e}")))
}

/// The keys a batch changed, over the tree.
pub(crate) struct Overlay<'t> {
    tree: &'t sled::Tree,
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'t> Overlay<'t> {
    pub(crate) fn new(tree: &'t sled::Tree) -> Overlay<'t> {
        Overlay {
            tree,
            changes: BTreeMap::new(),
        }
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        match self.changes.get(key) {
            Some(value) => Ok(value.clone()),
            None => Ok(self.tree.get(key)?.map(|v| v.to_vec())),
        }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        self.get_raw(key)?.map(|bytes| decode(&bytes)).transpose()
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.changes.insert(key, Some(value));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.changes.insert(key, None);
    }

    pub(crate) fn into_batch(self, applied: Position) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (key, value) in self.changes {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        batch.insert(keys::APPLIED, &applied.0.to_be_bytes());
        batch
    }
}

/// Applies one record. Records of aggregate types the domain does not know (raw ledger events)
/// change nothing.
pub(crate) fn apply_record(
    overlay: &mut Overlay<'_>,
    record: &Record,
) -> Result<(), ProjectionError> {
    let envelope = &record.envelope;
    let Some(kind) = EntityKind::parse(&envelope.stream.aggregate_type) else {
        return Ok(());
    };
    let position = record.position();
    let payload = SealedPayload::decode(&record.payload).map_err(|e| ProjectionError::Decode {
        position,
        reason: e.to_string(),
    })?;
    let event = Event::decode(
        &envelope.stream.aggregate_type,
        &envelope.event_type,
        envelope.event_schema_version,
        &payload.clear,
        StoredPersonal::Withheld,
    )
    .map_err(|e| ProjectionError::Decode {
        position,
        reason: e.to_string(),
    })?;
    let tenant = envelope.stream.tenant.as_str();
    let id = EntityId::new(envelope.stream.aggregate_id.clone()).map_err(|e| {
        ProjectionError::Decode {
            position,
            reason: e.to_string(),
        }
    })?;
    let own = EntityRef::new(kind, id.clone());
    let mut applier = Applier {
        overlay,
        tenant,
        id: &id,
        position,
        recorded_at: Time(envelope.recorded_at.0),
    };
    for edge in event.edges(&own) {
        applier.edge(&edge)?;
    }
    match event {
        Event::Feedback(event) => applier.feedback(event),
        Event::Signal(event) => applier.signal(event),
        Event::Opportunity(event) => applier.opportunity(event),
        Event::Decision(event) => applier.decision(event),
        Event::Initiative(event) => applier.initiative(event),
    }
}

struct Applier<'a, 't> {
    overlay: &'a mut Overlay<'t>,
    tenant: &'a str,
    id: &'a EntityId,
    position: Position,
    recorded_at: Time,
}

impl Applier<'_, '_> {
    fn edge(&mut self, edge: &cairn_domain::Edge) -> Result<(), ProjectionError> {
        let forward = keys::edge(false, self.tenant, &edge.from, edge.relation, &edge.to);
        if self.overlay.get_raw(&forward)?.is_none() {
            let position = self.position.0.to_be_bytes().to_vec();
            self.overlay.put(forward, position.clone());
            self.overlay.put(
                keys::edge(true, self.tenant, &edge.to, edge.relation, &edge.from),
                position,
            );
        }
        Ok(())
    }

    fn load<T: DeserializeOwned>(&self, kind: EntityKind) -> Result<Option<T>, ProjectionError> {
        self.overlay
            .get(&keys::current(kind, self.tenant, self.id.as_str()))
    }

    fn require<T: DeserializeOwned>(&self, kind: EntityKind) -> Result<T, ProjectionError> {
        self.load(kind)?.ok_or_else(|| {
            ProjectionError::Corrupt(format!(
                "record at position {} changes {kind}/{} before it exists",
                self.position, self.id
            ))
        })
    }

    /// Stores the current view and its version at this position.
    fn store<T: Serialize>(&mut self, kind: EntityKind, view: &T) {
        let bytes = encode(view);
        self.overlay.put(
            keys::with_position(
                keys::version_prefix(kind, self.tenant, self.id.as_str()),
                self.position,
            ),
            bytes.clone(),
        );
        self.overlay
            .put(keys::current(kind, self.tenant, self.id.as_str()), bytes);
    }

    fn feedback(&mut self, event: FeedbackEvent) -> Result<(), ProjectionError> {
        let view = match event {
            FeedbackEvent::Received {
                id,
                team,
                source,
                tags,
                outcome_tags,
                visibility,
                received_at,
                ..
            } => FeedbackView {
                id,
                team,
                source,
                tags,
                outcome_tags,
                visibility,
                status: FeedbackStatus::Received,
                received_at,
                received_position: self.position,
                opportunities: Vec::new(),
                discard_reason: None,
                last_position: self.position,
            },
            FeedbackEvent::Linked { opportunity } => {
                let mut view: FeedbackView = self.require(EntityKind::Feedback)?;
                view.status = FeedbackStatus::Processed;
                view.opportunities.push(opportunity);
                view
            }
            FeedbackEvent::Discarded { reason } => {
                let mut view: FeedbackView = self.require(EntityKind::Feedback)?;
                view.status = FeedbackStatus::Discarded;
                view.discard_reason = Some(reason);
                view
            }
        };
        let view = FeedbackView {
            last_position: self.position,
            ..view
        };
        self.store(EntityKind::Feedback, &view);
        Ok(())
    }

    fn signal(&mut self, event: SignalEvent) -> Result<(), ProjectionError> {
        let SignalEvent::Observed {
            id,
            observation,
            recorded_at,
        } = event;
        let view = SignalView {
            id,
            observation,
            recorded_at,
            position: self.position,
        };
        self.store(EntityKind::Signal, &view);
        Ok(())
    }

    fn set_ranking(
        &mut self,
        before: Option<(OpportunityStatus, Option<f64>)>,
        view: &OpportunityView,
    ) {
        let key = |score: f64| keys::ranking(self.tenant, score, view.id.as_str());
        if let Some((status, Some(score))) = before
            && status.is_ranked()
        {
            self.overlay.remove(key(score));
        }
        if let Some(score) = view.score
            && view.status.is_ranked()
        {
            self.overlay.put(key(score), Vec::new());
        }
    }

    fn vote(
        &mut self,
        view: &mut OpportunityView,
        vote: &cairn_domain::opportunity::VoteRecord,
        latest_wins_by_time: bool,
    ) -> Result<(), ProjectionError> {
        let key = keys::vote(self.tenant, view.id.as_str(), vote.principal.as_str());
        let old: Option<(u32, i64)> = self.overlay.get(&key)?;
        if latest_wins_by_time && old.is_some_and(|(_, at)| at >= vote.at.0) {
            return Ok(());
        }
        match old {
            Some((weight, _)) => view.vote_weight -= u64::from(weight),
            None => view.voters += 1,
        }
        view.vote_weight += u64::from(vote.weight);
        self.overlay.put(key, encode(&(vote.weight, vote.at.0)));
        Ok(())
    }

    fn opportunity(&mut self, event: OpportunityEvent) -> Result<(), ProjectionError> {
        use OpportunityStatus as S;
        let mut view: OpportunityView = match event {
            OpportunityEvent::Created {
                ref id,
                ref draft,
                created_at,
            } => OpportunityView {
                id: id.clone(),
                title: draft.title.clone(),
                problem: draft.problem.clone(),
                owner: draft.owner.clone(),
                team: draft.team.clone(),
                size: draft.size,
                outcome_tags: draft.outcome_tags.clone(),
                visibility: draft.visibility,
                status: S::New,
                canonical: None,
                decline_reason: None,
                decision: None,
                snoozed_until: None,
                aged_out: None,
                evidence: 0,
                voters: 0,
                vote_weight: 0,
                score: None,
                score_position: None,
                created_at,
                last_position: self.position,
            },
            _ => self.require(EntityKind::Opportunity)?,
        };
        let before = (!matches!(event, OpportunityEvent::Created { .. }))
            .then_some((view.status, view.score));
        match event {
            OpportunityEvent::Created { .. } => {}
            OpportunityEvent::ReviewStarted => view.status = S::UnderReview,
            OpportunityEvent::Accepted { decision } => {
                view.status = S::Planned;
                view.decision = decision;
            }
            OpportunityEvent::MarkedDuplicate { canonical, .. } => {
                view.status = S::Duplicate;
                view.canonical = Some(canonical);
            }
            OpportunityEvent::Declined { reason, decision } => {
                view.status = S::Declined;
                view.decline_reason = Some(reason);
                view.decision = Some(decision);
            }
            OpportunityEvent::Snoozed { until } => {
                view.status = S::Snoozed;
                view.snoozed_until = Some(until);
            }
            OpportunityEvent::Woke => {
                view.status = S::UnderReview;
                view.snoozed_until = None;
            }
            OpportunityEvent::WorkStarted => view.status = S::InProgress,
            OpportunityEvent::Shipped => view.status = S::Shipped,
            OpportunityEvent::OutcomeJudged { outcome, .. } => {
                view.status = match outcome {
                    Validation::Validated => S::Validated,
                    Validation::NotValidated => S::NotValidated,
                }
            }
            OpportunityEvent::EvidenceAttached(_) => view.evidence += 1,
            OpportunityEvent::Reopened { status, .. } => {
                view.status = status;
                view.aged_out = None;
            }
            OpportunityEvent::Voted(vote) => self.vote(&mut view, &vote, false)?,
            OpportunityEvent::Rated { .. } => {}
            OpportunityEvent::Scored(snapshot) => {
                view.score = Some(snapshot.value);
                view.score_position = Some(self.position);
                self.overlay.put(
                    keys::with_position(
                        keys::score_prefix(self.tenant, self.id.as_str()),
                        self.position,
                    ),
                    snapshot.value.to_bits().to_be_bytes().to_vec(),
                );
            }
            OpportunityEvent::AgedOut {
                rule,
                rule_version,
                reason,
            } => {
                view.status = S::AgedOut;
                let aged = AgedOutView {
                    opportunity: view.id.clone(),
                    title: view.title.clone(),
                    team: view.team.clone(),
                    rule,
                    rule_version,
                    reason,
                    position: self.position,
                    at: self.recorded_at,
                };
                self.overlay.put(
                    keys::aged(self.tenant, aged.at.0, view.id.as_str()),
                    encode(&aged),
                );
                view.aged_out = Some(aged);
            }
            OpportunityEvent::DuplicateAbsorbed {
                evidence, votes, ..
            } => {
                view.evidence += evidence.len() as u64;
                for vote in &votes {
                    self.vote(&mut view, vote, true)?;
                }
            }
        }
        view.last_position = self.position;
        self.set_ranking(before, &view);
        self.store(EntityKind::Opportunity, &view);
        Ok(())
    }

    fn decision(&mut self, event: DecisionEvent) -> Result<(), ProjectionError> {
        let mut view: DecisionView = match &event {
            DecisionEvent::Proposed {
                id,
                content,
                proposed_at,
            } => DecisionView {
                id: id.clone(),
                kind: content.kind,
                title: content.title.clone(),
                team: content.team.clone(),
                context: content.context.clone(),
                outcome: content.outcome.clone(),
                status: "proposed".into(),
                superseded_by: None,
                status_reason: None,
                deciders: content.deciders.clone(),
                subjects: content.subjects.clone(),
                supersedes: content.supersedes.clone(),
                proposed_at: *proposed_at,
                decided_at: None,
                decided_by: None,
                proposed_position: self.position,
                last_position: self.position,
            },
            _ => self.require(EntityKind::Decision)?,
        };
        match event {
            DecisionEvent::Proposed { .. } => {}
            DecisionEvent::Revised(content) => {
                view.kind = content.kind;
                view.title = content.title;
                view.team = content.team;
                view.context = content.context;
                view.outcome = content.outcome;
                view.deciders = content.deciders;
                view.subjects = content.subjects;
                view.supersedes = content.supersedes;
            }
            DecisionEvent::Accepted { by, at } => {
                view.status = "accepted".into();
                view.decided_at = Some(at);
                view.decided_by = Some(by);
            }
            DecisionEvent::Rejected { by, reason } => {
                view.status = "rejected".into();
                view.decided_by = Some(by);
                view.status_reason = Some(reason);
            }
            DecisionEvent::Deprecated { reason } => {
                view.status = "deprecated".into();
                view.status_reason = Some(reason);
            }
            DecisionEvent::Superseded { by } => {
                view.status = "superseded".into();
                view.superseded_by = Some(by);
            }
        }
        view.last_position = self.position;
        self.store(EntityKind::Decision, &view);
        Ok(())
    }

    fn initiative(&mut self, event: InitiativeEvent) -> Result<(), ProjectionError> {
        let mut view: InitiativeView = match &event {
            InitiativeEvent::Created { id, draft } => InitiativeView {
                id: id.clone(),
                title: draft.title.clone(),
                goal: draft.goal.clone(),
                owners: draft.owners.clone(),
                team: draft.team.clone(),
                target: draft.target.clone(),
                status: InitiativeStatus::Draft,
                at_risk: false,
                status_reason: None,
                start: draft.start,
                target_date: draft.target_date,
                implements: draft.implements.clone(),
                milestones: Vec::new(),
                last_position: self.position,
            },
            _ => self.require(EntityKind::Initiative)?,
        };
        let position = self.position;
        let close = |view: &mut InitiativeView, name: &str, status, signal| {
            if let Some(m) = view.milestones.iter_mut().find(|m| m.name == name) {
                m.status = status;
                m.signal = signal;
                m.closed_position = Some(position);
            }
        };
        match event {
            InitiativeEvent::Created { .. } => {}
            InitiativeEvent::Scheduled => view.status = InitiativeStatus::Scheduled,
            InitiativeEvent::Started => view.status = InitiativeStatus::InProgress,
            InitiativeEvent::RiskFlagged { reason } => {
                view.at_risk = true;
                view.status_reason = Some(reason);
            }
            InitiativeEvent::RiskCleared => {
                view.at_risk = false;
                view.status_reason = None;
            }
            InitiativeEvent::Completed => {
                view.status = InitiativeStatus::Completed;
                view.at_risk = false;
            }
            InitiativeEvent::Cancelled { reason } => {
                view.status = InitiativeStatus::Cancelled;
                view.at_risk = false;
                view.status_reason = Some(reason);
            }
            InitiativeEvent::Implements { opportunity } => view.implements.push(opportunity),
            InitiativeEvent::MilestoneAdded {
                name,
                due,
                exit_criteria,
            } => view.milestones.push(MilestoneView {
                name,
                due,
                exit_criteria,
                status: MilestoneStatus::Open,
                signal: None,
                closed_position: None,
            }),
            InitiativeEvent::MilestoneMet { name, signal } => {
                close(&mut view, &name, MilestoneStatus::Met, signal)
            }
            InitiativeEvent::MilestoneMissed { name } => {
                close(&mut view, &name, MilestoneStatus::Missed, None)
            }
        }
        view.last_position = self.position;
        self.store(EntityKind::Initiative, &view);
        Ok(())
    }
}
