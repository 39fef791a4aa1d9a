//! Envelopes: the DSSE pre-authentication encoding, statement ids, signing and verification.
//!
//! The signature covers `PAE(payload_type, payload)` over the payload bytes exactly as received;
//! the payload is never re-serialized before verification.

use super::{MAX_SIGNATURES, Statement, StatementError};
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

/// A wire envelope whose payload decoded into a valid [`Statement`]; signatures not yet checked.
#[derive(Clone, Debug)]
pub struct ParsedEnvelope {
    /// The envelope exactly as received.
    pub envelope: pb::Envelope,
    /// Its statement id.
    pub id: StatementId,
    /// The decoded statement.
    pub statement: Statement,
    /// The key id of each signature, in envelope order.
    pub key_ids: Vec<KeyId>,
    pae: Vec<u8>,
}

/// An envelope whose signatures all verified against keys of its issuer. Only
/// [`ParsedEnvelope::verify`] makes one, so holding a `Verified` proves the check was done.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The envelope exactly as received.
    pub envelope: pb::Envelope,
    /// Its statement id.
    pub id: StatementId,
    /// The decoded statement.
    pub statement: Statement,
    /// The key id of each signature, in envelope order.
    pub key_ids: Vec<KeyId>,
}

/// Why an envelope's signatures are not acceptable.
#[derive(Debug, Error, PartialEq)]
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
    let payload = prost::Message::encode_to_vec(&statement.to_wire());
    let sig = key.sign(&pae(PAYLOAD_TYPE, &payload));
    pb::Envelope {
        payload_type: PAYLOAD_TYPE.to_owned(),
        payload: payload.into(),
        signatures: vec![pb::Signature {
            key_id: KeyId::of(&key.verifying_key()).to_string(),
            sig: sig.to_bytes().to_vec(),
        }],
    }
}

/// Verifies many ed25519 signatures at once (batch verification, about twice as fast per
/// signature as one by one): `messages[i]` signed by `keys[i]` with the 64 bytes `sigs[i]`.
/// True iff every one verifies. On false, check them one by one ([`ParsedEnvelope::verify_with`])
/// to learn which failed. Keys come from the registry, which refuses weak keys.
pub fn verify_batch(messages: &[&[u8]], sigs: &[&[u8]], keys: &[VerifyingKey]) -> bool {
    let Ok(signatures) = sigs
        .iter()
        .map(|s| Signature::from_slice(s))
        .collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    ed25519_dalek::verify_batch(messages, &signatures, keys).is_ok()
}

impl StatementId {
    /// The id of a payload of the given type.
    pub fn of(payload_type: &str, payload: &[u8]) -> Self {
        Self::of_pae(&pae(payload_type, payload))
    }

    fn of_pae(pae: &[u8]) -> Self {
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
    /// Checks the envelope's shape and decodes its payload into a validated statement.
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
        let mut key_ids = Vec::with_capacity(envelope.signatures.len());
        for (i, sig) in envelope.signatures.iter().enumerate() {
            key_ids.push(KeyId::parse(&sig.key_id).map_err(|e| {
                StatementError::invalid(format!("envelope.signatures[{i}].key_id"), e.to_string())
            })?);
            if sig.sig.len() != Signature::BYTE_SIZE {
                return Err(StatementError::invalid(
                    format!("envelope.signatures[{i}].sig"),
                    format!("an ed25519 signature is 64 bytes, got {}", sig.sig.len()),
                ));
            }
        }
        let statement = Statement::decode(&envelope.payload)?;
        let pae = pae(&envelope.payload_type, &envelope.payload);
        Ok(ParsedEnvelope {
            id: StatementId::of_pae(&pae),
            envelope,
            statement,
            key_ids,
            pae,
        })
    }

    /// The exact bytes every signature covers.
    pub fn pae(&self) -> &[u8] {
        &self.pae
    }

    /// Verifies signature `i` with `keys[i]` (as `Registry::signing_keys` resolved them).
    pub fn verify_with(self, keys: &[VerifyingKey]) -> Result<Verified, SignatureError> {
        let keys: Vec<Option<VerifyingKey>> = keys.iter().copied().map(Some).collect();
        self.verify_each(|index, _| keys.get(index).copied().flatten())
    }

    /// Verifies every signature with the issuer's keys, as `key_of` resolves them (`None`: the
    /// issuer has no usable key with that id). The statement's own `key_id` must have signed.
    pub fn verify(
        self,
        key_of: impl Fn(&KeyId) -> Option<VerifyingKey>,
    ) -> Result<Verified, SignatureError> {
        self.verify_each(|_, key_id| key_of(key_id))
    }

    fn verify_each(
        self,
        key_of: impl Fn(usize, &KeyId) -> Option<VerifyingKey>,
    ) -> Result<Verified, SignatureError> {
        let mut signer_signed = false;
        for (index, (sig, key_id)) in self
            .envelope
            .signatures
            .iter()
            .zip(&self.key_ids)
            .enumerate()
        {
            let key_id = key_id.clone();
            let key = key_of(index, &key_id).ok_or_else(|| SignatureError::UnknownKey {
                index,
                key_id: key_id.clone(),
                issuer: self.statement.issuer.clone(),
            })?;
            let signature =
                Signature::from_slice(&sig.sig).map_err(|_| SignatureError::BadSignature {
                    index,
                    key_id: key_id.clone(),
                })?;
            key.verify_strict(&self.pae, &signature)
                .map_err(|_| SignatureError::BadSignature {
                    index,
                    key_id: key_id.clone(),
                })?;
            signer_signed |= key_id == self.statement.key_id;
        }
        if !signer_signed {
            return Err(SignatureError::MissingSignerKey {
                key_id: self.statement.key_id,
            });
        }
        Ok(Verified {
            envelope: self.envelope,
            id: self.id,
            statement: self.statement,
            key_ids: self.key_ids,
        })
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
