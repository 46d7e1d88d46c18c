"""The access stage: each role's tables, gated, kept in step with the published table.

A role table is the published table seen through the role's policy. Each of its commits records
the *view* it was written under (a hash of the role's columns and row filter, the table's
protection and the current versions of the keys the role decrypts with) and the version of the
published table it reflects. Bringing it up to date reads the published table's commits since
that version:

* nightly publishes (`kind: publish`) and the rollback of a failed one (`kind: rollback`) →
  only their `run_date` partitions are rewritten;
* erasures (`kind: erasure`) → the erased subjects' rows are deleted from the dates they were
  in (by the keyed hash of the subject column), or those dates rewritten when the role does
  not see the subject column as stored (or its risk policy would refuse); under a `suppress`
  risk policy a date where the deletion left a class below the policy is rewritten too;
* OPTIMIZE, VACUUM, property changes → nothing;
* anything else (a re-encryption, a restore, a change by hand, a log that no longer reaches that
  far), a different view, or no role table yet → a full rebuild from the published table.

A risk policy measures the dates being written, classes taken within each date
(`_measure_risk`), so it keeps the same cost. So night 365 costs what night 2 costs, a policy
change still applies to every past date, and a role never keeps a row that the published table
no longer has.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import sqlglot
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType
from sqlglot import exp

from securepipe.access.policy import AccessPolicy, RiskPolicy
from securepipe.access.risk import (
    assess,
    class_stats,
    measured_columns,
    size_unit,
    violating,
    without_classes,
)
from securepipe.access.views import role_columns, role_filter, role_view
from securepipe.config import PipelineConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.errors import GateFailed, RiskGateFailed
from securepipe.io.delta import (
    commit_carrying,
    commit_metadata,
    commit_records,
    commits_since,
    compliance_record,
    current_version,
    delete_matching,
    history,
    is_delta_table,
    is_neutral,
    overwrite_table,
    record_commit,
    retry_concurrent,
    write_partitions,
)
from securepipe.io.fs import list_folders
from securepipe.io.subject_store import tombstoned_hashes, with_subject_hash
from securepipe.layout import Layout
from securepipe.protect.subject_udfs import HASH_COLUMN
from securepipe.quality.builtin import detectors, matches

__all__ = [
    "ERASURE_KIND",
    "PUBLISH_KIND",
    "RETIRED_KIND",
    "ROLLBACK_KIND",
    "PublishedLog",
    "RoleSync",
    "RoleTables",
    "check_role_view",
    "plan_role_sync",
    "publish_role_tables",
    "rebuilt_rows",
    "retire_role_tables",
    "view_fingerprint",
]

PUBLISH_KIND = "publish"
ERASURE_KIND = "erasure"
ROLLBACK_KIND = "rollback"  # a failed night's commit taken back (its `run_date` changed again)
RETIRED_KIND = "access-retired"  # a role table whose role (or grant) left the policy: emptied
PARTITION_COLUMN = "run_date"
# Risk classes are measured within each date (see `_measure_risk`).
_WITHIN = (PARTITION_COLUMN,)
# How far back a role table's own log is searched for its last state (OPTIMIZE, VACUUM and
# property commits of `securepipe maintain` carry none).
_STATE_SEARCH = 50
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
    got = [c for c in view.columns if c != PARTITION_COLUMN]
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


def _decrypt_keys(cfg: PipelineConfig, policy: AccessPolicy, role: str, table: str) -> list[str]:
    """The keys whose ciphertexts the role's `decrypt` columns hold."""
    table_cfg = cfg.table(table)
    names = set()
    for column, treatment in role_columns(policy, role, table).items():
        if treatment.kind == "decrypt":
            key = table_cfg.columns[column].protect.params.get("key")
            if key is None and cfg.erasure is not None:
                key = cfg.erasure.kek
            if key is not None:
                names.add(str(key))
    return sorted(names)


def view_fingerprint(
    cfg: PipelineConfig,
    policy: AccessPolicy,
    role: str,
    table: str,
    keys: Mapping[str, KeyHandle],
) -> str:
    """SHA-256 of everything that decides what `role` sees of `table`: its columns and their
    treatments, its bound row filter, the declared columns of the table and the current versions
    of the keys its `decrypt` columns are under. A different fingerprint rebuilds the table."""
    table_cfg = cfg.table(table)
    payload: dict[str, Any] = {
        "columns": {c: t.label() for c, t in role_columns(policy, role, table).items()},
        "rows": role_filter(policy, role, table),
        "table": {
            name: col.model_dump(mode="json") for name, col in sorted(table_cfg.columns.items())
        },
        "subject": table_cfg.subject,
        "decrypt_keys": {
            k: keys[k].current if k in keys else None
            for k in _decrypt_keys(cfg, policy, role, table)
        },
    }
    risk = _risk(policy, role, table)
    if risk is not None:
        # What is suppressed depends on it; absent, fingerprints stay as they were before risk
        # policies existed (no rebuild of every role table on upgrade).
        payload["risk"] = risk.model_dump(mode="json")
        # Role tables written when classes spanned every date are rebuilt once, under
        # per-date classes (else their old dates would keep the old measure).
        payload["risk"]["classes_within"] = list(_WITHIN)
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class RoleSync:
    """How a role table is brought up to the published table's `source_version`.

    `mode`: `current` (nothing to do), `incremental` (rewrite `run_dates`, delete the
    tombstoned subjects from `erased_dates`), or `full` (with `reason`).
    """

    mode: str
    source_version: int
    reason: str = ""
    run_dates: tuple[str, ...] = ()
    erased_dates: tuple[str, ...] = ()
    role_version: int = -1  # the role table's version when planned (-1: none yet)
    details: dict[str, Any] = field(default_factory=dict)


def _role_state(spark: SparkSession, path: str) -> tuple[dict[str, Any] | None, int]:
    """The newest commit record of a role table that states its view and source version, and
    the table's latest version (-1 when there is no table). One read of its log."""
    if not is_delta_table(spark, path):
        return None, -1
    entries = history(spark, path, _STATE_SEARCH)
    latest = max((int(e["version"]) for e in entries), default=-1)
    for entry in entries:
        record = entry.get("record")
        if isinstance(record, dict) and "view" in record and "source_version" in record:
            return record, latest
    return None, latest


class PublishedLog:
    """The published table's log as the role syncs of one table read it: its version, read once,
    and its commits since the oldest version a role asks for (one read, widened if a role needs
    older ones). Build a new one to see commits made after it was built."""

    def __init__(self, spark: SparkSession, path: str) -> None:
        self.spark, self.path = spark, path
        self.now = current_version(spark, path)
        self._start: int | None = None
        self._commits: list[dict[str, Any]] = []

    def since(self, version: int) -> list[dict[str, Any]] | None:
        """The commits after `version` up to `now`, oldest first (see `commits_since`)."""
        if self._start is None or version < self._start:
            commits = commits_since(self.spark, self.path, version, self.now)
            if commits is None:
                return None
            self._start, self._commits = version, commits
        return [c for c in self._commits if int(c["version"]) > version]


def plan_role_sync(
    spark: SparkSession, role_path: str, source: PublishedLog, fingerprint: str
) -> RoleSync:
    """What it takes to bring the role table at `role_path` up to the published table's version
    `source.now` (see the module doc); reads the two Delta logs only."""
    now = source.now
    state, mine = _role_state(spark, role_path)

    def full(reason: str) -> RoleSync:
        return RoleSync("full", now, reason, role_version=mine)

    if state is None:
        return full("no role table yet")
    if state["view"] != fingerprint:
        return full("the role's view changed (policy, configuration or key)")
    since = int(state["source_version"])
    if since > now:
        # An overlapping run brought this role table further than the log read here: it is
        # ahead, not behind (rebuilding it from version `now` would move it back).
        return RoleSync("current", since, role_version=mine)
    commits = source.since(since)
    if commits is None:
        return full(f"the published log no longer reaches version {since}")
    dates: set[str] = set()
    erased_dates: set[str] = set()
    for commit in commits:
        record = commit.get("record") or {}
        kind = record.get("kind")
        if kind in (PUBLISH_KIND, ROLLBACK_KIND) and record.get("run_date"):
            dates.add(str(record["run_date"]))
        elif kind == ERASURE_KIND and "run_dates" in record:
            # The record names the dates, never the subjects: those are the tombstones.
            erased_dates.update(record["run_dates"])
        elif not is_neutral(commit):
            what = kind or commit.get("operation")
            return full(f"published version {commit['version']} was a {what}")
    if not dates and not erased_dates:
        return RoleSync("current", now, role_version=mine)
    return RoleSync(
        "incremental",
        now,
        run_dates=tuple(sorted(dates)),
        erased_dates=tuple(sorted(erased_dates - dates)),
        role_version=mine,
    )


def _risk(policy: AccessPolicy, role: str, table: str) -> RiskPolicy | None:
    tpol = policy.role(role).tables.get(table)
    return tpol.risk if tpol is not None else None


def _write(
    spark: SparkSession,
    cfg: PipelineConfig,
    policy: AccessPolicy,
    role: str,
    table: str,
    keys: Mapping[str, KeyHandle],
    plan: RoleSync,
    record: dict[str, Any],
) -> tuple[str, int | None, dict[str, Any] | None]:
    """Write the role's rows of the planned dates (all of them for `full`) from the published
    table at `plan.source_version`, gated (and, with a risk policy, measured and acted on).
    Returns what was done, the version of the commit made (None: Delta made none, there was
    nothing to write) and the risk figures."""
    layout = Layout.of(cfg)
    path = layout.access(role, table)
    published = (
        spark.read.format("delta")
        .option("versionAsOf", plan.source_version)
        .load(layout.table(table))
    )
    risk = _risk(policy, role, table)
    full = plan.mode == "full"
    if not full and not plan.run_dates:
        return "nothing to write", None, None
    cached: list[DataFrame] = []
    try:
        source = published if full else published.where(_on_dates(plan.run_dates))
        # With masks or a risk measure the view is persisted: the measure, the gate's
        # aggregation and the write then read it once (masks reveal values with UDFs;
        # recomputing would decrypt every masked value again).
        view = role_view(source, cfg, policy, role, table, keys)
        masked = any(t.kind == "mask" for t in role_columns(policy, role, table).values())
        if masked or risk is not None:
            view = view.persist()
            cached.append(view)
        figures = None
        if risk is not None:
            figures, small = _measure_risk(cfg, policy, role, table, view, plan)
            record = {**record, "risk": figures}
            if small is not None:
                cached.append(small)
                view = without_classes(view, small, risk, _WITHIN)
        gate = check_role_view(view, cfg, policy, role, table)
        record = {**record, "gate": gate}
        if full:
            commit = overwrite_table(
                view, path, record, partition_by=PARTITION_COLUMN, overwrite_schema=True
            )
            return "full rebuild", commit.version if commit.committed else None, figures
        commit = write_partitions(view, path, PARTITION_COLUMN, plan.run_dates, record)
        written = commit.version if commit.committed else None
        return f"{len(plan.run_dates)} partition(s)", written, figures
    finally:
        for df in cached:
            df.unpersist()


def rebuilt_rows(
    cfg: PipelineConfig,
    policy: AccessPolicy,
    role: str,
    table: str,
    keys: Mapping[str, KeyHandle],
    published: DataFrame,
) -> DataFrame:
    """What a full rebuild of the role table from `published` holds: the role's view, less the
    classes its risk policy suppresses (pure; what every incremental sync must equal)."""
    view = role_view(published, cfg, policy, role, table, keys)
    risk = _risk(policy, role, table)
    if risk is None or risk.action != "suppress":
        return view
    unit = size_unit(cfg, policy, role, table)
    measured = view.select(*_WITHIN, *measured_columns(risk, unit))
    classes = class_stats(measured, risk, unit, _WITHIN)
    return without_classes(view, classes.where(violating(risk)), risk, _WITHIN)


def _measure_risk(
    cfg: PipelineConfig,
    policy: AccessPolicy,
    role: str,
    table: str,
    view: DataFrame,
    plan: RoleSync,
) -> tuple[dict[str, Any], DataFrame | None]:
    """Measure the re-identification risk of what the role is about to be given (`view`: the
    planned dates through its row filter and masks), classes taken within each date, and act as
    its policy says: `fail` raises, `warn` logs, `suppress` leaves out every row of a class
    below the policy.

    Within each date, because every reader can select one night: a date whose classes meet the
    policy cannot give a smaller class over several dates (a class over many dates holds at
    least the subjects it holds on any one of them), so the whole table meets it too. And a
    date's rows then depend on that date alone: a night measures its own partition, never the
    history (night 365 costs what night 2 costs), and no other date needs rewriting when
    classes grow or shrink.

    Returns:
        The figures (counts only) and the classes to leave out (`suppress`, persisted; else
        None).

    Raises:
        RiskGateFailed: `action: fail` and a class below the policy (nothing written).
    """
    risk = _risk(policy, role, table)
    assert risk is not None
    unit = size_unit(cfg, policy, role, table)
    figures, classes = assess(
        view.select(*_WITHIN, *measured_columns(risk, unit)), risk, unit, _WITHIN
    )
    figures["measured_dates"] = "all" if plan.mode == "full" else list(plan.run_dates)
    measured, where = figures["measured"], f"role {role!r}, table {table!r}"
    below = f"k={risk.k}" + (f" or l={risk.l_diversity}" if risk.l_diversity else "")
    summary = (
        f"{where}: re-identification risk above the policy: k={measured['k']} "
        f"(target {risk.k}); {measured['rows_violating']} of {measured['rows']} rows in "
        f"{measured['classes_violating']} classes below {below}"
    )
    extra = {"event": "risk", "role": role, "table": table, "action": risk.action}
    if not figures["passed"] and risk.action == "fail":
        raise RiskGateFailed(f"{summary}; the role table is left as it was (action: fail)")
    if risk.action != "suppress":
        if not figures["passed"]:
            _log.warning("%s; written anyway (action: warn)", summary, extra=extra)
        return figures, None
    small = classes.where(violating(risk)).select(*_WITHIN, *risk.quasi_identifiers).persist()
    figures["suppressed_rows"] = measured["rows_violating"]
    if not figures["passed"]:
        _log.warning("%s; those rows suppressed (action: suppress)", summary, extra=extra)
    return figures, small


def _violating_dates(
    spark: SparkSession,
    cfg: PipelineConfig,
    policy: AccessPolicy,
    role: str,
    table: str,
    dates: tuple[str, ...],
) -> tuple[str, ...]:
    """The dates among `dates` where the role table as stored holds a class below its risk
    policy (after an erasure deleted rows from them). The stored rows of a date are whole
    classes of the published table's view, so a class measured here is the class a rebuild
    would measure: its date needs rewriting exactly when it is below the policy now."""
    risk = _risk(policy, role, table)
    assert risk is not None
    unit = size_unit(cfg, policy, role, table)
    stored = spark.read.format("delta").load(Layout.of(cfg).access(role, table))
    measured = stored.where(_on_dates(dates)).select(*_WITHIN, *measured_columns(risk, unit))
    small = class_stats(measured, risk, unit, _WITHIN).where(violating(risk))
    return tuple(sorted({str(r[0]) for r in small.select(PARTITION_COLUMN).distinct().collect()}))


def _delete_erased(
    spark: SparkSession,
    cfg: PipelineConfig,
    policy: AccessPolicy,
    role: str,
    table: str,
    keys: Mapping[str, KeyHandle],
    plan: RoleSync,
    record: dict[str, Any],
) -> int:
    """Delete the rows of erased subjects (every tombstone) from the role table, on the dates an
    erasure named.
    Needs the subject column as stored (clear or token) and the subject index key; the caller
    rewrites those dates from the published table otherwise. Returns the rows deleted."""
    subject = str(cfg.table(table).subject)
    layout = Layout.of(cfg)
    assert cfg.erasure is not None  # erasure commits exist only with an erasure section
    path = layout.access(role, table)
    rows = spark.read.format("delta").load(path)
    rows = rows.where(_on_dates(plan.erased_dates))
    hashes = tombstoned_hashes(spark, layout)
    values = (
        with_subject_hash(rows.select(subject), subject, keys[cfg.erasure.index_key])
        .join(F.broadcast(hashes), HASH_COLUMN, "left_semi")
        .select(F.col(subject).alias("value"))
        .distinct()
    )
    dates = ", ".join(f"DATE'{d}'" for d in plan.erased_dates)
    return delete_matching(
        spark, path, subject, values, record, where=f"t.{PARTITION_COLUMN} IN ({dates})"
    )


def _on_dates(dates: tuple[str, ...]) -> Column:
    return F.col(PARTITION_COLUMN).isin([F.lit(d).cast("date") for d in dates])


def _deletable(cfg: PipelineConfig, policy: AccessPolicy, role: str, table: str) -> bool:
    """Whether an erasure deletes the erased subjects' rows from the role table (it sees the
    subject column as stored, and no risk gate that refuses could stand in the way: a `fail`
    policy has the erased dates rewritten, so that a refusal takes them out whole)."""
    subject = cfg.table(table).subject
    treatment = role_columns(policy, role, table).get(str(subject))
    risk = _risk(policy, role, table)
    return (
        treatment is not None
        and treatment.kind in ("clear", "token")
        and cfg.erasure is not None
        and (risk is None or risk.action != "fail")
    )


def sync_role_table(
    spark: SparkSession,
    cfg: PipelineConfig,
    policy: AccessPolicy,
    role: str,
    table: str,
    run_id: str,
    keys: Mapping[str, KeyHandle],
    source: PublishedLog | None = None,
) -> RoleSync:
    """Bring one role table up to the published table's version (`source`, the table's log as
    read for this night's syncs; read afresh when None). One attempt: the caller retries on a
    Delta conflict, re-planning from a fresh read of the log."""
    layout = Layout.of(cfg)
    path = layout.access(role, table)
    fingerprint = view_fingerprint(cfg, policy, role, table, keys)
    source = source or PublishedLog(spark, layout.table(table))
    plan = plan_role_sync(spark, path, source, fingerprint)
    if plan.mode == "current":
        return replace(plan, details={"version": plan.role_version})
    state = {
        "view": fingerprint,
        "source_version": plan.source_version,
        "sync": plan.mode,
        "run_dates": list(plan.run_dates),
    }
    record = compliance_record(
        "access",
        run_id,
        table,
        cfg.fingerprint(),
        kind="access",
        role=role,
        policy_version=policy.version(),
        **state,
        **({"reason": plan.reason} if plan.reason else {}),
    )
    risk = _risk(policy, role, table)
    version, deleted, claimed, figures = plan.role_version, 0, False, None
    pending: tuple[str, ...] = ()  # dates holding erased subjects until they are rewritten
    if plan.erased_dates:
        if _deletable(cfg, policy, role, table):
            # The last commit of the sync states the new source version; a delete followed by
            # partition writes (or a risk measure, which may rewrite dates) must not claim it
            # before they are done.
            last = not plan.run_dates and risk is None
            delete_record = (
                record
                if last
                else {
                    **{k: v for k, v in record.items() if k not in ("view", "source_version")},
                    "kind": "access-erasure",
                }
            )
            delete_record = {**delete_record, "erased_dates": list(plan.erased_dates)}
            deleted = _delete_erased(spark, cfg, policy, role, table, keys, plan, delete_record)
            delete = commit_carrying(spark, path, delete_record)
            if delete.committed:
                version, claimed = delete.version, last
            if risk is not None and risk.action == "suppress":
                # A class the deletion shrank below the policy: its date is rewritten (and
                # measured again) from the published table.
                shrunk = _violating_dates(spark, cfg, policy, role, table, plan.erased_dates)
                if shrunk:
                    plan = replace(plan, run_dates=tuple(sorted({*plan.run_dates, *shrunk})))
                    record["run_dates"] = list(plan.run_dates)
        else:
            pending = plan.erased_dates
            plan = replace(
                plan,
                run_dates=tuple(sorted({*plan.run_dates, *plan.erased_dates})),
                erased_dates=(),
            )
            record["run_dates"] = list(plan.run_dates)
    done = "erased rows deleted"
    if plan.mode == "full" or plan.run_dates:
        try:
            done, written, figures = _write(spark, cfg, policy, role, table, keys, plan, record)
        except RiskGateFailed:
            if pending:
                # An erasure is never held back by a risk refusal: the dates that still hold
                # erased subjects leave the role table until a sync that passes rewrites them.
                drop = {**record, "kind": "access-erasure", "erased_dates": list(pending)}
                drop = {k: v for k, v in drop.items() if k not in ("view", "source_version")}
                with commit_metadata(spark, drop):
                    DeltaTable.forPath(spark, path).delete(_on_dates(pending))
            raise
        if written is not None:
            version, claimed = written, True
    if not claimed:
        # Nothing to write (no row of the role on those dates, no erased row): Delta records no
        # empty commit, but the state must move on, or later nights would redo these dates.
        version = record_commit(spark, path, record, expected_version=version).version
        done = "erased rows deleted" if deleted else "nothing to write"
    details = {"done": done, "rows_deleted": deleted, "version": version}
    if figures is not None:
        details["risk"] = figures
    return replace(plan, details=details)


@dataclass
class RoleTables:
    """What the access stage did for one table: the version of each role table, the risk
    figures of those written under a risk policy, and the roles refused by their risk gate
    (role → message; their tables were left as they were)."""

    versions: dict[str, int] = field(default_factory=dict)
    risk: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def publish_role_tables(
    spark: SparkSession,
    cfg: PipelineConfig,
    policy: AccessPolicy,
    table: str,
    run_id: str,
    keys: Mapping[str, KeyHandle],
) -> RoleTables:
    """Bring every role's copy of `table` up to the published table (see the module doc).

    When another run wrote the same role table first (overlapping nightly runs of different
    dates), the sync is planned again from the newest versions. A role refused by its risk
    gate (`RiskGateFailed`) is reported in the result; the other roles are still written.

    Raises:
        GateFailed: a role's output failed its access gate (nothing written for that role).
    """
    done = RoleTables()
    shared = PublishedLog(spark, Layout.of(cfg).table(table))  # one read for all the roles

    def sync(role: str, unread: list[PublishedLog]) -> RoleSync:
        # The first attempt plans from the log every role of the table reads; a retry (another
        # run committed meanwhile) reads it again.
        source = unread.pop() if unread else None
        return sync_role_table(spark, cfg, policy, role, table, run_id, keys, source)

    for role in sorted(policy.roles):
        if table not in policy.roles[role].tables:
            continue
        # GateFailed (a SecurePipeError) propagates as is; Delta conflicts are retried.
        what = f"writing role table {role!r}/{table!r}"
        try:
            plan = retry_concurrent(partial(sync, role, [shared]), what)
        except RiskGateFailed as exc:
            done.refused[role] = str(exc)
            done.versions[role] = current_version(spark, Layout.of(cfg).access(role, table))
            _log.error("access: %s", exc, extra={"event": "access", "role": role, "table": table})
            continue
        done.versions[role] = int(plan.details["version"])
        if "risk" in plan.details:
            done.risk[role] = plan.details["risk"]
        _log.info(
            "access: role %s, table %s -> version %d (%s%s)",
            role,
            table,
            done.versions[role],
            plan.details.get("done", "up to date"),
            f": {plan.reason}" if plan.reason else "",
            extra={
                "event": "access",
                "role": role,
                "table": table,
                "sync": plan.mode,
                "version": done.versions[role],
            },
        )
    retire_role_tables(spark, cfg, policy, table, run_id)
    return done


def retire_role_tables(
    spark: SparkSession, cfg: PipelineConfig, policy: AccessPolicy, table: str, run_id: str
) -> list[str]:
    """Empty every role table of `table` on storage whose role no longer has it in the policy
    (a role removed, or its grant of the table): left as they were, they would keep their last
    rows for ever, never synced with an erasure again. One commit each, with a compliance record
    (`kind: access-retired`); its old versions go with VACUUM or `erase --purge` like any other.
    Returns the roles emptied now."""
    layout = Layout.of(cfg)
    retired = []
    for role in list_folders(spark, f"{layout.root}/access"):
        granted = role in policy.roles and table in policy.roles[role].tables
        path = layout.access(role, table)
        if granted or not is_delta_table(spark, path):
            continue
        last = next(iter(commit_records(spark, path, limit=1)), {})
        if last.get("kind") == RETIRED_KIND:
            continue
        record = compliance_record(
            "access",
            run_id,
            table,
            cfg.fingerprint(),
            kind=RETIRED_KIND,
            role=role,
            policy_version=policy.version(),
            reason="the role no longer has this table in the access policy",
        )
        empty = spark.read.format("delta").load(path).limit(0)
        retry_concurrent(
            partial(overwrite_table, empty, path, record), f"emptying role table {role!r}/{table!r}"
        )
        _log.warning(
            "access: role %s is no longer granted table %s: its role table was emptied",
            role,
            table,
            extra={"event": "access", "role": role, "table": table, "sync": "retired"},
        )
        retired.append(role)
    return retired
