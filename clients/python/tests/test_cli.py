"""`python -m coalition_hub`: whoami, submit, sync resumed from its state file, match."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hubprocess import Hub


def cli(hub: Hub, member: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coalition_hub", "--hub", hub.addr, "--certs", str(hub.certs), "--as", member, *args],
        capture_output=True, text=True, timeout=120,
    )


def test_cli_round_trip(hub: Hub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    me = cli(hub, "acme", "whoami")
    assert me.returncode == 0 and json.loads(me.stdout)["member_id"] == "acme"
    md5 = os.urandom(16).hex()
    (tmp_path / "h.csv").write_text(f"type,hash,labels,quality\nmd5,{md5},A1;tag-y\n")
    sub = cli(hub, "acme", "submit", "--hashes", str(tmp_path / "h.csv"))
    assert sub.returncode == 0, sub.stderr
    sid = json.loads(sub.stdout)["statement_id"]
    state = str(tmp_path / "state.json")
    first = cli(hub, "globex", "sync", "--state", state, "--genesis", hub.genesis)
    assert first.returncode == 0, first.stderr
    rows = [json.loads(x) for x in first.stdout.splitlines()]
    mine = next(r for r in rows if r["statement_id"] == sid)
    assert mine["hashes"] == [{"entry": 0, "type": "md5", "value": md5, "quality": None, "labels": ["A1", "tag-y"], "state": "active"}]
    again = cli(hub, "globex", "sync", "--state", state)
    assert again.returncode == 0 and again.stdout == ""
    hit = cli(hub, "globex", "match", f"md5:{md5}")
    assert hit.returncode == 0 and json.loads(hit.stdout.splitlines()[0])["statement_id"] == sid


def test_cli_error_is_one_line(hub: Hub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = cli(hub, "globex", "sync", "--state", str(tmp_path / "s.json"), "--genesis", "00" * 32)
    assert bad.returncode == 1 and bad.stderr.startswith("error: verification FAILED at entry 0")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_cli_filter_is_kept_and_another_refused(hub: Hub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = str(tmp_path / "state.json")
    first = cli(hub, "globex", "sync", "--state", state, "--hash-type", "pdq")
    assert first.returncode == 0, first.stderr
    assert all(r["kind"] != "hash_set" or "hashes" not in r or all(h["type"] == "pdq" for h in r["hashes"])
               for r in map(json.loads, first.stdout.splitlines()))
    other = cli(hub, "globex", "sync", "--state", state, "--hash-type", "md5")
    assert other.returncode == 1 and "another filter" in other.stderr
