"""The embedded default KMS: a 256-bit master key in a 0600 file outside the lakehouse.

Good for trying the product and for single-machine use. The file is the KEK: whoever reads it can
unwrap every data key, so the provider refuses a file that group or others can read.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
from pathlib import Path

from securepipe.crypto import _primitives as p
from securepipe.errors import DecryptionError, KeyAccessError

__all__ = ["MASTER_KEY_FILE", "LocalKms"]

MASTER_KEY_FILE = "master.key"
_log = logging.getLogger(__name__)


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyAccessError(
            f"master key file {path} is readable by group or others (mode {mode:04o}); "
            f"run: chmod 600 {path}"
        )


class LocalKms:
    """KEK held in `<directory>/master.key`; wraps data keys with AES-256-GCM."""

    def __init__(self, directory: str, *, create: bool = False) -> None:
        self._path = Path(directory) / MASTER_KEY_FILE
        if not self._path.exists():
            if not create:
                raise KeyAccessError(
                    f"master key file {self._path} does not exist; run `securepipe keys init`"
                )
            self._create()
        _check_private(self._path)
        try:
            kek = base64.b64decode(self._path.read_bytes().strip(), validate=True)
        except (OSError, ValueError):
            raise KeyAccessError(f"master key file {self._path} is unreadable or corrupt") from None
        if len(kek) != 32:
            raise KeyAccessError(f"master key file {self._path} does not hold a 256-bit key")
        self._kek = kek
        self._id = "local:" + hashlib.sha256(b"securepipe-kek-id" + kek).hexdigest()[:16]

    def _create(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(os.urandom(32)) + b"\n")
        _log.warning(
            "created a NEW local master key at %s (mode 0600). It protects every data key: keep it "
            "outside the lakehouse, back it up, and use an HSM or a cloud KMS in production. "
            "Losing it makes all encrypted data unreadable.",
            self._path,
        )

    def wrap(self, key: bytes, context: str) -> bytes:
        """Encrypt `key` under the master key, bound to `context`."""
        return p.wrap(self._kek, key, context.encode())

    def unwrap(self, wrapped: bytes, context: str) -> bytes:
        """Decrypt a wrapped key; `KeyAccessError` if the KEK or the context is not the one used."""
        try:
            return p.unwrap(self._kek, wrapped, context.encode())
        except DecryptionError:
            raise KeyAccessError(
                f"cannot unwrap data key {context!r} with the master key at {self._path}"
            ) from None

    def kek_id(self) -> str:
        """Non-secret identifier derived from the KEK."""
        return self._id
