"""The append-only audit log: one row per run in the Delta table `lakehouse/_audit/runs`.

The table is created with `delta.appendOnly = true`, so Delta itself refuses updates and deletes.
Rows hold counts, versions, verdicts, checksums and key versions: never a data value.
"""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from securepipe.io.delta import is_delta_table
from securepipe.io.deltalog import audit_rows, local_table

__all__ = [
    "AUDIT_SCHEMA",
    "AuditEntry",
    "append_audit",
    "new_run_id",
    "read_audit",
    "recent_runs",
]

AUDIT_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("job", StringType(), False),
        StructField("run_date", StringType(), True),
        StructField("user", StringType(), False),
        StructField("host", StringType(), False),
        StructField("started_at", TimestampType(), False),
        StructField("ended_at", TimestampType(), False),
        StructField("status", StringType(), False),
        StructField("rows_read", LongType(), True),
        StructField("rows_published", LongType(), True),
        StructField("rows_quarantined", LongType(), True),
        StructField("tables", StringType(), True),  # JSON: table → versions, counts, verdict
        StructField("input_checksums", StringType(), True),  # JSON list
        StructField("key_versions", StringType(), True),  # JSON: key → version
        StructField("message", StringType(), True),  # error class or gate summary, never a value
        StructField("config_hash", StringType(), True),
    ]
)


@dataclass
class AuditEntry:
    """One run, as the audit table stores it."""

    run_id: str
    job: str
    started_at: datetime
    ended_at: datetime
    status: str
    run_date: str | None = None
    rows_read: int | None = None
    rows_published: int | None = None
    rows_quarantined: int | None = None
    tables: dict[str, Any] = field(default_factory=dict)
    input_checksums: list[dict[str, Any]] = field(default_factory=list)
    key_versions: dict[str, int] = field(default_factory=dict)
    message: str = ""
    config_hash: str = ""

    def row(self) -> tuple[Any, ...]:
        """The entry as a row of `AUDIT_SCHEMA`."""
        return (
            self.run_id,
            self.job,
            self.run_date,
            getpass.getuser(),
            socket.gethostname(),
            self.started_at,
            self.ended_at,
            self.status,
            self.rows_read,
            self.rows_published,
            self.rows_quarantined,
            json.dumps(self.tables, sort_keys=True, default=str),
            json.dumps(self.input_checksums, sort_keys=True),
            json.dumps(self.key_versions, sort_keys=True),
            self.message,
            self.config_hash,
        )


def append_audit(spark: SparkSession, path: str, entries: Iterable[AuditEntry]) -> None:
    """Append entries to the audit table at `path` (`Layout.audit`; created append-only on first
    use)."""
    if not is_delta_table(spark, path):
        (
            DeltaTable.createIfNotExists(spark)
            .location(path)
            .addColumns(AUDIT_SCHEMA)
            .property("delta.appendOnly", "true")
            .execute()
        )
    df = spark.createDataFrame([e.row() for e in entries], AUDIT_SCHEMA)
    df.write.format("delta").mode("append").save(path)


def read_audit(spark: SparkSession, path: str) -> DataFrame:
    """The audit table at `path` (`Layout.audit`), newest run first."""
    return spark.read.format("delta").load(path).orderBy("started_at", ascending=False)


def recent_runs(spark: SparkSession, path: str, limit: int = 500) -> list[dict[str, Any]]:
    """The newest `limit` audit rows as dicts, newest first: read by delta-rs on a local
    lakehouse (no Spark job), by Spark on an object store."""
    local = local_table(path)
    if local is not None:
        return audit_rows(local, limit)
    return [r.asDict() for r in read_audit(spark, path).limit(limit).collect()]


def new_run_id(label: str) -> str:
    """A unique, sortable run id: `<label>_<UTC stamp>_<8 hex>` (the label: a run date or a
    job name)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{label}_{stamp}_{uuid.uuid4().hex[:8]}"
