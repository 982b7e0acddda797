//! Pseudonyms and k-anonymity for exports and aggregates.
//!
//! An export for analysis replaces every principal id (the fields
//! [`crate::privacy::FieldClass::identifies`] marks) with [`pseudonym`]: a keyed blake3 hash of
//! the tenant and the principal. The same key gives the same pseudonym, so one export (or a
//! series made with one key) can still count distinct people and join their rows; a different
//! key gives unrelated pseudonyms, so exports made with different keys cannot be linked, and
//! without the key a pseudonym cannot be computed from a guessed principal id (which a plain
//! hash would allow: principal ids are few and guessable). The key comes in from the caller
//! (the service's key store); this crate draws no randomness.
//!
//! An aggregate over fewer than `k` distinct people is withheld ([`k_anonymous`]); the default
//! `k` is [`K_ANONYMITY_DEFAULT`].

use std::fmt;

/// The `k` of k-anonymity when a caller does not choose one: a group of fewer than five people
/// is not shown.
pub const K_ANONYMITY_DEFAULT: usize = 5;

/// Domain separation: a pseudonym's hash input starts with this, so it never equals another
/// use of the same key, and a later scheme (`v2`) cannot collide with this one.
const CONTEXT: &[u8] = b"cairn pseudonym v1\0";

/// The prefix of every pseudonym, so it is never mistaken for a principal id.
pub const PSEUDONYM_PREFIX: &str = "p_";

/// How many bytes of the hash a pseudonym keeps: 10 bytes, 20 hex digits, 80 bits. Collisions
/// are negligible for any tenant's people (about 2^40 of them before one is likely).
const PSEUDONYM_BYTES: usize = 10;

/// The secret key of a series of pseudonyms. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PseudonymKey([u8; 32]);

impl PseudonymKey {
    /// A key from 32 secret bytes (from the key store; never derived from a principal id).
    pub fn from_bytes(bytes: [u8; 32]) -> PseudonymKey {
        PseudonymKey(bytes)
    }

    /// The key's bytes, to store it.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

/// The pseudonym of `principal` in `tenant` under `key`: `p_` and 20 hex digits of
/// blake3-keyed(key, context, tenant, principal), each text length-prefixed so no two
/// (tenant, principal) pairs hash the same input.
pub fn pseudonym(key: &PseudonymKey, tenant: &str, principal: &str) -> String {
    let mut hasher = blake3::Hasher::new_keyed(&key.0);
    hasher.update(CONTEXT);
    for part in [tenant, principal] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let hash = hasher.finalize();
    let mut text = String::with_capacity(PSEUDONYM_PREFIX.len() + 2 * PSEUDONYM_BYTES);
    text.push_str(PSEUDONYM_PREFIX);
    for byte in &hash.as_bytes()[..PSEUDONYM_BYTES] {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Whether a group of `people` distinct people may be shown under `k`-anonymity.
pub fn may_show(people: usize, k: usize) -> bool {
    people >= k
}

/// Groups that passed [`k_anonymous`], and how many did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KAnonymous<T> {
    /// The groups of at least `k` distinct people, in the order given, with their counts.
    pub shown: Vec<(T, usize)>,
    /// How many groups were withheld (fewer than `k` people). Their people are not summed here:
    /// a total of withheld people would itself be an aggregate over too few.
    pub withheld: usize,
}

/// Keeps the groups built from at least `k` distinct people and counts the others, which are
/// withheld. Each group comes with its count of distinct people (not of items: one person's
/// ten items are a group of one). `k` of 0 or 1 withholds only empty groups, or nothing.
pub fn k_anonymous<T>(groups: impl IntoIterator<Item = (T, usize)>, k: usize) -> KAnonymous<T> {
    let mut shown = Vec::new();
    let mut withheld = 0;
    for (group, people) in groups {
        if may_show(people, k) {
            shown.push((group, people));
        } else {
            withheld += 1;
        }
    }
    KAnonymous { shown, withheld }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PseudonymKey {
        PseudonymKey::from_bytes([byte; 32])
    }

    #[test]
    fn a_pseudonym_is_stable_under_one_key() {
        let first = pseudonym(&key(1), "acme", "user:alice");
        assert_eq!(first, pseudonym(&key(1), "acme", "user:alice"));
        assert_eq!(first.len(), 2 + 20);
        assert!(first.starts_with("p_"));
        assert!(
            first[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert!(!first.contains("alice"));
    }

    #[test]
    fn a_pseudonym_is_pinned() {
        // A change of scheme changes every pseudonym: it must be a deliberate `v2`.
        let mut expected = blake3::Hasher::new_keyed(&[1; 32]);
        expected.update(b"cairn pseudonym v1\0");
        expected.update(&4u64.to_le_bytes());
        expected.update(b"acme");
        expected.update(&10u64.to_le_bytes());
        expected.update(b"user:alice");
        let hex: String = expected.finalize().as_bytes()[..10]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(pseudonym(&key(1), "acme", "user:alice"), format!("p_{hex}"));
    }

    #[test]
    fn different_keys_give_unrelated_pseudonyms() {
        let one = pseudonym(&key(1), "acme", "user:alice");
        let two = pseudonym(&key(2), "acme", "user:alice");
        assert_ne!(one, two);
        // Unlinkable: the unkeyed hash of the same input is neither.
        let plain = blake3::hash(b"acmeuser:alice").to_hex().to_string();
        assert!(!plain.starts_with(&one[2..]) && !plain.starts_with(&two[2..]));
    }

    #[test]
    fn people_are_told_apart_and_tenants_are_separated() {
        let k = key(3);
        assert_ne!(
            pseudonym(&k, "acme", "user:alice"),
            pseudonym(&k, "acme", "user:bob")
        );
        assert_ne!(
            pseudonym(&k, "acme", "user:alice"),
            pseudonym(&k, "globex", "user:alice")
        );
        // Length prefixes: moving the boundary between tenant and principal changes the input.
        assert_ne!(pseudonym(&k, "ab", "c"), pseudonym(&k, "a", "bc"));
        assert_ne!(pseudonym(&k, "", "ab"), pseudonym(&k, "ab", ""));
    }

    #[test]
    fn the_key_is_not_shown() {
        assert_eq!(format!("{:?}", key(9)), "PseudonymKey(..)");
        assert_eq!(key(9).as_bytes(), &[9; 32]);
    }

    #[test]
    fn groups_of_fewer_than_k_people_are_withheld() {
        let k = K_ANONYMITY_DEFAULT;
        let groups = [("a", k - 1), ("b", k), ("c", 0), ("d", k + 1), ("e", 1)];
        let result = k_anonymous(groups, k);
        assert_eq!(result.shown, vec![("b", k), ("d", k + 1)]);
        assert_eq!(result.withheld, 3);
        assert!(!may_show(k - 1, k));
        assert!(may_show(k, k));
    }

    #[test]
    fn small_k_withholds_only_empty_groups() {
        let result = k_anonymous([("a", 0), ("b", 1)], 1);
        assert_eq!(result.shown, vec![("b", 1)]);
        assert_eq!(result.withheld, 1);
        let result = k_anonymous([("a", 0), ("b", 1)], 0);
        assert_eq!(result.withheld, 0);
        let empty: KAnonymous<&str> = k_anonymous([], 5);
        assert_eq!(
            empty,
            KAnonymous {
                shown: vec![],
                withheld: 0
            }
        );
    }
}
