"""Re-encryption of a published table under the newest key versions (after `keys rotate`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from delta.tables import DeltaTable
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from securepipe import __version__
from securepipe.config import PipelineConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.delta_io import CommitInfo
from securepipe.errors import PublishError
from securepipe.protect.udfs import build_daead_udf, build_detokenize_udf, build_reencrypt_udf

__all__ = ["reencrypt_table"]


def _column_expr(
    table: str, name: str, op: str, params: Mapping[str, object], keys: Mapping[str, KeyHandle]
) -> Column | None:
    if op == "encrypt":
        return build_reencrypt_udf(table, name, keys[str(params["key"])])(F.col(name))
    if op == "tokenize" and params.get("kind") == "daead":
        handle = keys[str(params["key"])]
        clear = build_detokenize_udf(table, name, handle, "daead")(F.col(name))
        return build_daead_udf(handle)(clear)
    return None


def reencrypt_table(
    spark: SparkSession,
    cfg: PipelineConfig,
    table: str,
    path: str,
    keys: Mapping[str, KeyHandle],
    run_id: str,
) -> CommitInfo:
    """Rewrite every `encrypt` and `tokenize: daead` column under its key's current version.

    The rewrite is one Delta overwrite (a new table version); old versions keep the old
    ciphertexts until VACUUM. Plaintext exists only inside the UDF, value by value.
    """
    table_cfg = cfg.table(table)
    if not DeltaTable.isDeltaTable(spark, path):
        raise PublishError(f"table {table!r}: {path} is not a Delta table")
    df = spark.read.format("delta").load(path)
    exprs = []
    versions: dict[str, int] = {}
    for name in df.columns:
        col_cfg = table_cfg.columns.get(name)
        expr = None
        if col_cfg is not None:
            params = col_cfg.protect.params
            expr = _column_expr(table, name, col_cfg.protect.op, params, keys)
            if expr is not None:
                key = str(params["key"])
                versions[key] = keys[key].current
        exprs.append(
            expr.alias(name, metadata=df.schema[name].metadata) if expr is not None else F.col(name)
        )
    record = {
        "securepipe": __version__,
        "run_id": run_id,
        "job": "reencrypt",
        "table": table,
        "key_versions": versions,
        "config_hash": cfg.fingerprint(),
        "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        (
            df.select(*exprs)
            .write.format("delta")
            .mode("overwrite")
            .option("userMetadata", json.dumps(record, sort_keys=True))
            .save(path)
        )
    except Exception as exc:
        raise PublishError(f"re-encrypting table {table!r} failed ({type(exc).__name__})") from None
    last = DeltaTable.forPath(spark, path).history(1).collect()[0]
    return CommitInfo(
        path, int(last["version"]), int((last["operationMetrics"] or {}).get("numOutputRows", 0))
    )
