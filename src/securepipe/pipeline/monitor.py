"""What a run tells the systems that watch it: Prometheus metrics (Pushgateway, textfile) and
OpenLineage events, from the same results the audit entry is made of.

`RunMonitor.start` is called when a run begins, `RunMonitor.finish` however it ends (published,
refused by a gate, or stopped by an error). Neither ever raises: a monitoring or lineage system
that is down is logged as a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from openlineage.client.event_v2 import RunState

from securepipe.config import PipelineConfig
from securepipe.crypto.keyring import KeyHandle, Keyring, rotatable
from securepipe.io.lineage import (
    ComplianceRunFacet,
    LineageEmitter,
    OutputTable,
    column_lineage,
    input_datasets,
    output_datasets,
)
from securepipe.io.metrics import KeyFigures, TableFigures, push_metrics, write_metrics_file
from securepipe.layout import Layout
from securepipe.pipeline.keys import table_keys
from securepipe.pipeline.results import TableResult
from securepipe.pipeline.stages import TableStatus
from securepipe.protect.subject_udfs import KEK_SENTINEL
from securepipe.quality.gate import quarantine_codes

__all__ = ["RunEnd", "RunMonitor", "check_names", "table_figures"]

_log = logging.getLogger(__name__)
_DAY = 86_400.0


def check_names(gate: Mapping[str, Any]) -> dict[str, bool]:
    """Every check of a gate verdict record (built-in checks and expectations) → passed."""
    out = {str(c["name"]): bool(c["passed"]) for c in gate.get("checks", [])}
    for e in gate.get("expectations", []):
        name = f"{e['gate']}:{e['expectation']}" + (f"({e['column']})" if e.get("column") else "")
        out[name] = bool(e["success"])
    return out


def _state(result: TableResult | None, run_status: str) -> str:
    if result is None:
        return run_status if run_status in ("gate_failed", "error") else "error"
    if result.status == TableStatus.GATE_FAILED or result.access_refused:
        return "gate_failed"
    return "ok"


def _key_figures(cfg: PipelineConfig, names: Sequence[str], now: datetime) -> dict[str, KeyFigures]:
    """Version, age, rotation period and running totals of the named keys (no material)."""
    if not names:
        return {}
    try:
        described = {d["name"]: d for d in Keyring(cfg.keystore).describe()}
    except Exception as exc:  # the run's own error is reported elsewhere
        _log.warning("key figures left out of the metrics: %s", type(exc).__name__)
        return {}
    period = cfg.monitoring.key_rotation_days
    out = {}
    for name in names:
        d = described.get(name)
        if d is None:
            continue
        created_at = {int(v): c for v, c in d["versions"].items()}  # JSON keys are strings
        created = datetime.fromisoformat(created_at[int(d["current"])])
        out[name] = KeyFigures(
            name=name,
            version=int(d["current"]),
            age_seconds=max(0.0, (now - created).total_seconds()),
            rotation_period_seconds=(
                period * _DAY if period is not None and rotatable(d["type"]) else None
            ),
            encryptions_total={int(v): int(n) for v, n in d["encryptions"].items()},
        )
    return out


def _encryptions(labels: Mapping[str, int]) -> dict[tuple[str, int], int]:
    out = {}
    for label, n in labels.items():
        name, _, version = label.rpartition(":v")
        out[(name, int(version))] = int(n)
    return out


def table_figures(
    cfg: PipelineConfig,
    names: Sequence[str],
    results: Sequence[TableResult],
    run_status: str,
    seconds: float,
    now: datetime,
) -> list[TableFigures]:
    """The metrics of each table of a run; a table the run never reached gets the run's state."""
    by_name = {r.table: r for r in results}
    used = {n: table_keys(cfg, cfg.table(n)) for n in names}
    keys = _key_figures(cfg, sorted({k for ks in used.values() for k in ks}), now)
    out = []
    for name in names:
        r = by_name.get(name)
        reasons = dict.fromkeys(quarantine_codes(cfg, cfg.table(name)), 0)
        if r is not None:
            reasons.update(r.reasons)
        out.append(
            TableFigures(
                table=name,
                state=_state(r, run_status),
                ended_at=now.timestamp(),
                seconds=r.seconds if r is not None else seconds,
                stages=dict(r.stages) if r is not None else {},
                rows={
                    "read": r.rows_read if r else 0,
                    "published": r.rows_published if r else 0,
                    "quarantined": r.rows_quarantined if r else 0,
                    "erased": r.rows_erased if r else 0,
                },
                quarantined_by_reason=reasons,
                checks=check_names(r.gate) if r is not None else {},
                role_tables_refused=len(r.access_refused) if r is not None else 0,
                encryptions=_encryptions(r.encryptions) if r is not None else {},
                keys=tuple(keys[k] for k in used[name] if k in keys),
            )
        )
    return out


@dataclass(frozen=True)
class RunEnd:
    """How a run ended: its status (ok, gate_failed, error), the error or gate summary, the
    results of the tables it reached, and the key handles it used (empty if it never got them)."""

    status: str
    message: str
    results: Sequence[TableResult]
    keys: Mapping[str, KeyHandle]


class RunMonitor:
    """Metrics and lineage of one nightly run."""

    def __init__(self, cfg: PipelineConfig, run_id: str, run_date: str, tables: Sequence[str]):
        self._cfg, self._run_id, self._day, self._tables = cfg, run_id, run_date, list(tables)
        self._started = time.monotonic()
        lineage = cfg.monitoring.lineage
        self._lineage = (
            LineageEmitter(lineage, "nightly", run_id, run_date) if lineage is not None else None
        )

    def start(self) -> None:
        """The lineage START event."""
        if self._lineage is not None:
            self._lineage.start()

    def finish(self, end: RunEnd) -> None:
        """Push or write the metrics and send COMPLETE or FAIL; never raises."""
        try:
            self._metrics(end)
            if self._lineage is not None:
                self._send_lineage(end)
        except Exception as exc:  # never fail or hide the run
            _log.warning("run %s: metrics or lineage not sent: %s", self._run_id, _name(exc))

    def _metrics(self, end: RunEnd) -> None:
        monitoring = self._cfg.monitoring
        if not (monitoring.pushgateway or monitoring.metrics_file):
            return
        figures = table_figures(
            self._cfg,
            self._tables,
            end.results,
            end.status,
            round(time.monotonic() - self._started, 2),
            datetime.now(UTC),
        )
        if monitoring.pushgateway:
            push_metrics(
                monitoring.pushgateway, monitoring.job, figures, monitoring.timeout_seconds
            )
        if monitoring.metrics_file:
            try:
                write_metrics_file(monitoring.metrics_file, figures)
            except OSError as exc:
                _log.warning("metrics file %s not written: %s", monitoring.metrics_file, _name(exc))

    def _send_lineage(self, end: RunEnd) -> None:
        layout = Layout.of(self._cfg)
        inputs, outputs = [], []
        for r in end.results:
            table_inputs = input_datasets(r.input_files)
            inputs += table_inputs
            if r.status != TableStatus.PUBLISHED:
                continue
            table_cfg = self._cfg.table(r.table)
            outputs.append(
                OutputTable(
                    r.table_path,
                    r.table_version,
                    r.rows_published,
                    column_lineage(table_cfg, table_inputs),
                )
            )
            outputs.append(OutputTable(r.quarantine_path, r.quarantine_version, r.rows_quarantined))
            outputs += [
                OutputTable(layout.access(role, r.table), version)
                for role, version in sorted(r.access.items())
            ]
        compliance = ComplianceRunFacet(
            runId=self._run_id,
            runDate=self._day,
            status=end.status,
            configHash=self._cfg.fingerprint(),
            keyVersions={n: h.current for n, h in sorted(end.keys.items()) if n != KEK_SENTINEL},
            gates={
                r.table: {
                    "passed": r.gate.get("passed"),
                    "failures": list(r.gate.get("failures", [])),
                    "warnings": list(r.gate.get("warnings", [])),
                    "checks": check_names(r.gate),
                }
                for r in end.results
            },
        )
        assert self._lineage is not None
        self._lineage.finish(
            RunState.COMPLETE if end.status == "ok" else RunState.FAIL,
            inputs,
            output_datasets(outputs),
            compliance,
            error=end.message if end.status != "ok" else "",
        )


def _name(exc: BaseException) -> str:
    return type(exc).__name__
