//! `cairn report status`: a Markdown status report of one tenant over a period: new feedback by
//! team and status, decisions accepted and superseded, the top of the ranking with what weighs
//! most in each score, initiatives at risk and milestones missed.
//!
//! Every read is pinned to the position the first one answered at, so the report reflects one
//! ledger state, named in its header with the checkpoint that covers it. Fetching and rendering
//! are apart: [`render_status`] is a pure function of [`StatusData`] and `k`, tested as exact
//! text.
//!
//! Privacy. A report is an aggregate that travels (pasted into a document, a chat, a slide), so
//! it follows the rule that a segment smaller than `k` people is not shown (`--k-anonymity`,
//! default [`K_ANONYMITY_DEFAULT`]):
//!
//! - The new-feedback table's segments are its teams. A team whose items come from fewer than
//!   `k` people is listed as "withheld (fewer than k people)", with no counts, and the totals
//!   (the headline count and the **all** row) cover only the teams shown: a total over every
//!   team would give a withheld team's counts back by subtraction. Within a team that is shown,
//!   the status columns are shown: they are the triage state of the items, not a further
//!   segment of the people. People are counted as distinct submitters where the submitter is
//!   visible (with `--include-personal`, for a reader of personal data); an item whose submitter
//!   is not visible (anonymous, withheld or erased) counts as one more person, because the
//!   report cannot tell whether two such items share a submitter. Without personal data that is
//!   the item count, an upper bound on people; the report says which measure it used, and how
//!   many items were counted that way.
//! - The ranking aggregates votes, ratings and feedback: it names no principal (not who rated an
//!   input nor who recorded the score), and a votes input of fewer than `k` voters says so
//!   instead of its count.
//! - Decisions accepted are listed one by one, each with who accepted it: the accountable record
//!   of one decision, not an aggregate over people, and no more than the decision itself shows
//!   to any reader of it.

use std::collections::{BTreeMap, BTreeSet};

use cairn_domain::pseudonym::{K_ANONYMITY_DEFAULT, k_anonymous, may_show};

use cairn_grpc::proto;
use clap::{Args, Subcommand};

use crate::enums::name_of;
use crate::loop_client::LoopClient;
use crate::loop_flags::{ReadScope, collect_pages, every_page, parse_time_flag};
use crate::loop_output::{input_source_text, number_text, stamp_text, time_text};
use crate::timespec::{format_date, format_seconds, now_micros};

/// `cairn report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// A Markdown status report of one tenant over a period, on stdout.
    Status(StatusArgs),
}

/// `cairn report status`.
#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    scope: ReadScope,

    /// The start of the period (2026-01-01, 2026-01-01T00:00:00Z, or 30d ago).
    #[arg(long, value_name = "TIME")]
    since: String,

    /// The end of the period (default: now).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,

    /// How many of the top-ranked opportunities to explain.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    top: u32,

    /// Withhold every group (a team's new feedback, an input's voters) of fewer than N people.
    #[arg(
        long = "k-anonymity",
        value_name = "N",
        default_value_t = K_ANONYMITY_DEFAULT as u32,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    k_anonymity: u32,
}

/// How many inputs of a score the report names: the ones that weigh most.
const TOP_INPUTS_MAX: usize = 3;
/// Scores closer than this are the same score (they are sums of products of floats).
const SCORE_EPSILON: f64 = 1e-9;

/// A ranked opportunity and its latest score, with every input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RankedExplained {
    /// Its line of the ranking.
    pub entry: proto::RankedOpportunity,
    /// Its latest score snapshot (ExplainRank), if it was ever scored. (Who recorded it is not
    /// kept: the ranking names no principal.)
    pub score: Option<proto::ScoreSnapshot>,
    /// Its latest score computed before the period, if any: what the change is measured from.
    pub score_before: Option<f64>,
    /// Its latest score computed before the end of the period, if any.
    pub score_at_end: Option<f64>,
}

/// A milestone that was missed, with its initiative.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MissedMilestone {
    /// The initiative's id.
    pub initiative_id: String,
    /// The initiative's title.
    pub initiative_title: String,
    /// The milestone.
    pub milestone: proto::Milestone,
}

/// Everything a status report shows, fetched as of one position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusData {
    /// The tenant.
    pub tenant: String,
    /// The period, `[since, until)`, in microseconds.
    pub since_micros: i64,
    /// The end of the period.
    pub until_micros: i64,
    /// The ledger position every read reflects.
    pub stamp: Option<proto::Stamp>,
    /// Feedback received in the period.
    pub feedback: Vec<proto::Feedback>,
    /// Decisions accepted in the period.
    pub accepted: Vec<proto::Decision>,
    /// Decisions superseded in the period, and by what.
    pub superseded: Vec<proto::Supersession>,
    /// The top of the ranking, explained.
    pub ranking: Vec<RankedExplained>,
    /// How many opportunities are ranked in all.
    pub ranked_count: u32,
    /// Initiatives flagged at risk now.
    pub at_risk: Vec<proto::Initiative>,
    /// Milestones missed in the period.
    pub missed: Vec<MissedMilestone>,
}

/// Runs `cairn report`.
pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    match args.command {
        ReportCommand::Status(args) => {
            let since = parse_time_flag("--since", &args.since)?;
            let until = match &args.until {
                Some(until) => parse_time_flag("--until", until)?,
                None => now_micros(),
            };
            if until <= since {
                anyhow::bail!(
                    "the period is empty: --until {} is not after --since {}",
                    format_seconds(until),
                    format_seconds(since)
                );
            }
            let mut client = LoopClient::connect(&args.scope.server).await?;
            let data = fetch_status(&mut client, &args.scope, since, until, args.top).await?;
            print!("{}", render_status(&data, args.k_anonymity as usize));
            Ok(())
        }
    }
}

/// Fetches a status report's data, every read as of the position the ranking answered at.
pub async fn fetch_status(
    client: &mut LoopClient,
    scope: &ReadScope,
    since_micros: i64,
    until_micros: i64,
    top: u32,
) -> anyhow::Result<StatusData> {
    let tenant = scope.tenant.clone();
    let ranking = client
        .get_ranking(proto::GetRankingRequest {
            tenant: tenant.clone(),
            read: Some(scope.options()),
            team: String::new(),
            limit: top,
        })
        .await?;
    let position = ranking
        .stamp
        .as_ref()
        .map(|stamp| stamp.position)
        .ok_or_else(|| anyhow::anyhow!("GetRanking answered without a stamp"))?;
    let read = scope.options_at(position);
    let period = Some(proto::TimeRange {
        from_micros: since_micros,
        to_micros: until_micros,
    });

    let mut explained = Vec::new();
    for entry in ranking.entries {
        let answer = client
            .explain_rank(proto::ExplainRankRequest {
                tenant: tenant.clone(),
                read: Some(read),
                id: entry.id.clone(),
                team: String::new(),
            })
            .await?;
        let score_before =
            latest_score_before(client, &tenant, read, &entry.id, since_micros).await?;
        let score_at_end =
            latest_score_before(client, &tenant, read, &entry.id, until_micros).await?;
        explained.push(RankedExplained {
            entry,
            score: answer.score,
            score_before,
            score_at_end,
        });
    }

    let pages = every_page();
    let feedback = collect_pages(&pages, async |page| {
        let answer = client
            .list_feedback(proto::ListFeedbackRequest {
                tenant: tenant.clone(),
                read: Some(read),
                page: Some(page),
                received: period,
                ..Default::default()
            })
            .await?;
        Ok((answer.items, answer.page, answer.stamp))
    })
    .await?;
    let accepted = collect_pages(&pages, async |page| {
        let answer = client
            .list_decisions(proto::ListDecisionsRequest {
                tenant: tenant.clone(),
                read: Some(read),
                page: Some(page),
                status: proto::DecisionStatus::Accepted.into(),
                status_changed: period,
                ..Default::default()
            })
            .await?;
        Ok((answer.decisions, answer.page, answer.stamp))
    })
    .await?;
    let superseded = collect_pages(&pages, async |page| {
        let answer = client
            .list_superseded(proto::ListSupersededRequest {
                tenant: tenant.clone(),
                read: Some(read),
                page: Some(page),
                superseded: period,
                team: String::new(),
            })
            .await?;
        Ok((answer.supersessions, answer.page, answer.stamp))
    })
    .await?;
    let initiatives = collect_pages(&pages, async |page| {
        let answer = client
            .list_initiatives(proto::ListInitiativesRequest {
                tenant: tenant.clone(),
                read: Some(read),
                page: Some(page),
                ..Default::default()
            })
            .await?;
        Ok((answer.initiatives, answer.page, answer.stamp))
    })
    .await?;

    let in_period = |micros: i64| micros >= since_micros && micros < until_micros;
    let mut missed = Vec::new();
    for initiative in &initiatives.items {
        for milestone in &initiative.milestones {
            if milestone.status == i32::from(proto::MilestoneStatus::Missed)
                && in_period(milestone.closed_at_micros)
            {
                missed.push(MissedMilestone {
                    initiative_id: initiative.id.clone(),
                    initiative_title: initiative
                        .draft
                        .as_ref()
                        .map(|draft| draft.title.clone())
                        .unwrap_or_default(),
                    milestone: milestone.clone(),
                });
            }
        }
    }
    missed.sort_by_key(|missed| missed.milestone.closed_at_micros);
    let at_risk = initiatives
        .items
        .into_iter()
        .filter(|initiative| initiative.at_risk)
        .collect();
    Ok(StatusData {
        tenant,
        since_micros,
        until_micros,
        stamp: ranking.stamp,
        feedback: feedback.items,
        accepted: accepted.items,
        superseded: superseded.items,
        ranking: explained,
        ranked_count: ranking.ranked_count,
        at_risk,
        missed,
    })
}

/// The value of an opportunity's latest score computed before `to_micros`, if it had one.
async fn latest_score_before(
    client: &mut LoopClient,
    tenant: &str,
    read: proto::ReadOptions,
    id: &str,
    to_micros: i64,
) -> anyhow::Result<Option<f64>> {
    let answer = client
        .score_history(proto::ScoreHistoryRequest {
            tenant: tenant.to_owned(),
            read: Some(read),
            page: Some(proto::PageRequest {
                page_size: 1,
                page_token: String::new(),
            }),
            id: id.to_owned(),
            computed: Some(proto::TimeRange {
                from_micros: 0,
                to_micros,
            }),
        })
        .await?;
    Ok(answer
        .entries
        .first()
        .and_then(|entry| entry.score.as_ref())
        .map(|score| score.value))
}

/// Text for a Markdown table cell or list item: no line breaks, `|` escaped.
fn md(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('|', "\\|")
}

fn decision_title(decision: Option<&proto::Decision>) -> String {
    match decision {
        Some(decision) => {
            let title = decision
                .content
                .as_ref()
                .map_or("", |content| content.title.as_str());
            format!("`{}` {}", md(&decision.id), md(title))
        }
        None => "(unknown)".to_owned(),
    }
}

/// Where an input came from, in words, naming no principal: a rating says when, not by whom,
/// and votes of fewer than `k` voters do not say how many.
fn input_source_text_k(source: Option<&proto::InputSource>, k: usize) -> String {
    use proto::input_source::Source;
    match source.and_then(|source| source.source.as_ref()) {
        Some(Source::Rating(rating)) => format!("rating at {}", time_text(rating.at_micros)),
        Some(Source::Votes(votes))
            if !may_show(usize::try_from(votes.voters).unwrap_or(usize::MAX), k) =>
        {
            format!("votes of fewer than {k} voters")
        }
        _ => input_source_text(source),
    }
}

/// The inputs that weigh most in a score (by absolute contribution), in words.
fn top_inputs(score: &proto::ScoreSnapshot, k: usize) -> String {
    let mut inputs: Vec<&proto::ScoreInput> = score.inputs.iter().collect();
    inputs.sort_by(|a, b| {
        b.contribution
            .abs()
            .total_cmp(&a.contribution.abs())
            .then_with(|| a.factor.cmp(&b.factor))
    });
    let named: Vec<String> = inputs
        .iter()
        .take(TOP_INPUTS_MAX)
        .map(|input| {
            format!(
                "{} {}{} ({})",
                md(&input.factor),
                if input.contribution >= 0.0 { "+" } else { "" },
                number_text(input.contribution),
                md(&input_source_text_k(input.source.as_ref(), k))
            )
        })
        .collect();
    named.join("; ")
}

/// One team's new feedback: counts by status, and the people behind them.
#[derive(Default)]
struct TeamFeedback<'a> {
    /// Received, processed, discarded.
    counts: [usize; 3],
    /// The distinct submitters that are visible.
    submitters: BTreeSet<&'a str>,
    /// Items whose submitter is not visible (anonymous, withheld, erased): one person each.
    unattributed: usize,
}

impl TeamFeedback<'_> {
    /// How many people the items come from, at most.
    fn people(&self) -> usize {
        self.submitters.len() + self.unattributed
    }
}

/// The new-feedback section: a table by team and status, k-anonymous by team.
fn render_feedback(out: &mut String, feedback: &[proto::Feedback], k: usize) {
    let statuses = [
        proto::FeedbackStatus::Received,
        proto::FeedbackStatus::Processed,
        proto::FeedbackStatus::Discarded,
    ];
    let mut by_team: BTreeMap<&str, TeamFeedback<'_>> = BTreeMap::new();
    let mut unattributed = 0;
    for item in feedback {
        let team = by_team.entry(item.team.as_str()).or_default();
        if let Some(index) = statuses
            .iter()
            .position(|status| i32::from(*status) == item.status)
        {
            team.counts[index] += 1;
        }
        if item.personal_state == i32::from(proto::PersonalState::Open)
            && !item.submitter.is_empty()
        {
            team.submitters.insert(item.submitter.as_str());
        } else {
            team.unattributed += 1;
            unattributed += 1;
        }
    }
    let teams = by_team.len();
    let shown = k_anonymous(
        by_team.into_iter().map(|(team, row)| {
            let people = row.people();
            ((team, row), people)
        }),
        k,
    );
    let mut totals = [0usize; 3];
    for ((_, row), _) in &shown.shown {
        for (total, count) in totals.iter_mut().zip(row.counts) {
            *total += count;
        }
    }
    let items: usize = totals.iter().sum();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if shown.withheld == 0 {
        out.push_str(&format!(
            "\n## New feedback\n\n{} received in the period.\n",
            plural(items, "item")
        ));
    } else {
        out.push_str(&format!(
            "\n## New feedback\n\n{} received in the period in the teams shown; {} withheld \
             (fewer than {k} people).\n",
            plural(items, "item"),
            plural(shown.withheld, "team")
        ));
    }
    if teams == 0 {
        return;
    }
    if k > 1 {
        if unattributed == 0 {
            out.push_str(&format!(
                "\nTeams of fewer than {k} people are withheld; people are counted as distinct \
                 submitters.\n"
            ));
        } else {
            out.push_str(&format!(
                "\nTeams of fewer than {k} people are withheld; the submitters of {} are not \
                 visible (anonymous, withheld or erased), so each counts as one person: an upper \
                 bound.\n",
                plural(unattributed, "item")
            ));
        }
    }
    out.push_str("\n| team | received | processed | discarded | total |\n");
    out.push_str("|---|---:|---:|---:|---:|\n");
    let shown_teams: BTreeMap<&str, [usize; 3]> = shown
        .shown
        .iter()
        .map(|((team, row), _)| (*team, row.counts))
        .collect();
    let mut names: Vec<&str> = feedback.iter().map(|item| item.team.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for team in names {
        match shown_teams.get(team) {
            Some(counts) => out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                md(team),
                counts[0],
                counts[1],
                counts[2],
                counts.iter().sum::<usize>()
            )),
            None => out.push_str(&format!(
                "| {} | withheld (fewer than {k} people) |  |  |  |\n",
                md(team)
            )),
        }
    }
    if !shown_teams.is_empty() {
        out.push_str(&format!(
            "| **{}** | {} | {} | {} | {} |\n",
            if shown.withheld == 0 {
                "all"
            } else {
                "all shown"
            },
            totals[0],
            totals[1],
            totals[2],
            items
        ));
    }
}

/// The report as Markdown; `k` is the k-anonymity threshold (see the module docs).
pub fn render_status(data: &StatusData, k: usize) -> String {
    let mut out = String::new();
    out.push_str(&format!("# Status report: {}\n\n", md(&data.tenant)));
    out.push_str(&format!(
        "- Period: {} to {}\n",
        format_seconds(data.since_micros),
        format_seconds(data.until_micros)
    ));
    let reproduce = data.stamp.as_ref().map_or_else(String::new, |stamp| {
        format!(" (reproduce with `--as-of {}`)", stamp.position)
    });
    out.push_str(&format!(
        "- Ledger: {}{reproduce}\n",
        stamp_text(data.stamp.as_ref())
    ));

    // New feedback, by team and by status.
    render_feedback(&mut out, &data.feedback, k);

    // Decisions.
    out.push_str(&format!(
        "\n## Decisions accepted ({})\n\n",
        data.accepted.len()
    ));
    if data.accepted.is_empty() {
        out.push_str("None in the period.\n");
    }
    for decision in &data.accepted {
        let content = decision.content.clone().unwrap_or_default();
        out.push_str(&format!(
            "- {} ({}, {}), accepted {} by {}\n",
            decision_title(Some(decision)),
            name_of::<proto::DecisionKind>(content.kind),
            md(&content.team),
            format_date(decision.decided_at_micros),
            md(&decision.decided_by)
        ));
    }
    out.push_str(&format!(
        "\n## Decisions superseded ({})\n\n",
        data.superseded.len()
    ));
    if data.superseded.is_empty() {
        out.push_str("None in the period.\n");
    }
    for supersession in &data.superseded {
        out.push_str(&format!(
            "- {} superseded by {} on {}\n",
            decision_title(supersession.decision.as_ref()),
            decision_title(supersession.by.as_ref()),
            format_date(supersession.superseded_at_micros)
        ));
    }

    // Ranking.
    out.push_str(&format!(
        "\n## Ranking\n\nTop {} of {} ranked opportunities. \"Change\" is the score's change over \
         the period (\"new\": first scored in it); top inputs are the ones that weigh most in the \
         latest score.\n",
        data.ranking.len(),
        data.ranked_count
    ));
    if !data.ranking.is_empty() {
        out.push_str(
            "\n| rank | opportunity | score | change | status | last scored | top inputs |\n",
        );
        out.push_str("|---:|---|---:|---:|---|---|---|\n");
        for ranked in &data.ranking {
            let entry = &ranked.entry;
            let (scored, change) = match &ranked.score {
                Some(score) => {
                    let change = match (ranked.score_before, ranked.score_at_end) {
                        (None, Some(_)) => "new".to_owned(),
                        (Some(before), Some(end)) if (end - before).abs() > SCORE_EPSILON => {
                            format!(
                                "{}{}",
                                if end > before { "+" } else { "" },
                                number_text(end - before)
                            )
                        }
                        _ => "-".to_owned(),
                    };
                    (format_date(score.computed_at_micros), change)
                }
                None => ("never".to_owned(), "-".to_owned()),
            };
            out.push_str(&format!(
                "| {} | `{}` {} | {} | {change} | {} | {} | {} |\n",
                entry.rank,
                md(&entry.id),
                md(&entry.title),
                number_text(entry.score),
                name_of::<proto::OpportunityStatus>(entry.status),
                scored,
                ranked
                    .score
                    .as_ref()
                    .map_or_else(String::new, |score| top_inputs(score, k))
            ));
        }
    }

    // Initiatives.
    out.push_str(&format!(
        "\n## Initiatives at risk ({})\n\n",
        data.at_risk.len()
    ));
    if data.at_risk.is_empty() {
        out.push_str("None.\n");
    }
    for initiative in &data.at_risk {
        let draft = initiative.draft.clone().unwrap_or_default();
        out.push_str(&format!(
            "- `{}` {} ({}, target {}): {}\n",
            md(&initiative.id),
            md(&draft.title),
            md(&draft.team),
            format_date(draft.target_date_micros),
            md(&initiative.risk_reason)
        ));
    }
    out.push_str(&format!(
        "\n## Milestones missed ({})\n\n",
        data.missed.len()
    ));
    if data.missed.is_empty() {
        out.push_str("None in the period.\n");
    }
    for missed in &data.missed {
        out.push_str(&format!(
            "- `{}` {}: {}, due {}, missed {}\n",
            md(&missed.initiative_id),
            md(&missed.initiative_title),
            md(&missed.milestone.name),
            format_date(missed.milestone.due_micros),
            format_date(missed.milestone.closed_at_micros)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;
    /// 2026-01-01T00:00:00Z.
    const JAN_1: i64 = 1_767_225_600_000_000;

    fn feedback(id: &str, team: &str, status: proto::FeedbackStatus) -> proto::Feedback {
        proto::Feedback {
            id: id.into(),
            team: team.into(),
            status: status.into(),
            personal_state: proto::PersonalState::Withheld.into(),
            ..Default::default()
        }
    }

    /// A feedback item whose submitter the reader may see (`""`: anonymous).
    fn feedback_by(
        id: &str,
        team: &str,
        status: proto::FeedbackStatus,
        submitter: &str,
    ) -> proto::Feedback {
        proto::Feedback {
            personal_state: proto::PersonalState::Open.into(),
            text: "the build is slow".into(),
            submitter: submitter.into(),
            ..feedback(id, team, status)
        }
    }

    fn decision(id: &str, title: &str, decided_at: i64) -> proto::Decision {
        proto::Decision {
            id: id.into(),
            status: proto::DecisionStatus::Accepted.into(),
            content: Some(proto::DecisionContent {
                kind: proto::DecisionKind::Architecture.into(),
                title: title.into(),
                team: "platform".into(),
                ..Default::default()
            }),
            decided_by: "user:cto".into(),
            decided_at_micros: decided_at,
            ..Default::default()
        }
    }

    fn input(
        factor: &str,
        contribution: f64,
        source: proto::input_source::Source,
    ) -> proto::ScoreInput {
        proto::ScoreInput {
            factor: factor.into(),
            source: Some(proto::InputSource {
                source: Some(source),
            }),
            raw: contribution,
            normalised: contribution,
            weight: 1.0,
            contribution,
        }
    }

    fn sample() -> StatusData {
        use proto::FeedbackStatus::{Discarded, Processed, Received};
        use proto::input_source::Source;
        StatusData {
            tenant: "acme".into(),
            since_micros: JAN_1,
            until_micros: JAN_1 + 31 * DAY,
            stamp: Some(proto::Stamp {
                position: 1234,
                checkpoint: Some(proto::Checkpoint {
                    tree_size: 1200,
                    ..Default::default()
                }),
            }),
            feedback: vec![
                feedback_by("fb-1", "platform", Processed, "user:alice"),
                feedback_by("fb-2", "platform", Received, "user:bob"),
                feedback_by("fb-3", "mobile", Discarded, "user:dave"),
                feedback_by("fb-4", "platform", Processed, "user:carol"),
                feedback_by("fb-5", "mobile", Received, "user:dave"),
            ],
            accepted: vec![decision(
                "dec-2",
                "Adopt Bazel | remote cache",
                JAN_1 + 4 * DAY,
            )],
            superseded: vec![proto::Supersession {
                decision: Some(decision("dec-1", "Adopt Make", JAN_1 - 90 * DAY)),
                by: Some(decision(
                    "dec-2",
                    "Adopt Bazel | remote cache",
                    JAN_1 + 4 * DAY,
                )),
                superseded_at_micros: JAN_1 + 4 * DAY,
            }],
            ranking: vec![
                RankedExplained {
                    entry: proto::RankedOpportunity {
                        rank: 1,
                        id: "opp-3".into(),
                        title: "Speed up CI builds".into(),
                        status: proto::OpportunityStatus::Planned.into(),
                        score: 4.25,
                        ..Default::default()
                    },
                    score: Some(proto::ScoreSnapshot {
                        model: "rice".into(),
                        model_version: 1,
                        value: 4.25,
                        computed_at_micros: JAN_1 + 10 * DAY,
                        inputs: vec![
                            input(
                                "effort",
                                -0.5,
                                Source::Rating(proto::input_source::Rating {
                                    by: "user:lead".into(),
                                    at_micros: JAN_1,
                                }),
                            ),
                            input(
                                "votes",
                                1.5,
                                Source::Votes(proto::input_source::Votes { voters: 12 }),
                            ),
                            input(
                                "feedback",
                                0.25,
                                Source::Feedback(proto::input_source::Feedback { items: 4 }),
                            ),
                            input(
                                "latency",
                                2.0,
                                Source::Signal(proto::input_source::Signal {
                                    signal_id: "sig-3".into(),
                                    observed_at_micros: JAN_1,
                                }),
                            ),
                        ],
                        ..Default::default()
                    }),
                    score_before: Some(2.0),
                    score_at_end: Some(4.25),
                },
                RankedExplained {
                    entry: proto::RankedOpportunity {
                        rank: 2,
                        id: "opp-5".into(),
                        title: "Cut on-call toil".into(),
                        status: proto::OpportunityStatus::UnderReview.into(),
                        score: 1.0,
                        ..Default::default()
                    },
                    score: Some(proto::ScoreSnapshot {
                        value: 1.0,
                        computed_at_micros: JAN_1 + 2 * DAY,
                        inputs: vec![input(
                            "votes",
                            1.0,
                            Source::Votes(proto::input_source::Votes { voters: 1 }),
                        )],
                        ..Default::default()
                    }),
                    score_before: None,
                    score_at_end: Some(1.0),
                },
                RankedExplained {
                    entry: proto::RankedOpportunity {
                        rank: 3,
                        id: "opp-7".into(),
                        title: "Fix flaky tests".into(),
                        status: proto::OpportunityStatus::New.into(),
                        score: 0.0,
                        ..Default::default()
                    },
                    score: None,
                    score_before: None,
                    score_at_end: None,
                },
            ],
            ranked_count: 27,
            at_risk: vec![proto::Initiative {
                id: "ini-2".into(),
                at_risk: true,
                risk_reason: "the rollout slipped behind a dependency".into(),
                draft: Some(proto::InitiativeDraft {
                    title: "Deliver opp-2".into(),
                    team: "payments".into(),
                    target_date_micros: JAN_1 + 60 * DAY,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            missed: vec![MissedMilestone {
                initiative_id: "ini-2".into(),
                initiative_title: "Deliver opp-2".into(),
                milestone: proto::Milestone {
                    name: "rollout".into(),
                    due_micros: JAN_1 + 5 * DAY,
                    status: proto::MilestoneStatus::Missed.into(),
                    closed_at_micros: JAN_1 + 6 * DAY,
                    ..Default::default()
                },
            }],
        }
    }

    #[test]
    fn a_status_report_renders_every_section() {
        // k = 3: platform's three submitters are shown; mobile's one submitter (two items) is
        // withheld, and so is the vote input of one voter.
        assert_eq!(
            render_status(&sample(), 3),
            r#"# Status report: acme

- Period: 2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z
- Ledger: as of position 1234, checkpoint tree size 1200 (reproduce with `--as-of 1234`)

## New feedback

3 items received in the period in the teams shown; 1 team withheld (fewer than 3 people).

Teams of fewer than 3 people are withheld; people are counted as distinct submitters.

| team | received | processed | discarded | total |
|---|---:|---:|---:|---:|
| mobile | withheld (fewer than 3 people) |  |  |  |
| platform | 1 | 2 | 0 | 3 |
| **all shown** | 1 | 2 | 0 | 3 |

## Decisions accepted (1)

- `dec-2` Adopt Bazel \| remote cache (architecture, platform), accepted 2026-01-05 by user:cto

## Decisions superseded (1)

- `dec-1` Adopt Make superseded by `dec-2` Adopt Bazel \| remote cache on 2026-01-05

## Ranking

Top 3 of 27 ranked opportunities. "Change" is the score's change over the period ("new": first scored in it); top inputs are the ones that weigh most in the latest score.

| rank | opportunity | score | change | status | last scored | top inputs |
|---:|---|---:|---:|---|---|---|
| 1 | `opp-3` Speed up CI builds | 4.25 | +2.25 | planned | 2026-01-11 | latency +2 (signal sig-3 observed 2026-01-01T00:00:00Z); votes +1.5 (votes of 12 voters); effort -0.5 (rating at 2026-01-01T00:00:00Z) |
| 2 | `opp-5` Cut on-call toil | 1 | new | under_review | 2026-01-03 | votes +1 (votes of fewer than 3 voters) |
| 3 | `opp-7` Fix flaky tests | 0 | - | new | never |  |

## Initiatives at risk (1)

- `ini-2` Deliver opp-2 (payments, target 2026-03-02): the rollout slipped behind a dependency

## Milestones missed (1)

- `ini-2` Deliver opp-2: rollout, due 2026-01-06, missed 2026-01-07
"#
        );
    }

    #[test]
    fn an_empty_period_says_so() {
        let data = StatusData {
            tenant: "globex".into(),
            since_micros: JAN_1,
            until_micros: JAN_1 + DAY,
            stamp: Some(proto::Stamp {
                position: 7,
                checkpoint: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            render_status(&data, K_ANONYMITY_DEFAULT),
            r#"# Status report: globex

- Period: 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z
- Ledger: as of position 7, no checkpoint signed yet (reproduce with `--as-of 7`)

## New feedback

0 items received in the period.

## Decisions accepted (0)

None in the period.

## Decisions superseded (0)

None in the period.

## Ranking

Top 0 of 0 ranked opportunities. "Change" is the score's change over the period ("new": first scored in it); top inputs are the ones that weigh most in the latest score.

## Initiatives at risk (0)

None.

## Milestones missed (0)

None in the period.
"#
        );
    }

    /// The new-feedback section alone.
    fn feedback_section(feedback: Vec<proto::Feedback>, k: usize) -> String {
        let data = StatusData {
            feedback,
            ..Default::default()
        };
        let report = render_status(&data, k);
        let start = report.find("## New feedback").unwrap();
        let end = report.find("## Decisions accepted").unwrap();
        report[start..end].trim().to_owned()
    }

    #[test]
    fn a_team_is_shown_from_k_distinct_submitters() {
        use proto::FeedbackStatus::{Processed, Received};
        let k = K_ANONYMITY_DEFAULT;
        let mut items = Vec::new();
        // platform: k people, one of them twice; mobile: k - 1 people; web: one person, k items.
        for n in 0..k {
            items.push(feedback_by(
                &format!("p-{n}"),
                "platform",
                Received,
                &format!("u{n}"),
            ));
        }
        items.push(feedback_by("p-x", "platform", Processed, "u0"));
        for n in 0..k - 1 {
            items.push(feedback_by(
                &format!("m-{n}"),
                "mobile",
                Received,
                &format!("u{n}"),
            ));
        }
        for n in 0..k {
            items.push(feedback_by(
                &format!("w-{n}"),
                "web",
                Processed,
                "user:dave",
            ));
        }
        let section = feedback_section(items, k);
        assert_eq!(
            section,
            "## New feedback

6 items received in the period in the teams shown; 2 teams withheld (fewer than 5 people).

Teams of fewer than 5 people are withheld; people are counted as distinct submitters.

| team | received | processed | discarded | total |
|---|---:|---:|---:|---:|
| mobile | withheld (fewer than 5 people) |  |  |  |
| platform | 5 | 1 | 0 | 6 |
| web | withheld (fewer than 5 people) |  |  |  |
| **all shown** | 5 | 1 | 0 | 6 |"
        );
        for name in ["u0", "user:dave", "the build is slow"] {
            assert!(!section.contains(name), "{name} in {section}");
        }
    }

    #[test]
    fn unseen_submitters_count_one_person_per_item() {
        use proto::FeedbackStatus::Received;
        let k = 3;
        // Anonymous, withheld and erased items: the report cannot tell their submitters apart,
        // so each counts as one person (the item count, an upper bound on people).
        let erased = proto::Feedback {
            personal_state: proto::PersonalState::Erased.into(),
            ..feedback("f-3", "platform", Received)
        };
        let shown = feedback_section(
            vec![
                feedback_by("f-1", "platform", Received, ""),
                feedback("f-2", "platform", Received),
                erased,
                feedback("f-4", "mobile", Received),
                feedback_by("f-5", "mobile", Received, "user:erin"),
            ],
            k,
        );
        assert_eq!(
            shown,
            "## New feedback

3 items received in the period in the teams shown; 1 team withheld (fewer than 3 people).

Teams of fewer than 3 people are withheld; the submitters of 4 items are not visible (anonymous, withheld or erased), so each counts as one person: an upper bound.

| team | received | processed | discarded | total |
|---|---:|---:|---:|---:|
| mobile | withheld (fewer than 3 people) |  |  |  |
| platform | 3 | 0 | 0 | 3 |
| **all shown** | 3 | 0 | 0 | 3 |"
        );
        // One short of k: withheld, and no total gives it back.
        let withheld = feedback_section(
            vec![
                feedback("f-1", "platform", Received),
                feedback("f-2", "platform", Received),
            ],
            k,
        );
        assert!(withheld.starts_with(
            "## New feedback\n\n0 items received in the period in the teams shown; 1 team withheld"
        ));
        assert!(withheld.contains("| platform | withheld (fewer than 3 people) |"));
        assert!(!withheld.contains("**all"));
    }

    #[test]
    fn k_of_one_shows_every_team() {
        use proto::FeedbackStatus::{Discarded, Processed, Received};
        let section = feedback_section(
            vec![
                feedback("fb-1", "platform", Processed),
                feedback("fb-2", "platform", Received),
                feedback("fb-3", "mobile", Discarded),
                feedback("fb-4", "platform", Processed),
            ],
            1,
        );
        assert_eq!(
            section,
            "## New feedback

4 items received in the period.

| team | received | processed | discarded | total |
|---|---:|---:|---:|---:|
| mobile | 0 | 0 | 1 | 1 |
| platform | 1 | 2 | 0 | 3 |
| **all** | 1 | 2 | 1 | 4 |"
        );
    }

    #[test]
    fn the_ranking_names_no_principal() {
        let report = render_status(&sample(), K_ANONYMITY_DEFAULT);
        let start = report.find("## Ranking").unwrap();
        let end = report.find("## Initiatives at risk").unwrap();
        let ranking = &report[start..end];
        assert!(!ranking.contains("user:"), "{ranking}");
        assert!(ranking.contains("votes of 12 voters"));
        assert!(ranking.contains("votes of fewer than 5 voters"));
        // Decisions name who accepted each one: a record of one decision, not an aggregate.
        assert!(report.contains("accepted 2026-01-05 by user:cto"));
        // Submitters are never printed.
        assert!(!report.contains("user:alice") && !report.contains("user:dave"));
    }
}
