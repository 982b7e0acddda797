//! `cairn sweep-aging`: run the aging rules over a tenant's open opportunities now
//! (`PrioritizationService.AgeOut`), page after page, and say what aged out and by which rule.

use cairn_grpc::proto;
use clap::Args;

use crate::loop_client::LoopClient;
use crate::loop_flags::{Format, WriteFlags};
use crate::loop_output::{json_array, receipt_json, receipt_text};
use crate::output::JsonObject;

/// `cairn sweep-aging`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    write: WriteFlags,

    /// Only this team's opportunities.
    #[arg(long)]
    team: Option<String>,

    /// Candidates examined per call (0: 100; at most 500).
    #[arg(long, value_name = "N", default_value_t = 0)]
    page_size: u32,
}

/// What a whole sweep did.
#[derive(Debug, Default)]
pub struct Sweep {
    /// The opportunities that aged out, in the order examined.
    pub aged_out: Vec<proto::AgedOutResult>,
    /// How many candidates were examined.
    pub examined: u64,
}

/// Runs the sweep to its last page. Every page goes under the same command metadata, so a retry
/// with the same idempotency key records nothing twice.
pub async fn sweep_aging(
    client: &mut LoopClient,
    meta: proto::CommandMeta,
    team: &str,
    page_size: u32,
) -> anyhow::Result<Sweep> {
    let mut sweep = Sweep::default();
    let mut page_token = String::new();
    loop {
        let answer = client
            .age_out(proto::AgeOutRequest {
                meta: Some(meta.clone()),
                team: team.to_owned(),
                page: Some(proto::PageRequest {
                    page_size,
                    page_token: page_token.clone(),
                }),
            })
            .await?;
        sweep.examined += u64::from(answer.examined);
        sweep.aged_out.extend(answer.aged_out);
        page_token = answer
            .page
            .map(|page| page.next_page_token)
            .unwrap_or_default();
        if page_token.is_empty() {
            return Ok(sweep);
        }
    }
}

/// `opp-9 aged out by rule idle v1: no new evidence for 120 days ...` and its receipt.
pub fn aged_out_result_text(result: &proto::AgedOutResult) -> String {
    let receipt = result.receipt.as_ref().map_or_else(String::new, |receipt| {
        format!("\n  {}", receipt_text(receipt))
    });
    format!(
        "{} aged out by rule {} v{}: {}{receipt}",
        result.opportunity_id, result.rule, result.rule_version, result.reason
    )
}

/// Runs the sweep and prints what aged out.
pub async fn run(args: SweepArgs) -> anyhow::Result<()> {
    let mut client = LoopClient::connect(&args.write.server).await?;
    let team = args.team.unwrap_or_default();
    let sweep = sweep_aging(&mut client, args.write.meta(), &team, args.page_size).await?;
    match args.write.format {
        Format::Text => {
            for result in &sweep.aged_out {
                println!("{}", aged_out_result_text(result));
            }
            println!(
                "{} examined, {} aged out",
                sweep.examined,
                sweep.aged_out.len()
            );
        }
        Format::Json => {
            let results = sweep.aged_out.iter().map(|result| {
                JsonObject::new()
                    .string("opportunity_id", &result.opportunity_id)
                    .string("rule", &result.rule)
                    .number("rule_version", result.rule_version)
                    .string("reason", &result.reason)
                    .raw(
                        "receipt",
                        &result
                            .receipt
                            .as_ref()
                            .map_or_else(|| "null".to_owned(), receipt_json),
                    )
                    .finish()
            });
            println!(
                "{}",
                JsonObject::new()
                    .number("examined", sweep.examined)
                    .raw("aged_out", &json_array(results))
                    .finish()
            );
        }
    }
    Ok(())
}
