"""The access stage of the nightly job: rebuild each role's tables, gated, as new Delta versions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlglot
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType
from sqlglot import exp

from securepipe.access.policy import AccessPolicy
from securepipe.access.views import role_columns, role_filter, role_view
from securepipe.config import PipelineConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.errors import GateFailed
from securepipe.io.delta import (
    compliance_record,
    current_version,
    overwrite_table,
    retry_concurrent,
)
from securepipe.layout import Layout
from securepipe.quality.builtin import detectors, matches

__all__ = ["check_role_view", "publish_role_tables"]

_log = logging.getLogger(__name__)


def check_role_view(
    view: DataFrame, cfg: PipelineConfig, policy: AccessPolicy, role: str, table: str
) -> dict[str, Any]:
    """Gate a role's output before it is written.

    Checks: exactly the policy's columns; no row outside the role's filter (evaluated on the
    output when the filter's columns are visible to the role); the leak scan passes on every
    string column the role may not see in clear.

    Raises:
        GateFailed: naming the role, the table and the check.
    """
    visible = role_columns(policy, role, table)
    got = [c for c in view.columns if c != "run_date"]
    if sorted(got) != sorted(visible):
        raise GateFailed(f"role {role!r}, table {table!r}: columns {got} differ from the policy")
    predicate = role_filter(policy, role, table)
    used = {c.name for c in sqlglot.parse_one(predicate, read="spark").find_all(exp.Column)}
    exprs = {}
    if used <= set(got):
        exprs["outside_filter"] = F.sum(
            F.when(~F.coalesce(F.expr(predicate), F.lit(False)), 1).otherwise(0)
        )
    active = detectors(cfg.compliance)
    for column, treatment in visible.items():
        # Clear columns passed the table's own leak scan; tokens and envelopes are checked by
        # shape there. Masks are computed here from revealed values: scan them.
        if treatment.kind != "mask" or not isinstance(view.schema[column].dataType, StringType):
            continue
        for name, det in active.items():
            hit = F.coalesce(matches(F.col(column), det), F.lit(False))
            exprs[f"leak:{column}:{name}"] = F.sum(F.when(hit, 1).otherwise(0))
    counts: dict[str, int] = {}
    if exprs:
        row = view.agg(*[e.alias(k.replace(":", "__")) for k, e in exprs.items()]).first()
        counts = {k: int(row[k.replace(":", "__")] or 0) for k in exprs} if row else {}
    bad = {k: v for k, v in counts.items() if v}
    if bad:
        raise GateFailed(f"role {role!r}, table {table!r}: access gate failed {bad}")
    return {
        "columns": sorted(got),
        "filter_checked": "outside_filter" in exprs,
        "leak_scan_columns": len({k.split(":")[1] for k in exprs if k.startswith("leak:")}),
    }


def _write_role_table(
    view: DataFrame,
    cfg: PipelineConfig,
    policy: AccessPolicy,
    role: str,
    table: str,
    run_id: str,
    source_version: int,
    path: str,
) -> None:
    gate = check_role_view(view, cfg, policy, role, table)
    record = compliance_record(
        "access",
        run_id,
        table,
        cfg.fingerprint(),
        role=role,
        policy_version=policy.version(),
        source_version=source_version,
        gate=gate,
    )
    overwrite_table(view, path, record, partition_by="run_date", overwrite_schema=True)


def publish_role_tables(
    spark: SparkSession,
    cfg: PipelineConfig,
    policy: AccessPolicy,
    table: str,
    source_path: str,
    run_id: str,
    keys: Mapping[str, KeyHandle],
) -> dict[str, int]:
    """Rebuild every role's copy of `table` from the published table (one overwrite per role).

    A full rebuild keeps each role table equal to "the protected table seen through today's
    policy": a policy change applies to past dates too, and time travel on the role table shows
    what the role could see at each version. When another run rebuilt the same role table
    first (overlapping nightly runs of different dates), the rebuild is redone from the newest
    published version.

    Returns:
        The new version of each role table.
    """
    versions: dict[str, int] = {}
    for role in sorted(policy.roles):
        if table not in policy.roles[role].tables:
            continue
        path = Layout.of(cfg).access(role, table)

        def rebuild(role: str = role, path: str = path) -> None:
            source_version = current_version(spark, source_path)
            source = (
                spark.read.format("delta").option("versionAsOf", source_version).load(source_path)
            )
            # With masks the view is persisted: the gate's aggregation and the write then read
            # it once (masks reveal values with UDFs; recomputing would decrypt every masked
            # value twice). Without masks it is a projection of the table: caching costs more
            # than reading it twice.
            view = role_view(source, cfg, policy, role, table, keys)
            masked = any(t.kind == "mask" for t in role_columns(policy, role, table).values())
            if masked:
                view = view.persist()
            try:
                _write_role_table(view, cfg, policy, role, table, run_id, source_version, path)
            finally:
                if masked:
                    view.unpersist()

        # GateFailed (a SecurePipeError) propagates as is; Delta conflicts are retried.
        retry_concurrent(rebuild, f"writing role table {role!r}/{table!r}")
        versions[role] = current_version(spark, path)
        _log.info("access: role %s, table %s -> version %d", role, table, versions[role])
    return versions
