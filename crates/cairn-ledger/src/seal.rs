//! Sealing the personal part of a payload under a data key (XChaCha20-Poly1305), so destroying
//! the key erases it while the sealed bytes, and every hash over them, stay.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::ids::{EventId, KeyId};
use crate::limits;

/// Start of the AEAD associated data; the event id and key id follow, so a sealed part cannot be
/// moved to another event or presented as sealed under another key.
const SEAL_AD_PREFIX: &[u8] = b"cairn seal v1";

/// A 256-bit data key. Held by the key store; destroying it erases every part sealed under it.
#[derive(Clone)]
pub struct DataKey(pub [u8; 32]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The personal part of a payload, encrypted and authenticated under one data key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPart {
    /// The data key it is sealed under (also bound into the associated data).
    pub key_id: KeyId,
    /// The XChaCha20-Poly1305 nonce. Never reuse one under the same key for a different
    /// plaintext: the caller supplies it (random, or derived from the key, event id and
    /// plaintext), since this crate draws no randomness.
    pub nonce: [u8; 24],
    /// The ciphertext followed by the 16-byte Poly1305 tag.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// The payload of a record as stored and committed to: a clear part and, for personal data, a
/// sealed part. The envelope's payload commitment is over [`SealedPayload::encode`]'s bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPayload {
    /// The non-personal part, opaque to the ledger (the event's own encoding). As bytes, not a
    /// sequence: the same encoding (a varint length, then the bytes), decoded in one copy.
    #[serde(with = "serde_bytes")]
    pub clear: Vec<u8>,
    /// The personal part, sealed; `None` for payloads without personal data.
    pub sealed: Option<SealedPart>,
}

impl SealedPayload {
    /// The canonical encoding (postcard, fields in declaration order).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a sealed payload has only encodable fields")
    }

    /// Decodes a sealed payload, refusing oversized input, trailing bytes and non-canonical
    /// encodings (one payload has one byte string, and so one commitment).
    pub fn decode(bytes: &[u8]) -> Result<SealedPayload, LedgerError> {
        if bytes.len() > limits::PAYLOAD_BYTES_MAX {
            return Err(LedgerError::LimitExceeded {
                field: "payload",
                limit: limits::PAYLOAD_BYTES_MAX as u64,
                actual: bytes.len() as u64,
            });
        }
        let (payload, rest) =
            postcard::take_from_bytes::<SealedPayload>(bytes).map_err(|error| {
                LedgerError::Decode {
                    what: "sealed payload",
                    reason: error.to_string(),
                }
            })?;
        if !rest.is_empty() {
            return Err(LedgerError::Decode {
                what: "sealed payload",
                reason: format!("{} trailing bytes", rest.len()),
            });
        }
        // postcard accepts exactly one non-canonical form, an over-long varint, and it is always
        // longer: so the input is canonical if and only if it is as long as the encoding of what
        // it decodes to. This avoids re-encoding every payload read back.
        if crate::record::encoded_len(&payload) != Some(bytes.len()) {
            return Err(LedgerError::NonCanonical {
                what: "sealed payload",
            });
        }
        Ok(payload)
    }
}

/// The AEAD associated data: `b"cairn seal v1" || event_id (16 bytes) || key_id (16 bytes)`.
fn associated_data(event_id: &EventId, key_id: &KeyId) -> Vec<u8> {
    let mut ad = Vec::with_capacity(SEAL_AD_PREFIX.len() + 32);
    ad.extend_from_slice(SEAL_AD_PREFIX);
    ad.extend_from_slice(&event_id.0);
    ad.extend_from_slice(&key_id.0);
    ad
}

/// Seals `plaintext` (the personal part of the payload of event `event_id`) under `key`.
/// `nonce` must never have been used with this key for a different plaintext.
pub fn seal_personal(
    key_id: KeyId,
    key: &DataKey,
    nonce: [u8; 24],
    event_id: &EventId,
    plaintext: &[u8],
) -> SealedPart {
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let ad = associated_data(event_id, &key_id);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &ad,
            },
        )
        // Encryption fails only for messages near 256 GiB, far beyond any slice a payload
        // limit lets through.
        .expect("XChaCha20-Poly1305 encrypts any in-memory message");
    SealedPart {
        key_id,
        nonce,
        ciphertext,
    }
}

/// Opens a sealed part of the payload of event `event_id` with the data key it names.
pub fn open_sealed(
    part: &SealedPart,
    key: &DataKey,
    event_id: &EventId,
) -> Result<Vec<u8>, LedgerError> {
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let ad = associated_data(event_id, &part.key_id);
    cipher
        .decrypt(
            XNonce::from_slice(&part.nonce),
            Payload {
                msg: &part.ciphertext,
                aad: &ad,
            },
        )
        .map_err(|_| LedgerError::Unseal {
            reason: "wrong key, wrong event, or tampered ciphertext",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: DataKey = DataKey([7; 32]);
    const EVENT: EventId = EventId([1; 16]);
    const KEY_ID: KeyId = KeyId([2; 16]);

    fn sealed() -> SealedPart {
        seal_personal(KEY_ID, &KEY, [3; 24], &EVENT, b"alice@example.com")
    }

    #[test]
    fn round_trips() {
        let part = sealed();
        assert_eq!(part.ciphertext.len(), b"alice@example.com".len() + 16);
        assert_eq!(
            open_sealed(&part, &KEY, &EVENT).unwrap(),
            b"alice@example.com"
        );
    }

    #[test]
    fn wrong_key_fails() {
        let part = sealed();
        assert!(matches!(
            open_sealed(&part, &DataKey([8; 32]), &EVENT),
            Err(LedgerError::Unseal { .. })
        ));
    }

    #[test]
    fn wrong_event_fails() {
        let part = sealed();
        assert!(matches!(
            open_sealed(&part, &KEY, &EventId([9; 16])),
            Err(LedgerError::Unseal { .. })
        ));
    }

    #[test]
    fn relabelled_key_id_fails() {
        let mut part = sealed();
        part.key_id = KeyId([4; 16]);
        assert!(open_sealed(&part, &KEY, &EVENT).is_err());
    }

    #[test]
    fn any_flipped_bit_fails() {
        let part = sealed();
        for byte in 0..part.ciphertext.len() {
            for bit in 0..8 {
                let mut tampered = part.clone();
                tampered.ciphertext[byte] ^= 1 << bit;
                assert!(
                    open_sealed(&tampered, &KEY, &EVENT).is_err(),
                    "byte {byte} bit {bit}"
                );
            }
        }
        for byte in 0..24 {
            let mut tampered = part.clone();
            tampered.nonce[byte] ^= 1;
            assert!(
                open_sealed(&tampered, &KEY, &EVENT).is_err(),
                "nonce byte {byte}"
            );
        }
        let mut truncated = part.clone();
        truncated.ciphertext.pop();
        assert!(open_sealed(&truncated, &KEY, &EVENT).is_err());
    }

    #[test]
    fn payload_encoding_round_trips_and_refuses_trailing_bytes() {
        let payload = SealedPayload {
            clear: vec![1, 2, 3],
            sealed: Some(sealed()),
        };
        let bytes = payload.encode();
        assert_eq!(SealedPayload::decode(&bytes).unwrap(), payload);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            SealedPayload::decode(&longer),
            Err(LedgerError::Decode { .. })
        ));
        let clear_only = SealedPayload {
            clear: Vec::new(),
            sealed: None,
        };
        assert_eq!(clear_only.encode(), vec![0, 0]);
        assert_eq!(SealedPayload::decode(&[0, 0]).unwrap(), clear_only);
    }

    #[test]
    fn payload_decoding_refuses_non_canonical_lengths() {
        // `clear` of length 0 written as the two-byte varint 0x80 0x00.
        assert!(matches!(
            SealedPayload::decode(&[0x80, 0x00, 0x00]),
            Err(LedgerError::NonCanonical { .. })
        ));
        assert!(SealedPayload::decode(&[0x00, 0x00]).is_ok());
    }

    #[test]
    fn keys_do_not_print() {
        assert_eq!(format!("{:?}", DataKey([0x41; 32])), "DataKey(..)");
    }
}
