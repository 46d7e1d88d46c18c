"""Factories of Arrow UDFs that protect or reverse a column on the executors.

Each factory takes only serialisable, non-secret arguments (names, parameters and a `KeyHandle`
holding wrapped keys). The returned UDF unwraps its key inside the Python worker, once per process
(`securepipe.crypto.keycache`), so no plaintext key is captured in the closure, the query plan or
the Spark configuration. Failures raise `DecryptionError` naming the table and column, never a
value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
from pyspark.sql import Column
from pyspark.sql.functions import arrow_udf
from pyspark.sql.types import BinaryType, StringType

from securepipe.crypto.envelope import decrypt_value, encrypt_many, hmac_many
from securepipe.crypto.keycache import data_keys
from securepipe.crypto.keyring import KeyHandle
from securepipe.crypto.tokens import (
    FpeDomainError,
    daead_detokenize_many,
    daead_tokenize_many,
    fpe_detokenize_many,
    fpe_tokenize_many,
)
from securepipe.errors import DecryptionError, KeyAccessError, ProtectionError

__all__ = [
    "apply_udf",
    "build_daead_udf",
    "build_decrypt_udf",
    "build_detokenize_udf",
    "build_encrypt_udf",
    "build_fpe_udf",
    "build_hmac_udf",
    "build_reencrypt_udf",
]


def _guard(where: str, fn: Callable[[], list[Any]]) -> list[Any]:
    try:
        return fn()
    except (DecryptionError, KeyAccessError):
        raise DecryptionError(f"a value of {where} could not be decrypted or detokenized") from None
    except FpeDomainError as exc:
        raise ProtectionError(f"{where}: {exc}") from None


def build_encrypt_udf(table: str, column: str, handle: KeyHandle):  # type: ignore[no-untyped-def]
    """An Arrow UDF `string -> binary` sealing each value in an AES-256-GCM envelope.

    Args:
        table: table name bound into the associated data.
        column: column name bound into the associated data.
        handle: the aead key; its current version encrypts.
    """
    version = handle.current

    # Arrow in, Arrow out: no pandas conversion on the hot path.
    @arrow_udf(BinaryType())  # type: ignore[call-overload]
    def securepipe_encrypt(values: pa.Array) -> pa.Array:
        key = data_keys(handle)[version]
        out = encrypt_many(key, version, table, column, values.to_pylist())
        return pa.array(out, type=pa.binary())

    return securepipe_encrypt.asNondeterministic()


def build_hmac_udf(handle: KeyHandle):  # type: ignore[no-untyped-def]
    """An Arrow UDF `string -> string` of HMAC-SHA256 tokens under the current key version."""
    version = handle.current

    @arrow_udf(StringType())  # type: ignore[call-overload]
    def securepipe_hmac(values: pa.Array) -> pa.Array:
        key = data_keys(handle)[version]
        return pa.array(hmac_many(key, values.to_pylist()), type=pa.string())

    return securepipe_hmac


def build_daead_udf(handle: KeyHandle):  # type: ignore[no-untyped-def]
    """An Arrow UDF `string -> string` of AES-SIV tokens under the current key version."""
    version, name = handle.current, handle.name

    @arrow_udf(StringType())  # type: ignore[call-overload]
    def securepipe_daead(values: pa.Array) -> pa.Array:
        key = data_keys(handle)[version]
        return pa.array(
            daead_tokenize_many(key, name, version, values.to_pylist()), type=pa.string()
        )

    return securepipe_daead


def build_fpe_udf(table: str, column: str, handle: KeyHandle, alphabet: str, tweak: bytes):  # type: ignore[no-untyped-def]
    """An Arrow UDF `string -> string` of FF1 tokens keeping the value's format."""
    version = handle.current
    where = f"{table}.{column}"

    @arrow_udf(StringType())  # type: ignore[call-overload]
    def securepipe_fpe(values: pa.Array) -> pa.Array:
        key = data_keys(handle)[version]
        clear = values.to_pylist()
        out = _guard(where, lambda: fpe_tokenize_many(key, alphabet, tweak, clear))
        return pa.array(out, type=pa.string())

    return securepipe_fpe


def build_decrypt_udf(table: str, column: str, handle: KeyHandle):  # type: ignore[no-untyped-def]
    """An Arrow UDF `binary -> string` opening envelopes of `table.column` (any key version)."""
    where = f"{table}.{column}"

    @arrow_udf(StringType())  # type: ignore[call-overload]
    def securepipe_decrypt(values: pa.Array) -> pa.Array:
        def run() -> list[Any]:
            keys = data_keys(handle)
            return [
                None if v is None else decrypt_value(keys, table, column, v)
                for v in values.to_pylist()
            ]

        return pa.array(_guard(where, run), type=pa.string())

    return securepipe_decrypt


def build_detokenize_udf(  # type: ignore[no-untyped-def]
    table: str, column: str, handle: KeyHandle, kind: str, alphabet: str = "", tweak: bytes = b""
):
    """An Arrow UDF `string -> string` reversing `daead` or `fpe` tokens."""
    where = f"{table}.{column}"

    @arrow_udf(StringType())  # type: ignore[call-overload]
    def securepipe_detokenize(values: pa.Array) -> pa.Array:
        def run() -> list[Any]:
            keys = data_keys(handle)
            if kind == "daead":
                return daead_detokenize_many(keys, handle.name, values.to_pylist())
            return fpe_detokenize_many(keys[handle.current], alphabet, tweak, values.to_pylist())

        return pa.array(_guard(where, run), type=pa.string())

    return securepipe_detokenize


def build_reencrypt_udf(table: str, column: str, handle: KeyHandle):  # type: ignore[no-untyped-def]
    """An Arrow UDF `binary -> binary` re-sealing envelopes under the current key version.

    Plaintext exists only inside the UDF, value by value.
    """
    where = f"{table}.{column}"
    version = handle.current

    @arrow_udf(BinaryType())  # type: ignore[call-overload]
    def securepipe_reencrypt(values: pa.Array) -> pa.Array:
        def run() -> list[Any]:
            keys = data_keys(handle)
            clear = [
                None if v is None else decrypt_value(keys, table, column, v)
                for v in values.to_pylist()
            ]
            return encrypt_many(keys[version], version, table, column, clear)

        return pa.array(_guard(where, run), type=pa.binary())

    return securepipe_reencrypt.asNondeterministic()


def apply_udf(udf, col: Column) -> Column:  # type: ignore[no-untyped-def]
    """Apply a protecting UDF to `col` cast to string (dates and numbers use Spark's casts)."""
    return udf(col.cast("string"))
