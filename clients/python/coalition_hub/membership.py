"""The membership replayed from a log (§2.4, §2.5): members, roles, status, keys with their
status as of each position, the quorum, the protocol version, the hub keys and settings.

Only the replica mutates it, entry by entry; every method that answers "may this key sign
this now" reads the state as of the entries applied so far."""

from __future__ import annotations

from dataclasses import dataclass, field

from coalition_hub.pb import statement as spb
from coalition_hub.wire import key_id, weak_key
from coalition_hub.witness import Policy, PolicyError, parse_policy

ROLE_ADMIN, ROLE_MEMBER, ROLE_AUDITOR, ROLE_PEER = 1, 2, 3, 4
ACTIVE, SUSPENDED, REMOVED = 1, 2, 3
KEY_ACTIVE, KEY_RETIRED, KEY_COMPROMISED = 1, 2, 3
MAX_KEYS = 16
DEFAULT_QUARANTINE_THRESHOLD = 3


class ChangeRefused(ValueError):
    """A change impossible in the current state (the message says why)."""


@dataclass
class KeyRecord:
    """One registered key and its status."""

    public: bytes
    status: int = KEY_ACTIVE
    added_seq: int = 0
    revoked_seq: int | None = None
    compromised_at_ms: int | None = None


@dataclass
class MemberRecord:
    """One member as the log says."""

    member_id: str
    roles: set[int]
    status: int = ACTIVE
    keys: dict[str, KeyRecord] = field(default_factory=dict)

    def can_sign_changes(self) -> bool:
        """An active admin with an active key."""
        return (
            self.status == ACTIVE
            and ROLE_ADMIN in self.roles
            and any(k.status == KEY_ACTIVE for k in self.keys.values())
        )


@dataclass(frozen=True)
class TrustedOrigin:
    """A hub whose statements this log may relay (settings section `federation`, §3.10)."""

    hub_name: str
    #: Genesis ids of the other hubs allowed to relay it here.
    relayed_by: frozenset[bytes] = frozenset()


class Membership:
    """The coalition founded by a genesis, with every change applied since."""

    def __init__(self, genesis: spb.Genesis, seq: int, genesis_id: bytes) -> None:
        self.hub_name: str = genesis.hub_name
        self.genesis_id: bytes = genesis_id
        #: (position naming it, key): a checkpoint of size N is signed by the last key named at
        #: a position below N (§2.5).
        self.hub_keys: list[tuple[int, bytes]] = [(seq, bytes(genesis.hub_public_key))]
        self.quorum: int = genesis.quorum
        self.version: int = 1
        self.members: dict[str, MemberRecord] = {}
        self.key_owner: dict[str, str] = {}
        self.quarantine_threshold: int = DEFAULT_QUARANTINE_THRESHOLD
        self.settings_revision: int = 0
        #: The witness policy in force (§3.8), None when the settings hold none.
        self.witness_policy: Policy | None = None
        #: The trusted origins (§3.10) by genesis id; none before a `federation` section.
        self.trusted_origins: dict[bytes, TrustedOrigin] = {}
        for a in genesis.admins:
            self._admit(a, seq)

    # --- questions -------------------------------------------------------------------------

    def active_key(self, member: str, kid: str) -> KeyRecord | None:
        """The key if it is an active key of `member`."""
        m = self.members.get(member)
        if m is None:
            return None
        k = m.keys.get(kid)
        return k if k is not None and k.status == KEY_ACTIVE else None

    def compromised_since(self, kid: str) -> int | None:
        """When a key was declared compromised from, if it was."""
        owner = self.key_owner.get(kid)
        if owner is None:
            return None
        k = self.members[owner].keys.get(kid)
        return k.compromised_at_ms if k is not None and k.status == KEY_COMPROMISED else None

    def is_counted_member(self, member: str) -> bool:
        """Active with the `member` role (opinions are tallied only for such members)."""
        m = self.members.get(member)
        return m is not None and m.status == ACTIVE and ROLE_MEMBER in m.roles

    def signing_admins(self) -> int:
        """How many admins can sign changes."""
        return sum(1 for m in self.members.values() if m.can_sign_changes())

    def hub_key_for(self, size: int) -> bytes:
        """The hub key a checkpoint of `size` entries must be signed with."""
        key = self.hub_keys[0][1]
        for pos, k in self.hub_keys:
            if pos < size:
                key = k
        return key

    def key_is_known(self, public: bytes) -> bool:
        """Registered to a member or ever a hub key."""
        return key_id(public) in self.key_owner or any(public == k for _, k in self.hub_keys)

    # --- changes ---------------------------------------------------------------------------

    def _admit(self, a: spb.Admission, seq: int) -> None:
        keys = {}
        for pk in a.public_keys:
            kid = key_id(pk)
            keys[kid] = KeyRecord(bytes(pk), added_seq=seq)
            self.key_owner[kid] = a.member_id
        self.members[a.member_id] = MemberRecord(a.member_id, set(a.roles), ACTIVE, keys)

    def _check_new_keys(self, keys: list[bytes]) -> None:
        for k in keys:
            if len(k) != 32 or weak_key(k):
                raise ChangeRefused("a key is not a valid non-weak 32-byte ed25519 key")
            if self.key_is_known(k):
                raise ChangeRefused(f"key {key_id(k)} is registered already")

    def _edited(self, member: str, verb: str, edit: MemberRecord) -> None:
        before = self._existing(member)
        if before.status == REMOVED:
            raise ChangeRefused(f"member '{member}' was removed for good")
        remaining = self.signing_admins() - int(before.can_sign_changes()) + int(edit.can_sign_changes())
        if remaining < max(self.quorum, 1):
            raise ChangeRefused(f"{verb} would leave {remaining} admin(s) able to sign, fewer than the quorum of {self.quorum}")
        self.members[member] = edit

    def _existing(self, member: str) -> MemberRecord:
        m = self.members.get(member)
        if m is None:
            raise ChangeRefused(f"member '{member}' is not registered")
        return m

    @staticmethod
    def _copy(m: MemberRecord) -> MemberRecord:
        return MemberRecord(
            m.member_id,
            set(m.roles),
            m.status,
            {k: KeyRecord(v.public, v.status, v.added_seq, v.revoked_seq, v.compromised_at_ms) for k, v in m.keys.items()},
        )

    def apply_change(self, change: spb.MembershipChange, seq: int) -> None:
        """Applies a membership change (§2.4) or raises ChangeRefused."""
        which = change.WhichOneof("change")
        if which == "admit":
            a = change.admit
            if a.member_id in self.members:
                raise ChangeRefused(f"member '{a.member_id}' already exists (member ids are never reused)")
            self._check_new_keys(list(a.public_keys))
            self._admit(a, seq)
        elif which in ("suspend", "reinstate", "remove"):
            mid = getattr(change, which).member_id
            m = self._copy(self._existing(mid))
            if which == "suspend":
                if m.status == SUSPENDED:
                    raise ChangeRefused(f"member '{mid}' is already suspended")
                m.status = SUSPENDED
            elif which == "reinstate":
                if m.status != SUSPENDED:
                    raise ChangeRefused(f"member '{mid}' is not suspended")
                m.status = ACTIVE
            else:
                m.status = REMOVED
            self._edited(mid, which, m)
        elif which == "add_key":
            ak = change.add_key
            self._check_new_keys([ak.public_key])
            m = self._copy(self._existing(ak.member_id))
            if len(m.keys) >= MAX_KEYS:
                raise ChangeRefused(f"member '{ak.member_id}' holds {MAX_KEYS} keys already")
            kid = key_id(ak.public_key)
            m.keys[kid] = KeyRecord(bytes(ak.public_key), added_seq=seq)
            self._edited(ak.member_id, "adding a key", m)
            self.key_owner[kid] = ak.member_id
        elif which == "revoke_key":
            rk = change.revoke_key
            m = self._copy(self._existing(rk.member_id))
            k = m.keys.get(rk.key_id)
            if k is None:
                raise ChangeRefused(f"member '{rk.member_id}' has no key {rk.key_id}")
            if k.status == KEY_COMPROMISED or (k.status == KEY_RETIRED and rk.reason == 1):
                raise ChangeRefused(f"key {rk.key_id} is already revoked that way")
            if k.revoked_seq is None:
                k.revoked_seq = seq
            if rk.reason == 1:
                k.status = KEY_RETIRED
            elif rk.reason == 2 and rk.HasField("compromised_at_ms"):
                k.status = KEY_COMPROMISED
                k.compromised_at_ms = rk.compromised_at_ms
            else:
                raise ChangeRefused("revoke_key: reason RETIRED, or COMPROMISED with compromised_at_ms")
            self._edited(rk.member_id, "revoking a key", m)
        elif which == "set_roles":
            sr = change.set_roles
            m = self._copy(self._existing(sr.member_id))
            m.roles = set(sr.roles)
            if not m.roles:
                raise ChangeRefused("set_roles: at least one role")
            self._edited(sr.member_id, "changing roles", m)
        elif which == "set_quorum":
            q = change.set_quorum.quorum
            if q == 0 or q > self.signing_admins():
                raise ChangeRefused(f"a quorum of {q} is 0 or more than the admins able to sign")
            self.quorum = q
        elif which == "set_protocol_version":
            v = change.set_protocol_version.version
            if v <= self.version:
                raise ChangeRefused(f"the log is at protocol version {self.version} already; versions only go up")
            self.version = v
        else:
            raise ChangeRefused("a membership change with no change")

    def apply_settings(self, change: spb.SettingsChange, seq: int) -> None:
        """Applies a settings change (§2.5) or raises ChangeRefused. Quotas are recorded as
        applied but not interpreted by this client. The section's field rules were checked
        with the body (statements.check_body)."""
        which = change.WhichOneof("section")
        if which is None:
            raise ChangeRefused("a settings change with no section")
        if which == "hub_key":
            k = bytes(change.hub_key.hub_public_key)
            if len(k) != 32 or weak_key(k):
                raise ChangeRefused("hub_key: not a valid non-weak 32-byte ed25519 key")
            if self.key_is_known(k):
                raise ChangeRefused("hub_key: a key that was a hub key or is registered to a member")
            self.hub_keys.append((seq, k))
        elif which == "witnesses":
            try:
                self.witness_policy = parse_policy(change.witnesses.policy)
            except PolicyError as e:
                raise ChangeRefused(f"settings.witnesses.policy: {e}") from e
        elif which == "federation":
            origins = change.federation.origins
            if any(o.genesis_id == self.genesis_id or self.genesis_id in o.relayed_by for o in origins):
                raise ChangeRefused("the federation names this hub's own genesis: a hub does not relay its own statements")
            self.trusted_origins = {
                bytes(o.genesis_id): TrustedOrigin(o.hub_name, frozenset(bytes(r) for r in o.relayed_by)) for o in origins
            }
        elif which == "lifecycle":
            t = change.lifecycle.quarantine_threshold
            if t > 1000:
                raise ChangeRefused("settings.lifecycle.quarantine_threshold: above 1000")
            self.quarantine_threshold = t or DEFAULT_QUARANTINE_THRESHOLD
        self.settings_revision += 1
