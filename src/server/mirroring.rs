//! A mirror's follower task: rounds of `federation::Follower` against the upstream hub, as
//! long as the mirror serves. Caught up, it asks again every [`POLL`]; an unreachable upstream
//! is retried with a doubling back-off (at most [`MAX_BACKOFF`]); an upstream that served
//! something its log contradicts is not asked again until an operator restarts the mirror
//! (health "mirror" down, with the reason). The mirror serves what it has proven meanwhile.

use super::health::{Component, HealthState};
use super::shutdown::Listener;
use crate::federation::{FollowError, Follower, Round, Upstream};
use crate::store::Store;
use std::time::Duration;

/// How often a caught-up mirror asks its upstream for a newer checkpoint.
pub const POLL: Duration = Duration::from_millis(250);
/// The longest wait between attempts to reach an unavailable upstream.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Starts following `upstream` into `store` until the shutdown begins.
pub fn start(store: Store, upstream: Upstream, health: HealthState, mut stop: Listener) {
    tokio::spawn(async move {
        tokio::select! {
            () = follow(store, upstream, &health) => {}
            () = stop.begun() => {}
        }
    });
}

async fn follow(store: Store, upstream: Upstream, health: &HealthState) {
    let component = Component::Other("mirror");
    let addr = upstream.addr.clone();
    let mut follower = match Follower::new(store, upstream).await {
        Ok(f) => f,
        Err(e) => {
            health.set_down(component, format!("mirror of {addr} cannot start: {e}"));
            return;
        }
    };
    let mut backoff = POLL;
    loop {
        let round = follower.round().await;
        let status = follower.status().clone();
        metrics::gauge!("coalition_mirror_local_size").set(status.local_size as f64);
        metrics::gauge!("coalition_mirror_upstream_size").set(status.upstream_size as f64);
        metrics::gauge!("coalition_mirror_lag_entries")
            .set(status.upstream_size.saturating_sub(status.local_size) as f64);
        match round {
            Ok(Round::Copied(n)) => {
                tracing::debug!(entries = n, size = status.local_size, "mirror copied");
                health.set_up(component);
                backoff = POLL;
                continue;
            }
            Ok(Round::CaughtUp) | Ok(Round::Waiting) => {
                health.set_up(component);
                backoff = POLL;
                tokio::time::sleep(POLL).await;
            }
            Err(e @ FollowError::Refused { .. }) => {
                metrics::counter!("coalition_mirror_refusals_total").increment(1);
                tracing::error!(
                    "mirror stopped following: {e}; restart the mirror once the upstream is trusted again"
                );
                health.set_down(
                    component,
                    format!("stopped following, the upstream is not trusted: {e}"),
                );
                return;
            }
            Err(e) => {
                tracing::warn!(retry_in_ms = backoff.as_millis() as u64, "mirror: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
