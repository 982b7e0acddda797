//! How records and times are printed: one human line per record, or one JSON object per line.
//!
//! The JSON is written by hand (a dozen flat fields do not need a serialization framework); the
//! one thing to get right, string escaping, is tested below.

use std::fmt::Write as _;

use cairn_grpc::proto;
use cairn_ledger::leaf_hash;

use crate::input::stream_name;

/// Formats microseconds since the Unix epoch as RFC 3339 UTC with microseconds,
/// `2024-05-06T07:08:09.123456Z`.
pub fn format_micros(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's
/// `civil_from_days`, exact for every `i64` day count a timestamp can produce.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A payload for a human: quoted text when it is UTF-8, `hex:...` otherwise.
pub fn format_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("hex:{}", hex::encode(bytes)),
    }
}

fn personal_state_name(state: proto::PersonalState) -> &'static str {
    match state {
        proto::PersonalState::Unspecified => "unspecified",
        proto::PersonalState::None => "none",
        proto::PersonalState::Open => "open",
        proto::PersonalState::Withheld => "withheld",
        proto::PersonalState::Erased => "erased",
    }
}

/// One line for a person: position, stream and version, type, actor, time, payload, personal
/// part.
pub fn record_line(record: &proto::Record) -> String {
    let personal = match record.personal_state() {
        proto::PersonalState::Open => format_bytes(&record.personal),
        other => personal_state_name(other).to_owned(),
    };
    format!(
        "{position} {stream} v{version} {event_type} actor={actor:?} at={time} payload={payload} personal={personal}",
        position = record.position,
        stream = stream_name(record.stream.as_ref()),
        version = record.stream_version,
        event_type = record.event_type,
        actor = record.actor,
        time = format_micros(record.recorded_at_micros),
        payload = format_bytes(&record.payload),
    )
}

/// One JSON object (no newline) with every field of the record, ids and hashes in lowercase hex,
/// the payload both as text (or null when it is not UTF-8) and as hex, and the record's Merkle
/// leaf hash computed from the envelope bytes.
pub fn record_json(record: &proto::Record) -> String {
    let lineage: Vec<String> = record
        .lineage
        .iter()
        .map(|parent| {
            JsonObject::new()
                .string("relation", &parent.relation)
                .string("target", &stream_name(parent.target.as_ref()))
                .finish()
        })
        .collect();
    let state = record.personal_state();
    let mut object = JsonObject::new()
        .number("position", record.position)
        .string("stream", &stream_name(record.stream.as_ref()))
        .number("stream_version", record.stream_version)
        .string("event_id", &hex::encode(&record.event_id))
        .string("event_type", &record.event_type)
        .number("event_schema_version", record.event_schema_version)
        .string("recorded_at", &format_micros(record.recorded_at_micros))
        .number("recorded_at_micros", record.recorded_at_micros)
        .string("actor", &record.actor)
        .optional_hex("causation_id", &record.causation_id)
        .optional_hex("correlation_id", &record.correlation_id)
        .raw("lineage", &format!("[{}]", lineage.join(",")))
        .string("data_class", &record.data_class)
        .optional_hex("key_id", &record.key_id)
        .string(
            "payload_commitment",
            &hex::encode(&record.payload_commitment),
        )
        .string(
            "policy_bundle_hash",
            &hex::encode(&record.policy_bundle_hash),
        )
        .string("leaf_hash", &leaf_hash(&record.envelope).to_hex())
        .optional_text("payload", &record.payload)
        .string("payload_hex", &hex::encode(&record.payload))
        .string("personal_state", personal_state_name(state));
    if state == proto::PersonalState::Open {
        object = object
            .optional_text("personal", &record.personal)
            .string("personal_hex", &hex::encode(&record.personal));
    }
    object.finish()
}

/// Builds one flat JSON object, field by field, in the order given.
pub struct JsonObject {
    text: String,
}

impl JsonObject {
    /// An empty object.
    pub fn new() -> JsonObject {
        JsonObject {
            text: String::from("{"),
        }
    }

    /// A field whose value is already JSON.
    pub fn raw(mut self, key: &str, json: &str) -> JsonObject {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        write_json_string(&mut self.text, key);
        self.text.push(':');
        self.text.push_str(json);
        self
    }

    /// A string field.
    pub fn string(self, key: &str, value: &str) -> JsonObject {
        let mut json = String::with_capacity(value.len() + 2);
        write_json_string(&mut json, value);
        self.raw(key, &json)
    }

    /// A number field.
    pub fn number(self, key: &str, value: impl std::fmt::Display) -> JsonObject {
        self.raw(key, &value.to_string())
    }

    /// Hex of the bytes, or null when there are none (an absent optional id).
    pub fn optional_hex(self, key: &str, bytes: &[u8]) -> JsonObject {
        if bytes.is_empty() {
            self.raw(key, "null")
        } else {
            self.string(key, &hex::encode(bytes))
        }
    }

    /// The bytes as a string when they are UTF-8, null otherwise.
    pub fn optional_text(self, key: &str, bytes: &[u8]) -> JsonObject {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.string(key, text),
            Err(_) => self.raw(key, "null"),
        }
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

/// `value` as a JSON string literal, quotes included.
pub fn json_string(value: &str) -> String {
    let mut json = String::with_capacity(value.len() + 2);
    write_json_string(&mut json, value);
    json
}

/// Appends `value` as a JSON string literal (RFC 8259 section 7): quotes, backslashes and control
/// characters escaped; everything else, including non-ASCII, written as UTF-8.
fn write_json_string(out: &mut String, value: &str) {
    out.push('"');
    for character in value.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if u32::from(control) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(control));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc3339_utc() {
        for (micros, expected) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_700_000_000_123_456, "2023-11-14T22:13:20.123456Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),
            (-1, "1969-12-31T23:59:59.999999Z"),
            (4_102_444_800_000_000, "2100-01-01T00:00:00.000000Z"),
        ] {
            assert_eq!(format_micros(micros), expected, "{micros}");
        }
    }

    #[test]
    fn json_strings_are_escaped() {
        let check = |value: &str, expected: &str| {
            let mut out = String::new();
            write_json_string(&mut out, value);
            assert_eq!(out, expected, "{value:?}");
        };
        check("plain", r#""plain""#);
        check(r#"say "hi" \ bye"#, r#""say \"hi\" \\ bye""#);
        check("line\nnext\ttab\r", r#""line\nnext\ttab\r""#);
        check("\u{1}\u{1f}", r#""\u0001\u001f""#);
        check("é ✓", "\"é ✓\"");
    }

    #[test]
    fn json_objects_keep_field_order() {
        let json = JsonObject::new()
            .number("position", 3u64)
            .string("actor", "a\"b")
            .optional_hex("causation_id", &[])
            .optional_hex("key_id", &[0xab, 0x01])
            .optional_text("payload", &[0xff])
            .raw("lineage", "[]")
            .finish();
        assert_eq!(
            json,
            r#"{"position":3,"actor":"a\"b","causation_id":null,"key_id":"ab01","payload":null,"lineage":[]}"#
        );
        assert_eq!(JsonObject::new().finish(), "{}");
    }

    #[test]
    fn payloads_print_as_text_or_hex() {
        assert_eq!(format_bytes(b"build is slow"), r#""build is slow""#);
        assert_eq!(format_bytes(b"a\nb"), r#""a\nb""#);
        assert_eq!(format_bytes(&[0xff, 0x00]), "hex:ff00");
        assert_eq!(format_bytes(b""), r#""""#);
    }

    #[test]
    fn records_print_one_line_each() {
        let record = proto::Record {
            position: 12,
            stream: Some(proto::StreamRef {
                tenant: "acme".into(),
                aggregate_type: "feedback".into(),
                aggregate_id: "fb-1".into(),
            }),
            stream_version: 3,
            event_type: "FeedbackReceived".into(),
            actor: "user:alice".into(),
            recorded_at_micros: 1_700_000_000_000_000,
            payload: b"slow builds".to_vec(),
            personal_state: proto::PersonalState::Withheld as i32,
            ..Default::default()
        };
        assert_eq!(
            record_line(&record),
            r#"12 acme/feedback/fb-1 v3 FeedbackReceived actor="user:alice" at=2023-11-14T22:13:20.000000Z payload="slow builds" personal=withheld"#
        );
        let json = record_json(&record);
        assert!(
            json.starts_with(r#"{"position":12,"stream":"acme/feedback/fb-1","stream_version":3,"#),
            "{json}"
        );
        assert!(json.contains(r#""payload":"slow builds","payload_hex":"736c6f77206275696c6473","personal_state":"withheld"}"#), "{json}");
        assert!(!json.contains("\"personal\":"), "{json}");
    }
}
