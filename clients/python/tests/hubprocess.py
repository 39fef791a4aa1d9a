"""A real hub for the tests: the `coalition` binary ($COALITION_BIN, default
<repo>/target/debug/coalition) on 127.0.0.1:0, with a development PKI and a data directory
made now in a temporary directory, members admitted by the CLI's signed membership statements."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MEMBERS = ("admin", "acme", "globex", "initech", "auditor")
HUB_NAME = "py.coalition.test"


def coalition_bin() -> str:
    """The hub binary the tests run."""
    b = os.environ.get("COALITION_BIN") or str(ROOT / "target" / "debug" / "coalition")
    if not os.access(b, os.X_OK):
        raise RuntimeError(f"no coalition binary at {b}: build it (cargo build --bin coalition) or set COALITION_BIN")
    return b


class Hub:
    """A running hub process (stopped with :meth:`stop`)."""

    def __init__(  # type: ignore[no-untyped-def]
        self,
        tmp: Path,
        serve_args: tuple[str, ...] = (),
        before_serve=None,
        *,
        name: str = HUB_NAME,
        extra_members: tuple[str, ...] = (),
    ) -> None:
        """Makes the PKI (with certificates for `extra_members` too, not admitted) and the
        genesis of hub `name`, calls `before_serve(self)` if given, serves with `serve_args`
        added, and admits acme, globex, initech (members) and an auditor."""
        self.bin = coalition_bin()
        self.dir = tmp
        self.name = name
        self.certs = tmp / "certs"
        self.data = tmp / "data"
        args = ["pki", "init", "--certs", str(self.certs)]
        for m in MEMBERS + extra_members:
            args += ["--member", m]
        self.run(*args)
        out = self.run("init", "--data", str(self.data), "--certs", str(self.certs), "--name", name, "--admin", "admin")
        m = re.search(r"genesis ([0-9a-f]{64})", out)
        assert m, out
        self.genesis = m.group(1)
        if before_serve is not None:
            before_serve(self)
        self.log = open(tmp / "serve.log", "w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--data", str(self.data), "--certs", str(self.certs), "--listen", "127.0.0.1:0",
             "--ops-listen", "off", "--checkpoint-ms", "100", "--match-snapshot", "off", *serve_args],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.match(r"listening on (\S+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"the hub did not start: {line!r}; see {tmp / 'serve.log'}")
        self.addr = m.group(1)
        try:
            self.admit("acme", "member")
            self.admit("globex", "member")
            self.admit("initech", "member")
            self.admit("auditor", "auditor")
        except Exception:
            self.stop()
            raise

    def run(self, *args: str) -> str:
        """Runs a CLI command, returning its stdout; fails the test on a non-zero exit."""
        p = subprocess.run([self.bin, *args], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"coalition {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def admin(self, *args: str) -> str:
        """`coalition admin ...` as admin against this hub."""
        return self.run("admin", *args, "--as", "admin", "--hub", self.addr, "--certs", str(self.certs))

    def admit(self, member: str, role: str) -> None:
        """Admits a member whose keys `pki init` made."""
        self.admin("member", "admit", "--id", member, "--name", member.title(), "--role", role)

    def stop(self) -> None:
        """Stops the hub (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
