"""Shared builders of test configurations (imported by test modules and fixtures alike)."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from securepipe.access.policy import AccessPolicy
from securepipe.config import KeyStoreConfig, PipelineConfig
from securepipe.crypto.keyring import Keyring
from securepipe.pipeline import load_pipeline

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "pipeline.yaml"
# JIT settings for the JVMs the tests start: C1 only (no C2). The tests' JVMs live for a few
# tiny nights, where C2 spends more CPU compiling than its code saves: one `securepipe run` of a
# 60-row night took 52 s of CPU and 31 s wall with both compilers, 33 s and 27 s with C1 alone
# (measured on this 2-core machine, idle). The product's own JVM options are left alone.
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"


def load_cfg(path: str | Path, **overrides: Any) -> PipelineConfig:
    """The configuration at `path` after the full load step (`load_pipeline`)."""
    return load_pipeline(path, **overrides).cfg


def loaded(path: str | Path) -> tuple[PipelineConfig, AccessPolicy]:
    """The configuration at `path` and the access policy beside it (which must exist)."""
    result = load_pipeline(path)
    assert result.policy is not None, f"no access policy beside {path}"
    return result.cfg, result.policy


def provision_keys(store: KeyStoreConfig) -> None:
    """Create the key store's master key, as `securepipe keys init` does before a first run
    (`run` never creates one)."""
    Keyring(store, create=True)


def make_config(tmp: Path, **overrides: object) -> PipelineConfig:
    """The shipped configuration, pointed at temporary lakehouse, landing and a provisioned
    local key store."""
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
            "conf": {
                "spark.databricks.delta.snapshotPartitions": "2",
                "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
            },
        },
    }
    values.update(overrides)
    cfg = load_cfg(CONF, **values)
    if cfg.keystore.provider == "local":
        provision_keys(cfg.keystore)
    return cfg


def write_config(
    tmp: Path,
    mutate: Callable[[dict[str, Any]], None] | None = None,
    gates: dict[str, Any] | None = None,
    access: bool = True,
) -> Path:
    """A copy of conf/ under `tmp`, pointed at tmp folders (the local key store provisioned),
    with optional changes; without the access policy when `access` is false (a config the
    shipped policy would rightly refuse)."""
    conf = tmp / "conf"
    shutil.copytree(CONF.parent, conf, dirs_exist_ok=True)
    if not access:
        shutil.rmtree(conf / "access")
    doc = yaml.safe_load(CONF.read_text())
    doc.update(
        lakehouse=str(tmp / "lakehouse"),
        landing=str(tmp / "landing"),
        keystore={"provider": "local", "path": str(tmp / "secrets")},
    )
    doc["spark"].update(
        jars_dir=str(ROOT / ".cache" / "jars"), ui_enabled=False, shuffle_partitions=2
    )
    if mutate:
        mutate(doc)
    for name, gate in (gates or {}).items():
        (conf / "gates" / f"{name}.yaml").write_text(yaml.safe_dump(gate, sort_keys=False))
    path = conf / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    store = KeyStoreConfig.model_validate(doc["keystore"])
    if store.provider == "local":
        provision_keys(store)
    return path


def keep_email(doc: dict[str, Any]) -> None:
    doc["tables"]["customers"]["columns"]["email"] = {
        "type": "string",
        "classification": "internal",
        "protect": {"op": "keep"},
    }


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def published_then_refused(
    spark: Any, cfg: PipelineConfig, day: str, between: Callable[[], None] | None = None
) -> None:
    """A night of `customers` published, then (after `between`, another run's work) refused by
    its row accounting, as if a row had gone missing."""
    import dataclasses

    import pytest

    from securepipe.errors import GateFailed
    from securepipe.pipeline import stages
    from securepipe.pipeline.keys import resolve_keys

    keys = resolve_keys(cfg, ["customers"])
    prepared = stages.prepare(spark, cfg, stages.read(spark, cfg, "customers", day), keys)
    try:
        evaluated = stages.evaluate(prepared, cfg, keys)
        run_id = f"failing-{day}"
        published = stages.publish(spark, cfg, prepared, evaluated, run_id)
        if between is not None:
            between()
        short = dataclasses.replace(prepared, rows_read=prepared.rows_read + 1)
        with pytest.raises(GateFailed, match=r"row accounting failed.*commits rolled back"):
            stages.check(spark, cfg, short, published, run_id)
    finally:
        prepared.batch.unpersist()
