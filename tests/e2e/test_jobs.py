"""The jobs as a user runs them: spark-submit and the `securepipe` command, with exit codes."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from securepipe.config import KeyStoreConfig
from securepipe.io.generate import generate_landing
from securepipe.jars import local_jars
from tests.browser import rendered_dom, screenshot, visible_text
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


def _securepipe(
    *args: str, timeout: int = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The `securepipe` command as a user runs it (this venv's), output captured."""
    return subprocess.run(
        [str(BIN / "securepipe"), *args],
        capture_output=True,
        text=True,
        env={**_env(), **(env or {})},
        timeout=timeout,
    )


def test_spark_submit_nightly_publishes_and_exits_0(tmp_path: Path) -> None:
    # The shipped `jars: local` with the jars given to spark-submit, as the README's line (the
    # cluster test covers `jars: provided`).
    cfg = _config(tmp_path, jars="local", master=None)
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


def test_spark_submit_settings_win_but_cannot_turn_hardening_off(tmp_path: Path) -> None:
    """A platform's `--conf` / `--name` (its event log, shuffle partitions, application name)
    beat securepipe's defaults and the file's settings; `--conf spark.io.encryption.enabled=false`
    is refused before anything is read or written."""
    cfg = _config(tmp_path, jars="provided", master=None)
    generate_landing(tmp_path / "landing", "2026-11-27", rows=50)
    jars = ",".join(str(p) for p in local_jars(ROOT / ".cache" / "jars"))
    events = tmp_path / "events"
    events.mkdir()

    def submit(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(str(BIN / "spark-submit"), "--master", "local[2]", "--jars", jars),
                *options,
                str(ROOT / "jobs" / "nightly.py"),
                *("--config", str(cfg), "--date", "2026-11-27", "--tables", "customers"),
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=300,
            cwd=tmp_path,
        )

    refused = submit("--conf", "spark.io.encryption.enabled=false")
    # spark-submit's PythonRunner merges the driver's stderr into its stdout.
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1, output[-3000:]
    assert "securepipe: error: the submission sets spark.io.encryption.enabled=false" in output
    assert "spark.allow_insecure" in output
    assert not (tmp_path / "lakehouse" / "tables").exists()

    proc = submit(
        *("--name", "platform-nightly", "--conf", "spark.sql.shuffle.partitions=3"),
        *("--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events}"),
        *("--conf", "spark.eventLog.compress=false", "--conf", "spark.ui.enabled=false"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The platform's event log was not switched off (a file, or a rolling log's folder of them).
    logs = [p for p in events.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert logs, list(events.rglob("*"))
    props: dict[str, str] = {}
    for line in "\n".join(p.read_text() for p in logs).splitlines():
        if not line.startswith("{"):
            continue  # a rolling log's empty status file
        event = json.loads(line)
        if event.get("Event") == "SparkListenerEnvironmentUpdate":
            given = event["Spark Properties"]
            props = dict(given) if isinstance(given, list) else given
    assert props["spark.app.name"] == "platform-nightly"
    assert props["spark.sql.shuffle.partitions"] == "3"  # the file says 2
    # What the submitter left unset still gets securepipe's hardened defaults.
    assert props["spark.io.encryption.enabled"] == "true"
    assert props["spark.sql.session.timeZone"] == "UTC"


def test_bad_config_exits_1_with_one_line_naming_the_file(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    doc = yaml.safe_load(cfg.read_text())
    del doc["tables"]["customers"]["columns"]["ssn"]["classification"]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = _securepipe("run", "--config", str(cfg), "--date", "2026-11-27")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("securepipe: error:")]
    assert errors == [
        f"securepipe: error: {cfg}: table 'customers', column 'ssn', key 'classification': "
        "Field required"
    ]


def test_bad_date_exits_1(tmp_path: Path) -> None:
    proc = _securepipe("run", "--config", str(_config(tmp_path)), "--date", "28/11/2026")
    assert proc.returncode == 1
    assert "securepipe: error: run date '28/11/2026' is not an ISO date" in proc.stderr


def test_run_without_a_master_key_exits_1_and_keys_init_creates_it(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    shutil.copytree(CONF.parent / "access", tmp_path / "access")  # the shipped policy
    master = tmp_path / "secrets" / "master.key"
    shutil.rmtree(master.parent)  # a key store path that resolves somewhere new
    proc = _securepipe("run", "--config", str(cfg), "--date", "2026-11-27")
    assert proc.returncode == 1
    assert (
        f"securepipe: error: master key file {master} does not exist; run `securepipe keys init`"
        in proc.stderr
    )
    # Refused before anything was made: no new key hierarchy, no lakehouse, no Spark.
    assert not master.parent.exists()
    assert not (tmp_path / "lakehouse").exists()
    assert "SparkContext" not in proc.stderr
    init = _securepipe("keys", "init", "--config", str(cfg))
    assert init.returncode == 0, init.stderr[-2000:]
    assert master.exists() and master.stat().st_mode & 0o777 == 0o600


def test_spark_submit_without_the_delta_jars_is_refused_naming_them(tmp_path: Path) -> None:
    """`jars: local` cannot put jars on a driver JVM spark-submit already started: the job
    stops before any work and says which --jars to pass."""
    cfg = _config(tmp_path, jars="local", master=None)
    proc = subprocess.run(
        [
            *(str(BIN / "spark-submit"), "--master", "local[1]", str(ROOT / "jobs" / "nightly.py")),
            *("--config", str(cfg), "--date", "2026-11-27"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    jars = ",".join(str(p.resolve()) for p in local_jars(ROOT / ".cache" / "jars"))
    # spark-submit's PythonRunner sends the driver's stderr to its own stdout.
    assert f"submit with --jars {jars}" in proc.stdout + proc.stderr
    assert not (tmp_path / "lakehouse" / "tables").exists()


def test_demo_creates_its_master_key_and_publishes_two_nights_and_a_rerun(
    tmp_path: Path, pushgateway: str, lineage_sink
) -> None:
    """The README's first command (`make demo` runs `securepipe demo`) on a fresh key store,
    with a Pushgateway and a lineage server beside it (README "Monitoring")."""
    cfg = _config(tmp_path)
    shutil.copytree(CONF.parent / "access", tmp_path / "access")  # the shipped policy
    master = tmp_path / "secrets" / "master.key"
    shutil.rmtree(master.parent)
    lineage_sink.events.clear()
    proc = _securepipe(
        *("demo", "--config", str(cfg), "--rows", "200", "--date", "2026-11-28"),
        *("--metrics-file", str(tmp_path / "securepipe.prom")),
        timeout=600,
        env={"SECUREPIPE_PUSHGATEWAY": pushgateway, "SECUREPIPE_LINEAGE_URL": lineage_sink.url},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert master.exists() and master.stat().st_mode & 0o777 == 0o600
    assert "created a NEW local master key" in proc.stderr
    for label in ("night 1: 2026-11-27", "night 2: 2026-11-28", "re-run of night 2: 2026-11-28"):
        assert f"=== {label} ===" in proc.stdout
    # The analyst's table is published with its k and l (the shipped risk policy).
    assert re.search(
        r"role analyst: access/analyst/customers version \d+  k=[\d-]+ \(target 5\), "
        r"l\(balance\)=[\d-]+ \(target 2\)",
        proc.stdout,
    ), proc.stdout[-3000:]
    # Three runs, each in the lineage server (START + COMPLETE) and on the Pushgateway.
    states = sorted(e["eventType"] for e in lineage_sink.events)
    assert states == ["COMPLETE"] * 3 + ["START"] * 3, states
    with urllib.request.urlopen(pushgateway + "/metrics", timeout=10) as response:  # noqa: S310
        scraped = response.read().decode()
    textfile = (tmp_path / "securepipe.prom").read_text()
    for text, job in ((scraped, "securepipe"), (textfile, None)):
        ok = {
            s.labels["table"]
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "securepipe_last_run_status"
            and s.labels["securepipe_last_run_status"] == "ok"
            and s.value == 1
            and s.labels.get("job") == job
        }
        assert ok == {"customers", "transactions"}, text[-2000:]
    pages = sorted((tmp_path / "lakehouse" / "reports" / "2026-11-28").glob("*.html"))
    assert pages and all("role analyst" in p.read_text() and "<svg" in p.read_text() for p in pages)
    _browse_the_reports(tmp_path)
    from deltalake import DeltaTable

    table = DeltaTable(str(tmp_path / "lakehouse" / "tables" / "customers"))
    dates = table.to_pyarrow_table(columns=["run_date"]).column("run_date").to_pylist()
    assert sorted({str(d) for d in dates}) == ["2026-11-27", "2026-11-28"]


def _landing_values(landing: Path) -> set[str]:
    """Values of the demo's landing files a report must never show (text of personal columns)."""
    values: set[str] = set()
    for path in landing.rglob("*.csv"):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                for column in ("full_name", "email", "phone", "ssn", "street_address", "city"):
                    if row.get(column) and len(row[column]) >= 6:
                        values.add(row[column])
    return values


def _browse_the_reports(tmp: Path) -> None:
    """README "Run reports": the index of runs, latest.html, a run page and the access matrix,
    opened in headless Chromium: no raw `{}`, no `None`, no value of the landing data; the
    index links every run's page; a screenshot of the index for people (build/screenshots)."""
    reports = tmp / "lakehouse" / "reports"
    landing = _landing_values(tmp / "landing")
    assert len(landing) > 100
    run_pages = sorted(reports.glob("2026-11-2*/*.html"))
    assert len(run_pages) == 3
    texts = {}
    for page in [reports / "index.html", reports / "latest.html", reports / "access-matrix.html"]:
        texts[page.name] = visible_text(rendered_dom(page))
    texts["run"] = visible_text(rendered_dom(run_pages[0]))
    for name, text in texts.items():
        assert "{}" not in text and "None" not in text and "{{" not in text, name
        leaked = [v for v in landing if v in text]
        assert not leaked, f"{name} shows {len(leaked)} landing values"
    index_dom = rendered_dom(reports / "index.html")
    for page in run_pages:  # every nightly run of the demo links its page
        assert f'href="{page.parent.name}/{page.name}"' in index_dom
    index = texts["index.html"]
    assert "Quarantine reasons over time" in index and "MALFORMED_RECORD" in index
    latest = texts["latest.html"]
    for heading in ("Versions", "Keys", "Input files", "Stage timings", "Quarantine reasons"):
        assert heading in latest
    assert re.search(r"[0-9a-f]{64}", latest), "input checksums on the run page"
    matrix = texts["access-matrix.html"]
    assert "region = :region" in matrix and "subject_kek" in matrix  # row filter, key grant
    shot = screenshot(reports / "index.html", ROOT / "build" / "screenshots" / "reports-index.png")
    assert shot.exists()
