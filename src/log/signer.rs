//! The log's checkpoint-signing identity and the signed checkpoints it produces.
//!
//! The key name of every signature is the checkpoint origin (C2SP tlog-checkpoint: the key
//! name SHOULD equal the origin), so one string names the log and its key.

use std::fmt;

use ed25519_dalek::SigningKey;

use super::checkpoint::{Checkpoint, CheckpointError, VerifierKey, is_valid_key_name};
use super::tree::{
    Hash, LeafIndex, TreeSize, VerifyError, leaf_hash, verify_consistency, verify_inclusion,
};

/// The hub's checkpoint-signing identity: the log origin (also the note key name) and an
/// Ed25519 signing key.
///
/// `Debug` never prints the private key.
#[derive(Clone)]
pub struct CheckpointSigner {
    origin: String,
    key: SigningKey,
    verifier: VerifierKey,
}

impl CheckpointSigner {
    /// A signer for `origin` (e.g. `coalition.example/hub`) with `key`.
    ///
    /// The origin must be usable both as a checkpoint's first line and as a signed-note key
    /// name: non-empty, no whitespace, no `+`, no control characters.
    pub fn new(origin: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        Checkpoint::new(origin, TreeSize(0), Hash([0; 32])).validate()?;
        if !is_valid_key_name(origin) {
            return Err(CheckpointError::InvalidKeyName {
                name: origin.to_owned(),
            });
        }
        let verifier = VerifierKey::from_signing_key(origin, &key).map_err(|_| {
            CheckpointError::InvalidKeyName {
                name: origin.to_owned(),
            }
        })?;
        Ok(CheckpointSigner {
            origin: origin.to_owned(),
            key,
            verifier,
        })
    }

    /// The checkpoint origin, which is also the key name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key clients pin: `<origin>+<key id>+<base64 key>`.
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Signs the checkpoint `(origin, size, root)` as a C2SP signed note.
    ///
    /// Ed25519 signatures are deterministic: the same size and root always give the same note.
    pub fn sign(&self, size: TreeSize, root: Hash) -> Result<SignedCheckpoint, CheckpointError> {
        let checkpoint = Checkpoint::new(self.origin.clone(), size, root);
        let note = checkpoint.sign(&self.origin, &self.key)?;
        Ok(SignedCheckpoint { checkpoint, note })
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointSigner({})", self.verifier)
    }
}

/// A checkpoint together with its signed-note text, as signed by a [`CheckpointSigner`] or
/// opened with [`SignedCheckpoint::verify`]: the fields always agree with the note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: String,
}

impl SignedCheckpoint {
    /// Opens a signed note with a trusted key, parses its checkpoint body and checks that the
    /// origin is the key name (this project's convention, see [`CheckpointSigner`]).
    pub fn verify(note: &str, key: &VerifierKey) -> Result<Self, CheckpointError> {
        let checkpoint = Checkpoint::parse_and_verify(note, key)?;
        if checkpoint.origin != key.name() {
            return Err(CheckpointError::OriginMismatch {
                origin: checkpoint.origin,
                expected: key.name().to_owned(),
            });
        }
        Ok(SignedCheckpoint {
            checkpoint,
            note: note.to_owned(),
        })
    }

    /// The parsed checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The tree size it commits to.
    pub fn size(&self) -> TreeSize {
        self.checkpoint.size
    }

    /// The root hash at that size.
    pub fn root(&self) -> Hash {
        self.checkpoint.root
    }

    /// The signed-note text.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// The signed-note text, by value.
    pub fn into_note(self) -> String {
        self.note
    }

    /// Checks that `leaf_data` is leaf `index` of the tree this checkpoint commits to
    /// (RFC 9162 §2.1.3.2, leaf hash `SHA-256(0x00 || leaf_data)`). Size and root come from
    /// the checkpoint, never from the proof's sender.
    pub fn verify_inclusion(
        &self,
        leaf_data: &[u8],
        index: LeafIndex,
        proof: &[Hash],
    ) -> Result<(), VerifyError> {
        verify_inclusion(
            &leaf_hash(leaf_data),
            index,
            self.size(),
            proof,
            &self.root(),
        )
    }

    /// Checks that `newer` extends this checkpoint's tree (RFC 9162 §2.1.4.2). Equal sizes
    /// need an empty proof and equal roots; different roots at one size mean a fork.
    pub fn verify_consistency_to(
        &self,
        newer: &SignedCheckpoint,
        proof: &[Hash],
    ) -> Result<(), VerifyError> {
        verify_consistency(
            self.size(),
            newer.size(),
            &self.root(),
            &newer.root(),
            proof,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "coalition.example/hub";

    #[test]
    fn sign_then_verify_round_trip() {
        let signer = CheckpointSigner::new(ORIGIN, SigningKey::from_bytes(&[3; 32])).expect("ok");
        let root = Hash([9; 32]);
        let signed = signer.sign(TreeSize(42), root).expect("sign");
        assert_eq!(signed.size(), TreeSize(42));
        assert_eq!(signed.root(), root);
        assert!(signed.note().starts_with("coalition.example/hub\n42\n"));
        let opened = SignedCheckpoint::verify(signed.note(), signer.verifier_key()).expect("ok");
        assert_eq!(opened, signed);
        // Deterministic: the same head always gives the same note.
        assert_eq!(signer.sign(TreeSize(42), root).expect("sign"), signed);
        assert!(!format!("{signer:?}").contains("03030303"));
    }

    #[test]
    fn rejects_origins_that_cannot_be_key_names() {
        for bad in ["", "has space", "a+b", "tab\there", "new\nline", "ctl\u{1}"] {
            assert!(
                CheckpointSigner::new(bad, SigningKey::from_bytes(&[1; 32])).is_err(),
                "accepted origin {bad:?}"
            );
        }
    }

    #[test]
    fn origin_must_match_key_name() {
        let key = SigningKey::from_bytes(&[4; 32]);
        // A note whose origin differs from the key name, signed by that key.
        let cp = Checkpoint::new("other.example/log", TreeSize(1), Hash([1; 32]));
        let note = cp.sign(ORIGIN, &key).expect("sign");
        let vk = VerifierKey::from_signing_key(ORIGIN, &key).expect("vk");
        assert!(matches!(
            SignedCheckpoint::verify(&note, &vk),
            Err(CheckpointError::OriginMismatch { .. })
        ));
    }
}
