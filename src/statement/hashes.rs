//! Hash entries: the typed hash values and labels a hash set (or a hash indicator) carries.

use super::StatementError;
use crate::matching::vpdq::{VPDQ_FRAME_BYTES, VpdqHash};
use crate::pb;
use std::fmt;
use std::str::FromStr;

/// Most labels on one entry.
pub const MAX_LABELS: usize = 16;
/// Most characters in a free tag.
pub const MAX_TAG_CHARS: usize = 64;

/// A hash algorithm, with the exact length of its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashType {
    /// MD5, 16 bytes.
    Md5,
    /// SHA-1, 20 bytes.
    Sha1,
    /// SHA-256, 32 bytes.
    Sha256,
    /// PDQ perceptual hash, 256 bits, with a quality score.
    Pdq,
    /// PhotoDNA-like perceptual hash, 144 opaque bytes.
    PhotoDna,
    /// URL-MD5, 16 bytes: the MD5 of a URL normalised as ThreatExchange does
    /// (`media::url`), matched exactly.
    UrlMd5,
    /// vPDQ video hash: a list of PDQ-hashed frames ([`crate::matching::vpdq`]), of variable
    /// length.
    Vpdq,
}

/// Every hash type, in wire order.
pub const HASH_TYPES: [HashType; 7] = [
    HashType::Md5,
    HashType::Sha1,
    HashType::Sha256,
    HashType::Pdq,
    HashType::PhotoDna,
    HashType::UrlMd5,
    HashType::Vpdq,
];

/// An industry classification category (the A1/A2/B1/B2 baseline scheme).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// A1.
    A1,
    /// A2.
    A2,
    /// B1.
    B1,
    /// B2.
    B2,
}

/// A label on a hash entry: a classification category or a free tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Label {
    /// One of A1, A2, B1, B2.
    Category(Category),
    /// A free tag matching `[a-z0-9][a-z0-9_.:-]{0,63}`.
    Tag(String),
}

/// One hash of known material, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct HashEntry {
    /// The algorithm.
    pub hash_type: HashType,
    /// The raw hash bytes, of exactly `hash_type.value_len()` bytes.
    pub value: Vec<u8>,
    /// PDQ quality 0..=100; `Some` exactly when the type is PDQ.
    pub quality: Option<u8>,
    /// Classification and tags, without duplicates.
    pub labels: Vec<Label>,
}

impl HashType {
    /// The exact length in bytes of a value of this type; for vPDQ, whose values hold a
    /// variable number of frames, the length of one frame.
    pub fn value_len(self) -> usize {
        match self {
            HashType::Md5 | HashType::UrlMd5 => 16,
            HashType::Sha1 => 20,
            HashType::Sha256 | HashType::Pdq => 32,
            HashType::PhotoDna => 144,
            HashType::Vpdq => VPDQ_FRAME_BYTES,
        }
    }

    /// Checks a value's bytes: the type's exact length, or for vPDQ a valid frame list.
    pub fn check_value(self, value: &[u8]) -> Result<(), String> {
        match self {
            HashType::Vpdq => VpdqHash::from_bytes(value)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            _ if value.len() != self.value_len() => Err(format!(
                "a {self} hash must be {} bytes, got {}",
                self.value_len(),
                value.len()
            )),
            _ => Ok(()),
        }
    }

    /// The lowercase name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            HashType::Md5 => "md5",
            HashType::Sha1 => "sha1",
            HashType::Sha256 => "sha256",
            HashType::Pdq => "pdq",
            HashType::PhotoDna => "photodna",
            HashType::UrlMd5 => "url_md5",
            HashType::Vpdq => "vpdq",
        }
    }

    /// A bit unique to this type, for compact sets of types.
    pub fn bit(self) -> u32 {
        1 << (self.to_wire() as u32)
    }

    /// The wire enum value.
    pub fn to_wire(self) -> pb::HashType {
        match self {
            HashType::Md5 => pb::HashType::Md5,
            HashType::Sha1 => pb::HashType::Sha1,
            HashType::Sha256 => pb::HashType::Sha256,
            HashType::Pdq => pb::HashType::Pdq,
            HashType::PhotoDna => pb::HashType::Photodna,
            HashType::UrlMd5 => pb::HashType::UrlMd5,
            HashType::Vpdq => pb::HashType::Vpdq,
        }
    }

    /// Parses a wire enum value; `None` for unspecified or unknown values.
    pub fn from_wire(value: i32) -> Option<HashType> {
        match pb::HashType::try_from(value).ok()? {
            pb::HashType::Md5 => Some(HashType::Md5),
            pb::HashType::Sha1 => Some(HashType::Sha1),
            pb::HashType::Sha256 => Some(HashType::Sha256),
            pb::HashType::Pdq => Some(HashType::Pdq),
            pb::HashType::Photodna => Some(HashType::PhotoDna),
            pb::HashType::UrlMd5 => Some(HashType::UrlMd5),
            pb::HashType::Vpdq => Some(HashType::Vpdq),
            pb::HashType::Unspecified => None,
        }
    }
}

impl fmt::Display for HashType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        HASH_TYPES
            .into_iter()
            .find(|t| t.name() == lower)
            .ok_or_else(|| {
                format!(
                    "unknown hash type '{s}' (expected md5, sha1, sha256, pdq, photodna, url_md5 or vpdq)"
                )
            })
    }
}

impl Label {
    /// Parses a label: `A1`, `A2`, `B1`, `B2` (any case) or a free tag.
    pub fn parse(s: &str) -> Result<Label, String> {
        match s {
            "A1" | "a1" => return Ok(Label::Category(Category::A1)),
            "A2" | "a2" => return Ok(Label::Category(Category::A2)),
            "B1" | "b1" => return Ok(Label::Category(Category::B1)),
            "B2" | "b2" => return Ok(Label::Category(Category::B2)),
            _ => {}
        }
        let valid_first = s
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let valid_rest = s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b':' | b'-')
        });
        if !valid_first || !valid_rest || s.len() > MAX_TAG_CHARS {
            return Err(format!(
                "'{s}' is neither a category (A1, A2, B1, B2) nor a tag matching [a-z0-9][a-z0-9_.:-]{{0,63}}"
            ));
        }
        Ok(Label::Tag(s.to_owned()))
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Category(Category::A1) => f.write_str("A1"),
            Label::Category(Category::A2) => f.write_str("A2"),
            Label::Category(Category::B1) => f.write_str("B1"),
            Label::Category(Category::B2) => f.write_str("B2"),
            Label::Tag(t) => f.write_str(t),
        }
    }
}

impl HashEntry {
    /// Validates a wire entry; `field` is its path for error messages.
    pub fn from_wire(entry: pb::HashEntry, field: &str) -> Result<Self, StatementError> {
        Self::from_wire_at(entry, || field.to_owned())
    }

    /// Like [`HashEntry::from_wire`], building the field path only if there is an error (this
    /// runs once per hash of every set).
    pub fn from_wire_at(
        entry: pb::HashEntry,
        field: impl Fn() -> String,
    ) -> Result<Self, StatementError> {
        let field = &LazyField(&field);
        let hash_type = HashType::from_wire(entry.r#type).ok_or_else(|| {
            StatementError::invalid(
                format!("{field}.type"),
                format!(
                    "unknown or unspecified hash type {} (expected md5, sha1, sha256, pdq, photodna, url_md5 or vpdq)",
                    entry.r#type
                ),
            )
        })?;
        hash_type
            .check_value(&entry.value)
            .map_err(|reason| StatementError::invalid(format!("{field}.value"), reason))?;
        let quality = match (hash_type, entry.quality) {
            (HashType::Pdq, Some(q)) if q <= 100 => Some(q as u8),
            (HashType::Pdq, Some(q)) => {
                return Err(StatementError::invalid(
                    format!("{field}.quality"),
                    format!("PDQ quality must be 0..=100, got {q}"),
                ));
            }
            (HashType::Pdq, None) => {
                return Err(StatementError::invalid(
                    format!("{field}.quality"),
                    "required for a pdq hash (0..=100)",
                ));
            }
            (_, Some(_)) => {
                return Err(StatementError::invalid(
                    format!("{field}.quality"),
                    format!("only pdq hashes carry a quality, this is {hash_type}"),
                ));
            }
            (_, None) => None,
        };
        if entry.labels.len() > MAX_LABELS {
            return Err(StatementError::invalid(
                format!("{field}.labels"),
                format!(
                    "at most {MAX_LABELS} labels per entry, got {}",
                    entry.labels.len()
                ),
            ));
        }
        let mut labels: Vec<Label> = Vec::with_capacity(entry.labels.len());
        for (i, raw) in entry.labels.iter().enumerate() {
            let label = Label::parse(raw)
                .map_err(|e| StatementError::invalid(format!("{field}.labels[{i}]"), e))?;
            if labels.contains(&label) {
                return Err(StatementError::invalid(
                    format!("{field}.labels[{i}]"),
                    format!("duplicate label '{label}'"),
                ));
            }
            labels.push(label);
        }
        Ok(HashEntry {
            hash_type,
            value: entry.value,
            quality,
            labels,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::HashEntry {
        pb::HashEntry {
            r#type: self.hash_type.to_wire() as i32,
            value: self.value.clone(),
            quality: self.quality.map(u32::from),
            labels: self.labels.iter().map(Label::to_string).collect(),
        }
    }
}

/// A field path computed only when displayed (that is, only when an error is reported).
struct LazyField<'a, F: Fn() -> String>(&'a F);

impl<F: Fn() -> String> fmt::Display for LazyField<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.0)())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: pb::HashType, len: usize, quality: Option<u32>, labels: &[&str]) -> pb::HashEntry {
        pb::HashEntry {
            r#type: t as i32,
            value: vec![7; len],
            quality,
            labels: labels.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn check(e: pb::HashEntry, expected: Result<(), &str>) {
        let got = HashEntry::from_wire(e, "e")
            .map(|_| ())
            .map_err(|e| e.to_string());
        match expected {
            Ok(()) => assert!(got.is_ok(), "expected ok, got {got:?}"),
            Err(want) => {
                let msg = got.expect_err("expected an error");
                assert!(msg.contains(want), "{msg:?} should contain {want:?}");
            }
        }
    }

    #[test]
    fn entry_validation_table() {
        use pb::HashType as T;
        check(entry(T::Md5, 16, None, &["A1"]), Ok(()));
        check(entry(T::Sha1, 20, None, &[]), Ok(()));
        check(entry(T::Sha256, 32, None, &["b2", "ncmec:ref"]), Ok(()));
        check(entry(T::Pdq, 32, Some(100), &[]), Ok(()));
        check(entry(T::Photodna, 144, None, &[]), Ok(()));
        check(entry(T::Vpdq, 41, None, &[]), Ok(()));
        check(
            entry(T::Vpdq, 40, None, &[]),
            Err("e.value: a vpdq hash is a whole number of 41-byte frames"),
        );
        check(
            entry(T::Vpdq, 41, Some(100), &[]),
            Err("only pdq hashes carry a quality"),
        );
        check(
            entry(T::Sha256, 31, None, &[]),
            Err("e.value: a sha256 hash must be 32 bytes, got 31"),
        );
        check(
            entry(T::Md5, 20, None, &[]),
            Err("md5 hash must be 16 bytes"),
        );
        check(
            entry(T::Pdq, 32, Some(101), &[]),
            Err("e.quality: PDQ quality must be 0..=100, got 101"),
        );
        check(entry(T::Pdq, 32, None, &[]), Err("required for a pdq hash"));
        check(
            entry(T::Sha1, 20, Some(5), &[]),
            Err("only pdq hashes carry a quality"),
        );
        check(
            entry(T::Unspecified, 16, None, &[]),
            Err("e.type: unknown or unspecified"),
        );
        check(
            entry(T::Md5, 16, None, &["A1", "a1"]),
            Err("e.labels[1]: duplicate label 'A1'"),
        );
        check(entry(T::Md5, 16, None, &["Bad Tag"]), Err("e.labels[0]"));
        check(
            entry(T::Md5, 16, None, &[&"x".repeat(65)]),
            Err("e.labels[0]"),
        );
        let many: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        check(
            entry(T::Md5, 16, None, &many),
            Err("at most 16 labels per entry, got 17"),
        );
    }

    #[test]
    fn hash_type_names_round_trip() {
        for t in HASH_TYPES {
            assert_eq!(t.name().parse::<HashType>(), Ok(t));
            assert_eq!(HashType::from_wire(t.to_wire() as i32), Some(t));
        }
        assert!("crc32".parse::<HashType>().is_err());
    }
}
