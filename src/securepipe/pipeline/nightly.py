"""The nightly run: per table `read → prepare → evaluate → publish → check`, then the role
tables, the report and the audit entry (see `securepipe.pipeline.stages`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

from pyspark.sql import SparkSession

from securepipe.access.matrix import matrix_doc
from securepipe.access.policy import AccessPolicy
from securepipe.access.publish import publish_role_tables
from securepipe.config import PipelineConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.errors import ConfigError, GateFailed, SecurePipeError, error_kind
from securepipe.io.audit import AuditEntry, append_audit, new_run_id
from securepipe.io.catalog import register_table
from securepipe.io.delta import spark_log_context
from securepipe.io.reports import refresh_index, render_matrix, write_page, write_report
from securepipe.layout import Layout
from securepipe.locks import lakehouse_lock, run_lock
from securepipe.logs import log_context
from securepipe.pipeline.keys import check_key_store, count_encryptions, resolve_keys
from securepipe.pipeline.monitor import RunEnd, RunMonitor
from securepipe.pipeline.results import RunResult, TableResult
from securepipe.pipeline.stages import (
    TableStatus,
    already_published,
    check,
    evaluate,
    prepare,
    publish,
    read,
    timed,
)
from securepipe.protect.subject_udfs import KEK_SENTINEL

__all__ = [
    "RunResult",
    "TableResult",
    "kept_encryptions",
    "new_run_id",
    "parse_run_date",
    "run_nightly",
    "run_table",
]

_log = logging.getLogger(__name__)


def run_table(
    spark: SparkSession,
    cfg: PipelineConfig,
    table: str,
    run_date: str,
    run_id: str,
    keys: Mapping[str, KeyHandle],
    skip_unchanged: bool = False,
) -> TableResult:
    """One table of the nightly job, stage by stage (`securepipe.pipeline.stages`).

    Returns:
        The table's result; `GATE_FAILED` when a `fail` gate tripped (nothing written, both
        Delta tables at their previous versions); `SKIPPED` for an unchanged backfill date.

    Raises:
        SourceError, SchemaDriftError: the landing files. KeyAccessError: a rolled-back keyring.
        GateFailed: row accounting failed after the commits (they are rolled back first).
    """
    started, stages = time.monotonic(), dict[str, float]()
    landing = read(spark, cfg, table, run_date)
    if skip_unchanged and already_published(spark, cfg, landing):
        _log.info("table %s: %s already published from the same inputs; skipped", table, run_date)
        return TableResult.of(spark, cfg, landing)
    with timed(table, "read_protect", stages, label="read+protect") as counts:
        prepared = prepare(spark, cfg, landing, keys)
        counts.update(rows_read=prepared.rows_read, rows_rejected=prepared.rows_rejected)
    published = None
    try:
        with timed(table, "gate", stages) as counts:
            evaluated = evaluate(prepared, cfg, keys)
            counts.update(passed=int(evaluated.passed))
        if evaluated.passed:
            with timed(table, "publish", stages) as counts:
                published = publish(spark, cfg, prepared, evaluated, run_id)
                check(spark, cfg, prepared, published, run_id)
                counts.update(version=published.table.version)
    finally:
        prepared.batch.unpersist()
    result = TableResult.of(spark, cfg, landing, prepared, evaluated, published)
    result.stages, result.seconds = stages, round(time.monotonic() - started, 2)
    _log.info(
        "table %s: %s; read %d, published %d, quarantined %d, version %d (%.1fs)",
        table,
        "published"
        if evaluated.passed
        else "gate FAILED: " + ", ".join(evaluated.verdict.failures),
        result.rows_read,
        result.rows_published,
        result.rows_quarantined,
        result.table_version,
        result.seconds,
    )
    return result


def parse_run_date(value: str | date) -> str:
    """The ISO form of a run date; `ConfigError` for anything else."""
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ConfigError(f"run date {value!r} is not an ISO date (YYYY-MM-DD)") from None


def run_nightly(
    spark: SparkSession,
    cfg: PipelineConfig,
    run_date: str | date,
    tables: Iterable[str] | None = None,
    run_id: str | None = None,
    policy: AccessPolicy | None = None,
    skip_unchanged: bool = False,
) -> RunResult:
    """Run the nightly job for one date over the configured (or the given) tables.

    Holds the lakehouse lock (shared: nights of different dates may overlap; erase, maintain,
    reencrypt and keys hold it alone) and the run date's lock (exclusive) throughout.

    Args:
        spark: an active session configured by `securepipe.spark.configure_builder`.
        cfg: the validated configuration.
        run_date: the batch date (ISO string or `date`).
        tables: a subset of tables; all configured tables by default.
        run_id: an explicit run id (tests); generated otherwise.
        policy: access policy; each published table's role tables are rebuilt from it.
        skip_unchanged: backfills: skip a table whose date was published from the same input
            checksums and configuration.

    Raises:
        ConfigError: a bad date or an unknown table. GateFailed: a gate refused a batch (the
            exception carries the run's result). SecurePipeError: any other refusal.
    """
    day = parse_run_date(run_date)
    names = list(tables) if tables is not None else list(cfg.tables)
    for name in names:
        cfg.table(name)
    run_id = run_id or new_run_id(day)
    layout = Layout.of(cfg)
    with (
        log_context(job="nightly", run_id=run_id, run_date=day),
        spark_log_context(spark, run_id=run_id, run_date=day),
        lakehouse_lock(layout, exclusive=False, what=f"nightly {day}"),
        run_lock(layout.locks, f"nightly-{day}"),
    ):
        started, results = datetime.now(UTC), list[TableResult]()
        status, message = "error", ""
        keys: dict[str, KeyHandle] = {}
        monitor = RunMonitor(cfg, run_id, day, names)
        monitor.start()
        try:
            keys = resolve_keys(cfg, names)
            # Each table's keyring generation is checked as it is prepared.
            check_key_store(spark, cfg, keys, ())
            result = _run_tables(
                spark, cfg, day, names, run_id, keys, policy, skip_unchanged, results
            )
            status = result.status
            _raise_if_refused(result)
            return result
        except GateFailed as exc:
            status, message = TableStatus.GATE_FAILED.value, str(exc)
            raise
        except Exception as exc:
            message = str(exc) if isinstance(exc, SecurePipeError) else error_kind(exc)
            raise
        finally:
            try:
                _audit(spark, cfg, run_id, day, started, status, message, results, keys)
                _write_pages(spark, cfg, policy)
            finally:
                # Metrics and lineage of every run, refused or failed included; never raises.
                monitor.finish(RunEnd(status, message, results, keys))


def _write_pages(spark: SparkSession, cfg: PipelineConfig, policy: AccessPolicy | None) -> None:
    """The reports' index of runs (from the audit table) and the access matrix page; a failure
    here is logged and never fails the run (its tables and audit row are written already)."""
    layout = Layout.of(cfg)
    try:
        if policy is not None:
            page = render_matrix(matrix_doc(cfg, policy))
            write_page(spark, f"{layout.reports}/access-matrix.html", page)
    except Exception as exc:
        _log.warning("access matrix page not written: %s", error_kind(exc))
    refresh_index(spark, layout.reports, layout.audit)


def _raise_if_refused(result: RunResult) -> None:
    failed = [t for t in result.tables if t.status == TableStatus.GATE_FAILED]
    refused = [m for t in result.tables for m in t.access_refused.values()]
    if not failed and not refused:
        return
    parts = []
    if failed:
        message = "; ".join(
            f"table {t.table!r}: {', '.join(t.gate['failures'])} "
            f"({t.rows_read} rows read, 0 published)"
            for t in failed
        )
        parts.append(f"gate failed, nothing published for it: {message}")
    if refused:
        parts.append("role tables not written: " + "; ".join(refused))
    raise GateFailed("; ".join(parts) + f"; report {result.report_path}", result=result)


def _run_tables(
    spark: SparkSession,
    cfg: PipelineConfig,
    day: str,
    names: list[str],
    run_id: str,
    keys: Mapping[str, KeyHandle],
    policy: AccessPolicy | None,
    skip_unchanged: bool,
    results: list[TableResult],
) -> RunResult:
    catalog = cfg.catalog is not None  # until the metastore fails once in this night
    for name in names:
        with log_context(table=name):
            table_result = run_table(spark, cfg, name, day, run_id, keys, skip_unchanged)
            results.append(table_result)
            if policy is not None and table_result.status != TableStatus.GATE_FAILED:
                # Also for a skipped date: the role tables catch up with any change since their
                # last sync (a policy edit, an erasure); when nothing changed this reads two logs.
                with timed(name, "access", table_result.stages):
                    roles = publish_role_tables(spark, cfg, policy, name, run_id, keys)
                table_result.access, table_result.risk = roles.versions, roles.risk
                table_result.access_refused = roles.refused
            if catalog and table_result.status != TableStatus.GATE_FAILED:
                catalog = register_tables(spark, Layout.of(cfg), table_result)
    count_encryptions(cfg, kept_encryptions(results))
    result = RunResult(run_id=run_id, run_date=day, config_hash=cfg.fingerprint(), tables=results)
    result.report_path = write_report(spark, Layout.of(cfg).reports, result.as_dict())
    return result


def register_tables(spark: SparkSession, layout: Layout, result: TableResult) -> bool:
    """Name the table's published, quarantine and role tables in the catalog (`catalog:`).
    Returns False when the metastore failed (each attempt can take a while: the night's other
    names are not tried and wait for the next night)."""
    table = result.table
    found = [
        (layout.table_name(table), layout.table(table), result.table_version),
        (layout.quarantine_name(table), layout.quarantine(table), result.quarantine_version),
        *(
            (layout.access_name(role, table), layout.access(role, table), version)
            for role, version in result.access.items()
        ),
    ]
    for name, location, version in found:
        if name is None or version is None or version < 0:
            continue
        try:
            if register_table(spark, name, location):
                _log.info("catalog: %s names %s", name, location)
        except ConfigError:
            raise  # the name points elsewhere: a configuration to correct
        except Exception as exc:
            # The tables are published already: an unreachable or locked metastore (an embedded
            # one admits one process) leaves the names for the next night, not a failed run.
            _log.warning(
                "catalog: %s not registered (%s); the metastore is unavailable, this night's "
                "other names wait for the next night too",
                name,
                error_kind(exc),
            )
            return False
    return True


def kept_encryptions(results: Iterable[TableResult]) -> dict[str, int]:
    """Random-nonce seals per key version of the published tables (a refused batch sealed
    nothing that was kept)."""
    out: dict[str, int] = {}
    for t in results:
        if t.status == TableStatus.PUBLISHED:
            for label, n in t.encryptions.items():
                out[label] = out.get(label, 0) + n
    return out


def _audit(
    spark: SparkSession,
    cfg: PipelineConfig,
    run_id: str,
    day: str,
    started: datetime,
    status: str,
    message: str,
    results: list[TableResult],
    keys: Mapping[str, KeyHandle],
) -> None:
    published = [t for t in results if t.status == TableStatus.PUBLISHED]
    entry = AuditEntry(
        run_id=run_id,
        job="nightly",
        run_date=day,
        started_at=started,
        ended_at=datetime.now(UTC),
        status=status,
        message=message,
        config_hash=cfg.fingerprint(),
        rows_read=sum(t.rows_read for t in results),
        rows_published=sum(t.rows_published for t in published),
        rows_quarantined=sum(t.rows_quarantined for t in published),
        tables={
            t.table: {
                "status": t.status.value,
                "version": t.table_version,
                "quarantine_version": t.quarantine_version,
                "access": t.access,
                "access_refused": sorted(t.access_refused),
                "risk": t.risk,
                "gate": {
                    "passed": t.gate.get("passed"),
                    "failures": t.gate.get("failures", []),
                    "warnings": t.gate.get("warnings", []),
                },
                "rows_read": t.rows_read,
                "rows_published": t.rows_published,
                "rows_quarantined": t.rows_quarantined,
                "rows_erased": t.rows_erased,
                "encryptions": t.encryptions,
                "reasons": t.reasons,
            }
            for t in results
        },
        input_checksums=[f for t in results for f in t.input_files],
        key_versions={name: h.current for name, h in keys.items() if name != KEK_SENTINEL},
    )
    append_audit(spark, Layout.of(cfg).audit, [entry])
