//! Two members over real mutual TLS: submit, idempotent resubmission, verified sync with
//! filters and follow, statement lookup, the member directory, health and reflection.

mod common;

use coalition_hub::client::sign_new;
use coalition_hub::membership::{Action, Keyring};
use coalition_hub::pb;
use coalition_hub::quickstart::{sample_hash_set, sample_signal};
use coalition_hub::statement::{Body, HashType, Kind};
use coalition_hub::sync::{Event, verify_entry};
use common::{TestHub, id, sync_all};

#[tokio::test]
async fn two_members_submit_and_sync_verified() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let set = sign_new(
        &id("acme"),
        &t.key("acme"),
        Body::HashSet(sample_hash_set()),
    );
    let r1 = acme.submit(set).await.expect("submit set");
    assert!(!r1.already_present);
    let receipt = r1.receipt.expect("receipt");
    assert_eq!(receipt.seq, t.base);
    assert_eq!(receipt.statement_id.len(), 32);
    assert!(receipt.received_at_ms > 0);
    let signal = sign_new(
        &id("acme"),
        &t.key("acme"),
        Body::RiskSignal(sample_signal()),
    );
    let r2 = acme.submit(signal).await.expect("submit signal");
    assert_eq!(r2.receipt.expect("receipt").seq, t.base + 1);

    // globex syncs and verifies each signature itself, with the directory's keys.
    let mut globex = t.client("globex").await;
    let keyring: Keyring = globex.keyring().await.expect("keyring");
    assert_eq!(keyring.len(), 4, "admin, acme, globex, auditor");
    // From 0: the genesis and the admissions verify too (co-signed by admins, hub key).
    let (all, next) = sync_all(&mut globex, pb::SyncRequest::default()).await;
    assert_eq!(next, t.base + 2);
    let kinds: Vec<Kind> = all
        .iter()
        .map(|e| {
            verify_entry(e.clone(), &keyring)
                .expect("verifies")
                .statement
                .kind()
        })
        .collect();
    assert_eq!(kinds[0], Kind::Genesis);
    assert_eq!(kinds[1], Kind::Membership);
    let entries = all[t.base as usize..].to_vec();
    assert_eq!(entries.len(), 2);
    let first = verify_entry(entries[0].clone(), &keyring).expect("verifies");
    assert_eq!(first.statement.issuer, id("acme"));
    assert_eq!(first.id.0.to_vec(), receipt.statement_id);
    match &first.statement.body {
        Body::HashSet(s) => assert_eq!(s.entries, sample_hash_set().entries),
        other => panic!("expected a hash set, got {other:?}"),
    }
    let second = verify_entry(entries[1].clone(), &keyring).expect("verifies");
    assert_eq!(second.statement.kind(), Kind::RiskSignal);

    // Envelopes come back verbatim: a flipped payload byte no longer verifies.
    let mut tampered = entries[0].clone();
    let env = tampered.envelope.as_mut().expect("envelope");
    let mut bytes = env.payload.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    env.payload = bytes.into();
    assert!(verify_entry(tampered, &keyring).is_err());

    // Lookup by id, and NOT_FOUND for an unknown id.
    let got = globex
        .hub
        .get_statement(pb::GetStatementRequest {
            statement_id: receipt.statement_id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, entries[0]);
    let missing = globex
        .hub
        .get_statement(pb::GetStatementRequest {
            statement_id: vec![0; 32],
        })
        .await
        .expect_err("unknown id");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let me = globex
        .hub
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("whoami");
    assert_eq!(me.into_inner().member_id, "globex");
}

#[tokio::test]
async fn resubmission_is_idempotent() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let env = t.hash_set("acme", 1, 10);
    let first = acme.submit(env.clone()).await.expect("first");
    let other = acme.submit(t.hash_set("acme", 2, 10)).await.expect("other");
    let again = acme.submit(env.clone()).await.expect("again");
    assert!(!first.already_present);
    assert!(again.already_present);
    assert_eq!(first.receipt, again.receipt, "same receipt");
    assert_eq!(other.receipt.expect("r").seq, t.base + 1);
    // A co-signed copy has the same statement id: still the same statement.
    let mut cosigned = env.clone();
    cosigned.signatures.push(env.signatures[0].clone());
    let third = acme.submit(cosigned).await.expect("cosigned");
    assert!(third.already_present);
    assert_eq!(third.receipt, first.receipt);
    assert_eq!(t.store.log_size(), t.base + 2, "no duplicate entry");
}

#[tokio::test]
async fn sync_filters_select_statements() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let mut globex = t.client("globex").await;
    acme.submit(sign_new(
        &id("acme"),
        &t.key("acme"),
        Body::HashSet(sample_hash_set()),
    ))
    .await
    .expect("0");
    acme.submit(sign_new(
        &id("acme"),
        &t.key("acme"),
        Body::RiskSignal(sample_signal()),
    ))
    .await
    .expect("1");
    globex.submit(t.hash_set("globex", 9, 3)).await.expect("2");

    let seqs = |entries: Vec<pb::SyncEntry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    let check = |kinds: Vec<i32>, hash_types: Vec<i32>, labels: &[&str], issuers: &[&str]| {
        pb::SyncRequest {
            kinds,
            hash_types,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            issuers: issuers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    };
    let hs = pb::StatementKind::HashSet as i32;
    let rs = pb::StatementKind::RiskSignal as i32;
    let pdq = HashType::Pdq.to_wire() as i32;
    let sha = HashType::Sha256.to_wire() as i32;
    let cases: Vec<(pb::SyncRequest, Vec<u64>)> = vec![
        (check(vec![], vec![], &[], &[]), vec![0, 1, 2]),
        (check(vec![hs], vec![], &[], &[]), vec![0, 2]),
        (check(vec![rs], vec![], &[], &[]), vec![1]),
        (check(vec![], vec![pdq], &[], &[]), vec![0]),
        (check(vec![], vec![sha], &[], &[]), vec![0, 2]),
        (check(vec![], vec![], &["B2"], &[]), vec![0]),
        (check(vec![], vec![], &["test"], &[]), vec![2]),
        (check(vec![], vec![], &[], &["globex"]), vec![2]),
        (check(vec![hs], vec![], &[], &["acme"]), vec![0]),
        (check(vec![rs], vec![], &[], &["globex"]), vec![]),
    ];
    for (mut request, want) in cases {
        // The entries before `base` are the genesis and the admissions.
        request.from_seq = t.base;
        let want: Vec<u64> = want.iter().map(|s| s + t.base).collect();
        let (entries, next) = sync_all(&mut globex, request.clone()).await;
        assert_eq!(seqs(entries), want, "{request:?}");
        assert_eq!(next, t.base + 3, "filtered syncs still advance the cursor");
    }
    // Membership statements are a kind of their own.
    let membership = check(vec![pb::StatementKind::Membership as i32], vec![], &[], &[]);
    let (entries, _) = sync_all(&mut globex, membership).await;
    assert_eq!(seqs(entries), (1..t.base).collect::<Vec<_>>());
    // Resuming from a cursor skips what was seen.
    let (entries, _) = sync_all(
        &mut globex,
        pb::SyncRequest {
            from_seq: t.base + 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(entries), vec![t.base + 2]);
    // A bad filter value is INVALID_ARGUMENT naming it.
    let err = globex
        .hub
        .sync(check(vec![], vec![], &["Not A Label"], &[]))
        .await
        .expect_err("bad label");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("labels[0]"), "{}", err.message());
}

#[tokio::test]
async fn follow_streams_new_statements_live() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    acme.submit(t.hash_set("acme", 1, 5)).await.expect("before");
    let mut session = t.follow("globex").await;
    let mut seen = Vec::new();
    let mut submitted_later = false;
    while seen.len() < 3 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), session.next())
            .await
            .expect("no stall")
            .expect("event")
            .expect("stream open");
        match event {
            Event::Entry(e) => seen.push(e.seq),
            Event::Progress { next_seq, .. } => {
                assert_eq!(next_seq, t.base + seen.len() as u64);
                if !submitted_later {
                    submitted_later = true;
                    acme.submit(t.hash_set("acme", 2, 5)).await.expect("live 1");
                    acme.submit(t.hash_set("acme", 3, 5)).await.expect("live 2");
                }
            }
        }
    }
    assert_eq!(seen, vec![t.base, t.base + 1, t.base + 2]);
}

#[tokio::test]
async fn health_and_reflection_answer_stock_tools() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let t = TestHub::start().await;
    let tls = t.tls("globex");
    let tls_config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem))
        .domain_name("localhost")
        .identity(tonic::transport::Identity::from_pem(
            &tls.cert_pem,
            &tls.key_pem,
        ));
    let channel = tonic::transport::Channel::from_shared(format!("https://{}", t.addr))
        .expect("uri")
        .tls_config(tls_config)
        .expect("tls")
        .connect()
        .await
        .expect("connect");
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "coalition.v1.Hub".into(),
        })
        .await
        .expect("health")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = stream.message().await.expect("msg").expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "coalition.v1.Hub",
        "coalition.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn a_member_suspended_while_following_is_cut_off() {
    let t = TestHub::start().await;
    let mut session = t.follow("globex").await;
    let first = session.next().await.expect("progress").expect("open");
    assert!(matches!(first, Event::Progress { next_seq, .. } if next_seq == t.base));
    // An admin suspends globex with a signed membership statement.
    t.admin_change(Action::Suspend(id("globex")))
        .await
        .expect("suspend");
    let cut = tokio::time::timeout(std::time::Duration::from_secs(10), session.next())
        .await
        .expect("cut off within the re-check interval");
    let err = cut.expect_err("the stream ends with an error");
    assert!(
        err.to_string().contains("member 'globex' is suspended"),
        "{err}"
    );
    // And every new call is refused.
    let mut again = t.client("globex").await;
    let err = again
        .hub
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("suspended");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}
