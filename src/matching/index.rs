//! The exact PDQ near-duplicate index: multi-index hashing over CSR bucket tables, a
//! brute-forced insert buffer, tombstone removal and a linear-scan fallback.
//!
//! Layout (all flat `Vec`s, no per-entry allocation):
//! * `hashes[slot]` / `ids[slot]`: every hash of the main part, ordered by id so that
//!   `remove` is a binary search; `dead` is a tombstone bitset over slots.
//! * `m` tables, one per disjoint substring of the 256 bits (8..=32 bits each). A table
//!   addresses the top `prefix_bits` of its substring directly (CSR `offsets`), and stores
//!   per entry the slot (`u32`) plus the remaining low bits of the substring (`u8`/`u16`).
//! * A query with threshold `t = r*m + a` probes table `i` at radius `r` (`i <= a`) or
//!   `r - 1` (`i > a`): if all substrings were farther, the total distance would exceed
//!   `t` (Norouzi et al., "Fast Exact Search in Hamming Space with Multi-Index Hashing").
//!   Each candidate is reported only by the first table that can see it, so no dedup
//!   pass is needed.
//! * A query is memory-latency bound, so it runs as a pipeline of independent loads:
//!   gather all bucket ranges of a table (prefetching their suffixes), scan suffixes
//!   (prefetching candidate slots), resolve slots (prefetching full hashes), verify.
//!   The search is compiled a second time with hardware popcount (runtime-detected);
//!   the baseline x86-64 target has none.

use super::pdq::{PdqHash, PdqMatch, distance_words, sort_matches};
use super::snapshot::{Dec, Enc, SnapshotError, le};

/// Tuning knobs of the multi-index tables; see [`PdqIndex::build_with_params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexParams {
    /// Number of disjoint substrings (tables), 8..=32. More tables mean smaller probe
    /// radii but 5-6 more bytes per hash each (`u32` slot + `u8`/`u16` suffix).
    pub substrings: u32,
    /// Bits of each substring addressed directly by the bucket array (the rest are
    /// compared from the per-entry suffix). Clamped per table so the suffix fits 16 bits.
    pub prefix_bits: u32,
}

impl IndexParams {
    /// The parameters [`PdqIndex::build`] picks for `n` hashes, or `None` when a
    /// linear scan is cheaper than any table (small `n`).
    pub fn auto(n: usize) -> Option<IndexParams> {
        if n < MIN_TABLE_LEN {
            return None;
        }
        // 11 substrings of 23-24 bits: threshold 31 probes radius 2 in ten tables
        // and radius 1 in one, a few thousand buckets in all. ~5-11 entries per
        // bucket (prefix bits = round(log2 n) - 3) keeps the bucket arrays at
        // <= 8 bytes per hash. Measured best of m in 8..=13 at 1M and 10M hashes.
        let log2 = (n as f64).log2().round() as u32;
        Some(IndexParams {
            substrings: 11,
            prefix_bits: log2.saturating_sub(3).clamp(12, 24),
        })
    }
}

/// An exact index of PDQ hashes answering "all ids within Hamming distance t".
///
/// Results are always identical to [`super::brute_force`] over the live entries.
/// Searches take `&self` and the type is `Send + Sync`, so it can sit behind a
/// `RwLock` with many concurrent readers.
///
/// Inserts go to a small buffer that is scanned linearly; when it outgrows
/// `clamp(len / 64, 256, 32768)` entries the whole index is rebuilt (O(n), about
/// a second at 10 million hashes, done inside the `insert` call that crosses the
/// limit). Removal sets a tombstone; tombstones are compacted on rebuild, which is
/// also triggered when a quarter of the main part is dead.
#[derive(Clone, Debug, Default)]
pub struct PdqIndex {
    main: MainPart,
    delta_hashes: Vec<[u64; 4]>,
    delta_ids: Vec<u32>,
    params_override: Option<Option<IndexParams>>,
}

impl PdqIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index from `(hash, id)` pairs in one pass (counting sort per table,
    /// tables built on all cores). If an id occurs twice, the later pair wins.
    pub fn build(items: impl IntoIterator<Item = (PdqHash, u32)>) -> Self {
        Self::build_inner(items, None)
    }

    /// Like [`PdqIndex::build`] but with explicit table parameters, which are also
    /// used by later rebuilds. Intended for benchmarks and tests; `None` forces the
    /// pure linear-scan layout.
    pub fn build_with_params(
        items: impl IntoIterator<Item = (PdqHash, u32)>,
        params: Option<IndexParams>,
    ) -> Self {
        Self::build_inner(items, Some(params))
    }

    /// Builds a table-less index (linear scan only) from `(hash, id)` pairs: the cheapest
    /// build, for small segments of [`super::SegmentedPdq`]. Later compactions keep it flat.
    pub fn build_flat(items: impl IntoIterator<Item = (PdqHash, u32)>) -> Self {
        Self::build_inner(items, Some(None))
    }

    /// Every live `(hash, id)`, in id order (the insert buffer, if any, last).
    pub fn live_items(&self) -> impl Iterator<Item = (PdqHash, u32)> + '_ {
        let main = &self.main;
        (0..main.ids.len())
            .filter(|&slot| !main.is_dead(slot))
            .map(|slot| (PdqHash::from_words(main.hashes[slot]), main.ids[slot]))
            .chain(
                self.delta_hashes
                    .iter()
                    .zip(&self.delta_ids)
                    .map(|(h, &id)| (PdqHash::from_words(*h), id)),
            )
    }

    /// The lowest and highest id held, live or not (`None` when empty); O(insert buffer).
    pub fn id_range(&self) -> Option<(u32, u32)> {
        // Main ids are sorted; the insert buffer is small (empty in a segment).
        let ends = self
            .main
            .ids
            .first()
            .into_iter()
            .chain(self.main.ids.last());
        let all = ends.chain(&self.delta_ids);
        Some((*all.clone().min()?, *all.max()?))
    }

    /// Adds `hash` under `id`. An existing entry with the same id is replaced.
    /// Amortized cheap; occasionally triggers a full rebuild (see type docs).
    pub fn insert(&mut self, hash: PdqHash, id: u32) {
        self.insert_deferred(hash, id);
        if self.wants_compaction() {
            self.compact();
        }
    }

    /// Removes the entry with `id`; returns whether it was present.
    pub fn remove(&mut self, id: u32) -> bool {
        if !self.remove_deferred(id) {
            return false;
        }
        if self.wants_compaction() {
            self.compact();
        }
        true
    }

    /// Merges the insert buffer into the tables and drops tombstones now (O(n)).
    pub fn compact(&mut self) {
        *self = self.compacted();
    }

    /// A compacted copy (insert buffer merged, tombstones dropped), built from `&self` so that
    /// searches can go on while it is built; swap it in afterwards. O(n) time, and the copy
    /// needs as much memory as the index.
    pub fn compacted(&self) -> PdqIndex {
        let live = self.len();
        let params = self.params();
        let mut hashes = Vec::with_capacity(live);
        let mut ids = Vec::with_capacity(live);
        let mut delta: Vec<(u32, [u64; 4])> = self
            .delta_ids
            .iter()
            .copied()
            .zip(self.delta_hashes.iter().copied())
            .collect();
        delta.sort_unstable_by_key(|&(id, _)| id);
        let main = &self.main;
        let mut main_iter = (0..main.ids.len())
            .filter(|&slot| !main.is_dead(slot))
            .map(|slot| (main.ids[slot], main.hashes[slot]))
            .peekable();
        let mut delta_iter = delta.into_iter().peekable();
        loop {
            let take_main = match (main_iter.peek(), delta_iter.peek()) {
                (Some(a), Some(b)) => a.0 < b.0,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_main {
                main_iter.next()
            } else {
                delta_iter.next()
            };
            if let Some((id, hash)) = next {
                ids.push(id);
                hashes.push(hash);
            }
        }
        PdqIndex {
            main: MainPart::from_sorted(hashes, ids, params),
            delta_hashes: Vec::new(),
            delta_ids: Vec::new(),
            params_override: self.params_override,
        }
    }

    /// Adds `hash` under `id` like [`PdqIndex::insert`], but never rebuilds: the caller checks
    /// [`PdqIndex::wants_compaction`] and swaps in [`PdqIndex::compacted`] when convenient
    /// (built outside the caller's lock, queries never wait for a rebuild). The hub no longer
    /// uses this: it grows the index as segments (`segments.rs`) and merges them instead.
    pub fn insert_deferred(&mut self, hash: PdqHash, id: u32) {
        self.remove_deferred(id);
        self.delta_hashes.push(hash.to_words());
        self.delta_ids.push(id);
    }

    /// Removes like [`PdqIndex::remove`], but never rebuilds.
    pub fn remove_deferred(&mut self, id: u32) -> bool {
        if let Some(pos) = self.delta_ids.iter().position(|&d| d == id) {
            self.delta_ids.swap_remove(pos);
            self.delta_hashes.swap_remove(pos);
            return true;
        }
        self.main.kill(id)
    }

    /// Whether the insert buffer or the tombstones have grown past the point where
    /// [`PdqIndex::insert`] / [`PdqIndex::remove`] would rebuild.
    pub fn wants_compaction(&self) -> bool {
        let n = self.main.ids.len();
        self.delta_ids.len() > delta_limit(n)
            || (self.main.dead_count >= MIN_COMPACT_DEAD && self.main.dead_count * 4 > n)
    }

    /// The live hash stored under `id`, if any.
    pub fn hash(&self, id: u32) -> Option<PdqHash> {
        if let Some(pos) = self.delta_ids.iter().position(|&d| d == id) {
            return Some(PdqHash::from_words(self.delta_hashes[pos]));
        }
        let slot = self.main.ids.binary_search(&id).ok()?;
        if self.main.is_dead(slot) {
            return None;
        }
        Some(PdqHash::from_words(self.main.hashes[slot]))
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.main.ids.len() - self.main.dead_count + self.delta_ids.len()
    }

    /// Whether the index holds no live entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All live ids whose hash is within `threshold` bits of `query`, sorted by
    /// `(distance, id)`. Any threshold is accepted; above 256 it behaves like 256.
    pub fn search(&self, query: &PdqHash, threshold: u32) -> Vec<PdqMatch> {
        self.search_with(query, threshold, SearchPath::Auto)
    }

    /// Heap bytes held by the index (capacity of every buffer) plus the struct itself.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.main.memory_bytes()
            + vec_bytes(&self.delta_hashes)
            + vec_bytes(&self.delta_ids)
    }

    /// The table parameters in use (`None` = linear scan only).
    pub fn params(&self) -> Option<IndexParams> {
        match self.params_override {
            Some(p) => p,
            None => IndexParams::auto(self.len()),
        }
    }

    /// [`PdqIndex::search`] with an explicit choice of algorithm; same results.
    pub fn search_with(
        &self,
        query: &PdqHash,
        threshold: u32,
        strategy: SearchPath,
    ) -> Vec<PdqMatch> {
        let t = threshold.min(super::pdq::PDQ_BITS);
        let q = query.to_words();
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("popcnt")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("bmi1")
            {
                // SAFETY: the CPU features this function is compiled for were just detected.
                unsafe { self.search_x86_v3(&q, t, strategy, &mut out) };
                sort_matches(&mut out);
                return out;
            }
        }
        self.search_generic(&q, t, strategy, &mut out);
        sort_matches(&mut out);
        out
    }

    /// The search compiled for CPUs with hardware popcount (the default x86-64 target
    /// has none, and a software popcount makes every path several times slower).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt,avx2,bmi1")]
    unsafe fn search_x86_v3(
        &self,
        q: &[u64; 4],
        t: u32,
        strategy: SearchPath,
        out: &mut Vec<PdqMatch>,
    ) {
        self.search_generic(q, t, strategy, out);
    }

    #[inline(always)]
    fn search_generic(&self, q: &[u64; 4], t: u32, strategy: SearchPath, out: &mut Vec<PdqMatch>) {
        self.main.search_into(q, t, strategy, out);
        for (hash, &id) in self.delta_hashes.iter().zip(&self.delta_ids) {
            let distance = distance_words(q, hash);
            if distance <= t {
                out.push(PdqMatch { id, distance });
            }
        }
    }

    fn build_inner(
        items: impl IntoIterator<Item = (PdqHash, u32)>,
        params_override: Option<Option<IndexParams>>,
    ) -> Self {
        let iter = items.into_iter();
        let (lower, _) = iter.size_hint();
        let mut hashes = Vec::with_capacity(lower);
        let mut ids = Vec::with_capacity(lower);
        for (hash, id) in iter {
            hashes.push(hash.to_words());
            ids.push(id);
        }
        hashes.shrink_to_fit();
        ids.shrink_to_fit();
        if !ids.windows(2).all(|w| w[0] < w[1]) {
            (hashes, ids) = sort_by_id_last_wins(hashes, ids);
        }
        let params = match params_override {
            Some(p) => p,
            None => IndexParams::auto(ids.len()),
        };
        PdqIndex {
            main: MainPart::from_sorted(hashes, ids, params),
            delta_hashes: Vec::new(),
            delta_ids: Vec::new(),
            params_override,
        }
    }
}

impl PdqIndex {
    /// Writes the whole index, tables included (see [`super::snapshot`]).
    pub(crate) fn encode<W: std::io::Write>(&self, e: &mut Enc<W>) -> std::io::Result<()> {
        match self.params_override {
            None => e.u8(0)?,
            Some(None) => e.u8(1)?,
            Some(Some(p)) => {
                e.u8(2)?;
                e.u32(p.substrings)?;
                e.u32(p.prefix_bits)?;
            }
        }
        e.array(&self.delta_hashes, le::words_to)?;
        e.array(&self.delta_ids, le::u32_to)?;
        let m = &self.main;
        e.array(&m.hashes, le::words_to)?;
        e.array(&m.ids, le::u32_to)?;
        e.array(&m.dead, le::u64_to)?;
        e.len(m.tables.len())?;
        for t in &m.tables {
            for v in [t.start, t.len, t.prefix_bits, t.suffix_bits] {
                e.u32(v)?;
            }
            e.array(&t.offsets, le::u32_to)?;
            e.array(&t.slots, le::u32_to)?;
            match &t.suffixes {
                Suffixes::None => e.u8(0)?,
                Suffixes::U8(v) => {
                    e.u8(1)?;
                    e.bytes(v)?;
                }
                Suffixes::U16(v) => {
                    e.u8(2)?;
                    e.array(v, le::u16_to)?;
                }
            }
        }
        Ok(())
    }

    /// Reads an index written by [`PdqIndex::encode`], checking that its parts are consistent
    /// (so a search cannot index out of bounds).
    pub(crate) fn decode<R: std::io::Read>(d: &mut Dec<R>) -> Result<Self, SnapshotError> {
        let params_override = match d.u8()? {
            0 => None,
            1 => Some(None),
            2 => Some(Some(IndexParams {
                substrings: d.u32()?,
                prefix_bits: d.u32()?,
            })),
            _ => return Err(SnapshotError::Damaged("unknown index parameters".into())),
        };
        let delta_hashes = d.vec(le::words_from)?;
        let delta_ids: Vec<u32> = d.vec(u32::from_le_bytes)?;
        d.ensure(
            delta_hashes.len() == delta_ids.len(),
            "insert buffer lengths differ",
        )?;
        let hashes: Vec<[u64; 4]> = d.vec(le::words_from)?;
        let ids: Vec<u32> = d.vec(u32::from_le_bytes)?;
        let dead: Vec<u64> = d.vec(u64::from_le_bytes)?;
        let n = ids.len();
        d.ensure(
            hashes.len() == n && dead.len() == n.div_ceil(64),
            "index part lengths differ",
        )?;
        d.ensure(
            ids.windows(2).all(|w| w[0] < w[1]),
            "index ids out of order",
        )?;
        let tables_len = d.len(16)?;
        d.ensure(tables_len <= MAX_TABLES, "too many tables")?;
        let mut tables = Vec::with_capacity(tables_len);
        let mut covered = 0u32;
        for _ in 0..tables_len {
            let (start, len, prefix_bits, suffix_bits) = (d.u32()?, d.u32()?, d.u32()?, d.u32()?);
            d.ensure(
                start == covered
                    && (8..=32).contains(&len)
                    && prefix_bits <= 24
                    && prefix_bits + suffix_bits == len
                    && suffix_bits <= 16,
                "a table's bit ranges are invalid",
            )?;
            covered += len;
            let offsets: Vec<u32> = d.vec(u32::from_le_bytes)?;
            let slots: Vec<u32> = d.vec(u32::from_le_bytes)?;
            let suffixes = match d.u8()? {
                0 => Suffixes::None,
                1 => Suffixes::U8(d.bytes()?),
                2 => Suffixes::U16(d.vec(u16::from_le_bytes)?),
                _ => return Err(SnapshotError::Damaged("unknown suffix width".into())),
            };
            let suffix_len = match (&suffixes, suffix_bits) {
                (Suffixes::None, 0) => n,
                (Suffixes::U8(v), 1..=8) => v.len(),
                (Suffixes::U16(v), 9..=16) => v.len(),
                _ => usize::MAX,
            };
            d.ensure(
                offsets.len() == (1usize << prefix_bits) + 1
                    && offsets.first() == Some(&0)
                    && offsets.last().is_some_and(|&l| l as usize == n)
                    && offsets.windows(2).all(|w| w[0] <= w[1])
                    && slots.len() == n
                    && suffix_len == n
                    && slots.iter().all(|&s| (s as usize) < n),
                "a table is inconsistent",
            )?;
            tables.push(Table {
                start,
                len,
                prefix_bits,
                suffix_bits,
                offsets,
                suffixes,
                slots,
            });
        }
        d.ensure(
            tables.is_empty() || covered == 256,
            "the tables do not cover 256 bits",
        )?;
        let dead_count = dead.iter().map(|w| w.count_ones() as usize).sum();
        Ok(PdqIndex {
            main: MainPart {
                hashes,
                ids,
                dead,
                dead_count,
                tables,
            },
            delta_hashes,
            delta_ids,
            params_override,
        })
    }
}

/// Which algorithm [`PdqIndex::search_with`] uses; all give identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchPath {
    /// Tables when the cost model says they are cheaper, else linear scan
    /// (what [`PdqIndex::search`] does).
    Auto,
    /// Tables whenever they exist (linear scan only for a table-less index).
    Tables,
    /// Always a linear scan (a baseline for benchmarks).
    Linear,
}

/// Below this many hashes a linear scan (~1 ns per hash) beats building tables.
const MIN_TABLE_LEN: usize = 32_768;
/// Tombstones are only compacted once there are at least this many.
const MIN_COMPACT_DEAD: usize = 1024;
/// Most tables any parameter set can have (substrings are at least 8 bits).
const MAX_TABLES: usize = 32;

fn delta_limit(main_len: usize) -> usize {
    (main_len / 64).clamp(256, 32_768)
}

fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

/// Stable sort by id; of equal ids the last one in input order is kept.
fn sort_by_id_last_wins(hashes: Vec<[u64; 4]>, ids: Vec<u32>) -> (Vec<[u64; 4]>, Vec<u32>) {
    let mut order: Vec<u32> = (0..ids.len() as u32).collect();
    order.sort_by_key(|&i| ids[i as usize]);
    let mut out_hashes = Vec::with_capacity(order.len());
    let mut out_ids: Vec<u32> = Vec::with_capacity(order.len());
    for &i in &order {
        let (id, hash) = (ids[i as usize], hashes[i as usize]);
        if out_ids.last() == Some(&id) {
            // Stable sort: this later occurrence replaces the earlier one.
            if let Some(h) = out_hashes.last_mut() {
                *h = hash;
            }
        } else {
            out_ids.push(id);
            out_hashes.push(hash);
        }
    }
    (out_hashes, out_ids)
}

/// Extracts `len` (<= 32) bits starting at bit `start` of the 256-bit word array.
#[inline(always)]
fn extract(words: &[u64; 4], start: u32, len: u32) -> u32 {
    let w = (start / 64) as usize;
    let off = start % 64;
    let mut v = words[w] >> off;
    if off + len > 64 {
        v |= words[w + 1] << (64 - off);
    }
    (v & ((1u64 << len) - 1)) as u32
}

/// Number of bit strings of length `n` within distance `r` of a given one.
fn ball_size(n: u32, r: i64) -> f64 {
    if r < 0 {
        return 0.0;
    }
    let r = (r as u32).min(n);
    let mut total = 0.0;
    let mut c = 1.0;
    for k in 0..=r {
        total += c;
        c = c * f64::from(n - k) / f64::from(k + 1);
    }
    total
}

/// One substring table in CSR form.
#[derive(Clone, Debug, Default)]
struct Table {
    start: u32,
    len: u32,
    prefix_bits: u32,
    suffix_bits: u32,
    /// `offsets[p]..offsets[p + 1]` are the entries whose substring prefix is `p`.
    offsets: Vec<u32>,
    /// Low `suffix_bits` of each entry's substring.
    suffixes: Suffixes,
    /// Slot of each entry, ascending within a bucket.
    slots: Vec<u32>,
}

impl Table {
    fn build(hashes: &[[u64; 4]], start: u32, len: u32, prefix_bits: u32) -> Table {
        let suffix_bits = len - prefix_bits;
        let buckets = 1usize << prefix_bits;
        let mut offsets = vec![0u32; buckets + 1];
        for h in hashes {
            let key = extract(h, start, len);
            offsets[(key >> suffix_bits) as usize + 1] += 1;
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        let mut cursor = offsets[..buckets].to_vec();
        let mut slots = vec![0u32; hashes.len()];
        let mut suffixes = match suffix_bits {
            0 => Suffixes::None,
            1..=8 => Suffixes::U8(vec![0; hashes.len()]),
            _ => Suffixes::U16(vec![0; hashes.len()]),
        };
        let mask = (1u32 << suffix_bits) - 1;
        for (slot, h) in hashes.iter().enumerate() {
            let key = extract(h, start, len);
            let p = (key >> suffix_bits) as usize;
            let pos = cursor[p] as usize;
            cursor[p] += 1;
            slots[pos] = slot as u32;
            match &mut suffixes {
                Suffixes::None => {}
                Suffixes::U8(v) => v[pos] = (key & mask) as u8,
                Suffixes::U16(v) => v[pos] = (key & mask) as u16,
            }
        }
        Table {
            start,
            len,
            prefix_bits,
            suffix_bits,
            offsets,
            suffixes,
            slots,
        }
    }

    fn memory_bytes(&self) -> usize {
        let suffixes = match &self.suffixes {
            Suffixes::None => 0,
            Suffixes::U8(v) => vec_bytes(v),
            Suffixes::U16(v) => vec_bytes(v),
        };
        vec_bytes(&self.offsets) + suffixes + vec_bytes(&self.slots)
    }
}

/// Per-entry low bits of the substring, in the narrowest type that holds them.
#[derive(Clone, Debug, Default)]
enum Suffixes {
    /// The prefix is the whole substring.
    #[default]
    None,
    /// Up to 8 suffix bits.
    U8(Vec<u8>),
    /// 9 to 16 suffix bits.
    U16(Vec<u16>),
}

/// The bulk-built part: hashes ordered by id, tombstones and the tables.
#[derive(Clone, Debug, Default)]
struct MainPart {
    hashes: Vec<[u64; 4]>,
    ids: Vec<u32>,
    dead: Vec<u64>,
    dead_count: usize,
    tables: Vec<Table>,
}

/// Per-query state shared by the table probes.
struct Probe<'a> {
    part: &'a MainPart,
    q: &'a [u64; 4],
    t: u32,
    keys: [u32; MAX_TABLES],
    radii: [i64; MAX_TABLES],
}

impl MainPart {
    fn from_sorted(hashes: Vec<[u64; 4]>, ids: Vec<u32>, params: Option<IndexParams>) -> Self {
        let n = ids.len();
        let tables = match params {
            Some(p) if n > 0 => build_tables(&hashes, p),
            _ => Vec::new(),
        };
        MainPart {
            dead: vec![0; n.div_ceil(64)],
            hashes,
            ids,
            dead_count: 0,
            tables,
        }
    }

    fn memory_bytes(&self) -> usize {
        vec_bytes(&self.hashes)
            + vec_bytes(&self.ids)
            + vec_bytes(&self.dead)
            + vec_bytes(&self.tables)
            + self.tables.iter().map(Table::memory_bytes).sum::<usize>()
    }

    #[inline(always)]
    fn is_dead(&self, slot: usize) -> bool {
        self.dead[slot / 64] >> (slot % 64) & 1 == 1
    }

    /// Tombstones `id`; false if absent or already dead.
    fn kill(&mut self, id: u32) -> bool {
        let Ok(slot) = self.ids.binary_search(&id) else {
            return false;
        };
        if self.is_dead(slot) {
            return false;
        }
        self.dead[slot / 64] |= 1 << (slot % 64);
        self.dead_count += 1;
        true
    }

    /// Probe radius of each table for threshold `t` (negative = table not probed).
    #[inline(always)]
    fn radii(&self, t: u32) -> [i64; MAX_TABLES] {
        let m = self.tables.len() as u32;
        let mut radii = [-1i64; MAX_TABLES];
        if m == 0 {
            return radii;
        }
        let (r, a) = (i64::from(t / m), t % m);
        for (i, radius) in radii.iter_mut().enumerate().take(m as usize) {
            *radius = if (i as u32) <= a { r } else { r - 1 };
        }
        radii
    }

    /// Estimated cost of a table search in "sequential hash comparisons".
    fn table_cost(&self, radii: &[i64; MAX_TABLES]) -> f64 {
        let n = self.ids.len() as f64;
        let mut cost = 0.0;
        for (table, &r) in self.tables.iter().zip(radii) {
            let lookups = ball_size(table.prefix_bits, r);
            let entries = lookups * n / (1u64 << table.prefix_bits) as f64;
            let candidates = ball_size(table.len, r) * n / (1u64 << table.len) as f64;
            cost += lookups * 20.0 + entries + candidates * 20.0;
        }
        cost
    }

    #[inline(always)]
    fn search_into(&self, q: &[u64; 4], t: u32, strategy: SearchPath, out: &mut Vec<PdqMatch>) {
        if self.ids.is_empty() {
            return;
        }
        let radii = self.radii(t);
        let use_tables = !self.tables.is_empty()
            && match strategy {
                SearchPath::Tables => true,
                SearchPath::Linear => false,
                SearchPath::Auto => self.table_cost(&radii) < self.ids.len() as f64,
            };
        if !use_tables {
            self.linear_into(q, t, out);
            return;
        }
        let mut keys = [0u32; MAX_TABLES];
        for (key, table) in keys.iter_mut().zip(&self.tables) {
            *key = extract(q, table.start, table.len);
        }
        let probe = Probe {
            part: self,
            q,
            t,
            keys,
            radii,
        };
        // Bucket ranges of one table: gathered first (independent loads, plus a
        // prefetch of each bucket's entries), then scanned once they are in cache.
        let mut ranges: Vec<(u32, u32, u32)> = Vec::new();
        // (entry position, then slot; table) of entries whose substring is within the
        // table's radius.
        let mut cands: Vec<(u32, u32)> = Vec::new();
        for (i, table) in self.tables.iter().enumerate() {
            let r = radii[i];
            if r < 0 {
                continue;
            }
            let qkey = keys[i];
            let qprefix = qkey >> table.suffix_bits;
            let qsuffix = qkey & ((1u32 << table.suffix_bits) - 1);
            let max_flips = (r as u32).min(table.prefix_bits);
            ranges.clear();
            ranges.reserve(ball_size(table.prefix_bits, i64::from(max_flips)) as usize);
            let mut gather = |key: u32, budget: u32| {
                let lo = table.offsets[key as usize];
                let hi = table.offsets[key as usize + 1];
                match &table.suffixes {
                    Suffixes::None => prefetch(table.slots.as_ptr().wrapping_add(lo as usize)),
                    Suffixes::U8(v) => prefetch(v.as_ptr().wrapping_add(lo as usize)),
                    Suffixes::U16(v) => prefetch(v.as_ptr().wrapping_add(lo as usize)),
                }
                ranges.push((lo, hi, budget));
            };
            gather(qprefix, r as u32);
            for flips in 1..=max_flips {
                // Gosper's hack: every prefix_bits-bit mask with `flips` bits set.
                let end = 1u64 << table.prefix_bits;
                let mut mask = (1u64 << flips) - 1;
                while mask < end {
                    gather(qprefix ^ mask as u32, r as u32 - flips);
                    let low = mask & mask.wrapping_neg();
                    let ripple = mask + low;
                    mask = ripple | (((mask ^ ripple) >> 2) >> low.trailing_zeros());
                }
            }
            for &(lo, hi, budget) in &ranges {
                probe.scan_range(
                    i,
                    table,
                    lo as usize,
                    hi as usize,
                    qsuffix,
                    budget,
                    &mut cands,
                );
            }
        }
        // Candidates were queued as entry positions with their slot prefetched; now
        // turn them into slots and prefetch the full hashes, then verify.
        for (pos, i) in cands.iter_mut() {
            let slot = self.tables[*i as usize].slots[*pos as usize];
            prefetch(self.hashes.as_ptr().wrapping_add(slot as usize));
            *pos = slot;
        }
        for &(slot, i) in &cands {
            probe.verify(i as usize, slot as usize, out);
        }
    }

    #[inline(always)]
    fn linear_into(&self, q: &[u64; 4], t: u32, out: &mut Vec<PdqMatch>) {
        for (slot, (hash, &id)) in self.hashes.iter().zip(&self.ids).enumerate() {
            let distance = distance_words(q, hash);
            if distance <= t && !self.is_dead(slot) {
                out.push(PdqMatch { id, distance });
            }
        }
    }
}

impl Probe<'_> {
    /// Scans entries `lo..hi` (one bucket) of table `i`, queueing those whose suffix
    /// is within `budget` bits of the query's as candidates.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn scan_range(
        &self,
        i: usize,
        table: &Table,
        lo: usize,
        hi: usize,
        qsuffix: u32,
        budget: u32,
        cands: &mut Vec<(u32, u32)>,
    ) {
        match &table.suffixes {
            Suffixes::None => {
                for pos in lo..hi {
                    self.candidate(i, table, pos, cands);
                }
            }
            Suffixes::U8(v) => self.scan_suffixes(i, table, lo, &v[lo..hi], qsuffix, budget, cands),
            Suffixes::U16(v) => {
                self.scan_suffixes(i, table, lo, &v[lo..hi], qsuffix, budget, cands)
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn scan_suffixes<S: Copy + Into<u32>>(
        &self,
        i: usize,
        table: &Table,
        lo: usize,
        suffixes: &[S],
        qsuffix: u32,
        budget: u32,
        cands: &mut Vec<(u32, u32)>,
    ) {
        for (pos, &s) in (lo..).zip(suffixes) {
            if (s.into() ^ qsuffix).count_ones() <= budget {
                self.candidate(i, table, pos, cands);
            }
        }
    }

    /// Queues entry `pos` of table `i` for verification and prefetches its slot.
    #[inline(always)]
    fn candidate(&self, i: usize, table: &Table, pos: usize, cands: &mut Vec<(u32, u32)>) {
        prefetch(table.slots.as_ptr().wrapping_add(pos));
        cands.push((pos as u32, i as u32));
    }

    /// Full check of a candidate found by table `i`; reports it unless an earlier
    /// table also sees it (then that table reported it already).
    #[inline(always)]
    fn verify(&self, i: usize, slot: usize, out: &mut Vec<PdqMatch>) {
        let part = self.part;
        let hash = &part.hashes[slot];
        let distance = distance_words(self.q, hash);
        if distance > self.t || part.is_dead(slot) {
            return;
        }
        for (j, table) in part.tables[..i].iter().enumerate() {
            let r = self.radii[j];
            if r >= 0
                && i64::from((extract(hash, table.start, table.len) ^ self.keys[j]).count_ones())
                    <= r
            {
                return;
            }
        }
        out.push(PdqMatch {
            id: part.ids[slot],
            distance,
        });
    }
}

/// Hints the CPU to start loading the cache line at `ptr` (no-op elsewhere).
#[inline(always)]
fn prefetch<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetch is only a hint; it never faults, even for invalid addresses.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

fn build_tables(hashes: &[[u64; 4]], params: IndexParams) -> Vec<Table> {
    let m = params.substrings.clamp(8, MAX_TABLES as u32);
    let base = 256 / m;
    let extra = 256 % m;
    let mut specs = Vec::with_capacity(m as usize);
    let mut start = 0;
    for i in 0..m {
        let len = base + u32::from(i < extra);
        let prefix = params.prefix_bits.clamp(len.saturating_sub(16), len);
        specs.push((start, len, prefix));
        start += len;
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(specs.len());
    if workers <= 1 || hashes.len() < 100_000 {
        return specs
            .iter()
            .map(|&(s, l, p)| Table::build(hashes, s, l, p))
            .collect();
    }
    let mut built: Vec<Option<Table>> = vec![None; specs.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let specs = &specs;
                scope.spawn(move || {
                    specs
                        .iter()
                        .enumerate()
                        .skip(w)
                        .step_by(workers)
                        .map(|(i, &(s, l, p))| (i, Table::build(hashes, s, l, p)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(tables) => {
                    for (i, table) in tables {
                        built[i] = Some(table);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    built.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::pdq::brute_force;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const THRESHOLDS: &[u32] = &[
        0,
        1,
        2,
        15,
        16,
        31,
        32,
        33,
        64,
        128,
        255,
        256,
        257,
        u32::MAX,
    ];

    fn random_hash(rng: &mut StdRng) -> PdqHash {
        PdqHash(rng.r#gen())
    }

    /// `base` with exactly `d` distinct bits flipped.
    fn at_distance(rng: &mut StdRng, base: &PdqHash, d: u32) -> PdqHash {
        let mut bits: Vec<usize> = (0..256).collect();
        for i in 0..d as usize {
            let j = rng.gen_range(i..256);
            bits.swap(i, j);
        }
        let mut out = base.0;
        for &b in &bits[..d as usize] {
            out[b / 8] ^= 1 << (b % 8);
        }
        PdqHash(out)
    }

    /// Random hashes plus, around each query, one neighbour at every distance 0..=40
    /// and a few at 64 and 128.
    fn planted(rng: &mut StdRng, n_random: usize, queries: &[PdqHash]) -> Vec<(PdqHash, u32)> {
        let mut items: Vec<(PdqHash, u32)> = Vec::new();
        let mut id = 0u32;
        for _ in 0..n_random {
            items.push((random_hash(rng), id));
            id += 3; // sparse, non-contiguous ids
        }
        for q in queries {
            for d in (0..=40).chain([64, 128, 200, 256]) {
                items.push((at_distance(rng, q, d), id));
                id += 3;
            }
        }
        items
    }

    fn params_grid() -> Vec<Option<IndexParams>> {
        vec![
            None,
            Some(IndexParams {
                substrings: 8,
                prefix_bits: 8,
            }),
            Some(IndexParams {
                substrings: 11,
                prefix_bits: 10,
            }),
            Some(IndexParams {
                substrings: 16,
                prefix_bits: 16,
            }),
            Some(IndexParams {
                substrings: 32,
                prefix_bits: 4,
            }),
        ]
    }

    fn check_all_strategies(index: &PdqIndex, items: &[(PdqHash, u32)], q: &PdqHash, t: u32) {
        let expected = brute_force(items, q, t);
        for strategy in [SearchPath::Auto, SearchPath::Tables, SearchPath::Linear] {
            assert_eq!(
                index.search_with(q, t, strategy),
                expected,
                "threshold {t}, strategy {strategy:?}, params {:?}",
                index.params()
            );
        }
    }

    #[test]
    fn planted_and_random_match_brute_force_at_all_listed_thresholds() {
        let mut rng = StdRng::seed_from_u64(7);
        let queries: Vec<PdqHash> = (0..6).map(|_| random_hash(&mut rng)).collect();
        let items = planted(&mut rng, 3000, &queries);
        let random_queries: Vec<PdqHash> = (0..4).map(|_| random_hash(&mut rng)).collect();
        for params in params_grid() {
            let index = PdqIndex::build_with_params(items.iter().copied(), params);
            assert_eq!(index.len(), items.len());
            for q in queries.iter().chain(&random_queries) {
                for &t in THRESHOLDS {
                    check_all_strategies(&index, &items, q, t);
                }
            }
        }
    }

    #[test]
    fn every_threshold_0_to_256_matches_brute_force() {
        let mut rng = StdRng::seed_from_u64(8);
        let queries: Vec<PdqHash> = (0..2).map(|_| random_hash(&mut rng)).collect();
        let items = planted(&mut rng, 500, &queries);
        let index = PdqIndex::build_with_params(
            items.iter().copied(),
            Some(IndexParams {
                substrings: 8,
                prefix_bits: 6,
            }),
        );
        for q in &queries {
            for t in 0..=256 {
                check_all_strategies(&index, &items, q, t);
            }
        }
    }

    #[test]
    fn edges_distance_exactly_t_matches_and_t_plus_one_does_not() {
        let mut rng = StdRng::seed_from_u64(9);
        let filler: Vec<(PdqHash, u32)> = (0..2000).map(|i| (random_hash(&mut rng), i)).collect();
        let q = random_hash(&mut rng);
        // (threshold, neighbour distance, expected to match)
        let table: &[(u32, u32, bool)] = &[
            (0, 0, true),
            (0, 1, false),
            (1, 1, true),
            (1, 2, false),
            (16, 16, true),
            (16, 17, false),
            (31, 31, true),
            (31, 32, false),
            (32, 32, true),
            (32, 33, false),
            (64, 64, true),
            (64, 65, false),
            (255, 256, false),
            (256, 256, true),
        ];
        for params in params_grid() {
            for &(t, d, expect) in table {
                let neighbour = at_distance(&mut rng, &q, d);
                let mut items = filler.clone();
                items.push((neighbour, 99_999));
                let index = PdqIndex::build_with_params(items.iter().copied(), params);
                for strategy in [SearchPath::Auto, SearchPath::Tables, SearchPath::Linear] {
                    let hits = index.search_with(&q, t, strategy);
                    let found = hits.iter().any(|m| m.id == 99_999 && m.distance == d);
                    assert_eq!(found, expect, "t={t} d={d} {strategy:?} {params:?}");
                }
                check_all_strategies(&index, &items, &q, t);
            }
        }
    }

    #[test]
    fn auto_params_build_tables_on_a_large_set() {
        let mut rng = StdRng::seed_from_u64(10);
        let queries: Vec<PdqHash> = (0..5).map(|_| random_hash(&mut rng)).collect();
        let items = planted(&mut rng, 40_000, &queries);
        let index = PdqIndex::build(items.iter().copied());
        assert!(index.params().is_some());
        assert_eq!(index.main.tables.len(), 11);
        for q in &queries {
            for &t in &[0, 1, 16, 31, 32, 64, 256] {
                assert_eq!(index.search(q, t), brute_force(&items, q, t), "t={t}");
            }
        }
        // Honest memory: at least hashes + ids + 11 tables of (u32 slot + u8 suffix).
        assert!(index.memory_bytes() >= items.len() * (32 + 4 + 11 * 5));
    }

    #[test]
    fn duplicate_ids_in_build_keep_the_last_and_insert_replaces() {
        let mut rng = StdRng::seed_from_u64(11);
        let a = random_hash(&mut rng);
        let b = random_hash(&mut rng);
        let mut index = PdqIndex::build([(a, 1), (b, 1), (a, 2)]);
        assert_eq!(index.len(), 2);
        assert_eq!(index.search(&b, 0), vec![PdqMatch { id: 1, distance: 0 }]);
        index.insert(b, 2);
        assert_eq!(index.len(), 2);
        assert_eq!(index.search(&a, 0), vec![]);
        assert!(index.remove(2));
        assert!(!index.remove(2));
        assert_eq!(index.search(&b, 0), vec![PdqMatch { id: 1, distance: 0 }]);
    }

    #[test]
    fn insert_remove_rebuild_cycle_stays_exact() {
        let mut rng = StdRng::seed_from_u64(12);
        let mut live: Vec<(PdqHash, u32)> =
            (0..40_000).map(|i| (random_hash(&mut rng), i)).collect();
        let mut index = PdqIndex::build(live.iter().copied());
        let q = live[17].0;
        // Enough inserts to cross the buffer limit (forces a rebuild) plus neighbours of q.
        for i in 0..2000u32 {
            let hash = if i % 10 == 0 {
                at_distance(&mut rng, &q, i % 40)
            } else {
                random_hash(&mut rng)
            };
            index.insert(hash, 1_000_000 + i);
            live.push((hash, 1_000_000 + i));
        }
        assert!(
            index.delta_ids.len() < 2000,
            "a rebuild should have happened"
        );
        // Remove enough to trigger tombstone compaction.
        for id in (0..40_000).step_by(3) {
            assert!(index.remove(id));
        }
        live.retain(|&(_, id)| id >= 40_000 || id % 3 != 0);
        assert_eq!(index.len(), live.len());
        assert!(index.main.dead_count * 4 <= index.main.ids.len());
        for &t in &[0, 1, 16, 31, 32, 64, 256] {
            assert_eq!(index.search(&q, t), brute_force(&live, &q, t), "t={t}");
        }
        index.compact();
        assert_eq!(index.main.dead_count, 0);
        assert!(index.delta_ids.is_empty());
        assert_eq!(index.search(&q, 40), brute_force(&live, &q, 40));
    }

    #[test]
    fn empty_and_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PdqIndex>();
        let mut index = PdqIndex::new();
        assert!(index.is_empty());
        assert_eq!(index.search(&PdqHash([0; 32]), 256), vec![]);
        assert!(!index.remove(5));
        index.insert(PdqHash([0; 32]), 5);
        assert_eq!(index.len(), 1);
        assert!(index.remove(5));
        assert!(index.is_empty());
        index.compact();
        assert!(index.is_empty());
    }

    fn hash_strategy() -> impl proptest::strategy::Strategy<Value = PdqHash> {
        any::<[u8; 32]>().prop_map(PdqHash)
    }

    /// A hash near `base`: a few bytes xored with random masks (small distances).
    fn near(base: PdqHash, flips: &[(u8, u8)]) -> PdqHash {
        let mut out = base.0;
        for &(pos, mask) in flips {
            out[pos as usize % 32] ^= mask;
        }
        PdqHash(out)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, Vec<(u8, u8)>, u16),
        Remove(u16),
        Search(u8, Vec<(u8, u8)>, u32),
        Compact,
    }

    fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), prop::collection::vec(any::<(u8, u8)>(), 0..6), 0u16..400)
                .prop_map(|(b, f, id)| Op::Insert(b, f, id)),
            2 => (0u16..400).prop_map(Op::Remove),
            3 => (any::<u8>(), prop::collection::vec(any::<(u8, u8)>(), 0..6), 0u32..80)
                .prop_map(|(b, f, t)| Op::Search(b, f, t)),
            1 => Just(Op::Compact),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_search_equals_brute_force(
            bases in prop::collection::vec(hash_strategy(), 1..8),
            variants in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<(u8, u8)>(), 0..8)), 0..300),
            query_base in any::<u8>(),
            query_flips in prop::collection::vec(any::<(u8, u8)>(), 0..8),
            threshold in prop_oneof![0u32..=40, 0u32..=300],
            substrings in 8u32..=20,
            prefix_bits in 1u32..=12,
        ) {
            let items: Vec<(PdqHash, u32)> = variants
                .iter()
                .enumerate()
                .map(|(i, (b, f))| (near(bases[*b as usize % bases.len()], f), i as u32 * 7))
                .collect();
            let q = near(bases[query_base as usize % bases.len()], &query_flips);
            let params = Some(IndexParams { substrings, prefix_bits });
            let index = PdqIndex::build_with_params(items.iter().copied(), params);
            let expected = brute_force(&items, &q, threshold);
            prop_assert_eq!(index.search_with(&q, threshold, SearchPath::Tables), expected.clone());
            prop_assert_eq!(index.search(&q, threshold), expected);
        }

        #[test]
        fn prop_insert_remove_interleaved_with_search(
            bases in prop::collection::vec(hash_strategy(), 1..6),
            initial in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<(u8, u8)>(), 0..6)), 0..200),
            ops in prop::collection::vec(op_strategy(), 1..120),
        ) {
            let base = |b: u8| bases[b as usize % bases.len()];
            let mut live: Vec<(PdqHash, u32)> = initial
                .iter()
                .enumerate()
                .map(|(i, (b, f))| (near(base(*b), f), i as u32 * 2))
                .collect();
            let params = Some(IndexParams { substrings: 8, prefix_bits: 5 });
            let mut index = PdqIndex::build_with_params(live.iter().copied(), params);
            for op in ops {
                match op {
                    Op::Insert(b, f, id) => {
                        let hash = near(base(b), &f);
                        index.insert(hash, u32::from(id));
                        live.retain(|&(_, l)| l != u32::from(id));
                        live.push((hash, u32::from(id)));
                    }
                    Op::Remove(id) => {
                        let was = live.iter().any(|&(_, l)| l == u32::from(id));
                        live.retain(|&(_, l)| l != u32::from(id));
                        prop_assert_eq!(index.remove(u32::from(id)), was);
                    }
                    Op::Search(b, f, t) => {
                        let q = near(base(b), &f);
                        prop_assert_eq!(index.search_with(&q, t, SearchPath::Tables), brute_force(&live, &q, t));
                    }
                    Op::Compact => index.compact(),
                }
                prop_assert_eq!(index.len(), live.len());
            }
        }
    }

    #[test]
    fn deferred_inserts_and_off_lock_compaction_match_brute_force() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut items: Vec<(PdqHash, u32)> =
            (0..40_000u32).map(|i| (PdqHash(rng.r#gen()), i)).collect();
        let mut index = PdqIndex::build(items.iter().copied());
        let mut next = items.len() as u32;
        while !index.wants_compaction() {
            let hash = PdqHash(rng.r#gen());
            index.insert_deferred(hash, next);
            items.push((hash, next));
            next += 1;
        }
        assert!(index.remove_deferred(3));
        items.retain(|(_, id)| *id != 3);
        let queries: Vec<PdqHash> = (0..50)
            .map(|i| {
                let mut q = items[i * 97].0;
                q.0[0] ^= 0b1011;
                q
            })
            .collect();
        let compacted = index.compacted();
        assert!(!compacted.wants_compaction());
        assert_eq!(compacted.len(), index.len());
        for q in &queries {
            for t in [0, 3, 31] {
                let want = brute_force(&items, q, t);
                assert_eq!(index.search(q, t), want, "before the swap");
                assert_eq!(compacted.search(q, t), want, "after the swap");
            }
        }
    }
}
