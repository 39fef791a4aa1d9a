//! The lifecycle state of the entries a Match hits (docs/PROTOCOL.md §4.3, §5 `Match`): which
//! states a request wants, and per Match worker a cache of each hit statement's states, read
//! once per statement and shared between calls ([`SharedStates`]) while the registry they were
//! decided under is current. Only statements a retraction or opinion names are looked at; the others
//! are active with empty tallies. The matching index gives each hit its entry index (a risk
//! signal's indicator, [`Provenance::entry`]), so states are decided from its provenance alone.
//! `seen` counts depend on the caller (the read rule, docs/PROTOCOL.md §2.7 "Seen"): they are
//! decided per hit for the caller and never shared.

use crate::lifecycle::{EntryState, HashKey, Opinions, StatementStates, Tally, Target};
use crate::matching::Provenance;
use crate::membership::Registry;
use crate::pb;
use crate::statement::{Kind, ParsedEnvelope, Reader, StatementId};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::Status;

/// Most statements whose states [`SharedStates`] keeps.
pub const MAX_SHARED_STATEMENTS: usize = 4096;
/// Most entries (retracted, mapped or named by opinions, summed over its statements)
/// [`SharedStates`] keeps; a statement alone above it is never kept.
pub const MAX_SHARED_ENTRIES: usize = 4_000_000;

/// Most states a `MatchRequest.states` may list (each state once).
pub const MAX_STATES: usize = EntryState::ALL.len();

/// The states a request wants: `MatchRequest.states`, or the matching ones when empty.
pub fn wanted(states: &[i32]) -> Result<Vec<EntryState>, Status> {
    if states.is_empty() {
        return Ok(EntryState::MATCHING.to_vec());
    }
    if states.len() > MAX_STATES {
        return Err(Status::invalid_argument(format!(
            "states: at most {MAX_STATES} (each state once), got {}",
            states.len()
        )));
    }
    let mut out = Vec::with_capacity(states.len());
    for (i, value) in states.iter().enumerate() {
        let state = EntryState::from_wire(*value).ok_or_else(|| {
            Status::invalid_argument(format!(
                "states[{i}]: unknown or unspecified entry state {value} (expected {})",
                EntryState::ALL
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if out.contains(&state) {
            return Err(Status::invalid_argument(format!(
                "states[{i}]: {} is listed twice; list each state once",
                state.name()
            )));
        }
        out.push(state);
    }
    Ok(out)
}

/// The state of one hit and the opinions on its entry.
#[derive(Clone, Copy, Debug)]
pub struct HitState {
    /// The entry's state.
    pub state: EntryState,
    /// The opinions on it (`tally.seen`: the `seen` opinions the caller may read).
    pub opinions: Opinions,
}

/// What a worker knows of a statement the lifecycle names.
enum Known {
    /// Erased (§2.8): never returned, whatever is asked for.
    Erased,
    /// Retracted whole.
    Retracted,
    /// Per entry.
    Entries(StatementStates),
}

impl Known {
    /// Entries held, for [`MAX_SHARED_ENTRIES`].
    fn size(&self) -> usize {
        match self {
            Known::Erased | Known::Retracted => 1,
            Known::Entries(states) => 1 + states.retracted.entries.len() + states.opinions.len(),
        }
    }
}

/// The states of the statements earlier Match calls looked at, shared by every call as long as
/// the registry they were decided under is the store's current one: any membership, settings
/// or lifecycle statement publishes a new registry (a new `Arc`), which empties it. Without it,
/// each call would read and decode again every statement a retraction or opinion names that it
/// hits (a 100,000-entry set is megabytes). Bounded by [`MAX_SHARED_STATEMENTS`] and
/// [`MAX_SHARED_ENTRIES`]: once full it is emptied and refills.
#[derive(Default)]
pub struct SharedStates(Mutex<Shared>);

#[derive(Default)]
struct Shared {
    registry: Option<Arc<Registry>>,
    known: HashMap<StatementId, Arc<Known>>,
    entries: usize,
}

impl SharedStates {
    fn get(&self, registry: &Arc<Registry>, id: &StatementId) -> Option<Arc<Known>> {
        let shared = self.0.lock().ok()?;
        match &shared.registry {
            Some(r) if Arc::ptr_eq(r, registry) => shared.known.get(id).cloned(),
            _ => None,
        }
    }

    fn put(&self, registry: &Arc<Registry>, id: StatementId, known: &Arc<Known>) {
        let size = known.size();
        if size > MAX_SHARED_ENTRIES {
            return;
        }
        let Ok(mut shared) = self.0.lock() else {
            return;
        };
        let current = shared
            .registry
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, registry));
        if !current
            || shared.known.len() >= MAX_SHARED_STATEMENTS
            || shared.entries + size > MAX_SHARED_ENTRIES
        {
            *shared = Shared {
                registry: Some(registry.clone()),
                ..Shared::default()
            };
        }
        shared.entries += size;
        shared.known.insert(id, known.clone());
    }
}

/// Per Match worker: the states of the statements hit so far.
pub struct MatchStates<'a> {
    registry: &'a Registry,
    current: &'a Arc<Registry>,
    shared: &'a SharedStates,
    store: &'a Store,
    /// The clock expiry is decided against (the call's arrival).
    now_ms: i64,
    cache: HashMap<StatementId, Arc<Known>>,
    /// Statements at risk of a compromise (see [`MatchStates::compromised`]), decided.
    compromised: HashMap<StatementId, bool>,
}

impl<'a> MatchStates<'a> {
    /// An empty cache reading `registry` (the lifecycle and membership as of the call, the
    /// store's current one) and `store`, deciding expiry at `now_ms`, sharing what it reads
    /// through `shared`.
    pub fn new(
        registry: &'a Arc<Registry>,
        store: &'a Store,
        now_ms: i64,
        shared: &'a SharedStates,
    ) -> Self {
        MatchStates {
            registry,
            current: registry,
            shared,
            store,
            now_ms,
            cache: HashMap::new(),
            compromised: HashMap::new(),
        }
    }

    /// The state of entry `index` of `source`, whose statement expires at `expires_at`.
    pub fn of(&mut self, source: &Provenance, index: u32, expires_at: Option<i64>) -> HitState {
        let mut hit = self.by_lifecycle(source, index);
        let expired = crate::lifecycle::expiry::expired(expires_at, self.now_ms);
        hit.state = hit.state.with(self.compromised(source), expired);
        hit
    }

    /// Whether `source` was signed with a key declared compromised from a time at or before
    /// the hub received it. Only statements of an issuer with a compromised key, received at
    /// or after its earliest compromise time, are read from the store (for their signing
    /// key), once per statement.
    fn compromised(&mut self, source: &Provenance) -> bool {
        let Some(since) = self.registry.compromised_since(&source.issuer) else {
            return false;
        };
        if source.received_at_ms < since {
            return false;
        }
        let (registry, store) = (self.registry, self.store);
        *self
            .compromised
            .entry(source.statement_id)
            .or_insert_with(|| {
                let Some(entry) = store.entry(source.seq).ok().flatten() else {
                    return false;
                };
                // A relayed statement's key is judged at its origin's receipt time
                // (docs/PROTOCOL.md §3.10), by its origin's membership.
                let received = entry
                    .relay
                    .as_ref()
                    .map_or(source.received_at_ms, |r| r.origin_received_at_ms);
                let key = entry
                    .envelope
                    .and_then(|mut e| {
                        // The header names the signing key: the body is not needed.
                        e.body.clear();
                        ParsedEnvelope::parse(e).ok()
                    })
                    .map(|p| p.header.key_id);
                // Unreadable: the indexer reports a damaged store; the hash stays.
                key.is_some_and(|k| registry.is_compromised_for(&source.issuer, &k, received))
            })
    }

    /// The state the lifecycle statements decide for entry `index` of `source`.
    fn by_lifecycle(&mut self, source: &Provenance, index: u32) -> HitState {
        let life = self.registry.lifecycle();
        let plain = HitState {
            state: EntryState::Active,
            opinions: Opinions::default(),
        };
        if life.is_empty() || !life.names(&source.statement_id) {
            return plain;
        }
        let registry = self.registry;
        let (current, shared) = (self.current, self.shared);
        let known = self.cache.entry(source.statement_id).or_insert_with(|| {
            shared
                .get(current, &source.statement_id)
                .unwrap_or_else(|| {
                    let known = Arc::new(load(registry, source));
                    shared.put(current, source.statement_id, &known);
                    known
                })
        });
        match known.as_ref() {
            Known::Erased => HitState {
                state: EntryState::Erased,
                opinions: Opinions::default(),
            },
            Known::Retracted => HitState {
                state: EntryState::Retracted,
                opinions: Opinions::default(),
            },
            Known::Entries(states) => HitState {
                state: states.state(index),
                opinions: states.opinions(index),
            },
        }
    }

    /// The `seen` counts `reader` may read: on entry `index` of `source`, and on `hash` across
    /// every statement sharing it (docs/PROTOCOL.md §2.7 "Seen").
    pub fn seen(
        &self,
        source: &Provenance,
        index: u32,
        hash: &HashKey,
        reader: &Reader,
    ) -> (u32, u32) {
        (
            self.registry.seen(&indexed(source), index, reader),
            self.registry.hash_seen(hash, &source.issuer, reader),
        )
    }

    /// Whether hash `index` of `source` is in one of the `wanted` states (counting the hits
    /// left out).
    pub fn keeps(
        &mut self,
        source: &Provenance,
        index: u32,
        expires_at: Option<i64>,
        wanted: &[EntryState],
    ) -> bool {
        let state = self.of(source, index, expires_at).state;
        // An erased entry's hashes are its body: never handed out, even on request.
        let keeps = state != EntryState::Erased && wanted.contains(&state);
        if !keeps {
            match state {
                EntryState::Retracted => {
                    metrics::counter!("coalition_match_retracted_hits_total").increment(1)
                }
                other => metrics::counter!(
                    "coalition_match_state_filtered_hits_total",
                    "state" => other.name()
                )
                .increment(1),
            }
        }
        keeps
    }

    /// The tally of a matched hash value across every statement sharing it, for an entry of
    /// `source`'s issuer.
    pub fn hash_tally(&self, source: &Provenance, hash: HashKey) -> Tally {
        self.registry.hash_tally(&hash, &source.issuer)
    }
}

/// An indexed statement as a lifecycle target. Only hash sets and risk signals are indexed;
/// the rules treat both alike (both have entries), so the provenance is enough.
fn indexed(source: &Provenance) -> Target<'_> {
    Target {
        id: source.statement_id,
        seq: source.seq,
        issuer: &source.issuer,
        kind: Kind::HashSet,
    }
}

/// What the lifecycle says of `source`, from its provenance alone.
fn load(registry: &Registry, source: &Provenance) -> Known {
    let states = registry.states(&indexed(source));
    if states.retracted.erased_by.is_some() {
        return Known::Erased;
    }
    if states.retracted.all {
        return Known::Retracted;
    }
    Known::Entries(states)
}

/// The wire state, tallies and `seen` counts (`(entry, hash)`, for the caller) of a hit.
pub fn annotate(m: &mut pb::HashMatch, hit: HitState, hash_tally: Tally, seen: (u32, u32)) {
    m.state = hit.state.to_wire() as i32;
    m.entry_tally = Some(hit.opinions.tally.to_wire());
    m.hash_tally = Some(hash_tally.to_wire());
    (m.entry_seen, m.hash_seen) = seen;
}
