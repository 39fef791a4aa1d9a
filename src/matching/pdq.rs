//! The PDQ hash value type, hex parsing, match records and the brute-force reference search.

use thiserror::Error;

/// Number of bits in a PDQ hash.
pub const PDQ_BITS: u32 = 256;

/// Number of hex characters in the textual form of a PDQ hash.
pub const PDQ_HEX_LEN: usize = 64;

/// A 256-bit PDQ perceptual hash.
///
/// Byte `i` of the array is the `i`-th byte of the 64-character hex form
/// (the usual textual representation used by Meta's PDQ tools and HMA).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct PdqHash(pub [u8; 32]);

/// Why a string could not be parsed as a [`PdqHash`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The input does not have exactly 64 characters.
    #[error(
        "a PDQ hash must be exactly 64 hex characters (256 bits), but the input has {found} characters"
    )]
    WrongLength {
        /// Number of characters actually found.
        found: usize,
    },
    /// The input contains a character that is not a hex digit.
    #[error(
        "a PDQ hash may only contain hex digits 0-9, a-f, A-F, but found {character:?} at position {position}"
    )]
    NotHex {
        /// The offending character.
        character: char,
        /// Zero-based character position of the offending character.
        position: usize,
    },
}

impl PdqHash {
    /// Parses a hash from exactly 64 hex characters (case-insensitive).
    ///
    /// Leading or trailing whitespace is not accepted; trim before calling.
    pub fn from_hex(text: &str) -> Result<Self, ParseError> {
        let found = text.chars().count();
        if found != PDQ_HEX_LEN || text.len() != PDQ_HEX_LEN {
            // A multi-byte character would make byte and char counts differ;
            // report it as non-hex when the char count is right.
            if found == PDQ_HEX_LEN {
                return Err(first_non_hex(text));
            }
            return Err(ParseError::WrongLength { found });
        }
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(text, &mut bytes) {
            Ok(()) => Ok(PdqHash(bytes)),
            Err(_) => Err(first_non_hex(text)),
        }
    }

    /// Returns the 64-character lowercase hex form of the hash.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Hamming distance (number of differing bits, 0..=256) to `other`.
    pub fn distance(&self, other: &PdqHash) -> u32 {
        distance_words(&self.to_words(), &other.to_words())
    }

    /// The hash as four 64-bit words (little-endian per 8-byte group).
    pub fn to_words(&self) -> [u64; 4] {
        let mut words = [0u64; 4];
        for (word, chunk) in words.iter_mut().zip(self.0.chunks_exact(8)) {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(chunk);
            *word = u64::from_le_bytes(buf);
        }
        words
    }

    /// Builds a hash from four 64-bit words; inverse of [`PdqHash::to_words`].
    pub fn from_words(words: [u64; 4]) -> Self {
        let mut bytes = [0u8; 32];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        PdqHash(bytes)
    }
}

impl std::fmt::Display for PdqHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for PdqHash {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PdqHash::from_hex(text)
    }
}

/// One hit of a search: the caller's id and its Hamming distance to the query.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct PdqMatch {
    /// The id the hash was inserted with.
    pub id: u32,
    /// Hamming distance between the stored hash and the query (0..=256).
    pub distance: u32,
}

/// Reference implementation: every item within `threshold` of `query`,
/// sorted by `(distance, id)`. Thresholds above 256 behave like 256.
pub fn brute_force(items: &[(PdqHash, u32)], query: &PdqHash, threshold: u32) -> Vec<PdqMatch> {
    let q = query.to_words();
    let mut out: Vec<PdqMatch> = items
        .iter()
        .filter_map(|(hash, id)| {
            let distance = distance_words(&q, &hash.to_words());
            (distance <= threshold).then_some(PdqMatch { id: *id, distance })
        })
        .collect();
    sort_matches(&mut out);
    out
}

/// Sorts matches by `(distance, id)`, the order every search returns.
pub(crate) fn sort_matches(matches: &mut [PdqMatch]) {
    matches.sort_unstable_by_key(|m| (m.distance, m.id));
}

/// Hamming distance between two hashes in word form.
#[inline(always)]
pub(crate) fn distance_words(a: &[u64; 4], b: &[u64; 4]) -> u32 {
    (a[0] ^ b[0]).count_ones()
        + (a[1] ^ b[1]).count_ones()
        + (a[2] ^ b[2]).count_ones()
        + (a[3] ^ b[3]).count_ones()
}

fn first_non_hex(text: &str) -> ParseError {
    match text
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_hexdigit())
    {
        Some((position, character)) => ParseError::NotHex {
            character,
            position,
        },
        None => ParseError::WrongLength {
            found: text.chars().count(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_case_insensitive() {
        let text = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
        let hash = PdqHash::from_hex(text).expect("valid hash");
        assert_eq!(hash.to_hex(), text);
        let upper = PdqHash::from_hex(&text.to_uppercase()).expect("valid upper-case hash");
        assert_eq!(upper, hash);
        assert_eq!(hash.to_string(), text);
        assert_eq!(text.parse::<PdqHash>(), Ok(hash));
    }

    #[test]
    fn hex_errors_are_specific() {
        let cases: &[(&str, ParseError)] = &[
            ("", ParseError::WrongLength { found: 0 }),
            ("abc", ParseError::WrongLength { found: 3 }),
            (&"0".repeat(63), ParseError::WrongLength { found: 63 }),
            (&"0".repeat(65), ParseError::WrongLength { found: 65 }),
        ];
        for (input, expected) in cases {
            assert_eq!(
                PdqHash::from_hex(input).as_ref(),
                Err(expected),
                "{input:?}"
            );
        }
        let mut bad = "0".repeat(64);
        bad.replace_range(10..11, "g");
        assert_eq!(
            PdqHash::from_hex(&bad),
            Err(ParseError::NotHex {
                character: 'g',
                position: 10
            })
        );
        let mut spaced = "0".repeat(63);
        spaced.push(' ');
        assert_eq!(
            PdqHash::from_hex(&spaced),
            Err(ParseError::NotHex {
                character: ' ',
                position: 63
            })
        );
        let mut unicode = "0".repeat(63);
        unicode.push('é');
        assert_eq!(
            PdqHash::from_hex(&unicode),
            Err(ParseError::NotHex {
                character: 'é',
                position: 63
            })
        );
        let message = PdqHash::from_hex("abc").expect_err("too short").to_string();
        assert!(message.contains("exactly 64 hex characters"), "{message}");
        assert!(message.contains("3 characters"), "{message}");
        let message = PdqHash::from_hex(&bad).expect_err("non-hex").to_string();
        assert!(
            message.contains("'g'") && message.contains("position 10"),
            "{message}"
        );
    }

    #[test]
    fn distance_counts_differing_bits() {
        let zero = PdqHash([0; 32]);
        let ones = PdqHash([0xff; 32]);
        assert_eq!(zero.distance(&zero), 0);
        assert_eq!(zero.distance(&ones), 256);
        let mut one_bit = [0u8; 32];
        one_bit[31] = 0x80;
        assert_eq!(zero.distance(&PdqHash(one_bit)), 1);
        assert_eq!(PdqHash::from_words(ones.to_words()), ones);
    }

    #[test]
    fn brute_force_sorts_by_distance_then_id() {
        let zero = PdqHash([0; 32]);
        let mut one = [0u8; 32];
        one[0] = 1;
        let items = vec![(PdqHash(one), 5), (zero, 9), (PdqHash(one), 2)];
        let got = brute_force(&items, &zero, 1);
        assert_eq!(
            got,
            vec![
                PdqMatch { id: 9, distance: 0 },
                PdqMatch { id: 2, distance: 1 },
                PdqMatch { id: 5, distance: 1 },
            ]
        );
        assert_eq!(brute_force(&items, &zero, 0).len(), 1);
    }
}
