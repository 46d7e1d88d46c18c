"""`securepipe show | history | audit`: reading what the pipeline wrote.

On a local lakehouse these read the Delta log and files with delta-rs: no JVM, no Spark or Great
Expectations imports, an answer in well under a second. A role's view (`show --role`, which
decrypts what the role is granted) and a lakehouse on an object store go through Spark
(`tables`). These commands need only the lakehouse's location, so they read the configuration
with `load_config` (types and structure), not the whole pipeline check of the other commands.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securepipe.cli import render
from securepipe.cli.commands import resolve
from securepipe.config import PipelineConfig, load_config
from securepipe.io.deltalog import audit_rows, local_table, log_history, table_rows
from securepipe.layout import Layout

__all__ = ["audit", "history", "show"]


def _config(args: argparse.Namespace) -> PipelineConfig:
    if not Path(args.config).exists():
        # Shipped with `spark-submit --files`, or missing: the full load finds it or says so.
        cfg: PipelineConfig = resolve("session:load")(args).cfg
        return cfg
    return load_config(args.config, lakehouse=args.lakehouse, landing=args.landing)


def show(args: argparse.Namespace) -> int:
    """Rows of a table (or of a role's view of it), now or at a version or time."""
    cfg = _config(args)
    cfg.table(args.table)
    local = local_table(Layout.of(cfg).table(args.table))
    if args.role or local is None:
        rows: list[dict[str, Any]] = resolve("tables:show_rows")(args)
    else:
        rows = table_rows(local, args.version, args.as_of, args.limit)
    if args.json:
        for row in rows:
            print(render.row_json(row))
    else:
        print("\n".join(render.row_lines(rows)))
    return 0


def _read(
    args: argparse.Namespace, path: str, local_read: Callable[[str], Any], spark_read: str
) -> Any:
    """`local_read(local path)` by delta-rs, or the Spark handler `spark_read(args, path)`."""
    local = local_table(path)
    return local_read(local) if local is not None else resolve(spark_read)(args, path)


def _print(args: argparse.Namespace, docs: list[dict[str, Any]], lines: list[str]) -> int:
    """JSON lines with `--json`, else the lines for people."""
    if args.json:
        for doc in docs:
            print(json.dumps(doc, sort_keys=True, default=str))
    else:
        print("\n".join(lines))
    return 0


def history(args: argparse.Namespace) -> int:
    """Commits of a table (or its quarantine) with their compliance records."""
    cfg = _config(args)
    cfg.table(args.table)
    layout = Layout.of(cfg)
    path = layout.quarantine(args.table) if args.quarantine else layout.table(args.table)
    entries = _read(args, path, lambda p: log_history(p, args.limit), "tables:history_entries")
    return _print(args, entries, render.history_lines(entries))


def audit(args: argparse.Namespace) -> int:
    """The run log, newest first."""
    path = Layout.of(_config(args)).audit
    rows = _read(args, path, lambda p: audit_rows(p, args.limit), "tables:audit_rows")
    return _print(args, [render.audit_doc(r) for r in rows], render.audit_lines(rows))
