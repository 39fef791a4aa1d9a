//! Development PKI and key files: the coalition CA, the hub's TLS certificate, and per-member
//! TLS certificates and ed25519 signing keys, laid out under one directory (`certs/`).
//!
//! ```text
//! certs/ca.pem  ca.key                       coalition CA (signs every TLS certificate)
//! certs/hub.pem hub.key                      the hub's server certificate (localhost, 127.0.0.1, ::1)
//! certs/hub.sign.key hub.sign.pub            the hub's ed25519 key (signs the genesis and checkpoints)
//! certs/members/<id>.pem <id>.key            member TLS client certificate, SAN urn:coalition:member:<id>
//! certs/members/<id>.sign.key <id>.sign.pub  member ed25519 signing key (PKCS#8 PEM) and public key (hex)
//! ```
//! Private keys (`*.key`) are written with mode 0600 and are never committed (see .gitignore).

use crate::membership::MemberId;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::fs;
use std::path::{Path, PathBuf};
use thiserror::Error;

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
    fn member_file(&self, id: &MemberId, ext: &str) -> PathBuf {
        self.root.join("members").join(format!("{id}.{ext}"))
    }

    /// Path of a member's ed25519 signing key.
    pub fn signing_key_path(&self, id: &MemberId) -> PathBuf {
        self.member_file(id, "sign.key")
    }

    /// Creates whatever is missing: the CA, the hub certificate, and for each member a TLS
    /// certificate and a signing key. Existing files are kept.
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

    /// Path of the hub's ed25519 signing key (it signs the genesis and checkpoints).
    pub fn hub_signing_key_path(&self) -> PathBuf {
        self.root.join("hub.sign.key")
    }

    /// The hub's signing key, created (with `hub.sign.pub`) if missing.
    pub fn hub_signing_key(&self, created: &mut Created) -> Result<SigningKey, PkiError> {
        let path = self.hub_signing_key_path();
        signing_key_files(&path, &self.root.join("hub.sign.pub"), created)?;
        load_signing_key(&path)
    }

    /// A member's public signing key, from `members/<id>.sign.pub` (64 hex characters).
    pub fn public_key(&self, id: &MemberId) -> Result<VerifyingKey, PkiError> {
        let path = self.member_file(id, "sign.pub");
        parse_public_key_hex(&read_string(&path)?).map_err(|reason| invalid(&path, reason))
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
        let ca_key_pem = read_string(&self.ca_key())?;
        let ca_key =
            KeyPair::from_pem(&ca_key_pem).map_err(|e| invalid(&self.ca_key(), e.to_string()))?;
        let ca_pem = read_string(&self.ca_cert())?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
            .map_err(|e| invalid(&self.ca_cert(), e.to_string()))?;
        let mut params = CertificateParams::new(dns_or_ip)?;
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
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(cert_path, cert.pem().as_bytes(), false, created)?;
        write(key_path, key.serialize_pem().as_bytes(), true, created)?;
        Ok(())
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
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| invalid(key_path, e.to_string()))?;
    write(key_path, pem.as_bytes(), true, created)?;
    let public = hex::encode(key.verifying_key().as_bytes()) + "\n";
    write(pub_path, public.as_bytes(), false, created)
}

/// Parses an ed25519 public key written as 64 hex characters.
pub fn parse_public_key_hex(text: &str) -> Result<VerifyingKey, String> {
    let raw = hex::decode(text.trim()).map_err(|e| format!("not a hex public key: {e}"))?;
    crate::membership::parse_public_key(&raw)
}

/// Reads an ed25519 signing key from a PKCS#8 PEM file.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, PkiError> {
    let pem = read_string(path)?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| invalid(path, format!("not an ed25519 PKCS#8 PEM private key ({e})")))
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
