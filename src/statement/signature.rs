//! The one signature rule: every ed25519 signature gets the verdict of
//! `VerifyingKey::verify_strict`. (Placeholder: one by one, in parallel.)

use ed25519_dalek::{Signature, VerifyingKey};
use rayon::prelude::*;

/// One signature to check: `signature` (64 bytes as received) by `key` over `message`.
pub struct SignatureCheck<'a> {
    /// The key that must have signed.
    pub key: &'a VerifyingKey,
    /// The signed bytes.
    pub message: &'a [u8],
    /// The signature as received.
    pub signature: &'a [u8],
}

/// The verdict for one signature: exactly `verify_strict`'s (false if not 64 bytes).
pub fn verify_one(check: &SignatureCheck<'_>) -> bool {
    Signature::from_slice(check.signature)
        .is_ok_and(|sig| check.key.verify_strict(check.message, &sig).is_ok())
}

/// Verifies many; `Ok(())` iff every one verifies, else `Err(i)` with the lowest failing index.
pub fn verify_many(checks: &[SignatureCheck<'_>]) -> Result<(), usize> {
    match checks.par_iter().position_first(|c| !verify_one(c)) {
        Some(i) => Err(i),
        None => Ok(()),
    }
}
