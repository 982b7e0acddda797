//! The key layout of the one sled tree that holds every view. Parts are joined with a 0 byte:
//! tenants, ids, teams, principals and relation names never contain one (their alphabets are
//! validated). Positions are big-endian, so a range scan walks them in ledger order. One tree, so
//! one `sled::Batch` changes views, indexes and the applied position atomically.
//!
//! A history chunk is a postcard list of (position, entry), in position order, keyed by the
//! position of its first entry; chunks of one history never overlap, and the history's newest
//! entries (the tail) are kept beside the entity's view, all newer than any chunk: the entry in
//! force at `P` is in the tail when its first entry is at or before `P`, else in the last chunk
//! whose key is at or before `P`.
//!
//! sled's cost is about 4 µs per key written, whatever its size up to a kilobyte or so, so an
//! entity's view carries what changes with it: its history tails, its first voters' votes and its
//! newest edges (the [`crate::apply`] `Extra`). A batch then writes about one key per entity it
//! touches; what grows past the limits of `Extra` goes to keys of its own.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m` | `applied`, `format` | the last applied position; the layout version |
//! | `c` kind | tenant, id | the view's length (4 bytes LE), the entity's current view, then `Extra`: the tails of its histories (versions; scores and statuses for an opportunity), the latest vote of its first voters (opportunity), its newest edges (both ends, each with the position that first recorded it) |
//! | `v` kind | tenant, id, position | history chunk: the views the entity's later records replaced, each keyed by the record that made it (for an opportunity, only what changes after creation: `OpportunityState`; a signal never changes) |
//! | `n` kind | tenant, position | chunk of (creation position, id) of the entities created from that position on, in ledger order (lists); one chunk per batch and tenant, at most 128 entries |
//! | `r` | tenant, score (descending order), id | a ranked opportunity now (`RankEntry`) |
//! | `R` | tenant, team, score (descending order), id | the same, per team |
//! | `h` | tenant, id, position | history chunk: the scores recorded from that position on |
//! | `s` | tenant, id, position | history chunk: the opportunity statuses entered from that position on |
//! | `V` | tenant, opportunity, principal | the latest vote (weight, time) of a voter beyond the first 32 |
//! | `e` | tenant, `kind/id`, batch position, 0 or 1 | chunk of edges at the entity: those spilled from its `Extra` (1), or recorded while it had no view (0) |
//! | `a` | tenant, time, position | an opportunity that aged out (`AgedOutView`) |

use cairn_domain::EntityKind;
use cairn_ledger::Position;

use crate::error::ProjectionError;

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

/// The prefix of the edge chunks of an entity (`kind/id`).
pub(crate) fn edges_prefix(tenant: &str, entity: &str) -> Vec<u8> {
    join(b"e", &[tenant.as_bytes(), entity.as_bytes()])
}

/// The prefix of the edge chunks of the entity whose current key is `current`.
pub(crate) fn edges_prefix_of_current(current: &[u8]) -> Result<Vec<u8>, ProjectionError> {
    let corrupt = || ProjectionError::Corrupt("a current key does not parse".into());
    let kind = match current.get(1).ok_or_else(corrupt)? {
        b'f' => EntityKind::Feedback,
        b's' => EntityKind::Signal,
        b'o' => EntityKind::Opportunity,
        b'd' => EntityKind::Decision,
        b'i' => EntityKind::Initiative,
        _ => return Err(corrupt()),
    };
    let rest = std::str::from_utf8(&current[2..]).map_err(|_| corrupt())?;
    let mut parts = rest.split('\0');
    let (Some(tenant), Some(id)) = (parts.next(), parts.next()) else {
        return Err(corrupt());
    };
    Ok(edges_prefix(tenant, &format!("{kind}/{id}")))
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
