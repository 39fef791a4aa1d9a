//! Benchmark of `coalition_hub::matching::PdqIndex` on fixed-seed PDQ data sets shared with
//! the faiss peer benchmark (`benches/peers/run.sh`).
//!
//! Environment:
//! * `PDQ_DATA_DIR`   data directory (default `target/pdq-data`); files are generated there
//!   with a fixed seed if absent: `queries.bin` (1,000 × 32 bytes), `base_<N>.bin`
//!   (N × 32 bytes, id = row number), `gt_<N>_t<T>.bin` (ground truth, see below).
//! * `PDQ_SIZES`      comma-separated N values (default `1000000,10000000`).
//! * `PDQ_THRESHOLD`  distance threshold, inclusive (default 31).
//! * `PDQ_PARAMS`     optional `substrings:prefix_bits` override, for tuning.
//! * `PDQ_JSON`       optional file to append one JSON result line per N.
//! * `PDQ_GENERATE_ONLY=1` writes data + ground truth and exits.
//!
//! Ground-truth file: for each query in order, a little-endian `u32` count followed by
//! that many `u32` ids (ascending) with distance <= T, computed by brute force.

use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coalition_hub::matching::{IndexParams, PdqHash, PdqIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const QUERIES: usize = 1000;
const PLANTED_PER_QUERY: usize = 32; // one neighbour at each distance 0..=31
const WARMUP_QUERIES: usize = 100;

type BenchResult<T> = Result<T, String>;

fn main() {
    if let Err(message) = run() {
        eprintln!("pdq bench failed: {message}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; ignore all arguments.
    let dir = PathBuf::from(env_or("PDQ_DATA_DIR", "target/pdq-data"));
    let threshold: u32 = env_or("PDQ_THRESHOLD", "31")
        .parse()
        .map_err(|e| format!("PDQ_THRESHOLD must be an integer: {e}"))?;
    let sizes = env_or("PDQ_SIZES", "1000000,10000000")
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .map_err(|e| format!("PDQ_SIZES entry {s:?} is not a count: {e}"))
        })
        .collect::<BenchResult<Vec<_>>>()?;
    let params = parse_params(&env_or("PDQ_PARAMS", ""))?;
    let generate_only = env_or("PDQ_GENERATE_ONLY", "0") == "1";
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;

    let queries = load_or_generate_queries(&dir)?;
    for &n in &sizes {
        let base_path = ensure_base(&dir, n, &queries)?;
        let gt = ensure_ground_truth(&dir, n, threshold, &base_path, &queries)?;
        if generate_only {
            continue;
        }
        let result = bench_one(n, threshold, params, &base_path, &queries, &gt)?;
        println!("{}", result.human());
        if let Ok(path) = std::env::var("PDQ_JSON") {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("cannot open PDQ_JSON file {path}: {e}"))?;
            writeln!(f, "{}", result.json()).map_err(|e| format!("cannot write {path}: {e}"))?;
        }
    }
    Ok(())
}

struct Outcome {
    n: usize,
    threshold: u32,
    params: Option<IndexParams>,
    build_s: f64,
    memory_bytes: usize,
    rss_before_mb: f64,
    hwm_mb: f64,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
    qps_2t: f64,
    recall: f64,
    exact_queries: usize,
    gt_pairs: usize,
}

impl Outcome {
    fn human(&self) -> String {
        format!(
            "N={n} t<={t} params={p:?}\n  build {b:.2} s\n  memory_bytes {mb:.1} MB ({bph:.1} B/hash); VmRSS before build {rb:.0} MB; VmHWM {h:.0} MB\n  single-thread latency p50 {p50:.1} us, p99 {p99:.1} us, mean {mean:.1} us\n  2-thread throughput {q:.0} queries/s\n  recall {r:.6} ({e}/{nq} queries identical to ground truth, {g} true pairs)",
            n = self.n,
            t = self.threshold,
            p = self.params,
            b = self.build_s,
            mb = self.memory_bytes as f64 / 1e6,
            bph = self.memory_bytes as f64 / self.n as f64,
            rb = self.rss_before_mb,
            h = self.hwm_mb,
            p50 = self.p50_us,
            p99 = self.p99_us,
            mean = self.mean_us,
            q = self.qps_2t,
            r = self.recall,
            e = self.exact_queries,
            nq = QUERIES,
            g = self.gt_pairs,
        )
    }

    fn json(&self) -> String {
        format!(
            "{{\"engine\":\"coalition_hub PdqIndex\",\"n\":{},\"threshold\":{},\"build_s\":{:.4},\"memory_mb\":{:.2},\"hwm_mb\":{:.1},\"p50_us\":{:.2},\"p99_us\":{:.2},\"mean_us\":{:.2},\"qps_2t\":{:.1},\"recall\":{:.6},\"exact_queries\":{}}}",
            self.n,
            self.threshold,
            self.build_s,
            self.memory_bytes as f64 / 1e6,
            self.hwm_mb,
            self.p50_us,
            self.p99_us,
            self.mean_us,
            self.qps_2t,
            self.recall,
            self.exact_queries
        )
    }
}

fn bench_one(
    n: usize,
    threshold: u32,
    params: Option<Option<IndexParams>>,
    base_path: &Path,
    queries: &[PdqHash],
    gt: &[Vec<u32>],
) -> BenchResult<Outcome> {
    let rss_before_mb = proc_status_mb("VmRSS:");
    // Stream the hashes from the file straight into the build, so the bench holds
    // no second copy of the data set.
    let file = fs::File::open(base_path)
        .map_err(|e| format!("cannot open {}: {e}", base_path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut read_error = None;
    let items = (0..n).map_while(|i| {
        let mut buf = [0u8; 32];
        match reader.read_exact(&mut buf) {
            Ok(()) => Some((PdqHash(buf), i as u32)),
            Err(e) => {
                read_error = Some(e);
                None
            }
        }
    });
    let start = Instant::now();
    let index = match params {
        Some(p) => PdqIndex::build_with_params(items, p),
        None => PdqIndex::build(items),
    };
    let build_s = start.elapsed().as_secs_f64();
    if let Some(e) = read_error {
        return Err(format!("{} ended early: {e}", base_path.display()));
    }
    if index.len() != n {
        return Err(format!("built {} entries, expected {n}", index.len()));
    }

    // Single thread: warm-up, then every query timed individually.
    for q in queries.iter().take(WARMUP_QUERIES) {
        std::hint::black_box(index.search(q, threshold));
    }
    let mut times = Vec::with_capacity(queries.len());
    let mut results = Vec::with_capacity(queries.len());
    for q in queries {
        let start = Instant::now();
        let hits = index.search(q, threshold);
        times.push(start.elapsed());
        results.push(hits);
    }
    times.sort_unstable();
    let pct = |p: f64| micros(times[((times.len() - 1) as f64 * p).round() as usize]);
    let mean_us = times.iter().map(|d| micros(*d)).sum::<f64>() / times.len() as f64;

    // Recall against brute-force ground truth.
    let mut found = 0usize;
    let mut gt_pairs = 0usize;
    let mut exact_queries = 0usize;
    for (hits, truth) in results.iter().zip(gt) {
        let mut ids: Vec<u32> = hits.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        gt_pairs += truth.len();
        found += ids
            .iter()
            .filter(|id| truth.binary_search(id).is_ok())
            .count();
        if ids == *truth {
            exact_queries += 1;
        }
    }
    let recall = if gt_pairs == 0 {
        1.0
    } else {
        found as f64 / gt_pairs as f64
    };

    // Two threads sharing &PdqIndex, each taking half of the queries, repeated.
    let rounds = 3;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for half in queries.chunks(queries.len().div_ceil(2)) {
            let index = &index;
            scope.spawn(move || {
                for _ in 0..rounds {
                    for q in half {
                        std::hint::black_box(index.search(q, threshold));
                    }
                }
            });
        }
    });
    let qps_2t = (rounds * queries.len()) as f64 / start.elapsed().as_secs_f64();

    Ok(Outcome {
        n,
        threshold,
        params: index.params(),
        build_s,
        memory_bytes: index.memory_bytes(),
        rss_before_mb,
        hwm_mb: proc_status_mb("VmHWM:"),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        mean_us,
        qps_2t,
        recall,
        exact_queries,
        gt_pairs,
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

fn parse_params(text: &str) -> BenchResult<Option<Option<IndexParams>>> {
    if text.is_empty() {
        return Ok(None);
    }
    if text == "linear" {
        return Ok(Some(None));
    }
    let (m, h) = text
        .split_once(':')
        .ok_or_else(|| format!("PDQ_PARAMS must look like 8:20 or 'linear', got {text:?}"))?;
    let parse = |s: &str| {
        s.parse::<u32>()
            .map_err(|e| format!("PDQ_PARAMS part {s:?}: {e}"))
    };
    Ok(Some(Some(IndexParams {
        substrings: parse(m)?,
        prefix_bits: parse(h)?,
    })))
}

/// Value in MB of a `/proc/self/status` line such as `VmHWM:  123 kB` (NaN if absent).
fn proc_status_mb(key: &str) -> f64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn read_hashes(path: &Path) -> BenchResult<Vec<PdqHash>> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() % 32 != 0 {
        return Err(format!(
            "{} has {} bytes, not a multiple of 32 (one PDQ hash = 32 bytes); delete it to regenerate",
            path.display(),
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            PdqHash(h)
        })
        .collect())
}

fn write_hashes(path: &Path, hashes: &[PdqHash]) -> BenchResult<()> {
    let mut bytes = Vec::with_capacity(hashes.len() * 32);
    for h in hashes {
        bytes.extend_from_slice(&h.0);
    }
    fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn load_or_generate_queries(dir: &Path) -> BenchResult<Vec<PdqHash>> {
    let path = dir.join("queries.bin");
    if !path.exists() {
        let mut rng = StdRng::seed_from_u64(0x5EED_0001);
        let queries: Vec<PdqHash> = (0..QUERIES).map(|_| PdqHash(rng.r#gen())).collect();
        write_hashes(&path, &queries)?;
    }
    let queries = read_hashes(&path)?;
    if queries.len() != QUERIES {
        return Err(format!(
            "{} holds {} queries, expected {QUERIES}; delete it to regenerate",
            path.display(),
            queries.len()
        ));
    }
    Ok(queries)
}

/// `base_<n>.bin`: random hashes with, for query j and distance d in 0..32, the hash at
/// row `(j * 32 + d) * (n / 32000)` replaced by query j with exactly d bits flipped.
fn ensure_base(dir: &Path, n: usize, queries: &[PdqHash]) -> BenchResult<PathBuf> {
    let path = dir.join(format!("base_{n}.bin"));
    if path.exists() {
        let len = fs::metadata(&path)
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
            .len();
        if len != (n as u64) * 32 {
            return Err(format!(
                "{} has {len} bytes, expected {}; delete it to regenerate",
                path.display(),
                n * 32
            ));
        }
        return Ok(path);
    }
    let planted = queries.len() * PLANTED_PER_QUERY;
    if n < planted {
        return Err(format!(
            "N={n} is smaller than the {planted} planted neighbours"
        ));
    }
    eprintln!("generating {} ...", path.display());
    let mut rng = StdRng::seed_from_u64(0x5EED_0002 ^ n as u64);
    let mut base: Vec<PdqHash> = (0..n).map(|_| PdqHash(rng.r#gen())).collect();
    let stride = n / planted;
    for (j, q) in queries.iter().enumerate() {
        for d in 0..PLANTED_PER_QUERY {
            base[(j * PLANTED_PER_QUERY + d) * stride] = flip_bits(&mut rng, q, d);
        }
    }
    write_hashes(&path, &base)?;
    Ok(path)
}

fn flip_bits(rng: &mut StdRng, base: &PdqHash, d: usize) -> PdqHash {
    let mut bits: Vec<usize> = (0..256).collect();
    for i in 0..d {
        let j = rng.gen_range(i..256);
        bits.swap(i, j);
    }
    let mut out = base.0;
    for &b in &bits[..d] {
        out[b / 8] ^= 1 << (b % 8);
    }
    PdqHash(out)
}

fn ensure_ground_truth(
    dir: &Path,
    n: usize,
    threshold: u32,
    base_path: &Path,
    queries: &[PdqHash],
) -> BenchResult<Vec<Vec<u32>>> {
    let path = dir.join(format!("gt_{n}_t{threshold}.bin"));
    if !path.exists() {
        eprintln!(
            "computing ground truth {} (brute force, 2 threads) ...",
            path.display()
        );
        let base = read_hashes(base_path)?;
        let words: Vec<[u64; 4]> = base.iter().map(PdqHash::to_words).collect();
        drop(base);
        let qwords: Vec<[u64; 4]> = queries.iter().map(PdqHash::to_words).collect();
        let mut gt: Vec<Vec<u32>> = vec![Vec::new(); queries.len()];
        // Split the base in two halves (one per core); each scans all queries.
        let halves: Vec<Vec<Vec<u32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = words
                .chunks(words.len().div_ceil(2))
                .enumerate()
                .map(|(h, chunk)| {
                    let offset = h * words.len().div_ceil(2);
                    let qwords = &qwords;
                    scope.spawn(move || {
                        let mut out: Vec<Vec<u32>> = vec![Vec::new(); qwords.len()];
                        for (i, w) in chunk.iter().enumerate() {
                            for (qi, q) in qwords.iter().enumerate() {
                                let d = (q[0] ^ w[0]).count_ones()
                                    + (q[1] ^ w[1]).count_ones()
                                    + (q[2] ^ w[2]).count_ones()
                                    + (q[3] ^ w[3]).count_ones();
                                if d <= threshold {
                                    out[qi].push((offset + i) as u32);
                                }
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for half in halves {
            for (qi, ids) in half.into_iter().enumerate() {
                gt[qi].extend(ids);
            }
        }
        let mut bytes = Vec::new();
        for ids in &gt {
            bytes.extend_from_slice(&(ids.len() as u32).to_le_bytes());
            for id in ids {
                bytes.extend_from_slice(&id.to_le_bytes());
            }
        }
        fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        return Ok(gt);
    }
    let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut words = bytes.chunks_exact(4).map(|c| {
        let mut b = [0u8; 4];
        b.copy_from_slice(c);
        u32::from_le_bytes(b)
    });
    let corrupt = || format!("{} is truncated; delete it to recompute", path.display());
    let mut gt = Vec::with_capacity(queries.len());
    for _ in 0..queries.len() {
        let count = words.next().ok_or_else(corrupt)? as usize;
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            ids.push(words.next().ok_or_else(corrupt)?);
        }
        gt.push(ids);
    }
    Ok(gt)
}
