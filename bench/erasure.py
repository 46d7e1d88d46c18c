"""Per-subject key encryption throughput next to per-column key encryption (`make bench`).

1,000,000 rows with 1,000,000 distinct subjects: the subject key of every row is found with a join
on the key store and unwrapped in the UDF. Writes <out>/erasure.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from job import bench_config, bench_session  # bench/ is the script's folder
from pyspark.sql import functions as F

from securepipe.io.subject_store import attach_subject_keys, ensure_subject_keys, with_subject_hash
from securepipe.layout import Layout
from securepipe.pipeline import resolve_keys
from securepipe.protect.subject_udfs import subject_expr
from securepipe.protect.udfs import build_encrypt_udf

ROOT = Path(__file__).resolve().parents[1]


def _noop(df) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Measure and write the JSON result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", default="bench-results")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-erasure-"))
    cfg = bench_config(ROOT / "conf" / "pipeline.yaml", tmp / "landing", tmp, shuffle_partitions=8)
    keys = resolve_keys(cfg, ["customers"])
    spark = bench_session(cfg)
    rows = args.rows
    src = (
        spark.range(rows, numPartitions=8)
        .select(
            F.concat(F.lit("C"), F.col("id").cast("string")).alias("customer_id"),
            F.concat(F.lit("Person Name "), F.col("id").cast("string")).alias("full_name"),
        )
        .cache()
    )
    src.count()
    hashed = with_subject_hash(src, "customer_id", keys[cfg.erasure.index_key])  # type: ignore[union-attr]
    start = time.perf_counter()
    created = ensure_subject_keys(spark, Layout.of(cfg), hashed, keys[cfg.erasure.kek])  # type: ignore[union-attr]
    provisioning = time.perf_counter() - start
    per_column = src.select(
        # Any aead column key: the shipped configuration's only one is the quarantine key.
        build_encrypt_udf("customers", "full_name", keys["quarantine"])("full_name")
    )
    _noop(per_column)
    column_s = min(_noop(per_column) for _ in range(2))
    joined = attach_subject_keys(spark, Layout.of(cfg), hashed)
    per_subject = joined.select(
        subject_expr("encrypt", "customers", "full_name", keys[cfg.erasure.kek], F.col("full_name"))
    )  # type: ignore[union-attr]
    _noop(per_subject)
    subject_s = min(_noop(per_subject) for _ in range(2))
    spark.stop()
    report = {
        "benchmark": "erasure",
        "rows": rows,
        "subjects": created,
        "master": "local[2]",
        "key_provisioning_seconds": round(provisioning, 2),
        "per_column_key": {"seconds": round(column_s, 2), "rows_per_s": round(rows / column_s)},
        "per_subject_key": {"seconds": round(subject_s, 2), "rows_per_s": round(rows / subject_s)},
        "ratio": round(column_s / subject_s, 2),
        "target_at_least_half": column_s / subject_s >= 0.5,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "erasure.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
