//! The lifecycle of shared knowledge: retractions, and the state of each entry they decide.
//!
//! Pure, no I/O. A [`Retraction`] is a signed statement in the log naming a target statement
//! (and optionally single entries of it). The [`Lifecycle`] keeps one [`Record`] per retraction
//! replayed, keyed by its target: memory grows with the number of lifecycle statements, never
//! with the number of entries. Whoever holds an entry (the hub's matching index, a member's
//! sync output, the auditor) asks [`Lifecycle::state`] about it, giving what it knows of the
//! target ([`Target`]: its position, issuer and kind). The rules (docs/PROTOCOL.md §4.3) are
//! decided at that moment, against the membership replayed so far, so a compromise revocation
//! logged after a retraction voids it everywhere at once.
//!
//! The replica feeds retractions here in log order through `membership::Registry::apply`, which
//! holds the [`Lifecycle`] next to membership and settings; signatures and entitlement (the
//! issuer's own key, or an admin quorum) were checked before, like any governance statement.

pub mod expiry;

use crate::membership::{KeyId, MemberId, Position};
use crate::pb;
use crate::statement::{Body, Kind, StatementError, StatementId, check_text};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Most characters in a retraction's reason.
pub const MAX_REASON_CHARS: usize = 1000;
/// Most entry indexes one retraction may name (a hash set's entry limit).
pub const MAX_RETRACTED_ENTRIES: usize = crate::statement::MAX_HASH_SET_ENTRIES;

/// A retraction as signed: what it withdraws and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retraction {
    /// The statement withdrawn.
    pub target: StatementId,
    /// The entries withdrawn (ascending, each once); empty: the whole statement.
    pub entries: Vec<u32>,
    /// Why (1..=[`MAX_REASON_CHARS`] characters).
    pub reason: String,
    /// An admin-quorum retraction (otherwise the issuer retracts its own statement).
    pub admin_quorum: bool,
}

impl Retraction {
    /// Parses and checks the wire form.
    pub fn from_wire(wire: pb::Retraction) -> Result<Self, StatementError> {
        let target = StatementId(wire.statement_id.as_slice().try_into().map_err(|_| {
            StatementError::invalid(
                "retraction.statement_id",
                format!("must be 32 bytes, got {}", wire.statement_id.len()),
            )
        })?);
        if wire.entries.len() > MAX_RETRACTED_ENTRIES {
            return Err(StatementError::TooLarge {
                what: "retraction entries",
                size: wire.entries.len(),
                limit: MAX_RETRACTED_ENTRIES,
            });
        }
        if !wire.entries.windows(2).all(|w| w[0] < w[1]) {
            return Err(StatementError::invalid(
                "retraction.entries",
                "must be ascending, each entry index once",
            ));
        }
        let reason = check_text("retraction.reason", wire.reason, 1, MAX_REASON_CHARS)?;
        Ok(Retraction {
            target,
            entries: wire.entries,
            reason,
            admin_quorum: wire.admin_quorum,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::Retraction {
        pb::Retraction {
            statement_id: self.target.0.to_vec(),
            entries: self.entries.clone(),
            reason: self.reason.clone(),
            admin_quorum: self.admin_quorum,
        }
    }

    /// One line saying what it does.
    pub fn describe(&self) -> String {
        let what = if self.entries.is_empty() {
            format!("statement {}", self.target)
        } else {
            format!(
                "entries {} of statement {}",
                list(&self.entries),
                self.target
            )
        };
        let by = if self.admin_quorum {
            "by admin quorum"
        } else {
            "by its issuer"
        };
        format!("retract {what} {by}")
    }
}

/// The state of one entry. More states join later (disputed, quarantined, compromised,
/// expired, erased: issue 12); readers match on it with a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryState {
    /// Shared and in force: it matches.
    Active,
    /// Withdrawn by a retraction that applies: it no longer matches.
    Retracted,
    /// Its statement's expiry has passed ([`expiry`]): it no longer matches.
    Expired,
    /// Signed with a key declared compromised from a time at or before the hub received it:
    /// it no longer matches.
    Compromised,
}

impl EntryState {
    /// The name used in files, events and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EntryState::Active => "active",
            EntryState::Retracted => "retracted",
            EntryState::Expired => "expired",
            EntryState::Compromised => "compromised",
        }
    }

    /// Whether an entry in this state is returned by Match and kept in a member's snapshot.
    pub fn matches(self) -> bool {
        self == EntryState::Active
    }
}

/// What a holder of a statement knows about it: enough to decide whether a retraction of it
/// applies.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// Its statement id.
    pub id: StatementId,
    /// Where it was logged.
    pub seq: u64,
    /// Who made it (from its signed header).
    pub issuer: &'a MemberId,
    /// Its kind.
    pub kind: Kind,
}

/// One retraction as replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The retraction's statement id.
    pub id: StatementId,
    /// Where it was logged.
    pub position: Position,
    /// Who issued it.
    pub issuer: MemberId,
    /// The keys that signed it.
    pub key_ids: Vec<KeyId>,
    /// What it says.
    pub retraction: Retraction,
}

/// Why a retraction has no effect on a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoEffect {
    /// The target was not logged before the retraction (this log did not have it then).
    NotLoggedBefore,
    /// Not an admin-quorum retraction, and its issuer is not the target's.
    NotTheIssuer {
        /// The target's issuer.
        target_issuer: MemberId,
    },
    /// Only hash sets and risk signals can be retracted.
    NotRetractable(Kind),
    /// A key that signed it was declared compromised from a time at or before its receipt.
    SignedByCompromisedKey(KeyId),
}

impl std::fmt::Display for NoEffect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoEffect::NotLoggedBefore => write!(f, "the target was not in the log before it"),
            NoEffect::NotTheIssuer { target_issuer } => write!(
                f,
                "its issuer is not the target's issuer '{target_issuer}' and it is not an admin-quorum retraction"
            ),
            NoEffect::NotRetractable(kind) => {
                write!(f, "a {} statement cannot be retracted", kind.name())
            }
            NoEffect::SignedByCompromisedKey(key) => write!(
                f,
                "key {key} that signed it was declared compromised from before it was logged"
            ),
        }
    }
}

/// Which entries of a statement are retracted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retracted {
    /// The whole statement.
    pub all: bool,
    /// Single entries (besides `all`).
    pub entries: BTreeSet<u32>,
}

impl Retracted {
    /// Nothing retracted.
    pub fn is_none(&self) -> bool {
        !self.all && self.entries.is_empty()
    }

    /// The state of entry `index`.
    pub fn state(&self, index: u32) -> EntryState {
        if self.all || self.entries.contains(&index) {
            EntryState::Retracted
        } else {
            EntryState::Active
        }
    }
}

/// Every retraction replayed, by target. Cloning is cheap (shared); a new retraction copies
/// the index of targets (one pointer each), not the records.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    by_target: Arc<HashMap<StatementId, Vec<Arc<Record>>>>,
    count: u64,
}

impl Lifecycle {
    /// An empty lifecycle: nothing retracted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a retraction replayed at `position` (its signatures and entitlement checked).
    /// A retraction of a target never logged, or twice of the same, is recorded all the same:
    /// it has no (further) effect.
    pub fn record(
        &mut self,
        id: StatementId,
        position: Position,
        issuer: MemberId,
        key_ids: Vec<KeyId>,
        retraction: Retraction,
    ) {
        let target = retraction.target;
        let record = Arc::new(Record {
            id,
            position,
            issuer,
            key_ids,
            retraction,
        });
        Arc::make_mut(&mut self.by_target)
            .entry(target)
            .or_default()
            .push(record);
        self.count += 1;
    }

    /// Number of retractions replayed.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True if no retraction was replayed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether any retraction names `target` (cheap: one lookup; ask before building a
    /// [`Target`]).
    pub fn names(&self, target: &StatementId) -> bool {
        self.by_target.contains_key(target)
    }

    /// The retractions naming `target`, in log order.
    pub fn retractions_of(&self, target: &StatementId) -> &[Arc<Record>] {
        self.by_target.get(target).map_or(&[], Vec::as_slice)
    }

    /// Every target named, with its retractions (no order).
    pub fn targets(&self) -> impl Iterator<Item = (&StatementId, &[Arc<Record>])> {
        self.by_target.iter().map(|(k, v)| (k, v.as_slice()))
    }

    /// Whether `record` applies to `target`: the rules of docs/PROTOCOL.md §4.3, with
    /// `compromised(key, at_ms)` saying whether the membership replayed so far declares `key`
    /// compromised from a time at or before `at_ms`.
    pub fn verdict(
        record: &Record,
        target: &Target<'_>,
        compromised: &dyn Fn(&KeyId, i64) -> bool,
    ) -> Result<(), NoEffect> {
        if target.seq >= record.position.seq {
            return Err(NoEffect::NotLoggedBefore);
        }
        if !matches!(target.kind, Kind::HashSet | Kind::RiskSignal) {
            return Err(NoEffect::NotRetractable(target.kind));
        }
        if !record.retraction.admin_quorum && &record.issuer != target.issuer {
            return Err(NoEffect::NotTheIssuer {
                target_issuer: target.issuer.clone(),
            });
        }
        if let Some(key) = record
            .key_ids
            .iter()
            .find(|k| compromised(k, record.position.received_at_ms))
        {
            return Err(NoEffect::SignedByCompromisedKey(key.clone()));
        }
        Ok(())
    }

    /// Which entries of `target` the retractions that apply withdraw.
    pub fn retracted(
        &self,
        target: &Target<'_>,
        compromised: &dyn Fn(&KeyId, i64) -> bool,
    ) -> Retracted {
        let mut out = Retracted::default();
        for record in self.retractions_of(&target.id) {
            if Self::verdict(record, target, compromised).is_err() {
                continue;
            }
            if record.retraction.entries.is_empty() {
                out.all = true;
            } else {
                out.entries
                    .extend(record.retraction.entries.iter().copied());
            }
        }
        out
    }

    /// The state of entry `index` of `target`.
    pub fn state(
        &self,
        target: &Target<'_>,
        index: u32,
        compromised: &dyn Fn(&KeyId, i64) -> bool,
    ) -> EntryState {
        if !self.names(&target.id) {
            return EntryState::Active;
        }
        self.retracted(target, compromised).state(index)
    }
}

/// Why a hub refuses a retraction at its front door (Submit, SubmitBatch): the checks that
/// need the target, which only a holder of the target can make. The replica's own rules
/// ([`Lifecycle::verdict`]) stay the authority for what a logged retraction does.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetractionError {
    /// The target is not in this hub's log.
    #[error(
        "retraction.statement_id: no statement {0} in this hub's log; check the id (coalition show ID)"
    )]
    UnknownTarget(StatementId),
    /// Some named entries do not exist.
    #[error(
        "retraction.entries: statement {target} has {count} entries (0..{count}); entries {missing} do not exist"
    )]
    UnknownEntries {
        /// The target.
        target: StatementId,
        /// Its number of entries.
        count: u32,
        /// The indexes that do not exist.
        missing: String,
    },
    /// The target is of a kind that cannot be retracted.
    #[error(
        "retraction.statement_id: statement {target} is a {} statement; only hash sets and risk signals can be retracted",
        .kind.name()
    )]
    NotRetractable {
        /// The target.
        target: StatementId,
        /// Its kind.
        kind: Kind,
    },
    /// A member retracting another member's statement.
    #[error(
        "statement {target} was shared by '{target_issuer}', not '{issuer}': a member retracts only its own statements (an admin quorum may retract any hash set or risk signal)"
    )]
    NotTheIssuer {
        /// The target.
        target: StatementId,
        /// Its issuer.
        target_issuer: MemberId,
        /// The retraction's issuer.
        issuer: MemberId,
    },
}

/// The number of entries of a statement a retraction may name: a hash set's entries, a risk
/// signal's indicators; `None` for kinds that cannot be retracted.
pub fn entry_count(body: &Body) -> Option<u32> {
    match body {
        Body::HashSet(set) => Some(set.entries.len() as u32),
        Body::RiskSignal(signal) => Some(signal.indicators.len() as u32),
        _ => None,
    }
}

/// The front-door rules for a retraction by `issuer` of `target` (`None`: not in the log).
pub fn check_retraction(
    retraction: &Retraction,
    issuer: &MemberId,
    target: Option<(&MemberId, &Body)>,
) -> Result<(), RetractionError> {
    let id = retraction.target;
    let Some((target_issuer, body)) = target else {
        return Err(RetractionError::UnknownTarget(id));
    };
    let Some(count) = entry_count(body) else {
        return Err(RetractionError::NotRetractable {
            target: id,
            kind: body.kind(),
        });
    };
    if !retraction.admin_quorum && target_issuer != issuer {
        return Err(RetractionError::NotTheIssuer {
            target: id,
            target_issuer: target_issuer.clone(),
            issuer: issuer.clone(),
        });
    }
    let missing: Vec<u32> = retraction
        .entries
        .iter()
        .copied()
        .filter(|e| *e >= count)
        .collect();
    if !missing.is_empty() {
        return Err(RetractionError::UnknownEntries {
            target: id,
            count,
            missing: list(&missing),
        });
    }
    Ok(())
}

/// Which of `statement`'s hashes ([`Body::hashes`] order: the hub's matching index) the
/// `retracted` entries withdraw: a hash set's entry `i` is its hash `i`; a risk signal's entry
/// is an indicator, and only hash indicators are hashes.
pub fn retracted_hashes(body: &Body, retracted: &Retracted) -> BTreeSet<u32> {
    match body {
        Body::HashSet(set) => (0..set.entries.len() as u32)
            .filter(|i| !retracted.state(*i).matches())
            .collect(),
        Body::RiskSignal(signal) => signal
            .indicators
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i, crate::statement::Indicator::Hash(_)))
            .enumerate()
            .filter(|(_, (entry, _))| !retracted.state(*entry as u32).matches())
            .map(|(hash, _)| hash as u32)
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// At most 20 indexes, then how many more.
fn list(entries: &[u32]) -> String {
    let shown: Vec<String> = entries.iter().take(20).map(u32::to_string).collect();
    if entries.len() > 20 {
        format!("{} and {} more", shown.join(", "), entries.len() - 20)
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    fn key(n: u8) -> KeyId {
        KeyId::parse(&format!("{n:016x}")).unwrap()
    }

    fn id(n: u8) -> StatementId {
        StatementId([n; 32])
    }

    fn retract(
        life: &mut Lifecycle,
        seq: u64,
        issuer: &str,
        target: u8,
        entries: &[u32],
        admin_quorum: bool,
    ) {
        life.record(
            id(100 + seq as u8),
            Position {
                seq,
                received_at_ms: 1000 + seq as i64,
            },
            member(issuer),
            vec![key(seq as u8)],
            Retraction {
                target: id(target),
                entries: entries.to_vec(),
                reason: "wrong hash".into(),
                admin_quorum,
            },
        );
    }

    const NEVER: &dyn Fn(&KeyId, i64) -> bool = &|_, _| false;

    /// The table of rules: (case, retractions, target, entry, expected state).
    #[test]
    fn rules() {
        let acme = member("acme");
        let set = |seq| Target {
            id: id(1),
            seq,
            issuer: &acme,
            kind: Kind::HashSet,
        };
        let check = |name: &str, life: &Lifecycle, target: Target<'_>, index, want| {
            assert_eq!(life.state(&target, index, NEVER), want, "{name}");
        };
        let mut own = Lifecycle::new();
        retract(&mut own, 5, "acme", 1, &[], false);
        check("own, whole", &own, set(2), 0, EntryState::Retracted);
        check(
            "own, whole, any entry",
            &own,
            set(2),
            7,
            EntryState::Retracted,
        );
        check("target after it", &own, set(6), 0, EntryState::Active);

        let mut other = Lifecycle::new();
        retract(&mut other, 5, "bolt", 1, &[], false);
        check("another member's", &other, set(2), 0, EntryState::Active);

        let mut quorum = Lifecycle::new();
        retract(&mut quorum, 5, "admin", 1, &[], true);
        check("admin quorum", &quorum, set(2), 0, EntryState::Retracted);
        let membership = Target {
            kind: Kind::Membership,
            ..set(2)
        };
        check(
            "admin quorum, membership",
            &quorum,
            membership,
            0,
            EntryState::Active,
        );

        let mut some = Lifecycle::new();
        retract(&mut some, 5, "acme", 1, &[1, 3], false);
        retract(&mut some, 6, "acme", 1, &[1, 3], false);
        check("single entry", &some, set(2), 1, EntryState::Retracted);
        check("entry not named", &some, set(2), 2, EntryState::Active);
        check("twice, idempotent", &some, set(2), 3, EntryState::Retracted);
        assert_eq!(some.len(), 2);
        let unknown = Target {
            id: id(9),
            ..set(2)
        };
        check("unknown target", &some, unknown, 0, EntryState::Active);
    }

    #[test]
    fn compromised_key_voids_it() {
        let acme = member("acme");
        let mut life = Lifecycle::new();
        retract(&mut life, 5, "acme", 1, &[], false);
        let target = Target {
            id: id(1),
            seq: 2,
            issuer: &acme,
            kind: Kind::RiskSignal,
        };
        // Compromised since 1005 (the retraction's receipt): no effect.
        let since = |_: &KeyId, at: i64| at >= 1005;
        assert_eq!(life.state(&target, 0, &since), EntryState::Active);
        // Compromised only from later: it applies.
        let later = |_: &KeyId, at: i64| at >= 1006;
        assert_eq!(life.state(&target, 0, &later), EntryState::Retracted);
        let record = &life.retractions_of(&id(1))[0];
        assert_eq!(
            Lifecycle::verdict(record, &target, &since),
            Err(NoEffect::SignedByCompromisedKey(key(5)))
        );
    }

    #[test]
    fn wire_form_is_checked() {
        let good = pb::Retraction {
            statement_id: vec![7; 32],
            entries: vec![0, 2],
            reason: "court order".into(),
            admin_quorum: true,
        };
        let parsed = Retraction::from_wire(good.clone()).unwrap();
        assert_eq!(parsed.to_wire(), good);
        let bad = |w: pb::Retraction, what: &str| {
            let e = Retraction::from_wire(w).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        };
        bad(
            pb::Retraction {
                statement_id: vec![7; 31],
                ..good.clone()
            },
            "must be 32 bytes",
        );
        bad(
            pb::Retraction {
                entries: vec![2, 2],
                ..good.clone()
            },
            "ascending",
        );
        bad(
            pb::Retraction {
                reason: String::new(),
                ..good.clone()
            },
            "1..=1000",
        );
        bad(
            pb::Retraction {
                reason: "a\u{7}b".into(),
                ..good.clone()
            },
            "control",
        );
    }
}
