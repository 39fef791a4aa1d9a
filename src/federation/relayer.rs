//! Turning an origin's log into relayed entries (docs/PROTOCOL.md §3.10), transport-free:
//! what a relaying hub writes for each statement the origin logged itself, with the gap leaves
//! (the origin's leaves for what it relayed from elsewhere) between them, and the origin
//! checkpoint that proves a batch. The relaying hub's replica checks the result like any
//! other log; this only shapes it.

use crate::pb;
use crate::replica::{OriginCheckpoint, Relay, leaf_data_of};
use crate::statement::{Header, StatementId};
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
        }
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
    /// body stays at its origin. An entry the origin relayed itself becomes a gap leaf of the
    /// next one (`None`).
    pub fn take(&mut self, entry: pb::SyncEntry) -> Result<Option<pb::SyncEntry>, RelayerError> {
        if entry.seq != self.next {
            return Err(RelayerError::OutOfOrder {
                expected: self.next,
                got: entry.seq,
            });
        }
        let leaf = leaf_data_of(&entry).map_err(RelayerError::Malformed)?;
        self.next += 1;
        if entry.relay.is_some() {
            self.gaps.push(leaf);
            return Ok(None);
        }
        let mut envelope = entry.envelope;
        if let Some(e) = &mut envelope
            && Header::decode(&e.payload).is_ok_and(|h| h.is_restricted())
        {
            e.body = Default::default();
        }
        let relay = Relay {
            origin: self.origin,
            origin_seq: entry.seq,
            origin_received_at_ms: entry.received_at_ms,
            gap_leaves: std::mem::take(&mut self.gaps),
            checkpoint: None,
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

    /// Attaches an origin checkpoint, with its consistency proofs, to the last entry of a
    /// relayed batch (`batch` as [`Relayer::take`] made it).
    pub fn prove(
        batch: &mut [pb::SyncEntry],
        checkpoint: OriginCheckpoint,
    ) -> Result<(), RelayerError> {
        let last = batch
            .iter_mut()
            .rev()
            .find_map(|e| e.relay.as_mut())
            .ok_or(RelayerError::NothingToProve)?;
        let mut relay = Relay::from_wire(last.clone()).map_err(RelayerError::Malformed)?;
        relay.checkpoint = Some(checkpoint);
        *last = relay.to_wire();
        Ok(())
    }
}
