"""Operating the nightly job for years: the lakehouse lock, retries on concurrent commits,
retention."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from securepipe.config import PipelineConfig
from securepipe.errors import ConfigError, PublishError, SecurePipeError
from securepipe.layout import lakehouse_lock_file
from securepipe.locks import RunLocked, default_wait, file_lock, run_lock

__all__ = [
    "DELTA_SAFETY_HOURS",
    "RunLocked",
    "check_retention",
    "lakehouse_lock",
    "retention_check_disabled",
    "retry_concurrent",
    "run_lock",
]

DELTA_SAFETY_HOURS = 168  # Delta refuses VACUUM below 7 days unless its check is disabled
_CONFLICTS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentWriteException",
    "ConcurrentTransactionException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DELTA_CONCURRENT",
    "DELTA_METADATA_CHANGED",
    "DELTA_TABLE_ALREADY_EXISTS",
)
_log = logging.getLogger(__name__)
T = TypeVar("T")


def is_conflict(exc: BaseException) -> bool:
    """True for Delta's optimistic-concurrency conflicts (another writer committed first)."""
    text = type(exc).__name__ + " " + str(getattr(exc, "getCondition", lambda: "")() or "")
    if not any(c in text for c in _CONFLICTS):
        text += " " + str(exc)[:400]
    return any(c in text for c in _CONFLICTS)


def retry_concurrent(action: Callable[[], T], what: str, attempts: int = 4) -> T:
    """Run a Delta write, retrying when another writer won the race (with backoff).

    Raises:
        PublishError: still conflicting after `attempts`, or any other failure (class only).
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except SecurePipeError:
            raise  # our own refusals (a gate, a policy) are not concurrency conflicts
        except Exception as exc:
            if is_conflict(exc) and attempt < attempts:
                _log.warning("%s: concurrent commit, retrying (%d/%d)", what, attempt, attempts)
                time.sleep(0.5 * 2**attempt)
                continue
            if is_conflict(exc):
                reason = "concurrent writers kept winning"
            else:
                # The error condition (e.g. DELTA_FAILED_TO_MERGE_FIELDS) names the kind of
                # failure without quoting data; the message text could, so it is not shown.
                condition = getattr(exc, "getCondition", lambda: None)()
                reason = type(exc).__name__ + (f" [{condition}]" if condition else "")
            raise PublishError(f"{what} failed ({reason})") from None
    raise PublishError(f"{what} failed")  # pragma: no cover


def check_retention(hours: int, allow_below_safety: bool) -> None:
    """Refuse a VACUUM retention below Delta's 7-day safety threshold unless asked explicitly.

    Raises:
        ConfigError: `hours` is below 168 and `allow_below_safety` is false.
    """
    if hours < 0:
        raise ConfigError("retention hours must not be negative")
    if hours < DELTA_SAFETY_HOURS and not allow_below_safety:
        raise ConfigError(
            f"VACUUM retention of {hours} h is below Delta's safety threshold of "
            f"{DELTA_SAFETY_HOURS} h: readers of older versions and running writers could lose "
            "files; pass --allow-below-safety (and set retention.allow_below_safety) to insist"
        )


@contextmanager
def lakehouse_lock(
    cfg: PipelineConfig, *, exclusive: bool, what: str, wait: float | None = None
) -> Iterator[Path]:
    """Hold the lakehouse lock: shared for nightly runs, exclusive for everything that must not
    interleave with one (erase, maintain, reencrypt, keys).

    Waits up to `wait` seconds (default `SECUREPIPE_LOCK_WAIT`, 1800) for the other holders.

    Raises:
        LockTimeout: still held by another process after the wait; the message names it.
    """
    path = lakehouse_lock_file(cfg)
    with file_lock(
        path, exclusive=exclusive, wait=default_wait() if wait is None else wait, what=what
    ):
        yield path


_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


@contextmanager
def retention_check_disabled(spark: Any) -> Iterator[None]:
    """Let VACUUM go below Delta's safety threshold inside the block, then restore the session's
    previous setting (not a hard-coded `true`). Call it only under the exclusive lakehouse lock:
    that is what makes a short retention safe for concurrent writers."""
    previous = spark.conf.get(_RETENTION_CHECK, None)
    spark.conf.set(_RETENTION_CHECK, "false")
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(_RETENTION_CHECK)
        else:
            spark.conf.set(_RETENTION_CHECK, previous)
