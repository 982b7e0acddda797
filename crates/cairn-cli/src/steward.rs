//! `cairn steward ...`: `StewardshipService`: retention preview and run, legal holds, erasure on
//! request and the erasure log.

use anyhow::anyhow;
use cairn_grpc::auth::AuthChannel;
use cairn_grpc::proto;
use cairn_grpc::proto::stewardship_service_client::StewardshipServiceClient;
use clap::{Args, Subcommand};

use crate::client::{ServerArgs, connect_channel, describe_status};
use crate::loop_output::{stamp_text, time_text};

/// `cairn steward`.
#[derive(Debug, Args)]
pub struct StewardArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The tenant.
    #[arg(long)]
    tenant: String,
    #[command(subcommand)]
    command: StewardCommand,
}

#[derive(Debug, Subcommand)]
enum StewardCommand {
    /// Retention of personal data: `preview` (erases nothing) or `run`.
    Retention {
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// Places a legal hold on a data subject, or on the whole tenant without `--subject`.
    Hold {
        /// The hold's id (a case reference).
        #[arg(long)]
        id: String,
        /// The data subject it covers.
        #[arg(long)]
        subject: Option<String>,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Releases a legal hold.
    Release {
        /// The hold's id.
        #[arg(long)]
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Erases a data subject's personal data in the tenant (destroys its keys).
    Erase {
        /// The data subject: a principal id.
        #[arg(long)]
        subject: String,
        /// The request's id (a ticket).
        #[arg(long)]
        request: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// The tenant's events for analysis, one JSON line each: principals as pseudonyms, personal
    /// fields left out.
    Export {
        /// The position to start from.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Most events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The erasure log, oldest first.
    Erasures {
        /// Most entries to list.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionAction {
    /// What a sweep would erase now, and what legal holds keep.
    Preview,
    /// Sweeps now.
    Run,
}

fn failed(call: &str, url: &str, status: &tonic::Status) -> anyhow::Error {
    anyhow!("{call} on {url} failed: {}", describe_status(status))
}

fn print_report(report: &proto::RetentionReport, ran: bool) {
    for rule in &report.rules {
        println!("rule  {rule}");
    }
    let verb = if ran { "erased" } else { "would erase" };
    for key in &report.erase {
        println!(
            "{verb}  key {}  {} records  {} last sealed {}  by {}",
            hex::encode(&key.key_id),
            key.records,
            key.data_class,
            time_text(key.last_sealed_micros),
            key.rule
        );
    }
    for key in &report.held {
        println!(
            "held  key {}  {} records  by legal hold {}",
            hex::encode(&key.key_id),
            key.records,
            key.held_by
        );
    }
    println!(
        "{} {verb}, {} held, {} erased before; scanned through position {}",
        report.erase.len(),
        report.held.len(),
        report.already_erased,
        report.scanned_through
    );
}

/// Runs `cairn steward ...`.
pub async fn run(args: StewardArgs) -> anyhow::Result<()> {
    let (channel, url): (AuthChannel, String) = connect_channel(&args.server).await?;
    let mut client = StewardshipServiceClient::new(channel);
    let tenant = args.tenant;
    match args.command {
        StewardCommand::Retention { action } => {
            let report = match action {
                RetentionAction::Preview => client
                    .preview_retention(proto::PreviewRetentionRequest { tenant })
                    .await
                    .map_err(|status| failed("PreviewRetention", &url, &status))?,
                RetentionAction::Run => client
                    .run_retention(proto::RunRetentionRequest { tenant })
                    .await
                    .map_err(|status| failed("RunRetention", &url, &status))?,
            }
            .into_inner();
            print_report(&report, matches!(action, RetentionAction::Run));
        }
        StewardCommand::Hold {
            id,
            subject,
            reason,
        } => {
            let receipt = client
                .place_legal_hold(proto::PlaceLegalHoldRequest {
                    tenant,
                    hold_id: id,
                    subject: subject.unwrap_or_default(),
                    reason,
                })
                .await
                .map_err(|status| failed("PlaceLegalHold", &url, &status))?
                .into_inner();
            println!("legal hold placed at position {}", receipt.position);
        }
        StewardCommand::Release { id, reason } => {
            let receipt = client
                .release_legal_hold(proto::ReleaseLegalHoldRequest {
                    tenant,
                    hold_id: id,
                    reason,
                })
                .await
                .map_err(|status| failed("ReleaseLegalHold", &url, &status))?
                .into_inner();
            println!("legal hold released at position {}", receipt.position);
        }
        StewardCommand::Erase {
            subject,
            request,
            reason,
        } => {
            let receipt = client
                .request_erasure(proto::RequestErasureRequest {
                    tenant,
                    subject,
                    request_id: request,
                    reason,
                })
                .await
                .map_err(|status| failed("RequestErasure", &url, &status))?
                .into_inner();
            println!(
                "erased {} keys ({} records); recorded at positions {:?}",
                receipt.key_ids.len(),
                receipt.records,
                receipt.recorded
            );
        }
        StewardCommand::Export { from, limit } => {
            let answer = client
                .export_events(proto::ExportEventsRequest {
                    tenant,
                    from_position: from,
                    limit,
                })
                .await
                .map_err(|status| failed("ExportEvents", &url, &status))?
                .into_inner();
            for event in &answer.events {
                let payload = if event.json.is_empty() {
                    "null"
                } else {
                    event.json.as_str()
                };
                println!(
                    "{{\"position\":{},\"recorded_at_micros\":{},\"stream\":\"{}/{}\",\"event_type\":\"{}\",\"actor\":\"{}\",\"data_class\":\"{}\",\"payload\":{payload}}}",
                    event.position,
                    event.recorded_at_micros,
                    event.aggregate_type,
                    event.aggregate_id,
                    event.event_type,
                    event.actor,
                    event.data_class,
                );
            }
            if answer.next_position != 0 {
                eprintln!("more: go on with --from {}", answer.next_position);
            }
        }
        StewardCommand::Erasures { limit } => {
            let answer = client
                .list_erasures(proto::ListErasuresRequest {
                    tenant,
                    page: Some(proto::PageRequest {
                        page_size: limit,
                        page_token: String::new(),
                    }),
                })
                .await
                .map_err(|status| failed("ListErasures", &url, &status))?
                .into_inner();
            for entry in &answer.entries {
                let cause = match &entry.cause {
                    Some(proto::erasure_log_entry::Cause::Rule(rule)) => format!("rule {rule}"),
                    Some(proto::erasure_log_entry::Cause::RequestId(id)) => {
                        format!("request {id}: {}", entry.reason)
                    }
                    None => "unknown cause".into(),
                };
                println!(
                    "{:>8}  {}  {}  key {}  {}{} records  {cause}",
                    entry.position,
                    time_text(entry.recorded_at_micros),
                    entry.actor,
                    hex::encode(&entry.key_id),
                    if entry.subject.is_empty() {
                        String::new()
                    } else {
                        format!("subject {}  ", entry.subject)
                    },
                    entry.records
                );
            }
            println!("{}", stamp_text(answer.stamp.as_ref()));
        }
    }
    Ok(())
}
