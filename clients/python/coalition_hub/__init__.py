"""Coalition Hub client: mutual-TLS gRPC, signed statements, and a sync that verifies
everything the hub sends (docs/PROTOCOL.md). See clients/python/README.md.

The public API, kept stable for plugins (e.g. a ThreatExchange signal exchange):

- :class:`HubClient` — `whoami`, `submit_hashes`, `submit_risk_signal`, `submit_opinion`,
  `retract`, `match`, `sync`;
- :class:`SyncState` — the resumable position of a sync (`to_json` / `from_json`), with its
  :class:`SyncFilter`;
- :class:`VerifiedEntry` (with :class:`RelayOrigin` for a relayed statement),
  :class:`VerifiedHash`, :class:`RiskSignalFields`,
  :class:`EntryState`, :class:`Kind`, :class:`HashType`, :class:`HashInput`, :class:`Verdict`;
- :class:`SigningKey` — an ed25519 key (`from_pem_file`);
- :mod:`coalition_hub.errors` — :class:`VerificationError` and one subclass per replica rule.
"""

from coalition_hub.client import HubClient, MatchHit, MatchQuery, Receipt, WhoAmI
from coalition_hub.errors import CoalitionError, HubCallError, KeyFileError, VerificationError
from coalition_hub.keys import SigningKey
from coalition_hub.model import (
    EntryState,
    HashInput,
    HashType,
    IndicatorInput,
    Kind,
    RelayOrigin,
    RiskSignalFields,
    SyncFilter,
    Verdict,
    VerifiedEntry,
    VerifiedHash,
    VerifiedIndicator,
)
from coalition_hub.state import SyncState

__all__ = [
    "CoalitionError",
    "EntryState",
    "HashInput",
    "HashType",
    "HubCallError",
    "HubClient",
    "IndicatorInput",
    "KeyFileError",
    "Kind",
    "MatchHit",
    "MatchQuery",
    "Receipt",
    "RelayOrigin",
    "RiskSignalFields",
    "SigningKey",
    "SyncFilter",
    "SyncState",
    "Verdict",
    "VerificationError",
    "VerifiedEntry",
    "VerifiedHash",
    "VerifiedIndicator",
    "WhoAmI",
]
