//! [`EmbeddedStore`]: opening, closing, and the `EventStore` and `KeyStore` calls.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use async_trait::async_trait;
use cairn_ledger::{
    ConsistencyProof, DataKey, Hash, InclusionProof, KeyId, Position, Record, SignedCheckpoint,
    StreamId, StreamVersion,
};
use cairn_store::{
    AppendResult, EventStore, ExpectedVersion, Head, KeyState, KeyStore, NewEvent, StoreError,
    limits, proofs, validate_append,
};
use tokio::sync::{RwLock, RwLockReadGuard, broadcast, mpsc, watch};
use tracing::{info, instrument, warn};

use crate::EmbeddedOptions;
use crate::checkpoints::{CHECKPOINTS_FILE, Checkpoints, read_log};
use crate::index::{Shared, SledIndex, run_indexer};
use crate::keys::Keys;
use crate::recovery::recover;
use crate::segment::{
    PREALLOCATE_BYTES_MAX, SEGMENTS_DIR, read_spans, run_preparer, sync_dir, zero_fill,
};
use crate::writer::{
    ActiveSegment, AppendRequest, Inflight, Outstanding, Reply, SYNC_QUEUE_GROUPS_MAX, Sequencer,
    Syncer,
};

/// The lock file in the data directory.
const LOCK_FILE: &str = "LOCK";
/// The sled index's folder in the data directory.
const INDEX_DIR: &str = "index";
/// Most pending index entries room is made for when the store opens.
const PENDING_RESERVE_RECORDS_MAX: u64 = 1 << 20;
/// Most append requests queued for the writer; callers wait (asynchronously) beyond it.
const APPEND_QUEUE_REQUESTS_MAX: usize = 4096;

/// The embedded ledger store: segment files written by group-commit threads, a sled index kept
/// by a background thread, `keys.dat` and `checkpoints.log`, all in one data directory.
///
/// Open it with [`EmbeddedStore::open`]; [`EmbeddedStore::close`] stops it, after which every
/// call fails with [`StoreError::Unavailable`] and the directory can be opened again. Dropping
/// the last handle without closing also stops it (blocking the dropping thread briefly).
pub struct EmbeddedStore {
    dir: PathBuf,
    /// `None` once closed. Every call holds a read guard for its duration, so `close` waits for
    /// calls in flight and later calls find the store closed.
    state: RwLock<Option<Open>>,
    /// The head when the store closed, for `watch_head` afterwards.
    closed_head: AtomicU64,
}

/// The resources of an open store. `shutdown` releases them in order: writer, indexer, sled,
/// files, and the directory lock last.
struct Open {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<AppendRequest>>,
    /// Appends handed over and not yet answered.
    outstanding: Arc<Outstanding>,
    sequencer: Option<JoinHandle<()>>,
    syncer: Option<JoinHandle<()>>,
    indexer: Option<JoinHandle<()>>,
    keys: Arc<Keys>,
    checkpoints: Arc<Checkpoints>,
    live: Option<broadcast::Sender<Arc<Record>>>,
    head: Option<Arc<watch::Sender<Position>>>,
    lock: Option<File>,
}

impl Open {
    /// Stops the threads and releases every file (blocking). Idempotent.
    fn shutdown(&mut self) {
        // Closing the request channel stops the sequencer once it has written what was queued;
        // then the syncer stops once it has synced and answered it, and the indexer once it has
        // indexed everything.
        self.requests.take();
        for (thread, name) in [
            (self.sequencer.take(), "sequencer"),
            (self.syncer.take(), "syncer"),
            (self.indexer.take(), "indexer"),
        ] {
            if thread.is_some_and(|thread| thread.join().is_err()) {
                warn!(dir = %self.shared.dir.display(), thread = name, "a store thread had panicked");
            }
        }
        if let Some(sled) = self.shared.take_sled() {
            sled.close();
        }
        self.keys.close();
        self.checkpoints.close();
        self.live.take();
        self.head.take();
        if self.lock.take().is_some() {
            info!(dir = %self.shared.dir.display(), "closed the embedded store");
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Takes the exclusive lock of the data directory.
fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| StoreError::io(format!("open {}", path.display()), error))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "the data directory {} is in use: another open store (in this or another process) holds {}",
            dir.display(),
            path.display()
        ))),
        Err(TryLockError::Error(error)) => {
            Err(StoreError::io(format!("lock {}", path.display()), error))
        }
    }
}

/// Runs blocking work (file or sled I/O) off the async worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        StoreError::Unavailable(format!("a blocking store task failed: {error}"))
    })?
}

impl EmbeddedStore {
    /// Opens the store in `dir` (created if missing), recovering from a crash if there was one:
    /// scans and checks every segment, cuts a torn tail, brings the sled index up to date, and
    /// starts the writer and indexer threads.
    ///
    /// This blocks for as long as the scan takes (it reads the whole ledger); from async code,
    /// call it through `tokio::task::spawn_blocking`. Fails with [`StoreError::Unavailable`] if
    /// another open store holds the directory, and with [`StoreError::Corrupt`], naming the
    /// position, if a segment is damaged anywhere but at its torn tail.
    #[instrument(skip(options), fields(dir = %dir.display()))]
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<Arc<EmbeddedStore>, StoreError> {
        let started = Instant::now();
        fs::create_dir_all(dir)
            .map_err(|error| StoreError::io(format!("create {}", dir.display()), error))?;
        let lock = take_lock(dir)?;
        let segments_dir = dir.join(SEGMENTS_DIR);
        if !segments_dir.exists() {
            fs::create_dir(&segments_dir)
                .and_then(|()| sync_dir(dir))
                .map_err(|error| {
                    StoreError::io(format!("create {}", segments_dir.display()), error)
                })?;
        }
        let sled = SledIndex::open(&dir.join(INDEX_DIR))?;
        let checkpoint_log = read_log(&dir.join(CHECKPOINTS_FILE))?;
        let recovered = recover(dir, &sled, checkpoint_log.latest_tree_size())?;
        let checkpoints = Arc::new(Checkpoints::open(
            dir,
            checkpoint_log,
            &recovered.index.tree,
        )?);
        let keys = Arc::new(Keys::open(dir)?);

        let head_position = recovered.index.head;
        let preallocate_len = options.segment_bytes_max.min(PREALLOCATE_BYTES_MAX);
        let active = match recovered.index.segments.last() {
            Some(segment) => {
                let name = segment.path.display().to_string();
                let file = File::options()
                    .read(true)
                    .write(true)
                    .open(&segment.path)
                    .map_err(|error| StoreError::io(format!("open segment {name}"), error))?;
                let mut file_len = file
                    .metadata()
                    .map_err(|error| StoreError::io(format!("stat segment {name}"), error))?
                    .len();
                if file_len < preallocate_len {
                    // A cut tail or an older file: zero-fill it again, for fast syncs.
                    zero_fill(&file, file_len.max(segment.len), preallocate_len).map_err(
                        |error| StoreError::io(format!("zero-fill segment {name}"), error),
                    )?;
                    file_len = preallocate_len;
                }
                Some(ActiveSegment {
                    first_position: segment.first_position,
                    path: segment.path.clone(),
                    file: Arc::new(file),
                    len: segment.len,
                    file_len,
                    frames: head_position.0 + 1 - segment.first_position.0,
                })
            }
            None => None,
        };
        info!(
            records = head_position.0,
            segments = recovered.index.segments.len(),
            streams = recovered.index.streams.len(),
            reindexed = recovered.reindexed,
            torn_tail_bytes = recovered.torn_tail.as_ref().map_or(0, |torn| torn.bytes),
            torn_tail_position = recovered
                .torn_tail
                .as_ref()
                .map_or(0, |torn| torn.position.0),
            torn_tail_segment = recovered.torn_tail.as_ref().map(|torn| format!(
                "{}@{}",
                torn.segment.display(),
                torn.offset
            )),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened the embedded store"
        );

        let mut index = recovered.index;
        // The pending ids grow up to the indexer's lag while it defers its work; growing the map
        // as it fills would stall the syncer for milliseconds at each rehash.
        index.pending_event_ids.reserve(
            options
                .index_lag_records_max
                .min(PENDING_RESERVE_RECORDS_MAX) as usize,
        );
        let shared = Arc::new(Shared::new(dir.to_path_buf(), index, sled));
        let (live, _) = broadcast::channel(limits::LIVE_BUFFER_RECORDS);
        let head = Arc::new(watch::channel(head_position).0);
        let (requests, request_receiver) = mpsc::channel(APPEND_QUEUE_REQUESTS_MAX);
        let (index_sender, index_receiver) = std::sync::mpsc::channel();
        let defer_records = (options.index_lag_records_max / 2).max(1) as usize;
        let indexer = thread::Builder::new()
            .name("cairn-indexer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run_indexer(shared, index_receiver, defer_records)
            })
            .map_err(|error| StoreError::io("start the indexer thread", error))?;
        let committed = Arc::new(AtomicU64::new(head_position.0));
        let (to_syncer, syncer_receiver) = std::sync::mpsc::sync_channel(SYNC_QUEUE_GROUPS_MAX);
        let outstanding = Arc::new(Outstanding::default());
        let syncer = Syncer {
            shared: Arc::clone(&shared),
            outstanding: Arc::clone(&outstanding),
            committed: Arc::clone(&committed),
            live: live.clone(),
            head: Arc::clone(&head),
            index_work: index_sender,
        };
        let syncer = thread::Builder::new()
            .name("cairn-syncer".into())
            .spawn(move || syncer.run(syncer_receiver))
            .map_err(|error| StoreError::io("start the syncer thread", error))?;
        let (prepare, prepare_requests) = std::sync::mpsc::channel();
        let (prepared_sender, prepared) = std::sync::mpsc::channel();
        let preparer = thread::Builder::new()
            .name("cairn-preparer".into())
            .spawn({
                let segments_dir = segments_dir.clone();
                move || {
                    run_preparer(
                        segments_dir,
                        preallocate_len,
                        prepare_requests,
                        prepared_sender,
                    )
                }
            })
            .map_err(|error| StoreError::io("start the segment preparer thread", error))?;
        let _ = prepare.send(());
        let sequencer = Sequencer {
            shared: Arc::clone(&shared),
            options: options.clone(),
            segments_dir,
            active,
            next_position: head_position.next(),
            last_recorded_at: recovered.last_recorded_at,
            committed,
            inflight: Inflight::default(),
            filter: recovered.filter,
            to_syncer,
            carry: None,
            buffer: Vec::new(),
            prepare: Some(prepare),
            prepared,
            preparer: Some(preparer),
        };
        let sequencer = thread::Builder::new()
            .name("cairn-sequencer".into())
            .spawn(move || sequencer.run(request_receiver))
            .map_err(|error| StoreError::io("start the sequencer thread", error))?;
        Ok(Arc::new(EmbeddedStore {
            dir: dir.to_path_buf(),
            state: RwLock::new(Some(Open {
                shared,
                requests: Some(requests),
                outstanding,
                sequencer: Some(sequencer),
                syncer: Some(syncer),
                indexer: Some(indexer),
                keys,
                checkpoints,
                live: Some(live),
                head: Some(head),
                lock: Some(lock),
            })),
            closed_head: AtomicU64::new(head_position.0),
        }))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the store: waits for calls in flight, lets the writer answer what is queued, stops
    /// the writer and indexer threads, and releases sled, the files and the directory lock. Every
    /// later call fails with [`StoreError::Unavailable`]; live subscriptions end. The directory
    /// can then be opened again, in this process or another. Closing twice is harmless.
    #[instrument(skip(self), fields(dir = %self.dir.display()))]
    pub async fn close(&self) {
        let Some(open) = self.state.write().await.take() else {
            return;
        };
        if let Ok(index) = open.shared.index() {
            self.closed_head.store(index.head.0, Ordering::Release);
        }
        let mut open = open;
        if let Err(error) = tokio::task::spawn_blocking(move || open.shutdown()).await {
            warn!(%error, "shutting the store down failed");
        }
    }

    /// Waits until every record acknowledged before the call is in the sled index. The indexer
    /// defers its work while appends keep coming; this lets a benchmark or a test measure phases
    /// without one phase paying for the indexing of the one before.
    pub async fn wait_indexed(&self) -> Result<(), StoreError> {
        let shared = Arc::clone(&self.running().await?.shared);
        let head = shared.index()?.head;
        tokio::task::spawn_blocking(move || shared.wait_for_indexer(head, 0))
            .await
            .map_err(|error| {
                StoreError::Unavailable(format!("waiting for the indexer: {error}"))
            })?;
        self.running().await.map(|_| ())
    }

    fn closed_error(&self) -> StoreError {
        StoreError::Unavailable(format!("the store at {} is closed", self.dir.display()))
    }

    /// The open store, or `Unavailable` if it is closed or poisoned.
    async fn running(&self) -> Result<RwLockReadGuard<'_, Open>, StoreError> {
        let open = RwLockReadGuard::try_map(self.state.read().await, Option::as_ref)
            .map_err(|_| self.closed_error())?;
        open.shared.check_poisoned()?;
        Ok(open)
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if let Some(mut open) = self.state.get_mut().take() {
            open.shutdown();
        }
    }
}

/// Reads up to `limit` records of `stream` from version `from` (at least 1): indexed versions
/// from sled, newer ones from the pending entries (blocking).
fn read_stream_blocking(
    shared: &Shared,
    stream: &StreamId,
    from: StreamVersion,
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    // The pending entries are read first: the indexer drops one only after sled has it, so
    // every version below the first pending one is in sled by the time sled is read.
    let (first_pending, pending) = {
        let index = shared.index()?;
        let Some(state) = index.streams.get(stream) else {
            return Ok(Vec::new());
        };
        if from > state.version {
            return Ok(Vec::new());
        }
        let first_pending = state
            .pending
            .front()
            .map_or(state.version.next(), |&(version, _)| version);
        let pending: Vec<_> = state
            .pending
            .iter()
            .filter(|(version, _)| *version >= from)
            .take(limit)
            .copied()
            .collect();
        (first_pending, pending)
    };
    let mut positions = Vec::with_capacity(limit.min(pending.len() + 64));
    if from < first_pending {
        let until = StreamVersion(first_pending.0.min(from.0.saturating_add(limit as u64)));
        let indexed = shared.with_sled(|sled| sled.stream_positions(stream, from, until))?;
        for (offset, (version, position)) in indexed.iter().enumerate() {
            if version.0 != from.0 + offset as u64 {
                return Err(StoreError::Corrupt {
                    position: Some(*position),
                    detail: format!(
                        "the stream index of {stream} skips from version {} to {version}",
                        from.0 + offset as u64
                    ),
                });
            }
        }
        if indexed.len() as u64 != until.0 - from.0 {
            return Err(StoreError::Corrupt {
                position: None,
                detail: format!(
                    "the stream index of {stream} holds {} of versions {from}..{until}",
                    indexed.len()
                ),
            });
        }
        positions.extend(indexed.into_iter().map(|(_, position)| position));
    }
    for (_, position) in pending {
        if positions.len() >= limit {
            break;
        }
        positions.push(position);
    }
    let spans = shared.index()?.spans_of(&positions);
    let records = read_spans(&spans)?;
    for (offset, record) in records.iter().enumerate() {
        let expected = StreamVersion(from.0 + offset as u64);
        if record.envelope.stream != *stream || record.envelope.stream_version != expected {
            return Err(StoreError::Corrupt {
                position: Some(record.position()),
                detail: format!(
                    "the index gave {} version {} where {stream} version {expected} was due",
                    record.envelope.stream, record.envelope.stream_version
                ),
            });
        }
    }
    Ok(records)
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        validate_append(&stream, &events)?;
        let open = self.running().await?;
        let requests = open.requests.as_ref().ok_or_else(|| self.closed_error())?;
        let (reply, answer) = Reply::new(&open.outstanding);
        requests
            .send(AppendRequest {
                stream,
                expected,
                events,
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the writer thread stopped before answering".into())
        })?
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> Result<Vec<Arc<Record>>, StoreError> {
        let open = self.running().await?;
        let limit = limit.min(limits::READ_RECORDS_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let from = StreamVersion(from.0.max(1));
        let shared = Arc::clone(&open.shared);
        let stream = stream.clone();
        let records = blocking(move || read_stream_blocking(&shared, &stream, from, limit)).await?;
        Ok(records.into_iter().map(Arc::new).collect())
    }

    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<Arc<Record>>, StoreError> {
        let open = self.running().await?;
        let limit = limit.min(limits::READ_RECORDS_MAX);
        let from = Position(from.0.max(1));
        let spans = {
            let index = open.shared.index()?;
            if limit == 0 || from > index.head {
                return Ok(Vec::new());
            }
            let last = Position(from.0.saturating_add(limit as u64 - 1).min(index.head.0));
            index.spans(from, last)
        };
        let records = blocking(move || read_spans(&spans)).await?;
        Ok(records.into_iter().map(Arc::new).collect())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<StreamVersion, StoreError> {
        let open = self.running().await?;
        let index = open.shared.index()?;
        Ok(index
            .streams
            .get(stream)
            .map_or(StreamVersion::NONE, |state| state.version))
    }

    async fn head(&self) -> Result<cairn_store::Head, StoreError> {
        let open = self.running().await?;
        let (position, root) = {
            let index = open.shared.index()?;
            (index.head, index.tree.root())
        };
        Ok(Head {
            position,
            root,
            checkpoint: open.checkpoints.latest(),
        })
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        if let Ok(state) = self.state.try_read()
            && let Some(head) = state.as_ref().and_then(|open| open.head.as_ref())
        {
            return head.subscribe();
        }
        // Closed (or closing): a receiver that holds the last head and never changes again.
        watch::channel(Position(self.closed_head.load(Ordering::Acquire))).1
    }

    fn live(&self) -> broadcast::Receiver<Arc<Record>> {
        if let Ok(state) = self.state.try_read()
            && let Some(live) = state.as_ref().and_then(|open| open.live.as_ref())
        {
            return live.subscribe();
        }
        // Closed (or closing): a receiver whose sender is gone, so it reports `Closed`.
        broadcast::channel(1).1
    }

    async fn root_at(&self, tree_size: u64) -> Result<Hash, StoreError> {
        let open = self.running().await?;
        let index = open.shared.index()?;
        proofs::root_at(&index.tree, tree_size)
    }

    async fn inclusion_proof(
        &self,
        position: Position,
        tree_size: u64,
    ) -> Result<InclusionProof, StoreError> {
        let open = self.running().await?;
        let index = open.shared.index()?;
        proofs::inclusion_proof(&index.tree, position, tree_size)
    }

    async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, StoreError> {
        let open = self.running().await?;
        let index = open.shared.index()?;
        proofs::consistency_proof(&index.tree, old_size, new_size)
    }

    async fn save_checkpoint(&self, checkpoint: SignedCheckpoint) -> Result<(), StoreError> {
        let open = self.running().await?;
        let shared = Arc::clone(&open.shared);
        let checkpoints = Arc::clone(&open.checkpoints);
        blocking(move || {
            checkpoints.save(checkpoint, |latest, candidate| {
                let index = shared.index()?;
                proofs::check_checkpoint(&index.tree, latest, candidate)
            })
        })
        .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        let open = self.running().await?;
        Ok(open.checkpoints.latest())
    }
}

#[async_trait]
impl KeyStore for EmbeddedStore {
    async fn create_key(&self, key_id: KeyId, key: DataKey) -> Result<(), StoreError> {
        let open = self.running().await?;
        let keys = Arc::clone(&open.keys);
        blocking(move || keys.create(key_id, &key)).await
    }

    async fn key(&self, key_id: KeyId) -> Result<KeyState, StoreError> {
        let open = self.running().await?;
        open.keys.get(key_id)
    }

    async fn destroy_key(&self, key_id: KeyId) -> Result<bool, StoreError> {
        let open = self.running().await?;
        let keys = Arc::clone(&open.keys);
        blocking(move || keys.destroy(key_id)).await
    }
}

#[cfg(test)]
mod tests {
    use cairn_store::testsuite::{event, stream};
    use cairn_store::{EventStore, ExpectedVersion};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_indexed_returns_once_sled_holds_every_acknowledged_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        for round in 0..20 {
            let events = (0..10).map(|i| event(&format!("w{round}-{i}"))).collect();
            store
                .append(stream("w"), ExpectedVersion::Any, events)
                .await
                .unwrap();
        }
        store.wait_indexed().await.unwrap();
        let shared = Arc::clone(&store.running().await.unwrap().shared);
        assert_eq!(shared.index().unwrap().indexed_through, Position(200));
        let in_sled = shared.with_sled(|sled| sled.indexed_through()).unwrap();
        assert_eq!(in_sled, Position(200));
        store.close().await;
    }
}
