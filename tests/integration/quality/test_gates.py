"""Compliance gates end to end: leak scan, GX suites with fail/quarantine/warn, reports without
PII, the compliance record, and the exit code contract of the CLI."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from securepipe.config import PipelineConfig
from securepipe.errors import ConfigError, GateFailed
from securepipe.io.delta import current_version, history
from securepipe.io.generate import generate_landing
from securepipe.layout import Layout
from securepipe.pipeline import run_nightly
from tests.builders import keep_email, load_cfg, write_config

pytestmark = pytest.mark.spark
DAY1, DAY2 = "2026-11-20", "2026-11-21"


def _plant(
    landing: Path, table: str, day: str, column: str, values: list[str], first: int = 1
) -> None:
    """Overwrite `column` in the rows of a landing file from row `first` on."""
    path = landing / table / day / "part-0000.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    idx = rows[0].index(column)
    for i, value in enumerate(values, start=first):
        rows[i][idx] = value
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def _report_text(cfg: PipelineConfig) -> str:
    root = Path(cfg.lakehouse) / "reports"
    files = sorted(root.rglob("*.json")) + sorted(root.rglob("*.html"))
    assert files, "no report written"
    return "\n".join(f.read_text() for f in files)


@pytest.fixture(scope="module")
def published(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gates-ok")
    cfg = load_cfg(write_config(tmp))
    generate_landing(cfg.landing, DAY1, rows=150, seed=5)
    _plant(Path(cfg.landing), "customers", DAY1, "region", ["ATLANTIS", "ATLANTIS"])
    _plant(Path(cfg.landing), "customers", DAY1, "city", ["PLANTED_CITY_XYZ"])
    # Above the warn maximum, in a row that breaks no other rule.
    _plant(Path(cfg.landing), "customers", DAY1, "balance", ["20000000.00"], first=20)
    _plant(Path(cfg.landing), "transactions", DAY1, "currency", ["XXX"])
    _plant(Path(cfg.landing), "transactions", DAY1, "txn_id", ["T-DUP", "T-DUP"])
    return cfg, run_nightly(spark, cfg, DAY1)


def test_rule_breaking_rows_are_quarantined_with_reasons_and_counted(published, spark) -> None:
    cfg, result = published
    customers = next(t for t in result.tables if t.table == "customers")
    assert customers.reasons["UNKNOWN_REGION"] == 2
    assert customers.rows_quarantined == 4 + 2
    txns = next(t for t in result.tables if t.table == "transactions")
    assert txns.reasons["UNKNOWN_CURRENCY"] == 1
    assert txns.reasons["DUPLICATE_KEY:txn_id"] == 2
    assert txns.rows_read == txns.rows_published + txns.rows_quarantined
    q = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    atlantis = q.where("array_contains(_reasons, 'UNKNOWN_REGION')")
    assert atlantis.count() == 2
    assert dict(q.dtypes)["full_name"] == "binary"  # the quarantined row is protected too


def test_warn_expectation_does_not_block_and_is_reported(published) -> None:
    _, result = published
    customers = next(t for t in result.tables if t.table == "customers")
    assert customers.status == "published" and customers.gate["passed"] is True
    warned = "customers_quality:expect_column_values_to_be_between(balance)"
    assert customers.gate["warnings"] == [warned]
    (balance,) = [e for e in customers.gate["expectations"] if e.get("column") == "balance"]
    assert (balance["action"], balance["success"], balance["unexpected_count"]) == (
        "warn",
        False,
        1,
    )
    # The planted row is published all the same (a warning never routes rows aside).
    assert "BALANCE" not in " ".join(customers.reasons)
    transactions = next(t for t in result.tables if t.table == "transactions")
    assert transactions.gate["warnings"] == []


def test_compliance_record_parses_and_matches_the_run(published, spark) -> None:
    from delta.tables import DeltaTable

    cfg, result = published
    customers = next(t for t in result.tables if t.table == "customers")
    last = DeltaTable.forPath(spark, Layout.of(cfg).table("customers")).history(1).collect()[0]
    record = json.loads(last["userMetadata"])
    assert record["run_id"] == result.run_id
    assert record["job"] == "nightly" and record["securepipe"]
    assert record["config_hash"] == cfg.fingerprint() == result.config_hash
    assert record["key_versions"]["quarantine"] == 1
    assert record["rows_read"] == customers.rows_read
    assert record["rows_published"] == customers.rows_published
    assert record["rows_quarantined"] == customers.rows_quarantined
    assert record["gates"]["passed"] is True
    assert record["gates"]["checks"] == {"leak_scan": "pass", "well_formed_protection": "pass"}
    [entry] = record["input_files"]
    landing = Path(cfg.landing) / "customers" / DAY1 / "part-0000.csv"
    assert entry["sha256"] == hashlib.sha256(landing.read_bytes()).hexdigest()


def _command(*args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [str(Path(sys.executable).parent / "securepipe"), *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_history_cli_prints_the_record(spark, published) -> None:
    cfg, result = published
    proc = _command("history", "customers", "--json", "--config", cfg.source_file)
    assert proc.returncode == 0, proc.stderr[-2000:]
    entries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert entries[0]["record"]["run_id"] == result.run_id
    # Read from the Delta log by delta-rs, without a JVM: the same entries Spark reads (the
    # times differ by milliseconds: delta-rs reads the commit's own timestamp, Spark the file's).
    spark_entries = history(spark, Layout.of(cfg).table("customers"))

    def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "timestamp"} for r in rows]

    assert without_time(entries) == without_time(spark_entries)
    for ours, theirs in zip(entries, spark_entries, strict=True):
        gap = datetime.fromisoformat(ours["timestamp"]) - datetime.fromisoformat(
            theirs["timestamp"]
        )
        assert abs(gap.total_seconds()) < 5
    assert "incubator" not in proc.stderr  # the JVM's start-up notice: no JVM was started
    lines = _command("history", "customers", "--config", cfg.source_file, "--limit", "1").stdout
    assert f"run_id={result.run_id}" in lines.splitlines()[1]  # for people: one line a commit


def test_audit_cli_lists_the_run_without_a_jvm(published) -> None:
    cfg, result = published
    proc = _command("audit", "--config", cfg.source_file)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [row] = [line for line in proc.stdout.splitlines() if result.run_id in line]
    assert " ok " in row and "nightly" in row
    assert "incubator" not in proc.stderr
    as_json = _command("audit", "--config", cfg.source_file, "--json")
    docs = [json.loads(line) for line in as_json.stdout.splitlines()]
    [doc] = [d for d in docs if d["run_id"] == result.run_id]
    assert (
        doc["status"] == "ok"
        and doc["tables"]["customers"]["version"] == result.tables[0].table_version
    )
    missing = _command("audit", "--config", cfg.source_file, "--lakehouse", "/nonexistent/lake")
    assert missing.returncode == 1 and "is not a Delta table" in missing.stderr


def test_reports_hold_counts_but_no_planted_value(published) -> None:
    cfg, result = published
    text = _report_text(cfg)
    assert result.run_id in text and "UNKNOWN_REGION" in text
    for planted in ("ATLANTIS", "PLANTED_CITY_XYZ", "XXX", "T-DUP"):
        assert planted not in text


def test_email_kept_in_clear_by_mistake_fails_the_leak_scan(spark, tmp_path) -> None:
    good = load_cfg(write_config(tmp_path / "a"))
    generate_landing(good.landing, DAY1, rows=60, seed=9)
    generate_landing(good.landing, DAY2, rows=60, seed=10)
    first = run_nightly(spark, good, DAY1, tables=["customers"]).tables[0]
    bad = load_cfg(write_config(tmp_path / "a", keep_email, access=False))
    with pytest.raises(GateFailed) as err:
        run_nightly(spark, bad, DAY2, tables=["customers"])
    message = str(err.value)
    assert "table 'customers': leak_scan" in message and "0 published" in message
    assert current_version(spark, Layout.of(bad).table("customers")) == first.table_version
    assert (
        current_version(spark, Layout.of(bad).quarantine("customers")) == first.quarantine_version
    )
    result = err.value.result
    verdict = result.tables[0].gate  # type: ignore[attr-defined]
    leak = next(c for c in verdict["checks"] if c["name"] == "leak_scan")
    # Every valid row; the 4 rejected rows keep only their key and subject in clear.
    assert leak["counts"] == {"leak:email:email": 60}
    emails = {
        r["email"]
        for r in csv.DictReader(
            (Path(bad.landing) / "customers" / DAY2 / "part-0000.csv").open(encoding="utf-8")
        )
        if r.get("email")
    }
    text = _report_text(bad)
    assert "leak:email:email" in text
    assert not [e for e in emails if e in text]


def test_cli_exits_2_when_a_gate_fails(tmp_path) -> None:
    import subprocess
    import sys

    path = write_config(tmp_path, keep_email, access=False)
    cfg = load_cfg(path)
    generate_landing(cfg.landing, DAY1, rows=40, seed=2)
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "securepipe"),
            "run",
            "--config",
            str(path),
            "--date",
            DAY1,
            "--tables",
            "customers",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("securepipe: error:")]
    assert "gate failed" in line and "leak_scan" in line
    assert not (Path(cfg.lakehouse) / "tables" / "customers").exists()
    # One log stream (stderr is not a terminal): JSON lines, Spark's own included; ours name
    # the job, run and date, and the table's stages the table. Only the JVM's start-up notice
    # and the final error line are plain text.
    plain = [
        ln
        for ln in proc.stderr.splitlines()
        if not ln.startswith("{")
        and not ln.startswith("securepipe: error:")
        and not ln.startswith("WARNING: Using incubator modules")
    ]
    assert not plain, plain
    logs = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
    ours = [doc for doc in logs if doc["logger"].startswith("securepipe")]
    assert ours and all(doc["run_date"] == DAY1 and doc["job"] == "nightly" for doc in ours)
    assert len({doc["run_id"] for doc in ours}) == 1
    stages = [doc for doc in ours if doc.get("event") == "stage"]
    assert stages and all(doc["table"] == "customers" for doc in stages)


def test_fail_expectation_blocks_publication(spark, tmp_path) -> None:
    gate = {
        "expectations": [
            {
                "expectation": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "city", "value_set": ["Nowhere"]},
                "action": "fail",
            },
        ]
    }

    def use_strict_gate(doc: dict[str, Any]) -> None:
        doc["tables"]["customers"]["gates"] = ["strict"]

    cfg = load_cfg(write_config(tmp_path, use_strict_gate, {"strict": gate}))
    generate_landing(cfg.landing, DAY1, rows=30, seed=4)
    _plant(Path(cfg.landing), "customers", DAY1, "city", ["PLANTED_CITY_ABC"])
    with pytest.raises(GateFailed, match=r"strict:expect_column_values_to_be_in_set\(city\)"):
        run_nightly(spark, cfg, DAY1, tables=["customers"])
    assert current_version(spark, Layout.of(cfg).table("customers")) == -1
    text = _report_text(cfg)
    assert '"unexpected_count": 30' in text
    assert "PLANTED_CITY_ABC" not in text


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        (
            {"expectations": [{"expectation": "expect_the_moon", "kwargs": {}}]},
            "unknown Great Expectations expectation",
        ),
        (
            {
                "expectations": [
                    {
                        "expectation": "expect_column_values_to_be_between",
                        "kwargs": {"column": "balance", "min_value": "low"},
                    }
                ]
            },
            "invalid arguments",
        ),
        (
            {
                "expectations": [
                    {
                        "expectation": "expect_column_values_to_not_be_null",
                        "kwargs": {"column": "nope"},
                    }
                ]
            },
            "table 'customers' has no column 'nope'",
        ),
        (
            {
                "expectations": [
                    {
                        "expectation": "expect_column_mean_to_be_between",
                        "kwargs": {"column": "balance", "min_value": 0},
                        "action": "quarantine",
                    }
                ]
            },
            "action 'quarantine' needs a row-level expectation",
        ),
        (
            {
                "expectations": [
                    {
                        "expectation": "expect_column_values_to_not_be_null",
                        "kwargs": {"column": "email"},
                        "action": "explode",
                    }
                ]
            },
            "expectations.0.action",
        ),
    ],
    ids=["unknown", "bad-kwargs", "unknown-column", "not-row-level", "bad-action"],
)
def test_bad_gate_files_are_refused_before_spark(tmp_path, gate, message) -> None:
    def use(doc: dict[str, Any]) -> None:
        doc["tables"]["customers"]["gates"] = ["broken"]

    path = write_config(tmp_path, use, {"broken": gate})
    with pytest.raises(ConfigError) as err:
        load_cfg(path)
    assert "broken.yaml" in str(err.value) and message in str(err.value)


def test_missing_gate_file_is_refused(tmp_path) -> None:
    def use(doc: dict[str, Any]) -> None:
        doc["tables"]["customers"]["gates"] = ["absent"]

    with pytest.raises(ConfigError, match=r"gate 'absent': cannot read .*absent.yaml"):
        load_cfg(write_config(tmp_path, use))
