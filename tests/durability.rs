//! Durability: the real `coalition` binary acknowledges submissions, is killed with SIGKILL,
//! restarts on the same data directory, and still holds every acknowledged statement.

use crate::common;
use crate::serve;

use coalition_hub::client::Client;
use coalition_hub::pb;
use coalition_hub::pki::CertDir;

use common::founded::Founded;
use common::{id, replay, sha256_set, sync_all};
use serve::{ServeProcess, ok};

/// `coalition serve` on the founded directory (its `certs/` and `data/`).
fn start_hub(founded: &Founded) -> (ServeProcess, String) {
    ServeProcess::start(founded.dir.path(), &[])
}

#[tokio::test]
async fn acknowledged_statements_survive_sigkill() {
    // Genesis, as `coalition init`: acme is the founding admin and also a member.
    let founded = Founded::new("durability.test").await;
    let key = CertDir::new(&founded.certs)
        .signing_key(&id("acme"))
        .expect("key");
    let tls = founded.tls();
    let mut acked = Vec::new();
    for round in 0..3u64 {
        let (hub, addr) = start_hub(&founded);
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
        hub.kill();
    }
}

/// SIGKILL in the middle of a flood of small statements from four connections (Submits and
/// SubmitBatches, many calls in flight on each): every statement acknowledged before the kill
/// is in the restarted hub's log (Sync and GetStatement), exactly once, at its receipt's
/// position, and the log replays under every rule. A torn group at the end of the entry files
/// (written by a crash before sled committed it) is dropped at the restart, the hub goes on
/// appending right after the last acknowledged entry, and an auditor's export of the final
/// log verifies.
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
    let key = CertDir::new(&founded.certs)
        .signing_key(&id("acme"))
        .expect("key");
    let tls = founded.tls();
    let (hub, addr) = start_hub(&founded);
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
    hub.kill();
    while tasks.join_next().await.is_some() {}
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() as u64 >= STATEMENTS / 3);
    // What a crash between writing a group's records and committing it leaves: bytes past the
    // acknowledged end of both entry files (half a record, a partial offset).
    for (file, tail) in [
        (coalition_hub::store::ENTRIES_DATA_FILE, &[0x0a_u8; 77][..]),
        (
            coalition_hub::store::ENTRIES_OFFSETS_FILE,
            &[0xff_u8; 12][..],
        ),
    ] {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(founded.data.join(file))
            .and_then(|mut f| f.write_all(tail))
            .expect("torn tail");
    }
    let (hub, addr) = start_hub(&founded);
    let mut client = Client::connect(&addr, &tls).await.expect("connect");
    let (entries, next) = sync_all(&mut client, pb::SyncRequest::default()).await;
    assert_eq!(next, entries.len() as u64);
    // GetStatement answers from the stored records too (a sample: every 50th acknowledgement).
    for (id, seq) in acked.iter().step_by(50) {
        let got = client
            .hub
            .get_statement(pb::GetStatementRequest {
                statement_id: id.clone(),
            })
            .await
            .expect("an acknowledged statement is found by id")
            .into_inner();
        assert_eq!((&got.statement_id, got.seq), (id, *seq));
    }
    // The hub appends right after the last acknowledged entry, then dies again.
    let more: Vec<pb::Envelope> = (STATEMENTS..STATEMENTS + 30)
        .map(|i| {
            coalition_hub::client::sign_new(&id("acme"), &key, Body::HashSet(sha256_set(i, 1)))
        })
        .collect();
    let mut appended = Vec::new();
    for (i, envelope) in more.into_iter().enumerate() {
        let receipt = client.submit(envelope).await.expect("submit").receipt;
        let receipt = receipt.expect("receipt");
        assert_eq!(receipt.seq, next + i as u64);
        appended.push(receipt.statement_id);
    }
    hub.kill();
    let (hub, addr) = start_hub(&founded);
    let mut client = Client::connect(&addr, &tls).await.expect("connect");
    let (after, _) = sync_all(&mut client, pb::SyncRequest::default()).await;
    assert_eq!(after.len() as u64, next + 30);
    assert_eq!(after[..entries.len()], entries[..]);
    let tail: Vec<Vec<u8>> = after[entries.len()..]
        .iter()
        .map(|e| e.statement_id.clone())
        .collect();
    assert_eq!(tail, appended);
    // An auditor verifies the final log offline.
    let dir = founded.dir.path();
    ok(
        dir,
        &[
            "audit",
            "export",
            "--hub",
            &addr,
            "--as",
            "acme",
            "--out",
            "final.bundle",
        ],
    );
    let verified = ok(dir, &["audit", "verify", "final.bundle"]);
    assert!(
        verified.contains("audit OK: hub 'durability.test'")
            && verified.contains(&format!("{} entries replayed", next + 30)),
        "{verified}"
    );
    hub.kill();
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
