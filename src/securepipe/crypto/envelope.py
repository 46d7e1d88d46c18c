"""Value-level encryption and tokenization used by the Spark UDFs and by authorised readers.

Associated data binds every ciphertext to ``<table>.<column>`` and the key version, so a value
copied into another column or table, or relabelled with another version, fails to decrypt.
"""

from __future__ import annotations

from collections.abc import Sequence

from securepipe.crypto import _primitives as p
from securepipe.errors import DecryptionError

__all__ = [
    "HEADER_LEN",
    "associated_data",
    "decrypt_value",
    "encrypt_many",
    "encrypt_value",
    "envelope_version",
    "hmac_many",
    "hmac_token",
]

HEADER_LEN = p.HEADER_LEN
envelope_version = p.envelope_version


def associated_data(table: str, column: str, version: int) -> bytes:
    """The AAD of a value of `table.column` encrypted under key version `version`."""
    return f"securepipe:{table}.{column}:v{version}".encode()


def encrypt_value(key: bytes, version: int, table: str, column: str, plaintext: str) -> bytes:
    """Encrypt one UTF-8 value into a versioned AES-256-GCM envelope.

    Args:
        key: the 32-byte data key of `version`.
        version: the data key version, written into the header and the AAD.
        table: table name bound into the AAD.
        column: column name bound into the AAD.
        plaintext: the value.

    Returns:
        The envelope bytes.
    """
    return p.gcm_seal(
        key, version, plaintext.encode("utf-8"), associated_data(table, column, version)
    )


def decrypt_value(keys: dict[int, bytes], table: str, column: str, envelope: bytes) -> str:
    """Decrypt an envelope of `table.column` with the key version its header names.

    Args:
        keys: data keys by version.
        table: the table the value is read from.
        column: the column the value is read from.
        envelope: the stored bytes.

    Returns:
        The plaintext.

    Raises:
        DecryptionError: unknown version, wrong key, wrong table/column, or tampered bytes.
    """
    version = p.envelope_version(envelope)
    key = keys.get(version)
    if key is None:
        raise DecryptionError()
    plaintext = p.gcm_open(key, envelope, associated_data(table, column, version))
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError() from None


def hmac_token(key: bytes, plaintext: str) -> str:
    """Irreversible, deterministic, joinable token: unpadded base64url of HMAC-SHA256.

    The token does not depend on the column, so columns tokenized with the same key join.
    """
    return p.b64url(p.hmac_sha256(key, plaintext.encode("utf-8")))


def encrypt_many(
    key: bytes, version: int, table: str, column: str, values: Sequence[str | None]
) -> list[bytes | None]:
    """`encrypt_value` over a batch (one cipher object per batch); `None` stays `None`."""
    aad = associated_data(table, column, version)
    return p.gcm_seal_many(
        key, version, [None if v is None else v.encode("utf-8") for v in values], aad
    )


def hmac_many(key: bytes, values: Sequence[str | None]) -> list[str | None]:
    """`hmac_token` over a batch; `None` stays `None`."""
    digest = p.hmac_prepared(key)
    return [None if value is None else p.b64url(digest(value.encode("utf-8"))) for value in values]
