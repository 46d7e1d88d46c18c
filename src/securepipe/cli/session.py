"""What every command does first: load the configuration (one load step), open one session."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from pyspark.sql import SparkSession

from securepipe.layout import Layout
from securepipe.locks import lakehouse_lock
from securepipe.logs import json_logs
from securepipe.pipeline.load import Loaded, load_pipeline
from securepipe.spark import configure_builder, submitted_file

__all__ = ["exclusive_session", "load", "spark_session"]

_DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def _config_path(name: str) -> str:
    """`--config` as given, or the copy shipped with `spark-submit --files` of that name."""
    if Path(name).exists():
        return name
    shipped = submitted_file(name)
    return str(shipped) if shipped is not None else name


def load(args: argparse.Namespace) -> Loaded:
    """The validated configuration and access policy named by `--config` (with the
    `--lakehouse` / `--landing` / `--metrics-file` overrides), before Spark starts."""
    loaded = load_pipeline(
        _config_path(args.config),
        lakehouse=getattr(args, "lakehouse", None),
        landing=getattr(args, "landing", None),
    )
    metrics_file = getattr(args, "metrics_file", None)
    if metrics_file:
        # Relative to the working directory, as `--lakehouse` is.
        monitoring = loaded.cfg.monitoring.model_copy(
            update={"metrics_file": os.path.abspath(metrics_file)}
        )
        cfg = loaded.cfg.model_copy(update={"monitoring": monitoring})
        loaded = dataclasses.replace(loaded, cfg=cfg)
    return loaded


@contextmanager
def spark_session(loaded: Loaded) -> Iterator[SparkSession]:
    """One session for one command, stopped however the command ends."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    cfg = loaded.cfg
    java = _json_jvm_logs(cfg.spark.conf) if json_logs(sys.stderr) else []
    builder = configure_builder(
        SparkSession.builder, cfg.spark, cfg.lakehouse, cfg.catalog, driver_java_options=java
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    try:
        yield spark
    finally:
        spark.stop()


@contextmanager
def exclusive_session(loaded: Loaded, what: str) -> Iterator[SparkSession]:
    """The lakehouse lock held exclusively, *then* one session: a command that waits for a night
    (or gives up) holds no Spark driver. The job inside takes the same lock again at once."""
    with (
        lakehouse_lock(Layout.of(loaded.cfg), exclusive=True, what=what),
        spark_session(loaded) as spark,
    ):
        yield spark


def _json_jvm_logs(conf: Mapping[str, str]) -> list[str]:
    """The driver JVM logs JSON lines (Spark's JSON template) on the same stream as ours,
    warnings and up, unless the configuration already names a log4j2 configuration."""
    if "log4j2.configurationFile" in conf.get(_DRIVER_JAVA_OPTIONS, ""):
        return []
    path = resources.files("securepipe").joinpath("resources", "log4j2-json.properties")
    return [f"-Dlog4j2.configurationFile={path}"]
