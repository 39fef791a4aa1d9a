//! The gRPC client over mutual TLS, shared by the CLI, the quickstart, tests and benchmarks.

use crate::log::{Hash, LeafIndex, ProofCheckError, SignedCheckpoint, VerifierKey};
use crate::membership::{Member, MemberId};
use crate::pb;
use crate::pb::admin_client::AdminClient;
use crate::pb::audit_client::AuditClient;
use crate::pb::federation_client::FederationClient;
use crate::pb::hub_client::HubClient;
use crate::pki::TlsConfig;
use thiserror::Error;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Client failures.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The address is not a usable URI.
    #[error("hub address '{addr}': {reason}")]
    Address {
        /// What was given.
        addr: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting failed.
    #[error("cannot connect to the hub at {addr}: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The hub answered with an error.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(#[from] tonic::Status),
    /// The hub's member directory is malformed.
    #[error("the hub's member directory is invalid: {0}")]
    Directory(String),
    /// A checkpoint or proof from the hub does not verify.
    #[error("{0}")]
    Audit(#[from] ProofCheckError),
    /// A proof response is malformed (a hash that is not 32 bytes, a missing checkpoint).
    #[error("the hub's proof response is malformed: {0}")]
    MalformedProof(String),
    /// A reply that does not match its request (a `SubmitBatch` answer with the wrong number
    /// of outcomes).
    #[error("the hub's reply is malformed: {0}")]
    MalformedReply(String),
    /// Writing an export failed.
    #[error(transparent)]
    Bundle(#[from] crate::audit::bundle::BundleError),
}

/// What the CLI says, on one line, when the hub refused the client certificate as revoked.
pub const REVOKED_MESSAGE: &str = "the hub refused your client certificate: it is revoked by the coalition's certificate revocation list; ask the coalition's admins for a new certificate";

/// Whether `e` (or an error it wraps) is the hub refusing this client's certificate as
/// revoked: the TLS alert `certificate_revoked` at the handshake, or the hub's
/// UNAUTHENTICATED on a connection opened before the revocation.
pub fn is_certificate_revoked(e: &(dyn std::error::Error + 'static)) -> bool {
    let alert =
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked).to_string();
    let mut cur = Some(e);
    while let Some(err) = cur {
        // tokio-rustls hands the alert on as an `io::Error` holding its text only.
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|inner| inner.to_string() == alert)
        {
            return true;
        }
        // An `io::Error` shows the rustls error it wraps, but its `source` skips it.
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls
            && matches!(
                tls,
                rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked)
            )
        {
            return true;
        }
        if let Some(status) = err.downcast_ref::<tonic::Status>()
            && status.code() == tonic::Code::Unauthenticated
            && status.message().starts_with(REVOKED_STATUS_PREFIX)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// How the hub's refusal of a revoked certificate on an open connection begins.
const REVOKED_STATUS_PREFIX: &str = "your client certificate is revoked";

/// The lowercase-with-spaces name of a gRPC code, for one-line error messages.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "ok",
        C::Cancelled => "cancelled",
        C::Unknown => "unknown error",
        C::InvalidArgument => "invalid argument",
        C::DeadlineExceeded => "deadline exceeded",
        C::NotFound => "not found",
        C::AlreadyExists => "already exists",
        C::PermissionDenied => "permission denied",
        C::ResourceExhausted => "resource exhausted",
        C::FailedPrecondition => "failed precondition",
        C::Aborted => "aborted",
        C::OutOfRange => "out of range",
        C::Unimplemented => "unimplemented",
        C::Internal => "internal error",
        C::Unavailable => "unavailable",
        C::DataLoss => "data loss",
        C::Unauthenticated => "unauthenticated",
    }
}

/// A connection to a hub, authenticated by a member's client certificate.
#[derive(Clone)]
pub struct Client {
    /// The `Hub` service.
    pub hub: HubClient<Channel>,
    /// The `Admin` service.
    pub admin: AdminClient<Channel>,
    /// The `Audit` service (checkpoints, proofs, entries).
    pub audit: AuditClient<Channel>,
    /// The `Federation` service (what a peer hub pulls, with the `peer` role).
    pub federation: FederationClient<Channel>,
    /// The member the client certificate names (its `urn:coalition:member:<id>` SAN), read
    /// from the certificate itself, never from the hub: whose restricted statements this
    /// client's sync must receive (docs/PROTOCOL.md §2.7). `None` if the certificate names
    /// none (the sync then requires every body).
    pub member: Option<crate::membership::MemberId>,
}

impl Client {
    /// Connects to `addr` (`host:port` or `https://host:port`). The hub's certificate must chain
    /// to `tls.ca_pem` and name `localhost` (the development PKI) unless `addr` names a host.
    pub async fn connect(addr: &str, tls: &TlsConfig) -> Result<Client, ClientError> {
        let uri = if addr.starts_with("https://") {
            addr.to_owned()
        } else {
            format!("https://{addr}")
        };
        let host = uri
            .trim_start_matches("https://")
            .rsplit_once(':')
            .map_or(uri.as_str(), |(h, _)| h)
            .trim_matches(['[', ']']);
        // Certificates name `localhost`; dialing an IP literal still checks that name.
        let domain = if host.parse::<std::net::IpAddr>().is_ok() {
            "localhost"
        } else {
            host
        };
        let tls_config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.ca_pem))
            .domain_name(domain)
            .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        let endpoint = Channel::from_shared(uri.clone())
            .map_err(|e| ClientError::Address {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?
            .tls_config(tls_config)
            .map_err(|e| ClientError::Address {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?
            .connect_timeout(std::time::Duration::from_secs(10));
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let limit = crate::server::MAX_MESSAGE_BYTES;
        let member = {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            CertificateDer::from_pem_slice(&tls.cert_pem)
                .ok()
                .and_then(|der| crate::server::auth::member_id_of_cert(&der).ok())
        };
        Ok(Client {
            member,
            hub: HubClient::new(channel.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            audit: AuditClient::new(channel.clone()).max_decoding_message_size(limit),
            federation: FederationClient::new(channel.clone()).max_decoding_message_size(limit),
            admin: AdminClient::new(channel),
        })
    }

    /// Submits a signed envelope.
    pub async fn submit(
        &mut self,
        envelope: pb::Envelope,
    ) -> Result<pb::SubmitResponse, ClientError> {
        let request = pb::SubmitRequest {
            envelope: Some(envelope),
        };
        Ok(self.hub.submit(request).await?.into_inner())
    }

    /// Submits up to [`crate::server::MAX_BATCH_ENVELOPES`] signed envelopes in one call
    /// (request at most [`crate::server::MAX_BATCH_REQUEST_BYTES`]); one outcome per
    /// envelope, in order: code 0 with a receipt, or the status `submit` would have returned
    /// for it alone. An error is the call's own failure (then no outcome is known).
    pub async fn submit_batch(
        &mut self,
        envelopes: Vec<pb::Envelope>,
    ) -> Result<Vec<pb::SubmitOutcome>, ClientError> {
        let sent = envelopes.len();
        let outcomes = self
            .hub
            .submit_batch(pb::SubmitBatchRequest { envelopes })
            .await?
            .into_inner()
            .outcomes;
        if outcomes.len() != sent {
            return Err(ClientError::MalformedReply(format!(
                "{} outcomes for {sent} envelopes",
                outcomes.len()
            )));
        }
        Ok(outcomes)
    }

    /// The hub's member directory, parsed.
    pub async fn members(&mut self) -> Result<Vec<Member>, ClientError> {
        let list = self.hub.list_members(pb::ListMembersRequest {}).await?;
        list.into_inner()
            .members
            .into_iter()
            .map(|m| Member::from_wire(m).map_err(|e| ClientError::Directory(e.to_string())))
            .collect()
    }

    /// One member's details (admins and auditors).
    pub async fn member(&mut self, id: &MemberId) -> Result<Member, ClientError> {
        let wire = self
            .admin
            .get_member(pb::GetMemberRequest {
                member_id: id.to_string(),
            })
            .await?
            .into_inner();
        Member::from_wire(wire).map_err(|e| ClientError::Directory(e.to_string()))
    }

    /// The membership changes that concerned a member (admins and auditors).
    pub async fn history(&mut self, id: &MemberId) -> Result<pb::MemberHistory, ClientError> {
        Ok(self
            .admin
            .get_member_history(pb::GetMemberRequest {
                member_id: id.to_string(),
            })
            .await?
            .into_inner())
    }

    /// The coalition's governance (admins and auditors).
    pub async fn coalition(&mut self) -> Result<pb::Coalition, ClientError> {
        Ok(self
            .admin
            .get_coalition(pb::GetCoalitionRequest {})
            .await?
            .into_inner())
    }

    /// The hub's latest checkpoint (with `refresh`, published now if the log grew), verified
    /// with the pinned checkpoint key.
    pub async fn checkpoint(
        &mut self,
        key: &VerifierKey,
        refresh: bool,
    ) -> Result<SignedCheckpoint, ClientError> {
        let request = pb::GetCheckpointRequest {
            tree_size: None,
            refresh,
        };
        let cp = self.audit.get_checkpoint(request).await?.into_inner();
        Ok(SignedCheckpoint::verify(&cp.note, key).map_err(ProofCheckError::from)?)
    }

    /// Checks that the hub logged the statement of `receipt`: fetches its inclusion proof
    /// against the latest checkpoint (published on demand if needed), verifies the checkpoint
    /// with `key` and the proof for the leaf recomputed from the receipt itself. Returns the
    /// checkpoint that now commits to the statement.
    pub async fn verify_receipt(
        &mut self,
        key: &VerifierKey,
        receipt: &pb::Receipt,
    ) -> Result<SignedCheckpoint, ClientError> {
        let id =
            crate::statement::StatementId::from_slice(&receipt.statement_id).ok_or_else(|| {
                ClientError::MalformedProof("receipt statement id is not 32 bytes".into())
            })?;
        let request = pb::GetInclusionProofRequest {
            leaf: Some(pb::get_inclusion_proof_request::Leaf::LeafIndex(
                receipt.seq,
            )),
            tree_size: 0,
        };
        let proof = self.audit.get_inclusion_proof(request).await?.into_inner();
        let checkpoint = proof
            .checkpoint
            .ok_or_else(|| ClientError::MalformedProof("no checkpoint in the response".into()))?;
        let path = hashes(&proof.audit_path)?;
        let data = crate::store::leaf_data(&id, receipt.received_at_ms);
        Ok(crate::log::verify_inclusion_in_checkpoint(
            key,
            &checkpoint.note,
            &data,
            LeafIndex(receipt.seq),
            &path,
        )?)
    }

    /// Checks that the hub's checkpoint `newer` extends `older` (both verified with `key`),
    /// fetching the consistency proof between their sizes.
    pub async fn verify_consistency(
        &mut self,
        key: &VerifierKey,
        older: &SignedCheckpoint,
        newer: &SignedCheckpoint,
    ) -> Result<(), ClientError> {
        let request = pb::GetConsistencyProofRequest {
            old_size: older.size().0,
            new_size: newer.size().0,
        };
        let proof = self
            .audit
            .get_consistency_proof(request)
            .await?
            .into_inner();
        crate::log::verify_consistency_between_checkpoints(
            key,
            older.note(),
            newer.note(),
            &hashes(&proof.proof)?,
        )?;
        Ok(())
    }

    /// Writes an audit bundle of the whole log to `path`: the hub publishes a checkpoint of
    /// its current size, then every published checkpoint up to it, with the witness
    /// cosignature lines the hub serves for it, and every entry `0..size` are written
    /// (checkpoints first). Returns (entries, checkpoints) written.
    pub async fn export_bundle(
        &mut self,
        path: &std::path::Path,
    ) -> Result<(u64, usize), ClientError> {
        use crate::audit::bundle::{BundleWriter, Record};
        let latest = self
            .audit
            .get_checkpoint(pb::GetCheckpointRequest {
                tree_size: None,
                refresh: true,
            })
            .await?
            .into_inner();
        let size = latest.tree_size;
        let mut notes = Vec::new();
        let mut from_size = 0;
        loop {
            let page = self
                .audit
                .list_checkpoints(pb::ListCheckpointsRequest {
                    from_size,
                    limit: 0,
                })
                .await?
                .into_inner();
            notes.extend(
                page.checkpoints
                    .into_iter()
                    .filter(|c| c.tree_size <= size)
                    .map(|c| (c.note, c.cosignatures)),
            );
            match page.next_from_size {
                Some(next) if next <= size && next > from_size => from_size = next,
                _ => break,
            }
        }
        let mut writer = BundleWriter::create(path)?;
        let checkpoints = notes.len();
        for (note, cosignatures) in notes {
            writer.write(Record::Checkpoint { note, cosignatures })?;
        }
        let mut next = 0;
        while next < size {
            let mut stream = self
                .audit
                .get_entries(pb::GetEntriesRequest {
                    start: next,
                    end: size,
                })
                .await?
                .into_inner();
            let before = next;
            while let Some(entry) = stream.message().await? {
                if entry.seq != next {
                    return Err(ClientError::MalformedProof(format!(
                        "the hub sent entry {} where entry {next} was due",
                        entry.seq
                    )));
                }
                next += 1;
                writer.write(Record::Entry(entry))?;
            }
            if next == before {
                return Err(ClientError::MalformedProof(format!(
                    "the hub sent no entry from {next} although its checkpoint covers {size}"
                )));
            }
        }
        writer.finish()?;
        Ok((size, checkpoints))
    }
}

/// Proof hashes from the wire; each must be 32 bytes.
pub fn hashes(raw: &[Vec<u8>]) -> Result<Vec<Hash>, ClientError> {
    raw.iter()
        .enumerate()
        .map(|(i, h)| {
            Hash::from_slice(h).ok_or_else(|| {
                ClientError::MalformedProof(format!("hash {i} is {} bytes, not 32", h.len()))
            })
        })
        .collect()
}

/// Makes and signs a new statement by `issuer` with `key`, dated now with a fresh random nonce.
pub fn sign_new(
    issuer: &crate::membership::MemberId,
    key: &ed25519_dalek::SigningKey,
    body: crate::statement::Body,
) -> pb::Envelope {
    sign_new_for(issuer, key, body, &crate::statement::Recipients::everyone())
}

/// [`sign_new`] restricted to `recipients` (docs/PROTOCOL.md §2.7).
pub fn sign_new_for(
    issuer: &crate::membership::MemberId,
    key: &ed25519_dalek::SigningKey,
    body: crate::statement::Body,
    recipients: &crate::statement::Recipients,
) -> pb::Envelope {
    use rand::RngCore;
    let mut nonce = [0u8; crate::statement::NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let statement = crate::statement::Statement {
        issuer: issuer.clone(),
        key_id: crate::membership::KeyId::of(&key.verifying_key()),
        issued_at_ms: crate::store::now_ms(),
        nonce,
        body,
    };
    crate::statement::sign_statement_for(&statement, recipients, key)
}
