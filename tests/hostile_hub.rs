//! A hostile hub against the real `coalition sync`.
//!
//! The hostile operator holds the honest hub's TLS certificate and checkpoint key, but no
//! member's signing key (except one that leaked and was revoked as compromised). It serves a
//! bent copy of the honest log over the real protocol, checkpoints re-signed with the hub's key
//! over the bent log, to a member who already synced and proved the honest log once. Every
//! attack either makes the sync refuse — exit 1, one line naming the entry (or checkpoint) and
//! the reason, no row of the bad batch written, the cursor still at the last proven entry — or
//! cannot reach the member at all, which the case shows by the output being exactly the honest
//! one. Afterwards a sync against the honest hub into the same files ends with exactly the
//! honest log's rows, each once.

use crate::common;

use coalition_hub::client::sign_new;
use coalition_hub::governance;
use coalition_hub::log::{MemoryTree, TreeSize, root};
use coalition_hub::membership::{Action, KeyId, Revocation};
use coalition_hub::pb;
use coalition_hub::pb::sync_response::Item;
use coalition_hub::statement::{Body, HashEntry, HashSet, HashType, Label, StatementId};
use common::hostile::{
    Bent, Export, HostileHub, copy_state, cursor, entry_of, export, renumbered, state, sync_cli,
};
use common::{TestHub, id, sha256_set, sha256_value};
use ed25519_dalek::SigningKey;
use std::path::Path;
use tempfile::TempDir;

/// Who syncs.
const MEMBER: &str = "acme";

/// Entries the honest hub logs after the member's first sync, in this order (offsets from the
/// first sync's size): acme sha256, acme md5, globex (new key) sha256, acme sha256.
const TAIL: u64 = 4;

/// The two outputs each case may attack: unfiltered CSV, and JSON Lines filtered to md5.
#[derive(Clone, Copy, Debug)]
enum Out {
    All,
    Md5,
}

impl Out {
    fn file(self) -> &'static str {
        match self {
            Out::All => "all.csv",
            Out::Md5 => "md5.jsonl",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Out::All => &[],
            Out::Md5 => &["--hash-type", "md5"],
        }
    }
}

/// What the member's sync must do against the hostile hub.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exit 1 with one line naming `at` and saying `reason`; nothing written.
    Refused { at: At, reason: &'static str },
    /// Exit non-zero saying the server is behind; nothing written.
    Behind,
    /// Exit 3 (retry later or elsewhere) with one line saying `reason`; nothing written.
    RetryLater { reason: &'static str },
    /// The lie does not reach the member: the sync succeeds with exactly the honest rows.
    Unaffected,
}

/// What a refusal names.
#[derive(Clone, Copy, Debug)]
enum At {
    /// The entry at this offset from the last proven entry + 1.
    Entry(u64),
    /// A checkpoint.
    Checkpoint,
}

struct Case {
    attack: &'static str,
    out: Out,
    bend: fn(&Honest) -> Bent,
    expect: Expect,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_of_a_hostile_hub_is_refused_or_harmless() {
    use At::*;
    use Expect::*;
    use Out::*;
    let cases = [
        Case {
            attack: "a key added to acme only in ListMembers signs a set",
            out: All,
            bend: forged_key_in_directory,
            expect: Refused {
                at: Entry(1),
                reason: "not entitled here",
            },
        },
        Case {
            attack: "an admin key only in ListMembers admits a key",
            out: All,
            bend: forged_admin_in_directory,
            expect: Refused {
                at: Entry(1),
                reason: "not entitled here",
            },
        },
        Case {
            attack: "an entry left out of an unfiltered sync",
            out: All,
            bend: entry_left_out,
            expect: Refused {
                at: Entry(1),
                reason: "missing: the next entry present is",
            },
        },
        Case {
            attack: "a fork before the saved checkpoint, served after it",
            out: All,
            bend: fork,
            expect: Refused {
                at: Checkpoint,
                reason: "history was rewritten",
            },
        },
        Case {
            attack: "a newline inside compromised_key_ids",
            out: All,
            bend: newline_in_compromised_key_ids,
            expect: Unaffected,
        },
        Case {
            attack: "Progress{next_seq: 10^12}",
            out: All,
            bend: progress_far_ahead,
            expect: Refused {
                at: Entry(TAIL),
                reason: "the hub says it sent every entry below 1000000000000",
            },
        },
        Case {
            attack: "a leaked key signs after its compromise revocation, receipt back-dated",
            out: All,
            bend: leaked_key_back_dated,
            expect: Refused {
                at: Entry(1),
                reason: "receipt times never go backwards",
            },
        },
        Case {
            attack: "a leaked key signs after its compromise revocation, receipt not back-dated",
            out: All,
            bend: leaked_key_after_revocation,
            expect: Refused {
                at: Entry(1),
                reason: "was revoked as compromised at log entry",
            },
        },
        Case {
            attack: "a filtered sync withholds the body of a selected entry",
            out: Md5,
            bend: selected_body_withheld,
            expect: Refused {
                at: Entry(1),
                reason: "the hub is withholding a selected statement",
            },
        },
        Case {
            attack: "the hub lost entries (serves a shorter log)",
            out: All,
            bend: lost_entries,
            expect: Behind,
        },
        Case {
            attack: "a forked hub says it is behind",
            out: All,
            bend: fork_said_behind,
            expect: Refused {
                at: Checkpoint,
                reason: "are not the first",
            },
        },
        Case {
            attack: "a statement logged twice",
            out: All,
            bend: replayed,
            expect: Refused {
                at: Entry(1),
                reason: "was logged already, at entry",
            },
        },
        Case {
            attack: "terminal control characters in an error message",
            out: All,
            bend: control_characters_in_status,
            expect: RetryLater {
                reason: "the hub is unavailable (\\u{1b}[2J",
            },
        },
        Case {
            attack: "the hub streams entries no checkpoint covers",
            out: All,
            bend: never_proven,
            expect: Behind,
        },
    ];
    let h = honest().await;
    for case in &cases {
        check(&h, case).await;
    }
}

/// Runs one case: the member's state after its first honest sync, the hostile hub, then the
/// honest hub again.
async fn check(h: &Honest, case: &Case) {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join(case.out.file());
    copy_state(&h.first.path().join(case.out.file()), &out);
    let before = state(&out);
    let hostile = HostileHub::serve(&h.t, (case.bend)(h)).await;
    let run = sync_cli(&hostile.addr, h.certs(), MEMBER, &out, case.out.args()).await;
    drop(hostile);
    let attack = case.attack;
    match case.expect {
        Expect::Refused { at, reason } => {
            assert_eq!(run.code, Some(1), "{attack}: {run:?}");
            let line = run.failed();
            let at = match at {
                At::Entry(offset) => format!("at entry {}:", h.proven + offset),
                At::Checkpoint => "at checkpoint of size".to_string(),
            };
            assert!(
                line.contains("verification FAILED") && line.contains(&at),
                "{attack}: names {at}: {line}"
            );
            assert!(line.contains(reason), "{attack}: says {reason:?}: {line}");
            eprintln!("{attack}: refused: {line}");
        }
        Expect::Behind => {
            // Exit code 3 for "behind" is being added; until then any failure.
            let line = run.failed();
            assert!(line.contains("behind"), "{attack}: {line}");
            assert!(line.contains("nothing was written"), "{attack}: {line}");
            eprintln!("{attack}: behind (exit {:?}): {line}", run.code);
        }
        Expect::RetryLater { reason } => {
            assert_eq!(run.code, Some(3), "{attack}: {run:?}");
            let line = run.failed();
            assert!(line.contains(reason), "{attack}: says {reason:?}: {line}");
            eprintln!("{attack}: retry later: {line}");
        }
        Expect::Unaffected => {
            let run = run.ok();
            assert_eq!(
                std::fs::read(&out).expect("output"),
                h.fresh(case.out),
                "{attack}: exactly the honest rows"
            );
            eprintln!("{attack}: unaffected: {}", run.stdout.trim());
        }
    }
    if !matches!(case.expect, Expect::Unaffected) {
        assert!(
            state(&out) == before,
            "{attack}: no row written, the cursor and ids file untouched"
        );
        assert_eq!(cursor(&out).replica.size, h.proven, "{attack}: cursor");
    }
    // The honest hub: the same files end with exactly the honest log's rows, each once.
    sync_cli(&h.t.addr, h.certs(), MEMBER, &out, case.out.args())
        .await
        .ok();
    let rows = std::fs::read(&out).expect("output");
    assert_eq!(rows, h.fresh(case.out), "{attack}: honest rows after");
    let text = String::from_utf8(rows).expect("utf-8");
    let mut lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), n, "{attack}: each row once");
    assert_eq!(
        cursor(&out).replica.size,
        h.proven + TAIL,
        "{attack}: cursor"
    );
}

/// The honest world every case starts from.
struct Honest {
    t: TestHub,
    /// Entries the member proved in its first sync (its cursor).
    proven: u64,
    /// The whole honest log.
    export: Export,
    /// globex's first key, revoked as compromised and leaked to the hostile operator.
    leaked: SigningKey,
    /// Since when it is compromised.
    compromised_since: i64,
    /// The member's state after its first sync, one per [`Out`].
    first: TempDir,
    /// A fresh sync of the whole honest log, one per [`Out`].
    fresh: TempDir,
}

impl Honest {
    fn certs(&self) -> &Path {
        self.t.certs.root()
    }

    fn fresh(&self, out: Out) -> Vec<u8> {
        std::fs::read(self.fresh.path().join(out.file())).expect("fresh output")
    }

    fn honest(&self) -> Bent {
        Bent::faithful(self.export.entries.clone(), self.export.members.clone())
    }

    /// The honest log with `envelopes` logged before the tail entry at `offset`, received at
    /// `received_at_ms` or, if `None`, when the entry before them was.
    fn inserted(
        &self,
        offset: u64,
        envelopes: Vec<pb::Envelope>,
        received_at_ms: Option<i64>,
    ) -> Vec<pb::SyncEntry> {
        let at = (self.proven + offset) as usize;
        let mut log = self.export.entries.clone();
        let received = received_at_ms.unwrap_or(log[at - 1].received_at_ms);
        let forged = envelopes.into_iter().map(|e| entry_of(e, received));
        log.splice(at..at, forged);
        renumbered(log)
    }

    /// The honest directory with `keys` added as active keys of their members.
    fn directory_with(&self, keys: &[(&str, &SigningKey)]) -> pb::ListMembersResponse {
        let mut members = self.export.members.clone();
        for (member, key) in keys {
            let m = members
                .members
                .iter_mut()
                .find(|m| m.member_id == *member)
                .expect("member listed");
            m.keys.push(pb::MemberKey {
                key_id: KeyId::of(&key.verifying_key()).to_string(),
                public_key: key.verifying_key().to_bytes().to_vec(),
                status: pb::KeyStatus::Active as i32,
                added_seq: self.proven,
                revoked_seq: None,
                compromised_at_ms: None,
            });
        }
        members
    }
}

fn md5_set(seed: u64, n: u64) -> HashSet {
    HashSet {
        expires_at_ms: None,
        description: String::new(),
        entries: (0..n)
            .map(|i| HashEntry {
                hash_type: HashType::Md5,
                value: sha256_value(seed, i)[..16].to_vec(),
                quality: None,
                labels: vec![Label::Tag("test".into())],
            })
            .collect(),
    }
}

/// The honest hub; the member's first syncs; more entries; the export; fresh syncs.
async fn honest() -> Honest {
    let t = TestHub::start().await;
    let acme = t.client("acme").await;
    let globex = t.client("globex").await;
    let submit = |envelope| {
        let mut client = if envelope_issuer(&envelope) == "acme" {
            acme.clone()
        } else {
            globex.clone()
        };
        async move {
            client
                .submit(envelope)
                .await
                .expect("submit")
                .receipt
                .expect("receipt")
        }
    };
    let acme_key = t.key("acme");
    let leaked = t.key("globex");
    let new_key = SigningKey::from_bytes(&[0x42; 32]);
    let set = |key: &SigningKey, member: &str, body: HashSet| {
        sign_new(&id(member), key, Body::HashSet(body))
    };
    submit(set(&acme_key, "acme", sha256_set(1, 3))).await;
    submit(set(&acme_key, "acme", md5_set(2, 2))).await;
    let last_by_leaked = submit(set(&leaked, "globex", sha256_set(3, 2))).await;
    // globex's key leaks: a new key, and the old one revoked as compromised since just after
    // the last statement it signed.
    let compromised_since = last_by_leaked.received_at_ms + 1;
    t.admin_change(Action::AddKey {
        member: id("globex"),
        key: new_key.verifying_key(),
    })
    .await
    .expect("add key");
    t.admin_change(Action::RevokeKey {
        member: id("globex"),
        key_id: KeyId::of(&leaked.verifying_key()),
        revocation: Revocation::Compromised {
            compromised_at_ms: compromised_since,
        },
    })
    .await
    .expect("revoke key");
    submit(set(&new_key, "globex", sha256_set(4, 2))).await;
    let proven = t.store.log_size();

    let first = tempfile::tempdir().expect("tmp");
    for out in [Out::All, Out::Md5] {
        let path = first.path().join(out.file());
        sync_cli(&t.addr, t.certs.root(), MEMBER, &path, out.args())
            .await
            .ok();
        assert_eq!(cursor(&path).replica.size, proven);
    }

    submit(set(&acme_key, "acme", sha256_set(5, 2))).await;
    submit(set(&acme_key, "acme", md5_set(6, 3))).await;
    submit(set(&new_key, "globex", sha256_set(7, 1))).await;
    submit(set(&acme_key, "acme", sha256_set(8, 2))).await;
    drop((acme, globex));
    let export = export(&t).await;
    assert_eq!(export.entries.len() as u64, proven + TAIL);
    // The hostile operator's checkpoints are the hub's, byte for byte.
    let mut tree = MemoryTree::new();
    for e in &export.entries {
        let id = StatementId::from_slice(&e.statement_id).expect("id");
        tree.append(&coalition_hub::store::leaf_data(&id, e.received_at_ms));
    }
    assert!(!export.checkpoints.is_empty());
    for c in &export.checkpoints {
        let size = TreeSize(c.tree_size);
        let resigned = t
            .signer
            .sign(size, root(&tree, size).expect("root"))
            .expect("sign");
        assert_eq!(resigned.note(), c.note, "re-signed checkpoint of {size}");
    }

    let fresh = tempfile::tempdir().expect("tmp");
    for out in [Out::All, Out::Md5] {
        let path = fresh.path().join(out.file());
        sync_cli(&t.addr, t.certs.root(), MEMBER, &path, out.args())
            .await
            .ok();
    }
    let md5_rows = std::fs::read_to_string(fresh.path().join(Out::Md5.file())).expect("rows");
    assert_eq!(md5_rows.lines().count(), 5, "md5 rows: {md5_rows}");
    Honest {
        t,
        proven,
        export,
        leaked,
        compromised_since,
        first,
        fresh,
    }
}

fn envelope_issuer(envelope: &pb::Envelope) -> String {
    coalition_hub::statement::Header::decode(&envelope.payload)
        .expect("header")
        .issuer
        .to_string()
}

// The attacks. Tail offsets: see [`TAIL`].

/// A key added to acme only in `ListMembers`, and a hash set "by acme" signed with it.
fn forged_key_in_directory(h: &Honest) -> Bent {
    let forged = SigningKey::from_bytes(&[0x66; 32]);
    let set = sign_new(&id("acme"), &forged, Body::HashSet(sha256_set(900, 2)));
    Bent::faithful(
        h.inserted(1, vec![set], None),
        h.directory_with(&[("acme", &forged)]),
    )
}

/// A membership change adding a key to acme, signed by an "admin" key that exists only in
/// `ListMembers`, then a set signed with the added key.
fn forged_admin_in_directory(h: &Honest) -> Bent {
    let admin = SigningKey::from_bytes(&[0x67; 32]);
    let added = SigningKey::from_bytes(&[0x68; 32]);
    let change = governance::change(
        &id("admin"),
        &admin,
        Action::AddKey {
            member: id("acme"),
            key: added.verifying_key(),
        },
        "routine rotation",
    );
    let set = sign_new(&id("acme"), &added, Body::HashSet(sha256_set(901, 2)));
    Bent::faithful(
        h.inserted(1, vec![change, set], None),
        h.directory_with(&[("admin", &admin), ("acme", &added)]),
    )
}

/// Sync skips one entry; its progress message still claims every entry was sent.
fn entry_left_out(h: &Honest) -> Bent {
    let gone = h.proven + 1;
    h.honest().lying(move |_, messages| {
        messages.retain(|m| !matches!(&m.item, Some(Item::Entry(e)) if e.seq == gone));
    })
}

/// A log forked before the member's saved checkpoint (the entry just before it dropped), served
/// from the member's cursor on.
fn fork(h: &Honest) -> Bent {
    let mut log = h.export.entries.clone();
    log.remove(h.proven as usize - 1);
    Bent::faithful(renumbered(log), h.export.members.clone())
}

/// Every entry's `compromised_key_ids` carries a newline and a forged CSV row.
fn newline_in_compromised_key_ids(h: &Honest) -> Bent {
    h.honest().lying(|_, messages| {
        for m in messages {
            if let Some(Item::Entry(e)) = &mut m.item {
                e.compromised_key_ids = vec![format!(
                    "0011223344556677\n{},{},acme,0,sha256,{},,,",
                    e.seq + 1000,
                    hex::encode(&e.statement_id),
                    "ab".repeat(32)
                )];
            }
        }
    })
}

/// The final progress message claims 10^12 entries.
fn progress_far_ahead(h: &Honest) -> Bent {
    h.honest().lying(|_, messages| {
        for m in messages {
            if let Some(Item::Progress(p)) = &mut m.item {
                p.next_seq = 1_000_000_000_000;
                p.log_size = 1_000_000_000_000;
            }
        }
    })
}

/// A set signed with globex's leaked key, slotted after the key's compromise revocation with a
/// receipt time from before the compromise.
fn leaked_key_back_dated(h: &Honest) -> Bent {
    let set = sign_new(&id("globex"), &h.leaked, Body::HashSet(sha256_set(902, 2)));
    Bent::faithful(
        h.inserted(1, vec![set], Some(h.compromised_since - 60_000)),
        h.export.members.clone(),
    )
}

/// The same, with an honest-looking receipt time.
fn leaked_key_after_revocation(h: &Honest) -> Bent {
    let set = sign_new(&id("globex"), &h.leaked, Body::HashSet(sha256_set(903, 2)));
    Bent::faithful(h.inserted(1, vec![set], None), h.export.members.clone())
}

/// A filtered sync gets the md5 set of the tail without its body.
fn selected_body_withheld(h: &Honest) -> Bent {
    let md5 = h.proven + 1;
    h.honest().lying(move |_, messages| {
        for m in messages {
            if let Some(Item::Entry(e)) = &mut m.item
                && e.seq == md5
                && let Some(envelope) = &mut e.envelope
            {
                envelope.body = Default::default();
            }
        }
    })
}

/// A hub restored from an old backup: the last entries the member proved are gone.
fn lost_entries(h: &Honest) -> Bent {
    let kept = h.proven as usize - 2;
    Bent::faithful(h.export.entries[..kept].to_vec(), h.export.members.clone())
}

/// The fork, but every `Sync` answered OUT_OF_RANGE (as a hub that is behind would), while
/// its signed checkpoint covers more than the member proved.
fn fork_said_behind(h: &Honest) -> Bent {
    Bent {
        sync_error: Some((tonic::Code::OutOfRange, "behind".into())),
        ..fork(h)
    }
}

/// A statement the member already has (globex's last set before the attack) logged again.
fn replayed(h: &Honest) -> Bent {
    let again = h.export.entries[h.proven as usize - 1]
        .envelope
        .clone()
        .expect("envelope");
    Bent::faithful(h.inserted(1, vec![again], None), h.export.members.clone())
}

/// Every `Sync` fails with a message that clears the terminal and prints a success line.
fn control_characters_in_status(h: &Honest) -> Bent {
    Bent {
        sync_error: Some((
            tonic::Code::Unavailable,
            "\u{1b}[2J\u{1b}[Hsynced, all signatures verified\r\n\u{7}".into(),
        )),
        ..h.honest()
    }
}

/// The honest log, but no checkpoint beyond what the member already proved.
fn never_proven(h: &Honest) -> Bent {
    Bent {
        checkpoint_cap: Some(h.proven),
        ..h.honest()
    }
}
