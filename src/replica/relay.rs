//! Relayed entries (docs/PROTOCOL.md §3.10, rules 22–26): a statement another hub — its
//! *origin* — logged first, carried in this log with where the origin logged it and the
//! evidence that it did.
//!
//! The replica replays each origin's own log in a nested [`Replica`], pinned to the origin's
//! genesis and created at the origin's first relayed entry (its genesis). The relayed
//! statements, and the *gap leaves* between them (the origin's leaves for what the origin
//! itself relayed from elsewhere), rebuild every leaf of the origin's log in order, so every
//! relayed statement is judged by rules 1–17 against the origin's membership at its origin
//! position — and never against this hub's — and every origin checkpoint a relay carries is
//! checked against the rebuilt root (rule 20), with the origin's hub key. Nothing of an
//! origin's membership reaches this hub's own.

use super::error::{Fault, Location, ReplicaError, at};
use super::{Accepted, Notice, Parsed, Replica, SeenIds, VerifyingKey};
use crate::log::{Hash, leaf_hash};
use crate::membership::Position;
use crate::membership::{Registry, RelayedLifecycle};
use crate::pb;
use crate::statement::{Kind, Reader, StatementId, SyncFilter};
use crate::store::{RELAYED_LEAF_LEN, relayed_leaf_data};
use std::sync::Arc;

/// Most gap leaves one relayed entry carries (88 bytes each: 5.5 MiB): an origin that relayed
/// more entries in a row than this between two statements of its own cannot be relayed.
pub const MAX_GAP_LEAVES: usize = 65_536;

/// Where the origin logged a relayed statement, and the evidence that it did (the wire form
/// is `coalition.v1.Relay`).
#[derive(Clone, Debug, PartialEq)]
pub struct Relay {
    /// The origin's genesis statement id.
    pub origin: StatementId,
    /// The statement's position in the origin's log.
    pub origin_seq: u64,
    /// When the origin received it.
    pub origin_received_at_ms: i64,
    /// The origin's leaf data (88 bytes each) between the previous statement relayed from
    /// this origin and this one.
    pub gap_leaves: Vec<Vec<u8>>,
    /// An origin checkpoint covering this statement, with the consistency proofs the
    /// origin's replica needs to accept it.
    pub checkpoint: Option<OriginCheckpoint>,
    /// The origin position of the erasure that erased the statement at its origin before it
    /// was relayed (its body is then absent): checked in the origin's log (rule 13a).
    pub erased_by: Option<u64>,
}

/// An origin's signed checkpoint and the consistency proofs that extend what a replica holds
/// of the origin's log to it, in the order [`super::CheckpointClaim::needs`] lists them.
#[derive(Clone, Debug, PartialEq)]
pub struct OriginCheckpoint {
    /// The signed note.
    pub note: String,
    /// The proofs.
    pub proofs: Vec<Vec<Hash>>,
}

impl Relay {
    /// Parses the wire form: the genesis id and every proof hash are 32 bytes.
    pub fn from_wire(wire: pb::Relay) -> Result<Self, String> {
        if wire.gap_leaves.len() > MAX_GAP_LEAVES {
            return Err(format!(
                "{} gap leaves, more than the {MAX_GAP_LEAVES} a relayed entry may carry",
                wire.gap_leaves.len()
            ));
        }
        let origin = StatementId::from_slice(&wire.origin_genesis).ok_or_else(|| {
            format!(
                "origin_genesis is {} bytes, not a 32-byte genesis id",
                wire.origin_genesis.len()
            )
        })?;
        let checkpoint = match wire.checkpoint {
            None => None,
            Some(c) => {
                let proofs = c
                    .proofs
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        p.hashes
                            .iter()
                            .map(|h| Hash::from_slice(h))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| {
                                format!("checkpoint.proofs[{i}]: a hash is not 32 bytes")
                            })
                    })
                    .collect::<Result<_, _>>()?;
                Some(OriginCheckpoint {
                    note: c.note,
                    proofs,
                })
            }
        };
        Ok(Relay {
            origin,
            origin_seq: wire.origin_seq,
            origin_received_at_ms: wire.origin_received_at_ms,
            gap_leaves: wire.gap_leaves,
            checkpoint,
            erased_by: wire.erased_by,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::Relay {
        pb::Relay {
            origin_genesis: self.origin.0.to_vec(),
            origin_seq: self.origin_seq,
            origin_received_at_ms: self.origin_received_at_ms,
            gap_leaves: self.gap_leaves.clone(),
            checkpoint: self.checkpoint.as_ref().map(|c| pb::OriginCheckpoint {
                note: c.note.clone(),
                proofs: c
                    .proofs
                    .iter()
                    .map(|p| pb::ProofHashes {
                        hashes: p.iter().map(|h| h.as_bytes().to_vec()).collect(),
                    })
                    .collect(),
            }),
            erased_by: self.erased_by,
        }
    }

    /// The leaf data of the relayed entry holding statement `id`, received here at
    /// `received_at_ms`: it commits to the provenance, not to the evidence.
    pub fn leaf_data(&self, id: &StatementId, received_at_ms: i64) -> [u8; RELAYED_LEAF_LEN] {
        relayed_leaf_data(
            id,
            received_at_ms,
            &self.origin,
            self.origin_seq,
            self.origin_received_at_ms,
        )
    }
}

/// The Merkle leaf data of a log entry as a log records it: 40 bytes for a statement logged
/// there, 88 for a relayed one (docs/PROTOCOL.md §3.1, §3.10).
pub fn leaf_data_of(entry: &pb::SyncEntry) -> Result<Vec<u8>, String> {
    let id = StatementId::from_slice(&entry.statement_id).ok_or_else(|| {
        format!(
            "entry {}: the statement id is {} bytes, not 32",
            entry.seq,
            entry.statement_id.len()
        )
    })?;
    Ok(match &entry.relay {
        None => crate::store::leaf_data(&id, entry.received_at_ms).to_vec(),
        Some(relay) => Relay::from_wire(relay.clone())
            .map_err(|e| format!("entry {}: {e}", entry.seq))?
            .leaf_data(&id, entry.received_at_ms)
            .to_vec(),
    })
}

/// Where an accepted relayed statement was first logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The origin's genesis id.
    pub origin: StatementId,
    /// The origin's hub name: foreign identities read `member@hub_name`.
    pub hub_name: String,
    /// Its position in the origin's log.
    pub seq: u64,
    /// When the origin received it.
    pub received_at_ms: i64,
}

/// One origin's log, as the relayed statements and gap leaves rebuild it.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub(crate) hub_name: String,
    pub(crate) replica: Replica,
    /// How many of the origin's entries an accepted origin checkpoint proves: the entries
    /// replayed when one was accepted, or its size once the replay reached it (an anchor
    /// larger than the replay proves the entries after them only when they reach it).
    pub(crate) proven: u64,
    /// Where each of the origin's retractions and opinions relayed so far is logged: its
    /// origin position and its position here (both ascending), to rebuild the relaying
    /// registry's records of them from a saved origin replica.
    pub(crate) lifecycle_at: Vec<(u64, u64)>,
}

/// The origin replica's "no statement twice": the relaying log's own rule 9 already refuses
/// any statement relayed twice, and a duplicate inside the origin's log could not be proven
/// in the origin's checkpoints (rule 25), so the origin replica keeps no ids.
struct ProvenByCheckpoints;

impl SeenIds for ProvenByCheckpoints {
    fn first_seq(&self, _: &StatementId) -> Option<u64> {
        None
    }
    fn insert(&mut self, _: StatementId, _: u64) {}
}

impl Origin {
    /// An origin nothing was relayed from yet: its replica reads as a relay (restricted
    /// bodies stay at their origin) with the relaying replica's filter.
    pub(crate) fn new(genesis: StatementId, hub_name: String, filter: SyncFilter) -> Self {
        // An origin's membership is kept whatever the relaying replica keeps of its own: it is
        // what the origin's replica is saved and restored from.
        let replica = Replica::new()
            .with_filter(filter)
            .reading_as(Reader::Relay)
            .pin_genesis(genesis)
            .keeping_membership();
        Origin {
            hub_name,
            replica,
            proven: 0,
            lifecycle_at: Vec::new(),
        }
    }

    /// Rules 24 and 25: the gap leaves, the statement at its origin position, the origin
    /// checkpoint. Errors are located in the origin's log.
    #[allow(clippy::type_complexity)]
    fn replay(
        &mut self,
        mut p: Parsed,
        relay: &Relay,
        held: &dyn SeenIds,
    ) -> Result<(Accepted, Option<(Parsed, Vec<VerifyingKey>)>), ReplicaError> {
        for gap in &relay.gap_leaves {
            self.replica.append_gap_leaf(gap, held)?;
        }
        p.seq = relay.origin_seq;
        p.received_at_ms = relay.origin_received_at_ms;
        // An erasure at the origin before the relay: the claim is checked in the origin's log.
        p.erased_by = relay.erased_by;
        let replayed = self.replica.replay_one(p, &mut ProvenByCheckpoints)?;
        if replayed.0.header.as_ref().map(|h| h.kind) == Some(Kind::Genesis)
            && let Some(c) = self.replica.registry().coalition()
            && c.hub_name != self.hub_name
        {
            return Err(at(
                relay.origin_seq,
                Fault::RelayEvidence(format!(
                    "the origin's genesis names the hub '{}', but the settings trust it as '{}'",
                    c.hub_name, self.hub_name
                )),
            ));
        }
        if let Some(c) = &relay.checkpoint {
            let claim = self.replica.check_checkpoint(&c.note)?;
            self.proven = self.replica.accept_checkpoint(claim, &c.proofs)?;
        }
        // The replay reaching the anchor's size checked the root there (rule 19).
        if let Some((anchor, _)) = self.replica.checkpoint()
            && anchor <= self.replica.size()
        {
            self.proven = self.proven.max(anchor);
        }
        Ok(replayed)
    }

    /// Origin entries replayed, and how many of them its accepted checkpoints prove.
    pub(crate) fn proven(&self) -> (u64, u64) {
        (self.replica.size(), self.proven)
    }
}

impl Replica {
    /// Rule 24's gap leaf, at the next origin position: a leaf of the origin's log for
    /// something the origin relayed itself (88 bytes), or for a statement of its own that
    /// the relaying log `held` before (40 bytes: the same statement logged at both hubs
    /// appears once per hub). It joins the origin's frontier; its receipt time (bytes 32..40)
    /// must not go back.
    fn append_gap_leaf(&mut self, data: &[u8], held: &dyn SeenIds) -> Result<(), ReplicaError> {
        let seq = self.size();
        if seq == 0 {
            return Err(at(
                seq,
                Fault::RelayEvidence(
                    "an origin's log starts with its genesis, not with a gap leaf".into(),
                ),
            ));
        }
        let Some(time) = data
            .get(32..40)
            .filter(|_| matches!(data.len(), RELAYED_LEAF_LEN | crate::store::LEAF_LEN))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
        else {
            return Err(at(
                seq,
                Fault::RelayEvidence(format!(
                    "a gap leaf is {} bytes; gaps hold only leaves the origin relayed itself ({RELAYED_LEAF_LEN} bytes) or of statements this log holds ({} bytes)",
                    data.len(),
                    crate::store::LEAF_LEN
                )),
            ));
        };
        if data.len() == crate::store::LEAF_LEN
            && let Some(id) = StatementId::from_slice(&data[..32])
            && held.first_seq(&id).is_none()
        {
            return Err(at(
                seq,
                Fault::RelayEvidence(format!(
                    "a gap leaf stands for statement {id} of the origin's own, which this log does not hold: the statement itself must be relayed"
                )),
            ));
        }
        let received_at_ms = i64::from_be_bytes(time);
        if received_at_ms < self.last_received_ms {
            return Err(at(
                seq,
                Fault::TimeWentBack {
                    got: received_at_ms,
                    previous: self.last_received_ms,
                },
            ));
        }
        // An erasure is the origin's own statement, never a gap leaf (rule 13a).
        self.settle_erasure_claims(seq, None)?;
        self.frontier.append(leaf_hash(data));
        self.last_received_ms = received_at_ms;
        let size = self.frontier.size().0;
        if self.checkpoints.waits_for(size) {
            self.checkpoints.reached(size, self.frontier.root())?;
        }
        Ok(())
    }

    /// Rules 22–25 for a relayed entry: the local position rules, a trusted origin, the
    /// origin's replay, then the relayed leaf joins this log's frontier.
    #[allow(clippy::type_complexity)]
    pub(super) fn replay_relayed(
        &mut self,
        p: Parsed,
        relay: Relay,
        seen: &mut dyn SeenIds,
    ) -> Result<(Accepted, Option<(Parsed, Vec<VerifyingKey>)>), ReplicaError> {
        let position = Position {
            seq: p.seq,
            received_at_ms: p.received_at_ms,
        };
        let id = p.id();
        self.check_position(position, id, seen)?;
        if p.erased_by.is_some() {
            return Err(at(
                p.seq,
                Fault::RelayEvidence("a relayed statement carries an erasure claim in this log: an origin's erasure is claimed in `relay.erased_by`, at its origin position".into()),
            ));
        }
        let trusted = self
            .registry
            .coalition()
            .filter(|c| c.genesis_id != relay.origin)
            .and_then(|c| c.settings.federation.origins.get(&relay.origin))
            .ok_or_else(|| {
                at(
                    p.seq,
                    Fault::UntrustedOrigin {
                        origin: relay.origin.to_string(),
                    },
                )
            })?;
        let origin = self.origins.entry(relay.origin).or_insert_with(|| {
            Origin::new(relay.origin, trusted.hub_name.clone(), self.filter.clone())
        });
        let hub_name = origin.hub_name.clone();
        let (nested, unchecked) = origin.replay(p, &relay, seen).map_err(|e| {
            at(
                position.seq,
                Fault::Relayed {
                    hub: hub_name.clone(),
                    error: Box::new(e),
                },
            )
        })?;
        self.append_leaf(
            &relay.leaf_data(&id, position.received_at_ms),
            position,
            id,
            seen,
        )?;
        if nested
            .header
            .as_ref()
            .is_some_and(|h| h.kind.is_governance())
        {
            let target = match &nested.content {
                super::Content::Statement(s) => match &s.body {
                    crate::statement::Body::Retraction(r) => Some(r.target),
                    crate::statement::Body::Opinion(o) => Some(o.target),
                    _ => None,
                },
                _ => None,
            };
            self.follow_origin(relay.origin, target, relay.origin_seq, position.seq);
        }
        let accepted = Accepted {
            seq: position.seq,
            received_at_ms: position.received_at_ms,
            id,
            header: nested.header,
            content: nested.content,
            // The origin's notices speak of the origin's members and keys; only the need to
            // upgrade concerns this reader.
            notices: nested
                .notices
                .into_iter()
                .filter(|n| matches!(n, Notice::NeedsUpgrade { .. }))
                .collect(),
            origin: Some(Provenance {
                origin: relay.origin,
                hub_name,
                seq: relay.origin_seq,
                received_at_ms: relay.origin_received_at_ms,
            }),
        };
        // Signatures left for the batch are reported at this log's position.
        let unchecked = unchecked.map(|(mut p, keys)| {
            p.seq = position.seq;
            (p, keys)
        });
        Ok((accepted, unchecked))
    }

    /// After a relayed governance statement (origin position `origin_seq`, here `seq`): the
    /// origin's membership as this registry sees it is the origin replica's, and a relayed
    /// retraction or opinion is recorded here too, its issuer qualified, so that the states
    /// of the relayed statements are decided here by the origin's retractions and opinions
    /// (with this hub's own opinions on them and this hub's quarantine threshold).
    fn follow_origin(
        &mut self,
        origin: StatementId,
        target: Option<StatementId>,
        origin_seq: u64,
        seq: u64,
    ) {
        let Some(o) = self.origins.get_mut(&origin) else {
            return;
        };
        let nested = o.replica.registry().clone();
        let recorded = match target {
            Some(target) => record_relayed(
                &mut self.registry,
                &o.hub_name,
                &nested,
                &[(origin_seq, seq)],
                Some(&target),
            ),
            None => 0,
        };
        if recorded > 0 {
            o.lifecycle_at.push((origin_seq, seq));
        }
        let stale = self
            .registry
            .origin(&o.hub_name)
            .is_none_or(|r| !Arc::ptr_eq(r, &nested));
        if stale {
            Arc::make_mut(&mut self.registry).set_origin(&o.hub_name, nested);
        }
    }

    /// Rule 26: the first origin whose relayed statements no accepted origin checkpoint
    /// covers yet. A driver that has everything the hub sent (a caught-up sync, the end of an
    /// audit) calls this: a relay ends every batch from an origin with its checkpoint.
    pub fn unproven_relay(&self) -> Option<ReplicaError> {
        self.origins.values().find_map(|o| {
            let (size, proven) = o.proven();
            (proven < size).then(|| {
                ReplicaError::new(
                    Location::Input,
                    Fault::RelayUnproven {
                        hub: o.hub_name.clone(),
                        size,
                        proven,
                    },
                )
            })
        })
    }

    /// What a driver that has replayed everything the hub sent (a caught-up sync, the end of
    /// an audit) checks last: an erasure claim naming an entry never sent (rule 13a), or
    /// statements relayed from an origin without the origin checkpoint that proves them
    /// (rule 26).
    pub fn unsettled(&self) -> Option<ReplicaError> {
        self.unsettled_erasure().or_else(|| self.unproven_relay())
    }

    /// How many of `origin`'s entries rebuilt here its accepted checkpoints prove (the
    /// figure rule 26 checks), if anything was relayed from it.
    pub fn proven_of(&self, origin: &StatementId) -> Option<u64> {
        self.origins.get(origin).map(|o| o.proven().1)
    }

    /// The origins relayed so far: genesis id, hub name, and the origin's log as rebuilt
    /// here (its membership, entries replayed, largest checkpoint accepted).
    pub fn origins(&self) -> impl Iterator<Item = (&StatementId, &str, &Replica)> {
        self.origins
            .iter()
            .map(|(g, o)| (g, o.hub_name.as_str(), &o.replica))
    }
}

/// Records in `registry` the origin's retractions and opinions (as `origin`, the origin's
/// registry, replayed them) logged at the origin positions `at` lists, each at its position
/// here ([`Registry::record_relayed`]); how many were recorded. Only those naming `target`
/// are looked at when it is given. Restricted opinions are left out: their recipients are
/// the origin's members, and their bodies stay at the origin.
pub(crate) fn record_relayed(
    registry: &mut Arc<Registry>,
    hub_name: &str,
    origin: &Registry,
    at: &[(u64, u64)],
    target: Option<&StatementId>,
) -> usize {
    let here = |origin_seq: u64| {
        at.binary_search_by_key(&origin_seq, |(o, _)| *o)
            .ok()
            .map(|i| at[i].1)
    };
    let life = origin.lifecycle();
    let targets: std::collections::BTreeSet<&StatementId> = match target {
        Some(t) => [t].into(),
        None => life
            .targets()
            .map(|(t, _)| t)
            .chain(life.opinion_targets())
            .collect(),
    };
    let mut found: Vec<(u64, RelayedLifecycle<'_>)> = targets
        .iter()
        .flat_map(|t| life.retractions_of(t).iter())
        .filter_map(|r| here(r.position.seq).map(|seq| (seq, RelayedLifecycle::Retraction(r))))
        .collect();
    found.extend(
        targets
            .iter()
            .flat_map(|t| life.opinions_of(t).iter())
            .filter(|o| o.recipients.is_everyone())
            .filter_map(|o| here(o.position.seq).map(|seq| (seq, RelayedLifecycle::Opinion(o)))),
    );
    found.sort_by_key(|(seq, _)| *seq);
    if found.is_empty() {
        return 0;
    }
    let registry = Arc::make_mut(registry);
    for (seq, record) in &found {
        registry.record_relayed(hub_name, *seq, *record);
    }
    found.len()
}
