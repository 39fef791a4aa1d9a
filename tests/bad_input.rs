//! Bad input over real mutual TLS: each case gets the documented gRPC status with a message
//! naming the problem, and nothing is stored.

use crate::common;

use coalition_hub::client::{Client, sign_new};
use coalition_hub::pb;
use coalition_hub::quickstart::sample_signal;
use coalition_hub::statement::{
    Body, MAX_HASH_SET_ENTRIES, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES, PAYLOAD_TYPE,
};
use common::{TestHub, id, sha256_set, sign_raw, sign_wire, wire_header};
use prost::Message;
use tonic::Code;

/// A hash-set body with these entries.
fn hash_set(entries: Vec<pb::HashEntry>) -> pb::StatementBody {
    pb::StatementBody {
        body: Some(pb::statement_body::Body::HashSet(pb::HashSet {
            expires_at_ms: None,
            description: String::new(),
            entries,
        })),
    }
}

/// `body` signed by `issuer` with `key` under the header an honest author would sign, after
/// `edit` changed that header.
fn signed_with(
    issuer: &str,
    key: &ed25519_dalek::SigningKey,
    body: &pb::StatementBody,
    edit: impl FnOnce(&mut pb::Statement),
) -> pb::Envelope {
    let body_bytes = body.encode_to_vec();
    let mut header = wire_header(issuer, body, &body_bytes, key);
    edit(&mut header);
    sign_raw(header.encode_to_vec(), body_bytes, key)
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
    let good = |entries| sign_wire("acme", &hash_set(entries), &key);
    let sha = |n| entry(pb::HashType::Sha256, 32, None, n);

    // Issuer differs from the authenticated member.
    let globex_key = t.key("globex");
    expect(
        &mut acme,
        sign_wire("globex", &hash_set(vec![sha(0)]), &globex_key),
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
    // Signature over other bytes (the statement changed after signing).
    let mut env = good(vec![sha(0)]);
    let other = good(vec![sha(1)]);
    env.payload = other.payload.clone();
    env.body = other.body.clone();
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
        sign_wire("acme", &hash_set(vec![sha(0)]), &stranger),
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
        "payload: not a valid protobuf message",
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
    // Unknown hash type: in the body (the header leaves it out), or in the header.
    let unknown_type = hash_set(vec![pb::HashEntry {
        r#type: 42,
        ..sha(0)
    }]);
    expect(
        &mut acme,
        signed_with("acme", &key, &unknown_type, |h| {
            h.hash_types.retain(|t| *t != 42)
        }),
        Code::InvalidArgument,
        "hash_set.entries[0].type",
    )
    .await;
    expect(
        &mut acme,
        sign_wire("acme", &unknown_type, &key),
        Code::InvalidArgument,
        "hash_types: unknown hash type 42",
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
    expect(
        &mut acme,
        signed_with("acme", &key, &hash_set(vec![sha(0)]), |h| {
            h.issued_at_ms += 3_600_000
        }),
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
    // Header (payload) or body over its size limit: RESOURCE_EXHAUSTED.
    let mut big = good(vec![sha(0)]);
    big.payload = vec![0u8; MAX_HEADER_BYTES + 1].into();
    expect(
        &mut acme,
        big,
        Code::ResourceExhausted,
        "payload (statement header) bytes is 65537, over the limit of 65536",
    )
    .await;
    let mut big = good(vec![sha(0)]);
    big.body = vec![0u8; MAX_PAYLOAD_BYTES + 1].into();
    expect(
        &mut acme,
        big,
        Code::ResourceExhausted,
        "body bytes is 16777217, over the limit of 16777216",
    )
    .await;

    assert_eq!(t.store.log_size(), t.base, "nothing was stored");
    assert_eq!(
        PAYLOAD_TYPE,
        "application/vnd.coalition.statement.v1+protobuf"
    );
}

/// Encodes a protobuf varint.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A length-delimited field: tag, length, bytes.
fn ld(field: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = varint(field << 3 | 2);
    out.extend(varint(bytes.len() as u64));
    out.extend_from_slice(bytes);
    out
}

fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut v = 0;
    for shift in (0..64).step_by(7) {
        let b = bytes[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
    }
    v
}

/// A message's top-level fields in order: (field number, its raw tag and value bytes).
fn fields(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let tag = read_varint(bytes, &mut at);
        match tag & 7 {
            0 => {
                read_varint(bytes, &mut at);
            }
            2 => at += read_varint(bytes, &mut at) as usize,
            1 => at += 8,
            5 => at += 4,
            other => panic!("wire type {other}"),
        }
        out.push((tag >> 3, bytes[start..at].to_vec()));
    }
    out
}

/// Replaces the raw bytes of field `number`.
fn replace(fields: &mut [(u64, Vec<u8>)], number: u64, raw: &[u8]) {
    let f = fields.iter_mut().find(|f| f.0 == number).expect("field");
    f.1 = raw.to_vec();
}

/// The statements the new format makes possible to get wrong, and the non-canonical bytes a
/// protobuf library still decodes: each refused by Submit with INVALID_ARGUMENT naming the
/// field or the canonical-encoding rule, and nothing stored.
#[tokio::test]
async fn header_body_and_canonical_bytes_table() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let key = t.key("acme");
    let honest = hash_set(vec![entry(pb::HashType::Sha256, 32, None, 1)]);
    let set = match &honest.body {
        Some(pb::statement_body::Body::HashSet(set)) => set.encode_to_vec(),
        _ => unreachable!("a hash set"),
    };
    let signal = Body::RiskSignal(sample_signal()).to_wire().encode_to_vec();
    // Signed header edits (digest and length right).
    let header = |edit: fn(&mut pb::Statement)| signed_with("acme", &key, &honest, edit);
    // Envelope edits after signing.
    let envelope = |edit: fn(&mut pb::Envelope)| {
        let mut env = sign_wire("acme", &honest, &key);
        edit(&mut env);
        env
    };
    // Raw bytes: the header's fields edited, the body as given; the header names the body's
    // real digest and length and is signed, so only the encoding is wrong.
    let raw = |edit: fn(&mut Vec<(u64, Vec<u8>)>), body: Vec<u8>| {
        let mut f = fields(&wire_header("acme", &honest, &body, &key).encode_to_vec());
        edit(&mut f);
        sign_raw(f.into_iter().flat_map(|(_, b)| b).collect(), body, &key)
    };
    let body = ld(10, &set);
    let other_body = hash_set(vec![entry(pb::HashType::Sha256, 32, None, 2)]).encode_to_vec();
    assert_eq!(
        body,
        honest.encode_to_vec(),
        "the raw helpers encode canonically"
    );
    let keep: fn(&mut Vec<(u64, Vec<u8>)>) = |_| {};
    #[rustfmt::skip]
    let cases: Vec<(&str, pb::Envelope, &str)> = vec![
        ("body missing", envelope(|e| e.body = Default::default()), "envelope.body: missing"),
        ("body not the signed digest", { let mut e = envelope(|_| {}); e.body = other_body.clone().into(); e }, "body: its SHA-256 or length is not what the signed header names"),
        ("header kind not the body's", header(|h| h.kind = pb::StatementKind::RiskSignal as i32), "kind: the header says risk_signal but the body is a hash_set"),
        ("header hash types not the body's", header(|h| h.hash_types = vec![pb::HashType::Md5 as i32]), "hash_types: the header does not list exactly the hash types"),
        ("header labels not the body's", header(|h| h.labels.clear()), "labels: the header does not list exactly the labels"),
        ("one key signs twice", envelope(|e| e.signatures.push(e.signatures[0].clone())), "envelope.signatures[1].key_id: key"),
        ("header: unknown field", raw(|f| f.push((15, vec![0x78, 0x01])), body.clone()), "payload: not in canonical encoding"),
        ("header: field given twice", raw(|f| f.insert(1, f[0].clone()), body.clone()), "payload: not in canonical encoding"),
        ("header: non-minimal varint", raw(|f| replace(f, 5, &[0x28, 0x81, 0x00]), body.clone()), "payload: not in canonical encoding"),
        ("header: unpacked repeated enum", raw(|f| replace(f, 6, &[0x30, 0x03]), body.clone()), "payload: not in canonical encoding"),
        ("body: reserved field 14", raw(keep, [body.clone(), ld(14, &[])].concat()), "body: not in canonical encoding"),
        ("body: unknown field in the hash set", raw(keep, ld(10, &[set.clone(), ld(4, b"x")].concat())), "body: not in canonical encoding"),
        ("body: two oneof bodies", raw(keep, [body.clone(), signal.clone()].concat()), "body: not in canonical encoding"),
        ("body: default value encoded", raw(keep, ld(10, &[ld(1, b""), set.clone()].concat())), "body: not in canonical encoding"),
    ];
    for (case, envelope, needle) in cases {
        let err = acme
            .hub
            .submit(pb::SubmitRequest {
                envelope: Some(envelope),
            })
            .await
            .expect_err(case);
        assert_eq!(err.code(), Code::InvalidArgument, "{case}: {err:?}");
        assert!(
            err.message().contains(needle),
            "{case}: {:?} should contain {needle:?}",
            err.message()
        );
    }
    assert_eq!(t.store.log_size(), t.base, "nothing was stored");
    // The honest statement the cases were bent from is accepted.
    acme.submit(sign_wire("acme", &honest, &key))
        .await
        .expect("honest");
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
