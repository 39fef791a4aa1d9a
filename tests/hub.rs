//! Two members over real mutual TLS: submit, idempotent resubmission, verified sync with
//! filters and follow, statement lookup, the member directory, health and reflection.

use crate::common;

use coalition_hub::client::sign_new;
use coalition_hub::membership::Action;
use coalition_hub::pb;
use coalition_hub::quickstart::{sample_hash_set, sample_signal};
use coalition_hub::replica::Location;
use coalition_hub::statement::{Body, HashType, Kind};
use coalition_hub::sync::FilterSpec;
use common::{TestHub, id, replay, sync_all};
use std::time::Duration;

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

    // globex syncs with its own replica: membership replayed from the genesis (never the
    // hub's directory), every signature verified, every entry proven in a signed checkpoint.
    let synced = t
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("globex verifies the whole log");
    let members: Vec<String> = synced
        .replica
        .registry()
        .members()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(
        members.len(),
        4,
        "admin, acme, globex, auditor: {members:?}"
    );
    assert_eq!(synced.replica.size(), t.base + 2);
    assert_eq!(
        synced.replica.checkpoint().map(|(size, _)| size),
        Some(t.base + 2),
        "proven in a checkpoint of the whole log"
    );
    // From 0: the genesis and the admissions verify too (co-signed by admins, hub key).
    let kinds: Vec<Kind> = synced
        .entries
        .iter()
        .map(|e| e.statement().expect("whole").kind())
        .collect();
    assert_eq!(kinds[0], Kind::Genesis);
    assert_eq!(kinds[1], Kind::Membership);
    let mut globex = t.client("globex").await;
    let (all, next) = sync_all(&mut globex, pb::SyncRequest::default()).await;
    assert_eq!(next, t.base + 2);
    let entries = all[t.base as usize..].to_vec();
    assert_eq!(entries.len(), 2);
    let first = synced.at(t.base);
    let first_statement = first.statement().expect("whole");
    assert_eq!(first_statement.issuer, id("acme"));
    assert_eq!(first.id.0.to_vec(), receipt.statement_id);
    match &first_statement.body {
        Body::HashSet(s) => assert_eq!(s.entries, sample_hash_set().entries),
        other => panic!("expected a hash set, got {other:?}"),
    }
    assert_eq!(
        synced.at(t.base + 1).statement().expect("whole").kind(),
        Kind::RiskSignal
    );
    assert_eq!(synced.written(), vec![t.base, t.base + 1]);

    // Envelopes come back verbatim: a flipped payload byte no longer verifies.
    replay(all.clone()).expect("the log as sent verifies");
    let mut tampered = all.clone();
    let env = tampered[t.base as usize]
        .envelope
        .as_mut()
        .expect("envelope");
    let mut bytes = env.payload.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    env.payload = bytes.into();
    let err = replay(tampered).expect_err("a flipped byte");
    assert_eq!(err.location, Location::Entry(t.base), "{err}");

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
    // A copy co-signed with a second key of acme has the same statement id: still the same
    // statement.
    let second_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    t.admin_change(Action::AddKey {
        member: id("acme"),
        key: second_key.verifying_key(),
    })
    .await
    .expect("add a second key");
    let mut cosigned = env.clone();
    coalition_hub::governance::cosign(&mut cosigned, &second_key).expect("cosign");
    assert_eq!(cosigned.signatures.len(), 2);
    let third = acme.submit(cosigned).await.expect("cosigned");
    assert!(third.already_present);
    assert_eq!(third.receipt, first.receipt);
    // The same key signing twice is not a co-signature: refused.
    let mut twice = env.clone();
    twice.signatures.push(env.signatures[0].clone());
    let err = acme.submit(twice).await.expect_err("one key signs once");
    assert!(err.to_string().contains("each key signs once"), "{err}");
    assert_eq!(
        t.store.log_size(),
        t.base + 3,
        "no duplicate entry (one key added)"
    );
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

    // Every entry from from_seq on is sent; the selected ones whole, the others with their
    // body withheld (the signed header and signatures only).
    let seqs = |entries: Vec<pb::SyncEntry>| {
        entries
            .iter()
            .filter(|e| !e.envelope.as_ref().expect("envelope").body.is_empty())
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    };
    let all_seqs = |entries: &[pb::SyncEntry]| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
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
        assert_eq!(
            all_seqs(&entries),
            (t.base..t.base + 3).collect::<Vec<_>>(),
            "every seq accounted for: {request:?}"
        );
        assert_eq!(seqs(entries), want, "{request:?}");
        assert_eq!(next, t.base + 3, "filtered syncs still advance the cursor");
    }
    // Genesis and membership statements always come whole: every reader replays membership.
    let membership = check(vec![pb::StatementKind::Membership as i32], vec![], &[], &[]);
    let (entries, _) = sync_all(&mut globex, membership).await;
    assert_eq!(seqs(entries), (0..t.base).collect::<Vec<_>>());
    // A member's own filtered sync checks each withheld header against its filter and still
    // proves every entry: it receives the selected bodies only.
    let filtered = t
        .sync_proven(
            "globex",
            FilterSpec {
                hash_types: vec!["pdq".into()],
                ..Default::default()
            },
        )
        .await
        .expect("filtered sync verifies");
    assert_eq!(filtered.replica.size(), t.base + 3);
    assert_eq!(
        filtered.written(),
        vec![t.base],
        "only the set with a pdq hash"
    );
    assert!(filtered.at(t.base + 1).statement().is_none(), "withheld");
    assert!(filtered.at(t.base + 2).statement().is_none(), "withheld");
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
    // Bounded: each batch is proven and holds at least one entry.
    for _ in 0..20 {
        if seen.len() == 3 {
            break;
        }
        let batch = tokio::time::timeout(Duration::from_secs(10), session.next())
            .await
            .expect("no stall")
            .expect("stream open");
        // Proven: the checkpoint covers the batch.
        assert!(batch.checkpoint_size > batch.entries.last().expect("entries").seq);
        seen.extend(batch.entries.iter().map(|e| e.seq).filter(|s| *s >= t.base));
        // Once everything logged so far is proven, two more arrive live.
        if !submitted_later && session.syncer.replica().size() == t.base + 1 {
            submitted_later = true;
            acme.submit(t.hash_set("acme", 2, 5)).await.expect("live 1");
            acme.submit(t.hash_set("acme", 3, 5)).await.expect("live 2");
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
    // Bounded: each batch holds at least one entry.
    for _ in 0..t.base {
        if session.syncer.replica().size() == t.base {
            break;
        }
        session.next().await.expect("open");
    }
    assert_eq!(
        session.syncer.replica().size(),
        t.base,
        "the log so far, proven"
    );
    // An admin suspends globex with a signed membership statement.
    t.admin_change(Action::Suspend(id("globex")))
        .await
        .expect("suspend");
    // The stream (or the checkpoint that would prove the suspension) is refused; bounded in
    // case the suspension itself arrives as a batch first.
    let mut cut = None;
    for _ in 0..3 {
        let next = tokio::time::timeout(Duration::from_secs(10), session.syncer.next())
            .await
            .expect("cut off within the re-check interval");
        match next {
            Ok(Some(_)) => session.syncer.commit(&[], 0).expect("commit"),
            Ok(None) => panic!("a following stream does not end by itself"),
            Err(e) => {
                cut = Some(e);
                break;
            }
        }
    }
    let err = cut.expect("the stream ends with an error");
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
