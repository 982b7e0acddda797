//! Model-based property tests of the Merkle tree and checkpoints: every proof the tree produces
//! verifies, roots match a naive recomputation (RFC 9162 section 2.1.1), and any tampering with
//! a proof, a hash, a size or a signature is rejected.
//!
//! A proof states something about a (size, root) pair the verifier takes from one trusted
//! checkpoint, so a proof whose size was changed is checked against the real root of the size it
//! now claims. (Against the old root it can pass: leaf 0 walks the same path in trees of 3 and 4
//! leaves.) `extended` holds leaves beyond the tree under test so those roots exist.

use cairn_ledger::{
    Checkpoint, CheckpointSigner, ConsistencyProof, Hash, InclusionProof, LogId, MerkleFrontier,
    MerkleTree, SignedCheckpoint, Timestamp, empty_root, leaf_hash, node_hash,
};
use proptest::prelude::*;

/// splitmix64: a small deterministic generator for the choices inside one case, seeded by
/// proptest so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        match (high - low).checked_add(1) {
            Some(span) => low + self.next() % span,
            None => self.next(),
        }
    }

    fn hash(&mut self) -> Hash {
        let mut bytes = [0; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        Hash(bytes)
    }
}

/// RFC 9162 section 2.1.1, literally.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut flipped = *hash;
    flipped.0[bit / 8] ^= 1 << (bit % 8);
    flipped
}

fn tree_of(leaves: &[Hash]) -> MerkleTree {
    let mut tree = MerkleTree::new();
    for leaf in leaves {
        tree.push(*leaf);
    }
    tree
}

/// Sizes near and far from `size` a tampered proof may claim.
fn changed_sizes(size: u64, max: u64, rng: &mut Rng) -> Vec<u64> {
    let mut sizes = vec![
        size.wrapping_add(1),
        size.wrapping_sub(1),
        rng.range(0, max),
        rng.range(0, max),
        0,
        max,
    ];
    sizes.retain(|&changed| changed != size && changed <= max);
    sizes
}

/// Variants of a path with one element added or removed.
fn resized_paths(path: &[Hash], rng: &mut Rng) -> Vec<Vec<Hash>> {
    let mut paths = Vec::new();
    for removed in 0..path.len() {
        let mut shorter = path.to_vec();
        shorter.remove(removed);
        paths.push(shorter);
    }
    let extra = rng.hash();
    for at in [0, path.len(), rng.range(0, path.len() as u64) as usize] {
        let mut longer = path.to_vec();
        longer.insert(at, extra);
        paths.push(longer);
        if !path.is_empty() {
            let mut doubled = path.to_vec();
            let copied = path[at.min(path.len() - 1)];
            doubled.insert(at, copied);
            paths.push(doubled);
        }
    }
    paths
}

/// Every tampering of a valid inclusion proof is rejected. `extended` is a longer tree with the
/// same prefix, for the roots of the sizes a tampered proof may claim.
fn check_inclusion_tampering(
    proof: &InclusionProof,
    extended: &MerkleTree,
    rng: &mut Rng,
    every_bit: bool,
) {
    let leaf = extended.leaf(proof.leaf_index).unwrap();
    let root = extended.root_at(proof.tree_size).unwrap();
    proof.verify(&leaf, &root).unwrap();

    for (element, hash) in proof.path.iter().enumerate() {
        let bits: Vec<usize> = if every_bit {
            (0..256).collect()
        } else {
            vec![rng.range(0, 255) as usize]
        };
        for bit in bits {
            let mut tampered = proof.clone();
            tampered.path[element] = flip(hash, bit);
            assert!(
                tampered.verify(&leaf, &root).is_err(),
                "path[{element}] bit {bit} flipped in {proof:?}"
            );
        }
    }
    let bits: Vec<usize> = if every_bit {
        (0..256).collect()
    } else {
        (0..4).map(|_| rng.range(0, 255) as usize).collect()
    };
    for &bit in &bits {
        assert!(
            proof.verify(&flip(&leaf, bit), &root).is_err(),
            "leaf bit {bit}"
        );
        assert!(
            proof.verify(&leaf, &flip(&root, bit)).is_err(),
            "root bit {bit}"
        );
    }
    for leaf_index in changed_sizes(proof.leaf_index, u64::MAX, rng) {
        let tampered = InclusionProof {
            leaf_index,
            ..proof.clone()
        };
        assert!(
            tampered.verify(&leaf, &root).is_err(),
            "leaf index {leaf_index} accepted for {proof:?}"
        );
    }
    for tree_size in changed_sizes(proof.tree_size, extended.len(), rng) {
        let tampered = InclusionProof {
            tree_size,
            ..proof.clone()
        };
        let claimed_root = extended.root_at(tree_size).unwrap();
        assert!(
            tampered.verify(&leaf, &claimed_root).is_err(),
            "tree size {tree_size} accepted for {proof:?}"
        );
    }
    for path in resized_paths(&proof.path, rng) {
        let tampered = InclusionProof {
            path,
            ..proof.clone()
        };
        assert!(
            tampered.verify(&leaf, &root).is_err(),
            "{tampered:?} accepted"
        );
    }
}

/// Every tampering of a valid consistency proof is rejected.
fn check_consistency_tampering(
    proof: &ConsistencyProof,
    extended: &MerkleTree,
    rng: &mut Rng,
    every_bit: bool,
) {
    let old_root = extended.root_at(proof.old_size).unwrap();
    let new_root = extended.root_at(proof.new_size).unwrap();
    proof.verify(&old_root, &new_root).unwrap();

    for (element, hash) in proof.path.iter().enumerate() {
        let bits: Vec<usize> = if every_bit {
            (0..256).collect()
        } else {
            vec![rng.range(0, 255) as usize]
        };
        for bit in bits {
            let mut tampered = proof.clone();
            tampered.path[element] = flip(hash, bit);
            assert!(
                tampered.verify(&old_root, &new_root).is_err(),
                "path[{element}] bit {bit} flipped in {proof:?}"
            );
        }
    }
    let bits: Vec<usize> = if every_bit {
        (0..256).collect()
    } else {
        (0..4).map(|_| rng.range(0, 255) as usize).collect()
    };
    for &bit in &bits {
        assert!(
            proof.verify(&flip(&old_root, bit), &new_root).is_err(),
            "old root bit {bit}"
        );
        assert!(
            proof.verify(&old_root, &flip(&new_root, bit)).is_err(),
            "new root bit {bit}"
        );
    }
    for old_size in changed_sizes(proof.old_size, extended.len(), rng) {
        let tampered = ConsistencyProof {
            old_size,
            ..proof.clone()
        };
        let claimed_root = extended.root_at(old_size).unwrap();
        assert!(
            tampered.verify(&claimed_root, &new_root).is_err(),
            "old size {old_size} accepted for {proof:?}"
        );
    }
    for new_size in changed_sizes(proof.new_size, extended.len(), rng) {
        let tampered = ConsistencyProof {
            new_size,
            ..proof.clone()
        };
        let claimed_root = extended.root_at(new_size).unwrap();
        assert!(
            tampered.verify(&old_root, &claimed_root).is_err(),
            "new size {new_size} accepted for {proof:?}"
        );
    }
    for path in resized_paths(&proof.path, rng) {
        let tampered = ConsistencyProof {
            path,
            ..proof.clone()
        };
        assert!(
            tampered.verify(&old_root, &new_root).is_err(),
            "{tampered:?} accepted"
        );
    }
}

fn check_tree(leaf_count: u64, extra: u64, seed: u64) {
    let mut rng = Rng(seed);
    let leaves: Vec<Hash> = (0..leaf_count + extra)
        .map(|index| leaf_hash(&[seed.to_le_bytes(), index.to_le_bytes()].concat()))
        .collect();
    let tree = tree_of(&leaves[..leaf_count as usize]);
    let extended = tree_of(&leaves);
    let n = leaf_count;
    assert_eq!(tree.len(), n);

    // Roots against the naive recomputation.
    let mut sizes = vec![0, 1, n];
    sizes.extend((0..6).map(|_| rng.range(0, n)));
    for m in sizes {
        let expected = naive_root(&leaves[..m as usize]);
        assert_eq!(tree.root_at(m).unwrap(), expected, "root at {m}");
        assert_eq!(
            extended.root_at(m).unwrap(),
            expected,
            "extended root at {m}"
        );
    }
    assert_eq!(tree.root(), tree.root_at(n).unwrap());
    assert!(tree.root_at(n + 1).is_err());

    // The O(log n)-memory frontier gives the tree's root at every size on the way.
    let mut frontier = MerkleFrontier::default();
    assert_eq!(frontier.root(), empty_root());
    for (index, leaf) in leaves[..n as usize].iter().enumerate() {
        frontier.push(*leaf);
        assert_eq!(
            frontier.root(),
            tree.root_at(index as u64 + 1).unwrap(),
            "frontier at {}",
            index + 1
        );
    }

    // Every inclusion proof at the full size and at a random smaller size.
    let smaller = rng.range(1, n);
    for size in [n, smaller] {
        let root = tree.root_at(size).unwrap();
        let depth = 64 - (size - 1).leading_zeros() as usize;
        for index in 0..size {
            let proof = tree.inclusion_proof(index, size).unwrap();
            assert!(proof.path.len() <= depth, "{proof:?} deeper than {depth}");
            proof.verify(&leaves[index as usize], &root).unwrap();
        }
        assert!(tree.inclusion_proof(size, size).is_err());
    }
    assert!(tree.inclusion_proof(0, n + 1).is_err());

    // Consistency proofs: every old size for the full size when the tree is small, a sample
    // otherwise, and random pairs below the full size.
    let mut pairs: Vec<(u64, u64)> = if n <= 64 {
        (1..=n).map(|m| (m, n)).collect()
    } else {
        let mut pairs: Vec<(u64, u64)> = (0..32).map(|_| (rng.range(1, n), n)).collect();
        pairs.extend([(1, n), (n, n), (n - 1, n)]);
        let mut power = 1;
        while power < n {
            pairs.push((power, n));
            power *= 2;
        }
        pairs
    };
    for _ in 0..32 {
        let new_size = rng.range(1, n);
        pairs.push((rng.range(1, new_size), new_size));
    }
    for &(m, new_size) in &pairs {
        let proof = tree.consistency_proof(m, new_size).unwrap();
        proof
            .verify(&tree.root_at(m).unwrap(), &tree.root_at(new_size).unwrap())
            .unwrap();
    }
    assert!(tree.consistency_proof(0, n).is_err());
    assert!(tree.consistency_proof(n, n + 1).is_err());

    // Tampering, on a sample: the first, last and a random leaf, and a few consistency pairs,
    // one of each with every bit of every hash flipped.
    let mut indices = vec![0, n - 1, rng.range(0, n - 1)];
    indices.dedup();
    for (nth, &index) in indices.iter().enumerate() {
        let proof = tree.inclusion_proof(index, n).unwrap();
        check_inclusion_tampering(&proof, &extended, &mut rng, nth == 2 || indices.len() == 1);
        let proof = tree
            .inclusion_proof(index.min(smaller - 1), smaller)
            .unwrap();
        check_inclusion_tampering(&proof, &extended, &mut rng, false);
    }
    for nth in 0..4 {
        let (m, new_size) = pairs[rng.range(0, pairs.len() as u64 - 1) as usize];
        let proof = tree.consistency_proof(m, new_size).unwrap();
        check_consistency_tampering(&proof, &extended, &mut rng, nth == 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn proofs_verify_and_resist_tampering(
        leaf_count in 1u64..=2000,
        extra in 1u64..=64,
        seed in any::<u64>(),
    ) {
        check_tree(leaf_count, extra, seed);
    }

    #[test]
    fn checkpoints_resist_tampering(
        secret in any::<[u8; 32]>(),
        other_secret in any::<[u8; 32]>(),
        log_id in any::<[u8; 32]>(),
        tree_size in any::<u64>(),
        root in any::<[u8; 32]>(),
        timestamp in any::<i64>(),
        signature_bit in 0usize..512,
        field_bit in 0usize..640,
    ) {
        prop_assume!(secret != other_secret);
        let checkpoint = Checkpoint {
            log_id: LogId(log_id),
            tree_size,
            root: Hash(root),
            timestamp: Timestamp(timestamp),
        };
        check_checkpoint(checkpoint, secret, other_secret, &[signature_bit], &[field_bit]);
    }
}

/// Every tree size from 1 to 80, every proof and its tampering; up to size 8 with every bit of
/// every hash flipped.
#[test]
fn small_trees_exhaustively() {
    let leaves: Vec<Hash> = (0..88u64)
        .map(|index| leaf_hash(&index.to_be_bytes()))
        .collect();
    let tree = tree_of(&leaves[..80]);
    let extended = tree_of(&leaves);
    let mut rng = Rng(80);
    for size in 1..=80 {
        for index in 0..size {
            let proof = tree.inclusion_proof(index, size).unwrap();
            check_inclusion_tampering(&proof, &extended, &mut rng, size <= 8);
        }
        for m in 1..=size {
            let proof = tree.consistency_proof(m, size).unwrap();
            check_consistency_tampering(&proof, &extended, &mut rng, size <= 8);
        }
    }
}

/// Signs `checkpoint`, checks that it verifies, survives encoding, and that the given signature
/// and signing-field bit flips and a different key are all rejected. Field bits number the 80
/// bytes of the signed fields after the prefix: log id, tree size, root, timestamp.
fn check_checkpoint(
    checkpoint: Checkpoint,
    secret: [u8; 32],
    other_secret: [u8; 32],
    signature_bits: &[usize],
    field_bits: &[usize],
) {
    let signer = CheckpointSigner::from_secret_bytes(secret);
    let other = CheckpointSigner::from_secret_bytes(other_secret);
    let trusted = signer.public_key();
    let signed = signer.sign(checkpoint);
    signed.verify(&trusted).unwrap();
    assert_eq!(SignedCheckpoint::decode(&signed.encode()).unwrap(), signed);

    for &bit in signature_bits {
        let mut tampered = signed.clone();
        tampered.signature[bit / 8] ^= 1 << (bit % 8);
        assert!(tampered.verify(&trusted).is_err(), "signature bit {bit}");
    }
    for &bit in field_bits {
        // Flip the bit in the encoding, whose first 80 bytes are the signed fields.
        let mut bytes = signed.encode();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let tampered = SignedCheckpoint::decode(&bytes).unwrap();
        assert_ne!(tampered.checkpoint, signed.checkpoint);
        assert!(tampered.verify(&trusted).is_err(), "field bit {bit}");
    }
    // Trusting another key, or presenting another key (with or without its own signature).
    assert!(signed.verify(&other.public_key()).is_err());
    let relabelled = SignedCheckpoint {
        public_key: other.public_key(),
        ..signed.clone()
    };
    assert!(relabelled.verify(&other.public_key()).is_err());
    assert!(relabelled.verify(&trusted).is_err());
    let by_other = other.sign(checkpoint);
    by_other.verify(&other.public_key()).unwrap();
    assert!(by_other.verify(&trusted).is_err());
}

/// One checkpoint, one bit in every byte of the signature and of the signed fields (a different
/// bit in each byte; ed25519 verification is slow in a debug build, and the property test above
/// covers random bits).
#[test]
fn checkpoint_every_byte() {
    let checkpoint = Checkpoint {
        log_id: LogId([0x5c; 32]),
        tree_size: 1_000_003,
        root: leaf_hash(b"root"),
        timestamp: Timestamp(1_700_000_000_000_000),
    };
    let signature_bits: Vec<usize> = (0..64).map(|byte| byte * 8 + byte % 8).collect();
    let field_bits: Vec<usize> = (0..80).map(|byte| byte * 8 + (byte * 3) % 8).collect();
    check_checkpoint(checkpoint, [1; 32], [2; 32], &signature_bits, &field_bits);
}
