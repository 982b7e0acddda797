//! Roots, proofs and checkpoint acceptance over an in-memory [`MerkleTree`], shared by backends
//! that keep the tree in memory. Positions are 1-based; the tree's leaf indices are 0-based.

use cairn_ledger::{
    ConsistencyProof, Hash, InclusionProof, MerkleTree, Position, SignedCheckpoint,
};

use crate::error::StoreError;

/// The root of the tree of the first `tree_size` records.
pub fn root_at(tree: &MerkleTree, tree_size: u64) -> Result<Hash, StoreError> {
    check_size(tree, tree_size)?;
    Ok(tree.root_at(tree_size)?)
}

/// Proof that the record at `position` is in the tree of size `tree_size`.
pub fn inclusion_proof(
    tree: &MerkleTree,
    position: Position,
    tree_size: u64,
) -> Result<InclusionProof, StoreError> {
    check_size(tree, tree_size)?;
    let Some(leaf_index) = position.leaf_index() else {
        return Err(StoreError::OutOfRange("position 0 holds no record".into()));
    };
    if position.0 > tree_size {
        return Err(StoreError::OutOfRange(format!(
            "position {position} is not in a tree of size {tree_size}"
        )));
    }
    Ok(tree.inclusion_proof(leaf_index, tree_size)?)
}

/// Proof that the tree of size `old_size` is a prefix of the tree of size `new_size`.
pub fn consistency_proof(
    tree: &MerkleTree,
    old_size: u64,
    new_size: u64,
) -> Result<ConsistencyProof, StoreError> {
    check_size(tree, new_size)?;
    if old_size == 0 || old_size > new_size {
        return Err(StoreError::OutOfRange(format!(
            "a consistency proof needs 0 < old size <= new size, got {old_size} and {new_size}"
        )));
    }
    Ok(tree.consistency_proof(old_size, new_size)?)
}

/// Accepts a checkpoint only if it signs this ledger's root at its size and does not go back in
/// size: a checkpoint store never holds a checkpoint that contradicts the records.
pub fn check_checkpoint(
    tree: &MerkleTree,
    latest: Option<&SignedCheckpoint>,
    candidate: &SignedCheckpoint,
) -> Result<(), StoreError> {
    let size = candidate.checkpoint.tree_size;
    check_size(tree, size)?;
    let root = tree.root_at(size)?;
    if root != candidate.checkpoint.root {
        return Err(StoreError::InvalidArgument {
            field: "checkpoint.root",
            reason: format!(
                "the ledger's root at size {size} is {root}, the checkpoint says {}",
                candidate.checkpoint.root
            ),
        });
    }
    if let Some(latest) = latest {
        if latest.checkpoint.log_id != candidate.checkpoint.log_id {
            return Err(StoreError::InvalidArgument {
                field: "checkpoint.log_id",
                reason: "differs from the log id of the stored checkpoints".into(),
            });
        }
        if size < latest.checkpoint.tree_size {
            return Err(StoreError::InvalidArgument {
                field: "checkpoint.tree_size",
                reason: format!(
                    "{size} is below the latest checkpoint's size {}",
                    latest.checkpoint.tree_size
                ),
            });
        }
    }
    Ok(())
}

fn check_size(tree: &MerkleTree, tree_size: u64) -> Result<(), StoreError> {
    if tree_size > tree.len() {
        return Err(StoreError::OutOfRange(format!(
            "tree size {tree_size} is beyond the head {}",
            tree.len()
        )));
    }
    Ok(())
}
