//! `cairn-bench --jetstream`: appends per second through cairn on JetStream beside raw async-nats
//! publishes of the same bytes with the same headers to the same kind of stream, measured in one
//! run (issue 5).
//!
//! Two nats-servers run side by side for the whole run, on loopback with their store in the
//! system's temporary directory: one with the default durability (the server flushes its files
//! every two minutes; an acknowledgement means "in the server's page cache"), one with
//! `jetstream { sync_interval: always }` (an fsync before every acknowledgement). Against each,
//! every round measures, interleaved:
//!
//! - **raw**: `appenders` publishers on one async-nats connection, each on its own subject of a
//!   stream configured like cairn's record stream (file storage, deny delete and purge, atomic
//!   publish allowed), each publishing the body cairn would publish for the event
//!   ([`wire::encode`]) with `Nats-Msg-Id` (the event id in hex) and
//!   `Nats-Expected-Last-Subject-Sequence` (its own last sequence), and awaiting the ack before
//!   the next: what a cairn appender does;
//! - **raw pipelined**: one publisher with [`PIPELINE_WINDOW`] publishes in flight, each slot on
//!   its own subject chaining its own last sequence: the ceiling of one connection;
//! - **cairn**: [`JetStreamStore::append`] of one event per append, each appender on its own
//!   ledger stream, with one node, and with several nodes (stores in this process on the same
//!   stream, appenders spread over them); each node applies its own appends from the
//!   acknowledgement and fetches (or, while other nodes write much, consumes) the records of the
//!   others;
//! - **raw + consumer**: the raw publishers, plus an ordered consumer of the stream (on the same
//!   connection, as a node had in that design, and for comparison on a connection of its own),
//!   each publisher waiting after its ack until the consumer has received its message: the
//!   previous design of the backend (every node consumes the whole stream; an append waits until
//!   its node's consumer has received it) without any of cairn's code, kept for comparison.
//!
//! Every phase runs on a fresh stream, deleted afterwards, so every phase starts from the same
//! empty stream and node state. CPU is counted for this process (appenders, client, cairn nodes)
//! and for the nats-server process apart.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use cairn_ledger::Position;
use cairn_store_jetstream::testing::{NatsServer, ServerOptions, free_port};
use cairn_store_jetstream::{JetStreamOptions, JetStreamStore, wire};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Barrier, oneshot, watch};

use crate::{
    APPENDER_COUNTS, Measured, WARMUP_APPENDS_PER_APPENDER, bench_event, bench_stream, best,
    first_seq, machine, micros, process_cpu_time, rate,
};

/// Publishes in flight of the raw pipelined publisher.
const PIPELINE_WINDOW: usize = 256;
/// The aim of issue 5: cairn's appends at least this share of the raw publish rate.
const AIM: f64 = 0.7;

/// A durability setting of the server.
struct Setting {
    label: &'static str,
    server: NatsServer,
    /// The server's process, for its CPU time.
    pid: Option<u32>,
    client: async_nats::Client,
    js: jetstream::Context,
}

/// What one phase measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Publishers each awaiting its ack before the next.
    Raw(usize),
    /// One publisher, this many publishes in flight.
    RawPipelined(usize),
    /// Like `Raw`, plus an ordered consumer of the stream on the same connection (as a node had
    /// in the previous design of the backend), each publisher waiting after its ack until the
    /// consumer has received its message: the transport's share of that design, without cairn's
    /// code.
    RawConsumed(usize),
    /// Like `RawConsumed`, the consumer on a connection of its own.
    RawConsumedApart(usize),
    /// `EventStore::append` on this many nodes, by this many appenders.
    Cairn { nodes: usize, appenders: usize },
}

impl Phase {
    fn tag(self) -> String {
        match self {
            Phase::Raw(appenders) => format!("RAW_{appenders}"),
            Phase::RawPipelined(window) => format!("RAWP_{window}"),
            Phase::RawConsumed(appenders) => format!("RAWC_{appenders}"),
            Phase::RawConsumedApart(appenders) => format!("RAWCA_{appenders}"),
            Phase::Cairn { nodes, appenders } => format!("CAIRN_{nodes}N_{appenders}"),
        }
    }
}

/// One round of one phase.
#[derive(Clone, Debug)]
struct Sample {
    measured: Measured,
    /// CPU time of the nats-server process during the phase.
    server_cpu: Option<Duration>,
}

impl Sample {
    fn server_cpu_micros_per_record(&self) -> Option<f64> {
        self.server_cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / self.measured.records.max(1) as f64)
    }
}

/// Everything one run measured.
pub(crate) struct Report {
    quick: bool,
    phase: Duration,
    rounds: u32,
    nodes: usize,
    server_version: String,
    body_bytes: usize,
    store_fs: String,
    /// (setting label, phase, best sample).
    results: Vec<(&'static str, Phase, Sample)>,
}

pub(crate) async fn run(
    phase: Duration,
    rounds: u32,
    quick: bool,
    nodes: usize,
    only: Option<&str>,
) -> Result<Report> {
    let nodes = nodes.max(2);
    let mut settings = Vec::new();
    for (label, sync_always) in [("default", false), ("sync_interval: always", true)] {
        let name = if sync_always {
            "bench-sync"
        } else {
            "bench-default"
        };
        let server = tokio::task::spawn_blocking(move || {
            NatsServer::start_with(
                name,
                free_port(),
                ServerOptions {
                    sync_always,
                    ..ServerOptions::default()
                },
            )
        })
        .await?;
        let pid = server_pid(&server);
        let client = async_nats::ConnectOptions::new()
            .name("cairn-bench raw")
            .connect(server.url())
            .await
            .with_context(|| format!("connecting to {}", server.url()))?;
        let js = jetstream::new(client.clone());
        settings.push(Setting {
            label,
            server,
            pid,
            client,
            js,
        });
    }
    let server_version = settings[0].client.server_info().version;
    let store_fs = crate::file_system(&settings[0].server.store_dir());
    let body_bytes = wire::encode(&bench_stream(64, 63)?, &bench_event(64, 63, 1 << 40)).len();

    let mut phases = Vec::new();
    for appenders in APPENDER_COUNTS {
        phases.push(Phase::Raw(appenders));
    }
    phases.push(Phase::RawPipelined(PIPELINE_WINDOW));
    for appenders in APPENDER_COUNTS {
        phases.push(Phase::RawConsumed(appenders));
    }
    phases.push(Phase::RawConsumedApart(64));
    for appenders in APPENDER_COUNTS {
        phases.push(Phase::Cairn {
            nodes: 1,
            appenders,
        });
    }
    for appenders in APPENDER_COUNTS {
        phases.push(Phase::Cairn { nodes, appenders });
    }
    if let Some(only) = only {
        phases.retain(|phase| only.split(',').any(|part| phase.tag().contains(part)));
    }

    let mut all: Vec<(usize, Phase, Vec<Sample>)> = Vec::new();
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        for (index, setting) in settings.iter().enumerate() {
            for &phase_kind in &phases {
                eprintln!("  {}: {phase_kind:?}", setting.label);
                let stream_name = format!("BENCH_R{round}_S{index}_{}", phase_kind.tag());
                let sample = run_phase(setting, &stream_name, phase_kind, round, phase).await?;
                match all
                    .iter_mut()
                    .find(|(s, p, _)| *s == index && *p == phase_kind)
                {
                    Some((_, _, samples)) => samples.push(sample),
                    None => all.push((index, phase_kind, vec![sample])),
                }
            }
        }
    }

    for setting in &settings {
        setting.client.flush().await.ok();
    }
    let results = all
        .into_iter()
        .map(|(index, phase, samples)| (settings[index].label, phase, best_sample(samples)))
        .collect();
    tokio::task::spawn_blocking(move || drop(settings)).await?;
    Ok(Report {
        quick,
        phase,
        rounds,
        nodes,
        server_version,
        body_bytes,
        store_fs,
        results,
    })
}

fn best_sample(samples: Vec<Sample>) -> Sample {
    let measured = best(samples.iter().map(|s| s.measured.clone()).collect());
    samples
        .into_iter()
        .find(|s| s.measured.records == measured.records && s.measured.elapsed == measured.elapsed)
        .expect("the best is one of them")
}

/// Runs one phase on a fresh stream named `name`, then deletes the stream(s).
async fn run_phase(
    setting: &Setting,
    name: &str,
    phase_kind: Phase,
    round: u32,
    phase: Duration,
) -> Result<Sample> {
    match phase_kind {
        Phase::Raw(appenders)
        | Phase::RawPipelined(appenders)
        | Phase::RawConsumed(appenders)
        | Phase::RawConsumedApart(appenders) => {
            setting
                .js
                .create_stream(raw_stream_config(name))
                .await
                .with_context(|| format!("creating stream {name}"))?;
            let sample = match phase_kind {
                Phase::Raw(_) => raw_appends(setting, name, appenders, round, phase, None).await,
                Phase::RawConsumed(_) => {
                    let consumer = Consumer::SameConnection;
                    raw_appends(setting, name, appenders, round, phase, Some(consumer)).await
                }
                Phase::RawConsumedApart(_) => {
                    let consumer = Consumer::OwnConnection;
                    raw_appends(setting, name, appenders, round, phase, Some(consumer)).await
                }
                _ => raw_pipelined(setting, name, appenders, round, phase).await,
            };
            delete_streams(setting, &[name.to_owned()]).await;
            sample
        }
        Phase::Cairn { nodes, appenders } => {
            let stores = open_nodes(setting, name, nodes).await?;
            let sample = cairn_appends(setting, &stores, appenders, round, phase).await;
            close_nodes(setting, name, stores).await;
            sample
        }
    }
}

/// A stream configured exactly like cairn's record stream, under another name and subject
/// prefix.
fn raw_stream_config(name: &str) -> stream::Config {
    stream::Config {
        description: Some("cairn-bench raw publishes".into()),
        ..cairn_store_jetstream::record_stream_config(&JetStreamOptions {
            stream: name.to_owned(),
            ..JetStreamOptions::default()
        })
    }
}

async fn open_nodes(
    setting: &Setting,
    name: &str,
    nodes: usize,
) -> Result<Vec<Arc<JetStreamStore>>> {
    let mut stores = Vec::new();
    for _ in 0..nodes {
        stores.push(
            JetStreamStore::open(JetStreamOptions {
                urls: setting.server.url(),
                stream: name.to_owned(),
                ..JetStreamOptions::default()
            })
            .await
            .with_context(|| format!("opening a JetStreamStore on {name}"))?,
        );
    }
    Ok(stores)
}

async fn close_nodes(setting: &Setting, name: &str, stores: Vec<Arc<JetStreamStore>>) {
    for store in &stores {
        store.close().await;
    }
    drop(stores);
    delete_streams(
        setting,
        &[
            name.to_owned(),
            format!("{name}_CHECKPOINTS"),
            format!("KV_{name}_KEYS"),
        ],
    )
    .await;
}

/// Deletes a phase's streams, so the server's files stay small and the next phase starts alike.
async fn delete_streams(setting: &Setting, names: &[String]) {
    for name in names {
        if let Err(error) = setting.js.delete_stream(name).await {
            eprintln!("    (could not delete stream {name}: {error})");
        }
    }
}

/// The headers cairn publishes one event with (see `JetStreamStore::publish`).
fn headers(event_id: &cairn_ledger::EventId, last_subject_sequence: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        hex::encode(event_id.0).as_str(),
    );
    headers.insert(
        async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        last_subject_sequence.to_string().as_str(),
    );
    headers
}

/// One publish as cairn makes it: the event's body, on its stream's subject, with cairn's
/// headers; returns the ack's stream sequence.
async fn publish_like_cairn(
    js: &jetstream::Context,
    prefix: &str,
    appenders: usize,
    appender: usize,
    seq: u64,
    last_subject_sequence: u64,
) -> Result<u64> {
    let stream = bench_stream(appenders, appender)?;
    let event = bench_event(appenders, appender, seq);
    let body = Bytes::from(wire::encode(&stream, &event));
    let ack = js
        .publish_with_headers(
            wire::subject(prefix, &stream),
            headers(&event.event_id, last_subject_sequence),
            body,
        )
        .await?
        .await?;
    anyhow::ensure!(!ack.duplicate, "a raw publish was taken for a duplicate");
    Ok(ack.sequence)
}

/// Where the raw phases' ordered consumer runs.
#[derive(Clone, Copy, Debug)]
enum Consumer {
    /// On the publishers' connection, as a node of the previous design consumed on its one
    /// connection.
    SameConnection,
    /// On a connection of its own.
    OwnConnection,
}

/// `appenders` publishers on the raw connection, each on its own subject, each awaiting its ack;
/// with a `consumer`, also until an ordered consumer of the stream has received the message.
async fn raw_appends(
    setting: &Setting,
    stream_name: &str,
    appenders: usize,
    round: u32,
    phase: Duration,
    consumer: Option<Consumer>,
) -> Result<Sample> {
    let consumer = if let Some(place) = consumer {
        let (head, head_receiver) = watch::channel(Position::ZERO);
        let (js, client) = match place {
            Consumer::SameConnection => (setting.js.clone(), None),
            Consumer::OwnConnection => {
                let client = async_nats::ConnectOptions::new()
                    .name("cairn-bench consumer")
                    .connect(setting.server.url())
                    .await?;
                (jetstream::new(client.clone()), Some(client))
            }
        };
        let consumer = js
            .get_stream_no_info(stream_name)
            .await?
            .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
            .await?;
        let mut messages = consumer.messages().await?;
        let task = tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let message = message?;
                // What cairn's consumer reads of each message besides its body.
                let info = message.info().map_err(anyhow::Error::msg)?;
                std::hint::black_box(info.published);
                head.send_replace(Position(info.stream_sequence));
            }
            anyhow::Ok(())
        });
        let (waker, waker_task) = OneWaker::start(head_receiver);
        Some((waker, waker_task, task, client))
    } else {
        None
    };
    let barrier = Arc::new(Barrier::new(appenders + 1));
    let mut tasks = Vec::new();
    for appender in 0..appenders {
        let js = setting.js.clone();
        let prefix = stream_name.to_owned();
        let barrier = Arc::clone(&barrier);
        let waker = consumer.as_ref().map(|(waker, ..)| Arc::clone(waker));
        tasks.push(tokio::spawn(async move {
            let publish = |seq: u64, last: u64| {
                let js = js.clone();
                let prefix = prefix.clone();
                let waker = waker.clone();
                async move {
                    let sequence =
                        publish_like_cairn(&js, &prefix, appenders, appender, seq, last).await?;
                    if let Some(waker) = waker {
                        waker.wait(Position(sequence)).await?;
                    }
                    anyhow::Ok(sequence)
                }
            };
            let mut last = 0;
            let mut seq = first_seq(round);
            while seq < first_seq(round) + WARMUP_APPENDS_PER_APPENDER {
                last = publish(seq, last).await?;
                seq += 1;
            }
            barrier.wait().await;
            let deadline = Instant::now() + phase;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let one = Instant::now();
                last = publish(seq, last).await?;
                latencies.push(one.elapsed());
                seq += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let sample = collect(setting, tasks, &barrier).await;
    if let Some((_, waker_task, task, client)) = consumer {
        waker_task.abort();
        task.abort();
        if let Some(client) = client {
            let _ = client.drain().await;
        }
    }
    sample
}

/// One publisher keeping `window` publishes in flight, each slot on its own subject chaining its
/// own last sequence (so the headers are those of an appender).
async fn raw_pipelined(
    setting: &Setting,
    prefix: &str,
    window: usize,
    round: u32,
    phase: Duration,
) -> Result<Sample> {
    let barrier = Arc::new(Barrier::new(2));
    let js = setting.js.clone();
    let prefix = prefix.to_owned();
    let task_barrier = Arc::clone(&barrier);
    let task = tokio::spawn(async move {
        let mut last = vec![0u64; window];
        let mut next_seq = vec![first_seq(round); window];
        // Sends slot's next publish and returns the future of its ack.
        let send = |slot: usize, seq: u64, last: u64| {
            let js = js.clone();
            let prefix = prefix.clone();
            async move {
                let stream = bench_stream(window, slot)?;
                let event = bench_event(window, slot, seq);
                let body = Bytes::from(wire::encode(&stream, &event));
                let ack = js
                    .publish_with_headers(
                        wire::subject(&prefix, &stream),
                        headers(&event.event_id, last),
                        body,
                    )
                    .await?;
                anyhow::Ok(ack)
            }
        };
        let mut latencies = Vec::new();
        for timed in [false, true] {
            let deadline = Instant::now() + phase;
            let warm_until = first_seq(round) + WARMUP_APPENDS_PER_APPENDER;
            let mut in_flight = FuturesUnordered::new();
            for slot in 0..window {
                let ack = send(slot, next_seq[slot], last[slot]).await?;
                in_flight.push(acked(slot, Instant::now(), ack));
            }
            while let Some((slot, sent, ack)) = in_flight.next().await {
                let ack = ack?;
                anyhow::ensure!(!ack.duplicate, "a raw publish was taken for a duplicate");
                last[slot] = ack.sequence;
                next_seq[slot] += 1;
                if timed {
                    latencies.push(sent.elapsed());
                }
                let more = if timed {
                    Instant::now() < deadline
                } else {
                    next_seq[slot] < warm_until
                };
                if more {
                    let ack = send(slot, next_seq[slot], last[slot]).await?;
                    in_flight.push(acked(slot, Instant::now(), ack));
                }
            }
            if !timed {
                task_barrier.wait().await;
            }
        }
        anyhow::Ok(latencies)
    });
    collect(setting, vec![task], &barrier).await
}

/// The ack of a pipelined publish, with its slot and when it was sent.
async fn acked(
    slot: usize,
    sent: Instant,
    ack: jetstream::context::PublishAckFuture,
) -> (
    usize,
    Instant,
    Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
) {
    (slot, sent, ack.await)
}

/// cairn's appends: `appenders` tasks spread over the nodes, each on its own ledger stream.
async fn cairn_appends(
    setting: &Setting,
    stores: &[Arc<JetStreamStore>],
    appenders: usize,
    round: u32,
    phase: Duration,
) -> Result<Sample> {
    let barrier = Arc::new(Barrier::new(appenders + 1));
    let tasks = crate::spawn_appenders(stores, appenders, round, phase, &barrier);
    collect(setting, tasks, &barrier).await
}

/// Completes one-shot waiters when the raw phases' consumer has received their position: one
/// task wakes per change of the consumer's head, and each waiter once.
struct OneWaker {
    waiters: std::sync::Mutex<BTreeMap<u64, Vec<oneshot::Sender<()>>>>,
    head: watch::Receiver<Position>,
}

impl OneWaker {
    fn start(head: watch::Receiver<Position>) -> (Arc<OneWaker>, tokio::task::JoinHandle<()>) {
        let waker = Arc::new(OneWaker {
            waiters: std::sync::Mutex::new(BTreeMap::new()),
            head: head.clone(),
        });
        let mut head = head;
        let task = tokio::spawn({
            let waker = Arc::clone(&waker);
            async move {
                while head.changed().await.is_ok() {
                    let reached = head.borrow_and_update().0;
                    let done = {
                        let mut waiters = waker.waiters.lock().expect("not poisoned");
                        let rest = waiters.split_off(&(reached + 1));
                        std::mem::replace(&mut *waiters, rest)
                    };
                    for sender in done.into_values().flatten() {
                        let _ = sender.send(());
                    }
                }
            }
        });
        (waker, task)
    }

    async fn wait(&self, position: Position) -> Result<()> {
        let (sender, receiver) = oneshot::channel();
        self.waiters
            .lock()
            .expect("not poisoned")
            .entry(position.0)
            .or_default()
            .push(sender);
        if *self.head.borrow() >= position {
            return Ok(());
        }
        tokio::time::timeout(Duration::from_secs(30), receiver)
            .await
            .context("the consumer did not receive the message within 30 s")?
            .context("the consumer's head watcher stopped")
    }
}

/// Starts the clock once every task is warm and stops it when the last one is done; counts this
/// process's and the server's CPU time meanwhile.
async fn collect(
    setting: &Setting,
    tasks: Vec<tokio::task::JoinHandle<Result<Vec<Duration>>>>,
    barrier: &Barrier,
) -> Result<Sample> {
    barrier.wait().await;
    let started = Instant::now();
    let cpu_started = process_cpu_time()?;
    let server_started = setting.pid.and_then(cpu_of);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu_time()?.saturating_sub(cpu_started);
    let server_cpu = cpu_since(setting.pid, server_started);
    let records = latencies.len() as u64;
    Ok(Sample {
        measured: Measured::new(records, elapsed, latencies).with_cpu(cpu),
        server_cpu,
    })
}

fn cpu_since(pid: Option<u32>, started: Option<Duration>) -> Option<Duration> {
    Some(cpu_of(pid?)?.saturating_sub(started?))
}

/// The nats-server child of this process that runs `server`'s configuration.
fn server_pid(server: &NatsServer) -> Option<u32> {
    let config = server.store_dir().parent()?.join("server.conf");
    let config = config.to_string_lossy().into_owned();
    let own = std::process::id();
    fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let parent: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
        (parent == own && cmdline.contains(&config)).then_some(pid)
    })
}

/// User plus system CPU time of process `pid` so far.
fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)?
        .iter()
        .map(|field| field.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(Duration::from_millis(ticks * 10))
}

impl Report {
    fn find(&self, setting: &str, phase: Phase) -> Option<&Sample> {
        self.results
            .iter()
            .find(|(s, p, _)| *s == setting && *p == phase)
            .map(|(_, _, sample)| sample)
    }

    fn rate_of(&self, setting: &str, phase: Phase) -> f64 {
        self.find(setting, phase)
            .map_or(0.0, |sample| sample.measured.records_per_second())
    }

    fn settings(&self) -> Vec<&'static str> {
        let mut settings: Vec<&'static str> = Vec::new();
        for (setting, _, _) in &self.results {
            if !settings.contains(setting) {
                settings.push(setting);
            }
        }
        settings
    }
}

fn cpu_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.1} µs"))
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "## cairn-bench --jetstream{}\n",
            if self.quick {
                " --quick (smoke run, not a measurement)"
            } else {
                ""
            }
        )?;
        writeln!(f, "- machine: {}", machine())?;
        writeln!(
            f,
            "- nats-server {} on loopback, its store on {}",
            self.server_version, self.store_fs
        )?;
        writeln!(
            f,
            "- each figure: the best of {} round(s) of {:.1} s; one event per append, a {}-byte \
             body per message (`wire::encode`), headers Nats-Msg-Id and \
             Nats-Expected-Last-Subject-Sequence; several nodes = {} JetStreamStores in this \
             process on one stream\n",
            self.rounds,
            self.phase.as_secs_f64(),
            self.body_bytes,
            self.nodes
        )?;
        writeln!(
            f,
            "| durability | what | appenders | appends/s | p50 | p99 | CPU per append, bench process | CPU per append, nats-server | ÷ raw, same appenders |"
        )?;
        writeln!(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
        for setting in self.settings() {
            let mut rows: Vec<(String, usize, Phase, Option<f64>)> = Vec::new();
            for appenders in APPENDER_COUNTS {
                rows.push((
                    "raw publish, awaiting each ack".into(),
                    appenders,
                    Phase::Raw(appenders),
                    None,
                ));
            }
            rows.push((
                format!("raw publish, pipelined ({PIPELINE_WINDOW} in flight, one publisher)"),
                PIPELINE_WINDOW,
                Phase::RawPipelined(PIPELINE_WINDOW),
                None,
            ));
            for appenders in APPENDER_COUNTS {
                let raw = self.rate_of(setting, Phase::Raw(appenders));
                let consumed = self.rate_of(setting, Phase::RawConsumed(appenders));
                rows.push((
                    "raw publish + wait until an ordered consumer (same connection) received it"
                        .into(),
                    appenders,
                    Phase::RawConsumed(appenders),
                    Some(consumed / raw),
                ));
            }
            for appenders in APPENDER_COUNTS {
                let raw = self.rate_of(setting, Phase::Raw(appenders));
                let consumed = self.rate_of(setting, Phase::RawConsumedApart(appenders));
                rows.push((
                    "raw publish + wait until an ordered consumer (own connection) received it"
                        .into(),
                    appenders,
                    Phase::RawConsumedApart(appenders),
                    Some(consumed / raw),
                ));
            }
            for nodes in [1, self.nodes] {
                for appenders in APPENDER_COUNTS {
                    let what = if nodes == 1 {
                        "cairn append, 1 node".to_owned()
                    } else {
                        format!("cairn append, {nodes} nodes")
                    };
                    let raw = self.rate_of(setting, Phase::Raw(appenders));
                    let cairn = self.rate_of(setting, Phase::Cairn { nodes, appenders });
                    rows.push((
                        what,
                        appenders,
                        Phase::Cairn { nodes, appenders },
                        Some(cairn / raw),
                    ));
                }
            }
            for (what, appenders, phase, ratio) in rows {
                let Some(sample) = self.find(setting, phase) else {
                    continue;
                };
                let m = &sample.measured;
                writeln!(
                    f,
                    "| {setting} | {what} | {appenders} | {} | {} | {} | {} | {} | {} |",
                    rate(m.records_per_second()),
                    micros(m.percentile(0.50)),
                    micros(m.percentile(0.99)),
                    cpu_cell(m.cpu_micros_per_record()),
                    cpu_cell(sample.server_cpu_micros_per_record()),
                    ratio.map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}")),
                )?;
            }
        }

        writeln!(f)?;
        writeln!(f, "| ratio | value | aim | met |")?;
        writeln!(f, "|---|---:|---:|---|")?;
        for setting in self.settings() {
            for nodes in [1, self.nodes] {
                for appenders in APPENDER_COUNTS {
                    let value = self.rate_of(setting, Phase::Cairn { nodes, appenders })
                        / self.rate_of(setting, Phase::Raw(appenders));
                    writeln!(
                        f,
                        "| {setting}: cairn, {nodes} node{}, {appenders} appenders / raw, {appenders} publishers | {value:.2} | >= {AIM} | {} |",
                        if nodes == 1 { "" } else { "s" },
                        if value >= AIM { "yes" } else { "no" }
                    )?;
                }
            }
            for appenders in APPENDER_COUNTS {
                let value = self.rate_of(
                    setting,
                    Phase::Cairn {
                        nodes: 1,
                        appenders,
                    },
                ) / self.rate_of(setting, Phase::RawConsumed(appenders));
                writeln!(
                    f,
                    "| {setting}: cairn, 1 node, {appenders} appenders / raw + ordered consumer, {appenders} publishers | {value:.2} | - | - |",
                )?;
            }
            for nodes in [1, self.nodes] {
                let value = self.rate_of(
                    setting,
                    Phase::Cairn {
                        nodes,
                        appenders: 64,
                    },
                ) / self.rate_of(setting, Phase::RawPipelined(PIPELINE_WINDOW));
                writeln!(
                    f,
                    "| {setting}: cairn, {nodes} node{}, 64 appenders / raw pipelined | {value:.2} | - | - |",
                    if nodes == 1 { "" } else { "s" },
                )?;
            }
        }
        let appends: u64 = self
            .results
            .iter()
            .filter(|(_, phase, _)| matches!(phase, Phase::Cairn { .. }))
            .map(|(_, _, sample)| sample.measured.operations)
            .sum();
        writeln!(f, "\n{appends} cairn appends timed (best rounds).")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_stream_is_configured_like_cairns() {
        let config = raw_stream_config("RAW");
        let problems = cairn_store_jetstream::check_stream_config(&config, "RAW.s.*");
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn the_cpu_of_this_process_is_read() {
        assert!(cpu_of(std::process::id()).is_some());
    }
}
