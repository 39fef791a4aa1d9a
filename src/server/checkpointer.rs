//! Publishes signed checkpoints of the log: a background task that follows the durable log
//! size (`Store::watch_size`) and signs a new checkpoint when the log has grown by
//! `max_entries` since the last one, or has grown at all and `max_delay` has passed since the
//! last one; plus on demand (`refresh`). Every checkpoint is flushed to disk before anyone can
//! read it, and the store keeps the first checkpoint of each size forever.
//!
//! At shutdown it keeps answering until the last handle is gone (the `Audit` service, once
//! its calls in flight are answered), finishes a publication under way, and stops.
//! A failed publication marks it down in the hub's health until one succeeds.

use super::health::{Component, HealthState};
use super::shutdown::Listener;
use crate::log::{CheckpointError, CheckpointSigner, TreeSize};
use crate::store::{PublishedCheckpoint, Store, StoreError};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// When the hub publishes checkpoints of its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Publish as soon as the log has grown by this many entries since the last checkpoint.
    pub max_entries: u64,
    /// Publish when the log has grown and this long has passed since the last checkpoint.
    pub max_delay: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            max_entries: 1000,
            max_delay: Duration::from_secs(1),
        }
    }
}

/// Why a checkpoint could not be published.
#[derive(Debug, Error)]
pub enum PublishError {
    /// Reading the root or storing the checkpoint failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed (the signer was validated at start-up, so this is a bug).
    #[error("signing the checkpoint failed: {0}")]
    Sign(#[from] CheckpointError),
    /// The publishing task is gone (the hub is shutting down, or it failed).
    #[error("the checkpoint publisher is not running")]
    Stopped,
}

type Reply = oneshot::Sender<Result<PublishedCheckpoint, String>>;

/// A handle on the publishing task. When every handle is gone, the task ends.
#[derive(Clone)]
pub struct Checkpointer {
    requests: mpsc::Sender<Reply>,
}

impl Checkpointer {
    /// Starts publishing checkpoints of `store`, signed by `signer`, under `policy`. At start
    /// it publishes at once if the log has no checkpoint yet or has grown past the latest.
    /// The task holds `tracked` until it ends, so that the shutdown waits for it (it does not
    /// stop when the shutdown begins: calls in flight may still ask for a checkpoint).
    pub fn start(
        store: Store,
        signer: CheckpointSigner,
        policy: CheckpointPolicy,
        health: HealthState,
        tracked: Listener,
    ) -> Self {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            run(store, signer, policy, rx, health).await;
            drop(tracked);
        });
        Checkpointer { requests: tx }
    }

    /// The latest checkpoint, after publishing a new one if the log grew since the last.
    /// Concurrent calls share one publication.
    pub async fn refresh(&self) -> Result<PublishedCheckpoint, PublishError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| PublishError::Stopped)?;
        answer
            .await
            .map_err(|_| PublishError::Stopped)?
            .map_err(|e| PublishError::Store(StoreError::Unavailable(e)))
    }
}

async fn run(
    store: Store,
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
    mut requests: mpsc::Receiver<Reply>,
    health: HealthState,
) {
    let down = |reason: String| {
        health.set_down(
            Component::Checkpointer,
            format!("publishing a checkpoint failed: {reason}"),
        )
    };
    let mut sizes = store.watch_size();
    let mut latest = {
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.latest_checkpoint()).await {
            Ok(Ok(latest)) => latest,
            Ok(Err(e)) => {
                down(format!(
                    "the latest checkpoint cannot be read, restart the hub: {e}"
                ));
                return;
            }
            Err(e) => {
                down(format!("the task failed, restart the hub: {e}"));
                return;
            }
        }
    };
    // The last publication attempt; a failed one is retried after `max_delay`.
    let mut last_attempt: Option<Instant> = None;
    let mut failed = false;
    loop {
        let size = *sizes.borrow_and_update();
        let published = latest.as_ref().map(|c| c.size);
        let behind = published.is_none_or(|p| size > p);
        let deadline = last_attempt.map(|t| t + policy.max_delay);
        if behind {
            let grown = size - published.unwrap_or(0);
            let waited = deadline.is_none_or(|d| Instant::now() >= d);
            // After a failure, wait `max_delay` before trying again whatever the growth.
            let due = waited || (!failed && (published.is_none() || grown >= policy.max_entries));
            if due {
                last_attempt = Some(Instant::now());
                match publish(&store, &signer).await {
                    Ok(cp) => {
                        latest = Some(cp);
                        failed = false;
                        health.set_up(Component::Checkpointer);
                    }
                    Err(e) => {
                        down(e.to_string());
                        failed = true;
                    }
                }
                continue;
            }
        }
        let sleep_until = deadline.unwrap_or_else(Instant::now);
        tokio::select! {
            request = requests.recv() => {
                let Some(first) = request else { return };
                // Answer every waiting request with one publication.
                let mut waiting = vec![first];
                while let Ok(more) = requests.try_recv() {
                    waiting.push(more);
                }
                let size = store.log_size();
                let outcome = if latest.as_ref().is_none_or(|c| size > c.size) {
                    last_attempt = Some(Instant::now());
                    let outcome = publish(&store, &signer).await;
                    failed = outcome.is_err();
                    match &outcome {
                        Ok(cp) => {
                            latest = Some(cp.clone());
                            health.set_up(Component::Checkpointer);
                        }
                        Err(e) => down(e.to_string()),
                    }
                    outcome
                } else {
                    latest.clone().ok_or(PublishError::Stopped)
                };
                let outcome = outcome.map_err(|e| e.to_string());
                for reply in waiting {
                    let _ = reply.send(outcome.clone());
                }
            }
            changed = sizes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(sleep_until), if behind => {}
        }
    }
}

/// Signs the current durable log size and stores the checkpoint (flushed).
async fn publish(
    store: &Store,
    signer: &CheckpointSigner,
) -> Result<PublishedCheckpoint, PublishError> {
    let (store, signer) = (store.clone(), signer.clone());
    tokio::task::spawn_blocking(move || {
        let size = store.log_size();
        let root = store.root(size)?;
        let signed = signer.sign(TreeSize(size), root)?;
        let published = store.put_checkpoint(&signed)?;
        tracing::debug!(size, root = %root, "checkpoint published");
        Ok(published)
    })
    .await
    .map_err(|_| PublishError::Stopped)?
}
