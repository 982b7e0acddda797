//! `cairn why ENTITY`: the chain of ledger records behind an entity (`LineageService.Why`): who
//! recorded what, when, under which policy bundle, with which lineage parents. And `cairn
//! what-happened FEEDBACK_ID` (`LineageService.WhatHappened`): what became of a feedback item.

use cairn_grpc::proto;
use clap::Args;

use crate::enums::name_of;
use crate::input::stream_name;
use crate::loop_client::LoopClient;
use crate::loop_flags::{Format, PageFlags, ReadFlags, collect_pages, parse_entity};
use crate::loop_output::{
    decision_json, entity_name, feedback_json, json_array, json_optional, json_time, print_list,
    provenance_json, short_hash, stamp_json, stamp_text, time_text,
};
use crate::output::JsonObject;

/// `cairn why`.
#[derive(Debug, Args)]
pub struct WhyArgs {
    #[command(flatten)]
    read: ReadFlags,

    #[command(flatten)]
    page: PageFlags,

    /// The entity, as KIND/ID (opportunity/o-17, decision/d-3, ...).
    entity: String,

    /// Upstream hops whose records to include (the entity's own stream is hop 0; 0: 3; at most
    /// 16).
    #[arg(long, default_value_t = 0)]
    depth: u32,
}

/// `cairn what-happened`.
#[derive(Debug, Args)]
pub struct WhatHappenedArgs {
    #[command(flatten)]
    read: ReadFlags,

    /// The feedback item.
    feedback_id: String,
}

/// Prints the chain of records behind an entity.
pub async fn run_why(args: WhyArgs) -> anyhow::Result<()> {
    let entity = parse_entity("ENTITY", &args.entity, None)?;
    let template = proto::WhyRequest {
        tenant: args.read.scope.tenant.clone(),
        read: Some(args.read.scope.options()),
        page: None,
        entity: Some(entity),
        depth: args.depth,
    };
    let mut client = LoopClient::connect(&args.read.scope.server).await?;
    let pages = collect_pages(&args.page, async |page| {
        let answer = client
            .why(proto::WhyRequest {
                page: Some(page),
                ..template.clone()
            })
            .await?;
        Ok((answer.steps, answer.page, answer.stamp))
    })
    .await?;
    print_list(
        args.read.format,
        "records",
        &pages.items,
        &pages.next_page_token,
        pages.stamp.as_ref(),
        why_step_text,
        why_step_json,
    );
    Ok(())
}

/// One record of the chain: position, time, entity and version, event type, actor, policy
/// bundle, hop, and on the next line its lineage parents.
pub fn why_step_text(step: &proto::WhyStep) -> String {
    let record = step.record.clone().unwrap_or_default();
    let mut line = format!(
        "{:>6} {} {} v{} {} by {} policy {} (hop {})",
        record.position,
        time_text(record.recorded_at_micros),
        entity_name(record.entity.as_ref()),
        record.stream_version,
        record.event_type,
        record.actor,
        short_hash(&record.policy_bundle_hash),
        step.depth
    );
    if !step.lineage_parents.is_empty() {
        let parents: Vec<String> = step.lineage_parents.iter().map(parent_text).collect();
        line.push_str(&format!("\n       parents: {}", parents.join(", ")));
    }
    line
}

fn parent_text(parent: &proto::LineageParent) -> String {
    format!(
        "{}={}",
        parent.relation,
        stream_name(parent.target.as_ref())
    )
}

/// One record of the chain as JSON.
pub fn why_step_json(step: &proto::WhyStep) -> String {
    let parents = step.lineage_parents.iter().map(|parent| {
        JsonObject::new()
            .string("relation", &parent.relation)
            .string("target", &stream_name(parent.target.as_ref()))
            .finish()
    });
    JsonObject::new()
        .raw(
            "record",
            &step
                .record
                .as_ref()
                .map_or_else(|| "null".to_owned(), provenance_json),
        )
        .raw("lineage_parents", &json_array(parents))
        .number("depth", step.depth)
        .finish()
}

/// Prints what became of a feedback item.
pub async fn run_what_happened(args: WhatHappenedArgs) -> anyhow::Result<()> {
    let mut client = LoopClient::connect(&args.read.scope.server).await?;
    let answer = client
        .what_happened(proto::WhatHappenedRequest {
            tenant: args.read.scope.tenant.clone(),
            read: Some(args.read.scope.options()),
            feedback_id: args.feedback_id,
        })
        .await?;
    match args.read.format {
        Format::Text => print!("{}", what_happened_text(&answer)),
        Format::Json => println!("{}", what_happened_json(&answer)),
    }
    Ok(())
}

/// What became of a feedback item, for a person: the item, then each opportunity it is evidence
/// for with its status and why, the decision on it and the initiatives implementing it, then the
/// stamp.
pub fn what_happened_text(answer: &proto::WhatHappenedResponse) -> String {
    let mut out = String::new();
    match &answer.feedback {
        Some(feedback) => {
            out.push_str(&format!(
                "feedback {}: {} (team {}, from {}, received {})\n",
                feedback.id,
                name_of::<proto::FeedbackStatus>(feedback.status),
                feedback.team,
                name_of::<proto::FeedbackSource>(feedback.source),
                time_text(feedback.received_at_micros)
            ));
            if !feedback.discard_reason.is_empty() {
                out.push_str(&format!("  discarded: {}\n", feedback.discard_reason));
            }
        }
        None => out.push_str("feedback: (the server sent none)\n"),
    }
    if answer.opportunities.is_empty() {
        out.push_str("  not evidence for any opportunity\n");
    }
    for outcome in &answer.opportunities {
        out.push_str(&format!(
            "-> opportunity {} {:?} ({}): {}, linked {}\n",
            outcome.opportunity_id,
            outcome.title,
            outcome.team,
            name_of::<proto::OpportunityStatus>(outcome.status),
            time_text(outcome.linked_at_micros)
        ));
        if !outcome.canonical_id.is_empty() {
            out.push_str(&format!(
                "   a duplicate of {} (which holds the evidence now)\n",
                outcome.canonical_id
            ));
        }
        if !outcome.reason.is_empty() {
            out.push_str(&format!("   why: {}\n", outcome.reason));
        }
        if let Some(decision) = &outcome.decision {
            let title = decision
                .content
                .as_ref()
                .map_or("", |content| content.title.as_str());
            let decided = if decision.decided_by.is_empty() {
                String::new()
            } else {
                format!(
                    " by {} at {}",
                    decision.decided_by,
                    time_text(decision.decided_at_micros)
                )
            };
            out.push_str(&format!(
                "   decision {} {title:?}: {}{decided}\n",
                decision.id,
                name_of::<proto::DecisionStatus>(decision.status)
            ));
        }
        for initiative in &outcome.initiatives {
            out.push_str(&format!(
                "   initiative {} {:?}: {}{}, {}/{} milestones met, target {}\n",
                initiative.initiative_id,
                initiative.title,
                name_of::<proto::InitiativeStatus>(initiative.status),
                if initiative.at_risk { " (at risk)" } else { "" },
                initiative.milestones_met,
                initiative.milestones,
                time_text(initiative.target_date_micros)
            ));
            if !initiative.cancel_reason.is_empty() {
                out.push_str(&format!("     cancelled: {}\n", initiative.cancel_reason));
            }
        }
        if outcome.shipped_at_micros != 0 {
            out.push_str(&format!(
                "   shipped {}\n",
                time_text(outcome.shipped_at_micros)
            ));
        }
        if !outcome.outcome_signal_id.is_empty() {
            out.push_str(&format!(
                "   outcome verified by signal {}\n",
                outcome.outcome_signal_id
            ));
        }
    }
    out.push_str(&format!("{}\n", stamp_text(answer.stamp.as_ref())));
    out
}

/// What became of a feedback item, as JSON.
pub fn what_happened_json(answer: &proto::WhatHappenedResponse) -> String {
    let opportunities = answer.opportunities.iter().map(|outcome| {
        let initiatives = outcome.initiatives.iter().map(|initiative| {
            JsonObject::new()
                .string("initiative_id", &initiative.initiative_id)
                .string("title", &initiative.title)
                .string(
                    "status",
                    &name_of::<proto::InitiativeStatus>(initiative.status),
                )
                .number("at_risk", initiative.at_risk)
                .raw("target_date", &json_time(initiative.target_date_micros))
                .number("milestones_met", initiative.milestones_met)
                .number("milestones", initiative.milestones)
                .raw("cancel_reason", &json_optional(&initiative.cancel_reason))
                .finish()
        });
        JsonObject::new()
            .string("opportunity_id", &outcome.opportunity_id)
            .string("title", &outcome.title)
            .string("team", &outcome.team)
            .string(
                "status",
                &name_of::<proto::OpportunityStatus>(outcome.status),
            )
            .raw("linked_at", &json_time(outcome.linked_at_micros))
            .raw("canonical_id", &json_optional(&outcome.canonical_id))
            .raw(
                "decision",
                &outcome
                    .decision
                    .as_ref()
                    .map_or_else(|| "null".to_owned(), decision_json),
            )
            .raw("reason", &json_optional(&outcome.reason))
            .raw("initiatives", &json_array(initiatives))
            .raw("shipped_at", &json_time(outcome.shipped_at_micros))
            .raw(
                "outcome_signal_id",
                &json_optional(&outcome.outcome_signal_id),
            )
            .finish()
    });
    JsonObject::new()
        .raw(
            "feedback",
            &answer
                .feedback
                .as_ref()
                .map_or_else(|| "null".to_owned(), feedback_json),
        )
        .raw("opportunities", &json_array(opportunities))
        .raw("stamp", &stamp_json(answer.stamp.as_ref()))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn why_steps_show_who_when_policy_and_parents() {
        let step = proto::WhyStep {
            record: Some(proto::Provenance {
                position: 17,
                entity: Some(proto::EntityRef {
                    kind: proto::EntityKind::Opportunity.into(),
                    id: "o-1".into(),
                }),
                stream_version: 3,
                event_type: "opportunity.scored".into(),
                actor: "user:lead".into(),
                recorded_at_micros: 1_772_323_200_000_000,
                policy_bundle_hash: vec![0xab; 32],
                ..Default::default()
            }),
            lineage_parents: vec![proto::LineageParent {
                relation: "derived_from".into(),
                target: Some(proto::StreamRef {
                    tenant: "acme".into(),
                    aggregate_type: "signal".into(),
                    aggregate_id: "s-1".into(),
                }),
            }],
            depth: 0,
        };
        assert_eq!(
            why_step_text(&step),
            "    17 2026-03-01T00:00:00Z opportunity/o-1 v3 opportunity.scored by user:lead \
             policy abababababab (hop 0)\n       parents: derived_from=acme/signal/s-1"
        );
        let json = why_step_json(&step);
        assert!(
            json.contains(&format!(r#""policy_bundle_hash":"{}""#, "ab".repeat(32))),
            "{json}"
        );
        assert!(
            json.ends_with(
                r#""lineage_parents":[{"relation":"derived_from","target":"acme/signal/s-1"}],"depth":0}"#
            ),
            "{json}"
        );
    }

    #[test]
    fn what_happened_follows_the_feedback_to_its_outcome() {
        let answer = proto::WhatHappenedResponse {
            feedback: Some(proto::Feedback {
                id: "fb-1".into(),
                status: proto::FeedbackStatus::Processed.into(),
                team: "platform".into(),
                source: proto::FeedbackSource::Survey.into(),
                received_at_micros: 1_772_323_200_000_000,
                ..Default::default()
            }),
            opportunities: vec![proto::OpportunityOutcome {
                opportunity_id: "o-1".into(),
                title: "Speed up CI".into(),
                team: "platform".into(),
                status: proto::OpportunityStatus::Validated.into(),
                linked_at_micros: 1_772_323_200_000_000,
                decision: Some(proto::Decision {
                    id: "d-1".into(),
                    status: proto::DecisionStatus::Accepted.into(),
                    content: Some(proto::DecisionContent {
                        title: "Plan o-1".into(),
                        ..Default::default()
                    }),
                    decided_by: "user:cto".into(),
                    decided_at_micros: 1_772_323_200_000_000,
                    ..Default::default()
                }),
                initiatives: vec![proto::InitiativeOutcome {
                    initiative_id: "i-1".into(),
                    title: "Deliver o-1".into(),
                    status: proto::InitiativeStatus::Completed.into(),
                    target_date_micros: 1_772_323_200_000_000,
                    milestones_met: 2,
                    milestones: 2,
                    ..Default::default()
                }],
                shipped_at_micros: 1_772_323_200_000_000,
                outcome_signal_id: "s-1".into(),
                ..Default::default()
            }],
            stamp: Some(proto::Stamp {
                position: 99,
                checkpoint: None,
            }),
        };
        assert_eq!(
            what_happened_text(&answer),
            r#"feedback fb-1: processed (team platform, from survey, received 2026-03-01T00:00:00Z)
-> opportunity o-1 "Speed up CI" (platform): validated, linked 2026-03-01T00:00:00Z
   decision d-1 "Plan o-1": accepted by user:cto at 2026-03-01T00:00:00Z
   initiative i-1 "Deliver o-1": completed, 2/2 milestones met, target 2026-03-01T00:00:00Z
   shipped 2026-03-01T00:00:00Z
   outcome verified by signal s-1
as of position 99, no checkpoint signed yet
"#
        );
    }
}
