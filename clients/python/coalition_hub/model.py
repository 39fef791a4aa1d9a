"""Plain types of the public API: what a verified sync yields and what a submission takes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, NamedTuple


class Kind(enum.IntEnum):
    """Statement kinds (`StatementKind`)."""

    HASH_SET = 1
    RISK_SIGNAL = 2
    GENESIS = 3
    MEMBERSHIP = 4
    SETTINGS = 5
    RETRACTION = 6
    OPINION = 7


class HashType(enum.IntEnum):
    """Hash algorithms (`HashType`), with their value lengths in :data:`HASH_LENGTHS`."""

    MD5 = 1
    SHA1 = 2
    SHA256 = 3
    PDQ = 4
    PHOTODNA = 5
    URL_MD5 = 6
    VPDQ = 7

    @property
    def wire_name(self) -> str:
        """Lowercase name as the CLI spells it (md5, sha1, sha256, pdq, photodna, url_md5, vpdq)."""
        return self.name.lower()

    @classmethod
    def parse(cls, name: str | int | HashType) -> HashType:
        """From a name (`"pdq"`, `"PDQ"`) or a number."""
        if isinstance(name, str):
            return cls[name.upper()]
        return cls(name)


#: Exact value length in bytes of each hash type (§2.3); for vpdq (7), the length of one frame
#: (a value is 1..=16384 frames, :func:`coalition_hub.statements.check_vpdq_value`).
HASH_LENGTHS: dict[int, int] = {1: 16, 2: 20, 3: 32, 4: 32, 5: 144, 6: 16, 7: 41}
#: Most frames in one vpdq value (§2.3.2).
MAX_VPDQ_FRAMES = 16_384


class EntryState(enum.IntEnum):
    """An entry's lifecycle state (§4.3, `EntryState`)."""

    ACTIVE = 1
    DISPUTED = 2
    QUARANTINED = 3
    RETRACTED = 4
    COMPROMISED = 5
    EXPIRED = 6
    ERASED = 7


class Verdict(enum.IntEnum):
    """Opinion verdicts (`OpinionVerdict`)."""

    CONFIRMED = 1
    FALSE_POSITIVE = 2
    DISPUTED = 3
    WITHDRAWN = 4
    QUARANTINE = 5
    RELEASE = 6
    SEEN = 7


@dataclass(frozen=True)
class SyncFilter:
    """What a sync selects (PROTOCOL.md §5 `Hub.Sync`), decided from the signed header alone:
    within one field any value matches, across fields all must; an empty field matches
    everything. Genesis, membership and settings statements are always selected; a restricted
    header lists no hash types or labels, so only kinds and issuers apply to it. Entries the
    filter does not select come (and are yielded) with their body withheld, still verified."""

    kinds: tuple[Kind, ...] = ()
    hash_types: tuple[HashType, ...] = ()
    #: Labels in canonical spelling (categories upper case: A1, A2, B1, B2; tags as given).
    labels: tuple[str, ...] = ()
    issuers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Accept names ("pdq", "hash_set", "a1") and any sequence; store canonical tuples.
        from coalition_hub.statements import canonical_label

        object.__setattr__(self, "kinds", tuple(Kind[k.upper()] if isinstance(k, str) else Kind(k) for k in self.kinds))
        object.__setattr__(self, "hash_types", tuple(HashType.parse(t) for t in self.hash_types))
        object.__setattr__(self, "labels", tuple(canonical_label(x) for x in self.labels))
        object.__setattr__(self, "issuers", tuple(self.issuers))

    def selects(self, kind: int, hash_types: Sequence[int], labels: Sequence[str], issuer: str, restricted: bool) -> bool:
        """Whether a header with these fields is selected."""
        if kind in (Kind.GENESIS, Kind.MEMBERSHIP, Kind.SETTINGS):
            return True
        return (
            (not self.kinds or kind in self.kinds)
            and (not self.hash_types or restricted or any(t in self.hash_types for t in hash_types))
            and (not self.labels or restricted or any(x in self.labels for x in labels))
            and (not self.issuers or issuer in self.issuers)
        )

    def to_dict(self) -> dict[str, list[Any]]:
        """JSON form (names), as saved in a SyncState."""
        return {
            "kinds": [k.name.lower() for k in self.kinds],
            "hash_types": [t.wire_name for t in self.hash_types],
            "labels": list(self.labels),
            "issuers": list(self.issuers),
        }

    @classmethod
    def from_dict(cls, d: dict[str, list[Any]]) -> SyncFilter:
        """From :meth:`to_dict`'s form."""
        return cls(
            tuple(Kind[k.upper()] for k in d.get("kinds", [])),
            tuple(HashType.parse(t) for t in d.get("hash_types", [])),
            tuple(d.get("labels", [])),
            tuple(d.get("issuers", [])),
        )


@dataclass(frozen=True)
class HashInput:
    """One hash to submit: type, raw value (or hex), PDQ quality, labels."""

    type: HashType | str
    value: bytes | str
    quality: int | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndicatorInput:
    """One indicator of a risk signal to submit: `type` keyword, url, domain, account_handle
    (with `platform`) or hash (with `hash`, `value` empty)."""

    type: str
    value: str = ""
    platform: str = ""
    hash: HashInput | None = None


class VerifiedHash(NamedTuple):
    """One hash of a verified hash set (or a risk signal's hash indicator). A named tuple:
    many are made per sync, and a tuple is the cheapest immutable record in Python."""

    #: Index of the entry in its statement (a hash set's `entries`, a signal's `indicators`).
    entry_index: int
    #: Lowercase type name: md5, sha1, sha256, pdq, photodna, url_md5, vpdq.
    type: str
    #: Lowercase hex of the raw value.
    value_hex: str
    #: PDQ quality, None for other types.
    quality: int | None
    labels: tuple[str, ...]


@dataclass(frozen=True)
class VerifiedIndicator:
    """One indicator of a verified risk signal."""

    entry_index: int
    #: keyword, url, domain, account_handle or hash.
    type: str
    value: str
    platform: str
    hash: VerifiedHash | None


@dataclass(frozen=True)
class RiskSignalFields:
    """A verified risk signal's fields."""

    category: str
    severity: str
    title: str
    description: str
    first_seen_ms: int
    last_seen_ms: int
    expires_at_ms: int | None
    indicators: tuple[VerifiedIndicator, ...]


@dataclass(frozen=True)
class RelayOrigin:
    """Where a relayed statement (PROTOCOL.md §3.10) was first logged: its origin hub, as this
    hub's settings trust it, and its position and receipt time in the origin's log (verified
    against the origin's membership and signed checkpoints)."""

    #: The origin's hub name; the issuer of a relayed statement reads `member@hub_name`.
    hub_name: str
    #: The origin's genesis statement id (lowercase hex).
    genesis_id: str
    seq: int
    received_at_ms: int


@dataclass
class VerifiedEntry:
    """One log entry whose bytes, signatures, entitlement and Merkle inclusion in a signed
    checkpoint were verified by this client (never taken on the hub's word)."""

    seq: int
    #: Lowercase hex statement id.
    statement_id: str
    #: The member who issued it; for a relayed statement, the origin's member qualified by the
    #: origin's hub name (`acme@x.example`), never equal to a member of this hub.
    issuer: str
    #: The header's signing key id.
    key_id: str
    received_at_ms: int
    issued_at_ms: int
    kind: Kind
    #: Restricted recipients (empty: every member reads it).
    recipients: tuple[str, ...]
    #: False when the body was withheld (a restricted statement this member may not read, or
    #: an erased one); its header and signatures were still verified.
    has_body: bool
    #: The lifecycle state (§4.3) of the statement's entries when the batch was proven, for
    #: hash sets and risk signals: `base_state` for every entry, except the entries named in
    #: `entry_states` (entries some retraction or opinion names). Use :meth:`state`.
    base_state: EntryState = EntryState.ACTIVE
    entry_states: dict[int, EntryState] = field(default_factory=dict)
    #: Hash-set description.
    description: str = ""
    expires_at_ms: int | None = None
    #: Set for risk signals.
    risk_signal: RiskSignalFields | None = None
    #: Decoded body for governance and lifecycle statements (a dict of the protobuf message).
    details: dict[str, Any] | None = None
    #: A retraction or opinion: the statement it speaks of (hex), and that statement's entry
    #: states when this entry's batch was proven (when this client holds the target; later
    #: entries of the same batch included): apply them to the rows yielded earlier for that
    #: statement (`target_state(i)`).
    target_statement_id: str | None = None
    target_base_state: EntryState | None = None
    target_entry_states: dict[int, EntryState] = field(default_factory=dict)
    #: Every hash of a hash set (or a risk signal's hash indicators), in entry order, labels
    #: in canonical spelling. Empty when the body was withheld.
    hashes: tuple[VerifiedHash, ...] = ()
    #: Set for a statement another hub logged first and this hub relays (§3.10): `seq` and
    #: `received_at_ms` above are this hub's, the origin's are here.
    origin: RelayOrigin | None = None

    def target_state(self, entry_index: int) -> EntryState | None:
        """A retraction's or opinion's target entry state after it (None: target unknown)."""
        if self.target_base_state is None:
            return None
        return self.target_entry_states.get(entry_index, self.target_base_state)

    def state(self, entry_index: int) -> EntryState:
        """The state of one entry (§4.3) when the batch was proven."""
        return self.entry_states.get(entry_index, self.base_state)
