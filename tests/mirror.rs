//! Mirrors and disaster recovery (issue 13, items 3 and 5): a read-only hub that follows
//! another hub's log through the audit API, proves every batch in that hub's signed
//! checkpoints before writing it, and serves the same log byte for byte; a hub restored from
//! an old backup that copies what it is missing from its mirror before it serves; and
//! upstreams that lie, refused with nothing written.

use crate::common::hostile::{Bent, HostileHub, entry_of, export, renumbered};
use crate::common::{TestHub, id, sha256_value};
use crate::serve::ServeProcess;
use coalition_hub::client::Client;
use coalition_hub::federation::{FollowError, Follower, Round, Upstream};
use coalition_hub::pb;
use coalition_hub::server::{RunningHub, ServeOptions, spawn};
use coalition_hub::statement::StatementId;
use coalition_hub::store::{Store, StoreConfig};
use std::time::Duration;

fn upstream(t: &TestHub, addr: &str, genesis: Option<StatementId>) -> Upstream {
    Upstream {
        addr: addr.to_owned(),
        tls: t.tls("auditor"),
        genesis,
    }
}

async fn genesis(t: &TestHub) -> StatementId {
    StatementId::from_hex(&t.genesis_hex().await).expect("genesis id")
}

async fn submit_sets(t: &TestHub, member: &str, seeds: std::ops::Range<u64>) {
    let mut client = t.client(member).await;
    for seed in seeds {
        client
            .submit(t.hash_set(member, seed, 50))
            .await
            .expect("submit");
    }
}

/// A mirror of `t` in `dir`: first copy, then served (as `coalition serve --mirror-of` does).
async fn start_mirror(t: &TestHub, dir: &std::path::Path) -> (RunningHub, Store) {
    let store = Store::open(dir, &StoreConfig::default()).expect("mirror store");
    let from = upstream(t, &t.addr, Some(genesis(t).await));
    let mut follower = Follower::new(store.clone(), from.clone())
        .await
        .expect("follower");
    assert_eq!(
        follower.catch_up().await.expect("first copy"),
        Round::CaughtUp
    );
    drop(follower);
    let hub = spawn(
        "127.0.0.1:0",
        store.clone(),
        t.certs.hub_tls().expect("tls"),
        ServeOptions::mirror(Some(from)),
    )
    .await
    .expect("mirror serves");
    (hub, store)
}

/// Waits until `store` holds `size` entries and a checkpoint of that size (at most 20 s).
async fn wait_for(store: &Store, size: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cp = store
            .latest_checkpoint()
            .expect("checkpoint")
            .map(|c| c.size);
        if store.log_size() == size && cp == Some(size) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mirror holds {} entries (checkpoint {cp:?}), not {size}",
            store.log_size()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every entry a hub serves `client`, replayed from the genesis (panics on a refusal).
async fn replay_all(client: &mut Client) -> coalition_hub::replica::Replica {
    let request = pb::SyncRequest {
        from_seq: 0,
        ..Default::default()
    };
    let (entries, _) = crate::common::sync_all(client, request).await;
    crate::common::replay(entries).expect("the log replays").0
}

/// Every entry and checkpoint of two stores, compared byte for byte.
fn assert_same_log(a: &Store, b: &Store) {
    assert_eq!(a.log_size(), b.log_size(), "sizes");
    let size = a.log_size();
    let left: Vec<_> = a.entries(0, size).map(|e| e.expect("entry")).collect();
    let right: Vec<_> = b.entries(0, size).map(|e| e.expect("entry")).collect();
    assert_eq!(left, right, "entries");
    assert_eq!(a.root(size).expect("root"), b.root(size).expect("root"));
    let cps = |s: &Store| -> Vec<(u64, String)> {
        s.checkpoints_from(0, 10_000)
            .expect("checkpoints")
            .into_iter()
            .map(|c| (c.size, c.note))
            .collect()
    };
    assert_eq!(cps(a), cps(b), "checkpoints");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_serves_the_same_log_and_refuses_writes() {
    let t = TestHub::start().await;
    submit_sets(&t, "acme", 0..3).await;
    // A mirror copies what its upstream's checkpoints cover.
    t.published_checkpoint().await;
    let mirror_dir = tempfile::tempdir().expect("tempdir");
    let (mirror, store) = start_mirror(&t, mirror_dir.path()).await;
    assert_same_log(&t.store, &store);

    // Entries submitted to the primary afterwards reach the mirror, with their checkpoint.
    submit_sets(&t, "globex", 10..14).await;
    let size = t.published_checkpoint().await.tree_size;
    wait_for(&store, size).await;
    assert_same_log(&t.store, &store);

    // A member syncs from the mirror and verifies everything against the primary's genesis
    // and checkpoints (the same notes, signed by the primary's key).
    let mirror_addr = mirror.addr.to_string();
    let mut acme = Client::connect(&mirror_addr, &t.tls("acme"))
        .await
        .expect("connect to mirror");
    let replica = replay_all(&mut acme).await;
    assert_eq!(replica.size(), size);
    let cp = acme
        .checkpoint(&t.checkpoint_key, false)
        .await
        .expect("the mirror's checkpoint verifies with the primary's key");
    assert_eq!(cp.size().0, size);

    // Match answers from the mirror's own index.
    let wanted = sha256_value(12, 7);
    let matched = acme
        .hub
        .r#match(pb::MatchRequest {
            queries: vec![pb::MatchQuery {
                r#type: pb::HashType::Sha256 as i32,
                value: wanted,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("match on the mirror")
        .into_inner();
    assert_eq!(matched.results.len(), 1);
    assert_eq!(matched.results[0].matches.len(), 1, "{matched:?}");

    // Writes are refused with FAILED_PRECONDITION, naming the hub to submit to.
    let refused = acme
        .hub
        .submit(pb::SubmitRequest {
            envelope: Some(t.hash_set("acme", 99, 3)),
        })
        .await
        .expect_err("a mirror takes no writes");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("read-only mirror of") && refused.message().contains(&t.addr),
        "{refused:?}"
    );
    assert_eq!(store.log_size(), size, "nothing written");
    mirror.stop().await.expect("mirror stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_refuses_an_upstream_that_forges_or_forks() {
    let t = TestHub::start().await;
    submit_sets(&t, "acme", 0..3).await;
    t.published_checkpoint().await;
    let honest = export(&t).await;
    let genesis = genesis(&t).await;

    // A forged entry: one signature byte changed. Nothing of the batch is written.
    let mut forged = honest.entries.clone();
    let last = forged.len() - 1;
    if let Some(envelope) = forged[last].envelope.as_mut() {
        envelope.signatures[0].sig[0] ^= 1;
    }
    let hostile = HostileHub::serve(&t, Bent::faithful(forged, honest.members.clone())).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &StoreConfig::default()).expect("store");
    let mut follower = Follower::new(store.clone(), upstream(&t, &hostile.addr, Some(genesis)))
        .await
        .expect("follower");
    let refused = follower
        .round()
        .await
        .expect_err("a forged entry is refused");
    assert!(refused.is_refusal(), "{refused}");
    assert!(refused.to_string().contains("signature"), "{refused}");
    assert_eq!(store.log_size(), 0, "nothing of the batch was written");
    assert_eq!(follower.status().refusals, 1);
    drop((follower, hostile));

    // The same store follows the honest hub, then a hub showing a fork of it: the fork's
    // checkpoint does not extend what was copied, and is refused.
    let mut follower = Follower::new(store.clone(), upstream(&t, &t.addr, Some(genesis)))
        .await
        .expect("follower");
    assert_eq!(follower.catch_up().await.expect("copy"), Round::CaughtUp);
    assert_same_log(&t.store, &store);
    let copied = store.log_size();
    drop(follower);
    let mut fork: Vec<pb::SyncEntry> = honest.entries[..(copied - 1) as usize].to_vec();
    for seed in 50..53 {
        fork.push(entry_of(
            t.hash_set("acme", seed, 5),
            coalition_hub::store::now_ms(),
        ));
    }
    let hostile = HostileHub::serve(&t, Bent::faithful(renumbered(fork), honest.members)).await;
    let mut follower = Follower::new(store.clone(), upstream(&t, &hostile.addr, None))
        .await
        .expect("follower");
    let refused = follower.round().await.expect_err("a fork is refused");
    assert!(matches!(refused, FollowError::Refused { .. }), "{refused}");
    assert_eq!(store.log_size(), copied, "nothing written");
    assert_same_log(&t.store, &store);
}

/// A hub restored from a backup older than what its members saw copies the rest from its
/// mirror before it serves; a member that verified the newer checkpoint then sees no fork.
#[test]
fn a_hub_restored_from_an_old_backup_catches_up_from_its_mirror() {
    let runtime = crate::common::runtime;
    let backup = tempfile::tempdir().expect("tempdir");
    let first = runtime();
    let (stopped, data) = first.block_on(async {
        let t = TestHub::start().await;
        submit_sets(&t, "acme", 0..3).await;
        t.published_checkpoint().await;
        let data = t.data.clone();
        (t.stop().await, data)
    });
    drop(first);
    // The backup: the data directory as it was then.
    crate::common::copy_dir(&data, backup.path());
    runtime().block_on(async {
        let t = TestHub::resume(stopped).await;
        let mirror_dir = tempfile::tempdir().expect("tempdir");
        let (mirror, mirror_store) = start_mirror(&t, mirror_dir.path()).await;
        submit_sets(&t, "globex", 10..15).await;
        let seen = t.published_checkpoint().await;
        wait_for(&mirror_store, seen.tree_size).await;
        let mut acme = t.client("acme").await;
        let saved = acme
            .checkpoint(&t.checkpoint_key, false)
            .await
            .expect("a member saves the latest checkpoint");
        let (key, certs) = (t.checkpoint_key.clone(), t.certs.clone());
        let hub_key = certs.hub_signing_key().expect("hub key");
        let primary_store = t.store.clone();
        // Kept: it holds the certificates' directory.
        let _stopped = t.stop().await;

        // The primary's disk is lost; the backup is restored and is behind.
        let restored = Store::open(backup.path(), &StoreConfig::default()).expect("restored");
        assert!(restored.log_size() < seen.tree_size);
        let mirror_addr = mirror.addr.to_string();
        let mut follower = Follower::new(
            restored.clone(),
            Upstream {
                addr: mirror_addr,
                tls: certs.member_tls(&id("auditor")).expect("tls"),
                genesis: None,
            },
        )
        .await
        .expect("follower");
        assert_eq!(
            follower.catch_up().await.expect("catch up"),
            Round::CaughtUp
        );
        drop(follower);
        assert_same_log(&primary_store, &restored);
        drop(primary_store);

        // It serves again, and the member's saved checkpoint is consistent with it.
        let hub = spawn(
            "127.0.0.1:0",
            restored.clone(),
            certs.hub_tls().expect("tls"),
            ServeOptions::for_store(&restored, hub_key).expect("options"),
        )
        .await
        .expect("restored hub serves");
        let mut acme = Client::connect(
            &hub.addr.to_string(),
            &certs.member_tls(&id("acme")).expect("tls"),
        )
        .await
        .expect("connect");
        let now = acme.checkpoint(&key, false).await.expect("checkpoint");
        assert_eq!(now.size().0, seen.tree_size);
        acme.verify_consistency(&key, &saved, &now)
            .await
            .expect("no fork");
        hub.stop().await.expect("stop");
        mirror.stop().await.expect("stop");
    });
}

/// `coalition serve --mirror-of` as a process: the first copy before listening, then writes
/// refused; a flag missing is one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalition_serve_mirror_of_copies_then_serves() {
    let t = TestHub::start().await;
    submit_sets(&t, "acme", 0..2).await;
    let size = t.published_checkpoint().await.tree_size;
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = t.certs.root().to_str().expect("utf-8 path").to_owned();
    let genesis = t.genesis_hex().await;
    let data = dir.path().join("mirror");
    let data = data.to_str().expect("utf-8 path");
    let without_identity = crate::serve::fails(
        dir.path(),
        &[
            "serve",
            "--data",
            data,
            "--certs",
            &certs,
            "--mirror-of",
            &t.addr,
            "--genesis",
            &genesis,
        ],
    );
    assert!(
        without_identity.contains("--upstream-as"),
        "{without_identity}"
    );
    let identity_alone = crate::serve::fails(
        dir.path(),
        &[
            "serve",
            "--data",
            data,
            "--certs",
            &certs,
            "--upstream-as",
            "auditor",
        ],
    );
    assert!(
        identity_alone.contains("--mirror-of or --catch-up-from"),
        "{identity_alone}"
    );
    let (process, addr) = ServeProcess::start(
        dir.path(),
        &[
            "--data",
            data,
            "--certs",
            &certs,
            "--mirror-of",
            &t.addr,
            "--genesis",
            &genesis,
            "--upstream-as",
            "auditor",
        ],
    );
    let mut globex = Client::connect(&addr, &t.tls("globex"))
        .await
        .expect("connect");
    let cp = globex
        .checkpoint(&t.checkpoint_key, false)
        .await
        .expect("the mirror serves the primary's checkpoint");
    assert_eq!(cp.size().0, size);
    let refused = globex
        .submit(t.hash_set("globex", 7, 3))
        .await
        .expect_err("read-only");
    assert!(
        refused.to_string().contains("read-only mirror"),
        "{refused}"
    );

    // Killed with SIGKILL while the primary grows, then restarted on the same directory: it
    // resumes from its durable size, with nothing lost or duplicated.
    submit_sets(&t, "acme", 20..30).await;
    process.kill();
    submit_sets(&t, "globex", 30..35).await;
    let size = t.published_checkpoint().await.tree_size;
    let (process, addr) = ServeProcess::start(
        dir.path(),
        &[
            "--data",
            data,
            "--certs",
            &certs,
            "--mirror-of",
            &t.addr,
            "--upstream-as",
            "auditor",
        ],
    );
    let mut globex = Client::connect(&addr, &t.tls("globex"))
        .await
        .expect("connect");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cp = globex
            .checkpoint(&t.checkpoint_key, false)
            .await
            .expect("checkpoint");
        if cp.size().0 == size {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mirror at {}",
            cp.size().0
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replica = replay_all(&mut globex).await;
    assert_eq!(replica.size(), size);
    assert_eq!(replica.root(), t.store.root(size).expect("root"));
    process.kill();
}
