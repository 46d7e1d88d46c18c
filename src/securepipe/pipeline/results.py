"""What a nightly run did, table by table: the counts, versions, verdicts and timings that the
summary, the exit code, the report, the audit entry, the metrics and the lineage events are made
of (never a value)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from securepipe.config import PipelineConfig
from securepipe.io.delta import current_version
from securepipe.layout import Layout
from securepipe.pipeline.stages import Evaluated, Landing, Prepared, Published, TableStatus

__all__ = ["RunResult", "TableResult"]


@dataclass
class TableResult:
    """What one table's run did."""

    table: str
    status: TableStatus
    rows_read: int
    rows_published: int
    rows_quarantined: int
    table_path: str
    table_version: int
    quarantine_path: str
    quarantine_version: int
    reasons: dict[str, int] = field(default_factory=dict)
    key_versions: dict[str, int] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    input_files: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    access: dict[str, int] = field(default_factory=dict)
    risk: dict[str, dict[str, Any]] = field(default_factory=dict)  # role → figures (counts)
    access_refused: dict[str, str] = field(default_factory=dict)  # role → risk gate message
    rows_erased: int = 0
    encryptions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        spark: SparkSession,
        cfg: PipelineConfig,
        landing: Landing,
        prepared: Prepared | None = None,
        evaluated: Evaluated | None = None,
        published: Published | None = None,
    ) -> TableResult:
        """The result after the stages that ran (skipped, refused by a gate, or published)."""
        layout = Layout.of(cfg)
        tpath, qpath = layout.table(landing.table), layout.quarantine(landing.table)
        status = TableStatus.SKIPPED
        if evaluated is not None:
            status = TableStatus.PUBLISHED if evaluated.passed else TableStatus.GATE_FAILED
        return cls(
            table=landing.table,
            status=status,
            rows_read=prepared.rows_read if prepared else 0,
            rows_published=published.table.rows_written if published else 0,
            rows_quarantined=published.quarantine.rows_written if published else 0,
            table_path=tpath,
            table_version=published.table.version if published else current_version(spark, tpath),
            quarantine_path=qpath,
            quarantine_version=(
                published.quarantine.version if published else current_version(spark, qpath)
            ),
            reasons=evaluated.reasons if evaluated else {},
            key_versions=prepared.key_versions if prepared else {},
            gate=evaluated.verdict.as_record() if evaluated else {},
            input_files=landing.input_files,
            rows_erased=prepared.rows_erased if prepared else 0,
            encryptions=prepared.encryptions if prepared else {},
        )


@dataclass
class RunResult:
    """What a nightly run did, for the summary, the exit code, the report and the audit log."""

    run_id: str
    run_date: str
    config_hash: str
    tables: list[TableResult]
    report_path: str = ""

    @property
    def status(self) -> str:
        """`ok`, or `gate_failed` if any table's gate refused its batch or any role table's
        risk gate refused it."""
        failed = any(t.status == TableStatus.GATE_FAILED or t.access_refused for t in self.tables)
        return TableStatus.GATE_FAILED.value if failed else "ok"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (counts, versions, verdicts; no values)."""
        return {**asdict(self), "status": self.status}
