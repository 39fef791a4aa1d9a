"""Witness cosignatures (PROTOCOL.md §3.8) with a real `coalition witness`: the policy is the
one the replica replays from the settings; a strict sync requires it met and refuses forged
lines served by a hostile hub."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Iterator

import pytest
from conftest import client_of, key_of
from hostile import HostileHub, Lies, capture
from hubprocess import Hub

from coalition_hub import HashInput, HubClient, SigningKey, SyncState
from coalition_hub import client as client_module
from coalition_hub import errors as E
from coalition_hub.witness import cosigner_key_id

WITNESS = "witness.test/w1"


@pytest.fixture(scope="module")
def witnessed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, str]]:
    tmp = tmp_path_factory.mktemp("witnessed")
    hub = Hub(tmp)
    proc = None
    try:
        out = hub.run("witness", "init", "--data", str(tmp / "w"), "--name", WITNESS)
        wkey = re.search(r"witness key: (\S+)", out)
        assert wkey, out
        hub.log.flush()
        ckey = re.search(r"checkpoint_key=(\S+)", (tmp / "serve.log").read_text())
        assert ckey
        proc = subprocess.Popen(
            [hub.bin, "witness", "run", "--data", str(tmp / "w"), "--listen", "127.0.0.1:0", "--log", ckey.group(1)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert proc.stdout is not None
        m = None
        for _ in range(16):  # it prints its key, then where it listens
            line = proc.stdout.readline()
            m = re.match(r"witness listening on (\S+)", line)
            if m or not line:
                break
        assert m, line
        (tmp / "policy.txt").write_text(f"witness {wkey.group(1)} http://{m.group(1)}\nquorum {WITNESS}\n")
        hub.admin("settings", "witnesses", "--policy", str(tmp / "policy.txt"))
        client_of(hub, "acme").submit_hashes(key_of(hub, "acme"), [HashInput("md5", os.urandom(16))])
        yield hub, wkey.group(1)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()
        hub.stop()


def test_a_strict_sync_is_witnessed_by_the_policy(witnessed: tuple[Hub, str]) -> None:
    hub, _ = witnessed
    state = SyncState()
    entries = list(client_of(hub, "globex").sync(state, require_witnessed=True))
    assert entries and state.witness is not None
    assert state.witness["met"] and state.witness["cosigners"] == [WITNESS] and state.witness["forged"] == []
    assert state.witness["size"] == state.size and state.witness["newest"] > 0


def serve_cosigned(hub: Hub, lines: list[str]) -> Iterator[HubClient]:
    double = HostileHub(hub, Lies(capture(hub), cosignatures=lines))
    try:
        with HubClient.from_certs_dir(double.addr, hub.certs, "globex") as c:
            yield c
    finally:
        double.stop()


def test_forged_cosignature_is_refused_in_strict_mode(witnessed: tuple[Hub, str]) -> None:
    hub, _ = witnessed
    # A line under the witness's name signed by a key the hub made up.
    fake = SigningKey.generate()
    sig = cosigner_key_id(WITNESS, fake.public_bytes) + (1).to_bytes(8, "big") + bytes(64)
    line = f"\u2014 {WITNESS} {base64.b64encode(sig).decode()}"
    for c in serve_cosigned(hub, [line]):
        with pytest.raises(E.ForgedCosignature):
            list(c.sync(SyncState(), require_witnessed=True))
        state = SyncState()
        assert list(c.sync(state))  # not strict: the entries are proven; the report says forged
        assert state.witness is not None and state.witness["forged"] == [WITNESS] and not state.witness["met"]


def test_no_cosignature_is_not_witnessed(witnessed: tuple[Hub, str], monkeypatch: pytest.MonkeyPatch) -> None:
    hub, _ = witnessed
    monkeypatch.setattr(client_module, "WITNESS_WAIT_S", 0.3)
    for c in serve_cosigned(hub, []):
        with pytest.raises(E.NotWitnessed):
            list(c.sync(SyncState(), require_witnessed=True))
