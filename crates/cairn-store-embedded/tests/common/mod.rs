//! Helpers shared by the embedded store's tests: opening stores, and finding frames in segment
//! files so tests can damage them precisely.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_ledger::{MerkleTree, Position, Record};
use cairn_store::{EventStore, StoreError};
use cairn_store_embedded::{EmbeddedOptions, EmbeddedStore};

/// Opens a store off the async threads, as callers must.
pub async fn open_with(
    dir: &Path,
    options: EmbeddedOptions,
) -> Result<Arc<EmbeddedStore>, StoreError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, options))
        .await
        .expect("open task")
}

/// Opens a store with the default options.
pub async fn open(dir: &Path) -> Arc<EmbeddedStore> {
    open_with(dir, EmbeddedOptions::default())
        .await
        .expect("open store")
}

/// Options with tiny segments, so a few records span many files.
pub fn tiny_segments() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_bytes_max: 2048,
        ..EmbeddedOptions::default()
    }
}

/// Every record, read in pages.
pub async fn all_records(store: &EmbeddedStore) -> Vec<Arc<Record>> {
    let mut records = Vec::new();
    loop {
        let page = store
            .read_all(Position(records.len() as u64 + 1), 100)
            .await
            .expect("read_all");
        if page.is_empty() {
            return records;
        }
        records.extend(page);
    }
}

/// The Merkle root recomputed from records.
pub fn root_of(records: &[Arc<Record>]) -> cairn_ledger::Hash {
    let mut tree = MerkleTree::new();
    for record in records {
        tree.push(record.leaf_hash());
    }
    tree.root()
}

/// The segment files of a data directory, in position order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .expect("segments folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    files.sort();
    files
}

/// The frames of a segment file: (offset, bytes including the 12-byte header). Stops at zero
/// padding or at anything that is not a whole frame.
pub fn frames(path: &Path) -> Vec<(u64, u64)> {
    let bytes = fs::read(path).expect("read segment");
    let mut frames = Vec::new();
    let mut at = 20usize;
    while at + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 || at + 12 + len > bytes.len() {
            break;
        }
        frames.push((at as u64, 12 + len as u64));
        at += 12 + len;
    }
    frames
}

/// Where the frame of `position` is: (segment file, offset, frame bytes).
pub fn locate(dir: &Path, position: Position) -> (PathBuf, u64, u64) {
    for path in segment_files(dir) {
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let first: u64 = name.parse().expect("numeric segment name");
        let frames = frames(&path);
        if position.0 >= first && position.0 < first + frames.len() as u64 {
            let (offset, len) = frames[(position.0 - first) as usize];
            return (path, offset, len);
        }
    }
    panic!("position {position} is in no segment");
}

/// Flips one bit of the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x10;
    fs::write(path, bytes).expect("write");
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, _)) = needle.split_first() else {
        return true;
    };
    let mut at = 0;
    while let Some(found) = haystack[at..].iter().position(|&byte| byte == first) {
        let start = at + found;
        if haystack[start..].starts_with(needle) {
            return true;
        }
        at = start + 1;
    }
    false
}
