//! The replica's signed checkpoints: checked against the recomputed root when the replay
//! reaches their size (an auditor's bundle), or against the frontier with the consistency
//! proofs the replica asks for (a member's sync).
//!
//! The replica keeps an *anchor*: the largest hub checkpoint it verified. Whenever the
//! frontier reaches the anchor's size the roots must be equal, and a new checkpoint must
//! extend both the frontier and the anchor, so a fork is caught whichever comes first.

use super::error::{Fault, Location, ReplicaError};
use crate::log::{Checkpoint, Hash, SignedCheckpoint, TreeSize, VerifierKey, verify_consistency};
use crate::settings::HubKeyPeriod;
use std::collections::BTreeMap;

/// A consistency proof the replica needs before it accepts a checkpoint: from the tree of
/// `old_size` entries to the checkpoint's `new_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsistencyNeed {
    /// The smaller tree.
    pub old_size: u64,
    /// The checkpoint's size.
    pub new_size: u64,
}

/// A checkpoint whose signature verified, with the proofs needed to accept it
/// ([`super::Replica::check_checkpoint`], then [`super::Replica::accept_checkpoint`]).
#[derive(Clone, Debug)]
pub struct CheckpointClaim {
    checkpoint: SignedCheckpoint,
    needs: Vec<ConsistencyNeed>,
}

impl CheckpointClaim {
    /// The checkpoint's tree size.
    pub fn size(&self) -> u64 {
        self.checkpoint.size().0
    }

    /// The consistency proofs to fetch, in order.
    pub fn needs(&self) -> &[ConsistencyNeed] {
        &self.needs
    }

    /// The signed note.
    pub fn note(&self) -> &str {
        self.checkpoint.note()
    }
}

#[derive(Clone, Debug)]
struct Anchor {
    size: u64,
    root: Hash,
    note: String,
}

#[derive(Clone, Debug)]
struct Expected {
    note: String,
    previous: bool,
}

/// What the replica knows of the hub's checkpoints.
#[derive(Clone, Debug, Default)]
pub(crate) struct Checkpoints {
    /// Every hub key and the log position that named it, oldest first (the genesis key at 0):
    /// a checkpoint of size N is signed by the last key named at a position below N.
    hubs: Vec<(u64, VerifierKey)>,
    anchor: Option<Anchor>,
    expected: BTreeMap<u64, Vec<Expected>>,
    verified: usize,
    previous: Option<u64>,
}

fn location(size: u64, previous: bool) -> Location {
    if previous {
        Location::Previous(size)
    } else {
        Location::Checkpoint(size)
    }
}

/// The tree size a checkpoint note claims, read before its signature can be checked (the hub
/// key comes from the genesis).
pub(crate) fn note_size(note: &str) -> Result<u64, String> {
    note_head(note).map(|(size, _)| size)
}

/// The tree size and root a checkpoint note claims, its signature unchecked (for a note a
/// replica accepted already, or one it will check).
pub fn note_head(note: &str) -> Result<(u64, Hash), String> {
    let (body, _) = note
        .split_once("\n\n")
        .ok_or("not a signed note (no blank line before the signature lines)")?;
    Checkpoint::parse_body(&format!("{body}\n"))
        .map(|c| (c.size.0, c.root))
        .map_err(|e| e.to_string())
}

impl Checkpoints {
    pub(crate) fn has_hub_key(&self) -> bool {
        !self.hubs.is_empty()
    }

    /// Sets the hub keys as the settings replayed name them (the genesis key first).
    pub(crate) fn set_hubs(&mut self, name: &str, keys: &[HubKeyPeriod]) -> Result<(), Fault> {
        if self.hubs.len() == keys.len() {
            return Ok(());
        }
        self.hubs = keys
            .iter()
            .map(|p| {
                VerifierKey::new(name, p.key)
                    .map(|k| (p.from_seq, k))
                    .map_err(|e| Fault::CheckpointSignature(format!("genesis hub name: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// Verifies a checkpoint of `size` entries with the hub key in force for that size; `here`
    /// is the number of entries replayed (rotations beyond it are not known yet).
    fn verify(
        &self,
        note: &str,
        location: Location,
        size: u64,
        here: u64,
    ) -> Result<SignedCheckpoint, ReplicaError> {
        let at = |fault| ReplicaError::new(location.clone(), fault);
        let current = self
            .hubs
            .iter()
            .rev()
            .position(|(from, _)| *from < size)
            .map_or(0, |i| self.hubs.len() - 1 - i);
        let (_, hub) = self.hubs.get(current).ok_or_else(|| at(Fault::NoHubKey))?;
        let error = match SignedCheckpoint::verify(note, hub) {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        // Signed by a key the log retired before this size: refused, whatever it says.
        if let Some((i, (_, old))) = self.hubs[..current]
            .iter()
            .enumerate()
            .rev()
            .find(|(_, (_, k))| SignedCheckpoint::verify(note, k).is_ok())
        {
            return Err(at(Fault::RetiredHubKey {
                size,
                key_id: old.key_id().to_string(),
                rotated_at: self.hubs[i + 1].0,
            }));
        }
        if size > here {
            return Err(at(Fault::UnknownHubKey { size, here }));
        }
        Err(at(Fault::CheckpointSignature(error.to_string())))
    }

    /// Holds a checkpoint to check when the replay reaches its size (`previous`: one saved
    /// earlier, which the log must be consistent with).
    pub(crate) fn expect(
        &mut self,
        note: String,
        previous: bool,
        here: u64,
    ) -> Result<u64, ReplicaError> {
        let size = note_size(&note).map_err(|reason| {
            ReplicaError::new(
                Location::Input,
                Fault::CheckpointSignature(format!(
                    "{}: {reason}",
                    if previous {
                        "previous checkpoint"
                    } else {
                        "a checkpoint"
                    }
                )),
            )
        })?;
        if size < here || (size == here && here > 0 && self.hubs.is_empty()) {
            return Err(ReplicaError::new(
                location(size, previous),
                Fault::Usage(format!(
                    "comes after the entries it covers ({here} already read); checkpoints must precede entries"
                )),
            ));
        }
        self.expected
            .entry(size)
            .or_default()
            .push(Expected { note, previous });
        Ok(size)
    }

    /// Whether a checkpoint (or the anchor) is waiting for the replay to reach `size`.
    pub(crate) fn waits_for(&self, size: u64) -> bool {
        self.anchor.as_ref().is_some_and(|a| a.size == size) || self.expected.contains_key(&size)
    }

    /// The replay reached `size` with `root`: every checkpoint held for that size, and the
    /// anchor if it has that size, must sign exactly this root.
    pub(crate) fn reached(&mut self, size: u64, root: Hash) -> Result<(), ReplicaError> {
        if let Some(anchor) = &self.anchor
            && anchor.size == size
            && anchor.root != root
        {
            return Err(ReplicaError::new(
                Location::Checkpoint(size),
                Fault::RootMismatch {
                    size,
                    signed: anchor.root.to_hex(),
                    computed: root.to_hex(),
                },
            ));
        }
        let Some(waiting) = self.expected.remove(&size) else {
            return Ok(());
        };
        let mut roots: Vec<Hash> = Vec::new();
        for c in waiting {
            let location = location(size, c.previous);
            let checkpoint = self.verify(&c.note, location.clone(), size, size)?;
            if !roots.contains(&checkpoint.root()) {
                roots.push(checkpoint.root());
            }
            if roots.len() > 1 {
                return Err(ReplicaError::new(
                    location,
                    Fault::SplitView {
                        size,
                        first: roots[0].to_hex(),
                        second: roots[1].to_hex(),
                    },
                ));
            }
            if checkpoint.root() != root {
                return Err(ReplicaError::new(
                    location,
                    Fault::RootMismatch {
                        size,
                        signed: checkpoint.root().to_hex(),
                        computed: root.to_hex(),
                    },
                ));
            }
            if c.previous {
                self.previous = Some(size);
            } else {
                self.verified += 1;
                self.raise_anchor(size, root, c.note);
            }
        }
        Ok(())
    }

    fn raise_anchor(&mut self, size: u64, root: Hash, note: String) {
        if self.anchor.as_ref().is_none_or(|a| a.size <= size) {
            self.anchor = Some(Anchor { size, root, note });
        }
    }

    /// Verifies a checkpoint's signature and says which proofs it needs against a replica
    /// of `here` entries with root `here_root`.
    pub(crate) fn claim(
        &self,
        note: &str,
        here: u64,
        here_root: Hash,
    ) -> Result<CheckpointClaim, ReplicaError> {
        let size_hint = note_size(note).unwrap_or_default();
        let checkpoint = self.verify(note, Location::Checkpoint(size_hint), size_hint, here)?;
        let (m, root) = (checkpoint.size().0, checkpoint.root());
        let fault_at = |fault| ReplicaError::new(Location::Checkpoint(m), fault);
        if let Some(a) = &self.anchor
            && a.size == m
            && a.root != root
        {
            return Err(fault_at(Fault::SplitView {
                size: m,
                first: a.root.to_hex(),
                second: root.to_hex(),
            }));
        }
        if m == here && root != here_root {
            return Err(fault_at(Fault::RootMismatch {
                size: m,
                signed: root.to_hex(),
                computed: here_root.to_hex(),
            }));
        }
        let anchor_size = self.anchor.as_ref().map_or(0, |a| a.size);
        if m < here || m < anchor_size {
            return Err(fault_at(Fault::Behind {
                size: m,
                have: here.max(anchor_size),
            }));
        }
        let mut needs = Vec::new();
        if here > 0 && here < m {
            needs.push(ConsistencyNeed {
                old_size: here,
                new_size: m,
            });
        }
        if here < anchor_size && anchor_size < m {
            needs.push(ConsistencyNeed {
                old_size: anchor_size,
                new_size: m,
            });
        }
        Ok(CheckpointClaim { checkpoint, needs })
    }

    /// Verifies the proofs a claim needs and makes it the anchor.
    pub(crate) fn accept(
        &mut self,
        claim: CheckpointClaim,
        proofs: &[Vec<Hash>],
        here: u64,
        here_root: Hash,
    ) -> Result<(), ReplicaError> {
        let m = claim.size();
        let root = claim.checkpoint.root();
        if proofs.len() != claim.needs.len() {
            return Err(ReplicaError::new(
                Location::Checkpoint(m),
                Fault::Usage(format!(
                    "{} consistency proofs given, {} needed",
                    proofs.len(),
                    claim.needs.len()
                )),
            ));
        }
        for (need, proof) in claim.needs.iter().zip(proofs) {
            let (old_root, what) = if need.old_size == here {
                (
                    here_root,
                    format!(
                        "the {here} entries received are not the first {here} entries of the signed checkpoint of {m}"
                    ),
                )
            } else {
                let anchor = self.anchor.as_ref().map(|a| a.root).unwrap_or(here_root);
                (
                    anchor,
                    format!(
                        "the checkpoint of {m} entries does not extend the one of {} seen before",
                        need.old_size
                    ),
                )
            };
            verify_consistency(
                TreeSize(need.old_size),
                TreeSize(m),
                &old_root,
                &root,
                proof,
            )
            .map_err(|e| {
                ReplicaError::new(
                    Location::Checkpoint(m),
                    Fault::Inconsistent(format!("{what}: {e}")),
                )
            })?;
        }
        self.verified += 1;
        self.raise_anchor(m, root, claim.checkpoint.into_note());
        Ok(())
    }

    /// Restores the anchor saved with a snapshot (its signature checked again).
    pub(crate) fn restore_anchor(
        &mut self,
        note: &str,
        here: u64,
        here_root: Hash,
    ) -> Result<(), ReplicaError> {
        let size_hint = note_size(note).unwrap_or_default();
        let checkpoint = self.verify(note, Location::Previous(size_hint), size_hint, here)?;
        let (size, root) = (checkpoint.size().0, checkpoint.root());
        if size == here && root != here_root {
            return Err(ReplicaError::new(
                Location::Previous(size),
                Fault::RootMismatch {
                    size,
                    signed: root.to_hex(),
                    computed: here_root.to_hex(),
                },
            ));
        }
        self.raise_anchor(size, root, checkpoint.into_note());
        Ok(())
    }

    /// The anchor's note and size.
    pub(crate) fn anchor(&self) -> Option<(u64, &str)> {
        self.anchor.as_ref().map(|a| (a.size, a.note.as_str()))
    }

    /// The anchor's size and root.
    pub(crate) fn anchor_root(&self) -> Option<(u64, Hash)> {
        self.anchor.as_ref().map(|a| (a.size, a.root))
    }

    pub(crate) fn verified(&self) -> usize {
        self.verified
    }

    pub(crate) fn previous(&self) -> Option<u64> {
        self.previous
    }

    /// At the end of a replay: no checkpoint may be left waiting for entries that never came.
    pub(crate) fn finish(&self, entries: u64) -> Result<(), ReplicaError> {
        if let Some((size, waiting)) = self.expected.iter().next() {
            let previous = waiting.iter().all(|c| c.previous);
            return Err(ReplicaError::new(
                location(*size, previous),
                Fault::Truncated {
                    size: *size,
                    entries,
                },
            ));
        }
        Ok(())
    }
}

impl super::Replica {
    /// Holds a signed checkpoint to check when the replay reaches its size (an auditor reading
    /// a bundle: checkpoints come before the entries they cover). `previous`: a checkpoint saved
    /// earlier that the log must be consistent with.
    pub fn expect_checkpoint(&mut self, note: String, previous: bool) -> Result<(), ReplicaError> {
        let here = self.size();
        let size = self.checkpoints.expect(note, previous, here)?;
        if size == here && self.checkpoints.has_hub_key() {
            self.checkpoints.reached(here, self.root())?;
        }
        Ok(())
    }

    /// Verifies a signed checkpoint (the hub key from the genesis, the hub's name as origin)
    /// against what this replica holds, and says which consistency proofs it needs: from the
    /// entries replayed, and from the last checkpoint accepted if that is larger. A checkpoint
    /// smaller than what the replica holds is [`Fault::Behind`] (not by itself a fork); one
    /// whose root contradicts a root the replica knows for its size is a fork.
    pub fn check_checkpoint(&self, note: &str) -> Result<CheckpointClaim, ReplicaError> {
        self.checkpoints.claim(note, self.size(), self.root())
    }

    /// Verifies the signature of a checkpoint of at most the entries replayed, with the hub
    /// key the log names for its size (a copy of a hub's earlier checkpoints: the caller
    /// checks its root against the log it holds).
    pub fn signed_checkpoint(
        &self,
        note: &str,
    ) -> Result<crate::log::SignedCheckpoint, ReplicaError> {
        let size = note_size(note).map_err(|reason| {
            ReplicaError::new(Location::Input, Fault::CheckpointSignature(reason))
        })?;
        self.checkpoints
            .verify(note, Location::Checkpoint(size), size, self.size())
    }

    /// Accepts a checkpoint with the proofs [`CheckpointClaim::needs`] asked for, in order:
    /// every entry replayed is then proven in it, and it becomes the checkpoint later ones
    /// must extend. Returns the number of entries proven.
    pub fn accept_checkpoint(
        &mut self,
        claim: CheckpointClaim,
        proofs: &[Vec<Hash>],
    ) -> Result<u64, ReplicaError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let (here, root) = (self.size(), self.root());
        self.checkpoints.accept(claim, proofs, here, root)?;
        Ok(here)
    }

    /// The largest checkpoint accepted or verified: its size and signed note.
    pub fn checkpoint(&self) -> Option<(u64, &str)> {
        self.checkpoints.anchor()
    }

    /// Checkpoints verified so far.
    pub fn verified_checkpoints(&self) -> usize {
        self.checkpoints.verified()
    }

    /// The size of the earlier checkpoint the log was found consistent with, if one was given.
    pub fn previous_checkpoint(&self) -> Option<u64> {
        self.checkpoints.previous()
    }

    /// The end of a whole-log replay (an audit): there was a genesis, no checkpoint waits for
    /// entries that never came, and the last checkpoint covers every entry (a log ends with a
    /// signed checkpoint of its own size).
    pub fn finish(&self) -> Result<(), ReplicaError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let entries = self.size();
        self.checkpoints.finish(entries)?;
        // An erasure claim naming an entry past the end of the log (rule 13a), statements
        // relayed from an origin whose checkpoint never came (rule 26).
        if let Some(e) = self.unsettled() {
            return Err(e);
        }
        if self.genesis().is_none() {
            return Err(ReplicaError::new(Location::Input, Fault::Empty));
        }
        let proven = self.checkpoints.anchor_root().map_or(0, |(size, _)| size);
        if proven != entries {
            return Err(ReplicaError::new(
                Location::Entry(proven),
                Fault::Unproven {
                    entries,
                    size: proven,
                },
            ));
        }
        Ok(())
    }
}
