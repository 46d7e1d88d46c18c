"""Operator throughput on Spark (`make bench`): rows/s of each protection, beside Spark's built-in
`aes_encrypt` (GCM) and naive row-at-a-time Python UDFs doing the same work, in one run.

Usage: python bench/operators.py [--rows 2000000] [--out bench-results]
Writes <out>/operators.json and prints a markdown table. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import udf
from pyspark.sql.types import BinaryType, StringType

from securepipe.config import KeyConfig, KeyStoreConfig, SparkSettings
from securepipe.crypto import keycache
from securepipe.crypto.keyring import Keyring
from securepipe.protect.udfs import (
    build_daead_udf,
    build_encrypt_udf,
    build_fpe_udf,
    build_hmac_udf,
)
from securepipe.spark import configure_builder


def _time(df, label: str, rows: int, results: dict) -> None:  # type: ignore[no-untyped-def]
    df.write.format("noop").mode("overwrite").save()  # warm-up (JIT, worker start, key unwrap)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        df.write.format("noop").mode("overwrite").save()
        best = min(best, time.perf_counter() - start)
    results[label] = {"seconds": round(best, 3), "rows_per_s": round(rows / best)}
    print(f"{label:<34} {best:7.2f} s  {rows / best / 1e6:6.3f} M rows/s", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the operator benchmark."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--out", default="bench-results")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-"))
    store = KeyStoreConfig(provider="local", path=str(tmp / "secrets"))
    ring = Keyring(store, create=True)
    ring.ensure(
        {
            "aead": KeyConfig(type="aead"),
            "hmac": KeyConfig(type="hmac"),
            "daead": KeyConfig(type="daead"),
            "fpe": KeyConfig(type="fpe"),
        }
    )
    handles = {n: ring.handle(n) for n in ring.names()}
    aead_key = keycache.data_keys(handles["aead"])[1]  # for the baselines only
    hmac_key = keycache.data_keys(handles["hmac"])[1]
    settings = SparkSettings(
        master="local[2]", ui_enabled=False, shuffle_partitions=4, jars="local"
    )
    spark = configure_builder(SparkSession.builder, settings).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    rows = args.rows
    src = (
        spark.range(rows, numPartitions=4)
        .select(
            F.concat(
                F.lit("person.name."), F.col("id").cast("string"), F.lit("@example.com")
            ).alias("email"),
            F.format_string(
                "%03d-%02d-%04d",
                (F.col("id") % 899) + 1,
                (F.col("id") % 99) + 1,
                (F.col("id") % 9999) + 1,
            ).alias("ssn"),
        )
        .cache()
    )
    src.count()
    results: dict[str, dict[str, float]] = {}
    key_lit = F.unhex(F.lit(aead_key.hex()))

    _time(src.select(F.length("email")), "baseline: read cached rows", rows, results)
    _time(
        src.select(F.expr("aes_encrypt(email, unhex('" + aead_key.hex() + "'), 'GCM')")),
        "spark built-in aes_encrypt GCM",
        rows,
        results,
    )
    del key_lit

    key_bytes = aead_key

    @udf(BinaryType())
    def naive_gcm(value):  # type: ignore[no-untyped-def]
        # Imported inside: this file runs as __main__, whose globals cloudpickle ships by value.
        import os as _os

        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if value is None:
            return None
        nonce = _os.urandom(12)
        return nonce + AESGCM(key_bytes).encrypt(nonce, value.encode(), b"aad")

    @udf(StringType())
    def naive_hmac(value):  # type: ignore[no-untyped-def]
        import hashlib as _hashlib
        import hmac as _hmac

        if value is None:
            return None
        return _hmac.new(hmac_key, value.encode(), _hashlib.sha256).hexdigest()

    _time(src.select(naive_gcm("email")), "naive @udf AES-GCM", rows, results)
    _time(
        src.select(build_encrypt_udf("t", "email", handles["aead"])("email")),
        "securepipe encrypt",
        rows,
        results,
    )
    _time(src.select(naive_hmac("email")), "naive @udf HMAC-SHA256", rows, results)
    _time(
        src.select(build_hmac_udf(handles["hmac"])("email")),
        "securepipe tokenize hmac",
        rows,
        results,
    )
    _time(
        src.select(build_daead_udf(handles["daead"])("email")),
        "securepipe tokenize daead",
        rows,
        results,
    )
    _time(
        src.select(build_fpe_udf("t", "ssn", handles["fpe"], "0123456789", b"")("ssn")),
        "securepipe fpe (SSN, digits)",
        rows,
        results,
    )
    spark.stop()

    r = {k: v["rows_per_s"] for k, v in results.items()}
    ratios = {
        "encrypt_vs_builtin_aes_encrypt": round(
            r["securepipe encrypt"] / r["spark built-in aes_encrypt GCM"], 2
        ),
        "encrypt_vs_naive_udf": round(r["securepipe encrypt"] / r["naive @udf AES-GCM"], 2),
        "hmac_vs_naive_udf": round(r["securepipe tokenize hmac"] / r["naive @udf HMAC-SHA256"], 2),
        "fpe_values_per_s": r["securepipe fpe (SSN, digits)"],
    }
    targets = {
        "encrypt_vs_builtin_aes_encrypt >= 2.5": ratios["encrypt_vs_builtin_aes_encrypt"] >= 2.5,
        "hmac_vs_naive_udf >= 2": ratios["hmac_vs_naive_udf"] >= 2,
        "fpe_values_per_s >= 100000": ratios["fpe_values_per_s"] >= 100_000,
    }
    report = {
        "benchmark": "operators",
        "rows": rows,
        "master": "local[2]",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
        "ratios": ratios,
        "targets_met": targets,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "operators.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"ratios": ratios, "targets_met": targets}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
