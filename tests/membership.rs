//! Membership lifecycle over real mutual TLS: signed changes, quorum collected offline, key
//! rotation and compromise, roles on every RPC, and the bad-input table.

use crate::common;

use coalition_hub::client::{Client, sign_new};
use coalition_hub::governance::{self, admission};
use coalition_hub::membership::{Action, KeyId, KeyStatus, MemberStatus, Revocation, Role};
use coalition_hub::pb;
use coalition_hub::pki::Created;
use coalition_hub::statement::{Body, Kind, ParsedEnvelope};
use coalition_hub::sync::FilterSpec;
use common::{TestHub, id, replay, sha256_set, sync_all};
use ed25519_dalek::SigningKey;
use tonic::Code;

/// Asserts a failed call's code and that its message contains `text`.
fn refused<T: std::fmt::Debug>(result: Result<T, impl std::fmt::Display>, code: &str, text: &str) {
    let err = result.expect_err(text).to_string();
    assert!(
        err.starts_with(code) && err.contains(text),
        "expected '{code}: ...{text}...', got '{err}'"
    );
}

/// Creates a certificate and signing key for a member that is not admitted yet.
fn new_identity(t: &TestHub, member: &str) -> SigningKey {
    t.certs
        .add_member(&id(member), &mut Created::default())
        .expect("pki");
    t.key(member)
}

#[tokio::test]
async fn whole_lifecycle_of_a_member() {
    let t = TestHub::start().await;
    let key1 = new_identity(&t, "newco");
    t.admin_change(Action::Admit(admission(
        &id("newco"),
        "NewCo",
        &[Role::Member],
        &[key1.verifying_key()],
    )))
    .await
    .expect("admit");
    let mut newco = t.client("newco").await;
    let body = || Body::HashSet(sha256_set(rand::random(), 3));
    let before_rotation = newco
        .submit(sign_new(&id("newco"), &key1, body()))
        .await
        .expect("admitted members submit")
        .receipt
        .expect("receipt");

    // Suspended: every RPC refused, open connection included.
    t.admin_change(Action::Suspend(id("newco")))
        .await
        .expect("suspend");
    refused(
        newco.submit(sign_new(&id("newco"), &key1, body())).await,
        "permission denied",
        "member 'newco' is suspended",
    );
    refused(
        newco
            .hub
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .map_err(|s| s.message().to_owned()),
        "member 'newco' is suspended",
        "",
    );
    t.admin_change(Action::Reinstate(id("newco")))
        .await
        .expect("reinstate");
    newco
        .submit(sign_new(&id("newco"), &key1, body()))
        .await
        .expect("reinstated members submit again");

    // Rotation: add key 2, retire key 1. Key 1 is refused for new statements.
    let key2 = t.rotate_key("newco", &key1).await;
    refused(
        newco.submit(sign_new(&id("newco"), &key1, body())).await,
        "permission denied",
        "was retired at log entry",
    );
    newco
        .submit(sign_new(&id("newco"), &key2, body()))
        .await
        .expect("the new key signs");

    // Statements signed before the rotation still verify for everyone, from the log's start:
    // a member's own replica replays the rotation and accepts every entry.
    let synced = t
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("every entry verifies");
    assert_eq!(synced.replica.size(), t.store.log_size());
    let signed_before = synced.at(before_rotation.seq);
    assert_eq!(signed_before.id.0.to_vec(), before_rotation.statement_id);
    assert_eq!(
        signed_before.header.as_ref().expect("header").key_id,
        KeyId::of(&key1.verifying_key())
    );
    assert!(synced.row(before_rotation.seq).is_some(), "written");

    // Removed: refused for good; cannot be reinstated; its id cannot be reused.
    t.admin_change(Action::Remove(id("newco")))
        .await
        .expect("remove");
    refused(
        newco.submit(sign_new(&id("newco"), &key2, body())).await,
        "permission denied",
        "member 'newco' is removed",
    );
    refused(
        t.admin_change(Action::Reinstate(id("newco"))).await,
        "failed precondition",
        "is removed, not suspended",
    );
    refused(
        t.admin_change(Action::Admit(admission(
            &id("newco"),
            "again",
            &[Role::Member],
            &[SigningKey::generate(&mut rand::rngs::OsRng).verifying_key()],
        )))
        .await,
        "already exists",
        "member 'newco' already exists",
    );

    // Admins and auditors see the member, its keys and its whole history.
    for reader in ["admin", "auditor"] {
        let mut c = t.client(reader).await;
        let m = c.member(&id("newco")).await.expect("show");
        assert_eq!(m.status, MemberStatus::Removed);
        let statuses: Vec<KeyStatus> = m.keys.iter().map(|k| k.status).collect();
        assert_eq!(statuses, vec![KeyStatus::Retired, KeyStatus::Active]);
        let history = c.history(&id("newco")).await.expect("history");
        let changes: Vec<&str> = history.events.iter().map(|e| e.change.as_str()).collect();
        assert_eq!(changes.len(), 6, "{changes:?}");
        assert!(
            changes[0].starts_with("admitted with roles member"),
            "{changes:?}"
        );
        assert_eq!(changes[1], "suspend 'newco'");
        assert_eq!(changes[2], "reinstate 'newco'");
        assert!(changes[3].starts_with("add key"), "{changes:?}");
        assert!(changes[4].starts_with("retire key"), "{changes:?}");
        assert_eq!(changes[5], "remove 'newco' for good");
        assert!(history.events.iter().all(|e| e.signed_by == vec!["admin"]));
    }

    // The registry is the log replayed: replaying the stored entries from scratch through a
    // replica, as an auditor would, rebuilds exactly the same members and history.
    let registry = t.store.registry();
    let stored: Vec<pb::SyncEntry> = t
        .store
        .entries(0, u64::MAX)
        .map(|e| e.expect("entry").into_sync_entry(&registry, true))
        .collect();
    let (replica, _) = replay(stored).expect("entitled where it is");
    let replayed = replica.registry();
    assert_eq!(
        replayed.members().cloned().collect::<Vec<_>>(),
        t.store.members()
    );
    assert_eq!(replayed.history(&id("newco")).len(), 6, "history replayed");
}

#[tokio::test]
async fn two_of_three_quorum_collected_offline() {
    let t = TestHub::start().await;
    for a in ["alice", "bob"] {
        let key = new_identity(&t, a);
        t.admin_change(Action::Admit(admission(
            &id(a),
            a,
            &[Role::Admin],
            &[key.verifying_key()],
        )))
        .await
        .expect("admit admin");
    }
    t.admin_change(Action::SetQuorum(2))
        .await
        .expect("quorum 2 of 3");

    let newco = new_identity(&t, "newco");
    let admit = || {
        governance::change(
            &id("admin"),
            &t.key("admin"),
            Action::Admit(admission(
                &id("newco"),
                "NewCo",
                &[Role::Member],
                &[newco.verifying_key()],
            )),
            "2-of-3 test",
        )
    };
    let mut admin = t.client("admin").await;
    refused(
        admin.submit(admit()).await,
        "failed precondition",
        "needs signatures of 2 distinct admins, it has 1 (admin)",
    );
    // The same key may sign once; the same admin signing with two keys counts once.
    let mut twice = admit();
    twice.signatures.push(twice.signatures[0].clone());
    refused(
        admin.submit(twice).await,
        "invalid argument",
        "already signed this envelope; each key signs once",
    );
    let admin_key2 = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut both_keys = admit();
    assert!(governance::cosign(&mut both_keys, &admin_key2).expect("cosign"));
    refused(
        admin.submit(both_keys.clone()).await,
        "invalid argument",
        "is not an active key of any active admin",
    );
    // (Adding a key is itself a change needing 2 of 3: admin and alice sign it.)
    let mut add = governance::change(
        &id("admin"),
        &t.key("admin"),
        Action::AddKey {
            member: id("admin"),
            key: admin_key2.verifying_key(),
        },
        "second admin key",
    );
    governance::cosign(&mut add, &t.key("alice")).expect("cosign");
    admin.submit(add).await.expect("second admin key");
    refused(
        admin.submit(both_keys).await,
        "failed precondition",
        "it has 1 (admin)",
    );

    // Offline: the issuer writes the partly signed envelope, alice co-signs the file.
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("admit-newco.json");
    governance::write_envelope(&file, &admit()).expect("sign-only");
    let mut envelope = governance::read_envelope(&file).expect("read");
    assert!(governance::cosign(&mut envelope, &t.key("alice")).expect("cosign"));
    governance::write_envelope(&file, &envelope).expect("write");
    let envelope = governance::read_envelope(&file).expect("read back");
    assert_eq!(envelope.signatures.len(), 2);

    // Only a signer may submit it; bob did not sign.
    refused(
        t.client("bob").await.submit(envelope.clone()).await,
        "permission denied",
        "member 'bob' did not sign this membership change",
    );
    let receipt = t
        .client("alice")
        .await
        .submit(envelope)
        .await
        .expect("2 of 3 signatures: accepted");
    assert!(!receipt.already_present);
    let history = admin.history(&id("newco")).await.expect("history");
    assert_eq!(history.events[0].signed_by, vec!["admin", "alice"]);
    let coalition = admin.coalition().await.expect("governance");
    assert_eq!(coalition.quorum, 2);
    assert_eq!(coalition.admins, vec!["admin", "alice", "bob"]);
    // newco can use the hub.
    let mut c = t.client("newco").await;
    c.submit(sign_new(
        &id("newco"),
        &newco,
        Body::HashSet(sha256_set(7, 1)),
    ))
    .await
    .expect("newco submits");
}

#[tokio::test]
async fn compromised_key_flags_what_was_logged_after_the_compromise() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let old_key = t.key("acme");
    let early = acme
        .submit(t.hash_set("acme", 1, 2))
        .await
        .expect("early")
        .receipt
        .expect("receipt");
    // Receipt times have millisecond resolution: keep the two apart.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let late = acme
        .submit(t.hash_set("acme", 2, 2))
        .await
        .expect("late")
        .receipt
        .expect("receipt");
    // The key leaked between the two: statements the hub logged from then on are suspect.
    let new_key = SigningKey::generate(&mut rand::rngs::OsRng);
    t.admin_change(Action::AddKey {
        member: id("acme"),
        key: new_key.verifying_key(),
    })
    .await
    .expect("add key");
    let old_id = KeyId::of(&old_key.verifying_key());
    t.admin_change(Action::RevokeKey {
        member: id("acme"),
        key_id: old_id.clone(),
        revocation: Revocation::Compromised {
            compromised_at_ms: late.received_at_ms,
        },
    })
    .await
    .expect("revoke as compromised");

    // globex syncs: the late statement is flagged by the hub and by its own check.
    let mut globex = t.client("globex").await;
    let (entries, _) = sync_all(
        &mut globex,
        pb::SyncRequest {
            from_seq: t.base,
            kinds: vec![pb::StatementKind::HashSet as i32],
            ..Default::default()
        },
    )
    .await;
    let by_seq = |seq: u64| {
        entries
            .iter()
            .find(|e| e.seq == seq)
            .expect("synced")
            .clone()
    };
    assert!(by_seq(early.seq).compromised_key_ids.is_empty());
    assert_eq!(
        by_seq(late.seq).compromised_key_ids,
        vec![old_id.to_string()]
    );
    // The member's own replica computes the flag from the revocation it replays, whatever
    // the hub says: its rows are flagged, and stripping the hub's flags changes nothing.
    let synced = t
        .sync_proven(
            "globex",
            FilterSpec {
                kinds: vec!["hash_set".into()],
                ..Default::default()
            },
        )
        .await
        .expect("still verifies");
    assert_eq!(
        synced.row(late.seq).expect("written").compromised_keys,
        vec![old_id.to_string()]
    );
    assert!(
        synced
            .row(early.seq)
            .expect("written")
            .compromised_keys
            .is_empty()
    );
    let (mut unflagged, _) = sync_all(&mut globex, pb::SyncRequest::default()).await;
    for e in &mut unflagged {
        e.compromised_key_ids.clear();
    }
    let (replica, _) = replay(unflagged).expect("verifies");
    assert!(
        replica.is_compromised(&old_id, late.received_at_ms),
        "the member's own replay flags it even if the hub does not"
    );
    assert!(!replica.is_compromised(&old_id, early.received_at_ms));
    // The compromised key signs nothing new; the new key does.
    refused(
        acme.submit(t.hash_set("acme", 3, 1)).await,
        "permission denied",
        "revoked as compromised",
    );
    acme.submit(sign_new(
        &id("acme"),
        &new_key,
        Body::HashSet(sha256_set(4, 1)),
    ))
    .await
    .expect("new key");
}

#[tokio::test]
async fn bad_membership_input_is_refused_and_changes_nothing() {
    let t = TestHub::start().await;
    let size = t.store.log_size();
    let fresh = || SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
    let cases: Vec<(Action, &str, &str)> = vec![
        (
            Action::Admit(admission(&id("acme"), "dup", &[Role::Member], &[fresh()])),
            "already exists",
            "member 'acme' already exists",
        ),
        (
            Action::Admit(admission(
                &id("newco"),
                "stolen key",
                &[Role::Member],
                &[t.key("acme").verifying_key()],
            )),
            "already exists",
            "is already registered to member 'acme'",
        ),
        (
            Action::Suspend(id("ghost")),
            "not found",
            "member 'ghost' is not registered",
        ),
        (
            Action::RevokeKey {
                member: id("acme"),
                key_id: KeyId::of(&fresh()),
                revocation: Revocation::Retired,
            },
            "not found",
            "member 'acme' has no key",
        ),
        (
            Action::Suspend(id("admin")),
            "failed precondition",
            "would leave 0 admin(s) able to sign membership changes",
        ),
        (
            Action::Remove(id("admin")),
            "failed precondition",
            "would leave 0 admin(s)",
        ),
        (
            Action::SetRoles {
                member: id("admin"),
                roles: vec![Role::Member],
            },
            "failed precondition",
            "would leave 0 admin(s)",
        ),
        (
            Action::RevokeKey {
                member: id("admin"),
                key_id: KeyId::of(&t.key("admin").verifying_key()),
                revocation: Revocation::Retired,
            },
            "failed precondition",
            "would leave 0 admin(s)",
        ),
        (
            Action::SetQuorum(2),
            "failed precondition",
            "a quorum of 2 is more than the 1 admin(s) able to sign",
        ),
        (
            Action::Reinstate(id("acme")),
            "failed precondition",
            "member 'acme' is active, not suspended",
        ),
    ];
    for (action, code, text) in cases {
        refused(t.admin_change(action).await, code, text);
    }
    assert_eq!(t.store.log_size(), size, "nothing was logged");

    // Roles: members and auditors may not change membership; members may not read it.
    let change =
        |who: &str| governance::change(&id(who), &t.key(who), Action::Suspend(id("globex")), "");
    refused(
        t.client("acme").await.submit(change("acme")).await,
        "permission denied",
        "member 'acme' lacks the 'admin' role needed to sign membership changes",
    );
    let mut auditor = t.client("auditor").await;
    refused(
        auditor.submit(change("auditor")).await,
        "permission denied",
        "member 'auditor' lacks the 'member' role needed to submit statements",
    );
    refused(
        auditor.submit(t.hash_set("auditor", 1, 1)).await,
        "permission denied",
        "lacks the 'member' role",
    );
    refused(
        t.client("acme").await.member(&id("globex")).await,
        "permission denied",
        "member 'acme' lacks the 'admin' role needed to read member details",
    );
    refused(
        t.client("acme").await.coalition().await,
        "permission denied",
        "lacks the 'admin' role",
    );
    // Auditors read everything.
    let m = auditor.member(&id("globex")).await.expect("auditor reads");
    assert_eq!(m.status, MemberStatus::Active);
    auditor.coalition().await.expect("auditor reads governance");
    let (all, _) = sync_all(&mut auditor, pb::SyncRequest::default()).await;
    assert_eq!(all.len() as u64, size);
    // Unknown member: NOT_FOUND; bad id: INVALID_ARGUMENT.
    let mut admin = t.client("admin").await;
    refused(
        admin.member(&id("ghost")).await,
        "not found",
        "member 'ghost' is not registered",
    );
    refused(
        admin.history(&id("ghost")).await,
        "not found",
        "member 'ghost'",
    );
    let bad = admin
        .admin
        .get_member(pb::GetMemberRequest {
            member_id: "Not An Id".into(),
        })
        .await
        .expect_err("bad id");
    assert_eq!(bad.code(), Code::InvalidArgument);
    // A second genesis is refused.
    let hub_key = t.certs.hub_signing_key().expect("hub key");
    let genesis = governance::genesis(
        "again",
        &hub_key,
        vec![admission(
            &id("admin"),
            "Admin",
            &[Role::Admin],
            &[t.key("admin").verifying_key()],
        )],
        1,
        &t.key("admin"),
    )
    .expect("genesis");
    refused(
        admin.submit(genesis).await,
        "failed precondition",
        "this hub already has its genesis",
    );
    // A change without quorum fields, unknown signers, or a bad envelope names the problem.
    let mut foreign = change("admin");
    let stranger = SigningKey::generate(&mut rand::rngs::OsRng);
    governance::cosign(&mut foreign, &stranger).expect("cosign");
    refused(
        admin.submit(foreign).await,
        "invalid argument",
        "is not an active key of any active admin",
    );
    assert_eq!(t.store.log_size(), size, "still nothing logged");
    let kinds: Vec<Kind> = all
        .iter()
        .map(|e| {
            ParsedEnvelope::parse(e.envelope.clone().expect("env"))
                .expect("parse")
                .header
                .kind
        })
        .collect();
    assert_eq!(kinds[0], Kind::Genesis);
}

#[tokio::test]
async fn pinned_certificates_are_enforced() {
    let t = TestHub::start().await;
    let key = new_identity(&t, "pinned");
    // Pinned to some other certificate: the member's real certificate is refused.
    let mut admit = admission(
        &id("pinned"),
        "Pinned",
        &[Role::Member],
        &[key.verifying_key()],
    );
    admit.cert_pins.push([9; 32]);
    t.admin_change(Action::Admit(admit)).await.expect("admit");
    let mut c = Client::connect(&t.addr, &t.tls("pinned"))
        .await
        .expect("tls");
    refused(
        c.hub
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .map_err(|s| s.to_string()),
        "",
        "is not one member 'pinned' was admitted with",
    );
    let err = c
        .hub
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("pinned elsewhere");
    assert_eq!(err.code(), Code::Unauthenticated);
}
