"""The report pages from their Jinja2 templates: every field escaped, nothing shown as `None`,
`{}` or `[]`, the index links runs and shows quarantine reasons over time, the access matrix
shows row filters and key grants. (A real browser opens real pages in tests/e2e/test_jobs.py.)"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from securepipe.access.matrix import matrix_doc
from securepipe.io.reports import (
    refresh_index,
    render_html,
    render_index,
    render_matrix,
    write_report,
)
from tests.builders import CONF, loaded

_TEXT = re.compile(r"<(style)\b.*?</\1>|<[^>]+>", re.S)


def _text(page: str) -> str:
    return _TEXT.sub(" ", page)


def _report(**table: Any) -> dict[str, Any]:
    entry = {
        "table": "customers",
        "status": "published",
        "rows_read": 1204,
        "rows_published": 1200,
        "rows_quarantined": 4,
        "rows_erased": 0,
        "table_version": 7,
        "table_path": "/lake/tables/customers",
        "quarantine_version": None,
        "quarantine_path": "/lake/quarantine/customers",
        "access": {},
        "access_refused": {},
        "key_versions": {"subject_kek": 2},
        "encryptions": {},
        "input_files": [{"path": "file:///landing/c.csv", "bytes": 9000, "sha256": "ab" * 32}],
        "stages": {"read_protect": 2.5, "gate": 1.25},
        "gate": {
            "passed": True,
            "checks": [{"name": "leak_scan", "passed": True, "detail": "", "counts": {}}],
            "expectations": [
                {
                    "gate": "q",
                    "expectation": "expect_column_values_to_not_be_null",
                    "column": None,
                    "action": "fail",
                    "success": True,
                }
            ],
            "failures": [],
            "warnings": [],
        },
        "reasons": {"MALFORMED_RECORD": 3, "UNKNOWN_REGION": 1},
        "risk": {},
        "seconds": 4.0,
    }
    entry.update(table)
    return {
        "run_id": "2026-11-28_x",
        "run_date": "2026-11-28",
        "status": "ok",
        "config_hash": "c" * 64,
        "tables": [entry],
    }


def test_a_run_page_shows_what_its_json_holds_and_never_none_or_braces() -> None:
    page = render_html(_report())
    text = _text(page)
    assert "None" not in text and "{}" not in text and "[]" not in text
    for shown in ("1,204", "v2", "subject_kek", "ab" * 32, "2.50 s", "MALFORMED_RECORD", "9,000"):
        assert shown in text, shown
    assert 'href="../index.html"' in page and 'href="../latest.html"' in page


def test_a_run_page_escapes_every_field() -> None:
    page = render_html(_report(table="<script>alert(1)</script>"))
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_an_older_report_without_newer_fields_still_renders() -> None:
    old = _report()
    for key in ("stages", "input_files", "key_versions", "reasons", "encryptions", "risk"):
        del old["tables"][0][key]
    text = _text(render_html(old))
    assert "None" not in text and "Undefined" not in text and "customers" in text


def test_write_report_writes_the_page_json_and_latest(tmp_path: Path) -> None:
    path = write_report(None, str(tmp_path), _report())
    doc = json.loads(Path(path).read_text())
    assert doc["report_path"] == path and doc["securepipe"]
    latest = (tmp_path / "latest.html").read_text()
    assert "2026-11-28_x" in latest and 'href="index.html"' in latest
    assert (tmp_path / "2026-11-28" / "2026-11-28_x.html").exists()


def _run(run_id: str, started: int, status: str, reasons: dict[str, int] | None) -> dict[str, Any]:
    tables = {"customers": {"reasons": reasons}} if reasons is not None else {"customers": {}}
    return {
        "run_id": run_id,
        "job": "nightly",
        "run_date": f"2026-11-{started:02d}",
        "status": status,
        "started_at": datetime(2026, 11, started, 1, 0),
        "rows_read": 10,
        "rows_published": 6,
        "rows_quarantined": 4,
        "message": None,
        "tables": json.dumps(tables),
    }


def test_the_index_links_runs_with_a_page_and_shows_reasons_over_time() -> None:
    runs = [
        _run("r3", 3, "error", None),
        _run("r2", 2, "ok", {"MALFORMED_RECORD": 2, "UNKNOWN_REGION": 2}),
        _run("r1", 1, "gate_failed", {"MALFORMED_RECORD": 4}),
        {**_run("e1", 1, "ok", None), "job": "erase", "run_date": None},
    ]
    page = render_index(runs)
    assert 'href="2026-11-02/r2.html"' in page and 'href="2026-11-01/r1.html"' in page
    assert "2026-11-03/r3.html" not in page  # an error before the report: no page to link
    text = _text(page)
    assert "None" not in text and "{}" not in text
    # One row per run that recorded reasons, oldest first, a column per reason code.
    over_time = text[text.index("Quarantine reasons over time") :]
    assert re.search(r"2026-11-01\s+r1\s+4\s+0", over_time)
    assert re.search(r"2026-11-02\s+r2\s+2\s+2", over_time)


def test_the_access_matrix_page_shows_row_filters_and_key_grants() -> None:
    cfg, policy = loaded(CONF)
    page = render_matrix(matrix_doc(cfg, policy))
    text = _text(page)
    assert "region = :region" in text and "amount &gt;= 1000" in page
    assert re.search(r"support\s+Customer support[^<]*\s+subject_kek", text)
    assert "None" not in text and "{}" not in text


def test_an_index_that_cannot_be_refreshed_is_a_warning_not_a_failure(tmp_path, caplog) -> None:
    reports = tmp_path / "reports"
    refresh_index(None, str(reports), str(tmp_path / "no-audit-table"))  # type: ignore[arg-type]
    assert "reports index not written" in caplog.text
    assert not (reports / "index.html").exists()


def test_a_failed_refresh_names_the_error_condition_never_its_message(
    tmp_path, caplog, monkeypatch
) -> None:
    class SparkLike(Exception):
        def getCondition(self) -> str:  # PySpark's name
            return "DELTA_TABLE_NOT_FOUND"

    def fail(*_: object) -> None:
        raise SparkLike("value 'Jane Doe' in row 7")

    monkeypatch.setattr("securepipe.io.reports.recent_runs", fail)
    refresh_index(None, str(tmp_path / "reports"), "audit")  # type: ignore[arg-type]
    assert "SparkLike [DELTA_TABLE_NOT_FOUND]" in caplog.text
    assert "Jane" not in caplog.text
