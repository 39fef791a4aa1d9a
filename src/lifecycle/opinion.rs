//! Opinions on entries: a member's `confirmed`, `false_positive`, `disputed` or `seen` (or the
//! withdrawal of its earlier opinion), and an admin quorum's quarantine or release.
//!
//! Two tracks per member and entry: the **verdict** track (unrestricted opinions but `seen`;
//! it decides the entry's state, and every replica holds all of it) and the **seen** track
//! (`seen` opinions and the restricted `withdrawn` that withdraws one; it never changes a
//! state, and each reader counts only the records the read rule lets it read, docs/PROTOCOL.md
//! §2.7 "Seen"). A record's track is [`OpinionRecord::is_seen_track`].
//!
//! Pure, no I/O. An [`Opinion`] names its target entry (statement id and entry index) and
//! copies the entry's hash, so the replica keeps per-hash tallies from the opinions alone:
//! [`super::Lifecycle`] indexes each opinion record by its target entry and by that hash, and
//! memory grows with the number of opinions, never with the number of entries. The tallies
//! ([`Tally`]) are computed at read time against the membership replayed so far
//! ([`Judge`]), like retractions.

use crate::membership::{KeyId, MemberId, Position};
use crate::pb;
use crate::statement::{HashType, Reader, Recipients, StatementError, StatementId, check_text};

/// Most characters in an opinion's note.
pub const MAX_NOTE_CHARS: usize = 280;
/// The quarantine threshold when the settings never set one.
pub const DEFAULT_QUARANTINE_THRESHOLD: u32 = 3;
/// The largest quarantine threshold the settings may set.
pub const MAX_QUARANTINE_THRESHOLD: u32 = 1000;

/// What an opinion says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// A member: it is what its labels say (positive).
    Confirmed,
    /// A member: it is not abuse material (negative; counts toward quarantine).
    FalsePositive,
    /// A member: it is doubtful (negative).
    Disputed,
    /// A member: withdraws its earlier opinion on the target.
    Withdrawn,
    /// An admin quorum: quarantine the entry.
    Quarantine,
    /// An admin quorum: release the entry from quarantine.
    Release,
    /// A member: it matched on my platform (the seen track; never changes a state).
    Seen,
}

impl Verdict {
    /// Every verdict.
    pub const ALL: [Verdict; 7] = [
        Verdict::Confirmed,
        Verdict::FalsePositive,
        Verdict::Disputed,
        Verdict::Withdrawn,
        Verdict::Quarantine,
        Verdict::Release,
        Verdict::Seen,
    ];

    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::FalsePositive => "false-positive",
            Verdict::Disputed => "disputed",
            Verdict::Withdrawn => "withdraw",
            Verdict::Quarantine => "quarantine",
            Verdict::Release => "release",
            Verdict::Seen => "seen",
        }
    }

    /// Whether only an admin quorum may say it (and an admin quorum says nothing else).
    pub fn is_admin(self) -> bool {
        matches!(self, Verdict::Quarantine | Verdict::Release)
    }

    fn to_wire(self) -> pb::OpinionVerdict {
        match self {
            Verdict::Confirmed => pb::OpinionVerdict::Confirmed,
            Verdict::FalsePositive => pb::OpinionVerdict::FalsePositive,
            Verdict::Disputed => pb::OpinionVerdict::Disputed,
            Verdict::Withdrawn => pb::OpinionVerdict::Withdrawn,
            Verdict::Quarantine => pb::OpinionVerdict::Quarantine,
            Verdict::Release => pb::OpinionVerdict::Release,
            Verdict::Seen => pb::OpinionVerdict::Seen,
        }
    }

    fn from_wire(value: i32) -> Option<Verdict> {
        Some(match pb::OpinionVerdict::try_from(value).ok()? {
            pb::OpinionVerdict::Confirmed => Verdict::Confirmed,
            pb::OpinionVerdict::FalsePositive => Verdict::FalsePositive,
            pb::OpinionVerdict::Disputed => Verdict::Disputed,
            pb::OpinionVerdict::Withdrawn => Verdict::Withdrawn,
            pb::OpinionVerdict::Quarantine => Verdict::Quarantine,
            pb::OpinionVerdict::Release => Verdict::Release,
            pb::OpinionVerdict::Seen => Verdict::Seen,
            pb::OpinionVerdict::Unspecified => return None,
        })
    }
}

/// A hash value as opinions are indexed by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HashKey {
    /// The algorithm.
    pub hash_type: HashType,
    /// The raw value.
    pub value: Vec<u8>,
}

impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.hash_type.name(), hex::encode(&self.value))
    }
}

/// An opinion as signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opinion {
    /// The statement that holds the target entry.
    pub target: StatementId,
    /// The entry (hash-set entry or risk-signal indicator index).
    pub entry: u32,
    /// What it says.
    pub verdict: Verdict,
    /// Why (0..=[`MAX_NOTE_CHARS`] characters).
    pub note: String,
    /// The target entry's hash, when the entry is a hash.
    pub hash: Option<HashKey>,
    /// An admin-quorum quarantine or release.
    pub admin_quorum: bool,
}

impl Opinion {
    /// Parses and checks the wire form.
    pub fn from_wire(wire: pb::Opinion) -> Result<Self, StatementError> {
        let target = StatementId(wire.statement_id.as_slice().try_into().map_err(|_| {
            StatementError::invalid(
                "opinion.statement_id",
                format!("must be 32 bytes, got {}", wire.statement_id.len()),
            )
        })?);
        let verdict = Verdict::from_wire(wire.verdict).ok_or_else(|| {
            StatementError::invalid(
                "opinion.verdict",
                format!(
                    "unknown or unspecified verdict {} (expected confirmed, false_positive, disputed, withdrawn, quarantine, release or seen)",
                    wire.verdict
                ),
            )
        })?;
        if verdict.is_admin() != wire.admin_quorum {
            return Err(StatementError::invalid(
                "opinion.admin_quorum",
                if wire.admin_quorum {
                    "an admin-quorum opinion says quarantine or release"
                } else {
                    "quarantine and release are said by an admin quorum (set admin_quorum)"
                },
            ));
        }
        let note = check_text("opinion.note", wire.note, 0, MAX_NOTE_CHARS)?;
        let hash = match (wire.hash_type, wire.hash_value.is_empty()) {
            (0, true) => None,
            (t, _) => {
                let hash_type = HashType::from_wire(t).ok_or_else(|| {
                    StatementError::invalid(
                        "opinion.hash_type",
                        format!("unknown or unspecified hash type {t}"),
                    )
                })?;
                hash_type
                    .check_value(&wire.hash_value)
                    .map_err(|reason| StatementError::invalid("opinion.hash_value", reason))?;
                Some(HashKey {
                    hash_type,
                    value: wire.hash_value,
                })
            }
        };
        Ok(Opinion {
            target,
            entry: wire.entry,
            verdict,
            note,
            hash,
            admin_quorum: wire.admin_quorum,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::Opinion {
        pb::Opinion {
            statement_id: self.target.0.to_vec(),
            entry: self.entry,
            verdict: self.verdict.to_wire() as i32,
            note: self.note.clone(),
            hash_type: self
                .hash
                .as_ref()
                .map_or(0, |h| h.hash_type.to_wire() as i32),
            hash_value: self.hash.as_ref().map_or(Vec::new(), |h| h.value.clone()),
            admin_quorum: self.admin_quorum,
        }
    }

    /// One line saying what it does.
    pub fn describe(&self) -> String {
        let by = if self.admin_quorum {
            " by admin quorum"
        } else {
            ""
        };
        format!(
            "{} entry {} of statement {}{by}",
            self.verdict.name(),
            self.entry,
            self.target
        )
    }
}

/// One opinion as replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpinionRecord {
    /// The opinion's statement id.
    pub id: StatementId,
    /// Where it was logged.
    pub position: Position,
    /// Who issued it.
    pub issuer: MemberId,
    /// The keys that signed it.
    pub key_ids: Vec<KeyId>,
    /// What it says.
    pub opinion: Opinion,
    /// The recipients its signed header names (empty: unrestricted, docs/PROTOCOL.md §2.7).
    pub recipients: Recipients,
}

impl OpinionRecord {
    /// On the seen track: a `seen` opinion, or a restricted `withdrawn` (which withdraws the
    /// issuer's `seen`). Everything else is on the verdict track.
    pub fn is_seen_track(&self) -> bool {
        self.opinion.verdict == Verdict::Seen
            || (self.opinion.verdict == Verdict::Withdrawn && !self.recipients.is_everyone())
    }

    /// Whether `reader` may read it (the read rule, [`Recipients::admit`]).
    pub fn readable_by(&self, reader: &Reader) -> bool {
        self.recipients.admit(&self.issuer, reader)
    }
}

/// Distinct members' current opinions on an entry or a hash value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tally {
    /// `confirmed`.
    pub confirmed: u32,
    /// `false_positive`.
    pub false_positive: u32,
    /// `disputed`.
    pub disputed: u32,
    /// `seen`, among the seen opinions the asking reader may read (never part of the wire
    /// `Tally`: `HashMatch.entry_seen`/`hash_seen`).
    pub seen: u32,
}

impl Tally {
    /// Whether the opinions disagree: a `disputed` opinion, or both `confirmed` and
    /// `false_positive` ones.
    pub fn disputes(&self) -> bool {
        self.disputed > 0 || (self.confirmed > 0 && self.false_positive > 0)
    }

    /// No opinion at all.
    pub fn is_empty(&self) -> bool {
        *self == Tally::default()
    }

    fn add(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Confirmed => self.confirmed += 1,
            Verdict::FalsePositive => self.false_positive += 1,
            Verdict::Disputed => self.disputed += 1,
            Verdict::Seen => self.seen += 1,
            Verdict::Withdrawn | Verdict::Quarantine | Verdict::Release => {}
        }
    }

    /// The wire form.
    pub fn to_wire(self) -> pb::Tally {
        pb::Tally {
            confirmed: self.confirmed,
            false_positive: self.false_positive,
            disputed: self.disputed,
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} confirmed, {} false positive, {} disputed",
            self.confirmed, self.false_positive, self.disputed
        )?;
        if self.seen > 0 {
            write!(f, ", seen by {}", self.seen)?;
        }
        Ok(())
    }
}

/// What read-time rules need from the membership and settings replayed so far.
pub struct Judge<'a> {
    /// Whether a key was declared compromised from a time at or before the given one.
    pub compromised: &'a dyn Fn(&MemberId, &KeyId, i64) -> bool,
    /// Whether a member's opinions count: an active member with the `member` role.
    pub counts: &'a dyn Fn(&MemberId) -> bool,
    /// Distinct `false_positive` opinions that quarantine an entry.
    pub quarantine_threshold: u32,
}

impl Judge<'_> {
    /// Whether no key that signed `record` was compromised when it was received.
    pub(super) fn trusted(&self, record: &OpinionRecord) -> Result<(), KeyId> {
        match record
            .key_ids
            .iter()
            .find(|k| (self.compromised)(&record.issuer, k, record.position.received_at_ms))
        {
            Some(key) => Err(key.clone()),
            None => Ok(()),
        }
    }
}

/// The opinions on one entry, decided: its tally and whether it is quarantined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opinions {
    /// Current opinions of distinct counted members (never the entry's issuer).
    pub tally: Tally,
    /// The admin quorum's last word, if any (`true`: quarantined, `false`: released).
    pub admin_quarantine: Option<bool>,
    /// Quarantined: the admin quorum said so, or `false_positive` opinions logged after its
    /// last release reached the threshold.
    pub quarantined: bool,
}

/// The members' latest opinions among `records` (log order, each already found to apply),
/// counted: a member's later opinion replaces its earlier one, a withdrawal removes it; only
/// members `judge` counts, never `issuer`. Returns the tally and, per counted member, its
/// verdict and where it was logged.
pub(super) fn latest<'r>(
    records: impl Iterator<Item = &'r OpinionRecord>,
    issuer: &MemberId,
    judge: &Judge<'_>,
) -> (Tally, Vec<(Verdict, u64)>) {
    let mut by_member: std::collections::HashMap<&MemberId, (Verdict, u64)> = Default::default();
    for r in records.filter(|r| !r.opinion.admin_quorum) {
        if r.opinion.verdict == Verdict::Withdrawn {
            by_member.remove(&r.issuer);
        } else {
            by_member.insert(&r.issuer, (r.opinion.verdict, r.position.seq));
        }
    }
    let mut tally = Tally::default();
    let mut kept = Vec::new();
    for (member, (verdict, seq)) in by_member {
        if member == issuer || !(judge.counts)(member) {
            continue;
        }
        tally.add(verdict);
        kept.push((verdict, seq));
    }
    (tally, kept)
}
