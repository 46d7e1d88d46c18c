"""Row-level rules: GX expectations translated into Spark column expressions.

GX 1.x on Spark reports how many rows failed an expectation but not which ones, so an expectation
whose action is `quarantine` is evaluated here as a boolean Spark expression per row (the approach
of databrickslabs/dqx). Nulls pass, as they do in GX's column-map expectations.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import great_expectations as gx
from pyspark.sql import Column, Window
from pyspark.sql import functions as F

from securepipe.config import ExpectationSpec, GateConfig, TableConfig
from securepipe.errors import ConfigError
from securepipe.protect.registry import operator_for

__all__ = ["ROW_LEVEL", "gx_class_name", "row_rule", "validate_gate"]


def _between(c: Column, kw: dict[str, Any]) -> Column:
    cond = F.lit(True)
    if kw.get("min_value") is not None:
        lo = F.lit(kw["min_value"])
        cond = cond & ((c > lo) if kw.get("strict_min") else (c >= lo))
    if kw.get("max_value") is not None:
        hi = F.lit(kw["max_value"])
        cond = cond & ((c < hi) if kw.get("strict_max") else (c <= hi))
    return cond


ROW_LEVEL: dict[str, Callable[[Column, dict[str, Any]], Column]] = {
    "expect_column_values_to_not_be_null": lambda c, kw: c.isNotNull(),
    "expect_column_values_to_be_null": lambda c, kw: c.isNull(),
    "expect_column_values_to_be_in_set": lambda c, kw: c.isNull() | c.isin(list(kw["value_set"])),
    "expect_column_values_to_not_be_in_set": lambda c, kw: (
        c.isNull() | ~c.isin(list(kw["value_set"]))
    ),
    "expect_column_values_to_be_between": lambda c, kw: c.isNull() | _between(c, kw),
    "expect_column_values_to_match_regex": lambda c, kw: c.isNull() | c.rlike(kw["regex"]),
    "expect_column_values_to_not_match_regex": lambda c, kw: c.isNull() | ~c.rlike(kw["regex"]),
    "expect_column_value_lengths_to_be_between": lambda c, kw: (
        c.isNull() | _between(F.length(c), kw)
    ),
    "expect_column_values_to_be_unique": lambda c, kw: (
        c.isNull() | (F.count(F.lit(1)).over(Window.partitionBy(c)) == 1)
    ),
}


def gx_class_name(expectation: str) -> str:
    """`expect_column_values_to_not_be_null` → `ExpectColumnValuesToNotBeNull`."""
    return "".join(part.capitalize() for part in expectation.split("_"))


def reason_code(gate: str, spec: ExpectationSpec) -> str:
    """The reason code of rows quarantined by `spec` (explicit, or derived from the rule)."""
    if spec.reason:
        return spec.reason
    column = spec.kwargs.get("column", "")
    short = spec.expectation.removeprefix("expect_column_").removeprefix("values_to_")
    return f"{gate.upper()}:{short.upper()}:{column}"


def row_rule(spec: ExpectationSpec) -> Column:
    """True for rows that satisfy a row-level expectation."""
    return ROW_LEVEL[spec.expectation](F.col(spec.kwargs["column"]), spec.kwargs)


def validate_gate(gate: GateConfig, table_name: str, table: TableConfig) -> None:
    """Check a gate against GX and the table before Spark starts.

    Raises:
        ConfigError: unknown expectation, arguments GX refuses, an unknown column, or a
            `quarantine` action on an expectation that has no row-level form.
    """
    for i, spec in enumerate(gate.expectations):
        where = f"{gate.source_file}: expectation {i + 1} ({spec.expectation})"
        cls = getattr(gx.expectations, gx_class_name(spec.expectation), None)
        if cls is None or not spec.expectation.startswith("expect_"):
            raise ConfigError(f"{where}: unknown Great Expectations expectation")
        try:
            cls(**spec.kwargs)
        except Exception as exc:
            errors = getattr(exc, "errors", None)
            detail = (
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors())
                if callable(errors)
                else type(exc).__name__
            )
            raise ConfigError(f"{where}: invalid arguments ({detail})") from None
        column = spec.kwargs.get("column")
        if column is not None and column not in table.columns:
            raise ConfigError(f"{where}: table {table_name!r} has no column {column!r}")
        if column is not None and operator_for(table.columns[column]).removes_column:
            raise ConfigError(f"{where}: column {column!r} of table {table_name!r} is dropped")
        if spec.action == "quarantine":
            if spec.expectation not in ROW_LEVEL:
                raise ConfigError(
                    f"{where}: action 'quarantine' needs a row-level expectation "
                    f"({', '.join(sorted(ROW_LEVEL))})"
                )
            if "mostly" in spec.kwargs:
                raise ConfigError(f"{where}: 'mostly' cannot be used with action 'quarantine'")
        if spec.reason is not None and not re.fullmatch(r"[A-Z][A-Z0-9_:]*", spec.reason):
            raise ConfigError(f"{where}: reason must be UPPER_CASE letters, digits, _ or :")
