"""`securepipe maintain | reencrypt`: retention and re-encryption, alone on the lakehouse."""

from __future__ import annotations

import argparse

from securepipe.cli.session import load, spark_session
from securepipe.layout import Layout
from securepipe.locks import lakehouse_lock
from securepipe.pipeline.maintenance import run_maintenance
from securepipe.pipeline.rotation import reencrypt

__all__ = ["maintain", "reencrypt_command"]


def maintain(args: argparse.Namespace) -> int:
    """Retention properties and VACUUM on every table."""
    loaded = load(args)
    # The lock before the session, as `erase` does: waiting for a night holds no Spark driver.
    with (
        lakehouse_lock(Layout.of(loaded.cfg), exclusive=True, what="maintain"),
        spark_session(loaded) as spark,
    ):
        lines = run_maintenance(spark, loaded.cfg, args.retain_hours, args.allow_below_safety)
    print("\n".join(lines))
    return 0


def reencrypt_command(args: argparse.Namespace) -> int:
    """Rewrite one table under its keys' current versions."""
    loaded = load(args)
    loaded.cfg.table(args.table)
    with (
        lakehouse_lock(Layout.of(loaded.cfg), exclusive=True, what=f"reencrypt {args.table}"),
        spark_session(loaded) as spark,
    ):
        commit, versions = reencrypt(spark, loaded.cfg, args.table)
    shown = ", ".join(f"{k} v{v}" for k, v in versions.items())
    print(
        f"{args.table}: re-encrypted {commit.rows_written} rows as version {commit.version} "
        f"({shown})"
    )
    return 0
