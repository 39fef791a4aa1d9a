"""RFC 9162 Merkle trees: whole-tree roots, a compact frontier, inclusion and consistency proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from coalition_hub.wire import node_hash


class ProofError(ValueError):
    """A proof that does not verify (the message says how)."""


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise ProofError(what)


EMPTY_ROOT = hashlib.sha256(b"").digest()


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of leaf hashes (RFC 9162 §2.1.1)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(tree_root(leaves[:k]), tree_root(leaves[k:]))


class Frontier:
    """The roots of the perfect subtrees of a tree, largest first: enough to append a leaf and
    compute the root, in O(log n) memory."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _need(len(hashes) == bin(size).count("1"), f"a frontier of size {size} has {bin(size).count('1')} hashes, not {len(hashes)}")
        _need(all(len(h) == 32 for h in hashes), "frontier hashes are 32 bytes")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        """Adds a leaf hash."""
        h = leaf
        n = self.size
        while n & 1:
            h = node_hash(self.hashes.pop(), h)
            n >>= 1
        self.hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        """The root of the tree so far."""
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> Frontier:
        """An independent copy."""
        return Frontier(self.size, list(self.hashes))


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2; raises ProofError."""
    _need(index < size, f"leaf index {index} is not below tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        _need(sn != 0, "inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    _need(sn == 0, "inclusion proof too short")
    _need(r == root, "inclusion proof does not lead to the root")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2; raises ProofError."""
    _need(0 < old_size <= new_size, "consistency sizes out of order")
    if old_size == new_size:
        _need(not proof and old_root == new_root, "equal sizes need an empty proof, equal roots")
        return
    path = list(proof)
    _need(all(len(p) == 32 for p in path), "proof hashes are 32 bytes")
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    _need(bool(path), "empty consistency proof")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        _need(sn != 0, "consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    _need(sn == 0, "consistency proof too short")
    _need(fr == old_root, "consistency proof does not give the old root")
    _need(sr == new_root, "consistency proof does not give the new root")
