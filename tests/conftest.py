"""Shared fixtures: one local SparkSession with Delta for the whole test session, and helpers."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from securepipe.config import PipelineConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "pipeline.yaml"


def make_config(tmp: Path, **overrides: object) -> PipelineConfig:
    """The shipped configuration, pointed at temporary lakehouse, landing and key store."""
    values: dict[str, object] = {
        "lakehouse": str(tmp / "lakehouse"),
        "landing": str(tmp / "landing"),
        "keystore": {"provider": "local", "path": str(tmp / "secrets")},
        "spark": {
            "master": "local[2]",
            "jars": "local",
            "jars_dir": str(ROOT / ".cache" / "jars"),
            "ui_enabled": False,
            "shuffle_partitions": 2,
            "conf": {"spark.databricks.delta.snapshotPartitions": "2"},
        },
    }
    values.update(overrides)
    return load_config(CONF, **values)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One `local[2]` session, UI off, two shuffle partitions, Delta on (jars from .cache/jars)."""
    from pyspark.sql import SparkSession

    from securepipe.spark import configure_builder

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    cfg = make_config(tmp_path_factory.mktemp("spark-session"))
    warehouse = tmp_path_factory.mktemp("warehouse")
    builder = configure_builder(SparkSession.builder, cfg.spark).config(
        "spark.sql.warehouse.dir", str(warehouse)
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
