"""The container files, checked offline: hadolint on the Dockerfile, `docker-compose config` on
the compose file, and the hardening both promise (pinned base, non-root, healthchecks, loopback
ports, the Spark secret as a file). Building and running the image is `make docker-test`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.builders import ROOT

DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(BIN))
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed: `make system-deps` installs it in CI")
        pytest.skip(f"{name} is not installed (make system-deps)")
    return path


def test_hadolint_passes() -> None:
    proc = subprocess.run(
        [_tool("hadolint"), "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_refuses_a_root_latest_image(tmp_path: Path) -> None:
    """The linter is really applied: an unpinned, root image with a `cd` fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN cd /tmp && echo hi\nUSER root\n")
    proc = subprocess.run(
        [_tool("hadolint"), "--config", str(DOCKER / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3003" in proc.stdout and "DL3002" in proc.stdout


def test_compose_file_is_valid(tmp_path: Path) -> None:
    work = tmp_path / "docker"
    shutil.copytree(DOCKER, work)
    proc = subprocess.run(
        [_tool("docker-compose"), "-f", str(work / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=work,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_hardening() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert base and re.search(r":[\w.-]*\d{8}[\w.-]*$", base.group(1)), "base pinned to a dated tag"
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert "openjdk-17-jre-headless" in text and "python3-venv" in text
    # JAVA_HOME names no architecture (amd64, arm64 ... builds alike).
    assert re.search(r"JAVA_HOME=/usr/lib/jvm/java-17 ", text)
    assert not re.search(r"amd64|arm64|aarch64", text)
    assert "securepipe.jars fetch" in text  # Delta jars baked in, checksum-verified


def test_compose_services_hardening() -> None:
    doc = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = doc["services"]
    assert {"spark-secret", "spark-master", "spark-worker", "nightly", "kms"} <= set(services)
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        if name != "kms":
            assert svc["cap_drop"] == ["ALL"]
    # The shared secret lives in a volume the first service fills (mode 0400, the image's user):
    # no host file whose owner and mode the container's user could not read, no value here.
    assert "0o400" in " ".join(services["spark-secret"]["command"])
    assert "spark-secret:/run/spark-secret" in services["spark-secret"]["volumes"]
    for name in ("spark-master", "spark-worker", "nightly"):
        assert "spark-secret:/run/spark-secret:ro" in services[name]["volumes"], name
    assert "secrets" not in doc and "spark-secret" in doc["volumes"]
    for name in ("spark-master", "spark-worker"):
        assert services[name]["healthcheck"]["test"]
        assert "--properties-file /opt/securepipe/conf/spark-defaults.conf" in " ".join(
            services[name]["command"]
        )
    # The key store: written by the job runner, read-only on the worker, absent from the master.
    assert "keys:/opt/securepipe/.secrets" in services["nightly"]["volumes"]
    assert "keys:/opt/securepipe/.secrets:ro" in services["spark-worker"]["volumes"]
    assert not any("keys:" in v for v in services["spark-master"]["volumes"])
    # The worker's work folder is one its non-root user can write (not under SPARK_HOME).
    assert "--work-dir /tmp/spark-worker" in " ".join(services["spark-worker"]["command"])
    runner = services["nightly"]
    assert "jobs/nightly.py" in " ".join(runner["command"])
    assert "lakehouse:/data" in runner["volumes"]
    # The secret is a file, never a value in the compose file or its environment.
    assert "SECUREPIPE_SPARK_AUTH_SECRET" not in runner["environment"]
    assert runner["environment"]["SECUREPIPE_SPARK_AUTH_SECRET_FILE"] == "/run/spark-secret/secret"
