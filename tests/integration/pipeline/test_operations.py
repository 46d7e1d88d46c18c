"""Audit log, time travel, retention and run locks, in process."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from securepipe.errors import ConfigError, GateFailed
from securepipe.io.audit import read_audit
from securepipe.io.delta import check_retention, commit_carrying, commit_log, current_version
from securepipe.io.generate import generate_landing
from securepipe.layout import Layout
from securepipe.locks import RunLocked, run_lock
from securepipe.pipeline import run_nightly
from securepipe.pipeline.maintenance import maintain
from tests.builders import keep_email, load_cfg, write_config

pytestmark = pytest.mark.spark
D1, D2 = "2026-08-01", "2026-08-02"


@pytest.fixture(scope="module")
def ran(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ops")
    cfg = load_cfg(write_config(tmp))
    generate_landing(cfg.landing, D1, rows=50, seed=1)
    generate_landing(cfg.landing, D2, rows=50, seed=2)
    r1 = run_nightly(spark, cfg, D1, tables=["customers"])
    r2 = run_nightly(spark, cfg, D2, tables=["customers"])
    bad = load_cfg(write_config(tmp, keep_email, access=False))
    with pytest.raises(GateFailed):
        run_nightly(spark, bad, D2, tables=["customers"])
    return cfg, r1, r2


def test_audit_has_one_row_per_run_with_counts_and_no_values(ran, spark) -> None:
    cfg, _, r2 = ran
    rows = read_audit(spark, Layout.of(cfg).audit).collect()
    assert [r["status"] for r in rows] == ["gate_failed", "ok", "ok"]
    latest_ok = rows[1]
    assert latest_ok["run_id"] == r2.run_id and latest_ok["job"] == "nightly"
    assert latest_ok["rows_read"] == 54 and latest_ok["rows_published"] == 50
    tables = json.loads(latest_ok["tables"])
    assert tables["customers"]["version"] == r2.tables[0].table_version
    assert json.loads(latest_ok["key_versions"])["quarantine"] == 1
    assert tables["customers"]["rows_erased"] == 0
    assert all("sha256" in f for f in json.loads(latest_ok["input_checksums"]))
    assert "leak_scan" in rows[0]["message"]
    assert rows[0]["user"] and rows[0]["host"] and rows[0]["ended_at"] >= rows[0]["started_at"]


def test_audit_table_is_append_only(ran, spark) -> None:
    from delta.tables import DeltaTable

    cfg, _, _ = ran
    with pytest.raises(Exception, match=r"(?i)append"):
        DeltaTable.forPath(spark, Layout.of(cfg).audit).delete("true")


def test_time_travel_reads_old_versions_still_protected(ran, spark) -> None:
    cfg, r1, _ = ran
    old = (
        spark.read.format("delta")
        .option("versionAsOf", r1.tables[0].table_version)
        .load(Layout.of(cfg).table("customers"))
    )
    assert {str(r["run_date"]) for r in old.select("run_date").distinct().collect()} == {D1}
    assert dict(old.dtypes)["full_name"] == "binary"
    now = spark.read.format("delta").load(Layout.of(cfg).table("customers"))
    assert now.count() == 100


def test_the_log_reader_gives_what_delta_history_gives(ran, spark, tmp_path) -> None:
    # Local tables are read from their commit files (no JVM call): every field the pipeline
    # uses must be what Delta's own `history` says, for every table the nights wrote.
    from delta.tables import DeltaTable

    cfg, _, _ = ran
    layout = Layout.of(cfg)
    paths = [layout.table("customers"), layout.quarantine("customers"), layout.audit]
    for path in paths:
        theirs = DeltaTable.forPath(spark, path).history().collect()
        ours = commit_log(spark, path)
        assert ours is not None and len(ours) == len(theirs) > 0, path
        for mine, row in zip(ours, theirs, strict=True):
            assert mine["version"] == row["version"]
            assert mine["operation"] == row["operation"]
            assert mine["userMetadata"] == row["userMetadata"]
            assert mine["operationMetrics"] == (row["operationMetrics"] or {})
            assert mine["timestamp"] == row["timestamp"]
        assert current_version(spark, path) == theirs[0]["version"]
        for row in [r for r in theirs if r["userMetadata"]][:1]:  # the audit's have none
            found = commit_carrying(spark, path, json.loads(row["userMetadata"]))
            assert (found.version, found.committed) == (row["version"], True)
    # A table with in-commit timestamps: Delta's history gives those, not the file times.
    ict = str(tmp_path / "ict")
    spark.sql(
        f"CREATE TABLE delta.`{ict}` (id LONG) USING delta "
        "TBLPROPERTIES ('delta.enableInCommitTimestamps' = 'true')"
    )
    spark.range(3).write.format("delta").mode("append").save(ict)
    for commit in (tmp_path / "ict" / "_delta_log").glob("*.json"):
        os.utime(commit, (1_000_000_000, 1_000_000_000))  # 2001: far from the commit's time
    theirs = DeltaTable.forPath(spark, ict).history().collect()
    ours = commit_log(spark, ict)
    assert ours is not None
    assert [c["timestamp"] for c in ours] == [r["timestamp"] for r in theirs]
    assert all(c["timestamp"].year > 2001 for c in ours)
    assert commit_log(spark, str(tmp_path)) is None  # not a Delta table
    assert current_version(spark, str(tmp_path / "missing")) == -1
    assert [c["version"] for c in commit_log(spark, paths[0], 1) or []] == [
        current_version(spark, paths[0])
    ]


def test_retention_below_the_safety_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="below Delta's safety threshold of 168 h"):
        check_retention(24, allow_below_safety=False)
    check_retention(24, allow_below_safety=True)
    check_retention(168, allow_below_safety=False)


def test_maintenance_vacuums_every_table_and_keeps_time_travel(ran, spark) -> None:
    cfg, r1, _ = ran
    lines = list(maintain(spark, cfg, 168))
    assert any("/tables/customers" in x for x in lines)
    assert any("/_audit/runs" in x for x in lines)
    old = (
        spark.read.format("delta")
        .option("versionAsOf", r1.tables[0].table_version)
        .load(Layout.of(cfg).table("customers"))
    )
    assert old.count() == 50
    props = spark.sql(f"SHOW TBLPROPERTIES delta.`{Layout.of(cfg).table('customers')}`").collect()
    assert {r["key"]: r["value"] for r in props}["delta.logRetentionDuration"] == "interval 7 days"


def test_maintenance_finds_role_tables_on_a_file_uri_lakehouse(spark, tmp_path) -> None:
    # The role folders were listed with pathlib for plain paths only: a `file://` (or `s3a://`)
    # lakehouse never had its role tables vacuumed. A role no longer in the policy counts too.
    from securepipe.pipeline.maintenance import delta_tables

    path = write_config(tmp_path)
    lakehouse = tmp_path / "lakehouse"
    for role in ("analyst", "removed_role"):
        spark.range(3).write.format("delta").save(str(lakehouse / "access" / role / "customers"))
    for root in (str(lakehouse), f"file://{lakehouse}"):
        found = delta_tables(spark, load_cfg(path, lakehouse=root))
        assert [p.split("/access/")[1] for p in found if "/access/" in p] == [
            "analyst/customers",
            "removed_role/customers",
        ], root


def test_run_lock_refuses_a_live_holder_and_ignores_a_leftover_file(tmp_path: Path) -> None:
    with (
        run_lock(tmp_path, "nightly-x"),
        pytest.raises(RunLocked, match="another run holds"),
        run_lock(tmp_path, "nightly-x"),
    ):
        pass
    # A pid file left by an older securepipe (or any text) is not a lock: only a live flock is.
    leftover = tmp_path / "nightly-y.lock"
    leftover.write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname().nodename}))
    with run_lock(tmp_path, "nightly-y"):
        assert json.loads(leftover.read_text())["pid"] == os.getpid()
    assert leftover.read_text() == ""  # released: the holder's details are cleared


def test_a_write_finds_its_own_commit_and_knows_an_empty_one_made_none(spark, tmp_path) -> None:
    from securepipe.io.delta import write_partitions

    path = str(tmp_path / "own")
    rows = spark.createDataFrame([(1, "2026-01-01")], "n int, d string").selectExpr(
        "n", "cast(d as date) as run_date"
    )
    # A record that does not equal itself once parsed (NaN) is still found by its text.
    first = write_partitions(rows, path, "run_date", ["2026-01-01"], {"run": 1, "x": math.nan})
    assert (first.version, first.rows_written, first.committed) == (0, 1, True)
    # Nothing to add and nothing to replace on that date: Delta makes no commit, and the write
    # says so instead of taking the newest commit (with its row count) for its own.
    empty = write_partitions(rows.where("n = 2"), path, "run_date", ["2026-01-02"], {"run": 2})
    assert (empty.version, empty.rows_written, empty.committed) == (0, 0, False)


def test_maintenance_expires_quarantine_rows_past_their_retention(spark, tmp_path) -> None:
    from datetime import date, timedelta

    from securepipe.io.delta import commit_records
    from securepipe.pipeline.maintenance import expire_quarantine

    cfg = load_cfg(write_config(tmp_path))
    path = Layout.of(cfg).quarantine("customers")
    old, recent = date.today() - timedelta(days=31), date.today() - timedelta(days=29)
    spark.createDataFrame(
        [("C1", b"sealed", old), ("C2", b"sealed", recent)],
        "customer_id string, _raw_record binary, run_date date",
    ).write.format("delta").partitionBy("run_date").save(path)
    [line] = list(expire_quarantine(spark, cfg))
    assert f"1 rows of run dates before {date.today() - timedelta(days=30)}" in line
    left = spark.read.format("delta").load(path).collect()
    assert [r["customer_id"] for r in left] == ["C2"]
    record = next(iter(commit_records(spark, path, limit=1)))
    assert record["kind"] == "retention" and record["config_hash"] == cfg.fingerprint()


def test_table_properties_from_the_local_log_equal_deltas_past_a_checkpoint(
    spark, tmp_path
) -> None:
    from delta.tables import DeltaTable

    from securepipe.io.delta import _local_properties, table_properties

    path = str(tmp_path / "t")
    spark.range(1).write.format("delta").option("delta.checkpointInterval", "3").save(path)

    def delta_says() -> dict[str, str]:
        detail = DeltaTable.forPath(spark, path).detail().first()
        assert detail is not None
        return dict(detail["properties"])

    assert table_properties(spark, path) == delta_says()
    for _ in range(4):  # past a checkpoint: the newest metadata is in it, not in a commit file
        spark.range(1).write.format("delta").mode("append").save(path)
    # Read from the checkpoint's Parquet, not by asking Delta (a Spark job every night).
    assert _local_properties(path) == delta_says()
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('securepipe.x' = 'y')")
    assert _local_properties(path) == delta_says() and delta_says()["securepipe.x"] == "y"
    for _ in range(3):  # the property now lives in a checkpoint again
        spark.range(1).write.format("delta").mode("append").save(path)
    assert _local_properties(path) == delta_says()
    assert table_properties(spark, path) == delta_says()
