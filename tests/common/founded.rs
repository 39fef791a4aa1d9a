//! A data directory founded offline (`acme` its admin and member, the development PKI beside
//! it) and `coalition serve` run on it as a child process with its log collected: the set-up
//! of the tests that watch the real binary's log (shutdown, operations).

use super::{id, sha256_set};
use coalition_hub::client::sign_new;
use coalition_hub::governance;
use coalition_hub::membership::Role;
use coalition_hub::pb;
use coalition_hub::pki::{CertDir, TlsConfig};
use coalition_hub::statement::Body;
use coalition_hub::store::{Store, StoreConfig};
use ed25519_dalek::SigningKey;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The generous bound on anything these tests wait for.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A data directory founded with `acme` as its admin and member, the PKI beside it.
pub struct Founded {
    pub dir: TempDir,
    pub certs: PathBuf,
    pub data: PathBuf,
}

/// Founds the hub `hub_name` into the empty `store` as `coalition init` does: makes the
/// development PKI in `certs` with `acme`, the founding admin and also a member, and appends the
/// genesis. Returns acme's signing key.
pub async fn found(store: &Store, certs: &CertDir, hub_name: &str) -> SigningKey {
    certs.init(&[id("acme")]).expect("pki");
    let key = certs.signing_key(&id("acme")).expect("key");
    let genesis = governance::genesis(
        hub_name,
        &certs.hub_signing_key().expect("hub key"),
        vec![governance::admission(
            &id("acme"),
            "Acme",
            &[Role::Admin, Role::Member],
            &[key.verifying_key()],
        )],
        1,
        &key,
    )
    .expect("genesis");
    governance::append_offline(store, genesis)
        .await
        .expect("found");
    key
}

impl Founded {
    /// Founds the hub `hub_name` in a new temporary directory.
    pub async fn new(hub_name: &str) -> Founded {
        let dir = tempfile::tempdir().expect("tmp");
        let certs = dir.path().join("certs");
        let data = dir.path().join("data");
        let store = Store::open(&data, &StoreConfig::default()).expect("store");
        found(&store, &CertDir::new(&certs), hub_name).await;
        Founded { dir, certs, data }
    }

    /// acme's TLS material.
    pub fn tls(&self) -> TlsConfig {
        CertDir::new(&self.certs)
            .member_tls(&id("acme"))
            .expect("tls")
    }

    /// A signed hash set by acme of `n` hashes, distinct per `seed`.
    pub fn hash_set(&self, seed: u64, n: usize) -> pb::Envelope {
        let key = CertDir::new(&self.certs)
            .signing_key(&id("acme"))
            .expect("key");
        sign_new(&id("acme"), &key, Body::HashSet(sha256_set(seed, n)))
    }
}

/// `coalition serve --checkpoint-ms 50` on a [`Founded`] directory, listening and with its
/// operations listener on free loopback ports; its log (stderr) collected; killed when dropped.
pub struct LoggedHub {
    pub child: Child,
    pub addr: String,
    log: Arc<Mutex<String>>,
}

impl LoggedHub {
    pub fn start(f: &Founded, extra: &[&str]) -> LoggedHub {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coalition"))
            .args(["serve", "--listen", "127.0.0.1:0", "--checkpoint-ms", "50"])
            .args(["--ops-listen", "127.0.0.1:0", "--data"])
            .arg(&f.data)
            .arg("--certs")
            .arg(&f.certs)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn coalition serve");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        // Collects the log, and keeps the hub from blocking on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        // Keeps stdout open for the hub's life.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let Some(addr) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hub did not start: stdout {line:?}, log {:?}", log.lock());
        };
        LoggedHub { child, addr, log }
    }

    /// Everything the hub logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// Waits for `needle` in the log (a test failure past [`PATIENCE`]).
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the hub log within {PATIENCE:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LoggedHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
