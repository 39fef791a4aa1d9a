#!/usr/bin/env bash
# The threatexchange plugin's tests, end to end against a real hub, in a virtual environment:
#
#   clients/threatexchange/run-tests.sh [VENV_DIR]     (default: target/txvenv under the repository)
#
# Installs the pinned packages of requirements.txt, the Python client (clients/python, or
# $COALITION_PY_CLIENT) and this package, checks the package with mypy --strict, then runs pytest. The hub binary is $COALITION_BIN or
# target/debug/coalition (build it first: `cargo build --bin coalition`). Exits with pytest's
# status, except that "no tests collected" (pytest's 5) is a failure too (exit 1).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${1:-$root/target/txvenv}"
# A relative VENV_DIR is taken from the current directory (the steps below run elsewhere).
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
client="${COALITION_PY_CLIENT:-$root/clients/python}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install -r "$here/requirements.txt"
"${pip[@]}" install --no-build-isolation "$client" "$here"
(cd "$here" && "$venv/bin/python" -m mypy --cache-dir "$venv/.mypy_cache" coalition_hub_threatexchange)
export COALITION_BIN="${COALITION_BIN:-$root/target/debug/coalition}"
set +e
(cd "$here" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests)
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "run-tests.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
