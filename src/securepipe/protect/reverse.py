"""Authorised reversal: decrypt envelopes and detokenize reversible tokens.

Reversal needs the key: callers pass the handles they were granted (`Keyring.handle`); a column
whose key is not among them is refused before any Spark plan is built. Failures at run time
(tampered value, value copied from another column, destroyed key version) surface as one
`DecryptionError` naming the table and column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from securepipe.config import TableConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.errors import KeyAccessError, PolicyError
from securepipe.protect.operators import fpe_alphabet, fpe_tweak
from securepipe.protect.registry import get_operator
from securepipe.protect.udfs import build_decrypt_udf, build_detokenize_udf
from securepipe.validate import spark_type

__all__ = ["decrypt_column", "detokenize", "reveal", "reveal_column"]


def decrypt_column(col: Column, table: str, column: str, handle: KeyHandle) -> Column:
    """Plaintext (string) of an `encrypt`ed column of `table`."""
    return build_decrypt_udf(table, column, handle)(col)


def detokenize(
    col: Column,
    table: str,
    column: str,
    handle: KeyHandle,
    kind: str,
    alphabet: str = "",
    tweak: bytes = b"",
) -> Column:
    """Plaintext of a `daead` token or an `fpe` token column."""
    return build_detokenize_udf(table, column, handle, kind, alphabet, tweak)(col)


def reveal_column(
    table: str, column: str, table_cfg: TableConfig, keys: Mapping[str, KeyHandle]
) -> Column:
    """The plaintext expression of a protected column, cast back to its declared type.

    Raises:
        PolicyError: the column's operator is not reversible (hmac tokens, masks, ...).
        KeyAccessError: the column's key is not among `keys`.
    """
    cfg = table_cfg.columns.get(column)
    if cfg is None:
        raise PolicyError(f"table {table!r} has no column {column!r}")
    spec = cfg.protect
    operator = get_operator(spec.op)
    if spec.op == "keep":
        return F.col(column)
    if operator.per_subject:
        raise PolicyError(
            f"column {column!r} of table {table!r} is protected per data subject: reveal it with "
            "securepipe.erasure.reveal_subject_columns"
        )
    if not operator.is_reversible(spec.params):
        raise PolicyError(
            f"column {column!r} of table {table!r} is protected by {spec.op!r}"
            f"{' ' + str(spec.params.get('kind')) if 'kind' in spec.params else ''}, "
            "which cannot be reversed"
        )
    key_name = str(spec.params["key"])
    handle = keys.get(key_name)
    if handle is None:
        raise KeyAccessError(
            f"no access to key {key_name!r} needed to reveal column {column!r} of table {table!r}"
        )
    if spec.op == "encrypt":
        clear = decrypt_column(F.col(column), table, column, handle)
    elif spec.op == "tokenize":
        clear = detokenize(F.col(column), table, column, handle, "daead")
    else:
        tweak = fpe_tweak(table, column, spec.params)
        clear = detokenize(
            F.col(column), table, column, handle, "fpe", fpe_alphabet(spec.params), tweak
        )
    if cfg.type != "string":
        clear = clear.cast(spark_type(cfg.type))
    return clear.alias(column)


def reveal(
    df: DataFrame,
    table: str,
    table_cfg: TableConfig,
    keys: Mapping[str, KeyHandle],
    columns: Iterable[str],
) -> DataFrame:
    """Replace `columns` of a protected DataFrame by their plaintext (authorised readers only)."""
    wanted = list(columns)
    exprs = {c: reveal_column(table, c, table_cfg, keys) for c in wanted}
    return df.select(*[exprs.get(c, F.col(c)) for c in df.columns])
