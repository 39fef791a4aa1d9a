//! Proof generation latency on a large log: inclusion and consistency proofs read from sled
//! (`Store::inclusion_proof`, `Store::consistency_proof`) on a 10,000,000-leaf tree.
//!
//! The tree is written directly as C2SP tlog-tiles (`store::write_synthetic_tree`, leaf `i` =
//! 8-byte big-endian `i`; streamed, a few MiB of memory whatever the size) into
//! `$CARGO_TARGET_TMPDIR/proofs-bench-<n>` and reused by later runs; the build reports its
//! time and the process's peak memory. The store is then opened
//! as the hub opens it (default 128 MiB cache), and proofs for random leaves / sizes are
//! generated one at a time on one thread: first just after opening (sled's cache empty; the OS
//! page cache may still hold the files), then warm. Every proof is verified against the root
//! outside the timed section.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-audit cargo bench --bench proofs`
//! (`QUICK=1` for 1,000,000 leaves; `PROOFS_BENCH_LEAVES=N` for another size;
//! `PROOFS_BENCH_SAMPLES=N` to change the sample count, 10,000 by default;
//! `PROOFS_BENCH_BUILD_ONLY=1` to stop after writing the tree).

use anyhow::{Context, Result, bail};
use coalition_hub::log::{self, Hash, LeafIndex, TreeSize};
use coalition_hub::store::{Store, StoreConfig, write_synthetic_tree};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let quick = std::env::var_os("QUICK").is_some();
    let leaves: u64 = match std::env::var("PROOFS_BENCH_LEAVES") {
        Ok(s) => s.parse().context("PROOFS_BENCH_LEAVES must be a number")?,
        Err(_) if quick => 1_000_000,
        Err(_) => 10_000_000,
    };
    let samples: usize = match std::env::var("PROOFS_BENCH_SAMPLES") {
        Ok(s) => s.parse().context("PROOFS_BENCH_SAMPLES must be a number")?,
        Err(_) => 10_000,
    };
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("proofs-bench-{leaves}"));
    let done = dir.join("COMPLETE");
    let config = StoreConfig::default();
    if !done.exists() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        let t = Instant::now();
        let tiles = write_synthetic_tree(&dir.join("data"), leaves, &config)?;
        std::fs::write(&done, b"")?;
        println!(
            "built {leaves}-leaf tree ({tiles} tile writes) in {:.1} s, peak memory {} ({})",
            t.elapsed().as_secs_f64(),
            peak_memory(),
            dir.display()
        );
    } else {
        println!("reusing {leaves}-leaf tree in {}", dir.display());
    }
    println!(
        "on-disk size: {:.0} MiB",
        dir_size(&dir.join("data"))? as f64 / 1048576.0
    );
    if std::env::var_os("PROOFS_BENCH_BUILD_ONLY").is_some() {
        return Ok(());
    }

    let t = Instant::now();
    let store = Store::open(&dir.join("data"), &config)?;
    println!("open: {:.1} ms", ms(t.elapsed()));
    if store.log_size() != leaves {
        bail!("store holds {} leaves, expected {leaves}", store.log_size());
    }
    let t = Instant::now();
    let root = store.root(leaves)?;
    println!("root({leaves}) = {root} ({:.1} µs, cold)", us(t.elapsed()));

    let mut rng = StdRng::seed_from_u64(0x5eed);
    println!("\n{samples} samples each, one thread; latency in µs");
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>8}",
        "", "p50", "p90", "p99", "max"
    );
    // Cold: the first proofs after opening.
    report(
        "inclusion, just after open",
        &inclusion(&store, leaves, root, samples, &mut rng)?,
    );
    report(
        "consistency, just after open",
        &consistency(&store, leaves, samples, &mut rng)?,
    );
    // Warm: the same kind of load again, after the first pass.
    let _ = inclusion(&store, leaves, root, samples, &mut rng)?;
    report(
        "inclusion, warm (random leaf, size n)",
        &inclusion(&store, leaves, root, samples, &mut rng)?,
    );
    report(
        "consistency, warm (random old < new <= n)",
        &consistency(&store, leaves, samples, &mut rng)?,
    );
    report(
        "root, warm (random size <= n)",
        &roots(&store, leaves, samples, &mut rng)?,
    );
    Ok(())
}

/// Inclusion proofs of random leaves in the full tree, verified after timing.
fn inclusion(
    store: &Store,
    n: u64,
    root: Hash,
    samples: usize,
    rng: &mut StdRng,
) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let index = rng.gen_range(0..n);
        let t = Instant::now();
        let proof = store.inclusion_proof(index, n)?;
        times.push(t.elapsed());
        log::verify_inclusion(
            &log::leaf_hash(&index.to_be_bytes()),
            LeafIndex(index),
            TreeSize(n),
            &proof,
            &root,
        )?;
    }
    Ok(times)
}

/// Consistency proofs between random sizes, verified against the roots after timing.
fn consistency(store: &Store, n: u64, samples: usize, rng: &mut StdRng) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let new = rng.gen_range(2..=n);
        let old = rng.gen_range(1..new);
        let t = Instant::now();
        let proof = store.consistency_proof(old, new)?;
        times.push(t.elapsed());
        log::verify_consistency(
            TreeSize(old),
            TreeSize(new),
            &store.root(old)?,
            &store.root(new)?,
            &proof,
        )?;
    }
    Ok(times)
}

fn roots(store: &Store, n: u64, samples: usize, rng: &mut StdRng) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let size = rng.gen_range(1..=n);
        let t = Instant::now();
        std::hint::black_box(store.root(size)?);
        times.push(t.elapsed());
    }
    Ok(times)
}

fn report(name: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let q = |p: f64| us(sorted[((sorted.len() - 1) as f64 * p).round() as usize]);
    println!(
        "{name:<44} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The process's peak resident memory (`VmHWM` in /proc/self/status).
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn dir_size(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
