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
