//! Retractions end to end over real mutual TLS: a member withdraws its own statement or single
//! entries of it, an admin quorum withdraws any member's set, and the withdrawal reaches Match
//! (right after the acknowledgement and after a restart from the match snapshot), a live
//! follower, a member syncing from a cursor older than the retracted statement (`coalition
//! sync --snapshot`), and the auditor. The front door refuses what may not be retracted and
//! stores nothing; a retraction signed with a key compromised before it has no effect; a hub
//! that keeps a retraction from a member is caught.

use crate::common;

use coalition_hub::client::sign_new;
use coalition_hub::governance;
use coalition_hub::lifecycle::{EntryState, Retraction, Target};
use coalition_hub::membership::{Action, KeyId, Revocation};
use coalition_hub::pb;
use coalition_hub::statement::{Body, HashType, Kind, StatementId};
use coalition_hub::sync::FilterSpec;
use common::hostile::{Bent, HostileHub, beside, export, state, sync_cli};
use common::lifecycle::{
    cli, hub_with_match_snapshot, matches, refused, share, share_signal, wait_for_match_snapshot,
};
use common::{TestHub, id, sha256_value};
use tonic::Code;

/// How long a follower waits for its next batch before the test fails.
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A retraction of `target` (all of it when `entries` is empty) signed by `member`.
fn retraction(
    t: &TestHub,
    member: &str,
    target: StatementId,
    entries: &[u32],
    admin_quorum: bool,
) -> pb::Envelope {
    sign_new(
        &id(member),
        &t.key(member),
        Body::Retraction(Retraction {
            target,
            entries: entries.to_vec(),
            reason: "wrong hash: legitimate content".into(),
            admin_quorum,
            erase: false,
        }),
    )
}

/// How many matches each sha256 value of `seed` (entries `0..n`) has at the hub.
/// The state changes the follower's next proven batches report, until there are `at_least`
/// (at most 20 batches, each within [`WAIT`]).
async fn state_changes(
    follower: &mut common::Follower,
    at_least: usize,
) -> Vec<coalition_hub::sync::StateChange> {
    let mut changes = Vec::new();
    for _ in 0..20 {
        if changes.len() >= at_least {
            break;
        }
        let proven = tokio::time::timeout(WAIT, follower.next_writing())
            .await
            .expect("a batch within 30 s")
            .expect("a proven batch");
        changes.extend(proven.changes);
    }
    changes
}

/// `coalition sync` as globex into each output with its `--snapshot`, each run succeeding.
async fn sync_with_snapshots<const N: usize>(
    t: &TestHub,
    certs: &std::path::Path,
    outputs: [(&std::path::PathBuf, &std::path::PathBuf); N],
) {
    for (out, snap) in outputs {
        sync_cli(
            &t.addr,
            certs,
            "globex",
            out,
            &["--snapshot", snap.to_str().expect("utf-8")],
        )
        .await
        .ok();
    }
}

fn lines_with(path: &std::path::Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_retraction_reaches_match_a_follower_a_late_sync_and_the_auditor() {
    let (t, _snapshots, match_snapshot) = hub_with_match_snapshot().await;
    let certs = t.certs.root().to_path_buf();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("globex.jsonl");
    let snapshot = dir.path().join("globex.snapshot.jsonl");
    let snap = snapshot.to_str().expect("utf-8 path");
    // globex's cursor predates everything below.
    sync_cli(&t.addr, &certs, "globex", &out, &["--snapshot", snap])
        .await
        .ok();
    let mut follower = t.follow("globex").await;

    let (set_a, seq_a) = share(&t, "acme", 1, 3).await;
    let (set_b, _) = share(&t, "acme", 2, 2).await;
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, 1, 3).await, [1, 1, 1]);
    assert_eq!(matches(&mut globex, 2, 2).await, [1, 1]);

    // acme withdraws entry 1 of set A and the whole of set B.
    let mut acme = t.client("acme").await;
    acme.submit(retraction(&t, "acme", set_a, &[1], false))
        .await
        .expect("retract an entry");
    let whole = acme
        .submit(retraction(&t, "acme", set_b, &[], false))
        .await
        .expect("retract a set")
        .receipt
        .expect("receipt");
    // Gone from Match right after the acknowledgement.
    assert_eq!(matches(&mut globex, 1, 3).await, [1, 0, 1]);
    assert_eq!(matches(&mut globex, 2, 2).await, [0, 0]);

    // The live follower is told, entry by entry.
    let changes = state_changes(&mut follower, 2).await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        (changes[0].statement_id, changes[0].entries.clone()),
        (set_a, Some(vec![1]))
    );
    assert_eq!(
        (changes[1].statement_id, changes[1].entries.clone()),
        (set_b, None)
    );
    assert!(
        changes
            .iter()
            .all(|c| c.to == EntryState::Retracted && c.written)
    );
    assert_eq!(changes[1].cause.seq(), whole.seq);

    // The member syncing from its old cursor: the output keeps the history, the snapshot
    // holds what should match, the events say what changed.
    let run = sync_cli(&t.addr, &certs, "globex", &out, &["--snapshot", snap])
        .await
        .ok();
    assert!(
        run.stderr.contains("2 entries or statements retracted"),
        "{run:?}"
    );
    assert_eq!(lines_with(&out, "\"kind\":\"hash\"").len(), 5);
    let kept = lines_with(&snapshot, "\"kind\":\"hash\"");
    assert_eq!(kept.len(), 2, "{kept:?}");
    for (entry, value) in [(0, sha256_value(1, 0)), (2, sha256_value(1, 2))] {
        assert!(
            kept.iter()
                .any(|l| l.contains(&hex::encode(&value))
                    && l.contains(&format!("\"entry\":{entry}"))),
            "{kept:?}"
        );
    }
    let events = beside(&out, ".events");
    assert_eq!(lines_with(&events, "\"event\":\"added\"").len(), 2);
    let changed = lines_with(&events, "\"event\":\"state_changed\"");
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(changed[0].contains(&set_a.to_string()) && changed[0].contains("\"entries\":[1]"));
    assert!(changed[0].contains("\"to\":\"retracted\"") && changed[0].contains("wrong hash"));
    assert_eq!(lines_with(&events, "\"event\":\"removed\"").len(), 2);
    // A rerun with nothing new keeps the same snapshot and writes no event twice.
    let before = std::fs::read(&events).expect("events");
    sync_cli(&t.addr, &certs, "globex", &out, &["--snapshot", snap])
        .await
        .ok();
    assert_eq!(std::fs::read(&events).expect("events"), before);
    assert_eq!(lines_with(&snapshot, "\"kind\":\"hash\"").len(), 2);

    // The auditor replays the log with its retractions and reports them.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_coalition"));
    command
        .args([
            "audit", "verify", "--hub", &t.addr, "--as", "auditor", "--certs",
        ])
        .arg(&certs)
        .env_remove("RUST_LOG");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run coalition audit verify");
    assert!(output.status.success(), "{output:?}");
    let audit = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(audit.contains("audit OK"), "{audit}");
    assert!(
        audit.contains("2 retraction(s) verified (signatures and entitlement), 0 naming a statement the log did not hold"),
        "{audit}"
    );

    // After a restart (the store replays its retractions; the match index is loaded from its
    // snapshot file once written) the entries stay out of Match.
    wait_for_match_snapshot(&match_snapshot).await;
    let t = TestHub::resume(t.stop().await).await;
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, 1, 3).await, [1, 0, 1]);
    assert_eq!(matches(&mut globex, 2, 2).await, [0, 0]);
    let registry = t.store.registry();
    let issuer = id("acme");
    let target = Target {
        id: set_a,
        seq: seq_a,
        issuer: &issuer,
        kind: Kind::HashSet,
    };
    assert_eq!(registry.entry_state(&target, 1), EntryState::Retracted);
    assert_eq!(registry.entry_state(&target, 0), EntryState::Active);
}

#[tokio::test]
async fn the_front_door_refuses_what_may_not_be_retracted_and_stores_nothing() {
    let t = TestHub::start().await;
    let (set, _) = share(&t, "acme", 10, 3).await;
    let mut acme = t.client("acme").await;
    let mut globex = t.client("globex").await;
    let mut admin = t.client("admin").await;
    let genesis = StatementId::from_hex(&t.genesis_hex().await).expect("genesis id");
    let admission = t
        .store
        .entry(1)
        .expect("read")
        .expect("an admission")
        .id()
        .expect("id");
    let size = t.store.log_size();

    refused(
        globex
            .submit(retraction(&t, "globex", set, &[], false))
            .await,
        Code::PermissionDenied,
        "a member retracts only its own statements",
    );
    refused(
        acme.submit(retraction(&t, "acme", StatementId([9; 32]), &[], false))
            .await,
        Code::NotFound,
        "no statement",
    );
    refused(
        acme.submit(retraction(&t, "acme", set, &[1, 3, 7], false))
            .await,
        Code::NotFound,
        "has 3 entries (0..3); entries 3, 7 do not exist",
    );
    refused(
        admin
            .submit(retraction(&t, "admin", admission, &[], true))
            .await,
        Code::InvalidArgument,
        "is a membership statement; only hash sets and risk signals can be retracted",
    );
    refused(
        acme.submit(retraction(&t, "acme", genesis, &[], false))
            .await,
        Code::InvalidArgument,
        "is a genesis statement",
    );
    // Only admins make admin-quorum retractions.
    refused(
        acme.submit(retraction(&t, "acme", set, &[], true)).await,
        Code::PermissionDenied,
        "lacks the 'admin' role",
    );
    // A malformed one: entries out of order.
    refused(
        acme.submit(retraction(&t, "acme", set, &[2, 1], false))
            .await,
        Code::InvalidArgument,
        "ascending",
    );
    // The same refusals inside a batch, each on its own.
    let outcomes = globex
        .submit_batch(vec![
            retraction(&t, "globex", set, &[], false),
            retraction(&t, "globex", StatementId([8; 32]), &[], false),
        ])
        .await
        .expect("batch");
    let codes: Vec<i32> = outcomes.iter().map(|o| o.code).collect();
    assert_eq!(
        codes,
        [Code::PermissionDenied as i32, Code::NotFound as i32]
    );
    assert_eq!(t.store.log_size(), size, "every refusal stored nothing");

    // A retraction cannot be retracted: share again to undo.
    let logged = acme
        .submit(retraction(&t, "acme", set, &[0], false))
        .await
        .expect("retract")
        .receipt
        .expect("receipt");
    let first = StatementId::from_slice(&logged.statement_id).expect("id");
    refused(
        acme.submit(retraction(&t, "acme", first, &[], false)).await,
        Code::InvalidArgument,
        "is a retraction statement",
    );
    assert_eq!(t.store.log_size(), size + 1);
}

#[tokio::test]
async fn an_admin_quorum_retracts_a_members_set_and_retracting_twice_changes_nothing() {
    let t = TestHub::start().await;
    let (set, seq) = share(&t, "acme", 20, 2).await;
    let (other, _) = share(&t, "acme", 21, 2).await;
    let mut globex = t.client("globex").await;
    // Quorum 1: the admin's signature is the quorum.
    let envelope = governance::retraction(
        &id("admin"),
        &t.key("admin"),
        Retraction {
            target: set,
            entries: vec![],
            reason: "court order 2026-117".into(),
            admin_quorum: true,
            erase: false,
        },
    );
    t.client("admin")
        .await
        .submit(envelope)
        .await
        .expect("admin-quorum retraction");
    assert_eq!(matches(&mut globex, 20, 2).await, [0, 0]);
    // The issuer sees it in its next sync.
    let synced = t
        .sync_proven("acme", FilterSpec::default())
        .await
        .expect("sync");
    let registry = synced.replica.registry();
    let issuer = id("acme");
    let target = Target {
        id: set,
        seq,
        issuer: &issuer,
        kind: Kind::HashSet,
    };
    assert!(registry.retracted(&target).all);
    let record = &registry.lifecycle().retractions_of(&set)[0];
    assert!(record.retraction.admin_quorum);
    assert_eq!(record.retraction.reason, "court order 2026-117");

    // Twice the same retraction by the issuer: both logged, the state the same.
    let mut acme = t.client("acme").await;
    for _ in 0..2 {
        acme.submit(retraction(&t, "acme", other, &[1], false))
            .await
            .expect("retract");
    }
    assert_eq!(matches(&mut globex, 21, 2).await, [1, 0]);
    let registry = t.store.registry();
    assert_eq!(registry.lifecycle().retractions_of(&other).len(), 2);
    assert_eq!(registry.lifecycle().len(), 3);
}

#[tokio::test]
async fn a_retraction_signed_by_a_key_compromised_before_it_has_no_effect() {
    let t = TestHub::start().await;
    let (set, seq) = share(&t, "acme", 30, 2).await;
    // A later receipt time than the set's.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut globex = t.client("globex").await;
    let logged = t
        .client("acme")
        .await
        .submit(retraction(&t, "acme", set, &[0], false))
        .await
        .expect("retract")
        .receipt
        .expect("receipt");
    assert_eq!(matches(&mut globex, 30, 2).await, [0, 1]);
    // The key that signed it leaked from the moment the retraction was logged: it is void,
    // and the entry matches again, at the hub and for every replica.
    t.admin_change(Action::RevokeKey {
        member: id("acme"),
        key_id: KeyId::of(&t.key("acme").verifying_key()),
        revocation: Revocation::Compromised {
            compromised_at_ms: logged.received_at_ms,
        },
    })
    .await
    .expect("revoke as compromised");
    assert_eq!(matches(&mut globex, 30, 2).await, [1, 1]);
    let synced = t
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("sync");
    let issuer = id("acme");
    let target = Target {
        id: set,
        seq,
        issuer: &issuer,
        kind: Kind::HashSet,
    };
    assert_eq!(
        synced.replica.registry().entry_state(&target, 0),
        EntryState::Active
    );
}

#[tokio::test]
async fn a_follower_sees_a_compromise_void_a_retraction() {
    let t = TestHub::start().await;
    let mut follower = t.follow("globex").await;
    let (set, _) = share(&t, "acme", 40, 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let logged = t
        .client("acme")
        .await
        .submit(retraction(&t, "acme", set, &[], false))
        .await
        .expect("retract")
        .receipt
        .expect("receipt");
    t.admin_change(Action::RevokeKey {
        member: id("acme"),
        key_id: KeyId::of(&t.key("acme").verifying_key()),
        revocation: Revocation::Compromised {
            compromised_at_ms: logged.received_at_ms,
        },
    })
    .await
    .expect("revoke as compromised");
    let changes = state_changes(&mut follower, 2).await;
    let states: Vec<(EntryState, EntryState)> = changes.iter().map(|c| (c.from, c.to)).collect();
    assert_eq!(
        states,
        [
            (EntryState::Active, EntryState::Retracted),
            (EntryState::Retracted, EntryState::Active)
        ]
    );
}

#[tokio::test]
async fn a_hub_that_keeps_a_retraction_from_a_member_is_caught() {
    use pb::sync_response::Item;
    let t = TestHub::start().await;
    let (set, _) = share(&t, "acme", 50, 2).await;
    let logged = t
        .client("acme")
        .await
        .submit(retraction(&t, "acme", set, &[], false))
        .await
        .expect("retract")
        .receipt
        .expect("receipt");
    let exported = export(&t).await;
    let certs = t.certs.root().to_path_buf();
    let dir = tempfile::tempdir().expect("tmp");

    // Dropped from the stream: the next entry comes where the retraction should be.
    let gone = logged.seq;
    let dropping = Bent::faithful(exported.entries.clone(), exported.members.clone()).lying(
        move |_, messages| {
            messages.retain(|m| !matches!(&m.item, Some(Item::Entry(e)) if e.seq == gone));
        },
    );
    let hostile = HostileHub::serve(&t, dropping).await;
    let out = dir.path().join("dropped.jsonl");
    let run = sync_cli(&hostile.addr, &certs, "globex", &out, &[]).await;
    let line = run.failed();
    assert!(line.contains("verification FAILED"), "{line}");
    assert!(state(&out)[1].is_empty(), "no cursor saved past the hole");

    // Its body withheld as if outside the member's filter: lifecycle statements are for
    // everyone, whatever the filter.
    let withholding = Bent::faithful(exported.entries.clone(), exported.members.clone()).lying(
        move |_, messages| {
            for m in messages {
                if let Some(Item::Entry(e)) = &mut m.item
                    && e.seq == gone
                    && let Some(envelope) = &mut e.envelope
                {
                    envelope.body = Default::default();
                }
            }
        },
    );
    let hostile = HostileHub::serve(&t, withholding).await;
    let out = dir.path().join("withheld.jsonl");
    let run = sync_cli(
        &hostile.addr,
        &certs,
        "globex",
        &out,
        &["--kind", "hash_set"],
    )
    .await;
    let line = run.failed();
    assert!(line.contains("retraction"), "{line}");
    assert!(
        state(&out)[1].is_empty(),
        "no cursor saved past the withheld retraction"
    );
}

#[tokio::test]
async fn the_cli_retracts_signal_indicators_and_csv_snapshots_and_show_explain_it() {
    use coalition_hub::statement::{HashEntry, Indicator};
    let t = TestHub::start().await;
    let (signal_id, _) = share_signal(
        &t,
        "acme",
        "Gift-card script",
        String::new(),
        vec![
            Indicator::Keyword("model scout".into()),
            Indicator::Hash(HashEntry {
                hash_type: HashType::Sha256,
                value: sha256_value(60, 0),
                quality: None,
                labels: vec![],
            }),
            Indicator::Hash(HashEntry {
                hash_type: HashType::Sha256,
                value: sha256_value(60, 1),
                quality: None,
                labels: vec![],
            }),
        ],
    )
    .await;
    let signal_id = signal_id.to_string();
    let (set, _) = share(&t, "acme", 61, 3).await;
    let dir = tempfile::tempdir().expect("tmp");
    let jsonl = dir.path().join("all.jsonl");
    let csv = dir.path().join("all.csv");
    let (jsonl_snap, csv_snap) = (dir.path().join("now.jsonl"), dir.path().join("now.csv"));
    let certs = t.certs.root().to_path_buf();
    sync_with_snapshots(&t, &certs, [(&jsonl, &jsonl_snap), (&csv, &csv_snap)]).await;

    // Indicator 1 of the signal (its first hash) and entry 2 of the set, by the CLI.
    let out = cli(
        &t,
        "acme",
        &[
            "retract",
            &signal_id,
            "--entry",
            "1",
            "--reason",
            "wrong hash",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.starts_with("logged at log entry"), "{printed}");
    let set_hex = set.to_string();
    // A reason with a terminal escape is refused before anything is sent.
    let out = cli(
        &t,
        "acme",
        &[
            "retract",
            &set_hex,
            "--entry",
            "2",
            "--reason",
            "a\u{1b}[31m note",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must not contain control characters"),
        "{out:?}"
    );
    // Newlines are allowed in a reason; `show` prints them escaped, on one line.
    let out = cli(
        &t,
        "acme",
        &[
            "retract",
            &set_hex,
            "--entry",
            "2",
            "--reason",
            "line one\nline two",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    // Refused: one line, exit 1, nothing raw.
    let out = cli(&t, "globex", &["retract", &set_hex, "--reason", "not mine"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = String::from_utf8_lossy(&out.stderr);
    assert_eq!(line.trim_end().lines().count(), 1, "{line}");
    assert!(
        line.contains("a member retracts only its own statements"),
        "{line}"
    );

    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, 60, 2).await, [0, 1]);
    assert_eq!(matches(&mut globex, 61, 3).await, [1, 1, 0]);

    sync_with_snapshots(&t, &certs, [(&jsonl, &jsonl_snap), (&csv, &csv_snap)]).await;
    // JSON Lines: the signal keeps its other two indicators; the set loses entry 2.
    let signals = lines_with(&jsonl_snap, "\"kind\":\"risk_signal\"");
    assert_eq!(signals.len(), 1);
    assert!(signals[0].contains("model scout"), "{}", signals[0]);
    assert!(!signals[0].contains(&hex::encode(sha256_value(60, 0))));
    assert!(signals[0].contains(&hex::encode(sha256_value(60, 1))));
    assert_eq!(lines_with(&jsonl_snap, "\"kind\":\"hash\"").len(), 2);
    // CSV: the header, then the set's entries 0 and 1 (entry, then an empty expiry column).
    let rows = std::fs::read_to_string(&csv_snap).expect("csv snapshot");
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].starts_with("seq,statement_id,"));
    assert!(
        rows[1].ends_with(",0,") && rows[2].ends_with(",1,"),
        "{rows:?}"
    );

    // `coalition show`: one line per fact, from globex's own sync state.
    let synced = jsonl.to_str().expect("utf-8");
    let out = cli(&t, "globex", &["show", &set_hex, "--synced", synced]).await;
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("hash_set shared by 'acme'"), "{shown}");
    assert!(
        shown.contains("entries: 3, 2 active, 1 retracted"),
        "{shown}"
    );
    assert!(shown.contains("entry 2: retracted"), "{shown}");
    assert!(shown.contains("by 'acme': entries 2;"), "{shown}");
    assert!(shown.contains("applies"), "{shown}");
    let retraction = shown
        .lines()
        .find(|l| l.starts_with("retraction "))
        .expect("a retraction line");
    assert!(
        retraction.contains("line one") && retraction.contains("line two"),
        "the reason on one line, escaped: {shown}"
    );
}

#[tokio::test]
async fn an_admin_quorum_retraction_needs_the_quorum() {
    use coalition_hub::governance::admission;
    use coalition_hub::membership::Role;
    let t = TestHub::start().await;
    // A second admin (the PKI's "outsider" certificate and key), then quorum 2.
    t.admin_change(Action::Admit(admission(
        &id("outsider"),
        "Second admin",
        &[Role::Admin],
        &[t.key("outsider").verifying_key()],
    )))
    .await
    .expect("admit a second admin");
    t.admin_change(Action::SetQuorum(2))
        .await
        .expect("quorum 2");
    let (set, _) = share(&t, "acme", 70, 2).await;
    let mut envelope = governance::retraction(
        &id("admin"),
        &t.key("admin"),
        Retraction {
            target: set,
            entries: vec![0],
            reason: "legal order".into(),
            admin_quorum: true,
            erase: false,
        },
    );
    let size = t.store.log_size();
    refused(
        t.client("admin").await.submit(envelope.clone()).await,
        Code::FailedPrecondition,
        "needs signatures of 2 distinct admins, it has 1",
    );
    assert_eq!(t.store.log_size(), size, "nothing stored");
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, 70, 2).await, [1, 1]);
    // Co-signed by the second admin, which may submit it.
    assert!(governance::cosign(&mut envelope, &t.key("outsider")).expect("cosign"));
    t.client("outsider")
        .await
        .submit(envelope)
        .await
        .expect("quorum met");
    assert_eq!(matches(&mut globex, 70, 2).await, [0, 1]);
}
