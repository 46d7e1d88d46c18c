"""Private cryptographic primitives. Callers use `securepipe.crypto.envelope`.

Envelope (DESIGN.md §3): ``0x01 | key version (4 bytes, big-endian) | nonce (12) | ciphertext | tag
(16)``. Everything after the 5-byte header is what Spark SQL's
``aes_decrypt(value, key, 'GCM', 'DEFAULT', aad)`` accepts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

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


def gcm_seal(key: bytes, version: int, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt with AES-256-GCM under a fresh random nonce and prefix the envelope header."""
    nonce = new_nonce()
    return header(version) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def gcm_open(key: bytes, envelope: bytes, aad: bytes) -> bytes:
    """Decrypt an envelope made by `gcm_seal`; any failure is one opaque `DecryptionError`."""
    if len(envelope) < HEADER_LEN + NONCE_LEN + TAG_LEN or envelope[0] != FORMAT_V1:
        raise DecryptionError()
    nonce = envelope[HEADER_LEN : HEADER_LEN + NONCE_LEN]
    try:
        return AESGCM(key).decrypt(nonce, envelope[HEADER_LEN + NONCE_LEN :], aad)
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


def siv_seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Deterministic AES-SIV (RFC 5297): the same input gives the same output."""
    return AESSIV(key).encrypt(plaintext, [aad])


def siv_open(key: bytes, data: bytes, aad: bytes) -> bytes:
    """Inverse of `siv_seal`; any failure is one opaque `DecryptionError`."""
    try:
        return AESSIV(key).decrypt(data, [aad])
    except (InvalidTag, ValueError):
        raise DecryptionError() from None
