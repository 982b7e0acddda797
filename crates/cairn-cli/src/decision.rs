//! `cairn decision`: propose, revise, accept, reject and deprecate decision records, and read them
//! and what superseded what (`DecisionService`).

use cairn_grpc::proto;
use clap::{Args, Subcommand};

use crate::enums::{parse_enum, parse_filter};
use crate::loop_client::{LoopClient, Mutation, send_and_print};
use crate::loop_flags::{
    PageFlags, ReadFlags, WriteFlags, collect_pages, parse_entity, time_range,
};
use crate::loop_output::{
    decision_json, decision_line, decision_text, print_list, print_one, supersession_json,
    supersession_line,
};

/// `cairn decision`.
#[derive(Debug, Args)]
pub struct DecisionArgs {
    #[command(subcommand)]
    command: DecisionCommand,
}

/// The content of a decision record, for propose and revise (revise replaces it whole).
#[derive(Debug, Args)]
struct ContentFlags {
    /// triage, prioritisation, architecture, experiment or waiver.
    #[arg(long)]
    kind: String,
    /// Its title.
    #[arg(long)]
    title: String,
    /// The team that owns it.
    #[arg(long)]
    team: String,
    /// The situation.
    #[arg(long, default_value = "")]
    context: String,
    /// A force behind it; repeat for several.
    #[arg(long = "driver", value_name = "TEXT")]
    drivers: Vec<String>,
    /// An option considered; repeat for several.
    #[arg(long = "option", value_name = "TEXT")]
    options: Vec<String>,
    /// The option chosen, and why.
    #[arg(long, default_value = "")]
    outcome: String,
    /// What follows from it; repeat for several.
    #[arg(long = "consequence", value_name = "TEXT")]
    consequences: Vec<String>,
    /// Who decides (only they may accept or reject); repeat for several.
    #[arg(long = "decider", value_name = "PRINCIPAL", required = true)]
    deciders: Vec<String>,
    /// Who was consulted; repeat for several.
    #[arg(long, value_name = "PRINCIPAL")]
    consulted: Vec<String>,
    /// Who is informed; repeat for several.
    #[arg(long, value_name = "PRINCIPAL")]
    informed: Vec<String>,
    /// What it decides on, as KIND/ID (an opportunity id alone is enough); repeat for several.
    #[arg(long = "subject", value_name = "ENTITY")]
    subjects: Vec<String>,
    /// The decision it replaces once accepted.
    #[arg(long, value_name = "ID")]
    supersedes: Option<String>,
    /// open, team or restricted (default open).
    #[arg(long)]
    visibility: Option<String>,
}

impl ContentFlags {
    fn to_proto(&self) -> anyhow::Result<proto::DecisionContent> {
        let subjects = self
            .subjects
            .iter()
            .map(|subject| parse_entity("--subject", subject, Some(proto::EntityKind::Opportunity)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(proto::DecisionContent {
            kind: parse_enum::<proto::DecisionKind>("--kind", &self.kind)?.into(),
            title: self.title.clone(),
            team: self.team.clone(),
            context: self.context.clone(),
            drivers: self.drivers.clone(),
            options: self.options.clone(),
            outcome: self.outcome.clone(),
            consequences: self.consequences.clone(),
            deciders: self.deciders.clone(),
            consulted: self.consulted.clone(),
            informed: self.informed.clone(),
            subjects,
            supersedes: self.supersedes.clone().unwrap_or_default(),
            visibility: parse_filter::<proto::Visibility>(
                "--visibility",
                self.visibility.as_deref(),
            )?,
        })
    }
}

/// A command that names the decision and gives a reason.
#[derive(Debug, Args)]
struct WithReason {
    #[command(flatten)]
    write: WriteFlags,
    /// The decision.
    id: String,
    /// Why.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Subcommand)]
enum DecisionCommand {
    /// Record a proposed decision.
    Propose {
        #[command(flatten)]
        write: WriteFlags,
        /// The decision's id, chosen by you.
        id: String,
        #[command(flatten)]
        content: ContentFlags,
    },
    /// Replace the content of a proposed decision (the whole content, not merged).
    Revise {
        #[command(flatten)]
        write: WriteFlags,
        /// The decision.
        id: String,
        #[command(flatten)]
        content: ContentFlags,
    },
    /// Accept a proposed decision (the actor must be a decider).
    Accept {
        #[command(flatten)]
        write: WriteFlags,
        /// The decision.
        id: String,
    },
    /// Reject a proposed decision, with a reason (the actor must be a decider).
    Reject(WithReason),
    /// Take an accepted decision out of force without replacing it.
    Deprecate(WithReason),
    /// Show one decision.
    Get {
        #[command(flatten)]
        read: ReadFlags,
        /// The decision.
        id: String,
    },
    /// List decisions, most recently changed first.
    List {
        #[command(flatten)]
        read: ReadFlags,
        #[command(flatten)]
        page: PageFlags,
        /// Only this status: proposed, accepted, rejected, deprecated or superseded.
        #[arg(long)]
        status: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
        /// Only those listing this decider.
        #[arg(long, value_name = "PRINCIPAL")]
        decider: Option<String>,
        /// Only those whose status changed at or after this time (with --status accepted:
        /// accepted since).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only those whose status changed before this time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only decisions about this subject (KIND/ID; an opportunity id alone is enough).
        #[arg(long, value_name = "ENTITY")]
        subject: Option<String>,
    },
    /// Which decisions were superseded, and by what, most recent first.
    Superseded {
        #[command(flatten)]
        read: ReadFlags,
        #[command(flatten)]
        page: PageFlags,
        /// Superseded at or after this time.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Superseded before this time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only this team's decisions.
        #[arg(long)]
        team: Option<String>,
    },
}

/// Runs one `cairn decision` subcommand.
pub async fn run(args: DecisionArgs) -> anyhow::Result<()> {
    use DecisionCommand as C;
    match args.command {
        C::Propose { write, id, content } => {
            let request = proto::ProposeDecisionRequest {
                meta: None,
                id,
                content: Some(content.to_proto()?),
            };
            send_and_print(&write, Mutation::ProposeDecision(request)).await
        }
        C::Revise { write, id, content } => {
            let request = proto::ReviseDecisionRequest {
                meta: None,
                id,
                content: Some(content.to_proto()?),
            };
            send_and_print(&write, Mutation::ReviseDecision(request)).await
        }
        C::Accept { write, id } => {
            let request = proto::AcceptDecisionRequest { meta: None, id };
            send_and_print(&write, Mutation::AcceptDecision(request)).await
        }
        C::Reject(WithReason { write, id, reason }) => {
            let request = proto::RejectDecisionRequest {
                meta: None,
                id,
                reason,
            };
            send_and_print(&write, Mutation::RejectDecision(request)).await
        }
        C::Deprecate(WithReason { write, id, reason }) => {
            let request = proto::DeprecateDecisionRequest {
                meta: None,
                id,
                reason,
            };
            send_and_print(&write, Mutation::DeprecateDecision(request)).await
        }
        C::Get { read, id } => {
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let answer = client
                .get_decision(proto::GetDecisionRequest {
                    tenant: read.scope.tenant.clone(),
                    read: Some(read.scope.options()),
                    id,
                })
                .await?;
            print_one(
                read.format,
                "decision",
                answer.decision.as_ref(),
                answer.stamp.as_ref(),
                decision_text,
                decision_json,
            );
            Ok(())
        }
        C::List {
            read,
            page,
            status,
            kind,
            team,
            decider,
            since,
            until,
            subject,
        } => {
            let template = proto::ListDecisionsRequest {
                tenant: read.scope.tenant.clone(),
                read: Some(read.scope.options()),
                page: None,
                status: parse_filter::<proto::DecisionStatus>("--status", status.as_deref())?,
                kind: parse_filter::<proto::DecisionKind>("--kind", kind.as_deref())?,
                team: team.unwrap_or_default(),
                decider: decider.unwrap_or_default(),
                status_changed: time_range(
                    since.as_deref(),
                    until.as_deref(),
                    "--since",
                    "--until",
                )?,
                subject: subject
                    .map(|subject| {
                        parse_entity("--subject", &subject, Some(proto::EntityKind::Opportunity))
                    })
                    .transpose()?,
            };
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let pages = collect_pages(&page, async |page| {
                let answer = client
                    .list_decisions(proto::ListDecisionsRequest {
                        page: Some(page),
                        ..template.clone()
                    })
                    .await?;
                Ok((answer.decisions, answer.page, answer.stamp))
            })
            .await?;
            print_list(
                read.format,
                "decisions",
                &pages.items,
                &pages.next_page_token,
                pages.stamp.as_ref(),
                decision_line,
                decision_json,
            );
            Ok(())
        }
        C::Superseded {
            read,
            page,
            since,
            until,
            team,
        } => {
            let template = proto::ListSupersededRequest {
                tenant: read.scope.tenant.clone(),
                read: Some(read.scope.options()),
                page: None,
                superseded: time_range(since.as_deref(), until.as_deref(), "--since", "--until")?,
                team: team.unwrap_or_default(),
            };
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let pages = collect_pages(&page, async |page| {
                let answer = client
                    .list_superseded(proto::ListSupersededRequest {
                        page: Some(page),
                        ..template.clone()
                    })
                    .await?;
                Ok((answer.supersessions, answer.page, answer.stamp))
            })
            .await?;
            print_list(
                read.format,
                "supersessions",
                &pages.items,
                &pages.next_page_token,
                pages.stamp.as_ref(),
                supersession_line,
                supersession_json,
            );
            Ok(())
        }
    }
}
