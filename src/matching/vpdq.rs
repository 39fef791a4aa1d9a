//! vPDQ (video PDQ): a video's hash as the PDQ hashes of sampled frames, with the canonical
//! bytes a hash entry carries, the reference tools' text format, and the comparison rule.
//!
//! The algorithm is Meta's (facebook/ThreatExchange `vpdq/README.md`, "Comparison (Matching)
//! Algorithm"): both videos are a bag of frame hashes; frames below a quality are dropped and
//! repeated hashes counted once; a query frame *matches* if some compared frame is within the
//! PDQ distance, and the other way round; the two videos match when enough of each is matched.
//! The published sources disagree on details, and this module decides them (docs/PROTOCOL.md
//! §2.3.2):
//!
//! - which side must reach 80%: the README names the *compared* (shared) video (P_c = 80%,
//!   P_q = 0%: an upload that contains a known video plus padding still matches), while
//!   python-threatexchange's `vpdq_util.py` names the *query* (`VPDQ_QUERY_MATCH_THRESHOLD_PERCENT
//!   = 80`, `VPDQ_INDEX_MATCH_THRESHOLD_PERCENT = 0`). We follow the README by default; both are
//!   settable ([`VpdqRule`]);
//! - the distance: the README and python-threatexchange match at `distance <= D`, the C++
//!   `matchTwoHash.cpp` at `distance < D`. We use `<=`, like every other PDQ threshold here;
//! - duplicates: python-threatexchange dedupes before filtering by quality, the README keeps
//!   unique frames; we filter by quality first, then keep each hash once (so a repeated hash
//!   counts if any of its frames is good enough);
//! - nothing matched: the reference divides by zero or answers 0%; here a match needs at least
//!   one matched pair of frames, whatever the percentages (with both at 0% every video would
//!   otherwise match every other).

use super::PdqHash;
use std::collections::HashSet;
use thiserror::Error;

/// Bytes of one frame in a hash entry's value: frame number (u32 big-endian), timestamp in
/// milliseconds (u32 big-endian), quality (u8, 0..=100), PDQ hash (32 bytes).
pub const VPDQ_FRAME_BYTES: usize = 41;
/// Most frames in one vPDQ hash (about 4.5 hours at one frame per second; 672 KiB).
pub const MAX_VPDQ_FRAMES: usize = 16_384;
/// Default share of the compared (indexed) video's frames that must be matched, in percent.
pub const DEFAULT_VPDQ_COMPARED_PERCENT: u32 = 80;
/// Default share of the query video's frames that must be matched, in percent.
pub const DEFAULT_VPDQ_QUERY_PERCENT: u32 = 0;

/// One sampled frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The frame's number in the video.
    pub number: u32,
    /// When it is shown, in milliseconds from the start.
    pub timestamp_ms: u32,
    /// PDQ quality, 0..=100.
    pub quality: u8,
    /// The frame's PDQ hash.
    pub hash: PdqHash,
}

/// A validated vPDQ hash: 1..=[`MAX_VPDQ_FRAMES`] frames, frame numbers strictly increasing,
/// timestamps never decreasing, qualities 0..=100.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpdqHash {
    frames: Vec<Frame>,
}

/// Why bytes or a file are not a vPDQ hash.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum VpdqError {
    /// The canonical bytes are wrong.
    #[error("{0}")]
    Bytes(String),
    /// A line of a vPDQ file is wrong (1-based).
    #[error("line {line}: {reason}")]
    Line {
        /// The line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// How a comparison came out, in hundredths of a percent (0..=10,000, rounded down).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VpdqScore {
    /// Share of the compared (indexed) video's usable frames matched.
    pub compared_bp: u16,
    /// Share of the query video's usable frames matched.
    pub query_bp: u16,
}

/// When two vPDQ hashes match: both shares at least these percentages (0..=100), and at least
/// one pair of frames matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VpdqRule {
    /// Share of the query video that must be matched.
    pub query_percent: u8,
    /// Share of the compared (indexed) video that must be matched.
    pub compared_percent: u8,
}

impl Default for VpdqRule {
    fn default() -> Self {
        VpdqRule {
            query_percent: DEFAULT_VPDQ_QUERY_PERCENT as u8,
            compared_percent: DEFAULT_VPDQ_COMPARED_PERCENT as u8,
        }
    }
}

impl VpdqRule {
    /// Validates request options (`None` = default).
    pub fn new(query_percent: Option<u32>, compared_percent: Option<u32>) -> Result<Self, String> {
        let check = |name: &str, v: u32| {
            if v > 100 {
                Err(format!("{name} must be 0..=100, got {v}"))
            } else {
                Ok(v as u8)
            }
        };
        Ok(VpdqRule {
            query_percent: check(
                "vpdq_query_percent",
                query_percent.unwrap_or(DEFAULT_VPDQ_QUERY_PERCENT),
            )?,
            compared_percent: check(
                "vpdq_compared_percent",
                compared_percent.unwrap_or(DEFAULT_VPDQ_COMPARED_PERCENT),
            )?,
        })
    }
}

/// The outcome of comparing a query with one compared video, exact (counts, not rounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// Usable query frames (quality filtered, unique) that matched.
    pub query_matched: usize,
    /// Usable query frames.
    pub query_frames: usize,
    /// Usable compared frames that matched.
    pub compared_matched: usize,
    /// Usable compared frames.
    pub compared_frames: usize,
}

impl Comparison {
    /// Whether `rule` accepts it.
    pub fn matches(&self, rule: &VpdqRule) -> bool {
        self.query_matched > 0
            && self.compared_matched > 0
            && self.query_matched * 100 >= usize::from(rule.query_percent) * self.query_frames
            && self.compared_matched * 100
                >= usize::from(rule.compared_percent) * self.compared_frames
    }

    /// The shares, in hundredths of a percent.
    pub fn score(&self) -> VpdqScore {
        fn bp(matched: usize, of: usize) -> u16 {
            (matched * 10_000).checked_div(of).unwrap_or(0) as u16
        }
        VpdqScore {
            compared_bp: bp(self.compared_matched, self.compared_frames),
            query_bp: bp(self.query_matched, self.query_frames),
        }
    }
}

/// Compares two lists of usable frame hashes ([`VpdqHash::usable`]): a frame matches if some
/// frame of the other list is within `distance` bits.
pub fn compare(query: &[PdqHash], compared: &[PdqHash], distance: u32) -> Comparison {
    let within = |a: &PdqHash, others: &[PdqHash]| others.iter().any(|b| a.distance(b) <= distance);
    Comparison {
        query_matched: query.iter().filter(|q| within(q, compared)).count(),
        query_frames: query.len(),
        compared_matched: compared.iter().filter(|c| within(c, query)).count(),
        compared_frames: compared.len(),
    }
}

impl VpdqHash {
    /// Validates frames.
    pub fn new(frames: Vec<Frame>) -> Result<Self, VpdqError> {
        let bad = |r: String| Err(VpdqError::Bytes(r));
        if frames.is_empty() {
            return bad("a vpdq hash needs at least one frame".into());
        }
        if frames.len() > MAX_VPDQ_FRAMES {
            return bad(format!(
                "a vpdq hash has at most {MAX_VPDQ_FRAMES} frames, got {}",
                frames.len()
            ));
        }
        for (i, pair) in frames.windows(2).enumerate() {
            if pair[1].number <= pair[0].number {
                return bad(format!(
                    "frame {}: frame numbers must increase ({} after {})",
                    i + 1,
                    pair[1].number,
                    pair[0].number
                ));
            }
            if pair[1].timestamp_ms < pair[0].timestamp_ms {
                return bad(format!(
                    "frame {}: timestamps must not decrease ({} ms after {} ms)",
                    i + 1,
                    pair[1].timestamp_ms,
                    pair[0].timestamp_ms
                ));
            }
        }
        if let Some((i, f)) = frames.iter().enumerate().find(|(_, f)| f.quality > 100) {
            return bad(format!(
                "frame {i}: quality must be 0..=100, got {}",
                f.quality
            ));
        }
        Ok(VpdqHash { frames })
    }

    /// Parses a hash entry's value ([`VPDQ_FRAME_BYTES`] per frame).
    pub fn from_bytes(value: &[u8]) -> Result<Self, VpdqError> {
        if value.is_empty() || !value.len().is_multiple_of(VPDQ_FRAME_BYTES) {
            return Err(VpdqError::Bytes(format!(
                "a vpdq hash is a whole number of {VPDQ_FRAME_BYTES}-byte frames (at least one), got {} bytes",
                value.len()
            )));
        }
        if value.len() / VPDQ_FRAME_BYTES > MAX_VPDQ_FRAMES {
            return Err(VpdqError::Bytes(format!(
                "a vpdq hash has at most {MAX_VPDQ_FRAMES} frames, got {}",
                value.len() / VPDQ_FRAME_BYTES
            )));
        }
        let frames = value
            .chunks_exact(VPDQ_FRAME_BYTES)
            .map(|c| {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&c[9..41]);
                Frame {
                    number: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    timestamp_ms: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                    quality: c[8],
                    hash: PdqHash(hash),
                }
            })
            .collect();
        Self::new(frames)
    }

    /// The canonical bytes a hash entry carries.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.frames.len() * VPDQ_FRAME_BYTES);
        for f in &self.frames {
            out.extend_from_slice(&f.number.to_be_bytes());
            out.extend_from_slice(&f.timestamp_ms.to_be_bytes());
            out.push(f.quality);
            out.extend_from_slice(&f.hash.0);
        }
        out
    }

    /// Parses the reference tools' text format (`vpdq-hash-video`, the `vpdq` package): one
    /// frame a line, `frame_number,quality,pdq_hex,timestamp_seconds`; blank lines skipped.
    pub fn parse_reference(text: &str) -> Result<Self, VpdqError> {
        let mut frames = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let fail = |reason: String| VpdqError::Line { line, reason };
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            if frames.len() == MAX_VPDQ_FRAMES {
                return Err(fail(format!(
                    "more than {MAX_VPDQ_FRAMES} frames (the most one vpdq hash holds)"
                )));
            }
            let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
            let [number, quality, hash, timestamp] = fields[..] else {
                return Err(fail(format!(
                    "expected 4 comma-separated fields (frame_number,quality,pdq_hex,timestamp), got {}",
                    fields.len()
                )));
            };
            let number: u32 = number
                .parse()
                .map_err(|_| fail(format!("frame number '{number}' is not a whole number")))?;
            let quality: u8 = quality
                .parse()
                .ok()
                .filter(|q| *q <= 100)
                .ok_or_else(|| fail(format!("quality '{quality}' is not 0..=100")))?;
            let hash: PdqHash = hash.parse().map_err(|e| fail(format!("pdq hash: {e}")))?;
            let seconds: f64 = timestamp
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| fail(format!("timestamp '{timestamp}' is not seconds >= 0")))?;
            let ms = (seconds * 1000.0).round();
            if ms > f64::from(u32::MAX) {
                return Err(fail(format!("timestamp {seconds} s is too large")));
            }
            if let Some(prev) = frames.last().map(|f: &Frame| (f.number, f.timestamp_ms)) {
                if number <= prev.0 {
                    return Err(fail(format!(
                        "frame numbers must increase ({number} after {})",
                        prev.0
                    )));
                }
                if (ms as u32) < prev.1 {
                    return Err(fail(format!(
                        "timestamps must not decrease ({timestamp} s after {:.3} s)",
                        f64::from(prev.1) / 1000.0
                    )));
                }
            }
            frames.push(Frame {
                number,
                timestamp_ms: ms as u32,
                quality,
                hash,
            });
        }
        if frames.is_empty() {
            return Err(VpdqError::Line {
                line: 0,
                reason: "no frames: a vpdq file needs at least one line".into(),
            });
        }
        Self::new(frames)
    }

    /// The reference text format, one frame a line, timestamps with three decimals.
    pub fn to_reference(&self) -> String {
        let mut out = String::new();
        for f in &self.frames {
            out.push_str(&format!(
                "{},{},{},{}.{:03}\n",
                f.number,
                f.quality,
                f.hash,
                f.timestamp_ms / 1000,
                f.timestamp_ms % 1000
            ));
        }
        out
    }

    /// The frames.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// The frame hashes that take part in a comparison: quality at least `min_quality`, each
    /// hash once (first occurrence order).
    pub fn usable(&self, min_quality: u8) -> Vec<PdqHash> {
        let mut seen = HashSet::new();
        self.frames
            .iter()
            .filter(|f| f.quality >= min_quality)
            .filter(|f| seen.insert(f.hash))
            .map(|f| f.hash)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(byte: u8) -> PdqHash {
        PdqHash([byte; 32])
    }

    /// A hash `bits` bits away from `h(0)`.
    fn near(bits: usize) -> PdqHash {
        let mut v = [0u8; 32];
        for i in 0..bits {
            v[i / 8] |= 1 << (i % 8);
        }
        PdqHash(v)
    }

    fn frames(hashes: &[(PdqHash, u8)]) -> VpdqHash {
        VpdqHash::new(
            hashes
                .iter()
                .enumerate()
                .map(|(i, (hash, quality))| Frame {
                    number: i as u32,
                    timestamp_ms: i as u32 * 1000,
                    quality: *quality,
                    hash: *hash,
                })
                .collect(),
        )
        .expect("valid frames")
    }

    #[test]
    fn bytes_and_reference_text_round_trip() {
        let v = frames(&[(h(1), 90), (h(2), 40), (near(3), 100)]);
        let bytes = v.to_bytes();
        assert_eq!(bytes.len(), 3 * VPDQ_FRAME_BYTES);
        assert_eq!(VpdqHash::from_bytes(&bytes), Ok(v.clone()));
        let text = v.to_reference();
        assert!(
            text.starts_with(&format!("0,90,{},0.000\n", h(1))),
            "{text}"
        );
        assert_eq!(VpdqHash::parse_reference(&text), Ok(v));
    }

    #[test]
    fn reference_lines_are_checked_one_by_one() {
        let good = format!("1,100,{},0.000", h(1));
        let check = |text: String, want: &str| {
            let err = VpdqHash::parse_reference(&text).expect_err("should fail");
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        };
        check(String::new(), "no frames");
        check(format!("{good}\n2,100,{}", h(2)), "line 2: expected 4");
        check(format!("x,100,{},0.5", h(1)), "line 1: frame number 'x'");
        check(format!("1,101,{},0.5", h(1)), "quality '101'");
        check("1,100,abc,0.5".into(), "line 1: pdq hash");
        check(format!("1,100,{},-1", h(1)), "timestamp '-1'");
        check(
            format!("{good}\n1,100,{},1.0", h(2)),
            "line 2: frame numbers must increase",
        );
        check(
            format!("1,100,{},2.0\n2,100,{},1.0", h(1), h(2)),
            "line 2: timestamps must not decrease",
        );
        // Blank lines and surrounding spaces are fine; 3 decimals become milliseconds.
        let v =
            VpdqHash::parse_reference(&format!("\n 7, 55 ,{}, 1.234 \n", h(9))).expect("parses");
        assert_eq!(
            v.frames(),
            &[Frame {
                number: 7,
                timestamp_ms: 1234,
                quality: 55,
                hash: h(9)
            }]
        );
    }

    #[test]
    fn bytes_are_checked() {
        let check = |bytes: Vec<u8>, want: &str| {
            let err = VpdqHash::from_bytes(&bytes).expect_err("should fail");
            assert!(
                err.to_string().contains(want),
                "{err} should contain {want}"
            );
        };
        check(Vec::new(), "whole number of 41-byte frames");
        check(vec![0; 40], "got 40 bytes");
        let mut bad_quality = frames(&[(h(1), 100)]).to_bytes();
        bad_quality[8] = 101;
        check(bad_quality, "quality must be 0..=100");
        let mut same_number = frames(&[(h(1), 100), (h(2), 100)]).to_bytes();
        same_number[VPDQ_FRAME_BYTES + 3] = 0;
        check(same_number, "frame numbers must increase");
        check(
            vec![0; (MAX_VPDQ_FRAMES + 1) * VPDQ_FRAME_BYTES],
            "at most 16384 frames",
        );
    }

    #[test]
    fn usable_frames_are_filtered_then_unique() {
        let v = frames(&[(h(1), 20), (h(1), 90), (h(2), 90), (h(2), 95), (h(3), 49)]);
        assert_eq!(v.usable(50), vec![h(1), h(2)]);
        assert_eq!(v.usable(0), vec![h(1), h(2), h(3)]);
    }

    #[test]
    fn comparison_table() {
        let rule = VpdqRule::default();
        /// (query, compared, distance, matches, compared_bp, query_bp)
        type Case<'a> = (&'a [PdqHash], &'a [PdqHash], u32, bool, u16, u16);
        let cases: &[Case] = &[
            // Identical.
            (&[h(0), h(0xff)], &[h(0), h(0xff)], 0, true, 10_000, 10_000),
            // A clip: the compared video is all in the query (padding in the query).
            (
                &[h(0), h(0xff), h(0x0f)],
                &[h(0), h(0xff)],
                0,
                true,
                10_000,
                6_666,
            ),
            // The query holds only part of the compared video: 1 of 2 is below 80%.
            (&[h(0)], &[h(0), h(0xff)], 0, false, 5_000, 10_000),
            // Within the distance, inclusive.
            (&[near(31)], &[h(0)], 31, true, 10_000, 10_000),
            (&[near(32)], &[h(0)], 31, false, 0, 0),
            // Nothing usable on one side never matches.
            (&[], &[h(0)], 31, false, 0, 0),
        ];
        for (i, (q, c, d, want, c_bp, q_bp)) in cases.iter().enumerate() {
            let got = compare(q, c, *d);
            assert_eq!(got.matches(&rule), *want, "case {i}: {got:?}");
            assert_eq!(
                got.score(),
                VpdqScore {
                    compared_bp: *c_bp,
                    query_bp: *q_bp
                },
                "case {i}"
            );
        }
        // Both thresholds are settable: the query side at 80% refuses the clip above.
        let query_side = VpdqRule::new(Some(80), Some(0)).expect("valid");
        assert!(!compare(&[h(0), h(0xff), h(0x0f)], &[h(0), h(0xff)], 0).matches(&query_side));
        // 0% on both sides still needs one matched frame.
        let none = VpdqRule::new(Some(0), Some(0)).expect("valid");
        assert!(!compare(&[h(0)], &[h(0xff)], 0).matches(&none));
        assert!(VpdqRule::new(Some(101), None).is_err());
    }
}
