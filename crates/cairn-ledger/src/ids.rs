use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::limits;

/// A record's place in the ledger. Positions start at 1, are gapless and never reused, so the
/// position of the newest record is also the size of the Merkle tree that contains it; the leaf
/// index of position `p` is `p - 1`. Position 0 means "before the first record".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position(pub u64);

impl Position {
    /// The position before the first record (an empty ledger's head).
    pub const ZERO: Position = Position(0);

    /// The position after this one.
    pub fn next(self) -> Position {
        Position(self.0 + 1)
    }

    /// The 0-based leaf index of this record in the Merkle tree, or `None` for [`Position::ZERO`].
    pub fn leaf_index(self) -> Option<u64> {
        self.0.checked_sub(1)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The number of events in one stream up to and including a given event. The first event of a
/// stream has version 1; version 0 means the stream has no events.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct StreamVersion(pub u64);

impl StreamVersion {
    /// The version of a stream with no events.
    pub const NONE: StreamVersion = StreamVersion(0);

    /// The version after this one.
    pub fn next(self) -> StreamVersion {
        StreamVersion(self.0 + 1)
    }
}

impl fmt::Display for StreamVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Microseconds since the Unix epoch, UTC.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64);

/// A 32-byte blake3 digest: leaf and node hashes, roots, payload commitments, policy bundle hashes.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, used where no policy bundle was in force.
    pub const ZERO: Hash = Hash([0; 32]);

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Hash, LedgerError> {
        parse_hex_array(text, "hash").map(Hash)
    }

    /// Copies a 32-byte slice.
    pub fn from_slice(bytes: &[u8], field: &'static str) -> Result<Hash, LedgerError> {
        array_from_slice(bytes, field).map(Hash)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A 16-byte event id. Supplied by the caller (or generated for it) and the key of idempotency:
/// the ledger records one event per id, for ever.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub [u8; 16]);

impl EventId {
    /// Lowercase hex (32 digits).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(text: &str) -> Result<EventId, LedgerError> {
        parse_hex_array(text, "event_id").map(EventId)
    }

    /// Copies a 16-byte slice.
    pub fn from_slice(bytes: &[u8], field: &'static str) -> Result<EventId, LedgerError> {
        array_from_slice(bytes, field).map(EventId)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.to_hex())
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The id of a data key in a key store. Destroying the key erases every payload sealed under it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// Lowercase hex (32 digits).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(text: &str) -> Result<KeyId, LedgerError> {
        parse_hex_array(text, "key_id").map(KeyId)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A tenant: an organisation or business unit, the casbin domain. 1 to
/// [`limits::TENANT_ID_BYTES_MAX`] bytes of `[a-z0-9._-]`, starting with a letter or digit, so it
/// can never contain casbin's `::` separator or collide with a path or subject.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TenantId(String);

impl TenantId {
    /// Validates and wraps a tenant id.
    pub fn new(text: impl Into<String>) -> Result<TenantId, LedgerError> {
        let text = text.into();
        validate_tenant(&text)?;
        Ok(TenantId(text))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a tenant id's length and alphabet without taking ownership of it.
fn validate_tenant(text: &str) -> Result<(), LedgerError> {
    check_len("tenant", text.len(), limits::TENANT_ID_BYTES_MAX)?;
    let first_ok = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let all_ok = text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !first_ok || !all_ok {
        return Err(LedgerError::InvalidField {
            field: "tenant",
            reason: format!("{text:?} must be [a-z0-9._-] and start with a letter or digit"),
        });
    }
    Ok(())
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One aggregate's stream of events: the unit of optimistic concurrency (stream versions).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId {
    /// The tenant that owns the aggregate.
    pub tenant: TenantId,
    /// The kind of aggregate (`feedback`, `opportunity`, ...): `[a-z0-9_.-]`, 1 to
    /// [`limits::AGGREGATE_TYPE_BYTES_MAX`] bytes.
    pub aggregate_type: String,
    /// The aggregate's id within its tenant and type: printable ASCII without spaces or `/`,
    /// 1 to [`limits::AGGREGATE_ID_BYTES_MAX`] bytes.
    pub aggregate_id: String,
}

impl StreamId {
    /// Validates and builds a stream id.
    pub fn new(
        tenant: TenantId,
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
    ) -> Result<StreamId, LedgerError> {
        let stream = StreamId {
            tenant,
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
        };
        stream.validate()?;
        Ok(stream)
    }

    /// Checks every part against its limit and alphabet (the tenant is valid by construction,
    /// except after decoding, so it is checked again).
    pub fn validate(&self) -> Result<(), LedgerError> {
        validate_tenant(&self.tenant.0)?;
        check_len(
            "aggregate_type",
            self.aggregate_type.len(),
            limits::AGGREGATE_TYPE_BYTES_MAX,
        )?;
        if !self
            .aggregate_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(LedgerError::InvalidField {
                field: "aggregate_type",
                reason: format!("{:?} must be [a-z0-9._-]", self.aggregate_type),
            });
        }
        check_len(
            "aggregate_id",
            self.aggregate_id.len(),
            limits::AGGREGATE_ID_BYTES_MAX,
        )?;
        if !self
            .aggregate_id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/')
        {
            return Err(LedgerError::InvalidField {
                field: "aggregate_id",
                reason: format!(
                    "{:?} must be printable ASCII without spaces or '/'",
                    self.aggregate_id
                ),
            });
        }
        Ok(())
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.tenant, self.aggregate_type, self.aggregate_id
        )
    }
}

/// Checks that a non-empty field is at most `max` bytes long.
pub(crate) fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), LedgerError> {
    if len == 0 {
        return Err(LedgerError::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    if len > max {
        return Err(LedgerError::LimitExceeded {
            field,
            limit: max as u64,
            actual: len as u64,
        });
    }
    Ok(())
}

fn parse_hex_array<const N: usize>(
    text: &str,
    field: &'static str,
) -> Result<[u8; N], LedgerError> {
    let bytes = hex::decode(text).map_err(|error| LedgerError::InvalidField {
        field,
        reason: format!("not hex: {error}"),
    })?;
    array_from_slice(&bytes, field)
}

fn array_from_slice<const N: usize>(
    bytes: &[u8],
    field: &'static str,
) -> Result<[u8; N], LedgerError> {
    bytes.try_into().map_err(|_| LedgerError::InvalidField {
        field,
        reason: format!("must be {N} bytes, got {}", bytes.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_refuse_separators_and_bad_alphabet() {
        for bad in ["", "a::b", "Acme", "-acme", "acme corp", &"a".repeat(65)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["acme", "acme-eu.1", "0x", &"a".repeat(64)] {
            assert!(TenantId::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn stream_ids_check_every_part() {
        let tenant = TenantId::new("acme").unwrap();
        assert!(StreamId::new(tenant.clone(), "feedback", "f-1").is_ok());
        assert!(StreamId::new(tenant.clone(), "Feedback", "f-1").is_err());
        assert!(StreamId::new(tenant.clone(), "feedback", "a/b").is_err());
        assert!(StreamId::new(tenant.clone(), "feedback", "a b").is_err());
        assert!(StreamId::new(tenant, "feedback", "").is_err());
    }

    #[test]
    fn positions_map_to_leaf_indices() {
        assert_eq!(Position::ZERO.leaf_index(), None);
        assert_eq!(Position(1).leaf_index(), Some(0));
        assert_eq!(Position(7).next(), Position(8));
    }
}
