//! The key layout of the one sled tree that holds every view. Parts are joined with a 0 byte:
//! tenants, ids and relation names never contain one (their alphabets are validated). Positions
//! are big-endian, so a range scan walks them in ledger order.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m` | `applied` | the last applied position |
//! | `c` | kind, tenant, id | the entity's current view |
//! | `v` | kind, tenant, id, position | the view after the record at that position |
//! | `r` | tenant, score (descending order), id | (ranked opportunities now) |
//! | `h` | tenant, id, position | a score recorded at that position |
//! | `V` | tenant, opportunity, principal | the principal's latest vote (weight, time) |
//! | `e` | tenant, from, relation, to | the position that first recorded the edge |
//! | `E` | tenant, to, relation, from | the same edge, indexed by its `to` end |
//! | `a` | tenant, time, id | an opportunity that aged out (the view) |

use cairn_domain::{EntityKind, EntityRef, Relation};
use cairn_ledger::Position;

pub(crate) const APPLIED: &[u8] = b"m\0applied";

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

pub(crate) fn current_prefix(kind: EntityKind, tenant: &str) -> Vec<u8> {
    join(&[b'c', kind_byte(kind)], &[tenant.as_bytes()])
}

pub(crate) fn version_prefix(kind: EntityKind, tenant: &str, id: &str) -> Vec<u8> {
    join(
        &[b'v', kind_byte(kind)],
        &[tenant.as_bytes(), id.as_bytes()],
    )
}

pub(crate) fn with_position(mut prefix: Vec<u8>, position: Position) -> Vec<u8> {
    prefix.extend_from_slice(&position.0.to_be_bytes());
    prefix
}

pub(crate) fn position_suffix(key: &[u8]) -> Position {
    let bytes: [u8; 8] = key[key.len() - 8..].try_into().expect("8-byte suffix");
    Position(u64::from_be_bytes(bytes))
}

/// An f64 as 8 bytes that sort in descending numeric order.
pub(crate) fn score_descending(score: f64) -> [u8; 8] {
    let bits = score.to_bits();
    let ascending = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    (!ascending).to_be_bytes()
}

pub(crate) fn ranking_prefix(tenant: &str) -> Vec<u8> {
    join(b"r", &[tenant.as_bytes()])
}

pub(crate) fn ranking(tenant: &str, score: f64, id: &str) -> Vec<u8> {
    let mut key = ranking_prefix(tenant);
    key.extend_from_slice(&score_descending(score));
    key.extend_from_slice(id.as_bytes());
    key
}

pub(crate) fn ranking_id(key: &[u8], tenant: &str) -> String {
    String::from_utf8_lossy(&key[tenant.len() + 2 + 8..]).into_owned()
}

pub(crate) fn score_prefix(tenant: &str, id: &str) -> Vec<u8> {
    join(b"h", &[tenant.as_bytes(), id.as_bytes()])
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

pub(crate) fn entity_text(entity: &EntityRef) -> String {
    entity.to_string()
}

/// The forward (`e`, by `from`) or reverse (`E`, by `to`) prefix of an entity's edges.
pub(crate) fn edge_prefix(reverse: bool, tenant: &str, entity: &EntityRef) -> Vec<u8> {
    let prefix: &[u8] = if reverse { b"E" } else { b"e" };
    join(prefix, &[tenant.as_bytes(), entity_text(entity).as_bytes()])
}

pub(crate) fn edge(
    reverse: bool,
    tenant: &str,
    near: &EntityRef,
    relation: Relation,
    far: &EntityRef,
) -> Vec<u8> {
    let mut key = edge_prefix(reverse, tenant, near);
    key.extend_from_slice(relation.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(entity_text(far).as_bytes());
    key
}

/// The relation and far end of an edge key under `prefix`.
pub(crate) fn edge_parts(key: &[u8], prefix_len: usize) -> Option<(Relation, EntityRef)> {
    let rest = std::str::from_utf8(&key[prefix_len..]).ok()?;
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

pub(crate) fn aged(tenant: &str, at: i64, id: &str) -> Vec<u8> {
    let mut key = aged_prefix(tenant);
    key.extend_from_slice(&time_ascending(at));
    key.extend_from_slice(id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_sort_descending_and_times_ascending() {
        let scores = [f64::NEG_INFINITY, -3.5, -0.0, 0.0, 1e-9, 2.0, 1e12];
        for pair in scores.windows(2) {
            assert!(
                score_descending(pair[0]) >= score_descending(pair[1]),
                "{pair:?}"
            );
        }
        assert!(score_descending(2.0) < score_descending(1.0));
        let times = [i64::MIN, -5, 0, 7, i64::MAX];
        for pair in times.windows(2) {
            assert!(
                time_ascending(pair[0]) < time_ascending(pair[1]),
                "{pair:?}"
            );
        }
    }
}
