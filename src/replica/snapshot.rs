//! What a member saves of its replica between syncs, and how it is restored: the pinned
//! genesis, the membership and settings statements (replayed again, signatures included, on
//! restore), the Merkle frontier, the last receipt time and the last accepted checkpoint. The
//! statement ids seen ([`super::SeenIds`]) are the driver's to keep.

use super::error::{Fault, Location, ReplicaError};
use super::{Entry, Replica};
use crate::log::{Frontier, Hash, TreeSize};
use crate::pb;
use crate::statement::{StatementId, SyncFilter};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A replica's state, serializable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The genesis statement id (hex), pinned.
    pub genesis: String,
    /// Entries replayed.
    pub size: u64,
    /// The Merkle frontier (hex hashes, largest subtree first).
    pub frontier: Vec<String>,
    /// The last entry's receipt time.
    pub last_received_ms: i64,
    /// The last accepted signed checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Every governance entry: genesis, membership and settings changes (base64 of the
    /// `coalition.v1.SyncEntry` encoding).
    pub membership: Vec<String>,
    /// Erasure claims not settled yet (rule 13a): `[target seq, erasing seq, statement id
    /// hex, kind name]`, for a sync cut between an erased entry and its erasure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erasure_claims: Vec<(u64, u64, String, String)>,
    /// The origins relayed from (docs/PROTOCOL.md §3.10): each origin's log as rebuilt here,
    /// saved the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<OriginSnapshot>,
}

/// One origin's replica, saved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginSnapshot {
    /// The origin's hub name, as the settings trust it.
    pub hub_name: String,
    /// Its replica (its genesis is the origin's).
    pub replica: Snapshot,
    /// How many of its entries an accepted origin checkpoint proves.
    pub proven: u64,
    /// Its retractions and opinions relayed: `[origin seq, seq here]`, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<(u64, u64)>,
}

fn corrupt(reason: impl Into<String>) -> ReplicaError {
    ReplicaError::new(
        Location::Input,
        Fault::Usage(format!("saved replica state: {}", reason.into())),
    )
}

impl Replica {
    /// The state to save (after [`Replica::keeping_membership`]).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            genesis: self.genesis().map(|g| g.to_string()).unwrap_or_default(),
            size: self.size(),
            frontier: self.frontier.edge().iter().map(Hash::to_hex).collect(),
            last_received_ms: self.last_received_ms,
            checkpoint: self.checkpoint().map(|(_, note)| note.to_owned()),
            membership: self
                .membership
                .iter()
                .flatten()
                .map(|e| STANDARD.encode(e))
                .collect(),
            erasure_claims: self
                .erasure_claims
                .iter()
                .flat_map(|(by, claims)| {
                    claims
                        .iter()
                        .map(|c| (c.target, *by, c.id.to_string(), c.kind.name().to_owned()))
                })
                .collect(),
            origins: self.origin_snapshots(),
        }
    }

    /// The origins' replicas, saved (the hub keeps them beside its log).
    pub fn origin_snapshots(&self) -> Vec<OriginSnapshot> {
        self.origins
            .values()
            .map(|o| OriginSnapshot {
                hub_name: o.hub_name.clone(),
                replica: o.replica.snapshot(),
                proven: o.proven,
                lifecycle: o.lifecycle_at.clone(),
            })
            .collect()
    }

    /// Restores the origins' replicas saved by [`Replica::origin_snapshots`] (their
    /// membership statements replayed again with their signatures, their checkpoints
    /// re-verified), and what this registry holds of them (their membership, their relayed
    /// retractions and opinions). Once, on a replica that relayed nothing yet.
    pub fn restore_origins(
        &mut self,
        origins: &[OriginSnapshot],
        filter: SyncFilter,
    ) -> Result<(), ReplicaError> {
        let mut restored = std::collections::BTreeMap::new();
        for (i, o) in origins.iter().enumerate() {
            if !o.replica.origins.is_empty() {
                return Err(corrupt(format!(
                    "origins[{i}] has origins of its own: an origin's log is rebuilt here only from what it logged itself"
                )));
            }
            let ascending = o
                .lifecycle
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
            if !ascending
                || o.lifecycle
                    .iter()
                    .any(|(origin_seq, _)| *origin_seq >= o.replica.size)
            {
                return Err(corrupt(format!(
                    "origins[{i}].lifecycle is not ascending positions within its log"
                )));
            }
            let origin = super::relay::Origin {
                hub_name: o.hub_name.clone(),
                replica: Self::restore_one(&o.replica, filter.clone())?
                    .reading_as(crate::statement::Reader::Relay),
                proven: o.proven.min(o.replica.size),
                lifecycle_at: o.lifecycle.clone(),
            };
            let genesis = origin
                .replica
                .genesis()
                .ok_or_else(|| corrupt(format!("origins[{i}] has no genesis")))?;
            if restored.insert(genesis, origin).is_some() {
                return Err(corrupt(format!("origins[{i}] is saved twice")));
            }
        }
        for o in restored.values() {
            let nested = o.replica.registry().clone();
            super::relay::record_relayed(
                &mut self.registry,
                &o.hub_name,
                &nested,
                &o.lifecycle_at,
                None,
            );
            Arc::make_mut(&mut self.registry).set_origin(&o.hub_name, nested);
        }
        self.origins = restored;
        Ok(())
    }

    /// Rebuilds a replica from a snapshot, replaying its membership statements again (with
    /// their signatures) and re-verifying its checkpoint; `filter` as for
    /// [`Replica::with_filter`].
    pub fn restore(snapshot: &Snapshot, filter: SyncFilter) -> Result<Replica, ReplicaError> {
        let mut replica = Self::restore_one(snapshot, filter.clone())?;
        replica.restore_origins(&snapshot.origins, filter)?;
        Ok(replica)
    }

    fn restore_one(snapshot: &Snapshot, filter: SyncFilter) -> Result<Replica, ReplicaError> {
        let genesis = StatementId::from_hex(&snapshot.genesis)
            .ok_or_else(|| corrupt("the genesis is not 64 hex characters"))?;
        let mut replica = Replica::new()
            .with_filter(filter)
            .pin_genesis(genesis)
            .keeping_membership();
        for (i, text) in snapshot.membership.iter().enumerate() {
            let bytes = STANDARD
                .decode(text)
                .map_err(|e| corrupt(format!("membership[{i}]: {e}")))?;
            let wire = pb::SyncEntry::decode(bytes.as_slice())
                .map_err(|e| corrupt(format!("membership[{i}]: {e}")))?;
            replica.restore_membership(Entry::from_wire(wire), true)?;
        }
        if replica.genesis() != Some(genesis) {
            return Err(corrupt(
                "its first membership entry is not the pinned genesis",
            ));
        }
        let edge = snapshot
            .frontier
            .iter()
            .map(|h| Hash::from_hex(h).ok())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt("the frontier is not hex hashes"))?;
        let frontier = Frontier::from_edge(TreeSize(snapshot.size), edge)
            .ok_or_else(|| corrupt("the frontier does not fit its size"))?;
        replica.resume_at(frontier, snapshot.last_received_ms);
        for (i, (target, by, id, kind)) in snapshot.erasure_claims.iter().enumerate() {
            let bad = || corrupt(format!("erasure_claims[{i}] is not a claim"));
            let id = StatementId::from_hex(id).ok_or_else(bad)?;
            let kind = crate::statement::Kind::parse(kind).ok_or_else(bad)?;
            if target >= by || *target >= replica.size() {
                return Err(bad());
            }
            replica
                .erasure_claims
                .entry(*by)
                .or_default()
                .push(super::ErasureClaim {
                    target: *target,
                    id,
                    kind,
                });
        }
        if let Some(note) = &snapshot.checkpoint {
            let (here, root) = (replica.size(), replica.root());
            replica.checkpoints.restore_anchor(note, here, root)?;
        }
        Ok(replica)
    }
}
