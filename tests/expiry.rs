//! Expiry and compromised entries end to end over real mutual TLS (issue 12, items 4 and 5):
//! a hash set's `expires_at_ms` stops it matching at that instant at the hub (also after a
//! restart from the match snapshot), in a member's `--snapshot` and in an offline
//! `coalition match` between syncs; an expiry already past is refused and stores nothing;
//! entries signed with a key after its compromise time stop matching everywhere, while the
//! same member's earlier entries still match.

use crate::common;

use coalition_hub::client::sign_new;
use coalition_hub::membership::{Action, KeyId, Revocation};
use coalition_hub::pb;
use coalition_hub::statement::{Body, HashEntry, HashSet, HashType};
use coalition_hub::store::now_ms;
use common::hostile::sync_cli;
use common::lifecycle::{
    hub_with_match_snapshot, matches, matches_in, offline_match, wait_for_match_snapshot,
};
use common::{TestHub, id, sha256_value};
use std::time::Duration;
use tonic::Code;

/// A set of `n` sha256 hashes (seed `seed`) by `member`, expiring at `expires_at_ms`.
fn expiring_set(
    t: &TestHub,
    member: &str,
    seed: u64,
    n: u64,
    expires_at_ms: Option<i64>,
) -> pb::Envelope {
    sign_new(
        &id(member),
        &t.key(member),
        Body::HashSet(HashSet {
            description: format!("expiry test {seed}"),
            entries: (0..n)
                .map(|i| HashEntry {
                    hash_type: HashType::Sha256,
                    value: sha256_value(seed, i),
                    quality: None,
                    labels: vec![],
                })
                .collect(),
            expires_at_ms,
        }),
    )
}

/// Sleeps until the wall clock is past `at_ms`.
async fn sleep_past(at_ms: i64) {
    let left = at_ms + 1 - now_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

/// A query file with the sha256 hashes `0..n` of `seed`, one `type,hash` row each.
fn queries(dir: &std::path::Path, seed: u64, n: u64) -> std::path::PathBuf {
    let path = dir.join(format!("queries-{seed}.csv"));
    let rows: String = (0..n)
        .map(|i| format!("sha256,{}\n", hex::encode(sha256_value(seed, i))))
        .collect();
    std::fs::write(&path, rows).expect("write queries");
    path
}

#[tokio::test]
async fn an_expiry_already_past_is_refused_and_stores_nothing() {
    let t = TestHub::start().await;
    let before = t.store.log_size();
    let err = t
        .client("acme")
        .await
        .submit(expiring_set(&t, "acme", 1, 2, Some(now_ms() - 1)))
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains(coalition_hub::client::code_name(Code::InvalidArgument))
            || text.contains("InvalidArgument"),
        "{text}"
    );
    assert!(
        text.contains("hash_set.expires_at_ms") && text.contains("already past"),
        "{text}"
    );
    // Not a positive time at all: refused by the field rules.
    let err = t
        .client("acme")
        .await
        .submit(expiring_set(&t, "acme", 1, 2, Some(-5)))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("positive"), "{err}");
    assert_eq!(t.store.log_size(), before, "a refusal stores nothing");
}

#[tokio::test]
async fn an_expired_set_stops_matching_at_the_hub_in_snapshots_and_offline() {
    let (t, _snapshots, match_snapshot) = hub_with_match_snapshot().await;
    let expires = now_ms() + 2_500;
    let mut acme = t.client("acme").await;
    let receipt = acme
        .submit(expiring_set(&t, "acme", 10, 2, Some(expires)))
        .await
        .expect("an expiring set")
        .receipt
        .expect("receipt");
    let set_id = hex::encode(&receipt.statement_id);
    acme.submit(expiring_set(&t, "acme", 11, 1, None))
        .await
        .expect("a set that never expires");
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, 10, 2).await, [1, 1]);

    // A member's sync before the expiry: the rows carry it; the snapshot holds them.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("synced.csv");
    let snap = dir.path().join("snapshot.csv");
    let certs = t.certs.root().to_owned();
    sync_cli(
        &t.addr,
        &certs,
        "globex",
        &out,
        &["--snapshot", snap.to_str().expect("utf-8")],
    )
    .await
    .ok();
    let header = std::fs::read_to_string(&out).expect("output");
    assert!(
        header
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with(",entry,expires_at_ms"),
        "{header}"
    );
    let expiring = hex::encode(sha256_value(10, 0));
    let row = header
        .lines()
        .find(|l| l.contains(&expiring))
        .expect("the expiring row");
    assert!(row.ends_with(&format!(",{expires}")), "{row}");
    let q10 = queries(dir.path(), 10, 2);
    let q11 = queries(dir.path(), 11, 1);
    assert_eq!(offline_match(&snap, &q10).await.lines().count(), 2);

    // The boundary: from the expiry instant on, nothing of the set matches.
    sleep_past(expires).await;
    assert_eq!(matches(&mut globex, 10, 2).await, [0, 0]);
    assert_eq!(matches(&mut globex, 11, 1).await, [1]);
    // Asked for, expired entries come back labelled so.
    let found = matches_in(&mut globex, 10, 0, &[pb::EntryState::Expired]).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].state, pb::EntryState::Expired as i32);
    // Offline, between syncs: the snapshot still holds the rows, the match drops them.
    assert!(
        std::fs::read_to_string(&snap)
            .expect("snapshot")
            .contains(&expiring)
    );
    assert_eq!(offline_match(&snap, &q10).await.lines().count(), 0);
    assert_eq!(offline_match(&snap, &q11).await.lines().count(), 1);
    // The next sync rewrites the snapshot without them (the output keeps its history).
    sync_cli(
        &t.addr,
        &certs,
        "globex",
        &out,
        &["--snapshot", snap.to_str().expect("utf-8")],
    )
    .await
    .ok();
    let snapshot = std::fs::read_to_string(&snap).expect("snapshot");
    assert!(!snapshot.contains(&expiring), "{snapshot}");
    assert!(snapshot.contains(&hex::encode(sha256_value(11, 0))));
    assert!(
        std::fs::read_to_string(&out)
            .expect("output")
            .contains(&expiring)
    );
    // `coalition show` says so, from the member's own sync state.
    let show = run_cli(
        &t,
        "globex",
        &["show", &set_id, "--synced", out.to_str().expect("utf-8")],
    )
    .await;
    assert!(show.status.success(), "{show:?}");
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        shown.contains("expires at") && shown.contains("expired, no entry matches"),
        "{shown}"
    );

    // After a restart from the match snapshot (which carries the expiries), still gone.
    wait_for_match_snapshot(&match_snapshot).await;
    let t = TestHub::resume(t.stop().await).await;
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, 10, 2).await, [0, 0]);
    assert_eq!(matches(&mut globex, 11, 1).await, [1]);
}

#[tokio::test]
async fn an_expiry_restored_from_the_match_snapshot_still_applies() {
    let (t, _snapshots, match_snapshot) = hub_with_match_snapshot().await;
    // Expires only after the restart: the expiry must come back from the snapshot file.
    let expires = now_ms() + 4_000;
    t.client("acme")
        .await
        .submit(expiring_set(&t, "acme", 20, 1, Some(expires)))
        .await
        .expect("an expiring set");
    wait_for_match_snapshot(&match_snapshot).await;
    let t = TestHub::resume(t.stop().await).await;
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, 20, 1).await, [1]);
    sleep_past(expires).await;
    assert_eq!(matches(&mut globex, 20, 1).await, [0]);
}

#[tokio::test]
async fn entries_signed_after_a_key_compromise_stop_matching_everywhere() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    acme.submit(expiring_set(&t, "acme", 30, 1, None))
        .await
        .expect("before the leak");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let leaked = acme
        .submit(expiring_set(&t, "acme", 31, 2, None))
        .await
        .expect("after the leak")
        .receipt
        .expect("receipt");
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, 31, 2).await, [1, 1]);

    // A member syncs before the compromise is known: its snapshot holds both sets.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("synced.jsonl");
    let snap = dir.path().join("snapshot.jsonl");
    let certs = t.certs.root().to_owned();
    let snap_arg = snap.to_str().expect("utf-8").to_owned();
    let extra = ["--snapshot", snap_arg.as_str()];
    let sync = || sync_cli(&t.addr, &certs, "globex", &out, &extra);
    sync().await.ok();
    let leaked_hash = hex::encode(sha256_value(31, 0));
    assert!(
        std::fs::read_to_string(&snap)
            .expect("snapshot")
            .contains(&leaked_hash)
    );

    // acme follows the log too: its first sync reports its own key, added at its admission.
    let acme_out = dir.path().join("acme.jsonl");
    let first = sync_cli(&t.addr, &certs, "acme", &acme_out, &[]).await.ok();
    let acme_key = KeyId::of(&t.key("acme").verifying_key());
    assert!(
        first
            .stderr
            .contains(&format!("your keys: key {acme_key} added")),
        "{first:?}"
    );

    // The key leaked from the second set's receipt on.
    t.admin_change(Action::RevokeKey {
        member: id("acme"),
        key_id: KeyId::of(&t.key("acme").verifying_key()),
        revocation: Revocation::Compromised {
            compromised_at_ms: leaked.received_at_ms,
        },
    })
    .await
    .expect("revoke as compromised");
    assert_eq!(matches(&mut globex, 31, 2).await, [0, 0]);
    assert_eq!(matches(&mut globex, 30, 1).await, [1]);
    let found = matches_in(&mut globex, 31, 1, &[pb::EntryState::Compromised]).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].state, pb::EntryState::Compromised as i32);

    // The member's next sync learns of it and rewrites the snapshot without the set signed
    // after the compromise (rows written before it was known); the earlier set stays.
    let run = sync().await.ok();
    assert!(run.stderr.contains("suspect"), "{run:?}");
    // acme's next sync says what happened to its key.
    let next = sync_cli(&t.addr, &certs, "acme", &acme_out, &[]).await.ok();
    assert!(
        next.stderr.contains(&format!(
            "your keys: key {acme_key} revoked as compromised since"
        )),
        "{next:?}"
    );
    let snapshot = std::fs::read_to_string(&snap).expect("snapshot");
    assert!(!snapshot.contains(&leaked_hash), "{snapshot}");
    assert!(snapshot.contains(&hex::encode(sha256_value(30, 0))));

    // A fresh member's output marks the rows compromised, and an offline match drops them.
    let fresh = dir.path().join("fresh.jsonl");
    sync_cli(&t.addr, &certs, "globex", &fresh, &[]).await.ok();
    let q31 = queries(dir.path(), 31, 2);
    let q30 = queries(dir.path(), 30, 1);
    assert_eq!(offline_match(&fresh, &q31).await.lines().count(), 0);
    assert_eq!(offline_match(&fresh, &q30).await.lines().count(), 1);
}

/// Runs `coalition submit` as `member` against `t`.
async fn submit_cli(t: &TestHub, member: &str, args: &[&str]) -> std::process::Output {
    let args: Vec<&str> = ["submit"].iter().chain(args).copied().collect();
    run_cli(t, member, &args).await
}

/// Runs the `coalition` binary with `args` against `t` as `member`.
async fn run_cli(t: &TestHub, member: &str, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_coalition"));
    command
        .args(args)
        .args(["--hub", &t.addr, "--as", member, "--certs"])
        .arg(t.certs.root())
        .env_remove("RUST_LOG")
        .env_remove("COALITION_HUB")
        .env_remove("COALITION_MEMBER")
        .env_remove("COALITION_CERTS");
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run coalition")
}

#[tokio::test]
async fn the_cli_submits_an_expiring_list_and_refuses_a_past_expiry_in_one_line() {
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let list = queries(dir.path(), 40, 2);
    let before = t.store.log_size();
    let past = submit_cli(
        &t,
        "acme",
        &[
            "--hashes",
            list.to_str().expect("utf-8"),
            "--expires-at",
            "2020-01-01T00:00:00Z",
        ],
    )
    .await;
    assert!(!past.status.success(), "{past:?}");
    let stderr = String::from_utf8_lossy(&past.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("already past"), "{stderr}");
    assert_eq!(t.store.log_size(), before, "a refusal stores nothing");

    let expires = now_ms() + 3_000;
    let future = submit_cli(
        &t,
        "acme",
        &[
            "--hashes",
            list.to_str().expect("utf-8"),
            "--expires-at",
            &expires.to_string(),
            "--new-submission",
        ],
    )
    .await;
    assert!(future.status.success(), "{future:?}");
    let mut globex = t.client("globex").await;
    assert_eq!(matches(&mut globex, 40, 2).await, [1, 1]);
    sleep_past(expires).await;
    assert_eq!(matches(&mut globex, 40, 2).await, [0, 0]);
}
