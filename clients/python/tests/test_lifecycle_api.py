"""`SyncState.states_of` (an earlier statement's entry states as of a saved position), against a
real hub."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import client_of, key_of
from hubprocess import Hub

from coalition_hub import EntryState, HashInput, Kind, SyncFilter, SyncState, VerifiedEntry
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
