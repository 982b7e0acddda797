//! The data-class table of `cairn_domain::privacy` against the events themselves: a recording
//! serde serializer walks one sample of every event variant (and a few more samples that fill
//! the options the shared ones leave empty) and collects every field path; the table must class
//! every path met, name no path never met, seal exactly what `Event::encode` puts in the
//! personal part, and flag exactly the fields that hold a principal id.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cairn_domain::Event;
use cairn_domain::decision::{DecisionContent, DecisionEvent};
use cairn_domain::feedback::{FeedbackContent, FeedbackEvent, Personal};
use cairn_domain::governance::{ErasureCause, GovernanceEvent};
use cairn_domain::opportunity::{OpportunityEvent, VoteRecord};
use cairn_domain::privacy::{self, DataClass};
use cairn_domain::signal::Percentiles;
use serde::Serialize;
use serde::ser;

use common::samples;
use common::{day, decision_content, id, observation, principal, signal_evidence, vote};

// ---------------------------------------------------------------------------------------------
// The walker.

/// What a walk met at each field path.
#[derive(Debug, Default)]
struct Fields {
    /// Paths that held a value (a scalar, a string, a unit or an enum variant's name).
    present: BTreeSet<String>,
    /// Paths that held nothing this time: a `None`, an empty sequence or map. Their fields
    /// beneath, if any, were not met.
    absent: BTreeSet<String>,
    /// Paths that held a `PrincipalId`.
    principals: BTreeSet<String>,
}

impl Fields {
    fn merge(&mut self, other: Fields) {
        self.present.extend(other.present);
        self.absent.extend(other.absent);
        self.principals.extend(other.principals);
    }

    fn met(&self) -> BTreeSet<String> {
        self.present.union(&self.absent).cloned().collect()
    }
}

/// Walks `value` with its fields under `root` (`""` for an event's own fields).
fn walk<T: Serialize + ?Sized>(value: &T, root: &str) -> Fields {
    let mut fields = Fields::default();
    value
        .serialize(Walker {
            fields: &mut fields,
            path: root.to_owned(),
        })
        .expect("the walker never fails");
    fields
}

#[derive(Debug)]
struct WalkError(String);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl ser::Error for WalkError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WalkError(msg.to_string())
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// A serializer that records paths instead of writing bytes. The root (the event's own variant)
/// is no field: its name is the event type.
struct Walker<'a> {
    fields: &'a mut Fields,
    path: String,
}

impl<'a> Walker<'a> {
    fn present(self) -> Result<(), WalkError> {
        if !self.path.is_empty() {
            self.fields.present.insert(self.path);
        }
        Ok(())
    }

    fn absent(self) -> Result<(), WalkError> {
        if !self.path.is_empty() {
            self.fields.absent.insert(self.path);
        }
        Ok(())
    }

    /// A compound value's walker, having recorded an enum variant's name at the path.
    fn compound(self, variant: bool) -> Compound<'a> {
        if variant && !self.path.is_empty() {
            self.fields.present.insert(self.path.clone());
        }
        Compound {
            fields: self.fields,
            path: self.path,
            elements: 0,
        }
    }
}

macro_rules! scalars {
    ($($method:ident: $type:ty),* $(,)?) => {
        $(fn $method(self, _: $type) -> Result<(), WalkError> {
            self.present()
        })*
    };
}

impl<'a> ser::Serializer for Walker<'a> {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    scalars!(
        serialize_bool: bool,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_u128: u128,
        serialize_f32: f32,
        serialize_f64: f64,
        serialize_char: char,
        serialize_str: &str,
        serialize_bytes: &[u8],
    );

    fn serialize_none(self) -> Result<(), WalkError> {
        self.absent()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), WalkError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), WalkError> {
        self.present()
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), WalkError> {
        self.present()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), WalkError> {
        self.present()
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        if name == "PrincipalId" {
            self.fields.principals.insert(self.path.clone());
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        if !self.path.is_empty() {
            self.fields.present.insert(self.path.clone());
        }
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, WalkError> {
        Ok(self.compound(false))
    }

    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, WalkError> {
        Ok(self.compound(false))
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, WalkError> {
        Ok(self.compound(false))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, WalkError> {
        Ok(self.compound(true))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, WalkError> {
        Ok(self.compound(false))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, WalkError> {
        Ok(self.compound(false))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, WalkError> {
        Ok(self.compound(true))
    }
}

/// The walker inside a compound value: sequence elements, tuple fields and map values stay at
/// the compound's path, struct fields go one level down, map keys to `PATH.<key>`.
struct Compound<'a> {
    fields: &'a mut Fields,
    path: String,
    elements: usize,
}

impl Compound<'_> {
    fn child(&mut self, name: Option<&str>) -> Walker<'_> {
        self.elements += 1;
        Walker {
            fields: self.fields,
            path: match name {
                Some(name) => join(&self.path, name),
                None => self.path.clone(),
            },
        }
    }

    /// An empty sequence or map met nothing beneath; an empty struct is a value in itself.
    fn end(self, empty_is_absent: bool) -> Result<(), WalkError> {
        if self.elements == 0 && !self.path.is_empty() {
            if empty_is_absent {
                self.fields.absent.insert(self.path);
            } else {
                self.fields.present.insert(self.path);
            }
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = WalkError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(self.child(None))
    }

    fn end(self) -> Result<(), WalkError> {
        Compound::end(self, true)
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = WalkError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(self.child(None))
    }

    fn end(self) -> Result<(), WalkError> {
        Compound::end(self, false)
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = WalkError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(self.child(None))
    }

    fn end(self) -> Result<(), WalkError> {
        Compound::end(self, false)
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = WalkError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(self.child(None))
    }

    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = WalkError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), WalkError> {
        key.serialize(self.child(Some("<key>")))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(self.child(None))
    }

    fn end(self) -> Result<(), WalkError> {
        Compound::end(self, true)
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = WalkError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(self.child(Some(key)))
    }

    fn end(self) -> Result<(), WalkError> {
        Compound::end(self, false)
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = WalkError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(self.child(Some(key)))
    }

    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The walker on its own.

#[derive(Serialize)]
struct Inner {
    a: u8,
    b: Option<String>,
}

#[derive(Serialize)]
enum Shape {
    Unit,
    Newtype(Inner),
    Tuple(u8, String),
    Struct { x: Inner },
}

#[derive(Serialize)]
struct Wrapper(Vec<Inner>);

#[derive(Serialize)]
struct Outer {
    inner: Inner,
    many: Wrapper,
    none: Option<Inner>,
    empty: Vec<Inner>,
    shapes: Vec<Shape>,
    map: BTreeMap<String, Inner>,
    owner: cairn_domain::PrincipalId,
    pair: (u8, [u8; 2]),
}

#[test]
fn the_walker_records_every_path() {
    let value = Outer {
        inner: Inner { a: 1, b: None },
        many: Wrapper(vec![Inner {
            a: 2,
            b: Some("x".into()),
        }]),
        none: None,
        empty: vec![],
        shapes: vec![
            Shape::Unit,
            Shape::Newtype(Inner { a: 3, b: None }),
            Shape::Tuple(4, "y".into()),
            Shape::Struct {
                x: Inner { a: 5, b: None },
            },
        ],
        map: BTreeMap::from([("k".to_owned(), Inner { a: 6, b: None })]),
        owner: principal("carol"),
        pair: (7, [8, 9]),
    };
    let fields = walk(&value, "");
    let set =
        |paths: &[&str]| -> BTreeSet<String> { paths.iter().map(|p| p.to_string()).collect() };
    assert_eq!(
        fields.present,
        set(&[
            "inner.a",
            "many.a",
            "many.b",
            "shapes",
            "shapes.a",
            "shapes.x.a",
            "map.<key>",
            "map.a",
            "owner",
            "pair",
        ])
    );
    assert_eq!(
        fields.absent,
        set(&[
            "inner.b",
            "none",
            "empty",
            "shapes.b",
            "shapes.x.b",
            "map.b"
        ])
    );
    assert_eq!(fields.principals, set(&["owner"]));
    // At the root, a variant's name is the event type, not a field.
    assert!(walk(&Shape::Unit, "").present.is_empty());
    assert_eq!(
        walk(&Shape::Newtype(Inner { a: 1, b: None }), "").present,
        set(&["a"])
    );
    assert_eq!(walk(&Shape::Tuple(1, "z".into()), "").present, set(&[]));
}

// ---------------------------------------------------------------------------------------------
// The events.

/// The clear part of an event, as `Event::encode` encodes it.
fn clear_fields(event: &Event) -> (Fields, Vec<u8>) {
    fn both<T: Serialize>(value: &T) -> (Fields, Vec<u8>) {
        (walk(value, ""), postcard::to_stdvec(value).unwrap())
    }
    match event {
        Event::Feedback(event) => both(event),
        Event::Signal(event) => both(event),
        Event::Opportunity(event) => both(event),
        Event::Decision(event) => both(event),
        Event::Initiative(event) => both(event),
    }
}

/// The personal part of an event, as `Event::encode` encodes it: a received feedback item's
/// content, at its field's path.
fn personal_fields(event: &Event) -> Option<(Fields, Vec<u8>)> {
    match event {
        Event::Feedback(FeedbackEvent::Received {
            content: Personal::Present(content),
            ..
        }) => Some((
            walk::<FeedbackContent>(content, "content"),
            postcard::to_stdvec(content).unwrap(),
        )),
        _ => None,
    }
}

/// Samples that fill what the shared samples leave empty: signal evidence (with percentiles)
/// and segments on duplicates' votes, percentiles on attached evidence, people informed of a
/// decision.
fn filling_samples() -> Vec<Event> {
    let full = || {
        let mut observation = observation("build_latency_ms", 2400.0, day(2));
        observation.measurement.percentiles = Some(Percentiles {
            p50: 1.0,
            p95: 2.0,
            p99: 3.0,
        });
        signal_evidence("s-7", observation, day(3))
    };
    let informed = || DecisionContent {
        informed: vec![principal("frank")],
        ..decision_content(&["dave"])
    };
    let segment_vote = || VoteRecord {
        segment: Some("mobile".into()),
        ..vote("bob", 2, day(3))
    };
    vec![
        Event::Opportunity(OpportunityEvent::MarkedDuplicate {
            canonical: id("o-2"),
            evidence: vec![full()],
            votes: vec![segment_vote()],
        }),
        Event::Opportunity(OpportunityEvent::DuplicateAbsorbed {
            duplicate: id("o-3"),
            evidence: vec![full()],
            votes: vec![segment_vote()],
        }),
        Event::Opportunity(OpportunityEvent::EvidenceAttached(full())),
        Event::Decision(DecisionEvent::Proposed {
            id: id("d-1"),
            content: informed(),
            proposed_at: day(5),
        }),
        Event::Decision(DecisionEvent::Revised(informed())),
    ]
}

/// Governance samples that fill what the shared ones leave out: an erasure by retention rule.
fn filling_governance_samples() -> Vec<GovernanceEvent> {
    vec![GovernanceEvent::DataErased {
        key_id: [5; 16],
        subject: None,
        cause: ErasureCause::Retention {
            rule: "p, acme, personal, 365".into(),
            class: "personal".into(),
            days: 365,
            last_sealed_micros: 7,
        },
        records: 2,
    }]
}

/// Every event type's fields, clear and personal parts together, over every sample.
fn fields_by_type() -> BTreeMap<&'static str, Fields> {
    samples::every_variant_has_a_sample();
    samples::every_governance_variant_has_a_sample();
    let mut by_type: BTreeMap<&'static str, Fields> = BTreeMap::new();
    for event in samples::all().into_iter().chain(filling_samples()) {
        let entry = by_type.entry(event.event_type()).or_default();
        entry.merge(clear_fields(&event).0);
        if let Some((fields, _)) = personal_fields(&event) {
            entry.merge(fields);
        }
    }
    for event in samples::governance()
        .into_iter()
        .chain(filling_governance_samples())
    {
        by_type
            .entry(event.event_type())
            .or_default()
            .merge(walk(&event, ""));
    }
    by_type
}

#[test]
fn every_event_type_has_a_table_and_every_table_an_event_type() {
    let sampled: BTreeSet<&str> = fields_by_type().into_keys().collect();
    let tabled: BTreeSet<&str> = privacy::event_types().collect();
    assert_eq!(sampled, tabled);
    assert_eq!(
        tabled.len(),
        samples::VARIANTS + samples::governance().len()
    );
}

#[test]
fn every_field_has_a_class_and_every_class_a_field() {
    let mut problems = Vec::new();
    for (event_type, fields) in fields_by_type() {
        let Some(table) = privacy::field_classes(event_type) else {
            problems.push(format!("{event_type}: no table"));
            continue;
        };
        let tabled: BTreeSet<&str> = table.iter().map(|field| field.path).collect();
        for path in &fields.present {
            if !tabled.contains(path.as_str()) {
                problems.push(format!("{event_type}: field {path:?} has no class"));
            }
        }
        for path in &fields.absent {
            let prefix = format!("{path}.");
            if !tabled.contains(path.as_str()) && !tabled.iter().any(|t| t.starts_with(&prefix)) {
                problems.push(format!("{event_type}: field {path:?} has no class"));
            }
        }
        let met = fields.met();
        for path in &tabled {
            if !met.contains(*path) {
                problems.push(format!(
                    "{event_type}: {path:?} is classed but is no field (or no sample fills it)"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn sealed_classes_are_exactly_the_personal_part() {
    let mut personal_paths: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for event in samples::all().into_iter().chain(filling_samples()) {
        let event_type = event.event_type();
        let encoded = event.encode();
        let (clear, clear_bytes) = clear_fields(&event);
        assert_eq!(
            encoded.clear, clear_bytes,
            "{event_type}: the walk is the clear part"
        );
        for path in clear.met() {
            let class = privacy::field_class(event_type, &path).map(|f| f.class);
            assert!(
                !class.is_some_and(DataClass::requires_sealing),
                "{event_type}: {path} is in the clear but classed {class:?}"
            );
        }
        let paths = personal_paths.entry(event_type).or_default();
        match (personal_fields(&event), &encoded.personal) {
            (Some((fields, bytes)), Some(part)) => {
                assert_eq!(
                    part.bytes, bytes,
                    "{event_type}: the walk is the personal part"
                );
                paths.extend(fields.met());
            }
            (None, None) => {}
            (walked, encoded) => panic!(
                "{event_type}: walked a personal part: {}, encode() made one: {}",
                walked.is_some(),
                encoded.is_some()
            ),
        }
    }
    for (event_type, paths) in personal_paths {
        let sealed: BTreeSet<String> = privacy::field_classes(event_type)
            .unwrap()
            .iter()
            .filter(|field| field.class.requires_sealing())
            .map(|field| field.path.to_owned())
            .collect();
        assert_eq!(
            sealed, paths,
            "{event_type}: sealed classes vs personal part"
        );
    }
    for event in samples::governance() {
        // Only the subject of a hold or an erasure is sealed (under the subject's own key).
        let classes = privacy::field_classes(event.event_type()).unwrap();
        let sealed: Vec<&str> = classes
            .iter()
            .filter(|field| field.class.requires_sealing())
            .map(|field| field.path)
            .collect();
        let expected: Vec<&str> = event
            .personal_subject()
            .map(|_| "subject")
            .into_iter()
            .collect();
        assert_eq!(sealed, expected, "{}", event.event_type());
    }
    assert_eq!(
        privacy::identifying_paths("feedback.received").unwrap(),
        ["content.submitter"]
    );
}

/// Governance events hold principals as text: the fields the walk cannot recognise by type.
const TEXT_PRINCIPALS: &[(&str, &str)] = &[
    ("access.granted", "principal"),
    ("access.revoked", "principal"),
    ("access.denied", "principal"),
    ("access.denied.repeated", "principal"),
    ("legal_hold.placed", "subject"),
    ("data.erased", "subject"),
];

#[test]
fn exactly_the_principal_fields_identify() {
    for (event_type, fields) in fields_by_type() {
        let mut expected = fields.principals.clone();
        for (text_type, path) in TEXT_PRINCIPALS {
            if *text_type == event_type {
                expected.insert((*path).to_owned());
            }
        }
        let flagged: BTreeSet<String> = privacy::identifying_paths(event_type)
            .unwrap()
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(flagged, expected, "{event_type}: identifying fields");
    }
}

#[test]
fn the_payload_class_is_the_envelope_class_the_service_records() {
    for event in samples::all() {
        let expected = if event.encode().personal.is_some() {
            DataClass::Personal
        } else {
            DataClass::Public
        };
        assert_eq!(
            privacy::payload_class(event.event_type()),
            Some(expected),
            "{}",
            event.event_type()
        );
    }
    for event in samples::governance() {
        let expected = if event.personal_subject().is_some() {
            DataClass::Personal
        } else {
            DataClass::Internal
        };
        assert_eq!(
            privacy::payload_class(event.event_type()),
            Some(expected),
            "{}",
            event.event_type()
        );
    }
}
