"""Statements: building and signing them canonically (§2.1), and the field rules (§2.3) a
reader checks on what it receives."""

from __future__ import annotations

import hashlib
import os
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from coalition_hub.keys import SigningKey
from coalition_hub.model import HASH_LENGTHS, MAX_VPDQ_FRAMES, HashInput, HashType, IndicatorInput, Kind, VerifiedHash
from coalition_hub.pb import statement as spb
from coalition_hub.wire import PAYLOAD_TYPE, pae, valid_key_id, weak_key

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_HASH_ENTRIES = 100_000
MAX_LABELS = 256
MAX_RECIPIENTS = 64
_MEMBER_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
_CATEGORIES = {"A1", "A2", "B1", "B2"}
_TYPE_NAMES = {1: "md5", 2: "sha1", 3: "sha256", 4: "pdq", 5: "photodna", 6: "url_md5", 7: "vpdq"}
_INDICATOR_NAMES = {1: "keyword", 2: "url", 3: "domain", 4: "account_handle", 5: "hash"}
_BODY_KIND = {
    "hash_set": Kind.HASH_SET,
    "risk_signal": Kind.RISK_SIGNAL,
    "genesis": Kind.GENESIS,
    "membership": Kind.MEMBERSHIP,
    "settings": Kind.SETTINGS,
    "retraction": Kind.RETRACTION,
    "opinion": Kind.OPINION,
}


class FieldError(ValueError):
    """A field that breaks a rule of §2.3 (the message names the field)."""


def valid_member_id(member: str) -> bool:
    """`[a-z0-9][a-z0-9-]{0,62}` (§1); a federated `member@hub` is accepted in recipients."""
    return bool(_MEMBER_RE.match(member))


_label_cache: dict[str, str] = {}


def canonical_label(label: str) -> str:
    """A label's canonical spelling (categories upper case), or FieldError."""
    c = _label_cache.get(label)
    if c is not None:
        return c
    up = label.upper()
    if up in _CATEGORIES:
        c = up
    elif _TAG_RE.match(label):
        c = label
    else:
        raise FieldError(f"label {label!r} is neither a category (A1, A2, B1, B2) nor a tag [a-z0-9][a-z0-9_.:-]{{0,63}}")
    if len(_label_cache) < 65536:
        _label_cache[label] = c
    return c


def body_kind(body: spb.StatementBody) -> Kind | None:
    """The kind the body's oneof names."""
    which = body.WhichOneof("body")
    return _BODY_KIND.get(which) if which else None


def _check_hash(entry: spb.HashEntry, index: int, where: str, types: set[int], labels: set[str]) -> VerifiedHash:
    """One HashEntry's field rules; its public view (labels in canonical spelling)."""
    t = entry.type
    value = entry.value
    length = HASH_LENGTHS.get(t)
    if length is None:
        raise FieldError(f"{where.format(index)}.type: unknown or unspecified hash type {t}")
    if t == 7:
        problem = check_vpdq_value(value)
        if problem:
            raise FieldError(f"{where.format(index)}.value: {problem}")
    elif len(value) != length:
        raise FieldError(f"{where.format(index)}.value: a {_TYPE_NAMES[t]} hash must be {length} bytes, got {len(value)}")
    quality = None
    if t == 4:
        if not entry.HasField("quality") or entry.quality > 100:
            raise FieldError(f"{where.format(index)}.quality: a pdq hash needs a quality 0..=100")
        quality = entry.quality
    elif entry.HasField("quality"):
        raise FieldError(f"{where.format(index)}.quality: only pdq hashes have a quality")
    types.add(t)
    ls = entry.labels
    canon: tuple[str, ...] = ()
    if ls:
        if len(ls) > 16:
            raise FieldError(f"{where.format(index)}.labels: at most 16")
        cache = _label_cache
        canon = tuple(cache.get(x) or canonical_label(x) for x in ls)
        if len(canon) > 1 and len(set(canon)) != len(canon):
            raise FieldError(f"{where.format(index)}.labels: a label given twice")
        labels.update(canon)
    return VerifiedHash(index, _TYPE_NAMES[t], value.hex(), quality, canon)


def check_vpdq_value(value: bytes) -> str | None:
    """A vpdq value's rules (§2.3.2): 1..=16384 frames of 41 bytes (frame number u32 BE,
    timestamp ms u32 BE, quality 0..=100, 32-byte PDQ), frame numbers strictly increasing,
    timestamps never decreasing. None if valid, else the reason."""
    if not value or len(value) % 41:
        return f"a vpdq hash is a whole number of 41-byte frames (at least one), got {len(value)} bytes"
    n = len(value) // 41
    if n > MAX_VPDQ_FRAMES:
        return f"a vpdq hash has at most {MAX_VPDQ_FRAMES} frames, got {n}"
    prev: tuple[int, int] | None = None
    for i in range(n):
        f = value[i * 41 : i * 41 + 41]
        number = int.from_bytes(f[0:4], "big")
        ts = int.from_bytes(f[4:8], "big")
        if f[8] > 100:
            return f"frame {i}: quality must be 0..=100, got {f[8]}"
        if prev is not None:
            if number <= prev[0]:
                return f"frame {i}: frame numbers must increase ({number} after {prev[0]})"
            if ts < prev[1]:
                return f"frame {i}: timestamps must not decrease ({ts} ms after {prev[1]} ms)"
        prev = (number, ts)
    return None


ROLE_ADMIN_VALUE = 1
_HUB_NAME_RE = re.compile(r"^[!-*,-~]+$")  # printable ASCII, no space, no '+'


MAX_ORIGINS = 64


def check_text(field: str, text: str, lo: int, hi: int) -> None:
    """A text field's rule (§2.1): `lo..=hi` characters (code points) and no control character
    but newline and tab."""
    if not lo <= len(text) <= hi:
        raise FieldError(f"{field}: must be {lo}..={hi} characters, got {len(text)}")
    if any(c not in "\n\t" and unicodedata.category(c) == "Cc" for c in text):
        raise FieldError(f"{field}: must not contain control characters")


def _is_domain(d: str) -> bool:
    """A lowercase DNS name with at least one dot: labels of 1..=63 of `a-z0-9-`, no hyphen
    at either end."""
    return "." in d and all(
        0 < len(label) <= 63
        and not label.startswith("-")
        and not label.endswith("-")
        and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in label)
        for label in d.split(".")
    )


def _check_indicator_value(ind: spb.Indicator, at: str) -> None:
    """A risk signal's non-hash indicator (§2.3): its value (and platform) by type."""
    if ind.HasField("hash"):
        raise FieldError(f"{at}.hash: only a hash indicator carries a hash")
    if ind.type != 4 and ind.platform:
        raise FieldError(f"{at}.platform: only an account_handle indicator carries a platform")
    if ind.type == 1:
        check_text(f"{at}.value", ind.value, 1, 200)
    elif ind.type == 2:
        check_text(f"{at}.value", ind.value, 1, 2048)
        lower = ind.value[:8].translate(_ASCII_LOWER)
        rest = ind.value[8:] if lower == "https://" else ind.value[7:] if lower[:7] == "http://" else ""
        if not rest or any(c.isspace() for c in ind.value):
            raise FieldError(f"{at}.value: must be an http:// or https:// URL without spaces")
    elif ind.type == 3:
        check_text(f"{at}.value", ind.value, 1, 253)
        if not _is_domain(ind.value):
            raise FieldError(f"{at}.value: {ind.value!r} is not a lowercase DNS name like example.com")
    elif ind.type == 4:
        check_text(f"{at}.platform", ind.platform, 1, 100)
        check_text(f"{at}.value", ind.value, 1, 200)
    else:
        raise FieldError(f"{at}.type: unknown or unspecified")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

MAX_MEMBER_QUOTAS = 1024


def check_quotas(q: spb.Quotas) -> None:
    """The `quotas` settings section's field rules (§2.5): at most 1,024 member overrides, by
    member id ascending, each once, each with its limits."""
    at = "settings.quotas.members"
    if len(q.members) > MAX_MEMBER_QUOTAS:
        raise FieldError(f"{at}: at most {MAX_MEMBER_QUOTAS} member overrides, got {len(q.members)}")
    last: str | None = None
    for i, m in enumerate(q.members):
        if not valid_member_id(m.member_id):
            raise FieldError(f"{at}[{i}].member_id: {m.member_id!r} is not a member id")
        if last is not None and last >= m.member_id:
            raise FieldError(f"{at}[{i}].member_id: member ids must be ascending, each once")
        if not m.HasField("limits"):
            raise FieldError(f"{at}[{i}].limits: missing: set the member's limits (0 is unlimited)")
        last = m.member_id


def check_federation(f: spb.FederationSettings) -> None:
    """The `federation` settings section's field rules (§2.5): origins by genesis id
    ascending, each once, at most 64; hub names as a genesis names them; relays ascending,
    each once, never the origin itself; each peer member the peer of one origin at most."""
    at = "settings.federation.origins"
    if len(f.origins) > MAX_ORIGINS:
        raise FieldError(f"{at}: at most {MAX_ORIGINS} origins, got {len(f.origins)}")
    last = b""
    peers: set[str] = set()
    for i, o in enumerate(f.origins):
        if len(o.genesis_id) != 32:
            raise FieldError(f"{at}[{i}].genesis_id: 32 bytes, got {len(o.genesis_id)}")
        if o.genesis_id <= last:
            raise FieldError(f"{at}[{i}].genesis_id: origins must be ascending by genesis id, each once")
        last = o.genesis_id
        if not 1 <= len(o.hub_name) <= 100 or not _HUB_NAME_RE.match(o.hub_name):
            raise FieldError(f"{at}[{i}].hub_name: 1..=100 printable ASCII characters, no spaces or '+'")
        if len(o.relayed_by) > MAX_ORIGINS:
            raise FieldError(f"{at}[{i}].relayed_by: at most {MAX_ORIGINS} relays, got {len(o.relayed_by)}")
        previous = b""
        for j, r in enumerate(o.relayed_by):
            if len(r) != 32:
                raise FieldError(f"{at}[{i}].relayed_by[{j}]: 32 bytes, got {len(r)}")
            if r == o.genesis_id or r <= previous:
                raise FieldError(f"{at}[{i}].relayed_by[{j}]: relays must be ascending, each once, and not the origin itself")
            previous = r
        if o.peer:
            if not valid_member_id(o.peer):
                raise FieldError(f"{at}[{i}].peer: {o.peer!r} is not a member id")
            if o.peer in peers:
                raise FieldError(f"{at}[{i}].peer: '{o.peer}' is the peer of another origin: one hub per peer member")
            peers.add(o.peer)


def check_admission(a: spb.Admission, where: str) -> None:
    """An Admission's field rules (§2.4)."""
    if not valid_member_id(a.member_id):
        raise FieldError(f"{where}.member_id: {a.member_id!r} is not a member id")
    check_text(f"{where}.display_name", a.display_name, 0, 200)
    roles = list(a.roles)
    if not roles or len(set(roles)) != len(roles) or any(not 1 <= r <= 4 for r in roles):
        raise FieldError(f"{where}.roles: at least one, each once, known")
    keys = [bytes(k) for k in a.public_keys]
    if len(keys) > 16 or len(set(keys)) != len(keys) or any(len(k) != 32 or weak_key(k) for k in keys):
        raise FieldError(f"{where}.public_keys: at most 16 distinct non-weak 32-byte ed25519 keys")
    if not keys and set(roles) != {3}:
        raise FieldError(f"{where}.public_keys: at least one unless the member is only an auditor")
    if any(len(p) != 32 for p in a.certificate_sha256):
        raise FieldError(f"{where}.certificate_sha256: 32 bytes each")


def _hash_set_entries(hs: spb.HashSet, hashes: list[VerifiedHash], types: set[int], labels: set[str]) -> None:
    """A hash set's entries through the message API: field rules checked, public views built."""
    # The hot loop of a sync (one pass per hash): the rules of _check_hash inline; an entry
    # that breaks one goes through _check_hash, which names it.
    append = hashes.append
    new_hash = tuple.__new__  # the named tuple without its Python-level __new__
    lengths = HASH_LENGTHS
    names = _TYPE_NAMES
    cache = _label_cache
    for i, e in enumerate(list(hs.entries)):
        t = e.type
        value = e.value
        if len(value) != lengths.get(t):
            _check_hash(e, i, "hash_set.entries[{}]", types, labels)
        has_q = e.HasField("quality")
        if t == 4:
            q = e.quality
            if not has_q or q > 100:
                _check_hash(e, i, "hash_set.entries[{}]", types, labels)
        elif has_q:
            _check_hash(e, i, "hash_set.entries[{}]", types, labels)
        else:
            q = None
        ls = e.labels
        if ls:
            canon = tuple([cache.get(x) or canonical_label(x) for x in ls])
            if len(canon) > 1 and (len(canon) > 16 or len(set(canon)) != len(canon)):
                _check_hash(e, i, "hash_set.entries[{}]", types, labels)
            labels.update(canon)
        else:
            canon = ()
        types.add(t)
        append(new_hash(VerifiedHash, (i, names[t], value.hex(), q, canon)))


_VALUE_LEN_BY_TYPE = (-1, 16, 20, 32, 32, 144, 16)


def _varint(b: bytes, p: int) -> tuple[int, int]:
    r = s = 0
    while True:
        x = b[p]
        p += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, p


def hash_set_entries_fast(raw: bytes) -> tuple[list[VerifiedHash], set[int], set[str]] | None:
    """A hash set's entries read straight from the body's canonical bytes (`StatementBody`
    field 10, `HashSet` field 2, each `HashEntry` as protobuf writes it: type, value, quality,
    labels), with every field rule of a hash entry checked. Returns None (the caller then uses
    the message API, which names what is wrong) for anything but a well-formed entry list,
    so it never accepts what :func:`_hash_set_entries` would refuse."""
    try:
        if raw[0] != 0x52:
            return None
        n, p = _varint(raw, 1)
        end = p + n
        if end != len(raw):
            return None
        if p < end and raw[p] == 0x0A:
            dl, p = _varint(raw, p + 1)
            p += dl
        out: list[VerifiedHash] = []
        types: set[int] = set()
        labels: set[str] = set()
        append = out.append
        new_hash = tuple.__new__
        names = _TYPE_NAMES
        lengths = _VALUE_LEN_BY_TYPE
        cache = _label_cache
        i = 0
        while p < end and raw[p] == 0x12:
            el = raw[p + 1]
            if el < 0x80:
                q = p + 2
            else:
                el, q = _varint(raw, p + 1)
            e_end = q + el
            if raw[q] != 0x08 or raw[q + 2] != 0x12:
                return None
            t = raw[q + 1]
            if not 1 <= t <= 6:  # vpdq (7) goes through _check_hash
                return None
            vl = raw[q + 3]
            if vl < 0x80:
                vp = q + 4
            else:
                vl, vp = _varint(raw, q + 3)
            if vl != lengths[t]:
                return None
            p2 = vp + vl
            value = raw[vp:p2]
            quality = None
            if p2 < e_end and raw[p2] == 0x18:
                quality = raw[p2 + 1]
                if t != 4 or quality > 100:
                    return None
                p2 += 2
            elif t == 4:
                return None
            canon: tuple[str, ...] = ()
            if p2 < e_end:
                found = []
                while p2 < e_end:
                    ll = raw[p2 + 1]
                    if raw[p2] != 0x22 or ll >= 0x80:
                        return None
                    text = raw[p2 + 2 : p2 + 2 + ll].decode()
                    found.append(cache.get(text) or canonical_label(text))
                    p2 += 2 + ll
                canon = tuple(found)
                if len(canon) > 16 or (len(canon) > 1 and len(set(canon)) != len(canon)):
                    return None
                labels.update(canon)
            if p2 != e_end:
                return None
            types.add(t)
            append(new_hash(VerifiedHash, (i, names[t], value.hex(), quality, canon)))
            i += 1
            p = e_end
        if p < end and raw[p] == 0x18:
            _, p = _varint(raw, p + 1)
        if p != end or not 1 <= i <= MAX_HASH_ENTRIES:
            return None
        return out, types, labels
    except (IndexError, UnicodeDecodeError, FieldError):
        return None


def check_header(h: spb.Statement) -> None:
    """Header field rules (§2.1, §2.3) that do not need the body."""
    if not valid_member_id(h.issuer):
        raise FieldError(f"issuer: {h.issuer!r} is not a member id")
    if not valid_key_id(h.key_id):
        raise FieldError("key_id: not 16 lowercase hex characters")
    if h.issued_at_ms <= 0:
        raise FieldError("issued_at_ms: must be > 0")
    if len(h.nonce) != 16:
        raise FieldError("nonce: must be 16 bytes")
    if h.kind not in Kind._value2member_map_:
        raise FieldError(f"kind: unknown or unspecified ({h.kind})")
    if len(h.body_sha256) != 32:
        raise FieldError("body_sha256: must be 32 bytes")
    if not 1 <= h.body_bytes <= MAX_BODY_BYTES:
        raise FieldError("body_bytes: must be 1..=16 MiB")
    ht = list(h.hash_types)
    if ht != sorted(set(ht)) or any(t not in HASH_LENGTHS for t in ht):
        raise FieldError("hash_types: not ascending, each once, known")
    labels = list(h.labels)
    if len(labels) > MAX_LABELS:
        raise FieldError(f"labels: more than {MAX_LABELS}")
    enc = [x.encode() for x in labels]
    if enc != sorted(set(enc)) or any(canonical_label(x) != x for x in labels):
        raise FieldError("labels: not canonical, ascending, each once")
    rec = list(h.recipients)
    if rec:
        if len(rec) > MAX_RECIPIENTS:
            raise FieldError(f"recipients: more than {MAX_RECIPIENTS}")
        renc = [r.encode() for r in rec]
        if renc != sorted(set(renc)) or h.issuer in rec:
            raise FieldError("recipients: not ascending, each once, never the issuer")
        if int(h.kind) not in (Kind.HASH_SET, Kind.RISK_SIGNAL, Kind.OPINION):
            raise FieldError(f"recipients: a {Kind(h.kind).name.lower()} statement cannot be restricted")
        if ht or labels:
            raise FieldError("hash_types / labels: a restricted header lists none")
    elif int(h.kind) in (Kind.GENESIS, Kind.MEMBERSHIP, Kind.SETTINGS, Kind.RETRACTION, Kind.OPINION) and (ht or labels):
        raise FieldError("hash_types / labels: empty for this kind")


def check_body(h: spb.Statement, body: spb.StatementBody, raw: bytes | None = None) -> tuple[VerifiedHash, ...]:
    """The body's field rules and that the header names it: kind, hash types, labels (§2.1).
    Digest and length are checked by the caller. Returns the hashes it holds (a hash set's
    entries, a risk signal's hash indicators), checked. `raw`: the body's bytes, already
    proven canonical (they re-encode from `body`): a hash set's entries are then read from
    them directly (:func:`hash_set_entries_fast`), which is faster than the message API."""
    kind = body_kind(body)
    if kind is None or int(kind) != int(h.kind):
        raise FieldError(f"kind: the header says {h.kind}, the body holds {body.WhichOneof('body')}")
    types: set[int] = set()
    labels: set[str] = set()
    hashes: list[VerifiedHash] = []
    if kind == Kind.HASH_SET:
        hs = body.hash_set
        n = len(hs.entries)
        if not 1 <= n <= MAX_HASH_ENTRIES:
            raise FieldError(f"hash_set.entries: 1..={MAX_HASH_ENTRIES}, got {n}")
        check_text("hash_set.description", hs.description, 0, 1000)
        if hs.HasField("expires_at_ms") and hs.expires_at_ms <= 0:
            raise FieldError("hash_set.expires_at_ms: must be > 0")
        fast = hash_set_entries_fast(raw) if raw is not None else None
        if fast is not None:
            hashes, types, labels = fast
        else:
            _hash_set_entries(hs, hashes, types, labels)
    elif kind == Kind.RISK_SIGNAL:
        rs = body.risk_signal
        if not 1 <= rs.category <= 5 or not 1 <= rs.severity <= 4:
            raise FieldError("risk_signal.category / severity: unspecified or unknown")
        check_text("risk_signal.title", rs.title, 1, 200)
        check_text("risk_signal.description", rs.description, 0, 10_000)
        if not 1 <= len(rs.indicators) <= 1000:
            raise FieldError("risk_signal.indicators: 1..=1000")
        if not 0 < rs.first_seen_ms <= rs.last_seen_ms:
            raise FieldError("risk_signal.first_seen_ms / last_seen_ms: 0 < first <= last")
        if rs.HasField("expires_at_ms") and rs.expires_at_ms <= rs.last_seen_ms:
            raise FieldError("risk_signal.expires_at_ms: must be after last_seen_ms")
        for i, ind in enumerate(rs.indicators):
            if ind.type == 5:
                if ind.value or not ind.HasField("hash"):
                    raise FieldError(f"risk_signal.indicators[{i}]: a hash indicator has a hash, no value")
                if ind.platform:
                    raise FieldError(f"risk_signal.indicators[{i}].platform: only an account_handle indicator carries a platform")
                hashes.append(_check_hash(ind.hash, i, "risk_signal.indicators[{}].hash", types, labels))
            else:
                _check_indicator_value(ind, f"risk_signal.indicators[{i}]")
    elif kind == Kind.GENESIS:
        g = body.genesis
        if not 1 <= len(g.hub_name) <= 100 or not _HUB_NAME_RE.match(g.hub_name):
            raise FieldError("genesis.hub_name: 1..=100 printable ASCII characters, no spaces or '+'")
        if len(g.hub_public_key) != 32 or weak_key(g.hub_public_key):
            raise FieldError("genesis.hub_public_key: a valid non-weak 32-byte ed25519 key")
        if not 1 <= len(g.admins) <= 16 or not 1 <= g.quorum <= len(g.admins):
            raise FieldError("genesis: 1..=16 admins and a quorum of 1..=admins")
        keys = [bytes(g.hub_public_key)]
        for i, a in enumerate(g.admins):
            check_admission(a, f"genesis.admins[{i}]")
            if ROLE_ADMIN_VALUE not in a.roles or not a.public_keys:
                raise FieldError(f"genesis.admins[{i}]: an admin role and at least one key")
            keys += [bytes(k) for k in a.public_keys]
        if len(set(keys)) != len(keys):
            raise FieldError("genesis: a key used twice (the hub key included)")
    elif kind == Kind.MEMBERSHIP:
        c = body.membership
        check_text("membership.reason", c.reason, 0, 1000)
        if c.WhichOneof("change") == "admit":
            check_admission(c.admit, "membership.admit")
    elif kind == Kind.SETTINGS:
        st = body.settings
        check_text("settings.reason", st.reason, 0, 1000)
        section = st.WhichOneof("section")
        if section == "federation":
            check_federation(st.federation)
        elif section == "quotas":
            check_quotas(st.quotas)
    elif kind == Kind.RETRACTION:
        r = body.retraction
        if len(r.statement_id) != 32:
            raise FieldError("retraction.statement_id: 32 bytes")
        es = list(r.entries)
        if es != sorted(set(es)):
            raise FieldError("retraction.entries: ascending, each once")
        check_text("retraction.reason", r.reason, 1, 1000)
        if r.erase and (not r.admin_quorum or es):
            raise FieldError("retraction.erase: an erasure is an admin-quorum retraction of the whole statement")
    elif kind == Kind.OPINION:
        o = body.opinion
        if len(o.statement_id) != 32:
            raise FieldError("opinion.statement_id: 32 bytes")
        if not 1 <= o.verdict <= 7:
            raise FieldError("opinion.verdict: unknown")
        if o.admin_quorum != (o.verdict in (5, 6)):
            raise FieldError("opinion.admin_quorum: true exactly for QUARANTINE and RELEASE")
        check_text("opinion.note", o.note, 0, 280)
        if h.recipients and o.verdict not in (4, 7):
            raise FieldError("recipients: a confirmed opinion cannot be restricted")
    if h.recipients:
        return tuple(hashes)  # a restricted header lists no hash types or labels
    if kind in (Kind.HASH_SET, Kind.RISK_SIGNAL):
        if list(h.hash_types) != sorted(types):
            raise FieldError("hash_types: not the body's hash types")
        if list(h.labels) != sorted(labels, key=str.encode):
            raise FieldError("labels: not the body's labels")
    return tuple(hashes)


def indicator_type_name(t: int) -> str:
    """keyword, url, domain, account_handle, hash."""
    return _INDICATOR_NAMES.get(t, str(t))


# --- building ------------------------------------------------------------------------------


def wire_enum(value: int) -> Any:
    """An enum value for a generated message's constructor (typed as the enum's ValueType)."""
    return int(value)


def hash_entry(h: HashInput) -> spb.HashEntry:
    """The protobuf HashEntry of a HashInput, its labels in canonical spelling."""
    t = HashType.parse(h.type)
    value = bytes.fromhex(h.value) if isinstance(h.value, str) else bytes(h.value)
    e = spb.HashEntry(type=wire_enum(t), value=value, labels=[canonical_label(x) for x in h.labels])
    if h.quality is not None:
        e.quality = h.quality
    return e


def sign_statement(
    issuer: str,
    key: SigningKey,
    body: spb.StatementBody,
    recipients: Sequence[str] = (),
    issued_at_ms: int | None = None,
    extra_signers: Iterable[SigningKey] = (),
) -> spb.Envelope:
    """Serializes `body` once, builds the header naming it (kind, hash types, labels, digest,
    length), checks both against the field rules, and signs the PAE with `key` (and any
    co-signers)."""
    body_bytes = body.SerializeToString(deterministic=True)
    kind = body_kind(body)
    if kind is None:
        raise FieldError("body: no statement in it")
    types: set[int] = set()
    labels: set[str] = set()
    if not recipients:
        entries: list[spb.HashEntry] = []
        if kind == Kind.HASH_SET:
            entries = list(body.hash_set.entries)
        elif kind == Kind.RISK_SIGNAL:
            entries = [i.hash for i in body.risk_signal.indicators if i.type == 5]
        for e in entries:
            types.add(e.type)
            labels.update(canonical_label(x) for x in e.labels)
    header = spb.Statement(
        issuer=issuer,
        key_id=key.key_id,
        issued_at_ms=issued_at_ms if issued_at_ms is not None else int(time.time() * 1000),
        nonce=os.urandom(16),
        kind=wire_enum(kind),
        hash_types=[wire_enum(t) for t in sorted(types)],
        labels=sorted(labels, key=str.encode),
        body_sha256=hashlib.sha256(body_bytes).digest(),
        body_bytes=len(body_bytes),
        recipients=sorted(recipients, key=str.encode),
    )
    check_header(header)
    check_body(header, body)
    payload = header.SerializeToString(deterministic=True)
    message = pae(PAYLOAD_TYPE, payload)
    signatures = [spb.Signature(key_id=key.key_id, sig=key.sign(message))]
    for k in extra_signers:
        if k.key_id != key.key_id:
            signatures.append(spb.Signature(key_id=k.key_id, sig=k.sign(message)))
    return spb.Envelope(payload_type=PAYLOAD_TYPE, payload=payload, signatures=signatures, body=body_bytes)


def hash_set_body(entries: Iterable[HashInput], description: str = "", expires_at_ms: int | None = None) -> spb.StatementBody:
    """A hash-set body."""
    hs = spb.HashSet(description=description, entries=[hash_entry(h) for h in entries])
    if expires_at_ms is not None:
        hs.expires_at_ms = expires_at_ms
    return spb.StatementBody(hash_set=hs)


_CATEGORY_VALUES = {"sextortion": 1, "grooming": 2, "csam_distribution": 3, "trafficking": 4, "other": 5}
_SEVERITY_VALUES = {"low": 1, "medium": 2, "high": 3, "critical": 4}
_INDICATOR_VALUES = {v: k for k, v in _INDICATOR_NAMES.items()}


def risk_signal_body(
    category: str,
    severity: str,
    title: str,
    indicators: Iterable[IndicatorInput],
    first_seen_ms: int,
    last_seen_ms: int,
    description: str = "",
    expires_at_ms: int | None = None,
) -> spb.StatementBody:
    """A risk-signal body (§2.3): category sextortion, grooming, csam_distribution,
    trafficking or other; severity low, medium, high or critical."""
    try:
        rs = spb.RiskSignal(
            category=wire_enum(_CATEGORY_VALUES[category]),
            severity=wire_enum(_SEVERITY_VALUES[severity]),
            title=title,
            description=description,
            first_seen_ms=first_seen_ms,
            last_seen_ms=last_seen_ms,
        )
        for ind in indicators:
            i = spb.Indicator(type=wire_enum(_INDICATOR_VALUES[ind.type]), value=ind.value, platform=ind.platform)
            if ind.hash is not None:
                i.hash.CopyFrom(hash_entry(ind.hash))
            rs.indicators.append(i)
    except KeyError as e:
        raise FieldError(f"risk_signal: unknown category, severity or indicator type {e}") from e
    if expires_at_ms is not None:
        rs.expires_at_ms = expires_at_ms
    return spb.StatementBody(risk_signal=rs)


def message_dict(message: Any) -> dict[str, Any]:
    """A protobuf message as a plain dict (bytes as lowercase hex), for `details`."""
    out: dict[str, Any] = {}
    for fd, value in message.ListFields():
        if fd.message_type is not None:
            if fd.is_repeated:
                out[fd.name] = [message_dict(v) for v in value]
            else:
                out[fd.name] = message_dict(value)
        elif fd.type == fd.TYPE_BYTES:
            out[fd.name] = [v.hex() for v in value] if fd.is_repeated else value.hex()
        elif fd.is_repeated:
            out[fd.name] = list(value)
        else:
            out[fd.name] = value
    return out
