//! Every domain event as one [`Event`], its type name and schema version, its encoding (postcard,
//! with the personal part apart so the service can seal it), and the lineage edges it records.
//!
//! postcard is not self-describing: a published event type at a schema version is never edited.
//! A change is a new schema version, decoded beside the old one; `tests/golden.rs` decodes one
//! stored sample of every type and version.

use serde::{Serialize, de::DeserializeOwned};

use crate::common::{Edge, EntityId, EntityKind, EntityRef, Relation};
use crate::decision::DecisionEvent;
use crate::feedback::{FeedbackContent, FeedbackEvent, Personal};
use crate::initiative::InitiativeEvent;
use crate::opportunity::OpportunityEvent;
use crate::scoring::InputSource;
use crate::signal::SignalEvent;

/// The schema version every event type has today.
pub const SCHEMA_VERSION: u16 = 1;

/// Any domain event.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Of a feedback item.
    Feedback(FeedbackEvent),
    /// Of a signal.
    Signal(SignalEvent),
    /// Of an opportunity.
    Opportunity(OpportunityEvent),
    /// Of a decision.
    Decision(DecisionEvent),
    /// Of an initiative.
    Initiative(InitiativeEvent),
}

/// An event ready for the ledger: its type, schema version, clear part and personal part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedEvent {
    /// The type name (`opportunity.voted`), the envelope's event type.
    pub event_type: &'static str,
    /// The schema version.
    pub schema_version: u16,
    /// The clear part (postcard).
    pub clear: Vec<u8>,
    /// The personal part and its data subject, to be sealed under the subject's key.
    pub personal: Option<PersonalPart>,
}

/// The personal part of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonalPart {
    /// The data subject whose key seals it: the submitter, or `feedback:ID` when anonymous.
    pub subject: String,
    /// The encoded personal fields (postcard).
    pub bytes: Vec<u8>,
}

/// The personal part of a stored event, as the reader may see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredPersonal<'a> {
    /// The event has none.
    None,
    /// Opened.
    Open(&'a [u8]),
    /// Not shown to this reader.
    Withheld,
    /// Its key was destroyed.
    Erased,
}

/// Why a stored event could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The aggregate type is not a domain kind.
    #[error("unknown aggregate type {0:?}")]
    UnknownAggregate(String),
    /// The event type or schema version is unknown to this build.
    #[error("unknown event type {event_type:?} at schema version {schema_version}")]
    UnknownType {
        /// The type.
        event_type: String,
        /// The version.
        schema_version: u16,
    },
    /// The bytes do not decode as the type says.
    #[error("event type {event_type:?} does not decode: {reason}")]
    Malformed {
        /// The type.
        event_type: String,
        /// Why.
        reason: String,
    },
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("domain events always encode")
}

pub(crate) fn decode<T: DeserializeOwned>(event_type: &str, bytes: &[u8]) -> Result<T, CodecError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(CodecError::Malformed {
            event_type: event_type.to_owned(),
            reason: format!("{} trailing bytes", rest.len()),
        }),
        Err(error) => Err(CodecError::Malformed {
            event_type: event_type.to_owned(),
            reason: error.to_string(),
        }),
    }
}

impl Event {
    /// The kind of entity whose stream holds it.
    pub fn kind(&self) -> EntityKind {
        match self {
            Event::Feedback(_) => EntityKind::Feedback,
            Event::Signal(_) => EntityKind::Signal,
            Event::Opportunity(_) => EntityKind::Opportunity,
            Event::Decision(_) => EntityKind::Decision,
            Event::Initiative(_) => EntityKind::Initiative,
        }
    }

    /// The type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::Feedback(event) => match event {
                FeedbackEvent::Received { .. } => "feedback.received",
                FeedbackEvent::Linked { .. } => "feedback.linked",
                FeedbackEvent::Discarded { .. } => "feedback.discarded",
            },
            Event::Signal(SignalEvent::Observed { .. }) => "signal.observed",
            Event::Signal(SignalEvent::Sampled { .. }) => "signal.sampled",
            Event::Opportunity(event) => match event {
                OpportunityEvent::Created { .. } => "opportunity.created",
                OpportunityEvent::ReviewStarted => "opportunity.review_started",
                OpportunityEvent::Accepted { .. } => "opportunity.accepted",
                OpportunityEvent::MarkedDuplicate { .. } => "opportunity.marked_duplicate",
                OpportunityEvent::Declined { .. } => "opportunity.declined",
                OpportunityEvent::Snoozed { .. } => "opportunity.snoozed",
                OpportunityEvent::Woke => "opportunity.woke",
                OpportunityEvent::WorkStarted => "opportunity.work_started",
                OpportunityEvent::Shipped => "opportunity.shipped",
                OpportunityEvent::OutcomeJudged { .. } => "opportunity.outcome_judged",
                OpportunityEvent::EvidenceAttached(_) => "opportunity.evidence_attached",
                OpportunityEvent::Reopened { .. } => "opportunity.reopened",
                OpportunityEvent::Voted(_) => "opportunity.voted",
                OpportunityEvent::Rated { .. } => "opportunity.rated",
                OpportunityEvent::Scored(_) => "opportunity.scored",
                OpportunityEvent::AgedOut { .. } => "opportunity.aged_out",
                OpportunityEvent::DuplicateAbsorbed { .. } => "opportunity.duplicate_absorbed",
            },
            Event::Decision(event) => match event {
                DecisionEvent::Proposed { .. } => "decision.proposed",
                DecisionEvent::Revised(_) => "decision.revised",
                DecisionEvent::Accepted { .. } => "decision.accepted",
                DecisionEvent::Rejected { .. } => "decision.rejected",
                DecisionEvent::Deprecated { .. } => "decision.deprecated",
                DecisionEvent::Superseded { .. } => "decision.superseded",
            },
            Event::Initiative(event) => match event {
                InitiativeEvent::Created { .. } => "initiative.created",
                InitiativeEvent::Scheduled => "initiative.scheduled",
                InitiativeEvent::Started => "initiative.started",
                InitiativeEvent::RiskFlagged { .. } => "initiative.risk_flagged",
                InitiativeEvent::RiskCleared => "initiative.risk_cleared",
                InitiativeEvent::Completed => "initiative.completed",
                InitiativeEvent::Cancelled { .. } => "initiative.cancelled",
                InitiativeEvent::Implements { .. } => "initiative.implements",
                InitiativeEvent::MilestoneAdded { .. } => "initiative.milestone_added",
                InitiativeEvent::MilestoneMet { .. } => "initiative.milestone_met",
                InitiativeEvent::MilestoneMissed { .. } => "initiative.milestone_missed",
            },
        }
    }

    /// Encodes the event. The clear part is the postcard encoding of the aggregate's event enum;
    /// the personal part (a feedback item's text and submitter) is encoded apart.
    pub fn encode(&self) -> EncodedEvent {
        let event_type = self.event_type();
        let (clear, personal) = match self {
            Event::Feedback(event) => {
                let personal = match event {
                    FeedbackEvent::Received { id, content, .. } => match content {
                        Personal::Present(content) => Some(PersonalPart {
                            subject: content
                                .submitter
                                .as_ref()
                                .map(|s| s.as_str().to_owned())
                                .unwrap_or_else(|| format!("feedback:{id}")),
                            bytes: encode(content),
                        }),
                        // An event read back without its personal part is never re-encoded
                        // for the ledger; encoding it records no personal part.
                        Personal::Withheld | Personal::Erased => None,
                    },
                    _ => None,
                };
                (encode(event), personal)
            }
            Event::Signal(event) => (encode(event), None),
            Event::Opportunity(event) => (encode(event), None),
            Event::Decision(event) => (encode(event), None),
            Event::Initiative(event) => (encode(event), None),
        };
        EncodedEvent {
            event_type,
            schema_version: SCHEMA_VERSION,
            clear,
            personal,
        }
    }

    /// Decodes a stored event of a stream of `aggregate_type`.
    pub fn decode(
        aggregate_type: &str,
        event_type: &str,
        schema_version: u16,
        clear: &[u8],
        personal: StoredPersonal<'_>,
    ) -> Result<Event, CodecError> {
        let kind = EntityKind::parse(aggregate_type)
            .ok_or_else(|| CodecError::UnknownAggregate(aggregate_type.to_owned()))?;
        if schema_version != SCHEMA_VERSION {
            return Err(CodecError::UnknownType {
                event_type: event_type.to_owned(),
                schema_version,
            });
        }
        let event = match kind {
            EntityKind::Feedback => {
                let mut event: FeedbackEvent = decode(event_type, clear)?;
                if let FeedbackEvent::Received { content, .. } = &mut event {
                    *content = match personal {
                        StoredPersonal::Open(bytes) => {
                            Personal::Present(decode::<FeedbackContent>(event_type, bytes)?)
                        }
                        StoredPersonal::Erased => Personal::Erased,
                        StoredPersonal::Withheld | StoredPersonal::None => Personal::Withheld,
                    };
                }
                Event::Feedback(event)
            }
            EntityKind::Signal => Event::Signal(decode(event_type, clear)?),
            EntityKind::Opportunity => Event::Opportunity(decode(event_type, clear)?),
            EntityKind::Decision => Event::Decision(decode(event_type, clear)?),
            EntityKind::Initiative => Event::Initiative(decode(event_type, clear)?),
        };
        if event.event_type() != event_type {
            return Err(CodecError::Malformed {
                event_type: event_type.to_owned(),
                reason: format!("the payload is a {}", event.event_type()),
            });
        }
        Ok(event)
    }

    /// The lineage edges this event records, for an event of the entity `own`.
    pub fn edges(&self, own: &EntityRef) -> Vec<Edge> {
        let edge = |from: EntityRef, relation: Relation, to: EntityRef| Edge { from, relation, to };
        let entity = |kind: EntityKind, id: &EntityId| EntityRef::new(kind, id.clone());
        let mut edges = Vec::new();
        match self {
            Event::Feedback(FeedbackEvent::Linked { opportunity }) => edges.push(edge(
                own.clone(),
                Relation::EvidenceFor,
                entity(EntityKind::Opportunity, opportunity),
            )),
            Event::Feedback(_) | Event::Signal(_) => {}
            Event::Opportunity(event) => match event {
                OpportunityEvent::EvidenceAttached(evidence) => edges.push(edge(
                    evidence.reference.clone(),
                    Relation::EvidenceFor,
                    own.clone(),
                )),
                OpportunityEvent::DuplicateAbsorbed { evidence, .. } => {
                    for piece in evidence {
                        edges.push(edge(
                            piece.reference.clone(),
                            Relation::EvidenceFor,
                            own.clone(),
                        ));
                    }
                }
                OpportunityEvent::MarkedDuplicate { canonical, .. } => edges.push(edge(
                    own.clone(),
                    Relation::DuplicateOf,
                    entity(EntityKind::Opportunity, canonical),
                )),
                OpportunityEvent::Accepted {
                    decision: Some(decision),
                }
                | OpportunityEvent::Declined { decision, .. } => edges.push(edge(
                    own.clone(),
                    Relation::DecidedBy,
                    entity(EntityKind::Decision, decision),
                )),
                OpportunityEvent::OutcomeJudged {
                    signal: Some(signal),
                    ..
                } => edges.push(edge(
                    entity(EntityKind::Signal, signal),
                    Relation::Verifies,
                    own.clone(),
                )),
                OpportunityEvent::Scored(snapshot) => {
                    for input in &snapshot.inputs {
                        if let InputSource::Signal { signal, .. } = &input.source {
                            edges.push(edge(
                                own.clone(),
                                Relation::DerivedFrom,
                                entity(EntityKind::Signal, signal),
                            ));
                        }
                    }
                }
                _ => {}
            },
            Event::Decision(event) => match event {
                DecisionEvent::Proposed { content, .. } | DecisionEvent::Revised(content) => {
                    for subject in &content.subjects {
                        edges.push(edge(subject.clone(), Relation::DecidedBy, own.clone()));
                    }
                    if let Some(old) = &content.supersedes {
                        edges.push(edge(
                            own.clone(),
                            Relation::Supersedes,
                            entity(EntityKind::Decision, old),
                        ));
                    }
                }
                DecisionEvent::Superseded { by } => edges.push(edge(
                    entity(EntityKind::Decision, by),
                    Relation::Supersedes,
                    own.clone(),
                )),
                _ => {}
            },
            Event::Initiative(event) => match event {
                InitiativeEvent::Created { draft, .. } => {
                    for opportunity in &draft.implements {
                        edges.push(edge(
                            own.clone(),
                            Relation::Implements,
                            entity(EntityKind::Opportunity, opportunity),
                        ));
                    }
                }
                InitiativeEvent::Implements { opportunity } => edges.push(edge(
                    own.clone(),
                    Relation::Implements,
                    entity(EntityKind::Opportunity, opportunity),
                )),
                InitiativeEvent::MilestoneMet {
                    signal: Some(signal),
                    ..
                } => edges.push(edge(
                    entity(EntityKind::Signal, signal),
                    Relation::Verifies,
                    own.clone(),
                )),
                _ => {}
            },
        }
        edges.sort();
        edges.dedup();
        edges
    }
}
