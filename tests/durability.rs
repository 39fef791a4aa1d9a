//! Durability: the real `coalition` binary acknowledges submissions, is killed with SIGKILL,
//! restarts on the same data directory, and still holds every acknowledged statement.

mod common;

use coalition_hub::client::Client;
use coalition_hub::governance;
use coalition_hub::membership::Role;
use coalition_hub::pb;
use coalition_hub::pki::CertDir;
use coalition_hub::store::{Store, StoreConfig};
use common::{id, replay, sha256_set, sync_all};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn start_hub(data: &Path, certs: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coalition"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(data)
        .arg("--certs")
        .arg(certs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coalition serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let Some(addr) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        }
        panic!("hub did not start: stdout {line:?}, stderr {err:?}");
    };
    // Drain stderr so the hub never blocks on a full pipe.
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            std::io::copy(&mut BufReader::new(stderr), &mut std::io::sink())
        });
    }
    (child, addr)
}

#[tokio::test]
async fn acknowledged_statements_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tmp");
    let certs_dir = dir.path().join("certs");
    let data = dir.path().join("data");
    let certs = CertDir::new(&certs_dir);
    certs.init(&[id("acme")]).expect("pki");
    let key = certs.signing_key(&id("acme")).expect("key");
    {
        // Genesis, as `coalition init`: acme is the founding admin and also a member.
        let store = Store::open(&data, &StoreConfig::default()).expect("store");
        let hub_key = certs.hub_signing_key().expect("hub key");
        let genesis = governance::genesis(
            "durability.test",
            &hub_key,
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
        governance::append_offline(&store, genesis)
            .await
            .expect("found");
    }
    let tls = certs.member_tls(&id("acme")).expect("tls");
    let mut acked = Vec::new();
    for round in 0..3u64 {
        let (mut child, addr) = start_hub(&data, &certs_dir);
        let mut client = Client::connect(&addr, &tls).await.expect("connect");
        // Everything acknowledged before earlier kills is still there.
        let (entries, next) = sync_all(&mut client, pb::SyncRequest::default()).await;
        let ids: Vec<Vec<u8>> = entries.iter().map(|e| e.statement_id.clone()).collect();
        assert_eq!(
            ids[1..].to_vec(),
            acked,
            "round {round}: every acknowledged statement survived (entry 0 is the genesis)"
        );
        assert_eq!(next, acked.len() as u64 + 1);
        // And the restarted hub's log still replays from its genesis, every rule checked.
        replay(entries).unwrap_or_else(|e| panic!("round {round}: {e}"));
        for i in 0..20u64 {
            let set = sha256_set(round * 100 + i, 50);
            let env = coalition_hub::client::sign_new(
                &id("acme"),
                &key,
                coalition_hub::statement::Body::HashSet(set),
            );
            let r = client.submit(env).await.expect("submit");
            let receipt = r.receipt.expect("receipt");
            assert_eq!(receipt.seq, acked.len() as u64 + 1);
            acked.push(receipt.statement_id);
        }
        // SIGKILL right after the last acknowledgement: no graceful shutdown, no Drop.
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }
}
