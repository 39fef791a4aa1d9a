//! Append-only Merkle log math (RFC 6962 / RFC 9162) and C2SP signed checkpoints; pure functions, no I/O.
//!
//! See `docs/merkle-notes.md` for the node layout and the
//! O(log n) argument behind every operation.

pub mod audit;
pub mod checkpoint;
pub mod cosignature;
pub mod frontier;
pub mod signer;
pub mod tiles;
pub mod tree;

pub use audit::{
    ProofCheckError, verify_consistency_between_checkpoints, verify_inclusion_in_checkpoint,
};
pub use checkpoint::{
    Checkpoint, CheckpointError, KeyId, VerifierKey, VerifierKeyError, key_id, sign_note,
    verify_note,
};
pub use frontier::Frontier;
pub use signer::{CheckpointSigner, SignedCheckpoint};
pub use tiles::{ShortTile, TileEdge, TileId, TileNodes, TilePathError, TileReader};
pub use tree::{
    Hash, LeafIndex, MemoryTree, MissingNode, NodeSource, ProofError, TreeSize, VerifyError,
    append_nodes, consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root,
    verify_consistency, verify_inclusion,
};
