//! `cairn`: the one binary of the cairn ledger.
//!
//! `cairn serve` runs a single-machine server on the embedded store (segment files plus sled
//! indexes in one data directory) and signs checkpoints of its Merkle tree. The other subcommands
//! are gRPC clients of such a server: append and read raw events, follow the ledger, fetch and
//! save signed checkpoints, and audit it, online against a checkpoint saved earlier and a pinned
//! public key, or offline from a stopped server's segment files.
//!
//! This file only parses the command line, sets up logging and dispatches; each subcommand lives
//! in its own module. Results go to stdout, logs and progress to stderr, so output can be piped.
//! A failure exits non-zero with one message saying what failed and where.

mod append;
mod checkpoint;
mod checkpoint_file;
mod client;
mod decision;
mod demo;
mod enums;
mod feedback;
mod info;
mod initiative;
mod input;
mod lineage;
mod loop_client;
mod loop_flags;
mod loop_output;
mod opportunity;
mod output;
mod policy;
mod read;
mod report;
mod serve;
mod signal;
mod steward;
mod sweep;
mod tail;
#[cfg(test)]
mod test_server;
mod timespec;
mod verify;
mod why;

/// sled allocates and frees a node copy on every insert, and the server decodes many small
/// messages: mimalloc more than doubles the read models' rebuild speed over glibc's allocator
/// (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// An append-only, tamper-evident event ledger served over gRPC.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, propagate_version = true)]
struct Cli {
    /// Log filter for stderr (`info`, `debug`, `cairn_store_embedded=trace`, ...). Overrides
    /// RUST_LOG; without either, `serve` logs at info and clients at warn.
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server until SIGINT or SIGTERM: on the embedded store, or as one node of a ledger on
    /// NATS JetStream (`--store nats://...`).
    Serve(serve::ServeArgs),
    /// Append events to one stream.
    Append(append::AppendArgs),
    /// Read records of the whole ledger or of one stream.
    Read(read::ReadArgs),
    /// Follow the ledger as records are appended.
    Tail(tail::TailArgs),
    /// Show, check and save the latest signed checkpoint.
    Checkpoint(checkpoint::CheckpointArgs),
    /// Show the log id, the public key to pin, the head and the server's limits.
    Info(info::InfoArgs),
    /// Audit a ledger: online against a saved checkpoint, or offline from a data directory.
    Verify(verify::VerifyArgs),
    /// Feedback items: submit, link, discard, get, list.
    Feedback(feedback::FeedbackArgs),
    /// Metric signals: record, get.
    Signal(signal::SignalArgs),
    /// Opportunities: triage, votes, ratings, scores, the ranking and why.
    Opportunity(opportunity::OpportunityArgs),
    /// Decision records: propose, accept, supersede, and read them.
    Decision(decision::DecisionArgs),
    /// Initiatives and their milestones.
    Initiative(initiative::InitiativeArgs),
    /// Run the aging rules over a tenant's open opportunities now.
    SweepAging(sweep::SweepArgs),
    /// The lineage graph around an entity, as Mermaid, Graphviz, JSON or text.
    Lineage(lineage::LineageArgs),
    /// The chain of ledger records behind an entity.
    Why(why::WhyArgs),
    /// What became of a feedback item.
    WhatHappened(why::WhatHappenedArgs),
    /// Reports: `status` writes a Markdown status report of a period.
    Report(report::ReportArgs),
    /// Load a realistic data set through the API, then answer the domain's questions.
    Demo(demo::DemoArgs),
    /// The access policy: run its tests, check, show, reload, grant, revoke, dry-run, denied calls.
    Policy(policy::PolicyArgs),
    /// Bearer tokens: make a new one and its token-file entry.
    Token(policy::TokenArgs),
    /// Stewardship of personal data: retention preview and run, legal holds, erasure, its log.
    Steward(steward::StewardArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    if let Err(error) = init_logging(cli.log.as_deref(), default_level) {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Append(args) => append::run(args).await,
            Command::Read(args) => read::run(args).await,
            Command::Tail(args) => tail::run(args).await,
            Command::Checkpoint(args) => checkpoint::run(args).await,
            Command::Info(args) => info::run(args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Feedback(args) => feedback::run(args).await,
            Command::Signal(args) => signal::run(args).await,
            Command::Opportunity(args) => opportunity::run(args).await,
            Command::Decision(args) => decision::run(args).await,
            Command::Initiative(args) => initiative::run(args).await,
            Command::SweepAging(args) => sweep::run(args).await,
            Command::Lineage(args) => lineage::run(args).await,
            Command::Why(args) => why::run_why(args).await,
            Command::WhatHappened(args) => why::run_what_happened(args).await,
            Command::Report(args) => report::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Policy(args) => policy::run(args).await,
            Command::Token(args) => policy::run_token(args),
            Command::Steward(args) => steward::run(args).await,
        }
    });
    // Connection tasks or a blocking store thread may outlive the command; do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `cairn read --all | head` closes stdout early: that is the reader's choice, not a failure.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated like anyhow's `{:#}`, but without a cause that
/// repeats the one before it (tonic's transport errors name their cause twice).
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if message == previous {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
        previous = message;
    }
    text
}

/// Logs go to stderr: stdout carries results (and `serve`'s one startup line) only.
fn init_logging(filter: Option<&str>, default_level: &str) -> anyhow::Result<()> {
    let filter = match filter {
        Some(filter) => EnvFilter::try_new(filter)
            .map_err(|error| anyhow::anyhow!("invalid --log filter {filter:?}: {error}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    Ok(())
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
