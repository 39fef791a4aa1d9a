//! Keeps the matching corpus in step with the durable log: loads every stored entry at
//! start-up (building the PDQ index once), then follows the log as it grows. It stops once
//! nobody reads the corpus (the `Hub` service is gone: at shutdown, after the calls in flight).
//! A step that fails (an entry that cannot be read or decoded) marks the indexer down in the
//! hub's health and is retried with a growing pause ([`RETRY_MIN`] to [`RETRY_MAX`]); it is up
//! again once a step succeeds.

use super::health::{Component, HealthState};
use super::shutdown::Listener;
use crate::matching::Corpus;
use crate::statement::ParsedEnvelope;
use crate::store::Store;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// Most entries indexed per step (one write-lock hold each).
const STEP: u64 = 1024;
/// Most payload bytes decoded per step, so a log of large sets is indexed in bounded memory.
const STEP_BYTES: usize = 8 * 1024 * 1024;
/// The first pause before a failed step is retried; it doubles up to [`RETRY_MAX`].
pub const RETRY_MIN: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest pause between retries of a failed step.
pub const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The corpus shared by the Match handler, and how far into the log it reaches.
#[derive(Clone)]
pub struct Matching {
    /// The corpus (many readers, the indexer writes).
    pub corpus: Arc<RwLock<Corpus>>,
    /// The number of log entries indexed so far.
    pub indexed: watch::Receiver<u64>,
}

/// Starts indexing `store` in the background. The task holds `tracked` until it ends, so that
/// the shutdown waits for it.
pub fn start(store: Store, health: HealthState, tracked: Listener) -> Matching {
    let corpus = Arc::new(RwLock::new(Corpus::new()));
    let (tx, rx) = watch::channel(0);
    let task_corpus = corpus.clone();
    tokio::spawn(async move {
        run(store, task_corpus, tx, health).await;
        drop(tracked);
    });
    Matching {
        corpus,
        indexed: rx,
    }
}

async fn run(
    store: Store,
    corpus: Arc<RwLock<Corpus>>,
    indexed: watch::Sender<u64>,
    health: HealthState,
) {
    let mut sizes = store.watch_size();
    let mut retry = RETRY_MIN;
    // Marks the indexer down, then waits before the step is tried again; false: stop.
    let failed = async |reason: String, retry: &mut std::time::Duration| {
        health.set_down(
            Component::Indexer,
            format!("the matching index stopped: {reason}"),
        );
        let pause = *retry;
        *retry = (*retry * 2).min(RETRY_MAX);
        tokio::select! {
            () = tokio::time::sleep(pause) => true,
            () = indexed.closed() => false,
        }
    };
    // At start-up PDQ hashes are only staged until the whole log is read, so the PDQ index
    // is built once instead of grown one insert at a time.
    let mut loading = true;
    loop {
        let target = *sizes.borrow_and_update();
        loop {
            // Nobody reads the corpus any more: stop, even in the middle of a long start-up load.
            if indexed.is_closed() {
                return;
            }
            let (s, c) = (store.clone(), corpus.clone());
            let commit_each = !loading;
            let step =
                tokio::task::spawn_blocking(move || index_step(&s, &c, target, commit_each)).await;
            match step {
                Ok(Ok(next)) if next >= target => {
                    if loading {
                        let corpus = corpus.clone();
                        let committed = tokio::task::spawn_blocking(move || {
                            corpus.write().map(|mut c| c.commit()).is_ok()
                        })
                        .await;
                        if !matches!(committed, Ok(true)) {
                            if failed("the index could not be built".into(), &mut retry).await {
                                continue;
                            }
                            return;
                        }
                        loading = false;
                    }
                    health.set_up(Component::Indexer);
                    retry = RETRY_MIN;
                    indexed.send_replace(next);
                    compact_if_needed(&corpus).await;
                    break;
                }
                Ok(Ok(next)) => {
                    health.set_up(Component::Indexer);
                    retry = RETRY_MIN;
                    if !loading {
                        indexed.send_replace(next);
                        compact_if_needed(&corpus).await;
                    }
                }
                Ok(Err(e)) => {
                    if !failed(e, &mut retry).await {
                        return;
                    }
                }
                Err(e) => {
                    if !failed(format!("its task failed: {e}"), &mut retry).await {
                        return;
                    }
                }
            }
        }
        // Stop with the server: once every `Matching` handle is gone nobody reads the corpus,
        // and the task must not keep the store (and its file lock) alive.
        tokio::select! {
            changed = sizes.changed() => if changed.is_err() { return },
            () = indexed.closed() => return,
        }
    }
}

/// Rebuilds the PDQ index when its insert buffer has outgrown it. The copy is built under a
/// read lock, so Match calls go on meanwhile; only the swap takes the write lock. Safe because
/// this task is the corpus's only writer.
async fn compact_if_needed(corpus: &Arc<RwLock<Corpus>>) {
    let corpus = corpus.clone();
    let done = tokio::task::spawn_blocking(move || {
        let fresh = {
            let guard = corpus.read().map_err(|e| e.to_string())?;
            if !guard.wants_compaction() {
                return Ok(());
            }
            guard.compacted_pdq()
        };
        corpus
            .write()
            .map_err(|e| e.to_string())?
            .install_pdq(fresh);
        Ok::<(), String>(())
    })
    .await;
    if !matches!(done, Ok(Ok(()))) {
        tracing::error!("rebuilding the PDQ index failed; matching continues on the old one");
    }
}

/// Indexes up to `STEP` entries from the corpus's position towards `target` and returns the
/// new position. Decoding happens outside the lock; only the index update holds it.
fn index_step(
    store: &Store,
    corpus: &RwLock<Corpus>,
    target: u64,
    commit: bool,
) -> Result<u64, String> {
    let from = corpus.read().map_err(|e| e.to_string())?.next_seq();
    let to = target.min(from.saturating_add(STEP));
    let mut decoded = Vec::new();
    let mut bytes = 0;
    for entry in store.entries(from, to) {
        if bytes >= STEP_BYTES {
            break;
        }
        let entry = entry.map_err(|e| e.to_string())?;
        bytes += entry
            .envelope
            .as_ref()
            .map_or(0, |e| e.payload.len() + e.body.len());
        let id = entry.id().map_err(|e| e.to_string())?;
        // Only verified statements were stored; a decode failure means a damaged store.
        let statement = entry
            .envelope
            .clone()
            .ok_or_else(|| "no envelope".to_owned())
            .and_then(|e| ParsedEnvelope::parse(e).map_err(|e| e.to_string()))
            .and_then(|p| p.statement.ok_or_else(|| "no body".to_owned()))
            .map_err(|e| format!("entry {} does not decode: {e}", entry.seq))?;
        decoded.push((entry, statement, id));
    }
    let mut guard = corpus.write().map_err(|e| e.to_string())?;
    for (entry, statement, id) in &decoded {
        guard
            .stage(entry, statement, *id)
            .map_err(|e| format!("entry {}: {e}", entry.seq))?;
    }
    if commit {
        guard.commit();
    }
    Ok(guard.next_seq())
}
