"""Run reports: one JSON document and one readable HTML page per run, never a data value."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

__all__ = ["render_html", "write_report"]


def _write_text(spark: SparkSession | None, uri: str, text: str) -> None:
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if spark is None:
        raise ValueError(f"writing {uri} needs a Spark session")
    jvm: Any = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(uri)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page of a run report (every field escaped)."""
    e = html.escape
    rows = []
    for t in report.get("tables", []):
        verdict = t.get("gate", {})
        status = "PASS" if verdict.get("passed", True) else "FAIL"
        rows.append(
            f"<tr><td>{e(str(t['table']))}</td><td>{t.get('rows_read', '')}</td>"
            f"<td>{t.get('rows_published', '')}</td><td>{t.get('rows_quarantined', '')}</td>"
            f"<td class='{status.lower()}'>{status}</td>"
            f"<td>{e(', '.join(verdict.get('failures', [])))}</td>"
            f"<td>{e(', '.join(verdict.get('warnings', [])))}</td></tr>"
        )
    details = []
    for t in report.get("tables", []):
        verdict = t.get("gate", {})
        items = [
            f"<li>{e(c['name'])}: {'pass' if c['passed'] else 'FAIL'} {e(c.get('detail', ''))} "
            f"{e(json.dumps(c.get('counts', {}), sort_keys=True))}</li>"
            for c in verdict.get("checks", [])
        ]
        items += [
            f"<li>{e(x['gate'])} / {e(x['expectation'])}"
            f"{' (' + e(str(x['column'])) + ')' if x.get('column') else ''} [{e(x['action'])}]: "
            f"{'pass' if x['success'] else 'FAIL'}"
            f"{' — ' + str(x['unexpected_count']) + ' rows' if 'unexpected_count' in x else ''}"
            "</li>"
            for x in verdict.get("expectations", [])
        ]
        reasons = t.get("reasons", {})
        if reasons:
            items.append(f"<li>quarantine reasons: {e(json.dumps(reasons, sort_keys=True))}</li>")
        details.append(f"<h2>{e(str(t['table']))}</h2><ul>{''.join(items)}</ul>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>securepipe run {e(report['run_id'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;"
        "border-bottom:1px solid #ddd}.pass{color:#070}.fail{color:#b00;font-weight:bold}</style>"
        "</head><body>"
        f"<h1>securepipe run {e(report['run_id'])}</h1>"
        f"<p>run date {e(report['run_date'])} · status <b>{e(report['status'])}</b> · "
        f"config {e(report['config_hash'][:12])}</p>"
        "<table><tr><th>table</th><th>read</th><th>published</th><th>quarantined</th>"
        "<th>gate</th><th>failures</th><th>warnings</th></tr>"
        + "".join(rows)
        + "</table>"
        + "".join(details)
        + "</body></html>"
    )


def write_report(spark: SparkSession | None, reports_root: str, report: dict[str, Any]) -> str:
    """Write `<root>/<run_date>/<run_id>.json` and `.html`; returns the JSON path."""
    base = f"{reports_root.rstrip('/')}/{report['run_date']}/{report['run_id']}"
    _write_text(spark, base + ".json", json.dumps(report, indent=2, sort_keys=True, default=str))
    _write_text(spark, base + ".html", render_html(report))
    return base + ".json"
