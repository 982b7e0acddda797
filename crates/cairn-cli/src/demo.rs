//! `cairn demo`: loads the realistic data set of `cairn_service::dataset` through the gRPC API,
//! then answers the questions of the domain (why is X ranked first, what happened to my feedback,
//! what superseded what, what is downstream and upstream, what aged out, who changed a priority)
//! for the first tenant, each answer with the ledger position it reflects.
//!
//! Each data set step becomes the call a client would make, under the step's idempotency key,
//! actor and time (`occurred_at_micros`), so loading the same seed twice records nothing new the
//! second time: the summary counts the receipts that came back deduplicated.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use cairn_domain::decision::DecisionCommand;
use cairn_domain::feedback::FeedbackCommand;
use cairn_domain::initiative::InitiativeCommand;
use cairn_domain::opportunity::{OpportunityCommand, Triage};
use cairn_domain::signal::SignalCommand;
use cairn_domain::{DAY_MICROS, EntityId, EntityKind, EntityRef, Time};
use cairn_grpc::domain_convert::{
    decision_content_to_proto, entity_ref_to_proto, feedback_source_to_proto,
    initiative_draft_to_proto, observation_to_proto, opportunity_draft_to_proto,
    validation_to_proto, visibility_to_proto,
};
use cairn_grpc::proto;
use cairn_service::dataset::{self, Action, Scale, Step};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::ServerArgs;
use crate::lineage::graph_text;
use crate::loop_client::{LoopClient, Mutation};
use crate::loop_flags::{PageFlags, collect_pages, every_page};
use crate::loop_output::{
    aged_out_line, explain_text, provenance_text, score_history_line, stamp_text, supersession_line,
};
use crate::sweep::sweep_aging;
use crate::timespec::now_micros;
use crate::why::{what_happened_text, why_step_text};

/// `cairn demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// The data set's seed: the same seed gives the same steps and idempotency keys.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// How many tenants (acme, globex, initech, ...).
    #[arg(long, default_value_t = Scale::DEMO.tenants as u64, value_parser = clap::value_parser!(u64).range(1..=64))]
    tenants: u64,
}

/// What a data set step becomes: a command answering one receipt, or an aging sweep.
// One at a time, sent at once: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// A command.
    Command(Mutation),
    /// `PrioritizationService.AgeOut`, run to its last page.
    Sweep(proto::CommandMeta),
}

/// The command metadata of a step: its tenant, idempotency key, actor and time.
fn step_meta(step: &Step) -> proto::CommandMeta {
    proto::CommandMeta {
        tenant: step.tenant.as_str().to_owned(),
        idempotency_key: step.key.clone(),
        expected_version: 0,
        actor: step.actor.as_str().to_owned(),
        occurred_at_micros: step.at.0,
        correlation_id: Vec::new(),
    }
}

/// The call a step makes.
pub fn step_call(step: &Step) -> anyhow::Result<Call> {
    let meta = Some(step_meta(step));
    let call = match &step.action {
        Action::Feedback(id, command) => Call::Command(feedback_call(meta, id, command)),
        Action::Signal(id, command) => Call::Command(signal_call(meta, id, command)),
        Action::Opportunity(id, command) => Call::Command(opportunity_call(meta, id, command)?),
        Action::Evidence {
            opportunity,
            evidence,
        } => Call::Command(evidence_call(meta, opportunity, evidence)),
        Action::Decision(id, command) => Call::Command(decision_call(meta, id, command)?),
        Action::Initiative(id, command) => Call::Command(initiative_call(meta, id, command)),
        Action::SweepAging => Call::Sweep(step_meta(step)),
    };
    Ok(call)
}

fn id_text(id: &EntityId) -> String {
    id.as_str().to_owned()
}

/// `Action::Feedback`: SubmitFeedback, LinkFeedback or DiscardFeedback.
fn feedback_call(
    meta: Option<proto::CommandMeta>,
    id: &EntityId,
    command: &FeedbackCommand,
) -> Mutation {
    match command {
        FeedbackCommand::Submit {
            id: _,
            content,
            team,
            source,
            tags,
            outcome_tags,
            visibility,
        } => Mutation::SubmitFeedback(proto::SubmitFeedbackRequest {
            meta,
            id: id_text(id),
            text: content.text.clone(),
            submitter: content
                .submitter
                .as_ref()
                .map(|submitter| submitter.as_str().to_owned())
                .unwrap_or_default(),
            team: team.as_str().to_owned(),
            source: feedback_source_to_proto(*source).into(),
            tags: tags.clone(),
            outcome_tags: outcome_tags.clone(),
            visibility: visibility_to_proto(*visibility).into(),
        }),
        FeedbackCommand::Link { opportunity } => {
            Mutation::LinkFeedback(proto::LinkFeedbackRequest {
                meta,
                id: id_text(opportunity),
                evidence: Some(entity_ref_to_proto(&EntityRef::new(
                    EntityKind::Feedback,
                    id.clone(),
                ))),
            })
        }
        FeedbackCommand::Discard { reason } => {
            Mutation::DiscardFeedback(proto::DiscardFeedbackRequest {
                meta,
                id: id_text(id),
                reason: reason.clone(),
            })
        }
    }
}

/// `Action::Signal`: RecordSignal.
fn signal_call(
    meta: Option<proto::CommandMeta>,
    id: &EntityId,
    command: &SignalCommand,
) -> Mutation {
    let (SignalCommand::Record { observation, .. }
    | SignalCommand::RecordSampled { observation, .. }) = command;
    Mutation::RecordSignal(proto::RecordSignalRequest {
        meta,
        id: id_text(id),
        observation: Some(observation_to_proto(observation)),
    })
}

/// `Action::Evidence`: LinkFeedback (a feedback item or a signal, for an opportunity).
fn evidence_call(
    meta: Option<proto::CommandMeta>,
    opportunity: &EntityId,
    evidence: &EntityRef,
) -> Mutation {
    Mutation::LinkFeedback(proto::LinkFeedbackRequest {
        meta,
        id: id_text(opportunity),
        evidence: Some(entity_ref_to_proto(evidence)),
    })
}

/// `Action::Opportunity`: one PrioritizationService command. The commands the server derives
/// itself (attaching evidence, aging out, absorbing a duplicate) have no call of their own.
fn opportunity_call(
    meta: Option<proto::CommandMeta>,
    id: &EntityId,
    command: &OpportunityCommand,
) -> anyhow::Result<Mutation> {
    use proto::triage_request::Outcome;
    let id = id_text(id);
    Ok(match command {
        OpportunityCommand::Create { id: _, draft } => {
            Mutation::CreateOpportunity(proto::CreateOpportunityRequest {
                meta,
                id,
                draft: Some(opportunity_draft_to_proto(draft)),
            })
        }
        OpportunityCommand::StartReview => {
            Mutation::StartReview(proto::StartReviewRequest { meta, id })
        }
        OpportunityCommand::Triage(triage) => {
            let outcome = match triage {
                Triage::Accept { decision } => Outcome::Accept(proto::TriageAccept {
                    decision_id: decision.as_ref().map(id_text).unwrap_or_default(),
                }),
                Triage::Duplicate { canonical } => Outcome::Duplicate(proto::TriageDuplicate {
                    canonical_id: id_text(canonical),
                }),
                Triage::Decline { reason, decision } => Outcome::Decline(proto::TriageDecline {
                    reason: reason.clone(),
                    decision_id: id_text(decision),
                }),
                Triage::Snooze { until } => Outcome::Snooze(proto::TriageSnooze {
                    until_micros: until.0,
                }),
            };
            Mutation::Triage(proto::TriageRequest {
                meta,
                id,
                outcome: Some(outcome),
            })
        }
        OpportunityCommand::Wake => Mutation::Wake(proto::WakeOpportunityRequest { meta, id }),
        OpportunityCommand::StartWork => Mutation::StartWork(proto::StartWorkRequest { meta, id }),
        OpportunityCommand::Ship => Mutation::Ship(proto::ShipOpportunityRequest { meta, id }),
        OpportunityCommand::Validate { outcome, signal } => {
            Mutation::ValidateOutcome(proto::ValidateOutcomeRequest {
                meta,
                id,
                outcome: validation_to_proto(*outcome).into(),
                signal_id: signal.as_ref().map(id_text).unwrap_or_default(),
            })
        }
        OpportunityCommand::Vote {
            principal,
            weight,
            segment,
        } => Mutation::Vote(proto::VoteRequest {
            meta,
            id,
            voter: principal.as_str().to_owned(),
            weight: *weight,
            segment: segment.clone().unwrap_or_default(),
        }),
        OpportunityCommand::Rate {
            name,
            value,
            rationale,
        } => Mutation::Rate(proto::RateRequest {
            meta,
            id,
            name: name.clone(),
            value: *value,
            rationale: rationale.clone(),
        }),
        OpportunityCommand::Rescore => Mutation::Rescore(proto::RescoreRequest { meta, id }),
        OpportunityCommand::AttachEvidence(_)
        | OpportunityCommand::AgeOut(_)
        | OpportunityCommand::AbsorbDuplicate { .. } => bail!(
            "opportunity {id}: {command:?} is recorded by the server as part of another call, \
             not sent by a client"
        ),
    })
}

/// `Action::Decision`: one DecisionService command (marking a decision superseded is the
/// server's second step of accepting the one that supersedes it).
fn decision_call(
    meta: Option<proto::CommandMeta>,
    id: &EntityId,
    command: &DecisionCommand,
) -> anyhow::Result<Mutation> {
    let id = id_text(id);
    Ok(match command {
        DecisionCommand::Propose { id: _, content } => {
            Mutation::ProposeDecision(proto::ProposeDecisionRequest {
                meta,
                id,
                content: Some(decision_content_to_proto(content)),
            })
        }
        DecisionCommand::Revise(content) => {
            Mutation::ReviseDecision(proto::ReviseDecisionRequest {
                meta,
                id,
                content: Some(decision_content_to_proto(content)),
            })
        }
        DecisionCommand::Accept => {
            Mutation::AcceptDecision(proto::AcceptDecisionRequest { meta, id })
        }
        DecisionCommand::Reject { reason } => {
            Mutation::RejectDecision(proto::RejectDecisionRequest {
                meta,
                id,
                reason: reason.clone(),
            })
        }
        DecisionCommand::Deprecate { reason } => {
            Mutation::DeprecateDecision(proto::DeprecateDecisionRequest {
                meta,
                id,
                reason: reason.clone(),
            })
        }
        DecisionCommand::MarkSuperseded { by } => bail!(
            "decision {id}: marking it superseded by {by} is recorded by the server when {by} \
             is accepted, not sent by a client"
        ),
    })
}

/// `Action::Initiative`: one InitiativeService command.
fn initiative_call(
    meta: Option<proto::CommandMeta>,
    id: &EntityId,
    command: &InitiativeCommand,
) -> Mutation {
    let id = id_text(id);
    match command {
        InitiativeCommand::Create { id: _, draft } => {
            Mutation::CreateInitiative(proto::CreateInitiativeRequest {
                meta,
                id,
                draft: Some(initiative_draft_to_proto(draft)),
            })
        }
        InitiativeCommand::Schedule => {
            Mutation::Schedule(proto::ScheduleInitiativeRequest { meta, id })
        }
        InitiativeCommand::Start => Mutation::Start(proto::StartInitiativeRequest { meta, id }),
        InitiativeCommand::FlagRisk { reason } => {
            Mutation::FlagRisk(proto::FlagInitiativeRiskRequest {
                meta,
                id,
                reason: reason.clone(),
            })
        }
        InitiativeCommand::ClearRisk => {
            Mutation::ClearRisk(proto::ClearInitiativeRiskRequest { meta, id })
        }
        InitiativeCommand::Complete => {
            Mutation::Complete(proto::CompleteInitiativeRequest { meta, id })
        }
        InitiativeCommand::Cancel { reason } => Mutation::Cancel(proto::CancelInitiativeRequest {
            meta,
            id,
            reason: reason.clone(),
        }),
        InitiativeCommand::Implement { opportunity } => {
            Mutation::Implement(proto::ImplementOpportunityRequest {
                meta,
                id,
                opportunity_id: id_text(opportunity),
            })
        }
        InitiativeCommand::AddMilestone {
            name,
            due,
            exit_criteria,
        } => Mutation::AddMilestone(proto::AddMilestoneRequest {
            meta,
            id,
            name: name.clone(),
            due_micros: due.0,
            exit_criteria: exit_criteria.clone(),
        }),
        InitiativeCommand::MeetMilestone { name, signal } => {
            Mutation::MeetMilestone(proto::MeetMilestoneRequest {
                meta,
                id,
                name: name.clone(),
                signal_id: signal.as_ref().map(id_text).unwrap_or_default(),
            })
        }
        InitiativeCommand::MissMilestone { name } => {
            Mutation::MissMilestone(proto::MissMilestoneRequest {
                meta,
                id,
                name: name.clone(),
            })
        }
    }
}

/// What loading one tenant's steps recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadCounts {
    /// Steps sent.
    pub steps: u64,
    /// Steps that recorded something new.
    pub recorded: u64,
    /// Steps whose every receipt came back deduplicated: recorded by an earlier run.
    pub deduplicated: u64,
    /// Steps that changed nothing (a sweep with nothing to age out, an unchanged rescore).
    pub unchanged: u64,
    /// Opportunities aged out by this run's sweeps.
    pub aged_out: u64,
    /// The highest ledger position a receipt named: reads wait for it (read your writes).
    pub last_position: u64,
}

impl LoadCounts {
    fn add(&mut self, other: LoadCounts) {
        self.steps += other.steps;
        self.recorded += other.recorded;
        self.deduplicated += other.deduplicated;
        self.unchanged += other.unchanged;
        self.aged_out += other.aged_out;
        self.last_position = self.last_position.max(other.last_position);
    }

    /// Counts one step by its receipts.
    fn count(&mut self, receipts: &[proto::CommandReceipt]) {
        self.steps += 1;
        for receipt in receipts {
            self.last_position = self.last_position.max(receipt.last_position);
        }
        if receipts.is_empty() || receipts.iter().all(|receipt| receipt.first_position == 0) {
            self.unchanged += 1;
        } else if receipts.iter().all(|receipt| receipt.deduplicated) {
            self.deduplicated += 1;
        } else {
            self.recorded += 1;
        }
    }
}

/// Sends one tenant's steps in order.
async fn load_tenant(
    mut client: LoopClient,
    steps: Vec<Step>,
    progress: ProgressBar,
) -> anyhow::Result<LoadCounts> {
    let mut counts = LoadCounts::default();
    for step in &steps {
        let receipts = match step_call(step)? {
            Call::Command(mutation) => vec![client.send(mutation).await],
            Call::Sweep(meta) => match sweep_aging(&mut client, meta, "", 0).await {
                Ok(sweep) => {
                    counts.aged_out += sweep
                        .aged_out
                        .iter()
                        .filter(|result| {
                            result
                                .receipt
                                .as_ref()
                                .is_some_and(|receipt| !receipt.deduplicated)
                        })
                        .count() as u64;
                    sweep
                        .aged_out
                        .into_iter()
                        .filter_map(|result| result.receipt)
                        .map(Ok)
                        .collect()
                }
                Err(error) => vec![Err(error)],
            },
        };
        let receipts = receipts
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("step {} of the data set ({})", step.key, step.tenant))?;
        counts.count(&receipts);
        progress.inc(1);
    }
    Ok(counts)
}

/// A server refuses a time in its future, and the data set's last steps happen "now": a minute
/// back, so a server whose clock is a little behind this one's still takes them.
const CLOCK_SKEW_MARGIN_MICROS: i64 = 60_000_000;

/// The data set's "now".
fn data_set_now() -> i64 {
    now_micros() - CLOCK_SKEW_MARGIN_MICROS
}

fn progress_bar(length: u64) -> ProgressBar {
    let progress = ProgressBar::new(length);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:40}] {human_pos}/{human_len} steps ({per_sec}, eta {eta})",
        )
        .expect("the progress template is valid")
        .progress_chars("=> "),
    );
    progress
}

/// Loads the data set, then answers the domain's questions for the first tenant.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let now = data_set_now();
    let scale = Scale {
        tenants: usize::try_from(args.tenants).unwrap_or(usize::MAX),
        ..Scale::DEMO
    };
    let steps = dataset::generate(args.seed, scale, Time(now));
    let Some(first_tenant) = steps.first().map(|step| step.tenant.as_str().to_owned()) else {
        bail!("the data set has no steps");
    };
    let step_count = steps.len() as u64;
    let mut by_tenant: BTreeMap<String, Vec<Step>> = BTreeMap::new();
    for step in steps {
        by_tenant
            .entry(step.tenant.as_str().to_owned())
            .or_default()
            .push(step);
    }
    let client = LoopClient::connect(&args.server).await?;
    eprintln!(
        "loading {step_count} steps for {} tenants (seed {}) into {}",
        by_tenant.len(),
        args.seed,
        args.server.server
    );
    let progress = progress_bar(step_count);
    // Tenants are independent: one task each; within a tenant, steps go in order.
    let mut tasks = Vec::new();
    for (tenant, tenant_steps) in by_tenant {
        let task = tokio::spawn(load_tenant(client.clone(), tenant_steps, progress.clone()));
        tasks.push((tenant, task));
    }
    let mut total = LoadCounts::default();
    let mut failure = None;
    for (tenant, task) in tasks {
        match task.await.context("a loading task panicked")? {
            Ok(counts) => {
                progress.suspend(|| {
                    eprintln!(
                        "{tenant}: {} steps, {} recorded, {} already recorded, {} unchanged",
                        counts.steps, counts.recorded, counts.deduplicated, counts.unchanged
                    )
                });
                total.add(counts);
            }
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    progress.finish_and_clear();
    if let Some(error) = failure {
        return Err(error);
    }
    println!(
        "loaded {} steps (seed {}): {} recorded something new, {} were already recorded \
         (deduplicated by their idempotency keys), {} changed nothing; {} opportunities aged out",
        total.steps, args.seed, total.recorded, total.deduplicated, total.unchanged, total.aged_out
    );
    if total.recorded == 0 && total.deduplicated > 0 {
        println!("nothing new was recorded: this data set was loaded before");
    }
    println!();
    answer_questions(client, &first_tenant, total.last_position, now).await
}

/// The domain's questions for one tenant, each printed with the stamp it reflects. Every answer
/// waits for the loaded position, and all are read as of the first answer's position, so they
/// describe one ledger state.
async fn answer_questions(
    mut client: LoopClient,
    tenant: &str,
    loaded_position: u64,
    now: i64,
) -> anyhow::Result<()> {
    let tenant = tenant.to_owned();
    let ranking = client
        .get_ranking(proto::GetRankingRequest {
            tenant: tenant.clone(),
            read: Some(proto::ReadOptions {
                as_of_position: None,
                at_least_position: (loaded_position > 0).then_some(loaded_position),
                include_personal: false,
            }),
            team: String::new(),
            limit: 1,
        })
        .await?;
    let position = ranking.stamp.as_ref().map_or(0, |stamp| stamp.position);
    let read = Some(proto::ReadOptions {
        as_of_position: Some(position),
        at_least_position: None,
        include_personal: false,
    });
    println!("Answers for tenant {tenant}, all as of ledger position {position}.");

    // 1. Why is the top opportunity ranked first?
    let top = ranking.entries.first().map(|entry| entry.id.clone());
    match &top {
        Some(top) => {
            heading(&format!("1. Why is {top} ranked first? (ExplainRank)"));
            let answer = client
                .explain_rank(proto::ExplainRankRequest {
                    tenant: tenant.clone(),
                    read,
                    id: top.clone(),
                    team: String::new(),
                })
                .await?;
            print!("{}", explain_text(&answer));
            println!("{}", stamp_text(answer.stamp.as_ref()));
        }
        None => {
            heading("1. Why is the top opportunity ranked first? (ExplainRank)");
            println!(
                "no opportunity is ranked, {}",
                stamp_text(ranking.stamp.as_ref())
            );
        }
    }

    // 2. What happened to one processed feedback item?
    let feedback_id = processed_feedback(&mut client, &tenant, read).await?;
    let mut decision_of_feedback = None;
    match &feedback_id {
        Some(feedback_id) => {
            heading(&format!(
                "2. What happened to feedback {feedback_id}? (WhatHappened)"
            ));
            let answer = client
                .what_happened(proto::WhatHappenedRequest {
                    tenant: tenant.clone(),
                    read,
                    feedback_id: feedback_id.clone(),
                })
                .await?;
            decision_of_feedback = answer.opportunities.iter().find_map(|outcome| {
                outcome
                    .decision
                    .as_ref()
                    .map(|decision| decision.id.clone())
            });
            print!("{}", what_happened_text(&answer));
        }
        None => {
            heading("2. What happened to a processed feedback item? (WhatHappened)");
            println!("no feedback item is processed");
        }
    }

    // 3. Which decisions were superseded, and by what?
    heading("3. Which decisions were superseded, and by what? (ListSuperseded)");
    let superseded = collect_pages(&every_page(), async |page| {
        let answer = client
            .list_superseded(proto::ListSupersededRequest {
                tenant: tenant.clone(),
                read,
                page: Some(page),
                superseded: None,
                team: String::new(),
            })
            .await?;
        Ok((answer.supersessions, answer.page, answer.stamp))
    })
    .await?;
    for supersession in &superseded.items {
        println!("{}", supersession_line(supersession));
    }
    println!(
        "{} superseded, {}",
        superseded.items.len(),
        stamp_text(superseded.stamp.as_ref())
    );

    // 4. Everything downstream of the feedback item, everything upstream of a decision.
    if let Some(feedback_id) = &feedback_id {
        heading(&format!(
            "4a. Everything downstream of feedback {feedback_id}, to depth 3 (Graph)"
        ));
        let graph = client
            .graph(graph_request(
                &tenant,
                read,
                proto::EntityKind::Feedback,
                feedback_id,
                proto::LineageDirection::Downstream,
            ))
            .await?;
        print!("{}", graph_text(&graph));
    }
    let decision = superseded
        .items
        .first()
        .and_then(|supersession| supersession.by.as_ref())
        .map(|decision| decision.id.clone())
        .or(decision_of_feedback);
    if let Some(decision) = decision {
        heading(&format!(
            "4b. Everything upstream of decision {decision}, to depth 3 (Graph)"
        ));
        let graph = client
            .graph(graph_request(
                &tenant,
                read,
                proto::EntityKind::Decision,
                &decision,
                proto::LineageDirection::Upstream,
            ))
            .await?;
        print!("{}", graph_text(&graph));
    }

    // 5. Which items aged out over the last year, and by which rule?
    heading("5. Which opportunities aged out in the last year, and by which rule? (ListAgedOut)");
    let aged_out = collect_pages(&every_page(), async |page| {
        let answer = client
            .list_aged_out(proto::ListAgedOutRequest {
                tenant: tenant.clone(),
                read,
                page: Some(page),
                aged_out: Some(proto::TimeRange {
                    from_micros: now - 365 * DAY_MICROS,
                    to_micros: 0,
                }),
                rule: String::new(),
                team: String::new(),
            })
            .await?;
        Ok((answer.entries, answer.page, answer.stamp))
    })
    .await?;
    for entry in &aged_out.items {
        println!("{}", aged_out_line(entry));
    }
    println!(
        "{} aged out, {}",
        aged_out.items.len(),
        stamp_text(aged_out.stamp.as_ref())
    );

    // 6. Who changed the top opportunity's priority, when, under which policy bundle?
    if let Some(top) = &top {
        heading(&format!(
            "6. Who changed {top}'s priority, when, under which policy bundle? (ScoreHistory, Why)"
        ));
        let history = client
            .score_history(proto::ScoreHistoryRequest {
                tenant: tenant.clone(),
                read,
                page: Some(proto::PageRequest {
                    page_size: SCORES_SHOWN_MAX,
                    page_token: String::new(),
                }),
                id: top.clone(),
                computed: None,
            })
            .await?;
        println!("scores, newest first:");
        for entry in &history.entries {
            println!("  {}", score_history_line(entry));
        }
        if history
            .page
            .as_ref()
            .is_some_and(|page| !page.next_page_token.is_empty())
        {
            println!(
                "  ... older scores: cairn opportunity history {top} --tenant {tenant} --as-of {position}"
            );
        }
        println!("{}", stamp_text(history.stamp.as_ref()));
        let why = collect_pages(&every_page(), async |page| {
            let answer = client
                .why(proto::WhyRequest {
                    tenant: tenant.clone(),
                    read,
                    page: Some(page),
                    entity: Some(proto::EntityRef {
                        kind: proto::EntityKind::Opportunity.into(),
                        id: top.clone(),
                    }),
                    depth: 1,
                })
                .await?;
            Ok((answer.steps, answer.page, answer.stamp))
        })
        .await?;
        let own: Vec<&proto::WhyStep> = why.items.iter().filter(|step| step.depth == 0).collect();
        println!(
            "the records of {top}'s own stream ({} of {} in the chain; the rest are its evidence):",
            own.len(),
            why.items.len()
        );
        let skipped = own.len().saturating_sub(RECORDS_SHOWN_MAX);
        if skipped > 0 {
            println!(
                "  ... {skipped} earlier records (cairn why opportunity/{top} --tenant {tenant} --as-of {position})"
            );
        }
        for step in own.iter().skip(skipped) {
            println!("{}", why_step_text(step));
        }
        if let Some(scored) = history
            .entries
            .first()
            .and_then(|entry| entry.recorded.as_ref())
        {
            println!("latest priority change: {}", provenance_text(scored));
        }
        println!("{}", stamp_text(why.stamp.as_ref()));
    }
    Ok(())
}

/// How many scores question 6 lists.
const SCORES_SHOWN_MAX: u32 = 10;
/// How many of the top opportunity's own records question 6 lists (the latest ones).
const RECORDS_SHOWN_MAX: usize = 25;

fn heading(title: &str) {
    println!("\n== {title}");
}

fn graph_request(
    tenant: &str,
    read: Option<proto::ReadOptions>,
    kind: proto::EntityKind,
    id: &str,
    direction: proto::LineageDirection,
) -> proto::GraphRequest {
    proto::GraphRequest {
        tenant: tenant.to_owned(),
        read,
        root: Some(proto::EntityRef {
            kind: kind.into(),
            id: id.to_owned(),
        }),
        direction: direction.into(),
        depth: 3,
        max_nodes: 0,
        relations: Vec::new(),
    }
}

/// A processed feedback item to follow: one that is evidence for `opp-0` (in the data set, the
/// opportunity that goes all the way: accepted, implemented, shipped, validated) when there is
/// one, else the newest processed item.
async fn processed_feedback(
    client: &mut LoopClient,
    tenant: &str,
    read: Option<proto::ReadOptions>,
) -> anyhow::Result<Option<String>> {
    let one = PageFlags {
        page_size: 1,
        page_token: None,
        all: false,
    };
    for opportunity in ["opp-0", ""] {
        let page = collect_pages(&one, async |page| {
            let answer = client
                .list_feedback(proto::ListFeedbackRequest {
                    tenant: tenant.to_owned(),
                    read,
                    page: Some(page),
                    status: proto::FeedbackStatus::Processed.into(),
                    opportunity_id: opportunity.to_owned(),
                    ..Default::default()
                })
                .await?;
            Ok((answer.items, answer.page, answer.stamp))
        })
        .await?;
        if let Some(item) = page.items.into_iter().next() {
            return Ok(Some(item.id));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use cairn_grpc::ServerLimits;

    use super::*;
    use crate::test_server::TestServer;

    /// A small data set loaded through an in-process server, twice: the second run (a later
    /// clock, the same seed) records nothing; then every question is answered without an error.
    #[tokio::test]
    async fn loading_twice_records_nothing_new_the_second_time() {
        let server = TestServer::start(ServerLimits::default()).await;
        let client = LoopClient::connect(&server.args()).await.unwrap();
        let scale = Scale {
            tenants: 1,
            opportunities: 12,
            feedback_per_opportunity: 2,
            voters_per_opportunity: 2,
        };
        let now = data_set_now();
        let steps = dataset::generate(3, scale, Time(now));
        let step_count = steps.len() as u64;
        let first = load_tenant(client.clone(), steps, ProgressBar::hidden())
            .await
            .unwrap();
        assert_eq!(first.steps, step_count);
        assert_eq!(first.deduplicated, 0, "{first:?}");
        assert!(first.recorded + first.unchanged == step_count, "{first:?}");
        assert!(
            first.aged_out > 0,
            "opp-9 has no evidence and ages out: {first:?}"
        );

        let head = |server: &TestServer| {
            let server_args = server.args();
            async move {
                let mut ledger = crate::client::Client::connect(&server_args).await.unwrap();
                ledger.log_info().await.unwrap().head_position
            }
        };
        let head_after_first = head(&server).await;
        assert_eq!(head_after_first, first.last_position);

        // A later run: a later clock, the same seed and so the same idempotency keys.
        let again = dataset::generate(3, scale, Time(data_set_now()));
        let second = load_tenant(client.clone(), again, ProgressBar::hidden())
            .await
            .unwrap();
        assert_eq!(second.recorded, 0, "{second:?}");
        assert_eq!(second.aged_out, 0, "{second:?}");
        assert_eq!(
            second.deduplicated + second.unchanged,
            step_count,
            "{second:?}"
        );
        assert_eq!(
            head(&server).await,
            head_after_first,
            "the ledger did not grow"
        );

        answer_questions(client, "acme", second.last_position, now)
            .await
            .unwrap();
    }

    /// Every step of the demo data set converts to a call, with its key, actor and time.
    #[test]
    fn every_step_of_the_data_set_becomes_a_call() {
        let now = Time(1_772_323_200_000_000);
        let steps = dataset::generate(7, Scale::DEMO, now);
        let mut calls: BTreeMap<&'static str, usize> = BTreeMap::new();
        for step in &steps {
            let call = step_call(step).unwrap_or_else(|error| panic!("{}: {error:#}", step.key));
            let (name, meta) = match call {
                Call::Command(mut mutation) => (mutation.call(), mutation.meta_mut().clone()),
                Call::Sweep(meta) => ("AgeOut", meta),
            };
            *calls.entry(name).or_default() += 1;
            assert_eq!(meta.idempotency_key, step.key);
            assert_eq!(meta.actor, step.actor.as_str());
            assert_eq!(meta.tenant, step.tenant.as_str());
            assert_eq!(meta.occurred_at_micros, step.at.0);
            assert!(step.at <= now, "{}", step.key);
        }
        for call in [
            "SubmitFeedback",
            "LinkFeedback",
            "DiscardFeedback",
            "RecordSignal",
            "CreateOpportunity",
            "StartReview",
            "Triage",
            "StartWork",
            "Ship",
            "ValidateOutcome",
            "Vote",
            "Rate",
            "ProposeDecision",
            "AcceptDecision",
            "CreateInitiative",
            "Schedule",
            "Start",
            "FlagRisk",
            "Cancel",
            "Complete",
            "AddMilestone",
            "MeetMilestone",
            "MissMilestone",
        ] {
            assert!(calls.contains_key(call), "no {call} in {calls:?}");
        }
        assert_eq!(calls["AgeOut"], Scale::DEMO.tenants);
    }

    #[test]
    fn triage_steps_keep_their_outcome() {
        use proto::triage_request::Outcome;
        let steps = dataset::generate(7, Scale::DEMO, Time(1_772_323_200_000_000));
        let mut outcomes = Vec::new();
        for step in &steps {
            if let Ok(Call::Command(Mutation::Triage(request))) = step_call(step) {
                outcomes.push(request.outcome.expect("an outcome"));
            }
        }
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Outcome::Accept(a) if !a.decision_id.is_empty()))
        );
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Outcome::Duplicate(d) if d.canonical_id == "opp-7"))
        );
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Outcome::Decline(d) if !d.reason.is_empty()))
        );
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Outcome::Snooze(s) if s.until_micros > 0))
        );
    }

    #[test]
    fn receipts_count_as_recorded_deduplicated_or_unchanged() {
        let receipt = |first_position, deduplicated| proto::CommandReceipt {
            first_position,
            last_position: first_position,
            deduplicated,
            ..Default::default()
        };
        let mut counts = LoadCounts::default();
        counts.count(&[receipt(5, false)]);
        counts.count(&[receipt(3, true)]);
        counts.count(&[]);
        counts.count(&[receipt(0, false)]);
        counts.count(&[receipt(7, true), receipt(8, false)]);
        assert_eq!(
            counts,
            LoadCounts {
                steps: 5,
                recorded: 2,
                deduplicated: 1,
                unchanged: 2,
                aged_out: 0,
                last_position: 8,
            }
        );
    }
}
