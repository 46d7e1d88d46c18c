"""`securepipe` command line: run | demo | generate | keys | reencrypt | show | audit | maintain |
erase | verify-erasure | access | history.

Exit codes (what schedulers rely on): 0 ok, 2 a compliance gate refused the batch (or
`verify-erasure` found readable values), 1 any other error. Errors print one line on stderr that
names the file, table, column or key at fault and never a data value.

One module per command group (`run`, `keys`, `erasure`, `tables`, `ops`); each command loads the
configuration (`session.load`), opens one session (`session.spark_session`), makes one call into
`securepipe.pipeline` and prints through `render`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from securepipe import __version__
from securepipe.cli import erasure, keys, ops, run, tables
from securepipe.cli.session import DEFAULT_CONFIG
from securepipe.errors import SecurePipeError
from securepipe.io import deltalog
from securepipe.logs import ContextFilter, JsonLines, json_logs

__all__ = ["JsonLines", "main"]  # JsonLines: re-exported from securepipe.logs


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs(sys.stderr):
        handler.setFormatter(JsonLines())
    else:
        # On a terminal: short progress lines.
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


_EPILOG = """exit codes:
  0  ok
  2  a compliance gate refused a batch, or a role table's risk gate refused it
     (verify-erasure: values of the subjects are still readable)
  1  any other error (one line on stderr naming the file, table, column or key)

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="securepipe",
        description=__doc__.splitlines()[0],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"securepipe {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=DEFAULT_CONFIG, help="pipeline YAML (%(default)s)")
    common.add_argument("--lakehouse", help="override the lakehouse root")
    common.add_argument("--landing", help="override the landing root")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (run, keys, ops, tables, erasure):
        group.register(sub, common)
    return parser


def _unexpected(exc: BaseException) -> str:
    # Spark and Py4J messages can quote data values: report only the class and the error
    # condition, never the message text.
    condition = getattr(exc, "getCondition", lambda: None)()
    if isinstance(exc, ImportError) and exc.name:
        # A missing module is a deployment mistake (--py-files, the executors' Python).
        return f"unexpected {type(exc).__name__}: no module {exc.name!r} on this Python"
    return f"unexpected {type(exc).__name__}" + (f" [{condition}]" if condition else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `securepipe` and of `jobs/*.py`; returns the process exit code."""
    args = _parser().parse_args(argv)
    _setup_logging()
    code = _run(args)
    if argv is None and deltalog.was_used():
        # delta-rs can abort the interpreter at exit after its work is done ("terminate called
        # without an active exception"): a command that used it ends with its own exit code.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.func(args)
        return code
    except SecurePipeError as exc:
        print(f"securepipe: error: {exc}", file=sys.stderr)
        _json_error(args, exc, exc.exit_code, str(exc))
        return exc.exit_code
    except Exception as exc:
        print(f"securepipe: error: {_unexpected(exc)}", file=sys.stderr)
        _json_error(args, exc, 1, _unexpected(exc))
        if os.environ.get("SECUREPIPE_DEBUG") == "1":  # developers only: may show values
            raise
        return 1


def _json_error(args: argparse.Namespace, exc: BaseException, code: int, message: str) -> None:
    """With `--json`, a failure is a JSON document on stdout too (unless the command already
    printed its result, e.g. a run refused by a gate)."""
    if getattr(args, "json", False) and not getattr(exc, "reported", False):
        status = "gate_failed" if code == 2 else "error"
        print(json.dumps({"status": status, "exit_code": code, "error": message}))


if __name__ == "__main__":
    sys.exit(main())
