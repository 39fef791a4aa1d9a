"""Fixtures: a real hub per test module, clients for its members."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hubprocess import Hub  # noqa: E402

from coalition_hub import HubClient, SigningKey  # noqa: E402


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    h = Hub(tmp_path_factory.mktemp("hub"))
    try:
        yield h
    finally:
        h.stop()


def client_of(hub: Hub, member: str) -> HubClient:
    """A client acting as `member`."""
    return HubClient.from_certs_dir(hub.addr, hub.certs, member)


def key_of(hub: Hub, member: str) -> SigningKey:
    """`member`'s signing key as `pki init` wrote it."""
    return SigningKey.from_pem_file(hub.certs / "members" / f"{member}.sign.key")
