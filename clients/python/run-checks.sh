#!/usr/bin/env bash
# Checks the published test vectors with Python's protobuf (check_vectors.py), in a virtual
# environment with the pinned packages of requirements.txt.
#
#   clients/python/run-checks.sh [VENV_DIR]     (default: target/pyvenv under the repository)
#
# Creates VENV_DIR if needed; exits with check_vectors.py's status.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${1:-$root/target/pyvenv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
exec "$venv/bin/python" "$here/check_vectors.py"
