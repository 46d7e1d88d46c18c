"""Row rules as Spark column expressions: typing, required values, the key.

Each row gets `_reasons`, an array of reason codes (empty for a valid row) that name the rule and
the column, never the value. Rejected rows keep their original record in `_raw_record` so that
nothing is lost; the pipeline encrypts it before it is stored.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from securepipe.config import TableConfig
from securepipe.protect.registry import get_operator
from securepipe.sources import CORRUPT_COLUMN

__all__ = [
    "RAW_RECORD_COLUMN",
    "RAW_SUBJECT_RECORD_COLUMN",
    "REASONS_COLUMN",
    "parse_rows",
    "reason_codes",
    "spark_type",
]

REASONS_COLUMN = "_reasons"
RAW_RECORD_COLUMN = "_raw_record"
# The raw record of a rejected row whose subject is known, encrypted under the subject's key
# (erased with the subject); `_raw_record` holds the others, under the quarantine key.
RAW_SUBJECT_RECORD_COLUMN = "_raw_subject_record"

_SPARK_TYPE = {"integer": "int", "bigint": "long", "float": "double"}


def spark_type(declared: str) -> str:
    """The Spark SQL type name of a declared column type."""
    return _SPARK_TYPE.get(declared, declared)


def _typed(name: str, declared: str) -> Column:
    if declared == "string":
        return F.col(name)
    return F.col(name).try_cast(spark_type(declared))


def reason_codes(table_cfg: TableConfig) -> list[str]:
    """Every reason code `parse_rows` can emit for this table (for reports and docs)."""
    codes = ["MALFORMED_RECORD", f"MISSING_KEY:{table_cfg.key}"]
    for name, col in table_cfg.columns.items():
        if col.type != "string":
            codes.append(f"INVALID_{spark_type(col.type).split('(')[0].upper()}:{name}")
        if not col.nullable and name != table_cfg.key:
            codes.append(f"MISSING_VALUE:{name}")
        if name == table_cfg.subject and name != table_cfg.key:
            codes.append(f"MISSING_SUBJECT:{name}")
        if get_operator(col.protect.op).accepts(F.col(name), col.protect.params) is not None:
            codes.append(f"INVALID_FORMAT:{name}")
    return codes


def parse_rows(df: DataFrame, table_cfg: TableConfig) -> DataFrame:
    """Type the declared columns and attach reason codes to rows that break a row rule.

    Args:
        df: string columns as read by `securepipe.sources.read_landing`.
        table_cfg: the table's declarations.

    Returns:
        Declared columns with their declared types, `_reasons` (array<string>), `_raw_record`
        (the original record of rejected rows, null for valid rows), and the other technical
        columns of `df`.
    """
    checks: list[Column] = [
        F.when(F.col(CORRUPT_COLUMN).isNotNull(), F.lit("MALFORMED_RECORD")),
        F.when(F.col(table_cfg.key).isNull(), F.lit(f"MISSING_KEY:{table_cfg.key}")),
    ]
    for name, col in table_cfg.columns.items():
        if col.type != "string":
            code = f"INVALID_{spark_type(col.type).split('(')[0].upper()}:{name}"
            checks.append(
                F.when(F.col(name).isNotNull() & _typed(name, col.type).isNull(), F.lit(code))
            )
        if not col.nullable and name != table_cfg.key:
            checks.append(F.when(F.col(name).isNull(), F.lit(f"MISSING_VALUE:{name}")))
        if name == table_cfg.subject and name != table_cfg.key:
            checks.append(F.when(F.col(name).isNull(), F.lit(f"MISSING_SUBJECT:{name}")))
        accepted = get_operator(col.protect.op).accepts(F.col(name), col.protect.params)
        if accepted is not None:
            bad = F.col(name).isNotNull() & ~F.coalesce(accepted, F.lit(False))
            checks.append(F.when(bad, F.lit(f"INVALID_FORMAT:{name}")))
    reasons = F.array_compact(F.array(*checks))
    raw = F.coalesce(
        F.col(CORRUPT_COLUMN), F.to_json(F.struct(*[F.col(c) for c in table_cfg.columns]))
    )
    technical = [c for c in df.columns if c not in table_cfg.columns and c != CORRUPT_COLUMN]
    return df.select(
        *[_typed(name, col.type).alias(name) for name, col in table_cfg.columns.items()],
        reasons.alias(REASONS_COLUMN),
        F.when(F.size(reasons) > 0, raw).alias(RAW_RECORD_COLUMN),
        *technical,
    )
