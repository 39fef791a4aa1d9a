//! Foundation benchmark: durable ingest and verified sync over real gRPC + mutual TLS on
//! loopback, with the hub running as a separate `coalition serve` process so its memory can be
//! read from `/proc/<pid>/status`.
//!
//! Measures:
//! 1. ingest (hashes/s) of signed sets of 1,000 and 10,000 sha256 hashes with 1, 2 and 4
//!    concurrent connections (each submit acknowledged only after fsync), with the client-side
//!    signing cost, server-side verification cost and store-only commit cost as baselines;
//! 2. full-trust sync from cursor 0 (hashes/s) through `sync::Syncer`, the member's replica
//!    (`coalition sync` without the output file): membership replayed from the genesis, every
//!    statement decoded and every signature verified client-side, compromise computed locally,
//!    every batch proven by a signed checkpoint and consistency proofs before it is returned,
//!    and the replica state saved after each batch; plus a raw-stream and replay-only
//!    breakdown;
//! 3. the hub's peak memory (VmHWM) and VmRSS before/after syncing 100,000 and 1,000,000
//!    stored hashes;
//! 4. `Match` over gRPC: a batch of 1,000 PDQ queries (half planted near-duplicates at
//!    distances 0-31, half random) against 1,000,000 stored PDQ hashes, with recall against a
//!    brute-force scan and the hub's memory with that index loaded.
//!
//! Run (release build; a separate target dir keeps it from blocking other builds):
//! `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench hub`
//! Set `HUB_BENCH_QUICK=1` for a fast smoke run with fewer hashes, `HUB_BENCH_SKIP_INGEST=1` to
//! measure only sync, memory and matching, `HUB_BENCH_ONLY_MATCH=1` for matching alone,
//! `HUB_BENCH_ONLY_METRICS=1` for the cost of metrics on ingest alone (the same ingest with
//! the Prometheus recorder installed, `--ops-listen 127.0.0.1:0`, and without, `--ops-listen
//! off`, runs interleaved, medians), `HUB_BENCH_ONLY_SMALL=1` for small statements alone (see
//! [`small_statements`]; `HUB_BENCH_SMALL_N` statements per run, default 200,000;
//! `HUB_BENCH_SMALL_RUNS` fresh hubs per mode, default 3),
//! `HUB_BENCH_ONLY_FLOOD=1` for a flood of single-hash statements signed as they are sent, with
//! the hub's memory sampled (see [`flood`]; `HUB_BENCH_FLOOD_SECS`, default 600;
//! `HUB_BENCH_FLOOD_N` stops it after that many statements, and `HUB_BENCH_FLOOD_VIA=batch`
//! sends them through `SubmitBatch`),
//! `HUB_BENCH_ONLY_CORPUS=1` for the matching corpus alone over `HUB_BENCH_SMALL_N`
//! single-hash statements (default 10,000,000; see [`corpus_memory`]),
//! `HUB_BENCH_ONLY_MEMORY=1` for where a hub's memory per small statement goes (see
//! [`memory_per_statement`]; `HUB_BENCH_SMALL_N` statements, default 1,000,000). The hub
//! inherits the environment (e.g. `MALLOC_ARENA_MAX`).

#[path = "support/founding.rs"]
mod founding;
#[path = "support/hub_process.rs"]
mod hub_process;

use anyhow::{Context, Result, anyhow, bail};
use coalition_hub::client::{Client, sign_new};

use coalition_hub::membership::MemberId;
use coalition_hub::pb;
use coalition_hub::pki::CertDir;
use coalition_hub::replica::{Entry, Replica, SeenMap};
use coalition_hub::statement::{
    Body, Category, HashEntry, HashSet, HashType, Label, ParsedEnvelope,
};
use coalition_hub::store::{Store, StoreConfig};
use coalition_hub::sync::{FilterSpec, SyncOptions, Syncer};
use hub_process::Hub;
use sha2::{Digest, Sha256};

use std::path::Path;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs per measured configuration (the median is reported).
const RUNS: usize = 3;
/// Connection counts tried for ingest.
const CONCURRENCY: [usize; 3] = [1, 2, 4];

fn main() -> Result<()> {
    let quick = std::env::var_os("HUB_BENCH_QUICK").is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(run(quick))
}

/// Everything one bench run needs: certificates and member ids.
struct Env {
    root: tempfile::TempDir,
    certs: CertDir,
    admin: MemberId,
    submitter: MemberId,
    reader: MemberId,
}

async fn run(quick: bool) -> Result<()> {
    let started = Instant::now();
    let root = tempfile::tempdir().context("creating a temporary directory")?;
    let certs = CertDir::new(root.path().join("certs"));
    let env = Env {
        admin: MemberId::parse("admin")?,
        submitter: MemberId::parse("bench-submitter")?,
        reader: MemberId::parse("bench-reader")?,
        certs,
        root,
    };
    env.certs
        .init(&[env.admin.clone(), env.submitter.clone(), env.reader.clone()])?;
    println!("Coalition Hub foundation benchmark");
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!(
        "hub: separate `coalition serve` process, gRPC + mutual TLS on 127.0.0.1; sets of sha256 hashes, one category label each\n"
    );

    let mut table = Table::default();
    // A mode of its own (`HUB_BENCH_ONLY_…`), then the summary, instead of the full run.
    let only = ["METRICS", "SMALL", "FLOOD", "CORPUS", "MEMORY", "MATCH"]
        .into_iter()
        .find(|mode| std::env::var_os(format!("HUB_BENCH_ONLY_{mode}")).is_some());
    if let Some(mode) = only {
        match mode {
            "METRICS" => {
                let (sets, runs) = if quick { (40, 3) } else { (2_000, 9) };
                metrics_cost(&env, 1_000, sets, runs, &mut table).await?;
            }
            "SMALL" => {
                let n = small_n(if quick { 20_000 } else { 200_000 })?;
                small_statements(&env, n, &mut table).await?;
            }
            "FLOOD" => {
                let secs = match std::env::var("HUB_BENCH_FLOOD_SECS") {
                    Ok(v) => v
                        .parse()
                        .context("HUB_BENCH_FLOOD_SECS: a number of seconds")?,
                    Err(_) => 600,
                };
                let limit = match std::env::var("HUB_BENCH_FLOOD_N") {
                    Ok(v) => v
                        .parse()
                        .context("HUB_BENCH_FLOOD_N: a number of statements")?,
                    Err(_) => usize::MAX,
                };
                let via = match std::env::var("HUB_BENCH_FLOOD_VIA").as_deref() {
                    Ok("batch") => Via::Batch,
                    Ok("submit") | Err(_) => Via::Submit,
                    Ok(other) => bail!("HUB_BENCH_FLOOD_VIA: submit or batch, not {other:?}"),
                };
                flood(&env, secs, limit, via, &mut table).await?;
            }
            "CORPUS" => {
                let n = small_n(if quick { 200_000 } else { 10_000_000 })?;
                corpus_memory(&env, n, &mut table).await?;
            }
            "MEMORY" => {
                let n = small_n(if quick { 50_000 } else { 1_000_000 })?;
                memory_per_statement(&env, n, &mut table).await?;
            }
            _ => match_rpc(&env, if quick { 10 } else { 100 }, &mut table).await?,
        }
        println!("\n== Summary (medians where runs repeat) ==");
        table.print();
        return Ok(());
    }
    // (set size, sets per ingest run)
    let ingest_plan: [(usize, usize); 2] = if quick {
        [(1_000, 40), (10_000, 8)]
    } else {
        [(1_000, 400), (10_000, 60)]
    };
    if std::env::var_os("HUB_BENCH_SKIP_INGEST").is_none() {
        for (set_size, sets) in ingest_plan {
            ingest(&env, set_size, sets, &mut table).await?;
        }
    }
    let (small, large) = if quick { (10, 30) } else { (10, 100) };
    sync_and_memory(&env, small, large, &mut table).await?;
    match_rpc(&env, if quick { 10 } else { 100 }, &mut table).await?;

    println!("\n== Summary (medians of {RUNS} runs) ==");
    table.print();
    println!(
        "\ntotal bench time: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Ingest

async fn ingest(env: &Env, set_size: usize, sets: usize, table: &mut Table) -> Result<()> {
    println!("== Ingest: {sets} sets of {set_size} sha256 hashes per run ==");
    let key = env.certs.signing_key(&env.submitter)?;

    // Baseline 1: client-side signing (statement encoding + ed25519 over the PAE).
    let bodies: Vec<Body> = (0..sets).map(|s| hash_set_body(set_size, s)).collect();
    let t = Instant::now();
    let pool: Vec<pb::Envelope> = bodies
        .into_iter()
        .map(|body| sign_new(&env.submitter, &key, body))
        .collect();
    let sign = t.elapsed();
    let hashes = (set_size * sets) as f64;
    println!(
        "  client signing: {:.2} ms/set, {} hashes/s (one thread)",
        ms(sign) / sets as f64,
        rate(hashes, sign)
    );
    table.row(
        format!("baseline: client sign, sets of {set_size}"),
        rate(hashes, sign),
        format!("{:.2} ms/set, one thread", ms(sign) / sets as f64),
    );

    // Baseline 2: what the hub does per submit before the store (decode, validate, verify).
    let t = Instant::now();
    let mut verified = Vec::with_capacity(pool.len());
    for envelope in &pool {
        let parsed = ParsedEnvelope::parse(envelope.clone())?;
        verified.push(parsed.verify_with(&[key.verifying_key()])?);
    }
    let verify = t.elapsed();
    println!(
        "  hub-side decode+verify (in process): {:.2} ms/set, {} hashes/s (one thread)",
        ms(verify) / sets as f64,
        rate(hashes, verify)
    );
    table.row(
        format!("baseline: decode+verify, sets of {set_size}"),
        rate(hashes, verify),
        format!(
            "{:.2} ms/set, one thread, in process",
            ms(verify) / sets as f64
        ),
    );

    // Baseline 3: the store alone (group commit + fsync), no gRPC, one caller at a time and
    // all at once.
    for parallel in [false, true] {
        let dir = tempfile::tempdir_in(env.root.path())?;
        // A founded hub with the submitter admitted: the writer checks entitlement.
        register(env, dir.path()).await?;
        let store = Store::open(dir.path(), &StoreConfig::default())?;
        let batch = verified.clone();
        let t = Instant::now();
        if parallel {
            let mut tasks = tokio::task::JoinSet::new();
            for v in batch {
                let store = store.clone();
                tasks.spawn(async move { store.append(v).await });
            }
            while let Some(done) = tasks.join_next().await {
                done??;
            }
        } else {
            for v in batch {
                store.append(v).await?;
            }
        }
        let took = t.elapsed();
        drop(store);
        let how = if parallel {
            "all at once"
        } else {
            "sequential"
        };
        println!(
            "  store only ({how}, in process): {:.2} ms/set, {} hashes/s",
            ms(took) / sets as f64,
            rate(hashes, took)
        );
        table.row(
            format!("baseline: store append {how}, sets of {set_size}"),
            rate(hashes, took),
            format!("{:.2} ms/set incl. fsync, no gRPC", ms(took) / sets as f64),
        );
    }
    drop(verified);

    // End to end over gRPC + mTLS, fresh hub per run so every run starts from the same state.
    let pool = Arc::new(pool);
    for conns in CONCURRENCY {
        let mut rates = Vec::new();
        let mut latencies = Vec::new();
        for _ in 0..RUNS {
            let (_data, hub) = fresh_hub(env).await?;
            let (took, mut lat) = submit_all(env, &hub.addr, &pool, conns).await?;
            hub.stop()?;
            rates.push(hashes / took.as_secs_f64());
            latencies.append(&mut lat);
        }
        let r = median(&mut rates);
        let lat = median(&mut latencies);
        println!(
            "  gRPC ingest, {conns} connection(s): median {} hashes/s (runs: {}), median submit latency {:.1} ms",
            fmt_rate(r),
            rates
                .iter()
                .map(|r| fmt_rate(*r))
                .collect::<Vec<_>>()
                .join(", "),
            lat
        );
        table.row(
            format!("ingest, sets of {set_size}, {conns} conn"),
            fmt_rate(r),
            format!("submit latency {lat:.1} ms (median)"),
        );
    }
    Ok(())
}

/// The cost of metrics on ingest: `runs` pairs of the same gRPC ingest (2 connections, a
/// fresh hub each), one with the Prometheus recorder and one without, in alternating order,
/// after one uncounted warm-up pair.
async fn metrics_cost(
    env: &Env,
    set_size: usize,
    sets: usize,
    runs: usize,
    table: &mut Table,
) -> Result<()> {
    println!("== Metrics cost: {sets} sets of {set_size} sha256 hashes per run, 2 connections ==");
    let key = env.certs.signing_key(&env.submitter)?;
    let pool: Vec<pb::Envelope> = (0..sets)
        .map(|s| sign_new(&env.submitter, &key, hash_set_body(set_size, s)))
        .collect();
    let pool = Arc::new(pool);
    let hashes = (set_size * sets) as f64;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    // Run 0 warms the machine up (binary, page cache, allocator) and is not counted: the first
    // run of a series was often the slowest, and it always had the recorder.
    for run in 0..=runs {
        let order = if run % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for metrics in order {
            let data = tempfile::tempdir_in(env.root.path())?;
            register(env, data.path()).await?;
            let ops = if metrics { "127.0.0.1:0" } else { "off" };
            let hub = Hub::start_with(
                env.certs.root(),
                data.path(),
                &env.root.path().join("hub.log"),
                128,
                &["--ops-listen", ops],
            )?;
            let (took, _) = submit_all(env, &hub.addr, &pool, 2).await?;
            hub.stop()?;
            let r = hashes / took.as_secs_f64();
            println!("  run {run}, metrics {ops}: {} hashes/s", fmt_rate(r));
            if run == 0 {
                continue;
            }
            if metrics {
                with.push(r)
            } else {
                without.push(r)
            }
        }
    }
    let mut ratios: Vec<f64> = with.iter().zip(&without).map(|(w, o)| w / o).collect();
    let paired = (1.0 - median(&mut ratios)) * 100.0;
    let (on, off) = (median(&mut with), median(&mut without));
    let cost = (off - on) / off * 100.0;
    println!("  median of the {runs} same-pair ratios: cost {paired:.1}%");
    // The same cost from its parts: what the recorder adds to each call, against the CPU time
    // a Submit takes at the measured rate (both cores busy).
    let (bare, recorded) = layer_cost(200_000);
    let submits_per_s = off / set_size as f64;
    let derived = (recorded - bare) * 1e-9 * submits_per_s / cores() as f64 * 100.0;
    println!(
        "  gRPC metrics layer: {bare:.0} ns per call without the recorder, {recorded:.0} ns with it; \
         at {submits_per_s:.0} Submits/s on {} cores the recorder costs {derived:.2}% of the CPU",
        cores()
    );
    table.row(
        format!("metrics layer per call, sets of {set_size}"),
        format!("{:.0} ns", recorded - bare),
        format!("{derived:.2}% of ingest CPU at {submits_per_s:.0} Submits/s"),
    );
    println!(
        "  median with metrics {} hashes/s, without {} hashes/s: cost {cost:.1}%",
        fmt_rate(on),
        fmt_rate(off)
    );
    table.row(
        format!("ingest with metrics, sets of {set_size}, 2 conn"),
        fmt_rate(on),
        format!("without: {} hashes/s; cost {cost:.1}%", fmt_rate(off)),
    );
    Ok(())
}

/// `HUB_BENCH_SMALL_N` (a number of statements), else `default`.
fn small_n(default: usize) -> Result<usize> {
    match std::env::var("HUB_BENCH_SMALL_N") {
        Ok(n) => n
            .parse()
            .context("HUB_BENCH_SMALL_N: a number of statements"),
        Err(_) => Ok(default),
    }
}

/// What the gRPC metrics layer costs per call, in ns (median of 5 rounds of `calls` calls):
/// first without a metrics recorder, then with the Prometheus recorder the hub installs (it
/// stays installed for the rest of this process). The service behind the layer answers at
/// once with one message and an OK status in the trailers, as a Submit does.
fn layer_cost(calls: usize) -> (f64, f64) {
    use http_body::Body;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tower::{Layer, Service};

    /// A response body: one data frame, then the trailers.
    struct Answer(u8);
    impl Body for Answer {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            self.0 += 1;
            Poll::Ready(match self.0 {
                1 => Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
                    b"\0\0\0\0\0",
                )))),
                2 => {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    Some(Ok(http_body::Frame::trailers(trailers)))
                }
                _ => None,
            })
        }
    }
    let service = tower::service_fn(|_: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Answer(0)))
    });
    let mut metered = coalition_hub::server::GrpcMetricsLayer.layer(service);
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut one_call = || {
        let request = http::Request::builder()
            .uri("/coalition.v1.Hub/Submit")
            .body(())
            .expect("request");
        let mut answer = metered.call(request);
        let Poll::Ready(Ok(response)) = Pin::new(&mut answer).poll(&mut cx) else {
            unreachable!("the service answers at once")
        };
        let mut body = response.into_body();
        while let Poll::Ready(Some(_)) = Pin::new(&mut body).poll_frame(&mut cx) {}
    };
    let mut round = |calls: usize| {
        let mut rounds: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..calls {
                    one_call();
                }
                t.elapsed().as_nanos() as f64 / calls as f64
            })
            .collect();
        median(&mut rounds)
    };
    round(calls / 10);
    let bare = round(calls);
    if coalition_hub::server::ops::prometheus().is_none() {
        println!(
            "  (another metrics recorder was installed first: the second figure is not Prometheus)"
        );
    }
    round(calls / 10);
    let recorded = round(calls);
    (bare, recorded)
}

/// Submits every envelope of `pool` over `conns` connections; returns the wall time and each
/// submit's latency in ms.
async fn submit_all(
    env: &Env,
    addr: &str,
    pool: &Arc<Vec<pb::Envelope>>,
    conns: usize,
) -> Result<(Duration, Vec<f64>)> {
    let tls = env.certs.member_tls(&env.submitter)?;
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        clients.push(Client::connect(addr, &tls).await?);
    }
    // Owned copies made before the clock starts.
    let queue = Arc::new(Mutex::new(pool.as_ref().clone().into_iter()));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        let queue = queue.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow!("queue lock poisoned"))?
                    .next();
                let Some(envelope) = next else { break };
                let s = Instant::now();
                let response = client.submit(envelope).await?;
                latencies.push(ms(s.elapsed()));
                if response.already_present {
                    bail!("a fresh hub reported a statement as already present");
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.append(&mut done??);
    }
    Ok((t.elapsed(), latencies))
}

// ---------------------------------------------------------------------------------------------
// Small statements

/// Connections used for small statements.
const SMALL_CONNECTIONS: usize = 4;
/// Calls in flight per connection for small statements.
const SMALL_IN_FLIGHT: usize = 64;

/// Single-hash statements (the shape of risk signals, opinions and retractions): `n` signed
/// sets of one sha256 hash each, signed before the clock starts, submitted to a fresh hub over
/// [`SMALL_CONNECTIONS`] mutual-TLS connections with [`SMALL_IN_FLIGHT`] calls in flight on
/// each. Reports statements/s (median of [`RUNS`] fresh hubs), the hub's VmRSS before and
/// after (bytes per statement), then sets of 10,000 hashes over 4 connections in the same run
/// to show the large-set rate beside it. After each run's `Submit`s, as many `ListMembers`
/// calls the same way on the same hub: the transport's floor (hub CPU per unary call over
/// mutual TLS that does next to nothing).
async fn small_statements(env: &Env, n: usize, table: &mut Table) -> Result<()> {
    // `HUB_BENCH_SMALL_RUNS` fresh hubs per mode (default RUNS), e.g. 1 for a long memory run.
    let runs: usize = match std::env::var("HUB_BENCH_SMALL_RUNS") {
        Ok(v) => v
            .parse()
            .context("HUB_BENCH_SMALL_RUNS: a number of runs")?,
        Err(_) => RUNS,
    };
    println!(
        "== Small statements: {n} single-sha256 statements per run, {SMALL_CONNECTIONS} connections x {SMALL_IN_FLIGHT} in flight =="
    );
    let key = env.certs.signing_key(&env.submitter)?;
    let t = Instant::now();
    let pool: Vec<pb::Envelope> = {
        use rayon::prelude::*;
        (0..n)
            .into_par_iter()
            .map(|s| sign_new(&env.submitter, &key, hash_set_body(1, 2_000_000 + s)))
            .collect()
    };
    println!(
        "  signed {n} statements in {:.1} s (not timed below)",
        t.elapsed().as_secs_f64()
    );
    let pool = Arc::new(pool);
    let mut rates = Vec::new();
    let mut per_statement = Vec::new();
    let mut cpu_per = Vec::new();
    let mut floor = Vec::new();
    for run in 0..runs {
        let (_data, hub) = fresh_hub(env).await?;
        let before = hub.settle().await?;
        let cpu = hub.cpu()?;
        let took = submit_pooled(env, &hub.addr, &pool, Via::Submit).await?;
        let cpu = hub.cpu()?.saturating_sub(cpu);
        let after = hub.settle().await?;
        // The floor: as many `ListMembers` calls, the same way, on the same hub.
        let floor_cpu = hub.cpu()?;
        let floor_took = submit_pooled(env, &hub.addr, &pool, Via::ListMembers).await?;
        let floor_us = hub.cpu()?.saturating_sub(floor_cpu).as_secs_f64() * 1e6 / n as f64;
        hub.stop()?;
        let r = n as f64 / took.as_secs_f64();
        let grew = bytes_per(after.rss_kib.saturating_sub(before.rss_kib), n);
        let us = cpu.as_secs_f64() * 1e6 / n as f64;
        println!(
            "  run {run}: {} statements/s; hub CPU {us:.0} us per statement; hub VmRSS {} MiB before, {} MiB after ({grew:.0} B per statement), peak {} MiB",
            fmt_rate(r),
            before.rss_kib / 1024,
            after.rss_kib / 1024,
            after.hwm_kib / 1024,
        );
        println!(
            "  run {run}, floor: {n} ListMembers calls the same way: {} calls/s; hub CPU {floor_us:.0} us per call",
            fmt_rate(n as f64 / floor_took.as_secs_f64()),
        );
        floor.push(floor_us);
        rates.push(r);
        per_statement.push(grew);
        cpu_per.push(us);
    }
    let r = median(&mut rates);
    let grew = median(&mut per_statement);
    let us = median(&mut cpu_per);
    table.row(
        format!("single-hash statements, {SMALL_CONNECTIONS} conn x {SMALL_IN_FLIGHT} in flight"),
        format!("{} statements/s", fmt_rate(r)),
        format!(
            "{n} per run; hub CPU {us:.0} us per statement; hub VmRSS +{grew:.0} B per statement"
        ),
    );
    let floor_us = median(&mut floor);
    table.row(
        format!("floor: ListMembers, {SMALL_CONNECTIONS} conn x {SMALL_IN_FLIGHT} in flight"),
        format!("{floor_us:.0} us hub CPU per call"),
        format!("{n} calls per run, same hubs after their Submits"),
    );

    // The same statements through SubmitBatch (a hub without it answers UNIMPLEMENTED: skipped).
    let mut batch_rates = Vec::new();
    let mut batch_cpu = Vec::new();
    let (batch, batches_in_flight) = batching();
    for run in 0..runs {
        let (_data, hub) = fresh_hub(env).await?;
        let cpu = hub.cpu()?;
        let took = match submit_pooled(env, &hub.addr, &pool, Via::Batch).await {
            Ok(took) => took,
            Err(e) if e.to_string().contains("unimplemented") => {
                println!("  SubmitBatch: not served by this hub ({e}); skipped");
                break;
            }
            Err(e) => return Err(e),
        };
        let cpu = hub.cpu()?.saturating_sub(cpu);
        let after = hub.settle().await?;
        hub.stop()?;
        let r = n as f64 / took.as_secs_f64();
        let us = cpu.as_secs_f64() * 1e6 / n as f64;
        println!(
            "  run {run}, SubmitBatch of {batch}, {batches_in_flight} in flight per connection: {} statements/s; hub CPU {us:.0} us per statement; hub VmRSS {} MiB after",
            fmt_rate(r),
            after.rss_kib / 1024,
        );
        batch_rates.push(r);
        batch_cpu.push(us);
    }
    if !batch_rates.is_empty() {
        let r = median(&mut batch_rates);
        let us = median(&mut batch_cpu);
        table.row(
            format!(
                "single-hash statements, SubmitBatch of {batch}, {SMALL_CONNECTIONS} conn x {batches_in_flight} batches in flight"
            ),
            format!("{} statements/s", fmt_rate(r)),
            format!("{n} per run; hub CPU {us:.0} us per statement"),
        );
    }

    // The large-set rate in the same run, for comparison.
    const SET: usize = 10_000;
    let sets = 60;
    let pool: Vec<pb::Envelope> = (0..sets)
        .map(|s| sign_new(&env.submitter, &key, hash_set_body(SET, s)))
        .collect();
    let pool = Arc::new(pool);
    let mut set_rates = Vec::new();
    let mut set_cpu = Vec::new();
    for _ in 0..runs {
        let (_data, hub) = fresh_hub(env).await?;
        let cpu = hub.cpu()?;
        let (took, _) = submit_all(env, &hub.addr, &pool, 4).await?;
        set_cpu.push(hub.cpu()?.saturating_sub(cpu).as_secs_f64() * 1e3 / sets as f64);
        hub.stop()?;
        set_rates.push((SET * sets) as f64 / took.as_secs_f64());
    }
    let set_rate = median(&mut set_rates);
    let ms_per_set = median(&mut set_cpu);
    println!(
        "  sets of {SET}, 4 connections: median {} hashes/s (runs: {}); hub CPU {ms_per_set:.1} ms per set",
        fmt_rate(set_rate),
        set_rates
            .iter()
            .map(|r| fmt_rate(*r))
            .collect::<Vec<_>>()
            .join(", ")
    );
    table.row(
        format!("ingest, sets of {SET}, 4 conn (same run)"),
        format!("{} hashes/s", fmt_rate(set_rate)),
        format!("{sets} sets per run; hub CPU {ms_per_set:.1} ms per set"),
    );
    Ok(())
}

/// The matching corpus alone over `n` single-sha256 statements, in this process: signed,
/// parsed and staged as the hub's indexer stages them, without a store, so that the corpus's
/// share of a hub's memory can be measured at the 10M scale in minutes (VmRSS every 1M).
async fn corpus_memory(env: &Env, n: usize, table: &mut Table) -> Result<()> {
    use coalition_hub::matching::Corpus;
    use coalition_hub::store::StoredEntry;
    use rayon::prelude::*;
    const CHUNK: usize = 100_000;
    println!("== Matching corpus memory, in process: {n} single-sha256 statements ==");
    // The allocator as `coalition serve` sets it.
    coalition_hub::server::allocator::configure();
    let key = env.certs.signing_key(&env.submitter)?;
    let start = self_rss_kib()?;
    let mut corpus = Corpus::new();
    let mut peak = 0;
    let mut done = 0;
    while done < n {
        let to = (done + CHUNK).min(n);
        let parsed: Vec<ParsedEnvelope> = (done..to)
            .into_par_iter()
            .map(|s| {
                ParsedEnvelope::parse(sign_new(
                    &env.submitter,
                    &key,
                    hash_set_body(1, 5_000_000 + s),
                ))
            })
            .collect::<Result<_, _>>()?;
        for (i, p) in parsed.into_iter().enumerate() {
            let seq = (done + i) as u64;
            let statement = p.statement.ok_or_else(|| anyhow!("no body"))?;
            let entry = StoredEntry {
                seq,
                received_at_ms: 1_700_000_000_000 + seq as i64,
                statement_id: p.id.0.to_vec(),
                envelope: None,
                relay: None,
            };
            corpus.stage(&entry, &statement, p.id, recipients_of(&entry))?;
        }
        corpus.commit();
        done = to;
        // The signed and parsed chunk is freed: return it, so VmRSS is the corpus.
        coalition_hub::server::allocator::release_free_memory();
        let rss = self_rss_kib()?.saturating_sub(start);
        peak = peak.max(rss);
        if done % 1_000_000 == 0 || done == n {
            println!(
                "  {done} statements staged: VmRSS +{} MiB ({:.0} B per statement)",
                rss / 1024,
                bytes_per(rss, done)
            );
        }
    }
    let grew = self_rss_kib()?.saturating_sub(start);
    table.row(
        format!("matching corpus alone, {n} single-hash statements"),
        format!("{:.0} B per statement", bytes_per(grew, n)),
        format!(
            "VmRSS +{} MiB in process (peak seen +{} MiB)",
            grew / 1024,
            peak / 1024
        ),
    );
    drop(corpus);
    Ok(())
}

/// Where a hub's memory per small statement goes, in this process (no gRPC): `n` single-sha256
/// statements appended to a real store (128 MiB cache) in waves of 512 concurrent appends,
/// this process's VmRSS read as it grows; then the same statements staged into a matching
/// corpus. Statements are signed and verified in chunks just before they are appended, so the
/// only thing that grows is what the store (then the corpus) keeps.
async fn memory_per_statement(env: &Env, n: usize, table: &mut Table) -> Result<()> {
    use coalition_hub::matching::Corpus;
    use coalition_hub::statement::Verified;
    use rayon::prelude::*;
    const CHUNK: usize = 10_000;
    println!("== Memory per single-sha256 statement, in process: {n} statements ==");
    let key = env.certs.signing_key(&env.submitter)?;
    let verifying = key.verifying_key();
    let make = |from: usize, to: usize| -> Result<Vec<Verified>> {
        (from..to)
            .into_par_iter()
            .map(|s| {
                let envelope = sign_new(&env.submitter, &key, hash_set_body(1, 3_000_000 + s));
                Ok(ParsedEnvelope::parse(envelope)?.verify_with(&[verifying])?)
            })
            .collect()
    };
    let data = tempfile::tempdir_in(env.root.path())?;
    register(env, data.path()).await?;
    let store = Store::open(data.path(), &StoreConfig::default())?;
    let start = self_rss_kib()?;
    let mut done = 0;
    let mut report = 100_000.min(n);
    while done < n {
        let chunk = make(done, (done + CHUNK).min(n))?;
        done += chunk.len();
        let mut it = chunk.into_iter();
        loop {
            let wave: Vec<Verified> = it.by_ref().take(512).collect();
            if wave.is_empty() {
                break;
            }
            let mut tasks = tokio::task::JoinSet::new();
            for v in wave {
                let store = store.clone();
                tasks.spawn(async move { store.append(v).await });
            }
            while let Some(appended) = tasks.join_next().await {
                appended??;
            }
        }
        if done >= report || done == n {
            let rss = self_rss_kib()?;
            println!(
                "  store: {done} statements appended, VmRSS +{} MiB ({:.0} B per statement)",
                rss.saturating_sub(start) / 1024,
                bytes_per(rss.saturating_sub(start), done)
            );
            report += 100_000;
        }
    }
    let stored = self_rss_kib()?.saturating_sub(start);
    table.row(
        format!("store memory, {n} single-hash statements appended"),
        format!("{:.0} B per statement", bytes_per(stored, n)),
        format!("VmRSS +{} MiB in process, cache 128 MiB", stored / 1024),
    );
    // sled alone, for attribution: the same number of keys of each shape the store writes per
    // statement, each shape in its own fresh database (128 MiB cache), batches of 512 with a
    // flush each, as the writer commits.
    for (what, sequential, value_len) in [
        (
            "entries (sequential 9-byte keys, 350-byte values)",
            true,
            350usize,
        ),
        ("id index (random 33-byte keys, 8-byte values)", false, 8),
        (
            "Merkle nodes (sequential 10-byte keys, 32-byte values), 2 per statement",
            true,
            32,
        ),
    ] {
        let dir = tempfile::tempdir_in(env.root.path())?;
        let db = sled::Config::new()
            .path(dir.path())
            .cache_capacity(128 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let tree = db.open_tree("log")?;
        let keys = if value_len == 32 { 2 * n } else { n };
        let before = self_rss_kib()?;
        let value = vec![0x5a; value_len];
        let mut i = 0u64;
        while i < keys as u64 {
            let mut batch = sled::Batch::default();
            for _ in 0..512 {
                let key: Vec<u8> = if sequential {
                    std::iter::once(b'E').chain(i.to_be_bytes()).collect()
                } else {
                    std::iter::once(b'I')
                        .chain(Sha256::digest(i.to_be_bytes()))
                        .collect()
                };
                batch.insert(key, value.clone());
                i += 1;
            }
            tree.apply_batch(batch)?;
            db.flush()?;
        }
        let grew = self_rss_kib()?.saturating_sub(before);
        println!(
            "  sled alone, {what}: {keys} keys, VmRSS +{} MiB ({:.0} B per statement)",
            grew / 1024,
            bytes_per(grew, n)
        );
        table.row(
            format!("sled alone: {what}"),
            format!("{:.0} B per statement", bytes_per(grew, n)),
            format!("{keys} keys, VmRSS +{} MiB", grew / 1024),
        );
    }

    // The matching corpus over the same entries, as the hub's indexer builds it.
    let before = self_rss_kib()?;
    let mut corpus = Corpus::new();
    let mut from = 0u64;
    while from < store.log_size() {
        let to = (from + 1024).min(store.log_size());
        for entry in store.entries(from, to) {
            let entry = entry?;
            let id = entry.id()?;
            let parsed = ParsedEnvelope::parse(
                entry
                    .envelope
                    .clone()
                    .ok_or_else(|| anyhow!("no envelope"))?,
            )?;
            if let Some(statement) = parsed.statement {
                corpus.stage(&entry, &statement, id, recipients_of(&entry))?;
            }
        }
        corpus.commit();
        from = to;
    }
    let indexed = self_rss_kib()?.saturating_sub(before);
    println!(
        "  matching corpus over them: VmRSS +{} MiB ({:.0} B per statement)",
        indexed / 1024,
        bytes_per(indexed, n)
    );
    table.row(
        format!("matching corpus, {n} single-hash statements"),
        format!("{:.0} B per statement", bytes_per(indexed, n)),
        format!("VmRSS +{} MiB in process", indexed / 1024),
    );
    drop(corpus);
    drop(store);
    Ok(())
}

/// This process's VmRSS in KiB.
fn self_rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/self/status"))
}

/// Envelopes per SubmitBatch call in the small-statement bench (`HUB_BENCH_BATCH`, default
/// 128) and SubmitBatch calls in flight per connection (`HUB_BENCH_BATCHES_IN_FLIGHT`,
/// default 8). `HUB_BENCH_BATCH=64 HUB_BENCH_BATCHES_IN_FLIGHT=1` keeps 64 statements in
/// flight per connection, as many as the single-`Submit` mode.
fn batching() -> (usize, usize) {
    let var = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&v| v > 0)
            .unwrap_or(default)
    };
    (
        var("HUB_BENCH_BATCH", 128),
        var("HUB_BENCH_BATCHES_IN_FLIGHT", 8),
    )
}

/// How [`submit_pooled`] sends statements: one `Submit` each, or `SubmitBatch` calls of
/// [`batching`].
#[derive(Clone, Copy)]
enum Via {
    Submit,
    Batch,
    /// `ListMembers` instead of each `Submit` (the statements only count the calls): the
    /// transport's floor, a unary call over mutual TLS that does next to nothing.
    ListMembers,
}

/// Bytes per item of a VmRSS growth of `kib` KiB over `items` (0 items: per 1).
fn bytes_per(kib: u64, items: usize) -> f64 {
    kib as f64 * 1024.0 / items.max(1) as f64
}

/// A fresh founded data directory and a hub serving it (128 MiB cache); the directory lives
/// as long as the returned guard.
async fn fresh_hub(env: &Env) -> Result<(tempfile::TempDir, Hub)> {
    let data = tempfile::tempdir_in(env.root.path())?;
    register(env, data.path()).await?;
    let hub = Hub::start(
        env.certs.root(),
        data.path(),
        &env.root.path().join("hub.log"),
        128,
    )?;
    Ok((data, hub))
}

/// Where a submitter's statements come from.
#[derive(Clone)]
enum Statements {
    /// Signed before the clock started; every one is sent once.
    Pool(Arc<Vec<pb::Envelope>>),
    /// Signed as they are sent (sha256 hashes from seed `base` on), until `until` or until
    /// `limit` statements were taken.
    Flood {
        submitter: MemberId,
        key: Arc<ed25519_dalek::SigningKey>,
        base: usize,
        until: Instant,
        limit: usize,
    },
}

impl Statements {
    /// Statements `i..i + n` (fewer at the end of a pool), or `None` once there are no more.
    fn take(&self, i: usize, n: usize) -> Option<Vec<pb::Envelope>> {
        match self {
            Statements::Pool(pool) => {
                (i < pool.len()).then(|| pool[i..(i + n).min(pool.len())].to_vec())
            }
            Statements::Flood {
                submitter,
                key,
                base,
                until,
                limit,
            } => (Instant::now() < *until && i < *limit).then(|| {
                (i..(i + n).min(*limit))
                    .map(|s| sign_new(submitter, key, hash_set_body(1, base + s)))
                    .collect()
            }),
        }
    }
}

/// Submits every envelope of `pool` over [`SMALL_CONNECTIONS`] connections, `via` single
/// Submits ([`SMALL_IN_FLIGHT`] calls in flight on each connection) or SubmitBatch calls
/// ([`batching`]); returns the wall time. Every statement must be
/// acknowledged as new.
async fn submit_pooled(
    env: &Env,
    addr: &str,
    pool: &Arc<Vec<pb::Envelope>>,
    via: Via,
) -> Result<Duration> {
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    submit_statements(env, addr, Statements::Pool(pool.clone()), via, sent).await
}

/// [`submit_pooled`] for any [`Statements`]; `acknowledged` counts the statements the hub
/// acknowledged so far (for a sampler to read).
async fn submit_statements(
    env: &Env,
    addr: &str,
    statements: Statements,
    via: Via,
    acknowledged: Arc<std::sync::atomic::AtomicUsize>,
) -> Result<Duration> {
    use std::sync::atomic::Ordering::Relaxed;
    let (per_call, in_flight) = match via {
        Via::Submit | Via::ListMembers => (1, SMALL_IN_FLIGHT),
        Via::Batch => batching(),
    };
    let tls = env.certs.member_tls(&env.submitter)?;
    let mut clients = Vec::with_capacity(SMALL_CONNECTIONS);
    for _ in 0..SMALL_CONNECTIONS {
        let mut client = Client::connect(addr, &tls).await?;
        // One call first, so the connection has the hub's HTTP/2 SETTINGS (its stream limit)
        // before many streams open at once.
        client.members().await?;
        clients.push(client);
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        for _ in 0..in_flight {
            let (mut client, next, statements, acknowledged) = (
                client.clone(),
                next.clone(),
                statements.clone(),
                acknowledged.clone(),
            );
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(per_call, Relaxed);
                    let Some(part) = statements.take(i, per_call) else {
                        break;
                    };
                    let n = part.len();
                    let fresh = match via {
                        Via::Submit => !client.submit(part[0].clone()).await?.already_present,
                        Via::Batch => client.submit_batch(part).await?.iter().all(|o| {
                            o.code == 0 && o.response.as_ref().is_some_and(|r| !r.already_present)
                        }),
                        Via::ListMembers => !client.members().await?.is_empty(),
                    };
                    if !fresh {
                        bail!("a fresh hub did not log a statement as new");
                    }
                    acknowledged.fetch_add(n, Relaxed);
                }
                Ok::<_, anyhow::Error>(())
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(t.elapsed())
}

/// A flood of single-hash statements for `secs` seconds from [`SMALL_CONNECTIONS`]
/// connections with [`SMALL_IN_FLIGHT`] `Submit`s in flight each (signed as they are sent, so
/// the run is bounded by time, not by a pool held in memory), against one fresh hub; its
/// VmRSS is sampled every 30 s and printed beside the statements acknowledged, to show what
/// memory grows with (docs/ARCHITECTURE.md, "Memory model").
async fn flood(env: &Env, secs: u64, limit: usize, via: Via, table: &mut Table) -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let how = match via {
        Via::Submit => format!("{SMALL_IN_FLIGHT} Submits"),
        Via::Batch => format!("{} SubmitBatch calls", batching().1),
        Via::ListMembers => format!("{SMALL_IN_FLIGHT} ListMembers calls"),
    };
    println!(
        "== Flood: single-sha256 statements for {secs} s (at most {limit}), {SMALL_CONNECTIONS} connections x {how} in flight =="
    );
    let (data, hub) = fresh_hub(env).await?;
    let before = hub.settle().await?;
    let statements = Statements::Flood {
        submitter: env.submitter.clone(),
        key: Arc::new(env.certs.signing_key(&env.submitter)?),
        base: 10_000_000,
        until: Instant::now() + Duration::from_secs(secs),
        limit,
    };
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr = hub.addr.clone();
    let submit = submit_statements(env, &addr, statements, via, acknowledged.clone());
    tokio::pin!(submit);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    let took = loop {
        tokio::select! {
            took = &mut submit => break took?,
            _ = tick.tick() => {
                let m = hub.memory()?;
                let n = acknowledged.load(Relaxed);
                println!(
                    "  {:>4.0} s: {n} statements acknowledged; hub VmRSS {} MiB ({:.0} B per statement over the start)",
                    started.elapsed().as_secs_f64(),
                    m.rss_kib / 1024,
                    bytes_per(m.rss_kib.saturating_sub(before.rss_kib), n),
                );
            }
        }
    };
    let n = acknowledged.load(Relaxed);
    // The hub writes its matching snapshot once the log is quiet: wait (at most 10 minutes)
    // for that write, so the readings below cover it, then for the memory to settle.
    let log = env.root.path().join("hub.log");
    let written = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .map(|text| text.matches("matching snapshot written").count())
            .unwrap_or(0)
    };
    let snapshots = written(&log);
    let quiet = Instant::now();
    while written(&log) == snapshots && quiet.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "  matching snapshot {} {:.1} s after the last acknowledgement",
        if written(&log) > snapshots {
            "written"
        } else {
            "NOT written"
        },
        quiet.elapsed().as_secs_f64()
    );
    let after = hub.settle().await?;
    hub.stop()?;
    let grew = bytes_per(after.rss_kib.saturating_sub(before.rss_kib), n);
    println!(
        "  done: {n} statements in {:.0} s ({}/s); hub VmRSS {} MiB before, {} MiB settled after ({grew:.0} B per statement), peak {} MiB",
        took.as_secs_f64(),
        fmt_rate(n as f64 / took.as_secs_f64()),
        before.rss_kib / 1024,
        after.rss_kib / 1024,
        after.hwm_kib / 1024,
    );
    // The same log after a restart: what the hub holds once it has loaded it again.
    let restarted = Hub::start(
        env.certs.root(),
        data.path(),
        &env.root.path().join("hub.log"),
        128,
    )?;
    let reloaded = restarted.settle().await?;
    restarted.stop()?;
    println!(
        "  restarted on the same log: hub VmRSS {} MiB settled, peak {} MiB",
        reloaded.rss_kib / 1024,
        reloaded.hwm_kib / 1024,
    );
    table.row(
        format!("flood, {SMALL_CONNECTIONS} conn x {how}, {secs} s"),
        format!("{n} statements"),
        format!(
            "hub VmRSS {} -> {} MiB (peak {} MiB), +{grew:.0} B per statement",
            before.rss_kib / 1024,
            after.rss_kib / 1024,
            after.hwm_kib / 1024
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sync and memory

async fn sync_and_memory(env: &Env, small: usize, large: usize, table: &mut Table) -> Result<()> {
    const SET: usize = 10_000;
    println!("\n== Sync and hub memory: sets of {SET} ==");
    let data = tempfile::tempdir_in(env.root.path())?;
    register(env, data.path()).await?;
    let key = env.certs.signing_key(&env.submitter)?;
    let mut stored = 0usize;
    for target_sets in [small, large] {
        // Grow the log to `target_sets` sets, then restart the hub so its VmHWM covers only
        // start-up and sync.
        let pool: Vec<pb::Envelope> = (stored..target_sets)
            .map(|s| sign_new(&env.submitter, &key, hash_set_body(SET, 1_000_000 + s)))
            .collect();
        let hub = Hub::start(
            env.certs.root(),
            data.path(),
            &env.root.path().join("hub.log"),
            128,
        )?;
        submit_all(env, &hub.addr, &Arc::new(pool), 2).await?;
        hub.stop()?;
        stored = target_sets;
        let hashes = (stored * SET) as f64;

        for cache_mib in [128u64, 16] {
            if cache_mib != 128 && target_sets != large {
                continue;
            }
            let hub = Hub::start(
                env.certs.root(),
                data.path(),
                &env.root.path().join("hub.log"),
                cache_mib,
            )?;
            // The hub loads its matching index from the log at start-up: let that finish, note
            // the start-up peak, then reset the peak so VmHWM below covers only syncing.
            let startup = hub.settle().await?;
            hub.reset_peak()?;
            let before = hub.memory()?;
            let mut rates = Vec::new();
            let mut raw_rates = Vec::new();
            for _ in 0..RUNS {
                let (took, n) = sync_verified(env, &hub.addr).await?;
                if n as f64 != hashes {
                    bail!("synced {n} hashes, expected {hashes}");
                }
                rates.push(hashes / took.as_secs_f64());
                let mid = hub.memory()?;
                let (took, n) = sync_raw(env, &hub.addr).await?;
                if n != stored + SETUP_ENTRIES {
                    bail!(
                        "raw sync returned {n} entries, expected {}",
                        stored + SETUP_ENTRIES
                    );
                }
                raw_rates.push(hashes / took.as_secs_f64());
                let end = hub.memory()?;
                println!(
                    "    run: VmHWM {} MiB after verified sync, {} MiB after raw sync",
                    mid.hwm_kib / 1024,
                    end.hwm_kib / 1024
                );
            }
            let after = hub.memory()?;
            hub.stop()?;
            let r = median(&mut rates);
            let raw = median(&mut raw_rates);
            println!(
                "  {} hashes stored, cache {cache_mib} MiB: verified sync (Syncer) median {} hashes/s (runs: {}); raw stream (no decode/verify) {} hashes/s",
                stored * SET,
                fmt_rate(r),
                rates
                    .iter()
                    .map(|r| fmt_rate(*r))
                    .collect::<Vec<_>>()
                    .join(", "),
                fmt_rate(raw),
            );
            println!(
                "    hub memory: start-up peak {} MiB (index load); idle VmRSS {} MiB before syncing, {} MiB after; peak while syncing {} MiB (+{} MiB over idle)",
                startup.hwm_kib / 1024,
                before.rss_kib / 1024,
                after.rss_kib / 1024,
                after.hwm_kib / 1024,
                after.hwm_kib.saturating_sub(before.rss_kib) / 1024
            );
            let label = format!("{} hashes stored", stored * SET);
            if cache_mib == 128 {
                table.row(
                    format!("sync from 0 (Syncer: replica, proofs), {label}"),
                    fmt_rate(r),
                    format!("raw stream without decode/verify: {}", fmt_rate(raw)),
                );
            }
            table.row(
                format!("hub memory while syncing, {label}, cache {cache_mib} MiB"),
                format!("{} MiB peak", after.hwm_kib / 1024),
                format!(
                    "+{} MiB over idle; VmRSS {} MiB before, {} MiB after; start-up peak {} MiB",
                    after.hwm_kib.saturating_sub(before.rss_kib) / 1024,
                    before.rss_kib / 1024,
                    after.rss_kib / 1024,
                    startup.hwm_kib / 1024
                ),
            );
        }
    }

    // Client-side verification alone: the member's replica replaying entries already
    // received (decode, entitlement, signatures, Merkle frontier), no network, no proofs.
    let hub = Hub::start(
        env.certs.root(),
        data.path(),
        &env.root.path().join("hub.log"),
        128,
    )?;
    let entries = collect_entries(env, &hub.addr).await?;
    hub.stop()?;
    let hashes = |accepted: &[coalition_hub::replica::Accepted]| -> usize {
        accepted
            .iter()
            .filter_map(|a| match a.statement().map(|s| &s.body) {
                Some(Body::HashSet(set)) => Some(set.entries.len()),
                _ => None,
            })
            .sum()
    };
    for threads in [1, cores()] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let batch: Vec<Entry> = entries.iter().cloned().map(Entry::from_wire).collect();
        let t = Instant::now();
        let accepted = pool.install(|| Replica::new().append(batch, &mut SeenMap::default()))?;
        let took = t.elapsed();
        let n = hashes(&accepted);
        println!(
            "  client replica replay only (in process, {threads} thread(s)): {} hashes/s",
            rate(n as f64, took)
        );
        table.row(
            format!("baseline: client replica replay of synced entries, {threads} thread(s)"),
            rate(n as f64, took),
            "in process, no network, no proofs",
        );
    }
    Ok(())
}

/// A full-trust sync from cursor 0 through `Syncer` (the member's replica: membership from
/// the genesis, every signature, proofs of every batch, state saved after each); returns the
/// wall time and the number of hashes received.
async fn sync_verified(env: &Env, addr: &str) -> Result<(Duration, usize)> {
    let client = Client::connect(addr, &env.certs.member_tls(&env.reader)?).await?;
    let state = tempfile::tempdir_in(env.root.path())?;
    let t = Instant::now();
    let (mut syncer, _) = Syncer::open(
        client,
        SyncOptions {
            filter: FilterSpec::default(),
            follow: false,
            genesis: None,
            cursor: state.path().join("cursor"),
            ids: state.path().join("ids"),
            require_witnessed: false,
        },
    )
    .await?;
    let mut hashes = 0;
    while let Some(proven) = syncer.next().await? {
        let mut written = Vec::with_capacity(proven.entries.len());
        for entry in proven.entries {
            let row = syncer.row(entry);
            if let Some(Body::HashSet(set)) = row.as_ref().map(|r| &r.statement.body) {
                hashes += set.entries.len();
            }
            written.push(row.is_some());
        }
        syncer.commit(&written, 0)?;
    }
    Ok((t.elapsed(), hashes))
}

/// A full sync reading the raw gRPC stream only (no statement decoding, no verification);
/// returns the wall time and the number of entries.
async fn sync_raw(env: &Env, addr: &str) -> Result<(Duration, usize)> {
    let mut client = Client::connect(addr, &env.certs.member_tls(&env.reader)?).await?;
    let t = Instant::now();
    let mut stream = client
        .hub
        .sync(pb::SyncRequest::default())
        .await?
        .into_inner();
    let mut entries = 0;
    while let Some(msg) = stream.message().await? {
        if let Some(pb::sync_response::Item::Entry(_)) = msg.item {
            entries += 1;
        }
    }
    Ok((t.elapsed(), entries))
}

/// Every entry of the log, as received and not yet verified.
async fn collect_entries(env: &Env, addr: &str) -> Result<Vec<pb::SyncEntry>> {
    let mut client = Client::connect(addr, &env.certs.member_tls(&env.reader)?).await?;
    let mut stream = client
        .hub
        .sync(pb::SyncRequest::default())
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await? {
        if let Some(pb::sync_response::Item::Entry(e)) = msg.item {
            out.push(e);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The hub process

// ---------------------------------------------------------------------------------------------
// Matching

/// Stores `sets` sets of 10,000 random PDQ hashes, then times batches of 1,000 PDQ queries.
async fn match_rpc(env: &Env, sets: usize, table: &mut Table) -> Result<()> {
    use coalition_hub::matching::{PdqHash, PdqIndex};
    use rand::{Rng, SeedableRng};
    const PER_SET: usize = 10_000;
    const QUERIES: usize = 1_000;
    const BATCHES: usize = 15;
    let total = sets * PER_SET;
    println!("== Match: {QUERIES} PDQ queries per batch against {total} stored PDQ hashes ==");
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let corpus: Vec<[u8; 32]> = (0..total).map(|_| rng.r#gen()).collect();
    let data = env.root.path().join("data-match");
    register(env, &data).await?;
    let hub = Hub::start(
        env.certs.root(),
        &data,
        &env.root.path().join("hub.log"),
        128,
    )?;
    let key = env.certs.signing_key(&env.submitter)?;
    let mut client = Client::connect(&hub.addr, &env.certs.member_tls(&env.submitter)?).await?;
    for chunk in corpus.chunks(PER_SET) {
        let body = Body::HashSet(HashSet {
            expires_at_ms: None,
            description: "bench pdq".into(),
            entries: chunk
                .iter()
                .map(|h| HashEntry {
                    hash_type: HashType::Pdq,
                    value: h.to_vec(),
                    quality: Some(90),
                    labels: vec![Label::Category(Category::A1)],
                })
                .collect(),
        });
        client.submit(sign_new(&env.submitter, &key, body)).await?;
    }
    // Half planted near-duplicates (0-31 bits from a stored hash), half random.
    let queries: Vec<[u8; 32]> = (0..QUERIES)
        .map(|i| {
            if i % 2 == 0 {
                let mut q = corpus[rng.gen_range(0..total)];
                for _ in 0..(i / 2) % 32 {
                    let bit = rng.gen_range(0..256);
                    q[bit / 8] ^= 1 << (bit % 8);
                }
                q
            } else {
                rng.r#gen()
            }
        })
        .collect();
    let request = pb::MatchRequest {
        queries: queries
            .iter()
            .map(|q| pb::MatchQuery {
                r#type: pb::HashType::Pdq as i32,
                value: q.to_vec(),
                quality: None,
            })
            .collect(),
        pdq_threshold: Some(31),
        min_quality: None,
        states: Vec::new(),
        ..Default::default()
    };
    // Index grown live, one submitted set at a time.
    let (live_ms, live_worst, first) = time_matches(env, &hub, &request, BATCHES).await?;
    let live_memory = hub.settle().await?;
    hub.stop()?;
    // Index bulk-built from the log at start-up.
    let started = Instant::now();
    let hub = Hub::start(
        env.certs.root(),
        &data,
        &env.root.path().join("hub.log"),
        128,
    )?;
    let (restart_ms, restart_worst, _) = time_matches(env, &hub, &request, BATCHES).await?;
    let load = started.elapsed();
    // Recall against a brute-force scan of the same corpus.
    let index = PdqIndex::build_with_params(
        corpus
            .iter()
            .enumerate()
            .map(|(i, h)| (PdqHash(*h), i as u32)),
        None,
    );
    let (mut want, mut got) = (0usize, 0usize);
    for (q, result) in queries.iter().zip(&first.results) {
        let truth = index.search(&PdqHash(*q), 31);
        want += truth.len();
        let found: Vec<u32> = result.matches.iter().map(|m| m.distance).collect();
        let expected: Vec<u32> = truth.iter().map(|m| m.distance).collect();
        if found == expected {
            got += truth.len();
        }
    }
    let memory = hub.settle().await?;
    hub.stop()?;
    println!(
        "  index grown live: batch of {QUERIES} median {live_ms:.1} ms, slowest {live_worst:.1} ms; hub RSS {} MiB",
        live_memory.rss_kib / 1024
    );
    println!(
        "  after restart (bulk build; start + load + first answer {:.1} s): median {restart_ms:.1} ms, slowest {restart_worst:.1} ms; hub RSS {} MiB; recall {got}/{want}",
        load.as_secs_f64(),
        memory.rss_kib / 1024
    );
    table.row(
        format!("Match over gRPC, {QUERIES} PDQ queries vs {total} PDQ hashes, index grown live"),
        format!("{live_ms:.1} ms (slowest {live_worst:.1} ms)"),
        format!(
            "recall {got}/{want}; hub RSS {} MiB",
            live_memory.rss_kib / 1024
        ),
    );
    table.row(
        "Match over gRPC, same, index built at start-up",
        format!("{restart_ms:.1} ms (slowest {restart_worst:.1} ms)"),
        format!(
            "hub RSS {} MiB; restart to first answer {:.1} s",
            memory.rss_kib / 1024,
            load.as_secs_f64()
        ),
    );
    Ok(())
}

/// Times `batches` Match calls after a first, untimed one (which waits for the index to cover
/// the log); returns the median and slowest in ms and the first answer.
async fn time_matches(
    env: &Env,
    hub: &Hub,
    request: &pb::MatchRequest,
    batches: usize,
) -> Result<(f64, f64, pb::MatchResponse)> {
    let mut reader = Client::connect(&hub.addr, &env.certs.member_tls(&env.reader)?).await?;
    let first = reader.hub.r#match(request.clone()).await?.into_inner();
    let mut times = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t = Instant::now();
        let answer = reader.hub.r#match(request.clone()).await?.into_inner();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if answer.results.len() != request.queries.len() {
            bail!(
                "{} results for {} queries",
                answer.results.len(),
                request.queries.len()
            );
        }
    }
    times.sort_by(f64::total_cmp);
    let worst = times.last().copied().unwrap_or(0.0);
    Ok((median(&mut times), worst, first))
}

/// Log entries `register` writes: the genesis and two admissions.
const SETUP_ENTRIES: usize = 3;

/// Founds the bench hub (genesis by the admin, as `coalition init`) and admits the bench
/// members with signed membership statements, offline.
async fn register(env: &Env, data: &Path) -> Result<()> {
    let members = [&env.submitter, &env.reader];
    founding::found(
        data,
        &env.certs,
        "bench.coalition.local",
        &env.admin,
        &members,
    )
    .await?;
    if std::env::var_os("HUB_BENCH_EARLIER_LAYOUT").is_some() {
        // For a hub built before the id runs (`HUB_BENCH_HUB_BINARY`).
        founding::earlier_layout(data)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A hash set of `n` distinct sha256 values (derived from `seed`), each labelled A1.
fn hash_set_body(n: usize, seed: usize) -> Body {
    let entries = (0..n)
        .map(|i| HashEntry {
            hash_type: HashType::Sha256,
            value: Sha256::digest(format!("{seed}/{i}")).to_vec(),
            quality: None,
            labels: vec![Label::Category(Category::A1)],
        })
        .collect();
    Body::HashSet(HashSet {
        expires_at_ms: None,
        description: format!("bench set {seed}"),
        entries,
    })
}

#[derive(Default)]
struct Table {
    rows: Vec<(String, String, String)>,
}

impl Table {
    fn row(&mut self, what: impl Into<String>, value: impl Into<String>, note: impl Into<String>) {
        self.rows.push((what.into(), value.into(), note.into()));
    }

    fn print(&self) {
        let w0 = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let w1 = self.rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        for (what, value, note) in &self.rows {
            println!("| {what:<w0$} | {value:>w1$} | {note} |");
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate(items: f64, d: Duration) -> String {
    fmt_rate(items / d.as_secs_f64())
}

fn fmt_rate(r: f64) -> String {
    let r = r.round() as u64;
    let s = r.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The recipients a stored entry's header names (the corpus matches a restricted statement
/// for them only).
fn recipients_of(
    entry: &coalition_hub::store::StoredEntry,
) -> coalition_hub::statement::Recipients {
    entry.header().map(|h| h.recipients).unwrap_or_default()
}
