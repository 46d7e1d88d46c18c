"""Tables by name (`catalog:`): two nights with an embedded Hive metastore in a temporary
lakehouse, then another process (as an analyst's notebook would) queries them by name and
finds the same rows as the paths; nothing lands in the working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from securepipe.io.generate import generate_landing
from tests.builders import write_config

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
D1, D2, D3 = "2026-10-20", "2026-10-21", "2026-10-22"

_QUERY = """
import json, sys
from pyspark.sql import SparkSession
from securepipe.errors import ConfigError
from securepipe.io.catalog import register_table
from securepipe.pipeline import load_pipeline
from securepipe.spark import configure_builder

cfg = load_pipeline(sys.argv[1]).cfg
spark = configure_builder(SparkSession.builder, cfg.spark, cfg.lakehouse, cfg.catalog).getOrCreate()
lake = cfg.lakehouse
out = {"databases": sorted(r[0] for r in spark.sql("SHOW DATABASES").collect())}
for name, path in [
    ("securepipe.customers", f"{lake}/tables/customers"),
    ("securepipe.transactions", f"{lake}/tables/transactions"),
    ("securepipe_quarantine.customers", f"{lake}/quarantine/customers"),
    ("access_analyst.customers", f"{lake}/access/analyst/customers"),
    ("access_support.customers", f"{lake}/access/support/customers"),
]:
    by_name = spark.table(name)
    by_path = spark.read.format("delta").load(path)
    out[name] = {
        "rows": by_name.count(),
        "path_rows": by_path.count(),
        "columns": by_name.columns == by_path.columns,
    }
out["analyst_regions"] = sorted(
    r[0] for r in spark.sql("SELECT DISTINCT region FROM access_analyst.customers").collect()
)
try:
    register_table(spark, "securepipe.customers", f"{lake}/tables/transactions")
    out["repointed"] = "yes"
except ConfigError as exc:
    out["repointed"] = str(exc)
print("RESULT " + json.dumps(out))
spark.stop()
"""


# Another process holding the embedded metastore (Derby admits one) until its stdin closes.
_HOLD = """
import sys
from pyspark.sql import SparkSession
from securepipe.pipeline import load_pipeline
from securepipe.spark import configure_builder

cfg = load_pipeline(sys.argv[1]).cfg
spark = configure_builder(SparkSession.builder, cfg.spark, cfg.lakehouse, cfg.catalog).getOrCreate()
spark.sql("SHOW DATABASES").collect()
print("HOLDING", flush=True)
sys.stdin.read()
spark.stop()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("catalog")

    def catalog(doc: dict[str, Any]) -> None:
        doc["catalog"] = {"metastore": "embedded"}

    config = write_config(tmp, catalog)
    for i, day in enumerate((D1, D2)):
        # 400: enough for the analyst's classes (k 5 within each date) to keep rows.
        generate_landing(tmp / "landing", day, rows=400, seed=20 + i)
    work = tmp / "work"  # the working directory of both processes
    work.mkdir()
    run = subprocess.run(
        [str(BIN / "securepipe"), "run", "--config", str(config), "--from", D1, "--to", D2],
        capture_output=True,
        text=True,
        cwd=work,
        env=_env(),
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    query = subprocess.run(
        [sys.executable, "-c", _QUERY, str(config)],
        capture_output=True,
        text=True,
        cwd=work,
        env=_env(),
        timeout=300,
    )
    assert query.returncode == 0, query.stderr[-3000:]
    [line] = [x for x in query.stdout.splitlines() if x.startswith("RESULT ")]
    return {"tmp": tmp, "work": work, "run": run, "result": json.loads(line[7:])}


def test_each_zone_is_a_database_and_each_table_a_name(named: dict[str, Any]) -> None:
    databases = set(named["result"]["databases"])
    assert {"securepipe", "securepipe_quarantine", "access_analyst", "access_support"} <= databases


def test_a_name_reads_what_its_path_holds_after_two_nights(named: dict[str, Any]) -> None:
    result = named["result"]
    for name in (
        "securepipe.customers",
        "securepipe.transactions",
        "securepipe_quarantine.customers",
        "access_analyst.customers",
        "access_support.customers",
    ):
        figures = result[name]
        assert figures["rows"] == figures["path_rows"] > 0, name
        assert figures["columns"], name
    # Two nights of 400 customers (less quarantined) under one name: the second night found
    # the names registered and left them alone.
    assert result["securepipe.customers"]["rows"] >= 700
    assert result["analyst_regions"] == ["EU"]  # the role table's row filter, by name too
    assert named["run"].stderr.count("catalog: securepipe.customers names") == 1


def test_a_name_is_never_repointed(named: dict[str, Any]) -> None:
    message = named["result"]["repointed"]
    assert message.startswith("catalog table securepipe.customers already names")
    assert "tables/transactions" in message


def test_nothing_lands_in_the_working_directory(named: dict[str, Any]) -> None:
    assert sorted(p.name for p in named["work"].iterdir()) == []
    catalog = named["tmp"] / "lakehouse" / "_catalog"
    assert (catalog / "metastore_db").is_dir() and (catalog / "derby.log").is_file()


def test_a_locked_metastore_delays_the_names_not_the_night(named: dict[str, Any]) -> None:
    # An overlapping process holds the embedded metastore: the night still publishes (its data
    # is safe and gated), warns that the names wait, and exits 0.
    config = named["tmp"] / "conf" / "pipeline.yaml"
    generate_landing(named["tmp"] / "landing", D3, rows=80, seed=22)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=named["work"],
        env=_env(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "HOLDING"
        run = subprocess.run(
            [str(BIN / "securepipe"), "run", "--config", str(config), "--date", D3, "--json"],
            capture_output=True,
            text=True,
            cwd=named["work"],
            env=_env(),
            timeout=600,
        )
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "catalog: securepipe.customers not registered" in run.stderr
    # One failure is enough: the night does not try (and wait on) every other name.
    assert run.stderr.count("not registered") == 1
    report, _ = json.JSONDecoder().raw_decode(run.stdout[run.stdout.index("{") :])
    assert {t["table"]: t["status"] for t in report["tables"]} == {
        "customers": "published",
        "transactions": "published",
    }
    # 80 customers leave no analyst class of 5 within the night: its role table had nothing to
    # write and recorded its sync in an empty commit made by path, not through the locked
    # metastore.
    [customers] = [t for t in report["tables"] if t["table"] == "customers"]
    assert customers["risk"]["analyst"]["kept"]["rows"] == 0
