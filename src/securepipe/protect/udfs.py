"""Factories of vectorised (Arrow) UDFs that protect a column on the executors.

Each factory takes only serialisable, non-secret arguments (names and a `KeyHandle` holding wrapped
keys). The returned UDF unwraps its key inside the Python worker, once per process
(`securepipe.crypto.keycache`), so no plaintext key is captured in the closure, the query plan or
the Spark configuration.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import BinaryType, StringType

from securepipe.crypto.envelope import encrypt_many, hmac_many
from securepipe.crypto.keycache import data_keys
from securepipe.crypto.keyring import KeyHandle

__all__ = ["build_encrypt_udf", "build_hmac_udf"]


def _as_list(values: pd.Series) -> list[str | None]:
    return [None if v is None or v is pd.NA else v for v in values.astype(object).tolist()]


def build_encrypt_udf(table: str, column: str, handle: KeyHandle):  # type: ignore[no-untyped-def]
    """A pandas UDF `string -> binary` sealing each value in an AES-256-GCM envelope.

    Args:
        table: table name bound into the associated data.
        column: column name bound into the associated data.
        handle: the aead key; its current version encrypts.
    """
    version = handle.current

    @pandas_udf(BinaryType())  # type: ignore[call-overload]
    def securepipe_encrypt(values: pd.Series) -> pd.Series:
        key = data_keys(handle)[version]
        return pd.Series(encrypt_many(key, version, table, column, _as_list(values)), dtype=object)

    return securepipe_encrypt


def build_hmac_udf(handle: KeyHandle):  # type: ignore[no-untyped-def]
    """A pandas UDF `string -> string` of HMAC-SHA256 tokens under the current key version."""
    version = handle.current

    @pandas_udf(StringType())  # type: ignore[call-overload]
    def securepipe_hmac(values: pd.Series) -> pd.Series:
        key = data_keys(handle)[version]
        return pd.Series(hmac_many(key, _as_list(values)), dtype=object)

    return securepipe_hmac


def apply_udf(udf, col: Column) -> Column:  # type: ignore[no-untyped-def]
    """Apply a protecting UDF to `col` cast to string (dates and numbers use Spark's casts)."""
    return udf(col.cast("string"))
