//! The conformance suite: every [`EventStore`] + [`KeyStore`] backend runs it with one line,
//! `cairn_store::conformance_suite!(MyHarness);`, and must pass it unchanged.
//!
//! Each check takes a fresh harness. [`Harness::reopen`] closes the store and opens it again from
//! its durable state, so the suite also checks that nothing acknowledged is lost on restart
//! (the in-memory store's reopen is the identity).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use cairn_ledger::{
    DataClass, DataKey, EventId, Hash, KeyId, LineageParent, LogId, MerkleTree, Position, StreamId,
    StreamVersion, TenantId, Timestamp, leaf_hash,
};
use futures::StreamExt;

use crate::{
    EventStore, ExpectedVersion, KeyState, KeyStore, NewEvent, StoreError, StoreErrorKind, limits,
    subscribe,
};

/// How the suite gets a fresh store and restarts it.
#[async_trait]
pub trait Harness: Send + 'static {
    /// The backend under test.
    type Store: EventStore + KeyStore;
    /// A new, empty store.
    async fn new() -> Self;
    /// The store as it is now.
    fn store(&self) -> Arc<Self::Store>;
    /// Closes the store and opens it again from its durable state.
    async fn reopen(&mut self) -> Arc<Self::Store>;
}

/// Generates one `#[tokio::test]` per conformance check for a [`Harness`] type.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty) => {
        $crate::conformance_suite!(@tests $harness;
            append_then_read,
            expected_version_rules,
            idempotent_for_ever,
            invalid_appends_store_nothing,
            reads_page_and_clamp,
            racing_appenders_one_winner_per_version,
            concurrent_streams_gapless,
            subscription_seam_has_no_gap_or_duplicate,
            subscription_from_the_middle,
            slow_subscriber_is_cut_off_with_resume_position,
            proofs_verify_against_roots,
            checkpoints_must_match_the_tree,
            keys_create_get_destroy,
            reopen_keeps_everything,
            recorded_time_never_goes_back,
        );
    };
    (@tests $harness:ty; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let harness = <$harness as $crate::testsuite::Harness>::new().await;
                $crate::testsuite::$check(harness).await;
            }
        )*
    };
}

fn tenant() -> TenantId {
    TenantId::new("acme").expect("valid tenant")
}

/// A stream id for tests.
pub fn stream(id: &str) -> StreamId {
    StreamId::new(tenant(), "feedback", id).expect("valid stream")
}

fn event_id(seed: &str) -> EventId {
    let hash = blake3_like(seed.as_bytes());
    EventId(hash[..16].try_into().expect("16 bytes"))
}

/// A deterministic 32-byte digest for test data, via the ledger's leaf hash.
fn blake3_like(bytes: &[u8]) -> [u8; 32] {
    leaf_hash(bytes).0
}

/// A public event with a ~300-byte payload derived from `seed`.
pub fn event(seed: &str) -> NewEvent {
    NewEvent {
        event_id: event_id(seed),
        event_type: "FeedbackReceived".into(),
        event_schema_version: 1,
        actor: "svc:test".into(),
        causation_id: None,
        correlation_id: Some(event_id("correlation")),
        lineage: vec![LineageParent {
            relation: "evidence_for".into(),
            target: StreamId::new(tenant(), "opportunity", "op-1").expect("valid"),
        }],
        data_class: DataClass::Internal,
        key_id: None,
        policy_bundle_hash: Hash([3; 32]),
        payload: clear_payload(seed.as_bytes().iter().copied().cycle().take(290).collect()),
    }
}

/// A payload with only a clear part.
pub fn clear_payload(clear: Vec<u8>) -> Vec<u8> {
    cairn_ledger::SealedPayload {
        clear,
        sealed: None,
    }
    .encode()
}

fn events(prefix: &str, count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|i| event(&format!("{prefix}-{i}")))
        .collect()
}

async fn all_records<S: EventStore + ?Sized>(store: &S) -> Vec<Arc<cairn_ledger::Record>> {
    let mut records = Vec::new();
    let mut next = Position(1);
    loop {
        let page = store.read_all(next, 1000).await.expect("read_all");
        if page.is_empty() {
            return records;
        }
        next = Position(page.last().expect("non-empty").position().0 + 1);
        records.extend(page);
    }
}

/// Checks the whole ledger: gapless positions from 1, gapless versions per stream, unique event
/// ids, valid records, and a head root equal to a recomputation from the records.
async fn check_ledger<S: EventStore + ?Sized>(store: &S) -> Vec<Arc<cairn_ledger::Record>> {
    let records = all_records(store).await;
    let mut tree = MerkleTree::new();
    let mut versions: BTreeMap<StreamId, u64> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (index, record) in records.iter().enumerate() {
        assert_eq!(
            record.position(),
            Position(index as u64 + 1),
            "positions are gapless"
        );
        let version = versions.entry(record.envelope.stream.clone()).or_default();
        *version += 1;
        assert_eq!(
            record.envelope.stream_version,
            StreamVersion(*version),
            "versions are gapless"
        );
        assert!(ids.insert(record.envelope.event_id), "event ids are unique");
        let reparsed =
            cairn_ledger::Record::from_parts(record.envelope_bytes.clone(), record.payload.clone())
                .expect("records read back are valid");
        assert_eq!(&reparsed, &**record);
        tree.push(record.leaf_hash());
    }
    let head = store.head().await.expect("head");
    assert_eq!(head.position, Position(records.len() as u64));
    assert_eq!(
        head.root,
        tree.root(),
        "head root is the root of the records"
    );
    for (stream, version) in versions {
        assert_eq!(
            store.stream_version(&stream).await.expect("version"),
            StreamVersion(version)
        );
    }
    records
}

/// Appends, then reads the stream and the ledger back, field for field.
pub async fn append_then_read(harness: impl Harness) {
    let store = harness.store();
    let empty = store.head().await.expect("head");
    assert_eq!(empty.position, Position::ZERO);
    assert_eq!(empty.root, cairn_ledger::empty_root());
    assert!(empty.checkpoint.is_none());

    let batch = events("a", 3);
    let result = store
        .append(stream("s1"), ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("append");
    assert_eq!(result.first_position, Position(1));
    assert_eq!(result.last_position, Position(3));
    assert_eq!(result.last_version, StreamVersion(3));
    assert!(!result.deduplicated);
    let other = store
        .append(stream("s2"), ExpectedVersion::Any, events("b", 2))
        .await
        .expect("append");
    assert_eq!(
        (other.first_position, other.last_position),
        (Position(4), Position(5))
    );
    assert_eq!(other.last_version, StreamVersion(2));

    let read = store
        .read_stream(&stream("s1"), StreamVersion(1), 100)
        .await
        .expect("read");
    assert_eq!(read.len(), 3);
    for (i, (record, sent)) in read.iter().zip(&batch).enumerate() {
        let envelope = &record.envelope;
        assert_eq!(envelope.position, Position(i as u64 + 1));
        assert_eq!(envelope.stream_version, StreamVersion(i as u64 + 1));
        assert_eq!(envelope.stream, stream("s1"));
        assert_eq!(envelope.event_id, sent.event_id);
        assert_eq!(envelope.event_type, sent.event_type);
        assert_eq!(envelope.actor, sent.actor);
        assert_eq!(envelope.correlation_id, sent.correlation_id);
        assert_eq!(envelope.lineage, sent.lineage);
        assert_eq!(envelope.policy_bundle_hash, sent.policy_bundle_hash);
        assert_eq!(record.payload, sent.payload);
    }
    assert!(
        store
            .read_stream(&stream("nope"), StreamVersion(1), 10)
            .await
            .expect("read")
            .is_empty()
    );
    let records = check_ledger(&*store).await;
    assert_eq!(records.len(), 5);
}

/// NoStream, Exact and Any, and the error naming the current version.
pub async fn expected_version_rules(harness: impl Harness) {
    let store = harness.store();
    let s = stream("v");
    store
        .append(s.clone(), ExpectedVersion::NoStream, events("v1", 1))
        .await
        .expect("first");
    let error = store
        .append(s.clone(), ExpectedVersion::NoStream, events("v2", 1))
        .await
        .expect_err("stream exists");
    assert!(
        matches!(
            error,
            StoreError::WrongExpectedVersion {
                current: StreamVersion(1),
                ..
            }
        ),
        "{error}"
    );
    let error = store
        .append(
            s.clone(),
            ExpectedVersion::Exact(StreamVersion(5)),
            events("v3", 1),
        )
        .await
        .expect_err("wrong version");
    assert_eq!(error.kind(), StoreErrorKind::WrongExpectedVersion);
    let error = store
        .append(
            stream("fresh"),
            ExpectedVersion::Exact(StreamVersion(1)),
            events("v4", 1),
        )
        .await
        .expect_err("empty stream is at 0");
    assert!(matches!(
        error,
        StoreError::WrongExpectedVersion {
            current: StreamVersion(0),
            ..
        }
    ));
    let ok = store
        .append(
            s.clone(),
            ExpectedVersion::Exact(StreamVersion(1)),
            events("v5", 2),
        )
        .await
        .expect("exact");
    assert_eq!(ok.last_version, StreamVersion(3));
    let ok = store
        .append(s.clone(), ExpectedVersion::Any, events("v6", 1))
        .await
        .expect("any");
    assert_eq!(ok.last_version, StreamVersion(4));
    check_ledger(&*store).await;
}

/// The same ids return the original positions, for ever (across reopen too); other content or
/// a partial overlap is a conflict.
pub async fn idempotent_for_ever(mut harness: impl Harness) {
    let store = harness.store();
    let batch = events("i", 4);
    let first = store
        .append(stream("i"), ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("append");
    store
        .append(stream("other"), ExpectedVersion::Any, events("x", 3))
        .await
        .expect("append");
    let head = store.head().await.expect("head");

    // A retry succeeds even though NoStream is no longer true.
    let retry = store
        .append(stream("i"), ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("retry");
    assert!(retry.deduplicated);
    assert_eq!(
        (retry.first_position, retry.last_position),
        (first.first_position, first.last_position)
    );
    assert_eq!(retry.last_version, first.last_version);
    assert_eq!(
        store.head().await.expect("head"),
        head,
        "a retry stores nothing"
    );

    // A retry under another policy bundle (the server reloaded its policy in between) is the
    // same append: the records keep the bundle they were recorded under.
    let mut reloaded = batch.clone();
    for event in &mut reloaded {
        event.policy_bundle_hash = Hash([9; 32]);
    }
    let retry = store
        .append(stream("i"), ExpectedVersion::Any, reloaded)
        .await
        .expect("retry under another bundle");
    assert!(retry.deduplicated);
    assert_eq!(retry.first_position, first.first_position);
    let stored = store
        .read_stream(&stream("i"), StreamVersion(1), 4)
        .await
        .expect("read");
    assert!(
        stored
            .iter()
            .zip(&batch)
            .all(|(record, sent)| record.envelope.policy_bundle_hash == sent.policy_bundle_hash)
    );

    let mut changed = batch.clone();
    changed[2].payload = clear_payload(b"other content".to_vec());
    let error = store
        .append(stream("i"), ExpectedVersion::Any, changed)
        .await
        .expect_err("changed");
    assert!(
        matches!(&error, StoreError::EventIdConflict { reason, .. } if reason.contains("payload")),
        "{error}"
    );

    let error = store
        .append(
            stream("elsewhere"),
            ExpectedVersion::Any,
            batch[..1].to_vec(),
        )
        .await
        .expect_err("other stream");
    assert_eq!(error.kind(), StoreErrorKind::AlreadyExists);

    let mut partial = batch[..2].to_vec();
    partial.push(event("i-new"));
    let error = store
        .append(stream("i"), ExpectedVersion::Any, partial)
        .await
        .expect_err("partial");
    assert_eq!(error.kind(), StoreErrorKind::AlreadyExists);
    assert_eq!(
        store.head().await.expect("head"),
        head,
        "conflicts store nothing"
    );

    drop(store);
    let store = harness.reopen().await;
    let retry = store
        .append(stream("i"), ExpectedVersion::Exact(StreamVersion(0)), batch)
        .await
        .expect("retry after reopen");
    assert!(retry.deduplicated);
    assert_eq!(retry.first_position, first.first_position);
    assert_eq!(store.head().await.expect("head").position, head.position);
    check_ledger(&*store).await;
}

/// Every refused append names its field or limit and stores nothing.
pub async fn invalid_appends_store_nothing(harness: impl Harness) {
    let store = harness.store();
    store
        .append(stream("ok"), ExpectedVersion::Any, events("ok", 1))
        .await
        .expect("append");
    let head = store.head().await.expect("head");

    let refused = |events: Vec<NewEvent>| {
        let store = Arc::clone(&store);
        async move {
            store
                .append(stream("bad"), ExpectedVersion::Any, events)
                .await
                .expect_err("refused")
        }
    };
    assert_eq!(
        refused(vec![]).await.kind(),
        StoreErrorKind::InvalidArgument
    );
    assert_eq!(
        refused(events("many", limits::APPEND_EVENTS_MAX + 1))
            .await
            .kind(),
        StoreErrorKind::LimitExceeded
    );
    let mut big = event("big");
    big.payload = clear_payload(vec![0; cairn_ledger::limits::PAYLOAD_BYTES_MAX]);
    assert_eq!(
        refused(vec![big]).await.kind(),
        StoreErrorKind::LimitExceeded
    );
    let mut batch = vec![event("twice"), event("twice")];
    assert!(matches!(
        refused(batch.clone()).await,
        StoreError::InvalidArgument {
            field: "event_id",
            ..
        }
    ));
    batch.truncate(1);
    batch[0].event_type = "has space".into();
    assert!(matches!(
        refused(batch.clone()).await,
        StoreError::InvalidArgument {
            field: "event_type",
            ..
        }
    ));
    batch[0] = event("personal");
    batch[0].data_class = DataClass::Personal;
    assert!(matches!(
        refused(batch.clone()).await,
        StoreError::InvalidArgument {
            field: "key_id",
            ..
        }
    ));
    batch[0] = event("actor");
    batch[0].actor = String::new();
    assert!(matches!(
        refused(batch.clone()).await,
        StoreError::InvalidArgument { field: "actor", .. }
    ));
    batch[0] = event("lineage");
    batch[0].lineage =
        vec![batch[0].lineage[0].clone(); cairn_ledger::limits::LINEAGE_PARENTS_MAX + 1];
    assert_eq!(
        refused(batch.clone()).await.kind(),
        StoreErrorKind::LimitExceeded
    );
    batch[0] = event("not-sealed");
    batch[0].payload = b"raw bytes, not a sealed payload".to_vec();
    assert!(matches!(
        refused(batch.clone()).await,
        StoreError::InvalidArgument {
            field: "payload",
            ..
        }
    ));
    batch[0] = event("wrong-key");
    batch[0].data_class = DataClass::Personal;
    batch[0].key_id = Some(KeyId([1; 16]));
    batch[0].payload = cairn_ledger::SealedPayload {
        clear: vec![],
        sealed: Some(cairn_ledger::SealedPart {
            key_id: KeyId([2; 16]),
            nonce: [0; 24],
            ciphertext: vec![1, 2, 3],
        }),
    }
    .encode();
    assert!(matches!(
        refused(batch.clone()).await,
        StoreError::InvalidArgument {
            field: "key_id",
            ..
        }
    ));
    let bad_stream = StreamId {
        tenant: tenant(),
        aggregate_type: "Bad Type".into(),
        aggregate_id: "x".into(),
    };
    let error = store
        .append(bad_stream, ExpectedVersion::Any, events("bs", 1))
        .await
        .expect_err("bad stream");
    assert_eq!(error.kind(), StoreErrorKind::InvalidArgument);

    assert_eq!(store.head().await.expect("head"), head);
    check_ledger(&*store).await;
}

/// Reads start where asked, stop at the limit, clamp huge limits and return nothing past the head.
pub async fn reads_page_and_clamp(harness: impl Harness) {
    let store = harness.store();
    for chunk in 0..5 {
        store
            .append(
                stream("p"),
                ExpectedVersion::Any,
                events(&format!("p{chunk}"), 1000),
            )
            .await
            .expect("append");
    }
    let page = store.read_all(Position(10), 5).await.expect("read");
    assert_eq!(
        page.iter().map(|r| r.position().0).collect::<Vec<_>>(),
        vec![10, 11, 12, 13, 14]
    );
    let from_zero = store.read_all(Position::ZERO, 2).await.expect("read");
    assert_eq!(from_zero[0].position(), Position(1));
    let clamped = store.read_all(Position(1), usize::MAX).await.expect("read");
    assert_eq!(clamped.len(), limits::READ_RECORDS_MAX);
    assert!(
        store
            .read_all(Position(5001), 10)
            .await
            .expect("read")
            .is_empty()
    );
    let tail = store.read_all(Position(4999), 10).await.expect("read");
    assert_eq!(tail.len(), 2);
    let versions = store
        .read_stream(&stream("p"), StreamVersion(4990), 100)
        .await
        .expect("read");
    assert_eq!(
        versions
            .iter()
            .map(|r| r.envelope.stream_version.0)
            .collect::<Vec<_>>(),
        (4990..=5000).collect::<Vec<_>>()
    );
    let clamped = store
        .read_stream(&stream("p"), StreamVersion(0), usize::MAX)
        .await
        .expect("read");
    assert_eq!(clamped.len(), limits::READ_RECORDS_MAX);
    assert_eq!(clamped[0].envelope.stream_version, StreamVersion(1));
}

/// Many tasks race to extend one stream at exact versions: one winner per version, no fork.
pub async fn racing_appenders_one_winner_per_version(harness: impl Harness) {
    let store = harness.store();
    let s = stream("race");
    let target = 40u64;
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = Arc::clone(&store);
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            let mut attempt = 0;
            loop {
                let current = store.stream_version(&s).await.expect("version");
                if current.0 >= target {
                    return wins;
                }
                attempt += 1;
                let batch = vec![event(&format!("race-{task}-{attempt}"))];
                match store
                    .append(s.clone(), ExpectedVersion::Exact(current), batch)
                    .await
                {
                    Ok(result) => {
                        assert_eq!(result.last_version, current.next());
                        wins.push(result.last_version.0);
                    }
                    Err(StoreError::WrongExpectedVersion { current: now, .. }) => {
                        assert!(
                            now > current,
                            "a conflict means someone else advanced the stream"
                        );
                    }
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.expect("task"));
    }
    winners.sort_unstable();
    assert_eq!(
        winners,
        (1..=target).collect::<Vec<_>>(),
        "exactly one winner per version"
    );
    let records = check_ledger(&*store).await;
    assert_eq!(records.len() as u64, target);
}

/// Concurrent appenders on their own streams: every acknowledged event present exactly once.
pub async fn concurrent_streams_gapless(harness: impl Harness) {
    let store = harness.store();
    let mut tasks = Vec::new();
    for task in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for round in 0..20 {
                let batch = events(&format!("c{task}-{round}"), 1 + round % 3);
                let ids: Vec<EventId> = batch.iter().map(|e| e.event_id).collect();
                let result = store
                    .append(stream(&format!("c{task}")), ExpectedVersion::Any, batch)
                    .await
                    .expect("append");
                assert_eq!(
                    result.last_position.0 - result.first_position.0 + 1,
                    ids.len() as u64
                );
                for (offset, id) in ids.into_iter().enumerate() {
                    acknowledged.push((id, Position(result.first_position.0 + offset as u64)));
                }
            }
            acknowledged
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("task"));
    }
    let records = check_ledger(&*store).await;
    assert_eq!(records.len(), acknowledged.len());
    for (id, position) in acknowledged {
        assert_eq!(records[(position.0 - 1) as usize].envelope.event_id, id);
    }
}

/// A subscriber that starts during catch-up and keeps going while appends continue sees every
/// position exactly once, in order.
pub async fn subscription_seam_has_no_gap_or_duplicate(harness: impl Harness) {
    let store = harness.store();
    for round in 0..10 {
        store
            .append(
                stream("sub"),
                ExpectedVersion::Any,
                events(&format!("pre{round}"), 10),
            )
            .await
            .expect("append");
    }
    let mut subscription = subscribe(Arc::clone(&store), Position::ZERO, 16);
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for round in 0..50 {
                store
                    .append(
                        stream("sub"),
                        ExpectedVersion::Any,
                        events(&format!("live{round}"), 2),
                    )
                    .await
                    .expect("append");
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 200 {
        let record = subscription.next().await.expect("open").expect("record");
        seen.push(record.position().0);
    }
    writer.await.expect("writer");
    assert_eq!(seen, (1..=200).collect::<Vec<_>>());
    store
        .append(stream("sub"), ExpectedVersion::Any, events("after", 1))
        .await
        .expect("append");
    let record = subscription.next().await.expect("open").expect("record");
    assert_eq!(record.position(), Position(201));
}

/// Subscribing from a position starts exactly there, including the position after the head.
pub async fn subscription_from_the_middle(harness: impl Harness) {
    let store = harness.store();
    store
        .append(stream("m"), ExpectedVersion::Any, events("m", 20))
        .await
        .expect("append");
    let mut middle = subscribe(Arc::clone(&store), Position(15), 4);
    let mut future = subscribe(Arc::clone(&store), Position(21), 4);
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(
            middle
                .next()
                .await
                .expect("open")
                .expect("record")
                .position()
                .0,
        );
    }
    assert_eq!(seen, (15..=20).collect::<Vec<_>>());
    store
        .append(stream("m"), ExpectedVersion::Any, events("m2", 1))
        .await
        .expect("append");
    assert_eq!(
        future
            .next()
            .await
            .expect("open")
            .expect("record")
            .position(),
        Position(21)
    );
    assert_eq!(
        middle
            .next()
            .await
            .expect("open")
            .expect("record")
            .position(),
        Position(21)
    );
}

/// A live subscriber that stops reading is cut off once the head outruns the live buffer, and is
/// told where to resume; everything before that point was delivered in order.
pub async fn slow_subscriber_is_cut_off_with_resume_position(harness: impl Harness) {
    let store = harness.store();
    store
        .append(stream("slow"), ExpectedVersion::Any, events("first", 1))
        .await
        .expect("append");
    let buffer = 8;
    let mut subscription = subscribe(Arc::clone(&store), Position(1), buffer);
    assert_eq!(
        subscription
            .next()
            .await
            .expect("open")
            .expect("record")
            .position(),
        Position(1)
    );
    assert!(
        subscription.wait_live().await,
        "the subscription reaches the live feed"
    );
    let total = limits::LIVE_BUFFER_RECORDS + buffer + 64;
    let mut appended = 0;
    while appended < total {
        let count = (total - appended).min(limits::APPEND_EVENTS_MAX);
        store
            .append(
                stream("slow"),
                ExpectedVersion::Any,
                events(&format!("s{appended}"), count),
            )
            .await
            .expect("append");
        appended += count;
    }
    let mut expected = 2;
    loop {
        match subscription
            .next()
            .await
            .expect("ends with an error, not silently")
        {
            Ok(record) => {
                assert_eq!(record.position().0, expected, "in order, no gap");
                expected += 1;
            }
            Err(StoreError::SubscriberTooSlow {
                resume_from,
                lag_max,
            }) => {
                assert_eq!(
                    resume_from,
                    Position(expected),
                    "resume exactly after the last delivered record"
                );
                assert_eq!(lag_max, limits::LIVE_BUFFER_RECORDS);
                break;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert!(
        expected < total as u64 + 2,
        "the subscriber was cut off before the end"
    );
    assert!(
        subscription.next().await.is_none(),
        "the subscription ends after the error"
    );
    // Resuming from the given position delivers the rest.
    let mut resumed = subscribe(Arc::clone(&store), Position(expected), buffer);
    assert_eq!(
        resumed
            .next()
            .await
            .expect("open")
            .expect("record")
            .position(),
        Position(expected)
    );
}

/// Inclusion and consistency proofs from the store verify against its roots; ranges are checked.
pub async fn proofs_verify_against_roots(harness: impl Harness) {
    let store = harness.store();
    for round in 0..7 {
        store
            .append(
                stream("proof"),
                ExpectedVersion::Any,
                events(&format!("pr{round}"), round + 1),
            )
            .await
            .expect("append");
    }
    let records = check_ledger(&*store).await;
    let size = records.len() as u64;
    for tree_size in [1, 2, 3, 7, 16, size] {
        let root = store.root_at(tree_size).await.expect("root");
        for position in 1..=tree_size {
            let proof = store
                .inclusion_proof(Position(position), tree_size)
                .await
                .expect("proof");
            proof
                .verify(&records[(position - 1) as usize].leaf_hash(), &root)
                .expect("inclusion proof verifies");
        }
        for old_size in 1..=tree_size {
            let proof = store
                .consistency_proof(old_size, tree_size)
                .await
                .expect("proof");
            let old_root = store.root_at(old_size).await.expect("root");
            proof
                .verify(&old_root, &root)
                .expect("consistency proof verifies");
        }
    }
    assert_eq!(
        store.root_at(0).await.expect("root"),
        cairn_ledger::empty_root()
    );
    for error in [
        store.root_at(size + 1).await.expect_err("beyond head"),
        store
            .inclusion_proof(Position(0), size)
            .await
            .expect_err("position 0"),
        store
            .inclusion_proof(Position(5), 4)
            .await
            .expect_err("not in tree"),
        store
            .inclusion_proof(Position(1), size + 1)
            .await
            .expect_err("beyond head"),
        store
            .consistency_proof(0, size)
            .await
            .expect_err("old size 0"),
        store.consistency_proof(5, 4).await.expect_err("shrinking"),
        store
            .consistency_proof(1, size + 1)
            .await
            .expect_err("beyond head"),
    ]
    .iter()
    .map(StoreError::kind)
    .enumerate()
    {
        assert_eq!(error.1, StoreErrorKind::OutOfRange, "case {}", error.0);
    }
}

fn signer() -> cairn_ledger::CheckpointSigner {
    cairn_ledger::CheckpointSigner::from_secret_bytes([11; 32])
}

/// Checkpoints are stored only if they sign the ledger's own root and never go back in size; they
/// survive a reopen.
pub async fn checkpoints_must_match_the_tree(mut harness: impl Harness) {
    let store = harness.store();
    store
        .append(stream("cp"), ExpectedVersion::Any, events("cp", 10))
        .await
        .expect("append");
    let log_id = LogId([1; 32]);
    let checkpoint = |size: u64, root: Hash| {
        signer().sign(cairn_ledger::Checkpoint {
            log_id,
            tree_size: size,
            root,
            timestamp: Timestamp(size as i64),
        })
    };
    assert!(store.latest_checkpoint().await.expect("latest").is_none());
    let root6 = store.root_at(6).await.expect("root");
    store
        .save_checkpoint(checkpoint(6, root6))
        .await
        .expect("save");
    let error = store
        .save_checkpoint(checkpoint(8, root6))
        .await
        .expect_err("wrong root");
    assert_eq!(error.kind(), StoreErrorKind::InvalidArgument);
    let root4 = store.root_at(4).await.expect("root");
    let error = store
        .save_checkpoint(checkpoint(4, root4))
        .await
        .expect_err("goes back");
    assert_eq!(error.kind(), StoreErrorKind::InvalidArgument);
    let error = store
        .save_checkpoint(checkpoint(11, root6))
        .await
        .expect_err("beyond head");
    assert_eq!(error.kind(), StoreErrorKind::OutOfRange);
    let root10 = store.root_at(10).await.expect("root");
    let latest = checkpoint(10, root10);
    store.save_checkpoint(latest.clone()).await.expect("save");
    assert_eq!(
        store.latest_checkpoint().await.expect("latest"),
        Some(latest.clone())
    );
    assert_eq!(
        store.head().await.expect("head").checkpoint,
        Some(latest.clone())
    );
    latest.verify(&signer().public_key()).expect("signature");
    drop(store);
    let store = harness.reopen().await;
    assert_eq!(
        store.latest_checkpoint().await.expect("latest"),
        Some(latest)
    );
}

/// Keys: create once, read, destroy for good (across reopen), refuse reuse of an id.
pub async fn keys_create_get_destroy(mut harness: impl Harness) {
    let store = harness.store();
    let first = KeyId([1; 16]);
    let second = KeyId([2; 16]);
    store
        .create_key(first, DataKey([7; 32]))
        .await
        .expect("create");
    store
        .create_key(second, DataKey([8; 32]))
        .await
        .expect("create");
    assert!(
        matches!(store.key(first).await.expect("key"), KeyState::Active(DataKey(bytes)) if bytes == [7; 32])
    );
    assert!(matches!(
        store.key(KeyId([3; 16])).await.expect("key"),
        KeyState::Unknown
    ));
    assert!(matches!(
        store.create_key(first, DataKey([9; 32])).await,
        Err(StoreError::KeyExists(_))
    ));
    assert!(store.destroy_key(first).await.expect("destroy"));
    assert!(!store.destroy_key(first).await.expect("destroy again"));
    assert!(
        !store
            .destroy_key(KeyId([3; 16]))
            .await
            .expect("destroy unknown")
    );
    assert!(matches!(
        store.key(first).await.expect("key"),
        KeyState::Destroyed
    ));
    assert!(matches!(
        store.create_key(first, DataKey([9; 32])).await,
        Err(StoreError::KeyExists(_))
    ));
    drop(store);
    let store = harness.reopen().await;
    assert!(matches!(
        store.key(first).await.expect("key"),
        KeyState::Destroyed
    ));
    assert!(
        matches!(store.key(second).await.expect("key"), KeyState::Active(DataKey(bytes)) if bytes == [8; 32])
    );
}

/// Everything acknowledged is there after a reopen, byte for byte, and appends continue.
pub async fn reopen_keeps_everything(mut harness: impl Harness) {
    let store = harness.store();
    for round in 0..20 {
        store
            .append(
                stream(&format!("r{}", round % 3)),
                ExpectedVersion::Any,
                events(&format!("r{round}"), 5),
            )
            .await
            .expect("append");
    }
    let before = check_ledger(&*store).await;
    let head = store.head().await.expect("head");
    drop(store);
    let store = harness.reopen().await;
    let after = check_ledger(&*store).await;
    assert_eq!(before, after);
    assert_eq!(store.head().await.expect("head"), head);
    let next = store
        .append(
            stream("r0"),
            ExpectedVersion::Exact(StreamVersion(35)),
            events("more", 1),
        )
        .await
        .expect("append after reopen");
    assert_eq!(next.first_position, Position(101));
    assert_eq!(next.last_version, StreamVersion(36));
    let mut watch = store.watch_head();
    assert_eq!(*watch.borrow_and_update(), Position(101));
    store
        .append(stream("r1"), ExpectedVersion::Any, events("watched", 1))
        .await
        .expect("append");
    assert_eq!(
        *watch.borrow_and_update(),
        Position(102),
        "the head watch follows appends"
    );
}

/// Recorded time never goes back along positions.
pub async fn recorded_time_never_goes_back(harness: impl Harness) {
    let store = harness.store();
    for round in 0..20 {
        store
            .append(
                stream("t"),
                ExpectedVersion::Any,
                events(&format!("t{round}"), 3),
            )
            .await
            .expect("append");
    }
    let records = check_ledger(&*store).await;
    for pair in records.windows(2) {
        assert!(pair[0].envelope.recorded_at <= pair[1].envelope.recorded_at);
    }
    let now = crate::now();
    assert!(
        records
            .iter()
            .all(|record| record.envelope.recorded_at <= now)
    );
}

/// The in-memory store's harness: reopen keeps the same store (nothing to restart).
pub struct MemoryHarness(Arc<crate::MemoryStore>);

#[async_trait]
impl Harness for MemoryHarness {
    type Store = crate::MemoryStore;

    async fn new() -> Self {
        MemoryHarness(crate::MemoryStore::new())
    }

    fn store(&self) -> Arc<Self::Store> {
        Arc::clone(&self.0)
    }

    async fn reopen(&mut self) -> Arc<Self::Store> {
        Arc::clone(&self.0)
    }
}
