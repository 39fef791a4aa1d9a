//! One verdict, whoever drives the replica: random logs with random valid and invalid
//! mutations get the same verdict from the hub's writer (a real sled store: the Submit
//! handler's parse and verify, then the writer's `append_verified`), a member's replica fed
//! the log (unfiltered, and filtered so that bodies are withheld), and the offline auditor.
//! The verdict is the first entry that is not logged as it stands (the writer refuses it or
//! finds it logged already) / that the replica or auditor refuses.

use coalition_hub::audit::Verifier;
use coalition_hub::governance::{self, admission};
use coalition_hub::log::{CheckpointSigner, MemoryTree, TreeSize};
use coalition_hub::membership::{Action, KeyId, MemberId, Revocation, Role};
use coalition_hub::pb;
use coalition_hub::replica::{Entry, Location, Replica, SeenMap};
use coalition_hub::statement::{
    Body, HashEntry, HashSet, HashType, Label, PAYLOAD_TYPE, ParsedEnvelope, StatementId,
    SyncFilter, pae,
};
use coalition_hub::store::{Store, StoreConfig, leaf_data, now_ms};
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use prost::Message;

const HUB: &str = "agreement.coalition.local";
const MEMBERS: usize = 3;

fn id(s: &str) -> MemberId {
    MemberId::parse(s).expect("member id")
}

fn member(i: usize) -> MemberId {
    id(&format!("m{i}"))
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// One step of an honest-looking history (some steps may still be invalid where they land:
/// that is fine, every driver must agree on them too).
#[derive(Clone, Debug)]
enum Op {
    Submit { member: usize, seed: u64 },
    Admit { member: usize },
    Suspend { member: usize },
    Reinstate { member: usize },
    Rotate { member: usize },
    Compromise { member: usize },
}

/// What is done to the submissions after they are made.
#[derive(Clone, Debug)]
enum Mutation {
    None,
    FlipSignature(usize),
    Duplicate { from: usize, to: usize },
    Stranger(usize),
    SwapBody { target: usize, source: usize },
    NonCanonicalBody(usize),
    Move { from: usize, to: usize },
    Drop(usize),
}

impl Mutation {
    /// Touches only the body of `index` (a reader without that body cannot see it).
    fn body_only(&self) -> Option<usize> {
        match self {
            Mutation::SwapBody { target, .. } => Some(*target),
            Mutation::NonCanonicalBody(i) => Some(*i),
            _ => None,
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let m = 0..MEMBERS;
    prop_oneof![
        6 => (m.clone(), any::<u64>()).prop_map(|(member, seed)| Op::Submit { member, seed }),
        3 => m.clone().prop_map(|member| Op::Admit { member }),
        1 => m.clone().prop_map(|member| Op::Suspend { member }),
        1 => m.clone().prop_map(|member| Op::Reinstate { member }),
        1 => m.clone().prop_map(|member| Op::Rotate { member }),
        1 => m.prop_map(|member| Op::Compromise { member }),
    ]
}

/// Mutation positions are drawn as fractions of the log and scaled to its length.
fn mutation() -> impl Strategy<Value = Mutation> {
    let i = 1usize..10_000;
    prop_oneof![
        2 => Just(Mutation::None),
        1 => i.clone().prop_map(Mutation::FlipSignature),
        1 => (i.clone(), i.clone()).prop_map(|(from, to)| Mutation::Duplicate { from, to }),
        1 => i.clone().prop_map(Mutation::Stranger),
        1 => (i.clone(), i.clone()).prop_map(|(target, source)| Mutation::SwapBody { target, source }),
        1 => i.clone().prop_map(Mutation::NonCanonicalBody),
        1 => (i.clone(), i.clone()).prop_map(|(from, to)| Mutation::Move { from, to }),
        1 => i.prop_map(Mutation::Drop),
    ]
}

/// The submissions an honest admin and honest members would make for `ops`.
struct History {
    admin: SigningKey,
    hub: SigningKey,
    keys: Vec<SigningKey>,
    envelopes: Vec<pb::Envelope>,
}

fn hash_set(seed: u64) -> Body {
    Body::HashSet(HashSet {
        expires_at_ms: None,
        description: String::new(),
        entries: (0..3u64)
            .map(|i| HashEntry {
                hash_type: HashType::Sha256,
                value: {
                    let mut v = vec![0u8; 32];
                    v[..8].copy_from_slice(&seed.to_be_bytes());
                    v[8..16].copy_from_slice(&i.to_be_bytes());
                    v
                },
                quality: None,
                labels: vec![Label::Tag("agreement".into())],
            })
            .collect(),
    })
}

fn history(ops: &[Op]) -> History {
    let admin = key(1);
    let hub = key(2);
    let mut keys: Vec<SigningKey> = (0..MEMBERS).map(|i| key(10 + i as u8)).collect();
    let mut next_key = 100u8;
    let mut envelopes = vec![
        governance::genesis(
            HUB,
            &hub,
            vec![admission(
                &id("admin"),
                "Admin",
                &[Role::Admin],
                &[admin.verifying_key()],
            )],
            1,
            &admin,
        )
        .expect("genesis"),
    ];
    let change = |action: Action| governance::change(&id("admin"), &admin, action, "test");
    // Each op is made valid where it lands (admit before submitting, reinstate before...), so
    // the honest history is valid and the mutations decide where it breaks.
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Outside,
        Active,
        Suspended,
    }
    let mut state = [State::Outside; MEMBERS];
    let mut has_key = [true; MEMBERS];
    for op in ops {
        let m = match *op {
            Op::Submit { member, .. }
            | Op::Admit { member }
            | Op::Suspend { member }
            | Op::Reinstate { member }
            | Op::Rotate { member }
            | Op::Compromise { member } => member,
        };
        if state[m] == State::Outside {
            envelopes.push(change(Action::Admit(admission(
                &member(m),
                "Member",
                &[Role::Member],
                &[keys[m].verifying_key()],
            ))));
            state[m] = State::Active;
        }
        let mut add_key = |envelopes: &mut Vec<pb::Envelope>, keys: &mut Vec<SigningKey>| {
            let new = key(next_key);
            next_key += 1;
            envelopes.push(change(Action::AddKey {
                member: member(m),
                key: new.verifying_key(),
            }));
            keys[m] = new;
        };
        match *op {
            Op::Submit { seed, .. } => {
                if state[m] == State::Suspended {
                    envelopes.push(change(Action::Reinstate(member(m))));
                    state[m] = State::Active;
                }
                if !has_key[m] {
                    add_key(&mut envelopes, &mut keys);
                    has_key[m] = true;
                }
                envelopes.push(coalition_hub::client::sign_new(
                    &member(m),
                    &keys[m],
                    hash_set(seed),
                ));
            }
            Op::Admit { .. } => {}
            Op::Suspend { .. } if state[m] == State::Active => {
                envelopes.push(change(Action::Suspend(member(m))));
                state[m] = State::Suspended;
            }
            Op::Reinstate { .. } if state[m] == State::Suspended => {
                envelopes.push(change(Action::Reinstate(member(m))));
                state[m] = State::Active;
            }
            Op::Rotate { .. } if has_key[m] => {
                let old = KeyId::of(&keys[m].verifying_key());
                add_key(&mut envelopes, &mut keys);
                envelopes.push(change(Action::RevokeKey {
                    member: member(m),
                    key_id: old,
                    revocation: Revocation::Retired,
                }));
            }
            Op::Compromise { .. } if has_key[m] => {
                envelopes.push(change(Action::RevokeKey {
                    member: member(m),
                    key_id: KeyId::of(&keys[m].verifying_key()),
                    revocation: Revocation::Compromised {
                        compromised_at_ms: now_ms() - 60_000,
                    },
                }));
                has_key[m] = false;
            }
            _ => {}
        }
    }
    History {
        admin,
        hub,
        keys,
        envelopes,
    }
}

/// Re-signs header and body bytes with `key`, as given.
fn resign(header: Vec<u8>, body: Vec<u8>, key: &SigningKey) -> pb::Envelope {
    let sig = key.sign(&pae(PAYLOAD_TYPE, &header));
    pb::Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        payload: header.into(),
        signatures: vec![pb::Signature {
            key_id: KeyId::of(&key.verifying_key()).to_string(),
            sig: sig.to_bytes().to_vec(),
        }],
        body: body.into(),
    }
}

/// Scales a mutation's positions (1..10,000) to a log of `n` entries (never the genesis).
fn scaled(mutation: &Mutation, n: usize) -> Mutation {
    let at = |i: usize| 1 + (i * (n - 1)) / 10_000;
    match *mutation {
        Mutation::None => Mutation::None,
        Mutation::FlipSignature(i) => Mutation::FlipSignature(at(i)),
        Mutation::Duplicate { from, to } => Mutation::Duplicate {
            from: at(from.min(to)),
            to: at(from.max(to)) + 1,
        },
        Mutation::Stranger(i) => Mutation::Stranger(at(i)),
        Mutation::SwapBody { target, source } => Mutation::SwapBody {
            target: at(target),
            source: at(source),
        },
        Mutation::NonCanonicalBody(i) => Mutation::NonCanonicalBody(at(i)),
        Mutation::Move { from, to } => Mutation::Move {
            from: at(from),
            to: at(to),
        },
        Mutation::Drop(i) => Mutation::Drop(at(i)),
    }
}

fn mutate(h: &History, mutation: &Mutation) -> Vec<pb::Envelope> {
    let mut out = h.envelopes.clone();
    let n = out.len();
    match *mutation {
        Mutation::None => {}
        Mutation::FlipSignature(i) if i < n => out[i].signatures[0].sig[5] ^= 0x10,
        Mutation::Duplicate { from, to } if from < to && to <= n => {
            let copy = out[from].clone();
            out.insert(to, copy);
        }
        Mutation::Stranger(i) if i < n => {
            let stranger = key(250);
            let mut header = pb::Statement::decode(out[i].payload.as_ref()).expect("header");
            header.key_id = KeyId::of(&stranger.verifying_key()).to_string();
            out[i] = resign(header.encode_to_vec(), out[i].body.to_vec(), &stranger);
        }
        Mutation::SwapBody { target, source }
            if target < n && source < n && out[target].body != out[source].body =>
        {
            out[target].body = out[source].body.clone();
        }
        Mutation::NonCanonicalBody(i) if i < n => {
            // An unknown field (number 99, varint 1) after the body, correctly hashed and signed.
            let mut body = out[i].body.to_vec();
            body.extend_from_slice(&[0x98, 0x06, 0x01]);
            let mut header = pb::Statement::decode(out[i].payload.as_ref()).expect("header");
            use sha2::Digest;
            header.body_sha256 = sha2::Sha256::digest(&body).to_vec();
            header.body_bytes = body.len() as u64;
            let signer = signer_of(h, &header.key_id);
            out[i] = resign(header.encode_to_vec(), body, &signer);
        }
        Mutation::Move { from, to } if from < n && to < n && from != to && to > 0 => {
            let e = out.remove(from);
            out.insert(to, e);
        }
        Mutation::Drop(i) if i < n => {
            out.remove(i);
        }
        _ => {}
    }
    out
}

/// The signing key with this key id among the history's keys (members' current and past keys
/// are regenerated from their seeds).
fn signer_of(h: &History, key_id: &str) -> SigningKey {
    std::iter::once(h.admin.clone())
        .chain(std::iter::once(h.hub.clone()))
        .chain(h.keys.iter().cloned())
        .chain((10..=255u8).map(key))
        .find(|k| KeyId::of(&k.verifying_key()).to_string() == key_id)
        .expect("a known key")
}

/// The writer's verdict: the first submission not logged as it stands.
fn writer_verdict(envelopes: &[pb::Envelope], rt: &tokio::runtime::Runtime) -> Option<u64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &StoreConfig::default()).expect("store");
    for (i, envelope) in envelopes.iter().enumerate() {
        let logged = ParsedEnvelope::parse(envelope.clone())
            .ok()
            .filter(|p| p.statement.is_some())
            .and_then(|p| store.registry().verify(p).ok())
            .and_then(|(verified, _)| rt.block_on(store.append(verified)).ok())
            .is_some_and(|appended| !appended.already_present);
        if !logged {
            return Some(i as u64);
        }
    }
    None
}

/// The log as a hub would serve it: positions in order, receipt times increasing.
fn log_entries(envelopes: &[pb::Envelope], base: i64) -> Vec<Entry> {
    envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| Entry {
            seq: i as u64,
            received_at_ms: base + i as i64,
            statement_id: StatementId::of(&e.payload_type, &e.payload).0.to_vec(),
            envelope: Some(e.clone()),
            erased_by: None,
            relay: None,
        })
        .collect()
}

fn entry_of(location: &Location) -> Option<u64> {
    match location {
        Location::Entry(seq) => Some(*seq),
        _ => None,
    }
}

fn replica_verdict(entries: Vec<Entry>, filter: SyncFilter) -> Option<u64> {
    let entries = entries
        .into_iter()
        .map(|mut e| {
            if let Some(env) = &mut e.envelope
                && let Ok(p) = ParsedEnvelope::parse(pb::Envelope {
                    body: Default::default(),
                    ..env.clone()
                })
                && !filter.selects(&p.header)
            {
                env.body = Default::default();
            }
            e
        })
        .collect();
    let mut replica = Replica::new().with_filter(filter);
    match replica.append(entries, &mut SeenMap::default()) {
        Ok(_) => None,
        Err(e) => Some(entry_of(&e.location).expect("an entry fails")),
    }
}

fn auditor_verdict(entries: &[Entry], hub: &SigningKey) -> Option<u64> {
    let mut tree = MemoryTree::new();
    for e in entries {
        let id = StatementId::from_slice(&e.statement_id).expect("id");
        tree.append(&leaf_data(&id, e.received_at_ms));
    }
    let signer = CheckpointSigner::new(HUB, hub.clone()).expect("signer");
    let note = signer
        .sign(TreeSize(entries.len() as u64), tree.root())
        .expect("sign")
        .into_note();
    let mut verifier = Verifier::new();
    verifier.checkpoint(note).expect("checkpoint");
    let result = entries
        .iter()
        .try_for_each(|e| verifier.entry(e.to_wire()))
        .and_then(|()| verifier.finish().map(|_| ()));
    match result {
        Ok(()) => None,
        Err(e) => Some(entry_of(&e.location).expect("an entry fails")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn writer_member_and_auditor_agree(ops in prop::collection::vec(op(), 1..24), mutation in mutation()) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let h = history(&ops);
        let mutation = scaled(&mutation, h.envelopes.len());
        let envelopes = mutate(&h, &mutation);
        let entries = log_entries(&envelopes, now_ms());
        let writer = writer_verdict(&envelopes, &rt);
        let member = replica_verdict(entries.clone(), SyncFilter::default());
        let auditor = auditor_verdict(&entries, &h.hub);
        prop_assert_eq!(writer, member, "writer vs member replica ({:?})", mutation);
        prop_assert_eq!(member, auditor, "member replica vs auditor ({:?})", mutation);
        // Mutations that break one entry whatever else happened are refused exactly there.
        let expected = match mutation {
            Mutation::None => Some(None),
            Mutation::FlipSignature(i) | Mutation::Stranger(i) | Mutation::NonCanonicalBody(i) => {
                Some(Some(i as u64))
            }
            Mutation::Duplicate { to, .. } => Some(Some(to as u64)),
            _ => None,
        };
        if let Some(expected) = expected {
            prop_assert_eq!(member, expected, "{:?}", mutation);
        }
        // A member whose filter withholds every hash set's body sees the same verdict, except
        // for a mutation of a body it never receives.
        let pdq_only = SyncFilter::new(vec![], vec![HashType::Pdq], vec![], vec![]);
        let filtered = replica_verdict(entries, pdq_only);
        match (mutation.body_only(), member) {
            (Some(i), Some(seq)) if seq == i as u64 && filtered != member => {
                prop_assert!(filtered.is_none_or(|f| f > seq), "filtered {filtered:?} vs {member:?}");
            }
            _ => prop_assert_eq!(filtered, member, "filtered member replica ({:?})", mutation),
        }
    }
}
