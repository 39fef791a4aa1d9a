//! Adversarial ed25519 vectors, in the style of "Taming the many EdDSAs" (Chalkias, Garillot,
//! Nikolaenko 2020), built here with raw scalar and point arithmetic: `verify_one` and
//! `verify_many` must give `verify_strict`'s verdict on every one, alone and mixed into batches
//! of valid signatures.
//!
//! Every vector states what it was built to be — `verify_strict`'s verdict and whether the
//! cofactorless (`[s]B = R + [h]A`) and cofactored (`[8][s]B = [8]R + [8][h]A`) equations hold —
//! and the tests check that first, so a vector that stopped meaning what its name says fails
//! loudly instead of testing nothing. Randomness comes from fixed seeds.

use coalition_hub::statement::{BATCH_SIZE, SignatureCheck, verify_many, verify_one};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity};
use ed25519_dalek::{Signature, VerifyingKey};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Runs of the whole vector set with fresh randomness: a verifier that accepts a bad vector
/// with probability 1/8 survives them with probability (7/8)^200 < 10^-11.
const RUNS: u64 = 200;

// ---------------------------------------------------------------------------------------------
// The table.

#[test]
fn vectors_match_verify_strict_alone_and_in_small_batches() {
    for run in 0..RUNS {
        let mut rng = StdRng::seed_from_u64(run);
        let fillers = valid_cases(&mut rng, 8);
        for case in all_cases(&mut rng) {
            check_construction(&case);
            let Some(key) = case.parsed_key() else {
                assert!(!case.strict(), "{}: a key that fails to parse", case.name);
                continue;
            };
            let expected = case.strict();
            assert_eq!(
                verify_one(&case.check(&key)),
                expected,
                "{} (run {run})",
                case.name
            );
            assert_eq!(
                many(&[&case]),
                if expected { Ok(()) } else { Err(0) },
                "{} alone (run {run})",
                case.name
            );
            let position = rng.gen_range(0..=fillers.len());
            let mut batch: Vec<&Case> = fillers.iter().collect();
            batch.insert(position, &case);
            assert_eq!(
                many(&batch),
                if expected { Ok(()) } else { Err(position) },
                "{} at {position} of {} (run {run})",
                case.name,
                batch.len()
            );
        }
    }
}

#[test]
fn vectors_at_batch_boundaries_report_the_lowest_failing_index() {
    let mut rng = StdRng::seed_from_u64(0xb0);
    let fillers = valid_cases(&mut rng, BATCH_SIZE + 3);
    let positions = [0, BATCH_SIZE - 1, BATCH_SIZE, BATCH_SIZE + 3];
    for case in all_cases(&mut rng) {
        if case.parsed_key().is_none() {
            continue;
        }
        for position in positions {
            let mut batch: Vec<&Case> = fillers.iter().collect();
            batch.insert(position, &case);
            assert_eq!(
                many(&batch),
                expected(&batch),
                "{} at {position}",
                case.name
            );
        }
    }
}

#[test]
fn all_vectors_in_one_batch_fail_in_index_order() {
    for run in 0..2 {
        let mut rng = StdRng::seed_from_u64(0xa11 + run);
        let mut batch = valid_cases(&mut rng, BATCH_SIZE + 64);
        for case in all_cases(&mut rng) {
            if case.parsed_key().is_some() {
                let position = rng.gen_range(0..=batch.len());
                batch.insert(position, case);
            }
        }
        let mut failures = 0;
        loop {
            let refs: Vec<&Case> = batch.iter().collect();
            let got = many(&refs);
            assert_eq!(got, expected(&refs), "run {run}, after {failures} failures");
            let Err(i) = got else { break };
            batch.remove(i);
            failures += 1;
        }
        assert!(failures > 50, "only {failures} rejected vectors");
    }
}

/// The vectors have teeth: plain `ed25519_dalek::verify_batch` (cofactorless, random
/// coefficients, no encoding or torsion checks) disagrees with `verify_strict` on some of them.
/// It accepts a small-order R that satisfies the equation every time, and an R whose torsion
/// component has order 8 about one run in eight. It multiplies A by `z·h mod ℓ`, which scrambles
/// a torsion component of A, so for a mixed-order A it can also reject what `verify_strict`
/// accepts.
#[test]
fn plain_verify_batch_disagrees_with_verify_strict_on_these_vectors() {
    let mut disagreements: HashMap<String, u64> = HashMap::new();
    for run in 0..RUNS {
        let mut rng = StdRng::seed_from_u64(run);
        for case in all_cases(&mut rng) {
            let Some(key) = case.parsed_key() else {
                continue;
            };
            let signature = Signature::from_bytes(&case.signature);
            let plain = ed25519_dalek::verify_batch(&[&case.message], &[signature], &[key]);
            if plain.is_ok() != case.strict() {
                *disagreements.entry(case.name.clone()).or_default() += 1;
            }
        }
    }
    let count = |name: &str| disagreements.get(name).copied().unwrap_or(0);
    let sometimes = |name: &str| {
        let n = count(name);
        assert!(n > 0 && n < RUNS, "{name}: {n} of {RUNS}");
        n
    };
    // Accepted by the plain batch, rejected by verify_strict.
    assert_eq!(count("R = T0 (identity), s = h·a"), RUNS);
    assert_eq!(count("R = identity encoded as y = p + 1, s = h·a"), RUNS);
    assert_eq!(count("A = T0, cofactorless holds"), RUNS);
    for k in 1..8 {
        sometimes(&format!("R = [r]B + T{k}, cofactored only"));
        sometimes(&format!("A = T{k}, cofactorless holds"));
    }
    let order_8 = count("R = [r]B + T1, cofactored only");
    assert!(
        (5..=60).contains(&order_8),
        "order 8: {order_8} of {RUNS}, expected about 25"
    );
    // Rejected by the plain batch, accepted by verify_strict.
    for k in 1..8 {
        sometimes(&format!("A = [a]B + T{k}, cofactorless holds"));
    }
    // Never a disagreement on honest or plainly broken signatures.
    for name in ["valid", "wrong message", "S + ℓ"] {
        assert_eq!(count(name), 0, "{name}");
    }
}

#[test]
fn torsion_points_and_non_canonical_encodings_are_what_they_claim() {
    let t = torsion();
    assert!(t[0].is_identity());
    for (k, point) in t.iter().enumerate() {
        assert!(point.is_small_order(), "T{k}");
        let order = (1..=8).find(|&n| mul_small(point, n).is_identity());
        assert_eq!(order, Some(8 / gcd(k, 8)), "T{k}");
        for other in &t[..k] {
            assert_ne!(point, other, "T{k} repeats");
        }
    }
    // Exhaustive: 24 encodings with y ≥ p decode, and 2 with x = 0 and the sign bit set.
    let encodings = non_canonical_encodings();
    assert_eq!(encodings.len(), 26);
    for bytes in encodings {
        let point = CompressedEdwardsY(*bytes).decompress().expect("decodes");
        assert_ne!(point.compress().as_bytes(), bytes, "{}", hex::encode(bytes));
        // None has order ℓ: the torsion check alone keeps every one out of a batch (the
        // canonical-encoding checks in verify_many are belt and braces, which is why no
        // vector here can tell whether they are there).
        assert!(
            point.is_small_order() || !point.is_torsion_free(),
            "{}",
            hex::encode(bytes)
        );
    }
    let identity_p_plus_1 = nc_identity();
    assert!(encodings.contains(&identity_p_plus_1));
    // Both kinds are in the set: small-order points and points of large order.
    assert!(encodings.iter().any(|b| decode(b).is_small_order()));
    assert!(encodings.iter().any(|b| !decode(b).is_small_order()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random mixes of valid and adversarial signatures: verify_many reports the lowest index
    /// verify_strict rejects, and verify_one agrees with verify_strict on every item.
    #[test]
    fn random_mixes_match_per_item_verify_strict(
        items in proptest::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<u64>()), 0..48),
    ) {
        let kinds = mixable_kinds();
        let cases: Vec<Case> = items
            .iter()
            .map(|(valid, kind, seed)| {
                let mut rng = StdRng::seed_from_u64(*seed);
                if *valid {
                    build(&mut rng, &Kind::Valid)
                } else {
                    build(&mut rng, &kinds[kind.index(kinds.len())])
                }
            })
            .collect();
        let refs: Vec<&Case> = cases.iter().collect();
        for case in &cases {
            let key = case.parsed_key().expect("mixable kinds have keys that parse");
            prop_assert_eq!(verify_one(&case.check(&key)), case.strict(), "{}", &case.name);
        }
        prop_assert_eq!(many(&refs), expected(&refs));
    }
}

// ---------------------------------------------------------------------------------------------
// Vectors.

/// One vector: key bytes, message and signature bytes, and what it was built to be.
#[derive(Clone, Debug)]
struct Case {
    name: String,
    key: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
    /// `verify_strict`'s verdict by construction.
    accept: bool,
    /// (cofactorless, cofactored) equations, with s taken mod ℓ; `None` where not pinned down.
    equations: Option<(bool, bool)>,
}

impl Case {
    fn parsed_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.key).ok()
    }

    /// The reference verdict: `verify_strict`, false where the key does not parse.
    fn strict(&self) -> bool {
        self.parsed_key().is_some_and(|key| {
            key.verify_strict(&self.message, &Signature::from_bytes(&self.signature))
                .is_ok()
        })
    }

    fn check<'a>(&'a self, key: &'a VerifyingKey) -> SignatureCheck<'a> {
        SignatureCheck {
            key,
            message: &self.message,
            signature: &self.signature,
        }
    }
}

/// The kinds of vector; `all_kinds` lists every instance.
#[derive(Clone, Debug)]
enum Kind {
    Valid,
    /// A valid signature with S + ℓ in place of S.
    SPlusL,
    /// R = T_k, A = [a]B, s = h·a.
    SmallR(usize),
    /// A = T_k, R = [r]B, s = r; messages drawn until the cofactorless equation holds (or not).
    SmallA(usize, bool),
    /// A = [a]B + T_k, R = [r]B, s = r + h·a; drawn until the cofactorless equation holds (or not).
    MixedA(usize, bool),
    /// R = [r]B + T_k, A = [a]B, s = r + h·a: only the cofactored equation holds.
    MixedR(usize),
    /// R = [r]B + T_k, A = [a]B + T_1; drawn until the cofactorless equation holds (or not).
    MixedRA(usize, bool),
    /// R encoded non-canonically (`non_canonical_encodings()[i]`), A = [a]B, s = h·a.
    NonCanonicalR(usize),
    /// A encoded non-canonically: s = r with the cofactorless equation if A is small order,
    /// a random s otherwise (its discrete log is unknown).
    NonCanonicalA(usize),
    /// A valid signature over another message.
    WrongMessage,
    /// A valid signature with bit `i` of the 64 signature bytes flipped.
    SignatureBitFlip(usize),
    /// A valid signature, with bit `i` of the key flipped (it may fail to parse).
    KeyBitFlip(usize),
}

fn all_kinds() -> Vec<Kind> {
    let mut kinds = vec![Kind::Valid, Kind::SPlusL, Kind::WrongMessage];
    for k in 0..8 {
        kinds.push(Kind::SmallR(k));
        kinds.push(Kind::SmallA(k, true));
        if k > 0 {
            kinds.push(Kind::SmallA(k, false));
            kinds.push(Kind::MixedA(k, true));
            kinds.push(Kind::MixedA(k, false));
            kinds.push(Kind::MixedR(k));
            kinds.push(Kind::MixedRA(k, true));
            kinds.push(Kind::MixedRA(k, false));
        }
    }
    for i in 0..non_canonical_encodings().len() {
        kinds.push(Kind::NonCanonicalR(i));
        kinds.push(Kind::NonCanonicalA(i));
    }
    for bit in [0, 100, 254, 255, 256, 300, 500, 508, 509, 511] {
        kinds.push(Kind::SignatureBitFlip(bit));
    }
    for bit in [0, 1, 128, 254, 255] {
        kinds.push(Kind::KeyBitFlip(bit));
    }
    kinds
}

/// Kinds whose key always parses.
fn mixable_kinds() -> Vec<Kind> {
    all_kinds()
        .into_iter()
        .filter(|k| !matches!(k, Kind::KeyBitFlip(_)))
        .collect()
}

fn all_cases(rng: &mut StdRng) -> Vec<Case> {
    all_kinds().iter().map(|kind| build(rng, kind)).collect()
}

fn valid_cases(rng: &mut StdRng, n: usize) -> Vec<Case> {
    (0..n).map(|_| build(rng, &Kind::Valid)).collect()
}

fn build(rng: &mut StdRng, kind: &Kind) -> Case {
    let t = torsion();
    let a = random_scalar(rng);
    let honest = Recipe {
        a,
        ..Recipe::default()
    };
    let always = |_: &Scalar| true;
    // The cofactorless error is −(t_r + [h]t_a): draw until it is (or is not) the identity.
    let cofactorless = |t_a: EdwardsPoint, t_r: EdwardsPoint, want: bool| {
        move |h: &Scalar| (t_a * h + t_r).is_identity() == want
    };
    let holds_or_not = |holds: bool| {
        if holds {
            "cofactorless holds"
        } else {
            "cofactored only"
        }
    };
    let (name, vector, accept, equations) = match *kind {
        Kind::Valid => (
            "valid".to_owned(),
            honest.sign(rng, always),
            true,
            Some((true, true)),
        ),
        Kind::SPlusL => {
            let mut v = honest.sign(rng, always);
            let s = Scalar::from_canonical_bytes(v.signature[32..].try_into().expect("32"))
                .expect("canonical");
            v.signature[32..].copy_from_slice(&add_l(s.as_bytes()));
            ("S + ℓ".to_owned(), v, false, Some((true, true)))
        }
        Kind::SmallR(k) => (
            format!(
                "R = T{k}{}, s = h·a",
                if k == 0 { " (identity)" } else { "" }
            ),
            Recipe {
                with_rb: false,
                t_r: t[k],
                ..honest
            }
            .sign(rng, always),
            false,
            Some((k == 0, true)),
        ),
        Kind::SmallA(k, holds) => (
            format!("A = T{k}, {}", holds_or_not(holds)),
            Recipe {
                t_a: t[k],
                ..Recipe::default()
            }
            .sign(rng, cofactorless(t[k], id(), holds)),
            false,
            Some((holds, true)),
        ),
        Kind::MixedA(k, holds) => (
            format!("A = [a]B + T{k}, {}", holds_or_not(holds)),
            Recipe {
                t_a: t[k],
                ..honest
            }
            .sign(rng, cofactorless(t[k], id(), holds)),
            holds,
            Some((holds, true)),
        ),
        Kind::MixedR(k) => (
            format!("R = [r]B + T{k}, cofactored only"),
            Recipe {
                t_r: t[k],
                ..honest
            }
            .sign(rng, always),
            false,
            Some((false, true)),
        ),
        Kind::MixedRA(k, holds) => (
            format!("R = [r]B + T{k}, A = [a]B + T1, {}", holds_or_not(holds)),
            Recipe {
                t_a: t[1],
                t_r: t[k],
                ..honest
            }
            .sign(rng, cofactorless(t[1], t[k], holds)),
            holds,
            Some((holds, true)),
        ),
        Kind::NonCanonicalR(i) => {
            let bytes = non_canonical_encodings()[i];
            let point = decode(&bytes);
            let name = if bytes == nc_identity() {
                "R = identity encoded as y = p + 1, s = h·a".to_owned()
            } else {
                format!("R non-canonical {}, s = h·a", hex::encode(bytes))
            };
            let recipe = Recipe {
                with_rb: false,
                r_encoding: Some(bytes),
                ..honest
            };
            (
                name,
                recipe.sign(rng, always),
                false,
                Some((point.is_identity(), point.is_small_order())),
            )
        }
        Kind::NonCanonicalA(i) => {
            let bytes = non_canonical_encodings()[i];
            let point = decode(&bytes);
            let name = format!("A non-canonical {}", hex::encode(bytes));
            if point.is_small_order() {
                let recipe = Recipe {
                    t_a: point,
                    key_encoding: Some(bytes),
                    ..Recipe::default()
                };
                let v = recipe.sign(rng, cofactorless(point, id(), true));
                (name, v, false, Some((true, true)))
            } else {
                // Its discrete log is unknown: a signature made for another key.
                let mut v = honest.sign(rng, always);
                v.key = bytes;
                (name, v, false, Some((false, false)))
            }
        }
        Kind::WrongMessage => {
            let mut v = honest.sign(rng, always);
            v.message.push(b'!');
            ("wrong message".to_owned(), v, false, Some((false, false)))
        }
        Kind::SignatureBitFlip(bit) => {
            let mut v = honest.sign(rng, always);
            v.signature[bit / 8] ^= 1 << (bit % 8);
            (format!("signature bit {bit} flipped"), v, false, None)
        }
        Kind::KeyBitFlip(bit) => {
            let mut v = honest.sign(rng, always);
            v.key[bit / 8] ^= 1 << (bit % 8);
            (format!("key bit {bit} flipped"), v, false, None)
        }
    };
    Case {
        name,
        key: vector.key,
        message: vector.message,
        signature: vector.signature,
        accept,
        equations,
    }
}

/// Checks a vector is what it was built to be: `verify_strict`'s verdict and the equations.
fn check_construction(case: &Case) {
    assert_eq!(case.strict(), case.accept, "{}: verify_strict", case.name);
    if let Some(expected) = case.equations {
        assert_eq!(equations(case), Some(expected), "{}: equations", case.name);
    }
}

/// (cofactorless, cofactored) for a vector, s taken mod ℓ; `None` if R or A does not decode.
fn equations(case: &Case) -> Option<(bool, bool)> {
    let a = CompressedEdwardsY(case.key).decompress()?;
    let r_bytes: [u8; 32] = case.signature[..32].try_into().expect("32");
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    let s = Scalar::from_bytes_mod_order(case.signature[32..].try_into().expect("32"));
    let h = hram(&r_bytes, &case.key, &case.message);
    let error = EdwardsPoint::mul_base(&s) - r - a * h;
    Some((error.is_identity(), error.is_small_order()))
}

// ---------------------------------------------------------------------------------------------
// Raw arithmetic.

struct Vector {
    key: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
}

/// How to build a vector with raw arithmetic, as the paper does: the key is `[a]B + t_a`
/// (encoded as `key_encoding` if given, else canonically), the nonce point `R = [r]B + t_r`
/// (`[r]B` left out unless `with_rb`; encoded as `r_encoding` if given), and `s = r + h·a`.
#[derive(Clone, Copy)]
struct Recipe {
    a: Scalar,
    t_a: EdwardsPoint,
    key_encoding: Option<[u8; 32]>,
    with_rb: bool,
    t_r: EdwardsPoint,
    r_encoding: Option<[u8; 32]>,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            a: Scalar::ZERO,
            t_a: id(),
            key_encoding: None,
            with_rb: true,
            t_r: id(),
            r_encoding: None,
        }
    }
}

impl Recipe {
    /// Draws messages (and r) until `want(h)`, then signs.
    fn sign(self, rng: &mut StdRng, want: impl Fn(&Scalar) -> bool) -> Vector {
        let key = self.key_encoding.unwrap_or_else(|| {
            (EdwardsPoint::mul_base(&self.a) + self.t_a)
                .compress()
                .to_bytes()
        });
        for _ in 0..1000 {
            let message = random_message(rng);
            let r = if self.with_rb {
                random_scalar(rng)
            } else {
                Scalar::ZERO
            };
            let r_bytes = self.r_encoding.unwrap_or_else(|| {
                (EdwardsPoint::mul_base(&r) + self.t_r)
                    .compress()
                    .to_bytes()
            });
            let h = hram(&r_bytes, &key, &message);
            if want(&h) {
                return Vector {
                    key,
                    message,
                    signature: signature(&r_bytes, &(r + h * self.a)),
                };
            }
        }
        panic!("no message found in 1000 draws")
    }
}

fn hram(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let digest = Sha512::new()
        .chain_update(r)
        .chain_update(a)
        .chain_update(message)
        .finalize();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&digest);
    Scalar::from_bytes_mod_order_wide(&wide)
}

fn signature(r: &[u8; 32], s: &Scalar) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(r);
    out[32..].copy_from_slice(s.as_bytes());
    out
}

fn random_scalar(rng: &mut StdRng) -> Scalar {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

fn random_message(rng: &mut StdRng) -> Vec<u8> {
    let mut message = vec![0u8; rng.gen_range(0..64)];
    rng.fill_bytes(&mut message);
    message
}

fn id() -> EdwardsPoint {
    EdwardsPoint::identity()
}

fn decode(bytes: &[u8; 32]) -> EdwardsPoint {
    CompressedEdwardsY(*bytes).decompress().expect("decodes")
}

/// The eight torsion points `T_k = [k]T_1`, `T_1` of order 8.
fn torsion() -> &'static [EdwardsPoint; 8] {
    static TORSION: OnceLock<[EdwardsPoint; 8]> = OnceLock::new();
    TORSION.get_or_init(|| {
        // [ℓ]P is the torsion component of P (times ℓ, a unit mod 8); find a P where it has
        // order 8. [ℓ]P = [ℓ − 1]P + P, and −1 as a Scalar is the integer ℓ − 1.
        for i in 0u32.. {
            let digest = Sha512::digest(i.to_le_bytes());
            let Some(p) = CompressedEdwardsY(digest[..32].try_into().expect("32")).decompress()
            else {
                continue;
            };
            let t1 = p * -Scalar::ONE + p;
            if !mul_small(&t1, 4).is_identity() {
                return std::array::from_fn(|k| mul_small(&t1, k));
            }
        }
        unreachable!()
    })
}

fn mul_small(point: &EdwardsPoint, n: usize) -> EdwardsPoint {
    (0..n).fold(EdwardsPoint::identity(), |acc, _| acc + point)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Every non-canonical point encoding that decodes: y = p + k (k = 0..=18, so y < 2^255) with
/// either sign bit, and x = 0 (y = 1, y = −1) with the sign bit set.
fn non_canonical_encodings() -> &'static [[u8; 32]] {
    static ENCODINGS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    ENCODINGS.get_or_init(|| {
        let mut candidates = Vec::new();
        for k in 0..=18u8 {
            let mut y = P;
            y[0] += k; // 0xed + 18 = 0xff: no carry
            candidates.push(y);
        }
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut minus_one = P;
        minus_one[0] -= 1;
        candidates.extend([one, minus_one]);
        let mut out = Vec::new();
        for y in candidates {
            for sign in [0, 0x80] {
                let mut bytes = y;
                bytes[31] |= sign;
                let non_canonical = CompressedEdwardsY(bytes)
                    .decompress()
                    .is_some_and(|point| point.compress().to_bytes() != bytes);
                if non_canonical && !out.contains(&bytes) {
                    out.push(bytes);
                }
            }
        }
        out
    })
}

/// p = 2^255 − 19, little-endian.
const P: [u8; 32] = {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// The identity encoded as y = p + 1.
fn nc_identity() -> [u8; 32] {
    let mut y = P;
    y[0] += 1;
    y
}

/// `s + ℓ` as 32 little-endian bytes (fits: s < ℓ < 2^253).
fn add_l(s: &[u8; 32]) -> [u8; 32] {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
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

// ---------------------------------------------------------------------------------------------
// Running.

/// `verify_many` over vectors whose keys parse.
fn many(cases: &[&Case]) -> Result<(), usize> {
    let keys: Vec<VerifyingKey> = cases
        .iter()
        .map(|c| c.parsed_key().expect("key parses"))
        .collect();
    let checks: Vec<SignatureCheck<'_>> =
        cases.iter().zip(&keys).map(|(c, k)| c.check(k)).collect();
    verify_many(&checks)
}

/// What `verify_many` must say: the lowest index `verify_strict` rejects.
fn expected(cases: &[&Case]) -> Result<(), usize> {
    match cases.iter().position(|c| !c.strict()) {
        Some(i) => Err(i),
        None => Ok(()),
    }
}
