//! Durability: the real `coalition` binary acknowledges submissions, is killed with SIGKILL,
//! restarts on the same data directory, and still holds every acknowledged statement.

mod common;

use coalition_hub::client::Client;
use coalition_hub::pb;
use coalition_hub::pki::CertDir;

use common::founded::Founded;
use common::{id, replay, sha256_set, sync_all};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn start_hub(data: &Path, certs: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coalition"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(data)
        .arg("--certs")
        .arg(certs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coalition serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let Some(addr) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        }
        panic!("hub did not start: stdout {line:?}, stderr {err:?}");
    };
    // Drain stderr so the hub never blocks on a full pipe.
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            std::io::copy(&mut BufReader::new(stderr), &mut std::io::sink())
        });
    }
    (child, addr)
}

#[tokio::test]
async fn acknowledged_statements_survive_sigkill() {
    // Genesis, as `coalition init`: acme is the founding admin and also a member.
    let founded = Founded::new("durability.test").await;
    let (data, certs_dir) = (&founded.data, &founded.certs);
    let key = CertDir::new(certs_dir)
        .signing_key(&id("acme"))
        .expect("key");
    let tls = founded.tls();
    let mut acked = Vec::new();
    for round in 0..3u64 {
        let (mut child, addr) = start_hub(data, certs_dir);
        let mut client = Client::connect(&addr, &tls).await.expect("connect");
        // Everything acknowledged before earlier kills is still there.
        let (entries, next) = sync_all(&mut client, pb::SyncRequest::default()).await;
        let ids: Vec<Vec<u8>> = entries.iter().map(|e| e.statement_id.clone()).collect();
        assert_eq!(
            ids[1..].to_vec(),
            acked,
            "round {round}: every acknowledged statement survived (entry 0 is the genesis)"
        );
        assert_eq!(next, acked.len() as u64 + 1);
        // And the restarted hub's log still replays from its genesis, every rule checked.
        replay(entries).unwrap_or_else(|e| panic!("round {round}: {e}"));
        for i in 0..20u64 {
            let set = sha256_set(round * 100 + i, 50);
            let env = coalition_hub::client::sign_new(
                &id("acme"),
                &key,
                coalition_hub::statement::Body::HashSet(set),
            );
            let r = client.submit(env).await.expect("submit");
            let receipt = r.receipt.expect("receipt");
            assert_eq!(receipt.seq, acked.len() as u64 + 1);
            acked.push(receipt.statement_id);
        }
        // SIGKILL right after the last acknowledgement: no graceful shutdown, no Drop.
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }
}

/// SIGKILL in the middle of a flood of small statements from four connections (Submits and
/// SubmitBatches, many calls in flight on each): every statement acknowledged before the kill
/// is in the restarted hub's log, exactly once, at its receipt's position, and the log
/// replays under every rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_flood_of_small_statements_loses_no_acknowledged_one() {
    use coalition_hub::statement::Body;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    const STATEMENTS: u64 = 6_000;
    const IN_FLIGHT: usize = 16;
    const BATCH: usize = 50;
    // Genesis, as `coalition init`: acme is the founding admin and also a member.
    let founded = Founded::new("durability.test").await;
    let (data, certs_dir) = (&founded.data, &founded.certs);
    let key = CertDir::new(certs_dir)
        .signing_key(&id("acme"))
        .expect("key");
    let tls = founded.tls();
    let (mut child, addr) = start_hub(data, certs_dir);
    let envelopes: Vec<pb::Envelope> = (0..STATEMENTS)
        .map(|i| {
            coalition_hub::client::sign_new(&id("acme"), &key, Body::HashSet(sha256_set(i, 1)))
        })
        .collect();
    let queue = Arc::new(Mutex::new(envelopes.into_iter()));
    // statement id → seq of every acknowledgement received.
    let acked: Arc<Mutex<HashMap<Vec<u8>, u64>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for conn in 0..4 {
        let client = Client::connect(&addr, &tls).await.expect("connect");
        for slot in 0..IN_FLIGHT {
            let (mut client, queue, acked) = (client.clone(), queue.clone(), acked.clone());
            // Half the calls are batches, half single Submits.
            let batch = if (conn + slot) % 2 == 0 { BATCH } else { 1 };
            tasks.spawn(async move {
                loop {
                    let taken: Vec<pb::Envelope> =
                        queue.lock().expect("lock").by_ref().take(batch).collect();
                    if taken.is_empty() {
                        return;
                    }
                    let receipts: Vec<pb::Receipt> = if batch == 1 {
                        let Some(envelope) = taken.into_iter().next() else {
                            return;
                        };
                        match client.submit(envelope).await {
                            Ok(r) => r.receipt.into_iter().collect(),
                            Err(_) => return, // the hub was killed
                        }
                    } else {
                        match client.submit_batch(taken).await {
                            Ok(outcomes) => outcomes
                                .into_iter()
                                .map(|o| {
                                    assert_eq!(o.code, 0, "{}", o.message);
                                    o.response.and_then(|r| r.receipt).expect("receipt")
                                })
                                .collect(),
                            Err(_) => return,
                        }
                    };
                    let mut acked = acked.lock().expect("lock");
                    for r in receipts {
                        acked.insert(r.statement_id, r.seq);
                    }
                }
            });
        }
    }
    // Kill once a good part is acknowledged, with calls still in flight.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while acked.lock().expect("lock").len() < (STATEMENTS / 3) as usize {
        assert!(std::time::Instant::now() < deadline, "the flood stalled");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    while tasks.join_next().await.is_some() {}
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() as u64 >= STATEMENTS / 3);
    let (mut child, addr) = start_hub(data, certs_dir);
    let mut client = Client::connect(&addr, &tls).await.expect("connect");
    let (entries, next) = sync_all(&mut client, pb::SyncRequest::default()).await;
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert_eq!(next, entries.len() as u64);
    let logged: HashMap<Vec<u8>, u64> = entries
        .iter()
        .map(|e| (e.statement_id.clone(), e.seq))
        .collect();
    assert_eq!(logged.len(), entries.len(), "no statement twice");
    for (id, seq) in &acked {
        assert_eq!(
            logged.get(id),
            Some(seq),
            "an acknowledged statement is in the log at its receipt's position"
        );
    }
    replay(entries).expect("the restarted hub's log replays under every rule");
}
