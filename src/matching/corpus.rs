//! The hub's shared corpus as the matcher sees it: every hash in the log, indexed, with the
//! statement it came from. Built from the store at start-up and extended as entries become
//! durable, always in log order.

use super::matcher::MatcherFull;
use super::{Hit, MatchOptions, Matcher, PdqIndex, Query};
use crate::membership::MemberId;
use crate::statement::{HashType, Label, Statement, StatementId};
use crate::store::StoredEntry;
use std::collections::HashMap;

/// Where a matched hash came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The statement's log position.
    pub seq: u64,
    /// The statement id.
    pub statement_id: StatementId,
    /// Who shared it.
    pub issuer: MemberId,
    /// When the hub received it.
    pub received_at_ms: i64,
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
    /// Its labels.
    pub labels: &'a [Label],
    /// Its statement.
    pub source: &'a Provenance,
}

/// The indexed corpus.
#[derive(Debug, Default)]
pub struct Corpus {
    matcher: Matcher,
    /// Per slot: (statement ordinal, label-set ordinal).
    slots: Vec<(u32, u32)>,
    statements: Vec<Provenance>,
    label_sets: Vec<Vec<Label>>,
    label_set_ids: HashMap<Vec<Label>, u32>,
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
            self.statements.push(Provenance {
                seq: entry.seq,
                statement_id: id,
                issuer: statement.issuer.clone(),
                received_at_ms: entry.received_at_ms,
            });
        }
        Ok(())
    }

    /// Makes everything staged searchable. Never rebuilds the PDQ index: the owner checks
    /// [`Corpus::wants_compaction`] and rebuilds outside its write lock with
    /// [`Corpus::compacted_pdq`] and [`Corpus::install_pdq`].
    pub fn commit(&mut self) {
        self.matcher.commit_deferred();
    }

    /// Whether the PDQ index should be rebuilt.
    pub fn wants_compaction(&self) -> bool {
        self.matcher.pdq_wants_compaction()
    }

    /// A rebuilt copy of the PDQ index (searches may continue meanwhile).
    pub fn compacted_pdq(&self) -> PdqIndex {
        self.matcher.compacted_pdq()
    }

    /// Installs a copy made by [`Corpus::compacted_pdq`] with nothing changed in between.
    pub fn install_pdq(&mut self, pdq: PdqIndex) {
        self.matcher.install_pdq(pdq);
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

    /// The match a hit of `query` stands for (`None` for a slot this corpus does not hold).
    pub fn found(&self, query: &Query, Hit { distance, slot }: Hit) -> Option<Found<'_>> {
        let (statement, labels) = *self.slots.get(slot as usize)?;
        let value = match query.hash_type {
            HashType::Pdq => self.matcher.pdq_hash(slot)?.0.to_vec(),
            _ => query.value.clone(),
        };
        Some(Found {
            distance,
            hash_type: query.hash_type,
            value,
            quality: (query.hash_type == HashType::Pdq)
                .then(|| self.matcher.quality(slot))
                .flatten(),
            labels: self.label_sets.get(labels as usize)?,
            source: self.statements.get(statement as usize)?,
        })
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
