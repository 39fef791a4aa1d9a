//! One entry point per parser of untrusted bytes, shared by the `cargo fuzz` targets in
//! `fuzz/` and by the corpus replay in `tests/fuzz_corpus.rs`, so the fuzzer and the stable
//! test suite run exactly the same code.
//!
//! Each function takes arbitrary bytes, feeds them to one parser and, where the parser accepts
//! them, checks a property that must hold for every accepted input (a canonical re-encoding
//! gives the same bytes, a checkpoint signed with a key verifies with it, a proof that was
//! changed no longer verifies, …). A function returns normally for every input the library
//! handles correctly; a panic is a bug: either the parser crashed or a property failed.
//!
//! Readers whose only public form takes a path (hash lists, signal files, audit bundles, the
//! sync cursor, the submit journal) are fed through a file in a temporary directory kept for
//! the life of the thread: those are the functions a member or an auditor runs on files it
//! received, and reading them the way the CLI does tests the code the CLI runs.
//!
//! Keys and the coalition CA used here are fixed ([`FUZZ_SIGNING_KEY`], [`crl_ca`]) so that a
//! corpus made with them keeps reaching the signature checks when it is replayed.

use crate::audit::verify_bundle;
use crate::formats::{SignalFile, read_rows};
use crate::journal::Journal;
use crate::log::{
    Checkpoint, Hash, LeafIndex, MemoryTree, SignedCheckpoint, TreeSize, VerifierKey,
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion, verify_note,
};
use crate::pb;
use crate::replica::Replica;
use crate::statement::{Header, OpaqueEnvelope, ParsedEnvelope, Statement};
use crate::sync::Cursor;
use ed25519_dalek::SigningKey;
use prost::Message;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// The seed of the one signing key the fuzz targets verify with (statements and checkpoints).
pub const FUZZ_SIGNING_KEY: [u8; 32] = [0x5a; 32];

/// The checkpoint origin (and note key name) the checkpoint target verifies with.
pub const FUZZ_ORIGIN: &str = "fuzz.coalition.example/hub";

/// The seed of the coalition CA key the CRL target checks signatures with.
pub const FUZZ_CA_KEY: [u8; 32] = [0xca; 32];

/// A fuzz target: one parser fed arbitrary bytes.
pub type Target = fn(&[u8]);

/// The fixed coalition CA of the CRL target: its certificate (DER) and its issuer.
pub type FuzzCa = (
    rustls::pki_types::CertificateDer<'static>,
    std::sync::Arc<rcgen::Issuer<'static, rcgen::KeyPair>>,
);

/// Every target: its name (the `fuzz/fuzz_targets/NAME.rs` file and `fuzz/corpus/NAME`
/// directory) and its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("statement", statement),
    ("checkpoint", checkpoint),
    ("proofs", proofs),
    ("bundle", bundle),
    ("hash_list", hash_list),
    ("signal", signal),
    ("crl", crl),
    ("sync_cursor", sync_cursor),
    ("journal", journal),
];

/// The signing key of [`FUZZ_SIGNING_KEY`].
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&FUZZ_SIGNING_KEY)
}

/// The checkpoint verifier key the checkpoint target trusts.
pub fn verifier_key() -> VerifierKey {
    // FUZZ_ORIGIN is a valid key name: a fixed constant, checked by the tests below.
    VerifierKey::from_signing_key(FUZZ_ORIGIN, &signing_key()).expect("FUZZ_ORIGIN is valid")
}

/// A serialized `coalition.v1.Envelope` from a client or a hub: decoded, parsed as a protocol
/// version 1 statement (header, body, the body's digest) and as an envelope of a later version;
/// a parsed statement's signatures are checked with [`signing_key`]'s public key.
pub fn envelope(data: &[u8]) {
    let Ok(envelope) = pb::Envelope::decode(data) else {
        return;
    };
    if let Ok(opaque) = OpaqueEnvelope::parse(envelope.clone()) {
        assert_eq!(opaque.key_ids.len(), opaque.envelope.signatures.len());
    }
    let Ok(parsed) = ParsedEnvelope::parse(envelope) else {
        return;
    };
    if let Ok(statement) = parsed.require_body() {
        // What parsed re-encodes to the exact bytes that were signed.
        let encoded = statement.encode();
        assert_eq!(
            encoded.header, parsed.envelope.payload,
            "header re-encoding"
        );
        assert_eq!(encoded.body, parsed.envelope.body, "body re-encoding");
    }
    let keys = vec![signing_key().verifying_key(); parsed.envelope.signatures.len()];
    let _ = parsed.verify_with(&keys).map_err(|e| e.to_string());
}

/// A signed header and a body (`data` split at a position its first two bytes give): each
/// decoded strictly, then the body checked against the header. Whatever is accepted must
/// re-encode to the same bytes.
pub fn statement(data: &[u8]) {
    let (split, rest) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
        _ => return,
    };
    let (header_bytes, body_bytes) = rest.split_at(split.min(rest.len()));
    let header = Header::decode(header_bytes);
    let body = crate::statement::Body::decode(body_bytes);
    let (Ok(header), Ok(_)) = (header, body) else {
        return;
    };
    match Statement::from_parts(&header, body_bytes) {
        Ok(statement) => {
            let encoded = statement.encode();
            assert_eq!(encoded.header, header_bytes, "header re-encoding");
            assert_eq!(encoded.body, body_bytes, "body re-encoding");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Text that may be a signed checkpoint note, a checkpoint body or a verifier key: each
/// parser tried. A parsed checkpoint body must print back to itself, and signing it with
/// [`signing_key`] must give a note that verifies to the same checkpoint.
pub fn checkpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = verifier_key();
    let _ = VerifierKey::parse(text).map(|k| k.to_string());
    let _ = verify_note(text, &key).map_err(|e| e.to_string());
    let _ = SignedCheckpoint::verify(text, &key).map_err(|e| e.to_string());
    if let Ok(body) = Checkpoint::parse_body(text) {
        assert_eq!(
            Checkpoint::parse_body(&body.body()).as_ref(),
            Ok(&body),
            "a parsed checkpoint body prints back to itself"
        );
        if body.origin == FUZZ_ORIGIN {
            let note = body.sign(FUZZ_ORIGIN, &signing_key());
            if let Ok(note) = note {
                let verified = Checkpoint::parse_and_verify(&note, &key)
                    .expect("a note signed with the key verifies with it");
                assert_eq!(verified, body);
            }
        }
    }
}

/// Inclusion and consistency proofs. The first bytes choose a tree (up to 64 leaves) and
/// positions in it; the correct proofs for them must verify. The rest of `data` then changes
/// the proof, the leaf, the sizes or the roots: a changed input must be refused. The same bytes
/// are also passed unchanged as a proof with arbitrary sizes and indexes, which must not panic.
///
/// Not checked (inherent to RFC 9162, see [`verify_inclusion`]): a proof does not bind the tree
/// sizes (or, for inclusion, the leaf index) by themselves, so the same hashes may verify for
/// other positions of the same shape (e.g. the consistency proof from 1 to 53 also verifies
/// from 1 to 52; leaf 11 of 12's inclusion proof also verifies as leaf 7 of 8 under the root of
/// 12). Sizes and roots are only trusted together, from one signed checkpoint.
pub fn proofs(data: &[u8]) {
    let [n, m, i, mode, rest @ ..] = data else {
        return;
    };
    let size = u64::from(n % 64) + 1;
    let old = u64::from(*m) % (size + 1);
    let index = u64::from(*i) % size;
    let mut tree = MemoryTree::new();
    for leaf in 0..size {
        tree.append(&leaf.to_be_bytes());
    }
    let root = tree.root();
    // In-memory trees hold every node: these cannot fail for index < size, old <= size.
    let inclusion = inclusion_proof(&tree, LeafIndex(index), TreeSize(size)).expect("path");
    let consistency = consistency_proof(&tree, TreeSize(old), TreeSize(size)).expect("proof");
    let old_root = crate::log::root(&tree, TreeSize(old)).expect("old root");
    let leaf = crate::log::leaf_hash(&index.to_be_bytes());
    verify_inclusion(&leaf, LeafIndex(index), TreeSize(size), &inclusion, &root)
        .expect("a correct inclusion proof verifies");
    verify_consistency(
        TreeSize(old),
        TreeSize(size),
        &old_root,
        &root,
        &consistency,
    )
    .expect("a correct consistency proof verifies");

    // Arbitrary input: sizes and index from the first 24 bytes, hashes from the rest.
    let word = |k: usize| {
        rest.get(k * 8..k * 8 + 8)
            .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    };
    let hashes: Vec<Hash> = rest
        .get(24..)
        .unwrap_or_default()
        .chunks_exact(32)
        .filter_map(Hash::from_slice)
        .collect();
    let any = hashes.first().copied().unwrap_or(root);
    let _ = verify_inclusion(&any, LeafIndex(word(0)), TreeSize(word(1)), &hashes, &root);
    let _ = verify_consistency(TreeSize(word(0)), TreeSize(word(2)), &any, &root, &hashes);

    // Changed input: each 3-byte step flips one bit somewhere or resizes the proof.
    let mut inc = (leaf, index, size, inclusion.clone(), root);
    let mut con = (old, size, old_root, root, consistency.clone());
    let consistency_mode = mode & 1 == 1;
    for step in rest.chunks_exact(3) {
        let (what, at, bit) = (step[0] % 8, usize::from(step[1]), step[2] % 8);
        let flip = |h: &mut Hash| h.0[at % 32] ^= 1 << bit;
        if consistency_mode {
            match what {
                0 => flip(&mut con.2),
                1 => flip(&mut con.3),
                2 => con.0 ^= 1 << (bit % 7),
                3 => con.1 ^= 1 << (bit % 7),
                4 => {
                    con.4.pop();
                }
                5 => con.4.push(Hash([at as u8; 32])),
                _ => {
                    if let Some(len) = std::num::NonZeroUsize::new(con.4.len()) {
                        let k = at % len.get();
                        flip(&mut con.4[k]);
                    }
                }
            }
        } else {
            match what {
                0 => flip(&mut inc.0),
                1 => flip(&mut inc.4),
                2 => inc.1 ^= 1 << (bit % 7),
                3 => inc.2 ^= 1 << (bit % 7),
                4 => {
                    inc.3.pop();
                }
                5 => inc.3.push(Hash([at as u8; 32])),
                _ => {
                    if let Some(len) = std::num::NonZeroUsize::new(inc.3.len()) {
                        let k = at % len.get();
                        flip(&mut inc.3[k]);
                    }
                }
            }
        }
    }
    if consistency_mode {
        let (o, s, ref oroot, ref nroot, ref proof) = con;
        let result = verify_consistency(TreeSize(o), TreeSize(s), oroot, nroot, proof);
        let unchanged =
            (o, s, *oroot, *nroot, proof.as_slice()) == (old, size, old_root, root, &consistency);
        // RFC 9162 proofs do not bind the sizes by themselves (a checkpoint signs size and root
        // together): the same hashes may verify for another pair of sizes of the same shape.
        let only_sizes_changed =
            (*oroot, *nroot, proof.as_slice()) == (old_root, root, consistency.as_slice());
        if !unchanged && !only_sizes_changed && result.is_ok() {
            // Equal sizes need equal roots and an empty proof, whatever the sizes are.
            let same_tree_trivially = o == s && oroot == nroot && proof.is_empty();
            // A tree of size 0 is consistent with anything, with an empty proof.
            let from_empty = o == 0 && proof.is_empty() && *oroot == crate::log::empty_root();
            // Another size of the same tree: a correct proof for it exists.
            let other_sizes_same_tree = s <= size
                && o <= s
                && crate::log::root(&tree, TreeSize(o)).ok().as_ref() == Some(oroot)
                && crate::log::root(&tree, TreeSize(s)).ok().as_ref() == Some(nroot)
                && consistency_proof(&tree, TreeSize(o), TreeSize(s))
                    .ok()
                    .as_ref()
                    == Some(proof);
            assert!(
                same_tree_trivially || from_empty || other_sizes_same_tree,
                "a changed consistency proof verified: {o} -> {s}"
            );
        }
    } else {
        let (ref l, ix, s, ref proof, ref r) = inc;
        let result = verify_inclusion(l, LeafIndex(ix), TreeSize(s), proof, r);
        let unchanged = (*l, ix, s, proof.as_slice(), *r) == (leaf, index, size, &inclusion, root);
        // As documented on `verify_inclusion`: the proof does not bind the size by itself,
        // nor the index: another (index, size) pair with the same left/right path verifies
        // the same hashes (fuzzing found leaf 11 of 12's proof verifying as leaf 7 of 8 under
        // the root of 12). A checkpoint binds size and root; the leaf hash binds the content.
        let only_position_changed =
            (*l, proof.as_slice(), *r) == (leaf, inclusion.as_slice(), root);
        if !unchanged && !only_position_changed && result.is_ok() {
            // An index or size change can land on another correct statement about the same
            // tree (e.g. a leaf whose path does not depend on the changed bit).
            let other_true_statement = s <= size
                && ix < s
                && *l == crate::log::leaf_hash(&ix.to_be_bytes())
                && crate::log::root(&tree, TreeSize(s)).ok().as_ref() == Some(r)
                && inclusion_proof(&tree, LeafIndex(ix), TreeSize(s))
                    .ok()
                    .as_ref()
                    == Some(proof);
            // A one-leaf tree whose root is the (changed) leaf itself: also true.
            let one_leaf_tree = s == 1 && ix == 0 && proof.is_empty() && l == r;
            assert!(
                other_true_statement || one_leaf_tree,
                "a changed inclusion proof verified: leaf {ix} of {s}"
            );
        }
    }
}

/// An audit bundle file, verified from its genesis as `coalition audit verify` does.
pub fn bundle(data: &[u8]) {
    with_file("in.bundle", data, |path| {
        let _ = verify_bundle(path, &[]).map_err(|e| e.to_string());
    });
}

/// A hash list (CSV, JSON Lines, bare PDQ lines, or sync output), read as `coalition submit`
/// and `coalition match` read it.
pub fn hash_list(data: &[u8]) {
    with_file("hashes.txt", data, |path| {
        let _ = read_rows(path).map_err(|e| e.to_string());
    });
}

/// A risk-signal JSON file, read as `coalition submit --signal` reads it.
pub fn signal(data: &[u8]) {
    with_file("signal.json", data, |path| {
        let _ = SignalFile::read(path).map_err(|e| e.to_string());
    });
}

/// A CRL file (PEM), checked against the fixed coalition CA of [`crl_ca`] as the hub checks
/// the CRL it loads.
pub fn crl(data: &[u8]) {
    let ca = crl_ca();
    let _ = crate::server::check_crl_pem(data, std::slice::from_ref(&ca.0));
}

/// A sync cursor file, loaded as `coalition sync` loads it: parsed, its filter parsed, its
/// replica restored (membership replayed, checkpoint re-verified). What loads must save and
/// load back to the same cursor.
pub fn sync_cursor(data: &[u8]) {
    with_file("out.cursor", data, |path| {
        let Ok(Some(cursor)) = Cursor::load(path) else {
            return;
        };
        let again = serde_json::to_vec(&cursor).expect("a cursor serializes");
        assert_eq!(
            serde_json::from_slice::<Cursor>(&again).ok().as_ref(),
            Some(&cursor),
            "a cursor reads back what it saved"
        );
        if let Ok(filter) = cursor.filter.parse() {
            let _ = Replica::restore(&cursor.replica, filter).map_err(|e| e.to_string());
        }
    });
}

/// A submit journal, opened as a rerun of `coalition submit` opens it, and every statement it
/// still has to send read back.
pub fn journal(data: &[u8]) {
    with_file("hashes.csv.journal", data, |path| {
        let Ok(Some(journal)) = Journal::open(path) else {
            return;
        };
        assert!(journal.acknowledged() <= journal.statements());
        if let Ok(pending) = journal.pending() {
            for item in pending {
                if item.is_err() {
                    break;
                }
            }
        }
    });
}

/// The fixed coalition CA of the CRL target (built once per thread from [`FUZZ_CA_KEY`]).
pub fn crl_ca() -> FuzzCa {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    thread_local! {
        static CA: RefCell<Option<FuzzCa>> =
            const { RefCell::new(None) };
    }
    CA.with(|ca| {
        ca.borrow_mut()
            .get_or_insert_with(|| {
                // Fixed inputs: a valid key and certificate profile; failure is a code bug.
                let der = SigningKey::from_bytes(&FUZZ_CA_KEY)
                    .to_pkcs8_der()
                    .expect("pkcs8");
                let key = rcgen::KeyPair::try_from(der.as_bytes()).expect("ca key");
                let mut params =
                    rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, "Fuzz Coalition CA");
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    rcgen::KeyUsagePurpose::KeyCertSign,
                    rcgen::KeyUsagePurpose::CrlSign,
                ];
                let cert = params.self_signed(&key).expect("ca cert");
                let issuer = rcgen::Issuer::new(params, key);
                (cert.der().clone(), std::sync::Arc::new(issuer))
            })
            .clone()
    })
}

/// Writes `data` to `name` in this thread's temporary directory and runs `read` on its path.
fn with_file(name: &str, data: &[u8], read: impl FnOnce(&Path)) {
    thread_local! {
        static DIR: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
    }
    let path: PathBuf = DIR.with(|dir| {
        let mut dir = dir.borrow_mut();
        let dir = dir.get_or_insert_with(|| {
            // Without a temporary directory no file target can run at all.
            tempfile::tempdir().expect("a temporary directory for the fuzz targets")
        });
        dir.path().join(name)
    });
    // The directory is this thread's own; failing to write to it is an environment failure.
    std::fs::write(&path, data).expect("writing the fuzz input");
    read(&path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_keys_are_usable() {
        let _ = verifier_key();
        let (der, _) = crl_ca();
        assert!(!der.is_empty());
    }

    #[test]
    fn every_target_survives_empty_and_short_inputs() {
        for (name, target) in TARGETS {
            for input in [&b""[..], b"\0", b"{}", b"\xff\xff\xff\xff\xff"] {
                eprintln!("{name}");
                target(input);
            }
        }
    }
}
