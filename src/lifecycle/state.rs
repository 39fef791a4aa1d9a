//! The state of one entry and the precedence that decides it from the facts the lifecycle
//! statements establish (docs/PROTOCOL.md §4.3).
//!
//! Pure, no I/O. Each fact is computed by its own rule ([`super::Lifecycle`]: retractions,
//! opinions); [`EntryState::decide`] is the one place that orders them. A new state (the issue
//! lists `compromised`, `expired` and `erased`) is one new [`Facts`] field, one new variant and
//! one new line in `decide`, at its place in the precedence.

use crate::pb;

/// The state of one entry, in precedence order: when several facts hold, the first state
/// listed here wins (retracted beats quarantined beats disputed beats active).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EntryState {
    /// Withdrawn by a retraction that applies: it does not match.
    Retracted,
    /// Quarantined (false-positive threshold reached, or an admin quorum): it does not match
    /// and is left out of snapshots unless asked for.
    Quarantined,
    /// Both positive and negative opinions (or a `disputed` one): it still matches, with its
    /// tally shown.
    Disputed,
    /// Shared and in force: it matches.
    Active,
}

/// What the lifecycle statements that apply establish about one entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// A retraction that applies names it.
    pub retracted: bool,
    /// Quarantined by the threshold or by an admin quorum (and not released).
    pub quarantined: bool,
    /// Its opinions disagree (see [`super::Tally::disputes`]).
    pub disputed: bool,
}

impl EntryState {
    /// Every state, in precedence order.
    pub const ALL: [EntryState; 4] = [
        EntryState::Retracted,
        EntryState::Quarantined,
        EntryState::Disputed,
        EntryState::Active,
    ];

    /// The states Match returns and snapshots keep when nothing else is asked for.
    pub const MATCHING: [EntryState; 2] = [EntryState::Active, EntryState::Disputed];

    /// The precedence: the first fact that holds decides.
    pub fn decide(facts: &Facts) -> EntryState {
        if facts.retracted {
            EntryState::Retracted
        } else if facts.quarantined {
            EntryState::Quarantined
        } else if facts.disputed {
            EntryState::Disputed
        } else {
            EntryState::Active
        }
    }

    /// The name used in files, events and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EntryState::Active => "active",
            EntryState::Disputed => "disputed",
            EntryState::Quarantined => "quarantined",
            EntryState::Retracted => "retracted",
        }
    }

    /// Parses a name ([`EntryState::name`]).
    pub fn parse(name: &str) -> Option<EntryState> {
        Self::ALL.into_iter().find(|s| s.name() == name)
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
        }
    }

    /// Parses a wire enum value; `None` for unspecified or unknown values.
    pub fn from_wire(value: i32) -> Option<EntryState> {
        match pb::EntryState::try_from(value).ok()? {
            pb::EntryState::Active => Some(EntryState::Active),
            pb::EntryState::Disputed => Some(EntryState::Disputed),
            pb::EntryState::Quarantined => Some(EntryState::Quarantined),
            pb::EntryState::Retracted => Some(EntryState::Retracted),
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
            };
            assert_eq!(EntryState::decide(&facts), want, "{facts:?}");
        }
        let mut sorted = EntryState::ALL;
        sorted.sort();
        assert_eq!(sorted, EntryState::ALL, "ALL is in precedence order");
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
    }
}
