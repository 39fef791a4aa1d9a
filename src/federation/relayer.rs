//! Turning an origin's log into relayed entries (docs/PROTOCOL.md §3.10), transport-free:
//! what a relaying hub writes for each statement the origin logged itself, with the gap leaves
//! (the origin's leaves for what it relayed from elsewhere) between them, and the origin
//! checkpoint that proves a batch. The relaying hub's replica checks the result like any
//! other log; this only shapes it.

use crate::pb;
use crate::replica::{OriginCheckpoint, Relay, leaf_data_of};
use crate::statement::{Header, Reader, StatementId};
use thiserror::Error;

/// Why an origin entry cannot be relayed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RelayerError {
    /// The origin's entries must come in order, from where the relayer stands.
    #[error("the origin's entry {got} came where entry {expected} was expected")]
    OutOfOrder {
        /// Expected origin position.
        expected: u64,
        /// What came.
        got: u64,
    },
    /// The entry is malformed (its id or relay evidence).
    #[error("{0}")]
    Malformed(String),
    /// The origin relayed more entries in a row than a relayed entry may carry as gap leaves
    /// ([`crate::replica::MAX_GAP_LEAVES`]) before a statement of its own.
    #[error(
        "the origin relayed more than {} entries in a row before a statement of its own: they cannot be carried as gap leaves",
        crate::replica::MAX_GAP_LEAVES
    )]
    TooManyGaps,
    /// There is no relayed entry to attach an origin checkpoint to.
    #[error("no statement relayed from this origin in this batch to carry its checkpoint")]
    NothingToProve,
}

/// Relays one origin's log from a position on.
#[derive(Clone, Debug)]
pub struct Relayer {
    origin: StatementId,
    next: u64,
    gaps: Vec<Vec<u8>>,
    /// Whose restricted bodies are kept: this relaying hub's members'.
    reads: Reader,
}

impl Relayer {
    /// Relays the origin with genesis `origin` from its position `next` (the number of the
    /// origin's entries the relaying log has rebuilt; 0 for an origin nothing was relayed
    /// from yet).
    pub fn new(origin: StatementId, next: u64) -> Self {
        Relayer {
            origin,
            next,
            gaps: Vec::new(),
            reads: Reader::Relay,
        }
    }

    /// Keeps the body of a restricted statement naming a member of the relaying hub, named
    /// `hub_name` in the origin's recipients (`member@hub_name`): the origin serves it to
    /// that hub's peer identity only (docs/PROTOCOL.md §3.10). Every other restricted body
    /// is dropped.
    pub fn for_hub(mut self, hub_name: &str) -> Self {
        self.reads = Reader::Hub(hub_name.to_owned());
        self
    }

    /// The next origin position expected.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Whether this relayer continues an origin replica that has rebuilt `size` of the
    /// origin's entries (it consumed from there, holding the gap leaves after it).
    pub fn resumes(&self, size: u64) -> bool {
        self.next - self.gaps.len() as u64 == size
    }

    /// Takes the origin's next entry, as the origin serves it. A statement the origin logged
    /// itself becomes a relayed entry (its position and receipt time here are the writer's
    /// to give: 0 until then), carrying the gap leaves before it; a restricted statement's
    /// body stays at its origin unless it names a member of this hub ([`Relayer::for_hub`]). An entry the origin relayed itself, and a statement the
    /// relaying log `held` already (logged at both hubs: it appears once per hub), becomes a
    /// gap leaf of the next one (`None`).
    pub fn take(
        &mut self,
        entry: pb::SyncEntry,
        held: bool,
    ) -> Result<Option<pb::SyncEntry>, RelayerError> {
        if entry.seq != self.next {
            return Err(RelayerError::OutOfOrder {
                expected: self.next,
                got: entry.seq,
            });
        }
        let leaf = leaf_data_of(&entry).map_err(RelayerError::Malformed)?;
        self.next += 1;
        if entry.relay.is_some() || held {
            if self.gaps.len() >= crate::replica::MAX_GAP_LEAVES {
                return Err(RelayerError::TooManyGaps);
            }
            self.gaps.push(leaf);
            return Ok(None);
        }
        let mut envelope = entry.envelope;
        if let Some(e) = &mut envelope
            && Header::decode(&e.payload).is_ok_and(|h| !h.readable_by(&self.reads))
        {
            e.body = Default::default();
        }
        let relay = Relay {
            origin: self.origin,
            origin_seq: entry.seq,
            origin_received_at_ms: entry.received_at_ms,
            gap_leaves: std::mem::take(&mut self.gaps),
            checkpoint: None,
            // Erased at the origin (its body is gone there): relayed with the claim.
            erased_by: entry.erased_by,
        };
        Ok(Some(pb::SyncEntry {
            seq: 0,
            received_at_ms: 0,
            statement_id: entry.statement_id,
            envelope,
            compromised_key_ids: Vec::new(),
            erased_by: None,
            relay: Some(relay.to_wire()),
        }))
    }

    /// Attaches an origin checkpoint, with its consistency proofs, to the last entry of
    /// `batch` relayed from this relayer's origin.
    pub fn prove(
        &self,
        batch: &mut [pb::SyncEntry],
        checkpoint: OriginCheckpoint,
    ) -> Result<(), RelayerError> {
        let origin = self.origin.0.to_vec();
        let last = batch
            .iter_mut()
            .rev()
            .filter_map(|e| e.relay.as_mut())
            .find(|r| r.origin_genesis == origin)
            .ok_or(RelayerError::NothingToProve)?;
        let mut relay = Relay::from_wire(last.clone()).map_err(RelayerError::Malformed)?;
        relay.checkpoint = Some(checkpoint);
        *last = relay.to_wire();
        Ok(())
    }
}

/// What the relaying log holds of one origin: its leaves rebuilt, and the largest origin
/// checkpoint accepted (size and root).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginView {
    /// The origin's leaves rebuilt (the next origin position expected).
    pub size: u64,
    /// The largest origin checkpoint accepted: its size and root.
    pub anchor: Option<(u64, crate::log::Hash)>,
}

impl OriginView {
    /// The view of an origin replica.
    pub fn of(replica: &crate::replica::Replica) -> Self {
        OriginView {
            size: replica.size(),
            anchor: replica
                .checkpoint()
                .and_then(|(_, note)| crate::replica::note_head(note).ok()),
        }
    }
}

/// Relaying onward (chains and rings, docs/PROTOCOL.md §3.10): the statements a peer relayed
/// from other origins, relayed again with the same provenance. A peer's relays of an origin
/// continue this log's rebuild of that origin exactly when they start at or before its size:
/// the gap leaves it already has are dropped, and the evidence the peer carried is kept when
/// it proves what this log needs (a checkpoint beyond its anchor, with the consistency proofs
/// of rule 20 from here, and from its anchor when that lies between). Otherwise the origin is
/// left to its other paths from that entry on.
#[derive(Clone, Debug, Default)]
pub struct Onward {
    views: std::collections::HashMap<StatementId, OriginView>,
    /// Origins that cannot continue through this peer in this round.
    blocked: std::collections::HashSet<StatementId>,
}

impl Onward {
    /// Continuing from `views`: every origin this log relays, as it holds it.
    pub fn new(views: impl IntoIterator<Item = (StatementId, OriginView)>) -> Self {
        Onward {
            views: views.into_iter().collect(),
            blocked: Default::default(),
        }
    }

    /// Takes an entry the peer relayed (its `relay` set), `held` when this log holds its
    /// statement already: the entry to relay here (position and receipt time the writer's to
    /// give), or `None` when this log relayed it already or cannot continue the origin from
    /// it.
    pub fn take(&mut self, entry: &pb::SyncEntry, held: bool) -> Option<pb::SyncEntry> {
        let relay = Relay::from_wire(entry.relay.clone()?).ok()?;
        if self.blocked.contains(&relay.origin) {
            return None;
        }
        let view = self.views.entry(relay.origin).or_default();
        let k = relay.origin_seq;
        if k < view.size {
            return None; // relayed here already
        }
        if held {
            // Beyond what this log rebuilt of the origin, yet logged here already (by another
            // path, or submitted here too): only the origin's own relayer turns it into a gap
            // leaf, so the origin is left to its other paths for this round.
            self.blocked.insert(relay.origin);
            return None;
        }
        let first = k.checked_sub(relay.gap_leaves.len() as u64)?;
        if first > view.size {
            // Leaves of the origin this log never saw through this peer.
            self.blocked.insert(relay.origin);
            return None;
        }
        let skip = (view.size - first) as usize;
        let here = k + 1;
        let checkpoint = match relay.checkpoint {
            None => None,
            Some(c) => match Self::evidence(view, here, c) {
                Some(c) => Some(c),
                None => {
                    self.blocked.insert(relay.origin);
                    return None;
                }
            },
        };
        if let Some(c) = &checkpoint
            && let Ok(head) = crate::replica::note_head(&c.note)
        {
            view.anchor = Some(head);
        }
        view.size = here;
        let onward = Relay {
            gap_leaves: relay.gap_leaves[skip..].to_vec(),
            checkpoint,
            ..relay
        };
        // A restricted body reaches a hub only directly from its origin.
        let mut envelope = entry.envelope.clone();
        if let Some(e) = &mut envelope
            && Header::decode(&e.payload).is_ok_and(|h| h.is_restricted())
        {
            e.body = Default::default();
        }
        Some(pb::SyncEntry {
            seq: 0,
            received_at_ms: 0,
            statement_id: entry.statement_id.clone(),
            envelope,
            compromised_key_ids: Vec::new(),
            erased_by: None,
            relay: Some(onward.to_wire()),
        })
    }

    /// The peer's evidence as this log needs it, if it proves what this log needs: the
    /// proof from `here` (the peer's first, when the checkpoint is larger), and from this
    /// log's anchor when it lies between — the peer's second only if it verifies from there.
    fn evidence(view: &OriginView, here: u64, c: OriginCheckpoint) -> Option<OriginCheckpoint> {
        let (m, root) = crate::replica::note_head(&c.note).ok()?;
        let anchor = view.anchor.map_or(0, |(s, _)| s);
        if m < here || m < anchor {
            return None;
        }
        let mut proofs = c.proofs.into_iter();
        let mut kept = Vec::new();
        if here < m {
            kept.push(proofs.next()?);
        }
        if let Some((a, anchor_root)) = view.anchor
            && here < a
            && a < m
        {
            let proof = proofs.find(|p| {
                crate::log::verify_consistency(
                    crate::log::TreeSize(a),
                    crate::log::TreeSize(m),
                    &anchor_root,
                    &root,
                    p,
                )
                .is_ok()
            })?;
            kept.push(proof);
        }
        Some(OriginCheckpoint {
            note: c.note,
            proofs: kept,
        })
    }
}
