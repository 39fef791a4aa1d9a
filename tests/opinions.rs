//! Opinions, disputes and quarantine end to end over real mutual TLS: members' opinions on
//! other members' entries are tallied per entry and per hash value (a later opinion replaces an
//! earlier one, a withdrawal removes it), an entry with both positive and negative opinions is
//! disputed and still matches, distinct false-positive opinions reaching the coalition's
//! threshold quarantine it (gone from Match unless asked for, and from the member's snapshot),
//! an admin quorum quarantines and releases, the front door refuses what may not be said and
//! stores nothing, an opinion signed with a compromised key has no effect, and a hub that
//! drops an opinion from a member's sync is caught; a member's snapshot keeps the states it
//! asks for and names them.

use crate::common;

use coalition_hub::client::{Client, sign_new};
use coalition_hub::lifecycle::{EntryState, HashKey, Opinion, Target, Verdict};
use coalition_hub::membership::{Action, KeyId, Revocation};
use coalition_hub::pb;
use coalition_hub::statement::{Body, HashType, Indicator, Kind, StatementId};
use coalition_hub::sync::FilterSpec;
use common::hostile::{Bent, HostileHub, export, state, sync_cli};
use common::lifecycle::{
    admit_members, cli, offline_match, refused, retract, set_quarantine_threshold, share,
    share_signal,
};
use common::{TestHub, id, sha256_value};
use tonic::Code;

/// An opinion by `member` on entry `entry` of `target` (a set of sha256 hashes of `seed`).
fn opinion(
    t: &TestHub,
    member: &str,
    target: StatementId,
    seed: u64,
    entry: u32,
    verdict: Verdict,
) -> pb::Envelope {
    sign_new(
        &id(member),
        &t.key(member),
        Body::Opinion(Opinion {
            target,
            entry,
            verdict,
            note: format!("{} by {member}", verdict.name()),
            hash: Some(HashKey {
                hash_type: HashType::Sha256,
                value: sha256_value(seed, entry as u64),
            }),
            admin_quorum: verdict.is_admin(),
        }),
    )
}

/// Submits an opinion (see [`opinion`]), which must be logged.
async fn say(
    t: &TestHub,
    member: &str,
    target: StatementId,
    seed: u64,
    entry: u32,
    verdict: Verdict,
) {
    t.client(member)
        .await
        .submit(opinion(t, member, target, seed, entry, verdict))
        .await
        .expect("opinion logged");
}

/// The matches of sha256 value `i` of `seed`, asking for `states` (empty: the default).
async fn lookup(
    client: &mut Client,
    seed: u64,
    i: u64,
    states: &[EntryState],
) -> Result<Vec<pb::HashMatch>, tonic::Status> {
    let answer = client
        .hub
        .r#match(pb::MatchRequest {
            queries: vec![pb::MatchQuery {
                r#type: HashType::Sha256.to_wire() as i32,
                value: sha256_value(seed, i),
                quality: None,
            }],
            pdq_threshold: None,
            min_quality: None,
            states: states.iter().map(|s| s.to_wire() as i32).collect(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(answer
        .results
        .into_iter()
        .next()
        .map(|r| r.matches)
        .unwrap_or_default())
}

/// The one match of `(seed, i)` from `statement`, with the default states.
async fn the_match(
    client: &mut Client,
    seed: u64,
    i: u64,
    statement: StatementId,
) -> pb::HashMatch {
    let found = lookup(client, seed, i, &[]).await.expect("match");
    found
        .into_iter()
        .find(|m| m.statement_id == statement.0)
        .unwrap_or_else(|| panic!("entry {i} of {statement} should match"))
}

fn tally(confirmed: u32, false_positive: u32, disputed: u32) -> Option<pb::Tally> {
    Some(pb::Tally {
        confirmed,
        false_positive,
        disputed,
    })
}

fn state_of(m: &pb::HashMatch) -> Option<EntryState> {
    EntryState::from_wire(m.state)
}

#[tokio::test]
async fn tallies_follow_replacement_and_withdrawal_per_entry_and_per_hash() {
    let t = TestHub::start().await;
    admit_members(&t, &["initech"]).await;
    let (set, _) = share(&t, "acme", 100, 3).await;
    // initech shares the same first hash value in a set of its own.
    let (copy, _) = share(&t, "initech", 100, 1).await;
    let mut reader = t.client("globex").await;

    say(&t, "globex", set, 100, 0, Verdict::Confirmed).await;
    let m = the_match(&mut reader, 100, 0, set).await;
    assert_eq!(state_of(&m), Some(EntryState::Active));
    assert_eq!((m.entry_tally, m.hash_index), (tally(1, 0, 0), 0));
    // The same value in initech's set: nothing on that entry, one opinion on the hash.
    let m = the_match(&mut reader, 100, 0, copy).await;
    assert_eq!(
        (m.entry_tally, m.hash_tally),
        (tally(0, 0, 0), tally(1, 0, 0))
    );

    // A later opinion replaces the earlier one.
    say(&t, "globex", set, 100, 0, Verdict::FalsePositive).await;
    let m = the_match(&mut reader, 100, 0, set).await;
    assert_eq!(m.entry_tally, tally(0, 1, 0));
    assert_eq!(state_of(&m), Some(EntryState::Active), "one side only");

    // initech confirms: both sides, disputed, still matching, tallies shown. On initech's own
    // copy of the hash its opinion is never counted (never the issuer).
    say(&t, "initech", set, 100, 0, Verdict::Confirmed).await;
    let m = the_match(&mut reader, 100, 0, set).await;
    assert_eq!(state_of(&m), Some(EntryState::Disputed));
    assert_eq!(
        (m.entry_tally, m.hash_tally),
        (tally(1, 1, 0), tally(1, 1, 0))
    );
    let m = the_match(&mut reader, 100, 0, copy).await;
    assert_eq!(m.hash_tally, tally(0, 1, 0));
    // One `disputed` opinion disputes an entry by itself.
    say(&t, "globex", set, 100, 1, Verdict::Disputed).await;
    let m = the_match(&mut reader, 100, 1, set).await;
    assert_eq!(
        (state_of(&m), m.entry_tally),
        (Some(EntryState::Disputed), tally(0, 0, 1))
    );

    // Withdrawals remove the member's opinion.
    say(&t, "globex", set, 100, 0, Verdict::Withdrawn).await;
    say(&t, "globex", set, 100, 1, Verdict::Withdrawn).await;
    let m = the_match(&mut reader, 100, 0, set).await;
    assert_eq!(
        (state_of(&m), m.entry_tally),
        (Some(EntryState::Active), tally(1, 0, 0))
    );
    let m = the_match(&mut reader, 100, 1, set).await;
    assert_eq!(
        (state_of(&m), m.entry_tally),
        (Some(EntryState::Active), tally(0, 0, 0))
    );

    // The member's own replica computes the same.
    let synced = t
        .sync_proven("globex", FilterSpec::default())
        .await
        .expect("sync");
    let registry = synced.replica.registry();
    let issuer = id("acme");
    let target = Target {
        id: set,
        seq: 0,
        issuer: &issuer,
        kind: Kind::HashSet,
    };
    let target = Target {
        seq: t.store.entry_by_id(&set).expect("read").expect("held").seq,
        ..target
    };
    let states = registry.states(&target);
    assert_eq!(states.opinions(0).tally.confirmed, 1);
    assert_eq!(states.opinions(0).tally.false_positive, 0);
    assert_eq!(states.state(0), EntryState::Active);
    assert_eq!(registry.lifecycle().opinion_count(), 6);
}

#[tokio::test]
async fn the_quarantine_threshold_holds_against_colluders_below_it() {
    let t = TestHub::start().await;
    admit_members(&t, &["initech", "umbrella"]).await;
    let (set, _) = share(&t, "acme", 110, 2).await;
    let mut reader = t.client("globex").await;
    let dir = tempfile::tempdir().expect("tmp");
    let certs = t.certs.root().to_path_buf();
    let (out, snap) = (dir.path().join("all.jsonl"), dir.path().join("now.jsonl"));
    let snapshot = [
        "--format",
        "jsonl",
        "--snapshot",
        snap.to_str().expect("utf-8"),
    ];
    let snapshot_rows = |i: u64| {
        let value = hex::encode(sha256_value(110, i));
        std::fs::read_to_string(&snap)
            .expect("snapshot")
            .lines()
            .filter(|l| l.contains(&value))
            .count()
    };

    // Two colluding members of the three needed: it still matches.
    say(&t, "globex", set, 110, 0, Verdict::FalsePositive).await;
    say(&t, "initech", set, 110, 0, Verdict::FalsePositive).await;
    let m = the_match(&mut reader, 110, 0, set).await;
    assert_eq!(
        (state_of(&m), m.entry_tally),
        (Some(EntryState::Active), tally(0, 2, 0))
    );
    sync_cli(&t.addr, &certs, "acme", &out, &snapshot)
        .await
        .ok();
    assert_eq!(snapshot_rows(0), 1);
    // Saying it again changes nothing: one opinion per member.
    say(&t, "initech", set, 110, 0, Verdict::FalsePositive).await;
    assert_eq!(
        the_match(&mut reader, 110, 0, set).await.entry_tally,
        tally(0, 2, 0)
    );

    // The third: quarantined, gone from Match and from the snapshot; the other entry stays.
    say(&t, "umbrella", set, 110, 0, Verdict::FalsePositive).await;
    assert!(
        lookup(&mut reader, 110, 0, &[])
            .await
            .expect("match")
            .is_empty()
    );
    let asked = lookup(&mut reader, 110, 0, &[EntryState::Quarantined])
        .await
        .expect("match");
    assert_eq!(asked.len(), 1);
    assert_eq!(state_of(&asked[0]), Some(EntryState::Quarantined));
    assert_eq!(asked[0].entry_tally, tally(0, 3, 0));
    the_match(&mut reader, 110, 1, set).await;
    let run = sync_cli(&t.addr, &certs, "acme", &out, &snapshot)
        .await
        .ok();
    assert_eq!(snapshot_rows(0), 0, "quarantined: not in the snapshot");
    assert_eq!(snapshot_rows(1), 1);
    assert!(
        run.stderr.contains("your entries: 1 quarantined"),
        "the issuer is told: {}",
        run.stderr
    );
    let events = std::fs::read_to_string(common::hostile::beside(&out, ".events")).expect("events");
    assert!(
        events.lines().any(|l| l.contains("\"to\":\"quarantined\"")
            && l.contains("\"kind\":\"opinion\"")
            && l.contains("\"verdict\":\"false-positive\"")),
        "{events}"
    );
    assert!(
        events.lines().any(|l| l.contains("\"event\":\"removed\"")),
        "{events}"
    );

    // A suspended member no longer counts: released, back in Match.
    t.admin_change(Action::Suspend(id("umbrella")))
        .await
        .expect("suspend");
    the_match(&mut reader, 110, 0, set).await;
    t.admin_change(Action::Reinstate(id("umbrella")))
        .await
        .expect("reinstate");
    assert!(
        lookup(&mut reader, 110, 0, &[])
            .await
            .expect("match")
            .is_empty()
    );

    // A withdrawal releases it, for Match and for the snapshot.
    say(&t, "initech", set, 110, 0, Verdict::Withdrawn).await;
    let m = the_match(&mut reader, 110, 0, set).await;
    assert_eq!(
        (state_of(&m), m.entry_tally),
        (Some(EntryState::Active), tally(0, 2, 0))
    );
    sync_cli(&t.addr, &certs, "acme", &out, &snapshot)
        .await
        .ok();
    assert_eq!(snapshot_rows(0), 1, "released: back in the snapshot");
    let events = std::fs::read_to_string(common::hostile::beside(&out, ".events")).expect("events");
    assert!(
        events
            .lines()
            .any(|l| l.contains("\"from\":\"quarantined\"") && l.contains("\"to\":\"active\"")),
        "{events}"
    );

    // The states option: listed states only; each once, known ones.
    let all = [
        EntryState::Active,
        EntryState::Quarantined,
        EntryState::Retracted,
    ];
    assert_eq!(
        lookup(&mut reader, 110, 0, &all)
            .await
            .expect("match")
            .len(),
        1
    );
    assert!(
        lookup(&mut reader, 110, 0, &[EntryState::Quarantined])
            .await
            .expect("match")
            .is_empty()
    );
    let bad = lookup(
        &mut reader,
        110,
        0,
        &[EntryState::Active, EntryState::Active],
    )
    .await
    .expect_err("a state twice");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("listed twice"), "{}", bad.message());
    let unknown = reader
        .hub
        .r#match(pb::MatchRequest {
            queries: vec![],
            pdq_threshold: None,
            min_quality: None,
            states: vec![0],
            ..Default::default()
        })
        .await
        .expect_err("unspecified state");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown.message().contains("states[0]"),
        "{}",
        unknown.message()
    );
}

/// The rows of `snapshot` (JSON Lines) holding sha256 value `i` of `seed`, parsed.
fn rows_of(snapshot: &std::path::Path, seed: u64, i: u64) -> Vec<serde_json::Value> {
    let value = hex::encode(sha256_value(seed, i));
    std::fs::read_to_string(snapshot)
        .expect("snapshot")
        .lines()
        .filter(|l| l.contains(&value))
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

#[tokio::test]
async fn the_member_snapshot_keeps_the_states_asked_for_and_names_them() {
    let t = TestHub::start().await;
    admit_members(&t, &["initech", "umbrella"]).await;
    let (set, _) = share(&t, "acme", 120, 3).await;
    // Entry 0 quarantined (three false positives), entry 1 active, entry 2 retracted.
    for member in ["globex", "initech", "umbrella"] {
        say(&t, member, set, 120, 0, Verdict::FalsePositive).await;
    }
    retract(&t, "acme", set, &[2], "wrong hash").await;
    // A risk signal with its second indicator retracted.
    let (signal, _) = share_signal(
        &t,
        "acme",
        "script",
        "a sextortion script".into(),
        vec![
            Indicator::Keyword("first-phrase-120".into()),
            Indicator::Keyword("second-phrase-120".into()),
        ],
    )
    .await;
    retract(&t, "acme", signal, &[1], "not a script").await;
    let dir = tempfile::tempdir().expect("tmp");
    let certs = t.certs.root().to_path_buf();
    let (out, snap) = (dir.path().join("all.jsonl"), dir.path().join("now.jsonl"));
    let snap_arg = snap.to_str().expect("utf-8");
    let signal_row = || {
        std::fs::read_to_string(&snap)
            .expect("snapshot")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON row"))
            .find(|r| r["kind"] == "risk_signal")
    };

    // Asked for active and quarantined: those two, each naming its state.
    let review = ["--snapshot", snap_arg, "--states", "active,quarantined"];
    sync_cli(&t.addr, &certs, "globex", &out, &review)
        .await
        .ok();
    let state = |rows: &[serde_json::Value]| {
        rows.iter()
            .map(|r| r["state"].as_str().unwrap_or("none").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(state(&rows_of(&snap, 120, 0)), ["quarantined"]);
    assert_eq!(state(&rows_of(&snap, 120, 1)), ["active"]);
    assert!(
        rows_of(&snap, 120, 2).is_empty(),
        "retracted: not asked for"
    );
    let row = signal_row().expect("the signal's active indicator");
    assert_eq!(row["indicators"].as_array().map(Vec::len), Some(1), "{row}");
    assert_eq!(row["indicator_states"], serde_json::json!(["active"]));
    // Retracted only.
    let retracted = ["--snapshot", snap_arg, "--states", "retracted"];
    sync_cli(&t.addr, &certs, "globex", &out, &retracted)
        .await
        .ok();
    assert!(rows_of(&snap, 120, 0).is_empty());
    assert_eq!(state(&rows_of(&snap, 120, 2)), ["retracted"]);
    let row = signal_row().expect("the signal's retracted indicator");
    assert_eq!(row["indicators"][0]["value"], "second-phrase-120", "{row}");
    assert_eq!(row["indicator_states"], serde_json::json!(["retracted"]));
    // The default again: what matches, rows as written (no state).
    sync_cli(&t.addr, &certs, "globex", &out, &["--snapshot", snap_arg])
        .await
        .ok();
    assert!(rows_of(&snap, 120, 0).is_empty());
    assert_eq!(state(&rows_of(&snap, 120, 1)), ["none"]);
    assert!(rows_of(&snap, 120, 2).is_empty());
    let row = signal_row().expect("the signal's active indicator");
    assert!(row.get("indicator_states").is_none(), "{row}");

    // CSV: a `state` column; an offline match skips the rows that should not match.
    let (csv_out, csv_snap) = (dir.path().join("all.csv"), dir.path().join("now.csv"));
    let csv_args = [
        "--snapshot",
        csv_snap.to_str().expect("utf-8"),
        "--states",
        "quarantined,active",
    ];
    sync_cli(&t.addr, &certs, "globex", &csv_out, &csv_args)
        .await
        .ok();
    let text = std::fs::read_to_string(&csv_snap).expect("csv snapshot");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{},state", coalition_hub::formats::CSV_COLUMNS.join(",")).as_str())
    );
    let states: Vec<&str> = lines.filter_map(|l| l.rsplit(',').next()).collect();
    assert_eq!(states.len(), 2, "{text}");
    assert!(
        states.contains(&"quarantined") && states.contains(&"active"),
        "{text}"
    );
    let queries = dir.path().join("q.csv");
    let query = |i| format!("sha256,{}\n", hex::encode(sha256_value(120, i)));
    std::fs::write(&queries, query(0) + &query(1)).expect("queries");
    let printed = offline_match(&csv_snap, &queries).await;
    assert_eq!(
        printed.lines().count(),
        1,
        "only the active entry: {printed}"
    );
    assert!(
        printed.contains(&hex::encode(sha256_value(120, 1))),
        "{printed}"
    );

    // Refused, one line each: erased (no body), an unknown state, --states without --snapshot.
    for (extra, says) in [
        (
            &["--snapshot", snap_arg, "--states", "erased"][..],
            "bodies are gone",
        ),
        (
            &["--snapshot", snap_arg, "--states", "active,gone"][..],
            "unknown entry state 'gone'",
        ),
    ] {
        let run = sync_cli(&t.addr, &certs, "globex", &out, extra).await;
        assert!(run.failed().contains(says), "{run:?}");
    }
    let run = sync_cli(&t.addr, &certs, "globex", &out, &["--states", "active"]).await;
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("--snapshot"), "{run:?}");
}

#[tokio::test]
async fn an_admin_quorum_quarantines_and_releases() {
    let t = TestHub::start().await;
    let (set, _) = share(&t, "acme", 120, 2).await;
    let mut reader = t.client("globex").await;
    // A member may not speak for the admins.
    refused(
        reader
            .submit(opinion(&t, "globex", set, 120, 1, Verdict::Quarantine))
            .await,
        Code::PermissionDenied,
        "lacks the 'admin' role",
    );
    t.client("admin")
        .await
        .submit(opinion(&t, "admin", set, 120, 1, Verdict::Quarantine))
        .await
        .expect("admin-quorum quarantine");
    assert!(
        lookup(&mut reader, 120, 1, &[])
            .await
            .expect("match")
            .is_empty()
    );
    the_match(&mut reader, 120, 0, set).await;
    // The issuer learns it from its own replica.
    let synced = t
        .sync_proven("acme", FilterSpec::default())
        .await
        .expect("sync");
    let issuer = id("acme");
    let target = Target {
        id: set,
        seq: t.store.entry_by_id(&set).expect("read").expect("held").seq,
        issuer: &issuer,
        kind: Kind::HashSet,
    };
    let states = synced.replica.registry().states(&target);
    assert_eq!(states.state(1), EntryState::Quarantined);
    assert_eq!(states.opinions(1).admin_quarantine, Some(true));

    // Released by the admins; a member's false positive logged before the release no longer
    // counts toward the threshold (here 1), one logged after it does.
    set_quarantine_threshold(&t, 1).await;
    say(&t, "globex", set, 120, 1, Verdict::FalsePositive).await;
    t.client("admin")
        .await
        .submit(opinion(&t, "admin", set, 120, 1, Verdict::Release))
        .await
        .expect("admin-quorum release");
    let m = the_match(&mut reader, 120, 1, set).await;
    assert_eq!(m.entry_tally, tally(0, 1, 0), "still shown in the tally");
    admit_members(&t, &["initech"]).await;
    say(&t, "initech", set, 120, 1, Verdict::FalsePositive).await;
    assert!(
        lookup(&mut reader, 120, 1, &[])
            .await
            .expect("match")
            .is_empty()
    );
}

#[tokio::test]
async fn the_front_door_refuses_what_may_not_be_said_and_stores_nothing() {
    let t = TestHub::start().await;
    let (set, _) = share(&t, "acme", 130, 2).await;
    let admission = t
        .store
        .entry(1)
        .expect("read")
        .expect("an admission")
        .id()
        .expect("id");
    let mut acme = t.client("acme").await;
    let mut globex = t.client("globex").await;
    let size = t.store.log_size();

    refused(
        acme.submit(opinion(&t, "acme", set, 130, 0, Verdict::Confirmed))
            .await,
        Code::FailedPrecondition,
        "was shared by 'acme' itself",
    );
    refused(
        globex
            .submit(opinion(
                &t,
                "globex",
                StatementId([9; 32]),
                130,
                0,
                Verdict::FalsePositive,
            ))
            .await,
        Code::NotFound,
        "no statement",
    );
    refused(
        globex
            .submit(opinion(&t, "globex", set, 130, 2, Verdict::FalsePositive))
            .await,
        Code::NotFound,
        "has 2 entries (0..2); entries 2 do not exist",
    );
    refused(
        globex
            .submit(opinion(
                &t,
                "globex",
                admission,
                130,
                0,
                Verdict::FalsePositive,
            ))
            .await,
        Code::InvalidArgument,
        "only hash sets and risk signals can be judged",
    );
    // The wrong hash copied: entry 1's hash on entry 0.
    let mut wrong = Opinion {
        target: set,
        entry: 0,
        verdict: Verdict::FalsePositive,
        note: String::new(),
        hash: Some(HashKey {
            hash_type: HashType::Sha256,
            value: sha256_value(130, 1),
        }),
        admin_quorum: false,
    };
    refused(
        globex
            .submit(sign_new(
                &id("globex"),
                &t.key("globex"),
                Body::Opinion(wrong.clone()),
            ))
            .await,
        Code::InvalidArgument,
        "opinion.hash_value",
    );
    wrong.hash = None;
    refused(
        globex
            .submit(sign_new(
                &id("globex"),
                &t.key("globex"),
                Body::Opinion(wrong),
            ))
            .await,
        Code::InvalidArgument,
        "not no hash",
    );
    // Malformed: a member verdict flagged admin quorum; a note over 280 characters; a
    // withdrawn verdict with a control character in its note.
    let malformed = |f: &dyn Fn(&mut pb::Opinion)| {
        let mut wire = Opinion {
            target: set,
            entry: 0,
            verdict: Verdict::FalsePositive,
            note: String::new(),
            hash: Some(HashKey {
                hash_type: HashType::Sha256,
                value: sha256_value(130, 0),
            }),
            admin_quorum: false,
        }
        .to_wire();
        f(&mut wire);
        common::sign_wire(
            "globex",
            &pb::StatementBody {
                body: Some(pb::statement_body::Body::Opinion(wire)),
            },
            &t.key("globex"),
        )
    };
    for (f, text) in [
        (
            &(|w: &mut pb::Opinion| w.admin_quorum = true) as &dyn Fn(&mut pb::Opinion),
            "opinion.admin_quorum",
        ),
        (&|w: &mut pb::Opinion| w.note = "x".repeat(281), "0..=280"),
        (&|w: &mut pb::Opinion| w.note = "a\u{1b}b".into(), "control"),
        (&|w: &mut pb::Opinion| w.verdict = 99, "opinion.verdict"),
        (
            &|w: &mut pb::Opinion| w.hash_value.pop().map(drop).unwrap_or(()),
            "opinion.hash_value",
        ),
    ] {
        refused(
            globex.submit(malformed(f)).await,
            Code::InvalidArgument,
            text,
        );
    }
    // In a batch, each refused on its own.
    let outcomes = globex
        .submit_batch(vec![
            opinion(&t, "globex", set, 130, 5, Verdict::Confirmed),
            opinion(&t, "acme", set, 130, 0, Verdict::Confirmed),
        ])
        .await
        .expect("batch");
    let codes: Vec<i32> = outcomes.iter().map(|o| o.code).collect();
    assert_eq!(
        codes,
        [Code::NotFound as i32, Code::PermissionDenied as i32]
    );
    assert_eq!(t.store.log_size(), size, "every refusal stored nothing");
}

#[tokio::test]
async fn an_opinion_signed_by_a_compromised_key_has_no_effect() {
    let t = TestHub::start().await;
    set_quarantine_threshold(&t, 1).await;
    let (set, seq) = share(&t, "acme", 140, 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let logged = t
        .client("globex")
        .await
        .submit(opinion(&t, "globex", set, 140, 0, Verdict::FalsePositive))
        .await
        .expect("opinion")
        .receipt
        .expect("receipt");
    let mut reader = t.client("acme").await;
    assert!(
        lookup(&mut reader, 140, 0, &[])
            .await
            .expect("match")
            .is_empty()
    );
    // A member's copy: quarantined, out of its snapshot.
    let dir = tempfile::tempdir().expect("tmp");
    let certs = t.certs.root().to_path_buf();
    let (out, snap) = (dir.path().join("all.jsonl"), dir.path().join("now.jsonl"));
    let snapshot = ["--snapshot", snap.to_str().expect("utf-8")];
    let in_snapshot = || {
        std::fs::read_to_string(&snap)
            .expect("snapshot")
            .contains(&hex::encode(sha256_value(140, 0)))
    };
    sync_cli(&t.addr, &certs, "acme", &out, &snapshot)
        .await
        .ok();
    assert!(!in_snapshot(), "quarantined");
    // globex's key leaked from the moment its opinion was logged: the opinion is void.
    t.admin_change(Action::RevokeKey {
        member: id("globex"),
        key_id: KeyId::of(&t.key("globex").verifying_key()),
        revocation: Revocation::Compromised {
            compromised_at_ms: logged.received_at_ms,
        },
    })
    .await
    .expect("revoke as compromised");
    let m = the_match(&mut reader, 140, 0, set).await;
    assert_eq!(
        (state_of(&m), m.entry_tally),
        (Some(EntryState::Active), tally(0, 0, 0))
    );
    let synced = t
        .sync_proven("acme", FilterSpec::default())
        .await
        .expect("sync");
    let issuer = id("acme");
    let target = Target {
        id: set,
        seq,
        issuer: &issuer,
        kind: Kind::HashSet,
    };
    assert_eq!(
        synced.replica.registry().entry_state(&target, 0),
        EntryState::Active
    );
    // The member's next sync says so and puts the entry back in its snapshot.
    sync_cli(&t.addr, &certs, "acme", &out, &snapshot)
        .await
        .ok();
    assert!(in_snapshot(), "released by the compromise");
    let events = std::fs::read_to_string(common::hostile::beside(&out, ".events")).expect("events");
    assert!(
        events
            .lines()
            .any(|l| l.contains("\"from\":\"quarantined\"")
                && l.contains("\"to\":\"active\"")
                && l.contains("\"kind\":\"governance\"")),
        "{events}"
    );
    assert!(
        events.lines().any(|l| l.contains("\"event\":\"restored\"")),
        "{events}"
    );
}

#[tokio::test]
async fn a_hub_that_drops_or_withholds_an_opinion_is_caught() {
    use pb::sync_response::Item;
    let t = TestHub::start().await;
    set_quarantine_threshold(&t, 1).await;
    let (set, _) = share(&t, "acme", 150, 2).await;
    let logged = t
        .client("globex")
        .await
        .submit(opinion(&t, "globex", set, 150, 0, Verdict::FalsePositive))
        .await
        .expect("opinion")
        .receipt
        .expect("receipt");
    let exported = export(&t).await;
    let certs = t.certs.root().to_path_buf();
    let dir = tempfile::tempdir().expect("tmp");
    let gone = logged.seq;

    // Dropped from the stream, so the quarantine would not be seen: the hole is caught.
    let dropping = Bent::faithful(exported.entries.clone(), exported.members.clone()).lying(
        move |_, messages| {
            messages.retain(|m| !matches!(&m.item, Some(Item::Entry(e)) if e.seq == gone));
        },
    );
    let hostile = HostileHub::serve(&t, dropping).await;
    let out = dir.path().join("dropped.jsonl");
    let line = sync_cli(&hostile.addr, &certs, "acme", &out, &[])
        .await
        .failed()
        .to_owned();
    assert!(line.contains("verification FAILED"), "{line}");
    assert!(state(&out)[1].is_empty(), "no cursor saved past the hole");

    // Its body withheld as if outside the member's filter: opinions go to everyone whole.
    let withholding = Bent::faithful(exported.entries.clone(), exported.members.clone()).lying(
        move |_, messages| {
            for m in messages {
                if let Some(Item::Entry(e)) = &mut m.item
                    && e.seq == gone
                    && let Some(envelope) = &mut e.envelope
                {
                    envelope.body = Default::default();
                }
            }
        },
    );
    let hostile = HostileHub::serve(&t, withholding).await;
    let out = dir.path().join("withheld.jsonl");
    let run = sync_cli(&hostile.addr, &certs, "acme", &out, &["--kind", "hash_set"]).await;
    let line = run.failed();
    assert!(line.contains("opinion"), "{line}");
    assert!(
        state(&out)[1].is_empty(),
        "no cursor saved past the withheld opinion"
    );

    // The honest hub: the member's snapshot leaves the quarantined entry out.
    let out = dir.path().join("honest.jsonl");
    let snap = dir.path().join("now.jsonl");
    sync_cli(
        &t.addr,
        &certs,
        "acme",
        &out,
        &[
            "--format",
            "jsonl",
            "--snapshot",
            snap.to_str().expect("utf-8"),
        ],
    )
    .await
    .ok();
    let kept = std::fs::read_to_string(&snap).expect("snapshot");
    assert!(!kept.contains(&hex::encode(sha256_value(150, 0))), "{kept}");
    assert!(kept.contains(&hex::encode(sha256_value(150, 1))), "{kept}");
}

#[tokio::test]
async fn the_cli_gives_opinions_sets_the_threshold_quarantines_and_shows_it() {
    let t = TestHub::start().await;
    let (set, _) = share(&t, "acme", 160, 3).await;
    let set_hex = set.to_string();
    // The threshold through `coalition admin settings lifecycle` (quorum 1).
    let out = cli(
        &t,
        "admin",
        &[
            "admin",
            "settings",
            "lifecycle",
            "--quarantine-threshold",
            "1",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let out = cli(&t, "admin", &["admin", "settings", "show"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("lifecycle: 1 distinct false-positive opinions quarantine an entry"),
        "{out:?}"
    );
    let out = cli(
        &t,
        "admin",
        &[
            "admin",
            "settings",
            "lifecycle",
            "--quarantine-threshold",
            "0",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1..=1000"),
        "{out:?}"
    );

    // globex reports entry 1 as a false positive: quarantined at once.
    let out = cli(
        &t,
        "globex",
        &[
            "opinion",
            &set_hex,
            "--entry",
            "1",
            "false-positive",
            "--note",
            "a cat photo",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("false-positive entry 1 of statement"),
        "{out:?}"
    );
    let mut reader = t.client("globex").await;
    assert!(
        lookup(&mut reader, 160, 1, &[])
            .await
            .expect("match")
            .is_empty()
    );
    // The issuer's own entry: refused, one line, exit 1.
    let out = cli(
        &t,
        "acme",
        &["opinion", &set_hex, "--entry", "0", "confirmed"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = String::from_utf8_lossy(&out.stderr);
    assert_eq!(line.trim_end().lines().count(), 1, "{line}");
    assert!(line.contains("itself"), "{line}");
    // An entry the statement does not have: refused before anything is sent.
    let out = cli(
        &t,
        "globex",
        &["opinion", &set_hex, "--entry", "9", "confirmed"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("entry 9 does not exist"),
        "{out:?}"
    );

    // An admin quorum releases it through `coalition admin release` ...
    let out = cli(&t, "admin", &["admin", "release", &set_hex, "--entry", "1"]).await;
    assert!(out.status.success(), "{out:?}");
    the_match(&mut reader, 160, 1, set).await;
    // ... and quarantines entry 2 with `coalition admin quarantine`.
    let out = cli(
        &t,
        "admin",
        &[
            "admin",
            "quarantine",
            &set_hex,
            "--entry",
            "2",
            "--note",
            "court order",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        lookup(&mut reader, 160, 2, &[])
            .await
            .expect("match")
            .is_empty()
    );

    // `coalition show` from acme's own verified sync state: states, tallies, opinions.
    let dir = tempfile::tempdir().expect("tmp");
    let synced = dir.path().join("acme.jsonl");
    sync_cli(&t.addr, t.certs.root(), "acme", &synced, &[])
        .await
        .ok();
    let out = cli(
        &t,
        "acme",
        &[
            "show",
            &set_hex,
            "--synced",
            synced.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("entries: 3, 2 active, 1 quarantined"),
        "{shown}"
    );
    assert!(
        shown.contains("entry 1: active; opinions on it: 0 confirmed, 1 false positive, 0 disputed (released by admin quorum)"),
        "{shown}"
    );
    assert!(shown.contains("entry 2: quarantined"), "{shown}");
    assert!(
        shown.contains("by 'globex': entry 1 false-positive; note \"a cat photo\"; applies"),
        "{shown}"
    );
    assert!(
        shown.contains("(admin quorum): entry 2 quarantine"),
        "{shown}"
    );
}
