//! Authoring membership statements: founding a hub (genesis), signing changes, adding
//! co-signatures, and the envelope files admins pass around to collect a quorum offline.
//!
//! Transport-free, shared by the CLI, the quickstart and tests. What makes a change valid is
//! decided by `membership::Registry`, not here.

use crate::client::sign_new;
use crate::membership::{Action, Admission, Change, Genesis, KeyId, MemberId, Role};
use crate::pb;
use crate::pki::CertDir;
use crate::statement::{Body, PAYLOAD_TYPE, ParsedEnvelope, StatementError, pae};
use crate::store::{Appended, Store, StoreError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// Failures authoring or exchanging membership statements.
#[derive(Debug, Error)]
pub enum GovernanceError {
    /// The statement is malformed.
    #[error(transparent)]
    Statement(#[from] StatementError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry refused the statement.
    #[error(transparent)]
    Entry(#[from] crate::membership::EntryError),
    /// An envelope file cannot be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Something about the request is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// The signed genesis: issued by the first admin (`admin_key` must be one of its keys) and
/// co-signed by the hub key it names.
pub fn genesis(
    hub_name: &str,
    hub_key: &SigningKey,
    admins: Vec<Admission>,
    quorum: u32,
    admin_key: &SigningKey,
) -> Result<pb::Envelope, GovernanceError> {
    let issuer = admins
        .iter()
        .find(|a| a.keys.contains(&admin_key.verifying_key()))
        .map(|a| a.id.clone())
        .ok_or_else(|| {
            GovernanceError::Invalid(
                "the genesis must be issued with the key of one of its admins".into(),
            )
        })?;
    let body = Genesis {
        hub_name: hub_name.to_owned(),
        hub_key: hub_key.verifying_key(),
        admins,
        quorum,
    };
    // Round-trip through the wire form so an invalid genesis fails here, naming the field.
    let body = Genesis::from_wire(body.to_wire())?;
    let mut envelope = sign_new(&issuer, admin_key, Body::Genesis(body));
    cosign(&mut envelope, hub_key)?;
    Ok(envelope)
}

/// A membership change issued by admin `issuer`, signed with `key` (more admins may co-sign).
pub fn change(issuer: &MemberId, key: &SigningKey, action: Action, reason: &str) -> pb::Envelope {
    let change = Change {
        reason: reason.to_owned(),
        action,
    };
    sign_new(issuer, key, Body::Membership(change))
}

/// A settings change issued by admin `issuer`, signed with `key` (more admins may co-sign;
/// a hub key rotation must also be co-signed by the new hub key, see [`cosign`]).
pub fn settings(
    issuer: &MemberId,
    key: &SigningKey,
    section: crate::settings::Section,
    reason: &str,
) -> pb::Envelope {
    let change = crate::settings::SettingsChange {
        reason: reason.to_owned(),
        section,
    };
    sign_new(issuer, key, Body::Settings(change))
}

/// An admin-quorum retraction issued by admin `issuer`, signed with `key` (more admins
/// co-sign until the quorum is met).
pub fn retraction(
    issuer: &MemberId,
    key: &SigningKey,
    retraction: crate::lifecycle::Retraction,
) -> pb::Envelope {
    sign_new(issuer, key, Body::Retraction(retraction))
}

/// Adds `key`'s signature to an envelope. Returns false (and changes nothing) if that key
/// signed it already.
pub fn cosign(envelope: &mut pb::Envelope, key: &SigningKey) -> Result<bool, GovernanceError> {
    // Only a well-formed statement is worth a signature.
    ParsedEnvelope::parse(envelope.clone())?;
    let key_id = KeyId::of(&key.verifying_key()).to_string();
    if envelope.signatures.iter().any(|s| s.key_id == key_id) {
        return Ok(false);
    }
    let sig = key.sign(&pae(&envelope.payload_type, &envelope.payload));
    envelope.signatures.push(pb::Signature {
        key_id,
        sig: sig.to_bytes().to_vec(),
    });
    Ok(true)
}

/// One line describing what an envelope says, for an admin about to co-sign or submit it.
pub fn describe(envelope: &pb::Envelope) -> Result<String, GovernanceError> {
    let parsed = ParsedEnvelope::parse(envelope.clone())?;
    let statement = parsed.require_body()?;
    let what = match &statement.body {
        Body::Membership(change) => change.describe(),
        Body::Settings(change) => change.describe(),
        Body::Retraction(r) => r.describe(),
        Body::Opinion(o) => o.describe(),
        Body::Genesis(g) => format!(
            "found hub '{}' with admins {} (quorum {})",
            g.hub_name,
            g.admins
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(","),
            g.quorum
        ),
        _ => format!("a {} statement", statement.kind().name()),
    };
    Ok(format!(
        "{what} (issued by '{}', statement {}, {} signature(s))",
        statement.issuer,
        parsed.id,
        envelope.signatures.len()
    ))
}

/// Verifies an envelope against the store's registry, exactly as the hub's writer will, and
/// appends it durably without a server: founding a hub (the genesis into an empty log), and
/// offline administration of a stopped hub. No connection-level checks apply.
pub async fn append_offline(
    store: &Store,
    envelope: pb::Envelope,
) -> Result<Appended, GovernanceError> {
    let parsed = ParsedEnvelope::parse(envelope)?;
    let (verified, _) = store.registry().verify(parsed)?;
    Ok(store.append(verified).await?)
}

/// Founds a coalition whose keys live in a development PKI directory: the hub key is
/// `hub.sign.key` (written by `CertDir::init`), each admin's public key its `members/<id>.sign.pub`,
/// and the genesis is issued with the first admin's `members/<id>.sign.key`.
pub async fn found_from_certs(
    store: &Store,
    certs: &CertDir,
    hub_name: &str,
    admins: &[(MemberId, String)],
    quorum: u32,
) -> Result<Appended, GovernanceError> {
    let (first, _) = admins
        .first()
        .ok_or_else(|| GovernanceError::Invalid("name at least one admin".into()))?;
    let pki = |e: crate::pki::PkiError| GovernanceError::Invalid(e.to_string());
    let hub_key = certs.hub_signing_key().map_err(pki)?;
    let admin_key = certs.signing_key(first).map_err(pki)?;
    let admissions = admins
        .iter()
        .map(|(id, name)| {
            Ok(Admission {
                id: id.clone(),
                display_name: name.clone(),
                roles: vec![Role::Admin],
                keys: vec![certs.public_key(id).map_err(pki)?],
                cert_pins: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, GovernanceError>>()?;
    let envelope = genesis(hub_name, &hub_key, admissions, quorum, &admin_key)?;
    append_offline(store, envelope).await
}

/// An admission with the given roles and keys and no certificate pins.
pub fn admission(
    id: &MemberId,
    display_name: &str,
    roles: &[Role],
    keys: &[VerifyingKey],
) -> Admission {
    Admission {
        id: id.clone(),
        display_name: display_name.to_owned(),
        roles: roles.to_vec(),
        keys: keys.to_vec(),
        cert_pins: Vec::new(),
    }
}

/// An envelope in the DSSE JSON envelope format, as `--sign-only` writes it.
#[derive(Serialize, Deserialize)]
struct EnvelopeFile {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<SignatureFile>,
    /// The statement body (base64): our extension of the DSSE JSON envelope.
    body: String,
}

#[derive(Serialize, Deserialize)]
struct SignatureFile {
    keyid: String,
    sig: String,
}

/// Writes an envelope as DSSE JSON (base64 payload and signatures).
pub fn write_envelope(path: &Path, envelope: &pb::Envelope) -> Result<(), GovernanceError> {
    let file = EnvelopeFile {
        payload_type: envelope.payload_type.clone(),
        payload: B64.encode(&envelope.payload),
        body: B64.encode(&envelope.body),
        signatures: envelope
            .signatures
            .iter()
            .map(|s| SignatureFile {
                keyid: s.key_id.clone(),
                sig: B64.encode(&s.sig),
            })
            .collect(),
    };
    let err = |reason: String| GovernanceError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = serde_json::to_string_pretty(&file).map_err(|e| err(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| err(e.to_string()))
}

/// Reads an envelope written by [`write_envelope`] (any DSSE JSON envelope of our type).
pub fn read_envelope(path: &Path) -> Result<pb::Envelope, GovernanceError> {
    let err = |reason: String| GovernanceError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: EnvelopeFile =
        serde_json::from_str(&text).map_err(|e| err(format!("not a DSSE JSON envelope: {e}")))?;
    if file.payload_type != PAYLOAD_TYPE {
        return Err(err(format!(
            "payloadType '{}' is not '{PAYLOAD_TYPE}'",
            file.payload_type
        )));
    }
    let payload = B64
        .decode(file.payload.as_bytes())
        .map_err(|e| err(format!("payload is not base64: {e}")))?;
    let signatures = file
        .signatures
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(pb::Signature {
                key_id: s.keyid,
                sig: B64
                    .decode(s.sig.as_bytes())
                    .map_err(|e| err(format!("signatures[{i}].sig is not base64: {e}")))?,
            })
        })
        .collect::<Result<_, GovernanceError>>()?;
    let body = B64
        .decode(file.body.as_bytes())
        .map_err(|e| err(format!("body is not base64: {e}")))?;
    Ok(pb::Envelope {
        payload_type: file.payload_type,
        payload: payload.into(),
        signatures,
        body: body.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_files_round_trip_and_cosign_once() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = SigningKey::from_bytes(&[2; 32]);
        let admin = MemberId::parse("alice").expect("id");
        let mut env = change(&admin, &a, Action::SetQuorum(2), "more eyes");
        assert!(cosign(&mut env, &b).expect("cosign"));
        assert!(!cosign(&mut env, &b).expect("again"));
        assert_eq!(env.signatures.len(), 2);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("change.json");
        write_envelope(&path, &env).expect("write");
        assert_eq!(read_envelope(&path).expect("read"), env);
        let text = describe(&env).expect("describe");
        assert!(text.contains("set the admin quorum to 2"), "{text}");
    }
}
