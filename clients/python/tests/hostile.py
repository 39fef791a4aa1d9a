"""A hostile hub test double: a small gRPC server over the same mutual TLS that serves a bent
copy of a real hub's log (Hub.Sync) and checkpoints it signs with the real hub key (or any
other), so each test can tell one lie and check the client refuses it by name."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from hubprocess import HUB_NAME, Hub

from coalition_hub import SigningKey
from coalition_hub.merkle import tree_root
from coalition_hub.note import note_key_id
from coalition_hub.pb import audit as apb
from coalition_hub.pb import audit_grpc, hub_grpc
from coalition_hub.pb import hub as hpb
from coalition_hub.wire import leaf_data, leaf_hash, node_hash


def sign_note(size: int, root: bytes, key: SigningKey, name: str = HUB_NAME) -> str:
    """A C2SP checkpoint note signed by `key` under `name`."""
    text = f"{name}\n{size}\n{base64.b64encode(root).decode()}\n"
    sig = note_key_id(name, key.public_bytes) + key.sign(text.encode())
    return f"{text}\n\u2014 {name} {base64.b64encode(sig).decode()}\n"


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [tree_root(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [tree_root(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [tree_root(leaves[:k])]


def consistency_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 PROOF(m, D[n])."""
    return [] if m == 0 or m == len(leaves) else _subproof(m, leaves, True)


def capture(hub: Hub) -> list[hpb.SyncEntry]:
    """Every entry of the real hub's log, as an auditor receives them (bodies included)."""
    from conftest import client_of

    with client_of(hub, "auditor") as c:
        out = []
        for resp in c._hub.Sync(hpb.SyncRequest(from_seq=0), timeout=30):
            if resp.WhichOneof("item") == "entry":
                e = hpb.SyncEntry()
                e.CopyFrom(resp.entry)
                out.append(e)
        return out


@dataclass
class Lies:
    """What the double serves: entries (bent by the test), and optionally a checkpoint note,
    a progress message's next_seq, and leaves to compute checkpoints over."""

    entries: list[hpb.SyncEntry]
    note: str | None = None
    progress_next_seq: int | None = None
    hub_key: SigningKey | None = None
    leaves: list[bytes] = field(default_factory=list)
    #: Flip a byte of every consistency proof served.
    bad_proof: bool = False
    #: Cosignature lines served with every checkpoint.
    cosignatures: list[str] = field(default_factory=list)

    def log_leaves(self) -> list[bytes]:
        return self.leaves or [leaf_hash(leaf_data(e.statement_id, e.received_at_ms)) for e in self.entries]


class _Servicer(hub_grpc.HubServicer, audit_grpc.AuditServicer):
    def __init__(self, lies: Lies) -> None:
        self.lies = lies

    def Sync(self, request: hpb.SyncRequest, context: grpc.ServicerContext) -> Iterator[hpb.SyncResponse]:
        entries = self.lies.entries
        for e in entries:
            if e.seq >= request.from_seq:
                yield hpb.SyncResponse(entry=e)
        n = self.lies.progress_next_seq if self.lies.progress_next_seq is not None else (entries[-1].seq + 1 if entries else 0)
        yield hpb.SyncResponse(progress=hpb.SyncProgress(next_seq=n, log_size=n))

    def GetCheckpoint(self, request: apb.GetCheckpointRequest, context: grpc.ServicerContext) -> apb.SignedCheckpoint:
        if self.lies.note is not None:
            return apb.SignedCheckpoint(note=self.lies.note, cosignatures=self.lies.cosignatures)
        leaves = self.lies.log_leaves()
        assert self.lies.hub_key is not None
        note = sign_note(len(leaves), tree_root(leaves), self.lies.hub_key)
        return apb.SignedCheckpoint(note=note, cosignatures=self.lies.cosignatures)

    def GetConsistencyProof(self, request: apb.GetConsistencyProofRequest, context: grpc.ServicerContext) -> apb.ConsistencyProof:
        leaves = self.lies.log_leaves()[: request.new_size]
        proof = consistency_proof(request.old_size, leaves)
        if self.lies.bad_proof and proof:
            proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
        return apb.ConsistencyProof(old_size=request.old_size, new_size=request.new_size, proof=proof)


class HostileHub:
    """Serves `lies` on 127.0.0.1 over mutual TLS with the real hub's certificate."""

    def __init__(self, hub: Hub, lies: Lies) -> None:
        c = hub.certs
        if lies.hub_key is None:
            lies.hub_key = SigningKey.from_pem_file(c / "hub.sign.key")
        creds = grpc.ssl_server_credentials(
            [((c / "hub.key").read_bytes(), (c / "hub.pem").read_bytes())],
            root_certificates=(c / "ca.pem").read_bytes(),
            require_client_auth=True,
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        servicer = _Servicer(lies)
        hub_grpc.add_HubServicer_to_server(servicer, self.server)
        audit_grpc.add_AuditServicer_to_server(servicer, self.server)
        port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.addr = f"127.0.0.1:{port}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)


__all__ = ["HostileHub", "Lies", "capture", "consistency_proof", "node_hash", "sign_note"]
