//! PDQ Match requests for the benchmarks that time a batch of queries against a running hub
//! (`follow`, `lifecycle`): the request at threshold 31, and the median and slowest of
//! [`BATCHES`] runs. Included by the benches with `#[path]`.
#![allow(dead_code)]

use anyhow::{Result, bail};
use coalition_hub::client::Client;
use coalition_hub::pb;
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
