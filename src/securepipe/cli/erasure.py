"""`securepipe erase | verify-erasure`: crypto-shredding of data subjects, and its proof."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from securepipe.cli import render
from securepipe.cli.session import exclusive_session, load, spark_session
from securepipe.errors import SecurePipeError
from securepipe.pipeline.erasure import erase, verify

__all__ = ["erase_command", "verify_command"]


def _subjects(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SecurePipeError(f"cannot read subjects file {path} ({exc.strerror})") from None
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def erase_command(args: argparse.Namespace) -> int:
    """Erase the subjects listed in `--subjects` (audited)."""
    loaded, ids = load(args), _subjects(args.subjects)
    with exclusive_session(loaded, "erase") as spark:
        run_id, result = erase(spark, loaded.cfg, ids, loaded.policy, args.reason, purge=args.purge)
    if args.json:
        print(json.dumps({"run_id": run_id, **dataclasses.asdict(result)}, sort_keys=True))
        return 0
    print(
        f"erased {result.keys_destroyed} of {result.requested} subjects "
        f"({result.unknown} unknown: nothing to erase, tombstoned all the same); "
        f"rows deleted: {result.rows_deleted}"
    )
    if args.purge:
        print(f"files purged (older versions that read them are gone): {result.files_purged}")
        for blocked in result.purge_blocked:
            print(f"  not purged: {blocked}", file=sys.stderr)
    else:
        print(
            "older versions still read their rows until VACUUM (`securepipe maintain`); "
            "`erase --purge` removes those files now"
        )
    print(
        f"audit run id {run_id}; prove it with: securepipe verify-erasure --subjects "
        f"{args.subjects}"
    )
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """What is left of the subjects, per table and column, and the verdict (lines, or the report
    with `--json`); exit 2 when not erased, its reasons on stderr."""
    loaded, ids = load(args), _subjects(args.subjects)
    with spark_session(loaded) as spark:
        report = verify(spark, loaded.cfg, ids, loaded.policy)
    lines, verdict = render.verify_lines(report)
    if args.json:
        print(json.dumps(report, sort_keys=True, default=str))
    else:
        print("\n".join(lines))
    if report["erased"]:
        if not args.json:
            print(verdict)
        return 0
    print(verdict, file=sys.stderr)
    return 2
