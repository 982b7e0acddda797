//! Folding records into the views. A batch of records is applied through an overlay: the views it
//! touches stay decoded in memory (a hot opportunity is decoded once and written once per batch,
//! however many votes it got), the other keys it changes are kept in a map, and the whole is
//! written as one atomic sled batch together with the applied position, so a crash never leaves
//! views and position out of step.
//!
//! When a record changes an entity, the view it replaces goes to the entity's history, keyed by
//! the position of the record that made it (an opportunity record also adds to its score and
//! status histories when those change), so a query as of any position is exact (see `query`):
//! the history holds every superseded version, the current view the latest. A history's newest
//! entries stay beside the view in its key ([`Extra`], with the first voters' votes and the newest
//! edges); past [`TAIL_ENTRIES_MAX`] entries or [`TAIL_BYTES_MAX`] bytes they go to chunks of up
//! to [`HISTORY_CHUNK_ENTRIES_MAX`] entries under one key (the position of the first). A batch
//! thus writes about one key per entity it touches rather than several per record: sled's cost
//! is per key.
//!
//! A catch-up (a rebuild, or a follower behind) decides each batch while sled writes the one
//! before it: the overlay then reads the keys that batch writes from its [`Writes`] (pending)
//! rather than from the tree, the views and votes written lately from [`Recent`], and the edge
//! chunks of an entity only if [`EdgeChunks`] says it has some. sled's reads wait while a batch
//! is written, so a batch decided beside a write asks sled for as little as it can.

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_domain::codec::StoredPersonal;
use cairn_domain::decision::DecisionEvent;
use cairn_domain::feedback::{FeedbackEvent, FeedbackStatus};
use cairn_domain::initiative::{InitiativeEvent, InitiativeStatus, MilestoneStatus};
use cairn_domain::opportunity::{OpportunityEvent, OpportunityStatus, Validation, VoteRecord};
use cairn_domain::signal::SignalEvent;
use cairn_domain::{Edge, EntityId, EntityKind, EntityRef, Event, Team, Time};
use cairn_ledger::{Position, Record, SealedPayload, StreamVersion};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ProjectionError;
use crate::keys;

use crate::views::{
    AgedOutView, DecisionView, FeedbackView, InitiativeView, MilestoneView, OpportunityState,
    OpportunityView, RankEntry, SignalView,
};

/// Most entries in one stored chunk of a history.
pub(crate) const HISTORY_CHUNK_ENTRIES_MAX: usize = 256;
/// Most bytes of entries in one stored chunk of a history (a single larger entry is a chunk of
/// its own).
pub(crate) const HISTORY_CHUNK_BYTES_MAX: usize = 32 * 1024;

/// Most entries of a history kept in its entity's current key ([`Extra`]); more go to chunks.
pub(crate) const TAIL_ENTRIES_MAX: usize = 32;
/// Most bytes of entries of a history kept in its entity's current key.
pub(crate) const TAIL_BYTES_MAX: usize = 768;
/// Most voters whose votes an opportunity's current key holds ([`Extra`]).
pub(crate) const VOTES_INLINE_MAX: usize = 32;
/// Most entries in one stored chunk of a creation list.
pub(crate) const CREATED_CHUNK_ENTRIES_MAX: usize = 128;
/// Most edges kept in an entity's current key ([`Extra`]); more go to a chunk.
pub(crate) const EDGES_INLINE_MAX: usize = 24;
/// Most bytes of edges kept in an entity's current key.
pub(crate) const EDGES_INLINE_BYTES_MAX: usize = 768;

/// A stored chunk of a history: (position, entry) in position order.
pub(crate) type HistoryChunk = Vec<(u64, Vec<u8>)>;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("views always encode")
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProjectionError> {
    postcard::from_bytes(bytes)
        .map_err(|e| ProjectionError::Corrupt(format!("a stored view does not decode: {e}")))
}

/// A view of any kind, as the overlay holds it.
pub(crate) enum AnyView {
    Feedback(FeedbackView),
    Signal(SignalView),
    Opportunity(OpportunityView),
    Decision(DecisionView),
    Initiative(InitiativeView),
}

impl AnyView {
    fn encode(&self) -> Vec<u8> {
        match self {
            AnyView::Feedback(view) => encode(view),
            AnyView::Signal(view) => encode(view),
            AnyView::Opportunity(view) => encode(view),
            AnyView::Decision(view) => encode(view),
            AnyView::Initiative(view) => encode(view),
        }
    }
}

/// A view stored under the `c` (current) keys of its kind.
pub(crate) trait StoredView: Serialize + DeserializeOwned + Sized {
    const KIND: EntityKind;
    fn wrap(self) -> AnyView;
    fn unwrap(view: AnyView) -> Option<Self>;
    /// The last record that changed it.
    fn last_position(&self) -> Position;
}

macro_rules! stored_view {
    ($view:ident, $kind:ident, $last:ident) => {
        impl StoredView for $view {
            const KIND: EntityKind = EntityKind::$kind;
            fn wrap(self) -> AnyView {
                AnyView::$kind(self)
            }
            fn unwrap(view: AnyView) -> Option<Self> {
                match view {
                    AnyView::$kind(view) => Some(view),
                    _ => None,
                }
            }
            fn last_position(&self) -> Position {
                self.$last
            }
        }
    };
}
stored_view!(FeedbackView, Feedback, last_position);
stored_view!(SignalView, Signal, position);
stored_view!(OpportunityView, Opportunity, last_position);
stored_view!(DecisionView, Decision, last_position);
stored_view!(InitiativeView, Initiative, last_position);

/// A view that changes: what of it its history keeps.
pub(crate) trait Versioned: StoredView {
    /// The history entry of this view (the whole view, or what changes of it).
    fn version(&self) -> Vec<u8>;
    /// The view as of a history entry, given the current view (for what never changes).
    fn at_version(current: Self, version: &[u8]) -> Result<Self, ProjectionError>;
}

macro_rules! whole_versions {
    ($($view:ty),*) => {$(
        impl Versioned for $view {
            fn version(&self) -> Vec<u8> {
                encode(self)
            }
            fn at_version(_current: Self, version: &[u8]) -> Result<Self, ProjectionError> {
                decode(version)
            }
        }
    )*};
}
whole_versions!(FeedbackView, SignalView, DecisionView, InitiativeView);

impl Versioned for OpportunityView {
    /// Only what changes after creation (see `OpportunityState`).
    fn version(&self) -> Vec<u8> {
        encode(&self.state())
    }
    fn at_version(current: Self, version: &[u8]) -> Result<Self, ProjectionError> {
        Ok(current.with_state(decode::<OpportunityState>(version)?))
    }
}

/// How one opportunity's place in the rankings changes over a batch: only the net change is
/// written (a hot opportunity rescored a hundred times in a batch moves once).
struct RankChange {
    /// Its place when the batch started: team and score, if ranked.
    before: Option<(Team, f64)>,
    /// Its place after the batch's last record, if ranked.
    after: Option<(Team, f64, RankEntry)>,
}

/// What a current key holds after its view: the newest entries of the entity's histories (older
/// ones are in chunks under their own keys) and, for an opportunity, its first voters' latest
/// votes. Keeping them beside the view means a batch writes one key per entity it changes, not
/// one per history and vote.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Extra {
    /// The histories' newest entries, all newer than any entry in their chunks, by [`History`].
    pub(crate) tails: [HistoryChunk; 3],
    /// (principal, weight, time) of the latest vote of each of the first [`VOTES_INLINE_MAX`]
    /// voters; later voters' votes have keys of their own (`V`).
    pub(crate) votes: Vec<(String, u32, i64)>,
    /// The newest edges at the entity (older ones, and those recorded before it existed, are in
    /// `e` chunks).
    pub(crate) edges: Vec<StoredEdge>,
}

/// An edge at an entity: (the entity is its `to` end, relation, the far end, the position that
/// first recorded it).
pub(crate) type StoredEdge = (bool, String, String, u64);

/// The histories of an entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum History {
    /// The views its records replaced (`v` chunks).
    Versions = 0,
    /// An opportunity's scores (`h` chunks).
    Scores = 1,
    /// An opportunity's statuses (`s` chunks).
    Statuses = 2,
}

impl History {
    const ALL: [History; 3] = [History::Versions, History::Scores, History::Statuses];

    /// The chunk prefix of this history, from the entity's current key.
    fn prefix(self, current_key: &[u8]) -> Vec<u8> {
        match self {
            History::Versions => {
                let mut prefix = current_key.to_vec();
                prefix[0] = b'v';
                prefix
            }
            History::Scores | History::Statuses => {
                let mut prefix = vec![if self == History::Scores { b'h' } else { b's' }];
                prefix.extend_from_slice(&current_key[2..]);
                prefix
            }
        }
    }
}

/// A current key's value: the view's length (4 bytes, little-endian), the view, the [`Extra`].
fn encode_stored(view: &[u8], extra: &Extra) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(4 + view.len() + 64);
    bytes.extend_from_slice(&(view.len() as u32).to_le_bytes());
    bytes.extend_from_slice(view);
    postcard::to_extend(extra, bytes).expect("views always encode")
}

/// The view and the rest of a current key's value.
fn split_stored(bytes: &[u8]) -> Result<(&[u8], &[u8]), ProjectionError> {
    let corrupt = || ProjectionError::Corrupt("a current view is cut short".into());
    let length: [u8; 4] = bytes
        .get(..4)
        .ok_or_else(corrupt)?
        .try_into()
        .map_err(|_| corrupt())?;
    let end = 4 + u32::from_le_bytes(length) as usize;
    Ok((bytes.get(4..end).ok_or_else(corrupt)?, &bytes[end..]))
}

/// The view of a current key's value.
pub(crate) fn decode_view<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProjectionError> {
    decode(split_stored(bytes)?.0)
}

/// The [`Extra`] of a current key's value.
pub(crate) fn decode_extra(bytes: &[u8]) -> Result<Extra, ProjectionError> {
    decode(split_stored(bytes)?.1)
}

/// A current view the batch reads or changes, with its [`Extra`].
#[derive(Default)]
struct Slot {
    view: SlotView,
    extra: Extra,
    /// Changed: to be written.
    dirty: bool,
}

#[derive(Default)]
enum SlotView {
    /// Held by an applier (between `take_view` and `put_view`), or not created yet.
    #[default]
    Taken,
    /// As stored, not decoded.
    Raw(sled::IVec),
    Decoded(Box<AnyView>),
}

/// The writes of a batch, by key (`None`: removed), ready for sled.
pub(crate) type Writes = BTreeMap<sled::IVec, Option<sled::IVec>>;

/// The sled batch of some writes (the keys and values are shared, not copied).
pub(crate) fn to_batch(writes: &Writes) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (key, value) in writes {
        match value {
            Some(value) => batch.insert(key.clone(), value.clone()),
            None => batch.remove(key.clone()),
        }
    }
    batch
}

/// The edge prefixes (`e` keys without their position and flag) under which the tree holds
/// chunks: a batch reads the chunks of an entity's edges only if it has some, rather than asking
/// sled for each entity it links (most have none). Read from the tree on first use, then kept up
/// to date by every batch; a prefix listed in vain (a batch that failed) only costs a scan.
#[derive(Default)]
pub(crate) struct EdgeChunks {
    prefixes: Option<HashSet<Vec<u8>>>,
}

/// The bytes after an edge prefix in a chunk's key: the batch position and the 0 or 1 flag.
const EDGE_CHUNK_SUFFIX: usize = 9;

impl EdgeChunks {
    /// Whether the tree (or the `pending` writes, not yet in it) may hold chunks under `prefix`.
    fn may_hold(
        &mut self,
        tree: &sled::Tree,
        pending: Option<&Writes>,
        prefix: &[u8],
    ) -> Result<bool, ProjectionError> {
        if self.prefixes.is_none() {
            let mut prefixes = HashSet::new();
            for entry in tree.scan_prefix(b"e") {
                let (key, _) = entry?;
                prefixes.insert(edge_prefix_of_chunk(&key)?.to_vec());
            }
            for (key, _) in pending
                .into_iter()
                .flat_map(|p| p.range(sled::IVec::from(b"e")..))
            {
                if key.first() != Some(&b'e') {
                    break;
                }
                prefixes.insert(edge_prefix_of_chunk(key)?.to_vec());
            }
            self.prefixes = Some(prefixes);
        }
        Ok(self.prefixes.as_ref().is_some_and(|p| p.contains(prefix)))
    }

    /// Notes a chunk key written (or about to be).
    fn note(&mut self, chunk_key: &[u8]) {
        if let Some(prefixes) = &mut self.prefixes
            && let Some(prefix) = chunk_key.get(..chunk_key.len().saturating_sub(EDGE_CHUNK_SUFFIX))
            && !prefixes.contains(prefix)
        {
            prefixes.insert(prefix.to_vec());
        }
    }
}

fn edge_prefix_of_chunk(key: &[u8]) -> Result<&[u8], ProjectionError> {
    key.len()
        .checked_sub(EDGE_CHUNK_SUFFIX)
        .map(|end| &key[..end])
        .ok_or_else(|| ProjectionError::Corrupt("an edge chunk key is cut short".into()))
}

/// The current views and votes (`c` and `V` keys) a catch-up wrote, kept so that its next
/// batches read them without asking sled: sled's reads wait while a batch is written (one lock
/// for the whole process), and the next batch is decided while the one before it is written.
/// Bounded by a budget of bytes in two generations: when the newer holds half the budget, the
/// older is dropped. An entity a batch changes is written again, so what a catch-up keeps
/// touching stays. Only a catch-up uses it, and only while it is the only writer.
pub(crate) struct Recent {
    newer: HashMap<sled::IVec, sled::IVec>,
    older: HashMap<sled::IVec, sled::IVec>,
    newer_bytes: usize,
    budget: usize,
    /// It holds every `c` and `V` key there is (the catch-up started with none stored, and
    /// nothing was dropped since): a key it lacks is absent, without asking sled.
    complete: bool,
}

/// Bytes of bookkeeping counted per key kept in [`Recent`], beyond its key and value.
const RECENT_OVERHEAD_BYTES: usize = 64;

impl Recent {
    /// Empty; `tree` is asked whether it holds any key kept here (if not, what this keeps is
    /// all there is until it drops something).
    pub(crate) fn new(tree: &sled::Tree, budget: usize) -> Result<Recent, ProjectionError> {
        let mut complete = true;
        for prefix in [b"c", b"V"] {
            if tree.scan_prefix(prefix).next().transpose()?.is_some() {
                complete = false;
            }
        }
        Ok(Recent {
            newer: HashMap::new(),
            older: HashMap::new(),
            newer_bytes: 0,
            budget,
            complete,
        })
    }

    fn kept(key: &[u8]) -> bool {
        matches!(key.first(), Some(b'c' | b'V'))
    }

    /// The stored value of a key kept here: `Some(None)` if it is known to be absent, `None` if
    /// this does not know.
    fn get(&self, key: &[u8]) -> Option<Option<&sled::IVec>> {
        if !Recent::kept(key) {
            return None;
        }
        match self.newer.get(key).or_else(|| self.older.get(key)) {
            Some(value) => Some(Some(value)),
            None if self.complete => Some(None),
            None => None,
        }
    }

    /// Takes in a batch's writes, before they are read again (they are then the newest).
    pub(crate) fn note(&mut self, writes: &Writes) {
        for (key, value) in writes.iter().filter(|(key, _)| Recent::kept(key)) {
            self.older.remove(key);
            match value {
                Some(value) => {
                    self.newer_bytes += key.len() + value.len() + RECENT_OVERHEAD_BYTES;
                    self.newer.insert(key.clone(), value.clone());
                }
                None => {
                    self.newer.remove(key);
                }
            }
            if self.newer_bytes > self.budget / 2 {
                self.older = std::mem::take(&mut self.newer);
                self.newer_bytes = 0;
                self.complete = false;
            }
        }
    }
}

/// The changes of one batch, over the tree.
pub(crate) struct Overlay<'t> {
    tree: &'t sled::Tree,
    /// The writes of the previous batch while sled writes them (a pipelined catch-up): newer
    /// than the tree for the keys they hold.
    pending: Option<&'t Writes>,
    /// What the catch-up wrote lately, newer than `pending` and the tree.
    recent: Option<&'t Recent>,
    edge_chunks: &'t mut EdgeChunks,
    /// Current views the batch changed, by their `c` key.
    views: HashMap<Vec<u8>, Slot>,
    /// Entities the batch created, by creation prefix (kind and tenant): (position, id).
    created: HashMap<Vec<u8>, Vec<(u64, String)>>,
    /// Edges at entities without a view, by edge prefix.
    orphan_edges: HashMap<Vec<u8>, Vec<StoredEdge>>,
    /// The (relation, far end) of the edges from an entity, by edge prefix, once read.
    edges_from: HashMap<Vec<u8>, HashSet<(String, String)>>,
    /// Ranking changes, by (tenant, opportunity id).
    ranking: HashMap<(String, String), RankChange>,
    /// Every other key the batch changed (`None`: removed).
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'t> Overlay<'t> {
    pub(crate) fn new(
        tree: &'t sled::Tree,
        pending: Option<&'t Writes>,
        recent: Option<&'t Recent>,
        edge_chunks: &'t mut EdgeChunks,
    ) -> Overlay<'t> {
        Overlay {
            tree,
            pending,
            recent,
            edge_chunks,
            views: HashMap::new(),
            created: HashMap::new(),
            orphan_edges: HashMap::new(),
            edges_from: HashMap::new(),
            ranking: HashMap::new(),
            changes: BTreeMap::new(),
        }
    }

    /// Adds an entry to a history of the entity whose current key is `key` (whose view the
    /// batch writes).
    fn push_history(&mut self, key: &[u8], history: History, position: Position, entry: Vec<u8>) {
        self.slot(key).extra.tails[history as usize].push((position.0, entry));
    }

    /// The slot of a current key, to change (marked dirty).
    fn slot(&mut self, key: &[u8]) -> &mut Slot {
        if !self.views.contains_key(key) {
            self.views.insert(key.to_vec(), Slot::default());
        }
        let slot = self.views.get_mut(key).expect("just inserted");
        slot.dirty = true;
        slot
    }

    /// The slot of an entity that has a view (read from the tree if the batch has not yet), not
    /// marked dirty; `None` if it has no view.
    fn load_slot(&mut self, key: &[u8]) -> Result<Option<&mut Slot>, ProjectionError> {
        if !self.views.contains_key(key) {
            let Some(bytes) = self.read(key)? else {
                return Ok(None);
            };
            let extra = decode::<Extra>(split_stored(&bytes)?.1)?;
            self.views.insert(
                key.to_vec(),
                Slot {
                    view: SlotView::Raw(bytes),
                    extra,
                    dirty: false,
                },
            );
        }
        Ok(self.views.get_mut(key))
    }

    /// Records an edge at both ends, unless already recorded.
    fn add_edge(
        &mut self,
        tenant: &str,
        edge: &Edge,
        position: Position,
    ) -> Result<(), ProjectionError> {
        let relation = edge.relation.as_str().to_owned();
        let from = edge.from.to_string();
        let to = edge.to.to_string();
        let from_prefix = keys::edges_prefix(tenant, &from);
        if !self.edges_from.contains_key(&from_prefix) {
            let mut known = HashSet::new();
            let current = keys::current(edge.from.kind, tenant, edge.from.id.as_str());
            if let Some(slot) = self.load_slot(&current)? {
                known.extend(
                    slot.extra
                        .edges
                        .iter()
                        .filter(|e| !e.0)
                        .map(|e| (e.1.clone(), e.2.clone())),
                );
            }
            if self
                .edge_chunks
                .may_hold(self.tree, self.pending, &from_prefix)?
            {
                for chunk in self.scan(&from_prefix)? {
                    let chunk: Vec<StoredEdge> = decode(&chunk)?;
                    known.extend(chunk.into_iter().filter(|e| !e.0).map(|e| (e.1, e.2)));
                }
            }
            self.edges_from.insert(from_prefix.clone(), known);
        }
        let known = self.edges_from.get_mut(&from_prefix).expect("just read");
        if !known.insert((relation.clone(), to.clone())) {
            return Ok(());
        }
        for (near, is_to, far) in [(&edge.from, false, to), (&edge.to, true, from)] {
            let stored = (is_to, relation.clone(), far, position.0);
            let current = keys::current(near.kind, tenant, near.id.as_str());
            match self.load_slot(&current)? {
                Some(slot) => {
                    slot.dirty = true;
                    slot.extra.edges.push(stored);
                }
                None => self
                    .orphan_edges
                    .entry(keys::edges_prefix(tenant, &near.to_string()))
                    .or_default()
                    .push(stored),
            }
        }
        Ok(())
    }

    /// A key as stored: in what the catch-up wrote lately, else in the pending writes, else in
    /// the tree.
    fn read(&self, key: &[u8]) -> Result<Option<sled::IVec>, ProjectionError> {
        if let Some(value) = self.recent.and_then(|recent| recent.get(key)) {
            return Ok(value.cloned());
        }
        if let Some(value) = self.pending.and_then(|pending| pending.get(key)) {
            return Ok(value.clone());
        }
        Ok(self.tree.get(key)?)
    }

    /// The values under a prefix as stored (the pending writes over the tree), in key order.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<sled::IVec>, ProjectionError> {
        let mut found = BTreeMap::new();
        for entry in self.tree.scan_prefix(prefix) {
            let (key, value) = entry?;
            found.insert(key, Some(value));
        }
        if let Some(pending) = self.pending {
            let start = sled::IVec::from(prefix);
            for (key, value) in pending.range(start..) {
                if !key.starts_with(prefix) {
                    break;
                }
                found.insert(key.clone(), value.clone());
            }
        }
        Ok(found.into_values().flatten().collect())
    }

    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        match self.changes.get(key) {
            Some(value) => Ok(value.clone()),
            None => Ok(self.read(key)?.map(|v| v.to_vec())),
        }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        self.get_raw(key)?.map(|bytes| decode(&bytes)).transpose()
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.changes.insert(key, Some(value));
    }

    /// Takes a current view out of the overlay (or reads it and its [`Extra`] from the tree), to
    /// change it and put it back with [`Overlay::put_view`].
    fn take_view<T: StoredView>(&mut self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        let Some(slot) = self.load_slot(key)? else {
            return Ok(None);
        };
        match std::mem::take(&mut slot.view) {
            SlotView::Taken => Ok(None),
            SlotView::Raw(bytes) => decode_view::<T>(&bytes).map(Some),
            SlotView::Decoded(view) => T::unwrap(*view).map(Some).ok_or_else(|| {
                ProjectionError::Corrupt("a view key holds a view of another kind".into())
            }),
        }
    }

    fn put_view<T: StoredView>(&mut self, key: &[u8], view: T) {
        self.slot(key).view = SlotView::Decoded(Box::new(view.wrap()));
    }

    /// The batch: every change, each dirty view encoded once with its [`Extra`] (a history
    /// tail grown too long goes to chunks), the creations in chunks, the net ranking changes,
    /// and the applied position.
    pub(crate) fn into_writes(self, applied: Position) -> Result<Writes, ProjectionError> {
        let mut batch = WriteSet::default();
        for (key, mut slot) in self.views {
            let view = match slot.view {
                _ if !slot.dirty => continue,
                // Read and not put back: only on an error, which drops the batch.
                SlotView::Taken => continue,
                SlotView::Raw(bytes) => split_stored(&bytes)?.0.to_vec(),
                SlotView::Decoded(view) => view.encode(),
            };
            let edge_bytes: usize = slot
                .extra
                .edges
                .iter()
                .map(|e| e.1.len() + e.2.len() + 6)
                .sum();
            if slot.extra.edges.len() > EDGES_INLINE_MAX || edge_bytes > EDGES_INLINE_BYTES_MAX {
                let mut chunk_key = keys::edges_prefix_of_current(&key)?;
                chunk_key.extend_from_slice(&applied.0.to_be_bytes());
                chunk_key.push(1);
                self.edge_chunks.note(&chunk_key);
                batch.insert(chunk_key, encode(&std::mem::take(&mut slot.extra.edges)));
            }
            for history in History::ALL {
                let tail = &mut slot.extra.tails[history as usize];
                let bytes: usize = tail.iter().map(|(_, entry)| entry.len() + 4).sum();
                if tail.len() > TAIL_ENTRIES_MAX || bytes > TAIL_BYTES_MAX {
                    write_chunks(&mut batch, history.prefix(&key), std::mem::take(tail));
                }
            }
            batch.insert(key, encode_stored(&view, &slot.extra));
        }
        for (mut chunk_key, edges) in self.orphan_edges {
            chunk_key.extend_from_slice(&applied.0.to_be_bytes());
            chunk_key.push(0);
            self.edge_chunks.note(&chunk_key);
            batch.insert(chunk_key, encode(&edges));
        }
        for (prefix, entries) in self.created {
            for chunk in entries.chunks(CREATED_CHUNK_ENTRIES_MAX) {
                batch.insert(
                    keys::with_position(prefix.clone(), Position(chunk[0].0)),
                    encode(&chunk),
                );
            }
        }
        for ((tenant, id), change) in self.ranking {
            let places = |team: &Team, score: f64| {
                [None, Some(team.as_str())].map(|team| keys::ranking(&tenant, team, score, &id))
            };
            let after = change
                .after
                .map(|(team, score, entry)| (places(&team, score), encode(&entry)));
            if let Some((team, score)) = change.before {
                for key in places(&team, score) {
                    if after.as_ref().is_none_or(|(keys, _)| !keys.contains(&key)) {
                        batch.remove(key);
                    }
                }
            }
            if let Some((keys, entry)) = after {
                for key in keys {
                    batch.insert(key, entry.clone());
                }
            }
        }
        for (key, value) in self.changes {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        batch.insert(keys::APPLIED, &applied.0.to_be_bytes());
        Ok(batch.0)
    }
}

/// [`Writes`] built as a `sled::Batch` is.
#[derive(Default)]
struct WriteSet(Writes);

impl WriteSet {
    fn insert(&mut self, key: impl Into<sled::IVec>, value: impl Into<sled::IVec>) {
        self.0.insert(key.into(), Some(value.into()));
    }

    fn remove(&mut self, key: impl Into<sled::IVec>) {
        self.0.insert(key.into(), None);
    }
}

/// Writes history entries (in position order, all newer than the history's chunks) as chunks
/// under `prefix`, each keyed by the position of its first entry.
fn write_chunks(batch: &mut WriteSet, prefix: Vec<u8>, entries: HistoryChunk) {
    let mut chunk: HistoryChunk = Vec::new();
    let mut chunk_bytes = 0;
    for (position, entry) in entries {
        let full = chunk.len() == HISTORY_CHUNK_ENTRIES_MAX
            || (!chunk.is_empty() && chunk_bytes + entry.len() > HISTORY_CHUNK_BYTES_MAX);
        if full {
            let first = Position(chunk[0].0);
            batch.insert(
                keys::with_position(prefix.clone(), first),
                encode(&std::mem::take(&mut chunk)),
            );
            chunk_bytes = 0;
        }
        chunk_bytes += entry.len();
        chunk.push((position, entry));
    }
    if let Some(&(first, _)) = chunk.first() {
        batch.insert(keys::with_position(prefix, Position(first)), encode(&chunk));
    }
}

/// Applies one record. Records of aggregate types the domain does not know (raw ledger events)
/// change nothing. A record of a domain type that does not decode, or that changes an entity
/// before it exists, stops the projection with an error naming its position: the domain never
/// writes one, and skipping it would serve answers that silently disagree with the ledger.
pub(crate) fn apply_record(
    overlay: &mut Overlay<'_>,
    record: &Record,
) -> Result<(), ProjectionError> {
    let envelope = &record.envelope;
    let Some(kind) = EntityKind::parse(&envelope.stream.aggregate_type) else {
        return Ok(());
    };
    let position = record.position();
    let undecodable = |reason: String| ProjectionError::Decode { position, reason };
    let payload = SealedPayload::decode(&record.payload).map_err(|e| undecodable(e.to_string()))?;
    let event = Event::decode(
        &envelope.stream.aggregate_type,
        &envelope.event_type,
        envelope.event_schema_version,
        &payload.clear,
        StoredPersonal::Withheld,
    )
    .map_err(|e| undecodable(e.to_string()))?;
    let id = EntityId::new(envelope.stream.aggregate_id.clone())
        .map_err(|e| undecodable(e.to_string()))?;
    let own = EntityRef::new(kind, id.clone());
    let mut applier = Applier {
        overlay,
        tenant: envelope.stream.tenant.as_str(),
        id: &id,
        position,
        recorded_at: Time(envelope.recorded_at.0),
        stream_version: envelope.stream_version,
    };
    let edges = event.edges(&own);
    match event {
        Event::Feedback(event) => applier.feedback(event),
        Event::Signal(event) => applier.signal(event),
        Event::Opportunity(event) => applier.opportunity(event),
        Event::Decision(event) => applier.decision(event),
        Event::Initiative(event) => applier.initiative(event),
    }?;
    // After the record's own view is stored, so its edges go beside it.
    for edge in edges {
        overlay.add_edge(envelope.stream.tenant.as_str(), &edge, position)?;
    }
    Ok(())
}

struct Applier<'a, 't> {
    overlay: &'a mut Overlay<'t>,
    tenant: &'a str,
    id: &'a EntityId,
    position: Position,
    recorded_at: Time,
    stream_version: StreamVersion,
}

impl Applier<'_, '_> {
    fn current_key(&self, kind: EntityKind) -> Vec<u8> {
        keys::current(kind, self.tenant, self.id.as_str())
    }

    /// Starts the view of an entity this record creates. A creation is its stream's first
    /// record, and stream versions are gapless, so a second creation cannot go unnoticed.
    fn created<T: StoredView>(&mut self) -> Result<(), ProjectionError> {
        if self.stream_version != StreamVersion(1) {
            return Err(ProjectionError::Corrupt(format!(
                "record at position {} creates {}/{} at stream version {}",
                self.position,
                T::KIND,
                self.id,
                self.stream_version.0
            )));
        }
        self.overlay
            .created
            .entry(keys::created_prefix(T::KIND, self.tenant))
            .or_default()
            .push((self.position.0, self.id.as_str().to_owned()));
        Ok(())
    }

    /// The view of an entity this record changes; the view it had goes to its history.
    fn existing<T: Versioned>(&mut self) -> Result<T, ProjectionError> {
        let key = self.current_key(T::KIND);
        let view: T = self.overlay.take_view(&key)?.ok_or_else(|| {
            ProjectionError::Corrupt(format!(
                "record at position {} changes {}/{} before it exists",
                self.position,
                T::KIND,
                self.id
            ))
        })?;
        self.overlay.push_history(
            &key,
            History::Versions,
            view.last_position(),
            view.version(),
        );
        Ok(view)
    }

    /// A feedback item whose evidence moved here from a duplicate is now evidence for this
    /// opportunity too (the `evidence_for` edge says so; the item's own stream does not change).
    fn relink_feedback(&mut self, feedback: &EntityId) -> Result<(), ProjectionError> {
        let key = keys::current(EntityKind::Feedback, self.tenant, feedback.as_str());
        let Some(mut view) = self.overlay.take_view::<FeedbackView>(&key)? else {
            return Ok(());
        };
        if !view.opportunities.contains(self.id) {
            self.overlay
                .push_history(&key, History::Versions, view.last_position, view.version());
            view.opportunities.push(self.id.clone());
            view.last_position = self.position;
        }
        self.overlay.put_view(&key, view);
        Ok(())
    }

    /// Stores the current view.
    fn store<T: StoredView>(&mut self, view: T) {
        self.overlay.put_view(&self.current_key(T::KIND), view);
    }

    fn feedback(&mut self, event: FeedbackEvent) -> Result<(), ProjectionError> {
        let mut view = match event {
            FeedbackEvent::Received {
                id,
                team,
                source,
                tags,
                outcome_tags,
                visibility,
                received_at,
                content: _,
            } => {
                self.created::<FeedbackView>()?;
                FeedbackView {
                    id,
                    team,
                    source,
                    tags,
                    outcome_tags,
                    visibility,
                    status: FeedbackStatus::Received,
                    received_at,
                    received_position: self.position,
                    opportunities: Vec::new(),
                    discard_reason: None,
                    stream_version: self.stream_version,
                    last_position: self.position,
                }
            }
            FeedbackEvent::Linked { opportunity } => {
                let mut view: FeedbackView = self.existing()?;
                view.status = FeedbackStatus::Processed;
                if !view.opportunities.contains(&opportunity) {
                    view.opportunities.push(opportunity);
                }
                view
            }
            FeedbackEvent::Discarded { reason } => {
                let mut view: FeedbackView = self.existing()?;
                view.status = FeedbackStatus::Discarded;
                view.discard_reason = Some(reason);
                view
            }
        };
        view.stream_version = self.stream_version;
        view.last_position = self.position;
        self.store(view);
        Ok(())
    }

    fn signal(&mut self, event: SignalEvent) -> Result<(), ProjectionError> {
        // A sampled observation is viewed like any other; its rate is in its event.
        let (id, observation, recorded_at) = match event {
            SignalEvent::Observed {
                id,
                observation,
                recorded_at,
            }
            | SignalEvent::Sampled {
                id,
                observation,
                recorded_at,
                ..
            } => (id, observation, recorded_at),
        };
        self.created::<SignalView>()?;
        // A signal never changes: it needs no versions (as of an earlier position, it is absent).
        let key = self.current_key(EntityKind::Signal);
        self.overlay.put_view(
            &key,
            SignalView {
                id,
                observation,
                recorded_at,
                position: self.position,
            },
        );
        Ok(())
    }

    /// Notes an opportunity's place in the rankings after this record (tenant-wide and per
    /// team; ranked when in a ranked status and scored). `before` is its status and score before
    /// the record; the batch writes only where it was when the batch started and where it ends.
    fn rank(&mut self, before: Option<(OpportunityStatus, Option<f64>)>, view: &OpportunityView) {
        let after = match (view.score, view.score_position) {
            (Some(score), Some(score_position)) if view.status.is_ranked() => Some((
                view.team.clone(),
                score,
                RankEntry {
                    title: view.title.clone(),
                    team: view.team.clone(),
                    status: view.status,
                    score_position,
                },
            )),
            _ => None,
        };
        let key = (self.tenant.to_owned(), view.id.as_str().to_owned());
        let change = self
            .overlay
            .ranking
            .entry(key)
            .or_insert_with(|| RankChange {
                before: match before {
                    Some((status, Some(score))) if status.is_ranked() => {
                        Some((view.team.clone(), score))
                    }
                    _ => None,
                },
                after: None,
            });
        change.after = after;
    }

    /// Counts a vote: the principal's latest replaces their earlier one. A vote absorbed from a
    /// duplicate replaces it only when newer, as the domain folds it.
    fn vote(
        &mut self,
        view: &mut OpportunityView,
        vote: &VoteRecord,
        only_if_newer: bool,
    ) -> Result<(), ProjectionError> {
        let principal = vote.principal.as_str();
        let current = self.current_key(EntityKind::Opportunity);
        let inline = &mut self.overlay.slot(&current).extra.votes;
        // The first voters are in the current key; once it holds VOTES_INLINE_MAX, later voters
        // have keys of their own.
        let (old, key) = match inline.iter().position(|(p, _, _)| p == principal) {
            Some(index) => (Some((inline[index].1, inline[index].2)), None),
            None if inline.len() < VOTES_INLINE_MAX => (None, None),
            None => {
                let key = keys::vote(self.tenant, view.id.as_str(), principal);
                (self.overlay.get::<(u32, i64)>(&key)?, Some(key))
            }
        };
        if only_if_newer && old.is_some_and(|(_, at)| at >= vote.at.0) {
            return Ok(());
        }
        match old {
            Some((weight, _)) => view.vote_weight -= u64::from(weight),
            None => view.voters += 1,
        }
        view.vote_weight += u64::from(vote.weight);
        match key {
            Some(key) => self.overlay.put(key, encode(&(vote.weight, vote.at.0))),
            None => {
                let inline = &mut self.overlay.slot(&current).extra.votes;
                match inline.iter_mut().find(|(p, _, _)| p == principal) {
                    Some(entry) => *entry = (principal.to_owned(), vote.weight, vote.at.0),
                    None => inline.push((principal.to_owned(), vote.weight, vote.at.0)),
                }
            }
        }
        Ok(())
    }

    fn opportunity(&mut self, event: OpportunityEvent) -> Result<(), ProjectionError> {
        use OpportunityStatus as S;
        let (mut view, before) = match &event {
            OpportunityEvent::Created {
                id,
                draft,
                created_at,
            } => {
                self.created::<OpportunityView>()?;
                let view = OpportunityView {
                    id: id.clone(),
                    title: draft.title.clone(),
                    problem: draft.problem.clone(),
                    owner: draft.owner.clone(),
                    team: draft.team.clone(),
                    size: draft.size,
                    outcome_tags: draft.outcome_tags.clone(),
                    visibility: draft.visibility,
                    status: S::New,
                    canonical: None,
                    decline_reason: None,
                    decision: None,
                    snoozed_until: None,
                    aged_out: None,
                    outcome_signal: None,
                    evidence: 0,
                    last_evidence_at: *created_at,
                    voters: 0,
                    vote_weight: 0,
                    score: None,
                    score_position: None,
                    created_at: *created_at,
                    created_position: self.position,
                    stream_version: self.stream_version,
                    last_position: self.position,
                };
                (view, None)
            }
            _ => {
                let view: OpportunityView = self.existing()?;
                let before = (view.status, view.score);
                (view, Some(before))
            }
        };
        match event {
            OpportunityEvent::Created { .. } | OpportunityEvent::Rated { .. } => {}
            OpportunityEvent::ReviewStarted => view.status = S::UnderReview,
            OpportunityEvent::Accepted { decision } => {
                view.status = S::Planned;
                view.decision = decision;
            }
            OpportunityEvent::MarkedDuplicate { canonical, .. } => {
                view.status = S::Duplicate;
                view.canonical = Some(canonical);
            }
            OpportunityEvent::Declined { reason, decision } => {
                view.status = S::Declined;
                view.decline_reason = Some(reason);
                view.decision = Some(decision);
            }
            OpportunityEvent::Snoozed { until } => {
                view.status = S::Snoozed;
                view.snoozed_until = Some(until);
            }
            OpportunityEvent::Woke => {
                view.status = S::UnderReview;
                view.snoozed_until = None;
            }
            OpportunityEvent::WorkStarted => view.status = S::InProgress,
            OpportunityEvent::Shipped => view.status = S::Shipped,
            OpportunityEvent::OutcomeJudged { outcome, signal } => {
                view.status = match outcome {
                    Validation::Validated => S::Validated,
                    Validation::NotValidated => S::NotValidated,
                };
                view.outcome_signal = signal;
            }
            OpportunityEvent::EvidenceAttached(evidence) => {
                view.evidence += 1;
                view.last_evidence_at = view.last_evidence_at.max(evidence.attached_at);
            }
            OpportunityEvent::Reopened { status, .. } => {
                view.status = status;
                view.aged_out = None;
            }
            OpportunityEvent::Voted(vote) => self.vote(&mut view, &vote, false)?,
            OpportunityEvent::Scored(snapshot) => {
                view.score = Some(snapshot.value);
                view.score_position = Some(self.position);
                self.overlay.push_history(
                    &self.current_key(EntityKind::Opportunity),
                    History::Scores,
                    self.position,
                    snapshot.value.to_bits().to_be_bytes().to_vec(),
                );
            }
            OpportunityEvent::AgedOut {
                rule,
                rule_version,
                reason,
            } => {
                view.status = S::AgedOut;
                let aged = AgedOutView {
                    opportunity: view.id.clone(),
                    title: view.title.clone(),
                    team: view.team.clone(),
                    rule,
                    rule_version,
                    reason,
                    position: self.position,
                    at: self.recorded_at,
                };
                self.overlay.put(
                    keys::aged(self.tenant, aged.at.0, self.position),
                    encode(&aged),
                );
                view.aged_out = Some(aged);
            }
            OpportunityEvent::DuplicateAbsorbed {
                evidence, votes, ..
            } => {
                // The domain absorbs only the evidence the canonical opportunity lacks.
                view.evidence += evidence.len() as u64;
                for piece in &evidence {
                    view.last_evidence_at = view.last_evidence_at.max(piece.attached_at);
                    if piece.reference.kind == EntityKind::Feedback {
                        self.relink_feedback(&piece.reference.id)?;
                    }
                }
                for vote in &votes {
                    self.vote(&mut view, vote, true)?;
                }
            }
        }
        view.stream_version = self.stream_version;
        view.last_position = self.position;
        if before.is_none_or(|(status, _)| status != view.status) {
            self.overlay.push_history(
                &self.current_key(EntityKind::Opportunity),
                History::Statuses,
                self.position,
                encode(&view.status),
            );
        }
        self.rank(before, &view);
        self.store(view);
        Ok(())
    }

    fn decision(&mut self, event: DecisionEvent) -> Result<(), ProjectionError> {
        let mut view: DecisionView = match &event {
            DecisionEvent::Proposed {
                id,
                content,
                proposed_at,
            } => {
                self.created::<DecisionView>()?;
                DecisionView {
                    id: id.clone(),
                    kind: content.kind,
                    title: content.title.clone(),
                    team: content.team.clone(),
                    context: content.context.clone(),
                    outcome: content.outcome.clone(),
                    status: "proposed".into(),
                    superseded_by: None,
                    status_reason: None,
                    deciders: content.deciders.clone(),
                    subjects: content.subjects.clone(),
                    supersedes: content.supersedes.clone(),
                    visibility: content.visibility,
                    proposed_at: *proposed_at,
                    decided_at: None,
                    decided_by: None,
                    proposed_position: self.position,
                    stream_version: self.stream_version,
                    last_position: self.position,
                }
            }
            _ => self.existing()?,
        };
        match event {
            DecisionEvent::Proposed { .. } => {}
            DecisionEvent::Revised(content) => {
                view.kind = content.kind;
                view.title = content.title;
                view.team = content.team;
                view.context = content.context;
                view.outcome = content.outcome;
                view.deciders = content.deciders;
                view.subjects = content.subjects;
                view.supersedes = content.supersedes;
                view.visibility = content.visibility;
            }
            DecisionEvent::Accepted { by, at } => {
                view.status = "accepted".into();
                view.decided_at = Some(at);
                view.decided_by = Some(by);
            }
            DecisionEvent::Rejected { by, reason } => {
                view.status = "rejected".into();
                view.decided_by = Some(by);
                view.status_reason = Some(reason);
            }
            DecisionEvent::Deprecated { reason } => {
                view.status = "deprecated".into();
                view.status_reason = Some(reason);
            }
            DecisionEvent::Superseded { by } => {
                view.status = "superseded".into();
                view.superseded_by = Some(by);
            }
        }
        view.stream_version = self.stream_version;
        view.last_position = self.position;
        self.store(view);
        Ok(())
    }

    fn initiative(&mut self, event: InitiativeEvent) -> Result<(), ProjectionError> {
        let mut view: InitiativeView = match &event {
            InitiativeEvent::Created { id, draft } => {
                self.created::<InitiativeView>()?;
                InitiativeView {
                    id: id.clone(),
                    title: draft.title.clone(),
                    goal: draft.goal.clone(),
                    owners: draft.owners.clone(),
                    team: draft.team.clone(),
                    target: draft.target.clone(),
                    outcome_tags: draft.outcome_tags.clone(),
                    visibility: draft.visibility,
                    status: InitiativeStatus::Draft,
                    at_risk: false,
                    status_reason: None,
                    start: draft.start,
                    target_date: draft.target_date,
                    implements: draft.implements.clone(),
                    milestones: Vec::new(),
                    created_position: self.position,
                    stream_version: self.stream_version,
                    last_position: self.position,
                }
            }
            _ => self.existing()?,
        };
        let position = self.position;
        let close = |view: &mut InitiativeView, name: &str, status, signal| {
            if let Some(m) = view.milestones.iter_mut().find(|m| m.name == name) {
                m.status = status;
                m.signal = signal;
                m.closed_position = Some(position);
            }
        };
        match event {
            InitiativeEvent::Created { .. } => {}
            InitiativeEvent::Scheduled => view.status = InitiativeStatus::Scheduled,
            InitiativeEvent::Started => view.status = InitiativeStatus::InProgress,
            InitiativeEvent::RiskFlagged { reason } => {
                view.at_risk = true;
                view.status_reason = Some(reason);
            }
            InitiativeEvent::RiskCleared => {
                view.at_risk = false;
                view.status_reason = None;
            }
            InitiativeEvent::Completed => {
                view.status = InitiativeStatus::Completed;
                view.at_risk = false;
                view.status_reason = None;
            }
            InitiativeEvent::Cancelled { reason } => {
                view.status = InitiativeStatus::Cancelled;
                view.at_risk = false;
                view.status_reason = Some(reason);
            }
            InitiativeEvent::Implements { opportunity } => {
                if !view.implements.contains(&opportunity) {
                    view.implements.push(opportunity);
                }
            }
            InitiativeEvent::MilestoneAdded {
                name,
                due,
                exit_criteria,
            } => view.milestones.push(MilestoneView {
                name,
                due,
                exit_criteria,
                status: MilestoneStatus::Open,
                signal: None,
                closed_position: None,
            }),
            InitiativeEvent::MilestoneMet { name, signal } => {
                close(&mut view, &name, MilestoneStatus::Met, signal)
            }
            InitiativeEvent::MilestoneMissed { name } => {
                close(&mut view, &name, MilestoneStatus::Missed, None)
            }
        }
        view.stream_version = self.stream_version;
        view.last_position = self.position;
        self.store(view);
        Ok(())
    }
}
