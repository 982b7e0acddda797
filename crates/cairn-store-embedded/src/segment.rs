//! Segment files: the ledger's source of truth, byte for byte.
//!
//! # Segment file format, version 1
//!
//! The records of the ledger live in `segments/` under the data directory, in files named
//! `<P>.seg`, where `<P>` is the position of the file's first record written as 20 decimal digits
//! with leading zeros (`00000000000000000001.seg`), so that file names sort in position order.
//! All integers are little-endian.
//!
//! A segment starts with a 20-byte header:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 8 | magic, the ASCII bytes `CAIRNSEG` |
//! | 8 | 4 | format version, `u32`, = 1 |
//! | 12 | 8 | first position, `u64`, = `<P>` from the file name |
//!
//! and continues with frames, back to back, up to the end of the file. One frame holds one
//! record:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 4 | body length `n`, `u32`; `4 <= n <= 4 + 16 KiB + 256 KiB` (envelope and payload limits) |
//! | 4 | 8 | checksum: XXH3-64 (seed 0) of the `n` body bytes, as a `u64` |
//! | 12 | `n` | body |
//!
//! The checksum only finds torn writes and locates damage; it is not what makes the ledger
//! tamper-evident (anyone can recompute it). Tampering is caught by the Merkle tree: the
//! envelope's leaf hash and the payload commitment it carries (both blake3), under signed
//! checkpoints. So the checksum is a fast non-cryptographic hash rather than a third blake3 pass
//! over every record: XXH3-64, as specified by the xxHash project (`XXH3_64bits`, default
//! secret, seed 0), whose 64 bits make a torn or damaged body passing by chance
//! negligible (2^-64).
//!
//! The body is:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 4 | envelope length `e`, `u32`; `e <= n - 4` |
//! | 4 | `e` | envelope: exactly `Record::envelope_bytes`, the canonical postcard encoding of the envelope, which is the input of the record's Merkle leaf hash |
//! | 4 + `e` | `n - 4 - e` | payload: the sealed payload bytes, whose length and blake3 commitment the envelope carries |
//!
//! Frame `k` (counting from 0) of the segment named `<P>` holds the record at position `P + k`,
//! and the envelope says so. Positions are gapless across files: the next segment's `<P>` is the
//! last position of the previous one plus 1. A segment rolls over to a new file before a frame
//! would take it past `segment_bytes_max`; a segment holds at least one frame whatever its size.
//!
//! # Preallocation
//!
//! Segment files are zero-filled to `segment_bytes_max` (at most 256 MiB) and synced before
//! they receive frames, so appending a frame overwrites blocks the file already has and its
//! `fdatasync` need not commit a change of size or allocation (about 1.5 times faster here).
//! Zero bytes from the end of the last frame to the end of a file are padding, not frames: a
//! frame's length field is never zero. A finished segment is truncated to its last frame when
//! the next one starts. The next segment is prepared in the background as
//! `segments/next-segment.tmp`, and takes its name (after its header is written and synced)
//! when the writer rolls over to it; a leftover temporary file is ignored and reused.
//!
//! # Durability and damage
//!
//! The writer appends whole groups of frames with one write and acknowledges none of them before
//! `fdatasync` returns. A new segment's header is written and synced, and the directory synced,
//! before any frame goes into it, and the previous segment is synced before the new one is
//! created. So after a crash only the end of the last segment can hold a partial write: a
//! **torn tail**, a frame that is short or fails its checksum with nothing valid after it. Opening
//! the store cuts it (truncates the file to the last whole frame and syncs it); those frames were
//! never acknowledged. A bad frame anywhere else (in an earlier segment, or followed by a valid
//! frame) is corruption: the store refuses to open and names the position of the record whose
//! frame is damaged.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cairn_ledger::{Position, Record, limits as ledger_limits};
use cairn_store::StoreError;

/// The first 8 bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"CAIRNSEG";
/// The segment format this build reads and writes.
pub(crate) const SEGMENT_FORMAT_V1: u32 = 1;
/// Bytes of the segment header (magic, version, first position).
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 20;
/// Bytes of a frame's header (body length, checksum).
pub(crate) const FRAME_HEADER_BYTES: u64 = 12;
/// Bytes of the body's envelope-length field.
const ENVELOPE_LEN_BYTES: usize = 4;
/// Smallest possible body: an envelope length and nothing else.
pub(crate) const FRAME_BODY_BYTES_MIN: usize = ENVELOPE_LEN_BYTES;
/// Largest body a valid record can need: the envelope and payload limits of the record format.
pub(crate) const FRAME_BODY_BYTES_MAX: usize =
    ENVELOPE_LEN_BYTES + ledger_limits::ENVELOPE_BYTES_MAX + ledger_limits::PAYLOAD_BYTES_MAX;
/// The name of the folder holding the segments, under the data directory.
pub(crate) const SEGMENTS_DIR: &str = "segments";
/// The file, in the segments folder, that the preparer zero-fills to become the next segment.
pub(crate) const PREPARED_SEGMENT_FILE: &str = "next-segment.tmp";
/// Most bytes of a segment zero-filled ahead of use; a larger segment grows by appends beyond.
pub(crate) const PREALLOCATE_BYTES_MAX: u64 = 256 << 20;

/// The file name of the segment whose first record is at `first`.
pub(crate) fn segment_file_name(first: Position) -> String {
    format!("{:020}.seg", first.0)
}

/// The first position a segment file name stands for, if it is a segment file name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Position> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Position)
}

/// The header of the segment whose first record is at `first`.
pub(crate) fn encode_header(first: Position) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_FORMAT_V1.to_le_bytes());
    header[12..].copy_from_slice(&first.0.to_le_bytes());
    header
}

/// Checks a segment header; returns the first position it names or why it is not a header.
pub(crate) fn decode_header(header: &[u8]) -> Result<Position, String> {
    if header.len() < SEGMENT_HEADER_BYTES as usize {
        return Err(format!(
            "header is {} bytes, needs {SEGMENT_HEADER_BYTES}",
            header.len()
        ));
    }
    if header[..8] != SEGMENT_MAGIC {
        return Err("bad magic (not a cairn segment file)".into());
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != SEGMENT_FORMAT_V1 {
        return Err(format!("unsupported segment format version {version}"));
    }
    Ok(Position(u64::from_le_bytes(
        header[12..20].try_into().expect("8 bytes"),
    )))
}

/// The checksum stored in a frame's header for `body`: XXH3-64, little-endian.
pub(crate) fn frame_checksum(body: &[u8]) -> [u8; 8] {
    xxhash_rust::xxh3::xxh3_64(body).to_le_bytes()
}

/// Bytes the frame of `record` takes in a segment, header included.
pub(crate) fn frame_bytes(record: &Record) -> u64 {
    FRAME_HEADER_BYTES
        + (ENVELOPE_LEN_BYTES + record.envelope_bytes.len() + record.payload.len()) as u64
}

/// Appends the frame of `record` to `buffer`.
pub(crate) fn encode_frame(buffer: &mut Vec<u8>, record: &Record) {
    let body_len = ENVELOPE_LEN_BYTES + record.envelope_bytes.len() + record.payload.len();
    let start = buffer.len();
    buffer.reserve(FRAME_HEADER_BYTES as usize + body_len);
    buffer.extend_from_slice(&(body_len as u32).to_le_bytes());
    buffer.extend_from_slice(&[0; 8]);
    buffer.extend_from_slice(&(record.envelope_bytes.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&record.envelope_bytes);
    buffer.extend_from_slice(&record.payload);
    let body_start = start + FRAME_HEADER_BYTES as usize;
    let checksum = frame_checksum(&buffer[body_start..]);
    buffer[start + 4..body_start].copy_from_slice(&checksum);
}

/// What the bytes at a frame boundary hold.
#[derive(Debug)]
pub(crate) enum FrameParse<'a> {
    /// A whole frame whose checksum matches; `frame_bytes` includes the header.
    Frame { body: &'a [u8], frame_bytes: usize },
    /// Fewer bytes than the header or the body it announces.
    Short,
    /// A body length no valid record can have.
    BadLength(u32),
    /// A whole frame whose checksum does not match its body.
    BadChecksum,
}

impl FrameParse<'_> {
    /// Why this is not a frame, for error messages.
    pub(crate) fn problem(&self) -> String {
        match self {
            FrameParse::Frame { .. } => "valid frame".into(),
            FrameParse::Short => "frame is cut short".into(),
            FrameParse::BadLength(len) => format!("frame body length {len} is impossible"),
            FrameParse::BadChecksum => "frame checksum does not match".into(),
        }
    }
}

/// Parses the frame at the start of `bytes`.
pub(crate) fn parse_frame(bytes: &[u8]) -> FrameParse<'_> {
    let header = FRAME_HEADER_BYTES as usize;
    if bytes.len() < header {
        return FrameParse::Short;
    }
    let body_len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    if !(FRAME_BODY_BYTES_MIN..=FRAME_BODY_BYTES_MAX).contains(&(body_len as usize)) {
        return FrameParse::BadLength(body_len);
    }
    let frame_bytes = header + body_len as usize;
    if bytes.len() < frame_bytes {
        return FrameParse::Short;
    }
    let body = &bytes[header..frame_bytes];
    if frame_checksum(body) != bytes[4..header] {
        return FrameParse::BadChecksum;
    }
    FrameParse::Frame { body, frame_bytes }
}

/// Decodes a checksum-valid body into a record at `expected` (the position its place in the
/// files gives it). Any failure here is corruption: the writer wrote these bytes whole.
pub(crate) fn decode_body(body: &[u8], expected: Position) -> Result<Record, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        position: Some(expected),
        detail,
    };
    let envelope_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if envelope_len > body.len() - ENVELOPE_LEN_BYTES {
        return Err(corrupt(format!(
            "envelope length {envelope_len} exceeds the frame body of {} bytes",
            body.len()
        )));
    }
    let envelope_end = ENVELOPE_LEN_BYTES + envelope_len;
    let record = Record::from_parts(
        body[ENVELOPE_LEN_BYTES..envelope_end].to_vec(),
        body[envelope_end..].to_vec(),
    )
    .map_err(|error| corrupt(format!("record does not decode: {error}")))?;
    if record.position() != expected {
        return Err(corrupt(format!(
            "frame holds the envelope of position {} where position {expected} belongs",
            record.position()
        )));
    }
    Ok(record)
}

/// Where a run of frames lies: `records` consecutive positions from `first_position`, in
/// `path` from byte `start` to byte `end`.
#[derive(Clone, Debug)]
pub(crate) struct FrameSpan {
    pub path: PathBuf,
    pub first_position: Position,
    pub records: usize,
    pub start: u64,
    pub end: u64,
}

/// Reads the records of committed spans. The bytes were acknowledged whole, so anything but
/// whole, valid frames at the expected positions is corruption.
pub(crate) fn read_spans(spans: &[FrameSpan]) -> Result<Vec<Record>, StoreError> {
    let mut records = Vec::with_capacity(spans.iter().map(|span| span.records).sum());
    let mut buffer = Vec::new();
    for span in spans {
        let file = File::open(&span.path).map_err(|error| {
            StoreError::io(format!("open segment {}", span.path.display()), error)
        })?;
        read_span(&file, span, &mut buffer, &mut records)?;
    }
    Ok(records)
}

/// Reads one span from an open segment file into `records`.
pub(crate) fn read_span(
    file: &File,
    span: &FrameSpan,
    buffer: &mut Vec<u8>,
    records: &mut Vec<Record>,
) -> Result<(), StoreError> {
    buffer.clear();
    buffer.resize((span.end - span.start) as usize, 0);
    file.read_exact_at(buffer, span.start).map_err(|error| {
        StoreError::io(
            format!(
                "read {} bytes at offset {} of segment {}",
                buffer.len(),
                span.start,
                span.path.display()
            ),
            error,
        )
    })?;
    let mut at = 0usize;
    for index in 0..span.records {
        let position = Position(span.first_position.0 + index as u64);
        match parse_frame(&buffer[at..]) {
            FrameParse::Frame { body, frame_bytes } => {
                records.push(decode_body(body, position)?);
                at += frame_bytes;
            }
            other => {
                return Err(StoreError::Corrupt {
                    position: Some(position),
                    detail: format!(
                        "{} at offset {} of segment {}",
                        other.problem(),
                        span.start + at as u64,
                        span.path.display()
                    ),
                });
            }
        }
    }
    if at != buffer.len() {
        return Err(StoreError::Corrupt {
            position: Some(Position(span.first_position.0 + span.records as u64 - 1)),
            detail: format!(
                "{} unexpected bytes after the frame at offset {} of segment {}",
                buffer.len() - at,
                span.start + at as u64,
                span.path.display()
            ),
        });
    }
    Ok(())
}

/// Writes zeros over `from..to` of `file`, then syncs it (size and blocks: a full sync).
pub(crate) fn zero_fill(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let chunk = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..chunk], at)?;
        at += chunk as u64;
    }
    file.sync_all()
}

/// The preparer thread: for every request, zero-fills `segments/next-segment.tmp` to `len`
/// bytes, syncs it, and hands the open file over. Stops when the requests stop.
pub(crate) fn run_preparer(
    segments_dir: PathBuf,
    len: u64,
    requests: std::sync::mpsc::Receiver<()>,
    prepared: std::sync::mpsc::Sender<io::Result<File>>,
) {
    while requests.recv().is_ok() {
        let path = segments_dir.join(PREPARED_SEGMENT_FILE);
        let result = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|file| zero_fill(&file, 0, len).map(|()| file));
        if prepared.send(result).is_err() {
            break;
        }
    }
}

/// Syncs a directory, so that files created or removed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens `path` in `dir` for reading and writing, creating it if missing; a new file and its
/// directory entry are synced before it is used, so it survives a crash. Returns the file and its
/// length.
pub(crate) fn open_or_create_durably(dir: &Path, path: &Path) -> Result<(File, u64), StoreError> {
    let name = path.display();
    let existed = path.exists();
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|error| StoreError::io(format!("open {name}"), error))?;
    if !existed {
        file.sync_all()
            .map_err(|error| StoreError::io(format!("sync {name}"), error))?;
        sync_dir(dir).map_err(|error| StoreError::io(format!("sync {}", dir.display()), error))?;
    }
    let len = file
        .metadata()
        .map_err(|error| StoreError::io(format!("stat {name}"), error))?
        .len();
    Ok((file, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort() {
        assert_eq!(segment_file_name(Position(1)), "00000000000000000001.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg"),
            Some(Position(42))
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
        assert!(segment_file_name(Position(9)) < segment_file_name(Position(10)));
    }

    #[test]
    fn headers_round_trip() {
        let header = encode_header(Position(77));
        assert_eq!(decode_header(&header), Ok(Position(77)));
        let mut bad = header;
        bad[0] = b'X';
        assert!(decode_header(&bad).is_err());
        let mut bad = header;
        bad[8] = 2;
        assert!(decode_header(&bad).unwrap_err().contains("version 2"));
    }

    #[test]
    fn frame_checksums_are_xxh3_64_little_endian() {
        // XXH3_64bits of the empty input, seed 0: the xxHash project's own sanity check value.
        assert_eq!(frame_checksum(b""), 0x2D06_8005_38D3_94C2u64.to_le_bytes());
        assert_ne!(frame_checksum(b"cairn"), frame_checksum(b"cairm"));
    }

    #[test]
    fn frames_detect_short_bad_length_and_bad_checksum() {
        let mut bytes = Vec::new();
        let body = [4u8, 0, 0, 0, 1, 2, 3];
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&frame_checksum(&body));
        bytes.extend_from_slice(&body);
        assert!(matches!(
            parse_frame(&bytes),
            FrameParse::Frame {
                frame_bytes: 19,
                ..
            }
        ));
        assert!(matches!(parse_frame(&bytes[..18]), FrameParse::Short));
        assert!(matches!(parse_frame(&bytes[..5]), FrameParse::Short));
        let mut flipped = bytes.clone();
        flipped[15] ^= 1;
        assert!(matches!(parse_frame(&flipped), FrameParse::BadChecksum));
        let zeros = [0u8; 64];
        assert!(matches!(parse_frame(&zeros), FrameParse::BadLength(0)));
    }
}
