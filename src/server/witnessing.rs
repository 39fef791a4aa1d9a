//! Has the hub's checkpoints cosigned: a background task that follows the latest published
//! checkpoint (`Store::watch_checkpoint`) and sends it, with a consistency proof from the size
//! each witness last cosigned, to every witness of the coalition's witness policy (the signed
//! settings decide which witnesses, never the operator: docs/PROTOCOL.md §3.8), over C2SP
//! tlog-witness `add-checkpoint`. Each cosignature is verified against the witness's key from
//! the policy before it is stored beside the checkpoint (flushed) and served with it.
//!
//! A 409 answer (the witness cosigned another size) is retried once from the size it names;
//! any other refusal or a witness that cannot be reached is logged and counted
//! (`coalition_witness_requests_total{witness,outcome}`), and the checkpoint goes unwitnessed
//! by that witness: members see it and say so. Checkpoints published while a round is under
//! way are skipped: each round takes the latest. Bounded: at most
//! [`crate::witness::policy::MAX_WITNESSES`] requests at once, each within
//! [`crate::witness::client::TIMEOUT`]. The task stops when the hub's shutdown begins.

use std::collections::HashMap;

use super::shutdown::Listener;
use crate::store::{PublishedCheckpoint, Store};
use crate::witness::AddCheckpoint;
use crate::witness::client::{Answer, add_checkpoint};
use crate::witness::policy::PolicyWitness;

/// Starts the task (it ends when the shutdown begins or the store's checkpoints stop).
pub fn start(store: Store, mut stop: Listener) {
    tokio::spawn(async move {
        tokio::select! {
            () = run(store) => {}
            () = stop.begun() => {}
        }
    });
}

async fn run(store: Store) {
    let mut published = store.watch_checkpoint();
    // The size each witness last cosigned (or named in a 409), by witness name.
    let mut known: HashMap<String, u64> = HashMap::new();
    loop {
        let latest = *published.borrow_and_update();
        if let Some(size) = latest {
            let policy = store
                .registry()
                .coalition()
                .and_then(|c| c.settings.witnesses.clone());
            if let Some(policy) = policy {
                let read = store.clone();
                match tokio::task::spawn_blocking(move || read.checkpoint(size)).await {
                    Ok(Ok(Some(cp))) => round(&store, &cp, policy.witnesses(), &mut known).await,
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => tracing::warn!(size, "witnessing: reading the checkpoint: {e}"),
                    Err(e) => tracing::warn!(size, "witnessing: {e}"),
                }
            }
        }
        if published.changed().await.is_err() {
            return;
        }
    }
}

/// Asks every witness at once for a cosignature of `cp`; stores those that verify.
async fn round<'a>(
    store: &Store,
    cp: &PublishedCheckpoint,
    witnesses: impl Iterator<Item = &'a PolicyWitness>,
    known: &mut HashMap<String, u64>,
) {
    let mut asks = tokio::task::JoinSet::new();
    for w in witnesses {
        let from = known.get(w.key.name()).copied();
        let (store, w, cp) = (store.clone(), w.clone(), cp.clone());
        asks.spawn(async move {
            let answer = ask(&store, &w, &cp, from).await;
            (w.key.name().to_owned(), answer)
        });
    }
    let mut lines = Vec::new();
    while let Some(joined) = asks.join_next().await {
        let Ok((name, answer)) = joined else {
            continue;
        };
        let outcome = match answer {
            Ok((line, size)) => {
                known.insert(name.clone(), size);
                lines.push((name.clone(), line));
                "cosigned"
            }
            Err(Failure { reason, latest }) => {
                if let Some(size) = latest {
                    known.insert(name.clone(), size);
                }
                tracing::warn!(witness = %name, size = cp.size, "witness did not cosign: {reason}");
                "failed"
            }
        };
        metrics::counter!("coalition_witness_requests_total", "witness" => name, "outcome" => outcome)
            .increment(1);
    }
    let (store, size) = (store.clone(), cp.size);
    let stored = tokio::task::spawn_blocking(move || store.put_cosignatures(size, &lines)).await;
    if let Err(e) = stored
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        tracing::warn!(size, "witnessing: storing cosignatures: {e}");
    }
}

/// Why a witness gave no cosignature, and the size it says it last cosigned, if it said.
struct Failure {
    reason: String,
    latest: Option<u64>,
}

/// One witness's cosignature line for `cp` and the size it now holds, asking from `from`
/// (`None`: a witness not asked yet, sent from size 0 and corrected by its 409).
async fn ask(
    store: &Store,
    witness: &PolicyWitness,
    cp: &PublishedCheckpoint,
    from: Option<u64>,
) -> Result<(String, u64), Failure> {
    let fail = |reason: String, latest| Failure { reason, latest };
    let mut old = from.unwrap_or(0);
    let mut named = None;
    for _ in 0..2 {
        if old > cp.size {
            return Err(fail(
                format!(
                    "it has cosigned {old} entries and this checkpoint has {}: a fork, or a witness state from another log",
                    cp.size
                ),
                named,
            ));
        }
        let proof = if old == 0 || old == cp.size {
            Vec::new()
        } else {
            let read = store.clone();
            let size = cp.size;
            tokio::task::spawn_blocking(move || read.consistency_proof(old, size))
                .await
                .map_err(|e| fail(e.to_string(), named))?
                .map_err(|e| fail(format!("consistency proof from {old}: {e}"), named))?
        };
        let request = AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: cp.note.clone(),
        };
        match add_checkpoint(&witness.url, &request).await {
            Ok(Answer::Cosigned(lines)) => {
                return lines
                    .lines()
                    .map(|l| format!("{l}\n"))
                    .find(|line| witness.key.verify(&format!("{}{line}", cp.note)).is_ok())
                    .map(|line| (line, cp.size))
                    .ok_or_else(|| {
                        fail(
                            "its answer holds no cosignature that verifies with its key in the policy".into(),
                            named,
                        )
                    });
            }
            Ok(Answer::Conflict { latest }) => {
                named = Some(latest);
                old = latest;
            }
            Ok(Answer::Refused { status, message }) => {
                return Err(fail(format!("HTTP {status}: {message}"), named));
            }
            Err(e) => return Err(fail(e.to_string(), named)),
        }
    }
    Err(fail(
        format!("it answered 409 twice (last: it holds {old} entries)"),
        named,
    ))
}
