//! The read models of the feedback loop in sled, built from the ledger: feedback, signals,
//! opportunities and their ranking, decisions, initiatives and milestones, and the lineage graph
//! in both directions. Each answer says the position it reflects, any answer can be asked as of a
//! past position, and a reader may wait for "at least position N".
//!
//! Views are a pure function of the records in position order: [`Projections::rebuild`] from the
//! ledger gives the same answers as following it, and a lost or outdated directory is rebuilt,
//! never repaired. This crate never holds personal data (feedback text and submitters stay sealed
//! in the ledger; a feedback view names the record that holds them), never writes to the ledger,
//! never runs sled work on an async worker thread, and never names tonic or prost.

mod apply;
mod error;
mod keys;
mod query;
mod views;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cairn_ledger::{Position, Record};
use cairn_store::{EventStore, StoreError, limits as store_limits, subscribe};
use tokio::sync::watch;

pub use error::ProjectionError;
pub use query::{
    DecisionFilter, Direction, FeedbackFilter, GRAPH_NODES_MAX, Graph, InitiativeFilter,
    LINEAGE_DEPTH_MAX, PAGE_SIZE_MAX, PAGE_TOKEN_BYTES_MAX, PageRequest, RELATION_DIRECTIONS,
    Upstream, direction_of,
};
pub use views::{
    AgedOutView, AtPosition, DecisionView, EdgeView, FeedbackView, InitiativeView, MilestoneView,
    OpportunityView, Page, Ranked, SignalView,
};

/// Most records [`Projections::follow`] and [`Projections::catch_up`] apply in one sled batch.
pub const APPLY_BATCH_RECORDS_MAX: usize = 4096;

/// Most records [`Projections::rebuild`] applies in one sled batch. Larger batches write fewer
/// keys (each entity's view and history chunk once per batch, however many of its records the
/// batch holds); the batch and its overlay are held in memory (about a kilobyte per record), and
/// up to three batches at once (one read, one decided, one written).
pub const CATCH_UP_BATCH_RECORDS_MAX: usize = 65_536;

/// Most bytes of the views and votes a catch-up keeps after writing them, for its next batches.
const RECENT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// How long [`Projections::open`] waits for the lock of a directory just closed in this process.
const OPEN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The version of the key layout and view encodings. A directory written with another version is
/// cleared on open and rebuilt from the ledger by following it from position 1.
const FORMAT_VERSION: u32 = 4;

/// The read models.
pub struct Projections {
    tree: sled::Tree,
    db: sled::Db,
    applied: watch::Sender<Position>,
    /// Serialises writes: two batches built from the same applied position would count the same
    /// records twice (a batch is written only over the position it was decided from).
    apply_lock: Mutex<()>,
    /// Which entities have edge chunks; held while a batch is decided.
    edge_chunks: Mutex<apply::EdgeChunks>,
    /// Odd while a batch is being written, bumped on each start and end. Versioned keys make
    /// every as-of answer exact without it; the ranking index of "now" is not versioned, so a
    /// reader of it checks that no write started or ended while it read.
    write_sequence: AtomicU64,
}

impl Projections {
    /// Opens (or creates) the read models in `dir`. A directory of another layout version is
    /// cleared (the views are rebuilt by following the ledger). Blocking.
    pub fn open(dir: &Path) -> Result<Projections, ProjectionError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024);
        // sled's background writers may hold the directory's lock for a moment after the last
        // handle of a previous open is dropped (a restart within one process).
        let deadline = std::time::Instant::now() + OPEN_LOCK_WAIT;
        loop {
            match config.open() {
                Ok(db) => return Projections::from_db(db),
                Err(sled::Error::Io(error))
                    if error.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Read models in a temporary sled database, gone when dropped. Blocking.
    pub fn temporary() -> Result<Projections, ProjectionError> {
        Projections::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<Projections, ProjectionError> {
        let tree = db.open_tree("views")?;
        let format = FORMAT_VERSION.to_be_bytes();
        match tree.get(keys::FORMAT)? {
            Some(stored) if stored.as_ref() == format => {}
            stored => {
                if !tree.is_empty() {
                    tracing::warn!(
                        stored = ?stored.as_deref(),
                        expected = FORMAT_VERSION,
                        "projection layout changed; clearing the views to rebuild them"
                    );
                    tree.clear()?;
                }
                tree.insert(keys::FORMAT, &format)?;
                tree.flush()?;
            }
        }
        let applied = match tree.get(keys::APPLIED)? {
            Some(bytes) => Position(u64::from_be_bytes(bytes.as_ref().try_into().map_err(
                |_| ProjectionError::Corrupt("the applied position is not 8 bytes".into()),
            )?)),
            None => Position::ZERO,
        };
        Ok(Projections {
            tree,
            db,
            applied: watch::channel(applied).0,
            apply_lock: Mutex::new(()),
            edge_chunks: Mutex::new(apply::EdgeChunks::default()),
            write_sequence: AtomicU64::new(0),
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

    /// Writes what sled holds in memory to disk (a shutdown courtesy: a lost tail is re-applied
    /// from the ledger on the next start). Blocking.
    pub fn flush(&self) -> Result<(), ProjectionError> {
        self.db.flush()?;
        Ok(())
    }

    /// Applies records in position order, from `applied() + 1`: records at or below the applied
    /// position are skipped (a replay is harmless), a gap is refused naming both positions. The
    /// whole slice is one atomic sled batch, the applied position included. Calls are serialised.
    /// Blocking.
    pub fn apply(&self, records: &[Arc<Record>]) -> Result<(), ProjectionError> {
        let _only_writer = self
            .apply_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let applied = self.applied();
        let Some(prepared) = self.prepare(records, applied, None, None)? else {
            return Ok(());
        };
        self.write_locked(&prepared)?;
        tracing::trace!(from = %applied.next(), to = %prepared.last, "applied");
        Ok(())
    }

    /// Decides the writes of the records after `base` (records at or below it are skipped, a gap
    /// is refused), over the views as stored once the `pending` writes are applied (and what a
    /// catch-up wrote lately, `recent`, which takes in these writes); `None` if no record is
    /// after `base`.
    fn prepare(
        &self,
        records: &[Arc<Record>],
        base: Position,
        pending: Option<&apply::Writes>,
        mut recent: Option<&mut apply::Recent>,
    ) -> Result<Option<Prepared>, ProjectionError> {
        let mut edge_chunks = self
            .edge_chunks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut overlay =
            apply::Overlay::new(&self.tree, pending, recent.as_deref(), &mut edge_chunks);
        let mut last = base;
        for record in records {
            let position = record.position();
            if position <= last {
                continue;
            }
            if position != last.next() {
                return Err(ProjectionError::Gap {
                    applied: last,
                    got: position,
                });
            }
            apply::apply_record(&mut overlay, record)?;
            last = position;
        }
        if last == base {
            return Ok(None);
        }
        let writes = overlay.into_writes(last)?;
        if let Some(recent) = &mut recent {
            recent.note(&writes);
        }
        Ok(Some(Prepared {
            base,
            last,
            writes: Arc::new(writes),
        }))
    }

    /// Writes a prepared batch, the applied position with it, if the views are still at the
    /// position it was decided from; `false` (nothing written) if another batch came first.
    fn write(&self, prepared: &Prepared) -> Result<bool, ProjectionError> {
        let _only_writer = self
            .apply_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.applied() != prepared.base {
            return Ok(false);
        }
        self.write_locked(prepared)?;
        Ok(true)
    }

    /// [`Projections::write`] under the apply lock, over the position the batch was decided from.
    fn write_locked(&self, prepared: &Prepared) -> Result<(), ProjectionError> {
        let batch = apply::to_batch(&prepared.writes);
        self.write_sequence.fetch_add(1, Ordering::SeqCst);
        let written = self.tree.apply_batch(batch);
        if written.is_ok() {
            self.applied.send_replace(prepared.last);
        }
        self.write_sequence.fetch_add(1, Ordering::SeqCst);
        written?;
        Ok(())
    }

    /// Waits until at least `at_least` is applied, or `deadline` passes (then
    /// [`ProjectionError::DeadlineExceeded`] says how far it got). A position already applied
    /// returns at once, whatever the deadline.
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

    /// Follows the ledger until `shutdown` turns true (or its sender is dropped): catches up from
    /// the applied position by reading the ledger in large batches (as [`Projections::rebuild`]
    /// does), then subscribes and applies new records as they become durable, in batches of what
    /// is available (at most [`APPLY_BATCH_RECORDS_MAX`]), on the blocking pool. A follower cut
    /// off for falling behind the live feed catches up again and resubscribes. Returns the error
    /// that stopped it, if any (a store failure, a record that does not decode).
    #[tracing::instrument(name = "projections.follow", skip_all)]
    pub async fn follow<S: EventStore + ?Sized>(
        self: Arc<Self>,
        store: Arc<S>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        loop {
            tokio::select! {
                caught_up = self.catch_up_pipelined(&*store, Batching::CATCH_UP) => {
                    caught_up?;
                }
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            }
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
                    match ready_now(&mut subscription) {
                        Some(Some(Ok(record))) => batch.push(record),
                        Some(Some(Err(StoreError::SubscriberTooSlow { .. }))) => {
                            cut_off = true;
                            break;
                        }
                        Some(Some(Err(error))) => return Err(error.into()),
                        Some(None) | None => break,
                    }
                }
                self.apply_blocking(batch).await?;
                if cut_off {
                    break;
                }
            }
            tracing::info!(applied = %self.applied(), "projection fell behind the live feed; resubscribing");
        }
    }

    /// Builds the read models in `dir` from the whole ledger (or brings an existing directory up
    /// to the head) in batches: while sled writes one, the next is decided and the one after is
    /// read with `read_all`.
    #[tracing::instrument(name = "projections.rebuild", skip_all, fields(dir = %dir.display()))]
    pub async fn rebuild<S: EventStore + ?Sized>(
        store: &S,
        dir: &Path,
    ) -> Result<Projections, ProjectionError> {
        Projections::rebuild_batched(store, dir, Batching::CATCH_UP).await
    }

    /// [`Projections::rebuild`] in batches of at most `records` (at least 1), each decided before
    /// the one before it is written (over its writes, not yet in the tree): for tests of the
    /// batching and of the pipeline, which the answers never depend on.
    #[doc(hidden)]
    pub async fn rebuild_in_batches_of<S: EventStore + ?Sized>(
        store: &S,
        dir: &Path,
        records: usize,
    ) -> Result<Projections, ProjectionError> {
        let batching = Batching {
            records: records.max(1),
            overlap: false,
        };
        Projections::rebuild_batched(store, dir, batching).await
    }

    async fn rebuild_batched<S: EventStore + ?Sized>(
        store: &S,
        dir: &Path,
        batching: Batching,
    ) -> Result<Projections, ProjectionError> {
        let dir = dir.to_owned();
        let projections = Arc::new(
            tokio::task::spawn_blocking(move || Projections::open(&dir))
                .await
                .map_err(worker_failed)??,
        );
        projections.catch_up_pipelined(store, batching).await?;
        Arc::try_unwrap(projections)
            .map_err(|_| ProjectionError::Corrupt("a rebuild worker still holds the views".into()))
    }

    /// Applies every record after the applied position up to the store's head, a page at a time,
    /// on the calling thread: for tests and tools that own a blocking-tolerant thread; a server
    /// uses [`Projections::follow`]. Returns the applied position.
    pub async fn catch_up<S: EventStore + ?Sized>(
        &self,
        store: &S,
    ) -> Result<Position, ProjectionError> {
        loop {
            let records = store
                .read_all(self.applied().next(), APPLY_BATCH_RECORDS_MAX)
                .await?;
            if records.is_empty() {
                return Ok(self.applied());
            }
            self.apply(&records)?;
        }
    }

    /// [`Projections::catch_up`] with the sled work on the blocking pool, in a pipeline: while
    /// sled writes one batch, the next is decided over the views as they will be once it is
    /// written (its writes are consulted before the tree), and the one after is read from the
    /// store. Batches are written in order, each with its applied position; a batch is written
    /// only after the one before it, so the stored position always matches the stored views.
    async fn catch_up_pipelined<S: EventStore + ?Sized>(
        self: &Arc<Self>,
        store: &S,
        batching: Batching,
    ) -> Result<Position, ProjectionError> {
        'restart: loop {
            let mut base = self.applied();
            let mut recent = apply::Recent::new(&self.tree, RECENT_BYTES_MAX)?;
            let mut records = read_batch(store, base.next(), batching.records).await?;
            // The batch being written (or to be), with its writes: pending until written.
            let mut writing: Option<(Writing, Arc<apply::Writes>)> = None;
            while let Some(last) = records.last() {
                let next = last.position().next();
                let pending = writing.as_ref().map(|(_, writes)| Arc::clone(writes));
                let projections = Arc::clone(self);
                let prepare = tokio::task::spawn_blocking(move || {
                    let prepared =
                        projections.prepare(&records, base, pending.as_deref(), Some(&mut recent));
                    (prepared, recent)
                });
                let (prepared, read) =
                    tokio::join!(prepare, read_batch(store, next, batching.records));
                if let Some((written, _)) = writing.take()
                    && !self.written(written).await?
                {
                    continue 'restart;
                }
                let (prepared, kept) = prepared.map_err(worker_failed)?;
                recent = kept;
                let prepared = prepared?;
                records = read?;
                if let Some(prepared) = prepared {
                    base = prepared.last;
                    let writes = Arc::clone(&prepared.writes);
                    let written = if batching.overlap {
                        let projections = Arc::clone(self);
                        Writing::Started(tokio::task::spawn_blocking(move || {
                            projections.write(&prepared)
                        }))
                    } else {
                        Writing::Held(prepared)
                    };
                    writing = Some((written, writes));
                }
            }
            if let Some((written, _)) = writing.take()
                && !self.written(written).await?
            {
                continue 'restart;
            }
            return Ok(self.applied());
        }
    }

    /// Waits for a batch to be written (writes it first if held): whether it was.
    async fn written(self: &Arc<Self>, writing: Writing) -> Result<bool, ProjectionError> {
        let handle = match writing {
            Writing::Started(handle) => handle,
            Writing::Held(prepared) => {
                let projections = Arc::clone(self);
                tokio::task::spawn_blocking(move || projections.write(&prepared))
            }
        };
        handle.await.map_err(worker_failed)?
    }

    async fn apply_blocking(
        self: &Arc<Self>,
        records: Vec<Arc<Record>>,
    ) -> Result<(), ProjectionError> {
        let projections = Arc::clone(self);
        tokio::task::spawn_blocking(move || projections.apply(&records))
            .await
            .map_err(worker_failed)?
    }

    /// Runs `read` against the views as they are now and returns its answer with the applied
    /// position it reflects, or `None` if a batch was written meanwhile (the caller falls back to
    /// a versioned read).
    fn read_now<T>(
        &self,
        read: impl FnOnce(Position) -> Result<T, ProjectionError>,
    ) -> Result<Option<(T, Position)>, ProjectionError> {
        let before = self.write_sequence.load(Ordering::SeqCst);
        if before % 2 == 1 {
            return Ok(None);
        }
        let at = self.applied();
        let value = read(at)?;
        if self.write_sequence.load(Ordering::SeqCst) != before {
            return Ok(None);
        }
        Ok(Some((value, at)))
    }
}

impl Drop for Projections {
    /// Flushes, so a clean shutdown reopens where it left off rather than re-applying the tail
    /// from the ledger (which would be correct, only slower).
    fn drop(&mut self) {
        if let Err(error) = self.db.flush() {
            tracing::warn!(%error, "the projections could not be flushed on close");
        }
    }
}

/// How [`Projections::catch_up_pipelined`] batches.
#[derive(Clone, Copy)]
struct Batching {
    /// Most records per batch.
    records: usize,
    /// Whether a batch is decided while the one before it is written (else the one before it is
    /// written after it is decided: the same pending writes, in an order that tests can repeat).
    overlap: bool,
}

impl Batching {
    const CATCH_UP: Batching = Batching {
        records: CATCH_UP_BATCH_RECORDS_MAX,
        overlap: true,
    };
}

/// A batch being written, or held to be.
enum Writing {
    Started(tokio::task::JoinHandle<Result<bool, ProjectionError>>),
    Held(Prepared),
}

/// The writes of a batch decided by [`Projections::prepare`], not yet written.
struct Prepared {
    /// The applied position the batch was decided from.
    base: Position,
    /// The position of its last record.
    last: Position,
    writes: Arc<apply::Writes>,
}

/// Up to `most` records from `from`, read a page at a time.
async fn read_batch<S: EventStore + ?Sized>(
    store: &S,
    from: Position,
    most: usize,
) -> Result<Vec<Arc<Record>>, ProjectionError> {
    let mut records: Vec<Arc<Record>> = Vec::new();
    while records.len() < most {
        let next = records.last().map_or(from, |r| r.position().next());
        let wanted = (most - records.len()).min(store_limits::READ_RECORDS_MAX);
        let page = store.read_all(next, wanted).await?;
        if page.is_empty() {
            break;
        }
        records.extend(page);
    }
    Ok(records)
}

fn worker_failed(error: tokio::task::JoinError) -> ProjectionError {
    ProjectionError::Corrupt(format!("a projection worker thread failed: {error}"))
}

/// The next item of a subscription if one is ready now, without waiting.
fn ready_now(
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
