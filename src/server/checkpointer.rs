//! Publishes signed checkpoints of the log: a background task that follows the durable log
//! size (`Store::watch_size`) and signs a new checkpoint when the log has grown by
//! `max_entries` since the last one, or has grown at all and `max_delay` has passed since the
//! last one; plus on demand (`refresh`). Every checkpoint is flushed to disk before anyone can
//! read it, and the store keeps the first checkpoint of each size forever.
//!
//! Each checkpoint is signed with the hub key the replayed log assigns to its size (the
//! genesis key, then the key each rotation names for sizes above its position), chosen from
//! the keys the hub holds; one it does not hold is never replaced by another: the error is
//! logged and no checkpoint is published until the hub restarts with that key. When a
//! rotation was logged since the last checkpoint, the checkpoint of the log up to the
//! rotation is published first (under the old key, if held), so members and auditors always
//! find a checkpoint the key they know verifies.
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
    /// The log assigns the checkpoint to a hub key this hub does not hold.
    #[error(
        "the log names hub key {key} (rotated in at entry {from_seq}) for a checkpoint of {size} entries, and this hub does not hold it: restart `coalition serve` with --hub-key FILE of that key; no checkpoints are published until then"
    )]
    KeyNotHeld {
        /// The key needed (hex of the public key).
        key: String,
        /// Where the log named it.
        from_seq: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The publishing task is gone (the hub is shutting down, or it failed).
    #[error("the checkpoint publisher is not running")]
    Stopped,
}

/// An on-demand publication's answer: a missing hub key travels as such (the caller's status
/// names it), any other failure as its text.
type Reply = oneshot::Sender<Result<PublishedCheckpoint, Result<PublishError, String>>>;

/// A handle on the publishing task. When every handle is gone, the task ends.
#[derive(Clone)]
pub struct Checkpointer {
    publisher: Publisher,
}

#[derive(Clone)]
enum Publisher {
    /// The publishing task's inbox.
    Signing(mpsc::Sender<Reply>),
    /// A mirror publishes nothing: the latest checkpoint copied from its upstream.
    Copying(Store),
}

impl Checkpointer {
    /// Starts publishing checkpoints of `store`, signed by whichever of `signers` the log
    /// assigns to each size (the current hub key, and the next one if given), under `policy`. At start
    /// it publishes at once if the log has no checkpoint yet or has grown past the latest.
    /// The task holds `tracked` until it ends, so that the shutdown waits for it (it does not
    /// stop when the shutdown begins: calls in flight may still ask for a checkpoint).
    pub fn start(
        store: Store,
        signers: Vec<CheckpointSigner>,
        policy: CheckpointPolicy,
        health: HealthState,
        tracked: Listener,
    ) -> Self {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            run(store, signers, policy, rx, health).await;
            drop(tracked);
        });
        Checkpointer {
            publisher: Publisher::Signing(tx),
        }
    }

    /// A mirror's: `refresh` answers the latest checkpoint copied into `store` (the mirror's
    /// log never runs ahead of its upstream's checkpoints for long: see `federation`).
    pub fn copying(store: Store) -> Self {
        Checkpointer {
            publisher: Publisher::Copying(store),
        }
    }

    /// The latest checkpoint, after publishing a new one if the log grew since the last.
    /// Concurrent calls share one publication.
    pub async fn refresh(&self) -> Result<PublishedCheckpoint, PublishError> {
        let requests = match &self.publisher {
            Publisher::Signing(requests) => requests,
            Publisher::Copying(store) => {
                let store = store.clone();
                return tokio::task::spawn_blocking(move || store.latest_checkpoint())
                    .await
                    .map_err(|_| PublishError::Stopped)??
                    .ok_or_else(|| {
                        PublishError::Store(StoreError::Unavailable(
                            "this mirror has copied no checkpoint of its upstream yet".into(),
                        ))
                    });
            }
        };
        let (reply, answer) = oneshot::channel();
        requests
            .send(reply)
            .await
            .map_err(|_| PublishError::Stopped)?;
        answer
            .await
            .map_err(|_| PublishError::Stopped)?
            .map_err(|e| e.unwrap_or_else(|e| PublishError::Store(StoreError::Unavailable(e))))
    }
}

async fn run(
    store: Store,
    signer: Vec<CheckpointSigner>,
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
                        if matches!(e, PublishError::KeyNotHeld { .. }) {
                            metrics::counter!("coalition_checkpoint_key_missing_total")
                                .increment(1);
                        }
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
                for reply in waiting {
                    let answer = match &outcome {
                        Ok(cp) => Ok(cp.clone()),
                        Err(PublishError::KeyNotHeld { key, from_seq, size }) => {
                            Err(Ok(PublishError::KeyNotHeld {
                                key: key.clone(),
                                from_seq: *from_seq,
                                size: *size,
                            }))
                        }
                        Err(e) => Err(Err(e.to_string())),
                    };
                    let _ = reply.send(answer);
                }
            }
            changed = sizes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(sleep_until), if behind => {}
        }
    }
}

/// Signs the current durable log size and stores the checkpoint (flushed); first, the size
/// of each hub key rotation logged since the latest checkpoint (under the key it retired).
async fn publish(
    store: &Store,
    signers: &[CheckpointSigner],
) -> Result<PublishedCheckpoint, PublishError> {
    let (store, signers) = (store.clone(), signers.to_vec());
    tokio::task::spawn_blocking(move || {
        // Size first: the writer publishes the registry before the size, so the registry read
        // after covers every entry of `size`.
        let size = store.log_size();
        let registry = store.registry();
        let latest = store.latest_checkpoint()?.map_or(0, |c| c.size);
        let settings = registry
            .coalition()
            .map(|c| c.settings.clone())
            .unwrap_or_default();
        for boundary in settings
            .hub_keys
            .iter()
            .map(|p| p.from_seq)
            .filter(|s| *s > latest && *s < size)
        {
            // Best effort: without the retired key the boundary is skipped.
            if let Ok(signed) = sign(&store, &signers, &settings, boundary) {
                store.put_checkpoint(&signed)?;
            }
        }
        let signed = sign(&store, &signers, &settings, size)?;
        let published = store.put_checkpoint(&signed)?;
        tracing::debug!(size, root = %published.root, "checkpoint published");
        Ok(published)
    })
    .await
    .map_err(|_| PublishError::Stopped)?
}

/// A checkpoint of `size` entries signed with the key the log assigns to that size.
fn sign(
    store: &Store,
    signers: &[CheckpointSigner],
    settings: &crate::settings::Settings,
    size: u64,
) -> Result<crate::log::SignedCheckpoint, PublishError> {
    let needed = settings.hub_key_for(size);
    let signer = match needed {
        None => signers.first(),
        Some(p) => signers
            .iter()
            .find(|s| s.verifier_key().verifying_key() == &p.key),
    };
    let Some(signer) = signer else {
        let p = needed.copied();
        return Err(PublishError::KeyNotHeld {
            key: p.map(|p| hex::encode(p.key.as_bytes())).unwrap_or_default(),
            from_seq: p.map_or(0, |p| p.from_seq),
            size,
        });
    };
    let root = store.root(size)?;
    Ok(signer.sign(TreeSize(size), root)?)
}
