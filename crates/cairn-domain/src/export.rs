//! Events as JSON for analysis: every field that names a principal replaced by its keyed
//! pseudonym ([`crate::pseudonym`]), every personal or sensitive field left out. Field paths
//! follow [`crate::privacy`]: dotted from the event's own variant; options, sequences and
//! single-value wrappers add nothing; a nested enum's variant sits at its field's path.
//!
//! The JSON is serde's externally tagged shape (a unit variant is its name, any other variant an
//! object with one key); bytes are lowercase hex.

use std::fmt::Write as _;

use serde::Serialize;
use serde::ser;

use crate::Event;
use crate::governance::GovernanceEvent;
use crate::privacy;
use crate::pseudonym::{PseudonymKey, pseudonym};

/// Why an event could not be exported (only a type without a privacy table, which a test rules
/// out for every published type).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExportError(String);

impl ser::Error for ExportError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        ExportError(message.to_string())
    }
}

/// The JSON of a domain event, pseudonymised for `tenant` under `key`.
pub fn event_json(event: &Event, key: &PseudonymKey, tenant: &str) -> Result<String, ExportError> {
    let event_type = event.event_type();
    match event {
        Event::Feedback(inner) => to_json(inner, event_type, key, tenant),
        Event::Signal(inner) => to_json(inner, event_type, key, tenant),
        Event::Opportunity(inner) => to_json(inner, event_type, key, tenant),
        Event::Decision(inner) => to_json(inner, event_type, key, tenant),
        Event::Initiative(inner) => to_json(inner, event_type, key, tenant),
    }
}

/// The JSON of a governance event, pseudonymised for `tenant` under `key`.
pub fn governance_json(
    event: &GovernanceEvent,
    key: &PseudonymKey,
    tenant: &str,
) -> Result<String, ExportError> {
    to_json(event, event.event_type(), key, tenant)
}

fn to_json<T: Serialize>(
    value: &T,
    event_type: &str,
    key: &PseudonymKey,
    tenant: &str,
) -> Result<String, ExportError> {
    let identifying = privacy::identifying_paths(event_type)
        .ok_or_else(|| ExportError(format!("{event_type} has no privacy table")))?;
    let context = Context {
        event_type,
        identifying,
        key,
        tenant,
    };
    let mut out = String::new();
    value.serialize(Writer {
        context: &context,
        out: &mut out,
        path: String::new(),
    })?;
    Ok(out)
}

struct Context<'a> {
    event_type: &'a str,
    identifying: Vec<&'static str>,
    key: &'a PseudonymKey,
    tenant: &'a str,
}

impl Context<'_> {
    fn sealed(&self, path: &str) -> bool {
        privacy::field_class(self.event_type, path)
            .is_some_and(|class| class.class.requires_sealing())
    }

    fn identifies(&self, path: &str) -> bool {
        self.identifying.contains(&path)
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn quote(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Writer<'a> {
    context: &'a Context<'a>,
    out: &'a mut String,
    path: String,
}

impl<'a> Writer<'a> {
    fn raw(self, text: &str) -> Result<(), ExportError> {
        self.out.push_str(text);
        Ok(())
    }

    fn compound(self, open: char, close: &'static str, variant: Option<&str>) -> Compound<'a> {
        let wrapped = variant.is_some();
        if let Some(variant) = variant {
            self.out.push('{');
            quote(self.out, variant);
            self.out.push(':');
        }
        self.out.push(open);
        Compound {
            context: self.context,
            out: self.out,
            path: self.path,
            first: true,
            close,
            wrapped,
        }
    }
}

macro_rules! numbers {
    ($($method:ident: $type:ty),* $(,)?) => {
        $(fn $method(self, value: $type) -> Result<(), ExportError> {
            self.raw(&value.to_string())
        })*
    };
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = ExportError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    numbers!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128,
    );

    fn serialize_bool(self, value: bool) -> Result<(), ExportError> {
        self.raw(if value { "true" } else { "false" })
    }

    fn serialize_f32(self, value: f32) -> Result<(), ExportError> {
        self.serialize_f64(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), ExportError> {
        if value.is_finite() {
            self.raw(&value.to_string())
        } else {
            self.raw("null")
        }
    }

    fn serialize_char(self, value: char) -> Result<(), ExportError> {
        self.serialize_str(&value.to_string())
    }

    fn serialize_str(self, value: &str) -> Result<(), ExportError> {
        if self.context.identifies(&self.path) {
            let alias = pseudonym(self.context.key, self.context.tenant, value);
            quote(self.out, &alias);
        } else {
            quote(self.out, value);
        }
        Ok(())
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<(), ExportError> {
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        quote(self.out, &hex);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), ExportError> {
        self.raw("null")
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), ExportError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), ExportError> {
        self.raw("null")
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), ExportError> {
        self.raw("null")
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), ExportError> {
        quote(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), ExportError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), ExportError> {
        self.out.push('{');
        quote(self.out, variant);
        self.out.push(':');
        value.serialize(Writer {
            context: self.context,
            out: self.out,
            path: self.path,
        })?;
        self.out.push('}');
        Ok(())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, ExportError> {
        Ok(self.compound('[', "]", None))
    }

    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, ExportError> {
        Ok(self.compound('[', "]", None))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, ExportError> {
        Ok(self.compound('[', "]", None))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, ExportError> {
        Ok(self.compound('[', "]", Some(variant)))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, ExportError> {
        Ok(self.compound('{', "}", None))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, ExportError> {
        Ok(self.compound('{', "}", None))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, ExportError> {
        Ok(self.compound('{', "}", Some(variant)))
    }
}

struct Compound<'a> {
    context: &'a Context<'a>,
    out: &'a mut String,
    path: String,
    first: bool,
    close: &'static str,
    wrapped: bool,
}

impl Compound<'_> {
    fn separator(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ExportError> {
        self.separator();
        value.serialize(Writer {
            context: self.context,
            out: self.out,
            path: self.path.clone(),
        })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), ExportError> {
        let path = join(&self.path, key);
        if self.context.sealed(&path) {
            return Ok(());
        }
        self.separator();
        quote(self.out, key);
        self.out.push(':');
        value.serialize(Writer {
            context: self.context,
            out: self.out,
            path,
        })
    }

    fn finish(self) -> Result<(), ExportError> {
        self.out.push_str(self.close);
        if self.wrapped {
            self.out.push('}');
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = ExportError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ExportError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ExportError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = ExportError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ExportError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ExportError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = ExportError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ExportError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ExportError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = ExportError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ExportError> {
        self.element(value)
    }
    fn end(self) -> Result<(), ExportError> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = ExportError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ExportError> {
        self.separator();
        // JSON keys are strings: a key is written as text whatever its type.
        let mut text = String::new();
        key.serialize(Writer {
            context: self.context,
            out: &mut text,
            path: join(&self.path, "<key>"),
        })?;
        if text.starts_with('"') {
            self.out.push_str(&text);
        } else {
            quote(self.out, &text);
        }
        self.out.push(':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ExportError> {
        value.serialize(Writer {
            context: self.context,
            out: self.out,
            path: self.path.clone(),
        })
    }
    fn end(self) -> Result<(), ExportError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = ExportError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ExportError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), ExportError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = ExportError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ExportError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), ExportError> {
        self.finish()
    }
}
