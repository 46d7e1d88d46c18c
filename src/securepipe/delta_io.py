"""Delta Lake I/O: table creation with safe statistics, idempotent partition replace, history."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from securepipe.errors import PublishError

__all__ = [
    "CommitInfo",
    "current_version",
    "ensure_table",
    "history",
    "replace_partition",
    "restore",
]


@dataclass(frozen=True)
class CommitInfo:
    """The Delta commit a write produced."""

    path: str
    version: int
    rows_written: int


def ensure_table(
    spark: SparkSession,
    path: str,
    schema: StructType,
    partition_by: str,
    stats_columns: Iterable[str],
) -> None:
    """Create the Delta table at `path` if it does not exist.

    Data-skipping statistics (min/max values in the `_delta_log`) are collected only for
    `stats_columns`: statistics of a protected column would copy values into the log, and tokens
    or ciphertexts gain nothing from them.
    """
    if DeltaTable.isDeltaTable(spark, path):
        return
    from securepipe.ops import retry_concurrent

    stats = [c for c in stats_columns if c != partition_by]
    builder = (
        DeltaTable.createIfNotExists(spark)
        .location(path)
        .addColumns(schema)
        .partitionedBy(partition_by)
        .property("delta.appendOnly", "false")
    )
    if stats:
        builder = builder.property("delta.dataSkippingStatsColumns", ",".join(stats))
    else:
        builder = builder.property("delta.dataSkippingNumIndexedCols", "0")
    # Two first runs racing to create the table: the loser retries and finds it created.
    retry_concurrent(builder.execute, f"creating Delta table {path}")


def replace_partition(
    df: DataFrame,
    path: str,
    partition_by: str,
    partition_value: str,
    user_metadata: dict[str, Any],
) -> CommitInfo:
    """Atomically replace one partition's rows (re-running a date never duplicates).

    Args:
        df: rows whose `partition_by` column equals `partition_value`.
        path: the Delta table.
        partition_by: the partition column (a date).
        partition_value: the ISO date being replaced.
        user_metadata: the compliance record, stored as JSON in the commit's `userMetadata`.

    Returns:
        The commit's version and row count.
    """
    from securepipe.ops import retry_concurrent

    def write() -> None:
        (
            df.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", f"{partition_by} = DATE'{partition_value}'")
            .option("userMetadata", json.dumps(user_metadata, sort_keys=True))
            .save(path)
        )

    # Another run committing to the same table first raises one of Delta's concurrency
    # exceptions: retry (the replaceWhere makes the write idempotent); any other error keeps its
    # class only, never its message (Spark messages can quote values).
    retry_concurrent(write, f"writing Delta table {path}")
    last = DeltaTable.forPath(df.sparkSession, path).history(1).collect()[0]
    metrics = last["operationMetrics"] or {}
    return CommitInfo(path, int(last["version"]), int(metrics.get("numOutputRows", 0)))


def history(spark: SparkSession, path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Version, timestamp, operation and the parsed compliance record of each commit."""
    if not DeltaTable.isDeltaTable(spark, path):
        raise PublishError(f"{path} is not a Delta table")
    table = DeltaTable.forPath(spark, path)
    rows = (table.history(limit) if limit else table.history()).collect()
    out = []
    for row in rows:
        meta = row["userMetadata"]
        try:
            record = json.loads(meta) if meta else None
        except ValueError:
            record = {"unparsed": meta}
        out.append(
            {
                "version": row["version"],
                "timestamp": str(row["timestamp"]),
                "operation": row["operation"],
                "record": record,
            }
        )
    return out


def current_version(spark: SparkSession, path: str) -> int:
    """The latest version of the Delta table at `path`, or -1 if there is none."""
    if not DeltaTable.isDeltaTable(spark, path):
        return -1
    return int(DeltaTable.forPath(spark, path).history(1).collect()[0]["version"])


def restore(spark: SparkSession, path: str, version: int) -> None:
    """Roll the table back to `version` (a new commit; used when a post-commit check fails)."""
    DeltaTable.forPath(spark, path).restoreToVersion(version)
