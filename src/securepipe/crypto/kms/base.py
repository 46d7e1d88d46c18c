"""The KEK provider interface and its serialisable description.

A provider wraps and unwraps data keys; it never hands out its KEK. `KmsSpec` is the serialisable
description shipped to executors so that each Python worker can open the provider itself: it holds
where the KEK is and how to reach it, never a secret (PINs and credentials come from the
environment of the process that opens the provider).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

__all__ = ["KmsProvider", "KmsSpec", "generate_wrapped"]


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
    """Serialisable provider description: which provider, where its KEK is; nothing secret."""

    provider: str
    location: str
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str, default: str = "") -> str:
        """One provider parameter."""
        return dict(self.params).get(name, default)


def generate_wrapped(provider: KmsProvider, length: int, context: str) -> bytes:
    """A fresh random data key, returned only in wrapped form.

    Providers that can generate inside the KMS (`generate_wrapped` method, e.g. AWS
    GenerateDataKey) do; the others wrap a key from the operating system's CSPRNG.
    """
    native = getattr(provider, "generate_wrapped", None)
    if native is not None:
        wrapped: bytes = native(length, context)
        return wrapped
    return provider.wrap(os.urandom(length), context)
