//! Crash safety: SIGKILL the real server mid-write, again and again, and check that nothing
//! acknowledged was lost, moved or duplicated, and that every checkpoint handed out before a kill
//! is still a signed prefix of the final ledger.
//!
//! Several appenders write concurrently over gRPC, each to its own streams with its own
//! deterministic event ids, some with an exact expected version. An append whose call failed
//! because of the kill has an unknown outcome: the appender re-sends it unchanged after the
//! restart, and idempotency must answer with the original positions if it had landed, or store
//! it now. A seeded random delay chooses when each kill happens; no check depends on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use cairn_e2e::{
    Server, SplitMix64, connect, event, expected, payload_bytes, read_all, run_cairn, stream_ref,
    test_seed, tree_of,
};
use cairn_grpc::proto;
use cairn_grpc::proto::expected_version::Condition;
use cairn_ledger::{LogId, PublicKey, SignedCheckpoint};
use tonic::Code;

/// Concurrent appenders.
const APPENDERS: usize = 8;
/// Streams each appender owns.
const STREAMS_PER_APPENDER: usize = 3;
/// SIGKILLs (and restarts) in one run.
const KILLS: usize = 32;
/// Clear payload bytes per event.
const PAYLOAD_BYTES: usize = 300;
/// Appends each appender makes after the last restart, once its unknown append is settled.
const APPENDS_AFTER_LAST_RESTART: u64 = 5;
const TENANT: &str = "crash";

/// The event id of event `k` of append `index` by `appender`: deterministic, so a re-send after
/// a kill carries the same ids.
fn event_id(appender: usize, index: u64, k: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = b'c';
    id[1] = appender as u8;
    id[2] = k as u8;
    id[8..].copy_from_slice(&index.to_be_bytes());
    id
}

fn stream_name(appender: usize, stream: usize) -> String {
    format!("a{appender}-s{stream}")
}

fn payload(appender: usize, index: u64, k: usize) -> Vec<u8> {
    payload_bytes(
        ((appender as u64) << 48) ^ (index << 8) ^ k as u64,
        PAYLOAD_BYTES,
    )
}

/// One append an appender made, acknowledged by the server.
#[derive(Clone, Debug)]
struct Acked {
    stream: usize,
    event_ids: Vec<[u8; 16]>,
    first_position: u64,
    last_position: u64,
    last_version: u64,
}

/// An append that was sent but whose outcome is unknown (the call failed).
#[derive(Clone, Debug)]
struct Pending {
    stream: usize,
    request: proto::AppendRequest,
    event_ids: Vec<[u8; 16]>,
    /// How many times it was sent and failed.
    failures: u32,
}

/// What one appender knows, carried across restarts.
#[derive(Debug)]
struct Appender {
    id: usize,
    next_index: u64,
    /// The acknowledged version of each of its streams (it is their only writer).
    versions: Vec<u64>,
    pending: Option<Pending>,
    acked: Vec<Acked>,
    /// Unknown appends whose re-send found them recorded (they had landed before the kill).
    retries_landed: u64,
    /// Unknown appends whose re-send stored them (they had not landed).
    retries_stored: u64,
}

impl Appender {
    fn new(id: usize) -> Appender {
        Appender {
            id,
            next_index: 0,
            versions: vec![0; STREAMS_PER_APPENDER],
            pending: None,
            acked: Vec::new(),
            retries_landed: 0,
            retries_stored: 0,
        }
    }

    /// The next append: on one of its streams, one event most of the time and three (an atomic
    /// batch) every fifth, an exact expected version every fourth, "no stream" for a first write
    /// now and then, "any" otherwise.
    fn next_append(&mut self) -> Pending {
        let index = self.next_index;
        self.next_index += 1;
        let stream = (index as usize) % STREAMS_PER_APPENDER;
        let version = self.versions[stream];
        let count = if index % 5 == 4 { 3 } else { 1 };
        let condition = if index.is_multiple_of(4) {
            Some(Condition::Exact(version))
        } else if version == 0 && stream == 1 {
            Some(Condition::NoStream(true))
        } else if index % 4 == 1 {
            Some(Condition::Any(true))
        } else {
            None
        };
        let event_ids: Vec<[u8; 16]> = (0..count).map(|k| event_id(self.id, index, k)).collect();
        let events = event_ids
            .iter()
            .enumerate()
            .map(|(k, id)| {
                let mut input = event(*id, "CrashTestNoted", payload(self.id, index, k));
                input.correlation_id = vec![self.id as u8; 16];
                input
            })
            .collect();
        Pending {
            stream,
            request: proto::AppendRequest {
                stream: Some(stream_ref(
                    TENANT,
                    "crashtest",
                    &stream_name(self.id, stream),
                )),
                expected: condition.and_then(expected),
                events,
                actor: format!("appender:{}", self.id),
            },
            event_ids,
            failures: 0,
        }
    }

    /// Records an acknowledgement after checking it against what the appender knows.
    fn acknowledge(&mut self, append: Pending, response: proto::AppendResponse) -> Result<()> {
        let count = append.event_ids.len() as u64;
        let expected_version = self.versions[append.stream] + count;
        let answered_ids: Vec<Vec<u8>> = append.event_ids.iter().map(|id| id.to_vec()).collect();
        ensure!(
            response.event_ids == answered_ids,
            "appender {}: the response names other event ids",
            self.id
        );
        ensure!(
            response.first_position >= 1
                && response.last_position + 1 - response.first_position == count,
            "appender {}: {count} events acknowledged at positions {}..={}",
            self.id,
            response.first_position,
            response.last_position
        );
        ensure!(
            response.last_version == expected_version,
            "appender {}: stream {} acknowledged at version {}, expected {expected_version}",
            self.id,
            append.stream,
            response.last_version
        );
        if append.failures == 0 {
            ensure!(
                !response.deduplicated,
                "appender {}: a first attempt was answered as a retry",
                self.id
            );
        } else {
            if response.deduplicated {
                self.retries_landed += 1;
            } else {
                self.retries_stored += 1;
            }
        }
        self.versions[append.stream] = response.last_version;
        self.acked.push(Acked {
            stream: append.stream,
            event_ids: append.event_ids,
            first_position: response.first_position,
            last_position: response.last_position,
            last_version: response.last_version,
        });
        Ok(())
    }
}

/// Whether a failed call may have been cut by the kill (its outcome is unknown), as opposed to a
/// refusal that is a bug whenever it happens.
fn outcome_unknown(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
    )
}

/// Appends until a call fails, or `appends_max` appends are acknowledged. A pending append (from
/// before the last kill) is re-sent first.
async fn run_appender(
    mut appender: Appender,
    url: String,
    token: String,
    killed: Arc<AtomicBool>,
    appends_max: Option<u64>,
) -> Result<Appender> {
    let mut client = match connect(&url, &token).await {
        Ok(client) => client,
        // Killed before this appender even connected: nothing was sent.
        Err(_) if killed.load(Ordering::SeqCst) => return Ok(appender),
        Err(error) => return Err(error),
    };
    let mut acknowledged = 0;
    loop {
        if appends_max.is_some_and(|max| acknowledged >= max && appender.pending.is_none()) {
            return Ok(appender);
        }
        let append = match appender.pending.take() {
            Some(pending) => pending,
            None => appender.next_append(),
        };
        match client.append(append.request.clone()).await {
            Ok(response) => {
                appender.acknowledge(append, response.into_inner())?;
                acknowledged += 1;
            }
            Err(status) if outcome_unknown(status.code()) && killed.load(Ordering::SeqCst) => {
                appender.pending = Some(Pending {
                    failures: append.failures + 1,
                    ..append
                });
                return Ok(appender);
            }
            Err(status) => bail!(
                "appender {}: append refused while the server was up: {status:?}",
                appender.id
            ),
        }
    }
}

/// One checkpoint as a client saw it.
#[derive(Clone, Debug)]
struct SeenCheckpoint {
    signed: SignedCheckpoint,
    round: usize,
}

/// Fetches the latest checkpoint over and over until the kill, checking each new one at once.
async fn collect_checkpoints(
    url: String,
    token: String,
    round: usize,
    public_key: PublicKey,
    log_id: LogId,
    killed: Arc<AtomicBool>,
) -> Result<Vec<SeenCheckpoint>> {
    let mut client = match connect(&url, &token).await {
        Ok(client) => client,
        Err(_) if killed.load(Ordering::SeqCst) => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut seen: Vec<SeenCheckpoint> = Vec::new();
    while !killed.load(Ordering::SeqCst) {
        match client.get_checkpoint(proto::GetCheckpointRequest {}).await {
            Ok(response) => {
                let signed = cairn_grpc::checkpoint_from_proto(&response.into_inner())
                    .map_err(|error| anyhow!("round {round}: checkpoint: {error}"))?;
                signed
                    .verify(&public_key)
                    .map_err(|error| anyhow!("round {round}: checkpoint {signed:?}: {error}"))?;
                ensure!(
                    signed.checkpoint.log_id == log_id,
                    "checkpoint of another log"
                );
                if let Some(last) = seen.last() {
                    ensure!(
                        signed.checkpoint.tree_size >= last.signed.checkpoint.tree_size,
                        "round {round}: checkpoints of one server went back from {} to {}",
                        last.signed.checkpoint.tree_size,
                        signed.checkpoint.tree_size
                    );
                }
                if seen.last().is_none_or(|last| last.signed != signed) {
                    seen.push(SeenCheckpoint { signed, round });
                }
            }
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) if outcome_unknown(status.code()) && killed.load(Ordering::SeqCst) => {
                break;
            }
            Err(status) => bail!("round {round}: GetCheckpoint failed while up: {status:?}"),
        }
        // Pacing only: how often to look, not a condition of any check.
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_nothing_acknowledged() -> Result<()> {
    let started = Instant::now();
    let mut rng = SplitMix64::new(test_seed(0x00c4_a5e5_eed5));
    let mut server = Server::start_temp(&["--checkpoint-interval-ms", "40"])?;
    let identity = server.listening().clone();
    let mut appenders: Vec<Appender> = (0..APPENDERS).map(Appender::new).collect();
    let mut checkpoints: Vec<SeenCheckpoint> = Vec::new();

    for round in 0..KILLS {
        if round > 0 {
            server
                .restart()
                .with_context(|| format!("restart {round}"))?;
            ensure!(
                server.listening().public_key == identity.public_key
                    && server.listening().log_id == identity.log_id,
                "restart {round} came back with another identity: {:?}",
                server.listening()
            );
        }
        let killed = Arc::new(AtomicBool::new(false));
        let url = server.url();
        let token = server.token()?;
        let tasks: Vec<_> = appenders
            .drain(..)
            .map(|appender| {
                tokio::spawn(run_appender(
                    appender,
                    url.clone(),
                    token.clone(),
                    killed.clone(),
                    None,
                ))
            })
            .collect();
        let collector = tokio::spawn(collect_checkpoints(
            url.clone(),
            token.clone(),
            round,
            identity.public_key,
            identity.log_id,
            killed.clone(),
        ));
        // The randomness chooses when the kill lands: mostly mid-stream, sometimes right after
        // start (during recovery and the first re-sends).
        let delay_ms = if rng.below(5) == 0 {
            rng.below(40)
        } else {
            40 + rng.below(600)
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        killed.store(true, Ordering::SeqCst);
        server.kill()?;
        for task in tasks {
            appenders.push(task.await??);
        }
        checkpoints.extend(collector.await??);
        let acked: usize = appenders.iter().map(|a| a.acked.len()).sum();
        eprintln!(
            "round {round}: killed after {delay_ms} ms; {acked} appends acknowledged, {} unknown, \
             {} checkpoints seen",
            appenders.iter().filter(|a| a.pending.is_some()).count(),
            checkpoints.len()
        );
    }

    // The last restart: every unknown append is settled by its re-send, then a few more.
    server.restart().context("final restart")?;
    ensure!(server.listening().public_key == identity.public_key);
    let never_killed = Arc::new(AtomicBool::new(false));
    let token = server.token()?;
    let tasks: Vec<_> = appenders
        .drain(..)
        .map(|appender| {
            tokio::spawn(run_appender(
                appender,
                server.url(),
                token.clone(),
                never_killed.clone(),
                Some(APPENDS_AFTER_LAST_RESTART),
            ))
        })
        .collect();
    for task in tasks {
        appenders.push(task.await??);
    }
    ensure!(appenders.iter().all(|a| a.pending.is_none()));

    let mut client = server.client().await?;
    let records = read_all(&mut client).await?;
    let (rebuilt, tree) = tree_of(&records)?;
    let head = tree.len();
    let info = client
        .get_log_info(proto::GetLogInfoRequest {})
        .await?
        .into_inner();
    ensure!(
        info.head_position == head,
        "log info says head {}, read {head} records",
        info.head_position
    );
    ensure!(
        info.head_root == tree.root().0.to_vec(),
        "the server's head root differs from the root recomputed from the records"
    );
    check_acknowledged(&appenders, &records)?;
    check_stream_versions(&records)?;
    check_checkpoints(&mut client, &checkpoints, &tree).await?;
    ensure!(rebuilt.len() as u64 == head);

    let status = server.terminate()?;
    ensure!(
        status.success(),
        "cairn serve exited with {status} on SIGTERM:\n{}",
        server.stderr()
    );
    let verify = run_cairn([
        "verify".as_ref(),
        "--data".as_ref(),
        server.data_dir().as_os_str(),
    ])?;
    ensure!(
        verify.status.success(),
        "cairn verify --data failed:\n{verify}"
    );

    // A graceful shutdown seals the head: the latest checkpoint covers every record.
    server.restart()?;
    let mut client = server.client().await?;
    let latest = client
        .get_checkpoint(proto::GetCheckpointRequest {})
        .await?
        .into_inner();
    let latest = cairn_grpc::checkpoint_from_proto(&latest).map_err(|e| anyhow!("{e}"))?;
    latest
        .verify(&identity.public_key)
        .map_err(|e| anyhow!("{e}"))?;
    ensure!(
        latest.checkpoint.tree_size == head && latest.checkpoint.root == tree.root(),
        "after SIGTERM the latest checkpoint covers {} of {head} records",
        latest.checkpoint.tree_size
    );
    let status = server.terminate()?;
    ensure!(status.success(), "second SIGTERM: {status}");

    let landed: u64 = appenders.iter().map(|a| a.retries_landed).sum();
    let stored: u64 = appenders.iter().map(|a| a.retries_stored).sum();
    let acked: usize = appenders.iter().map(|a| a.acked.len()).sum();
    eprintln!(
        "{KILLS} kills: {acked} appends ({head} records) acknowledged and found; of the appends \
         cut by a kill, {landed} had landed (the re-send got the original positions) and {stored} \
         had not (the re-send stored them); {} checkpoints checked; {:.1?}",
        checkpoints.len(),
        started.elapsed()
    );
    ensure!(acked > 0, "no append was ever acknowledged");
    Ok(())
}

/// Every acknowledged event is in the ledger exactly once, at its acknowledged position, with
/// its content; and the ledger holds nothing else.
fn check_acknowledged(appenders: &[Appender], records: &[proto::Record]) -> Result<()> {
    let mut by_id: HashMap<Vec<u8>, &proto::Record> = HashMap::with_capacity(records.len());
    for record in records {
        if let Some(other) = by_id.insert(record.event_id.clone(), record) {
            bail!(
                "event {} is recorded twice, at positions {} and {}",
                hex::encode(&record.event_id),
                other.position,
                record.position
            );
        }
    }
    let mut acknowledged_events = 0;
    for appender in appenders {
        for acked in &appender.acked {
            for (k, id) in acked.event_ids.iter().enumerate() {
                acknowledged_events += 1;
                let record = by_id.get(id.as_slice()).with_context(|| {
                    format!(
                        "appender {}: acknowledged event {} (position {}) is missing",
                        appender.id,
                        hex::encode(id),
                        acked.first_position + k as u64
                    )
                })?;
                let position = acked.first_position + k as u64;
                let version = acked.last_version + 1 + k as u64 - acked.event_ids.len() as u64;
                ensure!(
                    record.position == position,
                    "event {} was acknowledged at position {position} but is at {}",
                    hex::encode(id),
                    record.position
                );
                ensure!(position <= acked.last_position);
                ensure!(
                    record.stream_version == version,
                    "event {} was acknowledged at version {version} but has {}",
                    hex::encode(id),
                    record.stream_version
                );
                let stream = record.stream.as_ref().context("record without a stream")?;
                ensure!(stream.aggregate_id == stream_name(appender.id, acked.stream));
                let index = u64::from_be_bytes(id[8..].try_into()?);
                ensure!(
                    record.payload == payload(appender.id, index, k),
                    "event {} has another payload",
                    hex::encode(id)
                );
            }
        }
    }
    // The server's own records (its policy activation) are in the system tenant.
    let server_records = records
        .iter()
        .filter(|record| {
            record
                .stream
                .as_ref()
                .is_some_and(|stream| stream.tenant == "cairn-system")
        })
        .count();
    ensure!(
        acknowledged_events + server_records == records.len(),
        "the ledger holds {} records but {acknowledged_events} events were acknowledged",
        records.len()
    );
    Ok(())
}

/// Each stream's versions, in position order, are 1, 2, 3, ...
fn check_stream_versions(records: &[proto::Record]) -> Result<()> {
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    for record in records {
        let stream = record.stream.as_ref().context("record without a stream")?;
        let version = versions
            .entry(format!("{}/{}", stream.aggregate_type, stream.aggregate_id))
            .or_default();
        *version += 1;
        ensure!(
            record.stream_version == *version,
            "position {}: stream {} version {}, expected {}",
            record.position,
            stream.aggregate_id,
            record.stream_version,
            version
        );
    }
    Ok(())
}

/// Every checkpoint seen before a kill is signed by the key printed at start, is a prefix of the
/// final tree (same root at its size), and the server proves it consistent with the final root.
async fn check_checkpoints(
    client: &mut cairn_grpc::proto::ledger_service_client::LedgerServiceClient<
        cairn_grpc::auth::AuthChannel,
    >,
    checkpoints: &[SeenCheckpoint],
    tree: &cairn_ledger::MerkleTree,
) -> Result<()> {
    for seen in checkpoints {
        cairn_e2e::check_checkpoint_against_tree(client, &seen.signed.checkpoint, tree)
            .await
            .with_context(|| format!("round {}", seen.round))?;
    }
    Ok(())
}
