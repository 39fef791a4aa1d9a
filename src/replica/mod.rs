//! The replica: what a log means, decided in one place.
//!
//! A transport-free, storage-free state machine fed a hub's log entries in order. For each
//! entry it checks, in the order of docs/PROTOCOL.md §4: that its statement id is the hash of
//! the signed bytes and strict decoding, its position and receipt time, that the statement was
//! not logged before, newer protocol versions, its date against the receipt time, withheld
//! bodies against the reader's filter, the signer's entitlement at this position (membership
//! replayed from the genesis, quorum, key validity, compromise), membership changes, and every
//! signature under the one signature rule; it appends the Merkle leaf to its frontier and
//! checks every signed checkpoint it is given against the recomputed root, or says which
//! consistency proof it needs. It never fetches anything: the hub's writer, its start-up,
//! `coalition sync`, `coalition audit verify` and the tests are thin drivers around it, so one
//! rule fixed here is fixed everywhere.
//!
//! After a refused entry in [`Replica::append`] the replica refuses further input (restore it
//! from the last saved [`Snapshot`]); [`Replica::append_verified`], the hub writer's entry
//! point, leaves the replica as it was when it refuses an entry.

mod checkpoints;
mod error;
mod relay;
mod snapshot;

pub use checkpoints::note_head;
pub(crate) use checkpoints::note_size;
pub use checkpoints::{CheckpointClaim, ConsistencyNeed};
pub use error::{Fault, Location, ReplicaError};
pub use relay::{MAX_GAP_LEAVES, OriginCheckpoint, Provenance, Relay, leaf_data_of};
pub use snapshot::{OriginSnapshot, Snapshot};

use crate::log::{Frontier, Hash, leaf_hash};
use crate::membership::{
    Action, KeyId, MAX_CLOCK_SKEW_MS, MemberId, Position, Registry, Revocation, Signer,
};
use crate::pb;
use crate::statement::{
    Body, Header, Kind, OpaqueEnvelope, PAYLOAD_TYPE, ParsedEnvelope, Reader, Recipients,
    SignatureCheck, Statement, StatementId, SyncFilter, Verified, verify_many,
};
use ed25519_dalek::VerifyingKey;
use error::at;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// The protocol version this code reads (docs/PROTOCOL.md §1.1).
pub const PROTOCOL_VERSION: u32 = 1;

/// An entry as a log presents it: position, receipt time, the statement id the log recorded,
/// and the envelope as received (its body may be withheld by a filtered sync).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Its sequence number (Merkle leaf index).
    pub seq: u64,
    /// When the hub says it received it.
    pub received_at_ms: i64,
    /// The statement id the log recorded (checked against the bytes).
    pub statement_id: Vec<u8>,
    /// The envelope.
    pub envelope: Option<pb::Envelope>,
    /// The hub's claim that a later entry, at this position, erased this one (its body is
    /// then missing; docs/PROTOCOL.md §2.8). Checked when that entry is replayed.
    pub erased_by: Option<u64>,
    /// Set when the entry relays a statement another hub logged first (docs/PROTOCOL.md
    /// §3.10): its provenance and evidence, parsed and checked by the replica.
    pub relay: Option<pb::Relay>,
}

impl Entry {
    /// The replica's view of a wire entry. The hub's `compromised_key_ids` are dropped: the
    /// replica computes compromise itself.
    pub fn from_wire(entry: pb::SyncEntry) -> Self {
        Entry {
            seq: entry.seq,
            received_at_ms: entry.received_at_ms,
            statement_id: entry.statement_id,
            envelope: entry.envelope,
            erased_by: entry.erased_by,
            relay: entry.relay,
        }
    }

    /// The wire form (as stored in snapshots and bundles).
    pub fn to_wire(&self) -> pb::SyncEntry {
        pb::SyncEntry {
            seq: self.seq,
            received_at_ms: self.received_at_ms,
            statement_id: self.statement_id.clone(),
            envelope: self.envelope.clone(),
            compromised_key_ids: Vec::new(),
            erased_by: self.erased_by,
            relay: self.relay.clone(),
        }
    }
}

/// The statement ids already logged, and where: the "no statement twice" rule. The hub's
/// writer answers from its store's index, a member and an auditor from memory.
pub trait SeenIds {
    /// Where the statement was logged, if it was.
    fn first_seq(&self, id: &StatementId) -> Option<u64>;
    /// Records a statement logged at `seq`.
    fn insert(&mut self, id: StatementId, seq: u64);
}

/// [`SeenIds`] in memory.
#[derive(Clone, Debug, Default)]
pub struct SeenMap(HashMap<StatementId, u64>);

impl SeenMap {
    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl SeenIds for SeenMap {
    fn first_seq(&self, id: &StatementId) -> Option<u64> {
        self.0.get(id).copied()
    }
    fn insert(&mut self, id: StatementId, seq: u64) {
        self.0.insert(id, seq);
    }
}

/// What an accepted entry holds for its reader.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// The whole statement.
    Statement(Box<Statement>),
    /// Only the header: the body was withheld because the reader's filter does not select it,
    /// or because the header names recipients that do not include the reader (§2.7).
    Withheld,
    /// A statement of a newer protocol version: its signatures were checked against keys
    /// active at its position; its content is not read (upgrade to read it).
    Opaque {
        /// Its protocol version.
        version: u32,
    },
}

/// What the replica tells its driver about an accepted entry beyond the entry itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A key was revoked as compromised since `since_ms`: entries it signed that the hub
    /// received from then on are suspect, including ones accepted earlier.
    KeyCompromised {
        /// Whose key.
        member: MemberId,
        /// The key.
        key_id: KeyId,
        /// From when it is distrusted.
        since_ms: i64,
    },
    /// The log announced a newer protocol version.
    ProtocolVersion {
        /// The version.
        version: u32,
    },
    /// A settings change rotated the hub's checkpoint key: checkpoints of more than `from_seq`
    /// entries are signed by the new key.
    HubKeyRotated {
        /// The new key's id.
        key_id: KeyId,
        /// The rotation's position.
        from_seq: u64,
    },
    /// An entry of a protocol version this code cannot read: upgrade.
    NeedsUpgrade {
        /// Its version.
        version: u32,
    },
}

/// An entry the replica accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    /// Its sequence number.
    pub seq: u64,
    /// When the hub received it.
    pub received_at_ms: i64,
    /// Its statement id, recomputed from the bytes.
    pub id: StatementId,
    /// The signed header (`None` for a newer protocol version).
    pub header: Option<Header>,
    /// The content.
    pub content: Content,
    /// What changed with it.
    pub notices: Vec<Notice>,
    /// For a relayed statement, where it was first logged (docs/PROTOCOL.md §3.10).
    pub origin: Option<Provenance>,
}

impl Accepted {
    /// The statement, if the body came and this code reads it.
    pub fn statement(&self) -> Option<&Statement> {
        match &self.content {
            Content::Statement(s) => Some(s),
            _ => None,
        }
    }
}

/// An entry decoded in parallel, before the in-order checks.
enum Form {
    Current(Box<ParsedEnvelope>),
    Newer(Box<OpaqueEnvelope>),
}

struct Parsed {
    seq: u64,
    received_at_ms: i64,
    form: Form,
    erased_by: Option<u64>,
    relay: Option<Relay>,
}

/// A hub's claim that entry `target` (statement `id`, of `kind`) was erased by entry `by`:
/// its body may be missing, and entry `by` must be an erasure of it (rule 13a).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ErasureClaim {
    target: u64,
    id: StatementId,
    kind: Kind,
}

impl Parsed {
    fn id(&self) -> StatementId {
        match &self.form {
            Form::Current(p) => p.id,
            Form::Newer(o) => o.id,
        }
    }
    fn key_ids(&self) -> &[KeyId] {
        match &self.form {
            Form::Current(p) => &p.key_ids,
            Form::Newer(o) => &o.key_ids,
        }
    }
    fn envelope(&self) -> &pb::Envelope {
        match &self.form {
            Form::Current(p) => &p.envelope,
            Form::Newer(o) => &o.envelope,
        }
    }
    fn pae(&self) -> &[u8] {
        match &self.form {
            Form::Current(p) => p.pae(),
            Form::Newer(o) => o.pae(),
        }
    }
}

/// The state a log's entries build: membership, Merkle frontier, receipt time, checkpoints.
#[derive(Clone, Debug)]
pub struct Replica {
    registry: Arc<Registry>,
    frontier: Frontier,
    last_received_ms: i64,
    filter: SyncFilter,
    reader: Reader,
    pinned_genesis: Option<StatementId>,
    checkpoints: checkpoints::Checkpoints,
    /// Membership entries (genesis included), encoded, when kept for snapshots.
    membership: Option<Vec<Vec<u8>>>,
    membership_entries: u64,
    /// Erasure claims not yet settled, by the position of the entry claimed to erase.
    erasure_claims: std::collections::BTreeMap<u64, Vec<ErasureClaim>>,
    /// The origins relayed from, by genesis id, each replaying the origin's own log.
    origins: std::collections::BTreeMap<StatementId, relay::Origin>,
    failed: Option<ReplicaError>,
}

impl Default for Replica {
    fn default() -> Self {
        Self::new()
    }
}

impl Replica {
    /// A replica that has seen nothing, reading every body.
    pub fn new() -> Self {
        Replica {
            registry: Arc::new(Registry::new()),
            frontier: Frontier::new(),
            last_received_ms: 0,
            filter: SyncFilter::default(),
            reader: Reader::Everything,
            pinned_genesis: None,
            checkpoints: checkpoints::Checkpoints::default(),
            membership: None,
            membership_entries: 0,
            erasure_claims: Default::default(),
            origins: Default::default(),
            failed: None,
        }
    }

    /// Bodies may be withheld for the entries `filter` does not select (and only for those).
    pub fn with_filter(mut self, filter: SyncFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Whose sync this is: a body of a restricted statement (§2.7) may be withheld exactly
    /// when the read rule ([`Header::readable_by`]) does not admit `reader`. The default,
    /// [`Reader::Everything`], requires every body the filter selects.
    pub fn reading_as(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    /// Entry 0 must be the genesis with this statement id.
    pub fn pin_genesis(mut self, genesis: StatementId) -> Self {
        self.pinned_genesis = Some(genesis);
        self
    }

    /// Keep the membership entries, for [`Replica::snapshot`].
    pub fn keeping_membership(mut self) -> Self {
        self.membership.get_or_insert_with(Vec::new);
        self
    }

    /// Membership as of the entries replayed.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Number of entries replayed (the next seq expected).
    pub fn size(&self) -> u64 {
        self.frontier.size().0
    }

    /// The Merkle root of the entries replayed.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The Merkle frontier.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// The receipt time of the last entry.
    pub fn last_received_ms(&self) -> i64 {
        self.last_received_ms
    }

    /// Membership entries replayed (genesis included).
    pub fn membership_entries(&self) -> u64 {
        self.membership_entries
    }

    /// The genesis statement id, once replayed.
    pub fn genesis(&self) -> Option<StatementId> {
        self.registry.coalition().map(|c| c.genesis_id)
    }

    /// Whether `key_id`, signing a statement the hub received at `received_at_ms`, is
    /// compromised as far as the membership replayed so far knows.
    pub fn is_compromised(&self, key_id: &KeyId, received_at_ms: i64) -> bool {
        !self
            .registry
            .compromised([key_id.as_str()], received_at_ms)
            .is_empty()
    }

    /// Replays the next entries of the log, in order: decoding and hashing in parallel, the
    /// in-order rules one entry at a time, then every signature not yet checked in parallel
    /// batches under the one signature rule. Returns the accepted entries, or the first
    /// refusal (the earliest entry, or a checkpoint reached), after which the replica refuses
    /// further input.
    pub fn append(
        &mut self,
        entries: Vec<Entry>,
        seen: &mut dyn SeenIds,
    ) -> Result<Vec<Accepted>, ReplicaError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.append_inner(entries, seen);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn append_inner(
        &mut self,
        entries: Vec<Entry>,
        seen: &mut dyn SeenIds,
    ) -> Result<Vec<Accepted>, ReplicaError> {
        let parsed: Vec<Result<Parsed, ReplicaError>> =
            entries.into_par_iter().map(parse_entry).collect();
        let mut accepted = Vec::with_capacity(parsed.len());
        let mut pending: Vec<(Parsed, Vec<VerifyingKey>)> = Vec::new();
        let mut stop = None;
        for p in parsed {
            // A position fault comes first: an undecodable entry out of place is reported as
            // the gap or disorder it is, at the position expected.
            let step = match p {
                Ok(p) => self.replay_one(p, seen),
                Err(e) => Err(self.misplaced(&e).unwrap_or(e)),
            };
            match step {
                Ok((entry, unchecked)) => {
                    if let Some(unchecked) = unchecked {
                        pending.push(unchecked);
                    }
                    accepted.push(entry);
                }
                Err(e) => {
                    stop = Some(e);
                    break;
                }
            }
        }
        // Every signature of the entries before the stop; the earliest failure wins.
        let mut checks = Vec::new();
        // For each check: which pending entry, and which of its signatures.
        let mut owner: Vec<(usize, usize)> = Vec::new();
        for (entry, (p, keys)) in pending.iter().enumerate() {
            for (index, (sig, key)) in p.envelope().signatures.iter().zip(keys).enumerate() {
                checks.push(SignatureCheck {
                    key,
                    message: p.pae(),
                    signature: &sig.sig,
                });
                owner.push((entry, index));
            }
        }
        if let Err(i) = verify_many(&checks) {
            let (entry, index) = owner[i];
            let p = &pending[entry].0;
            let key_id = p.key_ids()[index].clone();
            return Err(at(
                p.seq,
                crate::statement::SignatureError::BadSignature { index, key_id },
            ));
        }
        match stop {
            Some(e) => Err(e),
            None => Ok(accepted),
        }
    }

    /// The in-order rules for one decoded entry. Returns the accepted entry and, unless its
    /// signatures were checked already (membership statements are checked before they are
    /// applied), the keys they must verify with.
    #[allow(clippy::type_complexity)]
    fn replay_one(
        &mut self,
        mut p: Parsed,
        seen: &mut dyn SeenIds,
    ) -> Result<(Accepted, Option<(Parsed, Vec<VerifyingKey>)>), ReplicaError> {
        if let Some(relay) = p.relay.take() {
            return self.replay_relayed(p, relay, seen);
        }
        let position = Position {
            seq: p.seq,
            received_at_ms: p.received_at_ms,
        };
        let id = p.id();
        // The statement moves into the accepted entry; what is kept of `p` for the signature
        // batch is the envelope and its PAE.
        let owned = match &mut p.form {
            Form::Current(parsed) => parsed.statement.take(),
            Form::Newer(_) => None,
        };
        if let Some(by) = p.erased_by
            && by <= p.seq
        {
            return Err(at(
                p.seq,
                Fault::FalseErasure {
                    target: p.seq,
                    by,
                    why: "an erasure comes after what it erases".into(),
                },
            ));
        }
        match &p.form {
            Form::Current(parsed) => {
                let statement = owned.as_ref();
                let signers = self.check(
                    position,
                    id,
                    &parsed.header,
                    statement,
                    &parsed.key_ids,
                    p.erased_by.is_some(),
                    seen,
                )?;
                let keys: Vec<VerifyingKey> = signers.iter().map(|s| s.key).collect();
                // A withheld restricted opinion (a `seen`) changes nothing here: its
                // signatures are checked with the others (rule 17).
                let changes_membership = parsed.header.kind.is_governance() && owned.is_some();
                if changes_membership {
                    // Membership decides who may sign what follows: verify it before applying.
                    let mut whole = (**parsed).clone();
                    whole.statement = owned.clone();
                    whole.verify_with(&keys).map_err(|e| at(p.seq, e))?;
                }
                let notices = self.commit(
                    position,
                    id,
                    statement.map(|s| (s, &parsed.header.recipients)),
                    &signers,
                    Some(p.envelope()),
                    seen,
                )?;
                if let Some(by) = p.erased_by {
                    self.erasure_claims
                        .entry(by)
                        .or_default()
                        .push(ErasureClaim {
                            target: p.seq,
                            id,
                            kind: parsed.header.kind,
                        });
                }
                self.settle_erasure_claims(p.seq, statement)?;
                let accepted = Accepted {
                    seq: p.seq,
                    received_at_ms: p.received_at_ms,
                    id,
                    header: Some(parsed.header.clone()),
                    content: match owned {
                        Some(s) => Content::Statement(Box::new(s)),
                        None => Content::Withheld,
                    },
                    notices,
                    origin: None,
                };
                let unchecked = (!changes_membership).then_some((p, keys));
                Ok((accepted, unchecked))
            }
            Form::Newer(opaque) => {
                self.check_position(position, id, seen)?;
                let current = self
                    .registry
                    .coalition()
                    .map_or(PROTOCOL_VERSION, |c| c.protocol_version);
                if opaque.version > current {
                    return Err(at(
                        p.seq,
                        Fault::VersionNotAnnounced {
                            version: opaque.version,
                            current,
                        },
                    ));
                }
                let signers = self
                    .registry
                    .active_signers(&opaque.key_ids)
                    .map_err(|e| at(p.seq, Fault::NotEntitled(e)))?;
                let keys: Vec<VerifyingKey> = signers.iter().map(|s| s.key).collect();
                let version = opaque.version;
                let mut notices = self.commit(position, id, None, &signers, None, seen)?;
                self.settle_erasure_claims(p.seq, None)?;
                notices.push(Notice::NeedsUpgrade { version });
                let accepted = Accepted {
                    seq: p.seq,
                    received_at_ms: p.received_at_ms,
                    id,
                    header: None,
                    content: Content::Opaque { version },
                    notices,
                    origin: None,
                };
                Ok((accepted, Some((p, keys))))
            }
        }
    }

    /// The hub writer's entry point: a statement it is about to log at `position`, whose
    /// signatures were verified under the one rule with keys this replica's registry resolved
    /// (a [`Verified`]; key ids name one key forever, so the same ids resolving here means the
    /// same keys). Applies every other rule; on refusal nothing changed.
    pub fn append_verified(
        &mut self,
        verified: &Verified,
        position: Position,
        seen: &mut dyn SeenIds,
    ) -> Result<Accepted, ReplicaError> {
        let statement = Some(&verified.statement);
        let signers = self.check(
            position,
            verified.id,
            &verified.header,
            statement,
            &verified.key_ids,
            false,
            seen,
        )?;
        let notices = self.commit(
            position,
            verified.id,
            statement.map(|s| (s, &verified.header.recipients)),
            &signers,
            Some(&verified.envelope),
            seen,
        )?;
        Ok(Accepted {
            seq: position.seq,
            received_at_ms: position.received_at_ms,
            id: verified.id,
            header: Some(verified.header.clone()),
            content: Content::Statement(Box::new(verified.statement.clone())),
            notices,
            origin: None,
        })
    }

    /// For an entry that failed to decode: the position fault, if it is not where expected.
    fn misplaced(&self, e: &ReplicaError) -> Option<ReplicaError> {
        let Location::Entry(seq) = e.location else {
            return None;
        };
        let expected = self.frontier.size().0;
        match seq.cmp(&expected) {
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Greater => Some(at(expected, Fault::Gap { got: seq })),
            std::cmp::Ordering::Less => Some(at(expected, Fault::OutOfOrder { got: seq })),
        }
    }

    /// Rules 1, 2 and 6: position, receipt time, no statement twice.
    fn check_position(
        &self,
        position: Position,
        id: StatementId,
        seen: &dyn SeenIds,
    ) -> Result<(), ReplicaError> {
        let expected = self.frontier.size().0;
        if position.seq != expected {
            let fault = if position.seq > expected {
                Fault::Gap { got: position.seq }
            } else {
                Fault::OutOfOrder { got: position.seq }
            };
            return Err(at(expected, fault));
        }
        if position.received_at_ms < self.last_received_ms {
            return Err(at(
                position.seq,
                Fault::TimeWentBack {
                    got: position.received_at_ms,
                    previous: self.last_received_ms,
                },
            ));
        }
        if let Some(first) = seen.first_seq(&id) {
            return Err(at(position.seq, Fault::Duplicate { id, first }));
        }
        Ok(())
    }

    /// Every rule that reads but does not change the state, for a current-version statement:
    /// returns who must have made each signature. `claimed_erased`: the hub says a later
    /// entry erased this one (rule 13a), so its body may be missing (the claim is settled
    /// when that entry is replayed).
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        position: Position,
        id: StatementId,
        header: &Header,
        statement: Option<&Statement>,
        key_ids: &[KeyId],
        claimed_erased: bool,
        seen: &dyn SeenIds,
    ) -> Result<Vec<Signer>, ReplicaError> {
        let seq = position.seq;
        self.check_position(position, id, seen)?;
        if header.issued_at_ms > position.received_at_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(at(
                seq,
                Fault::FromTheFuture {
                    issued_at_ms: header.issued_at_ms,
                    received_at_ms: position.received_at_ms,
                    skew_ms: MAX_CLOCK_SKEW_MS,
                },
            ));
        }
        if let (Kind::Genesis, Some(pinned)) = (header.kind, self.pinned_genesis)
            && pinned != id
        {
            return Err(at(
                seq,
                Fault::WrongGenesis {
                    pinned: pinned.to_string(),
                    actual: id,
                },
            ));
        }
        if statement.is_none() {
            match header.kind {
                // A restricted opinion (a `seen`) is governance a reader it does not admit
                // gets without its body, like a restricted hash set (§2.7).
                kind if kind.is_governance() && !header.is_restricted() => {
                    return Err(at(
                        seq,
                        Fault::WithheldMembership {
                            kind: header.kind.name(),
                        },
                    ));
                }
                _ if claimed_erased => {}
                _ if (header.kind.is_governance() || self.filter.selects(header))
                    && header.readable_by(&self.reader) =>
                {
                    return Err(at(seq, Fault::WithheldSelected));
                }
                _ => {}
            }
        }
        self.registry
            .signing_keys(header, statement.map(|s| &s.body), key_ids)
            .map_err(|e| at(seq, Fault::NotEntitled(e)))
    }

    /// Applies an entry that passed the checks: membership changes (refused changes leave the
    /// state as it was), then the Merkle leaf, the id, the receipt time, and any checkpoint
    /// waiting for this size. `statement` comes with the recipients its header names.
    fn commit(
        &mut self,
        position: Position,
        id: StatementId,
        statement: Option<(&Statement, &Recipients)>,
        signers: &[Signer],
        envelope: Option<&pb::Envelope>,
        seen: &mut dyn SeenIds,
    ) -> Result<Vec<Notice>, ReplicaError> {
        let mut notices = Vec::new();
        if let Some((statement, recipients)) = statement
            && statement.kind().is_governance()
        {
            self.apply_governance(statement, recipients, id, position, signers)?;
            if let Body::Settings(change) = &statement.body
                && let Some(key) = change.new_hub_key()
            {
                notices.push(Notice::HubKeyRotated {
                    key_id: KeyId::of(key),
                    from_seq: position.seq,
                });
            }
            if let Body::Membership(change) = &statement.body {
                match &change.action {
                    Action::RevokeKey {
                        member,
                        key_id,
                        revocation: Revocation::Compromised { compromised_at_ms },
                    } => notices.push(Notice::KeyCompromised {
                        member: member.clone(),
                        key_id: key_id.clone(),
                        since_ms: *compromised_at_ms,
                    }),
                    Action::SetProtocolVersion(version) => {
                        notices.push(Notice::ProtocolVersion { version: *version })
                    }
                    _ => {}
                }
            }
            if let Some(kept) = &mut self.membership {
                kept.push(prost::Message::encode_to_vec(
                    &Entry {
                        seq: position.seq,
                        received_at_ms: position.received_at_ms,
                        statement_id: id.0.to_vec(),
                        envelope: envelope.cloned(),
                        erased_by: None,
                        relay: None,
                    }
                    .to_wire(),
                ));
            }
        }
        self.append_leaf(
            &crate::store::leaf_data(&id, position.received_at_ms),
            position,
            id,
            seen,
        )?;
        Ok(notices)
    }

    /// Rule 16's end: the leaf joins the frontier, the id is recorded, the receipt time
    /// becomes the last one, and a checkpoint waiting for this size is checked.
    fn append_leaf(
        &mut self,
        data: &[u8],
        position: Position,
        id: StatementId,
        seen: &mut dyn SeenIds,
    ) -> Result<(), ReplicaError> {
        self.frontier.append(leaf_hash(data));
        seen.insert(id, position.seq);
        self.last_received_ms = position.received_at_ms;
        // The root costs O(log n) hashes: only where a checkpoint waits for this size.
        let size = self.frontier.size().0;
        if self.checkpoints.waits_for(size) {
            self.checkpoints.reached(size, self.frontier.root())?;
        }
        Ok(())
    }

    /// Restores membership from a stored membership entry without re-deciding its position
    /// (the hub's start-up over its own durable store; `verify_signatures` false trusts what
    /// the hub fsynced itself).
    pub fn restore_membership(
        &mut self,
        entry: Entry,
        verify_signatures: bool,
    ) -> Result<(), ReplicaError> {
        let seq = entry.seq;
        if entry.relay.is_some() {
            return Err(at(
                seq,
                Fault::Usage("a relayed entry is never this hub's membership".into()),
            ));
        }
        let parsed = parse_entry(entry)?;
        let position = Position {
            seq: parsed.seq,
            received_at_ms: parsed.received_at_ms,
        };
        let Form::Current(parsed) = parsed.form else {
            return Err(at(seq, Fault::Usage("not a membership statement".into())));
        };
        let statement = parsed.statement.as_ref().ok_or_else(|| {
            at(
                seq,
                Fault::WithheldMembership {
                    kind: parsed.header.kind.name(),
                },
            )
        })?;
        let signers = self
            .registry
            .signing_keys(&parsed.header, Some(&statement.body), &parsed.key_ids)
            .map_err(|e| at(seq, Fault::NotEntitled(e)))?;
        if verify_signatures {
            let keys: Vec<VerifyingKey> = signers.iter().map(|s| s.key).collect();
            parsed.clone().verify_with(&keys).map_err(|e| at(seq, e))?;
        }
        self.apply_governance(
            statement,
            &parsed.header.recipients,
            parsed.id,
            position,
            &signers,
        )?;
        if let Some(kept) = &mut self.membership {
            kept.push(prost::Message::encode_to_vec(
                &Entry {
                    seq,
                    received_at_ms: position.received_at_ms,
                    statement_id: parsed.id.0.to_vec(),
                    envelope: Some(parsed.envelope.clone()),
                    erased_by: None,
                    relay: None,
                }
                .to_wire(),
            ));
        }
        Ok(())
    }

    /// Applies a governance statement (genesis, membership or settings change) to the
    /// registry, refused as a whole if the change is not possible here; then takes the hub
    /// keys the settings name for checking checkpoints.
    fn apply_governance(
        &mut self,
        statement: &Statement,
        recipients: &Recipients,
        id: StatementId,
        position: Position,
        signers: &[Signer],
    ) -> Result<(), ReplicaError> {
        let mut next = (*self.registry).clone();
        next.apply(statement, recipients, id, position, signers)
            .map_err(|e| {
                let fault = if statement.kind() == Kind::Settings {
                    Fault::SettingsRefused(e)
                } else {
                    Fault::Refused(e)
                };
                at(position.seq, fault)
            })?;
        self.registry = Arc::new(next);
        self.membership_entries += 1;
        if let Some(c) = self.registry.coalition() {
            self.checkpoints
                .set_hubs(&c.hub_name, &c.settings.hub_keys)
                .map_err(|e| at(position.seq, e))?;
        }
        Ok(())
    }

    /// Rule 13a: the erasure claims naming entry `seq` as the erasure are settled by its
    /// statement (`None`: its body is not readable here): it must be an erasure (an
    /// admin-quorum retraction with `erase`, whose entitlement the other rules checked) of the
    /// claimed statement, a hash set or risk signal logged before it.
    fn settle_erasure_claims(
        &mut self,
        seq: u64,
        statement: Option<&Statement>,
    ) -> Result<(), ReplicaError> {
        let Some(claims) = self.erasure_claims.remove(&seq) else {
            return Ok(());
        };
        for claim in claims {
            let why = match statement.map(|s| &s.body) {
                Some(Body::Retraction(r)) if r.erase && r.target == claim.id => {
                    if matches!(claim.kind, Kind::HashSet | Kind::RiskSignal) {
                        continue;
                    }
                    format!("a {} statement cannot be erased", claim.kind.name())
                }
                Some(Body::Retraction(r)) if r.erase => {
                    format!("it erases statement {}", r.target)
                }
                Some(Body::Retraction(_)) => "it is a retraction, not an erasure".to_owned(),
                Some(body) => format!("it is a {} statement", body.kind().name()),
                None => "its content is not readable here".to_owned(),
            };
            return Err(at(
                claim.target,
                Fault::FalseErasure {
                    target: claim.target,
                    by: seq,
                    why,
                },
            ));
        }
        Ok(())
    }

    /// The first erasure claim not settled yet: a driver that has replayed everything the
    /// hub sent (a caught-up sync, the end of an audit) calls this, since a claim naming an
    /// entry the hub never sent is a body withheld for nothing (rule 13a).
    pub fn unsettled_erasure(&self) -> Option<ReplicaError> {
        let (by, claims) = self.erasure_claims.iter().next()?;
        let claim = claims.first()?;
        Some(at(
            claim.target,
            Fault::FalseErasure {
                target: claim.target,
                by: *by,
                why: format!("the hub sent only {} entries", self.size()),
            },
        ))
    }

    /// Sets the position after restoring membership: the frontier of the first
    /// `frontier.size()` entries and the last receipt time.
    pub fn resume_at(&mut self, frontier: Frontier, last_received_ms: i64) {
        self.frontier = frontier;
        self.last_received_ms = last_received_ms;
    }
}

/// Decodes one entry (in parallel): the payload type's version, the envelope, strict header
/// and body decoding, and the statement id against the one the log recorded.
fn parse_entry(entry: Entry) -> Result<Parsed, ReplicaError> {
    let seq = entry.seq;
    let relay = entry
        .relay
        .map(Relay::from_wire)
        .transpose()
        .map_err(|reason| at(seq, Fault::RelayEvidence(reason)))?;
    let envelope = entry.envelope.ok_or_else(|| at(seq, Fault::NoEnvelope))?;
    let claimed = entry.statement_id;
    let check_id = |actual: StatementId| {
        if actual.0.as_slice() == claimed.as_slice() {
            Ok(())
        } else {
            Err(at(
                seq,
                Fault::Altered {
                    claimed: hex::encode(&claimed),
                    actual,
                },
            ))
        }
    };
    let form = if envelope.payload_type == PAYLOAD_TYPE {
        match ParsedEnvelope::parse(envelope.clone()) {
            Ok(parsed) => {
                check_id(parsed.id)?;
                Form::Current(Box::new(parsed))
            }
            // An altered entry is reported as altered, whatever else is wrong with it.
            Err(e) => {
                check_id(StatementId::of(&envelope.payload_type, &envelope.payload))?;
                return Err(at(seq, e));
            }
        }
    } else {
        // Any other version 1 spelling is refused by `payload_version` (no leading zeros), so
        // what parses here is a later version.
        let opaque = OpaqueEnvelope::parse(envelope).map_err(|e| at(seq, e))?;
        check_id(opaque.id)?;
        Form::Newer(Box::new(opaque))
    };
    Ok(Parsed {
        seq,
        received_at_ms: entry.received_at_ms,
        form,
        erased_by: entry.erased_by,
        relay,
    })
}
