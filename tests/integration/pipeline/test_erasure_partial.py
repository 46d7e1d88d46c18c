"""An honest `verify-erasure`: a table with `erasure: partial` is not reported as erased.

Column keys, hmac tokens, format-preserving tokens and role-table masks all outlive an erasure
until VACUUM; the report names each with the date its files may go, and the CLI exits 2.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from securepipe.cli import render
from securepipe.io.generate import generate_landing
from securepipe.layout import Layout
from securepipe.pipeline import resolve_keys, run_nightly
from securepipe.pipeline.erasure import erase_subjects, verify_erasure
from tests.builders import loaded, write_config

pytestmark = pytest.mark.spark
DAY = "2026-08-01"


def _partial(doc: dict[str, Any]) -> None:
    doc["keys"].update(
        customer_pii={"type": "aead"}, contact_token={"type": "hmac"}, ssn_fpe={"type": "fpe"}
    )
    customers = doc["tables"]["customers"]
    customers.update(erasure="partial", erasure_reason="legacy consumers need column keys")
    cols = customers["columns"]
    cols["date_of_birth"]["protect"] = {"op": "encrypt", "key": "customer_pii"}
    cols["email"]["protect"] = {"op": "tokenize", "kind": "hmac", "key": "contact_token"}
    cols["ssn"]["protect"] = {"op": "fpe", "alphabet": "digits", "key": "ssn_fpe"}


@pytest.fixture(scope="module")
def env(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("partial")
    path = write_config(tmp, _partial)
    roles = path.parent / "access" / "roles.yaml"
    doc = yaml.safe_load(roles.read_text())
    doc["roles"]["analyst"]["tables"]["customers"]["columns"]["ssn"] = "mask:last4"
    # 60 rows: the shipped k=5 would suppress the victim from the analyst's table.
    del doc["roles"]["analyst"]["tables"]["customers"]["risk"]
    roles.write_text(yaml.safe_dump(doc))
    cfg, policy = loaded(path)
    batch = generate_landing(cfg.landing, DAY, rows=60, seed=5)["customers"]
    with batch.path.open(encoding="utf-8") as fh:  # an EU customer: the analyst sees it
        victim = next(r["customer_id"] for r in csv.DictReader(fh) if r["region"] == "EU")
    run_nightly(spark, cfg, DAY, tables=["customers"], policy=policy)
    keys = resolve_keys(cfg, list(cfg.tables))
    erase_subjects(spark, cfg, [victim], keys, "erase-partial", policy)
    return {"cfg": cfg, "policy": policy, "keys": keys, "path": path, "victim": victim}


def test_column_keys_tokens_and_masks_are_reported_readable_until_vacuum(env, spark) -> None:
    report = verify_erasure(spark, env["cfg"], [env["victim"]], env["keys"], env["policy"])
    assert not report["erased"] and report["values_readable"] > 0
    columns = report["tables"]["tables/customers"]["columns"]
    assert columns["full_name"]["status"] == "shredded"
    assert columns["date_of_birth"]["status"] == "readable with a live column key until VACUUM"
    assert columns["ssn"]["class"] == "column_key"
    assert columns["email"]["status"] == "linkable token until VACUUM"
    assert all("removable_after" in columns[c] for c in ("date_of_birth", "ssn", "email"))
    masked = report["tables"]["access/analyst/customers"]["columns"]["ssn"]
    assert masked["status"] == "masked value in clear until VACUUM"
    assert report["errors"] == []


def test_verify_cli_exits_2_and_names_what_is_readable(env, cli) -> None:
    ids = Path(env["cfg"].lakehouse).parent / "ids.txt"
    ids.write_text(env["victim"] + "\n")
    proc = cli("verify-erasure", "--json", "--config", str(env["path"]), "--subjects", str(ids))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "not erased:" in proc.stderr
    report = json.loads(proc.stdout)  # --json: the report alone on stdout
    # Without --json the same report as lines, one per table and column (render.verify_lines).
    lines, verdict = render.verify_lines(report)
    assert any(
        "tables/customers.date_of_birth" in line
        and "readable with a live column key until VACUUM (removable after" in line
        for line in lines
    )
    assert verdict in proc.stderr
    assert report["erased"] is False
    assert env["victim"] not in proc.stdout  # ids never appear in the report


def test_a_broken_table_is_reported_not_raised(env, spark) -> None:
    root = Path(Layout.of(env["cfg"]).table("customers"))
    log = root / "_delta_log"
    hidden = log.with_name("_delta_log.hidden")
    log.rename(hidden)  # a table whose log went missing
    try:
        report = verify_erasure(spark, env["cfg"], [env["victim"]], env["keys"], env["policy"])
    finally:
        hidden.rename(log)
    assert not report["erased"]
    assert any(e["path"] == str(root) for e in report["errors"])
