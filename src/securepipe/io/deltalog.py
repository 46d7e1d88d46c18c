"""Read-only answers from a local Delta table without starting a JVM (delta-rs, `deltalake`):
`securepipe history`, `audit` and `show` on a local lakehouse answer in well under a second.
This module imports neither Spark nor the pipeline; `io.delta` uses its `history_entry`.

An object-store lakehouse (`s3a://`) is read with Spark as before: its credentials and endpoint
live in the Hadoop configuration. delta-rs may abort the interpreter at exit after its work is
done; the CLI ends such a command with its own exit code (`securepipe.cli.main`).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
from deltalake.exceptions import TableNotFoundError

from securepipe.errors import PublishError

__all__ = [
    "audit_rows",
    "history_entry",
    "local_commits",
    "local_table",
    "log_history",
    "table_rows",
    "was_used",
]

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


def history_entry(
    version: int, timestamp: datetime, operation: str, user_metadata: str | None
) -> dict[str, Any]:
    """One commit as `history` prints it: version, time, operation, parsed compliance record."""
    try:
        record = json.loads(user_metadata) if user_metadata else None
    except ValueError:
        record = {"unparsed": user_metadata}
    return {
        "version": int(version),
        "timestamp": str(timestamp),
        "operation": operation,
        "record": record,
    }


def _commit_versions(log: str) -> list[int] | None:
    """The versions whose commit file `_delta_log` holds, newest first; None without a log."""
    try:
        names = os.listdir(log)
    except (FileNotFoundError, NotADirectoryError):
        return None
    # `00000000000000000012.json`; temporary files, checksums and checkpoints are not commits.
    found = [
        int(n[:20]) for n in names if len(n) == 25 and n.endswith(".json") and n[:20].isdigit()
    ]
    return sorted(found, reverse=True)


def local_commits(path: str, limit: int | None = None) -> list[dict[str, Any]] | None:
    """The newest `limit` commits of the local Delta table at `path` as Delta's `history` gives
    them (version, timestamp, operation, operationMetrics, userMetadata), newest first, read
    straight from the commit files of its log: no JVM call and no snapshot. None when `path`
    holds no Delta table.

    The timestamp is the commit's in-commit timestamp when the table records them
    (`delta.enableInCommitTimestamps`), else the commit file's modification time: what Delta's
    history reports (local time, naive, to the millisecond, as Spark returns it).
    """
    log = os.path.join(path, "_delta_log")
    versions = _commit_versions(log)
    if not versions:
        return None
    out = []
    for version in versions[:limit] if limit else versions:
        file = os.path.join(log, f"{version:020d}.json")
        try:
            with open(file, encoding="utf-8") as handle:
                actions = (json.loads(line) for line in handle if line.strip())
                info: dict[str, Any] = next(
                    (a["commitInfo"] for a in actions if "commitInfo" in a), {}
                )
            stamp = info.get("inCommitTimestamp")
            millis = int(stamp) if stamp is not None else os.stat(file).st_mtime_ns // 1_000_000
        except FileNotFoundError:  # removed by log clean-up since the listing
            continue
        out.append(
            {
                "version": version,
                "timestamp": datetime.fromtimestamp(millis // 1000).replace(
                    microsecond=millis % 1000 * 1000
                ),
                "operation": info.get("operation", ""),
                "operationMetrics": info.get("operationMetrics") or {},
                "userMetadata": info.get("userMetadata"),
            }
        )
    return out


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


def _select(table: DeltaTable, order: str = "", limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of the table's loaded version, through delta-rs's own query engine (DataFusion:
    deletion vectors honoured, and no import of pyarrow.dataset, which alone takes ~0.4 s).
    `order` is ours (a column name and direction), never user input."""
    columns = ", ".join(f'"{field.name}"' for field in table.schema().fields)
    sql = f"SELECT {columns} FROM t" + (f" ORDER BY {order}" if order else "")  # noqa: S608
    sql += f" LIMIT {int(limit)}" if limit is not None else ""
    data = pa.RecordBatchReader.from_stream(
        QueryBuilder().register("t", table).execute(sql)
    ).read_all()
    # Timestamps as naive UTC, as the pipeline's Spark sessions (UTC) return them; converting
    # zoned ones would import pandas (~0.4 s).
    naive = [
        pa.field(f.name, pa.timestamp(f.type.unit), f.nullable)
        if pa.types.is_timestamp(f.type) and f.type.tz
        else f
        for f in data.schema
    ]
    return list(data.cast(pa.schema(naive)).to_pylist())


def audit_rows(path: str, limit: int) -> list[dict[str, Any]]:
    """The audit table's rows, newest run first (`io.audit.read_audit` without Spark)."""
    return _select(_open(path), '"started_at" DESC', limit)


def table_rows(
    path: str, version: int | None = None, as_of: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """Up to `limit` rows of the table, now, at a version, or as of a time (`YYYY-MM-DD
    HH:MM:SS`, UTC as the pipeline's sessions read it), columns in the table's order.

    Raises:
        PublishError: not a Delta table, or no such version or time in its log (a time before
            the table's first commit included, as Spark refuses it).
    """
    when = None
    if version is None and as_of:
        try:
            when = datetime.fromisoformat(as_of)
        except ValueError:
            raise PublishError(f"as-of time {as_of!r} is not YYYY-MM-DD HH:MM:SS") from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    table = _open(path)
    wanted = f"version {version}" if version is not None else f"time {as_of}"
    try:
        if version is not None:
            table.load_as_version(version)
        elif when is not None:
            first = min(int(c["timestamp"]) for c in table.history())
            if when.timestamp() * 1000 < first:
                raise PublishError(f"{path}: {wanted} is before the table's first commit")
            table.load_as_version(when)
    except PublishError:
        raise
    except Exception as exc:  # delta-rs: DeltaError for a version or time the log lacks
        raise PublishError(
            f"{path}: no {wanted} in the table's log ({type(exc).__name__})"
        ) from None
    return _select(table, limit=limit)
