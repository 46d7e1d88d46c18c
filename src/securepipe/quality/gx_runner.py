"""Great Expectations 1.x suites run on a protected Spark DataFrame, with PII-free results.

GX's BASIC/SUMMARY/COMPLETE result formats copy failing *values* into results; we ask for counts
only (`partial_unexpected_count: 0`, no unexpected index lists) and then keep an allow-list of
count fields, so a report can never carry a value from a sensitive column.
"""

from __future__ import annotations

import logging
from typing import Any

import great_expectations as gx
from great_expectations.data_context.types.base import ProgressBarsConfig
from pyspark.sql import DataFrame, SparkSession

from securepipe.config import ExpectationSpec, GateConfig, TableConfig
from securepipe.protect.registry import operator_for
from securepipe.quality.rules import gx_class_name

__all__ = ["run_suite"]

_COUNT_FIELDS = ("element_count", "unexpected_count", "unexpected_percent", "missing_count")
_RESULT_FORMAT = {
    "result_format": "BASIC",
    "partial_unexpected_count": 0,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}


def _safe_observed(value: Any, column: str | None, table_cfg: TableConfig) -> Any:
    """Keep an observed value only if it is a number of a column published in clear."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if column is not None:
        cfg = table_cfg.columns.get(column)
        if cfg is None or not operator_for(cfg).passes_value or cfg.classification.personal:
            return None
    return value


_CONTEXTS: dict[SparkSession, tuple[Any, Any]] = {}


def _context(spark: SparkSession) -> tuple[Any, Any]:
    """One ephemeral GX context (and Spark data source) per process and session, reused by every
    suite run: a new context per run costs about a second and grows the process over nights."""
    key = spark  # the session itself: an id could be reused by a later session
    if key not in _CONTEXTS:
        _CONTEXTS.clear()  # a new session (tests, a restarted job): start afresh
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        _CONTEXTS[key] = (context, context.data_sources.add_spark(name="securepipe"))
    return _CONTEXTS[key]


def run_suite(
    df: DataFrame, gate: GateConfig, specs: list[ExpectationSpec], table_cfg: TableConfig
) -> list[dict[str, Any]]:
    """Validate `df` with the expectations `specs` of `gate`.

    Returns:
        One dict per expectation: expectation, column, action, success and counts; never values.
    """
    if not specs:
        return []
    context, source = _context(df.sparkSession)
    asset_name = f"gate_{gate.name}"
    if asset_name in source.get_asset_names():
        asset = source.get_asset(asset_name)
        batch = asset.get_batch_definition("batch")
    else:
        asset = source.add_dataframe_asset(name=asset_name)
        batch = asset.add_batch_definition_whole_dataframe("batch")
    suite = gx.ExpectationSuite(name=gate.name)
    for spec in specs:
        suite.add_expectation(
            getattr(gx.expectations, gx_class_name(spec.expectation))(**spec.kwargs)
        )
    suite = context.suites.add_or_update(suite)
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{gate.name}_validation", data=batch, suite=suite)
    )
    result = validation.run(batch_parameters={"dataframe": df}, result_format=_RESULT_FORMAT)
    out = []
    # GX keeps the suite's order in its results.
    for spec, res in zip(specs, result.results, strict=True):
        raw = res.result or {}
        column = spec.kwargs.get("column")
        entry: dict[str, Any] = {
            "gate": gate.name,
            "expectation": spec.expectation,
            "column": column,
            "action": spec.action,
            "success": bool(res.success),
        }
        entry.update({k: raw[k] for k in _COUNT_FIELDS if k in raw})
        observed = _safe_observed(raw.get("observed_value"), column, table_cfg)
        if observed is not None:
            entry["observed_value"] = observed
        info = res.exception_info or {}
        raised = info.get("raised_exception") or any(
            isinstance(v, dict) and v.get("raised_exception") for v in info.values()
        )
        if raised:
            entry["success"] = False
            entry["error"] = "expectation could not be evaluated"
        out.append(entry)
    return out
