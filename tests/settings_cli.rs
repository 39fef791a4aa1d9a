//! Coalition settings with the `coalition` binary: quotas set and shown, and a hub key rotation
//! over a running `coalition serve` handed the next key (`--next-hub-key`), after which member
//! sync and `audit verify` pass, the old key no longer starts the hub and the new one does.

use crate::serve;

use serve::{fails, ok};

use serve::ServeProcess;
use std::path::Path;

fn submit(d: &Path, addr: &str, file: &str, first: u8) {
    let rows: String = (0..3)
        .map(|i| format!("sha256,{}\n", hex_byte(first + i).repeat(32)))
        .collect();
    std::fs::write(d.join(file), format!("type,hash\n{rows}")).expect("csv");
    let out = ok(
        d,
        &["submit", "--hub", addr, "--as", "acme", "--hashes", file],
    );
    assert!(out.contains("submitted"), "{out}");
}

fn hex_byte(b: u8) -> String {
    format!("{b:02x}")
}

#[test]
fn hub_key_rotation_and_quotas_with_the_cli() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    // `newhub` is only a key pair here: its signing key becomes the hub's next key.
    ok(d, &["pki", "init"]);
    ok(d, &["pki", "init", "--member", "newhub"]);
    ok(d, &["init", "--data", "data", "--name", "settings.test"]);
    let new_key = "certs/members/newhub.sign.key";
    let (hub, addr) = ServeProcess::start(d, &["--next-hub-key", new_key]);
    for m in ["acme", "globex"] {
        ok(
            d,
            &[
                "admin", "member", "admit", "--hub", &addr, "--as", "admin", "--id", m,
            ],
        );
    }
    submit(d, &addr, "a.csv", 1);

    // Quotas: set, then shown.
    let out = ok(
        d,
        &[
            "admin",
            "settings",
            "quotas",
            "--submissions-per-minute",
            "600",
            "--member-limits",
            "globex=0,0,0,0,5,0",
            "--hub",
            &addr,
            "--as",
            "admin",
        ],
    );
    assert!(
        out.contains("set quotas: default 600 submissions/min"),
        "{out}"
    );
    let err = fails(
        d,
        &[
            "admin",
            "settings",
            "quotas",
            "--member-limits",
            "globex=1,2",
            "--hub",
            &addr,
            "--as",
            "admin",
        ],
    );
    assert!(err.contains("six numbers expected"), "{err}");

    // The rotation, signed offline by the admin and the new key, then submitted.
    let out = ok(
        d,
        &[
            "admin",
            "settings",
            "rotate-hub-key",
            "--new-key",
            new_key,
            "--as",
            "admin",
            "--sign-only",
            "rotate.json",
        ],
    );
    assert!(out.contains("rotate the hub checkpoint key"), "{out}");
    assert!(out.contains("2 signature(s)"), "{out}");
    let out = ok(
        d,
        &[
            "admin",
            "submit",
            "rotate.json",
            "--hub",
            &addr,
            "--as",
            "admin",
        ],
    );
    assert!(out.starts_with("logged at log entry"), "{out}");
    submit(d, &addr, "b.csv", 10);

    let shown = ok(
        d,
        &["admin", "settings", "show", "--hub", &addr, "--as", "admin"],
    );
    assert!(shown.contains("settings revision 2"), "{shown}");
    assert!(shown.contains("quotas for 'globex'"), "{shown}");
    assert_eq!(shown.matches("(retired)").count(), 1, "{shown}");
    assert_eq!(shown.matches("(current)").count(), 1, "{shown}");

    // Members and auditors follow the rotation.
    ok(
        d,
        &[
            "sync",
            "--hub",
            &addr,
            "--as",
            "globex",
            "--out",
            "out.jsonl",
        ],
    );
    let out = ok(d, &["audit", "verify", "--hub", &addr, "--as", "admin"]);
    assert!(out.contains("audit OK"), "{out}");
    drop(hub);

    // The old key no longer starts the hub; the new one does, and the log still verifies.
    let err = fails(
        d,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
        ],
    );
    assert!(err.contains("not the hub's current key"), "{err}");
    let (_hub, addr) = ServeProcess::start(d, &["--hub-key", new_key]);
    submit(d, &addr, "c.csv", 20);
    ok(
        d,
        &[
            "sync",
            "--hub",
            &addr,
            "--as",
            "globex",
            "--out",
            "out.jsonl",
        ],
    );
    let out = ok(d, &["audit", "verify", "--hub", &addr, "--as", "admin"]);
    assert!(out.contains("audit OK"), "{out}");
}

/// The federation section with the CLI: trusted origins, each origin's peer member
/// (`--peer-of`), shown by `settings show`; a bad flag is one line and changes nothing.
#[test]
fn federation_settings_with_the_cli() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    ok(d, &["pki", "init"]);
    ok(d, &["init", "--data", "data", "--name", "settings.test"]);
    let (_hub, addr) = ServeProcess::start(d, &[]);
    let (x, y) = ("0a".repeat(32), "0b".repeat(32));
    let set = |extra: &[&str]| {
        let mut args = vec![
            "admin",
            "settings",
            "federation",
            "--hub",
            &addr,
            "--as",
            "admin",
            "--reason",
            "partners",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let x_origin = format!("{x}=x.example");
    let y_origin = format!("{y}=y.example@{x}");
    let x_peer = format!("{x}=hub-x");
    let args = set(&[
        "--origin",
        &x_origin,
        "--origin",
        &y_origin,
        "--peer-of",
        &x_peer,
    ]);
    let out = ok(d, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("x.example"), "{out}");
    let shown = ok(
        d,
        &["admin", "settings", "show", "--hub", &addr, "--as", "admin"],
    );
    assert!(
        shown.contains(&format!(
            "trusts 'x.example' (genesis {x}), pulling here as 'hub-x'"
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("trusts 'y.example' (genesis {y}), relayed by {x}")),
        "{shown}"
    );
    // A peer for an origin not listed, or a peer that is not a member id: one line, nothing set.
    let z_peer = format!("{}=hub-x", "0c".repeat(32));
    let args = set(&["--origin", &x_origin, "--peer-of", &z_peer]);
    let err = fails(d, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("no --origin names this genesis"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let bad_peer = format!("{x}=Hub X");
    let args = set(&["--origin", &x_origin, "--peer-of", &bad_peer]);
    let err = fails(d, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("peer"), "{err}");
    let again = ok(
        d,
        &["admin", "settings", "show", "--hub", &addr, "--as", "admin"],
    );
    assert_eq!(again.matches("trusts '").count(), 2, "unchanged: {again}");
}
