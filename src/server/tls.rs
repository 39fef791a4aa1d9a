//! The hub's TLS layer. Its one job: refuse revoked client certificates, with a certificate
//! revocation list (CRL) the hub loads at start-up and reloads when its file changes, without
//! a restart.
//!
//! tonic's own server TLS cannot take a CRL, so the hub builds its rustls configuration itself
//! (the coalition CA as the only client root, plus the CRLs), accepts TCP connections and runs
//! their handshakes concurrently ([`TlsIncoming`]), and hands tonic finished TLS streams
//! (`Request::peer_certs` keeps working). Each new connection uses the configuration current
//! when it was accepted, so a reloaded CRL refuses revoked certificates at the handshake.
//! Connections opened before a revocation are caught by [`HubTls::is_revoked`], which
//! `auth::authorize` asks on every call.
//!
//! Revocation fails safe: a CRL whose number is lower than the one in force is refused (the
//! previous stays in force); a CRL past its `nextUpdate` is reported ([`HubTls::crl_health`],
//! the log, the `coalition_crl_outdated_seconds` gauge) and, once outdated for longer than
//! the grace period, every call is refused with UNAVAILABLE ([`HubTls::ensure_crl_usable`]).
//!
//! Connections are bounded here too (`limits::Limits`): TLS handshakes per source address and
//! in all, each with a timeout; open connections in all; and after the handshake an HTTP/2
//! preface timeout and an idle timeout ([`Conn`]).

use super::limits::{ConnectionHandle, Connections, Limits};
use crate::pki::TlsConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};
use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

/// The bytes of the HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE_BYTES: u64 = 24;

/// Default grace period for an outdated CRL (`coalition serve --crl-grace`).
pub const DEFAULT_CRL_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// Pause after an accept error that is not about one connection (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Shortest CRL poll interval (a zero interval would spin).
const MIN_POLL: Duration = Duration::from_millis(10);

/// TLS set-up failures.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The hub's certificate or private key is unusable.
    #[error("hub certificate or key: {0}")]
    Identity(String),
    /// The coalition CA certificate is unusable.
    #[error("coalition CA certificate: {0}")]
    Ca(String),
    /// The CRL file cannot be read or holds no valid CRL of the coalition CA.
    #[error("CRL file {path}: {reason}")]
    Crl {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The hub's TLS state: the current rustls configuration and the revoked certificates it
/// refuses. Cheap to clone (one `Arc`); every clone sees reloads.
#[derive(Clone)]
pub struct HubTls {
    shared: Arc<Shared>,
}

struct Shared {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cas: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    crl_path: Option<PathBuf>,
    /// How long a CRL may be past its `nextUpdate` before calls are refused.
    crl_grace: Duration,
    /// The CRL file's stamp when it was last read (`None`: unreadable).
    stamp: Mutex<Option<Stamp>>,
    current: RwLock<Arc<Loaded>>,
}

/// What a CRL file looked like: a change of either means it was rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// One loaded configuration.
struct Loaded {
    config: Arc<ServerConfig>,
    /// (issuer name DER, serial without leading zero bytes) of every revoked certificate.
    revoked: HashSet<(Vec<u8>, Vec<u8>)>,
    /// The file's CRL number (the highest of its CRLs), if every CRL has one.
    number: Option<BigUint>,
    /// The earliest `nextUpdate` of the file's CRLs (`None`: no CRL, or none says).
    next_update: Option<SystemTime>,
}

/// How current the CRL in force is (see [`HubTls::crl_health`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlHealth {
    /// The CRL number in force, as decimal (`None`: the CRL has none).
    pub number: Option<String>,
    /// When the CRL in force says the next one is due.
    pub next_update: Option<SystemTime>,
    /// How long ago `next_update` passed (zero while the CRL is current).
    pub outdated_by: Duration,
    /// The configured grace period.
    pub grace: Duration,
    /// Outdated for longer than the grace period: every call is refused.
    pub failing_closed: bool,
}

/// The outcome of [`HubTls::reload_if_changed`].
#[derive(Debug)]
pub enum Reload {
    /// No CRL file, or it has not changed since it was last read.
    Unchanged,
    /// The CRL file changed and is now in force.
    Reloaded {
        /// Certificates it revokes.
        revoked: usize,
    },
    /// The CRL file changed but is unusable; the previous CRL stays in force.
    Failed(TlsError),
}

impl HubTls {
    /// Loads the hub identity and client CA from `tls`, and the CRLs (PEM, issued and signed
    /// by that CA) from `crl` if given. Without `crl` no revocation is checked. A CRL past its
    /// `nextUpdate` for longer than `crl_grace` makes the hub refuse every call.
    pub fn load(
        tls: &TlsConfig,
        crl: Option<&Path>,
        crl_grace: Duration,
    ) -> Result<HubTls, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&tls.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Identity(format!("certificate PEM: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError::Identity("no PEM certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&tls.key_pem)
            .map_err(|e| TlsError::Identity(format!("private key PEM: {e}")))?;
        let cas = CertificateDer::pem_slice_iter(&tls.ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Ca(format!("PEM: {e}")))?;
        let mut roots = RootCertStore::empty();
        for ca in &cas {
            roots
                .add(ca.clone())
                .map_err(|e| TlsError::Ca(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TlsError::Ca("no PEM certificate".into()));
        }
        let roots = Arc::new(roots);
        let stamp = crl.and_then(stamp_of);
        let loaded = match crl {
            Some(path) => load_crl_file(path, &chain, &key, &cas, &roots)?,
            None => Loaded {
                config: build_config(&chain, &key, &roots, Vec::new())?,
                revoked: HashSet::new(),
                number: None,
                next_update: None,
            },
        };
        Ok(HubTls {
            shared: Arc::new(Shared {
                chain,
                key,
                cas,
                roots,
                crl_path: crl.map(Path::to_owned),
                crl_grace,
                stamp: Mutex::new(stamp),
                current: RwLock::new(Arc::new(loaded)),
            }),
        })
    }

    fn current(&self) -> Arc<Loaded> {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The configuration new connections are accepted with.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current().config.clone()
    }

    /// Whether the CRLs now in force revoke the DER certificate `cert_der` (by issuer and
    /// serial number). A certificate that does not parse is not revoked (it fails elsewhere).
    pub fn is_revoked(&self, cert_der: &[u8]) -> bool {
        let current = self.current();
        if current.revoked.is_empty() {
            return false;
        }
        match X509Certificate::from_der(cert_der) {
            Ok((_, cert)) => current.revoked.contains(&(
                cert.issuer().as_raw().to_vec(),
                serial_bytes(cert.raw_serial()).to_vec(),
            )),
            Err(_) => false,
        }
    }

    /// Re-reads the CRL file if its modification time or length changed since it was last
    /// read. A file that does not load leaves the previous CRL in force.
    pub fn reload_if_changed(&self) -> Reload {
        let s = &*self.shared;
        let Some(path) = &s.crl_path else {
            return Reload::Unchanged;
        };
        let now = stamp_of(path);
        {
            let mut last = s.stamp.lock().unwrap_or_else(PoisonError::into_inner);
            if *last == now {
                return Reload::Unchanged;
            }
            *last = now;
        }
        match load_crl_file(path, &s.chain, &s.key, &s.cas, &s.roots) {
            Ok(loaded) => {
                if let (Some(new), Some(old)) = (&loaded.number, &self.current().number)
                    && new < old
                {
                    metrics::counter!("coalition_crl_refused_total", "reason" => "number_backwards")
                        .increment(1);
                    return Reload::Failed(TlsError::Crl {
                        path: path.clone(),
                        reason: format!(
                            "its CRL number {new} is lower than the number of the CRL in force ({old}): an older CRL, refused"
                        ),
                    });
                }
                let revoked = loaded.revoked.len();
                *s.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded);
                Reload::Reloaded { revoked }
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// How current the CRL in force is, now; `None` without a CRL file. (For health and
    /// operators: the hub fails closed when `failing_closed`.)
    pub fn crl_health(&self) -> Option<CrlHealth> {
        self.shared.crl_path.as_ref()?;
        let current = self.current();
        let outdated_by = current
            .next_update
            .and_then(|due| SystemTime::now().duration_since(due).ok())
            .unwrap_or_default();
        Some(CrlHealth {
            number: current.number.as_ref().map(ToString::to_string),
            next_update: current.next_update,
            outdated_by,
            grace: self.shared.crl_grace,
            failing_closed: outdated_by > self.shared.crl_grace,
        })
    }

    /// UNAVAILABLE when the CRL in force is outdated past the grace period: revocation can no
    /// longer be trusted, so the hub fails closed until operators install a current CRL.
    pub fn ensure_crl_usable(&self) -> Result<(), tonic::Status> {
        match self.crl_health() {
            Some(h) if h.failing_closed => {
                super::status::count_refusal("crl_outdated");
                Err(tonic::Status::unavailable(format!(
                    "the hub's certificate revocation list is outdated: its nextUpdate passed {} s ago, beyond the grace period of {} s (crl_grace); the hub refuses calls until its operators install a current CRL",
                    h.outdated_by.as_secs(),
                    h.grace.as_secs()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Polls the CRL file every `every` and reloads it when it changes, until the returned
    /// guard is dropped. `None` when no CRL file is configured. Also reports, in the log and
    /// the metrics, a CRL that became outdated or started failing closed.
    pub fn watch(&self, every: Duration) -> Option<AbortOnDrop> {
        let path = self.shared.crl_path.clone()?;
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(MIN_POLL));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // (outdated, failing closed) as last reported.
            let mut reported = (false, false);
            loop {
                tick.tick().await;
                if let Some(h) = this.crl_health() {
                    report_crl_health(&path, &h, &mut reported);
                }
                let tls = this.clone();
                match tokio::task::spawn_blocking(move || tls.reload_if_changed()).await {
                    Ok(Reload::Unchanged) => {}
                    Ok(Reload::Reloaded { revoked }) => tracing::info!(
                        crl = %path.display(),
                        revoked,
                        "reloaded the certificate revocation list"
                    ),
                    Ok(Reload::Failed(e)) => {
                        tracing::error!("{e}; the previous revocation list stays in force")
                    }
                    Err(e) => tracing::error!("CRL reload task failed: {e}"),
                }
            }
        });
        Some(AbortOnDrop(task))
    }

    /// Accepts connections on `listener` within `limits` and yields those that completed a
    /// TLS handshake, registered in `connections` (for their idle timeout).
    pub fn incoming(
        &self,
        listener: TcpListener,
        limits: &Limits,
        connections: Connections,
    ) -> TlsIncoming {
        TlsIncoming {
            listener,
            tls: self.clone(),
            limits: limits.clone(),
            connections,
            open: Arc::new(Semaphore::new(limits.max_connections)),
            per_source: Arc::default(),
            handshakes: JoinSet::new(),
            backoff: None,
        }
    }
}

/// Logs a change in the CRL's currency and sets its gauges
/// (`coalition_crl_outdated_seconds`, `coalition_crl_failing_closed`).
fn report_crl_health(path: &Path, h: &CrlHealth, reported: &mut (bool, bool)) {
    metrics::gauge!("coalition_crl_outdated_seconds").set(h.outdated_by.as_secs_f64());
    metrics::gauge!("coalition_crl_failing_closed").set(if h.failing_closed { 1.0 } else { 0.0 });
    let now = (!h.outdated_by.is_zero(), h.failing_closed);
    if now == *reported {
        return;
    }
    *reported = now;
    match now {
        (_, true) => tracing::error!(
            crl = %path.display(),
            outdated_s = h.outdated_by.as_secs(),
            grace_s = h.grace.as_secs(),
            "the certificate revocation list is outdated beyond its grace period: refusing every call until a current CRL is installed"
        ),
        (true, false) => tracing::warn!(
            crl = %path.display(),
            outdated_s = h.outdated_by.as_secs(),
            grace_s = h.grace.as_secs(),
            "the certificate revocation list is past its nextUpdate: install a current one before the grace period ends, or the hub refuses every call"
        ),
        (false, false) => {
            tracing::info!(crl = %path.display(), "the certificate revocation list is current again")
        }
    }
}

/// Aborts a background task when dropped.
pub struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The serial number of a DER certificate as lowercase hex, for messages.
pub fn serial_hex(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    Some(hex::encode(serial_bytes(cert.raw_serial())))
}

/// A DER INTEGER's content without the leading zero bytes that keep it positive.
fn serial_bytes(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    &raw[start..]
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

fn load_crl_file(
    path: &Path,
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cas: &[CertificateDer<'static>],
    roots: &Arc<RootCertStore>,
) -> Result<Loaded, TlsError> {
    let crl_error = |reason: String| TlsError::Crl {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| crl_error(e.to_string()))?;
    let parsed = parse_crls(&pem, cas).map_err(crl_error)?;
    let config =
        build_config(chain, key, roots, parsed.crls).map_err(|e| crl_error(e.to_string()))?;
    Ok(Loaded {
        config,
        revoked: parsed.revoked,
        number: parsed.number,
        next_update: parsed.next_update,
    })
}

/// Checks a CRL file's contents as the hub does when it loads one (PEM, every CRL parsed and
/// signed by one of `cas`), without building a TLS configuration: the pure part of the CRL
/// loader, public for the fuzz target (`coalition_hub::fuzzing::crl`). Returns how many CRLs it
/// holds, or why the file would be refused.
pub fn check_crl_pem(pem: &[u8], cas: &[CertificateDer<'static>]) -> Result<usize, String> {
    parse_crls(pem, cas).map(|parsed| parsed.crls.len())
}

/// What a CRL file holds.
struct ParsedCrls {
    crls: Vec<CertificateRevocationListDer<'static>>,
    revoked: HashSet<(Vec<u8>, Vec<u8>)>,
    number: Option<BigUint>,
    next_update: Option<SystemTime>,
}

/// The CRLs in `pem`, the (issuer, serial) pairs they revoke, their highest CRL number and
/// earliest `nextUpdate`. Every CRL must be issued by one of `cas` and carry that CA's valid
/// signature; otherwise the whole file is refused.
fn parse_crls(pem: &[u8], cas: &[CertificateDer<'static>]) -> Result<ParsedCrls, String> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if crls.is_empty() {
        return Err("holds no PEM `X509 CRL` block".into());
    }
    let mut revoked = HashSet::new();
    let mut numbers = Vec::new();
    let mut next_update: Option<SystemTime> = None;
    for (n, der) in crls.iter().enumerate() {
        let n = n + 1;
        let (rest, crl) = CertificateRevocationList::from_der(der.as_ref())
            .map_err(|e| format!("CRL {n} does not parse: {e}"))?;
        if !rest.is_empty() {
            return Err(format!("CRL {n} has trailing bytes"));
        }
        let issuer = crl.issuer().as_raw();
        let mut signed = None;
        for ca in cas {
            if let Ok((_, ca)) = X509Certificate::from_der(ca.as_ref())
                && ca.subject().as_raw() == issuer
            {
                signed = Some(crl.verify_signature(ca.public_key()).is_ok());
                if signed == Some(true) {
                    break;
                }
            }
        }
        match signed {
            None => {
                return Err(format!(
                    "CRL {n} is issued by '{}', not by the coalition CA",
                    crl.issuer()
                ));
            }
            Some(false) => {
                return Err(format!(
                    "CRL {n}'s signature does not verify with the coalition CA's key"
                ));
            }
            Some(true) => {}
        }
        for entry in crl.iter_revoked_certificates() {
            revoked.insert((issuer.to_vec(), serial_bytes(entry.raw_serial()).to_vec()));
        }
        numbers.push(crl.crl_number().cloned());
        if let Some(due) = crl.next_update() {
            let due = SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_secs(
                    u64::try_from(due.timestamp()).unwrap_or(0),
                ))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            next_update = Some(next_update.map_or(due, |d| d.min(due)));
        }
    }
    let number = numbers
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .and_then(|n| n.into_iter().max());
    Ok(ParsedCrls {
        crls,
        revoked,
        number,
        next_update,
    })
}

fn build_config(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    roots: &Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls)
        // Member certificates are issued directly by the coalition CA (the trust anchor).
        .only_check_end_entity_revocation()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.to_vec(), key.clone_key())
        .map_err(|e| TlsError::Identity(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepted connections whose TLS handshake succeeded, for
/// `Server::serve_with_incoming_shutdown`. Handshakes run as separate tasks, so a slow client
/// never holds up the others; failures are logged and skipped, never ending the stream.
/// Dropping it closes the listening socket and abandons handshakes in progress.
///
/// Bounds: at most `max_handshakes_per_source` handshakes in progress per source IP (a
/// further connection from it is closed unread), each within `handshake_timeout`; at most
/// `max_handshakes` in all (then accepting pauses); at most `max_connections` connections,
/// handshakes included (a further one is closed unread).
pub struct TlsIncoming {
    listener: TcpListener,
    tls: HubTls,
    limits: Limits,
    connections: Connections,
    /// One permit per connection, from accept to close.
    open: Arc<Semaphore>,
    /// Handshakes in progress per source address.
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
    handshakes: JoinSet<Option<Conn>>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// One handshake counted against its source address until dropped.
struct SourceSlot {
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self
            .per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl TlsIncoming {
    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let slot = {
            let mut map = self
                .per_source
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(peer.ip()).or_insert(0);
            if *n >= self.limits.max_handshakes_per_source {
                super::status::count_refusal("handshakes_per_source");
                tracing::debug!(
                    %peer,
                    limit = self.limits.max_handshakes_per_source,
                    "closed a connection: too many TLS handshakes in progress from its address (max_handshakes_per_source)"
                );
                return;
            }
            *n += 1;
            SourceSlot {
                per_source: self.per_source.clone(),
                ip: peer.ip(),
            }
        };
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            super::status::count_refusal("connections");
            tracing::warn!(
                %peer,
                limit = self.limits.max_connections,
                "closed a new connection: the hub has its limit of open connections (max_connections)"
            );
            return;
        };
        // Without TCP_NODELAY small HTTP/2 frames wait for delayed ACKs (~40 ms per call).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, "setting TCP_NODELAY failed: {e}");
        }
        let acceptor = TlsAcceptor::from(self.tls.server_config());
        let limits = self.limits.clone();
        let connections = self.connections.clone();
        self.handshakes.spawn(async move {
            let accepted =
                tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await;
            drop(slot);
            match accepted {
                Ok(Ok(stream)) => Some(Conn {
                    inner: stream,
                    _permit: permit,
                    connection: connections.open(peer),
                    read: 0,
                    timer: Box::pin(tokio::time::sleep(limits.preface_timeout)),
                    preface_timeout: limits.preface_timeout,
                    idle_timeout: limits.idle_timeout,
                }),
                Ok(Err(e)) => {
                    log_handshake_failure(peer, &e);
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

/// A connection after its TLS handshake, as tonic serves it. Closed (a read error) when the
/// client has not sent the HTTP/2 preface within `preface_timeout` of the handshake, or has
/// had no call open for `idle_timeout`. Holds its connection permit until dropped.
pub struct Conn {
    inner: TlsStream<TcpStream>,
    _permit: OwnedSemaphorePermit,
    connection: ConnectionHandle,
    /// Bytes read so far.
    read: u64,
    timer: Pin<Box<tokio::time::Sleep>>,
    preface_timeout: Duration,
    idle_timeout: Duration,
}

impl Conn {
    /// Polls the preface / idle timer: an error when the connection is to be closed.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Result<(), std::io::Error> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let timed_out = |what: String| {
                metrics::counter!("coalition_connections_closed_total", "reason" => "timeout")
                    .increment(1);
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
            };
            if self.read < PREFACE_BYTES {
                return timed_out(format!(
                    "no HTTP/2 preface within {} ms of the TLS handshake (preface_timeout)",
                    self.preface_timeout.as_millis()
                ));
            }
            let now = tokio::time::Instant::now();
            let next = match self.connection.activity.idle_since() {
                Some(since) if since.elapsed() >= self.idle_timeout => {
                    return timed_out(format!(
                        "no call for {} s (idle_timeout)",
                        self.idle_timeout.as_secs()
                    ));
                }
                Some(since) => now + (self.idle_timeout - since.elapsed()),
                None => now + self.idle_timeout,
            };
            self.timer.as_mut().reset(next);
        }
        Ok(())
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.poll_timer(cx) {
            tracing::debug!("closing a connection: {e}");
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = buf.filled().len() - before;
            if this.read < PREFACE_BYTES && this.read + n as u64 >= PREFACE_BYTES {
                // The preface arrived: from now on the idle timeout applies.
                this.timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + this.idle_timeout);
            }
            this.read += n as u64;
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = TlsConnectInfo<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

fn log_handshake_failure(peer: SocketAddr, e: &std::io::Error) {
    let revoked = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
            )
        });
    if revoked {
        tracing::warn!(%peer, "refused a revoked client certificate");
    } else {
        tracing::debug!(%peer, "TLS handshake failed: {e}");
    }
}

/// Accept errors that concern one connection only; others (like running out of file
/// descriptors) pause accepting briefly instead of spinning.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset | K::Interrupted
    )
}

impl Stream for TlsIncoming {
    type Item = Result<Conn, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = &mut this.backoff {
                if sleep.as_mut().poll(cx).is_pending() {
                    // Finished handshakes are still handed over below.
                } else {
                    this.backoff = None;
                }
            }
            if this.backoff.is_none() {
                while this.handshakes.len() < this.limits.max_handshakes {
                    match this.listener.poll_accept(cx) {
                        Poll::Ready(Ok((tcp, peer))) => this.start_handshake(tcp, peer),
                        Poll::Ready(Err(e)) if is_connection_error(&e) => {
                            tracing::debug!("accepting a connection failed: {e}");
                        }
                        Poll::Ready(Err(e)) => {
                            tracing::warn!("accepting connections failed: {e}; retrying shortly");
                            this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
                if this.backoff.is_some() {
                    // Poll the new timer so that it wakes this stream.
                    continue;
                }
            }
            // Either the listener or the backoff timer is registered to wake us, or
            // `max_handshakes` are running and the join set will.
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(stream)))) => return Poll::Ready(Some(Ok(stream))),
                Poll::Ready(Some(Ok(None))) => {}
                Poll::Ready(Some(Err(e))) => {
                    if e.is_panic() {
                        tracing::error!("a TLS handshake task panicked: {e}");
                    }
                }
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MemberId;
    use crate::pki::CertDir;

    fn id(s: &str) -> MemberId {
        MemberId::parse(s).expect("id")
    }

    fn cert_der(certs: &CertDir, member: &str) -> Vec<u8> {
        let tls = certs.member_tls(&id(member)).expect("member tls");
        CertificateDer::from_pem_slice(&tls.cert_pem)
            .expect("pem")
            .to_vec()
    }

    fn pki() -> (tempfile::TempDir, CertDir) {
        let dir = tempfile::tempdir().expect("tmp");
        let certs = CertDir::new(dir.path().join("certs"));
        certs.init(&[id("acme"), id("globex")]).expect("init");
        (dir, certs)
    }

    #[test]
    fn revocation_follows_the_crl_file_and_survives_bad_rewrites() {
        let (_dir, certs) = pki();
        let crl = certs.crl_file();
        let tls = HubTls::load(
            &certs.hub_tls().expect("hub"),
            Some(&crl),
            DEFAULT_CRL_GRACE,
        )
        .expect("load");
        let (acme, globex) = (cert_der(&certs, "acme"), cert_der(&certs, "globex"));
        assert!(!tls.is_revoked(&acme));
        assert!(matches!(tls.reload_if_changed(), Reload::Unchanged));

        let revocation = certs.revoke(&id("acme")).expect("revoke");
        assert_eq!(serial_hex(&acme), Some(revocation.serial.clone()));
        assert!(
            matches!(tls.reload_if_changed(), Reload::Reloaded { revoked: 1 }),
            "reloaded"
        );
        assert!(tls.is_revoked(&acme));
        assert!(!tls.is_revoked(&globex));
        assert!(matches!(tls.reload_if_changed(), Reload::Unchanged));

        // Garbage, then a missing file: each reported once, the previous CRL stays.
        std::fs::write(&crl, b"not a CRL at all").expect("garbage");
        assert!(matches!(tls.reload_if_changed(), Reload::Failed(_)));
        assert!(tls.is_revoked(&acme));
        assert!(matches!(tls.reload_if_changed(), Reload::Unchanged));
        std::fs::remove_file(&crl).expect("rm");
        assert!(matches!(tls.reload_if_changed(), Reload::Failed(_)));
        assert!(matches!(tls.reload_if_changed(), Reload::Unchanged));
        assert!(tls.is_revoked(&acme));
        assert!(!tls.is_revoked(&globex));
        assert!(!tls.is_revoked(b"not a certificate"));
    }

    #[test]
    fn a_crl_that_does_not_load_is_refused_at_start() {
        let (dir, certs) = pki();
        let hub = certs.hub_tls().expect("hub");
        let missing = dir.path().join("missing.pem");
        assert!(HubTls::load(&hub, Some(&missing), DEFAULT_CRL_GRACE).is_err());

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        )
        .expect("write");
        let err = HubTls::load(&hub, Some(&garbage), DEFAULT_CRL_GRACE)
            .err()
            .expect("garbage refused");
        assert!(err.to_string().contains("does not parse"), "{err}");

        // Another CA with the same name: the issuer matches, the signature does not.
        let other = CertDir::new(dir.path().join("other"));
        other.init(&[]).expect("other pki");
        let err = HubTls::load(&hub, Some(&other.crl_file()), DEFAULT_CRL_GRACE)
            .err()
            .expect("foreign CRL refused");
        assert!(
            err.to_string().contains("signature does not verify"),
            "{err}"
        );

        // Without a CRL nothing is revoked.
        let tls = HubTls::load(&hub, None, DEFAULT_CRL_GRACE).expect("no crl");
        certs.revoke(&id("acme")).expect("revoke");
        assert!(matches!(tls.reload_if_changed(), Reload::Unchanged));
        assert!(!tls.is_revoked(&cert_der(&certs, "acme")));
    }

    #[test]
    fn crl_health_reports_the_number_and_next_update_in_force() {
        let (_dir, certs) = pki();
        let hub = certs.hub_tls().expect("hub");
        assert_eq!(
            HubTls::load(&hub, None, DEFAULT_CRL_GRACE)
                .expect("no crl")
                .crl_health(),
            None
        );
        let tls = HubTls::load(&hub, Some(&certs.crl_file()), Duration::ZERO).expect("load");
        let h = tls.crl_health().expect("a CRL");
        assert_eq!(h.number.as_deref(), Some("1"));
        assert!(h.next_update.is_some_and(|d| d > SystemTime::now()));
        assert_eq!((h.outdated_by, h.failing_closed), (Duration::ZERO, false));
        assert!(tls.ensure_crl_usable().is_ok());
        certs.revoke(&id("acme")).expect("revoke");
        assert!(matches!(tls.reload_if_changed(), Reload::Reloaded { .. }));
        assert_eq!(
            tls.crl_health().expect("a CRL").number.as_deref(),
            Some("2")
        );
    }

    #[test]
    fn serials_compare_without_leading_zeros() {
        assert_eq!(serial_bytes(&[0, 0x80, 1]), &[0x80, 1]);
        assert_eq!(serial_bytes(&[0]), &[0]);
        assert_eq!(serial_bytes(&[]), &[] as &[u8]);
    }
}
