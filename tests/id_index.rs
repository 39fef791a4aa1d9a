//! The statement-id index in sorted runs beside the entry files (`store/id_index.rs`), driven
//! through the real `coalition` binary: SIGKILL while runs are written and merged loses no
//! acknowledged statement and the restarted hub finds every one by id (and answers a
//! resubmission `already_present` with the original receipt); a data directory of the
//! earlier layout (ids as sled keys) is upgraded at start.

use crate::common;
use crate::serve;

use coalition_hub::client::{Client, sign_new};
use coalition_hub::pb;
use coalition_hub::pki::CertDir;
use coalition_hub::statement::Body;
use common::founded::Founded;
use common::{id, sha256_set, sync_all};
use serve::ServeProcess;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every acknowledgement: statement id → seq and the envelope (to resubmit it).
type Acked = HashMap<Vec<u8>, (u64, pb::Envelope)>;

/// A tiny memtable: a run is written every 40 statements, merges run all the time.
const SMALL_MEMTABLE: &[&str] = &["--id-memtable", "40"];

fn envelopes(founded: &Founded, from: u64, to: u64) -> Vec<pb::Envelope> {
    let key = CertDir::new(&founded.certs)
        .signing_key(&id("acme"))
        .expect("key");
    (from..to)
        .map(|i| sign_new(&id("acme"), &key, Body::HashSet(sha256_set(i, 1))))
        .collect()
}

/// Submits `envelopes` from 4 connections (SubmitBatches of 25 and single Submits, 8 calls in
/// flight on each) until they are all answered or the hub dies; records every
/// acknowledgement in `acked` (statement id → seq and envelope).
async fn flood(
    addr: &str,
    founded: &Founded,
    envelopes: Vec<pb::Envelope>,
    acked: &Arc<Mutex<Acked>>,
) -> tokio::task::JoinSet<()> {
    let queue = Arc::new(Mutex::new(envelopes.into_iter()));
    let mut tasks = tokio::task::JoinSet::new();
    for conn in 0..4 {
        let client = Client::connect(addr, &founded.tls())
            .await
            .expect("connect");
        for slot in 0..8 {
            let (mut client, queue, acked) = (client.clone(), queue.clone(), acked.clone());
            let batch = if (conn + slot) % 2 == 0 { 25 } else { 1 };
            tasks.spawn(async move {
                loop {
                    let taken: Vec<pb::Envelope> =
                        queue.lock().expect("lock").by_ref().take(batch).collect();
                    if taken.is_empty() {
                        return;
                    }
                    let Ok(outcomes) = client.submit_batch(taken.clone()).await else {
                        return; // the hub was killed
                    };
                    let mut acked = acked.lock().expect("lock");
                    for (o, envelope) in outcomes.into_iter().zip(taken) {
                        assert_eq!(o.code, 0, "{}", o.message);
                        let r = o.response.and_then(|r| r.receipt).expect("receipt");
                        acked.insert(r.statement_id, (r.seq, envelope));
                    }
                }
            });
        }
    }
    tasks
}

/// Every acknowledged statement is found by id at its receipt's position, and a resubmission
/// of a sample is answered `already_present` with the original receipt.
async fn check_found(client: &mut Client, acked: &Acked) {
    for (statement_id, (seq, _)) in acked {
        let got = client
            .hub
            .get_statement(pb::GetStatementRequest {
                statement_id: statement_id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("acknowledged entry {seq} not found by id: {e}"))
            .into_inner();
        assert_eq!((&got.statement_id, got.seq), (statement_id, *seq));
    }
    for (seq, envelope) in acked.values().step_by(23) {
        let again = client.submit(envelope.clone()).await.expect("resubmit");
        assert!(again.already_present, "entry {seq} logged twice");
        assert_eq!(again.receipt.expect("receipt").seq, *seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_while_id_runs_are_written_and_merged_loses_no_acknowledged_statement() {
    const ROUND: u64 = 2_000;
    let founded = Founded::new("ids.test").await;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    for round in 0..3u64 {
        let (hub, addr) = ServeProcess::start(founded.dir.path(), SMALL_MEMTABLE);
        let mut client = Client::connect(&addr, &founded.tls())
            .await
            .expect("connect");
        let known = acked.lock().expect("lock").clone();
        check_found(&mut client, &known).await;
        let (entries, next) = sync_all(&mut client, pb::SyncRequest::default()).await;
        assert_eq!(next, entries.len() as u64);
        assert!(
            next > known.len() as u64,
            "round {round}: genesis and every ack"
        );

        let batch = envelopes(&founded, round * ROUND, (round + 1) * ROUND);
        let mut tasks = flood(&addr, &founded, batch, &acked).await;
        // Kill with calls in flight, runs being written and merged.
        let target = known.len() + (ROUND as usize) / 2;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while acked.lock().expect("lock").len() < target {
            assert!(std::time::Instant::now() < deadline, "the flood stalled");
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        hub.kill();
        while tasks.join_next().await.is_some() {}
    }
    let (hub, addr) = ServeProcess::start(founded.dir.path(), SMALL_MEMTABLE);
    let mut client = Client::connect(&addr, &founded.tls())
        .await
        .expect("connect");
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 3 * ROUND as usize / 2);
    check_found(&mut client, &acked).await;
    // The log holds each statement once, at its receipt's position.
    let (entries, _) = sync_all(&mut client, pb::SyncRequest::default()).await;
    let logged: HashMap<Vec<u8>, u64> = entries
        .iter()
        .map(|e| (e.statement_id.clone(), e.seq))
        .collect();
    assert_eq!(logged.len(), entries.len(), "no statement twice");
    for (statement_id, (seq, _)) in &acked {
        assert_eq!(logged.get(statement_id), Some(seq));
    }
    hub.kill();
    // The ids live in a handful of merged runs, not one file per memtable.
    let runs = std::fs::read_dir(founded.data.join(coalition_hub::store::ID_RUNS_DIR))
        .expect("ids dir")
        .count();
    assert!(
        (1..=16).contains(&runs),
        "{runs} run files for {} entries",
        entries.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_with_the_sled_id_index_is_upgraded() {
    let founded = Founded::new("ids.test").await;
    let batch = envelopes(&founded, 0, 300);
    let (hub, addr) = ServeProcess::start(founded.dir.path(), &[]);
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut tasks = flood(&addr, &founded, batch, &acked).await;
    while tasks.join_next().await.is_some() {}
    let mut client = Client::connect(&addr, &founded.tls())
        .await
        .expect("connect");
    let (entries, size) = sync_all(&mut client, pb::SyncRequest::default()).await;
    drop(client);
    hub.kill();
    let acked = acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), 300);

    // Rewrite the directory into the earlier layout: the ids as sled keys `I` + id → seq, the
    // earlier layout marker, no runs.
    std::fs::remove_dir_all(founded.data.join(coalition_hub::store::ID_RUNS_DIR)).expect("rm");
    {
        let db = sled::open(&founded.data).expect("sled");
        let log = db.open_tree("log").expect("log");
        for e in &entries {
            let mut key = vec![b'I'];
            key.extend_from_slice(&e.statement_id);
            log.insert(key, &e.seq.to_be_bytes()[..]).expect("insert");
        }
        log.insert(b"F", &b"tiles-1+entry-files-1"[..])
            .expect("marker");
        db.flush().expect("flush");
    }

    let (hub, addr) = ServeProcess::start(founded.dir.path(), &[]);
    let mut client = Client::connect(&addr, &founded.tls())
        .await
        .expect("connect");
    check_found(&mut client, &acked).await;
    // Every acknowledged statement is resubmitted: all already present, nothing appended.
    for (seq, envelope) in acked.values() {
        let again = client.submit(envelope.clone()).await.expect("resubmit");
        assert!(again.already_present);
        assert_eq!(again.receipt.expect("receipt").seq, *seq);
    }
    let fresh = envelopes(&founded, 1000, 1001).remove(0);
    let receipt = client.submit(fresh).await.expect("submit");
    assert!(!receipt.already_present);
    assert_eq!(receipt.receipt.expect("receipt").seq, size);
    drop(client);
    hub.kill();
    let db = sled::open(&founded.data).expect("sled");
    let log = db.open_tree("log").expect("log");
    assert_eq!(
        log.scan_prefix(b"I").count(),
        0,
        "the sled id keys are gone"
    );
    assert_eq!(
        log.get(b"F").expect("get").as_deref(),
        Some(&b"tiles-1+entry-files-1+id-runs-1"[..]),
        "an earlier version refuses the directory now"
    );
}
