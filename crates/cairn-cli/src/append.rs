//! `cairn append`: append events to one stream, as one atomic batch.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cairn_grpc::proto;
use cairn_ledger::{DataClass, EventId};
use clap::Args;

use crate::client::{Client, ServerArgs};
use crate::input::{parse_event_id, parse_expected, parse_lineage, parse_stream, stream_to_proto};

/// `cairn append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// The stream, as TENANT/TYPE/ID (for example acme/notes/fb-1).
    #[arg(long)]
    stream: String,

    /// The stream version the append requires: `any`, `none` (no events yet) or a version.
    #[arg(long, default_value = "any")]
    expect: String,

    /// The event type ([A-Za-z0-9._-], for example FeedbackReceived).
    #[arg(long = "type", value_name = "EVENT_TYPE")]
    event_type: String,

    /// The payload's schema version for that event type.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=i64::from(u16::MAX)))]
    schema_version: u32,

    /// The clear (non-personal) payload, as text.
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,

    /// Read the clear payload from a file (`-` for stdin), as bytes.
    #[arg(long, value_name = "PATH")]
    payload_file: Option<PathBuf>,

    /// Personal data, sealed by the server under the data subject's key (needs --subject).
    #[arg(long, requires = "subject")]
    personal: Option<String>,

    /// Whose personal data --personal is: a stable principal id.
    #[arg(long, value_name = "PRINCIPAL", requires = "personal")]
    subject: Option<String>,

    /// The data class: public, internal, personal or sensitive (default: personal with
    /// --personal, public without).
    #[arg(long, value_name = "CLASS")]
    data_class: Option<String>,

    /// The event id (32 hex digits): the idempotency key, so a retry is recorded once. Default:
    /// a random id per event.
    #[arg(long, value_name = "HEX32")]
    event_id: Option<String>,

    /// The event that caused this one (32 hex digits).
    #[arg(long, value_name = "HEX32")]
    causation_id: Option<String>,

    /// The id tying together one request or workflow (32 hex digits).
    #[arg(long, value_name = "HEX32")]
    correlation_id: Option<String>,

    /// A lineage edge, RELATION=TENANT/TYPE/ID (for example evidence_for=acme/opportunity/op-1);
    /// repeat for several.
    #[arg(long, value_name = "EDGE")]
    lineage: Vec<String>,

    /// The principal on whose behalf the events are recorded (default: $USER, else `cli`).
    #[arg(long, value_name = "ID")]
    actor: Option<String>,

    /// Append this many copies as one batch, each with its own random event id.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=cairn_store::limits::APPEND_EVENTS_MAX as u64))]
    count: u64,
}

/// Appends and prints where the events landed.
pub async fn run(args: AppendArgs) -> anyhow::Result<()> {
    let request = build_request(&args)?;
    let mut client = Client::connect(&args.server).await?;
    let response = client.append(request).await?;
    println!(
        "appended positions {}..{} stream version {}{}",
        response.first_position,
        response.last_position,
        response.last_version,
        if response.deduplicated {
            " (retry: already recorded)"
        } else {
            ""
        }
    );
    for line in event_id_lines(&response) {
        println!("{line}");
    }
    Ok(())
}

/// Most event ids printed one per line; a larger batch prints the first and the last few.
const EVENT_ID_LINES_MAX: usize = 10;

/// `event ID at position P` for each event, cut short for large batches (the ids stay readable
/// with `cairn read --json`).
fn event_id_lines(response: &proto::AppendResponse) -> Vec<String> {
    let line = |offset: usize| {
        format!(
            "event {} at position {}",
            hex::encode(&response.event_ids[offset]),
            response.first_position + offset as u64
        )
    };
    let count = response.event_ids.len();
    if count <= EVENT_ID_LINES_MAX {
        return (0..count).map(line).collect();
    }
    let mut lines: Vec<String> = (0..3).map(line).collect();
    lines.push(format!(
        "... {} more (cairn read --from {} --limit {count} --json lists every id)",
        count - 4,
        response.first_position
    ));
    lines.push(line(count - 1));
    lines
}

/// Validates every flag and builds the request, before connecting.
fn build_request(args: &AppendArgs) -> anyhow::Result<proto::AppendRequest> {
    let stream = parse_stream(&args.stream)?;
    let expected = parse_expected(&args.expect)?;
    if let Some(class) = &args.data_class {
        DataClass::parse(class).with_context(|| format!("--data-class {class:?}"))?;
    }
    let event_id = args
        .event_id
        .as_deref()
        .map(|text| parse_event_id("--event-id", text))
        .transpose()?;
    if event_id.is_some() && args.count > 1 {
        bail!(
            "--event-id names one event; it cannot be used with --count {} (each copy gets its own id)",
            args.count
        );
    }
    let causation_id = optional_id("--causation-id", args.causation_id.as_deref())?;
    let correlation_id = optional_id("--correlation-id", args.correlation_id.as_deref())?;
    let lineage = args
        .lineage
        .iter()
        .map(String::as_str)
        .map(parse_lineage)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let payload = match (&args.payload, &args.payload_file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(path)) => read_payload_file(path)?,
        (None, None) => Vec::new(),
    };
    let actor = args.actor.clone().unwrap_or_else(default_actor);

    let events = (0..args.count)
        .map(|_| proto::EventInput {
            // Ids are drawn here, not by the server, so the ids printed are the idempotency keys
            // a caller can re-send.
            event_id: event_id
                .unwrap_or_else(|| EventId(cairn_store::random_bytes()))
                .0
                .to_vec(),
            event_type: args.event_type.clone(),
            event_schema_version: args.schema_version,
            causation_id: causation_id.clone(),
            correlation_id: correlation_id.clone(),
            lineage: lineage.clone(),
            data_class: args.data_class.clone().unwrap_or_default(),
            payload: payload.clone(),
            personal: args
                .personal
                .clone()
                .map(String::into_bytes)
                .unwrap_or_default(),
            data_subject: args.subject.clone().unwrap_or_default(),
            policy_bundle_hash: Vec::new(),
        })
        .collect();
    Ok(proto::AppendRequest {
        stream: Some(stream_to_proto(&stream)),
        expected: Some(expected),
        events,
        actor,
    })
}

fn optional_id(flag: &str, text: Option<&str>) -> anyhow::Result<Vec<u8>> {
    Ok(text
        .map(|text| parse_event_id(flag, text))
        .transpose()?
        .map(|id| id.0.to_vec())
        .unwrap_or_default())
}

fn read_payload_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the payload from stdin")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("cannot read --payload-file {}", path.display()))
}

/// `$USER`, else `cli`: the principal a person at a terminal most likely is.
pub fn default_actor() -> String {
    std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "cli".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(flatten)]
        args: AppendArgs,
    }

    fn request(argv: &[&str]) -> anyhow::Result<proto::AppendRequest> {
        let mut full = vec!["append"];
        full.extend_from_slice(argv);
        let harness = Harness::try_parse_from(full)?;
        build_request(&harness.args)
    }

    #[test]
    fn copies_get_their_own_ids() {
        let request = request(&[
            "--stream",
            "acme/notes/fb-1",
            "--type",
            "FeedbackReceived",
            "--payload",
            "slow",
            "--count",
            "3",
            "--actor",
            "user:alice",
        ])
        .unwrap();
        assert_eq!(request.events.len(), 3);
        assert_eq!(request.actor, "user:alice");
        let mut ids: Vec<_> = request
            .events
            .iter()
            .map(|event| event.event_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "every copy has its own id");
        assert!(request.events.iter().all(|event| event.payload == b"slow"));
    }

    #[test]
    fn flags_are_checked_before_anything_is_sent() {
        let base = ["--stream", "acme/notes/fb-1", "--type", "T"];
        let check = |extra: &[&str], fragment: &str| {
            let mut argv = base.to_vec();
            argv.extend_from_slice(extra);
            let error = format!("{:#}", request(&argv).unwrap_err());
            assert!(error.contains(fragment), "{extra:?}: {error}");
        };
        check(
            &["--event-id", &"ab".repeat(16), "--count", "2"],
            "cannot be used with --count",
        );
        check(&["--event-id", "abc"], "--event-id");
        check(&["--expect", "soon"], "--expect");
        check(&["--data-class", "secret"], "--data-class");
        check(&["--personal", "alice@example.com"], "--subject");
        check(&["--count", "0"], "--count");
        let error = format!(
            "{:#}",
            request(&["--stream", "acme/notes", "--type", "T"]).unwrap_err()
        );
        assert!(error.contains("TENANT/TYPE/ID"), "{error}");
    }

    #[test]
    fn large_batches_print_a_few_ids() {
        let response = |count: u64| proto::AppendResponse {
            first_position: 8,
            last_position: 7 + count,
            last_version: count,
            deduplicated: false,
            event_ids: (0..count).map(|index| vec![index as u8; 16]).collect(),
        };
        let lines = event_id_lines(&response(2));
        assert_eq!(
            lines,
            [
                format!("event {} at position 8", "00".repeat(16)),
                format!("event {} at position 9", "01".repeat(16)),
            ]
        );
        assert_eq!(event_id_lines(&response(10)).len(), 10);
        let lines = event_id_lines(&response(500));
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[3],
            "... 496 more (cairn read --from 8 --limit 500 --json lists every id)"
        );
        assert_eq!(
            lines[4],
            format!("event {} at position 507", "f3".repeat(16))
        );
    }

    #[test]
    fn personal_data_and_ids_are_carried() {
        let request = request(&[
            "--stream",
            "acme/notes/fb-1",
            "--type",
            "T",
            "--personal",
            "alice@example.com",
            "--subject",
            "user:alice",
            "--event-id",
            &"0f".repeat(16),
            "--expect",
            "none",
            "--lineage",
            "evidence_for=acme/opportunity/op-1",
        ])
        .unwrap();
        let event = &request.events[0];
        assert_eq!(event.personal, b"alice@example.com");
        assert_eq!(event.data_subject, "user:alice");
        assert_eq!(event.event_id, vec![0x0f; 16]);
        assert_eq!(event.lineage.len(), 1);
        assert_eq!(
            request.expected.unwrap().condition,
            Some(proto::expected_version::Condition::NoStream(true))
        );
    }
}
