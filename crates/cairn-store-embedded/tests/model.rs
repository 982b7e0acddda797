//! Model test: random sequences of appends (with every kind of expected version), retries of
//! earlier appends, reads and restarts, checked step by step against a plain `Vec` model of the
//! ledger, with tiny segments so that rollover is exercised too.

mod common;

use cairn_ledger::{EventId, Position, StreamVersion};
use cairn_store::testsuite::{event, stream};
use cairn_store::{AppendResult, EventStore, ExpectedVersion, NewEvent, StoreError};
use cairn_store_embedded::{EmbeddedOptions, verify_segments};
use common::{all_records, open_with, root_of, tiny_segments};
use proptest::prelude::*;

const STREAMS: u8 = 3;

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: u8,
        expected: ExpectedVersion,
        count: u8,
    },
    /// Re-sends an earlier successful append, picked modulo the number of them.
    Retry {
        pick: usize,
    },
    ReadStream {
        stream: u8,
        from: u64,
        limit: usize,
    },
    ReadAll {
        from: u64,
        limit: usize,
    },
    Reopen,
}

fn expected_version() -> impl Strategy<Value = ExpectedVersion> {
    prop_oneof![
        Just(ExpectedVersion::Any),
        Just(ExpectedVersion::NoStream),
        (0u64..6).prop_map(|version| ExpectedVersion::Exact(StreamVersion(version))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..STREAMS, expected_version(), 1u8..4)
            .prop_map(|(stream, expected, count)| Op::Append { stream, expected, count }),
        2 => any::<usize>().prop_map(|pick| Op::Retry { pick }),
        2 => (0..STREAMS, 0u64..8, 0usize..6).prop_map(|(stream, from, limit)| Op::ReadStream { stream, from, limit }),
        2 => (0u64..30, 0usize..10).prop_map(|(from, limit)| Op::ReadAll { from, limit }),
        1 => Just(Op::Reopen),
    ]
}

/// The ledger as a list: per position, its stream, version and event id.
#[derive(Default)]
struct Model {
    records: Vec<(u8, u64, EventId)>,
    /// Successful appends: what was sent and what came back.
    history: Vec<(u8, ExpectedVersion, Vec<NewEvent>, AppendResult)>,
    next_seed: u64,
}

impl Model {
    fn version(&self, stream: u8) -> u64 {
        self.records.iter().filter(|(s, _, _)| *s == stream).count() as u64
    }
}

fn stream_name(stream: u8) -> String {
    format!("m{stream}")
}

async fn run(ops: Vec<Op>, options: EmbeddedOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open_with(dir.path(), options.clone()).await.expect("open");
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append {
                stream: s,
                expected,
                count,
            } => {
                let events: Vec<NewEvent> = (0..count)
                    .map(|_| {
                        model.next_seed += 1;
                        event(&format!("model-{}", model.next_seed))
                    })
                    .collect();
                let current = model.version(s);
                let matches = match expected {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NoStream => current == 0,
                    ExpectedVersion::Exact(version) => version.0 == current,
                };
                let outcome = store
                    .append(stream(&stream_name(s)), expected, events.clone())
                    .await;
                if matches {
                    let result = outcome.expect("append");
                    let first = model.records.len() as u64 + 1;
                    assert_eq!(result.first_position, Position(first));
                    assert_eq!(result.last_position, Position(first + u64::from(count) - 1));
                    assert_eq!(
                        result.last_version,
                        StreamVersion(current + u64::from(count))
                    );
                    assert!(!result.deduplicated);
                    for (offset, event) in events.iter().enumerate() {
                        model
                            .records
                            .push((s, current + 1 + offset as u64, event.event_id));
                    }
                    model.history.push((s, expected, events, result));
                } else {
                    match outcome {
                        Err(StoreError::WrongExpectedVersion {
                            current: reported, ..
                        }) => {
                            assert_eq!(reported, StreamVersion(current));
                        }
                        other => panic!("expected a version conflict, got {other:?}"),
                    }
                }
            }
            Op::Retry { pick } => {
                if model.history.is_empty() {
                    continue;
                }
                let (s, expected, events, original) =
                    model.history[pick % model.history.len()].clone();
                let retry = store
                    .append(stream(&stream_name(s)), expected, events)
                    .await
                    .expect("a retry succeeds");
                assert!(retry.deduplicated);
                assert_eq!(
                    (
                        retry.first_position,
                        retry.last_position,
                        retry.last_version
                    ),
                    (
                        original.first_position,
                        original.last_position,
                        original.last_version
                    )
                );
            }
            Op::ReadStream {
                stream: s,
                from,
                limit,
            } => {
                let read = store
                    .read_stream(&stream(&stream_name(s)), StreamVersion(from), limit)
                    .await
                    .expect("read_stream");
                let expected: Vec<(u64, u64, EventId)> = model
                    .records
                    .iter()
                    .enumerate()
                    .filter(|(_, (rs, version, _))| *rs == s && *version >= from.max(1))
                    .take(limit)
                    .map(|(index, (_, version, id))| (index as u64 + 1, *version, *id))
                    .collect();
                let got: Vec<(u64, u64, EventId)> = read
                    .iter()
                    .map(|r| {
                        (
                            r.position().0,
                            r.envelope.stream_version.0,
                            r.envelope.event_id,
                        )
                    })
                    .collect();
                assert_eq!(got, expected, "read_stream({s}, {from}, {limit})");
            }
            Op::ReadAll { from, limit } => {
                let read = store
                    .read_all(Position(from), limit)
                    .await
                    .expect("read_all");
                let start = from.max(1) as usize - 1;
                let expected: Vec<(u64, EventId)> = model
                    .records
                    .iter()
                    .enumerate()
                    .skip(start)
                    .take(limit)
                    .map(|(index, (_, _, id))| (index as u64 + 1, *id))
                    .collect();
                let got: Vec<(u64, EventId)> = read
                    .iter()
                    .map(|r| (r.position().0, r.envelope.event_id))
                    .collect();
                assert_eq!(got, expected, "read_all({from}, {limit})");
            }
            Op::Reopen => {
                store.close().await;
                store = open_with(dir.path(), options.clone())
                    .await
                    .expect("reopen");
                assert_eq!(
                    store.head().await.expect("head").position,
                    Position(model.records.len() as u64)
                );
            }
        }
    }
    let records = all_records(&store).await;
    let ids: Vec<EventId> = records.iter().map(|r| r.envelope.event_id).collect();
    let model_ids: Vec<EventId> = model.records.iter().map(|(_, _, id)| *id).collect();
    assert_eq!(ids, model_ids);
    let head = store.head().await.expect("head");
    assert_eq!(head.root, root_of(&records));
    for s in 0..STREAMS {
        assert_eq!(
            store
                .stream_version(&stream(&stream_name(s)))
                .await
                .expect("version"),
            StreamVersion(model.version(s))
        );
    }
    store.close().await;
    let report = verify_segments(dir.path(), |_| {}).expect("verify");
    assert_eq!(report.records, model.records.len() as u64);
    assert_eq!(report.root, head.root);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_store_behaves_like_the_model(ops in prop::collection::vec(op(), 1..30)) {
        runtime().block_on(run(ops, tiny_segments()));
    }

    /// The same with an indexer that indexes every group at once and a writer that waits for
    /// it, so reads mix sled and pending entries while the indexer removes them.
    #[test]
    fn the_store_behaves_like_the_model_with_an_eager_indexer(ops in prop::collection::vec(op(), 1..30)) {
        let options = EmbeddedOptions { index_lag_records_max: 4, ..tiny_segments() };
        runtime().block_on(run(ops, options));
    }
}
