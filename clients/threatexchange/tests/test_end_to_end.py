"""End to end: a real hub on loopback, hashes shared with the Rust CLI (`coalition submit`) as
acme, and the real `threatexchange` CLI from PyPI (a subprocess with its state in a temporary
directory) as globex: extension, collab, fetch, match, retractions, opinions reported back.
"""

import os
import pathlib
import pickle
import random
import re
import shutil
import subprocess
import sys
import time
import typing as t

import pytest

from coalition_hub import HubClient, Kind
from threatexchange.exchanges.auth import SignalExchangeAPIInvalidAuthException
from threatexchange.exchanges.fetch_state import SignalOpinion, SignalOpinionCategory
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.url_md5 import UrlMD5Signal

from coalition_hub_threatexchange import CoalitionHubCollabConfig, CoalitionHubSignalExchangeAPI, ReportError

COLLAB = "Coalition"

rng = random.Random(14)
#: Four PDQ hashes far apart (random 256-bit values differ in ~128 bits), one MD5, one SHA-256,
#: one SHA-1 (threatexchange has no SHA-1 type: skipped and counted).
PDQ = [f"{rng.getrandbits(256):064x}" for _ in range(4)]
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
UNRELATED = f"{int(PDQ[0], 16) ^ ((1 << 256) - 1):064x}"  # every bit of PDQ[0] flipped


def near(pdq: str, bits: int = 5) -> str:
    """`pdq` with its lowest `bits` bits flipped: a near-duplicate within PDQ's threshold."""
    return f"{int(pdq, 16) ^ ((1 << bits) - 1):064x}"


def threatexchange_cli() -> t.List[str]:
    """The `threatexchange` console script installed next to this Python."""
    script = pathlib.Path(sys.executable).parent / "threatexchange"
    if script.is_file():
        return [str(script)]
    found = shutil.which("threatexchange")
    assert found, "the threatexchange package's CLI is not installed"
    return [found]


class TX:
    """The `threatexchange` CLI with its state (TX_STATEDIR) and HOME in a temporary dir."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.state = root / "tx-state"
        (root / "home").mkdir()
        self.env = dict(os.environ, HOME=str(root / "home"), TX_STATEDIR=str(self.state))

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [*threatexchange_cli(), *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if ok:
            assert out.returncode == 0, f"threatexchange {' '.join(args)}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
        return out

    def match_pdq(self, pdq: str) -> t.List[str]:
        """`threatexchange match --hashes photo -- PDQ`: the output lines."""
        return self("match", "--hashes", "photo", "--", pdq).stdout.splitlines()

    def fetched(self) -> t.Any:
        """The CLI's stored fetch state for the collab (its pickle of the merged deltas)."""
        path = self.state / "fetched" / "coalition_hub" / f"{COLLAB}.state.pickle"
        with path.open("rb") as f:
            return pickle.load(f)


@pytest.fixture(scope="module")
def shared(hub: t.Any) -> t.Dict[str, str]:
    """acme's hash set, submitted with the Rust CLI: statement ids by name."""
    rows = "type,hash,labels,quality\n"
    rows += "".join(f"pdq,{p},A1;campaign-7,90\n" for p in PDQ)
    rows += f"md5,{MD5},B1\nsha1,{SHA1},A1\nsha256,{SHA256},A2\n"
    return {"set": hub.submit_hashes("acme", rows, "acme-set.csv")}


@pytest.fixture(scope="module")
def tx(hub: t.Any, shared: t.Dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> TX:
    """globex's threatexchange, with the extension added and the hub as a collab."""
    cli = TX(tmp_path_factory.mktemp("tx"))
    out = cli("config", "extensions", "add", "coalition_hub_threatexchange")
    assert "coalition_hub - CoalitionHubSignalExchangeAPI" in out.stdout, out.stdout
    assert "coalition_hub_threatexchange" in cli("config", "extensions", "list").stdout
    cli(
        "config", "collab", "edit", "coalition_hub", COLLAB, "--create",
        "--hub", hub.addr, "--member", "globex", "--certs", str(hub.certs), "--genesis", hub.genesis,
    )
    assert cli("config", "collab", "list").stdout.split() == ["coalition_hub", COLLAB]
    return cli


def test_fetch_and_match(tx: TX, shared: t.Dict[str, str]) -> None:
    out = tx("fetch")
    assert "Up to date" in out.stderr, out.stderr
    # A near-duplicate of a shared PDQ hash matches, with acme's labels as tags; an unrelated
    # hash does not.
    lines = tx.match_pdq(near(PDQ[0]))
    assert len(lines) == 1, lines
    assert lines[0].startswith("pdq 5 ") and f"({COLLAB})" in lines[0], lines
    assert "POSITIVE_CLASS" in lines[0] and "A1" in lines[0] and "campaign-7" in lines[0], lines
    assert "by acme" in lines[0], lines
    assert tx.match_pdq(UNRELATED) == []
    # MD5 becomes threatexchange's video_md5, SHA-256 its video_sha256.
    md5 = tx("match", "--only-signal", "video_md5", "--hashes", "video", "--", MD5).stdout
    assert "video_md5" in md5 and "B1" in md5, md5
    sha = tx("match", "--only-signal", "video_sha256", "--hashes", "video", "--", SHA256).stdout
    assert "video_sha256" in sha and "A2" in sha, sha
    # One record per entry, keyed "<statement>:<entry>"; the SHA-1 has no type and is counted.
    state = tx.fetched()
    sid = shared["set"]
    assert sorted(state.updates) == sorted(f"{sid}:{i}" for i in (0, 1, 2, 3, 4, 6))
    assert state.checkpoint.skipped == {"sha1": 1}
    assert state.checkpoint.entry_counts == {sid: 7}


def test_fetch_resumes_from_its_checkpoint(tx: TX) -> None:
    before = tx.fetched().checkpoint
    out = tx("fetch")
    assert "Up to date" in out.stderr
    after = tx.fetched().checkpoint
    # Nothing new in the log: the same cursor, nothing fetched twice.
    assert after.log_size == before.log_size
    assert len(tx.fetched().updates) == 6


def test_a_risk_signals_hash_indicators_are_fetched(hub: t.Any, tx: TX) -> None:
    pdq = f"{rng.getrandbits(256):064x}"
    signal = (
        '{"category":"sextortion","severity":"high","title":"Payment-demand image",'
        '"indicators":[{"type":"keyword","value":"pay or i send them"},'
        f'{{"type":"hash","hash":{{"type":"pdq","hash":"{pdq}","quality":88,"labels":["A2"]}}}}],'
        '"first_seen_ms":1764000000000,"last_seen_ms":1764100000000}'
    )
    path = hub.root / "signal.json"
    path.write_text(signal)
    out = hub.run("submit", *hub.client_args("acme"), "--signal", str(path)).stdout
    sid = re.search(r"statement ([0-9a-f]{64})", out)
    assert sid, out
    tx("fetch")
    # The hash indicator (entry 1) is a record; the keyword has no signal type here.
    record = tx.fetched().updates[f"{sid.group(1)}:1"]
    assert (record.hash_type, record.signal, record.quality, record.labels) == ("pdq", pdq, 88, ["A2"])
    assert f"{sid.group(1)}:0" not in tx.fetched().updates
    lines = tx.match_pdq(near(pdq))
    assert len(lines) == 1 and "A2" in lines[0], lines


#: A URL as a member would report it, and the same URL as another platform saw it: the case of
#: scheme, host and path differs, which threatexchange's normalisation removes.
URL = "https://Files.Example.org/Share/Album-7/photo.JPG?id=4411"
URL_SEEN = "HTTPS://files.example.ORG/share/album-7/PHOTO.jpg?ID=4411"


def test_url_md5_hashes_are_fetched_and_match_a_url(hub: t.Any, tx: TX) -> None:
    # acme shares URL-MD5 hashes computed by threatexchange's own UrlMD5Signal (its
    # normalisation is the reference), with `coalition submit`.
    url_md5 = UrlMD5Signal.hash_from_str(URL)
    other = UrlMD5Signal.hash_from_str("https://unrelated.example.net/")
    assert UrlMD5Signal.hash_from_str(URL_SEEN) == url_md5
    # The hub's own URL-MD5 (`coalition hash --url`) is the same hash.
    hashed = hub.run("hash", "--url", URL).stdout
    assert url_md5 in hashed, hashed
    sid = hub.submit_hashes("acme", f"type,hash,labels\nurl_md5,{url_md5},A1;url-list\n", "acme-urls.csv")
    tx("fetch")
    record = tx.fetched().updates[f"{sid}:0"]
    assert (record.hash_type, record.signal, record.labels, record.state) == ("url_md5", url_md5, ["A1", "url-list"], "active")
    # `threatexchange match url -- URL` hashes the URL itself (UrlMD5Signal) and finds it,
    # whichever way its case was written.
    for url in (URL, URL_SEEN):
        lines = tx("match", "url", "--", url).stdout.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("url_md5 ") and f"({COLLAB})" in lines[0], lines
        assert "POSITIVE_CLASS" in lines[0] and "url-list" in lines[0] and "by acme" in lines[0], lines
    # As a hash too; an unrelated URL and its hash do not match.
    hit = tx("match", "--only-signal", "url_md5", "--hashes", "url", "--", url_md5).stdout
    assert hit.startswith("url_md5 ") and "url-list" in hit, hit
    assert tx("match", "url", "--", "https://unrelated.example.net/").stdout == ""
    assert tx("match", "--only-signal", "url_md5", "--hashes", "url", "--", other).stdout == ""


def vpdq_value(frames: int) -> str:
    """A vpdq value (docs/PROTOCOL.md §2.3.2) of `frames` frames one second apart, in hex:
    frame number and milliseconds (u32 big-endian), quality, PDQ hash."""
    return "".join(
        f"{i:08x}{i * 1000:08x}{90:02x}{rng.getrandbits(256):064x}" for i in range(frames)
    )


def test_vpdq_entries_are_skipped_and_counted(hub: t.Any, tx: TX) -> None:
    # threatexchange 1.2.17's vPDQ type needs the native `vpdq` package (not installed here,
    # nor required): a set holding a vpdq hash is fetched without it, the rest of the set kept.
    md5 = f"{rng.getrandbits(128):032x}"
    before = dict(tx.fetched().checkpoint.skipped)
    sid = hub.submit_hashes("acme", f"vpdq,{vpdq_value(3)},A1\nmd5,{md5},A1\n", "acme-video.csv")
    tx("fetch")
    state = tx.fetched()
    assert f"{sid}:0" not in state.updates
    assert (state.updates[f"{sid}:1"].hash_type, state.updates[f"{sid}:1"].signal) == ("md5", md5)
    assert state.checkpoint.skipped == {**before, "vpdq": before.get("vpdq", 0) + 1}
    assert state.checkpoint.entry_counts[sid] == 2
    assert "video_md5" in tx("match", "--only-signal", "video_md5", "--hashes", "video", "--", md5).stdout
    # A retraction of the set re-decides its entries: the vpdq entry is still skipped (not
    # counted twice), the md5 one deleted.
    hub.run("retract", sid, "--reason", "wrong video", *hub.client_args("acme"))
    tx("fetch")
    state = tx.fetched()
    assert not [k for k in state.updates if k.startswith(sid)]
    assert state.checkpoint.skipped == {**before, "vpdq": before.get("vpdq", 0) + 1}


def test_an_expired_set_is_deleted_by_the_next_fetch(hub: t.Any, tx: TX) -> None:
    pdqs = [f"{rng.getrandbits(256):064x}" for _ in range(2)]
    path = hub.root / "expiring.csv"
    path.write_text("".join(f"pdq,{p},A1,90\n" for p in pdqs))
    expires = int(time.time() * 1000) + 4000
    out = hub.run(
        "submit", *hub.client_args("acme"), "--hashes", str(path), "--expires-at", str(expires)
    ).stdout
    sid = re.search(r"statement ([0-9a-f]{64})", out)
    assert sid, out
    tx("fetch")
    assert tx.fetched().checkpoint.expiring == {sid.group(1): expires}
    assert len(tx.match_pdq(pdqs[0])) == 1
    # Nothing is logged when a set expires: the next fetch after the time deletes it.
    time.sleep(max(0.0, expires / 1000 - time.time()) + 0.5)
    tx("fetch")
    assert not [k for k in tx.fetched().updates if k.startswith(sid.group(1))]
    assert tx.fetched().checkpoint.expiring == {}
    assert tx.match_pdq(pdqs[0]) == []


def test_retracted_entry_is_deleted(hub: t.Any, tx: TX, shared: t.Dict[str, str]) -> None:
    sid = shared["set"]
    hub.run("retract", sid, "--entry", "0", "--reason", "hash of a cat photo", *hub.client_args("acme"))
    tx("fetch")
    assert f"{sid}:0" not in tx.fetched().updates
    assert tx.match_pdq(near(PDQ[0])) == [], "a retracted hash still matches"
    assert len(tx.match_pdq(PDQ[1])) == 1, "the other entries still match"


def test_whole_set_retraction_deletes_every_entry(hub: t.Any, tx: TX) -> None:
    extra = [f"{rng.getrandbits(256):064x}" for _ in range(3)]
    sid = hub.submit_hashes("acme", "".join(f"pdq,{p},B2,80\n" for p in extra), "acme-extra.csv")
    tx("fetch")
    assert len(tx.match_pdq(extra[2])) == 1
    hub.run("retract", sid, "--reason", "wrong list", *hub.client_args("acme"))
    tx("fetch")
    assert not [k for k in tx.fetched().updates if k.startswith(sid)]
    assert tx.match_pdq(extra[2]) == []


def test_opinion_reported_through_the_cli_reaches_the_hub(hub: t.Any, tx: TX, shared: t.Dict[str, str]) -> None:
    sid = shared["set"]
    # threatexchange's `label` reports a POSITIVE_CLASS opinion: the plugin signs a `confirmed`
    # opinion with globex's key (the collab's --certs default) on acme's entry 1.
    tx("label", "--labels", "verified", "--as-hash", "pdq", COLLAB, "photo", "--", PDQ[1])
    opinions = opinions_at_hub(hub, "acme")
    assert (sid, 1, "globex", 1, "verified") in opinions, opinions
    # The next fetch carries it back: entry 1's record has globex's verdict, mine.
    tx("fetch")
    record = tx.fetched().updates[f"{sid}:1"]
    assert record.verdicts == {"globex": "confirmed"}
    assert any(o.is_mine and o.category == SignalOpinionCategory.POSITIVE_CLASS for o in record.get_as_opinions())


def test_opinions_map_to_categories(hub: t.Any, tx: TX, shared: t.Dict[str, str]) -> None:
    sid = shared["set"]
    initech = api_as(hub, "initech")
    # initech says entry 1 (confirmed by globex) is a false positive: the hub's state is
    # `disputed` (kept: it still matches), and threatexchange's aggregate is DISPUTED.
    initech.report_false_positive(PdqSignal, PDQ[1])
    tx("fetch")
    record = tx.fetched().updates[f"{sid}:1"]
    assert record.state == "disputed", record
    assert record.verdicts == {"globex": "confirmed", "initech": "false_positive"}
    lines = tx.match_pdq(PDQ[1])
    assert len(lines) == 1 and "DISPUTED" in lines[0], lines
    # One false positive alone: the entry stays `active`, the aggregate is still DISPUTED
    # (acme's positive sharing against a negative opinion).
    initech.report_false_positive(PdqSignal, PDQ[2])
    tx("fetch")
    record = tx.fetched().updates[f"{sid}:2"]
    assert record.state == "active" and record.verdicts == {"initech": "false_positive"}
    assert "DISPUTED" in tx.match_pdq(PDQ[2])[0]
    # INVESTIGATION_SEED is the `disputed` verdict, which makes the entry `disputed`.
    initech.report_opinion(PdqSignal, PDQ[3], SignalOpinion(True, SignalOpinionCategory.INVESTIGATION_SEED, set()))
    tx("fetch")
    record = tx.fetched().updates[f"{sid}:3"]
    assert record.state == "disputed" and record.verdicts == {"initech": "disputed"}
    assert [o.category for o in record.get_as_opinions()] == [
        SignalOpinionCategory.POSITIVE_CLASS,
        SignalOpinionCategory.INVESTIGATION_SEED,
    ]


def test_quarantine_deletes_and_release_restores(hub: t.Any, tx: TX, shared: t.Dict[str, str]) -> None:
    sid = shared["set"]
    hub.run("admin", "quarantine", sid, "--entry", "2", "--note", "court order", *hub.client_args("admin"))
    tx("fetch")
    assert f"{sid}:2" not in tx.fetched().updates
    assert tx.match_pdq(PDQ[2]) == []
    # Released: the next fetch re-decides the entry and brings its record back, whole, with
    # the verdict it had.
    hub.run("admin", "release", sid, "--entry", "2", *hub.client_args("admin"))
    tx("fetch")
    record = tx.fetched().updates[f"{sid}:2"]
    assert (record.signal, record.labels, record.quality, record.state) == (PDQ[2], ["A1", "campaign-7"], 90, "active")
    assert record.verdicts == {"initech": "false_positive"}
    assert len(tx.match_pdq(PDQ[2])) == 1


def test_report_refuses_what_it_cannot_say(hub: t.Any, shared: t.Dict[str, str]) -> None:
    acme = api_as(hub, "acme")
    # No other member's entry holds acme's own hash: an opinion on one's own entry is refused
    # by the hub, so the plugin finds no target.
    with pytest.raises(ReportError, match="no other member's entry"):
        acme.report_true_positive(PdqSignal, PDQ[1])
    globex = api_as(hub, "globex")
    with pytest.raises(ReportError, match="no other member's entry"):
        globex.report_true_positive(PdqSignal, UNRELATED)
    # A retracted entry is no target either.
    with pytest.raises(ReportError):
        globex.report_true_positive(PdqSignal, PDQ[0])
    # MD5 reports work the same way (exact match).
    before = len(opinions_at_hub(hub, "acme"))
    globex.report_true_positive(VideoMD5Signal, MD5)
    assert len(opinions_at_hub(hub, "acme")) == before + 1


def test_bad_input_fails_the_fetch_and_loses_nothing(hub: t.Any, tmp_path: pathlib.Path) -> None:
    # A damaged checkpoint: the client refuses it, threatexchange keeps what it had.
    api = api_as(hub, "globex")
    from coalition_hub_threatexchange import CoalitionHubCheckpoint

    with pytest.raises(Exception, match="not JSON"):
        list(api.fetch_iter([PdqSignal], CoalitionHubCheckpoint(sync_state="{damaged")))
    # A signal that is not a hash of its type.
    with pytest.raises(ValueError):
        api.report_true_positive(PdqSignal, "not-a-pdq-hash")
    # A collab whose key files are missing: `threatexchange fetch` fails with one line naming
    # the file (exit 2, threatexchange's "invalid auth") and stores nothing.
    cli = TX(tmp_path)
    cli("config", "extensions", "add", "coalition_hub_threatexchange")
    cli(
        "config", "collab", "edit", "coalition_hub", COLLAB, "--create",
        "--hub", hub.addr, "--member", "globex", "--certs", str(tmp_path / "no-such-dir"),
    )
    out = cli("fetch", ok=False)
    assert out.returncode == 2, out
    assert out.stderr.strip().splitlines() == [
        f"Invalid auth for coalition_hub: collab '{COLLAB}': {tmp_path / 'no-such-dir' / 'ca.pem'}: No such file or directory"
    ], out.stderr
    assert not (cli.state / "fetched" / "coalition_hub" / f"{COLLAB}.state.pickle").exists()


def test_a_certificate_of_another_member_is_refused(hub: t.Any) -> None:
    config = collab_config(hub, "globex")
    config.cert_pem = str(hub.certs / "members" / "acme.pem")
    config.key_pem = str(hub.certs / "members" / "acme.key")
    with pytest.raises(SignalExchangeAPIInvalidAuthException) as refused:
        CoalitionHubSignalExchangeAPI.for_collab(config)
    assert "is member 'acme', the config says 'globex'" in refused.value.message
    # No certificate named at all.
    config.cert_pem = None
    config.certs = None
    with pytest.raises(SignalExchangeAPIInvalidAuthException) as refused:
        CoalitionHubSignalExchangeAPI.for_collab(config)
    assert "set --ca-pem or --certs" in refused.value.message


def test_a_pinned_genesis_of_another_hub_is_refused(hub: t.Any) -> None:
    config = collab_config(hub, "globex")
    config.genesis = "00" * 32
    api = CoalitionHubSignalExchangeAPI.for_collab(config)
    with pytest.raises(Exception, match="genesis"):
        list(api.fetch_iter([PdqSignal], None))


def test_a_compromised_key_deletes_what_it_signed_since(hub: t.Any, tx: TX, shared: t.Dict[str, str]) -> None:
    # Runs last: acme's key is declared compromised from just before a new set.
    since = int(time.time() * 1000)
    late = [f"{rng.getrandbits(256):064x}" for _ in range(3)]
    sid = hub.submit_hashes("acme", "".join(f"pdq,{p},A1,95\n" for p in late), "acme-late.csv")
    tx("fetch")
    assert len(tx.match_pdq(late[0])) == 1
    key_id = tx.fetched().checkpoint.signed_by[sid]
    hub.run(
        "admin", "key", "revoke", "--member", "acme", "--key-id", key_id, "--why", "compromised",
        "--since", str(since), *hub.client_args("admin"),
    )
    tx("fetch")
    assert not [k for k in tx.fetched().updates if k.startswith(sid)]
    assert tx.match_pdq(late[0]) == []
    # What the key signed before the compromise time still matches.
    assert len(tx.match_pdq(PDQ[1])) == 1


def collab_config(hub: t.Any, member: str) -> CoalitionHubCollabConfig:
    return CoalitionHubCollabConfig(hub=hub.addr, member=member, name=f"{member}-direct", certs=str(hub.certs))


def api_as(hub: t.Any, member: str) -> CoalitionHubSignalExchangeAPI:
    """The plugin's API as `member` (what threatexchange or HMA would build from the collab)."""
    return CoalitionHubSignalExchangeAPI.for_collab(collab_config(hub, member))


def opinions_at_hub(hub: t.Any, member: str) -> t.List[t.Tuple[str, int, str, int, str]]:
    """Every opinion in the hub's log, as `member`'s verified sync (the Python client) sees
    it: (target statement, entry, issuer, verdict number, note)."""
    with HubClient.from_certs_dir(hub.addr, hub.certs, member) as client:
        out = []
        for e in client.sync():
            if e.kind == Kind.OPINION and e.details:
                o = e.details["opinion"]
                out.append((o["statement_id"], o.get("entry", 0), e.issuer, o["verdict"], o.get("note", "")))
        return out
