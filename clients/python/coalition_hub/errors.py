"""Typed errors: what the client refuses, named after the replica rule it breaks (PROTOCOL.md §4)."""

from __future__ import annotations


class CoalitionError(Exception):
    """Base of every error this package raises."""


class HubCallError(CoalitionError):
    """A gRPC call failed: `code` is the gRPC status code name (e.g. "PERMISSION_DENIED")."""

    def __init__(self, rpc: str, code: str, message: str) -> None:
        super().__init__(f"{rpc}: {code}: {message}")
        self.rpc = rpc
        self.code = code
        self.message = message


class KeyFileError(CoalitionError):
    """A signing key or certificate file that cannot be read or is not what it should be."""


class VerificationError(CoalitionError):
    """The hub sent something that does not verify. `seq` is the entry (or checkpoint size)."""

    #: Short machine-readable name of the fault (the Rust `replica::Fault` it matches).
    fault = "Invalid"

    def __init__(self, where: str, what: str, seq: int | None = None) -> None:
        super().__init__(f"verification FAILED at {where}: {what}")
        self.where = where
        self.what = what
        self.seq = seq


def _fault(name: str, doc: str) -> type[VerificationError]:
    cls = type(name, (VerificationError,), {"fault": name, "__doc__": doc})
    return cls


# One class per replica fault (PROTOCOL.md §4), so callers can tell a lie from another.
NoEnvelope = _fault("NoEnvelope", "Rule 1: an entry without an envelope.")
InvalidEntry = _fault("InvalidEntry", "Rules 2, 4-6: payload type, signature shape, header or body invalid or not canonical.")
Altered = _fault("Altered", "Rule 3: the statement id is not SHA-256 of the PAE of the bytes received.")
Gap = _fault("Gap", "Rule 7: an entry is missing (a larger seq arrived).")
OutOfOrder = _fault("OutOfOrder", "Rule 7: an entry arrived at a smaller seq than expected.")
TimeWentBack = _fault("TimeWentBack", "Rule 8: the receipt time went backwards.")
Duplicate = _fault("Duplicate", "Rule 9: a statement id logged twice.")
VersionNotAnnounced = _fault("VersionNotAnnounced", "Rule 10: a newer protocol version the log has not announced.")
FromTheFuture = _fault("FromTheFuture", "Rule 11: issued more than 10 minutes after its receipt.")
WrongGenesis = _fault("WrongGenesis", "Rule 12: not the pinned genesis.")
WithheldMembership = _fault("WithheldMembership", "Rule 13: a governance or lifecycle statement came without its body.")
WithheldSelected = _fault("WithheldSelected", "Rule 13: a body this reader may read was withheld.")
FalseErasure = _fault("FalseErasure", "Rule 13a: a body withheld by a false erasure claim.")
NotEntitled = _fault("NotEntitled", "Rule 14: a signature by a key not entitled to sign the entry at its position.")
BadSignature = _fault("BadSignature", "Rules 15, 17: a signature that does not verify over the PAE.")
Refused = _fault("Refused", "Rule 16: a membership or settings change impossible in the state it applies to.")
CheckpointSignature = _fault("CheckpointSignature", "Rule 18: a checkpoint note not signed by the hub key in force.")
RetiredHubKey = _fault("RetiredHubKey", "Rule 18a: a checkpoint signed by a hub key retired before its size.")
NoHubKey = _fault("NoHubKey", "Rule 18: a checkpoint before any genesis.")
RootMismatch = _fault("RootMismatch", "Rules 19-20: the checkpoint's root is not the root of the entries replayed.")
SplitView = _fault("SplitView", "Rule 20: two signed checkpoints of one size with different roots (a fork).")
Inconsistent = _fault("Inconsistent", "Rule 20: a consistency proof that does not verify.")
Behind = _fault("Behind", "Rule 20 / §3.6: the server is behind what this replica verified (not by itself a fork).")
BadProgress = _fault("BadProgress", "§3.6: a SyncProgress whose next_seq is not the number of entries received.")
Unsupported = _fault("Unsupported", "Something this client does not verify yet (e.g. relayed entries): refused, never accepted unchecked.")
StateError = _fault("StateError", "A saved SyncState that does not load or does not match this hub.")
