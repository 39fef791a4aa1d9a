//! Evolving the protocol: a reader at version 1 meets statements of a later version. Once the
//! log announced that version (an admin-quorum `set_protocol_version`), it still checks their
//! position, receipt time, statement id, that an active key of an active member signed them,
//! and the Merkle tree — and keeps reading the log after them; it never misreads them. Before
//! the announcement, or signed by anyone else, they are refused. The hub itself refuses what it
//! cannot read.

use crate::common;

use coalition_hub::governance;
use coalition_hub::membership::{Action, KeyId, MemberId, Role};
use coalition_hub::pb;
use coalition_hub::replica::{Content, Entry, Fault, Notice, Replica, SeenMap};
use coalition_hub::statement::{PAYLOAD_TYPE, StatementId, pae};
use coalition_hub::store::now_ms;
use common::TestHub;
use ed25519_dalek::{Signer, SigningKey};

const V2: &str = "application/vnd.coalition.statement.v2+protobuf";

fn id(s: &str) -> MemberId {
    MemberId::parse(s).expect("member id")
}

/// A statement of protocol version 2: bytes this code cannot interpret, signed by `key`.
fn v2_statement(key: &SigningKey) -> pb::Envelope {
    let payload = b"\x0a\x04acme\x52\x07future!".to_vec();
    pb::Envelope {
        payload_type: V2.into(),
        payload: payload.clone().into(),
        signatures: vec![pb::Signature {
            key_id: KeyId::of(&key.verifying_key()).to_string(),
            sig: key.sign(&pae(V2, &payload)).to_bytes().to_vec(),
        }],
        body: Default::default(),
    }
}

struct Log {
    admin: SigningKey,
    acme: SigningKey,
    envelopes: Vec<pb::Envelope>,
}

fn founded() -> Log {
    let admin = SigningKey::from_bytes(&[1; 32]);
    let hub = SigningKey::from_bytes(&[2; 32]);
    let acme = SigningKey::from_bytes(&[3; 32]);
    let genesis = governance::genesis(
        "version.coalition.local",
        &hub,
        vec![governance::admission(
            &id("admin"),
            "Admin",
            &[Role::Admin],
            &[admin.verifying_key()],
        )],
        1,
        &admin,
    )
    .expect("genesis");
    let admit = governance::change(
        &id("admin"),
        &admin,
        Action::Admit(governance::admission(
            &id("acme"),
            "Acme",
            &[Role::Member],
            &[acme.verifying_key()],
        )),
        "admit",
    );
    Log {
        admin,
        acme,
        envelopes: vec![genesis, admit],
    }
}

fn entries(envelopes: &[pb::Envelope]) -> Vec<Entry> {
    let base = now_ms();
    envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| Entry {
            seq: i as u64,
            received_at_ms: base + i as i64,
            statement_id: StatementId::of(&e.payload_type, &e.payload).0.to_vec(),
            envelope: Some(e.clone()),
            erased_by: None,
            relay: None,
        })
        .collect()
}

#[test]
fn an_announced_newer_statement_is_verified_kept_out_and_the_log_goes_on() {
    let mut log = founded();
    let announce = governance::change(
        &id("admin"),
        &log.admin,
        Action::SetProtocolVersion(2),
        "version 2",
    );
    log.envelopes.push(announce);
    log.envelopes.push(v2_statement(&log.acme));
    // And the log goes on in version 1 after it.
    log.envelopes.push(coalition_hub::client::sign_new(
        &id("acme"),
        &log.acme,
        coalition_hub::statement::Body::HashSet(common::sha256_set(1, 2)),
    ));
    let mut replica = Replica::new();
    let accepted = replica
        .append(entries(&log.envelopes), &mut SeenMap::default())
        .expect("the whole log replays");
    assert_eq!(accepted.len(), 5);
    assert!(
        accepted[2]
            .notices
            .contains(&Notice::ProtocolVersion { version: 2 })
    );
    assert_eq!(accepted[3].content, Content::Opaque { version: 2 });
    assert!(accepted[3].header.is_none(), "nothing of it is interpreted");
    assert!(
        accepted[3]
            .notices
            .contains(&Notice::NeedsUpgrade { version: 2 })
    );
    assert!(accepted[4].statement().is_some());
    assert_eq!(replica.size(), 5);
}

#[test]
fn newer_statements_are_refused_where_the_rules_say() {
    let announce = |log: &Log| {
        governance::change(
            &id("admin"),
            &log.admin,
            Action::SetProtocolVersion(2),
            "v2",
        )
    };
    let stranger = SigningKey::from_bytes(&[9; 32]);
    type Case<'a> = (&'static str, Box<dyn Fn(&mut Log) + 'a>, fn(&Fault) -> bool);
    let cases: Vec<Case> = vec![
        (
            "not announced",
            Box::new(|log: &mut Log| {
                let v2 = v2_statement(&log.acme);
                log.envelopes.push(v2);
            }),
            |f| {
                matches!(
                    f,
                    Fault::VersionNotAnnounced {
                        version: 2,
                        current: 1
                    }
                )
            },
        ),
        (
            "signed by a key nobody holds",
            Box::new(move |log: &mut Log| {
                let a = announce(log);
                log.envelopes.push(a);
                log.envelopes.push(v2_statement(&stranger));
            }),
            |f| matches!(f, Fault::NotEntitled(_)),
        ),
        (
            "a bad signature",
            Box::new(|log: &mut Log| {
                let a = announce(log);
                log.envelopes.push(a);
                let mut v2 = v2_statement(&log.acme);
                v2.signatures[0].sig[0] ^= 1;
                log.envelopes.push(v2);
            }),
            |f| matches!(f, Fault::Signature(_)),
        ),
        (
            "a payload type that names no version",
            Box::new(|log: &mut Log| {
                let a = announce(log);
                log.envelopes.push(a);
                let mut v2 = v2_statement(&log.acme);
                v2.payload_type = "application/vnd.coalition.statement.v02+protobuf".into();
                log.envelopes.push(v2);
            }),
            |f| matches!(f, Fault::Invalid(_)),
        ),
        (
            "a second announcement of the same version",
            Box::new(|log: &mut Log| {
                let a = announce(log);
                log.envelopes.push(a);
                let again = governance::change(
                    &id("admin"),
                    &log.admin,
                    Action::SetProtocolVersion(2),
                    "again",
                );
                log.envelopes.push(again);
            }),
            |f| matches!(f, Fault::Refused(_)),
        ),
    ];
    for (name, build, expected) in cases {
        let mut log = founded();
        build(&mut log);
        let last = log.envelopes.len() as u64 - 1;
        let err = Replica::new()
            .append(entries(&log.envelopes), &mut SeenMap::default())
            .expect_err(name);
        assert_eq!(
            err.location,
            coalition_hub::replica::Location::Entry(last),
            "{name}: {err}"
        );
        assert!(expected(&err.fault), "{name}: {err}");
    }
}

#[tokio::test]
async fn the_hub_refuses_what_it_cannot_read() {
    let hub = TestHub::start().await;
    // A newer statement.
    let err = hub
        .client("acme")
        .await
        .submit(v2_statement(&hub.key("acme")))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("newer than this hub"), "{err}");
    // Announcing a version the hub cannot read.
    let err = hub
        .admin_change(Action::SetProtocolVersion(2))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("upgrade it before"), "{err}");
    // The version-1 payload type under another spelling is not version 1.
    let mut odd = hub.hash_set("acme", 1, 1);
    odd.payload_type = PAYLOAD_TYPE.replace("v1", "v01");
    let err = hub
        .client("acme")
        .await
        .submit(odd)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("payload_type"), "{err}");
}
