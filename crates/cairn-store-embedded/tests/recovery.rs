//! Crash recovery and damage: torn tails are cut, damage elsewhere is refused at its exact
//! position, the sled index is rebuilt or caught up from the segments, segments roll over,
//! destroyed keys leave no bytes behind, and a data directory has one owner at a time.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use cairn_ledger::{DataKey, KeyId, Position, StreamVersion};
use cairn_store::testsuite::{event, stream};
use cairn_store::{EventStore, ExpectedVersion, KeyState, KeyStore, StoreError, StoreErrorKind};
use cairn_store_embedded::{EmbeddedOptions, EmbeddedStore, read_checkpoints, verify_segments};
use common::{
    all_records, contains, flip_byte, frames, locate, open, open_with, root_of, segment_files,
    tiny_segments,
};

/// Appends `count` single-event appends to stream `s{n % 3}`, seeds `{prefix}-{n}`.
async fn append_some(store: &EmbeddedStore, prefix: &str, count: usize) {
    for n in 0..count {
        store
            .append(
                stream(&format!("s{}", n % 3)),
                ExpectedVersion::Any,
                vec![event(&format!("{prefix}-{n}"))],
            )
            .await
            .expect("append");
    }
}

fn corrupt_position(error: StoreError) -> Option<Position> {
    match error {
        StoreError::Corrupt { position, .. } => position,
        other => panic!("expected a corruption error, got {other}"),
    }
}

/// Reads a stream completely.
async fn read_stream_all(store: &EmbeddedStore, name: &str) -> Vec<Arc<cairn_ledger::Record>> {
    store
        .read_stream(&stream(name), StreamVersion(1), usize::MAX)
        .await
        .expect("read_stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_mid_frame_is_cut_and_appends_continue_gapless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    append_some(&store, "torn", 10).await;
    let before = all_records(&store).await;
    store.close().await;

    // A crash while the last frame was being written: only its first bytes reached the disk.
    // That record was never acknowledged, so the indexer never saw it either.
    let (path, offset, len) = locate(dir.path(), Position(10));
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open segment");
    file.set_len(offset + len / 2).expect("truncate mid-frame");
    drop(file);
    rewind_index(dir.path(), 9, true);

    let report = verify_segments(dir.path(), |_| {}).expect("a torn tail is not damage");
    assert_eq!(report.records, 9);
    assert_eq!(report.last_position, Position(9));
    assert_eq!(report.torn_tail_bytes, len / 2);
    assert_eq!(report.root, root_of(&before[..9]));

    let store = open(dir.path()).await;
    let after = all_records(&store).await;
    assert_eq!(
        after,
        before[..9].to_vec(),
        "the whole records are there, the torn one is not"
    );
    assert_eq!(store.head().await.expect("head").position, Position(9));
    let next = store
        .append(
            stream("s0"),
            ExpectedVersion::Any,
            vec![event("after-the-cut")],
        )
        .await
        .expect("append after the cut");
    assert_eq!(
        next.first_position,
        Position(10),
        "positions continue without a gap"
    );
    let records = all_records(&store).await;
    assert_eq!(records.len(), 10);
    assert_eq!(store.head().await.expect("head").root, root_of(&records));
    store.close().await;
    let report = verify_segments(dir.path(), |_| {}).expect("verify");
    assert_eq!((report.records, report.torn_tail_bytes), (10, 0));
}

/// Signs a checkpoint of the store's tree at `tree_size` and saves it.
async fn save_checkpoint(store: &EmbeddedStore, tree_size: u64) {
    let signer = cairn_ledger::CheckpointSigner::from_secret_bytes([9; 32]);
    let checkpoint = signer.sign(cairn_ledger::Checkpoint {
        log_id: cairn_ledger::LogId([2; 32]),
        tree_size,
        root: store.root_at(tree_size).await.expect("root"),
        timestamp: cairn_ledger::Timestamp(1),
    });
    store.save_checkpoint(checkpoint).await.expect("save");
}

/// Damage that looks like a torn write, done to the last frame of the last segment.
#[derive(Clone, Copy, Debug)]
enum LastFrameDamage {
    /// One byte of the body flipped: the frame fails its checksum.
    FlippedByte,
    /// The file cut in the middle of the frame.
    CutShort,
}

fn damage_last_frame(dir: &Path, position: Position, damage: LastFrameDamage) {
    let (path, offset, len) = locate(dir, position);
    match damage {
        LastFrameDamage::FlippedByte => flip_byte(&path, offset + len - 3),
        LastFrameDamage::CutShort => {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open segment");
            file.set_len(offset + len / 2).expect("truncate mid-frame");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_last_record_under_a_checkpoint_is_refused_not_cut() {
    for damage in [LastFrameDamage::FlippedByte, LastFrameDamage::CutShort] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        append_some(&store, "acked", 10).await;
        save_checkpoint(&store, 10).await;
        store.close().await;
        // Without the index, the checkpoint alone says position 10 was acknowledged.
        fs::remove_dir_all(dir.path().join("index")).expect("delete the index");
        damage_last_frame(dir.path(), Position(10), damage);
        let segment = segment_files(dir.path()).pop().expect("a segment");
        let damaged = fs::read(&segment).expect("read");

        let error = open_with(dir.path(), EmbeddedOptions::default())
            .await
            .err()
            .expect("open refuses to cut an acknowledged record");
        assert_eq!(error.kind(), StoreErrorKind::Corrupt, "{damage:?}");
        let message = error.to_string();
        assert!(message.contains("checkpoint"), "{damage:?}: {message}");
        assert_eq!(corrupt_position(error), Some(Position(10)), "{damage:?}");
        assert_eq!(
            fs::read(&segment).expect("read"),
            damaged,
            "{damage:?}: nothing was cut"
        );
        let error = verify_segments(dir.path(), |_| {}).expect_err("verify refuses it too");
        assert_eq!(corrupt_position(error), Some(Position(10)), "{damage:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_last_record_the_index_holds_is_refused_not_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    append_some(&store, "indexed", 10).await;
    store.close().await;
    // No checkpoint: the index's indexed_through (10, after a clean close) is what says so.
    damage_last_frame(dir.path(), Position(10), LastFrameDamage::FlippedByte);
    let error = open_with(dir.path(), EmbeddedOptions::default())
        .await
        .err()
        .expect("open refuses to cut an acknowledged record");
    let message = error.to_string();
    assert!(message.contains("the index holds"), "{message}");
    assert_eq!(corrupt_position(error), Some(Position(10)));
    // verify_segments reads no index (opening sled writes to it): without a checkpoint it can
    // only call this a torn tail.
    let report = verify_segments(dir.path(), |_| {}).expect("verify");
    assert_eq!((report.records, report.torn_tail_bytes > 0), (9, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_beyond_the_last_checkpoint_is_still_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    append_some(&store, "beyond", 10).await;
    save_checkpoint(&store, 10).await;
    let before = all_records(&store).await;
    store.close().await;

    // A crash while position 11 was being written: half its frame reached the disk.
    let (path, offset, len) = locate(dir.path(), Position(10));
    let mut bytes = fs::read(&path).expect("read");
    let end = (offset + len) as usize;
    let half: Vec<u8> = bytes[offset as usize..end - len as usize / 2].to_vec();
    if bytes.len() < end + half.len() {
        bytes.resize(end + half.len(), 0);
    }
    bytes[end..end + half.len()].copy_from_slice(&half);
    fs::write(&path, &bytes).expect("write");

    let report = verify_segments(dir.path(), |_| {}).expect("a torn tail is not damage");
    assert_eq!(report.records, 10);
    assert_eq!(report.torn_tail_bytes, (bytes.len() - end) as u64);
    let store = open(dir.path()).await;
    assert_eq!(all_records(&store).await, before);
    let next = store
        .append(stream("s0"), ExpectedVersion::Any, vec![event("after")])
        .await
        .expect("append after the cut");
    assert_eq!(next.first_position, Position(11));
    store.close().await;
    let report = verify_segments(dir.path(), |_| {}).expect("verify");
    assert_eq!((report.records, report.torn_tail_bytes), (11, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_checkpoints_are_checked_against_the_segments_at_their_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    append_some(&store, "signed", 4).await;
    save_checkpoint(&store, 4).await;
    let checkpoint = store
        .latest_checkpoint()
        .await
        .expect("latest")
        .expect("saved");
    append_some(&store, "unsigned", 2).await;
    let head = store.head().await.expect("head");
    store.close().await;

    assert_eq!(
        read_checkpoints(dir.path()).expect("read"),
        vec![checkpoint.clone()]
    );
    let report = verify_segments(dir.path(), |_| {}).expect("verify");
    assert_eq!((report.records, report.root), (6, head.root));
    assert_eq!(report.checkpoints, 1);
    let latest = report.latest_checkpoint.expect("a stored checkpoint");
    assert_eq!(latest.checkpoint, checkpoint);
    assert_eq!(latest.recomputed_root, checkpoint.checkpoint.root);

    // Another ledger given this one's checkpoint log: signed, but over other records.
    let other = tempfile::tempdir().expect("tempdir");
    let store = open(other.path()).await;
    append_some(&store, "other", 6).await;
    store.close().await;
    fs::copy(
        dir.path().join("checkpoints.log"),
        other.path().join("checkpoints.log"),
    )
    .expect("copy the log");
    let error = verify_segments(other.path(), |_| {}).expect_err("the roots differ");
    let message = error.to_string();
    assert!(
        message.contains("checkpoint of tree size 4 signs root"),
        "{message}"
    );
    assert_eq!(corrupt_position(error), None);
    let error = open_with(other.path(), EmbeddedOptions::default())
        .await
        .err()
        .expect("open refuses it too");
    assert!(error.to_string().contains("tree size 4"), "{error}");

    // A ledger holding fewer records than a stored checkpoint covers.
    let short = tempfile::tempdir().expect("tempdir");
    let store = open(short.path()).await;
    append_some(&store, "short", 3).await;
    store.close().await;
    fs::copy(
        dir.path().join("checkpoints.log"),
        short.path().join("checkpoints.log"),
    )
    .expect("copy the log");
    let error = verify_segments(short.path(), |_| {}).expect_err("records are missing");
    let message = error.to_string();
    assert!(message.contains("tree size 4"), "{message}");
    assert_eq!(corrupt_position(error), Some(Position(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_rewritten_under_a_recomputed_checksum_fails_at_the_checkpoint() {
    // The frame checksum (XXH3-64) is no protection against tampering: anyone can recompute
    // it. A rewritten envelope that still decodes is caught by the checkpoint over its leaf.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    append_some(&store, "rewrite", 6).await;
    save_checkpoint(&store, 6).await;
    store.close().await;

    let (path, offset, len) = locate(dir.path(), Position(3));
    let mut bytes = fs::read(&path).expect("read");
    let frame = offset as usize..(offset + len) as usize;
    let actor = bytes[frame.clone()]
        .windows(8)
        .position(|window| window == b"svc:test")
        .expect("the actor is in the envelope");
    bytes[frame.start + actor + 4] = b'T';
    let checksum = xxhash_rust::xxh3::xxh3_64(&bytes[frame.start + 12..frame.end]);
    bytes[frame.start + 4..frame.start + 12].copy_from_slice(&checksum.to_le_bytes());
    fs::write(&path, &bytes).expect("write");

    let error = verify_segments(dir.path(), |_| {}).expect_err("the checkpoint's root differs");
    let message = error.to_string();
    assert!(
        message.contains("checkpoint of tree size 6 signs root"),
        "{message}"
    );
    let error = open_with(dir.path(), EmbeddedOptions::default())
        .await
        .err()
        .expect("open refuses it too");
    assert!(error.to_string().contains("tree size 6"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_last_frame_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    append_some(&store, "garbage", 7).await;
    let before = all_records(&store).await;
    store.close().await;

    let (path, offset, len) = locate(dir.path(), Position(7));
    let end = offset + len;
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 37 + 11) as u8 | 1).collect();
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open segment");
    file.write_all_at(&garbage, end).expect("write garbage");
    drop(file);
    assert!(
        verify_segments(dir.path(), |_| {})
            .expect("verify")
            .torn_tail_bytes
            > 0
    );

    let store = open(dir.path()).await;
    assert_eq!(all_records(&store).await, before);
    let bytes = fs::read(&path).expect("read segment");
    assert!(
        bytes[end as usize..].iter().all(|&b| b == 0),
        "the garbage is gone"
    );
    let next = store
        .append(
            stream("s1"),
            ExpectedVersion::Any,
            vec![event("after-garbage")],
        )
        .await
        .expect("append");
    assert_eq!(next.first_position, Position(8));
    store.close().await;
    assert_eq!(
        verify_segments(dir.path(), |_| {}).expect("verify").records,
        8
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_an_earlier_record_is_refused_at_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    append_some(&store, "flip", 20).await;
    store.close().await;

    for (position, inside) in [
        (Position(7), 12 + 4 + 3),
        (Position(1), 12 + 4 + 40),
        (Position(19), 2),
    ] {
        // Inside the envelope, inside the payload, and in the frame's length field.
        let (path, offset, len) = locate(dir.path(), position);
        assert!(inside < len);
        flip_byte(&path, offset + inside);
        let error = open_with(dir.path(), EmbeddedOptions::default())
            .await
            .err()
            .expect("open refuses a damaged ledger");
        assert_eq!(error.kind(), StoreErrorKind::Corrupt);
        assert_eq!(
            corrupt_position(error),
            Some(position),
            "open names the damaged record"
        );
        let error = verify_segments(dir.path(), |_| {}).expect_err("verify finds the damage");
        assert_eq!(
            corrupt_position(error),
            Some(position),
            "verify names the damaged record"
        );
        flip_byte(&path, offset + inside);
    }
    let report = verify_segments(dir.path(), |_| {}).expect("repaired");
    assert_eq!(report.records, 20);
    let store = open(dir.path()).await;
    assert_eq!(store.head().await.expect("head").position, Position(20));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lowest_damaged_position_is_named_in_a_segment_read_in_parallel() {
    // Enough records for the scan to split the segment into several jobs, decoded in parallel.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    for batch in 0..25 {
        let events = (0..100)
            .map(|n| event(&format!("parallel-{batch}-{n}")))
            .collect();
        store
            .append(stream("parallel"), ExpectedVersion::Any, events)
            .await
            .expect("append");
    }
    store.close().await;
    assert_eq!(segment_files(dir.path()).len(), 1);
    let mut reported = Vec::new();
    let report = verify_segments(dir.path(), |records| reported.push(records)).expect("verify");
    assert_eq!(report.records, 2500);
    assert_eq!(
        reported,
        vec![2500],
        "progress comes every 10,000 records and at the end"
    );

    for (early, late) in [
        (Position(700), Position(2300)),
        (Position(1900), Position(2100)),
    ] {
        for position in [early, late] {
            let (path, offset, _) = locate(dir.path(), position);
            flip_byte(&path, offset + 12 + 20);
        }
        for _ in 0..3 {
            let error = verify_segments(dir.path(), |_| {}).expect_err("damage");
            assert_eq!(corrupt_position(error), Some(early));
            let error = open_with(dir.path(), EmbeddedOptions::default())
                .await
                .err()
                .expect("refused");
            assert_eq!(corrupt_position(error), Some(early));
        }
        for position in [early, late] {
            let (path, offset, _) = locate(dir.path(), position);
            flip_byte(&path, offset + 12 + 20);
        }
    }
    assert_eq!(
        verify_segments(dir.path(), |_| {}).expect("repaired").root,
        report.root
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_an_earlier_segment_is_refused_at_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), tiny_segments()).await.expect("open");
    append_some(&store, "seg", 30).await;
    store.close().await;
    assert!(segment_files(dir.path()).len() > 5);

    // The last frame of the first segment: a bad frame at the end of a segment that is not the
    // last one is damage, never a torn tail.
    let first = &segment_files(dir.path())[0];
    let frames_of_first = frames(first);
    let position = Position(frames_of_first.len() as u64);
    let (offset, _) = *frames_of_first.last().expect("frames");
    flip_byte(first, offset + 12 + 10);
    let error = open_with(dir.path(), tiny_segments())
        .await
        .err()
        .expect("refused");
    assert_eq!(corrupt_position(error), Some(position));
    let error = verify_segments(dir.path(), |_| {}).expect_err("damage");
    assert_eq!(corrupt_position(error), Some(position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_index_is_rebuilt_with_identical_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    append_some(&store, "index", 40).await;
    let batch = vec![event("batch-1"), event("batch-2")];
    let original = store
        .append(stream("batch"), ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("append");
    let records = all_records(&store).await;
    let streams = [
        read_stream_all(&store, "s0").await,
        read_stream_all(&store, "s1").await,
        read_stream_all(&store, "s2").await,
    ];
    let head = store.head().await.expect("head");
    store.close().await;

    fs::remove_dir_all(dir.path().join("index")).expect("delete the index");
    let store = open(dir.path()).await;
    assert_eq!(all_records(&store).await, records);
    for (n, expected) in streams.iter().enumerate() {
        assert_eq!(&read_stream_all(&store, &format!("s{n}")).await, expected);
    }
    assert_eq!(store.head().await.expect("head"), head);
    let retry = store
        .append(stream("batch"), ExpectedVersion::NoStream, batch)
        .await
        .expect("a retry is recognised from the rebuilt index");
    assert!(retry.deduplicated);
    assert_eq!(retry.first_position, original.first_position);
    store.close().await;
}

/// Rewinds the index's `indexed_through` to `through` and removes the entries after it, as if
/// sled had lost its last writes.
fn rewind_index(dir: &Path, through: u64, remove_entries: bool) {
    let db = sled::open(dir.join("index")).expect("open the index");
    let meta = db.open_tree("meta").expect("meta");
    meta.insert("indexed_through", &through.to_be_bytes())
        .expect("rewind");
    if remove_entries {
        for name in ["event_ids", "streams"] {
            let tree = db.open_tree(name).expect("tree");
            for entry in tree.iter() {
                let (key, value) = entry.expect("entry");
                if u64::from_be_bytes(value.as_ref().try_into().expect("position")) > through {
                    tree.remove(key).expect("remove");
                }
            }
        }
    }
    db.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_that_is_behind_ahead_or_wrong_is_brought_in_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    append_some(&store, "behind", 30).await;
    let records = all_records(&store).await;
    let streams = [
        read_stream_all(&store, "s0").await,
        read_stream_all(&store, "s1").await,
        read_stream_all(&store, "s2").await,
    ];
    store.close().await;

    let check = |store: Arc<EmbeddedStore>| {
        let records = records.clone();
        let streams = streams.clone();
        async move {
            assert_eq!(all_records(&store).await, records);
            for (n, expected) in streams.iter().enumerate() {
                assert_eq!(&read_stream_all(&store, &format!("s{n}")).await, expected);
            }
            // Every event is known by id: retrying the first and the last is deduplicated.
            for (n, seed) in [(0, "behind-0"), (29, "behind-29")] {
                let retry = store
                    .append(
                        stream(&format!("s{}", n % 3)),
                        ExpectedVersion::Any,
                        vec![event(seed)],
                    )
                    .await
                    .expect("retry");
                assert!(retry.deduplicated, "{seed} is known");
                assert_eq!(retry.first_position, Position(n + 1));
            }
            store.close().await;
        }
    };

    // Behind: sled lost its last writes.
    rewind_index(dir.path(), 12, true);
    check(open(dir.path()).await).await;
    // Behind in its claim only: the entries are there, indexed_through is old.
    rewind_index(dir.path(), 5, false);
    check(open(dir.path()).await).await;
    // Ahead: the index claims more than the segments hold.
    rewind_index(dir.path(), 1_000_000, false);
    check(open(dir.path()).await).await;
    // Wrong: the entry of the record at indexed_through points elsewhere.
    {
        let db = sled::open(dir.path().join("index")).expect("open the index");
        let event_ids = db.open_tree("event_ids").expect("tree");
        let id = records[29].envelope.event_id;
        event_ids
            .insert(id.0, &3u64.to_be_bytes())
            .expect("falsify");
        db.flush().expect("flush");
    }
    check(open(dir.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_over_and_reads_cross_their_boundaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(dir.path(), tiny_segments()).await.expect("open");
    append_some(&store, "roll", 25).await;
    // One append larger than a segment.
    let big: Vec<_> = (0..12).map(|n| event(&format!("big-{n}"))).collect();
    store
        .append(stream("big"), ExpectedVersion::NoStream, big)
        .await
        .expect("append");
    append_some(&store, "roll-more", 13).await;
    let records = all_records(&store).await;
    assert_eq!(records.len(), 50);
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 10, "{} segments", segments.len());
    for path in &segments[..segments.len() - 1] {
        let len = fs::metadata(path).expect("stat").len();
        let frames = frames(path);
        let (offset, bytes) = *frames.last().expect("a segment holds at least one frame");
        assert_eq!(
            len,
            offset + bytes,
            "finished segments hold whole frames and no padding"
        );
        assert!(
            frames.len() == 1 || len <= 2048,
            "segments stay within the limit"
        );
    }
    // Reads that start in the middle of one segment and end in another.
    for from in [1u64, 3, 4, 5, 17, 26, 37] {
        let page = store.read_all(Position(from), 9).await.expect("read");
        let expected: Vec<_> = records[(from - 1) as usize..(from + 8).min(50) as usize].to_vec();
        assert_eq!(page, expected, "read_all from {from}");
    }
    let big = read_stream_all(&store, "big").await;
    assert_eq!(
        big.iter().map(|r| r.position().0).collect::<Vec<_>>(),
        (26..=37).collect::<Vec<_>>()
    );
    let s1 = read_stream_all(&store, "s1").await;
    assert_eq!(s1.len(), 8 + 4);
    let head = store.head().await.expect("head");
    assert_eq!(head.root, root_of(&records));
    store.close().await;

    let report = verify_segments(dir.path(), |_| {}).expect("verify");
    assert_eq!(
        (report.records, report.root, report.segments),
        (50, head.root, segments.len() as u64)
    );
    let store = open_with(dir.path(), tiny_segments())
        .await
        .expect("reopen");
    assert_eq!(all_records(&store).await, records);
    assert_eq!(read_stream_all(&store, "s1").await, s1);
    append_some(&store, "after", 5).await;
    assert_eq!(store.head().await.expect("head").position, Position(55));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroyed_key_leaves_no_bytes_in_any_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let doomed: [u8; 32] = std::array::from_fn(|i| 0xA0 ^ (i as u8).wrapping_mul(7));
    let kept: [u8; 32] = std::array::from_fn(|i| 0x3C ^ (i as u8).wrapping_mul(13));
    store
        .create_key(KeyId([1; 16]), DataKey(doomed))
        .await
        .expect("create");
    store
        .create_key(KeyId([2; 16]), DataKey(kept))
        .await
        .expect("create");
    append_some(&store, "keys", 5).await;
    assert!(contains(
        &fs::read(dir.path().join("keys.dat")).expect("read"),
        &doomed
    ));
    assert!(store.destroy_key(KeyId([1; 16])).await.expect("destroy"));
    store.close().await;

    let mut files = vec![dir.path().to_path_buf()];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                fs::read_dir(&path)
                    .expect("read dir")
                    .map(|entry| entry.expect("entry").path()),
            );
            continue;
        }
        let bytes = fs::read(&path).expect("read file");
        assert!(
            !contains(&bytes, &doomed[..16]),
            "{} holds bytes of the destroyed key",
            path.display()
        );
        assert!(
            !contains(&bytes, &doomed[16..]),
            "{} holds bytes of the destroyed key",
            path.display()
        );
        checked += 1;
    }
    assert!(checked > 3);
    assert!(contains(
        &fs::read(dir.path().join("keys.dat")).expect("read"),
        &kept
    ));

    let store = open(dir.path()).await;
    assert!(matches!(
        store.key(KeyId([1; 16])).await.expect("key"),
        KeyState::Destroyed
    ));
    assert!(
        matches!(store.key(KeyId([2; 16])).await.expect("key"), KeyState::Active(DataKey(bytes)) if bytes == kept)
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_key_and_checkpoint_writes_are_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    store
        .create_key(KeyId([4; 16]), DataKey([4; 32]))
        .await
        .expect("create");
    append_some(&store, "cp", 4).await;
    let signer = cairn_ledger::CheckpointSigner::from_secret_bytes([9; 32]);
    let checkpoint = signer.sign(cairn_ledger::Checkpoint {
        log_id: cairn_ledger::LogId([2; 32]),
        tree_size: 4,
        root: store.root_at(4).await.expect("root"),
        timestamp: cairn_ledger::Timestamp(1),
    });
    store
        .save_checkpoint(checkpoint.clone())
        .await
        .expect("save");
    store.close().await;

    // Half a key slot and half a checkpoint entry, as a crash mid-write would leave them.
    for (file, bytes) in [("keys.dat", 30usize), ("checkpoints.log", 100)] {
        let mut handle = OpenOptions::new()
            .append(true)
            .open(dir.path().join(file))
            .expect("open");
        handle.write_all(&vec![0x77; bytes]).expect("write");
    }
    assert_eq!(
        read_checkpoints(dir.path()).expect("a torn last entry is left out"),
        vec![checkpoint.clone()]
    );
    let store = open(dir.path()).await;
    assert_eq!(
        store.latest_checkpoint().await.expect("latest"),
        Some(checkpoint)
    );
    assert!(matches!(
        store.key(KeyId([4; 16])).await.expect("key"),
        KeyState::Active(_)
    ));
    store
        .create_key(KeyId([5; 16]), DataKey([5; 32]))
        .await
        .expect("create after the cut");
    store.close().await;
    let store = open(dir.path()).await;
    assert!(matches!(
        store.key(KeyId([5; 16])).await.expect("key"),
        KeyState::Active(_)
    ));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_at_a_time_per_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let error = open_with(dir.path(), EmbeddedOptions::default())
        .await
        .err()
        .expect("a second open fails");
    assert_eq!(error.kind(), StoreErrorKind::Unavailable);
    let message = error.to_string();
    assert!(message.contains("in use"), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );

    // Closing releases the directory while other handles to the store still exist.
    let other_handle = Arc::clone(&store);
    store.close().await;
    let error = other_handle.head().await.expect_err("closed");
    assert_eq!(error.kind(), StoreErrorKind::Unavailable);
    let mut live = other_handle.live();
    assert!(live.recv().await.is_err(), "the live feed ends");
    other_handle.close().await;
    let reopened = open(dir.path()).await;
    assert_eq!(
        reopened.head().await.expect("head").position,
        Position::ZERO
    );
    reopened.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_dropped_without_close_releases_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    append_some(&store, "drop", 3).await;
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(store.head().await.expect("head").position, Position(3));
    store.close().await;
}
