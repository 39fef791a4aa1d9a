//! vPDQ video hashes end to end over real mutual TLS: submitted as hash-set entries, matched
//! by the frame rule (clips, partial videos, distance, quality, both percentages settable),
//! refused when malformed, dropped on retraction, kept across a restart from the match
//! snapshot, and `coalition match` offline on a reference vPDQ file read by `read_vpdq`.

use crate::common;

use coalition_hub::client::sign_new;
use coalition_hub::matching::PdqHash;
use coalition_hub::matching::vpdq::{Frame, VpdqHash};
use coalition_hub::pb;
use coalition_hub::statement::{Body, HashEntry, HashSet, HashType, Label};
use common::lifecycle::{hub_with_match_snapshot, retract, wait_for_match_snapshot};
use common::{TestHub, id};
use rand::{Rng, SeedableRng};
use tonic::Code;

/// `n` random frame hashes from `seed`.
fn hashes(seed: u64, n: usize) -> Vec<PdqHash> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| PdqHash(rng.r#gen())).collect()
}

/// A video of these frame hashes, one a second, all of `quality`.
fn video(frames: &[PdqHash], quality: u8) -> VpdqHash {
    VpdqHash::new(
        frames
            .iter()
            .enumerate()
            .map(|(i, hash)| Frame {
                number: i as u32,
                timestamp_ms: i as u32 * 1000,
                quality,
                hash: *hash,
            })
            .collect(),
    )
    .expect("valid video")
}

/// `hash` with `bits` bits flipped.
fn flipped(hash: &PdqHash, bits: usize) -> PdqHash {
    let mut v = hash.0;
    for b in 0..bits {
        v[b * 3 % 32] ^= 1 << (b % 8);
    }
    PdqHash(v)
}

fn entry(v: &VpdqHash) -> HashEntry {
    HashEntry {
        hash_type: HashType::Vpdq,
        value: v.to_bytes(),
        quality: None,
        labels: vec![Label::Tag("video".into())],
    }
}

async fn ask(
    client: &mut coalition_hub::client::Client,
    query: &VpdqHash,
    tune: impl FnOnce(&mut pb::MatchRequest),
) -> Result<Vec<pb::HashMatch>, tonic::Status> {
    let mut request = pb::MatchRequest {
        queries: vec![pb::MatchQuery {
            r#type: pb::HashType::Vpdq as i32,
            value: query.to_bytes(),
            quality: None,
        }],
        ..Default::default()
    };
    tune(&mut request);
    let answer = client.hub.r#match(request).await?.into_inner();
    Ok(answer.results.into_iter().flat_map(|r| r.matches).collect())
}

/// (query share, compared share) of each match, in basis points.
fn scores(matches: &[pb::HashMatch]) -> Vec<(u32, u32)> {
    matches
        .iter()
        .map(|m| {
            let s = m.vpdq.expect("a vpdq match carries its score");
            (s.query_basis_points, s.compared_basis_points)
        })
        .collect()
}

#[tokio::test]
async fn videos_match_by_the_frame_rule_and_bad_ones_are_refused() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let a = hashes(1, 10);
    let b = hashes(2, 10);
    let set = HashSet {
        expires_at_ms: None,
        description: "two videos".into(),
        entries: vec![entry(&video(&a, 90)), entry(&video(&b, 90))],
    };
    let receipt = acme
        .submit(sign_new(&id("acme"), &t.key("acme"), Body::HashSet(set)))
        .await
        .expect("submit")
        .receipt
        .expect("receipt");
    let mut globex = t.client("globex").await;

    // The same video: both sides wholly matched; the provenance is the entry's.
    let found = ask(&mut globex, &video(&a, 90), |_| {})
        .await
        .expect("match");
    assert_eq!(scores(&found), vec![(10_000, 10_000)]);
    assert_eq!(found[0].statement_id, receipt.statement_id);
    assert_eq!(found[0].hash_index, 0);
    assert_eq!(found[0].r#type, pb::HashType::Vpdq as i32);
    assert_eq!(
        found[0].value,
        video(&a, 90).to_bytes(),
        "the indexed video"
    );
    assert_eq!(found[0].labels, vec!["video".to_string()]);

    // A clip inside a longer upload: all of the indexed video, 10 of 15 query frames.
    let padded: Vec<PdqHash> = a.iter().copied().chain(hashes(3, 5)).collect();
    let found = ask(&mut globex, &video(&padded, 90), |_| {})
        .await
        .expect("match");
    assert_eq!(scores(&found), vec![(6_666, 10_000)]);
    // ... unless the query side must be matched to 80% too.
    let found = ask(&mut globex, &video(&padded, 90), |r| {
        r.vpdq_query_percent = Some(80)
    })
    .await
    .expect("match");
    assert!(found.is_empty(), "{found:?}");

    // Half of the indexed video is below the default 80%, enough at 50%.
    let half = video(&a[..5], 90);
    assert!(
        ask(&mut globex, &half, |_| {})
            .await
            .expect("match")
            .is_empty()
    );
    let found = ask(&mut globex, &half, |r| r.vpdq_compared_percent = Some(50))
        .await
        .expect("match");
    assert_eq!(scores(&found), vec![(10_000, 5_000)]);

    // Re-encoded frames (10 bits off each) match at the default distance, not at 5 bits.
    let reencoded: Vec<PdqHash> = a.iter().map(|h| flipped(h, 10)).collect();
    let found = ask(&mut globex, &video(&reencoded, 90), |_| {})
        .await
        .expect("match");
    assert_eq!(scores(&found), vec![(10_000, 10_000)]);
    let found = ask(&mut globex, &video(&reencoded, 90), |r| {
        r.pdq_threshold = Some(5)
    })
    .await
    .expect("match");
    assert!(found.is_empty(), "{found:?}");

    // Frames below the minimum quality take no part.
    let dull = video(&a, 20);
    assert!(
        ask(&mut globex, &dull, |_| {})
            .await
            .expect("match")
            .is_empty()
    );
    let found = ask(&mut globex, &dull, |r| r.min_quality = Some(10))
        .await
        .expect("match");
    assert_eq!(scores(&found), vec![(10_000, 10_000)]);

    // An unrelated video matches nothing; the other indexed video is found on its own.
    assert!(
        ask(&mut globex, &video(&hashes(4, 10), 90), |_| {})
            .await
            .expect("match")
            .is_empty()
    );
    let found = ask(&mut globex, &video(&b, 90), |_| {})
        .await
        .expect("match");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].hash_index, 1);

    // Bad queries and options: INVALID_ARGUMENT naming what is wrong.
    let bad = globex
        .hub
        .r#match(pb::MatchRequest {
            queries: vec![pb::MatchQuery {
                r#type: pb::HashType::Vpdq as i32,
                value: vec![0; 40],
                quality: None,
            }],
            ..Default::default()
        })
        .await
        .expect_err("40 bytes are no frame");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("queries[0]"), "{}", bad.message());
    assert!(
        bad.message().contains("41-byte frames"),
        "{}",
        bad.message()
    );
    let bad = ask(&mut globex, &video(&a, 90), |r| {
        r.vpdq_compared_percent = Some(101)
    })
    .await
    .expect_err("101%");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message()
            .contains("vpdq_compared_percent must be 0..=100"),
        "{}",
        bad.message()
    );

    // A submitted entry whose frames go backwards is refused, naming the entry; nothing stored.
    let mut backwards = video(&a, 90).to_bytes();
    backwards[41 + 3] = 0; // frame 1 numbered 0, after frame 0
    let wire = pb::StatementBody {
        body: Some(pb::statement_body::Body::HashSet(pb::HashSet {
            entries: vec![pb::HashEntry {
                r#type: pb::HashType::Vpdq as i32,
                value: backwards,
                quality: None,
                labels: Vec::new(),
            }],
            ..Default::default()
        })),
    };
    let refused = acme
        .submit(common::sign_wire("acme", &wire, &t.key("acme")))
        .await
        .expect_err("frames out of order");
    let text = refused.to_string();
    assert!(text.contains("entries[0].value"), "{text}");
    assert!(text.contains("frame numbers must increase"), "{text}");
}

#[tokio::test]
async fn a_retracted_video_stops_matching_and_videos_survive_a_restart_from_the_snapshot() {
    let (t, _dir, snapshot) = hub_with_match_snapshot().await;
    let a = hashes(11, 12);
    let b = hashes(12, 12);
    let set = HashSet {
        expires_at_ms: None,
        description: String::new(),
        entries: vec![entry(&video(&a, 80)), entry(&video(&b, 80))],
    };
    let (statement, _) = common::lifecycle::logged(
        &t,
        "acme",
        sign_new(&id("acme"), &t.key("acme"), Body::HashSet(set)),
    )
    .await;
    retract(&t, "acme", statement, &[0], "wrong video").await;
    let mut globex = t.client("globex").await;
    assert!(
        ask(&mut globex, &video(&a, 80), |_| {})
            .await
            .expect("match")
            .is_empty()
    );
    assert_eq!(
        ask(&mut globex, &video(&b, 80), |_| {})
            .await
            .expect("match")
            .len(),
        1
    );
    wait_for_match_snapshot(&snapshot).await;
    let t = TestHub::resume(t.stop().await).await;
    let mut globex = t.client("globex").await;
    assert!(
        ask(&mut globex, &video(&a, 80), |_| {})
            .await
            .expect("match")
            .is_empty()
    );
    let found = ask(&mut globex, &video(&b, 80), |_| {})
        .await
        .expect("match");
    assert_eq!(scores(&found), vec![(10_000, 10_000)]);
}

#[tokio::test]
async fn offline_match_reads_reference_vpdq_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = hashes(21, 8);
    let indexed = video(&a, 90);
    // The index: a hash list line as sync or `read_vpdq` writes it.
    let from_file = dir.path().join("known.vpdq");
    std::fs::write(&from_file, indexed.to_reference()).expect("write");
    let entry =
        coalition_hub::formats::read_vpdq(&from_file, &["video".into()]).expect("reference file");
    assert_eq!(entry.value, indexed.to_bytes());
    // `coalition hash --vpdq` writes the same entry as a hash-list row.
    let index = dir.path().join("index.jsonl");
    let hashed = std::process::Command::new(env!("CARGO_BIN_EXE_coalition"))
        .args(["hash", "--label", "video", "--vpdq"])
        .arg(&from_file)
        .arg("--out")
        .arg(&index)
        .output()
        .expect("run coalition hash");
    assert!(hashed.status.success(), "{hashed:?}");
    let row: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&index).expect("read").trim())
            .expect("one JSON row");
    assert_eq!(row["type"], "vpdq");
    assert_eq!(row["hash"], hex::encode(&entry.value));
    assert_eq!(row["labels"], serde_json::json!(["video"]));
    let padded: Vec<PdqHash> = a.iter().copied().chain(hashes(22, 8)).collect();
    let queries = dir.path().join("queries.jsonl");
    std::fs::write(
        &queries,
        format!(
            "{{\"type\":\"vpdq\",\"hash\":\"{}\"}}\n",
            hex::encode(video(&padded, 90).to_bytes())
        ),
    )
    .expect("write");
    let printed = common::lifecycle::offline_match(&index, &queries).await;
    let line: serde_json::Value =
        serde_json::from_str(printed.trim()).expect("one JSON match line");
    assert_eq!(line["query_type"], "vpdq");
    assert_eq!(line["vpdq"]["query_percent"], 50.0);
    assert_eq!(line["vpdq"]["compared_percent"], 100.0);

    // A malformed reference file names the line and the reason.
    let broken = dir.path().join("broken.vpdq");
    std::fs::write(&broken, format!("0,90,{},0.000\n1,90,nothex,1.000\n", a[0])).expect("write");
    let err = coalition_hub::formats::read_vpdq(&broken, &[]).expect_err("line 2 is bad");
    let text = err.to_string();
    assert!(text.contains("broken.vpdq:2:"), "{text}");
    assert!(text.contains("pdq hash"), "{text}");
    // ... and `coalition hash` prints that one line, hashes the rest, and exits 1.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coalition"))
        .args(["hash", "--vpdq"])
        .arg(&broken)
        .arg("--vpdq")
        .arg(&from_file)
        .output()
        .expect("run coalition hash");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.vpdq:2: pdq hash"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}
