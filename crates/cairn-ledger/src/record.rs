use crate::envelope::Envelope;
use crate::error::LedgerError;
use crate::ids::{Hash, Position};
use crate::limits;
use crate::merkle::leaf_hash;

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
    /// Builds a record from an envelope whose commitment and length must match `payload`.
    pub fn new(envelope: Envelope, payload: Vec<u8>) -> Result<Record, LedgerError> {
        let envelope_bytes = envelope.encode()?;
        let record = Record {
            envelope,
            envelope_bytes,
            payload,
        };
        record.check_payload()?;
        Ok(record)
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
        Ok(())
    }
}
