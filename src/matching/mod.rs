//! Matching: exact lookup and exact PDQ near-duplicate search against the shared corpus,
//! the same engine online (the hub's `Match` RPC) and offline (`coalition match`).
//!
//! [`PdqIndex`] returns exactly what [`brute_force`] returns (every id within the
//! threshold, sorted by `(distance, id)`), using multi-index hashing for typical
//! thresholds (<= 32) and a linear scan when that is cheaper. [`Matcher`] adds exact
//! lookup for the other hash types over numbered slots, with PDQ in [`SegmentedPdq`]
//! (immutable segments merged in the background) and vPDQ video matching ([`vpdq`]);
//! [`Corpus`] is the hub's view with the provenance of every slot.

pub mod corpus;
pub mod index;
pub mod matcher;
pub mod pdq;
pub mod segments;
pub mod snapshot;
pub mod vpdq;

pub use corpus::{Corpus, Found, Provenance};
pub use index::{IndexParams, PdqIndex, SearchPath};
pub use matcher::{
    DEFAULT_MIN_QUALITY, DEFAULT_PDQ_THRESHOLD, Hit, MAX_HASHES, MAX_PDQ_THRESHOLD, MAX_QUERIES,
    MatchOptions, Matcher, MatcherFull, Query,
};
pub use pdq::{PDQ_BITS, PDQ_HEX_LEN, ParseError, PdqHash, PdqMatch, brute_force};
pub use segments::{MergePlan, SegmentedPdq};
pub use vpdq::{VpdqHash, VpdqRule, VpdqScore};
