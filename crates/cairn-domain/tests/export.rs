//! Exports for analysis: every sample event exports as valid JSON; principals appear only as
//! keyed pseudonyms (two keys give two pseudonyms for each, and nothing else differs); personal
//! fields are left out.

mod common;

use cairn_domain::export::{event_json, governance_json};
use cairn_domain::pseudonym::PseudonymKey;
use common::samples;
use serde_json::Value;

/// Every principal id the samples use.
const PRINCIPALS: &[&str] = &[
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "mallory",
    "user:alice",
];

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        Value::Object(map) => {
            for (key, item) in map {
                out.push(key.clone());
                strings(item, out);
            }
        }
        _ => {}
    }
}

fn exports() -> Vec<(String, String, String)> {
    let one = PseudonymKey::from_bytes([1; 32]);
    let two = PseudonymKey::from_bytes([2; 32]);
    let mut out = Vec::new();
    for event in samples::all() {
        out.push((
            event.event_type().to_owned(),
            event_json(&event, &one, "acme").unwrap(),
            event_json(&event, &two, "acme").unwrap(),
        ));
    }
    for event in samples::governance() {
        out.push((
            event.event_type().to_owned(),
            governance_json(&event, &one, "acme").unwrap(),
            governance_json(&event, &two, "acme").unwrap(),
        ));
    }
    out
}

#[test]
fn every_sample_exports_as_json_with_principals_only_as_pseudonyms() {
    let mut pseudonymised_types = 0;
    for (event_type, one, two) in exports() {
        let first: Value = serde_json::from_str(&one)
            .unwrap_or_else(|error| panic!("{event_type}: {error}\n{one}"));
        let second: Value = serde_json::from_str(&two).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        strings(&first, &mut a);
        strings(&second, &mut b);
        assert_eq!(
            a.len(),
            b.len(),
            "{event_type}: the two exports differ in shape"
        );
        for (x, y) in a.iter().zip(&b) {
            if x == y {
                assert!(
                    !PRINCIPALS.contains(&x.as_str()),
                    "{event_type}: principal {x:?} exported in the clear:\n{one}"
                );
            } else {
                assert!(
                    x.starts_with("p_") && y.starts_with("p_"),
                    "{event_type}: {x:?} / {y:?} differ but are no pseudonyms"
                );
            }
        }
        if a != b {
            pseudonymised_types += 1;
        }
    }
    assert!(pseudonymised_types >= 10, "{pseudonymised_types}");
}

#[test]
fn personal_fields_are_left_out() {
    let key = PseudonymKey::from_bytes([1; 32]);
    let received = samples::all()
        .into_iter()
        .find(|event| event.event_type() == "feedback.received")
        .unwrap();
    let json = event_json(&received, &key, "acme").unwrap();
    let value: Value = serde_json::from_str(&json).unwrap();
    let mut texts = Vec::new();
    strings(&value, &mut texts);
    assert!(
        !texts.iter().any(|t| t == "text" || t == "submitter"),
        "{json}"
    );
}

#[test]
fn a_pseudonym_depends_on_the_tenant() {
    let key = PseudonymKey::from_bytes([1; 32]);
    let event = samples::governance()
        .into_iter()
        .find(|event| event.event_type() == "access.granted")
        .unwrap();
    assert_ne!(
        governance_json(&event, &key, "acme").unwrap(),
        governance_json(&event, &key, "beta").unwrap()
    );
    assert_eq!(
        governance_json(&event, &key, "acme").unwrap(),
        governance_json(&event, &key, "acme").unwrap()
    );
}
