//! The auditor's driver of the replica: a bundle's (or a live hub's) checkpoints and entries
//! fed to one [`Replica`] in chunks, the witness cosignatures of each checkpoint checked
//! against the witness policy the replayed settings hold at its size, and what a successful
//! replay established.

use std::collections::BTreeMap;

use crate::log::Hash;
use crate::membership::MemberStatus;
use crate::pb;
use crate::replica::{Entry, Replica, ReplicaError, SeenMap};
use crate::statement::StatementId;
use crate::witness::policy::{MAX_COSIGNATURE_LINES, WitnessPolicy, Witnessed};

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
    /// The last checkpoint's cosignatures under the witness policy of the replayed settings
    /// (`None`: the settings hold no policy).
    pub witnessing: Option<Witnessing>,
    /// The origins relayed from (docs/PROTOCOL.md §3.10): hub name, genesis id, and the
    /// origin's entries rebuilt here (every one proven by the origin's signed checkpoints).
    pub origins: Vec<(String, StatementId, u64)>,
}

/// What the cosignatures of the last checkpoint establish under the policy in force there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witnessing {
    /// The checkpoint's size.
    pub size: u64,
    /// The policy, described ([`WitnessPolicy::describe`]).
    pub policy: String,
    /// Which witnesses of the policy cosigned, and whether the quorum is met.
    pub witnessed: Witnessed,
}

impl Witnessing {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "checkpoint {} is cosigned by {}; the coalition's policy ({}) is {}",
            self.size,
            self.witnessed.names(),
            self.policy,
            if self.witnessed.met { "met" } else { "NOT met" }
        )
    }
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
    /// Cosignature lines by checkpoint size, with the note they are over: checked when the
    /// replay reaches that size (the policy of that moment), then kept for the summary.
    cosigned: BTreeMap<u64, Vec<(String, Vec<String>)>>,
    /// The sizes in `cosigned` not checked yet.
    unchecked: std::collections::BTreeSet<u64>,
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
            cosigned: BTreeMap::new(),
            unchecked: std::collections::BTreeSet::new(),
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

    /// A checkpoint the hub published, with the witness cosignature lines it served for it
    /// (docs/PROTOCOL.md §3.8). When the replay reaches its size, each line that names a
    /// witness of the policy in force there must verify with that witness's key
    /// ([`crate::replica::Fault::ForgedCosignature`] otherwise); lines of other keys are
    /// ignored. Feed it before the entries, like [`Verifier::checkpoint`]. At most
    /// [`MAX_COSIGNATURE_LINES`] lines per size count.
    pub fn cosigned_checkpoint(
        &mut self,
        note: String,
        cosignatures: Vec<String>,
    ) -> Result<(), AuditError> {
        // The replica refuses a note it cannot read, and one fed after the entries it covers.
        self.checkpoint(note.clone())?;
        if cosignatures.is_empty() {
            return Ok(());
        }
        let Ok(size) = crate::replica::note_size(&note) else {
            return Ok(());
        };
        let lines = self.cosigned.entry(size).or_default();
        let room =
            MAX_COSIGNATURE_LINES.saturating_sub(lines.iter().map(|(_, l)| l.len()).sum::<usize>());
        lines.push((note, cosignatures.into_iter().take(room).collect()));
        if size == self.replica.size() {
            self.check_cosignatures(size)
        } else {
            self.unchecked.insert(size);
            Ok(())
        }
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
        let reached = self.replica.size() + self.pending.len() as u64;
        if self.unchecked.first() == Some(&reached) {
            // A cosigned checkpoint's size: replay up to it, so the settings are those there.
            self.flush()?;
            self.check_cosignatures(reached)?;
        } else if self.pending.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Checks the cosignature lines of the checkpoints of `size` (the replay is at `size` and
    /// verified them) against the witness policy the replayed settings hold now.
    fn check_cosignatures(&mut self, size: u64) -> Result<(), AuditError> {
        self.unchecked.remove(&size);
        let Some(policy) = self.policy() else {
            return Ok(());
        };
        for (note, lines) in self.cosigned.get(&size).into_iter().flatten() {
            if let Some(witness) = policy.check(note, lines).forged.into_iter().next() {
                return Err(ReplicaError::new(
                    Location::Checkpoint(size),
                    crate::replica::Fault::ForgedCosignature { witness },
                ));
            }
        }
        Ok(())
    }

    /// The witness policy of the replayed settings, if they hold one.
    fn policy(&self) -> Option<WitnessPolicy> {
        self.replica
            .registry()
            .coalition()
            .and_then(|c| c.settings.witnesses.clone())
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
        // Every cosigned checkpoint was reached (`Replica::finish` checks that), so each one's
        // lines were checked at its own size in `entry`.
        let witnessing = match (self.policy(), self.replica.checkpoint()) {
            (Some(policy), Some((size, note))) => {
                let lines: Vec<String> = self
                    .cosigned
                    .get(&size)
                    .into_iter()
                    .flatten()
                    .flat_map(|(_, lines)| lines.iter().cloned())
                    .collect();
                Some(Witnessing {
                    size,
                    policy: policy.describe(),
                    witnessed: policy.check(note, &lines),
                })
            }
            _ => None,
        };
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
            origins: self
                .replica
                .origins()
                .map(|(genesis, name, r)| (name.to_owned(), *genesis, r.size()))
                .collect(),
            previous: self.replica.previous_checkpoint(),
            retractions: self.retractions,
            retractions_without_target: self.retractions_without_target,
            witnessing,
        })
    }
}
