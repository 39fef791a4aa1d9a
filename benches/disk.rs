//! Disk per statement: a separate `coalition serve` process (release) is sent N signed
//! statements over gRPC + mutual TLS from 4 connections with 16 submissions in flight on each;
//! the hub is then stopped and the data directory measured: bytes allocated on disk (`du`,
//! 512-byte blocks) and the files' apparent size, per statement and per hash, against the
//! average envelope size. Two shapes (`DISK_BENCH_MODE`):
//! - `single` (default): statements of one sha256 hash each (the shape of risk signals),
//!   `DISK_BENCH_STATEMENTS` of them (100,000 by default);
//! - `pdq`: sets of 10,000 random PDQ hashes, `DISK_BENCH_SETS` of them (10 by default).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-tiles cargo bench --bench disk`
//! (`DISK_BENCH_MODE=pdq DISK_BENCH_SETS=100` for a million PDQ hashes;
//! `HUB_BENCH_HUB_BINARY=path/to/coalition` measures another build of the hub; with
//! `DISK_BENCH_EARLIER_LAYOUT=1` the founded directory is turned into the layout before the id
//! runs, for a hub built before them). After the figures, the directory's bytes per file and
//! sled's logical bytes per tree and key prefix (where sled's bytes go).

#[path = "support/founding.rs"]
mod founding;
#[path = "support/hub_process.rs"]
mod hub_process;

use anyhow::{Context, Result, anyhow, bail};
use coalition_hub::client::{Client, sign_new};

use coalition_hub::membership::MemberId;
use coalition_hub::pb;
use coalition_hub::pki::CertDir;
use coalition_hub::statement::{Body, Category, HashEntry, HashSet, HashType, Label};
use hub_process::Hub;
use prost::Message;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Connections submitting at once.
const CONNECTIONS: usize = 4;
/// Submissions in flight per connection.
const IN_FLIGHT: usize = 16;
/// PDQ hashes per set in the `pdq` mode.
const PDQ_SET: usize = 10_000;

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<()> {
    let shape = match std::env::var("DISK_BENCH_MODE").as_deref() {
        Ok("single") | Err(_) => Shape::Single(env_usize("DISK_BENCH_STATEMENTS", 100_000)?),
        Ok("pdq") => Shape::Pdq(env_usize("DISK_BENCH_SETS", 10)?),
        Ok(other) => bail!("DISK_BENCH_MODE={other:?}: use single or pdq"),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(run(shape))
}

/// What the bench submits.
#[derive(Clone, Copy)]
enum Shape {
    /// This many statements of one sha256 hash.
    Single(usize),
    /// This many sets of [`PDQ_SET`] random PDQ hashes.
    Pdq(usize),
}

impl Shape {
    fn statements(self) -> usize {
        match self {
            Shape::Single(n) | Shape::Pdq(n) => n,
        }
    }
    fn hashes(self) -> usize {
        match self {
            Shape::Single(n) => n,
            Shape::Pdq(n) => n * PDQ_SET,
        }
    }
    fn body(self, i: usize) -> Body {
        match self {
            Shape::Single(_) => single_hash(i),
            Shape::Pdq(_) => pdq_set(i),
        }
    }
}

async fn run(shape: Shape) -> Result<()> {
    let statements = shape.statements();
    let root = tempfile::tempdir().context("creating a temporary directory")?;
    let certs = CertDir::new(root.path().join("certs"));
    let admin = MemberId::parse("admin")?;
    let submitter = MemberId::parse("bench-submitter")?;
    certs.init(&[admin.clone(), submitter.clone()])?;
    let data = root.path().join("data");
    founding::found(
        &data,
        &certs,
        "bench.coalition.local",
        &admin,
        &[&submitter],
    )
    .await?;
    if std::env::var_os("DISK_BENCH_EARLIER_LAYOUT").is_some() {
        founding::earlier_layout(&data)?;
    }
    let before = disk(&data)?;

    let key = certs.signing_key(&submitter)?;
    let envelopes: Vec<pb::Envelope> = (0..statements)
        .map(|i| sign_new(&submitter, &key, shape.body(i)))
        .collect();
    let envelope_bytes: usize = envelopes.iter().map(Message::encoded_len).sum();

    let hub = Hub::start(certs.root(), &data, &root.path().join("hub.log"), 128)?;
    let tls = certs.member_tls(&submitter)?;
    let queue = Arc::new(Mutex::new(envelopes.into_iter()));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let client = Client::connect(&hub.addr, &tls).await?;
        for _ in 0..IN_FLIGHT {
            let (mut client, queue) = (client.clone(), queue.clone());
            tasks.spawn(async move {
                loop {
                    let next = queue.lock().map_err(|_| anyhow!("poisoned"))?.next();
                    let Some(envelope) = next else { break };
                    if client.submit(envelope).await?.already_present {
                        bail!("a fresh statement was reported as already present");
                    }
                }
                Ok::<_, anyhow::Error>(())
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = t.elapsed();
    let memory = hub.memory()?;
    hub.stop()?;
    let after = disk(&data)?;

    let n = statements as f64;
    let allocated = (after.allocated - before.allocated) as f64;
    let apparent = (after.apparent - before.apparent) as f64;
    match shape {
        Shape::Single(_) => println!("Disk per single-hash statement ({statements} statements)"),
        Shape::Pdq(_) => {
            println!("Disk per PDQ hash ({statements} sets of {PDQ_SET} random PDQ hashes)")
        }
    }
    println!(
        "submitted in {:.1} s ({:.0} statements/s, {CONNECTIONS} connections x {IN_FLIGHT} in flight); hub peak memory {} MiB",
        elapsed.as_secs_f64(),
        n / elapsed.as_secs_f64(),
        memory.hwm_kib / 1024
    );
    println!(
        "data directory: {:.1} MiB allocated (du), {:.1} MiB apparent, {:.1} MiB before the statements",
        after.allocated as f64 / 1048576.0,
        after.apparent as f64 / 1048576.0,
        before.allocated as f64 / 1048576.0
    );
    println!(
        "per statement: {:.0} B allocated, {:.0} B apparent; envelope {:.0} B on average ({:.2}x / {:.2}x the envelope)",
        allocated / n,
        apparent / n,
        envelope_bytes as f64 / n,
        allocated / envelope_bytes as f64,
        apparent / envelope_bytes as f64
    );
    sled_breakdown(&data, n)?;
    if let Shape::Pdq(_) = shape {
        let hashes = shape.hashes() as f64;
        println!(
            "per hash: {:.1} B allocated, {:.1} B apparent; envelope {:.1} B per hash",
            allocated / hashes,
            apparent / hashes,
            envelope_bytes as f64 / hashes
        );
    }
    Ok(())
}

/// Where the bytes of the data directory go, per statement: each file (sled's `db`, `snap.*`,
/// `blobs/`, the entry files, ...) and, inside sled, the logical bytes (keys + values) of each
/// tree and key prefix (first key byte), so sled's own overhead is the difference.
fn sled_breakdown(data: &Path, n: f64) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    println!("files (allocated per statement):");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(data)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = if entry.metadata()?.is_dir() {
            disk(&entry.path())?.allocated
        } else {
            entry.metadata()?.blocks() * 512
        };
        files.push((name, bytes));
    }
    files.sort();
    for (name, bytes) in files {
        println!(
            "  {name:<24} {:>12} B  {:>8.1} B/statement",
            bytes,
            bytes as f64 / n
        );
    }
    let db = sled::Config::new()
        .path(data)
        .open()
        .context("opening the hub's sled database")?;
    println!("sled logical bytes (keys + values) per tree and key prefix:");
    let mut total = 0u64;
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let mut prefixes: std::collections::BTreeMap<u8, (u64, u64)> = Default::default();
        for kv in tree.iter() {
            let (k, v) = kv?;
            let slot = prefixes.entry(k.first().copied().unwrap_or(0)).or_default();
            slot.0 += 1;
            slot.1 += (k.len() + v.len()) as u64;
        }
        for (prefix, (keys, bytes)) in prefixes {
            total += bytes;
            println!(
                "  tree {:<12} prefix {:<4} {keys:>10} keys {bytes:>12} B  {:>8.1} B/statement",
                String::from_utf8_lossy(&name),
                (prefix as char).escape_default().to_string(),
                bytes as f64 / n
            );
        }
    }
    println!(
        "  all trees: {total} B logical, {:.1} B/statement",
        total as f64 / n
    );
    Ok(())
}

/// One sha256 hash labelled A1, distinct per `seed`.
fn single_hash(seed: usize) -> Body {
    Body::HashSet(HashSet {
        expires_at_ms: None,
        description: String::new(),
        entries: vec![HashEntry {
            hash_type: HashType::Sha256,
            value: Sha256::digest(format!("disk/{seed}")).to_vec(),
            quality: None,
            labels: vec![Label::Category(Category::A1)],
        }],
    })
}

/// Set `seed`: [`PDQ_SET`] random PDQ hashes (quality 90, labelled A1).
fn pdq_set(seed: usize) -> Body {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed as u64);
    Body::HashSet(HashSet {
        expires_at_ms: None,
        description: String::new(),
        entries: (0..PDQ_SET)
            .map(|_| HashEntry {
                hash_type: HashType::Pdq,
                value: rng.r#gen::<[u8; 32]>().to_vec(),
                quality: Some(90),
                labels: vec![Label::Category(Category::A1)],
            })
            .collect(),
    })
}

/// Bytes of a directory tree: allocated on disk (`st_blocks` × 512, what `du` counts) and
/// apparent (file lengths).
struct Disk {
    allocated: u64,
    apparent: u64,
}

fn disk(dir: &Path) -> Result<Disk> {
    use std::os::unix::fs::MetadataExt;
    let mut total = Disk {
        allocated: 0,
        apparent: 0,
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let sub = disk(&entry.path())?;
            total.allocated += sub.allocated;
            total.apparent += sub.apparent;
        } else {
            total.allocated += meta.blocks() * 512;
            total.apparent += meta.len();
        }
    }
    Ok(total)
}
