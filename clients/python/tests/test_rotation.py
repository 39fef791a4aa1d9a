"""A hub key rotation logged by the Rust CLI: the Python replica checks every checkpoint with
the hub key in force for its size, and refuses a checkpoint under the retired key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import client_of, key_of
from hostile import HostileHub, Lies, capture, sign_note
from hubprocess import Hub

from coalition_hub import HashInput, HubClient, SigningKey, SyncState
from coalition_hub import errors as E
from coalition_hub.merkle import tree_root
from coalition_hub.wire import leaf_data, leaf_hash

NEW_KEY = SigningKey.generate()


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("rotation")
    new_key = Path(tmp) / "next-hub.sign.key"
    new_key.write_bytes(NEW_KEY.to_pem())
    h = Hub(tmp, serve_args=("--next-hub-key", str(new_key)))
    try:
        acme = client_of(h, "acme")
        acme.submit_hashes(key_of(h, "acme"), [HashInput("md5", os.urandom(16))])
        h.admin("settings", "rotate-hub-key", "--new-key", str(new_key), "--reason", "yearly")
        acme.submit_hashes(key_of(h, "acme"), [HashInput("md5", os.urandom(16))])
        yield h
    finally:
        h.stop()


def test_sync_across_a_hub_key_rotation(rotated: Hub) -> None:
    state = SyncState(genesis=rotated.genesis)
    entries = list(client_of(rotated, "globex").sync(state))
    settings = [e for e in entries if e.details and "settings" in e.details]
    assert len(settings) == 1 and settings[0].details["settings"]["hub_key"]["hub_public_key"] == NEW_KEY.public_bytes.hex()  # type: ignore[index]
    assert state.checkpoint is not None and f"\n{state.size}\n" in state.checkpoint
    # The checkpoint after the rotation is signed by the new key, not the genesis key.
    assert NEW_KEY.public_bytes != SigningKey.from_pem_file(rotated.certs / "hub.sign.key").public_bytes


def test_a_checkpoint_under_the_retired_hub_key_is_refused(rotated: Hub) -> None:
    log = capture(rotated)
    leaves = [leaf_hash(leaf_data(e.statement_id, e.received_at_ms)) for e in log]
    old = SigningKey.from_pem_file(rotated.certs / "hub.sign.key")
    double = HostileHub(rotated, Lies(log, note=sign_note(len(log), tree_root(leaves), old)))
    try:
        with HubClient.from_certs_dir(double.addr, rotated.certs, "globex") as c, pytest.raises(E.RetiredHubKey):
            list(c.sync(SyncState()))
    finally:
        double.stop()


def test_a_batch_ending_before_the_rotation_is_proven_with_the_next(rotated: Hub) -> None:
    # The hub's newest checkpoint is signed by the new key, which a batch ending before the
    # rotation does not know yet: the client proves it together with the next batch.
    log = capture(rotated)
    leaves = [leaf_hash(leaf_data(e.statement_id, e.received_at_ms)) for e in log]
    note = sign_note(len(log), tree_root(leaves), NEW_KEY)
    double = HostileHub(rotated, Lies(log, note=note))
    try:
        with HubClient.from_certs_dir(double.addr, rotated.certs, "globex") as c:
            got = list(c.sync(SyncState(), batch_entries=2))
        assert [e.seq for e in got] == [e.seq for e in log]
    finally:
        double.stop()


def test_a_checkpoint_no_key_verifies_fails_at_the_end(rotated: Hub) -> None:
    log = capture(rotated)
    leaves = [leaf_hash(leaf_data(e.statement_id, e.received_at_ms)) for e in log]
    note = sign_note(len(log), tree_root(leaves), SigningKey.generate())
    double = HostileHub(rotated, Lies(log, note=note))
    try:
        with HubClient.from_certs_dir(double.addr, rotated.certs, "globex") as c, pytest.raises(E.CheckpointSignature):
            list(c.sync(SyncState(), batch_entries=2))
    finally:
        double.stop()
