"""The read-only commands (`show`, `history`, `audit`) on a local lakehouse: read by delta-rs,
without Spark or Great Expectations imported; lines for people, JSON lines with `--json`.

The tables here are written by delta-rs itself (no Spark in a unit test); that Spark's tables
read the same is checked in tests/integration/quality/test_gates.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import CommitProperties, write_deltalake

from securepipe.cli import _parser, main
from tests.builders import write_config

ENVELOPE = b"\x01\x00\x00\x00\x03" + bytes(40)


def _write(path: Path, table: pa.Table, record: dict[str, object]) -> None:
    props = CommitProperties(custom_metadata={"userMetadata": json.dumps(record)})
    write_deltalake(str(path), table, mode="append", commit_properties=props)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("readonly")
    config = write_config(tmp)
    customers = tmp / "lakehouse" / "tables" / "customers"
    _write(
        customers,
        pa.table({"customer_id": ["C1", "C2"], "full_name": [ENVELOPE, None]}),
        {"kind": "publish", "run_id": "run-1", "run_date": "2026-11-27", "rows_published": 2},
    )
    time.sleep(1.1)  # --as-of is given to the second
    between = datetime.now(UTC).replace(tzinfo=None)
    time.sleep(1.1)
    _write(
        customers,
        pa.table({"customer_id": ["C3"], "full_name": [ENVELOPE]}),
        {"kind": "publish", "run_id": "run-2", "run_date": "2026-11-28", "rows_published": 1},
    )
    started = [datetime(2026, 11, 28, 1, 0, tzinfo=UTC), datetime(2026, 11, 29, 1, 0, tzinfo=UTC)]
    audit = pa.table(
        {
            "run_id": ["run-1", "run-2"],
            "job": ["nightly", "nightly"],
            "run_date": ["2026-11-27", "2026-11-28"],
            "status": ["ok", "gate_failed"],
            "started_at": pa.array(started, pa.timestamp("us", tz="UTC")),
            "rows_read": [2, 5],
            "rows_published": [2, 0],
            "rows_quarantined": [0, 5],
            "message": [None, "gate leak_scan refused the batch"],
            "tables": [json.dumps({"customers": {"version": 0}}), json.dumps({})],
        }
    )
    _write(tmp / "lakehouse" / "_audit" / "runs", audit, {"kind": "audit"})
    return {"config": str(config), "between": between.strftime("%Y-%m-%d %H:%M:%S")}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_they_import_neither_spark_nor_great_expectations(lake: dict[str, object]) -> None:
    script = (
        "import sys\n"
        "from securepipe.cli import main\n"
        f"for args in (['history', 'customers'], ['show', 'customers'], ['audit']):\n"
        f"    assert main([*args, '--config', {lake['config']!r}]) == 0\n"
        "heavy = [m for m in ('pyspark', 'great_expectations', 'delta', 'pandas') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "import os; sys.stdout.flush(); os._exit(0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout


def test_a_spark_command_still_imports_spark_when_it_runs(lake: dict[str, object]) -> None:
    """The lazy handlers are really the commands: `access matrix` resolves its module."""
    script = (
        "import sys\n"
        "from securepipe.cli import main\n"
        f"code = main(['access', 'matrix', '--json', '--config', {lake['config']!r}])\n"
        "print('CODE', code, 'pyspark' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "CODE 0 True" in proc.stdout, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.splitlines()[0])
    assert "analyst" in doc["roles"] and doc["columns"]


def test_history_lines_and_json(lake: dict[str, object], capsys) -> None:
    code, out, _ = _cli(capsys, "history", "customers", "--config", str(lake["config"]))
    assert code == 0
    header, newest, oldest = out.splitlines()
    assert header.split()[:3] == ["version", "committed", "operation"]
    assert newest.split()[0] == "1" and "run_id=run-2" in newest and "run_date=2026-11-28" in newest
    assert oldest.split()[0] == "0" and "run_id=run-1" in oldest
    code, out, _ = _cli(
        capsys, "history", "customers", "--json", "--limit", "1", "--config", str(lake["config"])
    )
    [entry] = [json.loads(line) for line in out.splitlines()]
    assert entry["version"] == 1 and entry["record"]["run_id"] == "run-2"


def test_show_now_at_a_version_and_at_a_time(lake: dict[str, object], capsys) -> None:
    config = str(lake["config"])
    code, out, _ = _cli(capsys, "show", "customers", "--json", "--config", config)
    rows = sorted((json.loads(line) for line in out.splitlines()), key=lambda r: r["customer_id"])
    assert [r["customer_id"] for r in rows] == ["C1", "C2", "C3"]
    # Envelopes by size and key version, never their bytes.
    assert rows[0]["full_name"] == f"<envelope v3, {len(ENVELOPE)} bytes>"
    assert rows[1]["full_name"] is None
    code, out, _ = _cli(capsys, "show", "customers", "--version", "0", "--json", "--config", config)
    assert sorted(json.loads(line)["customer_id"] for line in out.splitlines()) == ["C1", "C2"]
    at = str(lake["between"])
    code, out, _ = _cli(capsys, "show", "customers", "--as-of", at, "--json", "--config", config)
    assert sorted(json.loads(line)["customer_id"] for line in out.splitlines()) == ["C1", "C2"]
    assert code == 0
    code, out, _ = _cli(capsys, "show", "customers", "--limit", "1", "--config", config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["customer_id", "full_name"] and lines[-1] == "(1 rows)"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--version", "7"], "no version 7 in the table's log"),
        (["--as-of", "2001-01-01 00:00:00"], "before the table's first commit"),
        (["--as-of", "yesterday"], "is not YYYY-MM-DD HH:MM:SS"),
    ],
)
def test_show_refuses_what_the_log_lacks(
    lake: dict[str, object], capsys, option: list[str], message: str
) -> None:
    code, out, err = _cli(capsys, "show", "customers", *option, "--config", str(lake["config"]))
    assert code == 1 and out == ""
    assert message in err
    code, out, _ = _cli(
        capsys, "show", "customers", *option, "--json", "--config", str(lake["config"])
    )
    assert code == 1 and message in json.loads(out)["error"]


def test_audit_newest_first_as_lines_and_json(lake: dict[str, object], capsys) -> None:
    code, out, _ = _cli(capsys, "audit", "--config", str(lake["config"]))
    lines = out.splitlines()
    assert code == 0 and "run-2" in lines[1] and "gate_failed" in lines[1]
    assert "gate leak_scan refused" in lines[2] and "run-1" in lines[3]
    code, out, _ = _cli(capsys, "audit", "--json", "--limit", "1", "--config", str(lake["config"]))
    [doc] = [json.loads(line) for line in out.splitlines()]
    assert doc["run_id"] == "run-2" and doc["tables"] == {}
    assert doc["started_at"] == "2026-11-29 01:00:00"  # UTC, naive: as Spark's UTC session


def test_an_unknown_table_is_named(lake: dict[str, object], capsys) -> None:
    code, _, err = _cli(capsys, "history", "nosuch", "--config", str(lake["config"]))
    assert code == 1 and "nosuch" in err


def _subparsers() -> dict[str, object]:
    parser = _parser()
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            return dict(action.choices)
    return {}


def test_every_command_that_prints_data_takes_json() -> None:
    commands = _subparsers()
    data = {"run", "keys", "show", "history", "audit", "access", "erase", "verify-erasure"}
    without = [
        name
        for name in data
        if not any("--json" in a.option_strings for a in commands[name]._actions)  # type: ignore[attr-defined]
    ]
    assert without == []


def test_the_installed_command_answers_with_its_own_exit_code(lake: dict[str, object]) -> None:
    """delta-rs may abort the interpreter at exit: the command still exits with its code."""
    exe = Path(sys.executable).parent / "securepipe"
    env = {**os.environ, "SECUREPIPE_LOG_FORMAT": "json"}
    ok = subprocess.run(
        [str(exe), "show", "customers", "--json", "--config", str(lake["config"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 3, ok.stderr[-2000:]
    refused = subprocess.run(
        [str(exe), "show", "customers", "--version", "9", "--config", str(lake["config"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert refused.returncode == 1 and "no version 9" in refused.stderr
