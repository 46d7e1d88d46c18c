"""Right to erasure that survives Delta time travel: crypto-shredding per data subject.

Tables that declare a `subject:` column protect their `encrypt_subject` / `tokenize_subject`
columns under each subject's own key (`securepipe.crypto.subject`). The subject key store is the
Delta table `lakehouse/_keys/subjects` (subject hash, wrapped key; deletion vectors off), looked
up with a join, never a call per row. `erase_subjects` destroys the keys (DELETE + VACUUM of the
store's old files), deletes the subjects' rows from the current versions of every table, rebuilds
the role tables and appends an audit entry holding only keyed hashes. `verify_erasure` reads every
past version of every table and proves no value of those subjects can be decrypted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import arrow_udf
from pyspark.sql.types import BinaryType, StringType, StructField, StructType, TimestampType

from securepipe.config import PipelineConfig
from securepipe.crypto.envelope import hmac_many
from securepipe.crypto.keycache import data_keys
from securepipe.crypto.keyring import KeyHandle
from securepipe.crypto.subject import (
    new_wrapped_subject_key,
    subject_decrypt_many,
    subject_detokenize_many,
    subject_encrypt_many,
    subject_hash,
    subject_tokenize_many,
)
from securepipe.errors import ConfigError, DecryptionError

__all__ = [
    "HASH_COLUMN",
    "KEK_SENTINEL",
    "WRAPPED_COLUMN",
    "ErasureResult",
    "attach_subject_keys",
    "build_subject_udf",
    "ensure_subject_keys",
    "erase_subjects",
    "store_path",
    "verify_erasure",
]

HASH_COLUMN = "_subject_hash"
WRAPPED_COLUMN = "_subject_wrapped"
KEK_SENTINEL = "__subject_kek__"
STORE_SCHEMA = StructType(
    [
        StructField("subject_hash", StringType(), False),
        StructField("wrapped_key", BinaryType(), False),
        StructField("created_at", TimestampType(), False),
    ]
)
_log = logging.getLogger(__name__)


def store_path(cfg: PipelineConfig) -> str:
    """`<lakehouse>/_keys/subjects`: never next to the data it protects."""
    from securepipe.pipeline import storage_root

    return f"{storage_root(cfg.lakehouse)}/_keys/subjects"


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
            [new_wrapped_subject_key(key, h) for h in hashes.to_pylist()], type=pa.binary()
        )

    return securepipe_new_subject_key.asNondeterministic()


def _ensure_store(spark: SparkSession, path: str) -> None:
    if not DeltaTable.isDeltaTable(spark, path):
        from securepipe.ops import retry_concurrent

        builder = (
            DeltaTable.createIfNotExists(spark)
            .location(path)
            .addColumns(STORE_SCHEMA)
            # DELETE must rewrite files (no deletion vectors) so that VACUUM can remove the
            # wrapped keys of erased subjects for good.
            .property("delta.enableDeletionVectors", "false")
            .property("delta.dataSkippingNumIndexedCols", "1")
        )
        retry_concurrent(builder.execute, f"creating subject key store {path}")


def with_subject_hash(df: DataFrame, subject_column: str, index: KeyHandle) -> DataFrame:
    """Add `_subject_hash`: the keyed hash of the subject column (pure)."""
    return df.withColumn(HASH_COLUMN, _hash_udf(index)(F.col(subject_column).cast("string")))


def ensure_subject_keys(
    spark: SparkSession, cfg: PipelineConfig, hashed: DataFrame, keys: Mapping[str, KeyHandle]
) -> int:
    """Create keys for subjects of `hashed` (a frame with `_subject_hash`) that have none.

    Returns the number of new subject keys.
    """
    kek_name, _ = _erasure(cfg)
    path = store_path(cfg)
    _ensure_store(spark, path)
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
        if count:
            new.write.format("delta").mode("append").save(path)
    finally:
        new.unpersist()
    return count


def attach_subject_keys(spark: SparkSession, cfg: PipelineConfig, hashed: DataFrame) -> DataFrame:
    """Join each row to its subject's wrapped key (`_subject_wrapped`; null once erased)."""
    store = (
        spark.read.format("delta")
        .load(store_path(cfg))
        .select(
            F.col("subject_hash").alias(HASH_COLUMN), F.col("wrapped_key").alias(WRAPPED_COLUMN)
        )
    )
    return hashed.join(store, HASH_COLUMN, "left")


def build_subject_udf(kind: str, table: str, column: str, kek: KeyHandle):  # type: ignore[no-untyped-def]
    """A vectorised UDF (value, subject hash, wrapped subject key) → protected or revealed value.

    kind: `encrypt` | `decrypt` | `tokenize` | `detokenize`. Reveal kinds return null for erased
    subjects (no key) and raise `DecryptionError` naming the column for a tampered value.
    """
    version = kek.current
    out_type = BinaryType() if kind == "encrypt" else StringType()
    arrow_type = pa.binary() if kind == "encrypt" else pa.string()
    where = f"{table}.{column}"

    @arrow_udf(out_type)  # type: ignore[call-overload]
    def securepipe_subject(values: pa.Array, hashes: pa.Array, wrapped: pa.Array) -> pa.Array:
        key = data_keys(kek)[version]
        v, h, w = values.to_pylist(), hashes.to_pylist(), wrapped.to_pylist()
        try:
            if kind == "encrypt":
                out: list[Any] = subject_encrypt_many(key, table, column, v, h, w)
            elif kind == "decrypt":
                out = subject_decrypt_many(key, table, column, v, h, w)
            elif kind == "tokenize":
                out = subject_tokenize_many(key, v, h, w)
            else:
                out = subject_detokenize_many(key, v, h, w)
        except DecryptionError:
            raise DecryptionError(
                f"a value of {where} could not be protected or revealed"
            ) from None
        return pa.array(out, type=arrow_type)

    udf = securepipe_subject.asNondeterministic() if kind == "encrypt" else securepipe_subject
    return udf


def subject_expr(kind: str, table: str, column: str, kek: KeyHandle, col: Column) -> Column:
    """Apply a subject UDF to `col` with the row's `_subject_hash` and `_subject_wrapped`."""
    return build_subject_udf(kind, table, column, kek)(
        col, F.col(HASH_COLUMN), F.col(WRAPPED_COLUMN)
    )


def reveal_subject_columns(
    spark: SparkSession,
    cfg: PipelineConfig,
    table: str,
    df: DataFrame,
    keys: Mapping[str, KeyHandle],
    columns: Iterable[str] | None = None,
) -> DataFrame:
    """Decrypt/detokenize per-subject columns of a protected frame (null for erased subjects).

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
        op = table_cfg.columns[name].protect.op if name in table_cfg.columns else ""
        if wanted is not None and name not in wanted:
            op = ""
        if op == "encrypt_subject":
            exprs.append(
                subject_expr("decrypt", table, name, keys[kek_name], F.col(name)).alias(name)
            )
        elif op == "tokenize_subject":
            exprs.append(
                subject_expr("detokenize", table, name, keys[kek_name], F.col(name)).alias(name)
            )
        else:
            exprs.append(F.col(name))
    return hashed.select(*exprs)


@dataclass
class ErasureResult:
    """What an erasure did: counts and keyed hashes only."""

    requested: int
    keys_destroyed: int
    unknown: int
    rows_deleted: dict[str, int] = field(default_factory=dict)
    subject_hashes: list[str] = field(default_factory=list)


def _hashes(cfg: PipelineConfig, keys: Mapping[str, KeyHandle], ids: list[str]) -> list[str]:
    _, index_name = _erasure(cfg)
    index = data_keys(keys[index_name])[keys[index_name].current]
    return [subject_hash(index, i) for i in ids]


def erase_subjects(
    spark: SparkSession,
    cfg: PipelineConfig,
    subject_ids: Iterable[str],
    keys: Mapping[str, KeyHandle],
    run_id: str,
    policy: Any = None,
) -> ErasureResult:
    """Erase data subjects everywhere (see the module doc). Unknown subjects are counted, not
    fatal; erasing twice is a no-op."""
    from securepipe.access.publish import publish_role_tables
    from securepipe.pipeline import quarantine_path, table_path

    ids = sorted({i.strip() for i in subject_ids if i.strip()})
    hashes = _hashes(cfg, keys, ids)
    path = store_path(cfg)
    _ensure_store(spark, path)
    store = DeltaTable.forPath(spark, path)
    hash_df = spark.createDataFrame([(h,) for h in hashes], "subject_hash string")
    known = spark.read.format("delta").load(path).join(hash_df, "subject_hash", "left_semi").count()
    if known:
        store.alias("s").merge(
            hash_df.alias("h"), "s.subject_hash = h.subject_hash"
        ).whenMatchedDelete().execute()
        # Remove the old files that still hold the destroyed wrapped keys (this table only:
        # it has no time travel worth keeping, and its readers are the pipeline itself).
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        try:
            store.vacuum(0)
        finally:
            spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")
    result = ErasureResult(
        requested=len(ids), keys_destroyed=known, unknown=len(ids) - known, subject_hashes=hashes
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
        "erasure: %d requested, %d keys destroyed, %d unknown, rows deleted %s",
        result.requested,
        result.keys_destroyed,
        result.unknown,
        result.rows_deleted,
    )
    return result


def verify_erasure(
    spark: SparkSession,
    cfg: PipelineConfig,
    subject_ids: Iterable[str],
    keys: Mapping[str, KeyHandle],
) -> dict[str, Any]:
    """Read every version of every subject table and count values of the subjects that can still
    be decrypted or detokenized (must be 0), next to the values found.

    Returns:
        `{"versions_checked": n, "values_found": n, "values_readable": n, "tables": {...}}`.
    """
    from securepipe.pipeline import quarantine_path, table_path

    ids = sorted({i.strip() for i in subject_ids if i.strip()})
    id_df = spark.createDataFrame([(i,) for i in ids], "subject_id string")
    report: dict[str, Any] = {
        "versions_checked": 0,
        "values_found": 0,
        "values_readable": 0,
        "tables": {},
        "checked_at": datetime.now(UTC).isoformat(),
    }
    for table in subject_tables(cfg):
        table_cfg = cfg.table(table)
        subject = str(table_cfg.subject)
        protected = [
            c
            for c, col in table_cfg.columns.items()
            if col.protect.op in ("encrypt_subject", "tokenize_subject")
        ]
        for tpath in (table_path(cfg, table), quarantine_path(cfg, table)):
            if not DeltaTable.isDeltaTable(spark, tpath) or not protected:
                continue
            versions = [
                r[0] for r in DeltaTable.forPath(spark, tpath).history().select("version").collect()
            ]
            for version in sorted(versions):
                df = spark.read.format("delta").option("versionAsOf", version).load(tpath)
                cols = [c for c in protected if c in df.columns]
                if not cols or subject not in df.columns:
                    continue
                rows = df.join(id_df, df[subject] == id_df.subject_id, "left_semi").select(
                    subject, *cols
                )
                revealed = reveal_subject_columns(spark, cfg, table, rows, keys)
                agg = revealed.agg(
                    *[F.count(F.col(c)).alias(f"readable_{c}") for c in cols]
                ).first()
                found = rows.agg(*[F.count(F.col(c)).alias(c) for c in cols]).first()
                n_found = sum(int(found[c]) for c in cols) if found else 0
                n_read = sum(int(agg[f"readable_{c}"]) for c in cols) if agg else 0
                report["versions_checked"] += 1
                report["values_found"] += n_found
                report["values_readable"] += n_read
                report["tables"].setdefault(tpath, []).append(
                    {"version": version, "values_found": n_found, "values_readable": n_read}
                )
    report["erased"] = report["values_readable"] == 0
    return report
