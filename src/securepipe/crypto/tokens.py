"""Deterministic tokens: reversible AES-SIV tokens and FF1 format-preserving tokens.

* `daead`: ``base64url(key version (4 bytes, big-endian) || AES-SIV(value))`` with associated data
  bound to the key name and version. Deterministic, so equal values give equal tokens and columns
  that share a key join; reversible only with the key.
* `fpe`: FF1 (NIST SP 800-38G) over a declared alphabet; characters outside the alphabet stay in
  place, so ``123-45-6789`` becomes another ``ddd-dd-dddd``. Tokens carry no key version.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from string import ascii_lowercase, ascii_uppercase, digits

from securepipe.crypto import _primitives as p
from securepipe.crypto._ff1 import FF1, MIN_DOMAIN
from securepipe.errors import DecryptionError

__all__ = [
    "ALPHABETS",
    "FpeDomainError",
    "daead_aad",
    "daead_detokenize_many",
    "daead_tokenize_many",
    "fpe_detokenize_many",
    "fpe_min_length",
    "fpe_tokenize_many",
]

ALPHABETS = {
    "digits": digits,
    "lower": ascii_lowercase,
    "upper": ascii_uppercase,
    "alphanumeric_upper": digits + ascii_uppercase,
    "alphanumeric": digits + ascii_uppercase + ascii_lowercase,
}
_VERSION = struct.Struct(">I")


class FpeDomainError(ValueError):
    """A value has too few alphabet characters for FF1 (radix ** n < 1,000,000)."""


def daead_aad(key_name: str, version: int) -> bytes:
    """Associated data of daead tokens: the key name and version (not the column: tokens join)."""
    return f"securepipe-daead:{key_name}:v{version}".encode()


def daead_tokenize_many(
    key: bytes, key_name: str, version: int, values: Sequence[str | None]
) -> list[str | None]:
    """AES-SIV tokens of a batch; `None` stays `None`."""
    aad = daead_aad(key_name, version)
    head = _VERSION.pack(version)
    out: list[str | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        raw = head + p.siv_seal(key, value.encode("utf-8"), aad)
        out.append(p.b64url(raw))
    return out


def daead_detokenize_many(
    keys: dict[int, bytes], key_name: str, tokens: Sequence[str | None]
) -> list[str | None]:
    """Values of daead tokens, with the key version each token names.

    Raises:
        DecryptionError: a malformed or tampered token, or an unknown/destroyed key version.
    """
    out: list[str | None] = []
    for token in tokens:
        if token is None:
            out.append(None)
            continue
        try:
            raw = p.unb64url(token)
            (version,) = _VERSION.unpack_from(raw)
        except (ValueError, struct.error):
            raise DecryptionError() from None
        key = keys.get(version)
        if key is None:
            raise DecryptionError()
        try:
            out.append(p.siv_open(key, raw[4:], daead_aad(key_name, version)).decode("utf-8"))
        except UnicodeDecodeError:
            raise DecryptionError() from None
    return out


def fpe_min_length(alphabet: str) -> int:
    """Fewest alphabet characters a value needs (radix ** n >= 1,000,000)."""
    return max(2, math.ceil(math.log(MIN_DOMAIN) / math.log(len(alphabet)) - 1e-9))


def _fpe_many(
    key: bytes, alphabet: str, tweak: bytes, values: Sequence[str | None], decrypt: bool
) -> list[str | None]:
    index = {ch: i for i, ch in enumerate(alphabet)}
    minimum = fpe_min_length(alphabet)
    numerals: list[list[int]] = []
    for value in values:
        if value is None:
            continue
        nums = [index[ch] for ch in value if ch in index]
        if len(nums) < minimum:
            raise FpeDomainError(f"a value has fewer than {minimum} characters of the fpe alphabet")
        numerals.append(nums)
    ff1 = FF1(key, len(alphabet))
    results = iter(
        ff1.decrypt_batch(numerals, tweak) if decrypt else ff1.encrypt_batch(numerals, tweak)
    )
    out: list[str | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        mapped = iter(next(results))
        out.append("".join(alphabet[next(mapped)] if ch in index else ch for ch in value))
    return out


def fpe_tokenize_many(
    key: bytes, alphabet: str, tweak: bytes, values: Sequence[str | None]
) -> list[str | None]:
    """FF1 tokens of a batch, keeping every character outside `alphabet` in place."""
    return _fpe_many(key, alphabet, tweak, values, decrypt=False)


def fpe_detokenize_many(
    key: bytes, alphabet: str, tweak: bytes, tokens: Sequence[str | None]
) -> list[str | None]:
    """Inverse of `fpe_tokenize_many` (FF1 has no integrity check: a wrong key gives garbage)."""
    return _fpe_many(key, alphabet, tweak, tokens, decrypt=True)
