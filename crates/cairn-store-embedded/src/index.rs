//! What the store knows besides the segments: the in-memory state (Merkle tree, where each frame
//! is, stream versions, the not-yet-indexed tail) and the sled index (event id -> position,
//! stream and version -> position), which a background thread keeps up to date.
//!
//! sled is a copy, never the record: everything in it can be, and on open is, rebuilt from the
//! segments. Records are acknowledged once they are in the fdatasync'd segments and in the
//! in-memory state; the indexer moves them into sled afterwards. Until it has, lookups of those
//! records are answered from the in-memory "pending" maps, so the index is never behind what a
//! caller was told.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use cairn_ledger::{EventId, MerkleTree, Position, StreamId, StreamVersion};
use cairn_store::StoreError;
use tracing::{debug, error, warn};

use crate::segment::FrameSpan;

/// One segment as the in-memory state knows it.
#[derive(Clone, Debug)]
pub(crate) struct SegmentSpan {
    /// Position of its first record.
    pub first_position: Position,
    /// Its path.
    pub path: PathBuf,
    /// Bytes of whole, durable frames (the end of its last acknowledged frame).
    pub len: u64,
}

/// What the store knows of one stream.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// The stream's current (durable) version.
    pub version: StreamVersion,
    /// Versions not yet in sled's `streams` tree, with their positions, oldest first.
    pub pending: VecDeque<(StreamVersion, Position)>,
}

/// The in-memory state of an open store. Only the writer thread adds to it (after fdatasync);
/// the indexer thread only removes pending entries that sled has.
pub(crate) struct MemIndex {
    /// The newest durable position; also the Merkle tree's size.
    pub head: Position,
    /// The Merkle tree over every record (about 64 bytes per record).
    pub tree: MerkleTree,
    /// The segments in position order.
    pub segments: Vec<SegmentSpan>,
    /// `offsets[p - 1]` is the byte offset of position `p`'s frame in its segment (8 bytes per
    /// record; rebuilt by the scan on open).
    pub offsets: Vec<u64>,
    /// Every stream's version and its not-yet-indexed versions.
    pub streams: HashMap<StreamId, StreamState>,
    /// Event ids not yet in sled's `event_ids` tree.
    pub pending_event_ids: HashMap<EventId, Position>,
    /// Everything up to here is in sled.
    pub indexed_through: Position,
}

impl MemIndex {
    /// The index (into `segments`) of the segment holding `position`, which must be in
    /// `1..=head`.
    fn segment_of(&self, position: Position) -> usize {
        debug_assert!(position.0 >= 1 && position <= self.head);
        self.segments
            .partition_point(|segment| segment.first_position <= position)
            - 1
    }

    /// The last position held by segment `index`.
    fn segment_last(&self, index: usize) -> Position {
        match self.segments.get(index + 1) {
            Some(next) => Position(next.first_position.0 - 1),
            None => self.head,
        }
    }

    /// The byte offset where position `position`'s frame ends, in segment `index`.
    fn frame_end(&self, index: usize, position: Position) -> u64 {
        if position == self.segment_last(index) {
            self.segments[index].len
        } else {
            self.offsets[position.0 as usize]
        }
    }

    /// Where the records `from..=last` lie (both in `1..=head`), one span per segment.
    pub(crate) fn spans(&self, from: Position, last: Position) -> Vec<FrameSpan> {
        let mut spans = Vec::new();
        let mut position = from;
        while position <= last {
            let index = self.segment_of(position);
            let span_last = self.segment_last(index).min(last);
            let segment = &self.segments[index];
            spans.push(FrameSpan {
                path: segment.path.clone(),
                first_position: position,
                records: (span_last.0 - position.0 + 1) as usize,
                start: self.offsets[(position.0 - 1) as usize],
                end: self.frame_end(index, span_last),
            });
            position = span_last.next();
        }
        spans
    }

    /// Where the records at `positions` (ascending, each in `1..=head`) lie, merging runs of
    /// consecutive positions in one segment into one span.
    pub(crate) fn spans_of(&self, positions: &[Position]) -> Vec<FrameSpan> {
        let mut spans: Vec<FrameSpan> = Vec::new();
        let mut span_segment = usize::MAX;
        for &position in positions {
            let index = self.segment_of(position);
            if let Some(span) = spans.last_mut() {
                let span_last = Position(span.first_position.0 + span.records as u64 - 1);
                if index == span_segment && span_last.next() == position {
                    span.records += 1;
                    span.end = self.frame_end(index, position);
                    continue;
                }
            }
            span_segment = index;
            spans.push(FrameSpan {
                path: self.segments[index].path.clone(),
                first_position: position,
                records: 1,
                start: self.offsets[(position.0 - 1) as usize],
                end: self.frame_end(index, position),
            });
        }
        spans
    }
}

/// One record's entries in the sled index.
#[derive(Clone, Debug)]
pub(crate) struct IndexEntry {
    pub event_id: EventId,
    pub stream: Arc<StreamId>,
    pub version: StreamVersion,
    pub position: Position,
}

/// The sled database and its trees. The layout:
///
/// - `event_ids`: event id (16 bytes) -> position (u64 big-endian);
/// - `streams`: stream key ++ version (u64 big-endian) -> position (u64 big-endian), where the
///   stream key is tenant, aggregate type and aggregate id, each as a u16 big-endian length and
///   its bytes, so no two streams share a prefix ambiguously;
/// - `meta`: `indexed_through` -> position (u64 big-endian): every record up to it is indexed.
pub(crate) struct SledIndex {
    /// The folder sled lives in.
    path: PathBuf,
    db: sled::Db,
    event_ids: sled::Tree,
    streams: sled::Tree,
    meta: sled::Tree,
}

const INDEXED_THROUGH_KEY: &[u8] = b"indexed_through";
/// Longest a close waits for sled's threads to release its files.
const SLED_RELEASE_WAIT_MAX: Duration = Duration::from_secs(5);

/// Turns a sled error into a store error.
pub(crate) fn sled_error(context: &str, error: sled::Error) -> StoreError {
    match error {
        sled::Error::Io(source) => StoreError::io(format!("sled index: {context}"), source),
        other => StoreError::Unavailable(format!(
            "sled index: {context}: {other} (the index can be deleted; it is rebuilt from the segments on open)"
        )),
    }
}

/// The key prefix of a stream in the `streams` tree.
pub(crate) fn stream_key(stream: &StreamId) -> Vec<u8> {
    let parts = [
        stream.tenant.as_str(),
        &stream.aggregate_type,
        &stream.aggregate_id,
    ];
    let mut key = Vec::with_capacity(6 + parts.iter().map(|part| part.len()).sum::<usize>() + 8);
    for part in parts {
        key.extend_from_slice(&(part.len() as u16).to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key
}

fn decode_position(bytes: &[u8], what: &str) -> Result<Position, StoreError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        position: None,
        detail: format!(
            "sled index: {what} holds {} bytes, not a position",
            bytes.len()
        ),
    })?;
    Ok(Position(u64::from_be_bytes(array)))
}

impl SledIndex {
    /// Opens (or creates) the index in `path`.
    pub(crate) fn open(path: &Path) -> Result<SledIndex, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|error| sled_error(&format!("open {}", path.display()), error))?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|error| sled_error(&format!("open tree {name}"), error))
        };
        Ok(SledIndex {
            path: path.to_path_buf(),
            event_ids: tree("event_ids")?,
            streams: tree("streams")?,
            meta: tree("meta")?,
            db,
        })
    }

    /// Every record up to this position is indexed.
    pub(crate) fn indexed_through(&self) -> Result<Position, StoreError> {
        match self
            .meta
            .get(INDEXED_THROUGH_KEY)
            .map_err(|error| sled_error("read indexed_through", error))?
        {
            Some(bytes) => decode_position(&bytes, "indexed_through"),
            None => Ok(Position::ZERO),
        }
    }

    /// Empties the index, so it can be rebuilt from the segments.
    pub(crate) fn clear(&self) -> Result<(), StoreError> {
        self.event_ids
            .clear()
            .map_err(|error| sled_error("clear event_ids", error))?;
        self.streams
            .clear()
            .map_err(|error| sled_error("clear streams", error))?;
        self.meta
            .clear()
            .map_err(|error| sled_error("clear meta", error))?;
        Ok(())
    }

    /// The position of an indexed event id.
    pub(crate) fn event_position(
        &self,
        event_id: &EventId,
    ) -> Result<Option<Position>, StoreError> {
        self.event_ids
            .get(event_id.0)
            .map_err(|error| sled_error("look up an event id", error))?
            .map(|bytes| decode_position(&bytes, "an event id entry"))
            .transpose()
    }

    /// The indexed positions of `stream`'s versions in `from..until`, in version order.
    pub(crate) fn stream_positions(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        until: StreamVersion,
    ) -> Result<Vec<(StreamVersion, Position)>, StoreError> {
        let prefix = stream_key(stream);
        let key = |version: StreamVersion| {
            let mut key = prefix.clone();
            key.extend_from_slice(&version.0.to_be_bytes());
            key
        };
        let mut found = Vec::new();
        for entry in self.streams.range(key(from)..key(until)) {
            let (key, value) = entry.map_err(|error| sled_error("scan a stream", error))?;
            let version = key
                .get(prefix.len()..)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt {
                    position: None,
                    detail: format!("sled index: malformed key in streams for {stream}"),
                })?;
            found.push((
                StreamVersion(version),
                decode_position(&value, "a stream entry")?,
            ));
        }
        Ok(found)
    }

    /// Indexes `entries` and records `through` as indexed. The trees are written before
    /// `indexed_through`, and sled recovers a prefix of its writes, so after a crash
    /// `indexed_through` never claims an entry that is missing.
    pub(crate) fn apply(
        &self,
        entries: &[IndexEntry],
        through: Position,
    ) -> Result<(), StoreError> {
        let mut event_ids = sled::Batch::default();
        let mut streams = sled::Batch::default();
        for entry in entries {
            let position = entry.position.0.to_be_bytes();
            event_ids.insert(&entry.event_id.0[..], &position[..]);
            let mut key = stream_key(&entry.stream);
            key.extend_from_slice(&entry.version.0.to_be_bytes());
            streams.insert(key, &position[..]);
        }
        self.event_ids
            .apply_batch(event_ids)
            .map_err(|error| sled_error("index event ids", error))?;
        self.streams
            .apply_batch(streams)
            .map_err(|error| sled_error("index streams", error))?;
        self.meta
            .insert(INDEXED_THROUGH_KEY, &through.0.to_be_bytes())
            .map_err(|error| sled_error("write indexed_through", error))?;
        Ok(())
    }

    /// Asks sled to write its buffers out (a clean close; not a durability barrier).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|error| sled_error("flush", error))
    }

    /// Flushes and closes the index, and waits (a few seconds at most) until sled has let go of
    /// its files: its I/O threads hold them a moment after the last handle is dropped, and the
    /// directory must be ready to open again as soon as the store's `close` returns.
    pub(crate) fn close(self) {
        if let Err(error) = self.flush() {
            warn!(%error, "flushing the sled index failed (it is rebuilt on open)");
        }
        // sled locks this file (with flock) for as long as it has the database open.
        let lock_path = self.path.join("db");
        drop(self);
        let deadline = Instant::now() + SLED_RELEASE_WAIT_MAX;
        loop {
            let Ok(file) = File::open(&lock_path) else {
                return;
            };
            match file.try_lock() {
                Ok(()) => return,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(error) => {
                    warn!(path = %lock_path.display(), %error, "sled still holds its lock after close");
                    return;
                }
            }
        }
    }
}

/// The state shared by the store, its writer thread and its indexer thread.
pub(crate) struct Shared {
    /// The data directory.
    pub dir: PathBuf,
    /// The in-memory state.
    index: RwLock<MemIndex>,
    /// The sled index; `None` once the store is closed.
    sled: RwLock<Option<SledIndex>>,
    /// Why the store stopped accepting calls, once it has.
    poisoned: OnceLock<String>,
    /// `indexed_through`, for the writer to wait on when the indexer falls too far behind.
    indexed: Mutex<Position>,
    indexed_changed: Condvar,
}

impl Shared {
    /// Wraps the state of a freshly opened store.
    pub(crate) fn new(dir: PathBuf, index: MemIndex, sled: SledIndex) -> Shared {
        let indexed = index.indexed_through;
        Shared {
            dir,
            index: RwLock::new(index),
            sled: RwLock::new(Some(sled)),
            poisoned: OnceLock::new(),
            indexed: Mutex::new(indexed),
            indexed_changed: Condvar::new(),
        }
    }

    /// Stops the store for good: every later call fails with [`StoreError::Unavailable`].
    pub(crate) fn poison(&self, reason: String) {
        error!(dir = %self.dir.display(), %reason, "the store stops accepting calls");
        let _ = self.poisoned.set(reason);
        // Under the lock, so a writer between its check and its wait cannot miss the wakeup.
        let _indexed = self
            .indexed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.indexed_changed.notify_all();
    }

    /// Fails once the store is poisoned.
    pub(crate) fn check_poisoned(&self) -> Result<(), StoreError> {
        match self.poisoned.get() {
            Some(reason) => Err(StoreError::Unavailable(format!(
                "the store at {} stopped after a failure and must be reopened: {reason}",
                self.dir.display()
            ))),
            None => Ok(()),
        }
    }

    /// Reads the in-memory state.
    pub(crate) fn index(&self) -> Result<RwLockReadGuard<'_, MemIndex>, StoreError> {
        self.index.read().map_err(|_| self.broken_lock())
    }

    /// Changes the in-memory state (writer and indexer threads only).
    pub(crate) fn index_mut(&self) -> Result<RwLockWriteGuard<'_, MemIndex>, StoreError> {
        self.index.write().map_err(|_| self.broken_lock())
    }

    fn broken_lock(&self) -> StoreError {
        let reason = "a thread panicked while changing the in-memory state".to_string();
        self.poison(reason.clone());
        StoreError::Unavailable(reason)
    }

    /// Runs `f` with the sled index, or fails if the store is closed.
    pub(crate) fn with_sled<T>(
        &self,
        f: impl FnOnce(&SledIndex) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.sled.read().map_err(|_| self.broken_lock())?;
        match guard.as_ref() {
            Some(sled) => f(sled),
            None => Err(StoreError::Unavailable(format!(
                "the store at {} is closed",
                self.dir.display()
            ))),
        }
    }

    /// Takes the sled index out (on close), so its files are released even while other handles
    /// to the shared state remain.
    pub(crate) fn take_sled(&self) -> Option<SledIndex> {
        match self.sled.write() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    /// Blocks while more than `lag_max` records are waiting for the indexer, so the pending maps
    /// stay bounded. Returns early if the store is poisoned.
    pub(crate) fn wait_for_indexer(&self, head: Position, lag_max: u64) {
        let mut indexed = self
            .indexed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while head.0.saturating_sub(indexed.0) > lag_max && self.poisoned.get().is_none() {
            indexed = self
                .indexed_changed
                .wait(indexed)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn set_indexed(&self, through: Position) {
        *self
            .indexed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = through;
        self.indexed_changed.notify_all();
    }
}

/// A batch of records for the indexer, in position order, ending at `through`.
pub(crate) struct IndexWork {
    pub entries: Vec<IndexEntry>,
    pub through: Position,
}

/// How long the indexer waits for quiet before indexing what it holds.
const INDEXER_IDLE: Duration = Duration::from_millis(50);
/// Most entries indexed in one sled batch.
const INDEX_CHUNK_RECORDS: usize = 8192;
/// Most pending entries removed under one hold of the in-memory state's lock, so readers on
/// async threads never wait long.
const EVICT_CHUNK_RECORDS: usize = 1024;

/// The indexer thread: moves acknowledged records into sled, then drops them from the pending
/// maps. It defers the work while appends keep coming (sled costs several microseconds per
/// insert, about as much as the rest of an append) and catches up when the writer is quiet for
/// [`INDEXER_IDLE`], when `defer_records` are waiting, or when the store closes.
pub(crate) fn run_indexer(shared: Arc<Shared>, work: Receiver<IndexWork>, defer_records: usize) {
    let _guard = PoisonOnPanic(&shared, "indexer");
    let mut waiting: Vec<IndexEntry> = Vec::new();
    let mut through = Position::ZERO;
    loop {
        let received = if waiting.is_empty() {
            work.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            work.recv_timeout(INDEXER_IDLE)
        };
        let closing = match received {
            Ok(batch) => {
                waiting.extend(batch.entries);
                through = batch.through;
                if waiting.len() < defer_records {
                    continue;
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if let Err(error) = index_waiting(&shared, &mut waiting, through) {
            shared.poison(format!("indexing failed: {error}"));
            return;
        }
        if closing {
            return;
        }
    }
}

/// Indexes everything in `waiting` in chunks, then empties it.
fn index_waiting(
    shared: &Shared,
    waiting: &mut Vec<IndexEntry>,
    through: Position,
) -> Result<(), StoreError> {
    debug!(records = waiting.len(), through = through.0, "indexing");
    for chunk in waiting.chunks(INDEX_CHUNK_RECORDS) {
        let chunk_through = chunk.last().map_or(through, |entry| entry.position);
        shared.with_sled(|sled| sled.apply(chunk, chunk_through))?;
        for evict in chunk.chunks(EVICT_CHUNK_RECORDS) {
            let mut index = shared.index_mut()?;
            for entry in evict {
                index.pending_event_ids.remove(&entry.event_id);
                let state = index.streams.get_mut(&*entry.stream);
                let front = state.and_then(|state| {
                    let front = state.pending.pop_front();
                    if state.pending.is_empty() {
                        state.pending = VecDeque::new();
                    }
                    front
                });
                if front != Some((entry.version, entry.position)) {
                    return Err(StoreError::Corrupt {
                        position: Some(entry.position),
                        detail: format!(
                            "broken invariant: the pending entries of stream {} do not start with version {}",
                            entry.stream, entry.version
                        ),
                    });
                }
            }
            index.indexed_through = evict.last().map_or(through, |entry| entry.position);
        }
        shared.set_indexed(chunk_through);
    }
    waiting.clear();
    Ok(())
}

/// Poisons the store if the thread holding it panics, so callers get an error instead of a hang.
pub(crate) struct PoisonOnPanic<'a>(pub &'a Shared, pub &'static str);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison(format!("the {} thread panicked", self.1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_ledger::TenantId;

    #[test]
    fn stream_keys_are_unambiguous() {
        let tenant = TenantId::new("ab").unwrap();
        let one = StreamId::new(tenant.clone(), "c", "d").unwrap();
        let two = StreamId::new(TenantId::new("a").unwrap(), "bc", "d").unwrap();
        assert_ne!(stream_key(&one), stream_key(&two));
        assert!(!stream_key(&one).starts_with(&stream_key(&two)));
        let short = StreamId::new(tenant.clone(), "c", "d").unwrap();
        let long = StreamId::new(tenant, "c", "de").unwrap();
        assert!(!stream_key(&long).starts_with(&stream_key(&short)));
    }
}
