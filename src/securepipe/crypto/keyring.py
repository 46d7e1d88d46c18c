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
from securepipe.crypto.kms import KmsProvider, KmsSpec, generate_wrapped, open_provider
from securepipe.errors import KeyAccessError

__all__ = [
    "KEYRING_FILE",
    "KEY_LENGTH",
    "KeyHandle",
    "Keyring",
    "kms_spec",
    "rotate_local_master_key",
    "wrap_context",
]

KEYRING_FILE = "keyring.json"
KEY_LENGTH = {"aead": 32, "hmac": 32, "daead": 64, "fpe": 32}


def kms_spec(store: KeyStoreConfig) -> KmsSpec:
    """The serialisable provider description of a key store (no secret in it)."""
    if store.provider == "pkcs11" and store.pkcs11 is not None:
        c = store.pkcs11
        return KmsSpec(
            "pkcs11",
            c.module,
            (("token_label", c.token_label), ("key_label", c.key_label), ("pin_env", c.pin_env)),
        )
    if store.provider == "aws-kms" and store.aws is not None:
        a = store.aws
        return KmsSpec(
            "aws-kms", a.key_id, (("region", a.region), ("endpoint_url", a.endpoint_url or ""))
        )
    return KmsSpec(provider="local", location=str(Path(store.path).resolve()))


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
        self._store = store
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
        wrapped = generate_wrapped(self._kms, KEY_LENGTH[key_type], wrap_context(name, version))
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
        """Add a new current version of key `name`; old versions keep decrypting.

        Raises:
            KeyAccessError: `fpe` keys: their tokens carry no version, so a new version could not
                be told from the old one at detokenization. Rotate them by declaring a new key
                name and re-tokenizing (`jobs/reencrypt.py`).
        """
        entry = self._entry(name)
        if entry["type"] == "fpe":
            raise KeyAccessError(
                f"key {name!r} is an fpe key: format-preserving tokens carry no key version; "
                "declare a new key name and re-tokenize instead of rotating"
            )
        version = self._add_version(name, entry["type"])
        self._save()
        return version

    def destroy(self, name: str, version: int) -> None:
        """Delete the wrapped material of one version: its data becomes unreadable for good."""
        entry = self._entry(name)
        if str(version) not in entry["versions"]:
            raise KeyAccessError(f"key {name!r} has no version {version}")
        if int(entry["current"]) == version:
            raise KeyAccessError(f"key {name!r}: rotate before destroying the current version")
        del entry["versions"][str(version)]
        entry.setdefault("destroyed", []).append(version)
        self._save()

    def rewrap(self, new_store: KeyStoreConfig, *, create: bool = True) -> str:
        """Re-wrap every data key under the KEK of `new_store`; the data is not touched.

        The keyring is written atomically to `new_store.path` (the same folder for HSM and cloud
        KEKs; a staging folder for a new local master key, see `rotate_local_master_key`), bound
        to the new KEK. Returns the new KEK id.
        """
        new_spec = kms_spec(new_store)
        new_kms = open_provider(new_spec, create=create)
        if new_kms.kek_id() == self._kms.kek_id():
            raise KeyAccessError("rewrap needs a different KEK than the current one")
        for name, entry in self._doc["keys"].items():
            for version, data in entry["versions"].items():
                context = wrap_context(name, int(version))
                clear = self._kms.unwrap(base64.b64decode(data["wrapped"]), context)
                data["wrapped"] = base64.b64encode(new_kms.wrap(clear, context)).decode("ascii")
                del clear
        self._doc["kek"] = new_kms.kek_id()
        self._doc["rewrapped"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._path = Path(new_store.path) / KEYRING_FILE
        self._save()
        self._kms, self._spec = new_kms, new_spec
        return new_kms.kek_id()

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


def rotate_local_master_key(store: KeyStoreConfig) -> str:
    """Replace the local master key by a new one and re-wrap every data key under it.

    The old master key and keyring are kept as `*.retired-<timestamp>` (mode 0600) so that
    backups made before the rotation stay readable; destroy them once those backups expire.
    Returns the new KEK id.
    """
    from securepipe.crypto.kms.local import MASTER_KEY_FILE

    if store.provider != "local":
        raise KeyAccessError("rotate_local_master_key works on the local provider only")
    folder = Path(store.path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    staging = folder / f".rewrap-{stamp}"
    keyring = Keyring(store)
    new_id = keyring.rewrap(KeyStoreConfig(provider="local", path=str(staging)))
    for name in (MASTER_KEY_FILE, KEYRING_FILE):
        if (folder / name).exists():
            os.replace(folder / name, folder / f"{name}.retired-{stamp}")
        os.replace(staging / name, folder / name)
    staging.rmdir()
    return new_id
