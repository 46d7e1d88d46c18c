"""Every path of the lakehouse, from one object built from the configuration (no Spark, no I/O).

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

import hashlib
from dataclasses import dataclass
from pathlib import Path

from securepipe.config import CatalogConfig, PipelineConfig
from securepipe.errors import ConfigError

__all__ = ["Layout", "storage_root"]


def storage_root(location: str) -> str:
    """A lakehouse or landing root as Spark should see it: URIs as given, local paths absolute."""
    if "://" in location:
        return location.rstrip("/")
    return str(Path(location).resolve())


@dataclass(frozen=True)
class Layout:
    """The lakehouse's paths. `Layout.of(cfg)` is the only place a path is spelled out."""

    root: str  # the lakehouse as Spark sees it (URI, or an absolute local path)
    landing: str  # the landing root, likewise
    lock_folder: str | None = None  # `lock_dir:` of the configuration, if set
    catalog: CatalogConfig | None = None  # `catalog:` of the configuration, if set

    @classmethod
    def of(cls, cfg: PipelineConfig) -> Layout:
        """The layout of the configured lakehouse."""
        return cls(
            storage_root(cfg.lakehouse), storage_root(cfg.landing), cfg.lock_dir, cfg.catalog
        )

    @property
    def local(self) -> bool:
        """Whether the lakehouse is on a local file system (file locks beside it work)."""
        return "://" not in self.root or self.root.startswith("file:")

    def table(self, table: str) -> str:
        """Where the protected table `table` is published."""
        return f"{self.root}/tables/{table}"

    def quarantine(self, table: str) -> str:
        """Where the rejected rows of `table` are kept (protected, with reason codes)."""
        return f"{self.root}/quarantine/{table}"

    def access(self, role: str, table: str) -> str:
        """Where role `role`'s copy of `table` lives."""
        return f"{self.root}/access/{role}/{table}"

    @property
    def catalog_folder(self) -> str:
        """`<lakehouse>/_catalog`: the session's warehouse folder and, with an embedded
        metastore, its Derby database and log (never the working directory)."""
        return f"{self.root}/_catalog"

    def table_name(self, table: str) -> str | None:
        """`<database>.<table>`: the published table's name in the catalog (None without one)."""
        return f"{self.catalog.database}.{table}" if self.catalog else None

    def quarantine_name(self, table: str) -> str | None:
        """The quarantine table's name in the catalog (None without one)."""
        return f"{self.catalog.quarantine_database}.{table}" if self.catalog else None

    def access_name(self, role: str, table: str) -> str | None:
        """`<access_prefix><role>.<table>`: role `role`'s table in the catalog (None without
        one)."""
        return f"{self.catalog.access_prefix}{role}.{table}" if self.catalog else None

    @property
    def audit(self) -> str:
        """`<lakehouse>/_audit/runs`: the append-only run log."""
        return f"{self.root}/_audit/runs"

    @property
    def reports(self) -> str:
        """Where run reports and the access matrix are written."""
        return f"{self.root}/reports"

    @property
    def subject_store(self) -> str:
        """`<lakehouse>/_keys/subjects`: the wrapped per-subject keys, never next to the data."""
        return f"{self.root}/_keys/subjects"

    @property
    def tombstones(self) -> str:
        """`<lakehouse>/_keys/tombstones`: keyed hashes of erased subjects (never their ids)."""
        return f"{self.root}/_keys/tombstones"

    def _host_lock_folder(self) -> Path:
        if self.lock_folder:
            return Path(self.lock_folder).resolve()
        # `load_config` gives an object-store lakehouse a lock folder beside the configuration;
        # guessing one from the working directory would let two jobs miss each other's locks.
        raise ConfigError(
            f"lakehouse {self.root}: an object-store lakehouse needs lock_dir (a folder on the "
            "scheduler host shared by every job that writes it)"
        )

    @property
    def locks(self) -> str:
        """Per-date run locks: `lock_dir`, else beside a local lakehouse."""
        if self.lock_folder:
            return str(Path(self.lock_folder).resolve())
        if "://" not in self.root:
            return f"{self.root}/_locks"
        return str(self._host_lock_folder())

    @property
    def lakehouse_lock(self) -> Path:
        """The lakehouse lock that nights share and erase/maintain/reencrypt/keys hold alone.

        Local lakehouses keep it at `<lakehouse>/_locks/lakehouse.lock`. An object store has no
        file locks: the lock lives on the scheduler host, in `lock_dir` (by default
        `.cache/locks` beside the configuration file), named after the lakehouse URI. Every job
        that writes the lakehouse must run on that host (or share that folder over a file system
        with working `flock`).
        """
        digest = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        if self.lock_folder:
            return Path(self.lock_folder).resolve() / f"lakehouse-{digest}.lock"
        if self.local:
            root = self.root.removeprefix("file://").removeprefix("file:")
            return Path(root) / "_locks" / "lakehouse.lock"
        return self._host_lock_folder() / f"lakehouse-{digest}.lock"
