"""One benchmark run in its own process (so that its memory is its own): the secure nightly job
or the plain job on a landing batch that already exists. `bench/scale.py` drives it.

    python bench/job.py --mode secure|plain --landing DIR --date D --work DIR --out FILE.json

secure: `run_nightly` on `customers` with the standard workload's configuration (bench/workload.py:
four protected columns, one per operator family; the shipped gate; two role tables).
plain:  the same CSV read with the same declared schema and written to Delta; no protection,
no gates, no role tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import SparkSession

from securepipe.access.policy import load_access_policy
from securepipe.config import PipelineConfig
from securepipe.crypto.keyring import Keyring
from securepipe.io.rows import parse_rows
from securepipe.io.sources import landing_path, read_landing
from securepipe.pipeline import load_pipeline, run_nightly
from securepipe.spark import configure_builder

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer  # bench/peer.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
# Heap of the one local JVM (driver and executors); recorded with the results.
DRIVER_MEMORY = os.environ.get("SECUREPIPE_BENCH_DRIVER_MEMORY", "2g")


def _event_log() -> dict[str, str]:
    """`SECUREPIPE_BENCH_EVENT_LOG=DIR`: keep Spark's event log of the run (for profiling)."""
    folder = os.environ.get("SECUREPIPE_BENCH_EVENT_LOG")
    return {"spark.eventLog.enabled": "true", "spark.eventLog.dir": folder} if folder else {}


def bench_config(
    config: Path, landing: Path, work: Path, shuffle_partitions: int = 64
) -> PipelineConfig:
    """`config` on `landing`, writing under `work`, `local[2]`.

    64 shuffle partitions, which adaptive execution coalesces to ~64 MiB each: with a fixed 8,
    the cached batch's blocks grow with the batch and, read back from disk, a 2M-row block did
    not fit a 1 GiB heap (measured: OutOfMemoryError in BlockManager.maybeCacheDiskBytesInMemory).
    """
    shipped = yaml.safe_load(config.read_text())["spark"].get("conf", {})
    cfg = load_pipeline(
        config,
        lakehouse=str(work / "lakehouse"),
        landing=str(landing),
        keystore={"provider": "local", "path": str(work / "secrets")},
        spark={
            "master": "local[2]",
            "jars_dir": str(ROOT / ".cache" / "jars"),
            "ui_enabled": False,
            "shuffle_partitions": shuffle_partitions,
            "conf": {**shipped, "spark.driver.memory": DRIVER_MEMORY, **_event_log()},
        },
    ).cfg
    Keyring(cfg.keystore, create=True)  # the master key, as `securepipe keys init` makes it
    return cfg


def _plain(spark: SparkSession, cfg: PipelineConfig, day: str) -> dict[str, Any]:
    table_cfg = cfg.table("customers")
    schema = ", ".join(f"{name} {col.type}" for name, col in table_cfg.columns.items())
    start = time.perf_counter()
    raw = (
        spark.read.option("header", True)
        .schema(schema)
        .csv(landing_path(cfg.landing, table_cfg, day))
    )
    raw.write.format("delta").mode("overwrite").save(f"{cfg.lakehouse}/plain/customers")
    total = time.perf_counter() - start
    rows = spark.read.format("delta").load(f"{cfg.lakehouse}/plain/customers").count()
    return {"rows": rows, "seconds": round(total, 2), "stages": {"read+write": round(total, 2)}}


def _read(spark: SparkSession, cfg: PipelineConfig, day: str) -> dict[str, Any]:
    """The read stage alone: read, parse and validate the batch into a noop sink."""
    table_cfg = cfg.table("customers")
    parsed = parse_rows(read_landing(spark, "customers", table_cfg, cfg.landing, day), table_cfg)
    start = time.perf_counter()
    parsed.write.format("noop").mode("overwrite").save()
    total = time.perf_counter() - start
    return {"rows": None, "seconds": round(total, 2), "stages": {"read": round(total, 2)}}


def bench_session(cfg: PipelineConfig) -> SparkSession:
    """The session every benchmark uses: `configure_builder`, quiet logs."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = configure_builder(SparkSession.builder, cfg.spark, cfg.lakehouse).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _secure(spark: SparkSession, cfg: PipelineConfig, day: str) -> dict[str, Any]:
    policy = load_access_policy(Path(cfg.source_file).parent / "access", cfg)
    start = time.perf_counter()
    result = run_nightly(spark, cfg, day, tables=["customers"], policy=policy)
    total = time.perf_counter() - start
    table = result.tables[0]
    assert table.status == "published", table.status
    return {
        "rows": table.rows_read,
        "rows_published": table.rows_published,
        "seconds": round(total, 2),
        "stages": table.stages,
        "roles": sorted(table.access),
        "gate_checks": [c["name"] for c in table.gate["checks"]],
    }


def _shipped_plain(spark: SparkSession, cfg: PipelineConfig, day: str) -> dict[str, Any]:
    """Every table of the configuration read with its declared schema and written to Delta."""
    start = time.perf_counter()
    tables = {}
    for name, table_cfg in cfg.tables.items():
        began = time.perf_counter()
        schema = ", ".join(f"{c} {col.type}" for c, col in table_cfg.columns.items())
        raw = spark.read.option("header", True).schema(schema)
        raw.csv(landing_path(cfg.landing, table_cfg, day)).write.format("delta").mode(
            "overwrite"
        ).save(f"{cfg.lakehouse}/plain/{name}")
        tables[name] = {"seconds": round(time.perf_counter() - began, 2)}
    return {"seconds": round(time.perf_counter() - start, 2), "tables": tables}


def _shipped_peer(spark: SparkSession, cfg: PipelineConfig, day: str) -> dict[str, Any]:
    """bench/peer.py: the same outputs written by hand with Spark's built-ins and GX."""
    start = time.perf_counter()
    tables = peer.run(spark, cfg.source_file, cfg.landing, day, f"{cfg.lakehouse}/peer")
    return {"seconds": round(time.perf_counter() - start, 2), "tables": tables}


def _shipped_secure(spark: SparkSession, cfg: PipelineConfig, day: str) -> dict[str, Any]:
    """`run_nightly` on every table of the shipped configuration and its access policy."""
    policy = load_access_policy(Path(cfg.source_file).parent / "access", cfg)
    start = time.perf_counter()
    result = run_nightly(spark, cfg, day, policy=policy)
    total = time.perf_counter() - start
    assert all(t.status == "published" for t in result.tables), [t.status for t in result.tables]
    return {
        "seconds": round(total, 2),
        "tables": {
            t.table: {
                "read": t.rows_read,
                "published": t.rows_published,
                "stages": t.stages,
                "roles": sorted(t.access),
            }
            for t in result.tables
        },
    }


MODES = {
    "secure": _secure,
    "plain": _plain,
    "read": _read,
    "shipped-secure": _shipped_secure,
    "shipped-peer": _shipped_peer,
    "shipped-plain": _shipped_plain,
}


def main(argv: list[str] | None = None) -> int:
    """Run one job and write its JSON result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=sorted(MODES), required=True)
    parser.add_argument("--config", required=True, help="bench/workload.py writes it")
    parser.add_argument("--landing", required=True)
    parser.add_argument("--date", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("py4j", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = bench_config(Path(args.config), Path(args.landing), Path(args.work))
    start = time.perf_counter()
    spark = bench_session(cfg)
    startup = time.perf_counter() - start
    job = MODES[args.mode]
    try:
        run = job(spark, cfg, args.date)
    finally:
        spark.stop()
    run.update(mode=args.mode, session_startup_seconds=round(startup, 2))
    Path(args.out).write_text(json.dumps(run, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
