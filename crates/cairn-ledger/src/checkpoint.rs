//! Signed checkpoints: a log's (tree size, root) at a time, signed with ed25519, in a fixed byte
//! layout any language can rebuild.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::ids::{Hash, Timestamp};

/// Domain separation for checkpoint signatures: the signed message starts with these bytes, so a
/// checkpoint signature cannot be replayed as a signature over anything else (or the reverse).
pub const CHECKPOINT_SIGNING_PREFIX: &[u8] = b"cairn checkpoint v1\n";

/// Length of [`Checkpoint::signing_bytes`] without the prefix: log id, size, root, time.
const CHECKPOINT_FIELDS_LEN: usize = 32 + 8 + 32 + 8;
/// Length of [`SignedCheckpoint::encode`]: the fields, the public key and the signature.
const SIGNED_CHECKPOINT_LEN: usize = CHECKPOINT_FIELDS_LEN + 32 + 64;

/// Identifies one ledger, chosen by whoever creates it. A checkpoint names its log so a signature
/// over one ledger's root can never be presented as another's.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogId(pub [u8; 32]);

impl LogId {
    /// Lowercase hex (64 digits).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<LogId, LedgerError> {
        parse_hex_32(text, "log_id").map(LogId)
    }
}

impl fmt::Debug for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogId({})", self.to_hex())
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An ed25519 public (verifying) key, as its 32-byte compressed encoding (RFC 8032).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Lowercase hex (64 digits).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<PublicKey, LedgerError> {
        parse_hex_32(text, "public_key").map(PublicKey)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What a checkpoint states: the log `log_id` had `tree_size` records, with Merkle root `root`,
/// at `timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The ledger the checkpoint is about.
    pub log_id: LogId,
    /// The number of records covered (the head position at signing time).
    pub tree_size: u64,
    /// The Merkle root of the first `tree_size` records.
    pub root: Hash,
    /// When the checkpoint was made (supplied by the caller: this crate reads no clock).
    pub timestamp: Timestamp,
}

impl Checkpoint {
    /// The message an ed25519 signature covers: [`CHECKPOINT_SIGNING_PREFIX`], then log id
    /// (32 bytes), tree size (u64 big-endian), root (32 bytes), timestamp (i64 big-endian).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(CHECKPOINT_SIGNING_PREFIX.len() + CHECKPOINT_FIELDS_LEN);
        bytes.extend_from_slice(CHECKPOINT_SIGNING_PREFIX);
        self.write_fields(&mut bytes);
        bytes
    }

    fn write_fields(&self, bytes: &mut Vec<u8>) {
        bytes.extend_from_slice(&self.log_id.0);
        bytes.extend_from_slice(&self.tree_size.to_be_bytes());
        bytes.extend_from_slice(&self.root.0);
        bytes.extend_from_slice(&self.timestamp.0.to_be_bytes());
    }
}

/// A checkpoint with the ed25519 signature of the node that made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// What is signed.
    pub checkpoint: Checkpoint,
    /// The key that signed it; verification also requires it to be the key the verifier trusts.
    pub public_key: PublicKey,
    /// The ed25519 signature over [`Checkpoint::signing_bytes`].
    #[serde(with = "signature_serde")]
    pub signature: [u8; 64],
}

impl SignedCheckpoint {
    /// Checks that the checkpoint was signed by `trusted`: the embedded key must be `trusted` and
    /// the signature must pass ed25519 strict verification (no small-order keys or points, no
    /// non-canonical scalars).
    pub fn verify(&self, trusted: &PublicKey) -> Result<(), LedgerError> {
        if self.public_key != *trusted {
            return Err(LedgerError::BadSignature);
        }
        let key = VerifyingKey::from_bytes(&trusted.0).map_err(|_| LedgerError::BadSignature)?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&self.checkpoint.signing_bytes(), &signature)
            .map_err(|_| LedgerError::BadSignature)
    }

    /// The fixed 176-byte encoding: log id (32), tree size (u64 big-endian), root (32),
    /// timestamp (i64 big-endian), public key (32), signature (64).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(SIGNED_CHECKPOINT_LEN);
        self.checkpoint.write_fields(&mut bytes);
        bytes.extend_from_slice(&self.public_key.0);
        bytes.extend_from_slice(&self.signature);
        debug_assert_eq!(bytes.len(), SIGNED_CHECKPOINT_LEN);
        bytes
    }

    /// Decodes [`Self::encode`]'s layout, refusing any other length. Does not verify the
    /// signature: call [`Self::verify`] with the key you trust.
    pub fn decode(bytes: &[u8]) -> Result<SignedCheckpoint, LedgerError> {
        if bytes.len() != SIGNED_CHECKPOINT_LEN {
            return Err(LedgerError::Decode {
                what: "signed checkpoint",
                reason: format!("must be {SIGNED_CHECKPOINT_LEN} bytes, got {}", bytes.len()),
            });
        }
        let (log_id, rest) = split_array::<32>(bytes);
        let (tree_size, rest) = split_array::<8>(rest);
        let (root, rest) = split_array::<32>(rest);
        let (timestamp, rest) = split_array::<8>(rest);
        let (public_key, rest) = split_array::<32>(rest);
        let (signature, _) = split_array::<64>(rest);
        Ok(SignedCheckpoint {
            checkpoint: Checkpoint {
                log_id: LogId(log_id),
                tree_size: u64::from_be_bytes(tree_size),
                root: Hash(root),
                timestamp: Timestamp(i64::from_be_bytes(timestamp)),
            },
            public_key: PublicKey(public_key),
            signature,
        })
    }
}

/// Splits `N` bytes off the front; the caller has checked the total length.
fn split_array<const N: usize>(bytes: &[u8]) -> ([u8; N], &[u8]) {
    let (head, rest) = bytes.split_at(N);
    let mut array = [0; N];
    array.copy_from_slice(head);
    (array, rest)
}

/// The node's checkpoint signing key. The secret comes in as bytes: this crate draws no
/// randomness, so generating and storing it is the caller's job.
#[derive(Clone)]
pub struct CheckpointSigner {
    key: SigningKey,
}

impl CheckpointSigner {
    /// The signer for an ed25519 secret key (the 32-byte seed of RFC 8032).
    pub fn from_secret_bytes(secret: [u8; 32]) -> CheckpointSigner {
        CheckpointSigner {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The public key verifiers should trust.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// Signs a checkpoint (ed25519 is deterministic: the same checkpoint gives the same bytes).
    pub fn sign(&self, checkpoint: Checkpoint) -> SignedCheckpoint {
        let signature = self.key.sign(&checkpoint.signing_bytes());
        SignedCheckpoint {
            checkpoint,
            public_key: self.public_key(),
            signature: signature.to_bytes(),
        }
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

fn parse_hex_32(text: &str, field: &'static str) -> Result<[u8; 32], LedgerError> {
    let bytes = hex::decode(text).map_err(|error| LedgerError::InvalidField {
        field,
        reason: format!("not hex: {error}"),
    })?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| LedgerError::InvalidField {
            field,
            reason: format!("must be 32 bytes, got {}", bytes.len()),
        })
}

/// serde for `[u8; 64]` as a 64-element tuple, the way serde treats arrays up to 32: postcard
/// writes the raw bytes with no length, self-describing formats a list.
mod signature_serde {
    use std::fmt;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 64], serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(64)?;
        for byte in bytes {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 64], D::Error> {
        struct ArrayVisitor;

        impl<'de> Visitor<'de> for ArrayVisitor {
            type Value = [u8; 64];

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 bytes")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 64], A::Error> {
                let mut bytes = [0; 64];
                for (index, byte) in bytes.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| A::Error::invalid_length(index, &self))?;
                }
                Ok(bytes)
            }
        }

        deserializer.deserialize_tuple(64, ArrayVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            log_id: LogId([3; 32]),
            tree_size: 1234,
            root: Hash([4; 32]),
            timestamp: Timestamp(-5),
        }
    }

    #[test]
    fn signs_and_verifies() {
        let signer = CheckpointSigner::from_secret_bytes([1; 32]);
        let signed = signer.sign(sample());
        signed.verify(&signer.public_key()).unwrap();
        let other = CheckpointSigner::from_secret_bytes([2; 32]).public_key();
        assert_eq!(signed.verify(&other), Err(LedgerError::BadSignature));
    }

    #[test]
    fn signing_bytes_have_the_fixed_layout() {
        let bytes = sample().signing_bytes();
        assert_eq!(bytes.len(), CHECKPOINT_SIGNING_PREFIX.len() + 80);
        let fields = &bytes[CHECKPOINT_SIGNING_PREFIX.len()..];
        assert_eq!(&fields[..32], &[3; 32]);
        assert_eq!(&fields[32..40], &1234u64.to_be_bytes());
        assert_eq!(&fields[40..72], &[4; 32]);
        assert_eq!(&fields[72..], &(-5i64).to_be_bytes());
    }

    #[test]
    fn encoding_round_trips_and_refuses_other_lengths() {
        let signed = CheckpointSigner::from_secret_bytes([1; 32]).sign(sample());
        let bytes = signed.encode();
        assert_eq!(bytes.len(), 176);
        assert_eq!(SignedCheckpoint::decode(&bytes).unwrap(), signed);
        assert!(SignedCheckpoint::decode(&bytes[..175]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SignedCheckpoint::decode(&longer).is_err());
    }

    #[test]
    fn serde_round_trips_through_postcard() {
        let signed = CheckpointSigner::from_secret_bytes([1; 32]).sign(sample());
        let bytes = postcard::to_allocvec(&signed).unwrap();
        let decoded: SignedCheckpoint = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, signed);
    }

    #[test]
    fn hex_helpers_round_trip() {
        let log_id = LogId([0xab; 32]);
        assert_eq!(LogId::from_hex(&log_id.to_hex()).unwrap(), log_id);
        assert!(LogId::from_hex("abcd").is_err());
        assert!(PublicKey::from_hex("zz").is_err());
        assert!(format!("{log_id:?}").contains(&"ab".repeat(32)));
    }

    #[test]
    fn the_signer_does_not_print_its_secret() {
        let signer = CheckpointSigner::from_secret_bytes([0x5a; 32]);
        let debug = format!("{signer:?}");
        assert!(!debug.contains(&"5a".repeat(4)), "{debug}");
        assert!(!debug.contains("90, 90"), "{debug}");
    }
}
