//! `cairn initiative`: create initiatives and move them through their states, add and close
//! milestones, and read them (`InitiativeService`).

use cairn_grpc::proto;
use clap::{Args, Subcommand};

use crate::enums::parse_filter;
use crate::loop_client::{LoopClient, Mutation, send_and_print};
use crate::loop_flags::{PageFlags, ReadFlags, WriteFlags, collect_pages, parse_time_flag};
use crate::loop_output::{
    initiative_json, initiative_line, initiative_text, print_list, print_one,
};

/// `cairn initiative`.
#[derive(Debug, Args)]
pub struct InitiativeArgs {
    #[command(subcommand)]
    command: InitiativeCommand,
}

/// A command that names only the initiative.
#[derive(Debug, Args)]
struct Named {
    #[command(flatten)]
    write: WriteFlags,
    /// The initiative.
    id: String,
}

/// A command that names the initiative and gives a reason.
#[derive(Debug, Args)]
struct WithReason {
    #[command(flatten)]
    write: WriteFlags,
    /// The initiative.
    id: String,
    /// Why.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Subcommand)]
enum InitiativeCommand {
    /// Record a new initiative as a draft.
    Create {
        #[command(flatten)]
        write: WriteFlags,
        /// The initiative's id, chosen by you.
        id: String,
        /// Its title.
        #[arg(long)]
        title: String,
        /// What it aims at.
        #[arg(long, default_value = "")]
        goal: String,
        /// An owner (a principal id); repeat for several.
        #[arg(long = "owner", value_name = "PRINCIPAL", required = true)]
        owners: Vec<String>,
        /// The owning team.
        #[arg(long)]
        team: String,
        /// A metric target or scorecard level, in words.
        #[arg(long, default_value = "")]
        target: String,
        /// Its scope.
        #[arg(long, default_value = "")]
        scope: String,
        /// When it starts (2026-02-01, RFC 3339, or +7d).
        #[arg(long, value_name = "TIME")]
        start: String,
        /// When it should be done.
        #[arg(long, value_name = "TIME")]
        target_date: String,
        /// An opportunity it implements; repeat for several.
        #[arg(long = "implements", value_name = "ID")]
        implements: Vec<String>,
        /// A business outcome tag; repeat for several.
        #[arg(long = "outcome-tag", value_name = "TAG")]
        outcome_tags: Vec<String>,
        /// open, team or restricted (default open).
        #[arg(long)]
        visibility: Option<String>,
    },
    /// Schedule it: draft -> scheduled.
    Schedule(Named),
    /// Start it: scheduled -> in_progress.
    Start(Named),
    /// Flag it at risk, with a reason.
    Risk(WithReason),
    /// Clear the at-risk flag.
    ClearRisk(Named),
    /// Complete it: in_progress -> completed.
    Complete(Named),
    /// Cancel it, with a reason.
    Cancel(WithReason),
    /// Add an opportunity it implements.
    Implement {
        #[command(flatten)]
        write: WriteFlags,
        /// The initiative.
        id: String,
        /// The opportunity.
        #[arg(long, value_name = "ID")]
        opportunity: String,
    },
    /// Add, meet or miss a milestone.
    Milestone {
        #[command(subcommand)]
        command: MilestoneCommand,
    },
    /// Show one initiative, with its milestones.
    Get {
        #[command(flatten)]
        read: ReadFlags,
        /// The initiative.
        id: String,
    },
    /// List initiatives, soonest target date first.
    List {
        #[command(flatten)]
        read: ReadFlags,
        #[command(flatten)]
        page: PageFlags,
        /// Only this status: draft, scheduled, in_progress, completed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
        /// Only those flagged at risk (true) or not (false).
        #[arg(long, value_name = "BOOL")]
        at_risk: Option<bool>,
        /// Only those listing this owner.
        #[arg(long, value_name = "PRINCIPAL")]
        owner: Option<String>,
        /// Only those implementing this opportunity.
        #[arg(long, value_name = "ID")]
        opportunity: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum MilestoneCommand {
    /// Add a milestone.
    Add {
        #[command(flatten)]
        write: WriteFlags,
        /// The initiative.
        id: String,
        /// The milestone's name, unique within the initiative.
        name: String,
        /// When it is due.
        #[arg(long, value_name = "TIME")]
        due: String,
        /// What must hold for it to be met.
        #[arg(long, default_value = "")]
        exit_criteria: String,
    },
    /// Mark an open milestone met.
    Met {
        #[command(flatten)]
        write: WriteFlags,
        /// The initiative.
        id: String,
        /// The milestone.
        name: String,
        /// The signal that verifies it.
        #[arg(long, value_name = "ID")]
        signal: Option<String>,
    },
    /// Mark an open milestone missed (once its due date is past).
    Missed {
        #[command(flatten)]
        write: WriteFlags,
        /// The initiative.
        id: String,
        /// The milestone.
        name: String,
    },
}

/// Runs a command that names only the initiative.
async fn named(named: Named, build: fn(String) -> Mutation) -> anyhow::Result<()> {
    send_and_print(&named.write, build(named.id)).await
}

/// Runs a command that names the initiative and gives a reason.
async fn with_reason(
    args: WithReason,
    build: fn(String, String) -> Mutation,
) -> anyhow::Result<()> {
    send_and_print(&args.write, build(args.id, args.reason)).await
}

/// Runs one `cairn initiative` subcommand.
pub async fn run(args: InitiativeArgs) -> anyhow::Result<()> {
    use InitiativeCommand as C;
    match args.command {
        C::Create {
            write,
            id,
            title,
            goal,
            owners,
            team,
            target,
            scope,
            start,
            target_date,
            implements,
            outcome_tags,
            visibility,
        } => {
            let draft = proto::InitiativeDraft {
                title,
                goal,
                owners,
                team,
                target,
                scope,
                start_micros: parse_time_flag("--start", &start)?,
                target_date_micros: parse_time_flag("--target-date", &target_date)?,
                implements,
                outcome_tags,
                visibility: parse_filter::<proto::Visibility>(
                    "--visibility",
                    visibility.as_deref(),
                )?,
            };
            let request = proto::CreateInitiativeRequest {
                meta: None,
                id,
                draft: Some(draft),
            };
            send_and_print(&write, Mutation::CreateInitiative(request)).await
        }
        C::Schedule(args) => {
            named(args, |id| {
                Mutation::Schedule(proto::ScheduleInitiativeRequest { meta: None, id })
            })
            .await
        }
        C::Start(args) => {
            named(args, |id| {
                Mutation::Start(proto::StartInitiativeRequest { meta: None, id })
            })
            .await
        }
        C::ClearRisk(args) => {
            named(args, |id| {
                Mutation::ClearRisk(proto::ClearInitiativeRiskRequest { meta: None, id })
            })
            .await
        }
        C::Complete(args) => {
            named(args, |id| {
                Mutation::Complete(proto::CompleteInitiativeRequest { meta: None, id })
            })
            .await
        }
        C::Risk(args) => {
            with_reason(args, |id, reason| {
                Mutation::FlagRisk(proto::FlagInitiativeRiskRequest {
                    meta: None,
                    id,
                    reason,
                })
            })
            .await
        }
        C::Cancel(args) => {
            with_reason(args, |id, reason| {
                Mutation::Cancel(proto::CancelInitiativeRequest {
                    meta: None,
                    id,
                    reason,
                })
            })
            .await
        }
        C::Implement {
            write,
            id,
            opportunity,
        } => {
            let request = proto::ImplementOpportunityRequest {
                meta: None,
                id,
                opportunity_id: opportunity,
            };
            send_and_print(&write, Mutation::Implement(request)).await
        }
        C::Milestone { command } => run_milestone(command).await,
        C::Get { read, id } => {
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let answer = client
                .get_initiative(proto::GetInitiativeRequest {
                    tenant: read.scope.tenant.clone(),
                    read: Some(read.scope.options()),
                    id,
                })
                .await?;
            print_one(
                read.format,
                "initiative",
                answer.initiative.as_ref(),
                answer.stamp.as_ref(),
                initiative_text,
                initiative_json,
            );
            Ok(())
        }
        C::List {
            read,
            page,
            status,
            team,
            at_risk,
            owner,
            opportunity,
        } => {
            let template = proto::ListInitiativesRequest {
                tenant: read.scope.tenant.clone(),
                read: Some(read.scope.options()),
                page: None,
                status: parse_filter::<proto::InitiativeStatus>("--status", status.as_deref())?,
                team: team.unwrap_or_default(),
                at_risk,
                owner: owner.unwrap_or_default(),
                opportunity_id: opportunity.unwrap_or_default(),
            };
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let pages = collect_pages(&page, async |page| {
                let answer = client
                    .list_initiatives(proto::ListInitiativesRequest {
                        page: Some(page),
                        ..template.clone()
                    })
                    .await?;
                Ok((answer.initiatives, answer.page, answer.stamp))
            })
            .await?;
            print_list(
                read.format,
                "initiatives",
                &pages.items,
                &pages.next_page_token,
                pages.stamp.as_ref(),
                initiative_line,
                initiative_json,
            );
            Ok(())
        }
    }
}

async fn run_milestone(command: MilestoneCommand) -> anyhow::Result<()> {
    match command {
        MilestoneCommand::Add {
            write,
            id,
            name,
            due,
            exit_criteria,
        } => {
            let request = proto::AddMilestoneRequest {
                meta: None,
                id,
                name,
                due_micros: parse_time_flag("--due", &due)?,
                exit_criteria,
            };
            send_and_print(&write, Mutation::AddMilestone(request)).await
        }
        MilestoneCommand::Met {
            write,
            id,
            name,
            signal,
        } => {
            let request = proto::MeetMilestoneRequest {
                meta: None,
                id,
                name,
                signal_id: signal.unwrap_or_default(),
            };
            send_and_print(&write, Mutation::MeetMilestone(request)).await
        }
        MilestoneCommand::Missed { write, id, name } => {
            let request = proto::MissMilestoneRequest {
                meta: None,
                id,
                name,
            };
            send_and_print(&write, Mutation::MissMilestone(request)).await
        }
    }
}
