//! The sealer lease: one node at a time signs checkpoints (and runs the retention sweeper).
//!
//! The lease is the entry `sealer` of the KV bucket `<STREAM>_LEASE`, whose entries expire
//! [`LeaseOptions::ttl`] after they were written. The holder rewrites it every third of the TTL
//! with the revision it last wrote (compare-and-set); any other node tries to create it, which
//! succeeds only once the holder's entry has expired or was released. A holder that cannot
//! renew (it was partitioned, paused or killed) stops sealing at once; another node takes over
//! within about one TTL plus one renewal interval.
//!
//! The lease is for efficiency, not safety: a paused holder may sign one more checkpoint after
//! its lease expired, but the checkpoint stream accepts a checkpoint only if it matches this
//! ledger's root at its size and does not go back (each publish expects the previous one), so
//! two sealers can never record checkpoints that contradict each other or the tree.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use cairn_store::StoreError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::JetStreamOptions;

const LEASE_KEY: &str = "sealer";

/// How the lease is held.
#[derive(Clone, Copy, Debug)]
pub struct LeaseOptions {
    /// How long an entry lives without renewal.
    pub ttl: Duration,
}

impl Default for LeaseOptions {
    fn default() -> LeaseOptions {
        LeaseOptions {
            ttl: Duration::from_secs(3),
        }
    }
}

/// This node's side of the lease: a background task that takes, renews and releases it.
pub struct SealerLease {
    holding: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {error}"))
}

impl SealerLease {
    /// Opens (or creates) the lease bucket and starts contending for the lease as `node`.
    pub async fn start(
        js: &jetstream::Context,
        options: &JetStreamOptions,
        node: String,
        lease: LeaseOptions,
    ) -> Result<SealerLease, StoreError> {
        let name = options.lease_bucket();
        let bucket = match js.get_key_value(&name).await {
            Ok(bucket) => bucket,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    description: "cairn sealer lease".into(),
                    history: 1,
                    max_age: lease.ttl,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: options.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|error| {
                    unavailable(&format!("cannot create lease bucket {name}"), error)
                })?,
        };
        let (holding_sender, holding) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(contend(bucket, node, lease, holding_sender, stopped));
        Ok(SealerLease {
            holding,
            stop,
            task,
        })
    }

    /// True while this node holds the lease.
    pub fn holding(&self) -> watch::Receiver<bool> {
        self.holding.clone()
    }

    /// Releases the lease (if held) so another node takes over at once, and stops contending.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

async fn contend(
    bucket: kv::Store,
    node: String,
    lease: LeaseOptions,
    holding: watch::Sender<bool>,
    mut stopped: watch::Receiver<bool>,
) {
    let value = Bytes::from(node.clone());
    let mut revision: Option<u64> = None;
    let renew_every = lease.ttl / 3;
    loop {
        revision = match revision {
            Some(held) => match bucket.update(LEASE_KEY, value.clone(), held).await {
                Ok(next) => Some(next),
                Err(error) => {
                    tracing::warn!(%error, node, "lost the sealer lease");
                    None
                }
            },
            None => match bucket.create(LEASE_KEY, value.clone()).await {
                Ok(next) => {
                    tracing::info!(node, "took the sealer lease");
                    Some(next)
                }
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => None,
                Err(error) => {
                    tracing::warn!(%error, node, "cannot contend for the sealer lease");
                    None
                }
            },
        };
        holding.send_replace(revision.is_some());
        tokio::select! {
            () = tokio::time::sleep(renew_every) => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
    }
    holding.send_replace(false);
    if let Some(held) = revision {
        // A delete marker written against the revision we hold: never removes another's lease.
        match bucket.delete_expect_revision(LEASE_KEY, Some(held)).await {
            Ok(()) => tracing::info!(node, "released the sealer lease"),
            Err(error) => tracing::warn!(%error, node, "cannot release the sealer lease"),
        }
    }
}
