//! `cairn signal`: record and show metric observations (`FeedbackService.RecordSignal`,
//! `GetSignal`).

use anyhow::bail;
use cairn_grpc::proto;
use clap::{Args, Subcommand};

use crate::enums::parse_enum;
use crate::loop_client::{LoopClient, Mutation, send_and_print};
use crate::loop_flags::{ReadFlags, WriteFlags, parse_time_flag};
use crate::loop_output::{print_one, signal_json, signal_text};

/// `cairn signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    #[command(subcommand)]
    command: SignalCommand,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum SignalCommand {
    /// Record a metric observation (immutable once recorded).
    Record {
        #[command(flatten)]
        write: WriteFlags,
        /// The signal's id, chosen by you.
        id: String,
        /// The metric's name (build_latency_ms, defect_rate, mttr_minutes).
        #[arg(long)]
        metric: String,
        /// The unit (ms, percent, count).
        #[arg(long, default_value = "")]
        unit: String,
        /// Which way is better: lower_is_better or higher_is_better.
        #[arg(long)]
        direction: String,
        /// The service observed.
        #[arg(long, default_value = "")]
        service: String,
        /// The team observed.
        #[arg(long, default_value = "")]
        team: String,
        /// The observation window, in seconds.
        #[arg(long, default_value_t = 0)]
        window_seconds: u64,
        /// A single value (a rate, a count, a mean).
        #[arg(long)]
        value: Option<f64>,
        /// Percentiles: all three of --p50, --p95, --p99.
        #[arg(long, requires_all = ["p95", "p99"])]
        p50: Option<f64>,
        /// The 95th percentile.
        #[arg(long, requires_all = ["p50", "p99"])]
        p95: Option<f64>,
        /// The 99th percentile.
        #[arg(long, requires_all = ["p50", "p95"])]
        p99: Option<f64>,
        /// Where it came from (prometheus, ci, survey).
        #[arg(long, default_value = "")]
        source: String,
        /// When it was observed (default: now).
        #[arg(long, value_name = "TIME", default_value = "now")]
        observed_at: String,
    },
    /// Show one signal.
    Get {
        #[command(flatten)]
        read: ReadFlags,
        /// The signal.
        id: String,
    },
}

/// Runs one `cairn signal` subcommand.
pub async fn run(args: SignalArgs) -> anyhow::Result<()> {
    match args.command {
        SignalCommand::Record {
            write,
            id,
            metric,
            unit,
            direction,
            service,
            team,
            window_seconds,
            value,
            p50,
            p95,
            p99,
            source,
            observed_at,
        } => {
            let percentiles = match (p50, p95, p99) {
                (Some(p50), Some(p95), Some(p99)) => Some(proto::Percentiles { p50, p95, p99 }),
                _ => None,
            };
            if value.is_none() && percentiles.is_none() {
                bail!("a signal needs --value, or --p50, --p95 and --p99 (or both)");
            }
            let observation = proto::Observation {
                metric,
                unit,
                direction: parse_enum::<proto::MetricDirection>("--direction", &direction)?.into(),
                service,
                team,
                window_seconds,
                value,
                percentiles,
                source,
                observed_at_micros: parse_time_flag("--observed-at", &observed_at)?,
            };
            let request = proto::RecordSignalRequest {
                meta: None,
                id,
                observation: Some(observation),
            };
            send_and_print(&write, Mutation::RecordSignal(request)).await
        }
        SignalCommand::Get { read, id } => {
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let answer = client
                .get_signal(proto::GetSignalRequest {
                    tenant: read.scope.tenant.clone(),
                    read: Some(read.scope.options()),
                    id,
                })
                .await?;
            print_one(
                read.format,
                "signal",
                answer.signal.as_ref(),
                answer.stamp.as_ref(),
                signal_text,
                signal_json,
            );
            Ok(())
        }
    }
}
