"""`securepipe` command line: run | demo | generate | keys | reencrypt | show | audit | maintain |
erase | verify-erasure | access | history.

Exit codes (what schedulers rely on): 0 ok, 2 a compliance gate refused the batch (or
`verify-erasure` found readable values), 1 any other error. Errors print one line on stderr that
names the file, table, column or key at fault and never a data value.

`commands` holds every command's options and names its handler; the handler's module (`run`,
`keys`, `ops`, `tables`, `erasure`, `readonly`) is imported only when that command runs. A
handler loads the configuration (`session.load`), opens one session (`session.spark_session`),
makes one call into `securepipe.pipeline` and prints through `render`; the read-only commands
(`readonly`) read a local Delta log with delta-rs and start no JVM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from securepipe.cli.commands import parser, resolve
from securepipe.errors import SecurePipeError, error_kind
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


def _parser() -> argparse.ArgumentParser:
    return parser(__doc__.splitlines()[0])


def _unexpected(exc: BaseException) -> str:
    if isinstance(exc, ImportError) and exc.name:
        # A missing module is a deployment mistake (--py-files, the executors' Python).
        return f"unexpected {type(exc).__name__}: no module {exc.name!r} on this Python"
    return f"unexpected {error_kind(exc)}"


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
        code: int = resolve(args.handler)(args)
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
