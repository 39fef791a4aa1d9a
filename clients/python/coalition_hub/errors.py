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


# One class per replica fault (PROTOCOL.md §4), so callers can tell a lie from another.


class NoEnvelope(VerificationError):
    """Rule 1: an entry without an envelope."""

    fault = "NoEnvelope"


class InvalidEntry(VerificationError):
    """Rules 2, 4-6: payload type, signature shape, header or body invalid or not canonical."""

    fault = "InvalidEntry"


class Altered(VerificationError):
    """Rule 3: the statement id is not SHA-256 of the PAE of the bytes received."""

    fault = "Altered"


class Gap(VerificationError):
    """Rule 7: an entry is missing (a larger seq arrived)."""

    fault = "Gap"


class OutOfOrder(VerificationError):
    """Rule 7: an entry arrived at a smaller seq than expected."""

    fault = "OutOfOrder"


class TimeWentBack(VerificationError):
    """Rule 8: the receipt time went backwards."""

    fault = "TimeWentBack"


class Duplicate(VerificationError):
    """Rule 9: a statement id logged twice."""

    fault = "Duplicate"


class VersionNotAnnounced(VerificationError):
    """Rule 10: a newer protocol version the log has not announced."""

    fault = "VersionNotAnnounced"


class FromTheFuture(VerificationError):
    """Rule 11: issued more than 10 minutes after its receipt."""

    fault = "FromTheFuture"


class WrongGenesis(VerificationError):
    """Rule 12: not the pinned genesis."""

    fault = "WrongGenesis"


class WithheldMembership(VerificationError):
    """Rule 13: a governance or lifecycle statement came without its body."""

    fault = "WithheldMembership"


class WithheldSelected(VerificationError):
    """Rule 13: a body this reader may read was withheld."""

    fault = "WithheldSelected"


class FalseErasure(VerificationError):
    """Rule 13a: a body withheld by a false erasure claim."""

    fault = "FalseErasure"


class NotEntitled(VerificationError):
    """Rule 14: a signature by a key not entitled to sign the entry at its position."""

    fault = "NotEntitled"


class BadSignature(VerificationError):
    """Rules 15, 17: a signature that does not verify over the PAE."""

    fault = "BadSignature"


class Refused(VerificationError):
    """Rule 16: a membership or settings change impossible in the state it applies to."""

    fault = "Refused"


class CheckpointSignature(VerificationError):
    """Rule 18: a checkpoint note not signed by the hub key in force."""

    fault = "CheckpointSignature"


class RetiredHubKey(VerificationError):
    """Rule 18a: a checkpoint signed by a hub key retired before its size."""

    fault = "RetiredHubKey"


class UnknownHubKey(VerificationError):
    """Rule 18a: a checkpoint beyond the entries replayed that no known hub key verifies (a
    rotation not replayed yet may name its key); the sync proves the batch with the next one."""

    fault = "UnknownHubKey"


class ForgedCosignature(VerificationError):
    """§3.8: a cosignature line naming a witness of the policy that does not verify with its key."""

    fault = "ForgedCosignature"


class NotWitnessed(VerificationError):
    """§3.8, strict mode: the checkpoint's cosignatures do not meet the coalition's policy."""

    fault = "NotWitnessed"


class NoHubKey(VerificationError):
    """Rule 18: a checkpoint before any genesis."""

    fault = "NoHubKey"


class RootMismatch(VerificationError):
    """Rules 19-20: the checkpoint's root is not the root of the entries replayed."""

    fault = "RootMismatch"


class SplitView(VerificationError):
    """Rule 20: two signed checkpoints of one size with different roots (a fork)."""

    fault = "SplitView"


class Inconsistent(VerificationError):
    """Rule 20: a consistency proof that does not verify."""

    fault = "Inconsistent"


class Behind(VerificationError):
    """Rule 20 / §3.6: the server is behind what this replica verified (not by itself a fork)."""

    fault = "Behind"


class BadProgress(VerificationError):
    """§3.6: a SyncProgress whose next_seq is not the number of entries received."""

    fault = "BadProgress"


class UntrustedOrigin(VerificationError):
    """Rule 22: a relayed statement whose origin genesis the settings replayed so far do not
    trust (or this log's own genesis)."""

    fault = "UntrustedOrigin"


class RelayEvidence(VerificationError):
    """Rules 22, 24, 25: a relay's provenance or evidence is malformed (an origin genesis or a
    proof hash that is not 32 bytes, a gap leaf of the wrong length or standing for a statement
    this log does not hold, an origin that does not start with its genesis, an origin hub name
    other than the trusted one, an erasure claim on the relayed entry itself, consistency
    proofs not the ones the origin's replica needs)."""

    fault = "RelayEvidence"


class Relayed(VerificationError):
    """Rules 24, 25: the origin's own log, rebuilt from the relayed statements and gap leaves,
    refuses this relayed entry (or the origin checkpoint it carries). `hub` is the origin's hub
    name and `error` the origin replica's refusal, located in the origin's log."""

    fault = "Relayed"

    def __init__(self, where: str, hub: str, error: VerificationError, seq: int | None = None) -> None:
        super().__init__(where, f"relayed from '{hub}', whose log refuses it there: {error.where}: {error.what}", seq)
        self.hub = hub
        self.error = error


class RelayUnproven(VerificationError):
    """Rule 26: when the hub says it sent everything, statements relayed from an origin that no
    accepted origin checkpoint proves: the relay withheld the origin's checkpoint."""

    fault = "RelayUnproven"


class Unsupported(VerificationError):
    """Something this client does not verify: refused, never accepted unchecked."""

    fault = "Unsupported"


class StateError(VerificationError):
    """A saved SyncState that does not load or does not match this hub."""

    fault = "StateError"
