//! `checkpoints.log`: the signed checkpoints, append-only.
//!
//! # Format
//!
//! A sequence of 184-byte entries, oldest first: the 176 bytes of `SignedCheckpoint::encode`
//! followed by a checksum, the first 8 bytes of blake3 in derive-key mode (context string
//! `cairn checkpoint log v1`) over those 176 bytes. A partial last entry, or a last entry failing
//! its checksum, is a save that was never acknowledged and is cut on open; a bad entry before
//! the last is corruption. Tree sizes never decrease along the file.
//!
//! A checkpoint is saved (and fdatasync'd) only after every record it covers was acknowledged,
//! so the latest one's tree size is also a lower bound on what the segments must hold: the open
//! scan never cuts a record at or below it as a torn tail (see the `scan` module).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, RwLock};

use cairn_ledger::{Hash, MerkleTree, Position, SignedCheckpoint};
use cairn_store::StoreError;
use tracing::warn;

use crate::segment::open_or_create_durably;

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

/// The entry of `checkpoint` as the log stores it.
pub(crate) fn encode_entry(checkpoint: &SignedCheckpoint) -> Result<Vec<u8>, StoreError> {
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
    Ok(entry)
}

/// A checkpoint log as read from its file: every entry checked on its own (checksum, encoding,
/// tree sizes never decreasing), none yet against the segments.
#[derive(Debug, Default)]
pub(crate) struct CheckpointLog {
    /// The checkpoints, oldest first.
    pub entries: Vec<SignedCheckpoint>,
    /// Bytes of the entries kept: less than `file_len` when a torn last entry follows them.
    pub valid_len: u64,
    /// Bytes of the file (0 when it does not exist).
    pub file_len: u64,
}

impl CheckpointLog {
    /// The tree size of the newest checkpoint (0 when there is none).
    pub(crate) fn latest_tree_size(&self) -> u64 {
        self.entries
            .last()
            .map_or(0, |latest| latest.checkpoint.tree_size)
    }
}

/// Reads the checkpoint log at `path`, changing nothing: a missing file is an empty log, and a
/// torn last entry is left out (and reported in [`CheckpointLog::valid_len`]).
pub(crate) fn read_log(path: &Path) -> Result<CheckpointLog, StoreError> {
    let name = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(CheckpointLog::default());
        }
        Err(error) => return Err(StoreError::io(format!("read {name}"), error)),
    };
    let file_len = bytes.len() as u64;
    let mut whole_entries = file_len / ENTRY_BYTES;
    let mut entries: Vec<SignedCheckpoint> = Vec::with_capacity(whole_entries as usize);
    for entry in 0..whole_entries {
        let bytes = &bytes[(entry * ENTRY_BYTES) as usize..((entry + 1) * ENTRY_BYTES) as usize];
        let corrupt = |detail: String| StoreError::Corrupt {
            position: None,
            detail: format!(
                "{name}: entry {entry} (offset {}): {detail}",
                entry * ENTRY_BYTES
            ),
        };
        let (encoded, checksum) = bytes.split_at(CHECKPOINT_BYTES);
        if entry_checksum(encoded) != checksum {
            if entry + 1 == whole_entries {
                whole_entries -= 1;
                break;
            }
            return Err(corrupt("checksum does not match".into()));
        }
        let checkpoint =
            SignedCheckpoint::decode(encoded).map_err(|error| corrupt(error.to_string()))?;
        let size = checkpoint.checkpoint.tree_size;
        if let Some(previous) = entries.last()
            && size < previous.checkpoint.tree_size
        {
            return Err(corrupt(format!(
                "tree size {size} goes back from {}",
                previous.checkpoint.tree_size
            )));
        }
        entries.push(checkpoint);
    }
    Ok(CheckpointLog {
        entries,
        valid_len: whole_entries * ENTRY_BYTES,
        file_len,
    })
}

/// Reads the signed checkpoints a store saved in its data directory `dir`, oldest first, changing
/// nothing: meant for a stopped store (a running one may be appending to the log). A torn last
/// entry, a save that was never acknowledged, is left out; a damaged entry before it is
/// [`StoreError::Corrupt`]. Signatures are not checked: that needs the key the reader trusts
/// (`SignedCheckpoint::verify`). An empty list when the store never saved a checkpoint.
pub fn read_checkpoints(dir: &Path) -> Result<Vec<SignedCheckpoint>, StoreError> {
    read_log(&dir.join(CHECKPOINTS_FILE)).map(|log| log.entries)
}

/// Checks every checkpoint of `log` against the ledger's `tree`: each must sign the tree's root
/// at its size. Names the first one that does not.
pub(crate) fn check_against_tree(
    log: &CheckpointLog,
    path: &Path,
    tree: &MerkleTree,
) -> Result<(), StoreError> {
    for (entry, checkpoint) in log.entries.iter().enumerate() {
        let size = checkpoint.checkpoint.tree_size;
        let root = if size > tree.len() {
            None
        } else {
            Some(tree.root_at(size)?)
        };
        check_root(path, entry, checkpoint, root, tree.len())?;
    }
    Ok(())
}

/// Checks one checkpoint's root against `recomputed`, the root the segments give at its size
/// (`None` when they hold fewer than its size: `records`).
pub(crate) fn check_root(
    path: &Path,
    entry: usize,
    checkpoint: &SignedCheckpoint,
    recomputed: Option<Hash>,
    records: u64,
) -> Result<(), StoreError> {
    let size = checkpoint.checkpoint.tree_size;
    let place = format!(
        "{}: entry {entry} (offset {})",
        path.display(),
        entry as u64 * ENTRY_BYTES
    );
    match recomputed {
        None => Err(StoreError::Corrupt {
            position: Some(Position(records + 1)),
            detail: format!(
                "{place}: the checkpoint of tree size {size} covers {size} acknowledged records, \
                 but the segments hold only {records}"
            ),
        }),
        Some(root) if root != checkpoint.checkpoint.root => Err(StoreError::Corrupt {
            position: None,
            detail: format!(
                "{place}: the checkpoint of tree size {size} signs root {}, but the segments \
                 give {root} at tree size {size}",
                checkpoint.checkpoint.root
            ),
        }),
        Some(_) => Ok(()),
    }
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
    /// Opens the log in `dir` (creating it if missing), given what [`read_log`] found in it:
    /// checks every checkpoint against the ledger's tree (each must sign the tree's root at its
    /// size), and cuts a torn last entry.
    pub(crate) fn open(
        dir: &Path,
        log: CheckpointLog,
        tree: &MerkleTree,
    ) -> Result<Checkpoints, StoreError> {
        let path = dir.join(CHECKPOINTS_FILE);
        let name = path.display().to_string();
        check_against_tree(&log, &path, tree)?;
        let (file, len) = open_or_create_durably(dir, &path)?;
        if len != log.file_len {
            // The directory lock keeps every other writer out: the file cannot have changed.
            return Err(StoreError::Corrupt {
                position: None,
                detail: format!(
                    "{name} changed while the store was opening ({} bytes, then {len})",
                    log.file_len
                ),
            });
        }
        if log.valid_len != len {
            file.set_len(log.valid_len)
                .map_err(|error| StoreError::io(format!("cut the torn tail of {name}"), error))?;
            file.sync_all()
                .map_err(|error| StoreError::io(format!("sync {name}"), error))?;
            warn!(file = %name, offset = log.valid_len, bytes_cut = len - log.valid_len, "cut a torn checkpoint: its save was never acknowledged");
        }
        let entries = log.entries.len() as u64;
        Ok(Checkpoints {
            path,
            file: Mutex::new(Some(LogFile { file, entries })),
            latest: RwLock::new(log.entries.into_iter().last()),
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
        let entry = encode_entry(&checkpoint)?;
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
