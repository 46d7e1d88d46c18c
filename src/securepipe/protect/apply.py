"""Apply the configured operators to a DataFrame: one projection, plaintext never leaves it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from securepipe.config import TableConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.protect.base import ColumnContext
from securepipe.protect.registry import get_operator, operator_for
from securepipe.protect.subject_udfs import HASH_COLUMN, KEK_SENTINEL, WRAPPED_COLUMN, subject_expr
from securepipe.protect.udfs import apply_udf, build_encrypt_udf

__all__ = ["protect_columns", "protected_column", "sealed_raw_records"]


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


def sealed_raw_records(
    table: str,
    raw_name: str,
    subject_name: str,
    quarantine_key: str,
    keys: Mapping[str, KeyHandle],
    frame_columns: Iterable[str],
) -> tuple[Column, ...]:
    """The raw record of rejected rows (`raw_name`, plaintext), sealed in the same projection:
    under the quarantine key as `raw_name`, or, in a frame joined to the subject key store, under
    the subject's own key as `subject_name` when the row's subject has one (erased with it).

    The AAD binds each record to `table.raw_name` like any envelope of that column.
    """
    raw = F.col(raw_name)
    encrypt = get_operator("encrypt")
    meta = encrypt.describe({"key": quarantine_key})
    seal = build_encrypt_udf(table, raw_name, keys[quarantine_key])
    if HASH_COLUMN not in frame_columns or WRAPPED_COLUMN not in frame_columns:
        return (apply_udf(seal, raw).alias(raw_name, metadata=meta),)
    has_key = F.col(WRAPPED_COLUMN).isNotNull()
    by_subject = get_operator("encrypt_subject")
    return (
        apply_udf(seal, F.when(~has_key, raw)).alias(raw_name, metadata=meta),
        subject_expr("encrypt", table, raw_name, keys[KEK_SENTINEL], F.when(has_key, raw)).alias(
            subject_name, metadata=by_subject.describe({})
        ),
    )
