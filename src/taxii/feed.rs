//! A collection's object stream, read from the hub's store (docs/PROTOCOL.md §8.3): the log
//! walked in order, each entry yielding its STIX objects in fixed slots, under the read rule
//! (§2.7) and erasure (§2.8) exactly as Sync applies them: a statement whose body Sync would
//! withhold from the caller, or that is erased, yields nothing, and neither do the lifecycle
//! statements naming it. Synchronous (sled reads, decoding): run it off the async workers.
//!
//! Slots: a hash set or risk signal yields the first version of entry `i` in slot `i`; a
//! retraction yields the version it makes of each entry it names in that entry's slot; an
//! opinion yields the STIX opinion in slot 0 and the version it makes of the entry it judges
//! in slot 1; the genesis yields the project identity (0), the extension definition (1) and
//! its admins' identities (2, 3, …); an admission yields the member's identity in slot 0.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::Value;

use super::stix::{self, Entry, Source, Version};
use super::{Collection, Cursor, MAX_PAGE_BYTES, MAX_SCAN_ENTRIES, Query, TaxiiError, Versions};
use crate::lifecycle::{OpinionRecord, Record, StatementStates, Target};
use crate::membership::{Action, MemberId, Registry};
use crate::statement::{Body, HashSet, Kind, ParsedEnvelope, Reader, RiskSignal, StatementId};
use crate::store::{Store, StoredEntry};

/// One object of a page.
#[derive(Clone, Debug)]
pub struct Found {
    /// Its STIX id.
    pub id: String,
    /// The object.
    pub object: Value,
    /// When the hub added this version (the receipt time of the log entry that made it).
    pub date_added_ms: i64,
    /// Its `modified` (the version).
    pub version_ms: i64,
}

/// One page of a collection.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// The objects, in stream order.
    pub objects: Vec<Found>,
    /// Whether more objects may follow (then `next` says where).
    pub more: bool,
    /// Where the next page starts.
    pub next: Option<Cursor>,
}

const SLOT_PROJECT: u32 = 0;
const SLOT_EXTENSION: u32 = 1;
const SLOT_FIRST_ADMIN: u32 = 2;
const SLOT_OPINION: u32 = 0;
const SLOT_JUDGED: u32 = 1;

/// The page of `collection` that `query` asks for, as `reader` may read it, with expiry
/// decided at `now_ms`. Reads at most [`MAX_SCAN_ENTRIES`] log entries past the start.
pub fn page(
    store: &Store,
    collection: Collection,
    reader: &Reader,
    query: &Query,
    now_ms: i64,
) -> Result<Page, TaxiiError> {
    let size = store.log_size();
    let start = match (query.next, query.added_after) {
        (Some(c), _) if c.seq > size => {
            return Err(TaxiiError::bad_request(format!(
                "next: {c} is beyond this server's log ({size} entries); start again without next"
            )));
        }
        (Some(c), _) => c,
        (None, Some(after)) => Cursor {
            seq: first_added_after(store, after, size)?,
            slot: 0,
        },
        (None, None) => Cursor::START,
    };
    let registry = store.registry();
    let genesis = registry
        .coalition()
        .map(|c| c.genesis_id)
        .ok_or_else(|| internal("this data directory holds no hub"))?;
    let mut walk = Walk {
        store,
        registry,
        genesis,
        collection,
        reader,
        now_ms,
        targets: HashMap::new(),
        sink: Sink {
            query,
            objects: Vec::new(),
            bytes: 0,
            max_bytes: MAX_PAGE_BYTES,
        },
    };
    let end = size.min(start.seq.saturating_add(MAX_SCAN_ENTRIES));
    for entry in store.entries(start.seq, end) {
        let entry = entry.map_err(|e| internal(&e.to_string()))?;
        let seq = entry.seq;
        let from = if seq == start.seq { start.slot } else { 0 };
        if let ControlFlow::Break(slot) = walk.entry(entry, from)? {
            return Ok(Page {
                objects: walk.sink.objects,
                more: true,
                next: Some(Cursor { seq, slot }),
            });
        }
    }
    let more = end < size;
    Ok(Page {
        objects: walk.sink.objects,
        more,
        next: more.then_some(Cursor { seq: end, slot: 0 }),
    })
}

/// [`page`] repeated over the whole log until a page holds an object or the log ends: for
/// lookups by id (an object's id says nothing of where it is), O(log size).
pub fn find(
    store: &Store,
    collection: Collection,
    reader: &Reader,
    query: &Query,
    now_ms: i64,
) -> Result<Page, TaxiiError> {
    let mut q = query.clone();
    loop {
        let found = page(store, collection, reader, &q, now_ms)?;
        if !found.objects.is_empty() || !found.more {
            return Ok(found);
        }
        q.next = found.next;
    }
}

/// The first log position whose receipt time is after `after` (receipt times never decrease
/// along the log: the writer makes each at least the previous one).
fn first_added_after(store: &Store, after: i64, size: u64) -> Result<u64, TaxiiError> {
    let (mut lo, mut hi) = (0u64, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let entry = store
            .entry(mid)
            .map_err(|e| internal(&e.to_string()))?
            .ok_or_else(|| internal("a log entry is missing"))?;
        if entry.received_at_ms > after {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

fn internal(reason: &str) -> TaxiiError {
    TaxiiError::new(
        500,
        "Internal error",
        format!("the hub could not read its log: {reason}; operators: see the hub log"),
    )
}

/// The objects a request wants, gathered up to its limit and its byte budget.
struct Sink<'q> {
    query: &'q Query,
    objects: Vec<Found>,
    /// Serialised bytes of `objects`.
    bytes: usize,
    /// [`MAX_PAGE_BYTES`], lower in tests.
    max_bytes: usize,
}

/// One candidate object's facts, to decide whether the request wants it before building it.
struct Offer<'a> {
    slot: u32,
    kind: &'a str,
    id: String,
    date_added_ms: i64,
    version_ms: i64,
    first: bool,
    last: bool,
}

impl Sink<'_> {
    /// Adds the object `build` makes if the request wants `offer`; `Break(slot)` when the page
    /// is already full (the next page starts at that slot).
    fn offer(
        &mut self,
        offer: Offer<'_>,
        build: impl FnOnce() -> Option<Value>,
    ) -> ControlFlow<u32> {
        let q = self.query;
        if !q.types.is_empty() && !q.types.iter().any(|t| t == offer.kind) {
            return ControlFlow::Continue(());
        }
        if !q.ids.is_empty() && !q.ids.contains(&offer.id) {
            return ControlFlow::Continue(());
        }
        if q.added_after
            .is_some_and(|after| offer.date_added_ms <= after)
        {
            return ControlFlow::Continue(());
        }
        let wanted = match &q.versions {
            Versions::Last => offer.last,
            Versions::First => offer.first,
            Versions::All => true,
            Versions::At(at) => at.contains(&offer.version_ms),
        };
        if !wanted {
            return ControlFlow::Continue(());
        }
        if self.objects.len() >= q.limit {
            return ControlFlow::Break(offer.slot);
        }
        if let Some(object) = build() {
            // The first object always goes; any other only within the page's byte budget
            // (the next page starts with it).
            let size = serde_json::to_vec(&object).map_or(0, |v| v.len());
            if !self.objects.is_empty() && self.bytes.saturating_add(size) > self.max_bytes {
                return ControlFlow::Break(offer.slot);
            }
            self.bytes = self.bytes.saturating_add(size);
            self.objects.push(Found {
                id: offer.id,
                object,
                date_added_ms: offer.date_added_ms,
                version_ms: offer.version_ms,
            });
        }
        ControlFlow::Continue(())
    }
}

/// A hash set or risk signal of the collection that the caller may read: its entries and
/// what the lifecycle says of them.
struct View {
    id: StatementId,
    seq: u64,
    received_at_ms: i64,
    issuer: MemberId,
    issued_at_ms: i64,
    content: Content,
    states: StatementStates,
    compromised: bool,
    expired: bool,
    retractions: Vec<Arc<Record>>,
    opinions: Vec<Arc<OpinionRecord>>,
}

enum Content {
    Hashes(HashSet),
    Signal(RiskSignal),
}

/// One version of an entry: where in the log it was made.
#[derive(Clone, Copy, Debug)]
struct Made {
    seq: u64,
    date_added_ms: i64,
    modified_ms: i64,
    revoked: bool,
}

impl View {
    fn count(&self) -> u32 {
        let n = match &self.content {
            Content::Hashes(h) => h.entries.len(),
            Content::Signal(s) => s.indicators.len(),
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn entry(&self, index: u32) -> Option<Entry<'_>> {
        let i = usize::try_from(index).ok()?;
        Some(match &self.content {
            Content::Hashes(h) => Entry::Hash {
                description: &h.description,
                hash: h.entries.get(i)?,
                expires_at_ms: h.expires_at_ms,
            },
            Content::Signal(s) => Entry::Signal {
                signal: s,
                indicator: s.indicators.get(i)?,
            },
        })
    }

    /// Every version of entry `index`, oldest first: the statement's own, then one per
    /// lifecycle statement naming the entry (a retraction that applies to it, an opinion on
    /// it), none after the version that revokes it.
    fn versions(&self, index: u32) -> Vec<Made> {
        let mut out = vec![Made {
            seq: self.seq,
            date_added_ms: self.received_at_ms,
            modified_ms: self.issued_at_ms,
            revoked: false,
        }];
        if self.retractions.is_empty() && self.opinions.is_empty() {
            return out;
        }
        let retracted = self.states.retracted.all || self.states.retracted.entries.contains(&index);
        let mut changes: Vec<(u64, i64, bool)> = Vec::new();
        if retracted {
            for r in &self.retractions {
                let names =
                    r.retraction.entries.is_empty() || r.retraction.entries.contains(&index);
                if r.position.seq > self.seq && !r.retraction.erase && names {
                    changes.push((r.position.seq, r.position.received_at_ms, true));
                }
            }
        }
        for o in &self.opinions {
            if !o.is_seen_track() && o.opinion.entry == index && o.position.seq > self.seq {
                changes.push((o.position.seq, o.position.received_at_ms, false));
            }
        }
        changes.sort_unstable();
        for (seq, received, revoking) in changes {
            let Some(previous) = out.last().copied() else {
                break;
            };
            if previous.revoked {
                break;
            }
            out.push(Made {
                seq,
                date_added_ms: received,
                modified_ms: received.max(previous.modified_ms + 1),
                revoked: revoking,
            });
        }
        out
    }
}

struct Walk<'a> {
    store: &'a Store,
    registry: Arc<Registry>,
    genesis: StatementId,
    collection: Collection,
    reader: &'a Reader,
    now_ms: i64,
    /// Statements lifecycle entries named, read once per request (`None`: nothing to show).
    targets: HashMap<StatementId, Option<Arc<View>>>,
    sink: Sink<'a>,
}

impl Walk<'_> {
    /// Offers the objects `entry` yields from slot `from` on.
    fn entry(&mut self, entry: StoredEntry, from: u32) -> Result<ControlFlow<u32>, TaxiiError> {
        let Some(header) = entry.header() else {
            // A newer protocol version's statement: nothing this server can map.
            return Ok(ControlFlow::Continue(()));
        };
        match header.kind {
            Kind::HashSet | Kind::RiskSignal => {
                let Some(view) = self.view(entry) else {
                    return Ok(ControlFlow::Continue(()));
                };
                for index in from..view.count() {
                    let versions = view.versions(index);
                    if let ControlFlow::Break(slot) = self.offer_version(&view, index, &versions, 0)
                    {
                        return Ok(ControlFlow::Break(slot));
                    }
                }
                Ok(ControlFlow::Continue(()))
            }
            Kind::Genesis | Kind::Membership => Ok(self.identities(entry, from)),
            Kind::Retraction | Kind::Opinion => self.lifecycle(entry, from),
            Kind::Settings => Ok(ControlFlow::Continue(())),
        }
    }

    /// Offers version `k` of entry `index` of `view`.
    fn offer_version(
        &mut self,
        view: &View,
        index: u32,
        versions: &[Made],
        k: usize,
    ) -> ControlFlow<u32> {
        let Some(made) = versions.get(k).copied() else {
            return ControlFlow::Continue(());
        };
        let last = k + 1 == versions.len();
        let offer = Offer {
            slot: index,
            kind: "indicator",
            id: stix::indicator_id(&view.id, index),
            date_added_ms: made.date_added_ms,
            version_ms: made.modified_ms,
            first: k == 0,
            last,
        };
        let (genesis, now_state) = (
            &self.genesis,
            last.then(|| {
                view.states
                    .state(index)
                    .with(view.compromised, view.expired)
            }),
        );
        self.sink.offer(offer, || {
            let source = Source {
                genesis,
                statement: &view.id,
                seq: view.seq,
                issuer: &view.issuer,
                issued_at_ms: view.issued_at_ms,
            };
            let version = Version {
                modified_ms: made.modified_ms,
                revoked: made.revoked,
                state: now_state,
            };
            Some(stix::indicator(
                &source,
                index,
                &view.entry(index)?,
                &version,
            ))
        })
    }

    /// The view of a hash set or risk signal of this collection, if the caller may read it
    /// (as Sync decides: the read rule and erasure) and its body is held.
    fn view(&self, entry: StoredEntry) -> Option<View> {
        let header = entry.header()?;
        let ours = matches!(
            (self.collection, header.kind),
            (Collection::HashSets, Kind::HashSet) | (Collection::RiskSignals, Kind::RiskSignal)
        );
        let registry = &self.registry;
        if !ours
            || entry.erased_by(registry).is_some()
            || !entry.readable_by(&header, self.reader, registry)
        {
            return None;
        }
        let id = entry.id().ok()?;
        let issuer = entry.issuer_here(&header.issuer, registry);
        let key_received = entry
            .relay
            .as_ref()
            .map_or(entry.received_at_ms, |r| r.origin_received_at_ms);
        let (seq, received_at_ms) = (entry.seq, entry.received_at_ms);
        let statement = ParsedEnvelope::parse(entry.envelope?).ok()?.statement?;
        let (content, expires) = match statement.body {
            Body::HashSet(h) => {
                let expires = h.expires_at_ms;
                (Content::Hashes(h), expires)
            }
            Body::RiskSignal(s) => {
                let expires = s.expires_at_ms;
                (Content::Signal(s), expires)
            }
            _ => return None,
        };
        let target = Target {
            id,
            seq,
            issuer: &issuer,
            kind: header.kind,
        };
        let states = registry.states(&target);
        let life = registry.lifecycle();
        Some(View {
            id,
            seq,
            received_at_ms,
            issued_at_ms: header.issued_at_ms,
            compromised: registry.is_compromised_for(&issuer, &header.key_id, key_received),
            expired: crate::lifecycle::expiry::expired(expires, self.now_ms),
            issuer,
            content,
            states,
            retractions: life.retractions_of(&id).to_vec(),
            opinions: life.opinions_of(&id).to_vec(),
        })
    }

    /// The view of statement `id`, read once per request.
    fn target(&mut self, id: &StatementId) -> Result<Option<Arc<View>>, TaxiiError> {
        if let Some(known) = self.targets.get(id) {
            return Ok(known.clone());
        }
        let entry = self
            .store
            .entry_by_id(id)
            .map_err(|e| internal(&e.to_string()))?;
        let view = entry.and_then(|e| self.view(e)).map(Arc::new);
        self.targets.insert(*id, view.clone());
        Ok(view)
    }

    /// The versions a retraction makes, or the opinion and the version it makes.
    fn lifecycle(&mut self, entry: StoredEntry, from: u32) -> Result<ControlFlow<u32>, TaxiiError> {
        let (seq, received_at_ms) = (entry.seq, entry.received_at_ms);
        let Ok(statement_id) = entry.id() else {
            return Ok(ControlFlow::Continue(()));
        };
        let Some(parsed) = entry.envelope.and_then(|e| ParsedEnvelope::parse(e).ok()) else {
            return Ok(ControlFlow::Continue(()));
        };
        // A restricted lifecycle statement (a `seen` opinion) shows only to its readers.
        if !parsed.header.readable_by(self.reader) {
            return Ok(ControlFlow::Continue(()));
        }
        let issued_at_ms = parsed.header.issued_at_ms;
        match parsed.statement.map(|s| s.body) {
            Some(Body::Retraction(r)) => {
                let life = self.registry.lifecycle();
                if !life
                    .retractions_of(&r.target)
                    .iter()
                    .any(|x| x.id == statement_id)
                {
                    return Ok(ControlFlow::Continue(()));
                }
                let Some(view) = self.target(&r.target)? else {
                    return Ok(ControlFlow::Continue(()));
                };
                let named: Vec<u32> = if r.entries.is_empty() {
                    (0..view.count()).collect()
                } else {
                    let mut e = r.entries.clone();
                    e.sort_unstable();
                    e.dedup();
                    e
                };
                for index in named.into_iter().filter(|i| *i >= from) {
                    let versions = view.versions(index);
                    if let Some(k) = versions.iter().position(|m| m.seq == seq)
                        && let ControlFlow::Break(slot) =
                            self.offer_version(&view, index, &versions, k)
                    {
                        return Ok(ControlFlow::Break(slot));
                    }
                }
                Ok(ControlFlow::Continue(()))
            }
            Some(Body::Opinion(o)) => {
                let life = self.registry.lifecycle();
                let Some(record) = life
                    .opinions_of(&o.target)
                    .iter()
                    .find(|x| x.id == statement_id)
                    .cloned()
                else {
                    return Ok(ControlFlow::Continue(()));
                };
                let Some(view) = self.target(&o.target)? else {
                    return Ok(ControlFlow::Continue(()));
                };
                if from == SLOT_OPINION && record.readable_by(self.reader) {
                    let offer = Offer {
                        slot: SLOT_OPINION,
                        kind: "opinion",
                        id: stix::opinion_id(&statement_id),
                        date_added_ms: received_at_ms,
                        version_ms: issued_at_ms,
                        first: true,
                        last: true,
                    };
                    let genesis = &self.genesis;
                    let flow = self.sink.offer(offer, || {
                        let source = Source {
                            genesis,
                            statement: &statement_id,
                            seq,
                            issuer: &record.issuer,
                            issued_at_ms,
                        };
                        stix::opinion(&source, o.verdict, &o.note, &o.target, o.entry)
                    });
                    if flow.is_break() {
                        return Ok(flow);
                    }
                }
                if from <= SLOT_JUDGED {
                    let versions = view.versions(o.entry);
                    if let Some(k) = versions.iter().position(|m| m.seq == seq)
                        && let ControlFlow::Break(_) =
                            self.offer_version(&view, o.entry, &versions, k)
                    {
                        return Ok(ControlFlow::Break(SLOT_JUDGED));
                    }
                }
                Ok(ControlFlow::Continue(()))
            }
            _ => Ok(ControlFlow::Continue(())),
        }
    }

    /// The identities (and, at the genesis, the extension definition) an entry yields.
    fn identities(&mut self, entry: StoredEntry, from: u32) -> ControlFlow<u32> {
        let received_at_ms = entry.received_at_ms;
        let Some(statement) = entry
            .envelope
            .and_then(|e| ParsedEnvelope::parse(e).ok())
            .and_then(|p| p.statement)
        else {
            return ControlFlow::Continue(());
        };
        let mut admitted = Vec::new();
        match statement.body {
            Body::Genesis(g) => {
                let fixed = [
                    (SLOT_PROJECT, "identity", stix::project_identity()),
                    (
                        SLOT_EXTENSION,
                        "extension-definition",
                        stix::extension_definition(),
                    ),
                ];
                for (slot, kind, object) in fixed {
                    if slot < from {
                        continue;
                    }
                    let id = object["id"].as_str().unwrap_or_default().to_owned();
                    let offer = Offer {
                        slot,
                        kind,
                        id,
                        date_added_ms: received_at_ms,
                        version_ms: super::parse_timestamp(
                            object["modified"].as_str().unwrap_or_default(),
                            "modified",
                        )
                        .unwrap_or(0),
                        first: true,
                        last: true,
                    };
                    self.sink.offer(offer, || Some(object))?;
                }
                admitted.extend(
                    g.admins
                        .into_iter()
                        .enumerate()
                        .map(|(k, a)| (SLOT_FIRST_ADMIN + k as u32, a)),
                );
            }
            Body::Membership(change) => {
                if let Action::Admit(a) = change.action {
                    admitted.push((0, a));
                }
            }
            _ => {}
        }
        for (slot, admission) in admitted.into_iter().filter(|(s, _)| *s >= from) {
            let offer = Offer {
                slot,
                kind: "identity",
                id: stix::identity_id(&self.genesis, &admission.id),
                date_added_ms: received_at_ms,
                version_ms: received_at_ms,
                first: true,
                last: true,
            };
            let genesis = &self.genesis;
            self.sink.offer(offer, || {
                Some(stix::member_identity(
                    genesis,
                    &admission.id,
                    &admission.display_name,
                    received_at_ms,
                ))
            })?;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(slot: u32) -> Offer<'static> {
        Offer {
            slot,
            kind: "indicator",
            id: format!("indicator--{slot}"),
            date_added_ms: 1,
            version_ms: 1,
            first: true,
            last: true,
        }
    }

    #[test]
    fn a_page_closes_at_its_byte_budget_but_always_carries_one_object() {
        let query = Query::default();
        let mut sink = Sink {
            query: &query,
            objects: Vec::new(),
            bytes: 0,
            max_bytes: 100,
        };
        let big = || Some(serde_json::json!({ "pattern": "x".repeat(150) }));
        let small = || Some(serde_json::json!({ "pattern": "x" }));
        // Larger than the budget alone: still sent, as the only object.
        assert_eq!(sink.offer(offer(0), big), ControlFlow::Continue(()));
        assert_eq!(sink.offer(offer(1), small), ControlFlow::Break(1));
        assert_eq!(sink.objects.len(), 1);
        // Small objects fill a fresh page up to the budget, then the page closes.
        let mut sink = Sink {
            query: &query,
            objects: Vec::new(),
            bytes: 0,
            max_bytes: 100,
        };
        let mut slot = 0;
        while sink.offer(offer(slot), small) == ControlFlow::Continue(()) {
            slot += 1;
        }
        let per_object = serde_json::to_vec(&serde_json::json!({ "pattern": "x" }))
            .map(|v| v.len())
            .unwrap_or(1);
        assert_eq!(sink.objects.len(), 100 / per_object);
        assert!(sink.bytes <= 100);
    }
}
