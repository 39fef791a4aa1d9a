"""A hub that lies: a test double serving a bent copy of a real hub's log. The client must
refuse each lie with the error of the rule it breaks, and yield nothing of the refused batch."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from conftest import client_of, key_of
from hostile import HostileHub, Lies, capture, sign_note
from hubprocess import Hub

from coalition_hub import HashInput, HubClient, SigningKey, SyncFilter, SyncState
from coalition_hub import errors as E
from coalition_hub.merkle import tree_root
from coalition_hub.pb import hub as hpb
from coalition_hub.pb import statement as spb
from coalition_hub.statements import hash_set_body, sign_statement
from coalition_hub.wire import leaf_data, leaf_hash


@pytest.fixture(scope="module")
def log(hub: Hub) -> list[hpb.SyncEntry]:
    acme = client_of(hub, "acme")
    for i in range(3):
        acme.submit_hashes(key_of(hub, "acme"), [HashInput("sha256", os.urandom(32)), HashInput("md5", os.urandom(16))], description=f"set {i}")
    client_of(hub, "globex").submit_hashes(key_of(hub, "globex"), [HashInput("pdq", os.urandom(32), quality=80)])
    return capture(hub)


def copy(entries: list[hpb.SyncEntry]) -> list[hpb.SyncEntry]:
    out = []
    for e in entries:
        c = hpb.SyncEntry()
        c.CopyFrom(e)
        out.append(c)
    return out


def first_hash_set(entries: list[hpb.SyncEntry]) -> int:
    for i, e in enumerate(entries):
        h = spb.Statement()
        h.ParseFromString(e.envelope.payload)
        if h.kind == spb.STATEMENT_KIND_HASH_SET:
            return i
    raise AssertionError("no hash set in the log")


def serve(hub: Hub, lies: Lies) -> Iterator[HubClient]:
    double = HostileHub(hub, lies)
    try:
        with HubClient.from_certs_dir(double.addr, hub.certs, "globex") as c:
            yield c
    finally:
        double.stop()


def sync_through(hub: Hub, lies: Lies, state: SyncState | None = None) -> list:  # type: ignore[type-arg]
    yielded = []
    for c in serve(hub, lies):
        for e in c.sync(state):
            yielded.append(e)
    return yielded


def refused(hub: Hub, lies: Lies, error: type[E.VerificationError], state: SyncState | None = None) -> E.VerificationError:
    """Syncs through the double; requires `error`, and that nothing was yielded."""
    yielded: list = []  # type: ignore[type-arg]
    with pytest.raises(error) as e:
        for c in serve(hub, lies):
            for v in c.sync(state):
                yielded.append(v)
    assert yielded == [], "a refused batch yields nothing"
    return e.value


def test_an_honest_copy_verifies(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    got = sync_through(hub, Lies(copy(log)))
    assert [e.seq for e in got] == [e.seq for e in log]


def test_flipped_signature_byte(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    i = first_hash_set(entries)
    sig = bytearray(entries[i].envelope.signatures[0].sig)
    sig[10] ^= 1
    entries[i].envelope.signatures[0].sig = bytes(sig)
    err = refused(hub, Lies(entries), E.BadSignature)
    assert err.seq == i and "does not verify" in str(err)


def test_dropped_entry(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    i = first_hash_set(entries)
    del entries[i]
    err = refused(hub, Lies(entries), E.Gap)
    assert err.seq == i and f"next entry present is {i + 1}" in str(err)


def test_reordered_entries(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    i = first_hash_set(entries)
    entries[i], entries[i + 1] = entries[i + 1], entries[i]
    refused(hub, Lies(entries), E.Gap)


def test_renumbered_entries_change_the_root(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    # Swap two entries AND their seqs: the sequence looks whole, but the signed checkpoint of
    # the real hub's log no longer matches the leaves.
    entries = copy(log)
    i = first_hash_set(entries)
    entries[i], entries[i + 1] = entries[i + 1], entries[i]
    entries[i].seq, entries[i + 1].seq = i, i + 1
    entries[i].received_at_ms = entries[i + 1].received_at_ms  # keep time from going back
    real_leaves = [leaf_hash(leaf_data(e.statement_id, e.received_at_ms)) for e in log]
    refused(hub, Lies(entries, leaves=real_leaves), E.RootMismatch)


def test_wrong_root_in_a_checkpoint_signed_by_the_hub_key(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    note = sign_note(len(log), bytes(32), SigningKey.from_pem_file(hub.certs / "hub.sign.key"))
    err = refused(hub, Lies(copy(log), note=note), E.RootMismatch)
    assert "history was rewritten" in str(err)


def test_checkpoint_signed_by_another_key(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    leaves = [leaf_hash(leaf_data(e.statement_id, e.received_at_ms)) for e in log]
    note = sign_note(len(log), tree_root(leaves), SigningKey.generate())
    refused(hub, Lies(copy(log), note=note), E.CheckpointSignature)


def forged_entry(log: list[hpb.SyncEntry], issuer: str, key: SigningKey) -> hpb.SyncEntry:
    env = sign_statement(issuer, key, hash_set_body([HashInput("md5", os.urandom(16))]))
    from coalition_hub.wire import statement_id

    last = log[-1]
    return hpb.SyncEntry(
        seq=last.seq + 1,
        received_at_ms=last.received_at_ms + 1,
        statement_id=statement_id(env.payload_type, env.payload),
        envelope=env,
    )


def test_entry_signed_by_a_key_not_entitled(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    # A statement in acme's name signed by a key that was never registered.
    entries = copy(log) + [forged_entry(log, "acme", SigningKey.generate())]
    err = refused(hub, Lies(entries), E.NotEntitled)
    assert err.seq == len(log) and "not registered" in str(err)


def test_entry_by_another_members_key(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    # globex's real key signing in acme's name: a registered key, but not the issuer's.
    entries = copy(log) + [forged_entry(log, "acme", key_of(hub, "globex"))]
    refused(hub, Lies(entries), E.NotEntitled)


def test_entry_by_a_non_member(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log) + [forged_entry(log, "mallory", SigningKey.generate())]
    err = refused(hub, Lies(entries), E.NotEntitled)
    assert "'mallory' is not an active member" in str(err)


def test_altered_body(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    i = first_hash_set(entries)
    body = bytearray(entries[i].envelope.body)
    body[-1] ^= 1
    entries[i].envelope.body = bytes(body)
    err = refused(hub, Lies(entries), E.InvalidEntry)
    assert "altered or swapped" in str(err)


def test_altered_header(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    i = first_hash_set(entries)
    h = spb.Statement()
    h.ParseFromString(entries[i].envelope.payload)
    h.issued_at_ms += 1
    entries[i].envelope.payload = h.SerializeToString()
    refused(hub, Lies(entries), E.Altered)


def test_withheld_body_of_an_unrestricted_statement(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    entries[first_hash_set(entries)].envelope.body = b""
    refused(hub, Lies(entries), E.WithheldSelected)


def test_withheld_membership_body(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    entries[1].envelope.body = b""  # entry 1 admits acme
    refused(hub, Lies(entries), E.WithheldMembership)


def test_false_erasure_claim(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    i = first_hash_set(entries)
    entries[i].envelope.body = b""
    entries[i].erased_by = i + 1  # entry i+1 is no erasure
    err = refused(hub, Lies(entries), E.FalseErasure)
    assert "is not an admin-quorum erasure" in str(err)


def test_duplicate_statement(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    dup = hpb.SyncEntry()
    dup.CopyFrom(entries[first_hash_set(entries)])
    dup.seq = len(entries)
    dup.received_at_ms = entries[-1].received_at_ms
    refused(hub, Lies(entries + [dup]), E.Duplicate)


def test_progress_that_lies_about_what_was_sent(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    refused(hub, Lies(copy(log), progress_next_seq=len(log) + 5), E.BadProgress)


def test_split_view_on_resume(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    state = SyncState()
    sync_through(hub, Lies(copy(log)), state)
    assert state.size == len(log)
    # Same size, another root, validly signed by the hub key: a fork.
    note = sign_note(len(log), bytes(32), SigningKey.from_pem_file(hub.certs / "hub.sign.key"))
    refused(hub, Lies(copy(log), note=note), E.SplitView, SyncState.from_json(state.to_json()))


def test_inconsistent_checkpoint_on_resume(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    state = SyncState()
    sync_through(hub, Lies(copy(log[:-1])), state)
    # The next entry comes, but the hub's proof is for another history.
    bent = copy(log)
    other = [leaf_hash(os.urandom(40)) for _ in log]
    note = sign_note(len(log), tree_root(other), SigningKey.from_pem_file(hub.certs / "hub.sign.key"))
    refused(hub, Lies(bent, note=note, leaves=other), E.RootMismatch, SyncState.from_json(state.to_json()))


def test_time_going_back(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    entries[-1].received_at_ms = entries[-2].received_at_ms - 1
    refused(hub, Lies(entries), E.TimeWentBack)


def test_honest_resume_through_the_double_with_a_consistency_proof(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    state = SyncState()
    sync_through(hub, Lies(copy(log[:3])), state)
    more = sync_through(hub, Lies(copy(log)), SyncState.from_json(state.to_json()))
    assert [e.seq for e in more] == list(range(3, len(log)))


def real_leaves(log: list[hpb.SyncEntry]) -> list[bytes]:
    return [leaf_hash(leaf_data(e.statement_id, e.received_at_ms)) for e in log]


def test_checkpoint_ahead_of_the_entries_is_proven_consistent(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    # The hub's checkpoint covers more than it sent: the replica proves its prefix is in it.
    state = SyncState()
    got = sync_through(hub, Lies(copy(log[:3]), leaves=real_leaves(log)), state)
    assert [e.seq for e in got] == [0, 1, 2] and state.size == 3
    assert state.checkpoint is not None and state.checkpoint.split("\n")[1] == str(len(log))
    more = sync_through(hub, Lies(copy(log)), SyncState.from_json(state.to_json()))
    assert [e.seq for e in more] == list(range(3, len(log)))


def test_bad_consistency_proof(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    refused(hub, Lies(copy(log[:3]), leaves=real_leaves(log), bad_proof=True), E.Inconsistent)


def test_entries_that_do_not_reach_the_accepted_checkpoint_root(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    state = SyncState()
    sync_through(hub, Lies(copy(log[:3]), leaves=real_leaves(log)), state)
    # Later the hub serves the rest with another last entry: at the accepted checkpoint's
    # size the rebuilt root differs (rule 19).
    bent = copy(log)
    bent[-1].received_at_ms += 1
    refused(hub, Lies(bent), E.RootMismatch, SyncState.from_json(state.to_json()))


def forged_change(log: list[hpb.SyncEntry], issuer: str, key: SigningKey) -> hpb.SyncEntry:
    admit = spb.Admission(member_id="mallory", display_name="Mallory", roles=[spb.ROLE_ADMIN], public_keys=[SigningKey.generate().public_bytes])
    env = sign_statement(issuer, key, spb.StatementBody(membership=spb.MembershipChange(reason="x", admit=admit)))
    from coalition_hub.wire import statement_id

    last = log[-1]
    return hpb.SyncEntry(seq=last.seq + 1, received_at_ms=last.received_at_ms + 1, statement_id=statement_id(env.payload_type, env.payload), envelope=env)


def test_membership_change_by_a_member_without_the_admin_role(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    err = refused(hub, Lies(copy(log) + [forged_change(log, "acme", key_of(hub, "acme"))]), E.NotEntitled)
    assert "lacks the 'admin' role" in str(err)


def test_membership_change_signed_by_the_admin_is_applied(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    # The control: the same change signed by the real admin (quorum 1) is entitled; the
    # double signs a checkpoint over it with the hub key, so the batch is proven.
    got = sync_through(hub, Lies(copy(log) + [forged_change(log, "admin", key_of(hub, "admin"))]))
    assert got[-1].details is not None and got[-1].details["membership"]["admit"]["member_id"] == "mallory"


def test_membership_change_that_is_impossible(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    # Admitting a member id that exists: entitled and signed, but impossible (rule 16).
    admit = spb.Admission(member_id="acme", roles=[spb.ROLE_MEMBER], public_keys=[SigningKey.generate().public_bytes])
    env = sign_statement("admin", key_of(hub, "admin"), spb.StatementBody(membership=spb.MembershipChange(admit=admit)))
    from coalition_hub.wire import statement_id

    last = log[-1]
    bad = hpb.SyncEntry(seq=last.seq + 1, received_at_ms=last.received_at_ms, statement_id=statement_id(env.payload_type, env.payload), envelope=env)
    err = refused(hub, Lies(copy(log) + [bad]), E.Refused)
    assert "already exists" in str(err)


def test_erasure_claim_left_open(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    i = first_hash_set(entries)
    entries[i].envelope.body = b""
    entries[i].erased_by = len(log) + 3  # an entry the hub never sends
    err = refused(hub, Lies(entries), E.FalseErasure)
    assert f"sent only {len(log)} entries" in str(err)


def test_a_filtered_sync_refuses_a_selected_body_withheld(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    entries = copy(log)
    i = first_hash_set(entries)  # acme's sets hold sha256 and md5 hashes
    entries[i].envelope.body = b""
    refused(hub, Lies(entries), E.WithheldSelected, SyncState(filter=SyncFilter(hash_types=("md5",))))
    # The same body withheld from a sync that does not select it: verified, yielded bodiless.
    got = sync_through(hub, Lies(copy(entries)), SyncState(filter=SyncFilter(hash_types=("pdq",))))
    assert not got[i].has_body and [e.seq for e in got] == [e.seq for e in log]


def test_a_checkpoint_equal_to_the_anchor_still_proves_the_entries_replayed_since(hub: Hub, log: list[hpb.SyncEntry]) -> None:
    # Rule 20: the anchor (of the whole log) came with the first entries; a later batch offered
    # the same checkpoint again must still be proven in it (a consistency proof from the
    # entries replayed), or the batch would be yielded before its root is ever checked.
    state = SyncState()
    sync_through(hub, Lies(copy(log[:3]), leaves=real_leaves(log)), state)
    k = next(i for i in range(3, len(log) - 1) if log[i].received_at_ms < log[i + 1].received_at_ms)
    bent = copy(log)
    bent[k].received_at_ms = log[k + 1].received_at_ms  # still in order: only the root tells
    yielded = []
    with pytest.raises(E.Inconsistent):
        for c in serve(hub, Lies(bent, leaves=real_leaves(log))):
            for v in c.sync(SyncState.from_json(state.to_json()), batch_entries=1):
                yielded.append(v)
    assert all(v.seq < k for v in yielded), "no entry from the bent one on is yielded"
