"""The nightly run: read → validate → protect → check → publish, per table."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from securepipe import __version__
from securepipe.config import PipelineConfig, TableConfig
from securepipe.crypto.keyring import KeyHandle, Keyring
from securepipe.delta_io import ensure_table, replace_partition
from securepipe.errors import ConfigError, GateFailed
from securepipe.protect import protect_columns
from securepipe.protect.registry import get_operator
from securepipe.protect.udfs import apply_udf, build_encrypt_udf
from securepipe.sources import SOURCE_FILE_COLUMN, read_landing
from securepipe.validate import RAW_RECORD_COLUMN, REASONS_COLUMN, parse_rows

__all__ = [
    "PARTITION_COLUMN",
    "RunResult",
    "TableResult",
    "parse_run_date",
    "quarantine_path",
    "run_nightly",
    "storage_root",
    "table_path",
]

PARTITION_COLUMN = "run_date"
RUN_ID_COLUMN = "_run_id"
_log = logging.getLogger(__name__)


@dataclass
class TableResult:
    """What one table's run did."""

    table: str
    rows_read: int
    rows_published: int
    rows_quarantined: int
    table_path: str
    table_version: int
    quarantine_path: str
    quarantine_version: int
    reasons: dict[str, int] = field(default_factory=dict)
    key_versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RunResult:
    """What a nightly run did, for the summary, the exit code and (later) the audit log."""

    run_id: str
    run_date: str
    config_hash: str
    tables: list[TableResult]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (counts and versions only)."""
        return asdict(self)


def storage_root(location: str) -> str:
    """A lakehouse or landing root as Spark should see it: URIs as given, local paths absolute."""
    if "://" in location:
        return location.rstrip("/")
    return str(Path(location).resolve())


def table_path(cfg: PipelineConfig, table: str) -> str:
    """Where the protected table `table` is published."""
    return f"{storage_root(cfg.lakehouse)}/tables/{table}"


def quarantine_path(cfg: PipelineConfig, table: str) -> str:
    """Where the rejected rows of `table` are kept (protected, with reason codes)."""
    return f"{storage_root(cfg.lakehouse)}/quarantine/{table}"


def _keys_of(table_cfg: TableConfig) -> set[str]:
    names = {table_cfg.quarantine_key}
    for col in table_cfg.columns.values():
        name = get_operator(col.protect.op).key_name(col.protect.params)
        if name:
            names.add(name)
    return names


def _stats_columns(table_cfg: TableConfig) -> list[str]:
    return [
        name
        for name, col in table_cfg.columns.items()
        if col.protect.op == "keep" and not col.classification.personal
    ]


def protect_batch(
    df: DataFrame, table: str, table_cfg: TableConfig, keys: dict[str, KeyHandle], run_date: str
) -> DataFrame:
    """Validate and protect a landing batch (pure: DataFrame → DataFrame).

    Returns:
        Protected declared columns, `_reasons`, the encrypted `_raw_record` of rejected rows,
        `_source_file` and `run_date`. No column holds plaintext of a protected column.
    """
    parsed = parse_rows(df, table_cfg)
    # A rejected row keeps its values in the encrypted raw record; format-preserving columns are
    # not tokenized for it (its value may be outside the FF1 domain).
    rejected = F.size(REASONS_COLUMN) > 0
    for name, col in table_cfg.columns.items():
        if col.protect.op == "fpe":
            parsed = parsed.withColumn(name, F.when(~rejected, F.col(name)))
    raw_udf = build_encrypt_udf(table, RAW_RECORD_COLUMN, keys[table_cfg.quarantine_key])
    # The raw record is encrypted in the same projection as the columns: plaintext never
    # reaches a later stage.
    return protect_columns(
        parsed,
        table,
        table_cfg,
        keys,
        passthrough=(
            F.col(REASONS_COLUMN),
            apply_udf(raw_udf, F.col(RAW_RECORD_COLUMN)).alias(
                RAW_RECORD_COLUMN,
                metadata={"securepipe.op": "encrypt", "securepipe.key": table_cfg.quarantine_key},
            ),
            F.col(SOURCE_FILE_COLUMN),
            F.lit(run_date).cast("date").alias(PARTITION_COLUMN),
        ),
    )


def _compliance_record(
    run_id: str, cfg: PipelineConfig, table: str, run_date: str, kind: str, **extra: object
) -> dict[str, object]:
    return {
        "securepipe": __version__,
        "run_id": run_id,
        "job": "nightly",
        "kind": kind,
        "table": table,
        "run_date": run_date,
        "config_hash": cfg.fingerprint(),
        "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def run_table(
    spark: SparkSession,
    cfg: PipelineConfig,
    table: str,
    run_date: str,
    run_id: str,
    keys: dict[str, KeyHandle],
) -> TableResult:
    """Run one table of the nightly job and publish it.

    Raises:
        SourceError: missing landing files. SchemaDriftError: undeclared landing columns.
        GateFailed: rows read ≠ rows published + rows quarantined.
    """
    started = time.monotonic()
    table_cfg = cfg.table(table)
    raw = read_landing(spark, table, table_cfg, storage_root(cfg.landing), run_date)
    batch = protect_batch(raw, table, table_cfg, keys, run_date).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        is_bad = F.size(REASONS_COLUMN) > 0
        counts = {bool(r[0]): int(r[1]) for r in batch.groupBy(is_bad).count().collect()}
        rows_read = counts.get(False, 0) + counts.get(True, 0)
        expected_quarantine = counts.get(True, 0)
        reasons = {
            r[0]: int(r[1])
            for r in batch.where(is_bad)
            .select(F.explode(REASONS_COLUMN).alias("reason"))
            .groupBy("reason")
            .count()
            .collect()
        }
        key_versions = {name: keys[name].current for name in sorted(_keys_of(table_cfg))}
        common = {"key_versions": key_versions, "rows_read": rows_read}

        qpath = quarantine_path(cfg, table)
        quarantined = batch.where(is_bad).withColumn(RUN_ID_COLUMN, F.lit(run_id))
        ensure_table(spark, qpath, quarantined.schema, PARTITION_COLUMN, [RUN_ID_COLUMN])
        qcommit = replace_partition(
            quarantined,
            qpath,
            PARTITION_COLUMN,
            run_date,
            _compliance_record(
                run_id, cfg, table, run_date, "quarantine", reasons=reasons, **common
            ),
        )

        tpath = table_path(cfg, table)
        published = batch.where(~is_bad).drop(REASONS_COLUMN, RAW_RECORD_COLUMN, SOURCE_FILE_COLUMN)
        ensure_table(spark, tpath, published.schema, PARTITION_COLUMN, _stats_columns(table_cfg))
        record = _compliance_record(
            run_id,
            cfg,
            table,
            run_date,
            "publish",
            rows_quarantined=qcommit.rows_written,
            gates={"row_accounting": "pass"},
            **common,
        )
        tcommit = replace_partition(published, tpath, PARTITION_COLUMN, run_date, record)
    finally:
        batch.unpersist()
    if rows_read != tcommit.rows_written + qcommit.rows_written:
        raise GateFailed(
            f"table {table!r}: row accounting failed: read {rows_read}, published "
            f"{tcommit.rows_written}, quarantined {qcommit.rows_written}"
        )
    if qcommit.rows_written != expected_quarantine:
        raise GateFailed(f"table {table!r}: quarantine count changed while writing")
    result = TableResult(
        table=table,
        rows_read=rows_read,
        rows_published=tcommit.rows_written,
        rows_quarantined=qcommit.rows_written,
        table_path=tpath,
        table_version=tcommit.version,
        quarantine_path=qpath,
        quarantine_version=qcommit.version,
        reasons=reasons,
        key_versions=key_versions,
        seconds=round(time.monotonic() - started, 2),
    )
    _log.info(
        "table %s: read %d, published %d, quarantined %d, version %d (%.1fs)",
        table,
        result.rows_read,
        result.rows_published,
        result.rows_quarantined,
        result.table_version,
        result.seconds,
    )
    return result


def resolve_keys(cfg: PipelineConfig, tables: Iterable[str]) -> dict[str, KeyHandle]:
    """Create missing declared keys and return the handles the tables need (driver side)."""
    keyring = Keyring(cfg.keystore, create=True)
    keyring.ensure(cfg.keys)
    needed: set[str] = set()
    for table in tables:
        needed |= _keys_of(cfg.table(table))
    return {name: keyring.handle(name) for name in sorted(needed)}


def new_run_id(run_date: str) -> str:
    """A unique, sortable run id."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{run_date}_{stamp}_{uuid.uuid4().hex[:8]}"


def parse_run_date(value: str | date) -> str:
    """The ISO form of a run date; `ConfigError` for anything else."""
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ConfigError(f"run date {value!r} is not an ISO date (YYYY-MM-DD)") from None


def run_nightly(
    spark: SparkSession,
    cfg: PipelineConfig,
    run_date: str | date,
    tables: Iterable[str] | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Run the nightly job for one date over the configured (or the given) tables.

    Args:
        spark: an active session configured by `securepipe.spark.configure_builder`.
        cfg: the validated configuration.
        run_date: the batch date (ISO string or `date`).
        tables: a subset of tables; all configured tables by default.
        run_id: an explicit run id (tests); generated otherwise.

    Returns:
        Counts, versions and paths per table.

    Raises:
        ConfigError: a bad date or an unknown table.
        SecurePipeError: any refusal on the way (see `run_table`).
    """
    day = parse_run_date(run_date)
    names = list(tables) if tables is not None else list(cfg.tables)
    for name in names:
        cfg.table(name)
    run_id = run_id or new_run_id(day)
    keys = resolve_keys(cfg, names)
    results = [run_table(spark, cfg, name, day, run_id, keys) for name in names]
    return RunResult(run_id=run_id, run_date=day, config_hash=cfg.fingerprint(), tables=results)
