//! [`RecordLog`]: every record in memory with the indexes an append plans against, for backends
//! that hold the ledger in memory (the in-memory store, a JetStream node's applied view).

use std::collections::HashMap;
use std::sync::Arc;

use cairn_ledger::{
    Envelope, EventId, MerkleTree, Position, Record, StreamId, StreamVersion, Timestamp,
};

use crate::append::StateView;
use crate::error::StoreError;
use crate::limits;

/// Records in position order, their Merkle tree, and the stream and event-id indexes.
#[derive(Default)]
pub struct RecordLog {
    records: Vec<Arc<Record>>,
    streams: HashMap<StreamId, Vec<Position>>,
    event_ids: HashMap<EventId, Position>,
    tree: MerkleTree,
    last_recorded_at: Timestamp,
}

impl RecordLog {
    /// The newest position ([`Position::ZERO`] when empty).
    pub fn head(&self) -> Position {
        Position(self.records.len() as u64)
    }

    /// The Merkle tree of every record.
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// The newest record's recording time (the epoch when empty).
    pub fn last_recorded_at(&self) -> Timestamp {
        self.last_recorded_at
    }

    /// The record at `position`, which must be at most the head.
    pub fn record(&self, position: Position) -> &Arc<Record> {
        &self.records[(position.0 - 1) as usize]
    }

    /// The position of a stream's newest record.
    pub fn last_of_stream(&self, stream: &StreamId) -> Option<Position> {
        self.streams
            .get(stream)
            .and_then(|positions| positions.last().copied())
    }

    /// Adds the record at the next position (the caller built it so). Returns the position an
    /// event id was recorded at before, if it was: the first record keeps answering for its id.
    pub fn push(&mut self, record: Arc<Record>) -> Option<Position> {
        let envelope = &record.envelope;
        debug_assert_eq!(envelope.position, self.head().next());
        self.last_recorded_at = envelope.recorded_at;
        self.streams
            .entry(envelope.stream.clone())
            .or_default()
            .push(envelope.position);
        let earlier = match self.event_ids.get(&envelope.event_id) {
            Some(&first) => Some(first),
            None => {
                self.event_ids.insert(envelope.event_id, envelope.position);
                None
            }
        };
        self.tree.push(record.leaf_hash());
        self.records.push(record);
        earlier
    }

    /// Up to `limit` records of one stream from version `from` (0 reads from 1).
    pub fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> Vec<Arc<Record>> {
        let Some(positions) = self.streams.get(stream) else {
            return Vec::new();
        };
        positions
            .iter()
            .skip(from.0.saturating_sub(1) as usize)
            .take(limit.min(limits::READ_RECORDS_MAX))
            .map(|&position| Arc::clone(self.record(position)))
            .collect()
    }

    /// Up to `limit` records from position `from` (0 reads from 1).
    pub fn read_all(&self, from: Position, limit: usize) -> Vec<Arc<Record>> {
        self.records
            .iter()
            .skip(from.0.saturating_sub(1) as usize)
            .take(limit.min(limits::READ_RECORDS_MAX))
            .cloned()
            .collect()
    }
}

impl StateView for RecordLog {
    fn stream_version(&self, stream: &StreamId) -> Result<StreamVersion, StoreError> {
        Ok(StreamVersion(
            self.streams
                .get(stream)
                .map_or(0, |positions| positions.len() as u64),
        ))
    }

    fn envelope_by_event_id(&self, event_id: &EventId) -> Result<Option<Envelope>, StoreError> {
        Ok(self
            .event_ids
            .get(event_id)
            .map(|&position| self.record(position).envelope.clone()))
    }
}
