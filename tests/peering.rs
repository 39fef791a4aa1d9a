//! Peering (docs/PROTOCOL.md §3.10) between real hubs on 127.0.0.1 over mutual TLS: a hub
//! relays a peer's own statements with their provenance, its members verify them back to the
//! peer's genesis, it resumes after a restart without a duplicate or a gap, only the `peer`
//! role reaches `Federation` (and nothing else), and a peer serving a forged log is refused
//! and reported without anything of it written.

use crate::common::hostile::{Bent, HostileHub, export};
use crate::common::{TestHub, id, sha256_set};
use coalition_hub::client::{sign_new, sign_new_for};
use coalition_hub::federation::Peer;
use coalition_hub::governance::{self, admission};
use coalition_hub::lifecycle::{EntryState, HashKey, Opinion, Target, Verdict};
use coalition_hub::membership::{Action, KeyId, Revocation, Role};
use coalition_hub::pb;
use coalition_hub::replica::Content;
use coalition_hub::settings::{Federation, Section};
use coalition_hub::statement::{Body, HashType, Kind, Recipients, StatementId};
use coalition_hub::sync::FilterSpec;
use std::collections::HashSet;
use std::time::{Duration, Instant};

async fn genesis_of(t: &TestHub) -> StatementId {
    StatementId::from_hex(&t.genesis_hex().await).expect("genesis id")
}

/// At `t`, `member` (it has a certificate from `t`'s CA) is admitted with the `peer` role.
async fn admit_peer(t: &TestHub, member: &str) {
    t.admin_change(Action::Admit(admission(
        &id(member),
        member,
        &[Role::Peer],
        &[t.key(member).verifying_key()],
    )))
    .await
    .expect("admit the peer");
}

/// At `t`, the admin quorum trusts `origins` (genesis, hub name).
async fn trust(t: &TestHub, origins: &[(StatementId, &str)]) {
    federate(t, origins, None).await;
}

/// At `t`, the admin quorum trusts `origins` (genesis, hub name), and names `peer` (origin,
/// member) as the member through which that origin pulls `t`'s log.
async fn federate(t: &TestHub, origins: &[(StatementId, &str)], peer: Option<(StatementId, &str)>) {
    let mut federation = Federation::trusting(origins.iter().copied());
    if let Some((origin, member)) = peer
        && let Some(o) = federation.origins.get_mut(&origin)
    {
        o.peer = Some(id(member));
    }
    let envelope = governance::settings(
        &id("admin"),
        &t.key("admin"),
        Section::Federation(federation),
        "federate",
    );
    t.client("admin")
        .await
        .submit(envelope)
        .await
        .expect("settings");
}

/// An erasure of `target` by `t`'s admin (an admin-quorum statement: quorum 1 here).
fn erasure(t: &TestHub, target: StatementId) -> pb::Envelope {
    governance::retraction(
        &id("admin"),
        &t.key("admin"),
        coalition_hub::lifecycle::Retraction {
            target,
            entries: Vec::new(),
            reason: "court order".into(),
            admin_quorum: true,
            erase: true,
        },
    )
}

async fn status(t: &TestHub) -> pb::FederationStatus {
    t.client("auditor")
        .await
        .admin
        .get_federation_status(pb::GetFederationStatusRequest {})
        .await
        .expect("federation status")
        .into_inner()
}

/// Waits until `a` has rebuilt `entries` of the origin `genesis` (bounded).
async fn wait_relayed(a: &TestHub, genesis: StatementId, entries: u64) -> pb::FederationStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(a).await;
        let done = s
            .origins
            .iter()
            .any(|o| o.genesis_id == genesis.0.to_vec() && o.entries >= entries);
        if done {
            return s;
        }
        assert!(Instant::now() < deadline, "not relayed within 30 s: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// X with statements of its own, and A relaying X through X's `outsider`, admitted there as
/// A's peer identity.
async fn peered() -> (TestHub, TestHub, StatementId) {
    let x = TestHub::start_named("x.example", |_, o| o).await;
    admit_peer(&x, "outsider").await;
    let mut acme = x.client("acme").await;
    for seed in 0..3 {
        acme.submit(x.hash_set("acme", seed, 4))
            .await
            .expect("submit");
    }
    let only_globex = Recipients::from_members(vec![id("globex")], &id("acme")).expect("r");
    let restricted = sign_new_for(
        &id("acme"),
        &x.key("acme"),
        Body::HashSet(sha256_set(50, 2)),
        &only_globex,
    );
    acme.submit(restricted).await.expect("restricted");
    let (a, xg) = relaying(&x).await;
    (x, a, xg)
}

/// A, trusting X and relaying it through X's `outsider` (admitted there as A's peer identity).
async fn relaying(x: &TestHub) -> (TestHub, StatementId) {
    let xg = genesis_of(x).await;
    let peer = Peer {
        addr: x.addr.clone(),
        tls: x.tls("outsider"),
        genesis: xg,
    };
    let a = TestHub::start_named("a.example", move |_, mut o| {
        o.peers = vec![peer];
        o
    })
    .await;
    trust(&a, &[(xg, "x.example")]).await;
    (a, xg)
}

#[tokio::test]
async fn a_peers_statements_are_relayed_with_provenance_and_verified_by_members() {
    let (x, a, xg) = peered().await;
    let x_size = x.store.log_size();
    wait_relayed(&a, xg, x_size).await;
    // The puller publishes its status after the writer has logged its batch: wait for it too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = status(&a).await;
        if s.peers.first().is_some_and(|p| p.relayed_to >= x_size) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "status not caught up within 30 s: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let peer = &s.peers[0];
    assert_eq!(peer.relayed_to, x_size);
    assert_eq!(peer.refusals, 0);
    assert!(peer.refused.is_empty(), "{}", peer.refused);

    // A member of A syncs from A and verifies every relayed statement back to X's genesis.
    let synced = a
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("sync");
    let relayed: Vec<_> = synced
        .entries
        .iter()
        .filter(|e| e.origin.is_some())
        .collect();
    assert_eq!(
        relayed.len() as u64,
        x_size,
        "every entry X logged itself, once"
    );
    let mut x_ids: Vec<Vec<u8>> = export(&x)
        .await
        .entries
        .into_iter()
        .map(|e| e.statement_id)
        .collect();
    let mut a_ids: Vec<Vec<u8>> = relayed.iter().map(|e| e.id.0.to_vec()).collect();
    x_ids.sort();
    a_ids.sort();
    assert_eq!(a_ids, x_ids);
    for e in &relayed {
        let origin = e.origin.as_ref().expect("provenance");
        assert_eq!(origin.hub_name, "x.example");
        assert_eq!(origin.origin, xg);
    }
    // X's restricted statement came without its body; X's membership stayed X's.
    assert_eq!(
        relayed
            .iter()
            .filter(|e| e.content == Content::Withheld)
            .count(),
        1
    );
    assert!(
        a.store.member(&id("outsider")).is_none(),
        "X's peer admission is X's membership, not A's"
    );

    // More at X: relayed from where A stood, proven by X's newer checkpoint.
    x.client("acme")
        .await
        .submit(x.hash_set("acme", 9, 2))
        .await
        .expect("submit");
    let x_size = x.store.log_size();
    wait_relayed(&a, xg, x_size).await;
    let synced = a
        .sync_proven("acme", FilterSpec::default())
        .await
        .expect("sync");
    let ids: Vec<_> = synced.entries.iter().map(|e| e.id).collect();
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no statement twice");
    assert_eq!(
        synced.entries.iter().filter(|e| e.origin.is_some()).count() as u64,
        x_size
    );
}

#[tokio::test]
async fn foreign_identities_are_qualified_and_never_collide_with_local_ones() {
    let (x, a, xg) = peered().await;
    wait_relayed(&a, xg, x.store.log_size()).await;
    let value = crate::common::sha256_value(0, 0);
    let query = pb::MatchQuery {
        r#type: pb::HashType::Sha256 as i32,
        value: value.clone(),
        quality: None,
    };
    let ask = |client: &mut coalition_hub::client::Client| {
        let mut hub = client.hub.clone();
        let query = query.clone();
        async move {
            hub.r#match(pb::MatchRequest {
                queries: vec![query],
                pdq_threshold: None,
                min_quality: None,
                states: Vec::new(),
                ..Default::default()
            })
            .await
            .expect("match")
            .into_inner()
        }
    };
    // The indexer catches up with the relayed entries.
    let mut globex = a.client("globex").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        let r = ask(&mut globex).await;
        if let Some(m) = r.results.first().and_then(|r| r.matches.first()) {
            break m.clone();
        }
        assert!(Instant::now() < deadline, "X's hash never matched at A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(found.issuer, "acme@x.example");
    assert_eq!(found.state, pb::EntryState::Active as i32);
    // A's own acme is not X's acme: its retraction of X's statement has no effect.
    let target = StatementId::from_slice(&found.statement_id).expect("id");
    let retraction = coalition_hub::client::sign_new(
        &id("acme"),
        &a.key("acme"),
        Body::Retraction(coalition_hub::lifecycle::Retraction {
            target,
            entries: Vec::new(),
            reason: "not mine to retract".into(),
            admin_quorum: false,
            erase: false,
        }),
    );
    let mut acme = a.client("acme").await;
    // Logged or refused, it must not retract another hub's member's statement.
    let _ = acme.submit(retraction).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = ask(&mut globex).await;
    let m = after.results[0].matches.first().expect("still matches");
    assert_eq!(m.state, pb::EntryState::Active as i32, "{m:?}");
    // Sync rows name the origin's member.
    let synced = a
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("sync");
    let row = synced
        .rows
        .iter()
        .find(|r| r.id == target)
        .expect("the relayed statement's row");
    assert_eq!(row.statement.issuer.as_str(), "acme@x.example");
}

#[tokio::test]
async fn relaying_resumes_after_a_restart_without_duplicate_or_gap() {
    let (x, a, xg) = peered().await;
    wait_relayed(&a, xg, x.store.log_size()).await;
    let before = a.store.log_size();
    let stopped = a.stop().await;
    let mut acme = x.client("acme").await;
    for seed in 20..23 {
        acme.submit(x.hash_set("acme", seed, 3))
            .await
            .expect("submit");
    }
    let a = TestHub::resume(stopped).await;
    let x_size = x.store.log_size();
    wait_relayed(&a, xg, x_size).await;
    assert_eq!(
        a.store.log_size(),
        before + 3,
        "exactly the three new statements"
    );
    let synced = a
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("sync");
    let ids: Vec<_> = synced.entries.iter().map(|e| e.id).collect();
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no statement twice");
    let seqs: Vec<u64> = synced
        .entries
        .iter()
        .filter_map(|e| e.origin.as_ref().map(|o| o.seq))
        .collect();
    assert_eq!(
        seqs,
        (0..x_size).collect::<Vec<_>>(),
        "X's log, in order, no gap"
    );
}

#[tokio::test]
async fn only_peers_call_federation_and_peers_call_nothing_else() {
    let (x, _a, _) = peered().await;
    let mut member = x.client("acme").await;
    let denied = member
        .federation
        .get_entries(pb::GetEntriesRequest { start: 0, end: 1 })
        .await
        .expect_err("a member calling Federation");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("peer"), "{}", denied.message());
    let mut peer = x.client("outsider").await;
    let denied = peer
        .hub
        .sync(pb::SyncRequest::default())
        .await
        .expect_err("a peer calling Sync");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let denied = peer
        .audit
        .get_entries(pb::GetEntriesRequest { start: 0, end: 1 })
        .await
        .expect_err("a peer calling Audit");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    // The peer reads entries through Federation, restricted bodies withheld.
    let mut stream = peer
        .federation
        .get_entries(pb::GetEntriesRequest {
            start: 0,
            end: x.store.log_size(),
        })
        .await
        .expect("a peer reading entries")
        .into_inner();
    let mut withheld = 0;
    while let Some(e) = stream.message().await.expect("entry") {
        let envelope = e.envelope.expect("envelope");
        if envelope.body.is_empty() {
            withheld += 1;
        }
    }
    assert_eq!(withheld, 1, "the restricted body stays at its origin");
}

#[tokio::test]
async fn a_peer_serving_a_forged_statement_is_refused_and_reported() {
    let x = TestHub::start_named("x.example", |_, o| o).await;
    admit_peer(&x, "outsider").await;
    x.client("acme")
        .await
        .submit(x.hash_set("acme", 1, 4))
        .await
        .expect("submit");
    let honest = export(&x).await;
    let mut forged = honest.entries.clone();
    let last = forged.last_mut().expect("entry");
    let envelope = last.envelope.as_mut().expect("envelope");
    let mut body = envelope.body.to_vec();
    let end = body.len() - 1;
    body[end] ^= 1;
    envelope.body = body.into();
    let hostile = HostileHub::serve(&x, Bent::faithful(forged, honest.members)).await;
    let xg = genesis_of(&x).await;
    let peer = Peer {
        addr: hostile.addr.clone(),
        tls: x.tls("outsider"),
        genesis: xg,
    };
    let a = TestHub::start_named("a.example", move |_, mut o| {
        o.peers = vec![peer];
        o
    })
    .await;
    let before = a.store.log_size();
    trust(&a, &[(xg, "x.example")]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let s = status(&a).await;
        if !s.peers[0].refused.is_empty() {
            break s;
        }
        assert!(Instant::now() < deadline, "not refused within 30 s: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let peer = &refused.peers[0];
    assert_eq!(peer.refusals, 1);
    assert!(peer.refused.contains(&hostile.addr), "{}", peer.refused);
    assert!(peer.refused.contains("altered"), "{}", peer.refused);
    assert_eq!(peer.statements, 0);
    assert_eq!(
        a.store.log_size(),
        before + 1,
        "only A's settings change: nothing relayed"
    );
}

/// The states of sha256 value `(seed, i)` at `t`, by statement, asking for every state.
async fn states_at(
    client: &mut coalition_hub::client::Client,
    seed: u64,
    i: u64,
) -> Vec<(Vec<u8>, pb::HashMatch)> {
    let answer = client
        .hub
        .r#match(pb::MatchRequest {
            queries: vec![pb::MatchQuery {
                r#type: pb::HashType::Sha256 as i32,
                value: crate::common::sha256_value(seed, i),
                quality: None,
            }],
            pdq_threshold: None,
            min_quality: None,
            states: EntryState::ALL.iter().map(|s| s.to_wire() as i32).collect(),
            ..Default::default()
        })
        .await
        .expect("match")
        .into_inner();
    answer
        .results
        .into_iter()
        .flat_map(|r| r.matches)
        .map(|m| (m.statement_id.clone(), m))
        .collect()
}

/// Waits (bounded) until value `(seed, i)` of statement `id` has `state` at `t`.
async fn wait_state(
    t: &TestHub,
    seed: u64,
    i: u64,
    id: StatementId,
    state: EntryState,
) -> pb::HashMatch {
    let mut client = t.client("globex").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = states_at(&mut client, seed, i).await;
        if let Some((_, m)) = found.iter().find(|(s, _)| *s == id.0)
            && m.state == state.to_wire() as i32
        {
            return m.clone();
        }
        assert!(
            Instant::now() < deadline,
            "({seed}, {i}) of {id} never became {} at {}: {found:?}",
            state.name(),
            t.addr
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_origins_retractions_opinions_and_compromises_decide_relayed_states() {
    let (x, a, xg) = peered().await;
    crate::common::lifecycle::admit_members(&x, &["initech"]).await;
    let mut acme = x.client("acme").await;
    let mut ids = Vec::new();
    for seed in 40..44 {
        let r = acme
            .submit(x.hash_set("acme", seed, 2))
            .await
            .expect("submit");
        let receipt = r.receipt.expect("receipt");
        ids.push(StatementId::from_slice(&receipt.statement_id).expect("id"));
    }
    let opinion = |member: &str, target: StatementId, seed: u64, verdict: Verdict| {
        sign_new(
            &id(member),
            &x.key(member),
            Body::Opinion(Opinion {
                target,
                entry: 0,
                verdict,
                note: verdict.name().into(),
                hash: Some(HashKey {
                    hash_type: HashType::Sha256,
                    value: crate::common::sha256_value(seed, 0),
                }),
                admin_quorum: verdict.is_admin(),
            }),
        )
    };
    // At X: acme retracts its set 40; globex and initech disagree on set 41; X's admins
    // quarantine set 42; set 43 stays as it is.
    crate::common::lifecycle::retract(&x, "acme", ids[0], &[], "a mistake").await;
    for (member, verdict) in [
        ("globex", Verdict::Confirmed),
        ("initech", Verdict::FalsePositive),
    ] {
        x.client(member)
            .await
            .submit(opinion(member, ids[1], 41, verdict))
            .await
            .expect("opinion");
    }
    x.client("admin")
        .await
        .submit(opinion("admin", ids[2], 42, Verdict::Quarantine))
        .await
        .expect("quarantine");
    wait_relayed(&a, xg, x.store.log_size()).await;

    // At A, Match decides them by X's lifecycle statements, for X's members.
    wait_state(&a, 40, 0, ids[0], EntryState::Retracted).await;
    let disputed = wait_state(&a, 41, 0, ids[1], EntryState::Disputed).await;
    let tally = disputed.entry_tally.expect("tally");
    assert_eq!((tally.confirmed, tally.false_positive), (1, 1), "{tally:?}");
    wait_state(&a, 42, 0, ids[2], EntryState::Quarantined).await;
    wait_state(&a, 43, 0, ids[3], EntryState::Active).await;

    // A member of A, whose own replica replays X's statements, decides the same.
    let synced = a
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("sync");
    let state_there = |target: StatementId| {
        let e = synced
            .entries
            .iter()
            .find(|e| e.id == target)
            .expect("relayed");
        let issuer = id("acme").qualified("x.example");
        synced.replica.registry().entry_state(
            &Target {
                id: target,
                seq: e.seq,
                issuer: &issuer,
                kind: Kind::HashSet,
            },
            0,
        )
    };
    assert_eq!(state_there(ids[0]), EntryState::Retracted);
    assert_eq!(state_there(ids[1]), EntryState::Disputed);
    assert_eq!(state_there(ids[2]), EntryState::Quarantined);
    assert_eq!(state_there(ids[3]), EntryState::Active);

    // X declares acme's key compromised: at A, acme@x.example's statements are compromised;
    // A's own acme, a different member with its own key, is untouched.
    let own = a
        .client("acme")
        .await
        .submit(a.hash_set("acme", 43, 2))
        .await
        .expect("A's own acme shares the same hashes")
        .receipt
        .expect("receipt");
    let own = StatementId::from_slice(&own.statement_id).expect("id");
    x.admin_change(Action::RevokeKey {
        member: id("acme"),
        key_id: KeyId::of(&x.key("acme").verifying_key()),
        revocation: Revocation::Compromised {
            compromised_at_ms: 1,
        },
    })
    .await
    .expect("revoke as compromised");
    wait_relayed(&a, xg, x.store.log_size()).await;
    wait_state(&a, 43, 0, ids[3], EntryState::Compromised).await;
    wait_state(&a, 43, 0, own, EntryState::Active).await;

    // After a restart, A's saved view of X decides the same states.
    let a = TestHub::resume(a.stop().await).await;
    wait_state(&a, 41, 0, ids[1], EntryState::Compromised).await;
    wait_state(&a, 43, 0, ids[3], EntryState::Compromised).await;
    wait_state(&a, 43, 0, own, EntryState::Active).await;
    // A's replica saved and restored by a member gives the same answer.
    let replica =
        coalition_hub::replica::Replica::restore(&synced.replica.snapshot(), Default::default())
            .expect("restore");
    let e = synced
        .entries
        .iter()
        .find(|e| e.id == ids[2])
        .expect("relayed");
    let issuer = id("acme").qualified("x.example");
    assert_eq!(
        replica.registry().entry_state(
            &Target {
                id: ids[2],
                seq: e.seq,
                issuer: &issuer,
                kind: Kind::HashSet,
            },
            0,
        ),
        EntryState::Quarantined
    );
    drop(x);
}

#[tokio::test]
async fn a_statement_submitted_to_both_hubs_appears_once_and_relaying_goes_on() {
    let (x, a, xg) = peered().await;
    wait_relayed(&a, xg, x.store.log_size()).await;
    // acme is a member of both coalitions, with the same key.
    a.admin_change(Action::AddKey {
        member: id("acme"),
        key: x.key("acme").verifying_key(),
    })
    .await
    .expect("A's acme gets X's acme key");
    let both = x.hash_set("acme", 60, 3);
    let here = a
        .client("acme")
        .await
        .submit(both.clone())
        .await
        .expect("logged at A");
    let there = x
        .client("acme")
        .await
        .submit(both)
        .await
        .expect("logged at X");
    assert!(!there.already_present);
    x.client("acme")
        .await
        .submit(x.hash_set("acme", 61, 3))
        .await
        .expect("more at X");
    let s = wait_relayed(&a, xg, x.store.log_size()).await;
    assert_eq!(s.peers[0].refusals, 0, "{}", s.peers[0].refused);
    let synced = a
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("a member verifies A's log");
    let shared = here.receipt.expect("receipt").statement_id;
    assert_eq!(
        synced
            .entries
            .iter()
            .filter(|e| e.id.0.as_slice() == shared.as_slice())
            .count(),
        1,
        "once at A"
    );
    let last = synced.entries.last().expect("X's next statement");
    assert_eq!(
        last.origin.as_ref().map(|o| o.seq),
        Some(x.store.log_size() - 1)
    );
}

/// The entries of `t`'s log as `member` (a peer) reads them through `Federation`: statement
/// id and whether the body came.
async fn federation_bodies(t: &TestHub, member: &str) -> Vec<(Vec<u8>, bool)> {
    let mut stream = t
        .client(member)
        .await
        .federation
        .get_entries(pb::GetEntriesRequest {
            start: 0,
            end: t.store.log_size(),
        })
        .await
        .expect("a peer reading entries")
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.message().await.expect("entry") {
        let body = e.envelope.is_some_and(|env| !env.body.is_empty());
        out.push((e.statement_id, body));
    }
    out
}

#[tokio::test]
async fn a_restricted_statement_reaches_only_the_hub_serving_its_recipient_from_its_origin() {
    let (x, a, xg) = peered().await;
    let ag = genesis_of(&a).await;
    // X federates with A (A pulls X's log as X's member `outsider`) and with a hub C.
    let cg = StatementId([0x0c; 32]);
    federate(
        &x,
        &[(ag, "a.example"), (cg, "c.example")],
        Some((ag, "outsider")),
    )
    .await;
    // acme at X shares a set that only A's globex and C's initech may read.
    let recipients = Recipients::from_members(
        vec![
            id("globex").qualified("a.example"),
            id("initech").qualified("c.example"),
        ],
        &id("acme"),
    )
    .expect("recipients");
    let envelope = sign_new_for(
        &id("acme"),
        &x.key("acme"),
        Body::HashSet(sha256_set(80, 2)),
        &recipients,
    );
    let mut acme = x.client("acme").await;
    let receipt = acme
        .submit(envelope)
        .await
        .expect("logged at X")
        .receipt
        .expect("receipt");
    let shared = StatementId::from_slice(&receipt.statement_id).expect("id");
    // A recipient on a hub X does not federate with is refused, and nothing is logged.
    let size = x.store.log_size();
    let stranger = Recipients::from_members(vec![id("globex").qualified("z.example")], &id("acme"))
        .expect("recipients");
    let refused = acme
        .submit(sign_new_for(
            &id("acme"),
            &x.key("acme"),
            Body::HashSet(sha256_set(81, 2)),
            &stranger,
        ))
        .await
        .expect_err("z.example is not federated");
    assert!(
        refused.to_string().contains("globex@z.example"),
        "{refused}"
    );
    assert_eq!(x.store.log_size(), size);
    // X serves the body to A's peer identity only.
    let bodies = federation_bodies(&x, "outsider").await;
    assert!(
        bodies.iter().any(|(i, body)| *i == shared.0 && *body),
        "the origin serves it to the hub of its recipient"
    );
    wait_relayed(&a, xg, x.store.log_size()).await;

    // At A: A's globex reads it, verifies it back to X and matches it; A's acme does not.
    let read_by = async |member: &str| {
        let synced = a
            .sync_proven(member, FilterSpec::default())
            .await
            .expect("sync");
        let e = synced
            .entries
            .iter()
            .find(|e| e.id == shared)
            .expect("relayed");
        matches!(e.content, Content::Statement(_))
    };
    assert!(read_by("globex").await, "A's globex is a recipient");
    assert!(!read_by("acme").await, "A's acme is not");
    let mut globex = a.client("globex").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while states_at(&mut globex, 80, 0).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the recipient never matched it at A"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        states_at(&mut a.client("acme").await, 80, 0)
            .await
            .is_empty(),
        "no match for a member it does not name"
    );
    // A never passes it on, not even to the hub of its other recipient: C gets it from X.
    admit_peer(&a, "outsider").await;
    federate(
        &a,
        &[(xg, "x.example"), (cg, "c.example")],
        Some((cg, "outsider")),
    )
    .await;
    let onward = federation_bodies(&a, "outsider").await;
    let (_, body) = onward
        .iter()
        .find(|(i, _)| *i == shared.0)
        .expect("relayed at A");
    assert!(
        !body,
        "a restricted body reaches a hub only directly from its origin"
    );
}

#[tokio::test]
async fn a_statement_erased_at_its_origin_before_the_relay_goes_on_without_its_body() {
    let x = TestHub::start_named("x.example", |_, o| o).await;
    admit_peer(&x, "outsider").await;
    let mut acme = x.client("acme").await;
    let erased = acme
        .submit(x.hash_set("acme", 95, 3))
        .await
        .expect("submit")
        .receipt
        .expect("receipt");
    let target = StatementId::from_slice(&erased.statement_id).expect("id");
    x.client("admin")
        .await
        .submit(erasure(&x, target))
        .await
        .expect("erasure");
    acme.submit(x.hash_set("acme", 96, 3))
        .await
        .expect("more after it");
    let (a, xg) = relaying(&x).await;
    let s = wait_relayed(&a, xg, x.store.log_size()).await;
    assert_eq!(s.peers[0].refusals, 0, "{}", s.peers[0].refused);
    // A's members verify it: the header, the claim settled by X's erasure; no body anywhere.
    let synced = a
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("sync");
    let e = synced
        .entries
        .iter()
        .find(|e| e.id == target)
        .expect("relayed");
    assert_eq!(e.content, Content::Withheld);
    let stored = a.store.entry_by_id(&target).expect("read").expect("stored");
    assert!(
        stored.envelope.is_some_and(|env| env.body.is_empty()),
        "A never held the body"
    );
    let mut globex = a.client("globex").await;
    assert!(
        states_at(&mut globex, 95, 0).await.is_empty(),
        "nothing of it matches at A"
    );
}

#[tokio::test]
async fn an_origins_erasure_after_the_relay_erases_at_the_relaying_hub_too() {
    let (x, a, xg) = peered().await;
    let target = x
        .client("acme")
        .await
        .submit(x.hash_set("acme", 97, 3))
        .await
        .expect("submit")
        .receipt
        .expect("receipt");
    let target = StatementId::from_slice(&target.statement_id).expect("id");
    wait_relayed(&a, xg, x.store.log_size()).await;
    wait_state(&a, 97, 0, target, EntryState::Active).await;
    // A member of A who synced it before the erasure.
    let before = a
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("sync");
    let stored = a.store.entry_by_id(&target).expect("read").expect("stored");
    assert!(
        stored.envelope.is_some_and(|e| !e.body.is_empty()),
        "relayed with its body"
    );
    // Only the origin erases it: A's admin quorum is refused, nothing logged.
    let size = a.store.log_size();
    let refused = a
        .client("admin")
        .await
        .submit(erasure(&a, target))
        .await
        .expect_err("A cannot erase X's statement");
    assert!(
        refused.to_string().contains("only its origin can erase it"),
        "{refused}"
    );
    assert_eq!(a.store.log_size(), size);
    x.client("admin")
        .await
        .submit(erasure(&x, target))
        .await
        .expect("X erases it");
    wait_relayed(&a, xg, x.store.log_size()).await;
    // A overwrote the body, Match never returns it, whatever is asked for.
    let stored = a.store.entry_by_id(&target).expect("read").expect("stored");
    assert!(
        stored.envelope.is_some_and(|e| e.body.is_empty()),
        "scrubbed at A"
    );
    let mut globex = a.client("globex").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !states_at(&mut globex, 97, 0).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "still matching at A after the erasure"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A member syncing from scratch gets the header and the claim, settled by X's erasure;
    // one who held it sees it erased.
    let fresh = a
        .sync_proven("acme", FilterSpec::default())
        .await
        .expect("a fresh sync verifies");
    let e = fresh
        .entries
        .iter()
        .find(|e| e.id == target)
        .expect("relayed");
    assert_eq!(e.content, Content::Withheld);
    let held = before
        .entries
        .iter()
        .find(|e| e.id == target)
        .expect("held");
    let issuer = id("acme").qualified("x.example");
    let state = |synced: &crate::common::Synced| {
        synced.replica.registry().entry_state(
            &Target {
                id: target,
                seq: held.seq,
                issuer: &issuer,
                kind: Kind::HashSet,
            },
            0,
        )
    };
    assert_eq!(state(&fresh), EntryState::Erased);
    // After a restart, the body is still gone and the auditor's replay agrees.
    let a = TestHub::resume(a.stop().await).await;
    let stored = a.store.entry_by_id(&target).expect("read").expect("stored");
    assert!(stored.envelope.is_some_and(|e| e.body.is_empty()));
    a.sync_proven("auditor", FilterSpec::default())
        .await
        .expect("the auditor's replay");
}
