"""`securepipe run | demo | generate`: the nightly job, a backfill, a synthetic demo."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date, timedelta

from securepipe.cli import render
from securepipe.cli.session import load, spark_session
from securepipe.config import PipelineConfig
from securepipe.crypto.keyring import Keyring
from securepipe.errors import GateFailed, SecurePipeError
from securepipe.io.generate import generate_landing
from securepipe.pipeline import parse_run_date, run_nightly
from securepipe.pipeline.nightly import RunResult

__all__ = ["demo", "generate", "run"]

_log = logging.getLogger("securepipe")


def _dates(args: argparse.Namespace) -> tuple[list[str], bool]:
    """The run dates, and whether unchanged dates are skipped (backfills without --force)."""
    if args.date:
        return [parse_run_date(args.date)], False
    if not (args.date_from and args.date_to):
        raise SecurePipeError("give --date D, or --from D1 --to D2 for a backfill")
    first = date.fromisoformat(parse_run_date(args.date_from))
    last = date.fromisoformat(parse_run_date(args.date_to))
    if last < first:
        raise SecurePipeError(f"--from {first} is after --to {last}")
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return days, not args.force


def run(args: argparse.Namespace) -> int:
    """One date, or a date range (backfill)."""
    loaded = load(args)
    dates, skip = _dates(args)
    tables = args.tables.split(",") if args.tables else None
    for name in tables or ():
        loaded.cfg.table(name)
    Keyring(loaded.cfg.keystore)  # no master key: refuse before Spark starts (names the path)
    with spark_session(loaded) as spark:
        for day in dates:
            try:
                result = run_nightly(
                    spark,
                    loaded.cfg,
                    day,
                    tables=tables,
                    policy=loaded.policy,
                    skip_unchanged=skip,
                )
            except GateFailed as exc:
                # A refused run still has its counts, verdicts and versions: print them too.
                if isinstance(exc.result, RunResult):
                    _print(args, exc.result, loaded.cfg, error=exc)
                    exc.reported = True
                raise
            _print(args, result, loaded.cfg)
    return 0


def _print(
    args: argparse.Namespace, result: RunResult, cfg: PipelineConfig, error: Exception | None = None
) -> None:
    if args.json:
        doc = result.as_dict()
        if error is not None:
            doc["error"] = str(error)
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(render.run_summary(result, cfg))


def demo(args: argparse.Namespace) -> int:
    """Two synthetic nights, then a re-run of the second: same rows, one more version."""
    loaded = load(args)
    day2 = date.fromisoformat(parse_run_date(args.date))
    # The demo provisions its own key store (a real deployment runs `securepipe keys init`).
    Keyring(loaded.cfg.keystore, create=True)
    day1 = day2 - timedelta(days=1)
    for i, day in enumerate((day1, day2)):
        _log.info("generating %d synthetic rows per table for %s", args.rows, day)
        generate_landing(loaded.cfg.landing, day, args.rows, seed=42 + i)
    with spark_session(loaded) as spark:
        for label, day in (("night 1", day1), ("night 2", day2), ("re-run of night 2", day2)):
            print(f"\n=== {label}: {day} ===")
            result = run_nightly(spark, loaded.cfg, day.isoformat(), policy=loaded.policy)
            print(render.run_summary(result, loaded.cfg))
    print(
        "\nnext: securepipe audit | securepipe history customers | "
        "securepipe show customers --role support | securepipe access matrix"
    )
    return 0


def generate(args: argparse.Namespace) -> int:
    """A synthetic landing batch (no configuration needed)."""
    for batch in generate_landing(args.landing, args.date, args.rows, args.seed).values():
        print(f"{batch.table}: {batch.rows} rows ({batch.malformed} malformed) -> {batch.path}")
    return 0
