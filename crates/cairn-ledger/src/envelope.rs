use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::ids::{EventId, Hash, KeyId, Position, StreamId, StreamVersion, Timestamp, check_len};
use crate::limits;

/// The envelope format this build writes. A published format is never edited: a change is a new
/// version, and `tests/golden/` keeps one encoded sample of every version, decoded by a test.
pub const ENVELOPE_FORMAT_V1: u16 = 1;

/// How sensitive the most sensitive field of a payload is. Decides whether a payload has a sealed
/// part and which retention rules apply. Encoded as its variant index; new classes are appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DataClass {
    /// Anyone in the tenant may read it.
    Public,
    /// Internal to the organisation; no personal data.
    Internal,
    /// Personal data: sealed under a data key, redacted for readers without the right to it.
    Personal,
    /// Sensitive personal data: sealed, and kept for the shortest retention.
    Sensitive,
}

impl DataClass {
    /// Whether payloads of this class must carry their personal part sealed under a data key.
    pub fn requires_sealing(self) -> bool {
        matches!(self, DataClass::Personal | DataClass::Sensitive)
    }

    /// The name used in the API and in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Public => "public",
            DataClass::Internal => "internal",
            DataClass::Personal => "personal",
            DataClass::Sensitive => "sensitive",
        }
    }

    /// Parses the API name.
    pub fn parse(text: &str) -> Result<DataClass, LedgerError> {
        match text {
            "public" => Ok(DataClass::Public),
            "internal" => Ok(DataClass::Internal),
            "personal" => Ok(DataClass::Personal),
            "sensitive" => Ok(DataClass::Sensitive),
            other => Err(LedgerError::InvalidField {
                field: "data_class",
                reason: format!("{other:?} is not one of public, internal, personal, sensitive"),
            }),
        }
    }
}

/// One lineage edge from the event's subject to what it came from: "this event's aggregate
/// `relation` the aggregate of `target`" (for example `evidence_for`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LineageParent {
    /// The relation name (`evidence_for`, `decided_by`, ...), 1 to
    /// [`limits::RELATION_BYTES_MAX`] bytes of `[a-z_]`.
    pub relation: String,
    /// The stream of the aggregate the edge points to.
    pub target: StreamId,
}

/// The part of a record that is hashed into the Merkle tree. It never holds personal data, so it
/// stays readable and verifiable after every key is destroyed.
///
/// Field order is the encoding order (postcard): do not reorder, insert or remove fields; define
/// a new format version instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The envelope format version, first so a decoder can dispatch on it.
    pub format_version: u16,
    /// Where the record stands in the ledger; makes every leaf unique and binds it to its place.
    pub position: Position,
    /// The aggregate the event belongs to.
    pub stream: StreamId,
    /// The event's version in its stream, for optimistic concurrency and stream reads.
    pub stream_version: StreamVersion,
    /// Caller-supplied id; the ledger keeps one event per id for ever (idempotency).
    pub event_id: EventId,
    /// The event's type name, so readers can decode the payload.
    pub event_type: String,
    /// The schema version of the payload for that type (postcard is not self-describing).
    pub event_schema_version: u16,
    /// When the store recorded it (set by the store, not the caller).
    pub recorded_at: Timestamp,
    /// The principal who caused the event (a stable id, never an email).
    pub actor: String,
    /// The event that directly caused this one, if any.
    pub causation_id: Option<EventId>,
    /// The id that ties together everything done for one request or workflow.
    pub correlation_id: Option<EventId>,
    /// What the subject came from: lineage edges recorded with the event.
    pub lineage: Vec<LineageParent>,
    /// The most sensitive class of data in the payload.
    pub data_class: DataClass,
    /// The data key the payload's personal part is sealed under, if it has one.
    pub key_id: Option<KeyId>,
    /// blake3 of the sealed payload bytes: binds the payload to the tree without putting it in.
    pub payload_commitment: Hash,
    /// Length of the sealed payload, so a reader can bound what it reads before hashing.
    pub payload_len: u32,
    /// Hash of the policy bundle in force when the event was recorded.
    pub policy_bundle_hash: Hash,
}

impl Envelope {
    /// Checks every field against the limits of the format.
    pub fn validate(&self) -> Result<(), LedgerError> {
        if self.format_version != ENVELOPE_FORMAT_V1 {
            return Err(LedgerError::UnsupportedVersion {
                what: "envelope",
                found: self.format_version,
            });
        }
        if self.position == Position::ZERO {
            return Err(LedgerError::InvalidField {
                field: "position",
                reason: "positions start at 1".into(),
            });
        }
        if self.stream_version == StreamVersion::NONE {
            return Err(LedgerError::InvalidField {
                field: "stream_version",
                reason: "stream versions start at 1".into(),
            });
        }
        self.stream.validate()?;
        validate_event_fields(&self.event_type, &self.actor, &self.lineage)?;
        if self.payload_len as usize > limits::PAYLOAD_BYTES_MAX {
            return Err(LedgerError::LimitExceeded {
                field: "payload",
                limit: limits::PAYLOAD_BYTES_MAX as u64,
                actual: u64::from(self.payload_len),
            });
        }
        if self.data_class.requires_sealing() != self.key_id.is_some() {
            return Err(LedgerError::InvalidField {
                field: "key_id",
                reason: format!(
                    "data class {} {} a data key",
                    self.data_class.as_str(),
                    if self.data_class.requires_sealing() {
                        "requires"
                    } else {
                        "must not name"
                    }
                ),
            });
        }
        Ok(())
    }

    /// The canonical encoding: postcard, fields in declaration order. This is the leaf's input.
    pub fn encode(&self) -> Result<Vec<u8>, LedgerError> {
        self.validate()?;
        postcard::to_allocvec(self).map_err(|error| LedgerError::Decode {
            what: "envelope",
            reason: format!("encode: {error}"),
        })
    }

    /// Decodes an envelope, refusing unknown versions, trailing bytes, non-canonical encodings
    /// (so one envelope has exactly one byte string, and one leaf hash) and invalid fields.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, LedgerError> {
        if bytes.len() > limits::ENVELOPE_BYTES_MAX {
            return Err(LedgerError::LimitExceeded {
                field: "envelope",
                limit: limits::ENVELOPE_BYTES_MAX as u64,
                actual: bytes.len() as u64,
            });
        }
        let (version, _) =
            postcard::take_from_bytes::<u16>(bytes).map_err(|error| LedgerError::Decode {
                what: "envelope",
                reason: error.to_string(),
            })?;
        if version != ENVELOPE_FORMAT_V1 {
            return Err(LedgerError::UnsupportedVersion {
                what: "envelope",
                found: version,
            });
        }
        let (envelope, rest) =
            postcard::take_from_bytes::<Envelope>(bytes).map_err(|error| LedgerError::Decode {
                what: "envelope",
                reason: error.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(LedgerError::Decode {
                what: "envelope",
                reason: format!("{} trailing bytes", rest.len()),
            });
        }
        envelope.validate()?;
        // postcard rejects bad bool and option tags and overflowing varint bits, so the only
        // non-canonical form it accepts is an over-long varint, which is always longer: the input
        // is canonical if and only if it is as long as the encoding of what it decodes to.
        if crate::record::encoded_len(&envelope) != Some(bytes.len()) {
            return Err(LedgerError::NonCanonical { what: "envelope" });
        }
        Ok(envelope)
    }
}

/// Checks the caller-supplied fields of an event against the format's limits. Shared by envelope
/// validation and by stores, which check a batch before they assign positions.
pub fn validate_event_fields(
    event_type: &str,
    actor: &str,
    lineage: &[LineageParent],
) -> Result<(), LedgerError> {
    check_len("event_type", event_type.len(), limits::EVENT_TYPE_BYTES_MAX)?;
    if !event_type
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(LedgerError::InvalidField {
            field: "event_type",
            reason: format!("{event_type:?} must be [A-Za-z0-9._-]"),
        });
    }
    check_len("actor", actor.len(), limits::ACTOR_BYTES_MAX)?;
    if actor.chars().any(char::is_control) {
        return Err(LedgerError::InvalidField {
            field: "actor",
            reason: "must not contain control characters".into(),
        });
    }
    if lineage.len() > limits::LINEAGE_PARENTS_MAX {
        return Err(LedgerError::LimitExceeded {
            field: "lineage",
            limit: limits::LINEAGE_PARENTS_MAX as u64,
            actual: lineage.len() as u64,
        });
    }
    for parent in lineage {
        check_len(
            "lineage.relation",
            parent.relation.len(),
            limits::RELATION_BYTES_MAX,
        )?;
        if !parent
            .relation
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(LedgerError::InvalidField {
                field: "lineage.relation",
                reason: format!("{:?} must be [a-z_]", parent.relation),
            });
        }
        parent.target.validate()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;

    pub(crate) fn sample() -> Envelope {
        let tenant = TenantId::new("acme").unwrap();
        Envelope {
            format_version: ENVELOPE_FORMAT_V1,
            position: Position(42),
            stream: StreamId::new(tenant.clone(), "feedback", "fb-7").unwrap(),
            stream_version: StreamVersion(3),
            event_id: EventId([7; 16]),
            event_type: "FeedbackReceived".into(),
            event_schema_version: 1,
            recorded_at: Timestamp(1_700_000_000_000_000),
            actor: "svc:survey-importer".into(),
            causation_id: Some(EventId([1; 16])),
            correlation_id: None,
            lineage: vec![LineageParent {
                relation: "evidence_for".into(),
                target: StreamId::new(tenant, "opportunity", "op-1").unwrap(),
            }],
            data_class: DataClass::Personal,
            key_id: Some(KeyId([9; 16])),
            payload_commitment: Hash([5; 32]),
            payload_len: 300,
            policy_bundle_hash: Hash([6; 32]),
        }
    }

    #[test]
    fn round_trips_canonically() {
        let envelope = sample();
        let bytes = envelope.encode().unwrap();
        assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
    }

    #[test]
    fn refuses_trailing_bytes_and_unknown_versions() {
        let mut bytes = sample().encode().unwrap();
        bytes.push(0);
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(LedgerError::Decode { .. })
        ));
        let mut bytes = sample().encode().unwrap();
        bytes[0] = 2;
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(LedgerError::UnsupportedVersion { found: 2, .. })
        ));
    }

    #[test]
    fn refuses_non_canonical_varints() {
        // position 42 is the second field: re-encode it as a two-byte varint (0xaa 0x00).
        let bytes = sample().encode().unwrap();
        assert_eq!(bytes[1], 42);
        let mut padded = vec![bytes[0], 42 | 0x80, 0x00];
        padded.extend_from_slice(&bytes[2..]);
        assert!(matches!(
            Envelope::decode(&padded),
            Err(LedgerError::NonCanonical { .. })
        ));
    }

    #[test]
    fn personal_data_needs_a_key_and_public_data_must_not_name_one() {
        let mut envelope = sample();
        envelope.key_id = None;
        assert!(envelope.validate().is_err());
        let mut envelope = sample();
        envelope.data_class = DataClass::Public;
        assert!(envelope.validate().is_err());
    }
}
