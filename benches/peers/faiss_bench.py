"""faiss peer benchmark for the PDQ index (see run.sh).

Modes:
  faiss_bench.py run --data DIR --n N --engine flat|multihash --threshold T --out FILE
      loads base_<N>.bin / queries.bin / gt_<N>_t<T>.bin written by `cargo bench --bench pdq`,
      measures one faiss index, appends one JSON line to FILE.
  faiss_bench.py table FILE
      prints a side-by-side markdown table of every JSON line in FILE.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import faiss

QUERIES = 1000
WARMUP = 100
D_BITS = 256


def status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def load(data, n, threshold):
    base = np.fromfile(os.path.join(data, f"base_{n}.bin"), dtype=np.uint8)
    if base.size != n * 32:
        sys.exit(f"base_{n}.bin has {base.size} bytes, expected {n * 32}")
    queries = np.fromfile(os.path.join(data, "queries.bin"), dtype=np.uint8)
    if queries.size != QUERIES * 32:
        sys.exit(f"queries.bin has {queries.size} bytes, expected {QUERIES * 32}")
    raw = np.fromfile(os.path.join(data, f"gt_{n}_t{threshold}.bin"), dtype="<u4")
    gt, pos = [], 0
    for _ in range(QUERIES):
        count = int(raw[pos])
        gt.append(set(raw[pos + 1 : pos + 1 + count].tolist()))
        pos += 1 + count
    return base.reshape(n, 32), queries.reshape(QUERIES, 32), gt


def make_index(engine):
    if engine == "flat":
        return faiss.IndexBinaryFlat(D_BITS)
    if engine == "multihash":
        # 16 substrings of 16 bits; a distance <= 31 forces some substring within 1
        # (pigeonhole), so nflip=1 makes the range search exact.
        index = faiss.IndexBinaryMultiHash(D_BITS, 16, 16)
        index.nflip = 1
        return index
    sys.exit(f"unknown engine {engine!r}")


def radius_for(engine, threshold):
    """faiss binary range_search radius giving exactly distance <= threshold.

    Probed rather than assumed: index a vector at distance exactly `threshold` from
    the query and see whether radius=threshold returns it (non-strict) or not (strict).
    """
    index = make_index(engine)
    q = np.zeros((1, 32), dtype=np.uint8)
    at_t = np.zeros((1, 32), dtype=np.uint8)
    bits = np.unpackbits(at_t)
    bits[:threshold] = 1
    at_t = np.packbits(bits).reshape(1, 32)
    index.add(np.vstack([q, at_t]))
    _, dist, _ = index.range_search(q, threshold)
    strict = threshold not in dist.tolist()
    return (threshold + 1 if strict else threshold), strict


def run(args):
    base, queries, gt = load(args.data, args.n, args.threshold)
    radius, strict = radius_for(args.engine, args.threshold)
    rss0 = status_mb("VmRSS:")
    index = make_index(args.engine)
    t0 = time.perf_counter()
    index.add(base)
    build_s = time.perf_counter() - t0
    memory_mb = status_mb("VmRSS:") - rss0

    faiss.omp_set_num_threads(1)
    for i in range(WARMUP):
        index.range_search(queries[i : i + 1], radius)
    times, found, exact = [], 0, 0
    for i in range(QUERIES):
        q = queries[i : i + 1]
        t0 = time.perf_counter()
        lims, dist, ids = index.range_search(q, radius)
        times.append(time.perf_counter() - t0)
        got = set(ids[dist <= args.threshold].tolist())
        found += len(got & gt[i])
        exact += got == gt[i]
    times = np.array(times) * 1e6

    faiss.omp_set_num_threads(2)
    t0 = time.perf_counter()
    index.range_search(queries, radius)
    qps = QUERIES / (time.perf_counter() - t0)

    total = sum(len(g) for g in gt)
    row = {
        "engine": f"faiss {type(index).__name__}",
        "n": args.n,
        "threshold": args.threshold,
        "radius": radius,
        "strict_radius": strict,
        "build_s": build_s,
        "memory_mb": memory_mb,
        "hwm_mb": status_mb("VmHWM:"),
        "p50_us": float(np.percentile(times, 50)),
        "p99_us": float(np.percentile(times, 99)),
        "mean_us": float(times.mean()),
        "qps_2t": qps,
        "recall": found / total if total else 1.0,
        "exact_queries": int(exact),
    }
    print(json.dumps(row), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


def table(path):
    """Markdown table; with repeated runs, each cell is the median over the runs."""
    rows = [json.loads(line) for line in open(path) if line.strip()]
    keys = ["build_s", "memory_mb", "hwm_mb", "p50_us", "p99_us", "qps_2t", "recall"]
    groups = {}
    for r in rows:
        groups.setdefault((r["n"], r["engine"]), []).append(r)
    med = {
        k: {key: float(np.median([r[key] for r in g])) for key in keys} | {"runs": len(g)}
        for k, g in groups.items()
    }
    print(
        "| N | engine | runs | build (s) | memory (MB) | peak RSS (MB) | p50 (µs) | p99 (µs) "
        "| p50 speed-up vs flat | 2-thread queries/s | recall |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, engine in sorted(med, key=lambda k: (k[0], k[1] != "faiss IndexBinaryFlat", k[1])):
        m = med[(n, engine)]
        flat = med.get((n, "faiss IndexBinaryFlat"))
        speedup = f"{flat['p50_us'] / m['p50_us']:.1f}×" if flat else "n/a"
        print(
            f"| {n:,} | {engine} | {m['runs']} | {m['build_s']:.2f} | {m['memory_mb']:.0f} "
            f"| {m['hwm_mb']:.0f} | {m['p50_us']:.1f} | {m['p99_us']:.1f} | {speedup} "
            f"| {m['qps_2t']:.0f} | {m['recall']:.4f} |"
        )


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", required=True)
    r.add_argument("--n", type=int, required=True)
    r.add_argument("--engine", choices=["flat", "multihash"], required=True)
    r.add_argument("--threshold", type=int, default=31)
    r.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("file")
    args = parser.parse_args()
    if args.mode == "run":
        run(args)
    else:
        table(args.file)


if __name__ == "__main__":
    main()
