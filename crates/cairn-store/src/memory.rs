//! The in-memory store: the reference behaviour of the contract, for tests and tools. Nothing
//! survives the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use cairn_ledger::{
    ConsistencyProof, DataKey, Hash, InclusionProof, KeyId, Position, Record, SignedCheckpoint,
    StreamId, StreamVersion,
};
use tokio::sync::{broadcast, watch};

use crate::append::{AppendPlan, StateView, build_records, plan_append, validate_append};
use crate::error::StoreError;
use crate::event::{AppendResult, ExpectedVersion, Head, NewEvent};
use crate::record_log::RecordLog;
use crate::{EventStore, KeyState, KeyStore, limits, proofs};

/// An [`EventStore`] and [`KeyStore`] held in memory.
pub struct MemoryStore {
    state: Mutex<MemoryState>,
    live: broadcast::Sender<Arc<Record>>,
    head: watch::Sender<Position>,
}

#[derive(Default)]
struct MemoryState {
    log: RecordLog,
    checkpoints: Vec<SignedCheckpoint>,
    /// `None` once destroyed.
    keys: HashMap<KeyId, Option<[u8; 32]>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Arc<MemoryStore> {
        let (live, _) = broadcast::channel(limits::LIVE_BUFFER_RECORDS);
        let (head, _) = watch::channel(Position::ZERO);
        Arc::new(MemoryStore {
            state: Mutex::new(MemoryState::default()),
            live,
            head,
        })
    }

    fn state(&self) -> MutexGuard<'_, MemoryState> {
        // A panic while holding the lock leaves no half-applied append (appends mutate only after
        // every fallible step), so the state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        validate_append(&stream, &events)?;
        let mut state = self.state();
        let first_version = match plan_append(&state.log, &stream, expected, &events)? {
            AppendPlan::Duplicate(result) => return Ok(result),
            AppendPlan::Write { first_version } => first_version,
        };
        let first_position = state.log.head().next();
        let recorded_at = crate::now().max(state.log.last_recorded_at());
        let records = build_records(&stream, first_position, first_version, recorded_at, &events)?;
        for record in records {
            let record = Arc::new(record);
            state.log.push(Arc::clone(&record));
            // No receivers is fine; order is kept because the lock is held.
            let _ = self.live.send(record);
        }
        let last_position = state.log.head();
        let last_version = StreamVersion(first_version.0 + events.len() as u64 - 1);
        self.head.send_replace(last_position);
        Ok(AppendResult {
            first_position,
            last_position,
            last_version,
            deduplicated: false,
        })
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: StreamVersion,
        limit: usize,
    ) -> Result<Vec<Arc<Record>>, StoreError> {
        Ok(self.state().log.read_stream(stream, from, limit))
    }

    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<Arc<Record>>, StoreError> {
        Ok(self.state().log.read_all(from, limit))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<StreamVersion, StoreError> {
        self.state().log.stream_version(stream)
    }

    async fn head(&self) -> Result<Head, StoreError> {
        let state = self.state();
        Ok(Head {
            position: state.log.head(),
            root: state.log.tree().root(),
            checkpoint: state.checkpoints.last().cloned(),
        })
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }

    fn live(&self) -> broadcast::Receiver<Arc<Record>> {
        self.live.subscribe()
    }

    async fn root_at(&self, tree_size: u64) -> Result<Hash, StoreError> {
        proofs::root_at(self.state().log.tree(), tree_size)
    }

    async fn inclusion_proof(
        &self,
        position: Position,
        tree_size: u64,
    ) -> Result<InclusionProof, StoreError> {
        proofs::inclusion_proof(self.state().log.tree(), position, tree_size)
    }

    async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, StoreError> {
        proofs::consistency_proof(self.state().log.tree(), old_size, new_size)
    }

    async fn save_checkpoint(&self, checkpoint: SignedCheckpoint) -> Result<(), StoreError> {
        let mut state = self.state();
        proofs::check_checkpoint(state.log.tree(), state.checkpoints.last(), &checkpoint)?;
        state.checkpoints.push(checkpoint);
        Ok(())
    }

    async fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        Ok(self.state().checkpoints.last().cloned())
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn create_key(&self, key_id: KeyId, key: DataKey) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.keys.contains_key(&key_id) {
            return Err(StoreError::KeyExists(key_id));
        }
        state.keys.insert(key_id, Some(key.0));
        Ok(())
    }

    async fn key(&self, key_id: KeyId) -> Result<KeyState, StoreError> {
        Ok(match self.state().keys.get(&key_id) {
            Some(Some(bytes)) => KeyState::Active(DataKey(*bytes)),
            Some(None) => KeyState::Destroyed,
            None => KeyState::Unknown,
        })
    }

    async fn destroy_key(&self, key_id: KeyId) -> Result<bool, StoreError> {
        let mut state = self.state();
        match state.keys.get_mut(&key_id) {
            Some(slot @ Some(_)) => {
                *slot = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
