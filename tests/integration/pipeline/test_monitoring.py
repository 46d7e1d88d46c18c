"""Metrics and lineage of real runs: a good night and a refused one push to a real Pushgateway
(scraped and parsed with prometheus_client's parser), write the textfile, and send OpenLineage
START / COMPLETE / FAIL events to an HTTP sink on 127.0.0.1; nothing of the data in any of them."""

from __future__ import annotations

import csv
import json
import logging
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from securepipe.errors import GateFailed, SecurePipeError
from securepipe.io.generate import generate_landing
from securepipe.io.lineage import (
    COMPLIANCE_FACET,
    compliance_facet_schema,
    dataset_id,
    lineage_run_id,
)
from securepipe.layout import Layout
from securepipe.logs import ContextFilter, JsonLines
from securepipe.pipeline import run_nightly
from tests.builders import keep_email, load_cfg, write_config

pytestmark = pytest.mark.spark
DAY1, DAY2, DAY3 = "2026-10-01", "2026-10-02", "2026-10-03"
TABLE = "customers"


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def _scrape(gateway: str) -> str:
    with urllib.request.urlopen(gateway + "/metrics", timeout=10) as response:  # noqa: S310
        return str(response.read().decode())


def _landing_values(landing: str, day: str) -> set[str]:
    values = set()
    for path in (Path(landing) / TABLE / day).glob("*.csv"):
        for row in csv.DictReader(path.open(encoding="utf-8")):
            values |= {row[c] for c in ("email", "full_name", "phone", "city") if row.get(c)}
    return {v for v in values if len(v) >= 5}


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory, pushgateway, lineage_sink) -> dict[str, Any]:
    """Night 1 published, night 2 refused by the leak scan; what the gateway, the textfile and
    the lineage sink held after each."""
    tmp = tmp_path_factory.mktemp("monitoring")
    metrics_file = tmp / "textfile" / "securepipe.prom"
    metrics_file.parent.mkdir()

    def monitored(doc: dict[str, Any]) -> None:
        doc["monitoring"] = {
            "pushgateway": pushgateway,
            "metrics_file": str(metrics_file),
            "job": "securepipe-test",
            "key_rotation_days": 30,
            "lineage": {"transport": "http", "url": lineage_sink.url, "namespace": "test-ns"},
        }

    def monitored_leaky(doc: dict[str, Any]) -> None:
        monitored(doc)
        keep_email(doc)

    lineage_sink.events.clear()
    good = load_cfg(write_config(tmp, monitored))
    generate_landing(good.landing, DAY1, rows=60, seed=3)
    generate_landing(good.landing, DAY2, rows=60, seed=4)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.INFO)
    keep.addFilter(ContextFilter())
    ours = logging.getLogger("securepipe")
    level = ours.level
    ours.setLevel(logging.INFO)
    ours.addHandler(keep)
    try:
        first = run_nightly(spark, good, DAY1, tables=[TABLE])
    finally:
        ours.removeHandler(keep)
        ours.setLevel(level)
    after_first = {
        "gateway": _scrape(pushgateway),
        "file": metrics_file.read_text(),
        "events": list(lineage_sink.events),
    }
    bad = load_cfg(write_config(tmp, monitored_leaky, access=False))
    with pytest.raises(GateFailed) as refused:
        run_nightly(spark, bad, DAY2, tables=[TABLE])
    after_refusal = {
        "gateway": _scrape(pushgateway),
        "file": metrics_file.read_text(),
        "events": list(lineage_sink.events),
    }
    # A night whose landing files never came: the run stops with an error.
    with pytest.raises(SecurePipeError) as failed:
        run_nightly(spark, good, DAY3, tables=[TABLE])
    assert not isinstance(failed.value, GateFailed)
    return {
        "cfg": good,
        "first": first,
        "log_lines": [json.loads(JsonLines().format(r)) for r in records],
        "after_first": after_first,
        "refused": refused.value.result,
        **after_refusal,
        "after_error": {"gateway": _scrape(pushgateway), "events": list(lineage_sink.events)},
        "values": _landing_values(good.landing, DAY1) | _landing_values(good.landing, DAY2),
    }


def test_a_published_night_is_on_the_gateway_with_its_counts(runs) -> None:
    t = runs["first"].tables[0]
    m = _samples(runs["after_first"]["gateway"])
    job = {"job": "securepipe-test", "table": TABLE}
    assert _value(m, "securepipe_last_run_status", securepipe_last_run_status="ok", **job) == 1
    assert (
        _value(m, "securepipe_last_run_status", securepipe_last_run_status="gate_failed", **job)
        == 0
    )
    assert _value(m, "securepipe_last_run_rows", outcome="read", **job) == t.rows_read
    assert _value(m, "securepipe_last_run_rows", outcome="published", **job) == t.rows_published
    assert _value(m, "securepipe_last_run_rows", outcome="quarantined", **job) == (
        t.rows_quarantined
    )
    assert t.rows_quarantined > 0  # the generator plants malformed rows
    for reason, n in t.reasons.items():
        assert _value(m, "securepipe_last_run_quarantined_rows", reason=reason, **job) == n
    assert _value(m, "securepipe_last_run_gate_check_passed", check="leak_scan", **job) == 1
    for stage in t.stages:
        assert _value(m, "securepipe_last_run_stage_duration_seconds", stage=stage, **job) > 0
    success = _value(m, "securepipe_last_success_timestamp_seconds", **job)
    assert success == _value(m, "securepipe_last_run_timestamp_seconds", **job)
    # Keys: the version in use, its age, the configured period (30 days) for a rotatable key
    # and none for an hmac key (which cannot rotate), and the keyring's running totals.
    for name, version in t.key_versions.items():
        assert _value(m, "securepipe_key_version", key=name, **job) == version
    assert _value(m, "securepipe_key_rotation_period_seconds", key="subject_kek", **job) == (
        30 * 86400
    )
    periods = [ls for (n, ls), _ in m.items() if n == "securepipe_key_rotation_period_seconds"]
    assert not [ls for ls in periods if ("key", "subject_index") in ls]
    assert 0 <= _value(m, "securepipe_key_age_seconds", key="subject_kek", **job) < 3600
    for label, n in t.encryptions.items():
        key, _, version = label.rpartition(":v")
        assert (
            _value(m, "securepipe_last_run_encrypted_values", key=key, key_version=version, **job)
            == n
        )
        assert (
            _value(m, "securepipe_key_encryptions_total", key=key, key_version=version, **job) >= n
        )


def test_the_textfile_holds_the_same_figures(runs) -> None:
    t = runs["first"].tables[0]
    m = _samples(runs["after_first"]["file"])
    assert _value(m, "securepipe_last_run_rows", outcome="published", table=TABLE) == (
        t.rows_published
    )
    assert _value(m, "securepipe_last_run_status", securepipe_last_run_status="ok") == 1


def test_a_refused_night_shows_up_and_keeps_the_last_success(runs) -> None:
    before = _samples(runs["after_first"]["gateway"])
    m = _samples(runs["gateway"])
    job = {"job": "securepipe-test", "table": TABLE}
    assert (
        _value(m, "securepipe_last_run_status", securepipe_last_run_status="gate_failed", **job)
        == 1
    )
    assert _value(m, "securepipe_last_run_status", securepipe_last_run_status="ok", **job) == 0
    assert _value(m, "securepipe_last_run_gate_check_passed", check="leak_scan", **job) == 0
    assert _value(m, "securepipe_last_run_rows", outcome="published", **job) == 0
    # The refused run pushed its own time, not a success: the last success is night 1's.
    assert _value(m, "securepipe_last_success_timestamp_seconds", **job) == _value(
        before, "securepipe_last_success_timestamp_seconds", **job
    )
    assert _value(m, "securepipe_last_run_timestamp_seconds", **job) > _value(
        before, "securepipe_last_run_timestamp_seconds", **job
    )


def test_no_landing_value_reaches_metrics_or_lineage(runs) -> None:
    assert len(runs["values"]) > 50
    text = runs["gateway"] + runs["file"] + json.dumps(runs["events"])
    assert not [v for v in runs["values"] if v in text]


def _events(runs: dict[str, Any], run_id: str) -> dict[str, dict[str, Any]]:
    mine = [e for e in runs["events"] if e["run"]["runId"] == lineage_run_id(run_id)]
    return {e["eventType"]: e for e in mine}


def _well_formed(event: dict[str, Any]) -> None:
    """The required fields of an OpenLineage 2-0-2 RunEvent, and every facet's own."""
    assert event["path"] == "/api/v1/lineage"
    for key in ("eventTime", "producer", "schemaURL", "eventType", "run", "job"):
        assert event.get(key), key
    assert event["schemaURL"].startswith("https://openlineage.io/spec/")
    assert event["job"]["namespace"] == "test-ns" and event["job"]["name"] == "nightly"
    facets = [*event["run"].get("facets", {}).values(), *event["job"].get("facets", {}).values()]
    for ds in event.get("inputs", []) + event.get("outputs", []):
        assert ds["namespace"] and ds["name"]
        facets += [*ds.get("facets", {}).values(), *ds.get("outputFacets", {}).values()]
    for facet in facets:
        assert facet["_producer"] and facet["_schemaURL"], facet


def test_a_published_night_sends_start_and_complete_with_versions_and_checksums(runs) -> None:
    first = runs["first"]
    t = first.tables[0]
    events = _events(runs, first.run_id)
    assert set(events) == {"START", "COMPLETE"}
    for event in events.values():
        _well_formed(event)
    complete = events["COMPLETE"]
    inputs = {i["name"]: i for i in complete["inputs"]}
    for f in t.input_files:
        entry = inputs[dataset_id(f["path"])[1]]
        assert entry["facets"]["version"]["datasetVersion"] == f"sha256:{f['sha256']}"
    outputs = {o["name"]: o for o in complete["outputs"]}
    layout = Layout.of(runs["cfg"])
    published = outputs[layout.table(TABLE)]
    assert published["facets"]["version"]["datasetVersion"] == str(t.table_version)
    assert published["outputFacets"]["outputStatistics"]["rowCount"] == t.rows_published
    quarantine = outputs[layout.quarantine(TABLE)]
    assert quarantine["facets"]["version"]["datasetVersion"] == str(t.quarantine_version)
    for role, version in t.access.items():
        assert outputs[layout.access(role, TABLE)]["facets"]["version"]["datasetVersion"] == str(
            version
        )
    # Column lineage: which operator protected each column, masking unless kept as is.
    lineage = published["facets"]["columnLineage"]["fields"]
    email = lineage["email"]["inputFields"][0]
    assert email["field"] == "email" and email["name"] in inputs
    (transformation,) = email["transformations"]
    assert transformation["masking"] is True and "securepipe" in transformation["description"]
    kept = [c for c, spec in runs["cfg"].table(TABLE).columns.items() if spec.protect.op == "keep"]
    assert kept
    assert lineage[kept[0]]["inputFields"][0]["transformations"][0]["masking"] is False
    compliance = complete["run"]["facets"][COMPLIANCE_FACET]
    jsonschema.validate(compliance, compliance_facet_schema())
    assert compliance["runId"] == first.run_id and compliance["status"] == "ok"
    assert compliance["configHash"] == first.config_hash
    assert compliance["gates"][TABLE]["checks"]["leak_scan"] is True


def test_a_refused_night_sends_fail_with_the_verdict_and_no_outputs(runs) -> None:
    refused = runs["refused"]
    events = _events(runs, refused.run_id)
    assert set(events) == {"START", "FAIL"}
    fail = events["FAIL"]
    _well_formed(fail)
    assert fail["outputs"] == []
    assert "leak_scan" in fail["run"]["facets"]["errorMessage"]["message"]
    compliance = fail["run"]["facets"][COMPLIANCE_FACET]
    jsonschema.validate(compliance, compliance_facet_schema())
    assert compliance["status"] == "gate_failed"
    assert compliance["gates"][TABLE]["passed"] is False
    assert compliance["gates"][TABLE]["checks"]["leak_scan"] is False


def test_the_compliance_facet_schema_refuses_a_value_where_counts_belong() -> None:
    facet = {
        "_producer": "urn:securepipe:0",
        "_schemaURL": "urn:securepipe:schema:ComplianceRunFacet.json",
        "runId": "r",
        "runDate": "2026-10-01",
        "status": "ok",
        "configHash": "0" * 64,
        "keyVersions": {"subject_kek": 1},
        "gates": {TABLE: {"passed": True, "failures": [], "warnings": [], "checks": {}}},
    }
    jsonschema.validate(facet, compliance_facet_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**facet, "sample": ["someone@example.com"]}, compliance_facet_schema())


def test_a_night_that_stops_with_an_error_shows_up_as_error_and_fail(runs) -> None:
    m = _samples(runs["after_error"]["gateway"])
    job = {"job": "securepipe-test", "table": TABLE}
    assert _value(m, "securepipe_last_run_status", securepipe_last_run_status="error", **job) == 1
    assert _value(m, "securepipe_last_run_status", securepipe_last_run_status="ok", **job) == 0
    assert _value(m, "securepipe_last_success_timestamp_seconds", **job) == _value(
        _samples(runs["after_first"]["gateway"]), "securepipe_last_success_timestamp_seconds", **job
    )
    fails = [e for e in runs["after_error"]["events"] if e not in runs["events"]]
    assert sorted(e["eventType"] for e in fails) == ["FAIL", "START"]
    fail = next(e for e in fails if e["eventType"] == "FAIL")
    _well_formed(fail)
    assert fail["run"]["facets"][COMPLIANCE_FACET]["status"] == "error"
    assert fail["run"]["facets"]["errorMessage"]["message"]


def test_every_log_line_of_a_run_names_the_run_and_its_stage_lines_the_table(runs) -> None:
    lines = runs["log_lines"]
    stages = [line for line in lines if line.get("event") == "stage"]
    assert len(stages) == 3, lines  # read+protect, gate, publish (no policy given)
    for line in lines:
        assert (line["job"], line["run_id"], line["run_date"]) == (
            "nightly",
            runs["first"].run_id,
            DAY1,
        ), line
    for line in stages:
        assert line["table"] == TABLE
    assert not [v for v in runs["values"] if v in json.dumps(lines)]
