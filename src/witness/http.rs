//! The witness's HTTP API, c2sp.org/tlog-witness: `POST /add-checkpoint` (200 with the
//! cosignature line, or the spec's 400/403/404/409/422) and `GET /<origin hash>/checkpoint`
//! (the latest cosigned checkpoint, for monitors; 404 if none). The submission and monitoring
//! prefixes are both the root.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections (more wait in the kernel's accept queue),
//! request headers within [`HEADER_TIMEOUT`], request bodies at most
//! [`MAX_REQUEST_BYTES`](super::MAX_REQUEST_BYTES) (413 above), one `add-checkpoint` decided at
//! a time (the state is checked and recorded atomically).
//!
//! Metrics: `coalition_witness_requests_total{outcome}` (`cosigned`, `bad_request`,
//! `forbidden`, `unknown_origin`, `conflict`, `inconsistent`, `error`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::cosigning::{Witness, WitnessError};
use super::{MAX_REQUEST_BYTES, Refusal, SIZE_CONTENT_TYPE};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 256;

/// Time a client has to send a request's headers (and, between requests on a kept-alive
/// connection, the next one's).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The routes, over a shared witness.
pub fn router(witness: Arc<Witness>) -> axum::Router {
    axum::Router::new()
        .route("/add-checkpoint", axum::routing::post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", axum::routing::get(checkpoint))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(witness)
}

/// Serves `witness` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    witness: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let app = router(witness);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            permit = slots.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
        };
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "witness: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "witness: connection ended with an error");
            }
            drop(permit);
        });
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs())
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let outcome =
        tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now_seconds())).await;
    let (label, response) = match outcome {
        Ok(Ok(line)) => (
            "cosigned",
            text(StatusCode::OK, "text/plain; charset=utf-8", line),
        ),
        Ok(Err(WitnessError::Refused(refusal))) => {
            let label = match &refusal {
                Refusal::BadRequest(_) => "bad_request",
                Refusal::Forbidden(_) => "forbidden",
                Refusal::UnknownOrigin(_) => "unknown_origin",
                Refusal::Conflict { .. } => "conflict",
                Refusal::Inconsistent(_) => "inconsistent",
            };
            if matches!(refusal, Refusal::Inconsistent(_)) {
                // Possible evidence of a log showing two histories: keep it in the log.
                tracing::warn!(reason = %refusal, "witness: refused an inconsistent checkpoint");
            }
            let status =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let response = match refusal {
                Refusal::Conflict { latest, .. } => {
                    text(status, SIZE_CONTENT_TYPE, format!("{latest}\n"))
                }
                other => text(
                    status,
                    "text/plain; charset=utf-8",
                    format!("{}\n", crate::text::escape_control(&other.to_string())),
                ),
            };
            (label, response)
        }
        Ok(Err(WitnessError::Store(e))) => {
            tracing::error!(error = %e, "witness: state unavailable; nothing cosigned");
            (
                "error",
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "the witness could not record its state; nothing was cosigned\n".to_owned(),
                ),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "witness: request task failed");
            ("error", StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    };
    metrics::counter!("coalition_witness_requests_total", "outcome" => label).increment(1);
    response
}

async fn checkpoint(
    State(witness): State<Arc<Witness>>,
    Path(origin_hash): Path<String>,
) -> Response {
    let found = tokio::task::spawn_blocking(move || witness.latest_note(&origin_hash)).await;
    match found {
        Ok(Ok(Some(note))) => text(StatusCode::OK, "text/plain; charset=utf-8", note),
        Ok(Ok(None)) => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "this witness has cosigned no checkpoint of that log\n".to_owned(),
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "witness: state unavailable");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
