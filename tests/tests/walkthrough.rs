//! The README walkthrough, as a test of the real binary: serve, pin the key, append, read, tail,
//! save a checkpoint, append more, and audit the ledger against the saved checkpoint; then check
//! that the audit fails against a forged checkpoint, a checkpoint of another ledger, or the wrong
//! key.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cairn_e2e::{
    CliOutput, PROCESS_DEADLINE, Server, cairn_bin, decode_checkpoint_file, encode_checkpoint_like,
    run_cairn_with_token,
};
use cairn_grpc::proto;
use cairn_ledger::{Checkpoint, CheckpointSigner, Hash, PublicKey, SignedCheckpoint};

/// The token of each server this test started, by URL: the CLI gets it in `CAIRN_TOKEN`, as a
/// user would export it.
static TOKENS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn remember_token(server: &Server) -> Result<()> {
    let token = server.token()?;
    TOKENS
        .lock()
        .map_err(|_| anyhow::anyhow!("token registry poisoned"))?
        .push((server.url(), token));
    Ok(())
}

/// The token of the server `args` names with `--server`, if this test started it.
fn token_for(args: &[&str]) -> Option<String> {
    let at = args.iter().position(|arg| *arg == "--server")?;
    let url = args.get(at + 1)?;
    let tokens = TOKENS.lock().ok()?;
    tokens
        .iter()
        .find(|(known, _)| known == url)
        .map(|(_, token)| token.clone())
}

/// Runs `cairn <args>` with the token of the server it names.
fn run_cairn(args: &[&str]) -> Result<CliOutput> {
    run_cairn_with_token(args, token_for(args).as_deref())
}

/// Runs `cairn <args>` and requires success.
fn cairn_ok(args: &[&str]) -> Result<CliOutput> {
    let output = run_cairn(args)?;
    ensure!(output.status.success(), "cairn {args:?} failed:\n{output}");
    Ok(output)
}

/// Runs `cairn <args>` and requires failure.
fn cairn_fails(args: &[&str], why: &str) -> Result<CliOutput> {
    let output = run_cairn(args)?;
    ensure!(
        !output.status.success(),
        "cairn {args:?} succeeded with {why}:\n{output}"
    );
    Ok(output)
}

/// Waits until the server has signed a checkpoint of exactly `tree_size` records. Waiting on a
/// condition, with a deadline that only turns a hang into a failure.
async fn wait_for_checkpoint(server: &Server, tree_size: u64) -> Result<()> {
    let mut client = server.client().await?;
    let started = Instant::now();
    loop {
        if let Ok(checkpoint) = client.get_checkpoint(proto::GetCheckpointRequest {}).await
            && checkpoint.get_ref().tree_size == tree_size
        {
            return Ok(());
        }
        ensure!(
            started.elapsed() < PROCESS_DEADLINE,
            "no checkpoint of size {tree_size} was signed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `cairn tail` as a child process, its lines arriving on a channel.
struct Tail {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Tail {
    fn start(url: &str) -> Result<Tail> {
        let mut child = Command::new(cairn_bin())
            .args(["tail", "--server", url, "--from", "1"])
            .env(
                "CAIRN_TOKEN",
                token_for(&["--server", url]).unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning cairn tail")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Tail { child, lines })
    }

    /// The next `count` lines.
    fn take(&self, count: usize) -> Result<Vec<String>> {
        (0..count)
            .map(|index| {
                self.lines
                    .recv_timeout(PROCESS_DEADLINE)
                    .with_context(|| format!("cairn tail printed only {index} of {count} lines"))
            })
            .collect()
    }

    /// Ctrl-C: the tail stops with exit 0.
    fn interrupt(mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()?;
        ensure!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "cairn tail exited with {status} on SIGINT"
                );
                return Ok(());
            }
            if started.elapsed() > PROCESS_DEADLINE {
                let _ = self.child.kill();
                bail!("cairn tail did not stop on SIGINT");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value after `label` on the line that starts with it (`public key     <hex> ...`).
fn field<'a>(output: &'a str, label: &str) -> Result<&'a str> {
    output
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("no {label:?} in:\n{output}"))
}

/// Writes a modified copy of the saved checkpoint file.
fn forge(dir: &Path, name: &str, original: &[u8], forged: &SignedCheckpoint) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, encode_checkpoint_like(original, forged))?;
    Ok(path.to_str().context("utf-8 path")?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough() -> Result<()> {
    let mut server = Server::start_temp(&["--checkpoint-interval-ms", "50"])?;
    remember_token(&server)?;
    let url = server.url();
    let url = url.as_str();
    let work = tempfile::tempdir()?;

    // Pin the key `cairn info` shows: it is the one the server printed at start.
    let info = cairn_ok(&["info", "--server", url])?;
    let pinned = field(&info.stdout, "public key")?.to_owned();
    ensure!(pinned == server.listening().public_key.to_hex());
    ensure!(field(&info.stdout, "log id")? == server.listening().log_id.to_hex());

    // Follow the ledger from the start while appending.
    let tail = Tail::start(url)?;

    let appended = cairn_ok(&[
        "append",
        "--server",
        url,
        "--stream",
        "acme/notes/fb-1",
        "--type",
        "FeedbackReceived",
        "--payload",
        "the build is slow",
        "--actor",
        "user:alice",
        "--expect",
        "none",
    ])?;
    ensure!(
        appended
            .stdout
            .contains("appended positions 2..2 stream version 1"),
        "{appended}"
    );
    let event_id = "0f".repeat(16);
    let personal = cairn_ok(&[
        "append",
        "--server",
        url,
        "--stream",
        "acme/notes/fb-1",
        "--type",
        "FeedbackTriaged",
        "--payload",
        "triaged",
        "--personal",
        "alice@example.com",
        "--subject",
        "user:alice",
        "--event-id",
        &event_id,
        "--expect",
        "1",
        "--actor",
        "user:bob",
    ])?;
    ensure!(
        personal
            .stdout
            .contains("appended positions 3..3 stream version 2"),
        "{personal}"
    );
    // A retry with the same event id is recorded once.
    let retry = cairn_ok(&[
        "append",
        "--server",
        url,
        "--stream",
        "acme/notes/fb-1",
        "--type",
        "FeedbackTriaged",
        "--payload",
        "triaged",
        "--personal",
        "alice@example.com",
        "--subject",
        "user:alice",
        "--event-id",
        &event_id,
        "--expect",
        "1",
        "--actor",
        "user:bob",
    ])?;
    ensure!(
        retry.stdout.contains("positions 3..3") && retry.stdout.contains("retry"),
        "{retry}"
    );
    // A stale expected version is refused.
    cairn_fails(
        &[
            "append",
            "--server",
            url,
            "--stream",
            "acme/notes/fb-1",
            "--type",
            "X",
            "--expect",
            "1",
        ],
        "a stale --expect",
    )?;
    let batch = cairn_ok(&[
        "append",
        "--server",
        url,
        "--stream",
        "acme/metrics/build-time",
        "--type",
        "SignalObserved",
        "--payload",
        "p95 build 14 min",
        "--count",
        "2",
        "--actor",
        "ci",
    ])?;
    ensure!(batch.stdout.contains("appended positions 4..5"), "{batch}");

    // Read the whole ledger, one stream, and with personal data opened. The server's policy
    // activation opens it.
    let all = cairn_ok(&["read", "--server", url, "--all"])?;
    let lines: Vec<&str> = all.stdout.lines().collect();
    ensure!(lines.len() == 5, "read --all printed:\n{all}");
    ensure!(
        lines[0].contains("cairn-system/policy/bundle") && lines[0].contains("policy.activated"),
        "{all}"
    );
    for (index, line) in lines.iter().enumerate() {
        ensure!(
            line.starts_with(&format!("{} ", index + 1)),
            "line {index}: {line}"
        );
    }
    ensure!(lines[1].contains("acme/notes/fb-1") && lines[1].contains("the build is slow"));
    ensure!(lines[2].contains("withheld") && !all.stdout.contains("alice@example.com"));
    let stream = cairn_ok(&[
        "read",
        "--server",
        url,
        "--stream",
        "acme/notes/fb-1",
        "--all",
    ])?;
    ensure!(stream.stdout.lines().count() == 2, "{stream}");
    let opened = cairn_ok(&["read", "--server", url, "--all", "--personal"])?;
    ensure!(opened.stdout.contains("alice@example.com"), "{opened}");

    // The tail caught up, then followed: every record once, in order.
    let followed = tail.take(5)?;
    for (index, line) in followed.iter().enumerate() {
        ensure!(
            line.starts_with(&format!("{} ", index + 1)),
            "tail line {index}: {line}"
        );
    }
    cairn_ok(&[
        "append",
        "--server",
        url,
        "--stream",
        "acme/notes/fb-2",
        "--type",
        "FeedbackReceived",
        "--payload",
        "flaky tests",
        "--actor",
        "user:carol",
    ])?;
    let live = tail.take(1)?;
    ensure!(
        live[0].starts_with("6 ") && live[0].contains("flaky tests"),
        "{live:?}"
    );
    tail.interrupt()?;

    // Save a checkpoint of the six records.
    wait_for_checkpoint(&server, 6).await?;
    let saved_path = work.path().join("checkpoint-6.hex");
    let saved_arg = saved_path.to_str().context("utf-8 path")?;
    cairn_ok(&["checkpoint", "--server", url, "--save", saved_arg])?;
    let saved_bytes = std::fs::read(&saved_path)?;
    let saved = decode_checkpoint_file(&saved_bytes)?;
    ensure!(saved.checkpoint.tree_size == 6);
    saved.verify(&PublicKey::from_hex(&pinned)?)?;

    // Append more; the audit proves the saved tree is a prefix of the new one.
    cairn_ok(&[
        "append",
        "--server",
        url,
        "--stream",
        "acme/notes/fb-3",
        "--type",
        "FeedbackReceived",
        "--payload",
        "more",
        "--count",
        "3",
    ])?;
    wait_for_checkpoint(&server, 9).await?;
    let audit = cairn_ok(&[
        "verify",
        "--server",
        url,
        "--checkpoint",
        saved_arg,
        "--public-key",
        &pinned,
    ])?;
    ensure!(audit.stdout.contains("verified"), "{audit}");
    cairn_ok(&[
        "verify",
        "--server",
        url,
        "--checkpoint",
        saved_arg,
        "--public-key",
        &pinned,
        "--full",
    ])?;

    // A forged root or size breaks the signature.
    let mut other_root = saved.clone();
    other_root.checkpoint.root.0[7] ^= 1;
    let path = forge(work.path(), "root.hex", &saved_bytes, &other_root)?;
    cairn_fails(
        &[
            "verify",
            "--server",
            url,
            "--checkpoint",
            &path,
            "--public-key",
            &pinned,
        ],
        "a checkpoint whose root was changed",
    )?;
    let mut other_size = saved.clone();
    other_size.checkpoint.tree_size = 5;
    let path = forge(work.path(), "size.hex", &saved_bytes, &other_size)?;
    cairn_fails(
        &[
            "verify",
            "--server",
            url,
            "--checkpoint",
            &path,
            "--public-key",
            &pinned,
        ],
        "a checkpoint whose size was changed",
    )?;
    // Correctly signed with the server's own key (stolen from its data directory) but for a tree
    // the ledger never had: the consistency proof fails.
    let secret: [u8; 32] = std::fs::read(server.data_dir().join("identity/checkpoint-signing.key"))
        .context("the server's signing key")?
        .as_slice()
        .try_into()
        .context("a 32-byte signing key")?;
    let signer = CheckpointSigner::from_secret_bytes(secret);
    ensure!(signer.public_key().to_hex() == pinned);
    let rewritten = signer.sign(Checkpoint {
        root: Hash([0x42; 32]),
        ..saved.checkpoint
    });
    let path = forge(work.path(), "rewritten.hex", &saved_bytes, &rewritten)?;
    let rejected = cairn_fails(
        &[
            "verify",
            "--server",
            url,
            "--checkpoint",
            &path,
            "--public-key",
            &pinned,
        ],
        "a validly signed checkpoint of a history the ledger does not have",
    )?;
    ensure!(
        rejected.text().to_lowercase().contains("consisten"),
        "{rejected}"
    );
    // The wrong key.
    let wrong_key = CheckpointSigner::from_secret_bytes([7; 32])
        .public_key()
        .to_hex();
    cairn_fails(
        &[
            "verify",
            "--server",
            url,
            "--checkpoint",
            saved_arg,
            "--public-key",
            &wrong_key,
        ],
        "the wrong public key",
    )?;
    // A genuine checkpoint of another ledger, under that ledger's key.
    let mut other = Server::start_temp(&["--checkpoint-interval-ms", "50"])?;
    remember_token(&other)?;
    let other_url = other.url();
    cairn_ok(&[
        "append",
        "--server",
        &other_url,
        "--stream",
        "acme/notes/fb-1",
        "--type",
        "T",
        "--count",
        "5",
    ])?;
    wait_for_checkpoint(&other, 6).await?;
    let foreign = work.path().join("foreign.hex");
    let foreign_arg = foreign.to_str().context("utf-8 path")?;
    cairn_ok(&["checkpoint", "--server", &other_url, "--save", foreign_arg])?;
    let other_key = other.listening().public_key.to_hex();
    cairn_fails(
        &[
            "verify",
            "--server",
            url,
            "--checkpoint",
            foreign_arg,
            "--public-key",
            &other_key,
        ],
        "a checkpoint of another ledger",
    )?;
    cairn_fails(
        &[
            "verify",
            "--server",
            url,
            "--checkpoint",
            foreign_arg,
            "--public-key",
            &pinned,
        ],
        "a checkpoint signed by another key",
    )?;
    ensure!(other.terminate()?.success());

    // Stop, and audit the stopped server's files.
    let status = server.terminate()?;
    ensure!(status.success(), "SIGTERM: {status}\n{}", server.stderr());
    let data = server.data_dir().to_str().context("utf-8 path")?.to_owned();
    cairn_ok(&["verify", "--data", &data])?;
    Ok(())
}
