//! The gRPC server: mutual TLS, the `Hub`, `Admin` and `Audit` services, the checkpoint
//! publisher, health and reflection, and graceful shutdown (`serve` owns it; `shutdown.rs`).
//!
//! Handlers only translate between gRPC and the domain; rules live in `statement`,
//! `membership` and `store`, and errors become statuses in `status`.

mod access;
mod admin;
pub mod allocator;
mod audit;
pub(crate) mod auth;
mod checkpointer;
mod federation_api;
mod grpc_metrics;
pub mod health;
mod hub;
mod indexer;
pub mod limits;
mod match_states;
pub mod ops;
mod pulling;
mod quota;
pub mod shutdown;
mod status;
mod taxii;
mod tls;
mod verification;
mod witnessing;

pub use audit::{AuditService, MAX_ENTRIES_PER_CALL, MAX_ENTRY_BYTES_PER_CALL};
pub use auth::MAX_BATCH_REQUEST_BYTES;
pub use checkpointer::{CheckpointPolicy, Checkpointer, PublishError};
pub use grpc_metrics::GrpcMetricsLayer;
pub use hub::{HubService, MAX_BATCH_ENVELOPES, MAX_MATCHES_PER_QUERY, MAX_MATCHES_PER_RESPONSE};
pub use limits::Limits;
pub use ops::DEFAULT_OPS_LISTEN;
/// The pure part of the CRL loader, for `crate::fuzzing`.
pub(crate) use tls::check_crl_pem;
pub use tls::{CrlHealth, DEFAULT_CRL_GRACE};

use crate::log::CheckpointSigner;
use ed25519_dalek::SigningKey;
use shutdown::Shutdown;

use crate::pb;
use crate::pki::TlsConfig;
use crate::store::Store;
use admin::AdminService;
use federation_api::FederationService;
use health::HealthState;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use tls::HubTls;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;

/// Largest gRPC message the server decodes. Statements are limited to
/// `statement::MAX_PAYLOAD_BYTES` (RESOURCE_EXHAUSTED above it); a message beyond this
/// transport limit is refused by the transport with OUT_OF_RANGE before it is read.
pub const MAX_MESSAGE_BYTES: usize = 4 * crate::statement::MAX_PAYLOAD_BYTES;

/// Server start-up failures.
#[derive(Debug, Error)]
pub enum ServerError {
    /// TLS material was rejected.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// Binding or serving failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Calls or streams were still open when the shutdown grace period ran out. Every
    /// acknowledged statement is on disk all the same (each was flushed before its answer).
    #[error(
        "the shutdown took longer than its grace period of {} ms: calls or streams were still open (every acknowledged statement is on disk)",
        .0.as_millis()
    )]
    ShutdownTimeout(Duration),
    /// The store and the configuration do not describe the same hub.
    #[error("{0}")]
    Config(String),
}

/// How the hub serves, beyond its listener, store and TLS material.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Signs the log's checkpoints: origin = the genesis hub name, key = the hub key the
    /// replayed log names as current (the genesis key until a settings change rotates it;
    /// checked at start-up, unless `next_checkpoint_signer` is that key). `None` for a
    /// mirror, which copies the checkpoints of the hub it mirrors.
    pub checkpoint_signer: Option<CheckpointSigner>,
    /// The hub key a rotation not yet logged will name: once the log rotates to it, the hub
    /// signs with it, without a restart. Never used for checkpoints the log assigns to
    /// another key.
    pub next_checkpoint_signer: Option<CheckpointSigner>,
    /// When checkpoints are published (default: every 1,000 entries or 1 s after growth).
    pub checkpoints: CheckpointPolicy,
    /// A PEM file of certificate revocation lists issued by the coalition CA. Revoked client
    /// certificates are refused at the TLS handshake, and calls on connections opened before
    /// the revocation get UNAUTHENTICATED. The file is polled and reloaded when it changes; a
    /// file that does not load leaves the previous CRL in force. `None`: no revocation.
    pub crl: Option<PathBuf>,
    /// How often the CRL file is checked for changes (modification time and length).
    pub crl_poll: Duration,
    /// How long the CRL may be past its `nextUpdate` before the hub refuses every call
    /// (default [`DEFAULT_CRL_GRACE`], one day; `coalition serve --crl-grace`).
    pub crl_grace: Duration,
    /// Connection and call limits (docs/PROTOCOL.md, "Limits").
    pub limits: Limits,
    /// How long a shutdown may take, from its signal to the last call answered and the store
    /// closed; past it `serve` returns [`ServerError::ShutdownTimeout`] (default 10 s).
    pub shutdown_grace: Duration,
    /// Where the operations listener (`/metrics`, `/healthz`; plain HTTP) listens; `None`:
    /// no listener and no metrics recorder (default; `coalition serve` listens on
    /// [`DEFAULT_OPS_LISTEN`]).
    pub ops_listen: Option<SocketAddr>,
    /// How long the access log keeps its records.
    pub access_retention: crate::store::AccessRetention,
    /// Where the matching index is saved while the log is quiet and loaded from at start
    /// (`coalition serve` uses `<data>/matching-index.bin` unless `--match-snapshot off`);
    /// `None`: the whole log is indexed at every start.
    pub match_snapshot: Option<PathBuf>,
    /// Serve as a read-only mirror of this hub (`coalition serve --mirror-of`): its log is
    /// followed into the store (`federation::Follower`), its checkpoints copied, and every
    /// write refused with FAILED_PRECONDITION.
    pub mirror_of: Option<crate::federation::Upstream>,
    /// The peer hubs whose own statements this hub relays (`coalition serve --peer`,
    /// docs/PROTOCOL.md §3.10); none on a mirror.
    pub peers: Vec<crate::federation::Peer>,
    /// Where the TAXII 2.1 read API (HTTPS, the same mutual TLS and read rule as gRPC,
    /// docs/PROTOCOL.md §8) listens; `None`: not served (default; `coalition serve
    /// --taxii-listen ADDR`).
    pub taxii_listen: Option<SocketAddr>,
}

/// The services whose health is reported (besides `""`, the whole hub).
const HEALTH_SERVICES: &[&str] = &[
    <pb::hub_server::HubServer<HubService> as tonic::server::NamedService>::NAME,
    <pb::admin_server::AdminServer<AdminService> as tonic::server::NamedService>::NAME,
    <pb::audit_server::AuditServer<AuditService> as tonic::server::NamedService>::NAME,
    <pb::federation_server::FederationServer<FederationService> as tonic::server::NamedService>::NAME,
];

/// The matching snapshot's file name in the data directory (`coalition serve`).
pub const MATCH_SNAPSHOT_FILE: &str = "matching-index.bin";

/// The default [`ServeOptions::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl ServeOptions {
    /// Options with `checkpoint_signer` and every other field at its default.
    pub fn new(checkpoint_signer: CheckpointSigner) -> Self {
        let mut options = Self::mirror(None);
        options.checkpoint_signer = Some(checkpoint_signer);
        options
    }

    /// Options of a read-only mirror of `upstream` (`None`: set `mirror_of` or
    /// `checkpoint_signer` before serving), every other field at its default.
    pub fn mirror(upstream: Option<crate::federation::Upstream>) -> Self {
        ServeOptions {
            checkpoint_signer: None,
            next_checkpoint_signer: None,
            checkpoints: CheckpointPolicy::default(),
            crl: None,
            crl_poll: Duration::from_secs(1),
            crl_grace: DEFAULT_CRL_GRACE,
            limits: Limits::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            ops_listen: None,
            access_retention: crate::store::AccessRetention::default(),
            match_snapshot: None,
            mirror_of: upstream,
            peers: Vec::new(),
            taxii_listen: None,
        }
    }

    /// Options for the hub founded in `store`: checkpoints signed with `hub_key` under the
    /// genesis hub name. Fails if the store holds no genesis or `hub_key` is not its current
    /// hub key.
    pub fn for_store(store: &Store, hub_key: SigningKey) -> Result<Self, ServerError> {
        Self::for_store_rotating(store, hub_key, None)
    }

    /// [`ServeOptions::for_store`] with the key a coming rotation names (`next`): one of the
    /// two must be the log's current hub key.
    pub fn for_store_rotating(
        store: &Store,
        hub_key: SigningKey,
        next: Option<SigningKey>,
    ) -> Result<Self, ServerError> {
        let registry = store.registry();
        let coalition = registry.coalition().ok_or_else(|| {
            ServerError::Config(
                "this data directory holds no hub: found one first with `coalition init`".into(),
            )
        })?;
        let signer = |key| {
            CheckpointSigner::new(&coalition.hub_name, key)
                .map_err(|e| ServerError::Config(format!("hub name: {e}")))
        };
        let mut options = ServeOptions::new(signer(hub_key)?);
        options.next_checkpoint_signer = next.map(signer).transpose()?;
        options.check(store)?;
        Ok(options)
    }

    /// One of the checkpoint signers must be the hub's current key and name as the log
    /// names them (a mirror signs nothing); the store must hold a hub.
    fn check(&self, store: &Store) -> Result<(), ServerError> {
        let registry = store.registry();
        let Some(c) = registry.coalition() else {
            return Err(ServerError::Config(
                "this data directory holds no hub: found one first with `coalition init`".into(),
            ));
        };
        if self.mirror_of.is_some() {
            return Ok(());
        }
        let Some(signer) = &self.checkpoint_signer else {
            return Err(ServerError::Config(
                "no checkpoint signer: a hub that is not a mirror signs its checkpoints".into(),
            ));
        };
        let is_current = |s: &CheckpointSigner| {
            s.origin() == c.hub_name && s.verifier_key().verifying_key() == &c.hub_key
        };
        if !is_current(signer) && !self.next_checkpoint_signer.as_ref().is_some_and(is_current) {
            return Err(ServerError::Config(format!(
                "the checkpoint signer ({}) is not the hub's current key and name as the log names them ('{}', key {}, named at entry {}): use the hub.sign.key `coalition init` used, or the key the last hub key rotation named (--hub-key FILE)",
                signer.verifier_key(),
                c.hub_name,
                hex::encode(c.hub_key.as_bytes()),
                c.settings.hub_keys.last().map_or(0, |p| p.from_seq)
            )));
        }
        Ok(())
    }
}

/// A hub serving in the background (tests, quickstart, benchmarks). Dropping it begins the
/// same graceful shutdown as [`RunningHub::stop`], without waiting for it.
pub struct RunningHub {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningHub {
    /// Shuts down as `coalition serve` does on SIGTERM (see [`serve`]) and waits for it.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(ServerError::Io(std::io::Error::other(e))),
        }
    }
}

/// Reads the durable entries `from..to` on the blocking pool, stopping early once `max_bytes`
/// of payload are read (sync and `GetEntries` stream them in such chunks). Nothing readable
/// where entries must exist is a store inconsistency: INTERNAL, for the operators.
async fn read_entries(
    store: &Store,
    from: u64,
    to: u64,
    max_bytes: usize,
) -> Result<Vec<crate::store::StoredEntry>, tonic::Status> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in store.entries(from, to) {
            let entry = entry.map_err(status::store)?;
            bytes += entry
                .envelope
                .as_ref()
                .map_or(0, |e| e.payload.len() + e.body.len());
            out.push(entry);
            if bytes >= max_bytes {
                break;
            }
        }
        if out.is_empty() && from < to {
            return Err(tonic::Status::internal(format!(
                "entry {from} is missing from the store; operators: see the hub log"
            )));
        }
        Ok(out)
    })
    .await
    .map_err(|e| tonic::Status::internal(format!("entry reader failed: {e}")))?
}

/// Installs ring as the process's rustls crypto provider (idempotent). tonic's client TLS
/// needs a process default, and rustls cannot pick one if a dependency enables two.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves on `listener` until `shutdown` completes, then shuts down gracefully within
/// `options.shutdown_grace`. The TLS handshakes are the hub's own (`tls.rs`), so that a CRL can
/// refuse revoked client certificates.
///
/// The shutdown, in order:
/// 1. the listener is closed and every open connection gets HTTP/2 GOAWAY (no new calls);
///    health reports NOT_SERVING and its `Watch` streams end;
/// 2. every `Sync` and `GetEntries` stream ends with `UNAVAILABLE` ([`shutdown::SHUTTING_DOWN`]);
/// 3. unary calls in flight (Submit, Match, proofs…) run to their answer: a Submit answered
///    is flushed to disk;
/// 4. the checkpointer (after a publication under way) and the indexer stop, and this handle
///    on the store is dropped: if it is the last, the store's writer thread is joined;
/// 5. `Ok(())`. If the grace period runs out first: [`ServerError::ShutdownTimeout`], with
///    the rest abandoned (nothing acknowledged is lost: see the store's durability notes).
pub async fn serve(
    listener: TcpListener,
    store: Store,
    tls: &TlsConfig,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    options.check(&store)?;
    install_crypto_provider();
    // First, so that everything the hub emits from now on (the CRL's state included) is kept.
    let recorder = options.ops_listen.and_then(|_| ops::prometheus());
    let hub_tls = HubTls::load(tls, options.crl.as_deref(), options.crl_grace)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    // Stops polling the CRL file when serving ends.
    let _watch = hub_tls.watch(options.crl_poll);
    let ops_listener = match options.ops_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
            ServerError::Io(std::io::Error::new(
                e.kind(),
                format!("operations listener {addr} (--ops-listen ADDR, or off): {e}"),
            ))
        })?),
        None => None,
    };
    let taxii_listener = match options.taxii_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
            ServerError::Io(std::io::Error::new(
                e.kind(),
                format!("TAXII listener {addr} (--taxii-listen ADDR): {e}"),
            ))
        })?),
        None => None,
    };
    {
        let (store, retention) = (store.clone(), options.access_retention);
        tokio::task::spawn_blocking(move || store.access().set_retention(retention))
            .await
            .map_err(|e| ServerError::Io(std::io::Error::other(e)))?
            .map_err(|e| ServerError::Config(format!("access log: {e}")))?;
    }
    let health = HealthState::new();
    let (mut health_reporter, health_service) = tonic_health::server::health_reporter();
    health::apply(&health_reporter, &health.faults(), HEALTH_SERVICES).await;
    // Reflection v1, and v1alpha for older tools. Like health, they answer active members
    // only: the gate below authorizes every call, whatever its service.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_error = |e| ServerError::Config(format!("reflection: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    // Authorizes every call on its head and bounds it (limits.rs).
    let connections = limits::Connections::default();
    let gate = limits::GateLayer::new(
        store.clone(),
        hub_tls.clone(),
        connections.clone(),
        &options.limits,
    );
    let stop = Shutdown::new();
    let reporting = tokio::spawn(health::report(
        health.clone(),
        health_reporter.clone(),
        HEALTH_SERVICES,
        {
            let mut begun = stop.listener();
            async move { begun.begun().await }
        },
    ));
    tokio::spawn({
        let (store, health, mut begun) = (store.clone(), health.clone(), stop.listener());
        async move {
            tokio::select! {
                () = health::follow_writer(&store, health) => {}
                () = begun.begun() => {}
            }
        }
    });
    tokio::spawn({
        let (hub_tls, health, mut begun) = (hub_tls.clone(), health.clone(), stop.listener());
        let every = options.crl_poll;
        async move {
            tokio::select! {
                () = follow_crl(&hub_tls, &health, every) => {}
                () = begun.begun() => {}
            }
        }
    });
    let matching = indexer::start(
        store.clone(),
        health.clone(),
        stop.listener(),
        options.match_snapshot.clone(),
    );
    let ops = match ops_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            match recorder {
                Some(handle) => {
                    let state = ops::OpsState {
                        health: health.clone(),
                        store: store.clone(),
                        indexed: matching.indexed.clone(),
                        handle,
                    };
                    let mut begun = stop.listener();
                    tracing::info!(%addr, "operations listener: http://{addr}/metrics and /healthz");
                    Some(tokio::spawn(ops::serve(listener, state, async move {
                        begun.begun().await
                    })))
                }
                None => {
                    tracing::warn!(%addr, "operations listener not started: another metrics recorder is installed in this process");
                    None
                }
            }
        }
        None => None,
    };
    // One quota ledger for gRPC and TAXII: what a member reads counts once, by either.
    let quota = quota::Quota::new(store.clone());
    let taxii_server = match taxii_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "TAXII 2.1 API: https://{addr}/taxii2/");
            Some(tokio::spawn(taxii::serve(
                listener,
                taxii::TaxiiState::new(store.clone(), hub_tls.clone(), quota.clone()),
                stop.listener(),
            )))
        }
        None => None,
    };
    let verifier = verification::Verifier::per_core()?;
    let hub = pb::hub_server::HubServer::new(HubService::new(
        store.clone(),
        matching,
        verifier,
        stop.listener(),
        options.mirror_of.as_ref().map(|u| u.addr.clone()),
        quota,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let peer_statuses = pulling::PeerStatuses::default();
    let checkpointer = match &options.mirror_of {
        // A mirror copies its upstream's checkpoints (and their cosignatures) with the log.
        Some(upstream) => {
            pulling::start_mirror(
                store.clone(),
                upstream.clone(),
                health.clone(),
                stop.listener(),
            );
            Checkpointer::copying(store.clone())
        }
        None => {
            witnessing::start(store.clone(), stop.listener());
            pulling::start_peers(
                store.clone(),
                &options.peers,
                health.clone(),
                peer_statuses.clone(),
                stop.listener(),
            );
            Checkpointer::start(
                store.clone(),
                options
                    .checkpoint_signer
                    .iter()
                    .chain(&options.next_checkpoint_signer)
                    .cloned()
                    .collect(),
                options.checkpoints.clone(),
                health.clone(),
                stop.listener(),
            )
        }
    };
    let federation = pb::federation_server::FederationServer::new(FederationService(
        AuditService::new(store.clone(), checkpointer.clone(), stop.listener()),
    ))
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let audit = pb::audit_server::AuditServer::new(AuditService::new(
        store.clone(),
        checkpointer,
        stop.listener(),
    ))
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = pb::admin_server::AdminServer::new(AdminService::new(
        store.clone(),
        &options.peers,
        peer_statuses,
    ));
    let stop_accepting = {
        let mut begun = stop.listener();
        async move { begun.begun().await }
    };
    let server = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // Bounds the calls one connection has open at once (HTTP/2 SETTINGS; the peer must
        // respect it, and excess streams are refused).
        .max_concurrent_streams(options.limits.max_streams_per_connection)
        // Outermost: counts and times every call, the gate's refusals included.
        .layer(grpc_metrics::GrpcMetricsLayer)
        .layer(gate)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(hub)
        .add_service(admin)
        .add_service(audit)
        .add_service(federation)
        // TCP_NODELAY is set on accepted sockets there (~40 ms per call otherwise).
        .serve_with_incoming_shutdown(
            hub_tls.incoming(listener, &options.limits, connections),
            stop_accepting,
        );
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => {
            // The transport stopped by itself (an error): stop the rest with it.
            stop.begin();
            return served.map_err(ServerError::from);
        }
        () = shutdown => {}
    }
    let grace = options.shutdown_grace;
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections, sync streams ended, finishing the calls in flight"
    );
    stop.begin();
    let drained = tokio::time::timeout(grace, async {
        // The reporter task stops at the shutdown's start; then health ends for good.
        let _ = reporting.await;
        end_health(&mut health_reporter).await;
        server.await?;
        // The stream feeders, the checkpointer, the indexer and the writer's health watch.
        stop.drained().await;
        // The operations listener stopped at the shutdown's start; it holds the store.
        if let Some(ops) = ops {
            match ops.await {
                Ok(Err(e)) => tracing::warn!("operations listener: {e}"),
                Err(e) => tracing::warn!("operations listener task: {e}"),
                Ok(Ok(())) => {}
            }
        }
        // The TAXII listener stopped at the shutdown's start; its connections close after the
        // request in progress (each holds the store).
        if let Some(taxii) = taxii_server {
            match taxii.await {
                Ok(Err(e)) => tracing::warn!("TAXII listener: {e}"),
                Err(e) => tracing::warn!("TAXII listener task: {e}"),
                Ok(Ok(())) => {}
            }
        }
        // The last handle on the store (in `coalition serve`) joins the writer thread, which
        // has committed and flushed everything queued: off the async workers.
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
        Ok::<(), ServerError>(())
    })
    .await;
    match drained {
        Ok(result) => {
            if result.is_ok() {
                tracing::info!("shut down cleanly: every stream ended, every call answered");
            }
            result
        }
        Err(_) => Err(ServerError::ShutdownTimeout(grace)),
    }
}

/// Marks the hub down in health while its CRL is outdated past the grace period (every call
/// is then refused: see `HubTls::ensure_crl_usable`), and up again once a current one is in
/// force. An outdated CRL within its grace is logged and measured by `tls.rs`.
async fn follow_crl(hub_tls: &HubTls, health: &HealthState, every: Duration) {
    let crl = health::Component::Other("crl");
    loop {
        match hub_tls.crl_health() {
            Some(h) if h.failing_closed => health.set_down(
                crl,
                format!(
                    "the CRL in force is past its nextUpdate by more than the grace period ({}): every call is refused until a current CRL is installed",
                    humantime::format_duration(h.grace)
                ),
            ),
            _ => health.set_up(crl),
        }
        tokio::time::sleep(every).await;
    }
}

/// Health says NOT_SERVING for every service, then forgets them, which ends the `Watch`
/// streams (they would otherwise hold their connections open through the shutdown).
async fn end_health(reporter: &mut tonic_health::server::HealthReporter) {
    use tonic::server::NamedService;
    reporter
        .set_not_serving::<pb::hub_server::HubServer<HubService>>()
        .await;
    reporter
        .set_not_serving::<pb::admin_server::AdminServer<AdminService>>()
        .await;
    reporter
        .set_not_serving::<pb::audit_server::AuditServer<AuditService>>()
        .await;
    reporter
        .set_not_serving::<pb::federation_server::FederationServer<FederationService>>()
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    for name in [
        "",
        pb::hub_server::HubServer::<HubService>::NAME,
        pb::admin_server::AdminServer::<AdminService>::NAME,
        pb::audit_server::AuditServer::<AuditService>::NAME,
        pb::federation_server::FederationServer::<FederationService>::NAME,
    ] {
        reporter.clear_service_status(name).await;
    }
}

/// Binds `addr` (use port 0 for an ephemeral port) and serves in the background.
pub async fn spawn(
    addr: &str,
    store: Store,
    tls: TlsConfig,
    options: ServeOptions,
) -> Result<RunningHub, ServerError> {
    options.check(&store)?;
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        serve(listener, store, &tls, options, async {
            let _ = rx.await;
        })
        .await
    });
    Ok(RunningHub {
        addr,
        shutdown: Some(tx),
        task,
    })
}
