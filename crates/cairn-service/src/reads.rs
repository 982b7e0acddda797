//! The read side: answers from the projections, each stamped with the ledger position it
//! reflects and the latest signed checkpoint, after waiting (up to the caller's deadline) for the
//! position the caller asked to see at least. Composite answers (why is this ranked here, what
//! happened to my feedback, the chain of events behind an entity) join the projections with the
//! records in the ledger.

use std::sync::Arc;

use cairn_domain::feedback::{FeedbackContent, Personal};
use cairn_domain::scoring::ScoreSnapshot;
use cairn_domain::{EntityId, EntityKind, EntityRef, Relation};
use cairn_ledger::{Position, SignedCheckpoint, TenantId};
use cairn_projections::{
    AtPosition, DecisionView, Direction, EdgeView, FeedbackView, Graph, InitiativeView,
    OpportunityView, ProjectionError, Projections, SignalView,
};
use cairn_store::{EventStore, KeyStore};

use crate::error::ServiceError;
use crate::history::{self, HistoryEntry};
use crate::ledger::Ledger;

/// How a caller wants an answer.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// Answer as of this position (it is waited for if not yet applied); `None`: the newest.
    pub as_of: Option<Position>,
    /// Wait until at least this position is reflected (read your own writes).
    pub at_least: Option<Position>,
    /// Give up waiting at this instant (DEADLINE_EXCEEDED).
    pub deadline: tokio::time::Instant,
    /// Open personal data (feedback text and submitter) where the answer has some.
    pub include_personal: bool,
}

/// What an answer reflects.
#[derive(Clone, Debug, PartialEq)]
pub struct Stamp {
    /// Every record up to this position, and none after it, is reflected.
    pub position: Position,
    /// The newest signed checkpoint (it may lag behind `position`; a consistency proof links
    /// the two).
    pub checkpoint: Option<SignedCheckpoint>,
}

/// An answer and its stamp.
#[derive(Clone, Debug, PartialEq)]
pub struct Stamped<T> {
    /// The answer.
    pub value: T,
    /// What it reflects.
    pub stamp: Stamp,
}

/// Why an opportunity is ranked where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct RankExplanation {
    /// The opportunity.
    pub opportunity: OpportunityView,
    /// Its rank among the ranked opportunities (`None` when not ranked).
    pub rank: Option<u64>,
    /// The latest score snapshot and the record that holds it (who, when, policy bundle).
    pub snapshot: Option<(HistoryEntry, ScoreSnapshot)>,
    /// The evidence behind it (`evidence_for` edges).
    pub evidence: Vec<EdgeView>,
    /// The signals among the evidence.
    pub signals: Vec<SignalView>,
}

/// One opportunity a feedback item led to, and what came of it.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackOutcome {
    /// The opportunity the item is evidence for.
    pub opportunity: OpportunityView,
    /// Its canonical opportunity, when it was marked a duplicate.
    pub canonical: Option<OpportunityView>,
    /// Decisions on either (accepted, declined, superseded...).
    pub decisions: Vec<DecisionView>,
    /// Initiatives implementing either.
    pub initiatives: Vec<InitiativeView>,
}

/// What happened to a feedback item.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackStory {
    /// The item.
    pub feedback: FeedbackView,
    /// Its text and submitter, as this reader may see them.
    pub content: Personal<FeedbackContent>,
    /// Where it led.
    pub outcomes: Vec<FeedbackOutcome>,
}

/// The read side over a ledger and its projections.
pub struct Reads<S> {
    ledger: Arc<Ledger<S>>,
    projections: Arc<Projections>,
}

impl<S: EventStore + KeyStore> Reads<S> {
    /// Reads over `ledger` and `projections` (which follow it).
    pub fn new(ledger: Arc<Ledger<S>>, projections: Arc<Projections>) -> Reads<S> {
        Reads {
            ledger,
            projections,
        }
    }

    /// The projections.
    pub fn projections(&self) -> &Arc<Projections> {
        &self.projections
    }

    /// Runs a projection query (blocking, so on the blocking pool) after waiting for what the
    /// caller asked to see, and stamps the answer.
    pub async fn query<T: Send + 'static>(
        &self,
        options: &ReadOptions,
        query: impl FnOnce(&Projections, Option<Position>) -> Result<AtPosition<T>, ProjectionError>
        + Send
        + 'static,
    ) -> Result<Stamped<T>, ServiceError> {
        let as_of = self.prepare(options).await?;
        let projections = Arc::clone(&self.projections);
        let answer = tokio::task::spawn_blocking(move || query(&projections, as_of))
            .await
            .map_err(|e| ServiceError::Internal(format!("a query thread failed: {e}")))??;
        self.stamped(answer).await
    }

    async fn prepare(&self, options: &ReadOptions) -> Result<Option<Position>, ServiceError> {
        let wanted = options.at_least.max(options.as_of);
        if let Some(wanted) = wanted
            && wanted > self.projections.applied()
        {
            let mut head = self.ledger.store().head().await?.position;
            if wanted > head {
                // On a ledger several nodes share, another node may have recorded it already.
                if self.ledger.store().sync().await? {
                    head = self.ledger.store().head().await?.position;
                }
            }
            if wanted > head {
                return Err(ServiceError::Store(cairn_store::StoreError::OutOfRange(
                    format!("position {wanted} is beyond the ledger's head {head}"),
                )));
            }
            self.projections.wait_for(wanted, options.deadline).await?;
        }
        Ok(options.as_of)
    }

    async fn stamped<T>(&self, answer: AtPosition<T>) -> Result<Stamped<T>, ServiceError> {
        Ok(Stamped {
            value: answer.value,
            stamp: Stamp {
                position: answer.position,
                checkpoint: self.ledger.store().latest_checkpoint().await?,
            },
        })
    }

    /// A feedback item with its content as this reader may see it.
    pub async fn feedback(
        &self,
        tenant: &TenantId,
        id: &EntityId,
        options: &ReadOptions,
    ) -> Result<Stamped<(FeedbackView, Personal<FeedbackContent>)>, ServiceError> {
        let (tenant_text, id_text) = (tenant.as_str().to_owned(), id.as_str().to_owned());
        let answer = self
            .query(options, move |p, as_of| {
                p.feedback(&tenant_text, &id_text, as_of)
            })
            .await?;
        let view = answer
            .value
            .ok_or_else(|| ServiceError::NotFound(format!("no feedback item {id}")))?;
        let content = history::feedback_content(
            &self.ledger,
            view.received_position,
            options.include_personal,
        )
        .await?;
        Ok(Stamped {
            value: (view, content),
            stamp: answer.stamp,
        })
    }

    /// Why an opportunity is ranked where it is: its rank, its latest score snapshot with every
    /// input and the record that holds it, and the evidence and signals behind it.
    pub async fn explain_rank(
        &self,
        tenant: &TenantId,
        id: &EntityId,
        options: &ReadOptions,
    ) -> Result<Stamped<RankExplanation>, ServiceError> {
        let (t, i) = (tenant.as_str().to_owned(), id.as_str().to_owned());
        let answer = self
            .query(options, move |p, as_of| {
                let at = p.resolve(as_of)?;
                let view = p.opportunity(&t, &i, Some(at))?.value;
                let rank = p.rank_of(&t, &i, Some(at))?.value;
                let entity = EntityRef::new(
                    EntityKind::Opportunity,
                    EntityId::new(i.clone()).expect("valid id"),
                );
                let edges = p.edges(&t, &entity, Some(at))?.value;
                let evidence: Vec<EdgeView> = edges
                    .into_iter()
                    .filter(|e| e.edge.relation == Relation::EvidenceFor && e.edge.to == entity)
                    .collect();
                let mut signals = Vec::new();
                for e in &evidence {
                    if e.edge.from.kind == EntityKind::Signal
                        && let Some(signal) = p.signal(&t, e.edge.from.id.as_str(), Some(at))?.value
                    {
                        signals.push(signal);
                    }
                }
                Ok(AtPosition {
                    value: (view, rank, evidence, signals),
                    position: at,
                })
            })
            .await?;
        let (view, rank, evidence, signals) = answer.value;
        let view = view.ok_or_else(|| ServiceError::NotFound(format!("no opportunity {id}")))?;
        let snapshot = match view.score_position {
            Some(position) => Some(history::snapshot_at(&**self.ledger.store(), position).await?),
            None => None,
        };
        Ok(Stamped {
            value: RankExplanation {
                opportunity: view,
                rank,
                snapshot,
                evidence,
                signals,
            },
            stamp: answer.stamp,
        })
    }

    /// What happened to a feedback item: the opportunities it is evidence for (following a
    /// duplicate to its canonical opportunity), their decisions and initiatives.
    pub async fn what_happened(
        &self,
        tenant: &TenantId,
        id: &EntityId,
        options: &ReadOptions,
    ) -> Result<Stamped<FeedbackStory>, ServiceError> {
        let (t, i) = (tenant.as_str().to_owned(), id.as_str().to_owned());
        let answer = self
            .query(options, move |p, as_of| {
                let at = p.resolve(as_of)?;
                let Some(feedback) = p.feedback(&t, &i, Some(at))?.value else {
                    return Ok(AtPosition {
                        value: None,
                        position: at,
                    });
                };
                let mut outcomes = Vec::new();
                for opportunity_id in &feedback.opportunities {
                    let Some(opportunity) =
                        p.opportunity(&t, opportunity_id.as_str(), Some(at))?.value
                    else {
                        continue;
                    };
                    let canonical = match &opportunity.canonical {
                        Some(c) => p.opportunity(&t, c.as_str(), Some(at))?.value,
                        None => None,
                    };
                    let mut decisions = Vec::new();
                    let mut initiatives = Vec::new();
                    for view in std::iter::once(&opportunity).chain(canonical.as_ref()) {
                        let entity = EntityRef::new(EntityKind::Opportunity, view.id.clone());
                        for edge in p.edges(&t, &entity, Some(at))?.value {
                            match (edge.edge.relation, &edge.edge.from, &edge.edge.to) {
                                (Relation::DecidedBy, from, to) if from == &entity => {
                                    if let Some(d) = p.decision(&t, to.id.as_str(), Some(at))?.value
                                        && !decisions.iter().any(|x: &DecisionView| x.id == d.id)
                                    {
                                        decisions.push(d);
                                    }
                                }
                                (Relation::Implements, from, to) if to == &entity => {
                                    if let Some(v) =
                                        p.initiative(&t, from.id.as_str(), Some(at))?.value
                                        && !initiatives
                                            .iter()
                                            .any(|x: &InitiativeView| x.id == v.id)
                                    {
                                        initiatives.push(v);
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    outcomes.push(FeedbackOutcome {
                        opportunity,
                        canonical,
                        decisions,
                        initiatives,
                    });
                }
                Ok(AtPosition {
                    value: Some((feedback, outcomes)),
                    position: at,
                })
            })
            .await?;
        let (feedback, outcomes) = answer
            .value
            .ok_or_else(|| ServiceError::NotFound(format!("no feedback item {id}")))?;
        let content = history::feedback_content(
            &self.ledger,
            feedback.received_position,
            options.include_personal,
        )
        .await?;
        Ok(Stamped {
            value: FeedbackStory {
                feedback,
                content,
                outcomes,
            },
            stamp: answer.stamp,
        })
    }

    /// The chain of records behind an entity: its own and those of everything upstream of it to
    /// `depth`, in ledger order, up to the answer's position.
    pub async fn why(
        &self,
        tenant: &TenantId,
        entity: &EntityRef,
        depth: usize,
        max_nodes: usize,
        options: &ReadOptions,
    ) -> Result<Stamped<(Graph, Vec<(EntityRef, HistoryEntry)>)>, ServiceError> {
        let (t, root) = (tenant.as_str().to_owned(), entity.clone());
        let graph = self
            .query(options, move |p, as_of| {
                p.graph(&t, &root, Direction::Upstream, depth, max_nodes, as_of)
            })
            .await?;
        let mut chain = Vec::new();
        for (node, _) in &graph.value.nodes {
            for entry in
                history::history(&**self.ledger.store(), tenant, node, graph.stamp.position).await?
            {
                chain.push((node.clone(), entry));
            }
        }
        chain.sort_by_key(|(_, entry)| entry.position);
        Ok(Stamped {
            value: (graph.value, chain),
            stamp: graph.stamp,
        })
    }
}
