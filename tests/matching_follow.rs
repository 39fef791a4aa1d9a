//! Matching follows the log, with the real `coalition serve` binary over mutual TLS on a sled
//! data directory: a set is matchable as soon as its Submit returns while another connection
//! keeps ingesting (no UNAVAILABLE), a SIGKILL during background merges or a snapshot write
//! loses no acknowledged statement and the restarted hub answers exactly like one that rebuilt
//! its index from the log, and a damaged, truncated or foreign snapshot file is ignored.

use crate::common;

use coalition_hub::client::{Client, sign_new};
use coalition_hub::pb;
use coalition_hub::pki::CertDir;
use coalition_hub::statement::{Body, HashEntry, HashSet, HashType, Label};
use common::founded::{Founded, LoggedHub, PATIENCE};
use common::id;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SNAPSHOT_FILE: &str = "matching-index.bin";

/// The PDQ hashes of set `seed` (deterministic).
fn pdq_hashes(seed: u64, n: usize) -> Vec<[u8; 32]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.r#gen()).collect()
}

/// A signed set by acme of `n` PDQ hashes (seeded) and, every third set, a few sha256 ones.
fn pdq_set(f: &Founded, seed: u64, n: usize) -> pb::Envelope {
    let key = CertDir::new(&f.certs)
        .signing_key(&id("acme"))
        .expect("key");
    let mut entries: Vec<HashEntry> = pdq_hashes(seed, n)
        .into_iter()
        .map(|h| HashEntry {
            hash_type: HashType::Pdq,
            value: h.to_vec(),
            quality: Some(80 + (seed % 20) as u8),
            labels: vec![Label::Tag(format!("set-{}", seed % 7))],
        })
        .collect();
    if seed.is_multiple_of(3) {
        entries.extend((0..5u8).map(|i| HashEntry {
            hash_type: HashType::Sha256,
            value: vec![(seed as u8) ^ i; 32],
            quality: None,
            labels: vec![Label::Tag("exact".into())],
        }));
    }
    sign_new(
        &id("acme"),
        &key,
        Body::HashSet(HashSet {
            expires_at_ms: None,
            description: format!("follow {seed}"),
            entries,
        }),
    )
}

fn pdq_query(value: &[u8; 32]) -> pb::MatchQuery {
    pb::MatchQuery {
        r#type: HashType::Pdq.to_wire() as i32,
        value: value.to_vec(),
        quality: None,
    }
}

async fn connect(f: &Founded, hub: &LoggedHub) -> Client {
    Client::connect(&hub.addr, &f.tls()).await.expect("connect")
}

async fn ask(
    client: &mut Client,
    queries: Vec<pb::MatchQuery>,
) -> Result<pb::MatchResponse, tonic::Status> {
    client
        .hub
        .r#match(pb::MatchRequest {
            queries,
            pdq_threshold: Some(31),
            min_quality: Some(0),
            states: Vec::new(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Asks until the hub answers (a restarted hub may still be loading: UNAVAILABLE is retried
/// within [`PATIENCE`]; any other error fails the test).
async fn answer(client: &mut Client, queries: &[pb::MatchQuery]) -> pb::MatchResponse {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match ask(client, queries.to_vec()).await {
            Ok(a) => return a,
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("Match failed: {s}"),
        }
    }
}

/// Queries covering every acknowledged set: one stored hash each (exact and flipped by 9
/// bits), a random miss, and each set's sha256 hashes.
fn probes(seeds: &[u64], n: usize) -> Vec<pb::MatchQuery> {
    let mut out = Vec::new();
    for &seed in seeds {
        let hashes = pdq_hashes(seed, n);
        let h = hashes[(seed as usize * 13) % n];
        out.push(pdq_query(&h));
        let mut near = h;
        for bit in [3, 40, 77, 101, 150, 180, 201, 230, 255] {
            near[bit / 8] ^= 1 << (bit % 8);
        }
        out.push(pdq_query(&near));
        if seed.is_multiple_of(3) {
            out.push(pb::MatchQuery {
                r#type: HashType::Sha256.to_wire() as i32,
                value: vec![seed as u8; 32],
                quality: None,
            });
        }
    }
    out.push(pdq_query(&[0x5a; 32]));
    out
}

/// Whether every acknowledged set's stored hash was found, at distance 0.
fn all_found(seeds: &[u64], n: usize, answer: &pb::MatchResponse) -> bool {
    seeds.iter().all(|&seed| {
        let h = pdq_hashes(seed, n)[(seed as usize * 13) % n];
        answer
            .results
            .iter()
            .any(|r| r.matches.iter().any(|m| m.value == h && m.distance == 0))
    })
}

fn kill(mut hub: LoggedHub) {
    hub.child.kill().expect("SIGKILL");
    hub.child.wait().expect("wait");
}

fn snapshot_path(f: &Founded) -> PathBuf {
    f.data.join(SNAPSHOT_FILE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_is_matchable_when_its_submit_returns_while_another_connection_ingests() {
    let f = Founded::new("follow.test").await;
    let hub = LoggedHub::start(&f, &[]);
    let mut background = connect(&f, &hub).await;
    // Connection A ingests sets of 3,000 PDQ hashes without pause: enough to make segments
    // merge (32,768 hashes and up) while connection B checks its own sets.
    let envelopes: Vec<pb::Envelope> = (1000..1060).map(|s| pdq_set(&f, s, 3_000)).collect();
    let ingest = tokio::spawn(async move {
        for e in envelopes {
            background.submit(e).await.expect("background submit");
        }
    });
    let mut own = connect(&f, &hub).await;
    let mut reader = connect(&f, &hub).await;
    let mut checked = 0;
    let mut seeds = Vec::new();
    for seed in 1..=40u64 {
        own.submit(pdq_set(&f, seed, 500)).await.expect("submit");
        seeds.push(seed);
        // The very first answer after the acknowledgement finds it: no retry, no UNAVAILABLE.
        let got = ask(&mut reader, probes(&[seed], 500))
            .await
            .unwrap_or_else(|s| panic!("Match right after Submit failed: {s}"));
        assert!(
            all_found(&[seed], 500, &got),
            "set {seed} not found right after its Submit"
        );
        if !ingest.is_finished() {
            checked += 1;
        }
    }
    ingest.await.expect("background ingest");
    assert!(
        checked > 5,
        "only {checked} checks overlapped the background ingest"
    );
    // Everything is still found once merges have run.
    let got = answer(&mut reader, &probes(&seeds, 500)).await;
    assert!(all_found(&seeds, 500, &got));
    let background: Vec<u64> = (1000..1060).collect();
    let got = answer(&mut reader, &probes(&background, 3_000)).await;
    assert!(all_found(&background, 3_000, &got));
}

/// Starts a hub, waits for it to answer, and returns its answer to `queries`.
async fn answers_of(
    f: &Founded,
    extra: &[&str],
    queries: &[pb::MatchQuery],
) -> (pb::MatchResponse, LoggedHub) {
    let hub = LoggedHub::start(f, extra);
    let mut reader = connect(f, &hub).await;
    let got = answer(&mut reader, queries).await;
    (got, hub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_merges_and_snapshot_writes_loses_nothing_and_equals_a_fresh_build() {
    let f = Founded::new("crash.test").await;
    let n = 2_000;
    let mut acked: Vec<u64> = Vec::new();
    let mut seed = 1u64;
    // Round 1: killed right after the last acknowledgement (segments still merging).
    // Round 2: killed as soon as a snapshot write starts.
    // Round 3: killed right after a snapshot was written and more sets were acknowledged
    // (the snapshot is then behind the log).
    // Round 4: killed at once after start-up (while the snapshot loads or the tail indexes).
    for round in 0..4 {
        let hub = LoggedHub::start(&f, &[]);
        let mut client = connect(&f, &hub).await;
        let sets = if round == 3 { 1 } else { 25 };
        for _ in 0..sets {
            client.submit(pdq_set(&f, seed, n)).await.expect("submit");
            acked.push(seed);
            seed += 1;
        }
        match round {
            1 => hub.wait_for_log("writing the matching snapshot"),
            2 => {
                hub.wait_for_log("matching snapshot written");
                for _ in 0..3 {
                    client.submit(pdq_set(&f, seed, n)).await.expect("submit");
                    acked.push(seed);
                    seed += 1;
                }
            }
            _ => {}
        }
        kill(hub);
    }
    let queries = probes(&acked, n);
    // With whatever snapshot the crashes left.
    let (restarted, hub) = answers_of(&f, &[], &queries).await;
    assert!(
        all_found(&acked, n, &restarted),
        "an acknowledged set was lost"
    );
    kill(hub);
    // A hub that rebuilt its index from the log, the snapshot deleted.
    let _ = std::fs::remove_file(snapshot_path(&f));
    let (fresh, hub) = answers_of(&f, &["--match-snapshot", "off"], &queries).await;
    assert_eq!(
        restarted, fresh,
        "a restarted hub answers unlike a fresh build"
    );
    assert!(!hub.log().contains("matching snapshot loaded"));
    kill(hub);
    // And once more from the snapshot a clean run writes.
    let hub = LoggedHub::start(&f, &[]);
    hub.wait_for_log("matching snapshot written");
    kill(hub);
    let (from_snapshot, hub) = answers_of(&f, &[], &queries).await;
    hub.wait_for_log("matching snapshot loaded");
    assert_eq!(from_snapshot, fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_truncated_or_foreign_snapshot_is_ignored_and_answers_stay_right() {
    let f = Founded::new("damage.test").await;
    let n = 1_000;
    let seeds: Vec<u64> = (1..=12).collect();
    let hub = LoggedHub::start(&f, &[]);
    let mut client = connect(&f, &hub).await;
    for &s in &seeds {
        client.submit(pdq_set(&f, s, n)).await.expect("submit");
    }
    hub.wait_for_log("matching snapshot written");
    let queries = probes(&seeds, n);
    let mut reader = connect(&f, &hub).await;
    let want = answer(&mut reader, &queries).await;
    assert!(all_found(&seeds, n, &want));
    kill(hub);
    let good = std::fs::read(snapshot_path(&f)).expect("snapshot written");

    // Another hub's snapshot: intact, but of another log.
    let other = Founded::new("other.test").await;
    let hub = LoggedHub::start(&other, &[]);
    let mut client = connect(&other, &hub).await;
    for s in 500..520 {
        client.submit(pdq_set(&other, s, n)).await.expect("submit");
    }
    hub.wait_for_log("matching snapshot written");
    kill(hub);
    let foreign = std::fs::read(snapshot_path(&other)).expect("other snapshot");

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    let truncated = good[..good.len() - 100].to_vec();
    for (what, bytes, reason) in [
        ("flipped", flipped, "damaged"),
        ("truncated", truncated, "damaged"),
        ("foreign", foreign, "does not cover a prefix of this log"),
        ("garbage", vec![0x42; 5000], "damaged"),
    ] {
        std::fs::write(snapshot_path(&f), &bytes).expect("write bad snapshot");
        let (got, hub) = answers_of(&f, &[], &queries).await;
        hub.wait_for_log("matching snapshot ignored");
        assert!(hub.log().contains(reason), "{what}: {}", hub.log());
        assert!(!hub.log().contains("matching snapshot loaded"), "{what}");
        assert_eq!(got, want, "{what} snapshot changed the answers");
        // The hub replaces a bad file with a good one once the log is quiet.
        hub.wait_for_log("matching snapshot written");
        kill(hub);
    }
    // The replaced file loads.
    let (got, hub) = answers_of(&f, &[], &queries).await;
    hub.wait_for_log("matching snapshot loaded");
    assert_eq!(got, want);
}
