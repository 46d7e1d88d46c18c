"""A table's gate: row-level quarantine rules, GX suites and the built-in checks → one verdict.

`apply_quarantine_rules` is a pure DataFrame transform (reason codes appended per row);
`evaluate` runs every check on the persisted, protected batch and returns a `GateVerdict`. The job
decides what to do with it; nothing here writes a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from securepipe.config import PipelineConfig, TableConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.quality.builtin import CheckResult, leak_scan_exprs, token_check_exprs
from securepipe.quality.gx_runner import run_suite
from securepipe.quality.rules import reason_code, row_rule

__all__ = ["GateVerdict", "apply_quarantine_rules", "evaluate_gates", "quarantine_codes"]


@dataclass
class GateVerdict:
    """The outcome of every check of one table's batch."""

    table: str
    passed: bool
    checks: list[CheckResult] = field(default_factory=list)
    expectations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        """Names of what failed (checks and `fail` expectations)."""
        names = [c.name for c in self.checks if not c.passed]
        names += [
            f"{e['gate']}:{e['expectation']}" + (f"({e['column']})" if e.get("column") else "")
            for e in self.expectations
            if not e["success"] and e["action"] == "fail"
        ]
        return names

    @property
    def warnings(self) -> list[str]:
        """Expectations with action `warn` that did not pass."""
        return [
            f"{e['gate']}:{e['expectation']}" + (f"({e['column']})" if e.get("column") else "")
            for e in self.expectations
            if not e["success"] and e["action"] == "warn"
        ]

    def as_record(self) -> dict[str, Any]:
        """JSON-ready verdict (for commit metadata and reports); counts only."""
        return {
            "passed": self.passed,
            "failures": self.failures,
            "warnings": self.warnings,
            "checks": [asdict(c) for c in self.checks],
            "expectations": self.expectations,
        }


def _quarantine_rules(cfg: PipelineConfig, table_cfg: TableConfig) -> list[tuple[str, Column]]:
    """(reason code, true where a row breaks it) for the duplicate key and every `quarantine`
    expectation of the table's gates."""
    key = F.col(table_cfg.key)
    duplicate = key.isNotNull() & (F.count(F.lit(1)).over(Window.partitionBy(key)) > 1)
    rules = [(f"DUPLICATE_KEY:{table_cfg.key}", duplicate)]
    for gate_name in table_cfg.gates:
        for spec in cfg.gates[gate_name].expectations:
            if spec.action == "quarantine":
                broken = ~F.coalesce(row_rule(spec), F.lit(False))
                rules.append((reason_code(gate_name, spec), broken))
    return rules


def quarantine_codes(cfg: PipelineConfig, table_cfg: TableConfig) -> list[str]:
    """Every reason code `apply_quarantine_rules` can add for this table."""
    return [code for code, _ in _quarantine_rules(cfg, table_cfg)]


def apply_quarantine_rules(
    df: DataFrame, cfg: PipelineConfig, table_cfg: TableConfig, reasons_column: str
) -> DataFrame:
    """Append reason codes for rows that break a `quarantine` expectation or a duplicate key.

    Runs on the protected batch, so rules see what will be published.
    """
    checks = [F.when(broken, F.lit(code)) for code, broken in _quarantine_rules(cfg, table_cfg)]
    extra = F.array_compact(F.array(*checks))
    return df.withColumn(reasons_column, F.array_union(F.col(reasons_column), extra))


def evaluate_gates(
    batch: DataFrame,
    valid: DataFrame,
    table: str,
    cfg: PipelineConfig,
    keys: Mapping[str, KeyHandle],
) -> GateVerdict:
    """Run the built-in checks and the table's GX suites on a protected batch.

    Args:
        batch: all rows (persisted), published and quarantined alike — for the built-in scans.
        valid: the rows about to be published — for the GX suites.
        table: the table name.
        cfg: the pipeline configuration (gates, compliance detectors).
        keys: key handles (envelope version checks).
    """
    table_cfg = cfg.table(table)
    columns = [c for c in batch.columns if c in table_cfg.columns]
    exprs = {
        **leak_scan_exprs(batch.select(*columns), table_cfg, cfg.compliance),
        **token_check_exprs(table_cfg, keys, columns),
    }
    counts: dict[str, int] = {}
    if exprs:
        row = batch.agg(*[e.alias(name.replace(":", "__")) for name, e in exprs.items()]).first()
        counts = {name: int(row[name.replace(":", "__")] or 0) for name in exprs} if row else {}
    leaks = {k: v for k, v in counts.items() if k.startswith("leak:")}
    malformed = {k: v for k, v in counts.items() if k.startswith("malformed:")}
    checks = [
        CheckResult(
            "leak_scan",
            passed=not any(leaks.values()),
            counts={k: v for k, v in leaks.items() if v},
            detail=f"{len({k.split(':')[1] for k in leaks})} columns scanned",
        ),
        CheckResult(
            "well_formed_protection",
            passed=not any(malformed.values()),
            counts={k: v for k, v in malformed.items() if v},
            detail=f"{len(malformed)} protected columns checked",
        ),
    ]
    expectations: list[dict[str, Any]] = []
    for gate_name in table_cfg.gates:
        gate = cfg.gates[gate_name]
        specs = [s for s in gate.expectations if s.action in ("fail", "warn")]
        expectations += run_suite(valid, gate, specs, table_cfg)
    verdict = GateVerdict(table=table, passed=True, checks=checks, expectations=expectations)
    verdict.passed = not verdict.failures
    return verdict
