//! `cairn tail`: follow the ledger. Catches up from a position, then prints records as they are
//! appended, until Ctrl-C. A subscriber the server cuts off for falling behind
//! (RESOURCE_EXHAUSTED with `cairn-resume-from`) resubscribes from where it was cut, so no record
//! is skipped or printed twice.

use std::io::Write;

use anyhow::{Context, bail};
use cairn_grpc::proto;
use clap::Args;
use tonic::Code;

use crate::client::{Client, ServerArgs, describe_status, resume_from};
use crate::read::RecordFormat;

/// `cairn tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// The first position to print. Default: the next record appended (the current head + 1).
    #[arg(long)]
    from: Option<u64>,

    /// Include personal data (opened by the server where the caller may).
    #[arg(long)]
    personal: bool,

    /// One JSON object per line instead of one line of text per record.
    #[arg(long)]
    json: bool,
}

/// Follows until Ctrl-C (exit 0) or until the subscription fails (exit non-zero, saying where to
/// resume).
pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let format = RecordFormat::from_json_flag(args.json);
    let mut client = Client::connect(&args.server).await?;
    let from = match args.from {
        Some(from) => from.max(1),
        None => client.log_info().await?.head_position + 1,
    };
    eprintln!(
        "following {} from position {from} (Ctrl-C to stop)",
        client.server()
    );
    let mut next = from;
    tokio::select! {
        result = follow(&mut client, &mut next, &args, format) => result,
        signal = tokio::signal::ctrl_c() => {
            signal.context("cannot listen for Ctrl-C")?;
            eprintln!("stopped; the next position is {next}");
            Ok(())
        }
    }
}

/// Subscribes from `*next`, prints, and keeps `*next` at the first position not yet printed;
/// resubscribes when the server cuts the subscription off for falling behind.
async fn follow(
    client: &mut Client,
    next: &mut u64,
    args: &TailArgs,
    format: RecordFormat,
) -> anyhow::Result<()> {
    loop {
        let request = proto::SubscribeRequest {
            from_position: *next,
            include_personal: args.personal,
        };
        let mut stream = match client.subscribe(request).await {
            Ok(stream) => stream,
            Err(status) => {
                return Err(client.call_failed(&format!("Subscribe from position {next}"), &status));
            }
        };
        let status = loop {
            match stream.message().await {
                Ok(Some(message)) => {
                    let Some(record) = message.record else {
                        bail!(
                            "the server sent a subscription message without a record after position {}",
                            *next - 1
                        );
                    };
                    if record.position != *next {
                        bail!(
                            "the subscription on {} delivered position {} where position {next} was expected",
                            client.server(),
                            record.position
                        );
                    }
                    let mut stdout = std::io::stdout().lock();
                    format.write(&mut stdout, &record)?;
                    stdout.flush().context("cannot write to stdout")?;
                    *next += 1;
                }
                Ok(None) => bail!(
                    "the server {} ended the subscription; resume with --from {next}",
                    client.server()
                ),
                Err(status) => break status,
            }
        };
        match (status.code(), resume_from(&status)) {
            (Code::ResourceExhausted, Some(resume)) => {
                // Records arrive in order and the cut-off comes after the last one sent, so the
                // server's resume position is `next`. Should they ever differ, our own count is
                // what was printed: resuming from it neither repeats nor skips a record.
                if resume != *next {
                    tracing::warn!(
                        resume,
                        next = *next,
                        "the server's resume position differs from the next position to print; resuming from the latter"
                    );
                }
                eprintln!(
                    "tail: the server cut the subscription off ({}); resubscribing from position {next}",
                    status.message()
                );
            }
            _ => bail!(
                "Subscribe on {} failed after position {}: {}; resume with --from {next}",
                client.server(),
                *next - 1,
                describe_status(&status)
            ),
        }
    }
}
