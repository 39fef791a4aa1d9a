//! Restricted recipients: the members a statement's signed header names as its only readers,
//! and the one rule deciding who may read a statement's body (docs/PROTOCOL.md §2.7).
//!
//! Every path that hands out a body (the hub's `Sync`, `GetStatement`, `GetEntries` and
//! `Match`) and every verifier that judges a withheld body (a member's sync, replica rule 13)
//! asks [`Recipients::admit`] and nothing else.

use super::{Kind, StatementError};
use crate::membership::{Member, MemberId, Role};
use std::fmt;

/// Most recipients one statement may name.
pub const MAX_RECIPIENTS: usize = 64;

/// Who asks for a statement's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reader {
    /// An auditor (the `auditor` role), the hub itself, or an offline verifier of a whole
    /// log: reads every body.
    Everything,
    /// A member without the `auditor` role: reads unrestricted bodies, and restricted ones it
    /// issued or is named in.
    Member(MemberId),
    /// Whoever reads another hub's statements through a relay (docs/PROTOCOL.md §3.10): reads
    /// unrestricted bodies only. Restricted bodies never leave their origin, so a relayed
    /// restricted statement comes as its header.
    Relay,
    /// A peer hub pulling this log to relay it, known by the name its members are qualified
    /// with here (the federation settings' `peer`): reads unrestricted bodies, and restricted
    /// ones naming one of its members (`member@hub_name`), for it to serve them to them.
    Hub(String),
}

impl Reader {
    /// The reader a registered member is: [`Reader::Everything`] with the `auditor` role,
    /// otherwise [`Reader::Member`].
    pub fn of(member: &Member) -> Self {
        if member.has_role(Role::Auditor) {
            Reader::Everything
        } else {
            Reader::Member(member.id.clone())
        }
    }
}

/// The recipients a header names: empty for an unrestricted statement (everyone reads it),
/// otherwise member ids in ascending byte order, each once, at most [`MAX_RECIPIENTS`], never
/// the issuer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Recipients(Vec<MemberId>);

impl Recipients {
    /// No restriction: every member reads the body.
    pub fn everyone() -> Self {
        Recipients(Vec::new())
    }

    /// Recipients given in any order, possibly twice (a CLI's `--recipient` flags): sorted and
    /// deduplicated. Refuses more than [`MAX_RECIPIENTS`] and the issuer itself (who always
    /// reads its own statement).
    pub fn from_members(
        mut members: Vec<MemberId>,
        issuer: &MemberId,
    ) -> Result<Self, StatementError> {
        members.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        members.dedup();
        Self::checked(members, issuer)
    }

    /// Parses a header's `recipients` field: member ids in ascending byte order, each once.
    pub fn decode(wire: &[String], issuer: &MemberId) -> Result<Self, StatementError> {
        if wire.len() > MAX_RECIPIENTS {
            return Err(StatementError::TooLarge {
                what: "recipients",
                size: wire.len(),
                limit: MAX_RECIPIENTS,
            });
        }
        if !wire.windows(2).all(|w| w[0] < w[1]) {
            return Err(StatementError::invalid(
                "recipients",
                "must be in ascending byte order, each member once",
            ));
        }
        let members = wire
            .iter()
            .enumerate()
            .map(|(i, r)| {
                MemberId::parse_qualified(r)
                    .map_err(|e| StatementError::invalid(format!("recipients[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::checked(members, issuer)
    }

    fn checked(members: Vec<MemberId>, issuer: &MemberId) -> Result<Self, StatementError> {
        if members.len() > MAX_RECIPIENTS {
            return Err(StatementError::TooLarge {
                what: "recipients",
                size: members.len(),
                limit: MAX_RECIPIENTS,
            });
        }
        if members.contains(issuer) {
            return Err(StatementError::invalid(
                "recipients",
                format!(
                    "names the issuer '{issuer}', who always reads its own statement; name only the other members"
                ),
            ));
        }
        Ok(Recipients(members))
    }

    /// Checks that a statement of `kind` listing `hash_types` and `labels` in its header may
    /// carry these recipients: only hash sets, risk signals and opinions may be restricted (an
    /// opinion only when it is a member's `seen` or the `withdrawn` of one, which
    /// [`super::Header::check_body`] checks against the body), and a restricted header lists
    /// no hash type and no label (they would tell non-recipients what it holds).
    pub fn check_header(
        &self,
        kind: Kind,
        lists_hash_types: bool,
        lists_labels: bool,
    ) -> Result<(), StatementError> {
        if self.is_everyone() {
            return Ok(());
        }
        if !matches!(kind, Kind::HashSet | Kind::RiskSignal | Kind::Opinion) {
            return Err(StatementError::invalid(
                "recipients",
                format!(
                    "a {} statement cannot be restricted: membership, settings and retraction statements go to every member; only hash sets, risk signals and seen opinions may name recipients",
                    kind.name()
                ),
            ));
        }
        if lists_hash_types || lists_labels {
            return Err(StatementError::invalid(
                if lists_hash_types {
                    "hash_types"
                } else {
                    "labels"
                },
                "must be empty in a restricted statement's header (they would show non-recipients what it holds)",
            ));
        }
        Ok(())
    }

    /// Checks that every recipient is an active member (`active` says who is): a hub accepts
    /// a restricted statement only then. The error names every one that is not.
    pub fn check_active(&self, active: impl Fn(&MemberId) -> bool) -> Result<(), StatementError> {
        let missing: Vec<&str> = self
            .0
            .iter()
            .filter(|m| !active(m))
            .map(MemberId::as_str)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(StatementError::invalid(
            "recipients",
            format!(
                "not active members of this coalition: {}; name only active members (`coalition admin member list`), or members of a hub it federates with as `member@HUB_NAME`",
                missing.join(", ")
            ),
        ))
    }

    /// The recipients of a statement relayed from the hub `origin_hub`, as this hub (named
    /// `own_hub`) reads them (docs/PROTOCOL.md §3.10): a member of this hub named there
    /// (`globex@<own_hub>`) is `globex` here; a member of the origin (`bob` there) is
    /// `bob@<origin_hub>` here; a member of a third hub stays as named.
    pub fn relayed_from(&self, origin_hub: &str, own_hub: &str) -> Recipients {
        Recipients(
            self.0
                .iter()
                .map(|m| match m.foreign() {
                    Some((id, hub)) if hub == own_hub => id,
                    Some(_) => m.clone(),
                    None => m.qualified(origin_hub),
                })
                .collect(),
        )
    }

    /// True for an unrestricted statement.
    pub fn is_everyone(&self) -> bool {
        self.0.is_empty()
    }

    /// The members named, ascending.
    pub fn members(&self) -> &[MemberId] {
        &self.0
    }

    /// The wire form.
    pub fn to_wire(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// **The read rule**: whether `reader` may read the body of a statement by `issuer` with
    /// these recipients. An unrestricted body goes to everyone; a restricted one to its
    /// issuer, the members it names, and readers of everything (auditors).
    pub fn admit(&self, issuer: &MemberId, reader: &Reader) -> bool {
        match reader {
            Reader::Everything => true,
            Reader::Member(id) => self.is_everyone() || id == issuer || self.0.contains(id),
            Reader::Relay => self.is_everyone(),
            Reader::Hub(hub) => {
                self.is_everyone() || self.0.iter().any(|m| m.hub() == Some(hub.as_str()))
            }
        }
    }
}

impl fmt::Display for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_everyone() {
            return f.write_str("everyone");
        }
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(m.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> MemberId {
        MemberId::parse(s).expect("member id")
    }

    fn wire(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn decode_accepts_canonical_and_refuses_the_rest() {
        let acme = id("acme");
        let check = |ids: &[&str]| Recipients::decode(&wire(ids), &acme).map(|r| r.to_wire());
        assert_eq!(check(&[]), Ok(vec![]));
        assert_eq!(check(&["beta", "gamma"]), Ok(wire(&["beta", "gamma"])));
        assert!(check(&["gamma", "beta"]).is_err(), "order");
        assert!(check(&["beta", "beta"]).is_err(), "twice");
        assert!(check(&["Beta"]).is_err(), "syntax");
        assert!(check(&["acme"]).is_err(), "the issuer");
        let many: Vec<String> = (0..=MAX_RECIPIENTS).map(|i| format!("m{i:03}")).collect();
        assert!(matches!(
            Recipients::decode(&many, &acme),
            Err(StatementError::TooLarge { limit: 64, .. })
        ));
    }

    #[test]
    fn from_members_sorts_and_deduplicates() {
        let r = Recipients::from_members(vec![id("gamma"), id("beta"), id("gamma")], &id("acme"))
            .expect("valid");
        assert_eq!(r.to_wire(), wire(&["beta", "gamma"]));
        assert_eq!(r.to_string(), "beta,gamma");
    }

    #[test]
    fn only_hash_sets_and_signals_without_hash_types_or_labels() {
        let r = Recipients::from_members(vec![id("beta")], &id("acme")).expect("valid");
        assert!(r.check_header(Kind::HashSet, false, false).is_ok());
        assert!(r.check_header(Kind::RiskSignal, false, false).is_ok());
        assert!(r.check_header(Kind::Opinion, false, false).is_ok());
        for kind in [
            Kind::Genesis,
            Kind::Membership,
            Kind::Settings,
            Kind::Retraction,
        ] {
            assert!(r.check_header(kind, false, false).is_err(), "{kind:?}");
        }
        assert!(r.check_header(Kind::HashSet, true, false).is_err());
        assert!(r.check_header(Kind::HashSet, false, true).is_err());
        assert!(
            Recipients::everyone()
                .check_header(Kind::Membership, true, true)
                .is_ok()
        );
    }

    /// Members of other hubs (`member@hub`, docs/PROTOCOL.md §3.10): named as such, read by
    /// that hub's pull (and no other hub's), and mapped to this hub's view when relayed.
    #[test]
    fn members_of_other_hubs() {
        let q = |s: &str| MemberId::parse_qualified(s).expect("qualified id");
        let acme = id("acme");
        let r = Recipients::decode(&wire(&["bob", "globex@a.example"]), &acme).expect("valid");
        assert!(r.admit(&acme, &Reader::Hub("a.example".into())));
        assert!(!r.admit(&acme, &Reader::Hub("c.example".into())));
        assert!(!r.admit(&acme, &Reader::Relay));
        assert!(
            !r.admit(&acme, &Reader::Member(id("globex"))),
            "not at the origin"
        );
        let at_a = r.relayed_from("x.example", "a.example");
        assert_eq!(at_a.to_string(), "bob@x.example,globex");
        let issuer_at_a = q("acme@x.example");
        assert!(at_a.admit(&issuer_at_a, &Reader::Member(id("globex"))));
        assert!(
            !at_a.admit(&issuer_at_a, &Reader::Member(id("bob"))),
            "A's bob is not X's"
        );
        assert!(Recipients::decode(&wire(&["globex@"]), &acme).is_err());
    }

    #[test]
    fn the_read_rule() {
        let (acme, beta, gamma) = (id("acme"), id("beta"), id("gamma"));
        let restricted = Recipients::from_members(vec![beta.clone()], &acme).expect("valid");
        let open = Recipients::everyone();
        let cases = [
            (&open, Reader::Member(gamma.clone()), true),
            (&restricted, Reader::Member(acme.clone()), true),
            (&restricted, Reader::Member(beta.clone()), true),
            (&restricted, Reader::Member(gamma.clone()), false),
            (&restricted, Reader::Everything, true),
        ];
        for (recipients, reader, expected) in cases {
            assert_eq!(recipients.admit(&acme, &reader), expected, "{reader:?}");
        }
    }
}
