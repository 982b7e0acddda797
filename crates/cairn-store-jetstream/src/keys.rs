//! Data keys in a KV bucket (`<STREAM>_KEYS`), one entry per key id (hex).
//!
//! A key's entry holds its 32 bytes; destroying it writes a tombstone revision and then
//! securely erases the revision that held the bytes (`STREAM.MSG.DELETE` without `no_erase`:
//! JetStream overwrites the message in its files). The tombstone keeps the id taken for ever, so
//! a destroyed id cannot be created again. The bucket's stream must allow deletes for the erase;
//! cairn sets that when it creates the bucket and checks it at start.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use cairn_ledger::{DataKey, KeyId};
use cairn_store::{KeyState, StoreError};
use futures::StreamExt;

use crate::store::JetStreamOptions;

/// The value of a destroyed key's entry.
const TOMBSTONE: &[u8] = b"destroyed";

fn unavailable(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {error}"))
}

/// The key bucket.
pub(crate) struct Keys {
    bucket: kv::Store,
    stream: jetstream::stream::Stream,
}

impl Keys {
    /// Opens the bucket, creating it if missing, and makes sure its stream lets cairn erase.
    pub(crate) async fn open(
        js: &jetstream::Context,
        options: &JetStreamOptions,
    ) -> Result<Keys, StoreError> {
        let name = options.keys_bucket();
        let stream_name = format!("KV_{name}");
        // The bucket's stream is created here rather than by `create_key_value`, which denies
        // deletes for good (a stream cannot take that back), and cairn must erase.
        let mut stream = match js.get_stream(&stream_name).await {
            Ok(stream) => stream,
            Err(_) => js
                .create_stream(jetstream::stream::Config {
                    name: stream_name.clone(),
                    description: Some("cairn data keys".into()),
                    subjects: vec![format!("$KV.{name}.>")],
                    max_messages_per_subject: 2,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: options.replicas,
                    discard: jetstream::stream::DiscardPolicy::New,
                    allow_direct: true,
                    deny_delete: false,
                    deny_purge: true,
                    ..Default::default()
                })
                .await
                .map_err(|error| unavailable(&format!("cannot create key bucket {name}"), error))?,
        };
        let config = stream
            .info()
            .await
            .map_err(|error| unavailable(&format!("cannot read {stream_name}"), error))?
            .config
            .clone();
        let mut problems = Vec::new();
        if config.deny_delete {
            problems.push("it denies deletes, so destroyed keys cannot be erased");
        }
        if config.storage != jetstream::stream::StorageType::File {
            problems.push("it is not on file storage");
        }
        if !config.max_age.is_zero() || config.max_bytes > 0 || config.max_messages > 0 {
            problems.push("it has an age, byte or message limit that would drop keys");
        }
        if !problems.is_empty() {
            return Err(StoreError::InvalidArgument {
                field: "store",
                reason: format!(
                    "key bucket {name} cannot hold data keys: {}",
                    problems.join("; ")
                ),
            });
        }
        let bucket = js
            .get_key_value(&name)
            .await
            .map_err(|error| unavailable(&format!("cannot open key bucket {name}"), error))?;
        Ok(Keys { bucket, stream })
    }

    pub(crate) async fn create(&self, key_id: KeyId, key: DataKey) -> Result<(), StoreError> {
        match self
            .bucket
            .create(hex::encode(key_id.0), Bytes::copy_from_slice(&key.0))
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(StoreError::KeyExists(key_id))
            }
            Err(error) => Err(unavailable("cannot store a data key", error)),
        }
    }

    pub(crate) async fn get(&self, key_id: KeyId) -> Result<KeyState, StoreError> {
        let entry = self
            .bucket
            .entry(hex::encode(key_id.0))
            .await
            .map_err(|error| unavailable("cannot read a data key", error))?;
        match entry {
            None => Ok(KeyState::Unknown),
            Some(entry) if entry.operation != kv::Operation::Put => Ok(KeyState::Unknown),
            Some(entry) if entry.value.as_ref() == TOMBSTONE => Ok(KeyState::Destroyed),
            Some(entry) => {
                let bytes: [u8; 32] =
                    entry
                        .value
                        .as_ref()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt {
                            position: None,
                            detail: format!(
                                "data key {key_id} holds {} bytes, not 32",
                                entry.value.len()
                            ),
                        })?;
                Ok(KeyState::Active(DataKey(bytes)))
            }
        }
    }

    pub(crate) async fn destroy(&self, key_id: KeyId) -> Result<bool, StoreError> {
        let key = hex::encode(key_id.0);
        loop {
            let entry = self
                .bucket
                .entry(key.as_str())
                .await
                .map_err(|error| unavailable("cannot read a data key", error))?;
            let Some(entry) = entry.filter(|entry| entry.operation == kv::Operation::Put) else {
                return Ok(false);
            };
            if entry.value.as_ref() == TOMBSTONE {
                // Destroyed already; erase what a destroy cut short may have left.
                self.scrub(&key).await?;
                return Ok(false);
            }
            match self
                .bucket
                .update(key.as_str(), Bytes::from_static(TOMBSTONE), entry.revision)
                .await
            {
                Ok(_) => {
                    self.erase(entry.revision).await?;
                    return Ok(true);
                }
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(error) => return Err(unavailable("cannot destroy a data key", error)),
            }
        }
    }

    /// Securely erases every revision of `key` that is not the tombstone.
    async fn scrub(&self, key: &str) -> Result<(), StoreError> {
        let mut history = self
            .bucket
            .history(key)
            .await
            .map_err(|error| unavailable("cannot read a data key's history", error))?;
        let mut revisions = Vec::new();
        while let Some(entry) = history.next().await {
            let entry =
                entry.map_err(|error| unavailable("cannot read a data key's history", error))?;
            if entry.value.as_ref() != TOMBSTONE {
                revisions.push(entry.revision);
            }
        }
        for revision in revisions {
            self.erase(revision).await?;
        }
        Ok(())
    }

    async fn erase(&self, revision: u64) -> Result<(), StoreError> {
        match self.stream.delete_message(revision).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let text = error.to_string();
                // Erased already (a second destroy, or a scrub after one).
                if text.contains("no message found") || text.contains("10037") {
                    Ok(())
                } else {
                    Err(unavailable("cannot erase a destroyed data key", error))
                }
            }
        }
    }
}
