//! Signature verification, one verdict: `verify_one` (= `verify_strict`) against `verify_many`
//! on 10,000 valid signatures over 32-byte messages, median of 3 rounds, in ns per signature.
//!
//! Two key sets: every signature by its own key, and 8 keys (an auditor's case: few members,
//! many statements). `verify_one` is timed in a loop on one thread and with rayon's `par_iter`
//! on all cores; `verify_many` on the global rayon pool (all cores) and in a 1-thread pool. For
//! reference, on one thread: plain `ed25519_dalek::verify_batch` in chunks of the same size
//! (what a batch costs without the checks that would make it agree with `verify_strict`), and
//! the torsion check of every R alone, constant time (`is_torsion_free`) and variable time:
//! what a sound batch would have to add per signature (why `verify_many` does not batch).
//!
//! Run: `cargo bench --bench signatures`

use coalition_hub::statement::{BATCH_SIZE, SignatureCheck, verify_many, verify_one};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rayon::prelude::*;
use std::time::Instant;

const N: usize = 10_000;
const ROUNDS: usize = 3;

struct Set {
    keys: Vec<VerifyingKey>,
    messages: Vec<[u8; 32]>,
    signatures: Vec<[u8; 64]>,
}

fn main() {
    println!(
        "== signatures: {N} valid, median of {ROUNDS} rounds, ns/signature; rayon threads: {}; load average: {} ==",
        rayon::current_num_threads(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for distinct_keys in [N, 8] {
        let set = build(distinct_keys);
        let checks: Vec<SignatureCheck<'_>> = (0..N)
            .map(|i| SignatureCheck {
                key: &set.keys[i],
                message: &set.messages[i],
                signature: &set.signatures[i],
            })
            .collect();
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a rayon pool");
        let signatures: Vec<Signature> = set.signatures.iter().map(Signature::from_bytes).collect();
        let messages: Vec<&[u8]> = set.messages.iter().map(|m| m.as_slice()).collect();

        println!("-- {distinct_keys} distinct keys --");
        report("verify_one, 1 thread", || {
            assert!(checks.iter().all(verify_one));
        });
        report("verify_one, rayon par_iter, all threads", || {
            assert!(checks.par_iter().all(verify_one));
        });
        report("verify_many, all threads", || {
            assert_eq!(verify_many(&checks), Ok(()));
        });
        report("verify_many, 1 thread", || {
            one_thread.install(|| assert_eq!(verify_many(&checks), Ok(())));
        });
        if distinct_keys == N {
            let points: Vec<EdwardsPoint> = set
                .signatures
                .iter()
                .map(|s| {
                    CompressedEdwardsY::from_slice(&s[..32])
                        .ok()
                        .and_then(|r| r.decompress())
                        .expect("R decodes")
                })
                .collect();
            report("R: is_torsion_free (constant time), 1 thread", || {
                assert!(points.iter().all(EdwardsPoint::is_torsion_free));
            });
            report("R: [l-1]R + R == 0 (variable time), 1 thread", || {
                let l_minus_1 = -Scalar::ONE;
                assert!(points.iter().all(|p| {
                    (EdwardsPoint::vartime_double_scalar_mul_basepoint(
                        &l_minus_1,
                        p,
                        &Scalar::ZERO,
                    ) + p)
                        .is_identity()
                }));
            });
        }
        report("plain verify_batch, 1 thread (reference)", || {
            for ((m, s), k) in messages
                .chunks(BATCH_SIZE)
                .zip(signatures.chunks(BATCH_SIZE))
                .zip(set.keys.chunks(BATCH_SIZE))
            {
                assert!(ed25519_dalek::verify_batch(m, s, k).is_ok());
            }
        });
    }
}

fn build(distinct_keys: usize) -> Set {
    let mut rng = StdRng::seed_from_u64(7);
    let signers: Vec<SigningKey> = (0..distinct_keys)
        .map(|_| SigningKey::generate(&mut rng))
        .collect();
    let mut set = Set {
        keys: Vec::with_capacity(N),
        messages: Vec::with_capacity(N),
        signatures: Vec::with_capacity(N),
    };
    for i in 0..N {
        let signer = &signers[i % distinct_keys];
        let mut message = [0u8; 32];
        rng.fill_bytes(&mut message);
        set.keys.push(signer.verifying_key());
        set.signatures.push(signer.sign(&message).to_bytes());
        set.messages.push(message);
    }
    set
}

fn report(what: &str, mut run: impl FnMut()) {
    let mut ns: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_nanos() as f64 / N as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    let rounds: Vec<String> = ns.iter().map(|v| format!("{v:.0}")).collect();
    println!(
        "{what:<44} median {:>7.0} ns/signature  (rounds: {})",
        ns[ROUNDS / 2],
        rounds.join(", ")
    );
}
