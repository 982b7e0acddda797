//! Test support: a driver that decides domain commands and appends their events to a
//! `MemoryStore` as the service would (clear part only: projections never read the personal
//! part), and an oracle that folds the domain aggregates from the records up to a position and
//! builds the views the projections must answer with, independently of how they store them.

#![allow(dead_code)]

pub mod dataset;
pub mod steps;

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_domain::codec::StoredPersonal;
use cairn_domain::decision::{Decision, DecisionEvent, DecisionStatus};
use cairn_domain::feedback::{Feedback, FeedbackEvent};
use cairn_domain::initiative::{Initiative, InitiativeEvent};
use cairn_domain::opportunity::{Opportunity, OpportunityEvent, OpportunityStatus};
use cairn_domain::scoring::{Factor, FactorSource, Formula, Normaliser, ScoringModel};
use cairn_domain::signal::{Signal, Statistic};
use cairn_domain::{
    Aggregate, Ctx, DomainError, Edge, EntityId, EntityKind, Event, PrincipalId, Time,
};
use cairn_ledger::{
    DataClass, EventId, Hash, Position, Record, SealedPayload, StreamId, StreamVersion, TenantId,
};
use cairn_projections::{
    AgedOutView, DecisionView, FeedbackView, InitiativeView, MilestoneView, OpportunityView,
    Ranked, SignalView,
};
use cairn_store::{EventStore, ExpectedVersion, MemoryStore, NewEvent};

/// An aggregate the driver can run: how its events wrap into [`Event`].
pub trait Domain: Aggregate {
    fn wrap(event: Self::Event) -> Event;
    fn unwrap(event: Event) -> Option<Self::Event>;
}

macro_rules! domain {
    ($aggregate:ty, $variant:ident) => {
        impl Domain for $aggregate {
            fn wrap(event: Self::Event) -> Event {
                Event::$variant(event)
            }
            fn unwrap(event: Event) -> Option<Self::Event> {
                match event {
                    Event::$variant(event) => Some(event),
                    _ => None,
                }
            }
        }
    };
}
domain!(Feedback, Feedback);
domain!(Signal, Signal);
domain!(Opportunity, Opportunity);
domain!(Decision, Decision);
domain!(Initiative, Initiative);

/// The scoring model of the tests: votes, feedback, an impact rating and a latency metric, so
/// scores tie often (every new opportunity scores 0) and some derive from signals.
pub fn scoring_model() -> ScoringModel {
    let factor = |name: &str, source, normaliser, weight| Factor {
        name: name.into(),
        source,
        normaliser,
        weight,
        default: 0.0,
        role: None,
    };
    let model = ScoringModel {
        name: "test".into(),
        version: 1,
        formula: Formula::WeightedSum,
        factors: vec![
            factor("votes", FactorSource::Votes, Normaliser::Log, 1.0),
            factor("feedback", FactorSource::Feedback, Normaliser::None, 0.5),
            factor(
                "impact",
                FactorSource::Rating {
                    name: "impact".into(),
                },
                Normaliser::None,
                0.25,
            ),
            factor(
                "latency",
                FactorSource::Metric {
                    metric: "latency_ms".into(),
                    statistic: Statistic::Value,
                },
                Normaliser::Linear {
                    min: 0.0,
                    max: 1000.0,
                },
                1.0,
            ),
        ],
        digest: "test".into(),
    };
    model.validate().expect("the test model is valid");
    model
}

/// Decides commands against the ledger and appends their events.
pub struct Driver {
    pub store: Arc<MemoryStore>,
    pub now: Time,
    pub model: ScoringModel,
    next_event: u64,
}

impl Default for Driver {
    fn default() -> Self {
        Driver::new()
    }
}

impl Driver {
    pub fn new() -> Driver {
        Driver {
            store: MemoryStore::new(),
            now: Time(1_750_000_000_000_000),
            model: scoring_model(),
            next_event: 0,
        }
    }

    /// Moves the domain clock on.
    pub fn advance_hours(&mut self, hours: i64) {
        self.now = Time(self.now.0 + hours * 3_600_000_000);
    }

    fn stream(tenant: &str, kind: EntityKind, id: &str) -> StreamId {
        StreamId::new(TenantId::new(tenant).expect("tenant"), kind.as_str(), id).expect("stream")
    }

    /// An aggregate folded from its stream, and the stream's version.
    pub async fn state<A: Domain>(&self, tenant: &str, id: &str) -> (A, StreamVersion) {
        let stream = Driver::stream(tenant, A::KIND, id);
        let mut state = A::default();
        let mut version = StreamVersion::NONE;
        loop {
            let records = self
                .store
                .read_stream(&stream, StreamVersion(version.0 + 1), 4096)
                .await
                .expect("read stream");
            if records.is_empty() {
                return (state, version);
            }
            for record in &records {
                let event = decode(record).expect("a domain record");
                state.apply(&A::unwrap(event).expect("the stream's kind"));
                version = record.envelope.stream_version;
            }
        }
    }

    /// Decides `command` as `actor` and appends the events; the positions of the records.
    pub async fn run<A: Domain>(
        &mut self,
        tenant: &str,
        id: &str,
        actor: &str,
        command: A::Command,
    ) -> Result<Vec<Position>, DomainError> {
        let (state, version) = self.state::<A>(tenant, id).await;
        let ctx = Ctx {
            now: self.now,
            actor: PrincipalId::new(actor).expect("actor"),
            scoring: Some(&self.model),
        };
        let events = state.decide(command, &ctx)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let new_events: Vec<NewEvent> = events
            .into_iter()
            .map(|event| {
                let encoded = A::wrap(event).encode();
                self.new_event(actor, encoded.event_type, encoded.clear)
            })
            .collect();
        let expected = if version == StreamVersion::NONE {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        let result = self
            .store
            .append(Driver::stream(tenant, A::KIND, id), expected, new_events)
            .await
            .expect("append");
        Ok((result.first_position.0..=result.last_position.0)
            .map(Position)
            .collect())
    }

    /// Appends a raw ledger event of an aggregate type the domain does not know.
    pub async fn raw(&mut self, tenant: &str, aggregate_type: &str, id: &str) -> Position {
        let stream =
            StreamId::new(TenantId::new(tenant).expect("tenant"), aggregate_type, id).expect("id");
        let event = self.new_event("svc:ci", "deploy.finished", b"{\"ok\":true}".to_vec());
        self.store
            .append(stream, ExpectedVersion::Any, vec![event])
            .await
            .expect("append")
            .last_position
    }

    /// Appends a raw event to a domain stream, bypassing the domain (as a raw ledger client
    /// could).
    pub async fn raw_domain(
        &mut self,
        tenant: &str,
        kind: EntityKind,
        id: &str,
        event_type: &str,
        clear: Vec<u8>,
    ) -> Position {
        let event = self.new_event("svc:raw", event_type, clear);
        self.store
            .append(
                Driver::stream(tenant, kind, id),
                ExpectedVersion::Any,
                vec![event],
            )
            .await
            .expect("append")
            .last_position
    }

    fn new_event(&mut self, actor: &str, event_type: &str, clear: Vec<u8>) -> NewEvent {
        self.next_event += 1;
        let mut event_id = [0u8; 16];
        event_id[8..].copy_from_slice(&self.next_event.to_be_bytes());
        NewEvent {
            event_id: EventId(event_id),
            event_type: event_type.into(),
            event_schema_version: cairn_domain::codec::SCHEMA_VERSION,
            actor: actor.into(),
            causation_id: None,
            correlation_id: None,
            lineage: Vec::new(),
            data_class: DataClass::Public,
            key_id: None,
            policy_bundle_hash: Hash([0; 32]),
            payload: SealedPayload {
                clear,
                sealed: None,
            }
            .encode(),
        }
    }

    /// The head position.
    pub async fn head(&self) -> Position {
        self.store.head().await.expect("head").position
    }

    /// Every record, in position order.
    pub async fn records(&self) -> Vec<Arc<Record>> {
        let mut all = Vec::new();
        loop {
            let page = self
                .store
                .read_all(Position(all.len() as u64 + 1), 4096)
                .await
                .expect("read");
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }
}

/// The domain event of a record, if it is one.
pub fn decode(record: &Record) -> Option<Event> {
    let envelope = &record.envelope;
    EntityKind::parse(&envelope.stream.aggregate_type)?;
    let payload = SealedPayload::decode(&record.payload).expect("payload");
    Some(
        Event::decode(
            &envelope.stream.aggregate_type,
            &envelope.event_type,
            envelope.event_schema_version,
            &payload.clear,
            StoredPersonal::None,
        )
        .expect("a domain event"),
    )
}

/// What the oracle knows of one entity: its folded aggregate, the records of its stream, and
/// the facts its views show that the aggregate does not keep (reasons, times, positions).
#[derive(Clone, Debug)]
pub struct Entity {
    pub kind: EntityKind,
    pub id: String,
    pub created: Position,
    pub last: Position,
    pub version: StreamVersion,
    pub state: State,
    pub first_event: Event,
    pub reason: Option<String>,
    pub decision: Option<EntityId>,
    pub outcome_signal: Option<EntityId>,
    pub decided: Option<(PrincipalId, Option<Time>)>,
    pub aged_out: Option<AgedOutView>,
    pub score_position: Option<Position>,
    pub links: Vec<EntityId>,
    pub milestones: BTreeMap<String, (Option<EntityId>, Option<Position>)>,
}

/// A folded aggregate.
#[derive(Clone, Debug)]
pub enum State {
    Feedback(Feedback),
    Signal(Signal),
    Opportunity(Opportunity),
    Decision(Decision),
    Initiative(Initiative),
}

/// The ledger folded up to a position.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    pub at: Position,
    /// By (tenant, kind, id).
    pub entities: BTreeMap<(String, EntityKind, String), Entity>,
    /// Every edge, by tenant, with the first position that recorded it.
    pub edges: BTreeMap<(String, Edge), Position>,
    pub scores: BTreeMap<(String, String), Vec<(Position, f64)>>,
    pub statuses: BTreeMap<(String, String), Vec<(Position, OpportunityStatus)>>,
    pub aged: BTreeMap<String, Vec<AgedOutView>>,
    pub tenants: std::collections::BTreeSet<String>,
}

impl Oracle {
    /// Folds `records` up to and including `at`.
    pub fn fold(records: &[Arc<Record>], at: Position) -> Oracle {
        let mut oracle = Oracle {
            at,
            ..Oracle::default()
        };
        for record in records.iter().take_while(|r| r.position() <= at) {
            oracle.apply(record);
        }
        oracle
    }

    /// Folds one more record (the next position).
    pub fn apply(&mut self, record: &Record) {
        self.at = record.position();
        let Some(event) = decode(record) else {
            return;
        };
        let envelope = &record.envelope;
        let position = record.position();
        let tenant = envelope.stream.tenant.as_str().to_owned();
        self.tenants.insert(tenant.clone());
        let id = envelope.stream.aggregate_id.clone();
        let kind = event.kind();
        let own = cairn_domain::EntityRef::new(kind, EntityId::new(id.clone()).expect("id"));
        for edge in event.edges(&own) {
            self.edges.entry((tenant.clone(), edge)).or_insert(position);
        }
        let key = (tenant.clone(), kind, id.clone());
        let entity = self.entities.entry(key).or_insert_with(|| Entity {
            kind,
            id: id.clone(),
            created: position,
            last: position,
            version: StreamVersion::NONE,
            state: match kind {
                EntityKind::Feedback => State::Feedback(Feedback::default()),
                EntityKind::Signal => State::Signal(Signal::default()),
                EntityKind::Opportunity => State::Opportunity(Opportunity::default()),
                EntityKind::Decision => State::Decision(Decision::default()),
                EntityKind::Initiative => State::Initiative(Initiative::default()),
            },
            first_event: event.clone(),
            reason: None,
            decision: None,
            outcome_signal: None,
            decided: None,
            aged_out: None,
            score_position: None,
            links: Vec::new(),
            milestones: BTreeMap::new(),
        });
        entity.last = position;
        entity.version = envelope.stream_version;
        // Feedback moved from a duplicate is evidence for the canonical opportunity as well.
        let relinked: Vec<String> = match &event {
            Event::Opportunity(OpportunityEvent::DuplicateAbsorbed { evidence, .. }) => evidence
                .iter()
                .filter(|piece| piece.reference.kind == EntityKind::Feedback)
                .map(|piece| piece.reference.id.as_str().to_owned())
                .collect(),
            _ => Vec::new(),
        };
        match (&mut entity.state, event) {
            (State::Feedback(state), Event::Feedback(event)) => {
                match &event {
                    FeedbackEvent::Linked { opportunity } => {
                        if !entity.links.contains(opportunity) {
                            entity.links.push(opportunity.clone());
                        }
                    }
                    FeedbackEvent::Discarded { reason } => entity.reason = Some(reason.clone()),
                    FeedbackEvent::Received { .. } => {}
                }
                state.apply(&event);
            }
            (State::Signal(state), Event::Signal(event)) => state.apply(&event),
            (State::Opportunity(state), Event::Opportunity(event)) => {
                let before = state.status;
                match &event {
                    OpportunityEvent::Accepted { decision } => entity.decision = decision.clone(),
                    OpportunityEvent::Declined { reason, decision } => {
                        entity.reason = Some(reason.clone());
                        entity.decision = Some(decision.clone());
                    }
                    OpportunityEvent::OutcomeJudged { signal, .. } => {
                        entity.outcome_signal = signal.clone()
                    }
                    OpportunityEvent::Scored(snapshot) => {
                        entity.score_position = Some(position);
                        self.scores
                            .entry((tenant.clone(), id.clone()))
                            .or_default()
                            .push((position, snapshot.value));
                    }
                    OpportunityEvent::AgedOut {
                        rule,
                        rule_version,
                        reason,
                    } => {
                        let draft = state.draft.as_ref().expect("created");
                        let aged = AgedOutView {
                            opportunity: EntityId::new(id.clone()).expect("id"),
                            title: draft.title.clone(),
                            team: draft.team.clone(),
                            rule: rule.clone(),
                            rule_version: *rule_version,
                            reason: reason.clone(),
                            position,
                            at: Time(envelope.recorded_at.0),
                        };
                        self.aged
                            .entry(tenant.clone())
                            .or_default()
                            .push(aged.clone());
                        entity.aged_out = Some(aged);
                    }
                    OpportunityEvent::Reopened { .. } => entity.aged_out = None,
                    _ => {}
                }
                state.apply(&event);
                if state.status != before {
                    self.statuses
                        .entry((tenant.clone(), id.clone()))
                        .or_default()
                        .push((position, state.status.expect("created")));
                }
            }
            (State::Decision(state), Event::Decision(event)) => {
                match &event {
                    DecisionEvent::Accepted { by, at } => {
                        entity.decided = Some((by.clone(), Some(*at)))
                    }
                    DecisionEvent::Rejected { by, reason } => {
                        entity.decided = Some((by.clone(), None));
                        entity.reason = Some(reason.clone());
                    }
                    DecisionEvent::Deprecated { reason } => entity.reason = Some(reason.clone()),
                    _ => {}
                }
                state.apply(&event);
            }
            (State::Initiative(state), Event::Initiative(event)) => {
                match &event {
                    InitiativeEvent::RiskFlagged { reason } => entity.reason = Some(reason.clone()),
                    InitiativeEvent::Cancelled { reason } => entity.reason = Some(reason.clone()),
                    InitiativeEvent::RiskCleared | InitiativeEvent::Completed => {
                        entity.reason = None
                    }
                    InitiativeEvent::MilestoneMet { name, signal } => {
                        entity
                            .milestones
                            .insert(name.clone(), (signal.clone(), Some(position)));
                    }
                    InitiativeEvent::MilestoneMissed { name } => {
                        entity
                            .milestones
                            .insert(name.clone(), (None, Some(position)));
                    }
                    _ => {}
                }
                state.apply(&event);
            }
            _ => panic!("an event of another kind in a {kind} stream"),
        }
        let canonical = EntityId::new(id.clone()).expect("id");
        for feedback in relinked {
            if let Some(item) =
                self.entities
                    .get_mut(&(tenant.clone(), EntityKind::Feedback, feedback))
                && !item.links.contains(&canonical)
            {
                item.links.push(canonical.clone());
                item.last = position;
            }
        }
    }

    /// The entities of a kind in a tenant, in creation order.
    pub fn of_kind(&self, tenant: &str, kind: EntityKind) -> Vec<&Entity> {
        let mut entities: Vec<&Entity> = self
            .entities
            .iter()
            .filter(|((t, k, _), _)| t == tenant && *k == kind)
            .map(|(_, e)| e)
            .collect();
        entities.sort_by_key(|e| e.created);
        entities
    }

    pub fn entity(&self, tenant: &str, kind: EntityKind, id: &str) -> Option<&Entity> {
        self.entities.get(&(tenant.to_owned(), kind, id.to_owned()))
    }

    pub fn feedback(&self, tenant: &str, id: &str) -> Option<FeedbackView> {
        let entity = self.entity(tenant, EntityKind::Feedback, id)?;
        let (
            State::Feedback(state),
            Event::Feedback(FeedbackEvent::Received {
                id,
                team,
                source,
                tags,
                outcome_tags,
                visibility,
                received_at,
                ..
            }),
        ) = (&entity.state, &entity.first_event)
        else {
            panic!("a feedback entity");
        };
        // The item's own links (the domain's fold) are a subset: feedback moved from a
        // duplicate is evidence for the canonical opportunity too.
        let links: std::collections::BTreeSet<_> = entity.links.iter().cloned().collect();
        assert!(
            state.opportunities.is_subset(&links),
            "the oracle's links include the domain's: {links:?} {:?}",
            state.opportunities
        );
        Some(FeedbackView {
            id: id.clone(),
            team: team.clone(),
            source: *source,
            tags: tags.clone(),
            outcome_tags: outcome_tags.clone(),
            visibility: *visibility,
            status: state.status.expect("received"),
            received_at: *received_at,
            received_position: entity.created,
            opportunities: entity.links.clone(),
            discard_reason: entity.reason.clone(),
            stream_version: entity.version,
            last_position: entity.last,
        })
    }

    pub fn signal(&self, tenant: &str, id: &str) -> Option<SignalView> {
        let entity = self.entity(tenant, EntityKind::Signal, id)?;
        // Observed or kept by sampling: viewed alike.
        let Event::Signal(event) = &entity.first_event else {
            panic!("a signal entity");
        };
        Some(SignalView {
            id: event.id().clone(),
            observation: event.observation().clone(),
            recorded_at: event.recorded_at(),
            position: entity.created,
        })
    }

    pub fn opportunity(&self, tenant: &str, id: &str) -> Option<OpportunityView> {
        let entity = self.entity(tenant, EntityKind::Opportunity, id)?;
        let (
            State::Opportunity(state),
            Event::Opportunity(OpportunityEvent::Created { created_at, .. }),
        ) = (&entity.state, &entity.first_event)
        else {
            panic!("an opportunity entity");
        };
        let draft = state.draft.as_ref().expect("created");
        let status = state.status.expect("created");
        Some(OpportunityView {
            id: state.id.clone().expect("created"),
            title: draft.title.clone(),
            problem: draft.problem.clone(),
            owner: draft.owner.clone(),
            team: draft.team.clone(),
            size: draft.size,
            outcome_tags: draft.outcome_tags.clone(),
            visibility: draft.visibility,
            status,
            canonical: state.canonical.clone(),
            decline_reason: entity.reason.clone(),
            decision: entity.decision.clone(),
            snoozed_until: state.snoozed_until,
            aged_out: entity.aged_out.clone(),
            outcome_signal: entity.outcome_signal.clone(),
            evidence: state.evidence.len() as u64,
            last_evidence_at: state.last_evidence_at,
            voters: state.votes.len() as u64,
            vote_weight: state.votes.values().map(|v| u64::from(v.weight)).sum(),
            score: state.score.as_ref().map(|s| s.value),
            score_position: entity.score_position,
            created_at: *created_at,
            created_position: entity.created,
            stream_version: entity.version,
            last_position: entity.last,
        })
    }

    pub fn decision(&self, tenant: &str, id: &str) -> Option<DecisionView> {
        let entity = self.entity(tenant, EntityKind::Decision, id)?;
        let (State::Decision(state), Event::Decision(DecisionEvent::Proposed { proposed_at, .. })) =
            (&entity.state, &entity.first_event)
        else {
            panic!("a decision entity");
        };
        let content = state.content.as_ref().expect("proposed");
        let status = state.status.as_ref().expect("proposed");
        Some(DecisionView {
            id: state.id.clone().expect("proposed"),
            kind: content.kind,
            title: content.title.clone(),
            team: content.team.clone(),
            context: content.context.clone(),
            outcome: content.outcome.clone(),
            status: status.as_str().to_owned(),
            superseded_by: match status {
                DecisionStatus::Superseded { by } => Some(by.clone()),
                _ => None,
            },
            status_reason: entity.reason.clone(),
            deciders: content.deciders.clone(),
            subjects: content.subjects.clone(),
            supersedes: content.supersedes.clone(),
            visibility: content.visibility,
            proposed_at: *proposed_at,
            decided_at: entity.decided.as_ref().and_then(|(_, at)| *at),
            decided_by: entity.decided.as_ref().map(|(by, _)| by.clone()),
            proposed_position: entity.created,
            stream_version: entity.version,
            last_position: entity.last,
        })
    }

    pub fn initiative(&self, tenant: &str, id: &str) -> Option<InitiativeView> {
        let entity = self.entity(tenant, EntityKind::Initiative, id)?;
        let (State::Initiative(state), Event::Initiative(InitiativeEvent::Created { id, .. })) =
            (&entity.state, &entity.first_event)
        else {
            panic!("an initiative entity");
        };
        let draft = state.draft.as_ref().expect("created");
        Some(InitiativeView {
            id: id.clone(),
            title: draft.title.clone(),
            goal: draft.goal.clone(),
            owners: draft.owners.clone(),
            team: draft.team.clone(),
            target: draft.target.clone(),
            outcome_tags: draft.outcome_tags.clone(),
            visibility: draft.visibility,
            status: state.status.expect("created"),
            at_risk: state.at_risk,
            status_reason: entity.reason.clone(),
            start: draft.start,
            target_date: draft.target_date,
            implements: draft.implements.clone(),
            milestones: state
                .milestones
                .iter()
                .map(|m| {
                    let (signal, closed_position) =
                        entity.milestones.get(&m.name).cloned().unwrap_or_default();
                    MilestoneView {
                        name: m.name.clone(),
                        due: m.due,
                        exit_criteria: m.exit_criteria.clone(),
                        status: m.status,
                        signal,
                        closed_position,
                    }
                })
                .collect(),
            created_position: entity.created,
            stream_version: entity.version,
            last_position: entity.last,
        })
    }

    /// The ranking of a tenant (or team): ranked statuses with a score, by score descending then
    /// id, ranks 1-based.
    pub fn ranking(&self, tenant: &str, team: Option<&str>) -> Vec<Ranked> {
        let mut ranked: Vec<OpportunityView> = self
            .of_kind(tenant, EntityKind::Opportunity)
            .iter()
            .filter_map(|e| self.opportunity(tenant, &e.id))
            .filter(|v| v.status.is_ranked() && v.score.is_some())
            .filter(|v| team.is_none_or(|t| v.team.as_str() == t))
            .collect();
        ranked.sort_by(|a, b| {
            b.score
                .unwrap()
                .total_cmp(&a.score.unwrap())
                .then_with(|| a.id.cmp(&b.id))
        });
        ranked
            .into_iter()
            .enumerate()
            .map(|(index, v)| Ranked {
                rank: index as u64 + 1,
                id: v.id,
                title: v.title,
                team: v.team,
                status: v.status,
                score: v.score.unwrap(),
                score_position: v.score_position.unwrap(),
            })
            .collect()
    }
}

/// A small deterministic random source (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }
}
