//! The offline audit: recompute the whole tree from a stopped server's segment files, check every
//! stored checkpoint against the root recomputed at its size, and the latest one's signature
//! against a public key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use cairn_ledger::{LogId, PublicKey};
use cairn_service::ServerIdentity;
use cairn_store::StoreError;
use cairn_store_embedded::{StoredCheckpoint, VerifyReport};
use indicatif::{ProgressBar, ProgressStyle};

use crate::input::parse_public_key;

/// Runs the offline audit and prints what it found.
pub async fn run(data: PathBuf, public_key: Option<String>) -> anyhow::Result<()> {
    if !data.is_dir() {
        bail!(
            "{} is not a directory (expected a cairn data directory)",
            data.display()
        );
    }
    let pinned = public_key
        .as_deref()
        .map(|text| parse_public_key("--public-key", text))
        .transpose()?;

    println!("verifying the segment files in {}", data.display());
    let report = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the scan ends, so no server opens the directory meanwhile.
            let _lock = lock_data_dir(&data)?;
            recompute(&data)
        })
        .await
        .context("the verification thread panicked")??
    };
    println!(
        "records      {} in {} segment file{}",
        report.records,
        report.segments,
        if report.segments == 1 { "" } else { "s" }
    );
    println!("last         position {}", report.last_position);
    println!("root         {}", report.root);
    println!(
        "segments     every frame's checksum, envelope, payload commitment, position and stream \
         version: ok"
    );
    if report.torn_tail_bytes > 0 {
        println!(
            "torn tail    {} bytes after position {} (a write that was never acknowledged; the \
             next start cuts it)",
            report.torn_tail_bytes, report.last_position
        );
    }

    check_stored_checkpoint(&data, &report, pinned)?;
    println!("verified: {} records, root {}", report.records, report.root);
    Ok(())
}

/// The embedded store's lock file: an open store holds an exclusive lock on it.
const LOCK_FILE: &str = "LOCK";

/// Takes the store's directory lock, refusing to verify a directory a running server has open:
/// the scan could then see a write in progress as a torn tail. A directory without a lock file
/// was never opened by a store and needs no lock.
fn lock_data_dir(data: &Path) -> anyhow::Result<Option<std::fs::File>> {
    let path = data.join(LOCK_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(anyhow!("cannot open {}: {error}", path.display())),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by a running store ({} is locked): stop the server first, or audit it \
             online with `cairn verify --checkpoint`",
            data.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(anyhow!("cannot lock {}: {error}", path.display()))
        }
    }
}

/// Recomputes the tree with a progress spinner, turning a damaged record into an error that names
/// its position.
fn recompute(data: &Path) -> anyhow::Result<VerifyReport> {
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} {human_pos} records verified ({per_sec}, {elapsed})",
        )
        .expect("the progress template is valid"),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    let result =
        cairn_store_embedded::verify_segments(data, |records| progress.set_position(records));
    progress.finish_and_clear();
    result.map_err(|error| match error {
        StoreError::Corrupt {
            position: Some(position),
            detail,
        } => anyhow!("verification failed at position {position}: {detail}"),
        StoreError::Corrupt {
            position: None,
            detail,
        } => anyhow!("verification failed: {detail}"),
        other => anyhow!("verification of {} failed: {other}", data.display()),
    })
}

/// Reports the stored checkpoints and checks the latest one's signature. `verify_segments` has
/// already checked every stored checkpoint's root against the root recomputed at its size.
fn check_stored_checkpoint(
    data: &Path,
    report: &VerifyReport,
    pinned: Option<PublicKey>,
) -> anyhow::Result<()> {
    let Some(latest) = &report.latest_checkpoint else {
        println!(
            "checkpoint   none stored in {}: nothing to compare",
            data.display()
        );
        return Ok(());
    };
    if report.checkpoints > 1 {
        println!(
            "checkpoints  {} stored; each signs the root recomputed at its tree size: ok",
            report.checkpoints
        );
    }
    check_checkpoint(data, report, pinned, latest)
}

/// Checks one stored checkpoint: signed by the pinned key (or the key in the data directory's
/// identity), for this log, and with the root recomputed at its size.
fn check_checkpoint(
    data: &Path,
    report: &VerifyReport,
    pinned: Option<PublicKey>,
    stored: &StoredCheckpoint,
) -> anyhow::Result<()> {
    let checkpoint = &stored.checkpoint;
    let size = checkpoint.checkpoint.tree_size;
    let key = match pinned {
        Some(key) => {
            println!("key          {key} (pinned with --public-key)");
            key
        }
        None => {
            let key = identity_public_key(data)?;
            println!(
                "key          {key} (from {}; pass --public-key to check against a pinned key instead)",
                data.join("identity").display()
            );
            key
        }
    };
    checkpoint.verify(&key).map_err(|error| {
        anyhow!(
            "verification failed: the stored checkpoint of tree size {size}: {error} under key {key} \
             (the checkpoint names key {})",
            checkpoint.public_key
        )
    })?;
    if let Some(log_id) = identity_log_id(data)?
        && log_id != checkpoint.checkpoint.log_id
    {
        bail!(
            "verification failed: the stored checkpoint of tree size {size} names log {}, the data \
             directory's log id is {log_id}",
            checkpoint.checkpoint.log_id
        );
    }
    if size > report.records {
        bail!(
            "verification failed at position {}: the stored checkpoint covers {size} records but \
             the segments hold only {}",
            report.records + 1,
            report.records
        );
    }
    if stored.recomputed_root != checkpoint.checkpoint.root {
        bail!(
            "verification failed: the recomputed root at tree size {size} is {}, the stored \
             checkpoint of tree size {size} says {}",
            stored.recomputed_root,
            checkpoint.checkpoint.root
        );
    }
    let behind = if size < report.records {
        format!(
            " (the segments hold {} more records, which no stored checkpoint covers yet)",
            report.records - size
        )
    } else {
        String::new()
    };
    println!(
        "checkpoint   tree size {size} root {} signed by {key}: matches the root recomputed at \
         tree size {size}: ok{behind}",
        checkpoint.checkpoint.root
    );
    Ok(())
}

/// The identity in the data directory, read without creating anything: an audit must not
/// create a key in the directory it audits.
fn identity(data: &Path) -> anyhow::Result<Option<ServerIdentity>> {
    ServerIdentity::load(data).with_context(|| {
        format!(
            "cannot read the identity in {}",
            data.join("identity").display()
        )
    })
}

/// The public key of the signing key in the data directory's identity.
fn identity_public_key(data: &Path) -> anyhow::Result<PublicKey> {
    identity(data)?
        .map(|identity| identity.public_key())
        .ok_or_else(|| {
            anyhow!(
                "{} holds no server identity: pass the server's public key with --public-key",
                data.display()
            )
        })
}

/// The log id in the data directory's identity, if it has one.
fn identity_log_id(data: &Path) -> anyhow::Result<Option<LogId>> {
    Ok(identity(data)?.map(|identity| identity.log_id))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cairn_ledger::{
        Checkpoint, CheckpointSigner, DataClass, EventId, Hash, Position, SealedPayload,
        SignedCheckpoint, StreamId, TenantId, Timestamp,
    };
    use cairn_service::{Checkpointer, ServerIdentity};
    use cairn_store::{EventStore, ExpectedVersion, NewEvent};
    use cairn_store_embedded::{EmbeddedOptions, EmbeddedStore};

    use super::*;

    fn report(records: u64, root: Hash) -> VerifyReport {
        VerifyReport {
            records,
            root,
            last_position: Position(records),
            segments: 1,
            torn_tail_bytes: 0,
            checkpoints: 1,
            latest_checkpoint: None,
        }
    }

    fn stored(checkpoint: SignedCheckpoint, recomputed_root: Hash) -> StoredCheckpoint {
        StoredCheckpoint {
            checkpoint,
            recomputed_root,
        }
    }

    /// A data directory with an identity of chosen keys, laid out as
    /// `ServerIdentity::load_or_create` writes it (32 raw bytes per file).
    fn data_dir(signing_key: [u8; 32], log_id: [u8; 32]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let identity = dir.path().join("identity");
        std::fs::create_dir(&identity).unwrap();
        std::fs::write(identity.join("checkpoint-signing.key"), signing_key).unwrap();
        std::fs::write(identity.join("log.id"), log_id).unwrap();
        std::fs::write(identity.join("subject-key-ids.key"), [5u8; 32]).unwrap();
        let loaded = ServerIdentity::load(dir.path())
            .unwrap()
            .expect("complete identity");
        assert_eq!(
            loaded.log_id,
            LogId(log_id),
            "the fixture matches the identity layout"
        );
        dir
    }

    fn signed(
        signing_key: [u8; 32],
        log_id: [u8; 32],
        tree_size: u64,
        root: Hash,
    ) -> SignedCheckpoint {
        CheckpointSigner::from_secret_bytes(signing_key).sign(Checkpoint {
            log_id: LogId(log_id),
            tree_size,
            root,
            timestamp: Timestamp(1),
        })
    }

    #[test]
    fn stored_checkpoints_must_match_the_recomputed_root_key_and_log() {
        let dir = data_dir([2; 32], [1; 32]);
        let data = dir.path();
        let root = Hash([7; 32]);
        let good = signed([2; 32], [1; 32], 10, root);
        check_checkpoint(data, &report(10, root), None, &stored(good.clone(), root)).unwrap();
        let pinned = CheckpointSigner::from_secret_bytes([2; 32]).public_key();
        check_checkpoint(
            data,
            &report(10, root),
            Some(pinned),
            &stored(good.clone(), root),
        )
        .unwrap();

        let check = |pinned: Option<PublicKey>, stored: StoredCheckpoint, fragment: &str| {
            let error = format!(
                "{:#}",
                check_checkpoint(data, &report(10, root), pinned, &stored).unwrap_err()
            );
            assert!(error.contains(fragment), "{error}");
        };
        let other_key = CheckpointSigner::from_secret_bytes([9; 32]).public_key();
        check(
            Some(other_key),
            stored(good.clone(), root),
            "signature does not verify",
        );
        check(
            None,
            stored(signed([9; 32], [1; 32], 10, root), root),
            "signature does not verify",
        );
        check(
            None,
            stored(signed([2; 32], [5; 32], 10, root), root),
            "names log",
        );
        check(
            None,
            stored(good, Hash([8; 32])),
            "the recomputed root at tree size 10",
        );
    }

    #[test]
    fn a_checkpoint_behind_the_head_is_checked_at_its_size() {
        let dir = data_dir([2; 32], [1; 32]);
        let checkpoint = signed([2; 32], [1; 32], 5, Hash([7; 32]));
        let head = report(10, Hash([8; 32]));
        check_checkpoint(
            dir.path(),
            &head,
            None,
            &stored(checkpoint.clone(), Hash([7; 32])),
        )
        .unwrap();
        let error = format!(
            "{:#}",
            check_checkpoint(dir.path(), &head, None, &stored(checkpoint, Hash([9; 32])))
                .unwrap_err()
        );
        assert!(
            error.contains("the recomputed root at tree size 5"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_identity_needs_a_pinned_key() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = signed([2; 32], [1; 32], 10, Hash([7; 32]));
        let error = format!(
            "{:#}",
            check_checkpoint(
                dir.path(),
                &report(10, Hash([7; 32])),
                None,
                &stored(checkpoint, Hash([7; 32]))
            )
            .unwrap_err()
        );
        assert!(error.contains("--public-key"), "{error}");
    }

    /// Appends one event per payload to a stopped-store data directory, then signs and stores a
    /// checkpoint of the head when `checkpoint` says so, as the server's checkpointer does.
    async fn append(data: &Path, payloads: &[&str], checkpoint: bool) {
        let path = data.to_path_buf();
        let store = tokio::task::spawn_blocking(move || {
            EmbeddedStore::open(&path, EmbeddedOptions::default())
        })
        .await
        .unwrap()
        .unwrap();
        let stream = StreamId::new(TenantId::new("acme").unwrap(), "feedback", "offline").unwrap();
        for payload in payloads {
            let event = NewEvent {
                event_id: EventId(blake3_16(payload)),
                event_type: "Noted".into(),
                event_schema_version: 1,
                actor: "user:test".into(),
                causation_id: None,
                correlation_id: None,
                lineage: Vec::new(),
                data_class: DataClass::Internal,
                key_id: None,
                policy_bundle_hash: Hash::ZERO,
                payload: SealedPayload {
                    clear: payload.as_bytes().to_vec(),
                    sealed: None,
                }
                .encode(),
            };
            store
                .append(stream.clone(), ExpectedVersion::Any, vec![event])
                .await
                .unwrap();
        }
        if checkpoint {
            let identity = Arc::new(ServerIdentity::from_secrets([1; 32], [2; 32], [3; 32]));
            Checkpointer::new(Arc::clone(&store), identity)
                .checkpoint_now()
                .await
                .unwrap()
                .expect("a checkpoint of the new records");
        }
        store.close().await;
    }

    /// 16 bytes derived from `text`, for distinct event ids.
    fn blake3_16(text: &str) -> [u8; 16] {
        cairn_ledger::leaf_hash(text.as_bytes()).0[..16]
            .try_into()
            .unwrap()
    }

    async fn audit(data: &Path, public_key: Option<String>) -> anyhow::Result<()> {
        run(data.to_path_buf(), public_key).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_checkpoints_are_checked_at_their_size_and_signature() {
        let dir = data_dir([2; 32], [1; 32]);
        let data = dir.path();
        append(data, &["a-1", "a-2", "a-3"], true).await;
        append(data, &["a-4", "a-5"], true).await;
        // Records after the latest checkpoint: its root is checked at its size, 5, not at 7.
        append(data, &["a-6", "a-7"], false).await;
        let checkpoints = cairn_store_embedded::read_checkpoints(data).unwrap();
        assert_eq!(
            checkpoints
                .iter()
                .map(|checkpoint| checkpoint.checkpoint.tree_size)
                .collect::<Vec<_>>(),
            vec![3, 5]
        );
        audit(data, None).await.unwrap();
        let key = CheckpointSigner::from_secret_bytes([2; 32])
            .public_key()
            .to_hex();
        audit(data, Some(key)).await.unwrap();
        let other_key = CheckpointSigner::from_secret_bytes([9; 32])
            .public_key()
            .to_hex();
        let error = format!("{:#}", audit(data, Some(other_key)).await.unwrap_err());
        assert!(
            error.contains("the stored checkpoint of tree size 5"),
            "{error}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stored_checkpoint_that_disagrees_with_the_segments_fails_naming_its_size() {
        // Two ledgers under one identity with different records (times differ, if nothing
        // else); the second is given the first's checkpoint log, properly signed, over other
        // records and for fewer of them than it holds.
        let first = data_dir([2; 32], [1; 32]);
        append(first.path(), &["a-1", "a-2", "a-3", "a-4"], true).await;
        let second = data_dir([2; 32], [1; 32]);
        append(
            second.path(),
            &["a-1", "a-2", "a-3", "a-4", "b-5", "b-6"],
            false,
        )
        .await;
        audit(second.path(), None).await.unwrap();
        std::fs::copy(
            first.path().join("checkpoints.log"),
            second.path().join("checkpoints.log"),
        )
        .unwrap();
        let error = format!("{:#}", audit(second.path(), None).await.unwrap_err());
        assert!(error.starts_with("verification failed"), "{error}");
        assert!(
            error.contains("the checkpoint of tree size 4 signs root"),
            "{error}"
        );
        assert!(error.contains("at tree size 4"), "{error}");
    }

    #[test]
    fn a_directory_a_store_has_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            lock_data_dir(dir.path()).unwrap().is_none(),
            "no lock file: nothing to lock"
        );
        let held = std::fs::File::create(dir.path().join(LOCK_FILE)).unwrap();
        held.lock().unwrap();
        let error = lock_data_dir(dir.path()).unwrap_err().to_string();
        assert!(error.contains("stop the server first"), "{error}");
        held.unlock().unwrap();
        assert!(lock_data_dir(dir.path()).unwrap().is_some());
    }
}
