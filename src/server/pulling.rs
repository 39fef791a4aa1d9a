//! The pulling tasks of a hub: a mirror's follower of its upstream (`federation::Follower`)
//! and one relay per peer hub (`federation::Puller`), each in rounds for as long as the hub
//! serves. Caught up, a puller asks again every [`POLL`]; an unreachable hub is retried with
//! a doubling back-off (at most [`MAX_BACKOFF`]); a hub that served something its own log
//! contradicts is not asked again until an operator restarts this hub — health `mirror` down
//! (the mirror serves what it proved) or `federation` down, naming the peer (the hub serves
//! its own members and the other peers meanwhile).

use super::health::{Component, HealthState};
use super::shutdown::Listener;
use crate::federation::{FollowError, Follower, Peer, PeerStatus, Puller, Round, Upstream};
use crate::store::Store;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a caught-up puller asks its hub for a newer checkpoint.
pub const POLL: Duration = Duration::from_millis(250);
/// The longest wait between attempts to reach an unavailable hub.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One kind of puller, as the loop drives it.
trait Pulling: Send + 'static {
    /// One round.
    fn round(&mut self) -> impl Future<Output = Result<Round, FollowError>> + Send;
    /// After each round: metrics.
    fn observe(&self);
    /// Health after a round that worked.
    fn up(&self);
    /// Health after a refusal: the loop stops.
    fn refused(&self, error: &FollowError);
    /// For logs.
    fn name(&self) -> String;
}

/// Rounds until a refusal (or forever; the caller drops it at shutdown).
async fn keep_pulling(mut p: impl Pulling) {
    let mut backoff = POLL;
    loop {
        let round = p.round().await;
        p.observe();
        match round {
            Ok(Round::Copied(n)) => {
                tracing::debug!(entries = n, "{} pulled", p.name());
                p.up();
                backoff = POLL;
            }
            Ok(Round::CaughtUp) | Ok(Round::Waiting) => {
                p.up();
                backoff = POLL;
                tokio::time::sleep(POLL).await;
            }
            Err(e @ FollowError::Refused { .. }) => {
                tracing::error!(
                    "{} stopped: {e}; restart this hub once that hub is trusted again",
                    p.name()
                );
                p.refused(&e);
                return;
            }
            Err(e) => {
                tracing::warn!(
                    retry_in_ms = backoff.as_millis() as u64,
                    "{}: {e}",
                    p.name()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn spawn_until_stop(task: impl Future<Output = ()> + Send + 'static, mut stop: Listener) {
    tokio::spawn(async move {
        tokio::select! {
            () = task => {}
            () = stop.begun() => {}
        }
    });
}

/// Starts following `upstream` into `store` (a mirror) until the shutdown begins.
pub fn start_mirror(store: Store, upstream: Upstream, health: HealthState, stop: Listener) {
    let task = async move {
        let addr = upstream.addr.clone();
        match Follower::new(store, upstream).await {
            Ok(follower) => keep_pulling(Mirror { follower, health }).await,
            Err(e) => health.set_down(
                Component::Other("mirror"),
                format!("mirror of {addr} cannot start: {e}"),
            ),
        }
    };
    spawn_until_stop(task, stop);
}

struct Mirror {
    follower: Follower,
    health: HealthState,
}

impl Pulling for Mirror {
    fn round(&mut self) -> impl Future<Output = Result<Round, FollowError>> + Send {
        self.follower.round()
    }
    fn observe(&self) {
        let status = self.follower.status();
        metrics::gauge!("coalition_mirror_local_size").set(status.local_size as f64);
        metrics::gauge!("coalition_mirror_upstream_size").set(status.upstream_size as f64);
        metrics::gauge!("coalition_mirror_lag_entries")
            .set(status.upstream_size.saturating_sub(status.local_size) as f64);
    }
    fn up(&self) {
        self.health.set_up(Component::Other("mirror"));
    }
    fn refused(&self, error: &FollowError) {
        metrics::counter!("coalition_mirror_refusals_total").increment(1);
        self.health.set_down(
            Component::Other("mirror"),
            format!("stopped following, the upstream is not trusted: {error}"),
        );
    }
    fn name(&self) -> String {
        format!("mirror of {}", self.follower.addr())
    }
}

/// What `coalition federation status` reads: each peer's status, by address.
pub type PeerStatuses = Arc<Mutex<BTreeMap<String, (PeerStatus, Option<String>)>>>;

/// Starts relaying each of `peers` into `store` until the shutdown begins; `statuses` is kept
/// up to date (with the refusal that stopped a peer, if one did).
pub fn start_peers(
    store: Store,
    peers: &[Peer],
    health: HealthState,
    statuses: PeerStatuses,
    stop: Listener,
) {
    for peer in peers {
        let relay = Relay {
            puller: Puller::new(store.clone(), peer.clone()),
            health: health.clone(),
            statuses: statuses.clone(),
        };
        spawn_until_stop(keep_pulling(relay), stop.clone());
    }
}

struct Relay {
    puller: Puller,
    health: HealthState,
    statuses: PeerStatuses,
}

impl Relay {
    fn record(&self, refusal: Option<String>) {
        let addr = self.puller.peer().addr.clone();
        let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        let kept = statuses.get(&addr).and_then(|(_, r)| r.clone());
        statuses.insert(addr, (self.puller.status().clone(), refusal.or(kept)));
        let refused: Vec<String> = statuses
            .iter()
            .filter_map(|(addr, (_, r))| r.as_ref().map(|r| format!("peer {addr}: {r}")))
            .collect();
        drop(statuses);
        if refused.is_empty() {
            self.health.set_up(Component::Federation);
        } else {
            self.health
                .set_down(Component::Federation, refused.join("; "));
        }
    }
}

impl Pulling for Relay {
    fn round(&mut self) -> impl Future<Output = Result<Round, FollowError>> + Send {
        self.puller.round()
    }
    fn observe(&self) {
        let status = self.puller.status();
        let peer = self.puller.peer().addr.clone();
        metrics::gauge!("coalition_peer_relayed_to", "peer" => peer.clone())
            .set(status.relayed_to as f64);
        metrics::gauge!("coalition_peer_lag_entries", "peer" => peer)
            .set(status.peer_size.saturating_sub(status.relayed_to) as f64);
    }
    fn up(&self) {
        self.record(None);
    }
    fn refused(&self, error: &FollowError) {
        let peer = self.puller.peer().addr.clone();
        metrics::counter!("coalition_peer_refusals_total", "peer" => peer).increment(1);
        self.record(Some(error.to_string()));
    }
    fn name(&self) -> String {
        format!("relay of peer {}", self.puller.peer().addr)
    }
}
