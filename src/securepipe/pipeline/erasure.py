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
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from securepipe.access.policy import AccessPolicy
from securepipe.access.publish import ERASURE_KIND, PARTITION_COLUMN, publish_role_tables
from securepipe.access.views import role_columns
from securepipe.config import PipelineConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.errors import ConfigError, error_kind
from securepipe.io.audit import AuditEntry, append_audit, new_run_id
from securepipe.io.delta import compliance_record, delete_matching, is_delta_table
from securepipe.io.fs import delete_files, list_data_files, list_folders, list_log_files
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
from securepipe.pipeline.keys import check_key_store, resolve_keys
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
    """What an erasure did: counts only."""

    requested: int
    keys_destroyed: int
    unknown: int
    tombstones_added: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    files_purged: dict[str, int] = field(default_factory=dict)
    purge_blocked: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the audit log and the console (counts only)."""
        return (
            f"{self.requested} subjects, {self.keys_destroyed} keys destroyed, {self.unknown} "
            f"unknown, {self.tombstones_added} tombstones added"
        ) + (f", {sum(self.files_purged.values())} files purged" if self.files_purged else "")


def _delete_rows(
    spark: SparkSession,
    path: str,
    subject: str,
    ids: DataFrame,
    run_id: str,
    table: str,
    cfg: PipelineConfig,
    loose: bool = False,
) -> int:
    """Delete the subjects' rows from one table; the commit's record names the dates they were
    in, never the subjects (the role tables replay it against the tombstones). `loose` also
    matches ids that differ in case or surrounding spaces (quarantine: a mistyped id)."""
    target = spark.read.format("delta").load(path)
    on = (
        F.upper(F.trim(target[subject])) == F.upper(F.trim(ids.value))
        if loose
        else target[subject] == ids.value
    )
    dates = [
        str(r[0])
        for r in target.join(F.broadcast(ids), on, "left_semi")
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
    )
    where = "t.{} IN ({})".format(PARTITION_COLUMN, ", ".join(f"DATE'{d}'" for d in sorted(dates)))
    return delete_matching(spark, path, subject, ids, record, where=where, normalized=loose)


def erase_subjects(
    spark: SparkSession,
    cfg: PipelineConfig,
    subject_ids: Iterable[str],
    keys: Mapping[str, KeyHandle],
    run_id: str,
    policy: AccessPolicy | None = None,
    reason: str = "erasure request",
    purge: bool = False,
) -> ErasureResult:
    """Erase data subjects everywhere (see the module doc) and record it in the audit log.

    With `purge`, the data files that older versions still read and that hold a row of the
    subjects are then removed from storage, whatever the retention: no version on storage reads
    them any more (time travel to the versions that needed those files fails from then on).
    Without it they stay until VACUUM, and `verify_erasure` says "pending" until then.

    Unknown subjects are counted, not fatal; erasing twice is a no-op. The caller holds the
    exclusive lakehouse lock (the VACUUM below Delta's safety threshold is safe only then).
    """
    started = datetime.now(UTC)
    layout = Layout.of(cfg)
    # A keyring created anew would hash the ids to nothing the store holds: refuse before the
    # first write rather than "destroy" no key.
    check_key_store(spark, cfg, keys, subject_tables(cfg))
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
                    spark, path, subject, id_df, run_id, table, cfg, loose=kind == "quarantine"
                )
        if policy is not None and is_delta_table(spark, layout.table(table)):
            # The role tables replay the erasure commit: the rows are deleted, nothing rebuilt.
            publish_role_tables(spark, cfg, policy, table, run_id, keys)
    if purge:
        _purge(spark, cfg, ids, policy, result)
    _log.info("erasure: %s, rows deleted %s", result.summary(), result.rows_deleted)
    entry = AuditEntry(
        run_id=run_id,
        job="erase",
        started_at=started,
        ended_at=datetime.now(UTC),
        status="ok",
        config_hash=cfg.fingerprint(),
        message=f"{reason}: {result.summary()}",
        # Counts only: the subjects' keyed hashes are kept in the tombstones, nowhere else.
        tables={
            "rows_deleted": result.rows_deleted,
            "files_purged": result.files_purged,
            "purge_blocked": result.purge_blocked,
        },
    )
    append_audit(spark, layout.audit, [entry])
    refresh_index(spark, layout.reports, layout.audit)
    return result


def _purge(
    spark: SparkSession,
    cfg: PipelineConfig,
    ids: list[str],
    policy: AccessPolicy | None,
    result: ErasureResult,
) -> None:
    """Remove every file on storage that holds a row of the subjects and that the current
    version no longer reads (exactly those files: the rest of each table's history stays)."""
    for kind, table, root, scan in _scan_all(spark, cfg, ids, [], policy):
        name = f"{kind}/{table}"
        if scan is None:
            result.purge_blocked.append(f"{root}: unreadable ({kind})")
            continue
        if scan.live:
            # The current version still holds them (a role table that could not be rewritten):
            # that is for the next sync, never for a file deletion under a live table.
            result.purge_blocked.append(f"{name}: rows in the current version")
        if scan.removed_files:
            result.files_purged[name] = delete_files(spark, scan.removed_files)


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


def _targets(
    spark: SparkSession, layout: Layout, table: str, policy: AccessPolicy | None
) -> list[tuple[str, str]]:
    """The protected table, its quarantine and every role's copy of it: the policy's roles and
    any other role folder still on storage (a role removed from the policy keeps its files)."""
    targets = [("tables", layout.table(table)), ("quarantine", layout.quarantine(table))]
    roles = {r for r in policy.roles if table in policy.roles[r].tables} if policy else set()
    for role in list_folders(spark, f"{layout.root}/access"):
        if role not in roles and table in list_folders(spark, f"{layout.root}/access/{role}"):
            roles.add(role)
    for role in sorted(roles):
        targets.append((f"access/{role}", layout.access(role, table)))
    return targets


@dataclass
class _FileHistory:
    """From a table's commit files: the version that added each data file, and the version and
    time that removed it (files still in the current version have no removal)."""

    added: dict[str, int] = field(default_factory=dict)
    removed: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    current: int = -1


def _file_history(spark: SparkSession, root: str) -> _FileHistory:
    history = _FileHistory()
    log = (
        spark.read.json(f"{root}/_delta_log/*.json")
        .withColumn("_file", F.input_file_name())
        .collect()
    )
    for row in log:
        version = int(str(row["_file"]).rsplit("/", 1)[-1].split(".")[0])
        history.current = max(history.current, version)
        fields = row.asDict()
        if fields.get("add") is not None:
            history.added[unquote(fields["add"]["path"])] = version
        if fields.get("remove") is not None:
            stamp = fields["remove"]["deletionTimestamp"] or 0
            when = datetime.fromtimestamp(stamp / 1000, UTC)
            history.removed[unquote(fields["remove"]["path"])] = (version, when)
    return history


def _relative(root: str, path: str) -> str:
    tail = path.split(root.rstrip("/").split("://")[-1].rstrip("/") + "/", 1)[-1]
    return unquote(tail)


@dataclass
class _Scan:
    """What the files physically under one table hold of the subjects."""

    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: int = 0  # rows of the subjects, in any file still on storage
    first: int | None = None  # the oldest version that reads one of them
    last: int | None = None  # the newest version that reads one of them
    live: bool = False  # a file of the current version holds one
    removed_at: datetime | None = None  # when the newest of their files left the table
    # Files holding them that the current version no longer reads (what a purge deletes).
    removed_files: list[str] = field(default_factory=list)
    log_commits: list[int] = field(default_factory=list)  # commit files quoting a subject id
    unattributed: int = 0  # quarantined raw records without a subject id (quarantine key)
    unattributed_newest: str | None = None  # the newest run date holding one


def _log_mentions(spark: SparkSession, root: str, ids: list[str]) -> list[int]:
    """The commit files and checkpoints of a table's log that quote one of the ids (min/max
    statistics of a subject column, written before statistics left it out): versions, sorted."""
    if not ids:
        return []
    quoted = "|".join(re.escape(i) for i in ids)
    pattern = rf'\\?"(?:{quoted})\\?"'
    found = (
        spark.read.text(f"{root}/_delta_log/*.json")
        .where(F.col("value").rlike(pattern))
        .select(F.input_file_name().alias("f"))
        .distinct()
        .collect()
    )
    versions = {int(str(r["f"]).rsplit("/", 1)[-1].split(".")[0]) for r in found}
    checkpoints = [
        f for f in list_log_files(spark, root) if ".checkpoint." in f and f.endswith(".parquet")
    ]
    if checkpoints:
        hits = (
            spark.read.parquet(*checkpoints)
            .where(F.col("add.stats").rlike(pattern))
            .select(F.input_file_name().alias("f"))
            .distinct()
            .collect()
        )
        versions |= {int(str(r["f"]).rsplit("/", 1)[-1].split(".")[0]) for r in hits}
    return sorted(versions)


def _scan_target(
    spark: SparkSession,
    cfg: PipelineConfig,
    table: str,
    kind: str,
    root: str,
    ids: DataFrame,
    id_list: list[str],
    live_ids: list[str],
    policy: AccessPolicy | None,
) -> _Scan:
    """What the files physically under one table hold of the subjects: their rows (every
    column, the clear ones included) with the versions that read them, and per personal column
    how its values are protected."""
    scan = _Scan()
    files = list_data_files(spark, root)
    if not files:
        return scan
    history = _file_history(spark, root)
    subject = str(cfg.table(table).subject)
    scan.log_commits = _log_mentions(spark, root, id_list)
    df = spark.read.option("mergeSchema", "true").parquet(*files)
    meta = {f.name: dict(f.metadata or {}) for f in df.schema.fields}
    if kind.startswith("access/") and policy is not None:
        for column, treatment in role_columns(policy, kind.split("/", 1)[1], table).items():
            meta.setdefault(column, {})["securepipe.access"] = treatment.label()
    classes = _column_classes(cfg, table, df.columns, meta)
    if subject not in df.columns:
        # Rows cannot be tied to a subject: what they hold is unknown, never "erased".
        scan.columns = {
            c: {"class": "unattributable", "files": len(files), "values": 0, "readable": 1}
            for c in classes
        }
        return scan
    live = F.col(subject).isin(live_ids) if live_ids else F.lit(False)
    names = list(classes)
    quarantine = kind == "quarantine"
    on = (
        F.upper(F.trim(df[subject])) == F.upper(F.trim(ids.subject_id))
        if quarantine
        else df[subject] == ids.subject_id
    )
    if quarantine and RAW_RECORD_COLUMN in df.columns:
        # Raw records of rows without a readable subject id: any subject's data may be in one.
        orphans = df.where(F.col(subject).isNull() & F.col(RAW_RECORD_COLUMN).isNotNull()).agg(
            F.count(F.lit(1)).alias("n"), F.max(PARTITION_COLUMN).alias("newest")
        )
        found = orphans.first()
        if found is not None and found["n"]:
            scan.unattributed = int(found["n"])
            scan.unattributed_newest = str(found["newest"])
    rows = (
        df.join(ids, on, "left_semi")
        .withColumn("_file", F.input_file_name())
        .groupBy("_file")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            *[F.count(F.col(c)).alias(f"n{i}") for i, c in enumerate(names)],
            *[F.count(F.when(live, F.col(c))).alias(f"l{i}") for i, c in enumerate(names)],
        )
        .collect()
    )
    for row in rows:
        uri = str(row["_file"])
        rel = _relative(root, uri)
        first = history.added.get(rel)
        gone = history.removed.get(rel)
        last = gone[0] - 1 if gone else history.current
        scan.rows += int(row["rows"])
        if first is not None:
            scan.first = first if scan.first is None else min(scan.first, first)
        scan.last = last if scan.last is None else max(scan.last, last)
        if gone is None:
            scan.live = True
        else:
            scan.removed_files.append(uri)
            scan.removed_at = gone[1] if scan.removed_at is None else max(scan.removed_at, gone[1])
        for i, column in enumerate(names):
            n = int(row[f"n{i}"])
            if not n:
                continue
            klass = classes[column]
            entry = scan.columns.setdefault(
                column,
                {"class": klass, "versions": set(), "values": 0, "readable": 0, "live": False},
            )
            entry["values"] += n
            entry["readable"] += n if klass in _READABLE else int(row[f"l{i}"])
            if first is not None:
                entry["versions"].add(first)
            if gone is not None:
                entry["removed"] = max(entry.get("removed", gone[1]), gone[1])
            else:
                entry["live"] = True
    return scan


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
    check_key_store(spark, cfg, keys, subject_tables(cfg))
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
    report["rows_on_storage"] = 0
    report["log_mentions"] = 0
    for kind, table, root, scan in _scan_all(spark, cfg, ids, live_ids, policy):
        if scan is None:
            report["errors"].append({"path": root, "error": kind})
            continue
        report["tables_checked"] += 1
        columns = scan.columns
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
        name = f"{kind}/{table}"
        found: dict[str, Any] = {"path": root, "columns": columns}
        if scan.rows:
            found["rows"] = _rows_entry(name, scan, retention)
            report["rows_on_storage"] += scan.rows
        if scan.log_commits:
            found["log"] = {
                "commits": scan.log_commits,
                "status": (
                    f"pending: the Delta log of {name} quotes a subject id (column statistics) "
                    f"in commits {_span(scan.log_commits)} until the log is cleaned up "
                    "(delta.logRetentionDuration)"
                ),
            }
            report["log_mentions"] += len(scan.log_commits)
        if scan.unattributed:
            # Reported, not counted against the verdict: nothing ties them to these subjects.
            expiry = date.fromisoformat(str(scan.unattributed_newest)) + timedelta(
                days=cfg.retention.quarantine_days
            )
            found["unattributed"] = {
                "raw_records": scan.unattributed,
                "status": (
                    f"{scan.unattributed} raw records without a readable subject id, readable "
                    "with the quarantine key; they cannot be attributed to a subject and go with "
                    f"the quarantine retention (`securepipe maintain` after {expiry.isoformat()})"
                ),
            }
            report["unattributed"] = report.get("unattributed", 0) + scan.unattributed
        if columns or scan.rows or scan.log_commits or scan.unattributed:
            report["tables"][name] = found
    report["erased"] = (
        report["values_readable"] == 0
        and report["rows_on_storage"] == 0
        and report["log_mentions"] == 0
        and not report["errors"]
        and not live_ids
        and tombstoned == len(set(hashes))
    )
    return report


def _span(versions: list[int]) -> str:
    return f"{versions[0]}-{versions[-1]}" if len(versions) > 1 else str(versions[0])


def _rows_entry(name: str, scan: _Scan, retention: timedelta) -> dict[str, Any]:
    """The subjects' rows in one table's files: which versions read them, and until when."""
    first = "the oldest kept version" if scan.first is None else str(scan.first)
    entry: dict[str, Any] = {
        "rows": scan.rows,
        "versions": [scan.first, scan.last],
        "files_to_purge": len(scan.removed_files),
    }
    if scan.live:
        entry["status"] = f"readable in the current version of {name} (not erased)"
        return entry
    until = ""
    if scan.removed_at is not None:
        when = scan.removed_at + retention
        entry["removable_after"] = when.isoformat(timespec="seconds")
        until = f" on {when.date().isoformat()}"
    entry["status"] = (
        f"pending: readable in versions {first}-{scan.last} of {name} until VACUUM{until} "
        "(or `securepipe erase --purge`)"
    )
    return entry


def _scan_all(
    spark: SparkSession,
    cfg: PipelineConfig,
    ids: list[str],
    live_ids: list[str],
    policy: AccessPolicy | None,
) -> Iterator[tuple[str, str, str, _Scan | None]]:
    """Every table that can hold the subjects, scanned: (kind, table, path, scan), or the error
    class in place of the kind and None when the table could not be read."""
    layout = Layout.of(cfg)
    id_df = F.broadcast(spark.createDataFrame([(i,) for i in ids], "subject_id string"))
    for table in subject_tables(cfg):
        for kind, root in _targets(spark, layout, table, policy):
            try:
                scan = _scan_target(spark, cfg, table, kind, root, id_df, ids, live_ids, policy)
            except Exception as exc:  # a broken table is reported, never a crash
                yield error_kind(exc), table, root, None
                continue
            yield kind, table, root, scan


def erase(
    spark: SparkSession,
    cfg: PipelineConfig,
    subject_ids: Iterable[str],
    policy: AccessPolicy | None = None,
    reason: str | None = None,
    purge: bool = False,
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
            spark, cfg, subject_ids, keys, run_id, policy, reason or "erasure request", purge
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
