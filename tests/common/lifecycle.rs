//! Helpers shared by the lifecycle tests (retractions, opinions, expiry): sharing a set,
//! asking Match about it, refusals, the `coalition` binary run as a member, more members
//! admitted at test time.

use super::{TestHub, id, sha256_value};
use coalition_hub::client::Client;
use coalition_hub::governance::admission;
use coalition_hub::membership::{Action, Role};
use coalition_hub::pb;
use coalition_hub::statement::{
    Body, Indicator, RiskSignal, Severity, SignalCategory, StatementId,
};
use tonic::Code;

/// A hub that saves its match snapshot to a file of its own, the directory that holds it (keep
/// it alive) and the file's path: for tests that restart the hub from that snapshot.
pub async fn hub_with_match_snapshot() -> (TestHub, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("matching-index.bin");
    let index = path.clone();
    let t = TestHub::start_with(move |_, o| coalition_hub::server::ServeOptions {
        match_snapshot: Some(index),
        ..o
    })
    .await;
    (t, dir, path)
}

/// Waits (at most 10 s) until the hub has written its match snapshot to `path`.
pub async fn wait_for_match_snapshot(path: &std::path::Path) {
    for _ in 0..100 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the match snapshot {} was not written", path.display());
}

/// Match for sha256 value `i` of `seed` (see [`sha256_value`]), in `states` (empty: the
/// default, active and disputed); the matches.
pub async fn matches_in(
    client: &mut Client,
    seed: u64,
    i: u64,
    states: &[pb::EntryState],
) -> Vec<pb::HashMatch> {
    let answer = client
        .hub
        .r#match(pb::MatchRequest {
            queries: vec![pb::MatchQuery {
                r#type: pb::HashType::Sha256 as i32,
                value: sha256_value(seed, i),
                quality: None,
            }],
            states: states.iter().map(|s| *s as i32).collect(),
            ..Default::default()
        })
        .await
        .expect("match")
        .into_inner();
    answer.results.into_iter().flat_map(|r| r.matches).collect()
}

/// How many matches each sha256 value of `seed` (entries `0..n`) has at the hub.
pub async fn matches(client: &mut Client, seed: u64, n: u64) -> Vec<usize> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(matches_in(client, seed, i, &[]).await.len());
    }
    out
}

/// Submits a hash set of `n` hashes (seed `seed`) as `member`; its statement id and seq.
pub async fn share(t: &TestHub, member: &str, seed: u64, n: usize) -> (StatementId, u64) {
    logged(t, member, t.hash_set(member, seed, n)).await
}

/// Submits `envelope` as `member`, which the hub must log; its statement id and seq.
pub async fn logged(t: &TestHub, member: &str, envelope: pb::Envelope) -> (StatementId, u64) {
    let receipt = t
        .client(member)
        .await
        .submit(envelope)
        .await
        .expect("logged")
        .receipt
        .expect("receipt");
    (
        StatementId::from_slice(&receipt.statement_id).expect("id"),
        receipt.seq,
    )
}

/// Submits a risk signal (sextortion, high severity, seen in the last second, no expiry) with
/// `title`, `description` and `indicators` as `member`; its statement id and seq (as [`share`]).
pub async fn share_signal(
    t: &TestHub,
    member: &str,
    title: &str,
    description: String,
    indicators: Vec<Indicator>,
) -> (StatementId, u64) {
    let now = coalition_hub::store::now_ms();
    let signal = coalition_hub::client::sign_new(
        &id(member),
        &t.key(member),
        Body::RiskSignal(RiskSignal {
            category: SignalCategory::Sextortion,
            severity: Severity::High,
            title: title.into(),
            description,
            indicators,
            first_seen_ms: now - 1000,
            last_seen_ms: now,
            expires_at_ms: None,
        }),
    );
    logged(t, member, signal).await
}

/// Asserts a submission was refused with `code` and a message containing `text`.
pub fn refused(result: Result<pb::SubmitResponse, impl std::fmt::Display>, code: Code, text: &str) {
    let err = match result {
        Ok(r) => panic!("expected {code:?}, got {r:?}"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(coalition_hub::client::code_name(code)) || err.contains(&format!("{code:?}")),
        "expected {code:?} in '{err}'"
    );
    assert!(err.contains(text), "expected '{text}' in '{err}'");
}

/// Runs the `coalition` binary with `args` against `t` as `member`.
pub async fn cli(t: &TestHub, member: &str, args: &[&str]) -> std::process::Output {
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

/// Creates certificates and keys for `members` and admits each with the `member` role.
pub async fn admit_members(t: &TestHub, members: &[&str]) {
    for m in members {
        t.certs
            .add_member(&id(m), &mut Default::default())
            .expect("member certificate");
        t.admin_change(Action::Admit(admission(
            &id(m),
            &m.to_uppercase(),
            &[Role::Member],
            &[t.key(m).verifying_key()],
        )))
        .await
        .expect("admit member");
    }
}

/// Sets the coalition's quarantine threshold (an admin settings change; quorum 1).
pub async fn set_quarantine_threshold(t: &TestHub, threshold: u32) {
    use coalition_hub::settings::{LifecycleSettings, Section};
    let envelope = coalition_hub::governance::settings(
        &id("admin"),
        &t.key("admin"),
        Section::Lifecycle(LifecycleSettings {
            quarantine_threshold: threshold,
        }),
        "test",
    );
    t.client("admin")
        .await
        .submit(envelope)
        .await
        .expect("lifecycle settings");
}

/// `coalition match --index FILE --queries Q` offline (it must succeed); what it printed.
pub async fn offline_match(index: &std::path::Path, queries: &std::path::Path) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_coalition"));
    command
        .args(["match", "--index"])
        .arg(index)
        .arg("--queries")
        .arg(queries)
        .env_remove("COALITION_HUB")
        .env_remove("COALITION_MEMBER");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run coalition match");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Retracts `entries` (empty: the whole statement) of `target` as its issuer `member`, which
/// the hub must log.
pub async fn retract(
    t: &TestHub,
    member: &str,
    target: StatementId,
    entries: &[u32],
    reason: &str,
) {
    let retraction = coalition_hub::client::sign_new(
        &id(member),
        &t.key(member),
        Body::Retraction(coalition_hub::lifecycle::Retraction {
            target,
            entries: entries.to_vec(),
            reason: reason.into(),
            admin_quorum: false,
            erase: false,
        }),
    );
    logged(t, member, retraction).await;
}
