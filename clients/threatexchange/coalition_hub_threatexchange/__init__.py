"""A Coalition Hub as a `threatexchange` signal exchange (the library Meta's
Hasher-Matcher-Actioner builds on): `threatexchange config extensions add
coalition_hub_threatexchange`, then `config collab edit coalition_hub`, `fetch`, `match`.

Everything the hub sends is verified by the Python client `coalition_hub` (signatures,
membership replay, proofs against signed checkpoints); see README.md for the mappings.
"""

from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest

from coalition_hub_threatexchange.api import CoalitionHubSignalExchangeAPI, ReportError
from coalition_hub_threatexchange.config import (
    API_NAME,
    CoalitionHubCheckpoint,
    CoalitionHubCollabConfig,
    CoalitionHubEntry,
)

#: What threatexchange loads from this module (`config extensions add`): one exchange API.
TX_MANIFEST = ThreatExchangeExtensionManifest(apis=(CoalitionHubSignalExchangeAPI,))

__all__ = [
    "API_NAME",
    "CoalitionHubCheckpoint",
    "CoalitionHubCollabConfig",
    "CoalitionHubEntry",
    "CoalitionHubSignalExchangeAPI",
    "ReportError",
    "TX_MANIFEST",
]
