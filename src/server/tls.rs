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

use crate::pki::TlsConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most handshakes in progress at once; beyond it the hub stops accepting until one ends.
const MAX_PENDING_HANDSHAKES: usize = 1024;

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
    /// by that CA) from `crl` if given. Without `crl` no revocation is checked.
    pub fn load(tls: &TlsConfig, crl: Option<&Path>) -> Result<HubTls, TlsError> {
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
            },
        };
        Ok(HubTls {
            shared: Arc::new(Shared {
                chain,
                key,
                cas,
                roots,
                crl_path: crl.map(Path::to_owned),
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
                let revoked = loaded.revoked.len();
                *s.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded);
                Reload::Reloaded { revoked }
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// Polls the CRL file every `every` and reloads it when it changes, until the returned
    /// guard is dropped. `None` when no CRL file is configured.
    pub fn watch(&self, every: Duration) -> Option<AbortOnDrop> {
        let path = self.shared.crl_path.clone()?;
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(MIN_POLL));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
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

    /// Accepts connections on `listener` and yields those that completed a TLS handshake.
    pub fn incoming(&self, listener: TcpListener) -> TlsIncoming {
        TlsIncoming {
            listener,
            tls: self.clone(),
            handshakes: JoinSet::new(),
            backoff: None,
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
    let (crls, revoked) = parse_crls(&pem, cas).map_err(crl_error)?;
    let config = build_config(chain, key, roots, crls).map_err(|e| crl_error(e.to_string()))?;
    Ok(Loaded { config, revoked })
}

/// Checks a CRL file's contents as the hub does when it loads one (PEM, every CRL parsed and
/// signed by one of `cas`), without building a TLS configuration: the pure part of the CRL
/// loader, public for the fuzz target (`coalition_hub::fuzzing::crl`). Returns how many CRLs it
/// holds, or why the file would be refused.
pub fn check_crl_pem(pem: &[u8], cas: &[CertificateDer<'static>]) -> Result<usize, String> {
    parse_crls(pem, cas).map(|parsed| parsed.0.len())
}

/// The CRLs in `pem` and the (issuer, serial) pairs they revoke. Every CRL must be issued by
/// one of `cas` and carry that CA's valid signature; otherwise the whole file is refused.
#[allow(clippy::type_complexity)]
fn parse_crls(
    pem: &[u8],
    cas: &[CertificateDer<'static>],
) -> Result<
    (
        Vec<CertificateRevocationListDer<'static>>,
        HashSet<(Vec<u8>, Vec<u8>)>,
    ),
    String,
> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if crls.is_empty() {
        return Err("holds no PEM `X509 CRL` block".into());
    }
    let mut revoked = HashSet::new();
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
    }
    Ok((crls, revoked))
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
pub struct TlsIncoming {
    listener: TcpListener,
    tls: HubTls,
    handshakes: JoinSet<Option<TlsStream<TcpStream>>>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TlsIncoming {
    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        // Without TCP_NODELAY small HTTP/2 frames wait for delayed ACKs (~40 ms per call).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, "setting TCP_NODELAY failed: {e}");
        }
        let acceptor = TlsAcceptor::from(self.tls.server_config());
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some(stream),
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
    type Item = Result<TlsStream<TcpStream>, Infallible>;

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
                while this.handshakes.len() < MAX_PENDING_HANDSHAKES {
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
            // MAX_PENDING_HANDSHAKES are running and the join set will.
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
        let tls = HubTls::load(&certs.hub_tls().expect("hub"), Some(&crl)).expect("load");
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
        assert!(HubTls::load(&hub, Some(&missing)).is_err());

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        )
        .expect("write");
        let err = HubTls::load(&hub, Some(&garbage))
            .err()
            .expect("garbage refused");
        assert!(err.to_string().contains("does not parse"), "{err}");

        // Another CA with the same name: the issuer matches, the signature does not.
        let other = CertDir::new(dir.path().join("other"));
        other.init(&[]).expect("other pki");
        let err = HubTls::load(&hub, Some(&other.crl_file()))
            .err()
            .expect("foreign CRL refused");
        assert!(
            err.to_string().contains("signature does not verify"),
            "{err}"
        );

        // Without a CRL nothing is revoked.
        let tls = HubTls::load(&hub, None).expect("no crl");
        certs.revoke(&id("acme")).expect("revoke");
        assert!(matches!(tls.reload_if_changed(), Reload::Unchanged));
        assert!(!tls.is_revoked(&cert_der(&certs, "acme")));
    }

    #[test]
    fn serials_compare_without_leading_zeros() {
        assert_eq!(serial_bytes(&[0, 0x80, 1]), &[0x80, 1]);
        assert_eq!(serial_bytes(&[0]), &[0]);
        assert_eq!(serial_bytes(&[]), &[] as &[u8]);
    }
}
