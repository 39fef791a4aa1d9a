//! `coalition audit verify` throughput on a bundle of signed statements (default 1,000,000).
//!
//! Builds (once, cached under target/bench-audit/) a realistic bundle: a genesis, 8 admitted
//! members, N one-hash sets signed by them, and a signed checkpoint every 100,000 entries;
//! then times the verifier (the code `coalition audit verify` runs) three times and reports the
//! median, next to a baseline measured in the same run: the same statements parsed and
//! verified one by one on one thread (what a naive replay does).
//!
//! `cargo bench --bench audit` (env `AUDIT_BENCH_N` to change N; `AUDIT_BENCH_QUICK=1` for
//! 100,000).

use coalition_hub::audit::bundle::{BundleWriter, Record};
use coalition_hub::audit::verify_bundle;
use coalition_hub::governance;
use coalition_hub::log::{Checkpoint, Frontier, leaf_hash};
use coalition_hub::membership::{Action, KeyId, MemberId, Role};
use coalition_hub::pb;
use coalition_hub::statement::{
    Body, Category, HashEntry, HashSet, HashType, Label, ParsedEnvelope, Statement, sign_statement,
};
use coalition_hub::store::leaf_data;
use ed25519_dalek::SigningKey;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

const MEMBERS: usize = 8;
const CHECKPOINT_EVERY: u64 = 100_000;
const HUB: &str = "bench.coalition.local";
const RUNS: usize = 3;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let n: u64 = match std::env::var("AUDIT_BENCH_N") {
        Ok(v) => v.parse()?,
        Err(_) if std::env::var_os("AUDIT_BENCH_QUICK").is_some() => 100_000,
        Err(_) => 1_000_000,
    };
    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("bench-audit");
    std::fs::create_dir_all(&dir)?;
    // The statement format is in the name: a bundle cached by an older build is not reused.
    let path = dir.join(format!("bundle-v1h-{n}.bin"));
    if !path.exists() {
        let t = Instant::now();
        build_bundle(&path, n)?;
        println!(
            "built {} in {:.1} s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let bytes = std::fs::metadata(&path)?.len();
    println!(
        "== audit verify: {n} statements + genesis/admissions, bundle {:.0} MiB, {} threads ==",
        bytes as f64 / (1 << 20) as f64,
        rayon::current_num_threads()
    );

    let mut times = Vec::new();
    for run in 0..RUNS {
        let t = Instant::now();
        let summary = verify_bundle(&path, &[])?;
        let took = t.elapsed();
        assert!(summary.entries > n, "replayed everything");
        println!(
            "run {run}: {:.2} s, {:.0} statements/s ({} checkpoints verified)",
            took.as_secs_f64(),
            summary.entries as f64 / took.as_secs_f64(),
            summary.checkpoints
        );
        times.push(took);
    }
    times.sort();
    let median = times[RUNS / 2];
    let rate = (n as f64) / median.as_secs_f64();

    // Baseline, same run: parse + strict verify one by one, one thread, on a sample.
    let sample = n.min(50_000) as usize;
    let entries = read_sample(&path, sample)?;
    let t = Instant::now();
    for (envelope, key) in entries {
        let parsed = ParsedEnvelope::parse(envelope)?;
        parsed.verify_with(&[key])?;
    }
    let baseline = sample as f64 / t.elapsed().as_secs_f64();

    // The real command, once.
    let t = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coalition"))
        .args(["audit", "verify"])
        .arg(&path)
        .output()?;
    let cli = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "audit verify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    println!("\n| measure | value |\n|---|---|");
    println!(
        "| verifier, median of {RUNS} | {:.2} s = **{rate:.0} statements/s** |",
        median.as_secs_f64()
    );
    println!(
        "| baseline: parse + verify_strict one by one, 1 thread ({sample} statements) | {baseline:.0} statements/s |"
    );
    println!("| ratio | {:.2}x |", rate / baseline);
    println!(
        "| `coalition audit verify` (release binary, whole process) | {:.2} s = {:.0} statements/s |",
        cli.as_secs_f64(),
        n as f64 / cli.as_secs_f64()
    );
    Ok(())
}

fn member(i: usize) -> MemberId {
    MemberId::parse(&format!("member-{i}")).expect("id")
}

fn key(seed: u64) -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(seed.to_be_bytes()).into())
}

/// Writes the bundle: checkpoints first (computed while signing), then entries.
fn build_bundle(path: &Path, n: u64) -> Result<()> {
    let hub = key(1);
    let admin_id = MemberId::parse("admin")?;
    let admin = key(2);
    let keys: Vec<SigningKey> = (0..MEMBERS).map(|i| key(100 + i as u64)).collect();
    let mut envelopes: Vec<pb::Envelope> = Vec::new();
    envelopes.push(governance::genesis(
        HUB,
        &hub,
        vec![governance::admission(
            &admin_id,
            "Admin",
            &[Role::Admin],
            &[admin.verifying_key()],
        )],
        1,
        &admin,
    )?);
    for (i, k) in keys.iter().enumerate() {
        let admit =
            governance::admission(&member(i), "bench", &[Role::Member], &[k.verifying_key()]);
        envelopes.push(governance::change(
            &admin_id,
            &admin,
            Action::Admit(admit),
            "bench",
        ));
    }
    let base = envelopes.len() as u64;
    // Receipt times from now on: after the genesis and admissions were dated (a statement is
    // never dated after its receipt by more than the allowed clock skew).
    let start = coalition_hub::store::now_ms();
    let signed: Vec<pb::Envelope> = (0..n)
        .into_par_iter()
        .map(|i| {
            let m = (i as usize) % MEMBERS;
            let statement = Statement {
                issuer: member(m),
                key_id: KeyId::of(&keys[m].verifying_key()),
                issued_at_ms: start + i as i64,
                nonce: Sha256::digest(i.to_be_bytes())[..16]
                    .try_into()
                    .expect("16"),
                body: Body::HashSet(HashSet {
                    expires_at_ms: None,
                    description: String::new(),
                    entries: vec![HashEntry {
                        hash_type: HashType::Sha256,
                        value: Sha256::digest(format!("bench/{i}")).to_vec(),
                        quality: None,
                        labels: vec![Label::Category(Category::A1)],
                    }],
                }),
            };
            sign_statement(&statement, &keys[m])
        })
        .collect();
    envelopes.extend(signed);
    let mut frontier = Frontier::new();
    let mut entries = Vec::with_capacity(envelopes.len());
    let mut notes = Vec::new();
    for (seq, envelope) in envelopes.into_iter().enumerate() {
        let seq = seq as u64;
        let received_at_ms = start + seq as i64;
        let id = ParsedEnvelope::parse(envelope.clone())?.id;
        frontier.append(leaf_hash(&leaf_data(&id, received_at_ms)));
        let size = frontier.size();
        if (size.0 >= base && (size.0 - base).is_multiple_of(CHECKPOINT_EVERY))
            || size.0 == base + n
        {
            notes.push(Checkpoint::new(HUB, size, frontier.root()).sign(HUB, &hub)?);
        }
        entries.push(pb::SyncEntry {
            seq,
            received_at_ms,
            statement_id: id.0.to_vec(),
            envelope: Some(envelope),
            compromised_key_ids: vec![],
            erased_by: None,
            relay: None,
        });
    }
    let mut w = BundleWriter::create(path)?;
    for note in notes {
        w.write(Record::checkpoint(note))?;
    }
    for e in entries {
        w.write(Record::Entry(e))?;
    }
    w.finish()?;
    Ok(())
}

/// The first `count` member statements with their signer's key, for the baseline.
fn read_sample(
    path: &Path,
    count: usize,
) -> Result<Vec<(pb::Envelope, ed25519_dalek::VerifyingKey)>> {
    let keys: Vec<SigningKey> = (0..MEMBERS).map(|i| key(100 + i as u64)).collect();
    let mut reader = coalition_hub::audit::bundle::BundleReader::open(path)?;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        match reader.next_record()? {
            Some(Record::Entry(e)) if e.seq > MEMBERS as u64 => {
                let envelope = e.envelope.ok_or("no envelope")?;
                let parsed = ParsedEnvelope::parse(envelope.clone())?;
                let m: usize = parsed.header.issuer.as_str()["member-".len()..].parse()?;
                out.push((envelope, keys[m].verifying_key()));
            }
            Some(_) => {}
            None => break,
        }
    }
    Ok(out)
}
