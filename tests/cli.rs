//! The `coalition` binary end to end: PKI, offline bootstrap, serve, admin over mTLS, submit a
//! CSV, sync to JSON Lines with a cursor, resume, and one-line errors with non-zero exits.

use crate::serve;

use serve::{coalition, fails, ok, ok_with_stderr};

use serve::ServeProcess;

use std::path::Path;

fn serve(dir: &Path) -> (ServeProcess, String) {
    ServeProcess::start(dir, &[])
}

fn serve_with(dir: &Path, extra: &[&str]) -> (ServeProcess, String) {
    ServeProcess::start(dir, extra)
}

#[test]
fn usage_errors_are_one_line_with_exit_2() {
    let tmp = tempfile::tempdir().expect("tmp");
    for args in [
        &["submit"][..],
        &["sync", "--as", "x", "--out", "y", "--bogus"][..],
    ] {
        let out = coalition(tmp.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
        assert!(stderr.starts_with("error: "), "{stderr:?}");
    }
}

#[test]
fn cli_end_to_end() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    ok(d, &["pki", "init"]);
    assert!(d.join("certs/members/acme.sign.key").exists());
    ok(d, &["pki", "init", "--member", "outsider"]);
    // Found the hub (genesis), serve, admit the members with signed membership statements.
    let out = ok(d, &["init", "--data", "data", "--name", "cli.test"]);
    assert!(out.contains("founded hub 'cli.test'"), "{out}");
    let again = fails(d, &["init", "--data", "data"]);
    assert!(
        again.contains("already holds a log of 1 entries"),
        "{again}"
    );
    let (_hub, addr) = serve(d);
    // globex's display name and the reason are text other people's terminals will show (the
    // protocol allows newlines and tabs in them): a forged line and a bidi override.
    let hostile = "Globex\nacme (Acme) roles=admin\u{202e}";
    for (m, name) in [("acme", "Acme"), ("globex", hostile)] {
        let out = ok(
            d,
            &[
                "admin", "member", "admit", "--hub", &addr, "--as", "admin", "--id", m, "--name",
                name, "--reason", name,
            ],
        );
        assert!(out.contains("logged at log entry"), "{out}");
        assert!(out.contains(&format!("admit '{m}'")), "{out}");
    }
    let list = ok(
        d,
        &["admin", "member", "list", "--hub", &addr, "--as", "admin"],
    );
    let history = ok(
        d,
        &[
            "admin", "member", "history", "globex", "--hub", &addr, "--as", "admin",
        ],
    );
    assert_eq!(list.lines().count(), 3, "{list}");
    assert_eq!(history.lines().count(), 1, "{history}");
    let escaped = r"Globex\nacme (Acme) roles=admin\u{202e}";
    for out in [&list, &history] {
        assert!(out.contains(escaped), "{out}");
        assert!(
            !out.lines()
                .any(|l| l.chars().any(coalition_hub::text::is_unsafe)),
            "{out:?}"
        );
    }

    let pdq = "f".repeat(64);
    std::fs::write(
        d.join("hashes.csv"),
        format!(
            "type,hash,labels,quality\nmd5,d41d8cd98f00b204e9800998ecf8427e,A1;tag-x\nsha256,{},B2\npdq,{pdq},A1,77\n",
            "ab".repeat(32)
        ),
    )
    .expect("write csv");
    let out = ok(
        d,
        &[
            "submit",
            "--hub",
            &addr,
            "--as",
            "acme",
            "--hashes",
            "hashes.csv",
            "--set-size",
            "2",
        ],
    );
    assert!(out.contains("submitted 2 statement(s) (3 hashes)"), "{out}");
    std::fs::write(
        d.join("signal.json"),
        r#"{"category":"grooming","severity":"medium","title":"New lure phrase","indicators":[{"type":"keyword","value":"secret game"}],"first_seen_ms":1700000000000,"last_seen_ms":1700000000000}"#,
    )
    .expect("write signal");
    ok(
        d,
        &[
            "submit",
            "--hub",
            &addr,
            "--as",
            "acme",
            "--signal",
            "signal.json",
        ],
    );

    let sync_shared = || {
        ok_with_stderr(
            d,
            &[
                "sync",
                "--hub",
                &addr,
                "--as",
                "globex",
                "--out",
                "shared.jsonl",
            ],
        )
    };
    let (out, stderr) = sync_shared();
    assert!(
        out.contains("synced 6 statements (3 hashes, 1 risk signals, 3 membership, 0 outside the filter) from seq 0 to 6, all signatures and entitlements verified"),
        "{out}"
    );
    assert!(
        out.contains("every entry proven in the hub's signed checkpoint of 6 entries; wrote 4 rows to shared.jsonl"),
        "{out}"
    );
    // Trust on first use: the genesis pinned is printed, to compare out of band.
    let pinned = stderr
        .split("pinned genesis ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no pinned genesis in {stderr:?}"))
        .to_string();
    assert_eq!(pinned.len(), 64, "{stderr}");
    let lines = std::fs::read_to_string(d.join("shared.jsonl")).expect("output");
    assert_eq!(lines.lines().count(), 4);
    let pdq_row: serde_json::Value = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|v| v["type"] == "pdq")
        .expect("pdq row");
    assert_eq!(pdq_row["quality"], 77);
    assert_eq!(pdq_row["issuer"], "acme");
    assert_eq!(pdq_row["labels"], serde_json::json!(["A1"]));

    // The synced file (hash rows and a risk-signal row) serves as an offline match index.
    std::fs::write(d.join("q.txt"), format!("{}\n", "f".repeat(63) + "e")).expect("queries");
    let out = ok(
        d,
        &["match", "--index", "shared.jsonl", "--queries", "q.txt"],
    );
    let hit: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON match");
    assert_eq!(hit["distance"], 1);
    assert_eq!(hit["source"]["issuer"], "acme");

    // Resume: only what is new is appended.
    let more = format!("sha1,{}\n", "cd".repeat(20));
    std::fs::write(d.join("more.csv"), more).expect("write");
    ok(
        d,
        &[
            "submit", "--hub", &addr, "--as", "acme", "--hashes", "more.csv",
        ],
    );
    let (out, stderr) = sync_shared();
    assert!(
        out.contains(
            "synced 1 statements (1 hashes, 0 risk signals, 0 membership, 0 outside the filter) from seq 6 to 7"
        ),
        "{out}"
    );
    assert!(
        out.contains("every entry proven in the hub's signed checkpoint of 7 entries"),
        "{out}"
    );
    assert!(!stderr.contains("pinned genesis"), "pinned once: {stderr}");
    // The cursor holds the member's replica: the pinned genesis and the checkpoint it accepted.
    let cursor = std::fs::read_to_string(d.join("shared.jsonl.cursor")).expect("cursor");
    assert!(
        cursor.contains(&format!("\"genesis\":\"{pinned}\"")),
        "{cursor}"
    );
    assert!(cursor.contains("\"checkpoint\""), "{cursor}");
    let lines = std::fs::read_to_string(d.join("shared.jsonl")).expect("output");
    assert_eq!(lines.lines().count(), 5, "appended, no duplicates");
    // CSV output with a filter.
    let out = ok(
        d,
        &[
            "sync",
            "--hub",
            &addr,
            "--as",
            "globex",
            "--out",
            "pdq.csv",
            "--hash-type",
            "pdq",
        ],
    );
    // Every entry is accounted for and proven; only the selected set's body was sent.
    assert!(
        out.contains(
            "synced 7 statements (1 hashes, 0 risk signals, 3 membership, 3 outside the filter)"
        ),
        "{out}"
    );
    let csv = std::fs::read_to_string(d.join("pdq.csv")).expect("csv");
    assert!(csv.starts_with("seq,statement_id,issuer"), "{csv}");
    assert_eq!(csv.lines().count(), 2, "header and only the pdq row: {csv}");

    // Errors: one readable line, exit 1.
    std::fs::write(
        d.join("bad.csv"),
        "type,hash\nmd5,d41d8cd98f00b204e9800998ecf8427e\nsha256,abcd\n",
    )
    .expect("write");
    let err = fails(
        d,
        &[
            "submit", "--hub", &addr, "--as", "acme", "--hashes", "bad.csv",
        ],
    );
    assert!(
        err.contains("bad.csv:3: value: a sha256 hash must be 32 bytes, got 2"),
        "{err}"
    );
    // Another coalition's genesis pinned: refused, nothing written.
    let err = fails(
        d,
        &[
            "sync",
            "--hub",
            &addr,
            "--as",
            "globex",
            "--out",
            "pinned.jsonl",
            "--genesis",
            &"0".repeat(64),
        ],
    );
    assert!(err.contains("is not the pinned genesis"), "{err}");
    assert_eq!(
        std::fs::read_to_string(d.join("pinned.jsonl")).unwrap_or_default(),
        "",
        "no row written"
    );
    let err = fails(
        d,
        &[
            "sync", "--hub", &addr, "--as", "outsider", "--out", "x.jsonl",
        ],
    );
    assert!(
        err.contains("permission denied: member 'outsider' is not registered"),
        "{err}"
    );
    let err = fails(
        d,
        &[
            "admin", "member", "admit", "--hub", &addr, "--as", "admin", "--id", "acme",
        ],
    );
    assert!(err.contains("already exists"), "{err}");
    let err = fails(
        d,
        &[
            "submit", "--hub", &addr, "--as", "nobody", "--hashes", "more.csv",
        ],
    );
    assert!(err.contains("nobody.sign.key does not exist"), "{err}");
    let err = fails(
        d,
        &[
            "sync",
            "--hub",
            "127.0.0.1:1",
            "--as",
            "globex",
            "--out",
            "y.jsonl",
        ],
    );
    assert!(
        err.contains("cannot connect to the hub at 127.0.0.1:1"),
        "{err}"
    );

    // Administering: two more admins, a 2-of-3 quorum, a change co-signed offline.
    ok(d, &["pki", "init", "--member", "alice", "--member", "bob"]);
    let admin = |args: &[&str]| {
        let mut all = vec!["admin"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--hub", &addr]);
        all.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| ok(d, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let run_fails =
        |args: Vec<String>| fails(d, &args.iter().map(String::as_str).collect::<Vec<_>>());
    for a in ["alice", "bob"] {
        run(admin(&[
            "member", "admit", "--id", a, "--role", "admin", "--as", "admin",
        ]));
    }
    run(admin(&["quorum", "set", "2", "--as", "admin"]));
    let out = run(admin(&[
        "member",
        "suspend",
        "globex",
        "--reason",
        "unpaid dues",
        "--as",
        "admin",
        "--sign-only",
        "suspend.json",
    ]));
    assert!(
        out.contains("wrote suspend.json: suspend 'globex'"),
        "{out}"
    );
    let err = run_fails(admin(&["submit", "suspend.json", "--as", "admin"]));
    assert!(
        err.contains("failed precondition: this membership change needs signatures of 2 distinct admins, it has 1 (admin)"),
        "{err}"
    );
    let out = ok(d, &["admin", "cosign", "suspend.json", "--as", "alice"]);
    assert!(
        out.contains("co-signed suspend.json: suspend 'globex'"),
        "{out}"
    );
    assert!(out.contains("2 signature(s)"), "{out}");
    let out = run(admin(&["submit", "suspend.json", "--as", "alice"]));
    assert!(out.contains("logged at log entry"), "{out}");
    let out = run(admin(&["member", "show", "globex", "--as", "bob"]));
    assert!(out.contains("status=Suspended"), "{out}");
    let out = run(admin(&["member", "history", "globex", "--as", "bob"]));
    assert!(
        out.contains("suspend 'globex': unpaid dues (signed by admin,alice;"),
        "{out}"
    );
    let err = fails(
        d,
        &["sync", "--hub", &addr, "--as", "globex", "--out", "z.jsonl"],
    );
    assert!(err.contains("member 'globex' is suspended"), "{err}");
    let out = run(admin(&["coalition", "--as", "alice"]));
    assert!(out.contains("quorum 2 of admins admin,alice,bob"), "{out}");
    // A key revoked as compromised needs a time; bad input is one line.
    let err = run_fails(admin(&[
        "key",
        "revoke",
        "--member",
        "acme",
        "--key-id",
        "0011223344556677",
        "--why",
        "compromised",
        "--as",
        "admin",
    ]));
    assert!(
        err.contains("--why compromised needs --since TIME"),
        "{err}"
    );

    // Auditing: export, verify offline, verify live; a tampered export fails naming the entry.
    let out = ok(
        d,
        &[
            "audit",
            "export",
            "--hub",
            &addr,
            "--as",
            "bob",
            "--out",
            "log.bundle",
        ],
    );
    assert!(out.starts_with("exported "), "{out}");
    let out = ok(d, &["audit", "verify", "log.bundle"]);
    assert!(out.starts_with("audit OK: hub 'cli.test'"), "{out}");
    assert!(out.contains("membership changes"), "{out}");
    let genesis = out
        .split("(genesis ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("genesis id")
        .to_string();
    let out = ok(d, &["audit", "verify", "log.bundle", "--genesis", &genesis]);
    assert!(out.contains("audit OK"), "{out}");
    let err = fails(
        d,
        &[
            "audit",
            "verify",
            "log.bundle",
            "--genesis",
            &"0".repeat(64),
        ],
    );
    assert!(err.contains("this is another hub's history"), "{err}");
    let out = ok(d, &["audit", "verify", "--hub", &addr, "--as", "alice"]);
    assert!(out.contains("audit OK"), "{out}");
    let mut bytes = std::fs::read(d.join("log.bundle")).expect("bundle");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(d.join("tampered.bundle"), bytes).expect("write");
    let err = fails(d, &["audit", "verify", "tampered.bundle"]);
    assert!(err.contains("audit FAILED: entry "), "{err}");
    let err = fails(d, &["audit", "verify", "hashes.csv"]);
    assert!(err.contains("not an audit bundle"), "{err}");
}

#[test]
fn pki_revoke_is_picked_up_by_a_hub_serving_with_crl() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    ok(d, &["pki", "init"]);
    assert!(d.join("certs/crl.pem").exists(), "init writes an empty CRL");
    ok(d, &["init", "--data", "data"]);
    let (_hub, addr) = serve_with(d, &["--crl", "certs/crl.pem"]);
    ok(
        d,
        &[
            "admin", "member", "admit", "--hub", &addr, "--as", "admin", "--id", "acme",
        ],
    );
    let out = ok(d, &["whoami", "--hub", &addr, "--as", "acme"]);
    assert!(out.contains("acme"), "{out}");

    let out = ok(d, &["pki", "revoke", "--member", "acme"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("revoked acme certificate serial "), "{out}");
    assert!(out.contains("crl.pem (CRL number 2, 1 revoked)"), "{out}");
    fails(d, &["pki", "revoke", "--member", "nobody"]);

    // The hub polls the file every second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while coalition(d, &["whoami", "--hub", &addr, "--as", "acme"])
        .status
        .success()
    {
        assert!(std::time::Instant::now() < deadline, "acme still accepted");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let stderr = fails(d, &["whoami", "--hub", &addr, "--as", "acme"]);
    // Refused at the TLS handshake, not by a status from the hub: the client reads the
    // revocation alert and says so in one line, or (when the hub closed the connection before
    // the alert was read) reports a transport error.
    assert!(
        stderr.trim_end() == format!("error: {}", coalition_hub::client::REVOKED_MESSAGE)
            || stderr.contains("transport error"),
        "{stderr}"
    );
    assert!(!stderr.contains("unauthenticated"), "{stderr}");
    ok(d, &["whoami", "--hub", &addr, "--as", "admin"]);
}

#[test]
fn quickstart_runs_on_a_fresh_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = coalition(tmp.path(), &["quickstart"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(tmp.path().join("certs/ca.pem").exists());
    for step in [
        "resubmitting the same envelope is idempotent: already_present=true",
        "globex tried to submit a statement in acme's name: refused (permission denied",
        "globex synced 5 statements (3 membership, 6 hashes, 1 risk signal)",
        "match (near-duplicate PDQ query): hit, distance 5",
        "match (unrelated PDQ query): no match",
        "inclusion proof verified",
        "audit export + offline verify",
        "checkpoint(s) match the recomputed root",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in\n{stdout}");
    }
    assert!(stderr.trim().is_empty(), "quiet by default: {stderr}");
    // A second run reuses the certificates.
    let again = coalition(tmp.path(), &["quickstart"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("(0 new files"));
}
