//! Erasure under legal order end to end over real mutual TLS (docs/PROTOCOL.md §2.8): an admin
//! quorum erases a member's hash set; its body is gone from every RPC (Sync, GetStatement,
//! GetEntries, Match) and from the hub's data directory, while a fresh member's sync and the
//! auditor still verify the whole log. A member that held the set drops it from its
//! `--snapshot` and is told; a hub that withholds a body under a false erasure claim is
//! caught; a crash between logging the erasure and overwriting the body is repaired at the
//! next start; the front door refuses what may not be erased and stores nothing.

use crate::common;

use coalition_hub::governance;
use coalition_hub::lifecycle::Retraction;
use coalition_hub::pb;
use coalition_hub::pb::sync_response::Item;
use coalition_hub::statement::{Body, StatementId};
use coalition_hub::sync::FilterSpec;
use common::hostile::{Bent, HostileHub, beside, export, sync_cli};
use common::lifecycle::{cli, matches, matches_in, refused, share, share_signal};
use common::{TestHub, id, rewrite_stored_record, sha256_value, sync_all};
use tonic::Code;

/// The seed of the erased set's hashes, and how many it holds.
const SEED: u64 = 70;
const N: usize = 3;

/// An erasure of `target` signed by `member` (an admin-quorum statement: quorum 1 here).
fn erasure(t: &TestHub, member: &str, target: StatementId, reason: &str) -> pb::Envelope {
    erasure_of(
        t,
        member,
        Retraction {
            target,
            entries: vec![],
            reason: reason.into(),
            admin_quorum: true,
            erase: true,
        },
    )
}

fn erasure_of(t: &TestHub, member: &str, retraction: Retraction) -> pb::Envelope {
    governance::retraction(&id(member), &t.key(member), retraction)
}

/// Submits an erasure of `target` as the admin; its seq.
async fn erase(t: &TestHub, target: StatementId, reason: &str) -> u64 {
    t.client("admin")
        .await
        .submit(erasure(t, "admin", target, reason))
        .await
        .expect("erasure")
        .receipt
        .expect("receipt")
        .seq
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

/// The files of the hub's data directory holding any hash of the erased set.
fn holding_the_set(t: &TestHub) -> Vec<std::path::PathBuf> {
    (0..N as u64)
        .flat_map(|i| files_holding(&t.data, &sha256_value(SEED, i)))
        .collect()
}

/// `coalition audit verify` against the hub as its auditor: its stdout.
async fn audit(t: &TestHub) -> String {
    let output = cli(t, "auditor", &["audit", "verify"]).await;
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn all_states() -> Vec<pb::EntryState> {
    coalition_hub::lifecycle::EntryState::ALL
        .iter()
        .map(|s| s.to_wire())
        .collect()
}

#[tokio::test]
async fn an_erased_set_is_gone_from_every_rpc_and_the_disk_and_the_log_still_verifies() {
    let t = TestHub::start().await;
    let (set, seq) = share(&t, "acme", SEED, N).await;
    let (kept, _) = share(&t, "acme", SEED + 1, 1).await;
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, SEED, N as u64).await, [1, 1, 1]);
    assert!(!holding_the_set(&t).is_empty(), "the set is stored first");

    let by = erase(&t, set, "court order 2026-301").await;

    // Gone from the disk by the acknowledgement.
    assert_eq!(holding_the_set(&t), Vec::<std::path::PathBuf>::new());
    // Match: never returned, even when every state is asked for.
    assert_eq!(matches(&mut globex, SEED, N as u64).await, [0, 0, 0]);
    for i in 0..N as u64 {
        assert!(
            matches_in(&mut globex, SEED, i, &all_states())
                .await
                .is_empty()
        );
    }
    assert_eq!(matches(&mut globex, SEED + 1, 1).await, [1], "others stay");
    // GetStatement: the header and signatures only, to everyone, auditors included.
    for reader in ["globex", "acme", "auditor"] {
        let got = t
            .client(reader)
            .await
            .hub
            .get_statement(pb::GetStatementRequest {
                statement_id: set.0.to_vec(),
            })
            .await
            .expect("get statement")
            .into_inner();
        let envelope = got.envelope.expect("envelope");
        assert!(envelope.body.is_empty(), "{reader} got the body");
        assert!(!envelope.payload.is_empty() && !envelope.signatures.is_empty());
        assert_eq!(got.erased_by, Some(by), "{reader}");
    }
    // Sync (unfiltered) and GetEntries (the auditor's export).
    let (entries, _) = sync_all(&mut globex, pb::SyncRequest::default()).await;
    let synced = &entries[seq as usize];
    assert!(synced.envelope.as_ref().expect("envelope").body.is_empty());
    assert_eq!(synced.erased_by, Some(by));
    assert_eq!(entries[by as usize].erased_by, None);
    let exported = export(&t).await;
    let audited = &exported.entries[seq as usize];
    assert!(audited.envelope.as_ref().expect("envelope").body.is_empty());
    assert_eq!(audited.erased_by, Some(by));

    // A fresh member verifies the whole log; the entry is a header; the other set is whole.
    let fresh = t
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("a fresh sync verifies the log with the erased body missing");
    assert!(fresh.at(seq).statement().is_none());
    assert!(fresh.row(seq).is_none());
    assert!(fresh.rows.iter().any(|r| r.id == kept));
    // The auditor too.
    let report = audit(&t).await;
    assert!(report.contains("audit OK"), "{report}");

    // Erasing twice is idempotent: logged, nothing changes. Retracting its entries or judging
    // them is refused (nothing left to retract or judge), storing nothing.
    let again = erase(&t, set, "the same order, filed twice").await;
    assert!(again > by);
    assert_eq!(matches(&mut globex, SEED, N as u64).await, [0, 0, 0]);
    let size = t.store.log_size();
    let entries_retraction = coalition_hub::client::sign_new(
        &id("acme"),
        &t.key("acme"),
        Body::Retraction(Retraction {
            target: set,
            entries: vec![1],
            reason: "one wrong hash".into(),
            admin_quorum: false,
            erase: false,
        }),
    );
    refused(
        t.client("acme").await.submit(entries_retraction).await,
        Code::FailedPrecondition,
        "was erased at log entry",
    );
    assert_eq!(t.store.log_size(), size);
    assert!(
        t.sync_proven("auditor", FilterSpec::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_member_that_held_the_set_drops_it_from_its_snapshot_and_is_told() {
    let t = TestHub::start().await;
    let (set, seq) = share(&t, "acme", SEED, N).await;
    share(&t, "acme", SEED + 1, 1).await;
    let certs = t.certs.root().to_path_buf();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("globex.jsonl");
    let snapshot = dir.path().join("snapshot.jsonl");
    let snap = snapshot.to_str().expect("utf-8");
    sync_cli(&t.addr, &certs, "globex", &out, &["--snapshot", snap])
        .await
        .ok();
    let hashes = |path: &std::path::Path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        (0..N as u64)
            .filter(|i| text.contains(&hex::encode(sha256_value(SEED, *i))))
            .count()
    };
    assert_eq!(hashes(&snapshot), N);

    // Through the CLI: `coalition admin erase` (quorum 1: signed and submitted at once).
    let set_hex = set.to_string();
    let output = cli(
        &t,
        "admin",
        &[
            "admin",
            "erase",
            &set_hex,
            "--reason",
            "court order 2026-302",
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    // `coalition show` says so; until the member syncs past the erasure it cannot prove it.
    let out_arg = out.to_str().expect("utf-8");
    let show_args = ["show", set_hex.as_str(), "--synced", out_arg];
    let show = || cli(&t, "globex", &show_args);
    let before = show().await;
    let text = String::from_utf8_lossy(&before.stdout).into_owned();
    assert!(before.status.success(), "{before:?}");
    assert!(text.contains("state: erased under legal order"), "{text}");
    assert!(text.contains("sync again to verify the erasure"), "{text}");

    sync_cli(&t.addr, &certs, "globex", &out, &["--snapshot", snap])
        .await
        .ok();
    let after = show().await;
    let text = String::from_utf8_lossy(&after.stdout).into_owned();
    assert!(after.status.success(), "{after:?}");
    assert!(
        text.contains("court order 2026-302") && text.contains("your sync state proves it"),
        "{text}"
    );
    // An opinion on it is refused with the reason, in one line.
    let opinion = cli(
        &t,
        "globex",
        &["opinion", &set_hex, "--entry", "0", "confirmed"],
    )
    .await;
    let said = String::from_utf8_lossy(&opinion.stderr).into_owned();
    assert!(!opinion.status.success(), "{opinion:?}");
    assert!(said.contains("was erased under legal order"), "{said}");
    assert_eq!(said.trim_end().lines().count(), 1, "{said}");
    assert_eq!(hashes(&snapshot), 0, "the snapshot no longer holds the set");
    assert!(
        std::fs::read_to_string(&snapshot)
            .expect("snapshot")
            .contains(&hex::encode(sha256_value(SEED + 1, 0))),
        "the other set stays"
    );
    let events = std::fs::read_to_string(beside(&out, ".events")).expect("events");
    let changed: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("\"event\":\"state_changed\""))
        .collect();
    assert_eq!(changed.len(), 1, "{events}");
    assert!(
        changed[0].contains(&set_hex)
            && changed[0].contains("\"to\":\"erased\"")
            && changed[0].contains("\"kind\":\"erasure\"")
            && changed[0].contains("court order 2026-302"),
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l.contains("\"event\":\"removed\"") && l.contains(&format!("\"seq\":{seq}"))),
        "{events}"
    );
    // The issuer is told in its own sync's report.
    let acme_out = dir.path().join("acme.jsonl");
    let acme = sync_cli(&t.addr, &certs, "acme", &acme_out, &[]).await.ok();
    assert!(
        acme.stderr.contains("erased by admin quorum")
            || acme.stdout.contains("erased by admin quorum"),
        "{acme:?}"
    );
}

#[tokio::test]
async fn a_hub_withholding_a_body_under_a_false_erasure_claim_is_caught() {
    let t = TestHub::start().await;
    let (set, seq) = share(&t, "acme", SEED, N).await;
    let (other, _) = share(&t, "acme", SEED + 1, 1).await;
    let (_, third) = share(&t, "acme", SEED + 2, 1).await;
    // A real admin-quorum retraction (not an erasure) of the set, and a real erasure of the
    // other one: neither erases the set.
    let retraction = t
        .client("admin")
        .await
        .submit(erasure_of(
            &t,
            "admin",
            Retraction {
                target: set,
                entries: vec![],
                reason: "withdrawn, not erased".into(),
                admin_quorum: true,
                erase: false,
            },
        ))
        .await
        .expect("retraction")
        .receipt
        .expect("receipt")
        .seq;
    let other_erasure = erase(&t, other, "court order for the other set").await;
    let exported = export(&t).await;
    let size = exported.entries.len() as u64;
    let certs = t.certs.root().to_path_buf();
    let dir = tempfile::tempdir().expect("tmp");

    // The honest log (with a real erasure) syncs.
    let honest = HostileHub::serve(
        &t,
        Bent::faithful(exported.entries.clone(), exported.members.clone()),
    )
    .await;
    sync_cli(
        &honest.addr,
        &certs,
        "globex",
        &dir.path().join("honest.jsonl"),
        &[],
    )
    .await
    .ok();

    for (name, claim, expected) in [
        ("retraction", retraction, "is a retraction, not an erasure"),
        ("other", other_erasure, "it erases statement"),
        ("a-set", third, "it is a hash_set statement"),
        ("earlier", seq, "an erasure comes after what it erases"),
        ("beyond", size + 5, "the hub sent only"),
    ] {
        let lying = Bent::faithful(exported.entries.clone(), exported.members.clone()).lying(
            move |_, messages| {
                for m in messages {
                    if let Some(Item::Entry(e)) = &mut m.item
                        && e.seq == seq
                        && let Some(envelope) = &mut e.envelope
                    {
                        envelope.body = Default::default();
                        e.erased_by = Some(claim);
                    }
                }
            },
        );
        let hostile = HostileHub::serve(&t, lying).await;
        let out = dir.path().join(format!("{name}.jsonl"));
        let run = sync_cli(&hostile.addr, &certs, "globex", &out, &[]).await;
        let line = run.failed();
        assert!(line.contains("verification FAILED"), "{name}: {line}");
        assert!(
            line.contains(&format!(
                "the hub claims entry {seq} was erased by entry {claim}"
            )),
            "{name}: {line}"
        );
        assert!(line.contains(expected), "{name}: {line}");
    }
}

#[tokio::test]
async fn a_crash_between_the_erasure_and_its_scrub_is_repaired_at_start() {
    for torn in [false, true] {
        let t = TestHub::start().await;
        let envelope = t.hash_set("acme", SEED, N);
        let body = envelope.body.to_vec();
        let seq = t
            .client("acme")
            .await
            .submit(envelope.clone())
            .await
            .expect("share")
            .receipt
            .expect("receipt")
            .seq;
        let set = StatementId::of(&envelope.payload_type, &envelope.payload);
        erase(&t, set, "court order 2026-303").await;
        let data = t.data.clone();
        let stopped = t.stop().await;
        // The state a crash (SIGKILL) leaves between the erasure's commit and the overwrite of
        // the body — or part way through it: the record's tail is the body again.
        rewrite_stored_record(&data, seq, |record| {
            let at = record.len() - body.len();
            let restored = if torn { body.len() / 2 } else { body.len() };
            record[at..at + restored].copy_from_slice(&body[..restored]);
        });
        assert!(!files_holding(&data, &body[body.len() / 4..body.len() / 2]).is_empty());
        let t = TestHub::resume(stopped).await;
        assert_eq!(
            holding_the_set(&t),
            Vec::<std::path::PathBuf>::new(),
            "torn: {torn}"
        );
        let mut globex = t.client("globex").await;
        assert_eq!(matches(&mut globex, SEED, N as u64).await, [0, 0, 0]);
        let synced = t
            .sync_proven("globex", FilterSpec::default())
            .await
            .expect("the log verifies after the repair");
        assert!(synced.at(seq).statement().is_none());
        let report = audit(&t).await;
        assert!(report.contains("audit OK"), "{report}");
    }
}

#[tokio::test]
async fn the_front_door_refuses_what_may_not_be_erased_and_stores_nothing() {
    let t = TestHub::start().await;
    let (set, _) = share(&t, "acme", SEED, N).await;
    let genesis = StatementId::from_hex(&t.genesis_hex().await).expect("genesis id");
    let admin = |r: Retraction| erasure_of(&t, "admin", r);
    let base = Retraction {
        target: set,
        entries: vec![],
        reason: "court order".into(),
        admin_quorum: true,
        erase: true,
    };
    let size = t.store.log_size();
    let cases: Vec<(&str, pb::Envelope, Code, &str)> = vec![
        (
            "admin",
            admin(Retraction {
                target: StatementId([9; 32]),
                ..base.clone()
            }),
            Code::NotFound,
            "no statement",
        ),
        (
            "admin",
            admin(Retraction {
                target: genesis,
                ..base.clone()
            }),
            Code::InvalidArgument,
            "is a genesis statement",
        ),
        (
            "admin",
            admin(Retraction {
                entries: vec![0],
                ..base.clone()
            }),
            Code::InvalidArgument,
            "retraction.erase",
        ),
        (
            "admin",
            admin(Retraction {
                admin_quorum: false,
                ..base.clone()
            }),
            Code::InvalidArgument,
            "retraction.erase",
        ),
        (
            "admin",
            admin(Retraction {
                reason: "x".repeat(1001),
                ..base.clone()
            }),
            Code::InvalidArgument,
            "retraction.reason",
        ),
        (
            "acme",
            erasure_of(&t, "acme", base.clone()),
            Code::PermissionDenied,
            "admin",
        ),
    ];
    for (member, envelope, code, text) in cases {
        refused(t.client(member).await.submit(envelope).await, code, text);
        assert_eq!(t.store.log_size(), size, "{text}: nothing stored");
    }
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, SEED, N as u64).await, [1, 1, 1]);
}

#[tokio::test]
async fn the_match_snapshot_is_deleted_at_once_and_rewritten_clean_after_a_restart() {
    let (t, _dir, path) = common::lifecycle::hub_with_match_snapshot().await;
    let (set, _) = share(&t, "acme", SEED, N).await;
    share(&t, "acme", SEED + 1, 1).await;
    common::lifecycle::wait_for_match_snapshot(&path).await;
    let holds = |path: &std::path::Path| {
        let bytes = std::fs::read(path).expect("snapshot");
        let needle = sha256_value(SEED, 0);
        bytes.windows(needle.len()).any(|w| w == needle.as_slice())
    };
    assert!(holds(&path));
    // A copy of the snapshot from before the erasure: what a crash between the erasure and
    // the file's deletion would leave.
    let stale = path.with_extension("stale");
    std::fs::copy(&path, &stale).expect("copy");

    erase(&t, set, "court order 2026-304").await;
    assert!(!path.exists(), "deleted by the acknowledgement");
    // No snapshot is written from the corpus that held the erased hashes.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(!path.exists(), "not rewritten before a restart");

    let stopped = t.stop().await;
    std::fs::rename(&stale, &path).expect("put the stale snapshot back");
    let t = TestHub::resume(stopped).await;
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, SEED, N as u64).await, [0, 0, 0]);
    assert_eq!(matches(&mut globex, SEED + 1, 1).await, [1]);
    // The stale one was refused and deleted; the log was indexed and a clean one written.
    common::lifecycle::wait_for_match_snapshot(&path).await;
    assert!(!holds(&path), "the new snapshot holds no erased hash");
}

#[tokio::test]
async fn an_erased_signals_text_is_gone_from_the_hubs_data_directory() {
    use coalition_hub::statement::{HashEntry, HashType, Indicator};
    let t = TestHub::start().await;
    let marker = "erasure-marker-7f3a9c handle of a person";
    let url = "https://example.org/erasure-marker-url-51d2";
    let (target, seq) = share_signal(
        &t,
        "acme",
        "Account pressuring minors",
        format!("seen with {marker}"),
        vec![
            Indicator::Keyword(marker.into()),
            Indicator::Url(url.into()),
            Indicator::Hash(HashEntry {
                hash_type: HashType::Sha256,
                value: sha256_value(SEED, 0),
                quality: None,
                labels: vec![],
            }),
        ],
    )
    .await;
    for needle in [marker.as_bytes(), url.as_bytes()] {
        assert!(!files_holding(&t.data, needle).is_empty(), "stored first");
    }
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, SEED, 1).await, [1]);

    erase(&t, target, "court order 2026-305").await;

    for needle in [marker.as_bytes(), url.as_bytes(), &sha256_value(SEED, 0)] {
        assert_eq!(
            files_holding(&t.data, needle),
            Vec::<std::path::PathBuf>::new()
        );
    }
    assert_eq!(matches(&mut globex, SEED, 1).await, [0]);
    let synced = t
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("the log verifies");
    assert!(synced.at(seq).statement().is_none());
    assert!(audit(&t).await.contains("audit OK"));
}
