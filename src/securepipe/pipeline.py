"""The nightly run: read → validate → protect → check → publish, per table."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from securepipe import __version__
from securepipe.access.policy import AccessPolicy
from securepipe.access.publish import publish_role_tables
from securepipe.audit import AuditEntry, append_audit
from securepipe.config import PipelineConfig, TableConfig
from securepipe.crypto.keyring import KeyHandle, Keyring
from securepipe.delta_io import current_version, ensure_table, replace_partition, restore
from securepipe.erasure import (
    ERASED_REASON,
    KEK_SENTINEL,
    attach_subject_keys,
    drop_erased_subjects,
    ensure_subject_keys,
    with_subject_hash,
)
from securepipe.errors import ConfigError, GateFailed, KeyAccessError, SecurePipeError
from securepipe.layout import (
    lock_dir,
    quarantine_path,
    reports_root,
    storage_root,
    table_path,
)
from securepipe.ops import lakehouse_lock, run_lock
from securepipe.protect import protect_columns
from securepipe.protect.registry import get_operator
from securepipe.protect.subject_udfs import HASH_COLUMN, WRAPPED_COLUMN, subject_expr
from securepipe.protect.udfs import apply_udf, build_encrypt_udf
from securepipe.quality.gate import apply_quarantine_rules, evaluate
from securepipe.quality.report import write_report
from securepipe.sources import SOURCE_FILE_COLUMN, read_landing
from securepipe.validate import (
    RAW_RECORD_COLUMN,
    RAW_SUBJECT_RECORD_COLUMN,
    REASONS_COLUMN,
    parse_rows,
)

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
    status: str  # "published" or "gate_failed"
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
    rows_erased: int = 0
    encryptions: dict[str, int] = field(default_factory=dict)


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
        """`ok`, or `gate_failed` if any table's gate refused its batch."""
        return "gate_failed" if any(t.status == "gate_failed" for t in self.tables) else "ok"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (counts, versions, verdicts; no values)."""
        return {**asdict(self), "status": self.status}


def _random_nonce_columns(table_cfg: TableConfig, columns: list[str]) -> dict[str, str]:
    """Columns sealed with AES-GCM under a column key (random nonces), with their key name."""
    out = {}
    for name in columns:
        col = table_cfg.columns.get(name)
        if col is None:
            continue
        operator = get_operator(col.protect.op)
        key = operator.key_name(col.protect.params)
        if operator.random_nonce and key:
            out[name] = key
    if RAW_RECORD_COLUMN in columns:
        out[RAW_RECORD_COLUMN] = table_cfg.quarantine_key
    return out


def check_keyring_not_rolled_back(
    spark: SparkSession, path: str, table: str, keys: dict[str, KeyHandle]
) -> None:
    """Refuse a keyring older than the one the table was last written with.

    The last commit records each key's version and the keyring's generation; a keyring whose
    generation or current versions are lower was restored from an older copy (a destroyed version
    put back, `current` rolled back).

    Raises:
        KeyAccessError: naming the key (or the generation) and the table.
    """
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return
    for row in DeltaTable.forPath(spark, path).history(20).select("userMetadata").collect():
        try:
            record = json.loads(row["userMetadata"] or "{}")
        except ValueError:
            continue
        if record.get("kind") != "publish":
            continue
        generation = max((h.generation for h in keys.values()), default=0)
        if int(record.get("keyring_generation", 0)) > generation:
            raise KeyAccessError(
                f"table {table!r} was last written with keyring generation "
                f"{record['keyring_generation']}, the key store holds generation {generation}: "
                "the keyring was rolled back; restore the current one"
            )
        for name, version in (record.get("key_versions") or {}).items():
            handle = keys.get(name)
            if handle is not None and int(version) > handle.current:
                raise KeyAccessError(
                    f"key {name!r}: table {table!r} was last written with version {version}, "
                    f"the keyring's current version is {handle.current}: the keyring was rolled "
                    "back; restore the current one"
                )
        return


def _keys_of(table_cfg: TableConfig) -> set[str]:
    names = {table_cfg.quarantine_key}
    for col in table_cfg.columns.values():
        name = get_operator(col.protect.op).key_name(col.protect.params)
        if name and name != KEK_SENTINEL:
            names.add(name)
    return names


def _stats_columns(table_cfg: TableConfig) -> list[str]:
    return [
        name
        for name, col in table_cfg.columns.items()
        if get_operator(col.protect.op).erasure_class(col.protect.params) == "clear"
        and not col.classification.personal
    ]


def protect_batch(
    df: DataFrame, table: str, table_cfg: TableConfig, keys: dict[str, KeyHandle], run_date: str
) -> DataFrame:
    """Validate and protect a landing batch (pure: DataFrame → DataFrame).

    A frame of a subject table carries `_subject_hash` and `_subject_wrapped` (joined by the
    pipeline): per-subject columns and the raw record of a rejected row with a known subject are
    then encrypted under the subject's key.

    Returns:
        Protected declared columns, `_reasons`, the encrypted `_raw_record` (quarantine key) or
        `_raw_subject_record` (subject key) of rejected rows, `_source_file` and `run_date`. No
        column holds plaintext of a protected column.
    """
    parsed = parse_rows(df, table_cfg)
    # A rejected row keeps its values in the encrypted raw record; columns whose operator has an
    # input domain (FF1) or needs the subject's key are not protected for it.
    rejected = F.size(REASONS_COLUMN) > 0
    for name, col in table_cfg.columns.items():
        operator = get_operator(col.protect.op)
        if operator.per_subject or operator.accepts(F.col(name), col.protect.params) is not None:
            parsed = parsed.withColumn(name, F.when(~rejected, F.col(name)))
    raw_udf = build_encrypt_udf(table, RAW_RECORD_COLUMN, keys[table_cfg.quarantine_key])
    raw = F.col(RAW_RECORD_COLUMN)
    quarantine_meta = {"securepipe.op": "encrypt", "securepipe.key": table_cfg.quarantine_key}
    if HASH_COLUMN in parsed.columns and WRAPPED_COLUMN in parsed.columns:
        has_key = F.col(WRAPPED_COLUMN).isNotNull()
        raw_records: tuple[Column, ...] = (
            apply_udf(raw_udf, F.when(~has_key, raw)).alias(
                RAW_RECORD_COLUMN, metadata=quarantine_meta
            ),
            subject_expr(
                "encrypt", table, RAW_RECORD_COLUMN, keys[KEK_SENTINEL], F.when(has_key, raw)
            ).alias(RAW_SUBJECT_RECORD_COLUMN, metadata={"securepipe.op": "encrypt_subject"}),
        )
    else:
        raw_records = (apply_udf(raw_udf, raw).alias(RAW_RECORD_COLUMN, metadata=quarantine_meta),)
    # The raw record is encrypted in the same projection as the columns: plaintext never
    # reaches a later stage.
    return protect_columns(
        parsed,
        table,
        table_cfg,
        keys,
        passthrough=(
            F.col(REASONS_COLUMN),
            *raw_records,
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


def _input_files(spark: SparkSession, df: DataFrame) -> list[dict[str, Any]]:
    """Each landing file with its size and SHA-256 (local files) for the compliance record."""
    out = []
    for uri in sorted(df.inputFiles()):
        entry: dict[str, Any] = {"path": uri}
        local = uri.removeprefix("file:") if uri.startswith("file:") else None
        if local is not None and Path(local).is_file():
            digest = hashlib.sha256()
            with open(local, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            entry.update(bytes=Path(local).stat().st_size, sha256=digest.hexdigest())
        else:
            jvm: Any = spark.sparkContext._jvm
            hpath = jvm.org.apache.hadoop.fs.Path(uri)
            fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
            status = fs.getFileStatus(hpath)
            entry.update(bytes=int(status.getLen()), modified=int(status.getModificationTime()))
        out.append(entry)
    return out


def _already_published(
    spark: SparkSession, path: str, run_date: str, inputs: list[dict[str, Any]], config_hash: str
) -> bool:
    """True if the latest publish of `run_date` used the same input checksums and config."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path) or not all("sha256" in f for f in inputs):
        return False
    for row in DeltaTable.forPath(spark, path).history().select("userMetadata").collect():
        try:
            record = json.loads(row["userMetadata"] or "{}")
        except ValueError:
            continue
        if record.get("run_date") == run_date and record.get("kind") == "publish":
            theirs = sorted(f.get("sha256", "") for f in record.get("input_files", []))
            return (
                theirs == sorted(f["sha256"] for f in inputs)
                and record.get("config_hash") == config_hash
            )
    return False


def _fault_point(name: str) -> None:
    """Test hook: with SECUREPIPE_FAULT_<NAME>=<file>, touch the file and wait to be killed."""
    marker = os.environ.get(f"SECUREPIPE_FAULT_{name}")
    if marker:
        Path(marker).touch()
        time.sleep(float(os.environ.get("SECUREPIPE_FAULT_SECONDS", "120")))


def _stage(table: str, stage: str, seconds: float, **counts: int) -> None:
    detail = " ".join(f"{k}={v}" for k, v in counts.items())
    _log.info(
        "table %s: %s done in %.1fs %s",
        table,
        stage,
        seconds,
        detail,
        extra={"event": "stage", "table": table, "stage": stage, "seconds": seconds, **counts},
    )


def run_table(
    spark: SparkSession,
    cfg: PipelineConfig,
    table: str,
    run_date: str,
    run_id: str,
    keys: dict[str, KeyHandle],
    skip_unchanged: bool = False,
) -> TableResult:
    """Run one table of the nightly job: protect, gate, then publish (or refuse).

    Returns:
        The table's result; `status == "gate_failed"` when a `fail` gate tripped, in which case
        nothing was written and both Delta tables are at their previous versions.

    Raises:
        SourceError: missing landing files. SchemaDriftError: undeclared landing columns.
        GateFailed: rows read ≠ rows published + rows quarantined after the commit (the commits
            are rolled back first).
    """
    started = time.monotonic()
    table_cfg = cfg.table(table)
    tpath, qpath = table_path(cfg, table), quarantine_path(cfg, table)
    raw = read_landing(spark, table, table_cfg, storage_root(cfg.landing), run_date)
    input_files = _input_files(spark, raw)
    if skip_unchanged and _already_published(
        spark, tpath, run_date, input_files, cfg.fingerprint()
    ):
        _log.info("table %s: %s already published from the same inputs; skipped", table, run_date)
        return TableResult(
            table=table,
            status="skipped",
            rows_read=0,
            rows_published=0,
            rows_quarantined=0,
            table_path=tpath,
            table_version=current_version(spark, tpath),
            quarantine_path=qpath,
            quarantine_version=current_version(spark, qpath),
            input_files=input_files,
        )
    check_keyring_not_rolled_back(spark, tpath, table, keys)
    erased = 0
    if table_cfg.subject is not None and cfg.erasure is not None:
        # Erased subjects' rows go first (tombstones), then per-subject keys: create the
        # missing ones, then join each row to its wrapped key.
        hashed = with_subject_hash(raw, table_cfg.subject, keys[cfg.erasure.index_key])
        hashed, erased = drop_erased_subjects(spark, cfg, hashed)
        if erased:
            _log.info("table %s: %d rows of erased subjects dropped", table, erased)
        created = ensure_subject_keys(spark, cfg, hashed, keys)
        _log.info("table %s: %d new subject keys", table, created)
        raw = attach_subject_keys(spark, cfg, hashed)
    batch = protect_batch(raw, table, table_cfg, keys, run_date)
    batch = apply_quarantine_rules(batch, cfg, table_cfg, REASONS_COLUMN)
    batch = batch.persist(StorageLevel.MEMORY_AND_DISK)
    key_versions = {name: keys[name].current for name in sorted(_keys_of(table_cfg))}
    if table_cfg.subject is not None and cfg.erasure is not None:
        for name in (cfg.erasure.kek, cfg.erasure.index_key):
            key_versions[name] = keys[name].current
    generation = max((h.generation for h in keys.values()), default=0)
    stages: dict[str, float] = {}
    mark = time.monotonic()
    try:
        is_bad = F.size(REASONS_COLUMN) > 0
        # The first action reads, validates and protects the batch into the cache; it also
        # counts the random-nonce encryptions per key version (the AES-GCM budget).
        sealed = _random_nonce_columns(table_cfg, batch.columns)
        first = (
            batch.groupBy(is_bad.alias("bad"))
            .agg(
                F.count(F.lit(1)).alias("n"),
                *[F.count(F.col(c)).alias(f"e{i}") for i, c in enumerate(sealed)],
            )
            .collect()
        )
        counts = {bool(r["bad"]): int(r["n"]) for r in first}
        encryptions: dict[str, int] = {}
        for i, key_name in enumerate(sealed.values()):
            label = f"{key_name}:v{keys[key_name].current}"
            encryptions[label] = encryptions.get(label, 0) + sum(int(r[f"e{i}"]) for r in first)
        rows_read = counts.get(False, 0) + counts.get(True, 0) + erased
        expected_quarantine = counts.get(True, 0)
        reasons = {
            r[0]: int(r[1])
            for r in batch.where(is_bad)
            .select(F.explode(REASONS_COLUMN).alias("reason"))
            .groupBy("reason")
            .count()
            .collect()
        }
        if erased:
            reasons[ERASED_REASON] = erased
        published = batch.where(~is_bad).drop(
            REASONS_COLUMN, RAW_RECORD_COLUMN, RAW_SUBJECT_RECORD_COLUMN, SOURCE_FILE_COLUMN
        )
        stages["read_protect"] = round(time.monotonic() - mark, 2)
        _stage(
            table,
            "read+protect",
            stages["read_protect"],
            rows_read=rows_read,
            rows_rejected=expected_quarantine,
        )
        mark = time.monotonic()
        verdict = evaluate(batch, published, table, cfg, keys)
        stages["gate"] = round(time.monotonic() - mark, 2)
        _stage(table, "gate", stages["gate"], passed=int(verdict.passed))
        mark = time.monotonic()
        _log.info(
            "table %s: gate %s (%d rows read, %d to quarantine)",
            table,
            "passed" if verdict.passed else "FAILED: " + ", ".join(verdict.failures),
            rows_read,
            expected_quarantine,
        )
        result = TableResult(
            table=table,
            status="published",
            rows_read=rows_read,
            rows_published=0,
            rows_quarantined=0,
            table_path=tpath,
            table_version=current_version(spark, tpath),
            quarantine_path=qpath,
            quarantine_version=current_version(spark, qpath),
            reasons=reasons,
            key_versions=key_versions,
            gate=verdict.as_record(),
            input_files=input_files,
            stages=stages,
            rows_erased=erased,
            encryptions=encryptions,
        )
        if not verdict.passed:
            # Nothing is written: not the table, and not the quarantine either, since a failed
            # leak scan means the batch itself may hold plaintext.
            result.status = "gate_failed"
            result.seconds = round(time.monotonic() - started, 2)
            return result
        gate_summary = {
            "passed": True,
            "warnings": verdict.warnings,
            "checks": {c.name: "pass" for c in verdict.checks},
            "expectations": [
                {
                    k: e[k]
                    for k in (
                        "gate",
                        "expectation",
                        "column",
                        "action",
                        "success",
                        "unexpected_count",
                    )
                    if k in e
                }
                for e in verdict.expectations
            ],
        }
        common = {
            "key_versions": key_versions,
            "keyring_generation": generation,
            "encryptions": encryptions,
            "rows_read": rows_read,
            "rows_erased": erased,
            "input_files": input_files,
            "gates": gate_summary,
        }
        _fault_point("PAUSE_BEFORE_PUBLISH")
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
        ensure_table(spark, tpath, published.schema, PARTITION_COLUMN, _stats_columns(table_cfg))
        record = _compliance_record(
            run_id,
            cfg,
            table,
            run_date,
            "publish",
            rows_published=rows_read - expected_quarantine,
            rows_quarantined=expected_quarantine,
            **common,
        )
        tcommit = replace_partition(published, tpath, PARTITION_COLUMN, run_date, record)
    finally:
        batch.unpersist()
    if (
        qcommit.rows_written != expected_quarantine
        or tcommit.rows_written + qcommit.rows_written + erased != rows_read
    ):
        restore(spark, tpath, result.table_version) if result.table_version >= 0 else None
        restore(spark, qpath, result.quarantine_version) if result.quarantine_version >= 0 else None
        raise GateFailed(
            f"table {table!r}: row accounting failed: read {rows_read}, published "
            f"{tcommit.rows_written}, quarantined {qcommit.rows_written}, erased {erased}; "
            "commits rolled back"
        )
    stages["publish"] = round(time.monotonic() - mark, 2)
    _stage(
        table,
        "publish",
        stages["publish"],
        rows_published=tcommit.rows_written,
        rows_quarantined=qcommit.rows_written,
        version=tcommit.version,
    )
    result.rows_published = tcommit.rows_written
    result.rows_quarantined = qcommit.rows_written
    result.table_version = tcommit.version
    result.quarantine_version = qcommit.version
    result.seconds = round(time.monotonic() - started, 2)
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
    if cfg.erasure is not None:
        needed |= {cfg.erasure.kek, cfg.erasure.index_key}
    handles = {name: keyring.handle(name) for name in sorted(needed)}
    if cfg.erasure is not None:
        handles[KEK_SENTINEL] = handles[cfg.erasure.kek]
    return handles


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
    policy: AccessPolicy | None = None,
    skip_unchanged: bool = False,
) -> RunResult:
    """Run the nightly job for one date over the configured (or the given) tables.

    Args:
        spark: an active session configured by `securepipe.spark.configure_builder`.
        cfg: the validated configuration.
        run_date: the batch date (ISO string or `date`).
        tables: a subset of tables; all configured tables by default.
        run_id: an explicit run id (tests); generated otherwise.
        policy: access policy; each published table's role tables are rebuilt from it.
        skip_unchanged: backfills: skip a table whose date was published from the same input
            checksums and configuration.

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
    # Shared: nights of different dates may overlap; erase, maintain, reencrypt and keys hold
    # it alone and wait for (or are waited for by) every running night.
    with (
        lakehouse_lock(cfg, exclusive=False, what=f"nightly {day}"),
        run_lock(lock_dir(cfg), f"nightly-{day}"),
    ):
        keys = resolve_keys(cfg, names)
        started = datetime.now(UTC)
        results: list[TableResult] = []
        status, message = "error", ""
        try:
            result = _run_tables(
                spark, cfg, day, names, run_id, keys, policy, skip_unchanged, results
            )
            status = result.status
            _count_encryptions(cfg, results)
            if status == "gate_failed":
                failed = [t for t in results if t.status == "gate_failed"]
                message = "; ".join(
                    f"table {t.table!r}: {', '.join(t.gate['failures'])} ({t.rows_read} rows "
                    "read, 0 published)"
                    for t in failed
                )
                raise GateFailed(
                    f"gate failed, nothing published for it: {message}; report "
                    f"{result.report_path}",
                    result=result,
                )
            return result
        except GateFailed as exc:
            status, message = "gate_failed", message or str(exc)
            raise
        except Exception as exc:
            condition = getattr(exc, "getCondition", lambda: None)()
            message = (
                str(exc)
                if isinstance(exc, SecurePipeError)
                else (type(exc).__name__ + (f" [{condition}]" if condition else ""))
            )
            raise
        finally:
            _audit(spark, cfg, run_id, "nightly", day, started, status, message, results, keys)


# AES-GCM with random 96-bit nonces: NIST SP 800-38D keeps the chance of a repeated nonce below
# 2^-32 up to 2^32 encryptions per key; we ask for a rotation well before, at 2^30.
ENCRYPTION_BUDGET = 2**30


def _count_encryptions(cfg: PipelineConfig, results: list[TableResult]) -> None:
    """Add this run's random-nonce encryptions to each key version's total; warn past the
    budget."""
    counts: dict[str, int] = {}
    for t in results:
        if t.status != "published":
            continue
        for label, n in t.encryptions.items():
            counts[label] = counts.get(label, 0) + n
    if not any(counts.values()):
        return
    totals = Keyring(cfg.keystore).record_encryptions(counts)
    for label, total in sorted(totals.items()):
        if total >= ENCRYPTION_BUDGET:
            name = label.split(":v")[0]
            _log.warning(
                "key %s has sealed %d values with random nonces (budget %d): rotate it now "
                "(securepipe keys rotate %s), then securepipe reencrypt",
                label,
                total,
                ENCRYPTION_BUDGET,
                name,
                extra={"event": "encryption_budget", "key": label, "total": total},
            )


def _audit(
    spark: SparkSession,
    cfg: PipelineConfig,
    run_id: str,
    job: str,
    day: str | None,
    started: datetime,
    status: str,
    message: str,
    results: list[TableResult],
    keys: dict[str, KeyHandle],
) -> None:
    published = [t for t in results if t.status == "published"]
    entry = AuditEntry(
        run_id=run_id,
        job=job,
        run_date=day,
        started_at=started,
        ended_at=datetime.now(UTC),
        status=status,
        message=message,
        config_hash=cfg.fingerprint(),
        rows_read=sum(t.rows_read for t in results),
        rows_published=sum(t.rows_published for t in published),
        rows_quarantined=sum(t.rows_quarantined for t in published),
        tables={
            t.table: {
                "status": t.status,
                "version": t.table_version,
                "quarantine_version": t.quarantine_version,
                "access": t.access,
                "gate": {
                    "passed": t.gate.get("passed"),
                    "failures": t.gate.get("failures", []),
                    "warnings": t.gate.get("warnings", []),
                },
                "rows_read": t.rows_read,
                "rows_published": t.rows_published,
                "rows_quarantined": t.rows_quarantined,
                "rows_erased": t.rows_erased,
                "encryptions": t.encryptions,
            }
            for t in results
        },
        input_checksums=[f for t in results for f in t.input_files],
        key_versions={name: h.current for name, h in keys.items() if name != KEK_SENTINEL},
    )
    append_audit(spark, storage_root(cfg.lakehouse), [entry])


def _run_tables(
    spark: SparkSession,
    cfg: PipelineConfig,
    day: str,
    names: list[str],
    run_id: str,
    keys: dict[str, KeyHandle],
    policy: AccessPolicy | None,
    skip_unchanged: bool,
    results: list[TableResult],
) -> RunResult:
    for name in names:
        table_result = run_table(spark, cfg, name, day, run_id, keys, skip_unchanged)
        if policy is not None and table_result.status == "published":
            started = time.monotonic()
            table_result.access = publish_role_tables(
                spark, cfg, policy, name, table_result.table_path, run_id, keys
            )
            table_result.stages["access"] = round(time.monotonic() - started, 2)
        results.append(table_result)
    result = RunResult(run_id=run_id, run_date=day, config_hash=cfg.fingerprint(), tables=results)
    result.report_path = write_report(spark, reports_root(cfg), result.as_dict())
    return result
