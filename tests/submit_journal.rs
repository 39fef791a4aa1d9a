//! Idempotent `coalition submit` (issue 11, item 5), with the real binary and a real hub: a
//! submission cut off by a hub killed with SIGKILL is finished by rerunning the same command,
//! and the log holds each set exactly once; a completed submission submits nothing; changed
//! inputs make new statements; a damaged journal is one error line.

use crate::serve;

use serve::{coalition, ok_with_stderr as ok, one_error_line};

use serve::ServeProcess;
use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A PKI, a founded hub serving, and acme and globex admitted.
fn coalition_with_members(d: &Path) -> (ServeProcess, String) {
    ok(d, &["pki", "init"]);
    ok(d, &["init", "--data", "data"]);
    let (hub, addr) = ServeProcess::start(d, &[]);
    for m in ["acme", "globex"] {
        ok(
            d,
            &[
                "admin", "member", "admit", "--hub", &addr, "--as", "admin", "--id", m,
            ],
        );
    }
    (hub, addr)
}

/// A hash list of `n` distinct sha256 hashes starting at `first`.
fn hash_list(path: &Path, first: u64, n: u64) {
    let rows: String = (first..first + n)
        .map(|i| format!("sha256,{i:064x}\n"))
        .collect();
    std::fs::write(path, rows).expect("write hash list");
}

fn submit_args<'a>(addr: &'a str, list: &'a str, set_size: &'a str) -> Vec<&'a str> {
    vec![
        "submit",
        "--hub",
        addr,
        "--as",
        "acme",
        "--hashes",
        list,
        "--set-size",
        set_size,
    ]
}

/// The journal's `ack` records: statement id by statement index.
fn journal_acks(path: &Path) -> BTreeMap<u64, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["record"] == "ack")
        .map(|v| {
            let index = v["index"].as_u64().expect("index");
            (index, v["id"].as_str().expect("id").to_owned())
        })
        .collect()
}

/// Syncs the whole log as globex into `out` (resuming from its cursor); returns every hash
/// row written so far as (hash, statement id).
fn synced_rows(d: &Path, addr: &str, out: &str) -> Vec<(String, String)> {
    ok(d, &["sync", "--hub", addr, "--as", "globex", "--out", out]);
    let text = std::fs::read_to_string(d.join(out)).expect("sync output");
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json row"))
        .filter(|v| v["kind"] == "hash")
        .map(|v| {
            let field = |f: &str| v[f].as_str().expect("field").to_owned();
            (field("hash"), field("statement_id"))
        })
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

#[cfg(unix)]
#[test]
fn a_rerun_after_the_hub_died_mid_submission_logs_each_set_once() {
    const HASHES: u64 = 300;
    const ACKS_BEFORE_KILL: usize = 5;
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let (hub, addr) = coalition_with_members(d);
    hash_list(&d.join("list.csv"), 0, HASHES);
    let journal = d.join("list.csv.journal");

    // One set per hash: 300 statements, one round trip each. Once 5 receipts are journaled the
    // submitter is frozen (so it cannot finish first), the hub is SIGKILLed, and the submitter
    // thawed: its request in flight, if any, was logged or not, and its reply is lost.
    let mut submit = Command::new(env!("CARGO_BIN_EXE_coalition"))
        .current_dir(d)
        .args(submit_args(&addr, "list.csv", "1"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("submit");
    let deadline = Instant::now() + Duration::from_secs(120);
    while journal_acks(&journal).len() < ACKS_BEFORE_KILL {
        assert!(
            submit.try_wait().expect("try_wait").is_none(),
            "submit ended before {ACKS_BEFORE_KILL} receipts were journaled"
        );
        assert!(Instant::now() < deadline, "no receipts journaled in time");
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(submit.id(), "-STOP");
    hub.kill();
    signal(submit.id(), "-CONT");
    let out = submit.wait_with_output().expect("submit output");
    let err = one_error_line(&out);
    assert!(err.contains("submission interrupted with "), "{err}");
    assert!(
        err.contains(" of 300 statements acknowledged (recorded in list.csv.journal); rerun the same command to submit the rest"),
        "{err}"
    );
    let acked = journal_acks(&journal);
    assert!(
        (ACKS_BEFORE_KILL..300).contains(&acked.len()),
        "{}",
        acked.len()
    );

    // The same command against the restarted hub (a new port) finishes the submission.
    let (hub, addr) = ServeProcess::start(d, &[]);
    let (out, _) = ok(d, &submit_args(&addr, "list.csv", "1"));
    assert!(
        out.contains(&format!(
            "resumed the submission journaled in list.csv.journal: {} already acknowledged, {} submitted now",
            acked.len(),
            300 - acked.len()
        )),
        "{out}"
    );
    let all_acked = journal_acks(&journal);
    assert_eq!(all_acked.len(), 300);
    assert!(
        acked.iter().all(|(i, id)| all_acked.get(i) == Some(id)),
        "earlier receipts kept"
    );

    // The log holds each hash exactly once, in exactly the journaled statements.
    let rows = synced_rows(d, &addr, "all.jsonl");
    let hashes: BTreeSet<&str> = rows.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(rows.len(), 300, "one row per hash: no set logged twice");
    assert_eq!(hashes.len(), 300);
    let logged: BTreeSet<&str> = rows.iter().map(|(_, s)| s.as_str()).collect();
    let journaled: BTreeSet<&str> = all_acked.values().map(String::as_str).collect();
    assert_eq!(logged, journaled);

    // (2) A rerun of the completed submission submits nothing: it does not even dial the hub.
    let (out, _) = ok(d, &submit_args("127.0.0.1:1", "list.csv", "1"));
    assert!(
        out.starts_with("submission already completed (journal list.csv.journal): 300 statement(s) acknowledged; nothing submitted"),
        "{out}"
    );
    assert_eq!(
        out.lines().count(),
        301,
        "the summary and one line per receipt"
    );
    assert!(
        out.contains(&format!("statement 0: seq 3, statement {}", all_acked[&0])),
        "{out}"
    );
    assert_eq!(
        synced_rows(d, &addr, "all.jsonl").len(),
        300,
        "nothing new logged"
    );
    drop(hub);
}

#[test]
fn changed_inputs_sign_anew_and_a_damaged_journal_is_one_error_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let (_hub, addr) = coalition_with_members(d);
    let journal = d.join("small.csv.journal");
    let submit = |set_size: &str, extra: &[&str]| {
        let mut args = submit_args(&addr, "small.csv", set_size);
        args.extend_from_slice(extra);
        coalition(d, &args)
    };
    let stdout = |out: &Output| {
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    hash_list(&d.join("small.csv"), 0, 3);
    let out = stdout(&submit("2", &[]));
    assert!(
        out.starts_with(
            "submitted 2 statement(s) (3 hashes), 0 already present; last: seq 4, statement "
        ),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with("; journal small.csv.journal"),
        "{out}"
    );
    let first = journal_acks(&journal);
    let out = stdout(&submit("2", &[]));
    assert!(out.starts_with("submission already completed"), "{out}");

    // A crash after the hub logged statement 1 but before its receipt was journaled: the
    // rerun resends the same envelope and the hub answers with the original receipt.
    let text = std::fs::read_to_string(&journal).expect("journal");
    let kept: Vec<&str> = text.lines().take(text.lines().count() - 2).collect();
    std::fs::write(&journal, kept.join("\n") + "\n").expect("drop the last ack");
    let out = stdout(&submit("2", &[]));
    assert!(
        out.contains("1 already acknowledged, 1 submitted now (1 of them the hub already held: acknowledgements lost earlier); last: seq 4, statement "),
        "{out}"
    );
    assert_eq!(
        journal_acks(&journal),
        first,
        "the same statements, the same receipts"
    );
    assert!(stdout(&submit("2", &[])).starts_with("submission already completed"));

    // (3) Changed inputs are a new submission: new statements, the completed journal replaced.
    // A different set size is a change too.
    let out = stdout(&submit("3", &[]));
    assert!(
        out.starts_with("submitted 1 statement(s) (3 hashes)"),
        "{out}"
    );
    hash_list(&d.join("small.csv"), 0, 4);
    let out = stdout(&submit("2", &[]));
    assert!(
        out.starts_with("submitted 2 statement(s) (4 hashes)"),
        "{out}"
    );
    let changed = journal_acks(&journal);
    assert_eq!(changed.len(), 2);
    assert!(changed.values().all(|id| !first.values().any(|f| f == id)));

    // An unfinished journal of other inputs is kept under its digest, and can be finished.
    hash_list(&d.join("small.csv"), 100, 2);
    let out = coalition(d, &submit_args("127.0.0.1:1", "small.csv", "1"));
    let err = one_error_line(&out);
    assert!(
        err.contains("cannot connect to the hub at 127.0.0.1:1"),
        "{err}"
    );
    assert!(
        err.contains("submission interrupted with 0 of 2 statements acknowledged"),
        "{err}"
    );
    let unfinished = std::fs::read(&journal).expect("journal");
    std::fs::write(d.join("small.csv"), "sha256,abcd\n").expect("bad input");
    let err = one_error_line(&submit("1", &[]));
    assert!(err.contains("small.csv:1: "), "{err}");
    assert_eq!(
        std::fs::read(&journal).expect("journal"),
        unfinished,
        "left alone"
    );
    hash_list(&d.join("small.csv"), 200, 2);
    let out = submit("1", &[]);
    let note = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stdout(&out).starts_with("submitted 2 statement(s) (2 hashes)"));
    let kept = note
        .split("kept it as ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .unwrap_or_else(|| panic!("no kept journal in {note:?}"))
        .to_owned();
    assert!(kept.starts_with("small.csv.journal."), "{note}");
    assert!(note.contains("(0 of 2 statements acknowledged)"), "{note}");
    assert_eq!(std::fs::read(d.join(&kept)).expect("kept"), unfinished);
    hash_list(&d.join("small.csv"), 100, 2);
    let out = stdout(&submit("1", &["--journal", &kept]));
    assert!(
        out.contains(&format!("resumed the submission journaled in {kept}: 0 already acknowledged, 2 submitted now; last: seq ")),
        "{out}"
    );

    // (4) A damaged journal: one line naming the file and how to start over; nothing sent.
    let before = synced_rows(d, &addr, "all.jsonl").len();
    std::fs::write(&journal, "{\"record\":\"journal\"\n").expect("damage");
    let out = submit("1", &[]);
    let err = one_error_line(&out);
    assert!(
        err.starts_with(
            "error: small.csv.journal:1: damaged submit journal (not a journal record: "
        ),
        "{err}"
    );
    assert!(
        err.contains("delete the file or rerun with --new-submission"),
        "{err}"
    );
    assert_eq!(
        synced_rows(d, &addr, "all.jsonl").len(),
        before,
        "nothing sent"
    );
    let out = stdout(&submit("1", &["--new-submission"]));
    assert!(
        out.starts_with("submitted 2 statement(s) (2 hashes)"),
        "{out}"
    );

    // A risk signal is journaled the same way.
    std::fs::write(
        d.join("signal.json"),
        r#"{"category":"grooming","severity":"medium","title":"New lure phrase","indicators":[{"type":"keyword","value":"secret game"}],"first_seen_ms":1700000000000,"last_seen_ms":1700000000000}"#,
    )
    .expect("write signal");
    let signal = [
        "submit",
        "--hub",
        &addr,
        "--as",
        "acme",
        "--signal",
        "signal.json",
    ];
    assert!(
        ok(d, &signal)
            .0
            .starts_with("submitted 1 statement(s) (a risk signal)")
    );
    assert!(
        ok(d, &signal).0.starts_with(
            "submission already completed (journal signal.json.journal): 1 statement(s)"
        )
    );

    // Every submission above was logged once: 2 + 1 + 2 + 2 + 2 + 2 hash sets.
    let rows = synced_rows(d, &addr, "all.jsonl");
    let statements: BTreeSet<&str> = rows.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(statements.len(), 11, "{rows:?}");
}
