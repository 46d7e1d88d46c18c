"""Named, versioned data keys (DEKs) stored only wrapped by the KMS provider's KEK.

The keyring file (`<keystore>/keyring.json`) holds no secret by itself: each DEK is wrapped, and
the wrap is bound to the key's name and version. The whole file is sealed by an HMAC-SHA256 under a
MAC key that is itself wrapped by the KEK, so an edit (a `current` rolled back, a destroyed version
put back, a key swapped between names) is refused on load; a generation counter, recorded in every
commit, lets the pipeline refuse a keyring restored from an older copy. Changes are made under an
exclusive file lock (`<keystore>/.keyring.lock`) on a freshly read copy, so two processes that
each add a key keep both. The driver resolves `KeyHandle`s (wrapped material plus where the KEK is);
executors unwrap them once per Python process (`keycache`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from securepipe.config import KeyConfig, KeyStoreConfig
from securepipe.crypto.kms import KmsProvider, KmsSpec, generate_wrapped, open_provider
from securepipe.crypto.kms.local import MASTER_KEY_FILE
from securepipe.errors import KeyAccessError
from securepipe.locks import file_lock

__all__ = [
    "KEYRING_FILE",
    "KEY_LENGTH",
    "KeyHandle",
    "Keyring",
    "kms_spec",
    "rotatable",
    "rotate_local_master_key",
    "wrap_context",
]

KEYRING_FILE = "keyring.json"
LOCK_FILE = ".keyring.lock"
FORMAT = 2
_MAC_CONTEXT = "securepipe-keyring-mac"
# Keys whose outputs carry no version: a new version would silently give other outputs for the
# same value (tokens that no longer join, subject hashes that no longer find their keys).
_NOT_ROTATABLE = {
    "hmac": (
        "hmac tokens carry no key version: after a rotation the same value would get another "
        "token and joins between old and new partitions would break without an error"
    ),
    "fpe": "format-preserving tokens carry no key version",
}


def rotatable(key_type: str) -> bool:
    """Whether keys of this type can take a new version (`Keyring.rotate`)."""
    return key_type not in _NOT_ROTATABLE


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
    generation: int = 0

    @property
    def versions(self) -> list[int]:
        """All versions, oldest first."""
        return sorted(self.wrapped)


class Keyring:
    """The wrapped data keys of one key store."""

    def __init__(
        self, store: KeyStoreConfig, *, create: bool = False, allow_unsealed: bool = False
    ) -> None:
        self._store = store
        self._allow_unsealed = allow_unsealed
        self._spec = kms_spec(store)
        self._path = Path(store.path) / KEYRING_FILE
        self._kms: KmsProvider = open_provider(self._spec, create=create)
        self._create = create
        self._doc = self._load()
        if create and not self._path.exists():
            with self._changing():
                if not self._path.exists():
                    self._save()

    @property
    def generation(self) -> int:
        """How many times this keyring was changed (recorded in commits; never goes down)."""
        return int(self._doc.get("generation", 0))

    def _mac_key(self, doc: dict[str, Any]) -> bytes:
        try:
            return self._kms.unwrap(base64.b64decode(doc["mac_key"]), _MAC_CONTEXT)
        except (KeyError, ValueError, KeyAccessError):
            raise KeyAccessError(
                f"keyring {self._path}: its integrity key cannot be opened with the configured "
                "KEK; refusing to use it"
            ) from None

    @staticmethod
    def _mac(key: bytes, doc: dict[str, Any]) -> str:
        body = {k: v for k, v in doc.items() if k != "mac"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(key, canonical, hashlib.sha256).hexdigest()

    def _load(self) -> dict[str, Any]:
        if not self._path.exists():
            if not self._create:
                # Never regenerated silently: a new keyring cannot read what the lost one
                # wrote, and its new subject index key would find no key to destroy.
                raise KeyAccessError(
                    f"keyring {self._path} does not exist: data keys are created only by "
                    "`securepipe keys init`; if this lakehouse was written before, restore the "
                    "keyring from a backup instead"
                )
            return {"format": FORMAT, "kek": self._kms.kek_id(), "keys": {}, "generation": 0}
        try:
            doc: dict[str, Any] = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise KeyAccessError(f"keyring {self._path} is unreadable or corrupt") from None
        if doc.get("kek") != self._kms.kek_id():
            raise KeyAccessError(
                f"keyring {self._path} was wrapped by KEK {doc.get('kek')!r}, "
                f"not by the configured one {self._kms.kek_id()!r}"
            )
        if "mac" not in doc:
            if self._allow_unsealed:
                return doc
            raise KeyAccessError(
                f"keyring {self._path} carries no integrity seal (written before securepipe "
                "sealed keyrings, or the seal was stripped): check it against your backup, then "
                "run `securepipe keys seal` once"
            )
        if not hmac.compare_digest(str(doc["mac"]), self._mac(self._mac_key(doc), doc)):
            raise KeyAccessError(
                f"keyring {self._path} was modified outside securepipe (integrity check "
                "failed): refusing to use it; restore it from a backup"
            )
        return doc

    def _save(self) -> None:
        doc = self._doc
        doc["format"] = FORMAT
        doc["generation"] = int(doc.get("generation", 0)) + 1
        if "mac_key" not in doc:
            doc["mac_key"] = base64.b64encode(generate_wrapped(self._kms, 32, _MAC_CONTEXT)).decode(
                "ascii"
            )
        doc["mac"] = self._mac(self._mac_key(doc), doc)
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".keyring-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)
        # The rename is durable only once the folder is: a crash must not bring back a keyring
        # that no longer holds a key version the tables were written with.
        folder = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """Read-modify-write under an exclusive lock on a freshly read copy."""
        with file_lock(self._path.parent / LOCK_FILE, exclusive=True, wait=120, what="keyring"):
            self._doc = self._load()
            yield

    def seal(self) -> int:
        """Seal a keyring written before keyrings were sealed (after checking it by hand).

        Returns the new generation.
        """
        with file_lock(self._path.parent / LOCK_FILE, exclusive=True, wait=120, what="keyring"):
            self._save()
        return self.generation

    def names(self) -> list[str]:
        """Names of the keys in the keyring."""
        return sorted(self._doc["keys"])

    def _add_version(self, name: str, key_type: str) -> int:
        entry = self._doc["keys"].setdefault(name, {"type": key_type, "current": 0, "versions": {}})
        version = max([int(entry["current"]), *entry.get("destroyed", [])]) + 1
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
        missing = [n for n in declared if n not in self._doc["keys"]]
        if missing or not self._path.exists():
            with self._changing():
                created = self._ensure(declared)
                if created or not self._path.exists():
                    self._save()
                return created
        return self._ensure(declared)

    def _ensure(self, declared: Mapping[str, KeyConfig]) -> list[str]:
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
        return created

    def rotate(self, name: str) -> int:
        """Add a new current version of key `name`; old versions keep decrypting.

        Raises:
            KeyAccessError: `hmac` and `fpe` keys, whose outputs carry no version: a new version
                could not be told from the old one. The message says how to migrate instead.
        """
        with self._changing():
            entry = self._entry(name)
            reason = _NOT_ROTATABLE.get(entry["type"])
            if reason is not None:
                raise KeyAccessError(
                    f"key {name!r} ({entry['type']}) cannot be rotated: {reason}. To move to a new "
                    "key, declare one under a new name, point the columns at it and re-run every "
                    "date from its landing files (`securepipe run --from ... --to ... --force`); "
                    "the subject index key of erasure cannot be replaced (it names every subject "
                    "key and tombstone)"
                )
            version = self._add_version(name, entry["type"])
            self._save()
        return version

    def destroy(self, name: str, version: int) -> list[Path]:
        """Delete the wrapped material of one version: its data becomes unreadable for good.

        Returns:
            The retired keyring copies in the key store folder (`keyring.json.retired-*`, kept by
            `keys rewrap` for old backups) that still hold this version, wrapped under a retired
            master key: delete them, with that master key, once those backups expire.
        """
        with self._changing():
            entry = self._entry(name)
            if str(version) not in entry["versions"]:
                raise KeyAccessError(f"key {name!r} has no version {version}")
            if int(entry["current"]) == version:
                raise KeyAccessError(f"key {name!r}: rotate before destroying the current version")
            del entry["versions"][str(version)]
            entry.setdefault("destroyed", []).append(version)
            self._save()
        survivors = []
        for retired in sorted(self._path.parent.glob(f"{KEYRING_FILE}.retired-*")):
            try:
                old = json.loads(retired.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if str(version) in old.get("keys", {}).get(name, {}).get("versions", {}):
                survivors.append(retired)
        return survivors

    def rewrap(self, new_store: KeyStoreConfig, *, create: bool = True) -> str:
        """Re-wrap every data key under the KEK of `new_store`; the data is not touched.

        The keyring is written atomically to `new_store.path` (the same folder for HSM and cloud
        KEKs; a staging folder for a new local master key, see `rotate_local_master_key`), bound
        to the new KEK and sealed under a new MAC key. Returns the new KEK id.
        """
        new_spec = kms_spec(new_store)
        new_kms = open_provider(new_spec, create=create)
        if new_kms.kek_id() == self._kms.kek_id():
            raise KeyAccessError("rewrap needs a different KEK than the current one")
        with self._changing():
            for name, entry in self._doc["keys"].items():
                for version, data in entry["versions"].items():
                    context = wrap_context(name, int(version))
                    clear = self._kms.unwrap(base64.b64decode(data["wrapped"]), context)
                    data["wrapped"] = base64.b64encode(new_kms.wrap(clear, context)).decode("ascii")
                    del clear
            self._doc.pop("mac_key", None)
            self._doc["kek"] = new_kms.kek_id()
            self._doc["rewrapped"] = datetime.now(UTC).isoformat(timespec="seconds")
            self._path = Path(new_store.path) / KEYRING_FILE
            self._kms, self._spec = new_kms, new_spec
            self._save()
        return new_kms.kek_id()

    def record_encryptions(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Add random-nonce encryption counts (`{"name:vN": n}`) to each key version's total.

        Returns:
            The new totals of the versions counted.
        """
        totals: dict[str, int] = {}
        with self._changing():
            for label, n in counts.items():
                name, _, version = label.rpartition(":v")
                data = self._doc["keys"].get(name, {}).get("versions", {}).get(version)
                if data is None:
                    continue
                data["encryptions"] = int(data.get("encryptions", 0)) + int(n)
                totals[label] = data["encryptions"]
            self._save()
        return totals

    def _entry(self, name: str) -> dict[str, Any]:
        try:
            entry: dict[str, Any] = self._doc["keys"][name]
        except KeyError:
            raise KeyAccessError(
                f"key {name!r} is not in keyring {self._path}; run `securepipe keys init`"
            ) from None
        return entry

    def key_type(self, name: str) -> str:
        """The type of key `name` (aead, hmac, daead, fpe)."""
        return str(self._entry(name)["type"])

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
            generation=self.generation,
        )

    def describe(self) -> list[dict[str, Any]]:
        """Name, type, current version and creation dates of every key (no key material)."""
        return [
            {
                "name": name,
                "type": entry["type"],
                "current": entry["current"],
                "versions": {v: d["created"] for v, d in sorted(entry["versions"].items())},
                "encryptions": {
                    v: int(d.get("encryptions", 0)) for v, d in sorted(entry["versions"].items())
                },
                "destroyed": sorted(entry.get("destroyed", [])),
            }
            for name, entry in sorted(self._doc["keys"].items())
        ]


def rotate_local_master_key(store: KeyStoreConfig) -> str:
    """Replace the local master key by a new one and re-wrap every data key under it.

    The old master key and keyring are kept as `*.retired-<timestamp>` (mode 0600) so that
    backups made before the rotation stay readable; destroy them once those backups expire.
    Returns the new KEK id.
    """
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
