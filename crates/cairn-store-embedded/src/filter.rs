//! A filter over every event id of the ledger, so that planning an append of new events (nearly
//! every append) needs no sled lookup: the filter says "certainly not recorded", and only a
//! "maybe" (a retry, or about one new id in a hundred) is looked up.
//!
//! A list of Bloom filters, each twice the capacity of the one before, so it grows with the
//! ledger at about 10 bits per id with no rebuild. Rebuilt on open from the segments.

use std::hash::BuildHasher;

use cairn_ledger::EventId;

/// Bits per id; with [`PROBES`] probes, about 1% false positives.
const BITS_PER_ID: u64 = 10;
const PROBES: u64 = 7;

struct Bloom {
    bits: Vec<u64>,
    /// Number of bits, a power of two.
    mask: u64,
    capacity: u64,
    count: u64,
}

impl Bloom {
    fn new(capacity: u64) -> Bloom {
        let bits = (capacity * BITS_PER_ID).next_power_of_two();
        Bloom {
            bits: vec![0; (bits / 64) as usize],
            mask: bits - 1,
            capacity,
            count: 0,
        }
    }

    /// The bit of probe `probe` (double hashing).
    fn bit(&self, (first, step): (u64, u64), probe: u64) -> u64 {
        first.wrapping_add(probe.wrapping_mul(step)) & self.mask
    }

    fn insert(&mut self, hashes: (u64, u64)) {
        for probe in 0..PROBES {
            let bit = self.bit(hashes, probe);
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.count += 1;
    }

    fn contains(&self, hashes: (u64, u64)) -> bool {
        (0..PROBES).all(|probe| {
            let bit = self.bit(hashes, probe);
            self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }
}

/// Every event id recorded (or planned), approximately: no false negatives.
pub(crate) struct EventIdFilter {
    /// Keyed, so callers cannot choose ids that collide on purpose.
    hasher: std::collections::hash_map::RandomState,
    filters: Vec<Bloom>,
}

impl EventIdFilter {
    /// An empty filter sized for `expected_ids` before it first grows (each growth adds a
    /// filter that every lookup also checks, so size it generously).
    pub(crate) fn new(expected_ids: u64) -> EventIdFilter {
        EventIdFilter {
            hasher: std::collections::hash_map::RandomState::new(),
            filters: vec![Bloom::new(expected_ids.max(64))],
        }
    }

    fn hashes(&self, event_id: &EventId) -> (u64, u64) {
        let first = self.hasher.hash_one(event_id.0);
        // The step must be odd to reach every bit of a power-of-two table.
        let step = self.hasher.hash_one((event_id.0, 1u8)) | 1;
        (first, step)
    }

    /// Adds an id.
    pub(crate) fn insert(&mut self, event_id: &EventId) {
        let hashes = self.hashes(event_id);
        let last = self.filters.last().expect("at least one filter");
        if last.count >= last.capacity {
            let capacity = last.capacity * 2;
            self.filters.push(Bloom::new(capacity));
        }
        self.filters
            .last_mut()
            .expect("at least one filter")
            .insert(hashes);
    }

    /// False if the id was certainly never inserted.
    pub(crate) fn may_contain(&self, event_id: &EventId) -> bool {
        let hashes = self.hashes(event_id);
        self.filters.iter().any(|filter| filter.contains(hashes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> EventId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        EventId(bytes)
    }

    #[test]
    fn no_false_negatives_and_few_false_positives_while_growing() {
        let mut filter = EventIdFilter::new(1000);
        let inserted = 5000;
        for n in 0..inserted {
            filter.insert(&id(n));
        }
        assert!(filter.filters.len() >= 2, "the filter grew");
        assert!((0..inserted).all(|n| filter.may_contain(&id(n))));
        let false_positives = (inserted..inserted + 10_000)
            .filter(|&n| filter.may_contain(&id(n)))
            .count();
        assert!(
            false_positives < 500,
            "{false_positives} false positives in 10,000"
        );
    }
}
