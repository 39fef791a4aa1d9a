//! The replaying verifier: entries in, in log order, checked against the membership state of
//! the entries before them; checkpoints checked against the recomputed Merkle root.

use crate::log::{Checkpoint, Frontier, Hash, VerifierKey, empty_root, leaf_hash};
use crate::membership::{Position, Registry};
use crate::pb;
use crate::statement::{Kind, ParsedEnvelope, StatementId, verify_batch};
use crate::store::leaf_data;
use ed25519_dalek::VerifyingKey;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

/// Entries parsed in parallel and then replayed in order, per round.
const CHUNK: usize = 16_384;
/// Signatures per ed25519 batch.
const BATCH: usize = 2048;

/// What an audit failure points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The log entry with this sequence number.
    Entry(u64),
    /// The checkpoint(s) of this tree size.
    Checkpoint(u64),
    /// The `--previous` checkpoint, of this size.
    Previous(u64),
    /// The input as a whole.
    Input,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Entry(seq) => write!(f, "entry {seq}"),
            Location::Checkpoint(size) => write!(f, "checkpoint of size {size}"),
            Location::Previous(size) => write!(f, "previous checkpoint (size {size})"),
            Location::Input => f.write_str("audit input"),
        }
    }
}

/// Why an audit failed, and where.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{location}: {reason}")]
pub struct AuditError {
    /// The entry or checkpoint that failed.
    pub location: Location,
    /// Why.
    pub reason: String,
}

fn fail(location: Location, reason: impl Into<String>) -> AuditError {
    AuditError {
        location,
        reason: reason.into(),
    }
}

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
    /// The largest verified checkpoint: size and root.
    pub latest_checkpoint: Option<(u64, Hash)>,
    /// The Merkle root of all replayed entries.
    pub root: Hash,
    /// The `--previous` checkpoint's size, if one was given and is consistent.
    pub previous: Option<u64>,
}

struct PendingCheckpoint {
    note: String,
    previous: bool,
}

struct Parsed {
    seq: u64,
    received_at_ms: i64,
    envelope: ParsedEnvelope,
}

/// Replays a log from its genesis. Feed checkpoints first ([`Verifier::checkpoint`],
/// [`Verifier::previous`]), then every entry in order ([`Verifier::entry`]), then
/// [`Verifier::finish`].
pub struct Verifier {
    registry: Registry,
    frontier: Frontier,
    hub: Option<(String, VerifierKey)>,
    checkpoints: BTreeMap<u64, Vec<PendingCheckpoint>>,
    pending: Vec<pb::SyncEntry>,
    verified_checkpoints: usize,
    latest: Option<(u64, Hash)>,
    previous: Option<u64>,
    membership_entries: u64,
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
            registry: Registry::new(),
            frontier: Frontier::new(),
            hub: None,
            checkpoints: BTreeMap::new(),
            pending: Vec::new(),
            verified_checkpoints: 0,
            latest: None,
            previous: None,
            membership_entries: 0,
        }
    }

    /// A checkpoint the hub published; checked when the replay reaches its size.
    pub fn checkpoint(&mut self, note: String) -> Result<(), AuditError> {
        self.add(note, false)
    }

    /// A checkpoint saved earlier (e.g. by a member's sync): the log must be consistent with
    /// it — its root must be the root of the log's first `size` entries.
    pub fn previous(&mut self, note: String) -> Result<(), AuditError> {
        self.add(note, true)
    }

    fn add(&mut self, note: String, previous: bool) -> Result<(), AuditError> {
        let size = note_size(&note).map_err(|reason| {
            fail(
                Location::Input,
                format!(
                    "{}: {reason}",
                    if previous {
                        "previous checkpoint"
                    } else {
                        "a checkpoint"
                    }
                ),
            )
        })?;
        let here = self.frontier.size().0 + self.pending.len() as u64;
        if size < here || (size == here && here > 0 && self.hub.is_none()) {
            return Err(fail(
                Location::Checkpoint(size),
                format!(
                    "comes after the entries it covers ({here} already read); checkpoints must precede entries"
                ),
            ));
        }
        self.checkpoints
            .entry(size)
            .or_default()
            .push(PendingCheckpoint { note, previous });
        Ok(())
    }

    /// The next entry of the log.
    pub fn entry(&mut self, entry: pb::SyncEntry) -> Result<(), AuditError> {
        self.pending.push(entry);
        if self.pending.len() >= CHUNK {
            self.replay_pending()?;
        }
        Ok(())
    }

    /// Replays what is left and checks that every checkpoint was reached.
    pub fn finish(mut self) -> Result<Summary, AuditError> {
        self.replay_pending()?;
        let entries = self.frontier.size().0;
        if let Some((size, waiting)) = self.checkpoints.iter().next() {
            let location = if waiting.iter().all(|c| c.previous) {
                Location::Previous(*size)
            } else {
                Location::Checkpoint(*size)
            };
            return Err(fail(
                location,
                format!(
                    "covers {size} entries but the log has only {entries}: entries were dropped or the export is truncated"
                ),
            ));
        }
        let coalition = self
            .registry
            .coalition()
            .ok_or_else(|| fail(Location::Input, "no entries: a log starts with its genesis"))?;
        Ok(Summary {
            hub_name: coalition.hub_name.clone(),
            genesis_id: coalition.genesis_id,
            entries,
            membership_entries: self.membership_entries,
            members: self.registry.members().count(),
            active_members: self
                .registry
                .members()
                .filter(|m| m.status == crate::membership::MemberStatus::Active)
                .count(),
            checkpoints: self.verified_checkpoints,
            latest_checkpoint: self.latest,
            root: self.frontier.root(),
            previous: self.previous,
        })
    }

    fn replay_pending(&mut self) -> Result<(), AuditError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.pending);
        // 1. In parallel: decode, validate, recompute each statement id.
        let parsed: Vec<Result<Parsed, AuditError>> =
            entries.into_par_iter().map(parse_entry).collect();
        // 2. In order: position, entitlement, membership changes, Merkle tree. Stops at the
        //    first failure, after which only what came before it is checked further.
        let mut batch: Vec<(usize, Vec<VerifyingKey>)> = Vec::with_capacity(parsed.len());
        let mut ok: Vec<Parsed> = Vec::with_capacity(parsed.len());
        let mut roots: Vec<(u64, Hash)> = Vec::new();
        let mut stopped = None;
        for p in parsed {
            match self.replay_one(p, &mut batch, &mut ok) {
                Ok(()) => {
                    let size = self.frontier.size().0;
                    if self.checkpoints.contains_key(&size) {
                        roots.push((size, self.frontier.root()));
                    }
                }
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        // 3. In parallel: batch-verify every other statement's signatures. The earliest failure
        //    wins, then checkpoints (whose entries are all verified by then), then a stop.
        let failures: Vec<AuditError> = batch
            .par_chunks(BATCH)
            .filter_map(|part| verify_part(&ok, part).err())
            .collect();
        if let Some(e) = failures.into_iter().min_by_key(|e| match e.location {
            Location::Entry(seq) => seq,
            _ => u64::MAX,
        }) {
            return Err(e);
        }
        for (size, root) in roots {
            self.check_checkpoints(size, root)?;
        }
        stopped.map_or(Ok(()), Err)
    }

    fn replay_one(
        &mut self,
        p: Result<Parsed, AuditError>,
        batch: &mut Vec<(usize, Vec<VerifyingKey>)>,
        ok: &mut Vec<Parsed>,
    ) -> Result<(), AuditError> {
        let p = p?;
        let expected = self.frontier.size().0;
        if p.seq != expected {
            return Err(fail(
                Location::Entry(expected),
                if p.seq > expected {
                    format!("missing: the next entry present is {}", p.seq)
                } else {
                    format!("entry {} appears again or out of order here", p.seq)
                },
            ));
        }
        let statement = &p.envelope.statement;
        let signers = self
            .registry
            .signing_keys(statement, &p.envelope.key_ids)
            .map_err(|e| fail(Location::Entry(p.seq), format!("not entitled here: {e}")))?;
        let keys: Vec<VerifyingKey> = signers.iter().map(|s| s.key).collect();
        if matches!(statement.kind(), Kind::Genesis | Kind::Membership) {
            // Membership decides who may sign what follows: verify it now, then apply.
            let verified = p
                .envelope
                .clone()
                .verify_with(&keys)
                .map_err(|e| fail(Location::Entry(p.seq), e.to_string()))?;
            let position = Position {
                seq: p.seq,
                received_at_ms: p.received_at_ms,
            };
            self.registry
                .apply(&verified.statement, verified.id, position, &signers)
                .map_err(|e| fail(Location::Entry(p.seq), format!("refused change: {e}")))?;
            self.membership_entries += 1;
            if self.hub.is_none()
                && let Some(c) = self.registry.coalition()
            {
                let key = VerifierKey::new(&c.hub_name, c.hub_key)
                    .map_err(|e| fail(Location::Entry(p.seq), format!("genesis hub name: {e}")))?;
                self.hub = Some((c.hub_name.clone(), key));
                self.check_checkpoints(0, empty_root())?;
            }
        } else {
            batch.push((ok.len(), keys));
        }
        self.frontier
            .append(leaf_hash(&leaf_data(&p.envelope.id, p.received_at_ms)));
        ok.push(p);
        Ok(())
    }

    fn check_checkpoints(&mut self, size: u64, root: Hash) -> Result<(), AuditError> {
        let Some(notes) = self.checkpoints.remove(&size) else {
            return Ok(());
        };
        let Some((hub_name, key)) = &self.hub else {
            return Err(fail(
                Location::Checkpoint(size),
                "cannot be checked: the log has no genesis naming the hub key",
            ));
        };
        let mut roots: Vec<Hash> = Vec::new();
        for c in &notes {
            let location = if c.previous {
                Location::Previous(size)
            } else {
                Location::Checkpoint(size)
            };
            let checkpoint = Checkpoint::parse_and_verify(&c.note, key).map_err(|e| {
                fail(
                    location.clone(),
                    format!("not validly signed by the hub key of the genesis: {e}"),
                )
            })?;
            if &checkpoint.origin != hub_name {
                return Err(fail(
                    location,
                    format!("origin '{}' is not the hub '{hub_name}'", checkpoint.origin),
                ));
            }
            if !roots.contains(&checkpoint.root) {
                roots.push(checkpoint.root);
            }
            if roots.len() > 1 {
                return Err(fail(
                    location,
                    format!(
                        "split view: the hub signed two different roots for size {size} ({} and {})",
                        roots[0].to_hex(),
                        roots[1].to_hex()
                    ),
                ));
            }
            if checkpoint.root != root {
                return Err(fail(
                    location,
                    format!(
                        "signed root {} is not the root {} of the log's first {size} entries: history was rewritten",
                        checkpoint.root.to_hex(),
                        root.to_hex()
                    ),
                ));
            }
            if c.previous {
                self.previous = Some(size);
            } else {
                self.verified_checkpoints += 1;
                self.latest = Some((size, root));
            }
        }
        Ok(())
    }
}

/// The tree size a checkpoint note claims, read before its signature can be checked (the hub
/// key comes from the genesis).
fn note_size(note: &str) -> Result<u64, String> {
    let (body, _) = note
        .split_once("\n\n")
        .ok_or("not a signed note (no blank line before the signature lines)")?;
    Checkpoint::parse_body(&format!("{body}\n"))
        .map(|c| c.size.0)
        .map_err(|e| e.to_string())
}

fn parse_entry(entry: pb::SyncEntry) -> Result<Parsed, AuditError> {
    let seq = entry.seq;
    let envelope = entry
        .envelope
        .ok_or_else(|| fail(Location::Entry(seq), "no envelope"))?;
    let altered = |actual: StatementId| {
        fail(
            Location::Entry(seq),
            format!(
                "recorded statement id {} is not the hash {actual} of its envelope: the entry was altered",
                hex::encode(&entry.statement_id),
            ),
        )
    };
    let (payload_type, payload) = (envelope.payload_type.clone(), envelope.payload.clone());
    let envelope = match ParsedEnvelope::parse(envelope) {
        Ok(parsed) => parsed,
        Err(e) => {
            let actual = StatementId::of(&payload_type, &payload);
            if actual.0.as_slice() != entry.statement_id.as_slice() {
                return Err(altered(actual));
            }
            return Err(fail(
                Location::Entry(seq),
                format!("not a valid statement: {e}"),
            ));
        }
    };
    if envelope.id.0.as_slice() != entry.statement_id.as_slice() {
        return Err(altered(envelope.id));
    }
    Ok(Parsed {
        seq,
        received_at_ms: entry.received_at_ms,
        envelope,
    })
}

/// Batch-verifies a part; on failure finds the first failing entry one by one.
fn verify_part(entries: &[Parsed], part: &[(usize, Vec<VerifyingKey>)]) -> Result<(), AuditError> {
    let mut messages: Vec<&[u8]> = Vec::with_capacity(part.len());
    let mut sigs: Vec<&[u8]> = Vec::with_capacity(part.len());
    let mut keys: Vec<VerifyingKey> = Vec::with_capacity(part.len());
    for (i, signer_keys) in part {
        let p = &entries[*i];
        for (sig, key) in p.envelope.envelope.signatures.iter().zip(signer_keys) {
            messages.push(p.envelope.pae());
            sigs.push(&sig.sig);
            keys.push(*key);
        }
    }
    if verify_batch(&messages, &sigs, &keys) {
        return Ok(());
    }
    for (i, signer_keys) in part {
        let p = &entries[*i];
        p.envelope
            .clone()
            .verify_with(signer_keys)
            .map_err(|e| fail(Location::Entry(p.seq), e.to_string()))?;
    }
    Ok(())
}
