#!/usr/bin/env bash
# The Python client's checks, in a virtual environment with the pinned packages of
# requirements.txt:
#   1. installs the package from this directory (its build step compiles ../../proto with
#      grpcio-tools: the generated stubs are not committed);
#   2. type-checks it (mypy --strict) and checks the published test vectors with it
#      (check_vectors.py), signatures included;
#   3. runs the pytest suite (tests/) against a real hub: the binary $COALITION_BIN, or
#      ${CARGO_TARGET_DIR:-<repo>/target}/debug/coalition, built with cargo if missing.
#
#   clients/python/run-checks.sh [VENV_DIR]     (default: target/pyvenv under the repository)
#
# Exits non-zero if any step fails, and if pytest ran no test (its exit status 5).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$(realpath -m "${1:-$root/target/pyvenv}")"  # absolute: the steps below change directory
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install -r "$here/requirements.txt"
"${pip[@]}" install --no-build-isolation --force-reinstall --no-deps "$here"

echo "== mypy --strict (the package is typed)"
(cd "$here" && "$venv/bin/mypy" coalition_hub)

echo "== test vectors (coalition_hub.vectors)"
"$venv/bin/python" "$here/check_vectors.py"

if [ -z "${COALITION_BIN:-}" ]; then
    COALITION_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/coalition"
    if [ ! -x "$COALITION_BIN" ]; then
        echo "== building the hub binary for the tests (cargo build --bin coalition)"
        (cd "$root" && cargo build --quiet --bin coalition)
    fi
fi
export COALITION_BIN
echo "== pytest (hub: $COALITION_BIN)"
status=0
(cd "$here" && "$venv/bin/pytest" -q -p no:cacheprovider tests) || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no test: failing" >&2
    exit 1
fi
exit "$status"
