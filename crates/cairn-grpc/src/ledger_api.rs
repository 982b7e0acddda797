//! `cairn.v1.LedgerService`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_ledger::{Position, StreamVersion};
use cairn_service::{AppendCommand, Ledger};
use cairn_store::{EventStore, KeyStore, limits as store_limits};
use futures::{Stream, StreamExt};
use tokio::sync::{Semaphore, watch};
use tonic::{Request, Response, Status};

use crate::access::Access;
use crate::convert::{
    checkpoint_to_proto, draft_from_proto, expected_from_proto, record_to_proto, stream_from_proto,
};
use crate::error::{
    RESUME_FROM_METADATA, invalid_argument, status_from_service, status_from_store,
};
use crate::proto;
use crate::proto::ledger_service_server::LedgerService;
use crate::server::ServerLimits;

/// The ledger service over a store.
pub struct LedgerApi<S> {
    ledger: Arc<Ledger<S>>,
    access: Arc<Access<S>>,
    limits: ServerLimits,
    subscriptions: Arc<Semaphore>,
    shutting_down: watch::Receiver<bool>,
}

impl<S: EventStore + KeyStore> LedgerApi<S> {
    /// Serves `ledger` within `limits`; open subscriptions end when `shutting_down` turns true.
    pub(crate) fn new(
        ledger: Arc<Ledger<S>>,
        access: Arc<Access<S>>,
        limits: ServerLimits,
        shutting_down: watch::Receiver<bool>,
    ) -> LedgerApi<S> {
        LedgerApi {
            ledger,
            access,
            subscriptions: Arc::new(Semaphore::new(limits.subscriptions_max)),
            limits,
            shutting_down,
        }
    }

    fn page_size(&self, field: &str, limit: u32) -> Result<usize, Status> {
        match limit as usize {
            0 => Ok(self.limits.page_size_default),
            n if n > self.limits.page_size_max => Err(Status::resource_exhausted(format!(
                "{field} is {n}, over the limit of {}",
                self.limits.page_size_max
            ))),
            n => Ok(n),
        }
    }

    async fn open_all(
        &self,
        records: Vec<Arc<cairn_ledger::Record>>,
        include_personal: bool,
    ) -> Result<Vec<proto::Record>, Status> {
        let mut opened = Vec::with_capacity(records.len());
        for record in records {
            let record = self
                .ledger
                .open(record, include_personal)
                .await
                .map_err(|error| status_from_service(&error))?;
            opened.push(record_to_proto(record));
        }
        Ok(opened)
    }

    /// The durable head now; a read taken after it reflects at least this position.
    fn head_position(&self) -> u64 {
        self.ledger.store().watch_head().borrow().0
    }

    /// Runs a unary call within the server's request deadline. tonic's own server timeout answers
    /// CANCELLED; a deadline the server sets is DEADLINE_EXCEEDED.
    async fn within_deadline<T>(
        &self,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        deadline(Duration::from_millis(self.limits.request_deadline_ms), call).await
    }

    async fn checkpoint_size(&self, requested: u64) -> Result<u64, Status> {
        if requested != 0 {
            return Ok(requested);
        }
        let latest = self
            .ledger
            .store()
            .latest_checkpoint()
            .await
            .map_err(|error| status_from_store(&error))?;
        latest
            .map(|checkpoint| checkpoint.checkpoint.tree_size)
            .ok_or_else(|| {
                Status::failed_precondition("no checkpoint has been signed yet; pass a tree size")
            })
    }
}

/// A subscription as served: records until it fails or the server shuts down.
struct SubscribeState {
    records: SubscribeStream,
    shutting_down: watch::Receiver<bool>,
    /// The first position not yet sent: where the client resumes.
    next: u64,
    ended: bool,
}

/// The tenant a stream reference names (empty when there is none: refused as INVALID_ARGUMENT).
fn stream_tenant(stream: Option<&proto::StreamRef>) -> String {
    stream
        .map(|stream| stream.tenant.clone())
        .unwrap_or_default()
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<proto::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: EventStore + KeyStore> LedgerService for LedgerApi<S> {
    async fn append(
        &self,
        request: Request<proto::AppendRequest>,
    ) -> Result<Response<proto::AppendResponse>, Status> {
        let tenant = stream_tenant(request.get_ref().stream.as_ref());
        let caller = self
            .access
            .authorize_in(&request, "stream.tenant", &tenant)
            .await?;
        let acting_for = request.get_ref().actor.clone();
        if !acting_for.is_empty() && acting_for != caller.principal {
            self.access
                .authorize_other_actor(&request, &caller, &tenant)
                .await?;
        }
        self.within_deadline(async move {
            let mut request = request.into_inner();
            if request.events.len() > store_limits::APPEND_EVENTS_MAX {
                return Err(Status::resource_exhausted(format!(
                    "events is {}, over the limit of {} per append",
                    request.events.len(),
                    store_limits::APPEND_EVENTS_MAX
                )));
            }
            let stream = stream_from_proto("stream", request.stream)?;
            // The feedback loop's streams are written only through its services, which enforce
            // the domain's rules; a raw event there would bypass them and could stop the read
            // models at a record they cannot decode.
            if cairn_domain::EntityKind::parse(&stream.aggregate_type).is_some() {
                return Err(invalid_argument(
                    "stream.aggregate_type",
                    format!(
                        "{:?} is a feedback-loop aggregate type, written only through its service \
                         (FeedbackService, PrioritizationService, ...); raw appends use other types",
                        stream.aggregate_type
                    ),
                ));
            }
            // Governance streams are written only by the server (activations, grants, denials),
            // so that no caller can forge them.
            if cairn_domain::governance::AGGREGATE_TYPES.contains(&stream.aggregate_type.as_str()) {
                return Err(invalid_argument(
                    "stream.aggregate_type",
                    format!(
                        "{:?} is a governance aggregate type, written only by the server \
                         (PolicyService records grants; the server records activations and \
                         denials)",
                        stream.aggregate_type
                    ),
                ));
            }
            if request.actor.is_empty() {
                request.actor = caller.principal;
            }
            let events = request
                .events
                .into_iter()
                .enumerate()
                .map(|(index, event)| draft_from_proto(index, event))
                .collect::<Result<Vec<_>, Status>>()?;
            let command = AppendCommand {
                stream,
                expected: expected_from_proto(request.expected),
                actor: request.actor,
                events,
            };
            let (result, ids) = self
                .ledger
                .append(command)
                .await
                .map_err(|error| status_from_service(&error))?;
            Ok(Response::new(proto::AppendResponse {
                first_position: result.first_position.0,
                last_position: result.last_position.0,
                last_version: result.last_version.0,
                deduplicated: result.deduplicated,
                event_ids: ids.into_iter().map(|id| id.0.to_vec()).collect(),
            }))
        })
        .await
    }

    async fn read_stream(
        &self,
        mut request: Request<proto::ReadStreamRequest>,
    ) -> Result<Response<proto::ReadResponse>, Status> {
        let tenant = stream_tenant(request.get_ref().stream.as_ref());
        let caller = self
            .access
            .authorize_in(&request, "stream.tenant", &tenant)
            .await?;
        self.access.redact_unless_allowed(
            &caller,
            &tenant,
            Some(&mut request.get_mut().include_personal),
        );
        self.within_deadline(async move {
            let request = request.into_inner();
            let stream = stream_from_proto("stream", request.stream)?;
            let limit = self.page_size("limit", request.limit)?;
            let head_position = self.head_position();
            let records = self
                .ledger
                .store()
                .read_stream(&stream, StreamVersion(request.from_version), limit)
                .await
                .map_err(|error| status_from_store(&error))?;
            let head_position =
                head_position.max(records.last().map_or(0, |record| record.position().0));
            Ok(Response::new(proto::ReadResponse {
                records: self.open_all(records, request.include_personal).await?,
                head_position,
            }))
        })
        .await
    }

    async fn read_all(
        &self,
        mut request: Request<proto::ReadAllRequest>,
    ) -> Result<Response<proto::ReadResponse>, Status> {
        let caller = self.access.authorize(&request, "*").await?;
        self.access.redact_unless_allowed(
            &caller,
            "*",
            Some(&mut request.get_mut().include_personal),
        );
        self.within_deadline(async move {
            let request = request.into_inner();
            let limit = self.page_size("limit", request.limit)?;
            let head_position = self.head_position();
            let records = self
                .ledger
                .store()
                .read_all(Position(request.from_position), limit)
                .await
                .map_err(|error| status_from_store(&error))?;
            let head_position =
                head_position.max(records.last().map_or(0, |record| record.position().0));
            Ok(Response::new(proto::ReadResponse {
                records: self.open_all(records, request.include_personal).await?,
                head_position,
            }))
        })
        .await
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        mut request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<SubscribeStream>, Status> {
        let caller = self.access.authorize(&request, "*").await?;
        self.access.redact_unless_allowed(
            &caller,
            "*",
            Some(&mut request.get_mut().include_personal),
        );
        let request = request.into_inner();
        let permit = Arc::clone(&self.subscriptions)
            .try_acquire_owned()
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "the server already serves {} subscriptions, its limit",
                    self.limits.subscriptions_max
                ))
            })?;
        let subscription = cairn_store::subscribe(
            Arc::clone(self.ledger.store()),
            Position(request.from_position),
            self.limits.subscription_buffer_records,
        );
        let ledger = Arc::clone(&self.ledger);
        let include_personal = request.include_personal;
        let records = subscription.then(move |item| {
            let ledger = Arc::clone(&ledger);
            // The permit lives as long as the stream: one slot per open subscription.
            let _permit = &permit;
            async move {
                let record = item.map_err(|error| status_from_store(&error))?;
                let opened = ledger
                    .open(record, include_personal)
                    .await
                    .map_err(|error| status_from_service(&error))?;
                Ok(proto::SubscribeResponse {
                    record: Some(record_to_proto(opened)),
                })
            }
        });
        let state = SubscribeState {
            records: Box::pin(records),
            shutting_down: self.shutting_down.clone(),
            next: request.from_position.max(1),
            ended: false,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            if state.ended {
                return None;
            }
            let item = tokio::select! {
                // Shutdown first, so a subscriber that keeps the stream busy still lets it end.
                biased;
                _ = state.shutting_down.wait_for(|shutting_down| *shutting_down) => None,
                item = state.records.next() => Some(item?),
            };
            let item = match item {
                None => {
                    state.ended = true;
                    let mut status = Status::unavailable(format!(
                        "the server is shutting down; resume from position {}",
                        state.next
                    ));
                    status
                        .metadata_mut()
                        .insert(RESUME_FROM_METADATA, state.next.into());
                    Err(status)
                }
                Some(Ok(response)) => {
                    state.next = response
                        .record
                        .as_ref()
                        .map_or(state.next, |record| record.position + 1);
                    Ok(response)
                }
                Some(Err(status)) => {
                    state.ended = true;
                    Err(status)
                }
            };
            Some((item, state))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_log_info(
        &self,
        request: Request<proto::GetLogInfoRequest>,
    ) -> Result<Response<proto::LogInfo>, Status> {
        self.access.authorize(&request, "*").await?;
        self.within_deadline(async move {
            let head = self
                .ledger
                .store()
                .head()
                .await
                .map_err(|error| status_from_store(&error))?;
            let identity = self.ledger.identity();
            Ok(Response::new(proto::LogInfo {
                log_id: identity.log_id.0.to_vec(),
                public_key: identity.public_key().0.to_vec(),
                head_position: head.position.0,
                head_root: head.root.0.to_vec(),
                latest_checkpoint: head.checkpoint.as_ref().map(checkpoint_to_proto),
                limits: Some(self.limits.to_proto()),
            }))
        })
        .await
    }

    async fn get_checkpoint(
        &self,
        request: Request<proto::GetCheckpointRequest>,
    ) -> Result<Response<proto::Checkpoint>, Status> {
        self.access.authorize(&request, "*").await?;
        self.within_deadline(async move {
            let latest = self
                .ledger
                .store()
                .latest_checkpoint()
                .await
                .map_err(|error| status_from_store(&error))?
                .ok_or_else(|| Status::not_found("no checkpoint has been signed yet"))?;
            Ok(Response::new(checkpoint_to_proto(&latest)))
        })
        .await
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<proto::GetInclusionProofRequest>,
    ) -> Result<Response<proto::InclusionProof>, Status> {
        self.access.authorize(&request, "*").await?;
        self.within_deadline(async move {
            let request = request.into_inner();
            let tree_size = self.checkpoint_size(request.tree_size).await?;
            let store = self.ledger.store();
            let position = Position(request.position);
            let proof = store
                .inclusion_proof(position, tree_size)
                .await
                .map_err(|error| status_from_store(&error))?;
            let record = store
                .read_all(position, 1)
                .await
                .map_err(|error| status_from_store(&error))?
                .into_iter()
                .next()
                .ok_or_else(|| Status::out_of_range(format!("no record at position {position}")))?;
            let root = store
                .root_at(tree_size)
                .await
                .map_err(|error| status_from_store(&error))?;
            Ok(Response::new(proto::InclusionProof {
                position: position.0,
                tree_size,
                path: proof.path.iter().map(|hash| hash.0.to_vec()).collect(),
                leaf_hash: record.leaf_hash().0.to_vec(),
                root: root.0.to_vec(),
            }))
        })
        .await
    }

    async fn get_consistency_proof(
        &self,
        request: Request<proto::GetConsistencyProofRequest>,
    ) -> Result<Response<proto::ConsistencyProof>, Status> {
        self.access.authorize(&request, "*").await?;
        self.within_deadline(async move {
            let request = request.into_inner();
            let new_size = self.checkpoint_size(request.new_size).await?;
            let store = self.ledger.store();
            let proof = store
                .consistency_proof(request.old_size, new_size)
                .await
                .map_err(|error| status_from_store(&error))?;
            let old_root = store
                .root_at(request.old_size)
                .await
                .map_err(|error| status_from_store(&error))?;
            let new_root = store
                .root_at(new_size)
                .await
                .map_err(|error| status_from_store(&error))?;
            Ok(Response::new(proto::ConsistencyProof {
                old_size: request.old_size,
                new_size,
                path: proof.path.iter().map(|hash| hash.0.to_vec()).collect(),
                old_root: old_root.0.to_vec(),
                new_root: new_root.0.to_vec(),
            }))
        })
        .await
    }
}

/// `call`, or DEADLINE_EXCEEDED if it has not finished within `limit`.
pub(crate) async fn deadline<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(Status::deadline_exceeded(format!(
            "the call took longer than the server's request deadline of {} ms",
            limit.as_millis()
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_past_the_deadline_get_deadline_exceeded() {
        let stuck = deadline(
            Duration::from_millis(10),
            std::future::pending::<Result<(), Status>>(),
        );
        let status = stuck.await.expect_err("past the deadline");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(status.message().contains("10 ms"), "{status}");
        let quick = deadline(Duration::from_millis(10), async { Ok::<_, Status>(7) });
        assert_eq!(quick.await.unwrap(), 7);
    }
}
