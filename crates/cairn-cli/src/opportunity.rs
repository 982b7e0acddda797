//! `cairn opportunity`: create, triage and move opportunities through their states, vote, rate and
//! rescore them, and read them, the ranking, why one is ranked where it is, its score history and
//! what aged out (`PrioritizationService`).

use anyhow::bail;
use cairn_grpc::proto;
use clap::{ArgGroup, Args, Subcommand};

use crate::enums::{parse_enum, parse_filter};
use crate::loop_client::{LoopClient, Mutation, send_and_print};
use crate::loop_flags::{
    Format, PageFlags, ReadFlags, WriteFlags, collect_pages, parse_time_flag, time_range,
};
use crate::loop_output::{
    aged_out_json, aged_out_line, explain_json, explain_text, opportunity_json, opportunity_text,
    print_list, print_one, ranked_json, ranked_line, score_history_json, score_history_line,
    stamp_json, stamp_text,
};
use crate::output::JsonObject;

/// `cairn opportunity`.
#[derive(Debug, Args)]
pub struct OpportunityArgs {
    #[command(subcommand)]
    command: OpportunityCommand,
}

/// A command that names only the opportunity.
#[derive(Debug, Args)]
struct Named {
    #[command(flatten)]
    write: WriteFlags,
    /// The opportunity.
    id: String,
}

/// `cairn opportunity triage`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("outcome")
        .required(true)
        .args(["accept", "duplicate_of", "decline", "snooze_until"])
))]
struct TriageArgs {
    #[command(flatten)]
    write: WriteFlags,
    /// The opportunity.
    id: String,
    /// Accept it: planned (optionally under --decision).
    #[arg(long)]
    accept: bool,
    /// It duplicates this canonical opportunity (its evidence and votes move there).
    #[arg(long, value_name = "ID")]
    duplicate_of: Option<String>,
    /// Decline it, with this reason (needs --decision).
    #[arg(long, value_name = "REASON", requires = "decision")]
    decline: Option<String>,
    /// The decision that accepted or declined it.
    #[arg(long, value_name = "ID")]
    decision: Option<String>,
    /// Set it aside until this time (in the future: 2026-06-01, +30d).
    #[arg(long, value_name = "TIME")]
    snooze_until: Option<String>,
}

#[derive(Debug, Subcommand)]
enum OpportunityCommand {
    /// Record a new opportunity (status new).
    Create {
        #[command(flatten)]
        write: WriteFlags,
        /// The opportunity's id, chosen by you.
        id: String,
        /// Its title.
        #[arg(long)]
        title: String,
        /// The problem statement.
        #[arg(long, default_value = "")]
        problem: String,
        /// The owner (a principal id).
        #[arg(long, value_name = "PRINCIPAL")]
        owner: String,
        /// The owning team.
        #[arg(long)]
        team: String,
        /// A rough size: xs, s, m, l or xl.
        #[arg(long)]
        size: Option<String>,
        /// A business outcome tag; repeat for several.
        #[arg(long = "outcome-tag", value_name = "TAG")]
        outcome_tags: Vec<String>,
        /// open, team or restricted (default open).
        #[arg(long)]
        visibility: Option<String>,
    },
    /// Start reviewing it: new -> under_review.
    Review(Named),
    /// Triage it: exactly one of --accept, --duplicate-of, --decline (with --decision) or
    /// --snooze-until.
    Triage(TriageArgs),
    /// Wake a snoozed opportunity whose date is past: snoozed -> under_review.
    Wake(Named),
    /// Start work: planned -> in_progress.
    Start(Named),
    /// Ship it: in_progress -> shipped.
    Ship(Named),
    /// Record whether a shipped opportunity's outcome was validated.
    Validate {
        #[command(flatten)]
        write: WriteFlags,
        /// The opportunity.
        id: String,
        /// validated or not_validated.
        #[arg(long)]
        outcome: String,
        /// The signal that shows it.
        #[arg(long, value_name = "ID")]
        signal: Option<String>,
    },
    /// Vote for it (one vote per principal; the latest wins).
    Vote {
        #[command(flatten)]
        write: WriteFlags,
        /// The opportunity.
        id: String,
        /// The voter (default: the actor).
        #[arg(long, value_name = "PRINCIPAL")]
        voter: Option<String>,
        /// 1 to 100.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// The voter's segment (mobile, payments).
        #[arg(long)]
        segment: Option<String>,
    },
    /// Rate it (the latest rating per name wins; scoring models read ratings by name).
    Rate {
        #[command(flatten)]
        write: WriteFlags,
        /// The opportunity.
        id: String,
        /// The rating's name (customer_impact, confidence, effort, strategic_value).
        #[arg(long)]
        name: String,
        /// The value.
        #[arg(long, allow_negative_numbers = true)]
        value: f64,
        /// Why.
        #[arg(long, default_value = "")]
        rationale: String,
    },
    /// Rescore it under the model in force (records nothing when the score is unchanged).
    Rescore(Named),
    /// Show one opportunity, with its evidence, ratings, score and rank.
    Get {
        #[command(flatten)]
        read: ReadFlags,
        /// The opportunity.
        id: String,
    },
    /// The top of the ranking.
    Ranking {
        #[command(flatten)]
        read: ReadFlags,
        /// Rank only this team's opportunities.
        #[arg(long)]
        team: Option<String>,
        /// Top N (0: 100; at most 500).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Why it is ranked where it is: its score's inputs, who scored it, and the evidence.
    Explain {
        #[command(flatten)]
        read: ReadFlags,
        /// The opportunity.
        id: String,
        /// Rank within this team.
        #[arg(long)]
        team: Option<String>,
    },
    /// Every score it had, newest first, with who recorded it under which policy bundle.
    History {
        #[command(flatten)]
        read: ReadFlags,
        #[command(flatten)]
        page: PageFlags,
        /// The opportunity.
        id: String,
        /// Scores computed at or after this time.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Scores computed before this time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// Which opportunities aged out, and by which rule.
    AgedOut {
        #[command(flatten)]
        read: ReadFlags,
        #[command(flatten)]
        page: PageFlags,
        /// Aged out at or after this time (2026-01-01, RFC 3339, or 90d ago).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Aged out before this time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only by this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
    },
}

/// Runs a command that names only the opportunity.
async fn named(named: Named, build: fn(String) -> Mutation) -> anyhow::Result<()> {
    send_and_print(&named.write, build(named.id)).await
}

/// Runs one `cairn opportunity` subcommand.
pub async fn run(args: OpportunityArgs) -> anyhow::Result<()> {
    use OpportunityCommand as C;
    match args.command {
        C::Create {
            write,
            id,
            title,
            problem,
            owner,
            team,
            size,
            outcome_tags,
            visibility,
        } => {
            let draft = proto::OpportunityDraft {
                title,
                problem,
                owner,
                team,
                size: parse_filter::<proto::Size>("--size", size.as_deref())?,
                outcome_tags,
                visibility: parse_filter::<proto::Visibility>(
                    "--visibility",
                    visibility.as_deref(),
                )?,
            };
            let request = proto::CreateOpportunityRequest {
                meta: None,
                id,
                draft: Some(draft),
            };
            send_and_print(&write, Mutation::CreateOpportunity(request)).await
        }
        C::Review(args) => {
            named(args, |id| {
                Mutation::StartReview(proto::StartReviewRequest { meta: None, id })
            })
            .await
        }
        C::Wake(args) => {
            named(args, |id| {
                Mutation::Wake(proto::WakeOpportunityRequest { meta: None, id })
            })
            .await
        }
        C::Start(args) => {
            named(args, |id| {
                Mutation::StartWork(proto::StartWorkRequest { meta: None, id })
            })
            .await
        }
        C::Ship(args) => {
            named(args, |id| {
                Mutation::Ship(proto::ShipOpportunityRequest { meta: None, id })
            })
            .await
        }
        C::Rescore(args) => {
            named(args, |id| {
                Mutation::Rescore(proto::RescoreRequest { meta: None, id })
            })
            .await
        }
        C::Triage(args) => {
            let outcome = triage_outcome(&args)?;
            let request = proto::TriageRequest {
                meta: None,
                id: args.id.clone(),
                outcome: Some(outcome),
            };
            send_and_print(&args.write, Mutation::Triage(request)).await
        }
        C::Validate {
            write,
            id,
            outcome,
            signal,
        } => {
            let request = proto::ValidateOutcomeRequest {
                meta: None,
                id,
                outcome: parse_enum::<proto::Validation>("--outcome", &outcome)?.into(),
                signal_id: signal.unwrap_or_default(),
            };
            send_and_print(&write, Mutation::ValidateOutcome(request)).await
        }
        C::Vote {
            write,
            id,
            voter,
            weight,
            segment,
        } => {
            let request = proto::VoteRequest {
                meta: None,
                id,
                voter: voter.unwrap_or_default(),
                weight,
                segment: segment.unwrap_or_default(),
            };
            send_and_print(&write, Mutation::Vote(request)).await
        }
        C::Rate {
            write,
            id,
            name,
            value,
            rationale,
        } => {
            let request = proto::RateRequest {
                meta: None,
                id,
                name,
                value,
                rationale,
            };
            send_and_print(&write, Mutation::Rate(request)).await
        }
        C::Get { read, id } => {
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let answer = client
                .get_opportunity(proto::GetOpportunityRequest {
                    tenant: read.scope.tenant.clone(),
                    read: Some(read.scope.options()),
                    id,
                })
                .await?;
            print_one(
                read.format,
                "opportunity",
                answer.opportunity.as_ref(),
                answer.stamp.as_ref(),
                opportunity_text,
                opportunity_json,
            );
            Ok(())
        }
        C::Ranking { read, team, limit } => {
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let answer = client
                .get_ranking(proto::GetRankingRequest {
                    tenant: read.scope.tenant.clone(),
                    read: Some(read.scope.options()),
                    team: team.unwrap_or_default(),
                    limit,
                })
                .await?;
            print_ranking(read.format, &answer);
            Ok(())
        }
        C::Explain { read, id, team } => {
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let answer = client
                .explain_rank(proto::ExplainRankRequest {
                    tenant: read.scope.tenant.clone(),
                    read: Some(read.scope.options()),
                    id,
                    team: team.unwrap_or_default(),
                })
                .await?;
            match read.format {
                Format::Text => {
                    print!("{}", explain_text(&answer));
                    println!("{}", stamp_text(answer.stamp.as_ref()));
                }
                Format::Json => println!("{}", explain_json(&answer)),
            }
            Ok(())
        }
        C::History {
            read,
            page,
            id,
            since,
            until,
        } => {
            let template = proto::ScoreHistoryRequest {
                tenant: read.scope.tenant.clone(),
                read: Some(read.scope.options()),
                page: None,
                id,
                computed: time_range(since.as_deref(), until.as_deref(), "--since", "--until")?,
            };
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let pages = collect_pages(&page, async |page| {
                let answer = client
                    .score_history(proto::ScoreHistoryRequest {
                        page: Some(page),
                        ..template.clone()
                    })
                    .await?;
                Ok((answer.entries, answer.page, answer.stamp))
            })
            .await?;
            print_list(
                read.format,
                "scores",
                &pages.items,
                &pages.next_page_token,
                pages.stamp.as_ref(),
                score_history_line,
                score_history_json,
            );
            Ok(())
        }
        C::AgedOut {
            read,
            page,
            since,
            until,
            rule,
            team,
        } => {
            let template = proto::ListAgedOutRequest {
                tenant: read.scope.tenant.clone(),
                read: Some(read.scope.options()),
                page: None,
                aged_out: time_range(since.as_deref(), until.as_deref(), "--since", "--until")?,
                rule: rule.unwrap_or_default(),
                team: team.unwrap_or_default(),
            };
            let mut client = LoopClient::connect(&read.scope.server).await?;
            let pages = collect_pages(&page, async |page| {
                let answer = client
                    .list_aged_out(proto::ListAgedOutRequest {
                        page: Some(page),
                        ..template.clone()
                    })
                    .await?;
                Ok((answer.entries, answer.page, answer.stamp))
            })
            .await?;
            print_list(
                read.format,
                "aged_out",
                &pages.items,
                &pages.next_page_token,
                pages.stamp.as_ref(),
                aged_out_line,
                aged_out_json,
            );
            Ok(())
        }
    }
}

/// The triage outcome the flags name (clap has checked that exactly one is given).
fn triage_outcome(args: &TriageArgs) -> anyhow::Result<proto::triage_request::Outcome> {
    use proto::triage_request::Outcome;
    let decision_id = args.decision.clone().unwrap_or_default();
    if args.accept {
        return Ok(Outcome::Accept(proto::TriageAccept { decision_id }));
    }
    if args.decision.is_some() && args.decline.is_none() {
        bail!("--decision goes with --accept or --decline");
    }
    if let Some(canonical_id) = &args.duplicate_of {
        return Ok(Outcome::Duplicate(proto::TriageDuplicate {
            canonical_id: canonical_id.clone(),
        }));
    }
    if let Some(reason) = &args.decline {
        return Ok(Outcome::Decline(proto::TriageDecline {
            reason: reason.clone(),
            decision_id,
        }));
    }
    match &args.snooze_until {
        Some(until) => Ok(Outcome::Snooze(proto::TriageSnooze {
            until_micros: parse_time_flag("--snooze-until", until)?,
        })),
        None => bail!("triage needs --accept, --duplicate-of, --decline or --snooze-until"),
    }
}

/// Prints a ranking: a line per opportunity, then how many are ranked and the stamp.
fn print_ranking(format: Format, answer: &proto::GetRankingResponse) {
    match format {
        Format::Text => {
            for entry in &answer.entries {
                println!("{}", ranked_line(entry));
            }
            println!(
                "top {} of {} ranked, {}",
                answer.entries.len(),
                answer.ranked_count,
                stamp_text(answer.stamp.as_ref())
            );
        }
        Format::Json => {
            let entries: Vec<String> = answer.entries.iter().map(ranked_json).collect();
            println!(
                "{}",
                JsonObject::new()
                    .raw("entries", &format!("[{}]", entries.join(",")))
                    .number("ranked_count", answer.ranked_count)
                    .raw("stamp", &stamp_json(answer.stamp.as_ref()))
                    .finish()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(subcommand)]
        command: OpportunityCommand,
    }

    fn triage(argv: &[&str]) -> anyhow::Result<proto::triage_request::Outcome> {
        let mut full = vec!["opportunity", "triage", "--tenant", "acme", "o-1"];
        full.extend_from_slice(argv);
        match Harness::try_parse_from(full)?.command {
            OpportunityCommand::Triage(args) => triage_outcome(&args),
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn triage_takes_exactly_one_outcome() {
        use proto::triage_request::Outcome;
        assert_eq!(
            triage(&["--accept"]).unwrap(),
            Outcome::Accept(proto::TriageAccept {
                decision_id: String::new()
            })
        );
        assert_eq!(
            triage(&["--accept", "--decision", "d-1"]).unwrap(),
            Outcome::Accept(proto::TriageAccept {
                decision_id: "d-1".into()
            })
        );
        assert_eq!(
            triage(&["--duplicate-of", "o-0"]).unwrap(),
            Outcome::Duplicate(proto::TriageDuplicate {
                canonical_id: "o-0".into()
            })
        );
        assert_eq!(
            triage(&["--decline", "too costly", "--decision", "d-2"]).unwrap(),
            Outcome::Decline(proto::TriageDecline {
                reason: "too costly".into(),
                decision_id: "d-2".into()
            })
        );
        assert_eq!(
            triage(&["--snooze-until", "2030-01-01"]).unwrap(),
            Outcome::Snooze(proto::TriageSnooze {
                until_micros: 1_893_456_000_000_000
            })
        );
        for (argv, fragment) in [
            (&[][..], "required"),
            (&["--accept", "--duplicate-of", "o-0"][..], "cannot be used"),
            (&["--decline", "no"][..], "--decision"),
            (
                &["--snooze-until", "2030-01-01", "--decision", "d"][..],
                "--decision goes with",
            ),
        ] {
            let error = format!("{:#}", triage(argv).unwrap_err());
            assert!(error.contains(fragment), "{argv:?}: {error}");
        }
    }
}
