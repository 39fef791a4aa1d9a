//! PDQ corpora and Match requests for the benchmarks that time a batch of queries against a
//! running hub (`follow`, `lifecycle`, `mirror`): deterministic PDQ sets, queries half planted
//! near stored hashes, the request at threshold 31, and the median and slowest of [`BATCHES`]
//! runs. Included by the benches with `#[path]`.
#![allow(dead_code)]

use anyhow::{Context, Result, bail};
use coalition_hub::client::Client;
use coalition_hub::pb;
use coalition_hub::statement::{Body, Category, HashEntry, HashSet, HashType, Label};
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// Timed runs of a batch.
pub const BATCHES: usize = 15;

/// A Match request for `hashes` as PDQ queries, threshold 31, default states.
pub fn request(hashes: &[[u8; 32]]) -> pb::MatchRequest {
    pb::MatchRequest {
        queries: hashes
            .iter()
            .map(|q| pb::MatchQuery {
                r#type: pb::HashType::Pdq as i32,
                value: q.to_vec(),
                quality: None,
            })
            .collect(),
        pdq_threshold: Some(31),
        ..Default::default()
    }
}

/// Median and slowest of [`BATCHES`] runs of `batch`, in ms.
pub async fn time_batches(client: &mut Client, batch: &pb::MatchRequest) -> Result<(f64, f64)> {
    let mut times = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t = Instant::now();
        let answer = client.hub.r#match(batch.clone()).await?.into_inner();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if answer.results.len() != batch.queries.len() {
            bail!("{} results", answer.results.len());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[times.len() - 1]))
}

/// A bench option from the environment, `default` when unset.
pub fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

/// The `i`th hash of set `set` (deterministic, so probes and restart checks know it).
pub fn pdq_of(set: usize, i: usize) -> [u8; 32] {
    let mut rng = rand::rngs::StdRng::seed_from_u64(((set as u64) << 20) ^ i as u64);
    rng.r#gen()
}

/// Set `set` of `n` PDQ hashes ([`pdq_of`]), quality 90, category A1.
pub fn pdq_set(set: usize, n: usize, description: String) -> Body {
    Body::HashSet(HashSet {
        expires_at_ms: None,
        description,
        entries: (0..n)
            .map(|i| HashEntry {
                hash_type: HashType::Pdq,
                value: pdq_of(set, i).to_vec(),
                quality: Some(90),
                labels: vec![Label::Category(Category::A1)],
            })
            .collect(),
    })
}

/// `n` queries (seed 77): the even ones a stored hash `stored(rng, i)` with `(i / 2) % 32`
/// random bits flipped (a near-duplicate at 0-31 bits), the odd ones random.
pub fn planted_queries(
    n: usize,
    mut stored: impl FnMut(&mut rand::rngs::StdRng, usize) -> [u8; 32],
) -> Vec<[u8; 32]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                let mut q = stored(&mut rng, i);
                for _ in 0..(i / 2) % 32 {
                    let bit = rng.gen_range(0..256);
                    q[bit / 8] ^= 1 << (bit % 8);
                }
                q
            } else {
                rng.r#gen()
            }
        })
        .collect()
}
