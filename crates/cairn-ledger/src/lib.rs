//! The cairn record format: what a ledger record is, byte for byte, and how anyone can check it.
//!
//! A record is an [`Envelope`] (postcard-encoded, versioned, free of personal data) plus a sealed
//! payload whose blake3 commitment the envelope carries. Leaves of the Merkle tree are hashes of
//! encoded envelopes, so destroying the key of a sealed payload leaves every hash, proof and
//! checkpoint valid. This crate also holds the RFC 9162-shaped Merkle tree (blake3 in place of
//! SHA-256), inclusion and consistency proofs, and ed25519-signed checkpoints.
//!
//! This crate must never do I/O, read the clock or draw randomness: time, keys and nonces come in
//! as arguments. It knows bytes and envelopes, never domain events. `docs/ledger-format.md` is the
//! normative description of everything encoded here.

mod checkpoint;
mod envelope;
mod error;
mod ids;
pub mod limits;
mod merkle;
mod record;
mod seal;

pub use checkpoint::{
    CHECKPOINT_SIGNING_PREFIX, Checkpoint, CheckpointSigner, LogId, PublicKey, SignedCheckpoint,
};
pub use envelope::{DataClass, ENVELOPE_FORMAT_V1, Envelope, LineageParent, validate_event_fields};
pub use error::LedgerError;
pub use ids::{EventId, Hash, KeyId, Position, StreamId, StreamVersion, TenantId, Timestamp};
pub use merkle::{
    ConsistencyProof, InclusionProof, MerkleFrontier, MerkleTree, empty_root, leaf_hash, node_hash,
};
pub use record::{Record, check_sealed_key, payload_commitment};
pub use seal::{DataKey, SealedPart, SealedPayload, open_sealed, seal_personal};
