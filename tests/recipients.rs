//! Restricted recipients end to end over real mutual TLS (docs/PROTOCOL.md §2.7): acme shares
//! a hash set with globex only; outsider, an active member it did not name, gets the signed
//! header and never the content through any RPC (Sync, GetStatement, GetEntries, Match) nor the
//! CLI (`coalition sync` output, `coalition show`), while globex, acme and the auditor get it.
//! A hub that withholds a body under a false "restricted" claim is caught by the member's
//! sync; the auditor still verifies the log; the front door refuses recipients that are not
//! active members and restricted governance statements, and stores nothing; opinions on a
//! restricted entry copy no hash, and admins judge one they cannot read by its header.

use crate::common;

use coalition_hub::client::{Client, sign_new, sign_new_for};
use coalition_hub::governance;
use coalition_hub::lifecycle::Retraction;
use coalition_hub::membership::{Action, Role};
use coalition_hub::pb;
use coalition_hub::settings::{Quotas, Section};
use coalition_hub::statement::{Body, HashType, Header, Kind, Recipients, StatementId};
use common::hostile::{Bent, HostileHub, export, sync_cli};
use common::{TestHub, id, sha256_set, sha256_value, sign_raw, sync_all};
use prost::Message;
use tonic::Code;

/// The seed of the restricted set's hashes, and of the open set's.
const SECRET: u64 = 7001;
const OPEN: u64 = 7002;

/// A hub with outsider admitted as a member, an open set by acme and a set by acme restricted
/// to globex: (hub, restricted id, open id).
async fn shared() -> (TestHub, StatementId, StatementId) {
    let t = TestHub::start().await;
    t.admin_change(Action::Admit(governance::admission(
        &id("outsider"),
        "Outsider",
        &[Role::Member],
        &[t.key("outsider").verifying_key()],
    )))
    .await
    .expect("admit outsider");
    let mut acme = t.client("acme").await;
    let open = acme
        .submit(sign_new(
            &id("acme"),
            &t.key("acme"),
            Body::HashSet(sha256_set(OPEN, 2)),
        ))
        .await
        .expect("open set");
    let secret = acme
        .submit(restricted_set(&t, &["globex"]))
        .await
        .expect("restricted set");
    let id_of = |r: pb::SubmitResponse| {
        StatementId::from_slice(&r.receipt.expect("receipt").statement_id).expect("id")
    };
    (t, id_of(secret), id_of(open))
}

/// acme's set of 3 hashes of [`SECRET`], restricted to `to`.
fn restricted_set(t: &TestHub, to: &[&str]) -> pb::Envelope {
    let recipients =
        Recipients::from_members(to.iter().map(|m| id(m)).collect(), &id("acme")).expect("valid");
    sign_new_for(
        &id("acme"),
        &t.key("acme"),
        Body::HashSet(sha256_set(SECRET, 3)),
        &recipients,
    )
}

/// The entry of `statement` in `entries`.
fn entry_of<'a>(entries: &'a [pb::SyncEntry], statement: &StatementId) -> &'a pb::SyncEntry {
    entries
        .iter()
        .find(|e| e.statement_id == statement.0)
        .expect("the statement is in the log")
}

/// Whether the entry came with its body.
fn has_body(entry: &pb::SyncEntry) -> bool {
    entry.envelope.as_ref().is_some_and(|e| !e.body.is_empty())
}

/// The members that read the restricted set, and the one that does not.
const READERS: [&str; 3] = ["globex", "acme", "auditor"];

#[tokio::test]
async fn sync_sends_a_restricted_body_to_its_readers_only() {
    let (t, secret, open) = shared().await;
    for member in ["outsider", "globex", "acme", "auditor"] {
        let mut client = t.client(member).await;
        let (entries, next) = sync_all(&mut client, pb::SyncRequest::default()).await;
        assert_eq!(next, t.store.log_size());
        let entry = entry_of(&entries, &secret);
        let header = Header::decode(&entry.envelope.as_ref().expect("envelope").payload)
            .expect("the header is sent whole");
        assert_eq!(header.recipients.to_string(), "globex");
        assert!(header.hash_types.is_empty() && header.labels.is_empty());
        assert_eq!(has_body(entry), member != "outsider", "{member}");
        assert!(has_body(entry_of(&entries, &open)), "{member}: open set");
    }
    // A hash-type or label filter selects a restricted header by kind and issuer only; the
    // read rule still decides.
    let filtered = pb::SyncRequest {
        hash_types: vec![HashType::Sha256.to_wire() as i32],
        labels: vec!["test".into()],
        ..Default::default()
    };
    let (entries, _) = sync_all(&mut t.client("globex").await, filtered.clone()).await;
    assert!(has_body(entry_of(&entries, &secret)));
    let (entries, _) = sync_all(&mut t.client("outsider").await, filtered).await;
    assert!(!has_body(entry_of(&entries, &secret)));
    // Every member's own replica accepts what it got, and proves it.
    for member in ["outsider", "globex"] {
        let synced = t
            .sync_proven(member, Default::default())
            .await
            .expect("verified sync");
        let seq = entry_of(
            &sync_all(&mut t.client(member).await, Default::default())
                .await
                .0,
            &secret,
        )
        .seq;
        assert_eq!(synced.at(seq).statement().is_some(), member == "globex");
    }
}

#[tokio::test]
async fn get_statement_sends_a_restricted_body_to_its_readers_only() {
    let (t, secret, _) = shared().await;
    for member in ["outsider", "globex", "acme", "auditor"] {
        let entry = t
            .client(member)
            .await
            .hub
            .get_statement(pb::GetStatementRequest {
                statement_id: secret.0.to_vec(),
            })
            .await
            .expect("get statement")
            .into_inner();
        assert_eq!(
            has_body(&entry),
            READERS.contains(&member),
            "{member}: body iff a reader"
        );
        assert!(entry.envelope.is_some_and(|e| !e.payload.is_empty()));
    }
}

#[tokio::test]
async fn get_entries_sends_a_restricted_body_to_its_readers_only() {
    let (t, secret, open) = shared().await;
    let size = t.store.log_size();
    for member in ["outsider", "globex", "acme", "auditor"] {
        let mut stream = t
            .client(member)
            .await
            .audit
            .get_entries(pb::GetEntriesRequest {
                start: 0,
                end: size,
            })
            .await
            .expect("get entries")
            .into_inner();
        let mut entries = Vec::new();
        while let Some(e) = stream.message().await.expect("entry") {
            entries.push(e);
        }
        assert_eq!(entries.len() as u64, size);
        assert_eq!(
            has_body(entry_of(&entries, &secret)),
            READERS.contains(&member),
            "{member}"
        );
        assert!(has_body(entry_of(&entries, &open)), "{member}: open set");
    }
}

#[tokio::test]
async fn match_finds_restricted_hashes_for_their_readers_only() {
    let (t, secret, open) = shared().await;
    let queries = vec![
        pb::MatchQuery {
            r#type: HashType::Sha256.to_wire() as i32,
            value: sha256_value(SECRET, 1),
            quality: None,
        },
        pb::MatchQuery {
            r#type: HashType::Sha256.to_wire() as i32,
            value: sha256_value(OPEN, 1),
            quality: None,
        },
    ];
    for member in ["outsider", "globex", "acme", "auditor"] {
        let answer = t
            .client(member)
            .await
            .hub
            .r#match(pb::MatchRequest {
                queries: queries.clone(),
                ..Default::default()
            })
            .await
            .expect("match")
            .into_inner();
        let found: Vec<&[u8]> = answer.results[0]
            .matches
            .iter()
            .map(|m| m.statement_id.as_slice())
            .collect();
        let expected: Vec<&[u8]> = if READERS.contains(&member) {
            vec![&secret.0[..]]
        } else {
            vec![]
        };
        assert_eq!(found, expected, "{member}");
        assert_eq!(answer.results[1].matches.len(), 1, "{member}: open set");
        assert_eq!(answer.results[1].matches[0].statement_id, open.0.to_vec());
    }
}

#[tokio::test]
async fn match_snapshot_keeps_the_recipients_across_a_restart() {
    let (t, _, _) = shared().await;
    let query = vec![pb::MatchQuery {
        r#type: HashType::Sha256.to_wire() as i32,
        value: sha256_value(SECRET, 0),
        quality: None,
    }];
    let hits = |mut client: Client, queries: Vec<pb::MatchQuery>| async move {
        client
            .hub
            .r#match(pb::MatchRequest {
                queries,
                ..Default::default()
            })
            .await
            .expect("match")
            .into_inner()
            .results[0]
            .matches
            .len()
    };
    let t = TestHub::resume(t.stop().await).await;
    assert_eq!(hits(t.client("outsider").await, query.clone()).await, 0);
    assert_eq!(hits(t.client("globex").await, query).await, 1);
}

#[tokio::test]
async fn cli_sync_output_and_show_hold_restricted_content_for_readers_only() {
    let (t, secret, _) = shared().await;
    let dir = tempfile::tempdir().expect("dir");
    let secret_hex = hex::encode(sha256_value(SECRET, 0));
    let open_hex = hex::encode(sha256_value(OPEN, 0));
    for member in ["outsider", "globex"] {
        let out = dir.path().join(format!("{member}.csv"));
        sync_cli(&t.addr, t.certs.root(), member, &out, &[])
            .await
            .ok();
        let rows = std::fs::read_to_string(&out).expect("output");
        assert!(rows.contains(&open_hex), "{member}: {rows}");
        assert_eq!(
            rows.contains(&secret_hex),
            member == "globex",
            "{member}: {rows}"
        );
        let mut command = coalition_in(dir.path());
        command
            .args(["show", &secret.to_string(), "--synced"])
            .arg(&out)
            .args(["--hub", &t.addr, "--as", member, "--certs"])
            .arg(t.certs.root());
        let show = output(command).await;
        let stdout = String::from_utf8_lossy(&show.stdout);
        let stderr = String::from_utf8_lossy(&show.stderr);
        if member == "globex" {
            assert!(show.status.success(), "{stderr}");
            assert!(stdout.contains("restricted to: globex"), "{stdout}");
            assert!(stdout.contains("entries: 3"), "{stdout}");
        } else {
            assert_eq!(show.status.code(), Some(1), "{stdout}{stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
            assert!(
                stderr.starts_with("error: ") && stderr.contains("is restricted to globex"),
                "{stderr}"
            );
            assert!(!stdout.contains(&secret_hex));
        }
    }
}

#[tokio::test]
async fn cli_submit_restricts_to_the_recipients_given() {
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let hashes = dir.path().join("hashes.csv");
    std::fs::write(&hashes, format!("sha256,{}\n", hex::encode([9u8; 32]))).expect("write");
    let before = t.store.log_size();
    let run = |extra: &[&str]| {
        let mut command = coalition_in(dir.path());
        command
            .args(["submit", "--hub", &t.addr, "--as", "acme", "--certs"])
            .arg(t.certs.root())
            .arg("--hashes")
            .arg(&hashes)
            .args(extra);
        output(command)
    };
    // A recipient that is not a member: one line naming it, exit 1, nothing stored.
    let refused = run(&["--recipient", "ghost", "--recipient", "globex"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("INVALID_ARGUMENT") || stderr.contains("invalid"),
        "{stderr}"
    );
    assert!(stderr.contains("ghost"), "{stderr}");
    assert_eq!(t.store.log_size(), before);
    let ok = run(&[
        "--recipient",
        "globex",
        "--recipient",
        "globex",
        "--new-submission",
    ])
    .await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let last = t
        .store
        .entry(t.store.log_size() - 1)
        .expect("read")
        .expect("entry");
    let header = last.header().expect("header");
    assert_eq!(header.recipients.to_string(), "globex");
}

#[tokio::test]
async fn recipients_that_are_not_active_members_are_refused_by_name() {
    let t = TestHub::start().await;
    // outsider holds a certificate but was never admitted; ghost does not exist.
    let before = t.store.log_size();
    let mut acme = t.client("acme").await;
    let status = refused(
        &mut acme,
        restricted_set(&t, &["ghost", "globex", "outsider"]),
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("not active members of this coalition: ghost, outsider"),
        "{status:?}"
    );
    // A suspended member is not an active one.
    t.admin_change(Action::Suspend(id("globex")))
        .await
        .expect("suspend globex");
    let size = t.store.log_size();
    let status = refused(&mut acme, restricted_set(&t, &["globex"])).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains(": globex;"), "{status:?}");
    assert_eq!(t.store.log_size(), size, "nothing stored");
    assert_eq!(size, before + 1, "only the suspension was logged");
    // And in a batch, that envelope alone.
    let batch = acme
        .hub
        .submit_batch(pb::SubmitBatchRequest {
            envelopes: vec![restricted_set(&t, &["ghost"]), t.hash_set("acme", 7100, 1)],
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(batch.outcomes[0].code, Code::InvalidArgument as i32);
    assert!(batch.outcomes[0].message.contains("ghost"));
    assert_eq!(batch.outcomes[1].code, Code::Ok as i32);
    assert_eq!(t.store.log_size(), size + 1);
}

/// Runs `command` (the `coalition` binary) to its end off the async workers, which serve the
/// in-process hub it talks to.
async fn output(mut command: std::process::Command) -> std::process::Output {
    command
        .env_remove("RUST_LOG")
        .env_remove("COALITION_MEMBER");
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run coalition")
}

/// The `coalition` binary's command line, run in `dir`.
fn coalition_in(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_coalition"));
    command.current_dir(dir);
    command
}

/// Submits `envelope`, which the hub must refuse: its status.
async fn refused(client: &mut Client, envelope: pb::Envelope) -> tonic::Status {
    client
        .hub
        .submit(pb::SubmitRequest {
            envelope: Some(envelope),
        })
        .await
        .expect_err("refused")
}

/// `envelope` with its header rewritten to name `recipients` (and `edit` applied), re-signed
/// by `key`: what a client that restricts anything would send.
fn restricted_copy(
    envelope: &pb::Envelope,
    recipients: &[&str],
    key: &ed25519_dalek::SigningKey,
    edit: impl FnOnce(&mut pb::Statement),
) -> pb::Envelope {
    let mut header = pb::Statement::decode(envelope.payload.as_ref()).expect("header");
    header.recipients = recipients.iter().map(|r| (*r).to_owned()).collect();
    edit(&mut header);
    sign_raw(header.encode_to_vec(), envelope.body.to_vec(), key)
}

#[tokio::test]
async fn restricted_headers_are_refused_where_the_protocol_forbids_them() {
    let t = TestHub::start().await;
    let (admin, acme) = (t.key("admin"), t.key("acme"));
    let (set, _) = share_open(&t).await;
    let membership =
        governance::change(&id("admin"), &admin, Action::Suspend(id("globex")), "test");
    let settings = governance::settings(
        &id("admin"),
        &admin,
        Section::Quotas(Quotas::default()),
        "test",
    );
    let retraction = sign_new(
        &id("acme"),
        &acme,
        Body::Retraction(Retraction {
            target: set,
            entries: Vec::new(),
            reason: "wrong".into(),
            admin_quorum: false,
            erase: false,
        }),
    );
    let open_set = t.hash_set("acme", 7200, 2);
    let before = t.store.log_size();
    let cases: Vec<(&str, &str, pb::Envelope, &str)> = vec![
        (
            "membership",
            "admin",
            restricted_copy(&membership, &["acme"], &admin, |_| {}),
            "a membership statement cannot be restricted",
        ),
        (
            "settings",
            "admin",
            restricted_copy(&settings, &["acme"], &admin, |_| {}),
            "a settings statement cannot be restricted",
        ),
        (
            "retraction",
            "acme",
            restricted_copy(&retraction, &["globex"], &acme, |_| {}),
            "a retraction statement cannot be restricted",
        ),
        (
            "hash types shown",
            "acme",
            restricted_copy(&open_set, &["globex"], &acme, |h| h.labels.clear()),
            "hash_types: must be empty in a restricted statement's header",
        ),
        (
            "labels shown",
            "acme",
            restricted_copy(&open_set, &["globex"], &acme, |h| h.hash_types.clear()),
            "labels: must be empty in a restricted statement's header",
        ),
        (
            "not canonical order",
            "acme",
            restricted_copy(&open_set, &["globex", "auditor"], &acme, |h| {
                h.hash_types.clear();
                h.labels.clear();
            }),
            "recipients: must be in ascending byte order",
        ),
        (
            "the issuer itself",
            "acme",
            restricted_copy(&open_set, &["acme"], &acme, |h| {
                h.hash_types.clear();
                h.labels.clear();
            }),
            "names the issuer 'acme'",
        ),
    ];
    for (case, submitter, envelope, message) in cases {
        let status = refused(&mut t.client(submitter).await, envelope).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        assert!(status.message().contains(message), "{case}: {status:?}");
        assert_eq!(t.store.log_size(), before, "{case}: nothing stored");
    }
}

/// Submits an open set by acme: its id and seq.
async fn share_open(t: &TestHub) -> (StatementId, u64) {
    let receipt = t
        .client("acme")
        .await
        .submit(t.hash_set("acme", 7300, 2))
        .await
        .expect("submit")
        .receipt
        .expect("receipt");
    (
        StatementId::from_slice(&receipt.statement_id).expect("id"),
        receipt.seq,
    )
}

/// Whether a header is acme's restricted set.
fn restricted(h: &Header) -> bool {
    h.is_restricted()
}

#[tokio::test]
async fn a_hub_withholding_a_body_under_a_false_restricted_claim_is_caught() {
    let (t, _, _) = shared().await;
    let log = export(&t).await;
    let secret_seq = log
        .entries
        .iter()
        .find(|e| {
            e.envelope
                .as_ref()
                .and_then(|en| Header::decode(&en.payload).ok())
                .is_some_and(|h| h.is_restricted())
        })
        .expect("restricted entry")
        .seq;
    let open_seq = log
        .entries
        .iter()
        .find(|e| {
            e.envelope
                .as_ref()
                .and_then(|en| Header::decode(&en.payload).ok())
                .is_some_and(|h| h.kind == Kind::HashSet && !h.is_restricted())
        })
        .expect("open entry")
        .seq;
    let dir = tempfile::tempdir().expect("dir");
    let faithful = || Bent::faithful(log.entries.clone(), log.members.clone());
    // Withholding an unrestricted statement's body: caught, naming the entry.
    let hub = HostileHub::serve(
        &t,
        faithful().withholding(|h| h.kind == Kind::HashSet && !h.is_restricted()),
    )
    .await;
    let run = sync_cli(
        &hub.addr,
        t.certs.root(),
        "outsider",
        &dir.path().join("a.csv"),
        &[],
    )
    .await;
    let line = run.failed();
    assert!(
        line.contains(&format!("verification FAILED at entry {open_seq}"))
            && line.contains("withholding a selected statement"),
        "{line}"
    );
    drop(hub);
    // Withholding a restricted body from one of its recipients: caught.
    let hub = HostileHub::serve(&t, faithful().withholding(restricted)).await;
    let run = sync_cli(
        &hub.addr,
        t.certs.root(),
        "globex",
        &dir.path().join("b.csv"),
        &[],
    )
    .await;
    let line = run.failed();
    assert!(
        line.contains(&format!("verification FAILED at entry {secret_seq}"))
            && line.contains("withholding a selected statement"),
        "{line}"
    );
    // ... and from its issuer.
    let run = sync_cli(
        &hub.addr,
        t.certs.root(),
        "acme",
        &dir.path().join("c.csv"),
        &[],
    )
    .await;
    assert!(
        run.failed()
            .contains(&format!("verification FAILED at entry {secret_seq}"))
    );
    // Withholding it from a member it does not name is what an honest hub does.
    sync_cli(
        &hub.addr,
        t.certs.root(),
        "outsider",
        &dir.path().join("d.csv"),
        &[],
    )
    .await
    .ok();
}

#[tokio::test]
async fn the_auditor_verifies_a_log_with_restricted_statements() {
    let (t, _, _) = shared().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut command = coalition_in(dir.path());
    command
        .args([
            "audit", "verify", "--hub", &t.addr, "--as", "auditor", "--certs",
        ])
        .arg(t.certs.root());
    let verified = output(command).await;
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && stdout.contains("audit OK"),
        "{stdout}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // A member that is not named audits every header and the bodies it may read; the
    // bundle it exports lacks the restricted body, which a verifier requiring every body
    // (no --as) refuses, naming the entry.
    let as_outsider = |args: &[&str]| {
        let mut command = coalition_in(dir.path());
        command
            .args(args)
            .args(["--as", "outsider", "--certs"])
            .arg(t.certs.root());
        output(command)
    };
    let live = as_outsider(&["audit", "verify", "--hub", &t.addr]).await;
    assert!(
        live.status.success(),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    let exported = as_outsider(&["audit", "export", "--hub", &t.addr, "--out", "o.bundle"]).await;
    assert!(exported.status.success());
    let mut command = coalition_in(dir.path());
    command.args(["audit", "verify", "o.bundle"]);
    let strict = output(command).await;
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert_eq!(strict.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("withholding a selected statement"),
        "{stderr}"
    );
    let lax = as_outsider(&["audit", "verify", "o.bundle"]).await;
    assert!(
        lax.status.success(),
        "{}",
        String::from_utf8_lossy(&lax.stderr)
    );
}

#[tokio::test]
async fn opinions_on_a_restricted_entry_copy_no_hash_and_admins_judge_it_by_its_header() {
    use coalition_hub::lifecycle::{EntryState, HashKey, Opinion, Verdict};
    let (t, secret, _) = shared().await;
    let secret_hex = secret.to_string();
    // Copying the hash would publish it to every member: refused, nothing stored.
    let size = t.store.log_size();
    let copying = sign_new(
        &id("globex"),
        &t.key("globex"),
        Body::Opinion(Opinion {
            target: secret,
            entry: 0,
            verdict: Verdict::FalsePositive,
            note: String::new(),
            hash: Some(HashKey {
                hash_type: HashType::Sha256,
                value: sha256_value(SECRET, 0),
            }),
            admin_quorum: false,
        }),
    );
    let status = refused(&mut t.client("globex").await, copying).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("copies no hash"), "{status:?}");
    assert_eq!(t.store.log_size(), size, "nothing stored");

    // A recipient's opinion through the CLI copies none, and is logged.
    let said = common::lifecycle::cli(
        &t,
        "globex",
        &["opinion", &secret_hex, "--entry", "0", "false-positive"],
    )
    .await;
    assert!(said.status.success(), "{said:?}");
    // An admin who may not read the body quarantines an entry by its signed header.
    let judged = common::lifecycle::cli(
        &t,
        "admin",
        &["admin", "quarantine", &secret_hex, "--entry", "1"],
    )
    .await;
    assert!(judged.status.success(), "{judged:?}");

    // What every member reads: both opinions, neither holding a hash of the restricted set.
    let (entries, _) = sync_all(&mut t.client("outsider").await, pb::SyncRequest::default()).await;
    let opinions: Vec<Opinion> = entries
        .iter()
        .filter_map(|e| {
            let parsed =
                coalition_hub::statement::ParsedEnvelope::parse(e.envelope.clone()?).ok()?;
            match parsed.statement?.body {
                Body::Opinion(o) if o.target == secret => Some(o),
                _ => None,
            }
        })
        .collect();
    assert_eq!(opinions.len(), 2, "{opinions:?}");
    assert!(opinions.iter().all(|o| o.hash.is_none()), "{opinions:?}");
    let secret_value = hex::encode(sha256_value(SECRET, 0));
    assert!(
        entries.iter().all(|e| e
            .envelope
            .as_ref()
            .is_none_or(|env| !hex::encode(&env.body).contains(&secret_value))),
        "no hash of the restricted set reaches outsider"
    );

    // Its readers see entry 1 quarantined.
    let mut globex = t.client("globex").await;
    let asked =
        common::lifecycle::matches_in(&mut globex, SECRET, 1, &[pb::EntryState::Quarantined]).await;
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        EntryState::from_wire(asked[0].state),
        Some(EntryState::Quarantined)
    );
    assert!(
        common::lifecycle::matches_in(&mut globex, SECRET, 1, &[])
            .await
            .is_empty()
    );
}
