//! Denial windows: how denied calls are recorded without one fsync'd event per call.
//!
//! A denied call is keyed by what its `access.denied` record would say (the stream's tenant, the
//! principal, method, object, action, the tenant text and the bundle hash). The first denial of a
//! key opens a window of [`DENIAL_WINDOW_MICROS`] and is recorded at once; the next denials of
//! the key in that window are only counted here. A window that has ended is closed: what it
//! counted becomes one `access.denied.repeated` record (nothing when it counted nothing). Windows
//! close when a later denial of their key finds them ended, when a flush asks for the ended ones
//! or for all of them, and, oldest first, when [`DENIAL_WINDOWS_MAX`] windows are open and a new
//! key needs one: a window is never dropped uncounted.
//!
//! This is the pure bookkeeping: time comes in as an argument, and the caller records what
//! [`DenialWindows::deny`] and the `take_*` methods hand back.

use std::collections::{BTreeMap, HashMap};

use cairn_domain::governance::GovernanceEvent;
use cairn_ledger::TenantId;

/// How long a denial window lasts from its first denial, microseconds (one minute).
pub const DENIAL_WINDOW_MICROS: i64 = 60_000_000;
/// Most denial windows open at once; beyond, the oldest are closed early (and recorded).
pub const DENIAL_WINDOWS_MAX: usize = 10_000;

/// What the record of a denied call says, and the tenant whose stream holds it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DenialKey {
    /// The tenant of the `audit/denied` stream (`cairn-system` for no tenant or an invalid one).
    pub stream_tenant: TenantId,
    pub principal: String,
    pub method: String,
    pub object: String,
    pub action: String,
    pub tenant: String,
    pub bundle_hash: [u8; 32],
}

impl DenialKey {
    /// The `access.denied` record of the first denial of a window.
    pub fn denied(&self) -> GovernanceEvent {
        GovernanceEvent::AccessDenied {
            principal: self.principal.clone(),
            method: self.method.clone(),
            object: self.object.clone(),
            action: self.action.clone(),
            tenant: self.tenant.clone(),
            bundle_hash: self.bundle_hash,
        }
    }
}

/// A closed window that counted denials beyond its first: one `access.denied.repeated` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Repeats {
    pub key: DenialKey,
    /// Denials counted (at least 1).
    pub count: u64,
    pub first_at_micros: i64,
    pub last_at_micros: i64,
}

impl Repeats {
    /// The `access.denied.repeated` record.
    pub fn event(&self) -> GovernanceEvent {
        let key = &self.key;
        GovernanceEvent::AccessDeniedRepeated {
            principal: key.principal.clone(),
            method: key.method.clone(),
            object: key.object.clone(),
            action: key.action.clone(),
            tenant: key.tenant.clone(),
            bundle_hash: key.bundle_hash,
            count: self.count,
            first_at_micros: self.first_at_micros,
            last_at_micros: self.last_at_micros,
        }
    }
}

/// What to do with a denial.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Denial {
    /// The first of a new window: record the windows closed to make room for it (its key's
    /// ended window, the oldest ones when the bound was reached), then `access.denied`.
    First { closed: Vec<Repeats> },
    /// Counted in its key's open window: nothing to record now.
    Counted,
}

#[derive(Debug)]
struct Window {
    opened_at: i64,
    /// Tie-breaker of windows opened in the same microsecond, for the age index.
    serial: u64,
    /// Denials counted after the first.
    count: u64,
    /// The first and last of them (meaningless while `count` is 0).
    first_at: i64,
    last_at: i64,
}

/// The open denial windows.
#[derive(Debug)]
pub(crate) struct DenialWindows {
    windows: HashMap<DenialKey, Window>,
    /// Every open window by (opening time, serial): oldest first.
    by_age: BTreeMap<(i64, u64), DenialKey>,
    serial: u64,
    window_micros: i64,
    windows_max: usize,
}

impl DenialWindows {
    /// Windows of `window_micros`, at most `windows_max` open at once (at least 1).
    pub fn new(window_micros: i64, windows_max: usize) -> DenialWindows {
        DenialWindows {
            windows: HashMap::new(),
            by_age: BTreeMap::new(),
            serial: 0,
            window_micros,
            windows_max: windows_max.max(1),
        }
    }

    /// A denial of `key` at `at` (microseconds).
    pub fn deny(&mut self, key: DenialKey, at: i64) -> Denial {
        let mut closed = Vec::new();
        if let Some(window) = self.windows.get_mut(&key) {
            if at < window.opened_at.saturating_add(self.window_micros) {
                // A clock that stepped back counts in the open window too.
                window.count += 1;
                if window.count == 1 {
                    (window.first_at, window.last_at) = (at, at);
                } else {
                    window.first_at = window.first_at.min(at);
                    window.last_at = window.last_at.max(at);
                }
                return Denial::Counted;
            }
            closed.extend(self.close(&key));
        }
        while self.windows.len() >= self.windows_max {
            let Some((_, oldest)) = self.by_age.first_key_value() else {
                break;
            };
            let oldest = oldest.clone();
            closed.extend(self.close(&oldest));
        }
        self.serial += 1;
        self.by_age.insert((at, self.serial), key.clone());
        self.windows.insert(
            key,
            Window {
                opened_at: at,
                serial: self.serial,
                count: 0,
                first_at: 0,
                last_at: 0,
            },
        );
        Denial::First { closed }
    }

    /// Closes every window that has ended at `now` (opened at least a window's length before):
    /// those that counted denials, oldest first.
    pub fn take_ended(&mut self, now: i64) -> Vec<Repeats> {
        let mut closed = Vec::new();
        while let Some((&(opened_at, _), key)) = self.by_age.first_key_value() {
            if opened_at.saturating_add(self.window_micros) > now {
                break;
            }
            let key = key.clone();
            closed.extend(self.close(&key));
        }
        closed
    }

    /// Closes every window: those that counted denials, oldest first.
    pub fn take_all(&mut self) -> Vec<Repeats> {
        self.take_ended(i64::MAX)
    }

    /// Denials counted in open windows, not recorded yet.
    pub fn counted(&self) -> u64 {
        self.windows.values().map(|window| window.count).sum()
    }

    /// Open windows.
    pub fn open(&self) -> usize {
        self.windows.len()
    }

    fn close(&mut self, key: &DenialKey) -> Option<Repeats> {
        let window = self.windows.remove(key)?;
        self.by_age.remove(&(window.opened_at, window.serial));
        (window.count > 0).then(|| Repeats {
            key: key.clone(),
            count: window.count,
            first_at_micros: window.first_at,
            last_at_micros: window.last_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(principal: &str, method: &str) -> DenialKey {
        DenialKey {
            stream_tenant: TenantId::new("acme").unwrap(),
            principal: principal.into(),
            method: method.into(),
            object: "decision".into(),
            action: "decide".into(),
            tenant: "acme".into(),
            bundle_hash: [7; 32],
        }
    }

    #[test]
    fn a_window_counts_what_follows_its_first_denial_until_it_ends() {
        let mut windows = DenialWindows::new(100, 10);
        let a = key("user:a", "/m");
        assert_eq!(
            windows.deny(a.clone(), 1000),
            Denial::First { closed: vec![] }
        );
        for at in [1010, 1050, 1099] {
            assert_eq!(windows.deny(a.clone(), at), Denial::Counted);
        }
        assert_eq!(windows.counted(), 3);
        assert_eq!(windows.take_ended(1099), vec![]);
        let closed = windows.take_ended(1100);
        assert_eq!(
            closed,
            vec![Repeats {
                key: a.clone(),
                count: 3,
                first_at_micros: 1010,
                last_at_micros: 1099,
            }]
        );
        assert_eq!((windows.open(), windows.counted()), (0, 0));
        // A window with nothing counted closes without a record.
        windows.deny(a.clone(), 2000);
        assert_eq!(windows.take_ended(3000), vec![]);
        assert_eq!(windows.open(), 0);
    }

    #[test]
    fn a_denial_after_its_window_ended_closes_it_and_opens_the_next() {
        let mut windows = DenialWindows::new(100, 10);
        let a = key("user:a", "/m");
        windows.deny(a.clone(), 0);
        windows.deny(a.clone(), 5);
        let Denial::First { closed } = windows.deny(a.clone(), 100) else {
            panic!("a new window")
        };
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].count, closed[0].first_at_micros), (1, 5));
        assert_eq!((windows.open(), windows.counted()), (1, 0));
        // A clock that stepped back is counted in the open window.
        assert_eq!(windows.deny(a, 50), Denial::Counted);
        assert_eq!(windows.take_all()[0].first_at_micros, 50);
    }

    #[test]
    fn the_oldest_windows_are_closed_when_the_bound_is_reached() {
        let mut windows = DenialWindows::new(100, 2);
        let (a, b, c) = (key("a", "/m"), key("b", "/m"), key("c", "/m"));
        windows.deny(a.clone(), 10);
        windows.deny(a.clone(), 11);
        windows.deny(b.clone(), 20);
        // b's window counted nothing: closing it records nothing.
        let Denial::First { closed } = windows.deny(c.clone(), 30) else {
            panic!("a new window")
        };
        assert_eq!(closed.len(), 1);
        assert_eq!((&closed[0].key, closed[0].count), (&a, 1));
        assert_eq!(windows.open(), 2);
        let Denial::First { closed } = windows.deny(a, 31) else {
            panic!("a new window")
        };
        assert_eq!(closed, vec![]);
        assert_eq!(windows.deny(c, 32), Denial::Counted);
        assert_eq!(windows.open(), 2);
    }
}
