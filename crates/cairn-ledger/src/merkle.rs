//! The Merkle tree of the ledger: RFC 9162's tree shape, inclusion proofs and consistency proofs,
//! with blake3 in place of SHA-256.
//!
//! The in-memory [`MerkleTree`] keeps every complete, aligned subtree hash (about two hashes per
//! leaf), so the root of any prefix and every proof cost O(log n) hash operations however large
//! the tree grows.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::ids::Hash;

/// Prefix of a leaf hash's input (RFC 9162 section 2.1.1), so a leaf can never pass for a node.
const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an interior node hash's input.
const NODE_PREFIX: u8 = 0x01;

/// The hash of one leaf: `blake3(0x00 || data)`. For ledger records, `data` is the encoded
/// envelope.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[LEAF_PREFIX]);
    hasher.update(data);
    Hash(*hasher.finalize().as_bytes())
}

/// The hash of an interior node: `blake3(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut input = [0u8; 65];
    input[0] = NODE_PREFIX;
    input[1..33].copy_from_slice(&left.0);
    input[33..].copy_from_slice(&right.0);
    Hash(*blake3::hash(&input).as_bytes())
}

/// The root of the empty tree: blake3 of the empty string (RFC 9162's `MTH({}) = HASH()`).
pub fn empty_root() -> Hash {
    Hash(*blake3::hash(&[]).as_bytes())
}

/// The largest power of two strictly below `n`; `n` must be at least 2. RFC 9162's split point `k`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// An append-only Merkle tree over leaf hashes, held in memory.
///
/// `levels[k][i]` is the hash of the complete subtree over leaves `i * 2^k .. (i + 1) * 2^k`;
/// `levels[0]` holds the leaf hashes. Every subtree RFC 9162 needs, for any tree size up to
/// [`MerkleTree::len`], is a fold of at most 64 of these along its right edge.
#[derive(Clone, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> MerkleTree {
        MerkleTree::default()
    }

    /// Appends a leaf hash (see [`leaf_hash`]) and every complete subtree it closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let nodes = &mut self.levels[level];
            nodes.push(hash);
            if nodes.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&nodes[nodes.len() - 2], &nodes[nodes.len() - 1]);
            level += 1;
        }
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at a 0-based index, if the tree has it.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let index = usize::try_from(index).ok()?;
        self.levels.first()?.get(index).copied()
    }

    /// The root of the whole tree ([`empty_root`] when it is empty).
    pub fn root(&self) -> Hash {
        if self.is_empty() {
            empty_root()
        } else {
            self.subtree_hash(0, self.len())
        }
    }

    /// The root of the tree of the first `tree_size` leaves, for any size up to [`Self::len`].
    pub fn root_at(&self, tree_size: u64) -> Result<Hash, LedgerError> {
        self.check_size(tree_size)?;
        if tree_size == 0 {
            return Ok(empty_root());
        }
        Ok(self.subtree_hash(0, tree_size))
    }

    /// The audit path of the leaf at `leaf_index` in the tree of size `tree_size` (RFC 9162
    /// section 2.1.3.1), siblings ordered from the leaf up to the root.
    pub fn inclusion_proof(
        &self,
        leaf_index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, LedgerError> {
        self.check_size(tree_size)?;
        if leaf_index >= tree_size {
            return Err(LedgerError::OutOfRange {
                reason: format!("leaf index {leaf_index} is not in a tree of size {tree_size}"),
            });
        }
        // PATH(m, D[lo:hi]) descends towards the leaf; each step adds the sibling subtree, which
        // belongs after the deeper siblings, so the path is built top-down and reversed.
        let mut path = Vec::new();
        let (mut lo, mut hi) = (0, tree_size);
        while hi - lo > 1 {
            let mid = lo + split_point(hi - lo);
            if leaf_index < mid {
                path.push(self.subtree_hash(mid, hi));
                hi = mid;
            } else {
                path.push(self.subtree_hash(lo, mid));
                lo = mid;
            }
        }
        path.reverse();
        Ok(InclusionProof {
            leaf_index,
            tree_size,
            path,
        })
    }

    /// The proof that the tree of size `old_size` is a prefix of the tree of size `new_size`
    /// (RFC 9162 section 2.1.4.1). Needs `0 < old_size <= new_size <= len`; equal sizes give an
    /// empty path.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        self.check_size(new_size)?;
        if old_size == 0 || old_size > new_size {
            return Err(LedgerError::OutOfRange {
                reason: format!(
                    "a consistency proof needs 0 < old size <= new size, got {old_size} and {new_size}"
                ),
            });
        }
        // SUBPROOF(m, D[lo:hi], complete), unrolled: `m` counts the old leaves inside lo..hi and
        // `complete` is RFC 9162's `b` (whether lo..hi is itself a subtree the old tree had).
        let mut path = Vec::new();
        let (mut lo, mut hi) = (0, new_size);
        let mut m = old_size;
        let mut complete = true;
        loop {
            let n = hi - lo;
            if m == n {
                if !complete {
                    path.push(self.subtree_hash(lo, hi));
                }
                break;
            }
            let k = split_point(n);
            if m <= k {
                path.push(self.subtree_hash(lo + k, hi));
                hi = lo + k;
            } else {
                path.push(self.subtree_hash(lo, lo + k));
                lo += k;
                m -= k;
                complete = false;
            }
        }
        path.reverse();
        Ok(ConsistencyProof {
            old_size,
            new_size,
            path,
        })
    }

    fn check_size(&self, tree_size: u64) -> Result<(), LedgerError> {
        if tree_size > self.len() {
            return Err(LedgerError::OutOfRange {
                reason: format!("tree size {tree_size} is beyond the {} leaves", self.len()),
            });
        }
        Ok(())
    }

    /// `MTH(D[start:end])` for a range RFC 9162's recursion can produce: non-empty, and `start`
    /// a multiple of a power of two at least `end - start`. Such a range is a run of complete,
    /// aligned subtrees of decreasing size (the set bits of its length), folded from the right.
    fn subtree_hash(&self, start: u64, end: u64) -> Hash {
        debug_assert!(start < end && end <= self.len());
        let mut remaining = end - start;
        let mut block_end = end;
        let mut right: Option<Hash> = None;
        while remaining != 0 {
            let level = remaining.trailing_zeros();
            let block_size = 1u64 << level;
            let block_start = block_end - block_size;
            debug_assert_eq!(block_start % block_size, 0, "unaligned subtree");
            let block = self.levels[level as usize][(block_start >> level) as usize];
            right = Some(match right {
                None => block,
                Some(right) => node_hash(&block, &right),
            });
            remaining -= block_size;
            block_end = block_start;
        }
        right.unwrap_or_else(empty_root)
    }
}

impl fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The leaves can number millions: show the size and root only.
        f.debug_struct("MerkleTree")
            .field("len", &self.len())
            .field("root", &self.root())
            .finish()
    }
}

/// Proof that one leaf is in the tree of a given size (RFC 9162 section 2.1.3).
///
/// It proves a statement about the pair (`tree_size`, root): the verifier must take both from
/// the same trusted checkpoint, since the algorithm alone does not bind a size to a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The 0-based index of the leaf (a record's position minus one).
    pub leaf_index: u64,
    /// The size of the tree the leaf is proven to be in.
    pub tree_size: u64,
    /// The sibling hashes from the leaf up to the root.
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// Checks that `leaf_hash` is the leaf at `leaf_index` of the tree of size `tree_size` whose
    /// root is `root`, by RFC 9162 section 2.1.3.2.
    pub fn verify(&self, leaf_hash: &Hash, root: &Hash) -> Result<(), LedgerError> {
        if self.leaf_index >= self.tree_size {
            return Err(invalid(format!(
                "leaf index {} is not in a tree of size {}",
                self.leaf_index, self.tree_size
            )));
        }
        let mut fn_ = self.leaf_index;
        let mut sn = self.tree_size - 1;
        let mut r = *leaf_hash;
        for p in &self.path {
            if sn == 0 {
                return Err(invalid("inclusion path is too long".into()));
            }
            if fn_ & 1 == 1 || fn_ == sn {
                r = node_hash(p, &r);
                if fn_ & 1 == 0 {
                    while fn_ & 1 == 0 && fn_ != 0 {
                        fn_ >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                r = node_hash(&r, p);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        if sn != 0 {
            return Err(invalid("inclusion path is too short".into()));
        }
        if r != *root {
            return Err(invalid("inclusion path does not lead to the root".into()));
        }
        Ok(())
    }
}

/// Proof that the tree of size `old_size` is a prefix of the tree of size `new_size`: the log
/// was only appended to in between (RFC 9162 section 2.1.4).
///
/// Like an inclusion proof, it proves a statement about (size, root) pairs the verifier takes
/// from trusted checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The size of the older tree.
    pub old_size: u64,
    /// The size of the newer tree.
    pub new_size: u64,
    /// The subtree hashes RFC 9162's SUBPROOF produces, in its order.
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    /// Checks that `old_root` (of the tree of size `old_size`) and `new_root` (of size
    /// `new_size`) are roots of one append-only log, by RFC 9162 section 2.1.4.2. Equal sizes
    /// need an empty path and equal roots; an old size of 0 proves nothing and is refused.
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), LedgerError> {
        if self.old_size == 0 {
            return Err(invalid(
                "a consistency proof from the empty tree proves nothing".into(),
            ));
        }
        if self.old_size > self.new_size {
            return Err(invalid(format!(
                "old size {} is larger than new size {}",
                self.old_size, self.new_size
            )));
        }
        if self.old_size == self.new_size {
            if !self.path.is_empty() {
                return Err(invalid("trees of equal size need an empty path".into()));
            }
            if old_root != new_root {
                return Err(invalid("trees of equal size have different roots".into()));
            }
            return Ok(());
        }
        // Step 1: an empty path proves nothing between different sizes.
        if self.path.is_empty() {
            return Err(invalid("consistency path is empty".into()));
        }
        // Step 2: when the old tree is a complete subtree, its root is the path's implicit head.
        let mut path = self.path.iter();
        let head = if self.old_size.is_power_of_two() {
            *old_root
        } else {
            match path.next() {
                Some(first) => *first,
                None => return Err(invalid("consistency path is empty".into())),
            }
        };
        // Steps 3 to 6.
        let mut fn_ = self.old_size - 1;
        let mut sn = self.new_size - 1;
        while fn_ & 1 == 1 {
            fn_ >>= 1;
            sn >>= 1;
        }
        let mut fr = head;
        let mut sr = head;
        for c in path {
            if sn == 0 {
                return Err(invalid("consistency path is too long".into()));
            }
            if fn_ & 1 == 1 || fn_ == sn {
                fr = node_hash(c, &fr);
                sr = node_hash(c, &sr);
                if fn_ & 1 == 0 {
                    while fn_ & 1 == 0 && fn_ != 0 {
                        fn_ >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                sr = node_hash(&sr, c);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        // Step 7.
        if sn != 0 {
            return Err(invalid("consistency path is too short".into()));
        }
        if fr != *old_root {
            return Err(invalid(
                "consistency path does not lead to the old root".into(),
            ));
        }
        if sr != *new_root {
            return Err(invalid(
                "consistency path does not lead to the new root".into(),
            ));
        }
        Ok(())
    }
}

fn invalid(reason: String) -> LedgerError {
    LedgerError::InvalidProof { reason }
}

/// The Merkle root of a growing list of leaves in O(log n) memory: the complete subtrees along
/// the right edge, like a binary counter. Gives the same roots as [`MerkleTree`], for verifiers
/// that recompute a whole ledger's root and need no proofs (`verify_segments`).
#[derive(Clone, Debug, Default)]
pub struct MerkleFrontier {
    /// `(height, hash)` of complete subtrees, tallest first.
    subtrees: Vec<(u32, Hash)>,
}

impl MerkleFrontier {
    /// Adds the next leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.subtrees.last() {
            if height != node.0 {
                break;
            }
            self.subtrees.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.subtrees.push(node);
    }

    /// The root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.subtrees.iter().rev();
        let Some(&(_, mut root)) = nodes.next() else {
            return empty_root();
        };
        for (_, left) in nodes {
            root = node_hash(left, &root);
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162 section 2.1.1, literally.
    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    /// RFC 9162 section 2.1.3.1, literally.
    fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split_point(n as u64) as usize;
        if m < k {
            let mut path = naive_path(m, &leaves[..k]);
            path.push(naive_root(&leaves[k..]));
            path
        } else {
            let mut path = naive_path(m - k, &leaves[k..]);
            path.push(naive_root(&leaves[..k]));
            path
        }
    }

    /// RFC 9162 section 2.1.4.1, literally.
    fn naive_subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete {
                Vec::new()
            } else {
                vec![naive_root(leaves)]
            };
        }
        let k = split_point(n as u64) as usize;
        if m <= k {
            let mut path = naive_subproof(m, &leaves[..k], complete);
            path.push(naive_root(&leaves[k..]));
            path
        } else {
            let mut path = naive_subproof(m - k, &leaves[k..], false);
            path.push(naive_root(&leaves[..k]));
            path
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    fn tree_of(leaves: &[Hash]) -> MerkleTree {
        let mut tree = MerkleTree::new();
        for leaf in leaves {
            tree.push(*leaf);
        }
        tree
    }

    #[test]
    fn split_point_is_the_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (u64::MAX, 1 << 63),
        ] {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    #[test]
    fn roots_match_the_definition() {
        let all = leaves(70);
        let tree = tree_of(&all);
        assert_eq!(tree.len(), 70);
        for size in 0..=70 {
            assert_eq!(
                tree.root_at(size as u64).unwrap(),
                naive_root(&all[..size]),
                "size {size}"
            );
        }
        assert_eq!(tree.root(), naive_root(&all));
        assert_eq!(MerkleTree::new().root(), empty_root());
        assert!(tree.root_at(71).is_err());
    }

    #[test]
    fn inclusion_proofs_match_the_definition_and_verify() {
        let all = leaves(40);
        let tree = tree_of(&all);
        for size in 1..=40usize {
            let root = naive_root(&all[..size]);
            for index in 0..size {
                let proof = tree.inclusion_proof(index as u64, size as u64).unwrap();
                assert_eq!(
                    proof.path,
                    naive_path(index, &all[..size]),
                    "{index} in {size}"
                );
                proof.verify(&all[index], &root).unwrap();
            }
        }
        assert!(tree.inclusion_proof(5, 5).is_err());
        assert!(tree.inclusion_proof(0, 41).is_err());
    }

    #[test]
    fn consistency_proofs_match_the_definition_and_verify() {
        let all = leaves(40);
        let tree = tree_of(&all);
        for new_size in 1..=40usize {
            let new_root = naive_root(&all[..new_size]);
            for old_size in 1..=new_size {
                let proof = tree
                    .consistency_proof(old_size as u64, new_size as u64)
                    .unwrap();
                assert_eq!(
                    proof.path,
                    naive_subproof(old_size, &all[..new_size], true),
                    "{old_size} to {new_size}"
                );
                proof
                    .verify(&naive_root(&all[..old_size]), &new_root)
                    .unwrap();
            }
        }
        assert!(tree.consistency_proof(0, 5).is_err());
        assert!(tree.consistency_proof(6, 5).is_err());
        assert!(tree.consistency_proof(5, 41).is_err());
    }

    #[test]
    fn paths_of_the_wrong_length_say_so() {
        let all = leaves(6);
        let tree = tree_of(&all);
        let reason = |result: Result<(), LedgerError>| match result {
            Err(LedgerError::InvalidProof { reason }) => reason,
            other => panic!("expected an invalid proof, got {other:?}"),
        };
        let mut inclusion = tree.inclusion_proof(4, 6).unwrap();
        inclusion.path.push(all[0]);
        assert!(reason(inclusion.verify(&all[4], &tree.root())).contains("too long"));
        inclusion.path.truncate(1);
        assert!(reason(inclusion.verify(&all[4], &tree.root())).contains("too short"));
        let old_root = tree.root_at(3).unwrap();
        let mut consistency = tree.consistency_proof(3, 6).unwrap();
        consistency.path.push(all[0]);
        assert!(reason(consistency.verify(&old_root, &tree.root())).contains("too long"));
        consistency.path.truncate(2);
        assert!(reason(consistency.verify(&old_root, &tree.root())).contains("too short"));
    }

    #[test]
    fn equal_sizes_need_an_empty_path_and_equal_roots() {
        let all = leaves(5);
        let root = naive_root(&all);
        let proof = ConsistencyProof {
            old_size: 5,
            new_size: 5,
            path: Vec::new(),
        };
        proof.verify(&root, &root).unwrap();
        assert!(proof.verify(&root, &all[0]).is_err());
        let padded = ConsistencyProof {
            path: vec![all[0]],
            ..proof
        };
        assert!(padded.verify(&root, &root).is_err());
    }

    #[test]
    fn the_empty_tree_proves_nothing() {
        let proof = ConsistencyProof {
            old_size: 0,
            new_size: 3,
            path: Vec::new(),
        };
        assert!(
            proof
                .verify(&empty_root(), &naive_root(&leaves(3)))
                .is_err()
        );
    }

    #[test]
    fn leaves_and_nodes_are_domain_separated() {
        let left = leaf_hash(b"a");
        let right = leaf_hash(b"b");
        let mut node_input = left.0.to_vec();
        node_input.extend_from_slice(&right.0);
        assert_ne!(node_hash(&left, &right), leaf_hash(&node_input));
    }

    #[test]
    fn the_tree_keeps_about_two_hashes_per_leaf() {
        let tree = tree_of(&leaves(1000));
        let stored: usize = tree.levels.iter().map(Vec::len).sum();
        assert!(stored < 2000, "{stored} hashes stored");
        assert_eq!(tree.leaf(999), Some(leaves(1000)[999]));
        assert_eq!(tree.leaf(1000), None);
    }
}
