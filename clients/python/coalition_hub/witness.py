"""The coalition's witness policy (PROTOCOL.md §3.8) and C2SP tlog-cosignature/v1 lines: which
witnesses cosigned a checkpoint, which lines are forged, and whether the policy is met. The
policy comes only from the settings the replica replayed, never from the hub."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from coalition_hub.note import NoteError, split_note
from coalition_hub.wire import verify_ed25519

MAX_POLICY_BYTES = 16 * 1024
MAX_WITNESSES = 32
MAX_GROUPS = 32
#: Cosignature lines looked at per checkpoint (four per witness a policy may name).
MAX_COSIGNATURE_LINES = 4 * MAX_WITNESSES


class PolicyError(ValueError):
    """A witness policy text that does not parse (the message names the line)."""


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of a cosignature/v1 key: SHA-256(name || 0x0A || 0x04 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n\x04" + public_key).digest()[:4]


@dataclass(frozen=True)
class Witness:
    """A witness the policy names: its key name, raw ed25519 key and URL."""

    name: str
    public_key: bytes
    url: str

    @property
    def key_id(self) -> bytes:
        """Its cosignature key id."""
        return cosigner_key_id(self.name, self.public_key)


@dataclass(frozen=True)
class Policy:
    """A parsed witness policy."""

    witnesses: dict[str, Witness]
    #: group name -> (k, members); k = len(members) for `all`, 1 for `any`.
    groups: dict[str, tuple[int, tuple[str, ...]]]
    #: The quorum's witness or group name; None for `quorum none`.
    quorum: str | None

    def holds(self, name: str, cosigners: set[str]) -> bool:
        """Whether a witness or group holds given the witnesses whose cosignature verified."""
        if name in self.witnesses:
            return name in cosigners
        k, members = self.groups[name]
        return sum(1 for m in members if self.holds(m, cosigners)) >= k

    def met(self, cosigners: set[str]) -> bool:
        """Whether the quorum holds (`quorum none` always does)."""
        return self.quorum is None or self.holds(self.quorum, cosigners)


def parse_verifier_key_v4(text: str) -> tuple[str, bytes]:
    """(name, key) of a cosignature/v1 verifier key `<name>+<hex id>+<base64(0x04 || key)>`."""
    try:
        name, kid, b64 = text.split("+", 2)
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error) as e:
        raise PolicyError(f"not a witness verifier key: {text[:80]!r}") from e
    if len(raw) != 33 or raw[0] != 0x04 or cosigner_key_id(name, raw[1:]).hex() != kid:
        raise PolicyError(f"not a cosignature/v1 verifier key (0x04, its key id): {text[:80]!r}")
    return name, raw[1:]


def parse_policy(text: str) -> Policy | None:
    """The policy of a settings `witnesses` section; None for an empty (blank) text."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise PolicyError(f"larger than {MAX_POLICY_BYTES} bytes")
    witnesses: dict[str, Witness] = {}
    groups: dict[str, tuple[int, tuple[str, ...]]] = {}
    quorum: str | None = None
    seen_quorum = False
    lines = [(n, ln.split("#", 1)[0].split()) for n, ln in enumerate(text.split("\n"), start=1)]
    lines = [(n, w) for n, w in lines if w]
    if not lines:
        return None
    for n, words in lines:
        if seen_quorum:
            raise PolicyError(f"line {n}: the quorum line must be the last")
        if words[0] == "witness" and len(words) == 3:
            name, key = parse_verifier_key_v4(words[1])
            if name in witnesses or name in groups:
                raise PolicyError(f"line {n}: {name} defined twice")
            witnesses[name] = Witness(name, key, words[2])
        elif words[0] == "group" and len(words) >= 4:
            gname, k, members = words[1], words[2], tuple(words[3:])
            if gname in witnesses or gname in groups:
                raise PolicyError(f"line {n}: {gname} defined twice")
            if any(m not in witnesses and m not in groups for m in members) or len(set(members)) != len(members):
                raise PolicyError(f"line {n}: a member not defined before, or named twice")
            if k == "all":
                need = len(members)
            elif k == "any":
                need = 1
            elif k.isdigit() and 1 <= int(k) <= len(members):
                need = int(k)
            else:
                raise PolicyError(f"line {n}: k is a number 1..=members, all or any")
            groups[gname] = (need, members)
        elif words[0] == "quorum" and len(words) == 2:
            if words[1] != "none" and words[1] not in witnesses and words[1] not in groups:
                raise PolicyError(f"line {n}: quorum names {words[1]}, not defined")
            quorum = None if words[1] == "none" else words[1]
            seen_quorum = True
        else:
            raise PolicyError(f"line {n}: not a witness, group or quorum line")
    if not seen_quorum:
        raise PolicyError("no quorum line")
    if len(witnesses) > MAX_WITNESSES or len(groups) > MAX_GROUPS:
        raise PolicyError(f"at most {MAX_WITNESSES} witnesses and {MAX_GROUPS} groups")
    return Policy(witnesses, groups, quorum)


@dataclass
class WitnessReport:
    """What a checkpoint's cosignature lines show under the policy."""

    size: int
    #: Policy witnesses whose cosignature verified.
    cosigners: set[str] = field(default_factory=set)
    #: Policy witnesses named by a line that does not verify with their key (forged).
    forged: set[str] = field(default_factory=set)
    #: Newest verified cosignature time (Unix seconds), if any.
    newest: int | None = None
    met: bool = False


def check_cosignatures(policy: Policy, note: str, lines: Sequence[str], size: int) -> WitnessReport:
    """Checks each cosignature line against the policy: a line counts only if it names a
    policy witness with its key id and verifies over the checkpoint's text; a line naming a
    policy witness that does not verify is forged; lines of other keys are ignored."""
    try:
        text, _ = split_note(note)
    except NoteError:
        return WitnessReport(size)
    report = WitnessReport(size)
    for line in list(lines)[:MAX_COSIGNATURE_LINES]:
        line = line.rstrip("\n")
        if not line.startswith("\u2014 ") or "\n" in line:
            continue
        parts = line[2:].split(" ")
        if len(parts) != 2 or parts[0] not in policy.witnesses:
            continue
        w = policy.witnesses[parts[0]]
        try:
            raw = base64.b64decode(parts[1], validate=True)
        except binascii.Error:
            report.forged.add(w.name)
            continue
        ts = int.from_bytes(raw[4:12], "big") if len(raw) == 76 else 0
        message = f"cosignature/v1\ntime {ts}\n".encode() + text.encode()
        # Another key under the witness's name, a bad signature, a line over another checkpoint:
        # all forged (§3.8).
        if len(raw) == 76 and raw[:4] == w.key_id and 1 <= ts < 2**63 and verify_ed25519(w.public_key, raw[12:], message):
            report.cosigners.add(w.name)
            report.newest = max(report.newest or 0, ts)
        else:
            report.forged.add(w.name)
    report.met = policy.met(report.cosigners)
    return report
