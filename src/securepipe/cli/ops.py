"""`securepipe maintain | reencrypt`: retention and re-encryption, alone on the lakehouse."""

from __future__ import annotations

import argparse

from securepipe.cli.session import exclusive_session, load
from securepipe.pipeline.maintenance import run_maintenance
from securepipe.pipeline.rotation import reencrypt

__all__ = ["maintain", "reencrypt_command"]


def maintain(args: argparse.Namespace) -> int:
    """Retention properties and VACUUM on every table."""
    loaded = load(args)
    with exclusive_session(loaded, "maintain") as spark:
        lines = run_maintenance(spark, loaded.cfg, args.retain_hours, args.allow_below_safety)
    print("\n".join(lines))
    return 0


def reencrypt_command(args: argparse.Namespace) -> int:
    """Rewrite one table under its keys' current versions."""
    loaded = load(args)
    loaded.cfg.table(args.table)
    with exclusive_session(loaded, f"reencrypt {args.table}") as spark:
        commit, versions = reencrypt(spark, loaded.cfg, args.table)
    shown = ", ".join(f"{k} v{v}" for k, v in versions.items())
    print(
        f"{args.table}: re-encrypted {commit.rows_written} rows as version {commit.version} "
        f"({shown})"
    )
    return 0
