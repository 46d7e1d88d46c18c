"""Per-subject keys for crypto-shredding (GDPR Art. 17 / CCPA deletion).

Each data subject gets a random 256-bit key, stored only wrapped (AES-256-GCM under the
`erasure.kek` data key, bound to the subject's hash) in the Delta table `lakehouse/_keys/subjects`,
indexed by a keyed hash of the subject id (HMAC-SHA256 under `erasure.index_key`) — never the id.
Destroying a subject's row (and vacuuming its old files) makes every copy of the subject's values
unreadable: current and past table versions, change feeds and backups alike.
"""

from __future__ import annotations

import base64
import hmac
import os
import threading
from collections import OrderedDict

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securepipe.crypto import _primitives as p
from securepipe.errors import DecryptionError

__all__ = [
    "SUBJECT_KEY_VERSION",
    "new_wrapped_subject_key",
    "subject_decrypt_many",
    "subject_detokenize_many",
    "subject_encrypt_many",
    "subject_hash",
    "subject_tokenize_many",
]

SUBJECT_KEY_VERSION = 1
_CACHE_SIZE = 200_000
_lock = threading.Lock()
_unwrapped: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()


def subject_hash(index_key: bytes, subject_id: str) -> str:
    """The keyed hash that stands for a subject id everywhere outside the data tables."""
    digest = hmac.digest(index_key, subject_id.encode("utf-8"), "sha256")
    return base64.urlsafe_b64encode(digest)[:43].decode("ascii")


def _wrap_aad(hashed: str) -> bytes:
    return f"securepipe-subject-key:{hashed}".encode()


def new_wrapped_subject_key(kek: bytes, hashed: str) -> bytes:
    """A fresh subject key, wrapped under the subject KEK and bound to the subject's hash."""
    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, os.urandom(32), _wrap_aad(hashed))


_keks: dict[bytes, AESGCM] = {}


def _kek_cipher(kek: bytes) -> AESGCM:
    # One cipher object per KEK and process: its key schedule is the costly part of a call.
    cipher = _keks.get(kek)
    if cipher is None:
        cipher = _keks[kek] = AESGCM(kek)
    return cipher


def _subject_key(kek: bytes, hashed: str, wrapped: bytes) -> bytes:
    cache_key = (wrapped, kek[:8])
    with _lock:
        key = _unwrapped.get(cache_key)
        if key is not None:
            _unwrapped.move_to_end(cache_key)
            return key
    try:
        key = _kek_cipher(kek).decrypt(wrapped[:12], wrapped[12:], _wrap_aad(hashed))
    except Exception:
        raise DecryptionError() from None
    with _lock:
        _unwrapped[cache_key] = key
        if len(_unwrapped) > _CACHE_SIZE:
            _unwrapped.popitem(last=False)
    return key


def _aad(table: str, column: str, hashed: str) -> bytes:
    return f"securepipe:{table}.{column}:subject:{hashed}".encode()


def subject_encrypt_many(
    kek: bytes,
    table: str,
    column: str,
    values: list[str | None],
    hashes: list[str | None],
    wrapped: list[bytes | None],
) -> list[bytes | None]:
    """Envelopes (version field = 1) under each row's subject key; null value stays null.

    Raises:
        DecryptionError: a row has a value but no usable subject key.
    """
    header = p.header(SUBJECT_KEY_VERSION)
    out: list[bytes | None] = []
    for value, hashed, wkey in zip(values, hashes, wrapped, strict=True):
        if value is None:
            out.append(None)
            continue
        if hashed is None or wkey is None:
            raise DecryptionError()
        key = _subject_key(kek, hashed, wkey)
        nonce = p.new_nonce()
        out.append(
            header
            + nonce
            + AESGCM(key).encrypt(nonce, value.encode("utf-8"), _aad(table, column, hashed))
        )
    return out


def subject_decrypt_many(
    kek: bytes,
    table: str,
    column: str,
    envelopes: list[bytes | None],
    hashes: list[str | None],
    wrapped: list[bytes | None],
) -> list[str | None]:
    """Plaintexts; a value whose subject key is gone (erased) comes back as `None`."""
    out: list[str | None] = []
    for env, hashed, wkey in zip(envelopes, hashes, wrapped, strict=True):
        if env is None or hashed is None or wkey is None:
            out.append(None)
            continue
        key = _subject_key(kek, hashed, wkey)
        plain = p.gcm_open(key, env, _aad(table, column, hashed))
        out.append(plain.decode("utf-8"))
    return out


def _siv_key(subject_key: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=64, salt=None, info=b"securepipe-subject-daead").derive(
        subject_key
    )


def subject_tokenize_many(
    kek: bytes, values: list[str | None], hashes: list[str | None], wrapped: list[bytes | None]
) -> list[str | None]:
    """Deterministic AES-SIV tokens under a key derived from each subject's key."""
    out: list[str | None] = []
    for value, hashed, wkey in zip(values, hashes, wrapped, strict=True):
        if value is None:
            out.append(None)
            continue
        if hashed is None or wkey is None:
            raise DecryptionError()
        siv = AESSIV(_siv_key(_subject_key(kek, hashed, wkey)))
        raw = siv.encrypt(value.encode("utf-8"), [hashed.encode()])
        out.append(base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"))
    return out


def subject_detokenize_many(
    kek: bytes, tokens: list[str | None], hashes: list[str | None], wrapped: list[bytes | None]
) -> list[str | None]:
    """Inverse of `subject_tokenize_many`; erased subjects come back as `None`."""
    out: list[str | None] = []
    for token, hashed, wkey in zip(tokens, hashes, wrapped, strict=True):
        if token is None or hashed is None or wkey is None:
            out.append(None)
            continue
        siv = AESSIV(_siv_key(_subject_key(kek, hashed, wkey)))
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        try:
            out.append(siv.decrypt(raw, [hashed.encode()]).decode("utf-8"))
        except Exception:
            raise DecryptionError() from None
    return out
