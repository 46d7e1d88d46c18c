"""The one place where data keys exist in clear: unwrapped on demand, cached per process.

Executors call `data_keys(handle)` from inside a UDF; the first call in a Python worker opens the
KMS provider and unwraps, later calls hit the cache. Keys never leave this module's cache except as
arguments to the primitives.
"""

from __future__ import annotations

import threading

from securepipe.crypto.keyring import KeyHandle, wrap_context
from securepipe.crypto.kms import KmsProvider, KmsSpec, open_provider

__all__ = ["clear", "data_keys"]

_lock = threading.Lock()
_providers: dict[KmsSpec, KmsProvider] = {}
_keys: dict[tuple[KmsSpec, str, int, bytes], bytes] = {}


def data_keys(handle: KeyHandle) -> dict[int, bytes]:
    """Clear data keys of every version of `handle`, unwrapping each at most once per process.

    Raises:
        KeyAccessError: the provider cannot be opened or refuses to unwrap.
    """
    out: dict[int, bytes] = {}
    with _lock:
        for version, wrapped in handle.wrapped.items():
            cache_key = (handle.kms, handle.name, version, wrapped)
            key = _keys.get(cache_key)
            if key is None:
                provider = _providers.get(handle.kms)
                if provider is None:
                    provider = _providers[handle.kms] = open_provider(handle.kms)
                key = provider.unwrap(wrapped, wrap_context(handle.name, version))
                _keys[cache_key] = key
            out[version] = key
    return out


def clear() -> None:
    """Forget every cached key and provider (tests, key destruction)."""
    with _lock:
        _keys.clear()
        _providers.clear()
