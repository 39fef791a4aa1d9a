//! Coalition settings over the real server: hub checkpoint-key rotation (members and auditors
//! follow it, a checkpoint after it under the old key is refused, the hub never signs with a
//! key the log retired) and per-member quotas (RESOURCE_EXHAUSTED with retry-after, nothing
//! stored, others unaffected, governance never blocked).

use crate::common;

use coalition_hub::audit::bundle::{BundleWriter, Record};
use coalition_hub::audit::verify_bundle;
use coalition_hub::client::ClientError;
use coalition_hub::governance;
use coalition_hub::log::{Checkpoint, CheckpointSigner, TreeSize};
use coalition_hub::membership::Action;
use coalition_hub::pb;
use coalition_hub::replica::{Entry, Fault, Replica, SeenMap};
use coalition_hub::server::ServeOptions;
use coalition_hub::settings::{QuotaLimits, Quotas, Section};
use coalition_hub::sync::FilterSpec;
use common::{ORIGIN, TestHub, id};
use ed25519_dalek::SigningKey;
use std::time::Duration;

/// A rotation to `new`, issued by the admin and co-signed by `new` (unless `proof` is false).
fn rotation(t: &TestHub, new: &SigningKey, proof: bool) -> pb::Envelope {
    let mut envelope = governance::settings(
        &id("admin"),
        &t.key("admin"),
        Section::HubKey(new.verifying_key()),
        "yearly rotation",
    );
    if proof {
        governance::cosign(&mut envelope, new).expect("cosign");
    }
    envelope
}

fn quotas(t: &TestHub, quotas: Quotas) -> pb::Envelope {
    governance::settings(
        &id("admin"),
        &t.key("admin"),
        Section::Quotas(quotas),
        "fair use",
    )
}

fn code(e: &ClientError) -> tonic::Code {
    match e {
        ClientError::Status(s) => s.code(),
        other => panic!("not a status: {other}"),
    }
}

/// The status of a refused call, which must be RESOURCE_EXHAUSTED with a retry-after that the
/// message repeats.
fn exhausted(status: &tonic::Status) -> u64 {
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let secs: u64 = status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no retry-after in {status:?}"));
    assert!(secs >= 1, "{secs}");
    assert!(
        status.message().contains(&format!("retry after {secs} s")),
        "{}",
        status.message()
    );
    secs
}

/// Waits until the hub has published a checkpoint covering its whole log.
async fn checkpointed(t: &TestHub) -> pb::SignedCheckpoint {
    t.published_checkpoint().await
}

/// Every entry and checkpoint of `t` as a bundle, verified as `coalition audit verify` does.
async fn audit(t: &TestHub) -> Result<coalition_hub::audit::Summary, String> {
    let export = common::hostile::export(t).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("log.bundle");
    let mut w = BundleWriter::create(&path).expect("create");
    for c in &export.checkpoints {
        w.write(Record::checkpoint(c.note.clone())).expect("write");
    }
    for e in export.entries {
        w.write(Record::Entry(e)).expect("write");
    }
    w.finish().expect("finish");
    verify_bundle(&path, &[]).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_key_rotates_without_downtime_and_everyone_follows() {
    let new = SigningKey::from_bytes(&[42; 32]);
    let next = CheckpointSigner::new(ORIGIN, new.clone()).expect("signer");
    let t = TestHub::start_with(|_, options| ServeOptions {
        next_checkpoint_signer: Some(next),
        ..options
    })
    .await;
    let mut acme = t.client("acme").await;
    for seed in 0..3 {
        acme.submit(t.hash_set("acme", seed, 2))
            .await
            .expect("before");
    }
    let before = checkpointed(&t).await;
    // A member following the log live, from before the rotation.
    let mut follower = t.follow("globex").await;
    while follower.syncer.replica().size() < before.tree_size {
        follower.next().await.expect("a batch");
    }
    let receipt = t
        .client("admin")
        .await
        .submit(rotation(&t, &new, true))
        .await
        .expect("rotation logged");
    let rotated_at = receipt.receipt.expect("receipt").seq;
    for seed in 3..6 {
        acme.submit(t.hash_set("acme", seed, 2))
            .await
            .expect("after");
    }
    let after = checkpointed(&t).await;
    assert!(after.tree_size > rotated_at + 1);
    // The checkpoint before the rotation is under the old key, the one after under the new.
    let old_key = t.checkpoint_key.clone();
    let new_key = next_verifier(&new);
    assert!(coalition_hub::log::SignedCheckpoint::verify(&before.note, &old_key).is_ok());
    assert!(coalition_hub::log::SignedCheckpoint::verify(&after.note, &new_key).is_ok());
    assert!(coalition_hub::log::SignedCheckpoint::verify(&after.note, &old_key).is_err());
    // The hub also published the log up to the rotation under the old key.
    let boundary = t
        .store
        .checkpoint(rotated_at)
        .expect("read")
        .expect("a checkpoint of the log before the rotation");
    assert!(coalition_hub::log::SignedCheckpoint::verify(&boundary.note, &old_key).is_ok());

    // The live follower crosses the rotation (bounded: each batch holds an entry).
    for _ in 0..100 {
        if follower.syncer.replica().size() >= after.tree_size {
            break;
        }
        follower.next().await.expect("a batch across the rotation");
    }
    assert!(follower.syncer.replica().size() >= after.tree_size);
    // A member's own replica and the auditor's follow the rotation.
    let synced = t
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("member sync across the rotation");
    assert_eq!(synced.replica.size(), t.store.log_size());
    let summary = audit(&t).await.expect("audit verify across the rotation");
    assert_eq!(summary.entries, t.store.log_size());

    // GetCoalition shows both keys and where the new one took over.
    let c = t
        .client("admin")
        .await
        .coalition()
        .await
        .expect("coalition");
    assert_eq!(c.hub_public_key, new.verifying_key().to_bytes().to_vec());
    let settings = c.settings.expect("settings");
    assert_eq!(settings.revision, 1);
    let periods: Vec<u64> = settings.hub_keys.iter().map(|p| p.from_seq).collect();
    assert_eq!(periods, vec![0, rotated_at]);

    // Only the new key may serve this log now.
    let err = ServeOptions::for_store(&t.store, t.signer_key()).expect_err("old key refused");
    assert!(
        err.to_string().contains("not the hub's current key"),
        "{err}"
    );
    assert!(ServeOptions::for_store(&t.store, new.clone()).is_ok());
    // After a restart the store replays the rotation from its own log.
    let size = t.store.log_size();
    let t = TestHub::resume(t.stop().await).await;
    let registry = t.store.registry();
    let c = registry.coalition().expect("founded");
    assert_eq!(c.hub_key, new.verifying_key());
    assert_eq!(c.settings.hub_keys.len(), 2);
    assert_eq!(t.store.log_size(), size);
    t.sync_proven("acme", FilterSpec::default())
        .await
        .expect("sync after the restart");
}

fn next_verifier(key: &SigningKey) -> coalition_hub::log::VerifierKey {
    CheckpointSigner::new(ORIGIN, key.clone())
        .expect("signer")
        .verifier_key()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_after_the_rotation_signed_by_the_old_key_is_refused() {
    let new = SigningKey::from_bytes(&[43; 32]);
    let next = CheckpointSigner::new(ORIGIN, new.clone()).expect("signer");
    let t = TestHub::start_with(|_, options| ServeOptions {
        next_checkpoint_signer: Some(next),
        ..options
    })
    .await;
    let rotated_at = t
        .client("admin")
        .await
        .submit(rotation(&t, &new, true))
        .await
        .expect("rotation")
        .receipt
        .expect("receipt")
        .seq;
    t.client("acme")
        .await
        .submit(t.hash_set("acme", 1, 1))
        .await
        .expect("after");
    let export = common::hostile::export(&t).await;
    let size = export.entries.len() as u64;
    // A leaked old key signs the real root: the replica refuses it, in an audit ...
    let forged = Checkpoint::new(ORIGIN, TreeSize(size), t.store.root(size).expect("root"))
        .sign(ORIGIN, &t.signer_key())
        .expect("sign");
    let mut replica = Replica::new();
    replica
        .expect_checkpoint(forged.clone(), false)
        .expect("held until its size");
    let entries: Vec<Entry> = export
        .entries
        .iter()
        .cloned()
        .map(Entry::from_wire)
        .collect();
    let err = replica
        .append(entries.clone(), &mut SeenMap::default())
        .expect_err("old key after the rotation");
    match err.fault {
        Fault::RetiredHubKey {
            size: s,
            rotated_at: r,
            ..
        } => assert_eq!((s, r), (size, rotated_at)),
        other => panic!("{other:?}"),
    }
    // ... and in a member's sync.
    let mut replica = Replica::new();
    replica
        .append(entries, &mut SeenMap::default())
        .expect("the log itself is fine");
    let err = replica.check_checkpoint(&forged).expect_err("refused");
    assert!(matches!(err.fault, Fault::RetiredHubKey { .. }), "{err}");
    // The old key's checkpoint of the log before the rotation stays valid.
    let valid = Checkpoint::new(
        ORIGIN,
        TreeSize(rotated_at),
        t.store.root(rotated_at).expect("root"),
    )
    .sign(ORIGIN, &t.signer_key())
    .expect("sign");
    let mut early = Replica::new();
    early
        .expect_checkpoint(valid, false)
        .expect("before the rotation");
    early
        .append(
            export
                .entries
                .iter()
                .cloned()
                .map(Entry::from_wire)
                .collect(),
            &mut SeenMap::default(),
        )
        .expect("valid under the old key");
}

trait SignerKey {
    fn signer_key(&self) -> SigningKey;
}

impl SignerKey for TestHub {
    /// The genesis hub key.
    fn signer_key(&self) -> SigningKey {
        self.certs.hub_signing_key().expect("hub key")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_needs_the_new_keys_signature_and_a_new_key() {
    let t = TestHub::start().await;
    let mut admin = t.client("admin").await;
    let size = t.store.log_size();
    let new = SigningKey::from_bytes(&[44; 32]);
    let err = admin
        .submit(rotation(&t, &new, false))
        .await
        .expect_err("no proof of possession");
    assert_eq!(code(&err), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.to_string()
            .contains("must also be signed by the new hub key"),
        "{err}"
    );
    // A member's key or the current hub key cannot become the hub key.
    let acme = t.key("acme");
    let err = admin
        .submit(rotation(&t, &acme, true))
        .await
        .expect_err("a member's key");
    assert!(
        err.to_string().contains("registered to member 'acme'"),
        "{err}"
    );
    let current = t.signer_key();
    let err = admin
        .submit(rotation(&t, &current, true))
        .await
        .expect_err("the current key");
    assert!(err.to_string().contains("was a hub key already"), "{err}");
    // A member may not change settings.
    let env = governance::settings(
        &id("acme"),
        &t.key("acme"),
        Section::Quotas(Quotas::default()),
        "",
    );
    let err = t
        .client("acme")
        .await
        .submit(env)
        .await
        .expect_err("member");
    assert_eq!(code(&err), tonic::Code::PermissionDenied, "{err}");
    assert_eq!(
        t.store.log_size(),
        size,
        "nothing stored by a refused change"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_without_the_current_key_publishes_no_checkpoint() {
    let t = TestHub::start().await;
    let new = SigningKey::from_bytes(&[45; 32]);
    let rotated_at = t
        .client("admin")
        .await
        .submit(rotation(&t, &new, true))
        .await
        .expect("rotation")
        .receipt
        .expect("receipt")
        .seq;
    let err = t
        .client("auditor")
        .await
        .audit
        .get_checkpoint(pb::GetCheckpointRequest {
            tree_size: None,
            refresh: true,
        })
        .await
        .expect_err("no key for the new size");
    assert!(err.message().contains("does not hold it"), "{err:?}");
    let latest = t.store.latest_checkpoint().expect("read").expect("some");
    assert!(
        latest.size <= rotated_at,
        "never signed past the rotation with the old key"
    );
}

fn limits(f: impl FnOnce(&mut QuotaLimits)) -> QuotaLimits {
    let mut l = QuotaLimits::default();
    f(&mut l);
    l
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_refuse_with_retry_after_and_never_block_governance() {
    let t = TestHub::start().await;
    let mut policy = Quotas {
        default_limits: limits(|l| l.submissions_per_minute = Some(2)),
        ..Default::default()
    };
    policy.members.insert(
        id("globex"),
        limits(|l| {
            l.match_queries_per_minute = Some(1);
            l.sync_bytes_per_minute = Some(1);
        }),
    );
    t.client("admin")
        .await
        .submit(quotas(&t, policy))
        .await
        .expect("quotas set");

    // Submissions: two a minute for acme, then RESOURCE_EXHAUSTED and nothing stored.
    let mut acme = t.client("acme").await;
    acme.submit(t.hash_set("acme", 1, 1)).await.expect("first");
    acme.submit(t.hash_set("acme", 2, 1)).await.expect("second");
    let size = t.store.log_size();
    let err = acme
        .submit(t.hash_set("acme", 3, 1))
        .await
        .expect_err("third");
    let ClientError::Status(status) = &err else {
        panic!("{err}")
    };
    assert!(exhausted(status) <= 30);
    assert!(
        status
            .message()
            .contains("2 statements submitted per minute"),
        "{status:?}"
    );
    assert_eq!(t.store.log_size(), size, "nothing stored");
    // Others are not affected (globex has its own limits: submissions unlimited).
    let mut globex = t.client("globex").await;
    for seed in 10..14 {
        globex
            .submit(t.hash_set("globex", seed, 1))
            .await
            .expect("globex");
    }
    // Governance is never counted: the admin (two a minute, by default) changes membership
    // three times in a row, and acme's exhausted quota does not hold it up.
    for quorum in [1, 1, 1] {
        t.admin_change(Action::SetQuorum(quorum))
            .await
            .expect("membership change under quota");
    }

    // Match calls: one a minute for globex.
    let query = pb::MatchRequest {
        queries: vec![pb::MatchQuery {
            r#type: pb::HashType::Sha256 as i32,
            value: common::sha256_value(1, 0),
            quality: None,
        }],
        ..Default::default()
    };
    globex
        .hub
        .r#match(query.clone())
        .await
        .expect("first match");
    let err = globex.hub.r#match(query.clone()).await.expect_err("second");
    exhausted(&err);
    assert!(
        err.message().contains("1 match calls per minute"),
        "{err:?}"
    );
    acme.hub
        .r#match(query)
        .await
        .expect("acme's match calls are unlimited");

    // Sync bytes: one byte a minute for globex. A whole sync runs out ...
    let request = pb::SyncRequest {
        from_seq: 0,
        ..Default::default()
    };
    let mut stream = globex.hub.sync(request).await.expect("starts").into_inner();
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the sync ended without hitting the quota"),
            Err(status) => break status,
        }
    };
    exhausted(&status);
    let status = globex
        .hub
        .sync(pb::SyncRequest::default())
        .await
        .expect_err("used up: refused at once");
    exhausted(&status);
    // ... but a sync of the governance statements alone is never refused.
    let governance = pb::SyncRequest {
        kinds: vec![
            pb::StatementKind::Genesis as i32,
            pb::StatementKind::Membership as i32,
            pb::StatementKind::Settings as i32,
        ],
        ..Default::default()
    };
    let (entries, next) = common::sync_all(&mut globex, governance).await;
    assert_eq!(next, t.store.log_size());
    assert_eq!(entries.len() as u64, next);
    tokio::time::sleep(Duration::from_millis(1)).await;
}
