//! Envelopes: the DSSE pre-authentication encoding, statement ids, signing and verification.
//!
//! The signature covers `PAE(payload_type, payload)` over the payload bytes exactly as received;
//! the payload is never re-serialized before verification.

use super::signature::{SignatureCheck, verify_one};
use super::{Header, MAX_SIGNATURES, Recipients, Statement, StatementError};
use crate::membership::{KeyId, MemberId};
use crate::pb;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

/// The only payload type of protocol version 1.
pub const PAYLOAD_TYPE: &str = "application/vnd.coalition.statement.v1+protobuf";

/// SHA-256 of a statement's pre-authentication encoding: its identity, independent of who
/// co-signed it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatementId(pub [u8; 32]);

/// A wire envelope whose header decoded into a valid [`Header`] (and whose body, when
/// present, into the [`Statement`] the header signs for); signatures not yet checked.
#[derive(Clone, Debug)]
pub struct ParsedEnvelope {
    /// The envelope exactly as received.
    pub envelope: pb::Envelope,
    /// Its statement id.
    pub id: StatementId,
    /// The signed header.
    pub header: Header,
    /// The statement, when the body came with the envelope (a filtered sync withholds it).
    pub statement: Option<Statement>,
    /// The key id of each signature, in envelope order (distinct).
    pub key_ids: Vec<KeyId>,
    pae: Vec<u8>,
}

/// An envelope whose signatures all verified against keys of its issuer, with its body. Only
/// [`ParsedEnvelope::verify_with`] makes one, so holding a
/// `Verified` proves the check was done.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The envelope exactly as received.
    pub envelope: pb::Envelope,
    /// Its statement id.
    pub id: StatementId,
    /// The signed header.
    pub header: Header,
    /// The decoded statement.
    pub statement: Statement,
    /// The key id of each signature, in envelope order.
    pub key_ids: Vec<KeyId>,
}

/// The protocol version a payload type names
/// (`application/vnd.coalition.statement.v<N>+protobuf`), if it has that form.
pub fn payload_version(payload_type: &str) -> Option<u32> {
    let n = payload_type
        .strip_prefix("application/vnd.coalition.statement.v")?
        .strip_suffix("+protobuf")?;
    if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Why an envelope's signatures are not acceptable.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum SignatureError {
    /// No signature by the key the statement names.
    #[error(
        "signatures: none by key {key_id}, the key_id the statement names; sign the payload with it"
    )]
    MissingSignerKey {
        /// The statement's key id.
        key_id: KeyId,
    },
    /// A signature names a key the issuer does not have (or that is not usable).
    #[error("signatures[{index}]: key {key_id} is not an active key of member '{issuer}'")]
    UnknownKey {
        /// Position in the envelope.
        index: usize,
        /// The key id named.
        key_id: KeyId,
        /// The statement's issuer.
        issuer: MemberId,
    },
    /// A signature does not verify.
    #[error("signatures[{index}]: signature by key {key_id} does not verify over the payload")]
    BadSignature {
        /// Position in the envelope.
        index: usize,
        /// The key id named.
        key_id: KeyId,
    },
    /// The body is missing where it is needed.
    #[error("envelope.body: missing; send the serialized StatementBody the header signs for")]
    NoBody,
}

/// The DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let type_len = payload_type.len().to_string();
    let payload_len = payload.len().to_string();
    let mut out = Vec::with_capacity(
        6 + 4 + type_len.len() + payload_type.len() + payload_len.len() + payload.len(),
    );
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(type_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Serializes a statement once and signs it: the envelope an author submits.
pub fn sign_statement(statement: &Statement, key: &SigningKey) -> pb::Envelope {
    sign_statement_for(statement, &Recipients::everyone(), key)
}

/// [`sign_statement`] for a statement restricted to `recipients` (docs/PROTOCOL.md §2.7).
pub fn sign_statement_for(
    statement: &Statement,
    recipients: &Recipients,
    key: &SigningKey,
) -> pb::Envelope {
    let encoded = statement.encode_for(recipients);
    let sig = key.sign(&pae(PAYLOAD_TYPE, &encoded.header));
    pb::Envelope {
        payload_type: PAYLOAD_TYPE.to_owned(),
        payload: encoded.header.into(),
        signatures: vec![pb::Signature {
            key_id: KeyId::of(&key.verifying_key()).to_string(),
            sig: sig.to_bytes().to_vec(),
        }],
        body: encoded.body.into(),
    }
}

impl StatementId {
    /// The id of a payload of the given type.
    pub fn of(payload_type: &str, payload: &[u8]) -> Self {
        Self::of_pae(&pae(payload_type, payload))
    }

    pub(crate) fn of_pae(pae: &[u8]) -> Self {
        StatementId(Sha256::digest(pae).into())
    }

    /// Parses 32 raw bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(StatementId)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).ok()?;
        Some(StatementId(out))
    }
}

impl fmt::Display for StatementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for StatementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatementId({self})")
    }
}

impl ParsedEnvelope {
    /// Checks the envelope's shape, decodes its header and, when present, its body, and checks
    /// that the body is the one the header signs for. Protocol version 1 only (see
    /// [`payload_version`] for reading the version of others).
    pub fn parse(envelope: pb::Envelope) -> Result<Self, StatementError> {
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(StatementError::invalid(
                "envelope.payload_type",
                format!(
                    "'{}' is not supported; expected '{PAYLOAD_TYPE}'",
                    envelope.payload_type
                ),
            ));
        }
        let key_ids = signature_key_ids(&envelope)?;
        let header = Header::decode(&envelope.payload)?;
        let statement = if envelope.body.is_empty() {
            None
        } else {
            Some(Statement::from_parts(&header, &envelope.body)?)
        };
        let pae = pae(&envelope.payload_type, &envelope.payload);
        Ok(ParsedEnvelope {
            id: StatementId::of_pae(&pae),
            envelope,
            header,
            statement,
            key_ids,
            pae,
        })
    }

    /// The exact bytes every signature covers.
    pub fn pae(&self) -> &[u8] {
        &self.pae
    }

    /// The statement, or an error saying the body is missing.
    pub fn require_body(&self) -> Result<&Statement, StatementError> {
        self.statement.as_ref().ok_or_else(|| {
            StatementError::invalid(
                "envelope.body",
                "missing: send the serialized StatementBody the header signs for",
            )
        })
    }

    /// Verifies signature `i` with `keys[i]` (as `Registry::signing_keys` resolved them),
    /// under the one signature rule ([`verify_one`]). The body must be present.
    pub fn verify_with(self, keys: &[VerifyingKey]) -> Result<Verified, SignatureError> {
        for (index, (sig, key_id)) in self
            .envelope
            .signatures
            .iter()
            .zip(&self.key_ids)
            .enumerate()
        {
            let key = keys.get(index).ok_or_else(|| SignatureError::UnknownKey {
                index,
                key_id: key_id.clone(),
                issuer: self.header.issuer.clone(),
            })?;
            let check = SignatureCheck {
                key,
                message: &self.pae,
                signature: &sig.sig,
            };
            if !verify_one(&check) {
                return Err(SignatureError::BadSignature {
                    index,
                    key_id: key_id.clone(),
                });
            }
        }
        if !self.key_ids.contains(&self.header.key_id) {
            return Err(SignatureError::MissingSignerKey {
                key_id: self.header.key_id,
            });
        }
        let statement = self.statement.ok_or(SignatureError::NoBody)?;
        Ok(Verified {
            envelope: self.envelope,
            id: self.id,
            header: self.header,
            statement,
            key_ids: self.key_ids,
        })
    }
}

/// The key ids of an envelope's signatures, after checking their number (1..=16), that each
/// key id signs once, and that each signature is 64 bytes.
fn signature_key_ids(envelope: &pb::Envelope) -> Result<Vec<KeyId>, StatementError> {
    if envelope.signatures.is_empty() {
        return Err(StatementError::invalid(
            "envelope.signatures",
            "missing: sign the payload with a registered key",
        ));
    }
    if envelope.signatures.len() > MAX_SIGNATURES {
        return Err(StatementError::invalid(
            "envelope.signatures",
            format!(
                "at most {MAX_SIGNATURES} signatures, got {}",
                envelope.signatures.len()
            ),
        ));
    }
    let mut key_ids: Vec<KeyId> = Vec::with_capacity(envelope.signatures.len());
    for (i, sig) in envelope.signatures.iter().enumerate() {
        let key_id = KeyId::parse(&sig.key_id).map_err(|e| {
            StatementError::invalid(format!("envelope.signatures[{i}].key_id"), e.to_string())
        })?;
        if key_ids.contains(&key_id) {
            return Err(StatementError::invalid(
                format!("envelope.signatures[{i}].key_id"),
                format!("key {key_id} already signed this envelope; each key signs once"),
            ));
        }
        if sig.sig.len() != Signature::BYTE_SIZE {
            return Err(StatementError::invalid(
                format!("envelope.signatures[{i}].sig"),
                format!("an ed25519 signature is 64 bytes, got {}", sig.sig.len()),
            ));
        }
        key_ids.push(key_id);
    }
    Ok(key_ids)
}

/// An envelope of a newer protocol version than this code knows: its signatures can be
/// checked (they cover the payload whatever its format), its content cannot be read.
#[derive(Clone, Debug)]
pub struct OpaqueEnvelope {
    /// The envelope exactly as received.
    pub envelope: pb::Envelope,
    /// Its statement id.
    pub id: StatementId,
    /// The protocol version its payload type names.
    pub version: u32,
    /// The key id of each signature, in envelope order (distinct).
    pub key_ids: Vec<KeyId>,
    pae: Vec<u8>,
}

impl OpaqueEnvelope {
    /// Checks the signatures' shape and the payload type's form (`…statement.v<N>+protobuf`,
    /// N > 1); decodes nothing else.
    pub fn parse(envelope: pb::Envelope) -> Result<Self, StatementError> {
        let version = payload_version(&envelope.payload_type).ok_or_else(|| {
            StatementError::invalid(
                "envelope.payload_type",
                format!(
                    "'{}' is not a coalition statement type ('{PAYLOAD_TYPE}' or a later version)",
                    envelope.payload_type
                ),
            )
        })?;
        let key_ids = signature_key_ids(&envelope)?;
        let pae = pae(&envelope.payload_type, &envelope.payload);
        Ok(OpaqueEnvelope {
            id: StatementId::of_pae(&pae),
            envelope,
            version,
            key_ids,
            pae,
        })
    }

    /// The exact bytes every signature covers.
    pub fn pae(&self) -> &[u8] {
        &self.pae
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_dsse_spec_example() {
        // The DSSE protocol document's example: PAE("http://example.com/HelloWorld", "hello world").
        let got = pae("http://example.com/HelloWorld", b"hello world");
        assert_eq!(
            got,
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn empty_payload_pae() {
        assert_eq!(pae("t", b""), b"DSSEv1 1 t 0 ".to_vec());
    }
}
