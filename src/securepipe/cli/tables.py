"""`securepipe show | history | audit | access matrix`: reading what the pipeline wrote."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from securepipe.access.risk import risk_targets
from securepipe.access.views import matrix, read_as
from securepipe.cli import render
from securepipe.cli.session import load, spark_session
from securepipe.errors import SecurePipeError
from securepipe.io.audit import read_audit
from securepipe.io.delta import history
from securepipe.io.deltalog import audit_rows, local_table, log_history
from securepipe.layout import Layout

__all__ = ["register"]


def show(args: argparse.Namespace) -> int:
    """Rows of a table (or of a role's view of it), now or at a version or time."""
    loaded = load(args)
    cfg = loaded.cfg
    cfg.table(args.table)
    if args.role and loaded.policy is None:
        raise SecurePipeError("no access policy: --role needs conf/access/")
    with spark_session(loaded) as spark:
        if args.role and loaded.policy is not None:
            df = read_as(
                spark,
                cfg,
                loaded.policy,
                args.table,
                args.role,
                args.columns,
                args.version,
                args.as_of,
            )
        else:
            reader = spark.read.format("delta")
            if args.version is not None:
                reader = reader.option("versionAsOf", args.version)
            elif args.as_of:
                reader = reader.option("timestampAsOf", args.as_of)
            df = reader.load(Layout.of(cfg).table(args.table))
        for row in df.limit(args.limit).collect():
            print(render.row_json(row.asDict()))
    return 0


def history_command(args: argparse.Namespace) -> int:
    """Commits of a table (or its quarantine) with their compliance records."""
    loaded = load(args)
    loaded.cfg.table(args.table)
    layout = Layout.of(loaded.cfg)
    path = layout.quarantine(args.table) if args.quarantine else layout.table(args.table)
    local = local_table(path)
    if local is not None:  # the Delta log alone, no JVM
        entries = log_history(local, args.limit)
    else:
        with spark_session(loaded) as spark:
            entries = history(spark, path, args.limit)
    for entry in entries:
        print(json.dumps(entry, sort_keys=True))
    return 0


def audit(args: argparse.Namespace) -> int:
    """The run log, newest first."""
    loaded = load(args)
    path = Layout.of(loaded.cfg).audit
    local = local_table(path)
    if local is not None:  # the Delta table read by delta-rs, no JVM
        rows = audit_rows(local, args.limit)
    else:
        with spark_session(loaded) as spark:
            rows = [r.asDict() for r in read_audit(spark, path).limit(args.limit).collect()]
    if args.json:
        for row in rows:
            print(json.dumps(render.audit_doc(row), sort_keys=True, default=str))
    else:
        print("\n".join(render.audit_lines(rows)))
    return 0


def access(args: argparse.Namespace) -> int:
    """Who sees what: the matrix on the console and as HTML."""
    loaded = load(args)
    if loaded.policy is None:
        raise SecurePipeError(f"no access policy folder next to {loaded.cfg.source_file}")
    rows, roles = matrix(loaded.cfg, loaded.policy), list(loaded.policy.roles)
    targets = risk_targets(loaded.policy)
    print("\n".join(render.matrix_lines(rows, roles) + render.risk_lines(targets)))
    out = args.html or f"{Layout.of(loaded.cfg).reports}/access-matrix.html"
    if "://" not in out:
        version = loaded.policy.version()
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(render.matrix_html(rows, roles, version, targets), encoding="utf-8")
        print(f"\nwritten: {out} (policy version {version})")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `show`, `history`, `audit` and `access`."""
    p = sub.add_parser("show", parents=[common], help="rows of a table, now or in the past")
    p.add_argument("table", help="a configured table")
    p.add_argument("--version", type=int, help="Delta version (time travel)")
    p.add_argument("--as-of", help="timestamp (time travel), e.g. '2026-11-28 23:00:00'")
    p.add_argument("--role", help="read the role's table, decrypting what it is granted")
    p.add_argument("--limit", type=int, default=20, help="rows to print (%(default)s)")
    p.set_defaults(func=show, columns=None)

    p = sub.add_parser("history", parents=[common], help="commits and compliance records")
    p.add_argument("table", help="a configured table")
    p.add_argument("--quarantine", action="store_true", help="the table's quarantine instead")
    p.add_argument("--limit", type=int, help="newest commits only")
    p.set_defaults(func=history_command)

    p = sub.add_parser("audit", parents=[common], help="the run log, newest first")
    p.add_argument("--limit", type=int, default=30, help="newest runs (%(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per run")
    p.set_defaults(func=audit)

    p = sub.add_parser("access", parents=[common], help="access policies")
    p.add_argument("action", choices=["matrix"], help="matrix: who sees what, and risk targets")
    p.add_argument("--html", help="where to write the HTML matrix")
    p.set_defaults(func=access)
