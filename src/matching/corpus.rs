//! The hub's shared corpus as the matcher sees it: every hash in the log, indexed, with the
//! statement it came from. Built from the store at start-up and extended as entries become
//! durable, always in log order.

use super::matcher::MatcherFull;
use super::snapshot::{Dec, Enc, SnapshotError};
use super::vpdq::VpdqScore;
use super::{Hit, MatchOptions, Matcher, MergePlan, PdqIndex, Query};
use crate::membership::MemberId;
use crate::statement::{HashType, Label, Recipients, Statement, StatementId};
use crate::store::StoredEntry;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

/// Where a matched hash came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The statement's log position.
    pub seq: u64,
    /// The statement id.
    pub statement_id: StatementId,
    /// Who shared it (one shared copy per member).
    pub issuer: Arc<MemberId>,
    /// When the hub received it.
    pub received_at_ms: i64,
    /// The recipients its signed header names (docs/PROTOCOL.md §2.7): its hashes match only
    /// for the readers [`Recipients::admit`] admits. Empty: everyone.
    pub recipients: Recipients,
    /// The entry index of each of its hashes when they are not `0, 1, 2, …` (a risk signal
    /// whose indicators are not all hashes: its hashes are its hash indicators); empty
    /// otherwise. One index space with opinions and retractions (docs/PROTOCOL.md §2.7).
    pub entries: Vec<u32>,
}

impl Provenance {
    /// The entry index of its hash number `hash` ([`Statement::hashes`] order).
    pub fn entry(&self, hash: u32) -> u32 {
        self.entries.get(hash as usize).copied().unwrap_or(hash)
    }
}

/// A match with everything a member needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    /// Distance in bits (PDQ) or 0 (exact).
    pub distance: u32,
    /// The matched hash's type.
    pub hash_type: HashType,
    /// The matched hash.
    pub value: Vec<u8>,
    /// Its PDQ quality, if PDQ.
    pub quality: Option<u8>,
    /// vPDQ: how much of the query and of the matched video matched.
    pub vpdq: Option<VpdqScore>,
    /// Its labels.
    pub labels: &'a [Label],
    /// Its statement.
    pub source: &'a Provenance,
}

/// The indexed corpus. Cloning shares the PDQ segments (immutable, behind `Arc`) and copies
/// the rest (slots, exact maps, provenance); the hub's snapshot writer encodes it in place
/// under a read lock instead (`server/indexer.rs`).
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    matcher: Matcher,
    /// Per slot: (statement ordinal, label-set ordinal).
    slots: Vec<(u32, u32)>,
    statements: Vec<Provenance>,
    label_sets: Vec<Vec<Label>>,
    label_set_ids: HashMap<Vec<Label>, u32>,
    /// Each issuer once, shared by its statements' provenance.
    issuers: HashMap<MemberId, Arc<MemberId>>,
    /// The statements that expire: (statement ordinal, expires_at_ms), ordinals ascending.
    /// Sparse: nothing is kept for a statement without an expiry.
    expiries: Vec<(u32, i64)>,
    next_seq: u64,
}

impl Corpus {
    /// An empty corpus.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first log position not yet indexed.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Indexes the hashes of a stored entry (hash-set entries and risk-signal hash
    /// indicators); PDQ hashes become searchable at [`Corpus::commit`], so loading a whole log
    /// builds the PDQ index once. Entries must come in log order; an entry below the indexed
    /// position is ignored, so replaying is harmless.
    ///
    /// A statement whose hashes do not all fit ([`MAX_HASHES`](super::MAX_HASHES) in all) is
    /// refused whole and the position stays before it: statement and label-set ordinals never
    /// outnumber the slots, so the one bound covers all three.
    pub fn stage(
        &mut self,
        entry: &StoredEntry,
        statement: &Statement,
        id: StatementId,
        recipients: Recipients,
    ) -> Result<(), MatcherFull> {
        if entry.seq < self.next_seq {
            return Ok(());
        }
        self.matcher.room_for(statement.hashes().count())?;
        self.next_seq = entry.seq + 1;
        let ordinal = self.statements.len() as u32;
        let mut any = false;
        for h in statement.hashes() {
            let labels = self.label_set(&h.labels);
            let slot = self.matcher.stage(h.hash_type, &h.value, h.quality)?;
            debug_assert_eq!(slot as usize, self.slots.len());
            self.slots.push((ordinal, labels));
            any = true;
        }
        if any {
            if let Some(at) = statement.body.expires_at_ms() {
                self.expiries.push((ordinal, at));
            }
            let issuer = self.issuer(&statement.issuer);
            // A hash set's hash `i` is its entry `i`; a risk signal's only when every
            // indicator before it is a hash.
            let entries = match &statement.body {
                crate::statement::Body::RiskSignal(_) => {
                    let entries = crate::lifecycle::hash_entries(&statement.body);
                    let plain = entries.iter().enumerate().all(|(i, e)| *e as usize == i);
                    if plain { Vec::new() } else { entries }
                }
                _ => Vec::new(),
            };
            self.statements.push(Provenance {
                seq: entry.seq,
                statement_id: id,
                issuer,
                received_at_ms: entry.received_at_ms,
                recipients,
                entries,
            });
        }
        Ok(())
    }

    /// Moves the position past `seq`, an entry with nothing to index (an erased statement,
    /// whose body is gone: docs/PROTOCOL.md §2.8).
    pub fn pass(&mut self, seq: u64) {
        if seq >= self.next_seq {
            self.next_seq = seq + 1;
        }
    }

    /// The provenance of statement `id`, if any of its hashes is indexed.
    pub fn provenance_of(&self, id: &StatementId) -> Option<&Provenance> {
        self.statements.iter().find(|p| &p.statement_id == id)
    }

    /// Removes every hash of statement `id` from matching (an erasure, §2.8); returns how
    /// many were live. The slots stay allocated (their hashes are dropped from the PDQ
    /// tables and skipped by exact lookups); a snapshot written later would still hold them,
    /// so the hub stops writing snapshots once it erased something (`server/indexer.rs`).
    pub fn remove_statement(&mut self, id: &StatementId) -> usize {
        let Some(ordinal) = self.statements.iter().position(|p| &p.statement_id == id) else {
            return 0;
        };
        let ordinal = ordinal as u32;
        let from = self.slots.partition_point(|(o, _)| *o < ordinal);
        let to = self.slots.partition_point(|(o, _)| *o <= ordinal);
        (from..to)
            .filter(|slot| self.matcher.remove(*slot as u32))
            .count()
    }

    /// Makes everything staged searchable (PDQ hashes as a new segment). Never merges: the
    /// owner takes [`Corpus::merge_plan`], builds it outside its write lock and installs it
    /// with [`Corpus::install_merge`].
    pub fn commit(&mut self) {
        self.matcher.commit_deferred();
    }

    /// The next PDQ segment merge to run, if any (built from `&self`: searches go on).
    pub fn merge_plan(&self) -> Option<MergePlan> {
        self.matcher.pdq_merge_plan()
    }

    /// The PDQ merge to run once the log is quiet, if any.
    pub fn idle_merge_plan(&self) -> Option<MergePlan> {
        self.matcher.pdq_idle_merge_plan()
    }

    /// Installs a merge built from [`Corpus::merge_plan`]; false if it no longer fits.
    pub fn install_merge(&mut self, plan: &MergePlan, merged: PdqIndex) -> bool {
        self.matcher.install_pdq_merge(plan, merged)
    }

    /// The PDQ index's segment count and heap bytes.
    pub fn pdq_shape(&self) -> (usize, usize) {
        self.matcher.pdq_shape()
    }

    /// The first `max` of everything matching `query`, nearest first, and whether there were
    /// more (only those returned are built).
    pub fn lookup(
        &self,
        query: &Query,
        options: &MatchOptions,
        max: usize,
    ) -> (Vec<Found<'_>>, bool) {
        let (hits, truncated) = self.hits(query, options, max);
        let found = hits
            .into_iter()
            .filter_map(|hit| self.found(query, hit))
            .collect();
        (found, truncated)
    }

    /// The first `max` index hits for `query` (cheap: slot numbers), and whether there were
    /// more; [`Corpus::found`] builds each into a match.
    pub fn hits(&self, query: &Query, options: &MatchOptions, max: usize) -> (Vec<Hit>, bool) {
        let mut hits = self.matcher.lookup(query, options);
        let truncated = hits.len() > max;
        hits.truncate(max);
        (hits, truncated)
    }

    /// Like [`Corpus::hits`], keeping only the hits `keep` accepts (given the hit's
    /// statement, the hash's index within it, [`Statement::hashes`] order, and its statement's
    /// expiry), before the first `max` are taken: the hub drops entries in states a request
    /// does not want here.
    pub fn hits_where(
        &self,
        query: &Query,
        options: &MatchOptions,
        max: usize,
        mut keep: impl FnMut(&Provenance, u32, Option<i64>) -> bool,
    ) -> (Vec<Hit>, bool) {
        let mut hits = self.matcher.lookup(query, options);
        hits.retain(|hit| {
            self.source(hit.slot)
                .is_none_or(|(source, index)| keep(source, index, self.expires_at(hit.slot)))
        });
        let truncated = hits.len() > max;
        hits.truncate(max);
        (hits, truncated)
    }

    /// When the statement holding `slot` expires (`None`: never, or no such slot).
    pub fn expires_at(&self, slot: u32) -> Option<i64> {
        if self.expiries.is_empty() {
            return None;
        }
        let (ordinal, _) = *self.slots.get(slot as usize)?;
        self.expiries
            .binary_search_by_key(&ordinal, |(o, _)| *o)
            .ok()
            .map(|i| self.expiries[i].1)
    }

    /// The statement a slot belongs to and the hash's entry index within it (a hash set's
    /// entry, a risk signal's indicator: [`Provenance::entry`]).
    pub fn source(&self, slot: u32) -> Option<(&Provenance, u32)> {
        let (ordinal, _) = *self.slots.get(slot as usize)?;
        let first = self.slots[..slot as usize].partition_point(|(o, _)| *o < ordinal);
        let source = self.statements.get(ordinal as usize)?;
        Some((source, source.entry(slot - first as u32)))
    }

    /// The match a hit of `query` stands for (`None` for a slot this corpus does not hold).
    pub fn found(
        &self,
        query: &Query,
        Hit {
            distance,
            slot,
            vpdq,
        }: Hit,
    ) -> Option<Found<'_>> {
        let (statement, labels) = *self.slots.get(slot as usize)?;
        let value = match query.hash_type {
            HashType::Pdq => self.matcher.pdq_hash(slot)?.0.to_vec(),
            HashType::Vpdq => self.matcher.vpdq_hash(slot)?.to_bytes(),
            _ => query.value.clone(),
        };
        Some(Found {
            distance,
            hash_type: query.hash_type,
            value,
            quality: (query.hash_type == HashType::Pdq)
                .then(|| self.matcher.quality(slot))
                .flatten(),
            vpdq,
            labels: self.label_sets.get(labels as usize)?,
            source: self.statements.get(statement as usize)?,
        })
    }

    /// Writes the whole corpus (see [`super::snapshot`]).
    pub(crate) fn encode<W: Write>(&self, e: &mut Enc<W>) -> std::io::Result<()> {
        e.u64(self.next_seq)?;
        e.len(self.statements.len())?;
        for p in &self.statements {
            e.u64(p.seq)?;
            e.bytes(&p.statement_id.0)?;
            e.str(p.issuer.as_str())?;
            e.u64(p.received_at_ms as u64)?;
            let recipients = p.recipients.to_wire();
            e.len(recipients.len())?;
            for r in &recipients {
                e.str(r)?;
            }
            e.len(p.entries.len())?;
            for entry in &p.entries {
                e.u32(*entry)?;
            }
        }
        e.array(&self.expiries, |(o, at)| {
            let mut out = [0u8; 12];
            out[..4].copy_from_slice(&o.to_le_bytes());
            out[4..].copy_from_slice(&at.to_le_bytes());
            out
        })?;
        e.len(self.label_sets.len())?;
        for set in &self.label_sets {
            e.len(set.len())?;
            for label in set {
                e.str(&label.to_string())?;
            }
        }
        e.array(&self.slots, |(s, l)| {
            let mut out = [0u8; 8];
            out[..4].copy_from_slice(&s.to_le_bytes());
            out[4..].copy_from_slice(&l.to_le_bytes());
            out
        })?;
        self.matcher.encode(e)
    }

    /// Reads a corpus written by [`Corpus::encode`].
    pub(crate) fn decode<R: Read>(d: &mut Dec<R>) -> Result<Self, SnapshotError> {
        let bad = |what: String| SnapshotError::Damaged(what);
        let next_seq = d.u64()?;
        let mut issuers: HashMap<MemberId, Arc<MemberId>> = HashMap::new();
        let n = d.len(56)?;
        let mut statements = Vec::with_capacity(n);
        for _ in 0..n {
            let seq = d.u64()?;
            let id = <[u8; 32]>::try_from(&d.bytes()?[..])
                .map_err(|_| bad("a statement id has the wrong length".into()))?;
            let issuer = MemberId::parse_qualified(&d.string()?).map_err(|e| bad(e.to_string()))?;
            let issuer = issuers
                .entry(issuer.clone())
                .or_insert_with(|| Arc::new(issuer))
                .clone();
            let received_at_ms = d.u64()? as i64;
            let count = d.len(8)?;
            let mut named = Vec::with_capacity(count);
            for _ in 0..count {
                named.push(d.string()?);
            }
            let recipients = Recipients::decode(&named, &issuer).map_err(|e| bad(e.to_string()))?;
            let count = d.len(4)?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                entries.push(d.u32()?);
            }
            statements.push(Provenance {
                seq,
                statement_id: StatementId(id),
                issuer,
                received_at_ms,
                recipients,
                entries,
            });
        }
        let expiries: Vec<(u32, i64)> = d.vec(|b: [u8; 12]| {
            let (o, at) = b.split_at(4);
            (
                u32::from_le_bytes([o[0], o[1], o[2], o[3]]),
                i64::from_le_bytes([at[0], at[1], at[2], at[3], at[4], at[5], at[6], at[7]]),
            )
        })?;
        d.ensure(
            expiries.windows(2).all(|w| w[0].0 < w[1].0)
                && expiries
                    .last()
                    .is_none_or(|(o, _)| (*o as usize) < statements.len()),
            "the expiries are out of order or point past the statements",
        )?;
        let sets = d.len(8)?;
        let mut label_sets = Vec::with_capacity(sets);
        let mut label_set_ids = HashMap::with_capacity(sets);
        for i in 0..sets {
            let count = d.len(8)?;
            let mut set = Vec::with_capacity(count);
            for _ in 0..count {
                set.push(Label::parse(&d.string()?).map_err(bad)?);
            }
            label_set_ids.insert(set.clone(), i as u32);
            label_sets.push(set);
        }
        let slots: Vec<(u32, u32)> = d.vec(|b: [u8; 8]| {
            let (s, l) = b.split_at(4);
            let word = |x: &[u8]| u32::from_le_bytes([x[0], x[1], x[2], x[3]]);
            (word(s), word(l))
        })?;
        d.ensure(
            slots
                .iter()
                .all(|&(s, l)| (s as usize) < statements.len() && (l as usize) < label_sets.len()),
            "a slot points past the statements or label sets",
        )?;
        let matcher = Matcher::decode(d)?;
        Ok(Corpus {
            matcher,
            slots,
            statements,
            label_sets,
            label_set_ids,
            issuers,
            expiries,
            next_seq,
        })
    }

    fn issuer(&mut self, id: &MemberId) -> Arc<MemberId> {
        if let Some(shared) = self.issuers.get(id) {
            return shared.clone();
        }
        let shared = Arc::new(id.clone());
        self.issuers.insert(id.clone(), shared.clone());
        shared
    }

    fn label_set(&mut self, labels: &[Label]) -> u32 {
        if let Some(id) = self.label_set_ids.get(labels) {
            return *id;
        }
        let id = self.label_sets.len() as u32;
        self.label_sets.push(labels.to_vec());
        self.label_set_ids.insert(labels.to_vec(), id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::snapshot::{self, Covers, SnapshotError};
    use crate::matching::{MatchOptions, PdqHash};
    use crate::statement::Category;
    use rand::{Rng, SeedableRng};

    /// A corpus of `statements` statements with PDQ and exact hashes, built as the hub does.
    fn corpus(statements: u32) -> (Corpus, Vec<Query>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut c = Corpus::new();
        let mut queries = Vec::new();
        for s in 0..statements {
            let labels = c.label_set(&[
                Label::Category(Category::A1),
                Label::Tag(format!("t{}", s % 3)),
            ]);
            for i in 0..500 {
                let (hash_type, value, quality) = if i % 5 == 0 {
                    (HashType::Sha256, rng.r#gen::<[u8; 32]>().to_vec(), None)
                } else {
                    (HashType::Pdq, rng.r#gen::<[u8; 32]>().to_vec(), Some(90))
                };
                if i % 97 == 0 {
                    queries.push(Query {
                        hash_type,
                        value: value.clone(),
                        quality: None,
                    });
                }
                let slot = c.matcher.stage(hash_type, &value, quality).expect("room");
                assert_eq!(slot as usize, c.slots.len());
                c.slots.push((s, labels));
            }
            let issuer = c.issuer(&MemberId::parse("org-a").expect("valid"));
            c.statements.push(Provenance {
                seq: u64::from(s) + 1,
                statement_id: StatementId([s as u8; 32]),
                issuer,
                received_at_ms: 1_700_000_000_000 + i64::from(s),
                recipients: Recipients::everyone(),
                // Some as a risk signal whose hashes are not its first indicators.
                entries: if s % 4 == 1 {
                    (0..500).map(|i| 2 * i + 1).collect()
                } else {
                    Vec::new()
                },
            });
            c.next_seq = u64::from(s) + 2;
            c.commit();
        }
        (c, queries)
    }

    /// One query's matches: distance, value, provenance, labels.
    type Answer = Vec<(u32, Vec<u8>, Provenance, Vec<Label>)>;

    fn answers(c: &Corpus, queries: &[Query]) -> Vec<Answer> {
        queries
            .iter()
            .map(|q| {
                c.lookup(q, &MatchOptions::default(), 100)
                    .0
                    .into_iter()
                    .map(|f| (f.distance, f.value, f.source.clone(), f.labels.to_vec()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_snapshot_round_trips_and_damage_is_detected() {
        let (mut c, queries) = corpus(40);
        // Some segments merged, some not: both shapes are saved as they are.
        if let Some(plan) = c.merge_plan() {
            let merged = plan.build();
            assert!(c.install_merge(&plan, merged));
        }
        let covers = Covers {
            log_size: c.next_seq(),
            root: [7; 32],
        };
        let mut file = Vec::new();
        snapshot::write(&c, &covers, &mut file).expect("written");
        let (back, read_covers) = snapshot::read(&file[..], file.len() as u64).expect("read back");
        assert_eq!(read_covers, covers);
        assert_eq!(back.pdq_shape().0, c.pdq_shape().0);
        let want = answers(&c, &queries);
        assert!(want.iter().all(|a| !a.is_empty()));
        assert_eq!(answers(&back, &queries), want);
        // A near-duplicate query too.
        let pdq = queries
            .iter()
            .find(|q| q.hash_type == HashType::Pdq)
            .expect("a pdq query");
        let mut near = PdqHash(pdq.value.clone().try_into().expect("32 bytes"));
        near.0[3] ^= 0x0f;
        let q = Query {
            hash_type: HashType::Pdq,
            value: near.0.to_vec(),
            quality: None,
        };
        assert_eq!(
            answers(&back, std::slice::from_ref(&q)),
            answers(&c, std::slice::from_ref(&q))
        );

        // Every kind of damage is refused, never trusted: flipped bytes anywhere (header,
        // tables, provenance, checksum), truncation, trailing bytes, another file entirely.
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..40 {
            let mut bad = file.clone();
            let at = rng.gen_range(0..bad.len());
            bad[at] ^= 1 << rng.gen_range(0..8);
            assert!(
                snapshot::read(&bad[..], bad.len() as u64).is_err(),
                "flip at {at}"
            );
        }
        for cut in [0, 5, 31, 40, file.len() / 2, file.len() - 1] {
            let short = &file[..cut];
            assert!(
                snapshot::read(short, short.len() as u64).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = file.clone();
        long.extend_from_slice(&[0; 16]);
        assert!(snapshot::read(&long[..], long.len() as u64).is_err());
        let other = vec![0xab; 4096];
        assert!(matches!(
            snapshot::read(&other[..], other.len() as u64),
            Err(SnapshotError::Damaged(_))
        ));
    }
}
