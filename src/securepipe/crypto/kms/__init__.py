"""Key-encryption-key (KEK) providers behind one small interface.

A provider wraps and unwraps data keys; it never hands out its KEK. `KmsSpec` is the serialisable
description shipped to executors so that each Python worker can open the provider itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from securepipe.errors import KeyAccessError

__all__ = ["KmsProvider", "KmsSpec", "open_provider"]


class KmsProvider(Protocol):
    """Wraps and unwraps data keys under a KEK that stays inside the provider."""

    def wrap(self, key: bytes, context: str) -> bytes:
        """Encrypt `key`, bound to `context` (the key name and version)."""
        ...

    def unwrap(self, wrapped: bytes, context: str) -> bytes:
        """Decrypt a wrapped key; raises `KeyAccessError` on any failure."""
        ...

    def kek_id(self) -> str:
        """A stable, non-secret identifier of the KEK (recorded in the keyring)."""
        ...


@dataclass(frozen=True)
class KmsSpec:
    """Serialisable provider description: no secret in it, only where to find the KEK."""

    provider: str
    location: str


def open_provider(spec: KmsSpec, *, create: bool = False) -> KmsProvider:
    """Open the provider that `spec` describes.

    Args:
        spec: which provider and where its KEK lives.
        create: create a missing local master key (driver-side `keys init` and first runs only).

    Raises:
        KeyAccessError: unknown provider, or the provider refuses to open.
    """
    if spec.provider == "local":
        from securepipe.crypto.kms.local import LocalKms

        return LocalKms(spec.location, create=create)
    raise KeyAccessError(f"unknown KMS provider {spec.provider!r}")
