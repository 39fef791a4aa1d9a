//! The published signing test vector (docs/test-vectors/statement.json) must match the code
//! byte for byte: header (payload) and body encoding, body digest, PAE, signature, key id and
//! statement id. Regenerate with
//! `UPDATE_TEST_VECTORS=1 cargo test --test test_vector` only on a deliberate protocol change.

use coalition_hub::membership::{KeyId, MemberId};
use coalition_hub::statement::{
    Body, Category, HashEntry, HashSet, HashType, Label, PAYLOAD_TYPE, ParsedEnvelope, Statement,
    StatementId, pae, sign_statement,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/docs/test-vectors/statement.json"
);

fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x11; 32])
}

fn statement() -> Statement {
    let key = key();
    Statement {
        issuer: MemberId::parse("acme").expect("id"),
        key_id: KeyId::of(&key.verifying_key()),
        issued_at_ms: 1_767_225_600_000,
        nonce: std::array::from_fn(|i| i as u8),
        body: Body::HashSet(HashSet {
            description: "test vector".into(),
            entries: vec![
                HashEntry {
                    hash_type: HashType::Md5,
                    value: hex::decode("d41d8cd98f00b204e9800998ecf8427e").expect("hex"),
                    quality: None,
                    labels: vec![Label::Category(Category::A1)],
                },
                HashEntry {
                    hash_type: HashType::Pdq,
                    value: vec![0xa5; 32],
                    quality: Some(90),
                    labels: vec![Label::Category(Category::B2), Label::Tag("example".into())],
                },
            ],
        }),
    }
}

fn vector() -> Value {
    let key = key();
    let envelope = sign_statement(&statement(), &key);
    let pae_bytes = pae(&envelope.payload_type, &envelope.payload);
    json!({
        "description": "A coalition.v1 Statement (the signed header, payload_hex) with its StatementBody (body_hex) by member 'acme'. Verify: SHA-256(body) = body_sha256_hex and len(body) = body_bytes, both named in the header; ed25519 over pae_hex with public_key_hex; pae = \"DSSEv1\" SP len(payload_type) SP payload_type SP len(payload) SP payload; statement_id = SHA-256(pae); key_id = hex(SHA-256(public key)[0..8]). Both messages are in canonical protobuf encoding: decoding and re-encoding gives the same bytes.",
        "private_key_seed_hex": hex::encode([0x11u8; 32]),
        "public_key_hex": hex::encode(key.verifying_key().as_bytes()),
        "key_id": KeyId::of(&key.verifying_key()).to_string(),
        "payload_type": PAYLOAD_TYPE,
        "payload_hex": hex::encode(&envelope.payload),
        "body_hex": hex::encode(&envelope.body),
        "body_sha256_hex": hex::encode(Sha256::digest(&envelope.body)),
        "body_bytes": envelope.body.len(),
        "pae_hex": hex::encode(&pae_bytes),
        "signature_hex": hex::encode(&envelope.signatures[0].sig),
        "statement_id_hex": StatementId::of(PAYLOAD_TYPE, &envelope.payload).to_string(),
        "statement": {
            "issuer": "acme",
            "key_id": KeyId::of(&key.verifying_key()).to_string(),
            "issued_at_ms": 1_767_225_600_000i64,
            "nonce_hex": "000102030405060708090a0b0c0d0e0f",
            "kind": "STATEMENT_KIND_HASH_SET",
            "hash_types": ["HASH_TYPE_MD5", "HASH_TYPE_PDQ"],
            "labels": ["A1", "B2", "example"],
            "body_sha256_hex": hex::encode(Sha256::digest(&envelope.body)),
            "body_bytes": envelope.body.len()
        },
        "body": {
            "hash_set": {
                "description": "test vector",
                "entries": [
                    {"type": "HASH_TYPE_MD5", "value_hex": "d41d8cd98f00b204e9800998ecf8427e", "labels": ["A1"]},
                    {"type": "HASH_TYPE_PDQ", "value_hex": hex::encode([0xa5u8; 32]), "quality": 90, "labels": ["B2", "example"]}
                ]
            }
        }
    })
}

#[test]
fn published_vector_matches_code() {
    let want = vector();
    if std::env::var_os("UPDATE_TEST_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&want).expect("json") + "\n";
        std::fs::write(PATH, text).expect("write vector");
    }
    let text = std::fs::read_to_string(PATH).expect("docs/test-vectors/statement.json exists");
    let got: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(got, want, "the test vector drifted from the code");

    // And an independent check from the file's own fields: the published bytes verify.
    let field = |k: &str| hex::decode(got[k].as_str().expect(k)).expect(k);
    let public = ed25519_dalek::VerifyingKey::from_bytes(
        &field("public_key_hex").try_into().expect("32 bytes"),
    )
    .expect("key");
    let sig = ed25519_dalek::Signature::from_slice(&field("signature_hex")).expect("sig");
    public
        .verify_strict(&field("pae_hex"), &sig)
        .expect("signature verifies over pae");
    assert_eq!(pae(PAYLOAD_TYPE, &field("payload_hex")), field("pae_hex"));
    let envelope = coalition_hub::pb::Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        payload: field("payload_hex").into(),
        signatures: vec![coalition_hub::pb::Signature {
            key_id: got["key_id"].as_str().expect("key_id").into(),
            sig: field("signature_hex"),
        }],
        body: field("body_hex").into(),
    };
    assert_eq!(
        Sha256::digest(field("body_hex")).to_vec(),
        field("body_sha256_hex")
    );
    let parsed = ParsedEnvelope::parse(envelope).expect("parses");
    assert_eq!(
        parsed.id.to_string(),
        got["statement_id_hex"].as_str().expect("id")
    );
    let verified = parsed.verify_with(&[public]).expect("verifies");
    assert_eq!(verified.statement, statement());
    // Both messages re-encode byte for byte (the canonical-encoding rule).
    use prost::Message;
    let header =
        coalition_hub::pb::Statement::decode(field("payload_hex").as_slice()).expect("header");
    assert_eq!(header.encode_to_vec(), field("payload_hex"));
    let body =
        coalition_hub::pb::StatementBody::decode(field("body_hex").as_slice()).expect("body");
    assert_eq!(body.encode_to_vec(), field("body_hex"));
}
