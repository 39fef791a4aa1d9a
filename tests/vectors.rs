//! The published test vectors (docs/test-vectors/*.json, described in docs/PROTOCOL.md §7) must
//! match the code byte for byte, and each must verify from its own fields alone.
//!
//! One small log, made with fixed keys, nonces and times: entry 0 the genesis (admins `alice`
//! and `bob`, quorum 2, signed by alice and the hub key), entry 1 a membership change admitting
//! `acme` (signed by alice and bob), entry 2 a hash set and entry 3 a risk signal by acme;
//! checkpoints of sizes 3 and 4; an inclusion proof, a consistency proof, and entry 2 as a sync
//! filtered to risk signals receives it (header and signatures, body withheld).
//!
//! `settings-change.json` is what would be entry 4: a hub checkpoint-key rotation issued by
//! alice and co-signed by bob and the new hub key; it is not in the checkpointed log.
//! `retraction.json` is another would-be entry 4: acme retracts entry 1 of its hash set.
//! `restricted-hash-set.json` is a third: a hash set by acme restricted to bob (§2.7).
//! `opinion.json` is another: alice and bob (quorum 2) quarantine entry 0 of acme's hash set.
//! `erasure.json` is another: alice and bob (quorum 2) erase acme's hash set (§2.8).
//! `relayed-entry.json` is entry 3 as another hub relays it (§3.10), with entry 2 a gap leaf.
//!
//! Regenerate with `UPDATE_TEST_VECTORS=1 cargo test --test integration vectors::`, only on a deliberate
//! protocol change (record it in CHANGELOG.md). `clients/python/check_vectors.py` checks the
//! same files with Python's protobuf.

use coalition_hub::governance::cosign;
use coalition_hub::lifecycle::{EntryState, HashKey, Opinion, Retraction, Target, Verdict};
use coalition_hub::log::{
    CheckpointSigner, Hash, LeafIndex, MemoryTree, SignedCheckpoint, TreeSize, VerifierKey,
    consistency_proof, inclusion_proof, leaf_hash, verify_consistency_between_checkpoints,
    verify_inclusion_in_checkpoint,
};
use coalition_hub::membership::{Action, Admission, Change, Genesis, KeyId, MemberId, Role};
use coalition_hub::pb;
use coalition_hub::replica::{Content, Entry, Fault, Relay, Replica, SeenMap};
use coalition_hub::settings::{Section, SettingsChange};
use coalition_hub::statement::{
    Body, Category, HashEntry, HashSet, HashType, Header, Indicator, Kind, Label, PAYLOAD_TYPE,
    Reader, Recipients, RiskSignal, Severity, SignalCategory, Statement, StatementId, SyncFilter,
    pae, sign_statement, sign_statement_for,
};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use prost::Message;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/test-vectors");
const HUB_NAME: &str = "coalition-hub.example/log";
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

// ---------------------------------------------------------------------------------------------
// The tests: each vector equals what the code makes, then verifies from its own fields.
// ---------------------------------------------------------------------------------------------

#[test]
fn hash_set_vector() {
    let v = published("hash-set.json", make_statement(&fixture(), 2));
    check_statement(&v);
}

#[test]
fn risk_signal_vector() {
    let v = published("risk-signal.json", make_statement(&fixture(), 3));
    check_statement(&v);
}

#[test]
fn genesis_vector() {
    let v = published("genesis.json", make_statement(&fixture(), 0));
    check_statement(&v);
    // Signed by the first admin (the issuer) and by the hub key the genesis names.
    let body = &v["body"]["genesis"];
    let sigs = v["signatures"].as_array().expect("signatures");
    assert_eq!(sigs.len(), 2);
    assert_eq!(
        sigs[0]["public_key_hex"],
        body["admins"][0]["public_keys"][0]["public_key_hex"]
    );
    assert_eq!(sigs[1]["public_key_hex"], body["hub_public_key_hex"]);
    assert_eq!(v["header"]["issuer"], body["admins"][0]["member_id"]);
}

#[test]
fn membership_change_vector() {
    let v = published("membership-change.json", make_statement(&fixture(), 1));
    check_statement(&v);
    // Two co-signers, both admins the genesis names: quorum 2 met.
    // (genesis_vector checks that this is the published genesis.json.)
    let genesis = make_statement(&fixture(), 0);
    let admins: Vec<&Value> = genesis["body"]["genesis"]["admins"]
        .as_array()
        .expect("admins")
        .iter()
        .map(|a| &a["public_keys"][0]["public_key_hex"])
        .collect();
    let sigs = v["signatures"].as_array().expect("signatures");
    assert_eq!(sigs.len(), 2);
    for s in sigs {
        assert!(
            admins.contains(&&s["public_key_hex"]),
            "{s} is not an admin"
        );
    }
    assert_eq!(genesis["body"]["genesis"]["quorum"], 2);
}

#[test]
fn settings_change_vector() {
    let f = fixture();
    let rotation = settings_rotation(&f);
    let v = published("settings-change.json", make_statement_of(&rotation));
    check_statement(&v);
    let sigs = v["signatures"].as_array().expect("signatures");
    assert_eq!(sigs.len(), 3);
    assert_eq!(
        sigs[2]["public_key_hex"],
        v["body"]["settings"]["hub_public_key_hex"]
    );
    // It replays as entry 4: checkpoints up to size 4 stay under the old hub key, size 5 is
    // signed by the new one, and the old key's checkpoint of size 5 is refused.
    let mut entries: Vec<Entry> = f.logged.iter().map(|l| l.entry(true)).collect();
    entries.push(rotation.entry(true));
    let mut tree = MemoryTree::new();
    for l in f.logged.iter().chain([&rotation]) {
        tree.append(&l.leaf_data());
    }
    let root5 = coalition_hub::log::root(&tree, TreeSize(5)).expect("root");
    let new_hub = CheckpointSigner::new(HUB_NAME, NEW_HUB.key()).expect("signer");
    let new5 = new_hub.sign(TreeSize(5), root5).expect("sign").into_note();
    let old5 = f.hub.sign(TreeSize(5), root5).expect("sign").into_note();
    let mut auditor = Replica::new();
    auditor
        .expect_checkpoint(f.checkpoint(4), false)
        .expect("4");
    auditor.expect_checkpoint(new5, false).expect("5");
    auditor
        .append(entries.clone(), &mut SeenMap::default())
        .expect("the rotation replays");
    auditor.finish().expect("proven under both keys");
    let mut refusing = Replica::new();
    refusing.expect_checkpoint(old5, false).expect("held");
    let err = refusing
        .append(entries, &mut SeenMap::default())
        .expect_err("old key after the rotation");
    assert!(matches!(err.fault, Fault::RetiredHubKey { .. }), "{err}");
}

#[test]
fn retraction_vector() {
    let f = fixture();
    let retraction = retraction(&f);
    let v = published("retraction.json", make_statement_of(&retraction));
    check_statement(&v);
    assert_eq!(
        v["body"]["retraction"]["statement_id_hex"],
        f.logged[2].id().to_string()
    );
    // It replays as entry 4, also for a member whose filter selects only risk signals (it
    // comes whole), and withdraws entry 1 of the hash set only.
    let mut entries: Vec<Entry> = f.logged.iter().map(|l| l.entry(true)).collect();
    entries[2] = f.logged[2].entry(false);
    entries.push(retraction.entry(true));
    let filter = SyncFilter::new(vec![Kind::RiskSignal], vec![], vec![], vec![]);
    let mut reader = Replica::new().with_filter(filter);
    reader
        .append(entries, &mut SeenMap::default())
        .expect("the retraction replays");
    let acme = member("acme");
    let target = Target {
        id: f.logged[2].id(),
        seq: 2,
        issuer: &acme,
        kind: Kind::HashSet,
    };
    let registry = reader.registry();
    assert_eq!(registry.entry_state(&target, 1), EntryState::Retracted);
    assert_eq!(registry.entry_state(&target, 0), EntryState::Active);
}

#[test]
fn restricted_hash_set_vector() {
    let f = fixture();
    let restricted = restricted_hash_set(&f);
    let v = published("restricted-hash-set.json", make_statement_of(&restricted));
    check_statement(&v);
    assert_eq!(v["header"]["recipients"], json!(["bob"]));
    assert_eq!(v["header"]["hash_types"], json!([]));
    assert_eq!(v["header"]["labels"], json!([]));
    // It replays as entry 4 with its body withheld for a member it does not name; a replica
    // reading as bob, as its issuer, or as an auditor refuses that.
    let replay = |reader: Reader| {
        let mut entries: Vec<Entry> = f.logged.iter().map(|l| l.entry(true)).collect();
        entries.push(restricted.entry(false));
        Replica::new()
            .reading_as(reader)
            .append(entries, &mut SeenMap::default())
    };
    let accepted = replay(Reader::Member(member("alice"))).expect("withheld from alice");
    assert_eq!(accepted.last().expect("entry 4").content, Content::Withheld);
    for reader in [
        Reader::Member(member("bob")),
        Reader::Member(member("acme")),
        Reader::Everything,
    ] {
        let err = replay(reader.clone()).expect_err("withheld from a reader");
        assert!(
            matches!(err.fault, Fault::WithheldSelected),
            "{reader:?}: {err}"
        );
    }
}

#[test]
fn opinion_vector() {
    let f = fixture();
    let quarantine = quarantine(&f);
    let v = published("opinion.json", make_statement_of(&quarantine));
    check_statement(&v);
    assert_eq!(
        v["body"]["opinion"]["statement_id_hex"],
        f.logged[2].id().to_string()
    );
    // It replays as entry 4, whole even for a member filtering on risk signals, and
    // quarantines entry 0 of the hash set only.
    let mut entries: Vec<Entry> = f.logged.iter().map(|l| l.entry(true)).collect();
    entries[2] = f.logged[2].entry(false);
    entries.push(quarantine.entry(true));
    let filter = SyncFilter::new(vec![Kind::RiskSignal], vec![], vec![], vec![]);
    let mut reader = Replica::new().with_filter(filter);
    reader
        .append(entries, &mut SeenMap::default())
        .expect("the quarantine replays");
    let acme = member("acme");
    let target = Target {
        id: f.logged[2].id(),
        seq: 2,
        issuer: &acme,
        kind: Kind::HashSet,
    };
    let registry = reader.registry();
    assert_eq!(registry.entry_state(&target, 0), EntryState::Quarantined);
    assert_eq!(registry.entry_state(&target, 1), EntryState::Active);
}

#[test]
fn erasure_vector() {
    let f = fixture();
    let erasure = erasure(&f);
    let v = published("erasure.json", make_statement_of(&erasure));
    check_statement(&v);
    assert_eq!(v["body"]["retraction"]["erase"], true);
    // It replays as entry 4 for an auditor (every body required) with entry 2's body erased
    // and claimed so (`erased_by` 4), and the hash set is `erased`.
    let log = |claim: u64| {
        let mut entries: Vec<Entry> = f.logged.iter().map(|l| l.entry(true)).collect();
        entries[2] = f.logged[2].entry(false);
        entries[2].erased_by = Some(claim);
        entries.push(erasure.entry(true));
        entries
    };
    let mut auditor = Replica::new();
    auditor
        .append(log(4), &mut SeenMap::default())
        .expect("the erasure replays with the body missing");
    let acme = member("acme");
    let target = Target {
        id: f.logged[2].id(),
        seq: 2,
        issuer: &acme,
        kind: Kind::HashSet,
    };
    for index in [0, 1] {
        assert_eq!(
            auditor.registry().entry_state(&target, index),
            EntryState::Erased
        );
    }
    // A claim naming another entry (the risk signal) is refused at that entry (rule 13a).
    let e = Replica::new()
        .append(log(3), &mut SeenMap::default())
        .expect_err("a false erasure claim");
    assert!(
        matches!(
            e.fault,
            Fault::FalseErasure {
                target: 2,
                by: 3,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn checkpoint_vector() {
    let v = published("checkpoint.json", make_checkpoint(&fixture()));
    let key = verifier_key(&v);
    assert_eq!(
        key.to_string(),
        str_of(&v, "verifier_key"),
        "the verifier key is <name>+<key id>+<base64(0x01 || public key)>"
    );
    let note = str_of(&v, "note");
    let checkpoint = SignedCheckpoint::verify(note, &key).expect("the note verifies");
    assert!(note.starts_with(&format!("{}\n", str_of(&v, "signed_text"))));
    assert_eq!(checkpoint.size().0, u64_of(&v, "tree_size"));
    assert_eq!(checkpoint.root().to_hex(), str_of(&v, "root_hex"));
    // The root is the RFC 9162 root of the entries' leaves.
    let mut tree = MemoryTree::new();
    for (i, e) in v["entries"].as_array().expect("entries").iter().enumerate() {
        assert_eq!(u64_of(e, "seq"), i as u64);
        let data = leaf_data_of(e);
        assert_eq!(hex::encode(&data), str_of(e, "leaf_data_hex"));
        assert_eq!(leaf_hash(&data).to_hex(), str_of(e, "leaf_hash_hex"));
        tree.append(&data);
    }
    assert_eq!(tree.size().0, checkpoint.size().0);
    assert_eq!(tree.root(), checkpoint.root());
}

#[test]
fn inclusion_proof_vector() {
    let v = published("inclusion-proof.json", make_inclusion(&fixture()));
    let data = leaf_data_of(&v);
    assert_eq!(hex::encode(&data), str_of(&v, "leaf_data_hex"));
    assert_eq!(leaf_hash(&data).to_hex(), str_of(&v, "leaf_hash_hex"));
    let checkpoint = verify_inclusion_in_checkpoint(
        &verifier_key(&v),
        str_of(&v, "checkpoint"),
        &data,
        LeafIndex(u64_of(&v, "leaf_index")),
        &hashes_of(&v, "audit_path_hex"),
    )
    .expect("the inclusion proof verifies");
    assert_eq!(checkpoint.size().0, u64_of(&v, "tree_size"));
    assert_eq!(checkpoint.root().to_hex(), str_of(&v, "root_hex"));
}

#[test]
fn consistency_proof_vector() {
    let v = published("consistency-proof.json", make_consistency(&fixture()));
    let (old, new) = verify_consistency_between_checkpoints(
        &verifier_key(&v),
        str_of(&v, "old_checkpoint"),
        str_of(&v, "new_checkpoint"),
        &hashes_of(&v, "proof_hex"),
    )
    .expect("the consistency proof verifies");
    assert_eq!(old.size().0, u64_of(&v, "old_size"));
    assert_eq!(old.root().to_hex(), str_of(&v, "old_root_hex"));
    assert_eq!(new.size().0, u64_of(&v, "new_size"));
    assert_eq!(new.root().to_hex(), str_of(&v, "new_root_hex"));
}

#[test]
fn filtered_sync_leaf_vector() {
    let v = published("filtered-sync-leaf.json", make_filtered_leaf(&fixture()));
    // The wire entry is the fields below, body withheld.
    let entry = pb::SyncEntry::decode(bytes_of(&v, "sync_entry_hex").as_slice()).expect("entry");
    assert_eq!(entry.encode_to_vec(), bytes_of(&v, "sync_entry_hex"));
    assert_eq!(entry.seq, u64_of(&v, "seq"));
    assert_eq!(entry.received_at_ms, i64_of(&v, "received_at_ms"));
    assert_eq!(entry.statement_id, bytes_of(&v, "statement_id_hex"));
    let envelope = entry.envelope.clone().expect("envelope");
    assert!(envelope.body.is_empty(), "the body is withheld");
    assert_eq!(envelope.payload.to_vec(), bytes_of(&v, "header_hex"));
    // The header and its signatures verify without the body.
    let header = check_header_and_signatures(&v);
    // The filter does not select it: that is why the body may be withheld.
    let filter = SyncFilter::new(vec![Kind::RiskSignal], Vec::new(), Vec::new(), Vec::new());
    assert_eq!(v["filter"], json!({"kinds": ["risk_signal"]}));
    assert!(!filter.selects(&header));
    // Its leaf is in the checkpoint.
    let data = leaf_data_of(&v);
    assert_eq!(hex::encode(&data), str_of(&v, "leaf_data_hex"));
    assert_eq!(leaf_hash(&data).to_hex(), str_of(&v, "leaf_hash_hex"));
    verify_inclusion_in_checkpoint(
        &verifier_key(&v),
        str_of(&v, "checkpoint"),
        &data,
        LeafIndex(u64_of(&v, "seq")),
        &hashes_of(&v, "audit_path_hex"),
    )
    .expect("the withheld entry is proven in the checkpoint");
}

#[test]
fn relayed_entry_vector() {
    let v = published("relayed-entry.json", make_relayed(&fixture()));
    let wire = bytes_of(&v, "relayed_entry_hex");
    let entry = pb::SyncEntry::decode(wire.as_slice()).expect("entry");
    assert_eq!(entry.encode_to_vec(), wire, "canonical");
    assert_eq!(entry.seq, u64_of(&v, "seq"));
    assert_eq!(entry.received_at_ms, i64_of(&v, "received_at_ms"));
    assert_eq!(entry.statement_id, bytes_of(&v, "statement_id_hex"));
    let envelope = entry.envelope.clone().expect("envelope");
    assert_eq!(envelope.payload.to_vec(), bytes_of(&v, "header_hex"));
    assert_eq!(envelope.body.to_vec(), bytes_of(&v, "body_hex"));
    check_header_and_signatures(&v);
    let relay = Relay::from_wire(entry.relay.clone().expect("relay")).expect("relay");
    let r = &v["relay"];
    assert_eq!(relay.origin.0.to_vec(), bytes_of(r, "origin_genesis_hex"));
    assert_eq!(relay.origin_seq, u64_of(r, "origin_seq"));
    assert_eq!(
        relay.origin_received_at_ms,
        i64_of(r, "origin_received_at_ms")
    );
    let gaps: Vec<String> = relay.gap_leaves.iter().map(hex::encode).collect();
    assert_eq!(json!(gaps), r["gap_leaves_hex"]);
    let checkpoint = relay.checkpoint.clone().expect("origin checkpoint");
    assert_eq!(checkpoint.note, str_of(r, "checkpoint"));
    assert!(checkpoint.proofs.is_empty());
    // The 88-byte leaf here commits to the provenance.
    let leaf = coalition_hub::replica::leaf_data_of(&entry).expect("leaf");
    assert_eq!(leaf.len(), 88);
    assert_eq!(hex::encode(&leaf), str_of(&v, "relayed_leaf_data_hex"));
    assert_eq!(
        leaf_hash(&leaf).to_hex(),
        str_of(&v, "relayed_leaf_hash_hex")
    );
    // The origin's log rebuilt: the leaves before, the gap leaf, the statement's own leaf
    // there; its root is the origin's signed checkpoint's.
    let own = bytes_of(&v, "origin_leaf_data_hex");
    let mut tree = MemoryTree::new();
    for h in v["origin_leaves_before_hex"].as_array().expect("leaves") {
        tree.append(&hex::decode(h.as_str().expect("hex")).expect("hex"));
    }
    for gap in &relay.gap_leaves {
        tree.append(gap);
    }
    tree.append(&own);
    let size = TreeSize(relay.origin_seq + 1);
    let root = coalition_hub::log::root(&tree, size).expect("root");
    assert_eq!(root.to_hex(), str_of(&v, "origin_root_hex"));
    let verified = SignedCheckpoint::verify(
        &checkpoint.note,
        &verifier_key_at(&v, "origin_verifier_key"),
    )
    .expect("the origin's checkpoint verifies");
    assert_eq!((verified.size(), verified.root()), (size, root));
}

/// The vectors' log is a valid log for the replica, whole and as a filtered member sees it.
#[test]
fn vectors_form_a_valid_log() {
    let f = fixture();
    let entries: Vec<Entry> = f.logged.iter().map(|l| l.entry(true)).collect();
    let (note3, note4) = (f.checkpoint(3), f.checkpoint(4));

    // An auditor: every entry, then every checkpoint reached, and the log ends proven.
    let mut auditor = Replica::new().pin_genesis(f.logged[0].id());
    auditor
        .expect_checkpoint(note3.clone(), false)
        .expect("note 3");
    auditor
        .expect_checkpoint(note4.clone(), false)
        .expect("note 4");
    let accepted = auditor
        .append(entries.clone(), &mut SeenMap::default())
        .expect("the vectors' log replays");
    assert!(accepted.iter().all(|a| a.statement().is_some()));
    auditor
        .finish()
        .expect("the log ends with a checkpoint of its size");
    assert_eq!(auditor.verified_checkpoints(), 2);

    // A member syncing risk signals only: entry 2 comes without its body.
    let risk_only = SyncFilter::new(vec![Kind::RiskSignal], Vec::new(), Vec::new(), Vec::new());
    let filtered: Vec<Entry> = f.logged.iter().map(|l| l.entry(l.seq != 2)).collect();
    let mut member = Replica::new().with_filter(risk_only);
    let accepted = member
        .append(filtered.clone(), &mut SeenMap::default())
        .expect("a filtered sync replays");
    assert_eq!(accepted[2].content, Content::Withheld);
    let claim = member.check_checkpoint(&note4).expect("checkpoint");
    assert!(claim.needs().is_empty(), "the replica holds exactly size 4");
    member.accept_checkpoint(claim, &[]).expect("proven");

    // A member whose filter selects hash sets refuses the same withheld entry.
    let mut selecting = Replica::new();
    let err = selecting
        .append(filtered, &mut SeenMap::default())
        .expect_err("a selected statement withheld");
    assert_eq!(err.fault, Fault::WithheldSelected);
}

// ---------------------------------------------------------------------------------------------
// Independent checks: from a vector's own fields, with the library's primitives only.
// ---------------------------------------------------------------------------------------------

/// A statement vector: header and body decode strictly and re-encode to the same bytes, the
/// body digest and length are the header's, the PAE and id are recomputed, every signature
/// verifies, and the leaf is recomputed.
fn check_statement(v: &Value) {
    let header = check_header_and_signatures(v);
    let body_bytes = bytes_of(v, "body_hex");
    let wire = pb::StatementBody::decode(body_bytes.as_slice()).expect("body decodes");
    assert_eq!(wire.encode_to_vec(), body_bytes, "body is canonical");
    let digest: [u8; 32] = Sha256::digest(&body_bytes).into();
    assert_eq!(hex::encode(digest), str_of(v, "body_sha256_hex"));
    assert_eq!(header.body_sha256, digest);
    assert_eq!(header.body_bytes, body_bytes.len() as u64);
    let statement = Statement::from_parts(&header, &body_bytes).expect("body matches its header");
    assert_eq!(body_json(&statement.body), v["body"]);
    // The envelope as Submit carries it.
    let envelope = pb::Envelope::decode(bytes_of(v, "envelope_hex").as_slice()).expect("env");
    assert_eq!(envelope.payload_type, str_of(v, "payload_type"));
    assert_eq!(envelope.payload.to_vec(), bytes_of(v, "header_hex"));
    assert_eq!(envelope.body.to_vec(), body_bytes);
    let sigs = v["signatures"].as_array().expect("signatures");
    assert_eq!(envelope.signatures.len(), sigs.len());
    for (got, want) in envelope.signatures.iter().zip(sigs) {
        assert_eq!(got.key_id, str_of(want, "key_id"));
        assert_eq!(hex::encode(&got.sig), str_of(want, "sig_hex"));
    }
    // Its Merkle leaf.
    let log = &v["log"];
    let data = leaf_data_of(&json!({
        "statement_id_hex": v["statement_id_hex"],
        "received_at_ms": log["received_at_ms"],
    }));
    assert_eq!(hex::encode(&data), str_of(log, "leaf_data_hex"));
    assert_eq!(leaf_hash(&data).to_hex(), str_of(log, "leaf_hash_hex"));
}

/// The header of a vector (with or without its body): strict decoding, canonical bytes, PAE,
/// statement id, and each signature (`verify_strict`) by the key its key id names.
fn check_header_and_signatures(v: &Value) -> Header {
    let payload_type = str_of(v, "payload_type");
    assert_eq!(payload_type, PAYLOAD_TYPE);
    let header_bytes = bytes_of(v, "header_hex");
    let wire = pb::Statement::decode(header_bytes.as_slice()).expect("header decodes");
    assert_eq!(wire.encode_to_vec(), header_bytes, "header is canonical");
    let header = Header::decode(&header_bytes).expect("a valid header");
    assert_eq!(header_json(&header), v["header"]);
    let pae_bytes = pae(payload_type, &header_bytes);
    assert_eq!(hex::encode(&pae_bytes), str_of(v, "pae_hex"));
    let id: [u8; 32] = Sha256::digest(&pae_bytes).into();
    assert_eq!(hex::encode(id), str_of(v, "statement_id_hex"));
    let sigs = v["signatures"].as_array().expect("signatures");
    assert!((1..=16).contains(&sigs.len()));
    let mut key_ids = Vec::new();
    for s in sigs {
        let public: [u8; 32] = bytes_of(s, "public_key_hex").try_into().expect("32 bytes");
        let public = VerifyingKey::from_bytes(&public).expect("a public key");
        let key_id = KeyId::of(&public).to_string();
        assert_eq!(key_id, str_of(s, "key_id"));
        assert!(!key_ids.contains(&key_id), "one signature per key id");
        if let Some(seed) = s.get("private_key_seed_hex") {
            let seed: [u8; 32] = hex::decode(seed.as_str().expect("seed"))
                .expect("hex")
                .try_into()
                .expect("32 bytes");
            assert_eq!(SigningKey::from_bytes(&seed).verifying_key(), public);
        }
        let sig = Signature::from_slice(&bytes_of(s, "sig_hex")).expect("64 bytes");
        public
            .verify_strict(&pae_bytes, &sig)
            .expect("the signature verifies over the PAE");
        key_ids.push(key_id);
    }
    assert!(
        key_ids.contains(&header.key_id.to_string()),
        "the header's key signed"
    );
    header
}

fn verifier_key_at(v: &Value, key: &str) -> VerifierKey {
    VerifierKey::parse(str_of(v, key)).expect("verifier key")
}

fn verifier_key(v: &Value) -> VerifierKey {
    VerifierKey::parse(str_of(v, "verifier_key")).expect("a verifier key")
}

/// `statement_id || received_at_ms` (8 bytes, big-endian), from a vector's fields.
fn leaf_data_of(v: &Value) -> Vec<u8> {
    let mut data = bytes_of(v, "statement_id_hex");
    assert_eq!(data.len(), 32);
    data.extend_from_slice(&i64_of(v, "received_at_ms").to_be_bytes());
    data
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key}: a string"))
}

fn bytes_of(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(str_of(v, key)).unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key}: a u64"))
}

fn i64_of(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("{key}: an i64"))
}

fn hashes_of(v: &Value, key: &str) -> Vec<Hash> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key}: an array"))
        .iter()
        .map(|h| Hash::from_hex(h.as_str().expect("hex")).expect("a hash"))
        .collect()
}

/// Writes the vector when `UPDATE_TEST_VECTORS` is set, then reads the published file and
/// requires it to equal what the code makes.
fn published(name: &str, want: Value) -> Value {
    let path = format!("{DIR}/{name}");
    if std::env::var_os("UPDATE_TEST_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&want).expect("json") + "\n";
        std::fs::write(&path, text).expect("write vector");
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let got: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(
        got, want,
        "{name} drifted from the code; regenerate with UPDATE_TEST_VECTORS=1 only on a deliberate protocol change"
    );
    got
}

// ---------------------------------------------------------------------------------------------
// The fixture: the log the vectors are made from.
// ---------------------------------------------------------------------------------------------

struct Signer {
    name: &'static str,
    seed: [u8; 32],
}

impl Signer {
    fn key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.seed)
    }
}

const HUB: Signer = Signer {
    name: "hub",
    seed: [0x07; 32],
};
const ALICE: Signer = Signer {
    name: "alice",
    seed: [0x21; 32],
};
const BOB: Signer = Signer {
    name: "bob",
    seed: [0x22; 32],
};
const ACME: Signer = Signer {
    name: "acme",
    seed: [0x11; 32],
};
const NEW_HUB: Signer = Signer {
    name: "new hub key",
    seed: [0x08; 32],
};

/// Entry 4 after the fixture's log: a hub key rotation to `NEW_HUB`, issued by alice and
/// co-signed by bob (quorum 2) and the new key (proof of possession).
fn settings_rotation(f: &Fixture) -> Logged {
    let body = Body::Settings(SettingsChange {
        reason: "yearly hub key rotation".into(),
        section: Section::HubKey(NEW_HUB.key().verifying_key()),
    });
    let seq = f.logged.len() as u64;
    Logged {
        seq,
        received_at_ms: T0 + seq as i64 * 60_000 + 1_000,
        envelope: signed("alice", seq as u8, body, &[&ALICE, &BOB, &NEW_HUB]),
        signers: vec![&ALICE, &BOB, &NEW_HUB],
    }
}

/// What would be entry 4: acme retracts entry 1 of its hash set (entry 2).
fn retraction(f: &Fixture) -> Logged {
    let body = Body::Retraction(Retraction {
        target: f.logged[2].id(),
        entries: vec![1],
        reason: "hash of legitimate content".into(),
        admin_quorum: false,
        erase: false,
    });
    let seq = f.logged.len() as u64;
    Logged {
        seq,
        received_at_ms: T0 + seq as i64 * 60_000 + 1_000,
        envelope: signed("acme", seq as u8, body, &[&ACME]),
        signers: vec![&ACME],
    }
}

/// What would be entry 4: acme's hash set (entry 2's body) restricted to bob.
fn restricted_hash_set(f: &Fixture) -> Logged {
    let body = Statement::from_parts(
        &Header::decode(&f.logged[2].envelope.payload).expect("header"),
        &f.logged[2].envelope.body,
    )
    .expect("statement")
    .body;
    let seq = f.logged.len() as u64;
    let statement = Statement {
        issuer: member("acme"),
        key_id: KeyId::of(&ACME.key().verifying_key()),
        issued_at_ms: T0 + seq as i64 * 60_000,
        nonce: nonce(seq as u8 + 1),
        body,
    };
    let recipients = Recipients::from_members(vec![member("bob")], &member("acme")).expect("ok");
    Logged {
        seq,
        received_at_ms: T0 + seq as i64 * 60_000 + 1_000,
        envelope: sign_statement_for(&statement, &recipients, &ACME.key()),
        signers: vec![&ACME],
    }
}

/// What would be entry 4: alice and bob (quorum 2) quarantine entry 0 of acme's hash set
/// (entry 2), copying the entry's hash.
fn quarantine(f: &Fixture) -> Logged {
    let logged = &f.logged[2].envelope;
    let header = Header::decode(&logged.payload).expect("header");
    let Body::HashSet(set) = Statement::from_parts(&header, &logged.body)
        .expect("statement")
        .body
    else {
        panic!("entry 2 is a hash set");
    };
    let body = Body::Opinion(Opinion {
        target: f.logged[2].id(),
        entry: 0,
        verdict: Verdict::Quarantine,
        note: "court order 2026-117".into(),
        hash: Some(HashKey {
            hash_type: set.entries[0].hash_type,
            value: set.entries[0].value.clone(),
        }),
        admin_quorum: true,
    });
    let seq = f.logged.len() as u64;
    Logged {
        seq,
        received_at_ms: T0 + seq as i64 * 60_000 + 1_000,
        envelope: signed("alice", seq as u8, body, &[&ALICE, &BOB]),
        signers: vec![&ALICE, &BOB],
    }
}

/// Alice and bob (quorum 2) erase acme's hash set (entry 2), as would-be entry 4.
fn erasure(f: &Fixture) -> Logged {
    let body = Body::Retraction(Retraction {
        target: f.logged[2].id(),
        entries: vec![],
        reason: "court order 2026-301".into(),
        admin_quorum: true,
        erase: true,
    });
    let seq = f.logged.len() as u64;
    Logged {
        seq,
        received_at_ms: T0 + seq as i64 * 60_000 + 1_000,
        envelope: signed("alice", seq as u8, body, &[&ALICE, &BOB]),
        signers: vec![&ALICE, &BOB],
    }
}

/// A statement of the fixture's log and where it is.
struct Logged {
    seq: u64,
    received_at_ms: i64,
    envelope: pb::Envelope,
    signers: Vec<&'static Signer>,
}

impl Logged {
    fn id(&self) -> StatementId {
        StatementId::of(&self.envelope.payload_type, &self.envelope.payload)
    }

    fn leaf_data(&self) -> Vec<u8> {
        let mut data = self.id().0.to_vec();
        data.extend_from_slice(&self.received_at_ms.to_be_bytes());
        data
    }

    /// The entry as a sync sends it, with or without the body.
    fn entry(&self, with_body: bool) -> Entry {
        let mut envelope = self.envelope.clone();
        if !with_body {
            envelope.body = Default::default();
        }
        Entry {
            seq: self.seq,
            received_at_ms: self.received_at_ms,
            statement_id: self.id().0.to_vec(),
            envelope: Some(envelope),
            erased_by: None,
            relay: None,
        }
    }
}

struct Fixture {
    logged: Vec<Logged>,
    tree: MemoryTree,
    hub: CheckpointSigner,
}

impl Fixture {
    fn checkpoint(&self, size: u64) -> String {
        let root = coalition_hub::log::root(&self.tree, TreeSize(size)).expect("root");
        self.hub
            .sign(TreeSize(size), root)
            .expect("sign")
            .into_note()
    }

    fn root(&self, size: u64) -> Hash {
        coalition_hub::log::root(&self.tree, TreeSize(size)).expect("root")
    }
}

fn member(id: &str) -> MemberId {
    MemberId::parse(id).expect("member id")
}

fn nonce(n: u8) -> [u8; 16] {
    std::array::from_fn(|i| n * 16 + i as u8)
}

/// Signs `body` as `issuer` with the first signer's key, then co-signs with the others.
fn signed(issuer: &str, n: u8, body: Body, signers: &[&'static Signer]) -> pb::Envelope {
    let statement = Statement {
        issuer: member(issuer),
        key_id: KeyId::of(&signers[0].key().verifying_key()),
        issued_at_ms: T0 + i64::from(n) * 60_000,
        nonce: nonce(n),
        body,
    };
    let mut envelope = sign_statement(&statement, &signers[0].key());
    for s in &signers[1..] {
        assert!(cosign(&mut envelope, &s.key()).expect("cosign"));
    }
    envelope
}

fn fixture() -> Fixture {
    let admission = |s: &Signer, display: &str, roles: &[Role]| Admission {
        id: member(s.name),
        display_name: display.into(),
        roles: roles.to_vec(),
        keys: vec![s.key().verifying_key()],
        cert_pins: Vec::new(),
    };
    let genesis = Body::Genesis(Genesis {
        hub_name: HUB_NAME.into(),
        hub_key: HUB.key().verifying_key(),
        admins: vec![
            admission(&ALICE, "Alice (coalition secretariat)", &[Role::Admin]),
            admission(&BOB, "Bob (coalition secretariat)", &[Role::Admin]),
        ],
        quorum: 2,
    });
    let admit = Body::Membership(Change {
        reason: "Acme signed the coalition agreement".into(),
        action: Action::Admit(admission(&ACME, "Acme Trust & Safety", &[Role::Member])),
    });
    let hash_set = Body::HashSet(HashSet {
        expires_at_ms: None,
        description: "test vector".into(),
        entries: vec![
            HashEntry {
                hash_type: HashType::Md5,
                value: hex::decode("d41d8cd98f00b204e9800998ecf8427e").expect("hex"),
                quality: None,
                labels: vec![Label::Category(Category::A1)],
            },
            HashEntry {
                hash_type: HashType::Pdq,
                value: vec![0xa5; 32],
                quality: Some(90),
                labels: vec![Label::Category(Category::B2), Label::Tag("example".into())],
            },
        ],
    });
    let signal = Body::RiskSignal(RiskSignal {
        category: SignalCategory::Sextortion,
        severity: Severity::High,
        title: "Payment-handle sextortion script".into(),
        description: "Accounts open with a fake modelling offer, then demand gift cards.".into(),
        indicators: vec![
            Indicator::Keyword("model scout gift card".into()),
            Indicator::Url("https://scam.example/pay".into()),
            Indicator::Domain("scam.example".into()),
            Indicator::AccountHandle {
                platform: "instagram".into(),
                handle: "scout.example".into(),
            },
            Indicator::Hash(HashEntry {
                hash_type: HashType::Sha256,
                value: vec![0x5a; 32],
                quality: None,
                labels: vec![Label::Category(Category::B1), Label::Tag("script".into())],
            }),
        ],
        first_seen_ms: T0 - 86_400_000,
        last_seen_ms: T0,
        expires_at_ms: Some(T0 + 30 * 86_400_000),
    });
    let envelopes = [
        signed("alice", 0, genesis, &[&ALICE, &HUB]),
        signed("alice", 1, admit, &[&ALICE, &BOB]),
        signed("acme", 2, hash_set, &[&ACME]),
        signed("acme", 3, signal, &[&ACME]),
    ];
    let signers: [Vec<&'static Signer>; 4] = [
        vec![&ALICE, &HUB],
        vec![&ALICE, &BOB],
        vec![&ACME],
        vec![&ACME],
    ];
    let mut tree = MemoryTree::new();
    let logged: Vec<Logged> = envelopes
        .into_iter()
        .zip(signers)
        .enumerate()
        .map(|(i, (envelope, signers))| {
            let seq = i as u64;
            let logged = Logged {
                seq,
                // Received a second after it was issued.
                received_at_ms: T0 + seq as i64 * 60_000 + 1_000,
                envelope,
                signers,
            };
            tree.append(&logged.leaf_data());
            logged
        })
        .collect();
    let hub = CheckpointSigner::new(HUB_NAME, HUB.key()).expect("hub signer");
    Fixture { logged, tree, hub }
}

// ---------------------------------------------------------------------------------------------
// The vectors as the code makes them.
// ---------------------------------------------------------------------------------------------

fn make_statement(f: &Fixture, seq: usize) -> Value {
    make_statement_of(&f.logged[seq])
}

fn make_statement_of(l: &Logged) -> Value {
    let seq = l.seq;
    let header = Header::decode(&l.envelope.payload).expect("header");
    let statement = Statement::from_parts(&header, &l.envelope.body).expect("statement");
    let what = match statement.kind() {
        Kind::HashSet if header.is_restricted() => {
            "A hash set by member 'acme' restricted to bob (the same body as entry 2; the header names the recipients and lists no hash types or labels, docs/PROTOCOL.md §2.7)"
        }
        Kind::HashSet => "A hash set by member 'acme'",
        Kind::RiskSignal => "A risk signal by member 'acme'",
        Kind::Genesis => {
            "The genesis of hub 'coalition-hub.example/log' (admins alice and bob, quorum 2), issued by alice and signed by alice and the hub key"
        }
        Kind::Membership => {
            "A membership change admitting 'acme', issued by alice and co-signed by bob (quorum 2)"
        }
        Kind::Settings => {
            "A settings change rotating the hub checkpoint key, issued by alice and co-signed by bob (quorum 2) and by the new hub key (proof of possession)"
        }
        Kind::Retraction if matches!(&statement.body, Body::Retraction(r) if r.erase) => {
            "An admin-quorum erasure of acme's hash set (entry 2 of the log), issued by alice and co-signed by bob (quorum 2): its body is erased everywhere, its header and leaf stay (docs/PROTOCOL.md §2.8)"
        }
        Kind::Retraction => {
            "A retraction by member 'acme' of entry 1 of its hash set (entry 2 of the log)"
        }
        Kind::Opinion => {
            "An admin-quorum quarantine of entry 0 of acme's hash set (entry 2 of the log), issued by alice and co-signed by bob (quorum 2)"
        }
    };
    let place = if matches!(
        statement.kind(),
        Kind::Settings | Kind::Retraction | Kind::Opinion
    ) || header.is_restricted()
    {
        "after the log in checkpoint.json"
    } else {
        "of the log in checkpoint.json"
    };
    json!({
        "description": format!(
            "{what}: entry {seq} {place}. header_hex is the serialized coalition.v1.Statement (Envelope.payload), body_hex the serialized coalition.v1.StatementBody (Envelope.body); both re-encode to the same bytes. pae = \"DSSEv1\" SP len(payload_type) SP payload_type SP len(header) SP header; statement_id = SHA-256(pae); each signature is ed25519 over pae; key_id = hex(SHA-256(public key)[0..8]); body_sha256 = SHA-256(body)."
        ),
        "payload_type": PAYLOAD_TYPE,
        "header_hex": hex::encode(&l.envelope.payload),
        "body_hex": hex::encode(&l.envelope.body),
        "body_sha256_hex": hex::encode(Sha256::digest(&l.envelope.body)),
        "pae_hex": hex::encode(pae(PAYLOAD_TYPE, &l.envelope.payload)),
        "statement_id_hex": l.id().to_string(),
        "envelope_hex": hex::encode(l.envelope.encode_to_vec()),
        "header": header_json(&header),
        "body": body_json(&statement.body),
        "signatures": signatures_json(l, true),
        "log": {
            "seq": l.seq,
            "received_at_ms": l.received_at_ms,
            "leaf_data_hex": hex::encode(l.leaf_data()),
            "leaf_hash_hex": leaf_hash(&l.leaf_data()).to_hex(),
        },
    })
}

fn signatures_json(l: &Logged, with_seeds: bool) -> Value {
    l.envelope
        .signatures
        .iter()
        .zip(&l.signers)
        .map(|(sig, signer)| {
            let public = signer.key().verifying_key();
            let mut s = json!({
                "signer": signer.name,
                "key_id": sig.key_id,
                "public_key_hex": hex::encode(public.as_bytes()),
                "sig_hex": hex::encode(&sig.sig),
            });
            if with_seeds {
                s["private_key_seed_hex"] = json!(hex::encode(signer.seed));
            }
            s
        })
        .collect()
}

fn make_checkpoint(f: &Fixture) -> Value {
    let size = f.logged.len() as u64;
    let root = f.root(size);
    let verifier = f.hub.verifier_key();
    let signed_text = format!(
        "{HUB_NAME}\n{size}\n{}\n",
        base64_std(root.as_bytes().as_slice())
    );
    let names = [
        "genesis.json",
        "membership-change.json",
        "hash-set.json",
        "risk-signal.json",
    ];
    json!({
        "description": "A signed checkpoint (C2SP signed note) of the 4-entry log the other vectors come from, signed by the hub key the genesis names, with the hub name as origin. Leaf data = statement_id || received_at_ms (8 bytes big-endian); leaf hash = SHA-256(0x00 || leaf data); root per RFC 9162. The signature line is an em dash, a space, the key name, a space and base64(4-byte key id || 64-byte ed25519 signature over signed_text).",
        "hub_name": HUB_NAME,
        "hub_private_key_seed_hex": hex::encode(HUB.seed),
        "hub_public_key_hex": hex::encode(HUB.key().verifying_key().as_bytes()),
        "verifier_key": verifier.to_string(),
        "note_key_id_hex": hex::encode(verifier.key_id().0),
        "entries": f.logged.iter().zip(names).map(|(l, name)| json!({
            "seq": l.seq,
            "received_at_ms": l.received_at_ms,
            "statement_id_hex": l.id().to_string(),
            "leaf_data_hex": hex::encode(l.leaf_data()),
            "leaf_hash_hex": leaf_hash(&l.leaf_data()).to_hex(),
            "statement": name,
        })).collect::<Vec<_>>(),
        "tree_size": size,
        "root_hex": root.to_hex(),
        "signed_text": signed_text,
        "note": f.checkpoint(size),
    })
}

fn make_inclusion(f: &Fixture) -> Value {
    let (index, size) = (3u64, 4u64);
    let l = &f.logged[index as usize];
    let path = inclusion_proof(&f.tree, LeafIndex(index), TreeSize(size)).expect("proof");
    json!({
        "description": "The RFC 9162 inclusion proof (audit path, leaf side first) of entry 3 (risk-signal.json) in the checkpoint of size 4 (checkpoint.json), as Audit.GetInclusionProof returns it. Verify the checkpoint with verifier_key, then the path from SHA-256(0x00 || leaf data) at leaf_index to the checkpoint's root (RFC 9162 §2.1.3.2).",
        "verifier_key": f.hub.verifier_key().to_string(),
        "checkpoint": f.checkpoint(size),
        "tree_size": size,
        "root_hex": f.root(size).to_hex(),
        "leaf_index": index,
        "statement_id_hex": l.id().to_string(),
        "received_at_ms": l.received_at_ms,
        "leaf_data_hex": hex::encode(l.leaf_data()),
        "leaf_hash_hex": leaf_hash(&l.leaf_data()).to_hex(),
        "audit_path_hex": path.iter().map(Hash::to_hex).collect::<Vec<_>>(),
    })
}

fn make_consistency(f: &Fixture) -> Value {
    let (old, new) = (3u64, 4u64);
    let proof = consistency_proof(&f.tree, TreeSize(old), TreeSize(new)).expect("proof");
    json!({
        "description": "The RFC 9162 consistency proof from the checkpoint of size 3 to the checkpoint of size 4 of the same log, as Audit.GetConsistencyProof returns it. Verify both notes with verifier_key, then the proof (RFC 9162 §2.1.4.2).",
        "verifier_key": f.hub.verifier_key().to_string(),
        "old_checkpoint": f.checkpoint(old),
        "old_size": old,
        "old_root_hex": f.root(old).to_hex(),
        "new_checkpoint": f.checkpoint(new),
        "new_size": new,
        "new_root_hex": f.root(new).to_hex(),
        "proof_hex": proof.iter().map(Hash::to_hex).collect::<Vec<_>>(),
    })
}

fn make_filtered_leaf(f: &Fixture) -> Value {
    let (seq, size) = (2u64, 4u64);
    let l = &f.logged[seq as usize];
    let entry = l.entry(false);
    let wire = pb::SyncEntry {
        seq: entry.seq,
        received_at_ms: entry.received_at_ms,
        statement_id: entry.statement_id.clone(),
        envelope: entry.envelope.clone(),
        compromised_key_ids: Vec::new(),
        erased_by: None,
        relay: None,
    };
    let header = Header::decode(&l.envelope.payload).expect("header");
    let path = inclusion_proof(&f.tree, LeafIndex(seq), TreeSize(size)).expect("proof");
    json!({
        "description": "Entry 2 (the hash set of hash-set.json) as a member whose sync filter selects risk signals only receives it: a SyncEntry whose envelope has the header and the signatures but an empty body. The member checks the header's signatures and entitlement, that its own filter does not select the header (kind hash_set is not risk_signal), and proves the leaf (statement_id || received_at_ms) in the signed checkpoint with the audit path.",
        "filter": {"kinds": ["risk_signal"]},
        "sync_entry_hex": hex::encode(wire.encode_to_vec()),
        "seq": seq,
        "received_at_ms": l.received_at_ms,
        "statement_id_hex": l.id().to_string(),
        "payload_type": PAYLOAD_TYPE,
        "header_hex": hex::encode(&l.envelope.payload),
        "header": header_json(&header),
        "pae_hex": hex::encode(pae(PAYLOAD_TYPE, &l.envelope.payload)),
        "signatures": signatures_json(l, false),
        "leaf_data_hex": hex::encode(l.leaf_data()),
        "leaf_hash_hex": leaf_hash(&l.leaf_data()).to_hex(),
        "verifier_key": f.hub.verifier_key().to_string(),
        "checkpoint": f.checkpoint(size),
        "tree_size": size,
        "root_hex": f.root(size).to_hex(),
        "audit_path_hex": path.iter().map(Hash::to_hex).collect::<Vec<_>>(),
    })
}

/// Another hub, `relay.example`, relays the fixture's entry 3 (acme's risk signal) at its
/// position 12: it relayed entries 0 and 1 before, and holds entry 2 itself (acme submitted
/// it there too), so entry 2 is a 40-byte gap leaf; the origin's checkpoint of 4 entries
/// proves it with no consistency proof (the rebuilt log reaches its size).
fn make_relayed(f: &Fixture) -> Value {
    let origin = &f.logged[3];
    let (seq, received_at_ms) = (12u64, T0 + 3 * 60_000 + 5_000);
    let relay = Relay {
        origin: f.logged[0].id(),
        origin_seq: origin.seq,
        origin_received_at_ms: origin.received_at_ms,
        gap_leaves: vec![f.logged[2].leaf_data()],
        checkpoint: Some(coalition_hub::replica::OriginCheckpoint {
            note: f.checkpoint(4),
            proofs: Vec::new(),
        }),
        erased_by: None,
    };
    let wire = pb::SyncEntry {
        seq,
        received_at_ms,
        statement_id: origin.id().0.to_vec(),
        envelope: Some(origin.envelope.clone()),
        compromised_key_ids: Vec::new(),
        erased_by: None,
        relay: Some(relay.to_wire()),
    };
    let leaf = relay.leaf_data(&origin.id(), received_at_ms);
    let header = Header::decode(&origin.envelope.payload).expect("header");
    json!({
        "description": "Hub relay.example relays entry 3 of the fixture's log (acme's risk signal, risk-signal.json) at its own position 12 (docs/PROTOCOL.md §3.10): a SyncEntry whose envelope is the origin's, verbatim, and whose relay names the origin (its genesis id), the statement's position and receipt time there, the gap leaves since the previous statement relayed from it (entry 2, which relay.example holds itself: its 40-byte origin leaf), and the origin's signed checkpoint of 4 entries. The relayed leaf is 88 bytes: statement id, receipt time here, origin genesis id, origin position, origin receipt time (big-endian). The origin's log rebuilt from the leaves relayed before (entries 0 and 1), the gap leaf and the statement's own origin leaf has the checkpoint's root.",
        "relayed_entry_hex": hex::encode(wire.encode_to_vec()),
        "seq": seq,
        "received_at_ms": received_at_ms,
        "statement_id_hex": origin.id().to_string(),
        "payload_type": PAYLOAD_TYPE,
        "header_hex": hex::encode(&origin.envelope.payload),
        "header": header_json(&header),
        "pae_hex": hex::encode(pae(PAYLOAD_TYPE, &origin.envelope.payload)),
        "body_hex": hex::encode(&origin.envelope.body),
        "signatures": signatures_json(origin, false),
        "relay": {
            "origin_genesis_hex": f.logged[0].id().to_string(),
            "origin_seq": origin.seq,
            "origin_received_at_ms": origin.received_at_ms,
            "gap_leaves_hex": [hex::encode(f.logged[2].leaf_data())],
            "checkpoint": f.checkpoint(4),
        },
        "relayed_leaf_data_hex": hex::encode(leaf),
        "relayed_leaf_hash_hex": leaf_hash(&leaf).to_hex(),
        "origin_leaves_before_hex": [hex::encode(f.logged[0].leaf_data()), hex::encode(f.logged[1].leaf_data())],
        "origin_leaf_data_hex": hex::encode(origin.leaf_data()),
        "origin_verifier_key": f.hub.verifier_key().to_string(),
        "origin_tree_size": 4,
        "origin_root_hex": f.root(4).to_hex(),
    })
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Readable forms of decoded headers and bodies (made from the decoded domain types, so the
// test checks them against the bytes).
// ---------------------------------------------------------------------------------------------

fn header_json(h: &Header) -> Value {
    let mut v = json!({
        "issuer": h.issuer.to_string(),
        "key_id": h.key_id.to_string(),
        "issued_at_ms": h.issued_at_ms,
        "nonce_hex": hex::encode(h.nonce),
        "kind": h.kind.name(),
        "hash_types": h.hash_types.iter().map(|t| t.name()).collect::<Vec<_>>(),
        "labels": h.labels.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "body_sha256_hex": hex::encode(h.body_sha256),
        "body_bytes": h.body_bytes,
    });
    if h.is_restricted() {
        v["recipients"] = json!(h.recipients.to_wire());
    }
    v
}

fn hash_json(h: &HashEntry) -> Value {
    let mut v = json!({
        "type": h.hash_type.name(),
        "value_hex": hex::encode(&h.value),
        "labels": h.labels.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    if let Some(q) = h.quality {
        v["quality"] = json!(q);
    }
    v
}

fn admission_json(a: &Admission) -> Value {
    json!({
        "member_id": a.id.to_string(),
        "display_name": a.display_name,
        "roles": a.roles.iter().map(|r| r.name()).collect::<Vec<_>>(),
        "public_keys": a.keys.iter().map(|k| json!({
            "public_key_hex": hex::encode(k.as_bytes()),
            "key_id": KeyId::of(k).to_string(),
        })).collect::<Vec<_>>(),
        "certificate_sha256_hex": a.cert_pins.iter().map(hex::encode).collect::<Vec<_>>(),
    })
}

fn body_json(body: &Body) -> Value {
    match body {
        Body::HashSet(s) => json!({"hash_set": {
            "description": s.description,
            "entries": s.entries.iter().map(hash_json).collect::<Vec<_>>(),
        }}),
        Body::RiskSignal(r) => json!({"risk_signal": {
            "category": r.category.name(),
            "severity": r.severity.name(),
            "title": r.title,
            "description": r.description,
            "indicators": r.indicators.iter().map(|i| match i {
                Indicator::Keyword(v) => json!({"type": "keyword", "value": v}),
                Indicator::Url(v) => json!({"type": "url", "value": v}),
                Indicator::Domain(v) => json!({"type": "domain", "value": v}),
                Indicator::AccountHandle { platform, handle } => {
                    json!({"type": "account_handle", "platform": platform, "value": handle})
                }
                Indicator::Hash(h) => json!({"type": "hash", "hash": hash_json(h)}),
            }).collect::<Vec<_>>(),
            "first_seen_ms": r.first_seen_ms,
            "last_seen_ms": r.last_seen_ms,
            "expires_at_ms": r.expires_at_ms,
        }}),
        Body::Genesis(g) => json!({"genesis": {
            "hub_name": g.hub_name,
            "hub_public_key_hex": hex::encode(g.hub_key.as_bytes()),
            "admins": g.admins.iter().map(admission_json).collect::<Vec<_>>(),
            "quorum": g.quorum,
        }}),
        Body::Membership(c) => {
            let mut change = json!({"reason": c.reason, "summary": c.describe()});
            if let Action::Admit(a) = &c.action {
                change["admit"] = admission_json(a);
            }
            json!({ "membership": change })
        }
        Body::Settings(c) => {
            let mut change = json!({"reason": c.reason, "summary": c.describe()});
            if let Some(k) = c.new_hub_key() {
                change["hub_public_key_hex"] = json!(hex::encode(k.as_bytes()));
            }
            json!({ "settings": change })
        }
        Body::Retraction(r) if r.erase => json!({"retraction": {
            "statement_id_hex": r.target.to_string(),
            "entries": r.entries,
            "reason": r.reason,
            "admin_quorum": r.admin_quorum,
            "erase": r.erase,
        }}),
        Body::Retraction(r) => json!({"retraction": {
            "statement_id_hex": r.target.to_string(),
            "entries": r.entries,
            "reason": r.reason,
            "admin_quorum": r.admin_quorum,
        }}),
        Body::Opinion(o) => json!({"opinion": {
            "statement_id_hex": o.target.to_string(),
            "entry": o.entry,
            "verdict": o.verdict.name(),
            "note": o.note,
            "hash_type": o.hash.as_ref().map(|h| h.hash_type.name()),
            "hash_value_hex": o.hash.as_ref().map(|h| hex::encode(&h.value)),
            "admin_quorum": o.admin_quorum,
        }}),
    }
}
