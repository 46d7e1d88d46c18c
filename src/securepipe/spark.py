"""Spark session configuration. The library configures builders; only jobs and tests build.

`configure_builder(builder, settings)` adds Delta Lake (extension, catalog, jars) and secure
defaults. It never creates a session and never puts a secret into the configuration.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from securepipe.config import SparkSettings
from securepipe.errors import ConfigError
from securepipe.jars import MAVEN_COORDINATES, local_jars

__all__ = ["REDACTION_REGEX", "SECURE_DEFAULTS", "configure_builder"]

# Spark hides the values of configuration keys matching this in the UI, event logs and
# `spark.conf` dumps; ours adds the names our secrets and KMS settings use.
REDACTION_REGEX = (
    r"(?i)secret|password|passphrase|token|credential|private|access[.]?key|master[.]?key"
    r"|securepipe[.]kms|pkcs11"
)

SECURE_DEFAULTS: dict[str, str] = {
    # Plaintext passes through shuffle and spill files between read and protect.
    "spark.io.encryption.enabled": "true",
    "spark.io.encryption.keySizeBits": "256",
    "spark.redaction.regex": REDACTION_REGEX,
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    # Vectorised UDFs are how protection runs; keep Arrow on.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Event logs would keep query plans and metrics of every run; opt in explicitly.
    "spark.eventLog.enabled": "false",
    "spark.databricks.delta.retentionDurationCheck.enabled": "true",
    # Stage progress bars interleave with our logs; progress is reported by securepipe itself.
    "spark.ui.showConsoleProgress": "false",
}


def configure_builder(
    builder: SparkSession.Builder, settings: SparkSettings
) -> SparkSession.Builder:
    """Add Delta Lake, the jars and securepipe's secure defaults to a session builder.

    Args:
        builder: a `SparkSession.builder` (possibly already configured by the caller).
        settings: the typed `spark:` section of the pipeline configuration.

    Returns:
        The same builder, for chaining; call `.getOrCreate()` in a job or a test fixture.

    Raises:
        ConfigError: `jars: local` and the jars folder lacks the Delta jars.
    """
    if settings.master:
        builder = builder.master(settings.master)
        if settings.master.startswith("local"):
            # A local run serves nothing to the network: bind the driver to loopback.
            builder = builder.config("spark.driver.bindAddress", "127.0.0.1")
            builder = builder.config("spark.driver.host", "127.0.0.1")
    builder = builder.appName(settings.app_name)
    for key, value in SECURE_DEFAULTS.items():
        builder = builder.config(key, value)
    builder = builder.config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
    builder = builder.config("spark.ui.enabled", str(settings.ui_enabled).lower())
    # Python workers must use this interpreter (the venv's): the system python3 lacks pandas,
    # pyarrow and cryptography.
    python = os.environ.get("PYSPARK_PYTHON", sys.executable)
    builder = builder.config("spark.pyspark.python", python)
    if settings.jars == "local":
        try:
            jars = local_jars(settings.jars_dir)
        except FileNotFoundError as exc:
            raise ConfigError(str(exc)) from None
        builder = builder.config("spark.jars", ",".join(str(p.resolve()) for p in jars))
    elif settings.jars == "packages":
        builder = builder.config("spark.jars.packages", ",".join(MAVEN_COORDINATES))
        builder = builder.config("spark.jars.ivy", str(Path(settings.ivy_dir).resolve()))
    for key, value in settings.conf.items():
        builder = builder.config(key, value)
    return builder
