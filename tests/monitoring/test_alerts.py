"""The shipped alert rules: valid for Prometheus (`promtool check rules`), each alert tripped and
left quiet by its unit tests (`promtool test rules`), and written against metrics securepipe
really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from securepipe.io.metrics import KeyFigures, TableFigures, registry_of

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "conf" / "monitoring" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")
# One table with every kind of figure, so that every metric has a sample.
FIGURES = TableFigures(
    table="t",
    state="ok",
    ended_at=1.0,
    seconds=1.0,
    stages={"gate": 1.0},
    rows={"read": 1},
    quarantined_by_reason={"R": 0},
    checks={"leak_scan": True},
    encryptions={("k", 1): 1},
    keys=(KeyFigures("k", 1, 1.0, 2.0, {1: 1}),),
)


def _exported() -> set[str]:
    return {s.name for family in registry_of([FIGURES]).collect() for s in family.samples}


def _promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: `make system-deps` installs Debian's prometheus")
    return exe


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=120)


def test_the_rules_are_valid() -> None:
    done = _run("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_every_alert_has_unit_tests_that_pass() -> None:
    done = _run("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]}
    assert tested == alerts
    for t in tests:  # each alert is seen quiet and firing
        for name in {case["alertname"] for case in t["alert_rule_test"]}:
            cases = [c for c in t["alert_rule_test"] if c["alertname"] == name]
            assert [c for c in cases if c["exp_alerts"]] and [
                c for c in cases if not c["exp_alerts"]
            ]


def test_a_broken_threshold_fails_the_unit_tests(tmp_path) -> None:
    (tmp_path / "conf" / "monitoring").mkdir(parents=True)
    (tmp_path / "tests" / "monitoring").mkdir(parents=True)
    rules = RULES.read_text().replace("> 26 * 3600", "> 48 * 3600")
    (tmp_path / "conf" / "monitoring" / "alerts.yml").write_text(rules)
    shutil.copy(RULE_TESTS, tmp_path / "tests" / "monitoring" / RULE_TESTS.name)
    done = _run("test", "rules", str(tmp_path / "tests" / "monitoring" / RULE_TESTS.name))
    assert done.returncode != 0 and "SecurepipeNoRecentSuccess" in done.stdout + done.stderr


def test_the_alerts_use_metrics_securepipe_exports() -> None:
    exported = _exported()
    exprs = " ".join(
        r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
    )
    used = set(re.findall(r"securepipe_[a-z_]+", exprs))
    assert used and used <= exported, used - exported


def test_the_grafana_dashboard_queries_exported_metrics() -> None:
    import json

    dashboard = json.loads((ROOT / "examples" / "grafana" / "securepipe.json").read_text())
    exported = _exported()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) == len(dashboard["panels"])
    used = set(re.findall(r"securepipe_[a-z_]+", " ".join(exprs)))
    assert used and used <= exported, used - exported
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
