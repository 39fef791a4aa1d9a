"""SyncState: the resumable state of a verified sync, persisted as JSON (no pickle).

It holds what the replica needs to continue where it stopped (PROTOCOL.md §3.6): the pinned
genesis, the number of entries replayed, the Merkle frontier, the last receipt time, the last
accepted checkpoint, every governance and lifecycle entry (replayed again on load, signatures
included, and the checkpoint's signature checked again), the statement ids logged (rule 9), the
lifecycle targets and open erasure claims; and the same for each origin relayed from (§3.10),
with how many of its entries its checkpoints prove and where its retractions and opinions are
logged here."""

from __future__ import annotations

import base64
import json
from typing import Any

from coalition_hub import errors as E
from coalition_hub.merkle import Frontier, ProofError
from coalition_hub.model import EntryState, SyncFilter
from coalition_hub.pb import hub as hpb
from coalition_hub.replica import Origin, Replica, Target

FORMAT = 1


class SyncState:
    """A persistable sync position. Create it empty (`SyncState()`), optionally pinning the
    genesis id (hex); `HubClient.sync` updates it after every proven batch it has yielded."""

    def __init__(self, genesis: str | None = None, filter: SyncFilter | None = None) -> None:
        self._data: dict[str, Any] = {
            "format": FORMAT,
            "genesis": genesis,
            "filter": (filter or SyncFilter()).to_dict(),
        }
        #: The replica restored by :meth:`states_of`, kept until the state changes.
        self._replica: Replica | None = None

    @property
    def filter(self) -> SyncFilter:
        """The filter this sync was started with (a resumed sync keeps it)."""
        try:
            return SyncFilter.from_dict(self._data.get("filter") or {})
        except (KeyError, ValueError, AttributeError, TypeError) as e:
            raise E.StateError("the saved state", f"its filter does not parse: {e}") from e

    @property
    def genesis(self) -> str | None:
        """The pinned genesis statement id (hex), once known."""
        g = self._data.get("genesis")
        return g if isinstance(g, str) else None

    @property
    def size(self) -> int:
        """Entries verified and proven so far (the next seq)."""
        return int(self._data.get("size", 0))

    @property
    def checkpoint(self) -> str | None:
        """The last accepted signed checkpoint note."""
        c = self._data.get("checkpoint")
        return c if isinstance(c, str) else None

    @property
    def witness(self) -> dict[str, Any] | None:
        """What the last proven checkpoint's cosignatures showed under the coalition's witness
        policy (§3.8): {"size", "cosigners", "forged", "met", "newest"}; None without a policy."""
        w = self._data.get("witness")
        return w if isinstance(w, dict) else None

    def states_of(self, statement_id: str, now_ms: int | None = None) -> tuple[EntryState, dict[int, EntryState]]:
        """The lifecycle state (PROTOCOL.md §4.3) of the entries of a hash set or risk signal
        this state has verified, as of its position (`size`): `(base, named)`, where `base` is
        the state of every entry no retraction or opinion names and `named` maps each entry some
        lifecycle statement names, and whose state differs from `base`, to its state: the
        state of entry `i` is `named.get(i, base)`, as :meth:`VerifiedEntry.state` decides it.

        Use it for a statement yielded by an earlier sync, after later retractions, opinions,
        quarantines, releases or a key compromise (a resumed sync yields only what is new).
        The states are decided by the replica restored from this state, whose governance and
        lifecycle entries are replayed and whose checkpoint signature is checked again (kept
        until the next sync saves the state); `now_ms` (default: now) decides expiry.

        Raises KeyError if `statement_id` (hex) is not a hash set or risk signal this state has
        verified (never synced, another kind, or beyond `size`), ValueError if it is not 64
        hex characters, :class:`coalition_hub.errors.StateError` if the state is damaged."""
        sid = bytes.fromhex(statement_id)
        if len(sid) != 32:
            raise ValueError(f"a statement id is 64 hex characters, got {len(statement_id)}")
        replica = self._replica
        if replica is None:
            reader = self._data.get("reader")
            if "size" not in self._data:
                raise KeyError(f"statement {statement_id}: this sync state has verified no entry yet")
            if not isinstance(reader, str):
                raise E.StateError("the saved state", "it names no reader")
            replica = self._replica = self._restore(reader)
        if sid not in replica.targets:
            raise KeyError(f"statement {statement_id} is not a hash set or risk signal among the {self.size} entries this state has verified")
        return replica.states_of(sid, now_ms)

    def _set_witness(self, report: dict[str, Any] | None) -> None:
        self._data["witness"] = report

    def to_json(self) -> str:
        """The state as a JSON document."""
        return json.dumps(self._data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SyncState:
        """A state saved by :meth:`to_json`. Its contents are checked when a sync restores it."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise E.StateError("the saved state", f"not JSON: {e}") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise E.StateError("the saved state", f"not a sync state of format {FORMAT}: sync from the start")
        s = cls()
        s._data = data
        return s

    # --- to and from a replica (package-internal) ------------------------------------------

    def _save(self, r: Replica) -> None:
        self._replica = None  # the next states_of restores the new position
        self._data = {
            "format": FORMAT,
            "reader": r.reader,
            "filter": r.filter.to_dict(),
            "genesis": r.genesis_id.hex() if r.genesis_id else self.genesis,
            **_replica_data(r),
            "witness": self._data.get("witness"),
        }

    def _restore(self, reader: str) -> Replica:
        d = self._data
        pinned = bytes.fromhex(self.genesis) if self.genesis else None
        r = Replica(reader=reader, pinned_genesis=pinned, filter=self.filter)
        if "size" not in d:
            return r
        where = "the saved state"
        try:
            if d.get("reader") != reader:
                raise E.StateError(where, f"it was saved by member '{d.get('reader')}', not '{reader}'")
            _load_replica(r, d, where)
            for genesis, od in d.get("origins", {}).items():
                origin = Replica(reader=reader, pinned_genesis=bytes.fromhex(genesis), filter=r.filter, as_relay=True)
                _load_replica(origin, od, f"{where}, origin {od['hub_name']}")
                r.origins[bytes.fromhex(genesis)] = Origin(
                    od["hub_name"], origin, int(od["proven"]), [(int(o), int(h)) for o, h in od["lifecycle_at"]]
                )
            r.relayed_lifecycle_restored()
        except (KeyError, TypeError, ValueError, ProofError) as e:
            raise E.StateError(where, f"damaged: {e}") from e
        return r


def _replica_data(r: Replica) -> dict[str, Any]:
    """What a replica needs to continue (an origin's replica keeps no statement ids)."""
    ids = sorted(r.ids.items(), key=lambda kv: kv[1])
    data: dict[str, Any] = {
        "size": r.size,
        "frontier": [h.hex() for h in r.frontier.hashes],
        "last_received_ms": r.last_received_ms,
        "checkpoint": r.anchor.note if r.anchor else None,
        "governance": [base64.b64encode(g).decode() for g in r.governance],
        "ids": base64.b64encode(b"".join(sid for sid, _ in ids)).decode(),
        "targets": {
            sid.hex(): [t.seq, t.issuer, t.kind, t.key_id, t.received_at_ms, t.expires_at_ms] for sid, t in r.targets.items()
        },
        "erasure_claims": {str(m): [[seq, sid.hex()] for seq, sid in c] for m, c in r.erasure_claims.items()},
    }
    if r.origins:
        data["origins"] = {
            genesis.hex(): {"hub_name": o.hub_name, "proven": o.proven, "lifecycle_at": o.lifecycle_at, **_replica_data(o.replica)}
            for genesis, o in r.origins.items()
        }
    return data


def _load_replica(r: Replica, d: dict[str, Any], where: str) -> None:
    """Restores `r` from :func:`_replica_data`: the governance entries replayed again,
    signatures included, and the checkpoint's signature checked again."""
    size = d["size"]
    if not r.as_relay:
        ids = base64.b64decode(d["ids"])
        if len(ids) != 32 * size:
            raise E.StateError(where, "its statement ids do not match its size")
        r.ids = {ids[i * 32 : i * 32 + 32]: i for i in range(size)}
    for sid, t in d["targets"].items():
        r.targets[bytes.fromhex(sid)] = Target(*t)
    for g in d["governance"]:
        entry = hpb.SyncEntry()
        entry.ParseFromString(base64.b64decode(g))
        r.replay(entry, resumed=True)
    r.frontier = Frontier(size, [bytes.fromhex(h) for h in d["frontier"]])
    r.last_received_ms = d["last_received_ms"]
    for m, claims in d.get("erasure_claims", {}).items():
        r.erasure_claims[int(m)] = [(seq, bytes.fromhex(sid)) for seq, sid in claims]
    if d.get("checkpoint"):
        r.anchor = r.verify_note(d["checkpoint"])
        if r.anchor.size == r.size and r.anchor.root != r.frontier.root():
            raise E.StateError(where, "its checkpoint's root is not its frontier's root")
