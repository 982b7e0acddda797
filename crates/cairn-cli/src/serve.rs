//! `cairn serve`: one server on the embedded store, or one node of a ledger on NATS JetStream.
//!
//! Start-up opens the store (which locks the data directory and checks the segment files), loads
//! or creates the server identity (log id and checkpoint signing key, kept in the data directory),
//! opens the read models (`DATA/projections`) and loads the scoring policy, starts the
//! checkpointer and the projection follower, binds the listener and prints exactly one line on
//! stdout: `cairn listening on ADDR public-key HEX log-id HEX`. Tests and scripts read that line
//! to find the port and the key to pin. SIGINT or SIGTERM shuts down gracefully: no new calls,
//! calls in flight finish, the follower stops, the repeated denials counted in memory are
//! recorded, a final checkpoint is signed, the store is closed, exit 0.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_grpc::auth::Authenticator;
use cairn_grpc::{ServerLimits, Services};
use cairn_projections::Projections;
use cairn_service::governance::{BundleSource, DENIED_FLUSH_INTERVAL, Governance};
use cairn_service::stewardship::Stewardship;
use cairn_service::tokens::{BOOTSTRAP_ADMIN, Tokens, new_token, token_entry};
use cairn_service::{Checkpointer, FeedbackLoop, Ledger, Reads, ScoringPolicy, ServerIdentity};
use cairn_store::{EventStore, KeyStore};
use cairn_store_embedded::{EmbeddedOptions, EmbeddedStore};
use cairn_store_jetstream::lease::{LeaseOptions, SealerLease};
use cairn_store_jetstream::{JetStreamOptions, JetStreamStore};
use clap::Args;
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// `cairn serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The data directory: segment files, indexes, keys, checkpoints and the server identity.
    /// Created on first start.
    #[arg(long, env = "CAIRN_DATA", default_value = "./cairn-data")]
    data: PathBuf,

    /// Where the ledger lives: `embedded` (segment files in `--data`, nothing else to run) or
    /// NATS JetStream: `nats://HOST:PORT`, several comma-separated for a cluster, a URL may
    /// carry `user:password@`. On JetStream any number of nodes share the ledger; `--data` then
    /// holds only this node's read models, token file and access log.
    #[arg(
        long,
        env = "CAIRN_STORE",
        default_value = "embedded",
        value_name = "embedded|URL"
    )]
    store: String,

    /// The JetStream stream that holds the records; the checkpoint stream and the key, lease and
    /// identity buckets are named after it.
    #[arg(long, env = "CAIRN_NATS_STREAM", default_value = "CAIRN")]
    nats_stream: String,

    /// A NATS credentials file (JWT and NKey seed).
    #[arg(long, env = "CAIRN_NATS_CREDS", value_name = "FILE")]
    nats_creds: Option<PathBuf>,

    /// Replicas of the streams and buckets cairn creates on JetStream (1, 3 or 5). Existing
    /// streams keep theirs.
    #[arg(long, env = "CAIRN_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    nats_replicas: u64,

    /// This node's name in the sealer lease (JetStream only). Default: host name and process id.
    #[arg(long, env = "CAIRN_NODE_ID")]
    node_id: Option<String>,

    /// The address to listen on; port 0 picks a free port (the startup line says which).
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,

    /// How often the sealer signs a checkpoint while there are new records, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_interval_ms: u64,

    /// After a shutdown signal, how long calls in flight (subscriptions never end by themselves)
    /// may run before they are cut, in milliseconds. A second signal cuts them at once.
    #[arg(long, default_value_t = 5000)]
    shutdown_grace_ms: u64,

    /// The policy bundle: a `policies/` folder (`access/model.conf` and `access/policy.csv`,
    /// `tests/*.csv`, `scoring/`, `retention/`). Default: `./policies` when it holds
    /// `access/model.conf`, else the built-in copy of the repository's policies. Reloaded on
    /// SIGHUP and by `PolicyService.Reload`.
    #[arg(long, env = "CAIRN_POLICIES", value_name = "DIR")]
    policies: Option<PathBuf>,

    /// The token file: hashes of bearer tokens, each with its principal and tenants (see
    /// `cairn token new`). Default: `DATA/tokens.toml`, created on first start with one
    /// administrator's token, which is written to `DATA/admin.token`. Reloaded on SIGHUP.
    #[arg(long, env = "CAIRN_TOKENS", value_name = "FILE")]
    tokens: Option<PathBuf>,

    /// How often the retention sweeper erases expired personal data, in seconds (the rules are
    /// in the bundle's `retention/`); 0: only on demand (`cairn steward retention run`).
    #[arg(long, env = "CAIRN_RETENTION_INTERVAL_S", default_value_t = 3600)]
    retention_interval_s: u64,

    /// Serve over TLS with this certificate chain (PEM, leaf first); needs `--tls-key`.
    #[arg(
        long,
        env = "CAIRN_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM).
    #[arg(
        long,
        env = "CAIRN_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// Mutual TLS: ask clients for a certificate issued by this CA (PEM). A verified
    /// certificate's subject (its CN, else its first DNS or URI alternative name) is the caller's
    /// principal; a client without a certificate may still present a bearer token; a certificate
    /// from another CA is refused at the handshake. Needs `--tls-cert`.
    #[arg(
        long,
        env = "CAIRN_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
}

impl ServeArgs {
    /// The TLS settings the flags name, read and checked; `None`: plain TCP.
    fn tls(&self) -> anyhow::Result<Option<cairn_grpc::TlsSettings>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let settings = cairn_grpc::TlsSettings {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            client_ca_pem: self.tls_client_ca.as_ref().map(read).transpose()?,
        };
        settings
            .check()
            .with_context(|| format!("cannot use the TLS certificate {}", cert.display()))?;
        Ok(Some(settings))
    }
}

/// Longest `--node-id`.
const NODE_ID_BYTES_MAX: usize = 128;

/// Where the policy bundle is looked for when `--policies` is not given.
const DEFAULT_POLICIES_DIR: &str = "./policies";

/// Runs the server until a shutdown signal.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Signal handlers first: a signal that arrives during start-up then shuts down cleanly
    // instead of killing the process half-way through opening the store.
    let mut signals = ShutdownSignals::new()?;
    let result = if args.store == "embedded" {
        serve_embedded(&args, &mut signals).await
    } else {
        serve_jetstream(&args, &mut signals).await
    };
    if result.is_ok() {
        tracing::info!("stopped");
    }
    result
}

/// One node on the embedded store in `--data`.
async fn serve_embedded(args: &ServeArgs, signals: &mut ShutdownSignals) -> anyhow::Result<()> {
    let store = {
        let dir = args.data.clone();
        tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, EmbeddedOptions::default()))
            .await
            .context("the store-opening thread panicked")?
            .with_context(|| format!("cannot open the ledger in {}", args.data.display()))?
    };
    let identity = {
        let dir = args.data.clone();
        tokio::task::spawn_blocking(move || ServerIdentity::load_or_create(&dir))
            .await
            .context("the identity-loading thread panicked")?
            .with_context(|| {
                format!(
                    "cannot load the server identity in {}",
                    args.data.join("identity").display()
                )
            })
    };
    let result = match identity {
        Ok(identity) => {
            let closing = Arc::clone(&store);
            serve_store(
                args,
                &store,
                Arc::new(identity),
                None,
                signals,
                async move || closing.close().await,
            )
            .await
        }
        Err(error) => Err(error),
    };
    // Closing twice is harmless: this also covers a start-up failure after the open.
    store.close().await;
    result
}

/// One node of a ledger on JetStream: the identity is the ledger's (created by its first node),
/// and the node signs checkpoints only while it holds the sealer lease.
async fn serve_jetstream(args: &ServeArgs, signals: &mut ShutdownSignals) -> anyhow::Result<()> {
    let options = JetStreamOptions {
        urls: args.store.clone(),
        credentials: args.nats_creds.clone(),
        stream: args.nats_stream.clone(),
        replicas: args.nats_replicas as usize,
        ..JetStreamOptions::default()
    };
    let store = JetStreamStore::open(options.clone())
        .await
        .with_context(|| format!("cannot open the ledger on NATS at {}", args.store))?;
    let proposed: [u8; 96] = cairn_store::random_bytes();
    let agreed = cairn_store_jetstream::shared::agree(
        store.jetstream(),
        &options,
        "identity",
        proposed.to_vec().into(),
    )
    .await
    .context("cannot agree on the ledger's identity")?;
    let secrets: [u8; 96] = agreed.as_ref().try_into().with_context(|| {
        format!(
            "the ledger's identity in NATS holds {} bytes, not 96",
            agreed.len()
        )
    })?;
    let part = |index: usize| -> [u8; 32] {
        secrets[index * 32..(index + 1) * 32]
            .try_into()
            .expect("32 of 96 bytes")
    };
    let identity = Arc::new(ServerIdentity::from_secrets(part(0), part(1), part(2)));
    if let Some(node) = &args.node_id
        && (node.is_empty()
            || node.len() > NODE_ID_BYTES_MAX
            || node.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        anyhow::bail!(
            "--node-id {node:?} must be 1 to {NODE_ID_BYTES_MAX} bytes without spaces or control \
             characters"
        );
    }
    let node = args.node_id.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_owned())
                .unwrap_or_else(|_| "cairn".into()),
            std::process::id()
        )
    });
    let lease = SealerLease::start(store.jetstream(), &options, node, LeaseOptions::default())
        .await
        .context("cannot contend for the sealer lease")?;
    let holding = lease.holding();
    let closing = Arc::clone(&store);
    let result = serve_store(
        args,
        &store,
        identity,
        Some(holding),
        signals,
        async move || {
            // After the final checkpoint, and while the connection is still open: another node
            // takes over at once instead of after the lease's time to live.
            lease.stop().await;
            closing.close().await
        },
    )
    .await;
    // Closing twice is harmless: this also covers a start-up failure.
    store.close().await;
    result
}

/// Serves an open store until a shutdown signal; signs the final checkpoint (when this node is
/// the sealer: `sealer` is `None` or says so) and closes the store.
async fn serve_store<S: EventStore + KeyStore>(
    args: &ServeArgs,
    store: &Arc<S>,
    identity: Arc<ServerIdentity>,
    sealer: Option<tokio::sync::watch::Receiver<bool>>,
    signals: &mut ShutdownSignals,
    close_store: impl AsyncFnOnce(),
) -> anyhow::Result<()> {
    let projections = {
        let dir = args.data.join("projections");
        tokio::task::spawn_blocking(move || Projections::open(&dir))
            .await
            .context("the projection-opening thread panicked")?
            .with_context(|| {
                format!(
                    "cannot open the read models in {}",
                    args.data.join("projections").display()
                )
            })?
    };
    let projections = Arc::new(projections);
    let bundle_source = bundle_source(args.policies.as_deref());
    let tokens_path = args
        .tokens
        .clone()
        .unwrap_or_else(|| args.data.join(TOKENS_FILE));
    let tokens = load_tokens(&tokens_path, args.tokens.is_none(), &args.data)?;
    let tls = args.tls()?;
    let listener =
        bind_listener(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the listening address")?;

    let checkpointer = Checkpointer::new(Arc::clone(store), Arc::clone(&identity));
    let checkpointer = match &sealer {
        Some(sealer) => checkpointer.gated(sealer.clone()),
        None => checkpointer,
    }
    .spawn(Duration::from_millis(args.checkpoint_interval_ms));
    let ledger = Arc::new(Ledger::new(Arc::clone(store), Arc::clone(&identity)));
    let (stop_following, following_stopped) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn({
        let (projections, store) = (Arc::clone(&projections), Arc::clone(store));
        async move {
            if let Err(error) = projections.follow(store, following_stopped).await {
                tracing::error!(%error, "the read models stopped following the ledger");
            }
        }
    });
    let feedback_loop = Arc::new(FeedbackLoop::new(
        Arc::clone(&ledger),
        Arc::new(ScoringPolicy::built_in()),
    ));
    let governance = Governance::start(
        Arc::clone(&ledger),
        bundle_source.clone(),
        Some(args.data.join(ACCESS_LOG_FILE)),
    )
    .await
    .with_context(|| format!("cannot load the policy bundle {bundle_source:?}"))?;
    let governance = Arc::new(governance.on_scoring({
        let feedback_loop = Arc::clone(&feedback_loop);
        move |scoring| feedback_loop.set_scoring(scoring)
    })?);
    // Records the repeated denials of each window once it ends, and all of them at shutdown.
    let denied_flusher = governance.spawn_denied_flusher(DENIED_FLUSH_INTERVAL);
    // Grants and revocations recorded by other nodes of a shared ledger apply here too.
    let grants_follower = governance.spawn_grants_follower();
    let active = governance.active();
    tracing::info!(
        source = %active.source,
        bundle = %cairn_ledger::Hash(active.hash()),
        git_commit = active.git_commit.as_deref().unwrap_or("-"),
        tests_passed = active.tests_passed,
        grants = active.grants.len(),
        active_model = %feedback_loop.scoring().active,
        "policy bundle in force"
    );
    let authenticator = Arc::new(Authenticator::new(tokens));
    let stewardship = Arc::new(Stewardship::new(
        Arc::clone(&ledger),
        Arc::clone(&governance),
    ));
    let services = Services {
        ledger: Arc::clone(&ledger),
        feedback_loop,
        reads: Arc::new(Reads::new(ledger, Arc::clone(&projections))),
        governance: Arc::clone(&governance),
        authenticator: Arc::clone(&authenticator),
        stewardship: Arc::clone(&stewardship),
    };
    let sweeper = (args.retention_interval_s > 0).then(|| {
        tokio::spawn(sweep_retention(
            stewardship,
            Duration::from_secs(args.retention_interval_s),
            sealer.clone(),
        ))
    });

    announce(address, &identity).context("cannot write the startup line to stdout")?;
    tracing::info!(
        %address,
        data = %args.data.display(),
        checkpoint_interval_ms = args.checkpoint_interval_ms,
        "serving"
    );

    let (shutdown_sender, shutdown_receiver) = tokio::sync::oneshot::channel::<()>();
    let mut server = Box::pin(cairn_grpc::serve_tls(
        listener,
        services,
        ServerLimits::default(),
        tls,
        async {
            let _ = shutdown_receiver.await;
        },
    ));
    let mut served = None;
    let mut hangups = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let reload = async {
        loop {
            if hangups.recv().await.is_none() {
                // No more signals can arrive: nothing to reload, ever.
                std::future::pending::<()>().await;
            }
            tracing::info!("SIGHUP: reloading the policy bundle and the token file");
            if let Err(error) = governance.reload(SERVER_ACTOR, "signal").await {
                tracing::error!(%error, "policy reload refused; the active bundle stays");
            }
            match Tokens::load(&tokens_path) {
                Ok(tokens) => authenticator.replace(tokens),
                Err(error) => {
                    tracing::error!(%error, "token file refused; the tokens in force stay")
                }
            }
        }
    };
    tokio::pin!(reload);
    tokio::select! {
        result = &mut server => served = Some(result),
        () = &mut reload => {}
        name = signals.next() => {
            tracing::info!(signal = name, "shutting down: refusing new calls, finishing calls in flight");
            let _ = shutdown_sender.send(());
            tokio::select! {
                result = &mut server => served = Some(result),
                () = tokio::time::sleep(Duration::from_millis(args.shutdown_grace_ms)) => {
                    tracing::warn!(
                        grace_ms = args.shutdown_grace_ms,
                        "calls still open after the grace period (subscriptions follow the ledger \
                         until they are ended); ending them"
                    );
                }
                name = signals.next() => {
                    tracing::warn!(signal = name, "second signal: ending the calls still open");
                }
            }
        }
    }
    // The read models stop before the store closes under them (they are rebuilt from the ledger,
    // so stopping between two batches loses nothing).
    stop_following.send_replace(true);
    if let Some(sweeper) = sweeper {
        // A sweep records each erasure before it destroys the key, so one cut here leaves at most
        // a record whose key the next sweep destroys (and records again). Stopping waits for none.
        sweeper.abort();
    }
    if let Err(error) = follower.await {
        tracing::warn!(%error, "the projection follower panicked");
    }
    // What sled still holds in memory is re-applied from the ledger on the next start if lost;
    // flushing spares that work.
    let flushed = tokio::task::spawn_blocking(move || projections.flush()).await;
    if let Ok(Err(error)) = flushed {
        tracing::warn!(%error, "cannot flush the read models");
    }
    // The server takes no new calls: the repeated denials still counted are recorded, and the
    // final checkpoint covers every record appended through it.
    denied_flusher.stop().await;
    grants_follower.abort();
    checkpointer.stop().await;
    // Closing the store ends the subscriptions still open, so their clients see the stream end
    // rather than a reset connection; give the server a moment to say so.
    close_store().await;
    if served.is_none() {
        match tokio::time::timeout(Duration::from_millis(SUBSCRIPTION_END_MS), &mut server).await {
            Ok(result) => served = Some(result),
            Err(_) => {
                tracing::warn!("connections still open after the store closed; dropping them")
            }
        }
    }
    drop(server);
    served.unwrap_or(Ok(())).context("the gRPC server failed")
}

/// Where the policy bundle comes from: `dir` if given, else `./policies` when it holds an access
/// model, else the copy built into the binary.
fn bundle_source(dir: Option<&Path>) -> BundleSource {
    match dir {
        Some(dir) => BundleSource::Dir(dir.to_owned()),
        None if Path::new(DEFAULT_POLICIES_DIR)
            .join(cairn_policy::MODEL_PATH)
            .is_file() =>
        {
            BundleSource::Dir(PathBuf::from(DEFAULT_POLICIES_DIR))
        }
        None => BundleSource::BuiltIn,
    }
}

/// The actor of what the server records on its own account (a reload on SIGHUP).
const SERVER_ACTOR: &str = "cairn";

/// The principal the periodic retention sweeper records its erasures as.
const RETENTION_SWEEPER: &str = "cairn:retention";

/// Sweeps every tenant's expired personal data every `interval`, the first time one interval after
/// start; with several nodes, only the one that holds the sealer lease sweeps.
async fn sweep_retention<S: EventStore + KeyStore>(
    stewardship: Arc<Stewardship<S>>,
    interval: Duration,
    sealer: Option<tokio::sync::watch::Receiver<bool>>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if sealer.as_ref().is_some_and(|sealer| !*sealer.borrow()) {
            continue;
        }
        match stewardship
            .run_all(RETENTION_SWEEPER, cairn_store::now().0)
            .await
        {
            Ok(reports) => {
                for (tenant, report) in reports {
                    if !report.recorded.is_empty() || !report.held.is_empty() {
                        tracing::info!(
                            %tenant,
                            erased = report.recorded.len(),
                            held = report.held.len(),
                            "retention sweep"
                        );
                    }
                }
            }
            Err(error) => tracing::error!(%error, "the retention sweep failed"),
        }
    }
}

/// The token file in the data directory when `--tokens` is not given.
const TOKENS_FILE: &str = "tokens.toml";
/// The bootstrap administrator's token, beside it.
const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The access log the dry runs replay.
const ACCESS_LOG_FILE: &str = "access.log";

/// Loads the token file. The default one (`DATA/tokens.toml`) is created on first start with
/// one administrator's token, written to `DATA/admin.token` (readable by the owner only); a
/// `--tokens` file must exist.
fn load_tokens(path: &Path, is_default: bool, data: &Path) -> anyhow::Result<Tokens> {
    if is_default && !path.exists() {
        let token = new_token();
        let admin = data.join(ADMIN_TOKEN_FILE);
        write_private(&admin, &format!("{token}\n"))
            .with_context(|| format!("cannot write {}", admin.display()))?;
        let entry = format!(
            "# Bearer tokens: only their blake3 hashes. Add one with `cairn token new`.\n{}",
            token_entry(&token, BOOTSTRAP_ADMIN, &["*".to_owned()])
        );
        write_private(path, &entry).with_context(|| format!("cannot write {}", path.display()))?;
        tracing::warn!(
            token_file = %admin.display(),
            principal = BOOTSTRAP_ADMIN,
            "first start: wrote an administrator's token; keep it secret"
        );
    }
    Tokens::load(path).with_context(|| format!("cannot load the token file {}", path.display()))
}

/// Writes a file only its owner can read, replacing it atomically.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// How long the server may take to end the subscriptions the store's closing ended, in
/// milliseconds.
const SUBSCRIPTION_END_MS: u64 = 1000;

/// Binds the listening socket (`cairn_grpc::serve` sets TCP_NODELAY on each connection it accepts).
pub fn bind_listener(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Connections the kernel queues before the server accepts them.
const LISTEN_BACKLOG: u32 = 1024;

/// Prints the one startup line and flushes it, so a reader of a pipe sees it at once.
fn announce(address: SocketAddr, identity: &ServerIdentity) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "cairn listening on {address} public-key {} log-id {}",
        identity.public_key().to_hex(),
        identity.log_id.to_hex()
    )?;
    stdout.flush()
}

/// SIGINT and SIGTERM, as one stream of shutdown requests.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    fn new() -> anyhow::Result<ShutdownSignals> {
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    /// Waits for the next signal and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
