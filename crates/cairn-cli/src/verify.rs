//! `cairn verify`: audit a ledger.
//!
//! Online (`--checkpoint FILE --public-key HEX`): against a running server, starting from a
//! checkpoint saved earlier and a key pinned out of band, never from what the server says about
//! itself. Offline (`--data DIR`): from a stopped server's segment files, recomputing everything.

mod offline;
mod online;

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{ArgGroup, Args};

use crate::client::ServerArgs;

/// `cairn verify`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["checkpoint", "data"])))]
pub struct VerifyArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// Online audit: a checkpoint saved earlier (`cairn checkpoint --save`).
    #[arg(long, value_name = "FILE", requires = "public_key")]
    checkpoint: Option<PathBuf>,

    /// The ed25519 key (64 hex digits) checkpoints must be signed with, pinned out of band.
    /// Required online; offline, the default is the key in the data directory's identity.
    #[arg(long, value_name = "HEX64")]
    public_key: Option<String>,

    /// Online: how many records to check by inclusion proof, spread over the tree (the first and
    /// the last always among them).
    #[arg(long, default_value_t = 32)]
    samples: u64,

    /// Online: read every record and recompute the whole tree instead of sampling.
    #[arg(long)]
    full: bool,

    /// Online: on success, save the new checkpoint for the next audit.
    #[arg(long, value_name = "FILE")]
    save_new: Option<PathBuf>,

    /// Offline audit: the data directory of a stopped server.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["samples", "full", "save_new"])]
    data: Option<PathBuf>,
}

/// Runs the online or the offline audit.
pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    match (&args.checkpoint, &args.data) {
        (Some(checkpoint), _) => online::run(&args, checkpoint).await,
        (None, Some(data)) => offline::run(data.clone(), args.public_key.clone()).await,
        (None, None) => unreachable!("clap requires --checkpoint or --data"),
    }
}

/// Positions (1-based) to check in a tree of `tree_size` records: the first and the last, plus
/// `samples - 2` more, one drawn at random from each of equal strata of the positions between
/// them, plus `extra` positions inside the tree (the seam with the saved checkpoint). Random
/// draws keep a server from knowing in advance which records an audit will look at; strata keep
/// the sample spread over the whole tree. `random_below(n)` returns a number in `0..n`.
pub fn sample_positions(
    tree_size: u64,
    samples: u64,
    extra: &[u64],
    mut random_below: impl FnMut(u64) -> u64,
) -> Vec<u64> {
    let mut positions = BTreeSet::new();
    if tree_size == 0 || samples == 0 {
        return Vec::new();
    }
    if samples >= tree_size {
        positions.extend(1..=tree_size);
    } else {
        positions.insert(tree_size);
        if samples >= 2 {
            positions.insert(1);
            // Positions 2..tree_size (exclusive) in `strata` strata of at least one position each:
            // samples < tree_size, so interior >= samples - 2 = strata.
            let interior = tree_size - 2;
            let strata = samples - 2;
            for stratum in 0..strata {
                let start = 2 + stratum * interior / strata;
                let end = 2 + (stratum + 1) * interior / strata;
                positions.insert(start + random_below(end - start));
            }
        }
    }
    positions.extend(
        extra
            .iter()
            .copied()
            .filter(|position| (1..=tree_size).contains(position)),
    );
    positions.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_include_the_ends_and_spread_over_the_tree() {
        let low = sample_positions(1000, 6, &[], |_| 0);
        assert_eq!(low, vec![1, 2, 251, 501, 750, 1000]);
        let high = sample_positions(1000, 6, &[], |bound| bound - 1);
        assert_eq!(high, vec![1, 250, 500, 749, 999, 1000]);
    }

    #[test]
    fn every_draw_stays_inside_its_stratum_and_the_tree() {
        let mut seed = 7u64;
        for tree_size in [3u64, 4, 10, 33, 1000] {
            for samples in [2u64, 3, 5, 32] {
                let positions = sample_positions(tree_size, samples, &[], |bound| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 33) % bound
                });
                assert_eq!(positions.first(), Some(&1));
                assert_eq!(positions.last(), Some(&tree_size));
                assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
                assert_eq!(
                    positions.len() as u64,
                    samples.min(tree_size),
                    "{tree_size} {samples}"
                );
            }
        }
    }

    #[test]
    fn small_trees_and_small_samples() {
        assert_eq!(sample_positions(5, 32, &[], |_| 0), vec![1, 2, 3, 4, 5]);
        assert_eq!(sample_positions(5, 5, &[], |_| 0), vec![1, 2, 3, 4, 5]);
        assert_eq!(sample_positions(5, 1, &[], |_| 0), vec![5]);
        assert_eq!(sample_positions(5, 0, &[], |_| 0), Vec::<u64>::new());
        assert_eq!(sample_positions(0, 32, &[3], |_| 0), Vec::<u64>::new());
        assert_eq!(sample_positions(1, 32, &[], |_| 0), vec![1]);
    }

    #[test]
    fn the_seam_with_the_saved_checkpoint_is_added() {
        let positions = sample_positions(100, 2, &[40, 41, 0, 101], |_| 0);
        assert_eq!(positions, vec![1, 40, 41, 100]);
    }
}
