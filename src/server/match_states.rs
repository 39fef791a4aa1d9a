//! The lifecycle state of the entries a Match hits (docs/PROTOCOL.md §4.3, §5 `Match`): which
//! states a request wants, and per Match worker a cache of each hit statement's states, read
//! once per statement and shared between calls ([`SharedStates`]) while the registry they were
//! decided under is current. Only statements a retraction or opinion names are looked at; the others
//! are active with empty tallies. A statement the lifecycle names is read from the store to map
//! its hashes to its entries (a risk signal's hash indicators are not its first entries) unless
//! a whole-statement retraction decides it from the matching index's provenance alone.

use crate::lifecycle::{EntryState, HashKey, Opinions, StatementStates, Tally, Target};
use crate::matching::Provenance;
use crate::membership::Registry;
use crate::pb;
use crate::statement::{Kind, ParsedEnvelope, StatementId};
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
    /// The opinions on it.
    pub opinions: Opinions,
}

/// What a worker knows of a statement the lifecycle names.
enum Known {
    /// Erased (§2.8): never returned, whatever is asked for.
    Erased,
    /// Retracted whole.
    Retracted,
    /// The stored statement could not be read: its hashes stay (the indexer reports a damaged
    /// store). Never shared, so a later call reads it again.
    Unreadable,
    /// Per entry; `entries` maps a hash index to its entry (empty: the same index).
    Entries {
        states: StatementStates,
        entries: Vec<u32>,
    },
}

impl Known {
    /// Entries held, for [`MAX_SHARED_ENTRIES`].
    fn size(&self) -> usize {
        match self {
            Known::Erased | Known::Retracted | Known::Unreadable => 1,
            Known::Entries { states, entries } => {
                1 + entries.len() + states.retracted.entries.len() + states.opinions.len()
            }
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

    /// The state of hash `index` of `source`, whose statement expires at `expires_at`.
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
                let key = store
                    .entry(source.seq)
                    .ok()
                    .flatten()
                    .and_then(|e| e.envelope)
                    .and_then(|mut e| {
                        // The header names the signing key: the body is not needed.
                        e.body.clear();
                        ParsedEnvelope::parse(e).ok()
                    })
                    .map(|p| p.header.key_id);
                // Unreadable: the indexer reports a damaged store; the hash stays.
                key.is_some_and(|k| registry.is_compromised(&k, source.received_at_ms))
            })
    }

    /// The state the lifecycle statements decide for hash `index` of `source`.
    fn by_lifecycle(&mut self, source: &Provenance, index: u32) -> HitState {
        let life = self.registry.lifecycle();
        let plain = HitState {
            state: EntryState::Active,
            opinions: Opinions::default(),
        };
        if life.is_empty() || !life.names(&source.statement_id) {
            return plain;
        }
        let (registry, store) = (self.registry, self.store);
        let (current, shared) = (self.current, self.shared);
        let known = self.cache.entry(source.statement_id).or_insert_with(|| {
            shared
                .get(current, &source.statement_id)
                .unwrap_or_else(|| {
                    let known = Arc::new(load(registry, store, source));
                    if !matches!(known.as_ref(), Known::Unreadable) {
                        shared.put(current, source.statement_id, &known);
                    }
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
            Known::Unreadable => plain,
            Known::Entries { states, entries } => {
                let entry = entries.get(index as usize).copied().unwrap_or(index);
                HitState {
                    state: states.state(entry),
                    opinions: states.opinions(entry),
                }
            }
        }
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

/// Reads what the lifecycle says of `source`: a whole retraction from the provenance alone;
/// anything finer from the stored statement.
fn load(registry: &Registry, store: &Store, source: &Provenance) -> Known {
    // Only hash sets and risk signals are indexed; both have entries.
    let indexed = Target {
        id: source.statement_id,
        seq: source.seq,
        issuer: &source.issuer,
        kind: Kind::HashSet,
    };
    let retracted = registry.retracted(&indexed);
    if retracted.erased_by.is_some() {
        return Known::Erased;
    }
    if retracted.all {
        return Known::Retracted;
    }
    let stored = store
        .entry(source.seq)
        .ok()
        .flatten()
        .and_then(|e| e.envelope)
        .and_then(|e| ParsedEnvelope::parse(e).ok())
        .and_then(|p| p.statement);
    let Some(statement) = stored else {
        return Known::Unreadable;
    };
    let target = Target {
        id: source.statement_id,
        seq: source.seq,
        issuer: &statement.issuer,
        kind: statement.kind(),
    };
    let states = registry.states(&target);
    if states.retracted.all {
        return Known::Retracted;
    }
    Known::Entries {
        states,
        entries: crate::lifecycle::hash_entries(&statement.body),
    }
}

/// The wire state and tallies of a hit.
pub fn annotate(m: &mut pb::HashMatch, hit: HitState, hash_tally: Tally) {
    m.state = hit.state.to_wire() as i32;
    m.entry_tally = Some(hit.opinions.tally.to_wire());
    m.hash_tally = Some(hash_tally.to_wire());
}
