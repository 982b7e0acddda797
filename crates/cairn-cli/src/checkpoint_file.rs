//! Saved checkpoints: the 176-byte encoding of a signed checkpoint as lowercase hex and a newline.
//! Text rather than bytes, so an auditor can paste one into a ticket, a chat or a commit.

use std::path::Path;

use anyhow::{Context, anyhow};
use cairn_ledger::SignedCheckpoint;

/// The file's text for a checkpoint.
pub fn to_text(checkpoint: &SignedCheckpoint) -> String {
    format!("{}\n", hex::encode(checkpoint.encode()))
}

/// Parses a file's text (surrounding whitespace is ignored). Does not verify the signature.
pub fn from_text(text: &str) -> anyhow::Result<SignedCheckpoint> {
    let bytes = hex::decode(text.trim())
        .map_err(|error| anyhow!("not a saved checkpoint (expected 352 hex digits): {error}"))?;
    SignedCheckpoint::decode(&bytes).map_err(|error| anyhow!("not a saved checkpoint: {error}"))
}

/// Writes a checkpoint to `path`, replacing the file.
pub fn save(path: &Path, checkpoint: &SignedCheckpoint) -> anyhow::Result<()> {
    std::fs::write(path, to_text(checkpoint))
        .with_context(|| format!("cannot write the checkpoint to {}", path.display()))
}

/// Reads a checkpoint saved by [`save`].
pub fn load(path: &Path) -> anyhow::Result<SignedCheckpoint> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the checkpoint file {}", path.display()))?;
    from_text(&text).with_context(|| format!("checkpoint file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use cairn_ledger::{Checkpoint, CheckpointSigner, Hash, LogId, Timestamp};

    use super::*;

    fn sample() -> SignedCheckpoint {
        CheckpointSigner::from_secret_bytes([7; 32]).sign(Checkpoint {
            log_id: LogId([1; 32]),
            tree_size: 42,
            root: Hash([2; 32]),
            timestamp: Timestamp(1_700_000_000_000_000),
        })
    }

    #[test]
    fn saved_checkpoints_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.hex");
        let signed = sample();
        save(&path, &signed).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 176 * 2 + 1);
        assert!(text.ends_with('\n'));
        assert_eq!(text.trim(), text.trim().to_lowercase());
        assert_eq!(load(&path).unwrap(), signed);
    }

    #[test]
    fn pasted_checkpoints_tolerate_whitespace_and_uppercase() {
        let signed = sample();
        let text = format!("  {}\r\n\n", to_text(&signed).trim().to_uppercase());
        assert_eq!(from_text(&text).unwrap(), signed);
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let text = to_text(&sample());
        let error = format!("{:#}", from_text(&text[..350]).unwrap_err());
        assert!(error.contains("176 bytes"), "{error}");
        let error = format!("{:#}", from_text("zz").unwrap_err());
        assert!(error.contains("expected 352 hex digits"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.hex");
        let error = format!("{:#}", load(&missing).unwrap_err());
        assert!(error.contains("missing.hex"), "{error}");
    }
}
