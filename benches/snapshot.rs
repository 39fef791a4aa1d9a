//! The member's snapshot rewrite alone (`formats/sync_snapshot.rs`), without a hub: a
//! synthetic sync CSV output of `SNAPSHOT_ROWS` rows (default 10,000,000: 1,000 statements of
//! 10,000 PDQ hashes, about 1.8 GB, written once into a temporary directory), then, `RUNS`
//! times each:
//! - the filter alone, into a sink (reading, splitting, looking up states: the CPU part);
//! - a whole rewrite (filter, write behind, fsync, rename): what `coalition sync` does when a
//!   state changes.
//!
//! Every row is kept (an empty registry: all active), the case where the most bytes are
//! written. The lifecycle bench measures the same rewrite inside the whole system.
//!
//! Run (release build): `cargo bench --bench snapshot`.

use anyhow::{Context, Result};
use coalition_hub::formats::{CSV_HEADER, Format, sync_snapshot};
use coalition_hub::lifecycle::EntryState;
use coalition_hub::membership::Registry;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const RUNS: usize = 3;
/// Rows per synthetic statement.
const ROWS_PER_STATEMENT: u64 = 10_000;

fn main() -> Result<()> {
    let rows: u64 = match std::env::var("SNAPSHOT_ROWS") {
        Ok(v) => v.parse().with_context(|| format!("SNAPSHOT_ROWS={v}"))?,
        Err(_) => 10_000_000,
    };
    let dir = tempfile::tempdir()?;
    let output = dir.path().join("synced.csv");
    let snapshot = dir.path().join("snapshot.csv");
    write_output(&output, rows)?;
    let bytes = std::fs::metadata(&output)?.len();
    println!(
        "== Snapshot rewrite: {rows} CSV rows ({} MiB), every row kept ==",
        bytes >> 20
    );
    let registry = Registry::new();
    let no_key = |_| None;
    let rules = sync_snapshot::Rules {
        registry: &registry,
        now_ms: 0,
        signing_key: &no_key,
        states: &EntryState::MATCHING,
    };
    let mut filtered = Vec::new();
    let mut rewritten = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&output)?);
        let pass = sync_snapshot::filter(input, Format::Csv, &rules, std::io::sink())?;
        filtered.push(t.elapsed());
        anyhow::ensure!(pass.kept == rows, "kept {} of {rows}", pass.kept);
        let t = Instant::now();
        let pass = sync_snapshot::rewrite(&output, Format::Csv, &rules, &snapshot)?;
        rewritten.push(t.elapsed());
        anyhow::ensure!(pass.kept == rows, "kept {} of {rows}", pass.kept);
        anyhow::ensure!(
            std::fs::metadata(&snapshot)?.len() == bytes,
            "snapshot size"
        );
    }
    println!(
        "filter into a sink: median {:.2} s ({})",
        median(&mut filtered).as_secs_f64(),
        list(&filtered)
    );
    println!(
        "whole rewrite (fsync, rename): median {:.2} s ({})",
        median(&mut rewritten).as_secs_f64(),
        list(&rewritten)
    );
    Ok(())
}

/// Writes a sync CSV output of `rows` rows, as `coalition sync` writes them.
fn write_output(path: &Path, rows: u64) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    out.write_all(CSV_HEADER.as_bytes())?;
    for row in 0..rows {
        let (seq, entry) = (row / ROWS_PER_STATEMENT, row % ROWS_PER_STATEMENT);
        writeln!(
            out,
            "{seq},{:064x},bench-submitter,1764690000000,pdq,{:064x},90,a1,,{entry},",
            seq * 7_919 + 13,
            row.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn list(times: &[Duration]) -> String {
    times
        .iter()
        .map(|t| format!("{:.2}", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}
