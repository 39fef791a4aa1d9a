//! The membership statements: the genesis that founds a hub and the changes admins sign later,
//! parsed from their wire form with every field checked (errors name the field).

use super::{KeyId, MAX_KEYS, MemberId, Role, parse_public_key};
use crate::pb;
use crate::statement::{StatementError, check_text};
use ed25519_dalek::VerifyingKey;

/// Most admins a genesis may name.
pub const MAX_GENESIS_ADMINS: usize = 16;
/// Most characters in a change's reason.
pub const MAX_REASON_CHARS: usize = 1000;
/// Most characters in a member's display name.
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
/// Most characters in a hub name.
pub const MAX_HUB_NAME_LEN: usize = 100;

/// The first statement of a hub's log: who the hub is, who administers it and how many admins
/// must agree on a change.
#[derive(Clone, Debug, PartialEq)]
pub struct Genesis {
    /// The hub's name, also the origin line of its checkpoints.
    pub hub_name: String,
    /// The key the hub signs checkpoints with.
    pub hub_key: VerifyingKey,
    /// The first admins.
    pub admins: Vec<Admission>,
    /// Admin signatures a membership change needs.
    pub quorum: u32,
}

/// A member as admitted: identity, roles, keys and optional certificate pins.
#[derive(Clone, Debug, PartialEq)]
pub struct Admission {
    /// Its id (its certificate names `urn:coalition:member:<id>`).
    pub id: MemberId,
    /// Human name.
    pub display_name: String,
    /// What it may do (at least one role, no duplicates).
    pub roles: Vec<Role>,
    /// Its signing keys (no duplicates).
    pub keys: Vec<VerifyingKey>,
    /// SHA-256 of the DER certificates it may connect with; empty: any CA-issued one.
    pub cert_pins: Vec<[u8; 32]>,
}

/// A membership change and why it was made.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Free text for the history.
    pub reason: String,
    /// What changes.
    pub action: Action,
}

/// Why a key is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// Rotated out: what it signed before stays valid.
    Retired,
    /// Leaked: what was logged from `compromised_at_ms` on is flagged.
    Compromised {
        /// From when the key is distrusted, ms since the Unix epoch.
        compromised_at_ms: i64,
    },
}

/// What a membership change does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Admit a new member.
    Admit(Admission),
    /// Bar a member until reinstated.
    Suspend(MemberId),
    /// Lift a suspension.
    Reinstate(MemberId),
    /// Remove a member for good.
    Remove(MemberId),
    /// Give a member another signing key.
    AddKey {
        /// The member.
        member: MemberId,
        /// The new key.
        key: VerifyingKey,
    },
    /// Revoke one of a member's keys.
    RevokeKey {
        /// The member.
        member: MemberId,
        /// The key.
        key_id: KeyId,
        /// Retired or compromised.
        revocation: Revocation,
    },
    /// Replace a member's roles.
    SetRoles {
        /// The member.
        member: MemberId,
        /// Its new roles.
        roles: Vec<Role>,
    },
    /// Change how many admin signatures a change needs.
    SetQuorum(u32),
    /// Announce that statements of a newer protocol version may follow.
    SetProtocolVersion(u32),
}

fn member_id(field: &str, s: &str) -> Result<MemberId, StatementError> {
    MemberId::parse(s).map_err(|e| StatementError::invalid(field, e.to_string()))
}

fn roles(field: &str, wire: &[i32]) -> Result<Vec<Role>, StatementError> {
    let mut out = Vec::new();
    for (i, r) in wire.iter().enumerate() {
        let role = Role::from_wire(*r).ok_or_else(|| {
            StatementError::invalid(
                format!("{field}[{i}]"),
                format!("unknown or unspecified role {r}"),
            )
        })?;
        if out.contains(&role) {
            return Err(StatementError::invalid(
                format!("{field}[{i}]"),
                format!("duplicate role {}", role.name()),
            ));
        }
        out.push(role);
    }
    if out.is_empty() {
        return Err(StatementError::invalid(
            field,
            "at least one of admin, member, auditor, peer",
        ));
    }
    Ok(out)
}

fn public_key(field: &str, raw: &[u8]) -> Result<VerifyingKey, StatementError> {
    parse_public_key(raw).map_err(|reason| StatementError::invalid(field, reason))
}

impl Admission {
    /// Parses and checks an admission; `at` is the field path (e.g. `membership.admit`).
    pub fn from_wire(wire: pb::Admission, at: &str) -> Result<Self, StatementError> {
        let id = member_id(&format!("{at}.member_id"), &wire.member_id)?;
        let display_name = check_text(
            &format!("{at}.display_name"),
            wire.display_name,
            0,
            MAX_DISPLAY_NAME_CHARS,
        )?;
        let roles = roles(&format!("{at}.roles"), &wire.roles)?;
        if wire.public_keys.is_empty() && roles.iter().any(|r| *r != Role::Auditor) {
            return Err(StatementError::invalid(
                format!("{at}.public_keys"),
                "at least one ed25519 public key (only auditors may have none)",
            ));
        }
        if wire.public_keys.len() > MAX_KEYS {
            return Err(StatementError::invalid(
                format!("{at}.public_keys"),
                format!("at most {MAX_KEYS} keys, got {}", wire.public_keys.len()),
            ));
        }
        let mut keys: Vec<VerifyingKey> = Vec::with_capacity(wire.public_keys.len());
        for (i, raw) in wire.public_keys.iter().enumerate() {
            let field = format!("{at}.public_keys[{i}]");
            let key = public_key(&field, raw)?;
            if keys.contains(&key) {
                return Err(StatementError::invalid(field, "duplicate key"));
            }
            keys.push(key);
        }
        let mut cert_pins = Vec::with_capacity(wire.certificate_sha256.len());
        for (i, raw) in wire.certificate_sha256.iter().enumerate() {
            let pin = <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| {
                StatementError::invalid(
                    format!("{at}.certificate_sha256[{i}]"),
                    format!("a SHA-256 fingerprint is 32 bytes, got {}", raw.len()),
                )
            })?;
            cert_pins.push(pin);
        }
        Ok(Admission {
            id,
            display_name,
            roles,
            keys,
            cert_pins,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::Admission {
        pb::Admission {
            member_id: self.id.to_string(),
            display_name: self.display_name.clone(),
            roles: self.roles.iter().map(|r| r.to_wire() as i32).collect(),
            public_keys: self.keys.iter().map(|k| k.to_bytes().to_vec()).collect(),
            certificate_sha256: self.cert_pins.iter().map(|p| p.to_vec()).collect(),
        }
    }
}

/// Checks a hub name (a checkpoint origin): 1..=100 printable ASCII characters without
/// spaces or `+`.
pub fn check_hub_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_HUB_NAME_LEN
        || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'+')
    {
        return Err(format!(
            "1..={MAX_HUB_NAME_LEN} printable ASCII characters without spaces or '+', e.g. hub.coalition.example"
        ));
    }
    Ok(())
}

impl Genesis {
    /// Parses and checks a genesis.
    pub fn from_wire(wire: pb::Genesis) -> Result<Self, StatementError> {
        let name = wire.hub_name;
        check_hub_name(&name).map_err(|e| StatementError::invalid("genesis.hub_name", e))?;
        let hub_key = public_key("genesis.hub_public_key", &wire.hub_public_key)?;
        if wire.admins.is_empty() || wire.admins.len() > MAX_GENESIS_ADMINS {
            return Err(StatementError::invalid(
                "genesis.admins",
                format!("1..={MAX_GENESIS_ADMINS} admins, got {}", wire.admins.len()),
            ));
        }
        let mut admins: Vec<Admission> = Vec::with_capacity(wire.admins.len());
        for (i, a) in wire.admins.into_iter().enumerate() {
            let at = format!("genesis.admins[{i}]");
            let admission = Admission::from_wire(a, &at)?;
            if !admission.roles.contains(&Role::Admin) || admission.keys.is_empty() {
                return Err(StatementError::invalid(
                    at,
                    "a genesis admin needs the admin role and a signing key",
                ));
            }
            if admins.iter().any(|x| x.id == admission.id) {
                return Err(StatementError::invalid(
                    format!("{at}.member_id"),
                    format!("duplicate member id '{}'", admission.id),
                ));
            }
            admins.push(admission);
        }
        let mut all_keys = vec![hub_key];
        for (i, a) in admins.iter().enumerate() {
            for k in &a.keys {
                if all_keys.contains(k) {
                    return Err(StatementError::invalid(
                        format!("genesis.admins[{i}].public_keys"),
                        format!(
                            "key {} is used twice (every admin and the hub sign with their own keys)",
                            KeyId::of(k)
                        ),
                    ));
                }
                all_keys.push(*k);
            }
        }
        if wire.quorum == 0 || wire.quorum as usize > admins.len() {
            return Err(StatementError::invalid(
                "genesis.quorum",
                format!("must be 1..={} (the number of admins)", admins.len()),
            ));
        }
        Ok(Genesis {
            hub_name: name,
            hub_key,
            admins,
            quorum: wire.quorum,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::Genesis {
        pb::Genesis {
            hub_name: self.hub_name.clone(),
            hub_public_key: self.hub_key.to_bytes().to_vec(),
            admins: self.admins.iter().map(Admission::to_wire).collect(),
            quorum: self.quorum,
        }
    }
}

impl Change {
    /// Parses and checks a membership change.
    pub fn from_wire(wire: pb::MembershipChange) -> Result<Self, StatementError> {
        use pb::membership_change::Change as W;
        let reason = check_text("membership.reason", wire.reason, 0, MAX_REASON_CHARS)?;
        let action = match wire.change {
            Some(W::Admit(a)) => Action::Admit(Admission::from_wire(a, "membership.admit")?),
            Some(W::Suspend(r)) => {
                Action::Suspend(member_id("membership.suspend.member_id", &r.member_id)?)
            }
            Some(W::Reinstate(r)) => {
                Action::Reinstate(member_id("membership.reinstate.member_id", &r.member_id)?)
            }
            Some(W::Remove(r)) => {
                Action::Remove(member_id("membership.remove.member_id", &r.member_id)?)
            }
            Some(W::AddKey(k)) => Action::AddKey {
                member: member_id("membership.add_key.member_id", &k.member_id)?,
                key: public_key("membership.add_key.public_key", &k.public_key)?,
            },
            Some(W::RevokeKey(k)) => {
                let member = member_id("membership.revoke_key.member_id", &k.member_id)?;
                let key_id = KeyId::parse(&k.key_id).map_err(|e| {
                    StatementError::invalid("membership.revoke_key.key_id", e.to_string())
                })?;
                let revocation = match (
                    pb::RevocationReason::try_from(k.reason),
                    k.compromised_at_ms,
                ) {
                    (Ok(pb::RevocationReason::Retired), None) => Revocation::Retired,
                    (Ok(pb::RevocationReason::Retired), Some(_)) => {
                        return Err(StatementError::invalid(
                            "membership.revoke_key.compromised_at_ms",
                            "only a COMPROMISED revocation has a compromise time",
                        ));
                    }
                    (Ok(pb::RevocationReason::Compromised), Some(at)) if at > 0 => {
                        Revocation::Compromised {
                            compromised_at_ms: at,
                        }
                    }
                    (Ok(pb::RevocationReason::Compromised), _) => {
                        return Err(StatementError::invalid(
                            "membership.revoke_key.compromised_at_ms",
                            "required for COMPROMISED: from when the key is distrusted (ms since the Unix epoch)",
                        ));
                    }
                    _ => {
                        return Err(StatementError::invalid(
                            "membership.revoke_key.reason",
                            format!("must be RETIRED or COMPROMISED, got {}", k.reason),
                        ));
                    }
                };
                Action::RevokeKey {
                    member,
                    key_id,
                    revocation,
                }
            }
            Some(W::SetRoles(r)) => Action::SetRoles {
                member: member_id("membership.set_roles.member_id", &r.member_id)?,
                roles: roles("membership.set_roles.roles", &r.roles)?,
            },
            Some(W::SetQuorum(q)) => {
                if q.quorum == 0 {
                    return Err(StatementError::invalid(
                        "membership.set_quorum.quorum",
                        "must be at least 1",
                    ));
                }
                Action::SetQuorum(q.quorum)
            }
            Some(W::SetProtocolVersion(v)) => {
                if v.version < 2 {
                    return Err(StatementError::invalid(
                        "membership.set_protocol_version.version",
                        "must be 2 or more (a log starts at version 1)",
                    ));
                }
                Action::SetProtocolVersion(v.version)
            }
            None => {
                return Err(StatementError::invalid(
                    "membership.change",
                    "missing: set admit, suspend, reinstate, remove, add_key, revoke_key, set_roles, set_quorum or set_protocol_version",
                ));
            }
        };
        Ok(Change { reason, action })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::MembershipChange {
        use pb::membership_change::Change as W;
        let member_ref = |m: &MemberId| pb::MemberRef {
            member_id: m.to_string(),
        };
        let change = match &self.action {
            Action::Admit(a) => W::Admit(a.to_wire()),
            Action::Suspend(m) => W::Suspend(member_ref(m)),
            Action::Reinstate(m) => W::Reinstate(member_ref(m)),
            Action::Remove(m) => W::Remove(member_ref(m)),
            Action::AddKey { member, key } => W::AddKey(pb::KeyAddition {
                member_id: member.to_string(),
                public_key: key.to_bytes().to_vec(),
            }),
            Action::RevokeKey {
                member,
                key_id,
                revocation,
            } => W::RevokeKey(pb::KeyRevocation {
                member_id: member.to_string(),
                key_id: key_id.to_string(),
                reason: match revocation {
                    Revocation::Retired => pb::RevocationReason::Retired,
                    Revocation::Compromised { .. } => pb::RevocationReason::Compromised,
                } as i32,
                compromised_at_ms: match revocation {
                    Revocation::Retired => None,
                    Revocation::Compromised { compromised_at_ms } => Some(*compromised_at_ms),
                },
            }),
            Action::SetRoles { member, roles } => W::SetRoles(pb::RoleChange {
                member_id: member.to_string(),
                roles: roles.iter().map(|r| r.to_wire() as i32).collect(),
            }),
            Action::SetQuorum(q) => W::SetQuorum(pb::QuorumChange { quorum: *q }),
            Action::SetProtocolVersion(v) => {
                W::SetProtocolVersion(pb::ProtocolVersionChange { version: *v })
            }
        };
        pb::MembershipChange {
            reason: self.reason.clone(),
            change: Some(change),
        }
    }

    /// The member the change is about (none for a quorum change).
    pub fn subject(&self) -> Option<&MemberId> {
        match &self.action {
            Action::Admit(a) => Some(&a.id),
            Action::Suspend(m) | Action::Reinstate(m) | Action::Remove(m) => Some(m),
            Action::AddKey { member, .. }
            | Action::RevokeKey { member, .. }
            | Action::SetRoles { member, .. } => Some(member),
            Action::SetQuorum(_) | Action::SetProtocolVersion(_) => None,
        }
    }

    /// One line saying what the change does, for histories and for an admin about to co-sign.
    pub fn describe(&self) -> String {
        let role_names =
            |roles: &[Role]| roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(",");
        match &self.action {
            Action::Admit(a) => format!(
                "admit '{}' ({}) with roles {} and keys {}",
                a.id,
                a.display_name,
                role_names(&a.roles),
                a.keys
                    .iter()
                    .map(|k| KeyId::of(k).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Action::Suspend(m) => format!("suspend '{m}'"),
            Action::Reinstate(m) => format!("reinstate '{m}'"),
            Action::Remove(m) => format!("remove '{m}' for good"),
            Action::AddKey { member, key } => {
                format!("add key {} to '{member}'", KeyId::of(key))
            }
            Action::RevokeKey {
                member,
                key_id,
                revocation: Revocation::Retired,
            } => format!("retire key {key_id} of '{member}'"),
            Action::RevokeKey {
                member,
                key_id,
                revocation: Revocation::Compromised { compromised_at_ms },
            } => format!(
                "revoke key {key_id} of '{member}' as compromised since {}",
                format_ms(*compromised_at_ms)
            ),
            Action::SetRoles { member, roles } => {
                format!("set the roles of '{member}' to {}", role_names(roles))
            }
            Action::SetQuorum(q) => format!("set the admin quorum to {q}"),
            Action::SetProtocolVersion(v) => {
                format!("announce protocol version {v}: statements of that version may follow")
            }
        }
    }
}

/// A millisecond Unix time as RFC 3339 UTC, to the second (for messages).
pub fn format_ms(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Parses a time given as RFC 3339 (`2026-11-26T10:00:00Z`) or as milliseconds since the epoch.
pub fn parse_time_ms(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Ok(ms);
    }
    let at = humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
        format!("'{text}' is not a time: use RFC 3339 like 2026-11-26T10:00:00Z or milliseconds since the epoch ({e})")
    })?;
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("'{text}' is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> VerifyingKey {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key()
    }

    fn admission(id: &str, roles: Vec<i32>, keys: Vec<Vec<u8>>) -> pb::Admission {
        pb::Admission {
            member_id: id.into(),
            display_name: "X".into(),
            roles,
            public_keys: keys,
            certificate_sha256: vec![],
        }
    }

    #[test]
    fn admission_checks_fields() {
        let k = key(2).to_bytes().to_vec();
        let m = Role::Member.to_wire() as i32;
        let a = Role::Auditor.to_wire() as i32;
        assert!(Admission::from_wire(admission("acme", vec![m], vec![k.clone()]), "a").is_ok());
        assert!(Admission::from_wire(admission("auditor", vec![a], vec![]), "a").is_ok());
        for (bad, field) in [
            (admission("Acme", vec![m], vec![k.clone()]), "a.member_id"),
            (admission("acme", vec![], vec![k.clone()]), "a.roles"),
            (admission("acme", vec![m, m], vec![k.clone()]), "a.roles[1]"),
            (admission("acme", vec![m], vec![]), "a.public_keys"),
            (
                admission("acme", vec![m], vec![vec![0; 31]]),
                "a.public_keys[0]",
            ),
            (
                admission("acme", vec![m], vec![k.clone(), k.clone()]),
                "a.public_keys[1]",
            ),
        ] {
            let err = Admission::from_wire(bad, "a").expect_err(field);
            assert!(err.to_string().starts_with(field), "{field}: {err}");
        }
        // The identity point is a weak key.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let err = Admission::from_wire(admission("acme", vec![m], vec![weak.to_vec()]), "a")
            .expect_err("weak");
        assert!(err.to_string().contains("weak"), "{err}");
    }

    #[test]
    fn changes_round_trip() {
        let actions = vec![
            Action::Admit(Admission {
                id: MemberId::parse("acme").expect("id"),
                display_name: "Acme".into(),
                roles: vec![Role::Member],
                keys: vec![key(3)],
                cert_pins: vec![[7; 32]],
            }),
            Action::Suspend(MemberId::parse("acme").expect("id")),
            Action::RevokeKey {
                member: MemberId::parse("acme").expect("id"),
                key_id: KeyId::of(&key(3)),
                revocation: Revocation::Compromised {
                    compromised_at_ms: 5,
                },
            },
            Action::SetQuorum(2),
        ];
        for action in actions {
            let change = Change {
                reason: "why".into(),
                action,
            };
            assert_eq!(Change::from_wire(change.to_wire()), Ok(change));
        }
    }

    #[test]
    fn compromise_needs_a_time() {
        let wire = pb::MembershipChange {
            reason: String::new(),
            change: Some(pb::membership_change::Change::RevokeKey(
                pb::KeyRevocation {
                    member_id: "acme".into(),
                    key_id: KeyId::of(&key(1)).to_string(),
                    reason: pb::RevocationReason::Compromised as i32,
                    compromised_at_ms: None,
                },
            )),
        };
        let err = Change::from_wire(wire).expect_err("no time");
        assert!(err.to_string().contains("compromised_at_ms"), "{err}");
    }

    #[test]
    fn formats_and_parses_times() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(1_795_000_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(parse_time_ms("2026-11-18T11:06:40Z"), Ok(1_795_000_000_000));
        assert_eq!(parse_time_ms("1795000000000"), Ok(1_795_000_000_000));
        assert!(parse_time_ms("yesterday").is_err());
    }
}
