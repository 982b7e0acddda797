//! `cairn report status`: a Markdown status report of one tenant over a period: new feedback by
//! team and status, decisions accepted and superseded, the top of the ranking with what weighs
//! most in each score, initiatives at risk and milestones missed.
//!
//! Every read is pinned to the position the first one answered at, so the report reflects one
//! ledger state, named in its header with the checkpoint that covers it. Fetching and rendering
//! are apart: [`render_status`] is a pure function of [`StatusData`], tested as exact text.

use std::collections::BTreeMap;

use cairn_grpc::proto;
use clap::{Args, Subcommand};

use crate::enums::name_of;
use crate::loop_client::LoopClient;
use crate::loop_flags::{ReadScope, collect_pages, every_page, parse_time_flag};
use crate::loop_output::{input_source_text, number_text, stamp_text};
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
    /// Its latest score snapshot (ExplainRank), if it was ever scored.
    pub score: Option<proto::ScoreSnapshot>,
    /// Who recorded that score.
    pub scored: Option<proto::Provenance>,
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
            print!("{}", render_status(&data));
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
            scored: answer.scored,
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

/// The inputs that weigh most in a score (by absolute contribution), in words.
fn top_inputs(score: &proto::ScoreSnapshot) -> String {
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
                md(&input_source_text(input.source.as_ref()))
            )
        })
        .collect();
    named.join("; ")
}

/// The report as Markdown.
pub fn render_status(data: &StatusData) -> String {
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
    out.push_str(&format!(
        "\n## New feedback\n\n{} item{} received in the period.\n",
        data.feedback.len(),
        if data.feedback.len() == 1 { "" } else { "s" }
    ));
    if !data.feedback.is_empty() {
        let statuses = [
            proto::FeedbackStatus::Received,
            proto::FeedbackStatus::Processed,
            proto::FeedbackStatus::Discarded,
        ];
        let mut by_team: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
        let mut totals = [0usize; 3];
        for feedback in &data.feedback {
            let counts = by_team.entry(feedback.team.as_str()).or_default();
            if let Some(index) = statuses
                .iter()
                .position(|status| i32::from(*status) == feedback.status)
            {
                counts[index] += 1;
                totals[index] += 1;
            }
        }
        out.push_str("\n| team | received | processed | discarded | total |\n");
        out.push_str("|---|---:|---:|---:|---:|\n");
        for (team, counts) in &by_team {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                md(team),
                counts[0],
                counts[1],
                counts[2],
                counts.iter().sum::<usize>()
            ));
        }
        out.push_str(&format!(
            "| **all** | {} | {} | {} | {} |\n",
            totals[0],
            totals[1],
            totals[2],
            totals.iter().sum::<usize>()
        ));
    }

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
                    let by = ranked
                        .scored
                        .as_ref()
                        .map_or("?".to_owned(), |scored| md(&scored.actor));
                    (
                        format!("{} by {by}", format_date(score.computed_at_micros)),
                        change,
                    )
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
                ranked.score.as_ref().map_or_else(String::new, top_inputs)
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
            ..Default::default()
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
                feedback("fb-1", "platform", Processed),
                feedback("fb-2", "platform", Received),
                feedback("fb-3", "mobile", Discarded),
                feedback("fb-4", "platform", Processed),
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
                    scored: Some(proto::Provenance {
                        actor: "service:portal".into(),
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
                    scored: Some(proto::Provenance {
                        actor: "user:lead".into(),
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
                    scored: None,
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
        assert_eq!(
            render_status(&sample()),
            r#"# Status report: acme

- Period: 2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z
- Ledger: as of position 1234, checkpoint tree size 1200 (reproduce with `--as-of 1234`)

## New feedback

4 items received in the period.

| team | received | processed | discarded | total |
|---|---:|---:|---:|---:|
| mobile | 0 | 0 | 1 | 1 |
| platform | 1 | 2 | 0 | 3 |
| **all** | 1 | 2 | 1 | 4 |

## Decisions accepted (1)

- `dec-2` Adopt Bazel \| remote cache (architecture, platform), accepted 2026-01-05 by user:cto

## Decisions superseded (1)

- `dec-1` Adopt Make superseded by `dec-2` Adopt Bazel \| remote cache on 2026-01-05

## Ranking

Top 3 of 27 ranked opportunities. "Change" is the score's change over the period ("new": first scored in it); top inputs are the ones that weigh most in the latest score.

| rank | opportunity | score | change | status | last scored | top inputs |
|---:|---|---:|---:|---|---|---|
| 1 | `opp-3` Speed up CI builds | 4.25 | +2.25 | planned | 2026-01-11 by service:portal | latency +2 (signal sig-3 observed 2026-01-01T00:00:00Z); votes +1.5 (votes of 12 voters); effort -0.5 (rating by user:lead at 2026-01-01T00:00:00Z) |
| 2 | `opp-5` Cut on-call toil | 1 | new | under_review | 2026-01-03 by user:lead | votes +1 (votes of 1 voters) |
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
            render_status(&data),
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
}
