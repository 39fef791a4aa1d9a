"""The published test vectors pass in this package, signatures included; a tampered copy fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coalition_hub import SigningKey
from coalition_hub.note import verifier_key
from coalition_hub.vectors import Failed, check_vector, vector_paths

ROOT = Path(__file__).resolve().parents[3]
PATHS = vector_paths(str(ROOT))


def test_there_are_vectors() -> None:
    assert len(PATHS) >= 14


@pytest.mark.parametrize("path", PATHS, ids=[Path(p).name for p in PATHS])
def test_vector_passes(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        assert check_vector(json.load(f)) > 0


def load(name: str) -> dict:  # type: ignore[type-arg]
    with open(ROOT / "docs" / "test-vectors" / name, encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def test_a_flipped_signature_byte_fails() -> None:
    v = load("hash-set.json")
    sig = bytearray.fromhex(v["signatures"][0]["sig_hex"])
    sig[0] ^= 1
    v["signatures"][0]["sig_hex"] = sig.hex()
    with pytest.raises(Failed, match="does not verify"):
        check_vector(v)


def test_a_checkpoint_note_signed_by_another_key_fails() -> None:
    v = load("checkpoint.json")
    other = SigningKey.generate().public_bytes
    v["verifier_key"] = verifier_key(v["hub_name"], other)
    v["hub_public_key_hex"] = other.hex()
    with pytest.raises(Failed, match="no signature by the hub key"):
        check_vector(v)


def test_a_non_canonical_header_fails() -> None:
    v = load("genesis.json")
    v["header_hex"] = v["header_hex"] + "5000"  # field 10 = 0: an explicit default value
    with pytest.raises(Failed):
        check_vector(v)
