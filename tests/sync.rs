//! A member's sync (`Syncer`, `coalition sync`) against real hubs: resumed runs see every
//! entry exactly once, each batch is proven in a signed checkpoint extending the saved one
//! before it is written, a rewritten history is refused, filtered syncs account for every
//! entry, the genesis is pinned, `--follow` writes new rows once proven, a compromise
//! revocation flags rows already written, and a hub restored from an old copy is behind.

use crate::common;

use coalition_hub::client::sign_new;
use coalition_hub::governance;
use coalition_hub::membership::{Action, KeyId, Revocation, Role};
use coalition_hub::server::{ServeOptions, spawn};
use coalition_hub::statement::{Body, HashEntry, HashSet, HashType, Label};
use coalition_hub::store::{Store, StoreConfig};
use coalition_hub::sync::{FilterSpec, SyncOptions, Syncer};
use common::hostile::{Bent, HostileHub, cursor, export, state, sync_cli, sync_command};
use common::{ORIGIN, TestHub, id, sha256_set, sha256_value};
use ed25519_dalek::SigningKey;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// Data rows of a sync output (CSV without its header, or JSON Lines).
fn rows(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with("seq,"))
        .map(str::to_owned)
        .collect()
}

/// Asserts `out` holds exactly the rows of `fresh`, byte for byte, each once.
fn same_rows_once(out: &Path, fresh: &Path) {
    assert_eq!(
        std::fs::read(out).expect("output"),
        std::fs::read(fresh).expect("fresh output"),
        "the same rows as a fresh sync"
    );
    let rows = rows(out);
    let distinct: BTreeSet<&String> = rows.iter().collect();
    assert_eq!(distinct.len(), rows.len(), "each row once");
}

fn labelled_set(seed: u64, n: u64, hash_type: HashType, label: &str) -> HashSet {
    let len = match hash_type {
        HashType::Md5 => 16,
        _ => 32,
    };
    HashSet {
        expires_at_ms: None,
        description: String::new(),
        entries: (0..n)
            .map(|i| HashEntry {
                hash_type,
                value: sha256_value(seed, i)[..len].to_vec(),
                quality: None,
                labels: vec![Label::parse(label).expect("label")],
            })
            .collect(),
    }
}

fn syncer_options(dir: &Path, follow: bool) -> SyncOptions {
    SyncOptions {
        filter: FilterSpec::default(),
        follow,
        genesis: None,
        cursor: dir.join("cursor"),
        ids: dir.join("ids"),
        require_witnessed: false,
    }
}

const SUBMITTERS: u64 = 3;
const PER_SUBMITTER: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_follows_see_every_entry_exactly_once_under_concurrent_submitters() {
    let t = TestHub::start().await;
    let total = SUBMITTERS * PER_SUBMITTER;
    let mut tasks = Vec::new();
    for s in 0..SUBMITTERS {
        let member = if s % 2 == 0 { "acme" } else { "globex" };
        let mut client = t.client(member).await;
        let envelopes: Vec<_> = (0..PER_SUBMITTER)
            .map(|i| t.hash_set(member, s * 1000 + i, 3))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for env in envelopes {
                let r = client.submit(env).await.expect("submit");
                acked.push(r.receipt.expect("receipt").statement_id);
            }
            acked
        }));
    }

    // The follower: a few proven batches per connection, then it disconnects and resumes from
    // its saved state. Every third connection, the first included, drops its first batch
    // without committing it: that batch must come again.
    let state = tempfile::tempdir().expect("tmp");
    let mut received: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut connections = 0u64;
    let mut dropped = 0;
    let wanted = t.base + total;
    for _ in 0..10_000 {
        if received.last().is_some_and(|(seq, _)| seq + 1 >= wanted) {
            break;
        }
        connections += 1;
        let (mut syncer, _) =
            Syncer::open(t.client("globex").await, syncer_options(state.path(), true))
                .await
                .expect("open");
        let budget = 1 + connections % 3;
        for batch in 0..budget {
            let proven = tokio::time::timeout(Duration::from_secs(20), syncer.next())
                .await
                .expect("no stall")
                .expect("verified and proven")
                .expect("stream open");
            assert!(proven.checkpoint_size > proven.entries.last().expect("entries").seq);
            if connections % 3 == 1 && batch == 0 {
                dropped += 1;
                break; // not committed
            }
            syncer.commit(&[], 0).expect("commit");
            received.extend(
                proven
                    .entries
                    .iter()
                    .filter(|e| e.seq >= t.base)
                    .map(|e| (e.seq, e.id.0.to_vec())),
            );
            if received.last().is_some_and(|(seq, _)| seq + 1 >= wanted) {
                break;
            }
        }
    }
    let mut acked = BTreeSet::new();
    for task in tasks {
        acked.extend(task.await.expect("submitter"));
    }
    let seqs: Vec<u64> = received.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (t.base..wanted).collect::<Vec<_>>(),
        "in order, no gap, no duplicate"
    );
    let ids: BTreeSet<Vec<u8>> = received.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, acked, "exactly the acknowledged statements");
    assert!(
        dropped > 0 && connections > dropped,
        "{connections} connections, {dropped} batches dropped"
    );
}

#[tokio::test]
async fn syncs_prove_every_entry_in_a_checkpoint_extending_the_saved_one() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    for i in 0..5 {
        acme.submit(t.hash_set("acme", i, 2)).await.expect("submit");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (mut syncer, _) = Syncer::open(t.client("globex").await, syncer_options(dir.path(), false))
        .await
        .expect("open");
    let mut last = None;
    while let Some(proven) = syncer.next().await.expect("verified and proven") {
        syncer.commit(&[], 0).expect("commit");
        last = Some(proven);
    }
    let first = last.expect("a batch");
    assert_eq!(syncer.replica().size(), t.base + 5);
    assert!(first.checkpoint_size >= t.base + 5);
    let saved = coalition_hub::sync::Cursor::load(&dir.path().join("cursor"))
        .expect("cursor")
        .expect("saved");
    assert_eq!(saved.replica.size, t.base + 5);
    assert!(
        saved.replica.checkpoint.is_some(),
        "the checkpoint is saved"
    );
    drop(syncer);

    // Later: more entries; the resumed sync starts at the cursor and proves the new ones in a
    // checkpoint consistent with the saved one.
    for i in 10..13 {
        acme.submit(t.hash_set("acme", i, 1)).await.expect("submit");
    }
    let (mut syncer, _) = Syncer::open(t.client("globex").await, syncer_options(dir.path(), false))
        .await
        .expect("reopen");
    assert_eq!(
        syncer.replica().checkpoint().map(|(size, _)| size),
        Some(first.checkpoint_size),
        "restored with its checkpoint"
    );
    let proven = syncer.next().await.expect("proven").expect("a batch");
    let seqs: Vec<u64> = proven.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (t.base + 5..t.base + 8).collect::<Vec<_>>());
    assert!(proven.checkpoint_size >= t.base + 8);
    syncer.commit(&[], 0).expect("commit");
    assert!(syncer.next().await.expect("end").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_history_is_refused() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    for i in 0..4 {
        acme.submit(t.hash_set("acme", i, 1)).await.expect("submit");
    }
    let out = tempfile::tempdir().expect("tmp");
    let synced = out.path().join("synced.csv");
    sync_cli(&t.addr, t.certs.root(), "globex", &synced, &[])
        .await
        .ok();
    let genesis = t.genesis_hex().await;

    // The operator rewrites history: a new log under the same hub name and key, where acme's
    // statements are gone, served at another address to the same members.
    let other = tempfile::tempdir().expect("tmp");
    let store = Store::open(other.path(), &StoreConfig::default()).expect("store");
    governance::found_from_certs(
        &store,
        &t.certs,
        ORIGIN,
        &[(id("admin"), "Admin".into())],
        1,
    )
    .await
    .expect("genesis");
    for m in ["acme", "globex"] {
        let admit = governance::admission(&id(m), m, &[Role::Member], &[t.key(m).verifying_key()]);
        let change = governance::change(&id("admin"), &t.key("admin"), Action::Admit(admit), "");
        governance::append_offline(&store, change)
            .await
            .expect("admit");
    }
    for i in 100..110 {
        governance::append_offline(&store, t.hash_set("globex", i, 1))
            .await
            .expect("append");
    }
    let options = ServeOptions::for_store(&store, t.certs.hub_signing_key().expect("key"))
        .expect("same hub key and name");
    let forged = spawn(
        "127.0.0.1:0",
        store,
        t.certs.hub_tls().expect("tls"),
        options,
    )
    .await
    .expect("forged hub");
    let addr = forged.addr.to_string();

    // Resumed from the saved state: its checkpoints verify with the hub key, but do not extend
    // what globex proved. Nothing is written.
    let before = state(&synced);
    let run = sync_cli(&addr, t.certs.root(), "globex", &synced, &[]).await;
    let line = run.failed();
    assert!(line.contains("verification FAILED at checkpoint"), "{line}");
    assert!(line.contains("history was rewritten"), "{line}");
    assert!(state(&synced) == before, "nothing written");

    // A new member who pinned the real genesis refuses the forged log at its first entry.
    let fresh = out.path().join("fresh.csv");
    let run = sync_cli(
        &addr,
        t.certs.root(),
        "globex",
        &fresh,
        &["--genesis", &genesis],
    )
    .await;
    let line = run.failed();
    assert!(line.contains("verification FAILED at entry 0"), "{line}");
    assert!(line.contains("is not the pinned genesis"), "{line}");
    assert!(rows(&fresh).is_empty());
    forged.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_run_resumes_with_every_row_once() {
    const ROUNDS: u64 = 8;
    const SETS_PER_ROUND: u64 = 4;
    const HASHES: usize = 300;
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.csv");
    // Each round: a following sync, a submitter adding sets meanwhile, and SIGKILL for the
    // sync at a varied point.
    let mut killed_running = 0;
    let mut killed_mid_batch = 0;
    for (round, pause_ms) in (0..ROUNDS).zip([150u64, 40, 250, 90, 10, 400, 120, 60]) {
        let mut child = sync_command(&t.addr, t.certs.root(), "globex", &out, &["--follow"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn coalition sync --follow");
        let mut acme = t.client("acme").await;
        let envelopes: Vec<_> = (0..SETS_PER_ROUND)
            .map(|i| t.hash_set("acme", round * 100 + i, HASHES))
            .collect();
        let submitter = tokio::spawn(async move {
            for env in envelopes {
                acme.submit(env).await.expect("submit");
            }
        });
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        if child.try_wait().expect("poll").is_none() {
            killed_running += 1;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        submitter.await.expect("submitter");
        let saved = coalition_hub::sync::Cursor::load(&common::hostile::beside(&out, ".cursor"))
            .expect("cursor readable");
        let len = std::fs::metadata(&out).map_or(0, |m| m.len());
        if saved.is_none_or(|c| c.output_bytes != len) {
            killed_mid_batch += 1;
        }
    }
    eprintln!("{killed_mid_batch} of {ROUNDS} kills left output beyond the saved cursor");
    assert_eq!(killed_running, ROUNDS, "a following sync runs until killed");
    sync_cli(&t.addr, t.certs.root(), "globex", &out, &[])
        .await
        .ok();
    let fresh = dir.path().join("fresh.csv");
    sync_cli(&t.addr, t.certs.root(), "globex", &fresh, &[])
        .await
        .ok();
    same_rows_once(&out, &fresh);
    assert_eq!(
        rows(&out).len(),
        (ROUNDS * SETS_PER_ROUND) as usize * HASHES
    );
    assert_eq!(cursor(&out).replica.size, t.store.log_size());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_sync_accounts_for_every_entry_and_writes_only_selected_rows() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let key = t.key("acme");
    let sets = [
        labelled_set(1, 3, HashType::Sha256, "A1"),
        labelled_set(2, 2, HashType::Md5, "B2"),
        labelled_set(3, 4, HashType::Sha256, "urgent"),
        labelled_set(4, 1, HashType::Md5, "urgent"),
        labelled_set(5, 2, HashType::Sha256, "A1"),
    ];
    for set in &sets {
        acme.submit(sign_new(&id("acme"), &key, Body::HashSet(set.clone())))
            .await
            .expect("submit");
    }
    let size = t.store.log_size();
    let dir = tempfile::tempdir().expect("tmp");
    for (args, file, hash_type, label, expected) in [
        (&["--hash-type", "md5"][..], "md5.csv", Some("md5"), None, 3),
        (
            &["--label", "urgent"][..],
            "urgent.jsonl",
            None,
            Some("urgent"),
            5,
        ),
        (
            &["--label", "A1", "--hash-type", "pdq"][..],
            "none.csv",
            None,
            None,
            0,
        ),
    ] {
        let out = dir.path().join(file);
        let run = sync_cli(&t.addr, t.certs.root(), "globex", &out, args)
            .await
            .ok();
        let c = cursor(&out);
        assert_eq!(c.replica.size, size, "{args:?}: every entry accounted for");
        assert_eq!(
            std::fs::metadata(common::hostile::beside(&out, ".ids"))
                .expect("ids")
                .len(),
            49 * size,
            "{args:?}: one ids record per entry"
        );
        let rows = rows(&out);
        assert_eq!(rows.len(), expected, "{args:?}: {rows:?}");
        for row in &rows {
            if let Some(hash_type) = hash_type {
                assert_eq!(row.split(',').nth(4), Some(hash_type), "{row}");
            }
            if let Some(label) = label {
                let v: serde_json::Value = serde_json::from_str(row).expect("json");
                assert_eq!(v["labels"], serde_json::json!([label]), "{row}");
            }
        }
        assert!(run.stdout.contains("outside the filter"), "{}", run.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_genesis_is_pinned() {
    let t = TestHub::start().await;
    t.client("acme")
        .await
        .submit(t.hash_set("acme", 1, 2))
        .await
        .expect("submit");
    let genesis = t.genesis_hex().await;
    let dir = tempfile::tempdir().expect("tmp");
    let sync = |file: &str, args: Vec<String>| {
        let out = dir.path().join(file);
        let (addr, certs) = (t.addr.clone(), t.certs.root().to_path_buf());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            (sync_cli(&addr, &certs, "globex", &out, &args).await, out)
        }
    };

    // Another coalition's genesis: refused at entry 0, nothing written, nothing saved.
    let (run, out) = sync("wrong.csv", vec!["--genesis".into(), "ab".repeat(32)]).await;
    let line = run.failed();
    assert!(line.contains("verification FAILED at entry 0"), "{line}");
    assert!(
        line.contains(&format!("genesis {genesis} is not the pinned genesis")),
        "{line}"
    );
    assert!(rows(&out).is_empty());
    assert!(!common::hostile::beside(&out, ".cursor").exists());

    // The right one: accepted, nothing trusted on first use.
    let (run, out) = sync("right.csv", vec!["--genesis".into(), genesis.clone()]).await;
    let run = run.ok();
    assert!(!run.stderr.contains("on first use"), "{}", run.stderr);
    assert_eq!(rows(&out).len(), 2);
    assert_eq!(cursor(&out).replica.genesis, genesis);

    // None: trust on first use, printed to compare out of band, then kept.
    let (run, out) = sync("tofu.csv", vec![]).await;
    let run = run.ok();
    assert!(
        run.stderr
            .contains(&format!("pinned genesis {genesis} on first use")),
        "{}",
        run.stderr
    );
    assert_eq!(cursor(&out).replica.genesis, genesis);
    let (run, _) = sync("tofu.csv", vec![]).await;
    assert!(!run.ok().stderr.contains("on first use"));
    let (run, _) = sync("tofu.csv", vec!["--genesis".into(), "cd".repeat(32)]).await;
    let line = run.failed();
    assert!(
        line.contains(&format!("genesis {genesis}, not the --genesis")),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_writes_new_rows_once_proven() {
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.csv");
    let mut child = sync_command(&t.addr, t.certs.root(), "globex", &out, &["--follow"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn coalition sync --follow");
    let receipt = t
        .client("acme")
        .await
        .submit(t.hash_set("acme", 7, 3))
        .await
        .expect("submit")
        .receipt
        .expect("receipt");
    // Poll the output, for at most 30 s.
    let mut written = Vec::new();
    for _ in 0..600 {
        written = rows(&out);
        if written.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let checkpoint = t
        .store
        .latest_checkpoint()
        .expect("checkpoint")
        .expect("published");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert_eq!(
        written.len(),
        3,
        "the new set's rows within 30 s: {written:?}"
    );
    for row in &written {
        assert!(row.starts_with(&format!("{},", receipt.seq)), "{row}");
    }
    assert!(
        checkpoint.size > receipt.seq,
        "written only once a checkpoint covered it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_writes_nothing_a_hub_never_proves() {
    let t = TestHub::start().await;
    t.client("acme")
        .await
        .submit(t.hash_set("acme", 1, 2))
        .await
        .expect("submit");
    let honest = export(&t).await;
    // A hub that streams every entry but signs no checkpoint covering the last one.
    let hostile = HostileHub::serve(
        &t,
        Bent {
            checkpoint_cap: Some(t.base),
            ..Bent::faithful(honest.entries, honest.members)
        },
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.csv");
    let run = sync_cli(&hostile.addr, t.certs.root(), "globex", &out, &["--follow"]).await;
    let line = run.failed();
    assert!(line.contains("behind"), "{line}");
    assert!(rows(&out).is_empty(), "no row without its proof");
    assert!(!common::hostile::beside(&out, ".cursor").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromise_revocation_flags_rows_already_written() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let before = acme
        .submit(t.hash_set("acme", 1, 2))
        .await
        .expect("submit")
        .receipt
        .expect("receipt");
    // A later set received in a later millisecond (sets received in the same one as `before`
    // go before it).
    let mut sets = 1;
    let mut after = before.clone();
    for seed in 2..1000 {
        if after.received_at_ms > before.received_at_ms {
            break;
        }
        after = acme
            .submit(t.hash_set("acme", seed, 3))
            .await
            .expect("submit")
            .receipt
            .expect("receipt");
        sets += 1;
    }
    assert!(after.received_at_ms > before.received_at_ms);
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.csv");
    sync_cli(&t.addr, t.certs.root(), "globex", &out, &[])
        .await
        .ok();
    assert_eq!(rows(&out).len(), 2 + 3 * (sets - 1));

    // acme's key leaked: revoked as compromised since `after` was received.
    let leaked = t.key("acme");
    let new = SigningKey::from_bytes(&[0x24; 32]);
    t.admin_change(Action::AddKey {
        member: id("acme"),
        key: new.verifying_key(),
    })
    .await
    .expect("add key");
    t.admin_change(Action::RevokeKey {
        member: id("acme"),
        key_id: KeyId::of(&leaked.verifying_key()),
        revocation: Revocation::Compromised {
            compromised_at_ms: after.received_at_ms,
        },
    })
    .await
    .expect("revoke");
    acme.submit(sign_new(&id("acme"), &new, Body::HashSet(sha256_set(3, 1))))
        .await
        .expect("submit with the new key");

    let run = sync_cli(&t.addr, t.certs.root(), "globex", &out, &[])
        .await
        .ok();
    let key_id = KeyId::of(&leaked.verifying_key()).to_string();
    let warning = run
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("a warning: {:?}", run.stderr));
    assert!(
        warning.contains(&format!("key {key_id} of 'acme'")),
        "{warning}"
    );
    assert!(warning.contains("compromised"), "{warning}");
    assert!(
        warning.ends_with(&format!("(seq {})", after.seq)),
        "names the entry signed from then on, not {}: {warning}",
        before.seq
    );
    // A fresh sync flags the same rows itself.
    let fresh = dir.path().join("fresh.csv");
    sync_cli(&t.addr, t.certs.root(), "globex", &fresh, &[])
        .await
        .ok();
    for row in rows(&fresh) {
        // The compromised_keys column, before the entry index.
        let flagged = row.contains(&format!(",{key_id},"));
        assert_eq!(
            flagged,
            row.starts_with(&format!("{},", after.seq)),
            "{row}"
        );
    }
}

/// Replaces `data` with a copy of `from`.
fn restore(from: &Path, data: &Path) {
    std::fs::remove_dir_all(data).expect("remove data");
    crate::common::copy_dir(from, data);
}

#[test]
fn a_hub_restored_from_an_old_copy_is_behind_until_it_catches_up() {
    let runtime = crate::common::runtime;
    let copies = tempfile::tempdir().expect("tmp");
    let (old, new) = (copies.path().join("old"), copies.path().join("new"));
    let out = copies.path().join("out.csv");
    let fresh = copies.path().join("fresh.csv");

    // A few entries; a copy of the data directory (the store is closed once the runtime that
    // ran the hub is dropped).
    let rt = runtime();
    let (stopped, data, certs) = rt.block_on(async {
        let t = TestHub::start().await;
        let mut acme = t.client("acme").await;
        for i in 0..2 {
            acme.submit(t.hash_set("acme", i, 2)).await.expect("submit");
        }
        let (data, certs) = (t.data.clone(), t.certs.root().to_path_buf());
        (t.stop().await, data, certs)
    });
    drop(rt);
    crate::common::copy_dir(&data, &old);

    // More entries, synced by the member.
    let rt = runtime();
    let (stopped, synced) = rt.block_on(async {
        let t = TestHub::resume(stopped).await;
        let mut acme = t.client("acme").await;
        for i in 2..5 {
            acme.submit(t.hash_set("acme", i, 2)).await.expect("submit");
        }
        sync_cli(&t.addr, &certs, "globex", &out, &[]).await.ok();
        let size = t.store.log_size();
        (t.stop().await, size)
    });
    drop(rt);
    assert_eq!(cursor(&out).replica.size, synced);
    crate::common::copy_dir(&data, &new);

    // The hub restored from the old copy: behind, nothing written.
    restore(&old, &data);
    let rt = runtime();
    let stopped = rt.block_on(async {
        let t = TestHub::resume(stopped).await;
        assert!(t.store.log_size() < synced);
        let before = state(&out);
        let run = sync_cli(&t.addr, &certs, "globex", &out, &[]).await;
        // Exit code 3 for "behind" is being added; until then any failure.
        let line = run.failed();
        assert!(line.contains("behind"), "{line}");
        assert!(line.contains("nothing was written"), "{line}");
        assert!(state(&out) == before, "nothing written, cursor unchanged");
        t.stop().await
    });
    drop(rt);

    // Caught up again (its newer data back): the member goes on from its cursor.
    restore(&new, &data);
    let rt = runtime();
    rt.block_on(async {
        let t = TestHub::resume(stopped).await;
        let run = sync_cli(&t.addr, &certs, "globex", &out, &[]).await.ok();
        assert!(run.stdout.contains("synced 0 statements"), "{}", run.stdout);
        t.client("acme")
            .await
            .submit(t.hash_set("acme", 9, 2))
            .await
            .expect("submit");
        sync_cli(&t.addr, &certs, "globex", &out, &[]).await.ok();
        sync_cli(&t.addr, &certs, "globex", &fresh, &[]).await.ok();
        same_rows_once(&out, &fresh);
        assert_eq!(rows(&out).len(), 12);
        t.stop().await;
    });
}
