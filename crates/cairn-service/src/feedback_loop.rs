//! The feedback-loop use cases: load an aggregate from its stream, let the domain decide, encode
//! and seal the events, append them under the stream version that was read, and answer with a
//! receipt. Commands that span two aggregates (evidence, duplicates, supersession) run as steps
//! that each carry an idempotency key derived from the caller's, so a retry after a partial
//! failure finishes the work without recording anything twice.

use std::sync::{Arc, RwLock};

use cairn_domain::codec::{PersonalPart, StoredPersonal};
use cairn_domain::decision::{Decision, DecisionCommand, DecisionEvent, DecisionStatus};
use cairn_domain::feedback::{Feedback, FeedbackCommand, FeedbackEvent};
use cairn_domain::initiative::{Initiative, InitiativeCommand, InitiativeEvent};
use cairn_domain::opportunity::{
    Evidence, Opportunity, OpportunityCommand, OpportunityEvent, OpportunityStatus, Triage,
};
use cairn_domain::scoring::AgingRule;
use cairn_domain::signal::{Signal, SignalCommand, SignalEvent};
use cairn_domain::{
    Aggregate, Ctx, DomainError, EntityId, EntityKind, EntityRef, Event, PrincipalId, Rule, Time,
};
use cairn_ledger::{
    EventId, LineageParent, Position, Record, SealedPayload, StreamId, StreamVersion, TenantId,
    limits as ledger_limits,
};
use cairn_store::{EventStore, ExpectedVersion, KeyStore, StoreError, limits as store_limits};

use crate::error::ServiceError;
use crate::ledger::{AppendCommand, EventDraft, Ledger, PersonalData};
use crate::scoring_policy::ScoringPolicy;

/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// How often a command is decided again when a concurrent writer moved its stream first (only
/// when the caller did not pin the version).
pub const CONFLICT_RETRIES_MAX: usize = 5;
/// Longest stream folded to decide one command, in events.
pub const AGGREGATE_EVENTS_MAX: usize = 1_000_000;
/// How far in the past a command may say it happened (imports of history), in days.
pub const OCCURRED_AT_PAST_DAYS_MAX: i64 = 10 * 366;

/// Who asks, for which tenant, and how a retry is recognised.
#[derive(Clone, Debug)]
pub struct CommandMeta {
    /// The tenant.
    pub tenant: TenantId,
    /// The principal on whose behalf the command runs.
    pub actor: PrincipalId,
    /// Identifies the command: a retry with the same key records nothing twice.
    pub idempotency_key: Option<String>,
    /// The stream version the caller expects (`None`: whatever it is now).
    pub expected_version: Option<StreamVersion>,
    /// When it happened, if earlier than now (an importer replaying history). The ledger still
    /// records the real time of recording in every envelope.
    pub occurred_at: Option<Time>,
    /// The request or workflow it belongs to.
    pub correlation_id: Option<EventId>,
}

impl CommandMeta {
    /// A command by `actor` in `tenant`, without idempotency key or version.
    pub fn new(tenant: TenantId, actor: PrincipalId) -> CommandMeta {
        CommandMeta {
            tenant,
            actor,
            idempotency_key: None,
            expected_version: None,
            occurred_at: None,
            correlation_id: None,
        }
    }

    /// The same command with an idempotency key.
    pub fn with_key(mut self, key: impl Into<String>) -> CommandMeta {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The meta of step `step` of a multi-step command: its own key, no version pin.
    fn step(&self, step: &str) -> CommandMeta {
        CommandMeta {
            idempotency_key: self.idempotency_key.as_ref().map(|key| {
                let derived = format!("{key}#{step}");
                // A long key or id must not push the step's key over the limit (the caller's key
                // was within it): hash it instead, which is just as stable.
                match derived.len() <= IDEMPOTENCY_KEY_BYTES_MAX {
                    true => derived,
                    false => format!("h:{}", blake3::hash(derived.as_bytes()).to_hex()),
                }
            }),
            expected_version: None,
            ..self.clone()
        }
    }
}

/// What a command recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandReceipt {
    /// The entity.
    pub entity: EntityRef,
    /// Position of the first event recorded ([`Position::ZERO`] when the command changed nothing).
    pub first_position: Position,
    /// Position of the last event recorded.
    pub last_position: Position,
    /// The stream's version after the command.
    pub stream_version: StreamVersion,
    /// The events recorded, in order.
    pub events: Vec<Event>,
    /// True when this was a retry of a command already recorded: nothing new was stored.
    pub deduplicated: bool,
    /// True when a signal was not recorded because sampling did not keep it.
    pub sampled_out: bool,
}

impl CommandReceipt {
    /// The recorded event types.
    pub fn event_types(&self) -> Vec<&'static str> {
        self.events.iter().map(Event::event_type).collect()
    }
}

/// An aggregate whose events are domain events.
pub trait DomainAggregate: Aggregate + Send + Sync {
    /// The aggregate's event, if `event` is one.
    fn own_event(event: Event) -> Option<Self::Event>;
    /// The aggregate's event as a domain event.
    fn wrap(event: Self::Event) -> Event;
}

macro_rules! domain_aggregate {
    ($aggregate:ty, $event:ty, $variant:ident) => {
        impl DomainAggregate for $aggregate {
            fn wrap(event: $event) -> Event {
                Event::$variant(event)
            }

            fn own_event(event: Event) -> Option<$event> {
                match event {
                    Event::$variant(event) => Some(event),
                    _ => None,
                }
            }
        }
    };
}
domain_aggregate!(Feedback, FeedbackEvent, Feedback);
domain_aggregate!(Signal, SignalEvent, Signal);
domain_aggregate!(Opportunity, OpportunityEvent, Opportunity);
domain_aggregate!(Decision, DecisionEvent, Decision);
domain_aggregate!(Initiative, InitiativeEvent, Initiative);

/// An aggregate read from its stream.
struct Loaded<A> {
    state: A,
    version: StreamVersion,
    /// The earlier recording of this command, when the probe id was found.
    replay: Option<CommandReceipt>,
}

/// A clock: the service reads time through it, so tests can fix it.
pub type Clock = Arc<dyn Fn() -> Time + Send + Sync>;

/// The feedback-loop commands over a ledger.
pub struct FeedbackLoop<S> {
    ledger: Arc<Ledger<S>>,
    /// Replaced when a policy bundle with other scoring rules comes into force.
    scoring: RwLock<Arc<ScoringPolicy>>,
    clock: Clock,
}

impl<S: EventStore + KeyStore> FeedbackLoop<S> {
    /// Commands over `ledger`, scored with `scoring`, at the system clock's time.
    pub fn new(ledger: Arc<Ledger<S>>, scoring: Arc<ScoringPolicy>) -> FeedbackLoop<S> {
        FeedbackLoop {
            ledger,
            scoring: RwLock::new(scoring),
            clock: Arc::new(|| Time(cairn_store::now().0)),
        }
    }

    /// The same, reading time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> FeedbackLoop<S> {
        self.clock = clock;
        self
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger<S>> {
        &self.ledger
    }

    /// The scoring policy in force.
    pub fn scoring(&self) -> Arc<ScoringPolicy> {
        Arc::clone(&self.scoring.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts another scoring policy in force: commands decided from now on use it.
    pub fn set_scoring(&self, scoring: Arc<ScoringPolicy>) {
        *self.scoring.write().unwrap_or_else(|e| e.into_inner()) = scoring;
    }

    /// The time now, by this service's clock.
    pub fn now(&self) -> Time {
        (self.clock)()
    }

    /// Runs a command on one feedback item.
    pub async fn feedback(
        &self,
        meta: &CommandMeta,
        id: &EntityId,
        command: FeedbackCommand,
    ) -> Result<CommandReceipt, ServiceError> {
        if let FeedbackCommand::Submit { id: named, .. } = &command {
            same_id(named, id)?;
        }
        self.execute::<Feedback>(meta, id, command).await
    }

    /// Records a signal. A signal of a metric the scoring policy samples is recorded only if
    /// sampling keeps it (then as `signal.sampled`, with its rate); otherwise nothing is recorded
    /// and the receipt says `sampled_out`.
    pub async fn signal(
        &self,
        meta: &CommandMeta,
        id: &EntityId,
        command: SignalCommand,
    ) -> Result<CommandReceipt, ServiceError> {
        let command = match command {
            SignalCommand::Record {
                id: named,
                observation,
            } => {
                same_id(&named, id)?;
                match self.scoring().sample_rate(&observation.metric) {
                    None => SignalCommand::Record {
                        id: named,
                        observation,
                    },
                    Some(rate) if keeps(&meta.tenant, &observation.metric, id, rate) => {
                        SignalCommand::RecordSampled {
                            id: named,
                            observation,
                            sample_rate: rate,
                        }
                    }
                    Some(_) => {
                        return Ok(CommandReceipt {
                            entity: EntityRef::new(EntityKind::Signal, id.clone()),
                            first_position: Position::ZERO,
                            last_position: Position::ZERO,
                            stream_version: StreamVersion(0),
                            events: Vec::new(),
                            deduplicated: false,
                            sampled_out: true,
                        });
                    }
                }
            }
            SignalCommand::RecordSampled { id: named, .. } => {
                same_id(&named, id)?;
                return Err(ServiceError::InvalidArgument {
                    field: "observation",
                    reason: "sampling is decided by the server's policy, not by the caller".into(),
                });
            }
        };
        self.execute::<Signal>(meta, id, command).await
    }

    /// Runs a command on an opportunity. A duplicate triage also moves the evidence and votes to
    /// the canonical opportunity (a second step).
    pub async fn opportunity(
        &self,
        meta: &CommandMeta,
        id: &EntityId,
        command: OpportunityCommand,
    ) -> Result<CommandReceipt, ServiceError> {
        match command {
            OpportunityCommand::Triage(Triage::Duplicate { canonical }) => {
                self.mark_duplicate(meta, id, canonical).await
            }
            OpportunityCommand::AttachEvidence(evidence) => {
                self.attach_evidence(meta, id, evidence.reference).await
            }
            OpportunityCommand::AbsorbDuplicate { .. } => Err(ServiceError::InvalidArgument {
                field: "command",
                reason: "evidence and votes move by marking the duplicate, not directly".into(),
            }),
            command => {
                if let OpportunityCommand::Create { id: named, .. } = &command {
                    same_id(named, id)?;
                }
                if let OpportunityCommand::Triage(
                    Triage::Accept {
                        decision: Some(decision),
                    }
                    | Triage::Decline { decision, .. },
                ) = &command
                {
                    self.require_accepted_decision(&meta.tenant, decision)
                        .await?;
                }
                self.execute::<Opportunity>(meta, id, command).await
            }
        }
    }

    /// Runs a command on a decision. Accepting a decision that supersedes another also marks
    /// the other superseded (a second step).
    pub async fn decision(
        &self,
        meta: &CommandMeta,
        id: &EntityId,
        command: DecisionCommand,
    ) -> Result<CommandReceipt, ServiceError> {
        match command {
            DecisionCommand::Accept => self.accept_decision(meta, id).await,
            DecisionCommand::MarkSuperseded { .. } => Err(ServiceError::InvalidArgument {
                field: "command",
                reason: "a decision is superseded by accepting the one that supersedes it".into(),
            }),
            command => {
                if let DecisionCommand::Propose { id: named, .. } = &command {
                    same_id(named, id)?;
                }
                self.execute::<Decision>(meta, id, command).await
            }
        }
    }

    /// Runs a command on an initiative.
    pub async fn initiative(
        &self,
        meta: &CommandMeta,
        id: &EntityId,
        command: InitiativeCommand,
    ) -> Result<CommandReceipt, ServiceError> {
        if let InitiativeCommand::Create { id: named, .. } = &command {
            same_id(named, id)?;
        }
        self.execute::<Initiative>(meta, id, command).await
    }

    /// Attaches a feedback item or a signal to an opportunity as evidence. For feedback, the
    /// item is linked first (it becomes processed); for a signal, its observation is copied into
    /// the evidence so the opportunity can be scored from its own stream.
    pub async fn attach_evidence(
        &self,
        meta: &CommandMeta,
        opportunity: &EntityId,
        evidence: EntityRef,
    ) -> Result<CommandReceipt, ServiceError> {
        let observation =
            match evidence.kind {
                EntityKind::Feedback => None,
                EntityKind::Signal => {
                    let signal = self.state::<Signal>(&meta.tenant, &evidence.id).await?;
                    Some(signal.observation.ok_or_else(|| {
                        ServiceError::NotFound(format!("no signal {}", evidence.id))
                    })?)
                }
                _ => {
                    return Err(ServiceError::InvalidArgument {
                        field: "evidence",
                        reason: "evidence is a feedback item or a signal".into(),
                    });
                }
            };
        let evidence = Evidence {
            reference: evidence,
            observation,
            attached_at: self.occurred_at(meta)?,
        };
        let command = OpportunityCommand::AttachEvidence(evidence.clone());
        // Check the opportunity takes it before linking the feedback.
        let target = self.load::<Opportunity>(meta, opportunity).await?;
        if target.replay.is_none() {
            if let Some(expected) = meta.expected_version
                && expected != target.version
            {
                return Err(StoreError::WrongExpectedVersion {
                    stream: stream_of(&meta.tenant, EntityKind::Opportunity, opportunity)?,
                    expected: ExpectedVersion::Exact(expected),
                    current: target.version,
                }
                .into());
            }
            target
                .state
                .decide(command.clone(), &self.ctx(meta, Some(&self.scoring()))?)
                .map_err(ServiceError::Refused)?;
        }
        if evidence.reference.kind == EntityKind::Feedback {
            let link = FeedbackCommand::Link {
                opportunity: opportunity.clone(),
            };
            match self
                .execute::<Feedback>(&meta.step("link"), &evidence.reference.id, link)
                .await
            {
                Ok(_) => {}
                // Linked by an earlier, interrupted attempt without an idempotency key.
                Err(ServiceError::Refused(DomainError {
                    rule: Rule::AlreadyLinked,
                    ..
                })) => {}
                Err(error) => return Err(error),
            }
        }
        self.execute::<Opportunity>(meta, opportunity, command)
            .await
    }

    /// A triage that names a decision must name one in force (accepted), so the `decided_by`
    /// edge it records points at a real decision.
    async fn require_accepted_decision(
        &self,
        tenant: &TenantId,
        decision: &EntityId,
    ) -> Result<(), ServiceError> {
        let state = self.state::<Decision>(tenant, decision).await?;
        match state.status {
            Some(DecisionStatus::Accepted) => Ok(()),
            None => Err(ServiceError::Refused(DomainError::field(
                Rule::DecisionNotInForce,
                "decision",
                format!("no decision {decision}"),
            ))),
            Some(status) => Err(ServiceError::Refused(DomainError::field(
                Rule::DecisionNotInForce,
                "decision",
                format!("decision {decision} is {status}, not accepted"),
            ))),
        }
    }

    async fn mark_duplicate(
        &self,
        meta: &CommandMeta,
        id: &EntityId,
        canonical: EntityId,
    ) -> Result<CommandReceipt, ServiceError> {
        // The canonical opportunity must exist and not be a duplicate itself.
        let target = self.state::<Opportunity>(&meta.tenant, &canonical).await?;
        match target.status {
            None => {
                return Err(ServiceError::Refused(DomainError::field(
                    Rule::InvalidCanonical,
                    "canonical",
                    format!("no opportunity {canonical}"),
                )));
            }
            Some(OpportunityStatus::Duplicate) => {
                return Err(ServiceError::Refused(DomainError::field(
                    Rule::InvalidCanonical,
                    "canonical",
                    format!("{canonical} is itself a duplicate"),
                )));
            }
            Some(_) => {}
        }
        let marked = self
            .execute::<Opportunity>(
                meta,
                id,
                OpportunityCommand::Triage(Triage::Duplicate {
                    canonical: canonical.clone(),
                }),
            )
            .await?;
        let Some(Event::Opportunity(OpportunityEvent::MarkedDuplicate {
            evidence, votes, ..
        })) = marked.events.first().cloned()
        else {
            return Err(ServiceError::FailedPrecondition(
                "the duplicate marking was not recorded as expected".into(),
            ));
        };
        self.execute::<Opportunity>(
            &meta.step("absorb"),
            &canonical,
            OpportunityCommand::AbsorbDuplicate {
                duplicate: id.clone(),
                evidence,
                votes,
            },
        )
        .await?;
        Ok(marked)
    }

    async fn accept_decision(
        &self,
        meta: &CommandMeta,
        id: &EntityId,
    ) -> Result<CommandReceipt, ServiceError> {
        let decision = self.state::<Decision>(&meta.tenant, id).await?;
        let supersedes = decision
            .content
            .as_ref()
            .and_then(|content| content.supersedes.clone());
        if let Some(old) = &supersedes {
            let old_state = self.state::<Decision>(&meta.tenant, old).await?;
            let accepted_already = decision.status == Some(DecisionStatus::Accepted);
            let superseded_by_this =
                old_state.status == Some(DecisionStatus::Superseded { by: id.clone() });
            if !accepted_already && !superseded_by_this {
                old_state
                    .decide(
                        DecisionCommand::MarkSuperseded { by: id.clone() },
                        &self.ctx(meta, None)?,
                    )
                    .map_err(|error| {
                        ServiceError::Refused(DomainError::field(
                            error.rule,
                            "supersedes",
                            format!("decision {old} cannot be superseded: {}", error.message),
                        ))
                    })?;
            }
        }
        let accepted = self
            .execute::<Decision>(meta, id, DecisionCommand::Accept)
            .await?;
        if let Some(old) = supersedes {
            let old_state = self.state::<Decision>(&meta.tenant, &old).await?;
            if old_state.status != Some(DecisionStatus::Superseded { by: id.clone() }) {
                self.execute::<Decision>(
                    &meta.step("supersede"),
                    &old,
                    DecisionCommand::MarkSuperseded { by: id.clone() },
                )
                .await?;
            }
        }
        Ok(accepted)
    }

    /// Runs every aging rule over `candidates` (opportunity ids, typically from the projection's
    /// open opportunities): each that a rule holds for ages out, recording the rule. Returns the
    /// receipts of those that aged out.
    pub async fn sweep_aging(
        &self,
        meta: &CommandMeta,
        candidates: &[EntityId],
    ) -> Result<Vec<(CommandReceipt, AgingRule)>, ServiceError> {
        let mut aged = Vec::new();
        for id in candidates {
            for rule in &self.scoring().aging_rules {
                let step = meta.step(&format!("age:{id}:{}", rule.name));
                match self
                    .execute::<Opportunity>(&step, id, OpportunityCommand::AgeOut(rule.clone()))
                    .await
                {
                    Ok(receipt) => {
                        aged.push((receipt, rule.clone()));
                        break;
                    }
                    Err(ServiceError::Refused(_)) => continue,
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(aged)
    }

    /// The current state of an aggregate (default when it does not exist).
    pub async fn state<A: DomainAggregate>(
        &self,
        tenant: &TenantId,
        id: &EntityId,
    ) -> Result<A, ServiceError> {
        let meta = CommandMeta::new(
            tenant.clone(),
            PrincipalId::new("cairn").expect("valid principal"),
        );
        Ok(self.load::<A>(&meta, id).await?.state)
    }

    /// Loads, decides and appends one command on one aggregate.
    pub async fn execute<A: DomainAggregate>(
        &self,
        meta: &CommandMeta,
        id: &EntityId,
        command: A::Command,
    ) -> Result<CommandReceipt, ServiceError>
    where
        A::Command: Clone,
    {
        let stream = stream_of(&meta.tenant, A::KIND, id)?;
        let entity = EntityRef::new(A::KIND, id.clone());
        // A refusal (the caller's expected version, or the domain's rules) is final only once the
        // store has caught up with every writer of the ledger: on a ledger shared by several
        // nodes this node may not have applied what another just recorded.
        let mut synced = false;
        for _ in 0..CONFLICT_RETRIES_MAX {
            let loaded = self.load::<A>(meta, id).await?;
            if let Some(receipt) = loaded.replay {
                return Ok(receipt);
            }
            if let Some(expected) = meta.expected_version
                && expected != loaded.version
            {
                if !synced {
                    synced = true;
                    if self.ledger.store().sync().await? {
                        continue;
                    }
                }
                return Err(StoreError::WrongExpectedVersion {
                    stream,
                    expected: ExpectedVersion::Exact(expected),
                    current: loaded.version,
                }
                .into());
            }
            let scoring = self.scoring();
            let ctx = self.ctx(
                meta,
                (A::KIND == EntityKind::Opportunity).then_some(&*scoring),
            )?;
            let decided = match loaded.state.decide(command.clone(), &ctx) {
                Ok(decided) => decided,
                Err(refusal) => {
                    // Decide again only if this node was behind.
                    if !synced {
                        synced = true;
                        if self.ledger.store().sync().await? {
                            continue;
                        }
                    }
                    return Err(ServiceError::Refused(refusal));
                }
            };
            let events: Vec<Event> = decided.into_iter().map(A::wrap).collect();
            if events.is_empty() {
                return Ok(CommandReceipt {
                    entity,
                    first_position: Position::ZERO,
                    last_position: Position::ZERO,
                    stream_version: loaded.version,
                    events,
                    deduplicated: false,
                    sampled_out: false,
                });
            }
            let drafts = events
                .iter()
                .enumerate()
                .map(|(index, event)| self.draft(meta, &stream, &entity, index, event))
                .collect::<Result<Vec<_>, _>>()?;
            let expected = match loaded.version {
                StreamVersion::NONE => ExpectedVersion::NoStream,
                version => ExpectedVersion::Exact(version),
            };
            let appended = self
                .ledger
                .append(AppendCommand {
                    stream: stream.clone(),
                    expected,
                    actor: meta.actor.as_str().to_owned(),
                    events: drafts,
                })
                .await;
            match appended {
                Ok((result, _)) => {
                    return Ok(CommandReceipt {
                        entity,
                        first_position: result.first_position,
                        last_position: result.last_position,
                        stream_version: result.last_version,
                        events,
                        deduplicated: result.deduplicated,
                        sampled_out: false,
                    });
                }
                // Another writer moved the stream between our read and our append: decide again
                // on the new state, unless the caller pinned the version.
                Err(ServiceError::Store(StoreError::WrongExpectedVersion { .. }))
                    if meta.expected_version.is_none() => {}
                // The same command raced itself (a retry while the first attempt was in flight):
                // the reload finds the first attempt's events and answers with them.
                Err(ServiceError::Store(StoreError::EventIdConflict { .. }))
                    if meta.idempotency_key.is_some() => {}
                Err(error) => return Err(error),
            }
        }
        Err(ServiceError::FailedPrecondition(format!(
            "stream {stream} kept changing under {CONFLICT_RETRIES_MAX} attempts; retry later"
        )))
    }

    /// The context of a decision; `scoring` is the policy to score with, if the command scores.
    fn ctx<'a>(
        &self,
        meta: &CommandMeta,
        scoring: Option<&'a ScoringPolicy>,
    ) -> Result<Ctx<'a>, ServiceError> {
        Ok(Ctx {
            now: self.occurred_at(meta)?,
            actor: meta.actor.clone(),
            scoring: scoring.map(ScoringPolicy::active_model),
        })
    }

    fn occurred_at(&self, meta: &CommandMeta) -> Result<Time, ServiceError> {
        let now = self.now();
        match meta.occurred_at {
            None => Ok(now),
            Some(at) if at > now => Err(ServiceError::InvalidArgument {
                field: "occurred_at",
                reason: "must not be in the future".into(),
            }),
            Some(at) if at < now.plus_days(-OCCURRED_AT_PAST_DAYS_MAX) => {
                Err(ServiceError::InvalidArgument {
                    field: "occurred_at",
                    reason: format!("must be within {OCCURRED_AT_PAST_DAYS_MAX} days of now"),
                })
            }
            Some(at) => Ok(at),
        }
    }

    /// Reads a stream and folds it; finds an earlier recording of this command by its key.
    async fn load<A: DomainAggregate>(
        &self,
        meta: &CommandMeta,
        id: &EntityId,
    ) -> Result<Loaded<A>, ServiceError> {
        let stream = stream_of(&meta.tenant, A::KIND, id)?;
        let entity = EntityRef::new(A::KIND, id.clone());
        let probe = match &meta.idempotency_key {
            Some(key) => {
                check_idempotency_key(key)?;
                Some(key.as_str())
            }
            None => None,
        };
        let first_id = probe.map(|key| derive_event_id(&stream, key, 0));
        let mut state = A::default();
        let mut version = StreamVersion::NONE;
        let mut replay: Option<(Vec<Arc<Record>>, Vec<Event>)> = None;
        loop {
            let records = self
                .ledger
                .store()
                .read_stream(&stream, version.next(), store_limits::READ_RECORDS_MAX)
                .await?;
            let Some(last) = records.last() else { break };
            version = last.envelope.stream_version;
            if version.0 as usize > AGGREGATE_EVENTS_MAX {
                return Err(ServiceError::FailedPrecondition(format!(
                    "stream {stream} has more than {AGGREGATE_EVENTS_MAX} events"
                )));
            }
            for record in &records {
                let event = decode(record)?;
                if let (Some(key), Some(first)) = (probe, first_id) {
                    match &mut replay {
                        None if record.envelope.event_id == first => {
                            replay = Some((vec![record.clone()], vec![event.clone()]));
                        }
                        Some((found, events))
                            if record.envelope.event_id
                                == derive_event_id(&stream, key, found.len()) =>
                        {
                            found.push(record.clone());
                            events.push(event.clone());
                        }
                        _ => {}
                    }
                }
                let own = A::own_event(event).ok_or_else(|| {
                    ServiceError::FailedPrecondition(format!(
                        "stream {stream} holds an event of another aggregate at {}",
                        record.position()
                    ))
                })?;
                state.apply(&own);
            }
            if records.len() < store_limits::READ_RECORDS_MAX {
                break;
            }
        }
        let replay = replay.map(|(records, events)| CommandReceipt {
            entity,
            first_position: records[0].position(),
            last_position: records[records.len() - 1].position(),
            stream_version: records[records.len() - 1].envelope.stream_version,
            events,
            deduplicated: true,
            sampled_out: false,
        });
        Ok(Loaded {
            state,
            version,
            replay,
        })
    }

    fn draft(
        &self,
        meta: &CommandMeta,
        stream: &StreamId,
        own: &EntityRef,
        index: usize,
        event: &Event,
    ) -> Result<EventDraft, ServiceError> {
        let encoded = event.encode();
        let lineage = lineage_parents(&meta.tenant, own, event)?;
        Ok(EventDraft {
            event_id: meta
                .idempotency_key
                .as_deref()
                .map(|key| derive_event_id(stream, key, index)),
            event_type: encoded.event_type.to_owned(),
            event_schema_version: encoded.schema_version,
            causation_id: None,
            correlation_id: meta.correlation_id,
            lineage,
            data_class: None,
            clear: encoded.clear,
            personal: encoded
                .personal
                .map(|PersonalPart { subject, bytes }| PersonalData { subject, bytes }),
            expected_policy_bundle_hash: None,
        })
    }
}

/// The stream of an entity.
pub fn stream_of(
    tenant: &TenantId,
    kind: EntityKind,
    id: &EntityId,
) -> Result<StreamId, ServiceError> {
    Ok(StreamId::new(tenant.clone(), kind.as_str(), id.as_str())?)
}

/// Whether sampling at `rate` keeps the signal `id` of `metric` in `tenant`: a hash, so a retry
/// (or another server) decides the same.
fn keeps(tenant: &TenantId, metric: &str, id: &EntityId, rate: u32) -> bool {
    let mut hasher = blake3::Hasher::new_derive_key("cairn signal sampling v1");
    for part in [tenant.as_str(), metric, id.as_str()] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let bytes: [u8; 8] = hasher.finalize().as_bytes()[..8]
        .try_into()
        .expect("8 of 32 bytes");
    u64::from_le_bytes(bytes).is_multiple_of(u64::from(rate))
}

/// Decodes a record's domain event from its clear part (personal parts are not needed to fold).
pub fn decode(record: &Record) -> Result<Event, ServiceError> {
    let payload = SealedPayload::decode(&record.payload)?;
    let envelope = &record.envelope;
    Event::decode(
        &envelope.stream.aggregate_type,
        &envelope.event_type,
        envelope.event_schema_version,
        &payload.clear,
        StoredPersonal::Withheld,
    )
    .map_err(|error| {
        ServiceError::FailedPrecondition(format!(
            "record at position {} does not decode: {error}",
            record.position()
        ))
    })
}

/// The envelope's lineage parents of an event: for each edge the event records, the endpoint
/// that is not the event's own entity. A duplicate's evidence moving to its canonical opportunity
/// names the duplicate (where it came from) rather than every piece of evidence; the payload
/// holds each edge.
fn lineage_parents(
    tenant: &TenantId,
    own: &EntityRef,
    event: &Event,
) -> Result<Vec<LineageParent>, ServiceError> {
    let mut parents: Vec<(String, EntityRef)> =
        if let Event::Opportunity(OpportunityEvent::DuplicateAbsorbed { duplicate, .. }) = event {
            vec![(
                "duplicate_of".to_owned(),
                EntityRef::new(EntityKind::Opportunity, duplicate.clone()),
            )]
        } else {
            event
                .edges(own)
                .into_iter()
                .map(|edge| {
                    let other = if &edge.from == own {
                        edge.to
                    } else {
                        edge.from
                    };
                    (edge.relation.as_str().to_owned(), other)
                })
                .collect()
        };
    parents.sort();
    parents.dedup();
    if parents.len() > ledger_limits::LINEAGE_PARENTS_MAX {
        return Err(ServiceError::InvalidArgument {
            field: "lineage",
            reason: format!(
                "the command links {} entities; at most {} per event",
                parents.len(),
                ledger_limits::LINEAGE_PARENTS_MAX
            ),
        });
    }
    parents
        .into_iter()
        .map(|(relation, target)| {
            Ok(LineageParent {
                relation,
                target: stream_of(tenant, target.kind, &target.id)?,
            })
        })
        .collect()
}

/// A creation command names its entity's id; it must be the stream's.
fn same_id(named: &EntityId, stream: &EntityId) -> Result<(), ServiceError> {
    if named != stream {
        return Err(ServiceError::InvalidArgument {
            field: "id",
            reason: format!("the command names {named} but addresses {stream}"),
        });
    }
    Ok(())
}

fn check_idempotency_key(key: &str) -> Result<(), ServiceError> {
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(ServiceError::InvalidArgument {
            field: "idempotency_key",
            reason: format!(
                "must be 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes, got {}",
                key.len()
            ),
        });
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::InvalidArgument {
            field: "idempotency_key",
            reason: "must be printable ASCII without spaces".into(),
        });
    }
    Ok(())
}

/// The event id of event `index` of the command with idempotency key `key` on `stream`: a keyed
/// derivation, so the same command retried yields the same ids and the store recognises it.
pub fn derive_event_id(stream: &StreamId, key: &str, index: usize) -> EventId {
    let mut hasher = blake3::Hasher::new_derive_key("cairn idempotency key v1");
    for part in [
        stream.tenant.as_str(),
        stream.aggregate_type.as_str(),
        stream.aggregate_id.as_str(),
        key,
    ] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.update(&(index as u64).to_le_bytes());
    EventId(
        hasher.finalize().as_bytes()[..16]
            .try_into()
            .expect("16 of 32 bytes"),
    )
}

impl<S: EventStore + KeyStore> FeedbackLoop<S> {
    /// Runs one step of a data set in process. `open_opportunities` lists the candidates of an
    /// aging sweep (the projection knows them; the caller passes them).
    pub async fn run_step(
        &self,
        step: &crate::dataset::Step,
        open_opportunities: &[EntityId],
    ) -> Result<Vec<CommandReceipt>, ServiceError> {
        use crate::dataset::Action;
        let meta = CommandMeta {
            occurred_at: Some(step.at),
            ..CommandMeta::new(step.tenant.clone(), step.actor.clone()).with_key(step.key.clone())
        };
        let receipt = match &step.action {
            Action::Feedback(id, command) => self.feedback(&meta, id, command.clone()).await?,
            Action::Signal(id, command) => self.signal(&meta, id, command.clone()).await?,
            Action::Opportunity(id, command) => {
                self.opportunity(&meta, id, command.clone()).await?
            }
            Action::Evidence {
                opportunity,
                evidence,
            } => {
                self.attach_evidence(&meta, opportunity, evidence.clone())
                    .await?
            }
            Action::Decision(id, command) => self.decision(&meta, id, command.clone()).await?,
            Action::Initiative(id, command) => self.initiative(&meta, id, command.clone()).await?,
            Action::SweepAging => {
                return Ok(self
                    .sweep_aging(&meta, open_opportunities)
                    .await?
                    .into_iter()
                    .map(|(receipt, _)| receipt)
                    .collect());
            }
        };
        Ok(vec![receipt])
    }
}
