"""HSM provider through PKCS#11 (tested against SoftHSM2).

The KEK is an AES-256 key generated inside the token, non-extractable and sensitive; data keys are
wrapped with CKM_AES_GCM inside the HSM, bound to their name and version. The user PIN is read
from the environment variable the configuration names, never from a file in the repository.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

from securepipe.crypto.kms.base import KmsSpec
from securepipe.errors import KeyAccessError

__all__ = ["Pkcs11Kms"]

_lock = threading.Lock()
# PKCS#11 login state belongs to the process: one logged-in session per (module, token, PIN
# digest) is opened and shared by every provider object of this process.
_sessions: dict[tuple[str, str, str], Any] = {}


class Pkcs11Kms:
    """KEK `key_label` in the token `token_label` of the PKCS#11 `module`."""

    def __init__(self, spec: KmsSpec, *, create: bool = False) -> None:
        try:
            import pkcs11
        except ImportError:  # pragma: no cover - depends on the install
            raise KeyAccessError(
                "provider 'pkcs11' needs python-pkcs11: pip install 'securepipe[hsm]'"
            ) from None
        self._pkcs11 = pkcs11
        module = spec.location
        self._token_label = spec.param("token_label")
        self._key_label = spec.param("key_label")
        pin_env = spec.param("pin_env")
        pin = os.environ.get(pin_env)
        if not pin:
            raise KeyAccessError(f"PKCS#11 PIN not set: export {pin_env}")
        cache_key = (module, self._token_label, hashlib.sha256(pin.encode()).hexdigest())
        try:
            with _lock:
                session = _sessions.get(cache_key)
                if session is None:
                    lib = pkcs11.lib(module)
                    token = lib.get_token(token_label=self._token_label)
                    session = _sessions[cache_key] = token.open(user_pin=pin, rw=True)
            self._session = session
            token = session.token
        except Exception as exc:
            raise KeyAccessError(
                f"cannot open PKCS#11 token {self._token_label!r} with module {module} "
                f"({type(exc).__name__})"
            ) from None
        self._key = self._find_or_create(create)
        self._id = (
            "pkcs11:"
            + hashlib.sha256(
                f"{self._token_label}/{self._key_label}/{token.serial!r}".encode()
            ).hexdigest()[:16]
        )

    def _find_or_create(self, create: bool) -> Any:
        p = self._pkcs11
        try:
            return self._session.get_key(
                label=self._key_label, key_type=p.KeyType.AES, object_class=p.ObjectClass.SECRET_KEY
            )
        except p.NoSuchKey:
            if not create:
                raise KeyAccessError(
                    f"no key {self._key_label!r} in PKCS#11 token {self._token_label!r}; "
                    "run `securepipe keys init`"
                ) from None
        return self._session.generate_key(
            p.KeyType.AES,
            256,
            label=self._key_label,
            store=True,
            template={
                p.Attribute.EXTRACTABLE: False,
                p.Attribute.SENSITIVE: True,
                p.Attribute.WRAP: True,
                p.Attribute.UNWRAP: True,
            },
        )

    def wrap(self, key: bytes, context: str) -> bytes:
        """AES-GCM inside the HSM, bound to `context`."""
        p = self._pkcs11
        nonce = os.urandom(12)
        with _lock:
            ct = self._key.encrypt(
                key,
                mechanism=p.Mechanism.AES_GCM,
                mechanism_param=p.GCMParams(nonce, context.encode()),
            )
        return nonce + bytes(ct)

    def unwrap(self, wrapped: bytes, context: str) -> bytes:
        """Decrypt inside the HSM; `KeyAccessError` if the KEK or the context differ."""
        p = self._pkcs11
        try:
            with _lock:
                return bytes(
                    self._key.decrypt(
                        wrapped[12:],
                        mechanism=p.Mechanism.AES_GCM,
                        mechanism_param=p.GCMParams(wrapped[:12], context.encode()),
                    )
                )
        except Exception:
            raise KeyAccessError(
                f"cannot unwrap data key {context!r} with PKCS#11 key {self._key_label!r}"
            ) from None

    def kek_id(self) -> str:
        """Token, label and serial, hashed."""
        return self._id
