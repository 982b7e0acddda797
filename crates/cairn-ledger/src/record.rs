use crate::envelope::Envelope;
use crate::error::LedgerError;
use crate::ids::{Hash, KeyId, Position};
use crate::limits;
use crate::merkle::leaf_hash;
use crate::seal::SealedPayload;

/// The length of a value's postcard encoding, counted without writing it.
pub(crate) fn encoded_len<T: serde::Serialize>(value: &T) -> Option<usize> {
    postcard::serialize_with_flavor::<T, postcard::ser_flavors::Size, usize>(
        value,
        postcard::ser_flavors::Size::default(),
    )
    .ok()
}

/// The commitment an envelope makes to its payload: blake3 of the sealed payload bytes, domain
/// separated from leaf and node hashes by blake3's key-derivation mode.
pub fn payload_commitment(payload: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new_derive_key("cairn payload commitment v1");
    hasher.update(payload);
    Hash(*hasher.finalize().as_bytes())
}

/// One ledger record: the envelope (decoded, and the exact bytes that are hashed) and the sealed
/// payload it commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The decoded envelope.
    pub envelope: Envelope,
    /// The canonical encoding of `envelope`: the input of the leaf hash.
    pub envelope_bytes: Vec<u8>,
    /// The sealed payload (postcard [`crate::SealedPayload`] bytes).
    pub payload: Vec<u8>,
}

impl Record {
    /// Builds a record, setting the envelope's payload commitment and length from `payload`
    /// (whatever they were), so the two cannot disagree and the payload is hashed once.
    ///
    /// The sealed payload's structure is not decoded here: writers check it before they build
    /// records (`cairn_store::validate_append`), and [`Record::from_parts`] checks it on every
    /// read-back.
    pub fn new(mut envelope: Envelope, payload: Vec<u8>) -> Result<Record, LedgerError> {
        if payload.len() > limits::PAYLOAD_BYTES_MAX {
            return Err(LedgerError::LimitExceeded {
                field: "payload",
                limit: limits::PAYLOAD_BYTES_MAX as u64,
                actual: payload.len() as u64,
            });
        }
        envelope.payload_len = payload.len() as u32;
        envelope.payload_commitment = payload_commitment(&payload);
        let envelope_bytes = envelope.encode()?;
        Ok(Record {
            envelope,
            envelope_bytes,
            payload,
        })
    }

    /// Decodes a record read back from storage, checking the envelope and the payload commitment.
    pub fn from_parts(envelope_bytes: Vec<u8>, payload: Vec<u8>) -> Result<Record, LedgerError> {
        let envelope = Envelope::decode(&envelope_bytes)?;
        let record = Record {
            envelope,
            envelope_bytes,
            payload,
        };
        record.check_payload()?;
        Ok(record)
    }

    /// The record's position.
    pub fn position(&self) -> Position {
        self.envelope.position
    }

    /// The Merkle leaf hash of this record.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.envelope_bytes)
    }

    fn check_payload(&self) -> Result<(), LedgerError> {
        if self.payload.len() > limits::PAYLOAD_BYTES_MAX
            || self.payload.len() != self.envelope.payload_len as usize
            || payload_commitment(&self.payload) != self.envelope.payload_commitment
        {
            return Err(LedgerError::CommitmentMismatch {
                position: self.envelope.position,
            });
        }
        let sealed = SealedPayload::decode(&self.payload)?;
        check_sealed_key(self.envelope.key_id, &sealed)
    }
}

/// Checks that a payload's sealed part is under the key its envelope names (and that a payload
/// without a sealed part names none). Erasure destroys the key the envelope names; a sealed part
/// under any other key would survive it.
pub fn check_sealed_key(
    envelope_key: Option<KeyId>,
    sealed: &SealedPayload,
) -> Result<(), LedgerError> {
    let sealed_key = sealed.sealed.as_ref().map(|part| part.key_id);
    if sealed_key != envelope_key {
        return Err(LedgerError::InvalidField {
            field: "key_id",
            reason: format!(
                "the envelope names key {} but the payload is sealed under {}",
                envelope_key.map_or_else(|| "none".to_owned(), |key| key.to_hex()),
                sealed_key.map_or_else(|| "none".to_owned(), |key| key.to_hex())
            ),
        });
    }
    Ok(())
}
