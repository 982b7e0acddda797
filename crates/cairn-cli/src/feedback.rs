//! `cairn feedback`: submit, link, discard, get and list feedback items (`FeedbackService`).

use cairn_grpc::proto;
use clap::{Args, Subcommand};

use crate::enums::{parse_enum, parse_filter};
use crate::loop_client::{LoopClient, Mutation, send_and_print};
use crate::loop_flags::{
    PageFlags, ReadFlags, WriteFlags, collect_pages, parse_entity, time_range,
};
use crate::loop_output::{feedback_json, feedback_line, feedback_text, print_list, print_one};

/// `cairn feedback`.
#[derive(Debug, Args)]
pub struct FeedbackArgs {
    #[command(subcommand)]
    command: FeedbackCommand,
}

#[derive(Debug, Subcommand)]
enum FeedbackCommand {
    /// Record a new feedback item (received now).
    Submit {
        #[command(flatten)]
        write: WriteFlags,
        /// The item's id, chosen by you (unique in the tenant).
        id: String,
        /// What was said (personal data, sealed under the submitter's key).
        #[arg(long)]
        text: String,
        /// Who said it (a principal id); omit for anonymous feedback.
        #[arg(long, value_name = "PRINCIPAL")]
        submitter: Option<String>,
        /// The team it is about.
        #[arg(long)]
        team: String,
        /// Where it came from: survey, chat, ticket, incident, health_check or api.
        #[arg(long)]
        source: String,
        /// A tag; repeat for several.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// A business outcome tag (conversion, support-cost, reliability, developer-time);
        /// repeat for several.
        #[arg(long = "outcome-tag", value_name = "TAG")]
        outcome_tags: Vec<String>,
        /// open, team or restricted (default open).
        #[arg(long)]
        visibility: Option<String>,
    },
    /// Attach a feedback item or a signal to an opportunity as evidence (the receipt is the
    /// opportunity's).
    Link {
        #[command(flatten)]
        write: WriteFlags,
        /// The opportunity.
        opportunity: String,
        /// The evidence: a feedback id, or feedback/ID or signal/ID.
        evidence: String,
    },
    /// Discard a received feedback item, with a reason.
    Discard {
        #[command(flatten)]
        write: WriteFlags,
        /// The item.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Show one feedback item.
    Get {
        #[command(flatten)]
        read: ReadFlags,
        /// The item.
        id: String,
    },
    /// List feedback items, newest first.
    List {
        #[command(flatten)]
        read: ReadFlags,
        #[command(flatten)]
        page: PageFlags,
        /// Only items in this status: received, processed or discarded.
        #[arg(long)]
        status: Option<String>,
        /// Only this team's items.
        #[arg(long)]
        team: Option<String>,
        /// Only items from this source.
        #[arg(long)]
        source: Option<String>,
        /// Only items with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only items with this outcome tag.
        #[arg(long)]
        outcome_tag: Option<String>,
        /// Only items received at or after this time (2026-01-01, RFC 3339, or 30d ago).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only items received before this time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only items that are evidence for this opportunity.
        #[arg(long, value_name = "ID")]
        opportunity: Option<String>,
    },
}

/// Runs one `cairn feedback` subcommand.
pub async fn run(args: FeedbackArgs) -> anyhow::Result<()> {
    match args.command {
        FeedbackCommand::Submit {
            write,
            id,
            text,
            submitter,
            team,
            source,
            tags,
            outcome_tags,
            visibility,
        } => {
            let request = proto::SubmitFeedbackRequest {
                meta: None,
                id,
                text,
                submitter: submitter.unwrap_or_default(),
                team,
                source: parse_enum::<proto::FeedbackSource>("--source", &source)?.into(),
                tags,
                outcome_tags,
                visibility: parse_filter::<proto::Visibility>(
                    "--visibility",
                    visibility.as_deref(),
                )?,
            };
            send_and_print(&write, Mutation::SubmitFeedback(request)).await
        }
        FeedbackCommand::Link {
            write,
            opportunity,
            evidence,
        } => {
            let evidence = parse_entity("EVIDENCE", &evidence, Some(proto::EntityKind::Feedback))?;
            let request = proto::LinkFeedbackRequest {
                meta: None,
                id: opportunity,
                evidence: Some(evidence),
            };
            send_and_print(&write, Mutation::LinkFeedback(request)).await
        }
        FeedbackCommand::Discard { write, id, reason } => {
            let request = proto::DiscardFeedbackRequest {
                meta: None,
                id,
                reason,
            };
            send_and_print(&write, Mutation::DiscardFeedback(request)).await
        }
        FeedbackCommand::Get { read, id } => {
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let answer = client
                .get_feedback(proto::GetFeedbackRequest {
                    tenant: read.scope.tenant.clone(),
                    read: Some(read.scope.options()),
                    id,
                })
                .await?;
            print_one(
                read.format,
                "feedback",
                answer.feedback.as_ref(),
                answer.stamp.as_ref(),
                feedback_text,
                feedback_json,
            );
            Ok(())
        }
        FeedbackCommand::List {
            read,
            page,
            status,
            team,
            source,
            tag,
            outcome_tag,
            since,
            until,
            opportunity,
        } => {
            let template = proto::ListFeedbackRequest {
                tenant: read.scope.tenant.clone(),
                read: Some(read.scope.options()),
                page: None,
                status: parse_filter::<proto::FeedbackStatus>("--status", status.as_deref())?,
                team: team.unwrap_or_default(),
                source: parse_filter::<proto::FeedbackSource>("--source", source.as_deref())?,
                tag: tag.unwrap_or_default(),
                outcome_tag: outcome_tag.unwrap_or_default(),
                received: time_range(since.as_deref(), until.as_deref(), "--since", "--until")?,
                opportunity_id: opportunity.unwrap_or_default(),
            };
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let pages = collect_pages(&page, async |page| {
                let answer = client
                    .list_feedback(proto::ListFeedbackRequest {
                        page: Some(page),
                        ..template.clone()
                    })
                    .await?;
                Ok((answer.items, answer.page, answer.stamp))
            })
            .await?;
            print_list(
                read.format,
                "feedback_items",
                &pages.items,
                &pages.next_page_token,
                pages.stamp.as_ref(),
                feedback_line,
                feedback_json,
            );
            Ok(())
        }
    }
}
