"""HubClient: mutual-TLS gRPC to a Coalition Hub, signed submissions, and a sync that verifies
every entry, signature, entitlement and Merkle proof itself (PROTOCOL.md §3.6, §4)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from coalition_hub import errors as E
from coalition_hub.keys import SigningKey, member_id_of_certificate
from coalition_hub.model import (
    EntryState,
    HashInput,
    HashType,
    IndicatorInput,
    Kind,
    RiskSignalFields,
    Verdict,
    VerifiedEntry,
    VerifiedIndicator,
)
from coalition_hub.pb import audit as apb
from coalition_hub.pb import audit_grpc, hub_grpc
from coalition_hub.pb import hub as hpb
from coalition_hub.pb import statement as spb
from coalition_hub.replica import GOVERNANCE, LIFECYCLE, Replayed, Replica, qualified
from coalition_hub.state import SyncState
from coalition_hub.statements import (
    hash_set_body,
    indicator_type_name,
    message_dict,
    risk_signal_body,
    sign_statement,
    wire_enum,
)
from coalition_hub.witness import check_cosignatures
from coalition_hub.wire import canonical
from coalition_hub.wire import statement_id as _statement_id

T = TypeVar("T")

#: A batch is proven and yielded at this many entries or bytes (as `coalition sync`).
BATCH_ENTRIES = 4096
BATCH_BYTES = 64 * 1024 * 1024
#: How often a checkpoint that does not yet cover a batch is asked for again, and how long apart.
CHECKPOINT_TRIES = 10
CHECKPOINT_WAIT_S = 0.2
MAX_MESSAGE_BYTES = 80 * 1024 * 1024
#: A batch whose checkpoint is signed by a hub key a later rotation names (rule 18a) is held and
#: proven with the next; at most this many batches are held at once (memory bound).
MAX_DEFERRED_BATCHES = 8
#: How long a strict (require_witnessed) sync waits for the hub to collect cosignatures.
WITNESS_WAIT_S = 5.0
_CATEGORIES = {1: "sextortion", 2: "grooming", 3: "csam_distribution", 4: "trafficking", 5: "other"}
_SEVERITIES = {1: "low", 2: "medium", 3: "high", 4: "critical"}


@dataclass(frozen=True)
class Receipt:
    """The hub's acknowledgement of a submission: the statement is durable."""

    statement_id: str
    seq: int
    received_at_ms: int
    already_present: bool


@dataclass(frozen=True)
class WhoAmI:
    """The hub's record of the caller."""

    member_id: str
    display_name: str
    roles: tuple[str, ...]
    status: str


@dataclass(frozen=True)
class MatchHit:
    """One shared hash that matched a query (the hub's answer; verify with a sync)."""

    query_index: int
    statement_id: str
    issuer: str
    type: str
    value_hex: str
    distance: int
    labels: tuple[str, ...]
    seq: int
    received_at_ms: int
    hash_index: int
    state: EntryState
    quality: int | None


@dataclass(frozen=True)
class MatchQuery:
    """A hash to look up: type name or HashType, raw bytes or hex, optional PDQ quality."""

    type: HashType | str
    value: bytes | str
    quality: int | None = None


class HubClient:
    """A member's connection to a hub over mutual TLS.

    `address` is `host:port`; the hub's certificate is checked against `ca_pem_path` under the
    name `server_name` ("localhost", as the development PKI issues it). The member id is taken
    from the client certificate (SAN `urn:coalition:member:<id>`), never from the hub."""

    def __init__(
        self,
        address: str,
        ca_pem_path: str | os.PathLike[str],
        cert_pem_path: str | os.PathLike[str],
        key_pem_path: str | os.PathLike[str],
        *,
        server_name: str = "localhost",
        timeout_s: float = 60.0,
    ) -> None:
        try:
            with open(ca_pem_path, "rb") as f:
                ca = f.read()
            with open(cert_pem_path, "rb") as f:
                cert = f.read()
            with open(key_pem_path, "rb") as f:
                key = f.read()
        except OSError as e:
            raise E.KeyFileError(f"{e.filename}: {e.strerror}") from e
        self.member_id: str = member_id_of_certificate(cert)
        creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        self._channel = grpc.secure_channel(
            address,
            creds,
            options=[
                ("grpc.ssl_target_name_override", server_name),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._hub: Any = hub_grpc.HubStub(self._channel)  # type: ignore[no-untyped-call]
        self._audit: Any = audit_grpc.AuditStub(self._channel)  # type: ignore[no-untyped-call]
        self.timeout_s = timeout_s
        self._require_witnessed = False
        self._witness_report: dict[str, Any] | None = None

    @classmethod
    def from_certs_dir(cls, address: str, certs: str | os.PathLike[str], member: str, **kw: Any) -> HubClient:
        """As the CLI's `--certs DIR --as MEMBER`: DIR/ca.pem, DIR/members/MEMBER.pem and .key."""
        d = os.fspath(certs)
        return cls(
            address,
            os.path.join(d, "ca.pem"),
            os.path.join(d, "members", f"{member}.pem"),
            os.path.join(d, "members", f"{member}.key"),
            **kw,
        )

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, rpc: str, fn: Any, request: Any) -> Any:
        try:
            return fn(request, timeout=self.timeout_s)
        except grpc.RpcError as e:
            raise E.HubCallError(rpc, e.code().name, e.details() or "") from e

    # --- plain calls -----------------------------------------------------------------------

    def whoami(self) -> WhoAmI:
        """Who the hub thinks the caller is."""
        m = self._call("WhoAmI", self._hub.WhoAmI, hpb.WhoAmIRequest())
        return WhoAmI(
            m.member_id,
            m.display_name,
            tuple(spb.Role.Name(r).removeprefix("ROLE_").lower() for r in m.roles),
            hpb.MemberStatus.Name(m.status).removeprefix("MEMBER_STATUS_").lower(),
        )

    def submit(self, envelope: spb.Envelope) -> Receipt:
        """Submits a signed envelope (idempotent)."""
        r = self._call("Submit", self._hub.Submit, hpb.SubmitRequest(envelope=envelope))
        return Receipt(r.receipt.statement_id.hex(), r.receipt.seq, r.receipt.received_at_ms, r.already_present)

    def submit_hashes(
        self,
        signing_key: SigningKey,
        entries: Iterable[HashInput],
        description: str = "",
        *,
        expires_at_ms: int | None = None,
        recipients: Sequence[str] = (),
    ) -> Receipt:
        """Signs and submits one hash set (1..=100,000 entries) as this member."""
        body = hash_set_body(entries, description, expires_at_ms)
        return self.submit(sign_statement(self.member_id, signing_key, body, recipients))

    def submit_risk_signal(
        self,
        signing_key: SigningKey,
        category: str,
        severity: str,
        title: str,
        indicators: Iterable[IndicatorInput],
        first_seen_ms: int,
        last_seen_ms: int,
        *,
        description: str = "",
        expires_at_ms: int | None = None,
        recipients: Sequence[str] = (),
    ) -> Receipt:
        """Signs and submits one risk signal (§2.3) as this member."""
        body = risk_signal_body(category, severity, title, indicators, first_seen_ms, last_seen_ms, description, expires_at_ms)
        return self.submit(sign_statement(self.member_id, signing_key, body, recipients))

    def retract(self, signing_key: SigningKey, statement_id: str, reason: str, entries: Sequence[int] = ()) -> Receipt:
        """Retracts this member's own statement, or some of its entries (§2.6)."""
        body = spb.StatementBody(
            retraction=spb.Retraction(statement_id=bytes.fromhex(statement_id), entries=sorted(set(entries)), reason=reason)
        )
        return self.submit(sign_statement(self.member_id, signing_key, body))

    def get_statement(self, statement_id: str) -> tuple[spb.Statement, spb.StatementBody | None]:
        """One statement, its id and body digest checked against the bytes received."""
        e = self._call("GetStatement", self._hub.GetStatement, hpb.GetStatementRequest(statement_id=bytes.fromhex(statement_id)))
        env = e.envelope
        where = f"statement {statement_id}"
        if _statement_id(env.payload_type, env.payload) != e.statement_id or e.statement_id.hex() != statement_id:
            raise E.Altered(where, "the statement served is not the one asked for")
        header = canonical(spb.Statement, env.payload, "payload")
        body = None
        if env.body:
            if hashlib.sha256(env.body).digest() != header.body_sha256:
                raise E.InvalidEntry(where, "the body served is not the one its header names")
            body = canonical(spb.StatementBody, env.body, "body")
        return header, body

    def submit_opinion(
        self,
        signing_key: SigningKey,
        statement_id: str,
        entry_index: int,
        opinion: Verdict | str,
        note: str = "",
        *,
        recipients: Sequence[str] | None = None,
        seen: bool = False,
        expect_hash: tuple[HashType | str, bytes] | None = None,
    ) -> Receipt:
        """A member's opinion on one entry of another member's statement (§2.7). The target is
        fetched (its id and body digest checked) and its hash copied into the opinion, unless
        the target statement is restricted (an opinion copies no restricted content).

        `expect_hash` (type, value): the hash the caller means to give its opinion on, when it
        learnt the target from the hub (a Match hit): the verified target entry must hold
        exactly it (`Altered` otherwise, nothing signed), so a hub cannot point the signature at
        another entry.

        Who reads it (§2.7 "Seen"): a `SEEN`, and a `WITHDRAWN` with `seen=True` (withdrawing
        this member's seen rather than its verdict), is restricted to the target's issuer and
        the members in `recipients` (the issuer is always added; `recipients=[]` makes a `SEEN`
        public). Every other opinion is read by every member and takes no `recipients`
        (ValueError)."""
        verdict = Verdict[opinion.upper()] if isinstance(opinion, str) else Verdict(opinion)
        if seen and verdict != Verdict.WITHDRAWN:
            raise ValueError(f"seen=True goes with a withdrawal (of one's seen), not with {verdict.name.lower()}")
        header, body = self.get_statement(statement_id)
        restricted = verdict == Verdict.SEEN or seen
        if not restricted:
            if recipients:
                raise ValueError(f"a {verdict.name.lower()} opinion is read by every member: it takes no recipients")
            readers: list[str] = []
        elif verdict == Verdict.SEEN and recipients is not None and not recipients:
            readers = []  # a public seen, on request only
        else:
            # The entry's issuer always reads it (the hub refuses one that does not name it);
            # the issuer of the opinion never names itself.
            named = {header.issuer, *(recipients or ())}
            named.discard(self.member_id)
            readers = sorted(named, key=str.encode)
        o = spb.Opinion(statement_id=bytes.fromhex(statement_id), entry=entry_index, verdict=wire_enum(verdict), note=note)
        if body is not None and not header.recipients:
            target = None
            if body.WhichOneof("body") == "hash_set" and entry_index < len(body.hash_set.entries):
                target = body.hash_set.entries[entry_index]
            elif body.WhichOneof("body") == "risk_signal" and entry_index < len(body.risk_signal.indicators):
                ind = body.risk_signal.indicators[entry_index]
                target = ind.hash if ind.type == 5 else None
            if target is not None:
                o.hash_type = target.type
                o.hash_value = target.value
        if expect_hash is not None:
            kind, value = expect_hash
            if (o.hash_type, o.hash_value) != (wire_enum(HashType.parse(kind)), bytes(value)):
                raise E.Altered(
                    f"statement {statement_id} entry {entry_index}",
                    f"the entry does not hold the {HashType.parse(kind).wire_name} hash {bytes(value).hex()} the hub named it for",
                )
        return self.submit(sign_statement(self.member_id, signing_key, spb.StatementBody(opinion=o), readers))

    def match(
        self,
        queries: Sequence[MatchQuery | HashInput],
        *,
        pdq_threshold: int | None = None,
        states: Sequence[EntryState] = (),
    ) -> list[MatchHit]:
        """Matches hashes against the hub's corpus; one hit per match, in query order."""
        req = hpb.MatchRequest(states=[wire_enum(s) for s in states])
        for q in queries:
            value = bytes.fromhex(q.value) if isinstance(q.value, str) else bytes(q.value)
            mq = hpb.MatchQuery(type=wire_enum(HashType.parse(q.type)), value=value)
            if q.quality is not None:
                mq.quality = q.quality
            req.queries.append(mq)
        if pdq_threshold is not None:
            req.pdq_threshold = pdq_threshold
        resp = self._call("Match", self._hub.Match, req)
        hits = []
        for r in resp.results:
            for m in r.matches:
                hits.append(
                    MatchHit(
                        r.query_index,
                        m.statement_id.hex(),
                        m.issuer,
                        HashType(m.type).wire_name,
                        m.value.hex(),
                        m.distance,
                        tuple(m.labels),
                        m.seq,
                        m.received_at_ms,
                        m.hash_index,
                        EntryState(m.state) if m.state else EntryState.ACTIVE,
                        m.quality if m.HasField("quality") else None,
                    )
                )
        return hits

    # --- the verified sync -----------------------------------------------------------------

    def sync(
        self,
        state: SyncState | None = None,
        *,
        batch_entries: int = BATCH_ENTRIES,
        batch_bytes: int = BATCH_BYTES,
        require_witnessed: bool = False,
    ) -> Iterator[VerifiedEntry]:
        """Streams the hub's log from `state` (or from the genesis) and yields every hash set,
        risk signal, retraction, opinion, genesis, membership and settings entry once it is
        verified (§4 rules 1-17) and proven in a signed checkpoint consistent with the last
        one accepted (rules 18-20). Statements the hub relays from a trusted origin hub
        (§3.10) are verified back to the origin's genesis, membership and signed checkpoints
        (rules 22-26) and yielded with `origin` set and their issuer qualified
        (`acme@x.example`). `state` (pin a genesis with `SyncState(genesis=HEX)`, filter
        with `SyncState(filter=SyncFilter(...))`; entries outside the filter are yielded with
        their body withheld, `has_body` False) is updated after each batch has been yielded;
        save it with `to_json()` and pass it back to resume. When the settings hold a witness
        policy (§3.8), each proven checkpoint's cosignatures are checked against it and the
        outcome kept in `state.witness`; `require_witnessed` refuses a batch whose checkpoint
        does not meet the policy (`NotWitnessed`) or carries a forged cosignature
        (`ForgedCosignature`). Raises a :class:`coalition_hub.errors.VerificationError` subclass naming the
        rule a lying hub broke; nothing of a refused batch is yielded."""
        if state is None:
            state = SyncState()
        replica = state._restore(self.member_id)
        self._require_witnessed = require_witnessed
        received = replica.size
        caught_up = False
        deferred = 0
        try:
            f = replica.filter
            request = hpb.SyncRequest(
                from_seq=replica.size,
                kinds=[wire_enum(k) for k in f.kinds],
                hash_types=[wire_enum(t) for t in f.hash_types],
                labels=list(f.labels),
                issuers=list(f.issuers),
            )
            stream = self._hub.Sync(request, timeout=None)
            batch: list[Replayed] = []
            size = 0
            for resp in stream:
                item = resp.WhichOneof("item")
                if item == "entry":
                    e = resp.entry
                    batch.append(replica.replay(e))
                    received += 1
                    size += len(e.envelope.payload) + len(e.envelope.body)
                    if len(batch) >= batch_entries * (1 + deferred) or size >= batch_bytes * (1 + deferred):
                        if deferred + 1 < MAX_DEFERRED_BATCHES:
                            if self._prove_or_defer(replica):
                                deferred += 1  # proven with the next batch
                                continue
                            yield from self._emit(replica, batch, state, proven=True)
                        else:
                            yield from self._emit(replica, batch, state)
                        batch, size, deferred = [], 0, 0
                elif item == "progress":
                    if resp.progress.next_seq != received:
                        raise E.BadProgress(
                            f"entry {received}",
                            f"the hub says it sent every entry below {resp.progress.next_seq}, but it sent the entries below {received}",
                            received,
                        )
                    caught_up = resp.progress.next_seq >= resp.progress.log_size
            if caught_up:
                # Rule 13a: the hub says it sent every entry; no erasure claim may stay open,
                # and (rule 26) every relayed statement is proven in its origin's checkpoints.
                # (A stream that ended without saying so leaves them open, in the state.)
                replica.caught_up()
            yield from self._emit(replica, batch, state)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.OUT_OF_RANGE:
                # §3.6: a sync from beyond the server's log: it is behind, not by itself a fork.
                raise E.Behind(f"entry {replica.size}", f"the server is behind: {e.details()}", replica.size) from e
            raise E.HubCallError("Sync", e.code().name, e.details() or "") from e

    def _prove(self, replica: Replica) -> None:
        """Fetches a fresh checkpoint covering what was replayed and offers it (rule 20)."""

        def proof(old: int, new: int) -> list[bytes]:
            p = self._call("GetConsistencyProof", self._audit.GetConsistencyProof, apb.GetConsistencyProofRequest(old_size=old, new_size=new))
            return list(p.proof)

        last: E.VerificationError | None = None
        for attempt in range(CHECKPOINT_TRIES):
            cp = self._call("GetCheckpoint", self._audit.GetCheckpoint, apb.GetCheckpointRequest(refresh=True))
            try:
                accepted = replica.offer_checkpoint(cp.note, proof)
                self._witnessed(replica, accepted.size, cp)
                return
            except E.Behind as e:
                last = e
                if attempt + 1 < CHECKPOINT_TRIES:
                    time.sleep(CHECKPOINT_WAIT_S)
        assert last is not None
        raise last

    def _witnessed(self, replica: Replica, size: int, cp: Any) -> None:
        """Checks the accepted checkpoint's cosignatures against the replayed witness policy;
        in strict mode waits up to 5 s for the hub to collect them."""
        ms = replica.membership
        policy = ms.witness_policy if ms is not None else None
        self._witness_report = None
        if policy is None:
            return
        report = check_cosignatures(policy, cp.note, list(cp.cosignatures), size)
        deadline = time.monotonic() + WITNESS_WAIT_S
        while self._require_witnessed and not report.met and not report.forged and time.monotonic() < deadline:
            time.sleep(CHECKPOINT_WAIT_S)
            again = self._call("GetCheckpoint", self._audit.GetCheckpoint, apb.GetCheckpointRequest(tree_size=size))
            if again.note == cp.note:
                report = check_cosignatures(policy, cp.note, list(again.cosignatures), size)
        self._witness_report = {
            "size": size,
            "cosigners": sorted(report.cosigners),
            "forged": sorted(report.forged),
            "met": report.met,
            "newest": report.newest,
        }
        where = f"checkpoint of size {size}"
        if self._require_witnessed and report.forged:
            raise E.ForgedCosignature(where, f"the cosignature lines naming {', '.join(sorted(report.forged))} do not verify with their keys in the witness policy: forged", size)
        if self._require_witnessed and not report.met:
            cosigned = ", ".join(sorted(report.cosigners)) or "no witness"
            raise E.NotWitnessed(where, f"cosigned by {cosigned}; the coalition's witness policy is NOT met", size)

    def _prove_or_defer(self, replica: Replica) -> bool:
        """Proves what was replayed; True when the hub's checkpoint is signed by a key not known
        yet (a rotation among the entries still to come, rule 18a): prove with the next batch."""
        try:
            self._prove(replica)
        except E.UnknownHubKey:
            return True
        return False

    def _emit(self, replica: Replica, batch: list[Replayed], state: SyncState, *, proven: bool = False) -> Iterator[VerifiedEntry]:
        """Proves the batch (unless `proven`), yields its entries, then saves the state."""
        if replica.membership is None:
            if batch:
                raise E.NotEntitled("entry 0", "the log has no genesis")
            return
        if not proven:
            self._prove(replica)
        for r in batch:
            if r.header is not None:
                yield to_verified(replica, r)
        state._save(replica)
        if self._witness_report is not None:
            state._set_witness(self._witness_report)


def to_verified(replica: Replica, r: Replayed) -> VerifiedEntry:
    """The public view of a replayed entry."""
    h = r.header
    assert h is not None
    e = r.entry
    kind = Kind(h.kind)
    v = VerifiedEntry(
        seq=e.seq,
        statement_id=e.statement_id.hex(),
        issuer=qualified(h.issuer, r.origin.hub_name) if r.origin is not None else h.issuer,
        key_id=h.key_id,
        received_at_ms=e.received_at_ms,
        issued_at_ms=h.issued_at_ms,
        kind=kind,
        recipients=tuple(h.recipients),
        has_body=r.body is not None,
        hashes=r.hashes,
        origin=r.origin,
    )
    if kind in (Kind.HASH_SET, Kind.RISK_SIGNAL):
        v.base_state, v.entry_states = replica.states_of(e.statement_id)
    body = r.body
    if body is None:
        return v
    if kind == Kind.HASH_SET:
        v.description = body.hash_set.description
        v.expires_at_ms = body.hash_set.expires_at_ms if body.hash_set.HasField("expires_at_ms") else None
    elif kind == Kind.RISK_SIGNAL:
        rs = body.risk_signal
        hashes = {h.entry_index: h for h in v.hashes}
        v.expires_at_ms = rs.expires_at_ms if rs.HasField("expires_at_ms") else None
        v.risk_signal = RiskSignalFields(
            _CATEGORIES.get(rs.category, str(rs.category)),
            _SEVERITIES.get(rs.severity, str(rs.severity)),
            rs.title,
            rs.description,
            rs.first_seen_ms,
            rs.last_seen_ms,
            v.expires_at_ms,
            tuple(
                VerifiedIndicator(i, indicator_type_name(ind.type), ind.value, ind.platform, hashes.get(i))
                for i, ind in enumerate(rs.indicators)
            ),
        )
    elif kind in GOVERNANCE or kind in LIFECYCLE:
        which = body.WhichOneof("body")
        v.details = {which: message_dict(getattr(body, which))}
        if kind in LIFECYCLE:
            target = body.retraction.statement_id if kind == Kind.RETRACTION else body.opinion.statement_id
            v.target_statement_id = target.hex()
            if target in replica.targets:
                v.target_base_state, v.target_entry_states = replica.states_of(target)
    return v
