"""Every path of the lakehouse, from the configuration (no Spark, no I/O).

```
<lakehouse>/tables/<table>            protected, published tables
<lakehouse>/quarantine/<table>        rejected rows (protected, reason codes)
<lakehouse>/access/<role>/<table>     per-role tables
<lakehouse>/_keys/subjects            wrapped per-subject keys (crypto-shredding)
<lakehouse>/_keys/tombstones          keyed hashes of erased subjects
<lakehouse>/_audit/runs               the append-only audit log
<lakehouse>/reports/                  run reports, access matrix
<lakehouse>/_locks/                   lakehouse and per-date locks (local lakehouses)
```
"""

from __future__ import annotations

from pathlib import Path

from securepipe.config import PipelineConfig
from securepipe.locks import lakehouse_lock_path

__all__ = [
    "access_path",
    "lakehouse_lock_file",
    "lock_dir",
    "quarantine_path",
    "reports_root",
    "storage_root",
    "store_path",
    "table_path",
    "tombstone_path",
]


def storage_root(location: str) -> str:
    """A lakehouse or landing root as Spark should see it: URIs as given, local paths absolute."""
    if "://" in location:
        return location.rstrip("/")
    return str(Path(location).resolve())


def table_path(cfg: PipelineConfig, table: str) -> str:
    """Where the protected table `table` is published."""
    return f"{storage_root(cfg.lakehouse)}/tables/{table}"


def quarantine_path(cfg: PipelineConfig, table: str) -> str:
    """Where the rejected rows of `table` are kept (protected, with reason codes)."""
    return f"{storage_root(cfg.lakehouse)}/quarantine/{table}"


def access_path(cfg: PipelineConfig, role: str, table: str) -> str:
    """Where role `role`'s copy of `table` lives."""
    return f"{storage_root(cfg.lakehouse)}/access/{role}/{table}"


def reports_root(cfg: PipelineConfig) -> str:
    """Where run reports are written."""
    return f"{storage_root(cfg.lakehouse)}/reports"


def store_path(cfg: PipelineConfig) -> str:
    """`<lakehouse>/_keys/subjects`: the wrapped per-subject keys, never next to the data."""
    return f"{storage_root(cfg.lakehouse)}/_keys/subjects"


def tombstone_path(cfg: PipelineConfig) -> str:
    """`<lakehouse>/_keys/tombstones`: keyed hashes of erased subjects (never their ids)."""
    return f"{storage_root(cfg.lakehouse)}/_keys/tombstones"


def lock_dir(cfg: PipelineConfig) -> str:
    """Per-date run locks: beside a local lakehouse, else `locks_dir` (or `.cache/locks`)."""
    if cfg.lock_dir:
        return str(Path(cfg.lock_dir).resolve())
    root = storage_root(cfg.lakehouse)
    return f"{root}/_locks" if "://" not in root else str(Path(".cache/locks").resolve())


def lakehouse_lock_file(cfg: PipelineConfig) -> Path:
    """The lakehouse lock that runs share and erase/maintain/reencrypt/keys hold alone."""
    return lakehouse_lock_path(storage_root(cfg.lakehouse), cfg.lock_dir)
