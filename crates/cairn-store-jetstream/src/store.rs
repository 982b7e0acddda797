//! [`JetStreamStore`]: the [`EventStore`] over one JetStream stream.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use async_trait::async_trait;
use bytes::Bytes;
use cairn_ledger::{
    ConsistencyProof, Hash, InclusionProof, Position, Record, SignedCheckpoint, StreamId,
    StreamVersion, Timestamp,
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

/// How long a wait for this node to apply records (an acknowledged append's, a catch-up's, the
/// stream's at start) may see no progress before it fails.
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

/// How long an append waits before it tries again when the server has too many batches open.
const BATCH_BACKOFF: Duration = Duration::from_millis(5);

/// What publishing an append came to.
enum Published {
    /// Stored (or stored before: `duplicate`), the last record at this sequence.
    Stored { last_sequence: u64, duplicate: bool },
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
    waiters: std::sync::Mutex<std::collections::BTreeMap<u64, Vec<oneshot::Sender<()>>>>,
}

impl Shared {
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
    follower: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
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
    problems
}

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
        let (live, _) = broadcast::channel(limits::LIVE_BUFFER_RECORDS);
        let (head, _) = watch::channel(Position::ZERO);
        let shared = Arc::new(Shared {
            state: RwLock::new(State::default()),
            live,
            head,
            waiters: std::sync::Mutex::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let follower = tokio::spawn(follow(
            js.clone(),
            options.clone(),
            Arc::clone(&shared),
            stopped,
        ));
        let store = Arc::new(JetStreamStore {
            options,
            client,
            js,
            shared,
            keys,
            checkpoints: tokio::sync::Mutex::new(CheckpointCache::default()),
            stop,
            follower: std::sync::Mutex::new(Some(follower)),
        });
        let last = records
            .info()
            .await
            .map_err(|error| unavailable("cannot read the record stream", error))?
            .state
            .last_sequence;
        store.wait_applied(Position(last)).await?;
        store.cached_checkpoint().await?;
        Ok(store)
    }

    /// Stops following the stream and closes the connection. Appends and reads after it fail.
    pub async fn close(&self) {
        self.stop.send_replace(true);
        self.shared.drop_waiters();
        let follower = self
            .follower
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(follower) = follower {
            let _ = follower.await;
        }
        let _ = self.client.drain().await;
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
            if let Some(detail) = &self.shared.read().failed {
                return Err(StoreError::Corrupt {
                    position: None,
                    detail: detail.clone(),
                });
            }
            if *self.stop.borrow() {
                return Err(StoreError::Unavailable("the store is closed".into()));
            }
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
            if *self.shared.head.borrow() >= position
                || self.shared.read().failed.is_some()
                || *self.stop.borrow()
            {
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

    /// Waits until this node has applied everything the stream held when it was asked.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let last = self
            .js
            .get_stream(&self.options.stream)
            .await
            .map_err(|error| unavailable("cannot read the record stream", error))?
            .cached_info()
            .state
            .last_sequence;
        self.wait_applied(Position(last)).await
    }

    /// Publishes the events of one append.
    async fn publish(
        &self,
        subject: &str,
        events: &[NewEvent],
        bodies: &[Bytes],
        last_subject_sequence: u64,
    ) -> Result<Published, StoreError> {
        let message_headers = |index: usize| {
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                hex::encode(events[index].event_id.0).as_str(),
            );
            if index == 0 {
                headers.insert(
                    async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    last_subject_sequence.to_string().as_str(),
                );
            }
            headers
        };
        if events.len() == 1 {
            let ack = self
                .js
                .publish_with_headers(subject.to_owned(), message_headers(0), bodies[0].clone())
                .await
                .map_err(|error| unavailable("cannot publish", error))?
                .await;
            return match ack {
                Ok(ack) => Ok(Published::Stored {
                    last_sequence: ack.sequence,
                    duplicate: ack.duplicate,
                }),
                Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                    Ok(Published::Conflict)
                }
                Err(error) => Err(unavailable("the append was not acknowledged", error)),
            };
        }
        // An atomic batch: every message but the last is sent without a reply; the last commits
        // the batch and is answered with the acknowledgement or the batch's error.
        let batch_id = hex::encode(cairn_store::random_bytes::<16>());
        let last = events.len() - 1;
        for (index, body) in bodies.iter().enumerate().take(last) {
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
        let mut headers = message_headers(last);
        headers.insert(async_nats::header::NATS_BATCH_ID, batch_id.as_str());
        headers.insert(
            async_nats::header::NATS_BATCH_SEQUENCE,
            (last + 1).to_string().as_str(),
        );
        headers.insert(
            async_nats::header::NATS_BATCH_COMMIT,
            async_nats::header::NATS_BATCH_COMMIT_FINAL,
        );
        let reply = self
            .client
            .request_with_headers(subject.to_owned(), headers, bodies[last].clone())
            .await
            .map_err(|error| unavailable("the append was not acknowledged", error))?;
        let response: jetstream::response::Response<jetstream::publish::PublishAck> =
            serde_json::from_slice(&reply.payload).map_err(|error| {
                unavailable(
                    "the append's acknowledgement does not parse",
                    format!("{error}: {:?}", String::from_utf8_lossy(&reply.payload)),
                )
            })?;
        match response {
            jetstream::response::Response::Ok(ack) => Ok(Published::Stored {
                last_sequence: ack.sequence,
                duplicate: ack.duplicate,
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

/// Follows the record stream from the first record not applied, for as long as the store is
/// open; reconnects after a failure. Stops for good on a record that contradicts the ledger.
async fn follow(
    js: jetstream::Context,
    options: JetStreamOptions,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let from = shared.read().log.head().next();
        let result = tokio::select! {
            result = consume(&js, &options, &shared, from) => result,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        match result {
            Err(StoreError::Corrupt { position, detail }) => {
                let detail = match position {
                    Some(position) => format!("at position {position}: {detail}"),
                    None => detail,
                };
                tracing::error!(%detail, "the record stream contradicts the ledger; this node stops serving");
                shared.write().failed = Some(detail);
                // Wake waiters so they see the failure.
                shared.head.send_modify(|_| {});
                shared.drop_waiters();
                return;
            }
            Err(error) => {
                tracing::warn!(%error, from = %from, "following the record stream failed; retrying");
            }
            Ok(()) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// Consumes the record stream from `from` with an ordered consumer until it fails, or until the
/// watchdog finds it stuck.
async fn consume(
    js: &jetstream::Context,
    options: &JetStreamOptions,
    shared: &Shared,
    from: Position,
) -> Result<(), StoreError> {
    let records = js
        .get_stream_no_info(&options.stream)
        .await
        .map_err(|error| unavailable("cannot reach the record stream", error))?;
    let consumer = records
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.0,
            },
            ..Default::default()
        })
        .await
        .map_err(|error| unavailable("cannot create a consumer of the record stream", error))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|error| unavailable("cannot consume the record stream", error))?;
    let mut applier = Applier {
        options,
        shared,
        pending: Vec::new(),
    };
    let mut watchdog = tokio::time::interval(WATCHDOG_INTERVAL);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stuck_at: Option<Position> = None;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err(StoreError::Unavailable("the record stream's consumer ended".into()));
                };
                let message =
                    message.map_err(|error| unavailable("consuming the record stream", error))?;
                let info = message
                    .info()
                    .map_err(|error| unavailable("a consumed message has no metadata", error))?;
                let sequence = info.stream_sequence;
                let published = Timestamp((info.published.unix_timestamp_nanos() / 1_000) as i64);
                applier.apply(sequence, published, &message.subject, &message.payload)?;
            }
            _ = watchdog.tick() => {
                // A consumer can go quiet without an error (its server restarted, its stream's
                // leader moved) for as long as its heartbeats take to be missed: if the stream
                // holds more than this node applied and nothing arrived for a whole interval,
                // start again from the last applied record.
                let head = shared.read().log.head();
                let Ok(Ok(stream)) =
                    tokio::time::timeout(WATCHDOG_INTERVAL, js.get_stream(&options.stream)).await
                else {
                    continue;
                };
                let last_sequence = stream.cached_info().state.last_sequence;
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

/// How often the follower checks that its consumer still delivers.
const WATCHDOG_INTERVAL: Duration = Duration::from_secs(1);

/// Applies consumed messages in order. The records of one append become visible together: the
/// first ones wait in `pending` until the last arrives (an atomic batch is stored whole, so it
/// does).
struct Applier<'a> {
    options: &'a JetStreamOptions,
    shared: &'a Shared,
    pending: Vec<Arc<Record>>,
}

impl Applier<'_> {
    /// Applies the message at `sequence`: the next position, or one applied already (a consumer
    /// recreated after a failure may deliver it again).
    fn apply(
        &mut self,
        sequence: u64,
        published: Timestamp,
        subject: &str,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let (head, last_recorded_at) = {
            let state = self.shared.read();
            (state.log.head(), state.log.last_recorded_at())
        };
        let known = head.0 + self.pending.len() as u64;
        if sequence <= known {
            return Ok(());
        }
        let position = Position(known + 1);
        if sequence != position.0 {
            return Err(StoreError::Corrupt {
                position: Some(position),
                detail: format!("the record stream skips from {known} to {sequence}"),
            });
        }
        let recorded_at = published.max(
            self.pending
                .last()
                .map_or(last_recorded_at, |record| record.envelope.recorded_at),
        );
        let decoded = {
            let state = self.shared.read();
            let pending = &self.pending;
            wire::decode(
                self.options.prefix(),
                subject,
                payload,
                position,
                recorded_at,
                |stream| {
                    let applied = state
                        .log
                        .stream_version(stream)
                        .map_or(0, |version| version.0);
                    let waiting = pending
                        .iter()
                        .filter(|record| &record.envelope.stream == stream)
                        .count() as u64;
                    StreamVersion(applied + waiting + 1)
                },
            )?
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
            self.commit();
        }
        Ok(())
    }

    /// Makes the pending records of a whole append visible, in one step.
    fn commit(&mut self) {
        let records = std::mem::take(&mut self.pending);
        let mut state = self.shared.write();
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
        for record in records {
            let _ = self.shared.live.send(record);
        }
        self.shared.head.send_replace(head);
        self.shared.wake(head);
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
        let bodies: Vec<Bytes> = wire::encode_append(&stream, &events)
            .into_iter()
            .map(Bytes::from)
            .collect();
        // Whether this node has caught up with the stream since the append began: a refusal
        // (wrong version, ids recorded in part) is final only from a view at least that fresh,
        // since another node may have appended what this node has not applied yet.
        let mut caught_up = false;
        for _ in 0..APPEND_ATTEMPTS_MAX {
            let planned = {
                let state = self.shared.read();
                plan_append(&state.log, &stream, expected, &events).map(|plan| {
                    let last_subject_sequence = state
                        .log
                        .last_of_stream(&stream)
                        .map_or(0, |position| position.0);
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
                .publish(&subject, &events, &bodies, last_subject_sequence)
                .await?
            {
                Published::Stored {
                    last_sequence,
                    duplicate,
                } => {
                    self.wait_applied(Position(last_sequence)).await?;
                    // The applied records answer: positions and versions as every node derives
                    // them, and the content check of a duplicate.
                    let state = self.shared.read();
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
