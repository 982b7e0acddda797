//! Golden files: one stored encoding of every event type at the current schema version, decoded
//! by this test, so a change to an event's encoding cannot slip through (postcard is not
//! self-describing: a field added, removed or reordered silently changes the bytes).
//!
//! The files are `tests/golden/<event type>.v<schema version>.hex`, the clear part in hex, and
//! for an event with a personal part also `<event type>.v<schema version>.personal.hex`.
//!
//! A new event type fails here until it has a file: add its sample to `common/samples.rs`, then
//! write the missing files with
//!
//! ```text
//! CAIRN_BLESS=1 cargo test -p cairn-domain --test golden
//! ```
//!
//! and commit them. Blessing writes missing files only: an existing file is the record of a
//! published format and is never rewritten. If a change breaks one, the change is a new schema
//! version (decoded beside the old one), not a new golden file.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use cairn_domain::Event;
use cairn_domain::codec::{SCHEMA_VERSION, StoredPersonal};
use cairn_domain::governance::GovernanceEvent;
use common::samples;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn clear_file(event_type: &str) -> PathBuf {
    golden_dir().join(format!("{event_type}.v{SCHEMA_VERSION}.hex"))
}

fn personal_file(event_type: &str) -> PathBuf {
    golden_dir().join(format!("{event_type}.v{SCHEMA_VERSION}.personal.hex"))
}

fn blessing() -> bool {
    std::env::var_os("CAIRN_BLESS").is_some_and(|v| v == "1")
}

/// Lowercase hex, 64 digits a line.
fn to_hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut text = String::new();
    for line in digits.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("ascii"));
        text.push('\n');
    }
    text
}

fn from_hex(path: &Path, text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "{}: odd number of digits",
        path.display()
    );
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(pair, 16)
                .unwrap_or_else(|_| panic!("{}: {pair:?} is not hex", path.display()))
        })
        .collect()
}

/// Reads a golden file; with `CAIRN_BLESS=1`, writes it first if it is missing.
fn read_or_bless(path: &Path, bytes: &[u8]) -> Option<Vec<u8>> {
    if !path.exists() && blessing() {
        fs::create_dir_all(golden_dir()).expect("create tests/golden");
        fs::write(path, to_hex(bytes)).expect("write a golden file");
    }
    let text = fs::read_to_string(path).ok()?;
    Some(from_hex(path, &text))
}

#[test]
fn every_event_type_has_a_golden_sample_that_decodes_to_it() {
    samples::every_variant_has_a_sample();
    let mut missing = Vec::new();
    for event in samples::all() {
        let event_type = event.event_type();
        let encoded = event.encode();
        let Some(clear) = read_or_bless(&clear_file(event_type), &encoded.clear) else {
            missing.push(clear_file(event_type));
            continue;
        };
        let personal = match &encoded.personal {
            None => None,
            Some(part) => match read_or_bless(&personal_file(event_type), &part.bytes) {
                Some(bytes) => Some(bytes),
                None => {
                    missing.push(personal_file(event_type));
                    continue;
                }
            },
        };
        let stored = match &personal {
            Some(bytes) => StoredPersonal::Open(bytes),
            None => StoredPersonal::None,
        };
        let decoded = Event::decode(
            event.kind().as_str(),
            event_type,
            SCHEMA_VERSION,
            &clear,
            stored,
        );
        assert_eq!(
            decoded.as_ref(),
            Ok(&event),
            "{event_type}: the golden file no longer decodes to its sample"
        );
        // The sample is the published one: encoding it still gives the stored bytes.
        assert_eq!(
            encoded.clear, clear,
            "{event_type}: the encoding differs from the golden file"
        );
        assert_eq!(
            encoded.personal.map(|part| part.bytes),
            personal,
            "{event_type}: the personal encoding differs from the golden file"
        );
    }
    assert!(
        missing.is_empty(),
        "no golden file (write it with CAIRN_BLESS=1): {missing:#?}"
    );
}

#[test]
fn every_governance_event_type_has_a_golden_sample_that_decodes_to_it() {
    samples::every_governance_variant_has_a_sample();
    let mut missing = Vec::new();
    for event in samples::governance() {
        let event_type = event.event_type();
        let encoded = event.encode();
        let Some(stored) = read_or_bless(&clear_file(event_type), &encoded) else {
            missing.push(clear_file(event_type));
            continue;
        };
        // The subject of a hold or an erasure is sealed apart: the clear part decodes to the
        // sample with the subject that was sealed.
        assert_eq!(
            GovernanceEvent::decode_with_subject(
                event_type,
                SCHEMA_VERSION,
                &stored,
                event.personal_subject()
            )
            .as_ref(),
            Ok(&event),
            "{event_type}: the golden file no longer decodes to its sample"
        );
        assert_eq!(
            encoded, stored,
            "{event_type}: the encoding differs from the golden file"
        );
    }
    assert!(
        missing.is_empty(),
        "no golden file (write it with CAIRN_BLESS=1): {missing:#?}"
    );
}

#[test]
fn a_governance_payload_of_another_type_is_refused() {
    let [activated, ..] = &samples::governance()[..] else {
        unreachable!("there are samples")
    };
    let refused = GovernanceEvent::decode("access.denied", SCHEMA_VERSION, &activated.encode());
    assert!(refused.is_err(), "{refused:?}");
    let refused =
        GovernanceEvent::decode("policy.activated", SCHEMA_VERSION + 1, &activated.encode());
    assert!(refused.is_err(), "{refused:?}");
}

#[test]
fn every_golden_file_is_of_a_known_event_type() {
    let mut known: Vec<String> = samples::all()
        .iter()
        .flat_map(|event| {
            let event_type = event.event_type();
            let mut names = vec![format!("{event_type}.v{SCHEMA_VERSION}.hex")];
            if event.encode().personal.is_some() {
                names.push(format!("{event_type}.v{SCHEMA_VERSION}.personal.hex"));
            }
            names
        })
        .collect();
    known.extend(
        samples::governance()
            .iter()
            .map(|event| format!("{}.v{SCHEMA_VERSION}.hex", event.event_type())),
    );
    let Ok(entries) = fs::read_dir(golden_dir()) else {
        // No directory yet: the other test says what is missing.
        assert!(blessing() || known.is_empty(), "no tests/golden directory");
        return;
    };
    for entry in entries {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            known.iter().any(|k| *k == name),
            "tests/golden/{name} is of no known event type and version"
        );
    }
}

#[test]
fn hex_round_trips() {
    let bytes: Vec<u8> = (0..=255).collect();
    let text = to_hex(&bytes);
    assert!(text.lines().all(|line| line.len() <= 64));
    assert_eq!(from_hex(Path::new("test"), &text), bytes);
}
