"""`securepipe access matrix`, and the Spark side of `show`, `history` and `audit`: a role's view,
or a lakehouse on an object store (`readonly` reads a local one without a JVM)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from securepipe.access.matrix import matrix_doc
from securepipe.access.views import read_as
from securepipe.cli import render
from securepipe.cli.session import load, spark_session
from securepipe.errors import SecurePipeError
from securepipe.io.audit import read_audit
from securepipe.io.delta import history
from securepipe.io.reports import render_matrix
from securepipe.layout import Layout

__all__ = ["access", "audit_rows", "history_entries", "show_rows"]


def show_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """`show` through Spark: a role's view (decrypting what it is granted) or an object store."""
    loaded = load(args)
    cfg = loaded.cfg
    cfg.table(args.table)
    if args.role and loaded.policy is None:
        raise SecurePipeError(f"no access policy next to {cfg.source_file}: --role needs one")
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
        return [row.asDict() for row in df.limit(args.limit).collect()]


def history_entries(args: argparse.Namespace, path: str) -> list[dict[str, Any]]:
    """`history` of a table on an object store, through Spark."""
    loaded = load(args)
    with spark_session(loaded) as spark:
        return history(spark, path, args.limit)


def audit_rows(args: argparse.Namespace, path: str) -> list[dict[str, Any]]:
    """The audit table on an object store, through Spark, newest run first."""
    loaded = load(args)
    with spark_session(loaded) as spark:
        return [r.asDict() for r in read_audit(spark, path).limit(args.limit).collect()]


def access(args: argparse.Namespace) -> int:
    """Who sees what: the matrix on the console (or as JSON) and as HTML."""
    loaded = load(args)
    if loaded.policy is None:
        raise SecurePipeError(f"no access policy folder next to {loaded.cfg.source_file}")
    doc = matrix_doc(loaded.cfg, loaded.policy)
    out = args.html or f"{Layout.of(loaded.cfg).reports}/access-matrix.html"
    written = "://" not in out
    if written:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(render_matrix(doc), encoding="utf-8")
    if args.json:
        print(json.dumps(doc | {"html": out if written else None}, sort_keys=True, default=str))
        return 0
    lines = render.matrix_lines(doc["columns"], doc["roles"]) + render.grant_lines(doc["grants"])
    print("\n".join(lines + render.risk_lines(doc["risk"])))
    if written:
        print(f"\nwritten: {out} (policy version {doc['policy_version']})")
    return 0
