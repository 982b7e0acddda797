//! Reading every segment from the start: recovery on open (which may cut a torn tail) and
//! [`verify_segments`] (which never modifies anything).
//!
//! # Torn tails, and what is never cut
//!
//! A crash during a write can leave a **torn tail**: a frame at the end of the last segment that
//! is short or fails its checksum, with nothing valid after it. Its records were never
//! acknowledged (an append is acknowledged only after its `fdatasync`), so the open cuts it.
//!
//! A torn write can only hit records that were never synced, so a bad frame at a position known
//! to have been acknowledged is damage, whatever it looks like, and is never cut: the open and
//! [`verify_segments`] refuse it with `StoreError::Corrupt` naming that position. Two records
//! outside the segments say what was acknowledged ([`Acknowledged`]):
//!
//! - the tree size of the latest checkpoint in `checkpoints.log` (a checkpoint is saved only
//!   over acknowledged records, and fdatasync'd);
//! - the sled index's `indexed_through` (the indexer receives records only after their sync).
//!   The open uses it; [`verify_segments`] does not, because opening sled writes to it, and a
//!   verification changes nothing.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cairn_ledger::{
    Hash, MerkleFrontier, Position, Record, SignedCheckpoint, StreamId, StreamVersion, Timestamp,
};
use cairn_store::StoreError;
use tracing::{info, instrument, warn};

use crate::checkpoints::{CHECKPOINTS_FILE, check_root, read_log};
use crate::frames::{FrameSource, FramesEnd, scan_frames};
use crate::segment::{
    FrameParse, PREPARED_SEGMENT_FILE, SEGMENT_HEADER_BYTES, SEGMENTS_DIR, decode_header,
    parse_frame, parse_segment_file_name, sync_dir,
};

/// Whether a scan may repair a torn tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanMode {
    /// Opening the store: cut a torn tail (truncate, sync) and carry on.
    Repair,
    /// Verifying a stopped store: report a torn tail, change nothing.
    ReadOnly,
}

/// One segment as the scan left it.
#[derive(Clone, Debug)]
pub(crate) struct ScannedSegment {
    /// Position of its first record (also its file name).
    pub first_position: Position,
    /// Its path.
    pub path: PathBuf,
    /// Its length in bytes after any cut: the end of its last whole frame.
    pub len: u64,
    /// How many records it holds.
    pub records: u64,
}

/// A torn tail found at the end of the last segment.
#[derive(Clone, Debug)]
pub(crate) struct TornTail {
    /// The segment.
    pub segment: PathBuf,
    /// The position the first cut frame would have had.
    pub position: Position,
    /// Where the cut starts.
    pub offset: u64,
    /// How many bytes were (or would be) cut.
    pub bytes: u64,
}

/// What a scan found.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// The segments in position order.
    pub segments: Vec<ScannedSegment>,
    /// The last position ([`Position::ZERO`] for an empty ledger).
    pub last_position: Position,
    /// The torn tail, if there was one.
    pub torn_tail: Option<TornTail>,
}

/// What is known to have been acknowledged, from records kept apart from the segments. A bad
/// frame at or below it is damage, never a torn tail.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Acknowledged {
    /// The tree size of the latest checkpoint in `checkpoints.log` (0 if there is none).
    pub checkpoint_size: u64,
    /// The sled index's `indexed_through` ([`Position::ZERO`] when unknown).
    pub indexed_through: Position,
}

impl Acknowledged {
    /// Refuses to cut the frame of `position` as a torn tail if it was acknowledged; `problem`
    /// says what is wrong with the frame and where.
    fn refuse_cut(&self, position: Position, problem: &str) -> Result<(), StoreError> {
        let mut known = Vec::new();
        if position.0 <= self.checkpoint_size {
            known.push(format!(
                "the latest checkpoint in checkpoints.log covers {} records",
                self.checkpoint_size
            ));
        }
        if position <= self.indexed_through {
            known.push(format!(
                "the index holds records through position {}",
                self.indexed_through
            ));
        }
        if known.is_empty() {
            return Ok(());
        }
        Err(StoreError::Corrupt {
            position: Some(position),
            detail: format!(
                "{problem}; position {position} was acknowledged ({}), so this is damage to an \
                 acknowledged record, not a torn write, and it is not cut",
                known.join(", and ")
            ),
        })
    }
}

/// One record as the scan meets it.
pub(crate) struct ScannedRecord<'a> {
    /// The decoded, checked record.
    pub record: &'a Record,
    /// Its Merkle leaf hash.
    pub leaf: Hash,
    /// The byte offset of its frame in its segment.
    pub offset: u64,
}

/// How much of a segment is read at once.
const READ_WINDOW_BYTES: usize = 4 << 20;

/// Reads the segments under `dir` (the data directory) in position order, checking every frame
/// (checksum, envelope decoding, payload commitment, gapless positions) and calling `visit` for
/// each record. Stops at the first damage with [`StoreError::Corrupt`] naming its position,
/// except a torn tail, which [`ScanMode::Repair`] cuts and [`ScanMode::ReadOnly`] reports. A bad
/// frame at or below `acknowledged` is damage, never a torn tail.
pub(crate) fn scan_segments(
    dir: &Path,
    mode: ScanMode,
    acknowledged: Acknowledged,
    visit: &mut dyn FnMut(ScannedRecord<'_>) -> Result<(), StoreError>,
) -> Result<ScanOutcome, StoreError> {
    let segments_dir = dir.join(SEGMENTS_DIR);
    let mut files = list_segments(&segments_dir)?;
    let mut outcome = ScanOutcome {
        segments: Vec::with_capacity(files.len()),
        last_position: Position::ZERO,
        torn_tail: None,
    };
    let count = files.len();
    for (index, (named_first, path)) in files.drain(..).enumerate() {
        let is_last = index + 1 == count;
        let expected = outcome.last_position.next();
        let segment = SegmentFile {
            path: &path,
            named_first,
            expected,
            is_last,
        };
        let segment = scan_one(segment, mode, acknowledged, &mut outcome, visit)?;
        if let Some(segment) = segment {
            if segment.records > 0 {
                outcome.last_position = Position(segment.first_position.0 + segment.records - 1);
            }
            outcome.segments.push(segment);
        }
    }
    Ok(outcome)
}

/// The segment files under `segments_dir`, sorted by first position. A missing folder is an
/// empty ledger.
fn list_segments(segments_dir: &Path) -> Result<Vec<(Position, PathBuf)>, StoreError> {
    let entries = match fs::read_dir(segments_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(StoreError::io(
                format!("list segments in {}", segments_dir.display()),
                error,
            ));
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| {
            StoreError::io(
                format!("list segments in {}", segments_dir.display()),
                error,
            )
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        match parse_segment_file_name(&name) {
            Some(first) => files.push((first, entry.path())),
            None if name == PREPARED_SEGMENT_FILE => {}
            None if name.ends_with(".seg") => {
                return Err(StoreError::Corrupt {
                    position: None,
                    detail: format!(
                        "segment file {} does not have a valid name",
                        entry.path().display()
                    ),
                });
            }
            None => warn!(file = %entry.path().display(), "ignoring a file that is not a segment"),
        }
    }
    files.sort();
    Ok(files)
}

/// A window over a file, so frames can be parsed from memory without reading the whole file.
struct Window<'a> {
    file: &'a File,
    path: &'a Path,
    file_len: u64,
    start: u64,
    data: Vec<u8>,
}

impl Window<'_> {
    /// Up to `want` bytes from `offset` (fewer only at the end of the file).
    fn get(&mut self, offset: u64, want: usize) -> Result<&[u8], StoreError> {
        let available = (self.file_len.saturating_sub(offset)).min(want as u64) as usize;
        let end = offset + available as u64;
        if offset < self.start || end > self.start + self.data.len() as u64 {
            let read = (self.file_len - offset).min(want.max(READ_WINDOW_BYTES) as u64) as usize;
            self.data.resize(read, 0);
            self.file
                .read_exact_at(&mut self.data, offset)
                .map_err(|error| {
                    StoreError::io(
                        format!("read segment {} at offset {offset}", self.path.display()),
                        error,
                    )
                })?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(&self.data[from..from + available])
    }
}

/// A segment file about to be scanned.
struct SegmentFile<'a> {
    path: &'a Path,
    /// The first position its name gives.
    named_first: Position,
    /// The position that comes next in the ledger, which it must start at.
    expected: Position,
    /// Whether it is the last segment (the only one that can have a torn tail).
    is_last: bool,
}

/// Scans one segment file; `None` when it was a torn, empty last segment (removed in repair
/// mode).
fn scan_one(
    SegmentFile {
        path,
        named_first,
        expected,
        is_last,
    }: SegmentFile<'_>,
    mode: ScanMode,
    acknowledged: Acknowledged,
    outcome: &mut ScanOutcome,
    visit: &mut dyn FnMut(ScannedRecord<'_>) -> Result<(), StoreError>,
) -> Result<Option<ScannedSegment>, StoreError> {
    let name = path.display().to_string();
    let file =
        File::open(path).map_err(|error| StoreError::io(format!("open segment {name}"), error))?;
    let file_len = file
        .metadata()
        .map_err(|error| StoreError::io(format!("stat segment {name}"), error))?
        .len();
    let mut window = Window {
        file: &file,
        path,
        file_len,
        start: 0,
        data: Vec::new(),
    };
    let corrupt = |position: Position, detail: String| StoreError::Corrupt {
        position: Some(position),
        detail,
    };

    let header = window.get(0, SEGMENT_HEADER_BYTES as usize)?.to_vec();
    let header_torn =
        header.len() < SEGMENT_HEADER_BYTES as usize || header.iter().all(|&b| b == 0);
    if header_torn && is_last && all_zero_from(&mut window, 0)? {
        // The crash came while the segment was being created: no frame was ever written to it.
        acknowledged.refuse_cut(
            expected,
            &format!("the last segment {name} holds nothing but zeros, not even its header"),
        )?;
        outcome.torn_tail = Some(TornTail {
            segment: path.to_path_buf(),
            position: expected,
            offset: 0,
            bytes: file_len,
        });
        if mode == ScanMode::Repair {
            drop(window);
            drop(file);
            fs::remove_file(path)
                .map_err(|error| StoreError::io(format!("remove torn segment {name}"), error))?;
            let parent = path.parent().unwrap_or(Path::new("."));
            sync_dir(parent)
                .map_err(|error| StoreError::io(format!("sync {}", parent.display()), error))?;
            warn!(segment = %name, position = expected.0, bytes_cut = file_len, "removed a torn, empty last segment");
        }
        return Ok(None);
    }
    let first = decode_header(&header)
        .map_err(|reason| corrupt(expected, format!("segment {name}: {reason}")))?;
    if first != named_first {
        return Err(corrupt(
            expected,
            format!(
                "segment {name} says its first position is {first}, its name says {named_first}"
            ),
        ));
    }
    if first != expected {
        return Err(corrupt(
            expected,
            format!(
                "segment {name} starts at position {first}, but position {expected} comes next"
            ),
        ));
    }

    let source = FrameSource {
        file: &file,
        name: &name,
        file_len,
        start: SEGMENT_HEADER_BYTES,
        first,
    };
    let frames = scan_frames(source, &mut |frame| {
        visit(ScannedRecord {
            record: frame.record,
            leaf: frame.leaf,
            offset: frame.offset,
        })
    })?;
    let FramesEnd {
        offset,
        next,
        problem,
    } = frames;
    // Zero padding (preallocated space the writer has not reached) ends the segment, and
    // `scan_frames` reports no problem for it; anything else after the last valid frame is a
    // torn tail or damage.
    if let Some(problem) = problem
        && !all_zero_from(&mut window, offset)?
    {
        if !is_last {
            return Err(corrupt(
                next,
                format!("{problem} at offset {offset} of segment {name}"),
            ));
        }
        acknowledged.refuse_cut(
            next,
            &format!("{problem} at offset {offset} of the last segment {name}"),
        )?;
        if let Some(valid_at) = valid_frame_after(&file, path, offset + 1, file_len)? {
            return Err(corrupt(
                next,
                format!(
                    "{problem} at offset {offset} of the last segment {name}, and a valid frame \
                     follows at offset {valid_at}: this is damage, not a torn write"
                ),
            ));
        }
        let bytes = file_len - offset;
        outcome.torn_tail = Some(TornTail {
            segment: path.to_path_buf(),
            position: next,
            offset,
            bytes,
        });
        if mode == ScanMode::Repair {
            drop(window);
            drop(file);
            cut(path, offset)?;
            warn!(
                segment = %name,
                position = next.0,
                offset,
                bytes_cut = bytes,
                %problem,
                "cut a torn tail: these bytes were never acknowledged"
            );
        } else {
            info!(segment = %name, position = next.0, offset, bytes, %problem, "found a torn tail");
        }
    }
    Ok(Some(ScannedSegment {
        first_position: first,
        path: path.to_path_buf(),
        len: offset,
        records: next.0 - first.0,
    }))
}

/// Whether every byte from `offset` to the end of the file is zero.
fn all_zero_from(window: &mut Window<'_>, mut offset: u64) -> Result<bool, StoreError> {
    while offset < window.file_len {
        let bytes = window.get(offset, READ_WINDOW_BYTES)?;
        if bytes.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        offset += bytes.len() as u64;
    }
    Ok(true)
}

/// The offset of the first checksum-valid frame starting anywhere in `from..file_len`, if any.
/// Only runs after a bad frame in the last segment, to tell a torn write (nothing valid after it)
/// from damage (valid frames after it). A false match needs a random 64-bit checksum to match.
fn valid_frame_after(
    file: &File,
    path: &Path,
    from: u64,
    file_len: u64,
) -> Result<Option<u64>, StoreError> {
    if from >= file_len {
        return Ok(None);
    }
    let mut rest = vec![0u8; (file_len - from) as usize];
    file.read_exact_at(&mut rest, from).map_err(|error| {
        StoreError::io(
            format!("read segment {} at offset {from}", path.display()),
            error,
        )
    })?;
    let mut start = 0;
    while start < rest.len() {
        if let FrameParse::Frame { .. } = parse_frame(&rest[start..]) {
            return Ok(Some(from + start as u64));
        }
        if rest[start] == 0 {
            // Skip a run of zeros (padding, usually): a frame's 4-byte length is never zero, so
            // a frame starts at most 3 bytes before the next non-zero byte.
            match rest[start..].iter().position(|&byte| byte != 0) {
                Some(non_zero) => start = (start + non_zero).saturating_sub(3).max(start + 1),
                None => break,
            }
        } else {
            start += 1;
        }
    }
    Ok(None)
}

/// Truncates a segment to `len` bytes and syncs it (the size is metadata: a full sync).
fn cut(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = File::options().write(true).open(path).map_err(|error| {
        StoreError::io(
            format!("open segment {} to cut its torn tail", path.display()),
            error,
        )
    })?;
    file.set_len(len).map_err(|error| {
        StoreError::io(format!("cut segment {} at {len}", path.display()), error)
    })?;
    file.sync_all().map_err(|error| {
        StoreError::io(
            format!("sync segment {} after the cut", path.display()),
            error,
        )
    })
}

/// Checks the invariants that span records: stream versions are gapless per stream and the
/// recorded time never goes back along positions.
#[derive(Default)]
pub(crate) struct LedgerChecks {
    /// The version each stream has reached.
    pub streams: HashMap<StreamId, StreamVersion>,
    /// The recorded time of the last record.
    pub last_recorded_at: Timestamp,
}

impl LedgerChecks {
    /// Checks the next record in position order.
    pub(crate) fn check(&mut self, record: &Record) -> Result<(), StoreError> {
        let envelope = &record.envelope;
        let corrupt = |detail: String| StoreError::Corrupt {
            position: Some(envelope.position),
            detail,
        };
        if envelope.recorded_at < self.last_recorded_at {
            return Err(corrupt(format!(
                "recorded time {} goes back from {}",
                envelope.recorded_at.0, self.last_recorded_at.0
            )));
        }
        self.last_recorded_at = envelope.recorded_at;
        match self.streams.get_mut(&envelope.stream) {
            Some(version) => {
                if envelope.stream_version != version.next() {
                    return Err(corrupt(format!(
                        "stream {} jumps from version {version} to {}",
                        envelope.stream, envelope.stream_version
                    )));
                }
                *version = envelope.stream_version;
            }
            None => {
                if envelope.stream_version != StreamVersion(1) {
                    return Err(corrupt(format!(
                        "stream {} starts at version {}",
                        envelope.stream, envelope.stream_version
                    )));
                }
                self.streams
                    .insert(envelope.stream.clone(), envelope.stream_version);
            }
        }
        Ok(())
    }
}

/// What [`verify_segments`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many records were verified.
    pub records: u64,
    /// The Merkle root of the tree of all of them (the empty root for an empty ledger).
    pub root: Hash,
    /// The last position ([`Position::ZERO`] for an empty ledger).
    pub last_position: Position,
    /// How many segment files were read.
    pub segments: u64,
    /// Bytes of a torn tail at the end of the last segment (a crash during a write that was never
    /// acknowledged), which the next open of the store will cut; 0 when there is none.
    pub torn_tail_bytes: u64,
    /// How many checkpoints `checkpoints.log` holds; each signs the root recomputed at its size.
    pub checkpoints: u64,
    /// The newest of them, if any.
    pub latest_checkpoint: Option<StoredCheckpoint>,
}

/// A checkpoint stored in `checkpoints.log`, beside the root the segments give at its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The checkpoint as stored. Its signature is not checked: that needs the key the verifier
    /// trusts ([`SignedCheckpoint::verify`]).
    pub checkpoint: SignedCheckpoint,
    /// The Merkle root recomputed from the segments at the checkpoint's tree size.
    pub recomputed_root: Hash,
}

/// How often [`verify_segments`] reports progress, in records.
const VERIFY_PROGRESS_RECORDS: u64 = 10_000;

/// Verifies the segment files of a stopped store, reading them only: every frame's checksum,
/// every envelope's decoding and position, every payload's commitment, gapless positions and
/// stream versions, the Merkle root over all of it, and every checkpoint in `checkpoints.log`
/// against the root recomputed at its tree size. Needs no lock and no index; it must not run
/// while a store has the directory open (it may then see a write in progress as a torn tail).
/// `progress` is called with the number of records verified so far, every 10,000 records and at
/// the end.
///
/// On the first damage it returns [`StoreError::Corrupt`] with the position of the record whose
/// frame is damaged. A torn tail is not damage: it is reported in
/// [`VerifyReport::torn_tail_bytes`]; but a bad frame at or below the tree size of the latest
/// checkpoint was acknowledged, so it is damage (see the module docs). A checkpoint whose root is
/// not the recomputed root at its size, or that covers more records than the segments hold, is
/// [`StoreError::Corrupt`] naming its tree size. Signatures are left to the caller, who knows
/// which key to trust ([`VerifyReport::latest_checkpoint`]).
#[instrument(skip(progress), fields(dir = %dir.display()))]
pub fn verify_segments(
    dir: &Path,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    let checkpoints_path = dir.join(CHECKPOINTS_FILE);
    let checkpoint_log = read_log(&checkpoints_path)?;
    let acknowledged = Acknowledged {
        checkpoint_size: checkpoint_log.latest_tree_size(),
        indexed_through: Position::ZERO,
    };
    let mut frontier = MerkleFrontier::default();
    let mut checks = LedgerChecks::default();
    let mut records = 0u64;
    let mut roots = CheckpointRoots::new(&checkpoint_log.entries, &checkpoints_path);
    roots.check_at(records, &frontier)?;
    let outcome = scan_segments(dir, ScanMode::ReadOnly, acknowledged, &mut |scanned| {
        checks.check(scanned.record)?;
        frontier.push(scanned.leaf);
        records += 1;
        roots.check_at(records, &frontier)?;
        if records.is_multiple_of(VERIFY_PROGRESS_RECORDS) {
            progress(records);
        }
        Ok(())
    })?;
    progress(records);
    debug_assert_eq!(outcome.last_position, Position(records));
    let latest_checkpoint = roots.finish(records)?;
    Ok(VerifyReport {
        records,
        root: frontier.root(),
        last_position: outcome.last_position,
        segments: outcome.segments.len() as u64,
        torn_tail_bytes: outcome.torn_tail.map_or(0, |torn| torn.bytes),
        checkpoints: checkpoint_log.entries.len() as u64,
        latest_checkpoint,
    })
}

/// Checks stored checkpoints against a [`MerkleFrontier`] as it grows: each checkpoint's root when
/// the frontier reaches its tree size (tree sizes never decrease along the log).
struct CheckpointRoots<'a> {
    entries: &'a [SignedCheckpoint],
    path: &'a Path,
    /// The first entry not yet checked.
    next: usize,
    /// The root at the latest entry's size, once reached.
    latest_root: Option<Hash>,
}

impl<'a> CheckpointRoots<'a> {
    fn new(entries: &'a [SignedCheckpoint], path: &'a Path) -> CheckpointRoots<'a> {
        CheckpointRoots {
            entries,
            path,
            next: 0,
            latest_root: None,
        }
    }

    /// Checks every checkpoint of tree size `records`, the frontier's size.
    fn check_at(&mut self, records: u64, frontier: &MerkleFrontier) -> Result<(), StoreError> {
        let mut root = None;
        while let Some(checkpoint) = self.entries.get(self.next)
            && checkpoint.checkpoint.tree_size == records
        {
            let recomputed = *root.get_or_insert_with(|| frontier.root());
            check_root(self.path, self.next, checkpoint, Some(recomputed), records)?;
            self.latest_root = Some(recomputed);
            self.next += 1;
        }
        Ok(())
    }

    /// After the last record (`records` in all): fails on a checkpoint the segments did not
    /// reach, and returns the latest checkpoint with its recomputed root.
    fn finish(self, records: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        if let Some(checkpoint) = self.entries.get(self.next) {
            check_root(self.path, self.next, checkpoint, None, records)?;
        }
        Ok(self
            .entries
            .last()
            .zip(self.latest_root)
            .map(|(checkpoint, root)| StoredCheckpoint {
                checkpoint: checkpoint.clone(),
                recomputed_root: root,
            }))
    }
}
