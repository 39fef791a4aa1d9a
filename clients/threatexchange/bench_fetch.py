"""Benchmark: the plugin's fetch (records for threatexchange) against the client's bare
verified sync, over the same log, on a real hub on loopback.

    python clients/threatexchange/bench_fetch.py [HASHES]      (default 100000; COALITION_BIN as the tests)

Prints the median of 3 runs of each, in hashes per second (wall clock).
"""

import pathlib
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent / "tests"))

from conftest import Hub, coalition_bin  # noqa: E402
from threatexchange.signal_type.md5 import VideoMD5Signal  # noqa: E402
from threatexchange.signal_type.pdq.signal import PdqSignal  # noqa: E402

from coalition_hub import HubClient  # noqa: E402
from coalition_hub_threatexchange import CoalitionHubCollabConfig, CoalitionHubSignalExchangeAPI  # noqa: E402

SET_SIZE = 10_000


def main() -> None:
    hashes = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        hub = Hub(pathlib.Path(tmp), coalition_bin())
        hub.start()
        try:
            rows = "".join(f"pdq,{rng.getrandbits(256):064x},A1,90\n" for _ in range(hashes))
            path = pathlib.Path(tmp) / "bench.csv"
            path.write_text(rows)
            hub.run("submit", *hub.client_args("acme"), "--hashes", str(path), "--set-size", str(SET_SIZE))

            def bare() -> int:
                with HubClient.from_certs_dir(hub.addr, hub.certs, "globex") as client:
                    return sum(len(e.hashes) for e in client.sync())

            def plugin() -> int:
                config = CoalitionHubCollabConfig(hub=hub.addr, member="globex", name="bench", certs=str(hub.certs))
                api = CoalitionHubSignalExchangeAPI.for_collab(config)
                return sum(len(d.updates) for d in api.fetch_iter([PdqSignal, VideoMD5Signal], None))

            for name, run in (("client sync", bare), ("plugin fetch", plugin)):
                rates = []
                for _ in range(3):
                    start = time.perf_counter()
                    n = run()
                    rates.append(n / (time.perf_counter() - start))
                    assert n == hashes, (name, n)
                print(f"{name}: {hashes} hashes, median {statistics.median(rates):,.0f} hashes/s "
                      f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
        finally:
            hub.stop()


if __name__ == "__main__":
    main()
