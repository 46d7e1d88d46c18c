"""The command line's shape: every command, its options with their help, and the handler that
runs it, named `module:function` (a module of `securepipe.cli`).

A handler's module is imported only when its command runs, so `securepipe --help`,
`--version` and the read-only commands (`history`, `audit`, `show` of a local table) do not
import Spark, the pipeline or Great Expectations (seconds of imports) and answer in well under
a second. This is the one place that imports a command module by name.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from securepipe import __version__

__all__ = ["DEFAULT_CONFIG", "EPILOG", "parser", "resolve"]

DEFAULT_CONFIG = os.environ.get("SECUREPIPE_CONFIG", "conf/pipeline.yaml")

EPILOG = """exit codes:
  0  ok
  2  a compliance gate refused a batch, or a role table's risk gate refused it
     (verify-erasure: values of the subjects are still readable)
  1  any other error (one line on stderr naming the file, table, column or key)

output: commands that print data print lines for people; with --json, JSON on stdout instead
(also when the command fails: {"status": ..., "exit_code": ..., "error": ...}).

environment:
  SECUREPIPE_CONFIG                  default for --config (conf/pipeline.yaml)
  SECUREPIPE_LOG_FORMAT=json         JSON log lines even on a terminal
  SECUREPIPE_LOCK_WAIT               seconds to wait for a lakehouse or run-date lock
  SECUREPIPE_SPARK_AUTH_SECRET       the standalone cluster's shared secret (spark.authenticate)
  SECUREPIPE_SPARK_AUTH_SECRET_FILE  ... or a file holding it
  SECUREPIPE_PKCS11_PIN              the HSM user PIN (keystore.provider: pkcs11)
  SECUREPIPE_PUSHGATEWAY             Prometheus Pushgateway URL (replaces monitoring.pushgateway)
  SECUREPIPE_LINEAGE_URL             OpenLineage HTTP endpoint's base URL (monitoring.lineage)
  SECUREPIPE_DEBUG=1                 tracebacks (development only: may show values)
"""

_METRICS_FILE_HELP = (
    "write each run's metrics to this file (Prometheus text format, for node_exporter's "
    "textfile collector); overrides monitoring.metrics_file"
)
_JSON_HELP = "print JSON on stdout instead of lines (also on failure)"


def resolve(name: str) -> Callable[..., Any]:
    """The function `module:function` of `securepipe.cli`, its module imported now."""
    module, _, function = name.partition(":")
    handler: Callable[..., Any] = getattr(
        importlib.import_module(f"securepipe.cli.{module}"), function
    )
    return handler


def parser(description: str) -> argparse.ArgumentParser:
    """The `securepipe` argument parser; each command sets `handler` (`module:function`)."""
    top = argparse.ArgumentParser(
        prog="securepipe",
        description=description,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"securepipe {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=DEFAULT_CONFIG, help="pipeline YAML (%(default)s; SECUREPIPE_CONFIG)"
    )
    common.add_argument("--lakehouse", help="override the lakehouse root")
    common.add_argument("--landing", help="override the landing root")
    data = argparse.ArgumentParser(add_help=False, parents=[common])
    data.add_argument("--json", action="store_true", help=_JSON_HELP)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _runs(sub, common, data)
    _keys(sub, data)
    _operations(sub, common)
    _tables(sub, data)
    _erasure(sub, data)
    return top


def _add(
    sub: argparse._SubParsersAction, name: str, handler: str, help: str, *parents: Any
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, parents=list(parents), help=help)
    p.set_defaults(handler=handler)
    return p


def _runs(sub: argparse._SubParsersAction, common: Any, data: Any) -> None:
    p = _add(sub, "run", "run:run", "run the nightly job for one date", data)
    p.add_argument("--date", help="run date YYYY-MM-DD")
    p.add_argument("--from", dest="date_from", help="backfill: first date")
    p.add_argument("--to", dest="date_to", help="backfill: last date (inclusive)")
    p.add_argument(
        "--force",
        action="store_true",
        help="backfill: re-run dates already published from the same inputs",
    )
    p.add_argument("--tables", help="comma-separated subset of tables")
    p.add_argument("--metrics-file", help=_METRICS_FILE_HELP)

    yesterday = (date.today() - timedelta(days=1)).isoformat()
    p = _add(sub, "demo", "run:demo", "generate a synthetic batch and run it", common)
    p.add_argument("--date", default=yesterday, help="the second night (default: yesterday)")
    p.add_argument("--rows", type=int, default=10_000, help="rows per table and night")
    p.add_argument("--metrics-file", help=_METRICS_FILE_HELP)

    p = _add(sub, "generate", "run:generate", "write a synthetic landing batch")
    p.add_argument("--landing", default="./landing", help="landing root (%(default)s)")
    p.add_argument("--date", default=yesterday, help="run date (default: yesterday)")
    p.add_argument("--rows", type=int, default=10_000, help="rows per table (%(default)s)")
    p.add_argument("--seed", type=int, default=42, help="random seed (%(default)s)")


def _keys(sub: argparse._SubParsersAction, data: Any) -> None:
    p = _add(sub, "keys", "keys:keys", "manage data keys", data)
    p.add_argument(
        "action",
        choices=["init", "list", "rotate", "rewrap", "destroy", "seal"],
        help="init: create the master key and data keys; list; rotate NAME; rewrap --to CONFIG; "
        "destroy NAME --version N; seal a keyring written before keyrings were sealed",
    )
    p.add_argument("name", nargs="?", help="key to rotate or destroy")
    p.add_argument("--to", help="rewrap: a config whose keystore: names the new KEK")
    p.add_argument("--version", type=int, help="destroy: the version to destroy")


def _operations(sub: argparse._SubParsersAction, common: Any) -> None:
    p = _add(sub, "maintain", "ops:maintain", "OPTIMIZE, VACUUM and log retention", common)
    p.add_argument("--retain-hours", type=int, help="override retention.vacuum_hours")
    p.add_argument(
        "--allow-below-safety",
        action="store_true",
        help="with retention.allow_below_safety: permit < 168 h",
    )
    p = _add(
        sub,
        "reencrypt",
        "ops:reencrypt_command",
        "rewrite a table under the newest key versions",
        common,
    )
    p.add_argument("table", help="a configured table")


def _tables(sub: argparse._SubParsersAction, data: Any) -> None:
    p = _add(sub, "show", "readonly:show", "rows of a table, now or in the past", data)
    p.add_argument("table", help="a configured table")
    p.add_argument("--version", type=int, help="Delta version (time travel)")
    p.add_argument("--as-of", help="timestamp (time travel), e.g. '2026-11-28 23:00:00'")
    p.add_argument("--role", help="read the role's table, decrypting what it is granted")
    p.add_argument("--limit", type=int, default=20, help="rows to print (%(default)s)")
    p.set_defaults(columns=None)

    p = _add(sub, "history", "readonly:history", "commits and compliance records", data)
    p.add_argument("table", help="a configured table")
    p.add_argument("--quarantine", action="store_true", help="the table's quarantine instead")
    p.add_argument("--limit", type=int, help="newest commits only")

    p = _add(sub, "audit", "readonly:audit", "the run log, newest first", data)
    p.add_argument("--limit", type=int, default=30, help="newest runs (%(default)s)")

    p = _add(sub, "access", "tables:access", "access policies", data)
    p.add_argument("action", choices=["matrix"], help="matrix: who sees what, and risk targets")
    p.add_argument("--html", help="where to write the HTML matrix")


def _erasure(sub: argparse._SubParsersAction, data: Any) -> None:
    p = _add(sub, "erase", "erasure:erase_command", "erase data subjects (crypto-shred)", data)
    p.add_argument("--subjects", required=True, help="file with one subject id per line")
    p.add_argument("--reason", help="recorded in the audit log (no personal data)")
    p.add_argument(
        "--purge",
        action="store_true",
        help=(
            "also remove now, whatever the retention, the files that older versions read and "
            "that hold the subjects' rows (time travel to those versions ends)"
        ),
    )

    p = _add(
        sub,
        "verify-erasure",
        "erasure:verify_command",
        "prove no past version holds readable values of subjects",
        data,
    )
    p.add_argument("--subjects", required=True, help="file of subject ids, one per line")
