//! Hostile parties for the member-sync tests, and the driver of the real `coalition sync`
//! binary those tests share.
//!
//! [`HostileHub`] is a small server over the real protocol, holding what a hostile hub operator
//! holds: the honest hub's TLS certificate and key and its checkpoint key, but no member's
//! signing key. It serves a [`Bent`] copy of a real log exported from an honest [`TestHub`]:
//! `Sync` faithful to the protocol (every entry from `from_seq`, bodies withheld outside the
//! request's filter, then a `SyncProgress`; `OUT_OF_RANGE` beyond the log) unless the case makes
//! it lie, checkpoints re-signed with the hub's own key over the bent log, consistency proofs
//! computed over it, whatever member directory the case wants, and whatever witness cosignature
//! lines it makes up (it holds no witness's key).

use super::TestHub;
use coalition_hub::log::{CheckpointSigner, MemoryTree, TreeSize, consistency_proof, root};
use coalition_hub::membership::MemberId;
use coalition_hub::pb;
use coalition_hub::pb::audit_server::{Audit, AuditServer};
use coalition_hub::pb::federation_server::{Federation, FederationServer};
use coalition_hub::pb::hub_server::{Hub, HubServer};
use coalition_hub::statement::{HashType, Header, Kind, Label, StatementId, SyncFilter};
use coalition_hub::sync::Cursor;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// How a hostile `Sync` lies on top of a faithful answer: given the request and the messages a
/// faithful hub would send for the bent log, it changes them.
pub type SyncLie = Arc<dyn Fn(&pb::SyncRequest, &mut Vec<pb::SyncResponse>) + Send + Sync>;

/// The witness cosignature lines a hostile hub serves with a checkpoint, given the checkpoint's
/// note text (what a cosignature covers).
pub type CosignatureLie = Arc<dyn Fn(&str) -> Vec<String> + Send + Sync>;

/// What a hostile hub serves.
#[derive(Clone)]
pub struct Bent {
    /// The log it claims, in order (entry i has seq i).
    pub log: Vec<pb::SyncEntry>,
    /// Its member directory (`ListMembers`).
    pub members: pb::ListMembersResponse,
    /// How `Sync` lies beyond serving `log`, if it does.
    pub sync_lie: Option<SyncLie>,
    /// Signs no checkpoint larger than this: a hub that streams entries it never proves.
    pub checkpoint_cap: Option<u64>,
    /// Answers every `Sync` with this error instead.
    pub sync_error: Option<(tonic::Code, String)>,
    /// Serves these cosignature lines with each checkpoint (none if unset: it holds no
    /// witness's key).
    pub cosignatures: Option<CosignatureLie>,
}

impl Bent {
    /// Serves `log` faithfully, with `members` as its directory.
    pub fn faithful(log: Vec<pb::SyncEntry>, members: pb::ListMembersResponse) -> Self {
        Bent {
            log,
            members,
            sync_lie: None,
            checkpoint_cap: None,
            sync_error: None,
            cosignatures: None,
        }
    }

    /// The same, serving `lines(note text)` as each checkpoint's cosignatures.
    pub fn cosigned(mut self, lines: impl Fn(&str) -> Vec<String> + Send + Sync + 'static) -> Self {
        self.cosignatures = Some(Arc::new(lines));
        self
    }

    /// The same, with `Sync` lying as `lie` says.
    pub fn lying(
        mut self,
        lie: impl Fn(&pb::SyncRequest, &mut Vec<pb::SyncResponse>) + Send + Sync + 'static,
    ) -> Self {
        self.sync_lie = Some(Arc::new(lie));
        self
    }
}

impl Bent {
    /// The same, with `Sync` also withholding the body of every entry whose signed header
    /// `strip` picks: a hub that treats those statements as restricted away from the caller
    /// (docs/PROTOCOL.md §2.7). Honest for a header that names other recipients; a lie for an
    /// unrestricted one, or one naming the caller.
    pub fn withholding(self, strip: impl Fn(&Header) -> bool + Send + Sync + 'static) -> Self {
        self.lying(move |_, messages| {
            for m in messages {
                if let Some(pb::sync_response::Item::Entry(e)) = &mut m.item
                    && let Some(envelope) = &mut e.envelope
                    && Header::decode(&envelope.payload).is_ok_and(|h| strip(&h))
                {
                    envelope.body = Default::default();
                }
            }
        })
    }
}

/// A real log as an honest hub serves it to an auditor: its entries (`Audit.GetEntries`), its
/// published checkpoints (`Audit.ListCheckpoints`) and its member directory (`ListMembers`).
#[derive(Clone)]
pub struct Export {
    /// Every entry, in order.
    pub entries: Vec<pb::SyncEntry>,
    /// Every checkpoint the hub published.
    pub checkpoints: Vec<pb::SignedCheckpoint>,
    /// The member directory.
    pub members: pb::ListMembersResponse,
}

/// Exports `t`'s log through the protocol, as its auditor.
pub async fn export(t: &TestHub) -> Export {
    let mut client = t.client("auditor").await;
    let size = t.store.log_size();
    let mut entries: Vec<pb::SyncEntry> = Vec::new();
    // Each call returns at least one entry (asserted), so this ends within `size` calls.
    while (entries.len() as u64) < size {
        let before = entries.len();
        let mut stream = client
            .audit
            .get_entries(pb::GetEntriesRequest {
                start: before as u64,
                end: size,
            })
            .await
            .expect("get entries")
            .into_inner();
        while let Some(entry) = stream.message().await.expect("entry stream") {
            entries.push(entry);
        }
        assert!(entries.len() > before, "GetEntries returned nothing");
    }
    let mut checkpoints = Vec::new();
    let mut from_size = 0;
    for _page in 0..1000 {
        let page = client
            .audit
            .list_checkpoints(pb::ListCheckpointsRequest {
                from_size,
                limit: 0,
            })
            .await
            .expect("list checkpoints")
            .into_inner();
        checkpoints.extend(page.checkpoints);
        match page.next_from_size {
            Some(next) => from_size = next,
            None => break,
        }
    }
    let members = client
        .hub
        .list_members(pb::ListMembersRequest {})
        .await
        .expect("list members")
        .into_inner();
    Export {
        entries,
        checkpoints,
        members,
    }
}

/// The Merkle tree of a (possibly bent) log, from its entries' recorded ids and receipt times.
pub fn tree_of(log: &[pb::SyncEntry]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for entry in log {
        let id = StatementId::from_slice(&entry.statement_id).expect("a 32-byte id");
        tree.append(&coalition_hub::store::leaf_data(&id, entry.received_at_ms));
    }
    tree
}

/// `entries` renumbered from 0, as a log whose entries were inserted or dropped claims them.
pub fn renumbered(entries: impl IntoIterator<Item = pb::SyncEntry>) -> Vec<pb::SyncEntry> {
    entries
        .into_iter()
        .enumerate()
        .map(|(seq, mut e)| {
            e.seq = seq as u64;
            e
        })
        .collect()
}

/// A log entry for `envelope` as a hub would record it, received at `received_at_ms`.
pub fn entry_of(envelope: pb::Envelope, received_at_ms: i64) -> pb::SyncEntry {
    pb::SyncEntry {
        seq: 0,
        received_at_ms,
        statement_id: StatementId::of(&envelope.payload_type, &envelope.payload)
            .0
            .to_vec(),
        envelope: Some(envelope),
        compromised_key_ids: Vec::new(),
        erased_by: None,
        relay: None,
    }
}

struct State {
    bent: Bent,
    tree: MemoryTree,
    signer: CheckpointSigner,
}

impl State {
    fn size(&self) -> u64 {
        self.bent.log.len() as u64
    }

    /// The size of the latest checkpoint it signs.
    fn latest(&self) -> u64 {
        self.bent
            .checkpoint_cap
            .map_or(self.size(), |cap| cap.min(self.size()))
    }

    fn checkpoint(&self, size: u64) -> Result<pb::SignedCheckpoint, Status> {
        let root = root(&self.tree, TreeSize(size)).map_err(|e| Status::internal(e.to_string()))?;
        let signed = self
            .signer
            .sign(TreeSize(size), root)
            .map_err(|e| Status::internal(e.to_string()))?;
        let cosignatures = self
            .bent
            .cosignatures
            .as_ref()
            .map_or_else(Vec::new, |lines| lines(&signed.checkpoint().body()));
        Ok(pb::SignedCheckpoint {
            tree_size: size,
            root_hash: root.0.to_vec(),
            note: signed.into_note(),
            cosignatures,
        })
    }
}

#[derive(Clone)]
struct Service(Arc<State>);

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn boxed<T: Send + 'static>(items: Vec<T>) -> Boxed<T> {
    Box::pin(tokio_stream::iter(items.into_iter().map(Ok)))
}

fn filter_of(req: &pb::SyncRequest) -> Result<SyncFilter, Status> {
    let bad = |what: &str| Status::invalid_argument(format!("bad filter value in {what}"));
    let kinds = req
        .kinds
        .iter()
        .map(|k| Kind::from_wire(*k).ok_or_else(|| bad("kinds")))
        .collect::<Result<_, _>>()?;
    let hash_types = req
        .hash_types
        .iter()
        .map(|t| HashType::from_wire(*t).ok_or_else(|| bad("hash_types")))
        .collect::<Result<_, _>>()?;
    let labels = req
        .labels
        .iter()
        .map(|l| Label::parse(l).map_err(|_| bad("labels")))
        .collect::<Result<_, _>>()?;
    let issuers = req
        .issuers
        .iter()
        .map(|i| MemberId::parse(i).map_err(|_| bad("issuers")))
        .collect::<Result<_, _>>()?;
    Ok(SyncFilter::new(kinds, hash_types, labels, issuers))
}

#[tonic::async_trait]
impl Hub for Service {
    async fn submit(
        &self,
        _: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        Err(Status::unimplemented("a hostile hub takes nothing"))
    }

    async fn submit_batch(
        &self,
        _: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        Err(Status::unimplemented("a hostile hub takes nothing"))
    }

    type SyncStream = Boxed<pb::SyncResponse>;

    async fn sync(
        &self,
        request: Request<pb::SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let req = request.into_inner();
        if let Some((code, message)) = &self.0.bent.sync_error {
            return Err(Status::new(*code, message.clone()));
        }
        let size = self.0.size();
        if req.from_seq > size {
            return Err(Status::out_of_range(format!(
                "from_seq {} is beyond this server's log size {size}: the server is behind",
                req.from_seq
            )));
        }
        let filter = filter_of(&req)?;
        let mut messages: Vec<pb::SyncResponse> = self.0.bent.log[req.from_seq as usize..]
            .iter()
            .cloned()
            .map(|mut entry| {
                if let Some(envelope) = &mut entry.envelope {
                    let selected =
                        Header::decode(&envelope.payload).map_or(true, |h| filter.selects(&h));
                    if !selected {
                        envelope.body = Default::default();
                    }
                }
                pb::SyncResponse {
                    item: Some(pb::sync_response::Item::Entry(entry)),
                }
            })
            .collect();
        messages.push(pb::SyncResponse {
            item: Some(pb::sync_response::Item::Progress(pb::SyncProgress {
                next_seq: size,
                log_size: size,
            })),
        });
        if let Some(lie) = &self.0.bent.sync_lie {
            lie(&req, &mut messages);
        }
        Ok(Response::new(boxed(messages)))
    }

    async fn get_statement(
        &self,
        _: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::SyncEntry>, Status> {
        Err(Status::unimplemented("not served"))
    }

    async fn list_members(
        &self,
        _: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        Ok(Response::new(self.0.bent.members.clone()))
    }

    async fn who_am_i(
        &self,
        _: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        Err(Status::unimplemented("not served"))
    }

    async fn r#match(
        &self,
        _: Request<pb::MatchRequest>,
    ) -> Result<Response<pb::MatchResponse>, Status> {
        Err(Status::unimplemented("not served"))
    }
}

#[tonic::async_trait]
impl Audit for Service {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let size = match request.into_inner().tree_size {
            Some(size) if size > self.0.latest() => {
                return Err(Status::not_found("no checkpoint of that size"));
            }
            Some(size) => size,
            None => self.0.latest(),
        };
        Ok(Response::new(self.0.checkpoint(size)?))
    }

    async fn list_checkpoints(
        &self,
        _: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        Ok(Response::new(pb::ListCheckpointsResponse {
            checkpoints: vec![self.0.checkpoint(self.0.latest())?],
            next_from_size: None,
        }))
    }

    async fn get_inclusion_proof(
        &self,
        _: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        Err(Status::unimplemented("not served"))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let pb::GetConsistencyProofRequest { old_size, new_size } = request.into_inner();
        if new_size > self.0.size() {
            return Err(Status::out_of_range("beyond the log"));
        }
        let proof = consistency_proof(&self.0.tree, TreeSize(old_size), TreeSize(new_size))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::ConsistencyProof {
            old_size,
            new_size,
            proof: proof.iter().map(|h| h.0.to_vec()).collect(),
            old_checkpoint: None,
            new_checkpoint: None,
        }))
    }

    type GetEntriesStream = Boxed<pb::SyncEntry>;

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let pb::GetEntriesRequest { start, end } = request.into_inner();
        if start > end {
            return Err(Status::invalid_argument("start is after end"));
        }
        if end > self.0.size() {
            return Err(Status::out_of_range("end is beyond the log size"));
        }
        Ok(Response::new(boxed(
            self.0.bent.log[start as usize..end as usize].to_vec(),
        )))
    }
}

/// A peer serves what it serves an auditor (docs/PROTOCOL.md §3.10).
#[tonic::async_trait]
impl Federation for Service {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        Audit::get_checkpoint(self, request).await
    }

    async fn list_checkpoints(
        &self,
        request: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        Audit::list_checkpoints(self, request).await
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        Audit::get_consistency_proof(self, request).await
    }

    type GetEntriesStream = Boxed<pb::SyncEntry>;

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        Audit::get_entries(self, request).await
    }
}

/// A hostile hub serving a bent log on 127.0.0.1; stopped when dropped.
pub struct HostileHub {
    /// Its address.
    pub addr: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HostileHub {
    /// Serves `bent` with `honest`'s TLS certificate and checkpoint key.
    pub async fn serve(honest: &TestHub, bent: Bent) -> HostileHub {
        let tree = tree_of(&bent.log);
        let service = Service(Arc::new(State {
            bent,
            tree,
            signer: honest.signer.clone(),
        }));
        let tls = honest.certs.hub_tls().expect("hub tls");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = Server::builder()
            .tls_config(
                ServerTlsConfig::new()
                    .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
                    .client_ca_root(Certificate::from_pem(&tls.ca_pem)),
            )
            .expect("tls config")
            .add_service(HubServer::new(service.clone()))
            .add_service(AuditServer::new(service.clone()))
            .add_service(FederationServer::new(service))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = rx.await;
                },
            );
        tokio::spawn(server);
        HostileHub {
            addr,
            shutdown: Some(tx),
        }
    }
}

impl Drop for HostileHub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// What one run of the `coalition` binary did.
#[derive(Debug)]
pub struct Run {
    /// Its exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the run succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "coalition sync failed: {self:?}");
        self
    }

    /// Asserts the run failed with one error line and no panic; returns that line.
    pub fn failed(&self) -> &str {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "coalition sync should have failed: {self:?}"
        );
        let stderr = self.stderr.trim_end();
        assert_eq!(stderr.lines().count(), 1, "one error line: {self:?}");
        assert!(
            !stderr.chars().any(char::is_control),
            "no raw control character: {self:?}"
        );
        assert!(stderr.starts_with("error: "), "{self:?}");
        assert!(!stderr.contains("panicked"), "{self:?}");
        stderr
    }
}

/// The `coalition sync` command line as `member` against `addr` into `out`, with `extra`
/// arguments (filters, `--genesis`, `--follow`).
pub fn sync_command(addr: &str, certs: &Path, member: &str, out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coalition"));
    command
        .args(["sync", "--hub", addr, "--as", member, "--certs"])
        .arg(certs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("COALITION_HUB")
        .env_remove("COALITION_MEMBER")
        .env_remove("COALITION_CERTS");
    command
}

/// Runs `coalition sync` (see [`sync_command`]) to its end, off the async workers.
pub async fn sync_cli(addr: &str, certs: &Path, member: &str, out: &Path, extra: &[&str]) -> Run {
    let mut command = sync_command(addr, certs, member, out, extra);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run coalition sync");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The file `coalition sync` keeps beside `out` with this suffix (".cursor", ".ids").
pub fn beside(out: &Path, suffix: &str) -> PathBuf {
    let mut p = out.to_path_buf().into_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

/// The cursor saved beside `out`.
pub fn cursor(out: &Path) -> Cursor {
    Cursor::load(&beside(out, ".cursor"))
        .expect("cursor readable")
        .expect("cursor saved")
}

/// The output, cursor and ids file of a sync into `out`, byte for byte (empty if absent).
pub fn state(out: &Path) -> [Vec<u8>; 3] {
    [
        out.to_path_buf(),
        beside(out, ".cursor"),
        beside(out, ".ids"),
    ]
    .map(|p| std::fs::read(p).unwrap_or_default())
}

/// Copies the output, cursor and ids file of a sync from `from` to `to`.
pub fn copy_state(from: &Path, to: &Path) {
    for suffix in ["", ".cursor", ".ids"] {
        std::fs::copy(beside(from, suffix), beside(to, suffix)).expect("copy sync state");
    }
}
