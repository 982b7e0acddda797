//! The key layout of the one sled tree that holds every view. Parts are joined with a 0 byte:
//! tenants, ids, teams, principals and relation names never contain one (their alphabets are
//! validated). Positions are big-endian, so a range scan walks them in ledger order. One tree, so
//! one `sled::Batch` changes views, indexes and the applied position atomically.
//!
//! A history chunk is a postcard list of (position, entry), in position order, keyed by the
//! position of its first entry; chunks of one history never overlap, so the entry in force at
//! `P` is in the last chunk whose key is at or before `P`.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m` | `applied`, `format` | the last applied position; the layout version |
//! | `c` kind | tenant, id | the entity's current view |
//! | `v` kind | tenant, id, position | history chunk: the views the entity's later records replaced, each keyed by the record that made it (for an opportunity, only what changes after creation: `OpportunityState`; a signal never changes) |
//! | `n` kind | tenant, position | the id of the entity created at that position (lists, in ledger order) |
//! | `r` | tenant, score (descending order), id | a ranked opportunity now (`RankEntry`) |
//! | `R` | tenant, team, score (descending order), id | the same, per team |
//! | `h` | tenant, id, position | history chunk: the scores recorded from that position on |
//! | `s` | tenant, id, position | history chunk: the opportunity statuses entered from that position on |
//! | `V` | tenant, opportunity, principal | the principal's latest vote (weight, time) |
//! | `e` | tenant, from, relation, to | the position that first recorded the edge |
//! | `E` | tenant, to, relation, from | the same edge, indexed by its `to` end |
//! | `a` | tenant, time, position | an opportunity that aged out (`AgedOutView`) |

use cairn_domain::{EntityKind, EntityRef, Relation};
use cairn_ledger::Position;

/// The last applied position.
pub(crate) const APPLIED: &[u8] = b"m\0applied";
/// The layout version of everything else.
pub(crate) const FORMAT: &[u8] = b"m\0format";

pub(crate) fn kind_byte(kind: EntityKind) -> u8 {
    match kind {
        EntityKind::Feedback => b'f',
        EntityKind::Signal => b's',
        EntityKind::Opportunity => b'o',
        EntityKind::Decision => b'd',
        EntityKind::Initiative => b'i',
    }
}

fn join(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    for part in parts {
        key.extend_from_slice(part);
        key.push(0);
    }
    key
}

pub(crate) fn current(kind: EntityKind, tenant: &str, id: &str) -> Vec<u8> {
    join(
        &[b'c', kind_byte(kind)],
        &[tenant.as_bytes(), id.as_bytes()],
    )
}

pub(crate) fn version_prefix(kind: EntityKind, tenant: &str, id: &str) -> Vec<u8> {
    join(
        &[b'v', kind_byte(kind)],
        &[tenant.as_bytes(), id.as_bytes()],
    )
}

pub(crate) fn created_prefix(kind: EntityKind, tenant: &str) -> Vec<u8> {
    join(&[b'n', kind_byte(kind)], &[tenant.as_bytes()])
}

pub(crate) fn with_position(mut prefix: Vec<u8>, position: Position) -> Vec<u8> {
    prefix.extend_from_slice(&position.0.to_be_bytes());
    prefix
}

/// The position in the last 8 bytes of a key or value; `None` when shorter.
pub(crate) fn position_suffix(bytes: &[u8]) -> Option<Position> {
    let start = bytes.len().checked_sub(8)?;
    let suffix: [u8; 8] = bytes[start..].try_into().ok()?;
    Some(Position(u64::from_be_bytes(suffix)))
}

/// An f64 as 8 bytes that sort in descending `f64::total_cmp` order.
pub(crate) fn score_descending(score: f64) -> [u8; 8] {
    let bits = score.to_bits();
    let ascending = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    (!ascending).to_be_bytes()
}

/// The inverse of [`score_descending`].
pub(crate) fn score_from_descending(bytes: [u8; 8]) -> f64 {
    let ascending = !u64::from_be_bytes(bytes);
    let bits = if ascending >> 63 == 1 {
        ascending & !(1 << 63)
    } else {
        !ascending
    };
    f64::from_bits(bits)
}

/// The ranking of a tenant, or of one team in it.
pub(crate) fn ranking_prefix(tenant: &str, team: Option<&str>) -> Vec<u8> {
    match team {
        None => join(b"r", &[tenant.as_bytes()]),
        Some(team) => join(b"R", &[tenant.as_bytes(), team.as_bytes()]),
    }
}

pub(crate) fn ranking(tenant: &str, team: Option<&str>, score: f64, id: &str) -> Vec<u8> {
    let mut key = ranking_prefix(tenant, team);
    key.extend_from_slice(&score_descending(score));
    key.extend_from_slice(id.as_bytes());
    key
}

/// The score and id of a ranking key under a prefix of `prefix_len` bytes.
pub(crate) fn ranking_parts(key: &[u8], prefix_len: usize) -> Option<(f64, String)> {
    let score: [u8; 8] = key.get(prefix_len..prefix_len + 8)?.try_into().ok()?;
    let id = std::str::from_utf8(key.get(prefix_len + 8..)?).ok()?;
    Some((score_from_descending(score), id.to_owned()))
}

pub(crate) fn score_prefix(tenant: &str, id: &str) -> Vec<u8> {
    join(b"h", &[tenant.as_bytes(), id.as_bytes()])
}

pub(crate) fn status_prefix(tenant: &str, id: &str) -> Vec<u8> {
    join(b"s", &[tenant.as_bytes(), id.as_bytes()])
}

pub(crate) fn vote(tenant: &str, opportunity: &str, principal: &str) -> Vec<u8> {
    join(
        b"V",
        &[
            tenant.as_bytes(),
            opportunity.as_bytes(),
            principal.as_bytes(),
        ],
    )
}

/// Which end of an edge an edge key starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EdgeEnd {
    /// Keyed by `from` (`e`).
    From,
    /// Keyed by `to` (`E`).
    To,
}

/// The prefix of an entity's edges keyed by the given end.
pub(crate) fn edge_prefix(end: EdgeEnd, tenant: &str, entity: &EntityRef) -> Vec<u8> {
    let prefix: &[u8] = match end {
        EdgeEnd::From => b"e",
        EdgeEnd::To => b"E",
    };
    join(prefix, &[tenant.as_bytes(), entity.to_string().as_bytes()])
}

/// The edge key of `near -relation-> far` (for [`EdgeEnd::From`]) or `far -relation-> near`
/// (for [`EdgeEnd::To`]).
pub(crate) fn edge(
    end: EdgeEnd,
    tenant: &str,
    near: &EntityRef,
    relation: Relation,
    far: &EntityRef,
) -> Vec<u8> {
    let mut key = edge_prefix(end, tenant, near);
    key.extend_from_slice(relation.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(far.to_string().as_bytes());
    key
}

/// The relation and far end of an edge key under a prefix of `prefix_len` bytes.
pub(crate) fn edge_parts(key: &[u8], prefix_len: usize) -> Option<(Relation, EntityRef)> {
    let rest = std::str::from_utf8(key.get(prefix_len..)?).ok()?;
    let (relation, far) = rest.split_once('\0')?;
    Some((Relation::parse(relation)?, EntityRef::parse(far).ok()?))
}

pub(crate) fn aged_prefix(tenant: &str) -> Vec<u8> {
    join(b"a", &[tenant.as_bytes()])
}

/// Signed micros as 8 bytes in ascending order.
pub(crate) fn time_ascending(micros: i64) -> [u8; 8] {
    ((micros as u64) ^ (1 << 63)).to_be_bytes()
}

/// Keyed by the ledger time of the record, then its position: two records may share a time.
pub(crate) fn aged(tenant: &str, at: i64, position: Position) -> Vec<u8> {
    let mut key = aged_prefix(tenant);
    key.extend_from_slice(&time_ascending(at));
    key.extend_from_slice(&position.0.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_sort_descending_and_round_trip() {
        let scores = [
            f64::INFINITY,
            1e12,
            2.0,
            1e-9,
            0.0,
            -0.0,
            -3.5,
            f64::NEG_INFINITY,
        ];
        for pair in scores.windows(2) {
            assert!(
                score_descending(pair[0]) < score_descending(pair[1]),
                "{pair:?}"
            );
            assert_eq!(
                pair[0].total_cmp(&pair[1]),
                std::cmp::Ordering::Greater,
                "the key order is total_cmp's"
            );
        }
        for score in scores {
            assert_eq!(
                score_from_descending(score_descending(score)).to_bits(),
                score.to_bits()
            );
        }
    }

    #[test]
    fn times_sort_ascending() {
        let times = [i64::MIN, -5, 0, 7, i64::MAX];
        for pair in times.windows(2) {
            assert!(
                time_ascending(pair[0]) < time_ascending(pair[1]),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn an_id_prefix_of_another_does_not_share_its_versions() {
        let short = version_prefix(EntityKind::Opportunity, "acme", "o-1");
        let long = with_position(
            version_prefix(EntityKind::Opportunity, "acme", "o-12"),
            Position(1),
        );
        assert!(!long.starts_with(&short));
    }
}
