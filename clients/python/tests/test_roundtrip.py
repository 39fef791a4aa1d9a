"""Submit -> sync -> verify against a real hub over mutual TLS, resume from a saved state,
membership changes made by the Rust CLI replayed by the Python replica, lifecycle states,
restricted statements, match."""

from __future__ import annotations

import base64
import json
import os

import pytest
from conftest import client_of, key_of
from hubprocess import Hub

from coalition_hub import (
    EntryState,
    HashInput,
    IndicatorInput,
    HubCallError,
    Kind,
    SigningKey,
    SyncFilter,
    SyncState,
)
from coalition_hub import errors as E
from coalition_hub.client import Receipt
from coalition_hub.merkle import Frontier
from coalition_hub.statements import hash_set_body, sign_statement

PDQ = bytes(range(32))
HASHES = [
    HashInput("md5", "d41d8cd98f00b204e9800998ecf8427e", labels=("a1", "ncmec-ref")),
    HashInput("sha1", bytes(range(20)), labels=("B2",)),
    HashInput("sha256", os.urandom(32)),
    HashInput("pdq", PDQ, quality=92, labels=("A1",)),
    HashInput("photodna", bytes(144)),
]


def sync_all(client, state):  # type: ignore[no-untyped-def]
    return list(client.sync(state))


def test_whoami_names_the_certificate_member(hub: Hub) -> None:
    with client_of(hub, "acme") as c:
        me = c.whoami()
    assert (me.member_id, me.roles, me.status) == ("acme", ("member",), "active")


def test_submit_sync_verify_round_trip_and_resume(hub: Hub) -> None:
    acme, globex = client_of(hub, "acme"), client_of(hub, "globex")
    receipt = acme.submit_hashes(key_of(hub, "acme"), HASHES, description="round trip")
    assert len(receipt.statement_id) == 64 and not receipt.already_present
    envelope = sign_statement("acme", key_of(hub, "acme"), hash_set_body(HASHES[:1]))
    first = acme.submit(envelope)
    again = acme.submit(envelope)  # resubmitting the same envelope is idempotent at the hub
    assert again == Receipt(first.statement_id, first.seq, first.received_at_ms, True)
    assert first.seq > receipt.seq

    state = SyncState(genesis=hub.genesis)
    entries = sync_all(globex, state)
    assert [e.seq for e in entries] == list(range(len(entries)))
    assert entries[0].kind == Kind.GENESIS and entries[0].statement_id == hub.genesis
    mine = next(e for e in entries if e.statement_id == receipt.statement_id)
    assert (mine.seq, mine.received_at_ms, mine.issuer, mine.kind) == (receipt.seq, receipt.received_at_ms, "acme", Kind.HASH_SET)
    assert mine.description == "round trip" and mine.has_body
    got = [(h.entry_index, h.type, h.value_hex, h.quality, h.labels) for h in mine.hashes]
    assert got == [
        (0, "md5", "d41d8cd98f00b204e9800998ecf8427e", None, ("A1", "ncmec-ref")),
        (1, "sha1", bytes(range(20)).hex(), None, ("B2",)),
        (2, "sha256", HASHES[2].value.hex(), None, ()),  # type: ignore[union-attr]
        (3, "pdq", PDQ.hex(), 92, ("A1",)),
        (4, "photodna", bytes(144).hex(), None, ()),
    ]
    assert all(mine.state(i) == EntryState.ACTIVE for i in range(5))
    assert state.size == entries[-1].seq + 1 and state.checkpoint

    # Resume from the saved JSON: only what is new, continuing the sequence.
    saved = state.to_json()
    r2 = acme.submit_hashes(key_of(hub, "acme"), [HashInput("sha256", os.urandom(32))])
    resumed = SyncState.from_json(saved)
    more = sync_all(globex, resumed)
    assert [e.seq for e in more] == list(range(state.size, r2.seq + 1))
    assert more[-1].statement_id == r2.statement_id
    # Nothing new: nothing yielded, the checkpoint is still verified and the state kept.
    assert sync_all(globex, resumed) == [] and resumed.size == r2.seq + 1


def test_pinned_genesis_mismatch_is_refused(hub: Hub) -> None:
    with pytest.raises(E.WrongGenesis):
        sync_all(client_of(hub, "globex"), SyncState(genesis="00" * 32))


def test_state_of_another_member_is_refused(hub: Hub) -> None:
    state = SyncState()
    sync_all(client_of(hub, "globex"), state)
    with pytest.raises(E.StateError):
        sync_all(client_of(hub, "acme"), SyncState.from_json(state.to_json()))


def test_lifecycle_retraction_opinion_and_admin_quarantine(hub: Hub) -> None:
    acme, globex = client_of(hub, "acme"), client_of(hub, "globex")
    k = key_of(hub, "acme")
    r = acme.submit_hashes(k, HASHES[:4], description="lifecycle")
    acme.retract(k, r.statement_id, "a public-domain image", entries=[1])
    globex.submit_opinion(key_of(hub, "globex"), r.statement_id, 0, "disputed", "looks odd")
    hub.admin("quarantine", r.statement_id, "--entry", "2", "--note", "court order")
    entries = sync_all(globex, SyncState())
    target = next(e for e in entries if e.statement_id == r.statement_id)
    assert target.state(0) == EntryState.DISPUTED
    assert target.state(1) == EntryState.RETRACTED
    assert target.state(2) == EntryState.QUARANTINED
    assert target.state(3) == EntryState.ACTIVE
    kinds = [e.kind for e in entries if e.seq > target.seq]
    assert kinds.count(Kind.RETRACTION) >= 1 and kinds.count(Kind.OPINION) >= 2
    # Each lifecycle entry names its target and the target's states once it is applied.
    retraction = next(e for e in entries if e.kind == Kind.RETRACTION and e.target_statement_id == r.statement_id)
    assert retraction.target_state(1) == EntryState.RETRACTED and retraction.target_state(0) == EntryState.DISPUTED
    # The hub's matching agrees on the retracted entry.
    hits = globex.match([HASHES[1]], states=[EntryState.RETRACTED])
    assert any(h.statement_id == r.statement_id and h.state == EntryState.RETRACTED for h in hits)


def test_restricted_statement_body_only_for_its_readers(hub: Hub) -> None:
    acme = client_of(hub, "acme")
    r = acme.submit_hashes(key_of(hub, "acme"), [HashInput("sha256", os.urandom(32))], recipients=["globex"])
    seen = {}
    for member in ("globex", "initech"):
        entries = sync_all(client_of(hub, member), SyncState())
        seen[member] = next(e for e in entries if e.statement_id == r.statement_id)
    assert seen["globex"].has_body and len(seen["globex"].hashes) == 1
    assert not seen["initech"].has_body and seen["initech"].hashes == ()
    assert seen["initech"].recipients == ("globex",)


def test_key_rotation_made_by_the_rust_cli_is_replayed(hub: Hub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    initech = client_of(hub, "initech")
    old = key_of(hub, "initech")
    before = initech.submit_hashes(old, [HashInput("md5", os.urandom(16))])
    new = SigningKey.generate()
    (tmp_path / "new.pub").write_text(new.public_bytes.hex())
    hub.admin("key", "add", "--member", "initech", "--key-file", str(tmp_path / "new.pub"))
    hub.admin("key", "revoke", "--member", "initech", "--key-id", old.key_id, "--why", "retired")
    with pytest.raises(HubCallError) as refused:
        initech.submit_hashes(old, [HashInput("md5", os.urandom(16))])
    assert refused.value.code == "PERMISSION_DENIED"
    after = initech.submit_hashes(new, [HashInput("md5", os.urandom(16))])
    entries = sync_all(client_of(hub, "globex"), SyncState())
    by_id = {e.statement_id: e for e in entries}
    assert by_id[before.statement_id].key_id == old.key_id
    assert by_id[after.statement_id].key_id == new.key_id


def test_match_exact_and_pdq_near(hub: Hub) -> None:
    acme, globex = client_of(hub, "acme"), client_of(hub, "globex")
    pdq = os.urandom(32)
    md5 = os.urandom(16)
    r = acme.submit_hashes(key_of(hub, "acme"), [HashInput("md5", md5), HashInput("pdq", pdq, quality=90)])
    near = bytearray(pdq)
    near[0] ^= 0b111  # 3 bits away
    hits = globex.match([HashInput("md5", md5), HashInput("pdq", bytes(near), quality=90), HashInput("md5", os.urandom(16))])
    assert {(h.query_index, h.statement_id, h.distance) for h in hits} == {(0, r.statement_id, 0), (1, r.statement_id, 3)}


def test_a_member_may_not_sign_in_anothers_name(hub: Hub) -> None:
    globex = client_of(hub, "globex")
    with pytest.raises(HubCallError) as e:
        globex.submit_hashes(key_of(hub, "acme"), [HashInput("md5", os.urandom(16))])
    assert e.value.code in ("PERMISSION_DENIED", "INVALID_ARGUMENT")


def test_compromised_key_flags_what_it_signed(hub: Hub) -> None:
    # A member made now: its certificate and key by `coalition pki init`, admitted by the CLI.
    hub.run("pki", "init", "--certs", str(hub.certs), "--member", "umbrella")
    hub.admit("umbrella", "member")
    umbrella = client_of(hub, "umbrella")
    k = key_of(hub, "umbrella")
    r = umbrella.submit_hashes(k, [HashInput("md5", os.urandom(16))])
    hub.admin("key", "revoke", "--member", "umbrella", "--key-id", k.key_id, "--why", "compromised", "--since", "2020-01-01T00:00:00Z")
    entries = sync_all(client_of(hub, "globex"), SyncState())
    target = next(e for e in entries if e.statement_id == r.statement_id)
    assert target.state(0) == EntryState.COMPROMISED


def test_expired_entries(hub: Hub) -> None:
    import time

    acme = client_of(hub, "acme")
    r = acme.submit_hashes(key_of(hub, "acme"), [HashInput("md5", os.urandom(16))], expires_at_ms=int(time.time() * 1000) + 1500)
    time.sleep(1.6)
    entries = sync_all(client_of(hub, "globex"), SyncState())
    target = next(e for e in entries if e.statement_id == r.statement_id)
    assert target.expires_at_ms is not None and target.state(0) == EntryState.EXPIRED


def test_risk_signal_submitted_by_the_rust_cli(hub: Hub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "signal.json").write_text(
        '{"category":"sextortion","severity":"high","title":"Payment-demand script",'
        '"indicators":[{"type":"keyword","value":"pay or i send them"},{"type":"domain","value":"pay-now.example"},'
        '{"type":"hash","hash":{"type":"sha256","hash":"' + "ab" * 32 + '","labels":["A1"]}}],'
        '"first_seen_ms":1764000000000,"last_seen_ms":1764100000000}'
    )
    hub.run("submit", "--as", "acme", "--signal", str(tmp_path / "signal.json"), "--hub", hub.addr, "--certs", str(hub.certs))
    entries = sync_all(client_of(hub, "globex"), SyncState())
    sig = [e for e in entries if e.kind == Kind.RISK_SIGNAL][-1]
    assert sig.risk_signal is not None
    assert (sig.risk_signal.category, sig.risk_signal.severity, sig.risk_signal.title) == ("sextortion", "high", "Payment-demand script")
    assert [i.type for i in sig.risk_signal.indicators] == ["keyword", "domain", "hash"]
    assert [(h.entry_index, h.type, h.value_hex, h.labels) for h in sig.hashes] == [(2, "sha256", "ab" * 32, ("A1",))]


def test_a_sync_from_beyond_the_log_is_behind(hub: Hub) -> None:
    globex = client_of(hub, "globex")
    state = SyncState()
    sync_all(globex, state)
    data = json.loads(state.to_json())
    # As if this member had verified one entry more than the server holds.
    frontier = Frontier(data["size"], [bytes.fromhex(h) for h in data["frontier"]])
    frontier.append(os.urandom(32))
    data["size"] += 1
    data["frontier"] = [h.hex() for h in frontier.hashes]
    data["ids"] = base64.b64encode(base64.b64decode(data["ids"]) + os.urandom(32)).decode()
    with pytest.raises(E.Behind):
        sync_all(globex, SyncState.from_json(json.dumps(data)))


def test_erasure_under_legal_order(hub: Hub) -> None:
    acme, globex = client_of(hub, "acme"), client_of(hub, "globex")
    r = acme.submit_hashes(key_of(hub, "acme"), [HashInput("md5", os.urandom(16))], description="to erase")
    hub.admin("erase", r.statement_id, "--reason", "court order 2026-301")
    entries = sync_all(globex, SyncState())
    target = next(e for e in entries if e.statement_id == r.statement_id)
    # The hub serves the header only, with erased_by; the replica checks the claim.
    assert not target.has_body and target.hashes == () and target.state(0) == EntryState.ERASED
    erasure = next(e for e in entries if e.target_statement_id == r.statement_id)
    assert erasure.kind == Kind.RETRACTION and erasure.target_state(0) == EntryState.ERASED


def test_filtered_sync_withholds_and_still_verifies(hub: Hub) -> None:
    acme = client_of(hub, "acme")
    pdq = acme.submit_hashes(key_of(hub, "acme"), [HashInput("pdq", os.urandom(32), quality=80)])
    md5 = acme.submit_hashes(key_of(hub, "acme"), [HashInput("md5", os.urandom(16))])
    state = SyncState(filter=SyncFilter(hash_types=("pdq",)))
    entries = {e.statement_id: e for e in client_of(hub, "globex").sync(state)}
    assert entries[pdq.statement_id].has_body and entries[md5.statement_id].has_body is False
    assert entries[md5.statement_id].hashes == ()
    # Governance always comes whole; the filter is kept by the saved state.
    assert all(e.has_body for e in entries.values() if e.kind in (Kind.GENESIS, Kind.MEMBERSHIP))
    resumed = SyncState.from_json(state.to_json())
    assert resumed.filter == SyncFilter(hash_types=("pdq",))
    later = acme.submit_hashes(key_of(hub, "acme"), [HashInput("md5", os.urandom(16))])
    more = list(client_of(hub, "globex").sync(resumed))
    assert [e.statement_id for e in more] == [later.statement_id] and not more[0].has_body


def test_risk_signal_submitted_by_the_python_client(hub: Hub) -> None:
    import time

    now = int(time.time() * 1000)
    acme = client_of(hub, "acme")
    r = acme.submit_risk_signal(
        key_of(hub, "acme"), "grooming", "medium", "Lure phrases",
        [IndicatorInput("keyword", "wanna be a model?"), IndicatorInput("account_handle", "@lure", platform="chat"),
         IndicatorInput("hash", hash=HashInput("pdq", PDQ, quality=70, labels=("b1",)))],
        now - 1000, now, description="seen this week", expires_at_ms=now + 86_400_000,
    )
    entries = sync_all(client_of(hub, "globex"), SyncState())
    sig = next(e for e in entries if e.statement_id == r.statement_id)
    assert sig.risk_signal is not None and sig.risk_signal.title == "Lure phrases" and sig.risk_signal.category == "grooming"
    assert [(i.type, i.value, i.platform) for i in sig.risk_signal.indicators[:2]] == [("keyword", "wanna be a model?", ""), ("account_handle", "@lure", "chat")]
    assert sig.hashes == ((2, "pdq", PDQ.hex(), 70, ("B1",)),) and sig.risk_signal.indicators[2].hash == sig.hashes[0]


def _vpdq(frames: list[tuple[int, int, int, bytes]]) -> bytes:
    """A vpdq value (§2.3.2): (frame number, timestamp ms, quality, pdq) per frame."""
    return b"".join(n.to_bytes(4, "big") + ts.to_bytes(4, "big") + bytes([q]) + h for n, ts, q, h in frames)


def test_vpdq_and_url_md5_entries_sync_verified_and_match(hub: Hub) -> None:
    acme, globex = client_of(hub, "acme"), client_of(hub, "globex")
    frames = [(i, i * 1000, 90, os.urandom(32)) for i in range(6)]
    video = _vpdq(frames)
    url = os.urandom(16)
    r = acme.submit_hashes(key_of(hub, "acme"), [HashInput("vpdq", video, labels=("video",)), HashInput("url_md5", url)])
    state = SyncState(genesis=hub.genesis)
    mine = next(e for e in sync_all(globex, state) if e.statement_id == r.statement_id)
    assert [(h.type, h.value_hex, h.quality) for h in mine.hashes] == [("vpdq", video.hex(), None), ("url_md5", url.hex(), None)]
    # The same video (and a longer upload holding it) matches by the frame rule.
    padded = _vpdq(frames + [(6 + i, 6000 + i * 1000, 90, os.urandom(32)) for i in range(3)])
    hits = globex.match([HashInput("vpdq", padded), HashInput("url_md5", url)])
    assert {(h.query_index, h.statement_id) for h in hits} == {(0, r.statement_id), (1, r.statement_id)}


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"", "whole number of 41-byte frames"),
        (bytes(40), "got 40 bytes"),
        (_vpdq([(0, 0, 101, bytes(32))]), "quality must be 0..=100"),
        (_vpdq([(1, 0, 90, bytes(32)), (1, 5, 90, bytes(32))]), "frame numbers must increase"),
        (_vpdq([(1, 9, 90, bytes(32)), (2, 5, 90, bytes(32))]), "timestamps must not decrease"),
    ],
)
def test_vpdq_field_rules(value: bytes, reason: str) -> None:
    from coalition_hub.statements import check_vpdq_value

    problem = check_vpdq_value(value)
    assert problem is not None and reason in problem, problem
