//! Client-side verification of the hub's proofs against its signed checkpoints, shared by the
//! CLI, auditors and tests. Transport-free: the caller fetches notes and proofs however it likes.

use thiserror::Error;

use super::checkpoint::{CheckpointError, VerifierKey};
use super::signer::SignedCheckpoint;
use super::tree::{Hash, LeafIndex, VerifyError};

/// Why a proof against signed checkpoints was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofCheckError {
    /// A checkpoint note does not verify with the trusted key, or is not a checkpoint of its log.
    #[error("checkpoint rejected: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The inclusion proof does not lead from the leaf to the checkpoint's root.
    #[error("inclusion proof rejected: {0}")]
    Inclusion(VerifyError),
    /// The consistency proof does not link the two checkpoints: if both are validly signed,
    /// the pair is evidence that the log forked or rewrote history.
    #[error("consistency proof rejected: {0}")]
    Consistency(VerifyError),
}

/// Verifies the signed checkpoint `note` with `key`, then that `leaf_data` is its leaf
/// `index` given the audit path `proof`. Returns the verified checkpoint.
///
/// For a hub receipt, `leaf_data` is `store::leaf_data(statement_id, received_at_ms)` and
/// `index` is the receipt's `seq`.
pub fn verify_inclusion_in_checkpoint(
    key: &VerifierKey,
    note: &str,
    leaf_data: &[u8],
    index: LeafIndex,
    proof: &[Hash],
) -> Result<SignedCheckpoint, ProofCheckError> {
    let checkpoint = SignedCheckpoint::verify(note, key)?;
    checkpoint
        .verify_inclusion(leaf_data, index, proof)
        .map_err(ProofCheckError::Inclusion)?;
    Ok(checkpoint)
}

/// Verifies both signed checkpoints with `key`, then that the newer extends the older given
/// the consistency `proof`. Returns `(older, newer)`.
pub fn verify_consistency_between_checkpoints(
    key: &VerifierKey,
    old_note: &str,
    new_note: &str,
    proof: &[Hash],
) -> Result<(SignedCheckpoint, SignedCheckpoint), ProofCheckError> {
    let old = SignedCheckpoint::verify(old_note, key)?;
    let new = SignedCheckpoint::verify(new_note, key)?;
    old.verify_consistency_to(&new, proof)
        .map_err(ProofCheckError::Consistency)?;
    Ok((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{CheckpointSigner, MemoryTree, TreeSize, consistency_proof, inclusion_proof};
    use ed25519_dalek::SigningKey;

    fn setup(n: u32) -> (CheckpointSigner, MemoryTree) {
        let signer =
            CheckpointSigner::new("coalition.example/hub", SigningKey::from_bytes(&[5; 32]))
                .expect("signer");
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.append(&i.to_be_bytes());
        }
        (signer, t)
    }

    #[test]
    fn inclusion_against_signed_checkpoint() {
        let (signer, t) = setup(13);
        let note = signer
            .sign(TreeSize(13), t.root())
            .expect("sign")
            .into_note();
        let vk = signer.verifier_key();
        for i in 0..13u32 {
            let proof = inclusion_proof(&t, LeafIndex(u64::from(i)), TreeSize(13)).expect("proof");
            let cp = verify_inclusion_in_checkpoint(
                vk,
                &note,
                &i.to_be_bytes(),
                LeafIndex(u64::from(i)),
                &proof,
            )
            .expect("verifies");
            assert_eq!(cp.size(), TreeSize(13));
            // Wrong leaf data, wrong index.
            assert!(matches!(
                verify_inclusion_in_checkpoint(
                    vk,
                    &note,
                    b"other",
                    LeafIndex(u64::from(i)),
                    &proof
                ),
                Err(ProofCheckError::Inclusion(_))
            ));
            assert!(
                verify_inclusion_in_checkpoint(
                    vk,
                    &note,
                    &i.to_be_bytes(),
                    LeafIndex(u64::from((i + 1) % 13)),
                    &proof
                )
                .is_err()
            );
        }
        // A note signed by another key.
        let other =
            CheckpointSigner::new("coalition.example/hub", SigningKey::from_bytes(&[6; 32]))
                .expect("signer");
        let forged = other
            .sign(TreeSize(13), t.root())
            .expect("sign")
            .into_note();
        let proof = inclusion_proof(&t, LeafIndex(0), TreeSize(13)).expect("proof");
        assert!(matches!(
            verify_inclusion_in_checkpoint(vk, &forged, &0u32.to_be_bytes(), LeafIndex(0), &proof),
            Err(ProofCheckError::Checkpoint(
                CheckpointError::WrongKeyId { .. }
            ))
        ));
    }

    #[test]
    fn consistency_between_signed_checkpoints() {
        let (signer, t) = setup(21);
        let vk = signer.verifier_key();
        let sign = |n: u64| {
            signer
                .sign(
                    TreeSize(n),
                    crate::log::root(&t, TreeSize(n)).expect("root"),
                )
                .expect("sign")
                .into_note()
        };
        for (a, b) in [(1u64, 21u64), (7, 8), (8, 21), (13, 13), (0, 5)] {
            let proof = consistency_proof(&t, TreeSize(a), TreeSize(b)).expect("proof");
            let (old, new) =
                verify_consistency_between_checkpoints(vk, &sign(a), &sign(b), &proof).expect("ok");
            assert_eq!((old.size(), new.size()), (TreeSize(a), TreeSize(b)));
        }
        // Swapped order, and a forked newer head (another root at size 8).
        let proof = consistency_proof(&t, TreeSize(3), TreeSize(8)).expect("proof");
        assert!(matches!(
            verify_consistency_between_checkpoints(vk, &sign(8), &sign(3), &proof),
            Err(ProofCheckError::Consistency(
                VerifyError::SizeDecreased { .. }
            ))
        ));
        let fork = signer
            .sign(TreeSize(8), Hash([7; 32]))
            .expect("sign")
            .into_note();
        assert!(matches!(
            verify_consistency_between_checkpoints(vk, &sign(3), &fork, &proof),
            Err(ProofCheckError::Consistency(_))
        ));
        assert!(matches!(
            verify_consistency_between_checkpoints(vk, &sign(8), &fork, &[]),
            Err(ProofCheckError::Consistency(
                VerifyError::RootsDifferAtSameSize { .. }
            ))
        ));
    }
}
