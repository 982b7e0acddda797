//! A cairn cluster on NATS JetStream (`cairn serve --store nats://...`): several nodes share one
//! ledger stream, any node accepts writes, a read that asks for "at least position N" on any node
//! sees a write acknowledged as N by another, one node at a time (the sealer lease holder) signs
//! checkpoints, and neither a cairn node nor a nats-server killed with SIGKILL under load loses or
//! duplicates anything that was acknowledged.
//!
//! Every test starts its own nats-server(s) (`cairn_store_jetstream::testing`, binary from
//! `$CAIRN_NATS_SERVER`) on free loopback ports and its own cairn nodes on temporary data
//! directories. The load is a few appender tasks (raw `LedgerService.Append`, each event with its
//! own deterministic id, some batches of three, some with an exact expected version) and one
//! feedback submitter (`FeedbackService.SubmitFeedback` with an idempotency key), spread over the
//! nodes. A call whose outcome is unknown (its node or its nats-server was killed, or it timed
//! out) is re-sent unchanged, to the next node that is up, until it is acknowledged; every ack of
//! an event id must name the same position. Now and then an acknowledged append is re-sent on
//! purpose to another node, which must answer with the original positions.
//!
//! A node that refuses an unchanged append because it decided on a stale view of the ledger (a
//! stream version behind the one another node acknowledged, part of an atomic batch) has recorded
//! nothing: the append is re-sent, and the test fails at the end, after the checks below.
//!
//! At the end every node must come to one head with byte-identical records, the same root (log
//! info and recomputed), every acknowledged event once at its acknowledged position and nothing
//! unacknowledged, the same feedback read model as of the head, and every checkpoint seen must be
//! signed by the shared key and consistent with the final tree.
//!
//! No check of what was stored depends on timing: the tests wait for conditions (so many appends
//! acknowledged, every node at one head, a checkpoint covering a position) with generous
//! deadlines that only turn a hang into a failure. Two claims are timed, with wide margins: the
//! sealer takeover ([`FAILOVER_DEADLINE`]) and the time a phase of the load with one fault in it
//! takes ([`PHASE_BOUND`]; checked after everything else). `CAIRN_E2E_LOGS=1` traces every failed
//! call and fault with the wall clock and prints the nodes' logs.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use cairn_e2e::{
    CLIENT_MESSAGE_BYTES_MAX, Listening, Server, auth_channel, event, expected, head_position,
    payload_bytes, read_all, stream_ref, tree_of,
};
use cairn_grpc::auth::AuthChannel;
use cairn_grpc::proto;
use cairn_grpc::proto::expected_version::Condition;
use cairn_grpc::proto::feedback_service_client::FeedbackServiceClient;
use cairn_grpc::proto::ledger_service_client::LedgerServiceClient;
use cairn_ledger::{MerkleTree, SignedCheckpoint};
use cairn_store_jetstream::testing::{NatsCluster, NatsServer, ServerOptions, free_port};
use tokio::task::JoinHandle;
use tonic::Code;

/// The tenant of everything the tests write.
const TENANT: &str = "cluster";
/// The aggregate type of the appenders' streams.
const AGGREGATE: &str = "clustertest";
/// The tenant of the server's own records (its policy activations).
const SYSTEM_TENANT: &str = "cairn-system";
/// The JetStream stream cairn uses by default.
const STREAM: &str = "CAIRN";
/// Clear payload bytes per raw event.
const PAYLOAD_BYTES: usize = 200;
/// How often the sealer signs while the head moves: often, so checkpoints are many.
const CHECKPOINT_INTERVAL_MS: &str = "200";
/// Longest one call may take before its outcome is taken as unknown and it is re-sent.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest one append (or submission) may take to be acknowledged, re-sends included.
const RETRY_DEADLINE: Duration = Duration::from_secs(150);
/// Longest a test waits for a condition (so many acks, one head across the nodes).
const WAIT_DEADLINE: Duration = Duration::from_secs(150);
/// Longest a phase of the load (100 appends, one fault in it) should take: a lost node or
/// nats-server is replaced within seconds (lease TTL 3 s; a JetStream RAFT election takes a few
/// seconds; a node's consumer watchdog restarts a quiet consumer after a second), and a phase
/// takes about 5 s here. The bound is a liveness check with a wide margin for a loaded machine
/// (a consumer that stayed quiet for up to 75 s failed it). A slower phase does not stop the
/// test, which goes on to check that nothing was lost; it fails at the end.
const PHASE_BOUND: Duration = Duration::from_secs(60);
/// Longest a survivor may take to sign a checkpoint covering its head after the other node died:
/// lease TTL (3 s) plus a renewal (1 s) plus a checkpoint interval, with a wide margin.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(15);
/// Pause between two polls of a condition: pacing only.
const POLL: Duration = Duration::from_millis(50);

// ------------------------------------------------------------------------------------------------
// Nodes

/// Whether `CAIRN_E2E_LOGS` asks for a trace: every failed call and fault as it happens (wall
/// clock, to line up with the nodes' logs), and the nodes' logs at the end.
fn tracing() -> bool {
    std::env::var_os("CAIRN_E2E_LOGS").is_some()
}

fn trace(what: &str) {
    if tracing() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!("[{}.{:03}] {what}", now.as_secs(), now.subsec_millis());
    }
}

/// Runs blocking process management (start, kill, restart) without stalling the load's tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Starts a cairn node on a new data directory, on the ledger `store` (one or more NATS URLs).
/// A node after the first shares the first node's token file, so one admin token works on all.
fn start_node(
    store: &str,
    node_id: &str,
    first: Option<&Server>,
    extra: &[&str],
) -> Result<Server> {
    let tokens: Option<PathBuf> = first.map(|first| first.data_dir().join("tokens.toml"));
    let mut args: Vec<&str> = vec![
        "--store",
        store,
        "--node-id",
        node_id,
        "--checkpoint-interval-ms",
        CHECKPOINT_INTERVAL_MS,
    ];
    if let Some(tokens) = &tokens {
        args.push("--tokens");
        args.push(tokens.to_str().context("token file path")?);
    }
    args.extend_from_slice(extra);
    let server = blocking(|| Server::start_temp(&args))
        .with_context(|| format!("starting cairn node {node_id} on {store}"))?;
    if let Some(first) = first {
        check_identity(&server, first.listening(), node_id)?;
    }
    Ok(server)
}

/// A node's startup line names the ledger's shared identity.
fn check_identity(server: &Server, identity: &Listening, node_id: &str) -> Result<()> {
    let listening = server.listening();
    ensure!(
        listening.public_key == identity.public_key && listening.log_id == identity.log_id,
        "node {node_id} printed public-key {} log-id {}, the first node {} and {}",
        listening.public_key.to_hex(),
        listening.log_id.to_hex(),
        identity.public_key.to_hex(),
        identity.log_id.to_hex()
    );
    Ok(())
}

/// Kills node `index` with SIGKILL while the load is sending to it (the calls in flight are cut),
/// then takes it out of the load's rotation.
fn kill_node(nodes: &Nodes, servers: &mut [Server], index: usize) -> Result<()> {
    trace(&format!("killing node {index}"));
    blocking(|| servers[index].kill()).with_context(|| format!("killing node {index}"))?;
    nodes.set(index, None);
    Ok(())
}

/// Restarts node `index` on its data directory with its flags, and puts it back in rotation.
fn restart_node(
    nodes: &Nodes,
    servers: &mut [Server],
    index: usize,
    identity: &Listening,
) -> Result<()> {
    blocking(|| servers[index].restart()).with_context(|| format!("restarting node {index}"))?;
    check_identity(&servers[index], identity, &format!("{index} (restarted)"))?;
    nodes.set(index, Some(servers[index].url()));
    Ok(())
}

/// The cairn nodes as the load sees them: each one's URL while it is up, and what failed.
struct Nodes {
    token: String,
    urls: Mutex<Vec<Option<String>>>,
    /// Failed calls by kind (`Append: Unavailable`), and a few of their messages.
    failures: Mutex<(BTreeMap<String, u64>, Vec<String>)>,
    /// Appends a node refused from a stale view (see [`stale_view`]): how many, and a few.
    stale: Mutex<(u64, Vec<String>)>,
    /// Load phases that took longer than [`PHASE_BOUND`].
    slow: Mutex<Vec<String>>,
}

impl Nodes {
    fn new(token: String, servers: &[Server]) -> Arc<Nodes> {
        Arc::new(Nodes {
            token,
            urls: Mutex::new(servers.iter().map(|server| Some(server.url())).collect()),
            failures: Mutex::default(),
            stale: Mutex::default(),
            slow: Mutex::default(),
        })
    }

    fn set(&self, index: usize, url: Option<String>) {
        self.urls.lock().expect("urls")[index] = url;
    }

    fn live(&self) -> Vec<String> {
        self.urls
            .lock()
            .expect("urls")
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    fn url(&self, index: usize) -> Result<String> {
        self.urls.lock().expect("urls")[index]
            .clone()
            .with_context(|| format!("node {index} is down"))
    }

    fn note(&self, kind: String, message: String) {
        trace(&message);
        let mut failures = self.failures.lock().expect("failures");
        *failures.0.entry(kind).or_default() += 1;
        if failures.1.len() < 8 {
            failures.1.push(message);
        }
    }

    fn stale(&self, message: String) {
        trace(&message);
        let mut stale = self.stale.lock().expect("stale");
        stale.0 += 1;
        if stale.1.len() < 5 {
            stale.1.push(message);
        }
    }

    /// Fails if any node refused an append from a stale view, or a phase of the load was slower
    /// than [`PHASE_BOUND`]. Checked last, so a run first reports whether anything acknowledged
    /// was lost.
    fn check_problems(&self) -> Result<()> {
        let mut problems = Vec::new();
        let stale = self.stale.lock().expect("stale");
        if stale.0 > 0 {
            problems.push(format!(
                "{} unchanged appends were refused by a node deciding on a stale view of the \
                 ledger (a stream version behind the one another node had acknowledged, or part \
                 of an atomic batch); each was re-sent until accepted and nothing acknowledged \
                 was lost, e.g.:\n{}",
                stale.0,
                stale.1.join("\n")
            ));
        }
        problems.extend(self.slow.lock().expect("slow").iter().cloned());
        ensure!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    }

    fn failure_summary(&self) -> String {
        let failures = self.failures.lock().expect("failures");
        if failures.0.is_empty() {
            return "no failed calls".into();
        }
        format!(
            "failed calls {:?}; e.g. {:?}",
            failures.0,
            failures.1.iter().take(3).collect::<Vec<_>>()
        )
    }
}

fn ledger_client(channel: AuthChannel) -> LedgerServiceClient<AuthChannel> {
    LedgerServiceClient::new(channel)
        .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(CLIENT_MESSAGE_BYTES_MAX)
}

fn feedback_client(channel: AuthChannel) -> FeedbackServiceClient<AuthChannel> {
    FeedbackServiceClient::new(channel).max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX)
}

async fn ledger(url: &str, token: &str) -> Result<LedgerServiceClient<AuthChannel>> {
    Ok(ledger_client(auth_channel(url, token).await?))
}

async fn feedback(url: &str, token: &str) -> Result<FeedbackServiceClient<AuthChannel>> {
    Ok(feedback_client(auth_channel(url, token).await?))
}

/// Whether a failed call may have been cut by a kill (its outcome is unknown, it is re-sent), as
/// opposed to a refusal, which is a bug whenever it happens here.
fn outcome_unknown(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::Internal
            | Code::DeadlineExceeded
            | Code::Aborted
    )
}

/// Whether `status` refuses an unchanged append because the node decided on a stale view of the
/// ledger, and how:
/// - `stale version`: an append expecting stream version `exact` refused with
///   FAILED_PRECONDITION and `cairn-current-version` below it. The appender is its stream's only
///   writer and `exact` is the version an earlier append was acknowledged at (by some node), so
///   the stream is at `exact`. (A current version above it would be a real conflict, an event
///   recorded that was never acknowledged: that fails at once.)
/// - `partial batch`: ALREADY_EXISTS because only some events of the append are recorded. An
///   append of several events is an atomic batch, all stored or none: the node saw part of one.
///
/// Nothing was recorded by such a refusal, so the append is re-sent; the run still fails at the
/// end (after checking that nothing acknowledged was lost) if any happened.
fn stale_view(status: &tonic::Status, exact: Option<u64>) -> Option<&'static str> {
    let current = status
        .metadata()
        .get("cairn-current-version")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match status.code() {
        Code::FailedPrecondition if matches!((current, exact), (Some(current), Some(exact)) if current < exact) => {
            Some("stale version")
        }
        Code::AlreadyExists
            if status
                .message()
                .contains("events of this append are recorded already") =>
        {
            Some("partial batch")
        }
        _ => None,
    }
}

/// What kind of call `what` (`appender 3 append 17`, `SubmitFeedback fb-2`) names, to count
/// failures by kind.
fn call_kind(what: &str) -> &str {
    match what.split(' ').next() {
        Some("appender") => "Append",
        Some(first) => first,
        None => what,
    }
}

/// Sends a call to the nodes that are up, starting with the `start`th and going round, until one
/// acknowledges it. Returns the answer and how many sends failed with an unknown outcome (a send
/// that could not even connect is not counted: nothing was sent).
async fn call<T, F, Fut>(
    nodes: &Nodes,
    channels: &mut HashMap<String, AuthChannel>,
    what: &str,
    start: usize,
    exact: Option<u64>,
    mut send: F,
) -> Result<(T, u32)>
where
    F: FnMut(AuthChannel) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + RETRY_DEADLINE;
    let mut failed = 0u32;
    let mut attempt = start;
    let mut last_error = String::from("no node was up");
    loop {
        ensure!(
            Instant::now() < deadline,
            "{what}: not acknowledged within {RETRY_DEADLINE:?} ({failed} failed sends; last: \
             {last_error})"
        );
        let live = nodes.live();
        if live.is_empty() {
            tokio::time::sleep(POLL).await;
            continue;
        }
        let url = live[attempt % live.len()].clone();
        attempt += 1;
        let channel = match channels.get(&url) {
            Some(channel) => channel.clone(),
            None => {
                match tokio::time::timeout(CALL_TIMEOUT, auth_channel(&url, &nodes.token)).await {
                    Ok(Ok(channel)) => {
                        channels.insert(url.clone(), channel.clone());
                        channel
                    }
                    Ok(Err(error)) => {
                        last_error = format!("connecting to {url}: {error:#}");
                        nodes.note(
                            format!("{}: connect", call_kind(what)),
                            format!("{what}: {last_error}"),
                        );
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                    Err(_) => {
                        last_error = format!("connecting to {url}: timed out");
                        nodes.note(
                            format!("{}: connect", call_kind(what)),
                            format!("{what}: {last_error}"),
                        );
                        continue;
                    }
                }
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, send(channel)).await {
            Ok(Ok(response)) => return Ok((response.into_inner(), failed)),
            Ok(Err(status)) if outcome_unknown(status.code()) => {
                failed += 1;
                channels.remove(&url);
                last_error = format!("{url}: {:?}: {}", status.code(), status.message());
                nodes.note(
                    format!("{}: {:?}", call_kind(what), status.code()),
                    format!("{what}: {last_error}"),
                );
                tokio::time::sleep(POLL).await;
            }
            Ok(Err(status)) if stale_view(&status, exact).is_some() => {
                // Refused before anything was recorded: the outcome is known, not a failed send.
                let kind = stale_view(&status, exact).unwrap_or_default();
                let message = format!("{kind}: {what} on {url}: {:?}", status.message());
                nodes.stale(message);
                tokio::time::sleep(POLL).await;
            }
            Ok(Err(status)) => bail!("{what} refused by {url}: {status:?}"),
            Err(_) => {
                failed += 1;
                channels.remove(&url);
                last_error = format!("{url}: no answer within {CALL_TIMEOUT:?}");
                nodes.note(
                    format!("{}: timeout", call_kind(what)),
                    format!("{what}: {last_error}"),
                );
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The load

/// The id of event `k` of append `index` by appender `appender`: deterministic, so a re-send
/// carries the same ids.
fn event_id(appender: usize, index: u64, k: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = b'n';
    id[1] = appender as u8;
    id[2] = k as u8;
    id[8..].copy_from_slice(&index.to_be_bytes());
    id
}

fn stream_name(appender: usize) -> String {
    format!("a{appender}")
}

fn payload(appender: usize, index: u64, k: usize) -> Vec<u8> {
    payload_bytes(
        ((appender as u64) << 48) ^ (index << 8) ^ k as u64,
        PAYLOAD_BYTES,
    )
}

/// Where an acknowledged event is.
#[derive(Clone, Copy, Debug)]
struct EventAck {
    position: u64,
    version: u64,
    appender: usize,
    index: u64,
    k: usize,
}

/// Everything the load had acknowledged.
#[derive(Debug, Default)]
struct Acked {
    events: HashMap<[u8; 16], EventAck>,
    /// Every acknowledged feedback submission, by feedback id.
    feedback: BTreeMap<String, proto::CommandReceipt>,
    /// Receipts of further commands on those items (a discard), by feedback id.
    commands: Vec<(String, proto::CommandReceipt)>,
    /// Appends whose re-send after a failed send found them recorded, or stored them.
    retries_landed: u64,
    retries_stored: u64,
    /// Acknowledged appends deliberately re-sent to another node and answered as duplicates.
    resends: u64,
}

impl Acked {
    /// Records the positions an append was acknowledged at; every ack of one id names one place.
    fn record(
        &mut self,
        appender: usize,
        index: u64,
        response: &proto::AppendResponse,
    ) -> Result<()> {
        let count = response.event_ids.len() as u64;
        for (k, id) in response.event_ids.iter().enumerate() {
            let id: [u8; 16] = id.as_slice().try_into().context("event id of 16 bytes")?;
            let ack = EventAck {
                position: response.first_position + k as u64,
                version: response.last_version + 1 + k as u64 - count,
                appender,
                index,
                k,
            };
            match self.events.get(&id) {
                Some(earlier) => ensure!(
                    earlier.position == ack.position && earlier.version == ack.version,
                    "event {} was acknowledged at position {} (version {}) and again at {} \
                     (version {})",
                    hex::encode(id),
                    earlier.position,
                    earlier.version,
                    ack.position,
                    ack.version
                ),
                None => {
                    self.events.insert(id, ack);
                }
            }
        }
        Ok(())
    }
}

/// A running load: appenders, a feedback submitter and a checkpoint collector.
struct Load {
    nodes: Arc<Nodes>,
    acked: Arc<Mutex<Acked>>,
    appends: Arc<AtomicU64>,
    checkpoints: Arc<Mutex<Vec<SignedCheckpoint>>>,
    stop: Arc<AtomicBool>,
    /// The first error a task ended with, so a wait fails at once with it.
    error: Arc<Mutex<Option<String>>>,
    tasks: Vec<JoinHandle<Result<()>>>,
}

impl Load {
    /// Starts `appenders` appenders, each pausing `pace` between two appends (pacing only).
    fn start(nodes: Arc<Nodes>, appenders: usize, pace: Duration, identity: &Listening) -> Load {
        let load = Load {
            nodes,
            acked: Arc::default(),
            appends: Arc::default(),
            checkpoints: Arc::default(),
            stop: Arc::default(),
            error: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for id in 0..appenders {
            tasks.push(load.spawn(run_appender(
                id,
                load.nodes.clone(),
                load.acked.clone(),
                load.appends.clone(),
                load.stop.clone(),
                pace,
            )));
        }
        tasks.push(load.spawn(run_submitter(
            load.nodes.clone(),
            load.acked.clone(),
            load.stop.clone(),
        )));
        tasks.push(load.spawn(collect_checkpoints(
            load.nodes.clone(),
            identity.clone(),
            load.checkpoints.clone(),
            load.stop.clone(),
        )));
        Load { tasks, ..load }
    }

    fn spawn(
        &self,
        task: impl Future<Output = Result<()>> + Send + 'static,
    ) -> JoinHandle<Result<()>> {
        let error = self.error.clone();
        tokio::spawn(async move {
            let result = task.await;
            if let Err(failure) = &result {
                error
                    .lock()
                    .expect("error")
                    .get_or_insert_with(|| format!("{failure:#}"));
            }
            result
        })
    }

    fn appends(&self) -> u64 {
        self.appends.load(Ordering::SeqCst)
    }

    /// Waits until `more` further appends are acknowledged.
    async fn wait_for_more(&self, more: u64, phase: &str) -> Result<()> {
        let target = self.appends() + more;
        let started = Instant::now();
        let deadline = started + WAIT_DEADLINE;
        loop {
            if let Some(error) = self.error.lock().expect("error").clone() {
                bail!("{phase}: the load failed: {error}");
            }
            if self.appends() >= target {
                let took = started.elapsed();
                eprintln!("{phase}: {more} more appends acknowledged in {took:.1?}");
                if took > PHASE_BOUND {
                    self.nodes.slow.lock().expect("slow").push(format!(
                        "{phase}: {more} appends took {took:.1?}, more than {PHASE_BOUND:?} ({})",
                        self.nodes.failure_summary()
                    ));
                }
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{phase}: {} of {target} appends acknowledged within {WAIT_DEADLINE:?}; {}",
                self.appends(),
                self.nodes.failure_summary()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the load: every task settles what it has in flight (re-sending until acknowledged).
    async fn stop(self) -> Result<(Acked, Vec<SignedCheckpoint>)> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.context("a load task panicked")??;
        }
        let acked = std::mem::take(&mut *self.acked.lock().expect("acked"));
        let checkpoints = std::mem::take(&mut *self.checkpoints.lock().expect("checkpoints"));
        Ok((acked, checkpoints))
    }
}

/// Appends to its own stream until stopped: one event most of the time, three (an atomic batch)
/// every fifth, an exact expected version every fourth; every tenth acknowledged append is
/// re-sent to another node, which must answer with the original positions.
async fn run_appender(
    id: usize,
    nodes: Arc<Nodes>,
    acked: Arc<Mutex<Acked>>,
    appends: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    pace: Duration,
) -> Result<()> {
    let mut channels = HashMap::new();
    let mut version = 0u64;
    let mut index = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let count = if index % 5 == 4 { 3 } else { 1 };
        let ids: Vec<[u8; 16]> = (0..count).map(|k| event_id(id, index, k)).collect();
        let exact = (index % 4 == 3).then_some(version);
        let request = proto::AppendRequest {
            stream: Some(stream_ref(TENANT, AGGREGATE, &stream_name(id))),
            expected: exact.and_then(|version| expected(Condition::Exact(version))),
            events: ids
                .iter()
                .enumerate()
                .map(|(k, event_id)| event(*event_id, "ClusterTestNoted", payload(id, index, k)))
                .collect(),
            actor: format!("appender:{id}"),
        };
        let what = format!("appender {id} append {index}");
        let send = |channel: AuthChannel| {
            let request = request.clone();
            async move { ledger_client(channel).append(request).await }
        };
        let (response, failed) = call(
            &nodes,
            &mut channels,
            &what,
            id + index as usize,
            exact,
            send,
        )
        .await?;
        let sent_ids: Vec<Vec<u8>> = ids.iter().map(|id| id.to_vec()).collect();
        ensure!(
            response.event_ids == sent_ids,
            "{what}: the answer names other event ids"
        );
        ensure!(
            response.first_position >= 1
                && response.last_position >= response.first_position
                && response.last_position - response.first_position + 1 == count as u64,
            "{what}: {count} events acknowledged at positions {}..={}",
            response.first_position,
            response.last_position
        );
        ensure!(
            response.last_version == version + count as u64,
            "{what}: acknowledged at stream version {}, expected {} (the appender is the stream's \
             only writer)",
            response.last_version,
            version + count as u64
        );
        ensure!(
            failed > 0 || !response.deduplicated,
            "{what}: a first send was answered as a duplicate"
        );
        {
            let mut acked = acked.lock().expect("acked");
            acked.record(id, index, &response)?;
            if failed > 0 {
                if response.deduplicated {
                    acked.retries_landed += 1;
                } else {
                    acked.retries_stored += 1;
                }
            }
        }
        version = response.last_version;
        appends.fetch_add(1, Ordering::SeqCst);

        if index % 10 == 9 {
            // Re-send the acknowledged append through the next node: a duplicate, same places.
            let what = format!("appender {id} re-send of append {index}");
            let (again, _) = call(
                &nodes,
                &mut channels,
                &what,
                id + index as usize + 1,
                exact,
                send,
            )
            .await?;
            ensure!(
                again.deduplicated
                    && again.first_position == response.first_position
                    && again.last_position == response.last_position
                    && again.last_version == response.last_version,
                "{what}: answered {again:?}, the first ack was {response:?}"
            );
            let mut acked = acked.lock().expect("acked");
            acked.record(id, index, &again)?;
            acked.resends += 1;
        }
        index += 1;
        tokio::time::sleep(pace).await;
    }
    Ok(())
}

/// Submits feedback items (each with its own idempotency key) until stopped.
async fn run_submitter(
    nodes: Arc<Nodes>,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let mut channels = HashMap::new();
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let request = submit_request(&format!("fb-{n}"), n);
        let what = format!("SubmitFeedback {}", request.id);
        let send = |channel: AuthChannel| {
            let request = request.clone();
            async move { feedback_client(channel).submit_feedback(request).await }
        };
        let (receipt, failed) = call(&nodes, &mut channels, &what, n, None, send).await?;
        ensure!(
            receipt.last_position >= 1 && !receipt.event_types.is_empty(),
            "{what}: receipt {receipt:?}"
        );
        ensure!(
            failed > 0 || !receipt.deduplicated,
            "{what}: a first send was answered as a duplicate"
        );
        acked
            .lock()
            .expect("acked")
            .feedback
            .insert(request.id.clone(), receipt);
        n += 1;
        // Pacing only: keep the feedback a small part of the load.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn submit_request(id: &str, n: usize) -> proto::SubmitFeedbackRequest {
    proto::SubmitFeedbackRequest {
        meta: Some(proto::CommandMeta {
            tenant: TENANT.into(),
            idempotency_key: format!("submit-{id}"),
            ..Default::default()
        }),
        id: id.to_owned(),
        text: format!("feedback {n}: the build is slow"),
        submitter: format!("user:u{}", n % 7),
        team: "platform".into(),
        source: proto::FeedbackSource::Survey as i32,
        tags: vec![format!("t{}", n % 3)],
        visibility: proto::Visibility::Team as i32,
        ..Default::default()
    }
}

/// Fetches the latest checkpoint from every node that is up, over and over until stopped, and
/// checks each new one's signature and log at once. Failed calls are skipped (a node may be
/// down); the final checks ask again.
async fn collect_checkpoints(
    nodes: Arc<Nodes>,
    identity: Listening,
    seen: Arc<Mutex<Vec<SignedCheckpoint>>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let mut channels: HashMap<String, AuthChannel> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        for url in nodes.live() {
            let channel = match channels.get(&url) {
                Some(channel) => channel.clone(),
                None => match tokio::time::timeout(CALL_TIMEOUT, auth_channel(&url, &nodes.token))
                    .await
                {
                    Ok(Ok(channel)) => {
                        channels.insert(url.clone(), channel.clone());
                        channel
                    }
                    _ => continue,
                },
            };
            let answer = tokio::time::timeout(
                CALL_TIMEOUT,
                ledger_client(channel).get_checkpoint(proto::GetCheckpointRequest {}),
            )
            .await;
            match answer {
                Ok(Ok(response)) => {
                    let signed = checked_checkpoint(&response.into_inner(), &identity)
                        .with_context(|| format!("checkpoint from {url}"))?;
                    let mut seen = seen.lock().expect("checkpoints");
                    if !seen.contains(&signed) {
                        seen.push(signed);
                    }
                }
                Ok(Err(status)) if status.code() == Code::NotFound => {}
                _ => {
                    channels.remove(&url);
                }
            }
        }
        // Pacing only.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A checkpoint's signature by the ledger's key, over the ledger's log id.
fn checked_checkpoint(
    checkpoint: &proto::Checkpoint,
    identity: &Listening,
) -> Result<SignedCheckpoint> {
    let signed = cairn_grpc::checkpoint_from_proto(checkpoint)
        .map_err(|error| anyhow!("checkpoint: {error}"))?;
    signed.verify(&identity.public_key).map_err(|error| {
        anyhow!("checkpoint {signed:?} is not signed by the ledger key: {error}")
    })?;
    ensure!(
        signed.checkpoint.log_id == identity.log_id,
        "checkpoint of another log: {signed:?}"
    );
    Ok(signed)
}

// ------------------------------------------------------------------------------------------------
// Checks

/// The latest checkpoint a node hands out, once it covers at least `size` records.
async fn wait_checkpoint(
    url: &str,
    token: &str,
    identity: &Listening,
    size: u64,
    deadline: Duration,
) -> Result<(SignedCheckpoint, Duration)> {
    let started = Instant::now();
    let mut client = ledger(url, token).await?;
    let mut last = String::from("none yet");
    loop {
        match client.get_checkpoint(proto::GetCheckpointRequest {}).await {
            Ok(response) => {
                let signed = checked_checkpoint(&response.into_inner(), identity)?;
                if signed.checkpoint.tree_size >= size {
                    return Ok((signed, started.elapsed()));
                }
                last = format!("tree size {}", signed.checkpoint.tree_size);
            }
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => bail!("GetCheckpoint on {url}: {status:?}"),
        }
        ensure!(
            started.elapsed() < deadline,
            "{url} handed out no checkpoint covering {size} records within {deadline:?} (latest: \
             {last})"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every node reports the same head, and returns it.
async fn converged_head(urls: &[String], token: &str) -> Result<u64> {
    let deadline = Instant::now() + WAIT_DEADLINE;
    let mut clients = Vec::new();
    for url in urls {
        clients.push(ledger(url, token).await?);
    }
    loop {
        let mut heads = Vec::new();
        for client in &mut clients {
            heads.push(head_position(client).await?);
        }
        if heads.iter().all(|head| *head == heads[0]) {
            return Ok(heads[0]);
        }
        ensure!(
            Instant::now() < deadline,
            "the nodes did not reach one head within {WAIT_DEADLINE:?}: {heads:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// What the final checks found.
struct Verdict {
    head: u64,
    events: usize,
    feedback: usize,
    checkpoints: usize,
}

/// After the load: every node comes to the same head with the same records and root; every
/// acknowledged event is there exactly once at its acknowledged position and nothing else is;
/// every feedback item is there once and the nodes' read models answer alike; every checkpoint
/// seen is a signed prefix of the final tree, and the sealer signs the final head.
async fn check_cluster(
    nodes: &Nodes,
    identity: &Listening,
    acked: &Acked,
    checkpoints: &[SignedCheckpoint],
) -> Result<Verdict> {
    let urls = nodes.live();
    let token = &nodes.token;
    let head = converged_head(&urls, token).await?;

    // One ledger on every node.
    let mut first: Option<(String, Vec<proto::Record>)> = None;
    let mut tree = MerkleTree::new();
    for url in &urls {
        let mut client = ledger(url, token).await?;
        let records = read_all(&mut client)
            .await
            .with_context(|| format!("ReadAll on {url}"))?;
        let (_, node_tree) = tree_of(&records).with_context(|| format!("the records of {url}"))?;
        ensure!(
            node_tree.len() == head,
            "{url} reports head {head} but served {} records",
            node_tree.len()
        );
        let info = client
            .get_log_info(proto::GetLogInfoRequest {})
            .await?
            .into_inner();
        ensure!(
            info.head_position == head && info.head_root == node_tree.root().0.to_vec(),
            "{url}: log info says head {} root {}, the records give {head} and {}",
            info.head_position,
            hex::encode(&info.head_root),
            hex::encode(node_tree.root().0)
        );
        ensure!(
            info.public_key == identity.public_key.0.to_vec()
                && info.log_id == identity.log_id.0.to_vec(),
            "{url}: log info names another key or log"
        );
        match &first {
            None => {
                tree = node_tree;
                first = Some((url.clone(), records));
            }
            Some((first_url, first_records)) => {
                if let Some(at) = (0..records.len()).find(|&i| records[i] != first_records[i]) {
                    bail!(
                        "{url} and {first_url} differ at position {}:\n{:?}\n{:?}",
                        at + 1,
                        records[at],
                        first_records[at]
                    );
                }
            }
        }
    }
    let (_, records) = first.context("no node is up")?;

    // Every acknowledged event once, where it was acknowledged; nothing unacknowledged.
    let mut by_id: HashMap<&[u8], &proto::Record> = HashMap::with_capacity(records.len());
    for record in &records {
        if let Some(other) = by_id.insert(&record.event_id, record) {
            bail!(
                "event {} is recorded twice, at positions {} and {}",
                hex::encode(&record.event_id),
                other.position,
                record.position
            );
        }
    }
    for (id, ack) in &acked.events {
        let record = by_id.get(id.as_slice()).with_context(|| {
            format!(
                "acknowledged event {} (appender {}, append {}, position {}) is missing",
                hex::encode(id),
                ack.appender,
                ack.index,
                ack.position
            )
        })?;
        ensure!(
            record.position == ack.position && record.stream_version == ack.version,
            "event {} was acknowledged at position {} version {} but is at {} version {}",
            hex::encode(id),
            ack.position,
            ack.version,
            record.position,
            record.stream_version
        );
        let stream = record.stream.as_ref().context("record without a stream")?;
        ensure!(
            stream.tenant == TENANT
                && stream.aggregate_type == AGGREGATE
                && stream.aggregate_id == stream_name(ack.appender),
            "event {} is on stream {stream:?}",
            hex::encode(id)
        );
        ensure!(
            record.payload == payload(ack.appender, ack.index, ack.k),
            "event {} has another payload",
            hex::encode(id)
        );
    }
    let mut feedback_records = 0usize;
    for record in &records {
        let stream = record.stream.as_ref().context("record without a stream")?;
        if stream.tenant == TENANT && stream.aggregate_type == AGGREGATE {
            let id: [u8; 16] = record.event_id.as_slice().try_into()?;
            ensure!(
                acked.events.contains_key(&id),
                "position {} holds event {}, which was never acknowledged",
                record.position,
                hex::encode(id)
            );
        } else if stream.tenant == TENANT {
            feedback_records += 1;
        } else {
            ensure!(
                stream.tenant == SYSTEM_TENANT,
                "position {} is on an unexpected stream {stream:?}",
                record.position
            );
        }
    }

    // Every command once (its receipt's records, nothing more).
    let receipts: Vec<(&String, &proto::CommandReceipt)> = acked
        .feedback
        .iter()
        .chain(acked.commands.iter().map(|(id, receipt)| (id, receipt)))
        .collect();
    let receipted: usize = receipts.iter().map(|(_, r)| r.event_types.len()).sum();
    ensure!(
        feedback_records == receipted,
        "the ledger holds {feedback_records} feedback records; the receipts name {receipted}"
    );
    for (id, receipt) in receipts {
        let record = records
            .get((receipt.last_position as usize).wrapping_sub(1))
            .with_context(|| {
                format!("feedback {id}: receipt position {}", receipt.last_position)
            })?;
        ensure!(
            record.stream.as_ref().is_some_and(|s| s.tenant == TENANT)
                && receipt.event_types.last() == Some(&record.event_type),
            "feedback {id}: the receipt names position {} ({:?}), which holds {:?}",
            receipt.last_position,
            receipt.event_types,
            record.event_type
        );
    }

    // The read models of every node agree, as of the head.
    let mut answers: Vec<(String, Vec<proto::Feedback>)> = Vec::new();
    for url in &urls {
        let items = list_feedback(url, token, head).await?;
        let ids: Vec<&str> = items.iter().map(|item| item.id.as_str()).collect();
        let mut expected_ids: Vec<&str> = acked.feedback.keys().map(String::as_str).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        expected_ids.sort_unstable();
        ensure!(
            sorted == expected_ids,
            "{url} lists feedback {ids:?}, acknowledged were {expected_ids:?}"
        );
        if let Some((first_url, first_items)) = answers.first() {
            ensure!(
                &items == first_items,
                "{url} and {first_url} answer ListFeedback as of {head} differently:\n{items:?}\n\
                 {first_items:?}"
            );
        }
        answers.push((url.clone(), items));
    }

    // The sealer signs the final head, and every node hands that checkpoint out.
    let mut all_checkpoints = checkpoints.to_vec();
    for url in &urls {
        let (signed, _) = wait_checkpoint(url, token, identity, head, WAIT_DEADLINE).await?;
        ensure!(
            signed.checkpoint.tree_size == head,
            "{url} hands out a checkpoint of {} records, beyond the head {head}",
            signed.checkpoint.tree_size
        );
        all_checkpoints.push(signed);
    }
    let mut client = ledger(&urls[0], token).await?;
    check_checkpoints(&mut client, &all_checkpoints, &tree).await?;

    Ok(Verdict {
        head,
        events: acked.events.len(),
        feedback: acked.feedback.len(),
        checkpoints: all_checkpoints.len(),
    })
}

/// Every feedback item of the tenant as of `head`, personal data included where the admin may
/// see it.
async fn list_feedback(url: &str, token: &str, head: u64) -> Result<Vec<proto::Feedback>> {
    let mut client = feedback(url, token).await?;
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let answer = client
            .list_feedback(proto::ListFeedbackRequest {
                tenant: TENANT.into(),
                read: Some(proto::ReadOptions {
                    as_of_position: Some(head),
                    at_least_position: Some(head),
                    include_personal: true,
                }),
                page: Some(proto::PageRequest {
                    page_size: 500,
                    page_token,
                }),
                ..Default::default()
            })
            .await
            .with_context(|| format!("ListFeedback on {url} as of {head}"))?
            .into_inner();
        let stamp = answer.stamp.context("answer without a stamp")?;
        ensure!(
            stamp.position == head,
            "{url}: ListFeedback as of {head} is stamped {}",
            stamp.position
        );
        items.extend(answer.items);
        page_token = answer
            .page
            .map(|page| page.next_page_token)
            .unwrap_or_default();
        if page_token.is_empty() {
            return Ok(items);
        }
    }
}

/// Every checkpoint is a prefix of the final tree (same root at its size), and the server proves
/// it consistent with the final root.
async fn check_checkpoints(
    client: &mut LedgerServiceClient<AuthChannel>,
    checkpoints: &[SignedCheckpoint],
    tree: &MerkleTree,
) -> Result<()> {
    ensure!(!checkpoints.is_empty(), "no checkpoint was seen");
    for signed in checkpoints {
        cairn_e2e::check_checkpoint_against_tree(client, &signed.checkpoint, tree).await?;
    }
    Ok(())
}

fn summary(test: &str, started: Instant, verdict: &Verdict, acked: &Acked, nodes: &Nodes) {
    eprintln!(
        "{test}: {} events and {} feedback items acknowledged and found once on every node; head \
         {}; {} checkpoints consistent; re-sends after a failure: {} had landed, {} stored; {} \
         deliberate duplicates answered alike; {} appends refused from a stale view; \
         {}; {:.1?}",
        verdict.events,
        verdict.feedback,
        verdict.head,
        verdict.checkpoints,
        acked.retries_landed,
        acked.retries_stored,
        acked.resends,
        nodes.stale.lock().expect("stale").0,
        nodes.failure_summary(),
        started.elapsed()
    );
}

// ------------------------------------------------------------------------------------------------
// Tests

/// Two nodes on one nats-server share one identity; a write acknowledged by either is seen by the
/// other once a read asks for at least its position, and the other node accepts the next write
/// that builds on it at once: a conditional append expecting the acknowledged stream version, a
/// command on the entity just created. Every refusal is collected, so one run reports them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_node_accepts_writes_and_reads_see_them_at_least_position() -> Result<()> {
    const ROUNDS: usize = 16;
    let started = Instant::now();
    let nats = blocking(NatsServer::start);
    let a = start_node(&nats.url(), "node-a", None, &[])?;
    let b = start_node(&nats.url(), "node-b", Some(&a), &[])?;
    let identity = a.listening().clone();
    let token = a.token()?;
    for server in [&a, &b] {
        let info = ledger(&server.url(), &token)
            .await?
            .get_log_info(proto::GetLogInfoRequest {})
            .await?
            .into_inner();
        ensure!(
            info.public_key == identity.public_key.0.to_vec()
                && info.log_id == identity.log_id.0.to_vec(),
            "{} names another key or log in its log info",
            server.url()
        );
    }

    let urls = [a.url(), b.url()];
    // One connection per node, so a call follows the previous one as closely as a client can.
    let ledgers = [
        ledger(&urls[0], &token).await?,
        ledger(&urls[1], &token).await?,
    ];
    let feedbacks = [
        feedback(&urls[0], &token).await?,
        feedback(&urls[1], &token).await?,
    ];
    let mut acked = Acked::default();
    let mut problems: Vec<String> = Vec::new();
    let mut version = 0;
    let mut index = 0u64;
    // The next raw append of appender 0 on its stream, expecting the version last acknowledged.
    let mut next_append = |version: u64| {
        let request = proto::AppendRequest {
            stream: Some(stream_ref(TENANT, AGGREGATE, &stream_name(0))),
            expected: expected(Condition::Exact(version)),
            events: vec![event(
                event_id(0, index, 0),
                "ClusterTestNoted",
                payload(0, index, 0),
            )],
            actor: "appender:0".into(),
        };
        index += 1;
        (index - 1, request)
    };
    for round in 0..ROUNDS {
        let (w, r) = (round % 2, 1 - round % 2);
        let (writer, reader) = (&urls[w], &urls[r]);

        // A conditional append on one node ...
        let (first_index, request) = next_append(version);
        let response = ledgers[w]
            .clone()
            .append(request)
            .await
            .with_context(|| format!("round {round}: Append on {writer}"))?
            .into_inner();
        acked.record(0, first_index, &response)?;
        version = response.last_version;
        // ... then at once one on the other, expecting the version the first acknowledged.
        let (second_index, request) = next_append(version);
        let mut acked_by = r;
        let response = match ledgers[r].clone().append(request.clone()).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                problems.push(format!(
                    "round {round}: {reader} refused an append expecting version {version}, \
                     which {writer} had just acknowledged: {:?} {:?} (current version {:?})",
                    status.code(),
                    status.message(),
                    status.metadata().get("cairn-current-version")
                ));
                acked_by = w;
                ledgers[w]
                    .clone()
                    .append(request)
                    .await
                    .with_context(|| format!("round {round}: Append re-sent to {writer}"))?
                    .into_inner()
            }
        };
        acked.record(0, second_index, &response)?;
        version = response.last_version;
        let position = response.last_position;
        let (acker, other) = (&urls[acked_by], &urls[1 - acked_by]);

        // A read on the node that did not acknowledge it, at least at its position, reflects it,
        // and that node serves the record.
        let answer = feedbacks[1 - acked_by]
            .clone()
            .list_feedback(proto::ListFeedbackRequest {
                tenant: TENANT.into(),
                read: Some(proto::ReadOptions {
                    at_least_position: Some(position),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .with_context(|| format!("round {round}: ListFeedback at least {position}"))?
            .into_inner();
        let stamped = answer.stamp.map(|stamp| stamp.position).unwrap_or_default();
        ensure!(
            stamped >= position,
            "round {round}: {other} answered at least {position} stamped {stamped}"
        );
        let page = ledgers[1 - acked_by]
            .clone()
            .read_all(proto::ReadAllRequest {
                from_position: position,
                limit: 1,
                include_personal: false,
            })
            .await?
            .into_inner();
        ensure!(
            page.records
                .first()
                .is_some_and(|record| record.event_id == response.event_ids[0]),
            "round {round}: {other} does not serve the event {acker} acknowledged at {position}: \
             {:?}",
            page.records.first()
        );

        // A command on one node, then at once a command on the same entity on the other ...
        let item = format!("fb-rw-{round}");
        let receipt = feedbacks[w]
            .clone()
            .submit_feedback(submit_request(&item, round))
            .await
            .with_context(|| format!("round {round}: SubmitFeedback on {writer}"))?
            .into_inner();
        acked.feedback.insert(item.clone(), receipt.clone());
        let discard = proto::DiscardFeedbackRequest {
            meta: Some(proto::CommandMeta {
                tenant: TENANT.into(),
                idempotency_key: format!("discard-{item}"),
                ..Default::default()
            }),
            id: item.clone(),
            reason: "a duplicate".into(),
        };
        let mut discarded_by = r;
        let discarded = match feedbacks[r].clone().discard_feedback(discard.clone()).await {
            Ok(discarded) => discarded.into_inner(),
            Err(status) => {
                problems.push(format!(
                    "round {round}: {reader} refused to discard {item}, which {writer} had just \
                     recorded at position {}: {:?} {:?}",
                    receipt.last_position,
                    status.code(),
                    status.message()
                ));
                discarded_by = w;
                feedbacks[w]
                    .clone()
                    .discard_feedback(discard)
                    .await
                    .with_context(|| format!("round {round}: DiscardFeedback on {writer}"))?
                    .into_inner()
            }
        };
        acked.commands.push((item.clone(), discarded.clone()));

        // ... and the entity as the other node sees it, at least at the last receipt.
        let other = &urls[1 - discarded_by];
        let seen = feedbacks[1 - discarded_by]
            .clone()
            .get_feedback(proto::GetFeedbackRequest {
                tenant: TENANT.into(),
                read: Some(proto::ReadOptions {
                    at_least_position: Some(discarded.last_position),
                    ..Default::default()
                }),
                id: item.clone(),
            })
            .await
            .with_context(|| {
                format!(
                    "round {round}: GetFeedback {item} on {other} at least {}",
                    discarded.last_position
                )
            })?
            .into_inner();
        ensure!(
            seen.feedback.as_ref().is_some_and(
                |f| f.id == item && f.status == proto::FeedbackStatus::Discarded as i32
            ) && seen
                .stamp
                .as_ref()
                .is_some_and(|stamp| stamp.position >= discarded.last_position),
            "round {round}: {other} answered {seen:?} for {item}, discarded at {}",
            discarded.last_position
        );
    }

    let servers = [a, b];
    let nodes = Nodes::new(token, &servers);
    let verdict = check_cluster(&nodes, &identity, &acked, &[]).await?;
    summary("read your writes", started, &verdict, &acked, &nodes);
    ensure!(
        problems.is_empty(),
        "{} of {ROUNDS} rounds found a node refusing a write that builds on one the other node \
         had just acknowledged:\n{}",
        problems.len(),
        problems.join("\n")
    );
    Ok(())
}

/// Fault test 1: three nodes under load; one (the first started, likely the sealer and the
/// owner of the token file) is killed with SIGKILL mid-load and restarted on its data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_killed_mid_load_loses_nothing() -> Result<()> {
    let started = Instant::now();
    let nats = blocking(NatsServer::start);
    let url = nats.url();
    let mut servers = vec![start_node(&url, "node-a", None, &[])?];
    for name in ["node-b", "node-c"] {
        let server = start_node(&url, name, Some(&servers[0]), &[])?;
        servers.push(server);
    }
    let identity = servers[0].listening().clone();
    let nodes = Nodes::new(servers[0].token()?, &servers);
    let load = Load::start(nodes.clone(), 6, Duration::ZERO, &identity);

    load.wait_for_more(100, "before the kill").await?;
    let victim = 0;
    kill_node(&nodes, &mut servers, victim)?;
    load.wait_for_more(100, "while node-a is down").await?;
    restart_node(&nodes, &mut servers, victim, &identity)?;
    load.wait_for_more(100, "after node-a restarted").await?;
    let (acked, checkpoints) = load.stop().await?;

    let verdict = check_cluster(&nodes, &identity, &acked, &checkpoints).await?;
    summary("node killed", started, &verdict, &acked, &nodes);
    nodes.check_problems()?;
    Ok(())
}

/// The sealer dies; the survivor takes the lease and signs a checkpoint covering its head. Both
/// nodes are killed in turn (each restarted before the other dies), so whichever held the lease
/// first, a holder was killed; every checkpoint seen is consistent with the final tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealer_fails_over() -> Result<()> {
    let started = Instant::now();
    let nats = blocking(NatsServer::start);
    let url = nats.url();
    let mut servers = vec![start_node(&url, "node-a", None, &[])?];
    let server = start_node(&url, "node-b", Some(&servers[0]), &[])?;
    servers.push(server);
    let identity = servers[0].listening().clone();
    let token = servers[0].token()?;
    let nodes = Nodes::new(token.clone(), &servers);
    let load = Load::start(nodes.clone(), 2, Duration::from_millis(50), &identity);
    load.wait_for_more(30, "before the first kill").await?;
    let head = head_position(&mut ledger(&nodes.url(0)?, &token).await?).await?;
    wait_checkpoint(&nodes.url(0)?, &token, &identity, head, WAIT_DEADLINE).await?;

    let mut takeovers = Vec::new();
    for (victim, survivor) in [(0usize, 1usize), (1, 0)] {
        let holder = |server: &Server| server.stderr().contains("took the sealer lease");
        let held: Vec<bool> = servers.iter().map(holder).collect();
        kill_node(&nodes, &mut servers, victim)?;
        let killed = Instant::now();
        load.wait_for_more(10, "while a node is down").await?;
        let survivor_url = nodes.url(survivor)?;
        let head = head_position(&mut ledger(&survivor_url, &token).await?).await?;
        let left = FAILOVER_DEADLINE.saturating_sub(killed.elapsed());
        let (signed, _) = wait_checkpoint(&survivor_url, &token, &identity, head, left)
            .await
            .with_context(|| {
                format!(
                    "node {victim} was killed (lease taken per the logs: {held:?}); {:.1?} later \
                     the survivor had signed nothing up to its head {head}:\n--- survivor's \
                     log\n{}",
                    killed.elapsed(),
                    servers[survivor].stderr()
                )
            })?;
        takeovers.push(format!(
            "node {victim} killed (logs say lease taken: {held:?}); checkpoint of {} >= head \
             {head} on node {survivor} {:.1?} after the kill",
            signed.checkpoint.tree_size,
            killed.elapsed()
        ));
        restart_node(&nodes, &mut servers, victim, &identity)?;
        load.wait_for_more(30, "after the restart").await?;
    }
    let (acked, checkpoints) = load.stop().await?;
    let verdict = check_cluster(&nodes, &identity, &acked, &checkpoints).await?;
    eprintln!("sealer takeovers: {takeovers:#?}");
    summary("sealer fails over", started, &verdict, &acked, &nodes);
    nodes.check_problems()?;
    Ok(())
}

/// A raw NATS client of the cluster.
async fn nats_client(cluster: &NatsCluster) -> Result<async_nats::Client> {
    let servers = cluster
        .servers
        .iter()
        .map(|server| server.url().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .context("server URLs")?;
    async_nats::connect(servers)
        .await
        .context("connecting to the cluster")
}

/// Waits until the cluster's JetStream answers (a meta leader is elected): servers accept client
/// connections before that, and a cairn node started then gives up on its first request.
async fn wait_jetstream_ready(cluster: &NatsCluster) -> Result<()> {
    let started = Instant::now();
    let js = async_nats::jetstream::new(nats_client(cluster).await?);
    loop {
        match js.query_account().await {
            Ok(_) => {
                eprintln!("JetStream cluster ready after {:.1?}", started.elapsed());
                return Ok(());
            }
            Err(error) => ensure!(
                started.elapsed() < WAIT_DEADLINE,
                "the JetStream cluster did not answer within {WAIT_DEADLINE:?}: {error}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The index of the server leading the ledger stream's RAFT group.
async fn stream_leader(cluster: &NatsCluster) -> Result<usize> {
    let js = async_nats::jetstream::new(nats_client(cluster).await?);
    let mut stream = js
        .get_stream(STREAM)
        .await
        .map_err(|error| anyhow!("stream {STREAM}: {error}"))?;
    let info = stream
        .info()
        .await
        .map_err(|error| anyhow!("stream {STREAM} info: {error}"))?;
    let leader = info
        .cluster
        .as_ref()
        .and_then(|cluster| cluster.leader.clone())
        .context("the stream has no leader")?;
    // Every stream cairn created (records, checkpoints, and the key, lease and identity buckets)
    // has the three replicas asked for.
    let mut streams = js.streams();
    let mut replicas = Vec::new();
    while let Some(stream) = tokio_stream::StreamExt::next(&mut streams).await {
        let stream = stream.map_err(|error| anyhow!("listing streams: {error}"))?;
        replicas.push((stream.config.name.clone(), stream.config.num_replicas));
    }
    ensure!(
        replicas.len() >= 2 && replicas.iter().all(|(_, replicas)| *replicas == 3),
        "cairn was asked for 3 replicas; the streams have {replicas:?}"
    );
    leader
        .strip_prefix('n')
        .and_then(|n| n.parse::<usize>().ok())
        .map(|n| n - 1)
        .with_context(|| format!("leader {leader:?}"))
}

/// Fault test 2: a three-server JetStream cluster, streams of three replicas; the stream leader
/// is killed with SIGKILL mid-load; appends go on; it comes back; nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jetstream_cluster_survives_a_server_kill() -> Result<()> {
    let started = Instant::now();
    let mut cluster = blocking(|| NatsCluster::start(3, false));
    wait_jetstream_ready(&cluster).await?;
    let store = cluster.urls();
    let replicas = ["--nats-replicas", "3"];
    let mut servers = vec![start_node(&store, "node-a", None, &replicas)?];
    let server = start_node(&store, "node-b", Some(&servers[0]), &replicas)?;
    servers.push(server);
    let identity = servers[0].listening().clone();
    let nodes = Nodes::new(servers[0].token()?, &servers);
    let load = Load::start(nodes.clone(), 4, Duration::ZERO, &identity);

    load.wait_for_more(100, "before the server kill").await?;
    let leader = stream_leader(&cluster).await?;
    trace(&format!("killing nats-server n{}", leader + 1));
    blocking(|| cluster.servers[leader].kill());
    load.wait_for_more(100, "while a nats-server is down")
        .await?;
    blocking(|| {
        cluster.servers[leader].restart_no_wait();
        cluster.servers[leader].wait_ready();
    });
    load.wait_for_more(100, "after the nats-server restarted")
        .await?;
    let (acked, checkpoints) = load.stop().await?;

    let verdict = check_cluster(&nodes, &identity, &acked, &checkpoints).await?;
    eprintln!("killed nats-server n{} (the stream leader)", leader + 1);
    if tracing() {
        for server in &servers {
            eprintln!("--- node log\n{}", server.stderr());
        }
    }
    summary("cluster server kill", started, &verdict, &acked, &nodes);
    nodes.check_problems()?;
    drop(servers);
    drop(cluster);
    Ok(())
}

/// Fault test 3: one nats-server with `sync_interval: always`, killed with SIGKILL and restarted
/// (same port, same store) three times under load; the cairn node reconnects by itself and
/// nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_server_restarts_under_load_with_sync_always() -> Result<()> {
    let started = Instant::now();
    let options = ServerOptions {
        sync_always: true,
        ..Default::default()
    };
    let mut nats = blocking(|| NatsServer::start_with("n1", free_port(), options));
    let servers = vec![start_node(&nats.url(), "node-a", None, &[])?];
    let identity = servers[0].listening().clone();
    let nodes = Nodes::new(servers[0].token()?, &servers);
    let load = Load::start(nodes.clone(), 4, Duration::ZERO, &identity);

    for round in 0..3 {
        load.wait_for_more(60, &format!("before nats-server kill {round}"))
            .await?;
        trace("killing the nats-server");
        blocking(|| {
            nats.kill();
            // Pacing only: let some calls find the server gone.
            std::thread::sleep(Duration::from_millis(300));
            nats.restart();
        });
    }
    load.wait_for_more(60, "after the last nats-server restart")
        .await?;
    let (acked, checkpoints) = load.stop().await?;

    if tracing() {
        eprintln!("--- node log\n{}", servers[0].stderr());
    }
    let verdict = check_cluster(&nodes, &identity, &acked, &checkpoints).await?;
    summary("nats-server restarts", started, &verdict, &acked, &nodes);
    nodes.check_problems()?;
    drop(servers);
    drop(nats);
    Ok(())
}
