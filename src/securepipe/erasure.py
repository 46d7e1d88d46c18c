"""Right to erasure that survives Delta time travel, re-runs and rotation: crypto-shredding.

Tables that declare a `subject:` column protect their per-subject columns (`encrypt_subject`,
`tokenize_subject`, `fpe_subject`) under each subject's own key (`securepipe.crypto.subject`).

* The **subject key store** (`lakehouse/_keys/subjects`: subject hash, wrapped key; deletion
  vectors off) is looked up with a join, never a call per row. Keys are created with a Delta MERGE
  (insert when not matched), so two overlapping runs cannot give one subject two keys. Each
  wrapped key names the version of the subject KEK that wrapped it; `rewrap_store` moves every
  key to the KEK's current version after a rotation.
* **Tombstones** (`lakehouse/_keys/tombstones`) hold the keyed hashes of erased subjects. Every
  later run, re-run and backfill drops their rows before anything is protected (counted as
  `ERASED_SUBJECT`): they are never published, never quarantined, never given a new key.
* `erase_subjects`, under the exclusive lakehouse lock: writes the tombstones first, destroys the
  keys (DELETE + VACUUM of the store's old files), deletes the subjects' rows from the current
  versions of every table and rebuilds the role tables.
* `verify_erasure` reads every version of every table that can hold the subjects (protected,
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

import pyarrow as pa
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import arrow_udf
from pyspark.sql.types import BinaryType, StringType, StructField, StructType, TimestampType

from securepipe.access.publish import publish_role_tables
from securepipe.access.views import role_columns
from securepipe.config import PipelineConfig
from securepipe.crypto.envelope import hmac_many
from securepipe.crypto.keycache import data_keys
from securepipe.crypto.keyring import KeyHandle
from securepipe.crypto.subject import new_wrapped_subject_key, rewrap_subject_key, subject_hash
from securepipe.errors import ConfigError
from securepipe.layout import (
    access_path,
    quarantine_path,
    store_path,
    table_path,
    tombstone_path,
)
from securepipe.ops import retention_check_disabled, retry_concurrent
from securepipe.protect.registry import get_operator
from securepipe.protect.subject_udfs import HASH_COLUMN, KEK_SENTINEL, WRAPPED_COLUMN
from securepipe.validate import RAW_RECORD_COLUMN, RAW_SUBJECT_RECORD_COLUMN

__all__ = [
    "ERASED_REASON",
    "HASH_COLUMN",
    "KEK_SENTINEL",
    "WRAPPED_COLUMN",
    "ErasureResult",
    "attach_subject_keys",
    "drop_erased_subjects",
    "ensure_subject_keys",
    "erase_subjects",
    "rewrap_store",
    "store_path",
    "subject_keys_wrapped_under",
    "tombstone_path",
    "verify_erasure",
]

ERASED_REASON = "ERASED_SUBJECT"
STORE_SCHEMA = StructType(
    [
        StructField("subject_hash", StringType(), False),
        StructField("wrapped_key", BinaryType(), False),
        StructField("created_at", TimestampType(), False),
    ]
)
TOMBSTONE_SCHEMA = StructType(
    [
        StructField("subject_hash", StringType(), False),
        StructField("erased_at", TimestampType(), False),
        StructField("run_id", StringType(), False),
    ]
)
_log = logging.getLogger(__name__)


def _erasure(cfg: PipelineConfig) -> tuple[str, str]:
    if cfg.erasure is None:
        raise ConfigError(f"{cfg.source_file}: no erasure: section (kek, index_key)")
    return cfg.erasure.kek, cfg.erasure.index_key


def subject_tables(cfg: PipelineConfig) -> list[str]:
    """Tables with a subject column."""
    return [t for t, c in cfg.tables.items() if c.subject]


def _hash_udf(index: KeyHandle):  # type: ignore[no-untyped-def]
    version = index.current

    @arrow_udf(StringType())  # type: ignore[call-overload]
    def securepipe_subject_hash(values: pa.Array) -> pa.Array:
        key = data_keys(index)[version]
        return pa.array(hmac_many(key, values.to_pylist()), type=pa.string())

    return securepipe_subject_hash


def _new_key_udf(kek: KeyHandle):  # type: ignore[no-untyped-def]
    version = kek.current

    @arrow_udf(BinaryType())  # type: ignore[call-overload]
    def securepipe_new_subject_key(hashes: pa.Array) -> pa.Array:
        key = data_keys(kek)[version]
        return pa.array(
            [new_wrapped_subject_key(key, version, h) for h in hashes.to_pylist()],
            type=pa.binary(),
        )

    return securepipe_new_subject_key.asNondeterministic()


def _rewrap_udf(kek: KeyHandle):  # type: ignore[no-untyped-def]
    version = kek.current

    @arrow_udf(BinaryType())  # type: ignore[call-overload]
    def securepipe_rewrap_subject_key(hashes: pa.Array, wrapped: pa.Array) -> pa.Array:
        keks = data_keys(kek)
        return pa.array(
            [
                rewrap_subject_key(keks, version, h, w)
                for h, w in zip(hashes.to_pylist(), wrapped.to_pylist(), strict=True)
            ],
            type=pa.binary(),
        )

    return securepipe_rewrap_subject_key.asNondeterministic()


def _ensure_delta(spark: SparkSession, path: str, schema: StructType, what: str) -> None:
    if not DeltaTable.isDeltaTable(spark, path):
        builder = (
            DeltaTable.createIfNotExists(spark)
            .location(path)
            .addColumns(schema)
            # DELETE must rewrite files (no deletion vectors) so that VACUUM can remove the
            # wrapped keys of erased subjects for good.
            .property("delta.enableDeletionVectors", "false")
            .property("delta.dataSkippingNumIndexedCols", "1")
        )
        retry_concurrent(builder.execute, f"creating {what} {path}")


def _insert_new_hashes(spark: SparkSession, path: str, rows: DataFrame, what: str) -> int:
    """MERGE `rows` into the Delta table at `path`, inserting only subject hashes it lacks.

    A concurrent writer that inserted the same hashes first makes Delta refuse the commit; the
    retry then finds them and inserts nothing twice. Returns the number of rows inserted.
    """

    def merge() -> int:
        target = DeltaTable.forPath(spark, path)
        target.alias("t").merge(
            rows.alias("n"), "t.subject_hash = n.subject_hash"
        ).whenNotMatchedInsertAll().execute()
        last = target.history(1).collect()[0]
        return int((last["operationMetrics"] or {}).get("numTargetRowsInserted", 0))

    return retry_concurrent(merge, what)


def with_subject_hash(df: DataFrame, subject_column: str, index: KeyHandle) -> DataFrame:
    """Add `_subject_hash`: the keyed hash of the subject column (pure)."""
    return df.withColumn(HASH_COLUMN, _hash_udf(index)(F.col(subject_column).cast("string")))


def _tombstones(spark: SparkSession, cfg: PipelineConfig) -> DataFrame:
    path = tombstone_path(cfg)
    if not DeltaTable.isDeltaTable(spark, path):
        return spark.createDataFrame([], TOMBSTONE_SCHEMA)
    return spark.read.format("delta").load(path)


def drop_erased_subjects(
    spark: SparkSession, cfg: PipelineConfig, hashed: DataFrame
) -> tuple[DataFrame, int]:
    """Remove the rows of erased subjects from a frame with `_subject_hash`.

    Returns:
        The remaining rows and how many rows were dropped (`ERASED_SUBJECT`). Dropped rows are
        not kept anywhere: no key, no quarantine, no raw record.
    """
    tomb = F.broadcast(
        _tombstones(spark, cfg).select(F.col("subject_hash").alias(HASH_COLUMN)).distinct()
    )
    erased = hashed.join(tomb, HASH_COLUMN, "left_semi").count()
    if not erased:
        return hashed, 0
    return hashed.join(tomb, HASH_COLUMN, "left_anti"), erased


def ensure_subject_keys(
    spark: SparkSession, cfg: PipelineConfig, hashed: DataFrame, keys: Mapping[str, KeyHandle]
) -> int:
    """Create keys for subjects of `hashed` (a frame with `_subject_hash`) that have none.

    The anti-join keeps the work to new subjects; the MERGE (insert when not matched) makes the
    creation safe against an overlapping run that creates the same subject's key first.

    Returns the number of new subject keys.
    """
    kek_name, _ = _erasure(cfg)
    path = store_path(cfg)
    _ensure_delta(spark, path, STORE_SCHEMA, "subject key store")
    store = spark.read.format("delta").load(path)
    new = (
        hashed.select(F.col(HASH_COLUMN).alias("subject_hash"))
        .where(F.col("subject_hash").isNotNull())
        .distinct()
        .join(store.select("subject_hash"), "subject_hash", "left_anti")
        .select(
            "subject_hash",
            _new_key_udf(keys[kek_name])(F.col("subject_hash")).alias("wrapped_key"),
            F.current_timestamp().alias("created_at"),
        )
        .persist()
    )
    try:
        count = new.count()
        if not count:
            return 0

        return _insert_new_hashes(spark, path, new, f"creating subject keys in {path}")
    finally:
        new.unpersist()


def attach_subject_keys(spark: SparkSession, cfg: PipelineConfig, hashed: DataFrame) -> DataFrame:
    """Join each row to its subject's wrapped key (`_subject_wrapped`; null once erased)."""
    path = store_path(cfg)
    _ensure_delta(spark, path, STORE_SCHEMA, "subject key store")
    store = (
        spark.read.format("delta")
        .load(path)
        .select(
            F.col("subject_hash").alias(HASH_COLUMN), F.col("wrapped_key").alias(WRAPPED_COLUMN)
        )
    )
    return hashed.join(store, HASH_COLUMN, "left")


def rewrap_store(spark: SparkSession, cfg: PipelineConfig, kek: KeyHandle) -> int:
    """Re-wrap every subject key under the current version of the subject KEK.

    One overwrite of the store; the old files (wrapped under the old version) are then vacuumed,
    so the old KEK version can be destroyed once backups made before the rotation expire. The
    caller holds the exclusive lakehouse lock.

    Returns the number of subject keys re-wrapped.
    """
    path = store_path(cfg)
    if not DeltaTable.isDeltaTable(spark, path):
        return 0
    store = spark.read.format("delta").load(path)
    rewrapped = store.select(
        "subject_hash",
        _rewrap_udf(kek)(F.col("subject_hash"), F.col("wrapped_key")).alias("wrapped_key"),
        "created_at",
    )
    retry_concurrent(
        lambda: rewrapped.write.format("delta").mode("overwrite").save(path),
        f"re-wrapping subject keys in {path}",
    )
    with retention_check_disabled(spark):
        DeltaTable.forPath(spark, path).vacuum(0)
    return int(spark.read.format("delta").load(path).count())


def subject_keys_wrapped_under(spark: SparkSession, cfg: PipelineConfig, version: int) -> int:
    """How many subject keys in the store are wrapped by version `version` of the subject KEK
    (destroying that version would erase those subjects)."""
    path = store_path(cfg)
    if not DeltaTable.isDeltaTable(spark, path):
        return 0
    w = F.col("wrapped_key")
    kek_version = F.when(F.length(w) == 60, F.lit(1)).otherwise(
        F.conv(F.hex(F.substring(w, 2, 4)), 16, 10).cast("int")
    )
    return int(spark.read.format("delta").load(path).where(kek_version == version).count())


def reveal_subject_columns(
    spark: SparkSession,
    cfg: PipelineConfig,
    table: str,
    df: DataFrame,
    keys: Mapping[str, KeyHandle],
    columns: Iterable[str] | None = None,
) -> DataFrame:
    """Reveal per-subject columns of a protected frame (null for erased subjects).

    Args:
        columns: which per-subject columns to reveal (all of them by default).
    """
    wanted = set(columns) if columns is not None else None
    table_cfg = cfg.table(table)
    kek_name, index_name = _erasure(cfg)
    subject = str(table_cfg.subject)
    hashed = attach_subject_keys(spark, cfg, with_subject_hash(df, subject, keys[index_name]))
    exprs = []
    for name in df.columns:
        col_cfg = table_cfg.columns.get(name)
        operator = get_operator(col_cfg.protect.op) if col_cfg is not None else None
        if (
            col_cfg is not None
            and operator is not None
            and operator.per_subject
            and (wanted is None or name in wanted)
        ):
            reveal = operator.reveal  # type: ignore[attr-defined]
            expr = reveal(F.col(name), table, name, col_cfg.protect.params, keys[kek_name])
            exprs.append(expr.alias(name))
        else:
            exprs.append(F.col(name))
    return hashed.select(*exprs)


@dataclass
class ErasureResult:
    """What an erasure did: counts and keyed hashes only."""

    requested: int
    keys_destroyed: int
    unknown: int
    tombstones_added: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    subject_hashes: list[str] = field(default_factory=list)


def subject_hashes(
    cfg: PipelineConfig, keys: Mapping[str, KeyHandle], ids: Iterable[str]
) -> list[str]:
    """The keyed hashes of subject ids (driver side)."""
    _, index_name = _erasure(cfg)
    index = data_keys(keys[index_name])[keys[index_name].current]
    return [subject_hash(index, i) for i in ids]


def _add_tombstones(
    spark: SparkSession, cfg: PipelineConfig, hashes: list[str], run_id: str
) -> int:
    path = tombstone_path(cfg)
    _ensure_delta(spark, path, TOMBSTONE_SCHEMA, "tombstone table")
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = spark.createDataFrame([(h, now, run_id) for h in hashes], TOMBSTONE_SCHEMA)

    return _insert_new_hashes(spark, path, rows, f"writing tombstones {path}")


def erase_subjects(
    spark: SparkSession,
    cfg: PipelineConfig,
    subject_ids: Iterable[str],
    keys: Mapping[str, KeyHandle],
    run_id: str,
    policy: Any = None,
) -> ErasureResult:
    """Erase data subjects everywhere (see the module doc). Unknown subjects are counted, not
    fatal; erasing twice is a no-op. The caller holds the exclusive lakehouse lock (the VACUUM
    below Delta's safety threshold is safe only then)."""
    ids = sorted({i.strip() for i in subject_ids if i.strip()})
    hashes = subject_hashes(cfg, keys, ids)
    # Tombstones first: if anything below fails, the subjects still never come back.
    added = _add_tombstones(spark, cfg, hashes, run_id) if hashes else 0
    path = store_path(cfg)
    _ensure_delta(spark, path, STORE_SCHEMA, "subject key store")
    store = DeltaTable.forPath(spark, path)
    hash_df = spark.createDataFrame([(h,) for h in hashes], "subject_hash string")
    known = spark.read.format("delta").load(path).join(hash_df, "subject_hash", "left_semi").count()
    if known:
        store.alias("s").merge(
            hash_df.alias("h"), "s.subject_hash = h.subject_hash"
        ).whenMatchedDelete().execute()
        # Remove the old files that still hold the destroyed wrapped keys (this table only:
        # it has no time travel worth keeping, and its readers are the pipeline itself).
        with retention_check_disabled(spark):
            store.vacuum(0)
    result = ErasureResult(
        requested=len(ids),
        keys_destroyed=known,
        unknown=len(ids) - known,
        tombstones_added=added,
        subject_hashes=hashes,
    )
    id_df = spark.createDataFrame([(i,) for i in ids], "subject_id string")
    for table in subject_tables(cfg):
        subject = str(cfg.table(table).subject)
        for kind, tpath in (
            ("tables", table_path(cfg, table)),
            ("quarantine", quarantine_path(cfg, table)),
        ):
            if not DeltaTable.isDeltaTable(spark, tpath):
                continue
            target = DeltaTable.forPath(spark, tpath)
            before = int(target.history(1).collect()[0]["version"])
            (
                target.alias("t")
                .merge(id_df.alias("e"), f"t.`{subject}` = e.subject_id")
                .whenMatchedDelete()
                .execute()
            )
            last = target.history(1).collect()[0]
            deleted = 0
            if int(last["version"]) != before:  # a MERGE that matched nothing may not commit
                deleted = int((last["operationMetrics"] or {}).get("numTargetRowsDeleted", 0))
            result.rows_deleted[f"{kind}/{table}"] = deleted
        if policy is not None and DeltaTable.isDeltaTable(spark, table_path(cfg, table)):
            publish_role_tables(spark, cfg, policy, table, table_path(cfg, table), run_id, keys)
    _log.info(
        "erasure: %d requested, %d keys destroyed, %d unknown, %d tombstones, rows deleted %s",
        result.requested,
        result.keys_destroyed,
        result.unknown,
        result.tombstones_added,
        result.rows_deleted,
    )
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
        operator = get_operator(col_cfg.protect.op)
        klass = operator.erasure_class(col_cfg.protect.params)
        if str(metadata.get(name, {}).get("securepipe.access", "")).startswith("mask"):
            # A role's mask is computed from the value and stored in clear.
            klass = "masked"
        if klass != "nothing":
            out[name] = klass
    return out


def _targets(cfg: PipelineConfig, table: str, policy: Any) -> list[tuple[str, str]]:
    targets = [("tables", table_path(cfg, table)), ("quarantine", quarantine_path(cfg, table))]
    if policy is not None:
        for role in sorted(policy.roles):
            if table in policy.roles[role].tables:
                targets.append((f"access/{role}", access_path(cfg, role, table)))
    return targets


def _data_files(spark: SparkSession, root: str) -> list[str]:
    """Every Parquet data file physically under a Delta table (whatever its log still says)."""
    jvm: Any = spark.sparkContext._jvm
    hroot = jvm.org.apache.hadoop.fs.Path(root)
    fs = hroot.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(hroot):
        return []
    files = []
    it = fs.listFiles(hroot, True)
    while it.hasNext():
        path = str(it.next().getPath().toString())
        if path.endswith(".parquet") and "/_delta_log/" not in path:
            files.append(path)
    return sorted(files)


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
    policy: Any,
) -> dict[str, dict[str, Any]]:
    """What the files physically under one table hold of the subjects, per column."""
    files = _data_files(spark, root)
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
    policy: Any = None,
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
    hashes = subject_hashes(cfg, keys, ids) if cfg.erasure is not None else []
    live: set[str] = set()
    tombstoned = 0
    try:
        if hashes and DeltaTable.isDeltaTable(spark, store_path(cfg)):
            hash_df = spark.createDataFrame([(h,) for h in hashes], "subject_hash string")
            found = (
                spark.read.format("delta")
                .load(store_path(cfg))
                .join(hash_df, "subject_hash", "left_semi")
                .select("subject_hash")
                .collect()
            )
            live = {r[0] for r in found}
        if hashes:
            tombstoned = (
                _tombstones(spark, cfg)
                .where(F.col("subject_hash").isin(hashes))
                .select("subject_hash")
                .distinct()
                .count()
            )
    except Exception as exc:  # a broken store is reported, not raised
        report["errors"].append({"path": store_path(cfg), "error": type(exc).__name__})
    live_ids = [i for i, h in zip(ids, hashes, strict=True) if h in live]
    report["subject_keys_live"] = len(live_ids)
    report["tombstoned"] = tombstoned
    retention = timedelta(hours=cfg.retention.vacuum_hours)
    id_df = F.broadcast(spark.createDataFrame([(i,) for i in ids], "subject_id string"))
    for table in subject_tables(cfg):
        for kind, root in _targets(cfg, table, policy):
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
