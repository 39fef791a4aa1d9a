#!/usr/bin/env bash
# Side-by-side benchmark: coalition_hub PdqIndex vs faiss IndexBinaryFlat and
# IndexBinaryMultiHash on the same fixed-seed PDQ data (threshold: distance <= 31).
#
# Usage: benches/peers/run.sh [--1m]
#   --1m               only N = 1,000,000 (also: PDQ_SIZES=1000000)
#   PDQ_DATA_DIR=DIR   data directory (default target/pdq-data; generated if absent)
#   PDQ_THRESHOLD=T    inclusive distance threshold (default 31)
#   PDQ_REPEAT=R       repeat every measurement R times (default 1); the table shows
#                      the median of each column over the R runs (the machine is noisy)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

SIZES="${PDQ_SIZES:-1000000,10000000}"
if [[ "${1:-}" == "--1m" ]]; then
    SIZES=1000000
fi
THRESHOLD="${PDQ_THRESHOLD:-31}"
export PDQ_DATA_DIR="${PDQ_DATA_DIR:-$ROOT/target/pdq-data}"
export PDQ_THRESHOLD="$THRESHOLD"
VENV="$ROOT/target/peers-venv"
OUT="$ROOT/target/peers-results.jsonl"

if ! "$VENV/bin/python" -c "import faiss, numpy" 2>/dev/null; then
    echo "== creating Python venv in $VENV (faiss-cpu, numpy)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet faiss-cpu numpy
fi
"$VENV/bin/python" -c "import faiss, numpy; print('faiss', faiss.__version__, '| numpy', numpy.__version__)"

echo "== data + brute-force ground truth (generated once, fixed seed) in $PDQ_DATA_DIR"
PDQ_GENERATE_ONLY=1 PDQ_SIZES="$SIZES" cargo bench --quiet --bench pdq

REPEAT="${PDQ_REPEAT:-1}"
rm -f "$OUT"
IFS=',' read -r -a NS <<< "$SIZES"
for ((rep = 1; rep <= REPEAT; rep++)); do
    for n in "${NS[@]}"; do
        for engine in flat multihash; do
            echo "== run $rep/$REPEAT: faiss $engine, N=$n"
            # One process per index so RSS and peak RSS belong to that index alone.
            "$VENV/bin/python" "$HERE/faiss_bench.py" run --data "$PDQ_DATA_DIR" --n "$n" \
                --engine "$engine" --threshold "$THRESHOLD" --out "$OUT"
        done
        echo "== run $rep/$REPEAT: coalition_hub PdqIndex, N=$n"
        PDQ_JSON="$OUT" PDQ_SIZES="$n" cargo bench --quiet --bench pdq
    done
done

echo
echo "== results: median of $REPEAT run(s); threshold <= $THRESHOLD, 1,000 queries; latency on 1 thread"
"$VENV/bin/python" "$HERE/faiss_bench.py" table "$OUT"
