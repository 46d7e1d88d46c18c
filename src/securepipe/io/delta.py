"""Delta Lake I/O: table creation with safe statistics, idempotent partition replace, history."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from securepipe import __version__
from securepipe.errors import ConfigError, PublishError, SecurePipeError, error_kind
from securepipe.io.deltalog import history_entry, local_commits

__all__ = [
    "DELTA_SAFETY_HOURS",
    "CommitInfo",
    "TableMoved",
    "check_retention",
    "commit_carrying",
    "commit_entry",
    "commit_log",
    "commit_metadata",
    "commit_records",
    "commits_since",
    "compliance_record",
    "current_version",
    "delete_matching",
    "ensure_table",
    "history",
    "is_delta_table",
    "is_neutral",
    "overwrite_table",
    "record_commit",
    "replace_partition",
    "retention_check_disabled",
    "retry_concurrent",
    "sized",
    "spark_log_context",
    "table_properties",
    "undo_commit",
    "write_partitions",
]


@dataclass(frozen=True)
class CommitInfo:
    """The Delta commit a write produced. Delta makes no commit for a write with nothing to
    add or remove (no row, no earlier file in the partitions replaced): then `committed` is
    false, `version` is the table's newest version and `rows_written` 0."""

    path: str
    version: int
    rows_written: int
    committed: bool = True


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
    if is_delta_table(spark, path):
        return
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
    # Another run committing to the same table first raises one of Delta's concurrency
    # exceptions: retry (the replaceWhere makes the write idempotent); any other error keeps its
    # class only, never its message (Spark messages can quote values).
    return retry_concurrent(
        lambda: write_partitions(df, path, partition_by, [partition_value], user_metadata),
        f"writing Delta table {path}",
    )


def write_partitions(
    df: DataFrame,
    path: str,
    partition_by: str,
    partition_values: Sequence[str],
    user_metadata: dict[str, Any],
) -> CommitInfo:
    """Replace the partitions `partition_values` (ISO dates) of the table at `path` by `df`'s
    rows in one commit carrying `user_metadata`; other partitions are untouched.

    Errors propagate as Spark raised them: call it inside `retry_concurrent`.
    """
    dates = ", ".join(f"DATE'{date.fromisoformat(v).isoformat()}'" for v in partition_values)
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"{partition_by} IN ({dates})")
        .option("userMetadata", json.dumps(user_metadata, sort_keys=True))
        .save(path)
    )
    return commit_carrying(df.sparkSession, path, user_metadata)


def sized(df: DataFrame, rows: int, rows_per_file: int) -> DataFrame:
    """`df` in ceil(rows / rows_per_file) partitions at most, so that a partition of a table is
    written as that many files (a coalesce: no shuffle; `df` is best cached or cheap to read)."""
    return df.coalesce(max(1, -(-rows // rows_per_file)))


@contextmanager
def commit_metadata(spark: SparkSession, record: dict[str, Any]) -> Iterator[None]:
    """Attach `record` to every commit of the session inside the block (for Delta operations
    without a `userMetadata` option: MERGE, DELETE, OPTIMIZE); the previous value is restored."""
    previous = spark.conf.get(_USER_METADATA, None)
    spark.conf.set(_USER_METADATA, json.dumps(record, sort_keys=True))
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(_USER_METADATA)
        else:
            spark.conf.set(_USER_METADATA, previous)


@contextmanager
def spark_log_context(spark: SparkSession, **fields: str) -> Iterator[None]:
    """Put `fields` in the MDC of every task the block's jobs run (Spark's `mdc.` local
    properties), so that executor log lines say which run they belong to."""
    sc = spark.sparkContext
    previous = {key: sc.getLocalProperty(f"mdc.{key}") for key in fields}
    for key, value in fields.items():
        sc.setLocalProperty(f"mdc.{key}", value)
    try:
        yield
    finally:
        for key, before in previous.items():
            sc.setLocalProperty(f"mdc.{key}", before)  # type: ignore[arg-type]  # None unsets


def delete_matching(
    spark: SparkSession,
    path: str,
    column: str,
    values: DataFrame,
    record: dict[str, Any],
    where: str | None = None,
    normalized: bool = False,
) -> int:
    """Delete the rows of the table at `path` whose `column` is among `values` (a one-column
    frame named `value`), in one commit carrying `record`; `where` (over alias `t`, e.g. a
    partition predicate) limits the rows read; `normalized` compares trimmed, upper-cased
    values on both sides (a mistyped id in quarantine). Returns the rows deleted."""
    target = DeltaTable.forPath(spark, path)
    match = (
        f"upper(trim(t.`{column}`)) = upper(trim(e.value))"
        if normalized
        else f"t.`{column}` = e.value"
    )
    condition = " AND ".join(filter(None, [where, match]))
    with commit_metadata(spark, record):
        (target.alias("t").merge(values.alias("e"), condition).whenMatchedDelete().execute())
    # A MERGE that matched nothing may not commit; an overlapping run's may be the newest.
    entry = commit_entry(spark, path, record)
    return int(entry["operationMetrics"].get("numTargetRowsDeleted", 0)) if entry else 0


def record_commit(
    spark: SparkSession, path: str, record: dict[str, Any], expected_version: int
) -> CommitInfo:
    """Commit `record` to the table at `path` without changing a row or a property, for work
    that found nothing to write: Delta does not record empty writes, and the record must still
    say that the work was done.

    The commit is an empty `SET TBLPROPERTIES` made through the table's Delta log, by path:
    SQL's `ALTER TABLE` on the path would first ask the session catalog, which fails while
    another process holds an embedded metastore (a night must not, for a role table with no
    rows). The record states what was planned from version `expected_version`, so it must not
    land on a table that moved since: a commit made after that version raises `TableMoved`
    (before the transaction starts) or Delta's own conflict (the transaction reads the whole
    table), both retried by `retry_concurrent`, which plans again."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    delta = jvm.org.apache.spark.sql.delta
    scala = jvm.scala.collection.immutable
    no_properties = getattr(getattr(scala, "Map$"), "MODULE$").empty()
    no_actions = getattr(getattr(scala, "Nil$"), "MODULE$")
    log = delta.DeltaLog.forTable(spark._jsparkSession, path)
    txn = log.startTransaction()
    read = int(txn.snapshot().version())
    if read != expected_version:
        raise TableMoved(path, expected_version, read)
    txn.readWholeTable()  # a commit landing between here and ours makes ours conflict
    operation = getattr(delta, "DeltaOperations$SetTableProperties")(no_properties)
    with commit_metadata(spark, record):
        txn.commit(no_actions, operation)
    return commit_carrying(spark, path, record)


class TableMoved(RuntimeError):
    """Another writer committed to a table after the version a commit was planned from (a
    concurrency conflict: `is_conflict` is true, `retry_concurrent` retries)."""

    def __init__(self, path: str, planned: int, found: int) -> None:
        super().__init__(f"table {path} is at version {found}, planned from version {planned}")


# Commits that leave a table's rows as they were.
_NEUTRAL_OPERATIONS = frozenset(
    {"SET TBLPROPERTIES", "OPTIMIZE", "VACUUM START", "VACUUM END", "CREATE TABLE"}
)


def is_neutral(commit: dict[str, Any]) -> bool:
    """True for a `history` entry that changed no row (properties, OPTIMIZE, VACUUM)."""
    return str(commit.get("operation")) in _NEUTRAL_OPERATIONS


def commits_since(
    spark: SparkSession, path: str, version: int, now: int | None = None
) -> list[dict[str, Any]] | None:
    """The `history` entries after `version` up to `now` (default: the latest), oldest first;
    None when the log no longer holds all of them (log retention) or `version` is not a version
    of the table."""
    now = current_version(spark, path) if now is None else now
    if version < 0 or now < version:
        return None
    if now == version:
        return []
    # A few more than needed: a commit made since `now` was read must not push one out.
    entries = sorted(
        (e for e in history(spark, path, now - version + 4) if version < e["version"] <= now),
        key=lambda e: e["version"],
    )
    if [e["version"] for e in entries] != list(range(version + 1, now + 1)):
        return None
    return entries


def overwrite_table(
    df: DataFrame,
    path: str,
    record: dict[str, Any],
    partition_by: str | None = None,
    overwrite_schema: bool = False,
) -> CommitInfo:
    """Replace the whole table's contents (and schema) in one commit carrying `record`.

    Errors propagate as Spark raised them: call it inside `retry_concurrent`, which retries
    conflicts and turns anything else into a `PublishError` that names the class only.
    """
    writer = df.write.format("delta").mode("overwrite")
    # A table this write creates keeps no min/max statistics in its log: they would copy values
    # (a subject's id, a masked value) into commit files that outlive every erasure.
    writer = writer.option("delta.dataSkippingNumIndexedCols", "0")
    if overwrite_schema:
        writer = writer.option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.option("userMetadata", json.dumps(record, sort_keys=True)).save(path)
    return commit_carrying(df.sparkSession, path, record)


# How far back a writer looks for its own commit: overlapping runs put a few commits at most on
# top of it in the moment between its commit and its look.
_OWN_COMMIT_SEARCH = 20


def commit_carrying(spark: SparkSession, path: str, record: dict[str, Any]) -> CommitInfo:
    """The commit of the table at `path` whose compliance record is `record` (the write just
    made): not simply the newest, which can be an overlapping run's, or an older one when Delta
    made no commit for an empty write. No such commit: `committed` false, no row written."""
    entry = commit_entry(spark, path, record)
    if entry is None:
        return CommitInfo(path, current_version(spark, path), 0, committed=False)
    rows = int(entry["operationMetrics"].get("numOutputRows", 0))
    return CommitInfo(path, int(entry["version"]), rows)


def commit_entry(spark: SparkSession, path: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """The log entry (`commit_log`'s fields) of the commit of `path` carrying `record`, among
    the newest few; None when Delta made no such commit."""
    # The text is compared first: it is what the writers stored (`json.dumps(record,
    # sort_keys=True)`), and a NaN in a record would never equal itself once parsed.
    text = json.dumps(record, sort_keys=True)
    wanted = json.loads(text)
    for entry in commit_log(spark, path, _OWN_COMMIT_SEARCH) or []:
        stored = entry["userMetadata"]
        if stored == text:
            return entry
        try:
            if stored and json.loads(stored) == wanted:
                return entry
        except ValueError:
            continue
    return None


def compliance_record(
    job: str, run_id: str, table: str, config_hash: str, **extra: object
) -> dict[str, object]:
    """The compliance record of one commit (stored in `userMetadata`): who wrote it, from which
    configuration, when; `extra` carries the job's counts, key versions and gate verdicts."""
    return {
        "securepipe": __version__,
        "run_id": run_id,
        "job": job,
        "table": table,
        "config_hash": config_hash,
        "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def commit_records(
    spark: SparkSession, path: str, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """The parsed compliance records of the table's commits, newest first (none if the path is
    not a Delta table; commits without a readable record are skipped)."""
    for commit in commit_log(spark, path, limit) or []:
        try:
            record = json.loads(commit["userMetadata"] or "{}")
        except ValueError:
            continue
        if isinstance(record, dict) and record:
            yield record


_LOCAL: dict[str, str | None] = {}


def _local_path(spark: SparkSession, path: str) -> str | None:
    """The local file-system path of a table location as Spark resolves it (its default file
    system included), or None for any other file system; asked of Hadoop once per location."""
    if path not in _LOCAL:
        jvm = spark.sparkContext._jvm
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)  # type: ignore[union-attr]
        fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        local = fs.getScheme() == "file"
        _LOCAL[path] = str(fs.makeQualified(hadoop_path).toUri().getPath()) if local else None
    return _LOCAL[path]


def _configuration(meta: dict[str, Any] | None) -> dict[str, str] | None:
    """A `metaData` action's table properties (pyarrow gives a map as key/value pairs)."""
    if not meta:
        return None
    conf = meta.get("configuration") or {}
    pairs = conf.items() if isinstance(conf, dict) else conf
    return {str(k): str(v) for k, v in pairs}


def _checkpoint_properties(log: Path, version: int) -> dict[str, str] | None:
    """The properties in a Parquet checkpoint of `version` (single or multi-part; None when
    there is none here, e.g. a JSON v2 checkpoint: ask Delta instead)."""
    for part in sorted(log.glob(f"{version:020d}.checkpoint*.parquet")):
        column = pq.read_table(part, columns=["metaData"]).column("metaData")
        for meta in column.to_pylist():
            found = _configuration(meta)
            if found is not None:
                return found
    return None


def _local_properties(local: str) -> dict[str, str] | None:
    """The table properties in the newest `metaData` action of a local log: the commit files
    after the last checkpoint, newest first, then that checkpoint (a table's properties are
    usually set at its creation, long before night 365's checkpoint). None when neither holds
    them: ask Delta instead."""
    log = Path(local) / "_delta_log"
    since = -1
    marker = log / "_last_checkpoint"
    if marker.is_file():
        try:
            since = int(json.loads(marker.read_text(encoding="utf-8"))["version"])
        except (OSError, ValueError, KeyError):
            return None
    versions = sorted(
        (int(p.stem) for p in log.glob("*.json") if p.stem.isdigit() and int(p.stem) > since),
        reverse=True,
    )
    for version in versions:
        for line in (log / f"{version:020d}.json").read_text(encoding="utf-8").splitlines():
            action = json.loads(line) if line.strip() else {}
            if "metaData" in action:
                return _configuration(action["metaData"]) or {}
    return _checkpoint_properties(log, since) if since >= 0 else None


def table_properties(spark: SparkSession, path: str) -> dict[str, str]:
    """The Delta table's properties (`TBLPROPERTIES`). A local table's are read from its log
    (commit files and the last Parquet checkpoint: no Spark job); otherwise Delta is asked."""
    local = _local_path(spark, path)
    if local is not None:
        found = _local_properties(local)
        if found is not None:
            return found
    detail = DeltaTable.forPath(spark, path).detail().first()
    return {str(k): str(v) for k, v in ((detail["properties"] if detail else None) or {}).items()}


def commit_log(
    spark: SparkSession, path: str, limit: int | None = None
) -> list[dict[str, Any]] | None:
    """The newest `limit` commits of the Delta table at `path` (version, timestamp, operation,
    operationMetrics, userMetadata), newest first; None when there is no table.

    A table on the local file system is read from its log's commit files (no JVM call, no
    snapshot: the per-night cost of Delta's `history` was ~0.2 s per call, twenty calls a
    night); any other is asked of Delta's `history`.
    """
    local = _local_path(spark, path)
    if local is not None:
        return local_commits(local, limit)
    if not DeltaTable.isDeltaTable(spark, path):
        return None
    table = DeltaTable.forPath(spark, path)
    rows = (table.history(limit) if limit else table.history()).collect()
    return [
        {
            "version": int(row["version"]),
            "timestamp": row["timestamp"],
            "operation": row["operation"],
            "operationMetrics": row["operationMetrics"] or {},
            "userMetadata": row["userMetadata"],
        }
        for row in rows
    ]


def history(spark: SparkSession, path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Version, timestamp, operation and the parsed compliance record of each commit."""
    commits = commit_log(spark, path, limit)
    if commits is None:
        raise PublishError(f"{path} is not a Delta table")
    return [
        history_entry(c["version"], c["timestamp"], c["operation"], c["userMetadata"])
        for c in commits
    ]


def is_delta_table(spark: SparkSession, path: str) -> bool:
    """Whether `path` holds a Delta table (its log read as `commit_log` does)."""
    return current_version(spark, path) >= 0


def current_version(spark: SparkSession, path: str) -> int:
    """The latest version of the Delta table at `path`, or -1 if there is none."""
    commits = commit_log(spark, path, 1)
    return int(commits[0]["version"]) if commits else -1


def undo_commit(
    spark: SparkSession, commit: CommitInfo, partition_by: str, value: str, record: dict[str, Any]
) -> None:
    """Take back one commit of ours that replaced the partition `value` (an ISO date), leaving
    every other writer's commits alone.

    When ours is still the newest commit, the table is restored to the version before it (on a
    first night: the empty table `ensure_table` created). When an overlapping run committed
    since (another date: the run lock keeps a date to one run), a RESTORE would take that run's
    date out too; the partition is then written back as it was before ours. Either commit
    carries `record`. Call it inside `retry_concurrent`: a commit landing during the RESTORE
    makes it conflict, and the retry takes the second way.
    """
    if not commit.committed:
        return
    path = commit.path
    if current_version(spark, path) == commit.version:
        with commit_metadata(spark, record):
            DeltaTable.forPath(spark, path).restoreToVersion(commit.version - 1)
        return
    before = spark.read.format("delta").option("versionAsOf", commit.version - 1).load(path)
    day = F.col(partition_by) == F.lit(date.fromisoformat(value).isoformat()).cast("date")
    write_partitions(before.where(day), path, partition_by, [value], record)


_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
DELTA_SAFETY_HOURS = 168  # Delta refuses VACUUM below 7 days unless its check is disabled
_CONFLICTS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentWriteException",
    "ConcurrentTransactionException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DELTA_CONCURRENT",
    "DELTA_METADATA_CHANGED",
    "DELTA_TABLE_ALREADY_EXISTS",
    "TableMoved",
)
_log = logging.getLogger(__name__)
T = TypeVar("T")


def is_conflict(exc: BaseException) -> bool:
    """True for Delta's optimistic-concurrency conflicts (another writer committed first)."""
    text = type(exc).__name__ + " " + str(getattr(exc, "getCondition", lambda: "")() or "")
    if not any(c in text for c in _CONFLICTS):
        text += " " + str(exc)[:400]
    return any(c in text for c in _CONFLICTS)


def retry_concurrent(action: Callable[[], T], what: str, attempts: int = 4) -> T:
    """Run a Delta write, retrying when another writer won the race (with backoff).

    Raises:
        PublishError: still conflicting after `attempts`, or any other failure (class only).
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except SecurePipeError:
            raise  # our own refusals (a gate, a policy) are not concurrency conflicts
        except Exception as exc:
            if is_conflict(exc) and attempt < attempts:
                _log.warning("%s: concurrent commit, retrying (%d/%d)", what, attempt, attempts)
                time.sleep(0.5 * 2**attempt)
                continue
            reason = "concurrent writers kept winning" if is_conflict(exc) else error_kind(exc)
            raise PublishError(f"{what} failed ({reason})") from None
    raise PublishError(f"{what} failed")  # pragma: no cover


def check_retention(hours: int, allow_below_safety: bool) -> None:
    """Refuse a VACUUM retention below Delta's 7-day safety threshold unless asked explicitly.

    Raises:
        ConfigError: `hours` is below 168 and `allow_below_safety` is false.
    """
    if hours < 0:
        raise ConfigError("retention hours must not be negative")
    if hours < DELTA_SAFETY_HOURS and not allow_below_safety:
        raise ConfigError(
            f"VACUUM retention of {hours} h is below Delta's safety threshold of "
            f"{DELTA_SAFETY_HOURS} h: readers of older versions and running writers could lose "
            "files; pass --allow-below-safety (and set retention.allow_below_safety) to insist"
        )


_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


@contextmanager
def retention_check_disabled(spark: SparkSession) -> Iterator[None]:
    """Let VACUUM go below Delta's safety threshold inside the block, then restore the session's
    previous setting (not a hard-coded `true`). Call it only under the exclusive lakehouse lock:
    that is what makes a short retention safe for concurrent writers."""
    previous = spark.conf.get(_RETENTION_CHECK, None)
    spark.conf.set(_RETENTION_CHECK, "false")
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(_RETENTION_CHECK)
        else:
            spark.conf.set(_RETENTION_CHECK, previous)
