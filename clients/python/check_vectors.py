#!/usr/bin/env python3
"""Checks the published test vectors (docs/test-vectors/*.json) with the Python client package.

A thin script over `coalition_hub.vectors` (the package's own byte-level code, an independent
second implementation of docs/PROTOCOL.md): every header, body and sync entry re-encodes byte
for byte, PAE and statement ids, key ids, ed25519 signatures (and the seeds' public keys), body
digests, relayed-entry leaves, Merkle leaves and roots, inclusion and consistency proofs, and
every checkpoint note's signature under its vector's verifier key.

Usage: check_vectors.py [VECTOR.json ...]   (default: every docs/test-vectors/*.json)
Needs the package installed (`pip install ./clients/python`); ends with `N passed, M failed`
and exits 0 only if every vector passes.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main(argv: list[str]) -> int:
    """Checks the vectors named in argv (default: all); returns the exit status."""
    from coalition_hub.vectors import check_files, vector_paths

    paths = argv[1:] or vector_paths(ROOT)
    passed, failed = check_files(paths, root=ROOT)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
