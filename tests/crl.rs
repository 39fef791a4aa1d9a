//! Certificate revocation over real mutual TLS: a CRL written while the hub runs refuses the
//! revoked certificate at the handshake of new connections and with UNAUTHENTICATED on
//! connections already open; a CRL that does not load leaves the previous one in force; a hub
//! started with a CRL refuses from the start.

use crate::common;

use coalition_hub::client::{Client, ClientError};
use coalition_hub::pb;
use coalition_hub::server::ServeOptions;
use common::{TestHub, id};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const POLL: Duration = Duration::from_millis(50);

fn with_crl(certs: &coalition_hub::pki::CertDir, options: ServeOptions) -> ServeOptions {
    ServeOptions {
        crl: Some(certs.crl_file()),
        crl_poll: POLL,
        ..options
    }
}

/// How a fresh connection as a member fares.
#[derive(Debug)]
enum Attempt {
    /// WhoAmI answered, naming this member.
    Ok,
    /// The connection failed below gRPC (the TLS handshake), as connect or first-call error.
    Transport(String),
    /// The hub answered with a gRPC status.
    Status(tonic::Status),
}

async fn attempt(t: &TestHub, member: &str) -> Attempt {
    let mut client = match Client::connect(&t.addr, &t.tls(member)).await {
        Ok(client) => client,
        Err(ClientError::Connect { source, .. }) => return Attempt::Transport(chain(&source)),
        Err(other) => panic!("unexpected client error: {other}"),
    };
    match client.hub.who_am_i(pb::WhoAmIRequest {}).await {
        Ok(me) => {
            assert_eq!(
                me.into_inner().member_id,
                member,
                "peer_certs names the member"
            );
            Attempt::Ok
        }
        Err(status) => {
            match std::error::Error::source(&status).map(chain) {
                // tonic reports a broken connection as a status made on the client side, with
                // the transport error as its source; the hub's own statuses have none.
                Some(source) => Attempt::Transport(source),
                None => Attempt::Status(status),
            }
        }
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        cur = inner.source();
    }
    out
}

/// A bare TLS handshake as `member` followed by one read: with TLS 1.3 the hub's verdict on
/// the client certificate arrives after the client's side of the handshake, so it shows on
/// the read. Returns the TLS error, if any.
async fn raw_tls(t: &TestHub, member: &str) -> Result<(), String> {
    let tls = t.tls(member);
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        roots.add(ca.expect("ca pem")).expect("ca");
    }
    let chain = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("cert pem");
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).expect("key pem");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&t.addr)
        .await
        .expect("tcp connect");
    let server = ServerName::try_from("localhost").expect("name");
    let io = async {
        let mut stream = connector.connect(server, tcp).await?;
        // The hub speaks first (its HTTP/2 SETTINGS) once it accepted the certificate; the
        // client writes nothing, so the refusal cannot turn into a reset before the alert.
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed without a word"));
        }
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(10), io).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

fn is_revoked_alert(e: &str) -> bool {
    e.contains("CertificateRevoked")
}

/// Waits until a bare handshake as `member` is refused as revoked (several poll intervals at
/// most; generous for slow machines).
async fn until_refused(t: &TestHub, member: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match raw_tls(t, member).await {
            Err(e) if is_revoked_alert(&e) => return,
            other => assert!(
                Instant::now() < deadline,
                "{member} still accepted: {other:?}"
            ),
        }
        tokio::time::sleep(POLL / 2).await;
    }
}

/// The gRPC client fails below gRPC: no status from the hub. (The client may report the TLS
/// alert, or only that the connection closed, depending on timing; `raw_tls` pins the alert.)
async fn refused_below_grpc(t: &TestHub, member: &str) {
    match attempt(t, member).await {
        Attempt::Transport(e) => assert!(e.contains("transport error"), "{e}"),
        other => panic!("expected {member} to fail at the handshake, got {other:?}"),
    }
}

#[tokio::test]
async fn a_crl_written_while_serving_refuses_new_and_open_connections() {
    let t = TestHub::start_with(with_crl).await;
    let mut acme = t.client("acme").await;
    let mut globex = t.client("globex").await;
    for c in [&mut acme, &mut globex] {
        c.hub
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .expect("whoami before revocation");
    }
    assert!(matches!(attempt(&t, "acme").await, Attempt::Ok));
    raw_tls(&t, "acme")
        .await
        .expect("bare handshake before revocation");
    // A following sync stream opened before the revocation.
    let mut following = acme
        .hub
        .sync(pb::SyncRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();

    // (a) Revoked while the hub runs: new connections fail at the handshake.
    let revocation = t.certs.revoke(&id("acme")).expect("revoke");
    until_refused(&t, "acme").await;
    refused_below_grpc(&t, "acme").await;
    assert!(matches!(attempt(&t, "globex").await, Attempt::Ok));
    raw_tls(&t, "globex").await.expect("globex still welcome");

    // (b) The connection acme opened before the revocation is refused on its next call.
    let status = acme
        .hub
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("revoked on an open connection");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(
        status.message(),
        format!(
            "your client certificate is revoked (serial {}) by the coalition CRL",
            revocation.serial
        )
    );
    // The CLI says so in one line.
    let e = anyhow::Error::from(ClientError::from(status));
    assert!(coalition_hub::client::is_certificate_revoked(e.as_ref()));
    assert_eq!(
        coalition_hub::cli::one_line(&e),
        coalition_hub::client::REVOKED_MESSAGE
    );
    // The stream that was already following is cut off at its next re-check.
    let cut = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match following.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("cut off within the re-check interval");
    assert_eq!(
        cut.map(|s| s.code()),
        Some(tonic::Code::Unauthenticated),
        "the following stream ends UNAUTHENTICATED"
    );
    let sync = acme.hub.sync(pb::SyncRequest::default()).await;
    assert_eq!(
        sync.err().map(|s| s.code()),
        Some(tonic::Code::Unauthenticated)
    );
    globex
        .hub
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("globex's open connection unaffected");

    // (c) Garbage in the CRL file: the previous CRL stays in force.
    std::fs::write(t.certs.crl_file(), b"this is not a CRL\n").expect("garbage");
    tokio::time::sleep(POLL * 6).await;
    assert!(is_revoked_alert(
        &raw_tls(&t, "acme").await.expect_err("acme still refused")
    ));
    refused_below_grpc(&t, "acme").await;
    assert!(matches!(attempt(&t, "globex").await, Attempt::Ok));
    assert_eq!(
        acme.hub
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .expect_err("still revoked")
            .code(),
        tonic::Code::Unauthenticated
    );

    // A missing file keeps it too. `pki revoke` then numbers its CRL from 1 again: lower than
    // the CRL in force (2), so refused; the next ones (2, 3) are picked up.
    std::fs::remove_file(t.certs.crl_file()).expect("rm");
    tokio::time::sleep(POLL * 6).await;
    refused_below_grpc(&t, "acme").await;
    assert_eq!(
        t.certs
            .revoke(&id("globex"))
            .expect("revoke globex")
            .crl_number,
        1
    );
    tokio::time::sleep(POLL * 6).await;
    assert!(matches!(attempt(&t, "globex").await, Attempt::Ok));
    t.certs.revoke(&id("globex")).expect("revoke globex again");
    until_refused(&t, "globex").await;
    refused_below_grpc(&t, "acme").await;
    assert!(matches!(attempt(&t, "admin").await, Attempt::Ok));
}

#[tokio::test]
async fn a_hub_started_with_a_crl_refuses_revoked_certificates_from_the_start() {
    // (d) acme is revoked before the hub starts (the harness still admits acme as admin).
    let t = TestHub::start_with(|certs, options| {
        certs.revoke(&id("acme")).expect("revoke");
        with_crl(certs, options)
    })
    .await;
    let e = raw_tls(&t, "acme").await.expect_err("refused");
    assert!(is_revoked_alert(&e), "{e}");
    refused_below_grpc(&t, "acme").await;
    assert!(matches!(attempt(&t, "globex").await, Attempt::Ok));
    assert!(matches!(attempt(&t, "admin").await, Attempt::Ok));
    // The outsider's certificate is valid and not revoked: it gets past TLS, and the
    // registry refuses it.
    match attempt(&t, "outsider").await {
        Attempt::Status(s) => assert_ne!(s.code(), tonic::Code::Ok),
        other => panic!("expected a status from the hub, got {other:?}"),
    }
}

/// Revoked at the handshake: the error the client gets (at connect or first call) is known as
/// a revocation, and the CLI's one line says so instead of "transport error … CertificateRevoked".
#[tokio::test]
async fn a_client_refused_at_the_handshake_reads_one_line_saying_it_is_revoked() {
    let t = TestHub::start_with(|certs, options| {
        certs.revoke(&id("acme")).expect("revoke");
        with_crl(certs, options)
    })
    .await;
    // Depending on timing the client sees the TLS alert or only a closed connection: retry
    // (bounded) until it reports the alert, as a person running the CLI would see it.
    let mut seen = None;
    for _ in 0..50 {
        let error = match Client::connect(&t.addr, &t.tls("acme")).await {
            Err(e) => anyhow::Error::from(e),
            Ok(mut client) => match client.hub.who_am_i(pb::WhoAmIRequest {}).await {
                Err(status) => anyhow::Error::from(ClientError::from(status)),
                Ok(_) => panic!("a revoked certificate was accepted"),
            },
        };
        if coalition_hub::client::is_certificate_revoked(error.as_ref()) {
            seen = Some(error);
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let error = seen.expect("the revocation alert reaches the client");
    assert_eq!(
        coalition_hub::cli::one_line(&error),
        coalition_hub::client::REVOKED_MESSAGE
    );
    // Another member's failure is not reported as a revocation.
    let other = anyhow::Error::from(ClientError::from(tonic::Status::unauthenticated("no")));
    assert!(!coalition_hub::client::is_certificate_revoked(
        other.as_ref()
    ));
}

/// Writes a CRL signed by the coalition CA: `number`, `nextUpdate` `next_update_secs` from now
/// (negative: in the past), revoking nothing.
fn write_crl(certs: &coalition_hub::pki::CertDir, number: u64, next_update_secs: i64) {
    use rcgen::{CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, SerialNumber};
    let root = certs.root();
    let key = KeyPair::from_pem(&std::fs::read_to_string(root.join("ca.key")).expect("ca key"))
        .expect("key");
    let ca = std::fs::read_to_string(root.join("ca.pem")).expect("ca pem");
    let issuer = Issuer::from_ca_cert_pem(&ca, key).expect("issuer");
    let now = x509_parser::time::ASN1Time::now().timestamp();
    let at = |secs: i64| {
        x509_parser::time::ASN1Time::from_timestamp(secs)
            .expect("time")
            .to_datetime()
    };
    let params = CertificateRevocationListParams {
        this_update: at(now.min(now + next_update_secs) - 3600),
        next_update: at(now + next_update_secs),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let pem = params.signed_by(&issuer).expect("sign").pem().expect("pem");
    let tmp = root.join("crl.pem.tmp");
    std::fs::write(&tmp, pem).expect("write");
    std::fs::rename(&tmp, certs.crl_file()).expect("rename");
}

#[tokio::test]
async fn a_crl_with_a_lower_number_is_refused_and_the_previous_stays_in_force() {
    let t = TestHub::start_with(with_crl).await;
    // crl.pem has number 1; revoking makes number 2.
    t.certs.revoke(&id("acme")).expect("revoke");
    until_refused(&t, "acme").await;
    // An older CRL (number 1, revoking nothing), validly signed: refused.
    write_crl(&t.certs, 1, 86_400);
    tokio::time::sleep(POLL * 6).await;
    let e = raw_tls(&t, "acme").await.expect_err("acme still refused");
    assert!(is_revoked_alert(&e), "{e}");
    assert!(matches!(attempt(&t, "globex").await, Attempt::Ok));
    // A newer one (number 3, revoking nothing) is taken.
    write_crl(&t.certs, 3, 86_400);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(attempt(&t, "acme").await, Attempt::Ok) {
        assert!(Instant::now() < deadline, "the newer CRL was not taken");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn an_outdated_crl_fails_closed_after_its_grace_period() {
    let t = TestHub::start_with(|certs, options| ServeOptions {
        crl_grace: Duration::from_secs(60),
        ..with_crl(certs, options)
    })
    .await;
    let mut open = t.client("globex").await;
    // A CRL whose nextUpdate passed an hour ago, grace one minute: every call is refused, on
    // new connections and open ones.
    write_crl(&t.certs, 5, -3600);
    let deadline = Instant::now() + Duration::from_secs(10);
    while open.hub.who_am_i(pb::WhoAmIRequest {}).await.is_ok() {
        assert!(Instant::now() < deadline, "the outdated CRL was not taken");
        tokio::time::sleep(POLL).await;
    }
    match attempt(&t, "globex").await {
        Attempt::Status(s) => {
            assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
            assert!(
                s.message()
                    .contains("certificate revocation list is outdated"),
                "{}",
                s.message()
            );
            assert!(
                s.message().contains("grace period of 60 s"),
                "{}",
                s.message()
            );
        }
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    let before = t.store.log_size();
    let mut globex = t.client("globex").await;
    assert!(globex.submit(t.hash_set("globex", 1, 2)).await.is_err());
    assert_eq!(t.store.log_size(), before);
    // A current CRL (a higher number) ends it.
    write_crl(&t.certs, 6, 86_400);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(attempt(&t, "globex").await, Attempt::Ok) {
        assert!(Instant::now() < deadline, "the current CRL was not taken");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn an_outdated_crl_within_its_grace_period_still_serves() {
    let t = TestHub::start_with(|certs, options| {
        write_crl(certs, 5, -60);
        ServeOptions {
            crl_grace: Duration::from_secs(3600),
            ..with_crl(certs, options)
        }
    })
    .await;
    assert!(matches!(attempt(&t, "globex").await, Attempt::Ok));
}
