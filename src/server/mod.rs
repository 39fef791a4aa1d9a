//! The gRPC server: mutual TLS, the `Hub`, `Admin` and `Audit` services, health and
//! reflection, and the background checkpoint publisher.
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

pub use audit::{AuditService, MAX_ENTRIES_PER_CALL, MAX_ENTRY_BYTES_PER_CALL};
pub use checkpointer::{CheckpointPolicy, Checkpointer, PublishError};
pub use hub::HubService;

use crate::log::CheckpointSigner;
use crate::pb;
use crate::pki::TlsConfig;
use crate::store::Store;
use admin::AdminService;
use std::future::Future;
use std::net::SocketAddr;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

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
}

/// The checkpoint origin used when none is configured (development and tests).
pub const DEFAULT_ORIGIN: &str = "coalition.example/hub";

/// How the hub runs, beyond its listener, store and TLS identity.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Signs the log's checkpoints: the origin (also the note key name) and the hub's
    /// Ed25519 checkpoint key.
    pub checkpoint_signer: CheckpointSigner,
    /// When checkpoints are published (default: every 1,000 entries or 1 s after growth).
    pub checkpoints: CheckpointPolicy,
}

impl ServeOptions {
    /// Options with `checkpoint_signer` and every other field at its default.
    pub fn new(checkpoint_signer: CheckpointSigner) -> Self {
        ServeOptions {
            checkpoint_signer,
            checkpoints: CheckpointPolicy::default(),
        }
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

/// Installs ring as the process's rustls crypto provider (idempotent). tonic's server TLS
/// needs a process default, and rustls cannot pick one if a dependency enables two.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    tls: &TlsConfig,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    install_crypto_provider();
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
    let tls_config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
        .client_ca_root(Certificate::from_pem(&tls.ca_pem));
    let matching = indexer::start(store.clone());
    let hub = pb::hub_server::HubServer::new(HubService::new(store.clone(), matching))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let checkpointer = Checkpointer::start(
        store.clone(),
        options.checkpoint_signer,
        options.checkpoints,
    );
    let audit = pb::audit_server::AuditServer::new(AuditService::new(store.clone(), checkpointer))
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = pb::admin_server::AdminServer::new(AdminService::new(store));
    Server::builder()
        .tls_config(tls_config)?
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        // Bounds the requests (each up to MAX_MESSAGE_BYTES) one connection holds at once.
        .concurrency_limit_per_connection(32)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(hub)
        .add_service(admin)
        .add_service(audit)
        // Without TCP_NODELAY small HTTP/2 frames wait for delayed ACKs (~40 ms per submit).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
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
