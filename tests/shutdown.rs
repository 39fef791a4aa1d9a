//! Clean shutdown of the real `coalition serve`: SIGTERM and SIGINT end open sync streams with
//! `UNAVAILABLE`, let the calls in flight finish, close the store and exit 0; a follower says
//! the hub is shutting down and resumes from its cursor with no gap and no duplicate; every
//! acknowledged statement survives; a second signal, or a grace period run out, exits at once
//! with a non-zero code. The in-process hub (`server::spawn`) shuts down the same way.

use crate::common;

use coalition_hub::client::Client;
use coalition_hub::pb;
use coalition_hub::sync::SyncError;
use common::founded::{Founded, LoggedHub, PATIENCE};
use common::hostile::{Run, beside, sync_cli, sync_command};
use common::{TestHub, replay, sync_all};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

impl Founded {
    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The hub these tests signal (`common::founded::LoggedHub`, with what they do to it).
type Hub = LoggedHub;

impl LoggedHub {
    fn signal(&self, name: &str) {
        signal(&self.child, name);
    }

    /// Waits for the hub to exit (a test failure past [`PATIENCE`]).
    fn exit(&mut self) -> ExitStatus {
        let status = wait_exit(&mut self.child);
        // Let the log thread read the last lines.
        std::thread::sleep(Duration::from_millis(100));
        status
    }

    async fn client(&self, f: &Founded) -> Client {
        Client::connect(&self.addr, &f.tls())
            .await
            .expect("connect")
    }
}

/// Sends the signal `name` ("TERM", "INT") to `child`.
fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{name}");
}

/// Waits for `child` to exit; fails the test past [`PATIENCE`].
fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("poll") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "did not exit within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the sync into `out` has saved a cursor holding `entries` entries.
fn wait_for_cursor(out: &Path, entries: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let size = coalition_hub::sync::Cursor::load(&beside(out, ".cursor"))
            .ok()
            .flatten()
            .map(|c| c.replica.size);
        if size == Some(entries) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the follower's cursor reached {size:?}, not {entries}, within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Submits `sets` hash sets of `n` hashes as acme, from `seed` on.
async fn submit(hub: &Hub, f: &Founded, seed: u64, sets: u64, n: usize) {
    let mut client = hub.client(f).await;
    for i in 0..sets {
        client
            .submit(f.hash_set(seed + i, n))
            .await
            .expect("submit");
    }
}

/// A following `coalition sync` into `out`, the hub stopped with `signal`: the hub exits 0,
/// the follower says the hub is shutting down (exit 3), and a rerun against the restarted hub
/// ends with exactly the rows of a fresh sync.
async fn a_follower_resumes_after(signal: &str) {
    let f = Founded::new("shutdown.test").await;
    let mut hub = Hub::start(&f, &[]);
    submit(&hub, &f, 0, 5, 40).await;
    let out = f.out("out.jsonl");
    let mut follower = sync_command(&hub.addr, &f.certs, "acme", &out, &["--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coalition sync --follow");
    wait_for_cursor(&out, 6);
    // New statements while it follows.
    submit(&hub, &f, 100, 3, 40).await;
    wait_for_cursor(&out, 9);

    hub.signal(signal);
    let status = hub.exit();
    assert_eq!(status.code(), Some(0), "hub log: {}", hub.log());
    assert!(hub.log().contains("shut down cleanly"), "{}", hub.log());
    wait_exit(&mut follower);
    let run = Run {
        code: follower.wait().expect("reap").code(),
        stdout: std::io::read_to_string(follower.stdout.take().expect("stdout")).expect("read"),
        stderr: std::io::read_to_string(follower.stderr.take().expect("stderr")).expect("read"),
    };
    let line = run.failed();
    assert!(line.contains("the hub is shutting down"), "{line}");
    assert!(line.contains("run the same command again"), "{line}");
    assert_eq!(run.code, Some(3), "retry later: {run:?}");

    // Restarted on the same data: more statements, then the same command again.
    let hub = Hub::start(&f, &[]);
    submit(&hub, &f, 200, 2, 40).await;
    let resumed = sync_cli(&hub.addr, &f.certs, "acme", &out, &[]).await.ok();
    assert!(
        resumed.stdout.contains("from seq 9 to 11"),
        "{}",
        resumed.stdout
    );
    let fresh = f.out("fresh.jsonl");
    sync_cli(&hub.addr, &f.certs, "acme", &fresh, &[])
        .await
        .ok();
    let (ours, theirs) = (
        std::fs::read_to_string(&out).expect("out"),
        std::fs::read_to_string(&fresh).expect("fresh"),
    );
    assert_eq!(ours, theirs, "the same rows as a fresh sync");
    let rows: Vec<&str> = ours.lines().collect();
    assert_eq!(rows.len(), 10 * 40, "every hash once");
    assert_eq!(
        rows.iter().collect::<BTreeSet<_>>().len(),
        rows.len(),
        "no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_follow_and_the_rerun_resumes_with_no_gap_or_duplicate() {
    a_follower_resumes_after("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_ends_a_follow_and_the_rerun_resumes_with_no_gap_or_duplicate() {
    a_follower_resumes_after("INT").await;
}

/// Three submitters, each a bounded loop, until the hub stops answering: every statement it
/// acknowledged is in the restarted hub's log, once, and the log replays from its genesis.
async fn acknowledged_submits_survive(signal: &str) {
    const SUBMITTERS: u64 = 3;
    const MOST: u64 = 1_000;
    let f = Founded::new("shutdown.test").await;
    let mut hub = Hub::start(&f, &[]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut submitters = Vec::new();
    for s in 0..SUBMITTERS {
        let mut client = hub.client(&f).await;
        let envelopes: Vec<_> = (0..MOST).map(|i| f.hash_set(s * MOST + i, 20)).collect();
        let acked = acked.clone();
        submitters.push(tokio::spawn(async move {
            let mut refused = None;
            for env in envelopes {
                match client.submit(env).await {
                    Ok(r) => acked
                        .lock()
                        .expect("acked")
                        .push(r.receipt.expect("receipt").statement_id),
                    Err(e) => {
                        refused = Some(e.to_string());
                        break;
                    }
                }
            }
            refused
        }));
    }
    // Submits in flight from every submitter.
    let deadline = Instant::now() + PATIENCE;
    while acked.lock().expect("acked").len() < 60 {
        assert!(Instant::now() < deadline, "submits are acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hub.signal(signal);
    let status = hub.exit();
    assert_eq!(status.code(), Some(0), "hub log: {}", hub.log());
    for submitter in submitters {
        let refused = submitter.await.expect("submitter");
        assert!(
            refused.is_some(),
            "a submitter stopped at the shutdown, not at its end"
        );
    }
    let acked = acked.lock().expect("acked").clone();

    let hub = Hub::start(&f, &[]);
    let (entries, next) = sync_all(&mut hub.client(&f).await, pb::SyncRequest::default()).await;
    assert_eq!(next, entries.len() as u64);
    let logged: Vec<Vec<u8>> = entries.iter().map(|e| e.statement_id.clone()).collect();
    let distinct: BTreeSet<&Vec<u8>> = logged.iter().collect();
    assert_eq!(distinct.len(), logged.len(), "nothing logged twice");
    let missing = acked.iter().filter(|id| !distinct.contains(id)).count();
    assert_eq!(
        missing,
        0,
        "every one of the {} acknowledged statements is in the log",
        acked.len()
    );
    replay(entries).expect("the log replays from its genesis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_submits_in_flight_keeps_every_acknowledged_statement() {
    acknowledged_submits_survive("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_submits_in_flight_keeps_every_acknowledged_statement() {
    acknowledged_submits_survive("INT").await;
}

/// Hash sets added to the log by each [`a_hub_draining`] attempt.
const SETS_HELD: u64 = 80;

/// A hub signalled with `first` whose shutdown cannot finish: a sync stream opened by a client
/// that stopped reading, over a log larger than what the transport and the hub buffer for one
/// stream (the client's 2 MiB HTTP/2 window, 16 messages of ~180 kB, hyper's send buffer),
/// stays open. Returns the hub, draining, and the client with its unread stream (keep them).
///
/// The stream holds the hub only once the client's window is full; signalled sooner, the hub
/// ends the stream and exits 0 in a few milliseconds. Then the attempt is repeated with a
/// longer wait (the log grows by [`SETS_HELD`] each time).
async fn a_hub_draining(
    f: &Founded,
    extra: &[&str],
    first: &str,
) -> (Hub, (Client, tonic::Streaming<pb::SyncResponse>)) {
    for attempt in 0..6 {
        let mut hub = Hub::start(f, extra);
        submit(&hub, f, attempt * SETS_HELD, SETS_HELD, 4_000).await;
        let mut client = hub.client(f).await;
        let stream = client
            .hub
            .sync(pb::SyncRequest::default())
            .await
            .expect("sync")
            .into_inner();
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        hub.signal(first);
        hub.wait_for_log("a second signal exits at once");
        // A drain nothing holds takes milliseconds.
        tokio::time::sleep(Duration::from_millis(300)).await;
        match hub.child.try_wait().expect("poll") {
            None => return (hub, (client, stream)),
            Some(status) => {
                assert_eq!(status.code(), Some(0), "drained: {}", hub.log());
                eprintln!("attempt {attempt}: the stream ended before it held the hub; again");
                hub.exit();
            }
        }
    }
    panic!("an unread stream never held the shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let f = Founded::new("shutdown.test").await;
    for (first, second, code) in [("TERM", "TERM", 143), ("TERM", "INT", 130)] {
        let (mut hub, _unread) =
            a_hub_draining(&f, &["--shutdown-grace-ms", "600000"], first).await;
        hub.signal(second);
        let status = hub.exit();
        assert_eq!(status.code(), Some(code), "hub log: {}", hub.log());
        assert!(hub.log().contains("second signal"), "{}", hub.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_period_the_hub_exits_anyway_with_a_warning() {
    let f = Founded::new("shutdown.test").await;
    let (mut hub, _unread) = a_hub_draining(&f, &["--shutdown-grace-ms", "1000"], "TERM").await;
    let status = hub.exit();
    assert_eq!(status.code(), Some(1), "hub log: {}", hub.log());
    assert!(
        hub.log().contains("grace period of 1000 ms"),
        "{}",
        hub.log()
    );
    // Nothing acknowledged was lost: a restarted hub serves the whole log.
    let hub = Hub::start(&f, &[]);
    let (entries, _) = sync_all(&mut hub.client(&f).await, pb::SyncRequest::default()).await;
    assert_eq!((entries.len() as u64 - 1) % SETS_HELD, 0, "whole attempts");
    replay(entries).expect("the log replays from its genesis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_in_process_hub_ends_a_follow_with_the_shutting_down_status() {
    let t = TestHub::start().await;
    let mut follower = t.follow("globex").await;
    // Caught up with the set-up entries.
    while follower.syncer.replica().size() < t.base {
        follower.next().await.expect("a batch");
    }
    let stopping = tokio::spawn(t.stop());
    match follower.syncer.next().await {
        Err(SyncError::Unavailable { reason, saved }) => {
            assert_eq!(reason, "the hub is shutting down");
            assert!(saved > 0, "the proven entries are saved");
        }
        other => panic!("expected the shutting-down status, got {other:?}"),
    }
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("stopped within the grace period")
        .expect("stop");
}
