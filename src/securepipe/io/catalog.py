"""Tables by name: the lakehouse's Delta tables registered in the session catalog (a Hive
metastore) when the configuration has a `catalog:` section. Each is an external table over the
path the pipeline writes (the path stays the truth; the catalog entry only names it), created
once and checked to point where it should on every later run."""

from __future__ import annotations

from pyspark.sql import SparkSession

from securepipe.errors import ConfigError

__all__ = ["register_table"]


def _quoted(name: str) -> str:
    return ".".join(f"`{part}`" for part in name.split("."))


def _same_location(a: str, b: str) -> bool:
    def norm(x: str) -> str:
        x = x.rstrip("/")
        for prefix in ("file://", "file:"):
            x = x.removeprefix(prefix)
        return x

    return norm(a) == norm(b)


def _location(spark: SparkSession, name: str) -> str | None:
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {_quoted(name)}").collect()
    for row in rows:
        if row["col_name"] == "Location":
            return str(row["data_type"])
    return None


def register_table(spark: SparkSession, name: str, location: str) -> bool:
    """Make `name` (`database.table`) name the Delta table at `location`: create the database
    and the external table when missing. Returns whether it was created now.

    Raises:
        ConfigError: `name` already names a table elsewhere (another lakehouse sharing the
            metastore, or a table made by hand), which securepipe never repoints or drops.
    """
    database = name.split(".", 1)[0]
    if spark.catalog.tableExists(name):
        found = _location(spark, name)
        if found is None or not _same_location(found, location):
            raise ConfigError(
                f"catalog table {name} already names {found or 'a table without a location'}, "
                f"not {location}: choose other catalog databases for this lakehouse, or drop "
                "that table"
            )
        return False
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    literal = location.replace("\\", "\\\\").replace("'", "\\'")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {_quoted(name)} USING DELTA LOCATION '{literal}'")
    return True
