"""Per-subject keys for crypto-shredding (GDPR Art. 17 / CCPA deletion).

Each data subject gets a random 256-bit key, stored only wrapped (AES-256-GCM under the
`erasure.kek` data key, bound to the subject's hash) in the Delta table `lakehouse/_keys/subjects`,
indexed by a keyed hash of the subject id (HMAC-SHA256 under `erasure.index_key`) — never the id.
Destroying a subject's row (and vacuuming its old files) makes every copy of the subject's values
unreadable: current and past table versions, change feeds and backups alike.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from securepipe.crypto import _primitives as p
from securepipe.crypto.envelope import hmac_token
from securepipe.crypto.tokens import fpe_detokenize_many, fpe_tokenize_many
from securepipe.errors import DecryptionError

__all__ = [
    "SUBJECT_KEY_VERSION",
    "index_fingerprint",
    "new_wrapped_subject_key",
    "new_wrapped_subject_keys",
    "rewrap_subject_key",
    "subject_decrypt_many",
    "subject_detokenize_many",
    "subject_encrypt_many",
    "subject_fpe_many",
    "subject_hash",
    "subject_tokenize_many",
    "wrapped_kek_version",
]

SUBJECT_KEY_VERSION = 1
_WRAP_FORMAT = 0x02
_WRAP_HEADER = struct.Struct(">BI")
_LEGACY_WRAP_LEN = 12 + 32 + 16  # nonce | key | tag, before wraps carried their KEK version
_CACHE_SIZE = 200_000
_lock = threading.Lock()
_unwrapped: OrderedDict[tuple[str, bytes, bytes], _Subject] = OrderedDict()


class _Subject:
    """One unwrapped subject key and the ciphers derived from it, each built on first use and
    kept with the key (cached per process like it): the table's per-subject columns share
    them instead of paying a key schedule (or an HKDF) per value and column."""

    __slots__ = ("_fpe", "_gcm", "_siv", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._gcm: Any = None
        self._siv: Any = None
        self._fpe: bytes | None = None

    @property
    def gcm(self) -> Any:
        if self._gcm is None:
            self._gcm = p.aead(self.key)
        return self._gcm

    @property
    def siv(self) -> Any:
        if self._siv is None:
            self._siv = p.siv(p.derive_key(self.key, 64, b"securepipe-subject-daead"))
        return self._siv

    @property
    def fpe_key(self) -> bytes:
        if self._fpe is None:
            self._fpe = p.derive_key(self.key, 32, b"securepipe-subject-fpe")
        return self._fpe


def subject_hash(index_key: bytes, subject_id: str) -> str:
    """The keyed hash that stands for a subject id everywhere outside the data tables (an HMAC
    token under the subject index key: equal to the Spark column `with_subject_hash` makes)."""
    return hmac_token(index_key, subject_id)


def index_fingerprint(index_key: bytes) -> str:
    """A public fingerprint of the subject index key (an HMAC of a fixed label: it reveals
    nothing of the key), stored with the subject key store so that a keyring that was lost and
    created anew, whose index key would find none of the stored keys or tombstones, is refused
    instead of shredding nothing."""
    return hmac_token(index_key, "securepipe-subject-index-fingerprint")[:32]


def _wrap_aad(hashed: str, version: int | None) -> bytes:
    if version is None:  # wraps written before the KEK version was recorded
        return f"securepipe-subject-key:{hashed}".encode()
    return f"securepipe-subject-key:{hashed}:v{version}".encode()


def wrapped_kek_version(wrapped: bytes) -> int:
    """The version of the subject KEK that wrapped `wrapped` (1 for the legacy format).

    Raises:
        DecryptionError: not a wrapped subject key.
    """
    if len(wrapped) == _LEGACY_WRAP_LEN:
        return 1
    if len(wrapped) < _WRAP_HEADER.size + _LEGACY_WRAP_LEN or wrapped[0] != _WRAP_FORMAT:
        raise DecryptionError()
    return int(_WRAP_HEADER.unpack_from(wrapped)[1])


def _seal_subject_key(kek: bytes, version: int, hashed: str, key: bytes) -> bytes:
    return _WRAP_HEADER.pack(_WRAP_FORMAT, version) + p.wrap(kek, key, _wrap_aad(hashed, version))


def new_wrapped_subject_key(kek: bytes, version: int, hashed: str) -> bytes:
    """A fresh subject key, wrapped under version `version` of the subject KEK, bound to the
    subject's hash and to that version (`format 0x02 | KEK version (4) | nonce | key | tag`)."""
    return new_wrapped_subject_keys(kek, version, [hashed])[0]


def new_wrapped_subject_keys(kek: bytes, version: int, hashes: Sequence[str]) -> list[bytes]:
    """`new_wrapped_subject_key` for each of `hashes`, the keys and the wraps' nonces drawn in
    one CSPRNG read (two `urandom` calls per key cost as much as the wrap itself)."""
    size = 32 + p.NONCE_LEN
    random = os.urandom(size * len(hashes))
    cipher = p.gcm_cipher(kek)
    header = _WRAP_HEADER.pack(_WRAP_FORMAT, version)
    out = []
    for i, hashed in enumerate(hashes):
        at = i * size
        key, nonce = random[at : at + 32], random[at + 32 : at + size]
        out.append(header + nonce + cipher.encrypt(nonce, key, _wrap_aad(hashed, version)))
    return out


def rewrap_subject_key(
    keks: Mapping[int, bytes], version: int, hashed: str, wrapped: bytes
) -> bytes:
    """The same subject key, wrapped under KEK version `version` (rotation of the subject KEK).

    Raises:
        DecryptionError: the old wrap cannot be opened (unknown KEK version, tampered bytes).
    """
    if wrapped_kek_version(wrapped) == version and len(wrapped) != _LEGACY_WRAP_LEN:
        return wrapped
    return _seal_subject_key(keks[version], version, hashed, _subject(keks, hashed, wrapped).key)


def _subject(keks: Mapping[int, bytes], hashed: str, wrapped: bytes) -> _Subject:
    version = wrapped_kek_version(wrapped)
    kek = keks.get(version)
    if kek is None:  # that KEK version was destroyed: the subject key is gone with it
        raise DecryptionError()
    # The subject is part of the key: a wrap copied onto another subject's row must fail its
    # AAD check, not be served from the cache.
    cache_key = (hashed, wrapped, kek[:8])
    with _lock:
        found = _unwrapped.get(cache_key)
        if found is not None:
            _unwrapped.move_to_end(cache_key)
            return found
    legacy = len(wrapped) == _LEGACY_WRAP_LEN
    body = wrapped if legacy else wrapped[_WRAP_HEADER.size :]
    subject = _Subject(p.unwrap(kek, body, _wrap_aad(hashed, None if legacy else version)))
    with _lock:
        _unwrapped[cache_key] = subject
        if len(_unwrapped) > _CACHE_SIZE:
            _unwrapped.popitem(last=False)
    return subject


def _aad(table: str, column: str, hashed: str) -> bytes:
    return f"securepipe:{table}.{column}:subject:{hashed}".encode()


def _per_subject(
    keks: Mapping[int, bytes],
    values: Sequence[Any],
    hashes: Sequence[str | None],
    wrapped: Sequence[bytes | None],
    apply: Callable[[_Subject, Any, str], Any],
    *,
    reveal: bool,
) -> list[Any]:
    """`apply(subject, value, subject hash)` row by row; null stays null. A row without a
    subject key is null on reveal (the subject was erased) and refused on protect."""
    out: list[Any] = []
    for value, hashed, wkey in zip(values, hashes, wrapped, strict=True):
        if value is None or (reveal and (hashed is None or wkey is None)):
            out.append(None)
            continue
        if hashed is None or wkey is None:
            raise DecryptionError()
        out.append(apply(_subject(keks, hashed, wkey), value, hashed))
    return out


def subject_encrypt_many(
    keks: Mapping[int, bytes],
    table: str,
    column: str,
    values: list[str | None],
    hashes: Sequence[str | None],
    wrapped: Sequence[bytes | None],
) -> list[bytes | None]:
    """Envelopes (version field = 1) under each row's subject key; null value stays null.

    Raises:
        DecryptionError: a row has a value but no usable subject key.
    """

    nonces = p.new_nonces(len(values))  # one CSPRNG read; each value its own slice
    at = iter(range(0, len(nonces), p.NONCE_LEN))

    def seal(subject: _Subject, value: str, hashed: str) -> bytes:
        i = next(at)
        aad = _aad(table, column, hashed)
        plain = value.encode("utf-8")
        return p.gcm_seal(subject.gcm, SUBJECT_KEY_VERSION, plain, aad, nonces[i : i + p.NONCE_LEN])

    return _per_subject(keks, values, hashes, wrapped, seal, reveal=False)


def subject_decrypt_many(
    keks: Mapping[int, bytes],
    table: str,
    column: str,
    envelopes: list[bytes | None],
    hashes: Sequence[str | None],
    wrapped: Sequence[bytes | None],
) -> list[str | None]:
    """Plaintexts; a value whose subject key is gone (erased) comes back as `None`."""

    def open_(subject: _Subject, envelope: bytes, hashed: str) -> str:
        return p.gcm_open(subject.gcm, envelope, _aad(table, column, hashed)).decode("utf-8")

    return _per_subject(keks, envelopes, hashes, wrapped, open_, reveal=True)


def _tokenize(subject: _Subject, value: str, hashed: str) -> str:
    return p.b64url(p.siv_seal(subject.siv, value.encode("utf-8"), hashed.encode()))


def _detokenize(subject: _Subject, token: str, hashed: str) -> str:
    try:
        return p.siv_open(subject.siv, p.unb64url(token), hashed.encode()).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise DecryptionError() from None


def subject_tokenize_many(
    keks: Mapping[int, bytes],
    values: list[str | None],
    hashes: Sequence[str | None],
    wrapped: Sequence[bytes | None],
) -> list[str | None]:
    """Deterministic AES-SIV tokens under a key derived from each subject's key."""
    return _per_subject(keks, values, hashes, wrapped, _tokenize, reveal=False)


def subject_detokenize_many(
    keks: Mapping[int, bytes],
    tokens: list[str | None],
    hashes: Sequence[str | None],
    wrapped: Sequence[bytes | None],
) -> list[str | None]:
    """Inverse of `subject_tokenize_many`; erased subjects come back as `None`."""
    return _per_subject(keks, tokens, hashes, wrapped, _detokenize, reveal=True)


def subject_fpe_many(
    keks: Mapping[int, bytes],
    alphabet: str,
    tweak: bytes,
    values: Sequence[str | None],
    hashes: Sequence[str | None],
    wrapped: Sequence[bytes | None],
    *,
    decrypt: bool = False,
) -> list[str | None]:
    """FF1 tokens (or their values) under a key derived from each row's subject key.

    Rows of one subject share one FF1 call. On reveal, a value whose subject key is gone comes
    back as `None`; on protect, a value without a usable subject key raises.

    Raises:
        DecryptionError: protecting a value that has no usable subject key.
        FpeDomainError: a value with too few characters of the alphabet.
    """
    run = fpe_detokenize_many if decrypt else fpe_tokenize_many
    groups: dict[tuple[str, bytes], list[int]] = {}
    out: list[str | None] = [None] * len(values)
    for i, (value, hashed, wkey) in enumerate(zip(values, hashes, wrapped, strict=True)):
        if value is None:
            continue
        if hashed is None or wkey is None:
            if decrypt:
                continue
            raise DecryptionError()
        groups.setdefault((hashed, wkey), []).append(i)
    for (hashed, wkey), rows in groups.items():
        key = _subject(keks, hashed, wkey).fpe_key
        tokens = run(key, alphabet, tweak, [values[i] for i in rows])
        for i, token in zip(rows, tokens, strict=True):
            out[i] = token
    return out
