//! The operations listener: plain HTTP (loopback by default, no client certificate) with
//! `GET /metrics` (Prometheus text) and `GET /healthz` (`200 serving` or `503` with the
//! reason), for scrapers and orchestrators. Also installs the process's metrics recorder.
//!
//! Gauges that describe state (log size, checkpoint age, index lag, components down) are read
//! when scraped; counters and histograms are emitted where things happen, through the
//! `metrics` facade (a no-op when no recorder is installed: `--ops-listen off`).

use super::health::{Component, HealthState};
use crate::store::Store;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The default operations address: loopback only.
pub const DEFAULT_OPS_LISTEN: &str = "127.0.0.1:9477";
/// Requests the operations listener serves at once; more wait.
pub const MAX_OPS_REQUESTS: usize = 16;
/// How often histogram samples are folded into their buckets even if nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// Buckets of `grpc_server_handling_seconds` (seconds): 1 ms to 5 min.
const HANDLING_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The process's Prometheus recorder, installed on first use (with a thread that runs its
/// upkeep every 5 s, so histogram samples never pile up). `None` if another recorder was
/// installed first.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("grpc_server_handling_seconds".into()),
                    HANDLING_BUCKETS,
                )
                .ok()?;
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!("metrics recorder not installed: {e}");
                    return None;
                }
            };
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("metrics upkeep thread not started ({e}): upkeep runs at scrapes");
            }
            Some(handle)
        })
        .as_ref()
}

/// What the operations listener reads.
#[derive(Clone)]
pub struct OpsState {
    /// Where the hub's components report.
    pub health: HealthState,
    /// The log, for its size and the age of what no checkpoint covers yet.
    pub store: Store,
    /// How far the matching index reaches.
    pub indexed: watch::Receiver<u64>,
    /// The recorder's handle, rendered at `/metrics`.
    pub handle: &'static PrometheusHandle,
}

/// Serves `/metrics` and `/healthz` on `listener` until `until` completes.
pub async fn serve(
    listener: TcpListener,
    state: OpsState,
    until: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/healthz", axum::routing::get(healthz))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_OPS_REQUESTS,
        ))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(until)
        .await
}

async fn healthz(State(state): State<OpsState>) -> impl IntoResponse {
    let faults = state.health.faults();
    let code = if faults.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", state.health.summary()),
    )
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    let store = state.store.clone();
    let indexed = *state.indexed.borrow();
    let components = state.health.components();
    // Reads one entry from the store: off the async workers.
    let rendered = tokio::task::spawn_blocking(move || {
        record_state(&store, indexed, &components);
        state.handle.run_upkeep();
        state.handle.render()
    })
    .await;
    match rendered {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("rendering the metrics failed: {e}\n"),
        ),
    }
}

/// The state gauges, as of now.
fn record_state(store: &Store, indexed: u64, components: &[(Component, bool)]) {
    let size = store.log_size();
    metrics::gauge!("coalition_log_entries").set(size as f64);
    metrics::gauge!("coalition_index_lag_entries").set(size.saturating_sub(indexed) as f64);
    let checkpointed = (*store.watch_checkpoint().borrow()).unwrap_or(0);
    metrics::gauge!("coalition_checkpoint_entries").set(checkpointed as f64);
    // How long the oldest entry no checkpoint covers has waited (0: all covered).
    let age = match store.entry(checkpointed) {
        Ok(Some(entry)) if checkpointed < size => {
            (crate::store::now_ms() - entry.received_at_ms).max(0) as f64 / 1000.0
        }
        _ => 0.0,
    };
    metrics::gauge!("coalition_checkpoint_age_seconds").set(age);
    for (component, up) in components {
        metrics::gauge!("coalition_component_up", "component" => component.name()).set(if *up {
            1.0
        } else {
            0.0
        });
    }
    let serving = components.iter().all(|(_, up)| *up);
    metrics::gauge!("coalition_serving").set(if serving { 1.0 } else { 0.0 });
}
