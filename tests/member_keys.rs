//! A member that keeps its own keys, end to end with the real binary: `coalition keygen` on the
//! member's machine, `coalition pki sign-request` at the coalition CA, admission with the public
//! key only by a quorum of two admins, then submit and sync over mutual TLS with the member's
//! own keys. Certificate requests with a bad signature or another member's subject are refused
//! with one line and nothing issued.

use crate::serve;

use serve::{fails, ok};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject;
use serve::ServeProcess;
use std::path::Path;

/// Every file under `dir`, relative.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("under").display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The arguments of `coalition pki sign-request --csr CSR --member MEMBER`.
fn sign_request<'a>(csr: &'a str, member: &'a str) -> [&'a str; 6] {
    ["pki", "sign-request", "--csr", csr, "--member", member]
}

#[test]
fn a_member_with_its_own_keys_is_admitted_and_submits_and_syncs() {
    let hub_side = tempfile::tempdir().expect("tmp");
    let member_side = tempfile::tempdir().expect("tmp");
    let (h, m) = (hub_side.path(), member_side.path());

    // The coalition: development PKI for the admins, two admins, quorum 2.
    ok(
        h,
        &["pki", "init", "--member", "admin", "--member", "alice"],
    );
    ok(
        h,
        &[
            "init",
            "--data",
            "data",
            "--name",
            "keys.test",
            "--admin",
            "admin",
            "--admin",
            "alice",
            "--quorum",
            "2",
        ],
    );
    let (_hub, addr) = ServeProcess::start(h, &[]);

    // The member's machine: its own keys and a certificate request.
    let out = ok(m, &["keygen", "--member", "newco", "--out", "keys"]);
    let public = out
        .lines()
        .find_map(|l| l.strip_prefix("signing public key: "))
        .and_then(|l| l.split_whitespace().next())
        .expect("public key line")
        .to_owned();
    assert_eq!(public.len(), 64, "{out}");
    assert_eq!(
        std::fs::read_to_string(m.join("keys/members/newco.sign.pub"))
            .expect("pub")
            .trim(),
        public
    );
    assert!(out.contains("keys/members/newco.csr"), "{out}");
    let key_pem = std::fs::read_to_string(m.join("keys/members/newco.sign.key")).expect("key");
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    // Running it again never replaces a private key.
    let err = fails(m, &["keygen", "--member", "newco", "--out", "keys"]);
    assert!(err.contains("already exists"), "{err}");

    // The CA: only the request crosses over.
    let csr = h.join("newco.csr");
    std::fs::copy(m.join("keys/members/newco.csr"), &csr).expect("send csr");
    let out = ok(h, &sign_request("newco.csr", "newco"));
    assert!(out.contains("issued newco's certificate serial "), "{out}");
    let cert = h.join("certs/members/newco.pem");
    assert!(cert.exists());
    assert!(!h.join("certs/members/newco.key").exists());
    assert!(!h.join("certs/members/newco.sign.key").exists());
    // The certificate is for the member's own TLS key and names the member.
    let issued = std::fs::read(&cert).expect("cert");
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&issued).expect("pem");
    let (_, x509) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    let csr_der = CertificateSigningRequestDer::from_pem_file(&csr).expect("csr pem");
    let (_, request) = <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(csr_der.as_ref()).expect("csr");
    assert_eq!(
        x509.public_key().raw,
        request.certification_request_info.subject_pki.raw,
        "issued for the requested key"
    );
    let sans = x509
        .subject_alternative_name()
        .expect("san ext")
        .expect("san")
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>();
    assert_eq!(sans, ["URI(urn:coalition:member:newco)"]);
    assert!(!x509.is_ca());
    // Issuing twice for the same member is refused.
    let err = fails(h, &sign_request("newco.csr", "newco"));
    assert!(err.contains("already exists"), "{err}");

    // The certificate and the CA certificate go back to the member.
    std::fs::copy(&cert, m.join("keys/members/newco.pem")).expect("cert back");
    std::fs::copy(h.join("certs/ca.pem"), m.join("keys/ca.pem")).expect("ca back");

    // Admission with the public key only, by both admins.
    let out = ok(
        h,
        &[
            "admin",
            "member",
            "admit",
            "--id",
            "newco",
            "--key",
            &public,
            "--hub",
            &addr,
            "--as",
            "admin",
            "--sign-only",
            "admit.json",
        ],
    );
    assert!(out.contains("admit 'newco'"), "{out}");
    ok(h, &["admin", "cosign", "admit.json", "--as", "alice"]);
    let out = ok(
        h,
        &[
            "admin",
            "submit",
            "admit.json",
            "--hub",
            &addr,
            "--as",
            "alice",
        ],
    );
    assert!(out.contains("logged at log entry"), "{out}");

    // The member submits and syncs with its own keys over mutual TLS.
    std::fs::write(
        m.join("hashes.csv"),
        format!("type,hash\nsha256,{}\n", "cd".repeat(32)),
    )
    .expect("csv");
    let out = ok(
        m,
        &[
            "submit",
            "--hub",
            &addr,
            "--certs",
            "keys",
            "--as",
            "newco",
            "--hashes",
            "hashes.csv",
        ],
    );
    assert!(out.contains("submitted 1 statement(s) (1 hashes)"), "{out}");
    let out = ok(
        m,
        &["whoami", "--hub", &addr, "--certs", "keys", "--as", "newco"],
    );
    assert!(out.contains("newco"), "{out}");
    let out = ok(
        m,
        &[
            "sync",
            "--hub",
            &addr,
            "--certs",
            "keys",
            "--as",
            "newco",
            "--out",
            "all.jsonl",
        ],
    );
    assert!(
        out.contains("all signatures and entitlements verified"),
        "{out}"
    );
    let synced = std::fs::read_to_string(m.join("all.jsonl")).expect("synced");
    assert!(synced.contains(&"cd".repeat(32)), "{synced}");
    assert!(synced.contains("\"issuer\":\"newco\""), "{synced}");

    // Nothing private ever went to the hub's side, and the member's side holds only its own.
    assert_eq!(
        files(&m.join("keys")),
        [
            "ca.pem",
            "members/newco.csr",
            "members/newco.key",
            "members/newco.pem",
            "members/newco.sign.key",
            "members/newco.sign.pub",
        ]
    );
}

#[test]
fn a_request_with_a_bad_signature_or_another_subject_is_refused() {
    let ca_side = tempfile::tempdir().expect("tmp");
    let member_side = tempfile::tempdir().expect("tmp");
    let (h, m) = (ca_side.path(), member_side.path());
    ok(h, &["pki", "init", "--member", "admin"]);
    ok(m, &["keygen", "--member", "newco", "--out", "keys"]);
    let csr_path = m.join("keys/members/newco.csr");

    // Another member's name: refused, nothing written.
    let err = fails(h, &sign_request(csr_path.to_str().expect("utf-8"), "other"));
    assert!(
        err.contains("the request's subject is 'CN=newco', not 'CN=other'"),
        "{err}"
    );
    assert!(!h.join("certs/members/other.pem").exists());

    // One bit of the signature changed: refused, nothing written.
    let der = CertificateSigningRequestDer::from_pem_file(&csr_path).expect("pem");
    let mut bytes = der.as_ref().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        STANDARD.encode(&bytes)
    );
    std::fs::write(h.join("bad.csr"), tampered).expect("write");
    let err = fails(h, &sign_request("bad.csr", "newco"));
    assert!(
        err.contains("bad.csr: the request's signature does not verify"),
        "{err}"
    );
    assert!(!h.join("certs/members/newco.pem").exists());

    // Not a request at all.
    std::fs::write(h.join("junk.csr"), "hello\n").expect("write");
    let err = fails(h, &sign_request("junk.csr", "newco"));
    assert!(
        err.contains("not a PEM PKCS#10 certificate signing request"),
        "{err}"
    );

    // The genuine request still works.
    let out = ok(h, &sign_request(csr_path.to_str().expect("utf-8"), "newco"));
    assert!(out.contains("issued newco's certificate"), "{out}");
}
