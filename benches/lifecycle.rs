//! Retractions at scale (issue 12): a corpus of PDQ hashes (default 10M: one set of 100,000,
//! the rest in sets of 10,000) is submitted over gRPC + mutual TLS to a separate
//! `coalition serve` process while a member follows it with the real CLI
//! (`coalition sync --follow --snapshot`). Then one retraction statement names every entry of
//! the 100,000-hash set (1% of the corpus), and the benchmark measures, from its
//! acknowledgement:
//! - when `Match` stops returning a hash of that set;
//! - when the member's snapshot file has been rewritten without the set's hashes;
//!
//! and the latency of 1,000 PDQ queries (half planted near stored hashes, a share of them in
//! the retracted set, half random) before and after the retraction, in the same run.
//!
//! Run (release build): `cargo bench --bench lifecycle`. `LIFECYCLE_HASHES` (default
//! 10,000,000) sets the corpus size; the retracted set has 1% of it (at most 100,000, the
//! hash-set entry limit).

#[path = "support/founding.rs"]
mod founding;
#[path = "support/hub_process.rs"]
mod hub_process;
#[path = "support/pdq_queries.rs"]
mod pdq_queries;

use anyhow::{Context, Result, anyhow, bail};
use coalition_hub::client::{Client, sign_new};
use coalition_hub::lifecycle::Retraction;
use coalition_hub::membership::MemberId;
use coalition_hub::pki::CertDir;
use coalition_hub::statement::{
    Body, Category, HashEntry, HashSet, HashType, Label, MAX_HASH_SET_ENTRIES, StatementId,
};
use hub_process::Hub;
use pdq_queries::{env_usize, planted_queries, request, time_batches};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Hashes per set, except set 0 (the one retracted).
const SET: usize = 10_000;
const QUERIES: usize = 1_000;
/// Longest wait for anything the benchmark waits on (sync catching up, Match, the snapshot).
const WAIT_LIMIT: Duration = Duration::from_secs(600);
const CONNECTIONS: usize = 2;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(run())
}

/// The corpus: set 0 has `target` hashes, every other set [`SET`].
#[derive(Clone, Copy)]
struct Corpus {
    target: usize,
    sets: usize,
}

impl Corpus {
    fn new(total: usize) -> Corpus {
        let target = (total / 100).clamp(1, MAX_HASH_SET_ENTRIES);
        Corpus {
            target,
            sets: 1 + (total - target).div_ceil(SET),
        }
    }

    fn len(&self, set: usize) -> usize {
        if set == 0 { self.target } else { SET }
    }

    fn total(&self) -> usize {
        self.target + (self.sets - 1) * SET
    }

    /// The `i`th hash of set `set` (deterministic).
    fn pdq(set: usize, i: usize) -> [u8; 32] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(((set as u64) << 20) ^ i as u64 ^ 0x5eed);
        rng.r#gen()
    }

    fn body(&self, set: usize) -> Body {
        Body::HashSet(HashSet {
            description: format!("lifecycle bench set {set}"),
            expires_at_ms: None,
            entries: (0..self.len(set))
                .map(|i| HashEntry {
                    hash_type: HashType::Pdq,
                    value: Corpus::pdq(set, i).to_vec(),
                    quality: Some(90),
                    labels: vec![Label::Category(Category::A1)],
                })
                .collect(),
        })
    }
}

async fn run() -> Result<()> {
    let corpus = Corpus::new(env_usize("LIFECYCLE_HASHES", 10_000_000)?.max(SET));
    let root = tempfile::tempdir()?;
    let certs = CertDir::new(root.path().join("certs"));
    let admin = MemberId::parse("admin")?;
    let submitter = MemberId::parse("bench-submitter")?;
    let reader = MemberId::parse("bench-reader")?;
    certs.init(&[admin.clone(), submitter.clone(), reader.clone()])?;
    let data = root.path().join("data");
    founding::found(
        &data,
        &certs,
        "bench.coalition.local",
        &admin,
        &[&submitter, &reader],
    )
    .await?;
    println!(
        "== Retractions at scale: {} PDQ hashes (one set of {} to retract, {} sets of {SET}), a member following with `coalition sync --follow --snapshot` ==",
        corpus.total(),
        corpus.target,
        corpus.sets - 1
    );
    let hub = Hub::start(certs.root(), &data, &root.path().join("hub.log"), 128)?;
    let key = certs.signing_key(&submitter)?;
    let tls = certs.member_tls(&submitter)?;
    let follower = Follower::start(root.path(), certs.root(), &hub.addr, &reader)?;

    // Ingest, two connections; the target set's id is kept.
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut submitters = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let mut client = Client::connect(&hub.addr, &tls).await?;
        let (next, key, id) = (next.clone(), key.clone(), submitter.clone());
        submitters.spawn(async move {
            let mut target = None;
            let mut last_seq = 0;
            loop {
                let set = next.fetch_add(1, Ordering::Relaxed);
                if set >= corpus.sets {
                    return Ok::<_, anyhow::Error>((target, last_seq));
                }
                let answer = client.submit(sign_new(&id, &key, corpus.body(set))).await?;
                let receipt = answer.receipt.ok_or_else(|| anyhow!("no receipt"))?;
                last_seq = last_seq.max(receipt.seq);
                if set == 0 {
                    target = Some(StatementId(
                        receipt.statement_id.as_slice().try_into().map_err(|_| {
                            anyhow!("statement id of {} bytes", receipt.statement_id.len())
                        })?,
                    ));
                }
            }
        });
    }
    let (mut target, mut log_size) = (None, 0);
    while let Some(done) = submitters.join_next().await {
        let (t, seq) = done??;
        target = target.or(t);
        log_size = log_size.max(seq + 1);
    }
    let target = target.ok_or_else(|| anyhow!("set 0 was not acknowledged"))?;
    println!(
        "ingest: {} hashes in {:.1} s",
        corpus.total(),
        started.elapsed().as_secs_f64()
    );
    let caught_up = follower.wait_for(log_size).await?;
    println!(
        "the member's sync caught up with {log_size} entries {:.1} s after the start of the ingest; snapshot {} MiB",
        (caught_up - started).as_secs_f64(),
        std::fs::metadata(&follower.snapshot)?.len() >> 20
    );

    // 1,000 queries: half planted near a stored hash at 0-31 bits (1% of them, like the
    // corpus, in the retracted set), half random.
    let queries = planted_queries(QUERIES, |rng, i| {
        let (set, at) = if i % 200 == 0 {
            (0, rng.gen_range(0..corpus.target))
        } else {
            (rng.gen_range(1..corpus.sets), rng.gen_range(0..SET))
        };
        Corpus::pdq(set, at)
    });
    let batch = request(&queries);
    let mut reader_client = Client::connect(&hub.addr, &certs.member_tls(&reader)?).await?;
    let before = time_batches(&mut reader_client, &batch).await?;

    // The retraction: every entry of set 0, named one by one.
    let probe = Corpus::pdq(0, corpus.target / 2);
    if !found(&mut reader_client, probe).await? {
        bail!("a hash of the target set is not found before the retraction");
    }
    let snapshot_before = inode(&follower.snapshot)?;
    let retraction = Body::Retraction(Retraction {
        target,
        entries: (0..corpus.target as u32).collect(),
        reason: "benchmark: a wrong list".into(),
        admin_quorum: false,
        erase: false,
    });
    let mut client = Client::connect(&hub.addr, &tls).await?;
    let sent = Instant::now();
    let receipt = client
        .submit(sign_new(&submitter, &key, retraction))
        .await?
        .receipt
        .ok_or_else(|| anyhow!("no receipt for the retraction"))?;
    let acked = Instant::now();
    let mut from_match = None;
    while acked.elapsed() < WAIT_LIMIT {
        if !found(&mut reader_client, probe).await? {
            from_match = Some(acked.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let from_match = from_match.ok_or_else(|| anyhow!("still matched {WAIT_LIMIT:?} later"))?;
    // When the member's sync saved its cursor past the retraction (received, proven, written
    // to its output), then when its snapshot was replaced.
    let (mut in_output, mut from_snapshot) = (None, None);
    while acked.elapsed() < WAIT_LIMIT {
        if in_output.is_none() && follower.covers(receipt.seq + 1)? {
            in_output = Some(acked.elapsed());
        }
        if inode(&follower.snapshot)? != snapshot_before {
            from_snapshot = Some(acked.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let from_snapshot =
        from_snapshot.ok_or_else(|| anyhow!("snapshot not rewritten {WAIT_LIMIT:?} later"))?;
    let in_output = in_output.unwrap_or(from_snapshot);
    follower.wait_for(receipt.seq + 1).await?;
    let left = snapshot_rows_of(&follower.snapshot, &hex::encode(probe))?;
    if left != 0 {
        bail!("the rewritten snapshot still holds the retracted hash ({left} rows)");
    }
    println!(
        "retraction of {} entries in one statement: acknowledged in {:.0} ms; gone from Match {:.0} ms after the acknowledgement; snapshot rewritten without it {:.2} s after (in the member's output {:.2} s after, so {:.2} s rewriting)",
        corpus.target,
        (acked - sent).as_secs_f64() * 1e3,
        from_match.as_secs_f64() * 1e3,
        from_snapshot.as_secs_f64(),
        in_output.as_secs_f64(),
        (from_snapshot - in_output).as_secs_f64()
    );
    let after = time_batches(&mut reader_client, &batch).await?;
    println!(
        "{QUERIES} PDQ queries: untouched corpus median {:.1} ms (slowest {:.1}); with {} retracted ({:.1}%) median {:.1} ms (slowest {:.1}); ratio {:.3}",
        before.0,
        before.1,
        corpus.target,
        corpus.target as f64 * 100.0 / corpus.total() as f64,
        after.0,
        after.1,
        after.0 / before.0
    );
    drop(follower);
    hub.stop()?;
    Ok(())
}

/// Whether Match finds `hash` exactly.
async fn found(client: &mut Client, hash: [u8; 32]) -> Result<bool> {
    let answer = client.hub.r#match(request(&[hash])).await?.into_inner();
    Ok(answer
        .results
        .first()
        .is_some_and(|r| r.matches.iter().any(|m| m.value == hash && m.distance == 0)))
}

fn inode(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .ino())
}

/// Rows of the CSV snapshot holding `value_hex`.
fn snapshot_rows_of(path: &Path, value_hex: &str) -> Result<usize> {
    use std::io::BufRead;
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut rows = 0;
    for line in file.lines() {
        if line?.contains(value_hex) {
            rows += 1;
        }
    }
    Ok(rows)
}

/// `coalition sync --follow --snapshot` as a child process (killed when dropped).
struct Follower {
    child: Child,
    cursor: PathBuf,
    snapshot: PathBuf,
}

impl Follower {
    fn start(dir: &Path, certs: &Path, addr: &str, member: &MemberId) -> Result<Follower> {
        let out = dir.join("synced.csv");
        let snapshot = dir.join("snapshot.csv");
        let log = std::fs::File::create(dir.join("sync.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_coalition"))
            .arg("sync")
            .args(["--hub", addr, "--as", member.as_str(), "--certs"])
            .arg(certs)
            .arg("--out")
            .arg(&out)
            .arg("--snapshot")
            .arg(&snapshot)
            .arg("--follow")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting `coalition sync --follow`")?;
        Ok(Follower {
            child,
            cursor: dir.join("synced.csv.cursor"),
            snapshot,
        })
    }

    /// Waits until the member's saved cursor covers `entries` log entries.
    async fn wait_for(&self, entries: u64) -> Result<Instant> {
        let t = Instant::now();
        while t.elapsed() < WAIT_LIMIT {
            if self.covers(entries)? {
                return Ok(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the member's sync did not reach {entries} entries in {WAIT_LIMIT:?}")
    }

    /// Whether the member's saved cursor covers `entries` log entries.
    fn covers(&self, entries: u64) -> Result<bool> {
        let Ok(bytes) = std::fs::read(&self.cursor) else {
            return Ok(false);
        };
        let cursor: serde_json::Value = serde_json::from_slice(&bytes)?;
        Ok(cursor["ids_records"].as_u64().unwrap_or(0) >= entries)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
