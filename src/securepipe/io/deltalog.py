"""Read-only answers from a local Delta table without starting a JVM (delta-rs, `deltalake`):
`securepipe history` and `securepipe audit` on a local lakehouse answer in well under a second.

An object-store lakehouse (`s3a://`) is read with Spark as before: its credentials and endpoint
live in the Hadoop configuration. delta-rs may abort the interpreter at exit after its work is
done; the CLI ends such a command with its own exit code (`securepipe.cli.main`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from securepipe.errors import PublishError
from securepipe.io.delta import history_entry

__all__ = ["audit_rows", "local_table", "log_history", "was_used"]

_used = False


def was_used() -> bool:
    """Whether this process opened a table with delta-rs."""
    return _used


def local_table(location: str) -> str | None:
    """The local path of a table location, or None when it is not on the local file system."""
    if location.startswith("file:"):
        location = location.removeprefix("file:")
        while location.startswith("//"):
            location = location[1:]
    if "://" in location:
        return None
    return str(Path(location))


def _open(path: str) -> DeltaTable:
    global _used
    _used = True
    try:
        return DeltaTable(path)
    except TableNotFoundError:
        raise PublishError(f"{path} is not a Delta table") from None


def log_history(path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """`io.delta.history` read from the log by delta-rs: the same entries, newest first."""
    out = []
    for commit in _open(path).history(limit):
        stamp = datetime.fromtimestamp(int(commit["timestamp"]) / 1000)  # local, as Spark shows
        out.append(
            history_entry(
                int(commit["version"]),
                stamp,
                str(commit.get("operation", "")),
                commit.get("userMetadata"),
            )
        )
    return out


def audit_rows(path: str, limit: int) -> list[dict[str, Any]]:
    """The audit table's rows, newest run first (`io.audit.read_audit` without Spark)."""
    rows = _open(path).to_pyarrow_table().to_pylist()
    rows.sort(key=lambda r: r["started_at"], reverse=True)
    return rows[:limit]
