"""Named, versioned data keys (DEKs) stored only wrapped by the KMS provider's KEK.

The keyring file (`<keystore>/keyring.json`) holds no secret by itself: each DEK is wrapped, and
the wrap is bound to the key's name and version. The driver resolves `KeyHandle`s (wrapped material
plus where the KEK is); executors unwrap them once per Python process (`keycache`).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from securepipe.config import KeyConfig, KeyStoreConfig
from securepipe.crypto._primitives import random_key
from securepipe.crypto.kms import KmsProvider, KmsSpec, open_provider
from securepipe.errors import KeyAccessError

__all__ = ["KEYRING_FILE", "KeyHandle", "Keyring", "kms_spec"]

KEYRING_FILE = "keyring.json"
_KEY_LENGTH = {"aead": 32, "hmac": 32}


def kms_spec(store: KeyStoreConfig) -> KmsSpec:
    """The serialisable provider description of a key store."""
    return KmsSpec(provider=store.provider, location=str(Path(store.path).resolve()))


def wrap_context(name: str, version: int) -> str:
    """What a wrapped DEK is bound to: its name and version."""
    return f"securepipe-dek:{name}:v{version}"


@dataclass(frozen=True)
class KeyHandle:
    """Everything an executor needs to obtain one key's versions, and nothing secret."""

    name: str
    type: str
    current: int
    wrapped: Mapping[int, bytes] = field(repr=False)
    kms: KmsSpec

    @property
    def versions(self) -> list[int]:
        """All versions, oldest first."""
        return sorted(self.wrapped)


class Keyring:
    """The wrapped data keys of one key store."""

    def __init__(self, store: KeyStoreConfig, *, create: bool = False) -> None:
        self._spec = kms_spec(store)
        self._path = Path(store.path) / KEYRING_FILE
        self._kms: KmsProvider = open_provider(self._spec, create=create)
        self._doc = self._load()

    def _load(self) -> dict[str, Any]:
        if not self._path.exists():
            return {"format": 1, "kek": self._kms.kek_id(), "keys": {}}
        try:
            doc: dict[str, Any] = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise KeyAccessError(f"keyring {self._path} is unreadable or corrupt") from None
        if doc.get("kek") != self._kms.kek_id():
            raise KeyAccessError(
                f"keyring {self._path} was wrapped by KEK {doc.get('kek')!r}, "
                f"not by the configured one {self._kms.kek_id()!r}"
            )
        return doc

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".keyring-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self._doc, fh, indent=2, sort_keys=True)
        os.replace(tmp, self._path)

    def names(self) -> list[str]:
        """Names of the keys in the keyring."""
        return sorted(self._doc["keys"])

    def _add_version(self, name: str, key_type: str) -> int:
        entry = self._doc["keys"].setdefault(name, {"type": key_type, "current": 0, "versions": {}})
        version = int(entry["current"]) + 1
        wrapped = self._kms.wrap(random_key(_KEY_LENGTH[key_type]), wrap_context(name, version))
        entry["versions"][str(version)] = {
            "wrapped": base64.b64encode(wrapped).decode("ascii"),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        entry["current"] = version
        return version

    def ensure(self, declared: Mapping[str, KeyConfig]) -> list[str]:
        """Create version 1 of every declared key that does not exist yet.

        Returns:
            The names of the keys created.

        Raises:
            KeyAccessError: an existing key has another type than the declared one.
        """
        created = []
        for name, cfg in sorted(declared.items()):
            entry = self._doc["keys"].get(name)
            if entry is None:
                self._add_version(name, cfg.type)
                created.append(name)
            elif entry["type"] != cfg.type:
                raise KeyAccessError(
                    f"key {name!r} exists with type {entry['type']!r}, configured as {cfg.type!r}"
                )
        if created:
            self._save()
        return created

    def rotate(self, name: str) -> int:
        """Add a new current version of key `name`; old versions keep decrypting."""
        entry = self._entry(name)
        version = self._add_version(name, entry["type"])
        self._save()
        return version

    def _entry(self, name: str) -> dict[str, Any]:
        try:
            entry: dict[str, Any] = self._doc["keys"][name]
        except KeyError:
            raise KeyAccessError(
                f"key {name!r} is not in keyring {self._path}; run `securepipe keys init`"
            ) from None
        return entry

    def handle(self, name: str) -> KeyHandle:
        """The non-secret handle of key `name` (all versions) for shipping to executors."""
        entry = self._entry(name)
        wrapped = {int(v): base64.b64decode(d["wrapped"]) for v, d in entry["versions"].items()}
        return KeyHandle(
            name=name,
            type=entry["type"],
            current=int(entry["current"]),
            wrapped=wrapped,
            kms=self._spec,
        )

    def describe(self) -> list[dict[str, Any]]:
        """Name, type, current version and creation dates of every key (no key material)."""
        return [
            {
                "name": name,
                "type": entry["type"],
                "current": entry["current"],
                "versions": {v: d["created"] for v, d in sorted(entry["versions"].items())},
            }
            for name, entry in sorted(self._doc["keys"].items())
        ]
