"""The stages of one table's nightly run: `prepare → evaluate → publish → check`.

```
landing files ─ prepare ─► Prepared   read, drop erased subjects, subject keys, validate, protect,
                                      quarantine rules; cached and counted (the first action)
              ─ evaluate ► Evaluated  built-in checks + Great Expectations suites → a verdict
              ─ publish ─► Published  quarantine partition, then table partition (replaceWhere),
                                      each commit carrying the compliance record
              ─ check ───►            rows read = published + quarantined + erased, else the
                                      commits are rolled back and the run refused
```

Each stage is a function of typed inputs; none keeps state between runs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from securepipe.access.publish import ROLLBACK_KIND
from securepipe.config import PipelineConfig, TableConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.errors import GateFailed
from securepipe.io.delta import (
    CommitInfo,
    commit_records,
    compliance_record,
    ensure_table,
    replace_partition,
    retry_concurrent,
    sized,
    undo_commit,
)
from securepipe.io.rows import (
    RAW_RECORD_COLUMN,
    RAW_SUBJECT_RECORD_COLUMN,
    REASONS_COLUMN,
    parse_rows,
    reason_codes,
)
from securepipe.io.sources import SOURCE_FILE_COLUMN, read_landing
from securepipe.io.subject_store import (
    attach_subject_keys,
    drop_erased_subjects,
    ensure_subject_keys,
    with_subject_hash,
)
from securepipe.layout import Layout
from securepipe.pipeline.erasure import ERASED_REASON
from securepipe.pipeline.keys import check_keyring_not_rolled_back, generation, key_versions
from securepipe.protect.apply import protect_columns, sealed_raw_records
from securepipe.protect.registry import operator_for
from securepipe.quality.gate import (
    GateVerdict,
    apply_quarantine_rules,
    evaluate_gates,
    quarantine_codes,
)

__all__ = [
    "PARTITION_COLUMN",
    "Evaluated",
    "Landing",
    "Prepared",
    "Published",
    "TableStatus",
    "already_published",
    "check",
    "evaluate",
    "prepare",
    "protect_batch",
    "publish",
    "read",
]

PARTITION_COLUMN = "run_date"
RUN_ID_COLUMN = "_run_id"
_log = logging.getLogger(__name__)


class TableStatus(StrEnum):
    """What happened to one table in a run."""

    PUBLISHED = "published"
    GATE_FAILED = "gate_failed"
    SKIPPED = "skipped"  # a backfill found the date published from the same inputs


@dataclass(frozen=True)
class Landing:
    """One table's landing batch for a run date, not yet read (Spark is lazy)."""

    table: str
    run_date: str
    frame: DataFrame
    input_files: list[dict[str, Any]]


@dataclass(frozen=True)
class Prepared:
    """The protected batch, cached, with what `prepare` counted on the way."""

    landing: Landing
    batch: DataFrame  # protected; `_reasons` non-empty for rows bound to quarantine
    rows_read: int
    rows_rejected: int
    rows_erased: int
    reasons: dict[str, int] | None  # rejected rows per reason code; None: count them again
    encryptions: dict[str, int]  # random-nonce seals per "<key>:v<version>"
    key_versions: dict[str, int]
    keyring_generation: int

    @property
    def is_rejected(self) -> Column:
        """True for rows bound to quarantine."""
        return F.size(REASONS_COLUMN) > 0

    @property
    def valid(self) -> DataFrame:
        """The rows to publish, without the technical columns."""
        return self.batch.where(~self.is_rejected).drop(
            REASONS_COLUMN, RAW_RECORD_COLUMN, RAW_SUBJECT_RECORD_COLUMN, SOURCE_FILE_COLUMN
        )


@dataclass(frozen=True)
class Evaluated:
    """The gates' verdict on a prepared batch, and the reason counts of its rejected rows."""

    verdict: GateVerdict
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the batch may be published."""
        return self.verdict.passed


@dataclass(frozen=True)
class Published:
    """The two commits of a table's run."""

    table: CommitInfo
    quarantine: CommitInfo


@contextmanager
def timed(
    table: str, stage: str, stages: dict[str, float], label: str | None = None
) -> Iterator[dict[str, int]]:
    """Time a stage into `stages[stage]` and log it (as `label`, default the stage) with the
    counts the block fills in."""
    counts: dict[str, int] = {}
    mark = time.monotonic()
    yield counts
    stages[stage] = seconds = round(time.monotonic() - mark, 2)
    detail = " ".join(f"{k}={v}" for k, v in counts.items())
    name = label or stage
    _log.info(
        "table %s: %s done in %.1fs %s",
        table,
        name,
        seconds,
        detail,
        extra={"event": "stage", "table": table, "stage": name, "seconds": seconds, **counts},
    )


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


def read(spark: SparkSession, cfg: PipelineConfig, table: str, run_date: str) -> Landing:
    """The table's landing files for `run_date`, with their checksums.

    Raises:
        SourceError: missing landing files. SchemaDriftError: undeclared landing columns.
    """
    frame = read_landing(spark, table, cfg.table(table), Layout.of(cfg).landing, run_date)
    return Landing(table, run_date, frame, _input_files(spark, frame))


def already_published(spark: SparkSession, cfg: PipelineConfig, landing: Landing) -> bool:
    """True if the latest publish of the date used the same input checksums and config (and
    was not rolled back since)."""
    inputs = landing.input_files
    if not all("sha256" in f for f in inputs):
        return False
    for record in commit_records(spark, Layout.of(cfg).table(landing.table)):
        if record.get("run_date") != landing.run_date:
            continue
        if record.get("kind") == ROLLBACK_KIND:
            return False
        if record.get("kind") == "publish":
            theirs = sorted(f.get("sha256", "") for f in record.get("input_files", []))
            return (
                theirs == sorted(f["sha256"] for f in inputs)
                and record.get("config_hash") == cfg.fingerprint()
            )
    return False


def protect_batch(
    df: DataFrame, table: str, table_cfg: TableConfig, keys: Mapping[str, KeyHandle], run_date: str
) -> DataFrame:
    """Validate and protect a landing batch (pure: DataFrame → DataFrame).

    A frame of a subject table carries `_subject_hash` and `_subject_wrapped` (joined by
    `prepare`): per-subject columns and the raw record of a rejected row with a known subject are
    then encrypted under the subject's key.

    Returns:
        Protected declared columns, `_reasons`, the encrypted `_raw_record` (quarantine key) or
        `_raw_subject_record` (subject key) of rejected rows, `_source_file` and `run_date`. No
        column holds plaintext of a protected column; a rejected row keeps only its key and
        subject columns (the rest of it is in its encrypted raw record).
    """
    parsed = parse_rows(df, table_cfg)
    # A rejected row keeps its values only in the encrypted raw record. Its columns cannot be
    # trusted to hold what they are declared to hold (one unquoted comma shifts a card number
    # into `balance`, a name into `city`), so all but the key and the subject are nulled: they
    # are what ties the row to its record and its data subject.
    rejected = F.size(REASONS_COLUMN) > 0
    kept = {table_cfg.key, table_cfg.subject}
    parsed = parsed.select(
        *[
            F.when(~rejected, F.col(c)).alias(c)
            if c in table_cfg.columns and c not in kept
            else F.col(c)
            for c in parsed.columns
        ]
    )
    raw_records = sealed_raw_records(
        table,
        RAW_RECORD_COLUMN,
        RAW_SUBJECT_RECORD_COLUMN,
        table_cfg.quarantine_key,
        keys,
        parsed.columns,
    )
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


def _with_subject_keys(
    spark: SparkSession, cfg: PipelineConfig, landing: Landing, keys: Mapping[str, KeyHandle]
) -> tuple[DataFrame, int]:
    """Erased subjects' rows go first (tombstones); then the missing subject keys are created
    and each row is joined to its wrapped key. Returns the frame and the rows dropped."""
    table_cfg = cfg.table(landing.table)
    if table_cfg.subject is None or cfg.erasure is None:
        return landing.frame, 0
    layout = Layout.of(cfg)
    hashed = with_subject_hash(landing.frame, table_cfg.subject, keys[cfg.erasure.index_key])
    hashed, erased = drop_erased_subjects(spark, layout, hashed)
    if erased:
        _log.info("table %s: %d rows of erased subjects dropped", landing.table, erased)
    created = ensure_subject_keys(spark, layout, hashed, keys[cfg.erasure.kek])
    _log.info("table %s: %d new subject keys", landing.table, created)
    return attach_subject_keys(spark, layout, hashed), erased


def _sealed_columns(table_cfg: TableConfig, columns: list[str]) -> dict[str, str]:
    """Columns sealed with AES-GCM under a column key (random nonces), with their key name."""
    out = {}
    for name in columns:
        col = table_cfg.columns.get(name)
        if col is None:
            continue
        operator = operator_for(col)
        key = operator.key_name(col.protect.params)
        if operator.random_nonce and key:
            out[name] = key
    if RAW_RECORD_COLUMN in columns:
        out[RAW_RECORD_COLUMN] = table_cfg.quarantine_key
    return out


def prepare(
    spark: SparkSession, cfg: PipelineConfig, landing: Landing, keys: Mapping[str, KeyHandle]
) -> Prepared:
    """Protect the landing batch and cache it; the first action counts rows, rejections and the
    random-nonce encryptions per key version (the AES-GCM budget).

    The caller unpersists `Prepared.batch` when the table's run ends.

    Raises:
        KeyAccessError: the keyring is older than the one the table was last written with.
    """
    table, table_cfg = landing.table, cfg.table(landing.table)
    check_keyring_not_rolled_back(spark, Layout.of(cfg).table(table), table, keys)
    frame, erased = _with_subject_keys(spark, cfg, landing, keys)
    batch = protect_batch(frame, table, table_cfg, keys, landing.run_date)
    batch = apply_quarantine_rules(batch, cfg, table_cfg, REASONS_COLUMN)
    batch = batch.persist(StorageLevel.MEMORY_AND_DISK)
    sealed = _sealed_columns(table_cfg, batch.columns)
    # One pass counts the rows, the seals and each reason code (the codes a table can emit are
    # known from its configuration; a code outside them is counted too, and sends `evaluate`
    # back to counting them one by one rather than losing it).
    codes = [*reason_codes(table_cfg), *quarantine_codes(cfg, table_cfg)]
    reasons = F.col(REASONS_COLUMN)
    first = (
        batch.groupBy((F.size(reasons) > 0).alias("bad"))
        .agg(
            F.count(F.lit(1)).alias("n"),
            *[F.count(F.col(c)).alias(f"e{i}") for i, c in enumerate(sealed)],
            *[
                F.sum(F.array_contains(reasons, code).cast("long")).alias(f"r{i}")
                for i, code in enumerate(codes)
            ],
            F.sum(
                (F.size(F.array_except(reasons, F.array(*map(F.lit, codes)))) > 0).cast("long")
            ).alias("other"),
        )
        .collect()
    )
    counts = {bool(r["bad"]): int(r["n"]) for r in first}
    reason_counts: dict[str, int] | None = {
        code: n for i, code in enumerate(codes) if (n := sum(int(r[f"r{i}"] or 0) for r in first))
    }
    if any(r["other"] for r in first):
        reason_counts = None
    encryptions: dict[str, int] = {}
    for i, key_name in enumerate(sealed.values()):
        label = f"{key_name}:v{keys[key_name].current}"
        encryptions[label] = encryptions.get(label, 0) + sum(int(r[f"e{i}"]) for r in first)
    return Prepared(
        landing=landing,
        batch=batch,
        rows_read=counts.get(False, 0) + counts.get(True, 0) + erased,
        rows_rejected=counts.get(True, 0),
        rows_erased=erased,
        reasons=reason_counts,
        encryptions=encryptions,
        key_versions=key_versions(cfg, table_cfg, keys),
        keyring_generation=generation(keys),
    )


def evaluate(prepared: Prepared, cfg: PipelineConfig, keys: Mapping[str, KeyHandle]) -> Evaluated:
    """Count the rejected rows' reasons and run every gate of the table on the protected batch."""
    batch = prepared.batch
    reasons = (
        dict(prepared.reasons)
        if prepared.reasons is not None
        else {
            r[0]: int(r[1])
            for r in batch.where(prepared.is_rejected)
            .select(F.explode(REASONS_COLUMN).alias("reason"))
            .groupBy("reason")
            .count()
            .collect()
        }
    )
    if prepared.rows_erased:
        reasons[ERASED_REASON] = prepared.rows_erased
    verdict = evaluate_gates(batch, prepared.valid, prepared.landing.table, cfg, keys)
    return Evaluated(verdict=verdict, reasons=reasons)


def _stats_columns(table_cfg: TableConfig) -> list[str]:
    """Columns whose min/max may go into the Delta log: stored in clear, not personal, and not
    the data subject's id (the log outlives an erasure: a min value would keep the id)."""
    return [
        name
        for name, col in table_cfg.columns.items()
        if operator_for(col).passes_value
        and not col.classification.personal
        and name != table_cfg.subject
    ]


def _gate_summary(verdict: GateVerdict) -> dict[str, Any]:
    fields = ("gate", "expectation", "column", "action", "success", "unexpected_count")
    return {
        "passed": True,
        "warnings": verdict.warnings,
        "checks": {c.name: "pass" for c in verdict.checks},
        "expectations": [{k: e[k] for k in fields if k in e} for e in verdict.expectations],
    }


def publish(
    spark: SparkSession,
    cfg: PipelineConfig,
    prepared: Prepared,
    evaluated: Evaluated,
    run_id: str,
) -> Published:
    """Replace the run date's partition of the quarantine, then of the table; each commit
    carries the compliance record (run, config, key versions, counts, gate verdict)."""
    landing, layout = prepared.landing, Layout.of(cfg)
    table, run_date = landing.table, landing.run_date
    tpath, qpath = layout.table(table), layout.quarantine(table)
    common = {
        "kind": "publish",
        "run_date": run_date,
        "key_versions": prepared.key_versions,
        "keyring_generation": prepared.keyring_generation,
        "encryptions": prepared.encryptions,
        "rows_read": prepared.rows_read,
        "rows_erased": prepared.rows_erased,
        "input_files": landing.input_files,
        "gates": _gate_summary(evaluated.verdict),
    }
    fingerprint = cfg.fingerprint()
    quarantined = prepared.batch.where(prepared.is_rejected).withColumn(
        RUN_ID_COLUMN, F.lit(run_id)
    )
    ensure_table(spark, qpath, quarantined.schema, PARTITION_COLUMN, [RUN_ID_COLUMN])
    qrecord = compliance_record(
        "nightly",
        run_id,
        table,
        fingerprint,
        **{**common, "kind": "quarantine"},
        reasons=evaluated.reasons,
    )
    # A partition is written as few files of a sensible size: the cached batch has as many
    # partitions as the shuffle gave it (64 files for a 10,000-row night otherwise).
    per_file = cfg.files.rows_per_file
    quarantined = sized(quarantined, prepared.rows_rejected, per_file)
    qcommit = replace_partition(quarantined, qpath, PARTITION_COLUMN, run_date, qrecord)
    rows_published = prepared.rows_read - prepared.rows_rejected - prepared.rows_erased
    valid = sized(prepared.valid, rows_published, per_file)
    ensure_table(spark, tpath, valid.schema, PARTITION_COLUMN, _stats_columns(cfg.table(table)))
    record = compliance_record(
        "nightly",
        run_id,
        table,
        fingerprint,
        **common,
        rows_published=rows_published,
        rows_quarantined=prepared.rows_rejected,
    )
    tcommit = replace_partition(valid, tpath, PARTITION_COLUMN, run_date, record)
    return Published(tcommit, qcommit)


def check(
    spark: SparkSession, cfg: PipelineConfig, prepared: Prepared, published: Published, run_id: str
) -> None:
    """Row accounting after the commits: every row read is published, quarantined or erased.

    Raises:
        GateFailed: the counts differ; both commits are rolled back first.
    """
    t, q = published.table, published.quarantine
    if q.rows_written == prepared.rows_rejected and (
        t.rows_written + q.rows_written + prepared.rows_erased == prepared.rows_read
    ):
        return
    # Only this run's two commits are taken back: an overlapping run of another date may have
    # committed to the same tables since.
    run_date = prepared.landing.run_date
    for commit in (t, q):
        record = compliance_record(
            "nightly",
            run_id,
            prepared.landing.table,
            cfg.fingerprint(),
            kind=ROLLBACK_KIND,
            run_date=run_date,
            undoes=commit.version,
        )
        retry_concurrent(
            partial(undo_commit, spark, commit, PARTITION_COLUMN, run_date, record),
            f"rolling back {commit.path}",
        )
    raise GateFailed(
        f"table {prepared.landing.table!r}: row accounting failed: read {prepared.rows_read}, "
        f"published {t.rows_written}, quarantined {q.rows_written}, erased "
        f"{prepared.rows_erased}; commits rolled back"
    )
