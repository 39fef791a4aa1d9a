//! The PDQ index as a list of immutable segments, so that new hashes are searchable at once
//! and the index never has to be rebuilt whole while it serves.
//!
//! * A batch of new hashes becomes a new segment at the end ([`SegmentedPdq::append`]): a
//!   flat list scanned linearly (copying it is all the work), or a full multi-index
//!   [`PdqIndex`] when the batch is large (a start-up load).
//! * Segments cover increasing, disjoint id ranges, in append order. A search asks every
//!   segment and sorts the union, so results are exactly those of one index over everything.
//! * Merging: segments fall into size levels ([`MERGE_FANOUT`] times apart, from
//!   [`MERGE_BASE`]). When [`MERGE_FANOUT`] adjacent segments share a level they are merged
//!   into one (a [`MergePlan`]): the plan holds `Arc`s of its parts, so the new segment is
//!   built while the old ones keep answering, and [`SegmentedPdq::install`] swaps it in only
//!   if the parts are still the ones it read. The extra memory of a merge is the merged
//!   segment, at most [`MAX_SEGMENT`] hashes (~100 B each) while entries arrive, at most
//!   [`MAX_IDLE_SEGMENT`] once the log is quiet. Each hash is merged about
//!   `log4(n / MERGE_BASE)` times in all.

use super::pdq::sort_matches;
use super::snapshot::{Dec, Enc, SnapshotError};
use super::{PdqHash, PdqIndex, PdqMatch};
use std::sync::Arc;

/// Segments smaller than this are level 0 (the linear-scan size of [`PdqIndex`]).
pub const MERGE_BASE: usize = 32_768;
/// How many adjacent segments of one level are merged into one (and the ratio between levels).
pub const MERGE_FANOUT: usize = 4;
/// Segments of this many hashes or more are never merged further: it bounds the extra memory
/// of one merge (~100 B per hash of the merged segment) and its time.
pub const MAX_SEGMENT: usize = 1 << 23;
/// Once the log is quiet, the newest segments are merged into one of at most this many hashes
/// (see [`SegmentedPdq::idle_merge_plan`]): a query visits every segment's tables, so a 10M
/// index settled as one segment answers ~1.6× faster than as 8,388,608 + 1.6M (same-run
/// ratio, docs/PERFORMANCE.md). Such a merge, which runs only when nothing is being
/// ingested, holds the merged segment beside its parts: ~100 B per hash, ~1 GB at 10M.
pub const MAX_IDLE_SEGMENT: usize = 1 << 24;
/// A batch of at least this many hashes is built with tables when appended (a start-up load);
/// smaller ones are appended as flat lists and get tables when merged.
pub const TABLES_ON_APPEND: usize = 1 << 18;

/// A PDQ index made of immutable segments (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct SegmentedPdq {
    segments: Vec<Arc<PdqIndex>>,
}

/// Adjacent segments to merge into one, with the parts read when it was planned.
#[derive(Debug)]
pub struct MergePlan {
    start: usize,
    parts: Vec<Arc<PdqIndex>>,
}

impl MergePlan {
    /// Builds the merged segment (O(total size); the parts keep serving meanwhile).
    pub fn build(&self) -> PdqIndex {
        let total = self.parts.iter().map(|p| p.len()).sum();
        let mut items = Vec::with_capacity(total);
        for part in &self.parts {
            items.extend(part.live_items());
        }
        PdqIndex::build(items)
    }

    /// How many hashes the merged segment will hold.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    /// Whether the plan merges nothing (never true for a plan from [`SegmentedPdq`]).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

impl SegmentedPdq {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `items` as a new segment. Their ids must be greater than every id held (the
    /// matcher numbers slots in order); an empty batch adds nothing.
    pub fn append(&mut self, items: Vec<(PdqHash, u32)>) {
        if items.is_empty() {
            return;
        }
        debug_assert!(
            self.last_id()
                .is_none_or(|last| items.iter().all(|(_, id)| *id > last))
        );
        let segment = if items.len() >= TABLES_ON_APPEND {
            PdqIndex::build(items)
        } else {
            PdqIndex::build_flat(items)
        };
        self.segments.push(Arc::new(segment));
    }

    /// Number of live hashes.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.len()).sum()
    }

    /// Whether no live hash is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Heap bytes held by every segment (a merge in progress holds its parts too).
    pub fn memory_bytes(&self) -> usize {
        self.segments.iter().map(|s| s.memory_bytes()).sum()
    }

    /// Every live id within `threshold` bits of `query`, sorted by `(distance, id)`: exactly
    /// what one [`PdqIndex`] over all live hashes returns.
    pub fn search(&self, query: &PdqHash, threshold: u32) -> Vec<PdqMatch> {
        let mut out = Vec::new();
        for segment in &self.segments {
            out.extend(segment.search(query, threshold));
        }
        if self.segments.len() > 1 {
            sort_matches(&mut out);
        }
        out
    }

    /// The live hash stored under `id`.
    pub fn hash(&self, id: u32) -> Option<PdqHash> {
        self.segment_of(id).and_then(|i| self.segments[i].hash(id))
    }

    /// Removes `id`; returns whether it was live. A segment that a merge is reading is copied
    /// first (the merge then no longer installs, see [`SegmentedPdq::install`]).
    pub fn remove(&mut self, id: u32) -> bool {
        let Some(i) = self.segment_of(id) else {
            return false;
        };
        if self.segments[i].hash(id).is_none() {
            return false;
        }
        Arc::make_mut(&mut self.segments[i]).remove(id)
    }

    /// The merge to run next, if any: the newest run of [`MERGE_FANOUT`] or more adjacent
    /// segments of the lowest level that has one, else a flat segment of at least
    /// [`MERGE_BASE`] hashes (rebuilt alone, with tables). Levels are made non-increasing from old to
    /// new, so a small segment left between larger ones joins the next merge after it.
    pub fn merge_plan(&self) -> Option<MergePlan> {
        let mut levels = Vec::with_capacity(self.segments.len());
        let mut ceiling = usize::MAX;
        for segment in &self.segments {
            let len = segment.len();
            let level = if len >= MAX_SEGMENT {
                usize::MAX
            } else {
                level_of(len).min(ceiling)
            };
            if level != usize::MAX {
                ceiling = level;
            }
            levels.push(level);
        }
        let mut best: Option<(usize, usize, usize)> = None; // (level, start, end)
        let mut i = 0;
        while i < levels.len() {
            let mut j = i + 1;
            while j < levels.len() && levels[j] == levels[i] {
                j += 1;
            }
            let run = j - i;
            if levels[i] != usize::MAX
                && run >= MERGE_FANOUT
                && best.is_none_or(|(level, _, _)| levels[i] <= level)
            {
                // Only as many as keep the merged segment within MAX_SEGMENT.
                let mut end = i;
                let mut total = 0;
                while end < j && (end - i < 2 || total + self.segments[end].len() <= MAX_SEGMENT) {
                    total += self.segments[end].len();
                    end += 1;
                }
                best = Some((levels[i], i, end));
            }
            i = j;
        }
        // Otherwise a lone flat segment big enough for tables is rebuilt with them.
        let (start, end) = match best {
            Some((_, start, end)) => (start, end),
            None => {
                let flat = self
                    .segments
                    .iter()
                    .position(|s| s.len() >= MERGE_BASE && s.params().is_none())?;
                (flat, flat + 1)
            }
        };
        Some(MergePlan {
            start,
            parts: self.segments[start..end].to_vec(),
        })
    }

    /// The merge to run once the log is quiet: the newest segments, as many as fit in one of
    /// at most [`MAX_IDLE_SEGMENT`] hashes (if two or more), so a settled index is one segment
    /// up to that size (a few beyond it) and queries visit few tables.
    pub fn idle_merge_plan(&self) -> Option<MergePlan> {
        let lens: Vec<usize> = self.segments.iter().map(|s| s.len()).collect();
        let start = idle_merge_start(&lens)?;
        Some(MergePlan {
            start,
            parts: self.segments[start..].to_vec(),
        })
    }

    /// Replaces the plan's parts with `merged` (from [`MergePlan::build`]); false (and
    /// nothing changed) if those parts are no longer where the plan found them.
    pub fn install(&mut self, plan: &MergePlan, merged: PdqIndex) -> bool {
        let end = plan.start + plan.parts.len();
        let same = self
            .segments
            .get(plan.start..end)
            .is_some_and(|now| now.iter().zip(&plan.parts).all(|(a, b)| Arc::ptr_eq(a, b)));
        if !same {
            return false;
        }
        self.segments
            .splice(plan.start..end, std::iter::once(Arc::new(merged)));
        true
    }

    /// Runs every pending merge now (offline use: `coalition match`, tests).
    pub fn merge_all_pending(&mut self) {
        while let Some(plan) = self.merge_plan().or_else(|| self.idle_merge_plan()) {
            let merged = plan.build();
            self.install(&plan, merged);
        }
    }

    /// Every segment's live `(hash, id)`, in id order.
    pub fn live_items(&self) -> impl Iterator<Item = (PdqHash, u32)> + '_ {
        self.segments.iter().flat_map(|s| s.live_items())
    }

    fn last_id(&self) -> Option<u32> {
        self.segments.last().and_then(|s| s.id_range()).map(|r| r.1)
    }

    /// The segment whose id range holds `id`.
    fn segment_of(&self, id: u32) -> Option<usize> {
        let i = self
            .segments
            .partition_point(|s| s.id_range().is_some_and(|(_, hi)| hi < id));
        let range = self.segments.get(i)?.id_range()?;
        (range.0 <= id).then_some(i)
    }
}

impl SegmentedPdq {
    /// Writes every segment (see [`super::snapshot`]).
    pub(crate) fn encode<W: std::io::Write>(&self, e: &mut Enc<W>) -> std::io::Result<()> {
        e.len(self.segments.len())?;
        self.segments.iter().try_for_each(|s| s.encode(e))
    }

    /// Reads segments written by [`SegmentedPdq::encode`]; their id ranges must increase.
    pub(crate) fn decode<R: std::io::Read>(d: &mut Dec<R>) -> Result<Self, SnapshotError> {
        let n = d.len(8)?;
        let mut segments: Vec<Arc<PdqIndex>> = Vec::with_capacity(n);
        for _ in 0..n {
            let segment = PdqIndex::decode(d)?;
            let after = |prev: &Arc<PdqIndex>| match (prev.id_range(), segment.id_range()) {
                (Some((_, hi)), Some((lo, _))) => hi < lo,
                _ => true,
            };
            d.ensure(segments.last().is_none_or(after), "segments overlap")?;
            segments.push(Arc::new(segment));
        }
        Ok(SegmentedPdq { segments })
    }
}

/// Where the idle merge of segments of these lengths starts (it runs to the last): the
/// newest segments whose total fits in [`MAX_IDLE_SEGMENT`], if two or more.
fn idle_merge_start(lens: &[usize]) -> Option<usize> {
    let (mut start, mut total) = (lens.len(), 0);
    while start > 0 && total + lens[start - 1] <= MAX_IDLE_SEGMENT {
        total += lens[start - 1];
        start -= 1;
    }
    (lens.len() - start >= 2).then_some(start)
}

/// The size level of a segment of `len` hashes: 0 below [`MERGE_BASE`], then one more per
/// factor of [`MERGE_FANOUT`].
fn level_of(len: usize) -> usize {
    let mut level = 0;
    let mut bound = MERGE_BASE;
    while len >= bound {
        level += 1;
        bound = bound.saturating_mul(MERGE_FANOUT);
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::brute_force;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn near(rng: &mut StdRng, base: &PdqHash, bits: u32) -> PdqHash {
        let mut out = base.0;
        for _ in 0..bits {
            let b = rng.gen_range(0..256);
            out[b / 8] ^= 1 << (b % 8);
        }
        PdqHash(out)
    }

    #[test]
    fn appends_merges_and_removals_match_brute_force() {
        let mut rng = StdRng::seed_from_u64(21);
        let anchors: Vec<PdqHash> = (0..8).map(|_| PdqHash(rng.r#gen())).collect();
        let mut index = SegmentedPdq::new();
        let mut live: Vec<(PdqHash, u32)> = Vec::new();
        let mut next = 0u32;
        let mut merged = 0;
        // Batches of mixed sizes: merges happen along the way, some deferred.
        for round in 0..60 {
            let n = [500, 9_000, 30_000, 70][round % 4];
            let batch: Vec<(PdqHash, u32)> = (0..n)
                .map(|i| {
                    let h = if i % 50 == 0 {
                        near(&mut rng, &anchors[i % anchors.len()], (i % 40) as u32)
                    } else {
                        PdqHash(rng.r#gen())
                    };
                    next += 1;
                    (h, next)
                })
                .collect();
            live.extend(batch.iter().copied());
            index.append(batch);
            if round % 3 == 0
                && let Some(plan) = index.merge_plan()
            {
                // A merge planned before a removal in its parts does not install.
                let built = plan.build();
                if round % 9 == 0 {
                    let victim = plan.parts[0].id_range().map(|r| r.0).unwrap_or(0);
                    assert!(index.remove(victim));
                    live.retain(|(_, id)| *id != victim);
                    assert!(!index.install(&plan, built));
                } else {
                    assert!(index.install(&plan, built));
                    merged += 1;
                }
            }
        }
        assert!(merged > 0);
        let before = index.segment_count();
        for id in (1..next).step_by(997) {
            let was = live.iter().any(|(_, l)| *l == id);
            assert_eq!(index.remove(id), was);
            live.retain(|(_, l)| *l != id);
        }
        assert_eq!(index.len(), live.len());
        for q in &anchors {
            for t in [0, 10, 31, 40] {
                assert_eq!(index.search(q, t), brute_force(&live, q, t));
            }
        }
        index.merge_all_pending();
        assert!(index.segment_count() <= before);
        assert!(index.merge_plan().is_none());
        assert_eq!(index.segment_count(), 1);
        for q in &anchors {
            assert_eq!(index.search(q, 31), brute_force(&live, q, 31));
        }
        let (h, id) = live[live.len() / 2];
        assert_eq!(index.hash(id), Some(h));
        assert_eq!(index.hash(u32::MAX), None);
        assert_eq!(index.live_items().collect::<Vec<_>>(), live);
    }

    #[test]
    fn levels_and_plans() {
        assert_eq!(level_of(0), 0);
        assert_eq!(level_of(MERGE_BASE - 1), 0);
        assert_eq!(level_of(MERGE_BASE), 1);
        assert_eq!(level_of(MERGE_BASE * MERGE_FANOUT), 2);
        let mut index = SegmentedPdq::new();
        let mut id = 0;
        let mut batch = |n: usize| -> Vec<(PdqHash, u32)> {
            (0..n)
                .map(|_| {
                    id += 1;
                    (PdqHash([id as u8; 32]), id)
                })
                .collect()
        };
        for _ in 0..MERGE_FANOUT - 1 {
            index.append(batch(10));
        }
        assert!(index.merge_plan().is_none());
        index.append(batch(10));
        let plan = index.merge_plan().expect("four of level 0");
        assert_eq!(plan.len(), 40);
        index.append(batch(0));
        assert_eq!(index.segment_count(), MERGE_FANOUT);
        let built = plan.build();
        assert!(index.install(&plan, built));
        assert_eq!(index.segment_count(), 1);
        assert_eq!(index.len(), 40);
    }

    #[test]
    fn idle_merges_settle_into_one_segment_up_to_the_bound() {
        // 10M after ingest: a full segment and the rest become one.
        assert_eq!(idle_merge_start(&[MAX_SEGMENT, 1_611_392]), Some(0));
        // 20M: the newest that fit; the oldest full segment stays.
        assert_eq!(
            idle_merge_start(&[MAX_SEGMENT, MAX_SEGMENT, 3_222_784]),
            Some(1)
        );
        assert_eq!(idle_merge_start(&[MAX_SEGMENT, MAX_SEGMENT]), Some(0));
        assert_eq!(idle_merge_start(&[MAX_IDLE_SEGMENT, 1]), None);
        assert_eq!(idle_merge_start(&[MAX_IDLE_SEGMENT - 1, 1]), Some(0));
        assert_eq!(idle_merge_start(&[5]), None);
        assert_eq!(idle_merge_start(&[]), None);
    }
}
