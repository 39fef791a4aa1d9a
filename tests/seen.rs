//! `seen` opinions ("it matched on my platform") end to end over real mutual TLS: restricted
//! to the entry's issuer by default, so the issuer, the reporter and auditors read them and
//! count them (Match, `coalition show`), while a third member's sync verifies the withheld
//! body and learns nothing of the target; `--public` and `--recipient` widen them, `withdraw
//! --seen` withdraws them; the front door refuses what may not be said and stores nothing; a
//! hub withholding an opinion body a member may read is caught. Also `coalition match --hub`
//! with states, tallies and `--states`, and one entry index space for risk signals.

use crate::common;

use coalition_hub::client::{Client, sign_new_for};
use coalition_hub::lifecycle::{EntryState, HashKey, Opinion, Target, Verdict};
use coalition_hub::pb;
use coalition_hub::statement::{
    Body, HashEntry, HashType, Indicator, Kind, ParsedEnvelope, Reader, Recipients, StatementId,
};
use coalition_hub::sync::FilterSpec;
use common::hostile::{Bent, HostileHub, export, state, sync_cli};
use common::lifecycle::{
    admit_members, cli, matches_in, refused, set_quarantine_threshold, share, share_signal,
};
use common::{TestHub, id, sha256_value};
use tonic::Code;

/// An opinion by `member` on entry `entry` of `target` (a set of sha256 hashes of `seed`),
/// readable by `to` (empty: everyone).
fn opinion_to(
    t: &TestHub,
    member: &str,
    target: StatementId,
    seed: u64,
    entry: u32,
    verdict: Verdict,
    to: &[&str],
) -> pb::Envelope {
    let recipients =
        Recipients::from_members(to.iter().map(|m| id(m)).collect(), &id(member)).expect("to");
    sign_new_for(
        &id(member),
        &t.key(member),
        Body::Opinion(Opinion {
            target,
            entry,
            verdict,
            note: String::new(),
            hash: Some(HashKey {
                hash_type: HashType::Sha256,
                value: sha256_value(seed, entry as u64),
            }),
            admin_quorum: false,
        }),
        &recipients,
    )
}

/// Submits an opinion (see [`opinion_to`]), which must be logged; its statement id and seq.
async fn say(
    t: &TestHub,
    member: &str,
    target: StatementId,
    seed: u64,
    entry: u32,
    verdict: Verdict,
    to: &[&str],
) -> (StatementId, u64) {
    let receipt = t
        .client(member)
        .await
        .submit(opinion_to(t, member, target, seed, entry, verdict, to))
        .await
        .expect("opinion logged")
        .receipt
        .expect("receipt");
    (
        StatementId::from_slice(&receipt.statement_id).expect("id"),
        receipt.seq,
    )
}

/// `(entry_seen, hash_seen, state)` of the match of `(seed, i)` from `set`, as `member` asks.
async fn seen_by(
    t: &TestHub,
    member: &str,
    seed: u64,
    i: u64,
    set: StatementId,
) -> (u32, u32, EntryState) {
    let mut client = t.client(member).await;
    let found = matches_in(&mut client, seed, i, &[]).await;
    let m = found
        .into_iter()
        .find(|m| m.statement_id == set.0)
        .unwrap_or_else(|| panic!("{member}: entry {i} of {set} should match"));
    (
        m.entry_seen,
        m.hash_seen,
        EntryState::from_wire(m.state).expect("state"),
    )
}

/// The statement as `member` gets it from `GetStatement`: whether its body came, and the
/// recipients its header names.
async fn get(client: &mut Client, statement: StatementId) -> (bool, Vec<String>) {
    let entry = client
        .hub
        .get_statement(pb::GetStatementRequest {
            statement_id: statement.0.to_vec(),
        })
        .await
        .expect("get statement")
        .into_inner();
    let envelope = entry.envelope.expect("envelope");
    let has_body = !envelope.body.is_empty();
    let parsed = ParsedEnvelope::parse(envelope).expect("parses");
    (has_body, parsed.header.recipients.to_wire())
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn seen_is_read_by_the_issuer_the_reporter_and_auditors_only() {
    let t = TestHub::start().await;
    admit_members(&t, &["initech"]).await;
    let (set, set_seq) = share(&t, "acme", 300, 2).await;
    let set_hex = set.to_string();

    // globex reports a match through the CLI: restricted to acme by default.
    let out = cli(&t, "globex", &["opinion", &set_hex, "--entry", "0", "seen"]).await;
    assert!(out.status.success(), "{out:?}");
    let said = stdout(&out);
    assert!(said.contains("seen entry 0"), "{said}");
    assert!(said.contains("readable by acme (and auditors)"), "{said}");
    let opinion_id = {
        let hex = said
            .split("(statement ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .expect("statement id printed");
        StatementId::from_hex(hex).expect("hex id")
    };

    // GetStatement: the header names acme, and only the readers get the body.
    for (member, reads) in [
        ("acme", true),
        ("globex", true),
        ("auditor", true),
        ("initech", false),
    ] {
        let (has_body, recipients) = get(&mut t.client(member).await, opinion_id).await;
        assert_eq!(has_body, reads, "{member}");
        assert_eq!(
            recipients,
            ["acme"],
            "{member}: the header names the recipients"
        );
    }

    // Match: the count for those who read it; nothing for the others; the state unchanged.
    for (member, count) in [("acme", 1), ("globex", 1), ("auditor", 1), ("initech", 0)] {
        assert_eq!(
            seen_by(&t, member, 300, 0, set).await,
            (count, count, EntryState::Active),
            "{member}"
        );
    }
    assert_eq!(seen_by(&t, "acme", 300, 1, set).await.0, 0, "another entry");

    // A third member's sync verifies the withheld opinion and holds no seen count.
    let issuer = id("acme");
    let target = Target {
        id: set,
        seq: set_seq,
        issuer: &issuer,
        kind: Kind::HashSet,
    };
    let third = t
        .sync_proven("initech", FilterSpec::default())
        .await
        .expect("initech's sync verifies");
    assert_eq!(
        third
            .replica
            .registry()
            .seen(&target, 0, &Reader::Everything),
        0
    );
    assert!(
        third
            .replica
            .registry()
            .lifecycle()
            .opinions_of(&set)
            .is_empty(),
        "initech learns nothing of the target"
    );
    let issuers = t
        .sync_proven("acme", FilterSpec::default())
        .await
        .expect("acme's sync");
    assert_eq!(
        issuers
            .replica
            .registry()
            .seen(&target, 0, &Reader::Everything),
        1
    );
    assert_eq!(
        issuers.replica.registry().entry_state(&target, 0),
        EntryState::Active,
        "seen never changes a state"
    );

    // `coalition show`: the count for acme; no trace of it for initech.
    let dir = tempfile::tempdir().expect("tmp");
    let certs = t.certs.root().to_path_buf();
    for (member, reads) in [("acme", true), ("initech", false)] {
        let out_file = dir.path().join(format!("{member}.jsonl"));
        sync_cli(&t.addr, &certs, member, &out_file, &[]).await.ok();
        let out = cli(
            &t,
            member,
            &[
                "show",
                &set_hex,
                "--synced",
                out_file.to_str().expect("utf-8"),
            ],
        )
        .await;
        assert!(out.status.success(), "{member}: {out:?}");
        let shown = stdout(&out);
        if reads {
            assert!(shown.contains("entry 0: active"), "{shown}");
            assert!(shown.contains("seen by 1"), "{shown}");
            assert!(shown.contains("seen track, readable by acme"), "{shown}");
        } else {
            assert!(!shown.contains("seen"), "{member} learns nothing: {shown}");
            assert!(
                !shown.contains("globex"),
                "{member} learns nothing: {shown}"
            );
        }
    }

    // initech reports its own match to everyone: every member reads that one.
    let out = cli(
        &t,
        "initech",
        &["opinion", &set_hex, "--entry", "0", "seen", "--public"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(seen_by(&t, "acme", 300, 0, set).await.0, 2);
    assert_eq!(seen_by(&t, "initech", 300, 0, set).await.0, 1);
    assert_eq!(
        seen_by(&t, "globex", 300, 0, set).await.0,
        2,
        "its own and the public one"
    );

    // globex withdraws its seen (restricted like the seen itself).
    let out = cli(
        &t,
        "globex",
        &["opinion", &set_hex, "--entry", "0", "withdraw", "--seen"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("withdraw seen on entry 0"), "{out:?}");
    assert_eq!(
        seen_by(&t, "acme", 300, 0, set).await,
        (1, 1, EntryState::Active)
    );
    assert_eq!(seen_by(&t, "auditor", 300, 0, set).await.0, 1);

    // A seen shared with a named member too: that member reads it.
    say(
        &t,
        "globex",
        set,
        300,
        1,
        Verdict::Seen,
        &["acme", "initech"],
    )
    .await;
    assert_eq!(seen_by(&t, "initech", 300, 1, set).await.0, 1);
    let synced = t
        .sync_proven("initech", FilterSpec::default())
        .await
        .expect("initech's sync");
    assert_eq!(
        synced
            .replica
            .registry()
            .seen(&target, 1, &Reader::Everything),
        1
    );
}

#[tokio::test]
async fn the_front_door_refuses_what_a_seen_may_not_be_and_stores_nothing() {
    let t = TestHub::start().await;
    admit_members(&t, &["initech"]).await;
    let (set, _) = share(&t, "acme", 310, 2).await;
    let size = t.store.log_size();
    let cases: Vec<(&str, &str, pb::Envelope, Code, &str)> = vec![
        (
            "not to the entry's issuer",
            "globex",
            opinion_to(&t, "globex", set, 310, 0, Verdict::Seen, &["initech"]),
            Code::InvalidArgument,
            "must name the entry's issuer 'acme' among its recipients",
        ),
        (
            "a restricted confirmed",
            "globex",
            opinion_to(&t, "globex", set, 310, 0, Verdict::Confirmed, &["acme"]),
            Code::InvalidArgument,
            "a confirmed opinion cannot be restricted",
        ),
        (
            "unknown target",
            "globex",
            opinion_to(
                &t,
                "globex",
                StatementId([9; 32]),
                310,
                0,
                Verdict::Seen,
                &["acme"],
            ),
            Code::NotFound,
            "no statement",
        ),
        (
            "unknown entry",
            "globex",
            opinion_to(&t, "globex", set, 310, 7, Verdict::Seen, &["acme"]),
            Code::NotFound,
            "entries 7 do not exist",
        ),
        (
            "own entry",
            "acme",
            opinion_to(&t, "acme", set, 310, 0, Verdict::Seen, &[]),
            Code::FailedPrecondition,
            "was shared by 'acme' itself",
        ),
    ];
    for (case, member, envelope, code, text) in cases {
        let result = t.client(member).await.submit(envelope).await;
        refused(result, code, text);
        assert_eq!(t.store.log_size(), size, "{case}: nothing stored");
    }
    // A seen restricted to a non-member: the recipients rule names it.
    let result = t
        .client("globex")
        .await
        .submit(opinion_to(
            &t,
            "globex",
            set,
            310,
            0,
            Verdict::Seen,
            &["acme", "ghost"],
        ))
        .await;
    refused(result, Code::InvalidArgument, "ghost");
    assert_eq!(t.store.log_size(), size, "nothing stored");
    // The CLI: --public and --recipient only with seen; --seen only with withdraw.
    let set_hex = set.to_string();
    for args in [
        vec!["opinion", &set_hex, "--entry", "0", "confirmed", "--public"],
        vec![
            "opinion",
            &set_hex,
            "--entry",
            "0",
            "disputed",
            "--recipient",
            "initech",
        ],
        vec!["opinion", &set_hex, "--entry", "0", "seen", "--seen"],
    ] {
        let out = cli(&t, "globex", &args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    }
    assert_eq!(t.store.log_size(), size, "nothing stored");
}

#[tokio::test]
async fn a_hub_withholding_an_opinion_body_its_reader_may_read_is_caught() {
    use pb::sync_response::Item;
    let t = TestHub::start().await;
    admit_members(&t, &["initech"]).await;
    let (set, _) = share(&t, "acme", 320, 2).await;
    let (_, seen_seq) = say(&t, "globex", set, 320, 0, Verdict::Seen, &["acme"]).await;
    let (_, open_seq) = say(&t, "globex", set, 320, 1, Verdict::Confirmed, &[]).await;
    let exported = export(&t).await;
    let certs = t.certs.root().to_path_buf();
    let dir = tempfile::tempdir().expect("tmp");
    let strip = |gone: u64| {
        move |_: &pb::SyncRequest, messages: &mut Vec<pb::SyncResponse>| {
            for m in messages {
                if let Some(Item::Entry(e)) = &mut m.item
                    && e.seq == gone
                    && let Some(envelope) = &mut e.envelope
                {
                    envelope.body = Default::default();
                }
            }
        }
    };
    // (case, entry withheld, member syncing, caught)
    let cases = [
        (
            "an unrestricted opinion, from anyone",
            open_seq,
            "initech",
            true,
        ),
        ("a seen, from the entry's issuer", seen_seq, "acme", true),
        ("a seen, from the reporter itself", seen_seq, "globex", true),
        (
            "a seen, from a third member: what an honest hub does",
            seen_seq,
            "initech",
            false,
        ),
    ];
    for (case, gone, member, caught) in cases {
        let bent =
            Bent::faithful(exported.entries.clone(), exported.members.clone()).lying(strip(gone));
        let hostile = HostileHub::serve(&t, bent).await;
        let out = dir.path().join(format!("{member}-{gone}.jsonl"));
        let run = sync_cli(&hostile.addr, &certs, member, &out, &["--kind", "hash_set"]).await;
        if caught {
            let line = run.failed();
            assert!(line.contains("verification FAILED"), "{case}: {line}");
            assert!(state(&out)[1].is_empty(), "{case}: no cursor saved");
        } else {
            run.ok();
        }
    }
}

/// Writes sha256 queries for entries `entries` of `seed` as JSON lines; the file's path.
fn queries(dir: &std::path::Path, seed: u64, entries: &[u64]) -> std::path::PathBuf {
    let path = dir.join(format!("queries-{seed}.jsonl"));
    let lines: Vec<String> = entries
        .iter()
        .map(|i| {
            format!(
                "{{\"type\":\"sha256\",\"hash\":\"{}\"}}",
                hex::encode(sha256_value(seed, *i))
            )
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("queries");
    path
}

/// The JSON lines of a `coalition match` run.
fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn match_at_the_hub_prints_states_tallies_and_seen_and_filters_by_state() {
    let t = TestHub::start().await;
    admit_members(&t, &["initech"]).await;
    set_quarantine_threshold(&t, 1).await;
    let (set, _) = share(&t, "acme", 330, 3).await;
    say(&t, "globex", set, 330, 0, Verdict::Confirmed, &[]).await;
    say(&t, "globex", set, 330, 0, Verdict::Seen, &["acme"]).await;
    say(&t, "initech", set, 330, 1, Verdict::FalsePositive, &[]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let q = queries(dir.path(), 330, &[0, 1, 2]);
    let q = q.to_str().expect("utf-8");

    // The default: what matches, each with its state, entry index, tallies and seen count.
    let out = cli(&t, "acme", &["match", "--queries", q]).await;
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "entry 1 is quarantined: {lines:?}");
    let first = &lines[0];
    assert_eq!(first["state"], "active");
    assert_eq!(first["source"]["entry"], 0);
    assert_eq!(first["entry_tally"]["confirmed"], 1);
    assert_eq!(first["entry_tally"]["seen"], 1);
    assert_eq!(first["hash_tally"]["seen"], 1);
    assert_eq!(lines[1]["source"]["entry"], 2);
    assert_eq!(lines[1]["entry_tally"]["confirmed"], 0);

    // A third member sees the same states and tallies, but no seen count.
    let out = cli(&t, "initech", &["match", "--queries", q]).await;
    let lines = json_lines(&out);
    assert_eq!(lines[0]["entry_tally"]["confirmed"], 1);
    assert_eq!(lines[0]["entry_tally"]["seen"], 0);
    assert_eq!(lines[0]["hash_tally"]["seen"], 0);

    // --states: only the quarantined entry, with its tally.
    let out = cli(
        &t,
        "acme",
        &["match", "--queries", q, "--states", "quarantined"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["state"], "quarantined");
    assert_eq!(lines[0]["source"]["entry"], 1);
    assert_eq!(lines[0]["entry_tally"]["false_positive"], 1);
    let out = cli(
        &t,
        "acme",
        &["match", "--queries", q, "--states", "active,quarantined"],
    )
    .await;
    assert_eq!(json_lines(&out).len(), 3);

    // CSV: the same columns.
    let out = cli(&t, "acme", &["match", "--queries", q, "--format", "csv"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let mut rows = text.lines();
    let header = rows.next().expect("header");
    assert!(
        header.ends_with(
            "index_line,entry,state,confirmed,false_positive,disputed,seen,hash_confirmed,hash_false_positive,hash_disputed,hash_seen,vpdq_query_percent,vpdq_compared_percent"
        ),
        "{header}"
    );
    assert!(
        rows.next()
            .expect("row")
            .ends_with(",,0,active,1,0,0,1,1,0,0,1,,"),
        "{text}"
    );

    // A bad state name: one line, exit 1, nothing asked.
    for bad in ["active,gone", "Active\u{1b}[31m"] {
        let out = cli(&t, "acme", &["match", "--queries", q, "--states", bad]).await;
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("--states: unknown entry state"), "{err}");
        assert!(
            err.contains("expected erased, retracted, compromised"),
            "{err}"
        );
        assert!(!err.contains('\u{1b}'), "control characters escaped: {err}");
    }
}

#[tokio::test]
async fn a_risk_signal_entry_is_its_indicator_index_in_match_and_opinions() {
    let t = TestHub::start().await;
    let hash = |i| {
        Indicator::Hash(HashEntry {
            hash_type: HashType::Sha256,
            value: sha256_value(340, i),
            quality: None,
            labels: vec![],
        })
    };
    let (signal_id, _) = share_signal(
        &t,
        "acme",
        "Gift-card script",
        String::new(),
        vec![
            Indicator::Keyword("model scout".into()),
            hash(0),
            Indicator::Domain("scout.example".into()),
            hash(1),
        ],
    )
    .await;
    let mut globex = t.client("globex").await;
    // Match names each hash by its indicator index.
    for (i, indicator) in [(0, 1), (1, 3)] {
        let found = matches_in(&mut globex, 340, i, &[]).await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].hash_index, indicator, "hash {i}");
    }
    // The CLI's opinion on that index copies that hash, and Match counts it there.
    let out = cli(
        &t,
        "globex",
        &[
            "opinion",
            &signal_id.to_string(),
            "--entry",
            "3",
            "confirmed",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let found = matches_in(&mut globex, 340, 1, &[]).await;
    assert_eq!(found[0].hash_index, 3);
    assert_eq!(found[0].entry_tally.as_ref().map(|t| t.confirmed), Some(1));
    let other = matches_in(&mut globex, 340, 0, &[]).await;
    assert_eq!(other[0].entry_tally.as_ref().map(|t| t.confirmed), Some(0));
    // An opinion on a non-hash indicator copies no hash and is counted on its own entry.
    let out = cli(
        &t,
        "globex",
        &[
            "opinion",
            &signal_id.to_string(),
            "--entry",
            "2",
            "disputed",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let found = matches_in(&mut globex, 340, 1, &[]).await;
    assert_eq!(
        EntryState::from_wire(found[0].state),
        Some(EntryState::Active),
        "indicator 2's dispute is not hash 1's"
    );
}
