//! A member notices a rewritten history on its own: what `coalition sync` checks after each
//! run (inclusion of what it received, consistency with the checkpoint it saved last time).

mod common;

use coalition_hub::governance;
use coalition_hub::pb;
use coalition_hub::server::{ServeOptions, spawn};
use coalition_hub::store::{Store, StoreConfig};
use coalition_hub::sync::{Event, LogCheck, LogView, Session};
use common::{ORIGIN, TestHub, id};

/// Syncs from `from` (optionally filtered), feeding a log check; returns the next cursor.
async fn sync_and_check(
    t_addr: &str,
    t: &TestHub,
    view: Option<LogView>,
    from: u64,
    kinds: Vec<i32>,
) -> Result<(LogCheck, coalition_hub::sync::LogCheckReport, u64), String> {
    let client = coalition_hub::client::Client::connect(t_addr, &t.tls("globex"))
        .await
        .map_err(|e| e.to_string())?;
    let contiguous = kinds.is_empty();
    let mut check = LogCheck::new(view, from, contiguous);
    let mut session = Session::start(
        client,
        pb::SyncRequest {
            from_seq: from,
            kinds,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    while let Some(event) = session.next().await.map_err(|e| e.to_string())? {
        if let Event::Entry(e) = event {
            check.received(&e);
        }
    }
    let next = session.next_seq();
    let mut checker = coalition_hub::client::Client::connect(t_addr, &t.tls("globex"))
        .await
        .map_err(|e| e.to_string())?;
    let report = check
        .verify(&mut checker)
        .await
        .map_err(|e| e.to_string())?;
    Ok((check, report, next))
}

#[tokio::test]
async fn unfiltered_syncs_prove_everything_received_and_extend_the_saved_checkpoint() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    for i in 0..5 {
        acme.submit(t.hash_set("acme", i, 2)).await.expect("submit");
    }
    let (check, report, next) = sync_and_check(&t.addr, &t, None, 0, vec![])
        .await
        .expect("first sync checks");
    assert_eq!(report.entries_proven, t.base + 5);
    assert!(report.checkpoint_size >= t.base + 5);
    assert_eq!(report.consistent_with, None, "nothing saved before");
    let view = check.view().cloned().expect("view to save");
    assert_eq!(view.frontier_size, Some(next));
    assert!(view.genesis.len() == 64 && view.checkpoint.is_some());

    // Later: more entries; resumed from the cursor with the saved view.
    for i in 10..13 {
        acme.submit(t.hash_set("acme", i, 1)).await.expect("submit");
    }
    let (_, report, _) = sync_and_check(&t.addr, &t, Some(view.clone()), next, vec![])
        .await
        .expect("second sync checks");
    assert_eq!(report.entries_proven, t.base + 8, "frontier carried on");
    assert_eq!(report.consistent_with, Some(t.base + 5));

    // Filtered: one inclusion proof per received entry.
    let (_, report, _) = sync_and_check(
        &t.addr,
        &t,
        Some(view),
        0,
        vec![pb::StatementKind::HashSet as i32],
    )
    .await
    .expect("filtered sync checks");
    assert_eq!(report.entries_proven, 8);
}

#[tokio::test]
async fn a_rewritten_history_is_noticed() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    for i in 0..4 {
        acme.submit(t.hash_set("acme", i, 1)).await.expect("submit");
    }
    let (check, _, _) = sync_and_check(&t.addr, &t, None, 0, vec![])
        .await
        .expect("honest");
    let view = check.view().cloned().expect("view");

    // The operator rewrites history: a new log under the same hub name and key, where acme's
    // statements are gone, served at another address to the same members.
    let other = tempfile::tempdir().expect("tmp");
    let store = Store::open(other.path(), &StoreConfig::default()).expect("store");
    governance::found_from_certs(
        &store,
        &t.certs,
        ORIGIN,
        &[(id("admin"), "Admin".into())],
        1,
    )
    .await
    .expect("genesis");
    for m in ["acme", "globex"] {
        let admit = governance::admission(
            &id(m),
            m,
            &[coalition_hub::membership::Role::Member],
            &[t.key(m).verifying_key()],
        );
        let change = governance::change(
            &id("admin"),
            &t.key("admin"),
            coalition_hub::membership::Action::Admit(admit),
            "",
        );
        governance::append_offline(&store, change)
            .await
            .expect("admit");
    }
    for i in 100..110 {
        governance::append_offline(&store, t.hash_set("globex", i, 1))
            .await
            .expect("append");
    }
    let options = ServeOptions::for_store(&store, t.certs.hub_signing_key().expect("key"))
        .expect("same hub key and name");
    let forged = spawn(
        "127.0.0.1:0",
        store,
        t.certs.hub_tls().expect("tls"),
        options,
    )
    .await
    .expect("forged hub");
    let addr = forged.addr.to_string();
    // Its checkpoints verify with the pinned key, but do not extend what globex saw.
    let err = sync_and_check(&addr, &t, Some(view.clone()), 0, vec![])
        .await
        .err()
        .expect("rewrite noticed");
    assert!(err.contains("log check FAILED"), "{err}");
    assert!(err.contains("does not extend the one of"), "{err}");
    // Resuming from the saved cursor on the forged log: the received entries do not fit the
    // frontier saved from the real one.
    let err = sync_and_check(
        &addr,
        &t,
        Some(view.clone()),
        view.frontier_size.expect("f"),
        vec![],
    )
    .await
    .err()
    .expect("rewrite noticed");
    assert!(err.contains("log check FAILED"), "{err}");
    forged.stop().await.expect("stop");
}
