"""What threatexchange persists for a Coalition Hub exchange: the collaboration config (hub,
identity, key paths), the fetch checkpoint (the client's resumable, verified sync state) and
the record fetched per hash-set entry.

No `from __future__ import annotations` here: threatexchange's CLI and dacite read these
dataclasses' field types at run time.
"""

import pathlib
import typing as t
from dataclasses import dataclass, field

from threatexchange.exchanges import fetch_state
from threatexchange.exchanges.collab_config import CollaborationConfigWithDefaults

from coalition_hub_threatexchange import mapping

#: The API's name in threatexchange (collab configs' `api`, the CLI's `config collab edit NAME`).
API_NAME = "coalition_hub"


@dataclass
class _RequiredFields:
    hub: str = field(
        metadata={"help": "the hub's address, host:port (mutual TLS)", "metavar": "HOST:PORT"}
    )
    member: str = field(
        metadata={"help": "your member id at the hub (the subject of your certificate)", "metavar": "ID"}
    )


@dataclass
class CoalitionHubCollabConfig(CollaborationConfigWithDefaults, _RequiredFields):
    """A hub to fetch from and report to, as one member.

    Key files are named by path (absolute paths: HMA and the CLI may run anywhere); nothing
    secret is stored in the config itself. By default they are found in a `coalition pki`
    style directory `certs`: `ca.pem`, `members/<member>.pem`, `.key`, `.sign.key`.
    """

    api: str = field(init=False, default=API_NAME)
    certs: t.Optional[str] = field(
        default=None,
        metadata={
            "help": "certificate directory: ca.pem, members/ID.pem, .key, .sign.key "
            "(the defaults of the four paths below)",
            "metavar": "DIR",
        },
    )
    ca_pem: t.Optional[str] = field(
        default=None, metadata={"help": "the coalition CA (PEM) the hub's certificate must chain to", "metavar": "FILE"}
    )
    cert_pem: t.Optional[str] = field(
        default=None, metadata={"help": "your TLS client certificate (PEM)", "metavar": "FILE"}
    )
    key_pem: t.Optional[str] = field(
        default=None, metadata={"help": "your TLS client key (PEM)", "metavar": "FILE"}
    )
    genesis: t.Optional[str] = field(
        default=None,
        metadata={
            "help": "the hub's genesis statement id (64 hex): the first fetch refuses any other "
            "log (default: trust the first genesis seen, then keep to it)",
            "metavar": "HEX",
        },
    )
    signing_key: t.Optional[str] = field(
        default=None,
        metadata={
            "help": "your ed25519 signing key (PKCS#8 PEM); needed only to report opinions",
            "metavar": "FILE",
        },
    )

    def path(self, which: str) -> pathlib.Path:
        """The resolved path of `ca_pem`, `cert_pem`, `key_pem` or `signing_key`."""
        explicit = getattr(self, which)
        if explicit:
            return pathlib.Path(explicit).expanduser()
        if not self.certs:
            raise ValueError(f"collab {self.name!r}: set --{which.replace('_', '-')} or --certs")
        base = pathlib.Path(self.certs).expanduser()
        return {
            "ca_pem": base / "ca.pem",
            "cert_pem": base / "members" / f"{self.member}.pem",
            "key_pem": base / "members" / f"{self.member}.key",
            "signing_key": base / "members" / f"{self.member}.sign.key",
        }[which]


@dataclass
class CoalitionHubCheckpoint(fetch_state.FetchCheckpointBase):
    """Where a fetch stands: the Python client's `SyncState` (JSON), i.e. the cursor and the
    verified replica (membership, checkpoint, lifecycle records) it resumes from.

    Never stale: the hub's log is append-only, so a sync resumes from any cursor however old
    (a hub that rewrote its log is refused by the client, not silently re-fetched).
    """

    #: `SyncState.to_json()` after the last entry of the delta this checkpoint ends.
    sync_state: str = ""
    #: Entries of the hub's log verified so far (the next sequence number).
    log_size: int = 0
    #: Receipt time (seconds) of the newest entry seen, never going back: threatexchange's
    #: progress display, which asserts it never rewinds.
    progress_ts: int = 0
    #: Hash-set entries fetched that threatexchange has no installed type for, so far
    #: (per hub hash type: sha1, photodna without an extension, ...).
    skipped: t.Dict[str, int] = field(default_factory=dict)
    #: Entry count of every hash set fetched (statement id -> entries), so that a retraction of a
    #: whole set deletes each of its entries' records.
    entry_counts: t.Dict[str, int] = field(default_factory=dict)
    #: Signing key id of every hash set fetched (statement id -> key id), so that a key
    #: declared compromised re-decides the sets it signed.
    signed_by: t.Dict[str, str] = field(default_factory=dict)
    #: Each member's latest verdict per entry key (confirmed, false_positive, disputed), as
    #: the opinions fetched say: the records' opinions.
    verdicts: t.Dict[str, t.Dict[str, str]] = field(default_factory=dict)
    #: Statement id -> `expires_at_ms` of the fetched sets that expire: the next fetch after
    #: that time deletes their records (expiry is a clock rule, nothing is logged for it).
    expiring: t.Dict[str, int] = field(default_factory=dict)

    def is_stale(self) -> bool:
        """Never: the cursor stays valid for as long as the hub's log does."""
        return False

    def get_progress_timestamp(self) -> t.Optional[int]:
        """Receipt time (seconds since the epoch) of the newest entry fetched."""
        return self.progress_ts or None


@dataclass
class CoalitionHubEntry(fetch_state.FetchedSignalMetadata):
    """One hash-set entry as fetched: its hash, who shared it, its state and its opinions.

    Keyed in fetch deltas by `"<statement id>:<entry index>"` (one record per entry, so a
    retraction or quarantine of one entry deletes exactly that record).
    """

    statement_id: str
    entry: int
    #: The member who shared it.
    issuer: str
    #: Hub hash type name (pdq, md5, sha256, ...).
    hash_type: str
    #: Signal string in threatexchange's form for the mapped signal type.
    signal: str
    quality: t.Optional[int] = None
    labels: t.List[str] = field(default_factory=list)
    #: Entry state (mapping.ALL_STATES) when fetched: only `active` and `disputed` are kept.
    state: str = "active"
    #: Member -> its latest verdict on this entry (confirmed, false_positive, disputed).
    verdicts: t.Dict[str, str] = field(default_factory=dict)
    #: The member that fetched it (decides which opinions are "mine").
    reader: str = ""
    #: Other entries holding the same signal (threatexchange indexes one record per signal).
    also: t.List["CoalitionHubEntry"] = field(default_factory=list)

    def get_as_opinions(self) -> t.Sequence[fetch_state.SignalOpinion]:
        """The issuer's sharing (a POSITIVE_CLASS opinion with the entry's labels as tags),
        then one opinion per member verdict (mapping.CATEGORY_BY_VERDICT)."""
        opinions = [
            fetch_state.SignalOpinion(
                self.issuer == self.reader,
                fetch_state.SignalOpinionCategory.POSITIVE_CLASS,
                set(self.labels),
            )
        ]
        for member, verdict in sorted(self.verdicts.items()):
            category = mapping.CATEGORY_BY_VERDICT.get(verdict)
            if category is not None:
                opinions.append(fetch_state.SignalOpinion(member == self.reader, category, set()))
        for other in self.also:
            opinions.extend(other.get_as_opinions())
        return opinions

    def __str__(self) -> str:
        """`POSITIVE_CLASS A1,video by acme (5f0c…:3)`: threatexchange's match line."""
        agg = self.get_as_aggregate_opinion()
        tags = ",".join(sorted(agg.tags))
        head = f"{agg.category.name} {tags}".rstrip()
        issuers = ",".join(sorted({self.issuer, *(o.issuer for o in self.also)}))
        return f"{head} by {issuers} ({self.statement_id[:12]}:{self.entry})"


def record_key(statement_id: str, entry: int) -> str:
    """The fetch-delta key of one entry."""
    return f"{statement_id}:{entry}"
