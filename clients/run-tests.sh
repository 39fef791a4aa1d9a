#!/usr/bin/env bash
# Every Python suite, each in a virtual environment of its own under target/ (made on first
# use, with the pinned packages of its requirements file), against the hub binary
# $COALITION_BIN (default: target/debug/coalition, built by `cargo test`; built here if missing):
#   1. clients/python/run-checks.sh      the Python client: mypy, the test vectors, its pytest suite
#   2. clients/python/interop            TAXII 2.1 read by taxii2-client + stix2-validator, and
#                                        `coalition hash` against the reference PDQ (pdqhash) and
#                                        python-threatexchange's URL-MD5, on images and on the
#                                        frames of videos (ffmpeg from imageio-ffmpeg)
#   3. clients/threatexchange/run-tests.sh  the threatexchange plugin driven by the real CLI
#
#   clients/run-tests.sh
#
# Exits non-zero if any suite fails, and if a pytest run collected no test (its status 5).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ -z "${COALITION_BIN:-}" ]; then
    COALITION_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/coalition"
    if [ ! -x "$COALITION_BIN" ]; then
        echo "== building the hub binary for the tests (cargo build --bin coalition)"
        cargo build --quiet --bin coalition
    fi
fi
export COALITION_BIN

echo "==== 1. the Python client"
bash clients/python/run-checks.sh target/pyvenv

echo "==== 2. interop: TAXII clients and reference hashes"
venv=target/interopvenv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip --disable-pip-version-check --quiet install \
    -r clients/python/requirements-interop.txt -r clients/python/requirements-interop-media.txt
status=0
"$venv/bin/pytest" -q -p no:cacheprovider clients/python/interop || status=$?
if [ "$status" -eq 5 ]; then
    echo "interop: pytest collected no test: failing" >&2
    exit 1
elif [ "$status" -ne 0 ]; then
    exit "$status"
fi

echo "==== 3. the threatexchange plugin"
bash clients/threatexchange/run-tests.sh target/txvenv
