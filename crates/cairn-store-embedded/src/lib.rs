//! The single-machine ledger store: append-only segment files as the source of truth, written by
//! group-commit threads that call `fdatasync` before they acknowledge anything, with sled as a
//! rebuildable index and plain files for data keys and checkpoints.
//!
//! [`EmbeddedStore`] implements `cairn_store::EventStore` and `cairn_store::KeyStore`;
//! [`verify_segments`] checks a stopped store's segments, recomputes its Merkle root and checks
//! the stored checkpoints against it; [`read_checkpoints`] reads a stopped store's checkpoints.
//!
//! This crate must never acknowledge an append before its bytes are `fdatasync`'d in a segment
//! file, never treat sled as a copy of record (sled 0.34's flush is not a durability barrier:
//! everything in it is rebuilt from the segments when it is behind, ahead or lost), never rewrite
//! or delete a record, never retry a failed `fsync`, and never block an async worker thread on
//! file or sled I/O.
//!
//! # The data directory
//!
//! | path | what |
//! |------|------|
//! | `LOCK` | held with an exclusive file lock while a store has the directory open |
//! | `segments/<first position, 20 digits>.seg` | the records (format in the `segment` module's documentation) |
//! | `segments/next-segment.tmp` | the next segment, zero-filled ahead of time |
//! | `index/` | the sled index: `event_ids`, `streams`, `meta` |
//! | `keys.dat` | the data keys, in fixed slots overwritten in place on destruction |
//! | `checkpoints.log` | the signed checkpoints, append-only |
//!
//! Other files in the directory (the CLI keeps its identity there) are not this crate's.
//!
//! # Threads
//!
//! - The **sequencer** takes queued appends in groups, plans them (idempotency, expected
//!   versions) against the committed state plus what it has planned and not yet seen committed,
//!   builds the records and writes each group to the current segment with one write.
//! - The **syncer** calls `fdatasync` once for everything written since its last sync, waiting
//!   up to 500 µs for appends already handed to the store so that concurrent appenders share a
//!   sync; then it makes the records visible, publishes them, advances the head and answers.
//!   Nothing is visible or acknowledged before its sync returns.
//! - The **preparer** zero-fills the next segment file ahead of time (see the `segment` module:
//!   syncing overwrites of a preallocated file is faster than syncing appends).
//! - The **indexer** moves committed records into sled in large batches, deferring the work
//!   while appends keep coming (sled costs more per record than the rest of an append); until
//!   then, lookups are answered from in-memory pending entries.
//!
//! File and sled reads from async calls run on `spawn_blocking` threads. Opening the store and
//! [`verify_segments`] read each segment with a reader thread and one decoding worker per core,
//! visiting the records in position order on the calling thread (the `frames` module).
//!
//! # Open and recovery
//!
//! Opening reads every frame of every segment (checksum, envelope, payload commitment, gapless
//! positions and stream versions) and rebuilds the Merkle tree and the in-memory state from them.
//! This full scan is simple and checks everything on every start; its cost grows with the ledger
//! (a few microseconds per record), and a persisted tree can replace it later. A torn tail (a
//! short or bad frame at the very end of the last segment, from a crash during a write that was
//! never acknowledged) is cut; a bad frame anywhere else refuses the open with
//! `StoreError::Corrupt` naming the position. So does a bad last frame at a position known to
//! have been acknowledged (covered by the latest stored checkpoint, or by the index's
//! `indexed_through`): a torn write never hits a synced record, so that is damage, and an
//! acknowledged record is never cut. Then the sled index is brought up to date: missing
//! records are indexed, and an index that claims more than the segments hold, or disagrees with
//! them, is wiped and rebuilt.
//!
//! # Memory
//!
//! The store keeps in memory, per record, the Merkle tree (about 64 bytes), its frame's offset
//! (8 bytes) and a Bloom filter of event ids (about 10 bits, so that new ids need no sled
//! lookup); per stream, its version; and, for records the indexer has not yet put in sled (at
//! most `index_lag_records_max`), their index entries (about 150 bytes each).

mod checkpoints;
mod filter;
mod frames;
mod index;
mod keys;
mod recovery;
mod scan;
mod segment;
mod store;
mod writer;

pub use checkpoints::read_checkpoints;
pub use scan::{StoredCheckpoint, VerifyReport, verify_segments};
pub use store::EmbeddedStore;

/// Tuning of an [`EmbeddedStore`]. Every field has a sensible default ([`Default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// A segment file rolls over to a new one before a frame would take it past this size (a
    /// segment holds at least one frame whatever this says). Default 64 MiB.
    pub segment_bytes_max: u64,
    /// Most records one group commit writes and syncs at once. Keep it at most
    /// `cairn_store::limits::LIVE_BUFFER_RECORDS` / 2, so one group cannot overrun a live
    /// subscriber that is keeping up. Default 2048.
    pub group_commit_records_max: usize,
    /// Most payload bytes one group commit writes at once (a single append larger than this is
    /// still written, alone). Default 8 MiB.
    pub group_commit_bytes_max: usize,
    /// Most acknowledged records the background indexer may have yet to put in sled; the writer
    /// waits when it is this far behind. Bounds the pending index entries in memory (about 150
    /// bytes each) and the re-indexing after a crash. The indexer defers its work while appends
    /// keep coming, until half this many wait. Default 1,048,576.
    pub index_lag_records_max: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> EmbeddedOptions {
        EmbeddedOptions {
            segment_bytes_max: 64 << 20,
            group_commit_records_max: 2048,
            group_commit_bytes_max: 8 << 20,
            index_lag_records_max: 1 << 20,
        }
    }
}
