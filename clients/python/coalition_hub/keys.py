"""Signing keys: the ed25519 keys the CLI writes (`certs/members/<id>.sign.key`, PKCS#8 v1 PEM),
loaded with `cryptography`, and the member id a client certificate names."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from coalition_hub.errors import KeyFileError
from coalition_hub.wire import key_id

_MEMBER_URI = "urn:coalition:member:"


@dataclass(frozen=True)
class SigningKey:
    """A member's ed25519 signing key and its key id (§2.1)."""

    private: Ed25519PrivateKey

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        """16 lowercase hex characters: SHA-256(public key)[:8]."""
        return key_id(self.public_bytes)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte ed25519 signature of `message`."""
        return self.private.sign(message)

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key of a 32-byte seed."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem_file(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Reads a PKCS#8 PEM ed25519 key, as `coalition pki init` / `keygen` write it."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise KeyFileError(f"{path}: {e.strerror}") from e
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise KeyFileError(
                f"{path}: not a readable PKCS#8 PEM ed25519 key ({e}); keys written as PKCS#8 v2 "
                "by old builds need rewriting as v1"
            ) from e
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an ed25519 key")
        return cls(key)

    def to_pem(self) -> bytes:
        """PKCS#8 v1 PEM."""
        return self.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def member_id_of_certificate(cert_pem: bytes) -> str:
    """The member a client certificate names: its SAN URI `urn:coalition:member:<id>` (§1)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as e:
        raise KeyFileError(f"the client certificate names no member: {e}") from e
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(_MEMBER_URI):
            return uri[len(_MEMBER_URI):]
    raise KeyFileError("the client certificate has no SAN URI urn:coalition:member:<id>")
