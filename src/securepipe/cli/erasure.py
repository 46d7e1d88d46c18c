"""`securepipe erase | verify-erasure`: crypto-shredding of data subjects, and its proof."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from securepipe.cli import render
from securepipe.cli.session import load, spark_session
from securepipe.errors import SecurePipeError
from securepipe.pipeline.erasure import erase, verify

__all__ = ["register"]


def _subjects(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SecurePipeError(f"cannot read subjects file {path} ({exc.strerror})") from None
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def erase_command(args: argparse.Namespace) -> int:
    """Erase the subjects listed in `--subjects` (audited)."""
    loaded, ids = load(args), _subjects(args.subjects)
    with spark_session(loaded) as spark:
        run_id, result = erase(spark, loaded.cfg, ids, loaded.policy, args.reason)
    print(
        f"erased {result.keys_destroyed} of {result.requested} subjects "
        f"({result.unknown} unknown: nothing to erase, tombstoned all the same); "
        f"rows deleted: {result.rows_deleted}"
    )
    print(
        f"audit run id {run_id}; prove it with: securepipe verify-erasure --subjects "
        f"{args.subjects}"
    )
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """The JSON report on stdout, per-column lines on stderr; exit 2 when not erased."""
    loaded, ids = load(args), _subjects(args.subjects)
    with spark_session(loaded) as spark:
        report = verify(spark, loaded.cfg, ids, loaded.policy)
    print(json.dumps(report, indent=2, default=str))
    lines, verdict = render.verify_lines(report)
    for line in lines:
        print(line, file=sys.stderr)
    print(verdict, file=sys.stdout if report["erased"] else sys.stderr)
    return 0 if report["erased"] else 2


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `erase` and `verify-erasure`."""
    p = sub.add_parser("erase", parents=[common], help="erase data subjects (crypto-shred)")
    p.add_argument("--subjects", required=True, help="file with one subject id per line")
    p.add_argument("--reason", help="recorded in the audit log (no personal data)")
    p.set_defaults(func=erase_command)

    p = sub.add_parser(
        "verify-erasure",
        parents=[common],
        help="prove no past version holds readable values of subjects",
    )
    p.add_argument("--subjects", required=True, help="file of subject ids, one per line")
    p.set_defaults(func=verify_command)
