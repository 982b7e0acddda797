//! The offline audit: recompute the whole tree from a stopped server's segment files, then check
//! the latest stored checkpoint against the recomputed root and a public key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use cairn_ledger::{CheckpointSigner, LogId, PublicKey, SignedCheckpoint};
use cairn_store::StoreError;
use cairn_store_embedded::VerifyReport;
use indicatif::{ProgressBar, ProgressStyle};

use crate::input::parse_public_key;

/// Where the server keeps its identity under the data directory, and the files in it, as written
/// by `cairn_service::ServerIdentity::load_or_create` (32 raw bytes each). Read directly, never
/// through `load_or_create`: an audit must not create a key in the directory it audits.
const IDENTITY_DIR: &str = "identity";
const SIGNING_KEY_FILE: &str = "checkpoint-signing.key";
const LOG_ID_FILE: &str = "log.id";

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
        other => anyhow!("verification of {} failed: {other}", data.display()),
    })
}

/// What the data directory holds of stored checkpoints.
enum StoredCheckpoint {
    /// No checkpoint was ever stored.
    None,
    /// Checkpoints are stored, but this build cannot read them (see [`latest_stored_checkpoint`]).
    Unreadable(PathBuf),
    /// The newest stored checkpoint.
    #[allow(
        dead_code,
        reason = "built once cairn-store-embedded exposes a reader of its checkpoint log"
    )]
    Latest(SignedCheckpoint),
}

/// Checks the latest checkpoint the server stored, if this build can read it.
fn check_stored_checkpoint(
    data: &Path,
    report: &VerifyReport,
    pinned: Option<PublicKey>,
) -> anyhow::Result<()> {
    let checkpoint = match latest_stored_checkpoint(data)? {
        StoredCheckpoint::None => {
            println!(
                "checkpoint   none stored in {}: nothing to compare",
                data.display()
            );
            return Ok(());
        }
        StoredCheckpoint::Unreadable(path) => {
            println!(
                "checkpoint   NOT CHECKED: {} exists, but cairn-store-embedded offers no reader \
                 for it yet",
                path.display()
            );
            return Ok(());
        }
        StoredCheckpoint::Latest(checkpoint) => checkpoint,
    };
    check_checkpoint(data, report, pinned, &checkpoint)
}

/// Checks one stored checkpoint: signed by the pinned key (or the key in the data directory's
/// identity), for this log, and with the recomputed root at its size.
fn check_checkpoint(
    data: &Path,
    report: &VerifyReport,
    pinned: Option<PublicKey>,
    checkpoint: &SignedCheckpoint,
) -> anyhow::Result<()> {
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
                data.join(IDENTITY_DIR).display()
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
            "verification failed: the stored checkpoint names log {}, the data directory's log id is {log_id}",
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
    if size < report.records {
        // verify_segments reports the root of the whole ledger only; a checkpoint that lags the
        // head (after a crash, before the sealer caught up) cannot be compared yet.
        println!(
            "checkpoint   tree size {size} signed by {key}: ok; its root NOT CHECKED: the segments \
             hold {} records and only the root of all of them is recomputed",
            report.records
        );
        return Ok(());
    }
    if report.root != checkpoint.checkpoint.root {
        bail!(
            "verification failed: the recomputed root at tree size {size} is {}, the stored \
             checkpoint says {}",
            report.root,
            checkpoint.checkpoint.root
        );
    }
    println!(
        "checkpoint   tree size {size} root {} signed by {key}: matches the recomputed root: ok",
        checkpoint.checkpoint.root
    );
    Ok(())
}

/// The latest checkpoint stored in the data directory. The embedded store keeps them in
/// `checkpoints.log` but exposes no reader for a stopped store yet, and parsing its file here
/// would fork its format; until it does, a present log is reported as not checked rather than
/// skipped in silence.
fn latest_stored_checkpoint(data: &Path) -> anyhow::Result<StoredCheckpoint> {
    let path = data.join("checkpoints.log");
    match std::fs::metadata(&path) {
        Ok(metadata) if metadata.len() > 0 => Ok(StoredCheckpoint::Unreadable(path)),
        Ok(_) => Ok(StoredCheckpoint::None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(StoredCheckpoint::None),
        Err(error) => Err(anyhow!("cannot read {}: {error}", path.display())),
    }
}

/// The public key of the signing key in the data directory's identity.
fn identity_public_key(data: &Path) -> anyhow::Result<PublicKey> {
    let path = data.join(IDENTITY_DIR).join(SIGNING_KEY_FILE);
    let secret = read_32_bytes(&path)?.ok_or_else(|| {
        anyhow!(
            "{} does not exist: pass the server's public key with --public-key",
            path.display()
        )
    })?;
    Ok(CheckpointSigner::from_secret_bytes(secret).public_key())
}

/// The log id in the data directory's identity, if it has one.
fn identity_log_id(data: &Path) -> anyhow::Result<Option<LogId>> {
    Ok(read_32_bytes(&data.join(IDENTITY_DIR).join(LOG_ID_FILE))?.map(LogId))
}

fn read_32_bytes(path: &Path) -> anyhow::Result<Option<[u8; 32]>> {
    match std::fs::read(path) {
        Ok(bytes) => bytes.as_slice().try_into().map(Some).map_err(|_| {
            anyhow!(
                "{} holds {} bytes, expected 32",
                path.display(),
                bytes.len()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(anyhow!("cannot read {}: {error}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use cairn_ledger::{Checkpoint, Hash, Position, Timestamp};

    use super::*;

    fn report(records: u64, root: Hash) -> VerifyReport {
        VerifyReport {
            records,
            root,
            last_position: Position(records),
            segments: 1,
            torn_tail_bytes: 0,
        }
    }

    /// A data directory with an identity as `ServerIdentity::load_or_create` writes it.
    fn data_dir(signing_key: [u8; 32], log_id: [u8; 32]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let identity = dir.path().join(IDENTITY_DIR);
        std::fs::create_dir(&identity).unwrap();
        std::fs::write(identity.join(SIGNING_KEY_FILE), signing_key).unwrap();
        std::fs::write(identity.join(LOG_ID_FILE), log_id).unwrap();
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
        check_checkpoint(data, &report(10, root), None, &good).unwrap();
        let pinned = CheckpointSigner::from_secret_bytes([2; 32]).public_key();
        check_checkpoint(data, &report(10, root), Some(pinned), &good).unwrap();

        let check = |report: VerifyReport,
                     pinned: Option<PublicKey>,
                     checkpoint: SignedCheckpoint,
                     fragment: &str| {
            let error = format!(
                "{:#}",
                check_checkpoint(data, &report, pinned, &checkpoint).unwrap_err()
            );
            assert!(error.contains(fragment), "{error}");
        };
        let other_key = CheckpointSigner::from_secret_bytes([9; 32]).public_key();
        check(
            report(10, root),
            Some(other_key),
            good.clone(),
            "signature does not verify",
        );
        check(
            report(10, root),
            None,
            signed([9; 32], [1; 32], 10, root),
            "signature does not verify",
        );
        check(
            report(10, root),
            None,
            signed([2; 32], [5; 32], 10, root),
            "names log",
        );
        check(
            report(10, Hash([8; 32])),
            None,
            good.clone(),
            "the recomputed root at tree size 10",
        );
        check(
            report(9, root),
            None,
            good,
            "verification failed at position 10",
        );
    }

    #[test]
    fn a_checkpoint_behind_the_head_is_reported_not_failed() {
        let dir = data_dir([2; 32], [1; 32]);
        let checkpoint = signed([2; 32], [1; 32], 5, Hash([7; 32]));
        check_checkpoint(dir.path(), &report(10, Hash([8; 32])), None, &checkpoint).unwrap();
    }

    #[test]
    fn a_missing_identity_needs_a_pinned_key() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = signed([2; 32], [1; 32], 10, Hash([7; 32]));
        let error = format!(
            "{:#}",
            check_checkpoint(dir.path(), &report(10, Hash([7; 32])), None, &checkpoint)
                .unwrap_err()
        );
        assert!(error.contains("--public-key"), "{error}");
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
