//! Matching over real mutual TLS and offline: exact and PDQ near-duplicate hits with
//! provenance, threshold edges, quality, bad input, index updates while querying, the
//! index rebuilt from the store at start-up, and `coalition match` against a synced file.

use crate::common;

use coalition_hub::client::sign_new;
use coalition_hub::matching::{PdqHash, brute_force};
use coalition_hub::pb;
use coalition_hub::statement::{Body, HashEntry, HashSet, HashType, Label};
use common::{TestHub, id};
use rand::{Rng, SeedableRng};
use tonic::Code;

fn pdq_entry(value: [u8; 32], quality: u8) -> HashEntry {
    HashEntry {
        hash_type: HashType::Pdq,
        value: value.to_vec(),
        quality: Some(quality),
        labels: vec![Label::Tag("pdq-test".into())],
    }
}

fn flip(v: &[u8; 32], bits: usize) -> Vec<u8> {
    let mut out = v.to_vec();
    for b in 0..bits {
        let bit = b * 7 % 256; // spread, distinct for bits <= 256/gcd(7,256)
        out[bit / 8] ^= 1 << (bit % 8);
    }
    out
}

fn query(t: HashType, value: Vec<u8>) -> pb::MatchQuery {
    pb::MatchQuery {
        r#type: t.to_wire() as i32,
        value,
        quality: None,
    }
}

async fn ask(
    client: &mut coalition_hub::client::Client,
    queries: Vec<pb::MatchQuery>,
    threshold: Option<u32>,
) -> Result<pb::MatchResponse, tonic::Status> {
    client
        .hub
        .r#match(pb::MatchRequest {
            queries,
            pdq_threshold: threshold,
            min_quality: None,
            states: Vec::new(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn exact_and_pdq_matches_with_provenance_and_edges() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let base = [0x5a_u8; 32];
    let md5 = vec![0x11u8; 16];
    let set = HashSet {
        expires_at_ms: None,
        description: String::new(),
        entries: vec![
            HashEntry {
                hash_type: HashType::Md5,
                value: md5.clone(),
                quality: None,
                labels: vec![Label::Tag("md5-test".into())],
            },
            pdq_entry(base, 90),
            pdq_entry([0xff; 32], 20), // below the default minimum quality
        ],
    };
    let receipt = acme
        .submit(sign_new(&id("acme"), &t.key("acme"), Body::HashSet(set)))
        .await
        .expect("submit")
        .receipt
        .expect("receipt");
    let mut globex = t.client("globex").await;

    let cases: Vec<(pb::MatchQuery, Option<u32>, Option<u32>)> = vec![
        // (query, threshold, expected distance of the single hit; None = no hit)
        (query(HashType::Md5, md5.clone()), None, Some(0)),
        (query(HashType::Md5, vec![0x12; 16]), None, None),
        (query(HashType::Sha1, vec![0x11; 20]), None, None),
        (query(HashType::Pdq, base.to_vec()), Some(0), Some(0)),
        (query(HashType::Pdq, flip(&base, 1)), Some(0), None),
        (query(HashType::Pdq, flip(&base, 31)), None, Some(31)),
        (query(HashType::Pdq, flip(&base, 32)), None, None),
        (query(HashType::Pdq, flip(&base, 32)), Some(32), Some(32)),
        (query(HashType::Pdq, flip(&base, 64)), Some(64), Some(64)),
        (query(HashType::Pdq, flip(&base, 65)), Some(64), None),
        (query(HashType::Pdq, vec![0xff; 32]), None, None), // quality 20 < 50
    ];
    for (q, threshold, want) in cases {
        let answer = ask(&mut globex, vec![q.clone()], threshold)
            .await
            .expect("match");
        assert_eq!(answer.results.len(), 1);
        let got: Vec<u32> = answer.results[0]
            .matches
            .iter()
            .map(|m| m.distance)
            .collect();
        assert_eq!(
            got,
            want.into_iter().collect::<Vec<_>>(),
            "{q:?} at {threshold:?}"
        );
    }
    // Provenance of a hit.
    let answer = ask(
        &mut globex,
        vec![query(HashType::Pdq, flip(&base, 3))],
        None,
    )
    .await
    .expect("match");
    let hit = &answer.results[0].matches[0];
    assert_eq!(hit.issuer, "acme");
    assert_eq!(hit.statement_id, receipt.statement_id);
    assert_eq!(hit.seq, receipt.seq);
    assert_eq!(
        hit.value,
        base.to_vec(),
        "the matched neighbour, not the query"
    );
    assert_eq!(hit.labels, vec!["pdq-test".to_string()]);
    assert_eq!(hit.quality, Some(90));
    assert_eq!(hit.received_at_ms, receipt.received_at_ms);
    // A lower minimum quality lets the low-quality hash match.
    let lenient = globex
        .hub
        .r#match(pb::MatchRequest {
            queries: vec![query(HashType::Pdq, vec![0xff; 32])],
            pdq_threshold: None,
            min_quality: Some(0),
            states: Vec::new(),
            ..Default::default()
        })
        .await
        .expect("match")
        .into_inner();
    assert_eq!(lenient.results[0].matches.len(), 1);
    // Empty batch: empty answer.
    let empty = ask(&mut globex, vec![], None).await.expect("empty");
    assert!(empty.results.is_empty());
}

#[tokio::test]
async fn match_bad_input_names_the_query() {
    let t = TestHub::start().await;
    let mut globex = t.client("globex").await;
    let ok = query(HashType::Md5, vec![0; 16]);
    let cases: Vec<(Vec<pb::MatchQuery>, Option<u32>, &str)> = vec![
        (
            vec![ok.clone(), query(HashType::Pdq, vec![0; 31])],
            None,
            "queries[1]: a pdq hash must be 32 bytes, got 31",
        ),
        (
            vec![pb::MatchQuery {
                r#type: 0,
                value: vec![0; 16],
                quality: None,
            }],
            None,
            "queries[0].type: unknown or unspecified",
        ),
        (
            vec![pb::MatchQuery {
                r#type: 99,
                value: vec![0; 16],
                quality: None,
            }],
            None,
            "queries[0].type",
        ),
        (
            vec![pb::MatchQuery {
                quality: Some(101),
                ..query(HashType::Pdq, vec![0; 32])
            }],
            None,
            "queries[0]: quality must be 0..=100",
        ),
        (
            vec![ok.clone()],
            Some(65),
            "pdq_threshold must be 0..=64 bits, got 65",
        ),
        (
            vec![ok.clone(); 10_001],
            None,
            "queries: at most 10000 per request, got 10001",
        ),
    ];
    for (queries, threshold, needle) in cases {
        let err = ask(&mut globex, queries, threshold)
            .await
            .expect_err(needle);
        assert_eq!(err.code(), Code::InvalidArgument, "{needle}");
        assert!(
            err.message().contains(needle),
            "{:?} should contain {needle:?}",
            err.message()
        );
    }
    // The unregistered certificate holder may not match.
    let mut outsider = t.client("outsider").await;
    let err = ask(&mut outsider, vec![ok], None)
        .await
        .expect_err("outsider");
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn index_follows_submissions_and_is_rebuilt_at_start_up() {
    let mut t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let mut globex = t.client("globex").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut shared = Vec::new();
    // Every acknowledged submission is matchable by the very next query (read-your-writes).
    for round in 0..20 {
        let hashes: Vec<[u8; 32]> = (0..50).map(|_| rng.r#gen()).collect();
        let set = HashSet {
            expires_at_ms: None,
            description: format!("round {round}"),
            entries: hashes.iter().map(|h| pdq_entry(*h, 100)).collect(),
        };
        acme.submit(sign_new(&id("acme"), &t.key("acme"), Body::HashSet(set)))
            .await
            .expect("submit");
        shared.extend(hashes);
        let probe = shared[rng.gen_range(0..shared.len())];
        let answer = ask(
            &mut globex,
            vec![query(HashType::Pdq, flip(&probe, 4))],
            None,
        )
        .await
        .expect("match");
        assert!(
            answer.results[0]
                .matches
                .iter()
                .any(|m| m.value == probe.to_vec() && m.distance == 4),
            "round {round}: the hash just shared is found"
        );
    }
    // Same answers as a brute-force scan, for planted and random queries.
    let items: Vec<(PdqHash, u32)> = shared
        .iter()
        .enumerate()
        .map(|(i, h)| (PdqHash(*h), i as u32))
        .collect();
    let mut queries: Vec<[u8; 32]> = (0..20).map(|_| rng.r#gen()).collect();
    for i in 0..20 {
        let mut near = flip(&shared[i * 37], i + 20);
        near.truncate(32);
        queries.push(near.try_into().expect("32"));
    }
    let check = |answer: &pb::MatchResponse, threshold: u32| {
        for (q, result) in queries.iter().zip(&answer.results) {
            let want: Vec<u32> = brute_force(&items, &PdqHash(*q), threshold)
                .iter()
                .map(|m| m.distance)
                .collect();
            let got: Vec<u32> = result.matches.iter().map(|m| m.distance).collect();
            assert_eq!(got, want, "threshold {threshold}");
        }
    };
    let batch: Vec<pb::MatchQuery> = queries
        .iter()
        .map(|q| query(HashType::Pdq, q.to_vec()))
        .collect();
    for threshold in [0, 16, 31, 32, 64] {
        check(
            &ask(&mut globex, batch.clone(), Some(threshold))
                .await
                .expect("match"),
            threshold,
        );
    }
    // Restart the server on the same store: the index is rebuilt from the log.
    t.hub.take().expect("running").stop().await.expect("stop");
    let hub = coalition_hub::server::spawn(
        "127.0.0.1:0",
        t.store.clone(),
        t.certs.hub_tls().expect("tls"),
        t.options.clone(),
    )
    .await
    .expect("restart");
    t.addr = hub.addr.to_string();
    t.hub = Some(hub);
    let mut globex = t.client("globex").await;
    let answer = ask(&mut globex, batch, Some(31))
        .await
        .expect("match after restart");
    assert_eq!(answer.indexed_log_size, t.base + 20);
    check(&answer, 31);
}

#[test]
fn offline_match_cli_against_a_local_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let base = [0x33u8; 32];
    std::fs::write(
        d.join("index.csv"),
        format!(
            "type,hash,labels,quality\npdq,{},A1,90\nmd5,{},B1\npdq,{},A2,90\n",
            hex::encode(base),
            "ab".repeat(16),
            hex::encode([0xcc; 32])
        ),
    )
    .expect("index");
    // ThreatExchange-style queries: one 64-hex PDQ hash per line; plus a typed md5 row.
    std::fs::write(
        d.join("queries.txt"),
        format!(
            "{}\n{}\nmd5,{}\n",
            hex::encode(flip(&base, 10)),
            hex::encode([0x0f; 32]),
            "ab".repeat(16)
        ),
    )
    .expect("queries");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_coalition"))
            .current_dir(d)
            .args(args)
            .output()
            .expect("run")
    };
    let out = run(&["match", "--index", "index.csv", "--queries", "queries.txt"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["query_line"], 1);
    assert_eq!(lines[0]["distance"], 10);
    assert_eq!(lines[0]["match"], hex::encode(base));
    assert_eq!(lines[0]["source"]["index_line"], 2);
    assert_eq!(lines[1]["query_line"], 3);
    assert_eq!(lines[1]["distance"], 0);
    // Tighter threshold: the near-duplicate no longer matches. CSV output.
    let out = run(&[
        "match",
        "--index",
        "index.csv",
        "--queries",
        "queries.txt",
        "--threshold",
        "9",
        "--format",
        "csv",
    ]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(csv.lines().count(), 2, "header + md5 hit: {csv}");
    // Bad input: one readable line naming the line number, exit 1.
    std::fs::write(
        d.join("bad.txt"),
        format!("{}\nzz{}\n", hex::encode(base), "0".repeat(62)),
    )
    .expect("bad");
    let out = run(&["match", "--index", "index.csv", "--queries", "bad.txt"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: bad.txt:2:"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let out = run(&[
        "match",
        "--index",
        "index.csv",
        "--queries",
        "queries.txt",
        "--threshold",
        "65",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pdq_threshold must be 0..=64"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_concurrent_submissions_see_every_acknowledged_hash() {
    use std::sync::{Arc, Mutex};
    let t = TestHub::start().await;
    let acked: Arc<Mutex<Vec<[u8; 32]>>> = Arc::new(Mutex::new(Vec::new()));
    let mut acme = t.client("acme").await;
    let key = t.key("acme");
    let writer_acked = acked.clone();
    let writer = tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(99);
        for round in 0..40 {
            let hashes: Vec<[u8; 32]> = (0..100).map(|_| rng.r#gen()).collect();
            let set = HashSet {
                expires_at_ms: None,
                description: format!("concurrent {round}"),
                entries: hashes.iter().map(|h| pdq_entry(*h, 100)).collect(),
            };
            acme.submit(sign_new(&id("acme"), &key, Body::HashSet(set)))
                .await
                .expect("submit");
            writer_acked.lock().expect("lock").extend(hashes);
        }
    });
    let mut globex = t.client("globex").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(100);
    let mut checked = 0;
    while !writer.is_finished() || checked == 0 {
        // Everything acknowledged before this query is sent must be found by it.
        let snapshot = acked.lock().expect("lock").clone();
        if snapshot.is_empty() {
            tokio::task::yield_now().await;
            continue;
        }
        let probes: Vec<[u8; 32]> = (0..20)
            .map(|_| snapshot[rng.gen_range(0..snapshot.len())])
            .collect();
        let batch = probes
            .iter()
            .map(|p| query(HashType::Pdq, flip(p, 6)))
            .collect();
        let answer = ask(&mut globex, batch, None).await.expect("match");
        for (probe, result) in probes.iter().zip(&answer.results) {
            assert!(
                result
                    .matches
                    .iter()
                    .any(|m| m.value == probe.to_vec() && m.distance == 6),
                "an acknowledged hash was missing from a later answer"
            );
        }
        checked += 1;
    }
    writer.await.expect("writer");
    assert!(
        checked > 1,
        "queries ran while submissions were in flight ({checked})"
    );
}
