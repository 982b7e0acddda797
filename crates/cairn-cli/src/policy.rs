//! `cairn policy ...`: the access policy. `test` runs a bundle's own policy tests offline (no
//! server); the others are `PolicyService` calls. And `cairn token new`, which makes a bearer
//! token and the token-file entry that accepts it.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use cairn_grpc::proto;
use cairn_grpc::proto::policy_service_client::PolicyServiceClient;
use clap::{Args, Subcommand};

use crate::client::{ServerArgs, connect_channel, describe_status};
use crate::loop_output::{stamp_text, time_text};
use crate::timespec::{now_micros, parse_time};

/// `cairn policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Runs a bundle's own policy tests (`tests/*.csv`) against its access policy, offline; exits
    /// non-zero if any row fails, naming file and line.
    Test {
        /// The bundle: a `policies/` folder.
        #[arg(long, default_value = "./policies")]
        dir: PathBuf,
    },
    /// Asks the server whether a principal may do an action on an object in a tenant, and why.
    Check {
        #[command(flatten)]
        server: ServerArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The principal asked about.
        #[arg(long)]
        principal: String,
        /// ledger, feedback, signal, opportunity, decision, initiative, lineage, personal,
        /// policy, access, audit, stewardship, actor.
        #[arg(long)]
        object: String,
        /// read, write, triage, decide, grant, admin, test, erase, act_for.
        #[arg(long)]
        action: String,
    },
    /// The bundle in force: hash, source, git commit, files.
    Bundle {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Loads the bundle again where the server loaded it from (the server refuses a bundle that
    /// does not parse or fails its own tests, and keeps the active one).
    Reload {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Replays the requests the server recorded in a period against a proposed bundle (a folder
    /// on the server's machine) and lists every allow/deny flip.
    DryRun {
        #[command(flatten)]
        server: ServerArgs,
        /// The proposed bundle, as a path on the server's machine.
        #[arg(long)]
        dir: String,
        /// Start of the period (`2026-11-01`, `-7d`, ...); default: everything recorded.
        #[arg(long)]
        from: Option<String>,
        /// End of the period (exclusive); default: now.
        #[arg(long)]
        to: Option<String>,
        /// Most flips to list.
        #[arg(long, default_value_t = 1000)]
        flips_max: u32,
    },
    /// Gives a principal a role in a tenant (`*`: every tenant), recorded as an event.
    Grant(GrantArgs),
    /// Takes a runtime grant back.
    Revoke(GrantArgs),
    /// The calls denied in a tenant, oldest first (repeats of a call within a minute are one
    /// line with their count, once the minute is over).
    Denied {
        #[command(flatten)]
        server: ServerArgs,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Most calls to list.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Args)]
struct GrantArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The tenant, or `*`.
    #[arg(long)]
    tenant: String,
    /// Who.
    #[arg(long)]
    principal: String,
    /// The role: `role:NAME`.
    #[arg(long)]
    role: String,
    /// Why (recorded).
    #[arg(long)]
    reason: String,
}

async fn client(
    server: &ServerArgs,
) -> anyhow::Result<(PolicyServiceClient<cairn_grpc::auth::AuthChannel>, String)> {
    let (channel, url) = connect_channel(server).await?;
    Ok((PolicyServiceClient::new(channel), url))
}

fn failed(call: &str, url: &str, status: &tonic::Status) -> anyhow::Error {
    anyhow!("{call} on {url} failed: {}", describe_status(status))
}

fn verdict_text(verdict: Option<&proto::Verdict>) -> String {
    let Some(verdict) = verdict else {
        return "no verdict".into();
    };
    let mut text = if verdict.allowed { "allow" } else { "deny" }.to_owned();
    if !verdict.rule.is_empty() {
        text.push_str(&format!(" by {}", verdict.rule));
    }
    text.push_str(&format!(": {}", verdict.reason));
    text
}

/// Runs `cairn policy ...`.
pub async fn run(args: PolicyArgs) -> anyhow::Result<()> {
    match args.command {
        PolicyCommand::Test { dir } => test(dir).await,
        PolicyCommand::Check {
            server,
            tenant,
            principal,
            object,
            action,
        } => {
            let (mut client, url) = client(&server).await?;
            let answer = client
                .check(proto::CheckRequest {
                    tenant: tenant.clone(),
                    request: Some(proto::AccessRequest {
                        principal,
                        tenant,
                        object,
                        action,
                    }),
                })
                .await
                .map_err(|status| failed("Check", &url, &status))?
                .into_inner();
            println!("{}", verdict_text(answer.verdict.as_ref()));
            println!("bundle {}", hex::encode(&answer.bundle_hash));
            Ok(())
        }
        PolicyCommand::Bundle { server } => {
            let (mut client, url) = client(&server).await?;
            let bundle = client
                .get_active_bundle(proto::GetActiveBundleRequest {})
                .await
                .map_err(|status| failed("GetActiveBundle", &url, &status))?
                .into_inner();
            println!("bundle        {}", hex::encode(&bundle.bundle_hash));
            println!("source        {}", bundle.source);
            if !bundle.git_commit.is_empty() {
                println!("git commit    {}", bundle.git_commit);
            }
            println!("activated at  position {}", bundle.activated_at_position);
            println!("policy tests  {} passed", bundle.tests_passed);
            println!("grants        {}", bundle.grants);
            for file in &bundle.files {
                println!(
                    "  {}  {:>8} bytes  {}",
                    &hex::encode(&file.hash)[..16],
                    file.size_bytes,
                    file.path
                );
            }
            Ok(())
        }
        PolicyCommand::Reload { server } => {
            let (mut client, url) = client(&server).await?;
            let answer = client
                .reload(proto::ReloadRequest {})
                .await
                .map_err(|status| failed("Reload", &url, &status))?
                .into_inner();
            if answer.changed {
                println!(
                    "activated {} at position {}",
                    hex::encode(&answer.bundle_hash),
                    answer.position
                );
            } else {
                println!(
                    "unchanged: {} stays in force",
                    hex::encode(&answer.bundle_hash)
                );
            }
            Ok(())
        }
        PolicyCommand::DryRun {
            server,
            dir,
            from,
            to,
            flips_max,
        } => {
            let now = now_micros();
            let period = proto::TimeRange {
                from_micros: from
                    .map(|text| parse_time("--from", &text, now))
                    .transpose()?
                    .unwrap_or(0),
                to_micros: to
                    .map(|text| parse_time("--to", &text, now))
                    .transpose()?
                    .unwrap_or(0),
            };
            let (mut client, url) = client(&server).await?;
            let answer = client
                .dry_run(proto::DryRunRequest {
                    bundle_dir: dir,
                    period: Some(period),
                    flips_max,
                })
                .await
                .map_err(|status| failed("DryRun", &url, &status))?
                .into_inner();
            println!("proposed bundle {}", hex::encode(&answer.proposed_hash));
            if answer.tests_pass {
                println!("its policy tests pass");
            } else {
                println!("its policy tests FAIL:");
                for failure in &answer.test_failures {
                    println!("  {failure}");
                }
            }
            println!(
                "{} distinct requests replayed ({} recorded request-minutes)",
                answer.requests_replayed, answer.requests_recorded
            );
            println!(
                "{} flips{}",
                answer.flips.len(),
                if answer.truncated { " (truncated)" } else { "" }
            );
            for flip in &answer.flips {
                let request = flip.request.clone().unwrap_or_default();
                println!(
                    "  {} {} {} {}: {} -> {} (seen in {} minutes)",
                    request.principal,
                    request.tenant,
                    request.object,
                    request.action,
                    verdict_text(flip.was.as_ref()),
                    verdict_text(flip.becomes.as_ref()),
                    flip.count
                );
            }
            Ok(())
        }
        PolicyCommand::Grant(grant) => change_grant(grant, true).await,
        PolicyCommand::Revoke(grant) => change_grant(grant, false).await,
        PolicyCommand::Denied {
            server,
            tenant,
            limit,
        } => {
            let (mut client, url) = client(&server).await?;
            let answer = client
                .list_denied(proto::ListDeniedRequest {
                    tenant,
                    page: Some(proto::PageRequest {
                        page_size: limit,
                        page_token: String::new(),
                    }),
                })
                .await
                .map_err(|status| failed("ListDenied", &url, &status))?
                .into_inner();
            for call in &answer.calls {
                // A repeated record stands for `repeats` more denials of its call in one window.
                let repeats = if call.repeats == 0 {
                    String::new()
                } else {
                    format!(
                        "  repeated {} more times from {} to {}",
                        call.repeats,
                        time_text(call.first_repeat_at_micros),
                        time_text(call.last_repeat_at_micros)
                    )
                };
                println!(
                    "{:>8}  {}  {}  {}  {} {}  tenant {}{repeats}",
                    call.position,
                    time_text(call.recorded_at_micros),
                    call.principal,
                    call.method,
                    call.object,
                    call.action,
                    call.tenant
                );
            }
            println!("{}", stamp_text(answer.stamp.as_ref()));
            Ok(())
        }
    }
}

async fn change_grant(grant: GrantArgs, give: bool) -> anyhow::Result<()> {
    let (mut client, url) = client(&grant.server).await?;
    let answer = if give {
        client
            .grant(proto::GrantRequest {
                tenant: grant.tenant,
                principal: grant.principal,
                role: grant.role,
                reason: grant.reason,
            })
            .await
            .map_err(|status| failed("Grant", &url, &status))?
    } else {
        client
            .revoke(proto::RevokeRequest {
                tenant: grant.tenant,
                principal: grant.principal,
                role: grant.role,
                reason: grant.reason,
            })
            .await
            .map_err(|status| failed("Revoke", &url, &status))?
    }
    .into_inner();
    println!(
        "{} at position {}",
        if give { "granted" } else { "revoked" },
        answer.position
    );
    Ok(())
}

async fn test(dir: PathBuf) -> anyhow::Result<()> {
    let report = tokio::task::spawn_blocking(move || {
        let bundle = cairn_policy::Bundle::load_dir(&dir)
            .with_context(|| format!("cannot load the policy bundle {}", dir.display()))?;
        let report = cairn_policy::run_tests(&bundle)
            .with_context(|| format!("cannot read the policy tests of {}", dir.display()))?;
        anyhow::Ok((report, bundle.hash()))
    })
    .await
    .context("the policy-test thread panicked")??;
    let (report, hash) = report;
    let failures = report.failures().count();
    println!("bundle {}", hex::encode(hash));
    if failures > 0 {
        print!("{report}");
        bail!("{failures} of {} policy tests failed", report.cases.len());
    }
    println!("{} policy tests passed", report.cases.len());
    Ok(())
}

/// `cairn token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Makes a new bearer token. Prints the token (give it to its holder; it is shown only now)
    /// and the entry to add to the server's token file (which holds only its hash).
    New {
        /// The principal the token authenticates.
        #[arg(long)]
        principal: String,
        /// The tenants it may be used in, comma-separated, or `*`.
        #[arg(long, value_delimiter = ',', required = true)]
        tenants: Vec<String>,
    },
}

/// Runs `cairn token ...`.
pub fn run_token(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::New { principal, tenants } => {
            let token = cairn_service::tokens::new_token();
            let entry = cairn_service::tokens::token_entry(&token, &principal, &tenants);
            // Check the entry as the server will read it.
            cairn_service::tokens::Tokens::parse(&entry)
                .map_err(|reason| anyhow!("the token entry would be refused: {reason}"))?;
            println!("token: {token}");
            println!();
            println!("# add to the server's token file, then send it SIGHUP:");
            print!("{entry}");
            Ok(())
        }
    }
}
