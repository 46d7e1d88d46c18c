"""Nightly operations as a scheduler sees them: a killed run, overlapping runs, backfills,
JSON log lines and the exit codes. Real subprocesses, real kills."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from securepipe.io.generate import generate_landing
from tests.builders import load_cfg, write_config

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent / "securepipe"
D1, D2, D3 = "2026-09-01", "2026-09-02", "2026-09-03"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1", **extra}


def _run(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), "run", "--config", str(config), "--tables", "customers", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=400,
    )


def _delta_version(path: Path) -> int:
    log = path / "_delta_log"
    return max(int(p.stem) for p in log.glob("*.json")) if log.is_dir() else -1


@pytest.fixture
def setup(tmp_path: Path, request):
    config = write_config(tmp_path)
    if "overlapping" not in request.node.name:
        shutil.rmtree(config.parent / "access")  # role tables are not what these tests are about
    cfg = load_cfg(config)
    for i, day in enumerate((D1, D2, D3)):
        generate_landing(cfg.landing, day, rows=60, seed=100 + i)
    return config, cfg


def test_killed_run_leaves_the_table_unchanged_and_the_next_run_completes(setup, tmp_path) -> None:
    config, cfg = setup
    assert _run(config, "--date", D1).returncode == 0
    table = Path(cfg.lakehouse) / "tables" / "customers"
    before = _delta_version(table)
    marker = tmp_path / "paused"
    paused = Path(__file__).with_name("paused_run.py")
    proc = subprocess.Popen(
        [
            *(sys.executable, str(paused), str(marker), "run", "--config", str(config)),
            *("--tables", "customers", "--date", D2),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(PYTHONPATH=str(Path(__file__).resolve().parents[2])),
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, "the run ended before reaching the publish step"
        assert time.monotonic() < deadline
        time.sleep(0.5)
    # The paused night holds the lakehouse lock (shared): an erasure waits for it, then gives up
    # naming the lock.
    ids = tmp_path / "ids.txt"
    ids.write_text("C000000001\n")
    erase = subprocess.run(
        [str(BIN), "erase", "--config", str(config), "--subjects", str(ids)],
        capture_output=True,
        text=True,
        env=_env(SECUREPIPE_LOCK_WAIT="2"),
        timeout=120,
    )
    assert erase.returncode == 1
    assert f"waited 2 s for {Path(cfg.lakehouse) / '_locks' / 'lakehouse.lock'}" in erase.stderr
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its JVM, mid-run, after protection
    proc.wait(timeout=60)
    assert _delta_version(table) == before
    assert _delta_version(Path(cfg.lakehouse) / "quarantine" / "customers") == before
    # The killed run's locks died with it (flock): the next run takes them at once.
    again = _run(config, "--date", D2)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _delta_version(table) == before + 1
    from deltalake import DeltaTable

    audit = DeltaTable(str(Path(cfg.lakehouse) / "_audit" / "runs")).to_pyarrow_table()
    # The killed run wrote no audit row (it never ended); the two completed runs did.
    assert sorted(audit.column("status").to_pylist()) == ["ok", "ok"]


def test_overlapping_runs_commit_both_dates_and_a_same_date_run_is_locked_out(setup) -> None:
    config, cfg = setup
    assert _run(config, "--date", D1).returncode == 0  # the table exists
    for day in (D2, D3):  # the same 60 customers, never seen before, arrive in both runs
        path = Path(cfg.landing) / "customers" / day / "part-0000.csv"
        path.write_text(path.read_text().replace("C0000000", "N0000000"))
    cmd = [str(BIN), "run", "--config", str(config), "--tables", "customers"]
    a = subprocess.Popen(
        [*cmd, "--date", D2], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    b = subprocess.Popen(
        [*cmd, "--date", D3], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    _, err_a = a.communicate(timeout=400)
    _, err_b = b.communicate(timeout=400)
    assert a.returncode == 0, err_a[-2000:]
    assert b.returncode == 0, err_b[-2000:]
    from deltalake import DeltaTable

    table = DeltaTable(str(Path(cfg.lakehouse) / "tables" / "customers"))
    dates = table.to_pyarrow_table(columns=["run_date"]).column("run_date").to_pylist()
    assert sorted({str(d) for d in dates}) == [D1, D2, D3]
    assert len(dates) == 3 * 60  # no duplicate, no loss
    # Both runs created keys for the same new subjects at the same time: one key each (MERGE).
    store = DeltaTable(str(Path(cfg.lakehouse) / "_keys" / "subjects"))
    hashes = store.to_pyarrow_table(columns=["subject_hash"]).column("subject_hash").to_pylist()
    assert len(hashes) == len(set(hashes)) >= 2 * 60

    lock = Path(cfg.lakehouse) / "_locks" / f"nightly-{D3}.lock"
    hold = (
        "import sys, time\n"
        "from securepipe.locks import run_lock\n"
        "with run_lock(sys.argv[1], sys.argv[2]):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(lock.parent), f"nightly-{D3}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        locked = _run(config, "--date", D3)
    finally:
        holder.kill()
        holder.wait()
    assert locked.returncode == 1
    assert f"another run holds {lock} (pid {holder.pid} " in locked.stderr


def test_backfill_runs_dates_in_order_and_skips_unchanged_ones(setup, cli) -> None:
    """In this process on the session's Spark: a backfill is the command's logic, not the
    process's (the killed and overlapping runs above are real processes)."""
    config, _ = setup

    def run(*args: str) -> Any:
        return cli("run", "--config", str(config), "--tables", "customers", *args)

    first = run("--from", D1, "--to", D2, "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    docs = _json_docs(first.stdout)
    assert [d["run_date"] for d in docs] == [D1, D2]
    assert {d["tables"][0]["status"] for d in docs} == {"published"}
    second = run("--from", D1, "--to", D2, "--json")
    assert {d["tables"][0]["status"] for d in _json_docs(second.stdout)} == {"skipped"}
    forced = run("--from", D2, "--to", D2, "--force", "--json")
    assert {d["tables"][0]["status"] for d in _json_docs(forced.stdout)} == {"published"}
    # Not a terminal: every log line is a JSON object; stages carry counts and durations.
    lines = [json.loads(x) for x in first.stderr.splitlines() if x.startswith("{")]
    stages = [x for x in lines if x.get("event") == "stage"]
    assert {x["stage"] for x in stages} >= {"read+protect", "gate", "publish"}
    assert all("seconds" in x for x in stages)


def _json_docs(text: str) -> list[dict[str, Any]]:
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i] == "{":
            doc, i = decoder.raw_decode(text, i)
            docs.append(doc)
        else:
            i += 1
    return docs
