//! One hub's log pulled into the local store, batch by batch, each proven before it is written.

use super::Upstream;
use super::source::{Api, MAX_BATCH_ENTRIES, Source};
use crate::pb;
use crate::replica::{Entry, Replica, ReplicaError, SeenIds};
use crate::statement::StatementId;
use crate::store::{Replicated, Store, StoreError};
use std::collections::HashMap;
use thiserror::Error;
/// A batch whose erasure claims name entries beyond it grows up to this many entries before
/// the round gives up and waits for a later checkpoint.
const MAX_HELD_ENTRIES: u64 = 4 * MAX_BATCH_ENTRIES;
/// Checkpoints asked for per page when copying them.
const CHECKPOINT_PAGE: u32 = 1_000;

/// Why a round stopped.
#[derive(Debug, Error)]
pub enum FollowError {
    /// The upstream cannot be reached or answered with an error: try again later.
    #[error("the upstream {addr} is unavailable: {reason}")]
    Unavailable {
        /// Its address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The upstream showed something its own log contradicts (a forged or altered entry, a
    /// checkpoint that does not verify or forks from one seen before, another genesis):
    /// nothing of the batch was written; do not trust this upstream until an operator acts.
    #[error("refused what {addr} served: {error}")]
    Refused {
        /// Its address.
        addr: String,
        /// The replica's refusal.
        error: Box<ReplicaError>,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FollowError {
    /// True for a refusal: the upstream lied, so following must stop.
    pub fn is_refusal(&self) -> bool {
        matches!(self, FollowError::Refused { .. })
    }
}

/// What a round did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// Entries were written; more may be waiting.
    Copied(u64),
    /// The local log equals the upstream's latest checkpoint.
    CaughtUp,
    /// The upstream's latest checkpoint ends inside erasure claims it has not settled yet
    /// (the erasing entry is not in a checkpoint yet): nothing written, ask again later.
    Waiting,
}

/// Where a follower stands (for `/healthz`, metrics and logs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowerStatus {
    /// Entries copied and durable here (the cursor).
    pub local_size: u64,
    /// The size of the upstream's latest checkpoint seen.
    pub upstream_size: u64,
    /// Entries refused from this upstream since start.
    pub refusals: u64,
}

/// Pulls one upstream hub's log into `store` (see the module documentation of `federation`).
pub struct Follower {
    store: Store,
    source: Source,
    replica: Replica,
    status: FollowerStatus,
}

impl Follower {
    /// A follower continuing from the store's durable log. An empty store is pinned to the
    /// upstream's genesis; a store holding another genesis than the one given is refused.
    pub async fn new(store: Store, upstream: Upstream) -> Result<Self, FollowError> {
        let mut replica = store.replica().await?;
        match (replica.genesis(), upstream.genesis) {
            (None, Some(genesis)) => replica = replica.pin_genesis(genesis),
            (Some(have), Some(want)) if have != want => {
                return Err(FollowError::Store(StoreError::Unavailable(format!(
                    "this data directory holds the hub of genesis {have}, not {want}"
                ))));
            }
            (None, None) => {
                return Err(FollowError::Store(StoreError::Unavailable(
                    "an empty data directory can only follow a hub named by its genesis id (--genesis ID)".into(),
                )));
            }
            _ => {}
        }
        let status = FollowerStatus {
            local_size: replica.size(),
            ..FollowerStatus::default()
        };
        Ok(Follower {
            store,
            source: Source::new(upstream.addr, upstream.tls, Api::Audit),
            replica,
            status,
        })
    }

    /// Where it stands.
    pub fn status(&self) -> &FollowerStatus {
        &self.status
    }

    /// The upstream's address.
    pub fn addr(&self) -> &str {
        self.source.addr()
    }

    /// Rounds until the local log equals the upstream's latest checkpoint (or a round waits).
    pub async fn catch_up(&mut self) -> Result<Round, FollowError> {
        loop {
            match self.round().await? {
                Round::Copied(_) => continue,
                other => return Ok(other),
            }
        }
    }

    /// One round: the upstream's latest checkpoint, then at most one batch of the entries it
    /// covers beyond the local log, verified by the replica and proven in that checkpoint,
    /// then written; then the upstream's checkpoints up to the new size, each verified and
    /// checked against the local root, with the cosignatures the witness policy verifies.
    pub async fn round(&mut self) -> Result<Round, FollowError> {
        let result = self.round_inner().await;
        self.source.account(&result, &mut self.status.refusals);
        result
    }

    async fn round_inner(&mut self) -> Result<Round, FollowError> {
        let note = self.source.latest_note().await?;
        let latest =
            crate::replica::note_size(&note).map_err(|reason| self.refused_text(reason))?;
        self.status.upstream_size = latest;
        let here = self.replica.size();
        if latest <= here {
            // Equal: nothing to copy but checkpoints and cosignatures. Smaller: the upstream
            // is behind this copy (a fork if its checkpoint contradicts it).
            let claim = self.replica.check_checkpoint(&note);
            if let Err(e) = claim
                && !(e.is_behind() && latest == here)
            {
                if e.is_behind() {
                    return Err(self.unavailable(format!(
                        "its latest checkpoint covers {latest} entries, this copy holds {here}"
                    )));
                }
                return Err(self.refused(e));
            }
            self.copy_checkpoints().await?;
            return Ok(Round::CaughtUp);
        }
        let mut batch = Vec::new();
        let mut candidate = self.replica.clone();
        let mut accepted = Vec::new();
        let mut limit = MAX_BATCH_ENTRIES;
        loop {
            let from = candidate.size();
            let to = latest.min(here + limit);
            let entries: Vec<Entry> = self
                .source
                .entries(from, to)
                .await?
                .into_iter()
                .map(Entry::from_wire)
                .collect();
            let (next, verdicts) = self.verify(candidate, entries.clone()).await?;
            candidate = next;
            batch.extend(entries);
            accepted.extend(verdicts);
            // An erasure claim names a later entry: the batch must reach it (rule 13a).
            if candidate.unsettled_erasure().is_none() {
                break;
            }
            if candidate.size() >= latest {
                return Ok(Round::Waiting);
            }
            if limit >= MAX_HELD_ENTRIES {
                return Err(self.refused_text(format!(
                    "erasure claims name entries more than {MAX_HELD_ENTRIES} entries ahead of entry {here}"
                )));
            }
            limit += MAX_BATCH_ENTRIES;
        }
        let claim = candidate
            .check_checkpoint(&note)
            .map_err(|e| self.refused(e))?;
        let proofs = self.source.proofs(claim.needs()).await?;
        candidate
            .accept_checkpoint(claim, &proofs)
            .map_err(|e| self.refused(e))?;
        let written = batch.len() as u64;
        let size = self
            .store
            .replicate(Replicated::new(batch, accepted, candidate.clone())?)
            .await?;
        self.replica = candidate;
        self.status.local_size = size;
        self.copy_checkpoints().await?;
        Ok(Round::Copied(written))
    }

    /// The replica's verdict on a batch, off the async workers; the candidate is dropped on a
    /// refusal (the follower's own replica is untouched).
    async fn verify(
        &self,
        mut candidate: Replica,
        entries: Vec<Entry>,
    ) -> Result<(Replica, Vec<crate::replica::Accepted>), FollowError> {
        let store = self.store.clone();
        let (candidate, result) = tokio::task::spawn_blocking(move || {
            let mut seen = StoredIds {
                store: &store,
                batch: HashMap::new(),
                error: std::cell::RefCell::new(None),
            };
            let result = candidate.append(entries, &mut seen);
            let result = match seen.error.into_inner() {
                Some(e) => Err(FollowError::Store(e)),
                None => Ok(result),
            };
            (candidate, result)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the verifier stopped: {e}")))?;
        match result? {
            Ok(accepted) => Ok((candidate, accepted)),
            Err(e) => Err(self.refused(e)),
        }
    }

    /// Copies the upstream's checkpoints from the local latest one up to the local size: each
    /// verified with the hub key the log names for its size, its root checked against the
    /// local log by the store, and the cosignature lines the witness policy verifies.
    async fn copy_checkpoints(&mut self) -> Result<(), FollowError> {
        let size = self.store.log_size();
        loop {
            let have = self.store.latest_checkpoint()?.map(|c| c.size);
            let from_size = have.map_or(0, |s| s);
            let page = self.source.checkpoints(from_size, CHECKPOINT_PAGE).await?;
            let mut stored = false;
            for cp in &page.checkpoints {
                if cp.tree_size > size {
                    return Ok(());
                }
                let signed = self
                    .replica
                    .signed_checkpoint(&cp.note)
                    .map_err(|e| self.refused(e))?;
                if Some(signed.size().0) != have {
                    let store = self.store.clone();
                    let put = tokio::task::spawn_blocking(move || store.put_checkpoint(&signed))
                        .await
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                    match put {
                        Ok(_) => stored = true,
                        Err(StoreError::CheckpointRejected { reason, .. }) => {
                            return Err(self.refused_text(format!(
                                "its checkpoint of {} entries does not describe the entries it served: {reason}",
                                cp.tree_size
                            )));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                self.copy_cosignatures(cp).await?;
            }
            match page.next_from_size {
                Some(_) if stored => continue,
                _ => return Ok(()),
            }
        }
    }

    /// Stores the cosignature lines of `cp` that verify under the coalition's witness policy
    /// (none without a policy); the rest are dropped, as a member would ignore them. Lines
    /// already stored are neither verified nor written again, so a caught-up mirror's polls
    /// cost no signature checks and no flush.
    async fn copy_cosignatures(&self, cp: &pb::SignedCheckpoint) -> Result<(), FollowError> {
        let registry = self.replica.registry().clone();
        if registry
            .coalition()
            .is_none_or(|c| c.settings.witnesses.is_none())
            || cp.cosignatures.is_empty()
        {
            return Ok(());
        }
        let (store, cp) = (self.store.clone(), cp.clone());
        tokio::task::spawn_blocking(move || {
            let Some(policy) = registry
                .coalition()
                .and_then(|c| c.settings.witnesses.as_ref())
            else {
                return Ok(());
            };
            let stored = store.cosignatures_of(cp.tree_size)?;
            let lines: Vec<(String, String)> = cp
                .cosignatures
                .iter()
                .filter(|line| !stored.contains(line))
                .filter_map(|line| {
                    let witnessed = policy.check(&cp.note, std::slice::from_ref(line));
                    let name = witnessed.cosigned.keys().next()?.clone();
                    Some((name, line.clone()))
                })
                .collect();
            store.put_cosignatures(cp.tree_size, &lines)
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        Ok(())
    }

    fn unavailable(&self, reason: String) -> FollowError {
        self.source.unavailable(reason)
    }

    fn refused(&self, error: ReplicaError) -> FollowError {
        self.source.refused(error)
    }

    fn refused_text(&self, reason: String) -> FollowError {
        self.source.refused_text(reason)
    }
}

/// The "no statement twice" rule's memory for a follower: the store's id index, and the
/// batch being verified. A read error is kept and fails the round.
struct StoredIds<'a> {
    store: &'a Store,
    batch: HashMap<StatementId, u64>,
    error: std::cell::RefCell<Option<StoreError>>,
}

impl SeenIds for StoredIds<'_> {
    fn first_seq(&self, id: &StatementId) -> Option<u64> {
        if let Some(seq) = self.batch.get(id) {
            return Some(*seq);
        }
        match self.store.entry_by_id(id) {
            Ok(found) => found.map(|e| e.seq),
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }
    fn insert(&mut self, id: StatementId, seq: u64) {
        self.batch.insert(id, seq);
    }
}
