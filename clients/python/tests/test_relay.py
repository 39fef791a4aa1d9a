"""Relayed entries (PROTOCOL.md §3.10, rules 22-26) against real federating hubs.

Three `coalition` hubs on 127.0.0.1: O, then X relaying O (X trusts O), then A relaying X (A
trusts X only). X's log holds O's statements as relayed entries, so at A the statements of X
that follow them carry X's leaves for them as 88-byte gap leaves. A member of A syncs with this
client and gets X's statements verified back to X's genesis, membership and signed
checkpoints. Then a hub that lies serves A's real log bent (hostile.py): each lie is refused
with the error of its rule, and nothing of the refused batch is yielded."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import client_of, key_of
from hostile import Lies, capture
from hubprocess import Hub
from test_hostile import copy, refused, sync_through

from coalition_hub import EntryState, HashInput, Kind, SyncState, VerifiedEntry
from coalition_hub import errors as E
from coalition_hub.pb import hub as hpb
from coalition_hub.wire import leaf_data, leaf_hash, relayed_leaf_data

#: How long a hub may take to relay what its peer logged (the puller retries an untrusted or
#: unreachable peer with a back-off of at most 10 s).
RELAY_TIMEOUT_S = 90.0


def relayed(entries: list[hpb.SyncEntry]) -> list[hpb.SyncEntry]:
    return [e for e in entries if e.HasField("relay")]


def wait_until(what: str, done: Callable[[], bool]) -> None:
    """Polls `done` every 250 ms, failing after RELAY_TIMEOUT_S."""
    deadline = time.monotonic() + RELAY_TIMEOUT_S
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {RELAY_TIMEOUT_S} s: {what}")
        time.sleep(0.25)


def wait_relayed(hub: Hub, ids: set[str]) -> list[hpb.SyncEntry]:
    """Waits until `hub`'s log relays every statement of `ids` (hex); returns its log."""
    log: list[hpb.SyncEntry] = []

    def done() -> bool:
        nonlocal log
        log = capture(hub)
        return ids <= {e.statement_id.hex() for e in relayed(log)}

    wait_until(f"{hub.name} relays {len(ids)} statements", done)
    return log


def peer(origin: Hub, member: str) -> tuple[str, ...]:
    """`coalition serve` arguments relaying `origin` as `member` (admitted there as a peer)."""
    return ("--peer", f"{origin.addr},{origin.genesis},{origin.certs},{member}")


def trust(hub: Hub, origin: Hub) -> None:
    hub.admin("settings", "federation", "--origin", f"{origin.genesis}={origin.name}", "--reason", f"relay {origin.name}")


#: The SHA-256 value each hash set the tests submit holds, by statement id (hex).
SUBMITTED: dict[str, str] = {}


def sets(hub: Hub, member: str, n: int) -> list[str]:
    """`member` of `hub` submits `n` hash sets of one SHA-256 each; their statement ids."""
    out = []
    with client_of(hub, member) as c:
        for i in range(n):
            value = os.urandom(32)
            r = c.submit_hashes(key_of(hub, member), [HashInput("sha256", value)], description=f"{hub.name} {i}")
            SUBMITTED[r.statement_id] = value.hex()
            out.append(r.statement_id)
    return out


@dataclass
class Federation:
    o: Hub
    x: Hub
    a: Hub
    #: X's acme's hash sets (statement ids), the one it retracted, the one X's admins erased,
    #: and A's log.
    x_sets: list[str]
    retracted: str
    erased: str
    log: list[hpb.SyncEntry]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    hubs: list[Hub] = []
    try:
        o = Hub(tmp_path_factory.mktemp("o"), name="o.coalition.test", extra_members=("hub-x",))
        hubs.append(o)
        o.admit("hub-x", "peer")
        o_sets = sets(o, "acme", 2)
        x = Hub(tmp_path_factory.mktemp("x"), peer(o, "hub-x"), name="x.coalition.test", extra_members=("hub-a",))
        hubs.append(x)
        x.admit("hub-a", "peer")
        trust(x, o)
        wait_relayed(x, set(o_sets))
        # X's own statements after O's: at A they carry O's leaves in X's log as gap leaves.
        x_sets = sets(x, "acme", 3)
        with client_of(x, "acme") as c:
            c.retract(key_of(x, "acme"), x_sets[1], "a mistake")
        # And one X's admins erase before A relays it: it reaches A without its body, with the
        # erasure's origin position (`relay.erased_by`) for the origin replica to check.
        erased = sets(x, "initech", 1)[0]
        x.admin("erase", erased, "--reason", "court order")
        x_last = capture(x)[-1].statement_id.hex()  # the erasure
        # O's statements relayed by X after X's last own one: X's checkpoints cover leaves A
        # has not rebuilt yet, so the origin checkpoint A carries needs a consistency proof.
        wait_relayed(x, set(sets(o, "globex", 1)))
        a = Hub(tmp_path_factory.mktemp("a"), peer(x, "hub-a"))
        hubs.append(a)
        trust(a, x)
        # X's last own statement (the erasure) relayed means all of them are.
        log = wait_relayed(a, {x_last})
        yield Federation(o, x, a, x_sets, x_sets[1], erased, log)
    finally:
        for h in reversed(hubs):
            h.stop()


def leaf_of(e: hpb.SyncEntry) -> bytes:
    """An entry's Merkle leaf as a log records it (§3.1): 88 bytes for a relayed one."""
    if e.HasField("relay"):
        r = e.relay
        return leaf_hash(relayed_leaf_data(e.statement_id, e.received_at_ms, r.origin_genesis, r.origin_seq, r.origin_received_at_ms))
    return leaf_hash(leaf_data(e.statement_id, e.received_at_ms))


def lies(entries: list[hpb.SyncEntry]) -> Lies:
    """What the double serves: `entries`, and checkpoints (signed with A's real hub key) over
    their leaves, so the lie is in the entries and not in the checkpoint."""
    return Lies(entries, leaves=[leaf_of(e) for e in entries])


def with_gaps(log: list[hpb.SyncEntry]) -> int:
    """The index of the first relayed entry carrying gap leaves."""
    for i, e in enumerate(log):
        if e.HasField("relay") and len(e.relay.gap_leaves) > 0:
            return i
    raise AssertionError("no relayed entry carries gap leaves")


def relayed_sets(got: list[VerifiedEntry]) -> dict[str, VerifiedEntry]:
    return {v.statement_id: v for v in got if v.kind == Kind.HASH_SET and v.origin is not None}


# --- the real federation -------------------------------------------------------------------


def test_a_member_of_the_relaying_hub_syncs_relayed_statements_verified(fed: Federation) -> None:
    x_log = {e.statement_id.hex(): e for e in capture(fed.x)}
    i = with_gaps(fed.log)
    assert all(len(g) == 88 for g in fed.log[i].relay.gap_leaves), "X's leaves of what it relayed from O"
    proven = [e.relay.checkpoint for e in relayed(fed.log) if e.relay.HasField("checkpoint")]
    assert any(len(p.hashes) > 0 for c in proven for p in c.proofs), "an origin checkpoint with a consistency proof"
    state = SyncState(genesis=fed.a.genesis)
    with client_of(fed.a, "acme") as c:
        got = list(c.sync(state))
    assert state.size >= len(fed.log)
    by_id = relayed_sets(got)
    assert set(by_id) == {*fed.x_sets, fed.erased}, "X's hash sets, and nothing relayed from O (A trusts X only)"
    # Erased at X before the relay: no body, the claim checked in X's log, erased here too.
    gone = by_id[fed.erased]
    assert not gone.has_body and gone.hashes == () and gone.base_state == EntryState.ERASED
    assert gone.issuer == "initech@x.coalition.test"
    assert next(e for e in fed.log if e.statement_id.hex() == fed.erased).relay.HasField("erased_by")
    for sid in fed.x_sets:
        v, at_x = by_id[sid], x_log[sid]
        assert v.origin is not None
        assert v.origin.hub_name == "x.coalition.test"
        assert v.origin.genesis_id == fed.x.genesis
        assert (v.origin.seq, v.origin.received_at_ms) == (at_x.seq, at_x.received_at_ms)
        assert v.issuer == "acme@x.coalition.test"
        assert v.has_body and len(v.hashes) == 1
        assert v.hashes[0].value_hex == SUBMITTED[sid]
    # X's acme retracted one of its sets: the origin's word decides its state at A.
    assert by_id[fed.retracted].base_state == EntryState.RETRACTED
    assert by_id[fed.x_sets[0]].base_state == EntryState.ACTIVE
    lifecycle = {v.target_statement_id: v for v in got if v.kind == Kind.RETRACTION and v.origin is not None}
    assert set(lifecycle) == {fed.retracted, fed.erased}
    assert lifecycle[fed.retracted].issuer == "acme@x.coalition.test"
    assert lifecycle[fed.retracted].target_base_state == EntryState.RETRACTED
    assert lifecycle[fed.erased].target_base_state == EntryState.ERASED
    # X's governance (its genesis, admissions, federation settings) is relayed and verified too,
    # and never becomes A's.
    x_governance = [v for v in got if v.origin is not None and v.kind in (Kind.GENESIS, Kind.MEMBERSHIP, Kind.SETTINGS)]
    assert x_governance[0].kind == Kind.GENESIS and x_governance[0].statement_id == fed.x.genesis
    assert {v.issuer for v in got if v.origin is None and v.kind == Kind.MEMBERSHIP} == {"admin"}


def test_a_resumed_sync_continues_every_origin_where_it_stopped(fed: Federation, tmp_path: Path) -> None:
    state = SyncState(genesis=fed.a.genesis)
    with client_of(fed.a, "globex") as c:
        first = list(c.sync(state))
    assert fed.x_sets[0] in relayed_sets(first)
    saved = state.to_json()
    more = sets(fed.x, "globex", 2)
    wait_relayed(fed.a, set(more))
    resumed = SyncState.from_json(saved)
    with client_of(fed.a, "globex") as c:
        second = list(c.sync(resumed))
    by_id = relayed_sets(second)
    assert set(by_id) == set(more), "only what was relayed since, X's replica continuing from the saved state"
    assert all(v.issuer == "globex@x.coalition.test" for v in by_id.values())
    assert min(v.seq for v in second) == state.size
    # The retraction relayed before the save still decides the state after a restore.
    restored = SyncState.from_json(resumed.to_json())._restore("globex")
    assert restored.state_of(bytes.fromhex(fed.retracted), 0) == EntryState.RETRACTED
    assert restored.state_of(bytes.fromhex(fed.erased), 0) == EntryState.ERASED


def test_the_command_line_shows_where_a_relayed_statement_was_first_logged(fed: Federation, tmp_path: Path) -> None:
    from test_cli import cli

    out = cli(fed.a, "initech", "sync", "--state", str(tmp_path / "state.json"), "--genesis", fed.a.genesis)
    assert out.returncode == 0, out.stderr
    rows = {r["statement_id"]: r for r in map(json.loads, out.stdout.splitlines())}
    at_x = next(e for e in capture(fed.x) if e.statement_id.hex() == fed.x_sets[0])
    row = rows[fed.x_sets[0]]
    assert row["issuer"] == "acme@x.coalition.test"
    assert row["origin"] == {"hub": "x.coalition.test", "genesis": fed.x.genesis, "seq": at_x.seq, "received_at_ms": at_x.received_at_ms}
    assert row["hashes"][0]["value"] == SUBMITTED[fed.x_sets[0]]
    assert all("origin" not in r for r in rows.values() if r["issuer"] in ("admin", "acme"))


def test_an_honest_copy_of_the_relaying_hub_verifies(fed: Federation) -> None:
    got = sync_through(fed.a, lies(copy(fed.log)))
    assert set(relayed_sets(got)) == {*fed.x_sets, fed.erased}


# --- a hub that bends the relayed entries it really served ---------------------------------


def first_relayed(log: list[hpb.SyncEntry]) -> int:
    return next(i for i, e in enumerate(log) if e.HasField("relay"))


def test_a_changed_gap_leaf_is_refused_by_the_origins_checkpoint(fed: Federation) -> None:
    bent = copy(fed.log)
    i = with_gaps(bent)
    gaps = bent[i].relay.gap_leaves
    gaps[0] = bytes([gaps[0][0] ^ 1]) + gaps[0][1:]
    e = refused(fed.a, lies(bent), E.Relayed)
    assert isinstance(e, E.Relayed) and e.hub == "x.coalition.test"
    assert isinstance(e.error, (E.RootMismatch, E.Inconsistent)), e


def test_a_gap_leaf_of_the_wrong_length_is_refused(fed: Federation) -> None:
    bent = copy(fed.log)
    i = with_gaps(bent)
    bent[i].relay.gap_leaves[0] = bent[i].relay.gap_leaves[0][:87]
    e = refused(fed.a, lies(bent), E.Relayed)
    assert isinstance(e, E.Relayed) and isinstance(e.error, E.RelayEvidence) and "87 bytes" in str(e)


def test_a_40_byte_gap_leaf_for_a_statement_this_log_does_not_hold_is_refused(fed: Federation) -> None:
    bent = copy(fed.log)
    i = with_gaps(bent)
    bent[i].relay.gap_leaves[0] = os.urandom(32) + bent[i].relay.gap_leaves[0][32:40]
    e = refused(fed.a, lies(bent), E.Relayed)
    assert isinstance(e, E.Relayed) and isinstance(e.error, E.RelayEvidence) and "does not hold" in str(e)


def test_a_gap_leaf_whose_receipt_time_goes_back_is_refused(fed: Federation) -> None:
    bent = copy(fed.log)
    i = with_gaps(bent)
    g = bent[i].relay.gap_leaves[0]
    bent[i].relay.gap_leaves[0] = g[:32] + (0).to_bytes(8, "big") + g[40:]
    e = refused(fed.a, lies(bent), E.Relayed)
    assert isinstance(e, E.Relayed) and isinstance(e.error, E.TimeWentBack)


def test_an_origin_receipt_time_going_back_is_refused(fed: Federation) -> None:
    bent = copy(fed.log)
    i = first_relayed(bent)
    second = next(j for j in range(i + 1, len(bent)) if bent[j].HasField("relay"))
    bent[second].relay.origin_received_at_ms = bent[i].relay.origin_received_at_ms - 1
    e = refused(fed.a, lies(bent), E.Relayed)
    assert isinstance(e, E.Relayed) and isinstance(e.error, E.TimeWentBack)


def test_a_relayed_entry_skipping_an_origin_position_is_refused(fed: Federation) -> None:
    bent = copy(fed.log)
    i = first_relayed(bent)
    second = next(j for j in range(i + 1, len(bent)) if bent[j].HasField("relay"))
    bent[second].relay.origin_seq += 1
    e = refused(fed.a, lies(bent), E.Relayed)
    assert isinstance(e, E.Relayed) and isinstance(e.error, E.Gap)


def test_relays_without_the_origins_checkpoints_are_unproven(fed: Federation) -> None:
    bent = copy(fed.log)
    for e in relayed(bent):
        e.relay.ClearField("checkpoint")
    refused(fed.a, lies(bent), E.RelayUnproven)


def test_an_origin_checkpoint_with_a_proof_too_many_is_refused(fed: Federation) -> None:
    bent = copy(fed.log)
    last = [e for e in relayed(bent) if e.relay.HasField("checkpoint")][-1]
    last.relay.checkpoint.proofs.add().hashes.append(os.urandom(32))
    e = refused(fed.a, lies(bent), E.Relayed)
    assert isinstance(e, E.Relayed) and isinstance(e.error, (E.RelayEvidence, E.Inconsistent))


def test_an_untrusted_origin_genesis_is_refused(fed: Federation) -> None:
    for genesis in (os.urandom(32), bytes.fromhex(fed.o.genesis), bytes.fromhex(fed.a.genesis)):
        bent = copy(fed.log)
        bent[first_relayed(bent)].relay.origin_genesis = genesis
        e = refused(fed.a, lies(bent), E.UntrustedOrigin)
        assert genesis.hex() in str(e)


def test_an_origin_genesis_that_is_not_32_bytes_is_refused(fed: Federation) -> None:
    bent = copy(fed.log)
    i = first_relayed(bent)
    bent[i].relay.origin_genesis = bent[i].relay.origin_genesis[:31]
    refused(fed.a, lies(bent), E.RelayEvidence)


def test_an_erasure_claim_on_a_relayed_entry_itself_is_refused(fed: Federation) -> None:
    bent = copy(fed.log)
    i = first_relayed(bent)
    bent[i].erased_by = len(bent) - 1
    refused(fed.a, lies(bent), E.RelayEvidence)


def test_a_false_origin_erasure_claim_is_refused(fed: Federation) -> None:
    """The relay claims X's first hash set was erased by X's entry that is a hash set."""
    bent = copy(fed.log)
    target = next(e for e in bent if e.statement_id == bytes.fromhex(fed.x_sets[0]))
    later = next(e for e in bent if e.statement_id == bytes.fromhex(fed.x_sets[2]))
    target.envelope.body = b""
    target.relay.erased_by = later.relay.origin_seq
    err = refused(fed.a, lies(bent), E.Relayed)
    assert isinstance(err, E.Relayed) and isinstance(err.error, E.FalseErasure)


def test_a_relayed_statement_is_judged_by_the_origins_keys(fed: Federation) -> None:
    bent = copy(fed.log)
    sid = bytes.fromhex(fed.x_sets[0])
    e = next(e for e in bent if e.statement_id == sid)
    sig = e.envelope.signatures[0]
    sig.sig = bytes([sig.sig[0] ^ 1]) + sig.sig[1:]
    err = refused(fed.a, lies(bent), E.Relayed)
    assert isinstance(err, E.Relayed) and isinstance(err.error, E.BadSignature)


def test_relayed_statements_dropped_from_the_origins_log_are_refused(fed: Federation) -> None:
    """The relay leaves out X's genesis: X's log must start with it."""
    bent = copy(fed.log)
    i = first_relayed(bent)
    del bent[i]
    for j, e in enumerate(bent[i:], start=i):
        e.seq = j
    err = refused(fed.a, lies(bent), E.Relayed)
    assert isinstance(err, E.Relayed) and isinstance(err.error, (E.Gap, E.NotEntitled))
