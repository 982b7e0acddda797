//! What the conformance suite cannot say about the JetStream backend: several nodes on one
//! stream, the start-up checks of the server's stream configuration, and the secure erase of
//! destroyed data keys.

use std::sync::Arc;

use async_nats::jetstream;
use cairn_ledger::{DataKey, KeyId, Position};
use cairn_store::testsuite::{event, stream};
use cairn_store::{EventStore, ExpectedVersion, KeyState, KeyStore};
use cairn_store_jetstream::testing::NatsServer;
use cairn_store_jetstream::{JetStreamOptions, JetStreamStore};

async fn server() -> NatsServer {
    tokio::task::spawn_blocking(NatsServer::start)
        .await
        .expect("server start")
}

fn options(server: &NatsServer) -> JetStreamOptions {
    JetStreamOptions {
        urls: server.url(),
        ..JetStreamOptions::default()
    }
}

/// Both nodes are at `head`, with the same root and the same records.
async fn assert_same_ledger(a: &JetStreamStore, b: &JetStreamStore, head: Position) {
    let (head_a, head_b) = (a.head().await.unwrap(), b.head().await.unwrap());
    assert_eq!(head_a.position, head);
    assert_eq!(head_b.position, head);
    assert_eq!(head_a.root, head_b.root, "both nodes build the same tree");
    assert_eq!(
        a.read_all(Position(1), 10_000).await.unwrap(),
        b.read_all(Position(1), 10_000).await.unwrap(),
        "both nodes derive the same envelopes"
    );
}

async fn raw(server: &NatsServer) -> jetstream::Context {
    jetstream::new(
        async_nats::connect(server.url())
            .await
            .expect("connect a raw client"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_append_concurrently_and_build_the_same_ledger() {
    let server = server().await;
    let a = JetStreamStore::open(options(&server))
        .await
        .expect("node a");
    let b = JetStreamStore::open(options(&server))
        .await
        .expect("node b");
    let mut tasks = Vec::new();
    for (node, store) in [("a", Arc::clone(&a)), ("b", Arc::clone(&b))] {
        for writer in 0..4 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    // One shared stream (version conflicts between nodes) and one per writer.
                    let shared = stream("shared");
                    let own = stream(&format!("{node}-{writer}"));
                    let target = if i % 2 == 0 { shared } else { own };
                    store
                        .append(
                            target,
                            ExpectedVersion::Any,
                            vec![event(&format!("{node}-{writer}-{i}"))],
                        )
                        .await
                        .expect("append");
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let total = Position(200);
    a.wait_applied(total).await.expect("a applies everything");
    b.wait_applied(total).await.expect("b applies everything");
    assert_same_ledger(&a, &b, total).await;
    let shared = a
        .read_stream(&stream("shared"), Default::default(), 1000)
        .await
        .unwrap();
    assert_eq!(
        shared.len(),
        8 * 13,
        "13 of each writer's 25 appends go to the shared stream"
    );
    for (index, record) in shared.iter().enumerate() {
        assert_eq!(
            record.envelope.stream_version.0,
            index as u64 + 1,
            "gapless versions"
        );
    }
    // A retry on the other node answers with the original positions.
    let first = a
        .append(
            stream("retry"),
            ExpectedVersion::NoStream,
            vec![event("r-1"), event("r-2")],
        )
        .await
        .unwrap();
    let again = b
        .append(
            stream("retry"),
            ExpectedVersion::NoStream,
            vec![event("r-1"), event("r-2")],
        )
        .await
        .unwrap();
    assert_eq!(again.first_position, first.first_position);
    assert!(again.deduplicated);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_stream_that_could_lose_records() {
    let server = server().await;
    let js = raw(&server).await;
    js.create_stream(jetstream::stream::Config {
        name: "CAIRN".into(),
        subjects: vec!["CAIRN.s.*".into()],
        deny_delete: false,
        deny_purge: true,
        allow_atomic_publish: true,
        max_age: std::time::Duration::from_secs(3600),
        duplicate_window: std::time::Duration::from_secs(1),
        ..Default::default()
    })
    .await
    .expect("create a careless stream");
    let error = JetStreamStore::open(options(&server))
        .await
        .err()
        .expect("the careless stream is refused")
        .to_string();
    assert!(error.contains("deletes are allowed"), "{error}");
    assert!(error.contains("age limit"), "{error}");
    assert!(error.contains("direct gets are off"), "{error}");
    assert!(error.contains("duplicate window is 1s"), "{error}");

    // Another name, with subjects cairn does not use.
    js.create_stream(jetstream::stream::Config {
        name: "OTHER".into(),
        subjects: vec!["OTHER.>".into()],
        deny_delete: true,
        deny_purge: true,
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await
    .expect("create a stream with other subjects");
    let error = JetStreamStore::open(JetStreamOptions {
        stream: "OTHER".into(),
        ..options(&server)
    })
    .await
    .err()
    .expect("wrong subjects are refused")
    .to_string();
    assert!(error.contains("its subjects are"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroyed_key_leaves_no_bytes_in_the_server_files() {
    let mut server = server().await;
    let store = JetStreamStore::open(options(&server)).await.expect("open");
    let marker = *b"cairn-key-bytes-to-be-erased-!!!";
    let (kept_id, kept) = (KeyId([1; 16]), *b"cairn-key-bytes-that-are-kept-!!");
    store
        .create_key(KeyId([2; 16]), DataKey(marker))
        .await
        .unwrap();
    store.create_key(kept_id, DataKey(kept)).await.unwrap();
    assert!(store.destroy_key(KeyId([2; 16])).await.unwrap());
    assert!(matches!(
        store.key(KeyId([2; 16])).await.unwrap(),
        KeyState::Destroyed
    ));
    assert!(
        !store.destroy_key(KeyId([2; 16])).await.unwrap(),
        "idempotent"
    );
    assert!(
        store
            .create_key(KeyId([2; 16]), DataKey([9; 32]))
            .await
            .is_err(),
        "a destroyed id is never created again"
    );
    store.close().await;
    server.stop();
    let (mut erased_found, mut kept_found) = (false, false);
    for file in files(&server.store_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        erased_found |= bytes.windows(32).any(|window| window == marker);
        kept_found |= bytes.windows(32).any(|window| window == kept);
    }
    assert!(kept_found, "the search finds a key that was not destroyed");
    assert!(
        !erased_found,
        "the destroyed key's bytes are still in the server's files"
    );
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_batches_are_each_stored_whole() {
    let server = server().await;
    let store = JetStreamStore::open(options(&server)).await.expect("open");
    // More concurrent batches than the server keeps open at once (50 per stream).
    let tasks: Vec<_> = (0..80)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let events = (0..3)
                    .map(|i| event(&format!("batch-{writer}-{i}")))
                    .collect();
                store
                    .append(
                        stream(&format!("batch-{writer}")),
                        ExpectedVersion::NoStream,
                        events,
                    )
                    .await
                    .expect("a batch is stored")
            })
        })
        .collect();
    for task in tasks {
        let result = task.await.expect("writer");
        assert_eq!(
            result.last_position.0 - result.first_position.0,
            2,
            "contiguous"
        );
        assert_eq!(result.last_version.0, 3);
    }
    assert_eq!(store.head().await.unwrap().position, Position(240));
    store.close().await;
}

/// A node that has not applied another node's append yet still answers an append made in view
/// of it: a refusal is final only after the node caught up with the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_behind_catches_up_before_it_refuses() {
    let server = server().await;
    let a = JetStreamStore::open(options(&server))
        .await
        .expect("node a");
    let b = JetStreamStore::open(options(&server))
        .await
        .expect("node b");
    for round in 0..20u64 {
        let on = stream(&format!("behind-{round}"));
        let first = vec![
            event(&format!("behind-{round}-1")),
            event(&format!("behind-{round}-2")),
        ];
        let acked = a
            .append(on.clone(), ExpectedVersion::NoStream, first.clone())
            .await
            .unwrap();
        // At once on b: the next version, and a re-send of a's batch.
        let next = b
            .append(
                on.clone(),
                ExpectedVersion::Exact(acked.last_version),
                vec![event(&format!("behind-{round}-3"))],
            )
            .await
            .expect("b appends in view of a's append");
        assert_eq!(next.last_version.0, 3);
        let again = b
            .append(on, ExpectedVersion::NoStream, first)
            .await
            .expect("b answers a's batch as a retry");
        assert_eq!(again.first_position, acked.first_position);
        assert!(again.deduplicated);
    }
    a.close().await;
    b.close().await;
}

/// The largest append the limits allow (payloads summing to nearly `APPEND_BATCH_BYTES_MAX`) is
/// stored whole: JetStream's message and batch limits are not tighter than cairn's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_append_the_limits_allow_is_stored() {
    let server = server().await;
    let store = JetStreamStore::open(options(&server)).await.expect("open");
    let payload_bytes = cairn_ledger::limits::PAYLOAD_BYTES_MAX - 64;
    let count = cairn_store::limits::APPEND_BATCH_BYTES_MAX / (payload_bytes + 512);
    let events: Vec<_> = (0..count)
        .map(|i| {
            let mut big = event(&format!("big-{i}"));
            big.payload = cairn_store::testsuite::clear_payload(vec![i as u8; payload_bytes]);
            big
        })
        .collect();
    let result = store
        .append(stream("big"), ExpectedVersion::NoStream, events)
        .await
        .expect("the largest append is stored");
    assert_eq!(result.last_version.0, count as u64);
    let records = store.read_all(Position(1), 100).await.unwrap();
    assert_eq!(records.len(), count);
    assert!(
        records
            .iter()
            .all(|record| record.payload.len() > payload_bytes)
    );
    store.close().await;
}

/// Waits, at most a minute (a liveness bound: nothing here depends on how fast it happens), until
/// `done` holds.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_node_follows_a_writer_by_pulling_then_consuming_then_pulling() {
    let server = server().await;
    let writer = JetStreamStore::open(options(&server))
        .await
        .expect("writer");
    let reader = JetStreamStore::open(options(&server))
        .await
        .expect("reader");
    let mut seen = reader.watch_head();
    let mut written = 0u64;
    let mut write = async |count: usize, per_append: usize| {
        for _ in 0..count {
            let events = (0..per_append)
                .map(|_| {
                    written += 1;
                    event(&format!("e-{written}"))
                })
                .collect();
            writer
                .append(
                    stream(&format!("s-{}", written % 7)),
                    ExpectedVersion::Any,
                    events,
                )
                .await
                .expect("append");
        }
        Position(written)
    };
    // A few records: the reader, which asks for nothing, learns of them by polling and pulls
    // them.
    let head = write(3, 1).await;
    seen.wait_for(|position| *position >= head)
        .await
        .expect("the reader follows");
    assert!(!reader.consuming());
    // Many records in a moment: the reader consumes instead, and keeps up.
    let head = write(10, 100).await;
    seen.wait_for(|position| *position >= head)
        .await
        .expect("the reader follows");
    eventually("the reader consuming", async || reader.consuming()).await;
    let head = write(20, 3).await;
    seen.wait_for(|position| *position >= head)
        .await
        .expect("the consuming reader follows");
    // Quiet: back to pulling, and still following.
    eventually("the reader pulling again", async || !reader.consuming()).await;
    let head = write(5, 2).await;
    seen.wait_for(|position| *position >= head)
        .await
        .expect("the reader follows");
    assert_same_ledger(&writer, &reader, head).await;
    writer.close().await;
    reader.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_another_node_recorded_is_refused_on_another_stream() {
    let server = server().await;
    let node = JetStreamStore::open(options(&server)).await.expect("node");
    // Another node records e-1 on stream a, published as cairn publishes it; this node has not
    // applied it when it appends e-1 to stream b, so the server de-duplicates the publish and
    // acknowledges the other node's record (or, if this node polled in between, its own check
    // refuses): either way the append is refused and nothing is recorded twice.
    let taken = event("e-1");
    let js = raw(&server).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        hex::encode(taken.event_id.0).as_str(),
    );
    js.publish_with_headers(
        cairn_store_jetstream::wire::subject("CAIRN", &stream("a")),
        headers,
        cairn_store_jetstream::wire::encode(&stream("a"), &taken).into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let error = node
        .append(stream("b"), ExpectedVersion::Any, vec![event("e-1")])
        .await
        .expect_err("the id is taken");
    assert!(
        matches!(error, cairn_store::StoreError::EventIdConflict { .. }),
        "{error}"
    );
    let head = node.head().await.unwrap();
    assert_eq!(head.position, Position(1));
    // The same event on its own stream is a duplicate, answered from the stored record.
    let again = node
        .append(stream("a"), ExpectedVersion::Any, vec![event("e-1")])
        .await
        .expect("a retry");
    assert_eq!(again.first_position, Position(1));
    node.close().await;
}
