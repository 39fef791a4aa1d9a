"""`CoalitionHubSignalExchangeAPI`: threatexchange's SignalExchangeAPI over the Python client
`coalition_hub`, which verifies everything the hub sends (signatures, membership replay,
checkpoint proofs). This module never talks to the hub by itself.

Fetch: the client's verified sync, resumed from the checkpoint's `SyncState`; one record per
hash-set entry, keyed `"<statement id>:<entry>"`; an entry whose state leaves it out of the
hub's Match (retracted, quarantined, expired, compromised, erased) is a deletion (None).
Report: `report_opinion` finds the entries holding the signal with the hub's Match and signs
one opinion statement per entry with the member's signing key.
"""

import dataclasses
import logging
import time
import typing as t

from coalition_hub import CoalitionError, EntryState, HubClient, Kind, MatchQuery, SigningKey, SyncState, VerifiedEntry
from threatexchange.exchanges import auth
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPI
from threatexchange.signal_type.signal_base import SignalType

from coalition_hub_threatexchange import mapping
from coalition_hub_threatexchange.config import (
    API_NAME,
    CoalitionHubCheckpoint,
    CoalitionHubCollabConfig,
    CoalitionHubEntry,
    record_key,
)

log = logging.getLogger(__name__)

#: A fetch delta is yielded (and so checkpointed by threatexchange) at least every this many
#: verified log entries. The client proves its own batches (4,096 entries) before yielding.
DELTA_ENTRIES = 4096

Delta = state.FetchDelta[str, CoalitionHubEntry, CoalitionHubCheckpoint]


class ReportError(Exception):
    """`report_opinion` could not say what it was asked to (the message says why)."""


class CoalitionHubSignalExchangeAPI(
    SignalExchangeAPI[
        CoalitionHubCollabConfig,
        CoalitionHubCheckpoint,
        CoalitionHubEntry,
        str,
        CoalitionHubEntry,
    ]
):
    """A Coalition Hub as a threatexchange signal exchange, for one member."""

    def __init__(
        self,
        collab: CoalitionHubCollabConfig,
        client: HubClient,
        signing_key: t.Optional[SigningKey] = None,
    ) -> None:
        self.collab = collab
        self.client = client
        self._signing_key = signing_key

    @classmethod
    def for_collab(cls, collab: CoalitionHubCollabConfig) -> "CoalitionHubSignalExchangeAPI":
        """Connects as the collab's member with its certificate and key (mutual TLS). The
        signing key is loaded when an opinion is first reported.

        A key file that is missing or unreadable, or a certificate of another member, raises
        threatexchange's SignalExchangeAPIInvalidAuthException (the CLI prints it on one line
        and exits 2)."""
        try:
            client = HubClient(
                collab.hub,
                collab.path("ca_pem"),
                collab.path("cert_pem"),
                collab.path("key_pem"),
            )
        except (CoalitionError, ValueError) as e:
            raise auth.SignalExchangeAPIInvalidAuthException(cls, f"collab {collab.name!r}: {e}") from e
        if client.member_id != collab.member:
            client.close()
            raise auth.SignalExchangeAPIInvalidAuthException(
                cls,
                f"collab {collab.name!r}: the certificate {collab.path('cert_pem')} is "
                f"member '{client.member_id}', the config says '{collab.member}'",
            )
        return cls(collab, client)

    @classmethod
    def get_name(cls) -> str:
        """`coalition_hub`."""
        return API_NAME

    @staticmethod
    def get_config_cls() -> t.Type[CoalitionHubCollabConfig]:
        """The collaboration config: hub address, member, key paths."""
        return CoalitionHubCollabConfig

    @staticmethod
    def get_checkpoint_cls() -> t.Type[CoalitionHubCheckpoint]:
        """The checkpoint: the client's SyncState."""
        return CoalitionHubCheckpoint

    @staticmethod
    def get_record_cls() -> t.Type[CoalitionHubEntry]:
        """One record per hash-set entry."""
        return CoalitionHubEntry

    # --- fetch -----------------------------------------------------------------------------

    def fetch_iter(
        self,
        supported_signal_types: t.Sequence[t.Type[SignalType]],
        checkpoint: t.Optional[CoalitionHubCheckpoint],
    ) -> t.Iterator[Delta]:
        """The verified sync from the checkpoint's state, as deltas of entry records. Ends when
        the client has caught up with the hub's log."""
        fetch = _Fetch(self.client, list(supported_signal_types), checkpoint, self.collab.genesis)
        yield from fetch.run()

    @classmethod
    def naive_convert_to_signal_type(
        cls,
        signal_types: t.Sequence[t.Type[SignalType]],
        collab: CoalitionHubCollabConfig,
        fetched: t.Mapping[str, CoalitionHubEntry],
    ) -> t.Dict[t.Type[SignalType], t.Dict[str, CoalitionHubEntry]]:
        """Records by signal type and signal. Two entries with the same hash (shared by two
        members, say) become one record whose opinions are both entries' opinions."""
        ret: t.Dict[t.Type[SignalType], t.Dict[str, CoalitionHubEntry]] = {}
        for record in fetched.values():
            if record is None or mapping.is_deletion(record.state):
                continue
            s_type = mapping.signal_type_for(record.hash_type, signal_types)
            if s_type is None:
                continue
            by_signal = ret.setdefault(s_type, {})
            existing = by_signal.get(record.signal)
            by_signal[record.signal] = record if existing is None else _merged(existing, record)
        return ret

    # --- report ----------------------------------------------------------------------------

    def report_opinion(
        self,
        s_type: t.Type[SignalType],
        signal: str,
        opinion: state.SignalOpinion,
    ) -> None:
        """Signs an opinion on every other member's entry holding exactly this signal:
        POSITIVE_CLASS -> confirmed, NEGATIVE_CLASS -> false-positive, INVESTIGATION_SEED ->
        disputed (mapping.VERDICT_BY_CATEGORY). Tags become the opinion's note.

        Raises ReportError if the signal type has no hub hash type or no other member's active
        or disputed entry holds the signal; `coalition_hub.KeyFileError` if the signing key
        cannot be read; `coalition_hub.HubCallError` if the hub refuses the opinion.
        """
        verdict = mapping.VERDICT_BY_CATEGORY[state.SignalOpinionCategory(opinion.category)]
        hash_type, value = _hub_hash(s_type, signal)
        targets = self.entries_holding(s_type, signal)
        if not targets:
            raise ReportError(
                f"no other member's entry at the hub holds {s_type.get_name()} {signal}: nothing to report on"
            )
        note = ",".join(sorted(opinion.tags))[:280]
        key = self._key()
        for statement_id, entry in targets:
            # The hub's Match named the target: the signed opinion must be on this very hash.
            receipt = self.client.submit_opinion(
                key, statement_id, entry, verdict, note, expect_hash=(hash_type, bytes.fromhex(value))
            )
            log.info(
                "opinion %s on %s entry %d: seq %d", verdict, statement_id, entry, receipt.seq
            )

    def report_true_positive(self, s_type: t.Type[SignalType], signal: str) -> None:
        """`confirmed` on every other member's entry holding the signal."""
        self.report_opinion(
            s_type, signal, state.SignalOpinion(True, state.SignalOpinionCategory.POSITIVE_CLASS, set())
        )

    def report_false_positive(self, s_type: t.Type[SignalType], signal: str) -> None:
        """`false-positive` on every other member's entry holding the signal."""
        self.report_opinion(
            s_type, signal, state.SignalOpinion(True, state.SignalOpinionCategory.NEGATIVE_CLASS, set())
        )

    def entries_holding(self, s_type: t.Type[SignalType], signal: str) -> t.List[t.Tuple[str, int]]:
        """(statement id, entry) of every other member's matchable entry whose hash is exactly
        this signal, as the hub's Match answers (an opinion names its target; the hub checks
        the target and the hash the opinion copies from it)."""
        hash_type, value = _hub_hash(s_type, signal)
        states = (EntryState.ACTIVE, EntryState.DISPUTED)
        hits = self.client.match([MatchQuery(hash_type, value)], pdq_threshold=0, states=states)
        return sorted(
            {
                (h.statement_id, h.hash_index)
                for h in hits
                if h.value_hex == value and h.issuer != self.client.member_id
            }
        )

    def _key(self) -> SigningKey:
        if self._signing_key is None:
            self._signing_key = SigningKey.from_pem_file(self.collab.path("signing_key"))
        return self._signing_key


def _merged(a: CoalitionHubEntry, b: CoalitionHubEntry) -> CoalitionHubEntry:
    """One record for two entries with the same signal: both issuers' opinions."""
    both = dataclasses.replace(a, also=[*a.also, b])
    return both


class _Fetch:
    """One fetch: the client's sync turned into deltas, with the bookkeeping the checkpoint
    carries (entry counts for whole-set retractions, verdicts, expiry times)."""

    def __init__(
        self,
        client: HubClient,
        supported: t.List[t.Type[SignalType]],
        checkpoint: t.Optional[CoalitionHubCheckpoint],
        genesis: t.Optional[str] = None,
    ) -> None:
        self.client = client
        self.supported = supported
        self.cp = checkpoint or CoalitionHubCheckpoint()
        if self.cp.sync_state:
            self.sync_state = SyncState.from_json(self.cp.sync_state)
            if genesis and self.sync_state.genesis not in (None, genesis.lower()):
                raise ValueError(
                    f"the checkpoint follows genesis {self.sync_state.genesis}, the collab pins "
                    f"{genesis}: `threatexchange fetch --clear` to start over"
                )
        else:
            self.sync_state = SyncState(genesis=genesis.lower() if genesis else None)
        # Our own copies, so a delta abandoned half-way leaves the stored checkpoint as it was.
        self.skipped = dict(self.cp.skipped)
        self.sets = dict(self.cp.entry_counts)
        self.set_keys = dict(self.cp.signed_by)
        self.verdicts = {k: dict(v) for k, v in self.cp.verdicts.items()}
        self.expiring = dict(self.cp.expiring)
        self.progress_ts = self.cp.progress_ts
        self.updates: t.Dict[str, t.Optional[CoalitionHubEntry]] = {}
        self.touched: t.Set[str] = set()
        self._types: t.Dict[str, t.Optional[t.Type[SignalType]]] = {}
        self.reader = client.member_id

    def run(self) -> t.Iterator[Delta]:
        """Deltas at the client's batch boundaries (where its SyncState is saved), at least
        DELTA_ENTRIES entries apart, and one at the end (the checkpoint caught up)."""
        self._expire(int(time.time() * 1000))
        taken = 0
        saved_size = self.sync_state.size
        for entry in self.client.sync(self.sync_state):
            if self.sync_state.size != saved_size:
                # The client saved its state: every entry taken so far is covered by it.
                saved_size = self.sync_state.size
                if taken >= DELTA_ENTRIES:
                    yield self._delta()
                    taken = 0
            self._take(entry)
            taken += 1
        yield self._delta()

    def _delta(self) -> Delta:
        self._refresh_touched()
        cp = CoalitionHubCheckpoint(
            sync_state=self.sync_state.to_json(),
            log_size=self.sync_state.size,
            progress_ts=self.progress_ts,
            skipped=dict(self.skipped),
            entry_counts=dict(self.sets),
            signed_by=dict(self.set_keys),
            verdicts={k: dict(v) for k, v in self.verdicts.items()},
            expiring=dict(self.expiring),
        )
        updates, self.updates = self.updates, {}
        return state.FetchDelta(updates, cp)

    def _take(self, e: VerifiedEntry) -> None:
        self.progress_ts = max(self.progress_ts, e.received_at_ms // 1000)
        if e.kind in (Kind.HASH_SET, Kind.RISK_SIGNAL) and e.has_body:
            self._hash_set(e)
        elif e.kind == Kind.RETRACTION and e.details:
            r = e.details.get("retraction", {})
            self.touched.add(r.get("statement_id", ""))
        elif e.kind == Kind.MEMBERSHIP and e.details:
            revoked = e.details.get("membership", {}).get("revoke_key", {})
            if revoked.get("reason") == _COMPROMISED:
                # Every set that key signed may now be `compromised` (or a retraction it
                # signed voided): re-decide them all.
                key_id = revoked.get("key_id", "")
                self.touched.update(sid for sid, k in self.set_keys.items() if k == key_id)
        elif e.kind == Kind.OPINION and e.details:
            o = e.details.get("opinion", {})
            sid = o.get("statement_id", "")
            verdict = mapping.normalize_verdict(_verdict_name(o.get("verdict", 0)))
            if not o.get("admin_quorum") and sid in self.sets:
                key = record_key(sid, int(o.get("entry", 0)))
                mine = self.verdicts.setdefault(key, {})
                if verdict in mapping.CATEGORY_BY_VERDICT:
                    mine[e.issuer] = verdict
                elif verdict == "withdrawn" and not e.recipients:
                    mine.pop(e.issuer, None)
                if not mine:
                    self.verdicts.pop(key, None)
            self.touched.add(sid)

    def _hash_set(self, e: VerifiedEntry) -> None:
        hashes = e.hashes
        if not hashes:
            return
        self.sets[e.statement_id] = max(h.entry_index for h in hashes) + 1
        self.set_keys[e.statement_id] = e.key_id
        if e.expires_at_ms is not None:
            self.expiring[e.statement_id] = e.expires_at_ms
        for h in hashes:
            key = record_key(e.statement_id, h.entry_index)
            self.updates[key] = self._record(e.statement_id, e.issuer, h, e.state(h.entry_index))

    def _record(
        self, sid: str, issuer: str, h: t.Any, entry_state: EntryState, *, count: bool = True
    ) -> t.Optional[CoalitionHubEntry]:
        """The record of one hash, None if threatexchange has no type for it (counted when
        first fetched) or its state is a deletion."""
        try:
            s_type = self._types[h.type]
        except KeyError:  # first hash of this type in this fetch (get_name is not cheap)
            s_type = self._types[h.type] = mapping.signal_type_for(h.type, self.supported)
            if s_type is None:
                log.info("skipping %s entries: %s", h.type, mapping.skip_reason(h.type, self.supported))
        signal = None
        if s_type is not None:
            value = h.value_hex if h.type != "photodna" else mapping.signal_value(h.type, h.value_hex)
            try:
                signal = s_type.validate_signal_str(value)
            except Exception:  # threatexchange raises ValueError and others for a bad signal
                signal = None
        if signal is None:
            if count:
                self.skipped[h.type] = self.skipped.get(h.type, 0) + 1
            return None
        if entry_state not in _KEPT:
            return None
        verdicts = self.verdicts.get(record_key(sid, h.entry_index)) if self.verdicts else None
        return CoalitionHubEntry(
            statement_id=sid,
            entry=h.entry_index,
            issuer=issuer,
            hash_type=h.type,
            signal=signal,
            quality=h.quality,
            labels=list(h.labels),
            state=_STATE_NAMES[entry_state],
            verdicts=dict(verdicts) if verdicts else {},
            reader=self.reader,
        )

    def _refresh_touched(self) -> None:
        """Re-decides every entry of the statements a retraction or opinion of this delta
        named, by the client's `SyncState.states_of` at the position just saved (the client
        decides states; this module never re-implements the rules)."""
        targets = {sid for sid in self.touched if sid in self.sets}
        self.touched.clear()
        if not targets:
            return
        for sid in sorted(targets):
            base, named = self.sync_state.states_of(sid)
            header, body = self.client.get_statement(sid)  # content checked against its id
            if body is None:
                for i in range(self.sets[sid]):
                    self.updates[record_key(sid, i)] = None
                continue
            for h in _hashes_of(body):
                self.updates[record_key(sid, h.entry_index)] = self._record(
                    sid, header.issuer, h, named.get(h.entry_index, base), count=False
                )

    def _expire(self, now_ms: int) -> None:
        """Deletes the records of sets whose expiry time has passed since the last fetch."""
        for sid, at in list(self.expiring.items()):
            if at <= now_ms:
                for i in range(self.sets.get(sid, 0)):
                    self.updates[record_key(sid, i)] = None
                del self.expiring[sid]


#: The entry states that keep a record (mapping.KEPT_STATES), as the client's enum.
_KEPT = frozenset(s for s in EntryState if not mapping.is_deletion(s.name))
#: Each state's name in records (mapping.ALL_STATES).
_STATE_NAMES = {s: s.name.lower() for s in EntryState}

#: `RevocationReason.REVOCATION_REASON_COMPROMISED`.
_COMPROMISED = 2


class _Hash(t.NamedTuple):
    """A hash of a statement re-read with `HubClient.get_statement` (shaped like
    `coalition_hub.VerifiedHash`)."""

    entry_index: int
    type: str
    value_hex: str
    quality: t.Optional[int]
    labels: t.Tuple[str, ...]


def _hashes_of(body: t.Any) -> t.List[_Hash]:
    """The hashes of a hash set's or risk signal's body (protobuf `StatementBody`) that
    `HubClient.get_statement` returned: its bytes are checked against the statement id this
    fetch verified, so they are the verified statement's."""
    from coalition_hub import HashType

    def one(i: int, e: t.Any) -> _Hash:
        quality = e.quality if e.HasField("quality") else None
        return _Hash(i, HashType(e.type).wire_name, e.value.hex(), quality, tuple(e.labels))

    which = body.WhichOneof("body")
    if which == "hash_set":
        return [one(i, e) for i, e in enumerate(body.hash_set.entries)]
    if which == "risk_signal":
        return [one(i, ind.hash) for i, ind in enumerate(body.risk_signal.indicators) if ind.HasField("hash")]
    return []


def _verdict_name(v: t.Any) -> str:
    from coalition_hub import Verdict

    try:
        return Verdict(int(v)).name
    except (ValueError, TypeError):
        return str(v)


def _hub_hash(s_type: t.Type[SignalType], signal: str) -> t.Tuple[str, str]:
    """A threatexchange signal as the hub's hash type and lower-case hex value; ReportError
    if the signal type has no hub hash type."""
    hash_type = mapping.hash_type_for(s_type)
    if hash_type is None:
        raise ReportError(f"signal type {s_type.get_name()} has no Coalition Hub hash type")
    return hash_type, mapping.hub_value(hash_type, s_type.validate_signal_str(signal))
