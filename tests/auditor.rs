//! The offline verifier against real logs: an honest export verifies; every kind of tampering
//! with the store or the export fails, naming the entry or checkpoint.

mod common;

use coalition_hub::audit::bundle::{BundleReader, BundleWriter, Record};
use coalition_hub::audit::{AuditError, Location, Summary, Verifier};
use coalition_hub::client::sign_new;
use coalition_hub::governance;
use coalition_hub::log::{Checkpoint, Hash, TreeSize};
use coalition_hub::membership::{Action, Role};
use coalition_hub::pb;
use coalition_hub::pki::Created;
use coalition_hub::statement::Body;
use coalition_hub::store::Store;
use common::{TestHub, id, sha256_set};
use ed25519_dalek::SigningKey;
use std::path::Path;

/// A hub with history worth auditing: members admitted, statements, a key rotation, a
/// suspension, a quorum raised to 2 and a change co-signed by two admins.
async fn busy_hub() -> TestHub {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let mut globex = t.client("globex").await;
    for i in 0..5 {
        acme.submit(t.hash_set("acme", i, 3)).await.expect("acme");
        globex
            .submit(t.hash_set("globex", 100 + i, 2))
            .await
            .expect("globex");
    }
    let new_key = t.rotate_key("acme", &t.key("acme")).await;
    acme.submit(sign_new(
        &id("acme"),
        &new_key,
        Body::HashSet(sha256_set(9, 4)),
    ))
    .await
    .expect("new key");
    t.certs
        .add_member(&id("alice"), &mut Created::default())
        .expect("pki");
    t.admin_change(Action::Admit(coalition_hub::governance::admission(
        &id("alice"),
        "Alice",
        &[Role::Admin],
        &[t.key("alice").verifying_key()],
    )))
    .await
    .expect("admit alice");
    t.admin_change(Action::SetQuorum(2)).await.expect("quorum");
    let mut change = coalition_hub::governance::change(
        &id("admin"),
        &t.key("admin"),
        Action::Suspend(id("globex")),
        "audit test",
    );
    coalition_hub::governance::cosign(&mut change, &t.key("alice")).expect("cosign");
    t.client("alice")
        .await
        .submit(change)
        .await
        .expect("2 of 2");
    t
}

fn hub_key(t: &TestHub) -> SigningKey {
    t.certs.hub_signing_key().expect("hub key")
}

fn sign_checkpoint(t: &TestHub, size: u64, root: Hash) -> String {
    Checkpoint::new("test.coalition.local", TreeSize(size), root)
        .sign("test.coalition.local", &hub_key(t))
        .expect("sign")
}

/// Checkpoints of the real log at a few sizes, as the hub would sign them.
fn checkpoints(t: &TestHub) -> Vec<String> {
    let size = t.store.log_size();
    [1, size / 2, size - 1, size]
        .into_iter()
        .map(|n| sign_checkpoint(t, n, t.store.root(n).expect("root")))
        .collect()
}

fn entries(t: &TestHub) -> Vec<pb::SyncEntry> {
    let registry = t.store.registry();
    t.store
        .entries(0, u64::MAX)
        .map(|e| e.expect("entry").into_sync_entry(&registry))
        .collect()
}

fn verify(notes: &[String], entries: Vec<pb::SyncEntry>) -> Result<Summary, AuditError> {
    let mut v = Verifier::new();
    for n in notes {
        v.checkpoint(n.clone())?;
    }
    for e in entries {
        v.entry(e)?;
    }
    v.finish()
}

fn fails_at(result: Result<Summary, AuditError>, location: Location, text: &str) {
    let err = result.expect_err(text);
    assert_eq!(err.location, location, "{err}");
    assert!(
        err.to_string().contains(text),
        "expected '{text}' in '{err}'"
    );
}

#[tokio::test]
async fn an_honest_log_verifies_through_a_bundle_file() {
    let t = busy_hub().await;
    let notes = checkpoints(&t);
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("export.bundle");
    let mut w = BundleWriter::create(&path).expect("create");
    for n in &notes {
        w.write(Record::Checkpoint(n.clone())).expect("write");
    }
    for e in entries(&t) {
        w.write(Record::Entry(e)).expect("write");
    }
    w.finish().expect("finish");
    let mut r = BundleReader::open(&path).expect("open");
    let mut v = Verifier::new();
    while let Some(record) = r.next_record().expect("read") {
        match record {
            Record::Checkpoint(n) => v.checkpoint(n).expect("checkpoint"),
            Record::Entry(e) => v.entry(e).expect("entry"),
        }
    }
    let summary = v.finish().expect("an honest log verifies");
    let size = t.store.log_size();
    assert_eq!(summary.entries, size);
    assert_eq!(summary.checkpoints, 4);
    assert_eq!(
        summary.latest_checkpoint,
        Some((size, t.store.root(size).expect("root")))
    );
    assert_eq!(summary.members, 5, "admin, acme, globex, auditor, alice");
    assert_eq!(summary.active_members, 4, "globex is suspended");
    assert_eq!(summary.membership_entries, 9);
    assert_eq!(summary.hub_name, "test.coalition.local");
    // A damaged file is refused before anything is verified.
    std::fs::write(dir.path().join("junk"), b"not a bundle").expect("write");
    assert!(BundleReader::open(&dir.path().join("junk")).is_err());
}

#[tokio::test]
async fn tampering_with_the_export_is_caught_and_named() {
    let t = busy_hub().await;
    let notes = checkpoints(&t);
    let honest = entries(&t);
    let size = honest.len() as u64;

    // Flip one byte of a statement: its id no longer matches.
    let mut e = honest.clone();
    let env = e[7].envelope.as_mut().expect("env");
    let mut payload = env.payload.to_vec();
    let last = payload.len() - 1;
    payload[last] ^= 1;
    env.payload = payload.into();
    fails_at(
        verify(&notes, e.clone()),
        Location::Entry(7),
        "the entry was altered",
    );
    // ... and if the forger also fixes the recorded id, the signature fails.
    let parsed =
        coalition_hub::statement::ParsedEnvelope::parse(e[7].envelope.clone().expect("env"))
            .expect("still parses");
    e[7].statement_id = parsed.id.0.to_vec();
    fails_at(verify(&notes, e), Location::Entry(7), "does not verify");

    // Drop an entry in the middle, or at the end.
    let mut e = honest.clone();
    e.remove(6);
    fails_at(
        verify(&notes, e),
        Location::Entry(6),
        "missing: the next entry present is 7",
    );
    let mut e = honest.clone();
    e.pop();
    fails_at(
        verify(&notes, e),
        Location::Checkpoint(size),
        "entries were dropped or the export is truncated",
    );

    // Swap two entries (renumbered so the sequence looks intact): the root changes.
    let mut e = honest.clone();
    e.swap(5, 6);
    e[5].seq = 5;
    e[6].seq = 6;
    fails_at(
        verify(&notes, e),
        Location::Checkpoint(size / 2),
        "history was rewritten",
    );
    // Swapped without renumbering: out of order.
    let mut e = honest.clone();
    e.swap(5, 6);
    fails_at(
        verify(&notes, e),
        Location::Entry(5),
        "missing: the next entry present is 6",
    );

    // A checkpoint whose signature was replaced.
    let mut bad_notes = notes.clone();
    let other = SigningKey::generate(&mut rand::rngs::OsRng);
    let forged = Checkpoint::new(
        "test.coalition.local",
        TreeSize(1),
        t.store.root(1).expect("root"),
    )
    .sign("test.coalition.local", &other)
    .expect("sign");
    bad_notes[0] = forged;
    fails_at(
        verify(&bad_notes, honest.clone()),
        Location::Checkpoint(1),
        "not validly signed by the hub key",
    );

    // A split view: the hub signed two different roots for the same size.
    let mut split = notes.clone();
    split.push(sign_checkpoint(&t, size / 2, Hash([7; 32])));
    fails_at(
        verify(&split, honest.clone()),
        Location::Checkpoint(size / 2),
        "split view",
    );

    // An entry the hub should never have logged: signed with acme's retired key, appended.
    let mut e = honest.clone();
    let late = sign_new(
        &id("acme"),
        &t.key("acme"),
        Body::HashSet(sha256_set(77, 1)),
    );
    let parsed = coalition_hub::statement::ParsedEnvelope::parse(late.clone()).expect("parse");
    e.push(pb::SyncEntry {
        seq: size,
        received_at_ms: coalition_hub::store::now_ms(),
        statement_id: parsed.id.0.to_vec(),
        envelope: Some(late),
        compromised_key_ids: vec![],
    });
    fails_at(
        verify(&notes, e),
        Location::Entry(size),
        "was retired at log entry",
    );

    // The honest one still verifies.
    verify(&notes, honest).expect("honest");
}

#[tokio::test]
async fn previous_checkpoints_must_be_consistent() {
    let t = busy_hub().await;
    let honest = entries(&t);
    let old = sign_checkpoint(&t, 10, t.store.root(10).expect("root"));
    let mut v = Verifier::new();
    v.previous(old).expect("previous");
    for e in honest.clone() {
        v.entry(e).expect("entry");
    }
    assert_eq!(v.finish().expect("consistent").previous, Some(10));
    // A checkpoint of another history (a fork shown to someone earlier) is inconsistent.
    let forked = sign_checkpoint(&t, 10, Hash([1; 32]));
    let mut v = Verifier::new();
    v.previous(forked).expect("previous");
    let err = honest
        .into_iter()
        .try_for_each(|e| v.entry(e))
        .and_then(|()| v.finish().map(|_| ()))
        .expect_err("forked");
    assert_eq!(err.location, Location::Previous(10), "{err}");
}

#[tokio::test]
async fn tampering_with_the_store_is_caught() {
    // A log written without a server, so nothing else holds the store while it is tampered with.
    let dir = tempfile::tempdir().expect("tmp");
    let certs = coalition_hub::pki::CertDir::new(dir.path().join("certs"));
    certs.init(&[id("admin"), id("acme")]).expect("pki");
    let data = dir.path().join("data");
    let store = Store::open(&data, &Default::default()).expect("store");
    let admins = [(id("admin"), "Admin".to_string())];
    governance::found_from_certs(&store, &certs, "test.coalition.local", &admins, 1)
        .await
        .expect("genesis");
    let acme = certs.signing_key(&id("acme")).expect("key");
    let admit = governance::admission(
        &id("acme"),
        "Acme",
        &[Role::Member],
        &[acme.verifying_key()],
    );
    let admin_key = certs.signing_key(&id("admin")).expect("key");
    governance::append_offline(
        &store,
        governance::change(&id("admin"), &admin_key, Action::Admit(admit), ""),
    )
    .await
    .expect("admit");
    for i in 0..10 {
        let set = sign_new(&id("acme"), &acme, Body::HashSet(sha256_set(i, 2)));
        governance::append_offline(&store, set)
            .await
            .expect("append");
    }
    let size = store.log_size();
    let hub_key = certs.hub_signing_key().expect("hub key");
    let note = Checkpoint::new(
        "test.coalition.local",
        TreeSize(size),
        store.root(size).expect("root"),
    )
    .sign("test.coalition.local", &hub_key)
    .expect("sign");
    drop(store);
    flip_stored_payload_byte(&data, 8);
    let reopened = Store::open(&data, &Default::default()).expect("reopen");
    let registry = reopened.registry();
    let tampered: Vec<pb::SyncEntry> = reopened
        .entries(0, u64::MAX)
        .map(|e| e.expect("entry").into_sync_entry(&registry))
        .collect();
    fails_at(
        verify(&[note], tampered),
        Location::Entry(8),
        "the entry was altered",
    );
}

/// Rewrites entry `seq` in the sled `log` tree with one payload byte flipped.
fn flip_stored_payload_byte(data: &Path, seq: u64) {
    use prost::Message;
    // sled releases its lock from background threads just after the store is dropped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let db = loop {
        match sled::open(data) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("sled: {e}"),
        }
    };
    let log = db.open_tree("log").expect("tree");
    let mut key = vec![b'E'];
    key.extend_from_slice(&seq.to_be_bytes());
    let raw = log.get(&key).expect("get").expect("entry exists");
    let mut entry = coalition_hub::store::StoredEntry::decode(raw.as_ref()).expect("decode");
    let env = entry.envelope.as_mut().expect("env");
    let mut payload = env.payload.to_vec();
    payload[0] ^= 0x01;
    env.payload = payload.into();
    log.insert(&key, entry.encode_to_vec()).expect("write");
    db.flush().expect("flush");
}
