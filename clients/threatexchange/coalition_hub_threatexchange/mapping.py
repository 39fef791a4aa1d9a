"""The mapping tables between Coalition Hub and threatexchange: hash types to signal types,
entry states to deletions, opinion verdicts to opinion categories (pure functions, no I/O).

Every table here is also in README.md ("Mapping"); a test checks them line by line.
"""

import typing as t

from threatexchange.exchanges.fetch_state import SignalOpinionCategory
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.sha256 import VideoSHA256Signal
from threatexchange.signal_type.signal_base import SignalType
from threatexchange.signal_type.url_md5 import UrlMD5Signal

#: Hub hash type name (docs/PROTOCOL.md, `HashType` in lower case) -> threatexchange signal type
#: name. A hub type missing here (SKIPPED_HASH_TYPES, or one newer than this table) or whose
#: signal type the host has not installed (photodna without a PhotoDNA extension) is skipped
#: and counted, never guessed.
SIGNAL_TYPE_BY_HASH_TYPE: t.Mapping[str, str] = {
    "pdq": PdqSignal.get_name(),  # "pdq"
    "md5": VideoMD5Signal.get_name(),  # "video_md5": threatexchange's only MD5 type
    "sha256": VideoSHA256Signal.get_name(),  # "video_sha256"
    "url_md5": UrlMD5Signal.get_name(),  # "url_md5" (ThreatExchange URL-MD5)
    "photodna": "photodna",  # only with a PhotoDNA extension installed
}

#: Hub hash types deliberately not mapped, and why: their entries are skipped (counted in the
#: checkpoint's `skipped`) even if the host has a signal type of that name, since the hub's
#: value is not that signal type's signal string.
SKIPPED_HASH_TYPES: t.Mapping[str, str] = {
    "sha1": "threatexchange has no SHA-1 signal type",
    "vpdq": (
        "threatexchange 1.2.17's vPDQ signal type (threatexchange.extensions.vpdq) needs the "
        "native `vpdq` package, and its signal string (JSON of 'pdq,quality,seconds' frames) "
        "is not the hub's binary frames: not mapped"
    ),
}

#: Entry states (docs/PROTOCOL.md §4.3) that stay in threatexchange's copy. Every other state
#: (quarantined, retracted, compromised, expired, erased) is a deletion: what the hub's Match
#: and `coalition sync --snapshot` leave out is what a fetch removes.
KEPT_STATES: t.FrozenSet[str] = frozenset({"active", "disputed"})

#: Every entry state the hub defines, in its precedence order (§4.3).
ALL_STATES: t.Tuple[str, ...] = (
    "erased",
    "retracted",
    "compromised",
    "quarantined",
    "expired",
    "disputed",
    "active",
)

#: A member's opinion verdict on an entry -> the threatexchange category it becomes.
#: `disputed` ("it is doubtful") becomes INVESTIGATION_SEED: threatexchange's "needs
#: verifying" class; its DISPUTED exists only as an aggregate, which threatexchange derives by
#: itself when NEGATIVE_CLASS meets a positive opinion. `seen` and `withdrawn` carry no
#: verdict and add no opinion.
CATEGORY_BY_VERDICT: t.Mapping[str, SignalOpinionCategory] = {
    "confirmed": SignalOpinionCategory.POSITIVE_CLASS,
    "false_positive": SignalOpinionCategory.NEGATIVE_CLASS,
    "disputed": SignalOpinionCategory.INVESTIGATION_SEED,
}

#: threatexchange opinion category -> the verdict `report_opinion` signs (the inverse of
#: CATEGORY_BY_VERDICT).
VERDICT_BY_CATEGORY: t.Mapping[SignalOpinionCategory, str] = {
    category: verdict for verdict, category in CATEGORY_BY_VERDICT.items()
}


def signal_type_for(
    hash_type: str, supported: t.Sequence[t.Type[SignalType]]
) -> t.Optional[t.Type[SignalType]]:
    """The installed signal type a hub hash type maps to, or None (skip and count it)."""
    name = SIGNAL_TYPE_BY_HASH_TYPE.get(normalize_hash_type(hash_type))
    if name is None:
        return None
    return next((st for st in supported if st.get_name() == name), None)


def skip_reason(hash_type: str, supported: t.Sequence[t.Type[SignalType]]) -> t.Optional[str]:
    """Why entries of this hub hash type are skipped with these signal types installed, or
    None if they are not (it maps to one of them)."""
    name = normalize_hash_type(hash_type)
    if name in SKIPPED_HASH_TYPES:
        return SKIPPED_HASH_TYPES[name]
    signal_name = SIGNAL_TYPE_BY_HASH_TYPE.get(name)
    if signal_name is None:
        return f"no threatexchange signal type is known for hub hash type {name!r}"
    if signal_type_for(name, supported) is None:
        return f"its signal type {signal_name!r} is not installed"
    return None


def hash_type_for(signal_type: t.Type[SignalType]) -> t.Optional[str]:
    """The hub hash type of a threatexchange signal type (the inverse table), or None."""
    name = signal_type.get_name()
    return next((h for h, s in SIGNAL_TYPE_BY_HASH_TYPE.items() if s == name), None)


def normalize_hash_type(hash_type: str) -> str:
    """`PDQ`, `url-md5`, `HASH_TYPE_URL_MD5` -> `pdq`, `url_md5`, `url_md5`."""
    name = hash_type.strip().lower().replace("-", "_")
    if name.startswith("hash_type_"):
        name = name[len("hash_type_") :]
    return name


def signal_value(hash_type: str, value_hex: str) -> str:
    """The hub's hex value as the signal string threatexchange expects for that type.

    Hex hashes stay lower-case hex; a PhotoDNA value (144 opaque bytes) becomes the
    comma-separated decimal form NCMEC and the PhotoDNA extension use.
    """
    value_hex = value_hex.strip().lower()
    if normalize_hash_type(hash_type) == "photodna":
        return ",".join(str(b) for b in bytes.fromhex(value_hex))
    return value_hex


def hub_value(hash_type: str, signal: str) -> str:
    """A threatexchange signal string as the hub's lower-case hex value (inverse of
    signal_value)."""
    if normalize_hash_type(hash_type) == "photodna":
        return bytes(int(p) for p in signal.split(",")).hex()
    return signal.strip().lower()


def is_deletion(state: str) -> bool:
    """True if an entry in this state must leave threatexchange's copy."""
    return normalize_state(state) not in KEPT_STATES


def normalize_state(state: str) -> str:
    """`ENTRY_STATE_ACTIVE`, `Active` -> `active`."""
    name = state.strip().lower()
    if name.startswith("entry_state_"):
        name = name[len("entry_state_") :]
    return name


def normalize_verdict(verdict: str) -> str:
    """`OPINION_VERDICT_FALSE_POSITIVE`, `false-positive` -> `false_positive`."""
    name = verdict.strip().lower().replace("-", "_")
    if name.startswith("opinion_verdict_"):
        name = name[len("opinion_verdict_") :]
    return name
