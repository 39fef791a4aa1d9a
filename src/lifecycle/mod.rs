//! The lifecycle of shared knowledge: retractions, opinions, and the state of each entry they
//! decide.
//!
//! Pure, no I/O. A [`Retraction`] is a signed statement in the log naming a target statement
//! (and optionally single entries of it); an [`Opinion`] names one entry ([`opinion`]). The
//! [`Lifecycle`] keeps one [`Record`] per retraction and one [`OpinionRecord`] per opinion
//! replayed, keyed by target (opinions also by the hash they copy from their target): memory
//! grows with the number of lifecycle statements, never with the number of entries. The
//! precedence of the states is in [`state`]. Whoever holds an entry (the hub's matching index, a member's
//! sync output, the auditor) asks [`Lifecycle::state`] about it, giving what it knows of the
//! target ([`Target`]: its position, issuer and kind). The rules (docs/PROTOCOL.md §4.3) are
//! decided at that moment, against the membership replayed so far, so a compromise revocation
//! logged after a retraction voids it everywhere at once.
//!
//! The replica feeds retractions here in log order through `membership::Registry::apply`, which
//! holds the [`Lifecycle`] next to membership and settings; signatures and entitlement (the
//! issuer's own key, or an admin quorum) were checked before, like any governance statement.

pub mod expiry;
pub mod opinion;
pub mod state;

pub use opinion::{
    DEFAULT_QUARANTINE_THRESHOLD, HashKey, Judge, MAX_NOTE_CHARS, MAX_QUARANTINE_THRESHOLD,
    Opinion, OpinionRecord, Opinions, Tally, Verdict,
};
pub use state::{EntryState, Facts};

use crate::membership::{KeyId, MemberId, Position};
use crate::pb;
use crate::statement::{Body, Kind, Reader, Recipients, StatementError, StatementId, check_text};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// An erasure under legal order (docs/PROTOCOL.md §2.8): an admin-quorum retraction of
    /// the whole statement that also erases its body everywhere it is honoured.
    pub erase: bool,
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
        if wire.erase && !wire.admin_quorum {
            return Err(StatementError::invalid(
                "retraction.erase",
                "an erasure is an admin-quorum statement: set admin_quorum too",
            ));
        }
        if wire.erase && !wire.entries.is_empty() {
            return Err(StatementError::invalid(
                "retraction.erase",
                "an erasure erases the whole statement (its body is one signed digest): leave entries empty",
            ));
        }
        Ok(Retraction {
            target,
            entries: wire.entries,
            reason,
            admin_quorum: wire.admin_quorum,
            erase: wire.erase,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::Retraction {
        pb::Retraction {
            statement_id: self.target.0.to_vec(),
            entries: self.entries.clone(),
            reason: self.reason.clone(),
            admin_quorum: self.admin_quorum,
            erase: self.erase,
        }
    }

    /// One line saying what it does.
    pub fn describe(&self) -> String {
        if self.erase {
            return format!("erase statement {} by admin quorum", self.target);
        }
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

/// Whether a statement of `issuer` (on its own, or as an admin quorum) may withdraw or judge
/// a statement of `target_issuer`: a statement relayed from another hub (its issuer
/// qualified, `admin@x.example`, docs/PROTOCOL.md §3.10) reaches only that hub's members'
/// statements; this hub's own reach every statement it holds.
fn quorum_reaches(issuer: &MemberId, target_issuer: &MemberId) -> bool {
    issuer
        .hub()
        .is_none_or(|hub| target_issuer.hub() == Some(hub))
}

/// Why a retraction or an opinion has no effect on a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoEffect {
    /// The target was not logged before the retraction (this log did not have it then).
    NotLoggedBefore,
    /// A member's opinion on an entry it shared itself.
    OwnEntry,
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
            NoEffect::OwnEntry => write!(f, "its issuer shared the entry itself"),
            NoEffect::NotTheIssuer { target_issuer } => write!(
                f,
                "its issuer is not the target's issuer '{target_issuer}' and it is not an admin-quorum retraction"
            ),
            NoEffect::NotRetractable(kind) => {
                write!(
                    f,
                    "a {} statement has no entries to retract or judge",
                    kind.name()
                )
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
    /// The whole statement was erased (docs/PROTOCOL.md §2.8): the log position of the first
    /// erasure that applies. Implies `all`.
    pub erased_by: Option<u64>,
}

impl Retracted {
    /// Nothing retracted.
    pub fn is_none(&self) -> bool {
        !self.all && self.entries.is_empty()
    }

    /// The state of entry `index`.
    pub fn state(&self, index: u32) -> EntryState {
        if self.erased_by.is_some() {
            EntryState::Erased
        } else if self.all || self.entries.contains(&index) {
            EntryState::Retracted
        } else {
            EntryState::Active
        }
    }
}

/// Opinion records in log order, shared.
type Records = Arc<Vec<Arc<OpinionRecord>>>;

/// Every retraction and opinion replayed, by target (opinions also by hash). Cloning is cheap
/// (shared); a new record copies the index it joins (one pointer per key), not the records.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    by_target: Arc<HashMap<StatementId, Vec<Arc<Record>>>>,
    count: u64,
    opinions: Arc<HashMap<StatementId, Records>>,
    opinions_by_hash: Arc<HashMap<HashKey, Records>>,
    opinion_count: u64,
}

/// The state of every entry of one statement: the retractions that apply and the opinions on
/// its entries, decided once (an entry no opinion names has an empty tally).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatementStates {
    /// Its retracted entries.
    pub retracted: Retracted,
    /// Opinions, by entry (only entries some opinion names).
    pub opinions: BTreeMap<u32, Opinions>,
}

impl StatementStates {
    /// Nothing retracted, no opinion.
    pub fn is_plain(&self) -> bool {
        self.retracted.is_none() && self.opinions.is_empty()
    }

    /// The facts about entry `index`.
    pub fn facts(&self, index: u32) -> Facts {
        let opinions = self.opinions(index);
        Facts {
            erased: self.retracted.erased_by.is_some(),
            retracted: self.retracted.state(index) == EntryState::Retracted,
            quarantined: opinions.quarantined,
            disputed: opinions.tally.disputes(),
            // Decided outside the lifecycle statements (see `EntryState::with`).
            ..Facts::default()
        }
    }

    /// The state of entry `index`.
    pub fn state(&self, index: u32) -> EntryState {
        EntryState::decide(&self.facts(index))
    }

    /// The opinions on entry `index`.
    pub fn opinions(&self, index: u32) -> Opinions {
        self.opinions.get(&index).copied().unwrap_or_default()
    }
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

    /// Records an opinion replayed at `position` (its signatures and entitlement checked),
    /// with the recipients its header names. Whether it has an effect is decided at read time
    /// ([`Lifecycle::opinion_verdict`]).
    pub fn record_opinion(
        &mut self,
        id: StatementId,
        position: Position,
        issuer: MemberId,
        key_ids: Vec<KeyId>,
        opinion: Opinion,
        recipients: Recipients,
    ) {
        let (target, hash) = (opinion.target, opinion.hash.clone());
        let record = Arc::new(OpinionRecord {
            id,
            position,
            issuer,
            key_ids,
            opinion,
            recipients,
        });
        let push = |records: &mut Records| Arc::make_mut(records).push(record.clone());
        push(Arc::make_mut(&mut self.opinions).entry(target).or_default());
        if let Some(hash) = hash {
            push(
                Arc::make_mut(&mut self.opinions_by_hash)
                    .entry(hash)
                    .or_default(),
            );
        }
        self.opinion_count += 1;
    }

    /// Number of retractions replayed.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Number of opinions replayed.
    pub fn opinion_count(&self) -> u64 {
        self.opinion_count
    }

    /// True if no retraction and no opinion was replayed.
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.opinion_count == 0
    }

    /// Whether any retraction or opinion names `target` (cheap: two lookups; ask before
    /// building a [`Target`]).
    pub fn names(&self, target: &StatementId) -> bool {
        self.by_target.contains_key(target) || self.opinions.contains_key(target)
    }

    /// The opinions naming `target` (any entry), in log order.
    pub fn opinions_of(&self, target: &StatementId) -> &[Arc<OpinionRecord>] {
        self.opinions.get(target).map_or(&[], |r| r.as_slice())
    }

    /// Every opinion that copies `hash` from its target, in log order.
    pub fn opinions_on_hash(&self, hash: &HashKey) -> &[Arc<OpinionRecord>] {
        self.opinions_by_hash
            .get(hash)
            .map_or(&[], |r| r.as_slice())
    }

    /// Every statement some opinion names.
    pub fn opinion_targets(&self) -> impl Iterator<Item = &StatementId> {
        self.opinions.keys()
    }

    /// Whether opinion `record` applies to `target` (docs/PROTOCOL.md §4.3): the target was
    /// logged before it, is a hash set or a risk signal, is not the opinion issuer's own (an
    /// admin quorum may judge any), and no key that signed it was compromised when it was
    /// received. Whether its issuer is counted is decided by [`Judge::counts`] when tallied.
    pub fn opinion_verdict(
        record: &OpinionRecord,
        target: &Target<'_>,
        judge: &Judge<'_>,
    ) -> Result<(), NoEffect> {
        if target.seq >= record.position.seq {
            return Err(NoEffect::NotLoggedBefore);
        }
        if !matches!(target.kind, Kind::HashSet | Kind::RiskSignal) {
            return Err(NoEffect::NotRetractable(target.kind));
        }
        if !record.opinion.admin_quorum && &record.issuer == target.issuer {
            return Err(NoEffect::OwnEntry);
        }
        if !quorum_reaches(&record.issuer, target.issuer) {
            return Err(NoEffect::NotTheIssuer {
                target_issuer: target.issuer.clone(),
            });
        }
        judge
            .trusted(record)
            .map_err(NoEffect::SignedByCompromisedKey)
    }

    /// The opinions on every entry of `target` that some opinion names, decided.
    pub fn opinions(&self, target: &Target<'_>, judge: &Judge<'_>) -> BTreeMap<u32, Opinions> {
        let mut by_entry: BTreeMap<u32, Vec<&OpinionRecord>> = BTreeMap::new();
        // The verdict track only: `seen` never changes a state (and not every replica reads it).
        for record in self.opinions_of(&target.id) {
            if !record.is_seen_track() && Self::opinion_verdict(record, target, judge).is_ok() {
                by_entry
                    .entry(record.opinion.entry)
                    .or_default()
                    .push(record);
            }
        }
        by_entry
            .into_iter()
            .map(|(entry, records)| {
                let admin = records
                    .iter()
                    .rev()
                    .find(|r| r.opinion.admin_quorum)
                    .map(|r| (r.opinion.verdict == Verdict::Quarantine, r.position.seq));
                let (tally, latest) =
                    opinion::latest(records.iter().copied(), target.issuer, judge);
                // False positives logged after the admin quorum's last release.
                let since = admin.filter(|(q, _)| !q).map_or(0, |(_, seq)| seq);
                let reported = latest
                    .iter()
                    .filter(|(v, seq)| *v == Verdict::FalsePositive && *seq > since)
                    .count() as u32;
                let admin_quarantine = admin.map(|(q, _)| q);
                let quarantined =
                    admin_quarantine == Some(true) || reported >= judge.quarantine_threshold.max(1);
                (
                    entry,
                    Opinions {
                        tally,
                        admin_quarantine,
                        quarantined,
                    },
                )
            })
            .collect()
    }

    /// The tally of a hash value across every statement that shares it, for an entry shared
    /// by `issuer` (never counted): each counted member's latest opinion on any entry whose
    /// hash it is, as the opinions copy it. Member opinions only; those signed by a key
    /// compromised at their receipt have no effect.
    pub fn hash_tally(&self, hash: &HashKey, issuer: &MemberId, judge: &Judge<'_>) -> Tally {
        let records = self
            .opinions_on_hash(hash)
            .iter()
            .filter(|r| !r.is_seen_track() && judge.trusted(r).is_ok())
            .map(|r| r.as_ref());
        opinion::latest(records, issuer, judge).0
    }

    /// The `seen` count of entry `entry` of `target` for `reader`: among the seen-track
    /// records that apply to it and that `reader` may read, each counted member's latest (a
    /// restricted `withdrawn` removes it), never the target's issuer (docs/PROTOCOL.md §2.7
    /// "Seen"). A replica that was not given a seen opinion's body simply lacks it.
    pub fn seen(&self, target: &Target<'_>, entry: u32, judge: &Judge<'_>, reader: &Reader) -> u32 {
        let records = self.opinions_of(&target.id).iter().filter(|r| {
            r.is_seen_track()
                && r.opinion.entry == entry
                && r.readable_by(reader)
                && Self::opinion_verdict(r, target, judge).is_ok()
        });
        opinion::latest(records.map(|r| r.as_ref()), target.issuer, judge)
            .0
            .seen
    }

    /// The `seen` count of a hash value across every statement sharing it, for an entry shared
    /// by `issuer` (never counted) and for `reader` (only the seen-track records it may read).
    pub fn hash_seen(
        &self,
        hash: &HashKey,
        issuer: &MemberId,
        judge: &Judge<'_>,
        reader: &Reader,
    ) -> u32 {
        let records = self
            .opinions_on_hash(hash)
            .iter()
            .filter(|r| r.is_seen_track() && r.readable_by(reader) && judge.trusted(r).is_ok());
        opinion::latest(records.map(|r| r.as_ref()), issuer, judge)
            .0
            .seen
    }

    /// The state of every entry of `target`.
    pub fn states(&self, target: &Target<'_>, judge: &Judge<'_>) -> StatementStates {
        if !self.names(&target.id) {
            return StatementStates::default();
        }
        StatementStates {
            retracted: self.retracted(target, judge.compromised),
            opinions: self.opinions(target, judge),
        }
    }

    /// Whether an erasure names `target` (whether it applies is [`Lifecycle::retracted`]'s).
    pub fn erases(&self, target: &StatementId) -> bool {
        self.retractions_of(target)
            .iter()
            .any(|r| r.retraction.erase)
    }

    /// Every statement an erasure names, with the position of the first erasure naming it.
    pub fn erasure_targets(&self) -> impl Iterator<Item = (&StatementId, u64)> {
        self.by_target.iter().filter_map(|(target, records)| {
            records
                .iter()
                .find(|r| r.retraction.erase)
                .map(|r| (target, r.position.seq))
        })
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
    /// `compromised(issuer, key, at_ms)` saying whether the membership replayed so far declares
    /// `key` of `issuer` compromised from a time at or before `at_ms`.
    pub fn verdict(
        record: &Record,
        target: &Target<'_>,
        compromised: &dyn Fn(&MemberId, &KeyId, i64) -> bool,
    ) -> Result<(), NoEffect> {
        if target.seq >= record.position.seq {
            return Err(NoEffect::NotLoggedBefore);
        }
        if !matches!(target.kind, Kind::HashSet | Kind::RiskSignal) {
            return Err(NoEffect::NotRetractable(target.kind));
        }
        // An erasure reaches only statements of its own hub: a relaying hub cannot erase a
        // relayed statement (only its origin can, docs/PROTOCOL.md §3.10).
        let erases_elsewhere =
            record.retraction.erase && record.issuer.hub() != target.issuer.hub();
        if (!record.retraction.admin_quorum && &record.issuer != target.issuer)
            || !quorum_reaches(&record.issuer, target.issuer)
            || erases_elsewhere
        {
            return Err(NoEffect::NotTheIssuer {
                target_issuer: target.issuer.clone(),
            });
        }
        // An erasure is final: its body is gone from the hub and every replica that honoured
        // it, so a later compromise declaration cannot bring the entry back (§2.8).
        if let Some(key) = record
            .key_ids
            .iter()
            .filter(|_| !record.retraction.erase)
            .find(|k| compromised(&record.issuer, k, record.position.received_at_ms))
        {
            return Err(NoEffect::SignedByCompromisedKey(key.clone()));
        }
        Ok(())
    }

    /// Which entries of `target` the retractions that apply withdraw.
    pub fn retracted(
        &self,
        target: &Target<'_>,
        compromised: &dyn Fn(&MemberId, &KeyId, i64) -> bool,
    ) -> Retracted {
        let mut out = Retracted::default();
        for record in self.retractions_of(&target.id) {
            if Self::verdict(record, target, compromised).is_err() {
                continue;
            }
            if record.retraction.erase && out.erased_by.is_none() {
                out.erased_by = Some(record.position.seq);
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
    pub fn state(&self, target: &Target<'_>, index: u32, judge: &Judge<'_>) -> EntryState {
        self.states(target, judge).state(index)
    }
}

/// Why a hub refuses a retraction or an opinion at its front door (Submit, SubmitBatch): the
/// checks that need the target, which only a holder of the target can make. The replica's own
/// rules ([`Lifecycle::verdict`], [`Lifecycle::opinion_verdict`]) stay the authority for what
/// a logged statement does. `what` is the statement's body field (`retraction`, `opinion`).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// The target is not in this hub's log.
    #[error(
        "{what}.statement_id: no statement {target} in this hub's log; check the id (coalition show ID)"
    )]
    UnknownTarget {
        /// The statement's body field.
        what: &'static str,
        /// The target.
        target: StatementId,
    },
    /// Some named entries do not exist.
    #[error(
        "{what}.entries: statement {target} has {count} entries (0..{count}); entries {missing} do not exist"
    )]
    UnknownEntries {
        /// The statement's body field.
        what: &'static str,
        /// The target.
        target: StatementId,
        /// Its number of entries.
        count: u32,
        /// The indexes that do not exist.
        missing: String,
    },
    /// The target is of a kind that has no entries to retract or judge.
    #[error(
        "{what}.statement_id: statement {target} is a {} statement; only hash sets and risk signals can be {done}",
        .kind.name()
    )]
    NotRetractable {
        /// The statement's body field.
        what: &'static str,
        /// What would be done to it ("retracted", "judged").
        done: &'static str,
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
    /// A member's opinion on its own entry.
    #[error(
        "opinion: entry {entry} of statement {target} was shared by '{issuer}' itself; opinions are on other members' entries (to withdraw it, retract it)"
    )]
    OwnEntry {
        /// The target.
        target: StatementId,
        /// The entry.
        entry: u32,
        /// The opinion's (and the entry's) issuer.
        issuer: MemberId,
    },
    /// A restricted opinion (a `seen`, or the `withdrawn` of one) whose recipients do not
    /// include the target entry's issuer.
    #[error(
        "recipients: a restricted {verdict} opinion on entry {entry} of statement {target} must name the entry's issuer '{target_issuer}' among its recipients (it names {recipients}); add --recipient {target_issuer} or share it with everyone (--public)"
    )]
    SeenNotToIssuer {
        /// The opinion's verdict name.
        verdict: &'static str,
        /// The target.
        target: StatementId,
        /// The entry.
        entry: u32,
        /// The target's issuer.
        target_issuer: MemberId,
        /// The recipients named.
        recipients: String,
    },
    /// The target was erased: it has no content left to retract in part or to judge.
    #[error(
        "{what}.statement_id: statement {target} was erased at log entry {by}: its content is gone, so its entries cannot be {done} (another erasure or a whole-statement retraction of it is accepted and changes nothing)"
    )]
    Erased {
        /// The statement's body field.
        what: &'static str,
        /// What would be done to its entries ("retracted", "judged").
        done: &'static str,
        /// The target.
        target: StatementId,
        /// The erasure's log position.
        by: u64,
    },
    /// An opinion copying the hash of an entry of a restricted statement: every member reads
    /// the opinion, so the copy would publish what only the recipients may read.
    #[error(
        "opinion.hash_value: statement {target} is restricted to {recipients}, and an opinion on its entries copies no hash (it is read by every member, so the copy {claimed} would publish restricted content); leave hash_type and hash_value unset"
    )]
    HashOfRestricted {
        /// The target.
        target: StatementId,
        /// The target's recipients.
        recipients: String,
        /// What the opinion copied.
        claimed: String,
    },
    /// The opinion's copy of the entry's hash differs from the entry.
    #[error(
        "opinion.hash_value: entry {entry} of statement {target} is {expected}, not {claimed}; copy the entry's hash type and value (none for an indicator that is not a hash)"
    )]
    HashMismatch {
        /// The target.
        target: StatementId,
        /// The entry.
        entry: u32,
        /// The entry's hash ("no hash" for other indicators).
        expected: String,
        /// What the opinion says.
        claimed: String,
    },
}

/// The number of entries of a statement a retraction or opinion may name: a hash set's
/// entries, a risk signal's indicators; `None` for kinds that have no entries.
pub fn entry_count(body: &Body) -> Option<u32> {
    match body {
        Body::HashSet(set) => Some(set.entries.len() as u32),
        Body::RiskSignal(signal) => Some(signal.indicators.len() as u32),
        _ => None,
    }
}

/// Entry `index` of `body`'s hash, if that entry is a hash.
pub fn entry_hash(body: &Body, index: u32) -> Option<HashKey> {
    let entry = match body {
        Body::HashSet(set) => set.entries.get(index as usize),
        Body::RiskSignal(signal) => match signal.indicators.get(index as usize) {
            Some(crate::statement::Indicator::Hash(h)) => Some(h),
            _ => None,
        },
        _ => None,
    }?;
    Some(HashKey {
        hash_type: entry.hash_type,
        value: entry.value.clone(),
    })
}

/// The target's entry count, or why it has none (`what`: the statement's body field).
fn counted(
    what: &'static str,
    id: StatementId,
    target: Option<(&MemberId, &Body)>,
) -> Result<(u32, MemberId), TargetError> {
    let Some((target_issuer, body)) = target else {
        return Err(TargetError::UnknownTarget { what, target: id });
    };
    let count = entry_count(body).ok_or(TargetError::NotRetractable {
        what,
        done: if what == "opinion" {
            "judged"
        } else {
            "retracted"
        },
        target: id,
        kind: body.kind(),
    })?;
    Ok((count, target_issuer.clone()))
}

/// The front-door rules for a retraction by `issuer` of `target` (`None`: not in the log).
pub fn check_retraction(
    retraction: &Retraction,
    issuer: &MemberId,
    target: Option<(&MemberId, &Body)>,
) -> Result<(), TargetError> {
    let id = retraction.target;
    let (count, target_issuer) = counted("retraction", id, target)?;
    if !retraction.admin_quorum && &target_issuer != issuer {
        return Err(TargetError::NotTheIssuer {
            target: id,
            target_issuer,
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
        return Err(TargetError::UnknownEntries {
            what: "retraction",
            target: id,
            count,
            missing: list(&missing),
        });
    }
    Ok(())
}

/// The front-door rule for a lifecycle statement (`body`) whose target was erased at log
/// position `by` (its body is gone, docs/PROTOCOL.md §2.8): another erasure, or a retraction of
/// the whole statement that the other rules allow, is logged and changes nothing (idempotent);
/// a retraction of single entries or an opinion is refused.
pub fn check_erased_target(
    body: &Body,
    issuer: &MemberId,
    target_issuer: &MemberId,
    target: StatementId,
    by: u64,
) -> Result<(), TargetError> {
    match body {
        Body::Retraction(r) if !r.admin_quorum && target_issuer != issuer => {
            Err(TargetError::NotTheIssuer {
                target,
                target_issuer: target_issuer.clone(),
                issuer: issuer.clone(),
            })
        }
        Body::Retraction(r) if r.entries.is_empty() => Ok(()),
        Body::Opinion(_) => Err(TargetError::Erased {
            what: "opinion",
            done: "judged",
            target,
            by,
        }),
        _ => Err(TargetError::Erased {
            what: "retraction",
            done: "retracted",
            target,
            by,
        }),
    }
}

/// The front-door rules for an opinion by `issuer`, restricted to `recipients`, on `target`
/// (`None`: not in the log), whose header names `target_recipients`: the entry exists, is not
/// the issuer's own (unless an admin quorum judges it), the opinion copies its hash (none when
/// the target is restricted: the opinion would publish it), and a restricted opinion names the
/// target's issuer.
pub fn check_opinion(
    opinion: &Opinion,
    issuer: &MemberId,
    recipients: &Recipients,
    target: Option<(&MemberId, &Body)>,
    target_recipients: &Recipients,
) -> Result<(), TargetError> {
    let id = opinion.target;
    let (count, target_issuer) = counted("opinion", id, target)?;
    if opinion.entry >= count {
        return Err(TargetError::UnknownEntries {
            what: "opinion",
            target: id,
            count,
            missing: opinion.entry.to_string(),
        });
    }
    if !opinion.admin_quorum && &target_issuer == issuer {
        return Err(TargetError::OwnEntry {
            target: id,
            entry: opinion.entry,
            issuer: issuer.clone(),
        });
    }
    if !recipients.is_everyone() && !recipients.members().contains(&target_issuer) {
        return Err(TargetError::SeenNotToIssuer {
            verdict: opinion.verdict.name(),
            target: id,
            entry: opinion.entry,
            target_issuer,
            recipients: recipients.to_string(),
        });
    }
    if !target_recipients.is_everyone()
        && let Some(hash) = &opinion.hash
    {
        return Err(TargetError::HashOfRestricted {
            target: id,
            recipients: target_recipients.to_string(),
            claimed: hash.to_string(),
        });
    }
    let expected = target
        .filter(|_| target_recipients.is_everyone())
        .and_then(|(_, body)| entry_hash(body, opinion.entry));
    if expected != opinion.hash {
        let show = |h: &Option<HashKey>| h.as_ref().map_or("no hash".into(), |h| h.to_string());
        return Err(TargetError::HashMismatch {
            target: id,
            entry: opinion.entry,
            expected: show(&expected),
            claimed: show(&opinion.hash),
        });
    }
    Ok(())
}

/// The entry index of each of `body`'s hashes ([`Body::hashes`] order: the hub's matching
/// index): a hash set's entry `i` is its hash `i`; a risk signal's entry is an indicator, and
/// only hash indicators are hashes.
pub fn hash_entries(body: &Body) -> Vec<u32> {
    match body {
        Body::HashSet(set) => (0..set.entries.len() as u32).collect(),
        Body::RiskSignal(signal) => signal
            .indicators
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i, crate::statement::Indicator::Hash(_)))
            .map(|(entry, _)| entry as u32)
            .collect(),
        _ => Vec::new(),
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
        MemberId::parse_qualified(s).unwrap()
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
                erase: false,
            },
        );
    }

    const NEVER: &dyn Fn(&MemberId, &KeyId, i64) -> bool = &|_, _, _| false;

    /// Everyone counts; threshold 3.
    fn judge<'a>(compromised: &'a dyn Fn(&MemberId, &KeyId, i64) -> bool) -> Judge<'a> {
        Judge {
            compromised,
            counts: &|_| true,
            quarantine_threshold: 3,
        }
    }

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
            assert_eq!(life.state(&target, index, &judge(NEVER)), want, "{name}");
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

    /// Relayed retractions (their issuers qualified by their hub, docs/PROTOCOL.md §3.10):
    /// another hub's member retracts its own statements; another hub's admin quorum reaches
    /// only that hub's members' statements, never this hub's or a third hub's; this hub's
    /// admin quorum reaches every statement held here.
    #[test]
    fn a_relayed_quorum_reaches_only_its_own_hubs_statements() {
        let state = |life: &Lifecycle, issuer: &MemberId| {
            let target = Target {
                id: id(1),
                seq: 2,
                issuer,
                kind: Kind::HashSet,
            };
            life.state(&target, 0, &judge(NEVER))
        };
        let (x_acme, y_acme, acme) = (
            member("acme@x.example"),
            member("acme@y.example"),
            member("acme"),
        );
        let mut own = Lifecycle::new();
        retract(&mut own, 5, "acme@x.example", 1, &[], false);
        assert_eq!(state(&own, &x_acme), EntryState::Retracted);
        assert_eq!(state(&own, &y_acme), EntryState::Active);
        assert_eq!(state(&own, &acme), EntryState::Active);
        let mut x_quorum = Lifecycle::new();
        retract(&mut x_quorum, 5, "admin@x.example", 1, &[], true);
        assert_eq!(state(&x_quorum, &x_acme), EntryState::Retracted);
        assert_eq!(state(&x_quorum, &y_acme), EntryState::Active);
        assert_eq!(state(&x_quorum, &acme), EntryState::Active);
        let mut here = Lifecycle::new();
        retract(&mut here, 5, "admin", 1, &[], true);
        assert_eq!(state(&here, &x_acme), EntryState::Retracted);
        assert_eq!(state(&here, &acme), EntryState::Retracted);
        // An erasure reaches only its own hub's statements.
        let erase = |issuer: &str| {
            let mut life = Lifecycle::new();
            life.record(
                id(105),
                Position {
                    seq: 5,
                    received_at_ms: 1005,
                },
                member(issuer),
                vec![key(5)],
                Retraction {
                    target: id(1),
                    entries: Vec::new(),
                    reason: "court order".into(),
                    admin_quorum: true,
                    erase: true,
                },
            );
            life
        };
        assert_eq!(state(&erase("admin"), &acme), EntryState::Erased);
        assert_eq!(state(&erase("admin"), &x_acme), EntryState::Active);
        assert_eq!(
            state(&erase("admin@x.example"), &x_acme),
            EntryState::Erased
        );
        assert_eq!(state(&erase("admin@x.example"), &acme), EntryState::Active);
    }

    /// Erasures: erased wins over a retraction and every opinion, is never voided by a later
    /// compromise declaration, applies only to a hash set or risk signal logged before it, and
    /// names its first position.
    #[test]
    fn an_erasure_wins_and_is_final() {
        let acme = member("acme");
        let set = |seq| Target {
            id: id(1),
            seq,
            issuer: &acme,
            kind: Kind::HashSet,
        };
        let mut life = Lifecycle::new();
        retract(&mut life, 4, "acme", 1, &[0], false);
        for seq in [5, 7] {
            life.record(
                id(100 + seq as u8),
                Position {
                    seq,
                    received_at_ms: 1000 + seq as i64,
                },
                member("admin"),
                vec![key(seq as u8)],
                Retraction {
                    target: id(1),
                    entries: vec![],
                    reason: "court order".into(),
                    admin_quorum: true,
                    erase: true,
                },
            );
        }
        assert!(life.erases(&id(1)) && !life.erases(&id(2)));
        assert_eq!(
            life.erasure_targets().collect::<Vec<_>>(),
            vec![(&id(1), 5)]
        );
        for index in [0, 1, 9] {
            assert_eq!(
                life.state(&set(2), index, &judge(NEVER)),
                EntryState::Erased
            );
        }
        let always: &dyn Fn(&MemberId, &KeyId, i64) -> bool = &|_, _, _| true;
        assert_eq!(life.retracted(&set(2), always).erased_by, Some(5));
        assert_eq!(life.retracted(&set(6), NEVER).erased_by, Some(7));
        assert_eq!(life.retracted(&set(8), NEVER).erased_by, None);
        let membership = Target {
            kind: Kind::Membership,
            ..set(2)
        };
        assert_eq!(life.retracted(&membership, NEVER).erased_by, None);
        // Front door: an erased target accepts another whole erasure, refuses the rest.
        let erasure = Body::Retraction(Retraction {
            target: id(1),
            entries: vec![],
            reason: "again".into(),
            admin_quorum: true,
            erase: true,
        });
        assert_eq!(
            check_erased_target(&erasure, &acme, &acme, id(1), 5),
            Ok(())
        );
        let partial = Body::Retraction(Retraction {
            target: id(1),
            entries: vec![1],
            reason: "one".into(),
            admin_quorum: false,
            erase: false,
        });
        assert!(matches!(
            check_erased_target(&partial, &acme, &acme, id(1), 5),
            Err(TargetError::Erased { by: 5, .. })
        ));
        let bolt = member("bolt");
        let whole = Body::Retraction(Retraction {
            entries: vec![],
            ..match partial {
                Body::Retraction(r) => r,
                _ => unreachable!("built above"),
            }
        });
        assert!(matches!(
            check_erased_target(&whole, &bolt, &acme, id(1), 5),
            Err(TargetError::NotTheIssuer { .. })
        ));
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
        let since = |_: &MemberId, _: &KeyId, at: i64| at >= 1005;
        assert_eq!(life.state(&target, 0, &judge(&since)), EntryState::Active);
        // Compromised only from later: it applies.
        let later = |_: &MemberId, _: &KeyId, at: i64| at >= 1006;
        assert_eq!(
            life.state(&target, 0, &judge(&later)),
            EntryState::Retracted
        );
        let record = &life.retractions_of(&id(1))[0];
        assert_eq!(
            Lifecycle::verdict(record, &target, &since),
            Err(NoEffect::SignedByCompromisedKey(key(5)))
        );
    }

    /// Records an opinion by `issuer` at `seq` on entry `entry` of statement `id(1)`.
    fn judge_entry(life: &mut Lifecycle, seq: u64, issuer: &str, entry: u32, verdict: Verdict) {
        judge_entry_for(life, seq, issuer, entry, verdict, &[]);
    }

    /// [`judge_entry`] restricted to `recipients` (none: everyone).
    fn judge_entry_for(
        life: &mut Lifecycle,
        seq: u64,
        issuer: &str,
        entry: u32,
        verdict: Verdict,
        recipients: &[&str],
    ) {
        let recipients = Recipients::from_members(
            recipients.iter().map(|r| member(r)).collect(),
            &member(issuer),
        )
        .expect("recipients");
        life.record_opinion(
            id(200 + seq as u8),
            Position {
                seq,
                received_at_ms: 1000 + seq as i64,
            },
            member(issuer),
            vec![key(seq as u8)],
            Opinion {
                target: id(1),
                entry,
                verdict,
                note: String::new(),
                hash: Some(HashKey {
                    hash_type: crate::statement::HashType::Sha256,
                    value: vec![entry as u8; 32],
                }),
                admin_quorum: verdict.is_admin(),
            },
            recipients,
        );
    }

    /// The seen track: (case, opinions as (issuer, verdict, recipients) in log order from seq
    /// 5 on entry 0 of acme's statement, then per reader the seen count it reads). `seen`
    /// never changes the state nor the verdict tally, a restricted `withdrawn` withdraws only
    /// the seen, and each reader counts only what the read rule lets it read.
    #[test]
    fn seen_is_counted_per_reader_and_never_changes_a_state() {
        use Verdict::*;
        let acme = member("acme");
        let target = Target {
            id: id(1),
            seq: 2,
            issuer: &acme,
            kind: Kind::HashSet,
        };
        let everything = Reader::Everything;
        let as_ = |m: &str| Reader::Member(member(m));
        type Case<'a> = (&'a str, Vec<(&'a str, Verdict, Vec<&'a str>)>, [u32; 4]);
        // Seen counts for: acme (the entry's issuer), an auditor, b, z (a third member).
        let cases: Vec<Case> = vec![
            (
                "one seen to the issuer",
                vec![("b", Seen, vec!["acme"])],
                [1, 1, 1, 0],
            ),
            (
                "two members, one public",
                vec![("b", Seen, vec!["acme"]), ("c", Seen, vec![])],
                [2, 2, 2, 1],
            ),
            (
                "seen twice counts once",
                vec![("b", Seen, vec!["acme"]), ("b", Seen, vec!["acme"])],
                [1, 1, 1, 0],
            ),
            (
                "a restricted withdrawal withdraws the seen",
                vec![("b", Seen, vec!["acme"]), ("b", Withdrawn, vec!["acme"])],
                [0, 0, 0, 0],
            ),
            (
                "a public withdrawal withdraws only the verdict",
                vec![
                    ("b", Confirmed, vec![]),
                    ("b", Seen, vec!["acme"]),
                    ("b", Withdrawn, vec![]),
                ],
                [1, 1, 1, 0],
            ),
            (
                "named recipients read it",
                vec![("b", Seen, vec!["acme", "z"])],
                [1, 1, 1, 1],
            ),
            (
                "the issuer's own is never counted",
                vec![("acme", Seen, vec![])],
                [0, 0, 0, 0],
            ),
        ];
        for (name, opinions, want) in cases {
            let mut life = Lifecycle::new();
            for (i, (who, verdict, to)) in opinions.into_iter().enumerate() {
                judge_entry_for(&mut life, 5 + i as u64, who, 0, verdict, &to);
            }
            let j = judge(NEVER);
            let got = [
                life.seen(&target, 0, &j, &as_("acme")),
                life.seen(&target, 0, &j, &everything),
                life.seen(&target, 0, &j, &as_("b")),
                life.seen(&target, 0, &j, &as_("z")),
            ];
            assert_eq!(got, want, "{name}");
            let hash = HashKey {
                hash_type: crate::statement::HashType::Sha256,
                value: vec![0; 32],
            };
            assert_eq!(
                life.hash_seen(&hash, &acme, &j, &everything),
                want[1],
                "{name}: hash"
            );
            let states = life.states(&target, &j);
            assert_ne!(states.state(0), EntryState::Disputed, "{name}");
            assert_eq!(
                states.opinions(0).tally.seen,
                0,
                "{name}: never in the state's tally"
            );
        }
        // Seen next to a negative verdict: the state is decided by the verdicts alone.
        let mut life = Lifecycle::new();
        judge_entry(&mut life, 5, "b", 0, Disputed);
        judge_entry_for(&mut life, 6, "c", 0, Seen, &["acme"]);
        let states = life.states(&target, &judge(NEVER));
        assert_eq!(states.state(0), EntryState::Disputed);
        assert_eq!(states.opinions(0).tally.disputed, 1);
    }

    /// The opinion rules: (case, opinions as (issuer, entry, verdict) in log order from seq 5,
    /// entry asked, expected state, expected tally (confirmed, false positive, disputed)).
    #[test]
    fn opinion_rules() {
        use Verdict::*;
        let acme = member("acme");
        let target = Target {
            id: id(1),
            seq: 2,
            issuer: &acme,
            kind: Kind::HashSet,
        };
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, u32, Verdict)>,
            u32,
            EntryState,
            (u32, u32, u32),
        );
        let cases: Vec<Case<'_>> = vec![
            ("none", vec![], 0, EntryState::Active, (0, 0, 0)),
            (
                "one confirmed",
                vec![("b", 0, Confirmed)],
                0,
                EntryState::Active,
                (1, 0, 0),
            ),
            (
                "one false positive",
                vec![("b", 0, FalsePositive)],
                0,
                EntryState::Active,
                (0, 1, 0),
            ),
            (
                "one disputed",
                vec![("b", 0, Disputed)],
                0,
                EntryState::Disputed,
                (0, 0, 1),
            ),
            (
                "both sides",
                vec![("b", 0, Confirmed), ("c", 0, FalsePositive)],
                0,
                EntryState::Disputed,
                (1, 1, 0),
            ),
            (
                "replaced",
                vec![("b", 0, Confirmed), ("b", 0, FalsePositive)],
                0,
                EntryState::Active,
                (0, 1, 0),
            ),
            (
                "withdrawn",
                vec![
                    ("b", 0, Confirmed),
                    ("c", 0, FalsePositive),
                    ("b", 0, Withdrawn),
                ],
                0,
                EntryState::Active,
                (0, 1, 0),
            ),
            (
                "other entry",
                vec![("b", 1, Disputed)],
                0,
                EntryState::Active,
                (0, 0, 0),
            ),
            (
                "own entry",
                vec![("acme", 0, Disputed)],
                0,
                EntryState::Active,
                (0, 0, 0),
            ),
            (
                "below threshold",
                vec![("b", 0, FalsePositive), ("c", 0, FalsePositive)],
                0,
                EntryState::Active,
                (0, 2, 0),
            ),
            (
                "threshold, same member twice",
                vec![
                    ("b", 0, FalsePositive),
                    ("c", 0, FalsePositive),
                    ("c", 0, FalsePositive),
                ],
                0,
                EntryState::Active,
                (0, 2, 0),
            ),
            (
                "threshold",
                vec![
                    ("b", 0, FalsePositive),
                    ("c", 0, FalsePositive),
                    ("d", 0, FalsePositive),
                ],
                0,
                EntryState::Quarantined,
                (0, 3, 0),
            ),
            (
                "threshold beats disputed",
                vec![
                    ("b", 0, FalsePositive),
                    ("c", 0, FalsePositive),
                    ("d", 0, FalsePositive),
                    ("e", 0, Confirmed),
                ],
                0,
                EntryState::Quarantined,
                (1, 3, 0),
            ),
            (
                "threshold, then a withdrawal",
                vec![
                    ("b", 0, FalsePositive),
                    ("c", 0, FalsePositive),
                    ("d", 0, FalsePositive),
                    ("d", 0, Withdrawn),
                ],
                0,
                EntryState::Active,
                (0, 2, 0),
            ),
            (
                "admin quarantine",
                vec![("admin", 0, Quarantine)],
                0,
                EntryState::Quarantined,
                (0, 0, 0),
            ),
            (
                "admin release",
                vec![("admin", 0, Quarantine), ("admin", 0, Release)],
                0,
                EntryState::Active,
                (0, 0, 0),
            ),
            (
                "release discounts earlier reports",
                vec![
                    ("b", 0, FalsePositive),
                    ("c", 0, FalsePositive),
                    ("d", 0, FalsePositive),
                    ("admin", 0, Release),
                ],
                0,
                EntryState::Active,
                (0, 3, 0),
            ),
            (
                "reports after a release count",
                vec![
                    ("b", 0, FalsePositive),
                    ("admin", 0, Release),
                    ("c", 0, FalsePositive),
                    ("d", 0, FalsePositive),
                    ("b", 0, FalsePositive),
                ],
                0,
                EntryState::Quarantined,
                (0, 3, 0),
            ),
            (
                "not counted: member x",
                vec![
                    ("b", 0, FalsePositive),
                    ("c", 0, FalsePositive),
                    ("x", 0, FalsePositive),
                ],
                0,
                EntryState::Active,
                (0, 2, 0),
            ),
        ];
        let counts = |m: &MemberId| m.as_str() != "x";
        for (name, opinions, entry, state, (c, f, d)) in cases {
            let mut life = Lifecycle::new();
            for (i, (who, on, verdict)) in opinions.into_iter().enumerate() {
                judge_entry(&mut life, 5 + i as u64, who, on, verdict);
            }
            let judge = Judge {
                compromised: NEVER,
                counts: &counts,
                quarantine_threshold: 3,
            };
            let states = life.states(&target, &judge);
            assert_eq!(states.state(entry), state, "{name}");
            assert_eq!(
                states.opinions(entry).tally,
                Tally {
                    confirmed: c,
                    false_positive: f,
                    disputed: d,
                    seen: 0
                },
                "{name}"
            );
        }
    }

    #[test]
    fn retracted_beats_quarantined_and_opinions_before_the_target_or_by_leaked_keys_do_nothing() {
        let acme = member("acme");
        let target = |seq| Target {
            id: id(1),
            seq,
            issuer: &acme,
            kind: Kind::HashSet,
        };
        let mut life = Lifecycle::new();
        judge_entry(&mut life, 5, "admin", 0, Verdict::Quarantine);
        assert_eq!(
            life.state(&target(2), 0, &judge(NEVER)),
            EntryState::Quarantined
        );
        retract(&mut life, 6, "acme", 1, &[0], false);
        assert_eq!(
            life.state(&target(2), 0, &judge(NEVER)),
            EntryState::Retracted
        );
        // A target logged after both (another log's statement id reused): no effect.
        assert_eq!(life.state(&target(6), 0, &judge(NEVER)), EntryState::Active);
        // The admin key leaked from the quarantine's receipt on: void.
        let leaked = |_: &MemberId, k: &KeyId, at: i64| k == &key(5) && at >= 1005;
        let record = &life.opinions_of(&id(1))[0];
        assert_eq!(
            Lifecycle::opinion_verdict(record, &target(2), &judge(&leaked)),
            Err(NoEffect::SignedByCompromisedKey(key(5)))
        );
        assert_eq!(
            life.states(&target(2), &judge(&leaked)).state(1),
            EntryState::Active
        );
        assert_eq!(
            life.states(&target(2), &judge(&leaked)).state(0),
            EntryState::Retracted
        );
    }

    #[test]
    fn hash_tallies_span_statements_and_skip_the_issuer() {
        let mut life = Lifecycle::new();
        judge_entry(&mut life, 5, "b", 0, Verdict::Confirmed);
        judge_entry(&mut life, 6, "c", 0, Verdict::FalsePositive);
        judge_entry(&mut life, 7, "b", 0, Verdict::Disputed);
        let hash = HashKey {
            hash_type: crate::statement::HashType::Sha256,
            value: vec![0; 32],
        };
        let all = life.hash_tally(&hash, &member("zeta"), &judge(NEVER));
        assert_eq!(
            all,
            Tally {
                confirmed: 0,
                false_positive: 1,
                disputed: 1,
                seen: 0
            }
        );
        // For c's own copy of the hash, c is never counted.
        let for_c = life.hash_tally(&hash, &member("c"), &judge(NEVER));
        assert_eq!(for_c.false_positive, 0);
        let other = HashKey {
            value: vec![1; 32],
            ..hash
        };
        assert!(
            life.hash_tally(&other, &member("zeta"), &judge(NEVER))
                .is_empty()
        );
    }

    #[test]
    fn opinions_are_checked_at_the_front_door() {
        let acme = member("acme");
        let body = Body::HashSet(crate::statement::HashSet {
            description: String::new(),
            expires_at_ms: None,
            entries: vec![crate::statement::HashEntry {
                hash_type: crate::statement::HashType::Sha256,
                value: vec![0; 32],
                quality: None,
                labels: vec![],
            }],
        });
        let mut life = Lifecycle::new();
        judge_entry(&mut life, 5, "b", 0, Verdict::FalsePositive);
        let good = life.opinions_of(&id(1))[0].opinion.clone();
        assert_eq!(
            check_opinion(
                &good,
                &member("b"),
                &Recipients::everyone(),
                Some((&acme, &body)),
                &Recipients::everyone()
            ),
            Ok(())
        );
        // A restricted (seen) opinion must name the entry's issuer.
        let seen = Opinion {
            verdict: Verdict::Seen,
            ..good.clone()
        };
        let to = |ids: &[&str]| {
            Recipients::from_members(ids.iter().map(|m| member(m)).collect(), &member("b"))
                .expect("recipients")
        };
        assert_eq!(
            check_opinion(
                &seen,
                &member("b"),
                &to(&["acme", "c"]),
                Some((&acme, &body)),
                &Recipients::everyone()
            ),
            Ok(())
        );
        assert!(matches!(
            check_opinion(
                &seen,
                &member("b"),
                &to(&["c"]),
                Some((&acme, &body)),
                &Recipients::everyone()
            ),
            Err(TargetError::SeenNotToIssuer { .. })
        ));
        assert_eq!(
            check_opinion(
                &seen,
                &member("b"),
                &Recipients::everyone(),
                Some((&acme, &body)),
                &Recipients::everyone()
            ),
            Ok(())
        );
        let err = |o: &Opinion, by: &str, target| {
            check_opinion(
                o,
                &member(by),
                &Recipients::everyone(),
                target,
                &Recipients::everyone(),
            )
            .unwrap_err()
            .to_string()
        };
        assert!(err(&good, "acme", Some((&acme, &body))).contains("itself"));
        assert!(err(&good, "b", None).contains("no statement"));
        let beyond = Opinion {
            entry: 1,
            ..good.clone()
        };
        assert!(err(&beyond, "b", Some((&acme, &body))).contains("entries 1 do not exist"));
        let unhashed = Opinion {
            hash: None,
            ..good.clone()
        };
        assert!(err(&unhashed, "b", Some((&acme, &body))).contains("not no hash"));
    }

    #[test]
    fn wire_form_is_checked() {
        let good = pb::Retraction {
            statement_id: vec![7; 32],
            entries: vec![0, 2],
            reason: "court order".into(),
            admin_quorum: true,
            erase: false,
        };
        let parsed = Retraction::from_wire(good.clone()).unwrap();
        assert_eq!(parsed.to_wire(), good);
        let erasure = pb::Retraction {
            entries: vec![],
            erase: true,
            ..good.clone()
        };
        assert!(Retraction::from_wire(erasure.clone()).unwrap().erase);
        for (wrong, what) in [
            (
                pb::Retraction {
                    admin_quorum: false,
                    ..erasure.clone()
                },
                "an admin-quorum statement",
            ),
            (
                pb::Retraction {
                    entries: vec![1],
                    ..erasure.clone()
                },
                "the whole statement",
            ),
        ] {
            let e = Retraction::from_wire(wrong).unwrap_err().to_string();
            assert!(e.contains("retraction.erase") && e.contains(what), "{e}");
        }
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
