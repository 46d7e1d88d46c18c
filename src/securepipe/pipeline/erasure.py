"""Right to erasure that survives Delta time travel, re-runs and rotation: crypto-shredding.

Tables that declare a `subject:` column protect their per-subject columns (operators with
`per_subject`) under each subject's own key (`securepipe.crypto.subject`), kept wrapped in the
subject key store (`securepipe.io.subject_store`).

* Every nightly run drops the rows of tombstoned subjects before anything is protected (counted
  as `ERASED_SUBJECT`): they are never published, never quarantined, never given a new key.
* `erase_subjects`, under the exclusive lakehouse lock: writes the tombstones first, destroys the
  keys (DELETE + VACUUM of the store's old files), deletes the subjects' rows from the current
  versions of every table, rebuilds the role tables and writes the audit entry.
* `verify_erasure` reads every file of every table that can hold the subjects (protected,
  quarantine, role tables) and says, per column, whether what is left is shredded, readable until
  VACUUM, or absent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from securepipe.access.policy import AccessPolicy
from securepipe.access.publish import ERASURE_KIND, PARTITION_COLUMN, publish_role_tables
from securepipe.access.views import role_columns
from securepipe.config import PipelineConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.errors import ConfigError
from securepipe.io.audit import AuditEntry, append_audit, new_run_id
from securepipe.io.delta import compliance_record, delete_matching, is_delta_table
from securepipe.io.fs import list_data_files
from securepipe.io.reports import refresh_index
from securepipe.io.rows import RAW_RECORD_COLUMN, RAW_SUBJECT_RECORD_COLUMN
from securepipe.io.subject_store import (
    add_tombstones,
    count_tombstoned,
    destroy_subject_keys,
    live_subject_hashes,
    subject_hashes,
)
from securepipe.layout import Layout
from securepipe.locks import lakehouse_lock
from securepipe.logs import log_context
from securepipe.pipeline.keys import resolve_keys
from securepipe.protect.registry import operator_for

__all__ = [
    "ERASED_REASON",
    "ErasureResult",
    "erase",
    "erase_subjects",
    "subject_tables",
    "verify",
    "verify_erasure",
]

ERASED_REASON = "ERASED_SUBJECT"
_log = logging.getLogger(__name__)


def _index_key(cfg: PipelineConfig, keys: Mapping[str, KeyHandle]) -> KeyHandle:
    if cfg.erasure is None:
        raise ConfigError(f"{cfg.source_file}: no erasure: section (kek, index_key)")
    return keys[cfg.erasure.index_key]


def subject_tables(cfg: PipelineConfig) -> list[str]:
    """Tables with a subject column."""
    return [t for t, c in cfg.tables.items() if c.subject]


@dataclass
class ErasureResult:
    """What an erasure did: counts and keyed hashes only."""

    requested: int
    keys_destroyed: int
    unknown: int
    tombstones_added: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    subject_hashes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the audit log and the console (counts only)."""
        return (
            f"{self.requested} subjects, {self.keys_destroyed} keys destroyed, {self.unknown} "
            f"unknown, {self.tombstones_added} tombstones added"
        )


def _delete_rows(
    spark: SparkSession,
    path: str,
    subject: str,
    ids: DataFrame,
    run_id: str,
    table: str,
    cfg: PipelineConfig,
    hashes: list[str],
) -> int:
    """Delete the subjects' rows from one table; the commit's record names the dates they were
    in and the subjects' keyed hashes (the role tables replay it from there)."""
    target = spark.read.format("delta").load(path)
    dates = [
        str(r[0])
        for r in target.join(F.broadcast(ids), target[subject] == ids.value, "left_semi")
        .select(PARTITION_COLUMN)
        .distinct()
        .collect()
    ]
    if not dates:
        return 0
    record = compliance_record(
        "erase",
        run_id,
        table,
        cfg.fingerprint(),
        kind=ERASURE_KIND,
        run_dates=sorted(dates),
        subject_hashes=hashes,
    )
    where = "t.{} IN ({})".format(PARTITION_COLUMN, ", ".join(f"DATE'{d}'" for d in sorted(dates)))
    return delete_matching(spark, path, subject, ids, record, where=where)


def erase_subjects(
    spark: SparkSession,
    cfg: PipelineConfig,
    subject_ids: Iterable[str],
    keys: Mapping[str, KeyHandle],
    run_id: str,
    policy: AccessPolicy | None = None,
    reason: str = "erasure request",
) -> ErasureResult:
    """Erase data subjects everywhere (see the module doc) and record it in the audit log.

    Unknown subjects are counted, not fatal; erasing twice is a no-op. The caller holds the
    exclusive lakehouse lock (the VACUUM below Delta's safety threshold is safe only then).
    """
    started = datetime.now(UTC)
    layout = Layout.of(cfg)
    ids = sorted({i.strip() for i in subject_ids if i.strip()})
    hashes = subject_hashes(_index_key(cfg, keys), ids)
    # Tombstones first: if anything below fails, the subjects still never come back.
    added = add_tombstones(spark, layout, hashes, run_id)
    known = destroy_subject_keys(spark, layout, hashes)
    result = ErasureResult(
        requested=len(ids),
        keys_destroyed=known,
        unknown=len(ids) - known,
        tombstones_added=added,
        subject_hashes=hashes,
    )
    id_df = spark.createDataFrame([(i,) for i in ids], "value string")
    for table in subject_tables(cfg):
        subject = str(cfg.table(table).subject)
        for kind, path in (
            ("tables", layout.table(table)),
            ("quarantine", layout.quarantine(table)),
        ):
            if is_delta_table(spark, path):
                result.rows_deleted[f"{kind}/{table}"] = _delete_rows(
                    spark, path, subject, id_df, run_id, table, cfg, hashes
                )
        if policy is not None and is_delta_table(spark, layout.table(table)):
            # The role tables replay the erasure commit: the rows are deleted, nothing rebuilt.
            publish_role_tables(spark, cfg, policy, table, run_id, keys)
    _log.info("erasure: %s, rows deleted %s", result.summary(), result.rows_deleted)
    entry = AuditEntry(
        run_id=run_id,
        job="erase",
        started_at=started,
        ended_at=datetime.now(UTC),
        status="ok",
        config_hash=cfg.fingerprint(),
        message=f"{reason}: {result.summary()}",
        tables={"rows_deleted": result.rows_deleted, "subject_hashes": result.subject_hashes},
    )
    append_audit(spark, layout.audit, [entry])
    refresh_index(spark, layout.reports, layout.audit)
    return result


# --- verify-erasure --------------------------------------------------------------------------

_READABLE = {"column_key", "token", "masked", "clear", "quarantine_key", "unattributable"}
_STATUS = {
    "subject_key": "shredded",
    "column_key": "readable with a live column key until VACUUM",
    "token": "linkable token until VACUUM",
    "masked": "masked value in clear until VACUUM",
    "clear": "in clear until VACUUM",
    "quarantine_key": "raw record readable with the quarantine key until VACUUM",
    "unattributable": "cannot be attributed (no subject column): unknown",
}


def _column_classes(
    cfg: PipelineConfig, table: str, columns: list[str], metadata: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    """For each stored column of a (protected, quarantine or role) table version: the erasure
    class of what it holds for a subject (see `Operator.erasure_class`); non-personal columns
    are left out."""
    table_cfg = cfg.table(table)
    out: dict[str, str] = {}
    for name in columns:
        if name == RAW_RECORD_COLUMN:
            out[name] = "quarantine_key"
            continue
        if name == RAW_SUBJECT_RECORD_COLUMN:
            out[name] = "subject_key"
            continue
        col_cfg = table_cfg.columns.get(name)
        if col_cfg is None or not col_cfg.classification.personal:
            continue
        klass = operator_for(col_cfg).erasure_class(col_cfg.protect.params)
        if str(metadata.get(name, {}).get("securepipe.access", "")).startswith("mask"):
            # A role's mask is computed from the value and stored in clear.
            klass = "masked"
        if klass != "nothing":
            out[name] = klass
    return out


def _targets(layout: Layout, table: str, policy: AccessPolicy | None) -> list[tuple[str, str]]:
    targets = [("tables", layout.table(table)), ("quarantine", layout.quarantine(table))]
    if policy is not None:
        for role in sorted(policy.roles):
            if table in policy.roles[role].tables:
                targets.append((f"access/{role}", layout.access(role, table)))
    return targets


def _file_history(spark: SparkSession, root: str) -> tuple[dict[str, int], dict[str, datetime]]:
    """From the commit log: the version that added each file, and when each file was removed."""
    added: dict[str, int] = {}
    removed: dict[str, datetime] = {}
    log = (
        spark.read.json(f"{root}/_delta_log/*.json")
        .withColumn("_file", F.input_file_name())
        .collect()
    )
    for row in log:
        version = int(str(row["_file"]).rsplit("/", 1)[-1].split(".")[0])
        fields = row.asDict()
        if fields.get("add") is not None:
            added[unquote(fields["add"]["path"])] = version
        if fields.get("remove") is not None:
            stamp = fields["remove"]["deletionTimestamp"] or 0
            removed[unquote(fields["remove"]["path"])] = datetime.fromtimestamp(stamp / 1000, UTC)
    return added, removed


def _relative(root: str, path: str) -> str:
    tail = path.split(root.rstrip("/").split("://")[-1].rstrip("/") + "/", 1)[-1]
    return unquote(tail)


def _scan_target(
    spark: SparkSession,
    cfg: PipelineConfig,
    table: str,
    kind: str,
    root: str,
    ids: DataFrame,
    live_ids: list[str],
    policy: AccessPolicy | None,
) -> dict[str, dict[str, Any]]:
    """What the files physically under one table hold of the subjects, per column."""
    files = list_data_files(spark, root)
    if not files:
        return {}
    added, removed = _file_history(spark, root)
    df = spark.read.option("mergeSchema", "true").parquet(*files)
    meta = {f.name: dict(f.metadata or {}) for f in df.schema.fields}
    if kind.startswith("access/") and policy is not None:
        for column, treatment in role_columns(policy, kind.split("/", 1)[1], table).items():
            meta.setdefault(column, {})["securepipe.access"] = treatment.label()
    classes = _column_classes(cfg, table, df.columns, meta)
    if not classes:
        return {}
    subject = str(cfg.table(table).subject)
    if subject not in df.columns:
        # Rows cannot be tied to a subject: what they hold is unknown, never "erased".
        return {
            c: {"class": "unattributable", "files": len(files), "values": 0, "readable": 1}
            for c in classes
        }
    live = F.col(subject).isin(live_ids) if live_ids else F.lit(False)
    names = list(classes)
    rows = (
        df.join(ids, df[subject] == ids.subject_id, "left_semi")
        .withColumn("_file", F.input_file_name())
        .groupBy("_file")
        .agg(
            *[F.count(F.col(c)).alias(f"n{i}") for i, c in enumerate(names)],
            *[F.count(F.when(live, F.col(c))).alias(f"l{i}") for i, c in enumerate(names)],
        )
        .collect()
    )
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        rel = _relative(root, str(row["_file"]))
        for i, column in enumerate(names):
            n = int(row[f"n{i}"])
            if not n:
                continue
            klass = classes[column]
            entry = out.setdefault(
                column,
                {"class": klass, "versions": set(), "values": 0, "readable": 0, "live": False},
            )
            entry["values"] += n
            entry["readable"] += n if klass in _READABLE else int(row[f"l{i}"])
            if rel in added:
                entry["versions"].add(added[rel])
            if rel in removed:
                entry["removed"] = max(entry.get("removed", removed[rel]), removed[rel])
            else:
                entry["live"] = True
    return out


def verify_erasure(
    spark: SparkSession,
    cfg: PipelineConfig,
    subject_ids: Iterable[str],
    keys: Mapping[str, KeyHandle],
    policy: AccessPolicy | None = None,
) -> dict[str, Any]:
    """Read every data file still on storage under every table that can hold the subjects and say
    what is left of them.

    Files, not snapshots: every version that time travel can reach, and files that only VACUUM
    has not removed yet, are read in one pass per table (protected, quarantine, each role's).
    Per column: the versions that wrote values of the subjects, how many values, and their
    status — `shredded` (under a destroyed subject key: unreadable forever), readable until
    VACUUM (column key, quarantine key, linkable token or masked value, with the date after which
    `securepipe maintain` may remove the files), or readable now. Never raises on a broken table:
    what could not be read is listed under `errors`, and the verdict is `erased` only when
    nothing is readable, every table could be read and every subject has a tombstone.

    Returns:
        A JSON-ready report with `erased`, `values_readable`, `tables`, `subjects`, `errors`.
    """
    ids = sorted({i.strip() for i in subject_ids if i.strip()})
    report: dict[str, Any] = {
        "subjects": len(ids),
        "tables_checked": 0,
        "values_found": 0,
        "values_readable": 0,
        "tables": {},
        "errors": [],
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    layout = Layout.of(cfg)
    hashes = subject_hashes(_index_key(cfg, keys), ids) if cfg.erasure is not None else []
    live: set[str] = set()
    tombstoned = 0
    try:
        live = live_subject_hashes(spark, layout, hashes)
        tombstoned = count_tombstoned(spark, layout, hashes)
    except Exception as exc:  # a broken store is reported, not raised
        report["errors"].append({"path": layout.subject_store, "error": type(exc).__name__})
    live_ids = [i for i, h in zip(ids, hashes, strict=True) if h in live]
    report["subject_keys_live"] = len(live_ids)
    report["tombstoned"] = tombstoned
    retention = timedelta(hours=cfg.retention.vacuum_hours)
    id_df = F.broadcast(spark.createDataFrame([(i,) for i in ids], "subject_id string"))
    for table in subject_tables(cfg):
        for kind, root in _targets(layout, table, policy):
            try:
                columns = _scan_target(spark, cfg, table, kind, root, id_df, live_ids, policy)
            except Exception as exc:
                report["errors"].append({"path": root, "error": type(exc).__name__})
                continue
            report["tables_checked"] += 1
            for entry in columns.values():
                versions = sorted(entry.pop("versions", set()))
                entry["versions"] = versions
                gone = entry.pop("removed", None)
                still_live = entry.pop("live", False)
                if entry["class"] == "unattributable":
                    entry["status"] = _STATUS["unattributable"]
                elif entry["readable"] == 0:
                    entry["status"] = _STATUS["subject_key"]
                elif entry["class"] == "subject_key":
                    entry["status"] = "readable: the subject's key still exists (not erased)"
                elif still_live:
                    entry["status"] = "readable in the current version (not erased)"
                else:
                    entry["status"] = _STATUS[entry["class"]]
                    if gone is not None:
                        removable = gone + retention
                        entry["removable_after"] = removable.isoformat(timespec="seconds")
                report["values_found"] += entry["values"]
                report["values_readable"] += entry["readable"]
            if columns:
                report["tables"][f"{kind}/{table}"] = {"path": root, "columns": columns}
    report["erased"] = (
        report["values_readable"] == 0
        and not report["errors"]
        and not live_ids
        and tombstoned == len(set(hashes))
    )
    return report


def erase(
    spark: SparkSession,
    cfg: PipelineConfig,
    subject_ids: Iterable[str],
    policy: AccessPolicy | None = None,
    reason: str | None = None,
) -> tuple[str, ErasureResult]:
    """The `erase` job: alone on the lakehouse (a running night could otherwise publish a
    subject between the tombstone and the deletion, or lose a new key to the store's VACUUM).

    Returns:
        The audit run id and what was erased.

    Raises:
        LockTimeout: another job kept the lakehouse lock past `SECUREPIPE_LOCK_WAIT`.
    """
    run_id = new_run_id("erase")
    with (
        log_context(job="erase", run_id=run_id),
        lakehouse_lock(Layout.of(cfg), exclusive=True, what="erase"),
    ):
        keys = resolve_keys(cfg, list(cfg.tables))
        result = erase_subjects(
            spark, cfg, subject_ids, keys, run_id, policy, reason or "erasure request"
        )
    return run_id, result


def verify(
    spark: SparkSession,
    cfg: PipelineConfig,
    subject_ids: Iterable[str],
    policy: AccessPolicy | None = None,
) -> dict[str, Any]:
    """The `verify-erasure` job: `verify_erasure` with the pipeline's keys."""
    return verify_erasure(spark, cfg, subject_ids, resolve_keys(cfg, list(cfg.tables)), policy)
