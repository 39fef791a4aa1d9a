#!/usr/bin/env python3
"""Checks the published test vectors (docs/test-vectors/*.json) with Python's protobuf.

An independent second implementation of the byte-level rules of docs/PROTOCOL.md:

- every statement header (`coalition.v1.Statement`) and body (`coalition.v1.StatementBody`)
  decodes with classes generated from proto/coalition/v1/*.proto and re-serializes to the
  same bytes, unknown fields discarded (the canonical-encoding rule);
- the header names the body: SHA-256 and length;
- PAE = "DSSEv1" SP LEN(type) SP type SP LEN(header) SP header, statement id = SHA-256(PAE);
- key id = hex(SHA-256(public key)[:8]);
- an envelope carries exactly the vector's header, body and signatures; a filtered-sync entry
  re-encodes byte for byte and carries the header without its body;
- a relayed entry (PROTOCOL.md §3.10): its 88-byte leaf, and the origin's log rebuilt from the
  leaves before it, its gap leaves and its own origin leaf up to the origin checkpoint's root;
- Merkle leaves (SHA-256(0x00 || statement id || received_at_ms big-endian)), the root of the
  checkpoint's entries, inclusion and consistency proofs (RFC 9162), and the checkpoint notes'
  origin, size and root lines.

Ed25519 signatures are not checked here (the standard library has no Ed25519); tests/vectors.rs
checks them.

Usage: check_vectors.py [VECTOR.json ...]   (default: every docs/test-vectors/*.json)
Needs the `protobuf` and `grpcio-tools` packages; exits 0 only if every vector passes.
"""

import base64
import glob
import hashlib
import importlib
import json
import os
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO_DIR = os.path.join(ROOT, "proto")
VECTOR_DIR = os.path.join(ROOT, "docs", "test-vectors")


class Failed(Exception):
    pass


def need(condition, what):
    if not condition:
        raise Failed(what)


def compile_protos(out_dir):
    """Generates the Python classes for proto/coalition/v1/*.proto into out_dir."""
    from grpc_tools import protoc

    try:
        from importlib.resources import files

        well_known = str(files("grpc_tools") / "_proto")
    except Exception:  # older Pythons: no well-known types needed by our protos anyway
        well_known = PROTO_DIR
    protos = sorted(glob.glob(os.path.join(PROTO_DIR, "coalition", "v1", "*.proto")))
    need(protos, "no .proto files under " + PROTO_DIR)
    args = ["protoc", "-I" + PROTO_DIR, "-I" + well_known, "--python_out=" + out_dir]
    if protoc.main(args + protos) != 0:
        raise SystemExit("protoc failed on " + " ".join(protos))
    sys.path.insert(0, out_dir)
    return (
        importlib.import_module("coalition.v1.statement_pb2"),
        importlib.import_module("coalition.v1.hub_pb2"),
    )


def canonical(cls, data, what):
    """Decodes data as cls and requires re-serializing to give the same bytes."""
    message = cls()
    try:
        message.ParseFromString(data)
    except Exception as e:  # DecodeError
        raise Failed(f"{what}: not a valid {cls.DESCRIPTOR.full_name}: {e}")
    message.DiscardUnknownFields()
    again = message.SerializeToString()
    need(
        again == data,
        f"{what}: re-encoding gives other bytes ({len(again)} vs {len(data)}): not canonical",
    )
    return message


def pae(payload_type, payload):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def hx(v, key):
    need(isinstance(v.get(key), str), f"{key}: missing")
    return bytes.fromhex(v[key])


# --- RFC 9162 Merkle tree ------------------------------------------------------------------


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree_root(leaves):
    """MTH(D[n]) of leaf hashes (RFC 9162 §2.1.1)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(tree_root(leaves[:k]), tree_root(leaves[k:]))


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 §2.1.3.2."""
    need(index < size, f"leaf index {index} is not below tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        need(sn != 0, "inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    need(sn == 0, "inclusion proof too short")
    need(r == root, "inclusion proof does not lead to the root")


def verify_consistency(old_size, new_size, old_root, new_root, proof):
    """RFC 9162 §2.1.4.2."""
    need(0 < old_size <= new_size, "consistency sizes out of order")
    if old_size == new_size:
        need(not proof and old_root == new_root, "equal sizes need an empty proof, equal roots")
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    need(path, "empty consistency proof")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        need(sn != 0, "consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    need(sn == 0, "consistency proof too short")
    need(fr == old_root, "consistency proof does not give the old root")
    need(sr == new_root, "consistency proof does not give the new root")


def note_head(note):
    """(origin, size, root) of a C2SP checkpoint note; the signature is not checked here."""
    text, sep, sigs = note.rpartition("\n\n")
    need(sep and sigs.startswith("\u2014 "), "not a signed note")
    lines = text.split("\n")
    need(len(lines) >= 3, "a checkpoint has an origin, a size and a root line")
    return lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)


# --- one vector ----------------------------------------------------------------------------


def check_vector(v, pb, hub):
    """Runs every check the vector's fields allow; returns how many were made."""
    checks = 0
    header_key = "header_hex" if "header_hex" in v else "payload_hex"
    header = header_bytes = None
    if header_key in v:
        header_bytes = hx(v, header_key)
        header = canonical(pb.Statement, header_bytes, "header")
        pt = v.get("payload_type", "")
        need(pt.startswith("application/vnd.coalition.statement.v"), "payload_type")
        p = pae(pt, header_bytes)
        if "pae_hex" in v:
            need(p == hx(v, "pae_hex"), "pae_hex is not PAE(payload_type, header)")
        need(hashlib.sha256(p).digest() == hx(v, "statement_id_hex"), "statement id")
        signers = [s["key_id"] for s in v.get("signatures", [])]
        need(len(signers) == len(set(signers)), "a key id signs twice")
        need(header.key_id in signers, "no signature by the header's key_id")
        for s in v.get("signatures", []):
            key_id = hashlib.sha256(hx(s, "public_key_hex")).hexdigest()[:16]
            need(key_id == s["key_id"], f"key id {s['key_id']} of its public key")
        checks += 4
    if "body_hex" in v:
        need(header is not None, "a body without a header")
        body = hx(v, "body_hex")
        canonical(pb.StatementBody, body, "body")
        digest = hashlib.sha256(body).digest()
        need(digest == header.body_sha256, "the header's body_sha256 is not SHA-256(body)")
        need(len(body) == header.body_bytes, "the header's body_bytes is not the body's length")
        if "body_sha256_hex" in v:
            need(digest == hx(v, "body_sha256_hex"), "body_sha256_hex")
        checks += 3
    if "envelope_hex" in v:
        env = pb.Envelope()
        env.ParseFromString(hx(v, "envelope_hex"))
        need(env.payload == header_bytes, "envelope payload is not the header")
        need(env.body == hx(v, "body_hex"), "envelope body is not the body")
        need(
            [(s.key_id, s.sig.hex()) for s in env.signatures]
            == [(s["key_id"], s["sig_hex"]) for s in v["signatures"]],
            "envelope signatures",
        )
        checks += 1
    if "sync_entry_hex" in v:
        entry = canonical(hub.SyncEntry, hx(v, "sync_entry_hex"), "sync entry")
        need(entry.seq == v["seq"], "sync entry seq")
        need(entry.received_at_ms == v["received_at_ms"], "sync entry received_at_ms")
        need(entry.statement_id == hx(v, "statement_id_hex"), "sync entry statement id")
        need(entry.envelope.payload == header_bytes, "sync entry header")
        need(entry.envelope.body == b"", "a withheld body must be empty")
        checks += 1
    if "relayed_entry_hex" in v:  # a statement another hub relays (PROTOCOL.md §3.10)
        entry = canonical(hub.SyncEntry, hx(v, "relayed_entry_hex"), "relayed entry")
        sid = hx(v, "statement_id_hex")
        need(entry.seq == v["seq"], "relayed entry seq")
        need(entry.received_at_ms == v["received_at_ms"], "relayed entry received_at_ms")
        need(entry.statement_id == sid, "relayed entry statement id")
        need(entry.envelope.payload == header_bytes, "relayed entry header (verbatim)")
        need(entry.envelope.body == hx(v, "body_hex"), "relayed entry body (verbatim)")
        r, relay = v["relay"], entry.relay
        need(relay.origin_genesis == hx(r, "origin_genesis_hex"), "origin genesis")
        need(relay.origin_seq == r["origin_seq"], "origin seq")
        need(relay.origin_received_at_ms == r["origin_received_at_ms"], "origin receipt time")
        gaps = list(relay.gap_leaves)
        need([g.hex() for g in gaps] == r["gap_leaves_hex"], "gap leaves")
        need(all(len(g) in (40, 88) for g in gaps), "a gap leaf is 40 or 88 bytes")
        need(relay.checkpoint.note == r["checkpoint"], "origin checkpoint")
        need(len(relay.checkpoint.proofs) == 0, "no consistency proof in this vector")
        be = lambda n, signed: n.to_bytes(8, "big", signed=signed)
        relayed = (
            sid
            + be(entry.received_at_ms, True)
            + relay.origin_genesis
            + be(relay.origin_seq, False)
            + be(relay.origin_received_at_ms, True)
        )
        need(len(relayed) == 88 and relayed == hx(v, "relayed_leaf_data_hex"), "relayed leaf data")
        need(leaf_hash(relayed) == hx(v, "relayed_leaf_hash_hex"), "relayed leaf hash")
        own = sid + be(relay.origin_received_at_ms, True)
        need(own == hx(v, "origin_leaf_data_hex"), "the statement's leaf at its origin")
        leaves = [leaf_hash(bytes.fromhex(h)) for h in v["origin_leaves_before_hex"]]
        leaves += [leaf_hash(g) for g in gaps] + [leaf_hash(own)]
        need(len(leaves) == relay.origin_seq + 1, "the origin's leaves up to the statement")
        _, size, root = note_head(relay.checkpoint.note)
        need(size == len(leaves) == v["origin_tree_size"], "origin checkpoint size")
        need(tree_root(leaves) == root == hx(v, "origin_root_hex"), "origin root")
        checks += 4
    # Merkle leaves: top level or under "log".
    for where in (v, v.get("log")):
        if isinstance(where, dict) and "leaf_data_hex" in where:
            data = hx(v, "statement_id_hex") + where["received_at_ms"].to_bytes(8, "big", signed=True)
            need(data == hx(where, "leaf_data_hex"), "leaf data")
            need(leaf_hash(data) == hx(where, "leaf_hash_hex"), "leaf hash")
            checks += 1
    if "entries" in v:  # a checkpoint over a list of entries
        leaves = []
        for i, e in enumerate(v["entries"]):
            need(e["seq"] == i, "entries in order from 0")
            data = hx(e, "statement_id_hex") + e["received_at_ms"].to_bytes(8, "big", signed=True)
            need(data == hx(e, "leaf_data_hex"), f"entry {i}: leaf data")
            need(leaf_hash(data) == hx(e, "leaf_hash_hex"), f"entry {i}: leaf hash")
            leaves.append(leaf_hash(data))
        need(len(leaves) == v["tree_size"], "tree size")
        need(tree_root(leaves) == hx(v, "root_hex"), "root of the entries")
        origin, size, root = note_head(v["note"])
        need((origin, size, root) == (v["hub_name"], v["tree_size"], hx(v, "root_hex")), "note")
        need(v["note"].startswith(v["signed_text"] + "\n"), "signed text")
        checks += 2
    if "audit_path_hex" in v:
        index = v.get("leaf_index", v.get("seq"))
        origin, size, root = note_head(v["checkpoint"])
        need((size, root) == (v["tree_size"], hx(v, "root_hex")), "checkpoint size and root")
        path = [bytes.fromhex(h) for h in v["audit_path_hex"]]
        verify_inclusion(hx(v, "leaf_hash_hex"), index, size, path, root)
        checks += 1
    if "proof_hex" in v:
        _, old_size, old_root = note_head(v["old_checkpoint"])
        _, new_size, new_root = note_head(v["new_checkpoint"])
        need((old_size, old_root) == (v["old_size"], hx(v, "old_root_hex")), "old checkpoint")
        need((new_size, new_root) == (v["new_size"], hx(v, "new_root_hex")), "new checkpoint")
        proof = [bytes.fromhex(h) for h in v["proof_hex"]]
        verify_consistency(old_size, new_size, old_root, new_root, proof)
        checks += 1
    need(checks > 0, "nothing in this vector that this script knows how to check")
    return checks


def main(argv):
    paths = argv[1:] or sorted(glob.glob(os.path.join(VECTOR_DIR, "*.json")))
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="coalition-pb-") as out:
        pb, hub = compile_protos(out)
        for path in paths:
            name = os.path.relpath(path, ROOT)
            try:
                with open(path, encoding="utf-8") as f:
                    vector = json.load(f)
                checks = check_vector(vector, pb, hub)
                print(f"ok      {name} ({checks} check{'' if checks == 1 else 's'})")
                passed += 1
            except (Failed, KeyError, ValueError, TypeError) as e:
                kind = "" if isinstance(e, Failed) else type(e).__name__ + ": "
                print(f"FAILED  {name}: {kind}{e}")
                failed += 1
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
