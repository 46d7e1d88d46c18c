"""Apply the configured operators to a DataFrame: one projection, plaintext never leaves it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from securepipe.config import TableConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.protect.base import ColumnContext
from securepipe.protect.registry import operator_for

__all__ = ["protect_columns", "protected_column"]


def protected_column(
    table: str, column: str, table_cfg: TableConfig, keys: Mapping[str, KeyHandle]
) -> Column | None:
    """The protected expression of one declared column (`None` if it is dropped)."""
    cfg = table_cfg.columns[column]
    operator = operator_for(cfg)
    key_name = operator.key_name(cfg.protect.params)
    ctx = ColumnContext(table, column, cfg, keys[key_name] if key_name else None)
    expr = operator.build(F.col(column), ctx)
    if expr is None:
        return None
    meta = {
        **operator.describe(cfg.protect.params),
        "securepipe.classification": cfg.classification.value,
    }
    return expr.alias(column, metadata=meta)


def protect_columns(
    df: DataFrame,
    table: str,
    table_cfg: TableConfig,
    keys: Mapping[str, KeyHandle],
    passthrough: Iterable[Column | str] = (),
) -> DataFrame:
    """Replace every declared column of `df` by its protected form.

    Args:
        df: rows with the declared columns (typed) plus `passthrough` columns.
        table: table name (bound into ciphertexts).
        table_cfg: the table's declarations.
        keys: resolved key handles by key name.
        passthrough: technical columns or expressions appended as they are (run date, reasons).

    Returns:
        A DataFrame with the protected columns in declared order, then `passthrough`.
    """
    exprs = [protected_column(table, name, table_cfg, keys) for name in table_cfg.columns]
    return df.select(*[e for e in exprs if e is not None], *passthrough)
