"""A real hub on loopback for the end-to-end tests: certificates made at test time with the
`coalition` CLI (`pki init`, `init`), `coalition serve` as a child process, members admitted by
signed membership statements. The binary is $COALITION_BIN or <repo>/target/debug/coalition.
"""

import os
import pathlib
import re
import subprocess
import typing as t

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
MEMBERS = ("admin", "acme", "globex", "initech")


def coalition_bin() -> pathlib.Path:
    """The `coalition` binary the tests drive; a missing one fails the run (never skips)."""
    path = pathlib.Path(os.environ.get("COALITION_BIN") or REPO / "target/debug/coalition")
    if not path.is_file():
        pytest.fail(
            f"no coalition binary at {path}: run `cargo build --bin coalition` "
            "or set COALITION_BIN",
            pytrace=False,
        )
    return path


class Hub:
    """A running hub in its own temporary directory (certs/ and data/ inside)."""

    def __init__(self, root: pathlib.Path, binary: pathlib.Path) -> None:
        self.root = root
        self.bin = binary
        self.certs = root / "certs"
        self.process: t.Optional[subprocess.Popen] = None
        self.addr = ""
        self.genesis = ""

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs `coalition ARGS…` in the hub's directory (a bounded 120 s)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COALITION_", "RUST_LOG"))}
        out = subprocess.run(
            [str(self.bin), *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"coalition {' '.join(args)} exited {out.returncode}: {out.stderr}")
        return out

    def client_args(self, member: str) -> t.List[str]:
        """`--hub ADDR --as MEMBER --certs CERTS` for a client command."""
        return ["--hub", self.addr, "--as", member, "--certs", str(self.certs)]

    def start(self) -> None:
        """PKI, genesis, `serve` on an ephemeral port, and the members admitted."""
        self.run("pki", "init", "--certs", str(self.certs), *sum((["--member", m] for m in MEMBERS), []))
        out = self.run("init", "--data", "data", "--certs", str(self.certs), "--name", "tx.test")
        found = re.search(r"genesis ([0-9a-f]{64})", out.stdout)
        assert found, out.stdout
        self.genesis = found.group(1)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COALITION_", "RUST_LOG"))}
        self._log = (self.root / "serve.log").open("w")
        self.process = subprocess.Popen(
            [
                str(self.bin), "serve", "--data", "data", "--certs", str(self.certs),
                "--listen", "127.0.0.1:0", "--ops-listen", "off", "--checkpoint-ms", "50",
            ],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.match(r"listening on (\S+)", line)
        if not match:
            self.stop()
            raise AssertionError(f"no address in the hub's first line: {line!r}")
        self.addr = match.group(1)
        for member in MEMBERS[1:]:
            self.run("admin", "member", "admit", *self.client_args("admin"), "--id", member, "--name", member)

    def stop(self) -> None:
        """Kills and reaps the hub."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None
            self._log.close()

    def submit_hashes(self, member: str, rows: str, name: str) -> str:
        """`coalition submit` of a CSV hash list as MEMBER; returns the statement id."""
        path = self.root / name
        path.write_text(rows)
        out = self.run("submit", *self.client_args(member), "--hashes", str(path), "--description", name)
        match = re.search(r"statement ([0-9a-f]{64})", out.stdout)
        assert match, out.stdout
        return match.group(1)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Hub]:
    """A fresh hub with admin, acme and globex, for one test module."""
    h = Hub(tmp_path_factory.mktemp("hub"), coalition_bin())
    try:
        h.start()
        yield h
    finally:
        h.stop()
