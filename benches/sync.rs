//! Member sync benchmark: full-trust sync (the member's own replica: membership replayed from
//! the genesis, every signature and entitlement checked, every batch proven in a signed
//! checkpoint, compromise flags computed, state saved) against a `coalition serve` process
//! over gRPC + mutual TLS on loopback, and the bytes a filtered sync moves.
//!
//! Measures:
//! 1. full-trust sync from 0 of `SYNC_BENCH_PDQ_SETS` sets of 10,000 PDQ hashes (default 1,000:
//!    10M hashes) with `sync::Syncer`, hashes/s, against the raw stream (no decoding, no
//!    verification) in the same run;
//! 2. a log of `SYNC_BENCH_FILTER_SETS` sets of 1,000 sha256 hashes (default 10,000) of which 1%
//!    carry the label `rare`: bytes a `--label rare` sync moves against an unfiltered one (the
//!    encoded size of every Sync message received), and that the filtered replica accounts for
//!    every entry and proves it.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench sync`
//! (`SYNC_BENCH_QUICK=1`: 50 PDQ sets and 2,000 sets of 1,000, a smoke run).

#[path = "support/founding.rs"]
mod founding;
#[path = "support/hub_process.rs"]
mod hub_process;

use anyhow::{Context, Result, bail};
use coalition_hub::client::{Client, sign_new};

use coalition_hub::membership::MemberId;
use coalition_hub::pki::CertDir;
use coalition_hub::statement::{Body, HashEntry, HashSet, HashType, Label, ParsedEnvelope};
use coalition_hub::sync::{FilterSpec, SyncOptions, Syncer};
use hub_process::Hub;
use prost::Message;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use std::path::Path;

use std::time::{Duration, Instant};

const RUNS: usize = 3;

fn main() -> Result<()> {
    let quick = std::env::var_os("SYNC_BENCH_QUICK").is_some();
    let sets = |var: &str, full: usize, smoke: usize| -> Result<usize> {
        match std::env::var(var) {
            Ok(v) => v.parse().with_context(|| format!("{var}={v}")),
            Err(_) => Ok(if quick { smoke } else { full }),
        }
    };
    let pdq_sets = sets("SYNC_BENCH_PDQ_SETS", 1_000, 50)?;
    let filter_sets = sets("SYNC_BENCH_FILTER_SETS", 10_000, 2_000)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(run(pdq_sets, filter_sets))
}

struct Env {
    root: tempfile::TempDir,
    certs: CertDir,
    admin: MemberId,
    submitter: MemberId,
    reader: MemberId,
}

async fn run(pdq_sets: usize, filter_sets: usize) -> Result<()> {
    let root = tempfile::tempdir().context("creating a temporary directory")?;
    let env = Env {
        certs: CertDir::new(root.path().join("certs")),
        admin: MemberId::parse("admin")?,
        submitter: MemberId::parse("bench-submitter")?,
        reader: MemberId::parse("bench-reader")?,
        root,
    };
    env.certs
        .init(&[env.admin.clone(), env.submitter.clone(), env.reader.clone()])?;
    println!("Coalition Hub member sync benchmark");
    println!(
        "machine: {} cores; hub: separate `coalition serve` process on 127.0.0.1, gRPC + mutual TLS\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // 1. Full-trust sync of PDQ sets of 10,000.
    let data = env.root.path().join("pdq");
    let built = build_log(&env, &data, pdq_sets, 10_000, pdq_entry).await?;
    println!(
        "log: {pdq_sets} sets of 10,000 PDQ hashes ({} hashes, {:.1} s to sign and store offline)",
        pdq_sets * 10_000,
        built.as_secs_f64()
    );
    let hub = Hub::start(
        env.certs.root(),
        &data,
        &env.root.path().join("hub.log"),
        128,
    )?;
    let hashes = (pdq_sets * 10_000) as f64;
    let mut full = Vec::new();
    let mut raw = Vec::new();
    for run in 0..RUNS {
        let (t_raw, bytes) = raw_stream(&env, &hub.addr, FilterSpec::default()).await?;
        let (t_full, proven) = full_trust(&env, &hub.addr, FilterSpec::default(), run).await?;
        println!(
            "  run {}: full-trust {:.2} s = {:.0} hashes/s (proven in a checkpoint of {proven}); raw stream {:.2} s = {:.0} hashes/s ({:.0} MB)",
            run + 1,
            t_full.as_secs_f64(),
            hashes / t_full.as_secs_f64(),
            t_raw.as_secs_f64(),
            hashes / t_raw.as_secs_f64(),
            bytes as f64 / 1e6
        );
        full.push(t_full);
        raw.push(t_raw);
    }
    let (m_full, m_raw) = (median(&mut full), median(&mut raw));
    println!(
        "full-trust sync, {} PDQ hashes: median {:.0} hashes/s; raw stream median {:.0} hashes/s; full-trust / raw = {:.2}\n",
        pdq_sets * 10_000,
        hashes / m_full.as_secs_f64(),
        hashes / m_raw.as_secs_f64(),
        m_raw.as_secs_f64() / m_full.as_secs_f64()
    );
    hub.stop()?;

    // 2. Bytes moved by a filtered sync selecting 1% of the sets.
    let data = env.root.path().join("filtered");
    build_log(&env, &data, filter_sets, 1_000, |set, i| {
        sha256_entry(set, i)
    })
    .await?;
    let hub = Hub::start(
        env.certs.root(),
        &data,
        &env.root.path().join("hub.log"),
        128,
    )?;
    let rare = FilterSpec {
        labels: vec!["rare".into()],
        ..FilterSpec::default()
    };
    let (_, all_bytes) = raw_stream(&env, &hub.addr, FilterSpec::default()).await?;
    let (_, rare_bytes) = raw_stream(&env, &hub.addr, rare.clone()).await?;
    let (t, proven) = full_trust(&env, &hub.addr, rare, 0).await?;
    println!(
        "log: {filter_sets} sets of 1,000 sha256 hashes, 1% labelled 'rare'\n  unfiltered sync moves {:.1} MB; --label rare moves {:.1} MB = {:.2}% of it; the filtered replica accounted for every entry and proved all {proven} in {:.2} s",
        all_bytes as f64 / 1e6,
        rare_bytes as f64 / 1e6,
        100.0 * rare_bytes as f64 / all_bytes as f64,
        t.as_secs_f64()
    );
    follow_latency(&env, &hub.addr).await?;
    hub.stop()?;
    Ok(())
}

/// `--follow`: the time from a set's acknowledgement to its batch being proven (what a
/// following `coalition sync` waits for before writing the rows), at the hub's default
/// checkpoint cadence.
async fn follow_latency(env: &Env, addr: &str) -> Result<()> {
    const SAMPLES: usize = 15;
    let state = env.root.path().join("follow");
    std::fs::create_dir_all(&state)?;
    let client = Client::connect(addr, &env.certs.member_tls(&env.reader)?).await?;
    let (mut syncer, _) = Syncer::open(
        client,
        SyncOptions {
            filter: FilterSpec::default(),
            follow: true,
            genesis: None,
            cursor: state.join("cursor"),
            ids: state.join("ids"),
            require_witnessed: false,
        },
    )
    .await?;
    let mut submitter = Client::connect(addr, &env.certs.member_tls(&env.submitter)?).await?;
    let key = env.certs.signing_key(&env.submitter)?;
    // Catch up with the log first: until a batch's refreshed checkpoint is the replica's size.
    loop {
        let batch = syncer.next().await?.context("the stream ended")?;
        syncer.commit(&vec![false; batch.entries.len()], 0)?;
        if batch.checkpoint_size == syncer.replica().size() {
            break;
        }
    }
    let mut latencies = Vec::with_capacity(SAMPLES);
    for n in 0..SAMPLES {
        let body = Body::HashSet(HashSet {
            expires_at_ms: None,
            description: String::new(),
            entries: vec![sha256_entry(1_000_000 + n, 0)],
        });
        let receipt = submitter
            .submit(sign_new(&env.submitter, &key, body))
            .await?
            .receipt
            .context("no receipt")?;
        let acked = Instant::now();
        while syncer.replica().size() <= receipt.seq {
            let batch = syncer.next().await?.context("the stream ended")?;
            syncer.commit(&vec![false; batch.entries.len()], 0)?;
        }
        latencies.push(acked.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let max = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "--follow: acknowledgement to proven batch, {SAMPLES} sets one at a time: median {:.0} ms, max {:.0} ms",
        median(&mut latencies).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Syncs everything from 0 with a fresh replica, as `coalition sync` does minus writing rows.
/// Returns the time and the size of the checkpoint that proved the last batch.
async fn full_trust(
    env: &Env,
    addr: &str,
    filter: FilterSpec,
    run: usize,
) -> Result<(Duration, u64)> {
    let state = env
        .root
        .path()
        .join(format!("state-{run}-{}", filter.labels.len()));
    std::fs::create_dir_all(&state)?;
    let client = Client::connect(addr, &env.certs.member_tls(&env.reader)?).await?;
    let started = Instant::now();
    let (mut syncer, _) = Syncer::open(
        client,
        SyncOptions {
            filter,
            follow: false,
            genesis: None,
            cursor: state.join("cursor"),
            ids: state.join("ids"),
            require_witnessed: false,
        },
    )
    .await?;
    let mut proven = 0;
    while let Some(batch) = syncer.next().await? {
        let written: Vec<bool> = batch
            .entries
            .into_iter()
            .map(|e| syncer.row(e).is_some())
            .collect();
        syncer.commit(&written, 0)?;
        proven = batch.checkpoint_size;
    }
    let elapsed = started.elapsed();
    std::fs::remove_dir_all(&state)?;
    if proven != syncer.replica().size() {
        bail!(
            "the last checkpoint ({proven}) does not cover the log ({})",
            syncer.replica().size()
        );
    }
    Ok((elapsed, proven))
}

/// The Sync stream alone: receive every message, decode nothing further. Returns the time and
/// the encoded bytes received.
async fn raw_stream(env: &Env, addr: &str, filter: FilterSpec) -> Result<(Duration, u64)> {
    let mut client = Client::connect(addr, &env.certs.member_tls(&env.reader)?).await?;
    let parsed = filter.parse().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let mut stream = client
        .hub
        .sync(filter.request(&parsed, 0, false))
        .await?
        .into_inner();
    let mut bytes = 0u64;
    while let Some(msg) = stream.message().await? {
        bytes += msg.encoded_len() as u64;
    }
    Ok((started.elapsed(), bytes))
}

fn pdq_entry(set: usize, i: usize) -> HashEntry {
    let digest = Sha256::digest(format!("pdq {set}/{i}"));
    HashEntry {
        hash_type: HashType::Pdq,
        value: digest.to_vec(),
        quality: Some(90),
        labels: vec![Label::Tag("bench".into())],
    }
}

fn sha256_entry(set: usize, i: usize) -> HashEntry {
    let label = if set.is_multiple_of(100) {
        "rare"
    } else {
        "common"
    };
    HashEntry {
        hash_type: HashType::Sha256,
        value: Sha256::digest(format!("sha {set}/{i}")).to_vec(),
        quality: None,
        labels: vec![Label::Tag(label.into())],
    }
}

/// Founds a hub in `data`, admits the bench members and appends `sets` signed sets of `size`
/// entries, offline (signing in parallel, the store's group commit). Returns the time taken.
async fn build_log(
    env: &Env,
    data: &Path,
    sets: usize,
    size: usize,
    entry: impl Fn(usize, usize) -> HashEntry + Sync,
) -> Result<Duration> {
    let started = Instant::now();
    let members = [&env.submitter, &env.reader];
    let (store, _) = founding::found(
        data,
        &env.certs,
        "bench.coalition.local",
        &env.admin,
        &members,
    )
    .await?;
    let key = env.certs.signing_key(&env.submitter)?;
    for chunk in (0..sets).collect::<Vec<_>>().chunks(64) {
        let verified = chunk
            .par_iter()
            .map(|&set| {
                let body = Body::HashSet(HashSet {
                    expires_at_ms: None,
                    description: String::new(),
                    entries: (0..size).map(|i| entry(set, i)).collect(),
                });
                let envelope = sign_new(&env.submitter, &key, body);
                let parsed = ParsedEnvelope::parse(envelope)?;
                let (verified, _) = store.registry().verify(parsed)?;
                Ok::<_, anyhow::Error>(verified)
            })
            .collect::<Result<Vec<_>>>()?;
        // All in flight at once, so the writer commits them in groups.
        let appends: Vec<_> = verified
            .into_iter()
            .map(|v| {
                let store = store.clone();
                tokio::spawn(async move { store.append(v).await })
            })
            .collect();
        for appended in appends {
            appended.await??;
        }
    }
    Ok(started.elapsed())
}
