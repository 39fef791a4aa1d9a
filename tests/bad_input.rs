//! Bad input over real mutual TLS: each case gets the documented gRPC status with a message
//! naming the problem, and nothing is stored.

mod common;

use coalition_hub::client::{Client, sign_new};
use coalition_hub::membership::KeyId;
use coalition_hub::pb;
use coalition_hub::statement::{Body, MAX_HASH_SET_ENTRIES, MAX_PAYLOAD_BYTES, PAYLOAD_TYPE};
use common::{TestHub, id, sha256_set, sign_wire};
use tonic::Code;

fn statement(
    issuer: &str,
    key: &ed25519_dalek::SigningKey,
    entries: Vec<pb::HashEntry>,
) -> pb::Statement {
    pb::Statement {
        issuer: issuer.into(),
        key_id: KeyId::of(&key.verifying_key()).to_string(),
        issued_at_ms: coalition_hub::store::now_ms(),
        nonce: vec![7; 16],
        body: Some(pb::statement::Body::HashSet(pb::HashSet {
            description: String::new(),
            entries,
        })),
    }
}

fn entry(t: pb::HashType, len: usize, quality: Option<u32>, labels: usize) -> pb::HashEntry {
    pb::HashEntry {
        r#type: t as i32,
        value: vec![1; len],
        quality,
        labels: (0..labels).map(|i| format!("tag{i}")).collect(),
    }
}

async fn expect(client: &mut Client, envelope: pb::Envelope, code: Code, needle: &str) {
    let err = client
        .hub
        .submit(pb::SubmitRequest {
            envelope: Some(envelope),
        })
        .await
        .expect_err("must be refused");
    assert_eq!(err.code(), code, "{needle}: got {err:?}");
    assert!(
        err.message().contains(needle),
        "message {:?} should contain {needle:?}",
        err.message()
    );
}

#[tokio::test]
async fn submit_bad_input_table() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let key = t.key("acme");
    let good = |entries| sign_wire(&statement("acme", &key, entries), &key);
    let sha = |n| entry(pb::HashType::Sha256, 32, None, n);

    // Issuer differs from the authenticated member.
    let globex_key = t.key("globex");
    expect(
        &mut acme,
        sign_wire(&statement("globex", &globex_key, vec![sha(0)]), &globex_key),
        Code::PermissionDenied,
        "is not the authenticated member 'acme'",
    )
    .await;
    // Bad signature: a flipped bit.
    let mut env = good(vec![sha(0)]);
    env.signatures[0].sig[0] ^= 1;
    expect(
        &mut acme,
        env,
        Code::InvalidArgument,
        "signatures[0]: signature by key",
    )
    .await;
    // Signature over other bytes (payload changed after signing).
    let mut env = good(vec![sha(0)]);
    let other = good(vec![sha(1)]);
    env.payload = other.payload.clone();
    expect(&mut acme, env, Code::InvalidArgument, "does not verify").await;
    // Missing signature.
    let mut env = good(vec![sha(0)]);
    env.signatures.clear();
    expect(
        &mut acme,
        env,
        Code::InvalidArgument,
        "envelope.signatures: missing",
    )
    .await;
    // Malformed signature length.
    let mut env = good(vec![sha(0)]);
    env.signatures[0].sig.truncate(10);
    expect(
        &mut acme,
        env,
        Code::InvalidArgument,
        "envelope.signatures[0].sig: an ed25519 signature is 64 bytes, got 10",
    )
    .await;
    // Unknown key id: signed with a key acme never registered.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    expect(
        &mut acme,
        sign_wire(&statement("acme", &stranger, vec![sha(0)]), &stranger),
        Code::InvalidArgument,
        "is not an active key of member 'acme'",
    )
    .await;
    // Malformed payload.
    let mut env = good(vec![sha(0)]);
    env.payload = vec![0xff, 0xff, 0xff].into();
    expect(
        &mut acme,
        env,
        Code::InvalidArgument,
        "payload: not a coalition.v1.Statement",
    )
    .await;
    // Wrong payload type.
    let mut env = good(vec![sha(0)]);
    env.payload_type = "application/json".into();
    expect(
        &mut acme,
        env,
        Code::InvalidArgument,
        "envelope.payload_type",
    )
    .await;
    // Wrong hash length, naming the entry index.
    expect(
        &mut acme,
        good(vec![
            sha(0),
            sha(0),
            entry(pb::HashType::Sha256, 31, None, 0),
        ]),
        Code::InvalidArgument,
        "hash_set.entries[2].value: a sha256 hash must be 32 bytes, got 31",
    )
    .await;
    expect(
        &mut acme,
        good(vec![entry(pb::HashType::Md5, 32, None, 0)]),
        Code::InvalidArgument,
        "hash_set.entries[0].value: a md5 hash must be 16 bytes, got 32",
    )
    .await;
    // Quality out of range.
    expect(
        &mut acme,
        good(vec![sha(0), entry(pb::HashType::Pdq, 32, Some(101), 0)]),
        Code::InvalidArgument,
        "hash_set.entries[1].quality: PDQ quality must be 0..=100, got 101",
    )
    .await;
    // Too many labels.
    expect(
        &mut acme,
        good(vec![sha(17)]),
        Code::InvalidArgument,
        "hash_set.entries[0].labels: at most 16 labels per entry, got 17",
    )
    .await;
    // Unknown hash type.
    expect(
        &mut acme,
        good(vec![pb::HashEntry {
            r#type: 42,
            ..sha(0)
        }]),
        Code::InvalidArgument,
        "hash_set.entries[0].type",
    )
    .await;
    // Empty set.
    expect(
        &mut acme,
        good(vec![]),
        Code::InvalidArgument,
        "hash_set.entries: a hash set needs at least one entry",
    )
    .await;
    // Missing envelope.
    let err = acme
        .hub
        .submit(pb::SubmitRequest { envelope: None })
        .await
        .expect_err("no envelope");
    assert_eq!(err.code(), Code::InvalidArgument);
    // A statement dated far in the future.
    let mut far = statement("acme", &key, vec![sha(0)]);
    far.issued_at_ms += 3_600_000;
    expect(
        &mut acme,
        sign_wire(&far, &key),
        Code::InvalidArgument,
        "issued_at_ms",
    )
    .await;

    // Too many entries: RESOURCE_EXHAUSTED.
    let many = sign_new(
        &id("acme"),
        &key,
        Body::HashSet(sha256_set(5, MAX_HASH_SET_ENTRIES + 1)),
    );
    expect(
        &mut acme,
        many,
        Code::ResourceExhausted,
        "hash_set entries is 100001, over the limit of 100000",
    )
    .await;
    // Payload over the size limit: RESOURCE_EXHAUSTED.
    let mut big = good(vec![sha(0)]);
    big.payload = vec![0u8; MAX_PAYLOAD_BYTES + 1].into();
    expect(
        &mut acme,
        big,
        Code::ResourceExhausted,
        "payload bytes is 16777217, over the limit of 16777216",
    )
    .await;

    assert_eq!(t.store.log_size(), t.base, "nothing was stored");
    assert_eq!(
        PAYLOAD_TYPE,
        "application/vnd.coalition.statement.v1+protobuf"
    );
}

#[tokio::test]
async fn unknown_member_and_roles_are_permission_denied() {
    let t = TestHub::start().await;
    // `outsider` holds a valid certificate from the coalition CA but was never registered.
    let mut outsider = t.client("outsider").await;
    let err = outsider
        .submit(t.hash_set("outsider", 1, 1))
        .await
        .expect_err("unknown member");
    assert!(
        err.to_string()
            .contains("permission denied: member 'outsider' is not registered"),
        "{err}"
    );
    let err = outsider
        .hub
        .sync(pb::SyncRequest::default())
        .await
        .expect_err("sync too");
    assert_eq!(err.code(), Code::PermissionDenied);

    // A member may not call admin RPCs; an admin without the member role may not submit.
    let mut acme = t.client("acme").await;
    let err = acme.member(&id("globex")).await.expect_err("not an admin");
    assert!(
        err.to_string()
            .contains("permission denied: member 'acme' lacks the 'admin' role"),
        "{err}"
    );
    let mut admin = t.client("admin").await;
    let err = admin
        .submit(t.hash_set("admin", 1, 1))
        .await
        .expect_err("admin cannot submit");
    assert!(err.to_string().contains("lacks the 'member' role"), "{err}");
    assert_eq!(t.store.log_size(), t.base);
}

/// TLS rejections surface at connect or at the first call (TLS 1.3 checks the client
/// certificate after the client's handshake completes).
async fn first_call_fails(addr: &str, tls: tonic::transport::ClientTlsConfig) -> String {
    let channel = tonic::transport::Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls");
    match channel.connect().await {
        Err(e) => e.to_string(),
        Ok(ch) => {
            let mut hub = pb::hub_client::HubClient::new(ch);
            let err = hub
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .expect_err("handshake must fail");
            format!("{err:?}")
        }
    }
}

#[tokio::test]
async fn tls_handshake_refuses_missing_or_foreign_certificates() {
    let t = TestHub::start().await;
    let tls = t.tls("acme");
    let ca = tonic::transport::Certificate::from_pem(&tls.ca_pem);
    // No client certificate.
    let no_cert = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .domain_name("localhost");
    let msg = first_call_fails(&t.addr, no_cert).await;
    assert!(
        msg.contains("CertificateRequired") || msg.contains("transport"),
        "{msg}"
    );
    // A certificate from another CA (a second dev PKI) naming a real member.
    let other = tempfile::tempdir().expect("tmp");
    let foreign = coalition_hub::pki::CertDir::new(other.path());
    foreign.init(&[id("acme")]).expect("foreign pki");
    let ftls = foreign.member_tls(&id("acme")).expect("tls");
    let foreign_cfg = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name("localhost")
        .identity(tonic::transport::Identity::from_pem(
            &ftls.cert_pem,
            &ftls.key_pem,
        ));
    let msg = first_call_fails(&t.addr, foreign_cfg).await;
    assert!(
        msg.contains("UnknownCA") || msg.contains("transport"),
        "{msg}"
    );
    assert_eq!(t.store.log_size(), t.base);
}
