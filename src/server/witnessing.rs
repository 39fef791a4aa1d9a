//! Has the hub's checkpoints cosigned: background tasks that follow the latest published
//! checkpoint (`Store::watch_checkpoint`) and sends it, with a consistency proof from the size
//! each witness last cosigned, to every witness of the coalition's witness policy (the signed
//! settings decide which witnesses, never the operator: docs/PROTOCOL.md §3.8), over C2SP
//! tlog-witness `add-checkpoint`. Each cosignature is verified against the witness's key from
//! the policy before it is stored beside the checkpoint (flushed) and served with it.
//!
//! A 409 answer (the witness cosigned another size) is retried once from the size it names;
//! any other refusal or a witness that cannot be reached is logged and counted
//! (`coalition_witness_requests_total{witness,outcome}`), and the checkpoint goes unwitnessed
//! by that witness: members see it and say so; it is asked again after [`RETRY_FIRST`],
//! doubling up to [`RETRY_MAX`], or at the next checkpoint. Each witness has its own task, so a slow or
//! unreachable one delays no other; a task skips the checkpoints published while it waited
//! for an answer and takes the latest. A supervisor follows the policy the replayed settings
//! hold: it starts a task for each witness the policy names and stops those it no longer
//! names (or names with another key or URL). Bounded: at most
//! [`crate::witness::policy::MAX_WITNESSES`] tasks, one request each at a time, each within
//! [`crate::witness::client::TIMEOUT`]. Everything stops when the hub's shutdown begins.

use std::collections::HashMap;

use super::shutdown::Listener;
use crate::store::{PublishedCheckpoint, Store};
use crate::witness::AddCheckpoint;
use crate::witness::client::{Answer, add_checkpoint};
use crate::witness::policy::PolicyWitness;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The first wait before asking a witness that failed again (without a new checkpoint).
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest such wait.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// Starts the supervisor (it ends, with its witness tasks, when the shutdown begins or the
/// store's checkpoints stop).
pub fn start(store: Store, mut stop: Listener) {
    tokio::spawn(async move {
        let mut tasks: HashMap<String, (PolicyWitness, JoinHandle<()>)> = HashMap::new();
        tokio::select! {
            () = supervise(&store, &mut tasks) => {}
            () = stop.begun() => {}
        }
        for (_, (_, task)) in tasks {
            task.abort();
        }
    });
}

/// Keeps one task per witness of the policy in force, checked at every checkpoint.
async fn supervise(store: &Store, tasks: &mut HashMap<String, (PolicyWitness, JoinHandle<()>)>) {
    let mut published = store.watch_checkpoint();
    loop {
        published.borrow_and_update();
        let wanted: Vec<PolicyWitness> = store
            .registry()
            .coalition()
            .and_then(|c| c.settings.witnesses.clone())
            .map(|p| p.witnesses().cloned().collect())
            .unwrap_or_default();
        tasks.retain(|name, (w, task)| {
            let keep = wanted.iter().any(|n| n.key.name() == name && n == w);
            if !keep {
                task.abort();
            }
            keep
        });
        for w in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                tasks.entry(w.key.name().to_owned())
            {
                let task = tokio::spawn(follow(store.clone(), w.clone()));
                slot.insert((w, task));
            }
        }
        if published.changed().await.is_err() {
            return;
        }
    }
}

/// Sends each latest checkpoint to `witness` and stores the cosignature that verifies.
async fn follow(store: Store, witness: PolicyWitness) {
    let mut published = store.watch_checkpoint();
    let name = witness.key.name().to_owned();
    // The size the witness last cosigned, or named in a 409 (`None`: not asked yet).
    let mut known: Option<u64> = None;
    // After a failure: how long to wait before asking again without a new checkpoint.
    let mut retry: Option<Duration> = None;
    loop {
        let latest = *published.borrow_and_update();
        if let Some(size) = latest.filter(|s| known != Some(*s)) {
            let cp = blocking(&store, move |s| s.checkpoint(size))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(size, "witnessing: reading the checkpoint: {e}");
                    None
                });
            if let Some(cp) = cp {
                let outcome = match ask(&store, &witness, &cp, known).await {
                    Ok(line) => {
                        known = Some(cp.size);
                        retry = None;
                        let lines = vec![(name.clone(), line)];
                        match blocking(&store, move |s| s.put_cosignatures(size, &lines)).await {
                            Ok(()) => "cosigned",
                            Err(e) => {
                                tracing::warn!(size, witness = %name, "storing a cosignature: {e}");
                                "failed"
                            }
                        }
                    }
                    Err(Failure { reason, latest }) => {
                        if latest.is_some() {
                            known = latest;
                        }
                        retry = Some(retry.map_or(RETRY_FIRST, |r| (r * 2).min(RETRY_MAX)));
                        tracing::warn!(witness = %name, size, "witness did not cosign: {reason}");
                        "failed"
                    }
                };
                metrics::counter!("coalition_witness_requests_total", "witness" => name.clone(), "outcome" => outcome)
                    .increment(1);
            }
        }
        match retry {
            Some(wait) => tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            },
            None => {
                if published.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `f` on the store off the async workers; a failure (or a panicked task) as text.
async fn blocking<T, E>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
) -> Result<T, String>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Why a witness gave no cosignature, and the size it says it last cosigned, if it said.
struct Failure {
    reason: String,
    latest: Option<u64>,
}

/// One witness's cosignature line for `cp`, asking from `from` (`None`: a witness not asked
/// yet, sent from size 0 and corrected by its 409).
async fn ask(
    store: &Store,
    witness: &PolicyWitness,
    cp: &PublishedCheckpoint,
    from: Option<u64>,
) -> Result<String, Failure> {
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
            let size = cp.size;
            blocking(store, move |s| s.consistency_proof(old, size))
                .await
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
