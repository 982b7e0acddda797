//! Reading a segment's frames on every core, and visiting their records in position order.
//!
//! Checking a record costs far more than reading it: the frame checksum, the envelope's decoding
//! (and its canonical re-encoding), the payload's decoding and commitment, and the leaf hash,
//! about two microseconds per record on one core. So the work is split:
//!
//! - a **reader** thread reads the segment in chunks of whole frames (it only walks the length
//!   fields) and deals each chunk, as a job, to the workers in turn;
//! - **workers**, one per core, check each frame's checksum, decode its record at the position
//!   its place gives it, and compute its leaf hash;
//! - the calling thread takes the jobs' results **in file order** and visits the records one by
//!   one, exactly as a serial scan would, then hands each job's records back to the worker that
//!   decoded them to be freed there (an allocator frees fastest on the thread that allocated).
//!
//! So the outcome does not depend on the threads: records are visited in position order, and the
//! first bad frame the caller sees is the one at the lowest position (a worker stops a job at its
//! first bad frame; the caller stops at the first job that reports one, and never looks at later
//! jobs). Read-ahead is bounded: at most [`JOBS_AHEAD_PER_WORKER`] jobs per worker, of
//! [`CHUNK_BYTES`] each (more only for a frame that is larger by itself).

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread;

use cairn_ledger::{Hash, Position, Record};
use cairn_store::StoreError;

use crate::segment::{
    FRAME_BODY_BYTES_MAX, FRAME_BODY_BYTES_MIN, FRAME_HEADER_BYTES, FrameParse, decode_body,
    parse_frame,
};

/// Bytes read at once, and handed to a worker as one job (a frame larger than this gets a job of
/// its own size).
const CHUNK_BYTES: usize = 256 << 10;
/// Most jobs read ahead of the record being visited, per worker.
const JOBS_AHEAD_PER_WORKER: usize = 3;
/// Most worker threads, whatever the core count.
const WORKERS_MAX: usize = 8;

/// One checked record as the caller visits it.
pub(crate) struct FrameRecord<'a> {
    /// The decoded record, at the position its frame's place gives it.
    pub record: &'a Record,
    /// Its Merkle leaf hash.
    pub leaf: Hash,
    /// The byte offset of its frame in its segment.
    pub offset: u64,
}

/// Where the whole, valid frames of a segment end.
#[derive(Debug)]
pub(crate) struct FramesEnd {
    /// The offset just after the last valid frame.
    pub offset: u64,
    /// The position the frame at `offset` would hold.
    pub next: Position,
    /// What is wrong with the bytes at `offset`; `None` when the file ends there or only zero
    /// padding follows.
    pub problem: Option<String>,
}

/// A run of consecutive frames, whole and with possible lengths, read in one piece.
struct Job {
    bytes: Vec<u8>,
    /// Where `bytes` starts in the file.
    start: u64,
    /// The position of the first frame.
    first_position: Position,
    /// How many frames `bytes` holds, back to back from its start.
    frames: usize,
    /// Where the result goes.
    result: SyncSender<JobResult>,
}

/// One frame checked and decoded by a worker.
struct Decoded {
    record: Record,
    leaf: Hash,
    offset: u64,
    frame_bytes: u64,
}

/// What a worker found in a job: its records in order, up to the first bad frame.
struct JobResult {
    worker: usize,
    decoded: Vec<Decoded>,
    /// The first bad frame, which ends the job.
    fault: Option<Fault>,
}

enum Fault {
    /// A frame whose checksum does not match: maybe a torn write, which the caller decides.
    BadFrame { offset: u64, problem: String },
    /// A frame whose checksum matches but whose record is wrong: corruption.
    Corrupt(StoreError),
}

/// What the reader hands the caller, in file order.
enum Ahead {
    /// A job's result, once a worker has it.
    Job(Receiver<JobResult>),
    /// The frames end: at the end of the file or of the frames before zero padding (no problem),
    /// or at bytes that are not a possible frame.
    End {
        offset: u64,
        problem: Option<String>,
    },
    /// Reading failed.
    Failed(StoreError),
}

/// How many workers a scan uses: one per core.
fn workers() -> usize {
    thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .clamp(1, WORKERS_MAX)
}

/// The frames of one segment file to scan.
#[derive(Clone, Copy)]
pub(crate) struct FrameSource<'a> {
    /// The segment file.
    pub file: &'a File,
    /// Its name, for messages.
    pub name: &'a str,
    /// Its length.
    pub file_len: u64,
    /// The offset of its first frame.
    pub start: u64,
    /// The position of its first frame.
    pub first: Position,
}

/// Checks and decodes the frames of `source` and calls `visit` for each record in position
/// order. Returns where the valid frames end and, if the file goes on after them, what is wrong
/// there (a short frame, an impossible length or a bad checksum: the caller tells padding, a torn
/// tail and damage apart). A frame whose checksum matches but whose record is wrong is
/// corruption, returned as [`StoreError::Corrupt`] with its position; so is an error from
/// `visit`, which ends the scan.
pub(crate) fn scan_frames(
    source: FrameSource<'_>,
    visit: &mut dyn FnMut(FrameRecord<'_>) -> Result<(), StoreError>,
) -> Result<FramesEnd, StoreError> {
    scan_frames_in_chunks(source, CHUNK_BYTES, visit)
}

/// [`scan_frames`], reading `chunk_bytes` at a time (tests use small chunks, so that frames
/// straddle chunks and outgrow them).
fn scan_frames_in_chunks(
    source: FrameSource<'_>,
    chunk_bytes: usize,
    visit: &mut dyn FnMut(FrameRecord<'_>) -> Result<(), StoreError>,
) -> Result<FramesEnd, StoreError> {
    let FrameSource { name, first, .. } = source;
    let workers = workers();
    let (ahead_sender, ahead) = sync_channel(workers * JOBS_AHEAD_PER_WORKER);
    let mut job_senders = Vec::new();
    let mut spent_senders = Vec::new();
    let mut worker_ends = Vec::new();
    for _ in 0..workers {
        let (job_sender, jobs) = sync_channel::<Job>(JOBS_AHEAD_PER_WORKER);
        let (spent_sender, spent) = channel::<Vec<Decoded>>();
        job_senders.push(job_sender);
        spent_senders.push(spent_sender);
        worker_ends.push((jobs, spent));
    }
    thread::scope(|scope| {
        let reader = thread::Builder::new()
            .name("cairn-scan-reader".into())
            .spawn_scoped(scope, move || {
                read_jobs(source, chunk_bytes, &job_senders, &ahead_sender);
            })
            .map_err(|error| StoreError::io("start a scan reader thread", error))?;
        let mut helpers = vec![reader];
        for (index, (jobs, spent)) in worker_ends.into_iter().enumerate() {
            let worker = thread::Builder::new()
                .name("cairn-scan-worker".into())
                .spawn_scoped(scope, move || decode_jobs(index, jobs, spent, name))
                .map_err(|error| StoreError::io("start a scan worker thread", error))?;
            helpers.push(worker);
        }
        // Consuming `ahead` drops it on return, which stops the reader, which stops the workers.
        let end = visit_in_order(ahead, &spent_senders, first, visit);
        let panicked = helpers
            .into_iter()
            .map(|helper| helper.join())
            .any(|joined| joined.is_err());
        match end {
            Ok(_) if panicked => Err(StoreError::Unavailable(format!(
                "a thread scanning segment {name} panicked"
            ))),
            end => end,
        }
    })
}

/// The caller's side: the results in file order, each record visited in turn.
fn visit_in_order(
    ahead: Receiver<Ahead>,
    spent: &[Sender<Vec<Decoded>>],
    first: Position,
    visit: &mut dyn FnMut(FrameRecord<'_>) -> Result<(), StoreError>,
) -> Result<FramesEnd, StoreError> {
    let stopped = || StoreError::Unavailable("a segment scan thread stopped early".into());
    let mut next = first;
    loop {
        match ahead.recv().map_err(|_| stopped())? {
            Ahead::Job(result) => {
                let result = result.recv().map_err(|_| stopped())?;
                let mut end = None;
                for decoded in &result.decoded {
                    debug_assert_eq!(decoded.record.position(), next);
                    visit(FrameRecord {
                        record: &decoded.record,
                        leaf: decoded.leaf,
                        offset: decoded.offset,
                    })?;
                    next = next.next();
                    end = Some(decoded.offset + decoded.frame_bytes);
                }
                let _ = spent[result.worker].send(result.decoded);
                match result.fault {
                    None => {}
                    Some(Fault::Corrupt(error)) => return Err(error),
                    Some(Fault::BadFrame { offset, problem }) => {
                        debug_assert!(end.is_none_or(|end| end == offset));
                        return Ok(FramesEnd {
                            offset,
                            next,
                            problem: Some(problem),
                        });
                    }
                }
            }
            Ahead::End { offset, problem } => {
                return Ok(FramesEnd {
                    offset,
                    next,
                    problem,
                });
            }
            Ahead::Failed(error) => return Err(error),
        }
    }
}

/// The reader thread: reads chunks of whole frames and deals them to the workers in turn, and
/// their results' receivers to the caller, in file order. Stops at the end of the frames, or as
/// soon as the caller stops listening.
fn read_jobs(
    source: FrameSource<'_>,
    chunk_bytes: usize,
    jobs: &[SyncSender<Job>],
    ahead: &SyncSender<Ahead>,
) {
    let FrameSource {
        file,
        name,
        file_len,
        start: mut offset,
        first: mut next,
    } = source;
    let header = FRAME_HEADER_BYTES as usize;
    let chunk_bytes = chunk_bytes.max(header);
    let mut want = chunk_bytes;
    let mut sent = 0usize;
    loop {
        if offset >= file_len {
            let _ = ahead.send(Ahead::End {
                offset,
                problem: None,
            });
            return;
        }
        let len = (file_len - offset).min(want as u64) as usize;
        let mut bytes = vec![0u8; len];
        if let Err(error) = file.read_exact_at(&mut bytes, offset) {
            let error = StoreError::io(format!("read segment {name} at offset {offset}"), error);
            let _ = ahead.send(Ahead::Failed(error));
            return;
        }
        // Walk the length fields: whole frames with possible lengths go to the job; the first
        // frame that is not whole in the file, or has an impossible length, ends the frames.
        let mut at = 0usize;
        let mut frames = 0usize;
        let mut problem = None;
        want = chunk_bytes;
        loop {
            let in_file = file_len - offset - at as u64;
            let in_chunk = len - at;
            if in_file == 0 {
                break;
            }
            if in_file < header as u64 {
                problem = Some(FrameParse::Short.problem());
                break;
            }
            if in_chunk < header {
                break;
            }
            let body_len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            if !(FRAME_BODY_BYTES_MIN..=FRAME_BODY_BYTES_MAX).contains(&(body_len as usize)) {
                problem = Some(FrameParse::BadLength(body_len).problem());
                break;
            }
            let frame_bytes = header + body_len as usize;
            if frame_bytes as u64 > in_file {
                problem = Some(FrameParse::Short.problem());
                break;
            }
            if frame_bytes > in_chunk {
                if frames == 0 {
                    // A frame larger than a chunk: read it whole next time.
                    want = frame_bytes;
                }
                break;
            }
            at += frame_bytes;
            frames += 1;
        }
        if frames > 0 {
            bytes.truncate(at);
            let (result, receiver) = sync_channel(1);
            let job = Job {
                bytes,
                start: offset,
                first_position: next,
                frames,
                result,
            };
            if ahead.send(Ahead::Job(receiver)).is_err()
                || jobs[sent % jobs.len()].send(job).is_err()
            {
                return;
            }
            sent += 1;
            offset += at as u64;
            next = Position(next.0 + frames as u64);
        }
        if let Some(problem) = problem {
            // Checked here, while the workers finish the last jobs, rather than by the caller
            // once they are done: the padding of a preallocated segment can be most of it.
            let problem = match zeros_to_end(file, name, offset, file_len) {
                Ok(true) => None,
                Ok(false) => Some(problem),
                Err(error) => {
                    let _ = ahead.send(Ahead::Failed(error));
                    return;
                }
            };
            let _ = ahead.send(Ahead::End { offset, problem });
            return;
        }
    }
}

/// Whether every byte of `file` from `offset` to `file_len` is zero: zero padding that the
/// writer has not reached (a frame's length is never zero).
fn zeros_to_end(
    file: &File,
    name: &str,
    mut offset: u64,
    file_len: u64,
) -> Result<bool, StoreError> {
    let mut buffer = Vec::new();
    while offset < file_len {
        let len = (file_len - offset).min(CHUNK_BYTES as u64) as usize;
        buffer.resize(len, 0);
        file.read_exact_at(&mut buffer, offset).map_err(|error| {
            StoreError::io(format!("read segment {name} at offset {offset}"), error)
        })?;
        if buffer.iter().any(|&byte| byte != 0) {
            return Ok(false);
        }
        offset += len as u64;
    }
    Ok(true)
}

/// A worker thread: checks and decodes jobs until the reader is done.
fn decode_jobs(index: usize, jobs: Receiver<Job>, spent: Receiver<Vec<Decoded>>, name: &str) {
    while let Ok(job) = jobs.recv() {
        while let Ok(decoded) = spent.try_recv() {
            drop(decoded);
        }
        let mut result = decode_job(&job, name);
        result.worker = index;
        // The caller may have stopped listening: then the result is not needed.
        let _ = job.result.send(result);
    }
}

/// Checks and decodes the frames of one job, stopping at the first bad one.
fn decode_job(job: &Job, name: &str) -> JobResult {
    let mut decoded = Vec::with_capacity(job.frames);
    let mut at = 0usize;
    let mut position = job.first_position;
    for _ in 0..job.frames {
        let offset = job.start + at as u64;
        match parse_frame(&job.bytes[at..]) {
            FrameParse::Frame { body, frame_bytes } => match decode_body(body, position) {
                Ok(record) => {
                    let leaf = record.leaf_hash();
                    decoded.push(Decoded {
                        record,
                        leaf,
                        offset,
                        frame_bytes: frame_bytes as u64,
                    });
                    at += frame_bytes;
                    position = position.next();
                }
                Err(error) => {
                    return JobResult {
                        worker: 0,
                        decoded,
                        fault: Some(Fault::Corrupt(with_location(error, name, offset))),
                    };
                }
            },
            bad => {
                return JobResult {
                    worker: 0,
                    decoded,
                    fault: Some(Fault::BadFrame {
                        offset,
                        problem: bad.problem(),
                    }),
                };
            }
        }
    }
    JobResult {
        worker: 0,
        decoded,
        fault: None,
    }
}

/// Adds the segment and offset to a corruption found while decoding a frame.
fn with_location(error: StoreError, segment: &str, offset: u64) -> StoreError {
    match error {
        StoreError::Corrupt { position, detail } => StoreError::Corrupt {
            position,
            detail: format!("{detail} (frame at offset {offset} of segment {segment})"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use cairn_ledger::SealedPayload;
    use cairn_store::testsuite::{event, stream};
    use cairn_store::{EventStore, ExpectedVersion};

    use super::*;
    use crate::segment::{SEGMENT_HEADER_BYTES, frame_checksum, segment_file_name};
    use crate::{EmbeddedOptions, EmbeddedStore};

    const RECORDS: u64 = 40;
    /// Chunk sizes from smaller than a frame header to larger than the whole segment.
    const CHUNKS: [usize; 7] = [1, 100, 333, 1000, 4096, 50_000, CHUNK_BYTES];

    /// A segment of `RECORDS` records with payloads of varied sizes (one of 40 KB), up to the
    /// end of its last frame, and the byte range of each frame.
    fn segment() -> (Vec<u8>, Vec<Range<usize>>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open");
        for n in 0..RECORDS {
            let mut new = event(&format!("frames-{n}"));
            let size = if n == 20 {
                40_000
            } else {
                (n as usize % 7) * 150 + 1
            };
            new.payload = SealedPayload {
                clear: vec![n as u8; size],
                sealed: None,
            }
            .encode();
            runtime
                .block_on(store.append(stream("frames"), ExpectedVersion::Any, vec![new]))
                .expect("append");
        }
        runtime.block_on(store.close());
        let path = dir
            .path()
            .join("segments")
            .join(segment_file_name(Position(1)));
        let bytes = std::fs::read(path).expect("read the segment");
        let mut frames = Vec::new();
        let mut at = SEGMENT_HEADER_BYTES as usize;
        loop {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len == 0 {
                break;
            }
            frames.push(at..at + 12 + len);
            at += 12 + len;
        }
        assert_eq!(frames.len() as u64, RECORDS);
        (bytes[..at].to_vec(), frames)
    }

    /// What a scan of `bytes` in chunks of `chunk_bytes` visited, and how it ended.
    struct Scanned {
        positions: Vec<u64>,
        offsets: Vec<u64>,
        leaves_match: bool,
        end: Result<FramesEnd, StoreError>,
    }

    fn scan(bytes: &[u8], chunk_bytes: usize, fail_at: Option<u64>) -> Scanned {
        let mut file = tempfile::tempfile().expect("tempfile");
        std::io::Write::write_all(&mut file, bytes).expect("write");
        let mut scanned = Scanned {
            positions: Vec::new(),
            offsets: Vec::new(),
            leaves_match: true,
            end: Err(StoreError::Unavailable("not run".into())),
        };
        let source = FrameSource {
            file: &file,
            name: "test.seg",
            file_len: bytes.len() as u64,
            start: SEGMENT_HEADER_BYTES,
            first: Position(1),
        };
        scanned.end = scan_frames_in_chunks(source, chunk_bytes, &mut |frame| {
            let position = frame.record.position().0;
            scanned.positions.push(position);
            scanned.offsets.push(frame.offset);
            scanned.leaves_match &= frame.leaf == frame.record.leaf_hash();
            if fail_at == Some(position) {
                return Err(StoreError::Unavailable(format!("stop at {position}")));
            }
            Ok(())
        });
        scanned
    }

    fn flip(bytes: &mut [u8], frame: &Range<usize>, inside: usize) {
        bytes[frame.start + inside] ^= 0x10;
    }

    /// Damages the payload of a frame and fixes its checksum: a frame that passes its checksum
    /// and holds a wrong record.
    fn corrupt_under_a_good_checksum(bytes: &mut [u8], frame: &Range<usize>) {
        bytes[frame.end - 1] ^= 0x10;
        let checksum = frame_checksum(&bytes[frame.start + 12..frame.end]);
        bytes[frame.start + 4..frame.start + 12].copy_from_slice(&checksum);
    }

    fn corrupt_position(end: Result<FramesEnd, StoreError>) -> Option<Position> {
        match end {
            Err(StoreError::Corrupt { position, .. }) => position,
            other => panic!("expected a corruption, got {other:?}"),
        }
    }

    #[test]
    fn every_chunk_size_visits_every_record_in_order() {
        let (bytes, frames) = segment();
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 100]);
        for chunk in CHUNKS {
            for file in [&bytes, &padded] {
                let scanned = scan(file, chunk, None);
                assert_eq!(scanned.positions, (1..=RECORDS).collect::<Vec<_>>());
                let offsets: Vec<u64> = frames.iter().map(|frame| frame.start as u64).collect();
                assert_eq!(scanned.offsets, offsets, "chunk {chunk}");
                assert!(scanned.leaves_match);
                let end = scanned.end.expect("no damage");
                assert_eq!(
                    (end.offset, end.next, end.problem),
                    (bytes.len() as u64, Position(RECORDS + 1), None),
                    "chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn the_lowest_bad_frame_is_reported_whatever_the_chunks() {
        let (bytes, frames) = segment();
        // Bad checksums at positions 7 and 31 (31 is decoded by another job at most chunk
        // sizes, and may finish first): the scan ends at 7.
        let mut two_bad = bytes.clone();
        flip(&mut two_bad, &frames[6], 30);
        flip(&mut two_bad, &frames[30], 30);
        // A wrong record under a good checksum at 12, a bad checksum at 30: corruption at 12.
        let mut corrupt_first = bytes.clone();
        corrupt_under_a_good_checksum(&mut corrupt_first, &frames[11]);
        flip(&mut corrupt_first, &frames[29], 30);
        // A bad checksum at 5, a wrong record at 21 (the large frame): the scan ends at 5.
        let mut bad_first = bytes.clone();
        flip(&mut bad_first, &frames[4], 30);
        corrupt_under_a_good_checksum(&mut bad_first, &frames[20]);
        // A frame cut short by the end of the file.
        let short = bytes[..frames[39].start + 20].to_vec();
        for chunk in CHUNKS {
            let scanned = scan(&two_bad, chunk, None);
            assert_eq!(scanned.positions, (1..=6).collect::<Vec<_>>());
            let end = scanned
                .end
                .expect("a bad checksum is for the caller to judge");
            assert_eq!(
                (end.offset, end.next, end.problem),
                (
                    frames[6].start as u64,
                    Position(7),
                    Some(FrameParse::BadChecksum.problem())
                ),
                "chunk {chunk}"
            );

            let scanned = scan(&corrupt_first, chunk, None);
            assert_eq!(scanned.positions, (1..=11).collect::<Vec<_>>());
            assert_eq!(corrupt_position(scanned.end), Some(Position(12)));

            let scanned = scan(&bad_first, chunk, None);
            let end = scanned
                .end
                .expect("a bad checksum is for the caller to judge");
            assert_eq!(
                (end.offset, end.next),
                (frames[4].start as u64, Position(5))
            );

            let scanned = scan(&short, chunk, None);
            let end = scanned
                .end
                .expect("a short frame is for the caller to judge");
            assert_eq!(
                (end.offset, end.next, end.problem),
                (
                    frames[39].start as u64,
                    Position(40),
                    Some(FrameParse::Short.problem())
                ),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn an_error_from_visit_ends_the_scan() {
        let (mut bytes, frames) = segment();
        flip(&mut bytes, &frames[30], 30);
        for chunk in CHUNKS {
            let scanned = scan(&bytes, chunk, Some(9));
            assert_eq!(scanned.positions, (1..=9).collect::<Vec<_>>());
            match scanned.end {
                Err(StoreError::Unavailable(message)) => assert_eq!(message, "stop at 9"),
                other => panic!("expected the visit's error, got {other:?}"),
            }
        }
    }
}
