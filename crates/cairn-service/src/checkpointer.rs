//! The sealer: signs a checkpoint of the tree whenever the head has moved, at a fixed interval,
//! and once more on shutdown.

use std::sync::Arc;
use std::time::Duration;

use cairn_ledger::{Checkpoint, SignedCheckpoint};
use cairn_store::EventStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ServiceError;
use crate::identity::ServerIdentity;

/// Signs checkpoints of one store with the server's key.
pub struct Checkpointer<S: ?Sized> {
    store: Arc<S>,
    identity: Arc<ServerIdentity>,
    /// When several nodes share a ledger: true while this node holds the sealer lease.
    gate: Option<watch::Receiver<bool>>,
}

/// A running checkpointer; [`CheckpointerHandle::stop`] signs a final checkpoint and ends it.
pub struct CheckpointerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl<S: EventStore + ?Sized> Checkpointer<S> {
    /// A checkpointer for `store`, signing as `identity`.
    pub fn new(store: Arc<S>, identity: Arc<ServerIdentity>) -> Checkpointer<S> {
        Checkpointer {
            store,
            identity,
            gate: None,
        }
    }

    /// Signs only while `gate` says so (the sealer lease of a ledger shared by several nodes).
    pub fn gated(mut self, gate: watch::Receiver<bool>) -> Checkpointer<S> {
        self.gate = Some(gate);
        self
    }

    /// Signs and stores a checkpoint of the current head if it is ahead of the latest checkpoint.
    /// Returns the new checkpoint, or `None` when there was nothing new to sign (or this node does
    /// not hold the sealer lease).
    pub async fn checkpoint_now(&self) -> Result<Option<SignedCheckpoint>, ServiceError> {
        if self.gate.as_ref().is_some_and(|gate| !*gate.borrow()) {
            return Ok(None);
        }
        let head = self.store.head().await?;
        let signed_size = head
            .checkpoint
            .as_ref()
            .map_or(0, |c| c.checkpoint.tree_size);
        if head.position.0 == 0 || head.position.0 <= signed_size {
            return Ok(None);
        }
        let signed = self.identity.signer.sign(Checkpoint {
            log_id: self.identity.log_id,
            tree_size: head.position.0,
            root: head.root,
            timestamp: cairn_store::now(),
        });
        self.store.save_checkpoint(signed.clone()).await?;
        tracing::debug!(tree_size = head.position.0, root = %head.root, "signed checkpoint");
        Ok(Some(signed))
    }

    /// Runs in the background, checkpointing every `interval` while there are new records.
    pub fn spawn(self, interval: Duration) -> CheckpointerHandle
    where
        S: 'static,
    {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                if let Err(error) = self.checkpoint_now().await {
                    tracing::error!(%error, "checkpoint failed");
                }
            }
            if let Err(error) = self.checkpoint_now().await {
                tracing::error!(%error, "final checkpoint failed");
            }
        });
        CheckpointerHandle { stop, task }
    }
}

impl CheckpointerHandle {
    /// Signs a final checkpoint and waits for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use cairn_ledger::{DataClass, EventId, Hash};
    use cairn_ledger::{Position, StreamId, TenantId};
    use cairn_store::{ExpectedVersion, MemoryStore, NewEvent};

    use super::*;

    fn event(id: u8) -> NewEvent {
        NewEvent {
            event_id: EventId([id; 16]),
            event_type: "Noted".into(),
            event_schema_version: 1,
            actor: "user:a".into(),
            causation_id: None,
            correlation_id: None,
            lineage: vec![],
            data_class: DataClass::Public,
            key_id: None,
            policy_bundle_hash: Hash::ZERO,
            payload: cairn_ledger::SealedPayload {
                clear: vec![id],
                sealed: None,
            }
            .encode(),
        }
    }

    #[tokio::test]
    async fn signs_only_when_the_head_moved() {
        let store = MemoryStore::new();
        let identity = Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32]));
        let checkpointer = Checkpointer::new(store.clone(), identity.clone());
        assert!(
            checkpointer.checkpoint_now().await.unwrap().is_none(),
            "nothing to sign"
        );
        let stream = StreamId::new(TenantId::new("acme").unwrap(), "feedback", "f").unwrap();
        store
            .append(stream.clone(), ExpectedVersion::Any, vec![event(1)])
            .await
            .unwrap();
        let signed = checkpointer
            .checkpoint_now()
            .await
            .unwrap()
            .expect("signed");
        assert_eq!(signed.checkpoint.tree_size, 1);
        signed.verify(&identity.public_key()).unwrap();
        assert_eq!(signed.checkpoint.root, store.root_at(1).await.unwrap());
        assert!(
            checkpointer.checkpoint_now().await.unwrap().is_none(),
            "head did not move"
        );
        store
            .append(stream, ExpectedVersion::Any, vec![event(2)])
            .await
            .unwrap();

        let handle = Checkpointer::new(store.clone(), identity).spawn(Duration::from_secs(3600));
        handle.stop().await;
        let latest = store.latest_checkpoint().await.unwrap().unwrap();
        assert_eq!(
            latest.checkpoint.tree_size,
            store.head().await.unwrap().position.0
        );
        assert_eq!(store.head().await.unwrap().position, Position(2));
    }
}
