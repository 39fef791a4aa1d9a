//! Inclusion and consistency proofs over the stored Merkle tiles, in O(log n) node reads of
//! one tile each (docs/merkle-notes.md), plus a bulk tree writer for benchmarks.

use super::tiles::{self, TILE};
use super::{Store, StoreConfig, StoreError, StoredEntry, entry_files};
use crate::log::{self, Hash, LeafIndex, ProofError, TileEdge, TreeSize};
use std::path::Path;
use thiserror::Error;

/// A proof request the log cannot answer. Messages name the request fields
/// (`leaf_index`, `tree_size`, `old_size`, `new_size`) as in `coalition.v1.Audit`.
#[derive(Debug, Error)]
pub enum ProofRequestError {
    /// The leaf is not inside the tree asked about.
    #[error(
        "leaf_index {index} is not below tree_size {tree_size}: ask for a tree that contains the leaf (tree_size > leaf_index)"
    )]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Requested tree size.
        tree_size: u64,
    },
    /// A tree size beyond what the log holds.
    #[error(
        "{field} {size} is beyond the log size {log_size}: ask for at most the latest checkpoint's tree size"
    )]
    BeyondLog {
        /// The request field.
        field: &'static str,
        /// Requested size.
        size: u64,
        /// Durable log size.
        log_size: u64,
    },
    /// The old tree is larger than the new one.
    #[error(
        "old_size {old} is larger than new_size {new}: a consistency proof goes from an older (smaller) tree to a newer one"
    )]
    SizeDecreased {
        /// Requested old size.
        old: u64,
        /// Requested new size.
        new: u64,
    },
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ProofError<StoreError>> for ProofRequestError {
    fn from(e: ProofError<StoreError>) -> Self {
        match e {
            ProofError::IndexOutOfRange { index, size } => ProofRequestError::IndexOutOfRange {
                index: index.0,
                tree_size: size.0,
            },
            ProofError::SizeDecreased { old, new } => ProofRequestError::SizeDecreased {
                old: old.0,
                new: new.0,
            },
            ProofError::Source(e) => ProofRequestError::Store(e),
        }
    }
}

impl Store {
    /// The audit path of leaf `index` in the tree of the first `tree_size` entries
    /// (RFC 9162 §2.1.3.1), leaf first. At most 128 node reads, each one tile read (and at
    /// most 127 node hashes inside the tile).
    pub fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, ProofRequestError> {
        self.check_size("tree_size", tree_size)?;
        if index >= tree_size {
            return Err(ProofRequestError::IndexOutOfRange { index, tree_size });
        }
        Ok(log::inclusion_proof(
            &tiles::nodes(&self.log, tree_size),
            LeafIndex(index),
            TreeSize(tree_size),
        )?)
    }

    /// The consistency proof from the tree of `old_size` entries to that of `new_size`
    /// (RFC 9162 §2.1.4.1); empty when `old_size` is 0 or equals `new_size`. At most 192
    /// node reads.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, ProofRequestError> {
        if old_size > new_size {
            return Err(ProofRequestError::SizeDecreased {
                old: old_size,
                new: new_size,
            });
        }
        self.check_size("new_size", new_size)?;
        Ok(log::consistency_proof(
            &tiles::nodes(&self.log, new_size),
            TreeSize(old_size),
            TreeSize(new_size),
        )?)
    }

    fn check_size(&self, field: &'static str, size: u64) -> Result<(), ProofRequestError> {
        let log_size = self.log_size();
        if size > log_size {
            return Err(ProofRequestError::BeyondLog {
                field,
                size,
                log_size,
            });
        }
        Ok(())
    }
}

/// Benchmark support, not part of the API: writes the Merkle tiles of a `leaves`-leaf tree
/// (leaf `i` has data `i` as 8 big-endian bytes) into an empty data directory, plus one
/// placeholder entry at `leaves - 1` (written through the entry files, with positions
/// `0..leaves - 1` left without a record, a hole in the offsets file) and that log size, so
/// that [`Store::open`] reports it. Entries `0..leaves - 1` do not exist: only proofs and
/// roots work on such a store.
///
/// Streams: leaves go through a [`TileEdge`] and its finished tiles are written every 65,536
/// leaves, so memory stays a few MiB whatever the size. Returns the number of tile writes.
#[doc(hidden)]
pub fn write_synthetic_tree(
    dir: &Path,
    leaves: u64,
    config: &StoreConfig,
) -> Result<u64, StoreError> {
    /// Leaves between two batches (256 full level-0 tiles, 2 MiB).
    const BATCH_LEAVES: u64 = 1 << 16;
    let db = super::open_db(dir, config)?;
    let tree = db.open_tree("log")?;
    let (_, mut entries, size) = entry_files::open(dir, &db, &tree)?;
    if size > 0 || tree.scan_prefix([TILE]).next().is_some() {
        return Err(StoreError::Unavailable(format!(
            "{} already holds a log; synthetic trees go into an empty directory",
            dir.display()
        )));
    }
    let mut edge = TileEdge::new();
    let mut written = 0u64;
    let mut batch = sled::Batch::default();
    for i in 0..leaves {
        edge.append(log::leaf_hash(&i.to_be_bytes()));
        if (i + 1) % BATCH_LEAVES == 0 {
            written += tiles::stage(&mut edge, &mut batch) as u64;
            tree.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    written += tiles::stage(&mut edge, &mut batch) as u64;
    if leaves > 0 {
        // Positions without records have no ids: the id index covers them as empty.
        super::id_index::write_empty_run(dir, leaves - 1)?;
        entries.write_gap(leaves - 1)?;
        entries.stage(&StoredEntry {
            seq: leaves - 1,
            received_at_ms: 0,
            statement_id: vec![0; 32],
            envelope: None,
            relay: None,
        });
    }
    entry_files::stage_log_size(&mut batch, entries.sync()?);
    tree.apply_batch(batch)?;
    db.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::MemoryTree;

    #[test]
    fn synthetic_tree_matches_memory_tree_and_proofs_check_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 1000u64;
        let tiles = write_synthetic_tree(dir.path(), n, &StoreConfig::default()).expect("write");
        assert_eq!(
            tiles,
            4 + 1,
            "tile/0/000..002, tile/0/003.p/232, tile/1/000.p/3"
        );
        let store = Store::open(dir.path(), &StoreConfig::default()).expect("open");
        assert_eq!(store.log_size(), n);
        let mut mem = MemoryTree::new();
        for i in 0..n {
            mem.append(&i.to_be_bytes());
        }
        for size in [1u64, 2, 3, 511, 512, 513, 999, 1000] {
            assert_eq!(
                store.root(size).expect("root"),
                log::root(&mem, TreeSize(size)).expect("root")
            );
            for index in [0, size / 3, size - 1] {
                assert_eq!(
                    store.inclusion_proof(index, size).expect("proof"),
                    log::inclusion_proof(&mem, LeafIndex(index), TreeSize(size)).expect("proof")
                );
            }
            for old in [0, 1, size / 2, size] {
                assert_eq!(
                    store.consistency_proof(old, size).expect("proof"),
                    log::consistency_proof(&mem, TreeSize(old), TreeSize(size)).expect("proof")
                );
            }
        }
        assert!(matches!(
            store.inclusion_proof(5, 5),
            Err(ProofRequestError::IndexOutOfRange {
                index: 5,
                tree_size: 5
            })
        ));
        let beyond = store.inclusion_proof(0, n + 1).expect_err("beyond");
        assert!(beyond.to_string().contains("tree_size 1001"), "{beyond}");
        assert!(matches!(
            store.consistency_proof(0, n + 1),
            Err(ProofRequestError::BeyondLog {
                field: "new_size",
                ..
            })
        ));
        let decreased = store.consistency_proof(7, 6).expect_err("decreased");
        assert!(decreased.to_string().contains("old_size 7"), "{decreased}");
        drop(store);
        assert!(write_synthetic_tree(dir.path(), 3, &StoreConfig::default()).is_err());
    }

    /// Synthetic trees across tile and tile-level boundaries (and two random larger sizes):
    /// roots near the size and proofs of random leaves equal the in-memory tree's.
    #[test]
    fn synthetic_trees_across_tile_boundaries() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut sizes = vec![255u64, 256, 257, 65_535, 65_536, 65_537];
        sizes.extend((0..2).map(|_| rng.gen_range(65_538..200_000)));
        let largest = *sizes.iter().max().expect("sizes");
        let mut mem = MemoryTree::new();
        for i in 0..largest {
            mem.append(&i.to_be_bytes());
        }
        for n in sizes {
            let dir = tempfile::tempdir().expect("tempdir");
            write_synthetic_tree(dir.path(), n, &StoreConfig::default()).expect("write");
            let store = Store::open(dir.path(), &StoreConfig::default()).expect("open");
            assert_eq!(store.log_size(), n);
            for size in [1, 2, n / 2, n.saturating_sub(256), n - 255, n - 1, n] {
                assert_eq!(
                    store.root(size).expect("root"),
                    log::root(&mem, TreeSize(size)).expect("root"),
                    "root {size} of {n}"
                );
            }
            for _ in 0..50 {
                let size = rng.gen_range(1..=n);
                let index = rng.gen_range(0..size);
                assert_eq!(
                    store.inclusion_proof(index, size).expect("proof"),
                    log::inclusion_proof(&mem, LeafIndex(index), TreeSize(size)).expect("proof"),
                    "leaf {index} of {size}"
                );
                let old = rng.gen_range(0..=size);
                assert_eq!(
                    store.consistency_proof(old, size).expect("proof"),
                    log::consistency_proof(&mem, TreeSize(old), TreeSize(size)).expect("proof"),
                    "{old} -> {size}"
                );
            }
        }
    }
}
