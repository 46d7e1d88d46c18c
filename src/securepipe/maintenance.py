"""Retention: log retention properties and VACUUM on every table securepipe writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from securepipe.config import PipelineConfig
from securepipe.layout import access_path, quarantine_path, storage_root, table_path
from securepipe.ops import DELTA_SAFETY_HOURS, retention_check_disabled

__all__ = ["delta_tables", "maintain"]


def delta_tables(spark: SparkSession, cfg: PipelineConfig) -> list[str]:
    """Every Delta table under the lakehouse: tables, quarantine, access/<role>, _audit."""
    from securepipe.audit import audit_path

    root = storage_root(cfg.lakehouse)
    candidates = [table_path(cfg, t) for t in cfg.tables]
    candidates += [quarantine_path(cfg, t) for t in cfg.tables]
    access_root = Path(f"{root}/access")
    if "://" not in root and access_root.is_dir():
        for role in sorted(p.name for p in access_root.iterdir() if p.is_dir()):
            candidates += [access_path(cfg, role, t) for t in cfg.tables]
    candidates.append(audit_path(root))
    return [p for p in candidates if DeltaTable.isDeltaTable(spark, p)]


def maintain(spark: SparkSession, cfg: PipelineConfig, hours: int) -> Iterator[str]:
    """Set retention properties and VACUUM each table, yielding one line per table.

    The caller has checked `hours` against Delta's safety threshold (`ops.check_retention`) and
    holds the exclusive lakehouse lock; below the threshold, Delta's check is switched off for
    this work only and the session's previous setting is restored.
    """
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
            DeltaTable.forPath(spark, path).vacuum(hours)
            yield f"vacuumed {path} (retain {hours} h, log {days} days)"
