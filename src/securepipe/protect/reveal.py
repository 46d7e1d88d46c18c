"""Authorised reversal: the plaintext of a protected column, asked of its operator.

Reversal needs the key: callers pass the handles they were granted (`Keyring.handle`); a column
whose key is not among them is refused before any Spark plan is built. Failures at run time
(tampered value, value copied from another column, destroyed key version) surface as one
`DecryptionError` naming the table and column.

Per-subject columns (`Operator.per_subject`) open with the subject KEK (under `KEK_SENTINEL`) on a
frame that carries `_subject_wrapped`: `securepipe.access.views.reveal_columns` joins it from the
subject key store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from securepipe.config import TableConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.errors import KeyAccessError, PolicyError
from securepipe.protect.base import ColumnContext
from securepipe.protect.registry import operator_for

__all__ = ["reveal", "reveal_column"]


def reveal_column(
    table: str, column: str, table_cfg: TableConfig, keys: Mapping[str, KeyHandle]
) -> Column:
    """The plaintext expression of a protected column, cast back to its declared type.

    Raises:
        PolicyError: unknown column, or an operator that cannot be reversed (hmac tokens, masks).
        KeyAccessError: the column's key is not among `keys`.
    """
    cfg = table_cfg.columns.get(column)
    if cfg is None:
        raise PolicyError(f"table {table!r} has no column {column!r}")
    operator = operator_for(cfg)
    key_name = operator.key_name(cfg.protect.params)
    handle = keys.get(key_name) if key_name else None
    if key_name and handle is None and operator.is_reversible(cfg.protect.params):
        raise KeyAccessError(
            f"no access to key {key_name!r} needed to reveal column {column!r} of table {table!r}"
        )
    clear = operator.reveal(F.col(column), ColumnContext(table, column, cfg, handle))
    if cfg.type != "string" and not operator.passes_value:
        clear = clear.cast(cfg.spark_type)
    return clear.alias(column)


def reveal(
    df: DataFrame,
    table: str,
    table_cfg: TableConfig,
    keys: Mapping[str, KeyHandle],
    columns: Iterable[str],
) -> DataFrame:
    """Replace `columns` of a protected DataFrame by their plaintext (pure; authorised readers
    only; per-subject columns need `_subject_wrapped` on `df`)."""
    exprs = {c: reveal_column(table, c, table_cfg, keys) for c in columns}
    return df.select(*[exprs.get(c, F.col(c)) for c in df.columns])
