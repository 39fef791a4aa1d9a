//! RFC 6962 / RFC 9162 Merkle tree hashing, roots, inclusion and consistency proofs computed from complete-subtree nodes in O(log n) reads.

use std::fmt;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 Merkle tree hash (leaf hash, interior node hash or tree root), RFC 9162 §2.1.1.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Length in bytes of a SHA-256 hash.
    pub const LEN: usize = 32;

    /// Borrows the raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a hash from a slice, or `None` if the slice is not exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Hash)
    }

    /// Parses 64 hexadecimal digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out)?;
        Ok(Hash(out))
    }

    /// Lower-case hexadecimal rendering (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Zero-based position of a leaf in the log (RFC 9162 §2.1.3 `leaf_index`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeafIndex(pub u64);

impl fmt::Display for LeafIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Number of leaves in a tree (RFC 9162 §2.1.3 `tree_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeSize(pub u64);

impl fmt::Display for TreeSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Leaf hash `SHA-256(0x00 || data)`, RFC 6962 §2.1 / RFC 9162 §2.1.1.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    Hash(h.finalize().into())
}

/// Interior node hash `SHA-256(0x01 || left || right)`, RFC 6962 §2.1 / RFC 9162 §2.1.1.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Root of the empty tree, `SHA-256("")`, RFC 6962 §2.1 / RFC 9162 §2.1.1.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// Read access to the roots of *complete* subtrees of a log.
///
/// Node `(level, index)` is the RFC 9162 §2.1.1 Merkle tree hash of the leaves
/// `[index * 2^level, (index + 1) * 2^level)`. Level 0 holds the leaf hashes.
/// A node exists once the log holds at least `(index + 1) * 2^level` leaves and
/// never changes afterwards, so a store can write it once and keep it forever.
pub trait NodeSource {
    /// Error returned when a node cannot be read (missing, I/O failure, ...).
    type Error;

    /// Returns the root of the complete subtree at `(level, index)`.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<T: NodeSource + ?Sized> NodeSource for &T {
    type Error = T::Error;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// Error from [`inclusion_proof`] or [`consistency_proof`] (RFC 9162 §2.1.3.1 / §2.1.4.1).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError<E> {
    /// The leaf index is not inside the tree.
    #[error(
        "leaf index {index} is out of range for a tree of size {size}; ask for an index below the tree size"
    )]
    IndexOutOfRange {
        /// Requested leaf index.
        index: LeafIndex,
        /// Tree size the proof was requested for.
        size: TreeSize,
    },
    /// The "old" tree is larger than the "new" one.
    #[error(
        "cannot prove consistency from size {old} to the smaller size {new}; the first size must not exceed the second"
    )]
    SizeDecreased {
        /// First (older) tree size.
        old: TreeSize,
        /// Second (newer) tree size.
        new: TreeSize,
    },
    /// The node store failed to return a node the proof needs.
    #[error("reading a tree node from the node store failed: {0}")]
    Source(E),
}

/// Error from [`verify_inclusion`] or [`verify_consistency`] (RFC 9162 §2.1.3.2 / §2.1.4.2).
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum VerifyError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange {
        /// Claimed leaf index.
        index: LeafIndex,
        /// Claimed tree size.
        size: TreeSize,
    },
    /// The second tree is smaller than the first: the log went backwards.
    #[error(
        "new tree size {new} is smaller than old tree size {old}: a log never shrinks, so these tree heads cannot be consistent"
    )]
    SizeDecreased {
        /// First (older) tree size.
        old: TreeSize,
        /// Second (newer) tree size.
        new: TreeSize,
    },
    /// The proof has the wrong number of hashes for the claimed sizes/index.
    #[error(
        "proof has {got} hashes but the claimed index and size(s) require exactly {expected}; the proof belongs to different parameters or was truncated"
    )]
    WrongProofLength {
        /// Number of hashes supplied.
        got: usize,
        /// Number of hashes required.
        expected: usize,
    },
    /// Equal sizes were given with different roots: the log forked.
    #[error(
        "both tree heads have size {size} but different roots: the log has forked, keep both tree heads as evidence"
    )]
    RootsDifferAtSameSize {
        /// The shared tree size.
        size: TreeSize,
    },
    /// A zero-size tree head whose root is not `SHA-256("")`.
    #[error("a tree of size 0 must have the empty root {expected}, got {got}")]
    BadEmptyRoot {
        /// The supplied root.
        got: Hash,
        /// `SHA-256("")`.
        expected: Hash,
    },
    /// The proof reconstructs a different first (old) root.
    #[error(
        "proof reconstructs old root {computed} but the old tree head says {expected}; the proof or the old tree head is wrong"
    )]
    OldRootMismatch {
        /// Root reconstructed from the proof.
        computed: Hash,
        /// Root claimed by the caller.
        expected: Hash,
    },
    /// The proof reconstructs a different (new) root.
    #[error(
        "proof reconstructs root {computed} but the tree head says {expected}; the leaf, index, proof or tree head is wrong"
    )]
    RootMismatch {
        /// Root reconstructed from the proof.
        computed: Hash,
        /// Root claimed by the caller.
        expected: Hash,
    },
}

/// Nodes to write when appending leaf number `size` (zero-based) to a tree of `size` leaves.
///
/// Returns `(level, index, hash)` for the new leaf at level 0 and for every
/// parent that this leaf completes, bottom-up. Reads one sibling per completed
/// parent, i.e. `trailing_ones(size)` ≤ 64 reads (RFC 9162 §2.1.1 hashing).
pub fn append_nodes<S: NodeSource + ?Sized>(
    src: &S,
    size: TreeSize,
    leaf: Hash,
) -> Result<Vec<(u8, u64, Hash)>, S::Error> {
    let mut out = Vec::with_capacity(1 + size.0.trailing_ones() as usize);
    let mut hash = leaf;
    let mut index = size.0;
    let mut level = 0u8;
    out.push((level, index, hash));
    while index & 1 == 1 {
        let left = src.node(level, index - 1)?;
        hash = node_hash(&left, &hash);
        index >>= 1;
        level += 1;
        out.push((level, index, hash));
    }
    Ok(out)
}

/// Merkle tree hash `MTH(D[0:size])` of the first `size` leaves, RFC 9162 §2.1.1.
///
/// Reads one complete-subtree node per set bit of `size` (≤ 64 reads).
pub fn root<S: NodeSource + ?Sized>(src: &S, size: TreeSize) -> Result<Hash, S::Error> {
    if size.0 == 0 {
        return Ok(empty_root());
    }
    range_hash(src, 0, size.0)
}

/// Inclusion proof `PATH(index, D[0:size])`, RFC 9162 §2.1.3.1 (RFC 6962 §2.1.1).
///
/// Hashes are ordered from the leaf upwards, exactly as the RFC defines them.
/// Uses O(log n) node reads.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: LeafIndex,
    size: TreeSize,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index.0 >= size.0 {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::with_capacity(64);
    path(src, index.0, 0, size.0, &mut out).map_err(ProofError::Source)?;
    Ok(out)
}

/// Consistency proof `PROOF(old, D[0:new])`, RFC 9162 §2.1.4.1 (RFC 6962 §2.1.2).
///
/// Returns an empty proof when `old == 0` or `old == new` (nothing to prove).
/// Uses O(log n) node reads.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    old: TreeSize,
    new: TreeSize,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if old > new {
        return Err(ProofError::SizeDecreased { old, new });
    }
    let mut out = Vec::with_capacity(64);
    if old.0 == 0 || old == new {
        return Ok(out);
    }
    subproof(src, old.0, 0, new.0, true, &mut out).map_err(ProofError::Source)?;
    Ok(out)
}

/// Verifies an inclusion proof, RFC 9162 §2.1.3.2.
///
/// Note (inherent to RFC 9162): an inclusion proof binds the leaf to `root`
/// but does not fully bind `size`, nor the index across sizes (leaf 11 of 12's
/// proof also verifies as leaf 7 of 8 under the same root); for a given size
/// the index is bound. Always take `size` and `root` together from one signed
/// checkpoint.
pub fn verify_inclusion(
    leaf: &Hash,
    index: LeafIndex,
    size: TreeSize,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index.0 >= size.0 {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index.0, size.0);
    if proof.len() != expected {
        return Err(VerifyError::WrongProofLength {
            got: proof.len(),
            expected,
        });
    }
    let mut fnode = index.0;
    let mut snode = size.0 - 1;
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            // Unreachable after the length check; kept as the RFC's own guard.
            return Err(VerifyError::WrongProofLength {
                got: proof.len(),
                expected,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(VerifyError::WrongProofLength {
            got: proof.len(),
            expected,
        });
    }
    if r != *root {
        return Err(VerifyError::RootMismatch {
            computed: r,
            expected: *root,
        });
    }
    Ok(())
}

/// Verifies a consistency proof between two tree heads, RFC 9162 §2.1.4.2.
///
/// Edge cases: `old_size == new_size` requires an empty proof and equal roots;
/// `old_size == 0` requires an empty proof and `old_root == SHA-256("")`.
pub fn verify_consistency(
    old_size: TreeSize,
    new_size: TreeSize,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::SizeDecreased {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size || old_size.0 == 0 {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength {
                got: proof.len(),
                expected: 0,
            });
        }
        if old_size.0 == 0 {
            let empty = empty_root();
            if *old_root != empty {
                return Err(VerifyError::BadEmptyRoot {
                    got: *old_root,
                    expected: empty,
                });
            }
            if new_size.0 == 0 && *new_root != empty {
                return Err(VerifyError::BadEmptyRoot {
                    got: *new_root,
                    expected: empty,
                });
            }
            return Ok(());
        }
        if old_root != new_root {
            return Err(VerifyError::RootsDifferAtSameSize { size: old_size });
        }
        return Ok(());
    }

    let expected = consistency_proof_len(old_size.0, new_size.0);
    if proof.len() != expected {
        return Err(VerifyError::WrongProofLength {
            got: proof.len(),
            expected,
        });
    }

    // Step 2: if `first` is an exact power of two, prepend first_hash.
    let first_is_pow2 = old_size.0.is_power_of_two();
    let mut path = proof.iter();
    let seed = if first_is_pow2 {
        *old_root
    } else {
        match path.next() {
            Some(h) => *h,
            None => {
                return Err(VerifyError::WrongProofLength { got: 0, expected });
            }
        }
    };
    // Steps 3-4.
    let mut fnode = old_size.0 - 1;
    let mut snode = new_size.0 - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    let mut fr = seed;
    let mut sr = seed;
    // Step 6.
    for c in path {
        if snode == 0 {
            return Err(VerifyError::WrongProofLength {
                got: proof.len(),
                expected,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 7.
    if snode != 0 {
        return Err(VerifyError::WrongProofLength {
            got: proof.len(),
            expected,
        });
    }
    if fr != *old_root {
        return Err(VerifyError::OldRootMismatch {
            computed: fr,
            expected: *old_root,
        });
    }
    if sr != *new_root {
        return Err(VerifyError::RootMismatch {
            computed: sr,
            expected: *new_root,
        });
    }
    Ok(())
}

/// Error from reading a [`MemoryTree`] node that does not exist (yet).
#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
#[error(
    "node (level {level}, index {index}) is not a complete subtree of this in-memory tree of size {size}"
)]
pub struct MissingNode {
    /// Requested level.
    pub level: u8,
    /// Requested index within the level.
    pub index: u64,
    /// Tree size at the time of the request.
    pub size: TreeSize,
}

/// An in-memory log keeping every complete-subtree node, level by level.
///
/// `levels[l][i]` is node `(l, i)` as defined by [`NodeSource`]. Intended for
/// tests, the offline auditor and benchmarks; memory use is about 2·n hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Creates an empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> TreeSize {
        TreeSize(self.levels.first().map_or(0, |l| l.len() as u64))
    }

    /// Hashes `leaf_data` with [`leaf_hash`] and appends it; returns its index.
    pub fn append(&mut self, leaf_data: &[u8]) -> LeafIndex {
        self.append_leaf_hash(leaf_hash(leaf_data))
    }

    /// Appends an already computed leaf hash; returns its index.
    pub fn append_leaf_hash(&mut self, leaf: Hash) -> LeafIndex {
        let size = self.size();
        let nodes = match append_nodes(self, size, leaf) {
            Ok(nodes) => nodes,
            // `append_nodes` only reads left siblings below `size`, all of
            // which this tree holds by construction.
            Err(e) => unreachable!("MemoryTree invariant broken: {e}"),
        };
        for (level, index, hash) in nodes {
            let level = usize::from(level);
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            debug_assert_eq!(self.levels[level].len() as u64, index);
            self.levels[level].push(hash);
        }
        LeafIndex(size.0)
    }

    /// Root of the whole tree (RFC 9162 §2.1.1).
    pub fn root(&self) -> Hash {
        match root(self, self.size()) {
            Ok(h) => h,
            Err(e) => unreachable!("MemoryTree invariant broken: {e}"),
        }
    }
}

impl NodeSource for MemoryTree {
    type Error = MissingNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.levels
            .get(usize::from(level))
            .and_then(|l| usize::try_from(index).ok().and_then(|i| l.get(i)))
            .copied()
            .ok_or(MissingNode {
                level,
                index,
                size: self.size(),
            })
    }
}

// ---------------------------------------------------------------------------
// Internals.

/// Largest power of two strictly below `n` (the RFC's `k`); requires `n >= 2`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[start:end])` for a range whose `start` is a multiple of the smallest
/// power of two ≥ `end - start` (true of every range in the RFC recursion).
/// The range splits into one complete subtree per set bit of its length,
/// largest first; the RFC hash is their right fold.
fn range_hash<S: NodeSource + ?Sized>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    debug_assert!(end > start);
    let n = end - start;
    let mut pos = start;
    let mut parts: Vec<Hash> = Vec::with_capacity(n.count_ones() as usize);
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if n & width != 0 {
            debug_assert_eq!(pos % width, 0);
            parts.push(src.node(level, pos >> level)?);
            pos += width;
        }
    }
    let mut acc = match parts.pop() {
        Some(h) => h,
        None => return Ok(empty_root()),
    };
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// RFC 9162 §2.1.3.1 `PATH(m, D[start:end])`, `m` relative to `start`.
fn path<S: NodeSource + ?Sized>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.1 `SUBPROOF(m, D[start:end], b)`, `m` relative to `start`.
fn subproof<S: NodeSource + ?Sized>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(range_hash(src, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, start, start + k, complete, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// Number of hashes in `PATH(index, D[0:size])` for `index < size`.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    // Levels where the paths to `index` and to the last leaf diverge need one
    // sibling each; above that, one hash per set bit of the shared prefix.
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    // `inner` is 64 when the paths diverge at the top bit (sizes above 2^63): nothing is
    // shared then, and `>> 64` would overflow.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Number of hashes in `PROOF(old, D[0:new])` for `0 < old < new`.
fn consistency_proof_len(old: u64, new: u64) -> usize {
    let shift = old.trailing_zeros();
    let inner_full = 64 - ((old - 1) ^ (new - 1)).leading_zeros();
    // As in `inclusion_proof_len`: a shift by 64 shares nothing (found by fuzzing).
    let border = (old - 1).checked_shr(inner_full).unwrap_or(0).count_ones();
    let inner = inner_full - shift;
    let seed = usize::from(!old.is_power_of_two());
    seed + (inner + border) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Known-answer vectors from transparency-dev/merkle (the RFC 6962 test
    // vectors shared by Certificate Transparency implementations):
    //   testonly/constants.go  -> LeafInputs, NodeHashes, RootHashes
    //   proof/verify_test.go   -> inclusionProofs, consistencyProofs
    // https://github.com/transparency-dev/merkle

    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    const NODES: [&[&str]; 4] = [
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        &[
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        &[
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];

    /// (zero-based leaf index, tree size, proof) from proof/verify_test.go
    /// `inclusionProofs` (which lists one-based leaf numbers).
    const INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    /// (old size, new size, proof) from proof/verify_test.go `consistencyProofs`.
    const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn h(s: &str) -> Hash {
        Hash::from_hex(s).expect("test vector is valid hex")
    }

    fn hs(v: &[&str]) -> Vec<Hash> {
        v.iter().map(|s| h(s)).collect()
    }

    fn kat_tree() -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in LEAVES {
            t.append(&hex::decode(l).expect("test vector is valid hex"));
        }
        t
    }

    /// Naive RFC 9162 §2.1.1 MTH straight from the definition.
    fn naive_mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&naive_mth(&leaves[..k]), &naive_mth(&leaves[k..]))
            }
        }
    }

    /// A NodeSource that counts reads, to check the O(log n) claims.
    struct Counting<'a> {
        inner: &'a MemoryTree,
        reads: std::cell::Cell<usize>,
    }

    impl NodeSource for Counting<'_> {
        type Error = MissingNode;
        fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
            self.reads.set(self.reads.get() + 1);
            self.inner.node(level, index)
        }
    }

    /// Direction pattern of the RFC 9162 §2.1.3.2 walk for (index, size):
    /// `true` = proof hash on the left. Two sizes with the same pattern accept
    /// the same proof (RFC inclusion proofs do not bind the size exactly).
    fn walk_shape(index: u64, size: u64) -> Vec<bool> {
        walk(index, size - 1)
    }

    /// Same for the RFC 9162 §2.1.4.2 consistency walk: whether the old root
    /// seeds the walk, then the direction pattern.
    fn consistency_shape(old: u64, new: u64) -> (bool, Vec<bool>) {
        let (mut f, mut s) = (old - 1, new - 1);
        while f & 1 == 1 {
            f >>= 1;
            s >>= 1;
        }
        (old.is_power_of_two(), walk(f, s))
    }

    fn walk(mut f: u64, mut s: u64) -> Vec<bool> {
        let mut out = Vec::new();
        while s != 0 {
            if f & 1 == 1 || f == s {
                out.push(true);
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            } else {
                out.push(false);
            }
            f >>= 1;
            s >>= 1;
        }
        out
    }

    #[test]
    fn hashing_primitives_match_rfc_vectors() {
        assert_eq!(empty_root(), h(ROOTS[0]));
        assert_eq!(leaf_hash(b""), h(NODES[0][0]));
        assert_eq!(node_hash(&h(NODES[0][0]), &h(NODES[0][1])), h(NODES[1][0]));
    }

    #[test]
    fn kat_nodes_and_roots() {
        let t = kat_tree();
        for (level, row) in NODES.iter().enumerate() {
            for (i, want) in row.iter().enumerate() {
                assert_eq!(
                    t.node(level as u8, i as u64),
                    Ok(h(want)),
                    "node ({level},{i})"
                );
            }
        }
        for (size, want) in ROOTS.iter().enumerate() {
            assert_eq!(root(&t, TreeSize(size as u64)), Ok(h(want)), "root {size}");
        }
        assert_eq!(t.root(), h(ROOTS[8]));
    }

    #[test]
    fn kat_inclusion_proofs() {
        let t = kat_tree();
        for (index, size, want) in INCLUSION {
            let got = inclusion_proof(&t, LeafIndex(index), TreeSize(size)).expect("proof");
            assert_eq!(got, hs(want), "inclusion proof ({index}, {size})");
            let leaf = t.node(0, index).expect("leaf");
            let r = h(ROOTS[size as usize]);
            assert_eq!(
                verify_inclusion(&leaf, LeafIndex(index), TreeSize(size), &got, &r),
                Ok(())
            );
        }
    }

    #[test]
    fn kat_inclusion_corruptions_fail() {
        // Same probes as corruptInclusionProof in proof/verify_test.go.
        let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        for (index, size, want) in INCLUSION.iter().skip(1) {
            let (index, size, proof) = (*index, *size, hs(want));
            let leaf = leaf_hash(&hex::decode(LEAVES[index as usize]).expect("hex"));
            let r = h(ROOTS[size as usize]);
            let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
                (index.wrapping_sub(1), size, r, leaf, proof.clone()),
                (index + 1, size, r, leaf, proof.clone()),
                (index ^ 2, size, r, leaf, proof.clone()),
                (index, size * 2, r, leaf, proof.clone()),
                (index, size / 2, r, leaf, proof.clone()),
                (index, size, r, leaf_hash(b"WrongLeaf"), proof.clone()),
                (index, size, empty_root(), leaf, proof.clone()),
                (index, size, some, leaf, proof.clone()),
                (index, size, r, leaf, [proof.clone(), vec![r]].concat()),
                (index, size, r, leaf, [vec![r], proof.clone()].concat()),
            ];
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i].0[0] ^= 8;
                probes.push((index, size, r, leaf, p));
            }
            probes.push((index, size, r, leaf, proof[..proof.len() - 1].to_vec()));
            for (i, s, root, leaf, p) in probes {
                assert!(
                    verify_inclusion(&leaf, LeafIndex(i), TreeSize(s), &p, &root).is_err(),
                    "corrupted probe verified: index {i} size {s}"
                );
            }
        }
    }

    #[test]
    fn kat_consistency_proofs() {
        let t = kat_tree();
        for (old, new, want) in CONSISTENCY {
            let got = consistency_proof(&t, TreeSize(old), TreeSize(new)).expect("proof");
            assert_eq!(got, hs(want), "consistency proof ({old}, {new})");
            let (r1, r2) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
            assert_eq!(
                verify_consistency(TreeSize(old), TreeSize(new), &r1, &r2, &got),
                Ok(())
            );
        }
    }

    #[test]
    fn kat_consistency_corruptions_fail() {
        // Same probes as corruptConsistencyProof in proof/verify_test.go.
        for (old, new, want) in CONSISTENCY.iter().skip(1) {
            let (old, new, proof) = (*old, *new, hs(want));
            let (r1, r2) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
            let wrong = leaf_hash(b"WrongRoot");
            let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
                (old - 1, new, r1, r2, proof.clone()),
                (old + 1, new, r1, r2, proof.clone()),
                (old ^ 2, new, r1, r2, proof.clone()),
                (old, new * 2, r1, r2, proof.clone()),
                (old, new / 2, r1, r2, proof.clone()),
                (old, new, wrong, r2, proof.clone()),
                (old, new, r1, wrong, proof.clone()),
                (old, new, r2, r1, proof.clone()),
                (old, new, r1, r2, vec![]),
                (old, new, r1, r2, [proof.clone(), vec![r1]].concat()),
                (old, new, r1, r2, [proof.clone(), vec![r2]].concat()),
                (old, new, r1, r2, [vec![r1], proof.clone()].concat()),
                (old, new, r1, r2, [vec![r2], proof.clone()].concat()),
                (old, new, r1, r2, [vec![proof[0]], proof.clone()].concat()),
                (old, new, r1, r2, proof[..proof.len() - 1].to_vec()),
            ];
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i].0[0] ^= 16;
                probes.push((old, new, r1, r2, p));
            }
            for (o, n, a, b, p) in probes {
                assert!(
                    verify_consistency(TreeSize(o), TreeSize(n), &a, &b, &p).is_err(),
                    "corrupted probe verified: {o} -> {n}"
                );
            }
        }
    }

    #[test]
    fn consistency_edge_cases() {
        let e = empty_root();
        let x = leaf_hash(b"x");
        let y = leaf_hash(b"y");
        assert_eq!(
            verify_consistency(TreeSize(0), TreeSize(0), &e, &e, &[]),
            Ok(())
        );
        assert_eq!(
            verify_consistency(TreeSize(0), TreeSize(1), &e, &x, &[]),
            Ok(())
        );
        assert_eq!(
            verify_consistency(TreeSize(1), TreeSize(1), &x, &x, &[]),
            Ok(())
        );
        assert_eq!(
            verify_consistency(TreeSize(1), TreeSize(1), &x, &y, &[]),
            Err(VerifyError::RootsDifferAtSameSize { size: TreeSize(1) })
        );
        assert!(matches!(
            verify_consistency(TreeSize(0), TreeSize(1), &x, &y, &[]),
            Err(VerifyError::BadEmptyRoot { .. })
        ));
        assert!(matches!(
            verify_consistency(TreeSize(1), TreeSize(1), &x, &x, &[e]),
            Err(VerifyError::WrongProofLength {
                got: 1,
                expected: 0
            })
        ));
        assert!(matches!(
            verify_consistency(TreeSize(2), TreeSize(1), &x, &y, &[]),
            Err(VerifyError::SizeDecreased { .. })
        ));
        assert!(matches!(
            verify_consistency(TreeSize(1), TreeSize(2), &x, &y, &[]),
            Err(VerifyError::WrongProofLength {
                got: 0,
                expected: 1
            })
        ));
    }

    #[test]
    fn proof_request_errors() {
        let t = kat_tree();
        assert_eq!(
            inclusion_proof(&t, LeafIndex(8), TreeSize(8)),
            Err(ProofError::IndexOutOfRange {
                index: LeafIndex(8),
                size: TreeSize(8)
            })
        );
        assert!(matches!(
            inclusion_proof(&t, LeafIndex(0), TreeSize(0)),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        assert_eq!(
            consistency_proof(&t, TreeSize(5), TreeSize(3)),
            Err(ProofError::SizeDecreased {
                old: TreeSize(5),
                new: TreeSize(3)
            })
        );
        assert_eq!(consistency_proof(&t, TreeSize(0), TreeSize(8)), Ok(vec![]));
        assert!(matches!(
            inclusion_proof(&t, LeafIndex(0), TreeSize(9)),
            Err(ProofError::Source(MissingNode { .. }))
        ));
        assert!(matches!(
            verify_inclusion(&empty_root(), LeafIndex(0), TreeSize(0), &[], &empty_root()),
            Err(VerifyError::IndexOutOfRange { .. })
        ));
        let msg = ProofError::<MissingNode>::IndexOutOfRange {
            index: LeafIndex(3),
            size: TreeSize(2),
        }
        .to_string();
        assert!(
            msg.contains("leaf index 3") && msg.contains("size 2"),
            "{msg}"
        );
    }

    #[test]
    fn append_nodes_reports_completed_parents() {
        let t = kat_tree();
        // Appending leaf 7 to a 7-leaf tree completes (1,3), (2,1) and (3,0).
        let mut seven = MemoryTree::new();
        for l in &LEAVES[..7] {
            seven.append(&hex::decode(l).expect("hex"));
        }
        let leaf7 = t.node(0, 7).expect("leaf");
        let got = append_nodes(&seven, TreeSize(7), leaf7).expect("append");
        let want = vec![
            (0, 7, h(NODES[0][7])),
            (1, 3, h(NODES[1][3])),
            (2, 1, h(NODES[2][1])),
            (3, 0, h(NODES[3][0])),
        ];
        assert_eq!(got, want);
        // Appending to an even size creates only the leaf and reads nothing.
        let c = Counting {
            inner: &t,
            reads: 0.into(),
        };
        assert_eq!(
            append_nodes(&c, TreeSize(8), leaf7).expect("append").len(),
            1
        );
        assert_eq!(c.reads.get(), 0);
    }

    #[test]
    fn operations_use_logarithmic_reads() {
        let mut t = MemoryTree::new();
        for i in 0u32..5000 {
            t.append(&i.to_be_bytes());
        }
        let c = Counting {
            inner: &t,
            reads: 0.into(),
        };
        for (a, b) in [(1u64, 5000u64), (1234, 4999), (4095, 4097), (2047, 5000)] {
            c.reads.set(0);
            root(&c, TreeSize(b)).expect("root");
            assert!(c.reads.get() <= 64, "root({b}) read {}", c.reads.get());
            c.reads.set(0);
            inclusion_proof(&c, LeafIndex(a), TreeSize(b)).expect("incl");
            assert!(
                c.reads.get() <= 2 * 64,
                "incl({a},{b}) read {}",
                c.reads.get()
            );
            c.reads.set(0);
            consistency_proof(&c, TreeSize(a), TreeSize(b)).expect("cons");
            assert!(
                c.reads.get() <= 3 * 64,
                "cons({a},{b}) read {}",
                c.reads.get()
            );
        }
    }

    fn build(n: u64) -> (MemoryTree, Vec<Hash>) {
        let mut t = MemoryTree::new();
        let mut leaves = Vec::with_capacity(n as usize);
        for i in 0..n {
            t.append(&i.to_le_bytes());
            leaves.push(leaf_hash(&i.to_le_bytes()));
        }
        (t, leaves)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn root_matches_naive_reference(n in 0u64..2000) {
            let (t, leaves) = build(n);
            for size in [n, n / 2, n.saturating_sub(1), n / 3] {
                prop_assert_eq!(
                    root(&t, TreeSize(size)).expect("root"),
                    naive_mth(&leaves[..size as usize])
                );
            }
        }

        #[test]
        fn inclusion_proofs_verify_and_reject_tampering(
            n in 1u64..2000,
            seed in any::<u64>(),
        ) {
            let (t, leaves) = build(n);
            let r = root(&t, TreeSize(n)).expect("root");
            // Every index for small trees, a sample for larger ones.
            let step = (n / 64).max(1);
            let mut idx = seed % step;
            while idx < n {
                let proof = inclusion_proof(&t, LeafIndex(idx), TreeSize(n)).expect("proof");
                prop_assert_eq!(proof.len(), inclusion_proof_len(idx, n));
                let leaf = leaves[idx as usize];
                prop_assert_eq!(
                    verify_inclusion(&leaf, LeafIndex(idx), TreeSize(n), &proof, &r),
                    Ok(())
                );
                // Changed leaf.
                let bad_leaf = leaf_hash(b"changed");
                prop_assert!(verify_inclusion(&bad_leaf, LeafIndex(idx), TreeSize(n), &proof, &r).is_err());
                // Wrong index.
                for other in [idx.wrapping_sub(1), idx + 1, idx ^ 2, seed % n] {
                    if other != idx {
                        prop_assert!(verify_inclusion(&leaf, LeafIndex(other), TreeSize(n), &proof, &r).is_err());
                    }
                }
                // Wrong size: must fail unless the RFC walk is identical
                // (the known size-malleability of RFC 9162 inclusion proofs).
                for other in [n - 1, n + 1, n * 2, n / 2, seed % (2 * n) + 1] {
                    if other != n {
                        let res = verify_inclusion(&leaf, LeafIndex(idx), TreeSize(other), &proof, &r);
                        let same_walk = idx < other && walk_shape(idx, other) == walk_shape(idx, n);
                        prop_assert_eq!(res.is_ok(), same_walk, "size {} vs {}", other, n);
                    }
                }
                // Tampered proof element.
                if !proof.is_empty() {
                    let mut p = proof.clone();
                    let k = (seed as usize) % p.len();
                    p[k].0[31] ^= 1;
                    prop_assert!(verify_inclusion(&leaf, LeafIndex(idx), TreeSize(n), &p, &r).is_err());
                }
                idx += step;
            }
        }

        #[test]
        fn consistency_proofs_verify_and_reject_tampering(
            n in 1u64..2000,
            seed in any::<u64>(),
        ) {
            let (t, leaves) = build(n);
            let r2 = root(&t, TreeSize(n)).expect("root");
            let step = (n / 48).max(1);
            let mut old = seed % step;
            while old <= n {
                let r1 = root(&t, TreeSize(old)).expect("root");
                let proof = consistency_proof(&t, TreeSize(old), TreeSize(n)).expect("proof");
                prop_assert_eq!(
                    verify_consistency(TreeSize(old), TreeSize(n), &r1, &r2, &proof),
                    Ok(())
                );
                if old > 0 && old < n {
                    prop_assert_eq!(proof.len(), consistency_proof_len(old, n));
                    // Old tree with a changed leaf.
                    let mut changed = leaves[..old as usize].to_vec();
                    let k = (seed % old) as usize;
                    changed[k] = leaf_hash(b"changed");
                    let bad_r1 = naive_mth(&changed);
                    prop_assert!(verify_consistency(TreeSize(old), TreeSize(n), &bad_r1, &r2, &proof).is_err());
                    // Wrong new root.
                    prop_assert!(verify_consistency(TreeSize(old), TreeSize(n), &r1, &r1, &proof).is_err());
                    // Tampered proof element.
                    let mut p = proof.clone();
                    let j = (seed as usize) % p.len();
                    p[j].0[0] ^= 0x80;
                    prop_assert!(verify_consistency(TreeSize(old), TreeSize(n), &r1, &r2, &p).is_err());
                    // Wrong sizes with the real roots: must fail unless the RFC
                    // walk is identical (consistency proofs share the size
                    // malleability of inclusion proofs).
                    for (o, m) in [(old, n + 1), (old, n - 1), (old + 1, n), (old - 1, n)] {
                        if o > 0 && o < m {
                            let res = verify_consistency(TreeSize(o), TreeSize(m), &r1, &r2, &proof);
                            let same_walk = consistency_shape(o, m) == consistency_shape(old, n);
                            prop_assert_eq!(res.is_ok(), same_walk, "{} -> {} checked as {} -> {}", old, n, o, m);
                        }
                    }
                    prop_assert!(verify_consistency(TreeSize(n), TreeSize(old), &r2, &r1, &proof).is_err());
                }
                old += step;
            }
        }

        #[test]
        fn append_nodes_matches_memory_tree(n in 0u64..600) {
            let (t, _) = build(n);
            let leaf = leaf_hash(b"next");
            let nodes = append_nodes(&t, TreeSize(n), leaf).expect("append");
            prop_assert_eq!(nodes.len(), 1 + n.trailing_ones() as usize);
            let mut t2 = t.clone();
            t2.append_leaf_hash(leaf);
            for (level, index, hash) in nodes {
                prop_assert_eq!(t2.node(level, index), Ok(hash));
            }
        }
    }
}
