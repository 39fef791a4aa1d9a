//! Signature verdicts: `verify_strict`'s, the one rule for every ed25519 signature, alone or in batches.
//!
//! The protocol has exactly one verdict for a signature: that of ed25519-dalek 2.2's
//! [`VerifyingKey::verify_strict`]. [`verify_one`] is that verdict. [`verify_many`] gives the
//! same verdict for every item, sending into a batch only items for which the batch equation
//! cannot disagree with `verify_strict`.
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
//! # The rule: who may be batched
//!
//! An item is *batchable* only if `S` is canonical, `R_bytes` and `A_bytes` are canonical
//! encodings (decompress, re-compress, same bytes), and `R` and `A` are both torsion-free
//! (`EdwardsPoint::is_torsion_free`) and not of small order (`is_small_order`; with
//! torsion-free this means not the identity, so both have order exactly ℓ). Every other item
//! is checked alone with [`verify_one`]. For a batchable item:
//! - conditions 1–3 of `verify_strict` hold, so `verify_strict` accepts iff `E_i = 0` (the
//!   cofactorless equation, `R_bytes` being canonical);
//! - `B`, `R_i` and `A_i` lie in the prime-order subgroup, hence so does `E_i`; and since
//!   `A_i` has order ℓ, `[z_i h_i mod ℓ]A_i = [z_i h_i]A_i`, so the batch tests exactly
//!   `Σ [z_i]E_i = 0`.
//!
//! If every `E_i = 0` the batch accepts. If some `E_j ≠ 0`, every `E_i = [e_i]B` for integers
//! `e_i` mod ℓ, and the batch accepts only if `Σ z_i e_i ≡ 0 (mod ℓ)`, with `e_j ≢ 0`: for any
//! fixed values of the other coefficients this pins `z_j` to a single residue mod ℓ, and a
//! 128-bit `z_j` (ℓ > 2^252) hits it with probability at most 2^-128. The coefficients come
//! from a hash of all of the inputs (R, A and M through `h_i`, and `S_i`), so this is a
//! random-oracle argument: a forger who can choose inputs gets at most 2^-128 per attempt
//! (per hash evaluation), and cannot pick `E_j` after seeing the `z_i`.
//!
//! The canonical-encoding checks are not what this rests on: both sides hash the same
//! `A_bytes`, and every non-canonical encoding that decodes (24 with y ≥ p, 2 with x = 0 and
//! the sign bit set) is a point of small order or with a torsion component, which the torsion
//! checks already exclude (`tests/signatures.rs` checks all 26). They cost one compression
//! each and keep the rule true without relying on that fact.
//!
//! When a batch fails, its items are checked one by one with [`verify_one`], so the index
//! reported is always that of a signature `verify_strict` rejects, and the lowest such.
//!
//! # Cost
//!
//! `is_torsion_free` is a scalar multiplication by ℓ: once per `R` (every signature has its
//! own) and once per distinct key in a chunk. That is the price of the batch agreeing with
//! `verify_strict` item for item, and it is more than the batch saves: measured on valid
//! signatures, `verify_many` costs 1.4× (8 keys) to 2.4× (distinct keys) per core what
//! `verify_one` does (`docs/PERFORMANCE.md`, "Signature verification: one verdict").

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};
use rayon::prelude::*;
use std::collections::HashMap;

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
/// Each item's verdict equals [`verify_one`]'s (up to a 2^-128 probability from batch
/// randomness), adversarial inputs included: see the module documentation. Runs in parallel
/// (rayon) over chunks of [`BATCH_SIZE`] items.
pub fn verify_many(checks: &[SignatureCheck<'_>]) -> Result<(), usize> {
    let first_failure = checks
        .par_chunks(BATCH_SIZE)
        .enumerate()
        .find_map_first(|(c, chunk)| verify_chunk(chunk).err().map(|i| c * BATCH_SIZE + i));
    match first_failure {
        Some(index) => Err(index),
        None => Ok(()),
    }
}

/// Items per batch (and per unit of parallel work) in [`verify_many`]. Larger batches amortize
/// the multiscalar multiplication better; a failed batch costs one `verify_one` per item.
pub const BATCH_SIZE: usize = 256;

/// `Err(i)`: the lowest index in `chunk` that `verify_one` rejects.
fn verify_chunk(chunk: &[SignatureCheck<'_>]) -> Result<(), usize> {
    let mut keys_batchable: HashMap<&VerifyingKey, bool> = HashMap::new();
    let mut batch = Batch::with_capacity(chunk.len());
    // The first item that failed on its own: nothing after it matters, so the scan stops there.
    let mut failed_alone = None;
    for (i, check) in chunk.iter().enumerate() {
        let key_ok = *keys_batchable
            .entry(check.key)
            .or_insert_with(|| batchable_key(check.key));
        match key_ok
            .then(|| batchable_signature(check.signature))
            .flatten()
        {
            Some(signature) => batch.push(i, check, signature),
            None if verify_one(check) => {}
            None => {
                failed_alone = Some(i);
                break;
            }
        }
    }
    let failed_in_batch = if batch.verifies() {
        None
    } else {
        batch
            .indices
            .iter()
            .copied()
            .find(|&i| !verify_one(&chunk[i]))
    };
    // Every batched index is below `failed_alone`, so a failure in the batch is the lowest.
    failed_in_batch.or(failed_alone).map_or(Ok(()), Err)
}

/// Batchable items of one chunk, in index order.
struct Batch<'a> {
    indices: Vec<usize>,
    messages: Vec<&'a [u8]>,
    signatures: Vec<Signature>,
    keys: Vec<VerifyingKey>,
}

impl<'a> Batch<'a> {
    fn with_capacity(n: usize) -> Self {
        Batch {
            indices: Vec::with_capacity(n),
            messages: Vec::with_capacity(n),
            signatures: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, index: usize, check: &SignatureCheck<'a>, signature: Signature) {
        self.indices.push(index);
        self.messages.push(check.message);
        self.signatures.push(signature);
        self.keys.push(*check.key);
    }

    /// The random-linear-combination (cofactorless) batch equation over every item; true for
    /// an empty batch.
    fn verifies(&self) -> bool {
        self.indices.is_empty()
            || ed25519_dalek::verify_batch(&self.messages, &self.signatures, &self.keys).is_ok()
    }
}

/// A key may be batched: canonical encoding, order exactly ℓ.
fn batchable_key(key: &VerifyingKey) -> bool {
    let point = key.to_edwards();
    point.compress().as_bytes() == key.as_bytes() && in_prime_order_subgroup(&point)
}

/// The signature, if it may be batched (its key being batchable): 64 bytes, canonical `S`,
/// canonical `R` of order exactly ℓ.
fn batchable_signature(bytes: &[u8]) -> Option<Signature> {
    let bytes: &[u8; 64] = bytes.try_into().ok()?;
    let (r_bytes, s_bytes) = bytes.split_at(32);
    let s_bytes: [u8; 32] = s_bytes.try_into().ok()?;
    Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let r_compressed = CompressedEdwardsY::from_slice(r_bytes).ok()?;
    let r = r_compressed.decompress()?;
    (r.compress() == r_compressed && in_prime_order_subgroup(&r))
        .then(|| Signature::from_bytes(bytes))
}

/// Torsion-free and not the identity: the point generates the prime-order subgroup.
fn in_prime_order_subgroup(point: &EdwardsPoint) -> bool {
    // is_small_order is three doublings; is_torsion_free a full scalar multiplication.
    !point.is_small_order() && point.is_torsion_free()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::traits::Identity;
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

    #[test]
    fn batchability() {
        let (key, _, signature) = signed(&key(3), b"x");
        assert!(batchable_key(&key));
        assert!(batchable_signature(&signature).is_some());
        assert!(batchable_signature(&signature[..63]).is_none());

        // R = identity: small order.
        let mut identity_r = signature.clone();
        identity_r[..32].copy_from_slice(EdwardsPoint::identity().compress().as_bytes());
        assert!(batchable_signature(&identity_r).is_none());

        // S + ℓ: not canonical.
        let mut big_s = signature.clone();
        let s = Scalar::from_canonical_bytes(signature[32..].try_into().expect("32 bytes"))
            .expect("canonical");
        big_s[32..].copy_from_slice(&add_l(s.as_bytes()));
        assert!(batchable_signature(&big_s).is_none());

        // The identity as a key (encoding y = 1): small order.
        let identity_key = VerifyingKey::from_bytes(EdwardsPoint::identity().compress().as_bytes())
            .expect("decodes");
        assert!(!batchable_key(&identity_key));

        // B + T2 (T2 = (0, −1), order 2): mixed order.
        let t2 = VerifyingKey::from_bytes(&minus_one_y())
            .expect("decodes")
            .to_edwards();
        let mixed = VerifyingKey::from(ED25519_BASEPOINT_POINT + t2);
        assert!(!mixed.is_weak());
        assert!(!batchable_key(&mixed));
    }

    /// The 32-byte little-endian encoding of y = −1 (x = 0): the point of order 2.
    fn minus_one_y() -> [u8; 32] {
        let mut y = [0xff; 32];
        y[0] = 0xec; // p − 1 = 2^255 − 20
        y[31] = 0x7f;
        y
    }

    /// `s + ℓ` as 32 little-endian bytes (fits: s < ℓ < 2^253).
    fn add_l(s: &[u8; 32]) -> [u8; 32] {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(s[i]) + u16::from(L[i]) + carry;
            out[i] = sum as u8;
            carry = sum >> 8;
        }
        out
    }
}
