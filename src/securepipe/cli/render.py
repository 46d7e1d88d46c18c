"""Everything the CLI prints or writes for people: run summaries, tables, the HTML matrix."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the read-only commands import this module without them
    from securepipe.config import PipelineConfig
    from securepipe.crypto.keyring import Keyring
    from securepipe.pipeline.results import RunResult

__all__ = [
    "audit_lines",
    "display",
    "grant_lines",
    "history_lines",
    "keys_lines",
    "matrix_lines",
    "risk_line",
    "risk_lines",
    "row_json",
    "row_lines",
    "run_summary",
    "verify_lines",
]


def run_summary(result: RunResult, cfg: PipelineConfig) -> str:
    """The console summary of one nightly run: counts, versions and where outputs are."""
    out = [
        f"\nsecurepipe run {result.run_id} (run date {result.run_date})",
        f"{'table':<14}{'read':>10}{'published':>11}{'quarantined':>13}{'version':>9}  status",
    ]
    for t in result.tables:
        out.append(
            f"{t.table:<14}{t.rows_read:>10}{t.rows_published:>11}{t.rows_quarantined:>13}"
            f"{t.table_version:>9}  {t.status}"
        )
    out.append("\noutputs:")
    for t in result.tables:
        out.append(f"  {t.table:<14} {t.table_path}   (quarantine: {t.quarantine_path})")
        for role, version in t.access.items():
            line = f"  {'':<14} role {role}: access/{role}/{t.table} version {version}"
            if role in t.access_refused:
                line += "  NOT WRITTEN: re-identification risk above its policy"
            elif role in t.risk:
                line += "  " + risk_line(t.risk[role])
            out.append(line)
    out.append(f"  report         {result.report_path}")
    out.append(
        f"  key store      {cfg.keystore.path} (master key: keep it safe, never in the lakehouse)"
    )
    return "\n".join(out)


def risk_line(figures: Mapping[str, Any]) -> str:
    """One role table's risk figures in a few words: k and l against their targets, and what
    was suppressed."""
    m = figures.get("kept") or figures["measured"]
    text = f"k={m['k'] if m['k'] is not None else '-'} (target {figures['k_target']})"
    for column, value in (m.get("l") or {}).items():
        text += f", l({column})={value if value is not None else '-'}"
    if figures.get("l_target"):
        text += f" (target {figures['l_target']})"
    if figures.get("suppressed_rows"):
        text += f", {figures['suppressed_rows']} rows suppressed"
    elif not figures.get("passed", True):
        text += f", BELOW TARGET ({figures['action']})"
    return text


def keys_lines(keyring: Keyring) -> list[str]:
    """One line per key: type, current version, versions with dates, destroyed versions."""
    lines = []
    for key in keyring.describe():
        versions = ", ".join(f"v{v} {created}" for v, created in key["versions"].items())
        destroyed = ", ".join(f"v{v}" for v in key["destroyed"])
        lines.append(
            f"{key['name']:<16}{key['type']:<6} current v{key['current']}  ({versions})"
            + (f"  destroyed: {destroyed}" if destroyed else "")
        )
    return lines


def matrix_lines(rows: list[dict[str, Any]], roles: list[str]) -> list[str]:
    """The access matrix as text: one line per column, one cell per role."""
    width = max(len(f"{r['table']}.{r['column']}") for r in rows) + 2
    lines = [f"{'column':<{width}}{'class':<14}" + "".join(f"{r:<22}" for r in roles)]
    for r in rows:
        cells = "".join(f"{(r[role] or '-'):<22}" for role in roles)
        lines.append(f"{r['table'] + '.' + r['column']:<{width}}{r['classification']:<14}{cells}")
    return lines


def risk_lines(targets: list[dict[str, Any]]) -> list[str]:
    """The re-identification risk policy of each role table (k, l, action, columns)."""
    if not targets:
        return []
    lines = ["", "re-identification risk (per role table):"]
    for t in targets:
        lines.append(
            f"  {t['role']}/{t['table']}: k>={t['k']}"
            + (f", l>={t['l']}" if t["l"] else "")
            + f", action {t['action']}; quasi-identifiers {', '.join(t['quasi_identifiers'])}"
            + (f"; sensitive {', '.join(t['sensitive'])}" if t["sensitive"] else "")
        )
    return lines


def grant_lines(grants: list[dict[str, Any]]) -> list[str]:
    """Each role's key grants and row filters."""
    lines = ["", "row filters and key grants (per role):"]
    for g in grants:
        keys = ", ".join(g["keys"]) or "no key"
        lines.append(f"  {g['role']}: may decrypt with {keys}")
        for table, rows in sorted(g["row_filters"].items()):
            lines.append(f"    {table}: rows where {rows}")
    return lines


def display(value: object) -> object:
    """A cell for `show`: envelopes and binaries by size and key version, never their bytes."""
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        if len(data) > 5 and data[0] == 1:
            return f"<envelope v{int.from_bytes(data[1:5], 'big')}, {len(data)} bytes>"
        return f"<binary, {len(data)} bytes>"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def row_json(row: Mapping[str, object]) -> str:
    """One row of `show` as a JSON line."""
    return json.dumps({k: display(v) for k, v in row.items()}, ensure_ascii=False)


_CELL = 40


def row_lines(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """Rows of `show` as a table (cells as `display` shows them, cut at 40 characters)."""
    if not rows:
        return ["(no rows)"]
    columns = list(rows[0])
    cells = [[_cell(display(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join
    return [
        line(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
        line("-" * w for w in widths),
        *(line(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells),
        f"({len(rows)} rows)",
    ]


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


_HISTORY_FACTS = ("kind", "run_date", "rows_published", "rows_quarantined", "rows_erased", "run_id")


def history_lines(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """`history` for people: one line per commit (version, time, operation, and the compliance
    record's run, date, status and rows when the commit has one)."""
    lines = [f"{'version':>7}  {'committed':<28}{'operation':<20}record"]
    for e in entries:
        record = e.get("record") or {}
        facts = [
            f"{k}={record[k]}"
            for k in (
                "kind",
                "run_date",
                "rows_published",
                "rows_quarantined",
                "rows_erased",
                "run_id",
            )
            if isinstance(record, Mapping) and record.get(k) is not None
        ]
        lines.append(
            f"{e['version']:>7}  {e['timestamp']:<28}{e['operation']:<20}{' '.join(facts)}"
        )
    return lines


_AUDIT_JSON_COLUMNS = ("tables", "input_checksums", "key_versions")


def audit_doc(row: Mapping[str, Any]) -> dict[str, Any]:
    """One audit row as a JSON-ready document (its JSON columns parsed)."""
    doc = dict(row)
    for column in _AUDIT_JSON_COLUMNS:
        if isinstance(doc.get(column), str):
            doc[column] = json.loads(doc[column])
    return doc


def audit_lines(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The audit log as a table, newest first; messages cut at 200 characters."""
    lines = [
        f"{'started (UTC)':<21}{'job':<11}{'run date':<12}{'status':<13}{'read':>9}"
        f"{'published':>11}{'quarant.':>10}  run id"
    ]
    for r in rows:
        lines.append(
            f"{r['started_at']:%Y-%m-%d %H:%M:%S}  {r['job']:<11}{r['run_date'] or '':<12}"
            f"{r['status']:<13}{r['rows_read'] or 0:>9}{r['rows_published'] or 0:>11}"
            f"{r['rows_quarantined'] or 0:>10}  {r['run_id']}"
        )
        if r["message"]:
            lines.append(f"{'':<21}{r['message'][:200]}")
    return lines


def verify_lines(report: Mapping[str, Any]) -> tuple[list[str], str]:
    """Per column what is left of the subjects (for stderr), and the verdict line."""
    lines = []
    for name, entry in sorted(report["tables"].items()):
        if "rows" in entry:
            lines.append(f"  {name}: {entry['rows']['rows']} rows: {entry['rows']['status']}")
        if "log" in entry:
            lines.append(f"  {name}: {entry['log']['status']}")
        if "unattributed" in entry:
            lines.append(f"  {name}: {entry['unattributed']['status']}")
        for column, col in sorted(entry["columns"].items()):
            until = col.get("removable_after")
            until = f" (removable after {until})" if until else ""
            versions = col.get("versions") or []
            where = f" in versions {min(versions)}-{max(versions)}" if versions else ""
            lines.append(
                f"  {name}.{column}: {col['values']} values{where}: {col['status']}{until}"
            )
    if report["erased"]:
        return lines, (
            f"verified: every file of {report['tables_checked']} tables read, "
            f"{report['values_found']} stored values of these subjects, none readable"
        )
    reasons = []
    pending = [n for n, e in sorted(report["tables"].items()) if "rows" in e or "log" in e]
    if pending:
        reasons.append(
            f"pending: rows or ids of these subjects are still on storage in {', '.join(pending)}"
        )
    if report["values_readable"]:
        reasons.append(f"{report['values_readable']} values of these subjects can still be read")
    if report.get("subject_keys_live"):
        reasons.append(f"{report['subject_keys_live']} subjects still have a key")
    if report.get("tombstoned", 0) < report["subjects"]:
        reasons.append(
            f"{report['subjects'] - report.get('tombstoned', 0)} subjects have no tombstone "
            "(not erased: they would be published again)"
        )
    if report["errors"]:
        reasons.append(f"{len(report['errors'])} tables could not be read")
    return lines, f"securepipe: error: not erased: {'; '.join(reasons)}"
