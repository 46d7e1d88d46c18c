"""Operating the nightly job for years: run locks, retries on concurrent commits, retention."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from securepipe.errors import ConfigError, PublishError, SecurePipeError

__all__ = ["DELTA_SAFETY_HOURS", "RunLocked", "check_retention", "retry_concurrent", "run_lock"]

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


class RunLocked(SecurePipeError):
    """Another run for the same date holds the lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(lock_dir: str | Path, name: str) -> Iterator[Path]:
    """Hold `<lock_dir>/<name>.lock` for the duration of a run.

    The lock is a file created with O_EXCL on the local file system (the scheduler host). A lock
    left by a process that no longer runs on this host is taken over with a warning.

    Raises:
        RunLocked: a live process holds the lock; the message names its pid, host and start.
    """
    folder = Path(lock_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            same_host = holder.get("host") == me["host"]
            if same_host and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                _log.warning("taking over stale lock %s (pid %s is gone)", path, holder["pid"])
                path.unlink(missing_ok=True)
                continue
            raise RunLocked(
                f"another run holds {path} (pid {holder.get('pid')} on {holder.get('host')} "
                f"since {holder.get('since')}); wait for it, or remove the file if it is stale"
            ) from None
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
        return
    raise RunLocked(f"could not take lock {path}")


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
