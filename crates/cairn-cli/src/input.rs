//! Parsing what a person types: stream names, expected versions, hex ids and keys, lineage edges.
//! Every refusal quotes the input and says what was expected, before anything is sent.

use anyhow::{Context, anyhow, bail};
use cairn_grpc::proto;
use cairn_ledger::{EventId, PublicKey, StreamId, TenantId};

/// Parses `TENANT/TYPE/ID` (the way streams are printed) and checks each part against the
/// ledger's rules, so a bad name is refused here rather than by the server.
pub fn parse_stream(text: &str) -> anyhow::Result<StreamId> {
    let parts: Vec<&str> = text.split('/').collect();
    let [tenant, aggregate_type, aggregate_id] = parts.as_slice() else {
        bail!(
            "stream {text:?} must be TENANT/TYPE/ID (three parts separated by '/', for example \
             acme/notes/fb-1), found {} part{}",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" }
        );
    };
    let tenant = TenantId::new(*tenant).map_err(|error| anyhow!("stream {text:?}: {error}"))?;
    StreamId::new(tenant, *aggregate_type, *aggregate_id)
        .map_err(|error| anyhow!("stream {text:?}: {error}"))
}

/// The proto form of a stream id.
pub fn stream_to_proto(stream: &StreamId) -> proto::StreamRef {
    proto::StreamRef {
        tenant: stream.tenant.as_str().to_owned(),
        aggregate_type: stream.aggregate_type.clone(),
        aggregate_id: stream.aggregate_id.clone(),
    }
}

/// `TENANT/TYPE/ID` from a proto stream reference (`?/?/?` when the server sent none).
pub fn stream_name(stream: Option<&proto::StreamRef>) -> String {
    match stream {
        Some(stream) => format!(
            "{}/{}/{}",
            stream.tenant, stream.aggregate_type, stream.aggregate_id
        ),
        None => "?/?/?".to_owned(),
    }
}

/// Parses `--expect`: `any`, `none` (the stream must have no events) or a stream version.
pub fn parse_expected(text: &str) -> anyhow::Result<proto::ExpectedVersion> {
    use proto::expected_version::Condition;
    let condition = match text {
        "any" => Condition::Any(true),
        "none" => Condition::NoStream(true),
        number => Condition::Exact(number.parse().map_err(|_| {
            anyhow!(
                "--expect {number:?} must be `any`, `none` or a stream version (a whole number)"
            )
        })?),
    };
    Ok(proto::ExpectedVersion {
        condition: Some(condition),
    })
}

/// Parses a 16-byte event id written as 32 hex digits.
pub fn parse_event_id(flag: &str, text: &str) -> anyhow::Result<EventId> {
    EventId::from_hex(text.trim()).map_err(|error| anyhow!("{flag} {text:?}: {error}"))
}

/// Parses an ed25519 public key written as 64 hex digits.
pub fn parse_public_key(flag: &str, text: &str) -> anyhow::Result<PublicKey> {
    PublicKey::from_hex(text.trim()).map_err(|error| anyhow!("{flag} {text:?}: {error}"))
}

/// Parses `RELATION=TENANT/TYPE/ID`, one lineage edge.
pub fn parse_lineage(text: &str) -> anyhow::Result<proto::LineageParent> {
    let (relation, target) = text.split_once('=').ok_or_else(|| {
        anyhow!("--lineage {text:?} must be RELATION=TENANT/TYPE/ID (for example evidence_for=acme/opportunity/op-1)")
    })?;
    if relation.is_empty()
        || !relation
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        bail!(
            "--lineage {text:?}: the relation {relation:?} must be [a-z_], for example evidence_for"
        );
    }
    let target = parse_stream(target).with_context(|| format!("--lineage {text:?}"))?;
    Ok(proto::LineageParent {
        relation: relation.to_owned(),
        target: Some(stream_to_proto(&target)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_stream(text: &str, expected: Result<(&str, &str, &str), &str>) {
        match (parse_stream(text), expected) {
            (Ok(stream), Ok((tenant, aggregate_type, aggregate_id))) => {
                assert_eq!(stream.tenant.as_str(), tenant);
                assert_eq!(stream.aggregate_type, aggregate_type);
                assert_eq!(stream.aggregate_id, aggregate_id);
                assert_eq!(stream.to_string(), text, "prints the way it parses");
            }
            (Err(error), Err(fragment)) => {
                let message = format!("{error:#}");
                assert!(message.contains(fragment), "{text:?}: {message}");
            }
            (got, expected) => panic!("{text:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn streams_parse_as_tenant_type_id() {
        check_stream("acme/notes/fb-1", Ok(("acme", "notes", "fb-1")));
        check_stream(
            "acme-eu.1/incident/INC:42",
            Ok(("acme-eu.1", "incident", "INC:42")),
        );
        check_stream("acme/notes", Err("must be TENANT/TYPE/ID"));
        check_stream("acme", Err("found 1 part"));
        check_stream("acme/notes/a/b", Err("found 4 parts"));
        check_stream("Acme/feedback/fb-1", Err("tenant"));
        check_stream("acme/Feedback/fb-1", Err("aggregate_type"));
        check_stream("acme/notes/", Err("aggregate_id"));
        check_stream("acme/notes/a b", Err("aggregate_id"));
    }

    #[test]
    fn expected_versions_parse() {
        use proto::expected_version::Condition;
        let condition = |text| parse_expected(text).unwrap().condition.unwrap();
        assert_eq!(condition("any"), Condition::Any(true));
        assert_eq!(condition("none"), Condition::NoStream(true));
        assert_eq!(condition("7"), Condition::Exact(7));
        assert_eq!(condition("0"), Condition::Exact(0));
        for bad in ["", "-1", "seven", "Any"] {
            let error = parse_expected(bad).unwrap_err().to_string();
            assert!(error.contains("must be `any`, `none`"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn hex_ids_and_keys_name_the_flag_and_the_problem() {
        let id = parse_event_id("--event-id", &"ab".repeat(16)).unwrap();
        assert_eq!(id.to_hex(), "ab".repeat(16));
        let error = parse_event_id("--event-id", "abcd")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--event-id") && error.contains("16 bytes"),
            "{error}"
        );
        let error = parse_event_id("--event-id", "xyz").unwrap_err().to_string();
        assert!(error.contains("not hex"), "{error}");
        assert!(parse_public_key("--public-key", &"01".repeat(32)).is_ok());
        let error = parse_public_key("--public-key", &"01".repeat(31))
            .unwrap_err()
            .to_string();
        assert!(error.contains("32 bytes"), "{error}");
    }

    #[test]
    fn lineage_edges_parse() {
        let parent = parse_lineage("evidence_for=acme/opportunity/op-1").unwrap();
        assert_eq!(parent.relation, "evidence_for");
        assert_eq!(stream_name(parent.target.as_ref()), "acme/opportunity/op-1");
        for (bad, fragment) in [
            ("evidence_for", "RELATION=TENANT/TYPE/ID"),
            ("Evidence=acme/opportunity/op-1", "must be [a-z_]"),
            ("=acme/opportunity/op-1", "must be [a-z_]"),
            ("evidence_for=acme/opportunity", "TENANT/TYPE/ID"),
        ] {
            let error = format!("{:#}", parse_lineage(bad).unwrap_err());
            assert!(error.contains(fragment), "{bad:?}: {error}");
        }
    }
}
