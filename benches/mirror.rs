//! A read-only mirror (issue 13, item 3): a `coalition serve` primary is loaded with PDQ sets
//! of 10,000 over gRPC + mutual TLS, then a second `coalition serve --mirror-of` process copies
//! the whole log (its first copy, before it listens: timed, in hashes/s), and the same batch of
//! 1,000 PDQ queries is timed against the primary and the mirror, alternately, in rounds: the
//! mirror's extra latency is the ratio of their medians in the same run. Finally sets are
//! submitted to the primary one at a time and the time until the mirror serves a checkpoint
//! covering each is measured (the mirror asks every 250 ms when caught up; the primary
//! publishes a checkpoint 1 s after growth by default).
//!
//! Run (release build): `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench mirror`.
//! `MIRROR_HASHES` (default 1,000,000) sets the corpus size, `MIRROR_ROUNDS` (default 5) the
//! alternating rounds of [`pdq_queries::BATCHES`] batches each.

#[path = "support/founding.rs"]
mod founding;
#[path = "support/hub_process.rs"]
mod hub_process;
#[path = "support/pdq_queries.rs"]
mod pdq_queries;

use anyhow::{Context, Result};
use coalition_hub::client::{Client, sign_new};
use coalition_hub::governance;
use coalition_hub::membership::{Action, MemberId, Role};
use coalition_hub::pb;
use coalition_hub::pki::CertDir;
use coalition_hub::statement::Body;
use hub_process::Hub;
use pdq_queries::{env_usize, pdq_of, pdq_set, planted_queries, request, time_batches};
use rand::Rng;
use std::time::{Duration, Instant};

const SET: usize = 10_000;
const QUERIES: usize = 1_000;
/// Sets submitted one at a time for the propagation figure.
const PROPAGATION_SETS: usize = 20;

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn set_body(set: usize) -> Body {
    pdq_set(set, SET, format!("mirror bench set {set}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run() -> Result<()> {
    let total = env_usize("MIRROR_HASHES", 1_000_000)?;
    let rounds = env_usize("MIRROR_ROUNDS", 5)?.max(1);
    let sets = total.div_ceil(SET);
    let root = tempfile::tempdir()?;
    let certs = CertDir::new(root.path().join("certs"));
    let [admin, submitter, mirror_id] =
        ["admin", "bench-submitter", "bench-mirror"].map(|m| MemberId::parse(m).expect("id"));
    certs.init(&[admin.clone(), submitter.clone(), mirror_id.clone()])?;
    let data = root.path().join("primary");
    let (store, admin_key) = founding::found(
        &data,
        &certs,
        "bench.coalition.local",
        &admin,
        &[&submitter],
    )
    .await?;
    // The mirror's identity: an auditor (reads every body, writes nothing).
    let admit = governance::admission(&mirror_id, "bench mirror", &[Role::Auditor], &[]);
    governance::append_offline(
        &store,
        governance::change(&admin, &admin_key, Action::Admit(admit), "bench"),
    )
    .await?;
    let genesis = store
        .registry()
        .coalition()
        .map(|c| c.genesis_id.to_string())
        .context("founded")?;
    drop(store);
    let primary = Hub::start(certs.root(), &data, &root.path().join("primary.log"), 128)?;
    let (mut client, size, loaded) =
        hub_process::load(&primary, &certs, &submitter, (0..sets).map(set_body)).await?;
    let tls = certs.member_tls(&submitter)?;
    let key = certs.signing_key(&submitter)?;
    println!(
        "== Mirror: {sets} sets of {SET} PDQ hashes ({} hashes) loaded into the primary in {loaded:.1} s; log of {size} entries ==",
        sets * SET
    );
    primary.settle().await?;

    let mirror_data = root.path().join("mirror");
    let copy = Instant::now();
    let mirror = Hub::start_with(
        certs.root(),
        &mirror_data,
        &root.path().join("mirror.log"),
        128,
        &[
            "--ops-listen",
            "off",
            "--mirror-of",
            &primary.addr,
            "--upstream-as",
            "bench-mirror",
            "--genesis",
            &genesis,
        ],
    )?;
    let copied = copy.elapsed().as_secs_f64();
    println!(
        "first copy (verified, proven, written; before the mirror listens): {copied:.2} s = {:.0} hashes/s",
        (sets * SET) as f64 / copied
    );

    // The same queries (half planted near a stored hash at 0-31 bits, half random) on both.
    let queries = planted_queries(QUERIES, |rng, _| {
        pdq_of(rng.gen_range(0..sets), rng.gen_range(0..SET))
    });
    let batch = request(&queries);
    let mut on_primary = Client::connect(&primary.addr, &tls).await?;
    let mut on_mirror = Client::connect(&mirror.addr, &tls).await?;
    // Both indexes settled, and the answers the same.
    mirror.settle().await?;
    let a = on_primary.hub.r#match(batch.clone()).await?.into_inner();
    let b = on_mirror.hub.r#match(batch.clone()).await?.into_inner();
    anyhow::ensure!(a.results == b.results, "the mirror answers differently");
    let (mut p, mut m) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        p.push(time_batches(&mut on_primary, &batch).await?.0);
        m.push(time_batches(&mut on_mirror, &batch).await?.0);
    }
    let (p, m) = (median(p), median(m));
    println!(
        "{QUERIES} PDQ queries vs {} hashes, median of {rounds} alternating rounds: primary {p:.1} ms, mirror {m:.1} ms, mirror/primary {:.3}",
        sets * SET,
        m / p
    );

    // Propagation: a set acknowledged by the primary until the mirror serves a checkpoint
    // covering it.
    let mut waits = Vec::new();
    for set in sets..sets + PROPAGATION_SETS {
        let receipt = client
            .submit(sign_new(&submitter, &key, set_body(set)))
            .await?
            .receipt
            .context("receipt")?;
        let acked = Instant::now();
        loop {
            let cp = on_mirror
                .audit
                .get_checkpoint(pb::GetCheckpointRequest::default())
                .await?
                .into_inner();
            if cp.tree_size > receipt.seq {
                break;
            }
            anyhow::ensure!(acked.elapsed() < Duration::from_secs(60), "no propagation");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        waits.push(acked.elapsed().as_secs_f64() * 1e3);
    }
    let worst = waits.iter().copied().fold(0.0, f64::max);
    println!(
        "acknowledged by the primary -> in a checkpoint the mirror serves: median {:.0} ms, slowest {worst:.0} ms ({PROPAGATION_SETS} sets, default checkpoint policy)",
        median(waits)
    );
    mirror.stop()?;
    primary.stop()?;
    Ok(())
}
