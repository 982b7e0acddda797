//! Values every node of one ledger must agree on (the ledger's identity: its log id, checkpoint
//! signing key and subject-key secret), in the KV bucket `<STREAM>_IDENTITY`. The first node to
//! start creates each value; every later node adopts it.
//!
//! Whoever may read this bucket may sign checkpoints for the ledger: give cairn its own NATS
//! account, and no other user read access to the bucket.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use cairn_store::StoreError;

use crate::store::JetStreamOptions;

fn unavailable(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {error}"))
}

/// The value of `key`: `proposed` if this call created it, else the one created before.
pub async fn agree(
    js: &jetstream::Context,
    options: &JetStreamOptions,
    key: &str,
    proposed: Bytes,
) -> Result<Bytes, StoreError> {
    let name = format!("{}_IDENTITY", options.stream);
    let bucket = match js.get_key_value(&name).await {
        Ok(bucket) => bucket,
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: name.clone(),
                description: "the cairn ledger's identity".into(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: options.replicas,
                ..Default::default()
            })
            .await
            .map_err(|error| unavailable(&format!("cannot create bucket {name}"), error))?,
    };
    match bucket.create(key, proposed.clone()).await {
        Ok(_) => Ok(proposed),
        Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => bucket
            .get(key)
            .await
            .map_err(|error| unavailable(&format!("cannot read {key} from {name}"), error))?
            .ok_or_else(|| StoreError::Unavailable(format!("{key} vanished from {name}"))),
        Err(error) => Err(unavailable(&format!("cannot store {key} in {name}"), error)),
    }
}
