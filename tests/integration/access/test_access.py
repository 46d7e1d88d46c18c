"""Access filters per role: row filters, column treatments, authorised decryption, time travel,
the "who sees what" matrix, and the refusals."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from securepipe.access.policy import load_access_policy
from securepipe.access.views import matrix, read_as
from securepipe.errors import AccessDenied, PolicyError
from securepipe.io.generate import generate_landing
from securepipe.layout import Layout
from securepipe.pipeline import run_nightly
from tests.builders import load_cfg, loaded, write_config
from tests.leakscan import find_plaintext

pytestmark = pytest.mark.spark
DAY1, DAY2 = "2026-10-01", "2026-10-02"


@pytest.fixture(scope="module")
def env(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    path = write_config(tmp)
    cfg, policy = loaded(path)
    generate_landing(cfg.landing, DAY1, rows=400, seed=21)
    generate_landing(cfg.landing, DAY2, rows=400, seed=22)
    first = run_nightly(spark, cfg, DAY1, policy=policy)
    second = run_nightly(spark, cfg, DAY2, policy=policy)
    # The generator reuses customer ids every day (a daily snapshot): key by (date, id).
    source: dict[tuple[str, str], dict[str, str]] = {}
    for day in (DAY1, DAY2):
        with (Path(cfg.landing) / "customers" / day / "part-0000.csv").open(encoding="utf-8") as fh:
            source.update(
                {(day, r["customer_id"]): r for r in csv.DictReader(fh) if r["customer_id"]}
            )
    return {
        "cfg": cfg,
        "policy": policy,
        "first": first,
        "second": second,
        "source": source,
        "path": path,
    }


def test_analyst_sees_eu_rows_and_per_subject_email_tokens(env, spark) -> None:
    from securepipe.access.views import reveal_columns
    from securepipe.pipeline import resolve_keys

    cfg, source = env["cfg"], env["source"]
    df = read_as(spark, cfg, env["policy"], "customers", "analyst")
    rows = df.collect()
    assert rows and {r["region"] for r in rows} == {"EU"}
    assert not {"full_name", "phone", "ssn", "date_of_birth"} & set(df.columns)
    # The analyst holds no key: e-mails stay tokens; the pipeline's keys open them.
    keys = resolve_keys(cfg, ["customers"])
    opened = reveal_columns(spark, cfg, "customers", df, keys, ["email"]).collect()
    for token_row, r in zip(rows, opened, strict=True):
        original = source[(str(r["run_date"]), r["customer_id"])]
        assert token_row["email"] != original["email"]
        assert r["email"] == original["email"]
    eu = sum(1 for r in source.values() if r["region"] == "EU" and r["customer_id"][-1] != "X")
    # The shipped policy suppresses the rows of classes (country, signup year) of fewer than 5
    # customers, within each date: every EU row is either there or counted as suppressed by
    # the night that wrote its date.
    nights = (env["first"], env["second"])
    suppressed = sum(n.tables[0].risk["analyst"]["suppressed_rows"] for n in nights)
    assert len(rows) + suppressed == eu
    assert {str(r["run_date"]) for r in rows} == {DAY1, DAY2}  # not everything suppressed


def test_support_decrypts_names_but_its_table_holds_ciphertext(env, spark) -> None:
    cfg, source = env["cfg"], env["source"]
    rows = read_as(spark, cfg, env["policy"], "customers", "support").collect()
    assert len(rows) == sum(1 for _, k in source if not k.endswith("X"))
    for r in rows:
        original = source[(str(r["run_date"]), r["customer_id"])]
        assert (r["full_name"], r["phone"]) == (original["full_name"], original["phone"])
    at_rest = spark.read.format("delta").load(Layout.of(cfg).access("support", "customers"))
    assert dict(at_rest.dtypes)["full_name"] == "binary"
    names = {r["full_name"] for r in source.values()}
    assert find_plaintext(Path(cfg.lakehouse) / "access", names) == []


def test_fraud_sees_only_large_transactions(env, spark) -> None:
    cfg = env["cfg"]
    rows = read_as(spark, cfg, env["policy"], "transactions", "fraud").collect()
    published = spark.read.format("delta").load(Layout.of(cfg).table("transactions"))
    large = [r["txn_id"] for r in published.where("amount >= 1000").select("txn_id").collect()]
    small = published.where("amount < 1000").count()
    assert small > 0 and large  # the fixture data holds both kinds
    # Exactly the large ones: none missing, none extra.
    assert sorted(r["txn_id"] for r in rows) == sorted(large)


def test_role_without_a_policy_gets_nothing(env, spark) -> None:
    with pytest.raises(AccessDenied, match="role 'auditor' has no access to table 'customers'"):
        read_as(spark, env["cfg"], env["policy"], "customers", "auditor")
    with pytest.raises(PolicyError, match="unknown role 'intern'"):
        read_as(spark, env["cfg"], env["policy"], "customers", "intern")
    assert not Path(Layout.of(env["cfg"]).access("auditor", "customers")).exists()


def test_reading_a_hidden_column_raises_a_clear_error(env, spark) -> None:
    with pytest.raises(
        AccessDenied, match="role 'analyst' may not see column 'full_name' of table 'customers'"
    ):
        read_as(spark, env["cfg"], env["policy"], "customers", "analyst", columns=["full_name"])


def _without_analyst_risk(env, folder: Path):
    doc = yaml.safe_load((env["path"].parent / "access" / "roles.yaml").read_text())
    del doc["roles"]["analyst"]["tables"]["customers"]["risk"]
    folder.mkdir(exist_ok=True)
    (folder / "roles.yaml").write_text(yaml.safe_dump(doc))
    return doc, load_access_policy(folder, env["cfg"])


def test_time_travel_is_refused_under_a_risk_policy(env, spark) -> None:
    # Today's suppression of small classes was measured on today's rows: an older version
    # shown as it was stored would show the classes it suppressed since.
    v_first = env["first"].tables[0].access["analyst"]
    with pytest.raises(AccessDenied, match=r"role 'analyst', table 'customers': no time travel"):
        read_as(spark, env["cfg"], env["policy"], "customers", "analyst", version=v_first)


def test_time_travel_shows_only_what_the_role_could_see_then(env, spark, tmp_path) -> None:
    cfg = env["cfg"]
    _, policy = _without_analyst_risk(env, tmp_path / "access")
    v_first = env["first"].tables[0].access["analyst"]
    v_second = env["second"].tables[0].access["analyst"]
    assert v_second == v_first + 1
    old = read_as(spark, cfg, policy, "customers", "analyst", version=v_first)
    assert {str(r["run_date"]) for r in old.select("run_date").distinct().collect()} == {DAY1}
    assert {r["region"] for r in old.select("region").collect()} == {"EU"}
    assert "full_name" not in old.columns
    with pytest.raises(AccessDenied):
        read_as(spark, cfg, policy, "customers", "analyst", columns=["phone"], version=v_first)


def test_time_travel_reapplies_todays_policy_to_old_versions(env, spark, tmp_path) -> None:
    """A column revoked since, or a row outside today's filter, is not shown from the past."""
    cfg = env["cfg"]
    doc, then_policy = _without_analyst_risk(env, tmp_path / "then")
    analyst = doc["roles"]["analyst"]["tables"]["customers"]
    analyst["rows"] = "region = :region and country = 'IE'"
    del analyst["columns"]["email"]  # revoked
    analyst["columns"]["signup_ts"] = "hidden"
    folder = tmp_path / "access"
    folder.mkdir()
    (folder / "roles.yaml").write_text(yaml.safe_dump(doc))
    today = load_access_policy(folder, cfg)
    v_first = env["first"].tables[0].access["analyst"]
    then = read_as(spark, cfg, then_policy, "customers", "analyst", version=v_first)
    now = read_as(spark, cfg, today, "customers", "analyst", version=v_first)
    assert "email" in then.columns and "signup_ts" in then.columns
    assert not {"email", "signup_ts"} & set(now.columns)
    countries = {r["country"] for r in now.select("country").distinct().collect()}
    assert countries <= {"IE"} and now.count() < then.count()
    # A treatment weakened since (clear then, a mask today) is not shown as it was stored.
    assert "region" in then.columns
    analyst["columns"]["region"] = "mask:redact"
    (folder / "roles.yaml").write_text(yaml.safe_dump(doc))
    masked = load_access_policy(folder, cfg)
    weakened = read_as(spark, cfg, masked, "customers", "analyst", version=v_first)
    assert "region" not in weakened.columns and "country" in weakened.columns
    # Fail closed: today's filter over a column the old version does not hold.
    doc["roles"]["support"]["tables"]["customers"]["rows"] = "signup_ts > '2000-01-01'"
    (folder / "roles.yaml").write_text(yaml.safe_dump(doc))
    policy = load_access_policy(folder, cfg)
    v_support = env["first"].tables[0].access["support"]
    with pytest.raises(AccessDenied, match=r"role 'support', table 'customers': today's row"):
        read_as(spark, cfg, policy, "customers", "support", version=v_support)


def test_role_commits_name_the_policy_version(env, spark) -> None:
    import json

    from delta.tables import DeltaTable

    last = DeltaTable.forPath(spark, Layout.of(env["cfg"]).access("analyst", "customers")).history(
        1
    )
    record = json.loads(last.collect()[0]["userMetadata"])
    assert record["policy_version"] == env["policy"].version()
    assert record["role"] == "analyst" and record["run_id"] == env["second"].run_id


def test_matrix_matches_the_role_tables(env, spark) -> None:
    cfg, policy = env["cfg"], env["policy"]
    rows = matrix(cfg, policy)
    for role, rp in policy.roles.items():
        for table in cfg.tables:
            expected = {r["column"] for r in rows if r["table"] == table and r[role]}
            path = Path(Layout.of(cfg).access(role, table))
            if table not in rp.tables:
                assert not expected and not path.exists()
                continue
            actual = set(spark.read.format("delta").load(str(path)).columns) - {"run_date"}
            assert actual == expected, (role, table)


def test_access_matrix_cli_prints_and_writes_html(env) -> None:
    out = Path(env["cfg"].lakehouse) / "matrix.html"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "securepipe"),
            "access",
            "matrix",
            "--config",
            str(env["path"]),
            "--html",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"customers\.balance\s+confidential\s+mask:bucket\(width=1000\)", proc.stdout)
    assert "mask:bucket(width=1000)" in out.read_text()
    # The re-identification risk policy of each role table (k and l), on both.
    assert "analyst/customers: k>=5, l>=2, action suppress" in proc.stdout
    page = out.read_text()
    assert re.search(
        r"<td>analyst</td><td>customers</td><td class=\"n\">5</td><td class=\"n\">2</td>", page
    )
    # Row filters and key grants, on both.
    assert "<code>region = :region</code>" in page and "subject_kek" in page
    assert "support: may decrypt with subject_kek" in proc.stdout
    assert "customers: rows where region = :region" in proc.stdout


def _policy_error(tmp_path: Path, role: dict[str, Any]) -> str:
    path = write_config(tmp_path)
    (path.parent / "access" / "roles.yaml").write_text(yaml.safe_dump({"roles": {"r": role}}))
    with pytest.raises(PolicyError) as err:
        load_access_policy(path.parent / "access", load_cfg(path))
    return str(err.value)


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ({"tables": {"nope": {"rows": "true"}}}, "table 'nope': unknown table"),
        (
            {"tables": {"customers": {"rows": "true", "columns": {"x": "clear"}}}},
            "column 'x': unknown column",
        ),
        ({"tables": {"customers": {"rows": "region = ", "columns": {}}}}, "does not parse"),
        (
            {"tables": {"customers": {"rows": "exists (select 1 from t)", "columns": {}}}},
            "without subqueries",
        ),
        (
            {"tables": {"customers": {"rows": "true", "columns": {"date_of_birth": "decrypt"}}}},
            "'decrypt' needs a grant of key 'subject_kek'",
        ),
        (
            {"tables": {"customers": {"rows": "true", "columns": {"email": "clear"}}}},
            "'clear' is only for non-sensitive columns",
        ),
        (
            {"tables": {"customers": {"rows": "true", "columns": {"card_number": "mask:last4"}}}},
            "per-subject columns allow decrypt, token or hidden",
        ),
        (
            {"tables": {"customers": {"rows": "region = :zone", "columns": {}}}},
            "uses :zone, which the role does not define",
        ),
        (
            {"tables": {"customers": {"rows": "full_name = 'x'", "columns": {}}}},
            "not comparable after protection",
        ),
    ],
    ids=[
        "table",
        "column",
        "parse",
        "subquery",
        "grant",
        "clear-pii",
        "mask-per-subject",
        "attr",
        "filter-on-ciphertext",
    ],
)
def test_bad_policies_are_refused_before_spark(tmp_path, role, message) -> None:
    text = _policy_error(tmp_path, role)
    assert "roles.yaml: role 'r'" in text and message in text


def test_access_gate_refuses_extra_columns_rows_outside_filter_and_pii_in_masks(env, spark) -> None:
    from pyspark.sql import functions as F

    from securepipe.access.publish import check_role_view
    from securepipe.errors import GateFailed

    cfg, policy = env["cfg"], env["policy"]
    good = spark.read.format("delta").load(Layout.of(cfg).access("analyst", "customers"))
    check_role_view(good, cfg, policy, "analyst", "customers")  # the real output passes
    with pytest.raises(GateFailed, match="differ from the policy"):
        check_role_view(good.withColumn("phone", F.lit("x")), cfg, policy, "analyst", "customers")
    outside = good.withColumn("region", F.lit("NA"))
    with pytest.raises(GateFailed, match="outside_filter"):
        check_role_view(outside, cfg, policy, "analyst", "customers")
    planted = good.withColumn("balance", F.lit("123-45-6789"))  # a mask leaking a full SSN
    with pytest.raises(GateFailed, match="leak:balance:us_ssn"):
        check_role_view(planted, cfg, policy, "analyst", "customers")


def test_well_formed_check_counts_tampered_envelopes_and_tokens(env, spark) -> None:
    from pyspark.sql import functions as F

    from securepipe.pipeline import resolve_keys
    from securepipe.quality.gate import evaluate_gates as evaluate

    cfg = env["cfg"]
    keys = resolve_keys(cfg, ["customers"])
    df = spark.read.format("delta").load(Layout.of(cfg).table("customers")).limit(10).cache()
    assert evaluate(df, df, "customers", cfg, keys).passed
    bad = df.withColumn(
        "date_of_birth", F.concat(F.unhex(F.lit("02")), F.expr("substring(date_of_birth, 2)"))
    )
    bad = bad.withColumn("email", F.lit("not-a-token"))
    verdict = evaluate(bad, bad, "customers", cfg, keys)
    check = next(c for c in verdict.checks if c.name == "well_formed_protection")
    assert not verdict.passed and check.counts == {
        "malformed:date_of_birth": 10,
        "malformed:email": 10,
    }


@pytest.mark.parametrize(
    ("value", "detector"),
    [
        ("ada@example.com", "email"),
        ("ssn 123-45-6789", "us_ssn"),
        ("card 4111 1111 1111 1111", "card_number"),
        ("+1-202-555-0100", "phone"),
        ("DE89 3704 0044 0532 0130 00", "iban"),
    ],
)
def test_leak_scan_detects_each_kind_of_planted_pii(env, spark, value, detector) -> None:
    from securepipe.quality.builtin import leak_scan_exprs

    cfg = env["cfg"]
    df = spark.createDataFrame([(value,), ("Köln",), ("4111 1111 1111 1112",)], "city string")
    exprs = leak_scan_exprs(df, cfg.table("customers"), cfg.compliance)
    row = df.agg(*[e.alias(k.replace(":", "__")) for k, e in exprs.items()]).first()
    hits = {k: int(row[k.replace(":", "__")]) for k in exprs if row[k.replace(":", "__")]}
    assert hits == {f"leak:city:{detector}": 1}


HINT_PROBES = [
    "ada@example.com", "a.b+c@mail.example.co.uk", "x@y", "@", "123-45-6789", "ssn:123-45-6789.",
    "123456789", "4111 1111 1111 1111", "4111-1111-1111-1111", "4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1",
    "4111111111111111", "(202) 555-0100", "+1 202.555.0100", "202-555-0100", "+44 20 7946 0958",
    "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "de89 3704", "C0001234",
    "***-**-6789", "Köln", "", "tok_ABC-123_xyz-45-6789", "12-34-5678", "555.0100",
]  # fmt: skip


def test_leak_scan_hints_never_hide_a_match(spark) -> None:
    """The cheap hints only skip work: with or without them every detector flags the same
    values (each hint is a necessary condition of its pattern)."""
    from pyspark.sql import functions as F

    from securepipe.config import DetectorConfig
    from securepipe.quality.builtin import DEFAULT_DETECTORS, matches

    df = spark.createDataFrame([(v,) for v in HINT_PROBES], "v string")
    for name, det in DEFAULT_DETECTORS.items():
        # The same detector without its hint (hints are keyed by the exact pattern).
        unhinted = DetectorConfig(
            pattern=f"(?:{det.pattern})", luhn=det.luhn, checksum=det.checksum
        )
        rows = df.select(
            "v",
            F.coalesce(matches(F.col("v"), det), F.lit(False)).alias("hinted"),
            F.coalesce(matches(F.col("v"), unhinted), F.lit(False)).alias("full"),
        ).collect()
        differ = [r["v"] for r in rows if r["hinted"] != r["full"]]
        assert differ == [], (name, differ)
        assert any(r["full"] for r in rows), name  # each detector fires on some probe


def test_a_role_removed_from_the_policy_has_its_table_emptied_once(spark, tmp_path) -> None:
    # Left alone, the removed role's table kept its last rows for ever: never synced with an
    # erasure, never verified, never vacuumed.
    from securepipe.access.publish import RETIRED_KIND, publish_role_tables
    from securepipe.io.delta import commit_records, current_version
    from securepipe.pipeline import resolve_keys

    path = write_config(tmp_path)
    cfg, policy = loaded(path)
    generate_landing(cfg.landing, "2026-06-01", rows=40, seed=3)
    run_nightly(spark, cfg, "2026-06-01", tables=["transactions"], policy=policy)
    fraud = Layout.of(cfg).access("fraud", "transactions")
    assert spark.read.format("delta").load(fraud).count() > 0
    roles = yaml.safe_load((path.parent / "access" / "roles.yaml").read_text())
    del roles["roles"]["fraud"]
    (path.parent / "access" / "roles.yaml").write_text(yaml.safe_dump(roles))
    smaller = load_access_policy(path.parent / "access", cfg)
    keys = resolve_keys(cfg, ["transactions"])
    publish_role_tables(spark, cfg, smaller, "transactions", "retire-1", keys)
    assert spark.read.format("delta").load(fraud).count() == 0
    record = next(iter(commit_records(spark, fraud, limit=1)))
    assert record["kind"] == RETIRED_KIND and record["role"] == "fraud"
    assert record["run_id"] == "retire-1"
    version = current_version(spark, fraud)
    publish_role_tables(spark, cfg, smaller, "transactions", "retire-2", keys)
    assert current_version(spark, fraud) == version  # emptied once, not every night
    # The roles the policy still names are untouched.
    analyst = Layout.of(cfg).access("analyst", "transactions")
    assert spark.read.format("delta").load(analyst).count() > 0
