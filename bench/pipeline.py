"""The nightly job on a large synthetic batch (`make bench`): time per stage, rows/s.

Usage: python bench/pipeline.py [--rows 2000000] [--out bench-results]
Writes <out>/pipeline.json. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import SparkSession

from securepipe.config import load_config
from securepipe.generate import generate_landing
from securepipe.pipeline import run_nightly
from securepipe.spark import configure_builder

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Generate, run, report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--out", default="bench-results")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-pipeline-"))
    cfg = load_config(
        ROOT / "conf" / "pipeline.yaml",
        lakehouse=str(tmp / "lakehouse"),
        landing=str(tmp / "landing"),
        keystore={"provider": "local", "path": str(tmp / "secrets")},
        spark={
            "master": "local[2]",
            "jars_dir": str(ROOT / ".cache" / "jars"),
            "ui_enabled": False,
            "shuffle_partitions": 8,
            "conf": {"spark.driver.memory": "4g"},
        },
    )
    start = time.perf_counter()
    generate_landing(cfg.landing, "2026-11-28", rows=args.rows)
    generation = time.perf_counter() - start
    spark = configure_builder(SparkSession.builder, cfg.spark).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    start = time.perf_counter()
    result = run_nightly(spark, cfg, "2026-11-28", tables=["customers"])
    total = time.perf_counter() - start
    spark.stop()
    t = result.tables[0]
    report = {
        "benchmark": "pipeline",
        "rows": t.rows_read,
        "table": "customers",
        "master": "local[2]",
        "generation_seconds": round(generation, 1),
        "run_seconds": round(total, 1),
        "stages": t.stages,
        "rows_per_s": round(t.rows_read / total),
        "gate": {
            "passed": t.gate.get("passed"),
            "checks": [c["name"] for c in t.gate["checks"]],
            "expectations": len(t.gate["expectations"]),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
