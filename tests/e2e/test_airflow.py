"""The Airflow example as a newcomer copies it: a real Airflow (and its Spark provider) imports
both DAGs without an error, the nightly run's date is the data interval's start (yesterday), and
a gate refusal (exit 2) fails the task without a retry while other failures are retried."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.builders import ROOT

pytestmark = pytest.mark.e2e
REQUIREMENTS = ROOT / "requirements" / "airflow.txt"


def _venv() -> Path:
    """The Airflow venv, cached in .cache/airflow/ per version of requirements/airflow.txt."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = ROOT / ".cache" / "airflow" / f"venv-{digest}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(str(venv) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time
        if not (venv / ".installed").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "-r", str(REQUIREMENTS)],
                check=True,
                timeout=1200,
            )
            (venv / ".installed").touch()
    return venv


@pytest.fixture(scope="module")
def airflow(tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("airflow")
    fake = tmp / "bin" / "spark-submit"  # stands in for spark-submit: exits as told
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nexit "${FAKE_SPARK_SUBMIT_EXIT:-0}"\n')
    fake.chmod(0o755)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp / "home"),
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local"}),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    }
    proc = subprocess.run(
        [
            str(_venv() / "bin" / "python"),
            str(ROOT / "tests" / "e2e" / "airflow_check.py"),
            str(ROOT / "examples" / "airflow"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_both_dags_import_without_errors(airflow) -> None:
    assert airflow["errors"] == {}
    assert set(airflow["dags"]) == {"securepipe_nightly", "securepipe_maintenance"}
    for dag in airflow["dags"].values():
        assert all(t["type"] == "SecurepipeSubmit" for t in dag["tasks"].values())


def test_the_nightly_date_is_the_data_intervals_start(airflow) -> None:
    nightly = airflow["dags"]["securepipe_nightly"]
    assert nightly["timetable"] == "CronDataIntervalTimetable" and nightly["cron"] == "30 2 * * *"
    # The run at 02:30 on the 29th processes the 28th (under Airflow 3's default timetable
    # `{{ ds }}` would have been the 29th).
    assert airflow["rendered"][-2:] == ["--date", "2026-11-28"]


def test_maintenance_is_weekly_and_separate(airflow) -> None:
    maintenance = airflow["dags"]["securepipe_maintenance"]
    assert maintenance["cron"] == "0 5 * * 0"
    assert list(maintenance["tasks"]) == ["maintenance"]
    assert list(airflow["dags"]["securepipe_nightly"]["tasks"]) == ["nightly"]


def test_a_gate_refusal_is_not_retried_but_other_failures_are(airflow) -> None:
    assert airflow["dags"]["securepipe_nightly"]["tasks"]["nightly"]["retries"] == 2
    assert airflow["exit_codes"] == {
        "0": "success",
        "1": "failed, retried",
        "2": "failed, no retry",
    }
