"""Files and folders of the lakehouse through Hadoop's file system (local paths, `file://`,
`s3a://` alike): listing a table's folders and data files, and removing files a purge names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyspark.sql import SparkSession

__all__ = ["delete_files", "list_data_files", "list_folders", "list_log_files"]


def _fs(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    jvm: Any = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def list_folders(spark: SparkSession, root: str) -> list[str]:
    """The names of the folders directly under `root` (none when it does not exist), sorted."""
    path, fs = _fs(spark, root)
    if not fs.exists(path):
        return []
    return sorted(str(s.getPath().getName()) for s in fs.listStatus(path) if s.isDirectory())


def list_data_files(spark: SparkSession, root: str) -> list[str]:
    """Every Parquet data file physically under a Delta table (whatever its log still says),
    as fully qualified URIs, sorted."""
    path, fs = _fs(spark, root)
    if not fs.exists(path):
        return []
    files = []
    it = fs.listFiles(path, True)
    while it.hasNext():
        found = str(it.next().getPath().toString())
        if found.endswith(".parquet") and "/_delta_log/" not in found:
            files.append(found)
    return sorted(files)


def list_log_files(spark: SparkSession, root: str) -> list[str]:
    """The files of a Delta table's `_delta_log` folder (commits, checkpoints), as URIs."""
    path, fs = _fs(spark, f"{root.rstrip('/')}/_delta_log")
    if not fs.exists(path):
        return []
    return sorted(str(s.getPath().toString()) for s in fs.listStatus(path) if s.isFile())


def delete_files(spark: SparkSession, uris: Iterable[str]) -> int:
    """Remove files (a purge's exact list, whatever the table's retention); returns how many
    existed and were removed."""
    removed = 0
    for uri in uris:
        path, fs = _fs(spark, uri)
        if fs.exists(path) and fs.delete(path, False):
            removed += 1
    return removed
