//! The storage contract of the cairn ledger: the [`EventStore`] and [`KeyStore`] traits, their
//! errors and limits, the append rules every backend shares ([`plan_append`]), the subscription
//! machinery ([`subscribe`]), an in-memory implementation ([`MemoryStore`]), and, behind the
//! `testsuite` feature, the conformance suite every backend runs with one macro call.
//!
//! This crate must never name a storage engine (sled, async-nats): backends live in their own
//! crates and depend on this one, never the reverse.

mod append;
mod error;
mod event;
pub mod limits;
mod memory;
pub mod proofs;
mod record_log;
mod subscription;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use std::sync::Arc;

use async_trait::async_trait;
use cairn_ledger::{
    ConsistencyProof, DataKey, Hash, InclusionProof, KeyId, Position, Record, SignedCheckpoint,
    StreamId, StreamVersion,
};
use tokio::sync::{broadcast, watch};

pub use append::{AppendPlan, StateView, build_records, plan_append, validate_append};
pub use error::{StoreError, StoreErrorKind};
pub use event::{AppendResult, ExpectedVersion, Head, NewEvent};
pub use memory::MemoryStore;
pub use record_log::RecordLog;
pub use subscription::{Subscription, subscribe};

/// An append-only, gapless, tamper-evident event log.
///
/// Every backend must behave identically; `testsuite::conformance_suite!` checks it. The rules:
/// - an append is atomic (all of its events or none), contiguous in position, and acknowledged
///   only once durable;
/// - positions start at 1 and are gapless; stream versions start at 1 and are gapless per stream;
/// - an event id is recorded once, for ever: re-sending the same ids with the same content returns
///   the original positions and stores nothing; the same id with other content is an error;
/// - the Merkle tree over the records in position order, its proofs and checkpoints are a pure
///   function of the records.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if its version matches `expected`.
    async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Reads up to `limit` events of one stream, from version `from` (inclusive; 0 reads from 1).
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> Result<Vec<Arc<Record>>, StoreError>;

    /// Reads up to `limit` records of the whole ledger from position `from` (inclusive; 0 reads
    /// from 1), in position order.
    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<Arc<Record>>, StoreError>;

    /// The current version of one stream ([`StreamVersion::NONE`] if it has no events).
    async fn stream_version(&self, stream: &StreamId) -> Result<StreamVersion, StoreError>;

    /// The head: the newest position, the root of the tree of that size, and the latest
    /// checkpoint.
    async fn head(&self) -> Result<Head, StoreError>;

    /// Follows the head position: changes once records are durable and readable.
    fn watch_head(&self) -> watch::Receiver<Position>;

    /// Every record after it is durable and readable, in position order. A receiver that falls
    /// more than [`limits::LIVE_BUFFER_RECORDS`] behind gets `Lagged`; use [`subscribe`], which
    /// turns that into [`StoreError`] with the position to resume from.
    fn live(&self) -> broadcast::Receiver<Arc<Record>>;

    /// The Merkle root of the tree of the first `tree_size` records.
    async fn root_at(&self, tree_size: u64) -> Result<Hash, StoreError>;

    /// Proof that the record at `position` is in the tree of size `tree_size`.
    async fn inclusion_proof(
        &self,
        position: Position,
        tree_size: u64,
    ) -> Result<InclusionProof, StoreError>;

    /// Proof that the tree of size `old_size` is a prefix of the tree of size `new_size`.
    async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, StoreError>;

    /// Stores a signed checkpoint after checking that its root is this ledger's root at its size
    /// and that it does not go back in size. Does not check the signature's key: that is the
    /// caller's (the sealer's) key.
    async fn save_checkpoint(&self, checkpoint: SignedCheckpoint) -> Result<(), StoreError>;

    /// The newest stored checkpoint.
    async fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError>;

    /// Waits until this handle reflects every record appended before the call through any handle
    /// of the same ledger (another node's, when several share it); true if it had to apply
    /// records it had not seen. A decision refused on what a handle had read is final unless this
    /// says so. A store that is its ledger's only writer is always in sync: the default returns
    /// false at once.
    async fn sync(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// What a key store knows of one data key.
#[derive(Debug)]
pub enum KeyState {
    /// The key exists and can open payloads sealed under it.
    Active(DataKey),
    /// The key was destroyed: every payload sealed under it is erased for good.
    Destroyed,
    /// No key was ever created under this id.
    Unknown,
}

/// Holds the data keys that seal personal data. Destroying a key erases every payload sealed under
/// it while the ledger, its hashes and proofs stay intact.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key, durably. Refuses an id that exists or existed (`AlreadyExists`).
    async fn create_key(&self, key_id: KeyId, key: DataKey) -> Result<(), StoreError>;

    /// Looks a key up.
    async fn key(&self, key_id: KeyId) -> Result<KeyState, StoreError>;

    /// Destroys a key durably, so its bytes are no longer in the store's files. Returns whether it
    /// was active; destroying a destroyed or unknown key is not an error (erasure is idempotent).
    async fn destroy_key(&self, key_id: KeyId) -> Result<bool, StoreError>;
}

/// The current time as a ledger timestamp. Stores stamp records with it; the ledger and domain
/// crates never read the clock.
pub fn now() -> cairn_ledger::Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as i64)
        .unwrap_or(0);
    cairn_ledger::Timestamp(micros)
}

/// Fills a buffer from the operating system's random source (ids, keys, nonces).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}
