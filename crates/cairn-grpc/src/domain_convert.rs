//! Conversions between the feedback-loop protos (`common.proto`, `feedback.proto`,
//! `decision.proto`, `prioritization.proto`, `initiative.proto`, `lineage.proto`) and the domain:
//! requests to the commands [`cairn_service::FeedbackLoop`] runs, and domain values to the
//! messages the calls answer with.
//!
//! Every refusal is a [`Status`] built as `convert` builds them: INVALID_ARGUMENT naming the
//! request field in `cairn-field` (the path from the request: `meta.tenant`, `content.deciders[1]`,
//! `decline.decision_id`), plus `cairn-rule` when a domain check refused it; a page or walk over
//! its cap is RESOURCE_EXHAUSTED, as `LedgerService` does with its page limit. These functions
//! check the shape of a request (ids, required fields, enum values); the rules (text lengths,
//! tags, transitions) stay with `decide`, whose refusals the error table maps.

use cairn_domain::decision::{DecisionCommand, DecisionContent, DecisionKind, DecisionStatus};
use cairn_domain::feedback::{FeedbackCommand, FeedbackContent, FeedbackSource, FeedbackStatus};
use cairn_domain::initiative::{
    InitiativeCommand, InitiativeDraft, InitiativeStatus, Milestone, MilestoneStatus,
};
use cairn_domain::opportunity::{
    Evidence, OpportunityCommand, OpportunityDraft, OpportunityEvent, OpportunityStatus,
    RatingRecord, Size, Triage, Validation,
};
use cairn_domain::scoring::{
    AgingRule, FactorSource, Formula, InputSource, Normaliser, Role, ScoreInput, ScoreSnapshot,
    ScoringModel,
};
use cairn_domain::signal::{
    Direction, Measurement, Observation, Percentiles, SignalCommand, Statistic,
};
use cairn_domain::{
    DomainError, Edge, EntityId, EntityKind, EntityRef, Event, PrincipalId, Relation, Team, Time,
    Visibility,
};
use cairn_ledger::{LineageParent, Position, Record, SignedCheckpoint, StreamVersion, TenantId};
use cairn_service::feedback_loop::IDEMPOTENCY_KEY_BYTES_MAX;
use cairn_service::history::HistoryEntry;
use cairn_service::{CommandMeta, CommandReceipt};
use tonic::Status;

use crate::convert::{checkpoint_to_proto, optional_id, stream_to_proto};
use crate::error::{FIELD_METADATA, RULE_METADATA, invalid_argument};
use crate::proto;

/// Largest page a list call may ask for (RESOURCE_EXHAUSTED beyond).
pub const PAGE_SIZE_MAX: usize = 500;
/// The page size of a list call that does not say.
pub const PAGE_SIZE_DEFAULT: usize = 100;
/// Longest page token, in bytes.
pub const PAGE_TOKEN_BYTES_MAX: usize = 1024;
/// Most opportunities `GetRanking` answers with.
pub const RANKING_LIMIT_MAX: usize = 500;
/// The number of opportunities `GetRanking` answers with when the request does not say.
pub const RANKING_LIMIT_DEFAULT: usize = 100;
/// Deepest lineage walk, in hops.
pub const LINEAGE_DEPTH_MAX: usize = 16;
/// The depth of a lineage walk that does not say.
pub const LINEAGE_DEPTH_DEFAULT: usize = 3;
/// Most nodes `Graph` answers with.
pub const GRAPH_NODES_MAX: usize = 1000;
/// The node count of a `Graph` call that does not say.
pub const GRAPH_NODES_DEFAULT: usize = 200;
/// Most pieces of evidence `ExplainRank` details.
pub const EXPLAIN_EVIDENCE_MAX: usize = 500;

/// A command addressed to one entity: the arguments of [`cairn_service::FeedbackLoop`]'s
/// `feedback`, `signal`, `opportunity`, `decision`, `initiative` and `attach_evidence`.
#[derive(Clone, Debug)]
pub struct EntityCommand<C> {
    /// Who asks, for which tenant, and how a retry is recognised.
    pub meta: CommandMeta,
    /// The entity the request names (`id`).
    pub id: EntityId,
    /// What to do.
    pub command: C,
}

/// How a read is to be answered (`ReadOptions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadAt {
    /// Answer as the ledger stood at this position.
    pub as_of_position: Option<Position>,
    /// Answer only once the read models have applied this position.
    pub at_least_position: Option<Position>,
    /// Open personal data where the caller may.
    pub include_personal: bool,
}

/// Which page of a list (`PageRequest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageAt {
    /// 1 to [`PAGE_SIZE_MAX`].
    pub size: usize,
    /// The previous page's token; `None` for the first page.
    pub token: Option<String>,
}

/// An aging sweep (`AgeOutRequest`): the candidates come from the read model, a page at a time.
#[derive(Clone, Debug)]
pub struct AgeOutSweep {
    /// Who asks; never a version pin (the sweep spans many streams).
    pub meta: CommandMeta,
    /// Only this team's opportunities.
    pub team: Option<Team>,
    /// Which candidates.
    pub page: PageAt,
}

// --- refusals -----------------------------------------------------------------------------------

fn required(field: &str) -> Status {
    invalid_argument(field, format!("{field} is required"))
}

/// INVALID_ARGUMENT naming the field, carrying the rule of the domain check that refused it.
fn refused(field: &str, error: DomainError) -> Status {
    let mut status = invalid_argument(field, format!("invalid {field}: {}", error.message));
    if let Ok(rule) = error.rule.as_str().parse() {
        status.metadata_mut().insert(RULE_METADATA, rule);
    }
    status
}

/// RESOURCE_EXHAUSTED naming the field.
fn over_cap(field: &str, value: u64, max: usize) -> Status {
    let mut status =
        Status::resource_exhausted(format!("{field} is {value}, over the limit of {max}"));
    if let Ok(name) = field.parse() {
        status.metadata_mut().insert(FIELD_METADATA, name);
    }
    status
}

// --- ids, principals, teams, time ---------------------------------------------------------------

fn entity_id(field: &str, text: String) -> Result<EntityId, Status> {
    EntityId::new(text).map_err(|error| refused(field, error))
}

fn optional_entity_id(field: &str, text: String) -> Result<Option<EntityId>, Status> {
    match text.is_empty() {
        true => Ok(None),
        false => entity_id(field, text).map(Some),
    }
}

fn entity_ids(field: &str, texts: Vec<String>) -> Result<Vec<EntityId>, Status> {
    texts
        .into_iter()
        .enumerate()
        .map(|(index, text)| entity_id(&format!("{field}[{index}]"), text))
        .collect()
}

fn principal(field: &str, text: String) -> Result<PrincipalId, Status> {
    PrincipalId::new(text).map_err(|error| refused(field, error))
}

fn optional_principal(field: &str, text: String) -> Result<Option<PrincipalId>, Status> {
    match text.is_empty() {
        true => Ok(None),
        false => principal(field, text).map(Some),
    }
}

fn principals(field: &str, texts: Vec<String>) -> Result<Vec<PrincipalId>, Status> {
    texts
        .into_iter()
        .enumerate()
        .map(|(index, text)| principal(&format!("{field}[{index}]"), text))
        .collect()
}

fn team(field: &str, text: String) -> Result<Team, Status> {
    Team::new(text).map_err(|error| refused(field, error))
}

fn optional_team(field: &str, text: String) -> Result<Option<Team>, Status> {
    match text.is_empty() {
        true => Ok(None),
        false => team(field, text).map(Some),
    }
}

/// A time the request must give: 0 is taken for "not given".
fn required_time(field: &str, micros: i64) -> Result<Time, Status> {
    match micros {
        0 => Err(required(field)),
        micros => Ok(Time(micros)),
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// A tenant id (`tenant` of a read request, `meta.tenant` of a write).
pub fn tenant_from_proto(field: &str, text: String) -> Result<TenantId, Status> {
    TenantId::new(text)
        .map_err(|error| invalid_argument(field, format!("invalid {field}: {error}")))
}

/// An entity id the request names.
pub fn entity_id_from_proto(field: &str, text: String) -> Result<EntityId, Status> {
    entity_id(field, text)
}

/// An entity id a request may leave empty (a filter): `None` when empty.
pub fn optional_entity_id_from_proto(
    field: &str,
    text: String,
) -> Result<Option<EntityId>, Status> {
    optional_entity_id(field, text)
}

/// A team a request may leave empty (a filter): `None` when empty.
pub fn optional_team_from_proto(field: &str, text: String) -> Result<Option<Team>, Status> {
    optional_team(field, text)
}

/// A principal a request may leave empty (a filter): `None` when empty.
pub fn optional_principal_from_proto(
    field: &str,
    text: String,
) -> Result<Option<PrincipalId>, Status> {
    optional_principal(field, text)
}

// --- enums --------------------------------------------------------------------------------------

fn enum_value<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, Status> {
    E::try_from(value)
        .map_err(|_| invalid_argument(field, format!("invalid {field}: unknown value {value}")))
}

/// A filter on an enum (a status, a kind, a source): `None` when unspecified (0), which matches
/// everything.
pub fn filter_from_proto<E: TryFrom<i32>>(field: &str, value: i32) -> Result<Option<E>, Status> {
    match value {
        0 => Ok(None),
        value => enum_value(field, value).map(Some),
    }
}

/// The proto form of an entity kind.
pub fn entity_kind_to_proto(kind: EntityKind) -> proto::EntityKind {
    match kind {
        EntityKind::Feedback => proto::EntityKind::Feedback,
        EntityKind::Signal => proto::EntityKind::Signal,
        EntityKind::Opportunity => proto::EntityKind::Opportunity,
        EntityKind::Decision => proto::EntityKind::Decision,
        EntityKind::Initiative => proto::EntityKind::Initiative,
    }
}

/// An entity kind the request must give.
pub fn entity_kind_from_proto(field: &str, value: i32) -> Result<EntityKind, Status> {
    Ok(match enum_value(field, value)? {
        proto::EntityKind::Unspecified => return Err(required(field)),
        proto::EntityKind::Feedback => EntityKind::Feedback,
        proto::EntityKind::Signal => EntityKind::Signal,
        proto::EntityKind::Opportunity => EntityKind::Opportunity,
        proto::EntityKind::Decision => EntityKind::Decision,
        proto::EntityKind::Initiative => EntityKind::Initiative,
    })
}

/// The proto form of a visibility.
pub fn visibility_to_proto(visibility: Visibility) -> proto::Visibility {
    match visibility {
        Visibility::Open => proto::Visibility::Open,
        Visibility::Team => proto::Visibility::Team,
        Visibility::Restricted => proto::Visibility::Restricted,
    }
}

/// A visibility; unspecified is open.
pub fn visibility_from_proto(field: &str, value: i32) -> Result<Visibility, Status> {
    Ok(match enum_value(field, value)? {
        proto::Visibility::Unspecified | proto::Visibility::Open => Visibility::Open,
        proto::Visibility::Team => Visibility::Team,
        proto::Visibility::Restricted => Visibility::Restricted,
    })
}

/// The proto form of a lineage relation.
pub fn relation_to_proto(relation: Relation) -> proto::Relation {
    match relation {
        Relation::EvidenceFor => proto::Relation::EvidenceFor,
        Relation::DuplicateOf => proto::Relation::DuplicateOf,
        Relation::DecidedBy => proto::Relation::DecidedBy,
        Relation::Implements => proto::Relation::Implements,
        Relation::Supersedes => proto::Relation::Supersedes,
        Relation::Verifies => proto::Relation::Verifies,
        Relation::DerivedFrom => proto::Relation::DerivedFrom,
    }
}

/// A lineage relation the request must give.
pub fn relation_from_proto(field: &str, value: i32) -> Result<Relation, Status> {
    Ok(match enum_value(field, value)? {
        proto::Relation::Unspecified => return Err(required(field)),
        proto::Relation::EvidenceFor => Relation::EvidenceFor,
        proto::Relation::DuplicateOf => Relation::DuplicateOf,
        proto::Relation::DecidedBy => Relation::DecidedBy,
        proto::Relation::Implements => Relation::Implements,
        proto::Relation::Supersedes => Relation::Supersedes,
        proto::Relation::Verifies => Relation::Verifies,
        proto::Relation::DerivedFrom => Relation::DerivedFrom,
    })
}

/// The relations a lineage walk follows (`relations`): empty means all.
pub fn relations_from_proto(field: &str, values: &[i32]) -> Result<Vec<Relation>, Status> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| relation_from_proto(&format!("{field}[{index}]"), *value))
        .collect()
}

/// The proto form of a feedback source.
pub fn feedback_source_to_proto(source: FeedbackSource) -> proto::FeedbackSource {
    match source {
        FeedbackSource::Survey => proto::FeedbackSource::Survey,
        FeedbackSource::Chat => proto::FeedbackSource::Chat,
        FeedbackSource::Ticket => proto::FeedbackSource::Ticket,
        FeedbackSource::Incident => proto::FeedbackSource::Incident,
        FeedbackSource::HealthCheck => proto::FeedbackSource::HealthCheck,
        FeedbackSource::Api => proto::FeedbackSource::Api,
    }
}

/// A feedback source the request must give.
pub fn feedback_source_from_proto(field: &str, value: i32) -> Result<FeedbackSource, Status> {
    Ok(match enum_value(field, value)? {
        proto::FeedbackSource::Unspecified => return Err(required(field)),
        proto::FeedbackSource::Survey => FeedbackSource::Survey,
        proto::FeedbackSource::Chat => FeedbackSource::Chat,
        proto::FeedbackSource::Ticket => FeedbackSource::Ticket,
        proto::FeedbackSource::Incident => FeedbackSource::Incident,
        proto::FeedbackSource::HealthCheck => FeedbackSource::HealthCheck,
        proto::FeedbackSource::Api => FeedbackSource::Api,
    })
}

/// The proto form of a feedback item's status.
pub fn feedback_status_to_proto(status: FeedbackStatus) -> proto::FeedbackStatus {
    match status {
        FeedbackStatus::Received => proto::FeedbackStatus::Received,
        FeedbackStatus::Processed => proto::FeedbackStatus::Processed,
        FeedbackStatus::Discarded => proto::FeedbackStatus::Discarded,
    }
}

/// A feedback status filter (`status` of ListFeedback): `None` when unspecified.
pub fn feedback_status_from_proto(
    field: &str,
    value: i32,
) -> Result<Option<FeedbackStatus>, Status> {
    Ok(match enum_value(field, value)? {
        proto::FeedbackStatus::Unspecified => None,
        proto::FeedbackStatus::Received => Some(FeedbackStatus::Received),
        proto::FeedbackStatus::Processed => Some(FeedbackStatus::Processed),
        proto::FeedbackStatus::Discarded => Some(FeedbackStatus::Discarded),
    })
}

/// The proto form of a metric direction.
pub fn direction_to_proto(direction: Direction) -> proto::MetricDirection {
    match direction {
        Direction::LowerIsBetter => proto::MetricDirection::LowerIsBetter,
        Direction::HigherIsBetter => proto::MetricDirection::HigherIsBetter,
    }
}

/// A metric direction the request must give.
pub fn direction_from_proto(field: &str, value: i32) -> Result<Direction, Status> {
    Ok(match enum_value(field, value)? {
        proto::MetricDirection::Unspecified => return Err(required(field)),
        proto::MetricDirection::LowerIsBetter => Direction::LowerIsBetter,
        proto::MetricDirection::HigherIsBetter => Direction::HigherIsBetter,
    })
}

/// The proto form of an opportunity's status.
pub fn opportunity_status_to_proto(status: OpportunityStatus) -> proto::OpportunityStatus {
    match status {
        OpportunityStatus::New => proto::OpportunityStatus::New,
        OpportunityStatus::UnderReview => proto::OpportunityStatus::UnderReview,
        OpportunityStatus::Planned => proto::OpportunityStatus::Planned,
        OpportunityStatus::InProgress => proto::OpportunityStatus::InProgress,
        OpportunityStatus::Shipped => proto::OpportunityStatus::Shipped,
        OpportunityStatus::Validated => proto::OpportunityStatus::Validated,
        OpportunityStatus::NotValidated => proto::OpportunityStatus::NotValidated,
        OpportunityStatus::Declined => proto::OpportunityStatus::Declined,
        OpportunityStatus::Duplicate => proto::OpportunityStatus::Duplicate,
        OpportunityStatus::Snoozed => proto::OpportunityStatus::Snoozed,
        OpportunityStatus::AgedOut => proto::OpportunityStatus::AgedOut,
    }
}

/// An opportunity status the request must give.
pub fn opportunity_status_from_proto(field: &str, value: i32) -> Result<OpportunityStatus, Status> {
    Ok(match enum_value(field, value)? {
        proto::OpportunityStatus::Unspecified => return Err(required(field)),
        proto::OpportunityStatus::New => OpportunityStatus::New,
        proto::OpportunityStatus::UnderReview => OpportunityStatus::UnderReview,
        proto::OpportunityStatus::Planned => OpportunityStatus::Planned,
        proto::OpportunityStatus::InProgress => OpportunityStatus::InProgress,
        proto::OpportunityStatus::Shipped => OpportunityStatus::Shipped,
        proto::OpportunityStatus::Validated => OpportunityStatus::Validated,
        proto::OpportunityStatus::NotValidated => OpportunityStatus::NotValidated,
        proto::OpportunityStatus::Declined => OpportunityStatus::Declined,
        proto::OpportunityStatus::Duplicate => OpportunityStatus::Duplicate,
        proto::OpportunityStatus::Snoozed => OpportunityStatus::Snoozed,
        proto::OpportunityStatus::AgedOut => OpportunityStatus::AgedOut,
    })
}

/// The proto form of a size.
pub fn size_to_proto(size: Option<Size>) -> proto::Size {
    match size {
        None => proto::Size::Unspecified,
        Some(Size::Xs) => proto::Size::Xs,
        Some(Size::S) => proto::Size::S,
        Some(Size::M) => proto::Size::M,
        Some(Size::L) => proto::Size::L,
        Some(Size::Xl) => proto::Size::Xl,
    }
}

/// A size; unspecified is "not sized".
pub fn size_from_proto(field: &str, value: i32) -> Result<Option<Size>, Status> {
    Ok(match enum_value(field, value)? {
        proto::Size::Unspecified => None,
        proto::Size::Xs => Some(Size::Xs),
        proto::Size::S => Some(Size::S),
        proto::Size::M => Some(Size::M),
        proto::Size::L => Some(Size::L),
        proto::Size::Xl => Some(Size::Xl),
    })
}

/// The proto form of an outcome validation.
pub fn validation_to_proto(validation: Validation) -> proto::Validation {
    match validation {
        Validation::Validated => proto::Validation::Validated,
        Validation::NotValidated => proto::Validation::NotValidated,
    }
}

/// An outcome validation the request must give.
pub fn validation_from_proto(field: &str, value: i32) -> Result<Validation, Status> {
    Ok(match enum_value(field, value)? {
        proto::Validation::Unspecified => return Err(required(field)),
        proto::Validation::Validated => Validation::Validated,
        proto::Validation::NotValidated => Validation::NotValidated,
    })
}

/// The proto form of a decision kind.
pub fn decision_kind_to_proto(kind: DecisionKind) -> proto::DecisionKind {
    match kind {
        DecisionKind::Triage => proto::DecisionKind::Triage,
        DecisionKind::Prioritisation => proto::DecisionKind::Prioritisation,
        DecisionKind::Architecture => proto::DecisionKind::Architecture,
        DecisionKind::Experiment => proto::DecisionKind::Experiment,
        DecisionKind::Waiver => proto::DecisionKind::Waiver,
    }
}

/// A decision kind the request must give.
pub fn decision_kind_from_proto(field: &str, value: i32) -> Result<DecisionKind, Status> {
    Ok(match enum_value(field, value)? {
        proto::DecisionKind::Unspecified => return Err(required(field)),
        proto::DecisionKind::Triage => DecisionKind::Triage,
        proto::DecisionKind::Prioritisation => DecisionKind::Prioritisation,
        proto::DecisionKind::Architecture => DecisionKind::Architecture,
        proto::DecisionKind::Experiment => DecisionKind::Experiment,
        proto::DecisionKind::Waiver => DecisionKind::Waiver,
    })
}

/// The proto form of a decision's status, and the decision that superseded it (empty unless
/// superseded): `Decision.status` and `Decision.superseded_by`.
pub fn decision_status_to_proto(status: &DecisionStatus) -> (proto::DecisionStatus, String) {
    match status {
        DecisionStatus::Proposed => (proto::DecisionStatus::Proposed, String::new()),
        DecisionStatus::Accepted => (proto::DecisionStatus::Accepted, String::new()),
        DecisionStatus::Rejected => (proto::DecisionStatus::Rejected, String::new()),
        DecisionStatus::Deprecated => (proto::DecisionStatus::Deprecated, String::new()),
        DecisionStatus::Superseded { by } => {
            (proto::DecisionStatus::Superseded, by.as_str().to_owned())
        }
    }
}

/// The proto form of an initiative's status.
pub fn initiative_status_to_proto(status: InitiativeStatus) -> proto::InitiativeStatus {
    match status {
        InitiativeStatus::Draft => proto::InitiativeStatus::Draft,
        InitiativeStatus::Scheduled => proto::InitiativeStatus::Scheduled,
        InitiativeStatus::InProgress => proto::InitiativeStatus::InProgress,
        InitiativeStatus::Completed => proto::InitiativeStatus::Completed,
        InitiativeStatus::Cancelled => proto::InitiativeStatus::Cancelled,
    }
}

/// A decision status filter (`status` of ListDecisions), as the domain names the status (the
/// read model keeps the name): `None` when unspecified.
pub fn decision_status_name_from_proto(
    field: &str,
    value: i32,
) -> Result<Option<&'static str>, Status> {
    Ok(match enum_value(field, value)? {
        proto::DecisionStatus::Unspecified => None,
        proto::DecisionStatus::Proposed => Some(DecisionStatus::Proposed.as_str()),
        proto::DecisionStatus::Accepted => Some(DecisionStatus::Accepted.as_str()),
        proto::DecisionStatus::Rejected => Some(DecisionStatus::Rejected.as_str()),
        proto::DecisionStatus::Deprecated => Some(DecisionStatus::Deprecated.as_str()),
        proto::DecisionStatus::Superseded => Some("superseded"),
    })
}

/// The proto form of a decision status as the read model names it (`accepted`, ...).
pub fn decision_status_name_to_proto(name: &str) -> proto::DecisionStatus {
    match name {
        "proposed" => proto::DecisionStatus::Proposed,
        "accepted" => proto::DecisionStatus::Accepted,
        "rejected" => proto::DecisionStatus::Rejected,
        "deprecated" => proto::DecisionStatus::Deprecated,
        "superseded" => proto::DecisionStatus::Superseded,
        _ => proto::DecisionStatus::Unspecified,
    }
}

/// An initiative status filter (`status` of ListInitiatives): `None` when unspecified.
pub fn initiative_status_from_proto(
    field: &str,
    value: i32,
) -> Result<Option<InitiativeStatus>, Status> {
    Ok(match enum_value(field, value)? {
        proto::InitiativeStatus::Unspecified => None,
        proto::InitiativeStatus::Draft => Some(InitiativeStatus::Draft),
        proto::InitiativeStatus::Scheduled => Some(InitiativeStatus::Scheduled),
        proto::InitiativeStatus::InProgress => Some(InitiativeStatus::InProgress),
        proto::InitiativeStatus::Completed => Some(InitiativeStatus::Completed),
        proto::InitiativeStatus::Cancelled => Some(InitiativeStatus::Cancelled),
    })
}

/// The proto form of a milestone's status.
pub fn milestone_status_to_proto(status: MilestoneStatus) -> proto::MilestoneStatus {
    match status {
        MilestoneStatus::Open => proto::MilestoneStatus::Open,
        MilestoneStatus::Met => proto::MilestoneStatus::Met,
        MilestoneStatus::Missed => proto::MilestoneStatus::Missed,
    }
}

// --- references and edges -----------------------------------------------------------------------

/// The proto form of an entity reference.
pub fn entity_ref_to_proto(reference: &EntityRef) -> proto::EntityRef {
    proto::EntityRef {
        kind: entity_kind_to_proto(reference.kind) as i32,
        id: reference.id.as_str().to_owned(),
    }
}

/// An entity reference the request must give.
pub fn entity_ref_from_proto(
    field: &str,
    reference: Option<proto::EntityRef>,
) -> Result<EntityRef, Status> {
    let reference = reference.ok_or_else(|| required(field))?;
    Ok(EntityRef::new(
        entity_kind_from_proto(&format!("{field}.kind"), reference.kind)?,
        entity_id(&format!("{field}.id"), reference.id)?,
    ))
}

/// The proto form of a lineage edge.
pub fn edge_to_proto(edge: &Edge) -> proto::Edge {
    proto::Edge {
        from: Some(entity_ref_to_proto(&edge.from)),
        relation: relation_to_proto(edge.relation) as i32,
        to: Some(entity_ref_to_proto(&edge.to)),
    }
}

/// A lineage edge from its proto form.
pub fn edge_from_proto(field: &str, edge: Option<proto::Edge>) -> Result<Edge, Status> {
    let edge = edge.ok_or_else(|| required(field))?;
    Ok(Edge {
        from: entity_ref_from_proto(&format!("{field}.from"), edge.from)?,
        relation: relation_from_proto(&format!("{field}.relation"), edge.relation)?,
        to: entity_ref_from_proto(&format!("{field}.to"), edge.to)?,
    })
}

// --- command metadata, reads, pages, stamps, receipts -------------------------------------------

/// The metadata of a mutating request (`meta`), as the service takes it: 0 and empty fields mean
/// "none" (no idempotency key, any version, now, no correlation).
pub fn command_meta_from_proto(meta: Option<proto::CommandMeta>) -> Result<CommandMeta, Status> {
    let meta = meta.ok_or_else(|| required("meta"))?;
    let idempotency_key = match meta.idempotency_key {
        key if key.is_empty() => None,
        key if key.len() > IDEMPOTENCY_KEY_BYTES_MAX => {
            return Err(invalid_argument(
                "meta.idempotency_key",
                format!(
                    "invalid meta.idempotency_key: must be at most {IDEMPOTENCY_KEY_BYTES_MAX} \
                     bytes, got {}",
                    key.len()
                ),
            ));
        }
        key if !key.bytes().all(|b| b.is_ascii_graphic()) => {
            return Err(invalid_argument(
                "meta.idempotency_key",
                "invalid meta.idempotency_key: must be printable ASCII without spaces",
            ));
        }
        key => Some(key),
    };
    Ok(CommandMeta {
        tenant: tenant_from_proto("meta.tenant", meta.tenant)?,
        actor: principal("meta.actor", meta.actor)?,
        idempotency_key,
        expected_version: (meta.expected_version != 0)
            .then_some(StreamVersion(meta.expected_version)),
        occurred_at: (meta.occurred_at_micros != 0).then_some(Time(meta.occurred_at_micros)),
        correlation_id: optional_id("meta.correlation_id", &meta.correlation_id)?,
    })
}

/// The meta and entity id every mutating request opens with.
fn address(
    meta: Option<proto::CommandMeta>,
    id: String,
) -> Result<(CommandMeta, EntityId), Status> {
    Ok((command_meta_from_proto(meta)?, entity_id("id", id)?))
}

/// A command on the entity the request names; `make` builds it from the request's other fields.
fn command<C>(
    meta: Option<proto::CommandMeta>,
    id: String,
    make: impl FnOnce(&EntityId) -> Result<C, Status>,
) -> Result<EntityCommand<C>, Status> {
    let (meta, id) = address(meta, id)?;
    let command = make(&id)?;
    Ok(EntityCommand { meta, id, command })
}

/// The read options of a read request (`read`); absent means the defaults.
pub fn read_options_from_proto(read: Option<proto::ReadOptions>) -> Result<ReadAt, Status> {
    let read = read.unwrap_or_default();
    if let (Some(as_of), Some(at_least)) = (read.as_of_position, read.at_least_position)
        && at_least > as_of
    {
        return Err(invalid_argument(
            "read.at_least_position",
            format!(
                "invalid read.at_least_position: {at_least} is beyond read.as_of_position {as_of}"
            ),
        ));
    }
    Ok(ReadAt {
        as_of_position: read.as_of_position.map(Position),
        at_least_position: read.at_least_position.map(Position),
        include_personal: read.include_personal,
    })
}

/// A count a request may give: 0 means `default`, above `max` is RESOURCE_EXHAUSTED naming the
/// field (page sizes, GetRanking's limit, lineage depths and node counts).
pub fn bounded(field: &str, value: u32, default: usize, max: usize) -> Result<usize, Status> {
    match value as usize {
        0 => Ok(default),
        n if n > max => Err(over_cap(field, u64::from(value), max)),
        n => Ok(n),
    }
}

/// The page of a list request (`page`); absent means the first page of the default size.
pub fn page_from_proto(page: Option<proto::PageRequest>) -> Result<PageAt, Status> {
    let page = page.unwrap_or_default();
    let size = bounded(
        "page.page_size",
        page.page_size,
        PAGE_SIZE_DEFAULT,
        PAGE_SIZE_MAX,
    )?;
    if page.page_token.len() > PAGE_TOKEN_BYTES_MAX {
        return Err(invalid_argument(
            "page.page_token",
            format!(
                "invalid page.page_token: at most {PAGE_TOKEN_BYTES_MAX} bytes, got {}",
                page.page_token.len()
            ),
        ));
    }
    Ok(PageAt {
        size,
        token: non_empty(page.page_token),
    })
}

/// The stamp of a read answer: the position it reflects and the latest signed checkpoint.
pub fn stamp_to_proto(position: Position, checkpoint: Option<&SignedCheckpoint>) -> proto::Stamp {
    proto::Stamp {
        position: position.0,
        checkpoint: checkpoint.map(checkpoint_to_proto),
    }
}

/// The provenance of a record: who recorded it, when, under which policy bundle. `entity` is
/// absent for a stream that is not a domain entity's.
pub fn provenance_to_proto(record: &Record) -> proto::Provenance {
    let envelope = &record.envelope;
    let entity = EntityKind::parse(&envelope.stream.aggregate_type).and_then(|kind| {
        EntityId::new(envelope.stream.aggregate_id.clone())
            .ok()
            .map(|id| entity_ref_to_proto(&EntityRef::new(kind, id)))
    });
    proto::Provenance {
        position: envelope.position.0,
        entity,
        stream_version: envelope.stream_version.0,
        event_id: envelope.event_id.0.to_vec(),
        event_type: envelope.event_type.clone(),
        actor: envelope.actor.clone(),
        recorded_at_micros: envelope.recorded_at.0,
        policy_bundle_hash: envelope.policy_bundle_hash.0.to_vec(),
        correlation_id: envelope
            .correlation_id
            .map(|id| id.0.to_vec())
            .unwrap_or_default(),
    }
}

/// The provenance of an entity's record as [`cairn_service::history`] reads it (the entity's
/// stream, which the entry does not repeat, is `entity`).
pub fn history_provenance_to_proto(entity: &EntityRef, entry: &HistoryEntry) -> proto::Provenance {
    proto::Provenance {
        position: entry.position.0,
        entity: Some(entity_ref_to_proto(entity)),
        stream_version: entry.stream_version.0,
        event_id: entry.event_id.0.to_vec(),
        event_type: entry.event_type.clone(),
        actor: entry.actor.clone(),
        recorded_at_micros: entry.recorded_at.0,
        policy_bundle_hash: entry.policy_bundle_hash.0.to_vec(),
        correlation_id: entry
            .correlation_id
            .map(|id| id.0.to_vec())
            .unwrap_or_default(),
    }
}

/// A record's lineage parents, as its envelope holds them (`WhyStep.lineage_parents`).
pub fn lineage_parents_to_proto(parents: &[LineageParent]) -> Vec<proto::LineageParent> {
    parents
        .iter()
        .map(|parent| proto::LineageParent {
            relation: parent.relation.clone(),
            target: Some(stream_to_proto(&parent.target)),
        })
        .collect()
}

/// The receipt a mutating call answers with.
pub fn receipt_to_proto(receipt: &CommandReceipt) -> proto::CommandReceipt {
    proto::CommandReceipt {
        entity: Some(entity_ref_to_proto(&receipt.entity)),
        first_position: receipt.first_position.0,
        last_position: receipt.last_position.0,
        stream_version: receipt.stream_version.0,
        event_types: receipt
            .event_types()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        deduplicated: receipt.deduplicated,
        sampled_out: receipt.sampled_out,
    }
}

// --- feedback and signals -----------------------------------------------------------------------

/// `SubmitFeedback`.
pub fn submit_feedback(
    request: proto::SubmitFeedbackRequest,
) -> Result<EntityCommand<FeedbackCommand>, Status> {
    command(request.meta, request.id, |id| {
        Ok(FeedbackCommand::Submit {
            id: id.clone(),
            content: FeedbackContent {
                text: request.text,
                submitter: optional_principal("submitter", request.submitter)?,
            },
            team: team("team", request.team)?,
            source: feedback_source_from_proto("source", request.source)?,
            tags: request.tags,
            outcome_tags: request.outcome_tags,
            visibility: visibility_from_proto("visibility", request.visibility)?,
        })
    })
}

/// `LinkFeedback`: the opportunity (`id`) and the evidence, for
/// [`cairn_service::FeedbackLoop::attach_evidence`].
pub fn link_feedback(
    request: proto::LinkFeedbackRequest,
) -> Result<EntityCommand<EntityRef>, Status> {
    command(request.meta, request.id, |_| {
        let evidence = entity_ref_from_proto("evidence", request.evidence)?;
        if !matches!(evidence.kind, EntityKind::Feedback | EntityKind::Signal) {
            return Err(invalid_argument(
                "evidence.kind",
                "invalid evidence.kind: evidence is a feedback item or a signal",
            ));
        }
        Ok(evidence)
    })
}

/// `DiscardFeedback`.
pub fn discard_feedback(
    request: proto::DiscardFeedbackRequest,
) -> Result<EntityCommand<FeedbackCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(FeedbackCommand::Discard {
            reason: request.reason,
        })
    })
}

/// The proto form of an observation.
pub fn observation_to_proto(observation: &Observation) -> proto::Observation {
    proto::Observation {
        metric: observation.metric.clone(),
        unit: observation.unit.clone(),
        direction: direction_to_proto(observation.direction) as i32,
        service: observation.service.clone().unwrap_or_default(),
        team: observation
            .team
            .as_ref()
            .map(|team| team.as_str().to_owned())
            .unwrap_or_default(),
        window_seconds: observation.window_seconds,
        value: observation.measurement.value,
        percentiles: observation
            .measurement
            .percentiles
            .map(|p| proto::Percentiles {
                p50: p.p50,
                p95: p.p95,
                p99: p.p99,
            }),
        source: observation.source.clone(),
        observed_at_micros: observation.observed_at.0,
    }
}

/// An observation the request must give.
pub fn observation_from_proto(
    field: &str,
    observation: Option<proto::Observation>,
) -> Result<Observation, Status> {
    let observation = observation.ok_or_else(|| required(field))?;
    let at = |name: &str| format!("{field}.{name}");
    Ok(Observation {
        metric: observation.metric,
        unit: observation.unit,
        direction: direction_from_proto(&at("direction"), observation.direction)?,
        service: non_empty(observation.service),
        team: optional_team(&at("team"), observation.team)?,
        window_seconds: observation.window_seconds,
        measurement: Measurement {
            value: observation.value,
            percentiles: observation.percentiles.map(|p| Percentiles {
                p50: p.p50,
                p95: p.p95,
                p99: p.p99,
            }),
        },
        source: observation.source,
        observed_at: required_time(&at("observed_at_micros"), observation.observed_at_micros)?,
    })
}

/// `RecordSignal`.
pub fn record_signal(
    request: proto::RecordSignalRequest,
) -> Result<EntityCommand<SignalCommand>, Status> {
    command(request.meta, request.id, |id| {
        Ok(SignalCommand::Record {
            id: id.clone(),
            observation: observation_from_proto("observation", request.observation)?,
        })
    })
}

// --- decisions ----------------------------------------------------------------------------------

/// The proto form of a decision's content.
pub fn decision_content_to_proto(content: &DecisionContent) -> proto::DecisionContent {
    let names = |list: &[PrincipalId]| list.iter().map(|p| p.as_str().to_owned()).collect();
    proto::DecisionContent {
        kind: decision_kind_to_proto(content.kind) as i32,
        title: content.title.clone(),
        team: content.team.as_str().to_owned(),
        context: content.context.clone(),
        drivers: content.drivers.clone(),
        options: content.options.clone(),
        outcome: content.outcome.clone(),
        consequences: content.consequences.clone(),
        deciders: names(&content.deciders),
        consulted: names(&content.consulted),
        informed: names(&content.informed),
        subjects: content.subjects.iter().map(entity_ref_to_proto).collect(),
        supersedes: content
            .supersedes
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default(),
        visibility: visibility_to_proto(content.visibility) as i32,
    }
}

/// A decision's content the request must give.
pub fn decision_content_from_proto(
    field: &str,
    content: Option<proto::DecisionContent>,
) -> Result<DecisionContent, Status> {
    let content = content.ok_or_else(|| required(field))?;
    let at = |name: &str| format!("{field}.{name}");
    Ok(DecisionContent {
        kind: decision_kind_from_proto(&at("kind"), content.kind)?,
        title: content.title,
        team: team(&at("team"), content.team)?,
        context: content.context,
        drivers: content.drivers,
        options: content.options,
        outcome: content.outcome,
        consequences: content.consequences,
        deciders: principals(&at("deciders"), content.deciders)?,
        consulted: principals(&at("consulted"), content.consulted)?,
        informed: principals(&at("informed"), content.informed)?,
        subjects: content
            .subjects
            .into_iter()
            .enumerate()
            .map(|(index, subject)| {
                entity_ref_from_proto(&format!("{field}.subjects[{index}]"), Some(subject))
            })
            .collect::<Result<_, _>>()?,
        supersedes: optional_entity_id(&at("supersedes"), content.supersedes)?,
        visibility: visibility_from_proto(&at("visibility"), content.visibility)?,
    })
}

/// `ProposeDecision`.
pub fn propose_decision(
    request: proto::ProposeDecisionRequest,
) -> Result<EntityCommand<DecisionCommand>, Status> {
    command(request.meta, request.id, |id| {
        Ok(DecisionCommand::Propose {
            id: id.clone(),
            content: decision_content_from_proto("content", request.content)?,
        })
    })
}

/// `ReviseDecision`.
pub fn revise_decision(
    request: proto::ReviseDecisionRequest,
) -> Result<EntityCommand<DecisionCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(DecisionCommand::Revise(decision_content_from_proto(
            "content",
            request.content,
        )?))
    })
}

/// `AcceptDecision`.
pub fn accept_decision(
    request: proto::AcceptDecisionRequest,
) -> Result<EntityCommand<DecisionCommand>, Status> {
    command(request.meta, request.id, |_| Ok(DecisionCommand::Accept))
}

/// `RejectDecision`.
pub fn reject_decision(
    request: proto::RejectDecisionRequest,
) -> Result<EntityCommand<DecisionCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(DecisionCommand::Reject {
            reason: request.reason,
        })
    })
}

/// `DeprecateDecision`.
pub fn deprecate_decision(
    request: proto::DeprecateDecisionRequest,
) -> Result<EntityCommand<DecisionCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(DecisionCommand::Deprecate {
            reason: request.reason,
        })
    })
}

// --- opportunities ------------------------------------------------------------------------------

/// The proto form of an opportunity's draft.
pub fn opportunity_draft_to_proto(draft: &OpportunityDraft) -> proto::OpportunityDraft {
    proto::OpportunityDraft {
        title: draft.title.clone(),
        problem: draft.problem.clone(),
        owner: draft.owner.as_str().to_owned(),
        team: draft.team.as_str().to_owned(),
        size: size_to_proto(draft.size) as i32,
        outcome_tags: draft.outcome_tags.clone(),
        visibility: visibility_to_proto(draft.visibility) as i32,
    }
}

/// An opportunity's draft the request must give.
pub fn opportunity_draft_from_proto(
    field: &str,
    draft: Option<proto::OpportunityDraft>,
) -> Result<OpportunityDraft, Status> {
    let draft = draft.ok_or_else(|| required(field))?;
    let at = |name: &str| format!("{field}.{name}");
    Ok(OpportunityDraft {
        title: draft.title,
        problem: draft.problem,
        owner: principal(&at("owner"), draft.owner)?,
        team: team(&at("team"), draft.team)?,
        size: size_from_proto(&at("size"), draft.size)?,
        outcome_tags: draft.outcome_tags,
        visibility: visibility_from_proto(&at("visibility"), draft.visibility)?,
    })
}

/// `CreateOpportunity`.
pub fn create_opportunity(
    request: proto::CreateOpportunityRequest,
) -> Result<EntityCommand<OpportunityCommand>, Status> {
    command(request.meta, request.id, |id| {
        Ok(OpportunityCommand::Create {
            id: id.clone(),
            draft: opportunity_draft_from_proto("draft", request.draft)?,
        })
    })
}

/// `StartReview`.
pub fn start_review(
    request: proto::StartReviewRequest,
) -> Result<EntityCommand<OpportunityCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(OpportunityCommand::StartReview)
    })
}

/// `Triage`: exactly one of accept, duplicate, decline or snooze.
pub fn triage(request: proto::TriageRequest) -> Result<EntityCommand<OpportunityCommand>, Status> {
    use proto::triage_request::Outcome;
    command(request.meta, request.id, |_| {
        let triage = match request.outcome.ok_or_else(|| required("outcome"))? {
            Outcome::Accept(accept) => Triage::Accept {
                decision: optional_entity_id("accept.decision_id", accept.decision_id)?,
            },
            Outcome::Duplicate(duplicate) => Triage::Duplicate {
                canonical: entity_id("duplicate.canonical_id", duplicate.canonical_id)?,
            },
            Outcome::Decline(decline) => Triage::Decline {
                reason: decline.reason,
                decision: entity_id("decline.decision_id", decline.decision_id)?,
            },
            Outcome::Snooze(snooze) => Triage::Snooze {
                until: required_time("snooze.until_micros", snooze.until_micros)?,
            },
        };
        Ok(OpportunityCommand::Triage(triage))
    })
}

/// `Wake`.
pub fn wake_opportunity(
    request: proto::WakeOpportunityRequest,
) -> Result<EntityCommand<OpportunityCommand>, Status> {
    command(request.meta, request.id, |_| Ok(OpportunityCommand::Wake))
}

/// `StartWork`.
pub fn start_work(
    request: proto::StartWorkRequest,
) -> Result<EntityCommand<OpportunityCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(OpportunityCommand::StartWork)
    })
}

/// `Ship`.
pub fn ship_opportunity(
    request: proto::ShipOpportunityRequest,
) -> Result<EntityCommand<OpportunityCommand>, Status> {
    command(request.meta, request.id, |_| Ok(OpportunityCommand::Ship))
}

/// `ValidateOutcome`.
pub fn validate_outcome(
    request: proto::ValidateOutcomeRequest,
) -> Result<EntityCommand<OpportunityCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(OpportunityCommand::Validate {
            outcome: validation_from_proto("outcome", request.outcome)?,
            signal: optional_entity_id("signal_id", request.signal_id)?,
        })
    })
}

/// `Vote`: an empty voter is the actor; a weight of 0 counts as 1.
pub fn vote(request: proto::VoteRequest) -> Result<EntityCommand<OpportunityCommand>, Status> {
    let (meta, id) = address(request.meta, request.id)?;
    let principal = match request.voter.is_empty() {
        true => meta.actor.clone(),
        false => principal("voter", request.voter)?,
    };
    Ok(EntityCommand {
        meta,
        id,
        command: OpportunityCommand::Vote {
            principal,
            weight: request.weight.max(1),
            segment: non_empty(request.segment),
        },
    })
}

/// `Rate`.
pub fn rate(request: proto::RateRequest) -> Result<EntityCommand<OpportunityCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(OpportunityCommand::Rate {
            name: request.name,
            value: request.value,
            rationale: request.rationale,
        })
    })
}

/// `Rescore`.
pub fn rescore(
    request: proto::RescoreRequest,
) -> Result<EntityCommand<OpportunityCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(OpportunityCommand::Rescore)
    })
}

/// `AgeOut`: the sweep spans many streams, so it takes no version pin.
pub fn age_out(request: proto::AgeOutRequest) -> Result<AgeOutSweep, Status> {
    let meta = command_meta_from_proto(request.meta)?;
    if meta.expected_version.is_some() {
        return Err(invalid_argument(
            "meta.expected_version",
            "invalid meta.expected_version: the sweep spans many streams; it must be 0",
        ));
    }
    Ok(AgeOutSweep {
        meta,
        team: optional_team("team", request.team)?,
        page: page_from_proto(request.page)?,
    })
}

/// One opportunity the sweep aged out: its receipt and the rule (the reason is the recorded
/// event's).
pub fn aged_out_result_to_proto(
    receipt: &CommandReceipt,
    rule: &AgingRule,
) -> proto::AgedOutResult {
    let reason = receipt
        .events
        .iter()
        .find_map(|event| match event {
            Event::Opportunity(OpportunityEvent::AgedOut { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_default();
    proto::AgedOutResult {
        opportunity_id: receipt.entity.id.as_str().to_owned(),
        rule: rule.name.clone(),
        rule_version: rule.version,
        reason,
        receipt: Some(receipt_to_proto(receipt)),
    }
}

/// The proto form of a piece of evidence.
pub fn evidence_to_proto(evidence: &Evidence) -> proto::Evidence {
    proto::Evidence {
        reference: Some(entity_ref_to_proto(&evidence.reference)),
        observation: evidence.observation.as_ref().map(observation_to_proto),
        attached_at_micros: evidence.attached_at.0,
    }
}

/// The proto form of a rating.
pub fn rating_to_proto(name: &str, rating: &RatingRecord) -> proto::Rating {
    proto::Rating {
        name: name.to_owned(),
        value: rating.value,
        by: rating.by.as_str().to_owned(),
        at_micros: rating.at.0,
        rationale: rating.rationale.clone(),
    }
}

// --- scores and scoring models ------------------------------------------------------------------

/// The proto form of where a score input came from.
pub fn input_source_to_proto(source: &InputSource) -> proto::InputSource {
    use proto::input_source as p;
    let source = match source {
        InputSource::Rating { by, at } => p::Source::Rating(p::Rating {
            by: by.as_str().to_owned(),
            at_micros: at.0,
        }),
        InputSource::Signal {
            signal,
            observed_at,
        } => p::Source::Signal(p::Signal {
            signal_id: signal.as_str().to_owned(),
            observed_at_micros: observed_at.0,
        }),
        InputSource::Votes { voters } => p::Source::Votes(p::Votes { voters: *voters }),
        InputSource::Feedback { items } => p::Source::Feedback(p::Feedback { items: *items }),
        InputSource::Missing => p::Source::Missing(true),
    };
    proto::InputSource {
        source: Some(source),
    }
}

/// Where a score input came from, from its proto form.
pub fn input_source_from_proto(
    field: &str,
    source: Option<proto::InputSource>,
) -> Result<InputSource, Status> {
    use proto::input_source as p;
    let source = source
        .and_then(|source| source.source)
        .ok_or_else(|| required(field))?;
    Ok(match source {
        p::Source::Rating(rating) => InputSource::Rating {
            by: principal(&format!("{field}.rating.by"), rating.by)?,
            at: Time(rating.at_micros),
        },
        p::Source::Signal(signal) => InputSource::Signal {
            signal: entity_id(&format!("{field}.signal.signal_id"), signal.signal_id)?,
            observed_at: Time(signal.observed_at_micros),
        },
        p::Source::Votes(votes) => InputSource::Votes {
            voters: votes.voters,
        },
        p::Source::Feedback(feedback) => InputSource::Feedback {
            items: feedback.items,
        },
        p::Source::Missing(_) => InputSource::Missing,
    })
}

/// The proto form of a score snapshot.
pub fn score_snapshot_to_proto(snapshot: &ScoreSnapshot) -> proto::ScoreSnapshot {
    proto::ScoreSnapshot {
        model: snapshot.model.clone(),
        model_version: snapshot.model_version,
        model_digest: snapshot.model_digest.clone(),
        inputs: snapshot
            .inputs
            .iter()
            .map(|input| proto::ScoreInput {
                factor: input.factor.clone(),
                source: Some(input_source_to_proto(&input.source)),
                raw: input.raw,
                normalised: input.normalised,
                weight: input.weight,
                contribution: input.contribution,
            })
            .collect(),
        value: snapshot.value,
        computed_at_micros: snapshot.computed_at.0,
    }
}

/// A score snapshot from its proto form (clients checking an explanation).
pub fn score_snapshot_from_proto(
    field: &str,
    snapshot: Option<proto::ScoreSnapshot>,
) -> Result<ScoreSnapshot, Status> {
    let snapshot = snapshot.ok_or_else(|| required(field))?;
    Ok(ScoreSnapshot {
        model: snapshot.model,
        model_version: snapshot.model_version,
        model_digest: snapshot.model_digest,
        inputs: snapshot
            .inputs
            .into_iter()
            .enumerate()
            .map(|(index, input)| {
                Ok(ScoreInput {
                    source: input_source_from_proto(
                        &format!("{field}.inputs[{index}].source"),
                        input.source,
                    )?,
                    factor: input.factor,
                    raw: input.raw,
                    normalised: input.normalised,
                    weight: input.weight,
                    contribution: input.contribution,
                })
            })
            .collect::<Result<_, Status>>()?,
        value: snapshot.value,
        computed_at: Time(snapshot.computed_at_micros),
    })
}

fn statistic_to_proto(statistic: Statistic) -> proto::MetricStatistic {
    match statistic {
        Statistic::Value => proto::MetricStatistic::Value,
        Statistic::P50 => proto::MetricStatistic::P50,
        Statistic::P95 => proto::MetricStatistic::P95,
        Statistic::P99 => proto::MetricStatistic::P99,
    }
}

fn role_to_proto(role: Option<Role>) -> proto::FactorRole {
    match role {
        None => proto::FactorRole::Unspecified,
        Some(Role::Reach) => proto::FactorRole::Reach,
        Some(Role::Impact) => proto::FactorRole::Impact,
        Some(Role::Confidence) => proto::FactorRole::Confidence,
        Some(Role::Effort) => proto::FactorRole::Effort,
        Some(Role::Ease) => proto::FactorRole::Ease,
        Some(Role::BusinessValue) => proto::FactorRole::BusinessValue,
        Some(Role::TimeCriticality) => proto::FactorRole::TimeCriticality,
        Some(Role::RiskReduction) => proto::FactorRole::RiskReduction,
        Some(Role::JobSize) => proto::FactorRole::JobSize,
    }
}

fn formula_to_proto(formula: Formula) -> proto::ScoringFormula {
    match formula {
        Formula::Rice => proto::ScoringFormula::Rice,
        Formula::Ice => proto::ScoringFormula::Ice,
        Formula::Wsjf => proto::ScoringFormula::Wsjf,
        Formula::WeightedSum => proto::ScoringFormula::WeightedSum,
    }
}

fn factor_source_to_proto(source: &FactorSource) -> proto::FactorSource {
    use proto::factor_source as p;
    let source = match source {
        FactorSource::Rating { name } => p::Source::Rating(name.clone()),
        FactorSource::Checkbox { name } => p::Source::Checkbox(name.clone()),
        FactorSource::Percentage { name } => p::Source::Percentage(name.clone()),
        FactorSource::Metric { metric, statistic } => p::Source::Metric(p::Metric {
            metric: metric.clone(),
            statistic: statistic_to_proto(*statistic) as i32,
        }),
        FactorSource::Votes => p::Source::Votes(true),
        FactorSource::Voters => p::Source::Voters(true),
        FactorSource::Feedback => p::Source::Feedback(true),
    };
    proto::FactorSource {
        source: Some(source),
    }
}

fn normaliser_to_proto(normaliser: Normaliser) -> proto::Normaliser {
    use proto::normaliser as p;
    let normaliser = match normaliser {
        Normaliser::None => p::Normaliser::None(true),
        Normaliser::Linear { min, max } => p::Normaliser::Linear(p::Range { min, max }),
        Normaliser::InverseLinear { min, max } => {
            p::Normaliser::InverseLinear(p::Range { min, max })
        }
        Normaliser::Log => p::Normaliser::Log(true),
    };
    proto::Normaliser {
        normaliser: Some(normaliser),
    }
}

/// The proto form of a scoring model.
pub fn scoring_model_to_proto(model: &ScoringModel) -> proto::ScoringModel {
    proto::ScoringModel {
        name: model.name.clone(),
        version: model.version,
        formula: formula_to_proto(model.formula) as i32,
        factors: model
            .factors
            .iter()
            .map(|factor| proto::ScoringFactor {
                name: factor.name.clone(),
                source: Some(factor_source_to_proto(&factor.source)),
                normaliser: Some(normaliser_to_proto(factor.normaliser)),
                weight: factor.weight,
                default_value: factor.default,
                role: role_to_proto(factor.role) as i32,
            })
            .collect(),
        digest: model.digest.clone(),
    }
}

/// The proto form of an aging rule.
pub fn aging_rule_to_proto(rule: &AgingRule) -> proto::AgingRule {
    proto::AgingRule {
        name: rule.name.clone(),
        version: rule.version,
        no_evidence_days: rule.no_evidence_days,
        score_below: rule.score_below,
        statuses: rule
            .statuses
            .iter()
            .map(|status| opportunity_status_to_proto(*status) as i32)
            .collect(),
    }
}

// --- initiatives --------------------------------------------------------------------------------

/// The proto form of an initiative's draft.
pub fn initiative_draft_to_proto(draft: &InitiativeDraft) -> proto::InitiativeDraft {
    proto::InitiativeDraft {
        title: draft.title.clone(),
        goal: draft.goal.clone(),
        owners: draft.owners.iter().map(|p| p.as_str().to_owned()).collect(),
        team: draft.team.as_str().to_owned(),
        target: draft.target.clone(),
        scope: draft.scope.clone(),
        start_micros: draft.start.0,
        target_date_micros: draft.target_date.0,
        implements: draft
            .implements
            .iter()
            .map(|id| id.as_str().to_owned())
            .collect(),
        outcome_tags: draft.outcome_tags.clone(),
        visibility: visibility_to_proto(draft.visibility) as i32,
    }
}

/// An initiative's draft the request must give.
pub fn initiative_draft_from_proto(
    field: &str,
    draft: Option<proto::InitiativeDraft>,
) -> Result<InitiativeDraft, Status> {
    let draft = draft.ok_or_else(|| required(field))?;
    let at = |name: &str| format!("{field}.{name}");
    Ok(InitiativeDraft {
        title: draft.title,
        goal: draft.goal,
        owners: principals(&at("owners"), draft.owners)?,
        team: team(&at("team"), draft.team)?,
        target: draft.target,
        scope: draft.scope,
        start: required_time(&at("start_micros"), draft.start_micros)?,
        target_date: required_time(&at("target_date_micros"), draft.target_date_micros)?,
        implements: entity_ids(&at("implements"), draft.implements)?,
        outcome_tags: draft.outcome_tags,
        visibility: visibility_from_proto(&at("visibility"), draft.visibility)?,
    })
}

/// The proto form of a milestone (the signal that met it and when it closed come from the read
/// model: the aggregate does not keep them).
pub fn milestone_to_proto(milestone: &Milestone) -> proto::Milestone {
    proto::Milestone {
        name: milestone.name.clone(),
        due_micros: milestone.due.0,
        exit_criteria: milestone.exit_criteria.clone(),
        status: milestone_status_to_proto(milestone.status) as i32,
        signal_id: String::new(),
        closed_at_micros: 0,
    }
}

/// `CreateInitiative`.
pub fn create_initiative(
    request: proto::CreateInitiativeRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |id| {
        Ok(InitiativeCommand::Create {
            id: id.clone(),
            draft: initiative_draft_from_proto("draft", request.draft)?,
        })
    })
}

/// `Schedule`.
pub fn schedule_initiative(
    request: proto::ScheduleInitiativeRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(InitiativeCommand::Schedule)
    })
}

/// `Start`.
pub fn start_initiative(
    request: proto::StartInitiativeRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |_| Ok(InitiativeCommand::Start))
}

/// `FlagRisk`.
pub fn flag_initiative_risk(
    request: proto::FlagInitiativeRiskRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(InitiativeCommand::FlagRisk {
            reason: request.reason,
        })
    })
}

/// `ClearRisk`.
pub fn clear_initiative_risk(
    request: proto::ClearInitiativeRiskRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(InitiativeCommand::ClearRisk)
    })
}

/// `Complete`.
pub fn complete_initiative(
    request: proto::CompleteInitiativeRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(InitiativeCommand::Complete)
    })
}

/// `Cancel`.
pub fn cancel_initiative(
    request: proto::CancelInitiativeRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(InitiativeCommand::Cancel {
            reason: request.reason,
        })
    })
}

/// `Implement`.
pub fn implement_opportunity(
    request: proto::ImplementOpportunityRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(InitiativeCommand::Implement {
            opportunity: entity_id("opportunity_id", request.opportunity_id)?,
        })
    })
}

/// `AddMilestone`.
pub fn add_milestone(
    request: proto::AddMilestoneRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(InitiativeCommand::AddMilestone {
            name: request.name,
            due: required_time("due_micros", request.due_micros)?,
            exit_criteria: request.exit_criteria,
        })
    })
}

/// `MeetMilestone`.
pub fn meet_milestone(
    request: proto::MeetMilestoneRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(InitiativeCommand::MeetMilestone {
            name: request.name,
            signal: optional_entity_id("signal_id", request.signal_id)?,
        })
    })
}

/// `MissMilestone`.
pub fn miss_milestone(
    request: proto::MissMilestoneRequest,
) -> Result<EntityCommand<InitiativeCommand>, Status> {
    command(request.meta, request.id, |_| {
        Ok(InitiativeCommand::MissMilestone { name: request.name })
    })
}

#[cfg(test)]
mod tests;
