"""Byte-level rules of PROTOCOL.md §2.1 and §3.1: canonical encoding, the DSSE PAE, statement
ids, key ids, ed25519 under one rule, and Merkle leaves. One implementation, used by the
sync verifier, the statement builder and the test-vector checker."""

from __future__ import annotations

import hashlib
import re
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError, Message

#: The payload type of protocol version 1 (§2.1).
PAYLOAD_TYPE = "application/vnd.coalition.statement.v1+protobuf"
_PAYLOAD_TYPE_RE = re.compile(r"^application/vnd\.coalition\.statement\.v([1-9][0-9]*)\+protobuf$")
_KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")

M = TypeVar("M", bound=Message)


class NotCanonical(ValueError):
    """Bytes that do not decode as the message, or do not re-encode to themselves."""


def canonical(cls: type[M], data: bytes, what: str) -> M:
    """Decodes `data` as `cls` and requires that re-encoding gives the same bytes (§2.1)."""
    message = cls()
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise NotCanonical(f"{what}: not a valid {cls.DESCRIPTOR.full_name}: {e}") from e
    again = message.SerializeToString(deterministic=True)
    if again != data:
        raise NotCanonical(
            f"{what}: not in canonical encoding (re-encoding gives {len(again)} bytes, not {len(data)})"
        )
    return message


def payload_version(payload_type: str) -> int | None:
    """The protocol version a payload type names, or None when it is not one (§1.1)."""
    m = _PAYLOAD_TYPE_RE.match(payload_type)
    return int(m.group(1)) if m else None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what every signature signs."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def statement_id(payload_type: str, payload: bytes) -> bytes:
    """SHA-256(PAE): the statement id, 32 bytes."""
    return hashlib.sha256(pae(payload_type, payload)).digest()


def key_id(public_key: bytes) -> str:
    """Lowercase hex of the first 8 bytes of SHA-256(raw public key)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def valid_key_id(kid: str) -> bool:
    """16 lowercase hex characters."""
    return bool(_KEY_ID_RE.match(kid))


# Small-order points of edwards25519 (encodings): `verify_strict` refuses keys and R among them.
_SMALL_ORDER = {
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "0100000000000000000000000000000000000000000000000000000000000080",
    )
}
_L = 2**252 + 27742317777372353535851937790883648493


def weak_key(public_key: bytes) -> bool:
    """A small-order (weak) ed25519 public key, refused by `verify_strict`."""
    return public_key in _SMALL_ORDER


def verify_ed25519(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """The one signature rule (§2.1): ed25519 with `verify_strict`'s extra refusals
    (canonical S below the group order, no small-order key or R)."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    if public_key in _SMALL_ORDER or signature[:32] in _SMALL_ORDER:
        return False
    if int.from_bytes(signature[32:], "little") >= _L:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def leaf_data(sid: bytes, received_at_ms: int) -> bytes:
    """The 40-byte Merkle leaf data of an entry (§3.1)."""
    return sid + received_at_ms.to_bytes(8, "big", signed=True)


LEAF_LEN = 40
RELAYED_LEAF_LEN = 88


def relayed_leaf_data(sid: bytes, received_at_ms: int, origin_genesis: bytes, origin_seq: int, origin_received_at_ms: int) -> bytes:
    """The 88-byte Merkle leaf data of a relayed entry (§3.1, §3.10): the 40 bytes of
    :func:`leaf_data`, then the origin's genesis id and where and when the origin logged it."""
    return (
        leaf_data(sid, received_at_ms)
        + origin_genesis
        + origin_seq.to_bytes(8, "big")
        + origin_received_at_ms.to_bytes(8, "big", signed=True)
    )


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()
