//! `coalition witness` (C2SP tlog-witness) as a separate process on loopback, fed the real
//! checkpoints and consistency proofs of a real hub over mutual TLS: it cosigns consistent
//! checkpoints only, answers with the spec's status codes, keeps its state across SIGKILL, and
//! two witnesses shown a split view never both cosign both branches. Its cosigned checkpoints
//! are checked with an independent signed-note implementation (the `signed_note` crate).

use crate::common;
use crate::serve;

use std::io::{Read, Write};
use std::path::Path;

use coalition_hub::log::cosignature::CosignerKey;
use coalition_hub::log::{Hash, SignedCheckpoint, TreeSize};
use coalition_hub::pb;
use coalition_hub::witness::client::{Answer, add_checkpoint};
use coalition_hub::witness::{AddCheckpoint, origin_hash};
use common::TestHub;
use serve::WitnessProcess;

/// `coalition witness init`: the witness's verifier key from its output.
fn init(data: &Path, name: &str) -> CosignerKey {
    let out = serve::ok(
        Path::new("."),
        &[
            "witness",
            "init",
            "--data",
            data.to_str().unwrap(),
            "--name",
            name,
        ],
    );
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("witness key: "))
        .unwrap_or_else(|| panic!("no key in {out:?}"));
    CosignerKey::parse(line).expect("a cosignature verifier key")
}

/// The hub's latest checkpoint, published now.
async fn checkpoint(t: &TestHub) -> SignedCheckpoint {
    let mut c = t.client("auditor").await;
    c.checkpoint(&t.checkpoint_key, true)
        .await
        .expect("checkpoint")
}

/// The hub's consistency proof between two sizes.
async fn proof(t: &TestHub, old: u64, new: u64) -> Vec<Hash> {
    let mut c = t.client("auditor").await;
    let p = c
        .audit
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            old_size: old,
            new_size: new,
        })
        .await
        .expect("proof")
        .into_inner();
    p.proof
        .iter()
        .map(|h| Hash::from_slice(h).expect("32 bytes"))
        .collect()
}

/// Submits `n` hash sets as acme so the log grows.
async fn grow(t: &TestHub, seed: u64, n: u64) {
    let mut c = t.client("acme").await;
    for i in 0..n {
        c.submit(t.hash_set("acme", seed + i, 3))
            .await
            .expect("submit");
    }
}

fn request(old: u64, proof: Vec<Hash>, cp: &SignedCheckpoint) -> AddCheckpoint {
    AddCheckpoint {
        old_size: old,
        proof,
        checkpoint: cp.note().to_owned(),
    }
}

async fn ask(addr: &str, r: &AddCheckpoint) -> Answer {
    add_checkpoint(addr, r).await.expect("the witness answers")
}

fn cosigned(answer: Answer) -> String {
    match answer {
        Answer::Cosigned(line) => line,
        other => panic!("not cosigned: {other:?}"),
    }
}

fn refused_with(answer: Answer) -> u16 {
    match answer {
        Answer::Refused { status, .. } => status,
        Answer::Conflict { .. } => 409,
        Answer::Cosigned(_) => panic!("cosigned, expected a refusal"),
    }
}

/// One raw HTTP/1.1 exchange (`Connection: close`): the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_witness_cosigns_a_real_hubs_consistent_checkpoints_and_nothing_else() {
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("w1");
    let key = init(&data, "witness.test/w1");
    let log_key = t.checkpoint_key.to_string();
    let (_w, addr) = WitnessProcess::start(&data, "127.0.0.1:0", &[&log_key]);

    // The first checkpoint: old size 0, no proof.
    let cp1 = checkpoint(&t).await;
    let line = cosigned(ask(&addr, &request(0, vec![], &cp1)).await);
    let stamp = key
        .verify(&format!("{}{line}", cp1.note()))
        .expect("the cosignature verifies over the hub's checkpoint");
    assert!(stamp.abs_diff(now()) < 120, "timestamp {stamp} is now");

    // The log grows: the witness cosigns the next checkpoint with the hub's real proof.
    grow(&t, 1, 3).await;
    let cp2 = checkpoint(&t).await;
    assert!(cp2.size() > cp1.size());
    let p = proof(&t, cp1.size().0, cp2.size().0).await;
    let line2 = cosigned(ask(&addr, &request(cp1.size().0, p.clone(), &cp2)).await);
    key.verify(&format!("{}{line2}", cp2.note())).unwrap();

    // A stale old size: 409 with the size the witness holds.
    assert_eq!(
        ask(&addr, &request(cp1.size().0, p, &cp2)).await,
        Answer::Conflict {
            latest: cp2.size().0
        }
    );

    // The hub's key signing a checkpoint that does not extend what was cosigned (another
    // history): 422, whatever proof comes with it.
    grow(&t, 10, 2).await;
    let cp3 = checkpoint(&t).await;
    let honest_proof = proof(&t, cp2.size().0, cp3.size().0).await;
    let forged = t.signer.sign(cp3.size(), Hash([9; 32])).unwrap();
    assert_eq!(
        refused_with(ask(&addr, &request(cp2.size().0, honest_proof.clone(), &forged)).await),
        422
    );
    // The same size as cosigned but another root: 422.
    let same_size = t.signer.sign(cp2.size(), Hash([8; 32])).unwrap();
    assert_eq!(
        refused_with(ask(&addr, &request(cp2.size().0, vec![], &same_size)).await),
        422
    );
    // A checkpoint not signed by the hub's key: 403. Another log: 404.
    let stranger = coalition_hub::log::CheckpointSigner::new(
        common::ORIGIN,
        ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
    )
    .unwrap()
    .sign(cp3.size(), Hash([1; 32]))
    .unwrap();
    assert_eq!(
        refused_with(
            ask(
                &addr,
                &request(cp2.size().0, honest_proof.clone(), &stranger)
            )
            .await
        ),
        403
    );
    let other_log = coalition_hub::log::CheckpointSigner::new(
        "other.example/log",
        ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
    )
    .unwrap()
    .sign(cp3.size(), Hash([1; 32]))
    .unwrap();
    assert_eq!(
        refused_with(ask(&addr, &request(0, vec![], &other_log)).await),
        404
    );
    // None of the refusals moved the witness: the honest successor is still cosigned.
    cosigned(ask(&addr, &request(cp2.size().0, honest_proof, &cp3)).await);

    // Monitors read the latest cosigned checkpoint, with the hub's signature and the
    // witness's, and an independent signed-note implementation verifies both.
    let (status, note) = http(
        &addr,
        "GET",
        &format!("/{}/checkpoint", origin_hash(common::ORIGIN)),
        b"",
    );
    assert_eq!(status, 200, "{note}");
    assert!(note.starts_with(&cp3.checkpoint().body()), "{note}");
    key.verify(&note).expect("the witness's cosignature");
    independent::verify(&note, &log_key, &key);
    let (status, _) = http(
        &addr,
        "GET",
        &format!("/{}/checkpoint", "00".repeat(32)),
        b"",
    );
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_view_shown_to_two_witnesses_is_caught() {
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log_key = t.checkpoint_key.to_string();
    let k1 = init(&dir.path().join("w1"), "witness.test/w1");
    let k2 = init(&dir.path().join("w2"), "witness.test/w2");
    let (_w1, a1) = WitnessProcess::start(&dir.path().join("w1"), "127.0.0.1:0", &[&log_key]);
    let (_w2, a2) = WitnessProcess::start(&dir.path().join("w2"), "127.0.0.1:0", &[&log_key]);

    let base = checkpoint(&t).await;
    for a in [&a1, &a2] {
        cosigned(ask(a, &request(0, vec![], &base)).await);
    }
    // The hub shows members two histories of the same size: the real one, and a fork signed
    // with its own key. It gets each branch cosigned by one witness...
    grow(&t, 1, 2).await;
    let honest = checkpoint(&t).await;
    let honest_proof = proof(&t, base.size().0, honest.size().0).await;
    let fork = t.signer.sign(honest.size(), Hash([7; 32])).unwrap();
    let on_honest =
        cosigned(ask(&a1, &request(base.size().0, honest_proof.clone(), &honest)).await);
    // (The fork has no valid proof from `base`: a consistent-looking fork needs a fork from the
    // start, so the second witness refuses it already.)
    assert_eq!(
        refused_with(ask(&a2, &request(base.size().0, honest_proof.clone(), &fork)).await),
        422
    );
    k1.verify(&format!("{}{on_honest}", honest.note())).unwrap();

    // ...and a witness that cosigned one branch never cosigns the other one, at any size.
    assert_eq!(
        refused_with(ask(&a1, &request(honest.size().0, vec![], &fork)).await),
        422
    );
    let later_fork = t
        .signer
        .sign(TreeSize(honest.size().0 + 1), Hash([7; 32]))
        .unwrap();
    assert_eq!(
        refused_with(
            ask(
                &a1,
                &request(honest.size().0, vec![Hash([7; 32])], &later_fork)
            )
            .await
        ),
        422
    );
    // The second witness accepts the honest branch: the two witnesses agree on one history.
    let line = cosigned(ask(&a2, &request(base.size().0, honest_proof, &honest)).await);
    k2.verify(&format!("{}{line}", honest.note())).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_witness_state_survives_sigkill() {
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("w");
    let key = init(&data, "witness.test/w");
    let log_key = t.checkpoint_key.to_string();
    let (w, addr) = WitnessProcess::start(&data, "127.0.0.1:0", &[&log_key]);
    grow(&t, 1, 2).await;
    let cp = checkpoint(&t).await;
    cosigned(ask(&addr, &request(0, vec![], &cp)).await);
    // Killed right after it answered: the answer was sent only once the state was on disk.
    w.kill();
    let (_w, addr) = WitnessProcess::start(&data, "127.0.0.1:0", &[&log_key]);
    assert_eq!(
        ask(&addr, &request(0, vec![], &cp)).await,
        Answer::Conflict {
            latest: cp.size().0
        }
    );
    let (status, note) = http(
        &addr,
        "GET",
        &format!("/{}/checkpoint", origin_hash(common::ORIGIN)),
        b"",
    );
    assert_eq!(status, 200);
    key.verify(&note).unwrap();
    // A fork of the size it holds is still refused after the restart.
    let fork = t.signer.sign(cp.size(), Hash([5; 32])).unwrap();
    assert_eq!(
        refused_with(ask(&addr, &request(cp.size().0, vec![], &fork)).await),
        422
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_the_specs_status_and_change_nothing() {
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("w");
    init(&data, "witness.test/w");
    let log_key = t.checkpoint_key.to_string();
    let (_w, addr) = WitnessProcess::start(&data, "127.0.0.1:0", &[&log_key]);
    let cp = checkpoint(&t).await;

    let body_of = |old: &str, cp: &SignedCheckpoint| format!("old {old}\n\n{}", cp.note());
    for (body, status) in [
        (body_of("01", &cp), 400),
        (body_of("x", &cp), 400),
        (format!("old 0\n{}", cp.note()), 400),
        (format!("old 0\nnot-base64\n\n{}", cp.note()), 400),
        (body_of(&(cp.size().0 + 1).to_string(), &cp), 400),
        ("\u{1b}[31m".to_owned(), 400),
    ] {
        let (got, message) = http(&addr, "POST", "/add-checkpoint", body.as_bytes());
        assert_eq!(got, status, "{body:?}: {message}");
        assert!(
            !message.contains('\u{1b}'),
            "control characters escaped: {message:?}"
        );
    }
    // Over the body limit: refused before it is read whole.
    let big = vec![b'a'; coalition_hub::witness::MAX_REQUEST_BYTES + 1];
    assert_eq!(http(&addr, "POST", "/add-checkpoint", &big).0, 413);
    assert_eq!(http(&addr, "GET", "/add-checkpoint", b"").0, 405);
    // Nothing was recorded: the first real request still starts from 0.
    cosigned(ask(&addr, &request(0, vec![], &cp)).await);
}

#[test]
fn the_cli_says_what_is_wrong_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("w");
    let d = data.to_str().unwrap();
    let here = Path::new(".");
    let e = serve::fails(here, &["witness", "run", "--data", d, "--log", "x+1+2"]);
    assert!(e.contains("coalition witness init"), "{e}");
    serve::ok(
        here,
        &["witness", "init", "--data", d, "--name", "w.test/1"],
    );
    let e = serve::fails(
        here,
        &["witness", "init", "--data", d, "--name", "w.test/1"],
    );
    assert!(e.contains("already holds a witness key"), "{e}");
    let e = serve::fails(here, &["witness", "run", "--data", d, "--log", "not a key"]);
    assert!(e.contains("--log"), "{e}");
    let other = dir.path().join("other");
    let o = other.to_str().unwrap();
    let e = serve::fails(
        here,
        &["witness", "init", "--data", o, "--name", "has space"],
    );
    assert!(e.contains("--name"), "{e}");
    assert!(!other.join("witness.key").exists(), "nothing written");
    let printed = serve::ok(here, &["witness", "key", "--data", d]);
    CosignerKey::parse(printed.trim()).expect("the key prints");
}

/// Waits (at most 10 s) until the hub serves at least `n` cosignatures for its latest
/// checkpoint; returns it.
async fn cosigned_by(t: &TestHub, n: usize) -> pb::SignedCheckpoint {
    for _ in 0..100 {
        let cp = t.published_checkpoint().await;
        if cp.cosignatures.len() >= n {
            return cp;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the hub never served {n} cosignatures");
}

/// The witnesses of a policy, running on loopback.
struct Witnesses {
    keys: Vec<CosignerKey>,
    addrs: Vec<String>,
    running: Vec<Option<WitnessProcess>>,
}

/// Starts a `coalition witness` for `t`'s log per name (`witness.test/<name>`, state in
/// `dir/<name>`), and has the coalition's admins set the policy naming them, ending with
/// `rules` (its group and quorum lines), with `coalition admin settings witnesses`.
async fn witnesses_for(t: &TestHub, dir: &Path, names: &[&str], rules: &str) -> Witnesses {
    let log_key = t.checkpoint_key.to_string();
    let mut w = Witnesses {
        keys: Vec::new(),
        addrs: Vec::new(),
        running: Vec::new(),
    };
    let mut text = String::from("# the coalition's witnesses\n");
    for name in names {
        let data = dir.join(name);
        let key = init(&data, &format!("witness.test/{name}"));
        let (process, addr) = WitnessProcess::start(&data, "127.0.0.1:0", &[&log_key]);
        text.push_str(&format!("witness {key} http://{addr}\n"));
        w.keys.push(key);
        w.addrs.push(addr);
        w.running.push(Some(process));
    }
    text.push_str(rules);
    let policy = dir.join("witnesses.policy");
    std::fs::write(&policy, &text).unwrap();
    let set = common::lifecycle::cli(
        t,
        "admin",
        &[
            "admin",
            "settings",
            "witnesses",
            "--policy",
            policy.to_str().unwrap(),
            "--reason",
            "witnesses agreed at the 2026 assembly",
        ],
    )
    .await;
    assert!(set.status.success(), "{set:?}");
    w
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_has_its_checkpoints_cosigned_by_the_policys_witnesses_and_members_check_it() {
    use common::hostile::{beside, sync_cli};
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log_key = t.checkpoint_key.to_string();
    // The coalition's admins set the policy: two of the three.
    let Witnesses {
        keys,
        addrs,
        mut running,
    } = witnesses_for(
        &t,
        dir.path(),
        &["w1", "w2", "w3"],
        "group two-of-three 2 witness.test/w1 witness.test/w2 witness.test/w3\nquorum two-of-three\n",
    )
    .await;
    let shown = common::lifecycle::cli(&t, "admin", &["admin", "settings", "show"]).await;
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("witnesses: quorum two-of-three"),
        "{shown:?}"
    );

    // Every checkpoint is sent to the three; the cosignatures are served beside it, and the
    // cosigned note verifies with an independent signed-note implementation.
    grow(&t, 1, 2).await;
    let cp = cosigned_by(&t, 3).await;
    assert_eq!(cp.cosignatures.len(), 3, "{:?}", cp.cosignatures);
    for k in &keys {
        let line = cp
            .cosignatures
            .iter()
            .find(|l| l.starts_with(&format!("— {} ", k.name())))
            .expect("a line by each witness");
        independent::verify(&format!("{}{line}", cp.note), &log_key, k);
    }

    // Operations see what each witness last cosigned.
    let status = common::lifecycle::cli(&t, "admin", &["federation", "status"]).await;
    let printed = String::from_utf8_lossy(&status.stdout);
    for k in &keys {
        assert!(
            printed.contains(&format!(
                "witness {}: last cosigned the checkpoint of {} entries",
                k.name(),
                cp.tree_size
            )),
            "{status:?}"
        );
    }

    // A member's sync checks them against the policy its own replica replayed.
    let certs = t.certs.root().to_path_buf();
    let out = dir.path().join("globex.jsonl");
    let run = sync_cli(&t.addr, &certs, "globex", &out, &[]).await.ok();
    assert!(
        run.stderr.contains("witnessed: checkpoint")
            && run
                .stderr
                .contains("witness.test/w1, witness.test/w2, witness.test/w3"),
        "{run:?}"
    );
    // With the newest cosignature's time: a hub freezing its view shows old ones.
    let newest = keys
        .iter()
        .map(|k| k.verify(&format!("{}{}", cp.note, cp.cosignatures.concat())))
        .map(|at| at.expect("each witness's line verifies"))
        .max()
        .expect("three");
    let at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(newest),
    );
    assert!(
        run.stderr.contains(&format!("; newest cosignature {at}")),
        "{run:?}"
    );
    let strict = ["--require-witnessed"];
    sync_cli(&t.addr, &certs, "globex", &out, &strict)
        .await
        .ok();

    // Two of three down: the policy cannot be met. A sync goes on and says so...
    for w in running.iter_mut().skip(1) {
        w.take().expect("running").kill();
    }
    grow(&t, 10, 2).await;
    let run = sync_cli(&t.addr, &certs, "globex", &out, &[]).await.ok();
    assert!(
        run.stderr.contains("warning: not witnessed since")
            && run.stderr.contains(
                "is cosigned by witness.test/w1, and the coalition's policy needs quorum two-of-three"
            ),
        "{run:?}"
    );
    // ...and the strict mode refuses, writing nothing.
    grow(&t, 20, 1).await;
    let before = (
        std::fs::read(&out).unwrap(),
        std::fs::read(beside(&out, ".cursor")).unwrap(),
    );
    let refused = sync_cli(&t.addr, &certs, "globex", &out, &strict).await;
    let line = refused.failed();
    assert!(line.contains("not witnessed since"), "{line}");
    assert!(line.contains("--require-witnessed"), "{line}");
    assert_eq!(
        before,
        (
            std::fs::read(&out).unwrap(),
            std::fs::read(beside(&out, ".cursor")).unwrap()
        ),
        "nothing written"
    );

    // A witness back (its state kept): the hub proves consistency from what it last cosigned,
    // and the strict sync goes through.
    let (w2, addr2) = WitnessProcess::start(&dir.path().join("w2"), &addrs[1], &[&log_key]);
    assert_eq!(addr2, addrs[1]);
    running[1] = Some(w2);
    grow(&t, 30, 1).await;
    cosigned_by(&t, 2).await;
    let run = sync_cli(&t.addr, &certs, "globex", &out, &strict)
        .await
        .ok();
    assert!(run.stderr.contains("witnessed: checkpoint"), "{run:?}");

    // A restarted hub knows nothing of what the witnesses hold: it asks from 0, they answer
    // 409 with their size, and it proves consistency from there.
    let t = TestHub::resume(t.stop().await).await;
    grow(&t, 40, 1).await;
    let cp = cosigned_by(&t, 2).await;
    assert_eq!(cp.cosignatures.len(), 2, "w1 and w2: {:?}", cp.cosignatures);
    let run = sync_cli(&t.addr, &certs, "globex", &out, &strict)
        .await
        .ok();
    assert!(run.stderr.contains("witnessed: checkpoint"), "{run:?}");
}

/// Runs the `coalition` binary with `args` (off the async workers, which serve the hubs).
async fn coalition(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        serve::coalition(Path::new("."), &args)
    })
    .await
    .expect("join")
}

/// `coalition audit export` of the hub at `addr` as its auditor, into `out`.
async fn audit_export(addr: &str, certs: &Path, out: &Path) {
    let run = coalition(&[
        "audit",
        "export",
        "--hub",
        addr,
        "--as",
        "auditor",
        "--certs",
        certs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(run.status.success(), "{run:?}");
}

const BOTH: &str = "group both all witness.test/w1 witness.test/w2\nquorum both\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_auditor_checks_cosignatures_and_a_hub_forging_them_is_caught() {
    use common::hostile::{Bent, HostileHub, export, state, sync_cli};
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = t.certs.root().to_path_buf();
    let _w = witnesses_for(&t, dir.path(), &["w1", "w2"], BOTH).await;
    grow(&t, 1, 2).await;
    let cp = cosigned_by(&t, 2).await;

    // The export carries the cosignatures; the auditor checks them against the policy the
    // replayed settings hold, and says who cosigned the last checkpoint.
    let bundle = dir.path().join("honest.bundle");
    audit_export(&t.addr, &certs, &bundle).await;
    let b = bundle.to_str().unwrap();
    let run = coalition(&["audit", "verify", b, "--require-witnessed"]).await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{run:?}");
    assert!(
        stdout.contains(&format!(
            "witnesses: checkpoint {} is cosigned by witness.test/w1, witness.test/w2; the coalition's policy (quorum both over witnesses witness.test/w1, witness.test/w2) is met",
            cp.tree_size
        )),
        "{stdout}"
    );

    // A hostile hub with the hub's keys but no witness's serves cosignatures it forged for
    // the policy's witnesses (their names, keys of its own).
    let impostors = ["witness.test/w1", "witness.test/w2"].map(|name| {
        coalition_hub::log::cosignature::Cosigner::new(
            name,
            ed25519_dalek::SigningKey::from_bytes(&[0x66; 32]),
        )
        .unwrap()
    });
    let honest = export(&t).await;
    let hostile = HostileHub::serve(
        &t,
        Bent::faithful(honest.entries, honest.members)
            .cosigned(move |text| impostors.iter().map(|w| w.cosign(text, now())).collect()),
    )
    .await;
    // A member requiring a witnessed log refuses it and writes nothing...
    let out = dir.path().join("globex.jsonl");
    let refused = sync_cli(
        &hostile.addr,
        &certs,
        "globex",
        &out,
        &["--require-witnessed"],
    )
    .await;
    let line = refused.failed();
    assert!(
        line.contains("cosigned by none")
            && line.contains(
                "cosignature lines naming witness.test/w1, witness.test/w2 that do not verify"
            )
            && line.contains("--require-witnessed"),
        "{line}"
    );
    assert!(state(&out).iter().all(Vec::is_empty), "nothing written");
    // ...one that does not goes on and warns.
    let run = sync_cli(&hostile.addr, &certs, "globex", &out, &[])
        .await
        .ok();
    assert!(
        run.stderr.contains("warning: not witnessed") && run.stderr.contains("(forged)"),
        "{run:?}"
    );
    // The auditor's bundle of the hostile hub fails, naming the witness and the checkpoint.
    let forged = dir.path().join("hostile.bundle");
    audit_export(&hostile.addr, &certs, &forged).await;
    let out = coalition(&["audit", "verify", forged.to_str().unwrap()]).await;
    let line = serve::one_error_line(&out);
    assert!(
        line.contains(&format!("checkpoint of size {}", cp.tree_size))
            && line.contains("witness.test/w1")
            && line.contains("forged"),
        "{line}"
    );

    // The honest bundle with the policy not met: reported, and refused only when required.
    drop(_w);
    grow(&t, 10, 1).await;
    let unwitnessed = dir.path().join("unwitnessed.bundle");
    audit_export(&t.addr, &certs, &unwitnessed).await;
    let u = unwitnessed.to_str().unwrap();
    let run = coalition(&["audit", "verify", u]).await;
    assert!(run.status.success(), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("is cosigned by none; the coalition's policy (quorum both over witnesses witness.test/w1, witness.test/w2) is NOT met"),
        "{run:?}"
    );
    let line =
        serve::one_error_line(&coalition(&["audit", "verify", u, "--require-witnessed"]).await);
    assert!(
        line.contains("audit FAILED") && line.contains("is NOT met (--require-witnessed)"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_shown_to_the_witnesses_never_collects_a_quorum() {
    use coalition_hub::log::{consistency_proof, root};
    use common::hostile::{
        Bent, HostileHub, entry_of, export, renumbered, state, sync_cli, tree_of,
    };
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = t.certs.root().to_path_buf();
    let w = witnesses_for(&t, dir.path(), &["w1", "w2"], BOTH).await;
    grow(&t, 1, 3).await;
    let cp = cosigned_by(&t, 2).await;
    let size = cp.tree_size;

    // The hostile hub's fork of the same size and more: a hash set hidden, and two statements
    // acme signed that the honest log never held. A valid log by every replica rule, signed
    // with the hub's own checkpoint key.
    let honest = export(&t).await;
    assert_eq!(honest.entries.len() as u64, size);
    let mut log = honest.entries.clone();
    log.remove(log.len() - 2);
    let last = log.last().unwrap().received_at_ms;
    for seed in [100, 101] {
        let at = last.max(now() as i64 * 1000) + seed as i64;
        log.push(entry_of(t.hash_set("acme", seed, 3), at));
    }
    let fork = renumbered(log);
    let fork_size = fork.len() as u64;
    assert_eq!(fork_size, size + 1);
    let tree = tree_of(&fork);
    let fork_cp = t
        .signer
        .sign(
            TreeSize(fork_size),
            root(&tree, TreeSize(fork_size)).unwrap(),
        )
        .unwrap();

    // Sent to each witness as a hub sends a checkpoint (C2SP add-checkpoint): from 0, the
    // witness answers 409 with the size of the honest checkpoint it cosigned; from there, the
    // fork has no consistency proof: 422. Neither witness cosigns it, so no quorum ever can.
    let fork_proof = consistency_proof(&tree, TreeSize(size), TreeSize(fork_size)).unwrap();
    for addr in &w.addrs {
        assert_eq!(
            ask(addr, &request(0, vec![], &fork_cp)).await,
            Answer::Conflict { latest: size },
            "{addr}"
        );
        assert_eq!(
            refused_with(ask(addr, &request(size, fork_proof.clone(), &fork_cp)).await),
            422,
            "{addr}"
        );
    }

    // The hostile hub serves the fork with the honest checkpoint's cosignatures (stale: over
    // another checkpoint). A member requiring a witnessed log refuses the fork.
    let stale = cp.cosignatures.clone();
    let hostile = HostileHub::serve(
        &t,
        Bent::faithful(fork, honest.members).cosigned(move |_| stale.clone()),
    )
    .await;
    let out = dir.path().join("globex.jsonl");
    let refused = sync_cli(
        &hostile.addr,
        &certs,
        "globex",
        &out,
        &["--require-witnessed"],
    )
    .await;
    let line = refused.failed();
    assert!(
        line.contains(&format!("checkpoint {fork_size} is cosigned by none"))
            && line.contains("(forged)"),
        "{line}"
    );
    assert!(state(&out).iter().all(Vec::is_empty), "nothing written");
}

/// Verification with the `signed_note` crate: its own note parser, its own Ed25519 note
/// verifier for the hub's key, and a cosignature/v1 verifier written here from the spec (key
/// ID by the crate's `key_id`).
mod independent {
    use coalition_hub::log::cosignature::CosignerKey;
    use ed25519_dalek::{Signature, VerifyingKey};
    use signed_note::{Note, StandardVerifier, Verifier, VerifierList};

    struct CosignatureV1 {
        name: String,
        id: u32,
        key: VerifyingKey,
    }

    impl Verifier for CosignatureV1 {
        fn name(&self) -> &str {
            &self.name
        }
        fn key_id(&self) -> u32 {
            self.id
        }
        fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
            if sig.len() != 72 {
                return false;
            }
            let ts = u64::from_be_bytes(sig[..8].try_into().unwrap());
            let mut m = format!("cosignature/v1\ntime {ts}\n").into_bytes();
            m.extend_from_slice(msg);
            Signature::from_slice(&sig[8..]).is_ok_and(|s| self.key.verify_strict(&m, &s).is_ok())
        }
    }

    pub fn verify(note: &str, log_vkey: &str, witness: &CosignerKey) {
        // The witness's public key from its verifier-key text, decoded here.
        let text = witness.to_string();
        let b64 = text.splitn(3, '+').nth(2).unwrap();
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw[0], 0x04);
        let key = VerifyingKey::from_bytes(raw[1..].try_into().unwrap()).unwrap();
        let cosigner = CosignatureV1 {
            name: witness.name().to_owned(),
            id: signed_note::key_id(witness.name(), &raw),
            key,
        };
        assert_eq!(
            cosigner.id.to_be_bytes(),
            witness.key_id().0,
            "the same key id"
        );
        let log = StandardVerifier::new(log_vkey).expect("the hub's verifier key parses");
        let list = VerifierList::new(vec![Box::new(log), Box::new(cosigner)]);
        let parsed = Note::from_bytes(note.as_bytes()).expect("signed_note parses the note");
        let (verified, unverified) = parsed.verify(&list).expect("both signatures verify");
        assert_eq!(verified.len(), 2, "the hub's and the witness's");
        assert!(unverified.is_empty());
    }
}
