"""Re-identification risk of role tables: k-anonymity and l-diversity measured on what each role
sees, acted on as its policy says (suppress, fail, warn), and reported without a value."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from delta.tables import DeltaTable

from securepipe.access.policy import load_access_policy
from securepipe.access.publish import rebuilt_rows
from securepipe.errors import ConfigError, GateFailed, RiskGateFailed
from securepipe.io.generate import generate_landing
from securepipe.layout import Layout
from securepipe.pipeline import resolve_keys, run_nightly
from tests.builders import load_cfg, loaded, write_config

pytestmark = pytest.mark.spark
DAY1, DAY2 = "2026-09-01", "2026-09-02"
PLANTED_COUNTRY = "ZQ"  # a country no generated row has: its class holds one subject
K, L = 5, 2

_COLUMNS = {
    "customer_id": "clear",
    "country": "clear",
    "region": "clear",
    "signup_ts": "mask:year",
    "balance": "mask:bucket:1000",
}


def _role(action: str, qis: list[str], k: int = K) -> dict[str, Any]:
    return {
        "tables": {
            "customers": {
                "rows": "region = 'EU'",
                "columns": dict(_COLUMNS),
                "risk": {
                    "quasi_identifiers": qis,
                    "sensitive": ["balance"],
                    "k": k,
                    "l": L,
                    "action": action,
                },
            }
        }
    }


def _policy(folder: Path, fail_qis: list[str]) -> None:
    roles = {
        "watch": _role("warn", ["country", "signup_ts"]),
        "suppressed": _role("suppress", ["country", "signup_ts"]),
        "coarse": _role("fail", ["region"]),  # generalises enough: passes
        "strict": _role("fail", fail_qis),
    }
    (folder / "roles.yaml").write_text(yaml.safe_dump({"roles": roles}))


def _plant(landing: Path, day: str) -> str:
    """Give the first EU customer of the day's batch a country nobody else has."""
    path = landing / "customers" / day / "part-0000.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    head = rows[0]
    i = next(
        n
        for n, r in enumerate(rows[1:], start=1)
        if r[head.index("region")] == "EU" and r[head.index("customer_id")]
    )
    rows[i][head.index("country")] = PLANTED_COUNTRY
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return rows[i][head.index("customer_id")]


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def env(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("risk")
    path = write_config(tmp)
    access = path.parent / "access"
    _policy(access, fail_qis=["region"])
    cfg, policy = loaded(path)
    generate_landing(cfg.landing, DAY1, rows=300, seed=31)
    generate_landing(cfg.landing, DAY2, rows=300, seed=32)
    planted = _plant(Path(cfg.landing), DAY1)
    caplog = logging.getLogger("securepipe")
    records: list[logging.LogRecord] = []
    handler = _Keep(records)
    caplog.addHandler(handler)
    try:
        first = run_nightly(spark, cfg, DAY1, tables=["customers"], policy=policy)
        # Night 2 under a policy whose `strict` role no longer generalises: refused.
        _policy(access, fail_qis=["country", "signup_ts"])
        strict_policy = load_access_policy(access, cfg)
        strict_before = DeltaTable.forPath(spark, Layout.of(cfg).access("strict", "customers"))
        strict_version = int(strict_before.history(1).collect()[0]["version"])
        with pytest.raises(GateFailed) as refused:
            run_nightly(spark, cfg, DAY2, tables=["customers"], policy=strict_policy)
    finally:
        caplog.removeHandler(handler)
    return {
        "cfg": cfg,
        "policy": strict_policy,
        "path": path,
        "first": first,
        "refused": refused.value,
        "strict_version": strict_version,
        "planted": planted,
        "logs": records,
    }


def _equal_to_a_full_rebuild(spark, cfg, policy, role: str) -> bool:
    keys = resolve_keys(cfg, ["customers"])
    published = spark.read.format("delta").load(Layout.of(cfg).table("customers"))
    expected = rebuilt_rows(cfg, policy, role, "customers", keys, published)
    stored = spark.read.format("delta").load(Layout.of(cfg).access(role, "customers"))
    rows = [
        sorted(tuple(str(v) for v in r) for r in df.select(*expected.columns).collect())
        for df in (expected, stored)
    ]
    return rows[0] == rows[1]


def _role_rows(spark, cfg, role: str) -> pd.DataFrame:
    return spark.read.format("delta").load(Layout.of(cfg).access(role, "customers")).toPandas()


def _pandas_figures(df: pd.DataFrame, qis: list[str]) -> dict[str, Any]:
    """The same figures the straightforward way (classes within each date)."""
    classes = df.groupby(["run_date", *qis], dropna=False).agg(
        size=("customer_id", "nunique"), rows=("customer_id", "size"), l=("balance", "nunique")
    )
    below = classes[classes["size"] < K]
    return {
        "rows": len(df),
        "classes": len(classes),
        "k": int(classes["size"].min()),
        "l": {"balance": int(classes["l"].min())},
        "classes_below_k": len(below),
        "rows_below_k": int(below["rows"].sum()),
        "rows_violating": int(classes[(classes["size"] < K) | (classes["l"] < L)]["rows"].sum()),
        "prosecutor_risk_max": round(1 / classes["size"].min(), 6),
        "prosecutor_risk_avg": round(float((classes["rows"] / classes["size"]).sum() / len(df)), 6),
    }


def _on(df: pd.DataFrame, day: str) -> pd.DataFrame:
    return df[df["run_date"].astype(str) == day]


def _classes(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return df.groupby(by).agg(size=("customer_id", "nunique"), l=("balance", "nunique"))


def test_figures_agree_with_a_pandas_computation(env, spark) -> None:
    watch = _role_rows(spark, env["cfg"], "watch")  # warn: every row of the role is there
    for result, day in ((env["first"], DAY1), (env["refused"].result, DAY2)):
        figures = result.tables[0].risk["watch"]
        df = _on(watch, day)  # each night measured its own date
        expected = _pandas_figures(df, ["country", "signup_ts"])
        measured = figures["measured"]
        assert {k: measured[k] for k in expected} == expected, day
        assert figures["unit"] == "subjects" and not figures["passed"]
        assert figures["classes_within"] == ["run_date"]
        assert sum(b["classes"] for b in measured["histogram"]) == expected["classes"]
        assert sum(b["rows"] for b in measured["histogram"]) == expected["rows"]
        sizes = df.groupby(["country", "signup_ts"])["customer_id"].nunique()
        assert measured["histogram"][0] == {
            "size": "1",
            "classes": int((sizes == 1).sum()),
            "rows": int(df.groupby(["country", "signup_ts"]).size()[sizes == 1].sum()),
        }


def test_a_planted_unique_combination_is_found_and_suppressed(env, spark) -> None:
    cfg, planted = env["cfg"], env["planted"]
    watch = _role_rows(spark, cfg, "watch")
    assert (watch["country"] == PLANTED_COUNTRY).sum() == 1  # warn writes it, and says so
    kept = _role_rows(spark, cfg, "suppressed")
    assert planted not in set(_on(kept, DAY1)["customer_id"])
    assert PLANTED_COUNTRY not in set(kept["country"])
    nights = [env["first"], env["refused"].result]
    figures = [n.tables[0].risk["suppressed"] for n in nights]
    assert figures[0]["measured_dates"] == "all" and figures[1]["measured_dates"] == [DAY2]
    for day, night in zip((DAY1, DAY2), figures, strict=True):
        expected = _pandas_figures(_on(watch, day), ["country", "signup_ts"])
        assert night["suppressed_rows"] == expected["rows_violating"] > 0, day
        assert night["kept"]["rows"] == len(_on(kept, day)), day
    assert sum(f["suppressed_rows"] for f in figures) == len(watch) - len(kept)
    # Night 2 synced incrementally, and holds what a full rebuild would.
    assert _equal_to_a_full_rebuild(spark, cfg, env["policy"], "suppressed")
    # What is left meets the policy within each date, hence over the whole table too.
    for by in (["run_date", "country", "signup_ts"], ["country", "signup_ts"]):
        classes = _classes(kept, by)
        assert len(kept) > 0 and classes["size"].min() >= K and classes["l"].min() >= L, by
    day2 = _classes(_on(kept, DAY2), ["country", "signup_ts"])
    assert figures[1]["kept"]["k"] == int(day2["size"].min())


def test_a_policy_that_generalises_enough_passes(env, spark) -> None:
    figures = env["first"].tables[0].risk["coarse"]
    assert figures["passed"] and figures["measured"]["k"] >= K
    coarse = _role_rows(spark, env["cfg"], "coarse")
    assert len(coarse) == len(_role_rows(spark, env["cfg"], "watch"))  # nothing held back


def test_fail_leaves_the_role_table_as_it_was_and_the_rest_is_published(env, spark) -> None:
    cfg, exc = env["cfg"], env["refused"]
    assert isinstance(exc, GateFailed) and exc.exit_code == 2
    assert "role 'strict', table 'customers'" in str(exc) and "k=1 (target 5)" in str(exc)
    result: Any = exc.result
    table = result.tables[0]
    assert result.status == "gate_failed" and set(table.access_refused) == {"strict"}
    strict = DeltaTable.forPath(spark, Layout.of(cfg).access("strict", "customers"))
    assert int(strict.history(1).collect()[0]["version"]) == env["strict_version"]
    dates = {str(d) for d in _role_rows(spark, cfg, "strict")["run_date"]}
    assert dates == {DAY1}  # night 2 never reached it
    # The published table and the other roles have night 2.
    for role in ("watch", "suppressed", "coarse"):
        assert {str(d) for d in _role_rows(spark, cfg, role)["run_date"]} == {DAY1, DAY2}
    published = spark.read.format("delta").load(Layout.of(cfg).table("customers"))
    assert {str(r[0]) for r in published.select("run_date").distinct().collect()} == {DAY1, DAY2}


def test_a_night_measures_its_own_date_and_rewrites_no_other(env, spark) -> None:
    # Night 2 measured only its date (a date's classes meeting the policy is enough for the
    # whole table) and wrote only its partition: night 1's rows are as night 1 left them.
    table = env["refused"].result.tables[0]
    cfg = env["cfg"]
    watch = _role_rows(spark, cfg, "watch")
    assert table.risk["watch"]["measured"]["rows"] == len(_on(watch, DAY2))
    assert {str(d) for d in watch["run_date"]} == {DAY1, DAY2}
    path = Layout.of(cfg).access("suppressed", "customers")
    last = DeltaTable.forPath(spark, path).history(1).collect()[0]
    assert json.loads(last["userMetadata"])["run_dates"] == [DAY2]
    assert _touched(path, int(last["version"])) == {DAY2}
    kept = _role_rows(spark, cfg, "suppressed")
    night1_kept = env["first"].tables[0].risk["suppressed"]["kept"]["rows"]
    assert len(_on(kept, DAY1)) == night1_kept


def _touched(path: str, version: int) -> set[str]:
    """The run dates whose files a commit added or removed."""
    log = Path(path) / "_delta_log" / f"{version:020d}.json"
    actions = [json.loads(line) for line in log.read_text().splitlines()]
    return {
        a[kind]["partitionValues"]["run_date"]
        for a in actions
        for kind in ("add", "remove")
        if kind in a
    }


def test_no_quasi_identifier_value_in_reports_records_audit_or_logs(env, spark) -> None:
    cfg, planted = env["cfg"], env["planted"]
    lakehouse = Path(cfg.lakehouse)
    texts = [p.read_text() for p in (lakehouse / "reports").rglob("*.*") if p.is_file()]
    for role in ("watch", "suppressed", "coarse", "strict"):
        history = DeltaTable.forPath(spark, Layout.of(cfg).access(role, "customers")).history()
        texts += [r["userMetadata"] or "" for r in history.select("userMetadata").collect()]
    audit = spark.read.format("delta").load(Layout.of(cfg).audit).toPandas()
    texts += [json.dumps(r, default=str) for r in audit.to_dict("records")]
    texts += [r.getMessage() for r in env["logs"]]
    texts.append(str(env["refused"]))
    html = [t for t in texts if "<svg" in t]
    assert html, "no class-size histogram in the HTML report"
    assert any("Re-identification risk" in t and "role suppressed" in t for t in html)
    watch = _role_rows(spark, cfg, "watch")
    years = {str(y) for y in watch["signup_ts"]}
    for text in texts:
        assert not re.search(rf"\b{PLANTED_COUNTRY}\b", text)
        assert planted not in text
        # No class is named anywhere (a masked year as a JSON string or an HTML cell).
        for year in years:
            assert f'"{year}"' not in text and f">{year}<" not in text


@pytest.mark.parametrize(
    ("risk", "message"),
    [
        ({"quasi_identifiers": ["nope"], "k": 5}, "quasi-identifier column 'nope': unknown column"),
        (
            {"quasi_identifiers": ["city"], "k": 5},
            "quasi-identifier column 'city': the role does not see it",
        ),
        ({"quasi_identifiers": ["country"], "k": 1}, "greater than or equal to 2"),
        (
            {"quasi_identifiers": ["full_name"], "k": 5},
            "quasi-identifier column 'full_name': the role decrypts it",
        ),
        (
            {"quasi_identifiers": ["email"], "k": 5},
            "quasi-identifier column 'email': its tokens differ per subject",
        ),
        ({"quasi_identifiers": ["country"], "k": 5, "l": 2}, "l needs at least one sensitive"),
        (
            {"quasi_identifiers": ["country"], "sensitive": ["country"], "k": 5},
            "sensitive column 'country' is listed twice",
        ),
        ({"quasi_identifiers": ["country"], "k": 5, "action": "hide"}, "action"),
    ],
)
def test_bad_risk_policies_are_refused_before_spark_starts(tmp_path, risk, message) -> None:
    table = {
        "rows": "true",
        "columns": {
            "customer_id": "clear",
            "country": "clear",
            "full_name": "decrypt",
            "email": "token",
        },
        "risk": risk,
    }
    path = write_config(tmp_path)
    doc = {"roles": {"r": {"keys": ["subject_kek"], "tables": {"customers": table}}}}
    (path.parent / "access" / "roles.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_access_policy(path.parent / "access", load_cfg(path))
    assert message in str(err.value)
    assert "role 'r'" in str(err.value)


def test_risk_gate_failed_is_a_gate_failure() -> None:
    assert issubclass(RiskGateFailed, GateFailed) and RiskGateFailed("x").exit_code == 2


def test_a_rerun_that_shrinks_classes_rewrites_only_its_date(env, spark) -> None:
    """Runs last (it replaces night 2): re-running a date with fewer rows shrinks its classes;
    its rows are measured again, night 1's rows stay as they were."""
    cfg, access = env["cfg"], env["path"].parent / "access"
    _policy(access, fail_qis=["region"])
    policy = load_access_policy(access, cfg)
    day1_before = _on(_role_rows(spark, cfg, "suppressed"), DAY1)
    generate_landing(cfg.landing, DAY2, rows=40, seed=33)
    rerun = run_nightly(spark, cfg, DAY2, tables=["customers"], policy=policy)
    figures = rerun.tables[0].risk["suppressed"]
    assert figures["measured_dates"] == [DAY2]
    watch, kept = _role_rows(spark, cfg, "watch"), _role_rows(spark, cfg, "suppressed")
    assert _rows(_on(kept, DAY1)) == _rows(day1_before)
    sizes = _classes(watch, ["run_date", "country", "signup_ts"])
    passing = sizes[(sizes["size"] >= K) & (sizes["l"] >= L)].index
    expected = watch.set_index(["run_date", "country", "signup_ts"]).index.isin(passing)
    assert len(kept) == int(expected.sum())
    assert figures["kept"]["rows"] == len(_on(kept, DAY2))
    assert _classes(kept, ["run_date", "country", "signup_ts"])["size"].min() >= K
    assert _equal_to_a_full_rebuild(spark, cfg, policy, "suppressed")


def _rows(df: pd.DataFrame) -> list[tuple[str, ...]]:
    return sorted(tuple(str(v) for v in r) for r in df.itertuples(index=False))


def test_the_cli_exits_2_and_prints_the_refused_run_as_json(env, cli) -> None:
    """`securepipe run --json` when a role's risk gate refuses: exit 2, and the run's result
    (the rest published, the role named) on stdout, not nothing."""
    access = env["path"].parent / "access"
    _policy(access, fail_qis=["country", "signup_ts"])
    proc = cli(
        "run", "--json", "--config", str(env["path"]), "--date", DAY2, "--tables", "customers"
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["status"] == "gate_failed"
    table = doc["tables"][0]
    assert table["status"] == "published" and list(table["access_refused"]) == ["strict"]
    assert "role 'strict', table 'customers'" in doc["error"]
    assert set(table["risk"]) == {"watch", "suppressed", "coarse"}  # the others were written
    assert "securepipe: error: " in proc.stderr and PLANTED_COUNTRY not in proc.stdout


def test_an_erasure_that_shrinks_a_class_rewrites_that_date_only(env, spark) -> None:
    """Runs after the re-run: an erasure deletes the erased subjects' rows from the roles that
    see the subject column; where that leaves a class below k in the suppressing role, the
    class leaves too (its date rewritten), and the role table still equals a full rebuild."""
    from securepipe.pipeline.erasure import erase_subjects

    cfg, access = env["cfg"], env["path"].parent / "access"
    _policy(access, fail_qis=["region"])
    policy = load_access_policy(access, cfg)
    qis = ["run_date", "country", "signup_ts"]
    kept = _role_rows(spark, cfg, "suppressed")
    members = _on(kept, DAY1).groupby(qis[1:])["customer_id"].agg(lambda c: sorted(set(c)))
    target = min(members.index, key=lambda i: (len(members[i]), i))
    victims = members[target][: len(members[target]) - K + 1]  # leaves K - 1 subjects
    watch_before = _role_rows(spark, cfg, "watch")
    path = Layout.of(cfg).access("suppressed", "customers")
    before = int(DeltaTable.forPath(spark, path).history(1).collect()[0]["version"])

    keys = resolve_keys(cfg, list(cfg.tables))
    erase_subjects(spark, cfg, victims, keys, "erase-shrink", policy)

    kept = _role_rows(spark, cfg, "suppressed")
    assert not set(victims) & set(kept["customer_id"])
    day1 = set(_on(kept, DAY1)[qis[1:]].itertuples(index=False, name=None))
    assert tuple(target) not in day1  # the class fell below k: its other members left with it
    assert _equal_to_a_full_rebuild(spark, cfg, policy, "suppressed")
    commits = DeltaTable.forPath(spark, path).history().where(f"version > {before}")
    ops = sorted((int(r["version"]), r["operation"], r["userMetadata"]) for r in commits.collect())
    assert [op for _, op, _ in ops] == ["MERGE", "WRITE"]  # a delete, then the shrunk dates
    rewritten = json.loads(ops[1][2])["run_dates"]
    victim_dates = {
        str(d) for d in watch_before[watch_before["customer_id"].isin(victims)]["run_date"]
    }
    assert DAY1 in rewritten and set(rewritten) <= victim_dates
    assert _touched(path, ops[1][0]) == set(rewritten)
    # The warn role only lost the erased subjects' rows.
    watch = _role_rows(spark, cfg, "watch")
    assert len(watch) == len(watch_before) - int(watch_before["customer_id"].isin(victims).sum())


def test_an_erasure_is_not_held_back_by_a_risk_refusal(spark, tmp_path) -> None:
    """A role that does not see the subject column gets an erasure by rewriting the erased
    subjects' dates; when the erasure shrinks a class below k and the policy says `fail`, the
    role table is refused, yet the dates that held the erased subject leave it."""
    from securepipe.pipeline.erasure import erase_subjects

    path = write_config(tmp_path)
    access = path.parent / "access"

    def blind(k: int) -> None:  # no subject column: its rows cannot be deleted by subject
        table = {
            "rows": "true",
            "columns": {"country": "clear", "region": "clear", "signup_ts": "mask:year"},
            "risk": {"quasi_identifiers": ["region"], "k": k, "action": "fail"},
        }
        (access / "roles.yaml").write_text(
            yaml.safe_dump({"roles": {"blind": {"tables": {"customers": table}}}})
        )

    blind(2)
    cfg, policy = loaded(path)
    generate_landing(cfg.landing, DAY1, rows=120, seed=41)
    first = run_nightly(spark, cfg, DAY1, tables=["customers"], policy=policy)
    k = first.tables[0].risk["blind"]["measured"]["k"]  # the smallest region's rows
    assert k >= 2
    blind(k)  # exactly met: the next sync passes, one row fewer in that region fails
    policy = load_access_policy(access, cfg)
    run_nightly(spark, cfg, DAY1, tables=["customers"], policy=policy)
    role_path = Layout.of(cfg).access("blind", "customers")
    assert {str(d) for d in _role_rows(spark, cfg, "blind")["run_date"]} == {DAY1}
    published = spark.read.format("delta").load(Layout.of(cfg).table("customers")).toPandas()
    sizes = published.groupby("region").size()
    victim = published[published["region"] == sizes.idxmin()]["customer_id"].iloc[0]
    before = int(DeltaTable.forPath(spark, role_path).history(1).collect()[0]["version"])

    keys = resolve_keys(cfg, list(cfg.tables))
    erase_subjects(spark, cfg, [victim], keys, "erase-blind", policy)  # does not raise

    history = DeltaTable.forPath(spark, role_path).history(1).collect()[0]
    record = json.loads(history["userMetadata"])
    assert int(history["version"]) == before + 1
    assert record["kind"] == "access-erasure" and record["erased_dates"] == [DAY1]
    assert "source_version" not in record  # the role table does not claim to be in step
    # The date that held the erased subject is gone from the role table until a sync passes.
    assert _role_rows(spark, cfg, "blind").empty
