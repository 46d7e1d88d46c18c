"""Re-encryption of a published table under the newest key versions (after `keys rotate`)."""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from securepipe.config import PipelineConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.errors import PublishError
from securepipe.io.audit import new_run_id
from securepipe.io.delta import (
    CommitInfo,
    compliance_record,
    is_delta_table,
    overwrite_table,
    retry_concurrent,
)
from securepipe.layout import Layout
from securepipe.locks import lakehouse_lock
from securepipe.logs import log_context
from securepipe.pipeline.keys import check_key_store, resolve_keys
from securepipe.protect.base import ColumnContext
from securepipe.protect.registry import operator_for
from securepipe.protect.subject_udfs import KEK_SENTINEL

__all__ = ["reencrypt", "reencrypt_table"]


def reencrypt_table(
    spark: SparkSession,
    cfg: PipelineConfig,
    table: str,
    path: str,
    keys: Mapping[str, KeyHandle],
    run_id: str,
) -> CommitInfo:
    """Rewrite every column whose operator re-encrypts (`Operator.reencrypt`: envelopes, daead
    tokens) under its key's current version.

    The rewrite is one Delta overwrite (a new table version); old versions keep the old
    ciphertexts until VACUUM. Plaintext exists only inside the UDF, value by value.

    Raises:
        PublishError: `path` is not a Delta table, or the write failed (class only).
    """
    table_cfg = cfg.table(table)
    if not is_delta_table(spark, path):
        raise PublishError(f"table {table!r}: {path} is not a Delta table")
    df = spark.read.format("delta").load(path)
    exprs = []
    versions: dict[str, int] = {}
    for name in df.columns:
        col_cfg = table_cfg.columns.get(name)
        expr = None
        if col_cfg is not None:
            operator = operator_for(col_cfg)
            key = operator.key_name(col_cfg.protect.params)
            handle = keys.get(key) if key else None
            if handle is not None:
                expr = operator.reencrypt(F.col(name), ColumnContext(table, name, col_cfg, handle))
            if expr is not None and key:
                versions[key] = handle.current if handle is not None else 0
        exprs.append(
            expr.alias(name, metadata=df.schema[name].metadata) if expr is not None else F.col(name)
        )
    record = compliance_record(
        "reencrypt", run_id, table, cfg.fingerprint(), kind="reencrypt", key_versions=versions
    )
    rewritten = df.select(*exprs)
    return retry_concurrent(
        lambda: overwrite_table(rewritten, path, record), f"re-encrypting table {table!r}"
    )


def reencrypt(
    spark: SparkSession, cfg: PipelineConfig, table: str
) -> tuple[CommitInfo, dict[str, int]]:
    """The `reencrypt` job, alone on the lakehouse: returns the commit and the key versions the
    table's keys are now at."""
    cfg.table(table)
    run_id = new_run_id("reencrypt")
    with (
        log_context(job="reencrypt", run_id=run_id, table=table),
        lakehouse_lock(Layout.of(cfg), exclusive=True, what=f"reencrypt {table}"),
    ):
        keys = resolve_keys(cfg, [table])
        check_key_store(spark, cfg, keys, [table])
        commit = reencrypt_table(spark, cfg, table, Layout.of(cfg).table(table), keys, run_id)
    return commit, {name: h.current for name, h in keys.items() if name != KEK_SENTINEL}
