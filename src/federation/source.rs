//! One remote hub's log as a source to pull from — its latest signed checkpoint, its entries,
//! consistency proofs and published checkpoints — over one connection kept between rounds,
//! through `Audit` (a mirror or a recovery, pulling as an auditor) or `Federation` (a peer,
//! pulling to relay). The one stream reader of every puller; what it returns is checked by a
//! replica, never believed.

use super::FollowError;
use crate::client::{Client, ClientError};
use crate::log::Hash;
use crate::pb;
use crate::pki::TlsConfig;
use crate::replica::{ConsistencyNeed, ReplicaError};

/// Most entries pulled, verified and written as one batch.
pub const MAX_BATCH_ENTRIES: u64 = 16_384;
/// Most envelope bytes held in one batch (twice while it is verified).
pub const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// Which read API the source is pulled through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `coalition.v1.Audit`, as a member holding the `auditor` role there.
    Audit,
    /// `coalition.v1.Federation`, as a member holding the `peer` role there.
    Federation,
}

/// A remote hub's log.
pub struct Source {
    addr: String,
    tls: TlsConfig,
    api: Api,
    client: Option<Client>,
}

impl Source {
    /// The hub at `addr`, called with `tls` through `api`; connects on first use.
    pub fn new(addr: String, tls: TlsConfig, api: Api) -> Self {
        Source {
            addr,
            tls,
            api,
            client: None,
        }
    }

    /// Its address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Forgets the connection (after a failure: the next call reconnects).
    pub fn disconnect(&mut self) {
        self.client = None;
    }

    /// After a round: an unavailable source is disconnected (the next call reconnects), a
    /// refusal is counted in `refusals`.
    pub fn account<T>(&mut self, result: &Result<T, FollowError>, refusals: &mut u64) {
        match result {
            Err(FollowError::Unavailable { .. }) => self.disconnect(),
            Err(FollowError::Refused { .. }) => *refusals += 1,
            _ => {}
        }
    }

    /// The latest signed checkpoint note it published (never refreshed on demand).
    pub async fn latest_note(&mut self) -> Result<String, FollowError> {
        let request = pb::GetCheckpointRequest {
            tree_size: None,
            refresh: false,
        };
        let api = self.api;
        let cp = self
            .call(|mut c| async move {
                match api {
                    Api::Audit => c.audit.get_checkpoint(request).await,
                    Api::Federation => c.federation.get_checkpoint(request).await,
                }
            })
            .await?;
        Ok(cp.note)
    }

    /// Entries `from..to` (fewer if [`MAX_BATCH_BYTES`] of envelopes come first), in order,
    /// with no gap.
    pub async fn entries(&mut self, from: u64, to: u64) -> Result<Vec<pb::SyncEntry>, FollowError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = from;
        let api = self.api;
        while next < to && bytes < MAX_BATCH_BYTES {
            let start = next;
            let request = pb::GetEntriesRequest { start, end: to };
            let mut stream = self
                .call(|mut c| async move {
                    match api {
                        Api::Audit => c.audit.get_entries(request).await,
                        Api::Federation => c.federation.get_entries(request).await,
                    }
                })
                .await?;
            let before = next;
            loop {
                let entry = match stream.message().await {
                    Ok(Some(entry)) => entry,
                    Ok(None) => break,
                    Err(status) => return Err(self.unavailable(status.message().to_owned())),
                };
                if entry.seq != next {
                    return Err(self.refused_text(format!(
                        "it sent entry {} where entry {next} was due",
                        entry.seq
                    )));
                }
                bytes += entry
                    .envelope
                    .as_ref()
                    .map_or(0, |e| e.payload.len() + e.body.len());
                next += 1;
                out.push(entry);
                if next >= to || bytes >= MAX_BATCH_BYTES {
                    break;
                }
            }
            if next == before {
                return Err(self.unavailable(format!(
                    "it sent no entry from {start} although its checkpoint covers {to}"
                )));
            }
        }
        Ok(out)
    }

    /// The consistency proofs a checkpoint claim needs, in order.
    pub async fn proofs(
        &mut self,
        needs: &[ConsistencyNeed],
    ) -> Result<Vec<Vec<Hash>>, FollowError> {
        let mut proofs = Vec::with_capacity(needs.len());
        let api = self.api;
        for need in needs {
            let request = pb::GetConsistencyProofRequest {
                old_size: need.old_size,
                new_size: need.new_size,
            };
            let proof = self
                .call(|mut c| async move {
                    match api {
                        Api::Audit => c.audit.get_consistency_proof(request).await,
                        Api::Federation => c.federation.get_consistency_proof(request).await,
                    }
                })
                .await?;
            proofs.push(
                crate::client::hashes(&proof.proof)
                    .map_err(|e| self.refused_text(e.to_string()))?,
            );
        }
        Ok(proofs)
    }

    /// A page of the checkpoints it published, from `from_size` on.
    pub async fn checkpoints(
        &mut self,
        from_size: u64,
        limit: u32,
    ) -> Result<pb::ListCheckpointsResponse, FollowError> {
        let request = pb::ListCheckpointsRequest { from_size, limit };
        let api = self.api;
        self.call(|mut c| async move {
            match api {
                Api::Audit => c.audit.list_checkpoints(request).await,
                Api::Federation => c.federation.list_checkpoints(request).await,
            }
        })
        .await
    }

    /// Calls the hub, connecting first if needed; a failure is `Unavailable`.
    async fn call<T, F, Fut>(&mut self, f: F) -> Result<T, FollowError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = Client::connect(&self.addr, &self.tls)
                    .await
                    .map_err(|e| self.unavailable(e.to_string()))?;
                self.client = Some(c.clone());
                c
            }
        };
        f(client)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| self.unavailable(ClientError::from(status).to_string()))
    }

    /// The hub could not be reached or answered with an error.
    pub fn unavailable(&self, reason: String) -> FollowError {
        FollowError::Unavailable {
            addr: self.addr.clone(),
            reason,
        }
    }

    /// The hub served something a replica refuses.
    pub fn refused(&self, error: ReplicaError) -> FollowError {
        FollowError::Refused {
            addr: self.addr.clone(),
            error: Box::new(error),
        }
    }

    /// The hub served something malformed.
    pub fn refused_text(&self, reason: String) -> FollowError {
        self.refused(ReplicaError::new(
            crate::replica::Location::Input,
            crate::replica::Fault::Usage(reason),
        ))
    }
}
