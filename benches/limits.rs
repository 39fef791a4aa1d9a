//! Attack benchmark (issue 11): a `coalition serve` process under two attacks at once —
//! 1,100 idle TCP sockets (no bytes, no certificate) held open from 11 loopback source
//! addresses (127.0.0.2–127.0.0.12, 100 each, reopened as the hub closes them), and a removed
//! member (admitted, then removed by a membership change; its certificate is not revoked)
//! sending 60 MiB Submits on one connection, over and over — while a legitimate member opens
//! new connections from 127.0.0.1.
//!
//! Measures, as medians over the runs: the legitimate member's time from a new TCP connection
//! to the answer of its first call (TLS handshake + HTTP/2 + `WhoAmI`), with and without the
//! attack; and the hub's resident memory over its idle level (max VmRSS sampled every 50 ms
//! during the attack minus VmRSS settled before it). Targets: first call ≤ 100 ms, RSS over
//! idle ≤ 300 MiB.
//!
//! Run (release build): `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench limits`.
//! `LIMITS_BENCH_QUICK=1` for a short run (fewer samples).

#[path = "support/founding.rs"]
mod founding;
#[path = "support/hub_process.rs"]
mod hub_process;

use anyhow::{Context, Result, bail};
use coalition_hub::client::Client;
use coalition_hub::governance;
use coalition_hub::membership::{Action, MemberId};
use coalition_hub::pb;
use coalition_hub::pki::CertDir;
use hub_process::Hub;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Idle sockets held open by the attacker.
const IDLE_SOCKETS: usize = 1_100;
/// Source addresses they come from (127.0.0.2 onwards).
const SOURCES: usize = 11;
/// Size of each of the removed member's Submits.
const BIG_SUBMIT: usize = 60 * 1024 * 1024;

fn main() -> Result<()> {
    let quick = std::env::var_os("LIMITS_BENCH_QUICK").is_some();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(if quick { 5 } else { 21 }))
}

async fn run(samples: usize) -> Result<()> {
    let root = tempfile::tempdir()?;
    let certs = CertDir::new(root.path().join("certs"));
    let [admin, attacker, legit] = ["admin", "attacker", "legit"].map(MemberId::parse);
    let (admin, attacker, legit) = (admin?, attacker?, legit?);
    certs.init(&[admin.clone(), attacker.clone(), legit.clone()])?;
    let data = root.path().join("data");
    {
        let members = [&attacker, &legit];
        let (store, admin_key) =
            founding::found(&data, &certs, "limits.bench.local", &admin, &members).await?;
        let remove = governance::change(
            &admin,
            &admin_key,
            Action::Remove(attacker.clone()),
            "bench",
        );
        governance::append_offline(&store, remove).await?;
    }
    let hub = Hub::start(certs.root(), &data, &root.path().join("hub.log"), 128)?;
    let addr: SocketAddr = hub.addr.parse().context("hub address")?;
    println!("Coalition Hub attack benchmark");
    println!(
        "machine: {} cores; hub: `coalition serve` process on {addr}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let legit_tls = certs.member_tls(&legit)?;
    // Warm up (first handshake, index), then the quiet baseline.
    first_call(&hub.addr, &legit_tls).await?;
    let idle = hub.settle().await?;
    let mut quiet = Vec::new();
    for _ in 0..samples {
        quiet.push(first_call(&hub.addr, &legit_tls).await?);
    }

    // The attack.
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let reopened = Arc::new(AtomicU64::new(0));
    let sockets = tokio::spawn(hold_idle_sockets(addr, stop.clone(), reopened.clone()));
    let big = {
        let mut client = Client::connect(&hub.addr, &certs.member_tls(&attacker)?).await?;
        let (stop, refused) = (stop.clone(), refused.clone());
        tokio::spawn(async move {
            let envelope = pb::Envelope {
                payload: vec![0x5a; BIG_SUBMIT].into(),
                ..Default::default()
            };
            while !stop.load(Ordering::SeqCst) {
                match client.submit(envelope.clone()).await {
                    Err(_) => refused.fetch_add(1, Ordering::SeqCst),
                    Ok(_) => bail!("the removed member's submit was accepted"),
                };
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let peak = {
        let stop = stop.clone();
        let pid_hub = &hub;
        let mut max_kib = 0u64;
        // Let the attack build up before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut attacked = Vec::new();
        for _ in 0..samples {
            let sampler = async {
                loop {
                    if let Ok(m) = pid_hub.memory() {
                        max_kib = max_kib.max(m.rss_kib);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::select! {
                took = first_call(&hub.addr, &legit_tls) => attacked.push(took?),
                () = sampler => {}
            }
            // Keep sampling between calls (the attack goes on).
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                if let Ok(m) = pid_hub.memory() {
                    max_kib = max_kib.max(m.rss_kib);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        stop.store(true, Ordering::SeqCst);
        (attacked, max_kib)
    };
    let (mut attacked, max_kib) = peak;
    big.await??;
    sockets.await??;

    let (q, a) = (median(&mut quiet), median(&mut attacked));
    let over_idle_mib = max_kib.saturating_sub(idle.rss_kib) as f64 / 1024.0;
    println!("\n== Summary ({samples} samples each, medians) ==");
    println!(
        "first call on a new connection, quiet:        {q:.1} ms (max {:.1})",
        max(&quiet)
    );
    println!(
        "first call on a new connection, under attack: {a:.1} ms (max {:.1})",
        max(&attacked)
    );
    println!(
        "hub RSS: idle {:.0} MiB, peak under attack {:.0} MiB, over idle {over_idle_mib:.0} MiB",
        idle.rss_kib as f64 / 1024.0,
        max_kib as f64 / 1024.0
    );
    println!(
        "attack: {IDLE_SOCKETS} idle sockets from {SOURCES} addresses ({} reopened after the hub closed them); {} Submits of 60 MiB by a removed member, all refused",
        reopened.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst)
    );
    println!(
        "targets: first call <= 100 ms: {}; RSS over idle <= 300 MiB: {}",
        if a <= 100.0 { "met" } else { "MISSED" },
        if over_idle_mib <= 300.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    hub.stop()?;
    Ok(())
}

/// Milliseconds from a new TCP connection to the answer of the first call.
async fn first_call(addr: &str, tls: &coalition_hub::pki::TlsConfig) -> Result<f64> {
    let t = Instant::now();
    let mut client = Client::connect(addr, tls).await?;
    client.hub.who_am_i(pb::WhoAmIRequest {}).await?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// Keeps `IDLE_SOCKETS` connections open from `SOURCES` loopback addresses, sending nothing,
/// reopening those the hub closes (checked every 100 ms), until `stop`.
async fn hold_idle_sockets(
    hub: SocketAddr,
    stop: Arc<AtomicBool>,
    reopened: Arc<AtomicU64>,
) -> Result<()> {
    let per_source = IDLE_SOCKETS / SOURCES;
    let mut open: Vec<(usize, tokio::net::TcpStream)> = Vec::with_capacity(IDLE_SOCKETS);
    let connect = |source: usize| async move {
        let socket = tokio::net::TcpSocket::new_v4()?;
        let ip = std::net::Ipv4Addr::new(127, 0, 0, 2 + source as u8);
        socket.bind(SocketAddr::from((ip, 0)))?;
        socket.connect(hub).await
    };
    for source in 0..SOURCES {
        for _ in 0..per_source {
            open.push((source, connect(source).await?));
        }
    }
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = [0u8; 1];
        let mut closed = Vec::new();
        for (i, (_, stream)) in open.iter().enumerate() {
            match stream.try_read(&mut buf) {
                Ok(_) => closed.push(i), // EOF (or bytes: the hub never speaks first)
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => closed.push(i),
            }
        }
        for i in closed {
            let source = open[i].0;
            if let Ok(stream) = connect(source).await {
                open[i] = (source, stream);
                reopened.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}
