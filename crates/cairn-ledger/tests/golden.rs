//! Golden files and test vectors: the committed bytes of every published format, and the hashes,
//! proofs and signatures `docs/ledger-format.md` quotes for independent verifiers.
//!
//! Nothing here regenerates anything. If one of these tests fails, the encoding changed: a
//! published format is never edited, so define a new version (and new golden files) instead.

use cairn_ledger::{
    Checkpoint, CheckpointSigner, ConsistencyProof, DataClass, DataKey, ENVELOPE_FORMAT_V1,
    Envelope, EventId, Hash, InclusionProof, KeyId, LineageParent, LogId, MerkleTree, Position,
    PublicKey, Record, SealedPayload, SignedCheckpoint, StreamId, StreamVersion, TenantId,
    Timestamp, empty_root, leaf_hash, node_hash, open_sealed, payload_commitment,
};

const ENVELOPE_V1: &[u8] = include_bytes!("golden/envelope-v1.bin");
const ENVELOPE_V1_LEAF_HASH: &str =
    "37d699ca92f55c8f6993ff870623e0f6f6f478405e578833321e47926c48f1b2";

/// The sealed payload the golden envelope commits to.
const PAYLOAD_V1: &str = "0773636f72653d3901303132333435363738393a3b3c3d3e3fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7219ff2d841bfed309eca69ce758c813eb182c7ca430b965b8bbe2197e103fc201de7";
const PAYLOAD_V1_COMMITMENT: &str =
    "9402fc0aa5dc9408412dbfc7f7d7699c399b7f2bb06ec5db1663428a3b4d69b4";
const PAYLOAD_V1_CIPHERTEXT: &str =
    "9ff2d841bfed309eca69ce758c813eb182c7ca430b965b8bbe2197e103fc201de7";

const LEAF_HASH_OF_CAIRN: &str = "fa22c3027aef098bbb061fe18e6010098a3d5ef18e3a72f7e262c97f631e2260";
const LEAF_HASH_OF_NOTHING: &str =
    "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213";
/// `node_hash([0x11; 32], [0x22; 32])`.
const NODE_HASH_11_22: &str = "2ac345d7180005db1e6c8d1ff023372ffeacb5145035f6aecef9667e722bb4f6";
const EMPTY_ROOT: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
const PAYLOAD_COMMITMENT_OF_CAIRN: &str =
    "6f113d9834c659255a383dc1976793d014d83a4370d31a2de5bdc3b55d739a46";

/// The leaves of the 7-leaf tree: leaf `i` is `leaf_hash(&[i])`, the hash of the single byte `i`.
const SEVEN_LEAVES: [&str; 7] = [
    "1ad48f49627079d806b802c74f40c39d55fe1d78b3faf0f8017aec62cec42122",
    "7b7015bb92cf0b318037702a6cdd81dee41224f734684c2c122cd6359cb1ee63",
    "0013f4c84c09ed4f906f561e31fb6cb5336107f6813206a1f8860ab1ad35f2b8",
    "a88740cd9fb41a2cba302d8934e154b9b36e885744e8f9e90b2695f87c889baa",
    "124ff5a14dda3517f4fb2109e61ba1422254dcf64aef1746f9c10bc1e411796f",
    "693ff555e7a8722a3d8df635b599fe9915b2711fd1c6b3af02c17e405c03773f",
    "7b579b27b0d9d914358cdda951844b01393cb94a94dad3de8b45d8d89157316d",
];
/// `ROOTS[s - 1]` is the root of the tree of the first `s` of those leaves.
const ROOTS: [&str; 7] = [
    "1ad48f49627079d806b802c74f40c39d55fe1d78b3faf0f8017aec62cec42122",
    "a7c40517c3ba6ed1c930a04047fc7d941e0c6c86dff760457784186431014629",
    "b8a32224c977fedb0f8860d7bb067da5e88821ebc3a518f29bf21afeee562d43",
    "1ca3d0af7d87326223a1959c3a557cf4a73eb534e3d1aed29b1e61bcbf22a086",
    "667f5c8d18ce7aa303848f8a0c385849aecfcb96b12e3dc8470435cffcfa3e84",
    "b62029ffc66892577f83147b284f54d3009308283c95492b691f5bc50967ccd8",
    "447242b100f0c5b345113b25b9fb2feff7448146255b57736a4c640ce68d1f93",
];
/// Inclusion of leaf index 2 (position 3) in the tree of size 7.
const INCLUSION_2_IN_7: [&str; 3] = [
    "a88740cd9fb41a2cba302d8934e154b9b36e885744e8f9e90b2695f87c889baa",
    "a7c40517c3ba6ed1c930a04047fc7d941e0c6c86dff760457784186431014629",
    "0cca304dfafb0609336869fdb2ecaf96a88029d3f36bd17e806cbc559a683730",
];
/// Consistency of the tree of size 3 with the tree of size 7.
const CONSISTENCY_3_TO_7: [&str; 4] = [
    "0013f4c84c09ed4f906f561e31fb6cb5336107f6813206a1f8860ab1ad35f2b8",
    "a88740cd9fb41a2cba302d8934e154b9b36e885744e8f9e90b2695f87c889baa",
    "a7c40517c3ba6ed1c930a04047fc7d941e0c6c86dff760457784186431014629",
    "0cca304dfafb0609336869fdb2ecaf96a88029d3f36bd17e806cbc559a683730",
];
/// Consistency of the tree of size 4 with the tree of size 7 (4 is a power of two, so the old
/// root is the path's implicit first element).
const CONSISTENCY_4_TO_7: [&str; 1] =
    ["0cca304dfafb0609336869fdb2ecaf96a88029d3f36bd17e806cbc559a683730"];

/// The checkpoint of the 7-leaf tree: log id `[0xab; 32]`, size 7, root `ROOTS[6]`, time
/// 1 700 000 000 000 000 µs, signed with the ed25519 secret key (seed) `[0x42; 32]`.
const CHECKPOINT_SECRET: [u8; 32] = [0x42; 32];
const CHECKPOINT_PUBLIC_KEY: &str =
    "2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12";
const CHECKPOINT_SIGNING_BYTES: &str = "636169726e20636865636b706f696e742076310aabababababababababababababababababababababababababababababababab0000000000000007447242b100f0c5b345113b25b9fb2feff7448146255b57736a4c640ce68d1f9300060a24181e4000";
const CHECKPOINT_SIGNATURE: &str = "55696b3d4de8e1470d8b4249f613615c4a2380ad82e47839eda0bd31a3f6b9b53a21c134be2c8b439fc473cfd113ac658c30f46c6fbfc2ad911dd3e47c6e5b01";
const CHECKPOINT_ENCODED: &str = "abababababababababababababababababababababababababababababababab0000000000000007447242b100f0c5b345113b25b9fb2feff7448146255b57736a4c640ce68d1f9300060a24181e40002152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db1255696b3d4de8e1470d8b4249f613615c4a2380ad82e47839eda0bd31a3f6b9b53a21c134be2c8b439fc473cfd113ac658c30f46c6fbfc2ad911dd3e47c6e5b01";

/// `[start, start + 1, ..]`: the recognisable byte patterns of the golden ids and keys.
fn counting<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|index| start + index as u8)
}

fn hash(text: &str) -> Hash {
    Hash::from_hex(text).unwrap()
}

fn hashes(texts: &[&str]) -> Vec<Hash> {
    texts.iter().map(|text| hash(text)).collect()
}

fn stream(aggregate_type: &str, aggregate_id: &str) -> StreamId {
    StreamId::new(TenantId::new("acme").unwrap(), aggregate_type, aggregate_id).unwrap()
}

fn seven_leaf_tree() -> MerkleTree {
    let mut tree = MerkleTree::new();
    for byte in 0..7u8 {
        tree.push(leaf_hash(&[byte]));
    }
    tree
}

#[test]
fn envelope_v1_decodes_to_the_expected_fields() {
    let envelope = Envelope::decode(ENVELOPE_V1).unwrap();
    assert_eq!(ENVELOPE_V1.len(), 272);
    assert_eq!(envelope.format_version, ENVELOPE_FORMAT_V1);
    assert_eq!(envelope.format_version, 1);
    assert_eq!(envelope.position, Position(300));
    assert_eq!(envelope.stream, stream("feedback", "fb-0042"));
    assert_eq!(envelope.stream.tenant.as_str(), "acme");
    assert_eq!(envelope.stream_version, StreamVersion(3));
    assert_eq!(envelope.event_id, EventId(counting(0x00)));
    assert_eq!(envelope.event_type, "FeedbackReceived");
    assert_eq!(envelope.event_schema_version, 2);
    assert_eq!(envelope.recorded_at, Timestamp(1_700_000_000_123_456));
    assert_eq!(envelope.actor, "svc:survey-importer");
    assert_eq!(envelope.causation_id, Some(EventId(counting(0x10))));
    assert_eq!(envelope.correlation_id, Some(EventId(counting(0x20))));
    assert_eq!(
        envelope.lineage,
        vec![
            LineageParent {
                relation: "evidence_for".into(),
                target: stream("opportunity", "op-7"),
            },
            LineageParent {
                relation: "reported_by".into(),
                target: stream("team", "platform"),
            },
        ]
    );
    assert_eq!(envelope.data_class, DataClass::Personal);
    assert_eq!(envelope.key_id, Some(KeyId(counting(0x30))));
    assert_eq!(envelope.payload_commitment, hash(PAYLOAD_V1_COMMITMENT));
    assert_eq!(envelope.payload_len, 83);
    assert_eq!(envelope.policy_bundle_hash, Hash(counting(0x40)));
}

#[test]
fn envelope_v1_re_encodes_to_the_same_bytes_and_leaf() {
    let envelope = Envelope::decode(ENVELOPE_V1).unwrap();
    assert_eq!(envelope.encode().unwrap(), ENVELOPE_V1);
    assert_eq!(leaf_hash(ENVELOPE_V1), hash(ENVELOPE_V1_LEAF_HASH));
}

#[test]
fn envelope_v1_commits_to_its_sealed_payload() {
    let payload_bytes = hex::decode(PAYLOAD_V1).unwrap();
    assert_eq!(
        payload_commitment(&payload_bytes),
        hash(PAYLOAD_V1_COMMITMENT)
    );
    let record = Record::from_parts(ENVELOPE_V1.to_vec(), payload_bytes.clone()).unwrap();
    assert_eq!(record.leaf_hash(), hash(ENVELOPE_V1_LEAF_HASH));

    let payload = SealedPayload::decode(&payload_bytes).unwrap();
    assert_eq!(payload.clear, b"score=9");
    let sealed = payload.sealed.as_ref().unwrap();
    assert_eq!(sealed.key_id, KeyId(counting(0x30)));
    assert_eq!(sealed.nonce, counting::<24>(0xa0));
    assert_eq!(
        sealed.ciphertext,
        hex::decode(PAYLOAD_V1_CIPHERTEXT).unwrap()
    );
    assert_eq!(payload.encode(), payload_bytes);

    let key = DataKey(counting(0x80));
    let event_id = record.envelope.event_id;
    assert_eq!(
        open_sealed(sealed, &key, &event_id).unwrap(),
        b"alice@example.com"
    );
}

#[test]
fn hash_vectors() {
    assert_eq!(leaf_hash(b"cairn"), hash(LEAF_HASH_OF_CAIRN));
    assert_eq!(leaf_hash(b""), hash(LEAF_HASH_OF_NOTHING));
    assert_eq!(
        node_hash(&Hash([0x11; 32]), &Hash([0x22; 32])),
        hash(NODE_HASH_11_22)
    );
    assert_eq!(empty_root(), hash(EMPTY_ROOT));
    assert_eq!(MerkleTree::new().root(), hash(EMPTY_ROOT));
    assert_eq!(
        payload_commitment(b"cairn"),
        hash(PAYLOAD_COMMITMENT_OF_CAIRN)
    );
}

#[test]
fn seven_leaf_tree_vectors() {
    let tree = seven_leaf_tree();
    for (index, leaf) in SEVEN_LEAVES.iter().enumerate() {
        assert_eq!(tree.leaf(index as u64), Some(hash(leaf)), "leaf {index}");
    }
    for (size, root) in (1..=7).zip(ROOTS) {
        assert_eq!(
            tree.root_at(size).unwrap(),
            hash(root),
            "root of size {size}"
        );
    }
    assert_eq!(tree.root(), hash(ROOTS[6]));
    // The root of 2 is node(leaf 0, leaf 1); the root of 7 splits at 4.
    let leaves = hashes(&SEVEN_LEAVES);
    assert_eq!(node_hash(&leaves[0], &leaves[1]), hash(ROOTS[1]));
    let right = node_hash(&node_hash(&leaves[4], &leaves[5]), &leaves[6]);
    assert_eq!(right, hash(INCLUSION_2_IN_7[2]));
    assert_eq!(node_hash(&hash(ROOTS[3]), &right), hash(ROOTS[6]));
}

#[test]
fn inclusion_proof_vector() {
    let proof = seven_leaf_tree().inclusion_proof(2, 7).unwrap();
    let expected = InclusionProof {
        leaf_index: 2,
        tree_size: 7,
        path: hashes(&INCLUSION_2_IN_7),
    };
    assert_eq!(proof, expected);
    expected
        .verify(&hash(SEVEN_LEAVES[2]), &hash(ROOTS[6]))
        .unwrap();
}

#[test]
fn consistency_proof_vectors() {
    let tree = seven_leaf_tree();
    for (old_size, path) in [(3, &CONSISTENCY_3_TO_7[..]), (4, &CONSISTENCY_4_TO_7[..])] {
        let expected = ConsistencyProof {
            old_size,
            new_size: 7,
            path: hashes(path),
        };
        assert_eq!(tree.consistency_proof(old_size, 7).unwrap(), expected);
        expected
            .verify(&hash(ROOTS[old_size as usize - 1]), &hash(ROOTS[6]))
            .unwrap();
    }
}

#[test]
fn checkpoint_vector() {
    let signer = CheckpointSigner::from_secret_bytes(CHECKPOINT_SECRET);
    let public_key = PublicKey::from_hex(CHECKPOINT_PUBLIC_KEY).unwrap();
    assert_eq!(signer.public_key(), public_key);
    let checkpoint = Checkpoint {
        log_id: LogId([0xab; 32]),
        tree_size: 7,
        root: hash(ROOTS[6]),
        timestamp: Timestamp(1_700_000_000_000_000),
    };
    assert_eq!(
        hex::encode(checkpoint.signing_bytes()),
        CHECKPOINT_SIGNING_BYTES
    );
    let signed = signer.sign(checkpoint);
    assert_eq!(hex::encode(signed.signature), CHECKPOINT_SIGNATURE);
    assert_eq!(hex::encode(signed.encode()), CHECKPOINT_ENCODED);

    let decoded = SignedCheckpoint::decode(&hex::decode(CHECKPOINT_ENCODED).unwrap()).unwrap();
    assert_eq!(decoded, signed);
    decoded.verify(&public_key).unwrap();
}
