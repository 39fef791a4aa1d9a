//! The TAXII 2.1 read API over HTTPS (docs/PROTOCOL.md §8), on its own port
//! (`coalition serve --taxii-listen ADDR`): HTTP/1.1 over the hub's mutual TLS (the same CA,
//! CRL and certificate checks as gRPC), every request authorized as a Sync is (`auth::authorize`
//! with the reader roles), the objects read by `taxii::feed` under the same read rule.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections (more wait in the kernel's accept queue),
//! each TLS handshake within [`HANDSHAKE_TIMEOUT`], request headers within [`HEADER_TIMEOUT`]
//! and at most [`MAX_HEADER_BYTES`], pages of at most `taxii::MAX_PAGE_OBJECTS` objects from at
//! most `taxii::MAX_SCAN_ENTRIES` log entries. Only GET is served; request bodies are never read.
//!
//! What a member reads here counts against its sync-bytes quota (the coalition settings'
//! quotas, one ledger with gRPC: `quota::Quota::taxii_answer`), refused with 429 and
//! `Retry-After`; each collection read is an access-log record (`Taxii`: objects and bytes).
//!
//! Metrics: `coalition_taxii_requests_total{status}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tonic::Code;

use super::access;
use super::auth::{self, CertIds, Policy};
use super::quota::Quota;
use super::shutdown::Listener;
use super::tls::HubTls;
use crate::membership::Member;
use crate::statement::Reader;
use crate::store::{Store, now_ms};
use crate::taxii::feed::{self, Page};
use crate::taxii::{
    self, API_ROOT, Collection, Query, STIX_MEDIA_TYPE, TAXII_MEDIA_TYPE, TaxiiError, Versions,
};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers (and, between requests on a kept-alive
/// connection, the next one's).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of a request's line and headers.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Who may read the collections: the roles that may Sync.
const POLICY: Policy = Policy {
    roles: auth::READERS,
    action: "read TAXII collections",
    max_request_bytes: MAX_HEADER_BYTES,
};

/// What every connection shares.
#[derive(Clone)]
pub struct TaxiiState {
    store: Store,
    tls: HubTls,
    ids: Arc<CertIds>,
    quota: Quota,
}

impl TaxiiState {
    /// The API over `store`, authenticating with `tls`, charging reads to `quota` (the one
    /// the gRPC service charges).
    pub fn new(store: Store, tls: HubTls, quota: Quota) -> Self {
        TaxiiState {
            store,
            tls,
            ids: Arc::new(CertIds::new(MAX_CONNECTIONS)),
            quota,
        }
    }
}

type Chain = Arc<Vec<CertificateDer<'static>>>;

/// Serves the API on `listener` until `shutdown` begins; open connections are then closed
/// after the request in progress.
pub async fn serve(
    listener: TcpListener,
    state: TaxiiState,
    shutdown: Listener,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut begun = shutdown.clone();
    loop {
        let permit = tokio::select! {
            () = begun.begun() => return Ok(()),
            permit = slots.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
        };
        let (tcp, peer): (TcpStream, SocketAddr) = tokio::select! {
            () = begun.begun() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "taxii: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (state, shutdown) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection(tcp, peer, state, shutdown).await;
            drop(permit);
        });
    }
}

/// One connection: the TLS handshake (the hub's configuration, offering HTTP/1.1), then its
/// requests.
async fn connection(tcp: TcpStream, peer: SocketAddr, state: TaxiiState, mut shutdown: Listener) {
    let _ = tcp.set_nodelay(true);
    let mut config = (*state.tls.server_config()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "taxii: TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "taxii: TLS handshake timed out");
            return;
        }
    };
    let chain: Option<Chain> = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|certs| Arc::new(certs.iter().map(|c| c.clone().into_owned()).collect()));
    let local = stream.get_ref().0.local_addr().ok();
    let service = hyper::service::service_fn(move |request| {
        let (state, chain) = (state.clone(), chain.clone());
        async move { Ok::<_, Infallible>(handle(&state, chain.as_ref(), local, request).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = shutdown.begun() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "taxii: connection ended with an error");
    }
}

type Answer = Response<Full<Bytes>>;

/// Answers one request.
async fn handle(
    state: &TaxiiState,
    chain: Option<&Chain>,
    local: Option<SocketAddr>,
    request: Request<Incoming>,
) -> Answer {
    let answer = match route(state, chain, local, &request).await {
        Ok(answer) => answer,
        Err(e) => refusal(&e),
    };
    metrics::counter!("coalition_taxii_requests_total", "status" => answer.status().as_str().to_owned())
        .increment(1);
    answer
}

async fn route(
    state: &TaxiiState,
    chain: Option<&Chain>,
    local: Option<SocketAddr>,
    request: &Request<Incoming>,
) -> Result<Answer, TaxiiError> {
    if request.method() != Method::GET {
        return Err(TaxiiError::new(
            405,
            "Method not allowed",
            "this TAXII server is read-only: only GET is served",
        ));
    }
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    if !taxii::accepts_taxii(accept) {
        return Err(TaxiiError::new(
            406,
            "Not acceptable",
            format!("this server answers {TAXII_MEDIA_TYPE} only: send Accept: {TAXII_MEDIA_TYPE}"),
        ));
    }
    let member = auth::authorize(&state.store, &state.tls, &state.ids, chain, &POLICY).map_err(
        |status| {
            let (code, title) = match status.code() {
                Code::Unauthenticated => (401, "Unauthorized"),
                Code::Unavailable => (503, "Unavailable"),
                Code::Internal => (500, "Internal error"),
                _ => (403, "Forbidden"),
            };
            TaxiiError::new(code, title, status.message())
        },
    )?;
    let reader = Reader::of(&member);
    let started = now_ms();
    let registry = state.store.registry();
    let coalition = registry
        .coalition()
        .ok_or_else(|| TaxiiError::new(500, "Internal error", "this hub has no genesis"))?;
    let genesis = coalition.genesis_id;
    let path = request.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let collection = |id: &str| {
        Collection::by_id(&genesis, id).ok_or_else(|| {
            TaxiiError::not_found(format!(
                "no collection {:?} in this API root; list them at /{API_ROOT}/collections/",
                crate::text::escape_control(id)
            ))
        })
    };
    let query = || taxii::parse_query(request.uri().query());
    match segments.as_slice() {
        ["taxii2"] => {
            let root = api_root_url(request, local);
            Ok(json_answer(
                json!({
                    "title": format!("Coalition Hub {}", coalition.hub_name),
                    "description": "The hub's hash sets and risk signals as STIX 2.1 indicators (read-only).",
                    "default": root,
                    "api_roots": [root],
                }),
                None,
            ))
        }
        [API_ROOT] => Ok(json_answer(
            json!({
                "title": coalition.hub_name,
                "description": "The coalition's shared hash sets and risk signals.",
                "versions": [TAXII_MEDIA_TYPE],
                "max_content_length": MAX_HEADER_BYTES,
            }),
            None,
        )),
        [API_ROOT, "collections"] => Ok(json_answer(
            json!({
                "collections": Collection::ALL.iter().map(|c| c.resource(&genesis)).collect::<Vec<_>>(),
            }),
            None,
        )),
        [API_ROOT, "collections", id] => Ok(json_answer(collection(id)?.resource(&genesis), None)),
        [API_ROOT, "collections", id, "objects"] => {
            let (c, q) = (collection(id)?, query()?);
            let page = read(state, &member, c, reader, q, false).await?;
            counted(state, &member, started, page, objects)
        }
        [API_ROOT, "collections", id, "manifest"] => {
            let (c, q) = (collection(id)?, query()?);
            let page = read(state, &member, c, reader, q, false).await?;
            counted(state, &member, started, page, manifest)
        }
        [API_ROOT, "collections", id, "objects", object] => {
            let (c, mut q) = (collection(id)?, query()?);
            q.ids = vec![(*object).to_owned()];
            let page = read(state, &member, c, reader, q, true).await?;
            if page.objects.is_empty() {
                return Err(object_not_found(object));
            }
            counted(state, &member, started, page, objects)
        }
        [API_ROOT, "collections", id, "objects", object, "versions"] => {
            let (c, mut q) = (collection(id)?, query()?);
            q.ids = vec![(*object).to_owned()];
            q.versions = Versions::All;
            let page = read(state, &member, c, reader, q, true).await?;
            if page.objects.is_empty() {
                return Err(object_not_found(object));
            }
            counted(state, &member, started, page, versions)
        }
        _ => Err(TaxiiError::not_found(format!(
            "no TAXII resource at {:?}: discovery is /taxii2/, the API root /{API_ROOT}/",
            crate::text::escape_control(path)
        ))),
    }
}

/// `page` answered as `shape` (objects, manifest or versions): its bytes are charged to
/// `member`'s sync-bytes quota (429 if they do not fit: nothing is sent) and the answer is
/// recorded in the access log.
fn counted(
    state: &TaxiiState,
    member: &Member,
    started_at_ms: i64,
    page: Page,
    shape: fn(Page) -> Answer,
) -> Result<Answer, TaxiiError> {
    let count = page.objects.len() as u64;
    let answer = shape(page);
    let bytes = hyper::body::Body::size_hint(answer.body())
        .exact()
        .unwrap_or_default();
    state
        .quota
        .taxii_answer(&member.id, bytes)
        .map_err(quota_refusal)?;
    access::taxii_answered(&state.store, member.id.clone(), started_at_ms, count, bytes);
    Ok(answer)
}

/// A quota refusal (RESOURCE_EXHAUSTED with `retry-after`) as TAXII's 429; anything else the
/// ledger says is a 500.
fn quota_refusal(status: tonic::Status) -> TaxiiError {
    if status.code() != Code::ResourceExhausted {
        return TaxiiError::new(500, "Internal error", status.message());
    }
    let retry = status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    TaxiiError::too_many_requests(status.message(), retry)
}

fn object_not_found(object: &str) -> TaxiiError {
    TaxiiError::not_found(format!(
        "no object {:?} in this collection that you may read",
        crate::text::escape_control(object)
    ))
}

/// Reads a page for `member` off the async workers (`find`: over the whole log, for lookups by
/// id); refused with 429 first if `member`'s sync bytes are used up.
async fn read(
    state: &TaxiiState,
    member: &Member,
    collection: Collection,
    reader: Reader,
    query: Query,
    find: bool,
) -> Result<Page, TaxiiError> {
    state
        .quota
        .taxii_answer(&member.id, 0)
        .map_err(quota_refusal)?;
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let now = now_ms();
        if find {
            feed::find(&store, collection, &reader, &query, now)
        } else {
            feed::page(&store, collection, &reader, &query, now)
        }
    })
    .await
    .map_err(|e| {
        TaxiiError::new(
            500,
            "Internal error",
            format!("the page reader failed: {e}"),
        )
    })?
}

/// The API root's URL as the client reached it (its `Host` header if well formed).
fn api_root_url(request: &Request<Incoming>, local: Option<SocketAddr>) -> String {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(str::to_owned)
        .or_else(|| local.map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("https://{host}/{API_ROOT}/")
}

fn envelope_headers(page: &Page) -> Option<(i64, i64)> {
    let first = page.objects.iter().map(|o| o.date_added_ms).min()?;
    let last = page.objects.iter().map(|o| o.date_added_ms).max()?;
    Some((first, last))
}

fn paging(page: &Page, body: &mut serde_json::Map<String, Value>) {
    body.insert("more".into(), page.more.into());
    if let Some(next) = page.next.filter(|_| page.more) {
        body.insert("next".into(), next.to_string().into());
    }
}

fn objects(page: Page) -> Answer {
    let dates = envelope_headers(&page);
    let mut body = serde_json::Map::new();
    paging(&page, &mut body);
    if !page.objects.is_empty() {
        body.insert(
            "objects".into(),
            Value::Array(page.objects.into_iter().map(|o| o.object).collect()),
        );
    }
    json_answer(Value::Object(body), dates)
}

fn manifest(page: Page) -> Answer {
    let dates = envelope_headers(&page);
    let mut body = serde_json::Map::new();
    paging(&page, &mut body);
    if !page.objects.is_empty() {
        let records: Vec<Value> = page
            .objects
            .iter()
            .map(|o| {
                json!({
                    "id": o.id,
                    "date_added": taxii::timestamp(o.date_added_ms),
                    "version": taxii::timestamp(o.version_ms),
                    "media_type": STIX_MEDIA_TYPE,
                })
            })
            .collect();
        body.insert("objects".into(), Value::Array(records));
    }
    json_answer(Value::Object(body), dates)
}

fn versions(page: Page) -> Answer {
    let dates = envelope_headers(&page);
    let mut body = serde_json::Map::new();
    paging(&page, &mut body);
    let list: Vec<Value> = page
        .objects
        .iter()
        .map(|o| taxii::timestamp(o.version_ms).into())
        .collect();
    body.insert("versions".into(), Value::Array(list));
    json_answer(Value::Object(body), dates)
}

fn json_answer(body: Value, dates: Option<(i64, i64)>) -> Answer {
    answer(StatusCode::OK, &body, dates)
}

fn refusal(e: &TaxiiError) -> Answer {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(reason = %e, "taxii: request failed");
    }
    let mut response = answer(status, &e.to_json(), None);
    if let Some(secs) = e.retry_after_s {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn answer(status: StatusCode, body: &Value, dates: Option<(i64, i64)>) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TAXII_MEDIA_TYPE),
    );
    if let Some((first, last)) = dates {
        for (name, at) in [
            ("x-taxii-date-added-first", first),
            ("x-taxii-date-added-last", last),
        ] {
            if let Ok(v) = HeaderValue::from_str(&taxii::timestamp(at)) {
                headers.insert(name, v);
            }
        }
    }
    response
}
