//! `checkpoints.log`: the signed checkpoints, append-only.
//!
//! # Format
//!
//! A sequence of 184-byte entries, oldest first: the 176 bytes of `SignedCheckpoint::encode`
//! followed by a checksum, the first 8 bytes of blake3 in derive-key mode (context string
//! `cairn checkpoint log v1`) over those 176 bytes. A partial last entry, or a last entry failing
//! its checksum, is a save that was never acknowledged and is cut on open; a bad entry before
//! the last is corruption. Tree sizes never decrease along the file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, RwLock};

use cairn_ledger::{MerkleTree, SignedCheckpoint};
use cairn_store::StoreError;
use tracing::warn;

use crate::segment::sync_dir;

/// Bytes of an encoded signed checkpoint.
const CHECKPOINT_BYTES: usize = 176;
/// Bytes of one entry: the checkpoint and its checksum.
const ENTRY_BYTES: u64 = CHECKPOINT_BYTES as u64 + 8;

/// The name of the checkpoint log in the data directory.
pub(crate) const CHECKPOINTS_FILE: &str = "checkpoints.log";

static ENTRY_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key("cairn checkpoint log v1"));

fn entry_checksum(bytes: &[u8]) -> [u8; 8] {
    let mut hasher = ENTRY_HASHER.clone();
    hasher.update(bytes);
    hasher.finalize().as_bytes()[..8]
        .try_into()
        .expect("8 bytes")
}

/// The checkpoint log. Saves are serialised by the file's lock, held across the check, the
/// write and the sync; the latest checkpoint is also kept apart so reading it never waits for a
/// sync.
pub(crate) struct Checkpoints {
    path: PathBuf,
    /// `None` once the store is closed.
    file: Mutex<Option<LogFile>>,
    latest: RwLock<Option<SignedCheckpoint>>,
}

struct LogFile {
    file: File,
    entries: u64,
}

impl Checkpoints {
    /// Opens the log in `dir` (creating it if missing), cuts a torn last entry, and checks every
    /// checkpoint against the ledger's tree: each must sign the tree's root at its size.
    pub(crate) fn open(dir: &Path, tree: &MerkleTree) -> Result<Checkpoints, StoreError> {
        let path = dir.join(CHECKPOINTS_FILE);
        let name = path.display().to_string();
        let existed = path.exists();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| StoreError::io(format!("open {name}"), error))?;
        if !existed {
            file.sync_all()
                .map_err(|error| StoreError::io(format!("sync {name}"), error))?;
            sync_dir(dir)
                .map_err(|error| StoreError::io(format!("sync {}", dir.display()), error))?;
        }
        let len = file
            .metadata()
            .map_err(|error| StoreError::io(format!("stat {name}"), error))?
            .len();
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|error| StoreError::io(format!("read {name}"), error))?;
        let mut entries = len / ENTRY_BYTES;
        let mut keep = entries * ENTRY_BYTES;
        let mut latest: Option<SignedCheckpoint> = None;
        for entry in 0..entries {
            let bytes =
                &bytes[(entry * ENTRY_BYTES) as usize..((entry + 1) * ENTRY_BYTES) as usize];
            let corrupt = |detail: String| StoreError::Corrupt {
                position: None,
                detail: format!(
                    "{name}: entry {entry} (offset {}): {detail}",
                    entry * ENTRY_BYTES
                ),
            };
            let (encoded, checksum) = bytes.split_at(CHECKPOINT_BYTES);
            if entry_checksum(encoded) != checksum {
                if entry + 1 == entries {
                    keep = entry * ENTRY_BYTES;
                    entries -= 1;
                    break;
                }
                return Err(corrupt("checksum does not match".into()));
            }
            let checkpoint =
                SignedCheckpoint::decode(encoded).map_err(|error| corrupt(error.to_string()))?;
            let size = checkpoint.checkpoint.tree_size;
            if let Some(previous) = &latest
                && size < previous.checkpoint.tree_size
            {
                return Err(corrupt(format!(
                    "tree size {size} goes back from {}",
                    previous.checkpoint.tree_size
                )));
            }
            if size > tree.len() {
                return Err(corrupt(format!(
                    "signs a tree of {size} records, but the segments hold {}",
                    tree.len()
                )));
            }
            let root = tree.root_at(size)?;
            if root != checkpoint.checkpoint.root {
                return Err(corrupt(format!(
                    "signs root {} at size {size}, but the segments give {root}",
                    checkpoint.checkpoint.root
                )));
            }
            latest = Some(checkpoint);
        }
        if keep != len {
            file.set_len(keep)
                .map_err(|error| StoreError::io(format!("cut the torn tail of {name}"), error))?;
            file.sync_all()
                .map_err(|error| StoreError::io(format!("sync {name}"), error))?;
            warn!(file = %name, offset = keep, bytes_cut = len - keep, "cut a torn checkpoint: its save was never acknowledged");
        }
        Ok(Checkpoints {
            path,
            file: Mutex::new(Some(LogFile { file, entries })),
            latest: RwLock::new(latest),
        })
    }

    fn closed(&self) -> StoreError {
        StoreError::Unavailable(format!("{} is closed", self.path.display()))
    }

    /// The newest checkpoint.
    pub(crate) fn latest(&self) -> Option<SignedCheckpoint> {
        self.latest
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Appends `checkpoint` durably after `check` accepts it against the latest one (blocking:
    /// call from a blocking thread). The check runs under the file's lock, so two saves cannot
    /// both pass it against the same latest checkpoint.
    pub(crate) fn save(
        &self,
        checkpoint: SignedCheckpoint,
        check: impl FnOnce(Option<&SignedCheckpoint>, &SignedCheckpoint) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut file = self.file.lock().map_err(|_| self.closed())?;
        let file = file.as_mut().ok_or_else(|| self.closed())?;
        check(self.latest().as_ref(), &checkpoint)?;
        let encoded = checkpoint.encode();
        if encoded.len() != CHECKPOINT_BYTES {
            return Err(StoreError::Corrupt {
                position: None,
                detail: format!(
                    "a signed checkpoint encodes to {} bytes, the log format needs {CHECKPOINT_BYTES}",
                    encoded.len()
                ),
            });
        }
        let mut entry = Vec::with_capacity(ENTRY_BYTES as usize);
        entry.extend_from_slice(&encoded);
        entry.extend_from_slice(&entry_checksum(&encoded));
        let offset = file.entries * ENTRY_BYTES;
        file.file
            .write_all_at(&entry, offset)
            .and_then(|()| file.file.sync_data())
            .map_err(|error| {
                StoreError::io(
                    format!("append to {} at offset {offset}", self.path.display()),
                    error,
                )
            })?;
        file.entries += 1;
        *self
            .latest
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(checkpoint);
        Ok(())
    }

    /// Closes the file; later saves fail with [`StoreError::Unavailable`].
    pub(crate) fn close(&self) {
        *self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}
