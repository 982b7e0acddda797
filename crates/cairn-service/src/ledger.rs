//! Appending and reading raw ledger events, with the personal part of each payload sealed under
//! its data subject's key.

use std::sync::{Arc, RwLock};

use cairn_ledger::{
    DataClass, DataKey, EventId, Hash, LineageParent, Record, SealedPayload, StreamId,
    limits as ledger_limits, open_sealed, seal_personal,
};
use cairn_store::{
    AppendResult, EventStore, ExpectedVersion, KeyState, KeyStore, NewEvent, StoreError,
};

use crate::error::ServiceError;
use crate::identity::ServerIdentity;

/// Personal data of one data subject, to be sealed under that subject's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonalData {
    /// The data subject: a stable principal id.
    pub subject: String,
    /// The personal part of the payload, in the clear (it is sealed before it is stored).
    pub bytes: Vec<u8>,
}

/// One event as a caller describes it, before sealing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDraft {
    /// The idempotency key; `None` generates a random id (a retry then records twice).
    pub event_id: Option<EventId>,
    /// The event's type name.
    pub event_type: String,
    /// The payload's schema version.
    pub event_schema_version: u16,
    /// The event that caused this one.
    pub causation_id: Option<EventId>,
    /// The request or workflow it belongs to.
    pub correlation_id: Option<EventId>,
    /// Lineage edges.
    pub lineage: Vec<LineageParent>,
    /// The data class; `None` means personal when there is personal data, public otherwise.
    pub data_class: Option<DataClass>,
    /// The non-personal part of the payload, stored in the clear.
    pub clear: Vec<u8>,
    /// The personal part, if any.
    pub personal: Option<PersonalData>,
    /// The policy bundle the caller believes is in force: when given and another is, the append
    /// is refused (FAILED_PRECONDITION). The ledger stamps every event with the bundle actually in
    /// force.
    pub expected_policy_bundle_hash: Option<Hash>,
}

/// An append of drafts to one stream.
#[derive(Clone, Debug)]
pub struct AppendCommand {
    /// The stream.
    pub stream: StreamId,
    /// The concurrency condition.
    pub expected: ExpectedVersion,
    /// The principal on whose behalf the events are recorded.
    pub actor: String,
    /// The events.
    pub events: Vec<EventDraft>,
}

/// What a reader sees of a record's personal part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersonalView {
    /// The record has no personal part.
    None,
    /// Opened.
    Open(Vec<u8>),
    /// Present but not asked for (or not allowed).
    Withheld,
    /// Its key was destroyed: erased for good.
    Erased,
}

/// A record with its payload decoded for a reader.
#[derive(Clone, Debug)]
pub struct OpenedRecord {
    /// The record as stored (envelope bytes and sealed payload, for verification).
    pub record: Arc<Record>,
    /// The clear part of the payload.
    pub clear: Vec<u8>,
    /// The personal part, as this reader sees it.
    pub personal: PersonalView,
}

/// Most data-key generations of one subject in one tenant: each erasure of its personal data ends
/// one.
pub const KEY_GENERATIONS_MAX: u32 = 64;

/// Longest data subject id, in bytes.
pub const DATA_SUBJECT_BYTES_MAX: usize = 256;

/// The raw-ledger use cases over a store that is also a key store.
pub struct Ledger<S> {
    store: Arc<S>,
    identity: Arc<ServerIdentity>,
    /// The hash of the policy bundle in force, stamped on every event appended.
    policy_bundle_hash: RwLock<Hash>,
    /// Held (shared) by an append of personal data from sealing until the store acknowledges,
    /// and (exclusive) by a retention sweep while it checks and destroys keys, so no personal
    /// data is sealed under a key between the sweep's last look at it and its destruction.
    sealing: tokio::sync::RwLock<()>,
}

impl<S: EventStore + KeyStore> Ledger<S> {
    /// Wraps a store.
    pub fn new(store: Arc<S>, identity: Arc<ServerIdentity>) -> Ledger<S> {
        Ledger {
            store,
            identity,
            policy_bundle_hash: RwLock::new(Hash::ZERO),
            sealing: tokio::sync::RwLock::new(()),
        }
    }

    /// The policy bundle in force: every event appended from now on carries its hash.
    pub fn set_policy_bundle_hash(&self, hash: Hash) {
        *self
            .policy_bundle_hash
            .write()
            .unwrap_or_else(|e| e.into_inner()) = hash;
    }

    /// The hash of the policy bundle in force (zero until one is activated).
    pub fn policy_bundle_hash(&self) -> Hash {
        *self
            .policy_bundle_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The server identity.
    pub fn identity(&self) -> &Arc<ServerIdentity> {
        &self.identity
    }

    /// Seals each draft's personal part and appends the batch. Returns the store's answer and the
    /// event ids, in order.
    pub async fn append(
        &self,
        command: AppendCommand,
    ) -> Result<(AppendResult, Vec<EventId>), ServiceError> {
        let policy_bundle_hash = self.policy_bundle_hash();
        let _sealing = if command.events.iter().any(|draft| draft.personal.is_some()) {
            Some(self.sealing.read().await)
        } else {
            None
        };
        let mut events = Vec::with_capacity(command.events.len());
        for (index, draft) in command.events.into_iter().enumerate() {
            if let Some(expected) = draft.expected_policy_bundle_hash
                && expected != policy_bundle_hash
            {
                return Err(ServiceError::FailedPrecondition(format!(
                    "event {index}: policy_bundle_hash {expected} is not the bundle in force \
                     ({policy_bundle_hash})"
                )));
            }
            let mut event = self
                .seal(&command.stream, &command.actor, index, draft)
                .await?;
            event.policy_bundle_hash = policy_bundle_hash;
            events.push(event);
        }
        let ids = events.iter().map(|event| event.event_id).collect();
        let result = self
            .store
            .append(command.stream, command.expected, events)
            .await?;
        Ok((result, ids))
    }

    async fn seal(
        &self,
        stream: &StreamId,
        actor: &str,
        index: usize,
        draft: EventDraft,
    ) -> Result<NewEvent, ServiceError> {
        let event_id = draft
            .event_id
            .unwrap_or_else(|| EventId(cairn_store::random_bytes()));
        let data_class = draft.data_class.unwrap_or(if draft.personal.is_some() {
            DataClass::Personal
        } else {
            DataClass::Public
        });
        if data_class.requires_sealing() != draft.personal.is_some() {
            return Err(ServiceError::InvalidArgument {
                field: "data_class",
                reason: format!(
                    "event {index}: data class {} {} personal data",
                    data_class.as_str(),
                    if data_class.requires_sealing() {
                        "needs"
                    } else {
                        "cannot carry"
                    }
                ),
            });
        }
        let (key_id, sealed) = match draft.personal {
            None => (None, None),
            Some(personal) => {
                if personal.subject.is_empty() || personal.subject.len() > DATA_SUBJECT_BYTES_MAX {
                    return Err(ServiceError::InvalidArgument {
                        field: "data_subject",
                        reason: format!(
                            "event {index}: must be 1 to {DATA_SUBJECT_BYTES_MAX} bytes, got {}",
                            personal.subject.len()
                        ),
                    });
                }
                if personal.bytes.len() > ledger_limits::PAYLOAD_BYTES_MAX {
                    return Err(ServiceError::Store(StoreError::LimitExceeded {
                        what: "personal payload bytes",
                        limit: ledger_limits::PAYLOAD_BYTES_MAX as u64,
                        actual: personal.bytes.len() as u64,
                    }));
                }
                let (key_id, key) = self.subject_key(&stream.tenant, &personal.subject).await?;
                let nonce = retry_stable_nonce(&key, &event_id, &personal.bytes);
                (
                    Some(key_id),
                    Some(seal_personal(
                        key_id,
                        &key,
                        nonce,
                        &event_id,
                        &personal.bytes,
                    )),
                )
            }
        };
        let payload = SealedPayload {
            clear: draft.clear,
            sealed,
        }
        .encode();
        Ok(NewEvent {
            event_id,
            event_type: draft.event_type,
            event_schema_version: draft.event_schema_version,
            actor: actor.to_owned(),
            causation_id: draft.causation_id,
            correlation_id: draft.correlation_id,
            lineage: draft.lineage,
            data_class,
            key_id,
            policy_bundle_hash: Hash::ZERO,
            payload,
        })
    }

    /// Holds off every append of personal data until the guard is dropped (appends without
    /// personal data go on). For a retention sweep's check-and-destroy.
    pub async fn hold_sealing(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.sealing.write().await
    }

    /// The subject's data key in force: the first generation whose key is not destroyed, created
    /// on first use. A destroyed key is never revived: personal data recorded after an erasure is
    /// sealed under the next generation, which the erasure did not cover.
    async fn subject_key(
        &self,
        tenant: &cairn_ledger::TenantId,
        subject: &str,
    ) -> Result<(cairn_ledger::KeyId, DataKey), ServiceError> {
        for generation in 0..KEY_GENERATIONS_MAX {
            let key_id = self.identity.subject_key_id_at(tenant, subject, generation);
            for _ in 0..2 {
                match self.store.key(key_id).await? {
                    KeyState::Active(key) => return Ok((key_id, key)),
                    KeyState::Destroyed => break,
                    KeyState::Unknown => match self
                        .store
                        .create_key(key_id, DataKey(cairn_store::random_bytes()))
                        .await
                    {
                        Ok(()) => continue,
                        // Another request created it first: read it back.
                        Err(StoreError::KeyExists(_)) => continue,
                        Err(other) => return Err(other.into()),
                    },
                }
            }
        }
        Err(ServiceError::FailedPrecondition(format!(
            "the data subject's personal data was erased {KEY_GENERATIONS_MAX} times in this \
             tenant, the limit; no more can be sealed for it"
        )))
    }

    /// The ids of every data key a subject has had in a tenant, generation by generation, up to
    /// the first that was never created.
    pub async fn subject_keys(
        &self,
        tenant: &cairn_ledger::TenantId,
        subject: &str,
    ) -> Result<Vec<(cairn_ledger::KeyId, KeyState)>, ServiceError> {
        let mut keys = Vec::new();
        for generation in 0..KEY_GENERATIONS_MAX {
            let key_id = self.identity.subject_key_id_at(tenant, subject, generation);
            match self.store.key(key_id).await? {
                KeyState::Unknown => break,
                state => keys.push((key_id, state)),
            }
        }
        Ok(keys)
    }

    /// Decodes a record's payload for a reader, opening the personal part if asked and possible.
    pub async fn open(
        &self,
        record: Arc<Record>,
        include_personal: bool,
    ) -> Result<OpenedRecord, ServiceError> {
        let payload = SealedPayload::decode(&record.payload)?;
        let personal = match (&payload.sealed, include_personal) {
            (None, _) => PersonalView::None,
            (Some(_), false) => PersonalView::Withheld,
            (Some(part), true) => match self.store.key(part.key_id).await? {
                KeyState::Active(key) => {
                    PersonalView::Open(open_sealed(part, &key, &record.envelope.event_id)?)
                }
                KeyState::Destroyed => PersonalView::Erased,
                KeyState::Unknown => {
                    tracing::warn!(position = %record.position(), key_id = %part.key_id, "record names a key the key store never had");
                    PersonalView::Erased
                }
            },
        };
        Ok(OpenedRecord {
            record,
            clear: payload.clear,
            personal,
        })
    }
}

/// The nonce for sealing: a keyed hash of the event id and the plaintext under the data key, so a
/// retried append seals to the same bytes (and stays idempotent) while different plaintexts never
/// share a nonce under one key.
fn retry_stable_nonce(key: &DataKey, event_id: &EventId, plaintext: &[u8]) -> [u8; 24] {
    let mut hasher = blake3::Hasher::new_keyed(&key.0);
    hasher.update(b"cairn seal nonce v1\0");
    hasher.update(&event_id.0);
    hasher.update(plaintext);
    hasher.finalize().as_bytes()[..24]
        .try_into()
        .expect("24 of 32 bytes")
}

#[cfg(test)]
mod tests {
    use cairn_ledger::{Position, TenantId};
    use cairn_store::MemoryStore;

    use super::*;

    fn draft(id: u8, personal: Option<&str>) -> EventDraft {
        EventDraft {
            event_id: Some(EventId([id; 16])),
            event_type: "FeedbackReceived".into(),
            event_schema_version: 1,
            causation_id: None,
            correlation_id: None,
            lineage: vec![],
            data_class: None,
            clear: b"clear part".to_vec(),
            personal: personal.map(|subject| PersonalData {
                subject: subject.into(),
                bytes: b"alice@example.com said the build is slow".to_vec(),
            }),
            expected_policy_bundle_hash: None,
        }
    }

    fn command(events: Vec<EventDraft>) -> AppendCommand {
        AppendCommand {
            stream: StreamId::new(TenantId::new("acme").unwrap(), "feedback", "f1").unwrap(),
            expected: ExpectedVersion::Any,
            actor: "user:alice".into(),
            events,
        }
    }

    #[tokio::test]
    async fn personal_data_is_sealed_opened_and_erased_with_its_key() {
        let store = MemoryStore::new();
        let ledger = Ledger::new(
            store.clone(),
            Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32])),
        );
        let (result, _) = ledger
            .append(command(vec![draft(1, Some("user:alice")), draft(2, None)]))
            .await
            .unwrap();
        assert_eq!(result.last_position, Position(2));
        let records = store.read_all(Position(1), 10).await.unwrap();
        let plaintext = b"alice@example.com said the build is slow";
        assert!(
            !records[0]
                .payload
                .windows(plaintext.len())
                .any(|w| w == plaintext),
            "stored sealed"
        );
        assert_eq!(records[0].envelope.data_class, DataClass::Personal);

        let opened = ledger.open(records[0].clone(), true).await.unwrap();
        assert_eq!(opened.personal, PersonalView::Open(plaintext.to_vec()));
        assert_eq!(opened.clear, b"clear part");
        assert_eq!(
            ledger
                .open(records[0].clone(), false)
                .await
                .unwrap()
                .personal,
            PersonalView::Withheld
        );
        assert_eq!(
            ledger
                .open(records[1].clone(), true)
                .await
                .unwrap()
                .personal,
            PersonalView::None
        );

        // A retry seals to the same bytes, so it is recognised as a retry.
        let (retry, _) = ledger
            .append(command(vec![draft(1, Some("user:alice")), draft(2, None)]))
            .await
            .unwrap();
        assert!(retry.deduplicated);

        let key_id = records[0].envelope.key_id.unwrap();
        let head_before = store.head().await.unwrap();
        assert!(store.destroy_key(key_id).await.unwrap());
        assert_eq!(
            ledger
                .open(records[0].clone(), true)
                .await
                .unwrap()
                .personal,
            PersonalView::Erased
        );
        assert_eq!(
            store.head().await.unwrap(),
            head_before,
            "erasure leaves every hash as it was"
        );
        // Personal data recorded after the erasure is sealed under the subject's next key, which
        // the erasure did not destroy; what was erased stays erased.
        ledger
            .append(command(vec![draft(3, Some("user:alice"))]))
            .await
            .unwrap();
        let after = store.read_all(Position(3), 1).await.unwrap();
        let next_key = after[0].envelope.key_id.unwrap();
        assert_ne!(next_key, key_id);
        assert_eq!(
            ledger.open(after[0].clone(), true).await.unwrap().personal,
            PersonalView::Open(plaintext.to_vec())
        );
        assert_eq!(
            ledger
                .open(records[0].clone(), true)
                .await
                .unwrap()
                .personal,
            PersonalView::Erased
        );
        let tenant = TenantId::new("acme").unwrap();
        let keys = ledger.subject_keys(&tenant, "user:alice").await.unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].0 == key_id && matches!(keys[0].1, KeyState::Destroyed));
        assert_eq!(keys[1].0, next_key);
    }

    #[tokio::test]
    async fn data_class_must_match_the_presence_of_personal_data() {
        let ledger = Ledger::new(
            MemoryStore::new(),
            Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32])),
        );
        let mut public_with_personal = draft(1, Some("user:bob"));
        public_with_personal.data_class = Some(DataClass::Public);
        assert!(matches!(
            ledger.append(command(vec![public_with_personal])).await,
            Err(ServiceError::InvalidArgument {
                field: "data_class",
                ..
            })
        ));
        let mut personal_without = draft(2, None);
        personal_without.data_class = Some(DataClass::Sensitive);
        assert!(matches!(
            ledger.append(command(vec![personal_without])).await,
            Err(ServiceError::InvalidArgument {
                field: "data_class",
                ..
            })
        ));
        let no_subject = draft(3, Some(""));
        assert!(matches!(
            ledger.append(command(vec![no_subject])).await,
            Err(ServiceError::InvalidArgument {
                field: "data_subject",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn every_event_carries_the_bundle_in_force_and_a_stale_expectation_is_refused() {
        let store = MemoryStore::new();
        let ledger = Ledger::new(
            store.clone(),
            Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32])),
        );
        ledger.append(command(vec![draft(1, None)])).await.unwrap();
        ledger.set_policy_bundle_hash(Hash([5; 32]));
        let mut expecting = draft(2, None);
        expecting.expected_policy_bundle_hash = Some(Hash([5; 32]));
        ledger.append(command(vec![expecting])).await.unwrap();
        let records = store.read_all(Position(1), 10).await.unwrap();
        assert_eq!(records[0].envelope.policy_bundle_hash, Hash::ZERO);
        assert_eq!(records[1].envelope.policy_bundle_hash, Hash([5; 32]));

        let mut stale = draft(3, None);
        stale.expected_policy_bundle_hash = Some(Hash::ZERO);
        let error = ledger.append(command(vec![stale])).await.unwrap_err();
        assert!(
            matches!(&error, ServiceError::FailedPrecondition(message) if message.contains("policy_bundle_hash")),
            "{error}"
        );
        assert_eq!(
            store.head().await.unwrap().position,
            Position(2),
            "nothing recorded"
        );
    }
}
