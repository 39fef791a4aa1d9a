//! Peering (issue 13, item 1): hub X, a `coalition serve` process, is loaded with sets of
//! 10,000 SHA-256 hashes over gRPC + mutual TLS; then hub A, a second process with
//! `--peer X`, relays X's whole log (every statement verified against X's membership, every
//! batch proven by X's signed checkpoint, each written as one group): timed from A's start
//! until A's `GetFederationStatus` reports every entry of X rebuilt, in hashes/s. Finally sets
//! are submitted to X one at a time and the time until A serves a checkpoint covering each
//! relayed set is measured (A polls X every 250 ms when caught up; X publishes a checkpoint
//! 1 s after growth by default). Then hub C, pulling only from A, relays X's statements onward
//! from A (a chain X → A → C): the time from X's acknowledgement until C serves a checkpoint
//! covering the set is measured the same way. Each hub has a witness (`coalition witness
//! run`), named alone in its coalition's witness policy: each propagation figure is given
//! twice, until the covering checkpoint is served and until it carries the witness's
//! cosignature.
//!
//! Run (release build): `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench peering`.
//! `PEERING_HASHES` (default 1,000,000) sets the corpus size.

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
use coalition_hub::settings::{Federation, Section, TrustedOrigin};
use coalition_hub::statement::{Body, StatementId};
use hub_process::{Hub, Witness};
use pdq_queries::env_usize;
use std::time::{Duration, Instant};

const SET: usize = 10_000;
/// Sets submitted one at a time for the propagation figure.
const PROPAGATION_SETS: usize = 20;

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn set_body(set: usize) -> Body {
    founding::sha256_set(set, SET, format!("peering bench set {set}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A hub's view of origin `genesis`: entries rebuilt.
async fn rebuilt(client: &mut Client, genesis: StatementId) -> Result<u64> {
    let status = client
        .admin
        .get_federation_status(pb::GetFederationStatusRequest {})
        .await?
        .into_inner();
    if let Some(p) = status.peers.iter().find(|p| !p.refused.is_empty()) {
        anyhow::bail!("a peer was refused: {}", p.refused);
    }
    Ok(status
        .origins
        .iter()
        .find(|o| o.genesis_id == genesis.0.to_vec())
        .map_or(0, |o| o.entries))
}

/// Submits `sets` to X one at a time; each is timed from X's acknowledgement until `on`
/// serves a checkpoint covering its relay (its last entry relays X's entry of the set, or a
/// later one), and until that checkpoint (or a later one) carries its witness's cosignature:
/// the two lists of milliseconds.
async fn propagation(
    x: &mut Client,
    submit: impl Fn(usize) -> pb::Envelope,
    sets: std::ops::Range<usize>,
    on: &mut Client,
    x_genesis: StatementId,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut waits, mut witnessed) = (Vec::new(), Vec::new());
    for set in sets {
        let receipt = x.submit(submit(set)).await?.receipt.context("receipt")?;
        let acked = Instant::now();
        let mut visible = None;
        loop {
            if rebuilt(on, x_genesis).await? > receipt.seq {
                let checkpoint = on
                    .audit
                    .get_checkpoint(pb::GetCheckpointRequest {
                        tree_size: None,
                        refresh: false,
                    })
                    .await?
                    .into_inner();
                let size = checkpoint.tree_size;
                let covered = on
                    .audit
                    .get_entries(pb::GetEntriesRequest {
                        start: size.saturating_sub(1),
                        end: size,
                    })
                    .await?
                    .into_inner()
                    .message()
                    .await?
                    .is_some_and(|e| e.relay.is_some_and(|r| r.origin_seq >= receipt.seq));
                if covered {
                    let ms = acked.elapsed().as_secs_f64() * 1e3;
                    visible.get_or_insert(ms);
                    if !checkpoint.cosignatures.is_empty() {
                        witnessed.push(ms);
                        break;
                    }
                }
            }
            anyhow::ensure!(acked.elapsed() < Duration::from_secs(60), "no propagation");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        waits.extend(visible);
    }
    Ok((waits, witnessed))
}

/// Starts a witness for the hub founded in `store` (`coalition witness run`, its state in
/// `data`) and has the hub's admin set the coalition's witness policy to it alone.
async fn witnessed(
    store: &coalition_hub::store::Store,
    data: &std::path::Path,
    admin: &MemberId,
    admin_key: &ed25519_dalek::SigningKey,
) -> Result<Witness> {
    let coalition = store.registry().coalition().context("founded")?.clone();
    let log_key =
        coalition_hub::log::VerifierKey::new(&coalition.hub_name, coalition.hub_key)?.to_string();
    let name = format!("bench.witness/{}", coalition.hub_name);
    let witness = Witness::start(data, &name, &log_key)?;
    let policy = witness.sole_policy()?;
    governance::append_offline(
        store,
        governance::settings(admin, admin_key, Section::Witnesses(Some(policy)), "bench"),
    )
    .await?;
    Ok(witness)
}

async fn run() -> Result<()> {
    let total = env_usize("PEERING_HASHES", 1_000_000)?;
    let sets = total.div_ceil(SET);
    let root = tempfile::tempdir()?;
    let certs = CertDir::new(root.path().join("certs"));
    let [admin, submitter, peer] =
        ["admin", "bench-submitter", "hub-a"].map(|m| MemberId::parse(m).expect("id"));
    certs.init(&[admin.clone(), submitter.clone(), peer.clone()])?;
    // X, with A's identity admitted as its peer.
    let x_data = root.path().join("x");
    let (store, admin_key) =
        founding::found(&x_data, &certs, "x.bench", &admin, &[&submitter]).await?;
    let peer_key = certs.signing_key(&peer)?;
    let admit = governance::admission(&peer, "hub A", &[Role::Peer], &[peer_key.verifying_key()]);
    governance::append_offline(
        &store,
        governance::change(&admin, &admin_key, Action::Admit(admit), "bench"),
    )
    .await?;
    let x_genesis = store.registry().coalition().context("founded")?.genesis_id;
    let _x_witness = witnessed(&store, &root.path().join("x-witness"), &admin, &admin_key).await?;
    drop(store);
    // A, trusting X.
    let a_data = root.path().join("a");
    let (store, admin_key) = founding::found(&a_data, &certs, "a.bench", &admin, &[]).await?;
    let a_genesis = store.registry().coalition().context("founded")?.genesis_id;
    let trusted = TrustedOrigin {
        hub_name: "x.bench".into(),
        relayed_by: Default::default(),
        peer: None,
    };
    let federation = Federation {
        origins: [(x_genesis, trusted)].into_iter().collect(),
    };
    governance::append_offline(
        &store,
        governance::settings(&admin, &admin_key, Section::Federation(federation), "bench"),
    )
    .await?;
    let _a_witness = witnessed(&store, &root.path().join("a-witness"), &admin, &admin_key).await?;
    drop(store);

    let x = Hub::start(certs.root(), &x_data, &root.path().join("x.log"), 128)?;
    let (mut client, x_size, loaded) =
        hub_process::load(&x, &certs, &submitter, (0..sets).map(set_body)).await?;
    let key = certs.signing_key(&submitter)?;
    println!(
        "== Peering: {sets} sets of {SET} SHA-256 hashes ({} hashes) loaded into X in {loaded:.1} s; X's log of {x_size} entries ==",
        sets * SET
    );
    x.settle().await?;

    let peer_flag = format!("{},{x_genesis},{},{peer}", x.addr, certs.root().display());
    let start = Instant::now();
    let a = Hub::start_with(
        certs.root(),
        &a_data,
        &root.path().join("a.log"),
        128,
        &["--ops-listen", "off", "--peer", &peer_flag],
    )?;
    let admin_tls = certs.member_tls(&admin)?;
    let mut on_a = Client::connect(&a.addr, &admin_tls).await?;
    while rebuilt(&mut on_a, x_genesis).await? < x_size {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "A never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "A relayed X's whole log (verified against X's membership, proven by X's checkpoints, written), from A's start: {took:.2} s = {:.0} hashes/s",
        (sets * SET) as f64 / took
    );

    // Propagation: a set acknowledged by X until A serves a checkpoint covering its relay.
    let sign = |set: usize| sign_new(&submitter, &key, set_body(set));
    let (waits, cosigned) = propagation(
        &mut client,
        sign,
        sets..sets + PROPAGATION_SETS,
        &mut on_a,
        x_genesis,
    )
    .await?;
    let worst = waits.iter().copied().fold(0.0, f64::max);
    let worst_cosigned = cosigned.iter().copied().fold(0.0, f64::max);
    println!(
        "acknowledged by X -> relayed into a checkpoint A serves: median {:.0} ms, slowest {worst:.0} ms; cosigned by A's witness: median {:.0} ms, slowest {worst_cosigned:.0} ms ({PROPAGATION_SETS} sets, default checkpoint policy, one witness per hub)",
        median(waits),
        median(cosigned)
    );

    // A chain: C pulls only from A, and relays onward what A relayed from X.
    let c_peer = MemberId::parse("hub-c").expect("id");
    certs.init(std::slice::from_ref(&c_peer))?;
    let c_key = certs.signing_key(&c_peer)?;
    let admit = governance::admission(&c_peer, "hub C", &[Role::Peer], &[c_key.verifying_key()]);
    on_a.submit(governance::change(
        &admin,
        &certs.signing_key(&admin)?,
        Action::Admit(admit),
        "bench",
    ))
    .await?;
    let c_data = root.path().join("c");
    let (store, c_admin_key) = founding::found(&c_data, &certs, "c.bench", &admin, &[]).await?;
    let origin = |name: &str, relayed_by: Vec<StatementId>| TrustedOrigin {
        hub_name: name.into(),
        relayed_by: relayed_by.into_iter().collect(),
        peer: None,
    };
    let federation = Federation {
        origins: [
            (a_genesis, origin("a.bench", vec![])),
            (x_genesis, origin("x.bench", vec![a_genesis])),
        ]
        .into_iter()
        .collect(),
    };
    governance::append_offline(
        &store,
        governance::settings(
            &admin,
            &c_admin_key,
            Section::Federation(federation),
            "bench",
        ),
    )
    .await?;
    let _c_witness =
        witnessed(&store, &root.path().join("c-witness"), &admin, &c_admin_key).await?;
    drop(store);
    let c_flag = format!("{},{a_genesis},{},{c_peer}", a.addr, certs.root().display());
    let c = Hub::start_with(
        certs.root(),
        &c_data,
        &root.path().join("c.log"),
        128,
        &["--ops-listen", "off", "--peer", &c_flag],
    )?;
    let mut on_c = Client::connect(&c.addr, &admin_tls).await?;
    let x_now = x_size + PROPAGATION_SETS as u64;
    let start = Instant::now();
    while rebuilt(&mut on_c, x_genesis).await? < x_now {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "C never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "C relayed X's whole log onward from A: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let from = sets + PROPAGATION_SETS;
    let (waits, cosigned) = propagation(
        &mut client,
        sign,
        from..from + PROPAGATION_SETS,
        &mut on_c,
        x_genesis,
    )
    .await?;
    let worst = waits.iter().copied().fold(0.0, f64::max);
    let worst_cosigned = cosigned.iter().copied().fold(0.0, f64::max);
    println!(
        "chain X -> A -> C: acknowledged by X -> in a checkpoint C serves: median {:.0} ms, slowest {worst:.0} ms; cosigned by C's witness: median {:.0} ms, slowest {worst_cosigned:.0} ms ({PROPAGATION_SETS} sets, default checkpoint policy, one witness per hub)",
        median(waits),
        median(cosigned)
    );
    c.stop()?;
    a.stop()?;
    x.stop()?;
    Ok(())
}
