//! [`JetStreamStore`]: the [`EventStore`] over one JetStream stream.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use async_trait::async_trait;
use bytes::Bytes;
use cairn_ledger::{
    ConsistencyProof, Hash, InclusionProof, Position, Record, SignedCheckpoint, StreamId,
    StreamVersion,
};
use cairn_store::{
    AppendPlan, AppendResult, EventStore, ExpectedVersion, Head, NewEvent, RecordLog, StateView,
    StoreError, limits, plan_append, proofs, validate_append,
};
use futures::StreamExt;
use tokio::sync::{broadcast, oneshot, watch};

use crate::{SERVER_VERSION_MIN, ServerVersion, keys::Keys, wire};

/// How an append's conflicts with concurrent appends to the same ledger stream are retried before
/// the caller is told to try again.
const APPEND_ATTEMPTS_MAX: usize = 32;

/// How long a wait for this node to apply records (a catch-up's, the stream's at start, another
/// node's records before an acknowledged append) may see no progress before it fails.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long start-up waits for JetStream to answer (a cluster that has just started elects its
/// leaders first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `head` may answer with a cached latest checkpoint (other nodes' checkpoints appear
/// within this).
const CHECKPOINT_CACHE_MAX_AGE: Duration = Duration::from_secs(1);

/// JetStream error codes cairn acts on.
const WRONG_LAST_SEQUENCE: u64 = 10071;
const BATCH_HAS_DUPLICATE: u64 = 10201;
/// The server holds too many unfinished atomic batches (50 per stream by default).
const BATCHES_IN_FLIGHT: u64 = 10210;

/// Conflicts of one append after which it pauses between attempts, and the unit of the pause
/// (one to eight units, at random).
const CONFLICTS_BEFORE_BACKOFF: usize = 4;
const CONFLICT_BACKOFF_UNIT: Duration = Duration::from_micros(250);

/// How long an append waits before it tries again when the server has too many batches open.
const BATCH_BACKOFF: Duration = Duration::from_millis(5);

/// What publishing an append came to.
enum Published {
    /// Stored (or stored before: `duplicate`), the last record at this sequence; `count` is the
    /// number of records the server says it stored (a batch's acknowledgement says so from
    /// nats-server 2.14 on).
    Stored {
        last_sequence: u64,
        duplicate: bool,
        count: Option<u64>,
    },
    /// The subject moved, or a batch holds an id recorded already: catch up and plan again.
    Conflict,
    /// The server had no room for another batch now: try again shortly.
    Busy,
}

/// Where the ledger lives and how to reach it.
#[derive(Clone, Debug)]
pub struct JetStreamOptions {
    /// Server URLs, comma-separated (`nats://127.0.0.1:4222,nats://10.0.0.2:4222`); a URL may
    /// carry `user:password@`.
    pub urls: String,
    /// A NATS credentials file (`.creds`: JWT and NKey seed).
    pub credentials: Option<std::path::PathBuf>,
    /// The stream's name; the checkpoint stream, the key bucket and the lease bucket are named
    /// after it.
    pub stream: String,
    /// Replicas of each stream and bucket cairn creates (1, 3 or 5). Existing streams keep theirs.
    pub replicas: usize,
    /// How long one JetStream request may take.
    pub request_timeout: Duration,
}

impl Default for JetStreamOptions {
    fn default() -> JetStreamOptions {
        JetStreamOptions {
            urls: "nats://127.0.0.1:4222".into(),
            credentials: None,
            stream: "CAIRN".into(),
            replicas: 1,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Longest stream name cairn takes (its buckets and checkpoint stream add a suffix).
pub const STREAM_NAME_BYTES_MAX: usize = 48;

impl JetStreamOptions {
    /// Checks what the server would refuse, or take in another sense, before anything is sent:
    /// the stream name is also a subject token and part of bucket names.
    pub fn validate(&self) -> Result<(), StoreError> {
        let name = &self.stream;
        if name.is_empty()
            || name.len() > STREAM_NAME_BYTES_MAX
            || !name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        {
            return Err(StoreError::InvalidArgument {
                field: "nats_stream",
                reason: format!(
                    "{name:?} must be 1 to {STREAM_NAME_BYTES_MAX} characters of [A-Za-z0-9_-]"
                ),
            });
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(StoreError::InvalidArgument {
                field: "nats_replicas",
                reason: format!("{} must be 1 to 5", self.replicas),
            });
        }
        Ok(())
    }

    /// The subject prefix of the records (the stream's name).
    fn prefix(&self) -> &str {
        &self.stream
    }

    fn checkpoint_stream(&self) -> String {
        format!("{}_CHECKPOINTS", self.stream)
    }

    fn checkpoint_subject(&self) -> String {
        format!("{}.checkpoints", self.stream)
    }

    pub(crate) fn keys_bucket(&self) -> String {
        format!("{}_KEYS", self.stream)
    }

    pub(crate) fn lease_bucket(&self) -> String {
        format!("{}_LEASE", self.stream)
    }
}

/// What a node has applied of the stream.
#[derive(Default)]
struct State {
    log: RecordLog,
    /// Set when the stream contradicts itself: the store refuses to serve.
    failed: Option<String>,
}

/// What the follower and the handles share.
struct Shared {
    state: RwLock<State>,
    live: broadcast::Sender<Arc<Record>>,
    head: watch::Sender<Position>,
    /// Appends waiting for this node to apply a position, woken only once it has (a watch would
    /// wake every waiter on every record).
    waiters: Mutex<std::collections::BTreeMap<u64, Vec<oneshot::Sender<()>>>>,
    /// Records on their way to being applied (lock it before `state`).
    applier: Mutex<Applier>,
    /// The last position this node knows the stream holds (from its appends' acknowledgements,
    /// waits for a position, and polls): the follower fetches up to it.
    known: watch::Sender<u64>,
    /// This node's publishes waiting for their acknowledgements.
    acks: Acks,
    /// Whether the follower consumes the stream (other nodes write much) rather than pulls.
    consuming: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// `acks_prefix`: the subject prefix of this node's acknowledgements (an inbox).
    fn new(acks_prefix: String) -> Shared {
        Shared {
            state: RwLock::new(State::default()),
            live: broadcast::channel(limits::LIVE_BUFFER_RECORDS).0,
            head: watch::channel(Position::ZERO).0,
            waiters: Mutex::default(),
            applier: Mutex::default(),
            known: watch::channel(0).0,
            acks: Acks::new(acks_prefix),
            consuming: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn applier(&self) -> MutexGuard<'_, Applier> {
        self.applier
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that the stream holds at least `position`.
    fn raise_known(&self, position: u64) {
        self.known.send_if_modified(|known| {
            let raised = position > *known;
            if raised {
                *known = position;
            }
            raised
        });
    }

    /// Stops serving: the stream contradicts the ledger (at `position`, if known), as `detail`
    /// says.
    fn fail(&self, position: Option<Position>, detail: String) {
        let detail = match position {
            Some(position) => format!("at position {position}: {detail}"),
            None => detail,
        };
        tracing::error!(%detail, "the record stream contradicts the ledger; this node stops serving");
        self.write().failed = Some(detail);
        // Wake waiters so they see the failure.
        self.head.send_modify(|_| {});
        self.drop_waiters();
    }

    /// Wakes the waiters for positions up to `head`.
    fn wake(&self, head: Position) {
        let mut waiters = self
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let later = waiters.split_off(&(head.0 + 1));
        let reached = std::mem::replace(&mut *waiters, later);
        drop(waiters);
        for sender in reached.into_values().flatten() {
            let _ = sender.send(());
        }
    }

    /// Drops every waiter: each sees the store failed or closed.
    fn drop_waiters(&self) {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The ledger on a JetStream stream, as one cairn node sees it.
pub struct JetStreamStore {
    options: JetStreamOptions,
    client: async_nats::Client,
    js: jetstream::Context,
    shared: Arc<Shared>,
    keys: Keys,
    checkpoints: tokio::sync::Mutex<CheckpointCache>,
    stop: watch::Sender<bool>,
    /// The follower and the acknowledgement handler.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// How old this node's view may be when it appends (half the stream's duplicate window).
    freshness_max: Duration,
}

#[derive(Default)]
struct CheckpointCache {
    latest: Option<(u64, SignedCheckpoint)>,
    read_at: Option<Instant>,
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {error}"))
}

/// Connects to NATS with the options' URLs and credentials.
pub async fn connect(options: &JetStreamOptions) -> Result<async_nats::Client, StoreError> {
    let mut connect = async_nats::ConnectOptions::new()
        .name("cairn")
        .request_timeout(Some(options.request_timeout))
        .retry_on_initial_connect()
        .max_reconnects(None);
    if let Some(path) = &options.credentials {
        connect = connect
            .credentials_file(path)
            .await
            .map_err(|error| unavailable(&format!("cannot read {}", path.display()), error))?;
    }
    let urls: Vec<async_nats::ServerAddr> = options
        .urls
        .split(',')
        .map(|url| {
            url.trim()
                .parse()
                .map_err(|error| StoreError::InvalidArgument {
                    field: "store",
                    reason: format!("{url:?} is not a NATS URL: {error}"),
                })
        })
        .collect::<Result<_, _>>()?;
    let client = tokio::time::timeout(options.request_timeout * 3, connect.connect(urls))
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!("cannot reach NATS at {}: timed out", options.urls))
        })?
        .map_err(|error| {
            unavailable(
                &format!("cannot connect to NATS at {}", options.urls),
                error,
            )
        })?;
    // The server's INFO arrives with the connection; wait for it.
    let deadline = Instant::now() + options.request_timeout;
    while client.server_info().version.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = client.server_info().version;
    let version = ServerVersion::parse(&text).ok_or_else(|| {
        StoreError::Unavailable(format!("the NATS server reports version {text:?}"))
    })?;
    if version < SERVER_VERSION_MIN {
        return Err(StoreError::Unavailable(format!(
            "the NATS server at {} is {version}; cairn needs nats-server {SERVER_VERSION_MIN} or \
             later (atomic batch publish keeps an append of several events whole)",
            options.urls
        )));
    }
    if !client.server_info().jetstream {
        return Err(StoreError::Unavailable(format!(
            "the NATS server at {} runs without JetStream: enable it (`jetstream {{ ... }}`, see \
             deploy/nats-server.conf)",
            options.urls
        )));
    }
    Ok(client)
}

/// The configuration cairn creates its record stream with (the benchmark creates its baseline's
/// stream with it too).
pub fn record_stream_config(options: &JetStreamOptions) -> stream::Config {
    stream::Config {
        name: options.stream.clone(),
        description: Some("cairn ledger records: append-only, never deleted".into()),
        subjects: vec![wire::subjects_filter(options.prefix())],
        storage: stream::StorageType::File,
        num_replicas: options.replicas,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::New,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_consumers: -1,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        allow_atomic_publish: true,
        // The server's default, said: idempotency across nodes relies on it.
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

fn checkpoint_stream_config(options: &JetStreamOptions) -> stream::Config {
    stream::Config {
        name: options.checkpoint_stream(),
        description: Some("cairn signed checkpoints".into()),
        subjects: vec![options.checkpoint_subject()],
        ..record_stream_config(options)
    }
}

/// Why a stream's configuration (as the server echoes it) would break the ledger: every problem,
/// or none.
pub fn check_stream_config(config: &stream::Config, subject: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !config.deny_delete {
        problems.push("deletes are allowed (deny_delete is false)".to_owned());
    }
    if !config.deny_purge {
        problems.push("purges are allowed (deny_purge is false)".to_owned());
    }
    if config.allow_rollup {
        problems.push("rollups are allowed (a rollup purges)".to_owned());
    }
    if config.subjects != [subject] {
        problems.push(format!(
            "its subjects are {:?}, not [{subject:?}]",
            config.subjects
        ));
    }
    if config.storage != stream::StorageType::File {
        problems.push("its storage is memory, not file".to_owned());
    }
    if config.retention != stream::RetentionPolicy::Limits {
        problems.push(format!(
            "its retention is {:?}, not limits (anything else removes records)",
            config.retention
        ));
    }
    if config.max_messages > 0
        || config.max_bytes > 0
        || config.max_messages_per_subject > 0
        || !config.max_age.is_zero()
    {
        problems.push(
            "it has a message, byte, per-subject or age limit (reaching one would drop records)"
                .to_owned(),
        );
    }
    if config.mirror.is_some() || config.sources.as_ref().is_some_and(|s| !s.is_empty()) {
        problems.push("it is a mirror or has sources".to_owned());
    }
    if config.sealed {
        problems.push("it is sealed".to_owned());
    }
    if !config.allow_atomic_publish {
        problems.push(
            "atomic batch publish is off (allow_atomic; the server may be older than 2.12)"
                .to_owned(),
        );
    }
    if config.allow_message_ttl {
        problems.push("per-message TTLs are allowed (allow_msg_ttl)".to_owned());
    }
    if !config.allow_direct {
        problems
            .push("direct gets are off (allow_direct; nodes fetch records with them)".to_owned());
    }
    if config.duplicate_window < DUPLICATE_WINDOW_MIN {
        problems.push(format!(
            "its duplicate window is {:?}, under {DUPLICATE_WINDOW_MIN:?} (idempotency across \
             nodes relies on it)",
            config.duplicate_window
        ));
    }
    problems
}

/// The shortest duplicate window cairn accepts on its record stream. A node appends only from a
/// view at most half the window old, so an event id recorded before its view was taken is in
/// its index, and one recorded since is within the server's window.
const DUPLICATE_WINDOW_MIN: Duration = Duration::from_secs(10);

/// Creates the stream if it is missing, then checks the configuration the server echoes back.
async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, StoreError> {
    let name = config.name.clone();
    let subject = config.subjects[0].clone();
    let mut handle = match js.get_stream(&name).await {
        Ok(handle) => handle,
        Err(error)
            if matches!(
                error.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref api)
                    if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            js.create_stream(config)
                .await
                .map_err(|error| unavailable(&format!("cannot create stream {name}"), error))?
        }
        Err(error) => return Err(unavailable(&format!("cannot look up stream {name}"), error)),
    };
    let info = handle
        .info()
        .await
        .map_err(|error| unavailable(&format!("cannot read stream {name}"), error))?;
    let problems = check_stream_config(&info.config, &subject);
    if !problems.is_empty() {
        return Err(StoreError::InvalidArgument {
            field: "store",
            reason: format!(
                "stream {name} cannot hold a ledger: {}; fix its configuration or name another \
                 stream (--nats-stream)",
                problems.join("; ")
            ),
        });
    }
    Ok(handle)
}

impl JetStreamStore {
    /// Connects, creates or checks the streams and the key bucket, and applies every record
    /// already in the stream before it returns.
    pub async fn open(options: JetStreamOptions) -> Result<Arc<JetStreamStore>, StoreError> {
        options.validate()?;
        let client = connect(&options).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .build(client.clone());
        // A server (or cluster) that has just started may not answer JetStream requests yet: try
        // again until START_TIMEOUT; a configuration cairn refuses fails at once.
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut records, keys) = loop {
            let attempt = async {
                let records = ensure_stream(&js, record_stream_config(&options)).await?;
                ensure_stream(&js, checkpoint_stream_config(&options)).await?;
                let keys = Keys::open(&js, &options).await?;
                Ok::<_, StoreError>((records, keys))
            };
            match attempt.await {
                Ok(opened) => break opened,
                Err(StoreError::Unavailable(reason)) if Instant::now() < deadline => {
                    tracing::warn!(%reason, "JetStream is not ready; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => return Err(error),
            }
        };
        let freshness_max = records.cached_info().config.duplicate_window / 2;
        let shared = Arc::new(Shared::new(client.new_inbox()));
        let acks = client
            .subscribe(format!("{}.*", shared.acks.prefix))
            .await
            .map_err(|error| unavailable("cannot subscribe to acknowledgements", error))?;
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(follow(
                client.clone(),
                js.clone(),
                options.clone(),
                Arc::clone(&shared),
                stopped.clone(),
            )),
            tokio::spawn(handle_acks(acks, Arc::clone(&shared), stopped)),
        ];
        let store = Arc::new(JetStreamStore {
            options,
            client,
            js,
            shared,
            keys,
            checkpoints: tokio::sync::Mutex::new(CheckpointCache::default()),
            stop,
            tasks: Mutex::new(tasks),
            freshness_max,
        });
        let asked = Instant::now();
        let last = records
            .info()
            .await
            .map_err(|error| unavailable("cannot read the record stream", error))?
            .state
            .last_sequence;
        store.wait_applied(Position(last)).await?;
        store
            .shared
            .applier()
            .note_reading(&store.shared, last, asked);
        store.cached_checkpoint().await?;
        Ok(store)
    }

    /// Stops following the stream and closes the connection. Appends and reads after it fail.
    pub async fn close(&self) {
        self.stop.send_replace(true);
        self.shared.drop_waiters();
        let tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for task in tasks {
            let _ = task.await;
        }
        let _ = self.client.drain().await;
    }

    /// Whether this node follows the stream with a consumer (other nodes write at least 200
    /// records a second) rather than by fetching what it misses.
    pub fn consuming(&self) -> bool {
        self.shared.consuming.load(Ordering::Acquire)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &JetStreamOptions {
        &self.options
    }

    /// The JetStream context (the sealer lease uses the same connection).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    fn check_serving(&self) -> Result<(), StoreError> {
        if let Some(detail) = &self.shared.read().failed {
            return Err(StoreError::Corrupt {
                position: None,
                detail: detail.clone(),
            });
        }
        if *self.stop.borrow() {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        Ok(())
    }

    /// Waits until this node has applied the stream through `position`. Fails if the node
    /// applies nothing for [`APPLY_TIMEOUT`] (a start-up over a long stream may take longer in
    /// all, as long as it moves).
    pub async fn wait_applied(&self, position: Position) -> Result<(), StoreError> {
        loop {
            let seen = *self.shared.head.borrow();
            if seen >= position {
                return Ok(());
            }
            self.check_serving()?;
            self.shared.raise_known(position.0);
            let (sender, receiver) = oneshot::channel();
            self.shared
                .waiters
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .entry(position.0)
                .or_default()
                .push(sender);
            // Applied, failed or closed between the checks and the registration: its wake-up
            // (or the dropping of every waiter) may have passed.
            if *self.shared.head.borrow() >= position || self.check_serving().is_err() {
                continue;
            }
            match tokio::time::timeout(APPLY_TIMEOUT, receiver).await {
                // Woken, or dropped (failed or closed: the checks above say which).
                Ok(_) => continue,
                Err(_) if *self.shared.head.borrow() > seen => continue,
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "this node has applied nothing for {APPLY_TIMEOUT:?} while waiting for \
                         position {position} (it is at {seen})"
                    )));
                }
            }
        }
    }

    /// Whether this node's view is young enough to append from without an expected version (see
    /// [`DUPLICATE_WINDOW_MIN`]).
    fn fresh(&self) -> bool {
        self.shared
            .applier()
            .fresh_at
            .is_some_and(|at| at.elapsed() < self.freshness_max)
    }

    /// Waits until this node has applied everything the stream held when it was asked.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let asked = Instant::now();
        let last = self
            .js
            .get_stream(&self.options.stream)
            .await
            .map_err(|error| unavailable("cannot read the record stream", error))?
            .cached_info()
            .state
            .last_sequence;
        self.wait_applied(Position(last)).await?;
        self.shared
            .applier()
            .note_reading(&self.shared, last, asked);
        Ok(())
    }

    /// Publishes the events of one append and waits for its acknowledgement, which the
    /// acknowledgement handler ([`handle_acks`]) takes first: it applies the append's `bodies` at
    /// the positions acknowledged.
    async fn publish(
        &self,
        subject: &str,
        events: &[NewEvent],
        bytes: &[Bytes],
        bodies: &[wire::Body],
        last_subject_sequence: Option<u64>,
    ) -> Result<Published, StoreError> {
        let message_headers = |index: usize| {
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                hex::encode(events[index].event_id.0).as_str(),
            );
            if let (0, Some(last)) = (index, last_subject_sequence) {
                headers.insert(
                    async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    last.to_string().as_str(),
                );
            }
            headers
        };
        let (reply, acknowledged) = self.shared.acks.expect(bodies.to_vec());
        let last = events.len() - 1;
        let mut last_headers = message_headers(last);
        if events.len() > 1 {
            // An atomic batch: every message but the last is sent without a reply; the last
            // commits the batch and is answered with the acknowledgement or the batch's error.
            let batch_id = hex::encode(cairn_store::random_bytes::<16>());
            for (index, body) in bytes.iter().enumerate().take(last) {
                let mut headers = message_headers(index);
                headers.insert(async_nats::header::NATS_BATCH_ID, batch_id.as_str());
                headers.insert(
                    async_nats::header::NATS_BATCH_SEQUENCE,
                    (index + 1).to_string().as_str(),
                );
                self.client
                    .publish_with_headers(subject.to_owned(), headers, body.clone())
                    .await
                    .map_err(|error| unavailable("cannot publish", error))?;
            }
            last_headers.insert(async_nats::header::NATS_BATCH_ID, batch_id.as_str());
            last_headers.insert(
                async_nats::header::NATS_BATCH_SEQUENCE,
                (last + 1).to_string().as_str(),
            );
            last_headers.insert(
                async_nats::header::NATS_BATCH_COMMIT,
                async_nats::header::NATS_BATCH_COMMIT_FINAL,
            );
        }
        self.client
            .publish_with_reply_and_headers(
                subject.to_owned(),
                reply.subject.clone(),
                last_headers,
                bytes[last].clone(),
            )
            .await
            .map_err(|error| unavailable("cannot publish", error))?;
        reply.wait(acknowledged, self.options.request_timeout).await
    }

    /// The newest checkpoint, read from its stream at most [`CHECKPOINT_CACHE_MAX_AGE`] ago (this
    /// node's own saves update it at once). It may sign more records than this node has applied
    /// yet; callers filter.
    async fn cached_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        let mut cache = self.checkpoints.lock().await;
        let fresh = cache
            .read_at
            .is_some_and(|read_at| read_at.elapsed() < CHECKPOINT_CACHE_MAX_AGE);
        if !fresh {
            cache.latest = self.latest_checkpoint_entry().await?;
            cache.read_at = Some(Instant::now());
        }
        Ok(cache
            .latest
            .as_ref()
            .map(|(_, checkpoint)| checkpoint.clone()))
    }

    async fn latest_checkpoint_entry(&self) -> Result<Option<(u64, SignedCheckpoint)>, StoreError> {
        let checkpoints = self
            .js
            .get_stream_no_info(self.options.checkpoint_stream())
            .await
            .map_err(|error| unavailable("cannot reach the checkpoint stream", error))?;
        match checkpoints
            .direct_get_last_for_subject(self.options.checkpoint_subject())
            .await
        {
            Ok(message) => {
                let checkpoint = SignedCheckpoint::decode(&message.payload).map_err(|error| {
                    StoreError::Corrupt {
                        position: None,
                        detail: format!(
                            "checkpoint message {} does not decode: {error}",
                            message.sequence
                        ),
                    }
                })?;
                Ok(Some((message.sequence, checkpoint)))
            }
            Err(error) if error.kind() == jetstream::stream::DirectGetErrorKind::NotFound => {
                Ok(None)
            }
            Err(error) => Err(unavailable("cannot read the latest checkpoint", error)),
        }
    }
}

/// This node's publishes waiting for their acknowledgements. Each append's last message carries
/// a reply subject of its own under `prefix`; one task ([`handle_acks`]) takes every
/// acknowledgement in the order the server sends them (the order it stored the appends in) and
/// applies the append's records before it hands the acknowledgement to the append. So when it
/// takes an acknowledgement, this node's earlier appends are applied or waiting already, and the
/// records missing before it are other nodes': the follower fetches them at once.
struct Acks {
    prefix: String,
    next_token: std::sync::atomic::AtomicU64,
    waiting: Mutex<std::collections::HashMap<u64, AckWaiter>>,
}

/// An append waiting for its acknowledgement: the bodies it published and where the outcome goes.
struct AckWaiter {
    bodies: Vec<wire::Body>,
    outcome: oneshot::Sender<Result<Published, StoreError>>,
}

/// An append's claim on its acknowledgement: the reply subject, and the token that withdraws the
/// claim if no acknowledgement comes.
struct AckReply<'a> {
    acks: &'a Acks,
    token: u64,
    subject: String,
}

impl Acks {
    fn new(prefix: String) -> Acks {
        Acks {
            prefix,
            next_token: std::sync::atomic::AtomicU64::new(1),
            waiting: Mutex::default(),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, std::collections::HashMap<u64, AckWaiter>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers an append of `bodies` before it is published.
    fn expect(
        &self,
        bodies: Vec<wire::Body>,
    ) -> (
        AckReply<'_>,
        oneshot::Receiver<Result<Published, StoreError>>,
    ) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (outcome, receiver) = oneshot::channel();
        self.waiting().insert(token, AckWaiter { bodies, outcome });
        let reply = AckReply {
            acks: self,
            token,
            subject: format!("{}.{token}", self.prefix),
        };
        (reply, receiver)
    }
}

impl AckReply<'_> {
    /// Waits up to `timeout` for the acknowledgement.
    async fn wait(
        self,
        acknowledged: oneshot::Receiver<Result<Published, StoreError>>,
        timeout: Duration,
    ) -> Result<Published, StoreError> {
        match tokio::time::timeout(timeout, acknowledged).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(StoreError::Unavailable(
                "the store closed before the append was acknowledged".into(),
            )),
            Err(_) => Err(StoreError::Unavailable(format!(
                "the append was not acknowledged within {timeout:?} (it may be stored; a retry \
                 with the same event ids is safe)"
            ))),
        }
    }
}

impl Drop for AckReply<'_> {
    fn drop(&mut self) {
        self.acks.waiting().remove(&self.token);
    }
}

/// Takes this node's acknowledgements in the order they arrive (see [`Acks`]).
async fn handle_acks(
    mut replies: async_nats::Subscriber,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            message = replies.next() => message,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        let Some(message) = message else {
            return;
        };
        let Some(token) = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|token| token.parse::<u64>().ok())
        else {
            continue;
        };
        let Some(waiter) = shared.acks.waiting().remove(&token) else {
            // Its append stopped waiting.
            continue;
        };
        let outcome = acknowledgement(&message);
        if let Ok(Published::Stored {
            last_sequence,
            duplicate: false,
            count,
        }) = outcome
        {
            let len = waiter.bodies.len() as u64;
            if count.is_none_or(|count| count == len) && last_sequence >= len {
                // The acknowledgement gives the positions; the bodies give the rest: apply them
                // now, or once the records before them are fetched.
                let added =
                    shared
                        .applier()
                        .add_own(&shared, last_sequence + 1 - len, waiter.bodies);
                if let Err(StoreError::Corrupt { position, detail }) = added {
                    shared.fail(position, detail);
                }
            }
            shared.raise_known(last_sequence);
        }
        let _ = waiter.outcome.send(outcome);
    }
}

/// What an acknowledgement (or the error in its place) says.
fn acknowledgement(message: &async_nats::Message) -> Result<Published, StoreError> {
    if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
        return Err(StoreError::Unavailable(
            "no JetStream server took the append".into(),
        ));
    }
    let response: jetstream::response::Response<jetstream::publish::PublishAck> =
        serde_json::from_slice(&message.payload).map_err(|error| {
            unavailable(
                "the append's acknowledgement does not parse",
                format!("{error}: {:?}", String::from_utf8_lossy(&message.payload)),
            )
        })?;
    match response {
        jetstream::response::Response::Ok(ack) => Ok(Published::Stored {
            last_sequence: ack.sequence,
            duplicate: ack.duplicate,
            count: ack.batch_size,
        }),
        jetstream::response::Response::Err { error } => {
            let code = error.error_code().0;
            if code == WRONG_LAST_SEQUENCE || code == BATCH_HAS_DUPLICATE {
                Ok(Published::Conflict)
            } else if code == BATCHES_IN_FLIGHT {
                Ok(Published::Busy)
            } else {
                Err(unavailable("the append was refused", error))
            }
        }
    }
}

/// Follows the record stream for as long as the store is open, in one of two ways, and stops for
/// good on a record that contradicts the ledger:
///
/// - **pulling** ([`pull`]), while the node sees few records it did not append itself: it fetches
///   what it knows the stream holds and has not applied (the gaps before its own acknowledged
///   appends, positions it waits for, and what a poll of the stream's last sequence every
///   [`FOLLOW_POLL`] shows), so a node alone on the stream receives no record twice;
/// - **consuming** ([`consume`]), while other nodes write at least [`CONSUME_ABOVE`] records a
///   second: an ordered consumer pushes every record as soon as it is stored, so an append waits
///   for no round trip to learn the records before it. Below [`PULL_BELOW`] a second it pulls
///   again.
async fn follow(
    client: async_nats::Client,
    js: jetstream::Context,
    options: JetStreamOptions,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut consuming = false;
    loop {
        let result = tokio::select! {
            result = async {
                if consuming {
                    consume(&js, &options, &shared).await
                } else {
                    pull(&client, &js, &options, &shared).await
                }
            } => result,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        match result {
            // The way of following has its reason to change.
            Ok(()) => {
                consuming = !consuming;
                shared.consuming.store(consuming, Ordering::Release);
                tracing::debug!(consuming, "the follower changes how it follows the stream");
            }
            Err(StoreError::Corrupt { position, detail }) => {
                shared.fail(position, detail);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, consuming, "following the record stream failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
            }
        }
    }
}

/// How often a pulling node asks the stream for its last sequence, to learn of other nodes'
/// records (an append, a catch-up and a wait for a position tell it at once).
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Records fetched within one [`MODE_WINDOW`] from which a node consumes instead of pulling.
const CONSUME_ABOVE: usize = 200;

/// Records a consumer brought that the node had not applied, within one [`MODE_WINDOW`], below
/// which the node pulls again.
const PULL_BELOW: usize = 50;

/// The window in which the follower counts other nodes' records.
const MODE_WINDOW: Duration = Duration::from_secs(1);

/// Pulls until other nodes write enough to consume instead (`Ok`), or it fails.
async fn pull(
    client: &async_nats::Client,
    js: &jetstream::Context,
    options: &JetStreamOptions,
    shared: &Shared,
) -> Result<(), StoreError> {
    let mut known = shared.known.subscribe();
    let mut poll = tokio::time::interval(FOLLOW_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut window = Instant::now();
    let mut fetched = 0;
    loop {
        known.borrow_and_update();
        fetched += fill(client, options, shared).await?;
        if window.elapsed() >= MODE_WINDOW {
            window = Instant::now();
            fetched = 0;
        } else if fetched >= CONSUME_ABOVE {
            return Ok(());
        }
        let polled = tokio::select! {
            _ = known.changed() => false,
            _ = poll.tick() => true,
        };
        if polled {
            // Other nodes' records: the stream's last sequence (one request, not a delivery of
            // every record).
            let asked = Instant::now();
            match tokio::time::timeout(options.request_timeout, js.get_stream(&options.stream))
                .await
            {
                Ok(Ok(stream)) => {
                    let last = stream.cached_info().state.last_sequence;
                    shared.applier().note_reading(shared, last, asked);
                    shared.raise_known(last);
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, "cannot read the record stream's last sequence");
                }
                Err(_) => tracing::debug!("reading the record stream's last sequence timed out"),
            }
        }
    }
}

/// Consumes the record stream with an ordered consumer from the next record to apply, until other
/// nodes write too little to keep it (`Ok`), or it fails, or the watchdog finds it stuck.
async fn consume(
    js: &jetstream::Context,
    options: &JetStreamOptions,
    shared: &Shared,
) -> Result<(), StoreError> {
    let records = js
        .get_stream_no_info(&options.stream)
        .await
        .map_err(|error| unavailable("cannot reach the record stream", error))?;
    let from = shared.applier().next(shared);
    let consumer = records
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(|error| unavailable("cannot create a consumer of the record stream", error))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| unavailable("cannot consume the record stream", error))?;
    let mut watchdog = tokio::time::interval(WATCHDOG_INTERVAL);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stuck_at: Option<Position> = None;
    let mut window = Instant::now();
    let mut brought = 0;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err(StoreError::Unavailable("the record stream's consumer ended".into()));
                };
                let message =
                    message.map_err(|error| unavailable("consuming the record stream", error))?;
                let sequence = message
                    .info()
                    .map_err(|error| unavailable("a consumed message has no metadata", error))?
                    .stream_sequence;
                let mut applier = shared.applier();
                if sequence >= applier.next(shared) {
                    brought += 1;
                }
                applier.apply_message(
                    shared,
                    options.prefix(),
                    sequence,
                    &message.subject,
                    &message.payload,
                )?;
            }
            _ = watchdog.tick() => {
                if window.elapsed() >= MODE_WINDOW {
                    if brought < PULL_BELOW {
                        return Ok(());
                    }
                    window = Instant::now();
                    brought = 0;
                }
                // A consumer can go quiet without an error (its server restarted, its stream's
                // leader moved) for as long as its heartbeats take to be missed: if the stream
                // holds more than this node applied and nothing arrived for a whole interval,
                // start again from the next record to apply.
                let head = shared.read().log.head();
                let asked = Instant::now();
                let Ok(Ok(stream)) =
                    tokio::time::timeout(WATCHDOG_INTERVAL, js.get_stream(&options.stream)).await
                else {
                    continue;
                };
                let last_sequence = stream.cached_info().state.last_sequence;
                shared.applier().note_reading(shared, last_sequence, asked);
                if last_sequence <= head.0 {
                    stuck_at = None;
                } else if stuck_at == Some(head) {
                    return Err(StoreError::Unavailable(format!(
                        "the record stream's consumer delivered nothing for {WATCHDOG_INTERVAL:?} \
                         while the stream holds {last_sequence} records and this node applied \
                         {head}"
                    )));
                } else {
                    stuck_at = Some(head);
                }
            }
        }
    }
}

/// How often a consuming follower checks that its consumer still delivers.
const WATCHDOG_INTERVAL: Duration = Duration::from_secs(1);

/// The most records one fetch asks for, and the bytes it asks the server to stop at.
const FETCH_PAGE_RECORDS: u64 = 1024;
const FETCH_PAGE_BYTES: u64 = 4 << 20;

/// The most fetches in flight at once: one per gap between this node's own appends waiting.
const FETCH_GAPS_MAX: usize = 8;

/// Fetches and applies what this node knows the stream holds beyond what it applied, until there
/// is nothing left to fetch or the server has nothing more yet; returns how many records it
/// fetched.
async fn fill(
    client: &async_nats::Client,
    options: &JetStreamOptions,
    shared: &Shared,
) -> Result<usize, StoreError> {
    let mut fetched = 0;
    loop {
        let gaps = shared
            .applier()
            .gaps(shared, *shared.known.borrow(), FETCH_GAPS_MAX);
        if gaps.is_empty() {
            return Ok(fetched);
        }
        // One request per gap, all sent before any is read, so the round trips overlap; the
        // replies are applied in order.
        let mut pages = Vec::with_capacity(gaps.len());
        for &(from, to) in &gaps {
            pages.push(request_page(client, options, from, to).await?);
        }
        for (replies, &(from, _)) in pages.into_iter().zip(&gaps) {
            if shared.applier().next(shared) != from {
                // A page before it ended early (a page's limit, or a replica behind).
                break;
            }
            let arrived = read_page(replies, options, shared, from).await?;
            if arrived == 0 {
                // The server (or the replica that answered) does not have them yet: the next
                // poll or wait tries again.
                return Ok(fetched);
            }
            fetched += arrived;
        }
    }
}

/// Asks for the records from `from` (at most to `to`, and at most a page) with one batched direct
/// get; the replies are read by [`read_page`].
async fn request_page(
    client: &async_nats::Client,
    options: &JetStreamOptions,
    from: u64,
    to: u64,
) -> Result<async_nats::Subscriber, StoreError> {
    let inbox = client.new_inbox();
    let replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|error| unavailable("cannot fetch records", error))?;
    let request = serde_json::json!({
        "seq": from,
        "batch": (to - from + 1).min(FETCH_PAGE_RECORDS),
        "max_bytes": FETCH_PAGE_BYTES,
    });
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{}", options.stream),
            inbox,
            request.to_string().into(),
        )
        .await
        .map_err(|error| unavailable("cannot fetch records", error))?;
    Ok(replies)
}

/// Applies the replies of the page asked for from `from` as they arrive; returns how many
/// arrived.
async fn read_page(
    mut replies: async_nats::Subscriber,
    options: &JetStreamOptions,
    shared: &Shared,
    from: u64,
) -> Result<usize, StoreError> {
    let mut arrived = 0;
    loop {
        let message = match tokio::time::timeout(options.request_timeout, replies.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Err(StoreError::Unavailable("a fetch's replies ended".into())),
            Err(_) if arrived > 0 => return Ok(arrived),
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "fetching records from position {from} timed out"
                )));
            }
        };
        match message.status.map(|status| status.as_u16()) {
            None => {}
            // The end of the batch, or nothing at `from` yet.
            Some(204 | 404) => return Ok(arrived),
            Some(status) => {
                return Err(StoreError::Unavailable(format!(
                    "fetching records from position {from}: {status} {}",
                    message.description.unwrap_or_default()
                )));
            }
        }
        let header = |name| {
            message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(name))
                .map(|value| value.as_str())
        };
        let (Some(sequence), Some(subject)) = (
            header(async_nats::header::NATS_SEQUENCE).and_then(|value| value.parse::<u64>().ok()),
            header(async_nats::header::NATS_SUBJECT),
        ) else {
            return Err(StoreError::Unavailable(format!(
                "a fetched record after position {from} has no sequence or subject"
            )));
        };
        shared.applier().apply_message(
            shared,
            options.prefix(),
            sequence,
            subject,
            &message.payload,
        )?;
        arrived += 1;
    }
}

/// Applies records in order, from two sources: records fetched from the stream, and this node's
/// own acknowledged appends, which need no fetch (an acknowledgement gives their positions, and
/// every other field is in the bodies the node published). The records of one append become
/// visible together: fetched ones wait in `pending` until the last arrives (an atomic batch is
/// stored whole and contiguous, so it does).
#[derive(Default)]
struct Applier {
    pending: Vec<Arc<Record>>,
    /// This node's acknowledged appends, by first position, waiting for the records before them.
    ahead: std::collections::BTreeMap<u64, Vec<wire::Body>>,
    /// The oldest reading of the stream's last sequence not applied through yet, and when it was
    /// asked for.
    reading: Option<(u64, Instant)>,
    /// When the newest reading this node has applied through was asked for: the node's view
    /// holds every record stored before then.
    fresh_at: Option<Instant>,
}

impl Applier {
    /// Notes that the stream held `last` records when it was asked at `asked`.
    fn note_reading(&mut self, shared: &Shared, last: u64, asked: Instant) {
        if shared.read().log.head().0 >= last {
            self.fresh_at = self.fresh_at.max(Some(asked));
        } else if self.reading.is_none() {
            // The oldest waits: a newer one, replacing it, might never be reached under load.
            self.reading = Some((last, asked));
        }
    }

    /// The position of the next record to apply.
    fn next(&self, shared: &Shared) -> u64 {
        shared.read().log.head().0 + self.pending.len() as u64 + 1
    }

    /// The positions to fetch, given that the stream holds `known`: the gaps from the next to
    /// apply to `known` around the own appends waiting, in order, at most `max` of them.
    fn gaps(&self, shared: &Shared, known: u64, max: usize) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut from = self.next(shared);
        for (&first, bodies) in &self.ahead {
            if gaps.len() == max {
                return gaps;
            }
            if first > from {
                gaps.push((from, first - 1));
            }
            from = from.max(first + bodies.len() as u64);
        }
        if gaps.len() < max && known >= from {
            gaps.push((from, known));
        }
        gaps
    }

    /// Applies the fetched message at `sequence`: the next position, or one applied already.
    fn apply_message(
        &mut self,
        shared: &Shared,
        prefix: &str,
        sequence: u64,
        subject: &str,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let next = self.next(shared);
        if sequence < next {
            return Ok(());
        }
        if sequence != next {
            return Err(StoreError::Corrupt {
                position: Some(Position(next)),
                detail: format!("the record stream skips from {} to {sequence}", next - 1),
            });
        }
        let body = wire::parse(prefix, subject, payload, Position(sequence))?;
        self.apply_body(shared, Position(sequence), body)?;
        self.drain(shared)
    }

    /// Takes this node's acknowledged append stored at `first` onwards: applies it now if it is
    /// next, keeps it until the records before it are applied if not, and drops it if it was
    /// fetched already.
    fn add_own(
        &mut self,
        shared: &Shared,
        first: u64,
        bodies: Vec<wire::Body>,
    ) -> Result<(), StoreError> {
        if first >= self.next(shared) {
            self.ahead.insert(first, bodies);
        }
        self.drain(shared)
    }

    /// Applies the own appends that are next.
    fn drain(&mut self, shared: &Shared) -> Result<(), StoreError> {
        loop {
            let next = self.next(shared);
            let Some(entry) = self.ahead.first_entry() else {
                return Ok(());
            };
            if *entry.key() > next {
                return Ok(());
            }
            let (first, bodies) = entry.remove_entry();
            if first < next {
                // Fetched before its acknowledgement was handled.
                continue;
            }
            for (offset, body) in bodies.into_iter().enumerate() {
                self.apply_body(shared, Position(first + offset as u64), body)?;
            }
        }
    }

    /// Applies `body` at `position`, the next one.
    fn apply_body(
        &mut self,
        shared: &Shared,
        position: Position,
        body: wire::Body,
    ) -> Result<(), StoreError> {
        let decoded = {
            let state = shared.read();
            let previous_recorded_at = self
                .pending
                .last()
                .map_or(state.log.last_recorded_at(), |record| {
                    record.envelope.recorded_at
                });
            let pending = &self.pending;
            wire::place(body, position, previous_recorded_at, |stream| {
                let applied = state
                    .log
                    .stream_version(stream)
                    .map_or(0, |version| version.0);
                let waiting = pending
                    .iter()
                    .filter(|record| &record.envelope.stream == stream)
                    .count() as u64;
                StreamVersion(applied + waiting + 1)
            })?
        };
        if usize::from(decoded.batch_index) != self.pending.len()
            || self
                .pending
                .first()
                .is_some_and(|first| first.envelope.stream != decoded.record.envelope.stream)
        {
            return Err(StoreError::Corrupt {
                position: Some(position),
                detail: format!(
                    "record {} of an append of {} follows {} records of an unfinished append",
                    decoded.batch_index,
                    decoded.batch_len,
                    self.pending.len()
                ),
            });
        }
        self.pending.push(Arc::new(decoded.record));
        if usize::from(decoded.batch_len) == self.pending.len() {
            self.commit(shared);
        }
        Ok(())
    }

    /// Makes the pending records of a whole append visible, in one step.
    fn commit(&mut self, shared: &Shared) {
        let records = std::mem::take(&mut self.pending);
        let mut state = shared.write();
        for record in &records {
            if let Some(first) = state.log.push(Arc::clone(record)) {
                // Possible only if two nodes recorded one id on different streams beyond the
                // server's de-duplication window while one of them had not applied the other's
                // record.
                tracing::error!(
                    event_id = %record.envelope.event_id,
                    first = %first,
                    again = %record.envelope.position,
                    "an event id is recorded twice; the first position answers for it"
                );
            }
        }
        let head = state.log.head();
        drop(state);
        if let Some((last, asked)) = self.reading
            && head.0 >= last
        {
            self.fresh_at = self.fresh_at.max(Some(asked));
            self.reading = None;
        }
        for record in records {
            let _ = shared.live.send(record);
        }
        shared.head.send_replace(head);
        shared.wake(head);
    }
}

#[async_trait]
impl EventStore for JetStreamStore {
    async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        validate_append(&stream, &events)?;
        self.check_serving()?;
        let subject = wire::subject(self.options.prefix(), &stream);
        let bodies = wire::bodies(&stream, &events, cairn_store::now());
        let bytes: Vec<Bytes> = bodies
            .iter()
            .map(|body| Bytes::from(body.encode()))
            .collect();
        // Whether this node has caught up with the stream since the append began: a refusal
        // (wrong version, ids recorded in part) is final only from a view at least that fresh,
        // since another node may have appended what this node has not applied yet.
        let mut caught_up = false;
        // An append expecting a version publishes expecting the subject's last sequence: the
        // server checks the version. One expecting any version publishes without it (so
        // appenders on one stream never conflict), from a view younger than half the server's
        // duplicate window: an id recorded before the view was taken is in this node's index,
        // and one recorded since is within the server's window.
        let check_subject = expected != ExpectedVersion::Any;
        if !check_subject && !self.fresh() {
            self.catch_up().await?;
            caught_up = true;
        }
        for attempt in 0..APPEND_ATTEMPTS_MAX {
            let planned = {
                let state = self.shared.read();
                plan_append(&state.log, &stream, expected, &events).map(|plan| {
                    let last_subject_sequence = check_subject.then(|| {
                        state
                            .log
                            .last_of_stream(&stream)
                            .map_or(0, |position| position.0)
                    });
                    (plan, last_subject_sequence)
                })
            };
            let last_subject_sequence = match planned {
                Ok((AppendPlan::Duplicate(result), _)) => return Ok(result),
                Ok((AppendPlan::Write { .. }, last_subject_sequence)) => last_subject_sequence,
                Err(
                    StoreError::WrongExpectedVersion { .. } | StoreError::EventIdConflict { .. },
                ) if !caught_up => {
                    self.catch_up().await?;
                    caught_up = true;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match self
                .publish(&subject, &events, &bytes, &bodies, last_subject_sequence)
                .await?
            {
                Published::Stored {
                    last_sequence,
                    duplicate,
                    ..
                } => {
                    // Another node's records before these, or a duplicate's original, are
                    // fetched.
                    self.wait_applied(Position(last_sequence)).await?;
                    // The applied records answer: positions and versions as every node derives
                    // them, and the content check of a duplicate.
                    let state = self.shared.read();
                    if !duplicate {
                        // The server stored these events at these positions.
                        let first = last_sequence + 1 - events.len() as u64;
                        let records = state.log.read_all(Position(first), events.len());
                        if records.len() == events.len()
                            && records
                                .iter()
                                .zip(&events)
                                .all(|(record, event)| record.envelope.event_id == event.event_id)
                        {
                            return Ok(AppendResult {
                                first_position: Position(first),
                                last_position: Position(last_sequence),
                                last_version: records[records.len() - 1].envelope.stream_version,
                                deduplicated: false,
                            });
                        }
                    }
                    return match plan_append(&state.log, &stream, ExpectedVersion::Any, &events)? {
                        AppendPlan::Duplicate(result) => Ok(AppendResult {
                            deduplicated: duplicate,
                            ..result
                        }),
                        AppendPlan::Write { .. } => Err(StoreError::Corrupt {
                            position: Some(Position(last_sequence)),
                            detail: "an acknowledged append is not in the applied records".into(),
                        }),
                    };
                }
                Published::Conflict => {
                    if attempt >= CONFLICTS_BEFORE_BACKOFF {
                        // Many appenders on one stream: a pause of random length lets the
                        // others finish, so no appender loses every round.
                        let jitter = u64::from(cairn_store::random_bytes::<1>()[0]);
                        tokio::time::sleep(CONFLICT_BACKOFF_UNIT * (jitter % 8 + 1) as u32).await;
                    }
                    self.catch_up().await?;
                    caught_up = true;
                }
                Published::Busy => tokio::time::sleep(BATCH_BACKOFF).await,
            }
        }
        Err(StoreError::Unavailable(format!(
            "the append to {stream} conflicted with concurrent appends {APPEND_ATTEMPTS_MAX} \
             times; try again"
        )))
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> Result<Vec<Arc<Record>>, StoreError> {
        self.check_serving()?;
        Ok(self.shared.read().log.read_stream(stream, from, limit))
    }

    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<Arc<Record>>, StoreError> {
        self.check_serving()?;
        Ok(self.shared.read().log.read_all(from, limit))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<StreamVersion, StoreError> {
        self.check_serving()?;
        self.shared.read().log.stream_version(stream)
    }

    async fn head(&self) -> Result<Head, StoreError> {
        self.check_serving()?;
        let checkpoint = self.cached_checkpoint().await?;
        let state = self.shared.read();
        Ok(Head {
            position: state.log.head(),
            root: state.log.tree().root(),
            checkpoint: checkpoint
                .filter(|checkpoint| checkpoint.checkpoint.tree_size <= state.log.head().0),
        })
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.shared.head.subscribe()
    }

    fn live(&self) -> broadcast::Receiver<Arc<Record>> {
        self.shared.live.subscribe()
    }

    async fn root_at(&self, tree_size: u64) -> Result<Hash, StoreError> {
        proofs::root_at(self.shared.read().log.tree(), tree_size)
    }

    async fn inclusion_proof(
        &self,
        position: Position,
        tree_size: u64,
    ) -> Result<InclusionProof, StoreError> {
        proofs::inclusion_proof(self.shared.read().log.tree(), position, tree_size)
    }

    async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, StoreError> {
        proofs::consistency_proof(self.shared.read().log.tree(), old_size, new_size)
    }

    async fn save_checkpoint(&self, checkpoint: SignedCheckpoint) -> Result<(), StoreError> {
        self.check_serving()?;
        let mut cache = self.checkpoints.lock().await;
        for _ in 0..APPEND_ATTEMPTS_MAX {
            let latest = self.latest_checkpoint_entry().await?;
            {
                let state = self.shared.read();
                proofs::check_checkpoint(
                    state.log.tree(),
                    latest.as_ref().map(|(_, checkpoint)| checkpoint),
                    &checkpoint,
                )?;
            }
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                latest
                    .as_ref()
                    .map_or(0, |(sequence, _)| *sequence)
                    .to_string()
                    .as_str(),
            );
            let ack = self
                .js
                .publish_with_headers(
                    self.options.checkpoint_subject(),
                    headers,
                    Bytes::from(checkpoint.encode()),
                )
                .await
                .map_err(|error| unavailable("cannot publish the checkpoint", error))?
                .await;
            match ack {
                Ok(ack) => {
                    cache.latest = Some((ack.sequence, checkpoint));
                    cache.read_at = Some(Instant::now());
                    return Ok(());
                }
                // Another sealer saved one in between: check against it again.
                Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => continue,
                Err(error) => {
                    return Err(unavailable("the checkpoint was not acknowledged", error));
                }
            }
        }
        Err(StoreError::Unavailable(
            "checkpoints kept being saved concurrently; try again".into(),
        ))
    }

    async fn sync(&self) -> Result<bool, StoreError> {
        self.check_serving()?;
        let before = self.shared.read().log.head();
        self.catch_up().await?;
        Ok(self.shared.read().log.head() > before)
    }

    async fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.check_serving()?;
        let checkpoint = self.cached_checkpoint().await?;
        let head = self.shared.read().log.head();
        Ok(checkpoint.filter(|checkpoint| checkpoint.checkpoint.tree_size <= head.0))
    }
}

#[async_trait]
impl cairn_store::KeyStore for JetStreamStore {
    async fn create_key(
        &self,
        key_id: cairn_ledger::KeyId,
        key: cairn_ledger::DataKey,
    ) -> Result<(), StoreError> {
        self.keys.create(key_id, key).await
    }

    async fn key(&self, key_id: cairn_ledger::KeyId) -> Result<cairn_store::KeyState, StoreError> {
        self.keys.get(key_id).await
    }

    async fn destroy_key(&self, key_id: cairn_ledger::KeyId) -> Result<bool, StoreError> {
        self.keys.destroy(key_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::testsuite::{event, stream};

    /// The bodies of an append of `ids` to `name`, recorded at `at`.
    fn append(name: &str, ids: &[&str], at: i64) -> Vec<wire::Body> {
        let events: Vec<NewEvent> = ids.iter().map(|id| event(id)).collect();
        wire::bodies(&stream(name), &events, cairn_ledger::Timestamp(at))
    }

    fn fetched(
        applier: &mut Applier,
        shared: &Shared,
        sequence: u64,
        body: &wire::Body,
        name: &str,
    ) {
        applier
            .apply_message(
                shared,
                "CAIRN",
                sequence,
                &wire::subject("CAIRN", &stream(name)),
                &body.encode(),
            )
            .expect("applies");
    }

    fn ids(shared: &Shared) -> Vec<String> {
        shared
            .read()
            .log
            .read_all(Position(1), 100)
            .iter()
            .map(|record| record.envelope.event_id.to_string())
            .collect()
    }

    #[test]
    fn own_appends_wait_for_the_records_before_them_and_apply_in_order() {
        let shared = Shared::new("_INBOX.test".into());
        let mut applier = shared.applier();
        let first = append("s-1", &["a"], 10);
        let second = append("s-2", &["b", "c"], 20);
        let third = append("s-1", &["d"], 30);
        // Acknowledged out of order: 4 (third), then 2-3 (second); 1 is another node's.
        applier.add_own(&shared, 4, third.clone()).unwrap();
        applier.add_own(&shared, 2, second.clone()).unwrap();
        assert_eq!(shared.read().log.head(), Position::ZERO);
        assert_eq!(applier.gaps(&shared, 4, 8), [(1, 1)]);
        assert_eq!(applier.gaps(&shared, 9, 8), [(1, 1), (5, 9)]);
        assert_eq!(applier.gaps(&shared, 9, 1), [(1, 1)]);
        fetched(&mut applier, &shared, 1, &first[0], "s-1");
        assert_eq!(shared.read().log.head(), Position(4));
        assert!(applier.gaps(&shared, 4, 8).is_empty());
        assert!(applier.ahead.is_empty());
        let expected: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| event(id).event_id.to_string())
            .collect();
        assert_eq!(ids(&shared), expected);
        let state = shared.read();
        let d = &state.log.read_all(Position(4), 1)[0];
        assert_eq!(d.envelope.stream_version, StreamVersion(2));
        assert_eq!(d.envelope.recorded_at, cairn_ledger::Timestamp(30));
    }

    #[test]
    fn an_own_append_fetched_first_is_applied_once() {
        let shared = Shared::new("_INBOX.test".into());
        let mut applier = shared.applier();
        let own = append("s-1", &["a", "b"], 10);
        // A fetch brought the first record of the append, then its acknowledgement is handled,
        // then the fetch brings the rest.
        fetched(&mut applier, &shared, 1, &own[0], "s-1");
        applier.add_own(&shared, 1, own.clone()).unwrap();
        assert_eq!(
            shared.read().log.head(),
            Position::ZERO,
            "an append shows whole"
        );
        fetched(&mut applier, &shared, 2, &own[1], "s-1");
        assert_eq!(shared.read().log.head(), Position(2));
        assert!(applier.ahead.is_empty());
        // A late acknowledgement of what was fetched whole changes nothing.
        applier.add_own(&shared, 1, own).unwrap();
        assert_eq!(shared.read().log.head(), Position(2));
        assert!(applier.ahead.is_empty());
    }

    #[test]
    fn a_view_is_fresh_from_a_reading_once_applied_through_it() {
        let shared = Shared::new("_INBOX.test".into());
        let mut applier = shared.applier();
        let (first, second) = (Instant::now(), Instant::now() + Duration::from_millis(1));
        // The stream held 2 records when asked: not fresh until both are applied.
        applier.note_reading(&shared, 2, first);
        applier.note_reading(&shared, 3, second);
        assert_eq!(applier.fresh_at, None);
        applier
            .add_own(&shared, 1, append("s-1", &["a"], 10))
            .unwrap();
        assert_eq!(applier.fresh_at, None);
        applier
            .add_own(&shared, 2, append("s-1", &["b"], 10))
            .unwrap();
        assert_eq!(applier.fresh_at, Some(first), "the oldest reading waited");
        // A reading the node has applied through makes it fresh at once.
        applier.note_reading(&shared, 2, second);
        assert_eq!(applier.fresh_at, Some(second));
    }

    #[test]
    fn recorded_time_never_goes_back_between_nodes() {
        let shared = Shared::new("_INBOX.test".into());
        let mut applier = shared.applier();
        // A node with a clock ahead, then one behind.
        applier
            .add_own(&shared, 1, append("s-1", &["a"], 500))
            .unwrap();
        applier
            .add_own(&shared, 2, append("s-2", &["b"], 100))
            .unwrap();
        let times: Vec<i64> = shared
            .read()
            .log
            .read_all(Position(1), 10)
            .iter()
            .map(|record| record.envelope.recorded_at.0)
            .collect();
        assert_eq!(times, [500, 500]);
    }

    #[test]
    fn a_fetched_record_past_a_gap_or_out_of_its_append_is_corrupt() {
        let shared = Shared::new("_INBOX.test".into());
        let mut applier = shared.applier();
        let body = &append("s-1", &["a"], 10)[0];
        let skipped = applier.apply_message(
            &shared,
            "CAIRN",
            2,
            &wire::subject("CAIRN", &stream("s-1")),
            &body.encode(),
        );
        assert!(matches!(skipped, Err(StoreError::Corrupt { .. })));
        let torn = &append("s-1", &["x", "y"], 10)[1];
        let out_of_place = applier.apply_message(
            &shared,
            "CAIRN",
            1,
            &wire::subject("CAIRN", &stream("s-1")),
            &torn.encode(),
        );
        assert!(matches!(out_of_place, Err(StoreError::Corrupt { .. })));
        assert_eq!(shared.read().log.head(), Position::ZERO);
    }
}
