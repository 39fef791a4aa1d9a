"""The member's replica: replays a hub's log from its genesis under the replica rules of
PROTOCOL.md §4, trusting nothing the hub says beyond entries, signed checkpoints and
consistency proofs. Each refusal raises the :mod:`coalition_hub.errors` class of its rule.

A relayed entry (§3.10, rules 22-26) is judged by an :class:`Origin`: the same
:class:`Replica` class, pinned to the origin's genesis and reading as a relay, rebuilds every
leaf of the origin's log from the relayed statements and the gap leaves between them, so each
relayed statement is replayed under the origin's membership at its origin position and proven
by the origin's signed checkpoints. Nothing of an origin's membership becomes this hub's."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from coalition_hub import errors as E
from coalition_hub.membership import (
    ACTIVE,
    ROLE_ADMIN,
    ROLE_MEMBER,
    ChangeRefused,
    Membership,
)
from coalition_hub.merkle import Frontier, ProofError, verify_consistency
from coalition_hub.model import EntryState, Kind, RelayOrigin, SyncFilter, Verdict, VerifiedHash
from coalition_hub.note import Checkpoint, NoteError, head, verify_checkpoint
from coalition_hub.pb import hub as hpb
from coalition_hub.pb import statement as spb
from coalition_hub.statements import FieldError, check_body, check_header
from coalition_hub.wire import (
    LEAF_LEN,
    RELAYED_LEAF_LEN,
    NotCanonical,
    canonical,
    leaf_data,
    leaf_hash,
    pae,
    payload_version,
    relayed_leaf_data,
    valid_key_id,
    verify_ed25519,
)

MAX_FUTURE_MS = 10 * 60 * 1000
#: Most gap leaves one relayed entry carries (§3.10).
MAX_GAP_LEAVES = 65_536
GOVERNANCE = (Kind.GENESIS, Kind.MEMBERSHIP, Kind.SETTINGS)
LIFECYCLE = (Kind.RETRACTION, Kind.OPINION)


@dataclass
class Target:
    """What the lifecycle rules need of a hash set or risk signal."""

    seq: int
    issuer: str
    kind: int
    key_id: str
    received_at_ms: int
    expires_at_ms: int | None


@dataclass
class Said:
    """One lifecycle statement (a retraction or an opinion) as the replica records it."""

    seq: int
    issuer: str
    signers: tuple[str, ...]
    received_at_ms: int
    admin_quorum: bool
    #: Retractions: entries named (empty: all); erase. Opinions: the verdict, restricted.
    entries: tuple[int, ...] = ()
    erase: bool = False
    verdict: int = 0
    restricted: bool = False


@dataclass
class Replayed:
    """An entry the replica accepted (not yet proven in a checkpoint)."""

    entry: hpb.SyncEntry
    header: spb.Statement | None
    body: spb.StatementBody | None
    version: int
    hashes: tuple[VerifiedHash, ...] = ()
    #: For a relayed statement (§3.10), where its origin logged it.
    origin: RelayOrigin | None = None


@dataclass
class Decoded:
    """An entry's envelope after rules 1-6 (which look at the entry alone)."""

    message: bytes
    version: int
    header: spb.Statement | None
    body: spb.StatementBody | None
    hashes: tuple[VerifiedHash, ...]


def qualified(member: str, hub_name: str) -> str:
    """A member of another hub as this hub shows it (§3.10): `member@hub_name`."""
    return f"{member}@{hub_name}"


def hub_of(member: str) -> str | None:
    """The hub a qualified member id names; None for a member of this hub (no `@`)."""
    return member.split("@", 1)[1] if "@" in member else None


def decode(entry: hpb.SyncEntry) -> Decoded:
    """Rules 1-6 for one entry, reported at the seq it claims."""
    seq = entry.seq
    at = f"entry {seq}"
    if not entry.HasField("envelope"):
        raise E.NoEnvelope(at, "the entry has no envelope", seq)
    env = entry.envelope
    version = payload_version(env.payload_type)
    if version is None:
        raise E.InvalidEntry(at, f"payload_type {env.payload_type[:80]!r} is not a coalition statement type", seq)
    message = pae(env.payload_type, env.payload)
    sigs = list(env.signatures)
    if version == 1 and hashlib.sha256(message).digest() != entry.statement_id:
        raise E.Altered(at, "the entry was altered: its statement id is not SHA-256 of the PAE of the bytes received", seq)
    if not 1 <= len(sigs) <= 16:
        raise E.InvalidEntry(at, f"signatures: 1..=16, got {len(sigs)}", seq)
    kids = [s.key_id for s in sigs]
    if len(set(kids)) != len(kids) or not all(valid_key_id(k) for k in kids) or any(len(s.sig) != 64 for s in sigs):
        raise E.InvalidEntry(at, "signatures: each key id 16 lowercase hex characters, signing once, each sig 64 bytes", seq)
    if version != 1 and hashlib.sha256(message).digest() != entry.statement_id:
        raise E.Altered(at, "the entry was altered: its statement id is not SHA-256 of the PAE of the bytes received", seq)
    header = body = None
    hashes: tuple[VerifiedHash, ...] = ()
    if version == 1:
        if len(env.payload) > 64 * 1024:
            raise E.InvalidEntry(at, "header: larger than 64 KiB", seq)
        try:
            header = canonical(spb.Statement, env.payload, "payload")
            check_header(header)
            raw_body = env.body
            if raw_body:
                if len(raw_body) > 16 * 1024 * 1024:
                    raise FieldError("body: larger than 16 MiB")
                if hashlib.sha256(raw_body).digest() != header.body_sha256 or len(raw_body) != header.body_bytes:
                    raise FieldError("body: its SHA-256 or length is not what the signed header names: the body was altered or swapped")
                body = canonical(spb.StatementBody, raw_body, "body")
                hashes = check_body(header, body, raw_body)
        except (NotCanonical, FieldError) as e:
            raise E.InvalidEntry(at, str(e), seq) from e
    return Decoded(message, version, header, body, hashes)


def check_relay(entry: hpb.SyncEntry) -> None:
    """Rule 22's parse: a 32-byte origin genesis, 32-byte proof hashes, a bounded gap."""
    relay = entry.relay
    seq = entry.seq
    at = f"entry {seq}"
    if len(relay.gap_leaves) > MAX_GAP_LEAVES:
        raise E.RelayEvidence(at, f"{len(relay.gap_leaves)} gap leaves, more than the {MAX_GAP_LEAVES} a relayed entry may carry", seq)
    if len(relay.origin_genesis) != 32:
        raise E.RelayEvidence(at, f"origin_genesis is {len(relay.origin_genesis)} bytes, not a 32-byte genesis id", seq)
    for i, p in enumerate(relay.checkpoint.proofs):
        if any(len(h) != 32 for h in p.hashes):
            raise E.RelayEvidence(at, f"checkpoint.proofs[{i}]: a hash is not 32 bytes", seq)


@dataclass
class Replica:
    """The replica state. `reader` is this member's id (from its certificate)."""

    reader: str
    pinned_genesis: bytes | None = None
    #: The sync's filter (rule 13); the default selects everything.
    filter: SyncFilter = field(default_factory=SyncFilter)
    genesis_id: bytes | None = None
    membership: Membership | None = None
    frontier: Frontier = field(default_factory=Frontier)
    last_received_ms: int = 0
    anchor: Checkpoint | None = None
    ids: dict[bytes, int] = field(default_factory=dict)
    #: Governance and lifecycle entries (serialized SyncEntry), replayed again on resume.
    governance: list[bytes] = field(default_factory=list)
    targets: dict[bytes, Target] = field(default_factory=dict)
    retractions: dict[bytes, list[Said]] = field(default_factory=dict)
    opinions: dict[tuple[bytes, int], list[Said]] = field(default_factory=dict)
    #: The entries opinions name, per target statement.
    opinion_entries: dict[bytes, set[int]] = field(default_factory=dict)
    #: Open erasure claims: erasure position M -> [(seq, statement id)].
    erasure_claims: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)
    erased: set[bytes] = field(default_factory=set)
    newer_version_entries: int = 0
    #: An origin's log rebuilt from relayed entries (§3.10): it reads as a relay (a
    #: restricted body may be withheld) and keeps no statement ids (rule 9 there is implied
    #: by the origin's checkpoints and the relaying log's own rule 9).
    as_relay: bool = False
    #: The origins relayed from so far, by genesis id, each rebuilding the origin's own log.
    origins: dict[bytes, Origin] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Entries replayed (the next seq expected)."""
        return self.frontier.size

    # --- entries ---------------------------------------------------------------------------

    def replay(self, entry: hpb.SyncEntry, *, resumed: bool = False) -> Replayed:
        """Checks one entry under rules 1-17 (a relayed one under rules 22-25) and applies
        it. `resumed`: a governance entry replayed from a saved state (positions and the
        frontier come from the state)."""
        if entry.HasField("relay"):
            if resumed:
                raise E.StateError(f"entry {entry.seq}", "a relayed entry is never this log's own governance")
            check_relay(entry)
            return self._replay_relayed(entry, decode(entry))
        return self._replay(entry, decode(entry), resumed)

    def _check_position(self, entry: hpb.SyncEntry) -> None:
        """Rules 7-9: position, receipt time, once (an origin's replica leaves rule 9 to the
        origin's checkpoints and the relaying log's own rule 9)."""
        seq = entry.seq
        expected = self.frontier.size
        if seq > expected:
            raise E.Gap(f"entry {expected}", f"missing: the next entry present is {seq}", expected)
        if seq < expected:
            raise E.OutOfOrder(f"entry {expected}", f"an entry for position {seq} arrived where {expected} was expected", expected)
        if entry.received_at_ms < self.last_received_ms:
            raise E.TimeWentBack(f"entry {seq}", f"received_at_ms {entry.received_at_ms} is before the previous entry's {self.last_received_ms}", seq)
        first = self.ids.get(entry.statement_id)
        if first is not None:
            raise E.Duplicate(f"entry {seq}", f"statement {entry.statement_id.hex()} was logged already at entry {first}", seq)

    def _replay(self, entry: hpb.SyncEntry, d: Decoded, resumed: bool) -> Replayed:
        """Rules 7-17 for a decoded entry."""
        seq = entry.seq
        at = f"entry {seq}"
        if not resumed:
            self._check_position(entry)
        if d.version != 1:
            self._newer_version(entry, d.version, d.message, at)
            return Replayed(entry, None, None, d.version)
        header, body = d.header, d.body
        assert header is not None
        kind = Kind(header.kind)
        if header.issued_at_ms > entry.received_at_ms + MAX_FUTURE_MS:
            raise E.FromTheFuture(at, f"issued_at_ms {header.issued_at_ms} is more than 10 minutes after its receipt {entry.received_at_ms}", seq)
        if kind == Kind.GENESIS and self.pinned_genesis is not None and entry.statement_id != self.pinned_genesis:
            raise E.WrongGenesis(at, f"the genesis is {entry.statement_id.hex()}, not the pinned {self.pinned_genesis.hex()}", seq)
        # Rule 13 / 13a: withheld bodies.
        erased_by = entry.erased_by if entry.HasField("erased_by") else None
        if erased_by is not None and erased_by <= seq:
            raise E.FalseErasure(at, f"the hub claims entry {seq} was erased by entry {erased_by}, which is not after it", seq)
        if body is None:
            restricted_opinion = kind == Kind.OPINION and bool(header.recipients)
            if kind in GOVERNANCE or kind == Kind.RETRACTION or (kind == Kind.OPINION and not restricted_opinion):
                raise E.WithheldMembership(at, f"a {kind.name.lower()} statement came without its body (they always come whole)", seq)
            if erased_by is None and self._selects(header) and self._may_read(header):
                raise E.WithheldSelected(at, "the body of a statement this member's filter selects and it may read was withheld: the hub is withholding a selected statement", seq)
        # Rule 14: entitlement; rules 15/17: signatures.
        sigs = list(entry.envelope.signatures)
        keys = self._entitled(entry, header, body, at)
        for i, (sig, public) in enumerate(zip(sigs, keys, strict=True)):
            if not verify_ed25519(public, sig.sig, d.message):
                raise E.BadSignature(at, f"signatures[{i}]: signature by key {sig.key_id} does not verify over the payload", seq)
        # Rule 16: apply.
        self._apply(entry, header, body, at)
        if erased_by is not None:
            self.erasure_claims.setdefault(erased_by, []).append((seq, entry.statement_id))
        if not resumed:
            self._append_leaf(leaf_data(entry.statement_id, entry.received_at_ms), entry.received_at_ms)
        if not self.as_relay:
            self.ids[entry.statement_id] = seq
        return Replayed(entry, header, body, 1, d.hashes)

    # --- relayed entries (§3.10, rules 22-26) ----------------------------------------------

    def _replay_relayed(self, entry: hpb.SyncEntry, d: Decoded) -> Replayed:
        """Rules 22-25: this log's position rules, a trusted origin, the origin's own log
        rebuilt by its replica (gap leaves, the statement at its origin position, the origin
        checkpoint), then the relayed leaf joins this log's frontier."""
        seq = entry.seq
        at = f"entry {seq}"
        relay = entry.relay
        self._check_position(entry)
        if entry.HasField("erased_by"):
            raise E.RelayEvidence(
                at,
                "a relayed statement carries an erasure claim in this log: an origin's erasure is claimed in `relay.erased_by`, at its origin position",
                seq,
            )
        genesis = bytes(relay.origin_genesis)
        ms = self.membership
        trusted = ms.trusted_origins.get(genesis) if ms is not None and genesis != self.genesis_id else None
        if trusted is None:
            raise E.UntrustedOrigin(
                at,
                f"relays a statement of the hub with genesis {genesis.hex()}, which the coalition's settings do not name as a trusted origin",
                seq,
            )
        origin = self.origins.get(genesis)
        if origin is None:
            replica = Replica(reader=self.reader, pinned_genesis=genesis, filter=self.filter, as_relay=True)
            origin = self.origins[genesis] = Origin(trusted.hub_name, replica)
        try:
            nested = origin.replay(entry, d, self.ids)
        except E.VerificationError as e:
            raise E.Relayed(at, origin.hub_name, e, seq) from e
        self._append_leaf(
            relayed_leaf_data(entry.statement_id, entry.received_at_ms, genesis, relay.origin_seq, relay.origin_received_at_ms),
            entry.received_at_ms,
        )
        self.ids[entry.statement_id] = seq
        self._follow_origin(origin, nested, seq)
        provenance = RelayOrigin(origin.hub_name, genesis.hex(), relay.origin_seq, relay.origin_received_at_ms)
        return Replayed(entry, nested.header, nested.body, nested.version, nested.hashes, provenance)

    def _gap_leaf(self, data: bytes, held: Mapping[bytes, int]) -> None:
        """Rule 24: a leaf of this (origin's) log at its next position: 88 bytes (something the
        origin relayed itself) or 40 naming a statement the relaying log `held` before; its
        receipt time not going back. Nothing is replayed: it only joins the frontier."""
        seq = self.size
        at = f"entry {seq}"
        if seq == 0:
            raise E.RelayEvidence(at, "an origin's log starts with its genesis, not with a gap leaf", seq)
        if len(data) not in (RELAYED_LEAF_LEN, LEAF_LEN):
            raise E.RelayEvidence(
                at,
                f"a gap leaf is {len(data)} bytes; gaps hold only leaves the origin relayed itself ({RELAYED_LEAF_LEN} bytes) or of statements this log holds ({LEAF_LEN} bytes)",
                seq,
            )
        if len(data) == LEAF_LEN and data[:32] not in held:
            raise E.RelayEvidence(
                at,
                f"a gap leaf stands for statement {data[:32].hex()} of the origin's own, which this log does not hold: the statement itself must be relayed",
                seq,
            )
        received_at_ms = int.from_bytes(data[32:40], "big", signed=True)
        if received_at_ms < self.last_received_ms:
            raise E.TimeWentBack(at, f"received_at_ms {received_at_ms} is before the previous entry's {self.last_received_ms}", seq)
        for claimed_seq, _ in self.erasure_claims.pop(seq, ()):
            # An erasure is the origin's own statement, never a gap leaf (rule 13a).
            raise E.FalseErasure(
                f"entry {claimed_seq}",
                f"the hub claims entry {claimed_seq} was erased by entry {seq}, but entry {seq} is a gap leaf: its content is not readable here",
                claimed_seq,
            )
        self._append_leaf(data, received_at_ms)

    def _follow_origin(self, origin: Origin, nested: Replayed, seq: int) -> None:
        """After a relayed statement: a hash set or risk signal becomes a target here, and a
        retraction or unrestricted opinion is recorded here too, at this log's position, with
        its issuer qualified and the origin's receipt time, so the origin's word decides the
        states of the origin's statements here (§3.10 "Lifecycle of relayed statements")."""
        h, body = nested.header, nested.body
        if h is None:
            return
        kind = Kind(h.kind)
        origin_seq = nested.entry.seq
        if kind in (Kind.HASH_SET, Kind.RISK_SIGNAL):
            t = origin.replica.targets[nested.entry.statement_id]
            self.targets[nested.entry.statement_id] = replace(t, seq=seq, issuer=qualified(t.issuer, origin.hub_name))
        elif body is None:
            return  # a restricted opinion this replica does not read
        elif kind == Kind.RETRACTION:
            r = body.retraction
            said = origin.replica.retractions[r.statement_id][-1]
            self._record_retraction(r.statement_id, replace(said, seq=seq, issuer=qualified(said.issuer, origin.hub_name)))
            origin.lifecycle_at.append((origin_seq, seq))
        elif kind == Kind.OPINION and not h.recipients:
            o = body.opinion
            said = origin.replica.opinions[(o.statement_id, o.entry)][-1]
            self._record_opinion(o.statement_id, o.entry, replace(said, seq=seq, issuer=qualified(said.issuer, origin.hub_name)))
            origin.lifecycle_at.append((origin_seq, seq))

    def relayed_lifecycle_restored(self) -> None:
        """After restoring the origins' replicas from a saved state: their retractions and
        opinions relayed so far are recorded here again (as :meth:`_follow_origin` did)."""
        for origin in self.origins.values():
            here = dict(origin.lifecycle_at)
            for target, saids in origin.replica.retractions.items():
                for said in saids:
                    if said.seq in here:
                        self._record_retraction(target, replace(said, seq=here[said.seq], issuer=qualified(said.issuer, origin.hub_name)))
            for (target, index), saids in origin.replica.opinions.items():
                for said in saids:
                    if said.seq in here and not said.restricted:
                        self._record_opinion(target, index, replace(said, seq=here[said.seq], issuer=qualified(said.issuer, origin.hub_name)))
        for rs in self.retractions.values():
            rs.sort(key=lambda r: r.seq)
        for os_ in self.opinions.values():
            os_.sort(key=lambda o: o.seq)

    def unproven_relay(self) -> E.VerificationError | None:
        """Rule 26: the first origin whose entries rebuilt here no accepted origin checkpoint
        proves yet."""
        for origin in self.origins.values():
            if origin.proven < origin.replica.size:
                return E.RelayUnproven(
                    f"entry {self.size}",
                    f"the statements relayed from '{origin.hub_name}' up to its entry {origin.replica.size} are proven in its signed checkpoints only up to {origin.proven}: the relay withheld the origin's checkpoint",
                )
        return None

    def _selects(self, h: spb.Statement) -> bool:
        """Whether the sync's filter selects this header (decided from the header alone)."""
        return self.filter.selects(h.kind, h.hash_types, h.labels, h.issuer, bool(h.recipients))

    def _may_read(self, h: spb.Statement) -> bool:
        """The read rule (§2.7) for this reader: unrestricted, or issued by or naming it. An
        origin's replica reads as a relay: only unrestricted bodies (a relay may carry or
        withhold a restricted one, rule 23)."""
        if self.as_relay:
            return not h.recipients
        return not h.recipients or h.issuer == self.reader or self.reader in h.recipients

    def _append_leaf(self, data: bytes, received_at_ms: int) -> None:
        """Rule 16's end: the leaf joins the frontier and its receipt time becomes the last."""
        self.frontier.append(leaf_hash(data))
        self.last_received_ms = received_at_ms
        a = self.anchor
        if a is not None and a.size == self.frontier.size and a.root != self.frontier.root():
            # Rule 19: the accepted checkpoint signs exactly the entries replayed up to its size.
            raise E.RootMismatch(f"checkpoint of size {a.size}", "the signed root is not the root of the entries replayed: history was rewritten", a.size)

    def states_of(self, statement_id: bytes, now_ms: int | None = None) -> tuple[EntryState, dict[int, EntryState]]:
        """(state of entries no lifecycle statement names, {named entry: state})."""
        base = self.state_of(statement_id, -1, now_ms)
        named: set[int] = set()
        for r in self.retractions.get(statement_id, ()):
            named.update(r.entries)
        named.update(self.opinion_entries.get(statement_id, ()))
        out = {}
        for i in named:
            st = self.state_of(statement_id, i, now_ms)
            if st != base:
                out[i] = st
        return base, out

    def _newer_version(self, entry: hpb.SyncEntry, version: int, message: bytes, at: str) -> None:
        ms = self.membership
        if ms is None or version > ms.version:
            raise E.VersionNotAnnounced(at, f"a statement of protocol version {version}, which this log has not announced", entry.seq)
        for s in entry.envelope.signatures:
            owner = ms.key_owner.get(s.key_id)
            k = ms.active_key(owner, s.key_id) if owner is not None else None
            if owner is None or k is None or ms.members[owner].status != ACTIVE:
                raise E.NotEntitled(at, f"key {s.key_id} is not an active key of an active member", entry.seq)
            if not verify_ed25519(k.public, s.sig, message):
                raise E.BadSignature(at, f"signature by key {s.key_id} does not verify over the payload", entry.seq)
        self._append_leaf(leaf_data(entry.statement_id, entry.received_at_ms), entry.received_at_ms)
        if not self.as_relay:
            self.ids[entry.statement_id] = entry.seq
        self.newer_version_entries += 1

    def _entitled(self, entry: hpb.SyncEntry, h: spb.Statement, body: spb.StatementBody | None, at: str) -> list[bytes]:
        """Rule 14: the public key of each signature, or NotEntitled."""
        seq = entry.seq
        kind = Kind(h.kind)
        sigs = list(entry.envelope.signatures)

        def refuse(what: str) -> E.VerificationError:
            return E.NotEntitled(at, what, seq)

        if kind == Kind.GENESIS:
            if self.membership is not None or seq != 0:
                raise refuse("a second genesis (or a genesis not at entry 0)")
            assert body is not None
            g = body.genesis
            admin_keys = {}
            for a in g.admins:
                for pk in a.public_keys:
                    admin_keys[hashlib.sha256(pk).hexdigest()[:16]] = (a.member_id, bytes(pk))
            hub_kid = hashlib.sha256(g.hub_public_key).hexdigest()[:16]
            if h.issuer not in {a.member_id for a in g.admins}:
                raise refuse(f"the genesis issuer '{h.issuer}' is not one of its admins")
            out = []
            for s in sigs:
                if s.key_id == hub_kid:
                    out.append(bytes(g.hub_public_key))
                elif s.key_id in admin_keys:
                    out.append(admin_keys[s.key_id][1])
                else:
                    raise refuse(f"key {s.key_id} is neither the genesis hub key nor an admin's")
            if hub_kid not in [s.key_id for s in sigs]:
                raise refuse("the hub key the genesis names did not sign it")
            own = admin_keys.get(h.key_id)
            if own is None or own[0] != h.issuer or h.key_id not in [s.key_id for s in sigs]:
                raise refuse("the genesis is not signed by its issuer's own key_id")
            return out
        ms = self.membership
        if ms is None:
            raise refuse("this hub has no genesis yet")
        admin_quorum = kind in (Kind.MEMBERSHIP, Kind.SETTINGS) or (
            body is not None
            and (
                (kind == Kind.RETRACTION and body.retraction.admin_quorum)
                or (kind == Kind.OPINION and body.opinion.admin_quorum)
            )
        )
        issuer = ms.members.get(h.issuer)
        if issuer is None or issuer.status != ACTIVE:
            raise refuse(f"the issuer '{h.issuer}' is not an active member")
        out = []
        if admin_quorum:
            if ROLE_ADMIN not in issuer.roles:
                raise refuse(f"the issuer '{h.issuer}' lacks the 'admin' role")
            new_hub_key = (
                bytes(body.settings.hub_key.hub_public_key)
                if body is not None and kind == Kind.SETTINGS and body.settings.WhichOneof("section") == "hub_key"
                else None
            )
            new_hub_kid = hashlib.sha256(new_hub_key).hexdigest()[:16] if new_hub_key else None
            admins: set[str] = set()
            for s in sigs:
                if new_hub_key is not None and s.key_id == new_hub_kid:
                    out.append(new_hub_key)
                    continue
                owner = ms.key_owner.get(s.key_id)
                k = ms.active_key(owner, s.key_id) if owner is not None else None
                m = ms.members.get(owner) if owner is not None else None
                if owner is None or k is None or m is None or m.status != ACTIVE or ROLE_ADMIN not in m.roles:
                    raise refuse(self._why_not(ms, s.key_id, "an active key of an active admin"))
                admins.add(owner)
                out.append(k.public)
            if new_hub_kid is not None and new_hub_kid not in [s.key_id for s in sigs]:
                raise refuse("a hub key rotation not signed by the new hub key")
            if len(admins) < ms.quorum:
                raise refuse(f"needs signatures of {ms.quorum} distinct admins, it has {len(admins)}")
        else:
            if ROLE_MEMBER not in issuer.roles:
                raise refuse(f"the issuer '{h.issuer}' lacks the 'member' role")
            for s in sigs:
                k = ms.active_key(h.issuer, s.key_id)
                if k is None:
                    raise refuse(self._why_not(ms, s.key_id, f"an active key of the issuer '{h.issuer}'"))
                out.append(k.public)
        if ms.key_owner.get(h.key_id) != h.issuer or h.key_id not in [s.key_id for s in sigs]:
            raise refuse(f"no signature by the header's key_id {h.key_id} as a key of the issuer")
        return out

    @staticmethod
    def _why_not(ms: Membership, kid: str, wanted: str) -> str:
        owner = ms.key_owner.get(kid)
        if owner is None:
            return f"key {kid} is not registered to any member: it is not {wanted}"
        k = ms.members[owner].keys[kid]
        if k.revoked_seq is not None:
            return f"key {kid} of '{owner}' was retired at log entry {k.revoked_seq}: it is not {wanted}"
        return f"key {kid} belongs to '{owner}': it is not {wanted}"

    def _apply(self, entry: hpb.SyncEntry, h: spb.Statement, body: spb.StatementBody | None, at: str) -> None:
        seq = entry.seq
        kind = Kind(h.kind)
        signers = tuple(s.key_id for s in entry.envelope.signatures)
        claims = self.erasure_claims.pop(seq, None)
        if claims is not None:
            r = body.retraction if body is not None and kind == Kind.RETRACTION else None
            for claimed_seq, sid in claims:
                t = self.targets.get(sid)
                if r is None or not r.erase or r.statement_id != sid or t is None:
                    what = "an erasure of another statement" if r is not None and r.erase else f"a {kind.name.lower()} statement"
                    raise E.FalseErasure(
                        at,
                        f"the hub claims entry {claimed_seq} was erased by entry {seq}, but entry {seq} is not an admin-quorum erasure of it ({what})",
                        seq,
                    )
        if kind == Kind.GENESIS:
            assert body is not None
            self.membership = Membership(body.genesis, seq, entry.statement_id)
            self.genesis_id = entry.statement_id
        elif kind in (Kind.MEMBERSHIP, Kind.SETTINGS):
            assert body is not None and self.membership is not None
            try:
                if kind == Kind.MEMBERSHIP:
                    self.membership.apply_change(body.membership, seq)
                else:
                    self.membership.apply_settings(body.settings, seq)
            except ChangeRefused as e:
                raise E.Refused(at, str(e), seq) from e
        elif kind == Kind.RETRACTION:
            assert body is not None
            r = body.retraction
            self._record_retraction(
                r.statement_id, Said(seq, h.issuer, signers, entry.received_at_ms, r.admin_quorum, tuple(r.entries), r.erase)
            )
        elif kind == Kind.OPINION:
            if body is not None:
                o = body.opinion
                self._record_opinion(
                    o.statement_id,
                    o.entry,
                    Said(seq, h.issuer, signers, entry.received_at_ms, o.admin_quorum, verdict=o.verdict, restricted=bool(h.recipients)),
                )
        else:
            expires = None
            if body is not None:
                inner = body.hash_set if kind == Kind.HASH_SET else body.risk_signal
                if inner.HasField("expires_at_ms"):
                    expires = inner.expires_at_ms
            self.targets[entry.statement_id] = Target(seq, h.issuer, kind, h.key_id, entry.received_at_ms, expires)
        if kind in GOVERNANCE or kind in LIFECYCLE:
            self.governance.append(entry.SerializeToString(deterministic=True))

    def _record_retraction(self, target: bytes, said: Said) -> None:
        self.retractions.setdefault(target, []).append(said)
        if said.erase and target in self.targets:
            self.erased.add(target)

    def _record_opinion(self, target: bytes, entry_index: int, said: Said) -> None:
        self.opinion_entries.setdefault(target, set()).add(entry_index)
        self.opinions.setdefault((target, entry_index), []).append(said)

    def caught_up(self) -> None:
        """The hub says it sent everything: no erasure claim may stay open (rule 13a), and
        every origin's entries rebuilt here are proven in its signed checkpoints (rule 26)."""
        for m, claims in sorted(self.erasure_claims.items()):
            seq = claims[0][0]
            raise E.FalseErasure(f"entry {seq}", f"the hub claims entry {seq} was erased by entry {m}, but sent only {self.size} entries", seq)
        unproven = self.unproven_relay()
        if unproven is not None:
            raise unproven

    # --- lifecycle (§4.3) ------------------------------------------------------------------

    def _membership_of(self, member: str) -> tuple[Membership | None, str]:
        """Whose membership judges `member` (§3.10 "whose membership"): this log's for its
        own members, the origin's as relayed so far for `member@hub_name`; and its id there."""
        hub = hub_of(member)
        if hub is None:
            return self.membership, member
        bare = member.split("@", 1)[0]
        for origin in self.origins.values():
            if origin.hub_name == hub:
                return origin.replica.membership, bare
        return None, bare

    def _compromised(self, member: str, kid: str, at_ms: int) -> bool:
        """Whether `member`'s key `kid` is declared compromised from a time <= `at_ms`."""
        ms, _ = self._membership_of(member)
        since = ms.compromised_since(kid) if ms is not None else None
        return since is not None and since <= at_ms

    def _counted(self, member: str) -> bool:
        ms, bare = self._membership_of(member)
        return ms is not None and ms.is_counted_member(bare)

    def _applies(self, said: Said, target: Target, final: bool = False) -> bool:
        """Rules 1, 2 and 4 of §4.3 (the target's kind is implied: only hash sets and risk
        signals are targets), and whose word reaches whom (§3.10): a statement relayed from
        another hub reaches only that hub's members' statements."""
        if self.membership is None or said.seq <= target.seq:
            return False
        said_hub = hub_of(said.issuer)
        if said_hub is not None and hub_of(target.issuer) != said_hub:
            return False
        if not final and any(self._compromised(said.issuer, kid, said.received_at_ms) for kid in said.signers):
            return False
        return True

    def state_of(self, statement_id: bytes, entry_index: int, now_ms: int | None = None) -> EntryState:
        """An entry's state by the rules of §4.3, as of the entries replayed so far."""
        t = self.targets.get(statement_id)
        ms = self.membership
        if t is None or ms is None:
            return EntryState.ACTIVE
        rs = self.retractions.get(statement_id, ())
        for r in rs:
            # Only a statement's own hub erases it.
            same_hub = hub_of(r.issuer) == hub_of(t.issuer)
            if r.erase and same_hub and (r.admin_quorum or r.issuer == t.issuer) and self._applies(r, t, final=True):
                return EntryState.ERASED
        for r in rs:
            if r.erase and hub_of(r.issuer) != hub_of(t.issuer):
                continue
            if (r.admin_quorum or r.issuer == t.issuer) and self._applies(r, t) and (not r.entries or entry_index in r.entries):
                return EntryState.RETRACTED
        if self._compromised(t.issuer, t.key_id, t.received_at_ms):
            return EntryState.COMPROMISED
        admin_word = 0
        release_seq = -1
        latest: dict[str, Said] = {}
        for o in self.opinions.get((statement_id, entry_index), ()):
            if not self._applies(o, t):
                continue
            if o.admin_quorum:
                admin_word = o.verdict
                if o.verdict == Verdict.RELEASE:
                    release_seq = o.seq
                continue
            if o.issuer == t.issuer or o.restricted or o.verdict == Verdict.SEEN:
                continue  # no opinion on one's own entry; the seen track never decides a state
            if o.verdict == Verdict.WITHDRAWN:
                latest.pop(o.issuer, None)
            else:
                latest[o.issuer] = o
        counted = [o for m, o in latest.items() if self._counted(m)]
        fp_after_release = sum(1 for o in counted if o.verdict == Verdict.FALSE_POSITIVE and o.seq > release_seq)
        if admin_word == Verdict.QUARANTINE or fp_after_release >= ms.quarantine_threshold:
            return EntryState.QUARANTINED
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        if t.expires_at_ms is not None and now >= t.expires_at_ms:
            return EntryState.EXPIRED
        verdicts = {o.verdict for o in counted}
        if Verdict.DISPUTED in verdicts or {Verdict.CONFIRMED, Verdict.FALSE_POSITIVE} <= verdicts:
            return EntryState.DISPUTED
        return EntryState.ACTIVE

    # --- checkpoints (rules 18-20) ---------------------------------------------------------

    def verify_note(self, note: str) -> Checkpoint:
        """Rule 18/18a: the note is signed by the hub key in force for its size."""
        ms = self.membership
        if ms is None:
            raise E.NoHubKey("a checkpoint", "there is no genesis yet: no hub key to check a checkpoint with")
        try:
            size = head(note).size
        except NoteError as e:
            raise E.CheckpointSignature("a checkpoint", str(e)) from e
        where = f"checkpoint of size {size}"
        key = ms.hub_key_for(size)
        try:
            return verify_checkpoint(note, ms.hub_name, key)
        except NoteError as e:
            for _, old in ms.hub_keys:
                if old != key:
                    try:
                        verify_checkpoint(note, ms.hub_name, old)
                    except NoteError:
                        continue
                    raise E.RetiredHubKey(where, "signed by a hub key the log retired before this size: the old key may be lost or leaked", size) from e
            if size > self.size:
                raise E.UnknownHubKey(
                    where,
                    f"no hub key known here verifies it ({e}); a rotation among the entries not replayed yet may name its key: sync again",
                    size,
                ) from e
            raise E.CheckpointSignature(where, str(e), size) from e

    def offer_checkpoint(self, note: str, proof: Callable[[int, int], Sequence[bytes]]) -> Checkpoint:
        """Rule 20: a checkpoint the hub offers after a batch; `proof(old, new)` fetches a
        consistency proof. Raises Behind when it is smaller than what is replayed."""
        cp = self.verify_note(note)
        where = f"checkpoint of size {cp.size}"
        n = self.size
        a = self.anchor
        if a is not None and a.size == cp.size and a.root != cp.root:
            raise E.SplitView(where, "two signed checkpoints of this size with different roots: the hub forked its log", cp.size)
        if cp.size == n and cp.root != self.frontier.root():
            raise E.RootMismatch(where, "the signed root is not the root of the entries replayed: history was rewritten", cp.size)
        anchor_size = a.size if a is not None else 0
        if cp.size < n or cp.size < anchor_size:
            raise E.Behind(where, f"the server's checkpoint ({cp.size}) is behind what this replica verified ({max(n, anchor_size)})", cp.size)
        try:
            # Every entry replayed is proven in it, and it extends the anchor.
            if 0 < n < cp.size:
                verify_consistency(n, cp.size, self.frontier.root(), cp.root, proof(n, cp.size))
            if a is not None and n < a.size < cp.size:
                verify_consistency(a.size, cp.size, a.root, cp.root, proof(a.size, cp.size))
        except ProofError as e:
            raise E.Inconsistent(where, f"consistency proof: {e}", cp.size) from e
        self.anchor = cp
        return cp


@dataclass
class Origin:
    """One origin's log (§3.10) as the relayed statements and gap leaves rebuild it."""

    #: The hub name the settings trust it under: its members read `member@hub_name` here.
    hub_name: str
    #: A replica pinned to the origin's genesis, reading as a relay.
    replica: Replica
    #: How many of the origin's entries an accepted origin checkpoint proves (rule 26).
    proven: int = 0
    #: (origin position, position here) of each origin retraction and opinion recorded here.
    lifecycle_at: list[tuple[int, int]] = field(default_factory=list)

    def replay(self, entry: hpb.SyncEntry, d: Decoded, held: Mapping[bytes, int]) -> Replayed:
        """Rules 24 and 25: the gap leaves, the statement at its origin position under the
        origin's membership, the origin checkpoint. Errors are located in the origin's log."""
        relay = entry.relay
        r = self.replica
        for gap in relay.gap_leaves:
            r._gap_leaf(bytes(gap), held)
        nested = hpb.SyncEntry(
            seq=relay.origin_seq,
            received_at_ms=relay.origin_received_at_ms,
            statement_id=entry.statement_id,
            envelope=entry.envelope,
        )
        if relay.HasField("erased_by"):
            # An erasure at the origin before the relay: the claim is checked in the origin's log.
            nested.erased_by = relay.erased_by
        replayed = r._replay(nested, d, resumed=False)
        if replayed.header is not None and Kind(replayed.header.kind) == Kind.GENESIS:
            assert r.membership is not None
            if r.membership.hub_name != self.hub_name:
                raise E.RelayEvidence(
                    f"entry {relay.origin_seq}",
                    f"the origin's genesis names the hub '{r.membership.hub_name}', but the settings trust it as '{self.hub_name}'",
                    relay.origin_seq,
                )
        if relay.HasField("checkpoint"):
            self._offer(relay.checkpoint)
        # The replay reaching the anchor's size checked the root there (rule 19).
        if r.anchor is not None and r.anchor.size <= r.size:
            self.proven = max(self.proven, r.anchor.size)
        return replayed

    def _offer(self, checkpoint: hpb.OriginCheckpoint) -> None:
        """Rule 25: the relay's origin checkpoint, offered to the origin's replica with the
        consistency proofs it carries, exactly those rule 20 needs, in that order."""
        given = [list(p.hashes) for p in checkpoint.proofs]
        used = 0

        def proof(old: int, new: int) -> Sequence[bytes]:
            nonlocal used
            if used == len(given):
                raise E.RelayEvidence(
                    f"checkpoint of size {new}", f"the relay carries {len(given)} consistency proofs; one from {old} is needed too", new
                )
            used += 1
            return given[used - 1]

        cp = self.replica.offer_checkpoint(checkpoint.note, proof)
        if used != len(given):
            raise E.RelayEvidence(f"checkpoint of size {cp.size}", f"{len(given)} consistency proofs given, {used} needed", cp.size)
        self.proven = self.replica.size
