"""Reading one run date of landing files with the declared columns (fail closed on drift)."""

from __future__ import annotations

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from securepipe.config import TableConfig
from securepipe.errors import SchemaDriftError, SourceError

__all__ = ["CORRUPT_COLUMN", "SOURCE_FILE_COLUMN", "landing_path", "read_landing"]

CORRUPT_COLUMN = "_corrupt_record"
SOURCE_FILE_COLUMN = "_source_file"


def landing_path(landing_root: str, table_cfg: TableConfig, run_date: str) -> str:
    """The folder holding `run_date`'s files of a table."""
    return f"{landing_root.rstrip('/')}/{table_cfg.source.path.format(run_date=run_date)}"


def _check_columns(table: str, found: list[str], declared: list[str], path: str) -> None:
    """Fail closed on a column that is not declared, or a declared one that is missing.

    Only declared names are ever quoted: a landing file without its header has a data record
    where the header should be, so what Spark reports as column names can be names, e-mails and
    card numbers. Undeclared columns are counted, never named.
    """
    known = set(declared)
    extra = [c for c in found if c not in known]
    if extra and len(extra) == len(found):
        raise SchemaDriftError(
            f"table {table!r}: the first line of the landing files in {path} matches none of the "
            f"{len(declared)} declared column names ({len(found)} fields): is the header "
            "missing? (its fields are not shown: they may be values)"
        )
    if extra:
        positions = ", ".join(str(i + 1) for i, c in enumerate(found) if c not in known)
        raise SchemaDriftError(
            f"table {table!r}: {len(extra)} landing column(s) in {path} are not declared in "
            f"the configuration (position {positions} of {len(found)}; names not shown: a "
            "header line can hold values); classify and protect them before they can be "
            "published (fail closed)"
        )
    missing = [c for c in declared if c not in set(found)]
    if missing:
        raise SchemaDriftError(
            f"table {table!r}: declared column(s) {', '.join(map(repr, missing))} are missing "
            f"from the landing files in {path}"
        )


def read_landing(
    spark: SparkSession, table: str, table_cfg: TableConfig, landing_root: str, run_date: str
) -> DataFrame:
    """Read a run date's landing files as strings, keeping malformed records.

    Every declared column is read as a string (typing happens in `securepipe.io.rows`, which can
    then say which column failed); CSV and JSON records that do not parse land in
    `_corrupt_record` instead of being dropped. `_source_file` names each row's file.

    Raises:
        SourceError: no files for that date.
        SchemaDriftError: a column that is not declared (or a declared column is missing).
    """
    path = landing_path(landing_root, table_cfg, run_date)
    fmt = table_cfg.source.format
    declared = list(table_cfg.columns)
    options = (
        {"header": "true", **table_cfg.source.options}
        if fmt == "csv"
        else dict(table_cfg.source.options)
    )
    try:
        if fmt == "parquet":
            df = spark.read.options(**options).parquet(path)
            _check_columns(table, df.columns, declared, path)
            return df.select(
                *[F.col(c).cast("string").alias(c) for c in declared],
                F.lit(None).cast("string").alias(CORRUPT_COLUMN),
                F.col("_metadata.file_path").alias(SOURCE_FILE_COLUMN),
            )
        # Only the header (csv) or a sample (json) is read to learn the landing columns.
        probe = spark.read.options(**options)
        found = (
            probe.csv(path).columns
            if fmt == "csv"
            else probe.option("samplingRatio", "0.01").json(path).columns
        )
        found = [c for c in found if c != CORRUPT_COLUMN]
        _check_columns(table, found, declared, path)
        # CSV columns are matched by position: read in the header's order, and let Spark check
        # every file's header against it (enforceSchema=false) so that a file whose columns are
        # in another order fails instead of shifting values into the wrong columns.
        schema = StructType(
            [StructField(c, StringType(), True) for c in found]
            + [StructField(CORRUPT_COLUMN, StringType(), True)]
        )
        reader = (
            spark.read.options(**options)
            .schema(schema)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
            .option("enforceSchema", "false")
        )
        df = reader.csv(path) if fmt == "csv" else reader.json(path)
        return df.select(
            *declared, CORRUPT_COLUMN, F.col("_metadata.file_path").alias(SOURCE_FILE_COLUMN)
        )
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc.getCondition() or "") or "Path does not exist" in str(exc):
            raise SourceError(
                f"table {table!r}: no landing files for {run_date} at {path}"
            ) from None
        raise
