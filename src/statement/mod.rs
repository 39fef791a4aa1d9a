//! Signed statements: the domain form of what a member says, parsed once from the exact bytes it signed.
//!
//! A [`Statement`] is decoded from an envelope's payload and validated here, so the rest of the
//! code never re-checks a length, an enum or a limit ("parse, don't validate"). Nothing in this
//! module touches the network, the store or the clock.

mod envelope;
mod hashes;
mod signal;
mod signature;

pub use envelope::{
    PAYLOAD_TYPE, ParsedEnvelope, SignatureError, StatementId, Verified, pae, sign_statement,
    verify_batch,
};
pub use hashes::{Category, HashEntry, HashType, Label};
pub use signal::{Indicator, RiskSignal, Severity, SignalCategory};
pub use signature::{BATCH_SIZE, SignatureCheck, verify_many, verify_one};

use crate::membership::{Change, Genesis, KeyId, MemberId};
use crate::pb;
use prost::Message;
use thiserror::Error;

/// Largest accepted payload (the serialized statement), in bytes.
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
}

/// A set of hashes of known material.
#[derive(Clone, Debug, PartialEq)]
pub struct HashSet {
    /// Optional human description.
    pub description: String,
    /// The hashes, at least one.
    pub entries: Vec<HashEntry>,
}

/// Why a payload is not a valid statement. Each variant names the offending field.
#[derive(Debug, Error, PartialEq)]
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

impl Statement {
    /// Decodes and validates a payload (the exact signed bytes).
    pub fn decode(payload: &[u8]) -> Result<Self, StatementError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(StatementError::TooLarge {
                what: "payload bytes",
                size: payload.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        let wire = pb::Statement::decode(payload).map_err(|e| {
            StatementError::invalid("payload", format!("not a coalition.v1.Statement: {e}"))
        })?;
        Self::from_wire(wire)
    }

    /// Validates a decoded wire statement.
    pub fn from_wire(wire: pb::Statement) -> Result<Self, StatementError> {
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
        let body = match wire.body {
            Some(pb::statement::Body::HashSet(set)) => Body::HashSet(HashSet::from_wire(set)?),
            Some(pb::statement::Body::RiskSignal(signal)) => {
                Body::RiskSignal(RiskSignal::from_wire(signal)?)
            }
            Some(pb::statement::Body::Genesis(genesis)) => {
                Body::Genesis(Genesis::from_wire(genesis)?)
            }
            Some(pb::statement::Body::Membership(change)) => {
                Body::Membership(Change::from_wire(change)?)
            }
            None => {
                return Err(StatementError::invalid(
                    "body",
                    "missing: set hash_set, risk_signal, genesis or membership",
                ));
            }
        };
        Ok(Statement {
            issuer,
            key_id,
            issued_at_ms: wire.issued_at_ms,
            nonce,
            body,
        })
    }

    /// The wire form, for authors about to sign.
    pub fn to_wire(&self) -> pb::Statement {
        pb::Statement {
            issuer: self.issuer.to_string(),
            key_id: self.key_id.to_string(),
            issued_at_ms: self.issued_at_ms,
            nonce: self.nonce.to_vec(),
            body: Some(match &self.body {
                Body::HashSet(set) => pb::statement::Body::HashSet(set.to_wire()),
                Body::RiskSignal(signal) => pb::statement::Body::RiskSignal(signal.to_wire()),
                Body::Genesis(genesis) => pb::statement::Body::Genesis(genesis.to_wire()),
                Body::Membership(change) => pb::statement::Body::Membership(change.to_wire()),
            }),
        }
    }

    /// Which kind of statement this is.
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::HashSet(_) => Kind::HashSet,
            Body::RiskSignal(_) => Kind::RiskSignal,
            Body::Genesis(_) => Kind::Genesis,
            Body::Membership(_) => Kind::Membership,
        }
    }

    /// Every hash the statement carries: a set's entries, or a signal's hash indicators.
    pub fn hashes(&self) -> Box<dyn Iterator<Item = &HashEntry> + '_> {
        match &self.body {
            Body::HashSet(set) => Box::new(set.entries.iter()),
            Body::RiskSignal(signal) => {
                Box::new(signal.indicators.iter().filter_map(|i| match i {
                    Indicator::Hash(h) => Some(h),
                    _ => None,
                }))
            }
            Body::Genesis(_) | Body::Membership(_) => Box::new(std::iter::empty()),
        }
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
        }
    }

    /// Parses a wire enum value; `None` for unspecified or unknown values.
    pub fn from_wire(value: i32) -> Option<Kind> {
        match pb::StatementKind::try_from(value).ok()? {
            pb::StatementKind::HashSet => Some(Kind::HashSet),
            pb::StatementKind::RiskSignal => Some(Kind::RiskSignal),
            pb::StatementKind::Genesis => Some(Kind::Genesis),
            pb::StatementKind::Membership => Some(Kind::Membership),
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
        }
    }

    /// Parses a name (`hash_set`, `risk_signal`, `genesis`, `membership`).
    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::HashSet,
            Kind::RiskSignal,
            Kind::Genesis,
            Kind::Membership,
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
        Ok(HashSet {
            description,
            entries,
        })
    }

    fn to_wire(&self) -> pb::HashSet {
        pb::HashSet {
            description: self.description.clone(),
            entries: self.entries.iter().map(HashEntry::to_wire).collect(),
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
