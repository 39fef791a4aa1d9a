//! The matching engine: exact lookup for cryptographic and opaque hashes and PDQ
//! near-duplicate search, over numbered slots whose provenance the caller keeps.

use super::segments::MergePlan;
use super::snapshot::{Dec, Enc, SnapshotError};
use super::vpdq::{self, VpdqHash, VpdqRule, VpdqScore};
use super::{PdqHash, PdqIndex, SegmentedPdq};
use crate::statement::HashType;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use thiserror::Error;

/// The threshold Meta's Hasher-Matcher-Actioner uses for PDQ.
pub const DEFAULT_PDQ_THRESHOLD: u32 = 31;
/// The largest PDQ threshold a request may ask for.
pub const MAX_PDQ_THRESHOLD: u32 = 64;
/// Below this quality a PDQ hash carries too little signal to match (as in HMA).
pub const DEFAULT_MIN_QUALITY: u8 = 50;

/// How to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchOptions {
    /// PDQ: the largest Hamming distance that matches (0..=64).
    pub pdq_threshold: u32,
    /// PDQ: indexed hashes and queries below this quality do not match.
    pub min_quality: u8,
    /// vPDQ: how much of each video must match (frames obey the two fields above).
    pub vpdq: VpdqRule,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            pdq_threshold: DEFAULT_PDQ_THRESHOLD,
            min_quality: DEFAULT_MIN_QUALITY,
            vpdq: VpdqRule::default(),
        }
    }
}

/// A query hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The algorithm.
    pub hash_type: HashType,
    /// Raw bytes, of the type's exact length (vPDQ: valid frames).
    pub value: Vec<u8>,
    /// PDQ quality of the query, if known.
    pub quality: Option<u8>,
}

/// Most queries in one request.
pub const MAX_QUERIES: usize = 10_000;

impl Query {
    /// Validates a query: the value has the type's length (vPDQ: is a valid frame list);
    /// quality (PDQ only) is 0..=100.
    pub fn new(hash_type: HashType, value: Vec<u8>, quality: Option<u32>) -> Result<Query, String> {
        hash_type.check_value(&value)?;
        let quality = match (hash_type, quality) {
            (_, None) => None,
            (HashType::Pdq, Some(q)) if q <= 100 => Some(q as u8),
            (HashType::Pdq, Some(q)) => return Err(format!("quality must be 0..=100, got {q}")),
            (_, Some(_)) => {
                return Err(format!(
                    "only pdq queries carry a quality, this is {hash_type}"
                ));
            }
        };
        Ok(Query {
            hash_type,
            value,
            quality,
        })
    }
}

impl MatchOptions {
    /// Validates request options (`None` = default).
    pub fn new(pdq_threshold: Option<u32>, min_quality: Option<u32>) -> Result<Self, String> {
        let pdq_threshold = pdq_threshold.unwrap_or(DEFAULT_PDQ_THRESHOLD);
        if pdq_threshold > MAX_PDQ_THRESHOLD {
            return Err(format!(
                "pdq_threshold must be 0..={MAX_PDQ_THRESHOLD} bits, got {pdq_threshold}"
            ));
        }
        let min_quality = min_quality.unwrap_or(u32::from(DEFAULT_MIN_QUALITY));
        if min_quality > 100 {
            return Err(format!("min_quality must be 0..=100, got {min_quality}"));
        }
        Ok(MatchOptions {
            pdq_threshold,
            min_quality: min_quality as u8,
            vpdq: VpdqRule::default(),
        })
    }

    /// The same options with this vPDQ rule.
    pub fn with_vpdq(self, vpdq: VpdqRule) -> Self {
        MatchOptions { vpdq, ..self }
    }
}

/// One match: the slot that matched and how far it is (0 for exact and vPDQ matches).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    /// Distance in bits (PDQ) or 0.
    pub distance: u32,
    /// The matched slot.
    pub slot: u32,
    /// vPDQ: how much of each video matched.
    pub vpdq: Option<VpdqScore>,
}

/// Exact and PDQ indexes over slots `0..len`.
#[derive(Clone, Debug)]
pub struct Matcher {
    pdq: SegmentedPdq,
    exact: ExactMaps,
    slots: Vec<SlotInfo>,
    staged: Vec<(PdqHash, u32)>,
    videos: Videos,
    /// [`MAX_HASHES`], lower in tests.
    max_hashes: usize,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher {
            pdq: SegmentedPdq::default(),
            exact: ExactMaps::default(),
            slots: Vec::new(),
            staged: Vec::new(),
            videos: Videos::default(),
            max_hashes: MAX_HASHES,
        }
    }
}

/// The vPDQ slots: each video's frames, and an index of every video's unique frame hashes
/// that finds the candidates a query can match (a match needs one matched frame pair, so the
/// candidates are exactly the videos with a usable frame near a usable query frame).
#[derive(Clone, Debug, Default)]
struct Videos {
    /// Slot → the video and its frame ids.
    by_slot: HashMap<u32, Video>,
    /// Frame id → (slot, best quality of that hash in the video).
    frame_owner: Vec<(u32, u8)>,
    frames: SegmentedPdq,
    staged: Vec<(PdqHash, u32)>,
}

/// A video of [`Videos`]: its frames, and its frame ids `first..first + unique` (one per unique
/// hash, consecutive).
#[derive(Clone, Debug)]
struct Video {
    hash: VpdqHash,
    first: u32,
    unique: u32,
}

impl Videos {
    /// The unique hashes of a video, each with its best quality (first occurrence order).
    fn unique(video: &VpdqHash) -> Vec<(PdqHash, u8)> {
        let mut best: HashMap<PdqHash, usize> = HashMap::new();
        let mut out: Vec<(PdqHash, u8)> = Vec::new();
        for f in video.frames() {
            match best.get(&f.hash) {
                Some(&i) => out[i].1 = out[i].1.max(f.quality),
                None => {
                    best.insert(f.hash, out.len());
                    out.push((f.hash, f.quality));
                }
            }
        }
        out
    }

    fn stage(&mut self, slot: u32, video: VpdqHash) {
        let first = self.frame_owner.len() as u32;
        for (hash, quality) in Self::unique(&video) {
            let id = self.frame_owner.len() as u32;
            self.frame_owner.push((slot, quality));
            self.staged.push((hash, id));
        }
        let unique = self.frame_owner.len() as u32 - first;
        self.by_slot.insert(
            slot,
            Video {
                hash: video,
                first,
                unique,
            },
        );
    }

    fn commit(&mut self) {
        if !self.staged.is_empty() {
            self.frames.append(std::mem::take(&mut self.staged));
            self.frames.merge_all_pending();
        }
    }

    fn remove(&mut self, slot: u32) {
        if let Some(video) = self.by_slot.get(&slot) {
            for id in video.first..video.first + video.unique {
                self.frames.remove(id);
            }
        }
    }

    /// The live videos `query` matches under `options`, best first: exactly what
    /// [`vpdq::compare`] of the query with each live video decides, but counted from the frame
    /// index's answers instead of frame against frame. The work is one index search per usable
    /// query frame plus one step per (query frame, indexed frame) pair within the distance,
    /// whatever the lengths of the videos: a query of 16,384 frames against videos as long
    /// costs no 16,384² comparisons per candidate.
    fn lookup(&self, query: &[u8], options: &MatchOptions, slots: &[SlotInfo]) -> Vec<Hit> {
        let Ok(query) = VpdqHash::from_bytes(query) else {
            return Vec::new();
        };
        let usable = query.usable(options.min_quality);
        // Per candidate video: its usable query frames with a near frame in it, and its
        // usable frames near a usable query frame.
        let mut near: HashMap<u32, (HashSet<u32>, HashSet<u32>)> = HashMap::new();
        for (q, hash) in (0u32..).zip(&usable) {
            for m in self.frames.search(hash, options.pdq_threshold) {
                let Some(&(slot, quality)) = self.frame_owner.get(m.id as usize) else {
                    continue;
                };
                if quality < options.min_quality
                    || !slots.get(slot as usize).is_some_and(|s| s.live)
                {
                    continue;
                }
                let (queried, compared) = near.entry(slot).or_default();
                queried.insert(q);
                compared.insert(m.id);
            }
        }
        let mut hits: Vec<Hit> = near
            .into_iter()
            .filter_map(|(slot, (queried, compared))| {
                let video = self.by_slot.get(&slot)?;
                let ids = video.first as usize..(video.first + video.unique) as usize;
                let compared_frames = self
                    .frame_owner
                    .get(ids)?
                    .iter()
                    .filter(|(_, quality)| *quality >= options.min_quality)
                    .count();
                let outcome = vpdq::Comparison {
                    query_matched: queried.len(),
                    query_frames: usable.len(),
                    compared_matched: compared.len(),
                    compared_frames,
                };
                outcome.matches(&options.vpdq).then(|| Hit {
                    distance: 0,
                    slot,
                    vpdq: Some(outcome.score()),
                })
            })
            .collect();
        hits.sort_by(|a, b| b.vpdq.cmp(&a.vpdq).then(a.slot.cmp(&b.slot)));
        hits
    }
}

/// No next slot.
const NONE: u32 = u32::MAX;

/// Most hashes one matcher indexes: slots are numbered with `u32`, and `u32::MAX` means "no
/// slot". Past it a matcher refuses more ([`MatcherFull`]) instead of reusing numbers.
pub const MAX_HASHES: usize = NONE as usize;

/// The matcher already holds its maximum number of hashes.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "the matching index holds its maximum of {max} hashes (slot numbers are 32-bit); {adding} more cannot be indexed"
)]
pub struct MatcherFull {
    /// The maximum.
    pub max: usize,
    /// How many hashes were to be added.
    pub adding: usize,
}

#[derive(Clone, Copy, Debug)]
struct SlotInfo {
    hash_type: HashType,
    quality: u8,
    live: bool,
    /// Exact types: the next slot holding the same value (a chain from the map's head).
    next: u32,
}

/// Exact-match heads, one map per hash type with fixed-size keys (no allocation per hash);
/// each value is the newest slot holding that hash, older ones follow `SlotInfo::next`.
#[derive(Clone, Debug, Default)]
struct ExactMaps {
    md5: HashMap<[u8; 16], u32>,
    sha1: HashMap<[u8; 20], u32>,
    sha256: HashMap<[u8; 32], u32>,
    photodna: HashMap<Box<[u8]>, u32>,
    url_md5: HashMap<[u8; 16], u32>,
}

impl ExactMaps {
    /// Makes `slot` the head for `value`; returns the previous head (or `NONE`).
    fn push(&mut self, hash_type: HashType, value: &[u8], slot: u32) -> u32 {
        fn put<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: K, slot: u32) -> u32 {
            map.insert(key, slot).unwrap_or(NONE)
        }
        match hash_type {
            HashType::Md5 => value
                .try_into()
                .map_or(NONE, |k| put(&mut self.md5, k, slot)),
            HashType::Sha1 => value
                .try_into()
                .map_or(NONE, |k| put(&mut self.sha1, k, slot)),
            HashType::Sha256 => value
                .try_into()
                .map_or(NONE, |k| put(&mut self.sha256, k, slot)),
            HashType::PhotoDna => put(&mut self.photodna, value.into(), slot),
            HashType::UrlMd5 => value
                .try_into()
                .map_or(NONE, |k| put(&mut self.url_md5, k, slot)),
            HashType::Pdq | HashType::Vpdq => NONE,
        }
    }

    fn head(&self, hash_type: HashType, value: &[u8]) -> u32 {
        let found = match hash_type {
            HashType::Md5 => <[u8; 16]>::try_from(value)
                .ok()
                .and_then(|k| self.md5.get(&k)),
            HashType::Sha1 => <[u8; 20]>::try_from(value)
                .ok()
                .and_then(|k| self.sha1.get(&k)),
            HashType::Sha256 => <[u8; 32]>::try_from(value)
                .ok()
                .and_then(|k| self.sha256.get(&k)),
            HashType::PhotoDna => self.photodna.get(value),
            HashType::UrlMd5 => <[u8; 16]>::try_from(value)
                .ok()
                .and_then(|k| self.url_md5.get(&k)),
            HashType::Pdq | HashType::Vpdq => None,
        };
        found.copied().unwrap_or(NONE)
    }
}

impl Matcher {
    /// An empty matcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes a hash and returns its slot. `value` must have the type's length (the caller
    /// holds validated entries).
    pub fn add(
        &mut self,
        hash_type: HashType,
        value: &[u8],
        quality: Option<u8>,
    ) -> Result<u32, MatcherFull> {
        let slot = self.stage(hash_type, value, quality)?;
        self.commit();
        Ok(slot)
    }

    /// Whether `n` more hashes fit ([`MAX_HASHES`] in all).
    pub fn room_for(&self, n: usize) -> Result<(), MatcherFull> {
        if n > self.max_hashes.saturating_sub(self.slots.len()) {
            return Err(MatcherFull {
                max: self.max_hashes,
                adding: n,
            });
        }
        Ok(())
    }

    /// Indexes a hash like [`Matcher::add`], but a PDQ hash becomes searchable only at the
    /// next [`Matcher::commit`]. Staging everything and committing once bulk-builds the PDQ
    /// index, which is far faster than inserting one by one (start-up, offline indexes).
    pub fn stage(
        &mut self,
        hash_type: HashType,
        value: &[u8],
        quality: Option<u8>,
    ) -> Result<u32, MatcherFull> {
        self.room_for(1)?;
        let slot = self.slots.len() as u32;
        let next = match pdq_of(hash_type, value) {
            Some(hash) => {
                self.staged.push((hash, slot));
                NONE
            }
            // A value that is not a valid frame list (callers hold validated entries) is a
            // slot that never matches.
            None if hash_type == HashType::Vpdq => {
                if let Ok(video) = VpdqHash::from_bytes(value) {
                    self.videos.stage(slot, video);
                }
                NONE
            }
            None => self.exact.push(hash_type, value, slot),
        };
        self.slots.push(SlotInfo {
            hash_type,
            quality: quality.unwrap_or(100),
            live: true,
            next,
        });
        Ok(slot)
    }

    /// Makes every staged PDQ hash searchable and runs the PDQ index's pending merges here.
    pub fn commit(&mut self) {
        self.commit_deferred();
        self.pdq.merge_all_pending();
    }

    /// Makes every staged PDQ hash searchable (a new PDQ segment) without merging: the caller
    /// takes [`Matcher::pdq_merge_plan`], builds it while searches go on, and installs it with
    /// [`Matcher::install_pdq_merge`].
    pub fn commit_deferred(&mut self) {
        if !self.staged.is_empty() {
            self.pdq.append(std::mem::take(&mut self.staged));
        }
        // vPDQ frames are few next to PDQ hashes: their index merges at once.
        self.videos.commit();
    }

    /// The next PDQ segment merge to run, if any.
    pub fn pdq_merge_plan(&self) -> Option<MergePlan> {
        self.pdq.merge_plan()
    }

    /// The PDQ merge to run once the log is quiet (see [`SegmentedPdq::idle_merge_plan`]).
    pub fn pdq_idle_merge_plan(&self) -> Option<MergePlan> {
        self.pdq.idle_merge_plan()
    }

    /// Installs a merge built from [`Matcher::pdq_merge_plan`]; false if the segments changed
    /// meanwhile (then nothing is changed).
    pub fn install_pdq_merge(&mut self, plan: &MergePlan, merged: PdqIndex) -> bool {
        self.pdq.install(plan, merged)
    }

    /// The PDQ index's segment count and heap bytes.
    pub fn pdq_shape(&self) -> (usize, usize) {
        (self.pdq.segment_count(), self.pdq.memory_bytes())
    }

    /// Removes a slot from matching (retractions, expiry); `false` if it was not live.
    pub fn remove(&mut self, slot: u32) -> bool {
        let Some(info) = self.slots.get_mut(slot as usize) else {
            return false;
        };
        if !info.live {
            return false;
        }
        info.live = false;
        // Exact slots stay in their chain and are skipped by lookups.
        match info.hash_type {
            HashType::Pdq => {
                self.pdq.remove(slot);
            }
            HashType::Vpdq => self.videos.remove(slot),
            _ => {}
        }
        true
    }

    /// Every live slot matching `query`, nearest first.
    pub fn lookup(&self, query: &Query, options: &MatchOptions) -> Vec<Hit> {
        match pdq_of(query.hash_type, &query.value) {
            Some(hash) => {
                if query.quality.is_some_and(|q| q < options.min_quality) {
                    return Vec::new();
                }
                self.pdq
                    .search(&hash, options.pdq_threshold)
                    .into_iter()
                    .filter(|m| {
                        self.slots
                            .get(m.id as usize)
                            .is_some_and(|s| s.quality >= options.min_quality)
                    })
                    .map(|m| Hit {
                        distance: m.distance,
                        slot: m.id,
                        vpdq: None,
                    })
                    .collect()
            }
            None if query.hash_type == HashType::Vpdq => {
                self.videos.lookup(&query.value, options, &self.slots)
            }
            None => {
                let mut hits = Vec::new();
                let mut slot = self.exact.head(query.hash_type, &query.value);
                while let Some(info) = self.slots.get(slot as usize) {
                    if info.live {
                        hits.push(Hit {
                            distance: 0,
                            slot,
                            vpdq: None,
                        });
                    }
                    slot = info.next;
                }
                hits.reverse(); // oldest first
                hits
            }
        }
    }

    /// The value indexed at `slot` (for PDQ, the matched hash; for exact types, the query).
    pub fn pdq_hash(&self, slot: u32) -> Option<PdqHash> {
        self.pdq.hash(slot)
    }

    /// The video indexed at a vPDQ slot.
    pub fn vpdq_hash(&self, slot: u32) -> Option<&VpdqHash> {
        self.videos.by_slot.get(&slot).map(|video| &video.hash)
    }

    /// The quality recorded for a slot.
    pub fn quality(&self, slot: u32) -> Option<u8> {
        self.slots.get(slot as usize).map(|s| s.quality)
    }
}

impl Matcher {
    /// Writes the whole matcher (see [`super::snapshot`]).
    pub(crate) fn encode<W: Write>(&self, e: &mut Enc<W>) -> std::io::Result<()> {
        e.array(&self.slots, |s: SlotInfo| {
            let next = s.next.to_le_bytes();
            [
                type_code(s.hash_type),
                s.quality,
                u8::from(s.live),
                next[0],
                next[1],
                next[2],
                next[3],
            ]
        })?;
        fn map<K: AsRef<[u8]>, W: Write>(
            e: &mut Enc<W>,
            m: &HashMap<K, u32>,
        ) -> std::io::Result<()> {
            e.len(m.len())?;
            for (k, v) in m {
                e.bytes(k.as_ref())?;
                e.u32(*v)?;
            }
            Ok(())
        }
        map(e, &self.exact.md5)?;
        map(e, &self.exact.sha1)?;
        map(e, &self.exact.sha256)?;
        map(e, &self.exact.photodna)?;
        map(e, &self.exact.url_md5)?;
        e.len(self.staged.len())?;
        for (hash, slot) in &self.staged {
            e.bytes(&hash.0)?;
            e.u32(*slot)?;
        }
        self.pdq.encode(e)?;
        // vPDQ videos in slot order (their frame index is rebuilt on reading).
        let mut videos: Vec<_> = self.videos.by_slot.iter().collect();
        videos.sort_unstable_by_key(|(slot, _)| **slot);
        e.len(videos.len())?;
        for (slot, video) in videos {
            e.u32(*slot)?;
            e.bytes(&video.hash.to_bytes())?;
        }
        Ok(())
    }

    /// Reads a matcher written by [`Matcher::encode`].
    pub(crate) fn decode<R: Read>(d: &mut Dec<R>) -> Result<Self, SnapshotError> {
        // Decoded as 7-byte elements, then checked: an unknown type code or a chain that
        // leaves the slots is a damaged file.
        let raw: Vec<[u8; 7]> = d.vec(|b: [u8; 7]| b)?;
        let n = raw.len();
        d.ensure(n <= MAX_HASHES, "more slots than a matcher holds")?;
        let mut slots = Vec::with_capacity(n);
        for b in raw {
            let hash_type = TYPE_CODES
                .get(usize::from(b[0]))
                .copied()
                .ok_or_else(|| SnapshotError::Damaged("unknown hash type".into()))?;
            let next = u32::from_le_bytes([b[3], b[4], b[5], b[6]]);
            d.ensure(
                next == NONE || (next as usize) < n,
                "a slot chain leaves the matcher",
            )?;
            slots.push(SlotInfo {
                hash_type,
                quality: b[1],
                live: b[2] != 0,
                next,
            });
        }
        fn map<K: for<'a> TryFrom<&'a [u8]> + std::hash::Hash + Eq, R: Read>(
            d: &mut Dec<R>,
            slots: usize,
        ) -> Result<HashMap<K, u32>, SnapshotError> {
            let n = d.len(12)?;
            let mut m = HashMap::with_capacity(n);
            // The longest exact key (PhotoDNA) is 144 bytes.
            let mut buf = [0u8; 144];
            for _ in 0..n {
                let key = d.bytes_into(&mut buf)?;
                let key = K::try_from(key).map_err(|_| {
                    SnapshotError::Damaged("an exact key has the wrong length".into())
                })?;
                let slot = d.u32()?;
                d.ensure(
                    (slot as usize) < slots,
                    "an exact key points past the slots",
                )?;
                m.insert(key, slot);
            }
            Ok(m)
        }
        let exact = ExactMaps {
            md5: map(d, n)?,
            sha1: map(d, n)?,
            sha256: map(d, n)?,
            photodna: map(d, n)?,
            url_md5: map(d, n)?,
        };
        let staged_len = d.len(36)?;
        let mut staged = Vec::with_capacity(staged_len);
        let mut buf = [0u8; 32];
        for _ in 0..staged_len {
            let hash = <[u8; 32]>::try_from(d.bytes_into(&mut buf)?)
                .map_err(|_| SnapshotError::Damaged("a staged hash has the wrong length".into()))?;
            staged.push((PdqHash(hash), d.u32()?));
        }
        let pdq = SegmentedPdq::decode(d)?;
        let mut videos = Videos::default();
        let count = d.len(4 + 8 + vpdq::VPDQ_FRAME_BYTES)?;
        let mut last = None;
        for _ in 0..count {
            let slot = d.u32()?;
            d.ensure(
                slots
                    .get(slot as usize)
                    .is_some_and(|s| s.hash_type == HashType::Vpdq)
                    && last.is_none_or(|l| l < slot),
                "a vpdq video is not at a vpdq slot in order",
            )?;
            last = Some(slot);
            let video = VpdqHash::from_bytes(&d.bytes()?)
                .map_err(|e| SnapshotError::Damaged(format!("a vpdq video: {e}")))?;
            videos.stage(slot, video);
            if !slots[slot as usize].live {
                videos.remove(slot);
            }
        }
        videos.commit();
        Ok(Matcher {
            pdq,
            exact,
            slots,
            staged,
            videos,
            max_hashes: MAX_HASHES,
        })
    }
}

/// Hash types by their code in a snapshot.
const TYPE_CODES: [HashType; 7] = [
    HashType::Md5,
    HashType::Sha1,
    HashType::Sha256,
    HashType::Pdq,
    HashType::PhotoDna,
    HashType::UrlMd5,
    HashType::Vpdq,
];

fn type_code(t: HashType) -> u8 {
    TYPE_CODES.iter().position(|&x| x == t).unwrap_or(0) as u8
}

fn pdq_of(hash_type: HashType, value: &[u8]) -> Option<PdqHash> {
    if hash_type != HashType::Pdq {
        return None;
    }
    value.try_into().ok().map(PdqHash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdq(seed: u8) -> Vec<u8> {
        (0..32)
            .map(|i| seed.wrapping_mul(37).wrapping_add(i))
            .collect()
    }

    fn flip(v: &[u8], bits: usize) -> Vec<u8> {
        let mut out = v.to_vec();
        for b in 0..bits {
            out[b / 8] ^= 1 << (b % 8);
        }
        out
    }

    #[test]
    fn exact_and_near_matches() {
        let mut m = Matcher::new();
        let md5 = vec![1u8; 16];
        let a = m.add(HashType::Md5, &md5, None).expect("room");
        let b = m.add(HashType::Pdq, &pdq(1), Some(90)).expect("room");
        let low = m.add(HashType::Pdq, &pdq(2), Some(10)).expect("room");
        let opts = MatchOptions::default();
        let q = |t, v: Vec<u8>, quality| Query {
            hash_type: t,
            value: v,
            quality,
        };
        assert_eq!(
            m.lookup(&q(HashType::Md5, md5.clone(), None), &opts),
            vec![Hit {
                distance: 0,
                slot: a,
                vpdq: None,
            }]
        );
        assert!(
            m.lookup(&q(HashType::Sha1, vec![1; 20], None), &opts)
                .is_empty()
        );
        assert_eq!(
            m.lookup(&q(HashType::Pdq, flip(&pdq(1), 31), None), &opts),
            vec![Hit {
                distance: 31,
                slot: b,
                vpdq: None,
            }]
        );
        assert!(
            m.lookup(&q(HashType::Pdq, flip(&pdq(1), 32), None), &opts)
                .is_empty()
        );
        // Low-quality indexed hashes and low-quality queries do not match.
        assert!(m.lookup(&q(HashType::Pdq, pdq(2), None), &opts).is_empty());
        let lenient = MatchOptions {
            min_quality: 0,
            ..opts
        };
        assert_eq!(
            m.lookup(&q(HashType::Pdq, pdq(2), None), &lenient),
            vec![Hit {
                distance: 0,
                slot: low,
                vpdq: None,
            }]
        );
        assert!(
            m.lookup(&q(HashType::Pdq, pdq(1), Some(20)), &opts)
                .is_empty()
        );
        // Removal.
        assert!(m.remove(b));
        assert!(!m.remove(b));
        assert!(m.lookup(&q(HashType::Pdq, pdq(1), None), &opts).is_empty());
        assert!(m.remove(a));
        assert!(m.lookup(&q(HashType::Md5, md5, None), &opts).is_empty());
    }

    #[test]
    fn the_same_hash_shared_twice_matches_both_until_removed() {
        let mut m = Matcher::new();
        let sha = vec![9u8; 32];
        let other = m.add(HashType::Sha256, &[8u8; 32], None).expect("room");
        let first = m.add(HashType::Sha256, &sha, None).expect("room");
        let second = m.add(HashType::Sha256, &sha, None).expect("room");
        let q = Query::new(HashType::Sha256, sha.clone(), None).expect("valid");
        let slots = |m: &Matcher| -> Vec<u32> {
            m.lookup(&q, &MatchOptions::default())
                .iter()
                .map(|h| h.slot)
                .collect()
        };
        assert_eq!(slots(&m), vec![first, second]);
        assert!(m.remove(first));
        assert_eq!(slots(&m), vec![second]);
        assert!(m.remove(second));
        assert!(slots(&m).is_empty());
        assert_ne!(other, first);
        assert!(Query::new(HashType::Sha256, vec![0; 31], None).is_err());
        assert!(Query::new(HashType::Md5, vec![0; 16], Some(5)).is_err());
        assert!(MatchOptions::new(Some(65), None).is_err());
        assert!(MatchOptions::new(None, Some(101)).is_err());
    }

    #[test]
    fn a_full_matcher_refuses_more_hashes_instead_of_reusing_slot_numbers() {
        let mut m = Matcher {
            max_hashes: 2,
            ..Matcher::default()
        };
        assert_eq!(m.add(HashType::Sha256, &[1u8; 32], None), Ok(0));
        assert_eq!(m.stage(HashType::Pdq, &pdq(1), None), Ok(1));
        let full = MatcherFull { max: 2, adding: 1 };
        assert_eq!(
            m.stage(HashType::Sha256, &[2u8; 32], None),
            Err(full.clone())
        );
        assert_eq!(m.add(HashType::Pdq, &pdq(2), None), Err(full));
        assert_eq!(m.room_for(0), Ok(()));
        m.commit();
        // What it holds still matches.
        let hits = m.lookup(
            &Query {
                hash_type: HashType::Sha256,
                value: vec![1u8; 32],
                quality: None,
            },
            &MatchOptions::default(),
        );
        assert_eq!(hits.len(), 1);
        assert_eq!(MAX_HASHES, u32::MAX as usize);
    }

    /// The index-counted vPDQ lookup decides exactly what comparing the query with every live
    /// video frame by frame decides (`vpdq::compare`), over random videos sharing frames, with
    /// repeated hashes, low-quality frames and removed videos.
    #[test]
    fn vpdq_lookup_agrees_with_frame_by_frame_comparison() {
        use super::super::vpdq::Frame;
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // A small pool of base hashes, so videos share frames and near frames.
        let pool: Vec<PdqHash> = (0..12)
            .map(|_| PdqHash(std::array::from_fn(|_| rng.r#gen())))
            .collect();
        let video = |rng: &mut rand::rngs::StdRng| -> VpdqHash {
            let n = rng.gen_range(1..40);
            let frames = (0..n)
                .map(|i| {
                    let mut hash = pool[rng.gen_range(0..pool.len())];
                    for _ in 0..rng.gen_range(0..40) {
                        let bit = rng.gen_range(0..256);
                        hash.0[bit / 8] ^= 1 << (bit % 8);
                    }
                    Frame {
                        number: i,
                        timestamp_ms: i * 40,
                        quality: rng.gen_range(0..=100),
                        hash,
                    }
                })
                .collect();
            VpdqHash::new(frames).expect("valid video")
        };
        let mut m = Matcher::new();
        let mut stored = Vec::new();
        for _ in 0..60 {
            let v = video(&mut rng);
            let slot = m.stage(HashType::Vpdq, &v.to_bytes(), None).expect("room");
            stored.push((slot, v));
        }
        m.commit();
        let removed: Vec<u32> = stored.iter().step_by(7).map(|(slot, _)| *slot).collect();
        for slot in &removed {
            m.remove(*slot);
        }
        let mut compared = 0;
        for round in 0..80 {
            let query = video(&mut rng);
            let options = MatchOptions {
                pdq_threshold: [10, 31, 40][round % 3],
                min_quality: [0, 50][round % 2],
                ..MatchOptions::default()
            }
            .with_vpdq(
                VpdqRule::new(Some([0, 30][round % 2]), Some([0, 20, 80][round % 3]))
                    .expect("rule"),
            );
            let usable = query.usable(options.min_quality);
            let mut expected: Vec<Hit> = stored
                .iter()
                .filter(|(slot, _)| !removed.contains(slot))
                .filter_map(|(slot, v)| {
                    let outcome = vpdq::compare(
                        &usable,
                        &v.usable(options.min_quality),
                        options.pdq_threshold,
                    );
                    outcome.matches(&options.vpdq).then(|| Hit {
                        distance: 0,
                        slot: *slot,
                        vpdq: Some(outcome.score()),
                    })
                })
                .collect();
            expected.sort_by(|a, b| b.vpdq.cmp(&a.vpdq).then(a.slot.cmp(&b.slot)));
            let got = m.lookup(
                &Query {
                    hash_type: HashType::Vpdq,
                    value: query.to_bytes(),
                    quality: None,
                },
                &options,
            );
            compared += expected.len();
            assert_eq!(got, expected, "round {round}");
        }
        assert!(
            compared > 50,
            "the random videos matched too rarely: {compared}"
        );
    }
}
