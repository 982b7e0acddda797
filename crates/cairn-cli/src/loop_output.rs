//! How feedback-loop answers are printed: receipts and stamps, and each entity as aligned
//! `field value` lines for a person or as one JSON object (built with [`JsonObject`], like the
//! ledger's records).
//!
//! Every read answer ends with its stamp (`as of position 1234, checkpoint tree size 1200`), so a
//! person can ask again with `--as-of 1234` and get the same answer.

use cairn_grpc::proto;

use crate::enums::name_of;
use crate::loop_flags::Format;
use crate::output::{JsonObject, json_string};
use crate::timespec::format_seconds;

/// `kind/id` of an entity reference (`?` parts when the server left them out).
pub fn entity_name(reference: Option<&proto::EntityRef>) -> String {
    match reference {
        Some(reference) => format!(
            "{}/{}",
            name_of::<proto::EntityKind>(reference.kind),
            reference.id
        ),
        None => "?/?".to_owned(),
    }
}

/// A time for a person: `2026-01-05T14:03:00Z`, or `-` for 0 (none).
pub fn time_text(micros: i64) -> String {
    if micros == 0 {
        "-".to_owned()
    } else {
        format_seconds(micros)
    }
}

/// `as of position 1234, checkpoint tree size 1200` (or `no checkpoint signed yet`).
pub fn stamp_text(stamp: Option<&proto::Stamp>) -> String {
    let Some(stamp) = stamp else {
        return "as of an unknown position (the server sent no stamp)".to_owned();
    };
    match &stamp.checkpoint {
        Some(checkpoint) => format!(
            "as of position {}, checkpoint tree size {}",
            stamp.position, checkpoint.tree_size
        ),
        None => format!(
            "as of position {}, no checkpoint signed yet",
            stamp.position
        ),
    }
}

/// `{"position":1234,"checkpoint_tree_size":1200,"checkpoint_root":"..."}`.
pub fn stamp_json(stamp: Option<&proto::Stamp>) -> String {
    let Some(stamp) = stamp else {
        return "null".to_owned();
    };
    let object = JsonObject::new().number("position", stamp.position);
    match &stamp.checkpoint {
        Some(checkpoint) => object
            .number("checkpoint_tree_size", checkpoint.tree_size)
            .string("checkpoint_root", &hex::encode(&checkpoint.root))
            .finish(),
        None => object
            .raw("checkpoint_tree_size", "null")
            .raw("checkpoint_root", "null")
            .finish(),
    }
}

/// `recorded opportunity/o-1 positions 12..13 version 4: opportunity.voted, opportunity.scored`.
pub fn receipt_text(receipt: &proto::CommandReceipt) -> String {
    let entity = entity_name(receipt.entity.as_ref());
    let events = if receipt.event_types.is_empty() {
        "no events".to_owned()
    } else {
        receipt.event_types.join(", ")
    };
    if receipt.sampled_out {
        return format!("recorded nothing for {entity}: sampling did not keep this observation");
    }
    if receipt.first_position == 0 {
        return format!(
            "recorded nothing for {entity}: unchanged at version {}",
            receipt.stream_version
        );
    }
    format!(
        "recorded {entity} positions {}..{} version {}: {events}{}",
        receipt.first_position,
        receipt.last_position,
        receipt.stream_version,
        if receipt.deduplicated {
            " (retry: already recorded)"
        } else {
            ""
        }
    )
}

/// The receipt as one JSON object.
pub fn receipt_json(receipt: &proto::CommandReceipt) -> String {
    JsonObject::new()
        .string("entity", &entity_name(receipt.entity.as_ref()))
        .number("first_position", receipt.first_position)
        .number("last_position", receipt.last_position)
        .number("stream_version", receipt.stream_version)
        .raw("event_types", &json_strings(&receipt.event_types))
        .number("deduplicated", receipt.deduplicated)
        .finish()
}

/// Prints a receipt in the format asked for.
pub fn print_receipt(format: Format, receipt: &proto::CommandReceipt) {
    match format {
        Format::Text => println!("{}", receipt_text(receipt)),
        Format::Json => println!("{}", receipt_json(receipt)),
    }
}

/// A JSON array of already-JSON values.
pub fn json_array(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

/// A JSON array of strings.
pub fn json_strings(items: &[String]) -> String {
    json_array(items.iter().map(|item| json_string(item)))
}

/// A JSON string, or null when empty (an optional id or reason).
pub fn json_optional(text: &str) -> String {
    if text.is_empty() {
        "null".to_owned()
    } else {
        json_string(text)
    }
}

/// A time as JSON: the RFC 3339 text, or null for 0.
pub fn json_time(micros: i64) -> String {
    if micros == 0 {
        "null".to_owned()
    } else {
        json_string(&crate::output::format_micros(micros))
    }
}

/// Aligned `field  value` lines, skipping empty values.
pub fn field_lines(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (name, value) in fields {
        if value.is_empty() {
            continue;
        }
        text.push_str(&format!("{name:<width$}  {value}\n"));
    }
    text
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

/// A number without trailing zeros: `2.5`, `3`, `0.125`.
pub fn number_text(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

// --- feedback and signals -----------------------------------------------------------------------

fn personal_text(feedback: &proto::Feedback) -> (String, String) {
    match feedback.personal_state() {
        proto::PersonalState::Open => (
            format!("{:?}", feedback.text),
            if feedback.submitter.is_empty() {
                "anonymous".to_owned()
            } else {
                feedback.submitter.clone()
            },
        ),
        proto::PersonalState::Erased => ("erased".to_owned(), "erased".to_owned()),
        _ => (
            "withheld (--include-personal)".to_owned(),
            "withheld".to_owned(),
        ),
    }
}

/// A feedback item, field by field.
pub fn feedback_text(feedback: &proto::Feedback) -> String {
    let (text, submitter) = personal_text(feedback);
    let mut out = format!("feedback {} (version {})\n", feedback.id, feedback.version);
    out.push_str(&field_lines(&[
        ("status", name_of::<proto::FeedbackStatus>(feedback.status)),
        ("team", feedback.team.clone()),
        ("source", name_of::<proto::FeedbackSource>(feedback.source)),
        ("tags", list(&feedback.tags)),
        ("outcome tags", list(&feedback.outcome_tags)),
        (
            "visibility",
            name_of::<proto::Visibility>(feedback.visibility),
        ),
        ("received", time_text(feedback.received_at_micros)),
        ("submitter", submitter),
        ("text", text),
        ("opportunities", list(&feedback.opportunity_ids)),
        ("discarded", feedback.discard_reason.clone()),
    ]));
    out
}

/// One line of a feedback list.
pub fn feedback_line(feedback: &proto::Feedback) -> String {
    let linked = if feedback.opportunity_ids.is_empty() {
        String::new()
    } else {
        format!(" -> {}", feedback.opportunity_ids.join(", "))
    };
    format!(
        "{} {} {} {} {}{linked}",
        feedback.id,
        name_of::<proto::FeedbackStatus>(feedback.status),
        feedback.team,
        name_of::<proto::FeedbackSource>(feedback.source),
        time_text(feedback.received_at_micros),
    )
}

/// A feedback item as JSON (personal fields null unless open).
pub fn feedback_json(feedback: &proto::Feedback) -> String {
    let open = feedback.personal_state() == proto::PersonalState::Open;
    JsonObject::new()
        .string("id", &feedback.id)
        .string("status", &name_of::<proto::FeedbackStatus>(feedback.status))
        .string("team", &feedback.team)
        .string("source", &name_of::<proto::FeedbackSource>(feedback.source))
        .raw("tags", &json_strings(&feedback.tags))
        .raw("outcome_tags", &json_strings(&feedback.outcome_tags))
        .string(
            "visibility",
            &name_of::<proto::Visibility>(feedback.visibility),
        )
        .raw("received_at", &json_time(feedback.received_at_micros))
        .string(
            "personal_state",
            &name_of::<proto::PersonalState>(feedback.personal_state),
        )
        .raw(
            "text",
            &if open {
                json_string(&feedback.text)
            } else {
                "null".into()
            },
        )
        .raw(
            "submitter",
            &if open {
                json_optional(&feedback.submitter)
            } else {
                "null".into()
            },
        )
        .raw("opportunity_ids", &json_strings(&feedback.opportunity_ids))
        .raw("discard_reason", &json_optional(&feedback.discard_reason))
        .number("version", feedback.version)
        .finish()
}

/// `p50 300000 / p95 900000 / p99 1400000` and/or `value 12`.
pub fn measurement_text(observation: &proto::Observation) -> String {
    let mut parts = Vec::new();
    if let Some(value) = observation.value {
        parts.push(format!("value {}", number_text(value)));
    }
    if let Some(percentiles) = &observation.percentiles {
        parts.push(format!(
            "p50 {} / p95 {} / p99 {}",
            number_text(percentiles.p50),
            number_text(percentiles.p95),
            number_text(percentiles.p99)
        ));
    }
    parts.join(", ")
}

fn observation_json(observation: &proto::Observation) -> String {
    JsonObject::new()
        .string("metric", &observation.metric)
        .string("unit", &observation.unit)
        .string(
            "direction",
            &name_of::<proto::MetricDirection>(observation.direction),
        )
        .raw("service", &json_optional(&observation.service))
        .raw("team", &json_optional(&observation.team))
        .number("window_seconds", observation.window_seconds)
        .raw(
            "value",
            &observation
                .value
                .map_or_else(|| "null".to_owned(), |value| value.to_string()),
        )
        .raw(
            "percentiles",
            &observation.percentiles.as_ref().map_or_else(
                || "null".to_owned(),
                |p| {
                    JsonObject::new()
                        .number("p50", p.p50)
                        .number("p95", p.p95)
                        .number("p99", p.p99)
                        .finish()
                },
            ),
        )
        .string("source", &observation.source)
        .raw("observed_at", &json_time(observation.observed_at_micros))
        .finish()
}

/// A signal, field by field.
pub fn signal_text(signal: &proto::Signal) -> String {
    let observation = signal.observation.clone().unwrap_or_default();
    let mut out = format!("signal {} (version {})\n", signal.id, signal.version);
    out.push_str(&field_lines(&[
        ("metric", observation.metric.clone()),
        ("unit", observation.unit.clone()),
        (
            "direction",
            name_of::<proto::MetricDirection>(observation.direction),
        ),
        ("service", observation.service.clone()),
        ("team", observation.team.clone()),
        ("window", format!("{} s", observation.window_seconds)),
        ("measured", measurement_text(&observation)),
        ("source", observation.source.clone()),
        ("observed", time_text(observation.observed_at_micros)),
        ("recorded", time_text(signal.recorded_at_micros)),
        ("opportunities", list(&signal.opportunity_ids)),
    ]));
    out
}

/// A signal as JSON.
pub fn signal_json(signal: &proto::Signal) -> String {
    JsonObject::new()
        .string("id", &signal.id)
        .raw(
            "observation",
            &signal
                .observation
                .as_ref()
                .map_or_else(|| "null".to_owned(), observation_json),
        )
        .raw("recorded_at", &json_time(signal.recorded_at_micros))
        .raw("opportunity_ids", &json_strings(&signal.opportunity_ids))
        .number("version", signal.version)
        .finish()
}

// --- opportunities and scores -------------------------------------------------------------------

/// Where a score input came from, in words.
pub fn input_source_text(source: Option<&proto::InputSource>) -> String {
    use proto::input_source::Source;
    match source.and_then(|source| source.source.as_ref()) {
        Some(Source::Rating(rating)) => {
            format!("rating by {} at {}", rating.by, time_text(rating.at_micros))
        }
        Some(Source::Signal(signal)) => format!(
            "signal {} observed {}",
            signal.signal_id,
            time_text(signal.observed_at_micros)
        ),
        Some(Source::Votes(votes)) => format!("votes of {} voters", votes.voters),
        Some(Source::Feedback(feedback)) => format!("{} feedback items", feedback.items),
        Some(Source::Missing(_)) => "missing: the factor's default".to_owned(),
        None => "unknown source".to_owned(),
    }
}

/// One line per input: `factor raw -> normalised x weight = contribution (source)`.
pub fn score_inputs_text(score: &proto::ScoreSnapshot, indent: &str) -> String {
    let mut out = String::new();
    for input in &score.inputs {
        out.push_str(&format!(
            "{indent}{} raw {} -> {} x weight {} = {} ({})\n",
            input.factor,
            number_text(input.raw),
            number_text(input.normalised),
            number_text(input.weight),
            number_text(input.contribution),
            input_source_text(input.source.as_ref())
        ));
    }
    out
}

/// `4.25 (model rice v2, computed 2026-01-05T14:03:00Z)`.
pub fn score_summary(score: &proto::ScoreSnapshot) -> String {
    format!(
        "{} (model {} v{}, computed {})",
        number_text(score.value),
        score.model,
        score.model_version,
        time_text(score.computed_at_micros)
    )
}

fn score_json(score: &proto::ScoreSnapshot) -> String {
    let inputs = score.inputs.iter().map(|input| {
        JsonObject::new()
            .string("factor", &input.factor)
            .string("source", &input_source_text(input.source.as_ref()))
            .number("raw", input.raw)
            .number("normalised", input.normalised)
            .number("weight", input.weight)
            .number("contribution", input.contribution)
            .finish()
    });
    JsonObject::new()
        .string("model", &score.model)
        .number("model_version", score.model_version)
        .string("model_digest", &score.model_digest)
        .number("value", score.value)
        .raw("computed_at", &json_time(score.computed_at_micros))
        .raw("inputs", &json_array(inputs))
        .finish()
}

fn optional_score_json(score: Option<&proto::ScoreSnapshot>) -> String {
    score.map_or_else(|| "null".to_owned(), score_json)
}

/// An opportunity, field by field, with its evidence, ratings and score.
pub fn opportunity_text(opportunity: &proto::Opportunity) -> String {
    let draft = opportunity.draft.clone().unwrap_or_default();
    let mut out = format!(
        "opportunity {} (version {})\n",
        opportunity.id, opportunity.version
    );
    let aged_out = opportunity
        .aged_out
        .as_ref()
        .map_or_else(String::new, |aged| {
            format!(
                "by rule {} v{}: {}",
                aged.rule, aged.rule_version, aged.reason
            )
        });
    out.push_str(&field_lines(&[
        ("title", draft.title.clone()),
        (
            "status",
            name_of::<proto::OpportunityStatus>(opportunity.status),
        ),
        (
            "rank",
            if opportunity.rank == 0 {
                "not ranked".to_owned()
            } else {
                opportunity.rank.to_string()
            },
        ),
        (
            "score",
            opportunity
                .score
                .as_ref()
                .map_or_else(|| "never scored".to_owned(), score_summary),
        ),
        ("problem", draft.problem.clone()),
        ("owner", draft.owner.clone()),
        ("team", draft.team.clone()),
        ("size", name_of::<proto::Size>(draft.size)),
        ("outcome tags", list(&draft.outcome_tags)),
        ("created", time_text(opportunity.created_at_micros)),
        (
            "last evidence",
            time_text(opportunity.last_evidence_at_micros),
        ),
        ("canonical", opportunity.canonical_id.clone()),
        (
            "snoozed until",
            if opportunity.snoozed_until_micros == 0 {
                String::new()
            } else {
                time_text(opportunity.snoozed_until_micros)
            },
        ),
        ("decision", opportunity.decision_id.clone()),
        ("declined", opportunity.decline_reason.clone()),
        ("outcome signal", opportunity.outcome_signal_id.clone()),
        ("aged out", aged_out),
        (
            "votes",
            format!(
                "{} voters, weight {}",
                opportunity.voters, opportunity.vote_weight_total
            ),
        ),
    ]));
    if !opportunity.ratings.is_empty() {
        out.push_str("ratings\n");
        for rating in &opportunity.ratings {
            out.push_str(&format!(
                "  {} {} by {} at {}{}\n",
                rating.name,
                number_text(rating.value),
                rating.by,
                time_text(rating.at_micros),
                if rating.rationale.is_empty() {
                    String::new()
                } else {
                    format!(": {}", rating.rationale)
                }
            ));
        }
    }
    if !opportunity.evidence.is_empty() {
        out.push_str(&format!("evidence ({})\n", opportunity.evidence.len()));
        for evidence in &opportunity.evidence {
            out.push_str(&format!("  {}\n", evidence_text(evidence)));
        }
    }
    if let Some(score) = &opportunity.score {
        out.push_str("score inputs\n");
        out.push_str(&score_inputs_text(score, "  "));
    }
    out
}

fn evidence_text(evidence: &proto::Evidence) -> String {
    let observed = evidence
        .observation
        .as_ref()
        .map_or_else(String::new, |observation| {
            format!(" {} {}", observation.metric, measurement_text(observation))
        });
    format!(
        "{} attached {}{observed}",
        entity_name(evidence.reference.as_ref()),
        time_text(evidence.attached_at_micros)
    )
}

/// An opportunity as JSON.
pub fn opportunity_json(opportunity: &proto::Opportunity) -> String {
    let draft = opportunity.draft.clone().unwrap_or_default();
    let evidence = opportunity.evidence.iter().map(|evidence| {
        JsonObject::new()
            .string("entity", &entity_name(evidence.reference.as_ref()))
            .raw("attached_at", &json_time(evidence.attached_at_micros))
            .raw(
                "observation",
                &evidence
                    .observation
                    .as_ref()
                    .map_or_else(|| "null".to_owned(), observation_json),
            )
            .finish()
    });
    let ratings = opportunity.ratings.iter().map(|rating| {
        JsonObject::new()
            .string("name", &rating.name)
            .number("value", rating.value)
            .string("by", &rating.by)
            .raw("at", &json_time(rating.at_micros))
            .string("rationale", &rating.rationale)
            .finish()
    });
    let aged_out = opportunity.aged_out.as_ref().map_or_else(
        || "null".to_owned(),
        |aged| {
            JsonObject::new()
                .string("rule", &aged.rule)
                .number("rule_version", aged.rule_version)
                .string("reason", &aged.reason)
                .raw("at", &json_time(aged.aged_out_at_micros))
                .finish()
        },
    );
    JsonObject::new()
        .string("id", &opportunity.id)
        .string(
            "status",
            &name_of::<proto::OpportunityStatus>(opportunity.status),
        )
        .string("title", &draft.title)
        .string("problem", &draft.problem)
        .string("owner", &draft.owner)
        .string("team", &draft.team)
        .string("size", &name_of::<proto::Size>(draft.size))
        .raw("outcome_tags", &json_strings(&draft.outcome_tags))
        .string(
            "visibility",
            &name_of::<proto::Visibility>(draft.visibility),
        )
        .raw("created_at", &json_time(opportunity.created_at_micros))
        .raw(
            "last_evidence_at",
            &json_time(opportunity.last_evidence_at_micros),
        )
        .raw("canonical_id", &json_optional(&opportunity.canonical_id))
        .raw(
            "snoozed_until",
            &json_time(opportunity.snoozed_until_micros),
        )
        .raw("decision_id", &json_optional(&opportunity.decision_id))
        .raw(
            "decline_reason",
            &json_optional(&opportunity.decline_reason),
        )
        .raw(
            "outcome_signal_id",
            &json_optional(&opportunity.outcome_signal_id),
        )
        .raw("aged_out", &aged_out)
        .raw("evidence", &json_array(evidence))
        .number("voters", opportunity.voters)
        .number("vote_weight_total", opportunity.vote_weight_total)
        .raw("ratings", &json_array(ratings))
        .raw("score", &optional_score_json(opportunity.score.as_ref()))
        .number("rank", opportunity.rank)
        .number("version", opportunity.version)
        .finish()
}

/// One line of a ranking: `#1 4.25 opp-3 "Speed up CI builds" platform planned`.
pub fn ranked_line(entry: &proto::RankedOpportunity) -> String {
    format!(
        "#{} {} {} {:?} {} {}",
        entry.rank,
        number_text(entry.score),
        entry.id,
        entry.title,
        entry.team,
        name_of::<proto::OpportunityStatus>(entry.status)
    )
}

/// A ranking line as JSON.
pub fn ranked_json(entry: &proto::RankedOpportunity) -> String {
    JsonObject::new()
        .number("rank", entry.rank)
        .string("id", &entry.id)
        .string("title", &entry.title)
        .string("team", &entry.team)
        .string("owner", &entry.owner)
        .string("status", &name_of::<proto::OpportunityStatus>(entry.status))
        .number("score", entry.score)
        .string("model", &entry.model)
        .number("model_version", entry.model_version)
        .raw("scored_at", &json_time(entry.scored_at_micros))
        .finish()
}

/// Who recorded a fact, when, under which policy bundle: `position 12 opportunity.scored by
/// user:lead at 2026-... policy 3f2a…`.
pub fn provenance_text(provenance: &proto::Provenance) -> String {
    format!(
        "position {} {} {} by {} at {} policy {}",
        provenance.position,
        entity_name(provenance.entity.as_ref()),
        provenance.event_type,
        provenance.actor,
        time_text(provenance.recorded_at_micros),
        short_hash(&provenance.policy_bundle_hash)
    )
}

/// The first 12 hex digits of a hash (`-` when empty), like an abbreviated commit id.
pub fn short_hash(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".to_owned();
    }
    let text = hex::encode(bytes);
    text[..text.len().min(12)].to_owned()
}

/// A provenance as JSON.
pub fn provenance_json(provenance: &proto::Provenance) -> String {
    JsonObject::new()
        .number("position", provenance.position)
        .string("entity", &entity_name(provenance.entity.as_ref()))
        .number("stream_version", provenance.stream_version)
        .string("event_id", &hex::encode(&provenance.event_id))
        .string("event_type", &provenance.event_type)
        .string("actor", &provenance.actor)
        .raw("recorded_at", &json_time(provenance.recorded_at_micros))
        .string(
            "policy_bundle_hash",
            &hex::encode(&provenance.policy_bundle_hash),
        )
        .optional_hex("correlation_id", &provenance.correlation_id)
        .finish()
}

fn optional_provenance_json(provenance: Option<&proto::Provenance>) -> String {
    provenance.map_or_else(|| "null".to_owned(), provenance_json)
}

/// ExplainRank: the line, its neighbours, the score's inputs, who scored it and the evidence.
pub fn explain_text(answer: &proto::ExplainRankResponse) -> String {
    let mut out = String::new();
    if let Some(entry) = &answer.entry {
        out.push_str(&format!(
            "{} of {} ranked: {}\n",
            if entry.rank == 0 {
                format!(
                    "not ranked ({})",
                    name_of::<proto::OpportunityStatus>(entry.status)
                )
            } else {
                format!("rank {}", entry.rank)
            },
            answer.ranked_count,
            ranked_line(entry)
        ));
    }
    if let Some(above) = &answer.above {
        out.push_str(&format!("above it  {}\n", ranked_line(above)));
    }
    if let Some(below) = &answer.below {
        out.push_str(&format!("below it  {}\n", ranked_line(below)));
    }
    match &answer.score {
        Some(score) => {
            out.push_str(&format!("score {}\n", score_summary(score)));
            out.push_str(&score_inputs_text(score, "  "));
        }
        None => out.push_str("never scored\n"),
    }
    if let Some(scored) = &answer.scored {
        out.push_str(&format!("scored by  {}\n", provenance_text(scored)));
    }
    out.push_str(&format!(
        "evidence ({} in all, newest first)\n",
        answer.evidence_count
    ));
    for detail in &answer.evidence {
        let evidence = detail.evidence.clone().unwrap_or_default();
        let by = detail
            .attached
            .as_ref()
            .map_or_else(String::new, |attached| {
                format!(" by {} at position {}", attached.actor, attached.position)
            });
        out.push_str(&format!("  {}{by}\n", evidence_text(&evidence)));
    }
    out
}

/// ExplainRank as JSON.
pub fn explain_json(answer: &proto::ExplainRankResponse) -> String {
    let ranked = |entry: Option<&proto::RankedOpportunity>| {
        entry.map_or_else(|| "null".to_owned(), ranked_json)
    };
    let evidence = answer.evidence.iter().map(|detail| {
        let evidence = detail.evidence.clone().unwrap_or_default();
        JsonObject::new()
            .string("entity", &entity_name(evidence.reference.as_ref()))
            .raw("attached_at", &json_time(evidence.attached_at_micros))
            .raw(
                "feedback",
                &detail
                    .feedback
                    .as_ref()
                    .map_or_else(|| "null".to_owned(), feedback_json),
            )
            .raw(
                "attached",
                &optional_provenance_json(detail.attached.as_ref()),
            )
            .finish()
    });
    JsonObject::new()
        .raw("entry", &ranked(answer.entry.as_ref()))
        .number("ranked_count", answer.ranked_count)
        .raw("above", &ranked(answer.above.as_ref()))
        .raw("below", &ranked(answer.below.as_ref()))
        .raw("score", &optional_score_json(answer.score.as_ref()))
        .raw("scored", &optional_provenance_json(answer.scored.as_ref()))
        .raw("evidence", &json_array(evidence))
        .number("evidence_count", answer.evidence_count)
        .raw("stamp", &stamp_json(answer.stamp.as_ref()))
        .finish()
}

/// One score of a history: the value and who recorded it, when, under which policy bundle.
pub fn score_history_line(entry: &proto::ScoreHistoryEntry) -> String {
    let score = entry
        .score
        .as_ref()
        .map_or_else(|| "?".to_owned(), score_summary);
    let recorded = entry
        .recorded
        .as_ref()
        .map_or_else(String::new, |recorded| {
            format!(
                " recorded at position {} by {} policy {}",
                recorded.position,
                recorded.actor,
                short_hash(&recorded.policy_bundle_hash)
            )
        });
    format!("{score}{recorded}")
}

/// A score history entry as JSON.
pub fn score_history_json(entry: &proto::ScoreHistoryEntry) -> String {
    JsonObject::new()
        .raw("score", &optional_score_json(entry.score.as_ref()))
        .raw(
            "recorded",
            &optional_provenance_json(entry.recorded.as_ref()),
        )
        .finish()
}

/// One aged-out opportunity: `opp-9 "title" team by rule idle v1 at ...: reason (now aged_out)`.
pub fn aged_out_line(entry: &proto::AgedOutEntry) -> String {
    format!(
        "{} {:?} {} by rule {} v{} at {}: {} (was {}, now {})",
        entry.opportunity_id,
        entry.title,
        entry.team,
        entry.rule,
        entry.rule_version,
        time_text(entry.aged_out_at_micros),
        entry.reason,
        name_of::<proto::OpportunityStatus>(entry.status_before),
        name_of::<proto::OpportunityStatus>(entry.status)
    )
}

/// An aged-out entry as JSON.
pub fn aged_out_json(entry: &proto::AgedOutEntry) -> String {
    JsonObject::new()
        .string("opportunity_id", &entry.opportunity_id)
        .string("title", &entry.title)
        .string("team", &entry.team)
        .string("rule", &entry.rule)
        .number("rule_version", entry.rule_version)
        .string("reason", &entry.reason)
        .raw("aged_out_at", &json_time(entry.aged_out_at_micros))
        .string(
            "status_before",
            &name_of::<proto::OpportunityStatus>(entry.status_before),
        )
        .string("status", &name_of::<proto::OpportunityStatus>(entry.status))
        .raw(
            "recorded",
            &optional_provenance_json(entry.recorded.as_ref()),
        )
        .finish()
}

// --- decisions ----------------------------------------------------------------------------------

/// A decision, field by field.
pub fn decision_text(decision: &proto::Decision) -> String {
    let content = decision.content.clone().unwrap_or_default();
    let subjects: Vec<String> = content
        .subjects
        .iter()
        .map(|subject| entity_name(Some(subject)))
        .collect();
    let mut out = format!("decision {} (version {})\n", decision.id, decision.version);
    out.push_str(&field_lines(&[
        ("title", content.title.clone()),
        ("status", name_of::<proto::DecisionStatus>(decision.status)),
        ("kind", name_of::<proto::DecisionKind>(content.kind)),
        ("team", content.team.clone()),
        ("context", content.context.clone()),
        ("drivers", list(&content.drivers)),
        ("options", list(&content.options)),
        ("outcome", content.outcome.clone()),
        ("consequences", list(&content.consequences)),
        ("deciders", list(&content.deciders)),
        ("consulted", list(&content.consulted)),
        ("informed", list(&content.informed)),
        ("subjects", list(&subjects)),
        ("supersedes", content.supersedes.clone()),
        ("superseded by", decision.superseded_by.clone()),
        (
            "proposed",
            format!(
                "{} by {}",
                time_text(decision.proposed_at_micros),
                decision.proposed_by
            ),
        ),
        (
            "decided",
            if decision.decided_by.is_empty() {
                String::new()
            } else {
                format!(
                    "{} by {}",
                    time_text(decision.decided_at_micros),
                    decision.decided_by
                )
            },
        ),
        ("reason", decision.reason.clone()),
        (
            "status changed",
            time_text(decision.status_changed_at_micros),
        ),
    ]));
    out
}

/// One line of a decision list.
pub fn decision_line(decision: &proto::Decision) -> String {
    let content = decision.content.clone().unwrap_or_default();
    format!(
        "{} {} {} {:?} {} changed {}",
        decision.id,
        name_of::<proto::DecisionStatus>(decision.status),
        name_of::<proto::DecisionKind>(content.kind),
        content.title,
        content.team,
        time_text(decision.status_changed_at_micros)
    )
}

/// A decision as JSON.
pub fn decision_json(decision: &proto::Decision) -> String {
    let content = decision.content.clone().unwrap_or_default();
    let subjects: Vec<String> = content
        .subjects
        .iter()
        .map(|subject| entity_name(Some(subject)))
        .collect();
    JsonObject::new()
        .string("id", &decision.id)
        .string("status", &name_of::<proto::DecisionStatus>(decision.status))
        .string("kind", &name_of::<proto::DecisionKind>(content.kind))
        .string("title", &content.title)
        .string("team", &content.team)
        .string("context", &content.context)
        .raw("drivers", &json_strings(&content.drivers))
        .raw("options", &json_strings(&content.options))
        .string("outcome", &content.outcome)
        .raw("consequences", &json_strings(&content.consequences))
        .raw("deciders", &json_strings(&content.deciders))
        .raw("consulted", &json_strings(&content.consulted))
        .raw("informed", &json_strings(&content.informed))
        .raw("subjects", &json_strings(&subjects))
        .raw("supersedes", &json_optional(&content.supersedes))
        .string(
            "visibility",
            &name_of::<proto::Visibility>(content.visibility),
        )
        .raw("proposed_at", &json_time(decision.proposed_at_micros))
        .string("proposed_by", &decision.proposed_by)
        .raw("decided_by", &json_optional(&decision.decided_by))
        .raw("decided_at", &json_time(decision.decided_at_micros))
        .raw("reason", &json_optional(&decision.reason))
        .raw("superseded_by", &json_optional(&decision.superseded_by))
        .raw(
            "status_changed_at",
            &json_time(decision.status_changed_at_micros),
        )
        .number("version", decision.version)
        .finish()
}

/// `dec-1 "Adopt X" superseded by dec-2 "Adopt Y" at ...`.
pub fn supersession_line(supersession: &proto::Supersession) -> String {
    let title = |decision: Option<&proto::Decision>| {
        decision
            .map(|decision| {
                let title = decision
                    .content
                    .as_ref()
                    .map_or("", |content| content.title.as_str());
                format!("{} {title:?}", decision.id)
            })
            .unwrap_or_else(|| "?".to_owned())
    };
    format!(
        "{} superseded by {} at {}",
        title(supersession.decision.as_ref()),
        title(supersession.by.as_ref()),
        time_text(supersession.superseded_at_micros)
    )
}

/// A supersession as JSON.
pub fn supersession_json(supersession: &proto::Supersession) -> String {
    let decision = |decision: Option<&proto::Decision>| {
        decision.map_or_else(|| "null".to_owned(), decision_json)
    };
    JsonObject::new()
        .raw("decision", &decision(supersession.decision.as_ref()))
        .raw("by", &decision(supersession.by.as_ref()))
        .raw(
            "superseded_at",
            &json_time(supersession.superseded_at_micros),
        )
        .finish()
}

// --- initiatives --------------------------------------------------------------------------------

/// An initiative, field by field, with its milestones.
pub fn initiative_text(initiative: &proto::Initiative) -> String {
    let draft = initiative.draft.clone().unwrap_or_default();
    let mut out = format!(
        "initiative {} (version {})\n",
        initiative.id, initiative.version
    );
    out.push_str(&field_lines(&[
        ("title", draft.title.clone()),
        (
            "status",
            format!(
                "{}{}",
                name_of::<proto::InitiativeStatus>(initiative.status),
                if initiative.at_risk { ", at risk" } else { "" }
            ),
        ),
        ("risk", initiative.risk_reason.clone()),
        ("goal", draft.goal.clone()),
        ("owners", list(&draft.owners)),
        ("team", draft.team.clone()),
        ("target", draft.target.clone()),
        ("scope", draft.scope.clone()),
        ("start", time_text(draft.start_micros)),
        ("target date", time_text(draft.target_date_micros)),
        ("implements", list(&draft.implements)),
        ("outcome tags", list(&draft.outcome_tags)),
        ("cancelled", initiative.cancel_reason.clone()),
        ("created", time_text(initiative.created_at_micros)),
        (
            "status changed",
            time_text(initiative.status_changed_at_micros),
        ),
    ]));
    if !initiative.milestones.is_empty() {
        out.push_str("milestones\n");
        for milestone in &initiative.milestones {
            out.push_str(&format!("  {}\n", milestone_line(milestone)));
        }
    }
    out
}

/// `design open due 2026-... (design reviewed)`.
pub fn milestone_line(milestone: &proto::Milestone) -> String {
    let closed = if milestone.closed_at_micros == 0 {
        String::new()
    } else {
        format!(" at {}", time_text(milestone.closed_at_micros))
    };
    let signal = if milestone.signal_id.is_empty() {
        String::new()
    } else {
        format!(" verified by signal {}", milestone.signal_id)
    };
    format!(
        "{} {}{closed}{signal}, due {}{}",
        milestone.name,
        name_of::<proto::MilestoneStatus>(milestone.status),
        time_text(milestone.due_micros),
        if milestone.exit_criteria.is_empty() {
            String::new()
        } else {
            format!(" ({})", milestone.exit_criteria)
        }
    )
}

/// One line of an initiative list.
pub fn initiative_line(initiative: &proto::Initiative) -> String {
    let draft = initiative.draft.clone().unwrap_or_default();
    format!(
        "{} {}{} {:?} {} target {}",
        initiative.id,
        name_of::<proto::InitiativeStatus>(initiative.status),
        if initiative.at_risk { " (at risk)" } else { "" },
        draft.title,
        draft.team,
        time_text(draft.target_date_micros)
    )
}

/// An initiative as JSON.
pub fn initiative_json(initiative: &proto::Initiative) -> String {
    let draft = initiative.draft.clone().unwrap_or_default();
    let milestones = initiative.milestones.iter().map(|milestone| {
        JsonObject::new()
            .string("name", &milestone.name)
            .raw("due", &json_time(milestone.due_micros))
            .string("exit_criteria", &milestone.exit_criteria)
            .string(
                "status",
                &name_of::<proto::MilestoneStatus>(milestone.status),
            )
            .raw("signal_id", &json_optional(&milestone.signal_id))
            .raw("closed_at", &json_time(milestone.closed_at_micros))
            .finish()
    });
    JsonObject::new()
        .string("id", &initiative.id)
        .string(
            "status",
            &name_of::<proto::InitiativeStatus>(initiative.status),
        )
        .number("at_risk", initiative.at_risk)
        .raw("risk_reason", &json_optional(&initiative.risk_reason))
        .string("title", &draft.title)
        .string("goal", &draft.goal)
        .raw("owners", &json_strings(&draft.owners))
        .string("team", &draft.team)
        .string("target", &draft.target)
        .string("scope", &draft.scope)
        .raw("start", &json_time(draft.start_micros))
        .raw("target_date", &json_time(draft.target_date_micros))
        .raw("implements", &json_strings(&draft.implements))
        .raw("outcome_tags", &json_strings(&draft.outcome_tags))
        .string(
            "visibility",
            &name_of::<proto::Visibility>(draft.visibility),
        )
        .raw("milestones", &json_array(milestones))
        .raw("cancel_reason", &json_optional(&initiative.cancel_reason))
        .raw("created_at", &json_time(initiative.created_at_micros))
        .raw(
            "status_changed_at",
            &json_time(initiative.status_changed_at_micros),
        )
        .number("version", initiative.version)
        .finish()
}

// --- printing answers ---------------------------------------------------------------------------

/// Prints one entity and the stamp its read reflects: the text form then the stamp line, or one
/// JSON object `{"<key>": ..., "stamp": ...}`.
pub fn print_one<T>(
    format: Format,
    key: &str,
    item: Option<&T>,
    stamp: Option<&proto::Stamp>,
    text: impl Fn(&T) -> String,
    json: impl Fn(&T) -> String,
) {
    match format {
        Format::Text => {
            match item {
                Some(item) => print!("{}", text(item)),
                None => println!("(the server sent no {key})"),
            }
            println!("{}", stamp_text(stamp));
        }
        Format::Json => println!(
            "{}",
            JsonObject::new()
                .raw(key, &item.map_or_else(|| "null".to_owned(), json))
                .raw("stamp", &stamp_json(stamp))
                .finish()
        ),
    }
}

/// Prints a list: a line per item, then a count, the stamp and where to continue; or one JSON
/// object `{"<key>": [...], "next_page_token": ..., "stamp": ...}` (`key` in snake case).
pub fn print_list<T>(
    format: Format,
    key: &str,
    items: &[T],
    next_page_token: &str,
    stamp: Option<&proto::Stamp>,
    line: impl Fn(&T) -> String,
    json: impl Fn(&T) -> String,
) {
    match format {
        Format::Text => {
            for item in items {
                println!("{}", line(item));
            }
            println!(
                "{} {}, {}",
                items.len(),
                key.replace('_', " "),
                stamp_text(stamp)
            );
            if !next_page_token.is_empty() {
                println!("next page: --page-token {next_page_token} (or --all)");
            }
        }
        Format::Json => println!(
            "{}",
            JsonObject::new()
                .raw(key, &json_array(items.iter().map(json)))
                .raw("next_page_token", &json_optional(next_page_token))
                .raw("stamp", &stamp_json(stamp))
                .finish()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_say_what_was_recorded() {
        let mut receipt = proto::CommandReceipt {
            entity: Some(proto::EntityRef {
                kind: proto::EntityKind::Opportunity as i32,
                id: "o-1".into(),
            }),
            first_position: 12,
            last_position: 13,
            stream_version: 4,
            event_types: vec!["opportunity.voted".into(), "opportunity.scored".into()],
            deduplicated: false,
            sampled_out: false,
        };
        assert_eq!(
            receipt_text(&receipt),
            "recorded opportunity/o-1 positions 12..13 version 4: opportunity.voted, opportunity.scored"
        );
        assert_eq!(
            receipt_json(&receipt),
            r#"{"entity":"opportunity/o-1","first_position":12,"last_position":13,"stream_version":4,"event_types":["opportunity.voted","opportunity.scored"],"deduplicated":false}"#
        );
        receipt.deduplicated = true;
        assert!(receipt_text(&receipt).ends_with(" (retry: already recorded)"));
        receipt.first_position = 0;
        receipt.last_position = 0;
        receipt.event_types.clear();
        assert_eq!(
            receipt_text(&receipt),
            "recorded nothing for opportunity/o-1: unchanged at version 4"
        );
    }

    #[test]
    fn stamps_name_the_position_and_the_checkpoint() {
        let mut stamp = proto::Stamp {
            position: 1234,
            checkpoint: None,
        };
        assert_eq!(
            stamp_text(Some(&stamp)),
            "as of position 1234, no checkpoint signed yet"
        );
        stamp.checkpoint = Some(proto::Checkpoint {
            tree_size: 1200,
            root: vec![0xab; 2],
            ..Default::default()
        });
        assert_eq!(
            stamp_text(Some(&stamp)),
            "as of position 1234, checkpoint tree size 1200"
        );
        assert_eq!(
            stamp_json(Some(&stamp)),
            r#"{"position":1234,"checkpoint_tree_size":1200,"checkpoint_root":"abab"}"#
        );
    }

    #[test]
    fn numbers_lose_trailing_zeros() {
        assert_eq!(number_text(2.5), "2.5");
        assert_eq!(number_text(3.0), "3");
        assert_eq!(number_text(0.125), "0.125");
        assert_eq!(number_text(-0.00001), "0");
        assert_eq!(number_text(1_400_000.0), "1400000");
    }

    #[test]
    fn fields_align_and_skip_empty_values() {
        assert_eq!(
            field_lines(&[
                ("status", "new".into()),
                ("canonical", String::new()),
                ("team", "platform".into())
            ]),
            "status  new\nteam    platform\n"
        );
    }
}
