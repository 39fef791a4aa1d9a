//! Development PKI and key files: the coalition CA, the hub's TLS certificate, and per-member
//! TLS certificates and ed25519 signing keys, laid out under one directory (`certs/`).
//!
//! ```text
//! certs/ca.pem  ca.key                       coalition CA (signs every TLS certificate)
//! certs/hub.pem hub.key                      the hub's server certificate (localhost, 127.0.0.1, ::1)
//! certs/hub.sign.key hub.sign.pub            the hub's ed25519 key (signs the genesis and checkpoints)
//! certs/members/<id>.pem <id>.key            member TLS client certificate, SAN urn:coalition:member:<id>
//! certs/members/<id>.sign.key <id>.sign.pub  member ed25519 signing key (PKCS#8 PEM) and public key (hex)
//! certs/revoked.txt                          revoked certificates: serial (hex), unix time, member
//! certs/crl.pem                              the CA's CRL listing every revoked serial (`coalition serve --crl`)
//! ```
//! Private keys (`*.key`) are written with mode 0600 and are never committed (see .gitignore).
//!
//! Signing keys (`*.sign.key`) are written as PKCS#8 v1 ("OneAsymmetricKey" version 0, RFC 5208
//! and RFC 8410 section 7: the 32-byte seed only, no public key), the form OpenSSL 3.0 and
//! Python `cryptography` read; keys written earlier as PKCS#8 v2 (RFC 5958, public key
//! embedded) are still read. See [`signing_key_pem`].

use crate::membership::MemberId;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::fs;
use std::path::{Path, PathBuf};
use thiserror::Error;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

/// How long a CRL written by [`CertDir::revoke`] is current (its `nextUpdate`).
pub const CRL_VALIDITY_SECS: i64 = 30 * 24 * 60 * 60;

/// PKI and key-file failures.
#[derive(Debug, Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is missing.
    #[error(
        "{path} does not exist: create development certificates and keys with `coalition pki init [--member ID]`, or point --certs at your PKI directory"
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A file exists but is not what it should be.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// PEM material for one side of a mutual-TLS connection.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// The coalition CA certificate that peers must chain to.
    pub ca_pem: Vec<u8>,
    /// This side's certificate.
    pub cert_pem: Vec<u8>,
    /// This side's private key.
    pub key_pem: Vec<u8>,
}

/// What [`CertDir::revoke`] did.
#[derive(Debug)]
pub struct Revocation {
    /// The member whose certificate is revoked.
    pub member: MemberId,
    /// The certificate's serial number (lowercase hex, no leading zero bytes).
    pub serial: String,
    /// False if that serial was already revoked (the CRL is rewritten anyway).
    pub newly_revoked: bool,
    /// Serials the CRL now lists.
    pub revoked_total: usize,
    /// The CRL's number.
    pub crl_number: u64,
    /// The CRL file written.
    pub crl: PathBuf,
}

/// One line of `revoked.txt`.
struct RevokedEntry {
    serial: Vec<u8>,
    at_secs: i64,
    member: String,
}

/// What [`CertDir::keygen`] made.
#[derive(Debug)]
pub struct KeyRequest {
    /// The member's public signing key (what admission takes).
    pub public_key: VerifyingKey,
    /// The certificate signing request to send to the coalition CA.
    pub request: PathBuf,
    /// Every file written.
    pub created: Created,
}

/// What [`CertDir::sign_request`] issued.
#[derive(Debug)]
pub struct Issued {
    /// The member's certificate (PEM).
    pub certificate: PathBuf,
    /// Its serial number (lowercase hex, no leading zero bytes), as `pki revoke` reports it.
    pub serial: String,
    /// The coalition CA certificate the member needs beside it.
    pub ca: PathBuf,
}

/// A directory of PKI files in the layout above.
#[derive(Clone, Debug)]
pub struct CertDir {
    root: PathBuf,
}

/// What `init` created (paths), so a CLI can report it.
#[derive(Debug, Default)]
pub struct Created {
    /// Files written.
    pub files: Vec<PathBuf>,
}

impl CertDir {
    /// The layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CertDir { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    /// The CRL file: every revoked certificate, signed by the CA (see [`CertDir::revoke`]).
    pub fn crl_file(&self) -> PathBuf {
        self.root.join("crl.pem")
    }
    fn revoked_file(&self) -> PathBuf {
        self.root.join("revoked.txt")
    }
    fn member_file(&self, id: &MemberId, ext: &str) -> PathBuf {
        self.root.join("members").join(format!("{id}.{ext}"))
    }

    /// Path of a member's ed25519 signing key.
    pub fn signing_key_path(&self, id: &MemberId) -> PathBuf {
        self.member_file(id, "sign.key")
    }

    /// Creates whatever is missing: the CA, its CRL (listing nothing yet), the hub certificate,
    /// and for each member a TLS certificate and a signing key. Existing files are kept.
    pub fn init(&self, members: &[MemberId]) -> Result<Created, PkiError> {
        let mut created = Created::default();
        fs::create_dir_all(self.root.join("members")).map_err(|e| io(&self.root, e))?;
        if !self.ca_cert().exists() {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write(&self.ca_cert(), cert.pem().as_bytes(), false, &mut created)?;
            write(
                &self.ca_key(),
                key.serialize_pem().as_bytes(),
                true,
                &mut created,
            )?;
        }
        if !self.crl_file().exists() {
            let pem = self.crl_pem(&self.revoked_entries()?, 1)?;
            write(&self.crl_file(), pem.as_bytes(), false, &mut created)?;
        }
        if !self.root.join("hub.pem").exists() {
            self.issue(
                "hub",
                vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
                None,
                ExtendedKeyUsagePurpose::ServerAuth,
                &self.root.join("hub.pem"),
                &self.root.join("hub.key"),
                &mut created,
            )?;
        }
        if !self.hub_signing_key_path().exists() {
            signing_key_files(
                &self.hub_signing_key_path(),
                &self.root.join("hub.sign.pub"),
                &mut created,
            )?;
        }
        for id in members {
            self.add_member(id, &mut created)?;
        }
        Ok(created)
    }

    /// Creates a member's TLS certificate and signing key if missing.
    pub fn add_member(&self, id: &MemberId, created: &mut Created) -> Result<(), PkiError> {
        let cert = self.member_file(id, "pem");
        if !cert.exists() {
            self.issue(
                id.as_str(),
                Vec::new(),
                Some(id.uri()),
                ExtendedKeyUsagePurpose::ClientAuth,
                &cert,
                &self.member_file(id, "key"),
                created,
            )?;
        }
        signing_key_files(
            &self.signing_key_path(id),
            &self.member_file(id, "sign.pub"),
            created,
        )
    }

    /// A member's public signing key, from `members/<id>.sign.pub` (64 hex characters).
    pub fn public_key(&self, id: &MemberId) -> Result<VerifyingKey, PkiError> {
        let path = self.member_file(id, "sign.pub");
        parse_public_key_hex(&read_string(&path)?).map_err(|reason| invalid(&path, reason))
    }

    /// Path of the hub's ed25519 checkpoint-signing key.
    pub fn hub_signing_key_path(&self) -> PathBuf {
        self.root.join("hub.sign.key")
    }

    /// The hub's signing key: it signs the genesis and checkpoints (created by `init` when
    /// missing, with `hub.sign.pub`).
    pub fn hub_signing_key(&self) -> Result<SigningKey, PkiError> {
        load_signing_key(&self.hub_signing_key_path())
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        common_name: &str,
        dns_or_ip: Vec<String>,
        uri: Option<String>,
        usage: ExtendedKeyUsagePurpose,
        cert_path: &Path,
        key_path: &Path,
        created: &mut Created,
    ) -> Result<(), PkiError> {
        let issuer = self.ca_issuer()?;
        let params = leaf_params(common_name, dns_or_ip, uri, usage)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(cert_path, cert.pem().as_bytes(), false, created)?;
        write(key_path, key.serialize_pem().as_bytes(), true, created)?;
        Ok(())
    }

    /// Path of a member's certificate signing request, as [`CertDir::keygen`] writes it.
    pub fn request_path(&self, id: &MemberId) -> PathBuf {
        self.member_file(id, "csr")
    }

    /// Path of a member's TLS client certificate (`members/<id>.pem`).
    pub fn member_cert_path(&self, id: &MemberId) -> PathBuf {
        self.member_file(id, "pem")
    }

    /// On the member's own machine: makes its ed25519 signing key (`members/<id>.sign.key`,
    /// PKCS#8 v1, and `.sign.pub`), its TLS private key (`members/<id>.key`, ECDSA P-256) and
    /// a PKCS#10 certificate signing request for that TLS key (`members/<id>.csr`: common
    /// name `<id>`, SAN `urn:coalition:member:<id>`, signed with the TLS key). Private keys are
    /// written with mode 0600 and never leave this directory: the member sends the request and
    /// the public signing key to the coalition's admins. Refuses to replace existing keys.
    pub fn keygen(&self, id: &MemberId) -> Result<KeyRequest, PkiError> {
        let tls_key = self.member_file(id, "key");
        let sign_key = self.signing_key_path(id);
        for path in [&tls_key, &sign_key] {
            if path.exists() {
                return Err(invalid(
                    path,
                    "already exists; keygen never replaces a private key (move it away to make new keys)".into(),
                ));
            }
        }
        let mut created = Created::default();
        let key = KeyPair::generate()?;
        let mut params = leaf_params(
            id.as_str(),
            Vec::new(),
            Some(id.uri()),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        // The CA picks the serial; a request cannot carry one.
        params.serial_number = None;
        let csr = params.serialize_request(&key)?;
        write(&tls_key, key.serialize_pem().as_bytes(), true, &mut created)?;
        write(
            &self.request_path(id),
            csr.pem()?.as_bytes(),
            false,
            &mut created,
        )?;
        signing_key_files(&sign_key, &self.member_file(id, "sign.pub"), &mut created)?;
        Ok(KeyRequest {
            public_key: self.public_key(id)?,
            request: self.request_path(id),
            created,
        })
    }

    /// On the coalition CA's side: checks a member's certificate signing request (its
    /// signature: it was made with the key it carries; its subject: common name `id` and the
    /// one SAN `urn:coalition:member:<id>`, nothing else requested) and issues the member's
    /// TLS client certificate for that key with the same profile as [`CertDir::init`]'s member
    /// certificates (random serial, client authentication only), written to `out` (refused if
    /// it exists). No private key of the member is involved.
    pub fn sign_request(
        &self,
        csr_path: &Path,
        id: &MemberId,
        out: &Path,
    ) -> Result<Issued, PkiError> {
        let pem = read_string(csr_path)?;
        let request = CertificateSigningRequestParams::from_pem(&pem).map_err(|e| {
            invalid(
                csr_path,
                match e {
                    rcgen::Error::InvalidCertificationRequestSignature => "the request's signature does not verify: it was not signed with the key it carries, or was changed after signing; ask the member for a new one (`coalition keygen`)".into(),
                    rcgen::Error::CouldNotParseCertificationRequest => "not a PEM PKCS#10 certificate signing request (`-----BEGIN CERTIFICATE REQUEST-----`)".into(),
                    other => format!("unusable certificate signing request: {other}"),
                },
            )
        })?;
        check_request_subject(&request.params, id).map_err(|reason| invalid(csr_path, reason))?;
        if out.exists() {
            return Err(invalid(
                out,
                "already exists; revoke and move the old certificate away first".into(),
            ));
        }
        let params = leaf_params(
            id.as_str(),
            Vec::new(),
            Some(id.uri()),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let cert = params.signed_by(&request.public_key, &self.ca_issuer()?)?;
        let mut created = Created::default();
        write(out, cert.pem().as_bytes(), false, &mut created)?;
        let serial = X509Certificate::from_der(cert.der())
            .map(|(_, c)| hex::encode(strip_zeros(c.raw_serial())))
            .unwrap_or_default();
        Ok(Issued {
            certificate: out.to_owned(),
            serial,
            ca: self.ca_cert(),
        })
    }

    fn ca_issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let ca_key_pem = read_string(&self.ca_key())?;
        let ca_key =
            KeyPair::from_pem(&ca_key_pem).map_err(|e| invalid(&self.ca_key(), e.to_string()))?;
        let ca_pem = read_string(&self.ca_cert())?;
        Issuer::from_ca_cert_pem(&ca_pem, ca_key)
            .map_err(|e| invalid(&self.ca_cert(), e.to_string()))
    }

    /// Revokes `id`'s current TLS certificate: adds its serial number to `revoked.txt` and
    /// rewrites `crl.pem`, the CA-signed CRL of every revoked serial (a higher CRL number,
    /// `thisUpdate` now, `nextUpdate` in 30 days). A hub started with `--crl` on that file
    /// picks it up within its poll interval. To give the member a new certificate, delete
    /// `members/<id>.pem` and `.key` and run `init --member <id>` again.
    pub fn revoke(&self, id: &MemberId) -> Result<Revocation, PkiError> {
        let cert_path = self.member_file(id, "pem");
        let cert_der = CertificateDer::from_pem_file(&cert_path).map_err(|e| match e {
            rustls::pki_types::pem::Error::Io(source) => io(&cert_path, source),
            other => invalid(&cert_path, format!("not a PEM certificate ({other})")),
        })?;
        let (_, cert) = X509Certificate::from_der(cert_der.as_ref())
            .map_err(|e| invalid(&cert_path, format!("certificate does not parse: {e}")))?;
        let ca_der = CertificateDer::from_pem_file(self.ca_cert()).map_err(|e| match e {
            rustls::pki_types::pem::Error::Io(source) => io(&self.ca_cert(), source),
            other => invalid(&self.ca_cert(), format!("not a PEM certificate ({other})")),
        })?;
        let (_, ca) = X509Certificate::from_der(ca_der.as_ref())
            .map_err(|e| invalid(&self.ca_cert(), format!("certificate does not parse: {e}")))?;
        if cert.issuer().as_raw() != ca.subject().as_raw() {
            return Err(invalid(
                &cert_path,
                format!(
                    "issued by '{}', not by this directory's CA '{}'",
                    cert.issuer(),
                    ca.subject()
                ),
            ));
        }
        let serial = strip_zeros(cert.raw_serial()).to_vec();
        let mut entries = self.revoked_entries()?;
        let newly_revoked = !entries.iter().any(|e| e.serial == serial);
        if newly_revoked {
            entries.push(RevokedEntry {
                serial: serial.clone(),
                at_secs: ASN1Time::now().timestamp(),
                member: id.to_string(),
            });
            let mut text = String::from("# serial (hex)  revoked at (unix seconds)  member\n");
            for e in &entries {
                text.push_str(&format!(
                    "{} {} {}\n",
                    hex::encode(&e.serial),
                    e.at_secs,
                    e.member
                ));
            }
            write_replacing(&self.revoked_file(), text.as_bytes())?;
        }
        let crl_number = self.previous_crl_number()?.saturating_add(1);
        let pem = self.crl_pem(&entries, crl_number)?;
        write_replacing(&self.crl_file(), pem.as_bytes())?;
        Ok(Revocation {
            member: id.clone(),
            serial: hex::encode(&serial),
            newly_revoked,
            revoked_total: entries.len(),
            crl_number,
            crl: self.crl_file(),
        })
    }

    fn revoked_entries(&self) -> Result<Vec<RevokedEntry>, PkiError> {
        let path = self.revoked_file();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path, e)),
        };
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                invalid(
                    &path,
                    format!(
                        "line {}: expected 'SERIAL_HEX UNIX_SECONDS MEMBER', got '{line}'",
                        n + 1
                    ),
                )
            };
            let mut fields = line.split_whitespace();
            let (Some(serial), Some(at), Some(member), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            entries.push(RevokedEntry {
                serial: hex::decode(serial).map_err(|_| bad())?,
                at_secs: at.parse().map_err(|_| bad())?,
                member: member.to_string(),
            });
        }
        Ok(entries)
    }

    /// The number of the CRL now in `crl.pem` (0 if there is none).
    fn previous_crl_number(&self) -> Result<u64, PkiError> {
        let path = self.crl_file();
        if !path.exists() {
            return Ok(0);
        }
        let der =
            rustls::pki_types::CertificateRevocationListDer::from_pem_file(&path).map_err(|e| {
                invalid(
                    &path,
                    format!("not a PEM CRL ({e}); delete it to start over"),
                )
            })?;
        let (_, crl) = CertificateRevocationList::from_der(der.as_ref()).map_err(|e| {
            invalid(
                &path,
                format!("CRL does not parse ({e}); delete it to start over"),
            )
        })?;
        let bytes = crl
            .crl_number()
            .map(|n| n.to_bytes_be())
            .unwrap_or_default();
        let bytes = strip_zeros(&bytes);
        if bytes.len() > 8 {
            return Err(invalid(&path, "CRL number exceeds 64 bits".into()));
        }
        Ok(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
    }

    fn crl_pem(&self, entries: &[RevokedEntry], crl_number: u64) -> Result<String, PkiError> {
        let time = |secs: i64| {
            ASN1Time::from_timestamp(secs)
                .map(|t| t.to_datetime())
                .map_err(|e| invalid(&self.revoked_file(), format!("time {secs}: {e}")))
        };
        let now = ASN1Time::now().timestamp();
        let params = CertificateRevocationListParams {
            this_update: time(now)?,
            next_update: time(now.saturating_add(CRL_VALIDITY_SECS))?,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs: entries
                .iter()
                .map(|e| {
                    Ok(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(&e.serial),
                        revocation_time: time(e.at_secs)?,
                        reason_code: None,
                        invalidity_date: None,
                    })
                })
                .collect::<Result<_, PkiError>>()?,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.ca_issuer()?)?.pem()?)
    }

    /// The hub's TLS material.
    pub fn hub_tls(&self) -> Result<TlsConfig, PkiError> {
        Ok(TlsConfig {
            ca_pem: read(&self.ca_cert())?,
            cert_pem: read(&self.root.join("hub.pem"))?,
            key_pem: read(&self.root.join("hub.key"))?,
        })
    }

    /// A member's TLS client material.
    pub fn member_tls(&self, id: &MemberId) -> Result<TlsConfig, PkiError> {
        Ok(TlsConfig {
            ca_pem: read(&self.ca_cert())?,
            cert_pem: read(&self.member_file(id, "pem"))?,
            key_pem: read(&self.member_file(id, "key"))?,
        })
    }

    /// A member's signing key.
    pub fn signing_key(&self, id: &MemberId) -> Result<SigningKey, PkiError> {
        load_signing_key(&self.signing_key_path(id))
    }
}

/// Creates an ed25519 signing key (PKCS#8 PEM, private) and its hex public key if missing.
fn signing_key_files(
    key_path: &Path,
    pub_path: &Path,
    created: &mut Created,
) -> Result<(), PkiError> {
    if key_path.exists() {
        return Ok(());
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = signing_key_pem(&key).map_err(|e| invalid(key_path, e.to_string()))?;
    write(key_path, pem.as_bytes(), true, created)?;
    let public = hex::encode(key.verifying_key().as_bytes()) + "\n";
    write(pub_path, public.as_bytes(), false, created)
}

/// Makes a new ed25519 signing key and writes it to `path` (PKCS#8 PEM, mode 0600), which must
/// not exist yet.
pub fn create_signing_key_file(path: &Path) -> Result<SigningKey, PkiError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = signing_key_pem(&key).map_err(|e| invalid(path, e.to_string()))?;
    write(path, pem.as_bytes(), true, &mut Created::default())?;
    Ok(key)
}

/// Parses an ed25519 public key written as 64 hex characters.
pub fn parse_public_key_hex(text: &str) -> Result<VerifyingKey, String> {
    let raw = hex::decode(text.trim()).map_err(|e| format!("not a hex public key: {e}"))?;
    crate::membership::parse_public_key(&raw)
}

/// An ed25519 signing key as a PKCS#8 v1 PEM private key (`-----BEGIN PRIVATE KEY-----`):
/// version 0, algorithm 1.3.101.112 (id-Ed25519) without parameters, and the 32-byte seed as a
/// `CurvePrivateKey` OCTET STRING, with no public key (RFC 8410 section 7). ed25519-dalek's own
/// `to_pkcs8_pem` writes v2 with the public key, which OpenSSL 3.0 and Python `cryptography`
/// refuse.
pub fn signing_key_pem(key: &SigningKey) -> ed25519_dalek::pkcs8::Result<Zeroizing<String>> {
    let seed_only = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    seed_only.to_pkcs8_pem(LineEnding::LF)
}

/// Reads an ed25519 signing key from a PKCS#8 PEM file: v1 (seed only) or v2 (with the public
/// key, which must match the seed).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, PkiError> {
    let pem = read_string(path)?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| invalid(path, format!("not an ed25519 PKCS#8 PEM private key ({e})")))
}

/// The profile of every leaf certificate the CA issues: common name, SANs, a random positive
/// 16-byte serial (the CRL names certificates by serial), one extended key usage.
fn leaf_params(
    common_name: &str,
    dns_or_ip: Vec<String>,
    uri: Option<String>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(dns_or_ip)?;
    let mut serial = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(uri) = uri {
        params
            .subject_alt_names
            .push(SanType::URI(uri.as_str().try_into()?));
    }
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// A member's certificate request must name exactly that member: common name `<id>` (and no
/// other subject attribute) and the one SAN `urn:coalition:member:<id>`, and ask for nothing a
/// member certificate does not have (a CA, other key usages).
fn check_request_subject(params: &CertificateParams, id: &MemberId) -> Result<(), String> {
    let names: Vec<(String, String)> = params
        .distinguished_name
        .iter()
        .map(|(ty, value)| {
            let value = match value {
                rcgen::DnValue::PrintableString(s) => s.to_string(),
                rcgen::DnValue::Utf8String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            let ty = match ty {
                DnType::CommonName => "CN".to_string(),
                other => format!("{other:?}"),
            };
            (ty, value)
        })
        .collect();
    let expected_uri = id.uri();
    let sans: Vec<String> = params
        .subject_alt_names
        .iter()
        .map(|san| match san {
            SanType::URI(uri) => uri.as_str().to_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    let shown = |v: &[String]| crate::text::escape_control(&v.join(", ")).into_owned();
    if names != [("CN".to_string(), id.as_str().to_string())] {
        let subject: Vec<String> = names.iter().map(|(t, v)| format!("{t}={v}")).collect();
        return Err(format!(
            "the request's subject is '{}', not 'CN={id}': it was made for another member (run `coalition keygen --member {id}`)",
            shown(&subject)
        ));
    }
    if sans != [expected_uri.clone()] {
        return Err(format!(
            "the request's subject alternative names are '{}', not the one URI '{expected_uri}'",
            shown(&sans)
        ));
    }
    if !matches!(params.is_ca, IsCa::NoCa | IsCa::ExplicitNoCa) {
        return Err(
            "the request asks for a CA certificate; a member certificate is not one".into(),
        );
    }
    Ok(())
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "Coalition Hub development CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    fs::read(path).map_err(|e| io(path, e))
}

fn read_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| io(path, e))
}

fn write(path: &Path, data: &[u8], private: bool, created: &mut Created) -> Result<(), PkiError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| io(path, e))?;
    std::io::Write::write_all(&mut file, data).map_err(|e| io(path, e))?;
    created.files.push(path.to_owned());
    Ok(())
}

/// Replaces `path` atomically (a temporary file renamed over it), so a hub polling the file
/// never reads half of it.
fn write_replacing(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(dir, e))?;
    std::io::Write::write_all(&mut tmp, data).map_err(|e| io(path, e))?;
    // Temporary files are private; these files hold nothing secret.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| io(path, e))?;
    tmp.persist(path).map_err(|e| io(path, e.error))?;
    Ok(())
}

/// A DER INTEGER's content without leading zero bytes (keeping one byte).
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[start..]
}

fn io(path: &Path, source: std::io::Error) -> PkiError {
    if source.kind() == std::io::ErrorKind::NotFound {
        return PkiError::Missing {
            path: path.to_owned(),
        };
    }
    PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

fn invalid(path: &Path, reason: String) -> PkiError {
    PkiError::Invalid {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::{ALGORITHM_OID, PrivateKeyInfo, PublicKeyBytes, SecretDocument};

    /// RFC 8410 section 10.3: the example Ed25519 private key, PKCS#8 v1.
    const RFC_8410_SEED: [u8; 32] = [
        0xd4, 0xee, 0x72, 0xdb, 0xf9, 0x13, 0x58, 0x4a, 0xd5, 0xb6, 0xd8, 0xf1, 0xf7, 0x69, 0xf8,
        0xad, 0x3a, 0xfe, 0x7c, 0x28, 0xcb, 0xf1, 0xd4, 0xfb, 0xe0, 0x97, 0xa8, 0x8f, 0x44, 0x75,
        0x58, 0x42,
    ];
    const RFC_8410_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
        -----END PRIVATE KEY-----\n";

    #[test]
    fn signing_key_pem_is_the_rfc_8410_example() {
        let key = SigningKey::from_bytes(&RFC_8410_SEED);
        assert_eq!(signing_key_pem(&key).expect("pem").as_str(), RFC_8410_PEM);
    }

    #[test]
    fn written_signing_keys_are_pkcs8_v1_and_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let certs = CertDir::new(dir.path());
        let acme = MemberId::parse("acme").expect("id");
        certs.init(std::slice::from_ref(&acme)).expect("init");
        for (key_path, pub_path) in [
            (
                certs.hub_signing_key_path(),
                dir.path().join("hub.sign.pub"),
            ),
            (
                certs.signing_key_path(&acme),
                certs.member_file(&acme, "sign.pub"),
            ),
        ] {
            let pem = fs::read_to_string(&key_path).expect("read key");
            let (label, der) = SecretDocument::from_pem(&pem).expect("pem");
            assert_eq!(label, "PRIVATE KEY");
            let info = PrivateKeyInfo::try_from(der.as_bytes()).expect("PKCS#8");
            assert_eq!(info.version() as u8, 0, "v1");
            assert!(info.public_key.is_none(), "no public key field");
            assert_eq!(info.algorithm.oid, ALGORITHM_OID);
            assert!(info.algorithm.parameters.is_none());
            assert_eq!(der.as_bytes().len(), 48, "16-byte header and 32-byte seed");

            let key = load_signing_key(&key_path).expect("load");
            assert_eq!(&info.private_key[2..], key.to_bytes().as_slice());
            let public = parse_public_key_hex(&fs::read_to_string(&pub_path).expect("pub"))
                .expect("public key");
            assert_eq!(key.verifying_key(), public);
        }
    }

    #[test]
    fn pkcs8_v2_key_files_are_still_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::from_bytes(&RFC_8410_SEED);
        // ed25519-dalek's own encoding, which earlier versions wrote: v2, public key embedded.
        let v2 = key.to_pkcs8_pem(LineEnding::LF).expect("pem");
        let (_, der) = SecretDocument::from_pem(&v2).expect("pem");
        let info = PrivateKeyInfo::try_from(der.as_bytes()).expect("PKCS#8");
        assert_eq!(info.version() as u8, 1, "v2");
        let path = dir.path().join("v2.sign.key");
        fs::write(&path, v2.as_bytes()).expect("write");
        assert_eq!(
            load_signing_key(&path).expect("load").to_bytes(),
            key.to_bytes()
        );

        // A v2 file whose public key is not the seed's is refused.
        let other = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
        let mismatched = KeypairBytes {
            secret_key: RFC_8410_SEED,
            public_key: Some(PublicKeyBytes(other)),
        }
        .to_pkcs8_pem(LineEnding::LF)
        .expect("pem");
        fs::write(&path, mismatched.as_bytes()).expect("write");
        assert!(matches!(
            load_signing_key(&path),
            Err(PkiError::Invalid { .. })
        ));
    }

    #[test]
    fn revoke_lists_every_serial_in_a_numbered_signed_crl() {
        let dir = tempfile::tempdir().expect("tmp");
        let certs = CertDir::new(dir.path());
        let (acme, globex) = (
            MemberId::parse("acme").expect("id"),
            MemberId::parse("globex").expect("id"),
        );
        let created = certs.init(&[acme.clone(), globex.clone()]).expect("init");
        assert!(created.files.contains(&certs.crl_file()));
        assert_eq!(certs.previous_crl_number().expect("number"), 1);

        let first = certs.revoke(&acme).expect("revoke acme");
        assert!(first.newly_revoked);
        assert_eq!((first.crl_number, first.revoked_total), (2, 1));
        assert_eq!(first.serial.len(), 32, "16-byte random serial");
        let again = certs.revoke(&acme).expect("revoke acme again");
        assert!(!again.newly_revoked);
        assert_eq!((again.crl_number, again.revoked_total), (3, 1));
        let second = certs.revoke(&globex).expect("revoke globex");
        assert_eq!((second.crl_number, second.revoked_total), (4, 2));

        let der = rustls::pki_types::CertificateRevocationListDer::from_pem_file(certs.crl_file())
            .expect("pem");
        let (_, crl) = CertificateRevocationList::from_der(der.as_ref()).expect("crl");
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(strip_zeros(r.raw_serial())))
            .collect();
        assert_eq!(serials, vec![first.serial, second.serial]);
        let next = crl.next_update().expect("next update").timestamp();
        let this = crl.last_update().timestamp();
        assert_eq!(next - this, CRL_VALIDITY_SECS);

        let missing = MemberId::parse("nobody").expect("id");
        assert!(matches!(
            certs.revoke(&missing),
            Err(PkiError::Missing { .. })
        ));
    }
}
