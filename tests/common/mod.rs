//! Test harness: a real hub on 127.0.0.1 with an ephemeral port, certificates generated now by
//! rcgen, sled in a temporary directory, and real gRPC clients over mutual TLS.
#![allow(dead_code)]

pub mod founded;
pub mod hostile;
pub mod lifecycle;

use coalition_hub::client::{Client, ClientError, sign_new};
use coalition_hub::governance::{self, admission};
use coalition_hub::log::{CheckpointSigner, VerifierKey};
use coalition_hub::membership::{Action, KeyId, MemberId, Revocation, Role};
use coalition_hub::pb;
use coalition_hub::pki::{CertDir, TlsConfig};
use coalition_hub::replica::{Accepted, Entry, Replica, ReplicaError, SeenMap};
use coalition_hub::server::{CheckpointPolicy, RunningHub, ServeOptions, spawn};
use coalition_hub::statement::{Body, HashEntry, HashSet, HashType, Label};
use coalition_hub::store::{Store, StoreConfig};
use coalition_hub::sync::{FilterSpec, Proven, ReceivedEntry, SyncError, SyncOptions, Syncer};
use ed25519_dalek::SigningKey;
use std::path::PathBuf;
use tempfile::TempDir;

/// The name of every test hub (its genesis hub name, the origin of its checkpoints).
pub const ORIGIN: &str = "test.coalition.local";

/// A running hub founded by `admin` (quorum 1), with two members, acme and globex, and an
/// auditor, admitted by signed membership statements. `outsider` has a certificate from the
/// coalition CA but was never admitted.
pub struct TestHub {
    pub hub: Option<RunningHub>,
    pub addr: String,
    pub store: Store,
    pub certs: CertDir,
    pub data: PathBuf,
    /// Log entries written while setting up (genesis and admissions): the first test entry's seq.
    pub base: u64,
    /// The hub's checkpoint signer (its genesis name and hub key).
    pub signer: CheckpointSigner,
    /// The verifier key clients pin to check this hub's checkpoints.
    pub checkpoint_key: VerifierKey,
    /// The options the hub serves with.
    pub options: ServeOptions,
    _dirs: TempDir,
}

/// A stopped test hub whose store is closed: everything needed to start it again on the same
/// data. Drop the tokio runtime that ran the hub before resuming (its background tasks hold
/// the store open until then).
pub struct StoppedHub {
    certs: CertDir,
    data: PathBuf,
    base: u64,
    options: ServeOptions,
    dirs: TempDir,
}

pub fn id(s: &str) -> MemberId {
    MemberId::parse(s).expect("test member id")
}

impl TestHub {
    /// Starts a hub: genesis with `admin`, then acme, globex (members) and auditor admitted
    /// over mutual TLS.
    pub async fn start() -> TestHub {
        Self::start_with(|_, options| options).await
    }

    /// The same, publishing checkpoints under `policy`.
    pub async fn start_with_policy(policy: CheckpointPolicy) -> TestHub {
        Self::start_with(|_, options| ServeOptions {
            checkpoints: policy,
            ..options
        })
        .await
    }

    /// As `start`, with the options `configure` makes of the defaults once the PKI exists.
    pub async fn start_with(
        configure: impl FnOnce(&CertDir, ServeOptions) -> ServeOptions,
    ) -> TestHub {
        Self::start_named(ORIGIN, configure).await
    }

    /// [`TestHub::start_with`] for a hub named `hub_name` (its genesis hub name).
    pub async fn start_named(
        hub_name: &str,
        configure: impl FnOnce(&CertDir, ServeOptions) -> ServeOptions,
    ) -> TestHub {
        let dirs = tempfile::tempdir().expect("tempdir");
        let certs = CertDir::new(dirs.path().join("certs"));
        certs
            .init(&[
                id("admin"),
                id("acme"),
                id("globex"),
                id("auditor"),
                id("outsider"),
            ])
            .expect("pki");
        let data = dirs.path().join("data");
        let store = Store::open(&data, &StoreConfig::default()).expect("store");
        governance::found_from_certs(
            &store,
            &certs,
            hub_name,
            &[(id("admin"), "Admin".to_string())],
            1,
        )
        .await
        .expect("genesis");
        let defaults = ServeOptions::for_store(&store, certs.hub_signing_key().expect("hub key"))
            .expect("options");
        let options = configure(&certs, defaults);
        let stopped = StoppedHub {
            certs,
            data,
            base: 0,
            options,
            dirs,
        };
        let mut t = Self::launch(stopped, store).await;
        for (m, role) in [
            ("acme", Role::Member),
            ("globex", Role::Member),
            ("auditor", Role::Auditor),
        ] {
            t.admin_change(Action::Admit(admission(
                &id(m),
                &m.to_uppercase(),
                &[role],
                &[t.key(m).verifying_key()],
            )))
            .await
            .expect("admit member");
        }
        t.base = t.store.log_size();
        t
    }

    /// Serves `store` (a fresh start or a restart).
    async fn launch(s: StoppedHub, store: Store) -> TestHub {
        let hub = spawn(
            "127.0.0.1:0",
            store.clone(),
            s.certs.hub_tls().expect("hub tls"),
            s.options.clone(),
        )
        .await
        .expect("server");
        // The hub publishes a checkpoint at start-up if it has none (or the log grew): wait for
        // it, so tests know which checkpoints exist.
        let mut published = store.watch_checkpoint();
        let size = store.log_size();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            published.wait_for(|c| c.is_some_and(|c| c >= size)),
        )
        .await
        .expect("start-up checkpoint within 10 s")
        .expect("checkpoint watch");
        let signer = s
            .options
            .checkpoint_signer
            .clone()
            .expect("a test hub signs its checkpoints");
        TestHub {
            addr: hub.addr.to_string(),
            hub: Some(hub),
            store,
            certs: s.certs,
            data: s.data,
            base: s.base,
            checkpoint_key: signer.verifier_key().clone(),
            signer,
            options: s.options,
            _dirs: s.dirs,
        }
    }

    /// Stops the hub (in-flight calls finish) and hands back its directories and key.
    pub async fn stop(mut self) -> StoppedHub {
        if let Some(hub) = self.hub.take() {
            hub.stop().await.expect("stop");
        }
        StoppedHub {
            certs: self.certs,
            data: self.data,
            base: self.base,
            options: self.options,
            dirs: self._dirs,
        }
    }

    /// Starts a stopped hub again on the same data directory, certificates and key.
    pub async fn resume(stopped: StoppedHub) -> TestHub {
        let store = Store::open(&stopped.data, &StoreConfig::default()).expect("reopen store");
        Self::launch(stopped, store).await
    }

    /// Rotates `member`'s signing key as an admin would: adds a fresh key, then retires `old`.
    /// Returns the new key.
    pub async fn rotate_key(&self, member: &str, old: &SigningKey) -> SigningKey {
        let new = SigningKey::generate(&mut rand::rngs::OsRng);
        self.admin_change(Action::AddKey {
            member: id(member),
            key: new.verifying_key(),
        })
        .await
        .expect("add key");
        self.admin_change(Action::RevokeKey {
            member: id(member),
            key_id: KeyId::of(&old.verifying_key()),
            revocation: Revocation::Retired,
        })
        .await
        .expect("retire the old key");
        new
    }

    /// A following sync as `member` with its own replica (state in a fresh temporary
    /// directory): every batch it yields is verified and proven.
    pub async fn follow(&self, member: &str) -> Follower {
        let dir = tempfile::tempdir().expect("sync state dir");
        let (syncer, _) = Syncer::open(
            self.client(member).await,
            SyncOptions {
                filter: FilterSpec::default(),
                follow: true,
                genesis: None,
                cursor: dir.path().join("cursor"),
                ids: dir.path().join("ids"),
                require_witnessed: false,
            },
        )
        .await
        .expect("sync");
        Follower { syncer, _dir: dir }
    }

    /// A whole (non-following) sync as `member` with `filter`, by the member's own replica
    /// (state in a fresh temporary directory): membership replayed from the genesis, every
    /// entry verified and proven in a signed checkpoint. Returns what it proved, or why not.
    pub async fn sync_proven(&self, member: &str, filter: FilterSpec) -> Result<Synced, SyncError> {
        let dir = tempfile::tempdir().expect("sync state dir");
        let (mut syncer, _) = Syncer::open(
            self.client(member).await,
            SyncOptions {
                filter,
                follow: false,
                genesis: None,
                cursor: dir.path().join("cursor"),
                ids: dir.path().join("ids"),
                require_witnessed: false,
            },
        )
        .await?;
        let mut synced = Synced {
            entries: Vec::new(),
            rows: Vec::new(),
            replica: Replica::new(),
        };
        // Bounded: every batch holds at least one entry, and these logs are small.
        for _ in 0..10_000 {
            let Some(proven) = syncer.next().await? else {
                synced.replica = syncer.replica().clone();
                return Ok(synced);
            };
            let rows: Vec<Option<ReceivedEntry>> = proven
                .entries
                .iter()
                .map(|e| syncer.row(e.clone()))
                .collect();
            let written: Vec<bool> = rows.iter().map(Option::is_some).collect();
            syncer.commit(&written, 0)?;
            synced.rows.extend(rows.into_iter().flatten());
            synced.entries.extend(proven.entries);
        }
        panic!("the sync did not end");
    }

    /// The genesis statement id (hex), as the admin reads it from the hub.
    pub async fn genesis_hex(&self) -> String {
        let coalition = self
            .client("admin")
            .await
            .coalition()
            .await
            .expect("coalition");
        hex::encode(coalition.genesis_statement_id)
    }

    /// The hub's latest checkpoint, published now if the log grew (as the auditor asks).
    pub async fn published_checkpoint(&self) -> pb::SignedCheckpoint {
        self.client("auditor")
            .await
            .audit
            .get_checkpoint(pb::GetCheckpointRequest {
                tree_size: None,
                refresh: true,
            })
            .await
            .expect("checkpoint")
            .into_inner()
    }

    /// Signs `action` as `admin` and submits it.
    pub async fn admin_change(&self, action: Action) -> Result<pb::SubmitResponse, ClientError> {
        let envelope = governance::change(&id("admin"), &self.key("admin"), action, "test");
        self.client("admin").await.submit(envelope).await
    }

    pub fn tls(&self, member: &str) -> TlsConfig {
        self.certs.member_tls(&id(member)).expect("member tls")
    }

    pub fn key(&self, member: &str) -> SigningKey {
        self.certs.signing_key(&id(member)).expect("signing key")
    }

    pub async fn client(&self, member: &str) -> Client {
        Client::connect(&self.addr, &self.tls(member))
            .await
            .expect("connect")
    }

    /// A signed hash set of `n` sha256 hashes by `member`, distinct per `seed`.
    pub fn hash_set(&self, member: &str, seed: u64, n: usize) -> pb::Envelope {
        sign_new(
            &id(member),
            &self.key(member),
            Body::HashSet(sha256_set(seed, n)),
        )
    }
}

pub fn sha256_set(seed: u64, n: usize) -> HashSet {
    HashSet {
        expires_at_ms: None,
        description: String::new(),
        entries: (0..n)
            .map(|i| HashEntry {
                hash_type: HashType::Sha256,
                value: sha256_value(seed, i as u64),
                quality: None,
                labels: vec![Label::Tag("test".into())],
            })
            .collect(),
    }
}

pub fn sha256_value(seed: u64, i: u64) -> Vec<u8> {
    let mut v = vec![0u8; 32];
    v[..8].copy_from_slice(&seed.to_be_bytes());
    v[8..16].copy_from_slice(&i.to_be_bytes());
    v
}

/// What a member's own replica proved by syncing a whole log ([`TestHub::sync_proven`]).
pub struct Synced {
    /// Every entry, in log order.
    pub entries: Vec<Accepted>,
    /// The rows given to the member's output writer (its filter, compromise computed here).
    pub rows: Vec<ReceivedEntry>,
    /// The replica at the end: membership, size, checkpoint.
    pub replica: Replica,
}

impl Synced {
    /// The accepted entry with this sequence number.
    pub fn at(&self, seq: u64) -> &Accepted {
        self.entries
            .iter()
            .find(|e| e.seq == seq)
            .unwrap_or_else(|| panic!("entry {seq} was not synced"))
    }

    /// The sequence numbers of the hash sets and risk signals given to the output writer
    /// (membership statements reach it too, and it writes nothing for them).
    pub fn written(&self) -> Vec<u64> {
        use coalition_hub::statement::Kind;
        self.rows
            .iter()
            .filter(|r| matches!(r.statement.kind(), Kind::HashSet | Kind::RiskSignal))
            .map(|r| r.seq)
            .collect()
    }

    /// The row given to the output writer for this sequence number, if any.
    pub fn row(&self, seq: u64) -> Option<&ReceivedEntry> {
        self.rows.iter().find(|r| r.seq == seq)
    }
}

/// Replays `entries` (a whole log, from its genesis) through a fresh replica, as a member or
/// an auditor would, without checkpoints: every rule an entry must meet at its position.
pub fn replay(entries: Vec<pb::SyncEntry>) -> Result<(Replica, Vec<Accepted>), ReplicaError> {
    let mut replica = Replica::new();
    let accepted = replica.append(
        entries.into_iter().map(Entry::from_wire).collect(),
        &mut SeenMap::default(),
    )?;
    Ok((replica, accepted))
}

/// Signs raw header and body bytes with `key`, exactly as given (for tests that craft
/// invalid statements).
pub fn sign_raw(header: Vec<u8>, body: Vec<u8>, key: &SigningKey) -> pb::Envelope {
    use ed25519_dalek::Signer;
    let pae = coalition_hub::statement::pae(coalition_hub::statement::PAYLOAD_TYPE, &header);
    pb::Envelope {
        payload_type: coalition_hub::statement::PAYLOAD_TYPE.into(),
        payload: header.into(),
        signatures: vec![pb::Signature {
            key_id: coalition_hub::membership::KeyId::of(&key.verifying_key()).to_string(),
            sig: key.sign(&pae).to_bytes().to_vec(),
        }],
        body: body.into(),
    }
}

/// Signs a wire body with `key` under a header computed from it, as an honest author would
/// but without validating the body (for tests that craft invalid statements): the header's
/// kind, hash types and labels are taken from the body as given.
pub fn sign_wire(issuer: &str, body: &pb::StatementBody, key: &SigningKey) -> pb::Envelope {
    use prost::Message;
    let body_bytes = body.encode_to_vec();
    let header = wire_header(issuer, body, &body_bytes, key);
    sign_raw(header.encode_to_vec(), body_bytes, key)
}

/// The header an honest author would sign for `body` (serialized as `body_bytes`), signing
/// with `key`, dated now; not validated (tests edit it to craft invalid statements).
pub fn wire_header(
    issuer: &str,
    body: &pb::StatementBody,
    body_bytes: &[u8],
    key: &SigningKey,
) -> pb::Statement {
    use sha2::Digest;
    let (kind, entries): (pb::StatementKind, Vec<pb::HashEntry>) = match &body.body {
        Some(pb::statement_body::Body::HashSet(s)) => {
            (pb::StatementKind::HashSet, s.entries.clone())
        }
        Some(pb::statement_body::Body::RiskSignal(s)) => (
            pb::StatementKind::RiskSignal,
            s.indicators.iter().filter_map(|i| i.hash.clone()).collect(),
        ),
        Some(pb::statement_body::Body::Genesis(_)) => (pb::StatementKind::Genesis, Vec::new()),
        Some(pb::statement_body::Body::Membership(_)) => {
            (pb::StatementKind::Membership, Vec::new())
        }
        Some(pb::statement_body::Body::Settings(_)) => (pb::StatementKind::Settings, Vec::new()),
        Some(pb::statement_body::Body::Retraction(_)) => {
            (pb::StatementKind::Retraction, Vec::new())
        }
        Some(pb::statement_body::Body::Opinion(_)) => (pb::StatementKind::Opinion, Vec::new()),
        None => (pb::StatementKind::Unspecified, Vec::new()),
    };
    let mut hash_types: Vec<i32> = entries.iter().map(|e| e.r#type).collect();
    hash_types.sort_unstable();
    hash_types.dedup();
    let mut labels: Vec<String> = entries.iter().flat_map(|e| e.labels.clone()).collect();
    labels.sort();
    labels.dedup();
    pb::Statement {
        issuer: issuer.into(),
        key_id: coalition_hub::membership::KeyId::of(&key.verifying_key()).to_string(),
        issued_at_ms: coalition_hub::store::now_ms(),
        nonce: vec![7; 16],
        kind: kind as i32,
        hash_types,
        labels,
        body_sha256: sha2::Sha256::digest(body_bytes).to_vec(),
        body_bytes: body_bytes.len() as u64,
        recipients: Vec::new(),
    }
}

/// Collects a non-following sync from `from`: (entries, final next_seq).
pub async fn sync_all(client: &mut Client, request: pb::SyncRequest) -> (Vec<pb::SyncEntry>, u64) {
    let mut stream = client.hub.sync(request).await.expect("sync").into_inner();
    let mut entries = Vec::new();
    let mut next = 0;
    while let Some(msg) = stream.message().await.expect("stream") {
        match msg.item {
            Some(pb::sync_response::Item::Entry(e)) => entries.push(e),
            Some(pb::sync_response::Item::Progress(p)) => next = p.next_seq,
            None => {}
        }
    }
    (entries, next)
}

/// A following sync with its own replica and state directory.
pub struct Follower {
    pub syncer: Syncer,
    _dir: TempDir,
}

impl Follower {
    /// The next proven batch (committed at once, nothing written).
    pub async fn next(&mut self) -> Option<Proven> {
        let proven = self.syncer.next().await.expect("sync")?;
        self.syncer.commit(&[], 0).expect("commit");
        Some(proven)
    }

    /// The next proven batch, committed as a writer would (a row for every entry the
    /// member's filter selects), so that later batches report what it holds.
    pub async fn next_writing(&mut self) -> Option<Proven> {
        let proven = self.syncer.next().await.expect("sync")?;
        let written: Vec<bool> = proven
            .entries
            .iter()
            .map(|e| self.syncer.row(e.clone()).is_some())
            .collect();
        self.syncer.commit(&written, 0).expect("commit");
        Some(proven)
    }

    /// The next accepted entry with a statement, skipping others, waiting for batches.
    pub async fn next_statement(&mut self) -> coalition_hub::replica::Accepted {
        loop {
            let batch = self.next().await.expect("stream open");
            if let Some(e) = batch.entries.into_iter().find(|e| e.statement().is_some()) {
                return e;
            }
        }
    }
}

/// Where entry `seq`'s record lies in the data directory's records file (its byte range), read
/// from the offsets file: 8 bytes per entry, big-endian end offsets (see
/// `src/store/entry_files.rs`). For tests that damage a stored record on purpose.
pub fn stored_record_range(data: &std::path::Path, seq: u64) -> std::ops::Range<u64> {
    let offsets =
        std::fs::read(data.join(coalition_hub::store::ENTRIES_OFFSETS_FILE)).expect("offsets file");
    let end_of = |i: u64| {
        let at = (i * 8) as usize;
        u64::from_be_bytes(offsets[at..at + 8].try_into().expect("8 bytes"))
    };
    let start = if seq == 0 { 0 } else { end_of(seq - 1) };
    start..end_of(seq)
}

/// Overwrites entry `seq`'s record in the closed store's records file with `f` applied to it
/// (same length: the offsets stay right).
pub fn rewrite_stored_record(data: &std::path::Path, seq: u64, f: impl FnOnce(&mut Vec<u8>)) {
    use std::os::unix::fs::FileExt;
    let range = stored_record_range(data, seq);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(data.join(coalition_hub::store::ENTRIES_DATA_FILE))
        .expect("records file");
    let mut record = vec![0u8; (range.end - range.start) as usize];
    file.read_exact_at(&mut record, range.start).expect("read");
    let len = record.len();
    f(&mut record);
    assert_eq!(record.len(), len, "a rewritten record keeps its length");
    file.write_all_at(&record, range.start).expect("write");
    file.sync_all().expect("sync");
}

/// Copies the directory `from` into `to` (made if missing), recursively: a data directory
/// copied while no store holds it, as a backup would be.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A two-worker runtime, for tests that stop a hub and drop its runtime (closing its store)
/// before opening the data directory again.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
