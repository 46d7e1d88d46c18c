"""Log lines that say which job, run, date and table they belong to.

A job sets its context once (`log_context(job=..., run_id=..., run_date=...)`, then
`log_context(table=...)` per table); `ContextFilter` on the handler stamps every record that
passes, securepipe's own and its libraries' alike; `JsonLines` prints one JSON object per record.
Messages never carry a data value (see the README's "Where plaintext can and cannot be").
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import TextIO

__all__ = [
    "CONTEXT_FIELDS",
    "ContextFilter",
    "JsonLines",
    "current_context",
    "json_logs",
    "log_context",
]

CONTEXT_FIELDS = ("job", "run_id", "run_date", "table")
# Fields some records carry as `extra=` (stage timings and counts).
_EXTRA = (
    "event",
    "stage",
    "seconds",
    "rows_read",
    "rows_rejected",
    "rows_published",
    "rows_quarantined",
    "version",
    "passed",
    "key",
    "total",
)
_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("securepipe_log_context", default=_EMPTY)


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Add `fields` (of `CONTEXT_FIELDS`) to every record logged inside the block."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {sorted(unknown)}")
    token = _context.set(MappingProxyType({**_context.get(), **fields}))
    try:
        yield
    finally:
        _context.reset(token)


def json_logs(stream: TextIO) -> bool:
    """JSON lines unless a person watches a terminal (`SECUREPIPE_LOG_FORMAT=json` forces them)."""
    return not stream.isatty() or os.environ.get("SECUREPIPE_LOG_FORMAT") == "json"


def current_context() -> dict[str, str]:
    """The fields the next record would be stamped with."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Stamps each record with the current job, run id, run date and table (when set)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonLines(logging.Formatter):
    """One JSON object per log record (for schedulers and log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line: time, level, logger, message, its context and fields."""
        doc = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: getattr(record, k) for k in CONTEXT_FIELDS if hasattr(record, k)})
        doc.update({k: getattr(record, k) for k in _EXTRA if hasattr(record, k)})
        return json.dumps(doc, default=str)
