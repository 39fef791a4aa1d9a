"""The hub's TAXII 2.1 read API (docs/PROTOCOL.md section 8) read by independent clients.

Self-contained: makes a development PKI and founds a hub with the `coalition` binary
(COALITION_BIN, default target/debug/coalition), serves it with --taxii-listen on loopback,
admits two members and submits hash sets and a risk signal through the CLI, then reads every
collection with `taxii2-client` over mutual TLS (paging with `next`) and validates every STIX
object with `stix2-validator`: zero errors.

Run: pip install -r clients/python/requirements-interop.txt && pytest clients/python/interop
"""

import json
import os
import pathlib
import socket
import subprocess
import time

import pytest
from stix2validator import ValidationOptions, validate_instance
from taxii2client.v21 import Server, as_pages

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = os.environ.get("COALITION_BIN") or str(ROOT / "target" / "debug" / "coalition")
TIMEOUT = 120


def run(cwd, *args):
    done = subprocess.run(
        [BIN, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, f"coalition {' '.join(args)}: {done.stderr}"
    return done.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, log):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the hub exited: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the hub did not listen on {port}: {log.read_text()}")


HASHES = """type,hash,labels,quality
md5,d41d8cd98f00b204e9800998ecf8427e,A1
sha1,da39a3ee5e6b4b0d3255bfef95601890afd80709,B1
sha256,e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855,B2;ncmec-ref
pdq,f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,A1,92
"""

SIGNAL = {
    "category": "sextortion",
    "severity": "high",
    "title": "Payment-demand script",
    "description": "Seen with a payment domain and an account.",
    "indicators": [
        {"type": "keyword", "value": "pay or i send them (now)"},
        {"type": "domain", "value": "pay-now.example"},
        {"type": "url", "value": "https://pay-now.example/it's"},
    ],
    "first_seen_ms": 1764000000000,
    "last_seen_ms": 1764100000000,
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # requests lets these variables override the CA a session is given: the hub's development
    # CA must be the one trusted.
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(var, None)
    d = tmp_path_factory.mktemp("hub")
    run(d, "pki", "init")
    run(d, "init", "--data", "data", "--name", "taxii.test.local", "--admin", "admin", "--quorum", "1")
    grpc, taxii = free_port(), free_port()
    log = d / "hub.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                BIN, "serve", "--data", "data", "--listen", f"127.0.0.1:{grpc}",
                "--taxii-listen", f"127.0.0.1:{taxii}", "--ops-listen", "off",
            ],
            cwd=d, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(grpc, proc, log)
        wait_for_port(taxii, proc, log)
        addr = f"127.0.0.1:{grpc}"
        for member, name in [("acme", "Acme Social"), ("globex", "Globex Video")]:
            run(d, "admin", "member", "admit", "--hub", addr, "--as", "admin", "--id", member, "--name", name)
        (d / "hashes.csv").write_text(HASHES)
        (d / "signal.json").write_text(json.dumps(SIGNAL))
        run(d, "submit", "--hub", addr, "--as", "acme", "--hashes", "hashes.csv", "--set-size", "2")
        run(d, "submit", "--hub", addr, "--as", "acme", "--signal", "signal.json")
        yield d, taxii
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def server(d, port, member):
    certs = d / "certs"
    return Server(
        f"https://localhost:{port}/taxii2/",
        verify=str(certs / "ca.pem"),
        cert=(str(certs / "members" / f"{member}.pem"), str(certs / "members" / f"{member}.key")),
    )


def every_object(collection, per_request):
    objects, pages = [], 0
    for envelope in as_pages(collection.get_objects, per_request=per_request):
        pages += 1
        objects.extend(envelope.get("objects", []))
    return objects, pages


def test_taxii2_client_reads_every_collection_and_every_object_validates(hub):
    d, port = hub
    api_root = server(d, port, "globex").api_roots[0]
    assert api_root.versions == ["application/taxii+json;version=2.1"]
    collections = {c.title: c for c in api_root.collections}
    assert set(collections) == {"Hash sets", "Risk signals"}

    hashes, pages = every_object(collections["Hash sets"], per_request=3)
    assert pages > 1
    indicators = [o for o in hashes if o["type"] == "indicator"]
    patterns = sorted(o["pattern"] for o in indicators)
    assert patterns == sorted([
        "[file:hashes.'MD5' = 'd41d8cd98f00b204e9800998ecf8427e']",
        "[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']",
        "[file:hashes.'SHA-256' = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']",
        "[file:hashes.x_pdq = 'f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22']",
    ])
    signals, _ = every_object(collections["Risk signals"], per_request=100)
    assert len([o for o in signals if o["type"] == "indicator"]) == 3

    options = ValidationOptions(version="2.1")
    for obj in hashes + signals:
        result = validate_instance(obj, options)
        assert result.is_valid and not result.errors, (obj, [str(e) for e in result.errors])

    # An object by id, and its versions.
    first = indicators[0]
    got = collections["Hash sets"].get_object(first["id"])
    assert [o["id"] for o in got["objects"]] == [first["id"]]
    versions = collections["Hash sets"].object_versions(first["id"])
    assert versions["versions"] == [first["modified"]]
    manifest = collections["Hash sets"].get_manifest()
    assert {r["id"] for r in manifest["objects"]} == {o["id"] for o in hashes}


def test_a_member_without_a_certificate_is_refused(hub):
    d, port = hub
    anonymous = Server(f"https://localhost:{port}/taxii2/", verify=str(d / "certs" / "ca.pem"))
    with pytest.raises(Exception):
        anonymous.refresh()
