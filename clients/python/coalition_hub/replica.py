"""The member's replica: replays a hub's log from its genesis under the replica rules of
PROTOCOL.md §4, trusting nothing the hub says beyond entries, signed checkpoints and
consistency proofs. Each refusal raises the :mod:`coalition_hub.errors` class of its rule."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from coalition_hub import errors as E
from coalition_hub.membership import (
    ACTIVE,
    ROLE_ADMIN,
    ROLE_MEMBER,
    ChangeRefused,
    Membership,
)
from coalition_hub.merkle import Frontier, ProofError, verify_consistency
from coalition_hub.model import EntryState, Kind, SyncFilter, Verdict, VerifiedHash
from coalition_hub.note import Checkpoint, NoteError, head, verify_checkpoint
from coalition_hub.pb import hub as hpb
from coalition_hub.pb import statement as spb
from coalition_hub.statements import FieldError, check_body, check_header
from coalition_hub.wire import (
    NotCanonical,
    canonical,
    leaf_data,
    leaf_hash,
    pae,
    payload_version,
    valid_key_id,
    verify_ed25519,
)

MAX_FUTURE_MS = 10 * 60 * 1000
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

    @property
    def size(self) -> int:
        """Entries replayed (the next seq expected)."""
        return self.frontier.size

    # --- entries ---------------------------------------------------------------------------

    def replay(self, entry: hpb.SyncEntry, *, resumed: bool = False) -> Replayed:
        """Checks one entry under rules 1-17 and applies it. `resumed`: a governance entry
        replayed from a saved state (positions and the frontier come from the state)."""
        seq = entry.seq
        at = f"entry {seq}"
        if entry.HasField("relay"):
            raise E.Unsupported(at, "a relayed entry (§3.10): this client does not verify relays yet", seq)
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
        # Rule 7-9: position, time, once.
        if not resumed:
            expected = self.frontier.size
            if seq > expected:
                raise E.Gap(f"entry {expected}", f"missing: the next entry present is {seq}", expected)
            if seq < expected:
                raise E.OutOfOrder(f"entry {expected}", f"an entry for position {seq} arrived where {expected} was expected", expected)
            if entry.received_at_ms < self.last_received_ms:
                raise E.TimeWentBack(at, f"received_at_ms {entry.received_at_ms} is before the previous entry's {self.last_received_ms}", seq)
            first = self.ids.get(entry.statement_id)
            if first is not None:
                raise E.Duplicate(at, f"statement {entry.statement_id.hex()} was logged already at entry {first}", seq)
        if version != 1:
            self._newer_version(entry, version, message, at)
            return Replayed(entry, None, None, version)
        assert header is not None
        kind = Kind(header.kind)
        if header.issued_at_ms > entry.received_at_ms + MAX_FUTURE_MS:
            raise E.FromTheFuture(at, f"issued_at_ms {header.issued_at_ms} is more than 10 minutes after its receipt {entry.received_at_ms}", seq)
        if kind == Kind.GENESIS and self.pinned_genesis is not None and entry.statement_id != self.pinned_genesis:
            raise E.WrongGenesis(at, f"the genesis is {entry.statement_id.hex()}, not the pinned {self.pinned_genesis.hex()}", seq)
        # Rule 13 / 13a: withheld bodies.
        if body is None:
            restricted_opinion = kind == Kind.OPINION and bool(header.recipients)
            if kind in GOVERNANCE or kind == Kind.RETRACTION or (kind == Kind.OPINION and not restricted_opinion):
                raise E.WithheldMembership(at, f"a {kind.name.lower()} statement came without its body (they always come whole)", seq)
            if entry.HasField("erased_by"):
                m = entry.erased_by
                if m <= seq:
                    raise E.FalseErasure(at, f"the hub claims entry {seq} was erased by entry {m}, which is not after it", seq)
                self.erasure_claims.setdefault(m, []).append((seq, entry.statement_id))
            elif self._selects(header) and self._may_read(header):
                raise E.WithheldSelected(at, "the body of a statement this member's filter selects and it may read was withheld: the hub is withholding a selected statement", seq)
        # Rule 14: entitlement; rules 15/17: signatures.
        keys = self._entitled(entry, header, body, at)
        for s, public in zip(sigs, keys, strict=True):
            if not verify_ed25519(public, s.sig, message):
                raise E.BadSignature(at, f"signatures[{kids.index(s.key_id)}]: signature by key {s.key_id} does not verify over the payload", seq)
        # Rule 16: apply.
        self._apply(entry, header, body, at)
        if not resumed:
            self._append(entry)
        self.ids[entry.statement_id] = seq
        return Replayed(entry, header, body, 1, hashes)

    def _selects(self, h: spb.Statement) -> bool:
        """Whether the sync's filter selects this header (decided from the header alone)."""
        return self.filter.selects(h.kind, h.hash_types, h.labels, h.issuer, bool(h.recipients))

    def _may_read(self, h: spb.Statement) -> bool:
        """The read rule (§2.7) for this reader: unrestricted, or issued by or naming it."""
        return not h.recipients or h.issuer == self.reader or self.reader in h.recipients

    def _append(self, entry: hpb.SyncEntry) -> None:
        self.frontier.append(leaf_hash(leaf_data(entry.statement_id, entry.received_at_ms)))
        self.last_received_ms = entry.received_at_ms
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
        self._append(entry)
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
            self.retractions.setdefault(r.statement_id, []).append(
                Said(seq, h.issuer, signers, entry.received_at_ms, r.admin_quorum, tuple(r.entries), r.erase)
            )
            if r.erase and r.statement_id in self.targets:
                self.erased.add(r.statement_id)
        elif kind == Kind.OPINION:
            if body is not None:
                o = body.opinion
                self.opinion_entries.setdefault(o.statement_id, set()).add(o.entry)
                self.opinions.setdefault((o.statement_id, o.entry), []).append(
                    Said(seq, h.issuer, signers, entry.received_at_ms, o.admin_quorum, verdict=o.verdict, restricted=bool(h.recipients))
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

    def caught_up(self) -> None:
        """The hub says it sent everything: no erasure claim may stay open (rule 13a)."""
        for m, claims in sorted(self.erasure_claims.items()):
            seq = claims[0][0]
            raise E.FalseErasure(f"entry {seq}", f"the hub claims entry {seq} was erased by entry {m}, but sent only {self.size} entries", seq)

    # --- lifecycle (§4.3) ------------------------------------------------------------------

    def _applies(self, said: Said, target: Target, final: bool = False) -> bool:
        ms = self.membership
        if ms is None or said.seq <= target.seq:
            return False
        if not final:
            for kid in said.signers:
                since = ms.compromised_since(kid)
                if since is not None and since <= said.received_at_ms:
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
            if r.erase and (r.admin_quorum or r.issuer == t.issuer) and self._applies(r, t, final=True):
                return EntryState.ERASED
        for r in rs:
            if (r.admin_quorum or r.issuer == t.issuer) and self._applies(r, t) and (not r.entries or entry_index in r.entries):
                return EntryState.RETRACTED
        since = ms.compromised_since(t.key_id)
        if since is not None and since <= t.received_at_ms:
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
        counted = [o for m, o in latest.items() if ms.is_counted_member(m)]
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
