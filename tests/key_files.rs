//! Signing keys written by `coalition pki init` are read by OpenSSL (`openssl pkey`), which
//! refuses ed25519 keys in PKCS#8 v2: the keys must be v1 and their public key must be the one
//! in the matching `.sign.pub`.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `openssl` with `args`; `None` when it is not installed.
fn openssl(args: &[&str]) -> Option<Output> {
    match Command::new("openssl").args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("running openssl: {e}"),
    }
}

/// Checks one key file with OpenSSL: it parses, and its public key is the one in `pub_file`.
fn check_with_openssl(key: &Path, pub_file: &Path) {
    let key = key.to_str().expect("utf-8 path");
    let text = openssl(&["pkey", "-in", key, "-noout", "-text"]).expect("openssl");
    assert!(
        text.status.success(),
        "openssl pkey -text {key}: {}",
        String::from_utf8_lossy(&text.stderr)
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("ED25519 Private-Key"), "{text}");

    let public = openssl(&["pkey", "-in", key, "-pubout", "-outform", "DER"]).expect("openssl");
    assert!(
        public.status.success(),
        "openssl pkey -pubout {key}: {}",
        String::from_utf8_lossy(&public.stderr)
    );
    // SubjectPublicKeyInfo for ed25519 (RFC 8410 section 4): a 12-byte header, then the key.
    let spki = public.stdout;
    assert_eq!(spki.len(), 44, "{}", hex::encode(&spki));
    assert_eq!(hex::encode(&spki[..12]), "302a300506032b6570032100");
    let expected = std::fs::read_to_string(pub_file).expect("read .sign.pub");
    assert_eq!(hex::encode(&spki[12..]), expected.trim(), "{key}");
}

#[test]
fn openssl_reads_written_signing_keys() {
    let Some(version) = openssl(&["version"]) else {
        eprintln!("SKIPPED openssl_reads_written_signing_keys: `openssl` is not on PATH");
        return;
    };
    eprintln!(
        "checking with {}",
        String::from_utf8_lossy(&version.stdout).trim()
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let out = Command::new(env!("CARGO_BIN_EXE_coalition"))
        .current_dir(d)
        .args(["pki", "init", "--member", "acme"])
        .env_remove("COALITION_CERTS")
        .output()
        .expect("run coalition");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let certs = d.join("certs");
    check_with_openssl(&certs.join("hub.sign.key"), &certs.join("hub.sign.pub"));
    check_with_openssl(
        &certs.join("members/acme.sign.key"),
        &certs.join("members/acme.sign.pub"),
    );
}
