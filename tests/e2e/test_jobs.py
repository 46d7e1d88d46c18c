"""The jobs as a user runs them: spark-submit and the `securepipe` command, with exit codes."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from securepipe.config import KeyStoreConfig
from securepipe.io.generate import generate_landing
from securepipe.jars import local_jars
from tests.builders import CONF, ROOT, provision_keys

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def _config(tmp: Path, **spark: object) -> Path:
    doc = yaml.safe_load(CONF.read_text())
    doc["lakehouse"] = str(tmp / "lakehouse")
    doc["landing"] = str(tmp / "landing")
    doc["keystore"] = {"provider": "local", "path": str(tmp / "secrets")}
    doc["spark"].update(
        {
            "shuffle_partitions": 2,
            "ui_enabled": False,
            "jars_dir": str(ROOT / ".cache" / "jars"),
            "conf": {
                "spark.databricks.delta.snapshotPartitions": "2",
                "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
            },
            **spark,
        }
    )
    shutil.copytree(CONF.parent / "gates", tmp / "gates", dirs_exist_ok=True)
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    provision_keys(KeyStoreConfig.model_validate(doc["keystore"]))
    return path


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def test_spark_submit_nightly_publishes_and_exits_0(tmp_path: Path) -> None:
    cfg = _config(tmp_path, jars="provided", master=None)
    generate_landing(tmp_path / "landing", "2026-11-27", rows=100)
    jars = ",".join(str(p) for p in local_jars(ROOT / ".cache" / "jars"))
    proc = subprocess.run(
        [
            str(BIN / "spark-submit"),
            "--master",
            "local[2]",
            "--jars",
            jars,
            "--conf",
            "spark.ui.enabled=false",
            str(ROOT / "jobs" / "nightly.py"),
            "--config",
            str(cfg),
            "--date",
            "2026-11-27",
            "--tables",
            "customers",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "customers" in proc.stdout and "104" in proc.stdout
    assert (tmp_path / "lakehouse" / "tables" / "customers" / "_delta_log").is_dir()
    # No key material in anything the job printed (driver, executors, Spark's own logging).
    from securepipe.config import KeyStoreConfig
    from securepipe.crypto import keycache
    from securepipe.crypto.keyring import Keyring

    store = KeyStoreConfig(provider="local", path=str(tmp_path / "secrets"))
    ring = Keyring(store)
    output = proc.stdout + proc.stderr
    master = (tmp_path / "secrets" / "master.key").read_text().strip()
    assert master not in output
    for name in ring.names():
        for key in keycache.data_keys(ring.handle(name)).values():
            assert key.hex() not in output.lower()
            assert base64.b64encode(key).decode() not in output


def test_bad_config_exits_1_with_one_line_naming_the_file(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    doc = yaml.safe_load(cfg.read_text())
    del doc["tables"]["customers"]["columns"]["ssn"]["classification"]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = subprocess.run(
        [str(BIN / "securepipe"), "run", "--config", str(cfg), "--date", "2026-11-27"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("securepipe: error:")]
    assert errors == [
        f"securepipe: error: {cfg}: table 'customers', column 'ssn', key 'classification': "
        "Field required"
    ]


def test_bad_date_exits_1(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(BIN / "securepipe"),
            "run",
            "--config",
            str(_config(tmp_path)),
            "--date",
            "28/11/2026",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 1
    assert "securepipe: error: run date '28/11/2026' is not an ISO date" in proc.stderr


def test_run_without_a_master_key_exits_1_and_keys_init_creates_it(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    master = tmp_path / "secrets" / "master.key"
    shutil.rmtree(master.parent)  # a key store path that resolves somewhere new
    securepipe = str(BIN / "securepipe")
    proc = subprocess.run(
        [securepipe, "run", "--config", str(cfg), "--date", "2026-11-27"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 1
    assert (
        f"securepipe: error: master key file {master} does not exist; run `securepipe keys init`"
        in proc.stderr
    )
    # Refused before anything was made: no new key hierarchy, no lakehouse, no Spark.
    assert not master.parent.exists()
    assert not (tmp_path / "lakehouse").exists()
    assert "SparkContext" not in proc.stderr
    init = subprocess.run(
        [securepipe, "keys", "init", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert init.returncode == 0, init.stderr[-2000:]
    assert master.exists() and master.stat().st_mode & 0o777 == 0o600


def test_demo_creates_its_master_key_and_publishes_two_nights_and_a_rerun(tmp_path: Path) -> None:
    """The README's first command (`make demo` runs `securepipe demo`) on a fresh key store."""
    cfg = _config(tmp_path)
    master = tmp_path / "secrets" / "master.key"
    shutil.rmtree(master.parent)
    proc = subprocess.run(
        [
            *(str(BIN / "securepipe"), "demo", "--config", str(cfg)),
            *("--rows", "200", "--date", "2026-11-28"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert master.exists() and master.stat().st_mode & 0o777 == 0o600
    assert "created a NEW local master key" in proc.stderr
    for label in ("night 1: 2026-11-27", "night 2: 2026-11-28", "re-run of night 2: 2026-11-28"):
        assert f"=== {label} ===" in proc.stdout
    from deltalake import DeltaTable

    table = DeltaTable(str(tmp_path / "lakehouse" / "tables" / "customers"))
    dates = table.to_pyarrow_table(columns=["run_date"]).column("run_date").to_pylist()
    assert sorted({str(d) for d in dates}) == ["2026-11-27", "2026-11-28"]
