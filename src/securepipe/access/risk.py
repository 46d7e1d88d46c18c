"""Re-identification risk of a role table: k-anonymity, distinct l-diversity, prosecutor risk.

An *equivalence class* is the set of rows that share the same values of the quasi-identifiers
(the columns an attacker could link with other data: city, birth year, ...), as the role sees
them (after masks and the row filter), within one value of the `within` columns (the access
stage passes `run_date`: every reader can select one night, so the date is linkable too). Its
*size* counts distinct subjects when the role sees the table's subject column (clear or a
deterministic token: a customer with many transactions in a night is one person), rows
otherwise.

* k: the smallest class size. k-anonymity with target K holds when every class has K or more.
* l: per sensitive column, the smallest number of distinct (non-null) values within a class.
* prosecutor risk: the chance of re-identifying a given person known to be in the table, 1/size
  of their class; reported as the maximum (1/k) and the average over rows.

All figures come from one aggregation (classes, then a summary of the classes); no value of a
quasi-identifier or sensitive column ever leaves Spark: only counts do.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from securepipe.access.policy import AccessPolicy, RiskPolicy
from securepipe.access.views import role_columns
from securepipe.config import PipelineConfig
from securepipe.protect.registry import operator_for

__all__ = [
    "HISTOGRAM_BINS",
    "assess",
    "class_stats",
    "measured_columns",
    "risk_targets",
    "size_unit",
    "violating",
    "without_classes",
]

# Class-size bins of the histogram (lower bounds; the last bin is open).
HISTOGRAM_BINS = (1, 2, 3, 4, 5, 10, 20, 50, 100, 1000)
_SIZE, _ROWS, _KEPT = "_sp_size", "_sp_rows", "_sp_kept"


def size_unit(cfg: PipelineConfig, policy: AccessPolicy, role: str, table: str) -> str | None:
    """The column whose distinct values size a class (the table's subject, when the role sees it
    as clear or a deterministic token), or None to count rows."""
    subject = cfg.table(table).subject
    treatment = role_columns(policy, role, table).get(str(subject)) if subject else None
    if subject is None or treatment is None or treatment.kind not in ("clear", "token"):
        return None
    if treatment.kind == "token" and not operator_for(cfg.table(table).columns[subject]).joinable:
        return None
    return str(subject)


def measured_columns(risk: RiskPolicy, unit: str | None) -> list[str]:
    """The columns the measure reads (quasi-identifiers, sensitive, the size unit)."""
    out = [*risk.quasi_identifiers, *risk.sensitive]
    return out + ([unit] if unit and unit not in out else [])


def _l_name(i: int) -> str:
    return f"_sp_l{i}"


def class_stats(
    rows: DataFrame, risk: RiskPolicy, unit: str | None, within: Sequence[str] = ()
) -> DataFrame:
    """One row per equivalence class (per value of `within`): those columns, the
    quasi-identifiers, its size, its rows and the number of distinct values of each sensitive
    column (pure: DataFrame → DataFrame)."""
    size = F.countDistinct(unit) if unit else F.count(F.lit(1))
    return rows.groupBy(*within, *risk.quasi_identifiers).agg(
        size.alias(_SIZE),
        F.count(F.lit(1)).alias(_ROWS),
        *[F.countDistinct(c).alias(_l_name(i)) for i, c in enumerate(risk.sensitive)],
    )


def violating(risk: RiskPolicy) -> Column:
    """True for a class below the policy: fewer than k, or fewer than l distinct values of a
    sensitive column."""
    bad = F.col(_SIZE) < F.lit(risk.k)
    if risk.l_diversity is not None:
        for i in range(len(risk.sensitive)):
            bad = bad | (F.col(_l_name(i)) < F.lit(risk.l_diversity))
    return bad


def _summary(classes: DataFrame, risk: RiskPolicy) -> dict[str, Any]:
    """The figures of a table of classes, before the action and of the classes kept (those not
    violating the policy), in one aggregation."""
    marked = classes.withColumn(_KEPT, ~violating(risk))
    kept = F.col(_KEPT)
    aggs: list[Column] = [
        F.count(F.lit(1)).alias("classes"),
        F.sum(_ROWS).alias("rows"),
        F.min(_SIZE).alias("k"),
        F.sum(F.col(_ROWS) / F.col(_SIZE)).alias("risk_sum"),
        F.sum(F.when(F.col(_SIZE) < risk.k, 1).otherwise(0)).alias("classes_below_k"),
        F.sum(F.when(F.col(_SIZE) < risk.k, F.col(_ROWS)).otherwise(0)).alias("rows_below_k"),
        F.sum(F.when(~kept, 1).otherwise(0)).alias("classes_violating"),
        F.sum(F.when(~kept, F.col(_ROWS)).otherwise(0)).alias("rows_violating"),
        F.sum(F.when(kept, 1).otherwise(0)).alias("kept_classes"),
        F.sum(F.when(kept, F.col(_ROWS)).otherwise(0)).alias("kept_rows"),
        F.min(F.when(kept, F.col(_SIZE))).alias("kept_k"),
        F.sum(F.when(kept, F.col(_ROWS) / F.col(_SIZE))).alias("kept_risk_sum"),
    ]
    for i in range(len(risk.sensitive)):
        aggs += [
            F.min(_l_name(i)).alias(f"l{i}"),
            F.min(F.when(kept, F.col(_l_name(i)))).alias(f"kept_l{i}"),
        ]
    bins = [*HISTOGRAM_BINS, None]
    for lo, hi in itertools.pairwise(bins):
        assert lo is not None
        in_bin = (F.col(_SIZE) >= lo) & (F.col(_SIZE) < hi) if hi else F.col(_SIZE) >= lo
        aggs += [
            F.sum(F.when(in_bin, 1).otherwise(0)).alias(f"h{lo}_classes"),
            F.sum(F.when(in_bin, F.col(_ROWS)).otherwise(0)).alias(f"h{lo}_rows"),
        ]
    row = marked.agg(*aggs).first()
    got: dict[str, Any] = row.asDict() if row else {}

    def figures(prefix: str, classes_key: str, rows_key: str) -> dict[str, Any]:
        rows = int(got[rows_key] or 0)
        k = got[f"{prefix}k"]
        risk_sum = float(got[f"{prefix}risk_sum"] or 0.0)
        out: dict[str, Any] = {
            "rows": rows,
            "classes": int(got[classes_key] or 0),
            "k": int(k) if k is not None else None,
            "prosecutor_risk_max": round(1.0 / int(k), 6) if k else 0.0,
            "prosecutor_risk_avg": round(risk_sum / rows, 6) if rows else 0.0,
        }
        if risk.sensitive:
            out["l"] = {
                c: (int(got[f"{prefix}l{i}"]) if got[f"{prefix}l{i}"] is not None else None)
                for i, c in enumerate(risk.sensitive)
            }
        return out

    measured = figures("", "classes", "rows")
    rows = measured["rows"]
    measured.update(
        classes_below_k=int(got["classes_below_k"] or 0),
        rows_below_k=int(got["rows_below_k"] or 0),
        share_below_k=round(int(got["rows_below_k"] or 0) / rows, 6) if rows else 0.0,
        classes_violating=int(got["classes_violating"] or 0),
        rows_violating=int(got["rows_violating"] or 0),
        histogram=[
            {
                "size": f"{lo}-{hi - 1}" if hi and hi - lo > 1 else (str(lo) if hi else f"{lo}+"),
                "classes": int(got[f"h{lo}_classes"] or 0),
                "rows": int(got[f"h{lo}_rows"] or 0),
            }
            for lo, hi in itertools.pairwise(bins)
            if lo is not None
        ],
    )
    out = {"measured": measured}
    if risk.action == "suppress":
        out["kept"] = figures("kept_", "kept_classes", "kept_rows")
    return out


def assess(
    rows: DataFrame, risk: RiskPolicy, unit: str | None, within: Sequence[str] = ()
) -> tuple[dict[str, Any], DataFrame]:
    """Measure `rows` (what the role would see) against `risk`, classes taken within each value
    of the `within` columns.

    Returns:
        The figures (JSON-ready counts: the policy, `measured` before any action, `kept` for the
        classes that meet the policy, `passed`) and the classes (to suppress with; the caller
        persists or drops them).
    """
    classes = class_stats(rows, risk, unit, within)
    summary: dict[str, Any] = _summary(classes, risk)
    figures: dict[str, Any] = {
        "quasi_identifiers": list(risk.quasi_identifiers),
        "sensitive": list(risk.sensitive),
        "k_target": risk.k,
        "l_target": risk.l_diversity,
        "action": risk.action,
        "unit": "subjects" if unit else "rows",
        "classes_within": list(within),
        **summary,
        "passed": summary["measured"]["classes_violating"] == 0,
    }
    return figures, classes


def _null_safe_match(
    rows: DataFrame, classes: DataFrame, columns: Sequence[str]
) -> tuple[DataFrame, Column]:
    renamed = classes.select(*[F.col(c).alias(f"_sp_q{i}") for i, c in enumerate(columns)])
    cond = reduce(
        lambda a, b: a & b,
        [rows[c].eqNullSafe(F.col(f"_sp_q{i}")) for i, c in enumerate(columns)],
    )
    return renamed, cond


def without_classes(
    rows: DataFrame, classes: DataFrame, risk: RiskPolicy, within: Sequence[str] = ()
) -> DataFrame:
    """`rows` minus those in `classes` (matched on the `within` columns and the
    quasi-identifiers; nulls match nulls: a null is a class value too)."""
    renamed, cond = _null_safe_match(rows, classes, [*within, *risk.quasi_identifiers])
    return rows.join(renamed, cond, "left_anti")


def risk_targets(policy: AccessPolicy) -> list[dict[str, Any]]:
    """Per role table with a risk policy: its quasi-identifiers, sensitive columns, k, l and
    action (for the access matrix)."""
    out = []
    for role, rp in policy.roles.items():
        for table, tpol in rp.tables.items():
            if tpol.risk is not None:
                out.append(
                    {
                        "role": role,
                        "table": table,
                        "quasi_identifiers": list(tpol.risk.quasi_identifiers),
                        "sensitive": list(tpol.risk.sensitive),
                        "k": tpol.risk.k,
                        "l": tpol.risk.l_diversity,
                        "action": tpol.risk.action,
                    }
                )
    return out
