//! The right edge of a Merkle tree: the roots of its complete subtrees, largest first.
//!
//! What a verifier that replays a whole log needs: O(log n) memory, amortized O(1) per appended
//! leaf, and the RFC 6962 root at the current size in O(log n) — no stored nodes.

use super::tree::{Hash, NodeSource, TreeSize, empty_root, node_hash};

/// A Merkle tree reduced to its right edge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of the complete subtrees that make up the tree, left (largest) to right.
    edge: Vec<Hash>,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// Number of leaves appended.
    pub fn size(&self) -> TreeSize {
        TreeSize(self.size)
    }

    /// The roots of the complete subtrees, largest first (what a client saves to resume).
    pub fn edge(&self) -> &[Hash] {
        &self.edge
    }

    /// Rebuilds a frontier saved with [`Frontier::size`] and [`Frontier::edge`]; `None` if
    /// the edge cannot belong to a tree of that size (one root per 1 bit of the size).
    pub fn from_edge(size: TreeSize, edge: Vec<Hash>) -> Option<Self> {
        (size.0.count_ones() as usize == edge.len()).then_some(Frontier { size: size.0, edge })
    }

    /// The frontier of the first `size` leaves of a stored tree: one complete-subtree node per
    /// set bit of `size` (≤ 64 reads).
    pub fn from_nodes<S: NodeSource + ?Sized>(src: &S, size: TreeSize) -> Result<Self, S::Error> {
        let mut edge = Vec::with_capacity(size.0.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size.0 & (1u64 << level) != 0 {
                edge.push(src.node(level, start >> level)?);
                start += 1u64 << level;
            }
        }
        Ok(Frontier { size: size.0, edge })
    }

    /// Appends a leaf hash (`log::leaf_hash` of the leaf data).
    pub fn append(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut n = self.size;
        // Each trailing 1 bit of the old size is a complete subtree the new leaf completes.
        while n & 1 == 1 {
            if let Some(left) = self.edge.pop() {
                hash = node_hash(&left, &hash);
            }
            n >>= 1;
        }
        self.edge.push(hash);
        self.size += 1;
    }

    /// The RFC 6962 root at the current size.
    pub fn root(&self) -> Hash {
        let mut edge = self.edge.iter().rev();
        match edge.next() {
            None => empty_root(),
            Some(last) => edge.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tree::{MemoryTree, leaf_hash};

    #[test]
    fn root_matches_the_full_tree_at_every_size() {
        let mut full = MemoryTree::new();
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), full.root());
        for i in 0u32..300 {
            let data = i.to_be_bytes();
            full.append(&data);
            frontier.append(leaf_hash(&data));
            assert_eq!(frontier.size(), full.size());
            assert_eq!(frontier.root(), full.root(), "size {}", i + 1);
            assert!(frontier.edge.len() <= 9);
            let stored = Frontier::from_nodes(&full, full.size()).expect("complete subtrees");
            assert_eq!(stored, frontier, "size {}", i + 1);
        }
    }
}
