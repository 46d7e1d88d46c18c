"""Real file locks (`flock`), released by the kernel when the holding process dies.

Two kinds, both on the local file system of the host that runs the job:

* the **lakehouse lock** (`<lakehouse>/_locks/lakehouse.lock`; for an object-store lakehouse
  `<lock_dir>/lakehouse-<hash>.lock`, see `lakehouse_lock_dir`): nightly runs hold it *shared*
  (runs of different dates may overlap), while `erase`, `maintain`, `reencrypt` and `keys` hold it
  *exclusive*, so none of them can interleave with a running night;
* **named exclusive locks** (`run_lock`): one nightly run per date; the keyring file.

No pid file can go stale: a lock held by a killed process is free at once.

A thread that holds the lakehouse lock exclusively may take it again (shared or exclusive)
without waiting: a command takes it before it starts Spark, and the job it then runs takes it as
a library call would. `flock` alone would make the second acquisition wait for the first (two
descriptors of one file conflict even within one process). Run locks stay strict: a second run of
a date is refused even in the thread that holds it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from securepipe.errors import ConfigError, SecurePipeError
from securepipe.layout import Layout

__all__ = [
    "LockTimeout",
    "RunLocked",
    "default_wait",
    "file_lock",
    "lakehouse_lock",
    "run_lock",
]


_HELD = threading.local()  # the lock files this thread holds exclusively: path -> depth


def _held() -> dict[str, int]:
    if not hasattr(_HELD, "paths"):
        _HELD.paths = {}
    held: dict[str, int] = _HELD.paths
    return held


def default_wait() -> float:
    """Seconds a job waits for the lakehouse lock: `SECUREPIPE_LOCK_WAIT`, default 1800."""
    return float(os.environ.get("SECUREPIPE_LOCK_WAIT", "1800"))


class RunLocked(SecurePipeError):
    """Another process holds a lock that this one may not wait for."""


class LockTimeout(RunLocked):
    """A lock was still held by another process when the wait ran out."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another securepipe process"
    return (
        f"pid {info.get('pid')} on {info.get('host')} ({info.get('what', 'a job')} "
        f"since {info.get('since')})"
    )


@contextmanager
def file_lock(
    path: str | Path,
    *,
    exclusive: bool = True,
    wait: float = 0.0,
    what: str = "",
    reentrant: bool = False,
) -> Iterator[Path]:
    """Hold an `flock` on `path` (created 0600) for the duration of the block.

    Args:
        path: the lock file; its folder is created.
        exclusive: exclusive (writers) or shared (readers, overlapping nightly runs).
        wait: seconds to wait for another holder to let go; 0 fails at once.
        what: a short label written into the file by exclusive holders (shown to waiters).
        reentrant: a thread that holds `path` exclusively (itself reentrant) gets it again at
            once, the outer hold deciding; otherwise it conflicts with its own hold.

    Raises:
        RunLocked: the lock is held and `wait` is 0. LockTimeout: still held after `wait`.
    """
    lock_path = Path(path)
    key, held = str(lock_path.resolve()), _held()
    if reentrant and key in held:  # this thread holds it exclusively already
        held[key] += 1
        try:
            yield lock_path
        finally:
            held[key] -= 1
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # A lock file that is a symlink would have us write (the holder's pid and host) into
        # whatever it points at, with our rights: refuse it.
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"lock file {lock_path} is a symbolic link: refusing it") from None
        raise
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    holder = _holder(lock_path)
                    if wait > 0:
                        raise LockTimeout(
                            f"waited {wait:.0f} s for {lock_path}, still held by {holder}"
                        ) from None
                    raise RunLocked(
                        f"another run holds {lock_path} ({holder}); wait for it to finish"
                    ) from None
                time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
        if exclusive:
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "what": what or "a job",
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        if exclusive and reentrant:
            held[key] = 1
        try:
            yield lock_path
        finally:
            if exclusive and reentrant:
                del held[key]
            if exclusive:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def run_lock(lock_dir: str | Path, name: str) -> Iterator[Path]:
    """Hold `<lock_dir>/<name>.lock` exclusively, failing at once if another process holds it.

    Raises:
        RunLocked: the message names the lock file and its holder (pid, host, since).
    """
    with file_lock(Path(lock_dir) / f"{name}.lock", exclusive=True, what=name) as path:
        yield path


@contextmanager
def lakehouse_lock(
    layout: Layout, *, exclusive: bool, what: str, wait: float | None = None
) -> Iterator[Path]:
    """Hold the lakehouse lock: shared for nightly runs, exclusive for everything that must not
    interleave with one (erase, maintain, reencrypt, keys).

    Waits up to `wait` seconds (default `SECUREPIPE_LOCK_WAIT`, 1800) for the other holders.

    Raises:
        LockTimeout: still held by another process after the wait; the message names it.
    """
    path = layout.lakehouse_lock
    with file_lock(
        path,
        exclusive=exclusive,
        wait=default_wait() if wait is None else wait,
        what=what,
        reentrant=True,
    ):
        yield path
