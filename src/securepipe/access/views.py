"""Per-role outputs: row filters and column treatments applied to a protected table.

`role_view` is a pure transform of the protected DataFrame. `decrypt` columns stay ciphertext in
the role's Delta table (no plaintext at rest); `read_as` decrypts them in process for a role that
is granted the key. Masks of reversible columns are computed from the revealed value inside the
same projection, so the plaintext never leaves the executor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlglot
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from sqlglot import exp

from securepipe.access.policy import AccessPolicy, ColumnTreatment, bind_predicate, parse_treatment
from securepipe.config import ColumnConfig, PipelineConfig, ProtectSpec
from securepipe.crypto.keyring import KeyHandle, Keyring
from securepipe.errors import AccessDenied
from securepipe.io.subject_store import (
    attach_subject_keys,
    tombstoned_hashes,
    with_subject_hash,
)
from securepipe.layout import Layout
from securepipe.protect.base import ColumnContext
from securepipe.protect.registry import get_operator, operator_for
from securepipe.protect.reveal import reveal_column
from securepipe.protect.subject_udfs import HASH_COLUMN, KEK_SENTINEL

__all__ = ["matrix", "read_as", "reveal_columns", "role_columns", "role_filter", "role_view"]


def role_columns(policy: AccessPolicy, role: str, table: str) -> dict[str, ColumnTreatment]:
    """The visible columns of `table` for `role`, in policy order (hidden ones left out)."""
    tpol = policy.role(role).tables.get(table)
    if tpol is None:
        return {}
    out = {}
    for column, text in tpol.columns.items():
        treatment = parse_treatment(text)
        if treatment.kind != "hidden":
            out[column] = treatment
    return out


def role_filter(policy: AccessPolicy, role: str, table: str) -> str:
    """The role's bound row filter of `table` (`false` when the table is invisible)."""
    rp = policy.role(role)
    tpol = rp.tables.get(table)
    if tpol is None:
        return "false"
    return bind_predicate(tpol.rows, rp.attributes, f"role {role!r}, table {table!r}")


def _mask(
    col: Column, table: str, column: str, col_cfg: ColumnConfig, t: ColumnTreatment
) -> Column:
    spec = ProtectSpec.model_validate({"op": t.mask_op, **t.mask_params})
    masked_cfg = col_cfg.model_copy(update={"protect": spec})
    operator = get_operator(str(t.mask_op))
    expr = operator.build(col, ColumnContext(table, column, masked_cfg, None))
    return expr if expr is not None else F.lit(None).cast("string")


def role_view(
    protected: DataFrame,
    cfg: PipelineConfig,
    policy: AccessPolicy,
    role: str,
    table: str,
    keys: Mapping[str, KeyHandle],
    extra: tuple[str, ...] = ("run_date",),
) -> DataFrame:
    """What `role` may see of a protected table (pure: DataFrame → DataFrame).

    Args:
        protected: the published table's rows.
        keys: handles the *job* holds, used to reveal values that a mask needs.
        extra: technical columns kept (the partition column).
    """
    table_cfg = cfg.table(table)
    visible = role_columns(policy, role, table)
    rows = protected.where(F.expr(role_filter(policy, role, table)))
    exprs: list[Column] = []
    for column, t in visible.items():
        col_cfg = table_cfg.columns[column]
        meta = {"securepipe.access": t.label(), "securepipe.role": role}
        if t.kind in ("clear", "token", "decrypt"):
            expr = F.col(column)
            if t.kind == "decrypt":
                key = col_cfg.protect.params.get("key")
                if key is None and cfg.erasure is not None:
                    key = cfg.erasure.kek  # per-subject column: the subject KEK grants it
                meta["securepipe.key"] = str(key)
        else:
            expr = _mask(reveal_column(table, column, table_cfg, keys), table, column, col_cfg, t)
        exprs.append(expr.alias(column, metadata=meta))
    return rows.select(*exprs, *[c for c in extra if c in protected.columns])


def read_as(
    spark: SparkSession,
    cfg: PipelineConfig,
    policy: AccessPolicy,
    table: str,
    role: str,
    columns: list[str] | None = None,
    version: int | None = None,
    timestamp: str | None = None,
) -> DataFrame:
    """Read `table` as `role` would: its own Delta table, decrypted where it is granted the key.

    Args:
        columns: ask for these columns only; a column the role may not see raises.
        version / timestamp: Delta time travel on the role's table (never on the protected one).

    Raises:
        AccessDenied: the role does not see the table or one of `columns`.
    """
    rp = policy.role(role)
    if table not in rp.tables:
        raise AccessDenied(f"role {role!r} has no access to table {table!r}")
    visible = role_columns(policy, role, table)
    for column in columns or []:
        if column not in visible and column != "run_date":
            raise AccessDenied(f"role {role!r} may not see column {column!r} of table {table!r}")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    elif timestamp is not None:
        reader = reader.option("timestampAsOf", timestamp)
    df = reader.load(Layout.of(cfg).access(role, table))
    if version is not None or timestamp is not None:
        df = _under_todays_policy(df, policy, role, table, visible)
        df = _without_erased(spark, cfg, policy, role, table, df)
    decrypt = [c for c, t in visible.items() if t.kind == "decrypt" and c in df.columns]
    if decrypt:
        ring = Keyring(cfg.keystore)
        granted = {k: ring.handle(k) for k in rp.keys}
        if cfg.erasure is not None and cfg.erasure.kek in granted:
            # The subject index key only finds each row's subject key; it opens nothing.
            granted[cfg.erasure.index_key] = ring.handle(cfg.erasure.index_key)
        df = reveal_columns(spark, cfg, table, df, granted, decrypt)
    return df.select(*columns) if columns else df


def reveal_columns(
    spark: SparkSession,
    cfg: PipelineConfig,
    table: str,
    df: DataFrame,
    keys: Mapping[str, KeyHandle],
    columns: Iterable[str] | None = None,
) -> DataFrame:
    """Replace protected columns of `df` by their plaintext, with the keys the caller holds.

    Per-subject columns are opened through the subject key store (null once the subject is
    erased; needs the subject KEK and the subject index key among `keys`); the others with their
    column key.

    Args:
        columns: which columns to reveal; by default every reversible column of `df`.

    Raises:
        PolicyError: a column that cannot be reversed. KeyAccessError: a key not among `keys`.
    """
    table_cfg = cfg.table(table)
    if columns is None:
        columns = [
            c
            for c in df.columns
            if c in table_cfg.columns
            and operator_for(table_cfg.columns[c]).is_reversible(
                table_cfg.columns[c].protect.params
            )
        ]
    wanted = list(columns)
    per_subject = [c for c in wanted if operator_for(table_cfg.columns[c]).per_subject]
    source = df
    if per_subject and cfg.erasure is not None and table_cfg.subject is not None:
        index = keys.get(cfg.erasure.index_key)
        if index is None:
            raise AccessDenied(
                f"table {table!r}: revealing per-subject columns needs key "
                f"{cfg.erasure.index_key!r} to find each subject's key"
            )
        hashed = with_subject_hash(df, table_cfg.subject, index)
        source = attach_subject_keys(spark, Layout.of(cfg), hashed)
    if cfg.erasure is not None and cfg.erasure.kek in keys:
        keys = {**keys, KEK_SENTINEL: keys[cfg.erasure.kek]}
    exprs = {c: reveal_column(table, c, table_cfg, keys) for c in wanted}
    return source.select(*[exprs.get(c, F.col(c)) for c in df.columns])


def _without_erased(
    spark: SparkSession,
    cfg: PipelineConfig,
    policy: AccessPolicy,
    role: str,
    table: str,
    df: DataFrame,
) -> DataFrame:
    """An old version of a role table without today's erased subjects, or a refusal.

    Today's risk suppression cannot be applied to another version's rows (classes are measured
    on the data a night wrote), so a role table under a risk policy has no time travel. Rows of
    subjects erased since are dropped by their id in clear; a version whose subject ids the role
    cannot see in clear is refused while any subject is erased.

    Raises:
        AccessDenied: naming the role and table, and why.
    """
    tpol = policy.role(role).tables[table]
    if tpol.risk is not None:
        raise AccessDenied(
            f"role {role!r}, table {table!r}: no time travel under a risk policy (today's "
            "suppression cannot be applied to an older version's rows)"
        )
    subject = cfg.table(table).subject
    if subject is None or cfg.erasure is None:
        return df
    tombstones = tombstoned_hashes(spark, Layout.of(cfg))
    if tombstones.isEmpty():
        return df
    clear = operator_for(cfg.table(table).columns[subject]).passes_value
    if subject not in df.columns or not clear:
        raise AccessDenied(
            f"role {role!r}, table {table!r}: no time travel while subjects are erased: this "
            f"version does not show {subject!r} in clear, so their rows cannot be left out"
        )
    index = Keyring(cfg.keystore).handle(cfg.erasure.index_key)
    hashed = with_subject_hash(df, subject, index)
    return hashed.join(F.broadcast(tombstones), HASH_COLUMN, "left_anti").drop(HASH_COLUMN)


def _under_todays_policy(
    df: DataFrame,
    policy: AccessPolicy,
    role: str,
    table: str,
    visible: Mapping[str, ColumnTreatment],
) -> DataFrame:
    """An old version of a role table, seen through today's policy.

    A past version was written under the policy of its day: a column since revoked, or stored
    under a weaker treatment than today's (clear where today says mask), is left out, and
    today's row filter is applied again. Fail closed: a filter over a column the old version does
    not hold refuses the read.

    Raises:
        AccessDenied: today's row filter cannot be applied to that version.
    """
    keep = [
        f.name
        for f in df.schema.fields
        if f.name == "run_date"
        or (
            f.name in visible
            and (f.metadata or {}).get("securepipe.access") == visible[f.name].label()
        )
    ]
    predicate = role_filter(policy, role, table)
    used = {c.name for c in sqlglot.parse_one(predicate, read="spark").find_all(exp.Column)}
    missing = sorted(used - set(df.columns))
    if missing:
        raise AccessDenied(
            f"role {role!r}, table {table!r}: today's row filter reads {missing}, which that "
            "version of the role table does not hold; it cannot be shown under today's policy"
        )
    return df.where(F.coalesce(F.expr(predicate), F.lit(False))).select(*keep)


def matrix(cfg: PipelineConfig, policy: AccessPolicy) -> list[dict[str, Any]]:
    """Tables x columns x roles: the treatment each role gets ('' = hidden)."""
    rows = []
    for table, table_cfg in cfg.tables.items():
        for column, col_cfg in table_cfg.columns.items():
            entry: dict[str, Any] = {
                "table": table,
                "column": column,
                "classification": col_cfg.classification.value,
                "protection": col_cfg.protect.op,
            }
            for role in policy.roles:
                visible = role_columns(policy, role, table)
                entry[role] = visible[column].label() if column in visible else ""
            rows.append(entry)
    return rows
