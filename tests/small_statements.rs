//! Many small statements at once (issue 10, item 5) over the real server and real clients:
//! concurrent Submits from four connections are each stored exactly once at gap-free positions;
//! `SubmitBatch` acknowledges or refuses each envelope on its own, in order, exactly as Submit
//! would; its limits are refused with the documented code and a message naming the limit.

use crate::common;

use coalition_hub::client::{Client, ClientError};
use coalition_hub::governance;
use coalition_hub::pb;
use coalition_hub::server::{MAX_BATCH_ENVELOPES, MAX_BATCH_REQUEST_BYTES};
use coalition_hub::settings::{QuotaLimits, Quotas, Section};
use common::{TestHub, id, replay, sync_all};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::Code;

/// A signed set of one sha256 hash by `member`: the shape of a risk signal or an opinion.
fn single(t: &TestHub, member: &str, seed: u64) -> pb::Envelope {
    t.hash_set(member, seed, 1)
}

/// Every entry of the log, replayed by a member's own replica from the genesis: every rule
/// (gap-free positions, no statement twice, signatures) checked.
async fn replayed_ids(t: &TestHub) -> Vec<Vec<u8>> {
    let mut client = t.client("auditor").await;
    let (entries, next) = sync_all(&mut client, pb::SyncRequest::default()).await;
    assert_eq!(next, t.store.log_size());
    let ids: Vec<Vec<u8>> = entries.iter().map(|e| e.statement_id.clone()).collect();
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (0..t.store.log_size()).collect::<Vec<_>>(),
        "gap-free"
    );
    replay(entries).expect("the log replays under every rule");
    ids
}

fn code(e: &ClientError) -> Code {
    match e {
        ClientError::Status(s) => s.code(),
        other => panic!("not a status: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_from_four_connections_are_stored_once_at_gap_free_positions() {
    const PER_MEMBER: u64 = 400;
    const IN_FLIGHT: usize = 64;
    let t = TestHub::start().await;
    // Each statement is submitted twice, from two different connections at about the same
    // time: one is logged, the other answered with the original receipt.
    let mut queues = HashMap::new();
    for member in ["acme", "globex"] {
        let mut work = Vec::new();
        for seed in 0..PER_MEMBER {
            let envelope = single(&t, member, seed);
            work.push(envelope.clone());
            work.push(envelope);
        }
        queues.insert(member, Arc::new(Mutex::new(work.into_iter())));
    }
    let mut tasks = tokio::task::JoinSet::new();
    // The issuer must be the caller: each member's two connections race for its copies.
    for member in ["acme", "acme", "globex", "globex"] {
        let client = t.client(member).await;
        for _ in 0..IN_FLIGHT {
            let (mut client, work) = (client.clone(), queues[member].clone());
            tasks.spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let next = work.lock().expect("lock").next();
                    let Some(envelope) = next else { break };
                    answers.push(client.submit(envelope).await.expect("submit"));
                }
                answers
            });
        }
    }
    let mut by_id: HashMap<Vec<u8>, Vec<pb::SubmitResponse>> = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        for r in done.expect("task") {
            let id = r.receipt.as_ref().expect("receipt").statement_id.clone();
            by_id.entry(id).or_default().push(r);
        }
    }
    let n = 2 * PER_MEMBER;
    assert_eq!(by_id.len() as u64, n);
    let mut seqs = Vec::new();
    for answers in by_id.values() {
        assert_eq!(answers.len(), 2);
        let new: Vec<_> = answers.iter().filter(|r| !r.already_present).collect();
        assert_eq!(new.len(), 1, "exactly one copy logged: {answers:?}");
        assert_eq!(
            answers[0].receipt, answers[1].receipt,
            "the same receipt twice"
        );
        seqs.push(new[0].receipt.as_ref().expect("receipt").seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (t.base..t.base + n).collect::<Vec<_>>());
    assert_eq!(t.store.log_size(), t.base + n);
    let ids = replayed_ids(&t).await;
    for (seq, id) in ids.iter().enumerate().skip(t.base as usize) {
        let answers = &by_id[id];
        assert_eq!(
            answers[0].receipt.as_ref().expect("receipt").seq,
            seq as u64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_envelope_in_order_as_submit_would() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let stored_before = single(&t, "acme", 1);
    let earlier = acme
        .submit(stored_before.clone())
        .await
        .expect("stored before");
    let fresh = single(&t, "acme", 2);
    let mut bad_signature = single(&t, "acme", 3);
    bad_signature.signatures[0].sig[0] ^= 1;
    let not_ours = single(&t, "globex", 4);
    let malformed = pb::Envelope {
        payload_type: bad_signature.payload_type.clone(),
        payload: bytes::Bytes::from_static(b"\xff\xff not a header"),
        body: bytes::Bytes::new(),
        signatures: bad_signature.signatures.clone(),
    };
    let later = single(&t, "acme", 5);
    let size = t.store.log_size();
    let batch = vec![
        fresh.clone(),
        bad_signature.clone(),
        fresh.clone(),
        not_ours.clone(),
        stored_before.clone(),
        malformed.clone(),
        later.clone(),
    ];
    let outcomes = acme.submit_batch(batch).await.expect("batch");
    let codes: Vec<Code> = outcomes.iter().map(|o| Code::from(o.code)).collect();
    assert_eq!(
        codes,
        [
            Code::Ok,
            Code::InvalidArgument,
            Code::Ok,
            Code::PermissionDenied,
            Code::Ok,
            Code::InvalidArgument,
            Code::Ok
        ]
    );
    let response = |i: usize| {
        outcomes[i]
            .response
            .clone()
            .expect("an OK outcome has a response")
    };
    assert!(!response(0).already_present);
    assert_eq!(response(0).receipt.expect("r").seq, size);
    assert!(response(2).already_present, "a duplicate in the batch");
    assert_eq!(response(2).receipt, response(0).receipt);
    assert!(response(4).already_present, "stored by an earlier Submit");
    assert_eq!(response(4).receipt, earlier.receipt);
    assert!(!response(6).already_present);
    assert_eq!(response(6).receipt.expect("r").seq, size + 1);
    assert_eq!(t.store.log_size(), size + 2, "only the two new statements");
    // Each refusal is what Submit says of that envelope alone, and a refused one stored nothing.
    for (i, envelope) in [(1, bad_signature), (3, not_ours), (5, malformed)] {
        assert!(outcomes[i].response.is_none());
        assert_eq!(outcomes[i].retry_after_s, 0);
        let alone = acme.submit(envelope).await.expect_err("refused alone too");
        let ClientError::Status(status) = alone else {
            panic!("{alone}")
        };
        assert_eq!(outcomes[i].code, status.code() as i32);
        assert_eq!(outcomes[i].message, status.message());
    }
    assert_eq!(t.store.log_size(), size + 2);
    // Idempotent: the same batch again logs nothing new and gives the same receipts.
    let again = acme
        .submit_batch(vec![fresh, later])
        .await
        .expect("batch again");
    assert!(again.iter().all(|o| o.code == 0));
    assert!(
        again
            .iter()
            .all(|o| o.response.as_ref().is_some_and(|r| r.already_present))
    );
    assert_eq!(
        again[0].response.as_ref().expect("r").receipt,
        response(0).receipt
    );
    assert_eq!(t.store.log_size(), size + 2);
    replayed_ids(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_limits_are_refused_naming_the_limit_and_store_nothing() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let size = t.store.log_size();

    let err = acme.submit_batch(Vec::new()).await.expect_err("empty");
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(err.to_string().contains("envelopes: empty"), "{err}");

    let too_many: Vec<pb::Envelope> = (0..=MAX_BATCH_ENVELOPES as u64)
        .map(|seed| single(&t, "acme", seed))
        .collect();
    let err = acme.submit_batch(too_many).await.expect_err("too many");
    assert_eq!(code(&err), Code::InvalidArgument);
    assert!(
        err.to_string()
            .contains("at most 1000 per SubmitBatch, got 1001; split the batch"),
        "{err}"
    );
    assert_eq!(t.store.log_size(), size, "nothing stored");

    // Larger than the batch's request limit: refused by the request gate before it is read,
    // whatever the envelopes hold.
    let blob = bytes::Bytes::from(vec![7u8; 5 * 1024 * 1024]);
    let huge: Vec<pb::Envelope> = (0..4)
        .map(|_| pb::Envelope {
            payload_type: String::new(),
            payload: blob.clone(),
            body: bytes::Bytes::new(),
            signatures: Vec::new(),
        })
        .collect();
    let err = acme.submit_batch(huge).await.expect_err("too large");
    assert_eq!(code(&err), Code::ResourceExhausted);
    assert!(
        err.to_string().contains(&format!(
            "/coalition.v1.Hub/SubmitBatch is larger than its limit of {MAX_BATCH_REQUEST_BYTES} bytes (max_request_bytes)"
        )),
        "{err}"
    );
    // An auditor never writes, in a batch or not.
    let err = t
        .client("auditor")
        .await
        .submit_batch(vec![single(&t, "acme", 9)])
        .await
        .expect_err("auditor");
    assert_eq!(code(&err), Code::PermissionDenied);
    assert_eq!(t.store.log_size(), size, "nothing stored");
    // The connection still serves.
    let ok = acme
        .submit_batch(vec![single(&t, "acme", 10)])
        .await
        .expect("a batch within the limits");
    assert_eq!(ok[0].code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_submission_quota_refuses_envelopes_of_a_batch_one_by_one_with_retry_after() {
    let t = TestHub::start().await;
    let policy = Quotas {
        default_limits: QuotaLimits {
            submissions_per_minute: Some(3),
            ..Default::default()
        },
        ..Default::default()
    };
    let settings = governance::settings(
        &id("admin"),
        &t.key("admin"),
        Section::Quotas(policy),
        "fair use",
    );
    t.client("admin")
        .await
        .submit(settings)
        .await
        .expect("quotas set");
    let size = t.store.log_size();
    let mut acme: Client = t.client("acme").await;
    let batch: Vec<pb::Envelope> = (0..5).map(|seed| single(&t, "acme", seed)).collect();
    let outcomes = acme.submit_batch(batch).await.expect("batch");
    let codes: Vec<Code> = outcomes.iter().map(|o| Code::from(o.code)).collect();
    assert_eq!(
        codes,
        [
            Code::Ok,
            Code::Ok,
            Code::Ok,
            Code::ResourceExhausted,
            Code::ResourceExhausted
        ]
    );
    for refused in &outcomes[3..] {
        assert!(
            refused
                .message
                .contains("may have 3 statements submitted per minute"),
            "{refused:?}"
        );
        assert!((1..=20).contains(&refused.retry_after_s), "{refused:?}");
        assert!(refused.response.is_none());
    }
    assert_eq!(
        t.store.log_size(),
        size + 3,
        "the refused ones stored nothing"
    );
}
