//! The auditor's driver of the replica: a bundle's (or a live hub's) checkpoints and entries
//! fed to one [`Replica`] in chunks, and what a successful replay established.

use crate::log::Hash;
use crate::membership::MemberStatus;
use crate::pb;
use crate::replica::{Entry, Replica, ReplicaError, SeenMap};
use crate::statement::StatementId;

pub use crate::replica::Location;

/// Entries handed to the replica at once (decoded and signature-checked in parallel).
const CHUNK: usize = 16_384;

/// Why an audit failed, and where: a replica refusal.
pub type AuditError = ReplicaError;

/// What a successful audit established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The hub's name (checkpoint origin), from the genesis.
    pub hub_name: String,
    /// The genesis statement id (what to pin).
    pub genesis_id: StatementId,
    /// Entries replayed, from 0.
    pub entries: u64,
    /// Of which membership statements (genesis included).
    pub membership_entries: u64,
    /// Members ever admitted / active at the end.
    pub members: usize,
    /// Active members at the end.
    pub active_members: usize,
    /// Signed checkpoints verified against the recomputed root.
    pub checkpoints: usize,
    /// The size of the largest verified checkpoint (the log's size).
    pub latest_checkpoint: Option<u64>,
    /// The Merkle root of all replayed entries.
    pub root: Hash,
    /// The `--previous` checkpoint's size, if one was given and is consistent.
    pub previous: Option<u64>,
    /// Retractions replayed (counted in `membership_entries` too: they replay into the
    /// registry).
    pub retractions: u64,
    /// Of which name a statement the log did not hold before them (no effect).
    pub retractions_without_target: u64,
}

/// Replays a log from its genesis. Feed checkpoints first ([`Verifier::checkpoint`],
/// [`Verifier::previous`]), then every entry in order ([`Verifier::entry`]), then
/// [`Verifier::finish`].
pub struct Verifier {
    replica: Replica,
    seen: SeenMap,
    pending: Vec<Entry>,
    retractions: u64,
    retractions_without_target: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier that has seen nothing.
    pub fn new() -> Self {
        Verifier {
            replica: Replica::new(),
            seen: SeenMap::default(),
            pending: Vec::new(),
            retractions: 0,
            retractions_without_target: 0,
        }
    }

    /// Verifies a log exported by `reader`: see [`crate::replica::Replica::reading_as`].
    pub fn reading_as(mut self, reader: crate::statement::Reader) -> Self {
        self.replica = self.replica.reading_as(reader);
        self
    }

    /// Entry 0 must be the genesis with this id.
    pub fn pin_genesis(mut self, genesis: StatementId) -> Self {
        self.replica = self.replica.pin_genesis(genesis);
        self
    }

    /// A checkpoint the hub published; checked when the replay reaches its size.
    pub fn checkpoint(&mut self, note: String) -> Result<(), AuditError> {
        self.flush()?;
        self.replica.expect_checkpoint(note, false)
    }

    /// A checkpoint saved earlier (e.g. by a member's sync): the log must be consistent with
    /// it — its root must be the root of the log's first `size` entries.
    pub fn previous(&mut self, note: String) -> Result<(), AuditError> {
        self.flush()?;
        self.replica.expect_checkpoint(note, true)
    }

    /// The next entry of the log.
    pub fn entry(&mut self, entry: pb::SyncEntry) -> Result<(), AuditError> {
        self.pending.push(Entry::from_wire(entry));
        if self.pending.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AuditError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.pending);
        let accepted = self.replica.append(chunk, &mut self.seen)?;
        for entry in &accepted {
            if let Some(crate::statement::Body::Retraction(r)) = entry.statement().map(|s| &s.body)
            {
                self.retractions += 1;
                if crate::replica::SeenIds::first_seq(&self.seen, &r.target)
                    .is_none_or(|seq| seq >= entry.seq)
                {
                    self.retractions_without_target += 1;
                }
            }
        }
        Ok(())
    }

    /// Replays what is left and checks the end of the log: every checkpoint reached, and the
    /// last one covering every entry.
    pub fn finish(mut self) -> Result<Summary, AuditError> {
        self.flush()?;
        self.replica.finish()?;
        let registry = self.replica.registry();
        let coalition = registry
            .coalition()
            .ok_or_else(|| ReplicaError::new(Location::Input, crate::replica::Fault::Empty))?;
        Ok(Summary {
            hub_name: coalition.hub_name.clone(),
            genesis_id: coalition.genesis_id,
            entries: self.replica.size(),
            membership_entries: self.replica.membership_entries(),
            members: registry.members().count(),
            active_members: registry
                .members()
                .filter(|m| m.status == MemberStatus::Active)
                .count(),
            checkpoints: self.replica.verified_checkpoints(),
            latest_checkpoint: self.replica.checkpoint().map(|(size, _)| size),
            root: self.replica.root(),
            previous: self.replica.previous_checkpoint(),
            retractions: self.retractions,
            retractions_without_target: self.retractions_without_target,
        })
    }
}
