#!/usr/bin/env python3
"""Full-verification sync throughput of the Python client against a real hub.

Starts a hub (the `coalition` binary: $COALITION_BIN or <repo>/target/debug/coalition) on
127.0.0.1:0 in a temporary directory, submits STATEMENTS hash sets of HASHES hashes each as
acme (bounded: at most 200 statements of at most 100,000 hashes), then syncs the whole log as
globex from the genesis ROUNDS times with a fresh SyncState: every entry's canonical bytes,
statement id, header/body binding, field rules, entitlement against the replayed membership,
ed25519 signature, the Merkle frontier and the signed checkpoint are checked, and every
VerifiedHash is built (the consumer reads `entry.hashes`). Prints each round and the medians of
the wall-clock rate and of the rate per CPU second of the client process (the hub runs
beside it on the same cores).

Usage: sync_bench.py [--statements N] [--hashes M] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from hubprocess import Hub  # noqa: E402

from coalition_hub import HashInput, HubClient, SigningKey, SyncState  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--statements", type=int, default=20)
    p.add_argument("--hashes", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    if not (1 <= a.statements <= 200 and 1 <= a.hashes <= 100_000 and 1 <= a.rounds <= 20):
        p.error("bounds: statements 1..=200, hashes 1..=100000, rounds 1..=20")
    with tempfile.TemporaryDirectory(prefix="coalition-py-bench-") as tmp:
        hub = Hub(Path(tmp))
        try:
            acme = HubClient.from_certs_dir(hub.addr, hub.certs, "acme")
            key = SigningKey.from_pem_file(hub.certs / "members" / "acme.sign.key")
            t0 = time.perf_counter()
            for s in range(a.statements):
                entries = [
                    HashInput("pdq" if i % 2 else "sha256", os.urandom(32), quality=90 if i % 2 else None, labels=("A1",) if i % 3 == 0 else ())
                    for i in range(a.hashes)
                ]
                acme.submit_hashes(key, entries, description=f"bench {s}")
            print(f"submitted {a.statements} x {a.hashes} hashes in {time.perf_counter() - t0:.1f} s")
            total = a.statements * a.hashes
            rates: list[float] = []
            cpu_rates: list[float] = []
            with HubClient.from_certs_dir(hub.addr, hub.certs, "globex") as globex:
                for r in range(a.rounds):
                    t = time.perf_counter()
                    cpu = time.process_time()
                    hashes = 0
                    for e in globex.sync(SyncState(genesis=hub.genesis)):
                        hashes += len(e.hashes)
                    dt = time.perf_counter() - t
                    dcpu = time.process_time() - cpu
                    assert hashes == total, (hashes, total)
                    rates.append(hashes / dt)
                    cpu_rates.append(hashes / dcpu)
                    print(f"round {r + 1}: {hashes} hashes verified in {dt:.3f} s = {hashes / dt:,.0f} hashes/s (client CPU {dcpu:.3f} s = {hashes / dcpu:,.0f} hashes per CPU second)")
            print(
                f"median: {statistics.median(rates):,.0f} hashes/s wall, {statistics.median(cpu_rates):,.0f} hashes per client CPU second, "
                f"over {a.rounds} rounds ({a.statements} statements of {a.hashes} hashes)"
            )
        finally:
            hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
