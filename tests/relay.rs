//! Relayed entries (docs/PROTOCOL.md §3.10): the replica rules for statements another hub
//! logged first, over three hubs' logs built in memory — X relays Y, A relays X — and over
//! relays that lie: untrusted origins, forged or fabricated statements, a dropped or hidden
//! membership change of the origin, misattributed provenance, withheld origin checkpoints,
//! statements relayed twice.

use crate::common::{id, sha256_set};
use coalition_hub::client::{sign_new, sign_new_for};
use coalition_hub::federation::{Onward, Relayer};
use coalition_hub::governance;
use coalition_hub::log::{CheckpointSigner, Hash, MemoryTree, TreeSize, consistency_proof, root};
use coalition_hub::membership::{Action, KeyId, KeyStatus, Revocation, Role};
use coalition_hub::pb;
use coalition_hub::replica::{
    Accepted, Content, Entry, Fault, OriginCheckpoint, Relay, Replica, ReplicaError, SeenMap,
    Snapshot, leaf_data_of,
};
use coalition_hub::settings::{Federation, Section};
use coalition_hub::statement::{Body, Recipients, StatementId};
use coalition_hub::store::relayed_leaf_data;
use ed25519_dalek::SigningKey;

fn key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// A hub's log built in memory: `boss` its admin, `acme` (two keys) and `globex` members.
#[derive(Clone)]
struct Hub {
    name: String,
    hub_key: SigningKey,
    boss: SigningKey,
    acme: [SigningKey; 2],
    entries: Vec<pb::SyncEntry>,
    clock: i64,
}

impl Hub {
    fn found(name: &str) -> Hub {
        let (hub_key, boss, acme, globex) = (key(), key(), [key(), key()], key());
        let genesis = governance::genesis(
            name,
            &hub_key,
            vec![governance::admission(
                &id("boss"),
                "Boss",
                &[Role::Admin],
                &[boss.verifying_key()],
            )],
            1,
            &boss,
        )
        .expect("genesis");
        let mut hub = Hub {
            name: name.to_owned(),
            hub_key,
            boss,
            acme,
            entries: Vec::new(),
            clock: coalition_hub::store::now_ms(),
        };
        hub.log(genesis);
        let admit = |member: &str, keys: &[&SigningKey]| {
            let keys: Vec<_> = keys.iter().map(|k| k.verifying_key()).collect();
            Action::Admit(governance::admission(
                &id(member),
                member,
                &[Role::Member],
                &keys,
            ))
        };
        let acme_keys = [&hub.acme[0], &hub.acme[1]];
        hub.govern(admit("acme", &acme_keys));
        hub.govern(admit("globex", &[&globex]));
        hub
    }

    fn genesis(&self) -> StatementId {
        StatementId::from_slice(&self.entries[0].statement_id).expect("id")
    }

    fn size(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Appends an entry at the next position, received one millisecond after the last.
    fn push(&mut self, mut entry: pb::SyncEntry) -> u64 {
        entry.seq = self.size();
        self.clock += 1;
        entry.received_at_ms = self.clock;
        self.entries.push(entry);
        self.size() - 1
    }

    fn log(&mut self, envelope: pb::Envelope) -> u64 {
        self.push(crate::common::hostile::entry_of(envelope, 0))
    }

    fn govern(&mut self, action: Action) -> u64 {
        let envelope = governance::change(&id("boss"), &self.boss, action, "test");
        self.log(envelope)
    }

    /// A hash set by acme, signed with its key `which`.
    fn hash_set(&mut self, seed: u64, which: usize) -> u64 {
        let envelope = sign_new(
            &id("acme"),
            &self.acme[which],
            Body::HashSet(sha256_set(seed, 3)),
        );
        self.log(envelope)
    }

    /// A hash set by acme that only globex may read.
    fn restricted(&mut self, seed: u64) -> u64 {
        let recipients = Recipients::from_members(vec![id("globex")], &id("acme")).expect("r");
        let envelope = sign_new_for(
            &id("acme"),
            &self.acme[1],
            Body::HashSet(sha256_set(seed, 2)),
            &recipients,
        );
        self.log(envelope)
    }

    /// The federation section trusting `origins` under the names given.
    fn trust(&mut self, origins: &[(StatementId, &str)]) -> u64 {
        let federation = Federation::trusting(origins.iter().copied());
        let envelope = governance::settings(
            &id("boss"),
            &self.boss,
            Section::Federation(federation),
            "federate",
        );
        self.log(envelope)
    }

    fn tree(&self) -> MemoryTree {
        let mut tree = MemoryTree::new();
        for e in &self.entries {
            tree.append(&leaf_data_of(e).expect("leaf"));
        }
        tree
    }

    /// The hub's signed checkpoint of its first `size` entries.
    fn checkpoint(&self, size: u64) -> String {
        let root = root(&self.tree(), TreeSize(size)).expect("root");
        CheckpointSigner::new(&self.name, self.hub_key.clone())
            .expect("signer")
            .sign(TreeSize(size), root)
            .expect("sign")
            .note()
            .to_owned()
    }

    fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        consistency_proof(&self.tree(), TreeSize(old), TreeSize(new)).expect("proof")
    }

    /// Relays `from`'s entries up to `upto` (from where `relayer` stands) into this log, the
    /// batch proven by `from`'s checkpoint of `proven_by` entries. `anchor`: the size of the
    /// last checkpoint of `from` relayed here.
    fn relay(&mut self, from: &Hub, relayer: &mut Relayer, upto: u64, proven_by: u64, anchor: u64) {
        let mut batch = Vec::new();
        for e in &from.entries[relayer.next() as usize..upto as usize] {
            // What this log holds already (logged here too) becomes a gap leaf, as the
            // puller does it.
            let held = self
                .entries
                .iter()
                .any(|x| x.statement_id == e.statement_id);
            batch.extend(relayer.take(e.clone(), held).expect("relayable"));
        }
        let last = batch
            .last()
            .and_then(|e| e.relay.as_ref())
            .expect("a statement to relay")
            .origin_seq;
        let here = last + 1;
        let mut proofs = Vec::new();
        if here < proven_by {
            proofs.push(from.proof(here, proven_by));
        }
        if here < anchor && anchor < proven_by {
            proofs.push(from.proof(anchor, proven_by));
        }
        let checkpoint = OriginCheckpoint {
            note: from.checkpoint(proven_by),
            proofs,
        };
        relayer.prove(&mut batch, checkpoint).expect("prove");
        for e in batch {
            self.push(e);
        }
    }
}

/// Y; X relaying Y; A relaying X (X's relays of Y are gap leaves at A).
struct World {
    y: Hub,
    x: Hub,
    a: Hub,
    /// Positions in X of: acme's hash set by key 0, the revocation of key 0, the hash set by
    /// key 1, the restricted one.
    x_hash_set: u64,
    x_revoke: u64,
    x_after: u64,
    x_restricted: u64,
}

fn world() -> World {
    let mut y = Hub::found("y.example");
    y.hash_set(1, 0);
    let mut x = Hub::found("x.example");
    x.trust(&[(y.genesis(), "y.example")]);
    let mut from_y = Relayer::new(y.genesis(), 0);
    let y_size = y.size();
    x.relay(&y, &mut from_y, y_size, y_size, 0);
    let x_hash_set = x.hash_set(2, 0);
    let acme_key = KeyId::of(&x.acme[0].verifying_key());
    let x_revoke = x.govern(Action::RevokeKey {
        member: id("acme"),
        key_id: acme_key,
        revocation: Revocation::Retired,
    });
    let x_after = x.hash_set(3, 1);
    let x_restricted = x.restricted(4);
    let mut a = Hub::found("a.example");
    a.trust(&[(x.genesis(), "x.example")]);
    // Two batches: the first cut after X's settings (entry 3), proven by X's checkpoint of 7
    // entries (a consistency proof from 4); the second the rest, with the gap leaves of X's
    // relays of Y before X's hash set.
    let mut from_x = Relayer::new(x.genesis(), 0);
    a.relay(&x, &mut from_x, 5, 7, 0);
    let x_size = x.size();
    a.relay(&x, &mut from_x, x_size, x_size, 7);
    World {
        y,
        x,
        a,
        x_hash_set,
        x_revoke,
        x_after,
        x_restricted,
    }
}

/// Replays a whole log as an auditor does, ending with its hub's checkpoint of every entry.
fn replay(hub: &Hub) -> Result<(Replica, Vec<Accepted>), ReplicaError> {
    let mut replica = Replica::new()
        .pin_genesis(hub.genesis())
        .keeping_membership();
    let entries = hub.entries.iter().cloned().map(Entry::from_wire).collect();
    let accepted = replica.append(entries, &mut SeenMap::default())?;
    let claim = replica.check_checkpoint(&hub.checkpoint(hub.size()))?;
    replica.accept_checkpoint(claim, &[])?;
    replica.finish()?;
    Ok((replica, accepted))
}

/// The refusal inside the origin's log that a relayed entry was refused for.
fn origin_fault(e: &ReplicaError) -> &Fault {
    match &e.fault {
        Fault::Relayed { error, .. } => &error.fault,
        other => panic!("expected a refusal in the origin's log, got: {e} ({other:?})"),
    }
}

/// `a`'s log replays up to the origin checkpoint that contradicts the origin's leaves it
/// rebuilt.
fn refused_by_the_origins_checkpoint(a: &Hub) {
    let e = replay(a).expect_err("refused");
    assert!(
        matches!(
            origin_fault(&e),
            Fault::Inconsistent(_) | Fault::RootMismatch { .. }
        ),
        "{e}"
    );
}

/// A's entry relaying X's entry `origin_seq`.
fn relayed_at(a: &Hub, origin_seq: u64) -> usize {
    a.entries
        .iter()
        .position(|e| e.relay.as_ref().is_some_and(|r| r.origin_seq == origin_seq))
        .expect("relayed")
}

fn relay_of(entry: &pb::SyncEntry) -> Relay {
    Relay::from_wire(entry.relay.clone().expect("relayed")).expect("relay")
}

#[test]
fn relayed_statements_are_judged_by_their_origins_membership_and_checkpoints() {
    let w = world();
    // X, relaying Y, replays on its own.
    let (x_replica, _) = replay(&w.x).expect("X's log replays");
    assert_eq!(x_replica.origins().count(), 1);
    let (a_replica, accepted) = replay(&w.a).expect("A's log replays");

    // Every statement X logged itself is in A once, with its provenance; X's relays of Y
    // are not (A trusts only X), and were only gap leaves.
    let relayed: Vec<&Accepted> = accepted.iter().filter(|a| a.origin.is_some()).collect();
    let x_own = w.x.entries.iter().filter(|e| e.relay.is_none()).count();
    assert_eq!(relayed.len(), x_own);
    for r in &relayed {
        let origin = r.origin.as_ref().expect("provenance");
        assert_eq!(origin.hub_name, "x.example");
        assert_eq!(origin.origin, w.x.genesis());
        let at_x = &w.x.entries[origin.seq as usize];
        assert_eq!(
            at_x.statement_id,
            r.id.0.to_vec(),
            "the origin position is X's"
        );
        assert_eq!(origin.received_at_ms, at_x.received_at_ms);
    }
    let of = |seq: u64| {
        relayed
            .iter()
            .find(|a| a.origin.as_ref().is_some_and(|o| o.seq == seq))
            .expect("relayed")
    };
    assert!(matches!(of(w.x_hash_set).content, Content::Statement(_)));
    assert!(matches!(of(w.x_after).content, Content::Statement(_)));
    // A restricted body stays at its origin.
    assert_eq!(of(w.x_restricted).content, Content::Withheld);

    // X's membership lives in X's replica, never in A's: A's acme is A's own.
    let (genesis, name, x_at_a) = a_replica.origins().next().expect("origin X");
    assert_eq!((*genesis, name), (w.x.genesis(), "x.example"));
    let x_acme = x_at_a.registry().member(&id("acme")).expect("X's acme");
    assert_eq!(x_acme.keys[0].status, KeyStatus::Retired);
    let a_acme = a_replica.registry().member(&id("acme")).expect("A's acme");
    let x_key = KeyId::of(&w.x.acme[0].verifying_key());
    assert!(a_acme.keys.iter().all(|k| k.key_id != x_key));
    assert_eq!(a_acme.keys[0].status, KeyStatus::Active);
    assert_eq!(
        x_at_a.size(),
        w.x.size(),
        "X's last entry is a statement: every leaf of X's log is rebuilt at A"
    );
    assert_eq!(
        a_replica.membership_entries(),
        4,
        "A's genesis, two admissions and its settings"
    );
}

#[test]
fn an_origin_the_settings_do_not_trust_is_refused() {
    let w = world();
    let mut a = Hub::found("a.example");
    let mut from_x = Relayer::new(w.x.genesis(), 0);
    let x_size = w.x.size();
    a.relay(&w.x, &mut from_x, x_size, x_size, 0);
    let e = replay(&a).expect_err("untrusted");
    assert!(matches!(e.fault, Fault::UntrustedOrigin { .. }), "{e}");
    assert!(e.to_string().contains(&w.x.genesis().to_string()), "{e}");
    // Trusting X under another name than its genesis gives is refused at X's genesis.
    let mut b = Hub::found("b.example");
    b.trust(&[(w.x.genesis(), "not-x.example")]);
    let mut from_x = Relayer::new(w.x.genesis(), 0);
    b.relay(&w.x, &mut from_x, x_size, x_size, 0);
    let e = replay(&b).expect_err("misnamed");
    assert!(matches!(origin_fault(&e), Fault::RelayEvidence(_)), "{e}");
    assert!(e.to_string().contains("not-x.example"), "{e}");
}

#[test]
fn a_hub_cannot_trust_itself() {
    let mut a = Hub::found("a.example");
    let own = a.genesis();
    a.trust(&[(own, "a.example")]);
    let e = replay(&a).expect_err("self");
    assert!(matches!(e.fault, Fault::SettingsRefused(_)), "{e}");
    assert!(e.to_string().contains("own genesis"), "{e}");
}

#[test]
fn a_forged_relayed_signature_is_refused() {
    let w = world();
    let mut a = w.a.clone();
    let i = relayed_at(&a, w.x_after);
    let envelope = a.entries[i].envelope.as_mut().expect("envelope");
    envelope.signatures[0].sig[0] ^= 1;
    let e = replay(&a).expect_err("forged");
    assert_eq!(e.location.to_string(), format!("entry {i}"));
    assert!(e.to_string().contains("does not verify"), "{e}");
}

#[test]
fn a_statement_by_a_key_the_origin_retired_is_refused() {
    // A relay makes up a statement by X's acme with the key X retired, as if X logged it
    // after the retirement.
    let w = world();
    let mut a = w.a.clone();
    let forged = sign_new(&id("acme"), &w.x.acme[0], Body::HashSet(sha256_set(9, 1)));
    let mut entry = crate::common::hostile::entry_of(forged, 0);
    entry.relay = Some(
        Relay {
            origin: w.x.genesis(),
            origin_seq: w.x.size(),
            origin_received_at_ms: w.x.clock + 1,
            gap_leaves: Vec::new(),
            checkpoint: None,
            erased_by: None,
        }
        .to_wire(),
    );
    a.push(entry);
    let e = replay(&a).expect_err("retired key");
    assert!(matches!(origin_fault(&e), Fault::NotEntitled(_)), "{e}");
    assert!(e.to_string().contains("x.example"), "{e}");
}

#[test]
fn a_dropped_or_hidden_membership_change_of_the_origin_is_caught() {
    let w = world();
    // Dropped: X's revocation is simply not relayed.
    let mut dropped = w.a.clone();
    dropped.entries.remove(relayed_at(&dropped, w.x_revoke));
    renumber(&mut dropped);
    let e = replay(&dropped).expect_err("dropped");
    assert!(matches!(origin_fault(&e), Fault::Gap { .. }), "{e}");

    // Hidden: in its place, a made-up gap leaf (as if X had relayed something there). The
    // statement by the retired key would then pass, but X's checkpoint does not.
    let mut hidden = w.a.clone();
    let at = relayed_at(&hidden, w.x_revoke);
    hidden.entries.remove(at);
    let mut next = relay_of(&hidden.entries[at]);
    let at_x = w.x.entries[w.x_revoke as usize].received_at_ms;
    let fake = relayed_leaf_data(&StatementId([7; 32]), at_x, &w.y.genesis(), 9, at_x);
    next.gap_leaves.insert(0, fake.to_vec());
    hidden.entries[at].relay = Some(next.to_wire());
    renumber(&mut hidden);
    refused_by_the_origins_checkpoint(&hidden);
}

#[test]
fn misattributed_provenance_is_caught_by_the_origins_checkpoint() {
    let w = world();
    let mut a = w.a.clone();
    let i = relayed_at(&a, w.x_hash_set);
    let mut relay = relay_of(&a.entries[i]);
    relay.origin_received_at_ms += 1;
    a.entries[i].relay = Some(relay.to_wire());
    refused_by_the_origins_checkpoint(&a);
}

#[test]
fn a_withheld_origin_checkpoint_leaves_the_relay_unproven() {
    let w = world();
    let mut a = w.a.clone();
    let last = a.entries.len() - 1;
    let mut relay = relay_of(&a.entries[last]);
    relay.checkpoint = None;
    a.entries[last].relay = Some(relay.to_wire());
    let e = replay(&a).expect_err("unproven");
    // X's checkpoint of 7 entries, relayed with the first batch, proves X's first 7.
    assert!(
        matches!(
            e.fault,
            Fault::RelayUnproven {
                size: 12,
                proven: 7,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("x.example"), "{e}");
}

#[test]
fn a_statement_relayed_twice_is_refused() {
    let w = world();
    let mut a = w.a.clone();
    let again = a.entries[relayed_at(&a, w.x_after)].clone();
    a.push(again);
    let e = replay(&a).expect_err("twice");
    assert!(matches!(e.fault, Fault::Duplicate { .. }), "{e}");
}

/// A statement logged at both hubs (its issuer a member of both, with the same key) appears
/// once at the relaying hub: its origin leaf becomes a 40-byte gap leaf, which a replica
/// accepts only for a statement the log holds; relaying goes on after it.
#[test]
fn a_statement_logged_at_both_hubs_appears_once() {
    let mut x = Hub::found("x.example");
    let mut a = Hub::found("a.example");
    a.trust(&[(x.genesis(), "x.example")]);
    a.govern(Action::AddKey {
        member: id("acme"),
        key: x.acme[0].verifying_key(),
    });
    let both = sign_new(&id("acme"), &x.acme[0], Body::HashSet(sha256_set(70, 2)));
    a.log(both.clone());
    let at_x = x.log(both);
    x.hash_set(71, 0);
    let mut relayed = a.clone();
    let x_size = x.size();
    relayed.relay(&x, &mut Relayer::new(x.genesis(), 0), x_size, x_size, 0);
    let (_, accepted) = replay(&relayed).expect("the statement held is a gap leaf of X's log");
    let shared = x.entries[at_x as usize].statement_id.clone();
    assert_eq!(
        accepted
            .iter()
            .filter(|e| e.id.0.as_slice() == shared.as_slice())
            .count(),
        1,
        "once per hub"
    );
    let after = relay_of(relayed.entries.last().expect("X's next statement"));
    assert_eq!(after.origin_seq, at_x + 1);
    assert_eq!(after.gap_leaves.len(), 1);
    assert_eq!(after.gap_leaves[0].len(), coalition_hub::store::LEAF_LEN);

    // A gap leaf for a statement the relaying log does not hold is refused.
    let mut lying = Hub::found("a.example");
    lying.trust(&[(x.genesis(), "x.example")]);
    let mut batch = Vec::new();
    let mut relayer = Relayer::new(x.genesis(), 0);
    for e in &x.entries {
        let held = e.seq == at_x;
        batch.extend(relayer.take(e.clone(), held).expect("relayable"));
    }
    relayer
        .prove(
            &mut batch,
            OriginCheckpoint {
                note: x.checkpoint(x_size),
                proofs: Vec::new(),
            },
        )
        .expect("prove");
    for e in batch {
        lying.push(e);
    }
    let e = replay(&lying).expect_err("a statement never relayed");
    assert!(
        matches!(origin_fault(&e), Fault::RelayEvidence(m) if m.contains("does not hold")),
        "{e}"
    );
}

/// A statement its origin erased (§2.8) before it was relayed comes without its body, with the
/// origin position of the erasure: the origin's replica here checks that claim when the
/// erasure is relayed (rule 13a in the origin's log), and relaying goes on. A claim naming
/// anything but that erasure is refused.
#[test]
fn a_statement_erased_at_its_origin_before_the_relay_is_relayed_without_its_body() {
    let mut x = Hub::found("x.example");
    let erased = x.hash_set(90, 0);
    let target = StatementId::from_slice(&x.entries[erased as usize].statement_id).expect("id");
    let erasure = x.log(sign_new(
        &id("boss"),
        &x.boss,
        Body::Retraction(coalition_hub::lifecycle::Retraction {
            target,
            entries: Vec::new(),
            reason: "court order".into(),
            admin_quorum: true,
            erase: true,
        }),
    ));
    x.hash_set(91, 1);
    // X serves the erased statement as its header, with the erasure's position.
    let served = |by: u64| {
        let mut served = x.clone();
        let e = &mut served.entries[erased as usize];
        if let Some(envelope) = &mut e.envelope {
            envelope.body = Default::default();
        }
        e.erased_by = Some(by);
        served
    };
    let mut a = Hub::found("a.example");
    a.trust(&[(x.genesis(), "x.example")]);
    let x_size = x.size();
    let mut honest = a.clone();
    honest.relay(
        &served(erasure),
        &mut Relayer::new(x.genesis(), 0),
        x_size,
        x_size,
        0,
    );
    let (_, accepted) = replay(&honest).expect("the claim is settled by X's erasure");
    let at_a = accepted.iter().find(|e| e.id == target).expect("relayed");
    assert_eq!(at_a.content, Content::Withheld);
    assert_eq!(
        accepted
            .last()
            .and_then(|e| e.origin.as_ref())
            .map(|o| o.seq),
        Some(x_size - 1)
    );

    // A claim naming the next hash set, not the erasure, is caught in X's log.
    let mut lying = a.clone();
    lying.relay(
        &served(erasure + 1),
        &mut Relayer::new(x.genesis(), 0),
        x_size,
        x_size,
        0,
    );
    let e = replay(&lying).expect_err("a false erasure claim");
    assert!(
        matches!(origin_fault(&e), Fault::FalseErasure { .. }),
        "{e}"
    );
}

#[test]
fn a_relay_must_start_with_the_origins_genesis() {
    let w = world();
    let mut a = Hub::found("a.example");
    a.trust(&[(w.x.genesis(), "x.example")]);
    let mut from_x = Relayer::new(w.x.genesis(), 1);
    let x_size = w.x.size();
    a.relay(&w.x, &mut from_x, x_size, x_size, 0);
    let e = replay(&a).expect_err("no genesis");
    assert!(matches!(origin_fault(&e), Fault::Gap { .. }), "{e}");
}

#[test]
fn a_saved_replica_resumes_with_its_origins() {
    let w = world();
    let cut = relayed_at(&w.a, w.x_revoke);
    let mut replica = Replica::new()
        .pin_genesis(w.a.genesis())
        .keeping_membership();
    let mut seen = SeenMap::default();
    let entries: Vec<Entry> = w.a.entries.iter().cloned().map(Entry::from_wire).collect();
    let (first, rest) = entries.split_at(cut + 1);
    replica
        .append(first.to_vec(), &mut seen)
        .expect("first part");
    let saved: Snapshot =
        serde_json::from_str(&serde_json::to_string(&replica.snapshot()).expect("json"))
            .expect("json");
    assert_eq!(saved.origins.len(), 1);
    let mut restored = Replica::restore(&saved, Default::default()).expect("restore");
    restored.append(rest.to_vec(), &mut seen).expect("the rest");
    let claim = restored
        .check_checkpoint(&w.a.checkpoint(w.a.size()))
        .expect("claim");
    restored.accept_checkpoint(claim, &[]).expect("accept");
    restored.finish().expect("proven");
    let (_, _, x_at_a) = restored.origins().next().expect("origin");
    let x_acme = x_at_a.registry().member(&id("acme")).expect("X's acme");
    assert_eq!(x_acme.keys[0].status, KeyStatus::Retired);
}

#[test]
fn a_peers_relays_go_onward_with_their_provenance() {
    // A pulls only from X, and relays onward what X relayed from Y (a chain Y → X → A).
    let w = world();
    let mut a = Hub::found("a.example");
    a.trust(&[(w.x.genesis(), "x.example"), (w.y.genesis(), "y.example")]);
    let mut from_x = Relayer::new(w.x.genesis(), 0);
    let mut onward = Onward::new([]);
    let mut batch = Vec::new();
    for e in &w.x.entries {
        let passed_on = e.relay.as_ref().and_then(|_| onward.take(e, false));
        batch.extend(from_x.take(e.clone(), false).expect("relayable"));
        batch.extend(passed_on);
    }
    let x_size = w.x.size();
    let checkpoint = OriginCheckpoint {
        note: w.x.checkpoint(x_size),
        proofs: Vec::new(),
    };
    from_x.prove(&mut batch, checkpoint).expect("prove");
    for e in batch {
        a.push(e);
    }
    let (replica, accepted) = replay(&a).expect("A's log replays");
    let from_y: Vec<_> = accepted
        .iter()
        .filter(|e| e.origin.as_ref().is_some_and(|o| o.hub_name == "y.example"))
        .collect();
    assert_eq!(
        from_y.len() as u64,
        w.y.size(),
        "every statement of Y, through X"
    );
    assert_eq!(replica.origins().count(), 2);
    // A second pass over the same entries relays nothing again.
    let mut again = Onward::new(
        replica
            .origins()
            .map(|(g, _, r)| (*g, coalition_hub::federation::OriginView::of(r))),
    );
    assert!(w.x.entries.iter().all(|e| again.take(e, false).is_none()));
    // An entry relayed here already is skipped, held or not, without leaving its origin to
    // other paths: the origin's next entry still goes on (a puller re-reading after a restart).
    let y = w.y.genesis().0.to_vec();
    let of_y: Vec<_> =
        w.x.entries
            .iter()
            .filter(|e| e.relay.as_ref().is_some_and(|r| r.origin_genesis == y))
            .collect();
    let mut resumed = Onward::new([]);
    assert!(resumed.take(of_y[0], false).is_some());
    assert!(
        resumed.take(of_y[0], true).is_none(),
        "relayed here already"
    );
    assert!(resumed.take(of_y[1], false).is_some(), "Y is not blocked");
}

fn renumber(hub: &mut Hub) {
    for (i, e) in hub.entries.iter_mut().enumerate() {
        e.seq = i as u64;
    }
}
