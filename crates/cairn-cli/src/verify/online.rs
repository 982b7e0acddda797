//! The online audit: from a checkpoint saved earlier and a pinned key to the server's latest
//! checkpoint, trusting nothing the server says that a proof does not cover.
//!
//! 1. the saved checkpoint is signed by the pinned key;
//! 2. the latest checkpoint is signed by the pinned key, names the same log, and is no smaller;
//! 3. a consistency proof shows the saved tree is a prefix of the new one (append-only);
//! 4. sampled records (or, with `--full`, every record) are rebuilt from the exact bytes the
//!    server sends (canonical envelope, payload commitment) and shown to be in the new tree, by
//!    inclusion proof or by recomputing the whole root.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use cairn_grpc::{checkpoint_from_proto, proto, record_from_proto};
use cairn_ledger::{
    ConsistencyProof, Hash, InclusionProof, MerkleTree, PublicKey, SignedCheckpoint,
};
use indicatif::{ProgressBar, ProgressStyle};

use super::{VerifyArgs, sample_positions};
use crate::checkpoint_file;
use crate::client::Client;
use crate::input::parse_public_key;
use crate::output::format_micros;

/// Runs the online audit and prints each step.
pub async fn run(args: &VerifyArgs, checkpoint_path: &Path) -> anyhow::Result<()> {
    let pinned_text = args
        .public_key
        .as_deref()
        .context("--public-key is required with --checkpoint")?;
    let pinned = parse_public_key("--public-key", pinned_text)?;

    // Step 1: the saved checkpoint, checked against the pinned key before it is relied on.
    let saved = checkpoint_file::load(checkpoint_path)?;
    saved.verify(&pinned).map_err(|error| {
        failed(
            "saved checkpoint",
            format!(
                "{}: {error} under the pinned key {pinned}",
                checkpoint_path.display()
            ),
        )
    })?;
    println!(
        "[1/5] saved checkpoint   tree size {} root {} ({}), signed by the pinned key: ok",
        saved.checkpoint.tree_size,
        saved.checkpoint.root,
        format_micros(saved.checkpoint.timestamp.0)
    );

    // Step 2: the latest checkpoint, by the pinned key and not the key the server announces.
    let mut client = Client::connect(&args.server).await?;
    let latest = latest_checkpoint(&mut client, &pinned, &saved).await?;
    println!(
        "[2/5] latest checkpoint  tree size {} root {} ({}), signed by the pinned key, same log: ok",
        latest.checkpoint.tree_size,
        latest.checkpoint.root,
        format_micros(latest.checkpoint.timestamp.0)
    );

    // Step 3: append-only between the two.
    check_consistency(&mut client, &saved, &latest).await?;

    // Step 4: the records.
    if args.full {
        check_every_record(&mut client, &saved, &latest).await?;
    } else {
        check_sampled_records(&mut client, &saved, &latest, args.samples).await?;
    }

    // Step 5: hand the new checkpoint to the auditor for next time.
    println!(
        "[5/5] verified: the ledger {} is consistent with the saved checkpoint",
        latest.checkpoint.log_id
    );
    println!("new checkpoint (save it for the next audit):");
    print!("{}", checkpoint_file::to_text(&latest));
    if let Some(path) = &args.save_new {
        checkpoint_file::save(path, &latest)?;
        println!("saved to {}", path.display());
    }
    Ok(())
}

/// The error for a failed step: `verification failed: STEP: DETAIL`.
fn failed(step: &str, detail: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("verification failed: {step}: {detail}")
}

async fn latest_checkpoint(
    client: &mut Client,
    pinned: &PublicKey,
    saved: &SignedCheckpoint,
) -> anyhow::Result<SignedCheckpoint> {
    let step = "latest checkpoint";
    let proto_checkpoint = client.checkpoint().await?;
    let latest = checkpoint_from_proto(&proto_checkpoint).map_err(|error| {
        failed(
            step,
            format!("malformed checkpoint from {}: {error}", client.server()),
        )
    })?;
    latest.verify(pinned).map_err(|error| {
        failed(
            step,
            format!(
                "{error} under the pinned key {pinned} (the checkpoint names key {})",
                latest.public_key
            ),
        )
    })?;
    if latest.checkpoint.log_id != saved.checkpoint.log_id {
        return Err(failed(
            step,
            format!(
                "the server's log id {} is not the saved checkpoint's log id {}",
                latest.checkpoint.log_id, saved.checkpoint.log_id
            ),
        ));
    }
    if latest.checkpoint.tree_size < saved.checkpoint.tree_size {
        return Err(failed(
            step,
            format!(
                "the latest tree size {} is smaller than the saved tree size {}: the log went back",
                latest.checkpoint.tree_size, saved.checkpoint.tree_size
            ),
        ));
    }
    Ok(latest)
}

async fn check_consistency(
    client: &mut Client,
    saved: &SignedCheckpoint,
    latest: &SignedCheckpoint,
) -> anyhow::Result<()> {
    let step = "consistency proof";
    let old_size = saved.checkpoint.tree_size;
    let new_size = latest.checkpoint.tree_size;
    if old_size == 0 {
        println!(
            "[3/5] consistency        the saved checkpoint covers no records: nothing to prove"
        );
        return Ok(());
    }
    let answer = client.consistency_proof(old_size, new_size).await?;
    if answer.old_size != old_size || answer.new_size != new_size {
        return Err(failed(
            step,
            format!(
                "asked for sizes {old_size} -> {new_size}, the server answered {} -> {}",
                answer.old_size, answer.new_size
            ),
        ));
    }
    // The proof is checked against the two signed roots, never the roots the answer carries.
    let proof = ConsistencyProof {
        old_size,
        new_size,
        path: hashes(&answer.path).map_err(|error| failed(step, error))?,
    };
    proof
        .verify(&saved.checkpoint.root, &latest.checkpoint.root)
        .map_err(|error| failed(step, format!("tree size {old_size} -> {new_size}: {error}")))?;
    println!(
        "[3/5] consistency        tree size {old_size} -> {new_size}, {} hashes: the log was only appended to: ok",
        proof.path.len()
    );
    Ok(())
}

async fn check_sampled_records(
    client: &mut Client,
    saved: &SignedCheckpoint,
    latest: &SignedCheckpoint,
    samples: u64,
) -> anyhow::Result<()> {
    let step = "inclusion of sampled records";
    let tree_size = latest.checkpoint.tree_size;
    let seam = [saved.checkpoint.tree_size, saved.checkpoint.tree_size + 1];
    let positions = sample_positions(tree_size, samples, &seam, random_below);
    let progress = progress_bar(positions.len() as u64, "sampled records");
    for &position in &positions {
        let record = read_record(client, position)
            .await
            .map_err(|error| failed(step, format!("position {position}: {error:#}")))?;
        let leaf = rebuild_leaf(&record, position).map_err(|error| failed(step, error))?;
        let answer = client.inclusion_proof(position, tree_size).await?;
        if answer.position != position || answer.tree_size != tree_size {
            return Err(failed(
                step,
                format!(
                    "position {position}: asked for a proof in tree size {tree_size}, the server \
                     answered position {} in tree size {}",
                    answer.position, answer.tree_size
                ),
            ));
        }
        let proof = InclusionProof {
            leaf_index: position - 1,
            tree_size,
            path: hashes(&answer.path)
                .map_err(|error| failed(step, format!("position {position}: {error}")))?,
        };
        proof
            .verify(&leaf, &latest.checkpoint.root)
            .map_err(|error| failed(step, format!("position {position}: {error}")))?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    println!(
        "[4/5] records            {} sampled records (first, last, spread at random, either side \
         of the saved size) rebuilt from their bytes and proven in tree size {tree_size}: ok",
        positions.len(),
    );
    println!(
        "      positions          {}",
        summarize_positions(&positions)
    );
    Ok(())
}

async fn check_every_record(
    client: &mut Client,
    saved: &SignedCheckpoint,
    latest: &SignedCheckpoint,
) -> anyhow::Result<()> {
    let step = "full recomputation";
    let tree_size = latest.checkpoint.tree_size;
    let info = client.log_info().await?;
    let page_size = info
        .limits
        .as_ref()
        .and_then(|limits| u32::try_from(limits.page_size_max).ok())
        .filter(|size| *size > 0)
        .unwrap_or(100);
    let progress = progress_bar(tree_size, "records");
    let mut tree = MerkleTree::new();
    let first = proto::ReadAllRequest {
        from_position: 1,
        limit: 0,
        include_personal: false,
    };
    let read = client
        .read_all_pages(first, tree_size, page_size, |record| {
            let position = tree.len() + 1;
            let leaf = rebuild_leaf(&record, position)?;
            tree.push(leaf);
            progress.inc(1);
            Ok(())
        })
        .await
        .map_err(|error| failed(step, format!("{error:#}")))?;
    progress.finish_and_clear();
    if read != tree_size {
        return Err(failed(
            step,
            format!("the checkpoint covers {tree_size} records, the server returned {read}"),
        ));
    }
    let saved_size = saved.checkpoint.tree_size;
    let saved_root = tree
        .root_at(saved_size)
        .map_err(|error| failed(step, error))?;
    if saved_size > 0 && saved_root != saved.checkpoint.root {
        return Err(failed(
            step,
            format!(
                "the root of the first {saved_size} records is {saved_root}, the saved checkpoint says {}",
                saved.checkpoint.root
            ),
        ));
    }
    let root = tree.root();
    if root != latest.checkpoint.root {
        return Err(failed(
            step,
            format!(
                "the root of the {tree_size} records is {root}, the latest checkpoint says {}",
                latest.checkpoint.root
            ),
        ));
    }
    println!(
        "[4/5] records            all {tree_size} records rebuilt from their bytes; roots at sizes {saved_size} and {tree_size} recomputed: ok"
    );
    Ok(())
}

/// Reads the record at one position.
async fn read_record(client: &mut Client, position: u64) -> anyhow::Result<proto::Record> {
    let page = client
        .read_all(proto::ReadAllRequest {
            from_position: position,
            limit: 1,
            include_personal: false,
        })
        .await?;
    match page.records.into_iter().next() {
        Some(record) if record.position == position => Ok(record),
        Some(record) => bail!("the server returned position {} instead", record.position),
        None => bail!("the server returned no record"),
    }
}

/// Rebuilds a record from the exact bytes the server sent (the envelope must decode canonically
/// and the payload match its commitment) and returns its leaf hash. The decoded fields of the
/// proto record are not trusted; the envelope's own position must be the one asked for.
fn rebuild_leaf(record: &proto::Record, position: u64) -> anyhow::Result<Hash> {
    let rebuilt = record_from_proto(record)
        .map_err(|error| anyhow!("position {position}: the record does not rebuild: {error}"))?;
    if rebuilt.position().0 != position {
        bail!(
            "position {position}: the record's envelope says position {}",
            rebuilt.position()
        );
    }
    Ok(rebuilt.leaf_hash())
}

fn hashes(path: &[Vec<u8>]) -> anyhow::Result<Vec<Hash>> {
    path.iter()
        .map(|bytes| Hash::from_slice(bytes, "proof path").map_err(|error| anyhow!("{error}")))
        .collect()
}

/// A uniform draw in `0..bound` from the operating system's random source (modulo bias is below
/// 2^-40 for any tree this side of a trillion records).
fn random_below(bound: u64) -> u64 {
    u64::from_le_bytes(cairn_store::random_bytes()) % bound
}

/// `1, 5, 17, ... (32 positions)`, cut short when long.
fn summarize_positions(positions: &[u64]) -> String {
    const SHOWN_MAX: usize = 12;
    let shown: Vec<String> = positions
        .iter()
        .take(SHOWN_MAX)
        .map(u64::to_string)
        .collect();
    if positions.len() > SHOWN_MAX {
        format!(
            "{}, ... {} (of {})",
            shown.join(", "),
            positions[positions.len() - 1],
            positions.len()
        )
    } else {
        shown.join(", ")
    }
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub(super) fn progress_bar(length: u64, unit: &str) -> ProgressBar {
    let progress = ProgressBar::new(length);
    progress.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})"
        ))
        .expect("the progress template is valid")
        .progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

#[cfg(test)]
mod tests {
    use cairn_grpc::ServerLimits;
    use cairn_ledger::{Checkpoint, CheckpointSigner, LogId};
    use clap::Parser;

    use super::*;
    use crate::test_server::TestServer;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(flatten)]
        args: VerifyArgs,
    }

    async fn audit(
        server: &TestServer,
        saved: &Path,
        key: &str,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        let mut argv = vec![
            "verify",
            "--server",
            &server.url,
            "--token",
            crate::test_server::TEST_TOKEN,
            "--public-key",
            key,
            "--checkpoint",
        ];
        let saved_text = saved.display().to_string();
        argv.push(&saved_text);
        argv.extend_from_slice(extra);
        let harness = Harness::try_parse_from(argv)?;
        run(&harness.args, saved).await
    }

    #[tokio::test]
    async fn audits_pass_from_a_saved_checkpoint_sampled_and_in_full() {
        // A small page size makes the full audit page through the ledger.
        let limits = ServerLimits {
            page_size_max: 7,
            ..ServerLimits::default()
        };
        let server = TestServer::start(limits).await;
        server.append("acme/notes/a", "one", 10).await;
        let saved = server.checkpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let saved_path = dir.path().join("saved.hex");
        checkpoint_file::save(&saved_path, &saved).unwrap();
        server.append("acme/notes/b", "two", 57).await;
        let latest = server.checkpoint().await;
        // The server's policy activation, then 10 and 57.
        assert_eq!(latest.checkpoint.tree_size, 68);

        let key = server.identity.public_key().to_hex();
        let new_path = dir.path().join("new.hex");
        let new_text = new_path.display().to_string();
        for mode in [
            &["--samples", "5"][..],
            &["--samples", "1000"][..],
            &["--full"][..],
        ] {
            let mut extra = vec!["--save-new", &new_text];
            extra.extend_from_slice(mode);
            audit(&server, &saved_path, &key, &extra).await.unwrap();
            assert_eq!(
                checkpoint_file::load(&new_path).unwrap(),
                latest,
                "{mode:?}"
            );
            std::fs::remove_file(&new_path).unwrap();
        }
        // Nothing appended since: the saved checkpoint is the latest, and that verifies too.
        audit(&server, &new_path_from(&latest, dir.path()), &key, &[])
            .await
            .unwrap();
    }

    fn new_path_from(checkpoint: &SignedCheckpoint, dir: &Path) -> std::path::PathBuf {
        let path = dir.join("same.hex");
        checkpoint_file::save(&path, checkpoint).unwrap();
        path
    }

    #[tokio::test]
    async fn audits_fail_naming_the_step() {
        let server = TestServer::start(ServerLimits::default()).await;
        server.append("acme/notes/a", "one", 5).await;
        let saved = server.checkpoint().await;
        server.append("acme/notes/a", "two", 5).await;
        server.checkpoint().await;
        let dir = tempfile::tempdir().unwrap();
        let key = server.identity.public_key().to_hex();
        // The server's signing key, to forge checkpoints a real server would never sign.
        let signer = CheckpointSigner::from_secret_bytes([2; 32]);
        assert_eq!(signer.public_key(), server.identity.public_key());

        let check = |checkpoint: SignedCheckpoint, key: String, fragment: &'static str| {
            let path = dir.path().join("case.hex");
            checkpoint_file::save(&path, &checkpoint).unwrap();
            let server = &server;
            async move {
                for mode in [&[][..], &["--full"][..]] {
                    let error =
                        format!("{:#}", audit(server, &path, &key, mode).await.unwrap_err());
                    assert!(error.contains(fragment), "{mode:?}: {error}");
                }
            }
        };
        let other_key = CheckpointSigner::from_secret_bytes([9; 32])
            .public_key()
            .to_hex();
        check(
            saved.clone(),
            other_key,
            "verification failed: saved checkpoint",
        )
        .await;
        let other_log = signer.sign(Checkpoint {
            log_id: LogId([8; 32]),
            ..saved.checkpoint
        });
        check(other_log, key.clone(), "log id").await;
        let other_root = signer.sign(Checkpoint {
            root: Hash([0; 32]),
            ..saved.checkpoint
        });
        check(
            other_root,
            key.clone(),
            "verification failed: consistency proof",
        )
        .await;
        // Larger than the whole ledger (its policy activation and the ten records).
        let larger = signer.sign(Checkpoint {
            tree_size: 12,
            ..saved.checkpoint
        });
        check(larger, key, "the log went back").await;
    }

    #[test]
    fn long_position_lists_are_cut_short() {
        assert_eq!(summarize_positions(&[1, 2, 3]), "1, 2, 3");
        let many: Vec<u64> = (1..=20).collect();
        assert_eq!(
            summarize_positions(&many),
            "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, ... 20 (of 20)"
        );
    }
}
