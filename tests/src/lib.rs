//! End-to-end tests of cairn against the real `cairn` binary: helpers to build and find the
//! binary, run `cairn serve` on a free loopback port with a temporary data directory, kill it
//! (SIGKILL), stop it (SIGTERM) and restart it on the same directory, run the client
//! subcommands, and check what a server answered (records, Merkle roots, checkpoints) against a
//! local recomputation.
//!
//! These helpers never decide correctness by timing: a server is ready when it has printed its
//! listening line, a process is done when it has exited. Deadlines exist only to turn a hang into
//! a failure with a message.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use cairn_grpc::auth::{AuthChannel, BearerToken};
use cairn_grpc::proto;
use cairn_grpc::proto::decision_service_client::DecisionServiceClient;
use cairn_grpc::proto::feedback_service_client::FeedbackServiceClient;
use cairn_grpc::proto::initiative_service_client::InitiativeServiceClient;
use cairn_grpc::proto::ledger_service_client::LedgerServiceClient;
use cairn_grpc::proto::lineage_service_client::LineageServiceClient;
use cairn_grpc::proto::prioritization_service_client::PrioritizationServiceClient;
use cairn_ledger::{LogId, MerkleTree, PublicKey, Record, SignedCheckpoint};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Longest a process may take to print its listening line or to exit. A guard that turns a hang
/// into a failure, never a condition of success.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(180);

/// Largest gRPC message the test clients accept (a full page of large records fits).
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The `cairn` binary, built once per test process with `cargo build -p cairn-cli` in the profile
/// the tests were built with (so `cargo test` on a clean checkout works). `CAIRN_BIN` overrides.
pub fn cairn_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match build_cairn() {
        Ok(path) => path,
        Err(error) => panic!("cannot build the cairn binary: {error:#}"),
    })
}

fn build_cairn() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CAIRN_BIN") {
        let path = PathBuf::from(path);
        ensure!(path.is_file(), "CAIRN_BIN={} is not a file", path.display());
        return Ok(path);
    }
    // A test binary lives in <target>/<profile>/deps/: the profile directory is two levels up,
    // whatever CARGO_TARGET_DIR or --target-dir said.
    let exe = std::env::current_exe().context("locating the test binary")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary is not in <target>/<profile>/deps")?
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(OsStr::to_str)
        .context("profile directory name")?
        .to_owned();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", "cairn-cli", "--bin", "cairn"]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let target_dir = profile_dir.parent().context("target directory")?;
    build.arg("--target-dir").arg(target_dir);
    let status = build.status().context("running cargo build -p cairn-cli")?;
    ensure!(
        status.success(),
        "cargo build -p cairn-cli failed: {status}"
    );
    let bin = profile_dir.join(format!("cairn{}", std::env::consts::EXE_SUFFIX));
    ensure!(bin.is_file(), "{} was not built", bin.display());
    Ok(bin)
}

/// What `cairn serve` prints once it accepts connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listening {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The key that signs its checkpoints.
    pub public_key: PublicKey,
    /// The ledger's id.
    pub log_id: LogId,
}

impl Listening {
    /// Parses `cairn listening on <addr> public-key <64 hex> log-id <64 hex>`.
    pub fn parse(line: &str) -> Result<Listening> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [
                "cairn",
                "listening",
                "on",
                addr,
                "public-key",
                key,
                "log-id",
                log_id,
            ] => Ok(Listening {
                addr: addr
                    .parse()
                    .with_context(|| format!("address in {line:?}"))?,
                public_key: PublicKey::from_hex(key)
                    .map_err(|error| anyhow!("public key in {line:?}: {error}"))?,
                log_id: LogId::from_hex(log_id)
                    .map_err(|error| anyhow!("log id in {line:?}: {error}"))?,
            }),
            _ => bail!("unexpected first line from cairn serve: {line:?}"),
        }
    }
}

/// How a `cairn serve` that never became ready ended.
#[derive(Debug)]
pub struct Refused {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout and stderr.
    pub output: String,
}

/// A `cairn serve` child process on a loopback port, with its data directory. Dropping it kills
/// the process.
pub struct Server {
    child: Option<Child>,
    data_dir: PathBuf,
    /// A data directory this server created and removes when dropped.
    _owned_data_dir: Option<tempfile::TempDir>,
    extra_args: Vec<String>,
    logs: tempfile::TempDir,
    starts: u32,
    listening: Listening,
}

impl Server {
    /// Starts a server on a new temporary data directory.
    pub fn start_temp(extra_args: &[&str]) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("cairn-e2e-data-")
            .tempdir()
            .context("creating a data directory")?;
        let mut server = Server::start(dir.path(), extra_args)?;
        server._owned_data_dir = Some(dir);
        Ok(server)
    }

    /// Starts a server on `data_dir` and waits for its listening line.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Result<Server> {
        match Server::try_start(data_dir, extra_args)? {
            Ok(server) => Ok(server),
            Err(refused) => bail!(
                "cairn serve exited with {} before listening:\n{}",
                refused.status,
                refused.output
            ),
        }
    }

    /// Starts a server on `data_dir`; the inner error is a server that exited before listening.
    pub fn try_start(data_dir: &Path, extra_args: &[&str]) -> Result<Result<Server, Refused>> {
        let logs = tempfile::Builder::new()
            .prefix("cairn-e2e-logs-")
            .tempdir()
            .context("creating a log directory")?;
        let extra_args: Vec<String> = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        let log = logs.path().join("serve-1.log");
        Ok(match spawn_serve(data_dir, &extra_args, &log)? {
            Ok((child, listening)) => Ok(Server {
                child: Some(child),
                data_dir: data_dir.to_path_buf(),
                _owned_data_dir: None,
                extra_args,
                logs,
                starts: 1,
                listening,
            }),
            Err(refused) => Err(refused),
        })
    }

    /// Starts the server again on the same data directory with the same arguments; it must be
    /// stopped ([`Server::kill`] or [`Server::terminate`]).
    pub fn restart(&mut self) -> Result<()> {
        ensure!(self.child.is_none(), "restart of a running server");
        self.starts += 1;
        let log = self.log_path(self.starts);
        match spawn_serve(&self.data_dir, &self.extra_args, &log)? {
            Ok((child, listening)) => {
                self.child = Some(child);
                self.listening = listening;
                Ok(())
            }
            Err(refused) => bail!(
                "cairn serve (start {}) exited with {} before listening:\n{}",
                self.starts,
                refused.status,
                refused.output
            ),
        }
    }

    /// What the running (or last) server printed when it became ready.
    pub fn listening(&self) -> &Listening {
        &self.listening
    }

    /// The gRPC endpoint, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.listening.addr)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The administrator's token the server wrote to its data directory on first start.
    pub fn token(&self) -> Result<String> {
        let path = self.token_file();
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading the admin token {}", path.display()))?;
        Ok(text.lines().next().unwrap_or_default().trim().to_owned())
    }

    /// The file holding the administrator's token (`--token-file` for the CLI).
    pub fn token_file(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// A ledger client on a new connection, as the administrator.
    pub async fn client(&self) -> Result<LedgerServiceClient<AuthChannel>> {
        connect(&self.url(), &self.token()?).await
    }

    /// Clients of the feedback-loop services and the ledger, sharing one new connection, as the
    /// administrator.
    pub async fn loop_clients(&self) -> Result<LoopClients> {
        LoopClients::connect(&self.url(), &self.token()?).await
    }

    /// A raw channel, for the health and reflection clients.
    pub async fn channel(&self) -> Result<Channel> {
        Channel::from_shared(self.url())?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", self.url()))
    }

    /// Kills the server with SIGKILL and reaps it: no shutdown, no flushing.
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("kill of a stopped server")?;
        child.kill().context("SIGKILL")?;
        child.wait().context("reaping the killed server")?;
        Ok(())
    }

    /// Sends SIGTERM and waits for the server to exit; returns its exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("terminate of a stopped server")?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        ensure!(status.success(), "kill -TERM failed: {status}");
        wait_with_deadline(&mut child, PROCESS_DEADLINE)
    }

    /// Everything the current (or last) server process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.logs.path().join(format!("serve-{start}.log"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns `cairn serve` and waits for its listening line, or its exit.
fn spawn_serve(
    data_dir: &Path,
    extra_args: &[String],
    log: &Path,
) -> Result<Result<(Child, Listening), Refused>> {
    let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(cairn_bin())
        .arg("serve")
        .arg("--data")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .context("spawning cairn serve")?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let (first_line, first_line_received) = mpsc::channel();
    let (rest, rest_received) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let first = reader
            .read_line(&mut line)
            .map(|read| (read > 0).then_some(line));
        let _ = first_line.send(first);
        // Keep draining, so the server never blocks on a full pipe.
        let mut remainder = String::new();
        let _ = reader.read_to_string(&mut remainder);
        let _ = rest.send(remainder);
    });
    let refused =
        |mut child: Child, stdout: String| -> Result<Result<(Child, Listening), Refused>> {
            let status = wait_with_deadline(&mut child, PROCESS_DEADLINE)?;
            let remainder = rest_received
                .recv_timeout(PROCESS_DEADLINE)
                .unwrap_or_default();
            let stderr = fs::read_to_string(log).unwrap_or_default();
            Ok(Err(Refused {
                status,
                output: format!("{stdout}{remainder}{stderr}"),
            }))
        };
    match first_line_received.recv_timeout(PROCESS_DEADLINE) {
        Ok(Ok(Some(line))) => match Listening::parse(line.trim_end()) {
            Ok(listening) => Ok(Ok((child, listening))),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error.context(fs::read_to_string(log).unwrap_or_default()))
            }
        },
        Ok(Ok(None)) => refused(child, String::new()),
        Ok(Err(error)) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(error).context("reading the stdout of cairn serve")
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "cairn serve printed nothing within {PROCESS_DEADLINE:?}:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            )
        }
    }
}

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Result<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            return Ok(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("process {} did not exit within {deadline:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The outcome of one run of a `cairn` client subcommand.
#[derive(Debug)]
pub struct CliOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

impl CliOutput {
    /// stdout and stderr together, for messages and searches.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cairn <args>` to completion (within [`PROCESS_DEADLINE`]).
pub fn run_cairn<I, S>(args: I) -> Result<CliOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cairn_with_token(args, None)
}

/// Runs `cairn <args>` with `CAIRN_TOKEN` set to `token` (as a user would export it).
pub fn run_cairn_with_token<I, S>(args: I, token: Option<&str>) -> Result<CliOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|arg| arg.as_ref().to_os_string())
        .collect();
    let mut command = Command::new(cairn_bin());
    // Never the token of the machine's user, nor a default token file of the working directory.
    command
        .env_remove("CAIRN_TOKEN")
        .env_remove("CAIRN_TOKEN_FILE");
    if let Some(token) = token {
        command.env("CAIRN_TOKEN", token);
    }
    let mut child = command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning cairn {args:?}"))?;
    let mut stdout = child.stdout.take().context("piped stdout")?;
    let mut stderr = child.stderr.take().context("piped stderr")?;
    let stdout_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_with_deadline(&mut child, PROCESS_DEADLINE)
        .with_context(|| format!("cairn {args:?}"))?;
    Ok(CliOutput {
        status,
        stdout: stdout_reader.join().unwrap_or_default(),
        stderr: stderr_reader.join().unwrap_or_default(),
    })
}

/// Whether `text` names `position <n>` (and not a longer number starting with the same digits).
pub fn names_position(text: &str, position: u64) -> bool {
    let needle = format!("position {position}");
    text.match_indices(&needle).any(|(at, _)| {
        !text[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|next| next.is_ascii_digit())
    })
}

/// The ledger's head position. A fresh server's ledger is not empty: it opens with the server's
/// `policy.activated` record.
pub async fn head_position(client: &mut LedgerServiceClient<AuthChannel>) -> Result<u64> {
    Ok(client
        .get_log_info(proto::GetLogInfoRequest {})
        .await?
        .into_inner()
        .head_position)
}

/// A channel to `url` that presents `token` on every call.
pub async fn auth_channel(url: &str, token: &str) -> Result<AuthChannel> {
    let channel = Channel::from_shared(url.to_owned())?
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let bearer = BearerToken::new(token).map_err(anyhow::Error::msg)?;
    Ok(InterceptedService::new(channel, bearer))
}

/// A ledger client on a new connection to `url`, presenting `token`.
pub async fn connect(url: &str, token: &str) -> Result<LedgerServiceClient<AuthChannel>> {
    let channel = auth_channel(url, token).await?;
    Ok(LedgerServiceClient::new(channel)
        .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(CLIENT_MESSAGE_BYTES_MAX))
}

/// Clients of every feedback-loop service, and of the ledger, on one connection (tonic clients
/// are cheap to clone: clones share the connection).
#[derive(Clone)]
pub struct LoopClients {
    /// FeedbackService: feedback items and signals.
    pub feedback: FeedbackServiceClient<AuthChannel>,
    /// DecisionService: decision records.
    pub decision: DecisionServiceClient<AuthChannel>,
    /// PrioritizationService: opportunities, votes, ratings, scores, aging.
    pub prioritization: PrioritizationServiceClient<AuthChannel>,
    /// InitiativeService: initiatives and milestones.
    pub initiative: InitiativeServiceClient<AuthChannel>,
    /// LineageService: walks, the chain behind an entity, what happened to feedback.
    pub lineage: LineageServiceClient<AuthChannel>,
    /// LedgerService: the raw records, to check what the other services say about them.
    pub ledger: LedgerServiceClient<AuthChannel>,
}

impl LoopClients {
    /// Connects to `url` (`http://127.0.0.1:<port>`), presenting `token`.
    pub async fn connect(url: &str, token: &str) -> Result<LoopClients> {
        let channel = auth_channel(url, token).await?;
        Ok(LoopClients {
            feedback: FeedbackServiceClient::new(channel.clone())
                .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX),
            decision: DecisionServiceClient::new(channel.clone())
                .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX),
            prioritization: PrioritizationServiceClient::new(channel.clone())
                .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX),
            initiative: InitiativeServiceClient::new(channel.clone())
                .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX),
            lineage: LineageServiceClient::new(channel.clone())
                .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX),
            ledger: LedgerServiceClient::new(channel)
                .max_decoding_message_size(CLIENT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(CLIENT_MESSAGE_BYTES_MAX),
        })
    }
}

/// The rule a refused feedback-loop command broke: the `cairn-rule` metadata of its status.
pub fn rule_of(status: &tonic::Status) -> Option<&str> {
    status
        .metadata()
        .get("cairn-rule")
        .and_then(|value| value.to_str().ok())
}

/// A stream reference.
pub fn stream_ref(tenant: &str, aggregate_type: &str, aggregate_id: &str) -> proto::StreamRef {
    proto::StreamRef {
        tenant: tenant.to_owned(),
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
    }
}

/// A public event with a caller-chosen id.
pub fn event(event_id: [u8; 16], event_type: &str, payload: Vec<u8>) -> proto::EventInput {
    proto::EventInput {
        event_id: event_id.to_vec(),
        event_type: event_type.to_owned(),
        event_schema_version: 1,
        payload,
        ..Default::default()
    }
}

/// An expected-version condition.
pub fn expected(condition: proto::expected_version::Condition) -> Option<proto::ExpectedVersion> {
    Some(proto::ExpectedVersion {
        condition: Some(condition),
    })
}

/// `len` bytes that depend on `seed` and look like text, so a payload is recognisable.
pub fn payload_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    (0..len)
        .map(|_| b"abcdefghijklmnopqrstuvwxyz0123456789 "[rng.below(37) as usize])
        .collect()
}

/// Reads the whole ledger through `ReadAll`, page by page.
pub async fn read_all(client: &mut LedgerServiceClient<AuthChannel>) -> Result<Vec<proto::Record>> {
    let mut records = Vec::new();
    loop {
        let page = client
            .read_all(proto::ReadAllRequest {
                from_position: records.len() as u64 + 1,
                limit: 1000,
                include_personal: false,
            })
            .await
            .context("ReadAll")?
            .into_inner();
        if page.records.is_empty() {
            return Ok(records);
        }
        records.extend(page.records);
    }
}

/// Rebuilds every record from the exact bytes the server sent (envelope decoding, payload
/// commitment), checks positions are gapless from 1, and returns the Merkle tree over them.
pub fn tree_of(records: &[proto::Record]) -> Result<(Vec<Record>, MerkleTree)> {
    let mut tree = MerkleTree::new();
    let mut rebuilt = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let expected = index as u64 + 1;
        ensure!(
            record.position == expected,
            "record {index} has position {}, expected {expected}",
            record.position
        );
        let checked = cairn_grpc::record_from_proto(record)
            .map_err(|error| anyhow!("record at position {expected}: {error}"))?;
        ensure!(
            checked.position().0 == expected,
            "the envelope of position {expected} says {}",
            checked.position()
        );
        tree.push(checked.leaf_hash());
        rebuilt.push(checked);
    }
    Ok((rebuilt, tree))
}

/// Decodes a checkpoint file as `cairn checkpoint --save` wrote it: the 176-byte encoding, raw or
/// as hex text.
pub fn decode_checkpoint_file(bytes: &[u8]) -> Result<SignedCheckpoint> {
    if let Ok(signed) = SignedCheckpoint::decode(bytes) {
        return Ok(signed);
    }
    let text =
        std::str::from_utf8(bytes).context("checkpoint file is neither 176 bytes nor text")?;
    let hex_digits: String = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && line.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    let decoded = hex::decode(&hex_digits).context("checkpoint file as hex")?;
    SignedCheckpoint::decode(&decoded).map_err(|error| anyhow!("checkpoint file: {error}"))
}

/// Writes `signed` the way `original` (a file `cairn checkpoint --save` wrote) is written: raw
/// bytes or hex text, so forged files differ from genuine ones only in what they claim.
pub fn encode_checkpoint_like(original: &[u8], signed: &SignedCheckpoint) -> Vec<u8> {
    if SignedCheckpoint::decode(original).is_ok() {
        signed.encode()
    } else {
        format!("{}\n", hex::encode(signed.encode())).into_bytes()
    }
}

/// SplitMix64: a tiny seeded generator, so a failing run can be replayed from its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The seed of a randomised test: `CAIRN_E2E_SEED` if set, else `default`. Printed, so a failure
/// can be replayed.
pub fn test_seed(default: u64) -> u64 {
    let seed = std::env::var("CAIRN_E2E_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default);
    eprintln!("seed {seed} (set CAIRN_E2E_SEED to replay)");
    seed
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Where `needle` occurs in `haystack`.
pub fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return Vec::new();
    }
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle)
        .map(|(at, _)| at)
        .collect()
}

/// The segment file layout of the embedded store: a header (`CAIRNSEG`, u32 version, u64 first
/// position, little-endian) and frames (`len` u32 LE, an 8-byte checksum, `len` bytes of body).
pub mod segment {
    use super::*;

    /// The magic bytes a segment file starts with.
    pub const MAGIC: &[u8; 8] = b"CAIRNSEG";
    /// Bytes before the first frame.
    pub const HEADER_BYTES: usize = 8 + 4 + 8;
    /// Bytes of a frame before its body.
    pub const FRAME_HEADER_BYTES: usize = 4 + 8;

    /// One frame of a segment file.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Frame {
        /// The position of the record it holds.
        pub position: u64,
        /// Offset of the frame's length field in the file.
        pub offset: usize,
        /// Offset and length of the body.
        pub body: std::ops::Range<usize>,
    }

    /// A parsed segment file.
    #[derive(Clone, Debug)]
    pub struct Segment {
        /// The file.
        pub path: PathBuf,
        /// The format version in its header.
        pub version: u32,
        /// The position of its first record.
        pub first_position: u64,
        /// Its whole frames, in order.
        pub frames: Vec<Frame>,
    }

    /// Every segment file under `data_dir` (files that start with [`MAGIC`]), parsed, in order of
    /// first position.
    pub fn segments(data_dir: &Path) -> Result<Vec<Segment>> {
        let mut segments = Vec::new();
        for path in files_under(data_dir)? {
            let bytes = fs::read(&path)?;
            if bytes.starts_with(MAGIC) {
                segments.push(parse(&path, &bytes)?);
            }
        }
        segments.sort_by_key(|segment| segment.first_position);
        Ok(segments)
    }

    /// Parses one segment file's bytes.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Segment> {
        ensure!(
            bytes.len() >= HEADER_BYTES && bytes.starts_with(MAGIC),
            "{} is not a segment file",
            path.display()
        );
        let version = u32::from_le_bytes(bytes[8..12].try_into()?);
        let first_position = u64::from_le_bytes(bytes[12..20].try_into()?);
        let mut frames = Vec::new();
        let mut offset = HEADER_BYTES;
        while offset + FRAME_HEADER_BYTES <= bytes.len() {
            let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into()?) as usize;
            let body_start = offset + FRAME_HEADER_BYTES;
            if len == 0 || body_start + len > bytes.len() {
                break;
            }
            frames.push(Frame {
                position: first_position + frames.len() as u64,
                offset,
                body: body_start..body_start + len,
            });
            offset = body_start + len;
        }
        Ok(Segment {
            path: path.to_path_buf(),
            version,
            first_position,
            frames,
        })
    }

    /// The file and byte offset of the one place `needle` occurs in a segment file under
    /// `data_dir`, with the frame it lies in. Fails unless there is exactly one such place and it
    /// lies inside a single frame's body.
    pub fn locate(data_dir: &Path, needle: &[u8]) -> Result<(PathBuf, usize, Frame)> {
        let mut hits = Vec::new();
        for segment in segments(data_dir)? {
            let bytes = fs::read(&segment.path)?;
            for at in find_all(&bytes, needle) {
                let frame = segment
                    .frames
                    .iter()
                    .find(|frame| frame.body.start <= at && at + needle.len() <= frame.body.end)
                    .cloned()
                    .with_context(|| {
                        format!(
                            "match at {at} of {} is not inside a frame",
                            segment.path.display()
                        )
                    })?;
                hits.push((segment.path.clone(), at, frame));
            }
        }
        ensure!(
            hits.len() == 1,
            "expected one place holding the bytes, found {}",
            hits.len()
        );
        Ok(hits.remove(0))
    }

    /// Recomputes the checksum of `frame` in `file` (a segment file's bytes) after its body was
    /// changed: XXH3-64 of the body, little-endian.
    pub fn reseal_frame(file: &mut [u8], frame: &Frame) {
        // XXH3-64 of the body, little-endian: the segment format's frame checksum, written out
        // here as an outside tool would, from the documented layout.
        let checksum = xxhash_rust::xxh3::xxh3_64(&file[frame.body.clone()]);
        file[frame.offset + 4..frame.offset + FRAME_HEADER_BYTES]
            .copy_from_slice(&checksum.to_le_bytes());
    }
}

/// Checks one checkpoint against the final records: its size is within them, its root is the
/// final tree's root at its size, and the server's consistency proof from its size to the final
/// head verifies against both roots.
pub async fn check_checkpoint_against_tree(
    client: &mut LedgerServiceClient<AuthChannel>,
    checkpoint: &cairn_ledger::Checkpoint,
    tree: &MerkleTree,
) -> Result<()> {
    let head = tree.len();
    ensure!(
        checkpoint.tree_size >= 1 && checkpoint.tree_size <= head,
        "a checkpoint of {} records, but the final ledger has {head}",
        checkpoint.tree_size
    );
    ensure!(
        tree.root_at(checkpoint.tree_size)
            .map_err(|e| anyhow!("{e}"))?
            == checkpoint.root,
        "the checkpoint of {} records has a root the final records do not give",
        checkpoint.tree_size
    );
    let proof = client
        .get_consistency_proof(proto::GetConsistencyProofRequest {
            old_size: checkpoint.tree_size,
            new_size: head,
        })
        .await?
        .into_inner();
    let path = proof
        .path
        .iter()
        .map(|hash| cairn_ledger::Hash::from_slice(hash, "path").map_err(|e| anyhow!("{e}")))
        .collect::<Result<Vec<_>>>()?;
    cairn_ledger::ConsistencyProof {
        old_size: checkpoint.tree_size,
        new_size: head,
        path,
    }
    .verify(&checkpoint.root, &tree.root())
    .map_err(|error| {
        anyhow!(
            "the checkpoint of {} records is not consistent with the final tree: {error}",
            checkpoint.tree_size
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_names_are_matched_whole() {
        assert!(names_position("corrupt ledger at position 11: bad", 11));
        assert!(names_position("position 11", 11));
        assert!(names_position("position 11.", 11));
        assert!(!names_position("position 110", 11));
        assert!(!names_position("position 1", 11));
    }

    #[test]
    fn listening_lines_parse_strictly() {
        let key = "ab".repeat(32);
        let log = "cd".repeat(32);
        let line = format!("cairn listening on 127.0.0.1:4242 public-key {key} log-id {log}");
        let parsed = Listening::parse(&line).unwrap();
        assert_eq!(parsed.addr.port(), 4242);
        assert_eq!(parsed.public_key.to_hex(), key);
        assert_eq!(parsed.log_id.to_hex(), log);
        assert!(Listening::parse(&format!("{line} extra")).is_err());
        assert!(Listening::parse("cairn listening on nowhere").is_err());
    }

    #[test]
    fn segment_frames_are_found_by_position() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(segment::MAGIC);
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&7u64.to_le_bytes());
        for body in [&b"first body"[..], b"second"] {
            bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&[0; 8]);
            bytes.extend_from_slice(body);
        }
        let parsed = segment::parse(Path::new("x.seg"), &bytes).unwrap();
        assert_eq!(parsed.first_position, 7);
        assert_eq!(parsed.frames.len(), 2);
        assert_eq!(parsed.frames[1].position, 8);
        assert_eq!(&bytes[parsed.frames[1].body.clone()], b"second");
        let mut file = bytes.clone();
        segment::reseal_frame(&mut file, &parsed.frames[0]);
        assert_ne!(file[24..32], [0; 8]);
        assert_eq!(file[32..], bytes[32..]);
    }

    #[test]
    fn the_generator_is_deterministic() {
        let mut a = SplitMix64::new(3);
        let mut b = SplitMix64::new(3);
        assert_eq!(a.next_u64(), b.next_u64());
        assert!((0..100).all(|_| a.below(10) < 10));
        assert_eq!(payload_bytes(5, 300), payload_bytes(5, 300));
        assert_ne!(payload_bytes(5, 300), payload_bytes(6, 300));
    }
}
