//! Signed statements: the domain form of what a member says, parsed once from the exact bytes it signed.
//!
//! A [`Statement`] is decoded from an envelope's payload and validated here, so the rest of the
//! code never re-checks a length, an enum or a limit ("parse, don't validate"). Nothing in this
//! module touches the network, the store or the clock.

mod envelope;
mod filter;
mod hashes;
mod recipients;
mod signal;
mod signature;

pub use envelope::{
    OpaqueEnvelope, PAYLOAD_TYPE, ParsedEnvelope, SignatureError, StatementId, Verified, pae,
    payload_version, sign_statement, sign_statement_for,
};
pub use filter::SyncFilter;
pub use hashes::{Category, HashEntry, HashType, Label, MAX_LABELS};
pub use recipients::{MAX_RECIPIENTS, Reader, Recipients};
pub use signal::{Indicator, RiskSignal, Severity, SignalCategory};
pub use signature::{BATCH_SIZE, SignatureCheck, verify_many, verify_one};

use crate::lifecycle::{Opinion, Retraction};
use crate::membership::{Change, Genesis, KeyId, MemberId};
use crate::pb;
use crate::settings::SettingsChange;
use prost::Message;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Largest accepted body (the serialized statement body), in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;
/// Most entries one hash set may carry.
pub const MAX_HASH_SET_ENTRIES: usize = 100_000;
/// Most signatures one envelope may carry.
pub const MAX_SIGNATURES: usize = 16;
/// Length of a statement nonce, in bytes.
pub const NONCE_LEN: usize = 16;
/// Most characters in a hash set's description.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

/// A validated statement: who says it, with which key, when, and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// The member that makes the statement.
    pub issuer: MemberId,
    /// The key the issuer signs it with.
    pub key_id: KeyId,
    /// When the issuer made it, milliseconds since the Unix epoch.
    pub issued_at_ms: i64,
    /// Random bytes that make two otherwise identical statements distinct.
    pub nonce: [u8; NONCE_LEN],
    /// What is said.
    pub body: Body,
}

/// The content of a statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// A signed set of hashes of known material.
    HashSet(HashSet),
    /// An emerging-risk signal.
    RiskSignal(RiskSignal),
    /// The founding statement of a hub's log.
    Genesis(Genesis),
    /// A membership change signed by admins.
    Membership(Change),
    /// A settings change signed by admins.
    Settings(SettingsChange),
    /// A retraction of a statement or some of its entries (see [`crate::lifecycle`]).
    Retraction(Retraction),
    /// An opinion on an entry, or an admin-quorum quarantine or release (see
    /// [`crate::lifecycle`]).
    Opinion(Opinion),
}

/// The kinds of statement, as filters and summaries name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`Body::HashSet`].
    HashSet,
    /// [`Body::RiskSignal`].
    RiskSignal,
    /// [`Body::Genesis`].
    Genesis,
    /// [`Body::Membership`].
    Membership,
    /// [`Body::Settings`].
    Settings,
    /// [`Body::Retraction`].
    Retraction,
    /// [`Body::Opinion`].
    Opinion,
}

/// A set of hashes of known material.
#[derive(Clone, Debug, PartialEq)]
pub struct HashSet {
    /// Optional human description.
    pub description: String,
    /// The hashes, at least one.
    pub entries: Vec<HashEntry>,
    /// When the entries stop matching (ms since the Unix epoch); `None`: never.
    pub expires_at_ms: Option<i64>,
}

/// Why a payload is not a valid statement. Each variant names the offending field.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum StatementError {
    /// The request is larger than the hub accepts.
    #[error("{what} is {size}, over the limit of {limit}; split it into smaller statements")]
    TooLarge {
        /// What is too large (payload bytes, entries, ...).
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A field has a value the protocol does not allow.
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the field, e.g. `hash_set.entries[3].value`.
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
}

impl StatementError {
    /// A field error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StatementError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Most distinct labels a statement may carry (they are listed in its header).
pub const MAX_HEADER_LABELS: usize = 256;

/// The signed part of a statement: who says it, with which key, when, what kind of thing it
/// is, what a sync filter selects it by, and the digest of the body. A reader holding only the
/// header can check the signatures and the entitlement, and whether a filter selects it.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// The member that makes the statement.
    pub issuer: MemberId,
    /// The key the issuer signs it with.
    pub key_id: KeyId,
    /// When the issuer made it, milliseconds since the Unix epoch.
    pub issued_at_ms: i64,
    /// Random bytes that make two otherwise identical statements distinct.
    pub nonce: [u8; NONCE_LEN],
    /// The body's kind.
    pub kind: Kind,
    /// Every hash type the body carries, ascending, each once.
    pub hash_types: Vec<HashType>,
    /// Every label on the body's hashes, each once, in ascending byte order.
    pub labels: Vec<Label>,
    /// SHA-256 of the serialized body.
    pub body_sha256: [u8; 32],
    /// Length of the serialized body.
    pub body_bytes: u64,
    /// The only readers of the body besides its issuer and auditors (§2.7); empty: everyone.
    pub recipients: Recipients,
}

/// A statement serialized by its author: the signed header bytes and the body bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// The serialized `coalition.v1.Statement` (the envelope's payload).
    pub header: Vec<u8>,
    /// The serialized `coalition.v1.StatementBody` (the envelope's body).
    pub body: Vec<u8>,
}

/// Decodes `bytes` as `M` and refuses anything but its canonical encoding: re-encoding the
/// decoded message must give the same bytes. This refuses unknown and reserved fields, a field
/// given twice (or two members of a oneof), unpacked repeated scalars, fields out of order,
/// non-minimal varints and explicitly encoded default values, so that every reader sees the
/// same message in the same bytes.
fn decode_canonical<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M, StatementError> {
    let message = M::decode(bytes)
        .map_err(|e| StatementError::invalid(what, format!("not a valid protobuf message: {e}")))?;
    if message.encoded_len() != bytes.len() || message.encode_to_vec() != bytes {
        return Err(StatementError::invalid(
            what,
            "not in canonical encoding (an unknown or reserved field, a field given twice or out of order, an unpacked repeated field, a non-minimal varint or an encoded default value); serialize it once with a protobuf library at protocol version 1",
        ));
    }
    Ok(message)
}

impl Header {
    /// Decodes and validates a payload (the exact signed header bytes), canonical encoding only.
    pub fn decode(payload: &[u8]) -> Result<Self, StatementError> {
        if payload.len() > MAX_HEADER_BYTES {
            return Err(StatementError::TooLarge {
                what: "payload (statement header) bytes",
                size: payload.len(),
                limit: MAX_HEADER_BYTES,
            });
        }
        let wire: pb::Statement = decode_canonical(payload, "payload")?;
        let issuer = MemberId::parse(&wire.issuer)
            .map_err(|e| StatementError::invalid("issuer", e.to_string()))?;
        let key_id = KeyId::parse(&wire.key_id)
            .map_err(|e| StatementError::invalid("key_id", e.to_string()))?;
        if wire.issued_at_ms <= 0 {
            return Err(StatementError::invalid(
                "issued_at_ms",
                "must be a positive Unix time in milliseconds",
            ));
        }
        let nonce: [u8; NONCE_LEN] = wire.nonce.as_slice().try_into().map_err(|_| {
            StatementError::invalid(
                "nonce",
                format!("must be {NONCE_LEN} bytes, got {}", wire.nonce.len()),
            )
        })?;
        let kind = Kind::from_wire(wire.kind).ok_or_else(|| {
            StatementError::invalid(
                "kind",
                format!(
                    "unknown or unspecified statement kind {} (expected hash_set, risk_signal, genesis, membership, settings or retraction)",
                    wire.kind
                ),
            )
        })?;
        let hash_types = wire
            .hash_types
            .iter()
            .map(|t| {
                HashType::from_wire(*t).ok_or_else(|| {
                    StatementError::invalid("hash_types", format!("unknown hash type {t}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !hash_types.windows(2).all(|w| w[0] < w[1]) {
            return Err(StatementError::invalid(
                "hash_types",
                "must be ascending, each type once",
            ));
        }
        if wire.labels.len() > MAX_HEADER_LABELS {
            return Err(StatementError::TooLarge {
                what: "distinct labels",
                size: wire.labels.len(),
                limit: MAX_HEADER_LABELS,
            });
        }
        if !wire.labels.windows(2).all(|w| w[0] < w[1]) {
            return Err(StatementError::invalid(
                "labels",
                "must be in ascending byte order, each label once",
            ));
        }
        let labels = wire
            .labels
            .iter()
            .map(|l| {
                Label::parse(l)
                    .ok()
                    .filter(|parsed| parsed.to_string() == *l)
                    .ok_or_else(|| {
                        StatementError::invalid(
                            "labels",
                            format!("'{l}' is not a label in its canonical spelling"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let body_sha256: [u8; 32] = wire.body_sha256.as_slice().try_into().map_err(|_| {
            StatementError::invalid(
                "body_sha256",
                format!("must be 32 bytes, got {}", wire.body_sha256.len()),
            )
        })?;
        if wire.body_bytes == 0 || wire.body_bytes > MAX_PAYLOAD_BYTES as u64 {
            return Err(StatementError::invalid(
                "body_bytes",
                format!("must be 1..={MAX_PAYLOAD_BYTES}, got {}", wire.body_bytes),
            ));
        }
        let recipients = Recipients::decode(&wire.recipients, &issuer)?;
        recipients.check_header(kind, !hash_types.is_empty(), !labels.is_empty())?;
        Ok(Header {
            issuer,
            key_id,
            issued_at_ms: wire.issued_at_ms,
            nonce,
            kind,
            hash_types,
            labels,
            body_sha256,
            body_bytes: wire.body_bytes,
            recipients,
        })
    }

    /// True if the header names recipients: only they, the issuer and auditors read the body.
    pub fn is_restricted(&self) -> bool {
        !self.recipients.is_everyone()
    }

    /// Whether `reader` may read this statement's body: [`Recipients::admit`], the one rule.
    pub fn readable_by(&self, reader: &Reader) -> bool {
        self.recipients.admit(&self.issuer, reader)
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::Statement {
        pb::Statement {
            issuer: self.issuer.to_string(),
            key_id: self.key_id.to_string(),
            issued_at_ms: self.issued_at_ms,
            nonce: self.nonce.to_vec(),
            kind: self.kind.to_wire() as i32,
            hash_types: self.hash_types.iter().map(|t| t.to_wire() as i32).collect(),
            labels: self.labels.iter().map(ToString::to_string).collect(),
            body_sha256: self.body_sha256.to_vec(),
            body_bytes: self.body_bytes,
            recipients: self.recipients.to_wire(),
        }
    }

    /// Checks that `body` (decoded from `body_bytes`) is the body this header signs for: the
    /// digest, the length, the kind, the hash types and the labels (a restricted header lists
    /// none, §2.7).
    pub fn check_body(&self, body: &Body, body_bytes: &[u8]) -> Result<(), StatementError> {
        let digest: [u8; 32] = Sha256::digest(body_bytes).into();
        if digest != self.body_sha256 || body_bytes.len() as u64 != self.body_bytes {
            return Err(StatementError::invalid(
                "body",
                "its SHA-256 or length is not what the signed header names: the body was altered or swapped",
            ));
        }
        let (kind, hash_types, labels) = body.summary();
        if kind != self.kind {
            return Err(StatementError::invalid(
                "kind",
                format!(
                    "the header says {} but the body is a {}",
                    self.kind.name(),
                    kind.name()
                ),
            ));
        }
        if self.is_restricted() {
            return check_restricted_opinion(body);
        }
        if hash_types != self.hash_types {
            return Err(StatementError::invalid(
                "hash_types",
                "the header does not list exactly the hash types the body carries",
            ));
        }
        if labels != self.labels {
            return Err(StatementError::invalid(
                "labels",
                "the header does not list exactly the labels the body's hashes carry",
            ));
        }
        Ok(())
    }
}

/// A restricted opinion is a member's `seen` or the `withdrawn` that withdraws one
/// (docs/PROTOCOL.md §2.7 "Seen"); every other opinion goes to every member.
fn check_restricted_opinion(body: &Body) -> Result<(), StatementError> {
    use crate::lifecycle::Verdict;
    match body {
        Body::Opinion(o)
            if o.admin_quorum || !matches!(o.verdict, Verdict::Seen | Verdict::Withdrawn) =>
        {
            Err(StatementError::invalid(
                "recipients",
                format!(
                    "a {} opinion cannot be restricted: only a member's seen opinion (and the withdrawn that withdraws one) may name recipients; other opinions go to every member",
                    o.verdict.name()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// Largest accepted header (the signed payload), in bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

impl Body {
    /// Decodes and validates a serialized `StatementBody`, canonical encoding only.
    pub fn decode(bytes: &[u8]) -> Result<Self, StatementError> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(StatementError::TooLarge {
                what: "body bytes",
                size: bytes.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        let wire: pb::StatementBody = decode_canonical(bytes, "body")?;
        Ok(match wire.body {
            Some(pb::statement_body::Body::HashSet(set)) => Body::HashSet(HashSet::from_wire(set)?),
            Some(pb::statement_body::Body::RiskSignal(signal)) => {
                Body::RiskSignal(RiskSignal::from_wire(signal)?)
            }
            Some(pb::statement_body::Body::Genesis(genesis)) => {
                Body::Genesis(Genesis::from_wire(genesis)?)
            }
            Some(pb::statement_body::Body::Membership(change)) => {
                Body::Membership(Change::from_wire(change)?)
            }
            Some(pb::statement_body::Body::Settings(change)) => {
                Body::Settings(SettingsChange::from_wire(change)?)
            }
            Some(pb::statement_body::Body::Retraction(r)) => {
                Body::Retraction(Retraction::from_wire(r)?)
            }
            Some(pb::statement_body::Body::Opinion(o)) => Body::Opinion(Opinion::from_wire(o)?),
            None => {
                return Err(StatementError::invalid(
                    "body",
                    "missing: set hash_set, risk_signal, genesis, membership, settings, retraction or opinion",
                ));
            }
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::StatementBody {
        pb::StatementBody {
            body: Some(match self {
                Body::HashSet(set) => pb::statement_body::Body::HashSet(set.to_wire()),
                Body::RiskSignal(signal) => pb::statement_body::Body::RiskSignal(signal.to_wire()),
                Body::Genesis(genesis) => pb::statement_body::Body::Genesis(genesis.to_wire()),
                Body::Membership(change) => pb::statement_body::Body::Membership(change.to_wire()),
                Body::Settings(change) => pb::statement_body::Body::Settings(change.to_wire()),
                Body::Retraction(r) => pb::statement_body::Body::Retraction(r.to_wire()),
                Body::Opinion(o) => pb::statement_body::Body::Opinion(o.to_wire()),
            }),
        }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Body::HashSet(_) => Kind::HashSet,
            Body::RiskSignal(_) => Kind::RiskSignal,
            Body::Genesis(_) => Kind::Genesis,
            Body::Membership(_) => Kind::Membership,
            Body::Settings(_) => Kind::Settings,
            Body::Retraction(_) => Kind::Retraction,
            Body::Opinion(_) => Kind::Opinion,
        }
    }

    /// When a hash set's or a risk signal's entries stop matching (`None`: never, and for
    /// every other kind).
    pub fn expires_at_ms(&self) -> Option<i64> {
        match self {
            Body::HashSet(set) => set.expires_at_ms,
            Body::RiskSignal(signal) => signal.expires_at_ms,
            _ => None,
        }
    }

    /// Every hash the body carries: a set's entries, or a signal's hash indicators.
    pub fn hashes(&self) -> Box<dyn Iterator<Item = &HashEntry> + '_> {
        match self {
            Body::HashSet(set) => Box::new(set.entries.iter()),
            Body::RiskSignal(signal) => {
                Box::new(signal.indicators.iter().filter_map(|i| match i {
                    Indicator::Hash(h) => Some(h),
                    _ => None,
                }))
            }
            Body::Genesis(_)
            | Body::Membership(_)
            | Body::Settings(_)
            | Body::Retraction(_)
            | Body::Opinion(_) => Box::new(std::iter::empty()),
        }
    }

    /// What the header lists for this body: kind, distinct hash types ascending, distinct
    /// labels in byte order (a header with more than [`MAX_HEADER_LABELS`] is refused when
    /// decoded).
    fn summary(&self) -> (Kind, Vec<HashType>, Vec<Label>) {
        let mut types = std::collections::BTreeSet::new();
        let mut labels = std::collections::BTreeMap::new();
        for h in self.hashes() {
            types.insert(h.hash_type);
            for l in &h.labels {
                labels.entry(l.to_string()).or_insert_with(|| l.clone());
            }
        }
        (
            self.kind(),
            types.into_iter().collect(),
            labels.into_values().collect(),
        )
    }
}

impl Statement {
    /// Assembles a statement from a verified header and the body it signs for.
    pub fn from_parts(header: &Header, body_bytes: &[u8]) -> Result<Self, StatementError> {
        let body = Body::decode(body_bytes)?;
        header.check_body(&body, body_bytes)?;
        Ok(Statement {
            issuer: header.issuer.clone(),
            key_id: header.key_id.clone(),
            issued_at_ms: header.issued_at_ms,
            nonce: header.nonce,
            body,
        })
    }

    /// Serializes the statement once, as its author signs it: the body, then the header that
    /// names the body's digest. Unrestricted: every member reads it.
    pub fn encode(&self) -> Encoded {
        self.encode_for(&Recipients::everyone())
    }

    /// Serializes the statement once for `recipients` (§2.7): a restricted header lists the
    /// recipients and neither hash types nor labels.
    pub fn encode_for(&self, recipients: &Recipients) -> Encoded {
        let body = self.body.to_wire().encode_to_vec();
        let (kind, mut hash_types, mut labels) = self.body.summary();
        if !recipients.is_everyone() {
            hash_types.clear();
            labels.clear();
        }
        let header = Header {
            issuer: self.issuer.clone(),
            key_id: self.key_id.clone(),
            issued_at_ms: self.issued_at_ms,
            nonce: self.nonce,
            kind,
            hash_types,
            labels,
            body_sha256: Sha256::digest(&body).into(),
            body_bytes: body.len() as u64,
            recipients: recipients.clone(),
        };
        Encoded {
            header: header.to_wire().encode_to_vec(),
            body,
        }
    }

    /// Which kind of statement this is.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// Every hash the statement carries: a set's entries, or a signal's hash indicators.
    pub fn hashes(&self) -> Box<dyn Iterator<Item = &HashEntry> + '_> {
        self.body.hashes()
    }
}

impl Kind {
    /// The wire enum value.
    pub fn to_wire(self) -> pb::StatementKind {
        match self {
            Kind::HashSet => pb::StatementKind::HashSet,
            Kind::RiskSignal => pb::StatementKind::RiskSignal,
            Kind::Genesis => pb::StatementKind::Genesis,
            Kind::Membership => pb::StatementKind::Membership,
            Kind::Settings => pb::StatementKind::Settings,
            Kind::Retraction => pb::StatementKind::Retraction,
            Kind::Opinion => pb::StatementKind::Opinion,
        }
    }

    /// Parses a wire enum value; `None` for unspecified or unknown values.
    pub fn from_wire(value: i32) -> Option<Kind> {
        match pb::StatementKind::try_from(value).ok()? {
            pb::StatementKind::HashSet => Some(Kind::HashSet),
            pb::StatementKind::RiskSignal => Some(Kind::RiskSignal),
            pb::StatementKind::Genesis => Some(Kind::Genesis),
            pb::StatementKind::Membership => Some(Kind::Membership),
            pb::StatementKind::Settings => Some(Kind::Settings),
            pb::StatementKind::Retraction => Some(Kind::Retraction),
            pb::StatementKind::Opinion => Some(Kind::Opinion),
            pb::StatementKind::Unspecified => None,
        }
    }

    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::HashSet => "hash_set",
            Kind::RiskSignal => "risk_signal",
            Kind::Genesis => "genesis",
            Kind::Membership => "membership",
            Kind::Settings => "settings",
            Kind::Retraction => "retraction",
            Kind::Opinion => "opinion",
        }
    }

    /// Governance: the genesis, membership and settings changes, and the lifecycle statements
    /// (retractions, opinions). Every reader receives them whole (filters always select them, so a hub
    /// cannot keep a retraction from anyone), they replay into the registry (membership,
    /// settings, [`crate::lifecycle::Lifecycle`]), and the hub restores them at start-up.
    /// Quotas never count the admins' kinds ([`Kind::is_lifecycle`] ones are counted).
    pub fn is_governance(self) -> bool {
        matches!(
            self,
            Kind::Genesis | Kind::Membership | Kind::Settings | Kind::Retraction | Kind::Opinion
        )
    }

    /// Lifecycle statements (retractions, opinions): governance any member may make, so
    /// quotas count them as submissions.
    pub fn is_lifecycle(self) -> bool {
        matches!(self, Kind::Retraction | Kind::Opinion)
    }

    /// Parses a name (`hash_set`, `risk_signal`, `genesis`, `membership`, `settings`,
    /// `retraction`, `opinion`).
    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::HashSet,
            Kind::RiskSignal,
            Kind::Genesis,
            Kind::Membership,
            Kind::Settings,
            Kind::Retraction,
            Kind::Opinion,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

impl HashSet {
    fn from_wire(set: pb::HashSet) -> Result<Self, StatementError> {
        if set.entries.is_empty() {
            return Err(StatementError::invalid(
                "hash_set.entries",
                "a hash set needs at least one entry",
            ));
        }
        if set.entries.len() > MAX_HASH_SET_ENTRIES {
            return Err(StatementError::TooLarge {
                what: "hash_set entries",
                size: set.entries.len(),
                limit: MAX_HASH_SET_ENTRIES,
            });
        }
        let description = check_text(
            "hash_set.description",
            set.description,
            0,
            MAX_DESCRIPTION_CHARS,
        )?;
        let entries = set
            .entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| HashEntry::from_wire_at(e, || format!("hash_set.entries[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if set.expires_at_ms.is_some_and(|t| t <= 0) {
            return Err(StatementError::invalid(
                "hash_set.expires_at_ms",
                "must be a positive Unix time in ms when set",
            ));
        }
        Ok(HashSet {
            description,
            entries,
            expires_at_ms: set.expires_at_ms,
        })
    }

    fn to_wire(&self) -> pb::HashSet {
        pb::HashSet {
            description: self.description.clone(),
            entries: self.entries.iter().map(HashEntry::to_wire).collect(),
            expires_at_ms: self.expires_at_ms,
        }
    }
}

/// Checks a free-text field's length in characters and rejects control characters other
/// than newline and tab.
pub(crate) fn check_text(
    field: &str,
    text: String,
    min: usize,
    max: usize,
) -> Result<String, StatementError> {
    let chars = text.chars().count();
    if chars < min || chars > max {
        return Err(StatementError::invalid(
            field,
            format!("must be {min}..={max} characters, got {chars}"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(StatementError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(text)
}
