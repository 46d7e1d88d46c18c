"""A run's metrics for Prometheus: pushed to a Pushgateway (the documented way for batch jobs) or
written in the text exposition format for node_exporter's textfile collector.

Every metric carries the `table` label (the Pushgateway adds `job` from the grouping key);
labels name tables, stages, checks, reason codes and keys, never a data value. "Last run" figures
are gauges (a batch job's last run, as the Pushgateway documentation recommends); the only
counter, `securepipe_key_encryptions_total`, is the keyring's running total per key version.
A push that fails (gateway down, slow, refusing) is logged as a warning and never fails the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Enum, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import push_to_gateway, write_to_textfile
from prometheus_client.registry import Collector

__all__ = [
    "RUN_STATES",
    "KeyFigures",
    "TableFigures",
    "push_metrics",
    "registry_of",
    "write_metrics_file",
]

_log = logging.getLogger(__name__)

# A table's state after a run: `ok` (published, or an unchanged backfill date skipped),
# `gate_failed` (a gate or a role table's risk gate refused), `error` (the run stopped).
RUN_STATES = ("ok", "gate_failed", "error")


@dataclass(frozen=True)
class KeyFigures:
    """One key a table depends on: no key material, only its version, age and use."""

    name: str
    version: int
    age_seconds: float
    rotation_period_seconds: float | None  # None: not rotatable (hmac, fpe) or not configured
    encryptions_total: Mapping[int, int] = field(default_factory=dict)  # version → total seals


@dataclass(frozen=True)
class TableFigures:
    """What one run did to one table, as counts and seconds."""

    table: str
    state: str  # one of RUN_STATES
    ended_at: float  # Unix seconds
    seconds: float
    stages: Mapping[str, float] = field(default_factory=dict)
    rows: Mapping[str, int] = field(default_factory=dict)  # read, published, quarantined, erased
    quarantined_by_reason: Mapping[str, int] = field(default_factory=dict)
    checks: Mapping[str, bool] = field(default_factory=dict)  # gate check → passed
    role_tables_refused: int = 0
    encryptions: Mapping[tuple[str, int], int] = field(default_factory=dict)  # this run's seals
    keys: tuple[KeyFigures, ...] = ()


# The Pushgateway group that only successful runs push to (its one metric is the time of the
# last success, which a refused or failed run must leave in place).
SUCCESS_GROUP = {"push": "success"}


def registry_of(
    tables: Iterable[TableFigures], last_run: bool = True, last_success: bool = True
) -> CollectorRegistry:
    """A registry holding the metrics of the given tables (one `table` label value each): the
    last run's figures and the time of the last success (either may be left out)."""
    tables = list(tables)
    registry = CollectorRegistry()
    if last_success:
        success = Gauge(
            "securepipe_last_success_timestamp_seconds",
            "When the last successful run of the table ended (not pushed by a refused or "
            "failed run)",
            ("table",),
            registry=registry,
        )
        for t in tables:
            if t.state == "ok":
                success.labels(t.table).set(t.ended_at)
    if not last_run:
        return registry

    def gauge(name: str, doc: str, *labels: str) -> Gauge:
        return Gauge(name, doc, ("table", *labels), registry=registry)

    status = Enum(
        "securepipe_last_run_status",
        "State of the table after its last run (ok, gate_failed, error)",
        ("table",),
        registry=registry,
        states=list(RUN_STATES),
    )
    ended = gauge("securepipe_last_run_timestamp_seconds", "When the last run of the table ended")
    duration = gauge("securepipe_last_run_duration_seconds", "Wall time of the table's last run")
    stage = gauge(
        "securepipe_last_run_stage_duration_seconds",
        "Wall time of each stage of the table's last run",
        "stage",
    )
    rows = gauge(
        "securepipe_last_run_rows",
        "Rows of the last run: read from landing, published, quarantined, erased at publish",
        "outcome",
    )
    reasons = gauge(
        "securepipe_last_run_quarantined_rows",
        "Rows the last run quarantined, by reason code (a row may carry several)",
        "reason",
    )
    checks = gauge(
        "securepipe_last_run_gate_check_passed",
        "1 if the gate check passed in the last run, 0 if it did not",
        "check",
    )
    refused = gauge(
        "securepipe_last_run_role_tables_refused",
        "Role tables of the table that the last run did not write (risk gate refused)",
    )
    sealed = gauge(
        "securepipe_last_run_encrypted_values",
        "Values the last run encrypted with random nonces, per key version",
        "key",
        "key_version",
    )
    key_version = gauge("securepipe_key_version", "Current version of each key in use", "key")
    key_age = gauge(
        "securepipe_key_age_seconds", "Age of the current version of each key in use", "key"
    )
    key_period = gauge(
        "securepipe_key_rotation_period_seconds",
        "Configured rotation period of each rotatable key in use",
        "key",
    )
    totals = _KeyTotals()
    registry.register(totals)

    for t in tables:
        status.labels(t.table).state(t.state)
        ended.labels(t.table).set(t.ended_at)
        duration.labels(t.table).set(t.seconds)
        for name, seconds in t.stages.items():
            stage.labels(t.table, name).set(seconds)
        for outcome in ("read", "published", "quarantined", "erased"):
            rows.labels(t.table, outcome).set(t.rows.get(outcome, 0))
        for reason, n in t.quarantined_by_reason.items():
            reasons.labels(t.table, reason).set(n)
        for check, passed in t.checks.items():
            checks.labels(t.table, check).set(1 if passed else 0)
        refused.labels(t.table).set(t.role_tables_refused)
        for (key, version), n in t.encryptions.items():
            sealed.labels(t.table, key, str(version)).set(n)
        for k in t.keys:
            key_version.labels(t.table, k.name).set(k.version)
            key_age.labels(t.table, k.name).set(k.age_seconds)
            if k.rotation_period_seconds is not None:
                key_period.labels(t.table, k.name).set(k.rotation_period_seconds)
            for version, total in k.encryptions_total.items():
                totals.samples.append(((t.table, k.name, str(version)), total))
    return registry


class _KeyTotals(Collector):
    """The keyring's running totals as a counter (a `Counter` would add a `_created` series
    dated at the push, which is not when counting started)."""

    def __init__(self) -> None:
        self.samples: list[tuple[tuple[str, str, str], int]] = []

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "securepipe_key_encryptions",
            "Values encrypted with random nonces under each key version since it was created",
            labels=("table", "key", "key_version"),
        )
        for labels, total in self.samples:
            family.add_metric(labels, total)
        yield family


def push_metrics(
    gateway: str, job: str, tables: Iterable[TableFigures], timeout: float
) -> list[str]:
    """Push each table's metrics; return the tables whose push failed (each logged as a
    warning, never raised).

    The last run's figures replace the group {job, table} as a whole (PUT), so a run that
    stopped early leaves no family of an earlier run behind (a stale gate check, a stage it
    never reached). The time of the last success is in its own group {job, table, push=success}
    that only successful runs replace: a refused or failed run leaves it in place.
    """
    failed = []
    for t in tables:
        try:
            push_to_gateway(
                gateway,
                job=job,
                registry=registry_of([t], last_success=False),
                grouping_key={"table": t.table},
                timeout=timeout,
            )
            if t.state == "ok":
                push_to_gateway(
                    gateway,
                    job=job,
                    registry=registry_of([t], last_run=False),
                    grouping_key={"table": t.table, **SUCCESS_GROUP},
                    timeout=timeout,
                )
        except Exception as exc:  # monitoring must never fail the run
            failed.append(t.table)
            _log.warning(
                "metrics of table %s not pushed to %s: %s (the run itself is unaffected)",
                t.table,
                gateway,
                _reason(exc),
                extra={"event": "metrics_push_failed", "table": t.table},
            )
    return failed


def write_metrics_file(path: str, tables: Iterable[TableFigures]) -> None:
    """The same metrics in the text exposition format, written atomically (textfile collector)."""
    write_to_textfile(path, registry_of(tables))


def _reason(exc: Exception) -> str:
    # urllib's errors quote the URL and the reason; the metrics themselves hold no values.
    return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
