"""spark-submit onto a real standalone cluster on 127.0.0.1 (master + worker from the pip package),
hardened as `conf/spark-defaults.conf` says: authentication with a shared secret and encrypted
RPC. The package goes as a wheel (`--py-files`), Delta as `--jars`, the configuration as `--files`,
exactly as the README's cluster line. `make cluster-test` runs this file alone."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from securepipe.io.generate import generate_landing
from securepipe.jars import local_jars
from tests.builders import ROOT, free_port, write_config

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
DEFAULTS = ROOT / "conf" / "spark-defaults.conf"
DAY = "2026-10-12"


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise RuntimeError(f"{log.name}: no {text!r}:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A master and one worker (1 core, 1 GiB) with `spark.authenticate` and network crypto on;
    both stopped by PID afterwards."""
    tmp = tmp_path_factory.mktemp("cluster")
    secret = secrets.token_hex(32)
    port, master_ui, worker_ui = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "_SPARK_AUTH_SECRET": secret,  # Spark's own variable for daemons; never a file or argv
        "SPARK_LOG_DIR": str(tmp),
        "PYSPARK_PYTHON": sys.executable,
    }
    url = f"spark://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    logs = {"master": tmp / "master.log", "worker": tmp / "worker.log"}
    commands = {
        "master": [
            "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(master_ui),
        ],
        "worker": [
            "org.apache.spark.deploy.worker.Worker", url,
            "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
            "--webui-port", str(worker_ui), "--work-dir", str(tmp / "work"),
        ],
    }  # fmt: skip
    try:
        for name, args in commands.items():
            with logs[name].open("wb") as out:
                proc = subprocess.Popen(
                    [str(BIN / "spark-class"), *args, "--properties-file", str(DEFAULTS)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            procs.append(proc)
            ready = "I have been elected leader" if name == "master" else "Successfully registered"
            _wait_for(logs[name], ready, proc, 90)
        yield {"url": url, "secret": secret, "logs": logs, "tmp": tmp}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as `make dist` builds it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, cwd=out,
    )  # fmt: skip
    (whl,) = out.glob("securepipe-*.whl")
    return whl


def _submit(
    cluster: dict[str, Any], app: list[str], name: str, extra_env: dict[str, str], cwd: Path
) -> subprocess.Popen[str]:
    jars = ",".join(str(p) for p in local_jars(ROOT / ".cache" / "jars"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREPIPE_SPARK_AUTH")}
    env.update(
        {
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SECUREPIPE_LOG_FORMAT": "json",
            **extra_env,
        }
    )
    return subprocess.Popen(
        [
            str(BIN / "spark-submit"),
            "--master", cluster["url"],
            "--properties-file", str(DEFAULTS),
            "--name", name,
            "--jars", jars,
            "--conf", "spark.cores.max=1",
            "--conf", "spark.ui.enabled=false",
            *app,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )  # fmt: skip


def test_nightly_on_the_standalone_cluster_publishes(
    cluster: dict[str, Any], wheel: Path, tmp_path: Path
) -> None:
    def provided(doc: dict[str, Any]) -> None:
        doc["spark"].update(jars="provided", shuffle_partitions=2)
        doc["spark"]["conf"] = {
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
        }

    config = write_config(tmp_path, provided)
    generate_landing(tmp_path / "landing", DAY, rows=120, seed=11)
    secret_file = tmp_path / "spark-secret"
    secret_file.write_text(cluster["secret"] + "\n")
    secret_file.chmod(0o600)
    run_dir = tmp_path / "submit"  # the configuration is not here: it arrives through --files
    run_dir.mkdir()
    app = [
        "--py-files", str(wheel),
        "--files", str(config),
        str(ROOT / "jobs" / "nightly.py"),
        "--config", "pipeline.yaml", "--date", DAY, "--tables", "customers",
    ]  # fmt: skip
    proc = _submit(
        cluster, app, "securepipe-nightly", {"SECUREPIPE_SPARK_AUTH_SECRET_FILE": str(secret_file)},
        run_dir,
    )  # fmt: skip
    output, _ = proc.communicate(timeout=420)
    assert proc.returncode == 0, output[-4000:]

    # It ran on the cluster: the master registered the app and the worker launched an executor.
    master_log = cluster["logs"]["master"].read_text(errors="replace")
    # The submitter's --name wins over the config's spark.app_name ("securepipe").
    assert "Registered app securepipe-nightly with ID" in master_log
    assert "Asked to launch executor" in cluster["logs"]["worker"].read_text(errors="replace")

    from deltalake import DeltaTable

    lakehouse = tmp_path / "lakehouse"
    table = DeltaTable(str(lakehouse / "tables" / "customers"))
    published = table.to_pyarrow_table().num_rows
    quarantined = DeltaTable(str(lakehouse / "quarantine" / "customers")).to_pyarrow_table()
    assert published + quarantined.num_rows == 124  # 120 good rows + 4 malformed
    assert published == 120
    assert table.history(1)[0]["userMetadata"]
    assert (lakehouse / "access" / "analyst" / "customers" / "_delta_log").is_dir()
    # The secret reached Spark but no log line: not the driver's, not the daemons'.
    for text in (output, master_log, cluster["logs"]["worker"].read_text(errors="replace")):
        assert cluster["secret"] not in text
    for stderr in (cluster["tmp"] / "work").rglob("stderr"):
        assert cluster["secret"] not in stderr.read_text(errors="replace")


PROBE = (
    "from pyspark.sql import SparkSession\nSparkSession.builder.getOrCreate().range(5).count()\n"
)


def test_the_probe_with_the_secret_is_accepted(cluster: dict[str, Any], tmp_path: Path) -> None:
    """The control for the refusal test below: same probe, right secret, registers and runs."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    app = ["--conf", f"spark.authenticate.secret={cluster['secret']}", str(probe)]
    proc = _submit(cluster, app, "probe-with-secret", {}, tmp_path)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-3000:]
    assert "Registered app probe-with-secret" in cluster["logs"]["master"].read_text()


@pytest.mark.parametrize("secret", ["none", "wrong"])
def test_an_application_without_the_secret_is_refused(
    cluster: dict[str, Any], tmp_path: Path, secret: str
) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    name = f"intruder-{secret}"
    if secret == "none":
        # No secret, and authentication off on the client side.
        app = ["--conf", "spark.authenticate=false", "--conf", "spark.network.crypto.enabled=false"]
    else:
        app = ["--conf", f"spark.authenticate.secret={secrets.token_hex(32)}"]
    proc = _submit(cluster, [*app, str(probe)], name, {}, tmp_path)
    reason = "Unknown challenge message" if secret == "none" else "Authentication failed"
    # The driver retries registration for a minute before giving up; stop at its first refusal,
    # once the refusal's cause (logged after the warning, with its stack trace) has been read too.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        seen = "".join(lines)
        if "Failed to connect to master" in seen and reason in seen:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    reader.join(timeout=10)
    output = "".join(lines)
    assert "Failed to connect to master" in output, output[-3000:]
    assert reason in output, output[-3000:]
    master_log = cluster["logs"]["master"].read_text(errors="replace")
    assert f"Registered app {name}" not in master_log
    assert "Connected to Spark cluster" not in output
    assert "Job 0 finished" not in output


def test_the_hardened_profile_turns_on_what_the_readme_promises() -> None:
    props = dict(
        line.split(None, 1)
        for line in DEFAULTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert props["spark.authenticate"].strip() == "true"
    assert props["spark.network.crypto.enabled"].strip() == "true"
    assert props["spark.network.crypto.saslFallback"].strip() == "false"
    assert props["spark.io.encryption.enabled"].strip() == "true"
    assert props["spark.acls.enable"].strip() == "true"
    assert "spark.authenticate.secret" not in props  # never in a file under version control
    import re

    redaction = re.compile(props["spark.redaction.regex"].strip())
    for key in ("spark.authenticate.secret", "spark.hadoop.fs.s3a.secret.key",
                "SECUREPIPE_PKCS11_PIN", "securepipe.kms.key_id"):  # fmt: skip
        assert redaction.search(key), key
    assert not redaction.search("spark.executor.memory")
