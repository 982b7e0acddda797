//! What the five feedback-loop services share: one backend (the services and the server's
//! limits), the call's deadline (the server's request deadline and the caller's `grpc-timeout`),
//! read options, receipts, stamps, the pages of answers the projections do not page themselves,
//! and the reads of an entity's own stream that fill what a read model does not keep (a
//! decision's full content, a milestone's closing time).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cairn_domain::{EntityKind, EntityRef, Time};
use cairn_ledger::{Position, Record, TenantId};
use cairn_projections::{
    AtPosition, DecisionView, FeedbackView, InitiativeView, PageRequest, ProjectionError,
    Projections,
};
use cairn_service::history::{self, HistoryEntry};
use cairn_service::{
    CommandReceipt, FeedbackLoop, Ledger, ReadOptions, Reads, ServiceError, Stamp, Stamped,
};
use cairn_store::{EventStore, KeyStore};
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::access::Access;
use crate::domain_convert::{
    PageAt, page_from_proto, read_options_from_proto, receipt_to_proto, stamp_to_proto,
};
use crate::error::status_from_service;
use crate::ledger_api::deadline;
use crate::proto;
use crate::server::{ServerLimits, Services};
use crate::view_convert::{decision_to_proto, feedback_to_proto, initiative_to_proto};

/// How many entities a list answer reads from the ledger at once (stream versions, decision
/// contents, score snapshots): enough to hide the latency of each read, few enough not to crowd
/// out other calls.
pub(crate) const LEDGER_READS_CONCURRENT_MAX: usize = 16;

/// How long before the end of its budget a read stops waiting for `at_least_position`, at most:
/// its DEADLINE_EXCEEDED must reach the caller before the caller's own timer (and tonic's, which
/// answers CANCELLED) goes off.
const READ_WAIT_MARGIN_MAX: Duration = Duration::from_millis(100);

/// The services and limits every feedback-loop API serves with.
pub(crate) struct Backend<S> {
    services: Services<S>,
    limits: ServerLimits,
    access: Arc<Access<S>>,
}

impl<S: EventStore + KeyStore> Backend<S> {
    pub(crate) fn new(services: Services<S>, limits: ServerLimits) -> Backend<S> {
        let access = Arc::new(Access::new(Arc::clone(&services.governance)));
        Backend {
            services,
            limits,
            access,
        }
    }

    /// Authorization of each call.
    pub(crate) fn access(&self) -> &Arc<Access<S>> {
        &self.access
    }

    /// Retention, holds and erasure.
    pub(crate) fn stewardship(&self) -> &cairn_service::stewardship::Stewardship<S> {
        &self.services.stewardship
    }

    /// The stamp of an answer read straight from the ledger: its head and latest checkpoint.
    pub(crate) async fn head_stamp(&self) -> Result<Option<proto::Stamp>, Status> {
        let head = self
            .ledger()
            .store()
            .head()
            .await
            .map_err(|error| crate::error::status_from_store(&error))?;
        Ok(Some(stamp_to_proto(
            head.position,
            head.checkpoint.as_ref(),
        )))
    }

    pub(crate) fn ledger(&self) -> &Arc<Ledger<S>> {
        &self.services.ledger
    }

    pub(crate) fn feedback_loop(&self) -> &FeedbackLoop<S> {
        &self.services.feedback_loop
    }

    pub(crate) fn reads(&self) -> &Reads<S> {
        &self.services.reads
    }

    /// Runs a call within the server's request deadline, as `LedgerService` does.
    pub(crate) async fn within_deadline<T>(
        &self,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        deadline(Duration::from_millis(self.limits.request_deadline_ms), call).await
    }

    /// Runs a command within the deadline and answers with its receipt.
    pub(crate) async fn command(
        &self,
        call: impl Future<Output = Result<CommandReceipt, ServiceError>>,
    ) -> Result<Response<proto::CommandReceipt>, Status> {
        self.within_deadline(async move {
            let receipt = call.await.map_err(service_status)?;
            Ok(Response::new(receipt_to_proto(&receipt)))
        })
        .await
    }

    /// A read request and the instant its read stops waiting for `at_least_position`: the
    /// shorter of the server's request deadline and the caller's `grpc-timeout`, less a margin.
    pub(crate) fn read_request<T>(&self, request: Request<T>) -> (T, Instant) {
        let server = Duration::from_millis(self.limits.request_deadline_ms);
        let budget = grpc_timeout(request.metadata()).map_or(server, |caller| caller.min(server));
        let margin = (budget / 10).min(READ_WAIT_MARGIN_MAX);
        (request.into_inner(), Instant::now() + (budget - margin))
    }

    /// A projection query, stamped, after waiting for what the caller asked to see.
    pub(crate) async fn query<T: Send + 'static>(
        &self,
        options: &ReadOptions,
        query: impl FnOnce(&Projections, Option<Position>) -> Result<AtPosition<T>, ProjectionError>
        + Send
        + 'static,
    ) -> Result<Stamped<T>, Status> {
        self.reads()
            .query(options, query)
            .await
            .map_err(service_status)
    }

    /// The records of `entity`'s stream up to `at`: what a read model does not keep is folded
    /// from them, exact as of the answer's position.
    pub(crate) async fn history_at(
        &self,
        tenant: &TenantId,
        entity: &EntityRef,
        at: Position,
    ) -> Result<Vec<HistoryEntry>, Status> {
        history::history(&**self.ledger().store(), tenant, entity, at)
            .await
            .map_err(service_status)
    }

    /// The record at `position`.
    pub(crate) async fn record_at(&self, position: Position) -> Result<Arc<Record>, Status> {
        let records = self
            .ledger()
            .store()
            .read_all(position, 1)
            .await
            .map_err(|error| service_status(error.into()))?;
        records
            .into_iter()
            .find(|record| record.position() == position)
            .ok_or_else(|| {
                service_status(ServiceError::NotFound(format!(
                    "no record at position {position}"
                )))
            })
    }

    /// A feedback item as a reader sees it, as of its view (text and submitter opened as asked:
    /// there is no authentication yet, issue 4).
    pub(crate) async fn feedback_message(
        &self,
        view: &FeedbackView,
        include_personal: bool,
    ) -> Result<proto::Feedback, Status> {
        let content =
            history::feedback_content(self.ledger(), view.received_position, include_personal)
                .await
                .map_err(service_status)?;
        Ok(feedback_to_proto(view, &content))
    }

    /// A decision as of `at` (its view's position).
    pub(crate) async fn decision_message(
        &self,
        tenant: &TenantId,
        view: &DecisionView,
        at: Position,
    ) -> Result<proto::Decision, Status> {
        let entity = EntityRef::new(EntityKind::Decision, view.id.clone());
        let entries = self.history_at(tenant, &entity, at).await?;
        Ok(decision_to_proto(view, &entries))
    }

    /// An initiative as of `at` (its view's position).
    pub(crate) async fn initiative_message(
        &self,
        tenant: &TenantId,
        view: &InitiativeView,
        at: Position,
    ) -> Result<proto::Initiative, Status> {
        let entity = EntityRef::new(EntityKind::Initiative, view.id.clone());
        let entries = self.history_at(tenant, &entity, at).await?;
        Ok(initiative_to_proto(view, &entries))
    }
}

/// Maps a service error through the one table.
pub(crate) fn service_status(error: ServiceError) -> Status {
    status_from_service(&error)
}

/// The caller's `grpc-timeout` (gRPC over HTTP/2: at most 8 digits and a unit), if it sent a
/// valid one.
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// The read options of a request, waiting for `at_least_position` until `wait_until`.
pub(crate) fn read_options(
    read: Option<proto::ReadOptions>,
    wait_until: Instant,
) -> Result<ReadOptions, Status> {
    let read = read_options_from_proto(read)?;
    Ok(ReadOptions {
        as_of: read.as_of_position,
        at_least: read.at_least_position,
        deadline: wait_until,
        include_personal: read.include_personal,
    })
}

/// The stamp of an answer.
pub(crate) fn stamp(stamp: &Stamp) -> Option<proto::Stamp> {
    Some(stamp_to_proto(stamp.position, stamp.checkpoint.as_ref()))
}

/// The page of a list the projections page: their tokens pin the first page's position.
pub(crate) fn projection_page(page: Option<proto::PageRequest>) -> Result<PageRequest, Status> {
    let PageAt { size, token } = page_from_proto(page)?;
    Ok(PageRequest { size, token })
}

/// The paging part of a response.
pub(crate) fn page_info(next_page_token: Option<String>) -> Option<proto::PageInfo> {
    Some(proto::PageInfo {
        next_page_token: next_page_token.unwrap_or_default(),
    })
}

/// `[from, to)` of a time range: either bound absent (0) is open on that side.
pub(crate) fn time_range(range: Option<proto::TimeRange>) -> (Option<Time>, Option<Time>) {
    let range = range.unwrap_or_default();
    (
        (range.from_micros != 0).then_some(Time(range.from_micros)),
        (range.to_micros != 0).then_some(Time(range.to_micros)),
    )
}

/// Whether `at` is within `[from, to)`.
pub(crate) fn within(at: Time, (from, to): (Option<Time>, Option<Time>)) -> bool {
    from.is_none_or(|from| at >= from) && to.is_none_or(|to| at < to)
}

/// A list read a page at a time from one ledger stream (the governance logs): the page token is
/// the stream version to go on from.
pub(crate) struct StreamPage {
    /// The first stream version of this page.
    pub(crate) from: cairn_ledger::StreamVersion,
    size: usize,
}

impl StreamPage {
    /// The page a request's `page` asks for.
    pub(crate) fn new(page: Option<proto::PageRequest>) -> Result<StreamPage, Status> {
        let PageAt { size, token } = page_from_proto(page)?;
        let from = match token {
            None => 1,
            Some(token) => token
                .parse::<u64>()
                .ok()
                .filter(|version| *version >= 1)
                .ok_or_else(|| {
                    crate::error::invalid_argument("page.page_token", "not a token of this list")
                })?,
        };
        Ok(StreamPage {
            from: cairn_ledger::StreamVersion(from),
            size,
        })
    }

    /// How many entries to read: one more than a page, to know whether another follows.
    pub(crate) fn read_limit(&self) -> usize {
        self.size + 1
    }

    /// This page of `entries` (read with [`StreamPage::read_limit`]) and the token of the next.
    pub(crate) fn finish<T>(&self, mut entries: Vec<T>) -> (Vec<T>, Option<proto::PageInfo>) {
        let more = entries.len() > self.size;
        entries.truncate(self.size);
        let next = more.then(|| (self.from.0 + self.size as u64).to_string());
        (entries, page_info(next))
    }
}

/// Pages through an answer the projections give whole (score histories, lineage walks, the
/// chain behind an entity, aged-out and superseded lists). The token has the projections' form,
/// `OFFSET.POSITION`: it pins the first page's position, so every later page answers as of it and
/// paging never skips or repeats an item.
pub(crate) struct Pager {
    size: usize,
    offset: usize,
    pinned: Option<Position>,
}

impl Pager {
    /// The pager of a request's `page`.
    pub(crate) fn new(page: Option<proto::PageRequest>) -> Result<Pager, Status> {
        let PageAt { size, token } = page_from_proto(page)?;
        let Some(token) = token else {
            return Ok(Pager {
                size,
                offset: 0,
                pinned: None,
            });
        };
        let invalid = || {
            service_status(ServiceError::InvalidArgument {
                field: "page.page_token",
                reason: "not a token this server issued".into(),
            })
        };
        let (offset, position) = token.split_once('.').ok_or_else(invalid)?;
        Ok(Pager {
            size,
            offset: offset.parse().map_err(|_| invalid())?,
            pinned: Some(Position(position.parse().map_err(|_| invalid())?)),
        })
    }

    /// Answers as of the first page's position once a token pins it.
    pub(crate) fn pin(&self, options: &mut ReadOptions) {
        if let Some(pinned) = self.pinned {
            options.as_of = Some(pinned);
        }
    }

    /// This page of `items` (the whole answer as of `at`) and the token of the next.
    pub(crate) fn page<T>(&self, items: Vec<T>, at: Position) -> (Vec<T>, Option<proto::PageInfo>) {
        let end = self.offset.saturating_add(self.size).min(items.len());
        let next = (end < items.len()).then(|| format!("{end}.{}", at.0));
        let page = items
            .into_iter()
            .skip(self.offset)
            .take(self.size)
            .collect();
        (page, page_info(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_says() {
        let parse = |text: &str| {
            let mut metadata = MetadataMap::new();
            metadata.insert("grpc-timeout", text.parse().unwrap());
            grpc_timeout(&metadata)
        };
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("30000000u"), Some(Duration::from_secs(30)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("123456789m"), None);
        assert_eq!(parse("m"), None);
        assert_eq!(parse("5x"), None);
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }

    #[test]
    fn pages_pin_the_first_pages_position() {
        let first = Pager::new(Some(proto::PageRequest {
            page_size: 2,
            page_token: String::new(),
        }))
        .unwrap();
        let (items, info) = first.page(vec![1, 2, 3, 4, 5], Position(40));
        assert_eq!(items, [1, 2]);
        let token = info.unwrap().next_page_token;
        assert_eq!(token, "2.40");
        let second = Pager::new(Some(proto::PageRequest {
            page_size: 2,
            page_token: token,
        }))
        .unwrap();
        assert_eq!(second.pinned, Some(Position(40)));
        let (items, _) = second.page(vec![1, 2, 3, 4, 5], Position(40));
        assert_eq!(items, [3, 4]);
        let (items, info) = Pager::new(Some(proto::PageRequest {
            page_size: 2,
            page_token: "4.40".into(),
        }))
        .unwrap()
        .page(vec![1, 2, 3, 4, 5], Position(40));
        assert_eq!(items, [5]);
        assert_eq!(info.unwrap().next_page_token, "");
        let refused = Pager::new(Some(proto::PageRequest {
            page_size: 2,
            page_token: "nonsense".into(),
        }));
        assert_eq!(
            refused.err().map(|status| status.code()),
            Some(tonic::Code::InvalidArgument)
        );
    }
}
