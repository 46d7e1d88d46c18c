"""Vectorised UDFs of the per-subject operators (crypto-shredding).

A frame protected per subject carries two technical columns joined by the pipeline from the
subject key store: `_subject_hash` (keyed hash of the subject id) and `_subject_wrapped` (the
subject's key, wrapped by a version of the subject KEK; null once the subject is erased). The UDFs
take only the KEK's `KeyHandle` (wrapped material): each Python worker unwraps every KEK version it
needs once, then each subject key once (`securepipe.crypto.subject`).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.functions import arrow_udf
from pyspark.sql.types import BinaryType, StringType

from securepipe.crypto.keycache import data_keys
from securepipe.crypto.keyring import KeyHandle
from securepipe.crypto.subject import (
    new_wrapped_subject_keys,
    rewrap_subject_key,
    subject_decrypt_many,
    subject_detokenize_many,
    subject_encrypt_many,
    subject_fpe_many,
    subject_tokenize_many,
)
from securepipe.crypto.tokens import FpeDomainError
from securepipe.errors import DecryptionError, ProtectionError

__all__ = [
    "HASH_COLUMN",
    "KEK_SENTINEL",
    "SUBJECT_KINDS",
    "WRAPPED_COLUMN",
    "build_subject_udf",
    "new_subject_key_udf",
    "rewrap_subject_key_udf",
    "subject_expr",
]

HASH_COLUMN = "_subject_hash"
WRAPPED_COLUMN = "_subject_wrapped"
KEK_SENTINEL = "__subject_kek__"
SUBJECT_KINDS = ("encrypt", "decrypt", "tokenize", "detokenize", "fpe", "unfpe")


def build_subject_udf(  # type: ignore[no-untyped-def]
    kind: str, table: str, column: str, kek: KeyHandle, alphabet: str = "", tweak: bytes = b""
):
    """A vectorised UDF (value, subject hash, wrapped subject key) → protected or revealed value.

    kind: `encrypt` | `decrypt` | `tokenize` | `detokenize` | `fpe` | `unfpe`. Reveal kinds
    return null for erased subjects (no key) and raise `DecryptionError` naming the column for a
    tampered value. New values are protected under the subject key whatever KEK version wrapped
    it: each wrapped key names its KEK version.
    """
    if kind not in SUBJECT_KINDS:
        raise ValueError(f"unknown subject UDF kind {kind!r}")
    out_type = BinaryType() if kind == "encrypt" else StringType()
    arrow_type = pa.binary() if kind == "encrypt" else pa.string()
    where = f"{table}.{column}"

    @arrow_udf(out_type)  # type: ignore[call-overload]
    def securepipe_subject(values: pa.Array, hashes: pa.Array, wrapped: pa.Array) -> pa.Array:
        keks = data_keys(kek)
        v, h, w = values.to_pylist(), hashes.to_pylist(), wrapped.to_pylist()
        try:
            if kind == "encrypt":
                out: list[Any] = subject_encrypt_many(keks, table, column, v, h, w)
            elif kind == "decrypt":
                out = subject_decrypt_many(keks, table, column, v, h, w)
            elif kind == "tokenize":
                out = subject_tokenize_many(keks, v, h, w)
            elif kind == "detokenize":
                out = subject_detokenize_many(keks, v, h, w)
            else:
                out = subject_fpe_many(keks, alphabet, tweak, v, h, w, decrypt=kind == "unfpe")
        except DecryptionError:
            raise DecryptionError(
                f"a value of {where} could not be protected or revealed"
            ) from None
        except FpeDomainError as exc:
            raise ProtectionError(f"{where}: {exc}") from None
        return pa.array(out, type=arrow_type)

    return securepipe_subject.asNondeterministic() if kind == "encrypt" else securepipe_subject


def subject_expr(
    kind: str,
    table: str,
    column: str,
    kek: KeyHandle,
    col: Column,
    alphabet: str = "",
    tweak: bytes = b"",
) -> Column:
    """Apply a subject UDF to `col` with the row's `_subject_hash` and `_subject_wrapped`."""
    udf = build_subject_udf(kind, table, column, kek, alphabet, tweak)
    return udf(col, F.col(HASH_COLUMN), F.col(WRAPPED_COLUMN))


def new_subject_key_udf(kek: KeyHandle):  # type: ignore[no-untyped-def]
    """An Arrow UDF `subject hash -> wrapped key`: a fresh subject key wrapped under the KEK's
    current version (nondeterministic: Spark must not re-run it for the same row)."""
    version = kek.current

    @arrow_udf(BinaryType())  # type: ignore[call-overload]
    def securepipe_new_subject_key(hashes: pa.Array) -> pa.Array:
        key = data_keys(kek)[version]
        return pa.array(new_wrapped_subject_keys(key, version, hashes.to_pylist()), pa.binary())

    return securepipe_new_subject_key.asNondeterministic()


def rewrap_subject_key_udf(kek: KeyHandle):  # type: ignore[no-untyped-def]
    """An Arrow UDF `(subject hash, wrapped key) -> wrapped key` under the KEK's current
    version (the subject key itself is unchanged)."""
    version = kek.current

    @arrow_udf(BinaryType())  # type: ignore[call-overload]
    def securepipe_rewrap_subject_key(hashes: pa.Array, wrapped: pa.Array) -> pa.Array:
        keks = data_keys(kek)
        return pa.array(
            [
                rewrap_subject_key(keks, version, h, w)
                for h, w in zip(hashes.to_pylist(), wrapped.to_pylist(), strict=True)
            ],
            type=pa.binary(),
        )

    return securepipe_rewrap_subject_key.asNondeterministic()
