//! Signature verdicts: `verify_strict`'s, the one rule for every ed25519 signature.
//!
//! The protocol has exactly one verdict for a signature: that of ed25519-dalek 2.2's
//! [`VerifyingKey::verify_strict`]. [`verify_one`] is that verdict; [`verify_many`] gives it for
//! many signatures on every core.
//!
//! # What `verify_strict` decides (read in ed25519-dalek 2.2.0's source)
//!
//! For a key `A` (the 32 bytes the key was parsed from, `A_bytes`, and their decompression),
//! a message `M` and a signature `R_bytes ‖ S_bytes`, `verify_strict` (verifying.rs) accepts
//! iff all of:
//! 1. `S_bytes` is a canonical scalar `s < ℓ` (`check_scalar` → `Scalar::from_canonical_bytes`;
//!    the crate's `legacy_compatibility` feature, which would relax this, is not enabled);
//! 2. `R_bytes` decompresses to a point `R`;
//! 3. neither `R` nor `A` is of small order (`is_small_order`);
//! 4. with `h = SHA-512(R_bytes ‖ A_bytes ‖ M) mod ℓ` (`RCompute::new` hashes the signature's
//!    R bytes as received and the key's stored compressed bytes, which `VerifyingKey::from_bytes`
//!    keeps exactly as given), `compress([s]B − [h]A) == R_bytes`.
//!
//! `compress` always yields the canonical encoding, so 4 holds iff `R_bytes` is canonical and
//! `[s]B − [h]A = R`: the *cofactorless* equation. `verify_strict` rejects non-canonical `R`
//! but accepts a non-canonical `A` encoding and a mixed-order `A` or `R` (not small order, but
//! with a torsion component) when the cofactorless equation holds.
//!
//! # What the batch computes (ed25519-dalek 2.2.0 batch.rs)
//!
//! `ed25519_dalek::verify_batch` parses each `S` with the same `check_scalar`, hashes
//! `h_i = SHA-512(R_bytes_i ‖ A_bytes_i ‖ M_i)` over the same bytes (`r_bytes()`,
//! `VerifyingKey::as_bytes()`), decompresses each `R_i` (any encoding that decompresses), and
//! tests `−[Σ z_i s_i]B + Σ [z_i]R_i + Σ [z_i h_i mod ℓ]A_i` for the identity, with 128-bit
//! coefficients `z_i` drawn from a merlin transcript of every `h_i` and every `S_i`, finalized
//! with a zero RNG: deterministic in the inputs, no OS randomness.
//!
//! On its own that test can disagree with `verify_strict` both ways. It accepts a
//! non-canonical `R`, and a small-order `R` or `A` whenever the equation works out. If
//! `E_i = [s_i]B − R_i − [h_i]A_i` is a nonzero torsion point `T` (a mixed-order `R` that
//! satisfies only the cofactored equation), `[z_i]T = 0` whenever `z_i` is a multiple of `T`'s
//! order: it accepts with probability 1/2, 1/4 or 1/8. And because it multiplies `A_i` by
//! `z_i·h_i` *reduced mod ℓ*, a torsion component of `A_i` is multiplied by an unrelated
//! number: for a mixed-order key it can reject a signature `verify_strict` accepts (the
//! cofactorless equation holding) and accept one it rejects. `tests/signatures.rs` shows each
//! of these on generated vectors.
//!
//! # Why `verify_many` does not batch
//!
//! A batch agrees with `verify_strict` item for item only for items whose `S` is canonical and
//! whose `R` and `A` lie in the prime-order subgroup: then `E_i` does too, the batch tests
//! exactly `Σ [z_i]E_i = 0`, and a single `E_j ≠ 0` survives with probability at most 2^-128.
//! Everything else must be checked alone. Proving `R` torsion-free costs a scalar
//! multiplication by ℓ per signature (every signature has its own `R`), and that check alone
//! (~29 µs here) costs nearly what `verify_strict` does (~36 µs): such a sound batch measured
//! 1.4–2.4× slower per core than checking one by one (docs/PERFORMANCE.md, "Signature
//! verification: one verdict"), and a batch of cofactored equations cannot stand in for it (two
//! crafted signatures' torsion components cancel). So [`verify_many`] checks every signature
//! with [`verify_one`], in parallel, and reports the lowest failing index. `tests/signatures.rs`
//! keeps the adversarial vectors on which a plain batch disagrees with `verify_strict`.

use ed25519_dalek::{Signature, VerifyingKey};
use rayon::prelude::*;

/// One signature to check: `signature` (64 bytes as received) by `key` over `message`.
#[derive(Clone, Copy, Debug)]
pub struct SignatureCheck<'a> {
    /// The key that must have signed.
    pub key: &'a VerifyingKey,
    /// The exact signed bytes.
    pub message: &'a [u8],
    /// The signature as received; anything but 64 bytes does not verify.
    pub signature: &'a [u8],
}

/// The verdict for one signature: exactly `verify_strict`'s (false for a signature that is not
/// 64 bytes).
pub fn verify_one(check: &SignatureCheck<'_>) -> bool {
    match Signature::from_slice(check.signature) {
        Ok(signature) => check.key.verify_strict(check.message, &signature).is_ok(),
        Err(_) => false,
    }
}

/// Verifies many; `Ok(())` iff every one verifies, else `Err(i)` with the LOWEST failing index.
/// Each item's verdict is [`verify_one`]'s. Runs in parallel (rayon) over chunks of
/// [`BATCH_SIZE`] items.
pub fn verify_many(checks: &[SignatureCheck<'_>]) -> Result<(), usize> {
    let first_failure = checks
        .par_chunks(BATCH_SIZE)
        .enumerate()
        .find_map_first(|(c, chunk)| {
            chunk
                .iter()
                .position(|check| !verify_one(check))
                .map(|i| c * BATCH_SIZE + i)
        });
    match first_failure {
        Some(index) => Err(index),
        None => Ok(()),
    }
}

/// Items per unit of parallel work in [`verify_many`].
pub const BATCH_SIZE: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn signed(key: &SigningKey, message: &[u8]) -> (VerifyingKey, Vec<u8>, Vec<u8>) {
        (
            key.verifying_key(),
            message.to_vec(),
            key.sign(message).to_bytes().to_vec(),
        )
    }

    fn checks(items: &[(VerifyingKey, Vec<u8>, Vec<u8>)]) -> Vec<SignatureCheck<'_>> {
        items
            .iter()
            .map(|(key, message, signature)| SignatureCheck {
                key,
                message,
                signature,
            })
            .collect()
    }

    #[test]
    fn verify_one_is_verify_strict() {
        let (key, message, signature) = signed(&key(1), b"hello");
        let check = SignatureCheck {
            key: &key,
            message: &message,
            signature: &signature,
        };
        assert!(verify_one(&check));
        assert!(!verify_one(&SignatureCheck {
            message: b"hellp",
            ..check
        }));
        assert!(!verify_one(&SignatureCheck {
            signature: &signature[..63],
            ..check
        }));
        let mut longer = signature.clone();
        longer.push(0);
        assert!(!verify_one(&SignatureCheck {
            signature: &longer,
            ..check
        }));
        assert!(!verify_one(&SignatureCheck {
            signature: &[],
            ..check
        }));
    }

    #[test]
    fn verify_many_of_nothing_is_ok() {
        assert_eq!(verify_many(&[]), Ok(()));
    }

    #[test]
    fn verify_many_reports_the_lowest_failing_index_across_chunks() {
        let keys: Vec<SigningKey> = (1..=4).map(key).collect();
        let n = 3 * BATCH_SIZE + 7;
        let mut items: Vec<_> = (0..n)
            .map(|i| signed(&keys[i % keys.len()], format!("m{i}").as_bytes()))
            .collect();
        assert_eq!(verify_many(&checks(&items)), Ok(()));
        for bad in [n - 1, 2 * BATCH_SIZE + 3, BATCH_SIZE, BATCH_SIZE - 1, 5, 0] {
            items[bad].1.push(b'!');
            assert_eq!(verify_many(&checks(&items)), Err(bad), "bad at {bad}");
        }
    }

    #[test]
    fn short_signature_fails_in_place() {
        let k = key(9);
        let mut items: Vec<_> = (0..10).map(|i| signed(&k, &[i])).collect();
        items[6].2.truncate(10);
        items[8].2.clear();
        assert_eq!(verify_many(&checks(&items)), Err(6));
    }
}
