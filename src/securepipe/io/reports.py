"""Run reports: one JSON document and one readable HTML page per run, never a data value."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

__all__ = ["histogram_svg", "render_html", "write_report"]


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
        risk = "".join(
            _risk_html(role, figures, role in t.get("access_refused", {}))
            for role, figures in sorted(t.get("risk", {}).items())
        )
        risk += "".join(
            f"<p class='fail'>role {e(role)}: not written: {e(message)}</p>"
            for role, message in sorted(t.get("access_refused", {}).items())
        )
        if risk:
            risk = f"<h3>Re-identification risk of the role tables</h3>{risk}"
        details.append(f"<h2>{e(str(t['table']))}</h2><ul>{''.join(items)}</ul>{risk}")
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


def histogram_svg(histogram: list[dict[str, Any]], k_target: int) -> str:
    """Equivalence classes by size as an inline SVG bar chart (bars of sizes below the k target
    in red), with the count above each bar: counts only, never a value."""
    bars = histogram
    if not bars:
        return ""
    width, height, pad = 44, 120, 24
    top = max((int(b["classes"]) for b in bars), default=0) or 1
    parts = []
    for i, b in enumerate(bars):
        n = int(b["classes"])
        h = round(height * n / top)
        x, y = pad + i * width, pad + height - h
        low = str(b["size"]).split("-")[0].rstrip("+")
        colour = "#c33" if low.isdigit() and int(low) < k_target else "#48a"
        parts.append(
            f"<rect x='{x}' y='{y}' width='{width - 6}' height='{h}' fill='{colour}'/>"
            f"<text x='{x + (width - 6) / 2}' y='{y - 4}' font-size='10' "
            f"text-anchor='middle'>{n}</text>"
            f"<text x='{x + (width - 6) / 2}' y='{pad + height + 14}' font-size='10' "
            f"text-anchor='middle'>{html.escape(str(b['size']))}</text>"
        )
    total_w = pad * 2 + width * len(bars)
    total_h = pad * 2 + height + 10
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' role='img' width='{total_w}' "
        f"height='{total_h}'><title>equivalence classes by size (red: below k={k_target})"
        f"</title>{''.join(parts)}<text x='{pad}' y='{total_h - 2}' font-size='10'>"
        "class size</text></svg>"
    )


def _risk_html(role: str, figures: dict[str, Any], refused: bool) -> str:
    e = html.escape
    m = figures["measured"]
    kept = figures.get("kept")
    rows = [
        ("quasi-identifiers", ", ".join(figures["quasi_identifiers"])),
        ("sensitive", ", ".join(figures["sensitive"]) or "—"),
        ("class size counts", figures["unit"]),
        (
            "policy",
            f"k ≥ {figures['k_target']}"
            + (f", l ≥ {figures['l_target']}" if figures.get("l_target") else "")
            + f", action {figures['action']}",
        ),
        ("rows, classes", f"{m['rows']}, {m['classes']}"),
        ("k (smallest class)", "—" if m["k"] is None else str(m["k"])),
        (
            "l (fewest distinct sensitive values)",
            ", ".join(f"{c}: {'—' if v is None else v}" for c, v in (m.get("l") or {}).items())
            or "—",
        ),
        ("rows in classes below k", f"{m['rows_below_k']} ({m['share_below_k']:.1%})"),
        (
            "prosecutor risk, max / average",
            f"{m['prosecutor_risk_max']:.4f} / {m['prosecutor_risk_avg']:.4f}",
        ),
    ]
    if kept is not None:
        rows.append(("suppressed rows", str(figures.get("suppressed_rows", 0))))
        rows.append(
            ("published: k, rows", f"{kept['k'] if kept['k'] is not None else '—'}, {kept['rows']}")
        )
    verdict = "refused" if refused else ("pass" if figures["passed"] else figures["action"])
    cells = "".join(f"<tr><th>{e(a)}</th><td>{e(b)}</td></tr>" for a, b in rows)
    return f"<h4>role {e(role)}: {e(verdict)}</h4><table>{cells}</table>" + histogram_svg(
        m.get("histogram", []), int(figures["k_target"])
    )


def write_report(spark: SparkSession | None, reports_root: str, report: dict[str, Any]) -> str:
    """Write `<root>/<run_date>/<run_id>.json` and `.html`; returns the JSON path."""
    base = f"{reports_root.rstrip('/')}/{report['run_date']}/{report['run_id']}"
    _write_text(spark, base + ".json", json.dumps(report, indent=2, sort_keys=True, default=str))
    _write_text(spark, base + ".html", render_html(report))
    return base + ".json"
