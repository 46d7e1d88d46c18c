"""Row rules as Spark column expressions: typing, required values, the key.

Each row gets `_reasons`, an array of reason codes (empty for a valid row) that name the rule and
the column, never the value. Rejected rows keep their original record in `_raw_record` so that
nothing is lost; the pipeline encrypts it before it is stored.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from securepipe.config import ColumnConfig, TableConfig
from securepipe.io.sources import CORRUPT_COLUMN
from securepipe.protect.registry import operator_for

__all__ = [
    "RAW_RECORD_COLUMN",
    "RAW_SUBJECT_RECORD_COLUMN",
    "REASONS_COLUMN",
    "parse_rows",
    "reason_codes",
]

REASONS_COLUMN = "_reasons"
RAW_RECORD_COLUMN = "_raw_record"
# The raw record of a rejected row whose subject is known, encrypted under the subject's key
# (erased with the subject); `_raw_record` holds the others, under the quarantine key.
RAW_SUBJECT_RECORD_COLUMN = "_raw_subject_record"


def _typed(name: str, col: ColumnConfig) -> Column:
    if col.type == "string":
        return F.col(name)
    return F.col(name).try_cast(col.spark_type)


def _row_rules(table_cfg: TableConfig) -> list[tuple[str, Column]]:
    """Every row rule of the table: (reason code, true where a row breaks it)."""
    key = table_cfg.key
    rules = [
        ("MALFORMED_RECORD", F.col(CORRUPT_COLUMN).isNotNull()),
        (f"MISSING_KEY:{key}", F.col(key).isNull()),
    ]
    for name, col in table_cfg.columns.items():
        value = F.col(name)
        if col.type != "string":
            code = f"INVALID_{col.spark_type.split('(')[0].upper()}:{name}"
            rules.append((code, value.isNotNull() & _typed(name, col).isNull()))
        if not col.nullable and name != key:
            rules.append((f"MISSING_VALUE:{name}", value.isNull()))
        if name == table_cfg.subject and name != key:
            rules.append((f"MISSING_SUBJECT:{name}", value.isNull()))
        accepted = operator_for(col).accepts(value, col.protect.params)
        if accepted is not None:
            bad = value.isNotNull() & ~F.coalesce(accepted, F.lit(False))
            rules.append((f"INVALID_FORMAT:{name}", bad))
    return rules


def reason_codes(table_cfg: TableConfig) -> list[str]:
    """Every reason code `parse_rows` can emit for this table (for reports and docs)."""
    return [code for code, _ in _row_rules(table_cfg)]


def parse_rows(df: DataFrame, table_cfg: TableConfig) -> DataFrame:
    """Type the declared columns and attach reason codes to rows that break a row rule.

    Args:
        df: string columns as read by `securepipe.io.sources.read_landing`.
        table_cfg: the table's declarations.

    Returns:
        Declared columns with their declared types, `_reasons` (array<string>), `_raw_record`
        (the original record of rejected rows, null for valid rows), and the other technical
        columns of `df`.
    """
    checks = [F.when(broken, F.lit(code)) for code, broken in _row_rules(table_cfg)]
    reasons = F.array_compact(F.array(*checks))
    raw = F.coalesce(
        F.col(CORRUPT_COLUMN), F.to_json(F.struct(*[F.col(c) for c in table_cfg.columns]))
    )
    technical = [c for c in df.columns if c not in table_cfg.columns and c != CORRUPT_COLUMN]
    return df.select(
        *[_typed(name, col).alias(name) for name, col in table_cfg.columns.items()],
        reasons.alias(REASONS_COLUMN),
        F.when(F.size(reasons) > 0, raw).alias(RAW_RECORD_COLUMN),
        *technical,
    )
