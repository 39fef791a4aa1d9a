"""C2SP signed notes and tlog checkpoints (PROTOCOL.md §3.3): parse, verify with a hub key."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from coalition_hub.wire import verify_ed25519


class NoteError(ValueError):
    """A note that does not parse or does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's body: origin, tree size, root hash; and the note it came from."""

    origin: str
    size: int
    root: bytes
    note: str


def note_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an ed25519 note key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """`<name>+<8 hex key id>+<base64(0x01 || key)>` (golang.org/x/mod/sumdb/note)."""
    encoded = base64.b64encode(b"\x01" + public_key).decode()
    return f"{name}+{note_key_id(name, public_key).hex()}+{encoded}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes]:
    """(name, raw public key) of a verifier key string; checks its key id."""
    try:
        name, kid_hex, b64 = vkey.split("+", 2)  # names hold no "+"; base64 may
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error) as e:
        raise NoteError(f"not a verifier key: {vkey!r}") from e
    if len(raw) != 33 or raw[0] != 1:
        raise NoteError("a verifier key holds 0x01 and a 32-byte ed25519 key")
    if note_key_id(name, raw[1:]).hex() != kid_hex:
        raise NoteError("the verifier key's key id is not the hash of its name and key")
    return name, raw[1:]


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """(signed text, [(key name, base64-decoded signature)]) of a signed note."""
    text, sep, sigs = note.rpartition("\n\n")
    if not sep or not note.endswith("\n"):
        raise NoteError("not a signed note (no blank line before the signatures, or no final newline)")
    text += "\n"
    lines = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise NoteError(f"not a signature line: {line[:60]!r}")
        parts = line[2:].split(" ")
        if len(parts) != 2:
            raise NoteError(f"not a signature line: {line[:60]!r}")
        try:
            lines.append((parts[0], base64.b64decode(parts[1], validate=True)))
        except binascii.Error as e:
            raise NoteError("a signature line's signature is not base64") from e
    return text, lines


def parse_checkpoint_text(text: str, note: str) -> Checkpoint:
    """Origin, size and root of a checkpoint body (`origin\\nsize\\nbase64 root\\n...`)."""
    lines = text.split("\n")
    if len(lines) < 4:
        raise NoteError("a checkpoint has an origin, a size and a root line")
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
        raise NoteError(f"checkpoint size {size_s!r} is not a decimal without leading zeros")
    try:
        root = base64.b64decode(root_s, validate=True)
    except binascii.Error as e:
        raise NoteError("checkpoint root is not base64") from e
    if len(root) != 32:
        raise NoteError("checkpoint root is not 32 bytes")
    return Checkpoint(origin, int(size_s), root, note)


def head(note: str) -> Checkpoint:
    """The checkpoint a note states, signatures unchecked."""
    text, _ = split_note(note)
    return parse_checkpoint_text(text, note)


def verify_checkpoint(note: str, name: str, public_key: bytes) -> Checkpoint:
    """Verifies a checkpoint note with the hub key `public_key` under key name `name` (§3.3):
    a signature line of that name and key id verifies, none of them fails, the origin is the
    name. Lines of other keys (witness cosignatures) are ignored."""
    text, sigs = split_note(note)
    kid = note_key_id(name, public_key)
    found = False
    for line_name, sig in sigs:
        if line_name != name or sig[:4] != kid:
            continue
        if len(sig) != 68 or not verify_ed25519(public_key, sig[4:], text.encode()):
            raise NoteError(f"a signature by {name}+{kid.hex()} does not verify")
        found = True
    if not found:
        raise NoteError(f"no signature by the hub key {name}+{kid.hex()}")
    cp = parse_checkpoint_text(text, note)
    if cp.origin != name:
        raise NoteError(f"the origin line {cp.origin!r} is not the hub name {name!r}")
    return cp


def signed_by_key(note: str, name: str, public_key: bytes) -> bool:
    """Whether the note carries a verifying signature line of this key (for rule 18a)."""
    try:
        verify_checkpoint(note, name, public_key)
    except NoteError:
        return False
    return True
