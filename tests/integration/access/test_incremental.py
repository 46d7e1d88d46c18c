"""Role tables over many nights: a night rewrites only its own partition of each role table, and
after every kind of change (re-run, backfill, missed night, maintenance, erasure, policy change,
key rotation, re-encryption) each role table equals a full rebuild from the published table."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from securepipe.access.policy import load_access_policy
from securepipe.access.publish import rebuilt_rows
from securepipe.io.generate import generate_landing
from securepipe.layout import Layout
from securepipe.pipeline import resolve_keys, run_nightly
from securepipe.pipeline.erasure import erase
from securepipe.pipeline.keys import change_keys
from securepipe.pipeline.maintenance import run_maintenance
from securepipe.pipeline.rotation import reencrypt
from tests.builders import loaded, published_then_refused, write_config

pytestmark = pytest.mark.spark
DAYS = [f"2026-09-{d:02d}" for d in range(1, 9)]
ROLES = ("analyst", "marketing", "nobody", "support")
ROWS, ROWS_PER_FILE = 60, 25
# A role that does not see the subject column: its erased rows cannot be matched, so the dates
# they were in are rewritten instead.
MARKETING = {
    "description": "no identifiers at all",
    "tables": {
        "customers": {
            "rows": "true",
            "columns": {"city": "clear", "country": "clear", "balance": "mask:bucket:1000"},
        }
    },
}


def _state(spark, path: str) -> dict[str, Any]:
    last = DeltaTable.forPath(spark, path).history(1).collect()[0]
    record = json.loads(last["userMetadata"] or "{}")
    return {"version": int(last["version"]), "operation": last["operation"], **record}


def _touched(path: str, version: int) -> set[str]:
    """The run dates whose files a commit added or removed."""
    dates = set()
    log = Path(path) / "_delta_log" / f"{version:020d}.json"
    for line in log.read_text().splitlines():
        action = json.loads(line)
        for kind in ("add", "remove"):
            if kind in action:
                dates.add(action[kind]["partitionValues"]["run_date"])
    return dates


def _rows(df) -> list[tuple]:
    return sorted((tuple(str(v) for v in r) for r in df.collect()), key=str)


@pytest.fixture(scope="module")
def nights(spark, tmp_path_factory):
    """One lakehouse through a year in miniature; after each step, what each role table's last
    commit says and touched, and whether it equals a full rebuild."""
    tmp = tmp_path_factory.mktemp("incremental")

    def small_files(doc: dict[str, Any]) -> None:
        doc["files"] = {"rows_per_file": ROWS_PER_FILE}

    path = write_config(tmp, small_files)
    roles_file = path.parent / "access" / "roles.yaml"
    doc = yaml.safe_load(roles_file.read_text())
    doc["roles"]["marketing"] = MARKETING
    # The shipped risk policy (k 5) would suppress every row of these 60-row nights; the risk
    # measure's own incremental syncs are tested in tests/integration/access/test_risk.py.
    del doc["roles"]["analyst"]["tables"]["customers"]["risk"]
    # A filter no row passes: its nights write nothing, and must still not pile up.
    doc["roles"]["nobody"] = {
        "tables": {"customers": {"rows": "country = 'XX'", "columns": {"city": "clear"}}}
    }
    roles_file.write_text(yaml.safe_dump(doc))
    cfg, policy = loaded(path)
    layout = Layout.of(cfg)
    for seed, day in enumerate(DAYS):
        generate_landing(cfg.landing, day, rows=ROWS, seed=40 + seed)
    steps: dict[str, dict[str, Any]] = {}

    def observe(step: str, current_policy=None) -> None:
        current_policy = current_policy or policy
        keys = resolve_keys(cfg, ["customers"])
        published = spark.read.format("delta").load(layout.table("customers"))
        out: dict[str, Any] = {}
        for role in ROLES:
            rpath = layout.access(role, "customers")
            state = _state(spark, rpath)
            expected = rebuilt_rows(cfg, current_policy, role, "customers", keys, published)
            actual = spark.read.format("delta").load(rpath).select(*expected.columns)
            state["touched"] = _touched(rpath, state["version"])
            state["equal_to_full_rebuild"] = _rows(actual) == _rows(expected)
            out[role] = state
        steps[step] = out

    def night(day: str, with_policy=True, current_policy=None) -> None:
        run_nightly(
            spark,
            cfg,
            day,
            tables=["customers"],
            policy=(current_policy or policy) if with_policy else None,
        )

    # 8 shuffle partitions: without the sizing, a night's partition would be 8 files.
    previous = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "8")
    night(DAYS[1])
    spark.conf.set("spark.sql.shuffle.partitions", previous)
    observe("first night")
    night(DAYS[2])
    observe("second night")
    night(DAYS[2])
    observe("re-run")
    night(DAYS[0])
    observe("backfill")
    lines = run_maintenance(spark, cfg, hours=168)
    night(DAYS[3])
    observe("after maintenance")
    night(DAYS[4], with_policy=False)  # published, then the job died before the role tables
    night(DAYS[5])
    observe("after a missed role stage")
    published = spark.read.format("delta").load(layout.table("customers"))
    victim = published.where("region = 'EU'").select("customer_id").first()[0]
    victim_dates = {
        str(r[0])
        for r in published.where(published.customer_id == victim).select("run_date").collect()
    }
    erase(spark, cfg, [victim], policy)
    observe("erasure")
    night(DAYS[6])
    observe("night after erasure")
    changed = yaml.safe_load(roles_file.read_text())
    changed["roles"]["analyst"]["attributes"]["region"] = "NA"
    folder = tmp / "changed-access"
    folder.mkdir()
    (folder / "roles.yaml").write_text(yaml.safe_dump(changed))
    new_policy = load_access_policy(folder, cfg)
    night(DAYS[6], current_policy=new_policy)
    observe("policy change", new_policy)
    change_keys(cfg, "rotate", lambda: nullcontext(spark), name="subject_kek")
    night(DAYS[7], current_policy=new_policy)
    observe("subject KEK rotated", new_policy)
    reencrypt(spark, cfg, "customers")
    night(DAYS[7], current_policy=new_policy)
    observe("re-encrypted", new_policy)
    return {
        "steps": steps,
        "cfg": cfg,
        "victim": victim,
        "maintenance": lines,
        "victim_dates": victim_dates,
        "layout": layout,
        "policy": new_policy,
    }


def test_every_step_leaves_each_role_table_equal_to_a_full_rebuild(nights) -> None:
    unequal = {
        step: role
        for step, roles in nights["steps"].items()
        for role, state in roles.items()
        if not state["equal_to_full_rebuild"]
    }
    assert unequal == {}


@pytest.mark.parametrize(
    ("step", "dates"),
    [
        ("second night", {DAYS[2]}),
        ("re-run", {DAYS[2]}),
        ("backfill", {DAYS[0]}),
        ("after maintenance", {DAYS[3]}),
        ("after a missed role stage", {DAYS[4], DAYS[5]}),
        ("night after erasure", {DAYS[6]}),
    ],
)
def test_a_night_rewrites_only_the_partitions_the_published_table_changed(
    nights, step, dates
) -> None:
    for role, state in nights["steps"][step].items():
        assert state["sync"] == "incremental", (step, role, state.get("reason"))
        assert sorted(state["run_dates"]) == sorted(dates)
        # The empty role records its sync in a commit that touches no file.
        assert state["touched"] == (set() if role == "nobody" else dates), (step, role)


def test_the_first_night_builds_every_role_table(nights) -> None:
    for state in nights["steps"]["first night"].values():
        assert state["sync"] == "full" and state["reason"] == "no role table yet"


def test_erasure_deletes_the_rows_where_the_role_sees_the_subject(nights, spark) -> None:
    erasure = nights["steps"]["erasure"]
    layout, victim = nights["layout"], nights["victim"]
    for role in ("analyst", "support"):
        assert erasure[role]["operation"] == "MERGE", role  # a delete, not a rebuild
        assert erasure[role]["sync"] == "incremental"
        rows = spark.read.format("delta").load(layout.access(role, "customers"))
        assert rows.where(rows.customer_id == victim).count() == 0
    # The role without the subject column gets the victim's dates rewritten from the published
    # table, which no longer holds the victim.
    marketing = erasure["marketing"]
    assert marketing["operation"] == "WRITE" and marketing["sync"] == "incremental"
    assert marketing["touched"] == nights["victim_dates"]


@pytest.mark.parametrize(
    ("step", "roles", "reason"),
    [
        ("policy change", {"analyst"}, "view changed"),
        ("subject KEK rotated", {"support"}, "view changed"),
        ("re-encrypted", set(ROLES), "was a reencrypt"),
    ],
)
def test_what_a_role_sees_changing_rebuilds_its_table_in_full(nights, step, roles, reason) -> None:
    for role, state in nights["steps"][step].items():
        if role in roles:
            assert state["sync"] == "full", (step, role)
            assert reason in state["reason"], (step, role)
            assert role == "nobody" or len(state["touched"]) > 1
        else:
            assert state["sync"] == "incremental", (step, role, state.get("reason"))


def test_partitions_are_written_as_few_files_and_maintenance_compacts(nights, spark) -> None:
    cfg, layout = nights["cfg"], nights["layout"]
    assert cfg.files.rows_per_file == ROWS_PER_FILE
    most = math.ceil(ROWS / ROWS_PER_FILE)
    roles = [layout.access(r, "customers") for r in ROLES if r != "nobody"]
    for path in [layout.table("customers"), *roles]:
        files = (
            spark.read.format("delta")
            .load(path)
            .select("run_date", F.input_file_name().alias("file"))
            .distinct()
            .groupBy("run_date")
            .count()
            .collect()
        )
        # 8 shuffle partitions would give 8 files per date without the sizing.
        assert files and max(r["count"] for r in files) <= most, path
    assert any("compacted" in line for line in nights["maintenance"])


def test_a_role_table_an_overlapping_run_brought_further_is_left_alone(nights, spark) -> None:
    """Two overlapping nights: this one read the published log, then the other committed and
    synced the role table further. This night's plan must leave the role table alone, not
    rebuild it from its older read (which would move it back)."""
    from securepipe.access.publish import PublishedLog, _role_state, plan_role_sync

    layout = nights["layout"]
    path = layout.access("analyst", "customers")
    state, version = _role_state(spark, path)
    assert state is not None
    ahead = int(state["source_version"])
    stale = PublishedLog(spark, layout.table("customers"))
    stale.now = ahead - 1  # what this night read before the other run's commit
    plan = plan_role_sync(spark, path, stale, state["view"])
    assert (plan.mode, plan.source_version, plan.role_version) == ("current", ahead, version)
    # With a fresh read the same table is simply up to date.
    fresh = plan_role_sync(
        spark, path, PublishedLog(spark, layout.table("customers")), state["view"]
    )
    assert fresh.mode == "current" and fresh.source_version >= ahead


def test_a_record_of_nothing_written_is_not_laid_over_another_runs_sync(
    nights, spark, monkeypatch
) -> None:
    """Overlapping runs: this night planned a role table's sync and found nothing to write, and
    another run recorded its own sync in between. This night's record (of what it planned from
    the older version) must not land on top: it plans again and finds the table current."""
    from dataclasses import replace
    from functools import partial

    import securepipe.access.publish as publish
    from securepipe.io.delta import TableMoved, is_conflict, record_commit, retry_concurrent

    cfg, layout = nights["cfg"], nights["layout"]
    path = layout.access("nobody", "customers")
    before = _state(spark, path)
    with pytest.raises(TableMoved) as stale:
        record_commit(spark, path, {"kind": "test"}, expected_version=before["version"] - 1)
    assert is_conflict(stale.value)
    assert _state(spark, path)["version"] == before["version"]

    real_plan, modes = publish.plan_role_sync, []

    def racing_plan(spark_, role_path, source, fingerprint):
        plan = real_plan(spark_, role_path, source, fingerprint)
        modes.append(plan.mode)
        if len(modes) == 1:
            # The other run records its sync after this plan read the role table.
            state = publish._role_state(spark_, role_path)[0]
            assert state is not None
            record = {**state, "run_id": "other-run"}
            record_commit(spark_, role_path, record, expected_version=plan.role_version)
            # This night's plan: a date on which the role has no row.
            return replace(plan, mode="incremental", run_dates=(DAYS[7],))
        return plan

    monkeypatch.setattr(publish, "plan_role_sync", racing_plan)
    keys = resolve_keys(cfg, ["customers"])
    sync = partial(
        publish.sync_role_table, spark, cfg, nights["policy"], "nobody", "customers", "this-run"
    )
    result = retry_concurrent(partial(sync, keys), "test sync")
    after = _state(spark, path)
    assert modes == ["current", "current"]  # planned twice: the record was refused once
    assert (after["version"], after["run_id"]) == (before["version"] + 1, "other-run")
    assert result.mode == "current" and result.details["version"] == after["version"]


def test_a_rolled_back_night_rewrites_only_its_date_in_the_role_tables(nights, spark) -> None:
    """A re-run refused by its row accounting: its commit is taken back (RESTORE), and the role
    tables' next sync rewrites that date only, ending equal to a full rebuild."""
    from securepipe.access.publish import publish_role_tables

    cfg, layout, policy = nights["cfg"], nights["layout"], nights["policy"]
    published_then_refused(spark, cfg, DAYS[7])
    keys = resolve_keys(cfg, ["customers"])
    publish_role_tables(spark, cfg, policy, "customers", "after-rollback", keys)
    published = spark.read.format("delta").load(layout.table("customers"))
    for role in ROLES:
        path = layout.access(role, "customers")
        state = _state(spark, path)
        assert (state["sync"], state["run_dates"]) == ("incremental", [DAYS[7]]), role
        expected = rebuilt_rows(cfg, policy, role, "customers", keys, published)
        actual = spark.read.format("delta").load(path).select(*expected.columns)
        assert _rows(actual) == _rows(expected), role
