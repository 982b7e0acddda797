//! The read models of the feedback loop in sled, built from the ledger: feedback, signals,
//! opportunities and their ranking, decisions, initiatives and milestones, and the lineage graph
//! in both directions. Each answer says the position it reflects, any answer can be asked as of a
//! past position, and a reader may wait for "at least position N".
//!
//! Views are a pure function of the records in position order: [`Projections::rebuild`] from the
//! ledger gives the same answers as following it. This crate never holds personal data (feedback
//! text and submitters stay sealed in the ledger), never writes to the ledger, and never names
//! tonic or prost.

mod apply;
mod error;
mod keys;
mod query;
mod views;

use std::path::Path;
use std::sync::Arc;

use cairn_ledger::{Position, Record};
use cairn_store::{EventStore, StoreError, limits as store_limits, subscribe};
use tokio::sync::watch;

pub use error::ProjectionError;
pub use query::{
    DecisionFilter, Direction, FeedbackFilter, GRAPH_NODES_MAX, Graph, InitiativeFilter,
    LINEAGE_DEPTH_MAX, PAGE_SIZE_MAX, PageRequest, direction_of,
};
pub use views::{
    AgedOutView, AtPosition, DecisionView, EdgeView, FeedbackView, InitiativeView, MilestoneView,
    OpportunityView, Page, Ranked, SignalView,
};

/// Most records applied in one sled batch.
pub const APPLY_BATCH_RECORDS_MAX: usize = 4096;

/// The read models.
pub struct Projections {
    tree: sled::Tree,
    _db: sled::Db,
    applied: watch::Sender<Position>,
}

impl Projections {
    /// Opens (or creates) the read models in `dir`. Blocking.
    pub fn open(dir: &Path) -> Result<Projections, ProjectionError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            .open()?;
        Projections::from_db(db)
    }

    /// Read models in a temporary sled database, gone when dropped.
    pub fn temporary() -> Result<Projections, ProjectionError> {
        Projections::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<Projections, ProjectionError> {
        let tree = db.open_tree("views")?;
        let applied = match tree.get(keys::APPLIED)? {
            Some(bytes) => Position(u64::from_be_bytes(bytes.as_ref().try_into().map_err(
                |_| ProjectionError::Corrupt("the applied position is not 8 bytes".into()),
            )?)),
            None => Position::ZERO,
        };
        Ok(Projections {
            tree,
            _db: db,
            applied: watch::channel(applied).0,
        })
    }

    /// The last position applied: every answer reflects the records up to it.
    pub fn applied(&self) -> Position {
        *self.applied.borrow()
    }

    /// Follows the applied position.
    pub fn watch(&self) -> watch::Receiver<Position> {
        self.applied.subscribe()
    }

    /// Applies records in position order, from `applied() + 1`; records at or below it are
    /// skipped (a replay is harmless), a gap is refused. One atomic sled batch. Blocking.
    pub fn apply(&self, records: &[Arc<Record>]) -> Result<(), ProjectionError> {
        let applied = self.applied();
        let mut expected = applied.next();
        let mut overlay = apply::Overlay::new(&self.tree);
        for record in records {
            let position = record.position();
            if position < expected {
                continue;
            }
            if position != expected {
                return Err(ProjectionError::Gap {
                    applied: Position(expected.0 - 1),
                    got: position,
                });
            }
            apply::apply_record(&mut overlay, record)?;
            expected = expected.next();
        }
        let last = Position(expected.0 - 1);
        if last == applied {
            return Ok(());
        }
        self.tree.apply_batch(overlay.into_batch(last))?;
        self.applied.send_replace(last);
        Ok(())
    }

    /// Waits until at least `at_least` is applied, or the deadline passes.
    pub async fn wait_for(
        &self,
        at_least: Position,
        deadline: tokio::time::Instant,
    ) -> Result<Position, ProjectionError> {
        let mut watch = self.watch();
        let reached = tokio::time::timeout_at(deadline, watch.wait_for(|p| *p >= at_least)).await;
        match reached {
            Ok(Ok(position)) => Ok(*position),
            _ => Err(ProjectionError::DeadlineExceeded {
                wanted: at_least,
                reached: self.applied(),
            }),
        }
    }

    /// Follows the ledger until `shutdown` turns true: catches up from the applied position, then
    /// applies new records as they become durable, in batches of what is available. A follower
    /// that falls behind the live feed resubscribes from where it is.
    pub async fn follow<S: EventStore>(
        self: Arc<Self>,
        store: Arc<S>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        loop {
            let mut subscription = subscribe(
                Arc::clone(&store),
                self.applied().next(),
                store_limits::SUBSCRIPTION_BUFFER_RECORDS_MAX,
            );
            loop {
                let first = tokio::select! {
                    record = subscription.next_record() => record,
                    _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                };
                let mut batch = match first {
                    None => return Ok(()),
                    Some(Ok(record)) => vec![record],
                    Some(Err(StoreError::SubscriberTooSlow { .. })) => break,
                    Some(Err(error)) => return Err(error.into()),
                };
                let mut cut_off = false;
                while batch.len() < APPLY_BATCH_RECORDS_MAX {
                    match futures_now(&mut subscription) {
                        Some(Some(Ok(record))) => batch.push(record),
                        Some(Some(Err(StoreError::SubscriberTooSlow { .. }))) => {
                            cut_off = true;
                            break;
                        }
                        Some(Some(Err(error))) => return Err(error.into()),
                        Some(None) | None => break,
                    }
                }
                let projections = Arc::clone(&self);
                tokio::task::spawn_blocking(move || projections.apply(&batch))
                    .await
                    .map_err(|e| {
                        ProjectionError::Corrupt(format!("the apply thread failed: {e}"))
                    })??;
                if cut_off {
                    break;
                }
            }
            tracing::info!(applied = %self.applied(), "projection fell behind the live feed; resubscribing");
        }
    }

    /// Builds the read models in `dir` from the whole ledger, reading it in pages. Blocking work
    /// runs on this thread: call it from `spawn_blocking` or a benchmark.
    pub async fn rebuild<S: EventStore>(
        store: &S,
        dir: &Path,
    ) -> Result<Projections, ProjectionError> {
        let projections = Projections::open(dir)?;
        projections.catch_up(store).await?;
        Ok(projections)
    }

    /// Applies every record after the applied position up to the store's head.
    pub async fn catch_up<S: EventStore>(&self, store: &S) -> Result<(), ProjectionError> {
        loop {
            let records = store
                .read_all(self.applied().next(), store_limits::READ_RECORDS_MAX)
                .await?;
            if records.is_empty() {
                return Ok(());
            }
            self.apply(&records)?;
        }
    }
}

/// The next item of a subscription if one is ready now, without waiting.
fn futures_now(
    subscription: &mut cairn_store::Subscription,
) -> Option<Option<Result<Arc<Record>, StoreError>>> {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let mut context = Context::from_waker(Waker::noop());
    let future = std::pin::pin!(subscription.next_record());
    match future.poll(&mut context) {
        Poll::Ready(item) => Some(item),
        Poll::Pending => None,
    }
}
