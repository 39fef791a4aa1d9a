"""`SyncState.states_of` (an earlier statement's entry states as of a saved position) and
`HubClient.submit_opinion`'s `seen` (restricted to the entry's issuer, the hash copied from an
unrestricted target), against a real hub."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import client_of, key_of
from hubprocess import Hub

from coalition_hub import EntryState, HashInput, HubCallError, Kind, SyncFilter, SyncState, Verdict, VerifiedEntry
from coalition_hub import errors as E


def sync_all(member: str, hub: Hub, state: SyncState) -> list[VerifiedEntry]:
    with client_of(hub, member) as c:
        return list(c.sync(state))


def hashes(n: int) -> list[HashInput]:
    return [HashInput("md5", os.urandom(16)) for _ in range(n)]


# --- SyncState.states_of ------------------------------------------------------------------------


def test_states_of_follows_later_lifecycle_statements_across_resumes(hub: Hub) -> None:
    acme = client_of(hub, "acme")
    k = key_of(hub, "acme")
    r = acme.submit_hashes(k, hashes(4), description="states_of")
    state = SyncState(genesis=hub.genesis)
    first = sync_all("globex", hub, state)
    assert state.states_of(r.statement_id) == (EntryState.ACTIVE, {})

    # Later statements about it: a retraction of entry 1, a quarantine of entry 2, a disputed
    # opinion on entry 3. A resumed sync yields only them, not the hash set again.
    acme.retract(k, r.statement_id, "a cat photo", entries=[1])
    hub.admin("quarantine", r.statement_id, "--entry", "2", "--note", "court order")
    client_of(hub, "initech").submit_opinion(key_of(hub, "initech"), r.statement_id, 3, "disputed")
    resumed = SyncState.from_json(state.to_json())
    more = sync_all("globex", hub, resumed)
    assert r.statement_id not in {e.statement_id for e in more}
    assert [e.kind for e in more] == [Kind.RETRACTION, Kind.OPINION, Kind.OPINION]
    want = (EntryState.ACTIVE, {1: EntryState.RETRACTED, 2: EntryState.QUARANTINED, 3: EntryState.DISPUTED})
    assert resumed.states_of(r.statement_id) == want
    # The same from the saved JSON (a new process), and as the sync's own per-entry view says.
    assert SyncState.from_json(resumed.to_json()).states_of(r.statement_id) == want
    assert (more[-1].target_base_state, more[-1].target_entry_states) == want
    # The earlier state is where it was: states as of its own position.
    assert state.states_of(r.statement_id) == (EntryState.ACTIVE, {})
    assert first[-1].statement_id == r.statement_id

    # The next sync saves a new position: states_of follows it (released entry 2 is active
    # again: an entry no longer differing from the base is left out of `named`).
    hub.admin("release", r.statement_id, "--entry", "2")
    sync_all("globex", hub, resumed)
    assert resumed.states_of(r.statement_id) == (EntryState.ACTIVE, {1: EntryState.RETRACTED, 3: EntryState.DISPUTED})
    # A whole-set retraction changes the base state (and outranks the dispute, §4.3).
    acme.retract(k, r.statement_id, "wrong list")
    sync_all("globex", hub, resumed)
    assert resumed.states_of(r.statement_id) == (EntryState.RETRACTED, {})
    # `now_ms` decides expiry.
    t0 = int(time.time() * 1000)
    e = acme.submit_hashes(k, hashes(1), expires_at_ms=t0 + 60_000)
    sync_all("globex", hub, resumed)
    assert resumed.states_of(e.statement_id, now_ms=t0) == (EntryState.ACTIVE, {})
    assert resumed.states_of(e.statement_id, now_ms=t0 + 60_000) == (EntryState.EXPIRED, {})


def test_states_of_a_withheld_body_and_of_what_is_not_there(hub: Hub) -> None:
    acme = client_of(hub, "acme")
    r = acme.submit_hashes(key_of(hub, "acme"), hashes(2))
    acme.retract(key_of(hub, "acme"), r.statement_id, "oops", entries=[0])
    # A filter that withholds the body (md5 not selected): the states are still decided, from
    # the header and the lifecycle statements, which always come whole.
    state = SyncState(filter=SyncFilter(hash_types=("pdq",)))
    entries = {e.statement_id: e for e in sync_all("globex", hub, state)}
    assert not entries[r.statement_id].has_body
    assert state.states_of(r.statement_id) == (EntryState.ACTIVE, {0: EntryState.RETRACTED})
    # Not a hash set or risk signal this state verified: KeyError, never a guessed "active".
    with pytest.raises(KeyError, match="not a hash set or risk signal"):
        state.states_of("ab" * 32)
    opinion = next(e for e in entries.values() if e.kind == Kind.RETRACTION)
    with pytest.raises(KeyError):
        state.states_of(opinion.statement_id)
    with pytest.raises(KeyError, match="verified no entry"):
        SyncState().states_of(r.statement_id)
    with pytest.raises(ValueError):
        state.states_of("abc")
    # A damaged state is refused, not read.
    data = json.loads(state.to_json())
    data["size"] += 1
    with pytest.raises(E.StateError, match="statement ids do not match its size"):
        SyncState.from_json(json.dumps(data)).states_of(r.statement_id)


# --- seen ---------------------------------------------------------------------------------------


def test_seen_is_restricted_to_the_entrys_issuer_and_copies_its_hash(hub: Hub) -> None:
    acme, globex = client_of(hub, "acme"), client_of(hub, "globex")
    rows = hashes(2)
    r = acme.submit_hashes(key_of(hub, "acme"), rows, description="seen")
    receipt = globex.submit_opinion(key_of(hub, "globex"), r.statement_id, 1, Verdict.SEEN, "matched an upload")
    assert not receipt.already_present

    # The submitter of the set (acme) reads it: restricted to acme, the hash copied from entry 1.
    by_acme = {e.statement_id: e for e in sync_all("acme", hub, SyncState())}
    seen = by_acme[receipt.statement_id]
    assert (seen.kind, seen.issuer, seen.recipients, seen.has_body) == (Kind.OPINION, "globex", ("acme",), True)
    assert seen.details is not None
    o = seen.details["opinion"]
    assert (o["statement_id"], o.get("entry", 0), o["verdict"], o["note"]) == (r.statement_id, 1, Verdict.SEEN, "matched an upload")
    assert (o["hash_type"], o["hash_value"]) == (1, rows[1].value.hex())  # type: ignore[union-attr]
    # A seen never changes a state.
    assert seen.target_state(1) == EntryState.ACTIVE
    # The member who said it reads it; a third member gets the header only ("globex sent an
    # opinion to acme"), still verified.
    by_globex = {e.statement_id: e for e in sync_all("globex", hub, SyncState())}
    assert by_globex[receipt.statement_id].has_body
    by_initech = {e.statement_id: e for e in sync_all("initech", hub, SyncState())}
    assert not by_initech[receipt.statement_id].has_body and by_initech[receipt.statement_id].recipients == ("acme",)

    # More readers: the issuer is always one of them, the opinion's issuer never.
    more = globex.submit_opinion(key_of(hub, "globex"), r.statement_id, 0, "seen", recipients=["initech", "globex"])
    by_initech = {e.statement_id: e for e in sync_all("initech", hub, SyncState())}
    assert by_initech[more.statement_id].recipients == ("acme", "initech") and by_initech[more.statement_id].has_body
    # Withdrawing the seen is restricted the same way; a public seen on request.
    withdrawn = globex.submit_opinion(key_of(hub, "globex"), r.statement_id, 1, "withdrawn", seen=True)
    public = globex.submit_opinion(key_of(hub, "globex"), r.statement_id, 1, "seen", recipients=[])
    by_initech = {e.statement_id: e for e in sync_all("initech", hub, SyncState())}
    assert by_initech[withdrawn.statement_id].recipients == ("acme",) and not by_initech[withdrawn.statement_id].has_body
    assert by_initech[public.statement_id].recipients == () and by_initech[public.statement_id].has_body
    assert by_initech[public.statement_id].details["opinion"]["hash_value"] == rows[1].value.hex()  # type: ignore[index, union-attr]


def test_seen_on_a_restricted_statement_copies_no_hash(hub: Hub) -> None:
    acme, globex = client_of(hub, "acme"), client_of(hub, "globex")
    r = acme.submit_hashes(key_of(hub, "acme"), hashes(1), recipients=["globex"])
    receipt = globex.submit_opinion(key_of(hub, "globex"), r.statement_id, 0, "seen")
    seen = next(e for e in sync_all("acme", hub, SyncState()) if e.statement_id == receipt.statement_id)
    assert seen.details is not None and seen.recipients == ("acme",)
    assert "hash_value" not in seen.details["opinion"] and "hash_type" not in seen.details["opinion"]


def test_opinion_arguments_the_protocol_refuses_are_refused_here(hub: Hub) -> None:
    acme, globex = client_of(hub, "acme"), client_of(hub, "globex")
    r = acme.submit_hashes(key_of(hub, "acme"), hashes(1))
    k = key_of(hub, "globex")
    with pytest.raises(ValueError, match="takes no recipients"):
        globex.submit_opinion(k, r.statement_id, 0, "confirmed", recipients=["acme"])
    with pytest.raises(ValueError, match="seen=True goes with a withdrawal"):
        globex.submit_opinion(k, r.statement_id, 0, "confirmed", seen=True)
    # A seen on one's own entry: the hub refuses it (FAILED_PRECONDITION), nothing stored.
    with pytest.raises(HubCallError) as refused:
        acme.submit_opinion(key_of(hub, "acme"), r.statement_id, 0, "seen")
    assert refused.value.code == "FAILED_PRECONDITION"


def test_an_opinion_on_a_hash_the_target_does_not_hold_is_never_signed(hub: Hub) -> None:
    """`expect_hash`: a caller that learnt the target from the hub (a Match hit) signs only if
    the verified target entry holds that very hash."""
    acme, globex = client_of(hub, "acme"), client_of(hub, "globex")
    mine = hashes(2)
    r = acme.submit_hashes(key_of(hub, "acme"), mine)
    k = key_of(hub, "globex")
    with pytest.raises(E.Altered, match="does not hold the md5 hash"):
        globex.submit_opinion(k, r.statement_id, 0, "confirmed", expect_hash=("md5", bytes(mine[1].value)))
    before = sum(1 for _ in globex.sync(SyncState()))
    with pytest.raises(E.Altered):
        globex.submit_opinion(k, r.statement_id, 1, "confirmed", expect_hash=("sha256", bytes(mine[1].value)))
    assert sum(1 for _ in globex.sync(SyncState())) == before, "nothing was submitted"
    receipt = globex.submit_opinion(k, r.statement_id, 1, "confirmed", expect_hash=("md5", bytes(mine[1].value)))
    assert receipt.seq > r.seq
