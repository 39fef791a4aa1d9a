//! The offline verifier against real logs: an honest export verifies; every kind of tampering
//! with the store or the export fails, naming the entry or checkpoint.

use crate::common;

use coalition_hub::audit::bundle::MAX_COSIGNATURE_LINES;
use coalition_hub::audit::bundle::{BundleReader, BundleWriter, Record};
use coalition_hub::audit::{AuditError, Location, Summary, Verifier, VerifyError, verify_bundle};
use coalition_hub::client::sign_new;
use coalition_hub::governance;
use coalition_hub::log::cosignature::Cosigner;
use coalition_hub::log::{Checkpoint, Hash, MemoryTree, TreeSize};
use coalition_hub::membership::{Action, KeyId, MAX_CLOCK_SKEW_MS, Role};
use coalition_hub::pb;
use coalition_hub::pki::Created;
use coalition_hub::replica::Fault;
use coalition_hub::settings::Section;
use coalition_hub::statement::{Body, ParsedEnvelope, Statement, StatementId, sign_statement};
use coalition_hub::store::{Store, leaf_data};
use coalition_hub::witness::policy::WitnessPolicy;
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
        .map(|e| e.expect("entry").into_sync_entry(&registry, true))
        .collect()
}

/// Checkpoints at `sizes` of a (possibly bent) log, signed with the hub key over roots
/// recomputed from the entries' recorded ids and receipt times: what a hub operator who holds
/// the key signs for a history it forged, so that only the rule a case targets can fail.
fn resign(t: &TestHub, entries: &[pb::SyncEntry], sizes: &[u64]) -> Vec<String> {
    let mut tree = MemoryTree::new();
    let mut roots = Vec::new();
    for e in entries {
        let id = StatementId::from_slice(&e.statement_id).expect("32-byte id");
        tree.append(&leaf_data(&id, e.received_at_ms));
        roots.push(tree.root());
    }
    sizes
        .iter()
        .map(|&n| sign_checkpoint(t, n, roots[n as usize - 1]))
        .collect()
}

/// Writes checkpoints and entries as `coalition audit export` does (checkpoints first) and
/// verifies the file as `coalition audit verify` does.
fn verify_export(notes: &[String], entries: Vec<pb::SyncEntry>) -> Result<Summary, AuditError> {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("export.bundle");
    let mut w = BundleWriter::create(&path).expect("create");
    for n in notes {
        w.write(Record::checkpoint(n.clone())).expect("write");
    }
    for e in entries {
        w.write(Record::Entry(e)).expect("write");
    }
    w.finish().expect("finish");
    verify_bundle(&path, &[]).map_err(|e| match e {
        VerifyError::Audit(e) => e,
        VerifyError::Bundle(e) => panic!("the bundle itself is fine: {e}"),
    })
}

/// A log entry for `envelope`, logged at `seq` at `received_at_ms`.
fn logged(seq: u64, received_at_ms: i64, envelope: pb::Envelope) -> pb::SyncEntry {
    let id = ParsedEnvelope::parse(envelope.clone()).expect("parses").id;
    pb::SyncEntry {
        seq,
        received_at_ms,
        statement_id: id.0.to_vec(),
        envelope: Some(envelope),
        compromised_key_ids: vec![],
        erased_by: None,
        relay: None,
    }
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
        w.write(Record::checkpoint(n.clone())).expect("write");
    }
    for e in entries(&t) {
        w.write(Record::Entry(e)).expect("write");
    }
    w.finish().expect("finish");
    let mut r = BundleReader::open(&path).expect("open");
    let mut v = Verifier::new();
    while let Some(record) = r.next_record().expect("read") {
        match record {
            Record::Checkpoint { note, .. } => v.checkpoint(note).expect("checkpoint"),
            Record::Entry(e) => v.entry(e).expect("entry"),
        }
    }
    let summary = v.finish().expect("an honest log verifies");
    let size = t.store.log_size();
    assert_eq!(summary.entries, size);
    assert_eq!(summary.checkpoints, 4);
    assert_eq!(summary.latest_checkpoint, Some(size));
    assert_eq!(summary.root, t.store.root(size).expect("root"));
    assert_eq!(summary.members, 5, "admin, acme, globex, auditor, alice");
    assert_eq!(summary.active_members, 4, "globex is suspended");
    assert_eq!(summary.membership_entries, 9);
    assert_eq!(summary.hub_name, "test.coalition.local");
    assert_eq!(
        summary.witnessing, None,
        "no witness policy in these settings"
    );
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

    // Change one byte of a statement's signed header: its id no longer matches.
    let bent_nonce = |entry: &mut pb::SyncEntry| {
        use prost::Message;
        let env = entry.envelope.as_mut().expect("env");
        let mut header = pb::Statement::decode(env.payload.as_ref()).expect("header");
        header.nonce[0] ^= 1;
        env.payload = header.encode_to_vec().into();
    };
    let mut e = honest.clone();
    bent_nonce(&mut e[7]);
    fails_at(
        verify(&notes, e.clone()),
        Location::Entry(7),
        "the entry was altered",
    );
    // ... and if the forger also fixes the recorded id, the signature fails.
    let parsed = ParsedEnvelope::parse(e[7].envelope.clone().expect("env")).expect("still parses");
    e[7].statement_id = parsed.id.0.to_vec();
    fails_at(verify(&notes, e), Location::Entry(7), "does not verify");
    // The body is not under the id: changing it breaks the digest the signed header names.
    let mut e = honest.clone();
    let env = e[7].envelope.as_mut().expect("env");
    let mut body = env.body.to_vec();
    let last = body.len() - 1;
    body[last] ^= 1;
    env.body = body.into();
    fails_at(
        verify(&notes, e),
        Location::Entry(7),
        "body: its SHA-256 or length is not what the signed header names",
    );

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
        "entries were dropped or the log is truncated",
    );

    // Swap two statements (renumbered and retimed so the sequence and the receipt times
    // look intact): the root changes.
    let mut e = honest.clone();
    e.swap(5, 6);
    for i in [5, 6] {
        e[i].seq = i as u64;
        e[i].received_at_ms = honest[i].received_at_ms;
    }
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
    e.push(logged(size, coalition_hub::store::now_ms(), late));
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
    // A log ends with a checkpoint of its own size.
    let size = honest.len() as u64;
    let last = sign_checkpoint(&t, size, t.store.root(size).expect("root"));
    let mut v = Verifier::new();
    v.previous(old).expect("previous");
    v.checkpoint(last.clone()).expect("checkpoint");
    for e in honest.clone() {
        v.entry(e).expect("entry");
    }
    assert_eq!(v.finish().expect("consistent").previous, Some(10));
    // A checkpoint of another history (a fork shown to someone earlier) is inconsistent.
    let forked = sign_checkpoint(&t, 10, Hash([1; 32]));
    let mut v = Verifier::new();
    v.previous(forked).expect("previous");
    v.checkpoint(last).expect("checkpoint");
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
        .map(|e| e.expect("entry").into_sync_entry(&registry, true))
        .collect();
    fails_at(
        verify(&[note], tampered),
        Location::Entry(8),
        "the entry was altered",
    );
}

/// What the auditor used to accept (issue 9), each on an export bent from a real log with its
/// checkpoints re-signed by the hub key, so that only the targeted rule fails.
#[tokio::test]
async fn replayed_unproven_and_misdated_logs_are_refused() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    for i in 0..2 {
        acme.submit(t.hash_set("acme", i, 2)).await.expect("acme");
    }
    t.admin_change(Action::Suspend(id("globex")))
        .await
        .expect("suspend");
    let reinstate = t
        .admin_change(Action::Reinstate(id("globex")))
        .await
        .expect("reinstate")
        .receipt
        .expect("receipt");
    t.admin_change(Action::Suspend(id("globex")))
        .await
        .expect("suspend again");
    let honest = entries(&t);
    let size = honest.len() as u64;
    let last_received = honest.last().expect("entries").received_at_ms;
    // The control: the honest export with a re-signed checkpoint of its size verifies.
    verify_export(&resign(&t, &honest, &[size]), honest.clone()).expect("honest");

    // The old admin-signed reinstatement, logged again after the later suspension.
    let mut replayed = honest.clone();
    let old = honest[reinstate.seq as usize]
        .envelope
        .clone()
        .expect("env");
    replayed.push(logged(size, last_received, old));
    // Receipt times going backwards.
    let k = t.base as usize + 1;
    let mut backwards = honest.clone();
    backwards[k].received_at_ms = honest[k - 1].received_at_ms - 1;
    // A statement dated after its receipt by more than the allowed clock skew.
    let key = t.key("acme");
    let future = Statement {
        issuer: id("acme"),
        key_id: KeyId::of(&key.verifying_key()),
        issued_at_ms: last_received + MAX_CLOCK_SKEW_MS + 1,
        nonce: [3; 16],
        body: Body::HashSet(sha256_set(99, 1)),
    };
    let mut misdated = honest.clone();
    misdated.push(logged(size, last_received, sign_statement(&future, &key)));

    // (case, the bent entries, the sizes of the checkpoints re-signed over them, where the
    // audit must fail, and the reason it must give)
    type Case = (&'static str, Vec<pb::SyncEntry>, Vec<u64>, Location, String);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("logged twice", replayed, vec![size + 1], Location::Entry(size), format!("was logged already, at entry {}", reinstate.seq)),
        ("entries after the last checkpoint", honest.clone(), vec![size - 2], Location::Entry(size - 2), format!("the log has {size} entries but its last signed checkpoint covers {}", size - 2)),
        ("no checkpoint at all", honest.clone(), vec![], Location::Entry(0), "its last signed checkpoint covers 0: the last entries are not proven".into()),
        ("receipt times going backwards", backwards, vec![size], Location::Entry(k as u64), "receipt times never go backwards".into()),
        ("issued after its receipt + skew", misdated, vec![size + 1], Location::Entry(size), format!("more than {MAX_CLOCK_SKEW_MS} ms after the hub received it")),
    ];
    for (case, bent, sizes, location, text) in cases {
        let err = verify_export(&resign(&t, &bent, &sizes), bent).expect_err(case);
        assert_eq!(err.location, location, "{case}: {err}");
        assert!(
            err.to_string().contains(&text),
            "{case}: '{text}' not in '{err}'"
        );
    }
}

/// Rewrites entry `seq` in the store's records file with one payload byte flipped.
fn flip_stored_payload_byte(data: &Path, seq: u64) {
    use prost::Message;
    common::rewrite_stored_record(data, seq, |raw| {
        let mut entry = coalition_hub::store::StoredEntry::decode(&raw[..]).expect("decode");
        let env = entry.envelope.as_mut().expect("env");
        let mut payload = env.payload.to_vec();
        payload[0] ^= 0x01;
        env.payload = payload.into();
        *raw = entry.encode_to_vec();
    });
}

/// A hub whose settings name three witnesses (in-process keys; their URLs lead nowhere) with a
/// quorum of two, set after a few statements; more statements after it. Returns the hub, the
/// three witnesses and the log size before the policy.
async fn witnessed_hub() -> (TestHub, [Cosigner; 3], u64) {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    for i in 0..2 {
        acme.submit(t.hash_set("acme", i, 3)).await.expect("acme");
    }
    let before = t.store.log_size();
    let witnesses = [1u8, 2, 3].map(|n| cosigner(&format!("witness.test/w{n}"), n));
    let mut policy = String::new();
    for w in &witnesses {
        policy.push_str(&format!("witness {} http://127.0.0.1:9\n", w.public()));
    }
    policy.push_str("group two 2 witness.test/w1 witness.test/w2 witness.test/w3\nquorum two\n");
    let policy = WitnessPolicy::parse(&policy).expect("policy");
    t.client("admin")
        .await
        .submit(governance::settings(
            &id("admin"),
            &t.key("admin"),
            Section::Witnesses(Some(policy)),
            "test",
        ))
        .await
        .expect("witness policy");
    for i in 10..12 {
        acme.submit(t.hash_set("acme", i, 3)).await.expect("acme");
    }
    (t, witnesses, before)
}

/// The cosignature lines a case serves with a checkpoint, given its note text.
type Lines<'a> = &'a dyn Fn(&str) -> Vec<String>;

/// What a case expects: Ok(who cosigned the last checkpoint, whether the policy is met), or
/// Err(the witness a forged line names, the size of its checkpoint).
type Expected<'a> = Result<(&'a str, bool), (&'a str, u64)>;

fn cosigner(name: &str, seed: u8) -> Cosigner {
    Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).expect("cosigner")
}

/// Writes the real log with checkpoints at `cosigned`'s sizes, each with its cosignature
/// lines (given the checkpoint's note text), to a bundle and verifies it.
fn verify_cosigned(t: &TestHub, cosigned: &[(u64, Lines)]) -> Result<Summary, VerifyError> {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("export.bundle");
    let mut w = BundleWriter::create(&path).expect("create");
    for (size, lines) in cosigned {
        let root = t.store.root(*size).expect("root");
        let text = Checkpoint::new("test.coalition.local", TreeSize(*size), root).body();
        w.write(Record::Checkpoint {
            note: sign_checkpoint(t, *size, root),
            cosignatures: lines(&text),
        })
        .expect("write");
    }
    for e in entries(t) {
        w.write(Record::Entry(e)).expect("write");
    }
    w.finish().expect("finish");
    verify_bundle(&path, &[])
}

#[tokio::test]
async fn cosignatures_are_checked_against_the_witness_policy_of_their_checkpoint() {
    let (t, [w1, w2, w3], before) = witnessed_hub().await;
    let size = t.store.log_size();
    let impostor = cosigner("witness.test/w2", 9);
    let stranger = cosigner("witness.test/w9", 8);
    let none = |_: &str| Vec::new();
    // Each case: the cosignature lines of the checkpoint before the policy and of the last one;
    // Ok(who cosigned the last, met) or Err(the forged witness and the checkpoint's size).
    let good = |text: &str| vec![w1.cosign(text, 100), w2.cosign(text, 200)];
    let w1_only = |text: &str| vec![w1.cosign(text, 100)];
    let with_impostor = |text: &str| vec![w1.cosign(text, 100), impostor.cosign(text, 300)];
    let with_stranger = |text: &str| {
        vec![
            w1.cosign(text, 100),
            w3.cosign(text, 50),
            stranger.cosign(text, 300),
        ]
    };
    let other_note = |_: &str| {
        let text = Checkpoint::new(
            "test.coalition.local",
            TreeSize(before),
            t.store.root(before).expect("root"),
        )
        .body();
        vec![w1.cosign(&text, 100)]
    };
    let cases: [(Lines, Lines, Expected); 7] = [
        (
            &with_impostor,
            &good,
            Ok(("witness.test/w1, witness.test/w2", true)),
        ),
        (&none, &w1_only, Ok(("witness.test/w1", false))),
        (&none, &none, Ok(("none", false))),
        (
            &none,
            &with_stranger,
            Ok(("witness.test/w1, witness.test/w3", true)),
        ),
        (&none, &with_impostor, Err(("witness.test/w2", size))),
        (&none, &other_note, Err(("witness.test/w1", size))),
        (&good, &with_impostor, Err(("witness.test/w2", size))),
    ];
    for (i, (early, last, expected)) in cases.into_iter().enumerate() {
        let result = verify_cosigned(&t, &[(before, early), (size, last)]);
        match (result, expected) {
            (Ok(summary), Ok((names, met))) => {
                let w = summary.witnessing.expect("the settings hold a policy");
                assert_eq!(
                    (w.size, w.witnessed.names().as_str(), w.witnessed.met),
                    (size, names, met),
                    "case {i}"
                );
                assert!(w.witnessed.forged.is_empty(), "case {i}");
                assert!(
                    w.line().contains("quorum two over witnesses"),
                    "case {i}: {}",
                    w.line()
                );
            }
            (Err(VerifyError::Audit(e)), Err((witness, at))) => {
                assert_eq!(e.location, Location::Checkpoint(at), "case {i}: {e}");
                assert_eq!(
                    e.fault,
                    Fault::ForgedCosignature {
                        witness: witness.into()
                    },
                    "case {i}"
                );
                assert!(e.to_string().contains(witness), "case {i}: {e}");
            }
            (got, expected) => panic!("case {i}: expected {expected:?}, got {got:?}"),
        }
    }
    // Checked at every checkpoint, not only the last: a forged line on one between.
    let middle = before + 1;
    let e = verify_cosigned(&t, &[(middle, &with_impostor), (size, &good)]).expect_err("forged");
    assert!(
        matches!(&e, VerifyError::Audit(e) if e.location == Location::Checkpoint(middle)),
        "{e}"
    );
    // Bounded: more lines than a bundle may carry for one checkpoint is a damaged bundle.
    let flood = |text: &str| vec![w1.cosign(text, 1); MAX_COSIGNATURE_LINES + 1];
    let e = verify_cosigned(&t, &[(size, &flood)]).expect_err("too many lines");
    assert!(
        matches!(&e, VerifyError::Bundle(_)) && e.to_string().contains("at most 128"),
        "{e}"
    );
}
