//! `keys.dat`: the data keys, in fixed-size slots that are overwritten in place when a key is
//! destroyed.
//!
//! Not in sled on purpose: sled 0.34 never overwrites in place, so a destroyed key's bytes would
//! stay in its log files. Here, destroying a key rewrites its slot with the key bytes zeroed and
//! syncs the file, so the key is gone from the file (what the drive does with the old block is
//! below what a file can control).
//!
//! # Format
//!
//! The file is a sequence of 64-byte slots, one per key ever created, in creation order:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 16 | key id |
//! | 16 | 1 | state: 1 active, 2 destroyed |
//! | 17 | 32 | the key; all zero once destroyed |
//! | 49 | 7 | reserved, zero |
//! | 56 | 8 | checksum: the first 8 bytes of blake3 in derive-key mode, context string `cairn key slot v1`, over bytes 0..56 |
//!
//! Slots are 64 bytes so that none straddles a 512-byte sector: the in-place overwrite of a
//! destroy is a single sector write, which drives complete or not at all. A partial slot, or a
//! last slot failing its checksum, is a create that was never acknowledged and is cut on open;
//! a bad slot before the last is corruption.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, RwLock};

use cairn_ledger::{DataKey, KeyId};
use cairn_store::{KeyState, StoreError};
use tracing::warn;

use crate::segment::open_or_create_durably;

/// Bytes per slot.
const SLOT_BYTES: u64 = 64;
/// Bytes covered by the checksum.
const SLOT_CHECKED_BYTES: usize = 56;
const STATE_ACTIVE: u8 = 1;
const STATE_DESTROYED: u8 = 2;

static SLOT_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key("cairn key slot v1"));

/// The name of the key file in the data directory.
pub(crate) const KEYS_FILE: &str = "keys.dat";

fn encode_slot(key_id: KeyId, key: Option<&[u8; 32]>) -> [u8; SLOT_BYTES as usize] {
    let mut slot = [0u8; SLOT_BYTES as usize];
    slot[..16].copy_from_slice(&key_id.0);
    match key {
        Some(key) => {
            slot[16] = STATE_ACTIVE;
            slot[17..49].copy_from_slice(key);
        }
        None => slot[16] = STATE_DESTROYED,
    }
    let checksum = slot_checksum(&slot[..SLOT_CHECKED_BYTES]);
    slot[SLOT_CHECKED_BYTES..].copy_from_slice(&checksum);
    slot
}

fn slot_checksum(bytes: &[u8]) -> [u8; 8] {
    let mut hasher = SLOT_HASHER.clone();
    hasher.update(bytes);
    hasher.finalize().as_bytes()[..8]
        .try_into()
        .expect("8 bytes")
}

/// A key as kept in memory.
struct KeyEntry {
    slot: u64,
    /// `None` once destroyed.
    key: Option<[u8; 32]>,
}

/// The key file and the keys it holds. Lookups read the map and never wait for a sync; changes
/// are serialised by the file's lock, which is held across the write and the sync.
pub(crate) struct Keys {
    path: PathBuf,
    /// `None` once the store is closed.
    file: Mutex<Option<KeyFile>>,
    map: RwLock<HashMap<KeyId, KeyEntry>>,
}

struct KeyFile {
    file: File,
    slots: u64,
}

impl Keys {
    /// Opens `keys.dat` in `dir`, creating it if missing and cutting a torn last slot.
    pub(crate) fn open(dir: &Path) -> Result<Keys, StoreError> {
        let path = dir.join(KEYS_FILE);
        let name = path.display().to_string();
        let (file, len) = open_or_create_durably(dir, &path)?;
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|error| StoreError::io(format!("read {name}"), error))?;
        let mut slots = len / SLOT_BYTES;
        let mut keep = slots * SLOT_BYTES;
        let mut map = HashMap::new();
        for slot in 0..slots {
            let bytes = &bytes[(slot * SLOT_BYTES) as usize..((slot + 1) * SLOT_BYTES) as usize];
            let corrupt = |detail: &str| StoreError::Corrupt {
                position: None,
                detail: format!(
                    "{name}: slot {slot} (offset {}): {detail}",
                    slot * SLOT_BYTES
                ),
            };
            if slot_checksum(&bytes[..SLOT_CHECKED_BYTES]) != bytes[SLOT_CHECKED_BYTES..] {
                if slot + 1 == slots {
                    keep = slot * SLOT_BYTES;
                    slots -= 1;
                    break;
                }
                return Err(corrupt("checksum does not match"));
            }
            let key_id = KeyId(bytes[..16].try_into().expect("16 bytes"));
            let key_bytes: [u8; 32] = bytes[17..49].try_into().expect("32 bytes");
            let key = match bytes[16] {
                STATE_ACTIVE => Some(key_bytes),
                STATE_DESTROYED if key_bytes == [0; 32] => None,
                STATE_DESTROYED => return Err(corrupt("a destroyed key still has key bytes")),
                other => return Err(corrupt(&format!("unknown state {other}"))),
            };
            if map.insert(key_id, KeyEntry { slot, key }).is_some() {
                return Err(corrupt(&format!("key {key_id} has a second slot")));
            }
        }
        if keep != len {
            file.set_len(keep)
                .map_err(|error| StoreError::io(format!("cut the torn tail of {name}"), error))?;
            file.sync_all()
                .map_err(|error| StoreError::io(format!("sync {name}"), error))?;
            warn!(file = %name, offset = keep, bytes_cut = len - keep, "cut a torn key slot: its create was never acknowledged");
        }
        Ok(Keys {
            path,
            file: Mutex::new(Some(KeyFile { file, slots })),
            map: RwLock::new(map),
        })
    }

    fn closed(&self) -> StoreError {
        StoreError::Unavailable(format!("{} is closed", self.path.display()))
    }

    /// Stores a new key durably (blocking: call from a blocking thread).
    pub(crate) fn create(&self, key_id: KeyId, key: &DataKey) -> Result<(), StoreError> {
        let mut file = self.file.lock().map_err(|_| self.closed())?;
        let file = file.as_mut().ok_or_else(|| self.closed())?;
        if self
            .map
            .read()
            .map_err(|_| self.closed())?
            .contains_key(&key_id)
        {
            return Err(StoreError::KeyExists(key_id));
        }
        let slot = file.slots;
        let bytes = encode_slot(key_id, Some(&key.0));
        file.file
            .write_all_at(&bytes, slot * SLOT_BYTES)
            .and_then(|()| file.file.sync_data())
            .map_err(|error| {
                StoreError::io(
                    format!("write key slot {slot} of {}", self.path.display()),
                    error,
                )
            })?;
        file.slots += 1;
        self.map.write().map_err(|_| self.closed())?.insert(
            key_id,
            KeyEntry {
                slot,
                key: Some(key.0),
            },
        );
        Ok(())
    }

    /// Looks a key up (never blocks on I/O).
    pub(crate) fn get(&self, key_id: KeyId) -> Result<KeyState, StoreError> {
        let map = self.map.read().map_err(|_| self.closed())?;
        Ok(match map.get(&key_id) {
            Some(KeyEntry { key: Some(key), .. }) => KeyState::Active(DataKey(*key)),
            Some(KeyEntry { key: None, .. }) => KeyState::Destroyed,
            None => KeyState::Unknown,
        })
    }

    /// Destroys a key durably: overwrites its slot in place with the key zeroed, then syncs
    /// (blocking: call from a blocking thread). Returns whether it was active.
    pub(crate) fn destroy(&self, key_id: KeyId) -> Result<bool, StoreError> {
        let mut file = self.file.lock().map_err(|_| self.closed())?;
        let file = file.as_mut().ok_or_else(|| self.closed())?;
        let slot = match self.map.read().map_err(|_| self.closed())?.get(&key_id) {
            Some(KeyEntry { slot, key: Some(_) }) => *slot,
            _ => return Ok(false),
        };
        let bytes = encode_slot(key_id, None);
        file.file
            .write_all_at(&bytes, slot * SLOT_BYTES)
            .and_then(|()| file.file.sync_data())
            .map_err(|error| {
                StoreError::io(
                    format!("overwrite key slot {slot} of {}", self.path.display()),
                    error,
                )
            })?;
        let mut map = self.map.write().map_err(|_| self.closed())?;
        if let Some(entry) = map.get_mut(&key_id) {
            if let Some(key) = entry.key.as_mut() {
                key.fill(0);
            }
            entry.key = None;
        }
        Ok(true)
    }

    /// Closes the file; later calls fail with [`StoreError::Unavailable`].
    pub(crate) fn close(&self) {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *file = None;
        let mut map = self
            .map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for entry in map.values_mut() {
            if let Some(key) = entry.key.as_mut() {
                key.fill(0);
            }
        }
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_destroyed_slots_hold_no_key() {
        let slot = encode_slot(KeyId([1; 16]), Some(&[7; 32]));
        assert_eq!(slot[16], STATE_ACTIVE);
        assert_eq!(&slot[17..49], &[7; 32]);
        assert_eq!(slot_checksum(&slot[..56]), slot[56..]);
        let destroyed = encode_slot(KeyId([1; 16]), None);
        assert_eq!(destroyed[16], STATE_DESTROYED);
        assert_eq!(&destroyed[17..56], &[0; 39]);
    }
}
