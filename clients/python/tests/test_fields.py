"""Field rules without a hub: the fast reader of hash-set bytes agrees with the message API on
every shape, and both refuse what breaks a rule."""

from __future__ import annotations

import os
import random

import pytest

from coalition_hub.model import HashInput
from coalition_hub.pb import statement as spb
from coalition_hub.statements import (
    FieldError,
    _hash_set_entries,
    hash_set_body,
    hash_set_entries_fast,
)

LENGTHS = {"md5": 16, "sha1": 20, "sha256": 32, "pdq": 32, "photodna": 144}
LABELS = ["A1", "a2", "B1", "b2", "tag-x", "ncmec.ref:1", "x" * 64]


def random_body(rng: random.Random) -> spb.StatementBody:
    entries = []
    for _ in range(rng.randint(1, 60)):
        t = rng.choice(list(LENGTHS))
        labels = tuple(rng.sample(LABELS, rng.randint(0, 4)))
        entries.append(HashInput(t, os.urandom(LENGTHS[t]), rng.randint(0, 100) if t == "pdq" else None, labels))
    return hash_set_body(entries, description="d" * rng.randint(0, 300), expires_at_ms=rng.choice([None, 1, 2**40]))


def message_path(body: spb.StatementBody) -> tuple[list, set, set]:  # type: ignore[type-arg]
    hashes: list = []  # type: ignore[type-arg]
    types: set[int] = set()
    labels: set[str] = set()
    _hash_set_entries(body.hash_set, hashes, types, labels)
    return hashes, types, labels


def test_fast_reader_agrees_with_the_message_api() -> None:
    rng = random.Random(14)
    for _ in range(300):
        body = random_body(rng)
        raw = body.SerializeToString(deterministic=True)
        assert hash_set_entries_fast(raw) == message_path(body)


@pytest.mark.parametrize(
    "entry",
    [
        spb.HashEntry(type=1, value=bytes(15)),  # md5 of 15 bytes
        spb.HashEntry(type=4, value=bytes(32)),  # pdq without quality
        spb.HashEntry(type=4, value=bytes(32), quality=101),
        spb.HashEntry(type=3, value=bytes(32), quality=5),  # quality on sha256
        spb.HashEntry(type=1, value=bytes(16), labels=["A1", "a1"]),  # one category twice
        spb.HashEntry(type=1, value=bytes(16), labels=["Not A Tag"]),
        spb.HashEntry(type=1, value=bytes(16), labels=[f"t{i}" for i in range(17)]),
        spb.HashEntry(type=0, value=bytes(16)),
    ],
)
def test_both_readers_refuse_a_broken_entry(entry: spb.HashEntry) -> None:
    body = spb.StatementBody(hash_set=spb.HashSet(entries=[spb.HashEntry(type=2, value=bytes(20)), entry]))
    assert hash_set_entries_fast(body.SerializeToString(deterministic=True)) is None
    with pytest.raises(FieldError):
        message_path(body)
