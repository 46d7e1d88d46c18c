"""The jobs as functions: load, the nightly run in stages, keys, erasure, re-encryption,
maintenance. Entry points (`securepipe.cli`, `jobs/*.py`) call these and nothing below them."""

from __future__ import annotations

from securepipe.pipeline.keys import resolve_keys
from securepipe.pipeline.load import Loaded, load_pipeline
from securepipe.pipeline.nightly import (
    RunResult,
    TableResult,
    new_run_id,
    parse_run_date,
    run_nightly,
    run_table,
)
from securepipe.pipeline.stages import PARTITION_COLUMN, TableStatus, protect_batch

__all__ = [
    "PARTITION_COLUMN",
    "Loaded",
    "RunResult",
    "TableResult",
    "TableStatus",
    "load_pipeline",
    "new_run_id",
    "parse_run_date",
    "protect_batch",
    "resolve_keys",
    "run_nightly",
    "run_table",
]
