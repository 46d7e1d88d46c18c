"""Metrics and lineage outputs without Spark: a monitoring system that is down, slow or wrong
never fails a run (a warning, within a bounded time), and the configuration's monitoring section
is checked and overridable."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from securepipe.config import LineageConfig
from securepipe.errors import ConfigError
from securepipe.io.lineage import LineageEmitter, dataset_id, lineage_run_id
from securepipe.io.metrics import TableFigures, push_metrics, write_metrics_file
from tests.builders import CONF, load_cfg, write_config

FIGURES = TableFigures(
    table="customers",
    state="gate_failed",
    ended_at=1_800_000_000.0,
    seconds=3.5,
    rows={"read": 10, "published": 0, "quarantined": 0},
    quarantined_by_reason={"DUPLICATE_KEY:customer_id": 0},
    checks={"leak_scan": False},
)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def _closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def test_a_gateway_that_never_answers_is_given_up_after_the_timeout(silent_server, caplog):
    caplog.set_level(logging.WARNING, logger="securepipe")
    started = time.monotonic()
    failed = push_metrics(silent_server, "securepipe", [FIGURES], timeout=0.5)
    elapsed = time.monotonic() - started
    assert failed == ["customers"]
    warning = next(r for r in caplog.records if "not pushed" in r.getMessage())
    assert "timed out" in warning.getMessage().lower()
    # Recorded, not asserted tightly (a noisy machine): the push did not wait without end.
    assert elapsed < 60


def test_a_gateway_that_is_down_is_a_warning(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="securepipe")
    assert push_metrics(_closed_port(), "securepipe", [FIGURES], timeout=2) == ["customers"]
    assert any("the run itself is unaffected" in r.getMessage() for r in caplog.records)


def test_the_textfile_parses_and_names_the_states(tmp_path: Path) -> None:
    path = tmp_path / "securepipe.prom"
    write_metrics_file(str(path), [FIGURES])
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    status = {
        s.labels["securepipe_last_run_status"]: s.value
        for s in families["securepipe_last_run_status"].samples
    }
    assert status == {"ok": 0, "gate_failed": 1, "error": 0}
    # A refused run does not claim a success.
    assert "securepipe_last_success_timestamp_seconds" not in {
        s.name for f in families.values() for s in f.samples
    }
    reasons = families["securepipe_last_run_quarantined_rows"].samples
    assert [(s.labels["reason"], s.value) for s in reasons] == [("DUPLICATE_KEY:customer_id", 0)]


def test_a_lineage_server_that_is_down_is_a_warning(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="securepipe")
    cfg = LineageConfig(transport="http", url=_closed_port(), timeout_seconds=1)
    emitter = LineageEmitter(cfg, "nightly", "2026-10-01_x", "2026-10-01")
    emitter.start()  # does not raise
    assert any("not delivered" in r.getMessage() for r in caplog.records)


def test_a_lineage_file_gets_one_json_line_per_event(tmp_path: Path) -> None:
    import json

    path = tmp_path / "lineage.jsonl"
    emitter = LineageEmitter(
        LineageConfig(transport="file", path=str(path)), "nightly", "r1", "2026-10-01"
    )
    emitter.start()
    emitter.start()
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "START"]
    assert {e["run"]["runId"] for e in events} == {lineage_run_id("r1")}
    assert events[0]["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith("2026-10-01")


def test_dataset_names_follow_openlineage_naming() -> None:
    assert dataset_id("file:/lake/tables/customers") == ("file", "/lake/tables/customers")
    assert dataset_id("/lake/tables/customers") == ("file", "/lake/tables/customers")
    assert dataset_id("s3a://bucket/lake/tables/customers") == (
        "s3://bucket",
        "lake/tables/customers",
    )
    assert lineage_run_id("a") == lineage_run_id("a") != lineage_run_id("b")


def test_the_pushgateway_comes_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SECUREPIPE_PUSHGATEWAY", "http://127.0.0.1:9091")
    assert load_cfg(CONF).monitoring.pushgateway == "http://127.0.0.1:9091"
    monkeypatch.delenv("SECUREPIPE_PUSHGATEWAY")
    assert load_cfg(CONF).monitoring.pushgateway is None


@pytest.mark.parametrize(
    ("lineage", "message"),
    [
        ({"transport": "http"}, "needs a url"),
        ({"transport": "file"}, "needs a path"),
        ({"transport": "kafka", "url": "x"}, "monitoring.lineage.transport"),
    ],
)
def test_a_lineage_section_without_a_destination_is_refused(lineage, message) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_cfg(CONF, monitoring={"lineage": lineage})


def test_monitoring_paths_are_relative_to_the_config_file(tmp_path, monkeypatch) -> None:
    def relative(doc: dict) -> None:
        doc["monitoring"] = {
            "metrics_file": "../metrics/securepipe.prom",
            "lineage": {"transport": "file", "path": "../lineage/events.jsonl"},
        }

    path = write_config(tmp_path, relative)
    monkeypatch.chdir("/")
    cfg = load_cfg(path)
    assert cfg.monitoring.metrics_file == str(tmp_path / "metrics" / "securepipe.prom")
    assert cfg.monitoring.lineage is not None
    assert cfg.monitoring.lineage.path == str(tmp_path / "lineage" / "events.jsonl")


def test_the_lineage_url_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SECUREPIPE_LINEAGE_URL", "http://127.0.0.1:5000")
    lineage = load_cfg(CONF).monitoring.lineage
    assert lineage is not None and (lineage.transport, lineage.url) == (
        "http",
        "http://127.0.0.1:5000",
    )
    monkeypatch.delenv("SECUREPIPE_LINEAGE_URL")
    assert load_cfg(CONF).monitoring.lineage is None


def _gateway_samples(gateway: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(gateway + "/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("job") == "stale-test"
    }


def test_a_run_that_stops_early_leaves_nothing_of_the_last_one_but_its_success(
    pushgateway: str,
) -> None:
    ok = replace(
        FIGURES,
        state="ok",
        ended_at=1_800_000_000.0,
        rows={"read": 10, "published": 10},
        stages={"read_protect": 1.0, "gate": 2.0, "publish": 3.0},
        checks={"leak_scan": True},
    )
    # A run that stopped in its first stage: no gate checks, no later stages.
    error = TableFigures(table="customers", state="error", ended_at=1_800_090_000.0, seconds=1.0)
    assert push_metrics(pushgateway, "stale-test", [ok], timeout=5) == []
    first = _gateway_samples(pushgateway)
    assert any(n == "securepipe_last_run_gate_check_passed" for n, _ in first)
    assert push_metrics(pushgateway, "stale-test", [error], timeout=5) == []
    after = _gateway_samples(pushgateway)
    names = {n for n, _ in after}
    assert "securepipe_last_run_gate_check_passed" not in names
    assert "securepipe_last_run_stage_duration_seconds" not in names
    by_name = {n: (dict(ls), v) for (n, ls), v in after.items() if "status" not in n}
    labels, success = by_name["securepipe_last_success_timestamp_seconds"]
    assert success == ok.ended_at and labels["table"] == "customers"
    assert by_name["securepipe_last_run_timestamp_seconds"][1] == error.ended_at
    states = {
        dict(ls)["securepipe_last_run_status"]: v
        for (n, ls), v in after.items()
        if n == "securepipe_last_run_status"
    }
    assert states == {"ok": 0, "gate_failed": 0, "error": 1}
