//! The gRPC server: mutual TLS, the `Hub`, `Admin` and `Audit` services, the checkpoint
//! publisher, health and reflection.
//!
//! Handlers only translate between gRPC and the domain; rules live in `statement`,
//! `membership` and `store`, and errors become statuses in `status`.

mod admin;
mod audit;
mod auth;
mod checkpointer;
mod hub;
mod indexer;
mod status;
mod tls;

pub use audit::{AuditService, MAX_ENTRIES_PER_CALL, MAX_ENTRY_BYTES_PER_CALL};
pub use checkpointer::{CheckpointPolicy, Checkpointer, PublishError};
pub use hub::HubService;

use crate::log::CheckpointSigner;
use ed25519_dalek::SigningKey;

use crate::pb;
use crate::pki::TlsConfig;
use crate::store::Store;
use admin::AdminService;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;
use tls::HubTls;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::InterceptorLayer;
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
    /// The store and the configuration do not describe the same hub.
    #[error("{0}")]
    Config(String),
}

/// How the hub serves, beyond its listener, store and TLS material.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Signs the log's checkpoints: origin = the genesis hub name, key = the genesis hub key
    /// (checked at start-up).
    pub checkpoint_signer: CheckpointSigner,
    /// When checkpoints are published (default: every 1,000 entries or 1 s after growth).
    pub checkpoints: CheckpointPolicy,
    /// A PEM file of certificate revocation lists issued by the coalition CA. Revoked client
    /// certificates are refused at the TLS handshake, and calls on connections opened before
    /// the revocation get UNAUTHENTICATED. The file is polled and reloaded when it changes; a
    /// file that does not load leaves the previous CRL in force. `None`: no revocation.
    pub crl: Option<PathBuf>,
    /// How often the CRL file is checked for changes (modification time and length).
    pub crl_poll: Duration,
}

impl ServeOptions {
    /// Options with `checkpoint_signer` and every other field at its default.
    pub fn new(checkpoint_signer: CheckpointSigner) -> Self {
        ServeOptions {
            checkpoint_signer,
            checkpoints: CheckpointPolicy::default(),
            crl: None,
            crl_poll: Duration::from_secs(1),
        }
    }

    /// Options for the hub founded in `store`: checkpoints signed with `hub_key` under the
    /// genesis hub name. Fails if the store holds no genesis or `hub_key` is not its hub key.
    pub fn for_store(store: &Store, hub_key: SigningKey) -> Result<Self, ServerError> {
        let registry = store.registry();
        let coalition = registry.coalition().ok_or_else(|| {
            ServerError::Config(
                "this data directory holds no hub: found one first with `coalition init`".into(),
            )
        })?;
        let signer = CheckpointSigner::new(&coalition.hub_name, hub_key)
            .map_err(|e| ServerError::Config(format!("hub name: {e}")))?;
        let options = ServeOptions::new(signer);
        options.check(store)?;
        Ok(options)
    }

    /// The checkpoint signer must be the hub the genesis names.
    fn check(&self, store: &Store) -> Result<(), ServerError> {
        let registry = store.registry();
        let Some(c) = registry.coalition() else {
            return Err(ServerError::Config(
                "this data directory holds no hub: found one first with `coalition init`".into(),
            ));
        };
        let signer = &self.checkpoint_signer;
        if signer.origin() != c.hub_name || signer.verifier_key().verifying_key() != &c.hub_key {
            return Err(ServerError::Config(format!(
                "the checkpoint signer ({}) is not the hub key and name the genesis names ('{}', key {}): use the hub.sign.key `coalition init` used",
                signer.verifier_key(),
                c.hub_name,
                hex::encode(c.hub_key.as_bytes())
            )));
        }
        Ok(())
    }
}

/// A hub serving in the background (tests, quickstart, benchmarks).
pub struct RunningHub {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningHub {
    /// Stops accepting, lets in-flight calls finish, and waits.
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

/// Serves on `listener` until `shutdown` completes. The TLS handshakes are the hub's own
/// (`tls.rs`), so that a CRL can refuse revoked client certificates.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    tls: &TlsConfig,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    options.check(&store)?;
    install_crypto_provider();
    let hub_tls =
        HubTls::load(tls, options.crl.as_deref()).map_err(|e| ServerError::Tls(e.to_string()))?;
    // Stops polling the CRL file when serving ends.
    let _watch = hub_tls.watch(options.crl_poll);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::hub_server::HubServer<HubService>>()
        .await;
    health_reporter
        .set_serving::<pb::admin_server::AdminServer<AdminService>>()
        .await;
    health_reporter
        .set_serving::<pb::audit_server::AuditServer<AuditService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Tls(format!("reflection: {e}")))?;
    // Every call carries the revocation state, for `auth::authorize`.
    let attach_tls = {
        let hub_tls = hub_tls.clone();
        move |mut request: tonic::Request<()>| {
            request.extensions_mut().insert(hub_tls.clone());
            Ok(request)
        }
    };
    let matching = indexer::start(store.clone());
    let hub = pb::hub_server::HubServer::new(HubService::new(store.clone(), matching))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let checkpointer = Checkpointer::start(
        store.clone(),
        options.checkpoint_signer.clone(),
        options.checkpoints.clone(),
    );
    let audit = pb::audit_server::AuditServer::new(AuditService::new(store.clone(), checkpointer))
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = pb::admin_server::AdminServer::new(AdminService::new(store));
    Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // Bounds the requests (each up to MAX_MESSAGE_BYTES) one connection holds at once.
        .concurrency_limit_per_connection(32)
        .layer(InterceptorLayer::new(attach_tls))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(hub)
        .add_service(admin)
        .add_service(audit)
        // TCP_NODELAY is set on accepted sockets there (~40 ms per call otherwise).
        .serve_with_incoming_shutdown(hub_tls.incoming(listener), shutdown)
        .await?;
    Ok(())
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
