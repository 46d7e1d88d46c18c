"""Private cryptographic primitives: the only module of securepipe that touches
`cryptography.hazmat` for values (FF1's AES rounds live in `_ff1`). Callers use `envelope`,
`tokens` and `subject`.

Envelope (DESIGN.md §3): ``0x01 | key version (4 bytes, big-endian) | nonce (12) | ciphertext | tag
(16)``. Everything after the 5-byte header is what Spark SQL's
``aes_decrypt(value, key, 'GCM', 'DEFAULT', aad)`` accepts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securepipe.errors import DecryptionError

FORMAT_V1 = 0x01
HEADER_LEN = 5
NONCE_LEN = 12
TAG_LEN = 16
KEY_LEN = 32
_HEADER = struct.Struct(">BI")


def header(version: int) -> bytes:
    """The 5-byte envelope header for key version `version`."""
    return _HEADER.pack(FORMAT_V1, version)


def new_nonce() -> bytes:
    """A fresh random 96-bit GCM nonce (never a counter, never fixed)."""
    return os.urandom(NONCE_LEN)


def new_nonces(count: int) -> bytes:
    """`count` fresh random 96-bit nonces in one CSPRNG read (slice 12 bytes each)."""
    return os.urandom(NONCE_LEN * count)


def hmac_prepared(key: bytes):  # type: ignore[no-untyped-def]
    """HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once.

    Returns a function `message -> digest`; per message it costs two state copies instead of
    re-keying, about twice as fast as `hmac.digest` on short values.
    """
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(message: bytes) -> bytes:
        i = inner.copy()
        i.update(message)
        o = outer.copy()
        o.update(i.digest())
        return o.digest()

    return digest


_CIPHERS: dict[bytes, AESGCM] = {}


def gcm_cipher(key: bytes) -> AESGCM:
    """The AES-GCM cipher of `key`, one per key and process (its key schedule is the costly part
    of a call). For long-lived keys only (KEKs): per-value keys would grow the cache."""
    cipher = _CIPHERS.get(key)
    if cipher is None:
        cipher = _CIPHERS[key] = AESGCM(key)
    return cipher


def gcm_seal(
    key: bytes | AESGCM, version: int, plaintext: bytes, aad: bytes, nonce: bytes = b""
) -> bytes:
    """Encrypt with AES-256-GCM under a fresh random nonce and prefix the envelope header.

    `key` may be a prepared cipher (one per key: its key schedule is the costly part), and
    `nonce` one slice of a bulk `new_nonces` read; never reuse either slice."""
    cipher = key if isinstance(key, AESGCM) else AESGCM(key)
    nonce = nonce or new_nonce()
    return header(version) + nonce + cipher.encrypt(nonce, plaintext, aad)


def gcm_seal_many(
    key: bytes, version: int, values: list[bytes | None], aad: bytes
) -> list[bytes | None]:
    """`gcm_seal` over a batch: one cipher object, one CSPRNG read for every nonce (each value
    still gets its own); `None` stays `None`."""
    seal = AESGCM(key).encrypt
    head = header(version)
    nonces = new_nonces(len(values))
    out: list[bytes | None] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        nonce = nonces[i * NONCE_LEN : (i + 1) * NONCE_LEN]
        out.append(head + nonce + seal(nonce, value, aad))
    return out


def wrap(kek: bytes, key: bytes, aad: bytes) -> bytes:
    """`nonce (12) | AES-GCM(kek, key) | tag (16)`: a key wrapped under a long-lived KEK."""
    nonce = new_nonce()
    return nonce + gcm_cipher(kek).encrypt(nonce, key, aad)


def unwrap(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    """Inverse of `wrap`; any failure is one opaque `DecryptionError`."""
    try:
        return gcm_cipher(kek).decrypt(wrapped[:NONCE_LEN], wrapped[NONCE_LEN:], aad)
    except (InvalidTag, ValueError):
        raise DecryptionError() from None


def aead(key: bytes) -> AESGCM:
    """A new AES-GCM cipher of `key` (not cached: for keys whose holder decides their life)."""
    return AESGCM(key)


def siv(key: bytes) -> AESSIV:
    """A new AES-SIV cipher of a 64-byte `key` (not cached)."""
    return AESSIV(key)


def derive_key(key: bytes, length: int, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869, no salt): a sub-key of `key` for the purpose named by `info`."""
    return HKDF(algorithm=SHA256(), length=length, salt=None, info=info).derive(key)


def b64url(raw: bytes) -> str:
    """Unpadded base64url text."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Inverse of `b64url`; `ValueError` for text that is not base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def gcm_open(key: bytes | AESGCM, envelope: bytes, aad: bytes) -> bytes:
    """Decrypt an envelope made by `gcm_seal` (`key` as there); any failure is one opaque
    `DecryptionError`."""
    if len(envelope) < HEADER_LEN + NONCE_LEN + TAG_LEN or envelope[0] != FORMAT_V1:
        raise DecryptionError()
    nonce = envelope[HEADER_LEN : HEADER_LEN + NONCE_LEN]
    cipher = key if isinstance(key, AESGCM) else AESGCM(key)
    try:
        return cipher.decrypt(nonce, envelope[HEADER_LEN + NONCE_LEN :], aad)
    except (InvalidTag, ValueError):
        raise DecryptionError() from None


def envelope_version(envelope: bytes) -> int:
    """The key version recorded in an envelope header."""
    if len(envelope) < HEADER_LEN or envelope[0] != FORMAT_V1:
        raise DecryptionError()
    return int(_HEADER.unpack_from(envelope)[1])


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of `message` under `key`."""
    return hmac.new(key, message, hashlib.sha256).digest()


def siv_seal(key: bytes | AESSIV, plaintext: bytes, aad: bytes) -> bytes:
    """Deterministic AES-SIV (RFC 5297): the same input gives the same output (`key` may be a
    prepared cipher)."""
    return (key if isinstance(key, AESSIV) else AESSIV(key)).encrypt(plaintext, [aad])


def siv_open(key: bytes | AESSIV, data: bytes, aad: bytes) -> bytes:
    """Inverse of `siv_seal`; any failure is one opaque `DecryptionError`."""
    try:
        return (key if isinstance(key, AESSIV) else AESSIV(key)).decrypt(data, [aad])
    except (InvalidTag, ValueError):
        raise DecryptionError() from None
