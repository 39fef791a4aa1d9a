//! The state of one entry and the precedence that decides it from the facts the lifecycle
//! statements establish (docs/PROTOCOL.md §4.3).
//!
//! Pure, no I/O. Each fact is computed by its own rule ([`super::Lifecycle`]: retractions,
//! opinions; the signing key's compromise; the clock against the statement's expiry,
//! [`super::expiry`]); [`EntryState::decide`] is the one place that orders them. A new state
//! is one new [`Facts`] field, one new variant and one new line in `decide`, at its place in
//! the precedence (`erased`, the last added, comes first).

use crate::pb;

/// The state of one entry, in precedence order: when several facts hold, the first state
/// listed here wins (erased beats retracted beats compromised beats quarantined beats expired
/// beats disputed beats active).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EntryState {
    /// Erased under legal order (docs/PROTOCOL.md §2.8): withdrawn, and its body is gone from
    /// the hub and from every replica that honoured the erasure. It never matches, whatever
    /// is asked for.
    Erased,
    /// Withdrawn by a retraction that applies: it does not match.
    Retracted,
    /// Signed with a key declared compromised from a time at or before the hub received it:
    /// it does not match and is left out of snapshots unless asked for.
    Compromised,
    /// Quarantined (false-positive threshold reached, or an admin quorum): it does not match
    /// and is left out of snapshots unless asked for.
    Quarantined,
    /// Its statement's expiry has passed (by the holder's clock): it does not match.
    Expired,
    /// Both positive and negative opinions (or a `disputed` one): it still matches, with its
    /// tally shown.
    Disputed,
    /// Shared and in force: it matches.
    Active,
}

/// What the lifecycle statements that apply establish about one entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// An erasure that applies names its statement.
    pub erased: bool,
    /// A retraction that applies names it.
    pub retracted: bool,
    /// Its signing key was declared compromised from a time at or before its receipt.
    pub compromised: bool,
    /// Quarantined by the threshold or by an admin quorum (and not released).
    pub quarantined: bool,
    /// Its statement's expiry has passed.
    pub expired: bool,
    /// Its opinions disagree (see [`super::Tally::disputes`]).
    pub disputed: bool,
}

impl EntryState {
    /// Every state, in precedence order.
    pub const ALL: [EntryState; 7] = [
        EntryState::Erased,
        EntryState::Retracted,
        EntryState::Compromised,
        EntryState::Quarantined,
        EntryState::Expired,
        EntryState::Disputed,
        EntryState::Active,
    ];

    /// The states Match returns and snapshots keep when nothing else is asked for.
    pub const MATCHING: [EntryState; 2] = [EntryState::Active, EntryState::Disputed];

    /// The precedence: the first fact that holds decides.
    pub fn decide(facts: &Facts) -> EntryState {
        if facts.erased {
            EntryState::Erased
        } else if facts.retracted {
            EntryState::Retracted
        } else if facts.compromised {
            EntryState::Compromised
        } else if facts.quarantined {
            EntryState::Quarantined
        } else if facts.expired {
            EntryState::Expired
        } else if facts.disputed {
            EntryState::Disputed
        } else {
            EntryState::Active
        }
    }

    /// The state once two facts decided outside the lifecycle statements are added: the
    /// signing key's compromise and the statement's expiry (same precedence as
    /// [`EntryState::decide`]).
    pub fn with(self, compromised: bool, expired: bool) -> EntryState {
        let facts = Facts {
            erased: self == EntryState::Erased,
            retracted: self == EntryState::Retracted,
            compromised: compromised || self == EntryState::Compromised,
            quarantined: self == EntryState::Quarantined,
            expired: expired || self == EntryState::Expired,
            disputed: self == EntryState::Disputed,
        };
        EntryState::decide(&facts)
    }

    /// The name used in files, events and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EntryState::Active => "active",
            EntryState::Disputed => "disputed",
            EntryState::Quarantined => "quarantined",
            EntryState::Retracted => "retracted",
            EntryState::Compromised => "compromised",
            EntryState::Expired => "expired",
            EntryState::Erased => "erased",
        }
    }

    /// Parses a name ([`EntryState::name`]).
    pub fn parse(name: &str) -> Option<EntryState> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Parses a comma-separated list's items (`--states`), each state once, in the order
    /// given; an unknown name is an error naming the valid ones.
    pub fn parse_list(names: &[String]) -> Result<Vec<EntryState>, String> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let state = EntryState::parse(name.trim()).ok_or_else(|| {
                format!(
                    "unknown entry state '{}' (expected {})",
                    crate::text::escape_control(name),
                    EntryState::ALL.map(EntryState::name).join(", ")
                )
            })?;
            if !out.contains(&state) {
                out.push(state);
            }
        }
        Ok(out)
    }

    /// Whether an entry in this state is returned by Match and kept in a member's snapshot
    /// when nothing else is asked for.
    pub fn matches(self) -> bool {
        Self::MATCHING.contains(&self)
    }

    /// The wire enum value.
    pub fn to_wire(self) -> pb::EntryState {
        match self {
            EntryState::Active => pb::EntryState::Active,
            EntryState::Disputed => pb::EntryState::Disputed,
            EntryState::Quarantined => pb::EntryState::Quarantined,
            EntryState::Retracted => pb::EntryState::Retracted,
            EntryState::Compromised => pb::EntryState::Compromised,
            EntryState::Expired => pb::EntryState::Expired,
            EntryState::Erased => pb::EntryState::Erased,
        }
    }

    /// Parses a wire enum value; `None` for unspecified or unknown values.
    pub fn from_wire(value: i32) -> Option<EntryState> {
        match pb::EntryState::try_from(value).ok()? {
            pb::EntryState::Active => Some(EntryState::Active),
            pb::EntryState::Disputed => Some(EntryState::Disputed),
            pb::EntryState::Quarantined => Some(EntryState::Quarantined),
            pb::EntryState::Retracted => Some(EntryState::Retracted),
            pb::EntryState::Compromised => Some(EntryState::Compromised),
            pb::EntryState::Expired => Some(EntryState::Expired),
            pb::EntryState::Erased => Some(EntryState::Erased),
            pb::EntryState::Unspecified => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The precedence table: every combination of facts and the state it decides.
    #[test]
    fn precedence() {
        // Compromise and expiry at their places: below retracted, around quarantined.
        let only = |f: fn(&mut Facts)| {
            let mut facts = Facts::default();
            f(&mut facts);
            facts
        };
        assert_eq!(
            EntryState::decide(&only(|f| f.compromised = true)),
            EntryState::Compromised
        );
        assert_eq!(
            EntryState::decide(&only(|f| {
                f.compromised = true;
                f.quarantined = true;
                f.retracted = true
            })),
            EntryState::Retracted
        );
        assert_eq!(
            EntryState::decide(&only(|f| {
                f.compromised = true;
                f.quarantined = true
            })),
            EntryState::Compromised
        );
        assert_eq!(
            EntryState::decide(&only(|f| {
                f.expired = true;
                f.quarantined = true
            })),
            EntryState::Quarantined
        );
        assert_eq!(
            EntryState::decide(&only(|f| {
                f.expired = true;
                f.disputed = true
            })),
            EntryState::Expired
        );
        let table = [
            ((false, false, false), EntryState::Active),
            ((false, false, true), EntryState::Disputed),
            ((false, true, false), EntryState::Quarantined),
            ((false, true, true), EntryState::Quarantined),
            ((true, false, false), EntryState::Retracted),
            ((true, false, true), EntryState::Retracted),
            ((true, true, false), EntryState::Retracted),
            ((true, true, true), EntryState::Retracted),
        ];
        for ((retracted, quarantined, disputed), want) in table {
            let facts = Facts {
                retracted,
                quarantined,
                disputed,
                ..Facts::default()
            };
            assert_eq!(EntryState::decide(&facts), want, "{facts:?}");
        }
        // Erased wins over every other fact.
        let all = Facts {
            erased: true,
            retracted: true,
            compromised: true,
            quarantined: true,
            expired: true,
            disputed: true,
        };
        assert_eq!(EntryState::decide(&all), EntryState::Erased);
        let mut sorted = EntryState::ALL;
        sorted.sort();
        assert_eq!(sorted, EntryState::ALL, "ALL is in precedence order");
    }

    #[test]
    fn compromise_and_expiry_join_a_decided_state() {
        assert_eq!(EntryState::Active.with(false, false), EntryState::Active);
        assert_eq!(EntryState::Disputed.with(false, true), EntryState::Expired);
        assert_eq!(
            EntryState::Quarantined.with(false, true),
            EntryState::Quarantined
        );
        assert_eq!(
            EntryState::Quarantined.with(true, true),
            EntryState::Compromised
        );
        assert_eq!(
            EntryState::Retracted.with(true, true),
            EntryState::Retracted
        );
        assert_eq!(EntryState::Erased.with(true, true), EntryState::Erased);
        for s in EntryState::ALL {
            assert_eq!(s.with(false, false), s);
        }
    }

    #[test]
    fn names_and_wire_round_trip() {
        for s in EntryState::ALL {
            assert_eq!(EntryState::parse(s.name()), Some(s));
            assert_eq!(EntryState::from_wire(s.to_wire() as i32), Some(s));
        }
        assert_eq!(EntryState::from_wire(0), None);
        assert_eq!(EntryState::from_wire(99), None);
        assert_eq!(EntryState::parse("gone"), None);
        assert!(EntryState::Disputed.matches() && EntryState::Active.matches());
        assert!(!EntryState::Quarantined.matches() && !EntryState::Retracted.matches());
        assert!(!EntryState::Erased.matches());
    }
}
