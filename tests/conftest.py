"""Shared fixtures: one local SparkSession with Delta for the whole test session, and helpers."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.builders import TEST_JVM_OPTIONS, free_port, make_config

# Spark settings for every JVM the tests start (the in-process session, `securepipe` and
# `spark-submit` subprocesses), through a spark-defaults.conf: the batches here are tens of rows,
# where compiling generated code for each expression costs more than it saves (a 60-row night:
# 32 s with code generation, 20 s without). Interpreted and generated evaluation give the same
# results; the product's own defaults are left alone, and `--conf` still wins.
TEST_SPARK_DEFAULTS = {
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.driver.defaultJavaOptions": TEST_JVM_OPTIONS,
    "spark.executor.defaultJavaOptions": TEST_JVM_OPTIONS,
}
_CONF_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    import tempfile

    if "SPARK_CONF_DIR" in os.environ:
        return
    conf_dir = Path(tempfile.mkdtemp(prefix="securepipe-test-spark-conf-"))
    lines = [f"{key} {value}" for key, value in TEST_SPARK_DEFAULTS.items()]
    (conf_dir / "spark-defaults.conf").write_text("\n".join(lines) + "\n")
    os.environ["SPARK_CONF_DIR"] = str(conf_dir)
    config.stash[_CONF_DIR] = conf_dir


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    conf_dir = config.stash.get(_CONF_DIR, None)
    if conf_dir is not None:
        shutil.rmtree(conf_dir, ignore_errors=True)
        os.environ.pop("SPARK_CONF_DIR", None)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One `local[2]` session, UI off, two shuffle partitions, Delta on (jars from .cache/jars)."""
    from pyspark.sql import SparkSession

    from securepipe.spark import configure_builder

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    cfg = make_config(tmp_path_factory.mktemp("spark-session"))
    warehouse = tmp_path_factory.mktemp("warehouse")
    # This JVM lives for the whole worker and runs hundreds of nights: both JIT compilers pay
    # off here (the C1-only default of TEST_SPARK_DEFAULTS is for the short-lived JVMs).
    builder = (
        configure_builder(SparkSession.builder, cfg.spark)
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.defaultJavaOptions", "-XX:TieredStopAtLevel=4")
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One SoftHSM2 token for the test session (PKCS#11 login state is per process)."""
    import shutil
    import subprocess

    util = shutil.which("softhsm2-util")
    if util is None or not Path(SOFTHSM_MODULE).exists():
        pytest.skip("SoftHSM2 is not installed: apt-get install softhsm2 (.ci/run does)")
    tmp = tmp_path_factory.mktemp("softhsm")
    tokens = tmp / "tokens"
    tokens.mkdir()
    conf = tmp / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pin = os.urandom(8).hex()
    saved = {k: os.environ.get(k) for k in ("SOFTHSM2_CONF", "SECUREPIPE_PKCS11_PIN")}
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            util,
            "--init-token",
            "--free",
            "--label",
            "securepipe-test",
            "--so-pin",
            os.urandom(8).hex(),
            "--pin",
            pin,
        ],
        check=True,
        capture_output=True,
    )
    yield {
        "module": SOFTHSM_MODULE,
        "token_label": "securepipe-test",
        "conf": str(conf),
        "pin": pin,
    }
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def softhsm(softhsm_token: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The session's SoftHSM2 token, with its PIN in the environment for this test."""
    monkeypatch.setenv("SECUREPIPE_PKCS11_PIN", softhsm_token["pin"])
    return softhsm_token


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """`moto_server` on 127.0.0.1 (AWS KMS and S3 APIs); stopped at the end of the session."""
    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    url = f"http://127.0.0.1:{port}"
    with _server([str(exe), "-H", "127.0.0.1", "-p", str(port)], url + "/moto-api/"):
        yield url


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake AWS credentials in the environment and a fresh KMS key on the moto server."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = boto3.client("kms", region_name="eu-west-1", endpoint_url=moto_server)
    key_id = client.create_key(Description="securepipe test KEK")["KeyMetadata"]["KeyId"]
    return {"endpoint_url": moto_server, "key_id": key_id, "region": "eu-west-1"}


@contextmanager
def _server(command: list[str], ready_url: str) -> Iterator[None]:
    """A server process started for the tests, ready once `ready_url` answers; stopped by PID."""
    import subprocess
    import time
    import urllib.request

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=1)  # noqa: S310 - loopback
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{Path(command[0]).name} did not start") from None
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def pushgateway() -> Iterator[str]:
    """A real Prometheus Pushgateway (Debian's `prometheus-pushgateway`) on 127.0.0.1."""
    import shutil

    exe = shutil.which("prometheus-pushgateway")
    if exe is None:
        pytest.fail("prometheus-pushgateway is not installed: `make system-deps` installs it")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _server([exe, f"--web.listen-address=127.0.0.1:{port}"], url + "/-/ready"):
        yield url


class LineageSink:
    """An OpenLineage HTTP endpoint on 127.0.0.1 that keeps every event it is sent."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        events: list[dict[str, Any]] = []
        self.events = events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                events.append({"path": self.path, **json.loads(body)})
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def lineage_sink() -> Iterator[LineageSink]:
    sink = LineageSink()
    yield sink
    sink.close()


@dataclass(frozen=True)
class CliResult:
    """What a command run in this process returned and printed (the shape of
    `subprocess.CompletedProcess`, so that assertions read the same)."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(
    spark: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> Callable[..., CliResult]:
    """Run `securepipe ARGS` in this process, on the test session's Spark (the command's
    `getOrCreate` finds it; its `stop` is held back so the session outlives the command): the
    command's whole code path from argument parsing to exit code, without the ~30 s of CPU a
    fresh JVM costs. The process-level behaviour (a real `securepipe` and `spark-submit`, exit
    codes of the process, signals) is tested in tests/e2e/."""
    from pyspark.sql import SparkSession

    from securepipe.cli import main

    monkeypatch.setattr(SparkSession, "stop", lambda self: None)
    # The command's `getOrCreate` sets its configuration's runtime settings and log level on
    # the shared session: put them back for the worker's later tests.
    before = dict(spark.conf.getAll)

    def restore() -> None:
        # Static settings (JVM options, extensions) are only recorded, never applied.
        for key in set(spark.conf.getAll) - set(before):
            if spark.conf.isModifiable(key):
                spark.conf.unset(key)
        for key, value in before.items():
            if spark.conf.get(key, None) != value and spark.conf.isModifiable(key):
                spark.conf.set(key, value)
        spark.sparkContext.setLogLevel("ERROR")

    request.addfinalizer(restore)

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run
