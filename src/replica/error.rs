//! Why the replica refuses an entry or a checkpoint, and where.

use crate::membership::EntryError;
use crate::statement::{SignatureError, StatementError, StatementId};
use std::fmt;
use thiserror::Error;

/// What a refusal points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The log entry with this sequence number.
    Entry(u64),
    /// The checkpoint of this tree size.
    Checkpoint(u64),
    /// A checkpoint saved earlier (`--previous`, a member's saved checkpoint), of this size.
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
            Location::Input => f.write_str("log"),
        }
    }
}

/// Why an entry or a checkpoint is refused: the replica rules of docs/PROTOCOL.md §4 (rule
/// numbers below are that list's).
#[derive(Clone, Debug, Error, PartialEq)]
pub enum Fault {
    /// Rule 7: entries come in sequence.
    #[error("missing: the next entry present is {got}")]
    Gap {
        /// The seq that came instead.
        got: u64,
    },
    /// Rule 7: no entry twice, none out of order.
    #[error("entry {got} appears again or out of order here")]
    OutOfOrder {
        /// The seq that came instead.
        got: u64,
    },
    /// Rule 8: receipt times never go backwards.
    #[error(
        "received at {got} ms, before the entry before it ({previous} ms): receipt times never go backwards"
    )]
    TimeWentBack {
        /// This entry's receipt time.
        got: i64,
        /// The previous entry's.
        previous: i64,
    },
    /// Rule 1: the entry carries an envelope.
    #[error("no envelope")]
    NoEnvelope,
    /// Rule 3: the statement id is the hash of the signed bytes.
    #[error(
        "recorded statement id {claimed} is not the hash {actual} of its envelope: the entry was altered"
    )]
    Altered {
        /// What the log recorded (hex).
        claimed: String,
        /// What the bytes hash to.
        actual: StatementId,
    },
    /// Rules 2, 4, 5 and 6: payload type, signature shape, strict decoding and field rules.
    #[error("not a valid statement: {0}")]
    Invalid(#[from] StatementError),
    /// Rule 9: a statement is logged once.
    #[error("statement {id} was logged already, at entry {first}")]
    Duplicate {
        /// The statement.
        id: StatementId,
        /// Where it was first logged.
        first: u64,
    },
    /// Rule 11: not dated after its receipt by more than the allowed clock skew.
    #[error(
        "issued at {issued_at_ms} ms, more than {skew_ms} ms after the hub received it at {received_at_ms} ms"
    )]
    FromTheFuture {
        /// The statement's date.
        issued_at_ms: i64,
        /// Its receipt time.
        received_at_ms: i64,
        /// The allowed skew.
        skew_ms: i64,
    },
    /// Rules 10 and 14: entitlement at this position.
    #[error("not entitled here: {0}")]
    NotEntitled(EntryError),
    /// Rules 15 and 17: every signature verifies under the one rule.
    #[error("{0}")]
    Signature(#[from] SignatureError),
    /// Rule 16: a membership change must be possible in the state it applies to.
    #[error("refused change: {0}")]
    Refused(EntryError),
    /// Rule 13: a body may be withheld only from a reader whose filter does not select it, or
    /// that the read rule does not admit (a restricted statement naming other recipients).
    #[error(
        "the body is withheld, but the signed header shows this sync's filter selects it and that this reader may read it (it is unrestricted, or names this reader or is by it): the hub is withholding a selected statement"
    )]
    WithheldSelected,
    /// Rule 13a: the hub says an entry was erased by a later entry that is not an erasure of
    /// it (docs/PROTOCOL.md §2.8).
    #[error(
        "the hub claims entry {target} was erased by entry {by}, but entry {by} is not an admin-quorum erasure of it ({why}): the hub is withholding a body under a false erasure claim"
    )]
    FalseErasure {
        /// The entry whose body was withheld.
        target: u64,
        /// The entry the hub named.
        by: u64,
        /// What entry `by` is instead.
        why: String,
    },
    /// Rule 13: genesis and membership statements always come whole.
    #[error("a {kind} statement's body is withheld; it must be sent whole")]
    WithheldMembership {
        /// The statement kind.
        kind: &'static str,
    },
    /// Rule 10: a newer protocol version only once the log announced it.
    #[error(
        "a statement of protocol version {version}, which this log has not announced (it is at version {current})"
    )]
    VersionNotAnnounced {
        /// The statement's version.
        version: u32,
        /// The log's.
        current: u32,
    },
    /// Rule 18: signed by the hub key the genesis names, with the hub's name as origin.
    #[error("not validly signed by the hub key of the genesis: {0}")]
    CheckpointSignature(String),
    /// Rule 18a: a checkpoint after a hub key rotation signed by a key the log retired.
    #[error(
        "signed by hub key {key_id}, which the log replaced at entry {rotated_at}: a checkpoint of {size} entries must be signed by the newer hub key (the old key may be lost or leaked)"
    )]
    RetiredHubKey {
        /// The checkpoint's size.
        size: u64,
        /// The retired key's note key id (hex).
        key_id: String,
        /// Where the log rotated it out.
        rotated_at: u64,
    },
    /// Rule 18a: a checkpoint beyond the entries replayed, not signed by the hub key known
    /// for it: the log may have rotated the hub key in the entries not replayed yet.
    #[error(
        "not signed by the hub key this replica knows; it covers {size} entries and only {here} are replayed: if the log rotated the hub key after entry {here}, sync again to replay those entries first"
    )]
    UnknownHubKey {
        /// The checkpoint's size.
        size: u64,
        /// Entries replayed.
        here: u64,
    },
    /// Rule 16a: a settings change must be possible in the state it applies to.
    #[error("refused settings change: {0}")]
    SettingsRefused(EntryError),
    /// Rule 18: there must be a genesis to take the hub key from.
    #[error("cannot be checked: the log has no genesis naming the hub key")]
    NoHubKey,
    /// Rules 19 and 20: one root per size.
    #[error(
        "split view: the hub signed two different roots for size {size} ({first} and {second})"
    )]
    SplitView {
        /// The size.
        size: u64,
        /// One root (hex).
        first: String,
        /// The other (hex).
        second: String,
    },
    /// Rules 19 and 20: the root is the root of the entries replayed.
    #[error(
        "signed root {signed} is not the root {computed} of the log's first {size} entries: history was rewritten"
    )]
    RootMismatch {
        /// The size.
        size: u64,
        /// The signed root (hex).
        signed: String,
        /// The recomputed root (hex).
        computed: String,
    },
    /// Rule 20: a newer checkpoint extends the older ones.
    #[error("{0}")]
    Inconsistent(String),
    /// Rule 21: a checkpoint covers entries that never came.
    #[error(
        "covers {size} entries but the log has only {entries}: entries were dropped or the log is truncated"
    )]
    Truncated {
        /// The checkpoint's size.
        size: u64,
        /// Entries replayed.
        entries: u64,
    },
    /// Rule 21: the log ends with entries no signed checkpoint covers.
    #[error(
        "the log has {entries} entries but its last signed checkpoint covers {size}: the last entries are not proven"
    )]
    Unproven {
        /// Entries replayed.
        entries: u64,
        /// The largest checkpoint verified.
        size: u64,
    },
    /// Rule 21: a log must start with its genesis.
    #[error("no entries: a log starts with its genesis")]
    Empty,
    /// Rule 12: the genesis is not the one pinned.
    #[error("genesis {actual} is not the pinned genesis {pinned}: this is another coalition's log")]
    WrongGenesis {
        /// What was pinned (hex).
        pinned: String,
        /// What the log has.
        actual: StatementId,
    },
    /// Rule 20: a checkpoint smaller than what this replica already holds: the server is behind (a
    /// lagging mirror, a hub restored from a backup) — not by itself a fork.
    #[error(
        "the server is behind: its signed checkpoint covers {size} entries, this replica has already verified {have}"
    )]
    Behind {
        /// The checkpoint's size.
        size: u64,
        /// What the replica holds.
        have: u64,
    },
    /// docs/PROTOCOL.md §3.8 (the auditor): a cosignature line names a witness of the policy in
    /// force at the checkpoint but does not verify with that witness's key there.
    #[error(
        "the cosignature line naming witness {witness} does not verify with its key in the witness policy in force at this checkpoint: a forged cosignature"
    )]
    ForgedCosignature {
        /// The witness the line names.
        witness: String,
    },
    /// Rule 22: a relayed statement's origin is not a trusted origin of the settings replayed
    /// so far (docs/PROTOCOL.md §3.10).
    #[error(
        "relays a statement of the hub with genesis {origin}, which the coalition's settings do not name as a trusted origin"
    )]
    UntrustedOrigin {
        /// The origin's genesis id (hex).
        origin: String,
    },
    /// Rules 22 and 24: the relay's provenance or evidence is malformed (a gap leaf of the
    /// wrong length, an origin that does not start with its genesis, a hub name other than the
    /// one the settings trust).
    #[error("relay evidence: {0}")]
    RelayEvidence(String),
    /// Rules 24 and 25: the origin's own log, replayed from the relayed statements, refuses
    /// this one (or the origin checkpoint it carries).
    #[error("relayed from '{hub}', whose log refuses it there: {error}")]
    Relayed {
        /// The origin's hub name.
        hub: String,
        /// The origin replica's refusal, located in the origin's log.
        error: Box<ReplicaError>,
    },
    /// Rule 26: statements relayed from an origin that no origin checkpoint has proven yet,
    /// when the replay has everything the hub sent.
    #[error(
        "the statements relayed from '{hub}' up to its entry {size} are proven in its signed checkpoints only up to {proven}: the relay withheld the origin's checkpoint"
    )]
    RelayUnproven {
        /// The origin's hub name.
        hub: String,
        /// Origin entries replayed.
        size: u64,
        /// The largest origin checkpoint accepted.
        proven: u64,
    },
    /// Input given in the wrong order or state (a bug in the driver).
    #[error("{0}")]
    Usage(String),
}

/// A refusal: where, and why.
#[derive(Clone, Debug, Error, PartialEq)]
#[error("{location}: {fault}")]
pub struct ReplicaError {
    /// The entry or checkpoint refused.
    pub location: Location,
    /// Why.
    pub fault: Fault,
}

impl ReplicaError {
    /// A refusal of `location`.
    pub fn new(location: Location, fault: impl Into<Fault>) -> Self {
        ReplicaError {
            location,
            fault: fault.into(),
        }
    }

    /// True when the server is merely behind (retry, or another server), not lying.
    pub fn is_behind(&self) -> bool {
        matches!(self.fault, Fault::Behind { .. })
    }
}

pub(crate) fn at(seq: u64, fault: impl Into<Fault>) -> ReplicaError {
    ReplicaError::new(Location::Entry(seq), fault)
}
