"""`securepipe maintain | reencrypt`: retention and re-encryption, alone on the lakehouse."""

from __future__ import annotations

import argparse

from securepipe.cli.session import load, spark_session
from securepipe.pipeline.maintenance import run_maintenance
from securepipe.pipeline.rotation import reencrypt

__all__ = ["register"]


def maintain(args: argparse.Namespace) -> int:
    """Retention properties and VACUUM on every table."""
    loaded = load(args)
    with spark_session(loaded) as spark:
        lines = run_maintenance(spark, loaded.cfg, args.retain_hours, args.allow_below_safety)
    print("\n".join(lines))
    return 0


def reencrypt_command(args: argparse.Namespace) -> int:
    """Rewrite one table under its keys' current versions."""
    loaded = load(args)
    loaded.cfg.table(args.table)
    with spark_session(loaded) as spark:
        commit, versions = reencrypt(spark, loaded.cfg, args.table)
    shown = ", ".join(f"{k} v{v}" for k, v in versions.items())
    print(
        f"{args.table}: re-encrypted {commit.rows_written} rows as version {commit.version} "
        f"({shown})"
    )
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `maintain` and `reencrypt`."""
    p = sub.add_parser("maintain", parents=[common], help="VACUUM and log retention")
    p.add_argument("--retain-hours", type=int, help="override retention.vacuum_hours")
    p.add_argument(
        "--allow-below-safety",
        action="store_true",
        help="with retention.allow_below_safety: permit < 168 h",
    )
    p.set_defaults(func=maintain)

    p = sub.add_parser(
        "reencrypt", parents=[common], help="rewrite a table under the newest key versions"
    )
    p.add_argument("table", help="a configured table")
    p.set_defaults(func=reencrypt_command)
