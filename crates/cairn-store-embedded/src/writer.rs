//! The writer: group commit, pipelined over two threads.
//!
//! The **sequencer** thread takes append requests from a bounded channel: it blocks for the
//! first, then takes whatever else is queued (up to `group_commit_records_max` records and
//! `group_commit_bytes_max` bytes). It plans each request against the committed state plus
//! everything planned before it that is not yet committed (the "in flight" overlay), builds the
//! records, writes the whole group to the segment with one write, and hands it to the syncer.
//! It does not wait for the sync, so the next group is planned and written while one is in
//! progress.
//!
//! The **syncer** thread takes every group written so far and calls `fdatasync` once for all of
//! them. Only then does it make them visible (the in-memory state and the Merkle tree), publish
//! the records in position order, advance the head and answer the callers, in group order. So a
//! reply, including a duplicate's or a refusal's, never gets ahead of the durability of what it
//! describes.
//!
//! A failed write or sync poisons the store: the groups concerned and every later call fail, and
//! nothing is retried (after a failed fsync the kernel may have dropped the dirty pages, and a
//! second fsync can report success without them). A broken invariant stops the write the same
//! way.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use cairn_ledger::{
    Envelope, EventId, Hash, Position, Record, StreamId, StreamVersion, Timestamp,
    limits as ledger_limits,
};
use cairn_store::{
    AppendPlan, AppendResult, ExpectedVersion, NewEvent, StateView, StoreError, build_records,
    plan_append,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, trace};

use crate::EmbeddedOptions;
use crate::filter::EventIdFilter;
use crate::index::{
    IndexEntry, IndexWork, MemIndex, PoisonOnPanic, SegmentSpan, Shared, StreamState,
};
use crate::segment::{
    PREPARED_SEGMENT_FILE, encode_frame, encode_header, frame_bytes, read_spans, segment_file_name,
    sync_dir,
};

/// Most written groups waiting for the syncer; the sequencer waits beyond it.
pub(crate) const SYNC_QUEUE_GROUPS_MAX: usize = 64;
/// Longest the syncer waits for appends already handed over before it syncs what it has.
const SYNC_GATHER_MAX: Duration = Duration::from_micros(500);

/// Where an append's answer goes. While it exists, the append counts as outstanding (see
/// [`Outstanding`]).
pub(crate) struct Reply {
    /// Taken when the answer is sent.
    sender: Option<oneshot::Sender<Result<AppendResult, StoreError>>>,
    outstanding: Arc<Outstanding>,
}

impl Reply {
    /// A reply slot for one append, counted as outstanding until it is answered or dropped.
    pub(crate) fn new(
        outstanding: &Arc<Outstanding>,
    ) -> (Reply, oneshot::Receiver<Result<AppendResult, StoreError>>) {
        let (sender, receiver) = oneshot::channel();
        outstanding.0.fetch_add(1, Ordering::AcqRel);
        (
            Reply {
                sender: Some(sender),
                outstanding: Arc::clone(outstanding),
            },
            receiver,
        )
    }

    /// Answers the caller (who may have gone away).
    fn send(mut self, outcome: Result<AppendResult, StoreError>) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(outcome);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.outstanding.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many appends callers have handed to the store and not yet been answered. The syncer
/// uses it to tell whether appends it has not yet seen are on their way to it.
#[derive(Default)]
pub(crate) struct Outstanding(AtomicU64);

/// One append on its way to the writer.
pub(crate) struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub reply: Reply,
}

impl AppendRequest {
    /// What this request counts for against `group_commit_bytes_max`: its payloads plus an
    /// allowance for the envelope.
    fn bytes(&self) -> usize {
        self.events
            .iter()
            .map(|event| event.payload.len() + 512)
            .sum()
    }
}

/// The segment being appended to.
pub(crate) struct ActiveSegment {
    pub first_position: Position,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Bytes of frames written (synced or about to be); zero padding may follow.
    pub len: u64,
    /// The file's length, padding included.
    pub file_len: u64,
    /// Frames written.
    pub frames: u64,
}

/// The records a group writes, in position order, with what committing them needs.
#[derive(Default)]
struct GroupRecords {
    records: Vec<Arc<Record>>,
    leaves: Vec<Hash>,
    entries: Vec<IndexEntry>,
}

/// A group written to its segment, waiting for the syncer.
pub(crate) struct WrittenGroup {
    /// Every request of the group with its outcome, in order.
    replies: Vec<(Reply, Result<AppendResult, StoreError>)>,
    records: GroupRecords,
    /// The frame offset of each record.
    offsets: Vec<u64>,
    /// The segments the group wrote to, with their lengths after it.
    segments: Vec<SegmentSpan>,
    /// The file holding frames of this group that are not yet synced.
    unsynced: Option<Arc<File>>,
}

/// Planned but not yet committed: what a request must see of the requests sequenced before it.
#[derive(Default)]
pub(crate) struct Inflight {
    /// Each stream's newest planned version, and the position of that record.
    versions: HashMap<Arc<StreamId>, (StreamVersion, Position)>,
    ids: HashMap<EventId, Arc<Record>>,
    /// Per group, its last position and keys, to drop them once committed.
    groups: VecDeque<(Position, Vec<EventId>, Vec<Arc<StreamId>>)>,
}

impl Inflight {
    /// Drops what is committed (visible in the in-memory state) up to `committed`.
    fn prune(&mut self, committed: Position) {
        while self
            .groups
            .front()
            .is_some_and(|(last, _, _)| *last <= committed)
        {
            let (_, ids, streams) = self.groups.pop_front().expect("checked");
            for id in ids {
                self.ids.remove(&id);
            }
            for stream in streams {
                if self
                    .versions
                    .get(&stream)
                    .is_some_and(|(_, position)| *position <= committed)
                {
                    self.versions.remove(&stream);
                }
            }
        }
    }
}

/// The state a request is planned against: what is in flight, then the committed state.
struct PlanView<'a> {
    index: &'a MemIndex,
    shared: &'a Shared,
    inflight: &'a Inflight,
    filter: &'a EventIdFilter,
}

impl StateView for PlanView<'_> {
    fn stream_version(&self, stream: &StreamId) -> Result<StreamVersion, StoreError> {
        if let Some((version, _)) = self.inflight.versions.get(stream) {
            return Ok(*version);
        }
        Ok(self
            .index
            .streams
            .get(stream)
            .map_or(StreamVersion::NONE, |state| state.version))
    }

    fn envelope_by_event_id(&self, event_id: &EventId) -> Result<Option<Envelope>, StoreError> {
        // The filter holds every id recorded or planned: a new id stops here.
        if !self.filter.may_contain(event_id) {
            return Ok(None);
        }
        if let Some(record) = self.inflight.ids.get(event_id) {
            return Ok(Some(record.envelope.clone()));
        }
        // Pending before sled: the indexer drops an entry from the pending map only after sled
        // has it, so a committed id is always in one of the two.
        let position = match self.index.pending_event_ids.get(event_id) {
            Some(&position) => position,
            None => match self
                .shared
                .with_sled(|sled| sled.event_position(event_id))?
            {
                Some(position) => position,
                None => return Ok(None),
            },
        };
        if position.0 == 0 || position > self.index.head {
            return Err(StoreError::Corrupt {
                position: Some(position),
                detail: format!(
                    "the index puts event {event_id} at position {position}, beyond the head"
                ),
            });
        }
        let record = read_spans(&self.index.spans(position, position))?
            .pop()
            .expect("one span of one record");
        if record.envelope.event_id != *event_id {
            return Err(StoreError::Corrupt {
                position: Some(position),
                detail: format!(
                    "the index puts event {event_id} here, but the record is {}",
                    record.envelope.event_id
                ),
            });
        }
        Ok(Some(record.envelope))
    }
}

/// The sequencer thread's state.
pub(crate) struct Sequencer {
    pub shared: Arc<Shared>,
    pub options: EmbeddedOptions,
    pub segments_dir: PathBuf,
    /// `None` until the first record of an empty ledger.
    pub active: Option<ActiveSegment>,
    /// The position the next planned record gets.
    pub next_position: Position,
    pub last_recorded_at: Timestamp,
    /// The syncer's committed head, for pruning `inflight`.
    pub committed: Arc<AtomicU64>,
    pub inflight: Inflight,
    /// Every event id recorded or planned.
    pub filter: EventIdFilter,
    pub to_syncer: SyncSender<WrittenGroup>,
    /// A request taken from the channel that did not fit in the last group.
    pub carry: Option<AppendRequest>,
    /// Reused for the bytes of each group.
    pub buffer: Vec<u8>,
    /// Asks the preparer thread for the next zero-filled segment file.
    pub prepare: Option<Sender<()>>,
    /// Where the preparer hands it over.
    pub prepared: Receiver<std::io::Result<File>>,
    /// The preparer thread, joined when the sequencer stops.
    pub preparer: Option<std::thread::JoinHandle<()>>,
}

impl Sequencer {
    /// Runs until every request sender is gone (the store closed), then returns, which lets the
    /// syncer finish and stop.
    pub(crate) fn run(mut self, mut requests: mpsc::Receiver<AppendRequest>) {
        let shared = Arc::clone(&self.shared);
        let _guard = PoisonOnPanic(&shared, "sequencer");
        let records_max = self.options.group_commit_records_max.max(1);
        let bytes_max = self.options.group_commit_bytes_max.max(1);
        loop {
            let first = match self.carry.take() {
                Some(request) => request,
                None => match requests.blocking_recv() {
                    Some(request) => request,
                    None => break,
                },
            };
            let mut records = first.events.len();
            let mut bytes = first.bytes();
            let mut group = vec![first];
            while records < records_max && bytes < bytes_max {
                let Ok(request) = requests.try_recv() else {
                    break;
                };
                if records + request.events.len() > records_max
                    || bytes + request.bytes() > bytes_max
                {
                    self.carry = Some(request);
                    break;
                }
                records += request.events.len();
                bytes += request.bytes();
                group.push(request);
            }
            if self.shared.check_poisoned().is_err() {
                for request in group {
                    let error = self
                        .shared
                        .check_poisoned()
                        .expect_err("a poisoned store stays poisoned");
                    request.reply.send(Err(error));
                }
                continue;
            }
            self.shared.wait_for_indexer(
                Position(self.next_position.0 - 1),
                self.options.index_lag_records_max,
            );
            self.sequence_group(group);
        }
        self.prepare.take();
        if let Some(preparer) = self.preparer.take() {
            let _ = preparer.join();
        }
        debug!("sequencer stopped");
    }

    /// Plans and writes one group, and passes it to the syncer.
    fn sequence_group(&mut self, group: Vec<AppendRequest>) {
        self.inflight
            .prune(Position(self.committed.load(Ordering::Acquire)));
        let recorded_at = cairn_store::now().max(self.last_recorded_at);
        let mut replies = Vec::with_capacity(group.len());
        let mut written = GroupRecords::default();
        let mut streams = Vec::new();
        for request in group {
            let outcome = self.plan_one(&request, recorded_at, &mut written, &mut streams);
            if let Ok(result) = &outcome
                && !result.deduplicated
            {
                self.next_position = result.last_position.next();
            }
            replies.push((request.reply, outcome));
        }
        let (offsets, segments, unsynced) = if written.records.is_empty() {
            (Vec::new(), Vec::new(), None)
        } else {
            match self.write_group(&written.records) {
                Ok(done) => done,
                Err(error) => {
                    let reason = format!(
                        "writing positions {}..: {error}",
                        written.records[0].position()
                    );
                    self.shared.poison(reason.clone());
                    for (reply, _) in replies {
                        reply.send(Err(StoreError::Unavailable(format!(
                            "the store stopped: {reason}"
                        ))));
                    }
                    return;
                }
            }
        };
        if let Some(last) = written.records.last() {
            let ids = written
                .records
                .iter()
                .map(|record| record.envelope.event_id)
                .collect();
            self.inflight
                .groups
                .push_back((last.position(), ids, streams));
            self.last_recorded_at = recorded_at;
        }
        let group = WrittenGroup {
            replies,
            records: written,
            offsets,
            segments,
            unsynced,
        };
        if let Err(unsent) = self.to_syncer.send(group) {
            self.shared.poison("the syncer thread has stopped".into());
            for (reply, _) in unsent.0.replies {
                reply.send(Err(StoreError::Unavailable(
                    "the syncer thread has stopped".into(),
                )));
            }
        }
    }

    /// Plans one request and builds its records at the next position, adding them to the
    /// in-flight overlay.
    fn plan_one(
        &mut self,
        request: &AppendRequest,
        recorded_at: Timestamp,
        written: &mut GroupRecords,
        streams: &mut Vec<Arc<StreamId>>,
    ) -> Result<AppendResult, StoreError> {
        let next = self.next_position;
        let (first_version, current) = {
            let index = self.shared.index()?;
            let view = PlanView {
                index: &index,
                shared: &self.shared,
                inflight: &self.inflight,
                filter: &self.filter,
            };
            match plan_append(&view, &request.stream, request.expected, &request.events)? {
                AppendPlan::Duplicate(result) => return Ok(result),
                AppendPlan::Write { first_version } => {
                    (first_version, view.stream_version(&request.stream)?)
                }
            }
        };
        // Assert what the plan promises before anything is written.
        if first_version != current.next() {
            return Err(StoreError::Corrupt {
                position: Some(next),
                detail: format!(
                    "broken invariant: planned version {first_version} after {current}"
                ),
            });
        }
        let records = build_records(
            &request.stream,
            next,
            first_version,
            recorded_at,
            &request.events,
        )?;
        for record in &records {
            if record.envelope_bytes.len() > ledger_limits::ENVELOPE_BYTES_MAX {
                return Err(StoreError::LimitExceeded {
                    what: "encoded envelope bytes",
                    limit: ledger_limits::ENVELOPE_BYTES_MAX as u64,
                    actual: record.envelope_bytes.len() as u64,
                });
            }
        }
        let last = records.last().expect("validated appends are non-empty");
        let result = AppendResult {
            first_position: next,
            last_position: last.position(),
            last_version: last.envelope.stream_version,
            deduplicated: false,
        };
        let stream = Arc::new(request.stream.clone());
        self.inflight.versions.insert(
            Arc::clone(&stream),
            (result.last_version, result.last_position),
        );
        streams.push(Arc::clone(&stream));
        for record in records {
            let record = Arc::new(record);
            self.filter.insert(&record.envelope.event_id);
            self.inflight
                .ids
                .insert(record.envelope.event_id, Arc::clone(&record));
            written.leaves.push(record.leaf_hash());
            written.entries.push(IndexEntry {
                event_id: record.envelope.event_id,
                stream: Arc::clone(&stream),
                version: record.envelope.stream_version,
                position: record.position(),
            });
            written.records.push(record);
        }
        Ok(result)
    }

    /// Writes the frames of `records`, rolling to new segments as needed (the segment left
    /// behind is synced before the next is created). Returns each record's frame offset, the
    /// segments as they now stand, and the file whose new frames still need a sync.
    #[allow(clippy::type_complexity)]
    fn write_group(
        &mut self,
        records: &[Arc<Record>],
    ) -> Result<(Vec<u64>, Vec<SegmentSpan>, Option<Arc<File>>), StoreError> {
        let mut offsets = Vec::with_capacity(records.len());
        let mut segments: Vec<SegmentSpan> = Vec::new();
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let result = (|| {
            for record in records {
                let bytes = frame_bytes(record);
                let must_roll = match &self.active {
                    None => true,
                    Some(active) => {
                        active.frames > 0
                            && active.len + buffer.len() as u64 + bytes
                                > self.options.segment_bytes_max
                    }
                };
                if must_roll {
                    if let Some(active) = self.active.as_mut() {
                        write_out(active, &mut buffer)?;
                        finish_segment(active)?;
                        note_segment(&mut segments, active);
                    }
                    self.active = Some(self.create_segment(record.position())?);
                }
                let active = self.active.as_mut().expect("a segment is active");
                offsets.push(active.len + buffer.len() as u64);
                encode_frame(&mut buffer, record);
                active.frames += 1;
            }
            let active = self.active.as_mut().expect("a segment is active");
            write_out(active, &mut buffer)?;
            note_segment(&mut segments, active);
            Ok((offsets, segments, Some(Arc::clone(&active.file))))
        })();
        buffer.clear();
        self.buffer = buffer;
        result
    }

    /// Starts the segment whose first record is at `first` in the file the preparer zero-filled:
    /// header written and synced, then the file renamed to its segment name and the directory
    /// synced, before any frame goes in. Then asks for the next one.
    fn create_segment(&mut self, first: Position) -> Result<ActiveSegment, StoreError> {
        let path = self.segments_dir.join(segment_file_name(first));
        let name = path.display().to_string();
        let file = match self.prepared.recv() {
            Ok(prepared) => {
                prepared.map_err(|error| StoreError::io("prepare the next segment file", error))?
            }
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "the segment preparer thread has stopped".into(),
                ));
            }
        };
        let file_len = file
            .metadata()
            .map_err(|error| StoreError::io("stat the prepared segment file", error))?
            .len();
        let header = encode_header(first);
        file.write_all_at(&header, 0)
            .and_then(|()| file.sync_data())
            .map_err(|error| {
                StoreError::io(format!("write the header of segment {name}"), error)
            })?;
        std::fs::rename(self.segments_dir.join(PREPARED_SEGMENT_FILE), &path)
            .and_then(|()| sync_dir(&self.segments_dir))
            .map_err(|error| StoreError::io(format!("create segment {name}"), error))?;
        if let Some(prepare) = &self.prepare {
            let _ = prepare.send(());
        }
        debug!(segment = %name, first = first.0, "new segment");
        Ok(ActiveSegment {
            first_position: first,
            path,
            file: Arc::new(file),
            len: header.len() as u64,
            file_len: file_len.max(header.len() as u64),
            frames: 0,
        })
    }
}

/// Syncs a segment the writer is leaving and truncates its padding, so that only the last
/// segment ever has any.
fn finish_segment(active: &mut ActiveSegment) -> Result<(), StoreError> {
    let name = active.path.display().to_string();
    active
        .file
        .sync_data()
        .map_err(|error| StoreError::io(format!("sync segment {name}"), error))?;
    if active.file_len > active.len {
        active
            .file
            .set_len(active.len)
            .and_then(|()| active.file.sync_all())
            .map_err(|error| {
                StoreError::io(format!("truncate the padding of segment {name}"), error)
            })?;
        active.file_len = active.len;
    }
    Ok(())
}

/// Writes `buffer` at the end of `active` (no sync).
fn write_out(active: &mut ActiveSegment, buffer: &mut Vec<u8>) -> Result<(), StoreError> {
    if buffer.is_empty() {
        return Ok(());
    }
    active
        .file
        .write_all_at(buffer, active.len)
        .map_err(|error| {
            StoreError::io(
                format!(
                    "write {} bytes at offset {} of segment {}",
                    buffer.len(),
                    active.len,
                    active.path.display()
                ),
                error,
            )
        })?;
    active.len += buffer.len() as u64;
    active.file_len = active.file_len.max(active.len);
    buffer.clear();
    Ok(())
}

/// Records the segment's current length among those a group touched.
fn note_segment(segments: &mut Vec<SegmentSpan>, active: &ActiveSegment) {
    match segments.last_mut() {
        Some(last) if last.first_position == active.first_position => last.len = active.len,
        _ => segments.push(SegmentSpan {
            first_position: active.first_position,
            path: active.path.clone(),
            len: active.len,
        }),
    }
}

/// The syncer thread's state.
pub(crate) struct Syncer {
    pub shared: Arc<Shared>,
    pub outstanding: Arc<Outstanding>,
    pub committed: Arc<AtomicU64>,
    pub live: broadcast::Sender<Arc<Record>>,
    pub head: Arc<watch::Sender<Position>>,
    pub index_work: Sender<IndexWork>,
}

impl Syncer {
    /// Runs until the sequencer is gone and every written group is answered.
    pub(crate) fn run(self, groups: Receiver<WrittenGroup>) {
        let shared = Arc::clone(&self.shared);
        let _guard = PoisonOnPanic(&shared, "syncer");
        while let Ok(first) = groups.recv() {
            let batch = self.gather(first, &groups);
            if let Err(error) = self
                .shared
                .check_poisoned()
                .and_then(|()| sync_all_written(&batch))
            {
                self.fail(batch, error);
                continue;
            }
            let mut batch = batch.into_iter();
            while let Some(mut group) = batch.next() {
                if let Err(error) = self.commit(&mut group) {
                    self.fail(std::iter::once(group).chain(batch).collect(), error);
                    break;
                }
                for (reply, outcome) in group.replies {
                    reply.send(outcome);
                }
            }
        }
        debug!("syncer stopped");
    }

    /// Takes the groups to sync together: everything written so far, and, for at most
    /// [`SYNC_GATHER_MAX`], the appends callers have already handed over that are still being
    /// planned and written. Without the wait, concurrent appenders split into cohorts that take
    /// turns at the disk, each sync covering only part of them; with it, one sync covers all of
    /// them. A lone appender never waits: its append is the only one outstanding.
    fn gather(&self, first: WrittenGroup, groups: &Receiver<WrittenGroup>) -> Vec<WrittenGroup> {
        let mut requests = first.replies.len() as u64;
        let mut batch = vec![first];
        let mut deadline = None;
        while batch.len() < SYNC_QUEUE_GROUPS_MAX {
            let group = match groups.try_recv() {
                Ok(group) => group,
                Err(_) => {
                    if requests >= self.outstanding.0.load(Ordering::Acquire) {
                        break;
                    }
                    let deadline =
                        *deadline.get_or_insert_with(|| Instant::now() + SYNC_GATHER_MAX);
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    match groups.recv_timeout(left) {
                        Ok(group) => group,
                        Err(_) => break,
                    }
                }
            };
            requests += group.replies.len() as u64;
            batch.push(group);
        }
        batch
    }

    /// Poisons the store (unless it is already) and fails every request of `batch`.
    fn fail(&self, batch: Vec<WrittenGroup>, error: StoreError) {
        let error = match error {
            StoreError::Unavailable(_) => error,
            other => {
                let reason = format!("syncing the segment: {other}");
                self.shared.poison(reason.clone());
                StoreError::Unavailable(format!("the store stopped: {reason}"))
            }
        };
        for group in batch {
            for (reply, _) in group.replies {
                reply.send(Err(StoreError::Unavailable(match &error {
                    StoreError::Unavailable(reason) => reason.clone(),
                    other => other.to_string(),
                })));
            }
        }
    }

    /// Makes a durable group visible, publishes its records and advances the head.
    fn commit(&self, group: &mut WrittenGroup) -> Result<(), StoreError> {
        let Some(last) = group.records.records.last() else {
            return Ok(());
        };
        let last = last.position();
        make_visible(&self.shared, group)?;
        self.committed.store(last.0, Ordering::Release);
        for record in &group.records.records {
            // No receivers is fine.
            let _ = self.live.send(Arc::clone(record));
        }
        self.head.send_replace(last);
        trace!(
            records = group.records.records.len(),
            last = last.0,
            "group committed"
        );
        let _ = self.index_work.send(IndexWork {
            entries: std::mem::take(&mut group.records.entries),
            through: last,
        });
        Ok(())
    }
}

/// Syncs every file the batch wrote to, once each, in order.
fn sync_all_written(batch: &[WrittenGroup]) -> Result<(), StoreError> {
    let mut synced: Vec<&Arc<File>> = Vec::new();
    for group in batch {
        if let Some(file) = &group.unsynced
            && !synced.iter().any(|done| Arc::ptr_eq(done, file))
        {
            file.sync_data()
                .map_err(|error| StoreError::io("fdatasync a segment", error))?;
            synced.push(file);
        }
    }
    Ok(())
}

/// Makes a durable group visible: in-memory state and Merkle tree. Applied in slices so the lock
/// is never held long; a reader may see part of a group, all of it durable.
fn make_visible(shared: &Shared, group: &WrittenGroup) -> Result<(), StoreError> {
    const SLICE_RECORDS: usize = 512;
    let records = &group.records;
    for start in (0..records.records.len()).step_by(SLICE_RECORDS) {
        let end = (start + SLICE_RECORDS).min(records.records.len());
        let mut index = shared.index_mut()?;
        if start == 0 {
            // Every segment the group touched, with its final length; later slices' frames are
            // all within these lengths.
            for segment in &group.segments {
                match index.segments.last_mut() {
                    Some(last) if last.first_position == segment.first_position => {
                        last.len = segment.len
                    }
                    _ => index.segments.push(segment.clone()),
                }
            }
        }
        for at in start..end {
            let envelope = &records.records[at].envelope;
            if index.head.next() != envelope.position || index.offsets.len() as u64 != index.head.0
            {
                return Err(StoreError::Corrupt {
                    position: Some(envelope.position),
                    detail: format!(
                        "broken invariant: committing position {} after head {}",
                        envelope.position, index.head
                    ),
                });
            }
            index.offsets.push(group.offsets[at]);
            index.tree.push(records.leaves[at]);
            let entry = (envelope.stream_version, envelope.position);
            match index.streams.get_mut(&envelope.stream) {
                Some(state) if state.version.next() == envelope.stream_version => {
                    state.version = envelope.stream_version;
                    state.pending.push_back(entry);
                }
                None if envelope.stream_version == StreamVersion(1) => {
                    let mut state = StreamState {
                        version: envelope.stream_version,
                        pending: VecDeque::new(),
                    };
                    state.pending.push_back(entry);
                    index.streams.insert(envelope.stream.clone(), state);
                }
                _ => {
                    return Err(StoreError::Corrupt {
                        position: Some(envelope.position),
                        detail: format!(
                            "broken invariant: version {} of {} does not follow the stream's version",
                            envelope.stream_version, envelope.stream
                        ),
                    });
                }
            }
            index
                .pending_event_ids
                .insert(envelope.event_id, envelope.position);
            index.head = envelope.position;
        }
    }
    Ok(())
}
