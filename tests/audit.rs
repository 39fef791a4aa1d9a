//! The Audit service over real mutual TLS: checkpoints, inclusion and consistency proofs,
//! entry ranges, bad input, persistence and access control.

use crate::common;

use coalition_hub::client::{Client, hashes};
use coalition_hub::governance::admission;
use coalition_hub::log::{
    self, CheckpointSigner, LeafIndex, ProofCheckError, SignedCheckpoint, TreeSize,
    verify_consistency_between_checkpoints, verify_inclusion_in_checkpoint,
};
use coalition_hub::membership::{Action, Role};
use coalition_hub::pb;
use coalition_hub::pb::get_inclusion_proof_request::Leaf;
use coalition_hub::server::CheckpointPolicy;
use coalition_hub::statement::StatementId;
use coalition_hub::store::leaf_data;
use common::{ORIGIN, TestHub, id};
use std::time::Duration;
use tonic::Code;

/// The size of the checkpoint a new hub publishes at start-up: the genesis statement only (it is
/// published before the test hub admits its members, so it never covers `t.base` entries).
const STARTUP_SIZE: u64 = 1;

/// A policy that publishes only at start-up and on demand, so tests control every checkpoint.
fn on_demand() -> CheckpointPolicy {
    CheckpointPolicy {
        max_entries: u64::MAX,
        max_delay: Duration::from_secs(3600),
    }
}

/// Submits `n` distinct hash sets as acme; returns (envelope, receipt) pairs.
async fn submit_sets(
    t: &TestHub,
    c: &mut Client,
    seed: u64,
    n: u64,
) -> Vec<(pb::Envelope, pb::Receipt)> {
    let mut out = Vec::new();
    for i in 0..n {
        let env = t.hash_set("acme", seed * 1000 + i, 2);
        let resp = c.submit(env.clone()).await.expect("submit");
        out.push((env, resp.receipt.expect("receipt")));
    }
    out
}

async fn get_checkpoint(
    c: &mut Client,
    tree_size: Option<u64>,
    refresh: bool,
) -> Result<pb::SignedCheckpoint, tonic::Status> {
    c.audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size, refresh })
        .await
        .map(|r| r.into_inner())
}

async fn inclusion(
    c: &mut Client,
    leaf: Leaf,
    tree_size: u64,
) -> Result<pb::InclusionProof, tonic::Status> {
    c.audit
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            leaf: Some(leaf),
            tree_size,
        })
        .await
        .map(|r| r.into_inner())
}

async fn consistency(
    c: &mut Client,
    old_size: u64,
    new_size: u64,
) -> Result<pb::ConsistencyProof, tonic::Status> {
    c.audit
        .get_consistency_proof(pb::GetConsistencyProofRequest { old_size, new_size })
        .await
        .map(|r| r.into_inner())
}

async fn entries(
    c: &mut Client,
    start: u64,
    end: u64,
) -> Result<Vec<pb::SyncEntry>, tonic::Status> {
    let mut stream = c
        .audit
        .get_entries(pb::GetEntriesRequest { start, end })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.message().await? {
        out.push(e);
    }
    Ok(out)
}

fn receipt_leaf(r: &pb::Receipt) -> [u8; 40] {
    let id = StatementId::from_slice(&r.statement_id).expect("32-byte id");
    leaf_data(&id, r.received_at_ms)
}

#[tokio::test]
async fn checkpoint_is_published_after_submissions_and_verifies_with_the_hub_key() {
    // Publish after every 3 entries or 200 ms of growth.
    let t = TestHub::start_with_policy(CheckpointPolicy {
        max_entries: 3,
        max_delay: Duration::from_millis(200),
    })
    .await;
    let mut acme = t.client("acme").await;
    submit_sets(&t, &mut acme, 1, 5).await;
    let size = t.base + 5;
    // Without asking for a refresh, the background publisher catches up.
    let mut cp = get_checkpoint(&mut acme, None, false)
        .await
        .expect("checkpoint");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cp.tree_size < size {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint covers {size} entries: {}",
            cp.tree_size
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        cp = get_checkpoint(&mut acme, None, false)
            .await
            .expect("checkpoint");
    }
    assert_eq!(cp.tree_size, size);
    let signed = SignedCheckpoint::verify(&cp.note, &t.checkpoint_key).expect("verifies");
    assert_eq!(signed.size(), TreeSize(size));
    assert_eq!(signed.root(), t.store.root(size).expect("root"));
    assert_eq!(cp.root_hash, signed.root().0.to_vec());
    // C2SP layout: origin, size, base64 root, blank line, one signature line by the origin.
    let lines: Vec<&str> = cp.note.split('\n').collect();
    assert_eq!(lines[0], ORIGIN);
    assert_eq!(lines[1], size.to_string());
    assert_eq!(lines[3], "");
    assert!(
        lines[4].starts_with(&format!("\u{2014} {ORIGIN} ")),
        "{}",
        lines[4]
    );
    assert_eq!(lines.len(), 6);
    // Another key with the same name does not verify it.
    let other = CheckpointSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[1; 32]))
        .expect("signer");
    assert!(SignedCheckpoint::verify(&cp.note, other.verifier_key()).is_err());
    // Every published checkpoint is listed, in order, each verifying, with consistent roots.
    let list = acme
        .audit
        .list_checkpoints(pb::ListCheckpointsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let sizes: Vec<u64> = list.checkpoints.iter().map(|c| c.tree_size).collect();
    assert_eq!(sizes.first(), Some(&STARTUP_SIZE), "{sizes:?}");
    assert_eq!(sizes.last(), Some(&size), "{sizes:?}");
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    for c in &list.checkpoints {
        let s = SignedCheckpoint::verify(&c.note, &t.checkpoint_key).expect("verifies");
        assert_eq!(s.root(), t.store.root(c.tree_size).expect("root"));
    }
}

#[tokio::test]
async fn inclusion_proofs_verify_for_every_receipt_by_index_and_by_id() {
    let t = TestHub::start_with_policy(on_demand()).await;
    let mut acme = t.client("acme").await;
    let mut globex = t.client("globex").await;
    let submitted = submit_sets(&t, &mut acme, 2, 12).await;
    let size = t.base + 12;
    for (i, (_, receipt)) in submitted.iter().enumerate() {
        assert_eq!(receipt.seq, t.base + i as u64);
    }
    // The start-up checkpoint holds only the genesis; nothing else was published yet.
    assert_eq!(
        get_checkpoint(&mut globex, None, false)
            .await
            .expect("cp")
            .tree_size,
        STARTUP_SIZE
    );
    // tree_size 0 publishes a checkpoint that holds the entry.
    let first = inclusion(&mut globex, Leaf::LeafIndex(t.base), 0)
        .await
        .expect("proof");
    assert_eq!(first.tree_size, size);
    let cp = first.checkpoint.clone().expect("checkpoint");
    assert_eq!(cp.tree_size, size);
    for (i, (_, receipt)) in submitted.iter().enumerate() {
        let data = receipt_leaf(receipt);
        for leaf in [
            Leaf::LeafIndex(receipt.seq),
            Leaf::StatementId(receipt.statement_id.clone()),
        ] {
            for tree_size in [0, size] {
                let p = inclusion(&mut globex, leaf.clone(), tree_size)
                    .await
                    .expect("proof");
                assert_eq!(p.leaf_index, receipt.seq);
                assert_eq!(p.tree_size, size);
                assert_eq!(p.statement_id, receipt.statement_id);
                assert_eq!(p.received_at_ms, receipt.received_at_ms);
                assert_eq!(p.leaf_data, data.to_vec());
                assert_eq!(p.leaf_hash, log::leaf_hash(&data).0.to_vec());
                let note = &p
                    .checkpoint
                    .as_ref()
                    .expect("checkpoint of the full size")
                    .note;
                let verified = verify_inclusion_in_checkpoint(
                    &t.checkpoint_key,
                    note,
                    &data,
                    LeafIndex(receipt.seq),
                    &hashes(&p.audit_path).expect("hashes"),
                )
                .expect("inclusion verifies");
                assert_eq!(verified.size(), TreeSize(size));
                // The proof does not verify for another leaf or another index.
                let wrong = verify_inclusion_in_checkpoint(
                    &t.checkpoint_key,
                    note,
                    &receipt_leaf(&submitted[(i + 1) % 12].1),
                    LeafIndex(receipt.seq),
                    &hashes(&p.audit_path).expect("hashes"),
                );
                assert!(matches!(wrong, Err(ProofCheckError::Inclusion(_))));
            }
        }
        // The client helper does the same from the receipt alone.
        let cp = globex
            .verify_receipt(&t.checkpoint_key, receipt)
            .await
            .expect("receipt verifies");
        assert_eq!(cp.size(), TreeSize(size));
    }
    // A tree size without a published checkpoint: the proof still verifies against the root.
    let (index, partial) = (t.base + 3, t.base + 7);
    let p = inclusion(&mut globex, Leaf::LeafIndex(index), partial)
        .await
        .expect("proof");
    assert!(p.checkpoint.is_none());
    log::verify_inclusion(
        &log::leaf_hash(&p.leaf_data),
        LeafIndex(index),
        TreeSize(partial),
        &hashes(&p.audit_path).expect("hashes"),
        &t.store.root(partial).expect("root"),
    )
    .expect("verifies against the partial tree's root");
    // A later entry: tree_size 0 publishes a newer checkpoint.
    let later = submit_sets(&t, &mut acme, 3, 1).await;
    let cp = globex
        .verify_receipt(&t.checkpoint_key, &later[0].1)
        .await
        .expect("verifies");
    assert_eq!(cp.size(), TreeSize(size + 1));
}

#[tokio::test]
async fn consistency_proofs_between_checkpoints_verify() {
    let t = TestHub::start_with_policy(on_demand()).await;
    let mut acme = t.client("acme").await;
    let startup = acme
        .checkpoint(&t.checkpoint_key, false)
        .await
        .expect("start-up checkpoint");
    assert_eq!(startup.size(), TreeSize(STARTUP_SIZE));
    let (a_size, b_size) = (t.base + 3, t.base + 8);
    submit_sets(&t, &mut acme, 4, 3).await;
    let a = acme
        .checkpoint(&t.checkpoint_key, true)
        .await
        .expect("refresh");
    assert_eq!(a.size(), TreeSize(a_size));
    // Refreshing without growth returns the same checkpoint.
    assert_eq!(
        acme.checkpoint(&t.checkpoint_key, true)
            .await
            .expect("refresh"),
        a
    );
    submit_sets(&t, &mut acme, 5, 5).await;
    let b = acme
        .checkpoint(&t.checkpoint_key, true)
        .await
        .expect("refresh");
    assert_eq!(b.size(), TreeSize(b_size));
    acme.verify_consistency(&t.checkpoint_key, &a, &b)
        .await
        .expect("a -> b consistent");
    acme.verify_consistency(&t.checkpoint_key, &startup, &b)
        .await
        .expect("start-up -> b consistent");
    acme.verify_consistency(&t.checkpoint_key, &b, &b)
        .await
        .expect("b -> b consistent");
    // The raw RPC carries both checkpoints when published.
    let p = consistency(&mut acme, a_size, b_size).await.expect("proof");
    let (old, new) = verify_consistency_between_checkpoints(
        &t.checkpoint_key,
        &p.old_checkpoint.expect("old").note,
        &p.new_checkpoint.expect("new").note,
        &hashes(&p.proof).expect("hashes"),
    )
    .expect("consistent");
    assert_eq!((old, new), (a.clone(), b.clone()));
    // Sizes without checkpoints: proof only, checked against the store's roots.
    let (old, new) = (t.base + 5, t.base + 7);
    let p = consistency(&mut acme, old, new).await.expect("proof");
    assert!(p.old_checkpoint.is_none() && p.new_checkpoint.is_none());
    log::verify_consistency(
        TreeSize(old),
        TreeSize(new),
        &t.store.root(old).expect("root"),
        &t.store.root(new).expect("root"),
        &hashes(&p.proof).expect("hashes"),
    )
    .expect("unpublished sizes consistent");
    // A tampered proof is rejected.
    let mut proof = hashes(
        &consistency(&mut acme, a_size, b_size)
            .await
            .expect("proof")
            .proof,
    )
    .expect("hashes");
    proof[0].0[0] ^= 1;
    assert!(matches!(
        verify_consistency_between_checkpoints(&t.checkpoint_key, a.note(), b.note(), &proof),
        Err(ProofCheckError::Consistency(_))
    ));
    // Fetch by size; page through the list.
    let got = get_checkpoint(&mut acme, Some(a_size), false)
        .await
        .expect("by size");
    assert_eq!(got.note, a.note());
    let page = acme
        .audit
        .list_checkpoints(pb::ListCheckpointsRequest {
            from_size: 0,
            limit: 2,
        })
        .await
        .expect("list")
        .into_inner();
    let sizes: Vec<u64> = page.checkpoints.iter().map(|c| c.tree_size).collect();
    assert_eq!(sizes, [STARTUP_SIZE, a_size]);
    assert_eq!(page.next_from_size, Some(a_size + 1));
    let page = acme
        .audit
        .list_checkpoints(pb::ListCheckpointsRequest {
            from_size: a_size + 1,
            limit: 2,
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.checkpoints.len(), 1);
    assert_eq!(page.checkpoints[0].note, b.note());
    assert_eq!(page.next_from_size, None);
}

#[tokio::test]
async fn entries_stream_returns_envelopes_verbatim_in_order() {
    let t = TestHub::start_with_policy(on_demand()).await;
    let mut acme = t.client("acme").await;
    let submitted = submit_sets(&t, &mut acme, 6, 6).await;
    let mut globex = t.client("globex").await;
    let got = entries(&mut globex, t.base + 1, t.base + 5)
        .await
        .expect("entries");
    assert_eq!(got.len(), 4);
    for (entry, (env, receipt)) in got.iter().zip(&submitted[1..5]) {
        assert_eq!(entry.seq, receipt.seq);
        assert_eq!(entry.statement_id, receipt.statement_id);
        assert_eq!(entry.received_at_ms, receipt.received_at_ms);
        assert_eq!(entry.envelope.as_ref(), Some(env));
    }
    assert!(
        entries(&mut globex, t.base + 2, t.base + 2)
            .await
            .expect("empty")
            .is_empty()
    );
    let all = entries(&mut globex, 0, t.base + 6).await.expect("all");
    assert_eq!(all.len() as u64, t.base + 6);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
    }
    // The entries' leaves rebuild the checkpoint's root.
    let cp = globex
        .checkpoint(&t.checkpoint_key, true)
        .await
        .expect("cp");
    let mut tree = log::MemoryTree::new();
    for e in entries(&mut globex, 0, cp.size().0).await.expect("all") {
        let id = StatementId::from_slice(&e.statement_id).expect("id");
        tree.append(&leaf_data(&id, e.received_at_ms));
    }
    assert_eq!(tree.root(), cp.root());
}

fn assert_status(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, field: &str) {
    let status = result.expect_err("must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(field),
        "message does not name {field}: {}",
        status.message()
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named() {
    let t = TestHub::start_with_policy(on_demand()).await;
    let mut acme = t.client("acme").await;
    submit_sets(&t, &mut acme, 7, 4).await;
    let c = &mut acme;
    let bad = Code::InvalidArgument;
    // Inclusion.
    let b = t.base;
    assert_status(
        inclusion(c, Leaf::LeafIndex(b + 3), b + 3).await,
        bad,
        &format!("leaf_index {}", b + 3),
    );
    assert_status(
        inclusion(c, Leaf::LeafIndex(b + 9), 0).await,
        bad,
        &format!("leaf_index {}", b + 9),
    );
    assert_status(
        inclusion(c, Leaf::LeafIndex(0), b + 5).await,
        bad,
        &format!("tree_size {}", b + 5),
    );
    assert_status(
        c.audit
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                leaf: None,
                tree_size: 0,
            })
            .await,
        bad,
        "leaf_index or statement_id",
    );
    assert_status(
        inclusion(c, Leaf::StatementId(vec![1; 31]), 0).await,
        bad,
        "statement_id",
    );
    assert_status(
        inclusion(c, Leaf::StatementId(vec![7; 32]), 0).await,
        Code::NotFound,
        "statement_id",
    );
    // Consistency.
    assert_status(
        consistency(c, b + 3, b + 2).await,
        bad,
        &format!("old_size {}", b + 3),
    );
    assert_status(
        consistency(c, b + 1, b + 5).await,
        bad,
        &format!("new_size {}", b + 5),
    );
    assert_status(
        consistency(c, b + 6, b + 5).await,
        bad,
        &format!("old_size {}", b + 6),
    );
    // Entries.
    assert_status(
        entries(c, b + 3, b + 2).await,
        bad,
        &format!("start {}", b + 3),
    );
    // Beyond the log: this server is behind, not a bad request.
    assert_status(
        entries(c, 0, b + 5).await,
        Code::OutOfRange,
        &format!("end {} is beyond the log size {}", b + 5, b + 4),
    );
    // Checkpoints.
    assert_status(
        get_checkpoint(c, Some(b + 2), false).await,
        Code::NotFound,
        "tree_size",
    );
    assert_status(
        get_checkpoint(c, Some(STARTUP_SIZE), true).await,
        bad,
        "refresh",
    );
    // Nothing was written by any of these.
    assert_eq!(t.store.log_size(), b + 4);
}

#[tokio::test]
async fn unregistered_or_foreign_callers_are_denied_and_auditors_allowed() {
    let t = TestHub::start_with_policy(on_demand()).await;
    let mut outsider = t.client("outsider").await;
    let denied = get_checkpoint(&mut outsider, None, false).await;
    assert_status(
        denied,
        Code::PermissionDenied,
        "'outsider' is not registered",
    );
    assert_status(
        entries(&mut outsider, 0, 0).await,
        Code::PermissionDenied,
        "outsider",
    );
    assert_status(
        consistency(&mut outsider, 0, 0).await,
        Code::PermissionDenied,
        "outsider",
    );
    assert_status(
        inclusion(&mut outsider, Leaf::LeafIndex(0), 0).await,
        Code::PermissionDenied,
        "outsider",
    );
    // Admitted as an auditor (no signing key needed), the same certificate may audit.
    t.admin_change(Action::Admit(admission(
        &id("outsider"),
        "Auditor",
        &[Role::Auditor],
        &[],
    )))
    .await
    .expect("admit auditor");
    let cp = get_checkpoint(&mut outsider, None, true)
        .await
        .expect("auditor reads");
    SignedCheckpoint::verify(&cp.note, &t.checkpoint_key).expect("verifies");
    // A certificate from another CA never gets past the TLS handshake.
    let other = tempfile::tempdir().expect("tmp");
    let foreign = coalition_hub::pki::CertDir::new(other.path());
    foreign.init(&[id("acme")]).expect("foreign pki");
    let ftls = foreign.member_tls(&id("acme")).expect("tls");
    let cfg = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            &t.tls("acme").ca_pem,
        ))
        .domain_name("localhost")
        .identity(tonic::transport::Identity::from_pem(
            &ftls.cert_pem,
            &ftls.key_pem,
        ));
    let channel = tonic::transport::Channel::from_shared(format!("https://{}", t.addr))
        .expect("uri")
        .tls_config(cfg)
        .expect("tls");
    if let Ok(ch) = channel.connect().await {
        let mut audit = pb::audit_client::AuditClient::new(ch);
        let err = audit
            .get_checkpoint(pb::GetCheckpointRequest::default())
            .await
            .expect_err("foreign certificate must fail");
        assert_ne!(err.code(), Code::Ok);
    }
}

#[test]
fn checkpoints_survive_a_restart() {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let first = runtime();
    let (stopped, notes) = first.block_on(async {
        let t = TestHub::start_with_policy(on_demand()).await;
        let mut acme = t.client("acme").await;
        submit_sets(&t, &mut acme, 8, 3).await;
        let a = acme.checkpoint(&t.checkpoint_key, true).await.expect("cp");
        submit_sets(&t, &mut acme, 9, 2).await;
        let b = acme.checkpoint(&t.checkpoint_key, true).await.expect("cp");
        drop(acme);
        (t.stop().await, vec![a, b])
    });
    // Dropping the runtime drops the hub's background tasks, closing the store.
    drop(first);
    runtime().block_on(async {
        let t = TestHub::resume(stopped).await;
        assert_eq!(t.store.log_size(), t.base + 5);
        let mut globex = t.client("globex").await;
        // The latest checkpoint is the one published before the restart, byte for byte.
        let latest = get_checkpoint(&mut globex, None, false)
            .await
            .expect("latest");
        assert_eq!(latest.note, notes[1].note());
        let list = globex
            .audit
            .list_checkpoints(pb::ListCheckpointsRequest::default())
            .await
            .expect("list")
            .into_inner();
        let listed: Vec<&str> = list.checkpoints.iter().map(|c| c.note.as_str()).collect();
        assert_eq!(
            listed,
            [
                t.store
                    .checkpoint(STARTUP_SIZE)
                    .expect("read")
                    .expect("start-up checkpoint")
                    .note
                    .as_str(),
                notes[0].note(),
                notes[1].note(),
            ]
        );
        // The log goes on growing consistently with what was published before.
        submit_sets(&t, &mut t.client("acme").await, 10, 2).await;
        let c = globex
            .checkpoint(&t.checkpoint_key, true)
            .await
            .expect("cp");
        assert_eq!(c.size(), TreeSize(t.base + 7));
        globex
            .verify_consistency(&t.checkpoint_key, &notes[0], &c)
            .await
            .expect("consistent");
    });
}
