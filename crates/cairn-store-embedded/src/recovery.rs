//! Opening a data directory: scan the segments (cutting a torn tail, never an acknowledged
//! record), rebuild the in-memory state, and bring the sled index up to date with the segments.
//!
//! What was acknowledged is known from two records kept apart from the segments: the latest
//! checkpoint in `checkpoints.log` (saved only over acknowledged records) and the index's
//! `indexed_through` (the indexer only receives records after their `fdatasync`). A bad frame at
//! a position at or below either is damage to an acknowledged record, and the open refuses it
//! with `StoreError::Corrupt` naming the position, instead of cutting it as a torn tail.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use cairn_ledger::{EventId, MerkleTree, Position, Record, Timestamp};
use cairn_store::StoreError;
use tracing::{info, warn};

use crate::filter::EventIdFilter;
use crate::index::{IndexEntry, MemIndex, SegmentSpan, SledIndex, StreamState};
use crate::scan::{Acknowledged, LedgerChecks, ScanMode, TornTail, scan_segments};
use crate::segment::SEGMENTS_DIR;

/// What opening found.
pub(crate) struct Recovered {
    /// The in-memory state, everything indexed.
    pub index: MemIndex,
    /// The recorded time of the last record.
    pub last_recorded_at: Timestamp,
    /// The torn tail that was cut, if any.
    pub torn_tail: Option<TornTail>,
    /// How many records were (re)indexed in sled.
    pub reindexed: u64,
    /// Every event id in the segments.
    pub filter: EventIdFilter,
}

/// Records indexed per sled batch while catching up.
const CATCH_UP_CHUNK_RECORDS: usize = 8192;

/// Scans the segments under `dir` and brings `sled` up to date with them; wipes and rebuilds
/// the index if it claims more than the segments hold or disagrees with them.
///
/// `checkpoint_size` is the tree size of the latest checkpoint in `checkpoints.log`. It and the
/// index's `indexed_through` (the indexer only sees records after their `fdatasync`) bound what
/// was acknowledged: the scan refuses to cut a torn tail at or below either (see the `scan`
/// module).
pub(crate) fn recover(
    dir: &Path,
    sled: &SledIndex,
    checkpoint_size: u64,
) -> Result<Recovered, StoreError> {
    let indexed_through = sled.indexed_through()?;
    let acknowledged = Acknowledged {
        checkpoint_size,
        indexed_through,
    };
    match pass(dir, sled, indexed_through, acknowledged)? {
        Pass::Done(recovered) => Ok(*recovered),
        Pass::Rebuild(reason) => {
            warn!(%reason, "the sled index disagrees with the segments: rebuilding it from them");
            sled.clear()?;
            match pass(dir, sled, Position::ZERO, acknowledged)? {
                Pass::Done(recovered) => Ok(*recovered),
                Pass::Rebuild(reason) => Err(StoreError::Corrupt {
                    position: None,
                    detail: format!(
                        "the rebuilt index still disagrees with the segments: {reason}"
                    ),
                }),
            }
        }
    }
}

enum Pass {
    Done(Box<Recovered>),
    Rebuild(String),
}

/// One scan of the segments, indexing every record after `indexed_through`.
fn pass(
    dir: &Path,
    sled: &SledIndex,
    indexed_through: Position,
    acknowledged: Acknowledged,
) -> Result<Pass, StoreError> {
    let mut checks = LedgerChecks::default();
    let mut tree = MerkleTree::new();
    let mut offsets = Vec::new();
    let mut catch_up = CatchUp::new(sled);
    let mut filter = EventIdFilter::new(expected_ids(dir));
    let mut rebuild: Option<String> = None;
    let outcome = scan_segments(dir, ScanMode::Repair, acknowledged, &mut |scanned| {
        let record = scanned.record;
        checks.check(record)?;
        tree.push(scanned.leaf);
        offsets.push(scanned.offset);
        let position = record.position();
        let seen_before = filter.may_contain(&record.envelope.event_id);
        filter.insert(&record.envelope.event_id);
        if rebuild.is_some() {
            return Ok(());
        }
        if position == indexed_through {
            // The index's claim is checked at its last record: sled recovers a prefix of its
            // writes, so if this one is right, those before it are there too.
            let indexed = sled.event_position(&record.envelope.event_id)?;
            if indexed != Some(position) {
                rebuild = Some(format!(
                    "the index puts event {} at {indexed:?}, the segments at position {position}",
                    record.envelope.event_id
                ));
            }
        } else if position > indexed_through {
            catch_up.add(record, seen_before)?;
        }
        Ok(())
    })?;
    if rebuild.is_none() && indexed_through > outcome.last_position {
        rebuild = Some(format!(
            "the index claims {indexed_through} records, the segments hold {}",
            outcome.last_position
        ));
    }
    if let Some(reason) = rebuild {
        return Ok(Pass::Rebuild(reason));
    }
    let reindexed = catch_up.finish()?;
    let head = outcome.last_position;
    if tree.len() != head.0 || offsets.len() as u64 != head.0 {
        return Err(StoreError::Corrupt {
            position: Some(head),
            detail: format!(
                "broken invariant: scanned {} leaves for {head} records",
                tree.len()
            ),
        });
    }
    let streams = checks
        .streams
        .into_iter()
        .map(|(stream, version)| {
            (
                stream,
                StreamState {
                    version,
                    pending: VecDeque::new(),
                },
            )
        })
        .collect();
    Ok(Pass::Done(Box::new(Recovered {
        index: MemIndex {
            head,
            tree,
            segments: outcome
                .segments
                .into_iter()
                .map(|segment| SegmentSpan {
                    first_position: segment.first_position,
                    path: segment.path,
                    len: segment.len,
                })
                .collect(),
            offsets,
            streams,
            pending_event_ids: HashMap::new(),
            indexed_through: head,
        },
        last_recorded_at: checks.last_recorded_at,
        torn_tail: outcome.torn_tail,
        reindexed,
        filter,
    })))
}

/// A generous guess of the number of records under `dir`, to size the event id filter once:
/// segment bytes over a small frame, plus room to grow.
fn expected_ids(dir: &Path) -> u64 {
    let bytes: u64 = std::fs::read_dir(dir.join(SEGMENTS_DIR))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.metadata().ok())
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0);
    bytes / 128 + (1 << 20)
}

/// Indexes records in sled in chunks as the scan meets them, checking that no event id is
/// recorded twice.
struct CatchUp<'a> {
    sled: &'a SledIndex,
    chunk: Vec<IndexEntry>,
    chunk_ids: HashMap<EventId, Position>,
    indexed: u64,
}

impl<'a> CatchUp<'a> {
    fn new(sled: &'a SledIndex) -> CatchUp<'a> {
        CatchUp {
            sled,
            chunk: Vec::new(),
            chunk_ids: HashMap::new(),
            indexed: 0,
        }
    }

    /// Indexes `record`; `maybe_seen` is false when the filter of the ids scanned so far says
    /// its id is certainly new.
    fn add(&mut self, record: &Record, maybe_seen: bool) -> Result<(), StoreError> {
        let envelope = &record.envelope;
        let position = envelope.position;
        let earlier = match self.chunk_ids.get(&envelope.event_id) {
            Some(&earlier) => Some(earlier),
            None if maybe_seen => self.sled.event_position(&envelope.event_id)?,
            None => None,
        };
        if let Some(earlier) = earlier
            && earlier != position
        {
            return Err(StoreError::Corrupt {
                position: Some(position),
                detail: format!(
                    "event id {} is recorded twice, at {earlier} and at {position}",
                    envelope.event_id
                ),
            });
        }
        self.chunk_ids.insert(envelope.event_id, position);
        self.chunk.push(IndexEntry {
            event_id: envelope.event_id,
            stream: Arc::new(envelope.stream.clone()),
            version: envelope.stream_version,
            position,
        });
        if self.chunk.len() >= CATCH_UP_CHUNK_RECORDS {
            self.apply()?;
        }
        Ok(())
    }

    fn apply(&mut self) -> Result<(), StoreError> {
        let Some(last) = self.chunk.last() else {
            return Ok(());
        };
        self.sled.apply(&self.chunk, last.position)?;
        self.indexed += self.chunk.len() as u64;
        if self.indexed % (CATCH_UP_CHUNK_RECORDS as u64 * 128) < CATCH_UP_CHUNK_RECORDS as u64 {
            info!(
                indexed = self.indexed,
                through = last.position.0,
                "catching up the sled index"
            );
        }
        self.chunk.clear();
        self.chunk_ids.clear();
        Ok(())
    }

    /// Indexes what is left; returns how many records were indexed in all.
    fn finish(mut self) -> Result<u64, StoreError> {
        self.apply()?;
        Ok(self.indexed)
    }
}
