//! Peering (docs/PROTOCOL.md §3.10): one peer hub's own statements pulled through its
//! `Federation` service and relayed into the local log, batch by batch, each proven by the
//! peer's signed checkpoint before the writer logs it.
//!
//! The cursor is the local replica's rebuild of the peer's log (its size: every leaf of the
//! peer's log up to there is known here), which the store persists with every relayed
//! group; leaves the peer itself relayed from elsewhere become gap leaves, carried with the
//! next statement the peer logged itself. Nothing a peer says is believed: the writer's
//! replica judges every relayed statement by the peer's own membership at its position and
//! its signed checkpoints, and a refusal writes nothing.

use super::source::{Api, MAX_BATCH_ENTRIES, Source};
use super::{FollowError, Onward, OriginView, Relayer, Round};
use crate::pki::TlsConfig;
use crate::replica::{ConsistencyNeed, OriginCheckpoint};
use crate::statement::StatementId;
use crate::store::{Store, StoreError};

/// A peer hub: where it is, as whom to call it, and which hub it must be.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Its address (`host:port`).
    pub addr: String,
    /// TLS material of the identity to call it with (a member holding the `peer` role there).
    pub tls: TlsConfig,
    /// Its genesis statement id: a trusted origin of this hub's settings.
    pub genesis: StatementId,
}

/// Where a peer's relay stands (for `coalition federation status`, `/healthz` and metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's entries rebuilt here (statements relayed and gap leaves): the cursor.
    pub relayed_to: u64,
    /// The size of the peer's latest checkpoint seen.
    pub peer_size: u64,
    /// When (ms since the Unix epoch) that checkpoint was last read.
    pub seen_at_ms: i64,
    /// The size of the peer's largest checkpoint accepted here.
    pub proven_to: u64,
    /// Statements relayed since start.
    pub statements: u64,
    /// Batches refused from this peer since start.
    pub refusals: u64,
}

/// Relays one peer's statements into the local store.
pub struct Puller {
    store: Store,
    peer: Peer,
    source: Source,
    /// The relayer continuing from the last round, with the gap leaves it holds.
    relayer: Option<Relayer>,
    status: PeerStatus,
}

impl Puller {
    /// A puller of `peer` into `store`.
    pub fn new(store: Store, peer: Peer) -> Self {
        let source = Source::new(peer.addr.clone(), peer.tls.clone(), Api::Federation);
        Puller {
            store,
            peer,
            source,
            relayer: None,
            status: PeerStatus::default(),
        }
    }

    /// The peer.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Where it stands.
    pub fn status(&self) -> &PeerStatus {
        &self.status
    }

    /// One round: the peer's latest checkpoint, then at most one batch of its entries beyond
    /// the cursor, relayed with that checkpoint as evidence and logged as one group.
    pub async fn round(&mut self) -> Result<Round, FollowError> {
        let result = self.round_inner().await;
        self.source.account(&result, &mut self.status.refusals);
        result
    }

    /// Hands a relayed batch to the writer; a refusal is the peer's.
    async fn write(&mut self, batch: Vec<crate::pb::SyncEntry>) -> Result<(), FollowError> {
        match self.store.relay(batch).await {
            Ok(_) => Ok(()),
            Err(StoreError::Rejected(e)) => Err(self.source.refused(e)),
            Err(e) => Err(e.into()),
        }
    }

    async fn round_inner(&mut self) -> Result<Round, FollowError> {
        let registry = self.store.registry();
        let federation = registry
            .coalition()
            .map(|c| c.settings.federation.clone())
            .unwrap_or_default();
        let own = registry.coalition().map(|c| c.genesis_id);
        let trusted = federation.may_relay(&self.peer.genesis, &self.peer.genesis);
        if !trusted {
            return Err(self.source.unavailable(format!(
                "this hub's settings do not trust the hub of genesis {} as an origin: an admin quorum adds it with `coalition admin settings federation`",
                self.peer.genesis
            )));
        }
        let note = self.source.latest_note().await?;
        let latest =
            crate::replica::note_size(&note).map_err(|reason| self.source.refused_text(reason))?;
        self.status.peer_size = latest;
        self.status.seen_at_ms = crate::store::now_ms();
        let behind = |anchor: u64| {
            self.source.unavailable(format!(
                "its latest checkpoint covers {latest} entries, but one of {anchor} was accepted here: the peer is behind (or serving an old copy)"
            ))
        };
        // An idle poll: nothing beyond where the relayer stands, so no copy of the writer's
        // replica is taken (`proven_to` is the anchor as of the last round that took one).
        if let Some(r) = &self.relayer
            && latest <= r.next()
        {
            if latest < self.status.proven_to {
                return Err(behind(self.status.proven_to));
            }
            self.status.relayed_to = r.next();
            return Ok(Round::CaughtUp);
        }
        let replica = self.store.replica().await?;
        let (size, anchor) = replica
            .origins()
            .find(|(g, _, _)| **g == self.peer.genesis)
            .map_or((0, 0), |(_, _, r)| {
                (r.size(), r.checkpoint().map_or(0, |(s, _)| s))
            });
        self.status.proven_to = anchor;
        let mut relayer = match self.relayer.take() {
            Some(r) if r.resumes(size) => r,
            _ => match replica.registry().coalition() {
                Some(c) => Relayer::new(self.peer.genesis, size).for_hub(&c.hub_name),
                None => Relayer::new(self.peer.genesis, size),
            },
        };
        let from = relayer.next();
        self.status.relayed_to = from;
        if latest < anchor {
            return Err(behind(anchor));
        }
        if latest <= from {
            self.relayer = Some(relayer);
            return Ok(Round::CaughtUp);
        }
        let to = latest.min(from + MAX_BATCH_ENTRIES);
        let mut entries = self.source.entries(from, to).await?;
        // What the peer relayed from other origins it may relay here goes on too (chains and
        // rings); the peer's own relays of this hub, or of origins it may not relay here,
        // only fill its leaves.
        let onward_of = |e: &crate::pb::SyncEntry| {
            let origin = e
                .relay
                .as_ref()
                .and_then(|r| crate::statement::StatementId::from_slice(&r.origin_genesis))?;
            (Some(origin) != own
                && origin != self.peer.genesis
                && federation.may_relay(&self.peer.genesis, &origin))
            .then_some(origin)
        };
        // A batch cut short by its bounds ends where every origin relayed onward is proven
        // (the peer ends each relayed group with the origin's checkpoint).
        if (entries.len() as u64) < latest - from {
            let mut pending = std::collections::HashSet::new();
            let mut safe = 0;
            for (i, e) in entries.iter().enumerate() {
                if let Some(origin) = onward_of(e) {
                    if e.relay.as_ref().is_some_and(|r| r.checkpoint.is_some()) {
                        pending.remove(&origin);
                    } else {
                        pending.insert(origin);
                    }
                }
                if pending.is_empty() {
                    safe = i + 1;
                }
            }
            if safe > 0 {
                entries.truncate(safe);
            }
        }
        let mut onward = Onward::new(replica.origins().map(|(g, _, r)| (*g, OriginView::of(r))));
        let mut batch = Vec::new();
        for entry in entries {
            let onward_origin = onward_of(&entry);
            // A statement logged here too (submitted to both hubs) appears once here. Only
            // the peer's own statements and what it relays onward are looked up: its other
            // relays are gap leaves whatever this log holds.
            let held = if entry.relay.is_none() || onward_origin.is_some() {
                crate::statement::StatementId::from_slice(&entry.statement_id)
                    .map(|id| self.store.entry_by_id(&id).map(|e| e.is_some()))
                    .transpose()?
                    .unwrap_or(false)
            } else {
                false
            };
            let passed_on = onward_origin.and_then(|_| onward.take(&entry, held));
            if let Some(relayed) = relayer
                .take(entry, held)
                .map_err(|e| self.source.refused_text(e.to_string()))?
            {
                batch.push(relayed);
            }
            batch.extend(passed_on);
        }
        drop_unproven(&mut batch, &self.peer.genesis);
        let peer_origin = self.peer.genesis.0.to_vec();
        let last = batch
            .iter()
            .rev()
            .filter_map(|e| e.relay.as_ref())
            .find(|r| r.origin_genesis == peer_origin);
        let Some(last) = last else {
            if !batch.is_empty() {
                // Only statements relayed onward, each group with its origin's checkpoint.
                let statements = batch.len() as u64;
                self.write(batch).await?;
                self.status.statements += statements;
                self.status.relayed_to = relayer.next();
                self.relayer = Some(relayer);
                return Ok(Round::Copied(statements));
            }
            // Only leaves the peer relayed itself: held for its next statement.
            self.status.relayed_to = relayer.next();
            self.relayer = Some(relayer);
            return Ok(Round::Copied(0));
        };
        // The origin replica here, after this batch, holds the peer's leaves up to `here`;
        // the checkpoint must extend both them and the one accepted before (rule 20).
        let here = last.origin_seq + 1;
        let mut needs = Vec::new();
        if here < latest {
            needs.push(ConsistencyNeed {
                old_size: here,
                new_size: latest,
            });
        }
        if here < anchor && anchor < latest {
            needs.push(ConsistencyNeed {
                old_size: anchor,
                new_size: latest,
            });
        }
        let proofs = self.source.proofs(&needs).await?;
        relayer
            .prove(&mut batch, OriginCheckpoint { note, proofs })
            .map_err(|e| self.source.refused_text(e.to_string()))?;
        let statements = batch.len() as u64;
        self.write(batch).await?;
        self.status.statements += statements;
        self.status.relayed_to = relayer.next();
        self.status.proven_to = latest;
        self.relayer = Some(relayer);
        Ok(Round::Copied(statements))
    }
}

/// Drops, for every origin relayed onward in `batch` (not `peer`, whose checkpoint the puller
/// attaches), the entries after its last one carrying an origin checkpoint: unproven, the
/// writer would refuse the whole group. That origin then continues by its other paths.
fn drop_unproven(batch: &mut Vec<crate::pb::SyncEntry>, peer: &crate::statement::StatementId) {
    let peer = peer.0.to_vec();
    let mut proven_to: std::collections::HashMap<Vec<u8>, usize> = Default::default();
    for (i, e) in batch.iter().enumerate() {
        if let Some(r) = &e.relay
            && r.origin_genesis != peer
            && r.checkpoint.is_some()
        {
            proven_to.insert(r.origin_genesis.clone(), i);
        }
    }
    let mut i = 0;
    batch.retain(|e| {
        let keep = match &e.relay {
            Some(r) if r.origin_genesis != peer => proven_to
                .get(&r.origin_genesis)
                .is_some_and(|last| i <= *last),
            _ => true,
        };
        i += 1;
        keep
    });
}
