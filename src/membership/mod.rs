//! Membership: who belongs to the coalition, with which roles, status and signing keys, and
//! the signed changes that say so.
//!
//! Pure types and rules, no I/O. Every membership change is a signed statement in the log
//! ([`Genesis`], [`Change`]); the [`Registry`] is their replayed view, and the same
//! [`Registry::signing_keys`] / [`Registry::apply`] pair decides, for the hub's writer and for an
//! offline auditor alike, whether an entry was entitled to be logged where it is.

mod change;
mod registry;

pub use change::{
    Action, Admission, Change, Genesis, Revocation, check_hub_name, format_ms, parse_time_ms,
};
pub use registry::{Coalition, EntryError, Event, Position, Registry, RelayedLifecycle, Signer};

use crate::pb;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use std::fmt;
use thiserror::Error;

/// Most characters in a member id.
pub const MAX_MEMBER_ID_LEN: usize = 63;
/// Most keys one member may hold.
pub const MAX_KEYS: usize = 16;

/// A member's identifier: `[a-z0-9][a-z0-9-]{0,62}`, as named by its certificate's SAN URI
/// `urn:coalition:member:<id>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(String);

/// A signing key's identifier: lowercase hex of the first 8 bytes of SHA-256 of the raw
/// 32-byte ed25519 public key, so anyone can recompute it from the key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

/// What a member may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Manages membership.
    Admin,
    /// Submits, syncs and matches.
    Member,
    /// Reads everything, writes nothing.
    Auditor,
    /// A federated hub (reserved).
    Peer,
}

/// Whether a member may currently connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberStatus {
    /// In good standing.
    Active,
    /// Temporarily barred.
    Suspended,
    /// Gone for good.
    Removed,
}

/// Whether a key may sign new statements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Rotated out; earlier statements stay valid.
    Retired,
    /// Leaked; statements after the compromise time are flagged.
    Compromised,
}

/// One registered signing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberKey {
    /// Its id.
    pub key_id: KeyId,
    /// The ed25519 public key.
    pub public_key: VerifyingKey,
    /// Whether it may sign.
    pub status: KeyStatus,
    /// Log position of the entry that added it.
    pub added_seq: u64,
    /// Log position of the entry that revoked it.
    pub revoked_seq: Option<u64>,
    /// Compromised keys: from when statements it signed are distrusted (ms since the epoch).
    pub compromised_at_ms: Option<i64>,
}

/// A registered member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: MemberId,
    /// Human name, e.g. "Acme Social".
    pub display_name: String,
    /// What it may do.
    pub roles: Vec<Role>,
    /// Whether it may connect.
    pub status: MemberStatus,
    /// Its signing keys.
    pub keys: Vec<MemberKey>,
    /// When its admission was logged, milliseconds since the Unix epoch.
    pub added_at_ms: i64,
    /// Log position of its admission.
    pub added_seq: u64,
    /// SHA-256 of the DER client certificates it may connect with; empty: any CA-issued one.
    pub cert_pins: Vec<[u8; 32]>,
}

/// Why a membership value or request is invalid, or why a caller may not act.
#[derive(Debug, Error, PartialEq)]
pub enum MembershipError {
    /// A member id is malformed.
    #[error(
        "'{0}' is not a valid member id: use 1-63 of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    BadMemberId(String),
    /// A key id is malformed.
    #[error("'{0}' is not a valid key id: expected 16 lowercase hex characters")]
    BadKeyId(String),
    /// A public key is malformed or weak.
    #[error("public_keys[{index}]: {reason}")]
    BadPublicKey {
        /// Position in the request.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A request field is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The caller's certificate names a member the hub does not know.
    #[error(
        "member '{0}' is not registered with this hub; ask a coalition admin to run `coalition admin member admit`"
    )]
    UnknownMember(MemberId),
    /// The client certificate is not one the member is pinned to.
    #[error(
        "this client certificate (sha256 {fingerprint}) is not one member '{id}' was admitted with"
    )]
    CertificateNotPinned {
        /// The member.
        id: MemberId,
        /// SHA-256 of the presented certificate, hex.
        fingerprint: String,
    },
    /// The member is suspended or removed.
    #[error("member '{id}' is {status}; it may not use the hub")]
    NotActive {
        /// The member.
        id: MemberId,
        /// `suspended` or `removed`.
        status: &'static str,
    },
    /// The member lacks the role an operation needs.
    #[error("member '{id}' lacks the '{role}' role needed to {action}")]
    MissingRole {
        /// The member.
        id: MemberId,
        /// The role needed.
        role: &'static str,
        /// What it tried.
        action: &'static str,
    },
}

impl MemberId {
    /// Parses and validates an id.
    pub fn parse(s: &str) -> Result<Self, MembershipError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_MEMBER_ID_LEN
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(MemberId(s.to_owned()))
        } else {
            Err(MembershipError::BadMemberId(s.to_owned()))
        }
    }

    /// A member of another hub as this hub shows it (docs/PROTOCOL.md §3.10):
    /// `id@hub_name`. Never equal to a member id of this hub, which has no `@`, so a foreign
    /// `acme` and this hub's `acme` never collide (in sync rows, Match results, tallies).
    pub fn qualified(&self, hub_name: &str) -> MemberId {
        MemberId(format!("{}@{hub_name}", self.0))
    }

    /// For a member of another hub (`id@hub_name`, [`MemberId::qualified`]): its id there
    /// and the hub's name. `None` for a member of this hub.
    pub fn foreign(&self) -> Option<(MemberId, &str)> {
        self.0
            .split_once('@')
            .map(|(id, hub)| (MemberId(id.to_owned()), hub))
    }

    /// The hub a qualified id names (`None` for a member of this hub).
    pub fn hub(&self) -> Option<&str> {
        self.0.split_once('@').map(|(_, hub)| hub)
    }

    /// Parses a member id of this hub, or one qualified by its hub (`id@hub_name`).
    pub fn parse_qualified(s: &str) -> Result<Self, MembershipError> {
        match s.split_once('@') {
            None => Self::parse(s),
            Some((id, hub)) => {
                Self::parse(id)?;
                change::check_hub_name(hub)
                    .map_err(|_| MembershipError::BadMemberId(s.to_owned()))?;
                Ok(MemberId(s.to_owned()))
            }
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SAN URI a certificate for this member carries.
    pub fn uri(&self) -> String {
        format!("{MEMBER_URI_PREFIX}{}", self.0)
    }
}

/// Prefix of the SAN URI naming a member in its client certificate.
pub const MEMBER_URI_PREFIX: &str = "urn:coalition:member:";

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({})", self.0)
    }
}

impl KeyId {
    /// The 16 lowercase hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of a public key.
    pub fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        KeyId(hex::encode(&digest[..8]))
    }

    /// Parses and validates an id.
    pub fn parse(s: &str) -> Result<Self, MembershipError> {
        if s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(MembershipError::BadKeyId(s.to_owned()))
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl Role {
    /// The lowercase name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Auditor => "auditor",
            Role::Peer => "peer",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Member, Role::Auditor, Role::Peer]
            .into_iter()
            .find(|r| r.name() == s)
    }

    /// The wire enum value.
    pub fn to_wire(self) -> pb::Role {
        match self {
            Role::Admin => pb::Role::Admin,
            Role::Member => pb::Role::Member,
            Role::Auditor => pb::Role::Auditor,
            Role::Peer => pb::Role::Peer,
        }
    }

    /// Parses a wire enum value; `None` for unspecified or unknown values.
    pub fn from_wire(v: i32) -> Option<Role> {
        match pb::Role::try_from(v).ok()? {
            pb::Role::Admin => Some(Role::Admin),
            pb::Role::Member => Some(Role::Member),
            pb::Role::Auditor => Some(Role::Auditor),
            pb::Role::Peer => Some(Role::Peer),
            pb::Role::Unspecified => None,
        }
    }
}

/// Parses a raw 32-byte ed25519 public key, refusing weak (small-order) keys, which would make
/// batch verification ambiguous.
pub fn parse_public_key(bytes: &[u8]) -> Result<VerifyingKey, String> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("an ed25519 public key is 32 bytes, got {}", bytes.len()))?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| "not a valid ed25519 point".to_owned())?;
    if key.is_weak() {
        return Err("weak (small-order) ed25519 key refused".to_owned());
    }
    Ok(key)
}

impl Member {
    /// Whether the member has a role.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Checks that the member may use the hub at all.
    pub fn ensure_active(&self) -> Result<(), MembershipError> {
        match self.status {
            MemberStatus::Active => Ok(()),
            MemberStatus::Suspended => Err(MembershipError::NotActive {
                id: self.id.clone(),
                status: "suspended",
            }),
            MemberStatus::Removed => Err(MembershipError::NotActive {
                id: self.id.clone(),
                status: "removed",
            }),
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::Member {
        pb::Member {
            member_id: self.id.to_string(),
            display_name: self.display_name.clone(),
            roles: self.roles.iter().map(|r| r.to_wire() as i32).collect(),
            status: match self.status {
                MemberStatus::Active => pb::MemberStatus::Active,
                MemberStatus::Suspended => pb::MemberStatus::Suspended,
                MemberStatus::Removed => pb::MemberStatus::Removed,
            } as i32,
            keys: self
                .keys
                .iter()
                .map(|k| pb::MemberKey {
                    key_id: k.key_id.to_string(),
                    public_key: k.public_key.as_bytes().to_vec(),
                    status: match k.status {
                        KeyStatus::Active => pb::KeyStatus::Active,
                        KeyStatus::Retired => pb::KeyStatus::Retired,
                        KeyStatus::Compromised => pb::KeyStatus::Compromised,
                    } as i32,
                    added_seq: k.added_seq,
                    revoked_seq: k.revoked_seq,
                    compromised_at_ms: k.compromised_at_ms,
                })
                .collect(),
            added_at_ms: self.added_at_ms,
            added_seq: self.added_seq,
            certificate_sha256: self.cert_pins.iter().map(|p| p.to_vec()).collect(),
        }
    }

    /// Parses the wire form, checking that every key id matches its key.
    pub fn from_wire(m: pb::Member) -> Result<Member, MembershipError> {
        let id = MemberId::parse(&m.member_id)?;
        let status = match pb::MemberStatus::try_from(m.status) {
            Ok(pb::MemberStatus::Active) => MemberStatus::Active,
            Ok(pb::MemberStatus::Suspended) => MemberStatus::Suspended,
            Ok(pb::MemberStatus::Removed) => MemberStatus::Removed,
            _ => {
                return Err(MembershipError::Invalid {
                    field: "status",
                    reason: format!("unknown member status {}", m.status),
                });
            }
        };
        let mut keys = Vec::with_capacity(m.keys.len());
        for (index, k) in m.keys.into_iter().enumerate() {
            let public_key = parse_public_key(&k.public_key)
                .map_err(|reason| MembershipError::BadPublicKey { index, reason })?;
            let key_id = KeyId::parse(&k.key_id)?;
            if key_id != KeyId::of(&public_key) {
                return Err(MembershipError::BadPublicKey {
                    index,
                    reason: format!("key id {key_id} does not match the key"),
                });
            }
            let status = match pb::KeyStatus::try_from(k.status) {
                Ok(pb::KeyStatus::Active) => KeyStatus::Active,
                Ok(pb::KeyStatus::Retired) => KeyStatus::Retired,
                Ok(pb::KeyStatus::Compromised) => KeyStatus::Compromised,
                _ => {
                    return Err(MembershipError::Invalid {
                        field: "keys",
                        reason: format!("unknown key status {}", k.status),
                    });
                }
            };
            keys.push(MemberKey {
                key_id,
                public_key,
                status,
                added_seq: k.added_seq,
                revoked_seq: k.revoked_seq,
                compromised_at_ms: k.compromised_at_ms,
            });
        }
        let cert_pins = m
            .certificate_sha256
            .iter()
            .map(|p| {
                <[u8; 32]>::try_from(p.as_slice()).map_err(|_| MembershipError::Invalid {
                    field: "certificate_sha256",
                    reason: "a certificate pin is 32 bytes".into(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Member {
            id,
            display_name: m.display_name,
            roles: m.roles.into_iter().filter_map(Role::from_wire).collect(),
            status,
            keys,
            added_at_ms: m.added_at_ms,
            added_seq: m.added_seq,
            cert_pins,
        })
    }

    /// Checks a client certificate (DER) against the member's pins, if it has any.
    pub fn ensure_certificate(&self, cert_der: &[u8]) -> Result<(), MembershipError> {
        if self.cert_pins.is_empty() {
            return Ok(());
        }
        let fingerprint: [u8; 32] = Sha256::digest(cert_der).into();
        if self.cert_pins.contains(&fingerprint) {
            Ok(())
        } else {
            Err(MembershipError::CertificateNotPinned {
                id: self.id.clone(),
                fingerprint: hex::encode(fingerprint),
            })
        }
    }
}

/// How far in the future a statement's `issued_at_ms` may be (clock-skew allowance).
pub const MAX_CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;

/// Why a connection may not submit a statement (rules of the connection, not of the log).
#[derive(Debug, Error, PartialEq)]
pub enum AcceptError {
    /// The statement names another member as its issuer.
    #[error(
        "statement issuer '{issuer}' is not the authenticated member '{member}': a member may only submit its own statements"
    )]
    NotIssuer {
        /// Who the statement says made it.
        issuer: MemberId,
        /// Who is submitting it.
        member: MemberId,
    },
    /// A membership change submitted by an admin that did not sign it.
    #[error(
        "member '{member}' did not sign this membership change: it must be submitted by one of its signers"
    )]
    NotASigner {
        /// Who is submitting it.
        member: MemberId,
    },
    /// The statement is dated too far in the future.
    #[error(
        "issued_at_ms: {issued_at_ms} is more than 10 minutes in the future; check the signer's clock"
    )]
    FromTheFuture {
        /// Its date.
        issued_at_ms: i64,
    },
}

/// The connection-level rules for a statement `submitter` sends, checked before its
/// signatures: nothing dated in the future beyond clock skew, and a member submits only its own
/// statements (admin-quorum statements, `quorum`: see [`check_cosigner`]).
pub fn check_submitter(
    statement: &crate::statement::Header,
    submitter: &MemberId,
    now_ms: i64,
    quorum: bool,
) -> Result<(), AcceptError> {
    if statement.issued_at_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(AcceptError::FromTheFuture {
            issued_at_ms: statement.issued_at_ms,
        });
    }
    if !quorum && &statement.issuer != submitter {
        return Err(AcceptError::NotIssuer {
            issuer: statement.issuer.clone(),
            member: submitter.clone(),
        });
    }
    Ok(())
}

/// A membership change may be submitted by any admin that signed it (the issuer or a
/// co-signer), given who signed it as [`Registry::signing_keys`] resolved them.
pub fn check_cosigner(signers: &[Signer], submitter: &MemberId) -> Result<(), AcceptError> {
    if signers.iter().any(|s| s.member.as_ref() == Some(submitter)) {
        Ok(())
    } else {
        Err(AcceptError::NotASigner {
            member: submitter.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids() {
        for ok in ["acme", "a", "globex-2", "0day"] {
            assert!(MemberId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-acme", "Acme", "acme_x", "acme.x", &"a".repeat(64)] {
            assert!(MemberId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_ids() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        let id = KeyId::of(&key);
        assert_eq!(id.to_string().len(), 16);
        assert_eq!(KeyId::parse(&id.to_string()), Ok(id));
        assert!(KeyId::parse("ABCDEF0123456789").is_err());
        assert!(KeyId::parse("abc").is_err());
    }
}
