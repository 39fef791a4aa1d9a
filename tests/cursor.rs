//! Cursor exactness: while several members submit concurrently, a follower that keeps
//! disconnecting and resuming from its saved cursor receives every statement exactly once,
//! in log order, with no gap.

mod common;

use coalition_hub::pb;
use coalition_hub::sync::{Event, Session};
use common::TestHub;
use std::collections::BTreeSet;

const SUBMITTERS: u64 = 3;
const PER_SUBMITTER: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_follow_sees_everything_exactly_once_under_concurrent_submitters() {
    let t = TestHub::start().await;
    let total = SUBMITTERS * PER_SUBMITTER;
    let mut tasks = Vec::new();
    for s in 0..SUBMITTERS {
        let member = if s % 2 == 0 { "acme" } else { "globex" };
        let mut client = t.client(member).await;
        let envelopes: Vec<_> = (0..PER_SUBMITTER)
            .map(|i| t.hash_set(member, s * 1000 + i, 3))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for env in envelopes {
                let r = client.submit(env).await.expect("submit");
                acked.push(r.receipt.expect("receipt").statement_id);
            }
            acked
        }));
    }

    // The follower: read a few entries, drop the connection, resume from the saved cursor.
    let mut cursor = t.base;
    let mut received: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut reconnects = 0;
    while (received.len() as u64) < total {
        let client = t.client("globex").await;
        let mut session = Session::start(
            client,
            pb::SyncRequest {
                from_seq: cursor,
                follow: true,
                ..Default::default()
            },
        )
        .await
        .expect("session");
        reconnects += 1;
        let budget = 1 + reconnects % 7; // disconnect after a varying number of entries
        let mut got = 0;
        while got < budget && (received.len() as u64) < total {
            let event = tokio::time::timeout(std::time::Duration::from_secs(20), session.next())
                .await
                .expect("no stall")
                .expect("verified")
                .expect("open");
            match event {
                Event::Entry(e) => {
                    received.push((e.seq, e.id.0.to_vec()));
                    got += 1;
                    cursor = e.seq + 1;
                }
                Event::Progress { next_seq, .. } => cursor = next_seq,
            }
        }
        drop(session);
    }
    let mut acked = BTreeSet::new();
    for task in tasks {
        acked.extend(task.await.expect("submitter"));
    }
    let seqs: Vec<u64> = received.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (t.base..t.base + total).collect::<Vec<_>>(),
        "in order, no gap, no duplicate"
    );
    let ids: BTreeSet<Vec<u8>> = received.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, acked, "exactly the acknowledged statements");
    assert!(
        reconnects > 10,
        "the follower really reconnected ({reconnects})"
    );
}
