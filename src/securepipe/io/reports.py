"""Run reports: one JSON document and one HTML page per run, `latest.html`, an index of runs
(with the quarantine reasons over time, from the audit table) and the access matrix, all
rendered from the Jinja2 templates in `securepipe/resources/templates` (autoescaped). Counts,
verdicts, versions and checksums only: never a data value.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, PackageLoader, Undefined, select_autoescape
from markupsafe import Markup
from pyspark.sql import SparkSession

from securepipe import __version__
from securepipe.errors import error_kind
from securepipe.io.audit import recent_runs

__all__ = [
    "histogram_svg",
    "refresh_index",
    "render_html",
    "render_index",
    "render_matrix",
    "write_index",
    "write_page",
    "write_report",
]

_log = logging.getLogger(__name__)


def write_page(spark: SparkSession | None, uri: str, text: str) -> None:
    """Write a text file to a local path or, through Hadoop's file system, an object store."""
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


def _dates_measured(dates: Any) -> str:
    if dates is None:
        return "—"
    if dates == "all":
        return "every date (full rebuild)"
    return ", ".join(str(d) for d in dates) or "none"


def _risk_html(role: str, figures: dict[str, Any], refused: bool) -> Markup:
    e = html.escape
    m = figures["measured"]
    kept = figures.get("kept")
    rows = [
        ("quasi-identifiers", ", ".join(figures["quasi_identifiers"])),
        ("sensitive", ", ".join(figures["sensitive"]) or "—"),
        ("class size counts", figures["unit"]),
        ("classes within", ", ".join(figures.get("classes_within") or []) or "the whole table"),
        ("dates measured", _dates_measured(figures.get("measured_dates"))),
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
    # Every text above is escaped here: the page's template takes it as markup.
    return Markup(  # noqa: S704
        f"<h4>role {e(role)}: {e(verdict)}</h4><table>{cells}</table>"
        + histogram_svg(m.get("histogram", []), int(figures["k_target"]))
    )


def _dash(value: object) -> object:
    """An absent value as a dash: a page never shows `None`, `{}` or `[]`."""
    empty = isinstance(value, str | dict | list | Undefined) and not value
    return "—" if value is None or empty else value


def _num(value: object) -> object:
    if value is None or isinstance(value, bool | Undefined):
        return _dash(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return value


def _secs(value: object) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) else "—"


def _when(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(_dash(value))


@cache
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("securepipe", "resources/templates"),
        autoescape=select_autoescape(["html"]),
        # Reports of older versions lack newer fields: an absent one renders as a dash.
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(dash=_dash, num=_num, secs=_secs, when=_when)
    env.globals.update(risk_html=_risk_html, version=__version__)
    return env


def render_html(report: Mapping[str, Any], root: str = "../", matrix: bool = False) -> str:
    """The page of one run report; `root` is the path from the page to the reports folder."""
    return _env().get_template("run.html").render(report=report, root=root, matrix=matrix)


def render_index(runs: Sequence[Mapping[str, Any]], matrix: bool = False) -> str:
    """The index of runs (audit rows, newest first) with each table's quarantine reasons over
    time; a run links to its report page when it wrote one (a nightly run that did not fail)."""
    shown = []
    for run in runs:
        linked = run["job"] == "nightly" and run["status"] != "error" and run.get("run_date")
        report = f"{run['run_date']}/{run['run_id']}.html" if linked else None
        shown.append({**run, "report": report})
    return (
        _env()
        .get_template("index.html")
        .render(
            runs=shown, reasons=_reasons_over_time(runs), root="", matrix=matrix, latest=bool(runs)
        )
    )


def _reasons_over_time(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    series: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r["started_at"]):
        tables = run.get("tables")
        doc = json.loads(tables) if isinstance(tables, str) else (tables or {})
        for table, entry in sorted(doc.items()):
            reasons = entry.get("reasons") if isinstance(entry, dict) else None
            if run["job"] != "nightly" or reasons is None:
                continue
            s = series.setdefault(table, {"codes": set(), "runs": []})
            s["codes"].update(reasons)
            s["runs"].append(
                {"run_date": run["run_date"], "run_id": run["run_id"], "counts": reasons}
            )
    for s in series.values():
        s["codes"] = sorted(s["codes"])
    return series


def render_matrix(doc: Mapping[str, Any]) -> str:
    """Who sees what (`access.views.matrix_doc`): the treatment of each column per role, each
    role's row filters and key grants, and the re-identification risk policy of each role
    table."""
    return _env().get_template("matrix.html").render(**doc, root="", matrix=True)


def write_report(spark: SparkSession | None, reports_root: str, report: dict[str, Any]) -> str:
    """Write `<root>/<run_date>/<run_id>.json` and `.html`, and `<root>/latest.html`; returns
    the JSON path."""
    root = reports_root.rstrip("/")
    base = f"{root}/{report['run_date']}/{report['run_id']}"
    report = {**report, "securepipe": __version__, "report_path": base + ".json"}
    matrix = _exists(f"{root}/access-matrix.html")
    write_page(spark, base + ".json", json.dumps(report, indent=2, sort_keys=True, default=str))
    write_page(spark, base + ".html", render_html(report, "../", matrix))
    write_page(spark, f"{root}/latest.html", render_html(report, "", matrix))
    return base + ".json"


def write_index(
    spark: SparkSession | None, reports_root: str, runs: Sequence[Mapping[str, Any]]
) -> str:
    """Write `<root>/index.html` from the audit rows `runs` (newest first); returns its path."""
    root = reports_root.rstrip("/")
    path = f"{root}/index.html"
    write_page(spark, path, render_index(runs, _exists(f"{root}/access-matrix.html")))
    return path


def refresh_index(spark: SparkSession, reports_root: str, audit_path: str) -> None:
    """Rewrite the index from the audit table after a job wrote its audit row (a night, an
    erasure); a failure is logged and never fails the job, whose work is done."""
    try:
        write_index(spark, reports_root, recent_runs(spark, audit_path))
    except Exception as exc:
        _log.warning("reports index not written: %s", error_kind(exc))


def _exists(uri: str) -> bool:
    """Whether a local file exists (an object store's pages just link)."""
    if "://" not in uri or uri.startswith("file://"):
        return Path(uri.removeprefix("file://")).exists()
    return True
