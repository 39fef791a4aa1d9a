"""`python -m coalition_hub`: a small command line over the client.

    python -m coalition_hub [--hub ADDR] [--certs DIR] --as ID whoami
    python -m coalition_hub ... sync --state FILE [--genesis HEX] [--hash-type T]...   JSON Lines
    python -m coalition_hub ... submit --hashes FILE.csv [--description TEXT]
    python -m coalition_hub ... match TYPE:HEX [TYPE:HEX ...]

`--hub`, `--certs` and `--as` default to $COALITION_HUB (127.0.0.1:50051), $COALITION_CERTS
(certs) and $COALITION_MEMBER, as the Rust CLI. Errors are one line on stderr: exit 1 for a
refusal or a verification failure, 3 when the server is behind or unavailable (retry later).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence

from coalition_hub import errors as E
from coalition_hub.client import HubClient, MatchQuery
from coalition_hub.keys import SigningKey
from coalition_hub.model import HashInput, SyncFilter, VerifiedEntry
from coalition_hub.state import SyncState


def entry_json(e: VerifiedEntry) -> dict[str, object]:
    """One sync output row."""
    row: dict[str, object] = {
        "seq": e.seq,
        "statement_id": e.statement_id,
        "issuer": e.issuer,
        "kind": e.kind.name.lower(),
        "received_at_ms": e.received_at_ms,
        "has_body": e.has_body,
    }
    if e.origin is not None:
        row["origin"] = {"hub": e.origin.hub_name, "genesis": e.origin.genesis_id, "seq": e.origin.seq,
                         "received_at_ms": e.origin.received_at_ms}
    if e.recipients:
        row["recipients"] = list(e.recipients)
    if e.hashes:
        row["hashes"] = [
            {"entry": h.entry_index, "type": h.type, "value": h.value_hex, "quality": h.quality,
             "labels": list(h.labels), "state": e.state(h.entry_index).name.lower()}
            for h in e.hashes
        ]
    if e.risk_signal is not None:
        row["risk_signal"] = {"category": e.risk_signal.category, "severity": e.risk_signal.severity,
                              "title": e.risk_signal.title, "indicators": len(e.risk_signal.indicators)}
    if e.details is not None:
        row["details"] = e.details
    return row


def save(state: SyncState, path: str) -> None:
    """Writes the state to a temporary file, fsyncs it and renames it over `path`."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(state.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_hashes(path: str) -> list[HashInput]:
    """A CSV hash list as the Rust CLI reads it: type,hash,labels[,quality] with a header."""
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].strip().lower() == "type":
                continue
            labels = tuple(x for x in (row[2].split(";") if len(row) > 2 else []) if x)
            quality = int(row[3]) if len(row) > 3 and row[3].strip() else None
            try:
                out.append(HashInput(row[0].strip(), bytes.fromhex(row[1].strip()), quality, labels))
            except (ValueError, KeyError) as e:
                raise E.CoalitionError(f"{path}:{n}: {e}") from e
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m coalition_hub", description="Coalition Hub client (verifying sync)")
    p.add_argument("--hub", default=os.environ.get("COALITION_HUB", "127.0.0.1:50051"))
    p.add_argument("--certs", default=os.environ.get("COALITION_CERTS", "certs"))
    p.add_argument("--as", dest="member", default=os.environ.get("COALITION_MEMBER"))
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("whoami")
    s = sub.add_parser("sync")
    s.add_argument("--state", required=True, help="JSON state file: created on first use, resumed after")
    s.add_argument("--genesis", help="pin the genesis statement id (hex) on first use")
    s.add_argument("--kind", action="append", default=[], help="filter (first run): statement kind, e.g. hash_set")
    s.add_argument("--hash-type", action="append", default=[], help="filter (first run): md5, sha1, sha256, pdq, photodna, url_md5, vpdq")
    s.add_argument("--label", action="append", default=[], help="filter (first run): a label, e.g. A1")
    s.add_argument("--issuer", action="append", default=[], help="filter (first run): a member id")
    s.add_argument("--require-witnessed", action="store_true", help="refuse a checkpoint the witness policy does not cover")
    u = sub.add_parser("submit")
    u.add_argument("--hashes", required=True)
    u.add_argument("--description", default="")
    m = sub.add_parser("match")
    m.add_argument("queries", nargs="+", metavar="TYPE:HEX")
    a = p.parse_args(argv)
    if not a.member:
        p.error("--as ID (or $COALITION_MEMBER) is required")
    try:
        with HubClient.from_certs_dir(a.hub, a.certs, a.member) as c:
            if a.command == "whoami":
                print(json.dumps(c.whoami().__dict__))
            elif a.command == "submit":
                key = SigningKey.from_pem_file(os.path.join(a.certs, "members", f"{a.member}.sign.key"))
                print(json.dumps(c.submit_hashes(key, read_hashes(a.hashes), a.description).__dict__))
            elif a.command == "match":
                qs = [MatchQuery(*q.split(":", 1)) for q in a.queries]
                for hit in c.match(qs):
                    print(json.dumps({**hit.__dict__, "state": hit.state.name.lower()}))
            else:
                wanted = SyncFilter(a.kind, a.hash_type, a.label, a.issuer)
                state = SyncState(genesis=a.genesis, filter=wanted)
                if os.path.exists(a.state):
                    with open(a.state, encoding="utf-8") as f:
                        state = SyncState.from_json(f.read())
                    if wanted != SyncFilter() and wanted != state.filter:
                        raise E.CoalitionError(f"{a.state} was started with another filter ({state.filter.to_dict()}): resuming with another one is refused")
                try:
                    for e in c.sync(state, require_witnessed=a.require_witnessed):
                        sys.stdout.write(json.dumps(entry_json(e)) + "\n")
                    sys.stdout.flush()
                finally:
                    save(state, a.state)
                print(f"verified and proven {state.size} entries; genesis {state.genesis}", file=sys.stderr)
                w = state.witness
                if w is not None:
                    who = ", ".join(w["cosigners"]) or "no witness"
                    verdict = "met" if w["met"] else "NOT met"
                    forged = f"; forged lines naming {', '.join(w['forged'])}" if w["forged"] else ""
                    print(f"witnesses: checkpoint {w['size']} cosigned by {who}; the policy is {verdict}{forged}", file=sys.stderr)
    except E.Behind as e:
        print(f"error: the server is behind: {e}; retry later or sync from another server", file=sys.stderr)
        return 3
    except E.HubCallError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3 if e.code == "UNAVAILABLE" else 1
    except (E.CoalitionError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
