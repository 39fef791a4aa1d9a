//! Benchmark of `coalition hash`'s work: N 512 × 512 JPEGs generated here (a seeded picture
//! per image, quality 85), written to a temporary directory, then read, decoded and hashed
//! (PDQ, MD5, SHA-1, SHA-256) with `media::hash_files` on a rayon pool of 1 thread and of every
//! core. Prints the median of the runs in images per second, and the split of one image's time
//! between decoding and PDQ.
//!
//! Environment: `MEDIA_IMAGES` (default 200), `MEDIA_RUNS` (default 5).

use coalition_hub::media::{self, Limits, pdq};
use image::{Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SIDE: u32 = 512;

fn main() {
    if let Err(message) = run() {
        eprintln!("media bench failed: {message}");
        std::process::exit(1);
    }
}

fn env_usize(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|e| format!("{name} must be a count: {e}")),
        Err(_) => Ok(default),
    }
}

fn picture(seed: u64) -> RgbImage {
    let mut rng = StdRng::seed_from_u64(seed);
    let (fx, fy): (f64, f64) = (rng.gen_range(2.0..9.0), rng.gen_range(2.0..9.0));
    RgbImage::from_fn(SIDE, SIDE, |x, y| {
        let (u, v) = (
            f64::from(x) / f64::from(SIDE),
            f64::from(y) / f64::from(SIDE),
        );
        let s = (fx * u).sin() * (fy * v).cos();
        let n: i16 = rng.gen_range(-10..=10);
        let c = |base: f64| (base + f64::from(n)).clamp(0.0, 255.0) as u8;
        Rgb([c(128.0 + 110.0 * s), c(255.0 * u), c(255.0 * v)])
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run() -> Result<(), String> {
    let n = env_usize("MEDIA_IMAGES", 200)?.max(1);
    let runs = env_usize("MEDIA_RUNS", 5)?.max(1);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut files: Vec<PathBuf> = Vec::with_capacity(n);
    for i in 0..n {
        let path = dir.path().join(format!("{i:05}.jpg"));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
            .encode_image(&picture(i as u64))
            .map_err(|e| e.to_string())?;
        std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
        files.push(path);
    }
    let limits = Limits::default();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("media: {n} JPEGs of {SIDE}x{SIDE} (quality 85), {runs} runs, median");
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| e.to_string())?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let results = pool.install(|| media::hash_files(&files, true, &limits));
            times.push(start.elapsed());
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                return Err(format!("an image failed: {e}"));
            }
        }
        let t = median(times);
        let rate = n as f64 / t.as_secs_f64();
        println!(
            "  {threads} thread(s): {:.1} ms for {n} images, {rate:.0} images/s ({:.0} images/s per thread)",
            t.as_secs_f64() * 1e3,
            rate / threads as f64
        );
    }
    // Where one image's time goes (single thread).
    let bytes = std::fs::read(&files[0]).map_err(|e| e.to_string())?;
    let (mut decode, mut hash) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(5) * 4 {
        let start = Instant::now();
        let (w, h, rgb) = media::decode_rgb8(&bytes, &limits).map_err(|e| e.to_string())?;
        decode.push(start.elapsed());
        let start = Instant::now();
        let mut luma = pdq::luma_from_rgb8(&rgb);
        std::hint::black_box(pdq::hash_luma(&mut luma, h as usize, w as usize));
        hash.push(start.elapsed());
    }
    println!(
        "  one image: decode {:.2} ms, luma + PDQ {:.2} ms",
        median(decode).as_secs_f64() * 1e3,
        median(hash).as_secs_f64() * 1e3
    );
    Ok(())
}
