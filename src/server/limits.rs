//! The hub's resource limits, enforced before memory is spent on a caller.
//!
//! [`Gate`] is a tower layer in front of every service. It runs on the request *head* (method
//! path and the connection's client certificate), before tonic decodes a body:
//! 1. the CRL must not be outdated past its grace period (fail closed, `tls::CrlHealth`);
//! 2. the caller must be authorized for the method ([`auth::authorize`], the one check: an
//!    active member with a role the method allows, certificate not revoked); the member found
//!    travels with the request for the handler ([`auth::caller`]);
//! 3. one of the [`Limits::max_calls_in_flight`] permits must be free (held until the
//!    response, stream included, ends);
//! 4. the body is read through a counter that stops it at the method's request limit
//!    ([`auth::Policy::max_request_bytes`]).
//!
//! A refused call is answered at once with its status; its body is never read (HTTP/2 flow
//! control keeps what the client had in flight to one window), and nothing is stored.
//!
//! Connections are limited in `tls.rs` (handshakes per source address, total connections, the
//! HTTP/2 preface and idle timeouts), using [`Limits`] and the per-connection [`Activity`]
//! this gate keeps up to date.

use super::auth;
use super::tls::HubTls;
use crate::store::Store;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The connection and call limits of one hub (see docs/PROTOCOL.md, "Limits").
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections (after TLS) at once; a connection beyond it is closed as soon as its
    /// handshake ends, before any call.
    pub max_connections: usize,
    /// TLS handshakes in progress at once from one source IP address; a further connection
    /// from that address is closed unread.
    pub max_handshakes_per_source: usize,
    /// TLS handshakes in progress at once in all; beyond it the hub stops accepting briefly.
    pub max_handshakes: usize,
    /// How long a client has to complete its TLS handshake.
    pub handshake_timeout: Duration,
    /// How long a client has, after the handshake, to send the HTTP/2 connection preface.
    pub preface_timeout: Duration,
    /// A connection with no call open for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 streams (calls) one connection may have open at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_streams_per_connection: u32,
    /// Calls (streams included) being handled at once over all connections; a call beyond it
    /// gets RESOURCE_EXHAUSTED.
    pub max_calls_in_flight: usize,
    /// Request body bytes held at once over all calls being handled (a Submit may be 64 MiB);
    /// a call whose body would pass it gets RESOURCE_EXHAUSTED.
    pub max_request_bytes_in_flight: usize,
}

/// Default [`Limits::max_connections`].
pub const MAX_CONNECTIONS: usize = 1024;
/// Default [`Limits::max_handshakes_per_source`].
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 16;
/// Default [`Limits::max_handshakes`].
pub const MAX_HANDSHAKES: usize = 1024;
/// Default [`Limits::handshake_timeout`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`Limits::preface_timeout`].
pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`Limits::idle_timeout`].
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`Limits::max_streams_per_connection`].
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// Default [`Limits::max_calls_in_flight`].
pub const MAX_CALLS_IN_FLIGHT: usize = 512;
/// Default [`Limits::max_request_bytes_in_flight`] (256 MiB).
pub const MAX_REQUEST_BYTES_IN_FLIGHT: usize = 256 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            max_handshakes_per_source: MAX_HANDSHAKES_PER_SOURCE,
            max_handshakes: MAX_HANDSHAKES,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            preface_timeout: PREFACE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_streams_per_connection: MAX_STREAMS_PER_CONNECTION,
            max_calls_in_flight: MAX_CALLS_IN_FLIGHT,
            max_request_bytes_in_flight: MAX_REQUEST_BYTES_IN_FLIGHT,
        }
    }
}

/// What one connection is doing, for its idle timeout: calls open now, and since when none.
#[derive(Debug)]
pub struct Activity {
    calls: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            calls: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    /// Since when the connection has had no call open, `None` while one is.
    pub fn idle_since(&self) -> Option<Instant> {
        let since = *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (self.calls.load(Ordering::SeqCst) == 0).then_some(since)
    }

    fn begin(self: &Arc<Self>) -> CallGuard {
        self.calls.fetch_add(1, Ordering::SeqCst);
        CallGuard(Some(self.clone()))
    }
}

/// Ends a call's [`Activity`] when dropped.
struct CallGuard(Option<Arc<Activity>>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            let mut since = a.idle_since.lock().unwrap_or_else(PoisonError::into_inner);
            if a.calls.fetch_sub(1, Ordering::SeqCst) == 1 {
                *since = Instant::now();
            }
        }
    }
}

/// The open connections' [`Activity`], by the client's address (unique per TCP connection).
#[derive(Clone, Default)]
pub struct Connections(Arc<Mutex<HashMap<SocketAddr, Arc<Activity>>>>);

impl Connections {
    /// Registers a new connection; it is forgotten when the returned handle drops.
    pub fn open(&self, peer: SocketAddr) -> ConnectionHandle {
        let activity = Arc::new(Activity::new());
        self.lock().insert(peer, activity.clone());
        ConnectionHandle {
            connections: self.clone(),
            peer,
            activity,
        }
    }

    fn get(&self, peer: &SocketAddr) -> Option<Arc<Activity>> {
        self.lock().get(peer).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<Activity>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One registered connection (see [`Connections::open`]).
pub struct ConnectionHandle {
    connections: Connections,
    peer: SocketAddr,
    /// What the connection is doing.
    pub activity: Arc<Activity>,
}

impl Drop for ConnectionHandle {
    fn drop(&mut self) {
        let mut map = self.connections.lock();
        if map
            .get(&self.peer)
            .is_some_and(|a| Arc::ptr_eq(a, &self.activity))
        {
            map.remove(&self.peer);
        }
    }
}

/// The tower layer that puts a [`Gate`] in front of the services.
#[derive(Clone)]
pub struct GateLayer {
    shared: Arc<GateShared>,
}

struct GateShared {
    store: Store,
    tls: HubTls,
    /// Member ids of the connections' certificates, parsed once per connection.
    cert_ids: auth::CertIds,
    connections: Connections,
    in_flight: Arc<Semaphore>,
    max_calls_in_flight: usize,
    /// One permit per request body byte held.
    bytes_in_flight: Arc<Semaphore>,
    max_request_bytes_in_flight: usize,
}

impl GateLayer {
    /// A gate over `store`'s registry and `tls`'s revocation state, counting calls on
    /// `connections`.
    pub fn new(store: Store, tls: HubTls, connections: Connections, limits: &Limits) -> Self {
        GateLayer {
            shared: Arc::new(GateShared {
                store,
                tls,
                cert_ids: auth::CertIds::new(limits.max_connections),
                connections,
                in_flight: Arc::new(Semaphore::new(limits.max_calls_in_flight)),
                max_calls_in_flight: limits.max_calls_in_flight,
                bytes_in_flight: Arc::new(Semaphore::new(
                    limits
                        .max_request_bytes_in_flight
                        .min(Semaphore::MAX_PERMITS),
                )),
                max_request_bytes_in_flight: limits.max_request_bytes_in_flight,
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    shared: Arc<GateShared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Gate<S> {
    /// Decides on the request head: the caller, the call permit and the body limit.
    fn admit(
        &self,
        request: &http::Request<Body>,
    ) -> Result<(crate::membership::Member, OwnedSemaphorePermit, usize), Status> {
        let s = &*self.shared;
        s.tls.ensure_crl_usable()?;
        let path = request.uri().path();
        let info = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        let certs = info.and_then(|i| i.peer_certs());
        let policy = auth::policy(path);
        let member = auth::authorize(&s.store, &s.tls, &s.cert_ids, certs.as_ref(), &policy)?;
        let permit = s.in_flight.clone().try_acquire_owned().map_err(|_| {
            super::status::count_refusal("calls_in_flight");
            Status::resource_exhausted(format!(
                "the hub is handling its limit of {} calls at once (max_calls_in_flight); retry in a moment",
                s.max_calls_in_flight
            ))
        })?;
        Ok((member, permit, policy.max_request_bytes))
    }
}

impl<S> tower_service::Service<http::Request<Body>> for Gate<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let (member, permit, max_bytes) = match self.admit(&request) {
            Ok(admitted) => admitted,
            Err(status) => {
                tracing::debug!(
                    path = request.uri().path(),
                    "refused before the body: {status}"
                );
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        let activity = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.get_ref().remote_addr())
            .and_then(|peer| self.shared.connections.get(&peer))
            .map(|a| a.begin());
        let extensions = request.extensions_mut();
        extensions.insert(auth::Caller(member));
        extensions.insert(self.shared.tls.clone());
        let path = request.uri().path().to_owned();
        let held = Arc::new(Mutex::new(None));
        let request = request.map(|body| {
            Body::new(LimitedBody {
                inner: body,
                left: max_bytes,
                limit: max_bytes,
                path,
                budget: self.shared.bytes_in_flight.clone(),
                budget_limit: self.shared.max_request_bytes_in_flight,
                held: held.clone(),
            })
        });
        // The service that was polled ready is the one called (tower's convention).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let call = inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| {
                Body::new(HeldBody {
                    inner: body,
                    _held: (permit, activity, held),
                })
            }))
        })
    }
}

/// The request bytes a call holds, released when its response ends.
type HeldBytes = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

/// A request body that fails with RESOURCE_EXHAUSTED once more than its limit arrives, or
/// when the hub holds its limit of request bytes in all.
struct LimitedBody {
    inner: Body,
    left: usize,
    limit: usize,
    path: String,
    budget: Arc<Semaphore>,
    budget_limit: usize,
    held: HeldBytes,
}

impl HttpBody for LimitedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > this.left {
                        super::status::count_refusal("request_bytes");
                        this.left = 0;
                        return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                            "request to {} is larger than its limit of {} bytes (max_request_bytes)",
                            this.path, this.limit
                        )))));
                    }
                    this.left -= data.len();
                    let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    match this.budget.clone().try_acquire_many_owned(n) {
                        Ok(permit) => {
                            let mut held = this.held.lock().unwrap_or_else(PoisonError::into_inner);
                            match held.as_mut() {
                                Some(all) => all.merge(permit),
                                None => *held = Some(permit),
                            }
                        }
                        Err(_) => {
                            super::status::count_refusal("request_bytes_in_flight");
                            this.left = 0;
                            return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                                "the hub holds its limit of {} bytes of requests at once (max_request_bytes_in_flight); retry in a moment",
                                this.budget_limit
                            )))));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds the call's permit and activity until it ends.
struct HeldBody {
    inner: Body,
    _held: (OwnedSemaphorePermit, Option<CallGuard>, HeldBytes),
}

impl HttpBody for HeldBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The sending half of a stream buffer bounded in bytes as well as in messages (see
/// [`byte_bounded`]).
pub struct ByteSender<T> {
    tx: tokio::sync::mpsc::Sender<(T, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    max: u32,
}

impl<T> ByteSender<T> {
    /// Queues `item` of `len` bytes, waiting while the buffer is full (in messages or bytes);
    /// an item larger than the whole budget waits for an empty buffer. False when the
    /// receiver went away.
    pub async fn send(&self, item: T, len: usize) -> bool {
        let n = u32::try_from(len).unwrap_or(u32::MAX).min(self.max);
        let Ok(permit) = self.budget.clone().acquire_many_owned(n).await else {
            return false;
        };
        self.tx.send((item, permit)).await.is_ok()
    }

    /// Completes when the receiver went away.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// A buffer between a stream's feeder task and its response: at most `messages` items and
/// `bytes` bytes (or one larger item) wait in it; an item's bytes are released when the
/// response takes it.
pub fn byte_bounded<T: Send + 'static>(
    messages: usize,
    bytes: usize,
) -> (
    ByteSender<T>,
    impl tokio_stream::Stream<Item = T> + Send + Unpin + 'static,
) {
    use tokio_stream::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(messages.max(1));
    let max = u32::try_from(bytes.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    let sender = ByteSender {
        tx,
        budget: Arc::new(Semaphore::new(max as usize)),
        max,
    };
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|(item, _bytes)| item);
    (sender, stream)
}
