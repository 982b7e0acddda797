//! `cairn-bench`: how close cairn's durable appends and its verification come to what this
//! machine's disk and CPU allow, measured in one run on one temporary directory.
//!
//! It measures the raw ceilings first (a write and an `fdatasync` per record; one `fdatasync` per
//! batch of 8 and of 64 records of the same size; each appending to a growing file, as the aims
//! are stated, and overwriting a preallocated one, as the store writes its segments), then the
//! embedded store in process and the gRPC server over loopback at 1, 8 and 64 concurrent
//! appenders (one ~300-byte event per append, each appender on its own stream), then
//! `verify_segments` beside raw blake3 over the same segment bytes, and prints one Markdown report
//! with the ratios the design aims at.
//!
//! Every measurement is repeated (three rounds by default, the phases interleaved) and the best
//! round is reported: a ceiling is what the machine can do, and on a shared machine a round can
//! lose its disk or CPU to a neighbour; taking the best of every figure keeps the ratios like with
//! like.
//!
//! Run it in release: `cargo run --release -p cairn-bench -- [--quick] [--dir DIR]`. Every phase
//! is bounded in time, so a full run takes a minute and a half and `--quick` about ten seconds.
//! The bench is not part of the test suite; it never asserts, it reports.
//!
//! `--feedback-loop` runs the feedback-loop benchmark instead (see `feedback_loop`), and
//! `--jetstream` cairn's appends on JetStream beside raw async-nats publishes (see `jetstream`;
//! it needs `CAIRN_NATS_SERVER`, which `cargo xtask nats-server` prints).

mod feedback_loop;
mod jetstream;

/// The allocator of the cairn binary, so the benchmark measures what runs (see cairn-cli).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cairn_grpc::auth::BearerToken;
use cairn_grpc::proto;
use cairn_grpc::proto::ledger_service_client::LedgerServiceClient;
use cairn_grpc::{ServerLimits, Services};
use cairn_ledger::{
    DataClass, EventId, Hash, Position, SealedPayload, StreamId, StreamVersion, TenantId,
};
use cairn_projections::Projections;
use cairn_service::{Checkpointer, Ledger, ServerIdentity};
use cairn_store::{EventStore, ExpectedVersion, NewEvent};
use cairn_store_embedded::{EmbeddedOptions, EmbeddedStore, verify_segments};
use clap::Parser;
use tokio::sync::Barrier;
use tonic::transport::Channel;

/// The token the benchmark's gRPC clients present (the server accepts only it).
const BENCH_TOKEN: &str = "cairn_bench";

/// Bytes of the clear payload of every event.
const PAYLOAD_BYTES: usize = 300;
/// The appender counts every store phase runs.
const APPENDER_COUNTS: [usize; 3] = [1, 8, 64];
/// Records per `fdatasync` of the raw ceilings: one per append, and the batches the store sees
/// at 8 and 64 appenders.
const RAW_BATCH_RECORDS: [usize; 3] = [1, 8, 64];
/// Bytes of the preallocated file of the raw ceilings; writes wrap around inside it.
const RAW_PREALLOCATED_BYTES: u64 = 64 << 20;
/// Appends made before each timed phase, so connections, files and caches are warm.
const WARMUP_APPENDS_PER_APPENDER: u64 = 20;

/// Measure cairn's durable appends and verification against this machine's raw limits.
#[derive(Debug, Parser)]
#[command(name = "cairn-bench")]
struct Args {
    /// A smoke run (one round of 0.7 s per phase) instead of the full measurement.
    #[arg(long)]
    quick: bool,
    /// Seconds per round of each timed phase (default 2, or 0.7 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Rounds of each timed phase; the best is reported (default 3, or 1 with --quick).
    #[arg(long)]
    rounds: Option<u32>,
    /// Where to create the temporary directory (default: the system's temporary directory). Use
    /// the disk a cairn data directory would live on.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run the feedback-loop benchmark (load, rebuild, queries) instead of the append phases.
    #[arg(long)]
    feedback_loop: bool,
    /// Ledger events of the feedback-loop data set.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Run the JetStream benchmark (cairn's appends on JetStream beside raw async-nats publishes,
    /// issue 5) instead of the append phases. Needs nats-server 2.12+ (`$CAIRN_NATS_SERVER`, see
    /// `cargo xtask nats-server`).
    #[arg(long)]
    jetstream: bool,
    /// cairn nodes of the JetStream benchmark's several-node phases (at least 2).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Run only the JetStream phases whose tag (RAW_8, RAWP_256, RAWC_64, CAIRN_1N_64, ...)
    /// contains one of these comma-separated parts (`RAW_,CAIRN_`), for profiling some of them.
    #[arg(long)]
    only: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let phase = Duration::from_secs_f64(args.seconds.unwrap_or(if args.quick { 0.7 } else { 2.0 }));
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let base = match &args.dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("cairn-bench-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("cairn-bench-").tempdir()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.feedback_loop {
        let report = runtime.block_on(feedback_loop::run(base.path(), args.events))?;
        println!("{report}");
        return Ok(());
    }
    if args.jetstream {
        let report = runtime.block_on(jetstream::run(
            phase,
            rounds,
            args.quick,
            args.nodes,
            args.only.as_deref(),
        ))?;
        println!("{report}");
        return Ok(());
    }
    let report = runtime.block_on(run(base.path(), phase, rounds, args.quick))?;
    println!("{report}");
    Ok(())
}

/// Throughput and latency of one phase.
#[derive(Clone, Debug)]
struct Measured {
    /// Records made durable.
    records: u64,
    /// Operations timed (appends, or batches for the raw batched ceiling).
    operations: u64,
    elapsed: Duration,
    /// Per-operation latencies, sorted.
    latencies: Vec<Duration>,
    /// CPU time of the whole process (every thread: appenders, client, server, store) during the
    /// phase, where measured: where the time goes when the disk is not the limit.
    cpu: Option<Duration>,
}

impl Measured {
    fn new(records: u64, elapsed: Duration, mut latencies: Vec<Duration>) -> Measured {
        latencies.sort_unstable();
        Measured {
            records,
            operations: latencies.len() as u64,
            elapsed,
            latencies,
            cpu: None,
        }
    }

    fn with_cpu(mut self, cpu: Duration) -> Measured {
        self.cpu = Some(cpu);
        self
    }

    /// CPU microseconds per durable record, across all threads of the process.
    fn cpu_micros_per_record(&self) -> Option<f64> {
        self.cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / self.records.max(1) as f64)
    }

    fn records_per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((fraction * self.latencies.len() as f64).ceil() as usize).max(1);
        self.latencies[rank.min(self.latencies.len()) - 1]
    }
}

/// Everything one run measured.
struct Report {
    quick: bool,
    phase: Duration,
    rounds: u32,
    dir: PathBuf,
    frame_bytes: usize,
    /// Appending to a growing file (each `fdatasync` also commits the new size).
    raw_appending: Vec<(usize, Measured)>,
    /// Overwriting a zero-filled, synced file (what a preallocating store does).
    raw_preallocated: Vec<(usize, Measured)>,
    in_process: Vec<(usize, Measured)>,
    grpc: Vec<(usize, Measured)>,
    /// 64 appenders on a fresh store, the clock running until close() has indexed everything.
    sustained: Measured,
    verification: Verification,
}

/// The verification phase.
struct Verification {
    records: u64,
    /// Bytes of frames (and headers): the ledger's data.
    bytes: u64,
    /// Bytes of the segment files, padding included.
    file_bytes: u64,
    verify: Duration,
    blake3_files: Duration,
    blake3_per_record: Duration,
}

/// The round with the highest throughput.
fn best(rounds: Vec<Measured>) -> Measured {
    rounds
        .into_iter()
        .max_by(|a, b| a.records_per_second().total_cmp(&b.records_per_second()))
        .expect("at least one round")
}

/// Every measurement of one round, keyed by what was measured.
#[derive(Default)]
struct Rounds {
    raw_appending: Vec<(usize, Vec<Measured>)>,
    raw_preallocated: Vec<(usize, Vec<Measured>)>,
    in_process: Vec<(usize, Vec<Measured>)>,
    grpc: Vec<(usize, Vec<Measured>)>,
}

/// Adds one round's figure for `key`.
fn record(list: &mut Vec<(usize, Vec<Measured>)>, key: usize, measured: Measured) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, rounds)) => rounds.push(measured),
        None => list.push((key, vec![measured])),
    }
}

/// The best round of each key.
fn best_of_each(list: Vec<(usize, Vec<Measured>)>) -> Vec<(usize, Measured)> {
    list.into_iter()
        .map(|(key, rounds)| (key, best(rounds)))
        .collect()
}

async fn run(base: &Path, phase: Duration, rounds: u32, quick: bool) -> Result<Report> {
    let frame_bytes = frame_bytes_of_a_bench_event()?;
    let raw_dir = base.join("raw");
    fs::create_dir_all(&raw_dir)?;

    // Both stores and the server stay up for the whole run, so the rounds can interleave: a
    // neighbour that takes the disk or the CPU for a while then costs every phase a round, not
    // one phase all of its rounds.
    let store_dir = base.join("in-process");
    let store = open_store(&store_dir).await?;
    let grpc_store = open_store(&base.join("grpc")).await?;
    let identity = Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32]));
    let checkpointer = Checkpointer::new(Arc::clone(&grpc_store), Arc::clone(&identity))
        .spawn(Duration::from_secs(1));
    let ledger = Arc::new(Ledger::new(Arc::clone(&grpc_store), identity));
    // The benchmark measures the ledger alone: the read models are not followed (a follower would
    // take CPU from the appends measured), so nothing here may call the feedback-loop reads.
    let services =
        Services::built_in(ledger, Arc::new(Projections::temporary()?), BENCH_TOKEN).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cairn_grpc::serve(
        listener,
        services,
        ServerLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let mut all = Rounds::default();
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        for file in [RawFile::Appending, RawFile::Preallocated] {
            for batch in RAW_BATCH_RECORDS {
                eprintln!("  raw: {file:?} file, one fdatasync per {batch} records");
                let dir = raw_dir.clone();
                let measured = tokio::task::spawn_blocking(move || {
                    raw_fsync_per_batch(&dir, file, frame_bytes, batch, phase)
                })
                .await??;
                match file {
                    RawFile::Appending => record(&mut all.raw_appending, batch, measured),
                    RawFile::Preallocated => record(&mut all.raw_preallocated, batch, measured),
                }
            }
        }
        for appenders in APPENDER_COUNTS {
            eprintln!("  in process: {appenders} appenders");
            let measured = store_appends(&store, appenders, round, phase).await?;
            record(&mut all.in_process, appenders, measured);
            // Outside the clock: the next phase must not pay for this one's deferred indexing
            // (the sustained phase below measures that cost).
            store.wait_indexed().await?;
        }
        for appenders in APPENDER_COUNTS {
            eprintln!("  gRPC: {appenders} appenders");
            let measured = grpc_appends(address, appenders, round, phase).await?;
            record(&mut all.grpc, appenders, measured);
            grpc_store.wait_indexed().await?;
        }
    }

    // The phases above stop the clock when the last append is acknowledged; the store's background
    // indexer then still owes sled its entries (it defers them while appends keep coming). This
    // phase keeps the clock running through close(), which indexes everything pending, so it
    // shows what a sustained load costs when the index has to keep up.
    eprintln!("in process: 64 appenders, including indexing");
    let sustained = {
        let store = open_store(&base.join("sustained")).await?;
        let appended = store_appends(&store, 64, 0, phase * 2).await?;
        let cpu_started = process_cpu_time()?;
        let closing = Instant::now();
        store.close().await;
        let close = closing.elapsed();
        let cpu =
            appended.cpu.unwrap_or_default() + process_cpu_time()?.saturating_sub(cpu_started);
        Measured {
            elapsed: appended.elapsed + close,
            cpu: Some(cpu),
            ..appended
        }
    };

    let _ = stop.send(());
    server.await?.context("the gRPC server failed")?;
    checkpointer.stop().await;
    grpc_store.close().await;
    store.close().await;
    drop(store);

    eprintln!("verification");
    let verification = {
        let dir = store_dir.clone();
        tokio::task::spawn_blocking(move || measure_verification(&dir)).await??
    };
    Ok(Report {
        quick,
        phase,
        rounds,
        dir: base.to_path_buf(),
        frame_bytes,
        raw_appending: best_of_each(all.raw_appending),
        raw_preallocated: best_of_each(all.raw_preallocated),
        in_process: best_of_each(all.in_process),
        grpc: best_of_each(all.grpc),
        sustained,
        verification,
    })
}

/// The bytes one bench event takes in a segment: frame header, envelope length, envelope and
/// sealed payload, as the store would build it.
fn frame_bytes_of_a_bench_event() -> Result<usize> {
    let records = cairn_store::build_records(
        &bench_stream(64, 63)?,
        Position(1_000_000),
        StreamVersion(100_000),
        cairn_store::now(),
        &[bench_event(64, 63, 100_000)],
    )?;
    let record = &records[0];
    Ok(12 + 4 + record.envelope_bytes.len() + record.payload.len())
}

/// How the raw ceilings write their file.
#[derive(Clone, Copy, Debug)]
enum RawFile {
    /// Append to a new file: every `fdatasync` also commits a new size and new blocks.
    Appending,
    /// Overwrite a file zero-filled and synced beforehand, wrapping around at its end.
    Preallocated,
}

/// Writes `batch` records of `frame_bytes` with one `write` and one `fdatasync`, for `phase`.
fn raw_fsync_per_batch(
    dir: &Path,
    mode: RawFile,
    frame_bytes: usize,
    batch: usize,
    phase: Duration,
) -> Result<Measured> {
    let path = dir.join(format!("raw-{mode:?}-{batch}.seg"));
    let file: File = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let bytes = vec![b'r'; frame_bytes * batch];
    let mut offset = 0u64;
    if let RawFile::Preallocated = mode {
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..RAW_PREALLOCATED_BYTES >> 20 {
            (&file).write_all(&zeros)?;
        }
        file.sync_all()?;
    }
    let mut write_and_sync = || -> Result<()> {
        match mode {
            RawFile::Appending => (&file).write_all(&bytes)?,
            RawFile::Preallocated => {
                if offset + bytes.len() as u64 > RAW_PREALLOCATED_BYTES {
                    offset = 0;
                }
                file.write_all_at(&bytes, offset)?;
                offset += bytes.len() as u64;
            }
        }
        file.sync_data()?;
        Ok(())
    };
    for _ in 0..10 {
        write_and_sync()?;
    }
    let mut latencies = Vec::new();
    let started = Instant::now();
    let cpu_started = process_cpu_time()?;
    while started.elapsed() < phase {
        let one = Instant::now();
        write_and_sync()?;
        latencies.push(one.elapsed());
    }
    let elapsed = started.elapsed();
    drop(file);
    fs::remove_file(&path)?;
    let records = (latencies.len() * batch) as u64;
    let cpu = process_cpu_time()?.saturating_sub(cpu_started);
    Ok(Measured::new(records, elapsed, latencies).with_cpu(cpu))
}

async fn open_store(dir: &Path) -> Result<Arc<EmbeddedStore>> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, EmbeddedOptions::default()))
        .await?
        .context("opening the embedded store")
}

fn bench_stream(appenders: usize, appender: usize) -> Result<StreamId> {
    Ok(StreamId::new(
        TenantId::new("bench")?,
        "load",
        format!("c{appenders}-a{appender}"),
    )?)
}

/// A unique event id for append `seq` of `appender` in the phase with `appenders` appenders
/// (`seq` carries the round in its high bits, see [`first_seq`]).
fn bench_event_id(appenders: usize, appender: usize, seq: u64) -> EventId {
    let mut id = [0u8; 16];
    id[0] = b'b';
    id[1] = appenders as u8;
    id[2..4].copy_from_slice(&(appender as u16).to_be_bytes());
    id[8..].copy_from_slice(&seq.to_be_bytes());
    EventId(id)
}

/// The first sequence number of a round: rounds never reuse an event id.
fn first_seq(round: u32) -> u64 {
    u64::from(round) << 40
}

fn clear_payload(seq: u64) -> Vec<u8> {
    let mut clear = format!("bench event {seq:020} ").into_bytes();
    clear.resize(PAYLOAD_BYTES, b'.');
    clear
}

fn bench_event(appenders: usize, appender: usize, seq: u64) -> NewEvent {
    NewEvent {
        event_id: bench_event_id(appenders, appender, seq),
        event_type: "BenchAppended".into(),
        event_schema_version: 1,
        actor: "bench".into(),
        causation_id: None,
        correlation_id: None,
        lineage: Vec::new(),
        data_class: DataClass::Public,
        key_id: None,
        policy_bundle_hash: Hash::ZERO,
        payload: SealedPayload {
            clear: clear_payload(seq),
            sealed: None,
        }
        .encode(),
    }
}

/// `appenders` tasks append one event at a time to their own streams for `phase`, after a
/// warm-up; the clock starts when every appender is warm.
async fn store_appends(
    store: &Arc<EmbeddedStore>,
    appenders: usize,
    round: u32,
    phase: Duration,
) -> Result<Measured> {
    let barrier = Arc::new(Barrier::new(appenders + 1));
    let tasks = spawn_appenders(
        std::slice::from_ref(store),
        appenders,
        round,
        phase,
        &barrier,
    );
    collect(tasks, &barrier).await
}

/// Spawns `appenders` tasks spread over `stores` (one store, or the nodes of one ledger), each
/// appending one event at a time to its own stream: a warm-up, then `barrier`, then appends for
/// `phase`. Each task returns the latency of every timed append.
fn spawn_appenders<S: EventStore>(
    stores: &[Arc<S>],
    appenders: usize,
    round: u32,
    phase: Duration,
    barrier: &Arc<Barrier>,
) -> Vec<tokio::task::JoinHandle<Result<Vec<Duration>>>> {
    (0..appenders)
        .map(|appender| {
            let store = Arc::clone(&stores[appender % stores.len()]);
            let barrier = Arc::clone(barrier);
            tokio::spawn(async move {
                let stream = bench_stream(appenders, appender)?;
                // Each append expects the version the previous one left (the first, any): on
                // JetStream that publishes with Nats-Expected-Last-Subject-Sequence, as the raw
                // publishers do.
                let mut expected = ExpectedVersion::Any;
                let mut append = async |seq: u64| {
                    let result = store
                        .append(
                            stream.clone(),
                            expected,
                            vec![bench_event(appenders, appender, seq)],
                        )
                        .await?;
                    expected = ExpectedVersion::Exact(result.last_version);
                    anyhow::Ok(result)
                };
                let mut seq = first_seq(round);
                while seq < first_seq(round) + WARMUP_APPENDS_PER_APPENDER {
                    append(seq).await?;
                    seq += 1;
                }
                barrier.wait().await;
                let deadline = Instant::now() + phase;
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let one = Instant::now();
                    let result = append(seq).await?;
                    anyhow::ensure!(!result.deduplicated, "an append was deduplicated");
                    latencies.push(one.elapsed());
                    seq += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect()
}

/// Like [`store_appends`], over gRPC: each appender on its own connection.
async fn grpc_appends(
    address: SocketAddr,
    appenders: usize,
    round: u32,
    phase: Duration,
) -> Result<Measured> {
    let barrier = Arc::new(Barrier::new(appenders + 1));
    let mut tasks = Vec::new();
    for appender in 0..appenders {
        let barrier = Arc::clone(&barrier);
        let channel = Channel::from_shared(format!("http://{address}"))?
            .connect()
            .await?;
        let mut client = LedgerServiceClient::with_interceptor(
            channel,
            BearerToken::new(BENCH_TOKEN).map_err(anyhow::Error::msg)?,
        );
        tasks.push(tokio::spawn(async move {
            let stream = proto::StreamRef {
                tenant: "bench".into(),
                aggregate_type: "grpc".into(),
                aggregate_id: format!("c{appenders}-a{appender}"),
            };
            let request = |seq: u64| proto::AppendRequest {
                stream: Some(stream.clone()),
                expected: None,
                events: vec![proto::EventInput {
                    event_id: bench_event_id(appenders, appender, seq).0.to_vec(),
                    event_type: "BenchAppended".into(),
                    event_schema_version: 1,
                    payload: clear_payload(seq),
                    ..Default::default()
                }],
                actor: "bench".into(),
            };
            let mut seq = first_seq(round);
            while seq < first_seq(round) + WARMUP_APPENDS_PER_APPENDER {
                client.append(request(seq)).await?;
                seq += 1;
            }
            barrier.wait().await;
            let deadline = Instant::now() + phase;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let request = request(seq);
                let one = Instant::now();
                client.append(request).await?;
                latencies.push(one.elapsed());
                seq += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    collect(tasks, &barrier).await
}

/// Starts the clock once every appender is warm, and stops it when the last one is done.
async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Result<Vec<Duration>>>>,
    barrier: &Barrier,
) -> Result<Measured> {
    barrier.wait().await;
    let started = Instant::now();
    let cpu_started = process_cpu_time()?;
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu_time()?.saturating_sub(cpu_started);
    let records = latencies.len() as u64;
    Ok(Measured::new(records, elapsed, latencies).with_cpu(cpu))
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (in clock ticks of
/// 1/100 s, Linux's USER_HZ: fine-grained enough for phases of seconds).
fn process_cpu_time() -> Result<Duration> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/self/stat: {stat}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .ok_or_else(|| anyhow::anyhow!("short /proc/self/stat: {stat}"))?
        .iter()
        .map(|field| field.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// `verify_segments` over the in-process ledger, beside blake3 over the same bytes: read and
/// hashed whole, and hashed the way a verifier must (per record: the frame checksum, the leaf and
/// the payload commitment).
fn measure_verification(dir: &Path) -> Result<Verification> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir.join("segments"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "seg") {
            files.push(path);
        }
    }
    files.sort();
    // Warm the page cache for all three, so none pays for the disk; and measure the ledger's
    // bytes: each file up to the end of its last frame (a preallocated segment's zero padding
    // is not ledger data, though a verifier may have to read it).
    let mut bytes = 0u64;
    let mut file_bytes = 0u64;
    for file in &files {
        let contents = fs::read(file)?;
        file_bytes += contents.len() as u64;
        bytes += frames_end(&contents) as u64;
    }

    let started = Instant::now();
    let report = verify_segments(dir, |_| {}).context("verify_segments")?;
    let verify = started.elapsed();

    let started = Instant::now();
    let mut digest = [0u8; 32];
    for file in &files {
        let contents = fs::read(file)?;
        let hash = blake3::hash(&contents[..frames_end(&contents)]);
        digest
            .iter_mut()
            .zip(hash.as_bytes())
            .for_each(|(d, h)| *d ^= h);
    }
    let blake3_files = started.elapsed();
    std::hint::black_box(digest);

    let started = Instant::now();
    for file in &files {
        let contents = fs::read(file)?;
        hash_per_record(&contents, &mut digest);
    }
    let blake3_per_record = started.elapsed();
    std::hint::black_box(digest);

    Ok(Verification {
        records: report.records,
        bytes,
        file_bytes,
        verify,
        blake3_files,
        blake3_per_record,
    })
}

/// The frames of a segment file: (offset of the frame, body range), up to the first zero length
/// (padding) or the end of the file.
fn frames(segment: &[u8]) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut frames = Vec::new();
    let mut at = 20;
    while at + 12 <= segment.len() {
        let len = u32::from_le_bytes(segment[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len < 4 || at + 12 + len > segment.len() {
            break;
        }
        frames.push((at, at + 12..at + 12 + len));
        at += 12 + len;
    }
    frames
}

/// Where the last whole frame of a segment file ends.
fn frames_end(segment: &[u8]) -> usize {
    frames(segment)
        .last()
        .map_or(20.min(segment.len()), |(_, body)| body.end)
}

/// blake3 over each frame body, its envelope and its payload, walking the segment format.
fn hash_per_record(segment: &[u8], digest: &mut [u8; 32]) {
    for (_, body) in frames(segment) {
        let body = &segment[body];
        let envelope_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
        for part in [body, &body[4..4 + envelope_len], &body[4 + envelope_len..]] {
            let hash = blake3::hash(part);
            digest[0] ^= hash.as_bytes()[0];
        }
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("nproc {cores}, {cpu}, Linux {kernel}")
}

/// The file system and device `dir` is on, from /proc/mounts (the longest matching mount point).
fn file_system(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    fs::read_to_string("/proc/mounts")
        .ok()
        .and_then(|mounts| {
            mounts
                .lines()
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    (fields.len() >= 3 && dir.starts_with(fields[1])).then(|| {
                        (
                            fields[1].len(),
                            format!("{} on {} ({})", fields[2], fields[0], fields[1]),
                        )
                    })
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, text)| text)
        })
        .unwrap_or_else(|| "unknown".into())
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

fn rate(value: f64) -> String {
    if value >= 100.0 {
        let whole = value.round() as u64;
        let text = whole.to_string();
        let mut grouped = String::new();
        for (index, digit) in text.chars().enumerate() {
            if index > 0 && (text.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        grouped
    } else {
        format!("{value:.1}")
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "## cairn-bench{}\n",
            if self.quick {
                " --quick (smoke run, not a measurement)"
            } else {
                ""
            }
        )?;
        writeln!(f, "- machine: {}", machine())?;
        writeln!(
            f,
            "- disk: {} (`{}`)",
            file_system(&self.dir),
            self.dir.display()
        )?;
        writeln!(
            f,
            "- each figure: the best of {} round(s) of {:.1} s; one {PAYLOAD_BYTES}-byte event per append ({} bytes in a segment)\n",
            self.rounds,
            self.phase.as_secs_f64(),
            self.frame_bytes
        )?;
        writeln!(
            f,
            "| durable appends | appenders | records/s | p50 | p99 | CPU per record (all threads) |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|")?;
        let row = |f: &mut std::fmt::Formatter<'_>, what: &str, who: String, m: &Measured| {
            writeln!(
                f,
                "| {what} | {who} | {} | {} | {} | {} |",
                rate(m.records_per_second()),
                micros(m.percentile(0.50)),
                micros(m.percentile(0.99)),
                m.cpu_micros_per_record()
                    .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.1} µs"))
            )
        };
        for (file, list) in [
            ("appending to a file", &self.raw_appending),
            ("overwriting a preallocated file", &self.raw_preallocated),
        ] {
            for (batch, measured) in list {
                let what = if *batch == 1 {
                    format!("raw: write + fdatasync per record, {file}")
                } else {
                    format!("raw: one fdatasync per {batch} records, {file} (latency per batch)")
                };
                row(f, &what, "-".into(), measured)?;
            }
        }
        for (appenders, measured) in &self.in_process {
            row(
                f,
                "EmbeddedStore, in process",
                appenders.to_string(),
                measured,
            )?;
        }
        row(
            f,
            "EmbeddedStore, in process, clock stopped after close() indexed everything",
            "64".into(),
            &self.sustained,
        )?;
        for (appenders, measured) in &self.grpc {
            row(f, "gRPC server, loopback", appenders.to_string(), measured)?;
        }
        let v = &self.verification;
        let mb = v.bytes as f64 / 1e6;
        writeln!(f)?;
        writeln!(
            f,
            "| verification of {} records, {:.1} MB of frames ({:.1} MB of files) | MB/s | records/s |",
            v.records,
            mb,
            v.file_bytes as f64 / 1e6
        )?;
        writeln!(f, "|---|---:|---:|")?;
        for (what, duration) in [
            ("verify_segments", v.verify),
            ("raw blake3, whole files (read + hash)", v.blake3_files),
            (
                "blake3 per record: frame, envelope, payload (read + hash)",
                v.blake3_per_record,
            ),
        ] {
            let seconds = duration.as_secs_f64();
            writeln!(
                f,
                "| {what} | {:.0} | {} |",
                mb / seconds,
                rate(v.records as f64 / seconds)
            )?;
        }

        let find = |list: &[(usize, Measured)], key: usize| {
            list.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, m)| m.records_per_second())
                .unwrap_or(0.0)
        };
        let appending = |records| find(&self.raw_appending, records);
        let preallocated = |records| find(&self.raw_preallocated, records);
        let ratios = [
            (
                "in process, 64 appenders / raw batches of 64 (appending)",
                find(&self.in_process, 64) / appending(64),
                0.5,
            ),
            (
                "in process, 1 appender / raw fdatasync per record (appending)",
                find(&self.in_process, 1) / appending(1),
                0.8,
            ),
            (
                "verify_segments / raw blake3 whole files",
                v.blake3_files.as_secs_f64() / v.verify.as_secs_f64(),
                0.5,
            ),
            (
                "in process, 64 appenders / raw batches of 64 (preallocated)",
                find(&self.in_process, 64) / preallocated(64),
                f64::NAN,
            ),
            (
                "in process, 8 appenders / raw batches of 8 (preallocated)",
                find(&self.in_process, 8) / preallocated(8),
                f64::NAN,
            ),
            (
                "in process, 1 appender / raw fdatasync per record (preallocated)",
                find(&self.in_process, 1) / preallocated(1),
                f64::NAN,
            ),
            (
                "gRPC / in process, 1 appender",
                find(&self.grpc, 1) / find(&self.in_process, 1),
                f64::NAN,
            ),
            (
                "gRPC / in process, 64 appenders",
                find(&self.grpc, 64) / find(&self.in_process, 64),
                f64::NAN,
            ),
            (
                "verify_segments / blake3 per record (3 hashes per record)",
                v.blake3_per_record.as_secs_f64() / v.verify.as_secs_f64(),
                f64::NAN,
            ),
        ];
        writeln!(f)?;
        writeln!(f, "| ratio | value | aim | met |")?;
        writeln!(f, "|---|---:|---:|---|")?;
        for (what, value, aim) in ratios {
            if aim.is_nan() {
                writeln!(f, "| {what} | {value:.2} | - | - |")?;
            } else {
                writeln!(
                    f,
                    "| {what} | {value:.2} | >= {aim} | {} |",
                    if value >= aim { "yes" } else { "no" }
                )?;
            }
        }
        let in_process_ops: u64 = self.in_process.iter().map(|(_, m)| m.operations).sum();
        let grpc_ops: u64 = self.grpc.iter().map(|(_, m)| m.operations).sum();
        writeln!(
            f,
            "\n{in_process_ops} in-process and {grpc_ops} gRPC appends timed."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let latencies = (1..=100).map(Duration::from_micros).collect();
        let measured = Measured::new(100, Duration::from_secs(2), latencies);
        assert_eq!(measured.percentile(0.50), Duration::from_micros(50));
        assert_eq!(measured.percentile(0.99), Duration::from_micros(99));
        assert_eq!(measured.records_per_second(), 50.0);
        let empty = Measured::new(0, Duration::from_secs(1), Vec::new());
        assert_eq!(empty.percentile(0.99), Duration::ZERO);
    }

    #[test]
    fn rates_are_grouped_by_thousands() {
        assert_eq!(rate(1_234_567.4), "1,234,567");
        assert_eq!(rate(100.0), "100");
        assert_eq!(rate(12.34), "12.3");
    }

    #[test]
    fn frames_stop_at_padding() {
        let mut segment = vec![0u8; 20];
        for (envelope, payload) in [(&b"env-one"[..], &b"payload"[..]), (b"e2", b"")] {
            let body_len = 4 + envelope.len() + payload.len();
            segment.extend_from_slice(&(body_len as u32).to_le_bytes());
            segment.extend_from_slice(&[0; 8]);
            segment.extend_from_slice(&(envelope.len() as u32).to_le_bytes());
            segment.extend_from_slice(envelope);
            segment.extend_from_slice(payload);
        }
        let end = segment.len();
        segment.resize(end + 4096, 0);
        let found = frames(&segment);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].1, 32..50);
        assert_eq!(frames_end(&segment), end);
        let mut digest = [0u8; 32];
        hash_per_record(&segment, &mut digest);
        assert_eq!(frames_end(&segment[..30]), 20, "a cut frame is not a frame");
    }
}
