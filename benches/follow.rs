//! Matching follows the log: PDQ sets of 10,000 are submitted at full speed over gRPC + mutual
//! TLS to a separate `coalition serve` process while, for every acknowledged set, a probe asks
//! `Match` for one of its hashes (retrying until found), so each set's time from acknowledgement to being found is measured
//! (and every UNAVAILABLE answer counted). Then: a batch of 1,000 PDQ queries against the whole
//! corpus, and the time from process start to the first `Match` that finds a stored hash after
//! a clean stop (SIGTERM) and after SIGKILL.
//!
//! Run (release build): `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench follow`
//! `FOLLOW_HASHES` (default 2,000,000) sets the corpus size, `FOLLOW_CONNECTIONS` (default 2)
//! the submitting connections. The hub inherits the environment.

#[path = "support/founding.rs"]
mod founding;
#[path = "support/hub_process.rs"]
mod hub_process;
#[path = "support/pdq_queries.rs"]
mod pdq_queries;

use anyhow::{Context, Result, bail};
use coalition_hub::client::{Client, sign_new};

use coalition_hub::membership::MemberId;
use coalition_hub::pki::CertDir;
use coalition_hub::statement::Body;
use hub_process::Hub;
use pdq_queries::{BATCHES, env_usize, pdq_of, pdq_set, planted_queries, request, time_batches};
use rand::Rng;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SET: usize = 10_000;
/// Most probes in flight at once.
const PROBERS_MAX: usize = 256;
/// A probe gives up after this long (the set is then reported as never found).
const PROBE_LIMIT: Duration = Duration::from_secs(120);
const QUERIES: usize = 1_000;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(run())
}

fn set_body(set: usize) -> Body {
    pdq_set(set, SET, format!("follow bench set {set}"))
}

struct Env {
    root: tempfile::TempDir,
    certs: CertDir,
    admin: MemberId,
    submitter: MemberId,
    reader: MemberId,
}

async fn run() -> Result<()> {
    let total = env_usize("FOLLOW_HASHES", 2_000_000)?;
    let conns = env_usize("FOLLOW_CONNECTIONS", 2)?.max(1);
    let sets = total.div_ceil(SET);
    let root = tempfile::tempdir()?;
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
    let data = env.root.path().join("data");
    let log = env.root.path().join("hub.log");
    let members = [&env.submitter, &env.reader];
    founding::found(
        &data,
        &env.certs,
        "bench.coalition.local",
        &env.admin,
        &members,
    )
    .await?;
    println!(
        "== Matching follows the log: {sets} sets of {SET} PDQ hashes, {conns} submitting connections, one probe per acknowledged set =="
    );
    let hub = Hub::start(env.certs.root(), &data, &log, 128)?;
    let key = env.certs.signing_key(&env.submitter)?;
    let tls = env.certs.member_tls(&env.submitter)?;
    let reader = Client::connect(&hub.addr, &env.certs.member_tls(&env.reader)?).await?;

    // Acknowledged sets go to the probers: (set, acknowledged at).
    let (acks_tx, acks_rx) = async_channel(sets);
    let next_set = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut submitters = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let mut client = Client::connect(&hub.addr, &tls).await?;
        let (next_set, key, id, acks) = (
            next_set.clone(),
            key.clone(),
            env.submitter.clone(),
            acks_tx.clone(),
        );
        submitters.spawn(async move {
            loop {
                let set = next_set.fetch_add(1, Ordering::Relaxed);
                if set >= sets {
                    return Ok::<_, anyhow::Error>(());
                }
                let envelope = sign_new(&id, &key, set_body(set));
                client.submit(envelope).await?;
                acks.send((set, Instant::now())).await?;
            }
        });
    }
    drop(acks_tx);
    // One probe task per acknowledged set (at most PROBERS_MAX at once), so probes never
    // queue behind each other and the figure is the hub's, not the prober's.
    let probing = Arc::new(tokio::sync::Semaphore::new(PROBERS_MAX));
    let dispatcher = {
        let (reader, acks, unavailable, retries) = (
            reader.clone(),
            acks_rx.clone(),
            unavailable.clone(),
            retries.clone(),
        );
        tokio::spawn(async move {
            let mut probers = tokio::task::JoinSet::new();
            while let Ok((set, acked)) = acks.recv().await {
                let permit = probing.clone().acquire_owned().await?;
                let (mut reader, unavailable, retries) =
                    (reader.clone(), unavailable.clone(), retries.clone());
                probers.spawn(async move {
                    let _permit = permit;
                    let probe = pdq_of(set, set % SET);
                    loop {
                        if acked.elapsed() > PROBE_LIMIT {
                            bail!("set {set} not found {PROBE_LIMIT:?} after its acknowledgement");
                        }
                        match reader.hub.r#match(request(&[probe])).await {
                            Ok(answer) => {
                                let found = answer.into_inner().results.first().is_some_and(|r| {
                                    r.matches
                                        .iter()
                                        .any(|m| m.value == probe && m.distance == 0)
                                });
                                if found {
                                    return Ok(acked.elapsed().as_secs_f64() * 1e3);
                                }
                                retries.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(s) if s.code() == tonic::Code::Unavailable => {
                                unavailable.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(s) => bail!("Match failed: {s}"),
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                });
            }
            let mut latencies = Vec::new();
            while let Some(done) = probers.join_next().await {
                latencies.push(done??);
            }
            Ok::<_, anyhow::Error>(latencies)
        })
    };
    while let Some(done) = submitters.join_next().await {
        done??;
    }
    let ingest = started.elapsed();
    let mut latencies = dispatcher.await??;
    let last_found = started.elapsed();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let peak = hub.memory()?;
    println!(
        "ingest: {total} hashes in {:.1} s ({:.0} hashes/s); last set found {:.1} s after the start",
        ingest.as_secs_f64(),
        total as f64 / ingest.as_secs_f64(),
        last_found.as_secs_f64()
    );
    println!(
        "searchable after acknowledgement: median {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} sets; UNAVAILABLE answers: {}; probes that had to retry: {}",
        pick(0.5),
        pick(0.99),
        pick(1.0),
        latencies.len(),
        unavailable.load(Ordering::Relaxed),
        retries.load(Ordering::Relaxed)
    );
    println!("hub memory during ingest: peak {} MiB", peak.hwm_kib / 1024);

    // 1,000 PDQ queries (half planted near a stored hash at 0-31 bits, half random).
    let queries = planted_queries(QUERIES, |rng, _| {
        pdq_of(rng.gen_range(0..sets), rng.gen_range(0..SET))
    });
    let batch = request(&queries);
    let mut reader = reader;
    let (live_median, live_worst) = time_batches(&mut reader, &batch).await?;
    let settled = hub.settle().await?;
    let (settled_median, settled_worst) = time_batches(&mut reader, &batch).await?;
    println!(
        "{QUERIES} PDQ queries vs {total}: right after ingest median {live_median:.1} ms (slowest {live_worst:.1}); settled median {settled_median:.1} ms (slowest {settled_worst:.1}); hub RSS settled {} MiB, peak since the start (idle merges included) {} MiB",
        settled.rss_kib / 1024,
        settled.hwm_kib / 1024
    );

    // Start-up: clean stop, then SIGKILL.
    let known = pdq_of(sets - 1, 7);
    let pid = hub.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    hub.wait()?;
    let (after_clean, hub) = first_match(&env, &data, &log, known, &[]).await?;
    hub.stop()?;
    let (after_kill, hub) = first_match(&env, &data, &log, known, &[]).await?;
    let memory = hub.settle().await?;
    let mut reader = Client::connect(&hub.addr, &env.certs.member_tls(&env.reader)?).await?;
    let (loaded_median, _) = time_batches(&mut reader, &batch).await?;
    hub.stop()?;
    println!(
        "start-up to first Match finding a stored hash: after a clean stop {:.2} s, after SIGKILL {:.2} s; hub RSS after restart {} MiB; {QUERIES} queries median {loaded_median:.1} ms",
        after_clean.as_secs_f64(),
        after_kill.as_secs_f64(),
        memory.rss_kib / 1024
    );
    // The same corpus bulk-built from the log (no snapshot): one segment, the reference for
    // the segmented index's query cost.
    let (rebuilt, hub) =
        first_match(&env, &data, &log, known, &["--match-snapshot", "off"]).await?;
    let mut reader = Client::connect(&hub.addr, &env.certs.member_tls(&env.reader)?).await?;
    let (bulk_median, _) = time_batches(&mut reader, &batch).await?;
    let memory = hub.settle().await?;
    hub.stop()?;
    println!(
        "without the snapshot (whole log indexed at start): first Match after {:.2} s; {QUERIES} queries median {bulk_median:.1} ms; hub RSS {} MiB",
        rebuilt.as_secs_f64(),
        memory.rss_kib / 1024
    );
    // The index alone, in this process: the same hashes bulk-built into one `PdqIndex` (the
    // shape the hub just answered from) and the same queries split over the cores as `Match`
    // splits them, so the RPC path's share is the ratio of the two.
    let index_median = index_alone(sets, &queries);
    println!(
        "index alone (one bulk-built PdqIndex in process, queries split over {} threads): {QUERIES} queries median {index_median:.1} ms; the bulk-built hub's Match took {:.2}x that",
        cores(),
        bulk_median / index_median
    );
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Median time of [`BATCHES`] runs of `queries` (threshold 31) against one `PdqIndex` built
/// from the `sets` sets' hashes, each run split over the cores in equal parts.
fn index_alone(sets: usize, queries: &[[u8; 32]]) -> f64 {
    use coalition_hub::matching::{PdqHash, PdqIndex};
    use rayon::prelude::*;
    let items: Vec<(PdqHash, u32)> = (0..sets * SET)
        .into_par_iter()
        .map(|i| (PdqHash(pdq_of(i / SET, i % SET)), i as u32))
        .collect();
    let index = PdqIndex::build(items);
    let queries: Vec<PdqHash> = queries.iter().map(|q| PdqHash(*q)).collect();
    let per_thread = queries.len().div_ceil(cores());
    let mut times = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t = Instant::now();
        let found: usize = std::thread::scope(|scope| {
            let parts: Vec<_> = queries
                .chunks(per_thread)
                .map(|chunk| {
                    let index = &index;
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|q| index.search(q, 31).len())
                            .sum::<usize>()
                    })
                })
                .collect();
            parts.into_iter().map(|p| p.join().unwrap_or(0)).sum()
        });
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(found);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Starts a hub on `data` and asks Match for `known` until it is found; the time is from just
/// before the process is spawned.
async fn first_match(
    env: &Env,
    data: &Path,
    log: &Path,
    known: [u8; 32],
    extra: &[&str],
) -> Result<(Duration, Hub)> {
    let t = Instant::now();
    let args: Vec<&str> = ["--ops-listen", "127.0.0.1:0"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let hub = Hub::start_with(env.certs.root(), data, log, 128, &args)?;
    let mut reader = Client::connect(&hub.addr, &env.certs.member_tls(&env.reader)?).await?;
    loop {
        if t.elapsed() > PROBE_LIMIT {
            bail!("no Match answer {PROBE_LIMIT:?} after start");
        }
        match reader.hub.r#match(request(&[known])).await {
            Ok(answer) => {
                let found = answer
                    .into_inner()
                    .results
                    .first()
                    .is_some_and(|r| r.matches.iter().any(|m| m.value == known));
                if !found {
                    bail!("a restarted hub answered without a stored hash");
                }
                return Ok((t.elapsed(), hub));
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => bail!("Match failed: {s}"),
        }
    }
}

/// A bounded multi-consumer queue of acknowledgements.
fn async_channel(capacity: usize) -> (tokio::sync::mpsc::Sender<(usize, Instant)>, SharedReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    (tx, SharedReceiver(Arc::new(tokio::sync::Mutex::new(rx))))
}

#[derive(Clone)]
struct SharedReceiver(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(usize, Instant)>>>);

impl SharedReceiver {
    async fn recv(&self) -> Result<(usize, Instant), ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}
