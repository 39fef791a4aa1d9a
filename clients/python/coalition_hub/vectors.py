"""The published test vectors (docs/test-vectors/*.json), checked by this package's own
byte-level code (PROTOCOL.md §7): canonical re-encoding of every header, body and sync entry,
PAE, statement ids, key ids, **ed25519 signatures** (and the seeds' public keys), the field
rules of every header and body (§2.3, §2.4) and that the header names its body, body digests,
Merkle leaves, roots, inclusion and consistency proofs, relayed-entry leaves, and every
checkpoint note's signature under its vector's verifier key."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from coalition_hub.merkle import ProofError, tree_root
from coalition_hub.merkle import verify_consistency as _verify_consistency
from coalition_hub.merkle import verify_inclusion as _verify_inclusion
from coalition_hub.note import NoteError, head, note_key_id, parse_verifier_key, verify_checkpoint
from coalition_hub.pb import hub as hub_pb
from coalition_hub.pb import statement as statement_pb
from coalition_hub.statements import FieldError, check_body, check_header
from coalition_hub.wire import NotCanonical, canonical, key_id, leaf_hash, pae, relayed_leaf_data, verify_ed25519


class Failed(Exception):
    """A vector that does not check (the message names what)."""


def need(condition: bool, what: str) -> None:
    """Raises Failed(what) unless condition."""
    if not condition:
        raise Failed(what)


def canon(cls: Any, data: bytes, what: str) -> Any:
    """:func:`coalition_hub.wire.canonical`, failing with :class:`Failed`."""
    try:
        return canonical(cls, data, what)
    except NotCanonical as e:
        raise Failed(str(e)) from e


def hx(v: dict[str, Any], key: str) -> bytes:
    """The bytes of a `*_hex` field."""
    need(isinstance(v.get(key), str), f"{key}: missing")
    return bytes.fromhex(v[key])


def note_head(note: str, vkey: str | None) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint note, its signature verified when the vector names
    the verifier key."""
    try:
        if vkey is None:
            cp = head(note)
        else:
            name, public = parse_verifier_key(vkey)
            cp = verify_checkpoint(note, name, public)
    except NoteError as e:
        raise Failed(f"checkpoint note: {e}") from e
    return cp.origin, cp.size, cp.root


def verify_inclusion(*args: Any) -> None:
    """:func:`coalition_hub.merkle.verify_inclusion`, failing with :class:`Failed`."""
    try:
        _verify_inclusion(*args)
    except ProofError as e:
        raise Failed(str(e)) from e


def verify_consistency(*args: Any) -> None:
    """:func:`coalition_hub.merkle.verify_consistency`, failing with :class:`Failed`."""
    try:
        _verify_consistency(*args)
    except ProofError as e:
        raise Failed(str(e)) from e


def check_vector(v: dict[str, Any]) -> int:
    """Runs every check the vector's fields allow, ed25519 signatures and checkpoint notes
    included; returns how many were made. Raises :class:`Failed`."""
    pb, hub = statement_pb, hub_pb
    checks = 0
    header_key = "header_hex" if "header_hex" in v else "payload_hex"
    header = header_bytes = None
    if header_key in v:
        header_bytes = hx(v, header_key)
        header = canon(pb.Statement, header_bytes, "header")
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
            public = hx(s, "public_key_hex")
            need(key_id(public) == s["key_id"], f"key id {s['key_id']} of its public key")
            if "private_key_seed_hex" in s:
                seed = Ed25519PrivateKey.from_private_bytes(hx(s, "private_key_seed_hex"))
                derived = seed.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
                need(derived == public, f"key {s['key_id']}: the seed's public key")
            need(
                verify_ed25519(public, hx(s, "sig_hex"), p),
                f"signature by {s['key_id']} does not verify over the PAE",
            )
        checks += 5
    if "body_hex" in v:
        if header is None:
            raise Failed("a body without a header")
        body = hx(v, "body_hex")
        decoded = canon(pb.StatementBody, body, "body")
        try:  # the field rules of §2.3 and the header naming its body (kind, types, labels)
            check_header(header)
            check_body(header, decoded)
        except FieldError as e:
            raise Failed(f"field rules: {e}") from e
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
        entry = canon(hub.SyncEntry, hx(v, "sync_entry_hex"), "sync entry")
        need(entry.seq == v["seq"], "sync entry seq")
        need(entry.received_at_ms == v["received_at_ms"], "sync entry received_at_ms")
        need(entry.statement_id == hx(v, "statement_id_hex"), "sync entry statement id")
        need(entry.envelope.payload == header_bytes, "sync entry header")
        need(entry.envelope.body == b"", "a withheld body must be empty")
        checks += 1
    if "relayed_entry_hex" in v:  # a statement another hub relays (PROTOCOL.md §3.10)
        entry = canon(hub.SyncEntry, hx(v, "relayed_entry_hex"), "relayed entry")
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

        def be(n: int, signed: bool) -> bytes:
            return n.to_bytes(8, "big", signed=signed)

        relayed = (
            sid
            + be(entry.received_at_ms, True)
            + relay.origin_genesis
            + be(relay.origin_seq, False)
            + be(relay.origin_received_at_ms, True)
        )
        need(len(relayed) == 88 and relayed == hx(v, "relayed_leaf_data_hex"), "relayed leaf data")
        need(leaf_hash(relayed) == hx(v, "relayed_leaf_hash_hex"), "relayed leaf hash")
        replica_leaf = relayed_leaf_data(sid, entry.received_at_ms, relay.origin_genesis, relay.origin_seq, relay.origin_received_at_ms)
        need(replica_leaf == relayed, "the relayed leaf the replica appends")
        own = sid + be(relay.origin_received_at_ms, True)
        need(own == hx(v, "origin_leaf_data_hex"), "the statement's leaf at its origin")
        leaves = [leaf_hash(bytes.fromhex(h)) for h in v["origin_leaves_before_hex"]]
        leaves += [leaf_hash(g) for g in gaps] + [leaf_hash(own)]
        need(len(leaves) == relay.origin_seq + 1, "the origin's leaves up to the statement")
        _, size, root = note_head(relay.checkpoint.note, v.get("origin_verifier_key"))
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
        for i, ent in enumerate(v["entries"]):
            need(ent["seq"] == i, "entries in order from 0")
            data = hx(ent, "statement_id_hex") + ent["received_at_ms"].to_bytes(8, "big", signed=True)
            need(data == hx(ent, "leaf_data_hex"), f"entry {i}: leaf data")
            need(leaf_hash(data) == hx(ent, "leaf_hash_hex"), f"entry {i}: leaf hash")
            leaves.append(leaf_hash(data))
        need(len(leaves) == v["tree_size"], "tree size")
        need(tree_root(leaves) == hx(v, "root_hex"), "root of the entries")
        origin, size, root = note_head(v["note"], v.get("verifier_key"))
        need((origin, size, root) == (v["hub_name"], v["tree_size"], hx(v, "root_hex")), "note")
        need(v["note"].startswith(v["signed_text"] + "\n"), "signed text")
        vk = parse_verifier_key(v["verifier_key"])
        need(vk == (v["hub_name"], hx(v, "hub_public_key_hex")), "verifier key of the hub key")
        need(note_key_id(*vk).hex() == v["note_key_id_hex"], "note key id")
        checks += 2
    if "audit_path_hex" in v:
        index = v.get("leaf_index", v.get("seq"))
        origin, size, root = note_head(v["checkpoint"], v.get("verifier_key"))
        need((size, root) == (v["tree_size"], hx(v, "root_hex")), "checkpoint size and root")
        path = [bytes.fromhex(h) for h in v["audit_path_hex"]]
        verify_inclusion(hx(v, "leaf_hash_hex"), index, size, path, root)
        checks += 1
    if "proof_hex" in v:
        _, old_size, old_root = note_head(v["old_checkpoint"], v.get("verifier_key"))
        _, new_size, new_root = note_head(v["new_checkpoint"], v.get("verifier_key"))
        need((old_size, old_root) == (v["old_size"], hx(v, "old_root_hex")), "old checkpoint")
        need((new_size, new_root) == (v["new_size"], hx(v, "new_root_hex")), "new checkpoint")
        proof = [bytes.fromhex(h) for h in v["proof_hex"]]
        verify_consistency(old_size, new_size, old_root, new_root, proof)
        checks += 1
    need(checks > 0, "nothing in this vector that this script knows how to check")
    return checks


def vector_paths(root: str) -> list[str]:
    """Every docs/test-vectors/*.json under a repository root."""
    return sorted(glob.glob(os.path.join(root, "docs", "test-vectors", "*.json")))


def check_files(paths: Sequence[str], report: Callable[[str], None] = print, root: str = "") -> tuple[int, int]:
    """Checks each vector file, reporting one line each; returns (passed, failed)."""
    passed = failed = 0
    for path in paths:
        name = os.path.relpath(path, root) if root else path
        try:
            with open(path, encoding="utf-8") as f:
                vector = json.load(f)
            checks = check_vector(vector)
            report(f"ok      {name} ({checks} check{'' if checks == 1 else 's'})")
            passed += 1
        except (Failed, KeyError, ValueError, TypeError) as e:
            report(f"FAILED  {name}: {type(e).__name__}: {e}")
            failed += 1
    return passed, failed
