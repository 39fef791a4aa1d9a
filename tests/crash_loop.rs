//! The crash loop (issue 11, item 7): the real `coalition serve` is killed with SIGKILL at
//! random moments while three members submit with `coalition submit` (rerun after every
//! failure, as its journal allows) and a fourth follows the log with `coalition sync --follow`
//! (restarted whenever the hub goes away). Afterwards:
//! - 0 acknowledged statements lost: every receipt in every submission journal is in the log;
//! - 0 duplicated: every submitted hash is in the log exactly once, in a journaled statement;
//! - the follower's output equals a fresh sync of the whole log, row for row;
//! - `coalition audit verify` passes on an export of the final log;
//! - no verification ever failed on the follower's side.
//!
//! Scale, from the environment (CI runs the defaults; `scripts/crash-loop.sh` the full run):
//! `CRASH_LOOP_KILLS` (default 5), `CRASH_LOOP_MAX_UP_MS` (longest a hub lives before its kill,
//! default 800), `CRASH_LOOP_SEED` (default: from the clock; printed, so a failure can be
//! replayed with the same kill moments).

use crate::serve;

use serve::{coalition, ok};

use serve::ServeProcess;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Hashes in each list a submitter submits; sets of `SET_SIZE`, so 8 statements a list.
const HASHES_PER_LIST: u64 = 24;
const SET_SIZE: u64 = 3;
const SUBMITTERS: [&str; 3] = ["m1", "m2", "m3"];
const FOLLOWER: &str = "reader";
/// Bounds on the whole run: it stops by itself whatever happens.
const RUN_DEADLINE: Duration = Duration::from_secs(600);
const MAX_SUBMIT_ATTEMPTS: u32 = 2_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift64*): the kill moments replay from the seed.
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (hi - lo + 1)
    }
}

/// A loopback port free now, for a hub that restarts on the same address.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The hash list number `k` of submitter `s`: hashes no other list holds.
fn write_list(dir: &Path, s: usize, k: u64) -> String {
    let name = format!("{}-{k}.csv", SUBMITTERS[s]);
    let first = ((s as u64 + 1) << 40) | (k * HASHES_PER_LIST);
    let rows: String = (first..first + HASHES_PER_LIST)
        .map(|i| format!("sha256,{i:064x}\n"))
        .collect();
    std::fs::write(dir.join(&name), rows).expect("write hash list");
    name
}

/// The journal's `ack` records of one list: statement index → statement id.
fn journal_acks(path: &Path) -> BTreeMap<u64, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["record"] == "ack")
        .map(|v| {
            let index = v["index"].as_u64().expect("index");
            (index, v["id"].as_str().expect("id").to_owned())
        })
        .collect()
}

/// The hash rows of a sync output file, in order: (hash, statement id).
fn hash_rows(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("sync output");
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json row"))
        .filter(|v| v["kind"] == "hash")
        .map(|v| {
            let field = |f: &str| v[f].as_str().expect("field").to_owned();
            (field("hash"), field("statement_id"))
        })
        .collect()
}

/// Entries the member's replica has accounted for, from a sync cursor file.
fn cursor_entries(path: &Path) -> u64 {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["ids_records"].as_u64())
        .unwrap_or(0)
}

/// What one submitter did.
#[derive(Default)]
struct Submitted {
    /// The lists whose submission completed.
    lists: Vec<String>,
    /// Runs of `coalition submit` that failed (the hub was down or went down).
    failed_runs: u64,
    /// Runs that resumed a submission a kill had cut off (some statements acknowledged).
    resumed_runs: u64,
}

/// One submitter: list after list, each rerun until its submission completes, until `stop`.
fn submitter(dir: PathBuf, s: usize, addr: String, stop: Arc<AtomicBool>) -> Submitted {
    let mut done = Submitted::default();
    for k in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let list = write_list(&dir, s, k);
        let mut attempts = 0;
        loop {
            let out = coalition(
                &dir,
                &[
                    "submit",
                    "--hub",
                    &addr,
                    "--as",
                    SUBMITTERS[s],
                    "--hashes",
                    &list,
                    "--set-size",
                    &SET_SIZE.to_string(),
                ],
            );
            if out.status.success() {
                let said = String::from_utf8_lossy(&out.stdout);
                done.resumed_runs += u64::from(said.contains("resumed the submission journaled"));
                break;
            }
            done.failed_runs += 1;
            let err = String::from_utf8_lossy(&out.stderr);
            // A dead hub is expected; anything about the journal or the statements is not.
            assert!(
                !err.contains("journal") || err.contains("rerun the same command"),
                "{list}: {err}"
            );
            attempts += 1;
            assert!(
                attempts < MAX_SUBMIT_ATTEMPTS,
                "{list}: no success in {attempts} attempts: {err}"
            );
            thread::sleep(Duration::from_millis(30));
        }
        done.lists.push(list);
    }
    done
}

/// The follower: `coalition sync --follow`, restarted whenever it ends, until `stop`. Returns
/// every error line it printed.
fn follower(
    dir: PathBuf,
    addr: String,
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<Child>>>,
) -> Vec<String> {
    let mut errors = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let spawned = Command::new(env!("CARGO_BIN_EXE_coalition"))
            .current_dir(&dir)
            .args([
                "sync",
                "--hub",
                &addr,
                "--as",
                FOLLOWER,
                "--out",
                "follow.jsonl",
                "--follow",
            ])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn follower");
        let stderr = {
            let mut guard = child.lock().expect("lock");
            let mut c = spawned;
            let stderr = c.stderr.take();
            *guard = Some(c);
            // Stopped between the check above and this spawn: end it here (see the caller).
            if stop.load(Ordering::SeqCst)
                && let Some(c) = guard.as_mut()
            {
                let _ = c.kill();
            }
            stderr
        };
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        if let Some(mut c) = child.lock().expect("lock").take() {
            let _ = c.wait();
        }
        errors.extend(
            text.lines()
                .filter(|l| l.starts_with("error"))
                .map(str::to_owned),
        );
        thread::sleep(Duration::from_millis(50));
    }
    errors
}

#[cfg(unix)]
#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let kills = env_u64("CRASH_LOOP_KILLS", 5);
    let max_up_ms = env_u64("CRASH_LOOP_MAX_UP_MS", 800).max(60);
    let seed = env_u64(
        "CRASH_LOOP_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    )
    .max(1);
    eprintln!("crash loop: {kills} kills, hub up at most {max_up_ms} ms, CRASH_LOOP_SEED={seed}");
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().to_path_buf();
    let mut pki = vec!["pki", "init", "--member", "admin"];
    for m in SUBMITTERS.iter().chain([&FOLLOWER]) {
        pki.extend(["--member", m]);
    }
    ok(&d, &pki);
    ok(&d, &["init", "--data", "data"]);
    let listen = format!("127.0.0.1:{}", free_port());
    let (mut hub, addr) = ServeProcess::start_on(&d, &listen, &[]);
    for m in SUBMITTERS.iter().chain([&FOLLOWER]) {
        ok(
            &d,
            &[
                "admin", "member", "admit", "--hub", &addr, "--as", "admin", "--id", m,
            ],
        );
    }

    let stop_submitting = Arc::new(AtomicBool::new(false));
    let stop_following = Arc::new(AtomicBool::new(false));
    let follower_child = Arc::new(Mutex::new(None));
    let submitters: Vec<_> = (0..SUBMITTERS.len())
        .map(|s| {
            let (d, addr, stop) = (d.clone(), addr.clone(), stop_submitting.clone());
            thread::spawn(move || submitter(d, s, addr, stop))
        })
        .collect();
    let follow = {
        let (d, addr) = (d.clone(), addr.clone());
        let (stop, child) = (stop_following.clone(), follower_child.clone());
        thread::spawn(move || follower(d, addr, stop, child))
    };

    // The kills: each hub lives a random while under load, then SIGKILL, then a new hub on
    // the same data directory and address.
    let mut moments = Moments(seed);
    for n in 0..kills {
        thread::sleep(Duration::from_millis(moments.next_ms(50, max_up_ms)));
        hub.kill();
        assert!(started.elapsed() < RUN_DEADLINE, "the run took too long");
        let (next, again) = ServeProcess::start_on(&d, &listen, &[]);
        assert_eq!(again, addr, "restart {n} listens where the clients dial");
        hub = next;
    }
    // Let the submitters finish the lists they are on, on a hub that stays up.
    stop_submitting.store(true, Ordering::SeqCst);
    let mut lists = Vec::new();
    let (mut failed_runs, mut resumed_runs) = (0, 0);
    for t in submitters {
        let s = t.join().expect("submitter");
        lists.extend(s.lists);
        failed_runs += s.failed_runs;
        resumed_runs += s.resumed_runs;
    }
    assert!(!lists.is_empty(), "nothing was submitted");
    // The kills hit the submitters (else this test would prove nothing).
    assert!(kills == 0 || failed_runs > 0, "no submission ever failed");

    // The whole log, freshly synced by the follower's member into a new file.
    ok(
        &d,
        &[
            "sync",
            "--hub",
            &addr,
            "--as",
            FOLLOWER,
            "--out",
            "final.jsonl",
        ],
    );
    let log_size = cursor_entries(&d.join("final.jsonl.cursor"));
    let logged = hash_rows(&d.join("final.jsonl"));

    // The follower catches up with it (bounded wait), then is stopped.
    let deadline = Instant::now() + Duration::from_secs(120);
    while cursor_entries(&d.join("follow.jsonl.cursor")) < log_size {
        assert!(
            Instant::now() < deadline,
            "the follower did not catch up: {} of {log_size} entries",
            cursor_entries(&d.join("follow.jsonl.cursor"))
        );
        thread::sleep(Duration::from_millis(100));
    }
    stop_following.store(true, Ordering::SeqCst);
    if let Some(c) = follower_child.lock().expect("lock").as_mut() {
        let _ = c.kill();
    }
    let follower_errors = follow.join().expect("follower");
    for line in &follower_errors {
        assert!(
            !line.contains("FAILED") && !line.contains("nothing was written"),
            "the follower must only ever see the hub go away, never a refused or unproven log: {line}"
        );
    }
    assert_eq!(
        cursor_entries(&d.join("follow.jsonl.cursor")),
        log_size,
        "the follower's replica accounts for the whole log"
    );
    assert_eq!(
        hash_rows(&d.join("follow.jsonl")),
        logged,
        "the follower's output equals the log, row for row"
    );

    // 0 lost: every journaled receipt is in the log; 0 duplicated: every hash once.
    let mut acked = BTreeSet::new();
    for list in &lists {
        let acks = journal_acks(&d.join(format!("{list}.journal")));
        assert_eq!(
            acks.len() as u64,
            HASHES_PER_LIST / SET_SIZE,
            "{list}: every statement acknowledged"
        );
        acked.extend(acks.into_values());
    }
    let mut per_hash: BTreeMap<&str, usize> = BTreeMap::new();
    for (hash, _) in &logged {
        *per_hash.entry(hash.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = per_hash.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "hashes logged more than once: {twice:?}");
    assert_eq!(
        logged.len() as u64,
        lists.len() as u64 * HASHES_PER_LIST,
        "every submitted hash is logged"
    );
    let logged_ids: BTreeSet<String> = logged.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(
        logged_ids, acked,
        "the log's statements are exactly the acknowledged ones"
    );

    // An auditor verifies the final log offline.
    ok(
        &d,
        &[
            "audit",
            "export",
            "--hub",
            &addr,
            "--as",
            FOLLOWER,
            "--out",
            "final.bundle",
        ],
    );
    let verified = ok(&d, &["audit", "verify", "final.bundle"]);
    eprintln!(
        "crash loop passed: {kills} kills, {} lists ({} statements) by {} submitters ({failed_runs} failed runs rerun, {resumed_runs} resumed after acknowledgements), log of {log_size} entries, {} follower error lines (the hub going away), {:.1} s; audit: {}",
        lists.len(),
        acked.len(),
        SUBMITTERS.len(),
        follower_errors.len(),
        started.elapsed().as_secs_f64(),
        verified.trim()
    );
    hub.kill();
}
