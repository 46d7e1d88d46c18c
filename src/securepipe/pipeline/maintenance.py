"""Retention: log retention properties and VACUUM on every table securepipe writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, timedelta

from delta.tables import DeltaTable
from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F

from securepipe import __version__
from securepipe.config import PipelineConfig
from securepipe.io.delta import (
    DELTA_SAFETY_HOURS,
    check_retention,
    commit_entry,
    commit_metadata,
    is_delta_table,
    retention_check_disabled,
)
from securepipe.io.fs import list_folders
from securepipe.layout import Layout
from securepipe.locks import lakehouse_lock

__all__ = ["delta_tables", "expire_quarantine", "maintain", "run_maintenance"]


def delta_tables(spark: SparkSession, cfg: PipelineConfig) -> list[str]:
    """Every Delta table under the lakehouse: tables, quarantine, access/<role>, _audit.

    Role tables are found on storage (local, `file://` or an object store alike), not in the
    policy: a role removed from it keeps its files until they are vacuumed too.
    """
    layout = Layout.of(cfg)
    candidates = [layout.table(t) for t in cfg.tables]
    candidates += [layout.quarantine(t) for t in cfg.tables]
    for role in list_folders(spark, f"{layout.root}/access"):
        candidates += [layout.access(role, t) for t in cfg.tables]
    candidates.append(layout.audit)
    return [p for p in candidates if is_delta_table(spark, p)]


def maintain(spark: SparkSession, cfg: PipelineConfig, hours: int) -> Iterator[str]:
    """Set retention properties, compact small files (OPTIMIZE) and VACUUM each table, yielding
    one line per table. OPTIMIZE changes no row (the role tables see it as neutral); the files
    it replaces are removed by a later VACUUM once older than the retention.

    The caller has checked `hours` against Delta's safety threshold (`io.delta.check_retention`)
    and holds the exclusive lakehouse lock; below the threshold, Delta's check is switched off
    for this work only and the session's previous setting is restored.
    """
    yield from expire_quarantine(spark, cfg)
    with ExitStack() as stack:
        if hours < DELTA_SAFETY_HOURS:
            stack.enter_context(retention_check_disabled(spark))
        for path in delta_tables(spark, cfg):
            days = cfg.retention.log_retention_days
            spark.sql(
                f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ("
                f"'delta.logRetentionDuration' = 'interval {days} days', "
                f"'delta.deletedFileRetentionDuration' = 'interval {max(hours, 1)} hours')"
            )
            table = DeltaTable.forPath(spark, path)
            with commit_metadata(spark, {"securepipe": __version__, "kind": "maintain"}):
                metrics = table.optimize().executeCompaction().first()
            table.vacuum(hours)
            compacted = _compaction(metrics)
            yield f"vacuumed {path} (retain {hours} h, log {days} days){compacted}"


def expire_quarantine(spark: SparkSession, cfg: PipelineConfig) -> Iterator[str]:
    """Delete quarantined rows (raw records included) of run dates older than
    `retention.quarantine_days`, one commit per table with a compliance record; the VACUUM that
    follows removes their files once past the file retention. Yields one line per table."""
    days = cfg.retention.quarantine_days
    cutoff = (date.today() - timedelta(days=days)).isoformat()
    for table in cfg.tables:
        path = Layout.of(cfg).quarantine(table)
        if not is_delta_table(spark, path):
            continue
        record = {
            "securepipe": __version__,
            "kind": "retention",
            "config_hash": cfg.fingerprint(),
            "older_than": cutoff,
            "write_id": uuid.uuid4().hex,  # finds this commit, not an earlier day's
        }
        with commit_metadata(spark, record):
            DeltaTable.forPath(spark, path).delete(F.col("run_date") < F.lit(cutoff).cast("date"))
        entry = commit_entry(spark, path, record)
        deleted = int(entry["operationMetrics"].get("numDeletedRows", 0)) if entry else 0
        yield f"expired {path}: {deleted} rows of run dates before {cutoff} ({days} days)"


def _compaction(row: Row | None) -> str:
    metrics = (row["metrics"].asDict() if row is not None and row["metrics"] else {}) or {}
    removed, added = int(metrics.get("numFilesRemoved", 0)), int(metrics.get("numFilesAdded", 0))
    return f", compacted {removed} files into {added}" if removed else ""


def run_maintenance(
    spark: SparkSession,
    cfg: PipelineConfig,
    hours: int | None = None,
    allow_below_safety: bool = False,
) -> list[str]:
    """The `maintain` job: checks the retention (default `retention.vacuum_hours`; below
    Delta's 7 days only when the configuration *and* the caller allow it), then VACUUMs alone on
    the lakehouse. Returns one line per table vacuumed.

    Raises:
        ConfigError: a retention below the safety threshold that was not allowed.
    """
    hours = cfg.retention.vacuum_hours if hours is None else hours
    check_retention(hours, cfg.retention.allow_below_safety and allow_below_safety)
    with lakehouse_lock(Layout.of(cfg), exclusive=True, what="maintain"):
        return list(maintain(spark, cfg, hours))
